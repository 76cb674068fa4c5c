"""`score`: mixture estimates give SDRi 0, oracle estimates a clearly positive SDRi; bad estimates are named."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dcase9 import api
from dcase9.cli import app
from dcase9.errors import Dcase9Error
from dcase9.scoring import snr_bin, summarise

runner = CliRunner()


@pytest.fixture(scope="module")
def estimates(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("estimates")
    for system in ("mixture", "oracle"):
        api.infer(system, demo_root / "validation", root / system, progress=False)
    return {"mixture": root / "mixture", "oracle": root / "oracle"}


def test_mixture_estimates_give_sdri_zero_for_every_clip(demo_root: Path, estimates: dict[str, Path],
                                                         tmp_path: Path) -> None:
    report = api.score(demo_root / "validation", estimates["mixture"], tmp_path, progress=False)
    assert report.complete and len(report.rows) == 48
    assert all(row["sdri"] == 0.0 for row in report.rows)
    for row in report.rows:  # the input SDR of an official mixture is its SNR
        assert row["input_sdr"] == pytest.approx(row["snr"], abs=1e-4)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mean"]["sdri"] == 0.0 and summary["complete"] is True
    assert summary["system"]["system"] == "mixture"


def test_oracle_estimates_give_clearly_positive_sdri(demo_root: Path, estimates: dict[str, Path],
                                                     tmp_path: Path) -> None:
    report = api.score(demo_root / "validation", estimates["oracle"], tmp_path, progress=False)
    assert report.summary["mean"]["sdri"] > 10
    assert min(row["sdri"] for row in report.rows) > 0
    with open(tmp_path / "per_clip.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "source", "noise", "snr", "caption", "sdr", "sdri", "sisdr", "input_sdr"]
    assert len(rows) == 48 and float(rows[0]["sdri"]) == pytest.approx(report.rows[0]["sdri"], abs=0)
    assert (tmp_path / "sdri_vs_snr.png").stat().st_size > 10_000
    bins = report.summary["by_input_snr"]
    assert sum(b["n"] for b in bins) == 48 and bins[-1]["bin"] == "[10, 15]"


def test_means_are_plain_means_over_clips() -> None:
    rows = [{"sdr": 1.0, "sdri": 2.0, "sisdr": 0.5, "snr": -15}, {"sdr": 3.0, "sdri": 4.0, "sisdr": 1.5, "snr": 15},
            {"sdr": 8.0, "sdri": 0.0, "sisdr": 2.0, "snr": 0}]
    summary = summarise(rows, ("sdr", "sdri", "sisdr"))
    assert summary["mean"] == {"sdr": 4.0, "sdri": 2.0, "sisdr": 4.0 / 3}
    assert summary["median"]["sdr"] == 3.0
    assert [b["n"] for b in summary["by_input_snr"]] == [1, 0, 0, 1, 0, 1]
    assert snr_bin(15) == (10, 15) and snr_bin(-15) == (-15, -10) and snr_bin(16) is None


def test_problems_are_reported_by_kind(demo_root: Path, estimates: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "est"
    shutil.copytree(estimates["mixture"], folder)
    for name in ("dcase9-run.json", "dcase9-outputs.jsonl"):  # estimates of another tool: taken as they are
        (folder / name).unlink()
    wavs = sorted(folder.glob("*.wav"))
    wavs[0].unlink()  # missing
    sf.write(wavs[1], np.zeros(160000, np.float32), 32000)  # wrong rate
    sf.write(wavs[2], np.zeros((160000, 2), np.float32), 16000)  # stereo
    sf.write(wavs[3], np.zeros(159999, np.float32), 16000)  # wrong length
    nan = np.zeros(160000, np.float32)
    nan[5] = np.nan
    sf.write(wavs[4], nan, 16000, subtype="FLOAT")  # non-finite
    sf.write(folder / "not-a-mixture.wav", np.zeros(10, np.float32), 16000)  # extra
    report = api.score(demo_root / "validation", folder, tmp_path / "report", progress=False)
    kinds = sorted(p.kind for p in report.problems)
    assert kinds == ["extra", "missing", "non-finite", "wrong-channels", "wrong-length", "wrong-rate"]
    assert len(report.rows) == 48 - 5 and not report.complete
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["problems"]["missing"] == [wavs[0].stem]
    result = runner.invoke(app, ["score", "--data", str(demo_root / "validation"), "--estimates", str(folder)])
    assert result.exit_code == 1
    assert "1 missing" in result.output and "wrong-rate" in result.output


def test_estimates_the_folders_ledger_does_not_vouch_for_are_left_out(demo_root: Path, estimates: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """A dcase9 folder vouches for its files: one edited since, or left by another run, is not scored as the
    manifest's system (a folder of another tool's estimates has no manifest and is taken as it is)."""
    folder = tmp_path / "est"
    shutil.copytree(estimates["mixture"], folder)  # copy2: sizes and modification times kept, still vouched for
    wavs = sorted(folder.glob("*.wav"))
    sf.write(wavs[0], np.zeros(160000, np.float32), 16000, subtype="FLOAT")  # edited
    shutil.copy(estimates["oracle"] / wavs[1].name, wavs[1])  # another run's file under this manifest
    report = api.score(demo_root / "validation", folder, tmp_path / "report", progress=False)
    unvouched = {p.id: p.message for p in report.problems if p.kind == "unvouched"}
    assert sorted(unvouched) == [wavs[0].stem, wavs[1].stem] and len(report.rows) == 46
    assert "has changed since dcase9 wrote it" in unvouched[wavs[0].stem]


def test_evaluation_sets_have_no_references(demo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(Dcase9Error, match="no references"):
        api.score(demo_root / "eval-real", tmp_path, progress=False)
    with pytest.raises(Dcase9Error, match="needs references"):
        api.infer("oracle", demo_root / "eval-real", tmp_path / "x", progress=False)


def test_missing_estimates_folder(demo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(Dcase9Error, match="estimates folder not found"):
        api.score(demo_root / "validation", tmp_path / "nope", progress=False)


def test_scores_are_the_metric_functions_of_each_clip(demo_root: Path, estimates: dict[str, Path]) -> None:
    """Batched and widened to float64 once per batch, `score` still gives what the metric functions
    give one clip at a time."""
    import torch

    from dcase9 import metrics, scoring
    from dcase9.data.formats import open_dataset
    from dcase9.data.items import ItemLoader

    dataset = open_dataset(demo_root / "validation")
    report = scoring.score_estimates(dataset, estimates["mixture"], device="cpu", batch_size=5, progress=False)
    loader = ItemLoader(dataset)
    for spec, row in zip(dataset.mixtures, report.rows, strict=True):
        item = loader.load(spec)
        estimate = torch.from_numpy(sf.read(str(estimates["mixture"] / f"{spec.id}.wav"), dtype="float32")[0])[None]
        reference, mixture = torch.from_numpy(item.reference)[None], torch.from_numpy(item.mixture)[None]
        assert row["id"] == spec.id
        assert row["sdr"] == pytest.approx(float(metrics.sdr(reference, estimate)), abs=1e-12)
        assert row["sisdr"] == pytest.approx(float(metrics.sisdr(reference, estimate)), abs=1e-12)
        assert row["sdri"] == pytest.approx(float(metrics.sdri(reference, estimate, mixture)), abs=1e-12)


def test_reading_threads_from_the_shell(demo_root: Path, estimates: dict[str, Path], tmp_path: Path) -> None:
    done = runner.invoke(app, ["score", "-d", str(demo_root / "validation"), "-e", str(estimates["mixture"]),
                               "--workers", "0", "-o", str(tmp_path / "inline")])
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "inline" / "summary.json").read_text())["mean"]["sdri"] == 0.0
    refused = runner.invoke(app, ["score", "-d", str(demo_root / "validation"), "-e", str(estimates["mixture"]),
                                  "--workers", "-1"])
    assert refused.exit_code == 2 and "--workers must be 0" in refused.output


def test_missing_estimates_of_a_limited_run_are_summarised_with_the_reason(demo_root: Path, tmp_path: Path) -> None:
    """After `infer --limit 8`, score names two missing clips, counts the rest, and says the folder was limited."""
    api.infer("mixture", demo_root / "validation", tmp_path / "est", limit=8, progress=False)
    result = runner.invoke(app, ["score", "-d", str(demo_root / "validation"), "-e", str(tmp_path / "est")])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "40 missing" in text and "... and 38 more" in text, text
    assert text.count("no estimate") == 2 and "made with --limit 8" in text
    result = runner.invoke(app, ["score", "-d", str(demo_root / "eval-real"), "-e", str(tmp_path / "est")])
    assert result.exit_code == 2 and "add --ats" in result.output
