"""Training throughput and memory of a `dcase9 train` recipe at full size, on random weights.

Runs the preset's real model (ResUNet30 at the baseline's size for `baseline`/`system1`/`system4`;
for `system3`, the mask net with AudioLDM-S-sized VAE and HiFi-GAN folders written with random
weights) and the full-size CLAP text tower (random weights; the tokenizer is roberta-base from the Hugging
Face cache when present, else a tiny stand-in) through `dcase9 train` on the demo training clips
(10 s each) for a few steps, and prints what the run's summary measured: steps/s and clips/s over
the steps after the first four (start-up and warm-up excluded), and peak memory (CUDA max allocated, or process
peak RSS on the CPU). No validation, no checkpoints beyond the last.

    python benchmarks/training.py --batch-size 2 --steps 7 --device cpu
    python benchmarks/training.py --batch-size 16 --steps 30 --device cuda --precision bf16-mixed
    python benchmarks/training.py --preset system3 --batch-size 8 --steps 20 --device cuda

Real weights would not change the figures: the cost of a step depends on shapes, not values.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_audioldm_sized_parts(folder: Path) -> dict[str, str]:
    """AudioLDM-S-full-v2's VAE and vocoder shapes (cvssp/audioldm-s-full-v2), random weights."""
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    AutoencoderKL(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(128, 256, 512),
                  down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                  layers_per_block=2, norm_num_groups=32, sample_size=256,
                  scaling_factor=0.9227914).save_pretrained(folder / "vae")
    SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[16, 16, 8, 4, 4], resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5]] * 3, normalize_before=False)).save_pretrained(folder / "vocoder")
    return {"audioldm-vae": str(folder / "vae"), "audioldm-vocoder": str(folder / "vocoder")}


def measure(preset: str, *, batch_size: int, steps: int, segment_seconds: float, device: str, precision: str,
            workers: int, work: Path, overrides: dict[str, Any] | None = None,
            weights: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """Train `preset` for `steps` steps in `work`; the run's throughput (see module docstring) and the
    tokenizer used. `overrides` is one more configuration layer (smaller models for quick checks);
    `weights` replaces the AudioLDM-sized parts written for System 3."""
    from benchmarks.inference import tokenizer_folder
    from dcase9.data.demo import make_train
    from dcase9.training import assemble_config, train

    accelerator = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}[device]
    # Enough 10 s clips for every step to see fresh data (8 classes x n clips).
    train_dir = make_train(work / "data", clips_per_class=max(2, -(-batch_size * 2 // 8)))
    tokenizer, tokenizer_name = tokenizer_folder(work)
    if weights is None:
        weights = write_audioldm_sized_parts(work / "audioldm") if (
            assemble_config(preset=preset).model.kind == "irm-ldm") else {}
    config = assemble_config(preset=preset, overrides=[{
        "weights": weights,
        "data": {"datafiles": [str(train_dir / "train.json")], "batch_size": batch_size,
                 "segment_seconds": segment_seconds, "num_workers": workers},
        "query_encoder": {"source": "random", "tokenizer": str(tokenizer)},
        "trainer": {"max_steps": steps, "max_epochs": None, "accelerator": accelerator, "devices": 1,
                    "precision": precision, "progress_bar": False},
        "validation": {"every_steps": None},
        "checkpoint": {"every_steps": None},
    }, *([overrides] if overrides else [])])
    result = train(config, work / "run", progress=False, lightning_info=False)
    return result.throughput, tokenizer_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="baseline", help="baseline, system1, system3, system4")
    parser.add_argument("--batch-size", type=int, default=2, help="clips per device (the baseline's is 16)")
    parser.add_argument("--steps", type=int, default=8, help="the first 4 are not measured")
    parser.add_argument("--segment-seconds", type=float, default=10.0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--precision", default="32-true", help="Lightning precision: 32-true, bf16-mixed, 16-mixed")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs only)")
    parser.add_argument("--workers", type=int, default=2, help="data-loader processes")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="dcase9-bench-train-") as tmp:
        measured, tokenizer_name = measure(args.preset, batch_size=args.batch_size, steps=args.steps,
                                           segment_seconds=args.segment_seconds, device=args.device,
                                           precision=args.precision, workers=args.workers, work=Path(tmp))
    print(f"preset {args.preset}, batch {args.batch_size} x {args.segment_seconds:g} s, {args.steps} steps, "
          f"device {args.device}, precision {args.precision}, tokenizer: {tokenizer_name}")
    print(json.dumps(measured, indent=1))
    if "steps_per_second" in measured:
        print(f"{measured['steps_per_second']:.3f} steps/s, {measured['clips_per_second']:.3f} clips/s, "
              f"peak {measured['peak_memory_gib']:.1f} GiB ({measured['memory_kind']}), "
              f"over {measured['measured_steps']} steps after the first four")
    else:
        print("no step measured: the first four are start-up and warm-up; pass --steps 5 or more")


if __name__ == "__main__":
    main()
