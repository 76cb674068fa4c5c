"""Every system the toolkit knows, as data. Add a system by adding a SystemSpec here."""

from __future__ import annotations

from systems.base import SystemSpec
from toolkit.errors import ConfigError

SYSTEMS: tuple[SystemSpec, ...] = (
    SystemSpec(
        name="mixture",
        title="Mixture (identity)",
        summary="Returns the mixture unchanged: SDRi is 0 dB by definition. A pipeline check.",
        sample_rate=16000,
        factory="systems.reference_based:build_mixture",
    ),
    SystemSpec(
        name="oracle",
        title="Oracle ideal ratio mask",
        summary="Ideal ratio mask from the reference (validation only): an upper bound for masking systems.",
        sample_rate=16000,
        factory="systems.reference_based:build_oracle",
        needs_reference=True,
    ),
)


def list_systems() -> tuple[SystemSpec, ...]:
    return SYSTEMS


def get_system(name: str) -> SystemSpec:
    """Look a system up by name or alias ("2", "audiosep32k", "system2" all work where declared)."""
    key = str(name).strip().lower()
    for spec in SYSTEMS:
        if key == spec.name.lower() or key in (a.lower() for a in spec.aliases):
            return spec
    known = ", ".join(s.name for s in SYSTEMS)
    raise ConfigError(f"unknown system {name!r}; known systems: {known} (see `dcase9 systems`)")
