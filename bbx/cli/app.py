"""The ``bbx`` Typer app and what its commands share: one-line errors, the options of every
command that opens a model, and the files bundled with bbx."""

from __future__ import annotations

import functools
import inspect
import warnings
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import OptionError
from . import remote
from .show import shown

BUNDLED = Path(__file__).resolve().parent.parent / "_data" / "bundled"  # package data: works when installed
DEFAULT_MODEL = BUNDLED / "efficientnet_lite0.onnx"
DEFAULT_IMAGE = BUNDLED / "samples" / "chelsea.png"

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Black-box explanations of ONNX image classifiers: find the undesirable pixels.")

_PRE_HELP = "Preprocessing override"

ARGV: list[str] = []  # this run's arguments (set by :func:`bbx.cli.main`), for reports that record their command


def command_line() -> str:
    """This run's command as a shell would take it back."""
    import shlex

    return shlex.join(["bbx", *ARGV])


def fail(msg: str, code: int = 2) -> None:
    msg = " ".join(part.strip() for part in str(msg).splitlines() if part.strip())  # one line, always
    typer.echo(f"bbx: error: {shown(msg)}", err=True)
    raise SystemExit(code)


def warn_line(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    typer.echo(f"bbx: warning: {shown(text)}", err=True)


def floats(text: Optional[str], name: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise OptionError(f"--{name} needs numbers separated by commas, not {text!r}") from None


def quiet_onnxruntime() -> None:
    """The CLI owns the process: onnxruntime's own log lines (a CUDA provider that cannot load logs two
    coloured paragraphs) give way to bbx's one-line warnings and errors."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)


def load_model(model: str | Path, device: str, size: Optional[str], crop_pct: Optional[float], scale: Optional[float],
               mean: Optional[str], std: Optional[str], channel_order: Optional[str], layout: Optional[str],
               resize: Optional[str], pad_value: Optional[str], interpolation: Optional[str],
               preset: Optional[str], spec: Optional[Path], output: Optional[str], labels: Optional[Path],
               max_batch: Optional[int], cuda_option: Optional[list[str]], timeout: Optional[float],
               run_timeout: Optional[float], threads: Optional[int] = None, **endpoint: Any):
    """The model a command names, opened with the command line's model options: an ONNX file, or an
    endpoint when ``model`` is an http(s) URL (:mod:`.remote`, whose options are ``endpoint``; there
    ``--timeout`` bounds one request, as it bounds one model call of a file). ``threads``:
    onnxruntime's intra-op threads, for a process that shares the machine (a Ray worker)."""
    from ..model import Limits, open_model
    from ..preprocess import parse_size
    from ..remote import is_url

    try:
        sides = None if size is None else parse_size(size)
    except (TypeError, ValueError, OverflowError):
        raise OptionError(f"--size needs a side or HEIGHT,WIDTH in pixels, such as 224 or 48,192, not {size!r}") from None
    overrides = {"size": sides, "crop_pct": crop_pct, "scale": scale, "mean": floats(mean, "mean"),
                 "std": floats(std, "std"), "channel_order": channel_order, "layout": layout,
                 "resize_mode": resize, "pad_value": floats(pad_value, "pad-value"), "interpolation": interpolation}
    if is_url(model):
        if run_timeout is not None:
            raise OptionError("--run-timeout is for a local model file; an endpoint's requests are bounded by --timeout "
                              "and --retries")
        return remote.open_endpoint(str(model), device=device, cuda_option=cuda_option, preprocess=overrides,
                                    preset=preset, spec_file=spec, output=output, labels=labels, max_batch=max_batch,
                                    remote={**endpoint, "timeout": timeout})
    remote.refuse_with_file(endpoint)
    quiet_onnxruntime()
    return open_model(model, device=device, preprocess_overrides=overrides, preset=preset, spec_file=spec,
                          output=output, labels=labels, max_batch=max_batch,
                          cuda_options=key_values(cuda_option or [], "cuda-option"),
                          limits=Limits(timeout, run_timeout), threads=threads)


def default_note(m: Any) -> Optional[str]:
    """One line when the fields that change every answer (value scale, mean, std, channel order) are
    bbx's defaults rather than anything the model or the user said; None otherwise."""
    from ..preprocess import VALUE_FIELDS

    left = [k for k in VALUE_FIELDS if m.spec_sources.get(k) == "default"]
    if not left:
        return None
    names = ", ".join(k.replace("_", " ") for k in left)
    return (f"{names} {'is' if len(left) == 1 else 'are'} bbx's default{'s' * (len(left) > 1)} (ImageNet: RGB, "
            f"0-1, mean 0.485,0.456,0.406, std 0.229,0.224,0.225), not the model's: if it was trained otherwise "
            f"the answer is wrong; give --preset, --spec FILE or the flags (bbx inspect shows every field's source)")


def note(msg: str) -> None:
    typer.echo(f"bbx: note: {shown(msg)}", err=True)


def key_values(items: list[str], name: str) -> dict[str, str]:
    """``["prefer_nhwc=1", "device_id=1"]`` as a dict; anything else is one clear error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise OptionError(f"--{name} needs KEY=VALUE, such as prefer_nhwc=1, not {item!r}")
        out[key.strip()] = value.strip()
    return out


def _model_option_specs() -> dict[str, tuple[Any, Any]]:
    """Fresh option objects per command (Typer keeps state on them)."""
    return {
        "device": (str, typer.Option("cpu", help="cpu, cuda or auto (cuda falls back to cpu with a warning)")),
        "size": (Optional[str], typer.Option(None, help=f"{_PRE_HELP}: input side, or HEIGHT,WIDTH (48,192), in "
                                                       "pixels (symbolic sizes only)")),
        "resize": (Optional[str], typer.Option(None, help=f"{_PRE_HELP}: crop (centre crop, default), stretch, "
                                                         "letterbox or pad (height, then pad the right)")),
        "pad_value": (Optional[str], typer.Option(None, "--pad-value", help=f"{_PRE_HELP}: letterbox/pad colour, "
                                                  "0-255 before normalisation, one value or R,G,B")),
        "interpolation": (Optional[str], typer.Option(None, help=f"{_PRE_HELP}: bilinear, bicubic, nearest or "
                                                                "lanczos")),
        "crop_pct": (Optional[float], typer.Option(None, "--crop-pct", help=f"{_PRE_HELP}: centre-crop fraction")),
        "scale": (Optional[float], typer.Option(None, help=f"{_PRE_HELP}: pixel scale, 1 (0-1) or 255 (0-255)")),
        "mean": (Optional[str], typer.Option(None, help=f"{_PRE_HELP}: per-channel mean, e.g. 0.485,0.456,0.406")),
        "std": (Optional[str], typer.Option(None, help=f"{_PRE_HELP}: per-channel std")),
        "channel_order": (Optional[str], typer.Option(None, "--channel-order", help=f"{_PRE_HELP}: RGB or BGR")),
        "layout": (Optional[str], typer.Option(None, help=f"{_PRE_HELP}: NCHW or NHWC")),
        "preset": (Optional[str], typer.Option(None, help="bundled preprocessing preset (resnet, efficientnet_lite0, "
                                                          "inception, caffe ...)")),
        "spec": (Optional[Path], typer.Option(None, help="preprocessing sidecar JSON kept anywhere "
                                              "({\"preprocess\": {...}, \"labels\": [...]})")),
        "output": (Optional[str], typer.Option(None, help="name of the output holding class scores")),
        "labels": (Optional[Path], typer.Option(None, help="class names: a text file (one per line) or a JSON list")),
        "max_batch": (Optional[int], typer.Option(None, "--max-batch", help="largest batch per model call "
                                                                            "(default 64 on cpu, 256 on cuda)")),
        "cuda_option": (Optional[list[str]], typer.Option(None, "--cuda-option", help="onnxruntime CUDA provider "
                        "option KEY=VALUE, repeatable: device_id=1, prefer_nhwc=1, gpu_mem_limit=...")),
        "timeout": (Optional[float], typer.Option(None, help="end with an error when one model call (one request "
                                                             "to an endpoint) takes longer than this many seconds")),
        "run_timeout": (Optional[float], typer.Option(None, "--run-timeout", help="end with an error when the "
                        "model calls have not finished this many seconds after the model opened")),
        **remote.option_specs(),
    }


def model_options(f):
    """Give command ``f`` the options of every command that opens a model, passed as ``model_opts``."""
    specs = _model_option_specs()
    sig = inspect.signature(f)
    params = [p for p in sig.parameters.values() if p.name != "model_opts"]
    params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
               for k, (kind, option) in specs.items()]

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        opts = {k: kwargs.pop(k) for k in specs}
        return f(*args, model_opts=opts, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)
    return wrapper


BATCH_TOLERANCE = 1e-4  # a probability may move this much between a batch and a single call (float32 sums)


def warn_batch_effect(m: Any) -> None:
    """A warning when the model scores an image differently inside a batch (``inspect``, and
    ``explain`` on a local model, where the check costs 8 uncounted forward passes)."""
    diff, i, alone, together = m.batch_effect()
    if diff > BATCH_TOLERANCE:
        warnings.warn(f"the model's scores depend on the rest of the batch: random image {i} gives {alone:.4f} "
                      f"alone and {together:.4f} in a batch of 4; bbx optimises on batched scores and reports "
                      f"single ones, so its numbers will not agree", RuntimeWarning, stacklevel=1)
