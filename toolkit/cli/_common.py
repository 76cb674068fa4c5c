"""What every command module shares: the Typer app, consoles, and error handling.

Exit codes: 0 success; 1 the command ran and found problems (invalid data, missing estimates,
a package that fails its check); 2 it could not run (bad option, unreadable input, missing
dependency), with a short message instead of a traceback; 130 interrupted.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from toolkit.errors import Dcase9Error

app = typer.Typer(
    name="dcase9",
    help="Build, evaluate and submit systems for DCASE Task 9 (language-queried audio source separation).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _verbs() -> None:
    """Always a group of verbs: without a callback, Typer runs a lone command as the whole app."""


console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn the toolkit's own errors and file-system errors into a short red message (exit 2, or the
    error's own `exit_code`); Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Dcase9Error as exc:
            # The message is plain text: brackets in it (paths, lists, finding codes) are not markup.
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            # The file system said no (a path that is a file, no permission, disk full): the user's to fix.
            # Outputs are written atomically, so nothing half-written stays behind.
            where = f"{exc.filename}: " if exc.filename else ""
            err_console.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted: finished outputs are kept; run the command again to resume.[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
