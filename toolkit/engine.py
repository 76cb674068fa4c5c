"""The inference engine: run any separator over an evaluation set, fast and safely.

- batches of equal-length clips; one text embedding per distinct query, cached for the run;
- device auto-selection (CUDA, MPS, CPU) and optional bf16/fp16 autocast;
- 16 kHz <-> model-rate resampling: soxr HQ (librosa's and AudioSep's resampler) on the CPU in the
  reading and writing threads, so the device never waits for it; or julius on the device
  (`resampler`); the choice is part of the run's identity;
- inputs longer than the model's segment are cut into overlapping chunks that are cross-faded
  back together (bounded memory on long recordings; short inputs run whole, never zero-padded
  into silence);
- 16 kHz mono WAV outputs named `<mixture id>.wav`, written atomically; finished outputs are
  skipped on re-runs (resume) unless `overwrite`, and only while they still match what they were
  computed from (see `toolkit.outputs`: the manifest `dcase9-run.json` records the system, its
  weights' sha256, the data set, versions and settings; the ledger `dcase9-outputs.jsonl` each
  output's query and input files);
- a mixture whose audio cannot be used (missing, unreadable, truncated, NaN or infinite samples),
  or for which the system returns NaN or infinite samples, is left out and reported (`problems`),
  never written.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from toolkit import __version__
from toolkit.audio import RESAMPLERS, SAMPLE_RATE, non_finite_count, resample, resample_hq, write_wav
from toolkit.data.formats import DataSet, MixtureSpec
from toolkit.data.items import Item, ItemLoader, LoadFailure, ordered_map
from toolkit.errors import ConfigError, Dcase9Error
from toolkit.outputs import OutputFolder, Problem, estimate_path
# Large batches pay off on GPUs. On CPUs they gain nothing per clip (ResUNet30 on two cores: batch 1
# and 2 within 4%, batch 4 much slower; see BENCHMARKS.md) and multiply memory.
DEFAULT_BATCH_SIZE = {"cuda": 8, "cpu": 1, "mps": 2}


@runtime_checkable
class Separator(Protocol):
    """What every system provides to the engine.

    `separate` receives mixtures at `sample_rate` as a (batch, samples) float32 tensor on the
    engine's device, the conditions returned by `encode_queries` for each row (or None), and the
    references when the system declared it needs them (the oracle). It returns a tensor of the
    same shape.
    """

    sample_rate: int

    def encode_queries(self, queries: Sequence[str]) -> torch.Tensor | None: ...

    def separate(self, mixture: torch.Tensor, conditions: torch.Tensor | None,
                 reference: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass
class EngineOptions:
    batch_size: int | None = None  # None: DEFAULT_BATCH_SIZE for the device
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | fp16
    segment_seconds: float | None = None  # chunk length; None = whole inputs
    overlap: float = 0.25  # fraction of a chunk shared with its neighbour
    overwrite: bool = False
    workers: int = 2  # audio reading/writing threads
    limit: int | None = None  # only the first N mixtures (quick looks)
    progress: bool = True
    pcm16: bool = False  # write 16-bit PCM instead of 32-bit float WAVs
    compile: bool = False  # torch.compile the system's network (`compile_network`): slow start, faster clips
    resampler: str = "soxr"  # 16 kHz <-> model rate: soxr (HQ, CPU threads) or julius (on the device)

    def check(self) -> None:
        """Refuse impossible settings (before a model is loaded, when callers check early)."""
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError("--overlap must be in [0, 1)")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("--limit must be at least 1")
        if self.resampler not in RESAMPLERS:
            raise ConfigError(f"unknown resampler {self.resampler!r} (use {' or '.join(RESAMPLERS)})")


@dataclass
class RunResult:
    out_dir: Path
    written: int
    skipped: int
    seconds: float
    audio_seconds: float
    device: str
    manifest: Path
    ids: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # mixtures left out, and why
    orphans: list[str] = field(default_factory=list)  # outputs here for mixtures the data set lacks

    @property
    def real_time_factor(self) -> float:
        """Processing time per second of audio (smaller is faster)."""
        return self.seconds / self.audio_seconds if self.audio_seconds else float("nan")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here")
    return device


def autocast_context(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return nullcontext()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ConfigError(f"unknown precision {precision!r} (use fp32, bf16 or fp16)")
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("fp16 autocast needs a GPU; use --precision bf16 on the CPU")
    return torch.autocast(device_type=device.type, dtype=dtypes[precision])


def chunk_starts(length: int, segment: int, overlap: float) -> list[int]:
    """Chunk start positions covering [0, length); the last chunk ends exactly at `length`."""
    if length <= segment:
        return [0]
    hop = max(1, int(round(segment * (1.0 - overlap))))
    starts = list(range(0, length - segment, hop))
    starts.append(length - segment)
    return starts


def crossfade_window(segment: int, fade: int, first: bool, last: bool, device: torch.device) -> torch.Tensor:
    """Trapezoid weights: linear fades where a chunk overlaps its neighbours, strictly positive."""
    window = torch.ones(segment, device=device, dtype=torch.float32)
    fade = min(fade, segment // 2)
    if fade > 0:
        ramp = torch.arange(1, fade + 1, device=device, dtype=torch.float32) / (fade + 1)
        if not first:
            window[:fade] = ramp
        if not last:
            window[-fade:] = ramp.flip(0)
    return window


def separate_in_chunks(run: Callable[[int, int], torch.Tensor], length: int, batch: int,
                       segment: int | None, overlap: float, device: torch.device) -> torch.Tensor:
    """Overlap-add of `run(start, end)` over chunks of `segment` samples, cross-faded.

    The weights are normalised by their sum, so any overlap (the last chunk's may be larger)
    reconstructs a constant exactly and every sample is covered.
    """
    if segment is None or length <= segment:
        return run(0, length)
    starts = chunk_starts(length, segment, overlap)
    fade = segment - max(1, int(round(segment * (1.0 - overlap))))
    output = torch.zeros(batch, length, device=device, dtype=torch.float32)
    weight = torch.zeros(length, device=device, dtype=torch.float32)
    for k, start in enumerate(starts):
        window = crossfade_window(segment, fade, first=k == 0, last=k == len(starts) - 1, device=device)
        piece = run(start, start + segment).float()
        output[:, start:start + segment] += piece * window
        weight[start:start + segment] += window
    return output / weight


@dataclass
class _Loaded:
    """One item with its audio at the model's rate (resampled by the reading thread with soxr, or
    still at 16 kHz when julius resamples on the device)."""

    item: Item
    mixture: np.ndarray
    reference: np.ndarray | None


def _batches(items: Iterator[_Loaded], batch_size: int) -> Iterator[list[_Loaded]]:
    """Consecutive items of equal length, at most `batch_size` at a time (no padding: batched
    results then equal one-at-a-time results)."""
    batch: list[_Loaded] = []
    for item in items:
        if batch and (len(batch) >= batch_size or item.mixture.shape[-1] != batch[0].mixture.shape[-1]):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


class QueryCache:
    """One embedding per distinct query for the whole run."""

    def __init__(self, separator: Separator):
        self.separator = separator
        self.embeddings: dict[str, torch.Tensor] = {}

    def conditions(self, queries: Sequence[str]) -> torch.Tensor | None:
        new = [q for q in dict.fromkeys(queries) if q not in self.embeddings]
        if new:
            encoded = self.separator.encode_queries(new)
            if encoded is None:
                return None
            for query, row in zip(new, encoded):
                self.embeddings[query] = row
        if not self.embeddings:
            return None
        return torch.stack([self.embeddings[q] for q in queries])


def environment_versions() -> dict[str, str]:
    import numpy

    return {"dcase9": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def run_separation(separator: Separator, dataset: DataSet, out_dir: str | Path, *,
                   identity: dict[str, Any], options: EngineOptions | None = None,
                   reference_needed: bool = False, default_segment_seconds: float | None = None,
                   settings: dict[str, Any] | None = None) -> RunResult:
    """Separate every mixture of `dataset` into `out_dir/<id>.wav` at 16 kHz.

    `identity` (system name, weights' sha256, system options) decides whether existing outputs
    in `out_dir` may be resumed; `settings` is recorded in the manifest for the record only.
    Mixtures that cannot be separated are left out and listed in `RunResult.problems`.
    """
    options = options or EngineOptions()
    options.check()
    if separator.sample_rate != SAMPLE_RATE:  # soxr and julius outputs differ (34-49 dB): never resume one with the other
        identity = {**identity, "resampler": options.resampler}
    if reference_needed and not dataset.has_references:
        raise Dcase9Error(f"this system needs references, which the {dataset.kind.value} set does not have")
    device = resolve_device(options.device)
    batch_size = options.batch_size or DEFAULT_BATCH_SIZE.get(device.type, 1)
    if options.compile:
        compile_network = getattr(separator, "compile_network", None)
        if compile_network is None:
            raise ConfigError(f"--compile: {type(separator).__name__} has no network to compile")
        compile_network()
    segment_seconds = options.segment_seconds if options.segment_seconds is not None else default_segment_seconds
    segment = int(round(segment_seconds * separator.sample_rate)) if segment_seconds else None
    if segment is not None and segment < 1024:
        raise ConfigError(f"--segment {segment_seconds} s is too short for this model")
    out_dir = Path(out_dir)
    mixtures = dataset.mixtures[: options.limit] if options.limit else list(dataset.mixtures)
    folder = OutputFolder(out_dir, "infer", dataset, identity, overwrite=options.overwrite,
                          outputs_of=lambda output_id: [estimate_path(out_dir, output_id)])
    with folder:
        todo = folder.plan(mixtures)
        return _run(separator, dataset, folder, mixtures, todo, options, device, batch_size, segment,
                    reference_needed, settings)


def _run(separator: Separator, dataset: DataSet, folder: OutputFolder, mixtures: list[Any], todo: list[Any],
         options: EngineOptions, device: torch.device, batch_size: int, segment: int | None,
         reference_needed: bool, settings: dict[str, Any] | None) -> RunResult:
    out_dir = folder.root
    skipped = len(mixtures) - len(todo)
    rate = separator.sample_rate
    resampling = rate != SAMPLE_RATE
    threads_resample = resampling and options.resampler == "soxr"
    manifest: dict[str, Any] = {
        "status": "running",
        "planned": len(mixtures),
        "settings": {**asdict(options), "batch_size": batch_size, "device": str(device), "segment_samples": segment,
                     "model_sample_rate": rate, "resampler": options.resampler if resampling else None,
                     **(settings or {})},
        "versions": environment_versions(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    folder.write_manifest(manifest)

    loader = ItemLoader(dataset)

    def load(spec: MixtureSpec) -> _Loaded | LoadFailure:  # on a reading thread
        item = loader.load_or_fail(spec)
        if isinstance(item, LoadFailure):
            return item
        if not threads_resample:
            return _Loaded(item, item.mixture, item.reference)
        reference = item.reference if reference_needed else None
        return _Loaded(item, resample_hq(item.mixture, SAMPLE_RATE, rate),
                       resample_hq(reference, SAMPLE_RATE, rate) if reference is not None else None)

    # What the writing threads get: estimates at the model's rate (soxr brings them back) or at 16 kHz.
    estimate_rate = rate if threads_resample else SAMPLE_RATE
    cache = QueryCache(separator)
    written_ids: list[str] = []
    problems: list[Problem] = []
    audio_seconds = 0.0
    started = time.perf_counter()
    subtype = "PCM_16" if options.pcm16 else "FLOAT"
    progress = progress_bar("clips") if options.progress else None
    status = "interrupted"
    task = None

    def write(output_id: str, estimate: np.ndarray, length: int) -> None:  # on a writing thread
        _write_estimate(estimate_path(out_dir, output_id), estimate, estimate_rate, length, subtype)
        folder.record(output_id, length)

    def usable(results: Iterator[_Loaded | LoadFailure]) -> Iterator[_Loaded]:
        for result in results:
            if isinstance(result, LoadFailure):
                problems.append(Problem(result.spec.id, str(result.error)))
                if progress is not None and task is not None:
                    progress.update(task, advance=1)
            else:
                yield result

    try:
        with progress or nullcontext(), ThreadPoolExecutor(max_workers=max(1, options.workers),
                                                          thread_name_prefix="dcase9-write") as writer:
            task = progress.add_task("separating", total=len(todo)) if progress is not None else None
            pending: list[Future[None]] = []
            for batch in _batches(usable(ordered_map(load, todo, workers=options.workers)), batch_size):
                estimates = _separate_batch(separator, batch, cache, device, options, segment, reference_needed)
                for loaded, estimate in zip(batch, estimates):
                    item = loaded.item
                    bad = non_finite_count(estimate)
                    if bad:
                        problems.append(Problem(item.spec.id, f"{', '.join(map(str, dataset.files_of(item.spec)))}: "
                                                f"the system returned {bad} NaN or infinite samples for this "
                                                f"mixture (query {item.spec.query!r}); nothing written"))
                        continue
                    pending.append(writer.submit(write, item.spec.id, estimate, item.mixture.shape[-1]))
                    written_ids.append(item.spec.id)
                    audio_seconds += item.mixture.shape[-1] / SAMPLE_RATE
                pending = _reap(pending)
                if progress is not None and task is not None:
                    progress.update(task, advance=len(batch))
            for future in pending:
                future.result()
        status = "incomplete" if problems else "complete"
    finally:
        elapsed = time.perf_counter() - started
        manifest.update({"status": status, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "written": len(written_ids), "skipped": skipped, "seconds": round(elapsed, 3),
                         "audio_seconds": round(audio_seconds, 3),
                         "problems": [asdict(p) for p in problems]})
        folder.write_manifest(manifest)
    return RunResult(out_dir, len(written_ids), skipped, elapsed, audio_seconds, str(device), folder.manifest_path,
                     written_ids, problems, folder.orphans)


def _separate_batch(separator: Separator, batch: list[_Loaded], cache: QueryCache, device: torch.device,
                    options: EngineOptions, segment: int | None, reference_needed: bool) -> list[np.ndarray]:
    """Estimates at 16 kHz when julius resamples here on the device, else at the model's rate."""
    mixture = torch.from_numpy(np.stack([loaded.mixture for loaded in batch])).to(device)
    reference = None
    if reference_needed:
        reference = torch.from_numpy(np.stack([loaded.reference for loaded in batch])).to(device)  # type: ignore[misc]
    rate = separator.sample_rate
    on_device = options.resampler == "julius"  # soxr: the reading and writing threads resample
    with torch.inference_mode():
        conditions = cache.conditions([loaded.item.spec.query for loaded in batch])
        if conditions is not None:
            conditions = conditions.to(device)
        model_mixture = resample(mixture, SAMPLE_RATE, rate) if on_device else mixture
        model_reference = reference
        if reference is not None and on_device:
            model_reference = resample(reference, SAMPLE_RATE, rate)

        def run(start: int, end: int) -> torch.Tensor:
            chunk_ref = model_reference[:, start:end] if model_reference is not None else None
            with autocast_context(device, options.precision):
                out = separator.separate(model_mixture[:, start:end], conditions, chunk_ref)
            return out.float()

        estimate = separate_in_chunks(run, model_mixture.shape[-1], len(batch), segment, options.overlap, device)
        if on_device:
            estimate = resample(estimate, rate, SAMPLE_RATE)
    return list(estimate.float().cpu().numpy())


def _write_estimate(path: Path, estimate: np.ndarray, rate: int, length: int, subtype: str) -> None:
    """On a writing thread: the estimate at 16 kHz (soxr from the model's rate if needed), exactly as
    long as its mixture (resampling rounds lengths), written atomically."""
    estimate = resample_hq(estimate, rate, SAMPLE_RATE)[:length]
    if estimate.shape[-1] < length:
        estimate = np.pad(estimate, (0, length - estimate.shape[-1]))
    write_wav(path, estimate, SAMPLE_RATE, subtype)


def _reap(pending: list[Future[None]]) -> list[Future[None]]:
    """Drop finished writes, re-raising a failed one now rather than at the end."""
    still_running = []
    for future in pending:
        if future.done():
            future.result()
        else:
            still_running.append(future)
    return still_running


def progress_bar(unit: str) -> Any:
    """A rich progress bar with count, rate in `unit`/s, elapsed time and ETA."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} {unit}/s" if speed else f"- {unit}/s", style="cyan")

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
