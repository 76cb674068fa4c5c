"""The one progress-bar factory: a rich bar on a terminal, plain lines when the output is a file or a pipe.

    bar = progress_bar("clips")
    with bar:
        task = bar.add_task("separating", total=48)
        bar.update(task, advance=1)

A bar redirected to a file is thousands of redraws; `PlainProgress` (same calls) prints a line each
tenth of the way (and at least every 30 s), with the count, the rate and the time.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Literal

PLAIN_EVERY_SECONDS = 30.0


def progress_bar(unit: str = "items", *, kind: Literal["count", "bytes"] = "count", label: str | None = None,
                 fields: bool = False, console: Any = None) -> Any:
    """A progress display with the rich `Progress` calls used here (`add_task`, `update`, `start`, `stop`,
    `console`, a context manager). `count`: n of total, rate in `unit`/s, elapsed time, ETA; `bytes`:
    transferred, speed, ETA (a download). `fields=True` adds the task's `extra` field (say, tokens used).
    `console`: where it draws (default: standard output)."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal:
        return PlainProgress(unit, kind=kind, console=console)
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)
    from rich.text import Text

    if kind == "bytes":
        return Progress(TextColumn(f"[bold]{label or '{task.description}'}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=console)

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} {unit}/s" if speed else f"- {unit}/s", style="cyan")

    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                          TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    if fields:
        columns.append(TextColumn("{task.fields[extra]}"))
    return Progress(*columns, console=console)


class PlainProgress:
    """The calls of rich's `Progress` as plain lines (for logs): one a tenth of the way, one at the end."""

    def __init__(self, unit: str, *, kind: str = "count", console: Any = None):
        from rich.console import Console

        self.unit, self.kind = unit, kind
        self.console = console or Console(file=sys.stdout)
        self._tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for task_id, task in self._tasks.items():
            if not task["done"]:
                self._line(task_id, final=True)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        task_id = len(self._tasks)
        now = time.monotonic()
        self._tasks[task_id] = {"description": description, "total": total, "completed": completed, "fields": fields,
                                "started": now, "printed_at": now, "printed_tenth": 0, "done": False}
        return task_id

    def update(self, task_id: int, *, advance: float | None = None, completed: float | None = None,
               total: float | None = None, **fields: Any) -> None:
        task = self._tasks[task_id]
        if total is not None:
            task["total"] = total
        if completed is not None:
            task["completed"] = completed
        if advance is not None:
            task["completed"] += advance
        task["fields"].update(fields)
        total_now = task["total"]
        tenth = int(10 * task["completed"] / total_now) if total_now else 0
        if total_now and task["completed"] >= total_now:
            self._line(task_id, final=True)
        elif tenth > task["printed_tenth"] or time.monotonic() - task["printed_at"] >= PLAIN_EVERY_SECONDS:
            task["printed_tenth"] = tenth
            self._line(task_id)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _line(self, task_id: int, final: bool = False) -> None:
        task = self._tasks[task_id]
        if task["done"]:
            return
        elapsed = time.monotonic() - task["started"]
        done, total = task["completed"], task["total"]
        if self.kind == "bytes":
            amount = f"{done / 1e6:.1f} MB" + (f" of {total / 1e6:.1f} MB" if total else "")
            rate = f"{done / 1e6 / elapsed:.1f} MB/s" if elapsed > 0 else "-"
        else:
            amount = f"{done:g}" + (f"/{total:g}" if total else "")
            rate = f"{done / elapsed:.2f} {self.unit}/s" if elapsed > 0 else f"- {self.unit}/s"
        extra = task["fields"].get("extra")
        if extra:
            from rich.text import Text

            extra = Text.from_markup(str(extra)).plain
        self.console.print(f"{task['description']}: {amount}, {rate}, {elapsed:.0f} s" + (f", {extra}" if extra else ""),
                           highlight=False, markup=False)
        task["printed_at"] = time.monotonic()
        task["done"] = final
