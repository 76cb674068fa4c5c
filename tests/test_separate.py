"""`dcase9 separate` and `api.separate`: a user's recordings, any format, rate, channels and length, by a query."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml
from typer.testing import CliRunner

from tests.tiny_models import SMALL_NET, resunet_weights, system_config, tokenizer_folder, write_lightning_checkpoint
from dcase9 import api
from dcase9.cli import app
from dcase9.recordings import Query, plan_jobs, safe_name

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A narrow stand-in for the baseline in the official layout (fast: the net's numbers do not matter here),
    and the flags that load it."""
    root = tmp_path_factory.mktemp("tiny")
    config = system_config(net=SMALL_NET)
    (root / "baseline.yaml").write_text(yaml.safe_dump(config))
    assets = {"root": root, "tokenizer": tokenizer_folder(root / "tokenizer"), "config": config,
              "checkpoint": write_lightning_checkpoint(root / "baseline.ckpt", resunet=resunet_weights(net=SMALL_NET))}
    assets["flags"] = ["-s", "baseline", "--checkpoint", str(assets["checkpoint"]), "--weight",
                       f"roberta-base-tokenizer={assets['tokenizer']}", "--system-config", str(root / "baseline.yaml"),
                       "--offline"]
    return assets


def load(tiny: dict[str, Any], **engine: Any) -> Any:
    return api.load_separator("baseline", checkpoint=tiny["checkpoint"], weights={"roberta-base-tokenizer": tiny["tokenizer"]},
                              system_options=tiny["config"], offline=True, progress=False, **engine)


def noise(path: Path, rate: int, seconds: float, channels: int = 1, seed: int = 0, **write: Any) -> Path:
    """A recording of pink-ish noise (every channel different) written with soundfile."""
    rng = np.random.default_rng(seed)
    frames = int(round(rate * seconds))
    audio = np.cumsum(rng.standard_normal((frames, channels)), axis=0)
    audio = (0.3 * audio / np.max(np.abs(audio))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio[:, 0] if channels == 1 else audio, rate, **write)
    return path


def separate(*args: Any) -> Any:
    return runner.invoke(app, ["separate", *[str(a) for a in args]])


def flat(text: str) -> str:
    return " ".join(text.split())


def read(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.T, rate


def test_any_rate_and_channels_give_one_file_per_recording_and_query(tiny: dict[str, Any], tmp_path: Path) -> None:
    """Each channel separated, at the recording's rate, channels and length: what `separate` gives in memory
    for the whole file; the folder says which recording and query each output is."""
    stereo = noise(tmp_path / "in" / "Street Scene.flac", 22050, 1.3, channels=2)
    mono = noise(tmp_path / "in" / "dog.wav", 16000, 1.1, seed=1)
    out = tmp_path / "out"
    result = separate(stereo, mono, "-q", "A dog barks", "-q", "rain", "-o", out, *tiny["flags"])
    assert result.exit_code == 0, result.output
    separator = load(tiny)
    for path, name in ((stereo, "Street_Scene"), (mono, "dog")):
        mixture, rate = read(path)
        for query, slug in (("A dog barks", "a_dog_barks"), ("rain", "rain")):
            estimate, out_rate = read(out / name / f"{slug}.wav")
            assert out_rate == rate and estimate.shape == mixture.shape
            expected = separator.separate(mixture, query, sample_rate=rate)
            np.testing.assert_array_equal(estimate, expected)
            assert sf.info(out / name / f"{slug}.wav").subtype == "FLOAT"
            assert f"{out / name / f'{slug}.wav'}" in flat(result.output)
    index = (out / "separated.csv").read_text().splitlines()
    assert index[0] == "input,query,query_audio,estimate,residual" and len(index) == 5
    assert f"{stereo.resolve()},A dog barks,,Street_Scene/a_dog_barks.wav," in index
    manifest = json.loads((out / "dcase9-run.json").read_text())
    assert manifest["status"] == "complete" and manifest["inputs"] == {"kind": "recordings"}
    assert manifest["identity"]["command"] == "separate" and manifest["identity"]["system"] == "baseline"


def test_separate_file_in_memory_and_to_a_file(tiny: dict[str, Any], tmp_path: Path) -> None:
    separator = load(tiny)
    path = noise(tmp_path / "x.ogg", 24000, 1.2, channels=2, format="OGG")
    mixture, rate = read(path)
    expected = separator.separate(mixture, "rain", sample_rate=rate)
    np.testing.assert_array_equal(separator.separate_file(path, "rain"), expected)
    np.testing.assert_array_equal(separator.separate_file(path, "rain", mono=True),
                                  separator.separate(mixture.mean(axis=0, dtype=np.float32), "rain", sample_rate=rate))
    written = separator.separate_file(path, "rain", tmp_path / "est.flac")
    assert written == tmp_path / "est.flac" and sf.info(written).subtype == "PCM_24"
    np.testing.assert_allclose(read(written)[0], np.clip(expected, -1, 1), atol=2 ** -23)  # integers clip
    with pytest.raises(Exception, match="a .wav or .flac file"):
        separator.separate_file(path, "rain", tmp_path / "est.mp3")
    with pytest.raises(ValueError, match="query is empty|say what to separate"):
        separator.separate_file(path, " ")


def test_residual_formats_and_mono(tmp_path: Path) -> None:
    """The identity system (`mixture`): the estimate is the recording, so the residual is what float32 leaves."""
    path = noise(tmp_path / "in" / "take.wav", 16000, 1.0, channels=3)
    out = tmp_path / "out"
    result = separate(path, "-q", "x", "-s", "mixture", "-o", out, "--residual")
    assert result.exit_code == 0, result.output
    mixture, _ = read(path)
    np.testing.assert_array_equal(read(out / "take" / "x.wav")[0], mixture)
    assert not np.any(read(out / "take" / "x.residual.wav")[0])
    result = separate(path, "-q", "x", "-s", "mixture", "-o", tmp_path / "flac", "--format", "flac", "--pcm16",
                      "--mono")
    assert result.exit_code == 0, result.output
    info = sf.info(tmp_path / "flac" / "take" / "x.flac")
    assert (info.format, info.subtype, info.channels, info.frames) == ("FLAC", "PCM_16", 1, 16000)
    result = separate(path, "-q", "x", "-s", "mixture", "-o", tmp_path / "bad", "--format", "mp3")
    assert result.exit_code == 2 and "unknown output format 'mp3'" in result.output


def test_outputs_resume_by_infers_rules(tmp_path: Path) -> None:
    path = noise(tmp_path / "in" / "a.wav", 16000, 1.0)
    out = tmp_path / "out"
    args = [path, "-q", "x", "-s", "mixture", "-o", out]
    assert separate(*args).exit_code == 0
    estimate = out / "a" / "x.wav"
    before = estimate.stat().st_mtime_ns
    result = separate(*args)
    assert result.exit_code == 0 and "wrote 0 output(s)" in flat(result.output), result.output
    assert "(1 already there)" in flat(result.output)
    assert estimate.stat().st_mtime_ns == before
    # another recording into the same folder: the first output stays
    other = noise(tmp_path / "in" / "b.wav", 16000, 1.0, seed=3)
    assert separate(other, "-q", "x", "-s", "mixture", "-o", out).exit_code == 0
    assert estimate.stat().st_mtime_ns == before
    assert len((out / "separated.csv").read_text().splitlines()) == 3
    # the recording changes: computed again
    noise(path, 16000, 1.0, seed=7)
    assert separate(*args).exit_code == 0
    np.testing.assert_array_equal(read(estimate)[0], read(path)[0])
    # another output format in the folder is refused, as another system is
    result = separate(*args, "--pcm16")
    assert result.exit_code == 2 and "differs in: subtype" in flat(result.output)
    # a file of someone else's at an output's name is never overwritten
    (out / "a" / "y.wav").write_bytes(b"mine")
    result = separate(path, "-q", "y", "-s", "mixture", "-o", out)
    assert result.exit_code == 2 and "not written by dcase9" in result.output
    assert (out / "a" / "y.wav").read_bytes() == b"mine"


def test_bad_recordings_are_named_and_the_rest_written(tmp_path: Path) -> None:
    good = noise(tmp_path / "in" / "good.wav", 16000, 1.0)
    silent = tmp_path / "in" / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    empty = tmp_path / "in" / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    nan = noise(tmp_path / "in" / "nan.wav", 16000, 1.0, subtype="FLOAT")
    data, _ = sf.read(nan, dtype="float32")
    data[10] = np.nan
    sf.write(nan, data, 16000, subtype="FLOAT")
    text = tmp_path / "in" / "notes.wav"
    text.write_text("not audio\n")
    short = noise(tmp_path / "in" / "short.wav", 16000, 0.05)
    folder = tmp_path / "in" / "folder.wav"
    folder.mkdir()
    out = tmp_path / "out"
    result = separate(good, silent, empty, nan, text, short, folder, tmp_path / "missing.wav", "-q", "x", "-s",
                      "mixture", "-o", out)
    output = flat(result.output)
    assert result.exit_code == 1, result.output
    assert (out / "good" / "x.wav").is_file() and sorted(p.name for p in out.iterdir()) == [
        "dcase9-outputs.jsonl", "dcase9-run.json", "good", "separated.csv"]
    for fragment in (f"{silent}: silent: every one of its 16000 samples is zero",
                     f"{empty}: an empty recording (0 samples)",
                     f"{nan}: 1 NaN or infinite samples",
                     f"{text}: not audio that libsndfile",
                     f"{short}: 800 samples (0.050 s): shorter than 0.1 s",
                     f"{folder}: a folder, not a file",
                     f"{tmp_path / 'missing.wav'}: file not found"):
        assert fragment in output, fragment
    assert "Traceback" not in result.output
    # nothing usable: the command could not run
    result = separate(silent, text, "-q", "x", "-s", "mixture", "-o", tmp_path / "none")
    assert result.exit_code == 2 and "nothing to separate: 2 input(s) refused" in result.output
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["-q", " "], "an empty query (' '): say what to separate"),
    ([], "say what to separate: give a query"),
    (["-q", "x", "-s", "oracle"], "system 'oracle' separates with the reference signal"),
    (["-q", "x", "-s", "3-roundtrip"], "system '3-roundtrip' separates with the reference signal"),
    (["-q", "x", "--segment", "-1"], "--segment"),
])
def test_what_cannot_run_is_refused_before_anything(tmp_path: Path, args: list[str], message: str) -> None:
    path = noise(tmp_path / "in" / "a.wav", 16000, 1.0)
    if "-s" not in args:
        args = [*args, "-s", "mixture"]
    result = separate(path, *args, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in flat(result.output)
    assert not (tmp_path / "out").exists()


def test_out_over_an_input_is_refused(tmp_path: Path) -> None:
    path = noise(tmp_path / "in" / "a.wav", 16000, 1.0)
    table = tmp_path / "pairs.csv"
    table.write_text(f"file,query\n{path},x\n")
    for out, args, relation in ((tmp_path / "in", [path], "contains the recording"),
                                (tmp_path / "in", ["--queries", table], "contains the recording"),
                                (tmp_path, ["--queries", table], "contains --queries"),
                                (path, [path], "is a file, not a folder")):
        result = separate(*args, "-q", "x", "-s", "mixture", "-o", out) if "--queries" not in args else \
            separate(*args, "-s", "mixture", "-o", out)
        assert result.exit_code == 2 and relation in flat(result.output), result.output
    assert sorted(os.listdir(tmp_path / "in")) == ["a.wav"]


def test_a_queries_file_of_pairs(tmp_path: Path) -> None:
    a = noise(tmp_path / "in" / "a.wav", 16000, 1.0)
    noise(tmp_path / "in" / "b.flac", 44100, 1.0, channels=2)
    table = tmp_path / "in" / "pairs.csv"
    table.write_text("file,query\na.wav,a dog barks\nb.flac,rain\nb.flac,  \n,rain\n" + f"{a},a dog barks\n")
    out = tmp_path / "out"
    result = separate("--queries", table, "-s", "mixture", "-o", out)
    output = flat(result.output)
    assert result.exit_code == 1, result.output
    assert f"{table}, row 4, field 'query': an empty query" in output and f"{table}, row 5, field 'file'" in output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.wav")) == ["a/a_dog_barks.wav", "b/rain.wav"]
    table.write_text("recording,caption\n")
    assert separate("--queries", table, "-s", "mixture", "-o", out).exit_code == 2
    table.write_text("name,words\na.wav,x\n")
    result = separate("--queries", table, "-s", "mixture", "-o", out)
    assert result.exit_code == 2 and "no file column" in result.output


def test_names_say_which_recording_and_query_and_never_collide(tmp_path: Path) -> None:
    assert safe_name("A dog barks!", lower=True) == "a_dog_barks"
    assert safe_name("../../etc/passwd", lower=False) == "etc_passwd"
    assert safe_name("雨が降る", lower=True) == "雨が降る"
    assert safe_name("con", lower=True) == "con_"
    assert safe_name("!!!", lower=True) == ""
    assert len(safe_name("a dog " * 100, lower=True).encode()) <= 80
    first, second = tmp_path / "a" / "x.wav", tmp_path / "b" / "X.flac"
    jobs = plan_jobs([(first, Query("A dog"), None), (second, Query("a dog!"), None), (first, Query("rain"), None),
                      (first, Query("!!!"), None)])
    ids = [job.id for job in jobs]
    assert len(set(ids)) == 4 and all(i.count("/") == 1 for i in ids)
    assert ids[0].startswith("x-") and ids[1].startswith("X-") and ids[0].split("/")[1].startswith("a_dog-")
    assert ids[2].endswith("/rain") and ids[3].endswith("/query")
    # names depend on the file and the query alone: the same inputs give the same names again
    assert [job.id for job in plan_jobs([(first, Query("A dog"), None), (second, Query("a dog!"), None)])] == ids[:2]


@pytest.mark.parametrize(("rate", "channels", "mono", "batch_size", "block"), [
    (22050, 2, False, 1, 4099),  # resampled both ways, blocks that end anywhere
    (16000, 1, False, 1, 1000),  # the model's rate: no resampling
    (48000, 3, True, 1, 65536),  # mixed down first
    (11025, 3, False, 2, 3000),  # channels in batches of two
])
def test_long_recordings_stream_and_equal_the_whole_file(tiny: dict[str, Any], tmp_path: Path, rate: int, channels: int,
                                                         mono: bool, batch_size: int, block: int) -> None:
    """Read in blocks, cut into the chunks `chunk_starts` gives for the whole file: sample for sample what
    `separate` gives for the whole file in memory, for every query."""
    from dcase9.audio import probe_recording, read_recording

    separator = load(tiny, segment=1.0, overlap=0.25, batch_size=batch_size)
    recording = probe_recording(noise(tmp_path / "long.wav", rate, 3.3, channels=channels, subtype="FLOAT"))
    parts = list(separator.separate_recording(recording, ["a dog barks", "rain"], mono=mono, block_frames=block))
    assert len(parts) == 5  # one per chunk of 1 s, 0.75 s apart, over 3.3 s
    whole = read_recording(recording, mono=mono)
    np.testing.assert_array_equal(np.concatenate([mixture for mixture, _ in parts], axis=1), whole)
    for k, query in enumerate(["a dog barks", "rain"]):
        streamed = np.concatenate([estimates[k] for _, estimates in parts], axis=1)
        np.testing.assert_array_equal(streamed, separator.separate(whole, query, sample_rate=rate))


def test_the_command_streams_and_segment_0_runs_the_whole_file(tiny: dict[str, Any], tmp_path: Path) -> None:
    path = noise(tmp_path / "in" / "long.flac", 44100, 2.6, channels=2)
    mixture, rate = read(path)
    for segment, name in (("1", "chunked"), ("0", "whole")):
        result = separate(path, "-q", "rain", "-o", tmp_path / name, "--segment", segment, *tiny["flags"])
        assert result.exit_code == 0, result.output
        expected = load(tiny, segment=float(segment)).separate(mixture, "rain", sample_rate=rate)
        np.testing.assert_array_equal(read(tmp_path / name / "long" / "rain.wav")[0], expected)
    assert not np.array_equal(read(tmp_path / "chunked" / "long" / "rain.wav")[0],
                              read(tmp_path / "whole" / "long" / "rain.wav")[0])


def test_a_long_recording_is_never_held_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten minutes at 44.1 kHz (106 MB as float samples) through the identity system in 10 s chunks: the
    first estimate comes out after a few blocks, and the samples held at once stay near one chunk's."""
    import tracemalloc

    import dcase9.engine
    from dcase9.audio import probe_recording, read_blocks

    path = tmp_path / "ten-minutes.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=44100, channels=1, subtype="FLOAT") as audio:
        for _ in range(60):
            audio.write((0.1 * rng.standard_normal(441000)).astype(np.float32))
    read_so_far = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        for block in read_blocks(*args, **kwargs):
            read_so_far.append(block.shape[-1])
            yield block

    monkeypatch.setattr(dcase9.engine, "read_blocks", counting)
    separator = api.load_separator("mixture", segment=10.0, progress=False)
    recording = probe_recording(path)
    tracemalloc.start()
    try:
        stream = separator.separate_recording(recording, ["x"])
        _, (first,) = next(stream)
        assert sum(read_so_far) < 20 * 44100  # the first chunk's input, not the file
        written = first.shape[-1] + sum(estimate.shape[-1] for _, (estimate,) in stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == recording.frames == sum(read_so_far)
    assert peak < 30e6, f"{peak / 1e6:.0f} MB held at once for a {4 * recording.frames / 1e6:.0f} MB recording"


def audiosep_audio_query(encoder: Any, path: Path) -> Any:
    """AudioSep's audio query, emulated from its code's facts: the example as `librosa.load(path, sr=32000,
    mono=True)` reads it (soundfile's float32 samples, the mean over channels, soxr HQ, cut or padded to
    ceil(n * 32000 / rate)); `torchaudio.functional.resample` to CLAP's rate (Hann sinc, 6 zero crossings,
    roll-off 0.99: `sinc_resample` is that algorithm); `repeatpad` to one clip (tiled int(clip / n) times,
    then zero-padded); the audio tower, its projection, L2 normalisation."""
    import math

    import soxr
    import torch

    from dcase9.audio import sinc_resample

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = np.mean(data, axis=1) if data.shape[1] > 1 else data[:, 0]
    at_32k = soxr.resample(mono, rate, 32000, quality="HQ")
    length = math.ceil(len(mono) * 32000 / rate)
    at_32k = np.pad(at_32k, (0, max(0, length - len(at_32k))))[:length].astype(np.float32)
    waveform = sinc_resample(torch.from_numpy(at_32k), 32000, encoder.sample_rate)
    clip = encoder.front_end.clip_samples
    assert len(waveform) <= clip, "AudioSep takes a random crop of a longer example"
    waveform = waveform.repeat(int(clip / len(waveform)))
    waveform = torch.nn.functional.pad(waveform, (0, clip - len(waveform)))
    return encoder.embed_clips(waveform[None])[0]


def test_an_audio_example_is_embedded_as_audiosep_embeds_it(tiny: dict[str, Any], tmp_path: Path) -> None:
    import torch

    separator = load(tiny, audio_queries=True)
    assert separator.model.clap.has_audio_tower
    example = noise(tmp_path / "bark.wav", 22050, 0.7, channels=2, seed=5)  # shorter than the tiny CLAP's 1 s clip
    data, rate = read(example)
    expected = audiosep_audio_query(separator.model.clap, example)
    embedded = separator.embed_query(audio=data, sample_rate=rate)
    torch.testing.assert_close(embedded, expected, atol=1e-6, rtol=0)
    text = separator.embed_query("a dog barks")
    both = separator.embed_query("a dog barks", audio=data, sample_rate=rate)
    torch.testing.assert_close(both, torch.nn.functional.normalize(text + embedded, dim=-1))
    assert abs(float(both @ text) - float(both @ embedded)) < 1e-5  # halfway between them, unit norm
    assert abs(float(both.norm()) - 1) < 1e-6
    # the in-memory and file forms of the API take it as `query_audio`
    mixture, mixture_rate = read(noise(tmp_path / "mix.wav", 16000, 1.2, seed=6))
    by_conditions = separator.separate(mixture, conditions=both, sample_rate=mixture_rate)
    np.testing.assert_array_equal(separator.separate(mixture, "a dog barks", query_audio=(data, rate),
                                                     sample_rate=mixture_rate), by_conditions)
    np.testing.assert_array_equal(separator.separate_file(tmp_path / "mix.wav", "a dog barks", query_audio=example),
                                  by_conditions[0])  # one channel: (samples,)
    # a separator built for text queries has no audio tower to embed an example with
    with pytest.raises(Exception, match=r"audio_queries=True"):
        load(tiny).embed_query(audio=data, sample_rate=rate)


def test_queries_by_example_and_by_text_and_example(tiny: dict[str, Any], tmp_path: Path) -> None:
    recording = noise(tmp_path / "in" / "park.wav", 16000, 1.2)
    example = noise(tmp_path / "examples" / "Bark 1.wav", 44100, 0.5, seed=2)
    out = tmp_path / "out"
    result = separate(recording, "--query-audio", example, "-o", out, *tiny["flags"])
    assert result.exit_code == 0, result.output
    result = separate(recording, "-q", "a dog barks", "--query-audio", example, "-o", out, *tiny["flags"])
    assert result.exit_code == 0, result.output
    separator = load(tiny, audio_queries=True)
    data, rate = read(example)
    mixture, _ = read(recording)
    for name, text in (("audio-bark_1", None), ("a_dog_barks+audio-bark_1", "a dog barks")):
        expected = separator.separate(mixture, conditions=separator.embed_query(text, audio=data, sample_rate=rate),
                                      sample_rate=16000)
        np.testing.assert_array_equal(read(out / "park" / f"{name}.wav")[0], expected)
    index = (out / "separated.csv").read_text()
    assert f",a dog barks,{example.resolve()},park/a_dog_barks+audio-bark_1.wav," in index
    # refused: unpaired texts and examples, an example that is no audio, a system that takes no query
    result = separate(recording, "-q", "a", "-q", "b", "--query-audio", example, "-o", out, *tiny["flags"])
    assert result.exit_code == 2 and "2 -q text(s) and 1 --query-audio example(s)" in flat(result.output)
    silent = tmp_path / "examples" / "silent.wav"
    sf.write(silent, np.zeros(8000, dtype=np.float32), 16000)
    result = separate(recording, "--query-audio", silent, "-o", out, *tiny["flags"])
    assert result.exit_code == 2 and f"{silent}: silent" in flat(result.output) and "(an audio example" in result.output
    result = separate(recording, "--query-audio", example, "-s", "mixture", "-o", tmp_path / "m")
    assert result.exit_code == 2 and "system 'mixture' takes no query" in flat(result.output)
    # a --queries file may give examples too (relative to its folder)
    table = tmp_path / "in" / "pairs.csv"
    table.write_text(f"file,query,query_audio\npark.wav,,{example}\npark.wav,rain,\n")
    result = separate("--queries", table, "-o", out, *tiny["flags"])
    assert result.exit_code == 0 and "(1 already there)" in flat(result.output), result.output
    assert (out / "park" / "rain.wav").is_file()


def test_system_2_on_a_32khz_file_equals_audiosep_s_own_pipeline(tmp_path: Path) -> None:
    """`dcase9 separate -s 2 --segment 0` on a 32 kHz mono recording gives what AudioSep's `separate_audio` gives
    with the same weights (its loading, 512-token text embedding, one forward pass), to >= 60 dB; its 16-bit
    file, sample for sample wherever AudioSep's int16 cast does not wrap around."""
    from benchmarks.separate import TINY_STFT, AudioSepPipeline

    config = system_config(TINY_STFT)
    (tmp_path / "2.yaml").write_text(yaml.safe_dump(config))
    checkpoint = write_lightning_checkpoint(tmp_path / "audiosep.ckpt", resunet=resunet_weights(**TINY_STFT))
    tokenizer = tokenizer_folder(tmp_path / "tokenizer")
    path = noise(tmp_path / "in" / "street.wav", 32000, 10.5)  # longer than System 2's 10 s chunks
    flags = ["-q", "a dog barks", "-s", "2", "--segment", "0", "--checkpoint", checkpoint, "--weight",
             f"roberta-base-tokenizer={tokenizer}", "--system-config", tmp_path / "2.yaml", "--offline"]
    for out, extra in ((tmp_path / "float", []), (tmp_path / "pcm16", ["--pcm16"])):
        result = separate(path, *flags, *extra, "-o", out)
        assert result.exit_code == 0, result.output
    ours, rate = read(tmp_path / "float" / "street" / "a_dog_barks.wav")
    pipeline = AudioSepPipeline(checkpoint, tokenizer, clap=config["clap"], stft=TINY_STFT)
    theirs = pipeline.separate(path, "a dog barks")
    assert rate == 32000 and ours.shape == (1, len(theirs))
    error = ours[0].astype(np.float64) - theirs
    snr = 10 * np.log10(np.sum(theirs.astype(np.float64) ** 2) / np.sum(error ** 2))
    assert snr >= 60, f"{snr:.1f} dB"
    pipeline.separate_audio(path, "a dog barks", tmp_path / "audiosep.wav")
    theirs_16, _ = sf.read(tmp_path / "audiosep.wav", dtype="int16")
    ours_16, _ = sf.read(tmp_path / "pcm16" / "street" / "a_dog_barks.wav", dtype="int16")
    inside = np.abs(theirs) < 1  # beyond, AudioSep's int16 cast wraps around where a 16-bit WAV clips
    assert np.max(np.abs(ours_16[inside].astype(int) - theirs_16[inside])) <= 1
