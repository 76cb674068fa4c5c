"""The architecture of a laion CLAP: transformers' `ClapConfig` plus laion's front end (`ClapSpec`),
built from keyword sizes (`laion_clap_spec`) or from a typed configuration section
(`ClapArchitecture`, what system and training configurations hold)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dcase9.config import StrictModel
from dcase9.models.clap.frontend import LogMelSettings
from dcase9.models.clap.text_tower import TextTowerConfig

if TYPE_CHECKING:
    from transformers import ClapConfig


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
    text = TextTowerConfig(vocab_size=text_vocab_size, hidden_size=text_hidden_size, num_hidden_layers=text_layers,
                           num_attention_heads=text_heads, intermediate_size=text_intermediate_size,
                           max_position_embeddings=text_max_positions, projection_dim=projection_dim)
    text_config = text.encoder_settings()
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
                        projection_dim=text.projection_dim, projection_hidden_act=text.projection_hidden_act)
    spec = ClapSpec(model=config, front_end=front_end)
    spec.validate()
    return spec


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

    def front_end(self) -> LogMelSettings:
        return LogMelSettings(sample_rate=self.sample_rate, clip_samples=self.clip_samples,
                              window_size=self.window_size, hop_size=self.hop_size, n_mels=self.n_mels,
                              fmin=self.fmin, fmax=self.fmax)

    def text_tower(self) -> TextTowerConfig:
        """The text tower alone (no transformers import: what a text query needs)."""
        return TextTowerConfig(vocab_size=self.text_vocab_size, hidden_size=self.text_hidden_size,
                               num_hidden_layers=self.text_layers, num_attention_heads=self.text_heads,
                               intermediate_size=self.text_intermediate_size,
                               max_position_embeddings=self.text_max_positions, projection_dim=self.projection_dim)

    def spec(self) -> ClapSpec:
        """The whole model's architecture: transformers' `ClapConfig` and the front end."""
        return laion_clap_spec(
            front_end=self.front_end(), text_vocab_size=self.text_vocab_size, text_hidden_size=self.text_hidden_size,
            text_layers=self.text_layers, text_heads=self.text_heads,
            text_intermediate_size=self.text_intermediate_size, text_max_positions=self.text_max_positions,
            audio_embed_dim=self.audio_embed_dim, audio_depths=tuple(self.audio_depths),
            audio_heads=tuple(self.audio_heads), audio_window_size=self.audio_window_size,
            spec_size=self.spec_size, projection_dim=self.projection_dim)
