"""Edges that need a real operating system around the command: a file system that is really full, and
a SIGTERM in the middle of writing. (tests/test_hostile.py holds the table of refusals; its full-disk
cases make fsync fail in-process, which works everywhere.)

The full-disk tests mount a small tmpfs in a private mount namespace (`unshare --user --map-root-user
--mount`, no privileges needed where user namespaces are enabled) and are skipped where that is refused.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def namespaces_work() -> bool:
    try:
        probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True,
                               timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(not namespaces_work(), reason="user and mount namespaces are not available "
                                                                    "(unshare -Urm), so no small file system")


def run_on_small_disk(script: str, disk: Path, work: Path) -> None:
    """Run a shell `script` with a small tmpfs mounted at `disk` ($DISK) and the dcase9 command as $DCASE9."""
    disk.mkdir(parents=True, exist_ok=True)
    env_script = f'set -u\nDISK="{disk}"\nDCASE9="{sys.executable} -m dcase9.cli"\ncd "{work}"\n{script}'
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", env_script],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_namespaces
def test_infer_on_a_disk_that_fills_up_names_the_file_keeps_whole_outputs_and_resumes(demo_root: Path,
                                                                                      tmp_path: Path) -> None:
    data = demo_root / "eval-real"
    script = f"""
mount -t tmpfs -o size=1400k tmpfs "$DISK"
$DCASE9 infer -s mixture -d {data} -o "$DISK/out" --workers 1 > first.txt 2>&1; echo $? > first.rc
ls -a "$DISK/out" > listing.txt
{sys.executable} -c "import json, sys; from pathlib import Path; print(json.dumps([p.name for p in Path(sys.argv[1]).glob('*.wav')]))" "$DISK/out" > kept.json
mount -o remount,size=64m "$DISK"
$DCASE9 infer -s mixture -d {data} -o "$DISK/out" > second.txt 2>&1; echo $? > second.rc
ls -a "$DISK/out" > listing2.txt
"""
    run_on_small_disk(script, tmp_path / "disk", tmp_path)
    first = " ".join((tmp_path / "first.txt").read_text().split())
    assert (tmp_path / "first.rc").read_text().strip() == "2", first
    assert "the disk is full" in first and "Traceback" not in first and "LibsndfileError" not in first, first
    assert ".wav: the disk is full" in first  # the file being written is named
    listing = (tmp_path / "listing.txt").read_text().split()
    assert not [name for name in listing if name.endswith(".part")], listing
    kept = json.loads((tmp_path / "kept.json").read_text())
    assert 0 < len(kept) < 12
    second = " ".join((tmp_path / "second.txt").read_text().split())
    assert (tmp_path / "second.rc").read_text().strip() == "0", second
    assert f"wrote {12 - len(kept)} estimate(s)" in second and f"({len(kept)} already there)" in second, second


@needs_namespaces
def test_score_on_a_disk_that_fills_up_keeps_the_previous_report(demo_root: Path, tmp_path: Path) -> None:
    from dcase9 import api

    estimates = tmp_path / "est"
    api.infer("mixture", demo_root / "validation", estimates, progress=False)
    data = demo_root / "validation"
    # The first report fits; the second (the same plus a few KB of other rows) finds the disk full.
    script = f"""
mount -t tmpfs -o size=120k tmpfs "$DISK"
$DCASE9 score -d {data} -e {estimates} -o "$DISK/report" > first.txt 2>&1; echo $? > first.rc
cp -a "$DISK/report" previous
dd if=/dev/zero of="$DISK/filler" bs=1k count=200 2>/dev/null
$DCASE9 score -d {data} -e {estimates} -o "$DISK/report" > second.txt 2>&1; echo $? > second.rc
cp -a "$DISK/report" after
ls -a "$DISK" > listing.txt
"""
    run_on_small_disk(script, tmp_path / "disk", tmp_path)
    assert (tmp_path / "first.rc").read_text().strip() == "0", (tmp_path / "first.txt").read_text()
    second = " ".join((tmp_path / "second.txt").read_text().split())
    assert (tmp_path / "second.rc").read_text().strip() == "2", second
    assert "the disk is full" in second and "Traceback" not in second, second
    for name in ("per_clip.csv", "summary.json", "sdri_vs_snr.png"):
        assert (tmp_path / "after" / name).read_bytes() == (tmp_path / "previous" / name).read_bytes()
    assert sorted((tmp_path / "listing.txt").read_text().split()) == [".", "..", "filler", "report"]


# --- SIGTERM ------------------------------------------------------------------------------------------

_SLOW = """
import sys, time
import dcase9.files as files
real = files.atomic_output.__wrapped__ if hasattr(files.atomic_output, "__wrapped__") else None
from contextlib import contextmanager
import dcase9.scoring, dcase9.submission.package
original = files.atomic_output

@contextmanager
def slow(path, *args, **kwargs):
    with original(path, *args, **kwargs) as tmp:
        yield tmp
        print("WRITING", path, flush=True)
        time.sleep(30)  # SIGTERM arrives here, with a temporary file in place

for module in (files, dcase9.scoring, dcase9.submission.package):
    module.atomic_output = slow
from dcase9.cli import main
sys.argv = ["dcase9", *sys.argv[1:]]
main()
"""


def terminate_while_writing(args: list[str], cwd: Path) -> tuple[int, str]:
    process = subprocess.Popen([sys.executable, "-c", _SLOW, *args], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        lines.append(line)
        if line.startswith("WRITING"):
            process.send_signal(signal.SIGTERM)
            break
        if time.monotonic() > deadline:
            break
    output = "".join(lines) + process.stdout.read()
    return process.wait(timeout=60), output


def test_sigterm_while_score_writes_keeps_the_previous_report_and_exits_143(demo_root: Path, tmp_path: Path) -> None:
    from dcase9 import api

    estimates, report = tmp_path / "est", tmp_path / "report"
    api.infer("mixture", demo_root / "validation", estimates, progress=False)
    api.score(demo_root / "validation", estimates, report, progress=False)
    previous = {p.name: p.read_bytes() for p in report.iterdir()}
    code, output = terminate_while_writing(["score", "-d", str(demo_root / "validation"), "-e", str(estimates),
                                            "-o", str(report)], tmp_path)
    assert code == 143, output
    assert "terminated: nothing half-written was kept" in " ".join(output.split()) and "Traceback" not in output
    assert {p.name: p.read_bytes() for p in report.iterdir()} == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["est", "report"]  # no staging folder left


def test_sigterm_while_package_writes_leaves_no_partial_zip(submission_inputs, tmp_path: Path) -> None:
    from package_support import write_config

    config = write_config(submission_inputs, tmp_path / "config")
    code, output = terminate_while_writing(["package", "-c", str(config), "-o", str(tmp_path / "p.zip")], tmp_path)
    assert code == 143, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"], list(tmp_path.iterdir())


def test_a_partial_zip_a_hard_kill_left_is_removed_by_the_next_build(submission_inputs, tmp_path: Path) -> None:
    from dcase9.submission import build_package
    from package_support import write_config

    config = write_config(submission_inputs, tmp_path / "config")
    leftover = tmp_path / ".p.zip.0123abcd.part"
    leftover.write_bytes(b"half a zip")
    other = tmp_path / ".notes.part"  # not one of ours: stays
    other.write_bytes(b"mine")
    assert build_package(config, tmp_path / "p.zip", environ={}).ok
    assert not leftover.exists() and other.read_bytes() == b"mine"
    shutil.rmtree(tmp_path / "config")


def test_sigterm_during_training_saves_last_ckpt_and_exits_143(demo_root: Path, tmp_path: Path) -> None:
    """A scheduler's SIGTERM is handled like Ctrl-C: last.ckpt holds the state reached, exit 143, and
    `--resume` continues from there."""
    pytest.importorskip("lightning")
    import yaml

    from tests.test_train_run import TINY_RUN

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY_RUN, "validation": {"data": None},
                                      "checkpoint": {"every_steps": 1000, "last_every_steps": 1000}}))
    run = tmp_path / "run"
    command = [sys.executable, "-m", "dcase9.cli", "train", "--preset", "demo", "--config", str(config), "--data",
               str(demo_root / "train" / "train.json"), "--out", str(run), "--steps", "100000"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = run / "logs" / "version_0" / "metrics.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:  # until a few steps were logged
        if metrics.is_file() and metrics.read_text().count("\n") >= 3:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 143, output
    assert "terminated at step" in output and "Traceback" not in output, output
    from dcase9.models.checkpoints import read_checkpoint

    assert read_checkpoint(run / "last.ckpt")["global_step"] > 0
