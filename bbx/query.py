"""Querying the model with perturbed images, one batch of masks at a time.

Three paths give the same numbers (tests check it); they differ in where the work happens:

* ``reference``: builds each Q(X; M) in 0-1 RGB with NumPy and hands it to the model's
  preprocessing. The definition; also the only path for integer inputs (rounding is not affine).
* ``numpy``: the normalisation is affine per channel, so ``norm(h(X))`` and ``gain * (X - h(X))``
  are computed once, in the model's layout; a step only upsamples the masks and does one
  multiply-add. The CPU default.
* ``onnx``: the same upsample-and-blend as a small ONNX graph run by onnxruntime on the model's
  device, its output bound straight to the model's input (IOBinding). Only the 28x28 masks go
  to the device and only the scores come back. The model itself is never read or changed.
  The CUDA default.
* ``device``: ``onnx``, and a second small graph after the model, on the same device, reduces
  each probe's scores to the four terms the losses read (:class:`~bbx.model.TargetTerms`):
  4 numbers per probe come back instead of C, and the host skips its pass over the scores.
  Needs the target class; for a model that outputs probabilities it is ``onnx``.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from .errors import ModelError
from .model import OnnxClassifier, Scores, TargetTerms, pad_batch
from .perturb import Perturber
from .preprocess import affine

PATHS = ("auto", "onnx", "device", "numpy", "reference")


class MaskQuery:
    """``query(masks)`` for ``(B, h, w)`` masks; every mask costs one counted query.

    Returns :class:`~bbx.model.Scores`, or on the ``device`` path only the
    :class:`~bbx.model.TargetTerms` of ``target`` (what :meth:`bbx.objective.Objective.model_loss` reads).
    """

    def __init__(self, model: OnnxClassifier, perturber: Perturber, path: str = "auto",
                 target: int | None = None):
        if path not in PATHS:
            raise ValueError(f"unknown query path {path!r}; one of {', '.join(PATHS)}")
        if path == "device" and target is None:
            raise ValueError("the device query path needs the target class")
        self.model = model
        self.perturber = perturber
        floating = np.dtype(model.input.dtype).kind == "f"
        if path == "auto":
            path = ("onnx" if model.device == "cuda" else "numpy") if floating else "reference"
        if path == "device" and model.output.kind != "logits":
            path = "onnx"  # the losses read centred log-probabilities then: Scores.target's own case
        self.path = path if floating else "reference"
        self._front: _OnnxFront | None = None
        self._back: _OnnxBack | None = None
        if self.path != "reference":
            base, delta = _normalised_parts(model, perturber)
            self._front = _OnnxFront(model, base, delta) if self.path in ("onnx", "device") else None
            self._back = _OnnxBack(model, int(target)) if self.path == "device" else None
            self._base, self._delta = base, delta  # (C, H, W) in the model's channel order
            self._dtype = np.dtype(model.input.dtype)

    def __call__(self, masks: np.ndarray) -> Scores | TargetTerms:
        masks = np.asarray(masks, dtype=np.float32)
        chunks, size = self.model.batches(len(masks))
        parts = [self._score(masks[part], size) for part in chunks]
        return TargetTerms.concat(parts) if self.path == "device" else Scores.concat(parts)

    def _score(self, masks: np.ndarray, size: int) -> Any:
        """One model call of ``size`` images (``masks`` padded); counts and returns ``len(masks)``."""
        n = len(masks)
        if self._front is not None:
            return self._front(masks, size, self._back)
        masks = pad_batch(masks, size)
        if self.path == "reference":
            return self.model.scores(self.perturber(masks), n)
        up = self.perturber.upsample(masks)[:, None]  # (B, 1, H, W)
        x = np.multiply(self._delta, up)  # the step's one image-sized allocation
        x += self._base
        if self.model.input.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return self.model.score_tensor(np.ascontiguousarray(x, dtype=self._dtype), n)


def _normalised_parts(model: OnnxClassifier, perturber: Perturber) -> tuple[np.ndarray, np.ndarray]:
    """``norm(h(X))`` and ``gain * (X - h(X))`` as (C, H, W) float32 in the model's channel order."""
    spec = model.spec
    gain, offset = affine(spec)
    base, delta = perturber.blurred, perturber.delta
    if spec.channel_order == "BGR":
        base, delta = base[..., ::-1], delta[..., ::-1]
    base = (base * gain + offset).transpose(2, 0, 1)
    delta = (delta * gain).transpose(2, 0, 1)
    return np.ascontiguousarray(base, np.float32), np.ascontiguousarray(delta, np.float32)


def front_graph(size: tuple[int, int], layout: str, dtype: np.dtype) -> Any:
    """ONNX graph ``(masks[B,1,h,w], base[1,C,H,W], delta[1,C,H,W]) -> x``: upsample and blend.

    Resize with ``half_pixel`` linear interpolation is the same bilinear upsampling as
    :func:`bbx.perturb.upsample`; ``x`` comes out in the model's layout and dtype.
    """
    from onnx import TensorProto, helper, numpy_helper

    H, W = size
    nodes = [
        helper.make_node("Shape", ["masks"], ["mshape"], end=2),
        helper.make_node("Concat", ["mshape", "hw"], ["sizes"], axis=0),
        helper.make_node("Resize", ["masks", "", "", "sizes"], ["up"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Mul", ["delta", "up"], ["scaled"]),
        helper.make_node("Add", ["base", "scaled"], ["nchw"]),
    ]
    last = "nchw"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [last], ["nhwc"], perm=[0, 2, 3, 1]))
        last = "nhwc"
    out_type = TensorProto.FLOAT
    if np.dtype(dtype) == np.float16:
        nodes.append(helper.make_node("Cast", [last], ["half"], to=TensorProto.FLOAT16))
        last, out_type = "half", TensorProto.FLOAT16
    nodes.append(helper.make_node("Identity", [last], ["x"]))
    graph = helper.make_graph(
        nodes, "bbx_mask_front",
        [helper.make_tensor_value_info("masks", TensorProto.FLOAT, ["B", 1, None, None]),
         helper.make_tensor_value_info("base", TensorProto.FLOAT, [1, 3, H, W]),
         helper.make_tensor_value_info("delta", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("x", out_type, ["B", "d1", "d2", "d3"])],
        [numpy_helper.from_array(np.array([H, W], dtype=np.int64), "hw")],
    )
    return _finish(graph)


def _finish(graph: Any) -> Any:
    """A checked opset-17 model around one of bbx's own small graphs."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _session_on_model_device(cache: "weakref.WeakKeyDictionary[OnnxClassifier, Any]", model: OnnxClassifier,
                             make: Any) -> Any:
    """One session per model for a graph ``make()`` builds, on the model's providers, reused by
    every explanation of that model."""
    if model not in cache:
        import onnxruntime as ort

        cache[model] = ort.InferenceSession(make().SerializeToString(), sess_options=model.session_options,
                                            providers=model.providers)
    return cache[model]


_FRONT_SESSIONS: "weakref.WeakKeyDictionary[OnnxClassifier, Any]" = weakref.WeakKeyDictionary()


def _front_session(model: OnnxClassifier) -> Any:
    """The front graph depends on the model's input only: one session per model."""
    return _session_on_model_device(_FRONT_SESSIONS, model, lambda: front_graph(
        model.input_size, model.input.layout, np.dtype(model.input.dtype)))


class _OnnxFront:
    """The front graph in its own session on the model's device, chained to the model by IOBinding."""

    def __init__(self, model: OnnxClassifier, base: np.ndarray, delta: np.ndarray):
        import onnxruntime as ort

        self.model = model
        self.session = _front_session(model)
        device = model.device
        self._base = ort.OrtValue.ortvalue_from_numpy(base[None], device, 0)  # stays on the device
        self._delta = ort.OrtValue.ortvalue_from_numpy(delta[None], device, 0)
        self._binding = self.session.io_binding()  # bound once; each step rebinds only the masks
        self._binding.bind_ortvalue_input("base", self._base)
        self._binding.bind_ortvalue_input("delta", self._delta)

    def __call__(self, masks: np.ndarray, size: int, back: "_OnnxBack | None" = None) -> Scores | TargetTerms:
        """Scores of ``masks`` (or their terms, through ``back``), sent as a batch of ``size``
        (padded; only the real masks are counted)."""
        n = len(masks)
        binding = self._binding
        binding.bind_cpu_input("masks", np.ascontiguousarray(pad_batch(masks, size)[:, None], dtype=np.float32))
        binding.bind_output("x", self.model.device)  # afresh: a run keeps its output's shape bound
        self.session.run_with_iobinding(binding)
        x = binding.get_outputs()[0]
        if back is None:
            return self.model.score_bound(x, n)
        return back(self.model.run_bound(x, n), n)


def back_graph(num_classes: int, scores_type: int, scores_rank: int = 2) -> Any:
    """ONNX graph ``(scores[B, ...], k[1]) -> terms[B, 4]`` float64: f_k, sum_{i!=k} f_i, z_k and
    mean_{i!=k} z_i of each row, the arithmetic of :meth:`bbx.model.Scores.target` (float32
    exponentials, each sum of f taken directly, float64 logit sum)."""
    from onnx import TensorProto, helper, numpy_helper

    C = num_classes
    F, D = TensorProto.FLOAT, TensorProto.DOUBLE
    consts = [numpy_helper.from_array(np.array([-1, C], np.int64), "shape"),
              numpy_helper.from_array(np.array([1], np.int64), "axis1"),
              numpy_helper.from_array(np.arange(C, dtype=np.int64), "classes"),
              numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
              numpy_helper.from_array(np.array(C - 1, np.float64), "others")]
    node = helper.make_node
    nodes = [
        node("Reshape", ["scores", "shape"], ["z_any"]),
        node("Cast", ["z_any"], ["z"], to=F),
        node("ReduceMax", ["z"], ["zmax"], axes=[1], keepdims=1),
        node("Sub", ["z", "zmax"], ["shifted"]),
        node("Exp", ["shifted"], ["e"]),
        node("Equal", ["classes", "k"], ["is_k"]),
        node("Where", ["is_k", "zero", "e"], ["e_rest"]),
        node("ReduceSum", ["e_rest", "axis1"], ["rest32"], keepdims=1),
        node("Gather", ["e", "k"], ["ek32"], axis=1),
        node("Cast", ["rest32"], ["rest_e"], to=D),
        node("Cast", ["ek32"], ["ek"], to=D),
        node("Add", ["rest_e", "ek"], ["total"]),
        node("Div", ["ek", "total"], ["prob"]),
        node("Div", ["rest_e", "total"], ["rest"]),
        node("Cast", ["z_any"], ["zd"], to=D),
        node("Gather", ["zd", "k"], ["zk"], axis=1),
        node("ReduceSum", ["zd", "axis1"], ["zsum"], keepdims=1),
        node("Sub", ["zsum", "zk"], ["others_sum"]),
        node("Div", ["others_sum", "others"], ["others_mean"]),
        node("Concat", ["prob", "rest", "zk", "others_mean"], ["terms"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "bbx_target_terms",
        [helper.make_tensor_value_info("scores", scores_type, ["B", *(f"d{i}" for i in range(1, scores_rank))]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("terms", D, ["B", 4])], consts)
    return _finish(graph)


_BACK_SESSIONS: "weakref.WeakKeyDictionary[OnnxClassifier, Any]" = weakref.WeakKeyDictionary()


def _back_session(model: OnnxClassifier) -> Any:
    """The back graph depends on the model's output type and class count only: one session per model."""
    from onnx import TensorProto

    out = next(o for o in model.session.get_outputs() if o.name == model.output.name)
    elem = {"tensor(float)": TensorProto.FLOAT, "tensor(float16)": TensorProto.FLOAT16,
            "tensor(double)": TensorProto.DOUBLE}.get(out.type)
    if elem is None:
        raise ModelError(f"the device query path cannot read scores of type {out.type}")
    return _session_on_model_device(_BACK_SESSIONS, model, lambda: back_graph(model.num_classes, elem, len(out.shape)))


class _OnnxBack:
    """The back graph in its own session on the model's device, fed the model's scores by IOBinding."""

    def __init__(self, model: OnnxClassifier, target: int):
        self.session = _back_session(model)
        self._binding = self.session.io_binding()
        self._binding.bind_cpu_input("k", np.array([target], dtype=np.int64))  # bound once per explanation

    def __call__(self, scores: Any, n: int) -> TargetTerms:
        binding = self._binding
        binding.bind_ortvalue_input("scores", scores)
        binding.bind_output("terms", "cpu")
        self.session.run_with_iobinding(binding)
        terms = binding.copy_outputs_to_cpu()[0][:n]
        if not np.isfinite(terms).all():  # a NaN or infinite score makes a term so
            raise ModelError("the model returned NaN or infinite scores")
        return TargetTerms(*(np.ascontiguousarray(terms[:, i]) for i in range(4)))
