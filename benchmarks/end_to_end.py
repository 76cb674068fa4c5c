"""Whole commands against the official evaluator, start-up included.

`dcase9 infer` + `dcase9 score` on N validation mixtures of 10 s (default 8), each command a fresh
process, against one process that does what the baseline's `dcase_evaluator.py` does. Both read
the same checkpoint in the official Lightning layout (full-size random weights: ResUNet30 under
`ss_model.`, the whole laion CLAP, HTSAT audio tower included, under `query_encoder.model.`) and the
same demo mixtures. The tokenizer is roberta-base from the Hugging Face cache when present, else the
tiny stand-in.

The official evaluator, emulated by `--mode loop`:
- imports `lightning.pytorch` (as `dcase_evaluator.py` does; skipped when not installed);
- `CLAP_Encoder()`: builds the whole CLAP with random initialisation, then reads the standalone laion
  file whole (here a stand-in with the layout and size of music_speech_audioset_epoch_15_esc_89.98.pt:
  the weights under `module.` plus an Adam state of two tensors per weight, about 2.3 GB) and loads it;
- `load_ss_model`: builds ResUNet30 (random initialisation), reads the Lightning checkpoint whole
  and loads the separation net and, again, the query encoder from it;
- per row: reads both clips again, mixes, embeds the caption padded to 512 tokens as a batch of two
  copies, separates with batch 1 in PyTorch's default NCHW layout (the reference net's), and
  computes SDR, SDRi and SI-SDR (`benchmarks.inference.official_row`).
Where the emulation is kinder to the loop than the real evaluator: clips are read with soundfile
(librosa's import and `librosa.load` cost more), the net is ours (`torch.stft` rather than
torchlibrosa's convolutional STFT), and the laion code is not imported. With `--loop-channels-last`
the loop also gets our channels-last net, the fastest loop we can build.

The commands: `dcase9 infer --offline --overwrite` (its start-up is the process's wall time minus
the separation time its manifest records) and `dcase9 score`. The modes alternate over `--repeats`
runs and the fastest run of each is kept (load from other work only adds time).

    python benchmarks/end_to_end.py --clips 8 --repeats 3
    python benchmarks/end_to_end.py --work /tmp/e2e --repeats 1   # keep (and reuse) the written files
    python benchmarks/end_to_end.py --source /tmp/old-checkout       # the commands of another version
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHECKPOINT = "baseline.ckpt"
STANDALONE_CLAP = "music_speech_audioset_stand_in.pt"


def full_size_laion_clap(seed: int = 0) -> dict[str, Any]:
    """The whole laion CLAP of the baseline (HTSAT-base + roberta-base), random weights, laion names."""
    import torch

    from dcase9.models.clap import ClapArchitecture, build_clap_model, transformers_to_laion

    torch.manual_seed(seed)
    return transformers_to_laion(build_clap_model(ClapArchitecture().spec()).state_dict())


def prepare(work: Path, clips: int) -> dict[str, Path]:
    """Demo validation data with `clips` mixtures, the tokenizer, the checkpoint and the standalone
    CLAP stand-in under `work` (files already there are reused)."""
    import torch

    from benchmarks.inference import tokenizer_folder
    from tests.tiny_models import resunet_weights, write_lightning_checkpoint
    from dcase9.data.demo import make_validation
    from dcase9.files import write_text_atomic

    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    csv = data / "lass_synthetic_validation.csv"
    if not csv.is_file() or len(csv.read_text(encoding="utf-8").splitlines()) != clips + 1:
        shutil.rmtree(data, ignore_errors=True)
        make_validation(data, clips_per_class=-(-clips // 24))  # 24 mixtures per clip of each class
        lines = csv.read_text(encoding="utf-8").splitlines(keepends=True)
        write_text_atomic(csv, "".join(lines[: clips + 1]))
    tokenizer, _ = tokenizer_folder(work)
    checkpoint, standalone = work / CHECKPOINT, work / STANDALONE_CLAP
    if not checkpoint.is_file() or not standalone.is_file():
        clap = full_size_laion_clap()
        write_lightning_checkpoint(checkpoint, resunet=resunet_weights(n_fft=1024, hop_length=160), clap=clap)
        adam = {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
                for i, v in enumerate(clap.values()) if v.is_floating_point()}
        torch.save({"epoch": 15, "state_dict": {f"module.{k}": v for k, v in clap.items()},
                    "optimizer": {"state": adam, "param_groups": [{"lr": 1e-4, "params": sorted(adam)}]}}, standalone)
    return {"data": data, "tokenizer": tokenizer, "checkpoint": checkpoint, "standalone": standalone}


def run_loop(work: Path, channels_last: bool) -> dict[str, Any]:
    """The official evaluator's start-up and loop (see the module docstring); seconds and mean scores."""
    started = time.perf_counter()
    import torch

    try:
        import lightning.pytorch  # noqa: F401  the evaluator's first heavy import
    except ImportError:
        pass
    from benchmarks.inference import official_row, reference_separator
    from dcase9.data.formats import open_dataset
    from dcase9.metrics import separation_metrics
    from dcase9.models import resunet as resunet_module

    separator = reference_separator(work, CHECKPOINT, STANDALONE_CLAP, sample_rate=16000, n_fft=1024, hop_length=160)
    if not channels_last:
        resunet_module._CHANNELS_LAST_DEVICES = ()  # the reference net runs in the default NCHW layout
    dataset = open_dataset(work / "data")
    loop_started = time.perf_counter()
    scores: dict[str, list[float]] = {}
    for row in dataset.mixtures:
        item, estimate = official_row(separator, dataset, row, torch.device("cpu"))
        for name, value in separation_metrics(item.reference, estimate, item.mixture).items():
            scores.setdefault(name, []).append(float(value))
    finished = time.perf_counter()
    return {"startup": loop_started - started, "work": finished - loop_started,
            "means": {k: sum(v) / len(v) for k, v in scores.items()}}


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=env["PYTHONPATH"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode not in (0,):
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return seconds


def run_commands(files: dict[str, Path], work: Path, env: dict[str, str]) -> dict[str, float]:
    estimates, report = work / "estimates", work / "report"
    cli = [sys.executable, "-m", "dcase9.cli"]
    infer = timed([*cli, "infer", "--system", "baseline", "--data", str(files["data"]), "--out", str(estimates),
                   "--checkpoint", str(files["checkpoint"]), "--weight", f"roberta-base-tokenizer={files['tokenizer']}",
                   "--offline", "--overwrite"], env)
    separation = json.loads((estimates / "dcase9-run.json").read_text(encoding="utf-8"))["seconds"]
    score = timed([*cli, "score", "--data", str(files["data"]), "--estimates", str(estimates), "--out", str(report)],
                  env)
    means = json.loads((report / "summary.json").read_text(encoding="utf-8"))["mean"]
    return {"wall": infer + score, "infer": infer, "startup": infer - separation, "work": separation,
            "score": score, "sdri": means["sdri"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per mode; the best is kept")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every process")
    parser.add_argument("--work", help="folder for the data, checkpoints and outputs (default: a temporary one)")
    parser.add_argument("--loop-channels-last", action="store_true",
                        help="run the loop with our channels-last net instead of the reference's NCHW layout")
    parser.add_argument("--source", default=str(ROOT),
                        help="run the dcase9 commands from this source tree (an older checkout: before/after)")
    parser.add_argument("--mode", choices=["loop"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.mode == "loop":  # a child process
        print(json.dumps(run_loop(Path(args.work), args.loop_channels_last)))
        return

    with tempfile.TemporaryDirectory(prefix="dcase9-e2e-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        files = prepare(work, args.clips)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
        best: dict[str, dict[str, Any]] = {}
        for repeat in range(args.repeats):
            for mode in ("loop", "commands"):
                if mode == "loop":
                    command = [sys.executable, __file__, "--mode", "loop", "--work", str(work)]
                    if args.loop_channels_last:
                        command.append("--loop-channels-last")
                    started = time.perf_counter()
                    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
                    wall = time.perf_counter() - started
                    child = json.loads(output.strip().splitlines()[-1])
                    result = {"wall": wall, "startup": wall - child["work"], "work": child["work"],
                              "score": 0.0, "sdri": child["means"]["sdri"]}
                else:
                    result = run_commands(files, work, {**env, "PYTHONPATH": str(Path(args.source).resolve())})
                print(f"run {repeat + 1} {mode}: {result['wall']:.1f} s (start-up {result['startup']:.1f} s)",
                      flush=True)
                if mode not in best or result["wall"] < best[mode]["wall"]:
                    best[mode] = result
    loop, commands = best["loop"], best["commands"]
    print(f"{args.clips} mixtures of 10 s, {args.threads} threads, best of {args.repeats} alternating runs, "
          f"loop net layout: {'channels-last (ours)' if args.loop_channels_last else 'NCHW (reference)'}")
    print(f"{'':<30}{'start-up':>10}{'separation':>12}{'scoring':>10}{'total':>10}{'SDRi':>9}")
    print(f"{'official loop (emulated)':<30}{loop['startup']:>10.1f}{loop['work']:>12.1f}{'(in loop)':>10}"
          f"{loop['wall']:>10.1f}{loop['sdri']:>9.3f}")
    print(f"{'dcase9 infer + score':<30}{commands['startup']:>10.1f}{commands['work']:>12.1f}{commands['score']:>10.1f}"
          f"{commands['wall']:>10.1f}{commands['sdri']:>9.3f}")
    print(f"dcase9 infer + score is {loop['wall'] / commands['wall']:.2f}x faster than the official loop")


if __name__ == "__main__":
    main()
