"""Benchmark: `dcase9 score` on a validation set of the official size (3000 mixtures of 1000 clips).

Makes the scaled validation set (`dcase9.data.demo.make_scaled_validation`: 10 s clips, mixed by
the reader as the official CSV says), writes the unprocessed mixtures as the estimates (the
`mixture` system: the cost of scoring does not depend on what the estimates hold), then times
`score` (reading the clips, mixing, reading the estimates, the metrics) and prints seconds and
clips/s. Each repeat runs in a fresh process, as `dcase9 score` does (the CPU allocator setting of
`dcase9.allocator` applies to a whole process); the fastest is kept.

    python benchmarks/scoring.py                     # 3000 mixtures on the CPU
    python benchmarks/scoring.py --device cuda --workers 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ONE_RUN = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from dcase9.allocator import reuse_freed_memory
from dcase9.scoring import score_estimates
reuse_freed_memory()  # as `dcase9 score` does for its own process
workers = None if sys.argv[5] == "default" else int(sys.argv[5])
started = time.perf_counter()
report = score_estimates(sys.argv[2], sys.argv[3], None, device=sys.argv[4], workers=workers, progress=False)
print(json.dumps({"seconds": time.perf_counter() - started, "clips": len(report.rows),
                  "mean_sdr": report.summary["mean"]["sdr"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixtures", type=int, default=3000)
    parser.add_argument("--clips", type=int, default=1000, help="distinct clips the mixtures are made of")
    parser.add_argument("--device", default="cpu", help="where the metrics run (reading is always on the CPU)")
    parser.add_argument("--workers", default="default", help="reading threads (default: the device's default)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from dcase9 import api
    from dcase9.data.demo import make_scaled_validation

    with tempfile.TemporaryDirectory(prefix="dcase9-score-bench-") as tmp:
        data = make_scaled_validation(Path(tmp) / "validation", args.mixtures, args.clips)
        estimates = Path(tmp) / "estimates"
        api.infer("mixture", data, estimates, progress=False, device="cpu")
        runs = []
        for _ in range(args.repeats):
            result = subprocess.run([sys.executable, "-c", ONE_RUN, str(ROOT), str(data), str(estimates),
                                     args.device, str(args.workers)], capture_output=True, text=True, check=True)
            runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"  run {len(runs)}: {runs[-1]['seconds']:.1f} s", flush=True)
    best = min(runs, key=lambda r: r["seconds"])
    print(f"score, {best['clips']} mixtures, device {args.device}, workers {args.workers}: best {best['seconds']:.1f} s "
          f"({best['clips'] / best['seconds']:.0f} clips/s) of {len(runs)}; started at {time.strftime('%H:%M')}")


if __name__ == "__main__":
    main()
