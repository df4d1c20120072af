"""An ONNX image classifier behind onnxruntime: the black box bbx explains by default.

:class:`OnnxClassifier` opens the file once (safely: :mod:`bbx.model.files`), works out its
conventions from the graph's signature and one real forward pass (:mod:`bbx.model.conventions`),
and then scores batches, counting every image it is asked to score. Nothing inside the graph is
read or changed. Besides the protocol's :meth:`scores`, it runs batches already on its device
(IOBinding) for the query paths of :mod:`bbx.query.masks`; those count through the same
:meth:`~bbx.model.protocol.Classifier.count`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import preprocess as pp
from ..errors import ModelError, OptionError
from .labels import read_labels_file, resolve_labels
from .conventions import (DTYPES, MAX_CALL_BYTES, OutputInfo, check_declared_classes, detection_batch, image_bytes,
                          image_input, images_per_call, io_desc, scores_output, squeeze)
from .files import external_locations, load_graph
from .protocol import Classifier
from .providers import Runtime, open_runtime
from .watchdog import Guard, Limits
from .scores import Scores, pad_batch


class OnnxClassifier(Classifier):
    """An ONNX image classifier behind onnxruntime, queried only through :meth:`scores`.

    Parameters
    ----------
    path: the ``.onnx`` file.
    device: ``"cpu"``, ``"cuda"`` (falls back to CPU with a warning) or ``"auto"``.
    preprocess_overrides: :class:`~bbx.preprocess.PreprocessSpec` fields given by the user (the
        strongest source; ``None`` values are unset).
    preset: name of a bundled preset to use instead of matching the file name.
    spec_file: a sidecar JSON (``{"preprocess": {...}, "labels": [...]}``) kept anywhere, used
        instead of ``<model>.bbx.json`` next to the model.
    output: name of the output holding class scores, when the graph has several.
    labels: a labels file (one name per line, or a JSON list), or the names themselves.
    max_batch: largest batch sent in one call when the batch axis is dynamic; default 64 on the
        CPU, 256 on CUDA (an F-TC step of 128 pairs then goes to the GPU in one batch).
    cuda_options: onnxruntime CUDA provider options over bbx's (``device_id``, ``prefer_nhwc``,
        ``gpu_mem_limit`` ...); bbx's own sessions around the model get the same.
    limits: time limits of each model call and of all of them (:class:`~bbx.model.watchdog.Limits`);
        Ctrl-C ends a call in flight either way.
    threads: onnxruntime's intra-op threads for the model (default: one per physical core); a
        process that shares the machine with others (a Ray worker per CPU slot) takes its share.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        preprocess_overrides: Mapping[str, Any] | None = None,
        preset: str | None = None,
        spec_file: str | Path | None = None,
        output: str | None = None,
        labels: str | Path | Sequence[str] | None = None,
        max_batch: int | None = None,
        cuda_options: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        if max_batch is not None and max_batch < 1:
            raise OptionError(f"max batch must be at least 1, not {max_batch}")
        proto = load_graph(self.path)
        check_declared_classes(proto.graph.output)
        self.name = str(self.path)
        self.metadata = {p.key: p.value for p in proto.metadata_props}
        self.external_data = external_locations(proto)  # checked above: each inside the model's folder
        self.runtime: Runtime = open_runtime(self.path, device, cuda_options, threads)
        self.guard = Guard(limits)
        self.device = self.runtime.device
        self.session = self.runtime.session

        self.spec_file = None if spec_file is None else Path(spec_file)
        resolved = pp.resolve(self.path, self.metadata, cli=preprocess_overrides, preset=preset,
                              spec_file=self.spec_file, facts=_graph_facts(proto))
        self.input, resolved = _image_input(proto, resolved)
        self.spec, self.spec_sources = resolved.spec, resolved.sources
        fit = images_per_call(self.input.height, self.input.width)
        if max_batch is not None and max_batch > fit and not self.input.batch:
            raise OptionError(f"max batch {max_batch:,} of {self.input.height}x{self.input.width} images is "
                              f"{max_batch * image_bytes(self.input.height, self.input.width) / 2**30:,.1f} GiB per "
                              f"call, above bbx's limit of {MAX_CALL_BYTES / 2**30:g} GiB: at most {fit:,}")
        self.max_batch = self.input.batch or max_batch or min(fit, 256 if self.device == "cuda" else 64)
        self.queries = 0
        self._binding: Any = None  # IOBinding of score_bound, made on first use

        self.output = self._detect_output(output)
        explicit = None
        if labels is not None:
            explicit = read_labels_file(labels) if isinstance(labels, (str, Path)) else list(labels)
        self.labels, self.labels_source = resolve_labels(
            self.output.num_classes, explicit=explicit, sidecar=pp.read_sidecar(self.path, self.spec_file), metadata=self.metadata)

    def onnx(self) -> OnnxClassifier:
        """This model itself: bbx's graphs run beside it in its runtime (:mod:`bbx.query.masks`)."""
        return self

    @property
    def providers(self) -> list[str]:
        return self.runtime.providers

    def identity(self) -> dict[str, Any]:
        """The file, its hash and the hash of every external data file it reads: weights stored
        beside the graph change the numbers as much as the graph does."""
        folder = self.path.resolve().parent
        return {"model": str(self.path.resolve()), "model_sha256": sha256(self.path),
                "external_data": {loc: sha256(folder / loc) for loc in self.external_data}}

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.path), "providers": list(self.providers),
                "inputs": [io_desc(i) for i in self.session.get_inputs()],
                "outputs": [io_desc(o) for o in self.session.get_outputs()],
                **({"spec_file": str(self.spec_file)} if self.spec_file is not None else {}), **super().describe()}

    def scores_type(self) -> tuple[int, int]:
        """The onnx element type and rank of the scores output (what a graph reading it declares)."""
        from onnx import TensorProto

        out = next(o for o in self.session.get_outputs() if o.name == self.output.name)
        elem = {"tensor(float)": TensorProto.FLOAT, "tensor(float16)": TensorProto.FLOAT16,
                "tensor(double)": TensorProto.DOUBLE}.get(out.type)
        if elem is None:
            raise ModelError(f"bbx's graphs cannot read scores of type {out.type}")
        return elem, len(out.shape)

    # -- running the model -----------------------------------------------------------------------
    def run_batch(self, x: np.ndarray) -> np.ndarray:
        return self._call(x, [self.output.name])[0]

    def score_bound(self, x: Any, n: int) -> Scores:
        """Score an ``OrtValue`` batch already on :attr:`device` (IOBinding): only the scores come back.

        ``x`` must hold exactly the model's static batch when it has one; ``n`` (the real
        images, without padding) is what is counted and returned.
        """
        self._run_bound(x, n, "cpu")
        return self.read_scores(self._binding.copy_outputs_to_cpu()[0], x.shape()[0], n)

    def run_bound(self, x: Any, n: int) -> Any:
        """Like :meth:`score_bound`, but the scores stay on :attr:`device` as an ``OrtValue`` (all
        rows, padding included), for a graph that reads them there (``bbx.query.masks``'s back graph)."""
        self._run_bound(x, n, self.device)
        return self._binding.get_outputs()[0]

    def run_binding(self, session: Any, binding: Any, n: int) -> None:
        """Run ``session`` with its prepared IOBinding: this model's own, or a graph that holds this
        model (``bbx.query.masks``'s fused path). Counts ``n`` queries; a failure is the model's."""
        self.guard.run(lambda options: session.run_with_iobinding(binding, options), f"a batch of {n}")
        self.count(n)

    def _run_bound(self, x: Any, n: int, where: str) -> None:
        if self._binding is None:  # one binding, rebound every call
            self._binding = self.session.io_binding()
        binding = self._binding
        binding.bind_ortvalue_input(self.input.name, x)
        binding.bind_output(self.output.name, where)  # afresh: a run keeps its output's shape bound
        self.run_binding(self.session, binding, n)

    def _call(self, x: np.ndarray, names: list[str]) -> list[Any]:
        return self.guard.run(lambda options: self.session.run(names, {self.input.name: x}, options),
                              f"a batch of {len(x)}")

    def _detect_output(self, wanted: str | None) -> OutputInfo:
        images = detection_batch(self.input, self.max_batch)
        x = pad_batch(pp.to_model_input(images, self.spec, np.dtype(self.input.dtype)), len(images))
        names = [o.name for o in self.session.get_outputs()]
        # outputs that are not [rows, ...] (sequences, maps) stay as they are, to be named in the error
        outs = [squeeze(o, len(x), strict=False) for o in self._call(x, names)]
        return scores_output(names, outs, len(x), wanted)


def _graph_facts(proto: Any) -> pp.GraphFacts:
    """What the graph says about its preprocessing: its image input's type, who produced it."""
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits and i.type.HasField("tensor_type")]
    dtype = DTYPES.get(inputs[0].type.tensor_type.elem_type) if len(inputs) == 1 else None
    return pp.GraphFacts(input_dtype=np.dtype(dtype).name if dtype else "", producer=proto.producer_name or "")


def _image_input(proto: Any, resolved: pp.ResolvedSpec):
    initialisers = {t.name for t in proto.graph.initializer}
    graph_inputs = [i for i in proto.graph.input if i.name not in initialisers]
    if not graph_inputs:
        raise ModelError("not an image classifier: the model has no input")
    if len(graph_inputs) > 1:
        names = ", ".join(i.name for i in graph_inputs)
        raise ModelError(f"not an image classifier: the model has {len(graph_inputs)} inputs ({names}); bbx needs one image input")
    gi = graph_inputs[0]
    if not gi.type.HasField("tensor_type"):
        raise ModelError(f"not an image classifier: input {gi.name!r} is not a tensor")
    tt = gi.type.tensor_type
    dtype = DTYPES.get(tt.elem_type)
    if dtype is None:
        from onnx import TensorProto

        kind = TensorProto.DataType.Name(tt.elem_type) if tt.elem_type in TensorProto.DataType.values() else tt.elem_type
        raise ModelError(f"input {gi.name!r} has element type {kind}; bbx supports float32, float16 and uint8 images")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
    return image_input(gi.name, dims, dtype, resolved)


def sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
