"""Training System 3 (IRM-LDM) through `dcase9 train`: the model kind `irm-ldm`.

`IrmLdmTrainable` plugs `dcase9.models.irm_ldm.IrmLdm` into the generic training loop
(`dcase9.training.models`): the mask net is the trained and saved part (under
`ss_model.mask_net.`), the codec (and the LDM prior, when its term is on) is frozen and left out of
checkpoints.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from pydantic import Field, model_validator
from torch import Tensor, nn

from dcase9.config import StrictModel
from dcase9.errors import ConfigError
from dcase9.models.audioldm import (AudioLdmCodec, MelSettings, load_audioldm_diffusion_prior, load_audioldm_vae,
                                     load_audioldm_vocoder)
from dcase9.models.irm_ldm import (CHECKPOINT_PREFIX, DIFFUSION_WEIGHT, VAE_WEIGHT, VOCODER_WEIGHT, IrmLdm,
                                    IrmLdmLoss, MaskNet, MaskNetConfig, OutputScale)
from dcase9.training.models import LossFunction, ModelContext, ModelKind, TrainableModel, mse_wav

__all__ = ["IRM_LDM_KIND", "IrmLdmLossWeights", "IrmLdmOptions", "IrmLdmTrainable", "build_irm_ldm"]

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
    def _some_term(self) -> IrmLdmLossWeights:
        if not self.mse_weight and not self.ldm_weight:
            raise ValueError("mse_weight and ldm_weight are both 0: the loss would be empty")
        return self


class IrmLdmOptions(StrictModel):
    """`model:` options of the kind `irm-ldm` (System 3). The rate is AudioLDM's: `data.sample_rate` 16000.

    `mask_net` and `output_scale` are stored with the run and must be what `dcase9 infer --system 3`
    uses (the checkpoints carry them: `dcase9.models.description`). `segment_frames` (160 samples
    each) is a training-only setting: the length of the AudioLDM segments a training batch is cut
    into; 1024 (10.24 s) is AudioLDM's, fewer make steps cheaper (match `data.segment_seconds` to
    it, e.g. 256 frames with 2.56 s). Validation during training and inference always run 1024-frame segments;
    the mask net is convolutional, so it runs on either.
    """

    mask_net: MaskNetConfig = MaskNetConfig()
    segment_frames: int = Field(MelSettings().segment_frames, ge=1)
    output_scale: OutputScale = "input"
    loss: IrmLdmLossWeights = IrmLdmLossWeights()


class IrmLdmTrainable(TrainableModel):
    """System 3 as the training loop sees it (see `dcase9.training.models`).

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


def irm_ldm_weights(options: IrmLdmOptions) -> tuple[str, ...]:
    """The registry weights `build_irm_ldm` asks for with these options."""
    return (VAE_WEIGHT, VOCODER_WEIGHT) + ((DIFFUSION_WEIGHT,) if options.loss.ldm_weight > 0 else ())


IRM_LDM_KIND = ModelKind(
    options=IrmLdmOptions, build=build_irm_ldm, default_loss="mse_wav", weights=irm_ldm_weights,
    description="System 3 (IRM-LDM): a CLAP-conditioned ratio mask on AudioLDM's VAE latent, decoded by its "
                "frozen VAE and vocoder")
