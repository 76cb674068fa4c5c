"""An emulation of AudioSep's evaluator code (`utils.calculate_sdr`, `utils.calculate_sisdr`, the aggregates of
`benchmark.py` and `evaluation/evaluate_*.py`), written from the formulas read there, in NumPy float32 as its
evaluators run them: the authority `dcase9 score` and `dcase9 suite` are checked against
(tests/test_benchmarks.py) and the loop benchmarks/suite.py times."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dcase9.data.benchmarks import MUSIC_CLASSES
from dcase9.data.formats import SetKind


def audiosep_sdr(ref: np.ndarray, est: np.ndarray) -> np.floating:
    """utils.calculate_sdr as AudioSep's evaluators run it: float32 arrays, mean powers clipped at 1e-10."""
    signal = np.clip(np.mean(ref ** 2), 1e-10, None)
    noise = np.clip(np.mean((est - ref) ** 2), 1e-10, None)
    return 10.0 * np.log10(signal / noise)


def audiosep_sisdr(ref: np.ndarray, est: np.ndarray) -> np.floating:
    """utils.calculate_sisdr: column vectors, eps of the reference's dtype in the projection and both energies."""
    eps = np.finfo(ref.dtype).eps
    ref, est = ref.reshape(-1, 1), est.reshape(-1, 1)
    scale = (eps + ref.T @ est) / (ref.T @ ref + eps)
    target = scale * ref
    residual = est - target
    return 10 * np.log10((eps + (target ** 2).sum()) / (eps + (residual ** 2).sum()))


def audiosep_row(source: np.ndarray, mixture: np.ndarray, estimate: np.ndarray) -> tuple[Any, Any]:
    """(SDRi, SI-SDR) of one row, as every evaluator computes them."""
    return audiosep_sdr(source, estimate) - audiosep_sdr(source, mixture), audiosep_sisdr(source, estimate)


def audiosep_aggregate(dataset: Any, sdris: dict[str, list[Any]], sisdrs: dict[str, list[Any]]) -> tuple[float, float]:
    """(SDRi, SI-SDR) as benchmark.py prints them from the rows' values by class (key "" where there are no
    classes): AudioSet the mean over all its classes of per-class nanmedians (np.nanmean), MUSIC the mean over
    its ten classes of per-class means, the others the mean over rows."""
    if dataset.kind is SetKind.AUDIOSET:
        classes = range(len(dataset.labels_path.read_text().splitlines()) - 1)
        with warnings.catch_warnings():  # nanmedian of a class without clips: nan, dropped by nanmean
            warnings.simplefilter("ignore", RuntimeWarning)
            return tuple(float(np.nanmean([np.nanmedian(values.get(str(c), [])) for c in classes]))  # type: ignore[return-value]
                         for values in (sdris, sisdrs))
    if dataset.kind is SetKind.MUSIC:
        with warnings.catch_warnings():  # the mean of a class without clips: nan, and so the aggregate
            warnings.simplefilter("ignore", RuntimeWarning)
            return tuple(float(np.mean([np.mean(values.get(c, [])) for c in MUSIC_CLASSES]))  # type: ignore[return-value]
                         for values in (sdris, sisdrs))
    return float(np.mean(sdris[""])), float(np.mean(sisdrs[""]))


def audiosep_numbers(dataset: Any, estimates: Path) -> tuple[float, float]:
    """(SDRi, SI-SDR) as benchmark.py prints them, from the files of `dataset` and the estimates in `estimates`."""
    sdris: dict[str, list[Any]] = {}
    sisdrs: dict[str, list[Any]] = {}
    for spec in dataset.mixtures:
        mixture, _ = sf.read(dataset.audio_path(spec.file), dtype="float32")
        source, _ = sf.read(dataset.audio_path(spec.reference), dtype="float32")
        estimate, _ = sf.read(estimates / f"{spec.id}.wav", dtype="float32")
        sdri, sisdr = audiosep_row(source, mixture, estimate)
        sdris.setdefault(spec.group or "", []).append(sdri)
        sisdrs.setdefault(spec.group or "", []).append(sisdr)
    return audiosep_aggregate(dataset, sdris, sisdrs)
