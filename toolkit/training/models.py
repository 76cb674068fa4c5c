"""Trainable model families: what the training loop needs to know about a separation network.

The training loop (dcase9.training.module) is generic: it mixes clips, embeds the captions with
the frozen CLAP text tower, and asks a `TrainableModel` for the loss. A model family is known by
name (`model.kind` in the training configuration) through a `ModelKind`, defined in the family's
own module and listed in `LAZY_MODEL_KINDS` (imported only when a configuration names it).
System 3 (IRM-LDM) plugs in like this (the full version is in dcase9.training.irm_ldm):

    class IrmLdmTrainable(TrainableModel):
        state_prefix = CHECKPOINT_PREFIX                 # "ss_model.mask_net.": only the mask net is saved

        def __init__(self, model: IrmLdm, loss: IrmLdmLoss):
            frozen = nn.ModuleDict({"codec": model.codec})  # (+ the LDM prior, when used)
            super().__init__(model.mask_net, model.sample_rate, frozen=frozen)
            self.model, self.irm_loss = model, loss

        def separate(self, mixture, condition):
            return self.model(mixture, condition)

        def training_loss(self, mixture, condition, target, captions):
            return self.irm_loss(self.model.separate(mixture, condition), target, captions)

    IRM_LDM_KIND = ModelKind(options=IrmLdmOptions, description="System 3",   # options: a StrictModel
                             build=lambda options, context: IrmLdmTrainable(...))  # context.weight("audioldm-vae")
    LAZY_MODEL_KINDS["irm-ldm"] = "dcase9.training.irm_ldm:IRM_LDM_KIND"  # the one line here

(`register_model_kind(name, kind)` registers one at run time instead, e.g. from a notebook.)

A `TrainableModel` holds:

- `net`: the `nn.Module` whose weights are trained and saved; checkpoints store its state dict
  under `state_prefix` (`ss_model.` for ResUNet30: the official layout that `dcase9 infer` and the
  reference code read; a dotted prefix such as `ss_model.mask_net.` works too);
- `frozen`: optional pretrained modules it needs but does not train (a VAE, a vocoder); they move
  to the device with the model, stay in eval mode without gradients, and are left out of
  checkpoints;
- `sample_rate`: the rate `separate` works at (the data are resampled to it);
- `separate(mixture (B, N), condition (B, 512)) -> (B, N)`;
- `training_loss(mixture, condition, target, captions) -> (loss, {name: value to log})`: by
  default the configured waveform loss of `separate`'s output; override it to add terms (an LDM
  loss, which needs the captions);
- `trainable_parameters()`: what the optimizer updates (default: `net`'s parameters that require
  gradients);
- `load_initial_weights(weights, source)`: load an official checkpoint's `state_prefix` part
  (prefix removed) for `--init`;
- `official_fixed_tensors()`: tensors of the official layout under `state_prefix` that `net` does
  not hold (ResUNet30: torchlibrosa's STFT kernels), written into every checkpoint;
- `system_options()`: the system settings that make `dcase9 infer` build this net (every checkpoint
  carries them, `dcase9.models.description`);
- `reference_parameter_names()`: the names (under `state_prefix`) of the parameters the official
  training code's optimizer holds, in its order, for `--resume-from` (None: there is no official
  training code for this family; `dcase9.training.reference`).

A `ModelKind.build(options, context)` gets the family's validated options and a `ModelContext`:
the sample rate and `weight(name)`, which resolves registry weights (downloads unless offline,
honours `--weight NAME=PATH`). `ModelKind.weights(options)` names those weights, so that a run checks
them with the others before anything is read or downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from dcase9.config import StrictModel
from dcase9.models.checkpoints import load_weights
from dcase9.models.resunet import RESUNET30_CONFIGS

LossFunction = Callable[[Tensor, Tensor], Tensor]


def l1_wav(estimate: Tensor, target: Tensor) -> Tensor:
    """The baseline's loss: mean absolute error on waveforms."""
    return torch.mean(torch.abs(estimate - target))


def mse_wav(estimate: Tensor, target: Tensor) -> Tensor:
    """Mean squared error on waveforms."""
    return torch.mean((estimate - target) ** 2)


LOSSES: dict[str, LossFunction] = {"l1_wav": l1_wav, "mse_wav": mse_wav}


class TrainableModel:
    """A separation network as the training loop sees it; see the module docstring."""

    state_prefix = "ss_model."

    def __init__(self, net: nn.Module, sample_rate: int, loss: LossFunction = l1_wav,
                 frozen: nn.ModuleDict | None = None) -> None:
        self.net, self.sample_rate, self.loss, self.frozen = net, sample_rate, loss, frozen

    def separate(self, mixture: Tensor, condition: Tensor) -> Tensor:
        raise NotImplementedError

    def training_loss(self, mixture: Tensor, condition: Tensor, target: Tensor,
                      captions: Sequence[str]) -> tuple[Tensor, dict[str, Any]]:
        loss = self.loss(self.separate(mixture, condition), target)
        return loss, {}

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.net.parameters() if p.requires_grad)

    def load_initial_weights(self, weights: Mapping[str, Tensor], source: str) -> None:
        load_weights(self.net, weights, source=source)

    def official_fixed_tensors(self) -> dict[str, Tensor]:
        return {}

    def system_options(self) -> dict[str, Any]:
        return {}

    def reference_parameter_names(self) -> list[str] | None:
        return None


@dataclass(frozen=True)
class ModelContext:
    """What a model family's builder gets besides its options."""

    sample_rate: int
    weight: Callable[[str], Path]  # registry name -> local file or folder


def _no_weights(options: Any) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class ModelKind:
    options: type[StrictModel]
    build: Callable[[Any, ModelContext], TrainableModel]  # (options, context) -> model
    description: str
    default_loss: str = "l1_wav"
    # (options) -> the registry weights `build` will ask `context.weight` for: checked, all at once, before
    # anything is read or downloaded (a run names every weight it lacks in one message)
    weights: Callable[[Any], Sequence[str]] = _no_weights


_MODEL_KINDS: dict[str, ModelKind] = {}

# name -> "module:attribute" of a ModelKind, imported on first use.
LAZY_MODEL_KINDS: dict[str, str] = {}
LAZY_MODEL_KINDS["irm-ldm"] = "dcase9.training.irm_ldm:IRM_LDM_KIND"  # System 3


def register_model_kind(name: str, kind: ModelKind) -> None:
    if name in _MODEL_KINDS and _MODEL_KINDS[name] is not kind:
        raise ValueError(f"model kind {name!r} is registered already")
    _MODEL_KINDS[name] = kind


def model_kind(name: str) -> ModelKind:
    if name not in _MODEL_KINDS and name in LAZY_MODEL_KINDS:
        import importlib

        module, _, attribute = LAZY_MODEL_KINDS[name].partition(":")
        register_model_kind(name, getattr(importlib.import_module(module), attribute))
    try:
        return _MODEL_KINDS[name]
    except KeyError:
        known = sorted(set(_MODEL_KINDS) | set(LAZY_MODEL_KINDS))
        raise ValueError(f"unknown model kind {name!r}; known: {', '.join(known)}") from None


def model_kind_names() -> list[str]:
    return sorted(set(_MODEL_KINDS) | set(LAZY_MODEL_KINDS))


def build_model(kind_name: str, options: StrictModel, context: ModelContext, loss: str | None) -> TrainableModel:
    kind = model_kind(kind_name)
    model = kind.build(options, context)
    model.loss = LOSSES[loss or kind.default_loss]
    return model


# ------------------------------------------------------------------------------------------------
# ResUNet30 (the baseline, AudioSep, and smaller nets of the same design)


class ResUNet30Options(StrictModel):
    """ResUNet30 settings; the sample rate is `data.sample_rate`.

    Official nets: 16 kHz baseline n_fft 1024 / hop 160; AudioSep (32 kHz) 2048 / 320; `channels`
    and `pools` None. Other `channels` / `pools` build a smaller net of the same design.

    Two training-only settings (not stored in the weights; inference is unaffected) help runs of a
    few hundred steps, and keep the reference's behaviour by default:
    `batchnorm_momentum` (the reference's 0.01 makes the running statistics used at evaluation
    lag far behind a net that changes quickly) and `phase_mask_init` (`identity` starts the phase
    rotation at 0 instead of a random angle per bin, so early steps go to the magnitude mask).
    """

    n_fft: int = RESUNET30_CONFIGS["dcase2024-baseline-16k"].n_fft  # the baseline's (one home: resunet.py)
    hop_length: int = RESUNET30_CONFIGS["dcase2024-baseline-16k"].hop_length
    channels: list[int] | None = None
    pools: list[tuple[int, int]] | None = None
    condition_size: int = 512
    batchnorm_momentum: float = Field(0.01, gt=0, le=1)
    phase_mask_init: Literal["reference", "identity"] = "reference"


class ResUNet30Model(TrainableModel):
    """ResUNet30 on `(B, N)` waveforms. The official checkpoints' decoder blocks hold a `bn2` and its
    FiLM `beta2` linear that the forward pass never uses; they are frozen here (kept in the state
    dict, left out of the optimizer), so plain DDP needs no search for unused parameters."""

    def __init__(self, net: Any, sample_rate: int, options: ResUNet30Options) -> None:
        super().__init__(net, sample_rate)
        self.options = options
        unused = unused_resunet_parameters(net)
        for name, parameter in net.named_parameters():
            if name in unused:
                parameter.requires_grad_(False)

    def separate(self, mixture: Tensor, condition: Tensor) -> Tensor:
        return self.net(mixture[:, None, :], condition)[:, 0, :]

    def load_initial_weights(self, weights: Mapping[str, Tensor], source: str) -> None:
        from dcase9.models.resunet import RESUNET30_IGNORED_KEYS

        load_weights(self.net, weights, source=source, ignore=RESUNET30_IGNORED_KEYS)

    def official_fixed_tensors(self) -> dict[str, Tensor]:
        from dcase9.models.official_layout import resunet30_fixed_tensors

        return resunet30_fixed_tensors(self.options.n_fft)

    def reference_parameter_names(self) -> list[str]:
        # The reference's AdamW is built over ss_model.parameters(): torchlibrosa's STFT and ISTFT
        # kernels (registered first, frozen), then the net's parameters in the order they are here.
        return list(REFERENCE_STFT_PARAMETERS) + [name for name, _ in self.net.named_parameters()]

    def system_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"n_fft": self.options.n_fft, "hop_length": self.options.hop_length}
        if self.options.channels is not None:
            options["channels"] = list(self.options.channels)
        if self.options.pools is not None:
            options["pools"] = [list(p) for p in self.options.pools]
        return options


REFERENCE_STFT_PARAMETERS = ("base.stft.conv_real.weight", "base.stft.conv_imag.weight",
                             "base.istft.conv_real.weight", "base.istft.conv_imag.weight")


def unused_resunet_parameters(net: nn.Module) -> set[str]:
    """Names of the parameters ResUNet30's forward pass never uses (decoder `bn2` and its FiLM beta)."""
    return {name for name, _ in net.named_parameters()
            if (".decoder_block" in name and ".bn2." in name and ".conv_block2." not in name)
            or (name.startswith("film.decoder_block") and "->beta2." in name and "->conv_block2->" not in name)}


def build_resunet30(options: ResUNet30Options, context: ModelContext) -> ResUNet30Model:
    from dcase9.models.resunet import RESUNET30_CHANNELS, RESUNET30_POOLS, ResUNet30

    channels = options.channels if options.channels is not None else RESUNET30_CHANNELS
    pools = options.pools if options.pools is not None else RESUNET30_POOLS
    if len(channels) != len(pools):
        raise ValueError(f"model.channels has {len(channels)} levels, model.pools {len(pools)}")
    net = ResUNet30(n_fft=options.n_fft, hop_length=options.hop_length, condition_size=options.condition_size,
                    channels=channels, pools=[tuple(p) for p in pools])
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = options.batchnorm_momentum
    if options.phase_mask_init == "identity":
        with torch.no_grad():
            # after_conv's outputs are (magnitude, real, imaginary) per output channel: a large
            # real part and a zero imaginary part make the phase rotation start near 0.
            net.base.after_conv.bias[1::3] = IDENTITY_PHASE_BIAS
    return ResUNet30Model(net, context.sample_rate, options)


IDENTITY_PHASE_BIAS = 3.0  # tanh(3) = 0.995


register_model_kind("resunet30", ModelKind(
    options=ResUNet30Options, build=build_resunet30,
    description="ResUNet30 (the DCASE baseline and AudioSep), STFT masking conditioned by FiLM"))
