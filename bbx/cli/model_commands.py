"""``bbx inspect``, ``bbx devices`` and ``bbx predict``: what a model is, where it runs, what it says."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import OptionError
from ..preprocess import VALUE_FIELDS
from .app import app, default_note, load_model, model_options, note, quiet_onnxruntime, warn_batch_effect
from .show import shown



@app.command()
@model_options
def inspect(model: str = typer.Argument(..., help="the .onnx classifier, or an endpoint "
                   "http(s)://HOST:PORT/v2/models/NAME or grpc(s)://HOST:PORT/NAME"),
            as_json: bool = typer.Option(False, "--json", help="print JSON"), *, model_opts: dict) -> None:
    """Inputs, outputs, detected conventions, preprocessing in use (and where each field came from)."""
    m = load_model(model, **model_opts)
    d = m.describe()
    warn_batch_effect(m)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    i, o = d["input"], d["output"]
    typer.echo(f"model       {shown(d['model'])}")
    typer.echo(f"providers   {', '.join(d['providers'])}")
    for x in d["inputs"]:
        typer.echo(f"input       {shown(x['name'])} {shown(x['shape'])} {x['type']}")
    for x in d["outputs"]:
        typer.echo(f"output      {shown(x['name'])} {shown(x['shape'])} {x['type']}")
    batch = "dynamic" if i["batch"] is None else f"fixed {i['batch']}"
    typer.echo(f"image input {shown(i['name'])}: layout {i['layout']}, {i['height']}x{i['width']}, {i['dtype']}, "
               f"batch {batch}")
    bg = ", index 0 = background" if o["background"] else ""
    typer.echo(f"scores      {shown(o['name'])}: {o['num_classes']} classes, {o['kind']}{bg}")
    if o["kind"] == "probabilities":
        typer.echo("            (softmax already applied: bbx uses centred log-probabilities as logits)")
    if "reveals" in d:
        typer.echo(f"reveals     {d['reveals']} (what each method needs: bbx explain --help); "
                   f"{d['max_batch']} images per request at most, as {d['wire']}")
    if o.get("constant"):
        typer.echo("            (the same scores for every image tried: a constant model, nothing to explain)")
    typer.echo(f"labels      from {d['labels_source']}")
    typer.echo("preprocess")
    for k, v in d["preprocess"].items():
        typer.echo(f"  {k:<14}{json.dumps(v):<32} from {d['preprocess_sources'][k]}")


@app.command()
def devices(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Which onnxruntime build is imported, its providers, and whether CUDA starts here (and if not, why)."""
    from importlib import metadata

    import onnxruntime

    from ..model import cuda_status

    quiet_onnxruntime()
    packages = {}
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    status = cuda_status()
    d = {"onnxruntime": onnxruntime.__version__, "installed": packages,
         "providers": onnxruntime.get_available_providers(), "cuda": status or "ready"}
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo(f"onnxruntime {d['onnxruntime']} (installed: "
               f"{', '.join(f'{k} {v}' for k, v in packages.items()) or 'no package metadata'})")
    typer.echo(f"providers   {', '.join(d['providers'])}")
    typer.echo(f"cuda        {'ready: --device cuda runs on the GPU' if status is None else status}")


@app.command()
@model_options
def predict(model: str = typer.Argument(..., help="the .onnx classifier, or an endpoint "
                   "http(s)://HOST:PORT/v2/models/NAME or grpc(s)://HOST:PORT/NAME"),
            images: list[Path] = typer.Argument(..., help="one or more images"),
            top: int = typer.Option(5, help="how many classes to list"),
            as_json: bool = typer.Option(False, "--json", help="print JSON: per image its top classes, and the "
                                         "preprocessing with each field's source"),
            *, model_opts: dict) -> None:
    """Top classes with probabilities for each image."""
    from ..preprocess.image import load_rgb

    if top < 1:
        raise OptionError("--top must be at least 1")
    m = load_model(model, **model_opts)
    line = default_note(m)
    if line:
        note(line)
    reveals = m.reveals
    if reveals != "scores":  # the rest would be bbx's estimates, not the model's answer
        top = 1 if reveals == "label" else min(top, m.revealed)
    results = []
    for path in images:
        p = m.predict(load_rgb(path)).probs[0]
        order = p.argsort()[::-1][:top]
        results.append({"image": str(path), "top": [{"rank": rank, "class": int(k), "label": m.labels[k],
                                                     "probability": float(p[k])} for rank, k in enumerate(order, 1)]})
        if as_json:
            continue
        if reveals == "label":
            typer.echo(f"{shown(path)}\n  1. {shown(m.labels[order[0]]):<30} (class {order[0]}; "
                       "the endpoint reveals the label only)")
            continue
        typer.echo(shown(path))
        for rank, k in enumerate(order, 1):
            typer.echo(f"  {rank}. {shown(m.labels[k]):<30} {p[k]:.4f}  (class {k})")
    if as_json:
        typer.echo(json.dumps({"model": str(model), "preprocess": m.spec.to_json(),
                               "preprocess_sources": dict(m.spec_sources), "labels_source": m.labels_source,
                               "defaults_used": [k for k in VALUE_FIELDS if m.spec_sources.get(k) == "default"],
                               "predictions": results}, indent=2))


