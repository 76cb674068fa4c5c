"""The one rule for `device="auto"` (CUDA, then MPS, then the CPU) and the check of a named device."""

from __future__ import annotations

import torch

from dcase9.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA when available, then Apple's MPS, then the CPU; else the named device (`cpu`, `cuda`,
    `cuda:N`, `mps`), refused when it is not there."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {name!r} requested but MPS is not available here")
    return device
