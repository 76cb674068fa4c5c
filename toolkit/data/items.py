"""Loading the audio of an evaluation set: mixtures (built or read) and, where there are any, references."""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from collections.abc import Callable

import numpy as np

from dcase9.audio import mix_at_snr, read_audio
from dcase9.data.formats import (SNR_PLAUSIBLE_DB, DataSet, MixtureSpec, SetKind,
                                  output_name_too_long)
from dcase9.errors import DataError


@dataclass
class Item:
    """The audio of one mixture at its set's rate (16 kHz; AudioSep's benchmarks 32 kHz): float32 mono
    samples; `reference` for the sets that have one (validation, the benchmarks)."""

    spec: MixtureSpec
    mixture: np.ndarray
    reference: np.ndarray | None


class ItemLoader:
    """Builds mixtures exactly as the official evaluator does, caching the clean clips.

    Each validation clip is used about six times (three times as target, about three as noise), so
    recently read clips are kept in memory.
    """

    def __init__(self, dataset: DataSet, cache_clips: int = 256):
        self.dataset = dataset
        # A benchmark's files are each read once: nothing to keep.
        self._read = functools.lru_cache(maxsize=0 if dataset.kind.is_benchmark else cache_clips)(self._read_uncached)

    def _read_uncached(self, name: str) -> np.ndarray:
        path = self.dataset.audio_path(name)
        samples = read_audio(path, self.dataset.sample_rate)
        if samples.size == 0:
            raise DataError("no samples (an empty recording)", file=path)
        return samples

    def load(self, spec: MixtureSpec) -> Item:
        too_long = output_name_too_long(spec.id)
        if too_long is not None:
            raise DataError(too_long, file=self.dataset.csv_path, row=spec.row)
        if self.dataset.kind is SetKind.VALIDATION:
            assert spec.source is not None and spec.noise is not None and spec.snr is not None
            if abs(spec.snr) > SNR_PLAUSIBLE_DB:
                raise DataError(f"SNR {spec.snr} dB is beyond +-{SNR_PLAUSIBLE_DB} dB: one clip would be scaled by "
                                f"more than 1e{SNR_PLAUSIBLE_DB // 20} against the other", file=self.dataset.csv_path,
                                row=spec.row, field=self.dataset.columns.get("snr", "snr"))
            source, noise = self._read(spec.source), self._read(spec.noise)
            try:
                mixture, reference = mix_at_snr(source, noise, spec.snr)
            except ValueError as exc:
                raise DataError(str(exc), file=self.dataset.csv_path, row=spec.row) from exc
            if not np.all(np.isfinite(mixture)):  # finite clips whose scaling overflows
                raise DataError(f"the mixture of {spec.source} and {spec.noise} at {spec.snr} dB is not finite",
                                file=self.dataset.csv_path, row=spec.row)
            return Item(spec, mixture, reference)
        assert spec.file is not None
        if self.dataset.kind.is_benchmark:  # librosa.load(sr=32000, mono=True) of both, as AudioSep's evaluators
            assert spec.reference is not None
            mixture, reference = self._read(spec.file), self._read(spec.reference)
            if mixture.shape != reference.shape:
                raise DataError(f"the mixture has {mixture.shape[-1]} samples at {self.dataset.sample_rate} Hz, the "
                                f"reference {self.dataset.audio_path(spec.reference)} {reference.shape[-1]}: AudioSep's "
                                "evaluator subtracts them sample by sample", file=self.dataset.audio_path(spec.file))
            return Item(spec, mixture, reference)
        return Item(spec, self._read(spec.file), None)

    def iterate(self, specs: Iterable[MixtureSpec], workers: int = 2, prefetch: int = 16) -> Iterator[Item]:
        """Items in the given order, read ahead on `workers` threads (soundfile releases the GIL)."""
        return ordered_map(self.load, specs, workers=workers, prefetch=prefetch)

    def load_or_fail(self, spec: MixtureSpec) -> Item | LoadFailure:
        """The item, or why its audio cannot be used (missing, unreadable, truncated, NaN...)."""
        try:
            return self.load(spec)
        except DataError as exc:
            return LoadFailure(spec, exc)

    def iterate_or_fail(self, specs: Iterable[MixtureSpec], workers: int = 2,
                        prefetch: int = 16) -> Iterator[Item | LoadFailure]:
        """Like `iterate`, but a mixture whose audio cannot be used yields a `LoadFailure` instead of
        ending the iteration: long runs skip it and report it."""
        return ordered_map(self.load_or_fail, specs, workers=workers, prefetch=prefetch)


@dataclass
class LoadFailure:
    spec: MixtureSpec
    error: DataError


T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], inputs: Iterable[T], workers: int = 2, prefetch: int = 16) -> Iterator[R]:
    """Like map(), computed ahead on a thread pool, yielding in input order with bounded memory."""
    if workers <= 0:
        yield from map(fn, inputs)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dcase9-read") as pool:
        pending: collections.deque[Future[R]] = collections.deque()
        for value in inputs:
            pending.append(pool.submit(fn, value))
            if len(pending) >= prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
