"""What every command module shares: the Typer app, consoles, error handling, common options and printing.

Exit codes: 0 success; 1 the command ran and found problems (invalid data, missing estimates,
a package that fails its check); 2 it could not run (bad option, unreadable input, missing
dependency), with a short message instead of a traceback; 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM, handled like Ctrl-C: temporary files are removed, a report folder keeps its previous run).
"""

from __future__ import annotations

import functools
import signal
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape

from dcase9.errors import Dcase9Error, Terminated

KindOpt = Annotated[Optional[str], typer.Option(
    "--kind", help="validation | eval-synth | eval-real, when the folder holds several sets; or one of AudioSep's "
                   "benchmarks (vggsound, music, esc50, audioset, audiocaps, clotho) for a folder not in its layout.")]
QueryColumnOpt = Annotated[Optional[str], typer.Option(
    "--query-column", help="AudioSep's AudioCaps benchmark: the queries' column, caption (default, as its benchmark.py) "
                    "or labels.")]
CsvOpt = Annotated[Optional[Path], typer.Option("--csv", help="The metadata CSV, if not the official name.")]
# The options of every command that loads a system (infer, separate, suite): one wording, one type. A
# checkpoint is a string, not a Path: `hf://owner/name` must reach `dcase9.hub` as written.
CheckpointOpt = Annotated[Optional[str], typer.Option(
    help="Use this checkpoint instead of the registry's: a file, a folder of `dcase9 export`, or one on the Hugging "
         "Face Hub (hf://owner/name\\[@revision]). One of `dcase9 train` or `dcase9 export` brings its own settings "
         "and tokenizer.")]
WeightOpt = Annotated[list[str], typer.Option(
    help="NAME=PATH: a local file or folder (or hf://owner/name) for a registry weight (repeatable; see "
         "`dcase9 download --list`).")]
OfflineOpt = Annotated[bool, typer.Option(help="Never download; use local files and caches only.")]
TrustCheckpointOpt = Annotated[bool, typer.Option(
    help="Unpickle checkpoints fully (runs code they contain): only for files you trust.")]
SystemConfigOpt = Annotated[Optional[Path], typer.Option(
    help="YAML overriding the system's settings (e.g. n_fft, hop_length, clap architecture), and those a "
         "`dcase9 train` checkpoint carries, key by key.")]
SetOpt = Annotated[list[str], typer.Option(
    "--set", help="KEY.PATH=VALUE for one of the system's settings, e.g. --set hop_length=320 (repeatable; applied "
                  "after --system-config).")]

app = typer.Typer(
    name="dcase9",
    help="Build, evaluate and submit systems for DCASE Task 9 (language-queried audio source separation).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        from dcase9.version import __version__

        typer.echo(f"dcase9 {__version__}")
        raise typer.Exit()


@app.callback()
def _verbs(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print dcase9's version and exit (`dcase9 env`: the whole setup).")] = False,
) -> None:
    """Always a group of verbs: without a callback, Typer runs a lone command as the whole app."""


console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

RESUMES = "finished outputs are kept; run the command again to resume"
NOTHING_KEPT = "nothing half-written was kept; the previous outputs are as they were"


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def stop_on_sigterm() -> None:
    """The command line's own process handles SIGTERM like Ctrl-C (the library never installs handlers)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def tune_process() -> None:
    """What the command line does to its own process before separating or scoring on the CPU (the
    library never changes its caller's process): keep freed memory for reuse (`dcase9.allocator`)."""
    from dcase9.allocator import reuse_freed_memory

    reuse_freed_memory()


def friendly_errors(func: F | None = None, *, on_interrupt: str = NOTHING_KEPT) -> Any:
    """Turn the toolkit's own errors and file-system errors into a short red message (exit 2, or the
    error's own `exit_code`); Ctrl-C into exit 130 and SIGTERM into 143, saying `on_interrupt` (what
    was kept: `RESUMES` only for commands that resume)."""
    if func is None:
        return functools.partial(friendly_errors, on_interrupt=on_interrupt)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Dcase9Error as exc:
            # The message is plain text: brackets in it (paths, lists, finding codes) are not markup.
            err_console.print(f"[bold red]error:[/] {escape(command_message(exc, wrapper))}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            # The file system said no (a path that is a file, no permission, disk full): the user's to fix.
            # Outputs are written atomically, so nothing half-written stays behind.
            where = f"{exc.filename}: " if exc.filename else ""
            err_console.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            err_console.print(f"[yellow]{'terminated' if terminated else 'interrupted'}: {escape(on_interrupt)}.[/]",
                              highlight=False)
            raise typer.Exit(143 if terminated else 130) from None

    return wrapper  # type: ignore[return-value]


# A command's parameters that give weights, by the role each plays in `dcase9.hub.MissingWeights`: its hints
# are worded with the flags of the command that runs, so they never name a flag the command does not have.
WEIGHT_ROLES = {"weight": "weights", "checkpoint": "checkpoint", "ats_checkpoint": "checkpoint", "init": "init",
                "offline": "offline"}


def weight_flags(command: Any) -> dict[str, str]:
    """How `command` (a command of the app, as `typer.main.get_command` builds it) gives weights, as
    `MissingWeights.render` takes it: role -> its flag, written with {name} (the weight) and {what} (FILE or
    DIR) where the flag takes a value."""
    flags = {}
    for param in command.params:
        role = WEIGHT_ROLES.get(param.name or "")
        if role is None or param.param_type_name != "option":
            continue
        flag = max(param.opts, key=len)
        flags[role] = {"weights": f"{flag} {{name}}={{what}}", "offline": flag}.get(role, f"{flag} {{what}}")
    return flags


def command_weight_flags(callback: Callable[..., Any]) -> dict[str, str]:
    """`weight_flags` of the app's command whose callback is `callback` ({} for none)."""
    import typer.main

    for info in app.registered_commands:
        if info.callback is callback:
            name = info.name or typer.main.get_command_name(callback.__name__)
            command = typer.main.get_command(app).commands.get(name)  # type: ignore[attr-defined]
            return weight_flags(command) if command is not None else {}
    return {}


def command_message(exc: Dcase9Error, callback: Callable[..., Any]) -> str:
    """The error's message; weights that are missing worded with the flags of the command (`callback`)."""
    from dcase9.hub import MissingWeights

    return exc.render(command_weight_flags(callback)) if isinstance(exc, MissingWeights) else str(exc)


def system_settings(config_file: Path | None, assignments: list[str]) -> dict[str, Any] | None:
    """A system's settings from `--system-config FILE` and `--set KEY.PATH=VALUE` (applied after it)."""
    from dcase9.config import deep_merge, parse_assignment, read_yaml
    from dcase9.errors import ConfigError

    settings = read_yaml(config_file) if config_file else None
    if settings is not None and not isinstance(settings, dict):
        raise ConfigError(f"{config_file}: expected a mapping of settings")
    for text in assignments:
        settings = deep_merge(settings or {}, parse_assignment(text))
    return settings


def parse_weight_options(values: list[str]) -> dict[str, Any]:
    """`--weight NAME=PATH` options as a mapping of names to local paths (`Path`) or folders of
    `dcase9 export` on the Hub (`hf://owner/name`: `dcase9.hub.HubReference`)."""
    from dcase9.errors import ConfigError
    from dcase9.hub import checkpoint_location

    parsed = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--weight expects NAME=PATH, got {value!r}")
        parsed[name.strip()] = checkpoint_location(path)
    return parsed


def print_left_out(problems: list[Any], orphans: list[str], noun: str) -> None:
    """Mixtures a run left out (exit 1 follows), and outputs for mixtures the data set no longer has."""
    if problems:
        console.print(f"[red]{len(problems)} mixture(s) left out[/] (no {noun} written; fix the input and run "
                      "the command again):", highlight=False)
        for problem in problems[:20]:
            console.print(f"  [red]{escape(problem.id)}[/]: {escape(problem.message)}", highlight=False, soft_wrap=True)
        if len(problems) > 20:
            console.print(f"  ... {len(problems) - 20} more in the manifest", highlight=False)
    if orphans:
        console.print(f"[yellow]{len(orphans)} {noun}(s) here belong to no mixture of the data set (rows removed "
                      f"from the CSV?), e.g. {escape(orphans[0])}; --overwrite deletes them[/]", highlight=False)


def print_stage(stage: Any, to: Console | None = None) -> None:
    """The overall progress line of a job in stages (a `dcase9.progress.Stage`: `dcase9 demo`, `dcase9 suite`):
    `[k/n] what (time so far; next: the stage after it)`, on standard output unless `to` says otherwise."""
    from rich.text import Text

    (to or console).print(Text(str(stage), style="bold cyan"))
