"""Caption files, tags, durable logs and atomic outputs."""

from __future__ import annotations

import json
import os

import pytest

from dcase9.augment.io import TagIndex, read_caption_file
from dcase9.files import JsonlAppender, read_jsonl, remove_partial_files, write_text_atomic
from dcase9.errors import DataError


def test_caption_file_items_keep_their_fields(tmp_path):
    path = tmp_path / "caps.json"
    path.write_text(json.dumps({"data": [
        {"wav": "a.wav", "caption": "  A dog\nbarks. ", "duration": 3.5},
        {"wav": "b.wav", "caption": "Rain falls.", "tags": "Rain,Rain_on_surface"},
    ]}))
    first, second = read_caption_file(path, source=0, dataset="fsd50k")
    assert first.caption == "A dog barks." and first.fields["duration"] == 3.5 and first.tags == ()
    assert second.tags == ("Rain", "Rain on surface")


@pytest.mark.parametrize("content, message", [
    ('{"data": [', "not valid JSON \\(line 1"),
    ('[{"wav": "a.wav", "caption": "x"}]', 'expected an object \\{"data"'),
    ('{"data": []}', "'data' list is empty"),
    ('{"data": [{"wav": "a.wav", "caption": "A dog."}, {"wav": "b.wav"}]}', "field 'data\\[1\\].caption'"),
    ('{"data": [{"wav": "", "caption": "A dog."}]}', "field 'data\\[0\\].wav'"),
    ('{"data": [{"wav": "a.wav", "caption": "A dog.", "tags": 3}]}', "field 'data\\[0\\].tags'"),
    ('{"data": ["a.wav"]}', "field 'data\\[0\\]'"),
])
def test_bad_caption_files_name_file_and_item(tmp_path, content, message):
    path = tmp_path / "caps.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_caption_file(path, source=0, dataset="x")
    assert str(path) in str(info.value)


def test_tags_from_fsd50k_csv_json_and_lookup_by_path_name_or_stem(tmp_path):
    csv_path = tmp_path / "dev.csv"
    csv_path.write_text('fname,labels,mids,split\n64760,"Electric_guitar,Guitar,Music","/m/02sgy",train\n')
    json_path = tmp_path / "tags.json"
    json_path.write_text(json.dumps({"clips/door.wav": ["Door", "Squeak"], "rain.wav": "Rain"}))
    index = TagIndex()
    index.add_file(csv_path)
    index.add_file(json_path)
    assert index.lookup("/data/FSD50K.dev_audio/64760.wav") == ("Electric guitar", "Guitar", "Music")
    assert index.lookup("clips/door.wav") == ("Door", "Squeak")
    assert index.lookup("elsewhere/rain.wav") == ("Rain",)
    assert index.lookup("unknown.wav") is None


def test_bad_tag_files(tmp_path):
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("clip;labels\n1;a\n")
    with pytest.raises(DataError, match="row 1.*clip column"):
        TagIndex().add_file(bad_header)
    empty_id = tmp_path / "empty.csv"
    empty_id.write_text("fname,labels\n,Dog\n")
    with pytest.raises(DataError, match="row 2, field 'fname': empty clip id"):
        TagIndex().add_file(empty_id)
    with pytest.raises(DataError, match="must be .json"):
        TagIndex().add_file(tmp_path / "tags.txt")


def test_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "log.jsonl"
    with JsonlAppender(path) as log:
        log.append([{"key": "a"}, {"key": "b"}])
    intact = path.stat().st_size
    with path.open("ab") as handle:
        handle.write(b'{"key": "c", "text": "half a rec')  # what a hard kill mid-write leaves
    contents = read_jsonl(path)
    assert [r["key"] for r in contents.records] == ["a", "b"] and contents.intact == intact
    with JsonlAppender(path, keep_bytes=contents.intact) as log:
        log.append([{"key": "d"}])
    assert [r["key"] for r in read_jsonl(path).records] == ["a", "b", "d"]
    assert path.read_bytes().endswith(b'{"key": "d"}\n')


def test_damage_in_the_middle_of_a_log_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"key": "a"}\n{oops\n{"key": "b"}\n')
    with pytest.raises(DataError, match="log.jsonl, row 2: damaged log record"):
        read_jsonl(path)


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "out.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.json"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_leftovers_of_an_interrupted_atomic_write_are_removed(tmp_path):
    (tmp_path / ".augmented.json.0a1b2c3d.part").write_text("half")
    (tmp_path / "augmented.json").write_text("{}")
    (tmp_path / ".notes.tmp").write_text("not ours")
    assert remove_partial_files(tmp_path) == 1
    assert sorted(os.listdir(tmp_path)) == [".notes.tmp", "augmented.json"]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
