"""`dcase9 report`: the listening page's data, audio, spectrograms and refusals; then the page in a
real browser (headless Chromium from Debian's packages; skipped where it is not installed)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.report_support import CHROMIUM, PageDom, chromium_dump, local_file, page_data, row_files, stand_in_ats, \
    write_eval_synth, write_scaled_estimates
from dcase9 import api
from dcase9.cli import app
from dcase9.data.formats import open_dataset
from dcase9.errors import Dcase9Error
from dcase9.report import build_report
from dcase9.report.build import page_order

runner = CliRunner()
QUICK = {"resamples": 300}
EVIL = "</script><img src=x onerror=\"document.title='pwned'\"> & <b>bold</b> \u2028 \"quoted\""


@pytest.fixture(scope="module")
def scored(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Score reports of `oracle` and `mixture` on the demo validation set (48 mixtures)."""
    root = tmp_path_factory.mktemp("scored")
    for system in ("oracle", "mixture"):
        api.infer(system, demo_root / "validation", root / "est" / system, progress=False)
        api.score(demo_root / "validation", root / "est" / system, root / "reports" / system, progress=False)
    return {"oracle": root / "reports" / "oracle", "mixture": root / "reports" / "mixture", "root": root}


@pytest.fixture(scope="module")
def page(scored: dict[str, Path]) -> Path:
    out = scored["root"] / "page"
    build_report([scored["oracle"], scored["mixture"]], out, spectrograms=3, **QUICK)
    return out


def sdri(report: Path) -> dict[str, float]:
    with open(report / "per_clip.csv", newline="") as fh:
        return {row["id"]: float(row["sdri"]) for row in csv.DictReader(fh)}


def test_the_page_plays_every_clip_of_every_system(page: Path, scored: dict[str, Path]) -> None:
    data = page_data(page)
    assert [s["name"] for s in data["systems"]] == ["oracle", "mixture"]  # from the run manifests
    assert len(data["rows"]) == 48 and data["has_reference"] and data["metrics"] == ["sdr", "sdri", "sisdr"]
    oracle = sdri(scored["oracle"])
    for row in data["rows"]:
        files = row_files(page, data, row)
        assert all(path.is_file() for path in files.values()), files
        assert row["m"][0][1] == oracle[row["id"]]
    row = data["rows"][0]
    files = row_files(page, data, row)
    assert files["mixture"].parent == (page / "audio" / "mixture").resolve()
    assert files["system-1"] == (scored["root"] / "est" / "oracle" / f"{row['id']}.wav").resolve()
    assert data["systems"][0]["base"].startswith("../est/oracle/")  # played in place, relatively
    # The written mixture and reference are the ones `score` built (16-bit: within one step).
    dataset = open_dataset(data["dataset"]["root"])
    from dcase9.data.items import ItemLoader

    item = ItemLoader(dataset).load(next(s for s in dataset.mixtures if s.id == row["id"]))
    written, rate = sf.read(files["reference"], dtype="float32")
    assert rate == 16000 and abs(written - item.reference).max() <= 1 / 32768 + 1e-7


def test_spectrograms_only_for_the_first_rows_the_page_shows(page: Path, scored: dict[str, Path]) -> None:
    data = page_data(page)
    oracle = sdri(scored["oracle"])
    ids = [r["id"] for r in data["rows"]]
    worst_first = [ids[i] for i in page_order([oracle[i] for i in ids])]
    assert sorted(worst_first[:3], key=ids.index) == [r["id"] for r in data["rows"] if r.get("spec")]
    assert oracle[worst_first[0]] == min(oracle.values()) and data["initial"] == {"sort": "m.0.sdri", "dir": "asc"}
    images = sorted(p.relative_to(page).as_posix() for p in (page / "spectrograms").rglob("*.png"))
    assert len(images) == 3 * 4  # mixture, reference and two estimates for three rows
    assert f"spectrograms/system-2/{worst_first[0]}.png" in images


def test_comparison_json_and_the_rerun_keeps_the_audio(page: Path, scored: dict[str, Path]) -> None:
    comparison = json.loads((page / "comparison.json").read_text())
    (pair,) = comparison["pairs"]
    assert (pair["a"], pair["b"], pair["wins"], pair["ties"], pair["losses"]) == ("oracle", "mixture", 48, 0, 0)
    assert pair["ci_low"] <= pair["mean_diff"] <= pair["ci_high"] and pair["ci_low"] > 10
    assert sum(b["n"] for b in pair["by_input_snr"]) == 48
    assert (page / "comparison.png").stat().st_size > 5000
    again = build_report([scored["oracle"], scored["mixture"]], page, spectrograms=0, **QUICK)
    assert again.audio_written == 0 and again.audio_kept == 96
    assert json.loads((page / "comparison.json").read_text()) == comparison  # seeded: same numbers
    build_report([scored["oracle"], scored["mixture"]], page, spectrograms=3, **QUICK)  # as the fixture left it


def test_the_command_line_builds_the_page_and_prints_the_comparison(scored: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(scored["mixture"]), str(scored["oracle"]), "--out", str(tmp_path),
                                 "--name", "input", "--name", "ideal mask", "--spectrograms", "1",
                                 "--resamples", "200", "--tie-margin", "0.5"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "input" in text and "ideal mask" in text and "0 / 0 / 48" in text and "index.html" in text
    data = page_data(tmp_path)
    assert [s["name"] for s in data["systems"]] == ["input", "ideal mask"]
    assert data["comparison"]["settings"]["tie_margin"] == 0.5
    assert data["initial"]["sort"] == "m.0.sdri" and len(list((tmp_path / "spectrograms").rglob("*.png"))) == 4


def test_reports_of_different_clips_or_data_sets_are_refused(scored: dict[str, Path], demo_root: Path,
                                                             tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(scored["root"] / "est" / "mixture", partial)
    gone = sorted(partial.glob("*.wav"))[0]
    gone.unlink()
    api.score(demo_root / "validation", partial, tmp_path / "partial-report", progress=False)
    result = runner.invoke(app, ["report", str(scored["oracle"]), str(tmp_path / "partial-report"), "-o",
                                 str(tmp_path / "page")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "different clips" in text and gone.stem in text and "Traceback" not in text

    api.infer("mixture", demo_root / "eval-synth", tmp_path / "eval-est", progress=False)
    api.score(demo_root / "eval-synth", tmp_path / "eval-est", tmp_path / "eval-report", progress=False,
              ats=stand_in_ats)
    result = runner.invoke(app, ["report", str(scored["oracle"]), str(tmp_path / "eval-report"), "-o",
                                 str(tmp_path / "page")])
    assert result.exit_code == 2 and "eval-synth set" in " ".join(result.output.split())

    result = runner.invoke(app, ["report", str(tmp_path / "nothing"), "-o", str(tmp_path / "page")])
    assert result.exit_code == 2 and "score report folder not found" in result.output
    result = runner.invoke(app, ["report", str(scored["oracle"]), "-o", str(tmp_path / "page"), "--name", "a",
                                 "--name", "b"])
    assert result.exit_code == 2 and "one per report" in result.output
    result = runner.invoke(app, ["report", str(scored["oracle"]), "-o", str(tmp_path / "page"), "--metric", "ats"])
    assert result.exit_code == 2 and "not scored in every report" in result.output
    assert not (tmp_path / "page" / "index.html").exists()


def test_duplicate_system_names_are_made_unique(scored: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(scored["oracle"], tmp_path / "again")
    result = build_report([scored["oracle"], tmp_path / "again", tmp_path / "again"], tmp_path / "page",
                          spectrograms=0, **QUICK)
    assert result.systems == ["oracle (oracle)", "oracle (again)", "oracle (again)-2"]
    assert [(p["a"], p["ties"]) for p in result.comparison["pairs"]][0] == ("oracle (oracle)", 48)


def test_a_moved_data_set_is_found_with_data(demo_root: Path, tmp_path: Path) -> None:
    shutil.copytree(demo_root / "validation", tmp_path / "val")
    api.infer("mixture", tmp_path / "val", tmp_path / "est", progress=False)
    api.score(tmp_path / "val", tmp_path / "est", tmp_path / "report", progress=False)
    (tmp_path / "val").rename(tmp_path / "moved")
    with pytest.raises(Dcase9Error, match="--data"):
        build_report([tmp_path / "report"], tmp_path / "page", spectrograms=0, **QUICK)
    result = build_report([tmp_path / "report"], tmp_path / "page", data=tmp_path / "moved", spectrograms=0, **QUICK)
    assert result.clips == 48 and result.comparison["pairs"] == []


def test_a_mix_folder_is_played_in_place(scored: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    api.mix(demo_root / "validation", tmp_path / "mixed", progress=False)
    result = build_report([scored["oracle"]], tmp_path / "page", mixed=tmp_path / "mixed", spectrograms=0, **QUICK)
    assert result.audio_written == 0 and not (tmp_path / "page" / "audio").exists()
    data = page_data(tmp_path / "page")
    assert data["audio"] == {"mixture": "../mixed/mixtures/", "reference": "../mixed/references/"}
    assert all(p.is_file() for row in data["rows"] for p in row_files(tmp_path / "page", data, row).values())
    with pytest.raises(Dcase9Error, match="self-contained"):
        build_report([scored["oracle"]], tmp_path / "page", mixed=tmp_path / "mixed", self_contained=True)
    next((tmp_path / "mixed" / "references").glob("*.wav")).unlink()
    with pytest.raises(Dcase9Error, match="another data set or is unfinished"):
        build_report([scored["oracle"]], tmp_path / "page", mixed=tmp_path / "mixed")


def evil_validation(source: Path, target: Path) -> Path:
    """A copy of the demo validation set whose first caption is HTML and script."""
    shutil.copytree(source, target)
    path = target / "lass_synthetic_validation.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    rows[1][3] = EVIL
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def evil_page(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evil")
    data = evil_validation(demo_root / "validation", root / "val")
    api.infer("mixture", data, root / "est", progress=False)
    api.score(data, root / "est", root / "report", progress=False)
    build_report([root / "report"], root / "page", spectrograms=0, **QUICK)
    return root / "page"


def test_captions_are_data_not_markup(evil_page: Path) -> None:
    text = (evil_page / "index.html").read_text(encoding="utf-8")
    assert text.count("</script") == 2  # the data's and the script's own: the caption closes nothing
    assert "<img" not in text and "<b>" not in text
    assert EVIL in [r["caption"] for r in page_data(evil_page)["rows"]]


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two systems on a small eval-synth set, scored by a stand-in ATS."""
    root = tmp_path_factory.mktemp("evaluation")
    data = write_eval_synth(root / "synth", 12)
    files = [(s.id, s.file or "") for s in open_dataset(data).mixtures]
    reports = []
    for name, gain in (("loud", 0.9), ("quiet", 0.1)):
        estimates = write_scaled_estimates(data, files, root / "est" / name, gain)
        api.score(data, estimates, root / "reports" / name, progress=False, ats=stand_in_ats)
        reports.append(root / "reports" / name)
    return {"root": root, "data": data, "reports": reports}


def test_evaluation_sets_play_mixtures_and_estimates_without_references(evaluation: dict[str, Any]) -> None:
    out = evaluation["root"] / "page"
    result = build_report(evaluation["reports"], out, spectrograms=2, **QUICK)
    data = page_data(out)
    assert not data["has_reference"] and data["audio"]["reference"] is None and data["bins"] == []
    assert [s["name"] for s in data["systems"]] == ["loud", "quiet"]  # no manifest: the folder names
    assert data["metrics"] == ["ats"] and data["initial"]["sort"] == "m.0.ats"
    for row in data["rows"]:
        files = row_files(out, data, row)
        assert set(files) == {"mixture", "system-1", "system-2"} and all(p.is_file() for p in files.values())
        assert files["mixture"].parent == (evaluation["data"] / "lass_evaluation_synth").resolve()
    (pair,) = result.comparison["pairs"]
    assert result.comparison["settings"]["metric"] == "ats" and pair["wins"] == 12 and "by_input_snr" not in pair
    assert len(list((out / "spectrograms").rglob("*.png"))) == 2 * 3
    assert not (out / "audio").exists()  # nothing to write: everything is played in place


def test_self_contained_pages_can_be_moved(evaluation: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "page"
    result = build_report(evaluation["reports"], out, spectrograms=0, self_contained=True, **QUICK)
    assert result.audio_written == 12 * 3 and not result.notes
    moved = tmp_path / "elsewhere" / "page"
    moved.parent.mkdir()
    out.rename(moved)
    data = page_data(moved)
    for row in data["rows"]:
        for path in row_files(moved, data, row).values():
            assert path.is_file() and path.is_relative_to(moved.resolve())
    again = build_report(evaluation["reports"], moved, spectrograms=0, self_contained=True, **QUICK)
    assert again.audio_written == 0 and again.audio_kept == 36


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """3,000 rows, two systems, five spectrograms."""
    root = tmp_path_factory.mktemp("large")
    data = write_eval_synth(root / "synth", 3000, samples=160)
    files = [(s.id, s.file or "") for s in open_dataset(data).mixtures]
    reports = []
    for name, gain in (("a", 0.8), ("b", 0.3)):
        estimates = write_scaled_estimates(data, files, root / "est" / name, gain)
        api.score(data, estimates, root / "reports" / name, progress=False, ats=stand_in_ats, batch_size=256)
        reports.append(root / "reports" / name)
    result = build_report(reports, root / "page", spectrograms=5, resamples=1000)
    return {"root": root, "page": root / "page", "result": result}


def test_three_thousand_rows_with_a_bounded_number_of_spectrograms(large: dict[str, Any]) -> None:
    result, page = large["result"], large["page"]
    data = page_data(page)
    assert len(data["rows"]) == 3000 and data["page_size"] == 50
    assert result.spectrograms.images == 5 * 3 and len(list((page / "spectrograms").rglob("*.png"))) == 15
    assert sum(1 for r in data["rows"] if r.get("spec")) == 5
    assert result.comparison["pairs"][0]["n"] == 3000


# --------------------------------------------------------------------------------------------
# In a real browser

browser = pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (`apt-get install -y chromium`; "
                                                             ".ci/run installs it)")


def render(page: Path, tmp_path: Path, fragment: str = "") -> PageDom:
    return PageDom(chromium_dump((page / "index.html").resolve().as_uri() + fragment, tmp_path / "profile"))


@browser
def test_browser_renders_the_rows_and_sorting_changes_their_order(page: Path, scored: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    oracle = sdri(scored["oracle"])
    ids = [r["id"] for r in page_data(page)["rows"]]
    shown = render(page, tmp_path)
    assert shown.clip_ids == [ids[i] for i in page_order([oracle[i] for i in ids])]  # 48 < one page of 50
    assert "showing 1–48 of 48 mixtures" in shown.status
    descending = render(page, tmp_path, "#sort=m.0.sdri&dir=desc").clip_ids
    assert descending != shown.clip_ids and sorted(descending) == sorted(ids)
    values = [oracle[i] for i in descending]
    assert values == sorted(values, reverse=True)


@browser
def test_browser_players_point_at_files_that_exist(page: Path, tmp_path: Path) -> None:
    shown = render(page, tmp_path)
    assert len(shown.audio) == 48 * 4 and all(a["preload"] == "none" for a in shown.audio)
    for audio in shown.audio:
        assert local_file(page, audio["src"]).is_file(), audio
    spectrograms = [src for src in shown.images if src.startswith("spectrograms/")]
    assert len(spectrograms) == 3 * 4 and all(local_file(page, src).is_file() for src in spectrograms)
    # And the browser decodes them, under the page's own content security policy: a probe page next
    # to index.html loads one player of each kind and two images.
    policy = re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', (page / "index.html").read_text())
    assert policy is not None
    sources = [a["src"] for a in shown.audio[:4]]
    (page / "probe.html").write_text(f"<!doctype html><head>{policy.group(0)}</head><div id=out></div>"
                                     "<script src='probe.js'></script>")
    (page / "probe.js").write_text(
        "var r=[];function show(){document.getElementById('out').textContent=r.join('|');}"
        f"{json.dumps(sources)}.forEach(function(s,i){{var a=new Audio();a.preload='metadata';"
        "a.onloadedmetadata=function(){r[i]='ok '+a.duration;show();};a.onerror=function(){r[i]='error';show();};"
        f"a.src=s;}});{json.dumps([spectrograms[0], 'comparison.png'])}.forEach(function(s,i){{var m=new Image();"
        "m.onload=function(){r[4+i]='image '+m.naturalWidth;show();};m.onerror=function(){r[4+i]='error';show();};"
        "m.src=s;});")
    try:
        text = chromium_dump((page / "probe.html").resolve().as_uri(), tmp_path / "profile")
    finally:
        (page / "probe.html").unlink()
        (page / "probe.js").unlink()
    # mixture, reference, two float32 estimates (10 s each); a spectrogram and the plot
    assert text.count("ok 10|") == 4 and re.search(r"image \d+\|image \d+<", text) and "error" not in text, text[-500:]


@browser
def test_browser_filters_and_jumps_to_the_worst(page: Path, scored: dict[str, Path], tmp_path: Path) -> None:
    found = render(page, tmp_path, "#q=RAIN")
    assert found.clip_ids and all("rain" in c.lower() for c in found.captions)
    assert len(found.clip_ids) < 48
    worst = render(page, tmp_path, "#top=worst&n=5&rk=m.0.sdri&sort=order")
    oracle = sdri(scored["oracle"])
    assert sorted(oracle[i] for i in worst.clip_ids) == sorted(oracle.values())[:5]
    ids = [r["id"] for r in page_data(page)["rows"]]
    assert worst.clip_ids == sorted(worst.clip_ids, key=ids.index)  # then shown in data-set order
    binned = render(page, tmp_path, "#bin=5")  # [10, 15] dB
    snr = {r["id"]: r["snr"] for r in page_data(page)["rows"]}
    assert binned.clip_ids and all(10 <= snr[i] <= 15 for i in binned.clip_ids)
    ranged = render(page, tmp_path, "#rk=m.0.sdri&min=20&max=25")
    assert ranged.clip_ids and all(20 <= oracle[i] <= 25 for i in ranged.clip_ids)


@browser
def test_browser_shows_captions_as_text(evil_page: Path, tmp_path: Path) -> None:
    shown = render(evil_page, tmp_path, "#sort=order")
    assert shown.captions[0] == EVIL
    assert shown.title != "pwned" and not any(tag == "b" for tag, _ in shown.elements)
    assert not any(tag == "img" and attrs.get("src") == "x" for tag, attrs in shown.elements)


@browser
def test_browser_paginates_three_thousand_rows(large: dict[str, Any], tmp_path: Path) -> None:
    shown = render(large["page"], tmp_path)
    assert len(shown.clip_ids) == 50 and len(shown.audio) == 50 * 3
    assert all(a["preload"] == "none" for a in shown.audio)
    assert "showing 1–50 of 3000 mixtures" in shown.status
    page3 = render(large["page"], tmp_path, "#page=3&per=100")
    assert len(page3.clip_ids) == 100 and "showing 201–300 of 3000" in page3.status
