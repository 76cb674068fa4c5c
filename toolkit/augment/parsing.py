"""From an LLM answer to judged candidate captions.

`split_answer` finds the captions in an answer (numbered or bulleted lists, "Caption 1:" labels,
one caption per line, lists run together on one line) and drops chatter around them. `judge` then
applies seed 000's filters (incomplete or interrogative captions, copies of the original) plus
duplicates and length limits. Every dropped piece keeps its reason, a `Verdict`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum


class Verdict(str, Enum):
    """Why a piece of an answer is (not) a candidate caption. Only `OK` goes on to BERTScore."""

    OK = "ok"
    PREAMBLE = "preamble"  # chatter before the captions ("Sure! Here are 4 captions:")
    COMMENTARY = "commentary"  # chatter or a second list after the captions
    BEYOND_REQUESTED = "beyond_requested"  # more items than asked for
    EMPTY = "empty"
    QUESTION = "question"
    INCOMPLETE = "incomplete"
    TOO_LONG = "too_long"
    COPY_OF_ORIGINAL = "copy_of_original"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Piece:
    """One line (or list item) of an answer: the raw text, its cleaned form, and its verdict so far."""

    raw: str
    text: str
    verdict: Verdict | None = None  # None: a candidate still to be judged


_NUMBERED = re.compile(r"^(?:\(\s*(\d{1,2})\s*\)|(\d{1,2})\s*[.):]|#\s*(\d{1,2})\s*[.):]?)(?:\s+(.*)|$)")
_BULLET = re.compile(r"^[-*•–—·●▪◦+]\s+(.*)$")
_LABELLED = re.compile(r"^(?:augmented\s+)?(?:caption|sentence|option|description|version)\s*#?\s*(\d{1,2})"
                       r"\s*[:.)\-–]\s*(.*)$", re.IGNORECASE)
_INLINE_NUMBER = re.compile(r"(?:(?<=\s)|^)(\d{1,2})[.)]\s+")
_CHATTER = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|great|here\s+(?:are|is)|below\s+(?:are|is)|"
    r"i\s+hope|i\s+have|i've|let\s+me|note\b|these\s+captions|the\s+(?:captions|sentences)\s+above|"
    r"feel\s+free|as\s+an\s+ai)\b",
    re.IGNORECASE)
_QUOTES = "\"'“”‘’«»„`"
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_TRAILING_META = re.compile(r"\s*\((?:\d+\s+words?|word count:?\s*\d+)\)\s*$", re.IGNORECASE)
_DANGLING = frozenset(["a", "an", "the", "and", "or", "but", "nor", "so", "yet", "of", "with", "without", "to", "in", "on", "at", "for", "from", "by", "as", "while", "whereas", "that", "which", "who", "whom", "whose", "its", "their", "his", "her", "our", "your", "my", "is", "are", "was", "were", "be", "been", "being", "than", "into", "onto", "through", "over", "under", "near", "like", "during", "after", "before", "until", "against", "between", "among", "about", "above", "below", "behind", "beside", "within", "then", "also", "very"])
_QUESTION_START = re.compile(
    r"^(?:(?:what|who|whom|whose|where|when|why|how|which)\s+(?:is|are|was|were|do|does|did|can|could|would|"
    r"will|should|might|has|have)\b|(?:is|are|was|were|do|does|did|can|could|would|will|should|has|have)\s+"
    r"(?:there|it|you|this|that|these|those|the|a|an|we|they|he|she|i)\b)",
    re.IGNORECASE)


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing removed: how duplicates and copies are compared."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(_WORD.findall(text))


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def clean(text: str) -> str:
    """Strip markdown emphasis, labels, stray or enclosing quotes, and word-count notes."""
    text = text.replace("**", "").replace("__", "").strip()
    text = " ".join(text.split())
    text = _TRAILING_META.sub("", text)
    # Quotes around the whole caption, possibly with the full stop outside: "A dog barks".
    for _ in range(2):
        trail = ""
        if len(text) >= 2 and text[-1] in ".!" and text[-2] in _QUOTES:
            text, trail = text[:-1], text[-1]
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
            text = text[1:-1].strip()
        text = text + trail
    # A stray quote at one end only.
    if text[:1] in _QUOTES and text.count(text[0]) == 1:
        text = text[1:].strip()
    if text[-1:] in _QUOTES and text.count(text[-1]) == 1:
        text = text[:-1].strip()
    if len(text) >= 2 and text[-1] in ".!" and text[-2] in _QUOTES and text.count(text[-2]) == 1:
        text = text[:-2] + text[-1]
    return text.strip()


def _split_inline_list(line: str) -> list[str]:
    """'1. A dog barks. 2. A cat meows.' -> two items (numbers must run 1, 2, 3, ...)."""
    starts = []
    expected = 1
    for match in _INLINE_NUMBER.finditer(line):
        if int(match.group(1)) == expected:
            starts.append(match.start())
            expected += 1
    prefix = line[: starts[0]].strip() if starts else ""
    if len(starts) < 2 or (prefix and not prefix.endswith(":")):
        return [line]
    items = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [len(line)], strict=True)]
    return ([prefix] if prefix else []) + items


def _list_item(line: str) -> tuple[int | None, str] | None:
    """(number or None for a bullet, item text) if `line` is a list item, else None."""
    for pattern in (_LABELLED, _NUMBERED):
        match = pattern.match(line)
        if match:
            groups = match.groups()
            number = next((g for g in groups[:-1] if g is not None), None)
            return (int(number) if number is not None else None), groups[-1] or ""
    match = _BULLET.match(line)
    if match:
        return None, match.group(1)
    return None


def split_answer(answer: str, n_requested: int) -> list[Piece]:
    """Every non-blank piece of `answer`, with list markers removed and chatter marked.

    If the answer holds a list, its first run of items are the candidates; text before it is
    preamble and everything after it (chatter, a second list) is commentary. Without a list each line
    is a candidate, except lines that look like chatter or end with a colon.
    """
    lines: list[str] = []
    for line in answer.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line.strip()
        if line:
            split = _split_inline_list(line.replace("**", ""))
            lines.extend(split if len(split) > 1 else [line])
    parsed = [(line, _list_item(line.replace("**", ""))) for line in lines]
    has_list = any(item is not None for _, item in parsed)

    pieces: list[Piece] = []
    candidates = 0
    state = "before"  # before the list, in it, after it
    last_number = 0
    for raw, item in parsed:
        if has_list:
            if item is None:
                verdict = Verdict.PREAMBLE if state == "before" else Verdict.COMMENTARY
                if state == "in":
                    state = "after"
                pieces.append(Piece(raw, clean(raw), verdict))
                continue
            number, text = item
            if state == "in" and number is not None and number <= last_number:
                state = "after"  # numbering restarted: a second list
            if state == "after":
                pieces.append(Piece(raw, clean(text), Verdict.COMMENTARY))
                continue
            state = "in"
            last_number = number if number is not None else last_number + 1
        else:
            text = raw
            if _CHATTER.match(clean(text)) or text.endswith(":"):
                pieces.append(Piece(raw, clean(text), Verdict.PREAMBLE if candidates == 0 else Verdict.COMMENTARY))
                continue
        candidates += 1
        verdict = Verdict.BEYOND_REQUESTED if candidates > n_requested else None
        pieces.append(Piece(raw, clean(text), verdict))
    return pieces


def _is_question(text: str) -> bool:
    return "?" in text or bool(_QUESTION_START.match(text))


def _is_incomplete(text: str, min_words: int, truncated: bool) -> bool:
    words = _WORD.findall(text)
    if len(words) < min_words:
        return True
    if text.endswith(("...", "…", ",", ";", ":", "-", "–", "—", "(", "/")):
        return True
    if words[-1].casefold() in _DANGLING and text[-1:].isalnum():
        return True
    if text.count("(") != text.count(")") or text.count('"') % 2 or text.count("“") != text.count("”"):
        return True
    # The answer stopped at the token limit: its last caption may be cut in the middle.
    return truncated and text[-1:] not in ".!\"”')"


def judge(pieces: list[Piece], original: str, *, min_words: int = 3, max_words: int = 40,
          truncated: bool = False) -> list[Piece]:
    """Give every candidate piece a verdict: the first failing rule, or OK."""
    original_norm = normalise(original)
    last_candidate = max((i for i, p in enumerate(pieces) if p.verdict is None), default=-1)
    seen: set[str] = set()
    judged = []
    for index, piece in enumerate(pieces):
        if piece.verdict is not None:
            judged.append(piece)
            continue
        text, norm = piece.text, normalise(piece.text)
        if not norm:
            verdict = Verdict.EMPTY
        elif _is_question(text):
            verdict = Verdict.QUESTION
        elif _is_incomplete(text, min_words, truncated and index == last_candidate):
            verdict = Verdict.INCOMPLETE
        elif word_count(text) > max_words:
            verdict = Verdict.TOO_LONG
        elif norm == original_norm:
            verdict = Verdict.COPY_OF_ORIGINAL
        elif norm in seen:
            verdict = Verdict.DUPLICATE
        else:
            verdict = Verdict.OK
        if norm:
            seen.add(norm)
        judged.append(Piece(piece.raw, text, verdict))
    return judged
