"""The pieces under `dcase9 package`: the profile, meta values and rules, parameter count,
development results, secret scanning and WAV conversion."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from package_support import CHECKPOINT_EXCLUDED, CHECKPOINT_PARAMETERS, checkpoint_state_dict

from dcase9.submission import count_checkpoint_parameters, count_parameters, load_profile
from dcase9.submission.meta import build_meta, read_development_results, validate_meta
from dcase9.submission.outputs import convert_wav, without_chunk
from dcase9.submission.profile import PROFILES_DIR, FieldRule, Template
from dcase9.submission.secrets import SecretScanner, pdf_strings
from dcase9.errors import ConfigError

PROFILE = load_profile()


def test_the_shipped_profile_encodes_the_task_rules() -> None:
    assert PROFILE.max_systems == 4 and PROFILE.audio.sample_rate == 16000 and PROFILE.audio.channels == 1
    assert PROFILE.parse_label("Smith_UNI_task9_4") == {"lastname": "Smith", "institution": "UNI", "index": "4"}
    assert PROFILE.prefix_of("Smith_UNI_task9_2") == "Smith_UNI_task9"
    assert PROFILE.templates.report.format(prefix="Smith_UNI_task9") == "task9/Smith_UNI_task9.technical_report.pdf"
    assert PROFILE.layout.task_folder == "task9"


# DCASE: four '_'-separated parts, the third task9, index 1-4, any characters in the parts
# (real labels carry hyphens). Each refusal says which part is wrong.
@pytest.mark.parametrize("label, problem", [
    ("Xiao_HEU-HIT_task9_1", None),
    ("Kim_GIST-AunionAI_task9_4", None),
    ("smith_UNI_task9_1", None),
    ("O'Brien_Uni-Köln_task9_2", None),
    ("Smith_UNI_task9_5", "the index '5' is not a number from 1 to 4"),
    ("Smith_UNI_task1_1", "part 3 is 'task1'; it must be 'task9'"),
    ("Smith_UNI_X_task9_1", "has 5 '_'-separated part(s); a label has 4"),
    ("Smith__task9_1", "part 2 (institution) is empty"),
    ("Smith_U NI_task9_1", "part 2 (institution) contains ' '"),
    ("Smith_UNI_task9_1.zip", "part 4 (index) contains '.'"),
])
def test_labels_follow_the_dcase_structure(label: str, problem: str | None) -> None:
    found = PROFILE.label_problem(label)
    assert found == problem if problem is None else found is not None and found.startswith(problem)
    assert (PROFILE.parse_label(label) is None) == (problem is not None)
    assert PROFILE.meta["submission"].fields["abbreviation"].max_length == 10  # type: ignore[index]


def test_templates_match_what_they_format() -> None:
    template = Template("{label}/{label}.meta.yaml", ("label",), "t")
    assert template.match(template.format(label="A_B_task9_1")) == {"label": "A_B_task9_1"}
    assert template.match("A_B_task9_1/A_B_task9_2.meta.yaml") is None  # the same label twice
    assert template.match("x/A/A.meta.yaml") is None  # a placeholder is one path segment
    with pytest.raises(ValueError, match=r"uses \{lable\}"):
        Template("{lable}/x", ("label",), "layout.meta")


@pytest.mark.parametrize("old, new, message", [
    ("meta: 'task9/{label}/{label}.meta.yaml'", "meta: 'task9/{lable}/{label}.meta.yaml'", "uses {lable}"),
    ("(?P<index>[1-4])", "([1-4])", "named groups index"),
    ("output: 'task9/{label}/eval_real/{id}.wav'", "output: 'task9/eval_real/{id}.wav'", "must contain {label}"),
    ("output: 'task9/{label}/eval_synth/{id}.wav'", "output: 'task9/{label}/eval_synth/x.wav'",
     "must contain one of {id}"),
    ("meta: 'task9/{label}/{label}.meta.yaml'", "meta: '{label}/{label}.meta.yaml'",
     "meta must start with the task folder 'task9/'"),
    ("package_subtype: PCM_16", "package_subtype: PCM_24", "not one of accepted_subtypes"),
    ("max_systems: 4", "max_systems: 4\nmax_sytems: 5", "max_sytems: unknown key"),
])
def test_a_broken_profile_is_refused_with_its_line(old: str, new: str, message: str, tmp_path: Path) -> None:
    text = (PROFILES_DIR / "dcase2024_task9.yaml").read_text()
    assert old in text
    path = tmp_path / "profile.yaml"
    path.write_text(text.replace(old, new))
    with pytest.raises(ConfigError, match="line [0-9]+") as raised:
        load_profile(path)
    assert message in str(raised.value)
    with pytest.raises(ConfigError, match="unknown submission profile 'nope'"):
        load_profile("nope")


def test_parameter_count_leaves_out_statistics_fixed_transforms_and_integers(tmp_path: Path) -> None:
    exclude = PROFILE.parameter_count.exclude
    count = count_parameters(checkpoint_state_dict(), exclude)
    assert count.total == sum(CHECKPOINT_PARAMETERS.values())
    assert count.by_prefix == CHECKPOINT_PARAMETERS and count.excluded == CHECKPOINT_EXCLUDED
    # A module at the top level is excluded too ('*.stft.*' is matched against '.stft...').
    assert count_parameters({"stft.conv_real.weight": torch.ones(5), "w": torch.ones(2)}, exclude).total == 2
    # Lightning files (state_dict inside) and plain state dicts, summed over files.
    torch.save({"state_dict": checkpoint_state_dict(), "epoch": 1}, tmp_path / "a.ckpt")
    torch.save({"extra.weight": torch.ones(3, 3)}, tmp_path / "b.pt")
    both = count_checkpoint_parameters([tmp_path / "a.ckpt", tmp_path / "b.pt"], exclude)
    assert both.total == sum(CHECKPOINT_PARAMETERS.values()) + 9 and both.by_prefix["extra"] == 9


def _values(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "label": "Smith_UNI_task9_1", "system.name": "A system", "system.abbreviation": "Sys",
        "authors": [{"lastname": "Smith", "firstname": "Jane", "email": "j@x.org", "corresponding": True,
                     "affiliation": {"abbreviation": "UNI", "institute": "Uni"}}],
        "system.description": {"model": "ResUNet30"}, "system.total_parameters": 1234,
        "system.external_data": [], "system.pretrained_models": [{"name": "CLAP", "url": "https://x.org/clap"}],
        "audio.sample_rate": "16kHz", "results.sdr": 5.70812, "results.sdri": 5.6734, "results.sisdr": 3.8621,
    }
    values.update(changes)
    return values


def test_meta_is_built_from_the_profile_sources_and_validates() -> None:
    document = build_meta(PROFILE.meta, _values())
    assert list(document) == ["submission", "system", "results"]
    assert document["system"]["description"] == {"input_sampling_rate": "16kHz", "model": "ResUNet30"}
    assert document["results"]["development_dataset"] == {"sdr": 5.708, "sdri": 5.673, "sisdr": 3.862}
    # Optional and not given: the key stays, as null (the DCASE template keeps every key).
    assert document["system"]["source_code"] is None
    assert document["submission"]["authors"][0]["affiliation"] == {
        "abbreviation": "UNI", "institute": "Uni", "department": None, "location": None}
    assert validate_meta(document, PROFILE.meta, entry="m", context={"label": "Smith_UNI_task9_1"}) == []
    # A value in the description wins over the profile's default.
    given = build_meta(PROFILE.meta, _values(**{"system.description": {"input_sampling_rate": "32kHz"}}))
    assert given["system"]["description"]["input_sampling_rate"] == "32kHz"


def test_meta_problems_name_key_path_and_line() -> None:
    document = build_meta(PROFILE.meta, _values(**{"system.abbreviation": "ElevenChars", "results.sisdr": None}))
    document["submission"]["authors"][0]["corresponding"] = "yes"
    text = yaml.safe_dump(document, sort_keys=False)
    findings = validate_meta(yaml.safe_load(text), PROFILE.meta, entry="m.yaml", text=text,
                             context={"label": "Other_UNI_task9_1"})
    lines = text.splitlines()
    got = {(f.code, f.message.split(":")[0], f.line) for f in findings}
    assert got == {
        ("meta-value", "submission.label", lines.index("  label: Smith_UNI_task9_1") + 1),
        ("meta-value", "submission.abbreviation", lines.index("  abbreviation: ElevenChars") + 1),
        ("meta-type", "submission.authors.0.corresponding", lines.index("    corresponding: 'yes'") + 1),
        ("meta-value", "submission.authors", lines.index("  authors:") + 1),  # no corresponding author left
        ("meta-missing", "results.development_dataset.sisdr", lines.index("  development_dataset:") + 1),
    }
    assert validate_meta([1, 2], PROFILE.meta, entry="m")[0].code == "meta-type"


def test_development_results_must_cover_the_whole_validation_set(tmp_path: Path) -> None:
    summary = {"dataset": {"kind": "validation", "mixtures": 3000}, "complete": True, "scored": 3000,
               "mean": {"sdr": 5.7, "sdri": 5.6, "sisdr": 3.8, "input_sdr": 0.1}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    means, findings = read_development_results(tmp_path, "validation")
    assert means["sdri"] == 5.6 and findings == []
    summary.update(complete=False, scored=2999, dataset={"kind": "eval-synth", "mixtures": 3000})
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    _, findings = read_development_results(tmp_path / "summary.json", "validation")
    assert [f.code for f in findings] == ["results", "results"]
    assert "eval-synth" in findings[0].message and "2999 of 3000" in findings[1].message
    _, findings = read_development_results(tmp_path / "none", "validation")
    assert "score report not found" in findings[0].message


def test_secret_scanner_names_what_it_found() -> None:
    environ = {"OPENAI_API_KEY": "abc123-real-key", "GH_TOKEN": "short", "PATH": "abc123-real-key-2",
               "db_password": "hunter2-but-longer"}
    scanner = SecretScanner(PROFILE.secrets, environ)
    assert [name for name, _ in scanner.environment] == ["OPENAI_API_KEY", "db_password"]
    hits = scanner.scan(b"x = hunter2-but-longer; token hf_" + b"a" * 34 + b"; AKIA" + b"B" * 16)
    assert [h.what for h in hits] == ["the value of environment variable db_password",
                                      "text in the huggingface-token format", "text in the aws-access-key-id format"]
    assert hits[0].offset == 4
    assert scanner.scan(b"sk-short and hf_short and plain text") == []


def test_conversion_quantises_clips_and_is_reproducible(tmp_path: Path) -> None:
    samples = np.array([0.0, 0.5, -0.25, 1.5, -1.0, 1 / 65536], dtype=np.float32)
    path = tmp_path / "e.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    pcm = convert_wav(path, "PCM_16")
    assert pcm.clipped == 1 and pcm.peak == 1.5 and pcm.data == convert_wav(path, "PCM_16").data
    back, _ = sf.read(io.BytesIO(pcm.data), dtype="int16")
    assert back.tolist() == [0, 16384, -8192, 32767, -32768, 0]
    as_float = convert_wav(path, "FLOAT")
    assert b"PEAK" not in as_float.data and sf.read(io.BytesIO(as_float.data), dtype="float32")[0].tolist() == \
        samples.tolist()
    sf.write(path, np.array([np.nan, 0], dtype=np.float32), 16000, subtype="FLOAT")
    assert convert_wav(path, "PCM_16").non_finite
    with pytest.raises(ValueError):
        without_chunk(b"not a wav", b"PEAK")


def test_field_rules_are_checked_when_the_profile_is_read() -> None:
    with pytest.raises(ValueError, match="'fields' belongs to a mapping"):
        FieldRule.model_validate({"type": "string", "fields": {}})
    with pytest.raises(ValueError, match="pattern is not a regular expression"):
        FieldRule.model_validate({"type": "string", "pattern": "("})


def _pdf(*streams: bytes, info: bytes = b"") -> bytes:
    body = b"".join(b"%d 0 obj\n<< /Filter /FlateDecode >>\nstream\n" % (i + 1) + s + b"\nendstream\nendobj\n"
                    for i, s in enumerate(streams))
    return b"%PDF-1.5\n" + body + b"9 0 obj\n<< " + info + b" >>\nendobj\n%%EOF\n"


def test_secrets_hidden_in_a_pdf_are_found() -> None:
    key = "hf_" + "Q" * 34
    scanner = SecretScanner(PROFILE.secrets, {"MY_TOKEN": "tok-0123456789"})
    # pdflatex: page text in a FlateDecode stream, words split by kerning inside a TJ array.
    kerned = zlib.compress(b"BT [(" + key[:9].encode() + b")-30(" + key[9:].encode() + b")] TJ ET")
    # A UTF-16 text string with a byte order mark, as a literal with octal escapes.
    utf16 = b"(\\376\\377" + b"".join(b"\\000" + bytes([c]) for c in b"tok-0123456789") + b")"
    scan = scanner.scan_entry(_pdf(kerned, info=b"/Title " + utf16))
    assert {(h.what, h.where) for h in scan.hits} == {
        ("text in the huggingface-token format", "in a PDF text string in a compressed PDF stream at byte 51"),
        ("the value of environment variable MY_TOKEN", "in a PDF text string")}
    assert scanner.scan(_pdf(kerned, info=b"/Title " + utf16)) == []  # the bytes alone hide both
    assert pdf_strings(b"[(a\\)b)-5<FEFF00630064>] (x\\\ny) <4142>") == b"a)bcd\nxy\nAB"


def test_pdf_decompression_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import dcase9.submission.secrets as secrets

    monkeypatch.setattr(secrets, "PDF_STREAM_LIMIT", 2**20)
    key = b"AKIA" + b"Z" * 16
    scanner = SecretScanner(PROFILE.secrets, {})
    early = _pdf(zlib.compress(b"BT (" + key + b") Tj ET" + b" " * 2**21))
    late = _pdf(zlib.compress(b" " * 2**21 + b"BT (" + key + b") Tj ET"))
    assert [h.what for h in scanner.scan_entry(early).hits] == ["text in the aws-access-key-id format"]
    scan = scanner.scan_entry(late)
    assert scan.hits == [] and len(scan.limits) == 1  # not searched past the bound, and it says so
    assert "decompresses to more than 1,048,576 bytes" in scan.limits[0]
