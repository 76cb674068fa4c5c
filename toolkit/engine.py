"""The inference engine: separate 16 kHz audio with any system's model, fast and safely.

`Separator` (what `dcase9.api.load_separator` returns) holds a system's `SeparationModel` and the
engine's settings; `separate(mixture, queries)` works on arrays or tensors in memory and `run(dataset,
out)` over an evaluation set's folder (`dcase9 infer`). Both take the same steps in the same code:

- batches of equal-length clips; one text embedding per distinct query, cached for the separator's life;
- device auto-selection (CUDA, MPS, CPU) and optional bf16/fp16 autocast;
- data-rate <-> model-rate resampling (data: 16 kHz; AudioSep's benchmarks, `dcase9.data.benchmarks`:
  32 kHz, each clip whole): soxr HQ (librosa's and AudioSep's resampler) on the CPU in the
  reading and writing threads, so the device never waits for it; or julius on the device
  (`resampler`); the choice is part of the run's identity;
- inputs longer than the model's segment are cut into overlapping chunks that are cross-faded
  back together (bounded memory on long recordings; short inputs run whole, never zero-padded
  into silence);
- 16 kHz mono WAV outputs named `<mixture id>.wav`, written atomically; finished outputs are
  skipped on re-runs (resume) unless `overwrite`, and only while they still match what they were
  computed from (see `dcase9.outputs`: the manifest `dcase9-run.json` records the system, its
  weights' sha256, the data set, versions and settings; the ledger `dcase9-outputs.jsonl` each
  output's query and input files);
- a mixture whose audio cannot be used (missing, unreadable, truncated, NaN or infinite samples),
  or for which the system returns NaN or infinite samples, is left out and reported (`problems`),
  never written.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from dcase9.version import __version__
from dcase9.audio import RESAMPLERS, SAMPLE_RATE, non_finite_count, resample, resample_hq, write_wav
from dcase9.data.formats import MIN_AUDIO_SECONDS, DataSet, MixtureSpec, SetKind
from dcase9.data.items import Item, ItemLoader, LoadFailure, ordered_map
from dcase9.errors import ConfigError, DataError, Dcase9Error
from dcase9.files import check_no_overlap
from dcase9.outputs import OutputFolder, Problem, estimate_path
# Large batches pay off on GPUs. On CPUs they gain nothing per clip (ResUNet30 on two cores: batch 1
# and 2 within 4%, batch 4 much slower; see BENCHMARKS.md) and multiply memory.
DEFAULT_BATCH_SIZE = {"cuda": 8, "cpu": 1, "mps": 2}


@runtime_checkable
class SeparationModel(Protocol):
    """What every system provides to the engine (its `factory` builds one; see `dcase9.systems.base`).

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
    workers: int | None = None  # audio reading/writing threads; None: `resolve_workers`' default for the device
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
        if self.workers is not None:
            resolve_workers(self.workers, torch.device("cpu"))  # refused before a model is loaded
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


MAX_WORKERS = 64  # more threads than this only add contention (and estimates waiting in memory)


def resolve_workers(requested: int | None, device: torch.device) -> int:
    """Audio reading/writing threads (`--workers` of infer and score): what was asked for (0: read on
    the calling thread), else 2 on the CPU, where they share its cores with the net, and next to an
    accelerator half the cores (2 to 8), so that reading, mixing, resampling and writing keep up
    with a GPU (a 10 s clip costs them about 2-4 ms of CPU; the GPU check measures end to end
    against the net alone)."""
    if requested is not None:
        if not 0 <= requested <= MAX_WORKERS:
            raise ConfigError(f"--workers must be 0 (read on the main thread) to {MAX_WORKERS}, got {requested}")
        return requested
    if device.type == "cpu":
        return 2
    return max(2, min(8, (os.cpu_count() or 2) // 2))


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
    """One item with its audio as the model takes it (`Separator._prepare`)."""

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
    """One embedding per distinct query for the life of a separator."""

    def __init__(self, separator: SeparationModel):
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


# The settings of `EngineOptions` that a folder run may change on a built separator.
FOLDER_SETTINGS = ("overwrite", "limit", "progress", "pcm16", "workers")


class Separator:
    """A system ready to separate 16 kHz mono audio, exactly as `dcase9 infer` does.

    `separate(mixture, queries, reference=None)` takes a `(samples,)` or `(batch, samples)` numpy
    array or torch tensor at 16 kHz and one query (or one per row), and returns the estimates in the
    same shape and kind (float32; a tensor on the input's device). `run(dataset, out)` separates every
    mixture of an evaluation set into `out/<id>.wav`, resumably. Both use the engine's steps:
    resampling to the model's rate (soxr HQ, or julius on the device: `options.resampler`), batches
    of `batch_size`, one query embedding per distinct query (cached for the separator's life),
    chunks of `segment` seconds cross-faded for long inputs, bf16/fp16 autocast, and the same
    resampling back; so a clip gives the same samples either way. A system that needs references
    (the oracle, `3-roundtrip`) takes them as `reference=`.

    Built by `dcase9.api.load_separator` (or `dcase9.systems.load_separator`); `identity` (system, weights,
    options) decides which outputs of an earlier run in a folder may be resumed; `settings` is
    recorded in the run manifest.
    """

    sample_rate: int = SAMPLE_RATE

    def __init__(self, model: SeparationModel, *, system: str = "", options: EngineOptions | None = None,
                 segment_seconds: float | None = None, needs_reference: bool = False,
                 identity: dict[str, Any] | None = None, settings: dict[str, Any] | None = None):
        options = options or EngineOptions()
        options.check()
        self.model, self.system, self.options = model, system, options
        self.needs_reference = needs_reference
        self.identity = dict(identity) if identity is not None else {"system": system}
        if model.sample_rate != SAMPLE_RATE:  # soxr and julius outputs differ (34-49 dB): never resume one with the other
            self.identity["resampler"] = options.resampler
        self.settings = dict(settings or {})
        self.device = resolve_device(options.device)
        self.batch_size = options.batch_size or DEFAULT_BATCH_SIZE.get(self.device.type, 1)
        seconds = options.segment_seconds if options.segment_seconds is not None else segment_seconds
        self.segment = int(round(seconds * model.sample_rate)) if seconds else None
        if self.segment is not None and self.segment < 1024:
            raise ConfigError(f"--segment {seconds} s is too short for this model")
        self.queries = QueryCache(model)
        self._compiled = False

    @property
    def model_sample_rate(self) -> int:
        return self.model.sample_rate

    # -- in memory ------------------------------------------------------------------------------

    def separate(self, mixture: Any, queries: str | Sequence[str], reference: Any = None) -> Any:
        """Estimates of `mixture` ((samples,) or (batch, samples) at 16 kHz, numpy or torch) for the
        text `queries` (one string for every row, or one per row), in the input's shape and kind."""
        rows = _as_rows(mixture, "mixture")
        wanted = [queries] * len(rows) if isinstance(queries, str) else list(queries)
        if len(wanted) != len(rows):
            raise ValueError(f"{len(rows)} mixture(s) but {len(wanted)} queries: give one query, or one per row")
        references = None
        if self.needs_reference:
            if reference is None:
                raise ValueError(f"system {self.system!r} separates with the references: pass reference=")
            references = _as_rows(reference, "reference")
            if references.shape != rows.shape:
                raise ValueError(f"reference shape {references.shape} differs from the mixture's {rows.shape}")
        for k, row in enumerate(rows):
            bad = non_finite_count(row)
            if bad:
                raise Dcase9Error(f"mixture {k} has {bad} NaN or infinite samples; nothing separated")
        self._compile()
        prepared = [self._prepare(row, references[k] if references is not None else None)
                    for k, row in enumerate(rows)]
        estimates = []
        for start in range(0, len(rows), self.batch_size):
            batch = prepared[start:start + self.batch_size]
            outputs = self._separate([p[0] for p in batch], [p[1] for p in batch] if references is not None else None,
                                     wanted[start:start + self.batch_size])
            for k, estimate in enumerate(outputs, start):
                bad = non_finite_count(estimate)
                if bad:
                    raise Dcase9Error(f"the system returned {bad} NaN or infinite samples for mixture {k} "
                                      f"(query {wanted[k]!r})")
                estimates.append(self._finish(estimate, rows.shape[-1]))
        result = np.stack(estimates)
        result = result[0] if np.ndim(mixture) == 1 else result
        if isinstance(mixture, torch.Tensor):
            return torch.from_numpy(result).to(mixture.device)
        return result

    # -- over a data set's folder ---------------------------------------------------------------

    def run(self, dataset: DataSet, out_dir: str | Path, **changes: Any) -> RunResult:
        """Separate every mixture of `dataset` into `out_dir/<id>.wav` at 16 kHz (`dcase9 infer`).

        Existing outputs of the same identity are resumed (see `dcase9.outputs`); mixtures that
        cannot be separated are left out and listed in `RunResult.problems`. `changes` override
        this separator's folder settings (`FOLDER_SETTINGS`: overwrite, limit, progress, pcm16, workers).
        """
        unknown = sorted(set(changes) - set(FOLDER_SETTINGS))
        if unknown:
            raise TypeError(f"run() changes only {', '.join(FOLDER_SETTINGS)}; not {', '.join(unknown)}")
        options = replace(self.options, **changes)
        options.check()
        options = replace(options, workers=resolve_workers(options.workers, self.device))
        if self.needs_reference and not dataset.has_references:
            raise Dcase9Error(f"this system needs references, which the {dataset.kind.value} set does not have")
        out_dir = Path(out_dir)
        check_no_overlap({"--out": out_dir}, dataset.input_paths())
        self._compile()
        mixtures = dataset.mixtures[: options.limit] if options.limit else list(dataset.mixtures)
        # 16-bit outputs are other files than float ones: a folder holds one kind (float folders keep the
        # identity they always had, so they resume)
        identity = {**self.identity, "subtype": "PCM_16"} if options.pcm16 else self.identity
        if self.model.sample_rate != dataset.sample_rate and "resampler" not in identity:  # a 16 kHz system on 32 kHz data
            identity = {**identity, "resampler": options.resampler}
        folder = OutputFolder(out_dir, "infer", dataset, identity, overwrite=options.overwrite,
                              outputs_of=lambda output_id: [estimate_path(out_dir, output_id)])
        with folder:
            todo = folder.plan(mixtures)
            return self._run(dataset, folder, mixtures, todo, options)

    def _run(self, dataset: DataSet, folder: OutputFolder, mixtures: list[Any], todo: list[Any],
             options: EngineOptions) -> RunResult:
        out_dir = folder.root
        skipped = len(mixtures) - len(todo)
        rate = self.model.sample_rate
        data_rate = dataset.sample_rate  # 16 kHz; AudioSep's benchmarks 32 kHz
        # AudioSep's evaluators run each benchmark clip whole: so does the engine, unless --segment says otherwise.
        whole = dataset.kind.is_benchmark and options.segment_seconds is None
        manifest: dict[str, Any] = {
            "status": "running",
            "planned": len(mixtures),
            "settings": {**asdict(options), "batch_size": self.batch_size, "device": str(self.device),
                         "segment_samples": None if whole else self.segment, "model_sample_rate": rate,
                         "data_sample_rate": data_rate, "resampler": options.resampler if rate != data_rate else None,
                         **self.settings},
            "versions": environment_versions(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        folder.write_manifest(manifest)

        loader = ItemLoader(dataset)

        def load(spec: MixtureSpec) -> _Loaded | LoadFailure:  # on a reading thread
            item = loader.load_or_fail(spec)
            if isinstance(item, LoadFailure):
                return item
            if item.mixture.shape[-1] < MIN_AUDIO_SECONDS * data_rate:
                where = dataset.files_of(spec)[0] if dataset.kind is not SetKind.VALIDATION else dataset.csv_path
                return LoadFailure(spec, DataError(f"{item.mixture.shape[-1]} samples: shorter than "
                                                   f"{MIN_AUDIO_SECONDS:g} s, too short to separate", file=where,
                                                   row=spec.row if dataset.kind is SetKind.VALIDATION else None))
            mixture, reference = self._prepare(item.mixture, item.reference if self.needs_reference else None,
                                               data_rate)
            return _Loaded(item, mixture, reference)

        written_ids: list[str] = []
        problems: list[Problem] = []
        audio_seconds = 0.0
        started = time.perf_counter()
        subtype = "PCM_16" if options.pcm16 else "FLOAT"
        progress = progress_bar("clips") if options.progress else None
        status = "interrupted"
        task = None

        def write(output_id: str, estimate: np.ndarray, length: int) -> None:  # on a writing thread
            path = estimate_path(out_dir, output_id)
            write_wav(path, self._finish(estimate, length, data_rate), data_rate, subtype,
                      before_replace=lambda written: folder.record_file(output_id, path, written, length))

        def usable(results: Iterator[_Loaded | LoadFailure]) -> Iterator[_Loaded]:
            for result in results:
                if isinstance(result, LoadFailure):
                    problems.append(Problem(result.spec.id, str(result.error)))
                    if progress is not None and task is not None:
                        progress.update(task, advance=1)
                else:
                    yield result

        workers = options.workers or 0  # resolved by run()
        try:
            with progress or nullcontext(), ThreadPoolExecutor(max_workers=max(1, workers),
                                                              thread_name_prefix="dcase9-write") as writer:
                task = progress.add_task("separating", total=len(todo)) if progress is not None else None
                pending: list[Future[None]] = []
                max_pending_writes = 2 * max(self.batch_size, workers)
                for batch in _batches(usable(ordered_map(load, todo, workers=workers)), self.batch_size):
                    references = [loaded.reference for loaded in batch] if self.needs_reference else None
                    estimates = self._separate([loaded.mixture for loaded in batch], references,  # type: ignore[arg-type]
                                               [loaded.item.spec.query for loaded in batch], data_rate, whole)
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
                        audio_seconds += item.mixture.shape[-1] / data_rate
                    pending = _reap(pending)
                    # Estimates waiting for a writer stay in memory: when writing falls behind (a slow
                    # disk), the device waits here instead of piling them up.
                    while len(pending) > max_pending_writes:
                        pending.pop(0).result()
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
        return RunResult(out_dir, len(written_ids), skipped, elapsed, audio_seconds, str(self.device),
                         folder.manifest_path, written_ids, problems, folder.orphans)

    # -- the steps both share -------------------------------------------------------------------

    def _compile(self) -> None:
        if self.options.compile and not self._compiled:
            compile_network = getattr(self.model, "compile_network", None)
            if compile_network is None:
                raise ConfigError(f"--compile: {type(self.model).__name__} has no network to compile")
            compile_network()
            self._compiled = True

    def _threads_resample(self, data_rate: int = SAMPLE_RATE) -> bool:
        """soxr: the reading and writing threads resample (julius: the device, in `_separate`)."""
        return self.model.sample_rate != data_rate and self.options.resampler == "soxr"

    def _prepare(self, mixture: np.ndarray, reference: np.ndarray | None,
                 data_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray | None]:
        """An input at `data_rate` (16 kHz; 32 kHz for AudioSep's benchmarks) as `_separate` takes it (on a
        reading thread): at the model's rate (soxr), or still at `data_rate` when julius resamples on the device."""
        if not self._threads_resample(data_rate):
            return mixture, reference
        rate = self.model.sample_rate
        return (resample_hq(mixture, data_rate, rate),
                resample_hq(reference, data_rate, rate) if reference is not None else None)

    def _separate(self, mixtures: list[np.ndarray], references: list[np.ndarray] | None,
                  queries: list[str], data_rate: int = SAMPLE_RATE, whole: bool = False) -> list[np.ndarray]:
        """One batch of equal-length prepared inputs; estimates at `data_rate` when julius resamples here on
        the device, else at the model's rate. In chunks of this separator's segment, or `whole`."""
        device = self.device
        mixture = torch.from_numpy(np.stack(mixtures)).to(device)
        reference = torch.from_numpy(np.stack(references)).to(device) if references is not None else None
        rate = self.model.sample_rate
        on_device = self.options.resampler == "julius"  # soxr: the reading and writing threads resample
        with torch.inference_mode():
            conditions = self.queries.conditions(queries)
            if conditions is not None:
                conditions = conditions.to(device)
            model_mixture = resample(mixture, data_rate, rate) if on_device else mixture
            model_reference = reference
            if reference is not None and on_device:
                model_reference = resample(reference, data_rate, rate)

            def run(start: int, end: int) -> torch.Tensor:
                chunk_ref = model_reference[:, start:end] if model_reference is not None else None
                with autocast_context(device, self.options.precision):
                    out = self.model.separate(model_mixture[:, start:end], conditions, chunk_ref)
                return out.float()

            estimate = separate_in_chunks(run, model_mixture.shape[-1], len(mixtures),
                                          None if whole else self.segment,
                                          self.options.overlap, device)
            if on_device:
                estimate = resample(estimate, rate, data_rate)
        return list(estimate.float().cpu().numpy())

    def _finish(self, estimate: np.ndarray, length: int, data_rate: int = SAMPLE_RATE) -> np.ndarray:
        """An estimate as it is written (on a writing thread): at `data_rate` (soxr from the model's rate
        if needed), exactly as long as its mixture (resampling rounds lengths)."""
        rate = self.model.sample_rate if self._threads_resample(data_rate) else data_rate
        estimate = resample_hq(estimate, rate, data_rate)[:length]
        if estimate.shape[-1] < length:
            estimate = np.pad(estimate, (0, length - estimate.shape[-1]))
        return estimate


def _as_rows(audio: Any, what: str) -> np.ndarray:
    """`(samples,)` or `(batch, samples)` audio (numpy, torch or a list) as float32 `(batch, samples)`."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu", torch.float32).numpy()
    rows = np.asarray(audio, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None]
    if rows.ndim != 2 or rows.shape[-1] == 0 or rows.shape[0] == 0:
        raise ValueError(f"the {what} must be (samples,) or (batch, samples) audio, got shape {rows.shape}")
    return np.ascontiguousarray(rows)


def run_separation(model: SeparationModel, dataset: DataSet, out_dir: str | Path, *,
                   identity: dict[str, Any], options: EngineOptions | None = None,
                   reference_needed: bool = False, default_segment_seconds: float | None = None,
                   settings: dict[str, Any] | None = None) -> RunResult:
    """`Separator(model, ...).run(dataset, out_dir)`: separate every mixture of `dataset` into
    `out_dir/<id>.wav` at 16 kHz with a model built by hand (tests, benchmarks).

    `identity` (system name, weights' sha256, system options) decides whether existing outputs
    in `out_dir` may be resumed; `settings` is recorded in the manifest for the record only.
    """
    separator = Separator(model, options=options, segment_seconds=default_segment_seconds,
                          needs_reference=reference_needed, identity=identity, settings=settings)
    return separator.run(dataset, out_dir)


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
