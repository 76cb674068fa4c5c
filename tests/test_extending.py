"""docs/extending.md's worked example, copied out of the page and run on the demo data: a system and a
metric registered by a module of one's own reach every consumer through the ordinary API; the profile
line and the preset it shows load."""

from __future__ import annotations

import csv
import json
import math
import re
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcase9.cli import app
from dcase9.errors import ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
runner = CliRunner()


def code_blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    example = text[text.index("## A worked example"):]
    return re.findall(r"```(?:python|yaml)\n(.*?)```", example, flags=re.DOTALL)


def example_files() -> dict[str, str]:
    """The blocks that are files: their first line is `# <name>`."""
    files = {}
    for block in code_blocks():
        first = block.splitlines()[0]
        if re.fullmatch(r"# [\w.-]+\.(py|yaml)", first):
            files[first[2:]] = block
    return files


@pytest.fixture()
def workspace(tmp_path: Path, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example's files in a folder with the demo data, as the page says; what the example
    registers is removed afterwards."""
    from dcase9.systems import unregister_system
    from dcase9.metrics import unregister_metric

    for name, text in example_files().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "demo-data").symlink_to(demo_root)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield tmp_path
    finally:
        unregister_system("gain")
        unregister_metric("sdsdri")
        sys.modules.pop("my_extension", None)


def test_the_page_holds_the_files_it_runs() -> None:
    assert set(example_files()) == {"my_extension.py", "run_example.py", "my-preset.yaml"}


def test_the_worked_example_runs_and_reaches_every_consumer(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    runpy.run_path(str(workspace / "run_example.py"), run_name="__main__")
    said = capsys.readouterr().out
    found = re.search(r"SD-SDRi (-?[0-9.]+) dB, SDRi (-?[0-9.]+) dB", said)
    assert found is not None, said
    # as the page says: 20 log10(0.5) below the SDRi (each rounded to 3 decimals)
    assert abs(float(found.group(2)) - float(found.group(1)) - 20 * math.log10(2)) <= 0.0015, said
    assert "[0.25 0.25 0.25]" in said

    # The registered metric is in every consumer: the report files, the score table, training's
    # validation logs, the listening page, submission profiles.
    with open(workspace / "reports" / "gain" / "per_clip.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[-5:] == ["sdr", "sdri", "sisdr", "input_sdr", "sdsdri"]
    summary = json.loads((workspace / "reports" / "gain" / "summary.json").read_text())
    assert abs(summary["mean"]["sdri"] - summary["mean"]["sdsdri"] - 20 * math.log10(2)) < 1e-6
    assert "sdsdri" in summary["by_input_snr"][0]["mean"]
    result = runner.invoke(app, ["score", "--data", "demo-data/validation", "--estimates", "estimates/gain"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "SD-SDRi" in result.output
    from dcase9.training.module import validation_metrics

    assert [m.name for m in validation_metrics()] == ["sdr", "sdri", "sisdr", "sdsdri"]
    from dcase9 import api

    page = api.report(["reports/gain", "reports/gain"], "page", names=["gain", "again"], spectrograms=0,
                      metric="sdsdri")
    assert page.comparison["settings"]["label"] == "SD-SDRi"
    assert "sdsdri" in (workspace / "page" / "index.html").read_text()

    # The system is listed and runs from Python like the project's.
    result = runner.invoke(app, ["systems"], env={"COLUMNS": "200"})
    assert "Gain (example)" in result.output
    manifest = json.loads((workspace / "estimates" / "gain" / "dcase9-run.json").read_text())
    assert manifest["identity"]["system"] == "gain" and manifest["identity"]["options"] == {"gain": 0.5}


def test_the_profile_line_reports_the_metric_once_it_is_registered(workspace: Path) -> None:
    from dcase9.submission import load_profile
    from dcase9.submission.profile import PROFILES_DIR

    (line,) = [b for b in code_blocks() if "source: results.sdsdri" in b]
    shipped = (PROFILES_DIR / "dcase2024_task9.yaml").read_text(encoding="utf-8")
    ats = next(row for row in shipped.splitlines(keepends=True) if row.strip().startswith("ats:"))
    (workspace / "my-profile.yaml").write_text(shipped.replace(ats, ats + line), encoding="utf-8")
    with pytest.raises(ConfigError, match="results.sdsdri: no such metric"):
        load_profile(workspace / "my-profile.yaml")
    import my_extension  # noqa: F401

    profile = load_profile(workspace / "my-profile.yaml")
    fields = profile.meta["results"].fields["development_dataset"].fields
    assert fields["sdsdri"].source == "results.sdsdri" and fields["sdsdri"].decimals == 3


def test_the_preset_extends_the_demo(workspace: Path) -> None:
    from dcase9.training import assemble_config

    config = assemble_config(config_file="my-preset.yaml",
                             overrides=[{"data": {"datafiles": ["demo-data/train/train.json"]}}])
    assert config.system == "baseline" and config.trainer.max_steps == 100
    assert config.model_options().channels == [8, 16, 32]
    assert config.query_encoder.tokenizer == "tiny-demo" and config.model_options().n_fft == 256  # the demo's
