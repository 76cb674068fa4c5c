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
from tests.names_support import rename_mixtures

runner = CliRunner()


def first_clip(folder: Path) -> Path:
    return sorted((folder / "lass_validation").glob("*.wav"))[0]


def test_clean_demo_set_is_usable(demo_validation: Path) -> None:
    report = validate_dataset(demo_validation)
    assert report.issues == []
    assert report.usable
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
    assert not report.usable
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
    assert report.usable and {i.code for i in report.warnings} == {"audio-duration"}


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


def test_names_one_disk_folds_are_warned_once_per_pair_of_rows(demo_root: Path, demo_validation: Path,
                                                                tmp_path: Path) -> None:
    from dcase9.data.formats import parse_dataset

    # Evaluation: `Mix.wav` and `mix.flac` are two files anywhere, but their outputs are one on macOS.
    data = Path(shutil.copytree(demo_root / "eval-real", tmp_path / "eval-real"))
    rename_mixtures(data, {"demo-real-case-1": "Mix"})
    (data / "lass_evaluation_real" / "demo-real-case-2.wav").rename(data / "lass_evaluation_real" / "mix.flac")
    csv = data / "lass_real_evaluation.csv"
    csv.write_text(csv.read_text().replace("demo-real-case-2.wav,", "mix.flac,"))
    _, issues = parse_dataset(data)
    assert [(i.severity, i.code, i.row, i.message) for i in issues if i.code == "name-collision"] == [
        ("warning", "name-collision", 4, "mixture id 'mix' and 'Mix' of row 3 differ only by letter case: on macOS "
         "and Windows their outputs (<id>.wav) are one file, and so are their entries in a package; rename one")]
    # Validation (without the clip list, which would refuse the unknown spelling): a clip named in two
    # spellings over several rows is one warning.
    (demo_validation / "lass_validation.json").unlink()
    csv = demo_validation / "lass_synthetic_validation.csv"
    rows = csv.read_text().splitlines()
    source = rows[1].split(",")[0]
    changed = [row.replace(source, source.upper(), 1) if k > 1 and row.startswith(source) else row
               for k, row in enumerate(rows)]
    assert sum(a != b for a, b in zip(rows, changed, strict=True)) >= 2  # the second spelling on several rows
    csv.write_text("\n".join(changed) + "\n")
    _, issues = parse_dataset(demo_validation)
    collisions = [i for i in issues if i.code == "name-collision"]
    assert len(collisions) == 1 and collisions[0].message.startswith(f"file name '{source.upper()}.wav' and "
                                                                     f"'{source}.wav' of row 2 differ only by letter case")


def test_a_validation_report_reads_short_and_usable_is_not_a_method(demo_root: Path) -> None:
    """`if report.usable:` must not be always true (a bound method is), and the repr fits a line."""
    from dcase9 import api

    report = api.validate(demo_root / "validation")
    assert report.usable is True and report.usable_strictly in (True, False)
    assert len(repr(report)) < 200 and "usable=True" in repr(report)
