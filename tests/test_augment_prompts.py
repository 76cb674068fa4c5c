"""The prompt library: built-in prompts, DDP choice per dataset, templates, user prompt files."""

from __future__ import annotations

import pytest

from dcase9.augment.prompts import PromptLibrary, load_prompt_file
from dcase9.errors import ConfigError

# Seed 003, Table 1, the instruction as printed (with "5" for the number of captions).
TABLE_1 = (
    "I will give a description of an audio recording and tags associated with the audio recording. "
    "Generate 5 audio captions describing the sound events. Each audio caption should be one sentence with "
    "less than 20 words. Use grammatical subject-verb-object sentences. Do not include names of cities, "
    "countries, and persons. Do not include the time. Do not include recording device names. Do not write "
    "introductions or explanations. Do not use \"heard\", \"recorded\". Start each output sentence with its index."
)


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    return PromptLibrary.load()


def test_each_prompt_has_its_own_selection_default(library):
    """Seed 000 keeps DDP and DIP captions at BERTScore >= 0.7; seed 003 describes no selection of GPT-4's."""
    thresholds = {prompt_id: loaded.prompt.selection_threshold for prompt_id, loaded in library.prompts.items()}
    assert thresholds == {"gpt4-keywords": None, "dip": 0.7, "ddp-fsd50k": 0.7, "ddp-wavcaps-audioset": 0.7,
                          "ddp-wavcaps-bbc-soundbible": 0.7}


def test_builtin_library(library):
    assert sorted(library.prompts) == ["ddp-fsd50k", "ddp-wavcaps-audioset", "ddp-wavcaps-bbc-soundbible", "dip",
                                       "gpt4-keywords"]
    for loaded in library.prompts.values():
        assert loaded.builtin and loaded.prompt.source.strip()
    # Seed 000 asks for 4 captions with its DDP/DIP, seed 003 for 5 with GPT-4.
    assert {p: library.get(p).n_captions for p in library.prompts} == {
        "ddp-fsd50k": 4, "ddp-wavcaps-audioset": 4, "ddp-wavcaps-bbc-soundbible": 4, "dip": 4, "gpt4-keywords": 5}


def test_gpt4_prompt_is_table_1_verbatim_with_caption_and_tags(library):
    prompt = library.get("gpt4-keywords")
    text = prompt.render("The act of breathing creates audible respiratory sounds.", 5,
                         ("Breathing", "Respiratory sounds"))
    assert text.startswith(TABLE_1)
    assert '"The act of breathing creates audible respiratory sounds."' in text
    assert text.endswith("Tags: Breathing, Respiratory sounds")
    assert prompt.uses_tags
    assert "Tags: none" in prompt.render("A dog barks.", 5, ())


@pytest.mark.parametrize("dataset, expected", [
    ("fsd50k", "ddp-fsd50k"), ("FSD50K", "ddp-fsd50k"),
    ("wavcaps-audioset", "ddp-wavcaps-audioset"), ("WavCaps_AudioSet", "ddp-wavcaps-audioset"),
    ("wavcaps-bbc", "ddp-wavcaps-bbc-soundbible"), ("wavcaps soundbible", "ddp-wavcaps-bbc-soundbible"),
])
def test_ddp_is_chosen_by_dataset(library, dataset, expected):
    assert library.resolve("ddp", dataset).id == expected


def test_no_ddp_for_other_datasets_says_what_to_do(library):
    with pytest.raises(ConfigError, match="no dataset-dependent prompt.*'clotho'.*--dataset.*--prompt dip"):
        library.resolve("ddp", "clotho")
    assert library.resolve("dip", "clotho").id == "dip"


def test_render_puts_caption_braces_in_literally(library):
    text = library.get("dip").render("A {n} sign {tags} beeps.", 3)
    assert '"A {n} sign {tags} beeps."' in text
    assert "Write 3 new captions" in text


def test_unknown_prompt_lists_the_known_ones(library):
    with pytest.raises(ConfigError, match="unknown prompt 'ddp-clotho'; known: ddp-fsd50k"):
        library.get("ddp-clotho")


def _write(path, template="Rewrite \"{caption}\" {n} times.", **extra):
    lines = [f"id: {extra.pop('id', 'mine')}", "title: Mine", "kind: custom", "n_captions: 3", "source: ours",
             f"template: '{template}'"] + [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_user_prompt_file_and_folder(tmp_path, library):
    folder = tmp_path / "prompts"
    folder.mkdir()
    _write(folder / "dip.yaml", id="dip")  # replaces the built-in DIP
    _write(folder / "mine.yaml")
    mine = PromptLibrary.load([folder])
    assert not mine.prompts["dip"].builtin and mine.get("dip").kind == "custom"
    assert mine.get("mine").render("A dog barks.", 2) == 'Rewrite "A dog barks." 2 times.'
    assert library.resolve(str(folder / "mine.yaml"), "any").id == "mine"


@pytest.mark.parametrize("template, message", [
    ("Rewrite {caption} {count} times.", r"unknown placeholder\(s\) \{count\}"),
    ("Rewrite {caption} n times.", r"must contain \{n\}"),
    ("Rewrite {caption} {n} times }.", "unbalanced"),
])
def test_bad_templates_are_rejected_with_file_and_line(tmp_path, template, message):
    path = _write(tmp_path / "bad.yaml", template=template)
    with pytest.raises(ConfigError, match=message) as info:
        load_prompt_file(path)
    assert str(path) in str(info.value) and "line 6" in str(info.value)


def test_unknown_keys_in_prompt_files_are_rejected(tmp_path):
    path = _write(tmp_path / "bad.yaml", temperature=0.3)
    with pytest.raises(ConfigError, match="temperature: unknown key"):
        load_prompt_file(path)


def test_duplicate_ids_in_one_folder_are_an_error(tmp_path):
    _write(tmp_path / "a.yaml")
    _write(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="prompt id 'mine' is also used by"):
        PromptLibrary.load([tmp_path])
