"""Tables the command line prints fit the terminal, whole, at 80 columns and at 250 (issue 27, item 4): no
name or path cut into "…", long tables compact, and the same rows for scripts with --json / --csv."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from package_support import SubmissionInputs, write_config
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from dcase9.cli import app
from dcase9.cli._tables import print_table
from dcase9.hub import cache_path
from dcase9.systems import list_systems
from dcase9.weights import weight_entries

runner = CliRunner()
WIDTHS = ("80", "250")
ELLIPSIS = "…"


def invoke(args: list[str], columns: str, exit_code: int = 0) -> str:
    """What the command prints on standard output (--json and --csv: only that), exiting with `exit_code`."""
    result = runner.invoke(app, args, env={"COLUMNS": columns})
    assert result.exit_code == exit_code, result.output
    assert ELLIPSIS not in result.output, result.output
    return result.stdout


def widest_line(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def render(table: Table, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    print_table(table, console)
    return console.file.getvalue()  # type: ignore[attr-defined]


def path_table(path: str) -> Table:
    table = Table(title="Weights")
    table.add_column("name", no_wrap=True)
    table.add_column("what")
    table.add_column("local path", no_wrap=True)
    table.add_row("a-rather-long-weight-name", "Official checkpoint, ResUNet30 16 kHz + CLAP query encoder (Lightning, "
                  "200k steps)", path)
    table.add_row("short", "A tokenizer", "/tmp/x")
    return table


@pytest.mark.parametrize("width", [40, 80, 120, 250])
def test_print_table_keeps_names_and_paths_whole_at_any_width(width: int) -> None:
    path = "/home/someone/.cache/dcase9/weights/system4-audiosep-checkpoint/with a space/system4_audiosep.ckpt"
    text = render(path_table(path), width)
    assert ELLIPSIS not in text
    assert any(path in line for line in text.splitlines())  # on one line (wrapped, if at all, by the terminal)
    assert any("a-rather-long-weight-name" in line for line in text.splitlines())
    if width == 250:  # side by side: one line per row
        assert any(line.startswith("│ a-rather-long-weight-name") and path in line for line in text.splitlines())
    else:  # one row after another: `header: value` lines
        assert any(line.strip() == f"local path: {path}" for line in text.splitlines()), text
        prose = [line for line in text.splitlines() if path not in line]
        assert widest_line("\n".join(prose)) <= width  # prose wraps within the width


def test_print_table_wraps_prose_at_spaces_and_never_cuts_a_word() -> None:
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("description")
    table.add_column("n", justify="right")
    words = "music_speech_audioset_epoch_15_esc_89.98 query encoder for the CLAP score " * 3
    table.add_row("clap", words, "12345")
    text = render(table, 80)
    assert ELLIPSIS not in text and widest_line(text) <= 80
    assert text.count("music_speech_audioset_epoch_15_esc_89.98") == 3  # each whole on its line
    assert "12345" in text


def test_systems_is_one_short_row_per_system_whole_at_any_width() -> None:
    for columns in WIDTHS:
        text = invoke(["systems"], columns)
        assert widest_line(text) <= int(columns)
        first_cells = {line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")}
        assert {spec.name for spec in list_systems()} <= first_cells
        for spec in list_systems():
            for alias in spec.aliases:
                assert re.search(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", text), (columns, alias)
        assert len(text.splitlines()) < 40, text  # compact: the details are in `dcase9 systems NAME`


def test_systems_name_shows_everything_about_one_system() -> None:
    for spec in list_systems():
        for columns in WIDTHS:
            text = " ".join(re.sub(r"│", " ", invoke(["systems", spec.aliases[0] if spec.aliases else spec.name],
                                                     columns)).split())
            assert spec.title in text and " ".join(spec.summary.split()) in text
            for weight in spec.weights:
                assert weight in text
            for p in spec.published:
                cells = re.sub(r"[│ ]+", " ", text)
                numbers = " ".join("-" if v is None else f"{v:.3f}" for v in (p.sdr, p.sdri, p.sisdr, p.ats))
                assert numbers in cells, (spec.name, numbers)
            for b in spec.published_benchmarks:
                assert f"{b.sdri:.3f} {b.sisdr:.3f}" in re.sub(r"[│ ]+", " ", text)
    result = runner.invoke(app, ["systems", "nope"])
    assert result.exit_code == 2 and "unknown system 'nope'" in result.output


def test_systems_json_and_csv() -> None:
    document = json.loads(invoke(["systems", "--json"], "80"))
    specs = list_systems()
    assert [s["name"] for s in document["systems"]] == [spec.name for spec in specs]
    for entry, spec in zip(document["systems"], specs, strict=True):
        assert set(entry) == {"name", "aliases", "title", "summary", "sample_rate", "needs_references",
                              "segment_seconds", "weights", "optional_weights", "options", "published",
                              "published_benchmarks"}
        assert entry["aliases"] == list(spec.aliases) and entry["weights"] == list(spec.weights)
        assert [p["sdri"] for p in entry["published"]] == [p.sdri for p in spec.published]
    one = json.loads(invoke(["systems", "audiosep32k", "--json"], "80"))
    assert one["name"] == "2" and len(one["published_benchmarks"]) == 6
    rows = list(csv.DictReader(io.StringIO(invoke(["systems", "--csv"], "80"))))
    assert [row["name"] for row in rows] == [spec.name for spec in specs]
    assert rows[1]["aliases"] == ";".join(specs[1].aliases) and rows[0]["sample_rate"] == "16000"
    result = runner.invoke(app, ["systems", "--json", "--csv"])
    assert result.exit_code == 2 and "give one of them" in result.output


def test_download_list_shows_every_local_path_whole() -> None:
    entries = weight_entries()
    for columns in WIDTHS:
        text = invoke(["download", "--list"], columns)
        for name, entry in entries.items():
            assert any(str(cache_path(name, entry)) in line for line in text.splitlines()), (columns, name)
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (columns, name)
    document = json.loads(invoke(["download", "--list", "--json"], "80"))
    assert [w["name"] for w in document["weights"]] == list(entries)
    for weight in document["weights"]:
        assert set(weight) == {"name", "description", "kind", "size_bytes", "sha256", "sources", "from", "local_path",
                               "local_path_exists"}
        assert weight["local_path"] == str(cache_path(weight["name"], entries[weight["name"]]))
        assert weight["local_path_exists"] is False
    rows = list(csv.DictReader(io.StringIO(invoke(["download", "--list", "--csv"], "80"))))
    assert [row["name"] for row in rows] == list(entries)
    assert rows[0]["local_path"] == document["weights"][0]["local_path"]


def test_package_tables_whole_at_any_width(submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    def long_names(config: dict) -> None:
        config["systems"][0]["abbreviation"] = "Baseline-2"
        config["systems"][1]["name"] = "AudioSep_fine_tuned_with_augmented_captions_and_a_name_without_spaces"

    config = write_config(submission_inputs, tmp_path / "work", long_names)
    package = tmp_path / "Smith_UNI_task9.zip"
    for columns in WIDTHS:
        text = invoke(["package", "--config", str(config), "--out", str(package)], columns)
        for word in ("Smith_UNI_task9_1", "Smith_UNI_task9_2", "Baseline-2", "AudioSepFT",
                     "AudioSep_fine_tuned_with_augmented_captions_and_a_name_without_spaces"):
            assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text), (columns, word)
        checked = invoke(["package", "--check", str(package), "--data-synth", str(submission_inputs.data["eval-synth"]),
                          "--data-real", str(submission_inputs.data["eval-real"])], columns)
        assert "Smith_UNI_task9_1" in checked and "passes" in checked
    # Without the evaluation data the outputs are counted against the official sets: findings, exit 1.
    document = json.loads(invoke(["package", "--check", str(package), "--json"], "80", exit_code=1))
    assert document["ok"] is False and {"severity", "code", "message", "entry", "line"} == set(document["findings"][0])
    rows = list(csv.DictReader(io.StringIO(invoke(["package", "--check", str(package), "--csv"], "80", exit_code=1))))
    assert rows and list(rows[0]) == ["severity", "code", "entry", "line", "message"]
    assert {row["code"] for row in rows} == {f["code"] for f in document["findings"]}


@pytest.fixture()
def evaluation(demo_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "evaluation"
    shutil.copytree(demo_root / "evaluation", target)
    return target


def test_suite_table_json_and_csv(evaluation: Path, tmp_path: Path) -> None:
    args = ["suite", str(evaluation), "-s", "mixture", "-o", str(tmp_path / "out"), "--only", "audiocaps",
            "--only", "music"]
    for columns in WIDTHS:
        text = invoke(args, columns)
        assert widest_line("\n".join(line for line in text.splitlines() if str(tmp_path) not in line)) \
            <= int(columns)
        assert re.search(r"│ AudioCaps\s+│\s+\d+/\d+ │", text), text
    document = json.loads(invoke([*args, "--json"], "80"))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert document == summary
    rows = list(csv.DictReader(io.StringIO(invoke([*args, "--csv"], "80"))))
    assert [row["benchmark"] for row in rows] == ["music", "audiocaps"]
    assert list(rows[0]) == ["benchmark", "title", "status", "clips", "scored", "complete", "sdri", "sisdr", "sisdri",
                             "published_sdri", "published_sisdr", "printed"]
    assert float(rows[0]["sdri"]) == summary["benchmarks"]["music"]["sdri"]
