"""``bbx audit``: the command line of :mod:`bbx.audit`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .. import methods as registry
from ..errors import OptionError
from ..evaluate import EvalConfig, Job, find_images
from .app import app, command_line, load_model, model_options


def _needs_report_extra() -> None:
    missing = []
    for name in ("matplotlib", "rich"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise OptionError(f"bbx audit needs {' and '.join(missing)}: pip install 'bbx[report]'")


@app.command()
@model_options
def audit(
    model: Path = typer.Argument(..., help="the .onnx classifier"),
    paths: list[str] = typer.Argument(..., help="photos, folders (their images, recursively) or quoted globs"),
    out: Path = typer.Option(Path("audit"), help="output folder (index.html); a rerun with the same folder resumes"),
    methods: Optional[str] = typer.Option(None, help=f"comma list from {','.join(registry.names())}; the first "
                                          "fills the gallery (default: ftc,occlusion,random)"),
    budget: Optional[int] = typer.Option(None, help="at most this many queries per explanation (default: each "
                                         "method's own; occlusion needs 198 on a 224 px input)"),
    seeds: int = typer.Option(1, help="seeds per photo for ftc, fntc, plain and random (the gallery shows the first)"),
    limit: Optional[int] = typer.Option(None, help="only the first N photos"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    *, model_opts: dict,
) -> None:
    """Explain every photo, then write a self-contained report (OUT/index.html) to open in a browser."""
    from ..audit import DEFAULT_METHODS
    from ..audit import audit as run_audit
    from ..config import ExplainConfig

    names = DEFAULT_METHODS if methods is None else tuple(m.strip().lower() for m in methods.split(",") if m.strip())
    if not names:
        raise OptionError(f"--methods needs a comma list from {','.join(registry.names())}")
    explain = {} if budget is None else {"budget": budget}
    config = EvalConfig(methods=names, seeds=seeds, explain=ExplainConfig(**explain)).validate()
    _needs_report_extra()
    photos = find_images(paths, limit)
    m = load_model(model, **model_opts)
    with _RichBar(f"audit of {len(photos)} photos", enabled=not quiet) as bar:
        result = run_audit(m, photos, config, out, progress=bar, command=command_line())
    typer.echo(result.line())
    typer.echo(f"report: {result.path}")


class _RichBar:
    """A rich progress bar on stderr: runs done (fractions of the one in flight count), the one in
    flight, elapsed time and the time left."""

    def __init__(self, title: str, enabled: bool = True):
        self.title, self.enabled = title, enabled
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> "_RichBar":
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        if self.enabled:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                                     console=Console(stderr=True), transient=False)
            self.progress.__enter__()
        return self

    def start(self, done_before: int, todo: int) -> None:
        typer.echo(f"{self.title}: {done_before + todo} runs, {done_before} done before, {todo} to do", err=True)
        if self.progress is not None and todo:
            self.task = self.progress.add_task(self.title, total=todo)

    def update(self, done: int, total: int, job: Job, step: int, steps: int) -> None:
        if self.progress is None or self.task is None:
            return
        what = f"{Path(job.image).name} {job.method}" + (f" seed {job.seed}" if job.seed else "") if done < total else "done"
        self.progress.update(self.task, completed=done + (step / max(steps, 1) if done < total else 0),
                             description=what[:48])

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
