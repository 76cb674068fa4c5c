"""ResUNet30: the text-conditioned separation network of the DCASE 2024 Task 9 baseline and of AudioSep.

The network predicts, for every time-frequency bin of the mixture's STFT, a magnitude mask and a
phase rotation, conditioned on a 512-d query embedding (CLAP text or audio) through additive FiLM
biases ("betas") that are added after every batch norm. Parameter and buffer names equal those of
the official checkpoints, so they load without renaming; the official checkpoints also carry the
fixed DFT matrices of a convolutional STFT (`base.stft.*`, `base.istft.*`), which we do not need
because we use `torch.stft` / `torch.istft`: the loader drops them.

Pieces, from small to large:

* `ConvBlockRes`: pre-activation residual block (BN + beta -> leaky ReLU -> 3x3 conv, twice).
* `EncoderBlockRes`: a `ConvBlockRes`, then average pooling; also returns the unpooled map as skip.
* `DecoderBlockRes`: transposed-conv upsampling, concatenation with the skip, a `ConvBlockRes`.
* `FiLMGenerator`: one `nn.Linear(condition_size, C)` per beta, named by the beta's path in the net.
* `FiLMResUNet`: a U-Net of those blocks of configurable depth, channels and pooling; it pads its
  input to a multiple of the total pooling and crops the output back.
* `ResUNet30`: STFT front end + a 6-level `FiLMResUNet` + mask application + ISTFT.
* `inference_form`: the same net rearranged for inference (batch norms folded; see there).

Numerical behaviour follows the reference implementation (Audio-AGI/AudioSep `models/resunet.py`,
which uses torchlibrosa's STFT): same Hann window, centring with reflect padding, same clamps in the
magnitude/phase computations, same zero padding of the time axis to a multiple of 32 frames, same
dropped-and-restored Nyquist bin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcase9.errors import CheckpointError
from dcase9.models.checkpoints import empty_module, load_weights, read_checkpoint, state_dict_of, strip_prefix

__all__ = [
    "RESUNET30_CHANNELS",
    "RESUNET30_CONFIGS",
    "RESUNET30_IGNORED_KEYS",
    "RESUNET30_POOLS",
    "ConvBlockRes",
    "DecoderBlockRes",
    "EncoderBlockRes",
    "FiLMGenerator",
    "FiLMResUNet",
    "ResUNet30",
    "ResUNet30Base",
    "ResUNet30Config",
    "batch_norm_affine",
    "inference_form",
    "init_like_reference",
    "load_resunet30",
]

BN_MOMENTUM = 0.01
LEAKY_SLOPE = 0.01
FILM_PATH_SEPARATOR = "->"
# Floors of the reference's magnitude/phase computations (in power for the mixture, in magnitude
# for the phase mask); they keep silent bins from dividing by zero.
_POWER_FLOOR = 1e-10
_MASK_MAGNITUDE_FLOOR = 1e-10

Betas = Mapping[str, Tensor]
# Device types whose convolutional body runs channels-last (NHWC) in eval mode (inference: ~25-30%
# faster on the CPU with oneDNN, as accurate; MPS kernels for it are not all there) and in train
# mode, where a layout is used only where measured both faster and as accurate as the reference's
# NCHW (benchmarks/training_layout.py): not on the CPU, whose channels-last train-mode batch norm
# sums its statistics in float32 where the NCHW kernel sums in float64 (a training step's output at
# 71 dB from float64 instead of 116 dB, its loss 1e-5 off instead of 1e-7); CUDA not yet measured.
_CHANNELS_LAST_DEVICES = ("cpu", "cuda")
_TRAINING_CHANNELS_LAST_DEVICES: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Building blocks


class ConvBlockRes(nn.Module):
    """Pre-activation residual block with additive FiLM conditioning.

    `y = shortcut(x) + conv2(act(bn2(conv1(act(bn1(x) + beta1))) + beta2))`, where `act` is a leaky
    ReLU (slope 0.01), the 3x3 convolutions have no bias, and `shortcut` is a 1x1 convolution with
    bias when the channel count changes and the identity otherwise.
    """

    def __init__(self, in_channels: int, out_channels: int, *, momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        # Registration order is the official state-dict order: bn1, bn2, conv1, conv2, shortcut.
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=momentum)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=momentum)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.shortcut: nn.Module = (nn.Conv2d(in_channels, out_channels, kernel_size=1)
                                    if in_channels != out_channels else nn.Identity())

    def film_channels(self) -> dict[str, int]:
        """Width of each beta this block consumes, by name."""
        return {"beta1": self.in_channels, "beta2": self.out_channels}

    def forward(self, x: Tensor, beta1: Tensor, beta2: Tensor) -> Tensor:
        """x: (B, in_channels, T, F); betas: (B, C, 1, 1). Returns (B, out_channels, T, F)."""
        h = self.conv1(F.leaky_relu(self.bn1(x) + beta1, LEAKY_SLOPE, inplace=True))
        h = self.conv2(F.leaky_relu(self.bn2(h) + beta2, LEAKY_SLOPE, inplace=True))
        return self.shortcut(x) + h


class EncoderBlockRes(nn.Module):
    """A `ConvBlockRes` followed by average pooling by `pool` = (time, frequency) factors.

    Returns `(pooled, features)`; `features` is the skip connection for the matching decoder.
    With `pool == (1, 1)` (the U-Net's centre block) `pooled` is `features` itself.
    """

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int], *,
                 momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        self.pool = tuple(pool)
        self.conv_block1 = ConvBlockRes(in_channels, out_channels, momentum=momentum)

    def film_channels(self) -> dict[str, int]:
        return {f"conv_block1{FILM_PATH_SEPARATOR}{k}": c for k, c in self.conv_block1.film_channels().items()}

    def forward(self, x: Tensor, betas: Betas) -> tuple[Tensor, Tensor]:
        sep = FILM_PATH_SEPARATOR
        features = self.conv_block1(x, betas[f"conv_block1{sep}beta1"], betas[f"conv_block1{sep}beta2"])
        if self.pool == (1, 1):
            return features, features
        return F.avg_pool2d(features, kernel_size=self.pool), features


class DecoderBlockRes(nn.Module):
    """Upsample by `upsample` with a transposed convolution, concatenate the skip, apply a `ConvBlockRes`.

    `y = conv_block2(cat(conv1(act(bn1(x) + beta1)), skip))`; `conv1` has kernel = stride =
    `upsample` and no bias. The official checkpoints also hold a `bn2` (and a FiLM `beta2` for it)
    that the forward pass never uses; `unused_bn2=True` keeps them so those checkpoints load. A
    network trained from scratch can pass `unused_bn2=False` to avoid dead parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, upsample: tuple[int, int], *,
                 momentum: float = BN_MOMENTUM, unused_bn2: bool = True) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv1 = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=upsample, stride=upsample,
                                        bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=momentum)
        self.conv_block2 = ConvBlockRes(2 * out_channels, out_channels, momentum=momentum)
        self.bn2 = nn.BatchNorm2d(in_channels, momentum=momentum) if unused_bn2 else None

    def film_channels(self) -> dict[str, int]:
        sep = FILM_PATH_SEPARATOR
        channels = {"beta1": self.in_channels}
        if self.bn2 is not None:
            channels["beta2"] = self.in_channels
        channels.update({f"conv_block2{sep}{k}": c for k, c in self.conv_block2.film_channels().items()})
        return channels

    def forward(self, x: Tensor, skip: Tensor, betas: Betas) -> Tensor:
        """x: (B, in_channels, T, F); skip: (B, out_channels, T * ut, F * uf)."""
        sep = FILM_PATH_SEPARATOR
        x = self.conv1(F.leaky_relu(self.bn1(x) + betas["beta1"], LEAKY_SLOPE, inplace=True))
        x = torch.cat((x, skip), dim=1)
        return self.conv_block2(x, betas[f"conv_block2{sep}beta1"], betas[f"conv_block2{sep}beta2"])


class FiLMGenerator(nn.ModuleDict):
    """Maps a condition vector to every beta of a network, one `nn.Linear` per beta.

    `channels` maps block name -> {beta path inside the block -> width}; each linear is registered
    under `"<block>-><path>"` (e.g. `encoder_block1->conv_block1->beta1`), the names the official
    checkpoints use. `forward` returns {block name: {path: beta of shape (B, C, 1, 1)}}.
    """

    def __init__(self, condition_size: int, channels: Mapping[str, Mapping[str, int]]) -> None:
        super().__init__()
        self.condition_size = condition_size
        self._layout = {block: tuple(paths) for block, paths in channels.items()}
        for block, paths in channels.items():
            for path, width in paths.items():
                self[f"{block}{FILM_PATH_SEPARATOR}{path}"] = nn.Linear(condition_size, width)

    def forward(self, condition: Tensor) -> dict[str, dict[str, Tensor]]:
        """condition: (B, condition_size)."""
        sep = FILM_PATH_SEPARATOR
        return {block: {path: self[f"{block}{sep}{path}"](condition)[:, :, None, None] for path in paths}
                for block, paths in self._layout.items()}


class FiLMResUNet(nn.Module):
    """A U-Net of FiLM-conditioned residual blocks over (B, C, T, F) feature maps.

    Layers (named as in the official ResUNet30 checkpoints):

    * `pre_conv`: 1x1 conv, `in_channels -> stem_channels` (with bias);
    * `encoder_block{i}`, i = 1..depth: `EncoderBlockRes(channels[i-2] or stem, channels[i-1], pools[i-1])`;
    * `conv_block{depth+1}a`: centre `EncoderBlockRes(channels[-1], channels[-1], (1, 1))`;
    * `decoder_block{j}`, j = 1..depth: mirror of encoder block depth+1-j (same channels, upsampling
      by its pooling factor, its output as skip);
    * `after_conv`: 1x1 conv, `channels[0] -> out_channels` (with bias).

    `forward(x, betas)` zero-pads T and F up to multiples of the total pooling before `pre_conv`
    and crops the output back to (T, F). `betas` comes from a `FiLMGenerator` built with
    `film_channels()`. Layers start with PyTorch's default initialisation; `init_like_reference`
    applies the reference's.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int],
                 pools: Sequence[tuple[int, int]], *, stem_channels: int | None = None,
                 momentum: float = BN_MOMENTUM, unused_decoder_bn2: bool = True) -> None:
        super().__init__()
        self._add_unet_layers(in_channels, out_channels, channels, pools, stem_channels=stem_channels,
                              momentum=momentum, unused_decoder_bn2=unused_decoder_bn2)

    def _add_unet_layers(self, in_channels: int, out_channels: int, channels: Sequence[int],
                         pools: Sequence[tuple[int, int]], *, stem_channels: int | None,
                         momentum: float, unused_decoder_bn2: bool) -> None:
        """Register the layers. Separate from __init__ so a subclass can register layers before them
        (ResUNet30's `bn0`) and keep the official parameter order, which optimizer states rely on."""
        channels, pools = list(channels), [tuple(p) for p in pools]
        if not channels or len(channels) != len(pools):
            raise ValueError(f"need one pooling factor per encoder level: {len(channels)} channel "
                             f"counts, {len(pools)} pooling factors")
        depth = len(channels)
        stem_channels = channels[0] if stem_channels is None else stem_channels
        self.depth = depth
        self.pools = pools
        self.time_multiple = math.prod(p[0] for p in pools)
        self.freq_multiple = math.prod(p[1] for p in pools)

        self.pre_conv = nn.Conv2d(in_channels, stem_channels, kernel_size=1)
        widths_in = [stem_channels] + channels[:-1]
        for i in range(depth):
            self.add_module(f"encoder_block{i + 1}", EncoderBlockRes(
                widths_in[i], channels[i], pools[i], momentum=momentum))
        self.center_name = f"conv_block{depth + 1}a"
        self.add_module(self.center_name, EncoderBlockRes(
            channels[-1], channels[-1], (1, 1), momentum=momentum))
        width = channels[-1]
        for j in range(depth):
            level = depth - 1 - j  # the encoder level this decoder mirrors
            self.add_module(f"decoder_block{j + 1}", DecoderBlockRes(
                width, channels[level], pools[level], momentum=momentum, unused_bn2=unused_decoder_bn2))
            width = channels[level]
        self.after_conv = nn.Conv2d(channels[0], out_channels, kernel_size=1)

    def _film_blocks(self) -> list[str]:
        return ([f"encoder_block{i + 1}" for i in range(self.depth)] + [self.center_name]
                + [f"decoder_block{j + 1}" for j in range(self.depth)])

    def film_channels(self) -> dict[str, dict[str, int]]:
        """{block name: {beta path: width}} in the official (pre-order) order."""
        return {name: self.get_submodule(name).film_channels() for name in self._film_blocks()}

    def forward(self, x: Tensor, betas: Mapping[str, Betas]) -> Tensor:
        """x: (B, in_channels, T, F) -> (B, out_channels, T, F)."""
        time_steps, freq_bins = x.shape[-2:]
        pad_t = -time_steps % self.time_multiple
        pad_f = -freq_bins % self.freq_multiple
        if pad_t or pad_f:
            x = F.pad(x, (0, pad_f, 0, pad_t))
        x = self.pre_conv(x)
        skips = []
        for i in range(self.depth):
            name = f"encoder_block{i + 1}"
            x, skip = self.get_submodule(name)(x, betas[name])
            skips.append(skip)
        x, _ = self.get_submodule(self.center_name)(x, betas[self.center_name])
        for j in range(self.depth):
            name = f"decoder_block{j + 1}"
            x = self.get_submodule(name)(x, skips[self.depth - 1 - j], betas[name])
        x = self.after_conv(x)
        if pad_t or pad_f:
            x = x[..., :time_steps, :freq_bins]
        return x


def init_like_reference(module: nn.Module) -> None:
    """Initialise as the reference does: Xavier-uniform weights and zero biases for every
    convolution, transposed convolution and linear layer; batch norms at weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# ResUNet30


@dataclass(frozen=True)
class ResUNet30Config:
    """STFT settings of a ResUNet30 model (window length = n_fft, Hann).

    `channels` / `pools` (one pooling factor per encoder level) default to the official U-Net;
    other values build a narrower or shallower net with the same front end, masks and key names
    (small models for demos and tests; see `ResUNet30`).
    """

    sample_rate: int
    n_fft: int
    hop_length: int
    channels: tuple[int, ...] | None = None
    pools: tuple[tuple[int, int], ...] | None = None


RESUNET30_CONFIGS: dict[str, ResUNet30Config] = {
    # DCASE 2024 Task 9 baseline (Zenodo record 10887460), trained at 16 kHz.
    "dcase2024-baseline-16k": ResUNet30Config(sample_rate=16000, n_fft=1024, hop_length=160),
    # AudioSep (Audio-AGI/AudioSep), trained at 32 kHz.
    "audiosep-32k": ResUNet30Config(sample_rate=32000, n_fft=2048, hop_length=320),
}

# Fixed DFT/window tensors of the reference's convolutional STFT, present in official checkpoints.
RESUNET30_IGNORED_KEYS = ("base.stft.*", "base.istft.*")

RESUNET30_CHANNELS = (32, 64, 128, 256, 384, 384)
RESUNET30_POOLS = ((2, 2), (2, 2), (2, 2), (2, 2), (2, 2), (1, 2))
_MASK_COMPONENTS = 3  # magnitude mask, real and imaginary part of the phase mask


class ResUNet30Base(FiLMResUNet):
    """The spectrogram U-Net of ResUNet30 plus `bn0`, the per-frequency-bin input batch norm.

    `channels` / `pools` default to the official 6-level net; the stem is as wide as the first level.
    """

    def __init__(self, n_fft: int, input_channels: int, output_channels: int, *,
                 channels: Sequence[int] = RESUNET30_CHANNELS,
                 pools: Sequence[tuple[int, int]] = RESUNET30_POOLS) -> None:
        nn.Module.__init__(self)
        self.bn0 = nn.BatchNorm2d(n_fft // 2 + 1, momentum=BN_MOMENTUM)
        self._add_unet_layers(input_channels, output_channels * _MASK_COMPONENTS, channels, pools,
                              stem_channels=channels[0], momentum=BN_MOMENTUM, unused_decoder_bn2=True)


class ResUNet30(nn.Module):
    """Language-queried separation net: (mixture, condition) -> separated waveform.

    `forward(mixture (B, C_in, N), condition (B, condition_size)) -> (B, C_out, N)` float32 (float64 for a float64 mixture and model), for any
    N >= 0 and any batch size. `C_in` must equal `C_out` or be 1 (a mono mixture masked once per
    output channel). Weights are meant to stay float32: for reduced precision run under
    `torch.autocast`, which this module lets act on the convolutional body only: the STFT, the
    mask/phase arithmetic and the ISTFT always run in float32.

    Inputs shorter than n_fft // 2 + 1 samples cannot be reflect-padded for the centred STFT (the
    reference fails on them). We zero-extend such inputs to that length and crop the output back to
    N, so they are separated as if followed by silence.

    `channels` and `pools` change the U-Net's widths and depth (default: the official ones, which
    the official checkpoints need); the U-Net zero-pads time and frequency to multiples of its
    total pooling, so any depth works with any STFT size.
    """

    def __init__(self, *, n_fft: int, hop_length: int, condition_size: int = 512,
                 input_channels: int = 1, output_channels: int = 1,
                 channels: Sequence[int] = RESUNET30_CHANNELS,
                 pools: Sequence[tuple[int, int]] = RESUNET30_POOLS) -> None:
        super().__init__()
        if n_fft % 2 or n_fft < 2:
            raise ValueError(f"n_fft must be a positive even number, got {n_fft}")
        if not 0 < hop_length <= n_fft // 2:
            raise ValueError(f"hop_length must be in 1..n_fft/2 for a Hann-window ISTFT, got {hop_length}")
        if input_channels not in (1, output_channels):
            raise ValueError(f"input_channels must be 1 or equal to output_channels "
                             f"({output_channels}), got {input_channels}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.condition_size = condition_size
        self.input_channels, self.output_channels = input_channels, output_channels
        self.channels = tuple(int(c) for c in channels)
        self.pools = tuple((int(t), int(f)) for t, f in pools)
        self.base = ResUNet30Base(n_fft, input_channels, output_channels, channels=self.channels,
                                  pools=self.pools)
        self.film = FiLMGenerator(condition_size, self.base.film_channels())
        init_like_reference(self)

    @classmethod
    def from_config(cls, config: str | ResUNet30Config, **kwargs: Any) -> ResUNet30:
        """Build for a named official config (see `RESUNET30_CONFIGS`) or a `ResUNet30Config`."""
        config = _resolve_config(config)
        if config.channels is not None:
            kwargs.setdefault("channels", config.channels)
        if config.pools is not None:
            kwargs.setdefault("pools", config.pools)
        return cls(n_fft=config.n_fft, hop_length=config.hop_length, **kwargs)

    def _window(self, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
        # Periodic Hann, as torchlibrosa's `librosa.filters.get_window("hann", fftbins=True)`.
        # Built per call (n_fft floats) rather than kept as a buffer, so that `.half()` or
        # `.to(dtype)` on the module cannot degrade it.
        return torch.hann_window(self.n_fft, periodic=True, dtype=dtype, device=device)

    def forward(self, mixture: Tensor, condition: Tensor) -> Tensor:
        if mixture.dim() != 3 or mixture.shape[1] != self.input_channels:
            raise ValueError(f"mixture must be (batch, {self.input_channels}, samples), "
                             f"got {tuple(mixture.shape)}")
        if condition.dim() != 2 or condition.shape != (mixture.shape[0], self.condition_size):
            raise ValueError(f"condition must be ({mixture.shape[0]}, {self.condition_size}), "
                             f"got {tuple(condition.shape)}")
        batch, channels, length = mixture.shape
        device_type = mixture.device.type
        betas = self.film(condition)

        # float32; float64 for a float64 mixture into a float64 model (numerical checks)
        float64 = mixture.dtype == torch.float64 and self.base.bn0.weight.dtype == torch.float64
        exact = torch.float64 if float64 else torch.float32
        with torch.autocast(device_type, enabled=False):
            wave = mixture.to(exact).reshape(batch * channels, length)
            min_length = self.n_fft // 2 + 1
            if length < min_length:
                wave = F.pad(wave, (0, min_length - length))
            window = self._window(wave.device, exact)
            spec = torch.stft(wave, self.n_fft, self.hop_length, window=window, center=True,
                              pad_mode="reflect", return_complex=True)  # (B*C, F, T)
            bins, frames = spec.shape[-2:]
            real, imag = spec.real, spec.imag
            magnitude = (real.square() + imag.square()).clamp_min(_POWER_FLOOR).sqrt()
            cos_in, sin_in = real / magnitude, imag / magnitude
            # bn0 normalises each frequency bin: put bins on the channel axis, (B, F, C, T).
            normed = self.base.bn0(magnitude.view(batch, channels, bins, frames).transpose(1, 2))
            # -> (B, C, T, F - 1): the Nyquist bin is dropped so F - 1 halves evenly.
            features_in = normed.permute(0, 2, 3, 1)[..., :-1]

        if device_type in (_TRAINING_CHANNELS_LAST_DEVICES if self.training else _CHANNELS_LAST_DEVICES):
            # NHWC convolutions: ~25-30% faster on CPU (oneDNN), and the layout tensor cores prefer
            # (in train mode only where as accurate, see _TRAINING_CHANNELS_LAST_DEVICES).
            features_in = features_in.contiguous(memory_format=torch.channels_last)
        masks = self.base(features_in, betas)  # the conv body; runs under the caller's autocast

        with torch.autocast(device_type, enabled=False):
            masks = masks.to(exact).view(batch, self.output_channels, _MASK_COMPONENTS, frames, bins - 1)
            mask_magnitude = torch.sigmoid(masks[:, :, 0])
            mask_real, mask_imag = torch.tanh(masks[:, :, 1]), torch.tanh(masks[:, :, 2])
            mask_norm = (mask_real.square() + mask_imag.square()).sqrt().clamp_min(_MASK_MAGNITUDE_FLOOR)
            mask_cos, mask_sin = mask_real / mask_norm, mask_imag / mask_norm

            def to_frames_bins(t: Tensor) -> Tensor:  # (B*C, F, T) -> (B, C, T, F - 1), a view
                return t.view(batch, channels, bins, frames).transpose(2, 3)[..., :-1]

            cos_x, sin_x, mag_x = to_frames_bins(cos_in), to_frames_bins(sin_in), to_frames_bins(magnitude)
            # Rotate the mixture's phase by the mask's phase; scale its magnitude by the mask.
            out_magnitude = F.relu(mag_x * mask_magnitude)
            out_real = out_magnitude * (cos_x * mask_cos - sin_x * mask_sin)
            out_imag = out_magnitude * (sin_x * mask_cos + cos_x * mask_sin)
            # Restore the Nyquist bin as zero, back to (B*C_out, F, T) for the ISTFT.
            out_spec = F.pad(torch.complex(out_real, out_imag), (0, 1))
            out_spec = out_spec.reshape(batch * self.output_channels, frames, bins).transpose(1, 2)
            out = torch.istft(out_spec, self.n_fft, self.hop_length, window=window, center=True,
                              length=max(length, min_length))
        return out[:, :length].reshape(batch, self.output_channels, length)


# --------------------------------------------------------------------------------------------
# Inference form: the same function with fewer passes over the feature maps


def batch_norm_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Per-channel `(scale, shift)` with `bn(x) == x * scale + shift` in eval mode, computed as
    PyTorch's eval-mode batch norm computes them (`1 / sqrt(var + eps)`, then `weight * ...`)."""
    scale = 1.0 / torch.sqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def _film_leaky(x: Tensor, scale: Tensor, shift: Tensor, beta: Tensor) -> Tensor:
    """`leaky_relu(bn(x) + beta)` in one new tensor: `x * scale + (shift + beta)`, activated in place."""
    return F.leaky_relu_(torch.addcmul(shift + beta, x, scale), LEAKY_SLOPE)


class _InferenceModule(nn.Module):
    """Holds derived (folded) tensors as non-persistent buffers: its state dict is not a checkpoint's."""

    def train(self, mode: bool = True) -> _InferenceModule:
        if mode:
            raise RuntimeError(f"{type(self).__name__} is an inference form (batch norms folded) and cannot "
                               "be trained; train the ResUNet30 it was made from")
        return super().train(False)


class InferenceConvBlockRes(_InferenceModule):
    """`ConvBlockRes` for inference, equal in algebra (float32 round-off apart):

    * `bn2` directly follows `conv1` (nothing else reads conv1's output), so it is folded into it:
      weights scaled per output channel, bn2's shift as the bias; beta2 is added in place;
    * `bn1` cannot be folded into whatever produced `x` (the shortcut reads `x` unnormalised), so
      `bn1(x) + beta1` becomes one `addcmul` instead of a batch norm and an addition;
    * the residual sum is taken in place on conv2's output.
    """

    def __init__(self, block: ConvBlockRes) -> None:
        super().__init__()
        with torch.no_grad():
            scale1, shift1 = batch_norm_affine(block.bn1)
            scale2, shift2 = batch_norm_affine(block.bn2)
            self.register_buffer("scale1", scale1.view(1, -1, 1, 1), persistent=False)
            self.register_buffer("shift1", shift1.view(1, -1, 1, 1), persistent=False)
            self.register_buffer("weight1", block.conv1.weight * scale2.view(-1, 1, 1, 1), persistent=False)
            self.register_buffer("bias1", shift2.clone(), persistent=False)
        self.conv2 = block.conv2
        self.shortcut = block.shortcut

    def forward(self, x: Tensor, beta1: Tensor, beta2: Tensor) -> Tensor:
        h = F.conv2d(_film_leaky(x, self.scale1, self.shift1, beta1), self.weight1, self.bias1, padding=1)
        h = self.conv2(F.leaky_relu_(h.add_(beta2), LEAKY_SLOPE))
        return h.add_(self.shortcut(x))


class InferenceDecoderBlockRes(_InferenceModule):
    """`DecoderBlockRes` for inference: `bn1(x) + beta1` as one `addcmul` (see `InferenceConvBlockRes`),
    its `ConvBlockRes` in inference form; the unused `bn2` is dropped."""

    def __init__(self, block: DecoderBlockRes) -> None:
        super().__init__()
        with torch.no_grad():
            scale1, shift1 = batch_norm_affine(block.bn1)
            self.register_buffer("scale1", scale1.view(1, -1, 1, 1), persistent=False)
            self.register_buffer("shift1", shift1.view(1, -1, 1, 1), persistent=False)
        self.conv1 = block.conv1
        self.conv_block2 = InferenceConvBlockRes(block.conv_block2)

    def forward(self, x: Tensor, skip: Tensor, betas: Betas) -> Tensor:
        sep = FILM_PATH_SEPARATOR
        x = self.conv1(_film_leaky(x, self.scale1, self.shift1, betas["beta1"]))
        x = torch.cat((x, skip), dim=1)
        return self.conv_block2(x, betas[f"conv_block2{sep}beta1"], betas[f"conv_block2{sep}beta2"])


def inference_form(model: ResUNet30 | FiLMResUNet) -> ResUNet30 | FiLMResUNet:
    """Rearrange an eval-mode ResUNet30 (or any `FiLMResUNet`) for inference, in place; returns it.

    Every `ConvBlockRes` and `DecoderBlockRes` of the U-Net is replaced by its inference form
    (`InferenceConvBlockRes`, `InferenceDecoderBlockRes`): 13 batch norms are folded into the
    convolutions before them and the others merged with their FiLM additions, so each block makes
    fewer passes over its feature maps. The function is the same; outputs differ from the original
    modules' by float32 round-off (tests: above 100 dB SNR with trained-like batch-norm statistics).
    The result cannot be trained (`train()` raises) and its state dict is no checkpoint (the folded
    tensors are not saved): keep the original for that. `bn0`, the STFT and the masks are untouched.
    """
    if model.training:
        raise ValueError("inference_form needs a model in eval mode (it folds the batch norms' running statistics)")
    unet = model.base if isinstance(model, ResUNet30) else model
    for name, module in list(unet.named_children()):
        if isinstance(module, EncoderBlockRes) and isinstance(module.conv_block1, ConvBlockRes):
            module.conv_block1 = InferenceConvBlockRes(module.conv_block1)
        elif isinstance(module, DecoderBlockRes):
            setattr(unet, name, InferenceDecoderBlockRes(module))
    return model


def _resolve_config(config: str | ResUNet30Config) -> ResUNet30Config:
    if isinstance(config, ResUNet30Config):
        return config
    try:
        return RESUNET30_CONFIGS[config]
    except KeyError:
        raise ValueError(f"unknown ResUNet30 config {config!r}; known: "
                         f"{', '.join(RESUNET30_CONFIGS)}") from None


def load_resunet30(source: str | Path | Mapping[str, Any], config: str | ResUNet30Config, *,
                   trust: bool = False, prefix: str = "ss_model.") -> ResUNet30:
    """Build a ResUNet30 for `config` and load official (or our own) weights into it, in eval mode.

    `source`: a checkpoint file (Lightning `.ckpt` whose `state_dict` holds the model under
    `prefix`, or a plain state dict saved with `torch.save`), or such a checkpoint / state dict
    already in memory. Keys under `prefix` are taken with the prefix removed (other entries, such
    as the query encoder's, are ignored); a state dict with no key under `prefix` is taken as is.
    The reference's fixed STFT tensors (`base.stft.*`, `base.istft.*`) are dropped. Any other
    missing, unexpected or mis-shaped key raises `CheckpointError` naming it; a checkpoint made for
    the other STFT size shows up as mis-shaped `base.bn0.*`. The hop length is not recorded in
    checkpoints: it comes from `config`.
    """
    config = _resolve_config(config)
    if isinstance(source, Mapping):
        checkpoint, where = source, "state dict"
    else:
        checkpoint, where = read_checkpoint(source, trust=trust), str(source)
    weights = state_dict_of(checkpoint)
    if prefix and any(k.startswith(prefix) for k in weights):
        weights = strip_prefix(weights, prefix)
        where = f"{where} ({prefix}*)"  # the keys named below are without it
    bad = sorted(k for k, v in weights.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{where}: entries that are not tensors: {', '.join(bad[:20])}")
    # Built empty and given the checkpoint's tensors: no random initialisation, no copy.
    model = empty_module(lambda: ResUNet30.from_config(config))
    load_weights(model, weights, source=where, ignore=RESUNET30_IGNORED_KEYS, assign=True)
    return model.eval()
