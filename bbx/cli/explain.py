"""``bbx explain``: one photo, one method, heatmaps and a report in an output folder.

Every method option defaults to unset: only what is given overrides :class:`~bbx.config.ExplainConfig`,
and the registry refuses an option the method does not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import defaults as d
from .. import methods
from ..errors import OutputError
from .show import shown
from .app import (DEFAULT_IMAGE, DEFAULT_MODEL, app, command_line, default_note, load_model, model_options, note,
                  warn_batch_effect)
from .progress import StepBar
from .remote import traffic_line

_METHOD_HELP = f"one of: {methods.describe()} (default {d.METHOD})"


@app.command()
@model_options
def explain(
    model: Optional[str] = typer.Argument(None, help="the .onnx classifier or an endpoint http(s)://HOST:PORT/v2/"
                                          "models/NAME (default: the bundled EfficientNet-Lite0)"),
    image: Optional[Path] = typer.Argument(None, help="the photo (default: the bundled cat photo)"),
    target: Optional[str] = typer.Option(None, help="class index or name (default: top-1)"),
    method: Optional[str] = typer.Option(None, help=_METHOD_HELP),
    budget: Optional[int] = typer.Option(None, help="at most this many queries (default: the method's own; "
                                         "ftc, fntc, plain spend it: pairs per step follow)"),
    seed: Optional[int] = typer.Option(None, help=f"random seed of seeded methods (default {d.SEED}); "
                                       "the same seed gives the same mask"),
    iterations: Optional[int] = typer.Option(None, help=f"optimizer steps (paper: {d.ITERATIONS})"),
    pairs: Optional[int] = typer.Option(None, help=f"antithetic pairs per step (default {d.PAIRS})"),
    estimator: Optional[str] = typer.Option(None, help="how ftc, fntc, plain minimise: active (screen, then checked "
                                           "steps on the elements that move), nes (Gaussian) or spsa (+-1) "
                                           f"directions (default {d.ESTIMATOR})"),
    lr: Optional[float] = typer.Option(None, help=f"Adam step size (paper: {d.LR})"),
    lambda1: Optional[float] = typer.Option(None, help=f"weight of the mask's total variation (paper: {d.LAMBDA1})"),
    lambda2: Optional[float] = typer.Option(None, help=f"weight of the blurred area, ||1-M||_1 averaged (paper: {d.LAMBDA2:g})"),
    beta: Optional[float] = typer.Option(None, help=f"TV exponent (paper: {d.BETA:g})"),
    gamma: Optional[float] = typer.Option(None, help=f"weight of the F-TC / F-NTC logit term (paper: {d.GAMMA})"),
    query_path: Optional[str] = typer.Option(None, "--query-path", help="where each batch of perturbed images is "
                                             "built: auto (numpy on cpu, fused on cuda), numpy, onnx, device, fused "
                                             "or reference (the same numbers; docs/gpu.md)"),
    patch: Optional[int] = typer.Option(None, help=f"occlusion's and greedy's cell, px (default {d.PATCH})"),
    area: Optional[float] = typer.Option(None, help=f"share of the image greedy blurs before it stops (default {d.GREEDY_AREA:g})"),
    stride: Optional[int] = typer.Option(None, help=f"greedy's search grid, px (default {d.GREEDY_STRIDE})"),
    window: Optional[int] = typer.Option(None, help=f"greedy's window side, px (default {d.GREEDY_WINDOW})"),
    out: Path = typer.Option(Path("bbx-out"), help="output folder"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the bbx outputs already in the output folder"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    html: bool = typer.Option(False, "--html", help="also write index.html, the one-photo page of bbx audit"),
    *, model_opts: dict,
) -> None:
    """Find the undesirable pixels of IMAGE for a target class and write heatmap, figures and report."""
    from .._io import check_out
    from ..explain import explain as run_explain
    from ..explain import resolve
    from ..remote import is_url

    if image is None and model is not None and not is_url(model) and Path(model).suffix.lower() != ".onnx":
        model, image = None, Path(model)  # `bbx explain photo.jpg`: the bundled model
    model = model or DEFAULT_MODEL
    image = image or DEFAULT_IMAGE
    given = {"budget": budget, "seed": seed, "iterations": iterations, "pairs": pairs, "estimator": estimator,
             "lr": lr, "lambda1": lambda1, "lambda2": lambda2, "beta": beta, "gamma": gamma,
             "query_path": query_path.strip().lower() if query_path else None, "patch": patch, "area": area,
             "stride": stride, "window": window}
    cfg = resolve(method, None, {k: v for k, v in given.items() if v is not None})  # refused before any work
    check_out(out)  # created when the results are written: a refused run leaves none
    if not overwrite:
        refuse_overwrite(out)
    m = load_model(model, **model_opts)
    line = default_note(m)
    if line:
        note(line)
    endpoint = getattr(m, "traffic", None) is not None
    if not endpoint:  # an endpoint's check would be 8 paid requests: bbx inspect URL makes it
        warn_batch_effect(m)
    if endpoint and cfg.budget is not None:
        m.client.cap_more(cfg.budget)  # --budget: a hard cap on the images the endpoint answers from here on
    with StepBar(f"{cfg.method} {Path(image).name}", enabled=not quiet, value=methods.get(cfg.method).reports) as bar:
        e = run_explain(m, image, target=target, config=cfg, progress=bar.update)
    e.provenance["command"] = command_line()
    if endpoint:
        e.traffic = m.traffic
    paths = e.save(out)
    if html:
        from ..audit.single import explanation_page

        paths["page"] = explanation_page(e, m, out, command_line())
    typer.echo(f"{shown(image)}: target {shown(repr(e.target_name))} (class {e.target}) "
               f"{e.prob_before:.4f} -> {e.prob_after:.4f}; {_phi_words(e)}; "
               f"undesirable pixels {100 * e.undesirable_ratio:.2f}%; {e.queries} queries in {e.seconds:.1f} s")
    for text in e.notes:
        note(text)
    if endpoint:
        typer.echo(traffic_line(m.traffic))
    typer.echo(f"wrote {shown(', '.join(str(p) for p in paths.values()))}")
    if e.convergence:
        from ..maths.convergence import Convergence

        typer.echo(Convergence(**e.convergence).line())


def _phi_words(e) -> str:
    """φ is the top-1 class's: with another --target, say whose, or it reads as the target's."""
    if e.target == e.top1:
        return f"phi {e.phi_text}"
    return f"phi of the top-1 class {shown(repr(e.top1_name))} {e.phi_text}"


def refuse_overwrite(out: Path) -> None:
    """An output folder that already holds bbx's outputs is not overwritten in silence."""
    from ..result.render import OUTPUT_NAMES

    found = [n for n in OUTPUT_NAMES if (out / n).is_file() and not (out / n).is_symlink()]
    if found:
        raise OutputError(f"output folder {out} already holds bbx outputs ({', '.join(found[:3])}"
                          f"{' ...' if len(found) > 3 else ''}): give --overwrite to replace them, or another --out")
