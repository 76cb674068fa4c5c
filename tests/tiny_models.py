"""Small stand-ins for the real weights, written in the official file layouts.

- A ResUNet30 with the official key names and a small STFT (n_fft 256, hop 64: the same network,
  fewer time-frequency bins, so it runs quickly on a CPU).
- A tiny laion CLAP (2-layer text and audio towers, but the real 512-d query space the ResUNet's
  FiLM layers expect), stored under `query_encoder.model.` in laion naming, as the baseline's
  Lightning checkpoints do.
- The tiny RoBERTa tokenizer and CLAP architecture of `dcase9.models.tiny`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dcase9.models.clap import build_clap_model, transformers_to_laion
from dcase9.models.resunet import ResUNet30, init_like_reference
from dcase9.models.tiny import TINY_CLAP, write_tiny_roberta_tokenizer

SMALL_STFT = {"n_fft": 256, "hop_length": 64}


SMALL_NET = {"channels": [8, 16], "pools": [[2, 2], [2, 2]]}  # a narrow, shallow U-Net: fast where the net's
# numbers do not matter (`resunet_weights(..., net=SMALL_NET)`, `system_config(..., net=SMALL_NET)`)


def system_config(sample_rate_stft: dict[str, int] | None = None, net: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `--system-config` for the tiny checkpoint (`net`: the U-Net's `channels` and `pools` when not official)."""
    return {**(sample_rate_stft or SMALL_STFT), **(net or {}), "clap": dict(TINY_CLAP)}


def tiny_clap_options() -> dict[str, Any]:
    """The `clap` settings a checkpoint of `dcase9 train` with the tiny CLAP carries (every field)."""
    from dcase9.models.clap import ClapArchitecture

    return ClapArchitecture(**TINY_CLAP).model_dump(mode="json")


def tiny_clap_laion_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    from dcase9.models.clap import ClapArchitecture

    torch.manual_seed(seed)
    model = build_clap_model(ClapArchitecture(**TINY_CLAP).spec())
    return transformers_to_laion(model.state_dict())


def trained_like_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Give every batch norm non-trivial running statistics, as a trained model has (in place)."""
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buffer.normal_(0.0, 0.1)
    return model


def resunet_weights(n_fft: int = 256, hop_length: int = 64, seed: int = 0,
                    net: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """Random ResUNet30 weights plus the reference's fixed DFT tensors, with the official shapes (`net`:
    other `channels` and `pools`)."""
    torch.manual_seed(seed)
    shape = {"channels": net["channels"], "pools": [tuple(p) for p in net["pools"]]} if net else {}
    model = ResUNet30(n_fft=n_fft, hop_length=hop_length, **shape)
    init_like_reference(model)
    trained_like_batch_norms(model)
    bins = n_fft // 2 + 1
    fixed = {"base.stft.conv_real.weight": torch.randn(bins, 1, n_fft),
             "base.stft.conv_imag.weight": torch.randn(bins, 1, n_fft),
             "base.istft.ola_window": torch.hann_window(n_fft),
             "base.istft.conv_real.weight": torch.randn(n_fft, n_fft, 1),
             "base.istft.conv_imag.weight": torch.randn(n_fft, n_fft, 1)}
    return {**fixed, **model.state_dict()}


def write_lightning_checkpoint(path: Path, *, resunet: dict[str, torch.Tensor] | None = None,
                               clap: dict[str, torch.Tensor] | None = None) -> Path:
    """A checkpoint laid out like the baseline's: Lightning metadata, `ss_model.*`, `query_encoder.model.*`."""
    resunet = resunet if resunet is not None else resunet_weights()
    clap = clap if clap is not None else tiny_clap_laion_weights()
    state = {f"ss_model.{k}": v for k, v in resunet.items()}
    state.update({f"query_encoder.model.{k}": v for k, v in clap.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 19, "global_step": 200000, "pytorch-lightning_version": "2.0.0", "state_dict": state,
                "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": []}, path)
    return path


def tokenizer_folder(directory: Path) -> Path:
    return write_tiny_roberta_tokenizer(directory)
