"""`ClapEncoder`: a frozen laion CLAP on transformers' `ClapModel` (or its text tower alone), built
empty and filled with laion-named weights, giving unit-norm text and audio embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from dcase9.errors import CheckpointError
from dcase9.models.checkpoints import empty_module, load_weights
from dcase9.models.clap.architecture import ClapArchitecture, ClapSpec, laion_clap_spec
from dcase9.models.clap.frontend import HtsatLogMel, LogMelSettings, check_front_end, clip_starts, repeat_pad
from dcase9.models.clap.laion_keys import FIXED_TRANSFORMERS_BUFFERS, laion_to_transformers, read_laion_clap_weights
from dcase9.models.clap.text_tower import ClapProjection, RobertaTextModel, TextTowerConfig
from dcase9.models.clap.tokenizer import DEFAULT_TOKENIZER, MAX_TEXT_TOKENS, RobertaBpe, load_roberta_tokenizer

if TYPE_CHECKING:
    from transformers import ClapModel, ClapTextConfig, PreTrainedTokenizerBase

# Which parts of CLAP to build: "text" (the text tower and its projection: all a text query needs)
# or "both" (adds the HTSAT audio tower: ATS, and training, whose checkpoints carry the whole model).
ClapTowers = Literal["both", "text"]
CLAP_TOWERS: tuple[ClapTowers, ...] = ("both", "text")


class ClapEncoder(nn.Module):
    """Frozen laion CLAP: `encode_text` and `encode_audio` give L2-normalised joint embeddings.

    Always in eval mode (`train()` does not change that) with gradients off, so it can sit inside
    a trainable system and still give deterministic queries. Embeddings are computed under
    `torch.no_grad()` (not `inference_mode`, so they can feed layers being trained) and returned on
    the encoder's device. `encode_text(..., dropout=True)` runs the text tower with RoBERTa's
    dropout active for that call only (training as the official baseline did; see there).
    """

    def __init__(self, model: ClapModel | ClapTextTower, front_end: LogMelSettings,
                 tokenizer: PreTrainedTokenizerBase | RobertaBpe):
        super().__init__()
        if not isinstance(model, ClapTextTower):  # the front end feeds the audio tower only
            ClapSpec(model.config, front_end).validate()
        vocabulary = model.text_model.embeddings.word_embeddings.num_embeddings
        if len(tokenizer) > vocabulary:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, the text tower embeds only {vocabulary}")
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
        spec: ClapSpec | ClapArchitecture | None = None,
        prefix: str | None = None,
        tokenizer: str | Path | PreTrainedTokenizerBase | RobertaBpe = DEFAULT_TOKENIZER,
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
        tokenizer: PreTrainedTokenizerBase | RobertaBpe,
        spec: ClapSpec | ClapArchitecture | None = None,
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
        `spec` may be a `ClapArchitecture`: the text tower is then built without importing
        transformers at all (with a `tokenizer` from `load_roberta_bpe`, the whole text query path
        runs without it: about 1 s less start-up).
        """
        if isinstance(spec, ClapArchitecture):
            front_end, vocabulary = spec.front_end(), spec.text_tower().vocab_size
        else:
            spec = spec or laion_clap_spec()
            front_end, vocabulary = spec.front_end, spec.model.text_config.vocab_size
        if len(tokenizer) > vocabulary:  # a user error before any weight is touched
            raise CheckpointError(f"{source}: its CLAP text tower embeds {vocabulary} tokens, the tokenizer given "
                                  f"has {len(tokenizer)}; pass the tokenizer it was trained with "
                                  "(--weight roberta-base-tokenizer=DIR)")
        check_front_end(laion, front_end, source=source)
        if isinstance(spec, ClapArchitecture):
            model = (empty_module(lambda: ClapTextTower(spec.text_tower())).eval() if towers == "text"
                     else empty_clap_model(spec.spec(), towers))
        else:
            model = empty_clap_model(spec, towers)
        load_laion_weights(model, laion, source=source)
        return cls(model, front_end, tokenizer).to(device)

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
        return int(self.model.text_projection.linear2.out_features)

    @property
    def sample_rate(self) -> int:
        return self.front_end.sample_rate

    # -- text -----------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], *, batch_size: int = 64, dropout: bool = False) -> torch.Tensor:
        """`(len(texts), embedding_dim)` unit-norm text embeddings.

        Tokens are truncated at 512 as in the reference. The reference pads every text to 512
        tokens; we pad to the longest text of each batch, which gives the same embeddings (RoBERTa's
        positions come from the token ids and padding is masked; measured equal to float32 round-off).

        `dropout=True` computes them with the text tower's dropout active (RoBERTa's 0.1 on the
        embeddings, the attention probabilities and each sublayer's output), drawn from the global
        RNG of the encoder's device: what the official baseline's and AudioSep's training computed,
        because Lightning 2.0 put their whole module, CLAP included, in train mode. The encoder is
        back in eval mode when the call returns. Padding to the batch's longest text instead of 512
        tokens leaves the distribution unchanged (padded positions are masked out of the attention).
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
            chunks.append(self.embed_tokens(tokens["input_ids"], tokens["attention_mask"], dropout=dropout))
        return torch.cat(chunks)

    @torch.no_grad()
    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                     dropout: bool = False) -> torch.Tensor:
        """Unit-norm embeddings of already tokenized text: pooler output -> projection -> L2 norm
        (`dropout`: see `encode_text`)."""
        text_model = self.model.text_model
        inputs = {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}
        if not dropout:
            text = text_model(**inputs)
        else:
            if not any(isinstance(m, nn.Dropout) and m.p > 0 for m in text_model.modules()):
                raise ValueError("this CLAP text tower has no dropout (the inference-only tower of towers='text'); "
                                 "build the encoder with towers='both' to compute embeddings with dropout")
            text_model.train(True)
            try:
                text = text_model(**inputs)
            finally:
                text_model.train(False)
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
    names (so the same weights load), for a `TextTowerConfig` (or transformers' `ClapTextConfig`, its
    `config`). What a text query needs; the HTSAT audio tower is about 30 M parameters more. Built
    in plain PyTorch (`dcase9.models.clap.text_tower`): importing transformers' modelling code
    would cost more start-up than the tower itself."""

    def __init__(self, config: TextTowerConfig | ClapTextConfig):
        super().__init__()
        self.config = config
        self.text_model = RobertaTextModel(config)
        self.text_projection = ClapProjection(config)


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
        return empty_module(lambda: ClapTextTower(spec.model.text_config)).eval()
    from transformers import ClapModel

    return empty_module(lambda: ClapModel(spec.model)).eval()


# laion key prefixes of the text tower and its projection (all a `ClapTextTower` loads).
_LAION_TEXT_PREFIXES = ("text_branch.", "text_projection.")


def _fixed_buffer(name: str, model: ClapModel | ClapTextTower) -> torch.Tensor:
    """The value `ClapTextEmbeddings` gives a fixed buffer (`FIXED_TRANSFORMERS_BUFFERS`): position
    ids 0..max-1, token type ids 0; computed here for models built on the meta device."""
    positions = torch.arange(model.text_model.embeddings.position_embeddings.num_embeddings).expand((1, -1))
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
    for name in FIXED_TRANSFORMERS_BUFFERS:
        if name not in converted:
            converted[name] = _fixed_buffer(name, model) if own[name].is_meta else own[name]
    empty = any(p.is_meta for p in model.parameters())
    load_weights(model, converted, source=f"{source} (laion CLAP weights, renamed to transformers' ClapModel keys)",
                 assign=empty)
