"""What `pip install dcase9` installs: one import name, `dcase9`, holding every file of the three folders.

pyproject.toml maps toolkit/ to `dcase9`, systems/ to `dcase9.systems` and submission/ to
`dcase9.submission`, with an explicit package list; a folder missing from that list would be left out
of the wheel silently, and a generic top-level name (`toolkit`, `systems`, `submission`) would clash
with other distributions of that name. The test builds the wheel from the tracked files and installs it
into an empty folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"toolkit": "dcase9", "systems": "dcase9/systems", "submission": "dcase9/submission"}


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", *FOLDERS], cwd=ROOT, capture_output=True, text=True)
    if listing.returncode != 0:
        pytest.skip("not a git checkout")
    return listing.stdout.split()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the tracked files (so nothing is written into the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in [*tracked_files(), "pyproject.toml", "README.md"]:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                             "--no-index", "-w", str(out), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("dcase9-*.whl")
    return built


def test_the_wheel_holds_every_tracked_file_under_dcase9(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if ".dist-info/" not in n}
    expected = set()
    for name in tracked_files():
        folder, _, rest = name.partition("/")
        expected.add(f"{FOLDERS[folder]}/{rest}")
    assert names == expected, (f"missing from the wheel: {sorted(expected - names)}; "
                               f"unexpected: {sorted(names - expected)}")
    assert {n.split("/")[0] for n in names} == {"dcase9"}


def test_only_dcase9_is_importable_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                             "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in target.iterdir() if p.name != "bin" and not p.name.endswith(".dist-info")) == ["dcase9"]
    code = ("import importlib.util, sys\n"
            "import dcase9, dcase9.api, dcase9.cli, dcase9.systems, dcase9.submission\n"
            "assert dcase9.__file__.startswith(sys.argv[1]), dcase9.__file__\n"
            "print([n for n in ('toolkit', 'systems', 'submission') if importlib.util.find_spec(n) is not None])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('toolkit', 'systems', 'submission')))\n")
    # From an empty folder, with only the wheel's files before the environment's other packages.
    run = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split("\n")[:2] == ["[]", "[]"], run.stdout
