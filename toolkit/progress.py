"""Progress: the one progress-bar factory, and the overall line of a job in stages.

A rich bar on a terminal, plain lines when the output is a file or a pipe:

    bar = progress_bar("clips")
    with bar:
        task = bar.add_task("separating", total=48)
        bar.update(task, advance=1)

A bar redirected to a file is thousands of redraws; `PlainProgress` (same calls) prints a line each
tenth of the way (and at least every 30 s), with the count, the rate and the time.

A job of several stages (`dcase9 demo`, `dcase9 suite`) names them up front in a `StagePlan`; as each
starts, its `Stage` (k of n, the time since the job started, what comes next) goes to the caller,
whose `str(stage)` is the line the command line prints:

    plan = StagePlan(["separate", "score"], on_stage=print)
    plan.start("separate")  # [1/2] separate (0 s so far; next: score)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Stage:
    """A stage of a job as it starts: its number of the total, what it does, the seconds since the job
    started and the stage after it (None for the last)."""

    number: int
    total: int
    what: str
    elapsed: float
    next: str | None = None

    def __str__(self) -> str:
        following = f"; next: {self.next}" if self.next is not None else ""
        return f"[{self.number}/{self.total}] {self.what} ({duration(self.elapsed)} so far{following})"


class StagePlan:
    """The stages of a job, named up front (each once). `start(what)` announces one to `on_stage` and
    returns it; a stage that is never started (a benchmark whose data is missing) is skipped: the next
    one keeps its own number. The clock starts with the plan."""

    def __init__(self, stages: Sequence[str], on_stage: Callable[[Stage], None] | None = None):
        if len(set(stages)) != len(stages):
            raise ValueError(f"a plan names each stage once: {list(stages)}")
        self.stages, self.on_stage = list(stages), on_stage
        self.started = time.monotonic()

    def start(self, what: str) -> Stage:
        index = self.stages.index(what)
        following = self.stages[index + 1] if index + 1 < len(self.stages) else None
        stage = Stage(index + 1, len(self.stages), what, time.monotonic() - self.started, following)
        if self.on_stage is not None:
            self.on_stage(stage)
        return stage


def duration(seconds: float) -> str:
    """`42 s`, `12 min 05 s`, `3 h 07 min`: a time span as a person reads it."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
