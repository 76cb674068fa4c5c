"""Training data: caption-audio files, clips cut as the baseline cuts them, a resumable sampler.

- `read_datafile`: a file in the baseline's format `{"data": [{"wav": ..., "caption": ...}]}` (the
  originals and `dcase9 augment`'s `augmented.json`); a file that is not valid JSON, lacks `data`,
  or has an item without a non-empty `wav` / `caption` string is an error naming the file and item.
- `ClipDataset`: one training clip per draw: read, made mono (mean of channels), resampled to the
  model rate, cut at a random offset to the segment length or zero-padded at the end. Missing,
  unreadable, non-finite or too-short (< `min_clip_seconds`) files are skipped: another item is
  drawn at random, as the baseline does, and the skip is reported with the batch so the run can
  count it (in any worker process). Only `max_failed_draws` failures in a row stop the run.
- `TrainSampler`: an endless, seeded stream of draws. Epoch e is a permutation of the weighted
  item list (a datafile of weight w contributes each item floor(w) times plus a random
  (w - floor(w)) share); global batch k of the run is positions [k*B*W, (k+1)*B*W) of the stream,
  split across the W processes. A draw's position also seeds its crop, so a run resumed at step k
  sees exactly the data an uninterrupted run would have.

Only the part of a file that is needed is read (soundfile seeks), which matters for long WavCaps
clips. Resampling uses soxr "HQ" (what librosa uses); the baseline used torchaudio's sinc
resampler, a difference far below what changes training. The baseline compared the raw sample
count with 0.5 s at the model rate; we compare durations in seconds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from dcase9.audio import resample_hq
from dcase9.data.captions import read_caption_rows
from dcase9.errors import DataError
from dcase9.training.config import DatafileSpec

# Why a clip was skipped.
MISSING = "missing"
UNREADABLE = "unreadable"
TOO_SHORT = "too-short"
NON_FINITE = "non-finite"


@dataclass(frozen=True)
class TrainItem:
    wav: str  # as written in the datafile
    caption: str
    datafile: int  # index of the datafile in the run's list
    position: int  # index in that file's "data" list


@dataclass
class Datafile:
    path: Path
    weight: float
    audio_root: Path | None
    items: list[TrainItem]

    def candidates(self, wav: str) -> list[Path]:
        """Where a `wav` entry may be: absolute as is; relative under audio_root (when given) or next
        to the JSON file, then in the working directory."""
        path = Path(wav).expanduser()
        if path.is_absolute():
            return [path]
        first = (self.audio_root or self.path.parent) / path
        second = Path.cwd() / path
        # One place when the working directory is that folder (a message would name it twice).
        return [first] if first.resolve() == second.resolve() else [first, second]

    def resolve(self, wav: str) -> Path | None:
        for candidate in self.candidates(wav):
            if candidate.is_file():
                return candidate
        return None


def read_datafile(spec: DatafileSpec, index: int) -> Datafile:
    path = Path(spec.path)
    rows = read_caption_rows(path, what="training datafile")
    items = [TrainItem(row["wav"], row["caption"], index, position) for position, row in enumerate(rows)]
    root = Path(spec.audio_root) if spec.audio_root else None
    return Datafile(path, spec.weight, root, items)


def read_datafiles(specs: Sequence[DatafileSpec]) -> list[Datafile]:
    if not specs:
        raise DataError("no training data: pass caption-audio JSON files with --data (or data.datafiles)")
    return [read_datafile(spec, i) for i, spec in enumerate(specs)]


def check_audio_present(datafiles: Sequence[Datafile], sample: int = 200, seed: int = 0) -> None:
    """Fail early, before any training, when none of a datafile's sampled clips can be found:
    a wrong audio_root or working directory is more likely than a whole data set gone missing."""
    rng = np.random.default_rng(seed)
    for datafile in datafiles:
        picks = rng.choice(len(datafile.items), size=min(sample, len(datafile.items)), replace=False)
        if not any(datafile.resolve(datafile.items[int(i)].wav) for i in picks):
            example = datafile.items[int(picks[0])].wav
            tried = ", ".join(str(p) for p in datafile.candidates(example))
            raise DataError(f"none of {len(picks)} sampled clips exists (e.g. '{example}', looked for {tried}); "
                            "set audio_root for this datafile (--data FILE with data.datafiles[].audio_root in "
                            "a config) or run from the folder the paths are relative to", file=datafile.path)


class ClipUnusable(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def read_segment(path: Path, sample_rate: int, segment_samples: int, min_seconds: float,
                 rng: np.random.Generator) -> np.ndarray:
    """A `segment_samples` float32 mono segment of `path` at `sample_rate`: a random crop of a longer
    clip, or the whole clip zero-padded at the end."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise ClipUnusable(UNREADABLE, f"{path}: {exc}") from None
    if info.frames <= 0 or info.samplerate <= 0 or info.frames / info.samplerate < min_seconds:
        raise ClipUnusable(TOO_SHORT, f"{path}: {info.frames / max(info.samplerate, 1):.3f} s")
    # The crop is chosen at the file's rate: the segment's length there, at a uniform offset.
    source_length = math.ceil(segment_samples * info.samplerate / sample_rate)
    start = int(rng.integers(0, info.frames - source_length + 1)) if info.frames > source_length else 0
    try:
        data, _ = sf.read(str(path), start=start, frames=source_length, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise ClipUnusable(UNREADABLE, f"{path}: {exc}") from None
    samples = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise ClipUnusable(NON_FINITE, f"{path}: NaN or infinite samples")
    samples = resample_hq(samples, info.samplerate, sample_rate)
    segment = np.zeros(segment_samples, dtype=np.float32)
    segment[: min(len(samples), segment_samples)] = samples[:segment_samples]
    return segment


@dataclass(frozen=True)
class Skip:
    """One unusable draw: which item, why, and the detail (path and error)."""

    datafile: int
    position: int
    reason: str
    detail: str


class ClipDataset(Dataset):
    """Map-style dataset indexed by `(item index, stream position)` pairs from `TrainSampler`."""

    def __init__(self, datafiles: Sequence[Datafile], *, sample_rate: int, segment_samples: int,
                 min_seconds: float, seed: int, max_failed_draws: int = 100) -> None:
        self.datafiles = list(datafiles)
        self.items = [item for datafile in self.datafiles for item in datafile.items]
        self.sample_rate, self.segment_samples, self.min_seconds = sample_rate, segment_samples, min_seconds
        self.seed, self.max_failed_draws = seed, max_failed_draws

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, position = key
        rng = np.random.default_rng([self.seed, position])
        skipped: list[Skip] = []
        for _ in range(self.max_failed_draws):
            item = self.items[index]
            try:
                path = self.datafiles[item.datafile].resolve(item.wav)
                if path is None:
                    tried = self.datafiles[item.datafile].candidates(item.wav)
                    raise ClipUnusable(MISSING, " or ".join(str(p) for p in tried))
                waveform = read_segment(path, self.sample_rate, self.segment_samples, self.min_seconds, rng)
                return {"waveform": torch.from_numpy(waveform), "caption": item.caption, "skipped": skipped}
            except ClipUnusable as exc:
                skipped.append(Skip(item.datafile, item.position, exc.reason, exc.detail))
                index = int(rng.integers(0, len(self.items)))
        examples = "; ".join(f"{s.reason} {s.detail}" for s in skipped[-3:])
        raise DataError(f"{self.max_failed_draws} clips in a row could not be used (latest: {examples}); "
                        "check the datafiles' audio paths")


def collate_clips(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"waveform": torch.stack([s["waveform"] for s in samples]),
            "caption": [s["caption"] for s in samples],
            "skipped": [skip for s in samples for skip in s["skipped"]]}


@dataclass
class SkipLog:
    """What the run skipped: counts per reason, distinct items, a few examples of each."""

    events: Counter[str] = field(default_factory=Counter)
    items: dict[str, set[tuple[int, int]]] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 10

    def add(self, skips: Sequence[Skip]) -> None:
        for skip in skips:
            self.events[skip.reason] += 1
            self.items.setdefault(skip.reason, set()).add((skip.datafile, skip.position))
            shown = self.examples.setdefault(skip.reason, [])
            if len(shown) < self.max_examples and skip.detail not in shown:
                shown.append(skip.detail)

    def merge(self, other: SkipLog) -> None:
        self.events.update(other.events)
        for reason, items in other.items.items():
            self.items.setdefault(reason, set()).update(items)
        for reason, shown in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(x for x in shown if x not in mine and len(mine) < self.max_examples)

    @property
    def total(self) -> int:
        return sum(self.events.values())

    def summary(self) -> dict[str, Any]:
        return {"skipped_draws": self.total,
                "by_reason": {reason: {"draws": self.events[reason], "distinct_items": len(self.items[reason]),
                                       "examples": self.examples.get(reason, [])}
                              for reason in sorted(self.events)}}


class TrainSampler(Sampler[tuple[int, int]]):
    """Endless seeded stream of `(item index, stream position)`; see the module docstring.

    `start_batch` skips the global batches a resumed run has already trained on. The process's
    rank and the world size are read when iteration starts (after DDP is set up).
    """

    def __init__(self, datafile_sizes: Sequence[int], weights: Sequence[float], *, batch_size: int, seed: int,
                 start_batch: int = 0) -> None:
        self.sizes = [int(n) for n in datafile_sizes]
        self.weights = [float(w) for w in weights]
        self.offsets = np.cumsum([0] + self.sizes[:-1]).tolist()
        self.batch_size, self.seed, self.start_batch = batch_size, seed, start_batch
        self.epoch_length = sum(int(math.floor(w)) * n + int(round((w - math.floor(w)) * n))
                                for n, w in zip(self.sizes, self.weights, strict=True))
        if self.epoch_length == 0:
            raise DataError("the datafile weights leave no items to train on")
        self._cached: tuple[int, np.ndarray] | None = None

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The item indices of epoch `epoch`, in order."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, 7, epoch])
        parts = []
        for offset, size, weight in zip(self.offsets, self.sizes, self.weights, strict=True):
            whole = int(math.floor(weight))
            parts.extend([np.arange(offset, offset + size)] * whole)
            extra = int(round((weight - whole) * size))
            if extra:
                parts.append(offset + rng.choice(size, size=extra, replace=False))
        order = rng.permutation(np.concatenate(parts))
        self._cached = (epoch, order)
        return order

    @staticmethod
    def _rank_and_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rank, world = self._rank_and_world()
        batch = self.start_batch
        while True:
            first = (batch * world + rank) * self.batch_size
            for position in range(first, first + self.batch_size):
                epoch, offset = divmod(position, self.epoch_length)
                yield int(self.epoch_order(epoch)[offset]), position
            batch += 1
