"""What `dcase9 export` (`dcase9.export`, below the systems) needs to know of a system: `system_card`.

    from dcase9.export import export_model
    from dcase9.systems import system_card
    export_model("runs/system1", "share/system1", describe_system=system_card)
"""

from __future__ import annotations

from dcase9.errors import ConfigError
from dcase9.export import SystemCard
from dcase9.systems.catalog import get_system


def system_card(name: str) -> SystemCard:
    """The registered system `name` (or alias) as an export's model card describes it."""
    spec = get_system(name)
    if not spec.weights:
        raise ConfigError(f"system '{spec.name}' uses no checkpoint: there is nothing to export")
    return SystemCard(spec.name, spec.title, spec.summary, spec.sample_rate, spec.weights[0], tuple(spec.weights[1:]))
