"""Tiny ONNX classifiers built with ``onnx.helper`` for bbx's tests.

Every "good" model computes the same reference function ``f`` of a 0-1 RGB image
(see :func:`reference_logits`): a fixed linear map of the per-channel spatial means plus a
fixed linear map of the flattened pixels, giving ``C`` logits. The variants differ only in the
conventions around ``f`` (layout, value range, dtype, channel order, batch, outputs ...) and
describe their convention in the ``bbx.preprocess`` metadata key or a ``<stem>.bbx.json``
sidecar, so that bbx, undoing it, must obtain exactly ``f`` again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
SIZE = 16
CLASSES = 10
SEED = 1234

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The convention of the plain model: 0-1 RGB, NCHW, no normalisation.
PLAIN_SPEC: dict[str, Any] = {"size": [SIZE, SIZE], "crop_pct": 1.0, "interpolation": "bilinear",
                              "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                              "channel_order": "RGB", "layout": "NCHW"}


def weights(size: int = SIZE, classes: int = CLASSES, seed: int = SEED) -> dict[str, np.ndarray]:
    """The fixed weights of the reference function (seeded, so every builder shares them)."""
    rng = np.random.default_rng(seed)
    d = 3 * size * size
    return {
        "A": (rng.standard_normal((3, classes)) * 3.0).astype(np.float32),        # channel means
        "B": (rng.standard_normal((d, classes)) * (4.0 / np.sqrt(d))).astype(np.float32),  # pixels
        "b": (rng.standard_normal(classes) * 0.5).astype(np.float32),
        "F": (rng.standard_normal((d, 8)) / np.sqrt(d)).astype(np.float32),       # "features"
    }


def reference_logits(images: np.ndarray, size: int = SIZE, classes: int = CLASSES, seed: int = SEED) -> np.ndarray:
    """``f`` in numpy, for ``(N, H, W, 3)`` 0-1 RGB images (float64)."""
    w = weights(size, classes, seed)
    x = np.asarray(images, np.float64).transpose(0, 3, 1, 2)  # NCHW
    means = x.mean(axis=(2, 3))
    flat = x.reshape(len(x), -1)
    return means @ w["A"].astype(np.float64) + flat @ w["B"].astype(np.float64) + w["b"]


def spec(**changes: Any) -> dict[str, Any]:
    """:data:`PLAIN_SPEC` with some fields changed."""
    out = dict(PLAIN_SPEC)
    out.update(changes)
    return out


# -- low-level helpers -------------------------------------------------------------------------

class _Graph:
    """Collects nodes and initialisers; names are made unique by a counter."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, value: Any, stem: str = "c", dtype: Any = np.float32) -> str:
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def reference(self, x: str, size: int, classes: int, seed: int, out: str | None = None) -> str:
        """``f`` on a float32 NCHW 0-1 RGB tensor ``x``; returns the logits' name."""
        w = weights(size, classes, seed)
        means = self.op("ReduceMean", [x], axes=[2, 3], keepdims=0)          # [N, 3]
        flat = self.op("Flatten", [x], axis=1)                                # [N, 3*S*S]
        a = self.op("MatMul", [means, self.const(w["A"], "A")])
        b = self.op("MatMul", [flat, self.const(w["B"], "B")])
        s = self.op("Add", [a, b])
        return self.op("Add", [s, self.const(w["b"], "bias")], out=out)

    def features(self, x: str, size: int, seed: int, out: str) -> str:
        w = weights(size, CLASSES, seed)
        flat = self.op("Flatten", [x], axis=1)
        return self.op("MatMul", [flat, self.const(w["F"], "F")], out=out)


def _vi(name: str, elem: int, dims: Sequence[Any]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(dims))


def save(graph: _Graph, inputs: Sequence[onnx.ValueInfoProto], outputs: Sequence[onnx.ValueInfoProto],
         path: str | Path, *, metadata: dict[str, Any] | None = None, sidecar: dict[str, Any] | None = None,
         labels: Sequence[str] | None = None, check: bool = True, producer: str = "bbx-tests",
         props_extra: dict[str, str] | None = None) -> Path:
    """Write the model (opset 17, IR 8) with optional ``bbx.preprocess`` metadata / sidecar, other
    metadata properties ``props_extra`` and a producer name."""
    path = Path(path)
    g = helper.make_graph(graph.nodes, path.stem, list(inputs), list(outputs), initializer=graph.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=producer)
    model.ir_version = IR_VERSION
    props: dict[str, str] = {}
    if metadata is not None:
        props["bbx.preprocess"] = json.dumps(metadata)
    if labels is not None:
        props["bbx.labels"] = json.dumps(list(labels))
    props.update(props_extra or {})
    if props:
        helper.set_model_props(model, props)
    if check:
        onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    if sidecar is not None:
        path.with_name(path.stem + ".bbx.json").write_text(json.dumps(sidecar), encoding="utf-8")
    return path


def _describe(conv: dict[str, Any], where: str) -> dict[str, Any]:
    """``metadata``/``sidecar`` keyword arguments for :func:`save`."""
    if where == "metadata":
        return {"metadata": conv}
    if where == "sidecar":
        return {"sidecar": {"preprocess": conv}}
    if where == "none":
        return {}
    raise ValueError(where)


# -- the good models ---------------------------------------------------------------------------

def _expect(**differences: Any) -> dict[str, Any]:
    """What bbx should detect for a variant: a float32 NCHW RGB logits model unless it says otherwise."""
    return dict(layout="NCHW", dtype="float32", batch=None, kind="logits", classes=CLASSES,
                background=False, channel_order="RGB") | differences


#: Every variant :func:`build` knows, with what bbx should detect for it.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": _expect(),
    "imagenet": _expect(),
    "nhwc255": _expect(layout="NHWC"),
    "nhwc255_sidecar": _expect(layout="NHWC"),
    "uint8": _expect(layout="NHWC", dtype="uint8"),
    "batch1": _expect(batch=1),
    "batch4": _expect(batch=4),
    "softmax": _expect(kind="probabilities"),
    "features_logits": _expect(),
    "probs_logits": _expect(),
    "background": _expect(classes=1001, background=True),
    "bgr": _expect(channel_order="BGR"),
    "float16": _expect(dtype="float16"),
}

#: The output that holds the class scores in each variant.
SCORE_OUTPUT = {"features_logits": "logits", "probs_logits": "logits", "softmax": "probs"}

BACKGROUND_LOGIT = -3.0


def build(variant: str, folder: str | Path, *, name: str | None = None, size: int = SIZE,
          classes: int | None = None, seed: int = SEED, where: str | None = None,
          labels: Sequence[str] | None = None) -> Path:
    """Build one of :data:`VARIANTS` as ``folder/<name or variant>.onnx``.

    ``where`` says where its convention is written: ``"metadata"`` (the default for all but
    ``*_sidecar``), ``"sidecar"`` or ``"none"``. ``classes`` is the number of real classes
    (default :data:`CLASSES`; 1000 for ``background``, whose output then has 1001 columns).
    """
    if classes is None:
        classes = 1000 if variant == "background" else CLASSES
    path = Path(folder) / f"{name or variant}.onnx"
    g = _Graph()
    F, U8, F16 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.FLOAT16
    nchw = ["N", 3, size, size]
    nhwc = ["N", size, size, 3]
    out_logits = lambda c=classes: _vi("logits", F, ["N", c])  # noqa: E731
    conv = spec(size=[size, size])
    where = where or ("sidecar" if variant.endswith("_sidecar") else "metadata")

    if variant == "plain":
        g.reference("image", size, classes, seed, out="logits")
        ins, outs = [_vi("image", F, nchw)], [out_logits()]
    elif variant == "imagenet":
        # The input is (x - mean) / std; the graph undoes it, then computes f.
        std = g.const(np.asarray(IMAGENET_STD).reshape(1, 3, 1, 1), "std")
        mean = g.const(np.asarray(IMAGENET_MEAN).reshape(1, 3, 1, 1), "mean")
        x = g.op("Add", [g.op("Mul", ["image", std]), mean])
        g.reference(x, size, classes, seed, out="logits")
        ins, outs = [_vi("image", F, nchw)], [out_logits()]
        conv = spec(size=[size, size], mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    elif variant in ("nhwc255", "nhwc255_sidecar"):
        x = g.op("Transpose", ["image"], perm=[0, 3, 1, 2])
        x = g.op("Div", [x, g.const(255.0, "k255")])
        g.reference(x, size, classes, seed, out="logits")
        ins, outs = [_vi("image", F, nhwc)], [out_logits()]
        conv = spec(size=[size, size], scale=255.0, layout="NHWC")
    elif variant == "uint8":
        x = g.op("Cast", ["image"], to=F)
        x = g.op("Div", [x, g.const(255.0, "k255")])
        x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
        g.reference(x, size, classes, seed, out="logits")
        ins, outs = [_vi("image", U8, nhwc)], [out_logits()]
        conv = spec(size=[size, size], scale=255.0, layout="NHWC")
    elif variant in ("batch1", "batch4"):
        n = int(variant[-1])
        g.reference("image", size, classes, seed, out="logits")
        ins, outs = [_vi("image", F, [n, 3, size, size])], [_vi("logits", F, [n, classes])]
    elif variant == "softmax":
        z = g.reference("image", size, classes, seed)
        g.op("Softmax", [z], out="probs", axis=-1)
        ins, outs = [_vi("image", F, nchw)], [_vi("probs", F, ["N", classes])]
    elif variant == "features_logits":
        # "features" comes first and is a plausible [N, 8] output: bbx must still pick "logits".
        g.features("image", size, seed, out="features")
        g.reference("image", size, classes, seed, out="logits")
        ins, outs = [_vi("image", F, nchw)], [_vi("features", F, ["N", 8]), out_logits()]
    elif variant == "probs_logits":
        z = g.reference("image", size, classes, seed, out="logits")
        g.op("Softmax", [z], out="probabilities", axis=-1)
        ins = [_vi("image", F, nchw)]
        outs = [_vi("probabilities", F, ["N", classes]), out_logits()]
    elif variant == "background":
        z = g.reference("image", size, classes, seed)
        # one extra logit at index 0, a constant "background" score
        zero = g.op("ReduceSum", [z, g.const([1], "ax", np.int64)], keepdims=1)       # [N, 1]
        bg = g.op("Add", [g.op("Mul", [zero, g.const(0.0, "k0")]), g.const(BACKGROUND_LOGIT, "kbg")])
        g.op("Concat", [bg, z], out="logits", axis=1)
        ins, outs = [_vi("image", F, nchw)], [_vi("logits", F, ["N", classes + 1])]
    elif variant == "bgr":
        # The input is BGR: the graph reverses the channel axis first.
        x = g.op("Gather", ["image", g.const([2, 1, 0], "bgr", np.int64)], axis=1)
        g.reference(x, size, classes, seed, out="logits")
        ins, outs = [_vi("image", F, nchw)], [out_logits()]
        conv = spec(size=[size, size], channel_order="BGR")
    elif variant == "float16":
        x = g.op("Cast", ["image"], to=F)
        g.reference(x, size, classes, seed, out="logits")
        ins, outs = [_vi("image", F16, nchw)], [out_logits()]
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return save(g, ins, outs, path, labels=labels, **_describe(conv, where))


def build_plain(folder: str | Path, name: str = "plain", *, size: int = SIZE, classes: int = CLASSES,
                seed: int = SEED, metadata: dict[str, Any] | None | str = "plain",
                sidecar: dict[str, Any] | None = None, labels: Sequence[str] | None = None,
                batch: Any = "N") -> Path:
    """The plain model with explicit control of metadata, sidecar and labels.

    ``metadata="plain"`` writes :data:`PLAIN_SPEC`; ``None`` writes no ``bbx.preprocess``.
    """
    g = _Graph()
    g.reference("image", size, classes, seed, out="logits")
    meta = spec(size=[size, size]) if metadata == "plain" else metadata
    return save(g, [_vi("image", TensorProto.FLOAT, [batch, 3, size, size])],
                [_vi("logits", TensorProto.FLOAT, [batch, classes])], Path(folder) / f"{name}.onnx",
                metadata=meta, sidecar=sidecar, labels=labels)


def build_symbolic_size(folder: str | Path, name: str = "anysize", *, classes: int = CLASSES,
                        metadata: dict[str, Any] | None = None, sidecar: dict[str, Any] | None = None) -> Path:
    """A classifier of any input size (NCHW, symbolic H and W): logits from channel means only."""
    g = _Graph()
    w = weights(SIZE, classes, SEED)
    means = g.op("ReduceMean", ["image"], axes=[2, 3], keepdims=0)
    g.op("Add", [g.op("MatMul", [means, g.const(w["A"], "A")]), g.const(w["b"], "bias")], out="logits")
    return save(g, [_vi("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                [_vi("logits", TensorProto.FLOAT, ["N", classes])], Path(folder) / f"{name}.onnx",
                metadata=metadata, sidecar=sidecar)


def build_echo(folder: str | Path, name: str = "echo", *, size: tuple[int, int] = (SIZE, SIZE),
               dtype: int = TensorProto.FLOAT, layout: str = "NCHW", **save_kw: Any) -> Path:
    """A "classifier" whose scores are its own input, flattened (as float32): what bbx feeds a model,
    read back pixel for pixel. ``size`` is (height, width); a uint8 input is cast."""
    g = _Graph()
    h, w = size
    x = "image" if dtype == TensorProto.FLOAT else g.op("Cast", ["image"], to=TensorProto.FLOAT)
    g.op("Flatten", [x], out="scores", axis=1)
    dims = ["N", 3, h, w] if layout == "NCHW" else ["N", h, w, 3]
    return save(g, [_vi("image", dtype, dims)], [_vi("scores", TensorProto.FLOAT, ["N", 3 * h * w])],
                Path(folder) / f"{name}.onnx", **save_kw)


def build_uint8(folder: str | Path, name: str = "bytes", **save_kw: Any) -> Path:
    """The reference function ``f`` behind a uint8 NHWC input of raw 0-255 pixels (the model divides
    by 255 itself), with no preprocessing metadata at all."""
    g = _Graph()
    x = g.op("Cast", ["image"], to=TensorProto.FLOAT)
    x = g.op("Div", [x, g.const(255.0, "k")])
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    g.reference(x, SIZE, CLASSES, SEED, out="logits")
    return save(g, [_vi("image", TensorProto.UINT8, ["N", SIZE, SIZE, 3])],
                [_vi("logits", TensorProto.FLOAT, ["N", CLASSES])], Path(folder) / f"{name}.onnx", **save_kw)


def build_constant(folder: str | Path, name: str = "constant", *, classes: int = CLASSES, **save_kw: Any) -> Path:
    """Fixed logits whatever the image: ``0 * mean(image) + b`` (the input is read, and ignored)."""
    g = _Graph()
    w = weights(SIZE, classes, SEED)
    zero = g.op("Mul", [g.op("ReduceMean", ["image"], axes=[1, 2, 3], keepdims=1), g.const(0.0, "zero")])
    flat = g.op("Flatten", [zero], axis=1)                                            # [N, 1]
    g.op("Add", [g.op("MatMul", [flat, g.const(np.zeros((1, classes)), "W")]), g.const(w["b"], "b")], out="logits")
    return save(g, [_vi("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                [_vi("logits", TensorProto.FLOAT, ["N", classes])], Path(folder) / f"{name}.onnx",
                metadata=spec(), **save_kw)


def build_contrast(folder: str | Path, name: str = "contrast", **save_kw: Any) -> Path:
    """Two classes: logit 0 = 40 * the pixels' variance, logit 1 = 0. Blurring lowers the variance of
    a noisy photo, so it can only make class 0 less likely; on a flat photo it changes nothing."""
    g = _Graph()
    mean = g.op("ReduceMean", ["image"], axes=[1, 2, 3], keepdims=0)
    sq = g.op("ReduceMean", [g.op("Mul", ["image", "image"])], axes=[1, 2, 3], keepdims=0)
    var = g.op("Sub", [sq, g.op("Mul", [mean, mean])])
    z0 = g.op("Unsqueeze", [g.op("Mul", [var, g.const(40.0, "k")]), g.const([1], "ax", np.int64)])
    g.op("Concat", [z0, g.op("Mul", [z0, g.const(0.0, "zero")])], out="logits", axis=1)
    return save(g, [_vi("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                [_vi("logits", TensorProto.FLOAT, ["N", 2])], Path(folder) / f"{name}.onnx",
                metadata=spec(), **save_kw)


def nan_when_bright(g: _Graph, z: str) -> None:
    """``logits`` = z + log(0.9 - mean pixel of ``image``): finite on grey and random images, NaN on a white one."""
    mean = g.op("ReduceMean", ["image"], axes=[1, 2, 3], keepdims=0)
    log = g.op("Log", [g.op("Sub", [g.const(0.9, "k"), mean])])
    g.op("Add", [z, g.op("Unsqueeze", [log, g.const([1], "ax", np.int64)])], out="logits")


def build_nan_on_white(folder: str | Path, name: str = "nan_on_white") -> Path:
    """The plain model with :func:`nan_when_bright` logits."""
    g = _Graph()
    nan_when_bright(g, g.reference("image", SIZE, CLASSES, SEED))
    return save(g, [_vi("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                [_vi("logits", TensorProto.FLOAT, ["N", CLASSES])], Path(folder) / f"{name}.onnx", metadata=spec())


# -- bad models ---------------------------------------------------------------------------------

def build_output_3d(folder: str | Path, name: str = "out3d", *, size: int = SIZE) -> Path:
    """Output of shape [N, C, 4]: not [batch, classes]."""
    g = _Graph()
    z = g.reference("image", size, CLASSES, SEED)                          # [N, C]
    z = g.op("Unsqueeze", [z, g.const([2], "ax", np.int64)])               # [N, C, 1]
    g.op("Tile", [z, g.const([1, 1, 4], "reps", np.int64)], out="scores")  # [N, C, 4]
    return save(g, [_vi("image", TensorProto.FLOAT, ["N", 3, size, size])],
                [_vi("scores", TensorProto.FLOAT, ["N", CLASSES, 4])], Path(folder) / f"{name}.onnx",
                metadata=spec(size=[size, size]))


def build_output_1d(folder: str | Path, name: str = "out1d", *, size: int = SIZE) -> Path:
    """Output of shape [N]: one number per image."""
    g = _Graph()
    z = g.reference("image", size, CLASSES, SEED)
    g.op("ReduceSum", [z, g.const([1], "ax", np.int64)], out="score", keepdims=0)
    return save(g, [_vi("image", TensorProto.FLOAT, ["N", 3, size, size])],
                [_vi("score", TensorProto.FLOAT, ["N"])], Path(folder) / f"{name}.onnx",
                metadata=spec(size=[size, size]))


def build_rank2_input(folder: str | Path, name: str = "tabular") -> Path:
    """A classifier of [N, 10] feature vectors: not an image input."""
    g = _Graph()
    rng = np.random.default_rng(0)
    g.op("MatMul", ["x", g.const(rng.standard_normal((10, 4)), "W")], out="logits")
    return save(g, [_vi("x", TensorProto.FLOAT, ["N", 10])], [_vi("logits", TensorProto.FLOAT, ["N", 4])],
                Path(folder) / f"{name}.onnx")


def build_two_inputs(folder: str | Path, name: str = "two_inputs", *, size: int = SIZE) -> Path:
    """An image plus a second input (added to the logits)."""
    g = _Graph()
    z = g.reference("image", size, CLASSES, SEED)
    g.op("Add", [z, "bias_in"], out="logits")
    return save(g, [_vi("image", TensorProto.FLOAT, ["N", 3, size, size]),
                    _vi("bias_in", TensorProto.FLOAT, ["N", CLASSES])],
                [_vi("logits", TensorProto.FLOAT, ["N", CLASSES])], Path(folder) / f"{name}.onnx",
                metadata=spec(size=[size, size]))


def random_images(n: int, size: int = SIZE, seed: int = 0, *, levels: int | None = None) -> np.ndarray:
    """``(n, size, size, 3)`` float32 0-1 images; ``levels=255`` gives exact multiples of 1/255."""
    rng = np.random.default_rng(seed)
    if levels is None:
        return rng.random((n, size, size, 3), dtype=np.float32)
    k = rng.integers(0, levels + 1, size=(n, size, size, 3))
    return (k.astype(np.float32) / np.float32(levels)).astype(np.float32)
