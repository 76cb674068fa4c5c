"""Tiny stand-ins for the real CLAP query encoder and its tokenizer, made by our own code.

The real query encoder (laion CLAP with roberta-base) is 2.3 GB and its tokenizer comes from the
Hugging Face Hub; neither can be fetched offline. The demo and the tests use instead:

- a tiny byte-level BPE tokenizer in roberta-base's file layout (`write_tiny_roberta_tokenizer`):
  the same algorithm and files (`vocab.json`, `merges.txt`) and the same special tokens at the same
  ids (<s>=0, <pad>=1, </s>=2, <unk>=3), but a vocabulary of a few hundred entries; every byte has a
  symbol, so any text can be tokenized;
- a tiny laion CLAP architecture (`TINY_CLAP`: 2-layer text and audio towers, but the real 512-d
  joint space that ResUNet30's FiLM layers expect), with random weights (`random_clap_model`).

This module needs only the standard library at import time (torch and transformers are imported by
the functions that use them), so the fixture scripts under tests/ can import it from other Python
environments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcase9.files import write_text_atomic
from dcase9.models.roberta_bpe import bpe, byte_symbols

if TYPE_CHECKING:
    from transformers import ClapModel

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]
MASK_TOKEN = "<mask>"

# A few merges so that common words become single tokens ("Ġ" marks a leading space).
MERGES = [
    ("Ġ", "a"), ("Ġ", "d"), ("o", "g"), ("Ġd", "og"), ("Ġ", "b"), ("a", "r"), ("Ġb", "ar"),
    ("k", "i"), ("n", "g"), ("ki", "ng"), ("Ġbar", "king"), ("Ġ", "p"), ("i", "a"), ("n", "o"),
    ("Ġp", "ia"), ("Ġpia", "no"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("r", "a"), ("i", "n"),
    ("ra", "in"), ("Ġ", "rain"),
]


def vocabulary(merges: Sequence[tuple[str, str]] = MERGES) -> dict[str, int]:
    tokens = SPECIAL_TOKENS + byte_symbols() + ["".join(pair) for pair in merges] + [MASK_TOKEN]
    vocab: dict[str, int] = {}
    for token in tokens:  # a token two merges both produce keeps its first id
        vocab.setdefault(token, len(vocab))
    return vocab


# RoBERTa's byte-level pre-tokenizer splits text into pieces like these before BPE runs on each.
_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+")


def _symbols(piece: str) -> list[str]:
    table = byte_symbols()
    return [table[b] for b in piece.encode("utf-8")]


def word_merges(texts: Iterable[str], base: Sequence[tuple[str, str]] = MERGES) -> list[tuple[str, str]]:
    """`base` plus the merges (appended, so of lower priority) that make every word of `texts` one token."""
    merges = list(base)
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    for text in texts:
        for piece in _PIECES.findall(text):
            tokens = bpe(_symbols(piece), ranks)
            while len(tokens) > 1:
                ranks[(tokens[0], tokens[1])] = len(merges)
                merges.append((tokens[0], tokens[1]))
                tokens = bpe(_symbols(piece), ranks)
    return merges


def write_tiny_roberta_tokenizer(directory: str | Path, *, words_of: Iterable[str] = ()) -> Path:
    """Write vocab.json, merges.txt and a tokenizer_config.json naming RobertaTokenizer; return the folder.

    `words_of`: texts whose every word becomes one token (the demo's captions: a random text tower
    then sees words rather than letters, and captions sharing words get closer embeddings).
    Files that already hold the right content are left alone, so that several processes of one
    training run (DDP) never rewrite a file another one is reading.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    merges = word_merges(words_of)
    files = {
        "vocab.json": json.dumps(vocabulary(merges), ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
        "tokenizer_config.json": json.dumps({
            "tokenizer_class": "RobertaTokenizer", "model_max_length": 512,
            "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
            "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": MASK_TOKEN,
        }),
    }
    for name, text in files.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            write_text_atomic(path, text)
    return directory


# The tiny CLAP architecture, as keyword arguments of `dcase9.models.clap.ClapArchitecture` (what
# the `clap:` system setting holds for checkpoints that use it).
TINY_CLAP: dict[str, Any] = {
    "text_vocab_size": len(vocabulary()), "text_hidden_size": 16, "text_layers": 2, "text_heads": 2,
    "text_intermediate_size": 32, "audio_embed_dim": 8, "audio_depths": [2, 2], "audio_heads": [1, 2],
    "audio_window_size": 4, "spec_size": 64, "projection_dim": 512, "sample_rate": 16000,
    "clip_samples": 16000, "window_size": 256, "hop_size": 80, "n_mels": 16, "fmin": 50.0, "fmax": 7000.0,
}

# Gain on the attention value and output projections of a random text tower (see random_clap_model).
RANDOM_TEXT_ATTENTION_GAIN = 10.0


def random_clap_model(spec: Any, *, seed: int, attention_gain: float = RANDOM_TEXT_ATTENTION_GAIN) -> ClapModel:
    """A randomly initialised `ClapModel` for `spec` (a `ClapSpec`), reproducible from `seed`.

    At transformers' initial scale (std 0.02) the text tower's <s> token hardly attends to the rest
    of the caption, so every caption gets nearly the same embedding (mean cosine 0.999 between
    captions): useless as a query. We draw the token embeddings from N(0, 1), give the pooler and
    the projection PyTorch's default initialisation, multiply the attention value and output
    projections by `attention_gain` (the <s> token then summarises the whole caption), and centre
    each row of the projection's last layer (zero bias): the ReLU before it makes every input
    positive on average, which otherwise adds one common direction to every embedding. Distinct
    captions then point in distinct directions (mean cosine about 0.65 between the demo captions
    with the byte tokenizer). A real CLAP is far better: it places captions of similar sounds
    close together.
    """
    import torch
    from torch import nn

    from dcase9.models.clap import build_clap_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_clap_model(spec)
        text = model.text_model
        with torch.no_grad():
            text.embeddings.word_embeddings.weight.normal_(0.0, 1.0)
            for layer in text.encoder.layer:
                layer.attention.self.value.weight.mul_(attention_gain)
                layer.attention.output.dense.weight.mul_(attention_gain)
            for module in [*text.pooler.modules(), *model.text_projection.modules()]:
                if isinstance(module, nn.Linear):
                    module.reset_parameters()
            last = model.text_projection.linear2
            last.weight -= last.weight.mean(dim=1, keepdim=True)
            last.bias.zero_()
    return model.eval()
