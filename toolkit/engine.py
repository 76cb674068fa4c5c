"""The inference engine: separate 16 kHz audio with any system's model, fast and safely.

`Separator` (what `dcase9.api.load_separator` returns) holds a system's `SeparationModel` and the
engine's settings; `separate(mixture, queries)` works on arrays or tensors in memory, `infer(dataset,
out)` over an evaluation set's folder (`dcase9 infer`), and `separate_file` / `separate_recording` on
audio files of any format, rate, channel count and length (`dcase9 separate`: long files are streamed
through the same chunks in bounded memory). They take the same steps in the same code:

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
from dcase9.audio import (BLOCK_FRAMES, RESAMPLERS, SAMPLE_RATE, SAMPLE_RATE_RANGE, AudioWriter, Recording, non_finite_count,
                          output_format, probe_recording, read_blocks, read_recording, resample, resample_hq,
                          resampled_length, write_wav)
from dcase9.data.formats import MIN_AUDIO_SECONDS, DataSet, MixtureSpec, SetKind
from dcase9.data.items import Item, ItemLoader, LoadFailure, ordered_map
from dcase9.devices import resolve_device
from dcase9.errors import ConfigError, DataError, Dcase9Error
from dcase9.models.clap.query import MAX_AUDIO_QUERY_SECONDS, combine_query_embeddings
from dcase9.files import check_no_overlap
from dcase9.outputs import OutputFolder, Problem, estimate_path
from dcase9.progress import progress_bar
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

    sample_rate: int  # the rate it runs at; the engine resamples to it and back
    # `queried = False` (a class or instance attribute) for systems that take no query (reference-based ones)

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
        if self.segment_seconds is not None and not self.segment_seconds >= 0:
            raise ConfigError(f"--segment must be 0 (whole inputs at once) or a chunk length in seconds, got "
                              f"{self.segment_seconds}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("--limit must be at least 1")
        if self.workers is not None:
            resolve_workers(self.workers, torch.device("cpu"))  # refused before a model is loaded
        if self.resampler not in RESAMPLERS:
            raise ConfigError(f"unknown resampler {self.resampler!r} (use {' or '.join(RESAMPLERS)})")
        check_precision(self.precision)


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
    recomputed: dict[str, str] = field(default_factory=dict)  # outputs that were there but stale, and why

    @property
    def real_time_factor(self) -> float:
        """Processing time per second of audio (smaller is faster)."""
        return self.seconds / self.audio_seconds if self.audio_seconds else float("nan")


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


PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision: str, device: torch.device | None = None) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (use fp32, bf16 or fp16)")
    if precision == "fp16" and device is not None and device.type == "cpu":
        raise ConfigError("fp16 autocast needs a GPU; use --precision bf16 on the CPU")


def autocast_context(device: torch.device, precision: str) -> Any:
    check_precision(precision, device)
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


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

    @property
    def needs_queries(self) -> bool:
        """Whether the system separates by a query (`queried = False`: the mixture, the oracle...)."""
        return bool(getattr(self.separator, "queried", True))

    def conditions(self, queries: Sequence[str]) -> torch.Tensor | None:
        new = [q for q in dict.fromkeys(queries) if q not in self.embeddings]
        if new:
            encoded = self.separator.encode_queries(new)
            if encoded is None:
                return None
            for query, row in zip(new, encoded, strict=True):
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
    """A system ready to separate audio, exactly as `dcase9 infer` does.

    `separate(mixture, queries, sample_rate=...)` works in memory: a `(samples,)` or `(batch, samples)`
    numpy array or torch tensor at `sample_rate` (required: nothing here can tell 44.1 kHz audio from
    16 kHz audio, and a wrong guess gives a wrong but plausible result), one query (or one per row);
    it returns the estimates at the input's rate, shape and kind (float32). `infer(dataset, out)`
    separates every mixture of an evaluation set into `out/<id>.wav` (at the set's rate: 16 kHz, 32 kHz for
    AudioSep's benchmarks), resumably. Both use the
    engine's steps: resampling to the model's rate and back (soxr HQ on the CPU, or julius on the
    device: `options.resampler`; a tensor on a GPU is resampled there and never leaves it), batches of
    `batch_size`, one query embedding per distinct query (cached for the separator's life), chunks of
    `segment` seconds cross-faded for long inputs, bf16/fp16 autocast; so a clip gives the same samples
    either way. A system that needs references (the oracle, `3-roundtrip`) takes them as `reference=`.

    Built by `dcase9.api.load_separator` (or `dcase9.systems.load_separator`); `model` is the system's
    module (`model.sample_rate`: the rate it runs at); `identity` (system, weights, system options)
    decides which outputs of an earlier run in a folder may be resumed; `settings` is recorded in the
    run manifest.
    """

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
        check_precision(options.precision, self.device)  # before anything is written (fp16 needs a GPU)
        self.batch_size = options.batch_size or DEFAULT_BATCH_SIZE.get(self.device.type, 1)
        seconds = options.segment_seconds if options.segment_seconds is not None else segment_seconds
        self.segment = int(round(seconds * model.sample_rate)) if seconds else None
        if self.segment is not None and self.segment < 1024:
            raise ConfigError(f"--segment {seconds} s is too short for this model")
        self.queries = QueryCache(model)
        self._compiled = False

    # -- in memory ------------------------------------------------------------------------------

    def separate(self, mixture: Any, queries: str | Sequence[str] | None = None, *, sample_rate: int,
                 reference: Any = None, conditions: torch.Tensor | None = None, query_audio: Any = None) -> Any:
        """Estimates of `mixture` (`(samples,)` or `(batch, samples)` at `sample_rate` Hz, numpy or torch)
        for the text `queries` (one string for every row, or one per row), in the input's rate, shape and
        kind. `conditions`: query embeddings computed already (one row, or one per row), instead of
        `queries`. `query_audio`: an audio example of the sound wanted, `(waveform, rate)`, for every row
        (with a text query too: both together, see `embed_query`). A tensor on a GPU stays there
        (resampled there with julius); arrays and CPU tensors are resampled with soxr HQ, as `dcase9 infer`
        does."""
        rate = check_sample_rate(sample_rate)
        if query_audio is not None:
            if conditions is not None or not (queries is None or isinstance(queries, str)):
                raise ValueError("query_audio takes one text query at most (for every row), and no conditions")
            conditions = self._audio_conditions(queries, query_audio)
            queries = None
        on_device = isinstance(mixture, torch.Tensor) and mixture.device.type != "cpu"
        rows = _as_rows(mixture, "mixture", keep_device=on_device)
        wanted = self._queries_for(len(rows), queries, conditions)
        references = None
        if self.needs_reference:
            if reference is None:
                raise ValueError(f"system {self.system!r} separates with the references: pass reference=")
            references = _as_rows(reference, "reference", keep_device=on_device)
            if references.shape != rows.shape:
                raise ValueError(f"reference shape {tuple(references.shape)} differs from the mixture's "
                                 f"{tuple(rows.shape)}")
        bad = _non_finite_rows(rows)
        if bad:
            k, count = bad[0]
            raise Dcase9Error(f"mixture {k} has {count} NaN or infinite samples; nothing separated")
        self._compile()
        if not on_device:
            stacked = self._estimate_rows(rows, wanted, rate, references)
            for k, bad_count in _non_finite_rows(stacked):
                query = f" (query {wanted[k]!r})" if isinstance(wanted, list) else ""
                raise Dcase9Error(f"the system returned {bad_count} NaN or infinite samples for mixture {k}{query}")
            stacked = stacked[0] if np.ndim(mixture) == 1 else stacked
            return torch.from_numpy(stacked) if isinstance(mixture, torch.Tensor) else stacked
        estimates: list[torch.Tensor] = []
        for start in range(0, len(rows), self.batch_size):
            stop = start + self.batch_size
            batch_refs = references[start:stop] if references is not None else None
            estimate = self._separate_batch(rows[start:stop], batch_refs, wanted[start:stop], rate, resample_here=True)
            for k, bad_count in _non_finite_rows(estimate):
                query = f" (query {wanted[start + k]!r})" if isinstance(wanted, list) else ""
                raise Dcase9Error(f"the system returned {bad_count} NaN or infinite samples for mixture "
                                  f"{start + k}{query}")
            estimates.append(estimate)
        result = torch.cat(estimates)
        return result[0] if mixture.ndim == 1 else result

    def _estimate_rows(self, rows: np.ndarray, wanted: list[str] | torch.Tensor, rate: int,
                       references: np.ndarray | None = None) -> np.ndarray:
        """Estimates of host `(rows, samples)` audio at `rate` for `wanted` (one query or condition per row), in
        batches of `batch_size`, at `rate` and in the rows' length; NaN or infinite samples are the caller's
        to refuse."""
        estimates = []
        for start in range(0, len(rows), self.batch_size):
            stop = start + self.batch_size
            batch_refs = references[start:stop] if references is not None else None
            prepared = [self._prepare(row, batch_refs[k] if batch_refs is not None else None, rate)
                        for k, row in enumerate(rows[start:stop])]
            outputs = self._separate([p[0] for p in prepared],
                                     [p[1] for p in prepared] if batch_refs is not None else None,  # type: ignore[misc]
                                     wanted[start:stop], rate)
            estimates += [self._finish(output, rows.shape[-1], rate) for output in outputs]
        return np.stack(estimates)

    # -- recordings (files of any format, rate, channel count and length) ---------------------------

    def separate_recording(self, recording: Recording, queries: Sequence[str | torch.Tensor], *, mono: bool = False,
                           block_frames: int = BLOCK_FRAMES) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        """Separate a probed recording (`dcase9.audio.probe_recording`) for each of `queries` (a text, or
        a condition as `separate`'s `conditions=` takes it) in one pass over the file: yields, in order
        and covering the file, `(mixture, [estimate per query])` blocks of `(channels, frames)` at the
        file's rate (`mono`: one channel, the mean). Each channel is separated as a row of `separate`,
        and the estimates are what `separate` gives for the whole file. NaN or infinite estimates are
        the caller's to refuse (one query's may be, the others' not). Files are resampled with soxr HQ
        on the CPU."""
        refuse_reference_system(self.system, self.needs_reference)
        if self.model.sample_rate != recording.sample_rate and self.options.resampler != "soxr":
            raise ConfigError("recordings are resampled with soxr HQ on the CPU, as they are read; load the "
                              "separator with resampler='soxr' (julius serves tensors already on a device)")
        self._compile()
        channels = 1 if mono else recording.channels
        wanted = [self._queries_for(channels, query if isinstance(query, str) else None,
                                    query if isinstance(query, torch.Tensor) else None) for query in queries]
        model_length = resampled_length(recording.frames, recording.sample_rate, self.model.sample_rate)
        if self.segment is None or model_length <= self.segment:  # one pass over the whole file, as `separate`
            mixture = read_recording(recording, mono=mono)
            yield mixture, [self._estimate_rows(mixture, rows, recording.sample_rate) for rows in wanted]
            return
        yield from _RecordingStream(self, recording, wanted, mono=mono, block_frames=block_frames).run()

    def separate_file(self, path: str | Path, query: str | None = None, out: str | Path | None = None, *,
                      query_audio: Any = None, conditions: torch.Tensor | None = None, mono: bool = False,
                      pcm16: bool = False) -> Any:
        """Separate an audio file of any format libsndfile reads, rate, channel count and length for the text
        `query`, an audio example `query_audio` (a file, or `(waveform, rate)`), both (`embed_query`), or
        `conditions` (a query embedding), each channel on its own (`mono`: their mean).

        Without `out`: the estimate at the file's rate and length, float32 `(samples,)` for one channel,
        `(channels, samples)` for more. With `out` (a `.wav` or `.flac` path): the estimate written there
        atomically (32-bit float WAV, or 24-bit FLAC; `pcm16`: 16-bit), in bounded memory whatever the
        length (the engine's chunks over a stream of the file), and `out` is returned. A file that cannot
        be separated (unreadable, empty, silent, NaN/inf) is a DataError naming it."""
        recording = probe_recording(path, min_seconds=MIN_AUDIO_SECONDS)
        if query_audio is not None:
            if conditions is not None:
                raise ValueError("give query_audio or conditions, not both")
            conditions, query = self._audio_conditions(query, query_audio), None
        wanted: str | torch.Tensor | None = conditions if conditions is not None else query
        if wanted is None:
            wanted = ""  # refused by `_queries_for` when the system is queried
        if conditions is not None and query is not None:
            raise ValueError("give query or conditions, not both")
        stream = self.separate_recording(recording, [wanted], mono=mono)
        if out is None:
            blocks = []
            for _, (estimate,) in stream:
                self._refuse_non_finite(estimate, recording.path)
                blocks.append(estimate)
            whole = np.concatenate(blocks, axis=1)
            return whole[0] if len(whole) == 1 else whole
        out = Path(out)
        check_no_overlap({"out": out}, {"path": path})
        formats = {".wav": "wav", ".flac": "flac"}
        if out.suffix.lower() not in formats:
            raise ConfigError(f"{out}: name a .wav or .flac file to write the estimate to")
        container, subtype, _ = output_format(formats[out.suffix.lower()], pcm16=pcm16)
        with AudioWriter(out, recording.sample_rate, 1 if mono else recording.channels, container, subtype) as writer:
            for _, (estimate,) in stream:
                self._refuse_non_finite(estimate, recording.path)
                writer.write(estimate)
            writer.commit()
        return out

    def embed_query(self, text: str | None = None, *, audio: Any = None, sample_rate: int | None = None) -> torch.Tensor:
        """The condition of one query, `(embedding_dim,)` on the device, for `separate(conditions=...)`: the CLAP
        embedding of `text`, of an audio example `audio` (`(samples,)` or `(channels, samples)` at `sample_rate`,
        the channels averaged; embedded as AudioSep's `get_query_embed(modality="audio")` does), or of both:
        their normalised mean (`dcase9.models.clap.query` says why). Audio examples need the CLAP audio
        tower: `load_separator(..., audio_queries=True)`."""
        if not self.queries.needs_queries:
            raise Dcase9Error(f"system '{self.system}' takes no query: it has no query encoder to embed one")
        if text is None and audio is None:
            raise ValueError("give a text, an audio example, or both")
        if text is not None and not text.strip():
            raise ValueError("the query is empty: say what to separate")
        with torch.inference_mode():
            embeddings = [self.queries.conditions([text])[0]] if text is not None else []  # type: ignore[index]
            if audio is not None:
                embeddings.append(self._embed_example(audio, sample_rate))
        return embeddings[0] if len(embeddings) == 1 else combine_query_embeddings(*embeddings)

    def _embed_example(self, audio: Any, sample_rate: int | None) -> torch.Tensor:
        encode = getattr(self.model, "encode_audio_query", None)
        clap = getattr(self.model, "clap", None)
        if encode is None:
            raise Dcase9Error(f"system '{self.system}' takes no audio examples as queries")
        if clap is not None and not clap.has_audio_tower:
            raise ConfigError(f"system '{self.system}' was loaded with CLAP's text tower only; an audio example "
                              "needs its audio tower: load_separator(..., audio_queries=True)")
        if sample_rate is None:
            raise ValueError("give the audio example's sample_rate")
        rate = check_sample_rate(sample_rate)
        rows = _as_rows(audio, "audio example")
        if isinstance(rows, torch.Tensor):
            rows = rows.cpu().numpy()
        waveform = rows[0] if len(rows) == 1 else np.mean(rows, axis=0, dtype=np.float32)
        bad = non_finite_count(waveform)
        if bad:
            raise Dcase9Error(f"the audio example has {bad} NaN or infinite samples")
        if not np.any(waveform):
            raise Dcase9Error("the audio example is silent: every sample is zero")
        if waveform.shape[-1] > MAX_AUDIO_QUERY_SECONDS * rate:
            raise Dcase9Error(f"the audio example lasts {waveform.shape[-1] / rate:.0f} s; an example of the sound "
                              f"wanted lasts seconds (CLAP hears 10 s at a time; at most {MAX_AUDIO_QUERY_SECONDS:g} s)")
        return encode(waveform, rate)

    def _audio_conditions(self, text: str | None, query_audio: Any) -> torch.Tensor:
        """`embed_query` of a text (or None) and `query_audio`: an audio file, or `(waveform, rate)`."""
        if isinstance(query_audio, (str, Path)):
            example = probe_recording(query_audio, min_seconds=MIN_AUDIO_SECONDS)
            return self.embed_query(text, audio=read_recording(example, mono=True), sample_rate=example.sample_rate)
        if not (isinstance(query_audio, tuple) and len(query_audio) == 2):
            raise ValueError("query_audio is an audio file, or (waveform, sample_rate)")
        return self.embed_query(text, audio=query_audio[0], sample_rate=query_audio[1])

    @staticmethod
    def _refuse_non_finite(estimate: np.ndarray, path: Path) -> None:
        bad = non_finite_count(estimate)
        if bad:
            raise Dcase9Error(f"{path}: the system returned {bad} NaN or infinite samples; nothing written")

    def _queries_for(self, rows: int, queries: str | Sequence[str] | None,
                     conditions: torch.Tensor | None) -> list[str] | torch.Tensor:
        if conditions is not None:
            if queries is not None:
                raise ValueError("give queries or conditions, not both")
            conditions = conditions if conditions.ndim == 2 else conditions[None]
            if conditions.shape[0] not in (1, rows):
                raise ValueError(f"{rows} mixture(s) but {conditions.shape[0]} conditions: give one, or one per row")
            return conditions if conditions.shape[0] == rows else conditions.expand(rows, -1)
        if queries is None:
            if self.queries.needs_queries:
                raise ValueError(f"system {self.system!r} is queried: give queries (text) or conditions")
            return [""] * rows
        wanted = [queries] * rows if isinstance(queries, str) else list(queries)
        if len(wanted) != rows:
            raise ValueError(f"{rows} mixture(s) but {len(wanted)} queries: give one query, or one per row")
        empty = [k for k, query in enumerate(wanted) if not query.strip()]
        if empty and self.queries.needs_queries:
            raise ValueError(f"query {empty[0]} is empty: say what to separate")
        return wanted

    # -- over a data set's folder ---------------------------------------------------------------

    def infer(self, dataset: DataSet, out_dir: str | Path, **changes: Any) -> RunResult:
        """Separate every mixture of `dataset` into `out_dir/<id>.wav` at its rate (16 kHz; AudioSep's benchmarks
        32 kHz) (`dcase9 infer`).

        Existing outputs of the same identity are resumed (see `dcase9.outputs`); mixtures that
        cannot be separated are left out and listed in `RunResult.problems`. `changes` override
        this separator's folder settings (`FOLDER_SETTINGS`: overwrite, limit, progress, pcm16, workers).
        """
        unknown = sorted(set(changes) - set(FOLDER_SETTINGS))
        if unknown:
            raise TypeError(f"infer() changes only {', '.join(FOLDER_SETTINGS)}; not {', '.join(unknown)}")
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
                      before_replace=lambda written: folder.record_file(output_id, path, written, length,
                                                                            rate=data_rate))

        def usable(results: Iterator[_Loaded | LoadFailure]) -> Iterator[_Loaded]:
            for result in results:
                if isinstance(result, LoadFailure):
                    problems.append(Problem(result.spec.id, str(result.error)))
                    if progress is not None and task is not None:
                        progress.update(task, advance=1)
                else:
                    yield result

        workers = options.workers or 0  # resolved by infer()
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
                    for loaded, estimate in zip(batch, estimates, strict=True):
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
                             "problems": [asdict(p) for p in problems], "recomputed": folder.recomputed})
            folder.write_manifest(manifest)
        return RunResult(out_dir, len(written_ids), skipped, elapsed, audio_seconds, str(self.device),
                         folder.manifest_path, written_ids, problems, folder.orphans, dict(folder.recomputed))

    # -- the steps both share -------------------------------------------------------------------

    def _compile(self) -> None:
        if self.options.compile and not self._compiled:
            compile_network = getattr(self.model, "compile_network", None)
            if compile_network is None:
                raise ConfigError(f"--compile: {type(self.model).__name__} has no network to compile")
            compile_network()
            self._compiled = True

    def _threads_resample(self, rate: int) -> bool:
        """soxr: the reading and writing threads resample audio at `rate` (julius: the device)."""
        return self.model.sample_rate != rate and self.options.resampler == "soxr"

    def _prepare(self, mixture: np.ndarray, reference: np.ndarray | None,
                 rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray | None]:
        """An input at `rate` as `_separate` takes it (on a reading thread): at the model's rate (soxr),
        or still at `rate` when julius resamples on the device."""
        if not self._threads_resample(rate):
            return mixture, reference
        model_rate = self.model.sample_rate
        return (resample_hq(mixture, rate, model_rate),
                resample_hq(reference, rate, model_rate) if reference is not None else None)

    def _separate(self, mixtures: list[np.ndarray], references: list[np.ndarray] | None,
                  queries: Sequence[str] | torch.Tensor, rate: int = SAMPLE_RATE, whole: bool = False) -> list[np.ndarray]:
        """One batch of equal-length prepared inputs; estimates at `rate` when julius resamples on the
        device, else at the model's rate (`_finish` resamples them on a writing thread). In chunks of this
        separator's segment, or `whole` (AudioSep's benchmarks, as its evaluators run them)."""
        mixture = torch.from_numpy(np.stack(mixtures)).to(self.device)
        reference = torch.from_numpy(np.stack(references)).to(self.device) if references is not None else None
        estimate = self._separate_batch(mixture, reference, queries, rate,
                                        resample_here=self.options.resampler == "julius", whole=whole)
        return list(estimate.float().cpu().numpy())

    def _separate_batch(self, mixture: torch.Tensor, reference: torch.Tensor | None,
                        queries: Sequence[str] | torch.Tensor, rate: int, *, resample_here: bool,
                        whole: bool = False) -> torch.Tensor:
        """A batch of equal-length inputs as tensors: at `rate` when `resample_here` (resampled to the
        model's rate and back on their device, with julius), else at the model's rate already."""
        device = self.device
        mixture = mixture.to(device)
        reference = reference.to(device) if reference is not None else None
        model_rate = self.model.sample_rate
        resampling = resample_here and rate != model_rate
        with torch.inference_mode():
            conditions = self._conditions(queries)
            model_mixture = resample(mixture, rate, model_rate) if resampling else mixture
            model_reference = resample(reference, rate, model_rate) if resampling and reference is not None \
                else reference

            def run(start: int, end: int) -> torch.Tensor:
                chunk_ref = model_reference[:, start:end] if model_reference is not None else None
                return self._run_chunk(model_mixture[:, start:end], conditions, chunk_ref)

            estimate = separate_in_chunks(run, model_mixture.shape[-1], mixture.shape[0],
                                          None if whole else self.segment,
                                          self.options.overlap, device)
            if resampling:
                estimate = resample(estimate, model_rate, rate)[..., :mixture.shape[-1]]
                if estimate.shape[-1] < mixture.shape[-1]:
                    estimate = torch.nn.functional.pad(estimate, (0, mixture.shape[-1] - estimate.shape[-1]))
        return estimate.float()

    def _conditions(self, queries: Sequence[str] | torch.Tensor) -> torch.Tensor | None:
        """One condition per row on the device: the embeddings of text queries (cached), or conditions given."""
        conditions = queries if isinstance(queries, torch.Tensor) else self.queries.conditions(list(queries))
        return conditions.to(self.device) if conditions is not None else None

    def _run_chunk(self, mixture: torch.Tensor, conditions: torch.Tensor | None,
                   reference: torch.Tensor | None) -> torch.Tensor:
        """The model on one chunk at its rate, on the device (in inference mode), as float32."""
        with autocast_context(self.device, self.options.precision):
            out = self.model.separate(mixture, conditions, reference)
        return out.float()

    def _finish(self, estimate: np.ndarray, length: int, rate: int = SAMPLE_RATE) -> np.ndarray:
        """An estimate as it is written (on a writing thread): at `rate` (soxr from the model's rate if
        needed), exactly as long as its mixture (resampling rounds lengths)."""
        from_rate = self.model.sample_rate if self._threads_resample(rate) else rate
        estimate = resample_hq(estimate, from_rate, rate)[:length]
        if estimate.shape[-1] < length:
            estimate = np.pad(estimate, (0, length - estimate.shape[-1]))
        return estimate


class _RecordingStream:
    """`Separator.separate_recording` for a recording longer than one chunk, in bounded memory: the file is
    read in blocks, resampled to the model's rate by a soxr HQ stream (whose output equals one-shot soxr's
    sample for sample), and cut into the chunks `chunk_starts` gives for the whole file at the model's rate,
    each run as soon as its samples are in, with `separate_in_chunks`' windows, weights and order of
    additions. The samples before the next chunk's start are then final: divided by their weight,
    resampled back to the file's rate by a soxr stream per query, and yielded with the mixture's samples
    they belong to. Held at once: about one chunk of input and of each query's estimate, and one block."""

    def __init__(self, separator: Separator, recording: Recording, wanted: list[list[str] | torch.Tensor], *,
                 mono: bool, block_frames: int):
        self.separator, self.recording, self.wanted, self.mono = separator, recording, wanted, mono
        self.block_frames = block_frames
        self.rate, self.model_rate = recording.sample_rate, separator.model.sample_rate
        self.channels = 1 if mono else recording.channels
        self.model_length = resampled_length(recording.frames, self.rate, self.model_rate)
        assert separator.segment is not None, "a stream is for a separator that cuts inputs into chunks"
        self.segment = separator.segment
        self.starts = chunk_starts(self.model_length, self.segment, separator.options.overlap)
        self.fade = self.segment - max(1, int(round(self.segment * (1.0 - separator.options.overlap))))

    def _resampler(self, from_rate: int, to_rate: int) -> Any:
        import soxr

        return soxr.ResampleStream(from_rate, to_rate, self.channels, dtype="float32", quality="HQ")

    def run(self) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        separator, channels, segment, device = self.separator, self.channels, self.segment, self.separator.device
        frames = self.recording.frames
        resampling = self.rate != self.model_rate
        reader = read_blocks(self.recording, mono=self.mono, block_frames=self.block_frames)
        to_model = self._resampler(self.rate, self.model_rate) if resampling else None
        to_file = [self._resampler(self.model_rate, self.rate) for _ in self.wanted] if resampling else None
        groups = [(b, min(b + separator.batch_size, channels)) for b in range(0, channels, separator.batch_size)]
        with torch.inference_mode():  # never around a yield: the caller's code runs there
            conditions = [[separator._conditions(rows[b:e]) for b, e in groups] for rows in self.wanted]
            estimates = [torch.zeros(channels, segment, device=device) for _ in self.wanted]
            weight = torch.zeros(segment, device=device)
        model_input = np.zeros((channels, 0), dtype=np.float32)  # model-rate input from the current chunk's start
        received = 0  # model-rate input samples so far
        mixture: list[np.ndarray] = []  # file-rate blocks read and not yet yielded
        pending: list[list[np.ndarray]] = [[] for _ in self.wanted]  # file-rate estimates not yet yielded
        yielded = 0

        def take(samples: np.ndarray) -> None:
            nonlocal model_input, received
            samples = samples[:, : self.model_length - received]  # as `resample_hq` cuts soxr's output
            model_input = np.concatenate([model_input, samples], axis=1)
            received += samples.shape[1]

        def ready(final: bool) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
            """What every query has at the file's rate, with the mixture's samples it belongs to."""
            nonlocal yielded
            read = sum(block.shape[1] for block in mixture)
            count = frames - yielded if final else min(read, *(sum(b.shape[1] for b in blocks) for blocks in pending))
            count = min(count, frames - yielded)
            if count <= 0:
                return
            outs = []
            for query, blocks in enumerate(pending):
                joined = np.concatenate(blocks, axis=1) if blocks else np.zeros((channels, 0), dtype=np.float32)
                if joined.shape[1] < count:  # soxr left the end short: zeros, as `Separator._finish` pads
                    joined = np.pad(joined, ((0, 0), (0, count - joined.shape[1])))
                outs.append(joined[:, :count])
                pending[query] = [joined[:, count:]]
            joined = np.concatenate(mixture, axis=1)
            mixture[:] = [joined[:, count:]]
            yielded += count
            yield joined[:, :count], outs

        exhausted = False
        for k, start in enumerate(self.starts):
            while received < start + segment and not exhausted:
                block = next(reader, None)
                if block is None:
                    exhausted = True
                    if to_model is not None:
                        take(to_model.resample_chunk(np.zeros((0, channels), dtype=np.float32), last=True).T)
                    take(np.zeros((channels, self.model_length - received), dtype=np.float32))
                else:
                    mixture.append(block)
                    take(to_model.resample_chunk(block.T).T if to_model is not None else block)
            last = k == len(self.starts) - 1
            done = (self.model_length if last else self.starts[k + 1]) - start  # final: no later chunk reaches them
            offset = start - (received - model_input.shape[1])
            with torch.inference_mode():
                window = crossfade_window(segment, self.fade, first=k == 0, last=last, device=device)
                chunk = torch.from_numpy(np.ascontiguousarray(model_input[:, offset:offset + segment])).to(device)
                for query, rows in enumerate(conditions):
                    for (b, e), condition in zip(groups, rows, strict=True):
                        estimates[query][b:e] += separator._run_chunk(chunk[b:e], condition, None) * window
                weight += window
                finished = [(estimate[:, :done] / weight[:done]).float().cpu().numpy() for estimate in estimates]
                if not last:  # the accumulators move on to the next chunk's start
                    estimates = [torch.cat([e[:, done:], torch.zeros(channels, done, device=device)], dim=1)
                                 for e in estimates]
                    weight = torch.cat([weight[done:], torch.zeros(done, device=device)])
            model_input = model_input[:, offset + done:]
            for query, samples in enumerate(finished):
                if to_file is not None:
                    samples = to_file[query].resample_chunk(np.ascontiguousarray(samples.T), last=last).T
                pending[query].append(samples)
            yield from ready(final=False)
        for block in reader:  # the rest of the file (read_blocks checks its length): mixture still to yield
            mixture.append(block)
        yield from ready(final=True)


def _as_rows(audio: Any, what: str, *, keep_device: bool = False) -> Any:
    """`(samples,)` or `(batch, samples)` audio (numpy, torch or a list) as float32 `(batch, samples)`:
    a numpy array, or with `keep_device` a tensor on the input's device."""
    rows: Any
    if keep_device and isinstance(audio, torch.Tensor):
        rows = audio.detach().float()
    else:
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().to("cpu", torch.float32).numpy()
        rows = np.asarray(audio, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None]
    if rows.ndim != 2 or rows.shape[-1] == 0 or rows.shape[0] == 0:
        raise ValueError(f"the {what} must be (samples,) or (batch, samples) audio, got shape {tuple(rows.shape)}")
    return rows.contiguous() if isinstance(rows, torch.Tensor) else np.ascontiguousarray(rows)


def _non_finite_rows(rows: Any) -> list[tuple[int, int]]:
    """(row, count) of the rows of a batch (numpy rows or a tensor) holding NaN or infinite samples."""
    if isinstance(rows, torch.Tensor):
        if rows.is_meta:  # shapes only (device-placement checks): no samples to look at
            return []
        counts = (~torch.isfinite(rows)).sum(dim=-1).tolist()  # one small transfer for the batch
    else:
        counts = [non_finite_count(row) for row in rows]
    return [(k, count) for k, count in enumerate(counts) if count]


def check_sample_rate(rate: Any) -> int:
    """`rate` as an int, refused outside `SAMPLE_RATE_RANGE` or when it is not a whole number."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or rate != int(rate):
        raise ValueError(f"sample_rate must be a whole number of Hz, got {rate!r}")
    if not SAMPLE_RATE_RANGE[0] <= int(rate) <= SAMPLE_RATE_RANGE[1]:
        raise ValueError(f"sample_rate {rate} Hz is outside {SAMPLE_RATE_RANGE[0]}..{SAMPLE_RATE_RANGE[1]} Hz")
    return int(rate)


def refuse_reference_system(system: str, needs_reference: bool) -> None:
    """A system that separates with the reference (the oracle, `3-roundtrip`) cannot separate a recording."""
    if needs_reference:
        raise Dcase9Error(f"system '{system}' separates with the reference signal (the clean source), which a "
                          "recording does not have; use a text-queried system (see `dcase9 systems`)")


def _reap(pending: list[Future[None]]) -> list[Future[None]]:
    """Drop finished writes, re-raising a failed one now rather than at the end."""
    still_running = []
    for future in pending:
        if future.done():
            future.result()
        else:
            still_running.append(future)
    return still_running
