"""`dcase9 suite` against AudioSep's own `benchmark.py`, start-up included, on the CPU.

Both run System 2's network (AudioSep's ResUNet30 at 32 kHz, STFT 2048/320, full size, random weights: the
cost of a step depends on shapes, not values) on the same data in AudioSep's layout: the demo's six
benchmarks (`dcase9.data.demo.make_benchmarks`) with each clip tiled to 10 s (ESC-50: 5 s, as its clips),
`--rows` rows per benchmark. The checkpoint is in AudioSep's Lightning layout (`ss_model.` plus the whole
laion CLAP under `query_encoder.model.`), and a standalone laion CLAP file of the real one's layout and size
(about 2.3 GB with its Adam state) stands in for `music_speech_audioset_epoch_15_esc_89.98.pt`.

AudioSep's loop, emulated by `--mode loop` in one process (what `benchmark.py` does):
- imports `lightning.pytorch` (its evaluators do; skipped when not installed);
- `CLAP_Encoder()`: the whole CLAP built with random initialisation, the standalone laion file read whole
  and loaded; `load_ss_model`: ResUNet30 built, the checkpoint read whole, the net and again the query
  encoder loaded;
- per benchmark in benchmark.py's order (Clotho first, then VGGSound, MUSIC, ESC-50, AudioSet, AudioCaps,
  and Clotho again: benchmark.py evaluates it twice), per row: both files read, SDR of the mixture, the query
  embedded as `CLAP_Encoder._get_text_embed` does (a single text doubled into a batch of two, padded to 512
  tokens), the whole clip separated with batch 1 in PyTorch's default NCHW layout (the reference net's),
  SDR and SI-SDR in NumPy float32 (`tests.audiosep_support`), the aggregates at the end.
Where the emulation is kinder to AudioSep's loop than the real thing: files are read with soundfile, not
librosa (not installed here; its import and `librosa.load` cost more), the net is ours (`torch.stft`, not
torchlibrosa's convolutional STFT), the laion code is not imported.

`dcase9 suite EVALUATION -s 2 --checkpoint ... --overwrite` is one fresh process; start-up is its wall time
minus the separation time its six manifests record. The modes alternate over `--repeats` runs; the fastest
run of each is kept. The loop's time without its second Clotho pass is printed too.

    python benchmarks/suite.py --rows 2 --repeats 2
    python benchmarks/suite.py --work /tmp/suite-bench --repeats 1   # keep (and reuse) the written files
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHECKPOINT = "audiosep.ckpt"
STANDALONE_CLAP = "music_speech_audioset_stand_in.pt"
# benchmark.py's order: Clotho, VGGSound, MUSIC, ESC-50, AudioSet, AudioCaps, Clotho again
AUDIOSEP_ORDER = ("clotho", "vggsound", "music", "esc50", "audioset", "audiocaps", "clotho")
SECONDS = {"esc50": 5.0}  # ESC-50's clips are 5 s; the others' 10 s


def prepare(work: Path, rows: int) -> dict[str, Path]:
    """The six benchmarks (`rows` rows each, 10 s clips), the tokenizer, the checkpoint and the standalone
    CLAP stand-in under `work` (files already there are reused)."""
    import numpy as np
    import soundfile as sf
    import torch

    from benchmarks.end_to_end import full_size_laion_clap
    from benchmarks.inference import tokenizer_folder
    from dcase9.data.benchmarks import BENCHMARK_NAMES
    from dcase9.data.demo import make_benchmarks
    from dcase9.data.formats import open_dataset
    from dcase9.files import write_text_atomic
    from tests.tiny_models import resunet_weights, write_lightning_checkpoint

    evaluation = work / "evaluation"
    stamp = work / "rows.txt"
    if not stamp.is_file() or stamp.read_text() != str(rows):
        make_benchmarks(evaluation, force=True)
        for name in BENCHMARK_NAMES:
            dataset = open_dataset(evaluation / "data" / name)
            csv = dataset.csv_path
            lines = csv.read_text(encoding="utf-8").splitlines(keepends=True)
            write_text_atomic(csv, "".join(lines[: rows + 1]))
            for spec in dataset.mixtures[:rows]:
                for path in dataset.files_of(spec):
                    audio, rate = sf.read(path, dtype="float32")
                    length = int(SECONDS.get(name, 10.0) * rate)
                    sf.write(path, np.resize(audio, length), rate, subtype="PCM_16")
        stamp.write_text(str(rows))
    tokenizer, _ = tokenizer_folder(work)
    checkpoint, standalone = work / CHECKPOINT, work / STANDALONE_CLAP
    if not checkpoint.is_file() or not standalone.is_file():
        clap = full_size_laion_clap()
        write_lightning_checkpoint(checkpoint, resunet=resunet_weights(n_fft=2048, hop_length=320), clap=clap)
        adam = {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
                for i, v in enumerate(clap.values()) if v.is_floating_point()}
        torch.save({"epoch": 15, "state_dict": {f"module.{k}": v for k, v in clap.items()},
                    "optimizer": {"state": adam, "param_groups": [{"lr": 1e-4, "params": sorted(adam)}]}}, standalone)
    return {"evaluation": evaluation, "tokenizer": tokenizer, "checkpoint": checkpoint, "standalone": standalone}


def run_loop(work: Path) -> dict[str, Any]:
    """AudioSep's benchmark.py, emulated (see the module docstring): seconds and what it prints."""
    started = time.perf_counter()
    import soundfile as sf
    import torch

    try:
        import lightning.pytorch  # noqa: F401  its evaluators' first heavy import
    except ImportError:
        pass
    from benchmarks.inference import reference_separator
    from dcase9.data.benchmarks import get_benchmark
    from dcase9.data.formats import SetKind, open_dataset
    from dcase9.models import resunet as resunet_module
    from tests.audiosep_support import audiosep_aggregate, audiosep_row

    separator = reference_separator(work, CHECKPOINT, STANDALONE_CLAP, sample_rate=32000, n_fft=2048, hop_length=320)
    encoder = separator.clap
    tokenizer = encoder.tokenizer  # each query padded to 512 tokens below, as benchmark.py does
    resunet_module._CHANNELS_LAST_DEVICES = ()  # the reference net runs in the default NCHW layout
    loop_started = time.perf_counter()
    printed, seconds = [], {}
    for name in AUDIOSEP_ORDER:
        pass_started = time.perf_counter()
        dataset = open_dataset(work / "evaluation" / "data" / name, SetKind(name))
        sdris: dict[str, list[Any]] = {}
        sisdrs: dict[str, list[Any]] = {}
        with torch.inference_mode():
            for row in dataset.mixtures:
                source, _ = sf.read(dataset.audio_path(row.reference), dtype="float32")
                mixture, _ = sf.read(dataset.audio_path(row.file), dtype="float32")
                tokens = tokenizer([row.query] * 2, padding="max_length", truncation=True, max_length=512,
                                   return_tensors="pt")
                condition = encoder.embed_tokens(tokens["input_ids"], tokens["attention_mask"])[:1]
                estimate = separator.separate(torch.from_numpy(mixture)[None], condition)[0].numpy()
                sdri, sisdr = audiosep_row(source, mixture, estimate)
                sdris.setdefault(row.group or "", []).append(sdri)
                sisdrs.setdefault(row.group or "", []).append(sisdr)
        sdri_value, sisdr_value = audiosep_aggregate(dataset, sdris, sisdrs)
        printed.append(f"{get_benchmark(name).title} Avg SDRi: {sdri_value:.3f}, SISDR: {sisdr_value:.3f}")
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - pass_started
    finished = time.perf_counter()
    return {"startup": loop_started - started, "work": finished - loop_started, "printed": printed,
            "second_clotho": seconds["clotho"] / 2}


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=env["PYTHONPATH"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:5])} ... failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return seconds


def run_suite_command(files: dict[str, Path], work: Path, env: dict[str, str]) -> dict[str, Any]:
    out = work / "suite"
    wall = timed([sys.executable, "-m", "dcase9.cli", "suite", str(files["evaluation"]), "--system", "2", "--out",
                  str(out), "--checkpoint", str(files["checkpoint"]), "--weight",
                  f"roberta-base-tokenizer={files['tokenizer']}", "--offline", "--overwrite"], env)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    separation = sum(json.loads((out / name / "estimates" / "dcase9-run.json").read_text(encoding="utf-8"))["seconds"]
                     for name in summary["benchmarks"])
    return {"wall": wall, "startup_and_scoring": wall - separation, "work": separation,
            "printed": [entry["printed"] for entry in summary["benchmarks"].values()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2, help="rows per benchmark")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per mode; the best is kept")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every process")
    parser.add_argument("--work", help="folder for the data, checkpoints and outputs (default: a temporary one)")
    parser.add_argument("--mode", choices=["loop"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.mode == "loop":  # a child process
        print(json.dumps(run_loop(Path(args.work))))
        return

    with tempfile.TemporaryDirectory(prefix="dcase9-suite-bench-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = prepare(work, args.rows)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
        best: dict[str, dict[str, Any]] = {}
        for repeat in range(args.repeats):
            for mode in ("loop", "suite"):
                if mode == "loop":
                    started = time.perf_counter()
                    output = subprocess.run([sys.executable, __file__, "--mode", "loop", "--work", str(work)], env=env,
                                            check=True, capture_output=True, text=True).stdout
                    wall = time.perf_counter() - started
                    child = json.loads(output.strip().splitlines()[-1])
                    result = {"wall": wall, "startup": wall - child["work"], "work": child["work"],
                              "printed": child["printed"], "second_clotho": child["second_clotho"]}
                else:
                    result = run_suite_command(files, work, env)
                print(f"run {repeat + 1} {mode}: {result['wall']:.1f} s", flush=True)
                if mode not in best or result["wall"] < best[mode]["wall"]:
                    best[mode] = result
    loop, suite = best["loop"], best["suite"]
    print(f"{args.rows} rows per benchmark (10 s clips, ESC-50 5 s), {args.threads} threads, best of {args.repeats} "
          "alternating runs")
    print(f"{'':<44}{'start-up':>10}{'separation':>12}{'total':>10}")
    print(f"{'AudioSep benchmark.py (emulated)':<44}{loop['startup']:>10.1f}{loop['work']:>12.1f}{loop['wall']:>10.1f}")
    print(f"{'  without its second Clotho pass':<44}{loop['startup']:>10.1f}"
          f"{loop['work'] - loop['second_clotho']:>12.1f}{loop['wall'] - loop['second_clotho']:>10.1f}")
    print(f"{'dcase9 suite (start-up and scoring | sep.)':<44}{suite['startup_and_scoring']:>10.1f}{suite['work']:>12.1f}"
          f"{suite['wall']:>10.1f}")
    print(f"dcase9 suite is {loop['wall'] / suite['wall']:.2f}x faster than benchmark.py "
          f"({(loop['wall'] - loop['second_clotho']) / suite['wall']:.2f}x without its second Clotho pass)")
    print("benchmark.py printed (its last Clotho line is the second pass):", *loop["printed"], sep="\n  ")
    print("dcase9 suite printed:", *suite["printed"], sep="\n  ")


if __name__ == "__main__":
    main()
