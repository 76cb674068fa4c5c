"""laion CLAP (HTSAT audio tower, RoBERTa text tower) on transformers' `ClapModel`.

CLAP serves twice in Task 9: its text embedding is the query that conditions the separation
networks of the baseline and AudioSep, and the audio-text cosine similarity of its embeddings is
the ATS metric. Both must equal what the laion code vendored in the baseline computes, so this
module loads laion-format weights (the standalone `music_speech_audioset_epoch_15_esc_89.98.pt`,
or the `query_encoder.model.*` part of the baseline / AudioSep Lightning checkpoints), renames
their keys for transformers' `ClapModel`, and reproduces laion's input pipeline:

- text: RoBERTa BPE tokens (truncated at 512) -> RoBERTa pooler output (dense + tanh on <s>)
  -> Linear, ReLU, Linear -> L2 normalisation;
- audio (48 kHz, 10 s clips): laion's `repeatpad` for shorter inputs (the clip tiled a whole
  number of times, then zero-padded) -> the log-mel that laion computes inside HTSAT (Hann STFT,
  reflect-padded centre frames, power 2, Slaney mel filters, 10 log10(max(x, 1e-10)), no top_db)
  -> bn0 -> mel-to-image folding -> Swin -> average pooling -> Linear, ReLU, Linear -> L2 norm.
  transformers' `ClapFeatureExtractor` is not used: we compute laion's front end in torch.

Inputs longer than one clip: laion picks a random 10 s crop (non-fusion models). We instead take
consecutive clips starting at 0, L, 2L, ... with the last one aligned to the end of the signal
(it overlaps its predecessor, so every clip holds real audio and nothing is padded), and return
the normalised mean of their normalised embeddings.

    encoder = ClapEncoder.from_laion_checkpoint("music_speech_audioset_epoch_15_esc_89.98.pt")
    queries = encoder.encode_text(["a dog barking"])            # (1, 512), unit norm
    ats = (encoder.encode_audio(separated_48k) * queries).sum(-1)  # cosine similarity
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.config import StrictModel
from toolkit.errors import CheckpointError
from toolkit.models.checkpoints import empty_module, load_weights, read_checkpoint, state_dict_of, strip_prefix

if TYPE_CHECKING:
    from transformers import ClapConfig, ClapModel, PreTrainedTokenizerBase

DEFAULT_TOKENIZER = "roberta-base"
# Which parts of CLAP to build: "text" (the text tower and its projection: all a text query needs)
# or "both" (adds the HTSAT audio tower: ATS, and training, whose checkpoints carry the whole model).
ClapTowers = Literal["both", "text"]
CLAP_TOWERS: tuple[ClapTowers, ...] = ("both", "text")
MAX_TEXT_TOKENS = 512  # the reference tokenizes with truncation at max_length=512

# laion's HTSAT front end constants (htsat.py: ref=1.0, amin=1e-10, top_db=None).
_LOG_AMIN = 1e-10


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogMelSettings:
    """The waveform front end laion's HTSAT computes internally, and the clip length it expects."""

    sample_rate: int = 48_000
    clip_samples: int = 480_000
    window_size: int = 1024  # n_fft and Hann window length
    hop_size: int = 480
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14_000.0

    @property
    def n_frames(self) -> int:
        """STFT frames of one clip (centred frames: one per hop, plus one)."""
        return self.clip_samples // self.hop_size + 1


@dataclass
class ClapSpec:
    """A transformers `ClapConfig` plus the laion front end it is fed with."""

    model: ClapConfig
    front_end: LogMelSettings = field(default_factory=LogMelSettings)

    def validate(self) -> None:
        audio = self.model.audio_config
        fe = self.front_end
        if audio.num_mel_bins != fe.n_mels:
            raise ValueError(f"audio_config.num_mel_bins={audio.num_mel_bins} but the front end makes "
                             f"{fe.n_mels} mel bands")
        if audio.spec_size % fe.n_mels:
            raise ValueError(f"spec_size {audio.spec_size} must be a multiple of n_mels {fe.n_mels}: HTSAT "
                             "folds the time axis into spec_size // n_mels frequency rows")
        max_frames = audio.spec_size * (audio.spec_size // fe.n_mels)
        if fe.n_frames > max_frames:
            raise ValueError(f"a clip of {fe.clip_samples} samples gives {fe.n_frames} frames; the Swin "
                             f"input holds at most {max_frames}")
        if fe.fmax > fe.sample_rate / 2:
            raise ValueError(f"fmax {fe.fmax} Hz is above the Nyquist frequency of {fe.sample_rate} Hz")


def laion_clap_spec(
    *,
    front_end: LogMelSettings | None = None,
    text_vocab_size: int = 50_265,
    text_hidden_size: int = 768,
    text_layers: int = 12,
    text_heads: int = 12,
    text_intermediate_size: int = 3072,
    text_max_positions: int = 514,
    audio_embed_dim: int = 128,
    audio_depths: Sequence[int] = (2, 2, 12, 2),
    audio_heads: Sequence[int] = (4, 8, 16, 32),
    audio_window_size: int = 8,
    spec_size: int = 256,
    projection_dim: int = 512,
) -> ClapSpec:
    """The architecture of a non-fusion laion CLAP with an HTSAT audio tower and a RoBERTa text tower.

    The defaults are `music_speech_audioset_epoch_15_esc_89.98.pt`: HTSAT-base (embed_dim 128,
    depths 2-2-12-2, 1024-d output), roberta-base, a 512-d joint space, 48 kHz / 10 s / 64 mels.
    Smaller values build tiny models for tests.
    """
    from transformers import ClapConfig

    front_end = front_end or LogMelSettings()
    text_config = dict(
        vocab_size=text_vocab_size, hidden_size=text_hidden_size, num_hidden_layers=text_layers,
        num_attention_heads=text_heads, intermediate_size=text_intermediate_size,
        max_position_embeddings=text_max_positions, type_vocab_size=1, hidden_act="gelu",
        layer_norm_eps=1e-5,  # roberta-base's value; ClapTextConfig's default (1e-12) is BERT's
        pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )
    audio_config = dict(
        spec_size=spec_size, num_mel_bins=front_end.n_mels, patch_size=4, patch_stride=[4, 4],
        patch_embed_input_channels=1, flatten_patch_embeds=True, enable_patch_layer_norm=True,
        patch_embeds_hidden_size=audio_embed_dim, depths=list(audio_depths),
        num_attention_heads=list(audio_heads), num_hidden_layers=len(audio_depths),
        window_size=audio_window_size, mlp_ratio=4.0, qkv_bias=True, hidden_act="gelu",
        layer_norm_eps=1e-5, enable_fusion=False,
        hidden_size=audio_embed_dim * 2 ** (len(audio_depths) - 1),  # HTSAT's output width
    )
    config = ClapConfig(text_config=text_config, audio_config=audio_config,
                        projection_dim=projection_dim, projection_hidden_act="relu")
    spec = ClapSpec(model=config, front_end=front_end)
    spec.validate()
    return spec


# --------------------------------------------------------------------------------------------
# laion <-> transformers key names
# --------------------------------------------------------------------------------------------

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
_FIXED_TRANSFORMERS_BUFFERS = ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids")


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

    transformers-only fixed buffers (`_FIXED_TRANSFORMERS_BUFFERS`) are left out, as laion files
    written with current transformers do.
    """
    laion: dict[str, torch.Tensor] = {}
    qkv_parts: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if key in _FIXED_TRANSFORMERS_BUFFERS:
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
    without running pickled code unless `trust=True` (see `toolkit.models.checkpoints`).
    """
    state_dict = state_dict_of(read_checkpoint(path, trust=trust))
    if prefix is None:
        prefix = find_laion_prefix(state_dict, source=str(path))
    weights = strip_prefix(state_dict, prefix)
    if not weights:
        raise CheckpointError(f"{path}: no keys under the prefix '{prefix}'")
    return weights


# --------------------------------------------------------------------------------------------
# Front end: laion HTSAT's log-mel spectrogram, in torch
# --------------------------------------------------------------------------------------------

def _hz_to_slaney_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above."""
    linear = hz / (200.0 / 3.0)
    log_step = math.log(6.4) / 27.0
    logarithmic = 15.0 + torch.log(torch.clamp(hz, min=1e-10) / 1000.0) / log_step
    return torch.where(hz >= 1000.0, logarithmic, linear)


def _slaney_mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    log_step = math.log(6.4) / 27.0
    return torch.where(mel >= 15.0, 1000.0 * torch.exp(log_step * (mel - 15.0)), mel * (200.0 / 3.0))


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float,
                          fmax: float) -> torch.Tensor:
    """Triangular mel filters, Slaney scale and area normalisation, as `(n_fft // 2 + 1, n_mels)`.

    The same filters as `librosa.filters.mel(htk=False, norm='slaney')` (what torchlibrosa's
    LogmelFilterBank uses), computed in float64 and returned as float32.
    """
    fft_hz = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.linspace(float(_hz_to_slaney_mel(torch.tensor(float(fmin), dtype=torch.float64))),
                               float(_hz_to_slaney_mel(torch.tensor(float(fmax), dtype=torch.float64))),
                               n_mels + 2, dtype=torch.float64)
    hz_edges = _slaney_mel_to_hz(mel_edges)
    widths = hz_edges[1:] - hz_edges[:-1]
    distance = hz_edges[:, None] - fft_hz[None, :]  # (n_mels + 2, n_freqs)
    rising = -distance[:-2] / widths[:-1, None]
    falling = distance[2:] / widths[1:, None]
    filters = torch.clamp(torch.minimum(rising, falling), min=0.0)
    filters = filters * (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]  # equal area per filter
    return filters.T.to(torch.float32).contiguous()


class HtsatLogMel(nn.Module):
    """`(batch, samples)` waveforms -> `(batch, 1, frames, n_mels)` log-mel, as laion's HTSAT computes it.

    torchlibrosa's Spectrogram (periodic Hann window of n_fft samples, centred frames with
    reflect padding, |STFT|^2) then LogmelFilterBank (Slaney filters, 10 log10(max(x, 1e-10)),
    ref 1.0, no top_db clipping).
    """

    def __init__(self, settings: LogMelSettings):
        super().__init__()
        self.settings = settings
        self.register_buffer("window", torch.hann_window(settings.window_size, periodic=True,
                                                         dtype=torch.float32), persistent=False)
        self.register_buffer("mel_filters", slaney_mel_filterbank(
            settings.sample_rate, settings.window_size, settings.n_mels, settings.fmin, settings.fmax),
            persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        s = self.settings
        spectrum = torch.stft(waveforms.float(), n_fft=s.window_size, hop_length=s.hop_size,
                              win_length=s.window_size, window=self.window, center=True,
                              pad_mode="reflect", return_complex=True)
        power = spectrum.real.square() + spectrum.imag.square()  # (batch, freqs, frames)
        mel = torch.matmul(power.transpose(1, 2), self.mel_filters)  # (batch, frames, n_mels)
        return (10.0 * torch.log10(torch.clamp(mel, min=_LOG_AMIN))).unsqueeze(1)


def repeat_pad(waveforms: torch.Tensor, length: int) -> torch.Tensor:
    """laion's `repeatpad` for `(batch, samples)` shorter than `length`: tile the signal a whole
    number of times (floor(length / samples)), then zero-pad the rest."""
    samples = waveforms.shape[-1]
    if samples >= length:
        return waveforms
    tiled = waveforms.repeat(1, length // samples)
    return F.pad(tiled, (0, length - tiled.shape[-1]))


def clip_starts(samples: int, clip_samples: int) -> list[int]:
    """Start offsets of the clips a signal longer than one clip is cut into: 0, L, 2L, ...,
    with the last clip aligned to the end (overlapping its predecessor when needed)."""
    count = max(1, math.ceil(samples / clip_samples))
    return [i * clip_samples for i in range(count - 1)] + [max(0, samples - clip_samples)]


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

_TOKENIZER_FILES = ("vocab.json", "merges.txt")


def _env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def load_roberta_tokenizer(name_or_path: str | Path = DEFAULT_TOKENIZER, *,
                           offline: bool | None = None) -> PreTrainedTokenizerBase:
    """The RoBERTa BPE tokenizer CLAP's text tower was trained with: a Hub id or a local folder.

    The folder (or Hub repository) must hold `vocab.json` and `merges.txt`, as roberta-base does.
    Without a `tokenizer.json` (the cache the reference's slow `RobertaTokenizer` leaves), the fast
    tokenizer is built from those two files and checked to give the slow tokenizer's ids
    (`toolkit.models.roberta_bpe`). `offline` (default: the HF_HUB_OFFLINE environment variable)
    forbids downloads; a Hub id then resolves from the local Hugging Face cache only. We resolve the
    files ourselves because transformers 5 silently builds an empty tokenizer (special tokens only)
    when they are missing.
    """
    from transformers import RobertaTokenizerFast

    folder = Path(name_or_path)
    if not folder.is_dir():
        folder = _tokenizer_snapshot(str(name_or_path), offline=_env_offline() if offline is None else offline)
    missing = [f for f in _TOKENIZER_FILES if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(f"tokenizer folder {folder} lacks {', '.join(missing)} (a RoBERTa BPE tokenizer "
                              f"needs {' and '.join(_TOKENIZER_FILES)})")
    tokenizer = RobertaTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    vocabulary_size = len(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    if len(tokenizer) < vocabulary_size:
        raise CheckpointError(f"the tokenizer read from {folder} has {len(tokenizer)} tokens, its vocab.json "
                              f"{vocabulary_size}")
    if not (folder / "tokenizer.json").is_file():
        from toolkit.models.roberta_bpe import check_against_slow_bpe

        check_against_slow_bpe(tokenizer, folder)
    return tokenizer


def _tokenizer_snapshot(repo_id: str, *, offline: bool) -> Path:
    """The local folder of a Hub tokenizer: from the cache, or downloaded unless `offline`."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(snapshot_download(repo_id, local_files_only=offline, allow_patterns=[
            *_TOKENIZER_FILES, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]))
    except (OSError, ValueError, HfHubHTTPError) as exc:
        how = "downloads are off (offline mode)" if offline else "it could not be downloaded"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"the CLAP text tokenizer '{repo_id}' is not in the local Hugging Face cache and {how}. "
            f"On a machine with internet access run\n"
            f"    hf download {repo_id} {' '.join(_TOKENIZER_FILES)} --local-dir roberta-base-tokenizer\n"
            f"then copy that folder here and pass it with --weight roberta-base-tokenizer=DIR (Python: "
            f"tokenizer=DIR, or weights={{'roberta-base-tokenizer': DIR}}). "
            f"({type(exc).__name__}: {detail})"
        ) from exc


# --------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------

class ClapEncoder(nn.Module):
    """Frozen laion CLAP: `encode_text` and `encode_audio` give L2-normalised joint embeddings.

    Always in eval mode (`train()` does not change that) with gradients off, so it can sit inside
    a trainable system and still give deterministic queries. Embeddings are computed under
    `torch.no_grad()` (not `inference_mode`, so they can feed layers being trained) and returned on
    the encoder's device.
    """

    def __init__(self, model: ClapModel | ClapTextTower, front_end: LogMelSettings,
                 tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        ClapSpec(model.config, front_end).validate()
        if len(tokenizer) > model.config.text_config.vocab_size:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, the text tower embeds only "
                             f"{model.config.text_config.vocab_size}")
        self.model = model
        self.front_end = front_end
        self.log_mel = HtsatLogMel(front_end)
        self.tokenizer = tokenizer
        self.requires_grad_(False)
        super().train(False)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_laion_checkpoint(
        cls,
        path: str | Path,
        *,
        spec: ClapSpec | None = None,
        prefix: str | None = None,
        tokenizer: str | Path | PreTrainedTokenizerBase = DEFAULT_TOKENIZER,
        offline: bool | None = None,
        trust: bool = False,
        device: str | torch.device = "cpu",
        towers: ClapTowers = "both",
    ) -> ClapEncoder:
        """Load laion CLAP weights from `path` (laion `.pt`, or a baseline / AudioSep `.ckpt`).

        `spec` defaults to `music_speech_audioset_epoch_15_esc_89.98.pt`'s architecture;
        `tokenizer` is a Hub id, a local folder, or a tokenizer object; `towers="text"` builds the
        text tower only (see `from_laion_weights`).
        """
        if isinstance(tokenizer, (str, Path)):  # first: it fails faster than reading the weights
            tokenizer = load_roberta_tokenizer(tokenizer, offline=offline)
        laion = read_laion_clap_weights(path, prefix=prefix, trust=trust)
        return cls.from_laion_weights(laion, spec=spec, tokenizer=tokenizer, source=str(path), device=device,
                                      towers=towers)

    @classmethod
    def from_laion_weights(
        cls,
        laion: Mapping[str, torch.Tensor],
        *,
        tokenizer: PreTrainedTokenizerBase,
        spec: ClapSpec | None = None,
        source: str = "state dict",
        device: str | torch.device = "cpu",
        towers: ClapTowers = "both",
    ) -> ClapEncoder:
        """Build the encoder from laion-named weights already in memory (prefix removed).

        Used when one checkpoint file holds both a separation net and its CLAP query encoder, so
        that the file is read once. The model is built empty and takes the given tensors as its
        own (no random initialisation, no copy). `towers="text"` builds only the text tower and
        its projection, which is all a text query needs: the audio tower's weights are left
        untouched (with a memory-mapped checkpoint, never even read) and `encode_audio` is refused.
        """
        spec = spec or laion_clap_spec()
        check_front_end(laion, spec.front_end, source=source)
        model = empty_clap_model(spec, towers)
        load_laion_weights(model, laion, source=source)
        return cls(model, spec.front_end, tokenizer).to(device)

    def train(self, mode: bool = True) -> ClapEncoder:
        return super().train(False)

    # -- properties -----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.log_mel.window.device

    @property
    def has_audio_tower(self) -> bool:
        return hasattr(self.model, "audio_model")

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def sample_rate(self) -> int:
        return self.front_end.sample_rate

    # -- text -----------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], *, batch_size: int = 64) -> torch.Tensor:
        """`(len(texts), embedding_dim)` unit-norm text embeddings.

        Tokens are truncated at 512 as in the reference. The reference pads every text to 512
        tokens; we pad to the longest text of each batch, which gives the same embeddings (RoBERTa's
        positions come from the token ids and padding is masked; measured equal to float32 round-off).
        """
        if isinstance(texts, str):
            raise TypeError("encode_text takes a list of texts, not a single string")
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.embedding_dim, device=self.device)
        chunks = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                    max_length=MAX_TEXT_TOKENS, return_tensors="pt")
            chunks.append(self.embed_tokens(tokens["input_ids"], tokens["attention_mask"]))
        return torch.cat(chunks)

    @torch.no_grad()
    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings of already tokenized text: pooler output -> projection -> L2 norm."""
        text = self.model.text_model(input_ids=input_ids.to(self.device),
                                     attention_mask=attention_mask.to(self.device))
        return F.normalize(self.model.text_projection(text.pooler_output), dim=-1)

    # -- audio ----------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_audio(self, waveforms: torch.Tensor, *, batch_size: int = 8) -> torch.Tensor:
        """`(batch, embedding_dim)` unit-norm embeddings of `(batch, samples)` mono waveforms.

        Waveforms must be at `sample_rate` (48 kHz for the real model). Shorter than one clip:
        repeat-padded as in the reference. Longer: the mean over consecutive clips (module docstring).
        `batch_size` bounds how many clips go through the network at once.
        """
        self._require_audio_tower()
        if waveforms.dim() != 2:
            raise ValueError(f"encode_audio expects (batch, samples) waveforms, got shape {tuple(waveforms.shape)}")
        if waveforms.shape[-1] == 0:
            raise ValueError("encode_audio got empty waveforms")
        clip = self.front_end.clip_samples
        waveforms = waveforms.to(self.device, torch.float32)
        batch, samples = waveforms.shape
        starts = clip_starts(samples, clip)
        clips = torch.stack([waveforms[:, s:s + clip] for s in starts], dim=1)  # (batch, n_clips, <=clip)
        clips = repeat_pad(clips.reshape(batch * len(starts), -1), clip)
        embeddings = torch.cat([self.embed_clips(part) for part in clips.split(batch_size)])
        embeddings = embeddings.view(batch, len(starts), -1)
        if len(starts) == 1:
            return embeddings[:, 0]
        return F.normalize(embeddings.mean(dim=1), dim=-1)

    @torch.no_grad()
    def embed_clips(self, clips: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings of `(batch, clip_samples)` clips (no padding or cutting here)."""
        self._require_audio_tower()
        features = self.log_mel(clips.to(self.device, torch.float32))
        audio = self.model.audio_model(input_features=features)
        return F.normalize(self.model.audio_projection(audio.pooler_output), dim=-1)

    def _require_audio_tower(self) -> None:
        if not self.has_audio_tower:
            raise ValueError("this CLAP encoder holds the text tower only (built with towers='text'); "
                             "audio embeddings need towers='both'")


class ClapTextTower(nn.Module):
    """The text half of transformers' `ClapModel`: `text_model` and `text_projection`, under the same
    names (so the same weights load), with the whole model's `config`. What a text query needs;
    the HTSAT audio tower is about 30 M parameters more."""

    def __init__(self, config: ClapConfig):
        super().__init__()
        from transformers.models.clap.modeling_clap import ClapProjectionLayer, ClapTextModel

        self.config = config
        self.text_model = ClapTextModel(config.text_config)
        self.text_projection = ClapProjectionLayer(config.text_config)


def build_clap_model(spec: ClapSpec) -> ClapModel:
    """A randomly initialised transformers `ClapModel` for `spec`, in eval mode."""
    from transformers import ClapModel

    spec.validate()
    return ClapModel(spec.model).eval()


def empty_clap_model(spec: ClapSpec, towers: ClapTowers = "both") -> ClapModel | ClapTextTower:
    """`ClapModel` (or its `ClapTextTower`) for `spec` on the meta device, in eval mode: structure only,
    for `load_laion_weights` to fill."""
    if towers not in CLAP_TOWERS:
        raise ValueError(f"towers must be one of {', '.join(CLAP_TOWERS)}, got {towers!r}")
    spec.validate()
    if towers == "text":
        return empty_module(lambda: ClapTextTower(spec.model)).eval()
    from transformers import ClapModel

    return empty_module(lambda: ClapModel(spec.model)).eval()


# laion key prefixes of the text tower and its projection (all a `ClapTextTower` loads).
_LAION_TEXT_PREFIXES = ("text_branch.", "text_projection.")


def _fixed_buffer(name: str, model: ClapModel | ClapTextTower) -> torch.Tensor:
    """The value `ClapTextEmbeddings` gives a fixed buffer (`_FIXED_TRANSFORMERS_BUFFERS`): position
    ids 0..max-1, token type ids 0; computed here for models built on the meta device."""
    positions = torch.arange(model.config.text_config.max_position_embeddings).expand((1, -1))
    return positions if name.endswith("position_ids") else torch.zeros(positions.shape, dtype=torch.long)


def load_laion_weights(model: ClapModel | ClapTextTower, laion: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load laion-named weights into a transformers `ClapModel` (or a `ClapTextTower`, which takes the
    text keys and leaves the rest alone), refusing anything that does not fit.

    A model built on the meta device (`empty_clap_model`) takes the tensors as its own; any other
    model gets them copied in.
    """
    if isinstance(model, ClapTextTower):
        laion = {k: v for k, v in laion.items() if k.startswith(_LAION_TEXT_PREFIXES)}
    converted = laion_to_transformers(laion)
    own = model.state_dict()
    for name in _FIXED_TRANSFORMERS_BUFFERS:
        if name not in converted:
            converted[name] = _fixed_buffer(name, model) if own[name].is_meta else own[name]
    empty = any(p.is_meta for p in model.parameters())
    load_weights(model, converted, source=f"{source} (laion CLAP weights, renamed to transformers' ClapModel keys)",
                 assign=empty)


def check_front_end(laion: Mapping[str, torch.Tensor], front_end: LogMelSettings, *, source: str,
                    tolerance: float = 1e-6) -> None:
    """Refuse a checkpoint whose stored torchlibrosa front end does not match `front_end`.

    laion files carry the STFT kernels (their shape gives n_fft) and the mel filters; comparing
    them with ours catches a wrong sample rate, n_fft, n_mels, fmin or fmax. Absent keys are fine.
    """
    kernel = laion.get("audio_branch.spectrogram_extractor.stft.conv_real.weight")
    if kernel is not None and tuple(kernel.shape) != (front_end.window_size // 2 + 1, 1, front_end.window_size):
        raise CheckpointError(f"{source}: its STFT kernels {tuple(kernel.shape)} are for n_fft={kernel.shape[-1]}, "
                              f"the CLAP spec says window_size={front_end.window_size}")
    stored = laion.get("audio_branch.logmel_extractor.melW")
    if stored is None:
        return
    ours = slaney_mel_filterbank(front_end.sample_rate, front_end.window_size, front_end.n_mels,
                                 front_end.fmin, front_end.fmax)
    if tuple(stored.shape) != tuple(ours.shape):
        raise CheckpointError(f"{source}: its mel filters have shape {tuple(stored.shape)}, the CLAP spec gives "
                              f"{tuple(ours.shape)} (window_size {front_end.window_size}, n_mels {front_end.n_mels})")
    error = float((stored.float() - ours).abs().max())
    if error > tolerance:
        raise CheckpointError(
            f"{source}: its mel filters differ from ours by up to {error:.3g}: the checkpoint was made for "
            f"other front-end settings than {front_end} (sample rate, fmin or fmax)")


class ClapArchitecture(StrictModel):
    """The laion CLAP architecture; defaults are `music_speech_audioset_epoch_15_esc_89.98.pt`."""

    text_vocab_size: int = 50_265
    text_hidden_size: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_intermediate_size: int = 3072
    text_max_positions: int = 514
    audio_embed_dim: int = 128
    audio_depths: list[int] = [2, 2, 12, 2]
    audio_heads: list[int] = [4, 8, 16, 32]
    audio_window_size: int = 8
    spec_size: int = 256
    projection_dim: int = 512
    sample_rate: int = 48_000
    clip_samples: int = 480_000
    window_size: int = 1024
    hop_size: int = 480
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14_000.0

    def spec(self) -> ClapSpec:
        front_end = LogMelSettings(sample_rate=self.sample_rate, clip_samples=self.clip_samples,
                                   window_size=self.window_size, hop_size=self.hop_size, n_mels=self.n_mels,
                                   fmin=self.fmin, fmax=self.fmax)
        return laion_clap_spec(
            front_end=front_end, text_vocab_size=self.text_vocab_size, text_hidden_size=self.text_hidden_size,
            text_layers=self.text_layers, text_heads=self.text_heads,
            text_intermediate_size=self.text_intermediate_size, text_max_positions=self.text_max_positions,
            audio_embed_dim=self.audio_embed_dim, audio_depths=tuple(self.audio_depths),
            audio_heads=tuple(self.audio_heads), audio_window_size=self.audio_window_size,
            spec_size=self.spec_size, projection_dim=self.projection_dim)
