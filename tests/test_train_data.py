"""Training data: datafile checks, clip cutting, skipped clips, the resumable weighted sampler."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dcase9.errors import DataError
from dcase9.training.config import DatafileSpec
from dcase9.training.data import (MISSING, NON_FINITE, TOO_SHORT, UNREADABLE, ClipDataset, SkipLog, TrainSampler,
                                   check_audio_present, collate_clips, read_datafile, read_datafiles)


def write_json(path: Path, payload: object) -> Path:
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono, -0.5 * mono], axis=1)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON (line 1"),
    ('{"items": []}', 'expected an object {"data"'),
    ('{"data": []}', "the 'data' list is empty"),
    ('{"data": [{"wav": "a.wav", "caption": "x"}, {"wav": "b.wav"}]}', "field 'data[1].caption'"),
    ('{"data": [{"wav": "", "caption": "x"}]}', "field 'data[0].wav'"),
    ('{"data": ["a.wav"]}', "field 'data[0]'"),
])
def test_bad_datafiles_are_errors_naming_file_and_item(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "train.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.json") as error:
        read_datafile(DatafileSpec(path=str(path)), 0)
    assert message in str(error.value)


def test_no_datafiles_is_an_error() -> None:
    with pytest.raises(DataError, match="--data"):
        read_datafiles([])


def test_relative_wavs_resolve_next_to_the_json_then_in_the_working_directory(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "set" / "audio").mkdir(parents=True)
    (tmp_path / "cwd").mkdir()
    sf.write(tmp_path / "set" / "audio" / "a.wav", tone(1, 16000), 16000)
    sf.write(tmp_path / "cwd" / "b.wav", tone(1, 16000), 16000)
    datafile = read_datafile(DatafileSpec(path=str(write_json(tmp_path / "set" / "train.json", {"data": [
        {"wav": "audio/a.wav", "caption": "a"}, {"wav": "b.wav", "caption": "b"},
        {"wav": str(tmp_path / "set" / "audio" / "a.wav"), "caption": "absolute"}]}))), 0)
    monkeypatch.chdir(tmp_path / "cwd")
    assert datafile.resolve("audio/a.wav") == tmp_path / "set" / "audio" / "a.wav"
    assert datafile.resolve("b.wav") == tmp_path / "cwd" / "b.wav"
    assert datafile.resolve(datafile.items[2].wav) == tmp_path / "set" / "audio" / "a.wav"
    assert datafile.resolve("nope.wav") is None
    rooted = read_datafile(DatafileSpec(path=str(tmp_path / "set" / "train.json"),
                                        audio_root=str(tmp_path / "set" / "audio")), 0)
    assert rooted.resolve("a.wav") == tmp_path / "set" / "audio" / "a.wav"


def test_a_datafile_whose_audio_is_nowhere_fails_before_training(tmp_path: Path) -> None:
    datafile = read_datafile(DatafileSpec(path=str(write_json(tmp_path / "train.json", {"data": [
        {"wav": f"clips/{i}.wav", "caption": "c"} for i in range(5)]}))), 0)
    with pytest.raises(DataError, match="none of 5 sampled clips exists.*audio_root"):
        check_audio_present([datafile])


@pytest.fixture()
def clip_folder(tmp_path: Path) -> Path:
    """Good clips (long, short, stereo 44.1 kHz) and every kind of bad one."""
    sf.write(tmp_path / "long.wav", tone(3.0, 16000), 16000)
    sf.write(tmp_path / "short.wav", tone(0.7, 16000, 1000), 16000)
    sf.write(tmp_path / "stereo44k.flac", tone(2.0, 44100, 300, channels=2), 44100)
    sf.write(tmp_path / "tiny.wav", tone(0.3, 16000), 16000)
    nan = tone(1.0, 16000)
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    (tmp_path / "garbage.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    rows = [{"wav": name, "caption": name} for name in
            ("long.wav", "short.wav", "stereo44k.flac", "tiny.wav", "nan.wav", "garbage.wav", "missing.wav")]
    write_json(tmp_path / "train.json", {"data": rows})
    return tmp_path


def dataset_for(folder: Path, segment: int = 16000, **kwargs: object) -> ClipDataset:
    datafiles = read_datafiles([DatafileSpec(path=str(folder / "train.json"))])
    return ClipDataset(datafiles, sample_rate=16000, segment_samples=segment, min_seconds=0.5, seed=7, **kwargs)


def test_clips_are_cropped_padded_mono_and_resampled(clip_folder: Path) -> None:
    dataset = dataset_for(clip_folder)
    long = dataset[(0, 0)]
    assert long["waveform"].shape == (16000,) and long["caption"] == "long.wav" and long["skipped"] == []
    full, _ = sf.read(clip_folder / "long.wav", dtype="float32")
    start = int(np.argmin([np.abs(full[s:s + 16000] - long["waveform"].numpy()).max() for s in range(0, 32001)]))
    np.testing.assert_array_equal(long["waveform"].numpy(), full[start:start + 16000])  # an exact crop
    short = dataset[(1, 0)]["waveform"].numpy()
    np.testing.assert_allclose(short[:11200], tone(0.7, 16000, 1000), atol=1e-4)
    assert not short[11200:].any()  # zero-padded at the end
    stereo = dataset[(2, 0)]["waveform"].numpy()
    assert stereo.shape == (16000,)
    assert 0.12 < np.abs(stereo).max() < 0.13  # mean of 0.5 sin and -0.25 sin: a 0.125 peak
    spectrum = np.abs(np.fft.rfft(stereo))
    assert abs(int(np.argmax(spectrum)) - 300) <= 1  # 1 Hz bins: still a 300 Hz tone after resampling


def test_same_key_same_clip_other_position_other_crop(clip_folder: Path) -> None:
    dataset = dataset_for(clip_folder)
    assert np.array_equal(dataset[(0, 5)]["waveform"], dataset[(0, 5)]["waveform"])
    crops = {dataset[(0, p)]["waveform"].numpy().tobytes() for p in range(6)}
    assert len(crops) > 1


def test_unusable_clips_are_skipped_counted_and_replaced(clip_folder: Path) -> None:
    dataset = dataset_for(clip_folder)
    log = SkipLog()
    for index, expected in ((3, TOO_SHORT), (4, NON_FINITE), (5, UNREADABLE), (6, MISSING)):
        sample = dataset[(index, 11)]
        assert sample["waveform"].shape == (16000,) and sample["caption"] in {"long.wav", "short.wav", "stereo44k.flac"}
        assert sample["skipped"][0].reason == expected and sample["skipped"][0].position == index
        log.add(sample["skipped"])
    summary = log.summary()
    assert summary["skipped_draws"] >= 4
    assert {MISSING, NON_FINITE, TOO_SHORT, UNREADABLE} <= set(summary["by_reason"])
    assert "missing.wav" in summary["by_reason"][MISSING]["examples"][0]
    batch = collate_clips([dataset[(3, 1)], dataset[(0, 2)]])
    assert batch["waveform"].shape == (2, 16000) and len(batch["skipped"]) >= 1


def test_only_a_long_run_of_failures_stops_training(clip_folder: Path) -> None:
    write_json(clip_folder / "train.json", {"data": [{"wav": "missing.wav", "caption": "c"},
                                                     {"wav": "tiny.wav", "caption": "c"}]})
    with pytest.raises(DataError, match="5 clips in a row could not be used"):
        dataset_for(clip_folder, max_failed_draws=5)[(0, 0)]


def test_skip_logs_merge_across_processes() -> None:
    from dcase9.training.data import Skip

    first, second = SkipLog(), SkipLog()
    first.add([Skip(0, 1, MISSING, "a.wav"), Skip(0, 1, MISSING, "a.wav")])
    second.add([Skip(0, 1, MISSING, "a.wav"), Skip(1, 4, TOO_SHORT, "b.wav")])
    first.merge(second)
    summary = first.summary()
    assert summary["skipped_draws"] == 4
    assert summary["by_reason"][MISSING] == {"draws": 3, "distinct_items": 1, "examples": ["a.wav"]}


def take(sampler: TrainSampler, count: int) -> list[tuple[int, int]]:
    return list(itertools.islice(iter(sampler), count))


def test_sampler_epochs_are_permutations_and_reproducible() -> None:
    sampler = TrainSampler([6, 4], [1.0, 1.0], batch_size=2, seed=3)
    stream = take(sampler, 30)
    assert [p for _, p in stream] == list(range(30))
    for epoch in range(3):
        assert sorted(i for i, _ in stream[10 * epoch:10 * epoch + 10]) == list(range(10))
    assert stream[:10] != stream[10:20]
    assert take(TrainSampler([6, 4], [1.0, 1.0], batch_size=2, seed=3), 30) == stream
    assert take(TrainSampler([6, 4], [1.0, 1.0], batch_size=2, seed=4), 30) != stream


def test_sampler_resumes_exactly_where_it_stopped() -> None:
    stream = take(TrainSampler([7, 5], [1.0, 1.0], batch_size=3, seed=0), 60)
    resumed = take(TrainSampler([7, 5], [1.0, 1.0], batch_size=3, seed=0, start_batch=9), 33)
    assert resumed == stream[27:60]


def test_sampler_weights_repeat_or_subsample_datafiles() -> None:
    sampler = TrainSampler([10, 20, 8], [2.0, 0.5, 1.5], batch_size=4, seed=1)
    assert sampler.epoch_length == 20 + 10 + 12
    counts = Counter(sampler.epoch_order(0).tolist())
    assert all(counts[i] == 2 for i in range(10))
    assert sum(1 for i in range(10, 30) if counts[i]) == 10 and all(counts[i] <= 1 for i in range(10, 30))
    assert all(counts[i] >= 1 for i in range(30, 38)) and sum(counts[i] for i in range(30, 38)) == 12
    halves = {tuple(sorted(i for i in sampler.epoch_order(e).tolist() if 10 <= i < 30)) for e in range(4)}
    assert len(halves) > 1  # a different half each epoch


def test_sampler_shards_global_batches_across_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    single = take(TrainSampler([9, 9], [1.0, 1.0], batch_size=6, seed=5), 60)
    shards = []
    for rank in range(3):
        monkeypatch.setattr(TrainSampler, "_rank_and_world", staticmethod(lambda rank=rank: (rank, 3)))
        shards.append(take(TrainSampler([9, 9], [1.0, 1.0], batch_size=2, seed=5), 20))
    # global batch k = rank 0's k-th batch, then rank 1's, then rank 2's
    interleaved = [draw for k in range(10) for rank in range(3) for draw in shards[rank][2 * k:2 * k + 2]]
    assert interleaved == single
