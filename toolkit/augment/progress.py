"""How a run reports progress; the command line plugs in a rich progress bar, the API is silent by default."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, task: str, total: int) -> None:
        """A new phase with `total` steps (requests to answer, answers to score)."""

    def advance(self, steps: int = 1, *, tokens: int = 0, failed: bool = False) -> None:
        """`steps` finished; `tokens` used by them (API and local LLM); `failed` if they got no answer."""

    def finish(self) -> None:
        """The current phase is over."""

    def note(self, message: str) -> None:
        """Something the user should see (a malformed answer, a retry budget spent)."""


class SilentProgress:
    def start(self, task: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1, *, tokens: int = 0, failed: bool = False) -> None:
        pass

    def finish(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass
