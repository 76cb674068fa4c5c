"""`api.load_separator`: a system in memory, on arrays or tensors, giving exactly what `dcase9 infer` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from tests.tiny_models import resunet_weights, system_config, tokenizer_folder, write_lightning_checkpoint
from dcase9 import api
from dcase9.cli import app
from dcase9.data.formats import open_dataset
from dcase9.data.items import ItemLoader

runner = CliRunner()
LIMIT = 3


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("api")
    configs = {"baseline": system_config(), "2": system_config({"n_fft": 512, "hop_length": 128})}
    for name, config in configs.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return {"root": root, "configs": configs, "tokenizer": tokenizer_folder(root / "tokenizer"),
            "baseline": write_lightning_checkpoint(root / "baseline.ckpt"),
            "2": write_lightning_checkpoint(root / "audiosep.ckpt", resunet=resunet_weights(512, 128))}


def infer(assets: dict[str, Any], system: str, data: Path, out: Path, *extra: str) -> Path:
    args = ["infer", "--system", system, "--data", str(data), "--out", str(out), "--limit", str(LIMIT), "--offline"]
    if system in ("baseline", "2"):
        args += ["--checkpoint", str(assets[system]), "--weight", f"roberta-base-tokenizer={assets['tokenizer']}",
                 "--system-config", str(assets["root"] / f"{system}.yaml")]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    return out


def load(assets: dict[str, Any], system: str, **engine: Any) -> Any:
    if system not in ("baseline", "2"):
        return api.load_separator(system, offline=True, progress=False, **engine)
    return api.load_separator(system, checkpoint=assets[system], weights={"roberta-base-tokenizer": assets["tokenizer"]},
                              system_options=assets["configs"][system], offline=True, progress=False, **engine)


def items(data: Path) -> list[Any]:
    dataset = open_dataset(data)
    loader = ItemLoader(dataset)
    return [loader.load(spec) for spec in dataset.mixtures[:LIMIT]]


def written(folder: Path, item: Any) -> np.ndarray:
    audio, rate = sf.read(folder / f"{item.spec.id}.wav", dtype="float32")
    assert rate == 16000
    return audio


@pytest.mark.parametrize(("system", "subset", "engine"), [
    ("baseline", "validation", {}),
    ("baseline", "eval-real", {"segment": 3.0, "overlap": 0.5}),  # chunked and cross-faded
    ("2", "validation", {}),  # 32 kHz: soxr HQ in and out
    ("2", "eval-synth", {"resampler": "julius"}),  # 32 kHz: julius on the device
    ("mixture", "eval-synth", {}),
])
def test_separate_in_memory_equals_infer_sample_for_sample(assets: dict[str, Any], demo_root: Path, tmp_path: Path,
                                                           system: str, subset: str, engine: dict[str, Any]) -> None:
    flags = [f"--{key}={value}" for key, value in engine.items()]
    folder = infer(assets, system, demo_root / subset, tmp_path / "est", *flags)
    separator = load(assets, system, **engine)
    assert separator.system == system
    for item in items(demo_root / subset):
        estimate = separator.separate(item.mixture, item.spec.query, sample_rate=16000)
        assert isinstance(estimate, np.ndarray) and estimate.dtype == np.float32
        assert np.array_equal(estimate, written(folder, item)), item.spec.id


def test_batches_lists_and_tensors_give_the_same_samples(assets: dict[str, Any], demo_root: Path,
                                                         tmp_path: Path) -> None:
    folder = infer(assets, "baseline", demo_root / "validation", tmp_path / "est")
    separator = load(assets, "baseline")
    loaded = items(demo_root / "validation")
    expected = np.stack([written(folder, item) for item in loaded])
    batch = np.stack([item.mixture for item in loaded])
    queries = [item.spec.query for item in loaded]
    assert np.array_equal(separator.separate(batch, queries, sample_rate=16000), expected)
    tensor = separator.separate(torch.from_numpy(batch), queries, sample_rate=16000)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32 and tensor.device == torch.device("cpu")
    assert np.array_equal(tensor.numpy(), expected)
    one = separator.separate(torch.from_numpy(loaded[0].mixture), queries[0], sample_rate=16000)
    assert one.shape == loaded[0].mixture.shape and np.array_equal(one.numpy(), expected[0])
    # One query for every row.
    same = separator.separate(np.stack([loaded[0].mixture] * 2), queries[0], sample_rate=16000)
    assert np.array_equal(same, np.stack([expected[0]] * 2))


def test_reference_based_systems_take_the_reference(assets: dict[str, Any], demo_root: Path, tmp_path: Path) -> None:
    folder = infer(assets, "oracle", demo_root / "validation", tmp_path / "est")
    separator = load(assets, "oracle")
    for item in items(demo_root / "validation"):
        estimate = separator.separate(item.mixture, item.spec.query, reference=item.reference, sample_rate=16000)
        assert np.array_equal(estimate, written(folder, item))
    with pytest.raises(ValueError, match="reference="):
        separator.separate(item.mixture, item.spec.query, sample_rate=16000)


def test_bad_inputs_are_refused_with_a_message(assets: dict[str, Any]) -> None:
    from dcase9.errors import Dcase9Error

    separator = load(assets, "mixture")
    with pytest.raises(ValueError, match="2 mixture.*3 queries"):
        separator.separate(np.zeros((2, 16000), dtype=np.float32), ["a", "b", "c"], sample_rate=16000)
    with pytest.raises(ValueError, match=r"\(samples,\) or \(batch, samples\)"):
        separator.separate(np.zeros((1, 2, 16000), dtype=np.float32), "a", sample_rate=16000)
    noisy = np.zeros(16000, dtype=np.float32)
    noisy[5] = np.nan
    with pytest.raises(Dcase9Error, match="mixture 0 has 1 NaN"):
        separator.separate(noisy, "a", sample_rate=16000)


def test_the_api_builds_every_system_through_load_separator(demo_root: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """One way to build a system: `api.infer` and `api.load_separator` both go through
    `dcase9.systems.load_separator` (its checks, its layered options, its identity)."""
    import dcase9.systems

    calls: list[str] = []
    real = dcase9.systems.load_separator

    def spy(system: str, **kwargs: Any) -> Any:
        calls.append(system)
        return real(system, **kwargs)

    monkeypatch.setattr(dcase9.systems, "load_separator", spy)
    api.load_separator("mixture", progress=False)
    api.infer("mixture", demo_root / "eval-real", tmp_path / "est", limit=1, progress=False)
    assert calls == ["mixture", "mixture"]


def test_the_sample_rate_is_required_and_outputs_come_back_at_it(assets: dict[str, Any]) -> None:
    """Audio in memory has no rate of its own: `sample_rate` is required (a 44.1 kHz array can no longer be
    taken for 16 kHz), and the estimates come back at it, in the input's length."""
    separator = load(assets, "mixture")
    mixture = np.sin(np.arange(44100, dtype=np.float32) / 7).astype(np.float32)
    with pytest.raises(TypeError, match="sample_rate"):
        separator.separate(mixture, "a")  # type: ignore[call-arg]
    for bad in (0, 44100.5, 10**7, "44100"):
        with pytest.raises(ValueError, match="sample_rate"):
            separator.separate(mixture, "a", sample_rate=bad)
    estimate = separator.separate(mixture, "a", sample_rate=44100)
    assert estimate.shape == mixture.shape
    # The identity system at 16 kHz: 44.1 -> 16 -> 44.1 kHz (soxr HQ) keeps a 1 kHz tone, away from the edges.
    assert np.max(np.abs(estimate - mixture)[2000:-2000]) < 1e-3


def test_a_tensor_on_a_device_stays_there(assets: dict[str, Any]) -> None:
    """A tensor that is not on the CPU is resampled and separated where it lies, never copied to the host
    (on the meta device any host copy fails)."""
    separator = api.load_separator("mixture", device="meta", progress=False)
    mixture = torch.zeros(2, 44100, device="meta")
    estimate = separator.separate(mixture, sample_rate=44100)
    assert estimate.is_meta and estimate.shape == mixture.shape


def test_conditions_given_instead_of_queries(assets: dict[str, Any], demo_root: Path) -> None:
    """Precomputed query embeddings give what the text queries give."""
    separator = load(assets, "baseline")
    item = items(demo_root / "validation")[0]
    by_text = separator.separate(item.mixture, item.spec.query, sample_rate=16000)
    conditions = separator.model.encode_queries([item.spec.query])
    assert np.array_equal(separator.separate(item.mixture, conditions=conditions, sample_rate=16000), by_text)
    with pytest.raises(ValueError, match="queries or conditions"):
        separator.separate(item.mixture, "x", conditions=conditions, sample_rate=16000)
