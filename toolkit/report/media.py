"""The audio a listening page plays and the spectrograms it shows.

Where each player's file comes from:
- validation mixtures and references do not exist as files (`score` builds them from the clean
  clips on the fly), so they are written into the page folder, `audio/mixture/<id>.wav` and
  `audio/reference/<id>.wav`, as 16-bit PCM (each file atomically; the reference second, so a
  pair with a reference is complete and a re-run skips it). `audio/dataset.json` records which
  CSV they came from: another CSV clears them first. A folder written by `dcase9 mix` can be
  played in place instead (`mixed`);
- evaluation-set mixtures, the mixtures and references of AudioSep's benchmarks, and all estimates
  are played where they lie, by a relative path from the page folder (which may climb out of it, e.g.
  `../estimates/baseline/<id>.wav`): the page works when opened in place, and costs no copy.
  `self_contained` copies them into `audio/` instead, for a folder that can be moved or zipped on its own.

Spectrograms: one PNG per player for the first rows the page shows, until a count or a time
budget runs out (the page shows no image for the rest).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from dcase9.audio import SAMPLE_RATE, read_audio, write_wav
from dcase9.data.formats import DataSet, MixtureSpec
from dcase9.data.items import Item, ItemLoader, ordered_map
from dcase9.errors import DataError, Dcase9Error
from dcase9.files import atomic_output, remove_partial_files, sha256_file, write_json_atomic
from dcase9.outputs import MIX_FOLDERS, MIX_INDEX_NAME, estimate_path, mix_paths

AUDIO_DIR = "audio"
SPECTROGRAM_DIR = "spectrograms"
STAMP = "dataset.json"
PANEL_FRAMES = 300  # spectrogram image width in STFT frames
PANEL_BINS = 128  # and height in frequency rows
N_FFT = 1024
DYNAMIC_RANGE_DB = 80.0


def url_to(target: Path, page_dir: Path) -> str:
    """A URL for `target` relative to the page folder, each path segment percent-encoded."""
    try:
        relative = os.path.relpath(target.resolve(), page_dir.resolve())
    except ValueError:  # another drive (Windows): no relative path exists
        return target.resolve().as_uri()
    return "/".join(quote(part, safe="") for part in Path(relative).parts)


def folder_url(folder: Path, page_dir: Path) -> str:
    """`url_to` a folder, ending in '/' so that a file name can be appended."""
    url = url_to(folder, page_dir)
    return "" if url == "." else url + "/"


@dataclass
class ClipAudio:
    """Where the page's players find each clip's audio: folder URLs plus one file name per clip."""

    mixture_dir: Path
    reference_dir: Path | None
    mixture_files: dict[str, str]  # clip id -> file name (or path) inside mixture_dir
    reference_files: dict[str, str] | None = None  # clip id -> path inside reference_dir (None: <id>.wav)
    written: int = 0  # files written or copied by this run
    kept: int = 0  # files already there from an earlier run


def write_validation_audio(dataset: DataSet, specs: Sequence[MixtureSpec], out_dir: Path, *,
                           workers: int = 2) -> ClipAudio:
    """Mixture and reference WAVs of validation clips in `out_dir/audio` (resumable)."""
    audio = out_dir / AUDIO_DIR
    mixtures, references = audio / "mixture", audio / "reference"
    stamp = {"kind": dataset.kind.value, "csv": str(dataset.csv_path.resolve()),
             "csv_sha256": sha256_file(dataset.csv_path), "audio_dir": str(dataset.audio_dir.resolve())}
    stamp_path = audio / STAMP
    previous = None
    if stamp_path.is_file():
        try:
            previous = json.loads(stamp_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
    for folder in (mixtures, references):
        folder.mkdir(parents=True, exist_ok=True)
        remove_partial_files(folder)
        if previous != stamp:  # none, or made from another data set: start over
            for old in folder.glob("*.wav"):
                old.unlink()
    write_json_atomic(stamp_path, stamp)
    result = ClipAudio(mixtures, references, {s.id: f"{s.id}.wav" for s in specs})
    todo = [s for s in specs if not (references / f"{s.id}.wav").is_file() or not (mixtures / f"{s.id}.wav").is_file()]
    result.kept = 2 * (len(specs) - len(todo))

    def write_pair(item: Item) -> None:
        write_wav(mixtures / f"{item.spec.id}.wav", item.mixture, SAMPLE_RATE, "PCM_16")
        write_wav(references / f"{item.spec.id}.wav", item.reference, SAMPLE_RATE, "PCM_16")  # type: ignore[arg-type]

    # Each write ends in an fsync: several in flight at once (bounded) instead of one after another.
    for _ in ordered_map(write_pair, ItemLoader(dataset).iterate(todo, workers=workers), workers=4, prefetch=16):
        result.written += 2
    return result


def mixed_audio(mixed: Path, specs: Sequence[MixtureSpec]) -> ClipAudio:
    """Validation mixtures and references that `dcase9 mix` wrote already (played in place)."""
    if not (mixed / MIX_INDEX_NAME).is_file():
        raise DataError(f"not a `dcase9 mix` folder (no {MIX_INDEX_NAME})", file=mixed)
    for spec in specs:
        for path in mix_paths(mixed, spec.id):
            if not path.is_file():
                raise DataError("not found: this `dcase9 mix` folder was made from another data set or is "
                                "unfinished", file=path)
    mixtures, references = (mixed / part for part in MIX_FOLDERS)
    return ClipAudio(mixtures, references, {s.id: mix_paths(mixed, s.id)[0].name for s in specs})


def copy_if_changed(source: Path, target: Path) -> bool:
    """Copy `source` to `target` atomically unless an identical copy (size and mtime) is there."""
    if target.is_file():
        a, b = source.stat(), target.stat()
        if a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns:
            return False
    with atomic_output(target) as tmp:
        shutil.copy2(source, tmp)
    return True


def evaluation_audio(dataset: DataSet, specs: Sequence[MixtureSpec], out_dir: Path, *,
                     self_contained: bool) -> ClipAudio:
    """The mixtures of an evaluation set, and of AudioSep's benchmarks their references too: in place, or
    copied into `out_dir/audio/mixture` and `out_dir/audio/reference` (keeping their paths in the folder)."""
    parts = {"mixture": {s.id: s.file or "" for s in specs}}
    if dataset.kind.is_benchmark:
        parts["reference"] = {s.id: s.reference or "" for s in specs}
    for files in parts.values():
        for name in files.values():
            path = dataset.audio_path(name)
            if not path.is_file():
                raise DataError("audio not found (the data set has moved? pass its folder with --data)", file=path)
    references = parts.get("reference")
    if not self_contained:
        return ClipAudio(dataset.audio_dir, dataset.audio_dir if references else None, parts["mixture"], references)
    folders = {}
    result = ClipAudio(out_dir, None, parts["mixture"], references)
    for part, files in parts.items():
        target = folders[part] = out_dir / AUDIO_DIR / part
        target.mkdir(parents=True, exist_ok=True)
        remove_partial_files(target)
        for name in files.values():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            if copy_if_changed(dataset.audio_path(name), target / name):
                result.written += 1
            else:
                result.kept += 1
    result.mixture_dir, result.reference_dir = folders["mixture"], folders.get("reference")
    return result


@dataclass
class EstimateAudio:
    folders: list[Path]  # one per system, where the page finds <id>.wav
    written: int = 0
    kept: int = 0


def estimate_audio(estimate_dirs: Sequence[Path], report_dirs: Sequence[Path], ids: Sequence[str], out_dir: Path,
                   *, self_contained: bool) -> EstimateAudio:
    """Check every estimate the page will play exists; copy them into `out_dir/audio` if asked."""
    result = EstimateAudio([])
    for k, (folder, report) in enumerate(zip(estimate_dirs, report_dirs, strict=True)):
        if not folder.is_dir():
            raise Dcase9Error(f"{report} scored the estimates in {folder}, which is not there any more")
        missing = [clip for clip in ids if not estimate_path(folder, clip).is_file()]
        if missing:
            raise DataError(f"{len(missing)} estimate(s) that {report} scored are not here as <id>.wav, e.g. "
                            f"{missing[0]}.wav", file=folder)
        if not self_contained:
            result.folders.append(folder)
            continue
        target = out_dir / AUDIO_DIR / f"system-{k + 1}"
        target.mkdir(parents=True, exist_ok=True)
        remove_partial_files(target)
        for clip in ids:
            if copy_if_changed(estimate_path(folder, clip), estimate_path(target, clip)):
                result.written += 1
            else:
                result.kept += 1
        result.folders.append(target)
    return result


# --------------------------------------------------------------------------------------------
# Spectrograms


def log_spectrogram(samples: np.ndarray) -> np.ndarray:
    """(PANEL_BINS, frames) magnitude in dB: Hann-windowed frames of N_FFT samples, at most
    PANEL_FRAMES of them spread over the clip, frequency bins averaged in groups of four."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.size < N_FFT:
        samples = np.pad(samples, (0, N_FFT - samples.size))
    hop = max(1, math.ceil((samples.size - N_FFT) / max(1, PANEL_FRAMES - 1)))
    starts = np.arange(0, samples.size - N_FFT + 1, hop)
    frames = np.lib.stride_tricks.sliding_window_view(samples, N_FFT)[starts] * np.hanning(N_FFT).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # (frames, N_FFT // 2 + 1)
    group = (N_FFT // 2) // PANEL_BINS
    pooled = power[:, : group * PANEL_BINS].reshape(len(starts), PANEL_BINS, group).mean(axis=-1)
    return (10.0 * np.log10(pooled + 1e-12)).T


@functools.lru_cache(maxsize=1)
def _palette() -> list[int]:
    import matplotlib

    colours = matplotlib.colormaps["magma"](np.linspace(0.0, 1.0, 256))[:, :3]
    return (colours * 255).round().astype(np.uint8).flatten().tolist()


def save_spectrogram(db: np.ndarray, path: Path, top_db: float) -> None:
    """A palette PNG (magma), low frequencies at the bottom, `top_db` down to 80 dB below it."""
    from PIL import Image  # a dependency of matplotlib

    scaled = np.clip((db - (top_db - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB * 255.0, 0, 255).astype(np.uint8)[::-1]
    image = Image.frombytes("P", (scaled.shape[1], scaled.shape[0]), np.ascontiguousarray(scaled).tobytes())
    image.putpalette(_palette())
    with atomic_output(path) as tmp:
        image.save(tmp, format="png")


@dataclass
class SpectrogramRun:
    made: list[str] = field(default_factory=list)  # clip ids with images, in page order
    images: int = 0
    stopped_by_time: bool = False


def make_spectrograms(ids: Sequence[str], clip_audio: dict[str, dict[str, Path]], out_dir: Path, *,
                      limit: int, seconds: float, sample_rate: int = SAMPLE_RATE) -> SpectrogramRun:
    """Images `out_dir/spectrograms/<player>/<id>.png` for the first `limit` clips of `ids`.

    `clip_audio[id][player]` is the audio file of each player (mixture, reference, system-1, ...). One colour scale per clip (the loudest panel's
    peak down 80 dB), so mixture, reference and estimates compare by eye. Stops after `seconds`. The audio
    is read at `sample_rate` (the data set's: a 32 kHz benchmark's panels reach 16 kHz).
    """
    run = SpectrogramRun()
    started = time.perf_counter()
    for clip in ids[: max(0, limit)]:
        if time.perf_counter() - started > seconds:
            run.stopped_by_time = True
            break
        panels = {player: log_spectrogram(read_audio(path, sample_rate)) for player, path in clip_audio[clip].items()}
        top = max(float(p.max()) for p in panels.values())
        for player, db in panels.items():
            save_spectrogram(db, out_dir / SPECTROGRAM_DIR / player / f"{clip}.png", top)
            run.images += 1
        run.made.append(clip)
    return run


__all__ = ["ClipAudio", "EstimateAudio", "SpectrogramRun", "estimate_audio", "evaluation_audio", "folder_url",
           "make_spectrograms", "url_to", "write_validation_audio"]
