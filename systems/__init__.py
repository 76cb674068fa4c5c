"""The registry of LASS systems: `get_system("2")`, `list_systems()`.

Systems are declared as data in `systems.catalog`; their code is imported only when run.
"""

from systems.catalog import SYSTEMS, get_system, list_systems

__all__ = ["SYSTEMS", "get_system", "list_systems"]
