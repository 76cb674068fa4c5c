"""Shared test fixtures: the official metadata files and a small demo data set generated once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = FIXTURES / "official"

# Two cores in CI: avoid oversubscription by intra-op threads of several workers.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Lightning gives its logger a StreamHandler on the sys.stderr of the moment it is first imported. Imported
# inside a CliRunner call, that is the runner's capture, closed afterwards: a later test's warning then
# prints "--- Logging error ---". Imported here, it is the session's own stderr (as in a real process).
try:
    import lightning.pytorch  # noqa: F401
except ImportError:  # the train extra is not installed: those tests skip
    pass


@pytest.fixture(scope="session", autouse=True)
def session_dcase9_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """dcase9's own folder (remembered sums, download records, downloaded weights) for the test session,
    not the user's: set before any test, inherited by the processes tests start."""
    home = tmp_path_factory.mktemp("dcase9-home")
    previous = os.environ.get("DCASE9_HOME")
    os.environ["DCASE9_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("DCASE9_HOME", None)
    else:
        os.environ["DCASE9_HOME"] = previous


@pytest.fixture(scope="session")
def official_dir() -> Path:
    return OFFICIAL


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo data in all four layouts (2 validation clips per class -> 16 clips, 48 mixtures)."""
    from dcase9.data.demo import make_demo

    root = tmp_path_factory.mktemp("demo")
    make_demo(root, clips_per_class=2, train_clips_per_class=2, seed=0)
    return root


@pytest.fixture()
def demo_validation(demo_root: Path, tmp_path: Path) -> Path:
    """A private copy of the demo validation set that a test may damage."""
    import shutil

    target = tmp_path / "validation"
    shutil.copytree(demo_root / "validation", target)
    return target


@pytest.fixture(scope="session")
def submission_inputs(demo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """What `dcase9 package` needs, from the demo data: float and PCM estimates of both evaluation
    sets, a `score` report on the validation set, a checkpoint and a PDF (see package_support)."""
    from package_support import make_submission_inputs

    return make_submission_inputs(tmp_path_factory.mktemp("submission"), demo_root)
