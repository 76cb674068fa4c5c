"""The inference engine: chunking, batching, query cache, resampling, atomic outputs, resume."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dcase9.data.formats import open_dataset
from dcase9.devices import resolve_device
from dcase9.engine import EngineOptions, Separator, chunk_starts, separate_in_chunks
from dcase9.outputs import MANIFEST_NAME
from dcase9.errors import ConfigError, Dcase9Error


class CountingSeparator:
    """A 'model' with a known output: the mixture times a per-query gain; counts what it encodes."""

    def __init__(self, sample_rate: int = 16000, fail_after: int | None = None):
        self.sample_rate = sample_rate
        self.encoded: list[str] = []
        self.batch_sizes: list[int] = []
        self.fail_after = fail_after

    def encode_queries(self, queries: Sequence[str]) -> torch.Tensor:
        self.encoded += list(queries)
        return torch.tensor([[0.5 + (len(q) % 5) / 10] for q in queries])

    def separate(self, mixture: torch.Tensor, conditions: torch.Tensor | None,
                 reference: torch.Tensor | None = None) -> torch.Tensor:
        if self.fail_after is not None and len(self.batch_sizes) >= self.fail_after:
            raise KeyboardInterrupt
        self.batch_sizes.append(mixture.shape[0])
        assert conditions is not None and conditions.shape == (mixture.shape[0], 1)
        return mixture * conditions


def run(separator: CountingSeparator, data: Path, out: Path, **options: object) -> object:
    return Separator(separator, identity={"system": "counting"},  # type: ignore[arg-type]
                     options=EngineOptions(progress=False, **options)).infer(open_dataset(data), out)


def test_chunk_starts_cover_everything() -> None:
    for length in (1, 999, 1000, 1001, 4567, 160000):
        starts = chunk_starts(length, 1000, 0.25)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + 1000] = True
        assert covered.all()
        assert starts[-1] + min(1000, length) == length


def test_chunked_overlap_add_reconstructs_pointwise_models() -> None:
    x = torch.randn(3, 10007)
    gain = torch.tensor([[0.5], [1.0], [2.0]])
    full = x * gain
    for segment, overlap in ((1000, 0.25), (4096, 0.5), (3000, 0.0), (20000, 0.25)):
        chunked = separate_in_chunks(lambda s, e: x[:, s:e] * gain, x.shape[-1], 3, segment, overlap, x.device)
        torch.testing.assert_close(chunked, full, rtol=1e-6, atol=1e-6)


def test_chunking_a_context_dependent_model_differs_only_near_seams() -> None:
    x = torch.randn(1, 20000)
    smooth = torch.nn.functional.avg_pool1d  # output depends on neighbouring samples

    def model(chunk: torch.Tensor) -> torch.Tensor:
        return smooth(chunk[:, None], 9, stride=1, padding=4, count_include_pad=False)[:, 0]

    full = model(x)
    chunked = separate_in_chunks(lambda s, e: model(x[:, s:e]), 20000, 1, 4000, 0.25, x.device)
    error = (chunked - full).abs()[0]
    starts = chunk_starts(20000, 4000, 0.25)
    near_seam = torch.zeros(20000, dtype=torch.bool)
    for s in starts:
        for edge in (s, s + 4000):
            near_seam[max(0, edge - 8):edge + 8] = True
    assert error[~near_seam].max() < 1e-6
    assert error.max() < 0.5 * full.abs().max()


def test_short_inputs_run_whole_and_never_return_silence() -> None:
    x = torch.randn(2, 300)
    out = separate_in_chunks(lambda s, e: x[:, s:e], 300, 2, 16000, 0.25, x.device)
    torch.testing.assert_close(out, x)


def test_outputs_batches_and_query_cache(demo_root: Path, tmp_path: Path) -> None:
    separator = CountingSeparator()
    result = run(separator, demo_root / "validation", tmp_path / "out", batch_size=5)
    dataset = open_dataset(demo_root / "validation")
    assert result.written == 48 and result.skipped == 0
    # One embedding per distinct query, however often a query repeats.
    assert sorted(separator.encoded) == sorted({m.query for m in dataset.mixtures})
    assert max(separator.batch_sizes) == 5
    from dcase9.data.items import ItemLoader

    loader = ItemLoader(dataset)
    for spec in dataset.mixtures[:6]:
        estimate, rate = sf.read(tmp_path / "out" / f"{spec.id}.wav", dtype="float32")
        assert rate == 16000 and estimate.ndim == 1
        expected = loader.load(spec).mixture * (0.5 + (len(spec.query) % 5) / 10)
        np.testing.assert_allclose(estimate, expected, rtol=1e-6, atol=1e-7)
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["status"] == "complete" and manifest["written"] == 48
    assert manifest["identity"] == {"system": "counting"} and "torch" in manifest["versions"]


def test_batched_equals_one_at_a_time(demo_root: Path, tmp_path: Path) -> None:
    run(CountingSeparator(), demo_root / "validation", tmp_path / "b8", batch_size=8, limit=10)
    run(CountingSeparator(), demo_root / "validation", tmp_path / "b1", batch_size=1, limit=10)
    for path in sorted((tmp_path / "b8").glob("*.wav")):
        a, _ = sf.read(path, dtype="float32")
        b, _ = sf.read(tmp_path / "b1" / path.name, dtype="float32")
        np.testing.assert_array_equal(a, b)


def test_resume_skips_finished_outputs_and_interrupts_leave_no_partial_files(demo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(CountingSeparator(fail_after=2), demo_root / "validation", out, batch_size=4)
    finished = sorted(p.name for p in out.glob("*.wav"))
    assert len(finished) == 8
    assert not list(out.glob(".*.part"))
    assert json.loads((out / MANIFEST_NAME).read_text())["status"] == "interrupted"
    separator = CountingSeparator()
    result = run(separator, demo_root / "validation", out, batch_size=4)
    assert result.skipped == 8 and result.written == 40
    assert len(list(out.glob("*.wav"))) == 48
    again = run(CountingSeparator(), demo_root / "validation", out)
    assert again.written == 0 and again.skipped == 48
    forced = run(CountingSeparator(), demo_root / "validation", out, overwrite=True)
    assert forced.written == 48


def test_outputs_of_another_system_are_not_mixed(demo_root: Path, tmp_path: Path) -> None:
    run(CountingSeparator(), demo_root / "validation", tmp_path / "out", limit=2)
    with pytest.raises(Dcase9Error, match="outputs of another run.*--overwrite"):
        Separator(CountingSeparator(), identity={"system": "other"},  # type: ignore[arg-type]
                  options=EngineOptions(progress=False, limit=2)).infer(open_dataset(demo_root / "validation"),
                                                                        tmp_path / "out")


class Identity32k(CountingSeparator):
    """A 32 kHz model that returns its input: what comes back shows the resampling alone."""

    def __init__(self) -> None:
        super().__init__(sample_rate=32000)
        self.inputs: list[np.ndarray] = []

    def separate(self, mixture, conditions, reference=None):  # type: ignore[no-untyped-def]
        self.inputs += list(mixture.cpu().numpy())
        return mixture


def test_model_rate_resampling_is_soxr_hq_in_the_threads_by_default(demo_root: Path, tmp_path: Path) -> None:
    """soxr HQ up to the model's rate and back, as librosa.load(sr=32000) and then librosa.load(sr=16000)
    of the 32 kHz output would do it (AudioSep's own pipeline, then the evaluator's reading)."""
    import soxr

    separator = Identity32k()
    run(separator, demo_root / "validation", tmp_path / "out", limit=3)
    dataset = open_dataset(demo_root / "validation")
    from dcase9.data.items import ItemLoader
    from dcase9.metrics import sdr

    for spec, model_input in zip(dataset.mixtures[:3], separator.inputs, strict=True):
        mixture = ItemLoader(dataset).load(spec).mixture
        # what the model got: soxr's own HQ output, independently computed here
        np.testing.assert_array_equal(model_input, soxr.resample(mixture, 16000, 32000, quality="HQ"))
        estimate, _ = sf.read(tmp_path / "out" / f"{spec.id}.wav", dtype="float32")
        np.testing.assert_array_equal(estimate, soxr.resample(model_input, 32000, 16000, quality="HQ"))
        assert estimate.shape == mixture.shape
        # broadband demo noise loses what lies above soxr HQ's pass band near 8 kHz: 48-56 dB here
        assert sdr(mixture[200:-200], estimate[200:-200]).item() > 40
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["identity"] == {"system": "counting", "resampler": "soxr"}
    assert manifest["settings"]["resampler"] == "soxr"


def test_julius_resamples_on_the_device_and_is_part_of_the_run_identity(demo_root: Path, tmp_path: Path) -> None:
    from dcase9.audio import resample
    from dcase9.data.items import ItemLoader

    out = tmp_path / "out"
    separator = Identity32k()
    run(separator, demo_root / "validation", out, limit=2, resampler="julius")
    dataset = open_dataset(demo_root / "validation")
    spec = dataset.mixtures[0]
    mixture = torch.from_numpy(ItemLoader(dataset).load(spec).mixture)[None]
    expected = resample(resample(mixture, 16000, 32000), 32000, 16000)[0]
    estimate, _ = sf.read(out / f"{spec.id}.wav", dtype="float32")
    np.testing.assert_allclose(estimate, expected.numpy(), atol=1e-6)
    assert json.loads((out / MANIFEST_NAME).read_text())["identity"]["resampler"] == "julius"
    # soxr outputs differ from julius ones: the folder is refused rather than silently mixed
    with pytest.raises(Dcase9Error, match="differs in: resampler"):
        run(Identity32k(), demo_root / "validation", out, limit=2)
    # a 16 kHz model resamples nothing: the choice neither matters nor enters its identity
    run(CountingSeparator(), demo_root / "validation", tmp_path / "16k", limit=1, resampler="julius")
    run(CountingSeparator(), demo_root / "validation", tmp_path / "16k", limit=1)
    manifest = json.loads((tmp_path / "16k" / MANIFEST_NAME).read_text())
    assert manifest["identity"] == {"system": "counting"} and manifest["settings"]["resampler"] is None
    with pytest.raises(ConfigError, match="unknown resampler 'sinc'"):
        run(CountingSeparator(), demo_root / "validation", tmp_path / "x", resampler="sinc")


def test_long_inputs_are_chunked(demo_root: Path, tmp_path: Path) -> None:
    separator = CountingSeparator()
    run(separator, demo_root / "eval-real", tmp_path / "out", segment_seconds=3.0, limit=1)
    assert len(separator.batch_sizes) == len(chunk_starts(160000, 48000, 0.25))


def test_option_errors() -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"
    from dcase9.engine import autocast_context

    with pytest.raises(ConfigError, match="fp16 autocast needs a GPU"):
        autocast_context(torch.device("cpu"), "fp16")


def test_reading_and_writing_threads(demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2 threads on the CPU (they share its cores with the net), half the cores (2 to 8) next to a GPU;
    0 reads on the main thread, with the same outputs; the manifest says what ran."""
    from dcase9.engine import resolve_workers

    assert resolve_workers(None, torch.device("cpu")) == 2 and resolve_workers(5, torch.device("cpu")) == 5
    for cores, expected in ((None, 2), (2, 2), (16, 8), (64, 8), (10, 5)):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        assert resolve_workers(None, torch.device("cuda")) == expected
    monkeypatch.undo()
    threaded = run(CountingSeparator(), demo_root / "validation", tmp_path / "default", limit=6)
    inline = run(CountingSeparator(), demo_root / "validation", tmp_path / "inline", limit=6, workers=0)
    assert threaded.written == inline.written == 6
    for path in sorted((tmp_path / "default").glob("*.wav")):
        np.testing.assert_array_equal(sf.read(path)[0], sf.read(tmp_path / "inline" / path.name)[0])
    assert json.loads((tmp_path / "default" / MANIFEST_NAME).read_text())["settings"]["workers"] == 2
    assert json.loads((tmp_path / "inline" / MANIFEST_NAME).read_text())["settings"]["workers"] == 0
    for bad in (-1, 65):
        with pytest.raises(ConfigError, match=f"--workers must be 0 .* to 64, got {bad}"):
            run(CountingSeparator(), demo_root / "validation", tmp_path / "bad", workers=bad)
    assert not (tmp_path / "bad").exists()


def test_a_slow_disk_holds_the_separation_back(demo_root: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Estimates waiting for a writer are bounded (twice the batch or the threads), not piled up in memory."""
    import time

    from dcase9 import engine

    separator = CountingSeparator()
    written: list[int] = []
    waiting: list[int] = []
    real_write = engine.write_wav

    def slow_write(*args: object, **kwargs: object) -> None:
        waiting.append(sum(separator.batch_sizes) - len(written))  # separated, not yet written
        time.sleep(0.03)
        real_write(*args, **kwargs)  # type: ignore[arg-type]
        written.append(1)

    monkeypatch.setattr(engine, "write_wav", slow_write)
    result = run(separator, demo_root / "validation", tmp_path / "out", limit=24, batch_size=1, workers=1)
    assert result.written == 24 and len(written) == 24
    assert max(waiting) <= 4, waiting  # without the bound: up to 23 (separating is instant here)


def test_ids_that_one_disk_takes_for_one_file_are_refused_there_and_run_where_it_tells_them_apart(
        demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import dcase9.outputs
    from dcase9.files import name_fold, names_collide_on_disk
    from tests.names_support import CAFE_NFC as nfc, CAFE_NFD as nfd, rename_mixtures

    data = rename_mixtures(Path(shutil.copytree(demo_root / "eval-real", tmp_path / "eval-real")),
                           {"demo-real-case-1": nfc, "demo-real-case-2": nfd})
    # This disk (Linux) keeps them apart: both outputs are written.
    assert not names_collide_on_disk(tmp_path, f"{nfc}.wav", f"{nfd}.wav")
    assert names_collide_on_disk(tmp_path, "same.wav", "same.wav") and not list(tmp_path.glob(".dcase9-names-*"))
    run(CountingSeparator(), data, tmp_path / "apart", limit=3)
    assert {p.stem for p in (tmp_path / "apart").glob("*.wav")} == {"demo-real-case-0", nfc, nfd}
    # A disk that folds case and normalisation (macOS, Windows) would keep one: refused before any work.
    monkeypatch.setattr(dcase9.outputs, "names_collide_on_disk", lambda folder, a, b: name_fold(a) == name_fold(b))
    separator = CountingSeparator()
    with pytest.raises(Dcase9Error, match=f"row 4: mixture id '{nfd}' and '{nfc}' of row 3 differ only by Unicode "
                       r"normalisation \(NFC/NFD\), and the disk of .* takes"):
        run(separator, data, tmp_path / "folded")
    assert separator.encoded == [] and not (tmp_path / "folded").exists()  # a refused run makes no --out
