"""IRM-LDM (System 3 of seed 003): a text-conditioned ratio mask in AudioLDM's VAE latent space.

    z_mix = VAE-encode(log-mel(mixture))              8 x 256 x 16 per 10.24 s, frozen
    mask  = sigmoid(MaskNet(z_mix | CLAP text query))   the only trained part
    s_hat = vocoder(VAE-decode(mask * z_mix))           frozen, trimmed to the input length

The mask network is a FiLM-conditioned ResUNet built from the baseline's blocks
(`dcase9.models.resunet`): five encoder levels (a `ConvBlockRes` and pooling each, with
ResUNet30's first five widths 32-384), a centre block and five mirrored decoder levels, every
block conditioned on the 512-d CLAP text embedding through additive FiLM biases; a 1x1 convolution
and a sigmoid give one ratio per latent element. Seed 003 says only "5 similar ResUNet blocks";
we read that as five ResUNet levels.

Scale: AudioLDM prepares every segment to peak 0.5 before its mel front end, so the vocoder's
output is at that scale, not the mixture's. We divide it by the preparation's gain (see
`AudioLdmCodec`), so the estimate is at the mixture's scale: with an all-ones mask the system
reproduces the mixture's level, and a mask below one can only lower it, as a ratio mask should.
`restore_gain=False` (`output_scale: normalized` in the system options) keeps AudioLDM's scale,
to measure what a wrong gain costs.

Losses (plain functions; `IrmLdmLoss` combines them): `waveform_mse` is seed 003's
L_MSE = ||s_hat - s||^2, averaged over samples; the optional LDM term is AudioLDM's own
noise-prediction loss evaluated on the predicted latent mask * z_mix with AudioLDM's UNet frozen
(`AudioLdmDiffusionPrior.loss`), i.e. a learnt prior that pulls the masked latent towards latents
AudioLDM would generate for the caption.

Training (`dcase9 train`, model kind `irm-ldm`) lives in `dcase9.training.irm_ldm`: the mask net
is the trained and saved part, the codec (and the LDM prior, when its term is on) is frozen and
left out of checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import field_validator
from torch import Tensor, nn

from dcase9.config import StrictModel
from dcase9.errors import CheckpointError
from dcase9.models.audioldm import AudioLdmAnalysis, AudioLdmCodec, AudioLdmDiffusionPrior
from dcase9.models.checkpoints import load_weights
from dcase9.models.resunet import FiLMGenerator, FiLMResUNet, init_like_reference

__all__ = [
    "CHECKPOINT_PREFIX",
    "DIFFUSION_WEIGHT",
    "IrmLdm",
    "IrmLdmLoss",
    "LatentSeparation",
    "MaskNet",
    "MaskNetConfig",
    "OutputScale",
    "VAE_WEIGHT",
    "VOCODER_WEIGHT",
    "waveform_mse",
]

# Where the mask network lives in a System 3 checkpoint's state_dict (the CLAP query encoder sits
# under `query_encoder.model.` in laion naming, as in the baseline's checkpoints).
CHECKPOINT_PREFIX = "ss_model.mask_net."

# Registry names of AudioLDM's parts (toolkit/weights.yaml); `--weight NAME=DIR` overrides them.
VAE_WEIGHT = "audioldm-vae"
VOCODER_WEIGHT = "audioldm-vocoder"
DIFFUSION_WEIGHT = "audioldm-diffusion"  # UNet, scheduler, text tower: the LDM training term only

MaskMode = Literal["predicted", "ones"]
# input: outputs at the mixture's scale (AudioLDM's peak-0.5 preparation undone); normalized: at peak 0.5
OutputScale = Literal["input", "normalized"]


class MaskNetConfig(StrictModel):
    """Architecture of the latent mask network (stored nowhere else: keep it with the checkpoint)."""

    channels: list[int] = [32, 64, 128, 256, 384]  # ResUNet30's first five encoder widths
    # Latent frames are pooled 2x at every level (256 -> 8); its 16 mel rows only at the first three (-> 2).
    pools: list[tuple[int, int]] = [(2, 2), (2, 2), (2, 2), (2, 1), (2, 1)]
    stem_channels: int | None = None  # width of the 1x1 input convolution; None: channels[0]
    condition_size: int = 512

    @field_validator("pools")
    @classmethod
    def _positive(cls, pools: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if any(t < 1 or f < 1 for t, f in pools):
            raise ValueError("pooling factors must be positive")
        return pools


class MaskNet(nn.Module):
    """(latent (B, C, T, F), condition (B, condition_size)) -> ratio mask in (0, 1) of the latent's shape."""

    def __init__(self, latent_channels: int, config: MaskNetConfig | None = None):
        super().__init__()
        config = config or MaskNetConfig()
        if len(config.channels) != len(config.pools):
            raise ValueError(f"mask net: {len(config.channels)} channel widths but {len(config.pools)} pooling "
                             "factors; give one per level")
        self.latent_channels = latent_channels
        self.condition_size = config.condition_size
        self.unet = FiLMResUNet(latent_channels, latent_channels, config.channels, config.pools,
                                stem_channels=config.stem_channels, unused_decoder_bn2=False)
        self.film = FiLMGenerator(config.condition_size, self.unet.film_channels())
        init_like_reference(self)

    def forward(self, latent: Tensor, condition: Tensor) -> Tensor:
        if condition.shape != (latent.shape[0], self.condition_size):
            raise ValueError(f"condition must be ({latent.shape[0]}, {self.condition_size}), "
                             f"got {tuple(condition.shape)}")
        return torch.sigmoid(self.unet(latent, self.film(condition)))


@dataclass
class LatentSeparation:
    """Everything one forward pass computes; the losses use more than the waveform."""

    estimate: Tensor  # (B, N) separated waveform
    mask: Tensor | None  # (B * segments, C, T, F), None for the unmasked path
    latent: Tensor  # the masked latent mask * z_mix, diffusion space
    analysis: AudioLdmAnalysis  # z_mix, gains, segmentation


class IrmLdm(nn.Module):
    """System 3's model: `forward(mixture (B, N) at 16 kHz, condition (B, 512)) -> (B, N)`.

    `codec` (AudioLDM's VAE + vocoder) is frozen; `mask_net` is the only trainable part, and the
    only part a System 3 checkpoint holds (`checkpoint_state_dict`).
    """

    def __init__(self, codec: AudioLdmCodec, mask_net: MaskNet | None, *, mask: MaskMode = "predicted",
                 restore_gain: bool = True):
        super().__init__()
        if mask == "predicted" and mask_net is None:
            raise ValueError("mask 'predicted' needs a mask network")
        self.codec = codec
        self.mask_net = mask_net
        self.mask_mode: MaskMode = mask
        self.restore_gain = restore_gain
        self.sample_rate = codec.settings.sample_rate

    def separate(self, mixture: Tensor, condition: Tensor | None) -> LatentSeparation:
        analysis = self.codec.analyse(mixture)
        if self.mask_mode == "ones":
            mask, latent = None, analysis.latent
        else:
            assert self.mask_net is not None
            if condition is None:
                raise ValueError("IRM-LDM needs a query embedding per mixture")
            # Every segment of an item is masked under that item's query.
            per_segment = condition.to(analysis.latent).repeat_interleave(analysis.segments, dim=0)
            mask = self.mask_net(analysis.latent, per_segment)
            latent = mask * analysis.latent
        estimate = self.codec.synthesise(latent, analysis, restore_gain=self.restore_gain)
        return LatentSeparation(estimate=estimate, mask=mask, latent=latent, analysis=analysis)

    def forward(self, mixture: Tensor, condition: Tensor | None) -> Tensor:
        return self.separate(mixture, condition).estimate

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [] if self.mask_net is None else list(self.mask_net.parameters())

    def checkpoint_state_dict(self) -> dict[str, Tensor]:
        """The mask network under `CHECKPOINT_PREFIX` (VAE and vocoder come from the registry)."""
        if self.mask_net is None:
            return {}
        return {CHECKPOINT_PREFIX + k: v.detach() for k, v in self.mask_net.state_dict().items()}

    def load_checkpoint_state_dict(self, state_dict: Mapping[str, Tensor], *, source: str) -> None:
        """Load the mask network from a System 3 checkpoint's state_dict (other keys are ignored);
        a missing, unexpected or mis-shaped mask-net key is an error naming it."""
        if self.mask_net is None:
            raise ValueError("this model has no mask network to load")
        weights = {k[len(CHECKPOINT_PREFIX):]: v for k, v in state_dict.items() if k.startswith(CHECKPOINT_PREFIX)}
        if not weights:
            prefixes = sorted({k.split(".", 1)[0] + "." for k in state_dict})
            raise CheckpointError(f"{source}: no IRM-LDM mask network in this checkpoint (no key under "
                                  f"{CHECKPOINT_PREFIX!r}; its keys start with {', '.join(prefixes[:10]) or 'nothing'}). "
                                  "Is it a System 3 checkpoint?")
        load_weights(self.mask_net, weights, source=f"{source} ({CHECKPOINT_PREFIX}*)")


# --------------------------------------------------------------------------------------------
# Losses


def waveform_mse(estimate: Tensor, target: Tensor) -> Tensor:
    """Seed 003's L_MSE: mean over samples (and the batch) of (estimate - target)^2."""
    if estimate.shape != target.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ in shape")
    return torch.mean((estimate.float() - target.float()) ** 2)


class IrmLdmLoss:
    """`mse_weight * L_MSE + ldm_weight * L_LDM` (seed 003: both weights 1).

    L_LDM needs `prior` (AudioLDM's UNet, scheduler and text tower) and the captions of the batch;
    with `ldm_weight == 0` neither is used.
    """

    def __init__(self, *, mse_weight: float = 1.0, ldm_weight: float = 0.0,
                 prior: AudioLdmDiffusionPrior | None = None):
        if ldm_weight and prior is None:
            raise ValueError("the LDM term (ldm_weight > 0) needs AudioLDM's UNet: load it with "
                             "load_audioldm_diffusion_prior (registry weight 'audioldm-diffusion')")
        self.mse_weight, self.ldm_weight, self.prior = mse_weight, ldm_weight, prior

    def __call__(self, separation: LatentSeparation, target: Tensor, captions: Sequence[str] | None = None,
                 *, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """Returns the total loss and its parts (as floats, for logging)."""
        parts: dict[str, Any] = {}
        total = separation.estimate.new_zeros(())
        if self.mse_weight:
            mse = waveform_mse(separation.estimate, target)
            total = total + self.mse_weight * mse
            parts["mse"] = float(mse.detach())
        if self.ldm_weight:
            assert self.prior is not None
            if captions is None:
                raise ValueError("the LDM term needs the captions of the batch")
            per_segment = [c for c in captions for _ in range(separation.analysis.segments)]
            ldm = self.prior.loss(separation.latent, per_segment, generator=generator)
            total = total + self.ldm_weight * ldm
            parts["ldm"] = float(ldm.detach())
        return total, parts
