"""``bbx audit``: the command line of :mod:`bbx.audit`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from .. import defaults as d
from .. import methods as registry
from ..errors import OptionError
from ..evaluation.runner import EvalConfig, find_images
from .show import shown
from .app import app, command_line, load_model, model_options
from .options import method_options
from .progress import RunsBar


def _needs_report_extra() -> None:
    import importlib.util

    # looked up, not imported: importing matplotlib writes its cache into ~ even for a refused run
    missing = [name for name in ("matplotlib", "rich") if importlib.util.find_spec(name) is None]
    if missing:
        raise OptionError(f"bbx audit needs {' and '.join(missing)}: pip install 'bbx[report]'")


def _own_preprocessing(model_opts: dict) -> dict:
    """The second model keeps the options about where and how to run, and reads its own
    preprocessing and labels (from its file, or its endpoint's metadata)."""
    own = ("size", "crop_pct", "scale", "mean", "std", "channel_order", "layout", "resize", "pad_value",
           "interpolation", "preset", "spec", "output", "labels")
    return {k: (None if k in own else v) for k, v in model_opts.items()}


def _defaults_that_run(config: EvalConfig, models: list) -> EvalConfig:
    """The default methods less those a model reveals too little for (an endpoint that answers only
    its top-k classes cannot run rise), said in one line; methods the user named are never dropped."""
    kept = list(config.methods)
    for m in models:
        kept = registry.runs_on(m, kept)
    if not kept:
        for m in models:  # nothing runs: the refusal that names what would
            registry.check_reveals(m, config.methods[0])
    left = [n for n in config.methods if n not in kept]
    if not left:
        return config
    typer.echo(f"audit: {', '.join(left)} left out of the default methods: the model reveals too little for "
               f"{'it' if len(left) == 1 else 'them'} (--methods names what to run)", err=True)
    return dataclasses.replace(config, methods=tuple(kept)).validate()


@app.command()
@model_options
@method_options(exclude=("seed",))  # its seeds are 0 .. --seeds - 1
def audit(
    model: str = typer.Argument(..., help="the .onnx classifier, or an endpoint "
                   "http(s)://HOST:PORT/v2/models/NAME or grpc(s)://HOST:PORT/NAME"),
    paths: list[str] = typer.Argument(..., help="photos, folders (their images, recursively) or quoted globs"),
    out: Path = typer.Option(Path("audit"), help="output folder (index.html); a rerun with the same folder resumes"),
    methods: Optional[str] = typer.Option(None, help=f"comma list from {','.join(registry.names())}; the first "
                                          f"fills the gallery (default: {','.join(d.AUDIT_METHODS)})"),
    seeds: int = typer.Option(1, help="seeds per photo for ftc, fntc, plain and random (the gallery shows the first)"),
    limit: Optional[int] = typer.Option(None, help="only the first N photos"),
    compare: Optional[str] = typer.Option(None, "--compare", help="a second model (.onnx or endpoint) explained on "
                                          "the same photos, with its own preprocessing and labels: the page compares "
                                          "the two (top-1, confidence, explanations, recurring regions)"),
    truth: Optional[Path] = typer.Option(None, help="each photo's true region: a folder of PNG masks (the photo's "
                                         "stem, non-zero = region) or a .json/.csv of boxes in photo pixels; adds "
                                         "localisation to every line and table (docs/localisation.md)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    *, model_opts: dict, method_opts: dict,
) -> None:
    """Explain every photo, then write a self-contained report (OUT/index.html) to open in a browser."""
    from ..audit import audit as run_audit
    from ..config import ExplainConfig
    from ..evaluation.truth import load_truth

    names = d.AUDIT_METHODS if methods is None else tuple(m.strip().lower() for m in methods.split(",") if m.strip())
    if not names:
        raise OptionError(f"--methods needs a comma list from {','.join(registry.names())}")
    config = EvalConfig(methods=names, seeds=seeds, explain=ExplainConfig(**method_opts),
                        truth=None if truth is None else load_truth(truth)).validate()
    _needs_report_extra()
    photos = find_images(paths, limit)
    m = load_model(model, **model_opts)
    other = None if compare is None else load_model(compare, **_own_preprocessing(model_opts))
    if methods is None:
        config = _defaults_that_run(config, [m] if other is None else [m, other])
    with RunsBar("audit", f"audit of {len(photos)} photos", enabled=not quiet) as bar:
        result = run_audit(m, photos, config, out, progress=bar, command=command_line(), compare_with=other)
    for line in result.report.recurring.lines + (result.report.compare.lines if result.report.compare else []):
        typer.echo(shown(line))
    typer.echo(result.line())
    typer.echo(f"report: {shown(result.path)}")
