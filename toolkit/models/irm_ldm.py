"""IRM-LDM (System 3 of seed 003): a text-conditioned ratio mask in AudioLDM's VAE latent space.

    z_mix = VAE-encode(log-mel(mixture))              8 x 256 x 16 per 10.24 s, frozen
    mask  = sigmoid(MaskNet(z_mix | CLAP text query))   the only trained part
    s_hat = vocoder(VAE-decode(mask * z_mix))           frozen, trimmed to the input length

The mask network is a FiLM-conditioned ResUNet built from the baseline's blocks
(`toolkit.models.resunet`): five encoder levels (a `ConvBlockRes` and pooling each, with
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

Training (`dcase9 train`, model kind `irm-ldm`): `IrmLdmTrainable` plugs the model into the
generic training loop (`toolkit.training.models`): the mask net is the trained and saved part,
the codec (and the LDM prior, when its term is on) is frozen and left out of checkpoints.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from toolkit.config import StrictModel
from toolkit.errors import CheckpointError, ConfigError
from toolkit.models.audioldm import (AudioLdmAnalysis, AudioLdmCodec, AudioLdmDiffusionPrior, MelSettings,
                                     load_audioldm_diffusion_prior, load_audioldm_vae, load_audioldm_vocoder)
from toolkit.models.checkpoints import load_weights
from toolkit.models.resunet import FiLMGenerator, FiLMResUNet, init_like_reference
from toolkit.training.models import LossFunction, ModelContext, ModelKind, TrainableModel, mse_wav

__all__ = [
    "CHECKPOINT_PREFIX",
    "DIFFUSION_WEIGHT",
    "IRM_LDM_KIND",
    "IrmLdm",
    "IrmLdmLoss",
    "IrmLdmLossWeights",
    "IrmLdmOptions",
    "IrmLdmTrainable",
    "LatentSeparation",
    "MaskNet",
    "MaskNetConfig",
    "OutputScale",
    "VAE_WEIGHT",
    "VOCODER_WEIGHT",
    "build_irm_ldm",
    "waveform_mse",
]

# Where the mask network lives in a System 3 checkpoint's state_dict (the CLAP query encoder sits
# under `query_encoder.model.` in laion naming, as in the baseline's checkpoints).
CHECKPOINT_PREFIX = "ss_model.mask_net."

# Registry names of AudioLDM's parts (systems/weights.yaml); `--weight NAME=DIR` overrides them.
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

    def __init__(self, latent_channels: int, config: MaskNetConfig = MaskNetConfig()):
        super().__init__()
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


# --------------------------------------------------------------------------------------------
# Training through `dcase9 train`: the model kind `irm-ldm`

# Above this share of zero padding in the training segments, the run warns (once): the VAE decoder
# and the vocoder, the costly part of a step, would mostly process silence.
PADDING_WARNING = 0.25


class IrmLdmLossWeights(StrictModel):
    """`model.loss`: the weights of seed 003's two terms (its total is L_MSE + L_LDM, both 1).

    The LDM term needs AudioLDM's UNet, scheduler and text tower (registry weight
    `audioldm-diffusion`); they are loaded only when `ldm_weight` > 0.
    """

    mse_weight: float = Field(1.0, ge=0)
    ldm_weight: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _some_term(self) -> "IrmLdmLossWeights":
        if not self.mse_weight and not self.ldm_weight:
            raise ValueError("mse_weight and ldm_weight are both 0: the loss would be empty")
        return self


class IrmLdmOptions(StrictModel):
    """`model:` options of the kind `irm-ldm` (System 3). The rate is AudioLDM's: `data.sample_rate` 16000.

    `mask_net` and `output_scale` are stored with the run and must be what `dcase9 infer --system 3`
    uses (the run writes them to `system-config.yaml`). `segment_frames` (160 samples each) is a
    training-only setting: the length of the AudioLDM segments a training batch is cut into; 1024
    (10.24 s) is AudioLDM's, fewer make steps cheaper (match `data.segment_seconds` to it, e.g. 256
    frames with 2.56 s). Validation during training and inference always run 1024-frame segments;
    the mask net is convolutional, so it runs on either.
    """

    mask_net: MaskNetConfig = MaskNetConfig()
    segment_frames: int = Field(MelSettings().segment_frames, ge=1)
    output_scale: OutputScale = "input"
    loss: IrmLdmLossWeights = IrmLdmLossWeights()


class IrmLdmTrainable(TrainableModel):
    """System 3 as the training loop sees it (see `toolkit.training.models`).

    `net` is the mask net, saved under `ss_model.mask_net.`; the codec (AudioLDM's VAE and vocoder)
    and, with the LDM term, the diffusion prior are `frozen`: in eval mode, without gradients, and
    not in checkpoints. `training_loss` runs on the configured training segments; `separate` (used
    by validation) on AudioLDM's 1024-frame segments, as `dcase9 infer --system 3` does.
    """

    state_prefix = CHECKPOINT_PREFIX

    def __init__(self, model: IrmLdm, loss: IrmLdmLoss, options: IrmLdmOptions) -> None:
        if model.mask_net is None or model.mask_mode != "predicted":
            raise ValueError("training needs a model with a mask network")
        frozen = nn.ModuleDict({"codec": model.codec})
        inference = model
        if model.codec.settings != MelSettings():
            # The same VAE and vocoder (shared, not copied) on AudioLDM's own segments.
            codec = AudioLdmCodec(model.codec.vae, model.codec.vocoder)
            inference = IrmLdm(codec, model.mask_net, restore_gain=model.restore_gain)
            frozen["inference_codec"] = codec  # registered so that its buffers follow the device
        if loss.prior is not None:
            frozen["prior"] = loss.prior
        super().__init__(model.mask_net, model.sample_rate, loss=mse_wav, frozen=frozen)
        self.model, self.inference_model, self.irm_loss, self.options = model, inference, loss, options
        self._padding_checked = False

    # `build_model` assigns the configuration's top-level `loss`; this family's waveform term is
    # seed 003's MSE, weighted in `model.loss`, so any other choice is refused rather than ignored.
    @property  # type: ignore[override]
    def loss(self) -> LossFunction:
        return mse_wav

    @loss.setter
    def loss(self, value: LossFunction) -> None:
        if value is not mse_wav:
            name = getattr(value, "__name__", repr(value))
            raise ConfigError(f"loss: {name} does not apply to model kind irm-ldm, whose waveform term is seed "
                              "003's MSE (weighted by model.loss.mse_weight); leave `loss` unset (null) or mse_wav")

    def separate(self, mixture: Tensor, condition: Tensor) -> Tensor:
        return self.inference_model(mixture, condition)

    def training_loss(self, mixture: Tensor, condition: Tensor, target: Tensor,
                      captions: Sequence[str]) -> tuple[Tensor, dict[str, Any]]:
        self._warn_about_padding(mixture.shape[-1])
        return self.irm_loss(self.model.separate(mixture, condition), target, captions)

    def system_options(self) -> dict[str, Any]:
        return {"mask_net": self.options.mask_net.model_dump(mode="json"), "output_scale": self.options.output_scale}

    def _warn_about_padding(self, length: int) -> None:
        if self._padding_checked:
            return
        self._padding_checked = True
        segment = self.model.codec.settings.segment_samples
        padded = math.ceil(length / segment) * segment
        if padded - length > PADDING_WARNING * padded:
            warnings.warn(f"training segments of {length} samples are zero-padded to {padded} (AudioLDM segments of "
                          f"model.segment_frames {self.options.segment_frames} x 160 samples): "
                          f"{100 * (padded - length) / padded:.0f}% of the VAE-decoder and vocoder work is padding; "
                          "set model.segment_frames to data.segment_seconds x 100", stacklevel=2)


def build_irm_ldm(options: IrmLdmOptions, context: ModelContext) -> IrmLdmTrainable:
    """The trainable System 3: AudioLDM's VAE and vocoder from the registry (or `--weight`), a fresh
    mask net, and the diffusion prior (`audioldm-diffusion`) only when the LDM term is on."""
    settings = MelSettings(segment_frames=options.segment_frames)
    if context.sample_rate != settings.sample_rate:
        raise ConfigError(f"data.sample_rate is {context.sample_rate} Hz; IRM-LDM runs at AudioLDM's "
                          f"{settings.sample_rate} Hz")
    vae = load_audioldm_vae(context.weight(VAE_WEIGHT))
    vocoder = load_audioldm_vocoder(context.weight(VOCODER_WEIGHT), settings)
    try:
        codec = AudioLdmCodec(vae, vocoder, settings)
    except ValueError as exc:
        raise ConfigError(f"model.segment_frames {options.segment_frames}: {exc}") from None
    weights = options.loss
    prior = load_audioldm_diffusion_prior(context.weight(DIFFUSION_WEIGHT)) if weights.ldm_weight > 0 else None
    model = IrmLdm(codec, MaskNet(codec.latent_channels, options.mask_net),
                   restore_gain=options.output_scale == "input")
    return IrmLdmTrainable(model, IrmLdmLoss(mse_weight=weights.mse_weight, ldm_weight=weights.ldm_weight,
                                             prior=prior), options)


IRM_LDM_KIND = ModelKind(
    options=IrmLdmOptions, build=build_irm_ldm, default_loss="mse_wav",
    description="System 3 (IRM-LDM): a CLAP-conditioned ratio mask on AudioLDM's VAE latent, decoded by its "
                "frozen VAE and vocoder")
