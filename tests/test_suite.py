"""`dcase9 suite`: AudioSep's six benchmarks separated and scored in one resumable command, with the table its
README prints next to the published row."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from dcase9 import api
from dcase9.cli import app
from dcase9.data.benchmarks import BENCHMARK_NAMES, BENCHMARKS
from dcase9.progress import Stage
from tests.report_support import page_data

README_RESULTS = Path(__file__).parent / "fixtures" / "audiosep" / "readme_results.txt"
runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture()
def evaluation(demo_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "evaluation"
    shutil.copytree(demo_root / "evaluation", target)
    return target


def test_the_published_numbers_are_audiosep_readmes_own() -> None:
    """Every number `dcase9 systems` and `dcase9 suite` show for AudioSep is read back from its README."""
    from dcase9.systems import get_system
    from dcase9.systems.catalog import audiosep_published_benchmarks

    titles = {b.title: b.name for b in BENCHMARKS}
    lines = re.findall(r"^(\S+) Avg SDRi: ([\d.]+), SISDR: ([\d.]+)$", README_RESULTS.read_text(), re.MULTILINE)
    readme = {titles[title]: (float(sdri), float(sisdr)) for title, sdri, sisdr in lines}
    assert list(readme) == list(BENCHMARK_NAMES)  # the README's order is the suite's
    shown = {p.benchmark: (p.sdri, p.sisdr) for p in audiosep_published_benchmarks()}
    assert shown == readme
    assert get_system("2").published_benchmarks == audiosep_published_benchmarks()
    text = flat(runner.invoke(app, ["systems", "2"], env={"COLUMNS": "250"}).output.replace("│", " "))
    for name, (sdri, sisdr) in readme.items():
        assert f"{BENCHMARKS[BENCHMARK_NAMES.index(name)].title} {sdri:.3f} {sisdr:.3f}" in text


def test_suite_runs_the_six_resumably_and_prints_audiosep_table(evaluation: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["suite", str(evaluation), "-s", "oracle", "-o", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["benchmarks"]) == list(BENCHMARK_NAMES) and summary["complete"] is True
    assert summary["sample_rate"] == {"data": 32000, "model": 16000}
    for name, entry in summary["benchmarks"].items():
        report = json.loads((out / name / "report" / "summary.json").read_text())
        assert entry["status"] == "scored" and entry["complete"] and entry["scored"] == entry["clips"] > 0
        assert entry["sdri"] == report["benchmark"]["sdri"] and entry["mean_sdri"] == report["mean"]["sdri"]
        assert entry["mean_sisdr"] == report["mean"]["sisdr"] and entry["sisdr"] == report["benchmark"]["sisdr"]
        assert entry["printed"] in result.output and entry["published"]["source"].startswith("AudioSep README")
        assert report["paths"]["estimates"] == str((out / name / "estimates").resolve())
        published = f"{entry['published']['sdri']:.3f} {entry['published']['sisdr']:.3f}"
        cells = re.sub(r"[│\s]+", " ", result.output)  # the table's rows, cell after cell
        assert f"{entry['title']} {entry['scored']}/{entry['clips']} {entry['sdri']:.3f} {entry['sisdr']:.3f} " \
               f"{entry['sisdri']:.3f} {published}" in cells
    assert summary["benchmarks"]["audiocaps"]["query"] == "caption"

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    again = runner.invoke(app, ["suite", str(evaluation), "-s", "oracle", "-o", str(out), "--only", "music"])
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == stamps  # nothing separated again
    merged = json.loads((out / "summary.json").read_text())
    assert list(merged["benchmarks"]) == list(BENCHMARK_NAMES) and merged["benchmarks"] == summary["benchmarks"]


def test_a_missing_benchmark_is_named_and_the_others_run(evaluation: Path, tmp_path: Path) -> None:
    shutil.rmtree(evaluation / "data" / "clotho")
    (evaluation / "metadata" / "esc50_eval.csv").write_text("idx,caption,src_wav,noise_wav\n0,,a.wav,b.wav\n")
    result = api.suite("mixture", evaluation, tmp_path / "out", only=["clotho", "esc50", "vggsound"])
    by_name = {b.name: b for b in result.benchmarks}
    assert by_name["clotho"].status == "missing" and "no such folder" in by_name["clotho"].message
    assert by_name["esc50"].status == "unusable" and "empty caption" in by_name["esc50"].message
    assert by_name["vggsound"].status == "scored" and by_name["vggsound"].complete
    assert not result.complete
    cli = runner.invoke(app, ["suite", str(evaluation), "-s", "mixture", "-o", str(tmp_path / "out"),
                              "--only", "clotho", "--only", "vggsound"])
    assert cli.exit_code == 1 and "Clotho: missing" in flat(cli.output)


def test_one_progress_line_per_stage_with_the_time_and_what_is_next(evaluation: Path, tmp_path: Path) -> None:
    """Two stages per benchmark (separating, scoring), k of n, the time so far, the next stage; a benchmark that
    cannot run skips its own (issue 27, item 9)."""
    shutil.rmtree(evaluation / "data" / "music")
    stages: list[Stage] = []
    api.suite("mixture", evaluation, tmp_path / "out", only=["esc50", "music", "clotho"], on_stage=stages.append)
    assert [(s.number, s.total, s.what, s.next) for s in stages] == [
        (3, 6, "ESC-50: separating", "ESC-50: scoring"), (4, 6, "ESC-50: scoring", "Clotho: separating"),
        (5, 6, "Clotho: separating", "Clotho: scoring"), (6, 6, "Clotho: scoring", None)]  # MUSIC (1, 2) is missing
    assert 0 <= stages[0].elapsed <= stages[-1].elapsed
    result = runner.invoke(app, ["suite", str(evaluation), "-s", "mixture", "-o", str(tmp_path / "again"),
                                 "--only", "clotho"], env={"COLUMNS": "80"})
    lines = result.output.splitlines()
    assert re.fullmatch(r"\[1/2\] Clotho: separating \(\d+ s so far; next: Clotho: scoring\)", lines[0]), lines[0]
    assert any(re.fullmatch(r"\[2/2\] Clotho: scoring \(\d+ s so far\)", line) for line in lines), result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--only", "fsd50k"], "--only 'fsd50k': not one of AudioSep's benchmarks (vggsound, music"),
    (["--only", "music", "--query-column", "labels"], "AudioCaps is not among the benchmarks run"),
    (["--query-column", "title"], "--query-column 'title': the AudioCaps benchmark's queries come from caption or labels"),
])
def test_suite_refuses_options_it_cannot_honour(evaluation: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["suite", str(evaluation), "-s", "mixture", "-o", str(tmp_path / "out"), *args])
    assert result.exit_code == 2 and message in flat(result.output), result.output


def test_suite_refuses_a_folder_not_in_audiosep_layout_and_an_out_inside_it(evaluation: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["suite", str(evaluation / "data"), "-s", "mixture", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not AudioSep's evaluation folder: no metadata/ or data/" in flat(result.output)
    result = runner.invoke(app, ["suite", str(evaluation), "-s", "mixture", "-o", str(evaluation / "data" / "out")])
    assert result.exit_code == 2 and "--out" in result.output and "EVALUATION_DIR" in result.output
    assert not (evaluation / "data" / "out").exists()


def test_report_pages_and_paired_comparison_on_a_benchmark(evaluation: Path, tmp_path: Path) -> None:
    for system in ("mixture", "oracle"):
        result = runner.invoke(app, ["suite", str(evaluation), "-s", system, "-o", str(tmp_path / system),
                                     "--only", "audioset"])
        assert result.exit_code == 0, result.output
    reports = [str(tmp_path / system / "audioset" / "report") for system in ("mixture", "oracle")]
    result = runner.invoke(app, ["report", *reports, "-o", str(tmp_path / "page")])
    assert result.exit_code == 0, result.output
    comparison = json.loads((tmp_path / "page" / "comparison.json").read_text())
    assert comparison["settings"]["metric"] == "sdri" and comparison["clips"] == 6
    data = page_data(tmp_path / "page")
    assert data["metrics"] == ["sdr", "sdri", "sisdr", "sisdri"] and data["bins"] == []
    for row in data["rows"]:  # the players' relative URLs lead to the benchmark's own files
        for base, name, part in ((data["audio"]["mixture"], row["mix"], "mixture"),
                                 (data["audio"]["reference"], row["ref"], "source")):
            path = (tmp_path / "page" / unquote(base + name)).resolve()
            assert path == (evaluation / "data" / "audioset" / f"class_id={row['id'].split(',')[0][9:]}" /
                            f"{row['id']},{part}.wav").resolve()
    # Played in place: the mixtures and references of the folder; copied with --self-contained.
    result = runner.invoke(app, ["report", *reports, "-o", str(tmp_path / "copy"), "--self-contained"])
    assert result.exit_code == 0, result.output
    for part in ("mixture", "reference"):
        copied = sorted(p.name for p in (tmp_path / "copy" / "audio" / part).rglob("*.wav"))
        assert len(copied) == 6 and all(name.endswith(f",{'source' if part == 'reference' else 'mixture'}.wav")
                                        for name in copied)
