"""Errors the toolkit raises on purpose: each names the file, row or field at fault."""

from __future__ import annotations

from pathlib import Path


class Dcase9Error(Exception):
    """Base class: a problem the user can fix; the CLI prints it without a traceback."""

    exit_code = 2  # the CLI's exit status: 2 the command could not run; 1 it ran and found problems


class DataError(Dcase9Error):
    """Bad input data. `where` locates it: a file, optionally a row (1-based line) and a field."""

    def __init__(self, message: str, file: str | Path | None = None, row: int | None = None,
                 field: str | None = None):
        self.message, self.file, self.row, self.field = message, file, row, field
        super().__init__(self.where() + message if self.where() else message)

    def where(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(str(self.file))
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return (", ".join(parts) + ": ") if parts else ""


class CheckpointError(Dcase9Error):
    """A checkpoint that cannot be found, downloaded, trusted or loaded completely."""


class ConfigError(Dcase9Error):
    """An invalid configuration file or option."""


class MissingDependencyError(Dcase9Error):
    """An optional dependency is not installed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or `kill`'s stop), raised where Ctrl-C would be, so the same cleanup runs. The
    command line's process raises it (it installs the handler; the library never does)."""


class DiskFullError(Dcase9Error):
    """The file system ran out of space (or quota) while `path` was being written; nothing half-written
    was kept (`dcase9.files` writes atomically)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        super().__init__(f"{path}: the disk is full (no space left on device, or the quota is used up) while "
                         "writing this file; nothing half-written was kept. Free some space and run the command "
                         "again")
