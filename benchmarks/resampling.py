"""Benchmark: the two ways `dcase9 infer --resampler` moves System 2's audio between 16 and 32 kHz.

- `soxr`: soxr HQ on the CPU, one clip at a time, as the engine's reading thread (16 -> 32 kHz) and
  writing thread (32 -> 16 kHz) do it; with `--threads 2` two clips run at once (soxr releases the GIL).
- `julius`: the same round trip on a (batch, samples) tensor on the device, as the engine does it in
  the separation step with `--resampler julius` (the model waits for it).

Prints milliseconds per 10 s clip for each direction. Random signals: the cost depends only on lengths.

    python benchmarks/resampling.py --clips 32
    python benchmarks/resampling.py --clips 64 --device cuda --batch-size 8
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_of(repeats: int, run) -> float:  # type: ignore[no-untyped-def]
    """The fastest of `repeats` runs, in seconds (other load on a shared machine only adds time)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--batch-size", type=int, default=8, help="julius batch")
    parser.add_argument("--device", default="cpu", help="julius device (soxr always runs on the CPU)")
    parser.add_argument("--threads", type=int, default=2, help="soxr threads (the engine's default --workers)")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import torch

    from dcase9.audio import SAMPLE_RATE, resample, resample_hq
    from dcase9.devices import resolve_device

    torch.set_num_threads(args.torch_threads)
    device = resolve_device(args.device)
    rate = 32000
    length = int(args.seconds * SAMPLE_RATE)
    rng = np.random.default_rng(0)
    clips16 = [(0.1 * rng.standard_normal(length)).astype(np.float32) for _ in range(args.clips)]
    clips32 = [resample_hq(c, SAMPLE_RATE, rate) for c in clips16]

    def soxr_all(clips: list[np.ndarray], orig: int, new: int) -> None:
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            list(pool.map(lambda c: resample_hq(c, orig, new), clips))

    def julius_all(clips: list[np.ndarray], orig: int, new: int) -> None:
        for start in range(0, len(clips), args.batch_size):
            batch = torch.from_numpy(np.stack(clips[start:start + args.batch_size])).to(device)
            resample(batch, orig, new).cpu()
        if device.type == "cuda":
            torch.cuda.synchronize()

    julius_all(clips16[:args.batch_size], SAMPLE_RATE, rate)  # warm-up (julius builds its filters, CUDA starts)
    rows = []
    for name, run, where in (("soxr HQ", soxr_all, f"CPU, {args.threads} threads"),
                             ("julius", julius_all, f"{device}, batch {args.batch_size}")):
        up = best_of(args.repeats, lambda: run(clips16, SAMPLE_RATE, rate))  # noqa: B023
        down = best_of(args.repeats, lambda: run(clips32, rate, SAMPLE_RATE))  # noqa: B023
        rows.append((name, where, up, down))
    print(f"{args.clips} clips of {args.seconds:g} s, best of {args.repeats}, torch threads {args.torch_threads}")
    print(f"{'resampler':<10}{'where':<22}{'16->32 ms/clip':>16}{'32->16 ms/clip':>16}")
    for name, where, up, down in rows:
        print(f"{name:<10}{where:<22}{1000 * up / args.clips:>16.2f}{1000 * down / args.clips:>16.2f}")


if __name__ == "__main__":
    main()
