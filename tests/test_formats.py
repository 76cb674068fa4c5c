"""Readers of the three evaluation-set layouts, on the official files and on every quirk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dcase9.data.formats import SetKind, is_safe_name, locate, open_dataset, parse_dataset
from dcase9.errors import DataError


def codes(issues: list, severity: str | None = None) -> list[str]:
    return [i.code for i in issues if severity is None or i.severity == severity]


def validation_folder(tmp_path: Path, csv_text: str, clips: list[str] | None = None) -> Path:
    """A validation folder with the given CSV text and a JSON listing `clips` (default: a..e)."""
    import json

    clips = clips or ["a", "b", "c", "d", "e"]
    (tmp_path / "lass_validation.json").write_text(json.dumps(
        [{"Index": c, "Tags": ["t"], "Captions": ["x y", "y z", "z w"]} for c in clips]))
    (tmp_path / "lass_synthetic_validation.csv").write_text(csv_text, encoding="utf-8", newline="")
    return tmp_path


# --- the official files, exactly as published ---------------------------------------------------


def test_official_validation_metadata(official_dir: Path, tmp_path: Path) -> None:
    for name in ("lass_validation.json", "lass_synthetic_validation.csv"):
        shutil.copy(official_dir / name, tmp_path / name)
    dataset, issues = parse_dataset(tmp_path)
    assert dataset.kind is SetKind.VALIDATION
    assert len(dataset.mixtures) == 3000
    assert len({m.id for m in dataset.mixtures}) == 3000
    assert dataset.columns == {"source": "source", "noise": "noise", "snr": "snr", "query": "caption"}
    assert len(dataset.clips) == 1000
    # The only findings are the published caption "0" (an integer in the JSON, '0' in the CSV).
    assert codes(issues, "error") == []
    assert sorted(codes(issues)) == ["caption-not-text", "caption-not-text"]
    first = dataset.mixtures[0]
    assert first.id == "692211_12333864-hq__701692_6014995-hq__10"
    assert first.query == "Someone is playing a kind of musical instrument, which makes a buzzing sound."
    assert (first.source, first.noise, first.snr, first.row) == ("692211_12333864-hq", "701692_6014995-hq", 10, 2)
    # Captions are kept verbatim (trailing spaces included): the evaluator embeds them as written.
    assert any(m.query.endswith(" ") for m in dataset.mixtures)
    # The same (source, noise) pair appears twice with different SNRs: ids stay distinct.
    pair = [m for m in dataset.mixtures if m.source == "705807_1089955-hq" and m.noise == "705959_1050391-hq"]
    assert sorted(m.snr for m in pair) == [-6, 9]


def test_official_real_evaluation_metadata(official_dir: Path, tmp_path: Path) -> None:
    shutil.copy(official_dir / "lass_real_evaluation.csv", tmp_path)
    dataset, issues = parse_dataset(tmp_path)
    assert dataset.kind is SetKind.EVAL_REAL
    assert issues == []
    assert len(dataset.mixtures) == 200
    assert dataset.columns == {"file": "file_name", "query": "query"}
    assert dataset.mixtures[0].id == "test-real-case-0"
    assert dataset.mixtures[0].query == "the fire crackles in the wind, creating a rhythmic and soothing sound."
    assert not any("\r" in m.query for m in dataset.mixtures)  # CRLF line ends are not part of queries


def test_csv_file_as_argument(official_dir: Path, tmp_path: Path) -> None:
    shutil.copy(official_dir / "lass_real_evaluation.csv", tmp_path)
    kind, csv_path, root = locate(tmp_path / "lass_real_evaluation.csv")
    assert (kind, csv_path.name, root) == (SetKind.EVAL_REAL, "lass_real_evaluation.csv", tmp_path)


# --- quirks and faults ------------------------------------------------------------------------------


def test_header_with_spaces_bom_crlf_and_quoted_commas(tmp_path: Path) -> None:
    text = '\ufeffsource, noise, snr, caption\r\na,b,3,"A dog barks, then a cat meows."\r\nb,c,-4,plain caption\r\n\r\n'
    dataset, issues = parse_dataset(validation_folder(tmp_path, text))
    assert codes(issues) == []
    assert [m.query for m in dataset.mixtures] == ["A dog barks, then a cat meows.", "plain caption"]
    assert [m.snr for m in dataset.mixtures] == [3, -4]


def test_unquoted_comma_in_caption_is_joined_with_a_warning(tmp_path: Path) -> None:
    text = "source, noise, snr, caption\na,b,3,A dog barks, then a cat meows.\n"
    dataset, issues = parse_dataset(validation_folder(tmp_path, text))
    assert codes(issues) == ["caption-unquoted-comma"]
    assert dataset.mixtures[0].query == "A dog barks, then a cat meows."
    assert issues[0].row == 2


@pytest.mark.parametrize("row, code, field", [
    ("a,b,3,", "caption-empty", "caption"),
    ("a,b,3,   ", "caption-empty", "caption"),
    ("a,b,loud,x y", "snr-not-number", "snr"),
    ("a,b,2.5,x y", "snr-not-integer", "snr"),
    ("a,zz,3,x y", "unknown-clip", "noise"),
    ("zz,b,3,x y", "unknown-clip", "source"),
    ("../a,b,3,x y", "unsafe-name", "source"),
    ("a,/etc/passwd,3,x y", "unsafe-name", "noise"),
    ("a,b,3", "row-width", None),
])
def test_validation_row_faults(tmp_path: Path, row: str, code: str, field: str | None) -> None:
    text = f"source, noise, snr, caption\nc,d,1,fine caption\n{row}\n"
    dataset, issues = parse_dataset(validation_folder(tmp_path, text))
    errors = [i for i in issues if i.severity == "error"]
    assert [e.code for e in errors] == [code]
    assert errors[0].row == 3 and errors[0].field == field
    assert errors[0].file.endswith("lass_synthetic_validation.csv")
    assert [m.row for m in dataset.mixtures] == [2]  # the good row survives
    with pytest.raises(DataError, match=code):
        open_dataset(tmp_path)


def test_warnings_do_not_block(tmp_path: Path) -> None:
    text = "source, noise, snr, caption, extra\na,b,20,123,x\nc,c,1,fine caption,y\n"
    dataset, issues = parse_dataset(validation_folder(tmp_path, text))
    assert sorted(codes(issues, "warning")) == ["caption-not-text", "column-unknown", "noise-is-source", "snr-range"]
    assert codes(issues, "error") == []
    assert len(open_dataset(tmp_path).mixtures) == 2


def test_duplicate_rows_and_id_collisions(tmp_path: Path) -> None:
    text = ("source, noise, snr, caption\n"
            "a,b,3,first caption\n"
            "a,b,3,second caption\n"   # same mixture, other query: a legitimate second id
            "a,b,3,first caption\n")   # exact duplicate: an error
    dataset, issues = parse_dataset(validation_folder(tmp_path, text))
    assert codes(issues) == ["row-duplicate"]
    assert "row 2" in issues[0].message and issues[0].row == 4
    assert [m.id for m in dataset.mixtures] == ["a__b__3", "a__b__3__2"]


def test_missing_column_and_missing_json(tmp_path: Path) -> None:
    (tmp_path / "lass_synthetic_validation.csv").write_text("source, noise, caption\na,b,x y\n")
    dataset, issues = parse_dataset(tmp_path)
    assert "column-missing" in codes(issues, "error")
    assert "json-missing" in codes(issues, "warning")


@pytest.mark.parametrize("header, file_col, query_col", [
    ("file_name,query", "file_name", "query"),
    ("wav,caption", "wav", "caption"),
    (" Filename , Text ", "filename", "text"),
    ("mixture,query", "mixture", "query"),
])
def test_evaluation_synth_column_variants(tmp_path: Path, header: str, file_col: str, query_col: str) -> None:
    (tmp_path / "lass_synthetic_evaluation.csv").write_text(f"{header}\nmix-0.wav,a dog barks\nmix-1.wav,\"rain, wind\"\n")
    dataset, issues = parse_dataset(tmp_path)
    assert dataset.kind is SetKind.EVAL_SYNTH
    assert dataset.columns == {"file": file_col, "query": query_col}
    assert issues == []
    assert [(m.id, m.query) for m in dataset.mixtures] == [("mix-0", "a dog barks"), ("mix-1", "rain, wind")]


def test_evaluation_faults(tmp_path: Path) -> None:
    (tmp_path / "lass_real_evaluation.csv").write_text(
        "file_name,query\n../escape.wav,x y\n/abs/path.wav,x y\nok.wav,\nok.wav,a query\nok.wav,a query\n"
        "noext,a query\nok.wav,another query\n")
    dataset, issues = parse_dataset(tmp_path)
    found = [(i.code, i.row) for i in issues]
    assert ("unsafe-name", 2) in found and ("unsafe-name", 3) in found
    assert ("caption-empty", 4) in found and ("row-duplicate", 6) in found and ("file-extension", 7) in found
    assert [m.id for m in dataset.mixtures] == ["ok", "noext", "ok__2"]


def test_kind_detection_by_header_and_ambiguity(tmp_path: Path) -> None:
    (tmp_path / "my_val.csv").write_text("source,noise,snr,caption\na,b,1,x y\n")
    assert locate(tmp_path)[0] is SetKind.VALIDATION
    (tmp_path / "my_real_eval.csv").write_text("file_name,query\nx.wav,x y\n")
    with pytest.raises(DataError, match="several evaluation sets.*--kind or --csv"):
        locate(tmp_path)
    assert locate(tmp_path, kind="eval-real")[1].name == "my_real_eval.csv"
    assert locate(tmp_path, csv_path=tmp_path / "my_val.csv")[0] is SetKind.VALIDATION


def test_no_csv_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no evaluation-set CSV found"):
        locate(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        locate(tmp_path / "nope")


def test_safe_names() -> None:
    for good in ("692211_12333864-hq", "test-real-case-0.wav", "a b.wav"):
        assert is_safe_name(good)
    for bad in ("", ".", "..", "../x", "a/b", "a\\b", "/abs", "C:\\x", "..hidden", "x\x00y"):
        assert not is_safe_name(bad)


def test_audio_folder_resolution(demo_root: Path) -> None:
    dataset = open_dataset(demo_root / "validation")
    assert dataset.audio_dir == demo_root / "validation" / "lass_validation"
    assert open_dataset(demo_root / "eval-real").audio_dir.name == "lass_evaluation_real"
    assert open_dataset(demo_root / "eval-synth").kind is SetKind.EVAL_SYNTH
