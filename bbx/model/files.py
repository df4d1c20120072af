"""Opening an ONNX file safely: a readable graph whose external data stays in the model's folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import ModelError
from ..preprocess.image import not_a_file
from .providers import first_line


def load_graph(path: Path) -> Any:
    """The graph of ``path`` without its external data (never read here), or one clear error."""
    import onnx

    if not path.is_file():
        raise ModelError(not_a_file(path, "model"))
    try:
        # always parsed as binary protobuf, as onnxruntime reads it: onnx.load picks a parser from
        # the file's extension, so a model named *.json would be read as text here
        proto = onnx.load(str(path), format="protobuf", load_external_data=False)
    except Exception as exc:
        raise ModelError(f"not a readable ONNX model: {path} ({first_line(exc)})") from None
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"not a readable ONNX model: {path} (empty graph)")
    check_external_data(path, proto)
    check_constant_sizes(path, proto)
    return proto


#: the largest tensor the graph may compute from its constants alone: onnxruntime folds such tensors
#: when it opens the model, before any bbx limit on a call applies (docs/security.md)
MAX_CONSTANT_BYTES = 1 << 30
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def check_constant_sizes(model_path: Path, proto: Any) -> None:
    """Refuse a graph whose constant part (no graph input upstream) makes a tensor above
    :data:`MAX_CONSTANT_BYTES`, by ONNX shape inference with constant propagation. Tensors that
    depend on the input are bounded per call elsewhere; a graph inference cannot read passes."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # custom operators, broken graphs: onnxruntime's own checks follow
        return
    graph = inferred.graph
    constant = _constant_names(graph)
    for info in [*graph.value_info, *graph.output]:
        if info.name not in constant:
            continue
        t = info.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if None in dims:
            continue
        size = int(np.prod(dims, dtype=object)) * _ITEMSIZE.get(t.elem_type, 8)
        if size > MAX_CONSTANT_BYTES:
            raise ModelError(f"refusing model {model_path.name}: tensor {info.name[:80]!r} {dims} is computed from "
                             f"constants alone and would take {size / 2**30:,.1f} GiB, above bbx's limit of "
                             f"{MAX_CONSTANT_BYTES / 2**30:g} GiB")


def _constant_names(graph: Any) -> set[str]:
    """Outputs of nodes with no graph input upstream (nodes are in topological order; a node with a
    subgraph counts as depending on the input, which it may read from the outer scope)."""
    dynamic = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    constant: set[str] = set()
    for node in graph.node:
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute) or any(i in dynamic for i in node.input):
            dynamic.update(node.output)
        else:
            constant.update(node.output)
    return constant


def check_external_data(model_path: Path, proto: Any) -> None:
    """Refuse tensors whose external data would be read from outside the model's folder.

    Runs on the graph loaded *without* external data, before onnxruntime opens anything; looks
    at every tensor onnxruntime might read (initialisers dense and sparse, node attributes,
    subgraphs, functions) and only at path strings (``resolve`` follows links, opens no file).
    """
    folder = model_path.resolve().parent
    for tensor in _all_tensors(proto):
        if tensor.data_location != tensor.EXTERNAL and not len(tensor.external_data):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        try:
            bad = (not location or os.path.isabs(location) or ".." in Path(location).parts
                   or folder not in (folder / location).resolve().parents)
        except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop ...
            bad = True
        if bad:
            shown = repr(location) if len(location) <= 120 else repr(location[:120]) + "..."
            raise ModelError(f"refusing model {model_path.name}: tensor {tensor.name!r} reads external data "
                             f"from {shown}, outside the model's folder")


def external_locations(proto: Any) -> list[str]:
    """The files (relative to the model's folder) the model's external data is read from."""
    found = set()
    for tensor in _all_tensors(proto):
        if tensor.data_location == tensor.EXTERNAL or len(tensor.external_data):
            found.update(e.value for e in tensor.external_data if e.key == "location")
    return sorted(found)


def _all_tensors(proto: Any) -> Iterator[Any]:
    yield from _graph_tensors(proto.graph)
    for function in proto.functions:
        yield from _graph_tensors(function)


def _graph_tensors(graph: Any) -> Iterator[Any]:
    """Tensors of a graph or function, its nodes' attributes and their subgraphs (any depth)."""
    yield from getattr(graph, "initializer", ())
    for sparse in getattr(graph, "sparse_initializer", ()):
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            for sparse in [*([a.sparse_tensor] if a.HasField("sparse_tensor") else []), *a.sparse_tensors]:
                yield from (sparse.values, sparse.indices)
            for sub in [*([a.g] if a.HasField("g") else []), *a.graphs]:
                yield from _graph_tensors(sub)

