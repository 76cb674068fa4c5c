"""`dcase9 package`: a full package from demo estimates, its contents, determinism, and refusals."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from package_support import (CHECKPOINT_PARAMETERS, EXAMPLE_CONFIG, HAND_MADE_TEMPLATE, SUBSETS, SubmissionInputs,
                             wav_bytes, write_config)
from typer.testing import CliRunner

from dcase9.submission import build_package, check_package, load_profile, load_submission_config
from dcase9.submission.package import FILE_MODE, FIXED_DATE_TIME
from dcase9.submission.profile import PROFILES_DIR
from dcase9.cli import app
from dcase9.data.formats import open_dataset
from dcase9.errors import ConfigError

runner = CliRunner()
LABELS = ("Smith_UNI_task9_1", "Smith_UNI_task9_2")
REPORT_ENTRY = "task9/Smith_UNI_task9.technical_report.pdf"
FOLDERS = {"eval-synth": "eval_synth", "eval-real": "eval_real"}


def expected_entries(inputs: SubmissionInputs) -> set[str]:
    names = {REPORT_ENTRY}
    for label in LABELS:
        names.add(f"task9/{label}/{label}.meta.yaml")
        for subset in SUBSETS:
            names |= {f"task9/{label}/{FOLDERS[subset]}/{m.id}.wav"
                      for m in open_dataset(inputs.data[subset]).mixtures}
    return names


def test_the_example_config_is_valid_and_names_two_systems() -> None:
    config = load_submission_config(EXAMPLE_CONFIG)
    profile = load_profile(config.profile)
    labels = [profile.label_of(config.submitter.lastname, config.submitter.abbreviation, s.index)
              for s in config.systems]
    assert labels == list(LABELS)
    assert all(profile.parse_label(label) for label in labels)
    # Relative paths are taken from the config's folder.
    assert config.technical_report == EXAMPLE_CONFIG.parent / "report" / "technical_report.pdf"


def test_package_from_demo_estimates_passes_check(submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    inputs = submission_inputs
    config = write_config(inputs, tmp_path / "work")
    package = tmp_path / "Smith_UNI_task9.zip"
    result = runner.invoke(app, ["package", "--config", str(config), "--out", str(package)])
    assert result.exit_code == 0, result.output
    assert "it passes the check" in " ".join(result.output.split())

    with zipfile.ZipFile(package) as archive:
        assert set(archive.namelist()) == expected_entries(inputs)
        assert archive.read(REPORT_ENTRY) == inputs.pdf.read_bytes()
        summary = json.loads((inputs.report / "summary.json").read_text())
        for label in LABELS:
            meta = yaml.safe_load(archive.read(f"task9/{label}/{label}.meta.yaml"))
            assert meta["submission"]["label"] == label
            assert meta["submission"]["authors"][0]["email"] == "jane.smith@uni.example.org"
            assert meta["system"]["complexity"]["total_parameters"] == sum(CHECKPOINT_PARAMETERS.values())
            assert meta["results"]["development_dataset"] == {
                metric: round(summary["mean"][metric], 3) for metric in ("sdr", "sdri", "sisdr")}
        meta_1 = yaml.safe_load(archive.read(f"task9/{LABELS[0]}/{LABELS[0]}.meta.yaml"))
        meta_2 = yaml.safe_load(archive.read(f"task9/{LABELS[1]}/{LABELS[1]}.meta.yaml"))
        # The profile's default input rate, unless the description gives the system's own.
        assert meta_1["system"]["description"]["input_sampling_rate"] == "16kHz"
        assert meta_2["system"]["description"]["input_sampling_rate"] == "32kHz"
        assert meta_1["system"]["description"]["separation_model"] == "ResUNet30"

        real = open_dataset(inputs.data["eval-real"])
        mixture = real.mixtures[3]
        mixture_frames = sf.info(str(real.files_of(mixture)[0])).frames
        # System 1: float estimates converted to 16-bit PCM, within half a quantisation step.
        converted = archive.read(f"task9/{LABELS[0]}/eval_real/{mixture.id}.wav")
        info = sf.info(io.BytesIO(converted))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", mixture_frames)
        packaged, _ = sf.read(io.BytesIO(converted), dtype="float64")
        estimate, _ = sf.read(inputs.float_estimates["eval-real"] / f"{mixture.id}.wav", dtype="float64")
        assert np.max(np.abs(packaged - estimate)) <= 0.5 / 32768 + 1e-12
        # System 2: PCM_16 estimates copied byte for byte.
        copied = archive.read(f"task9/{LABELS[1]}/eval_real/{mixture.id}.wav")
        assert copied == (inputs.pcm_estimates["eval-real"] / f"{mixture.id}.wav").read_bytes()

    result = runner.invoke(app, ["package", "--check", str(package), "--data-synth", str(inputs.data["eval-synth"]),
                                 "--data-real", str(inputs.data["eval-real"])])
    assert result.exit_code == 0, result.output
    assert "passes" in result.output and "matched against the evaluation CSVs" in " ".join(result.output.split())
    result = runner.invoke(app, ["package", "--check", str(package), "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["data_checked"] and report["systems"] == list(LABELS)
    assert report["outputs"][LABELS[0]] == {"eval-synth": 16, "eval-real": 12}


def test_two_builds_are_byte_identical(submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    config = write_config(submission_inputs, tmp_path / "work")
    first = build_package(config, tmp_path / "first.zip", environ={})
    second = build_package(config, tmp_path / "second.zip", environ={})
    assert first.ok and second.ok, [str(f) for f in first.findings + second.findings]
    assert (tmp_path / "first.zip").read_bytes() == (tmp_path / "second.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "first.zip") as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {(i.date_time, i.external_attr >> 16, i.compress_type, i.create_system) for i in infos} == {
        (FIXED_DATE_TIME, FILE_MODE, zipfile.ZIP_DEFLATED, 3)}
    assert [s.converted for s in first.systems] == [28, 0] and [s.copied for s in first.systems] == [0, 28]
    assert first.systems[0].parameters_by_prefix == CHECKPOINT_PARAMETERS


def _damaged_estimates(inputs: SubmissionInputs, folder: Path) -> dict[str, Path]:
    """Copies of the float estimates with one missing, one extra and one stereo WAV."""
    copies = {}
    for subset in SUBSETS:
        copies[subset] = folder / subset
        shutil.copytree(inputs.float_estimates[subset], copies[subset])
        for name in ("dcase9-run.json", "dcase9-outputs.jsonl"):  # another tool's estimates: taken as they are
            (copies[subset] / name).unlink(missing_ok=True)
    (copies["eval-real"] / "demo-real-case-5.wav").unlink()
    shutil.copy(copies["eval-real"] / "demo-real-case-0.wav", copies["eval-real"] / "not-a-mixture.wav")
    stereo, _ = sf.read(copies["eval-synth"] / "demo-synth-case-2.wav", dtype="float32")
    (copies["eval-synth"] / "demo-synth-case-2.wav").write_bytes(wav_bytes(np.stack([stereo, stereo], 1)))
    return copies


def test_refuses_and_lists_every_problem(submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    damaged = _damaged_estimates(submission_inputs, tmp_path / "damaged")

    def edit(config: dict) -> None:
        config["technical_report"] = "no-such-report.pdf"
        config["systems"][0]["estimates"] = {subset: str(path) for subset, path in damaged.items()}
        config["systems"][1]["abbreviation"] = "MuchTooLong"
        config["authors"][1]["email"] = "john.doe-at-example"

    config = write_config(submission_inputs, tmp_path / "work", edit)
    package = tmp_path / "out.zip"
    result = runner.invoke(app, ["package", "-c", str(config), "-o", str(package)])
    assert result.exit_code == 1, result.output
    assert not package.exists() and not list(tmp_path.glob(".out.zip.*"))
    text = " ".join(result.output.split())
    assert "refused" in text and "nothing was written" in text
    for expected in ("demo-real-case-5.wav", "not-a-mixture.wav", "2 channels, expected 1", "no-such-report.pdf",
                     "'MuchTooLong' has 11 characters, at most 10 allowed", "john.doe-at-example"):
        assert expected in text, expected

    built = build_package(config, package, environ={})
    codes = {f.code for f in built.errors}
    assert codes == {"missing-output", "extra-file", "wrong-channels", "missing-report", "meta-value"}
    assert not built.written


def test_refuses_a_secret_from_the_environment(submission_inputs: SubmissionInputs, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sv-0123456789-abcdef"
    monkeypatch.setenv("DCASE9_TEST_SERVICE_TOKEN", secret)

    def edit(config: dict) -> None:
        config["systems"][0]["description"]["notes"] = f"captions made with key {secret}"

    config = write_config(submission_inputs, tmp_path / "work", edit)
    result = runner.invoke(app, ["package", "-c", str(config), "-o", str(tmp_path / "out.zip")])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "environment variable DCASE9_TEST_SERVICE_TOKEN" in text and "[secret]" in text
    assert secret not in result.output  # the report names the variable, never the value
    assert not (tmp_path / "out.zip").exists()


def test_a_corrected_profile_changes_the_package_without_code(submission_inputs: SubmissionInputs,
                                                              tmp_path: Path) -> None:
    text = (PROFILES_DIR / "dcase2024_task9.yaml").read_text(encoding="utf-8")
    for old, new in (("output: 'task9/{label}/eval_real/{id}.wav'", "output: 'task9/{label}/real/{file}'"),
                     ("package_subtype: PCM_16", "package_subtype: FLOAT"),
                     ("source: system.abbreviation, max_length: 10", "source: system.abbreviation, max_length: 12")):
        assert old in text
        text = text.replace(old, new)
    corrected = tmp_path / "corrected.yaml"
    corrected.write_text(text, encoding="utf-8")

    def edit(config: dict) -> None:
        config["systems"][1]["abbreviation"] = "AudioSepFT-2"  # 12 characters

    config = write_config(submission_inputs, tmp_path / "work", edit)
    package = tmp_path / "out.zip"
    result = runner.invoke(app, ["package", "-c", str(config), "-o", str(package), "--profile", str(corrected)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
        real = [n for n in names if "/real/" in n]
        assert len(real) == 24 and not any("/eval_real/" in n for n in names)
        assert sf.info(io.BytesIO(archive.read(real[0]))).subtype == "FLOAT"
        assert b"PEAK" not in archive.read(f"task9/{LABELS[1]}/real/demo-real-case-0.wav")[:200]
    data = dict(submission_inputs.data)
    assert check_package(package, profile=corrected, data=data).ok
    default = check_package(package, data=data)
    assert {"missing-output", "extra-file", "meta-value"} <= default.codes()


def test_unusable_input_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["package"])
    assert result.exit_code == 2 and "--config" in result.output
    result = runner.invoke(app, ["package", "--check", str(tmp_path / "missing.zip")])
    assert result.exit_code == 2 and "no such package file" in result.output
    (tmp_path / "not.zip").write_bytes(b"plain text, not a zip")
    result = runner.invoke(app, ["package", "--check", str(tmp_path / "not.zip")])
    assert result.exit_code == 2 and "not a readable zip archive" in result.output
    example = EXAMPLE_CONFIG.read_text()
    config = tmp_path / "submission.yaml"
    config.write_text(example.replace("  abbreviation: UNI\n", "  abbreviation: UNI\n  team: x\n"))
    team_line = example.splitlines().index("  abbreviation: UNI") + 2
    result = runner.invoke(app, ["package", "-c", str(config), "-o", str(tmp_path / "o.zip")])
    assert result.exit_code == 2
    assert f"line {team_line}, submitter.team: unknown key" in result.output


def test_labels_with_hyphens_build_and_pass(submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    """DCASE labels do not restrict the characters of a part: Xiao_HEU-HIT_task2_3 is a real one."""
    def edit(config: dict) -> None:
        config["submitter"] = {"lastname": "Xiao", "abbreviation": "HEU-HIT"}
        config["authors"][0]["lastname"] = "Xiao"
        config["authors"][0]["affiliation"]["abbreviation"] = "HEU-HIT"

    config = write_config(submission_inputs, tmp_path / "work", edit)
    result = build_package(config, tmp_path / "out.zip", environ={})
    assert result.ok, [str(f) for f in result.findings]
    labels = ["Xiao_HEU-HIT_task9_1", "Xiao_HEU-HIT_task9_2"]
    assert [s.label for s in result.systems] == labels
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        names = archive.namelist()
        meta = yaml.safe_load(archive.read(f"task9/{labels[0]}/{labels[0]}.meta.yaml"))
    assert "task9/Xiao_HEU-HIT_task9.technical_report.pdf" in names
    assert meta["submission"]["label"] == labels[0]  # folder name = file prefix = submission.label
    report = check_package(tmp_path / "out.zip", data=submission_inputs.data, environ={})
    assert report.ok and report.labels == labels


def test_meta_files_follow_the_dcase_template(submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    config = write_config(submission_inputs, tmp_path / "work")
    assert build_package(config, tmp_path / "out.zip", environ={}).ok
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        meta_1, meta_2 = (yaml.safe_load(archive.read(f"task9/{label}/{label}.meta.yaml")) for label in LABELS)
        text = archive.read(f"task9/{LABELS[0]}/{LABELS[0]}.meta.yaml").decode()
    authors = meta_1["submission"]["authors"]
    assert [a["corresponding"] for a in authors] == [True, False]  # exactly one, every author says
    assert [list(a["affiliation"]) for a in authors] == [["abbreviation", "institute", "department", "location"]] * 2
    assert authors[1]["affiliation"] == {"abbreviation": "LAB", "institute": "Example Audio Laboratory",
                                         "department": None, "location": "Sampleville, Examplia"}
    assert meta_1["system"]["description"]["input_sampling_rate"] == "16kHz"
    assert meta_1["system"]["external_datasets"] == [
        {"name": "Clotho v2", "url": "https://zenodo.org/records/4783391", "total_audio_length": None},
        {"name": "FSD50K", "url": "https://zenodo.org/records/4060432", "total_audio_length": 6498}]
    assert meta_1["system"]["source_code"].startswith("https://")
    assert "source_code" in meta_2["system"] and meta_2["system"]["source_code"] is None  # always present
    assert "source_code: null" in archive_text(tmp_path / "out.zip", LABELS[1])
    assert meta_1["system"]["complexity"] == {"total_parameters": sum(CHECKPOINT_PARAMETERS.values())}
    assert text.count("corresponding: true") == 1


def archive_text(package: Path, label: str) -> str:
    with zipfile.ZipFile(package) as archive:
        return archive.read(f"task9/{label}/{label}.meta.yaml").decode()


OLD_STYLE = """\
submitter:
  lastname: Smith
  institution: UNI
authors:
  - lastname: Smith
    firstname: Jane
    email: jane.smith@uni.example.org
    affiliation:
      institution: University of Examples
  - lastname: Doe
    firstname: John
    email: john.doe@uni.example.org
    affiliation:
      institution: University of Examples
      department: Acoustics
      location: Exampleton
"""


def test_a_config_in_the_earlier_keys_still_builds(submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    """submitter.institution and affiliation.institution are read as the template's names; no author marked
    corresponding, no abbreviation or location, a rate in Hz: still a package, with warnings."""
    def edit(config: dict) -> None:
        config.update(yaml.safe_load(OLD_STYLE))
        config["systems"][1]["description"]["input_sampling_rate"] = 32000

    config = write_config(submission_inputs, tmp_path / "work", edit)
    assert "institution: UNI" in config.read_text() and "abbreviation" not in config.read_text().split("systems:")[0]
    result = build_package(config, tmp_path / "out.zip", environ={})
    assert result.ok, [str(f) for f in result.findings]
    warnings = [f.message for f in result.findings if f.severity == "warning" and f.code == "config"]
    assert any("Jane Smith (the label's last name) is marked" in w for w in warnings)
    assert any("has no affiliation.abbreviation; the submitter's 'UNI' is written" in w for w in warnings)
    meta_1, meta_2 = (yaml.safe_load(archive_text(tmp_path / "out.zip", label)) for label in LABELS)
    authors = meta_1["submission"]["authors"]
    assert [a["corresponding"] for a in authors] == [True, False]
    assert authors[0]["affiliation"] == {"abbreviation": "UNI", "institute": "University of Examples",
                                         "department": None, "location": None}
    assert authors[1]["affiliation"]["department"] == "Acoustics"
    assert meta_2["system"]["description"]["input_sampling_rate"] == "32kHz"
    # Both names at once is a mistake, not an alias.
    both = tmp_path / "both.yaml"
    both.write_text(config.read_text().replace("  institution: UNI", "  institution: UNI\n  abbreviation: UNI"))
    with pytest.raises(ConfigError, match="give 'abbreviation' \\(or its earlier name 'institution'\\), not both"):
        load_submission_config(both)


def test_template_key_paths_are_compared_when_building(submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    config = write_config(submission_inputs, tmp_path / "work")
    template = tmp_path / "template.yaml"
    template.write_text(HAND_MADE_TEMPLATE)
    result = build_package(config, tmp_path / "out.zip", environ={}, template=template)
    assert result.ok, [str(f) for f in result.errors]
    extra = [(f.entry, f.message.split(":")[0]) for f in result.findings if f.code == "template-extra"]
    assert {"system.pretrained_models", "system.description.separation_model"} <= {path for _, path in extra}
    assert len(extra) == len(set(extra))  # listed once, though the pre-check and the check both compare
    assert all(f.severity == "warning" for f in result.findings if f.code == "template-extra")

    # The template asks for more than we write: each missing key path is an error, nothing is written.
    template.write_text(HAND_MADE_TEMPLATE.replace("    total_parameters: 1000\n",
                                                   "    total_parameters: 1000\n    macs: 5\n")
                        .replace("        location: City, Country\n",
                                 "        location: City, Country\n        country: XX\n"))
    result = runner.invoke(app, ["package", "-c", str(config), "-o", str(tmp_path / "again.zip"),
                                 "--template", str(template)])
    assert result.exit_code == 1 and not (tmp_path / "again.zip").exists()
    text = " ".join(result.output.split())
    assert "system.complexity.macs: in the template, missing here [template-missing]" in text
    for label in LABELS:  # every author of every system, by index
        assert f"task9/{label}/{label}.meta.yaml" in text
    assert "submission.authors.1.affiliation.country: in the template, missing here" in text
    (tmp_path / "broken.yaml").write_text("- a list, not a template\n")
    result = runner.invoke(app, ["package", "-c", str(config), "-o", str(tmp_path / "x.zip"),
                                 "--template", str(tmp_path / "broken.yaml")])
    assert result.exit_code == 2 and "a meta template is a YAML mapping" in result.output


def test_a_missing_checkpoint_is_one_finding_not_five(submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    """The parameter count cannot be made: that is said once, not again as a missing meta field of a meta
    file that was never written."""
    def edit(config: dict) -> None:
        config["systems"][0]["parameters"] = {"checkpoints": [str(tmp_path / "gone.ckpt")]}

    built = build_package(write_config(submission_inputs, tmp_path / "work", edit), tmp_path / "out.zip", environ={})
    codes = [f.code for f in built.errors]
    assert codes == ["parameters"], [str(f) for f in built.errors]
