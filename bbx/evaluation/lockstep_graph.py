"""The probes of many explanations built on the model's device: one small graph in front of the model.

On a GPU, building 256 probe images a step on the host (150 MB of float32) and copying them over
costs more than the model's own run. This graph takes what is small: each probe's 28x28 mask and
the index of the explanation it belongs to, and, kept on the device between steps, every
in-flight explanation's ``norm(h(X))`` and ``gain * (X - h(X))``; it upsamples, gathers and
blends there, and its output is bound straight to the model's input (IOBinding). The model itself
is never read or changed. Same operators as :mod:`bbx.query.graphs`' front (Resize with half-pixel
linear interpolation = :func:`bbx.maths.perturb.upsample`), so the images agree with the host's to
float rounding.
"""

from __future__ import annotations

import weakref
from typing import Any, Sequence

import numpy as np

from ..model import OnnxBackend, Scores, pad_batch

OPSET = 17
_SESSIONS: "weakref.WeakKeyDictionary[OnnxBackend, Any]" = weakref.WeakKeyDictionary()


def stacked_front(size: tuple[int, int], layout: str, dtype: np.dtype) -> Any:
    """``(masks[N,1,h,w], index[N], base[K,3,H,W], delta[K,3,H,W]) -> x[N, ...]``: row i is
    ``base[index[i]] + delta[index[i]] * upsample(masks[i])`` in the model's layout and dtype."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    F = TensorProto.FLOAT
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array(size, np.int64), "hw"),
             numpy_helper.from_array(np.zeros(0, np.float32), "none")]
    nodes = [
        helper.make_node("Shape", ["masks"], ["mshape"]),
        helper.make_node("Slice", ["mshape", "zero", "two"], ["bc"]),
        helper.make_node("Concat", ["bc", "hw"], ["sizes"], axis=0),
        helper.make_node("Resize", ["masks", "none", "none", "sizes"], ["up"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Gather", ["base", "index"], ["b"], axis=0),
        helper.make_node("Gather", ["delta", "index"], ["d"], axis=0),
        helper.make_node("Mul", ["d", "up"], ["scaled"]),
        helper.make_node("Add", ["b", "scaled"], ["nchw"]),
    ]
    x = "nchw"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nhwc"], perm=[0, 2, 3, 1]))
        x = "nhwc"
    out_type = F
    if np.dtype(dtype) == np.float16:
        nodes.append(helper.make_node("Cast", [x], ["half"], to=TensorProto.FLOAT16))
        x, out_type = "half", TensorProto.FLOAT16
    nodes.append(helper.make_node("Identity", [x], ["x"]))
    H, W = size
    graph = helper.make_graph(
        nodes, "bbx_lockstep_front",
        [helper.make_tensor_value_info("masks", F, ["N", 1, None, None]),
         helper.make_tensor_value_info("index", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("base", F, ["K", 3, H, W]),
         helper.make_tensor_value_info("delta", F, ["K", 3, H, W])],
        [helper.make_tensor_value_info("x", out_type, ["N", "d1", "d2", "d3"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class DeviceImages:
    """Scores the probes of several explanations with their images built by :func:`stacked_front`
    on ``model``'s device. The explanations' base and delta images go to the device when the set in
    flight changes, not every step."""

    def __init__(self, model: OnnxBackend):
        import onnxruntime as ort

        self.model = model
        if model not in _SESSIONS:
            _SESSIONS[model] = model.runtime.new_session(
                stacked_front(model.input_size, model.input.layout, np.dtype(model.input.dtype)), small=True)
        self.session = _SESSIONS[model]
        self._binding = self.session.io_binding()
        self._ort = ort
        self._values: list[Any] = []  # the device copies of base and delta, which must outlive the binding

    def score(self, parts: Sequence[tuple[np.ndarray, np.ndarray]], masks: Sequence[np.ndarray],
              changed: bool) -> Scores:
        """The scores of every explanation's ``masks`` in turn; ``parts``: each one's (base, delta),
        sent to the device again when ``changed`` (another set of explanations than last call's)."""
        if changed or not self._values:
            self._put(parts)
        index = np.concatenate([np.full(len(m), i, np.int64) for i, m in enumerate(masks)])
        probes = np.concatenate(masks).astype(np.float32)[:, None]
        chunks, size = self.model.batches(len(probes))
        out = []
        for part in chunks:
            n = part.stop - part.start
            self._binding.bind_cpu_input("masks", np.ascontiguousarray(pad_batch(probes[part], size)))
            self._binding.bind_cpu_input("index", np.ascontiguousarray(pad_batch(index[part], size)))
            self._binding.bind_output("x", self.model.device)  # afresh: a run keeps its output's shape bound
            self.session.run_with_iobinding(self._binding)
            out.append(self.model.score_bound(self._binding.get_outputs()[0], n))
        return Scores.concat(out)

    def _put(self, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        device = self.model.device
        self._values = [self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(np.stack(arrays)), device, 0)
                        for arrays in zip(*parts)]
        for name, value in zip(("base", "delta"), self._values):
            self._binding.bind_ortvalue_input(name, value)
