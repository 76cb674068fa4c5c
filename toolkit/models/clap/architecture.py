"""The architecture of a laion CLAP: transformers' `ClapConfig` plus laion's front end (`ClapSpec`),
built from keyword sizes (`laion_clap_spec`) or from a typed configuration section
(`ClapArchitecture`, what system and training configurations hold)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

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


def laion_clap_spec(*, front_end: LogMelSettings | None = None, **sizes: Any) -> ClapSpec:
    """The architecture of a non-fusion laion CLAP (HTSAT audio tower, RoBERTa text tower) from keyword
    sizes: the fields of `ClapArchitecture` other than the front end's (`text_hidden_size=16`, ...), and
    the front end as `LogMelSettings`. Smaller values build tiny models for tests."""
    front = asdict(front_end) if front_end is not None else {}
    return ClapArchitecture(**sizes, **front).spec()


_TEXT = TextTowerConfig()  # roberta-base, and the projection of the checkpoint below
_FRONT_END = LogMelSettings()  # 48 kHz, 10 s clips, 64 mel bands


class ClapArchitecture(StrictModel):
    """The laion CLAP architecture; defaults are `music_speech_audioset_epoch_15_esc_89.98.pt`."""

    # Every default is the checkpoint's; the text tower's and the front end's come from their own
    # definitions (one home per fact), the audio tower's are HTSAT-base.
    text_vocab_size: int = _TEXT.vocab_size
    text_hidden_size: int = _TEXT.hidden_size
    text_layers: int = _TEXT.num_hidden_layers
    text_heads: int = _TEXT.num_attention_heads
    text_intermediate_size: int = _TEXT.intermediate_size
    text_max_positions: int = _TEXT.max_position_embeddings
    audio_embed_dim: int = 128
    audio_depths: list[int] = [2, 2, 12, 2]
    audio_heads: list[int] = [4, 8, 16, 32]
    audio_window_size: int = 8
    spec_size: int = 256
    projection_dim: int = _TEXT.projection_dim
    sample_rate: int = _FRONT_END.sample_rate
    clip_samples: int = _FRONT_END.clip_samples
    window_size: int = _FRONT_END.window_size
    hop_size: int = _FRONT_END.hop_size
    n_mels: int = _FRONT_END.n_mels
    fmin: float = _FRONT_END.fmin
    fmax: float = _FRONT_END.fmax

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
        """The whole model's architecture: transformers' `ClapConfig` and the front end. The defaults are
        `music_speech_audioset_epoch_15_esc_89.98.pt`: HTSAT-base (embed_dim 128, depths 2-2-12-2,
        1024-d output), roberta-base, a 512-d joint space, 48 kHz / 10 s / 64 mels."""
        from transformers import ClapConfig

        front_end = self.front_end()
        text = self.text_tower()
        audio_config = dict(
            spec_size=self.spec_size, num_mel_bins=front_end.n_mels, patch_size=4, patch_stride=[4, 4],
            patch_embed_input_channels=1, flatten_patch_embeds=True, enable_patch_layer_norm=True,
            patch_embeds_hidden_size=self.audio_embed_dim, depths=list(self.audio_depths),
            num_attention_heads=list(self.audio_heads), num_hidden_layers=len(self.audio_depths),
            window_size=self.audio_window_size, mlp_ratio=4.0, qkv_bias=True, hidden_act="gelu",
            layer_norm_eps=1e-5, enable_fusion=False,
            hidden_size=self.audio_embed_dim * 2 ** (len(self.audio_depths) - 1),  # HTSAT's output width
        )
        config = ClapConfig(text_config=text.encoder_settings(), audio_config=audio_config,
                            projection_dim=text.projection_dim, projection_hidden_act=text.projection_hidden_act)
        spec = ClapSpec(model=config, front_end=front_end)
        spec.validate()
        return spec
