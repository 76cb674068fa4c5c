"""`validate` accepts the official layout and rejects each listed fault, naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dcase9.cli import app
from dcase9.data.validate import validate_dataset

runner = CliRunner()


def first_clip(folder: Path) -> Path:
    return sorted((folder / "lass_validation").glob("*.wav"))[0]


def test_clean_demo_set_is_usable(demo_validation: Path) -> None:
    report = validate_dataset(demo_validation)
    assert report.issues == []
    assert report.usable()
    assert report.files_checked == 16


def damage_missing(folder: Path) -> None:
    first_clip(folder).unlink()


def damage_unreadable(folder: Path) -> None:
    first_clip(folder).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")


def damage_rate(folder: Path) -> None:
    path = first_clip(folder)
    sf.write(path, np.zeros(441000, np.float32) + 0.1, 44100, subtype="PCM_16")


def damage_channels(folder: Path) -> None:
    path = first_clip(folder)
    sf.write(path, np.full((160000, 2), 0.1, np.float32), 16000, subtype="PCM_16")


def damage_duration(folder: Path) -> None:
    path = first_clip(folder)
    sf.write(path, np.full(80000, 0.1, np.float32), 16000, subtype="PCM_16")


def damage_nan(folder: Path) -> None:
    path = first_clip(folder)
    data = np.full(160000, 0.1, np.float32)
    data[123] = np.nan
    sf.write(path, data, 16000, subtype="FLOAT")


def damage_silent(folder: Path) -> None:
    sf.write(first_clip(folder), np.zeros(160000, np.float32), 16000, subtype="PCM_16")


def damage_caption(folder: Path) -> None:
    csv_path = folder / "lass_synthetic_validation.csv"
    lines = csv_path.read_text().splitlines()
    source, noise, snr = lines[1].split(",")[:3]
    lines[1] = f"{source},{noise},{snr},"
    csv_path.write_text("\n".join(lines) + "\n")


def damage_duplicate(folder: Path) -> None:
    csv_path = folder / "lass_synthetic_validation.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(lines + [lines[1]]) + "\n")


def damage_unknown_source(folder: Path) -> None:
    csv_path = folder / "lass_synthetic_validation.csv"
    lines = csv_path.read_text().splitlines()
    lines[1] = "999999_1-hq" + lines[1][lines[1].index(","):]
    csv_path.write_text("\n".join(lines) + "\n")


def damage_snr(folder: Path) -> None:
    csv_path = folder / "lass_synthetic_validation.csv"
    lines = csv_path.read_text().splitlines()
    parts = lines[1].split(",", 3)
    lines[1] = ",".join(parts[:2] + ["ten"] + parts[3:])
    csv_path.write_text("\n".join(lines) + "\n")


def damage_escape(folder: Path) -> None:
    csv_path = folder / "lass_synthetic_validation.csv"
    lines = csv_path.read_text().splitlines()
    lines[1] = "../../etc/passwd" + lines[1][lines[1].index(","):]
    csv_path.write_text("\n".join(lines) + "\n")


def damage_column(folder: Path) -> None:
    csv_path = folder / "lass_synthetic_validation.csv"
    lines = csv_path.read_text().splitlines()
    lines[0] = lines[0].replace("caption", "captions")
    csv_path.write_text("\n".join(lines) + "\n")


FAULTS = {
    "audio-missing": damage_missing,
    "audio-unreadable": damage_unreadable,
    "audio-rate": damage_rate,
    "audio-channels": damage_channels,
    "audio-duration": damage_duration,
    "audio-nonfinite": damage_nan,
    "audio-silent": damage_silent,
    "caption-empty": damage_caption,
    "row-duplicate": damage_duplicate,
    "unknown-clip": damage_unknown_source,
    "snr-not-number": damage_snr,
    "unsafe-name": damage_escape,
    "column-missing": damage_column,
}


@pytest.mark.parametrize("code", sorted(FAULTS))
def test_each_fault_is_rejected_and_named(demo_validation: Path, code: str) -> None:
    FAULTS[code](demo_validation)
    report = validate_dataset(demo_validation)
    assert code in {i.code for i in report.errors}, [str(i) for i in report.issues]
    assert not report.usable()
    result = runner.invoke(app, ["validate", str(demo_validation), "--show", "0"])
    assert result.exit_code == 1, result.output
    assert code in result.output
    located = [i for i in report.errors if i.code == code]
    assert all(i.file for i in located)  # every problem names its file


def test_length_mismatch_between_source_and_noise(demo_validation: Path) -> None:
    path = first_clip(demo_validation)
    data, rate = sf.read(path, dtype="float32")
    sf.write(path, data[:-3], rate, subtype="PCM_16")  # 3 samples short: a warning on its own...
    report = validate_dataset(demo_validation)
    assert {i.code for i in report.warnings} == {"audio-duration"}
    # ...but the recipe cannot add clips of different lengths: an error on each affected row.
    mismatches = [i for i in report.errors if i.code == "length-mismatch"]
    assert mismatches and all(i.row for i in mismatches)


def test_real_recordings_may_differ_in_length(demo_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "eval-real"
    shutil.copytree(demo_root / "eval-real", folder)
    path = sorted((folder / "lass_evaluation_real").glob("*.wav"))[0]
    sf.write(path, np.full(48000, 0.1, np.float32), 16000, subtype="PCM_16")
    report = validate_dataset(folder)
    assert report.usable() and {i.code for i in report.warnings} == {"audio-duration"}


def test_json_output_and_strict_mode(demo_validation: Path) -> None:
    csv_path = demo_validation / "lass_synthetic_validation.csv"
    lines = csv_path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",42"  # a non-text caption: a warning
    csv_path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["validate", str(demo_validation), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["usable"] and payload["kind"] == "validation" and payload["mixtures"] == 48
    assert [(i["code"], i["row"], i["field"]) for i in payload["issues"]] == [("caption-not-text", 2, "caption")]
    strict = runner.invoke(app, ["validate", str(demo_validation), "--strict"])
    assert strict.exit_code == 1


def test_validate_eval_sets_and_unknown_folder(demo_root: Path, tmp_path: Path) -> None:
    for name in ("eval-synth", "eval-real"):
        result = runner.invoke(app, ["validate", str(demo_root / name)])
        assert result.exit_code == 0, result.output
        assert name in result.output
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert "no evaluation-set CSV found" in result.output
