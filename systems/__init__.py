"""The registry of LASS systems: `get_system("2")`, `list_systems()`, and `load_separator("2", ...)`.

Systems are declared as data in `systems.catalog`; their code is imported only when run.
"""

from systems.catalog import SYSTEMS, get_system, list_systems
from systems.loading import load_separator

__all__ = ["SYSTEMS", "get_system", "list_systems", "load_separator"]
