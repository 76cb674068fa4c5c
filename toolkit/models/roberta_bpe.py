"""RoBERTa's byte-level BPE as its slow (pure Python) tokenizer runs it, to check a fast tokenizer.

The baseline and AudioSep call `RobertaTokenizer.from_pretrained("roberta-base")`: under the
transformers 4.x they pin, that is the slow tokenizer, and it fills the Hugging Face cache with
`vocab.json` and `merges.txt` only, no `tokenizer.json`. dcase9 accepts such a folder and builds the
fast tokenizer from the two files; `check_against_slow_bpe` then verifies that the fast tokenizer
gives the ids the slow algorithm gives on a set of probe texts:

1. split the text with GPT-2's pattern (contractions, letters, digits, other symbols, spaces);
2. map each piece's UTF-8 bytes to printable symbols (`byte_symbols`);
3. merge adjacent symbols by the rank of the pair in `merges.txt` until no listed pair is left;
4. look each token up in `vocab.json` (`<unk>` if absent) and wrap the ids in `<s>` ... `</s>`.

Steps 2 and 3 (`byte_symbols`, `bpe`) also build the tiny tokenizer of `dcase9.models.tiny`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcase9.errors import CheckpointError

# GPT-2's (and RoBERTa's) pre-tokenization pattern; \p{..} needs the `regex` package (a transformers dependency).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Captions of the kind CLAP sees, plus what tokenizers tend to get wrong: runs of spaces, leading and
# trailing spaces, digits, contractions, punctuation runs, accents, non-Latin letters, symbols.
PROBE_TEXTS = (
    "A dog barks twice, then a car passes by.",
    "Rain  falls on the roof's metal sheets   while thunder rumbles",
    " birds chirp at 5 am; the wind blows!!! ",
    "It'll be 10dB louder -- isn't it?",
    "Café naïve ünïcödé: 東京の雨 ½ №3 ©",
    "\ttabs\nand newlines\r\n",
)


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0..255, in byte order.

    Bytes that are printable and not whitespace stand for themselves; the others are mapped to
    code points from 256 upwards, in byte order (the GPT-2 / RoBERTa convention).
    """
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) \
        | set(range(ord("®"), ord("ÿ") + 1))
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def bpe(symbols: list[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one piece: repeatedly merge the adjacent pair of lowest rank."""
    while len(symbols) > 1:
        rank, first = min(((ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(symbols, symbols[1:], strict=False))))
        if rank == len(ranks):
            break
        a, b = symbols[first], symbols[first + 1]
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                merged.append(a + b)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


class SlowRobertaBpe:
    """The slow tokenizer's algorithm over a folder's `vocab.json` and `merges.txt`."""

    def __init__(self, folder: str | Path):
        import regex

        folder = Path(folder)
        self.vocab: dict[str, int] = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
        pairs = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        self.ranks = {pair: rank for rank, pair in enumerate(pairs) if len(pair) == 2}
        self.pattern = regex.compile(GPT2_PATTERN)
        self.table = byte_symbols()

    def ids(self, text: str) -> list[int]:
        unk = self.vocab["<unk>"]
        ids = [self.vocab["<s>"]]
        for piece in self.pattern.findall(text):
            symbols = [self.table[b] for b in piece.encode("utf-8")]
            ids += [self.vocab.get(token, unk) for token in bpe(symbols, self.ranks)]  # type: ignore[arg-type]
        return ids + [self.vocab["</s>"]]


def check_against_slow_bpe(tokenizer: Any, folder: str | Path,
                           texts: tuple[str, ...] = PROBE_TEXTS) -> None:
    """Raise CheckpointError unless `tokenizer` gives the slow algorithm's ids for every probe text.

    `tokenizer`: a transformers tokenizer, or one with an `ids(text)` method (`clap.tokenizer.RobertaBpe`)."""
    slow = SlowRobertaBpe(folder)
    for text in texts:
        fast_ids = tokenizer.ids(text) if hasattr(tokenizer, "ids") else list(tokenizer(text)["input_ids"])
        slow_ids = slow.ids(text)
        if fast_ids != slow_ids:
            raise CheckpointError(
                f"the tokenizer built from {folder}/vocab.json and merges.txt does not give the ids of RoBERTa's "
                f"slow tokenizer for {text!r}: {fast_ids[:12]} vs {slow_ids[:12]}. The folder's files may not "
                "be roberta-base's; download it again (`dcase9 download --system baseline`).")
