"""A classifier's conventions, read from its signature and one real forward pass: the image input
(layout, size, dtype, static batch) and which output holds the class scores (logits or
probabilities, a background class). Shared by every black box, whatever runs the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import preprocess as pp
from ..errors import ModelError, OptionError

DTYPES = {1: np.float32, 10: np.float16, 2: np.uint8}  # onnx TensorProto element types bbx takes
_NAME_HINTS = ("logit", "score", "pred", "output", "class", "prob")


@dataclass(frozen=True)
class InputInfo:
    name: str
    layout: str  # "NCHW" | "NHWC"
    height: int
    width: int
    dtype: str  # "float32" | "float16" | "uint8"
    batch: int | None  # static batch size, None when dynamic


@dataclass(frozen=True)
class OutputInfo:
    name: str
    num_classes: int
    kind: str  # "logits" | "probabilities"
    background: bool  # 1001 classes, index 0 = background
    #: the same scores for every image of the detection pass; None when it held one image
    constant: bool | None = None



def image_input(name: str, dims: Sequence[int | None], dtype: Any,
                resolved: pp.ResolvedSpec) -> tuple[InputInfo, pp.ResolvedSpec]:
    """The image input of shape ``dims`` (None where symbolic): the layout from its axis of 3
    channels, the size where the graph fixes it, each fed into the preprocessing's sources."""
    dims = list(dims)
    if len(dims) != 4:
        raise ModelError(f"not an image input: {name!r} has shape {fmt_dims(dims)}, expected 4 dimensions (N,C,H,W or N,H,W,C)")
    c1, c3 = dims[1], dims[3]
    if c1 == 3 and c3 != 3:
        layout = "NCHW"
    elif c3 == 3 and c1 != 3:
        layout = "NHWC"
    elif c1 in (3, None) and c3 in (3, None):
        layout = None  # ambiguous: the spec decides
    else:
        raise ModelError(f"not an RGB image input: {name!r} has shape {fmt_dims(dims)} (no axis of 3 channels)")
    resolved = pp.with_graph(resolved, layout=layout)
    hw = (dims[2], dims[3]) if resolved.spec.layout == "NCHW" else (dims[1], dims[2])
    size = (int(hw[0]), int(hw[1])) if None not in hw and 0 not in hw else None
    if size is not None and max(size) > pp.MAX_SIDE:
        raise ModelError(f"input {name!r} is {size[0]}x{size[1]} pixels, above bbx's limit of {pp.MAX_SIDE} per side")
    resolved = pp.with_graph(resolved, size=size)
    batch = dims[0] if dims[0] else None
    info = InputInfo(name=name, layout=resolved.spec.layout, height=resolved.spec.size[0],
                     width=resolved.spec.size[1], dtype=np.dtype(dtype).name, batch=batch)
    return info, resolved


def scores_output(names: Sequence[str], outs: Sequence[Any], n: int, wanted: str | None) -> OutputInfo:
    """The output holding class scores, from a forward pass of ``n`` images whose outputs are
    ``outs``: numbers of shape [n, classes]; ``wanted`` by name, else logits first, then a name
    that says it holds class scores."""
    shapes = {name: shape_of(o) for name, o in zip(names, outs)}
    cands = [name for name, o in zip(names, outs)  # numbers (not strings, booleans, maps), [batch, classes]
             if isinstance(o, np.ndarray) and o.dtype.kind in "fiu" and o.ndim == 2 and o.shape[0] == n
             and o.shape[1] >= 2]
    if wanted is not None:
        if wanted not in names:
            raise OptionError(f"no output named {wanted!r}; outputs: {', '.join(names)}")
        if wanted not in cands:
            raise ModelError(f"output {wanted!r} is {shapes[wanted]}, not numbers of shape [batch, classes]")
        cands = [wanted]
    if not cands:
        desc = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ModelError(f"not an image classifier: no output of numbers of shape [batch, classes] "
                         f"for a batch of {n} (outputs: {desc})")
    values = {name: np.asarray(o, dtype=np.float64) for name, o in zip(names, outs) if name in cands}
    kinds = {name: _kind(values[name]) for name in cands}
    if len(cands) > 1:
        cands.sort(key=lambda c: (kinds[c] != "logits", _hint_rank(c)))
    name = cands[0]
    if not np.isfinite(values[name]).all():
        raise ModelError("the model returned NaN or infinite scores on a plain grey image")
    v = values[name]
    c = v.shape[1]
    constant = bool(np.ptp(v, axis=0).max() <= 1e-6 * max(1.0, float(np.abs(v).max()))) if n >= 2 else None
    return OutputInfo(name=name, num_classes=c, kind=kinds[name], background=(c == 1001), constant=constant)


def detection_batch(input_info: InputInfo, max_batch: int) -> np.ndarray:
    """The images of the detection pass, 0-1 RGB: one plain grey image, then random ones up to the
    model's static batch (two images where the batch is free: a batch axis that works)."""
    h, w = input_info.height, input_info.width
    n = input_info.batch or min(2, max_batch)
    rng = np.random.default_rng(0)
    return np.concatenate([np.full((1, h, w, 3), 0.5, np.float32),
                           rng.random((max(n - 1, 0), h, w, 3), dtype=np.float32)])[:n]


def _kind(v: np.ndarray) -> str:
    if np.isfinite(v).all() and v.min() >= -1e-6 and v.max() <= 1 + 1e-6 and np.allclose(v.sum(axis=1), 1.0, atol=1e-3):
        return "probabilities"
    return "logits"


def _hint_rank(name: str) -> int:
    low = name.lower()
    return next((i for i, h in enumerate(_NAME_HINTS) if h in low), len(_NAME_HINTS))


def squeeze(o: Any, n: int, strict: bool = True) -> Any:
    """An output array without trailing unit axes; with ``strict``, it must have ``n`` rows.

    Sequences and maps (lists and dicts from onnxruntime) come back unchanged, never as scores.
    """
    if not isinstance(o, np.ndarray):
        if strict:
            raise ModelError(f"the model returned {shape_of(o)} for a batch of {n} images, not an array of scores")
        return o
    a = o
    while a.ndim > 2 and a.shape[-1] == 1:
        a = a[..., 0]
    if strict and (a.ndim == 0 or a.shape[0] != n):
        rows = "a scalar" if a.ndim == 0 else f"{a.shape[0]} row{'s' * (a.shape[0] != 1)}"
        raise ModelError(f"the model returned {rows} for a batch of {n} images")
    return a


def shape_of(o: Any) -> str:
    """An output's shape and type as shown in error messages: ``[2, 10] float32``, ``a sequence``."""
    if isinstance(o, np.ndarray):
        return f"{list(o.shape)} {o.dtype.name if o.dtype.kind in 'fiub' else 'strings' if o.dtype.kind in 'USO' else o.dtype}"
    return "a map" if isinstance(o, dict) else f"a sequence of {len(o)}" if isinstance(o, (list, tuple)) else type(o).__name__


def fmt_dims(dims: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def io_desc(node: Any) -> dict[str, Any]:
    return {"name": node.name, "shape": [d if isinstance(d, int) else str(d) for d in node.shape], "type": node.type}


