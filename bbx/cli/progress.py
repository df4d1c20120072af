"""Progress bars on stderr (``rich``): steps done, elapsed time and the time left; none when stderr is
not a terminal or when ``--quiet`` is given."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from .show import shown


def bar(title: str, enabled: bool = True) -> Any:
    """A started :class:`rich.progress.Progress` with one task, or None when disabled."""
    if not (enabled and sys.stderr.isatty()):
        return None
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                        TextColumn("{task.fields[status]}"), console=Console(stderr=True), transient=False)
    progress.start()
    progress.add_task(title, total=None, status="")
    return progress


class StepBar:
    """``progress(step, total, loss)`` of one explanation as a bar (the callback :func:`bbx.explain` takes)."""

    def __init__(self, title: str, enabled: bool = True, value: str = "J"):
        self.progress, self.value = bar(title, enabled), value

    def __enter__(self) -> "StepBar":
        return self

    def update(self, step: int, total: int, loss: float) -> None:
        if self.progress is not None:
            self.progress.update(self.progress.task_ids[0], completed=step, total=total, status=f"{self.value} {loss:+.4f}")

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()


class RunsBar:
    """The plan (one line on stderr, always), then a bar on terminals: runs done, elapsed, time left,
    and the run in flight with its step."""

    def __init__(self, name: str, title: str, enabled: bool = True):
        self.name, self.title = name, title
        self.enabled = enabled
        self.progress = None

    def __enter__(self) -> "RunsBar":
        return self

    def start(self, done_before: int, todo: int) -> None:
        """The plan, always (one line on stderr): how much a rerun will skip."""
        typer.echo(f"{self.title}: {done_before + todo} runs, {done_before} done before, {todo} to do", err=True)
        self.progress = bar(self.name, self.enabled)

    def update(self, done: int, total: int, job: Any, step: int, steps: int) -> None:
        if self.progress is None:
            return
        what = f"{shown(Path(job.image).name)} {job.method} seed {job.seed} step {step}/{steps}" if done < total else "done"
        self.progress.update(self.progress.task_ids[0], completed=done + (step / max(steps, 1) if done < total else 0),
                             total=total, status=what)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
