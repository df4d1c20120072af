"""The ``bbx`` command: inspect, predict, explain (and evaluate).

Every bad input ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import typer

from . import cli_remote
from .errors import BbxError, OptionError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
DEFAULT_IMAGE = ROOT / "models" / "samples" / "chelsea.png"

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Black-box explanations of ONNX image classifiers: find the undesirable pixels.")

_PRE_HELP = "Preprocessing override"


def _fail(msg: str, code: int = 2) -> None:
    msg = " ".join(part.strip() for part in str(msg).splitlines() if part.strip())  # one line, always
    typer.echo(f"bbx: error: {msg}", err=True)
    raise SystemExit(code)


def _warn_line(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    typer.echo(f"bbx: warning: {message}", err=True)


def _floats(text: Optional[str], name: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise OptionError(f"--{name} needs numbers separated by commas, not {text!r}") from None


def _quiet_onnxruntime() -> None:
    """The CLI owns the process: onnxruntime's own log lines (a CUDA provider that cannot load logs two
    coloured paragraphs) give way to bbx's one-line warnings and errors."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)


def _load_model(model: str | Path, device: str, size: Optional[int], crop_pct: Optional[float], scale: Optional[float],
                mean: Optional[str], std: Optional[str], channel_order: Optional[str], layout: Optional[str],
                preset: Optional[str], output: Optional[str], labels: Optional[Path], max_batch: Optional[int],
                cuda_option: Optional[list[str]], **remote: Any):
    """A local ONNX file, or an endpoint when ``model`` is an http(s) URL (bbx.cli_remote)."""
    from .model import OnnxClassifier
    from .remote import is_url

    overrides = {"size": size, "crop_pct": crop_pct, "scale": scale, "mean": _floats(mean, "mean"),
                 "std": _floats(std, "std"), "channel_order": channel_order, "layout": layout}
    if is_url(model):
        return cli_remote.open_endpoint(str(model), device=device, cuda_option=cuda_option, preprocess=overrides,
                                        preset=preset, output=output, labels=labels, max_batch=max_batch, remote=remote)
    cli_remote.refuse_with_file(remote)
    _quiet_onnxruntime()
    return OnnxClassifier(model, device=device, preprocess=overrides, preset=preset, output=output, labels=labels,
                          max_batch=max_batch, cuda_options=_key_values(cuda_option or [], "cuda-option"))


def _key_values(items: list[str], name: str) -> dict[str, str]:
    """``["prefer_nhwc=1", "device_id=1"]`` as a dict; anything else is one clear error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise OptionError(f"--{name} needs KEY=VALUE, such as prefer_nhwc=1, not {item!r}")
        out[key.strip()] = value.strip()
    return out


# Options shared by every command that opens a model.
def _model_options(f):
    import functools
    import inspect

    extra = {
        "device": typer.Option("cpu", help="cpu, cuda or auto (cuda falls back to cpu with a warning)"),
        "size": typer.Option(None, help=f"{_PRE_HELP}: input side in pixels (symbolic sizes only)"),
        "crop_pct": typer.Option(None, "--crop-pct", help=f"{_PRE_HELP}: centre-crop fraction"),
        "scale": typer.Option(None, help=f"{_PRE_HELP}: pixel scale, 1 (0-1) or 255 (0-255)"),
        "mean": typer.Option(None, help=f"{_PRE_HELP}: per-channel mean, e.g. 0.485,0.456,0.406"),
        "std": typer.Option(None, help=f"{_PRE_HELP}: per-channel std"),
        "channel_order": typer.Option(None, "--channel-order", help=f"{_PRE_HELP}: RGB or BGR"),
        "layout": typer.Option(None, help=f"{_PRE_HELP}: NCHW or NHWC"),
        "preset": typer.Option(None, help="bundled preprocessing preset (resnet, efficientnet_lite0, inception ...)"),
        "output": typer.Option(None, help="name of the output holding class scores"),
        "labels": typer.Option(None, help="class names: a text file (one per line) or a JSON list"),
        "max_batch": typer.Option(None, "--max-batch", help="largest batch per model call (default 64 on cpu, 256 on cuda)"),
        "cuda_option": typer.Option(None, "--cuda-option", help="onnxruntime CUDA provider option KEY=VALUE, "
                                    "repeatable: device_id=1, prefer_nhwc=1, gpu_mem_limit=..."),
    }
    annotations = {"device": str, "size": Optional[int], "crop_pct": Optional[float], "scale": Optional[float],
                   "mean": Optional[str], "std": Optional[str], "channel_order": Optional[str],
                   "layout": Optional[str], "preset": Optional[str], "output": Optional[str],
                   "labels": Optional[Path], "max_batch": Optional[int], "cuda_option": Optional[list[str]]}
    for name, (option, annotation) in cli_remote.OPTIONS.items():
        extra[name], annotations[name] = option, annotation
    sig = inspect.signature(f)
    params = [p for p in sig.parameters.values() if p.name != "model_opts"]
    params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v, annotation=annotations[k])
               for k, v in extra.items()]

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        opts = {k: kwargs.pop(k) for k in extra}
        return f(*args, model_opts=opts, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)
    return wrapper


@app.command()
@_model_options
def inspect(model: str = typer.Argument(..., help="the .onnx classifier, or an endpoint http(s)://HOST:PORT/v2/models/NAME"),
            as_json: bool = typer.Option(False, "--json", help="print JSON"), *, model_opts: dict) -> None:
    """Inputs, outputs, detected conventions, preprocessing in use (and where each field came from)."""
    m = _load_model(model, **model_opts)
    d = m.describe()
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    i, o = d["input"], d["output"]
    typer.echo(f"model       {d['model']}")
    typer.echo(f"providers   {', '.join(d['providers'])}")
    for x in d["inputs"]:
        typer.echo(f"input       {x['name']} {x['shape']} {x['type']}")
    for x in d["outputs"]:
        typer.echo(f"output      {x['name']} {x['shape']} {x['type']}")
    batch = "dynamic" if i["batch"] is None else f"fixed {i['batch']}"
    typer.echo(f"image input {i['name']}: layout {i['layout']}, {i['height']}x{i['width']}, {i['dtype']}, batch {batch}")
    bg = ", index 0 = background" if o["background"] else ""
    typer.echo(f"scores      {o['name']}: {o['num_classes']} classes, {o['kind']}{bg}")
    if o["kind"] == "probabilities":
        typer.echo("            (softmax already applied: bbx uses centred log-probabilities as logits)")
    if "reveals" in d:
        typer.echo(f"reveals     {d['reveals']} (bbx.remote.reveal: what each method needs); "
                   f"{d['max_batch']} images per request at most")
    typer.echo(f"labels      from {d['labels_source']}")
    typer.echo("preprocess")
    for k, v in d["preprocess"].items():
        typer.echo(f"  {k:<14}{json.dumps(v):<32} from {d['preprocess_sources'][k]}")


@app.command()
def devices(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Which onnxruntime build is imported, its providers, and whether CUDA starts here (and if not, why)."""
    from importlib import metadata

    import onnxruntime

    from .model import cuda_status

    _quiet_onnxruntime()
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
@_model_options
def predict(model: str = typer.Argument(..., help="the .onnx classifier, or an endpoint http(s)://HOST:PORT/v2/models/NAME"),
            images: list[Path] = typer.Argument(..., help="one or more images"),
            top: int = typer.Option(5, help="how many classes to list"), *, model_opts: dict) -> None:
    """Top classes with probabilities for each image."""
    from .image import load_rgb

    if top < 1:
        raise OptionError("--top must be at least 1")
    m = _load_model(model, **model_opts)
    reveals = getattr(m, "reveals", "scores")
    if reveals != "scores":  # the rest would be bbx's estimates, not the model's answer
        top = 1 if reveals == "label" else min(top, m.revealed)
    for path in images:
        p = m.predict(load_rgb(path)).probs[0]
        order = p.argsort()[::-1][:top]
        if reveals == "label":
            typer.echo(f"{path}\n  1. {m.labels[order[0]]:<30} (class {order[0]}; the endpoint reveals the label only)")
            continue
        typer.echo(f"{path}")
        for rank, k in enumerate(order, 1):
            typer.echo(f"  {rank}. {m.labels[k]:<30} {p[k]:.4f}  (class {k})")


@app.command()
@_model_options
def explain(
    model: Optional[str] = typer.Argument(None, help="the .onnx classifier or an endpoint http(s)://HOST:PORT/v2/models/NAME "
                                          "(default: the bundled EfficientNet-Lite0)"),
    image: Optional[Path] = typer.Argument(None, help="the photo (default: the bundled cat photo)"),
    target: Optional[str] = typer.Option(None, help="class index or name (default: top-1)"),
    method: str = typer.Option("ftc", help="ftc, fntc or plain (the paper's), or greedy (hard-blur search)"),
    iterations: int = typer.Option(200, help="optimizer steps"),
    budget: Optional[int] = typer.Option(None, help="total queries allowed (sets pairs per step)"),
    pairs: Optional[int] = typer.Option(None, help="antithetic pairs per step (default 8)"),
    estimator: str = typer.Option("nes", help="nes (Gaussian) or spsa (+-1) directions"),
    seed: int = typer.Option(0, help="random seed; the same seed gives the same mask"),
    lr: float = typer.Option(0.1, help="Adam step size (paper: 0.1)"),
    lambda1: float = typer.Option(1.7, help="weight of the mask's total variation (paper: 1.7)"),
    lambda2: float = typer.Option(3.0, help="weight of the blurred area, ||1-M||_1 averaged (paper: 3)"),
    beta: float = typer.Option(2.0, help="TV exponent (paper: 2)"),
    gamma: float = typer.Option(0.3, help="weight of the F-TC / F-NTC logit term (paper: 0.3)"),
    query_path: str = typer.Option("auto", "--query-path", help="where each batch of perturbed images is built: "
                                   "auto (numpy on cpu, fused on cuda), numpy, onnx, device, fused or reference "
                                   "(the same numbers; docs/gpu.md)"),
    out: Path = typer.Option(Path("bbx-out"), help="output folder"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    *, model_opts: dict,
) -> None:
    """Find the undesirable pixels of IMAGE for a target class and write heatmap, figures and report."""
    from ._io import ensure_dir
    from .explain import ExplainConfig
    from .explain import explain as run_explain
    from .remote import is_url

    if image is None and model is not None and not is_url(model) and Path(model).suffix.lower() != ".onnx":
        model, image = None, Path(model)
    model = model or DEFAULT_MODEL
    image = image or DEFAULT_IMAGE
    cfg = ExplainConfig(method=method, iterations=iterations, budget=budget, pairs=pairs, estimator=estimator,
                        seed=seed, lr=lr, lambda1=lambda1, lambda2=lambda2, beta=beta, gamma=gamma,
                        query_path=query_path.strip().lower()).validate()
    ensure_dir(out)
    m = _load_model(model, **model_opts)
    remote = getattr(m, "traffic", None) is not None
    if remote and budget is not None:
        m.client.cap_more(budget)  # --budget: a hard cap on the images the endpoint answers from here on
    with _Progress(enabled=not quiet) as bar:
        e = run_explain(m, image, target=target, method=method, config=cfg, progress=bar.update)
    if remote:
        e.traffic = m.traffic
    paths = e.save(out)
    typer.echo(f"{image}: target {e.target_name!r} (class {e.target}) "
               f"{e.prob_before:.4f} -> {e.prob_after:.4f}; phi {e.phi:.1f}; "
               f"undesirable pixels {100 * e.undesirable_ratio:.2f}%; {e.queries} queries in {e.seconds:.1f} s")
    if remote:
        typer.echo(cli_remote.traffic_line(m.traffic))
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


class _Progress:
    """A one-line progress bar on stderr (none when stderr is not a terminal or when disabled)."""

    def __init__(self, enabled: bool = True, width: int = 30):
        self.enabled = enabled and sys.stderr.isatty()
        self.width = width

    def __enter__(self) -> "_Progress":
        return self

    def update(self, step: int, total: int, loss: float) -> None:
        if not self.enabled:
            return
        done = int(self.width * step / max(total, 1))
        sys.stderr.write(f"\r[{'#' * done}{'.' * (self.width - done)}] {step}/{total} loss {loss:+.4f}")
        sys.stderr.flush()

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            sys.stderr.write("\n")


from . import cli_evaluate  # noqa: E402,F401  registers `bbx evaluate` (needs app and the helpers above)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: one line and exit code 2 for bad input, never a traceback."""
    warnings.showwarning = _warn_line
    try:
        app(args=argv, prog_name="bbx", standalone_mode=False)
    except BbxError as exc:
        _fail(str(exc), exc.exit_code)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # usage errors and anything unforeseen: still one line
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click/typer usage error
            msg = exc.format_message()
            if not msg.strip():  # "no arguments: show help" carries no message
                raise SystemExit(exc.exit_code) from None
            _fail(msg, 2)
        if type(exc).__name__ == "Abort":
            _fail("aborted", 1)
        _fail(f"internal error: {type(exc).__name__}: {exc}", 1)

if __name__ == "__main__":
    main()
