"""``bbx evaluate``: the command line of :mod:`bbx.evaluation.runner`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import typer

from .. import methods as registry
from ..defaults import EVAL_SEEDS
from ..errors import OptionError
from ..evaluation.runner import EvalConfig, find_images
from ..evaluation.runner import evaluate as run_evaluate
from .app import app, default_note, load_model, model_options, note
from .options import method_options
from .progress import RunsBar
from .remote import traffic_line
from .show import shown

#: ``--ray`` without an address: ``bbx.cli.main`` writes it so (Typer has no option with an optional value)
LOCAL = "local"


@app.command()
@model_options
@method_options(exclude=("seed",))  # its seeds are 0 .. --seeds - 1
def evaluate(
    model: str = typer.Argument(..., help="the .onnx classifier, or an endpoint "
                   "http(s)://HOST:PORT/v2/models/NAME or grpc(s)://HOST:PORT/NAME"),
    paths: list[str] = typer.Argument(..., help="images, folders (their images, recursively) or quoted globs"),
    methods: Optional[str] = typer.Option(None, help="comma list of methods (default: every registered one: "
                                          f"{','.join(registry.names())})"),
    seeds: Optional[int] = typer.Option(None, help=f"runs per image of each seeded method (default {EVAL_SEEDS}; "
                                        "the others run once)"),
    out: Path = typer.Option(Path("bbx-eval"), help="output folder; a rerun with the same folder resumes"),
    limit: Optional[int] = typer.Option(None, help="only the first N images"),
    lockstep: Optional[int] = typer.Option(None, help="soft-mask explanations in flight, their probes sent to "
                                           "the model in shared batches (default: 1 on the CPU, where sharing "
                                           "measured slower; elsewhere as many as fill --max-batch)"),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]", help="spread the photos over Ray "
                                      "workers: a local cluster, or the one at ADDRESS (pip install 'bbx[ray]')"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    truth: Optional[Path] = typer.Option(None, help="each photo's true region: a folder of PNG masks (the photo's "
                                         "stem, non-zero = region) or a .json/.csv of boxes in photo pixels; adds "
                                         "localisation to every line and table (docs/localisation.md)"),
    strict: bool = typer.Option(False, "--strict", help="stop at the first photo that cannot be read (default: "
                                "skip it, with an error line in results.jsonl, and try it again next time)"),
    *, model_opts: dict, method_opts: dict,
) -> None:
    """Every method on every image (resumable JSON lines), then φ, area, consistency and cost tables."""
    from ..config import ExplainConfig
    from ..evaluation.summary import summarise
    from ..evaluation.truth import load_truth

    names = registry.names() if methods is None else tuple(m.strip().lower() for m in methods.split(",") if m.strip())
    if not names:
        raise OptionError(f"--methods needs a comma list from {','.join(registry.names())}")
    config = EvalConfig(methods=names, explain=ExplainConfig(**method_opts),
                        truth=None if truth is None else load_truth(truth),
                        **({} if seeds is None else {"seeds": seeds})).validate()
    images = find_images(paths, limit)
    m = load_model(model, **model_opts)
    line = default_note(m)
    if line:
        note(line)
    try:
        with RunsBar("evaluate", f"evaluate: {len(images)} images x {len(config.methods)} methods", enabled=not quiet) as bar:
            if ray is None:
                outcome = run_evaluate(m, images, config, out, progress=bar, strict=strict, lockstep=lockstep)
            else:
                from ..evaluation.ray_engine import evaluate_on_ray

                # a CPU worker holds one slot: one onnxruntime thread, not one per core of the machine
                gpu = model_opts["device"].lower() == "cuda" or m.device == "cuda"  # the driver may have none
                opener = functools.partial(load_model, model, threads=None if gpu else 1, **model_opts)
                outcome = evaluate_on_ray(m, opener, images, config, out, address=None if ray == LOCAL else ray,
                                          progress=bar, lockstep=lockstep, gpu=gpu, strict=strict)
    except KeyboardInterrupt:
        _partial_summary(out)
        raise
    for rec in outcome.errors:
        typer.echo(f"bbx: skipped: {shown(rec['error'])} ({rec['method']} seed {rec['seed']})", err=True)
    summary = summarise(outcome.records)
    md, csv = summary.write(out)
    typer.echo(_recurring(m, outcome.records, config, out, md))
    if m.traffic is not None:
        typer.echo(traffic_line(m.traffic))
    typer.echo(shown(f"wrote {outcome.path}, {md}, {csv}, {out / 'recurring.json'}"))


def _recurring(m, records: list, config, out: Path, md: Path) -> str:
    """Recurring regions of each method's heatmaps: appended to summary.md (whose whole
    text is returned), in recurring.json."""
    from .._io import atomic_write
    from ..evaluation import recurring
    from ..maths.perturb import BlurSpec

    blur = BlurSpec(config.explain.sigma, config.explain.kernel)
    found = [recurring.blur_effects(recurring.find(records, method), records, m, blur) for method in config.methods]
    text = md.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + recurring.markdown(found)
    atomic_write(md, lambda fh: fh.write(text), mode="w")
    recurring.write(found, out)
    return text


def _partial_summary(out: Path) -> None:
    """After Ctrl-C: the tables of what finished (every finished job is already on disk)."""
    import warnings

    from ..evaluation.runner import RESULTS, read_records
    from ..evaluation.summary import summarise

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = [r for r in read_records(out / RESULTS) if "error" not in r]
    except Exception:  # the interruption is what gets reported; its summary is a courtesy
        return
    if records:
        typer.echo(summarise(records).markdown())
        typer.echo(shown(f"interrupted: {len(records)} runs kept in {out / RESULTS}; the same command resumes"))


def ray_argv(args: list[str]) -> list[str]:
    """``--ray`` takes an optional address: the next word is one when it looks like an address
    (``auto``, ``ray://...``, ``host:port``); else ``--ray`` alone is a local cluster."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--ray":
            nxt = out[i + 1] if i + 1 < len(out) else ""
            if not _is_address(nxt):
                out.insert(i + 1, LOCAL)
            break
    return out


def _is_address(word: str) -> bool:
    import re

    return word in ("auto", LOCAL) or word.startswith("ray://") or bool(re.fullmatch(r"[\w.\-\[\]:]+:\d+", word))
