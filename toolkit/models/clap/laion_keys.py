"""laion CLAP weights: their key names against transformers' `ClapModel` (both directions), and
reading them from the files they come in (laion `.pt`, or a Lightning checkpoint's
`query_encoder.model.*` part)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dcase9.errors import CheckpointError
from dcase9.models.checkpoints import read_checkpoint, state_dict_of, strip_prefix

_AUDIO = "audio_model.audio_encoder."
_BLOCK = r"audio_branch\.layers\.(\d+)\.blocks\.(\d+)\."
_BLOCK_HF = _AUDIO + r"layers.\1.blocks.\2."

# (laion pattern, transformers replacement); the first full match wins. `attn.qkv` is split apart.
_RENAMES: list[tuple[re.Pattern[str], str]] = [(re.compile(p), r) for p, r in [
    (r"text_branch\.(.+)", r"text_model.\1"),
    (r"(text|audio)_projection\.0\.(weight|bias)", r"\1_projection.linear1.\2"),
    (r"(text|audio)_projection\.2\.(weight|bias)", r"\1_projection.linear2.\2"),
    (r"logit_scale_([at])", r"logit_scale_\1"),
    (r"audio_branch\.bn0\.(.+)", _AUDIO + r"batch_norm.\1"),
    (r"audio_branch\.patch_embed\.(proj|norm)\.(weight|bias)", _AUDIO + r"patch_embed.\1.\2"),
    (r"audio_branch\.norm\.(weight|bias)", _AUDIO + r"norm.\1"),
    (r"audio_branch\.layers\.(\d+)\.downsample\.(.+)", _AUDIO + r"layers.\1.downsample.\2"),
    (_BLOCK + r"norm1\.(weight|bias)", _BLOCK_HF + r"layernorm_before.\3"),
    (_BLOCK + r"norm2\.(weight|bias)", _BLOCK_HF + r"layernorm_after.\3"),
    (_BLOCK + r"attn\.(relative_position_bias_table|relative_position_index)", _BLOCK_HF + r"attention.self.\3"),
    (_BLOCK + r"attn\.proj\.(weight|bias)", _BLOCK_HF + r"attention.output.dense.\3"),
    (_BLOCK + r"mlp\.fc1\.(weight|bias)", _BLOCK_HF + r"intermediate.dense.\3"),
    (_BLOCK + r"mlp\.fc2\.(weight|bias)", _BLOCK_HF + r"output.dense.\3"),
]]
_QKV = re.compile(_BLOCK + r"attn\.qkv\.(weight|bias)")

# laion keys that have no place in ClapModel, each dropped on purpose.
LAION_KEYS_DROPPED: dict[str, str] = {
    r"text_branch\.embeddings\.position_ids":
        "RoBERTa's position-id buffer, saved by transformers < 4.31; positions come from the token ids",
    _BLOCK + r"attn_mask":
        "shifted-window attention mask, a fixed function of the geometry that transformers rebuilds",
    r"audio_branch\.(spectrogram_extractor|logmel_extractor)\..+":
        "torchlibrosa's fixed STFT kernels and mel filters; we compute the front end (checked against melW)",
    r"audio_branch\.(tscam_conv|head)\..+": "HTSAT's AudioSet classifier, not on the embedding path",
    r"(text|audio)_transform\..+": "MLPs used only by the contrastive training loss",
}
_DROPPED = [re.compile(p) for p in LAION_KEYS_DROPPED]

# ClapModel buffers that laion files do not carry; they are fixed, so the model's own values stay.
FIXED_TRANSFORMERS_BUFFERS = ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids")


def laion_to_transformers(laion: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename laion CLAP weights (no prefix) to transformers' `ClapModel` names.

    Keys in `LAION_KEYS_DROPPED` are left out. Keys no rule knows keep their laion name, so that
    loading them fails and names them.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in laion.items():
        if any(p.fullmatch(key) for p in _DROPPED):
            continue
        qkv = _QKV.fullmatch(key)
        if qkv and value.shape[0] % 3 == 0:  # otherwise kept as is, and refused on loading
            layer, block, kind = qkv.groups()
            base = f"{_AUDIO}layers.{layer}.blocks.{block}.attention.self."
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                converted[f"{base}{name}.{kind}"] = part
            continue
        for pattern, replacement in _RENAMES:
            if pattern.fullmatch(key):
                key = pattern.sub(replacement, key)
                break
        converted[key] = value
    return converted


_HF_QKV = re.compile(re.escape(_AUDIO)
                     + r"layers\.(\d+)\.blocks\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)")

# transformers -> laion, the inverse of _RENAMES (qkv handled separately).
_INVERSE_RENAMES: list[tuple[re.Pattern[str], str]] = [(re.compile(p), r) for p, r in [
    (r"text_model\.(.+)", r"text_branch.\1"),
    (r"(text|audio)_projection\.linear1\.(weight|bias)", r"\1_projection.0.\2"),
    (r"(text|audio)_projection\.linear2\.(weight|bias)", r"\1_projection.2.\2"),
    (r"logit_scale_([at])", r"logit_scale_\1"),
    (re.escape(_AUDIO) + r"batch_norm\.(.+)", r"audio_branch.bn0.\1"),
    (re.escape(_AUDIO) + r"patch_embed\.(.+)", r"audio_branch.patch_embed.\1"),
    (re.escape(_AUDIO) + r"norm\.(weight|bias)", r"audio_branch.norm.\1"),
    (re.escape(_AUDIO) + r"layers\.(\d+)\.downsample\.(.+)", r"audio_branch.layers.\1.downsample.\2"),
    *[(re.escape(_AUDIO) + r"layers\.(\d+)\.blocks\.(\d+)\." + re.escape(hf) + r"\.(.+)",
       r"audio_branch.layers.\1.blocks.\2." + laion + r".\3")
      for hf, laion in [("layernorm_before", "norm1"), ("layernorm_after", "norm2"),
                        ("attention.self", "attn"), ("attention.output.dense", "attn.proj"),
                        ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2")]],
]]


def transformers_to_laion(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `laion_to_transformers` for the keys it keeps (query/key/value re-joined).

    transformers-only fixed buffers (`FIXED_TRANSFORMERS_BUFFERS`) are left out, as laion files
    written with current transformers do.
    """
    laion: dict[str, torch.Tensor] = {}
    qkv_parts: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if key in FIXED_TRANSFORMERS_BUFFERS:
            continue
        qkv = _HF_QKV.fullmatch(key)
        if qkv:
            layer, block, name, kind = qkv.groups()
            qkv_parts.setdefault((layer, block, kind), {})[name] = value
            continue
        for pattern, replacement in _INVERSE_RENAMES:
            if pattern.fullmatch(key):
                key = pattern.sub(replacement, key)
                break
        else:
            raise KeyError(f"no laion name for transformers key '{key}'")
        laion[key] = value
    for (layer, block, kind), parts in qkv_parts.items():
        laion[f"audio_branch.layers.{layer}.blocks.{block}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0)
    return laion


# --------------------------------------------------------------------------------------------
# Reading laion weights from the files they come in
# --------------------------------------------------------------------------------------------

# A key every laion CLAP with a RoBERTa text tower has; what precedes it is the prefix.
_ANCHOR_KEY = "text_branch.embeddings.word_embeddings.weight"


def find_laion_prefix(state_dict: Mapping[str, Any], source: str = "checkpoint") -> str:
    """The prefix under which a state dict holds laion CLAP weights.

    '' for a bare state dict, 'module.' for laion's own (DDP-wrapped) training checkpoints,
    'query_encoder.model.' for baseline / AudioSep Lightning checkpoints.
    """
    prefixes = sorted(k[: -len(_ANCHOR_KEY)] for k in state_dict if k.endswith(_ANCHOR_KEY))
    if len(prefixes) == 1:
        return prefixes[0]
    if not prefixes:
        sample = ", ".join(sorted(state_dict)[:5])
        raise CheckpointError(f"{source}: no laion CLAP weights found (no key ends with '{_ANCHOR_KEY}'; "
                              f"first keys: {sample})")
    raise CheckpointError(f"{source}: several laion CLAP models in one file, under prefixes "
                          f"{prefixes}; pass prefix= to choose one")


def read_laion_clap_weights(path: str | Path, *, prefix: str | None = None,
                            trust: bool = False) -> dict[str, torch.Tensor]:
    """laion-named CLAP weights (prefix removed) from a laion `.pt` file or a Lightning checkpoint.

    laion's files are `{'epoch', 'state_dict', 'optimizer', ...}` with every key under 'module.';
    the baseline's and AudioSep's Lightning checkpoints keep CLAP under 'query_encoder.model.'
    next to the separation net ('ss_model.'). The prefix is found unless given. The file is read
    without running pickled code unless `trust=True` (see `dcase9.models.checkpoints`).
    """
    return laion_clap_weights_of(read_checkpoint(path, trust=trust), source=str(path), prefix=prefix)


def laion_clap_weights_of(checkpoint: Any, *, source: str, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """`read_laion_clap_weights` of a checkpoint read already (`source`: its file, for messages)."""
    state_dict = state_dict_of(checkpoint)
    if prefix is None:
        prefix = find_laion_prefix(state_dict, source=source)
    weights = strip_prefix(state_dict, prefix)
    if not weights:
        raise CheckpointError(f"{source}: no keys under the prefix '{prefix}'")
    return weights
