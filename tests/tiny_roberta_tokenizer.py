"""A tiny byte-level BPE tokenizer in roberta-base's file format, written from a hand-made vocabulary.

roberta-base's tokenizer cannot be downloaded here, so tests (and the script that produced the laion
reference fixture) use this stand-in: the same algorithm and file layout (`vocab.json`, `merges.txt`),
the same special tokens at the same ids (<s>=0, <pad>=1, </s>=2, <unk>=3), but a vocabulary of a few
hundred entries. Every byte has a symbol, so any text can be tokenized. Depends only on the standard
library so that other Python environments can import it.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]
MASK_TOKEN = "<mask>"

# A few merges so that common words become single tokens ("Ġ" marks a leading space).
MERGES = [
    ("Ġ", "a"), ("Ġ", "d"), ("o", "g"), ("Ġd", "og"), ("Ġ", "b"), ("a", "r"), ("Ġb", "ar"),
    ("k", "i"), ("n", "g"), ("ki", "ng"), ("Ġbar", "king"), ("Ġ", "p"), ("i", "a"), ("n", "o"),
    ("Ġp", "ia"), ("Ġpia", "no"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("r", "a"), ("i", "n"),
    ("ra", "in"), ("Ġ", "rain"),
]


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


def vocabulary() -> dict[str, int]:
    tokens = SPECIAL_TOKENS + byte_symbols() + ["".join(pair) for pair in MERGES] + [MASK_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def write_tiny_roberta_tokenizer(directory: str | Path) -> Path:
    """Write vocab.json, merges.txt and a tokenizer_config.json naming RobertaTokenizer; return the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocabulary(), ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES), encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "RobertaTokenizer", "model_max_length": 512,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": MASK_TOKEN,
    }), encoding="utf-8")
    return directory
