"""The registry of LASS systems: `get_system("2")`, `list_systems()`, and `load_separator("2", ...)`.

Systems are declared as data in `dcase9.systems.catalog` (or added at run time with `register_system`);
their code is imported only when run.
"""

from dcase9.systems.base import BuildContext, SystemSpec
from dcase9.systems.catalog import SYSTEMS, get_system, list_systems, register_system, unregister_system
from dcase9.systems.loading import load_separator
from dcase9.systems.sharing import system_card

__all__ = ["SYSTEMS", "BuildContext", "SystemSpec", "get_system", "list_systems", "load_separator",
           "register_system", "system_card", "unregister_system"]
