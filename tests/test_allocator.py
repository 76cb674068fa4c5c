"""dcase9.allocator: freed large blocks stay with the process for reuse (glibc); the command line asks for it
for its own process, the library never does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dcase9.allocator import reuse_freed_memory

ROOT = Path(__file__).resolve().parents[1]

# In a fresh process (the setting is process-wide and cannot be undone): resident memory after a
# 256 MB array is freed, without and with the setting.
PROBE = """
import json, sys
import numpy as np
from dcase9.allocator import reuse_freed_memory

def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

applied = reuse_freed_memory() if sys.argv[1] == "reuse" else False
before = resident_mb()
block = np.ones(64 * 2**20, dtype=np.float32)  # 256 MB, touched
del block
print(json.dumps({"applied": applied, "kept_mb": resident_mb() - before}))
"""


def glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError):
        return False


def probe(mode: str) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                            check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(result.stdout)


@pytest.mark.skipif(not glibc(), reason="the setting exists in glibc only")
def test_freed_large_blocks_stay_for_reuse() -> None:
    default, reused = probe("default"), probe("reuse")
    assert default["kept_mb"] < 32  # glibc's default: a block this large is unmapped when freed
    assert reused["applied"] and reused["kept_mb"] > 200  # kept, for the next clip's feature maps


def test_is_idempotent_and_says_whether_it_applies() -> None:
    assert reuse_freed_memory() is reuse_freed_memory() is glibc()


def test_only_the_command_line_asks_for_it(demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library call never changes its caller's process: building a separator, separating and scoring
    leave the allocator alone; `dcase9 infer` and `dcase9 score` tune their own process."""
    from typer.testing import CliRunner

    from dcase9 import allocator, api
    from dcase9.cli import app

    calls: list[int] = []
    monkeypatch.setattr(allocator, "reuse_freed_memory", lambda: calls.append(1) or True)
    options = {"device": "cpu", "progress": False, "limit": 2}
    api.infer("mixture", demo_root / "eval-real", tmp_path / "est", **options)
    api.load_separator("mixture", device="cpu").separate(np.zeros(16000, np.float32), sample_rate=16000)
    api.infer("mixture", demo_root / "validation", tmp_path / "val", **options)
    api.score(demo_root / "validation", tmp_path / "val", progress=False)
    assert calls == []
    runner = CliRunner()
    result = runner.invoke(app, ["infer", "-s", "mixture", "-d", str(demo_root / "eval-real"), "-o",
                                 str(tmp_path / "cli"), "--limit", "1"])
    assert result.exit_code == 0 and calls == [1], result.output
    runner.invoke(app, ["score", "-d", str(demo_root / "validation"), "-e", str(tmp_path / "val")])
    assert calls == [1, 1]
