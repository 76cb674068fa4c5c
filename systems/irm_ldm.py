"""System 3 (IRM-LDM) and its diagnostic: separation in AudioLDM's latent space.

- `3` (`irm-ldm`): a CLAP text query conditions a ratio mask on the mixture's AudioLDM VAE latent,
  decoded by the VAE and the vocoder (`dcase9.models.irm_ldm`). The checkpoint holds the mask
  network (`ss_model.mask_net.*`) and its CLAP query encoder (`query_encoder.model.*`); the VAE and
  vocoder come from the registry (`audioldm-vae`, `audioldm-vocoder`) or `--weight NAME=DIR`.
  Option `mask: ones` skips the mask (and needs neither checkpoint nor CLAP): the latent path
  applied to the mixture.
- `3-roundtrip`: the VAE + vocoder round trip of the *reference* (validation only). Its score is
  the ceiling of any system that must pass through AudioLDM's latent path, the mask being perfect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from dcase9.systems.base import BuildContext, SystemSpec
from dcase9.systems.text_queried import ClapArchitecture, load_query_encoder
from dcase9.config import StrictModel, parse_model
from dcase9.models.audioldm import AudioLdmCodec, load_audioldm_vae, load_audioldm_vocoder
from dcase9.models.checkpoints import state_dict_of
from dcase9.models.clap import ClapEncoder, audio_query_embedding
from dcase9.models.irm_ldm import VAE_WEIGHT, VOCODER_WEIGHT, IrmLdm, MaskNet, MaskNetConfig, OutputScale


class IrmLdmConfig(StrictModel):
    """System 3's settings (`--system-config FILE` overrides any of them)."""

    mask: Literal["predicted", "ones"] = "predicted"  # ones: no mask, the latent path on the mixture
    output_scale: OutputScale = "input"  # must be what the mask net was trained with (`dcase9 train` says)
    mask_net: MaskNetConfig = MaskNetConfig()
    clap: ClapArchitecture = ClapArchitecture()
    query_encoder_prefix: str | None = None  # found automatically ("query_encoder.model." by default)


class RoundtripConfig(StrictModel):
    """Settings of `3-roundtrip`."""

    output_scale: OutputScale = "input"


class IrmLdmSeparator(nn.Module):
    """A SeparationModel around `IrmLdm`; queries are embedded by the checkpoint's CLAP (none for mask 'ones')."""

    def __init__(self, model: IrmLdm, clap: ClapEncoder | None):
        super().__init__()
        self.model = model
        self.clap = clap
        self.queried = clap is not None  # mask 'ones' takes no query
        self.sample_rate = model.sample_rate

    def encode_queries(self, queries: Sequence[str]) -> torch.Tensor | None:
        return None if self.clap is None else self.clap.encode_text(list(queries))

    def encode_audio_query(self, waveform: Any, sample_rate: int) -> torch.Tensor | None:
        """An audio example as a query, as AudioSep embeds it (`dcase9.models.clap.query`)."""
        return None if self.clap is None else audio_query_embedding(self.clap, waveform, sample_rate)

    def separate(self, mixture: torch.Tensor, conditions: torch.Tensor | None,
                 reference: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(mixture, conditions)


class RoundtripSeparator(nn.Module):
    """Returns what AudioLDM's VAE + vocoder make of the reference: no mask, no query."""

    queried = False

    def __init__(self, codec: AudioLdmCodec, *, restore_gain: bool):
        super().__init__()
        self.codec = codec
        self.restore_gain = restore_gain
        self.sample_rate = codec.settings.sample_rate

    def encode_queries(self, queries: Sequence[str]) -> torch.Tensor | None:
        return None

    def separate(self, mixture: torch.Tensor, conditions: torch.Tensor | None,
                 reference: torch.Tensor | None = None) -> torch.Tensor:
        if reference is None:
            raise ValueError("the round trip diagnostic needs the reference signals")
        return self.codec.roundtrip(reference, restore_gain=self.restore_gain)


def load_codec(context: BuildContext) -> AudioLdmCodec:
    """AudioLDM's VAE and vocoder from the registry (or --weight), on the context's device."""
    vae = load_audioldm_vae(context.weight(VAE_WEIGHT))
    vocoder = load_audioldm_vocoder(context.weight(VOCODER_WEIGHT))
    return AudioLdmCodec(vae, vocoder).to(context.device)


def build(spec: SystemSpec, context: BuildContext) -> IrmLdmSeparator:
    config = parse_model(context.options, IrmLdmConfig, source=f"system '{spec.name}' configuration")
    restore_gain = config.output_scale == "input"
    if config.mask == "ones":
        codec = load_codec(context)
        return IrmLdmSeparator(IrmLdm(codec, None, mask="ones", restore_gain=restore_gain).eval(), None)
    checkpoint_path = context.weight(spec.weights[0])
    weights: dict[str, Any] = dict(state_dict_of(context.read_checkpoint(checkpoint_path)))
    codec = load_codec(context)
    model = IrmLdm(codec, MaskNet(codec.latent_channels, config.mask_net), restore_gain=restore_gain)
    model.load_checkpoint_state_dict(weights, source=str(checkpoint_path))
    clap = load_query_encoder(weights, config, context, str(checkpoint_path))
    del weights  # the checkpoint may hold optimizer state; free it before inference
    return IrmLdmSeparator(model.to(context.device).eval(), clap)


def build_roundtrip(spec: SystemSpec, context: BuildContext) -> RoundtripSeparator:
    config = parse_model(context.options, RoundtripConfig, source=f"system '{spec.name}' configuration")
    return RoundtripSeparator(load_codec(context).eval(), restore_gain=config.output_scale == "input")
