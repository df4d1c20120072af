"""``bbx explain``: one photo, one method, heatmaps and a report in an output folder.

The method options are :class:`~bbx.config.ExplainConfig`'s fields (:mod:`.options`): each defaults
to unset, only what is given overrides the config, and the registry refuses an option the method
does not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import defaults as d
from .. import methods
from ..errors import OutputError
from .app import (DEFAULT_IMAGE, DEFAULT_MODEL, app, command_line, default_note, load_model, model_options, note,
                  warn_batch_effect)
from .options import method_options
from .progress import StepBar
from .remote import traffic_line
from .show import shown

_METHOD_HELP = f"one of: {methods.describe()} (default {d.METHOD})"


@app.command()
@model_options
@method_options()
def explain(
    model: Optional[str] = typer.Argument(None, help="the .onnx classifier or an endpoint http(s)://HOST:PORT/v2/"
                                          "models/NAME or grpc(s)://HOST:PORT/NAME (default: the bundled "
                                          "EfficientNet-Lite0)"),
    image: Optional[Path] = typer.Argument(None, help="the photo (default: the bundled cat photo)"),
    target: Optional[str] = typer.Option(None, help="class index or name (default: top-1)"),
    method: Optional[str] = typer.Option(None, help=_METHOD_HELP),
    out: Path = typer.Option(Path("bbx-out"), help="output folder"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the bbx outputs already in the output folder"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    html: bool = typer.Option(False, "--html", help="also write index.html, the one-photo page of bbx audit"),
    *, model_opts: dict, method_opts: dict,
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
    cfg = resolve(method, None, method_opts)  # refused before any work
    check_out(out)  # created when the results are written: a refused run leaves none
    if not overwrite:
        refuse_overwrite(out)
    m = load_model(model, **model_opts)
    line = default_note(m)
    if line:
        note(line)
    endpoint = m.traffic is not None
    if not endpoint:  # an endpoint's check would be 8 paid requests: bbx inspect URL makes it
        warn_batch_effect(m)
    if cfg.budget is not None:
        m.cap_answers(cfg.budget)  # --budget: a hard cap on the images an endpoint answers from here on
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
