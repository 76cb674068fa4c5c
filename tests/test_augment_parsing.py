"""Parsing LLM answers into candidate captions, and the filters with their reasons."""

from __future__ import annotations

import pytest

from dcase9.augment.parsing import Verdict, clean, judge, normalise, split_answer

ORIGINAL = "A dog barks loudly in the distance."


def verdicts(answer: str, n: int = 4, original: str = ORIGINAL, **kwargs) -> list[tuple[str, str]]:
    return [(p.text, p.verdict.value) for p in judge(split_answer(answer, n), original, **kwargs)]


def test_numbered_list_with_chatter_question_copy_and_extra_item():
    answer = ("Sure! Here are 4 captions:\n"
              "1. \"A dog barks loudly far away.\"\n"
              "2) Is a dog barking in the distance?\n"
              "3. **A dog is barking loudly in the distance.**\n"
              "4. A dog barks loudly in the distance.\n"
              "5. One more caption nobody asked for.\n\n"
              "I hope these help!")
    assert verdicts(answer) == [
        ("Sure! Here are 4 captions:", "preamble"),
        ("A dog barks loudly far away.", "ok"),
        ("Is a dog barking in the distance?", "question"),
        ("A dog is barking loudly in the distance.", "ok"),
        ("A dog barks loudly in the distance.", "copy_of_original"),
        ("One more caption nobody asked for.", "beyond_requested"),
        ("I hope these help!", "commentary"),
    ]


def test_raw_text_is_kept_next_to_the_cleaned_text():
    pieces = split_answer('3. **"A dog barks far away."**', 4)
    assert pieces[0].raw == '3. **"A dog barks far away."**'
    assert pieces[0].text == "A dog barks far away."


def test_bullets_stray_quotes_duplicates_and_cut_sentences():
    answer = ("- 'Rain is falling steadily on a metal roof.'\n"
              "* Rain falls steadily on a tin roof\n"
              "• rain is falling steadily on a metal roof\n"
              "- Steady rain drums on the metal roof of a")
    assert verdicts(answer, original="Rain falls steadily on a metal roof.") == [
        ("Rain is falling steadily on a metal roof.", "ok"),
        ("Rain falls steadily on a tin roof", "ok"),
        ("rain is falling steadily on a metal roof", "duplicate"),
        ("Steady rain drums on the metal roof of a", "incomplete"),
    ]


def test_list_run_together_on_one_line_after_a_label():
    answer = "Output: 1. Water is boiling in a kettle. 2. A kettle of water boils. 3. Bubbling water fills a kettle."
    assert verdicts(answer, n=3, original="Water boils in a kettle.") == [
        ("Output:", "preamble"),
        ("Water is boiling in a kettle.", "ok"),
        ("A kettle of water boils.", "ok"),
        ("Bubbling water fills a kettle.", "ok"),
    ]


def test_labelled_captions_and_a_second_list_after_the_first():
    answer = ("Caption 1: A dog barks far away.\nCaption 2: Far away, a dog is barking.\n"
              "Exercise: rewrite these.\n1. The cat sleeps on the mat.")
    assert verdicts(answer) == [
        ("A dog barks far away.", "ok"),
        ("Far away, a dog is barking.", "ok"),
        ("Exercise: rewrite these.", "commentary"),
        ("The cat sleeps on the mat.", "commentary"),
    ]


def test_a_restarted_numbering_ends_the_list():
    answer = "1. A dog barks far away.\n2. A dog is barking far off.\n1. The cat sleeps.\n2. A bird sings."
    assert [v for _, v in verdicts(answer)] == ["ok", "ok", "commentary", "commentary"]


def test_plain_lines_without_markers_are_candidates_but_chatter_is_not():
    answer = "Certainly.\nA dog barks far away.\nFar off, a dog is barking.\nLet me know if you need more."
    assert verdicts(answer) == [
        ("Certainly.", "preamble"),
        ("A dog barks far away.", "ok"),
        ("Far off, a dog is barking.", "ok"),
        ("Let me know if you need more.", "commentary"),
    ]


@pytest.mark.parametrize("text, expected", [
    ("What is making that noise", "question"),
    ("Can you hear the dog barking", "question"),
    ("When the door slams, a dog starts barking.", "ok"),  # declarative despite 'When'
    ("A dog barks and", "incomplete"),
    ("A dog barks, then", "incomplete"),
    ("A dog barks loudly...", "incomplete"),
    ("A dog (far away barks.", "incomplete"),
    ("Dog barks.", "incomplete"),  # fewer than 3 words
    ("Birds chirping in a forest", "ok"),  # captions need not have a finite verb
    ("@@@ ###", "empty"),
    (" ".join(["word"] * 41) + ".", "too_long"),
])
def test_single_candidate_rules(text, expected):
    assert verdicts(f"1. {text}")[0][1] == expected


def test_a_truncated_answer_makes_its_unfinished_last_caption_incomplete():
    answer = "1. A dog barks far away.\n2. Far off, a dog is barking at the"
    assert [v for _, v in verdicts(answer, truncated=True)] == ["ok", "incomplete"]
    answer = "1. A dog barks far away.\n2. Far off, a dog barks at night"
    assert [v for _, v in verdicts(answer, truncated=False)] == ["ok", "ok"]
    assert [v for _, v in verdicts(answer, truncated=True)] == ["ok", "incomplete"]


def test_word_limits_are_settings():
    assert verdicts("1. A dog barks.", min_words=4)[0][1] == "incomplete"
    assert verdicts("1. A dog barks far away.", max_words=4)[0][1] == "too_long"


def test_copies_are_found_through_case_punctuation_and_accents():
    assert normalise("  A  dog, BARKS loudly — in the distance!! ") == "a dog barks loudly in the distance"
    assert normalise("Café") == normalise("cafe")
    assert verdicts("1. a dog barks loudly, in the distance")[0][1] == "copy_of_original"


def test_empty_answer_has_no_pieces():
    assert split_answer("", 4) == []
    assert split_answer("\n  \n", 4) == []


def test_clean_removes_quotes_emphasis_and_word_counts():
    assert clean('"A dog barks far away".') == "A dog barks far away."
    assert clean("“A dog barks far away.”") == "A dog barks far away."
    assert clean("A dog barks far away.\"") == "A dog barks far away."
    assert clean("A dog barks far away. (6 words)") == "A dog barks far away."
    assert clean("The sign says \"stop\" loudly.") == "The sign says \"stop\" loudly."


def test_every_verdict_value_is_a_stable_string():
    # Verdicts are written to candidates.jsonl and summary.json: their names are part of the format.
    assert [v.value for v in Verdict] == ["ok", "preamble", "commentary", "beyond_requested", "empty", "question",
                                          "incomplete", "too_long", "copy_of_original", "duplicate"]
