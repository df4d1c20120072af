"""bbx's own small ONNX graphs around the model, and their composition with it (used by :mod:`bbx.query.masks`).

* front: ``(masks[B,1,h,w], centre, rows, base, delta) -> x``: the probes' masks (given, or formed
  as centre ± offsets on the device), their bilinear upsampling and the blend of Q(X; M), already in
  the model's input format (layout, dtype);
* back: ``(scores[B, ...], k) -> terms[B, 4]``: the four numbers per probe that the losses read;
* :func:`compose`: front, the untouched model and (optionally) back as one graph, run as one
  session. The model's nodes and weights are copied as they are; its input becomes the front's
  output and its scores the back's input.

The builders emit nodes that mean the same from opset 11 on, in the opset they are given, so that a
composed graph keeps the model's own opset: raising it could change what the model's operators mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

#: Resize's half-pixel coordinates (the bilinear upsampling of :func:`bbx.maths.perturb.upsample`) came in opset 11
MIN_OPSET = 11
STANDALONE_OPSET = 17


class CannotCompose(Exception):
    """The model cannot take bbx's graphs into its own (the chained sessions still can run it)."""


class _Builder:
    """Nodes and constants of one of bbx's graphs, every name behind ``prefix`` (which the model does
    not use), written for ``opset``."""

    def __init__(self, prefix: str, opset: int):
        self.prefix, self.opset = prefix, opset
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def name(self, stem: str) -> str:
        return self.prefix + stem

    def const(self, stem: str, value: Any, dtype: Any) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), self.name(stem)))
        return self.name(stem)

    def node(self, op: str, inputs: Sequence[str], out: str, **attrs: Any) -> str:
        """One node; ``inputs`` and ``out`` are full names (``self.name`` for bbx's own)."""
        from onnx import helper

        self.nodes.append(helper.make_node(op, list(inputs), [out], name=self.prefix + "op_" + out, **attrs))
        return out

    def reduce(self, op: str, x: str, stem: str) -> str:
        """``op`` over axis 1, kept: ``axes`` became an input in opset 13 (ReduceSum) or 18 (ReduceMax)."""
        if self.opset >= {"ReduceSum": 13, "ReduceMax": 18}[op]:
            return self.node(op, [x, self.const(stem + "_axes", [1], np.int64)], self.name(stem), keepdims=1)
        return self.node(op, [x], self.name(stem), axes=[1], keepdims=1)


def _front(b: _Builder, size: tuple[int, int], layout: str, dtype: np.dtype, out: str) -> None:
    """Q(X; M) normalised, ``base`` = norm(h(X)) and ``delta`` = gain * (X - h(X)) (float32
    [1,3,H,W]), for the first ``rows`` (int64 [1]) of the masks ``centre + masks`` then
    ``centre - masks`` (float32 [1,1,h,w] and [B,1,h,w]): with ``centre`` 0 and ``rows`` B, the
    masks as given; with the mask M as ``centre`` and a step's c u as ``masks``, its 2B antithetic
    probes, formed on the device from half the bytes. Resize with ``half_pixel`` linear
    interpolation is :func:`bbx.maths.perturb.upsample`'s bilinear upsampling."""
    from onnx import TensorProto

    given, centre = b.name("masks"), b.name("centre")
    both = b.node("Concat", [b.node("Add", [centre, given], b.name("plus")),
                             b.node("Sub", [centre, given], b.name("minus"))], b.name("both"), axis=0)
    masks = b.node("Slice", [both, b.const("zero", [0], np.int64), b.name("rows"), b.const("axis0", [0], np.int64)],
                   b.name("probes"))
    shape = b.node("Shape", [masks], b.name("mshape"))
    batch_ch = b.node("Slice", [shape, b.name("zero"), b.const("two", [2], np.int64)], b.name("bc"))
    sizes = b.node("Concat", [batch_ch, b.const("hw", list(size), np.int64)], b.name("sizes"), axis=0)
    none = b.const("none", np.zeros(0), np.float32)  # roi and scales: empty, as opset 11 asks when sizes is given
    up = b.node("Resize", [masks, none, none, sizes], b.name("up"), mode="linear",
                coordinate_transformation_mode="half_pixel")
    x = b.node("Add", [b.name("base"), b.node("Mul", [b.name("delta"), up], b.name("scaled"))], b.name("nchw"))
    if layout == "NHWC":
        x = b.node("Transpose", [x], b.name("nhwc"), perm=[0, 2, 3, 1])
    if np.dtype(dtype) == np.float16:
        x = b.node("Cast", [x], b.name("half"), to=TensorProto.FLOAT16)
    b.node("Identity", [x], out)


def _front_inputs(b: _Builder, size: tuple[int, int]) -> list[Any]:
    from onnx import TensorProto, helper

    H, W = size
    return [helper.make_tensor_value_info(b.name("masks"), TensorProto.FLOAT, ["B", 1, None, None]),
            helper.make_tensor_value_info(b.name("centre"), TensorProto.FLOAT, [1, 1, None, None]),
            helper.make_tensor_value_info(b.name("rows"), TensorProto.INT64, [1]),
            helper.make_tensor_value_info(b.name("base"), TensorProto.FLOAT, [1, 3, H, W]),
            helper.make_tensor_value_info(b.name("delta"), TensorProto.FLOAT, [1, 3, H, W])]


def _back(b: _Builder, num_classes: int, scores: str, out: str) -> None:
    """f_k, sum_{i!=k} f_i, z_k and mean_{i!=k} z_i of each row of ``scores`` as float64 [B, 4], with
    the arithmetic of :meth:`bbx.model.Scores.target` (float32 exponentials, each sum of f taken
    directly, float64 logit sum); ``k`` is an int64 [1] input."""
    from onnx import TensorProto

    F, D = TensorProto.FLOAT, TensorProto.DOUBLE
    n, k = b.name, b.name("k")
    z_any = b.node("Reshape", [scores, b.const("shape", [-1, num_classes], np.int64)], n("z_any"))
    z = b.node("Cast", [z_any], n("z"), to=F)
    shifted = b.node("Sub", [z, b.reduce("ReduceMax", z, "zmax")], n("shifted"))
    e = b.node("Exp", [shifted], n("e"))
    is_k = b.node("Equal", [b.const("classes", np.arange(num_classes), np.int64), k], n("is_k"))
    e_rest = b.node("Where", [is_k, b.const("zero_f", 0.0, np.float32), e], n("e_rest"))
    rest_e = b.node("Cast", [b.reduce("ReduceSum", e_rest, "rest32")], n("rest_e"), to=D)
    ek = b.node("Cast", [b.node("Gather", [e, k], n("ek32"), axis=1)], n("ek"), to=D)
    total = b.node("Add", [rest_e, ek], n("total"))
    zd = b.node("Cast", [z_any], n("zd"), to=D)
    zk = b.node("Gather", [zd, k], n("zk"), axis=1)
    others_sum = b.node("Sub", [b.reduce("ReduceSum", zd, "zsum"), zk], n("others_sum"))
    b.node("Concat", [b.node("Div", [ek, total], n("prob")), b.node("Div", [rest_e, total], n("rest")), zk,
                      b.node("Div", [others_sum, b.const("others", num_classes - 1, np.float64)], n("others_mean"))],
           out, axis=1)


def _terms_output(name: str) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.DOUBLE, ["B", 4])


def front_graph(size: tuple[int, int], layout: str, dtype: np.dtype) -> Any:
    """The front alone: ``(masks, centre, rows, base, delta) -> x`` in the model's layout and dtype."""
    from onnx import TensorProto, helper

    b = _Builder("", STANDALONE_OPSET)
    _front(b, size, layout, dtype, "x")
    out_type = TensorProto.FLOAT16 if np.dtype(dtype) == np.float16 else TensorProto.FLOAT
    graph = helper.make_graph(b.nodes, "bbx_mask_front", _front_inputs(b, size),
                              [helper.make_tensor_value_info("x", out_type, ["B", "d1", "d2", "d3"])], b.inits)
    return _finish(graph)


def back_graph(num_classes: int, scores_type: int, scores_rank: int = 2) -> Any:
    """The back alone: ``(scores[B, ...], k[1]) -> terms[B, 4]`` float64."""
    from onnx import TensorProto, helper

    b = _Builder("", STANDALONE_OPSET)
    _back(b, num_classes, "scores", "terms")
    graph = helper.make_graph(
        b.nodes, "bbx_target_terms",
        [helper.make_tensor_value_info("scores", scores_type, ["B", *(f"d{i}" for i in range(1, scores_rank))]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        [_terms_output("terms")], b.inits)
    return _finish(graph)


def _finish(graph: Any) -> Any:
    """A checked model around one of bbx's own small graphs."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", STANDALONE_OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class FrontNames:
    """The front graph's inputs as named in a graph: its own (``front_graph``) or a composed one."""

    masks: str = "masks"
    centre: str = "centre"
    rows: str = "rows"
    base: str = "base"
    delta: str = "delta"

    @staticmethod
    def of(b: _Builder) -> "FrontNames":
        return FrontNames(*(b.name(f) for f in ("masks", "centre", "rows", "base", "delta")))


@dataclass(frozen=True)
class Composed:
    """A composed model and the names of its inputs and output (behind a prefix the model does not use)."""

    proto: Any
    front: "FrontNames"
    k: str | None  # the target's input, when the back graph is in
    out: str  # terms [B, 4] float64, or the model's own scores


def compose(proto: Any, input_name: str, output_name: str, size: tuple[int, int], layout: str, dtype: np.dtype,
            num_classes: int | None = None) -> Composed:
    """``proto`` (changed in place) with the front graph feeding ``input_name`` and, given
    ``num_classes``, the back graph reading ``output_name``; the model's nodes stay as they are.

    Raises :class:`CannotCompose` where the model's opset predates the front's operators or its
    graph would not fit one protobuf (2 GB).
    """
    from onnx import TensorProto, helper

    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < MIN_OPSET:
        raise CannotCompose(f"its opset {opset} predates Resize's half-pixel mode (opset {MIN_OPSET})")
    if proto.ir_version < 4:  # before IR 4 every initializer had to be a graph input too
        raise CannotCompose(f"its IR version {proto.ir_version} is older than 4")
    g = proto.graph
    if input_name not in {i.name for i in g.input} or output_name not in {o.name for o in g.output}:
        raise CannotCompose("its graph does not have the input and output bbx queries")
    used = set(_names(g))
    prefix = "bbx_"
    while any(name.startswith(prefix) for name in used):
        prefix += "_"

    front, back = _Builder(prefix, opset), _Builder(prefix, opset)
    _front(front, size, layout, dtype, input_name)
    inputs = [i for i in g.input if i.name != input_name] + _front_inputs(front, size)
    outputs = [o for o in g.output if o.name == output_name]
    k = out = None
    if num_classes is not None:
        k, out = back.name("k"), back.name("terms")
        _back(back, num_classes, output_name, out)
        inputs.append(helper.make_tensor_value_info(k, TensorProto.INT64, [1]))
        outputs = [_terms_output(out)]
    nodes = [*front.nodes, *g.node, *back.nodes]
    for field, items in (("input", inputs), ("output", outputs), ("node", nodes)):
        del getattr(g, field)[:]
        getattr(g, field).extend(items)
    g.initializer.extend([*front.inits, *back.inits])
    if proto.ByteSize() >= 2**31:
        raise CannotCompose("the composed graph is larger than the 2 GB a protobuf holds")
    return Composed(proto, FrontNames.of(front), k, out or output_name)


def _names(graph: Any) -> Iterator[str]:
    """Every name a graph and its subgraphs use (tensors and nodes): bbx's names must differ from all."""
    for group in (graph.input, graph.output, graph.value_info, graph.initializer):
        yield from (item.name for item in group)
    yield from (s.values.name for s in graph.sparse_initializer)
    for node in graph.node:
        yield node.name
        yield from node.input
        yield from node.output
        for a in node.attribute:
            for sub in [*([a.g] if a.HasField("g") else []), *a.graphs]:
                yield from _names(sub)
