"""The tensors of the official checkpoint layout that dcase9's own modules do not hold.

The baseline's and AudioSep's Lightning checkpoints (837 tensors for the real models) hold, beside
the weights dcase9 runs, tensors their reference code builds but dcase9 computes another way or not
at all:

- ResUNet30 (`ss_model.`): torchlibrosa's convolutional STFT and ISTFT (`base.stft.conv_real/imag`,
  `base.istft.ola_window`, `base.istft.conv_real/imag`); dcase9 uses torch.stft;
- laion CLAP (`query_encoder.model.`): HTSAT's torchlibrosa front end (`spectrogram_extractor.stft.*`,
  `logmel_extractor.melW`), the Swin shifted-window attention masks (`layers.L.blocks.B.attn_mask`),
  RoBERTa's `position_ids`, HTSAT's AudioSet classifier (`tscam_conv`, `head`) and the MLPs of
  CLAP's contrastive training (`audio_transform`, `text_transform`).

`dcase9 train` writes them all, so that a strict `load_state_dict` into the reference models
accepts its checkpoints: values carried over from where the weights came from (`--init`, the laion
file) when that had them, else rebuilt here: the fixed tensors by their definitions (bit for bit
what torchlibrosa and laion compute), the classifier and training MLPs, which no inference path
uses, with PyTorch's default initialisation from a seed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from dcase9.models.clap import ClapSpec


def periodic_hann(n: int) -> np.ndarray:
    """The periodic Hann window torchlibrosa takes from librosa (scipy's `get_window('hann', n)`):
    0.5 + 0.5 cos of n + 1 points evenly spaced over [-pi, pi], the last one dropped; float64."""
    return (0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, n + 1)))[:n]


def _dft_matrix(n: int, sign: int) -> np.ndarray:
    """W[a, b] = w ** (a b) with w = exp(sign 2 pi i / n), by integer powers as torchlibrosa forms it."""
    index = np.arange(n)
    return np.power(np.exp(sign * 2j * np.pi / n), index[None, :] * index[:, None])


def torchlibrosa_stft_kernels(n_fft: int) -> dict[str, torch.Tensor]:
    """torchlibrosa `STFT` (Hann window of n_fft samples) as its two Conv1d weights: output channel k
    (0 .. n_fft/2) holds window[n] * cos(2 pi k n / n_fft), resp. -window[n] * sin(...)."""
    windowed = _dft_matrix(n_fft, -1)[:, : n_fft // 2 + 1] * periodic_hann(n_fft)[:, None]
    return {"conv_real.weight": torch.tensor(np.real(windowed).T[:, None, :], dtype=torch.float32),
            "conv_imag.weight": torch.tensor(np.imag(windowed).T[:, None, :], dtype=torch.float32)}


def torchlibrosa_istft_tensors(n_fft: int) -> dict[str, torch.Tensor]:
    """torchlibrosa `ISTFT`: the overlap-add window (Hann squared) and the inverse DFT as Conv1d weights
    (output channel a: time sample, input channel b: frequency; exp(2 pi i a b / n) / n * window[a])."""
    window = periodic_hann(n_fft)
    inverse = _dft_matrix(n_fft, 1) / n_fft * window[None, :]
    return {"ola_window": torch.tensor(window ** 2, dtype=torch.float32),
            "conv_real.weight": torch.tensor(np.real(inverse).T[:, :, None], dtype=torch.float32),
            "conv_imag.weight": torch.tensor(np.imag(inverse).T[:, :, None], dtype=torch.float32)}


def resunet30_fixed_tensors(n_fft: int) -> dict[str, torch.Tensor]:
    """The five torchlibrosa tensors of a ResUNet30 (keys without the `ss_model.` prefix)."""
    return {**{f"base.stft.{k}": v for k, v in torchlibrosa_stft_kernels(n_fft).items()},
            **{f"base.istft.{k}": v for k, v in torchlibrosa_istft_tensors(n_fft).items()}}


def swin_attention_masks(spec: ClapSpec) -> dict[str, torch.Tensor]:
    """laion HTSAT's shifted-window masks, one per block whose window is shifted: the patch grid
    (spec_size / patch_stride) halves at each layer; blocks 1, 3, ... shift by window // 2 unless the
    grid is no larger than the window; tokens of one window that come from different regions of the
    shifted grid get -100, the others 0; shape (windows, window², window²)."""
    audio = spec.model.audio_config
    stride = audio.patch_stride[0] if isinstance(audio.patch_stride, (list, tuple)) else audio.patch_stride
    grid = audio.spec_size // stride
    masks: dict[str, torch.Tensor] = {}
    for layer, depth in enumerate(audio.depths):
        size = grid // 2 ** layer
        window = audio.window_size
        if size <= window:
            continue  # the whole grid is one window: no shift, no mask
        shift = window // 2
        bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        regions = torch.zeros(size, size)
        for label, (rows, columns) in enumerate((r, c) for r in bounds for c in bounds):
            regions[rows, columns] = label
        windows = regions.view(size // window, window, size // window, window).permute(0, 2, 1, 3)
        windows = windows.reshape(-1, window * window)
        differ = windows[:, None, :] != windows[:, :, None]
        mask = torch.zeros(differ.shape).masked_fill(differ, -100.0)
        for block in range(1, depth, 2):
            masks[f"audio_branch.layers.{layer}.blocks.{block}.attn_mask"] = mask.clone()
    return masks


def laion_fixed_tensors(spec: ClapSpec) -> dict[str, torch.Tensor]:
    """The fixed tensors of a laion CLAP for `spec` (keys without the `query_encoder.model.` prefix)."""
    from dcase9.models.clap import slaney_mel_filterbank

    fe = spec.front_end
    tensors = {f"audio_branch.spectrogram_extractor.stft.{k}": v
               for k, v in torchlibrosa_stft_kernels(fe.window_size).items()}
    tensors["audio_branch.logmel_extractor.melW"] = slaney_mel_filterbank(
        fe.sample_rate, fe.window_size, fe.n_mels, fe.fmin, fe.fmax)
    tensors.update(swin_attention_masks(spec))
    positions = spec.model.text_config.max_position_embeddings
    tensors["text_branch.embeddings.position_ids"] = torch.arange(positions, dtype=torch.int64)[None]
    return tensors


def _default_init(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> torch.Tensor:
    """PyTorch's default for Linear and Conv weights and biases: uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def laion_training_only_tensors(spec: ClapSpec, seed: int = 0) -> dict[str, torch.Tensor]:
    """HTSAT's classifier (`tscam_conv`, `head`) and CLAP's training MLPs (`audio_transform`,
    `text_transform`) as a freshly built laion model would have them: random, from `seed`."""
    audio = spec.model.audio_config
    features = audio.hidden_size  # embed_dim * 2 ** (layers - 1)
    classes = audio.num_classes
    stride = audio.patch_stride[0] if isinstance(audio.patch_stride, (list, tuple)) else audio.patch_stride
    rows = audio.spec_size // 2 ** (len(audio.depths) - 1) // stride // (audio.spec_size // audio.num_mel_bins)
    joint = spec.model.projection_dim
    generator = torch.Generator().manual_seed(seed)
    tensors = {
        "audio_branch.tscam_conv.weight": _default_init((classes, features, rows, 3), features * rows * 3, generator),
        "audio_branch.tscam_conv.bias": _default_init((classes,), features * rows * 3, generator),
        "audio_branch.head.weight": _default_init((classes, classes), classes, generator),
        "audio_branch.head.bias": _default_init((classes,), classes, generator),
    }
    for branch in ("text_transform", "audio_transform"):
        for layer in (0, 3):  # Linear, ReLU, Dropout, Linear
            tensors[f"{branch}.sequential.{layer}.weight"] = _default_init((joint, joint), joint, generator)
            tensors[f"{branch}.sequential.{layer}.bias"] = _default_init((joint,), joint, generator)
    return tensors


def laion_extra_keys(laion: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a laion state dict that dcase9's CLAP does not hold (`LAION_KEYS_DROPPED`)."""
    from dcase9.models.clap import LAION_KEYS_DROPPED

    patterns = [re.compile(p) for p in LAION_KEYS_DROPPED]
    return {k: v for k, v in laion.items() if any(p.fullmatch(k) for p in patterns)}


def complete_laion_extras(carried: Mapping[str, torch.Tensor], spec: ClapSpec,
                          seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor a laion CLAP for `spec` has beyond dcase9's: `carried` ones where given (a laion
    file's or an `--init` checkpoint's), rebuilt ones otherwise."""
    return {**laion_fixed_tensors(spec), **laion_training_only_tensors(spec, seed), **carried}
