"""Progress bars on stderr (``rich``): steps done, elapsed time and the time left; none when stderr is
not a terminal or when ``--quiet`` is given."""

from __future__ import annotations

import sys
from typing import Any


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

    def __init__(self, title: str, enabled: bool = True):
        self.progress = bar(title, enabled)

    def __enter__(self) -> "StepBar":
        return self

    def update(self, step: int, total: int, loss: float) -> None:
        if self.progress is not None:
            self.progress.update(self.progress.task_ids[0], completed=step, total=total, status=f"loss {loss:+.4f}")

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
