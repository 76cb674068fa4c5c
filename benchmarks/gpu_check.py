"""The GPU check: everything a short GPU loan must measure, in one unattended run.

    bash benchmarks/gpu_check.sh                    # on a GPU: under 8 minutes, writes benchmarks/results/<device>.json
    bash benchmarks/gpu_check.sh --smoke --out DIR  # the same code paths on the CPU at tiny sizes (the tests run this)

Sections, in this order, each in its own process (a crash, a hang or a poisoned CUDA context in
one cannot take the others down) with its own time budget inside a global deadline; a section that
fails is recorded with its error and the next one runs; one that runs out of time keeps the rows
it finished; one that no longer fits before the deadline is recorded as skipped:

- `tests`: `pytest -m gpu tests/test_gpu.py` (device placement, autocast, batch invariance);
- `device`: GPU name, memory, capability, driver; torch, CUDA and cuDNN versions; TF32 settings;
- `parity`: CUDA against CPU outputs, with PyTorch's default settings and in strict fp32 (TF32
  off), of the baseline's ResUNet30 at 16 kHz, System 2's at 32 kHz, the CLAP text towers (the
  plain-PyTorch one of text queries, transformers' one of ATS), the audio tower and the AudioLDM
  VAE + vocoder round trip: max abs difference and SNR (dB);
- `precision`: the whole validation-set job at fp32, bf16 and fp16 (3000 mixtures of 1000 clips,
  `dcase9 infer` then `dcase9 score` through their Python functions): seconds, clips/s, mean
  SDR / SDRi / SI-SDR and their deltas against fp32, and the net alone at the same batch
  (end to end against the net alone shows whether loading and writing starve the GPU);
- `inference`: the net alone (resampling included) of the baseline and System 2 at batch
  1/8/16/32 in fp32 and bf16, and System 3 at batch 1/8: clips/s, real-time factor, peak memory;
- `training`: `dcase9 train` of the baseline (batch 16, fp32 and bf16-mixed) and System 3 (batch
  8, bf16-mixed): steps/s, clips/s, peak memory;
- `compile`: `dcase9 infer --compile` (torch.compile of ResUNet30's body) against eager, the
  baseline's net at batch 16 in bf16: clips/s of each, the compilation's seconds, and how far the
  compiled outputs are from the eager ones. `--compile` stays only if it pays on a GPU (it does not
  on the CPU: BENCHMARKS.md). Last, so that it never takes time from the others.

Everything runs on random full-size weights (the cost depends on shapes, not values; the SDR
figures of random nets mean nothing, their differences between precisions do) and on the demo
data synthesised on the spot: no network, no real weights. `--smoke` runs the same code on the
CPU with tiny models, a few clips and 1 s segments; there the "GPU" side of parity is the CPU
again (exercising the code, not measuring anything).

The result JSON is rewritten atomically after every section (`--mirror DIR` keeps a copy there
too: on a lent GPU machine, $OUT, so that even a run cut short brings back what it measured), and
at the end its tables replace this device's block in BENCHMARKS.md (`--benchmarks-md`; with
`--smoke`, a copy in the output folder).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECTIONS = ("tests", "device", "parity", "precision", "inference", "training", "compile")
# Seconds per section on a GPU; the global deadline (--deadline) bounds the sum.
BUDGETS = {"tests": 50, "device": 20, "parity": 60, "precision": 120, "inference": 80, "training": 110, "compile": 90}
SMOKE_BUDGETS = {"tests": 120, "device": 60, "parity": 180, "precision": 240, "inference": 180, "training": 300,
                 "compile": 240}
MIN_START_S = 10  # a section is not started with less time than this left before the deadline
SCHEMA = 1
NO_RESULTS_YET = "No GPU run yet.\n"  # BENCHMARKS.md's line under the results heading until a first block


@dataclass(frozen=True)
class Sizes:
    """How big each section's work is: the real thing on a GPU, tiny with --smoke."""

    clip_seconds: float = 10.0
    full_models: bool = True
    mixtures: int = 3000  # precision: the validation set's size
    distinct_clips: int = 1000
    goal_batch: int = 16
    precisions: tuple[str, ...] = ("fp32", "bf16", "fp16")
    batches: tuple[int, ...] = (1, 8, 16, 32)
    system3_batches: tuple[int, ...] = (1, 8)
    inference_precisions: tuple[str, ...] = ("fp32", "bf16")
    min_seconds: float = 1.5  # timed iterations of the net alone: at least this long ...
    min_iterations: int = 3  # ... and at least this many, after `warm_up`
    warm_up: int = 2
    train_steps: int = 12
    training: tuple[tuple[str, int, str, float], ...] = (  # preset, batch, Lightning precision, segment
        ("baseline", 16, "32-true", 10.0), ("baseline", 16, "bf16-mixed", 10.0), ("system3", 8, "bf16-mixed", 10.0))
    compile_precision: str = "bf16"


SMOKE = Sizes(clip_seconds=1.0, full_models=False, mixtures=6, distinct_clips=8, goal_batch=2, precisions=("fp32", "bf16"),
              batches=(1, 2), system3_batches=(1,), min_seconds=0.0, min_iterations=1, warm_up=1, train_steps=6,
              training=(("demo", 2, "32-true", 1.0), ("system3", 2, "32-true", 0.64)), compile_precision="fp32")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: Any) -> None:
    from dcase9.files import write_json_atomic

    write_json_atomic(path, data)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown-device"


# =============================================================================================
# The child side: one section in this process
# =============================================================================================

class Section:
    """What a section writes: its rows and notes, saved after every row so a timeout keeps them."""

    def __init__(self, path: Path, budget: float):
        self.path = path
        self.started = time.monotonic()
        self.budget = budget
        self.data: dict[str, Any] = {"status": "running"}

    def save(self) -> None:
        self.data["seconds"] = round(time.monotonic() - self.started, 2)
        write_json(self.path, self.data)

    def set(self, **values: Any) -> None:
        self.data.update(values)
        self.save()

    def add(self, key: str, row: dict[str, Any]) -> None:
        self.data.setdefault(key, []).append(row)
        self.save()

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def guarded(self, key: str, label: dict[str, Any], measure: Callable[[], dict[str, Any]],
                needs: float = 0.0) -> None:
        """Add `label` + `measure()` as a row of `key`; an exception becomes the row's error, and a row
        that would not fit in the budget (`needs` seconds) is recorded as skipped."""
        import torch

        if self.left() < needs:
            self.add(key, {**label, "skipped": f"not enough time left in the section's budget ({self.left():.0f} s)"})
            return
        try:
            self.add(key, {**label, **measure()})
        except Exception as exc:  # recorded, and the next row runs
            self.add(key, {**label, "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
                           if str(exc).strip() else type(exc).__name__})
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


@dataclass
class Context:
    device: Any  # torch.device
    smoke: bool
    sizes: Sizes
    work: Path
    section: Section

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: Any) -> tuple[float, str]:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process peak RSS"


def demo_audio(seconds: float, rate: int, seed: int = 0) -> Any:
    """(1, samples) float32: a demo dog-bark clip plus rain, resampled to `rate`."""
    import numpy as np
    import torch

    from dcase9.audio import SAMPLE_RATE, resample
    from dcase9.data.demo import SOUND_CLASSES

    clip = SOUND_CLASSES[0].synth(np.random.default_rng([seed, 0])) + 0.3 * SOUND_CLASSES[2].synth(
        np.random.default_rng([seed, 1]))
    audio = torch.from_numpy(clip.astype(np.float32))[None, : int(seconds * SAMPLE_RATE)]
    return resample(audio, SAMPLE_RATE, rate).contiguous()


def tokenizer_dir(ctx: Context) -> Path:
    from benchmarks.inference import tokenizer_folder

    return tokenizer_folder(ctx.work)[0]


def clap_architecture(ctx: Context) -> Any:
    from dcase9.models.clap import ClapArchitecture
    from dcase9.models.tiny import TINY_CLAP

    return ClapArchitecture() if ctx.sizes.full_models else ClapArchitecture(**TINY_CLAP)


def random_clap_encoder(ctx: Context, seed: int = 0) -> Any:
    from dcase9.models.clap import ClapEncoder, load_roberta_tokenizer
    from dcase9.models.tiny import random_clap_model

    spec = clap_architecture(ctx).spec()
    return ClapEncoder(random_clap_model(spec, seed=seed), spec.front_end, load_roberta_tokenizer(tokenizer_dir(ctx)))


def resunet_shape(ctx: Context, system: str) -> tuple[int, dict[str, Any]]:
    """The rate and the ResUNet30 options of the baseline (16 kHz) or System 2 (32 kHz); with --smoke
    a two-level net (8-16 channels) on a quarter of the STFT size."""
    rate, n_fft, hop = {"baseline": (16000, 1024, 160), "2": (32000, 2048, 320)}[system]
    if ctx.sizes.full_models:
        return rate, {"n_fft": n_fft, "hop_length": hop}
    return rate, {"n_fft": n_fft // 4, "hop_length": hop // 4, "channels": [8, 16], "pools": [[2, 2], [2, 2]]}


def random_resunet(ctx: Context, system: str, seed: int = 0) -> tuple[Any, int]:
    """ResUNet30 of `resunet_shape` with random weights and batch-norm statistics like a trained net's.
    Returns (net, sample rate)."""
    import torch

    from tests.tiny_models import trained_like_batch_norms
    from dcase9.models.resunet import ResUNet30

    rate, options = resunet_shape(ctx, system)
    shape = {"channels": tuple(options["channels"]), "pools": tuple(map(tuple, options["pools"]))} \
        if "channels" in options else {}
    torch.manual_seed(seed)
    net = trained_like_batch_norms(ResUNet30(n_fft=options["n_fft"], hop_length=options["hop_length"], **shape))
    return net.eval(), rate


def random_checkpoint(ctx: Context, system: str) -> tuple[Path, dict[str, Any]]:
    """`random_resunet` and `random_clap_encoder`'s CLAP in a checkpoint of the official layout, and the
    system options that load it: what `api.load_separator` takes (written once per run)."""
    import torch

    from dcase9.models.clap import transformers_to_laion

    path = ctx.work / f"random-{system}.ckpt"
    options = {**resunet_shape(ctx, system)[1], "clap": clap_architecture(ctx).model_dump(mode="json")}
    if not path.is_file():
        net, _ = random_resunet(ctx, system)
        clap = transformers_to_laion(random_clap_encoder(ctx).model.state_dict())
        state = {**{f"ss_model.{k}": v for k, v in net.state_dict().items()},
                 **{f"query_encoder.model.{k}": v for k, v in clap.items()}}
        torch.save({"state_dict": state}, path)
    return path, options


def audioldm_folders(ctx: Context) -> dict[str, str]:
    """AudioLDM-S-sized VAE and vocoder folders (tiny ones with --smoke), written once per run."""
    folder = ctx.work / "audioldm"
    if ctx.sizes.full_models:
        from benchmarks.training import write_audioldm_sized_parts

        if not (folder / "vocoder").is_dir():
            return write_audioldm_sized_parts(folder)
        return {"audioldm-vae": str(folder / "vae"), "audioldm-vocoder": str(folder / "vocoder")}
    from tests.tiny_audioldm import write_tiny_vae, write_tiny_vocoder

    if not (folder / "vocoder").is_dir():
        write_tiny_vae(folder / "vae")
        write_tiny_vocoder(folder / "vocoder")
    return {"audioldm-vae": str(folder / "vae"), "audioldm-vocoder": str(folder / "vocoder")}


def audioldm_codec(ctx: Context) -> Any:
    from dcase9.models.audioldm import AudioLdmCodec, load_audioldm_vae, load_audioldm_vocoder

    folders = audioldm_folders(ctx)
    return AudioLdmCodec(load_audioldm_vae(folders["audioldm-vae"]),
                         load_audioldm_vocoder(folders["audioldm-vocoder"])).eval()


def mask_net_config(ctx: Context) -> Any:
    from dcase9.models.irm_ldm import MaskNetConfig

    if ctx.sizes.full_models:
        return MaskNetConfig()
    from tests.tiny_audioldm import TINY_MASK_NET

    return MaskNetConfig(**TINY_MASK_NET)


def system3_seconds(ctx: Context) -> float:
    """System 3's segment: AudioLDM's 10.24 s (0.64 s with --smoke, what the tiny codec divides)."""
    return 10.24 if ctx.sizes.full_models else 0.64


# -- sections ------------------------------------------------------------------------------------

def section_device(ctx: Context) -> None:
    import platform

    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                            "python": platform.python_version(), "cpu_count": os.cpu_count(),
                            "platform": platform.platform()}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if ctx.on_gpu:
        props = torch.cuda.get_device_properties(ctx.device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32,
                    cudnn_benchmark=torch.backends.cudnn.benchmark)
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=15)
            info["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            info["driver"] = None
    else:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        info.update(name=f"CPU ({platform.processor() or platform.machine()})", memory_gib=round(memory, 1),
                    threads=torch.get_num_threads())
    info["summary"] = (f"{info['name']}, {info['memory_gib']} GiB, torch {info['torch']}, "
                       f"CUDA {info['cuda'] or '-'}, cuDNN {info['cudnn'] or '-'}")
    ctx.section.set(**info)


def compare(reference: Any, output: Any) -> dict[str, Any]:
    """Max abs difference and SNR (dB) of `output` against `reference` (inf SNR is stored as null)."""
    import math

    reference, output = reference.double().cpu(), output.double().cpu()
    difference = float((reference - output).abs().max())
    error = float(((reference - output) ** 2).sum())
    signal = float((reference ** 2).sum())
    snr = 10 * math.log10(signal / error) if error > 0 else None
    return {"max_abs_diff": difference, "snr_db": None if snr is None else round(snr, 2), "identical": error == 0,
            "reference_rms": math.sqrt(signal / max(1, reference.numel()))}


def section_parity(ctx: Context) -> None:
    import torch

    from dcase9.audio import SAMPLE_RATE

    seconds = ctx.sizes.clip_seconds
    generator = torch.Generator().manual_seed(0)
    condition = torch.nn.functional.normalize(torch.randn(1, 512, generator=generator), dim=-1)
    captions = ["a dog barks twice", "rain falls steadily on a roof", "a siren wails in the distance"]

    def resunet_case(system: str) -> tuple[Callable[[], Any], Callable[[Any, Any], Any]]:
        def build() -> Any:
            return random_resunet(ctx, system)

        def run(built: Any, device: Any) -> Any:
            net, rate = built
            return net.to(device)(demo_audio(seconds, rate)[None].to(device), condition.to(device))
        return build, run

    clap: dict[str, Any] = {}

    def clap_build() -> Any:
        if "encoder" not in clap:
            clap["encoder"] = random_clap_encoder(ctx)
        return clap["encoder"]

    def query_tower_build() -> Any:
        """The text tower text queries run (plain PyTorch, `towers="text"`), with the same weights."""
        from dcase9.models.clap import ClapEncoder, load_roberta_bpe, transformers_to_laion

        laion = transformers_to_laion({k: v.cpu() for k, v in clap_build().model.state_dict().items()})
        return ClapEncoder.from_laion_weights(laion, tokenizer=load_roberta_bpe(tokenizer_dir(ctx)),
                                              spec=clap_architecture(ctx), towers="text")

    def text_run(encoder: Any, device: Any) -> Any:
        return encoder.to(device).encode_text(captions)

    def audio_run(encoder: Any, device: Any) -> Any:
        rate = encoder.sample_rate
        return encoder.to(device).encode_audio(demo_audio(encoder.front_end.clip_samples / rate, rate).to(device))

    def codec_run(codec: Any, device: Any) -> Any:
        return codec.to(device).roundtrip(demo_audio(system3_seconds(ctx), SAMPLE_RATE).to(device), restore_gain=True)

    cases = [("baseline ResUNet30 (16 kHz)", *resunet_case("baseline")),
             ("System 2 ResUNet30 (32 kHz)", *resunet_case("2")),
             ("CLAP text tower (queries: plain PyTorch)", query_tower_build, text_run),
             ("CLAP text tower (ATS: transformers)", clap_build, text_run),
             ("CLAP audio tower", clap_build, audio_run),
             ("AudioLDM VAE + vocoder round trip", lambda: audioldm_codec(ctx), codec_run)]
    cpu = torch.device("cpu")
    ctx.section.set(reference="cpu", target=str(ctx.device) if ctx.on_gpu else "cpu (smoke: no CUDA, CPU against CPU)")

    for name, build, run in cases:
        def measure(build: Callable[[], Any] = build, run: Callable[[Any, Any], Any] = run) -> dict[str, Any]:
            built = build()
            with torch.inference_mode():
                reference = run(built, cpu).float().cpu()
                row: dict[str, Any] = {"shape": list(reference.shape)}
                settings = [("default", None)]
                if ctx.on_gpu:
                    settings.append(("strict_fp32", False))
                for label, tf32 in settings:
                    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
                    if tf32 is not None:
                        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
                    try:
                        output = run(built, ctx.device).float()
                        synchronize(ctx.device)
                    finally:
                        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
                    row[label] = compare(reference, output)
            return row
        ctx.section.guarded("rows", {"model": name}, measure)
        if ctx.on_gpu:
            torch.cuda.empty_cache()
    rows = [r for r in ctx.section.data.get("rows", []) if "default" in r]
    worst = min(rows, key=lambda r: r["default"]["snr_db"] if r["default"]["snr_db"] is not None else 1e9,
                default=None)
    failed = [r["model"] for r in ctx.section.data.get("rows", []) if "error" in r]
    summary = (f"{len(rows)} models compared" + (f", worst SNR {worst['default']['snr_db']} dB ({worst['model']})"
                                                 if worst and worst["default"]["snr_db"] is not None else ", identical")
               + (f"; failed: {', '.join(failed)}" if failed else ""))
    ctx.section.set(summary=summary)


def time_net(ctx: Context, step: Callable[[], Any], batch: int, seconds_per_clip: float) -> dict[str, Any]:
    """Clips/s, real-time factor and peak memory of `step()` (one batch), warmed up, synchronised."""
    sizes = ctx.sizes
    reset_peak(ctx.device)
    for _ in range(sizes.warm_up):
        step()
    synchronize(ctx.device)
    iterations, started = 0, time.perf_counter()
    while iterations < sizes.min_iterations or time.perf_counter() - started < sizes.min_seconds:
        step()
        iterations += 1
        if ctx.on_gpu and iterations % 4 == 0:
            synchronize(ctx.device)
    synchronize(ctx.device)
    elapsed = time.perf_counter() - started
    peak, kind = peak_memory_gib(ctx.device)
    clips = batch * iterations
    return {"clips_per_s": round(clips / elapsed, 3), "rtf": round(elapsed / (clips * seconds_per_clip), 6),
            "iterations": iterations, "peak_memory_gib": round(peak, 3), "memory_kind": kind}


def separator_step(ctx: Context, separator: Any, batch: int, precision: str, seconds: float) -> Callable[[], Any]:
    """One batch through what the engine runs on the device: resample, separate, resample back."""
    import torch

    from dcase9.audio import SAMPLE_RATE, resample
    from dcase9.engine import autocast_context

    mixture = demo_audio(seconds, SAMPLE_RATE).repeat(batch, 1).to(ctx.device)
    generator = torch.Generator().manual_seed(batch)
    conditions = torch.nn.functional.normalize(torch.randn(batch, 512, generator=generator), dim=-1).to(ctx.device)
    rate = separator.sample_rate

    def step() -> Any:
        with torch.inference_mode(), autocast_context(ctx.device, precision):
            estimate = separator.separate(resample(mixture, SAMPLE_RATE, rate), conditions)
            return resample(estimate.float(), rate, SAMPLE_RATE)
    return step


def text_queried_separator(ctx: Context, system: str, with_clap: bool) -> Any:
    from dcase9.systems.text_queried import TextQueriedResUNet

    net, rate = random_resunet(ctx, system)
    clap = random_clap_encoder(ctx).to(ctx.device) if with_clap else None
    return TextQueriedResUNet(rate, net.to(ctx.device), clap)  # type: ignore[arg-type]


def system3_separator(ctx: Context) -> Any:
    import torch

    from dcase9.systems.irm_ldm import IrmLdmSeparator
    from dcase9.models.irm_ldm import IrmLdm, MaskNet

    codec = audioldm_codec(ctx)
    torch.manual_seed(0)
    model = IrmLdm(codec, MaskNet(codec.latent_channels, mask_net_config(ctx)), restore_gain=True)
    return IrmLdmSeparator(model.to(ctx.device).eval(), None)


def section_precision(ctx: Context) -> None:
    import torch

    from dcase9 import api
    from dcase9.data.demo import make_scaled_validation
    from dcase9.data.formats import open_dataset
    from dcase9.engine import resolve_workers
    from dcase9.scoring import score_estimates

    sizes = ctx.sizes
    started = time.perf_counter()
    data = make_scaled_validation(ctx.work / "validation", sizes.mixtures, sizes.distinct_clips)
    dataset = open_dataset(data)
    checkpoint, options = random_checkpoint(ctx, "baseline")
    workers = resolve_workers(None, ctx.device)  # what `dcase9 infer` and `score` use by default: measured as users run it
    ctx.section.set(mixtures=len(dataset.mixtures), batch=sizes.goal_batch, workers=workers,
                    data_seconds=round(time.perf_counter() - started, 1))
    reference: dict[str, float] = {}

    for precision in sizes.precisions:
        def measure(precision: str = precision) -> dict[str, Any]:
            out = ctx.work / f"estimates-{precision}"
            separator = api.load_separator("baseline", checkpoint=checkpoint, system_options=options, device=str(ctx.device),
                                           weights={"roberta-base-tokenizer": tokenizer_dir(ctx)},
                                           precision=precision, batch_size=sizes.goal_batch, offline=True,
                                           progress=False)
            reset_peak(ctx.device)
            clock = time.perf_counter()
            run = separator.infer(dataset, out, overwrite=True, workers=workers)
            infer_s = time.perf_counter() - clock
            peak, _ = peak_memory_gib(ctx.device)
            clock = time.perf_counter()
            report = score_estimates(dataset, out, None, device=str(ctx.device), progress=False, workers=workers)
            score_s = time.perf_counter() - clock
            shutil.rmtree(out, ignore_errors=True)
            means = {m: report.summary["mean"][m] for m in ("sdr", "sdri", "sisdr")}
            row = {"written": run.written, "infer_s": round(infer_s, 2), "score_s": round(score_s, 2),
                   "total_s": round(infer_s + score_s, 2), "clips_per_s": round(run.written / infer_s, 2),
                   "peak_memory_gib": round(peak, 3), "means": means}
            if precision == "fp32":
                reference.update(means)
            elif reference:
                row["delta_vs_fp32"] = {m: means[m] - reference[m] for m in means}
            net = time_net(ctx, separator_step(ctx, separator.model, sizes.goal_batch, precision, sizes.clip_seconds),
                           sizes.goal_batch, sizes.clip_seconds)
            row["net_alone_clips_per_s"] = net["clips_per_s"]
            row["end_to_end_over_net"] = round(row["clips_per_s"] / net["clips_per_s"], 3)
            return row
        ctx.section.guarded("rows", {"precision": precision}, measure)
        if ctx.on_gpu:
            torch.cuda.empty_cache()

    rows = {r["precision"]: r for r in ctx.section.data.get("rows", []) if "means" in r}
    goal: dict[str, Any] = {"mixtures": len(dataset.mixtures)}
    if "bf16" in rows:
        goal["bf16_total_s"] = rows["bf16"]["total_s"]
        goal["under_30_s"] = rows["bf16"]["total_s"] < 30.0
        if "delta_vs_fp32" in rows["bf16"]:
            goal["bf16_sdri_delta_db"] = rows["bf16"]["delta_vs_fp32"]["sdri"]
            goal["sdri_within_0.01_db"] = abs(goal["bf16_sdri_delta_db"]) <= 0.01
    parts = [f"{p}: {r['total_s']} s ({r['clips_per_s']} clips/s end to end, {r['net_alone_clips_per_s']} net alone)"
             for p, r in rows.items()]
    ctx.section.set(goal=goal, summary=f"{len(dataset.mixtures)} mixtures; " + "; ".join(parts))


def section_inference(ctx: Context) -> None:
    sizes = ctx.sizes
    for system in ("baseline", "2"):
        separator = text_queried_separator(ctx, system, with_clap=False)
        for precision in sizes.inference_precisions:
            for batch in sizes.batches:
                ctx.section.guarded("rows", {"system": system, "batch": batch, "precision": precision},
                                    lambda b=batch, p=precision, s=separator: time_net(
                                        ctx, separator_step(ctx, s, b, p, sizes.clip_seconds), b,
                                        sizes.clip_seconds),
                                    needs=5.0 if ctx.on_gpu else 0.0)
    seconds = system3_seconds(ctx)

    def system3_rows() -> None:
        separator = system3_separator(ctx)
        for precision in sizes.inference_precisions:
            for batch in sizes.system3_batches:
                ctx.section.guarded("rows", {"system": "3", "batch": batch, "precision": precision},
                                    lambda b=batch, p=precision: time_net(
                                        ctx, separator_step(ctx, separator, b, p, seconds), b, seconds),
                                    needs=8.0 if ctx.on_gpu else 0.0)

    try:
        system3_rows()
    except Exception as exc:  # building System 3 failed: recorded, the section still reports the others
        ctx.section.add("rows", {"system": "3", "error": f"{type(exc).__name__}: {exc}"[:300]})
    done = [r for r in ctx.section.data.get("rows", []) if "clips_per_s" in r]
    best = max(done, key=lambda r: r["clips_per_s"], default=None)
    ctx.section.set(summary=f"{len(done)} rows" + (f", fastest {best['clips_per_s']} clips/s (system {best['system']}, "
                                                   f"batch {best['batch']}, {best['precision']})" if best else ""))


def section_training(ctx: Context) -> None:
    import torch

    from benchmarks.training import measure

    sizes = ctx.sizes
    device = "cuda" if ctx.on_gpu else "cpu"
    for k, (preset, batch, precision, segment) in enumerate(sizes.training):
        def run(preset: str = preset, batch: int = batch, precision: str = precision, segment: float = segment,
                k: int = k) -> dict[str, Any]:
            overrides: dict[str, Any] | None = None
            weights = None
            if preset == "demo":  # its own tiny tokenizer, not the stand-in `measure` passes
                overrides = {"query_encoder": {"tokenizer": "tiny-demo"}}
            if preset == "system3":
                weights = audioldm_folders(ctx)
                if not sizes.full_models:
                    from dcase9.models.tiny import TINY_CLAP

                    overrides = {"model": {"mask_net": mask_net_config(ctx).model_dump(mode="json"),
                                           "segment_frames": 64},
                                 "query_encoder": {"architecture": dict(TINY_CLAP), "tokenizer": "tiny"}}
            reset_peak(ctx.device)
            measured, _ = measure(preset, batch_size=batch, steps=sizes.train_steps, segment_seconds=segment,
                                  device=device, precision=precision, workers=2 if ctx.on_gpu else 0,
                                  work=ctx.work / f"train-{k}", overrides=overrides, weights=weights)
            return {"steps_per_s": measured.get("steps_per_second"), "clips_per_s": measured.get("clips_per_second"),
                    "measured_steps": measured.get("measured_steps"),
                    "peak_memory_gib": measured.get("peak_memory_gib"), "memory_kind": measured.get("memory_kind")}
        ctx.section.guarded("rows", {"preset": preset, "batch": batch, "precision": precision,
                                     "segment_seconds": segment}, run, needs=25.0 if ctx.on_gpu else 0.0)
        if ctx.on_gpu:
            torch.cuda.empty_cache()
    done = [r for r in ctx.section.data.get("rows", []) if r.get("steps_per_s")]
    ctx.section.set(summary=f"{len(done)} of {len(sizes.training)} rows measured: " + "; ".join(
        f"{r['preset']} b{r['batch']} {r['precision']} {r['steps_per_s']:.2f} steps/s" for r in done))


def section_compile(ctx: Context) -> None:
    import torch

    sizes = ctx.sizes
    batch, precision, seconds = sizes.goal_batch, sizes.compile_precision, sizes.clip_seconds
    separator = text_queried_separator(ctx, "baseline", with_clap=False)
    step = separator_step(ctx, separator, batch, precision, seconds)
    label = {"system": "baseline", "batch": batch, "precision": precision}
    eager: dict[str, Any] = {}

    def measure_eager() -> dict[str, Any]:
        eager["output"] = step().float().cpu()
        return time_net(ctx, step, batch, seconds)

    def measure_compiled() -> dict[str, Any]:
        started = time.perf_counter()
        separator.compile_network()
        output = step()  # the first call compiles
        synchronize(ctx.device)
        compile_s = time.perf_counter() - started
        row = {"compile_s": round(compile_s, 3), **time_net(ctx, step, batch, seconds)}
        if "output" in eager:
            row["against_eager"] = compare(eager["output"], output.float().cpu())
        return row

    ctx.section.guarded("rows", {**label, "mode": "eager"}, measure_eager)
    ctx.section.guarded("rows", {**label, "mode": "compiled"}, measure_compiled, needs=20.0 if ctx.on_gpu else 0.0)
    if ctx.on_gpu:
        torch.cuda.empty_cache()
    rows = {r["mode"]: r for r in ctx.section.data.get("rows", []) if "clips_per_s" in r}
    if {"eager", "compiled"} <= set(rows):
        speedup = rows["compiled"]["clips_per_s"] / rows["eager"]["clips_per_s"]
        ctx.section.set(speedup=round(speedup, 3), summary=(
            f"compiled {rows['compiled']['clips_per_s']} clips/s against eager {rows['eager']['clips_per_s']} "
            f"({speedup:.2f}x) after {rows['compiled']['compile_s']} s of compilation"))
    else:
        ctx.section.set(summary="not compared: " + "; ".join(
            f"{r['mode']}: {r.get('error') or r.get('skipped')}" for r in ctx.section.data.get("rows", [])
            if "clips_per_s" not in r))


SECTION_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "device": section_device, "parity": section_parity, "precision": section_precision,
    "inference": section_inference, "training": section_training, "compile": section_compile}


def run_child(args: argparse.Namespace) -> int:
    import torch

    torch.manual_seed(0)
    from dcase9.devices import resolve_device

    section = Section(Path(args.state), args.budget)
    ctx = Context(resolve_device(args.device), args.smoke, SMOKE if args.smoke else Sizes(), Path(args.work), section)
    if ctx.device.type == "cpu":
        torch.set_num_threads(max(1, min(torch.get_num_threads(), args.threads)))
    section.save()
    try:
        SECTION_FUNCTIONS[args.section](ctx)
    except Exception as exc:
        section.set(status="failed", error=f"{type(exc).__name__}: {exc}"[:500], traceback=traceback.format_exc()[-3000:])
        return 1
    section.set(status="partial" if any("error" in r or "skipped" in r for r in section.data.get("rows", []))
                else "ok")
    return 0


# =============================================================================================
# The parent side: sections as processes, the deadline, the JSON, BENCHMARKS.md
# =============================================================================================

def run_tests_section(python: str, budget: float, smoke: bool) -> dict[str, Any]:
    started = time.monotonic()
    command = [python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:] if isinstance(exc.stdout, bytes) else (exc.stdout or "")[-2000:]
        return {"status": "timed out", "seconds": round(time.monotonic() - started, 1), "output_tail": str(tail),
                "summary": f"pytest -m gpu did not finish in {budget:.0f} s"}
    lines = [line for line in result.stdout.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", last)}
    status = "ok" if result.returncode in (0, 5) else "failed"  # 5: nothing selected
    return {"status": status, "returncode": result.returncode, "counts": counts, "seconds": round(time.monotonic() - started, 1),
            "command": " ".join(command[2:]), "output_tail": "\n".join(lines[-15:])[-3000:],
            "summary": last.strip("= ") or f"pytest exited {result.returncode}"}


def run_section_process(name: str, args: argparse.Namespace, budget: float, work: Path) -> dict[str, Any]:
    state = work / f"{name}.state.json"
    command = [args.python, str(Path(__file__).resolve()), "--section", name, "--state", str(state),
               "--budget", str(budget), "--device", args.device, "--work", str(work), "--threads", str(args.threads)]
    if args.smoke:
        command.append("--smoke")
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=budget + 15, env=env)
        timed_out, returncode, stderr = False, result.returncode, result.stderr
    except subprocess.TimeoutExpired as exc:
        timed_out, returncode = True, None
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data["seconds"] = round(time.monotonic() - started, 1)
    if timed_out:
        data["status"] = "timed out"
        data["error"] = f"stopped after its budget of {budget:.0f} s; the rows above were finished"
    elif returncode != 0 and data.get("status") in (None, "running"):
        data["status"] = "failed"
        data["error"] = (stderr.strip().splitlines() or [f"exit code {returncode}"])[-1][:500]
    if data.get("status") != "ok" and stderr.strip():
        data["stderr_tail"] = stderr.strip()[-2000:]
    return data


def one_line(name: str, data: dict[str, Any]) -> str:
    text = data.get("summary") or data.get("error") or ""
    return f"[{name}] {data.get('status', '?')} in {data.get('seconds', 0):.0f} s" + (f": {text}" if text else "")


def number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md block of one device: what the check measured, as tables."""
    device = result.get("device", {})
    lines = [f"### {device.get('name', result.get('slug', '?'))}" + (" (smoke run on the CPU: not a measurement)"
                                                                      if result.get("smoke") else ""), "",
             f"`benchmarks/gpu_check.sh`, {result.get('finished', result.get('started', ''))[:10]}, "
             f"commit {result.get('commit', '?')[:10]}: {device.get('summary', 'device unknown')}; "
             f"{result.get('seconds', 0):.0f} s in all. Raw figures: `benchmarks/results/{result.get('slug', '?')}.json`.",
             ""]
    statuses = ", ".join(f"{name} {result.get(name, {}).get('status', 'not run')}" for name in SECTIONS)
    lines += [f"Sections: {statuses}. Tests: {result.get('tests', {}).get('summary', '-')}.", ""]
    precision = result.get("precision", {})
    if precision.get("rows"):
        goal = precision.get("goal", {})
        lines += [f"Whole validation-set job ({precision.get('mixtures')} mixtures, batch {precision.get('batch')}, "
                  "infer then score; random weights, so only the deltas between precisions mean something):", "",
                  "| precision | infer s | score s | total s | clips/s end to end | clips/s net alone | "
                  "SDR | SDRi | SI-SDR | SDRi - fp32 | peak GiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in precision["rows"]:
            if "means" not in row:
                lines.append(f"| {row['precision']} | {row.get('error') or row.get('skipped')} |||||||||")
                continue
            delta = row.get("delta_vs_fp32", {}).get("sdri")
            lines.append(f"| {row['precision']} | {number(row['infer_s'])} | {number(row['score_s'])} | "
                         f"{number(row['total_s'])} | {number(row['clips_per_s'], 1)} | "
                         f"{number(row.get('net_alone_clips_per_s'), 1)} | {number(row['means']['sdr'], 3)} | "
                         f"{number(row['means']['sdri'], 3)} | {number(row['means']['sisdr'], 3)} | "
                         f"{'-' if delta is None else f'{delta:+.4f}'} | {number(row.get('peak_memory_gib'))} |")
        if "under_30_s" in goal and goal["mixtures"] < 3000:
            lines += ["", f"Goal (3000 mixtures in under 30 s at bf16) not assessed: {goal['mixtures']} mixtures."]
        elif "under_30_s" in goal:
            lines += ["", f"Goal (3000 mixtures in under 30 s at bf16, SDRi within 0.01 dB of fp32): "
                      f"{goal['bf16_total_s']} s ({'met' if goal['under_30_s'] else 'not met'})"
                      + (f", SDRi {goal['bf16_sdri_delta_db']:+.4f} dB "
                         f"({'met' if goal['sdri_within_0.01_db'] else 'not met'})" if "bf16_sdri_delta_db" in goal
                         else "") + "."]
        lines.append("")
    inference = result.get("inference", {})
    if inference.get("rows"):
        lines += ["Net alone (resampling included, data already on the device):", "",
                  "| system | batch | precision | clips/s | real-time factor | peak GiB |", "|---|---|---|---|---|---|"]
        for row in inference["rows"]:
            if "clips_per_s" in row:
                lines.append(f"| {row['system']} | {row['batch']} | {row['precision']} | {number(row['clips_per_s'], 1)} | "
                             f"{number(row['rtf'], 5)} | {number(row['peak_memory_gib'])} |")
            else:
                lines.append(f"| {row.get('system')} | {row.get('batch', '-')} | {row.get('precision', '-')} | "
                             f"{row.get('error') or row.get('skipped')} | | |")
        lines.append("")
    training = result.get("training", {})
    if training.get("rows"):
        lines += ["Training (`dcase9 train`, data loading included, first steps not timed):", "",
                  "| preset | batch x segment | precision | steps/s | clips/s | peak GiB |", "|---|---|---|---|---|---|"]
        for row in training["rows"]:
            size = f"{row['batch']} x {row['segment_seconds']:g} s"
            if row.get("steps_per_s"):
                lines.append(f"| {row['preset']} | {size} | {row['precision']} | {number(row['steps_per_s'], 3)} | "
                             f"{number(row['clips_per_s'], 2)} | {number(row.get('peak_memory_gib'))} |")
            else:
                lines.append(f"| {row['preset']} | {size} | {row['precision']} | "
                             f"{row.get('error') or row.get('skipped') or 'no step measured'} | | |")
        lines.append("")
    compiled = result.get("compile", {})
    if compiled.get("rows"):
        lines += ["`--compile` against eager (the baseline's net, resampling included):", "",
                  "| mode | batch | precision | clips/s | compilation s | max abs diff to eager | SNR to eager |",
                  "|---|---|---|---|---|---|---|"]
        for row in compiled["rows"]:
            if "clips_per_s" not in row:
                lines.append(f"| {row['mode']} | {row['batch']} | {row['precision']} | "
                             f"{row.get('error') or row.get('skipped')} | | | |")
                continue
            against = row.get("against_eager", {})
            lines.append(f"| {row['mode']} | {row['batch']} | {row['precision']} | {number(row['clips_per_s'], 1)} | "
                         f"{number(row.get('compile_s'), 1)} | "
                         f"{'-' if not against else format(against['max_abs_diff'], '.2e')} | "
                         f"{'-' if not against else ('identical' if against['identical'] else number(against['snr_db'], 1))} |")
        if "speedup" in compiled:
            lines += ["", f"Compiled over eager: {compiled['speedup']:.2f}x "
                      f"({'keep `--compile`' if compiled['speedup'] > 1.05 else 'no gain: remove `--compile`'})."]
        lines.append("")
    parity = result.get("parity", {})
    if parity.get("rows"):
        lines += [f"Parity, {parity.get('target')} against CPU (SNR in dB; strict = TF32 off):", "",
                  "| model | max abs diff | SNR | strict max abs diff | strict SNR |", "|---|---|---|---|---|"]
        for row in parity["rows"]:
            default, strict = row.get("default", {}), row.get("strict_fp32", {})
            if not default:
                lines.append(f"| {row['model']} | {row.get('error', '-')} | | | |")
                continue
            cells = [row["model"]]
            for measured in (default, strict):
                if measured:
                    cells += [f"{measured['max_abs_diff']:.2e}",
                              "identical" if measured["identical"] else number(measured["snr_db"], 1)]
                else:
                    cells += ["-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def update_benchmarks_md(path: Path, result: dict[str, Any]) -> None:
    """Replace (or add) this device's block between its markers under '## GPU check results'."""
    from dcase9.files import write_text_atomic

    begin, end = f"<!-- gpu-check:{result['slug']}:begin -->", f"<!-- gpu-check:{result['slug']}:end -->"
    block = f"{begin}\n{markdown(result)}{end}\n"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + "\n" + rest.split(end, 1)[1].lstrip("\n")
    else:
        heading = "## GPU check results"
        if heading not in text:
            text = text.rstrip("\n") + f"\n\n{heading}\n\n"
        head, tail = text.split(heading, 1)
        tail = tail.replace(NO_RESULTS_YET, "", 1)
        # New blocks go right under the heading; the rest of that section (earlier devices) follows.
        text = f"{head}{heading}\n\n{block}\n{tail.lstrip(chr(10))}"
    write_text_atomic(path, text.rstrip("\n") + "\n")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def run_parent(args: argparse.Namespace) -> int:
    started = time.monotonic()
    deadline = started + args.deadline
    budgets = dict(SMOKE_BUDGETS if args.smoke else BUDGETS)
    chosen = [s for s in SECTIONS if not args.only or s in args.only]
    result: dict[str, Any] = {"schema": SCHEMA, "smoke": args.smoke, "started": now_iso(), "commit": git_commit(),
                              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                              "deadline_s": args.deadline, "sizes": asdict(SMOKE if args.smoke else Sizes())}
    work = Path(tempfile.mkdtemp(prefix="dcase9-gpu-check-"))
    out: Path | None = Path(args.out) if args.out and Path(args.out).suffix == ".json" else None
    out_dir = Path(args.out) if args.out and out is None else None
    if out_dir is None and out is None and args.smoke:
        out_dir = Path(tempfile.gettempdir()) / "dcase9-gpu-check"
    benchmarks_md = Path(args.benchmarks_md) if args.benchmarks_md else None

    def save() -> Path | None:
        if "slug" not in result:
            return None
        target = out or (out_dir or ROOT / "benchmarks" / "results") / f"{result['slug']}.json"
        result["seconds"] = round(time.monotonic() - started, 1)
        write_json(target, result)
        if args.mirror:
            write_json(Path(args.mirror) / target.name, result)
        return target

    print(f"GPU check ({'smoke, CPU' if args.smoke else args.device}), deadline {args.deadline:.0f} s, "
          f"sections: {', '.join(chosen)}", flush=True)
    try:
        for name in chosen:
            left = deadline - time.monotonic()
            if left < MIN_START_S:
                result[name] = {"status": "skipped", "summary": f"global deadline: {left:.0f} s left"}
            else:
                budget = min(budgets[name], left - 5)
                print(f"[{name}] running (budget {budget:.0f} s) ...", flush=True)
                if name == "tests":
                    result[name] = run_tests_section(args.python, budget, args.smoke)
                else:
                    result[name] = run_section_process(name, args, budget, work)
            if name == "device" or (name == chosen[-1] and "slug" not in result):
                device = result.get("device", {})
                base = slug(device.get("name") or args.device)
                result["slug"] = f"{base}-smoke" if args.smoke else base
            print(one_line(name, result[name]), flush=True)
            save()
        result["finished"] = now_iso()
        if "slug" not in result:
            result["slug"] = slug(args.device) + ("-smoke" if args.smoke else "")
        path = save()
        if benchmarks_md is None and not args.no_benchmarks_md:
            if args.smoke:  # never the real file: a copy next to the JSON
                benchmarks_md = (path or Path(tempfile.gettempdir())).parent / "BENCHMARKS.md"
                if not benchmarks_md.is_file():
                    shutil.copyfile(ROOT / "BENCHMARKS.md", benchmarks_md)
            else:
                benchmarks_md = ROOT / "BENCHMARKS.md"
        if benchmarks_md is not None and not args.no_benchmarks_md:
            update_benchmarks_md(benchmarks_md, result)
            if args.mirror:
                shutil.copyfile(benchmarks_md, Path(args.mirror) / "BENCHMARKS.md")
        print(f"results: {path}" + (f"; tables: {benchmarks_md}" if benchmarks_md and not args.no_benchmarks_md
                                    else "") + f"; {time.monotonic() - started:.0f} s in all", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [n for n in chosen if result.get(n, {}).get("status") not in ("ok",)]
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (the same code paths)")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    parser.add_argument("--out", help="the result JSON (a .json path) or a folder for <device>.json "
                                      "(default: benchmarks/results; with --smoke, a temporary folder)")
    parser.add_argument("--mirror", help="also keep copies of the JSON and BENCHMARKS.md here after every section")
    parser.add_argument("--benchmarks-md", help="the BENCHMARKS.md to update (default: the repository's; with "
                                                "--smoke, a copy next to the JSON)")
    parser.add_argument("--no-benchmarks-md", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--deadline", type=float, default=None, help="seconds for the whole check (default: 480, "
                                                                     "1500 with --smoke)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--render", metavar="JSON", help="measure nothing: write the tables of this result JSON "
                                                        "into BENCHMARKS.md (--benchmarks-md; default the repository's)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the CPU-side work")
    parser.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    parser.add_argument("--section", choices=sorted(SECTION_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    if args.deadline is None:
        args.deadline = 1500.0 if args.smoke else 480.0
    if args.section:
        sys.exit(run_child(args))
    if args.render:
        target = Path(args.benchmarks_md) if args.benchmarks_md else ROOT / "BENCHMARKS.md"
        update_benchmarks_md(target, json.loads(Path(args.render).read_text(encoding="utf-8")))
        print(f"tables of {args.render} written into {target}")
        return
    sys.exit(run_parent(args))


if __name__ == "__main__":
    main()
