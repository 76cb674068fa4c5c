"""`dcase9 package --check` on broken packages, each made by editing a good one: every failure is
reported with its named reason (and entry, and YAML line where there is one)."""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from package_support import HAND_MADE_TEMPLATE, SubmissionInputs, rewrite_zip, wav_bytes, write_config
from typer.testing import CliRunner

from dcase9.submission import build_package, check_package
from dcase9.submission.check import unsafe_name_reason
from dcase9.cli import app

runner = CliRunner()
L1, L2 = "Smith_UNI_task9_1", "Smith_UNI_task9_2"
T1, T2 = f"task9/{L1}", f"task9/{L2}"  # the systems' folders
META_1 = f"{T1}/{L1}.meta.yaml"
REPORT = "task9/Smith_UNI_task9.technical_report.pdf"
OUTPUT = f"{T1}/eval_real/demo-real-case-3.wav"
FAKE_OPENAI_KEY = "sk-" + "A1b2C3d4E5f6" * 4


@pytest.fixture(scope="module")
def good_package(submission_inputs: SubmissionInputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good-package")
    result = build_package(write_config(submission_inputs, folder), folder / "good.zip", environ={})
    assert result.ok, [str(f) for f in result.findings]
    return folder / "good.zip"


def read_entry(package: Path, name: str) -> bytes:
    with zipfile.ZipFile(package) as archive:
        return archive.read(name)


def meta_text(package: Path, label: str = L1) -> str:
    return read_entry(package, f"task9/{label}/{label}.meta.yaml").decode()


def with_meta_edit(old: str, new: str) -> Callable[[Path, Path], Path]:
    def make(good: Path, target: Path) -> Path:
        text = meta_text(good)
        assert old in text
        return rewrite_zip(good, target, replace={META_1: text.replace(old, new, 1).encode()})
    return make


def five_systems(good: Path, target: Path) -> Path:
    """Systems 3, 4 and 5: copies of system 1 under new labels (meta label edited too)."""
    with zipfile.ZipFile(good) as archive:
        system_1 = {n: archive.read(n) for n in archive.namelist() if n.startswith(f"{T1}/")}
    added = {}
    for index in (3, 4, 5):
        label = f"Smith_UNI_task9_{index}"
        for name, data in system_1.items():
            added[name.replace(L1, label)] = data.replace(L1.encode(), label.encode())
    return rewrite_zip(good, target, add=added)


def resampled_output(rate: int, channels: int = 1, seconds: float = 10.0) -> Callable[[Path, Path], Path]:
    def make(good: Path, target: Path) -> Path:
        samples = np.zeros((int(rate * seconds), channels), dtype=np.float32).squeeze()
        return rewrite_zip(good, target, replace={OUTPUT: wav_bytes(samples, rate)})
    return make


# The broken packages the issue names: (case, how to break the good package, reason, entry).
ISSUE_CASES = [
    ("missing output", lambda g, t: rewrite_zip(g, t, drop=lambda n: n == OUTPUT), "missing-output", OUTPUT),
    ("extra file", lambda g, t: rewrite_zip(g, t, add={f"{T1}/notes.txt": b"todo"}), "extra-file", f"{T1}/notes.txt"),
    ("wrong sample rate", resampled_output(8000), "wrong-sample-rate", OUTPUT),
    ("stereo", resampled_output(16000, channels=2), "wrong-channels", OUTPUT),
    ("bad label", lambda g, t: rewrite_zip(g, t, rename=lambda n: n.replace(L2, "smith-uni_task9_2")),
     "bad-label", "task9/smith-uni_task9_2/smith-uni_task9_2.meta.yaml"),
    ("5 systems", five_systems, "too-many-systems", None),
    ("malformed YAML", with_meta_edit("  name: ", "  name: [unclosed, "), "yaml-syntax", META_1),
    ("missing PDF", lambda g, t: rewrite_zip(g, t, drop=lambda n: n == REPORT), "missing-report", REPORT),
    ("../ entry", lambda g, t: rewrite_zip(g, t, add={f"{T1}/../../evil.sh": b"rm -rf ~"}), "unsafe-path",
     f"{T1}/../../evil.sh"),
    ("API key in a YAML field", with_meta_edit("  name: ", f"  name: key {FAKE_OPENAI_KEY} "), "secret", META_1),
]


@pytest.mark.parametrize("case, make, reason, entry", ISSUE_CASES, ids=[c[0] for c in ISSUE_CASES])
def test_broken_package_fails_with_the_named_reason(case: str, make: Callable[[Path, Path], Path], reason: str,
                                                    entry: str | None, good_package: Path, tmp_path: Path,
                                                    submission_inputs: SubmissionInputs) -> None:
    broken = make(good_package, tmp_path / "broken.zip")
    data = submission_inputs.data
    result = runner.invoke(app, ["package", "--check", str(broken), "--data-synth", str(data["eval-synth"]),
                                 "--data-real", str(data["eval-real"]), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert not report["ok"]
    matching = [f for f in report["findings"] if f["code"] == reason and f["severity"] == "error"]
    assert matching, report["findings"]
    assert any(f["entry"] == entry for f in matching), matching
    # The people's view lists the same reason.
    people = runner.invoke(app, ["package", "--check", str(broken), "--data-synth", str(data["eval-synth"]),
                                 "--data-real", str(data["eval-real"])])
    assert people.exit_code == 1 and f"[{reason}]" in people.output and "FAILS" in people.output


def test_the_good_package_passes(good_package: Path, submission_inputs: SubmissionInputs) -> None:
    report = check_package(good_package, data=submission_inputs.data, environ={})
    assert report.ok and report.findings == []
    assert report.labels == [L1, L2] and report.entries == 1 + 2 * (1 + 16 + 12)


def check(package: Path, inputs: SubmissionInputs, **kwargs) -> list:
    report = check_package(package, data=inputs.data, environ=kwargs.pop("environ", {}), **kwargs)
    assert not report.ok
    return report.errors


def test_malformed_yaml_names_its_line(good_package: Path, submission_inputs: SubmissionInputs,
                                       tmp_path: Path) -> None:
    text = meta_text(good_package)
    line = text.splitlines().index(f"  label: {L1}") + 1
    broken = rewrite_zip(good_package, tmp_path / "b.zip",
                         replace={META_1: text.replace(f"  label: {L1}", f"  label: {L1}\n bad indent: x").encode()})
    [finding] = check(broken, submission_inputs)
    assert finding.code == "yaml-syntax" and finding.entry == META_1 and finding.line == line + 1


def test_secrets_are_named_not_shown(good_package: Path, submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    text = meta_text(good_package)
    line = text.splitlines().index("  abbreviation: Baseline") + 1
    secret_value = "s3cr3t-value-for-tests"
    edited = text.replace("  abbreviation: Baseline", "  abbreviation: Baseline\n  notes: " + secret_value)
    broken = rewrite_zip(good_package, tmp_path / "b.zip", replace={META_1: edited.encode()},
                         add={f"{T1}/key.txt": FAKE_OPENAI_KEY.encode()})
    errors = check(broken, submission_inputs, environ={"MY_SERVICE_TOKEN": secret_value, "SHORT_KEY": "abc",
                                                       "HOME": secret_value})
    secrets = [f for f in errors if f.code == "secret"]
    assert [(f.entry, f.line) for f in secrets] == [(META_1, line + 1), (f"{T1}/key.txt", None)]
    assert "environment variable MY_SERVICE_TOKEN" in secrets[0].message
    assert "openai-api-key" in secrets[1].message
    assert all(secret_value not in str(f) and FAKE_OPENAI_KEY not in str(f) for f in errors)


@pytest.mark.parametrize("old, new, code, path, line_text", [
    ("  abbreviation: Baseline", "  abbreviation: BaselineSystem", "meta-value", "submission.abbreviation",
     "  abbreviation: BaselineSystem"),
    (f"  label: {L1}", f"  label: {L2}", "meta-value", "submission.label", f"  label: {L2}"),
    ("    total_parameters: 78", "    total_parameters: many", "meta-type", "system.complexity.total_parameters",
     "    total_parameters: many"),
    ("    total_parameters: 78", "    total_parameters: true", "meta-type", "system.complexity.total_parameters",
     "    total_parameters: true"),
    ("    email: jane.smith@uni.example.org", "    email: ''", "meta-missing", "submission.authors.0.email",
     "    email: ''"),
    ("    sisdr: ", "    si_sdr: ", "meta-missing", "results.development_dataset.sisdr",
     "  development_dataset:"),  # an absent key is placed at its parent
])
def test_meta_fields_are_validated_against_the_profile(old: str, new: str, code: str, path: str, line_text: str,
                                                       good_package: Path, submission_inputs: SubmissionInputs,
                                                       tmp_path: Path) -> None:
    broken = with_meta_edit(old, new)(good_package, tmp_path / "b.zip")
    [finding] = check(broken, submission_inputs)
    assert (finding.code, finding.entry) == (code, META_1)
    assert finding.message.startswith(path + ":")
    assert finding.line == meta_text(broken).splitlines().index(line_text) + 1


def test_damaged_contents(good_package: Path, submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    short = wav_bytes(np.zeros(16000 * 5, dtype=np.float32))
    with_nan = wav_bytes(np.full(160000, np.nan, dtype=np.float32), subtype="FLOAT")
    pcm8 = wav_bytes(np.zeros(160000, dtype=np.float32), subtype="PCM_U8")
    broken = rewrite_zip(good_package, tmp_path / "b.zip", replace={
        OUTPUT: short,
        f"{T1}/eval_real/demo-real-case-4.wav": with_nan,
        f"{T1}/eval_real/demo-real-case-5.wav": b"RIFF not really audio",
        f"{T1}/eval_real/demo-real-case-6.wav": pcm8,
        REPORT: b"<html>not a pdf</html>",
    })
    by_entry = {(f.entry, f.code) for f in check(broken, submission_inputs)}
    assert by_entry == {
        (OUTPUT, "wrong-length"),
        (f"{T1}/eval_real/demo-real-case-4.wav", "non-finite-output"),
        (f"{T1}/eval_real/demo-real-case-5.wav", "unreadable-output"),
        (f"{T1}/eval_real/demo-real-case-6.wav", "wrong-format"),
        (REPORT, "bad-report"),
    }


def test_a_corrupt_entry_fails_its_crc(good_package: Path, submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    raw = bytearray(good_package.read_bytes())
    with zipfile.ZipFile(good_package) as archive:
        info = archive.getinfo(OUTPUT)
    name_length, extra_length = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    data_start = info.header_offset + 30 + name_length + extra_length
    raw[data_start + info.compress_size // 2] ^= 0xFF
    broken = tmp_path / "b.zip"
    broken.write_bytes(bytes(raw))
    [finding] = check(broken, submission_inputs)
    assert (finding.code, finding.entry) == ("corrupt-entry", OUTPUT)


def test_entry_names_and_kinds(good_package: Path, submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    link = zipfile.ZipInfo(f"{T1}/link.wav")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.warns(UserWarning, match="Duplicate name"):
        broken = rewrite_zip(good_package, tmp_path / "b.zip", add={
            "/etc/evil": b"x", "C:/evil": b"x", "Smith_UNI_task9_1\\evil.wav": b"x", link: b"/etc/passwd",
            f"{T1}/eval_real/demo-real-case-0.wav": read_entry(good_package, f"{T1}/eval_real/demo-real-case-0.wav"),
        })
    found = {(f.code, f.entry) for f in check(broken, submission_inputs)}
    assert found == {("unsafe-path", "/etc/evil"), ("unsafe-path", "C:/evil"),
                     ("unsafe-path", "Smith_UNI_task9_1\\evil.wav"), ("symlink", f"{T1}/link.wav"),
                     ("duplicate-entry", f"{T1}/eval_real/demo-real-case-0.wav")}


@pytest.mark.parametrize("name, reason", [
    ("a/b.wav", None), ("../x", "contains '..'"), ("a/../../x", "contains '..'"), ("/abs", "is an absolute path"),
    ("D:\\x", "contains a backslash"), ("D:/x", "starts with a drive letter"), ("a//b", "has an empty or '.' path component"),
    ("./a", "has an empty or '.' path component"), ("a\x00b", "contains a control character"),
])
def test_unsafe_name_reasons(name: str, reason: str | None) -> None:
    assert unsafe_name_reason(name) == reason


def test_team_and_index_consistency(good_package: Path, submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    broken = rewrite_zip(good_package, tmp_path / "b.zip", rename=lambda n: n.replace(L2, "Jones_UNI_task9_1"),
                         replace={f"{T2}/{L2}.meta.yaml": meta_text(good_package, L2).replace(L2, "Jones_UNI_task9_1")
                                  .encode()})
    codes = {f.code for f in check(broken, submission_inputs)}
    assert codes == {"label-prefix", "duplicate-index", "missing-report"}  # Jones_UNI_task9's report is missing


def test_without_data_outputs_are_counted(good_package: Path) -> None:
    report = check_package(good_package, environ={})
    assert [f.code for f in report.warnings] == ["no-data"]
    assert {f.code for f in report.errors} == {"output-count"}  # the demo sets are smaller than the official
    assert any("16 eval-synth outputs, the official set has 3000" in f.message for f in report.errors)


def test_every_entry_lies_under_the_task_folder(good_package: Path, submission_inputs: SubmissionInputs,
                                               tmp_path: Path) -> None:
    """The official validator reads only entries under the task folder: one outside is named."""
    broken = rewrite_zip(good_package, tmp_path / "b.zip", add={"README.txt": b"hello", f"{L1}/x.wav": b"x"})
    found = {(f.code, f.entry) for f in check(broken, submission_inputs)}
    assert found == {("outside-task-folder", "README.txt"), ("outside-task-folder", f"{L1}/x.wav")}
    # The layout dcase9 wrote before (no task9/ folder) fails: every entry is outside.
    old_layout = rewrite_zip(good_package, tmp_path / "old.zip", rename=lambda n: n.removeprefix("task9/"))
    report = check_package(old_layout, data=submission_inputs.data, environ={})
    assert {f.code for f in report.errors} >= {"outside-task-folder", "no-systems", "missing-report"}


def test_label_folder_and_file_prefix_must_agree(good_package: Path, submission_inputs: SubmissionInputs,
                                                 tmp_path: Path) -> None:
    """The validator compares the folder name, the file prefix and submission.label."""
    wrong_file = f"{T1}/{L2}.meta.yaml"
    broken = rewrite_zip(good_package, tmp_path / "b.zip", rename=lambda n: wrong_file if n == META_1 else n)
    found = {(f.code, f.entry): f.message for f in check(broken, submission_inputs)}
    assert ("label-mismatch", wrong_file) in found and ("missing-meta", None) in found
    assert f"{L1} vs {L2}" in found[("label-mismatch", wrong_file)]
    # submission.label differing from the folder and file: named at its line.
    broken = with_meta_edit(f"  label: {L1}", "  label: Smith_UNI_task9_3")(good_package, tmp_path / "c.zip")
    [finding] = check(broken, submission_inputs)
    assert finding.code == "meta-value" and finding.message.startswith("submission.label:")
    assert f"should be '{L1}'" in finding.message


@pytest.mark.parametrize("label, reason", [
    ("Smith_UNI_task9_7", "the index '7' is not a number from 1 to 4"),
    ("Smith_UNI_task1_2", "part 3 is 'task1'; it must be 'task9'"),
    ("Smith-UNI_task9_2", "has 3 '_'-separated part(s); a label has 4"),
])
def test_label_structure_is_checked_part_by_part(label: str, reason: str, good_package: Path,
                                                 submission_inputs: SubmissionInputs, tmp_path: Path) -> None:
    broken = rewrite_zip(good_package, tmp_path / "b.zip", rename=lambda n: n.replace(L2, label),
                         replace={f"{T2}/{L2}.meta.yaml": meta_text(good_package, L2).replace(L2, label).encode()})
    bad = [f for f in check(broken, submission_inputs) if f.code == "bad-label"]
    assert len(bad) == 1 and bad[0].entry == f"task9/{label}/{label}.meta.yaml"
    assert reason in bad[0].message


def test_exactly_one_corresponding_author(good_package: Path, submission_inputs: SubmissionInputs,
                                          tmp_path: Path) -> None:
    broken = with_meta_edit("    corresponding: false", "    corresponding: true")(good_package, tmp_path / "b.zip")
    [finding] = check(broken, submission_inputs)
    assert finding.code == "meta-value"
    assert finding.message == "submission.authors: exactly one item must have corresponding: true (items 0, 1 have it)"
    assert finding.line == meta_text(broken).splitlines().index("  authors:") + 1


def test_check_compares_with_the_template(good_package: Path, submission_inputs: SubmissionInputs,
                                          tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(HAND_MADE_TEMPLATE.replace("  source_code: !!null\n",
                                                   "  source_code: !!null\n  energy_consumption:\n    training: 1\n"))
    data = submission_inputs.data
    result = runner.invoke(app, ["package", "--check", str(good_package), "--data-synth", str(data["eval-synth"]),
                                 "--data-real", str(data["eval-real"]), "--template", str(template), "--json"])
    assert result.exit_code == 1, result.output
    findings = json.loads(result.output)["findings"]
    missing = [(f["entry"], f["message"], f["severity"]) for f in findings if f["code"] == "template-missing"]
    assert missing == [(f"{T}/{label}.meta.yaml", "system.energy_consumption: in the template, missing here", "error")
                       for T, label in ((T1, L1), (T2, L2))]
    meta = meta_text(good_package)
    extra = {f["message"]: f["line"] for f in findings if f["code"] == "template-extra" and f["entry"] == META_1}
    assert extra["system.pretrained_models: not in the template"] == meta.splitlines().index("  pretrained_models:") + 1
    assert all(f["severity"] == "warning" for f in findings if f["code"] == "template-extra")
    # The template as written: no missing key, the package passes (with warnings for our extra keys).
    template.write_text(HAND_MADE_TEMPLATE)
    assert check_package(good_package, data=data, environ={}, template=template).ok
