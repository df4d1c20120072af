"""The model as a black box: an ONNX classifier that bbx may only query.

:class:`OnnxClassifier` opens the file once, works out its conventions from the graph's
signature and one real forward pass (layout, size, dtype, static batch, which output holds the
class scores, logits or probabilities, background class), and then scores batches of 0-1 RGB
images, counting every image it is asked to score. Nothing inside the graph is read or changed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from . import preprocess as pp
from .errors import ModelError, OptionError
from .labels import read_labels_file, resolve_labels

# onnxruntime's own usage telemetry writes files under ~/.cache and $TMPDIR as soon as it is
# imported (1.2x+): bbx writes nothing outside its output folder, so it is off unless asked for.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

_DTYPES = {1: np.float32, 10: np.float16, 2: np.uint8}  # onnx TensorProto elem types
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


@dataclass(frozen=True)
class TargetTerms:
    """What the losses read of one class ``k`` per image (B,), float64: the explain loop needs no more."""

    prob: np.ndarray  # f_k
    rest: np.ndarray  # sum_{i != k} f_i, summed directly (no 1 - f_k cancellation when f_k is near 1)
    logit: np.ndarray  # z_k
    others_mean: np.ndarray  # mean_{i != k} z_i

    @staticmethod
    def concat(parts: Sequence["TargetTerms"]) -> "TargetTerms":
        if len(parts) == 1:
            return parts[0]
        return TargetTerms(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                             ("prob", "rest", "logit", "others_mean")))


class Scores:
    """Model outputs for a batch: ``raw`` as the model gave them; ``logits`` and ``probs`` (N, C) float64.

    ``logits`` and ``probs`` are computed on first use. The explain loop reads only
    :meth:`target`, one float32 pass over the batch: on a GPU a full float64 softmax of 256 x 1000
    scores per step is host work of the same order as the device's (issue 5).
    """

    def __init__(self, raw: np.ndarray, kind: str = "logits"):
        raw = np.asarray(raw)
        self.raw = raw if raw.dtype in (np.float32, np.float64) else raw.astype(np.float32)
        self.kind = kind  # "logits" | "probabilities"

    @cached_property
    def logits(self) -> np.ndarray:
        raw = self.raw.astype(np.float64)
        if self.kind == "probabilities":  # centred log-probabilities stand in for logits
            logp = np.log(np.clip(raw, 1e-12, None))
            return logp - logp.mean(axis=1, keepdims=True)
        return raw

    @cached_property
    def probs(self) -> np.ndarray:
        if self.kind == "probabilities":
            raw = self.raw.astype(np.float64)
            return raw / raw.sum(axis=1, keepdims=True)
        return softmax(self.logits)

    def target(self, k: int) -> TargetTerms:
        """f_k, sum of the other f_i, z_k and the mean of the other z_i, per image."""
        n = self.raw.shape[1]
        if self.kind == "probabilities":
            f, z = self.probs, self.logits
            rest = np.delete(f, k, axis=1).sum(axis=1)  # not 1 - f_k: that cancels when f_k is near 1
            return TargetTerms(f[:, k], rest, z[:, k], (z.sum(axis=1) - z[:, k]) / (n - 1))
        z = self.raw
        e = z - z.max(axis=1, keepdims=True)
        np.exp(e, out=e)
        ek = e[:, k].astype(np.float64)
        e[:, k] = 0.0
        rest = e.sum(axis=1).astype(np.float64)  # positive terms, pairwise sum: float32 is exact enough
        total = rest + ek
        zk = z[:, k].astype(np.float64)
        return TargetTerms(ek / total, rest / total, zk, (z.sum(axis=1, dtype=np.float64) - zk) / (n - 1))

    @staticmethod
    def concat(parts: Sequence["Scores"]) -> "Scores":
        if len(parts) == 1:
            return parts[0]
        return Scores(np.concatenate([p.raw for p in parts]), parts[0].kind)


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` with its last row repeated up to ``size`` rows (a call of the batch's fixed shape)."""
    n = len(x)
    return x if n >= size else np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


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


class OnnxClassifier:
    """An ONNX image classifier behind onnxruntime, queried only through :meth:`scores`.

    Parameters
    ----------
    path: the ``.onnx`` file.
    device: ``"cpu"``, ``"cuda"`` (falls back to CPU with a warning) or ``"auto"``.
    preprocess: CLI-level overrides of :class:`~bbx.preprocess.PreprocessSpec` fields.
    preset: name of a bundled preset to use instead of matching the file name.
    output: name of the output holding class scores, when the graph has several.
    labels: a labels file (one name per line, or a JSON list).
    max_batch: largest batch sent in one call when the batch axis is dynamic; default 64 on the
        CPU, 256 on CUDA (an F-TC step of 128 pairs then goes to the GPU in one batch).
    cuda_options: onnxruntime CUDA provider options over bbx's (``device_id``, ``prefer_nhwc``,
        ``gpu_mem_limit`` ...); bbx's own sessions around the model get the same.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        preprocess: dict[str, Any] | None = None,
        preset: str | None = None,
        output: str | None = None,
        labels: str | Path | Sequence[str] | None = None,
        max_batch: int | None = None,
        cuda_options: Mapping[str, Any] | None = None,
    ) -> None:
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model not found: {self.path}")
        if max_batch is not None and max_batch < 1:
            raise OptionError(f"max batch must be at least 1, not {max_batch}")
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:
            raise ModelError(f"not a readable ONNX model: {self.path} ({_first_line(exc)})") from None
        if not proto.graph.node and not proto.graph.output:
            raise ModelError(f"not a readable ONNX model: {self.path} (empty graph)")
        check_external_data(self.path, proto)
        self.metadata = {p.key: p.value for p in proto.metadata_props}

        if cuda_options and device.lower() == "cpu":
            warnings.warn(f"CUDA options ({_fmt_options(cuda_options)}) do nothing on the CPU: add --device cuda",
                          RuntimeWarning, stacklevel=2)
        providers = _providers(device, ort.get_available_providers(), cuda_options)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 4
        self.session_options = opts
        # the resolved path: onnxruntime reads external data from the folder check_external_data checked
        where = str(self.path.resolve())
        try:
            try:
                self.session = ort.InferenceSession(where, sess_options=opts, providers=providers)
            except Exception as exc:
                if not isinstance(providers[0], tuple):
                    raise
                if cuda_options:  # the user's own options are not dropped in silence
                    raise OptionError(f"onnxruntime's CUDA provider refused the options "
                                      f"{_fmt_options(cuda_options)}: {_first_line(exc)}") from None
                # an onnxruntime-gpu that does not know one of bbx's CUDA options: its defaults then
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
                self.session = ort.InferenceSession(where, sess_options=opts, providers=providers)
        except OptionError:
            raise
        except Exception as exc:
            raise ModelError(f"onnxruntime cannot load {self.path.name}: {_first_line(exc)}") from None
        #: providers and options as the model's session was opened with them: bbx's own sessions
        #: around the model (bbx.query) open with the same, so that they run as the model does
        self.provider_config: list[Any] = providers
        self.providers = self.session.get_providers()
        #: where tensors live for IOBinding: "cuda" when the CUDA provider took the model
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        if device.lower() == "cuda" and self.device != "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            warnings.warn(f"the CUDA provider could not start ({_cuda_failure_reason()}); running on the CPU",
                          RuntimeWarning, stacklevel=2)

        initialisers = {t.name for t in proto.graph.initializer}
        graph_inputs = [i for i in proto.graph.input if i.name not in initialisers]
        resolved = pp.resolve(self.path, self.metadata, cli=preprocess, preset=preset)
        self.input, resolved = _input_info(graph_inputs, resolved)
        self.spec, self.spec_sources = resolved.spec, resolved.sources
        self._np_dtype = np.dtype(self.input.dtype)
        self.max_batch = self.input.batch or max_batch or (256 if self.device == "cuda" else 64)
        self.queries = 0
        self._binding: Any = None  # IOBinding of score_bound, made on first use

        self.output = self._detect_output(output)
        explicit = None
        if labels is not None:
            explicit = read_labels_file(labels) if isinstance(labels, (str, Path)) else list(labels)
        self.labels, self.labels_source = resolve_labels(
            self.output.num_classes, explicit=explicit, sidecar=pp.read_sidecar(self.path), metadata=self.metadata)
        self.queries = 0  # the detection pass is not a query of the user's

    # -- queries ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The model for reports: its file."""
        return str(self.path)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input.height, self.input.width

    @property
    def num_classes(self) -> int:
        return self.output.num_classes

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """A photo (uint8 RGB) resized and cropped to the model's input, 0-1 float32 HWC."""
        return pp.prepare(rgb, self.spec)

    def scores(self, images: np.ndarray, real: int | None = None) -> Scores:
        """Score an ``(N, H, W, 3)`` batch of 0-1 RGB images; counts ``N`` queries.

        ``real``: only the first ``real`` images were asked for, the rest pad the call to one
        shape (:meth:`batches`); only those are counted and returned.
        """
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[None]
        if images.shape[1:] != (self.input.height, self.input.width, 3):
            raise OptionError(f"images of shape {images.shape[1:]} do not match the model's input "
                              f"{(self.input.height, self.input.width, 3)}")
        if len(images) == 0:
            raise OptionError("no images to score: the batch is empty")
        return self.score_tensor(pp.to_model_input(images, self.spec, self._np_dtype), real)

    def score_tensor(self, x: np.ndarray, real: int | None = None) -> Scores:
        """Score a batch already in the model's own input format (layout, scale, dtype); counts ``N``
        (or ``real``, as in :meth:`scores`)."""
        n = len(x) if real is None else real
        self.queries += n
        return self._to_scores(self._run(x, self.output.name)[:n])

    def score_bound(self, x: Any, n: int) -> Scores:
        """Score an ``OrtValue`` batch already on :attr:`device` (IOBinding): only the scores come back.

        ``x`` must hold exactly the model's static batch when it has one; ``n`` (the real
        images, without padding) is what is counted and returned.
        """
        self._run_bound(x, n, "cpu")
        return self.read_scores(self._binding.copy_outputs_to_cpu()[0], x.shape()[0], n)

    def run_bound(self, x: Any, n: int) -> Any:
        """Like :meth:`score_bound`, but the scores stay on :attr:`device` as an ``OrtValue`` (all
        rows, padding included), for a graph that reads them there (``bbx.query``'s back graph)."""
        self._run_bound(x, n, self.device)
        return self._binding.get_outputs()[0]

    def _run_bound(self, x: Any, n: int, where: str) -> None:
        if self._binding is None:  # one binding, rebound every call
            self._binding = self.session.io_binding()
        binding = self._binding
        binding.bind_ortvalue_input(self.input.name, x)
        binding.bind_output(self.output.name, where)  # afresh: a run keeps its output's shape bound
        self.run_binding(self.session, binding, n)

    def run_binding(self, session: Any, binding: Any, n: int) -> None:
        """Run ``session`` with its prepared IOBinding: this model's own, or a graph that holds this
        model (``bbx.query``'s fused path). Counts ``n`` queries; a failure is the model's."""
        try:
            session.run_with_iobinding(binding)
        except Exception as exc:
            raise ModelError(f"the model failed on a batch of {n}: {_first_line(exc)}") from None
        self.queries += n

    def read_scores(self, raw: np.ndarray, rows: int, n: int) -> Scores:
        """The scores of the first ``n`` of a call's ``rows`` images, from this model's raw output."""
        return self._to_scores(_squeeze(raw, rows)[:n])

    def predict(self, rgb: np.ndarray) -> Scores:
        return self.scores(self.prepare(rgb)[None])

    def class_index(self, target: int | str) -> int:
        """A class given by index or by name (exact, then case-insensitive) as an output index."""
        if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.strip().lstrip("-").isdecimal()):
            k = int(target)
            if not 0 <= k < self.num_classes:
                raise OptionError(f"target {k} is out of range: the model has {self.num_classes} classes (0..{self.num_classes - 1})")
            return k
        name = str(target).strip()
        if not name:
            raise OptionError("the target class is empty: give a class index or name")
        if name in self.labels:
            return self.labels.index(name)
        low = [lab.lower() for lab in self.labels]
        if name.lower() in low:
            return low.index(name.lower())
        near = [lab for lab in self.labels if name.lower() in lab.lower()][:5]
        hint = f"; did you mean: {', '.join(near)}" if near else ""
        raise OptionError(f"unknown target class {name!r}{hint}")

    def describe(self) -> dict[str, Any]:
        """Everything ``bbx inspect`` reports."""
        return {
            "model": str(self.path),
            "providers": list(self.providers),
            "inputs": [_io_desc(i) for i in self.session.get_inputs()],
            "outputs": [_io_desc(o) for o in self.session.get_outputs()],
            "input": vars(self.input),
            "output": vars(self.output),
            "preprocess": self.spec.to_json(),
            "preprocess_sources": dict(self.spec_sources),
            "labels_source": self.labels_source,
            "num_classes": self.num_classes,
        }

    def batches(self, n: int) -> tuple[list[slice], int]:
        """Split ``n`` images into model calls of one shape: equal chunks of at most :attr:`max_batch`
        and the batch each call is padded to.

        One shape per explanation step means one cuDNN algorithm search and one memory plan on a
        GPU (300 probes go as 150 + 150, not 256 + 44). Padding rows repeat a chunk's last image;
        their scores are dropped and not counted (at most one row per chunk, or up to a fixed batch).
        """
        if n <= 0:
            return [], self.input.batch or 0
        calls = -(-n // self.max_batch)
        size = -(-n // calls)
        return [slice(i, min(n, i + size)) for i in range(0, n, size)], max(size, self.input.batch or 0)

    # -- internals -------------------------------------------------------------------------
    def _run(self, x: np.ndarray, output: str | None) -> np.ndarray | list[np.ndarray]:
        """Run the session over ``x`` in chunks of one shape (:meth:`batches`); padding is dropped."""
        names = [output] if output else [o.name for o in self.session.get_outputs()]
        chunks, size = self.batches(len(x))
        parts: list[np.ndarray] = []
        for part in chunks:
            chunk = pad_batch(x[part], size)
            n = part.stop - part.start
            try:
                outs = self.session.run(names, {self.input.name: chunk})
            except Exception as exc:
                raise ModelError(f"the model failed on a batch of {len(chunk)}: {_first_line(exc)}") from None
            if not output:  # the detection pass: one chunk; outputs that are not [rows, ...] stay as they are
                return [_squeeze(o, len(chunk), strict=False) for o in outs]
            parts.append(_squeeze(outs[0], len(chunk))[:n])
        return np.concatenate(parts)

    def _to_scores(self, raw: np.ndarray) -> Scores:
        raw = np.asarray(raw)
        if raw.ndim != 2 or raw.shape[1] != self.num_classes:
            raise ModelError(f"the model returned scores of shape {raw.shape}, expected (N, {self.num_classes})")
        if not np.isfinite(raw).all():
            raise ModelError("the model returned NaN or infinite scores")
        return Scores(raw, self.output.kind)

    def _detect_output(self, wanted: str | None) -> OutputInfo:
        h, w = self.input_size
        n = self.input.batch or min(2, self.max_batch)  # one chunk
        rng = np.random.default_rng(0)
        probe = np.concatenate([np.full((1, h, w, 3), 0.5, np.float32),
                                rng.random((max(n - 1, 0), h, w, 3), dtype=np.float32)])[:n]
        outs = self._run(pp.to_model_input(probe, self.spec, self._np_dtype), None)
        names = [o.name for o in self.session.get_outputs()]
        shapes = {name: _shape(o) for name, o in zip(names, outs)}
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
        if len(cands) > 1:  # prefer logits, then an output whose name says it holds class scores
            cands.sort(key=lambda c: (kinds[c] != "logits", _hint_rank(c)))
        name = cands[0]
        if not np.isfinite(values[name]).all():
            raise ModelError("the model returned NaN or infinite scores on a plain grey image")
        c = values[name].shape[1]
        return OutputInfo(name=name, num_classes=c, kind=kinds[name], background=(c == 1001))


def _kind(v: np.ndarray) -> str:
    if np.isfinite(v).all() and v.min() >= -1e-6 and v.max() <= 1 + 1e-6 and np.allclose(v.sum(axis=1), 1.0, atol=1e-3):
        return "probabilities"
    return "logits"


def _hint_rank(name: str) -> int:
    low = name.lower()
    return next((i for i, h in enumerate(_NAME_HINTS) if h in low), len(_NAME_HINTS))


def _squeeze(o: Any, n: int, strict: bool = True) -> Any:
    """An output array without trailing unit axes; with ``strict``, it must have ``n`` rows.

    Sequences and maps (lists and dicts from onnxruntime) come back unchanged, never as scores.
    """
    if not isinstance(o, np.ndarray):
        if strict:
            raise ModelError(f"the model returned {_shape(o)} for a batch of {n} images, not an array of scores")
        return o
    a = o
    while a.ndim > 2 and a.shape[-1] == 1:
        a = a[..., 0]
    if strict and (a.ndim == 0 or a.shape[0] != n):
        rows = "a scalar" if a.ndim == 0 else f"{a.shape[0]} row{'s' * (a.shape[0] != 1)}"
        raise ModelError(f"the model returned {rows} for a batch of {n} images")
    return a


def _shape(o: Any) -> str:
    """An output's shape and type as shown in error messages: ``[2, 10] float32``, ``a sequence``."""
    if isinstance(o, np.ndarray):
        return f"{list(o.shape)} {o.dtype.name if o.dtype.kind in 'fiub' else 'strings' if o.dtype.kind in 'USO' else o.dtype}"
    return "a map" if isinstance(o, dict) else f"a sequence of {len(o)}" if isinstance(o, (list, tuple)) else type(o).__name__


def _input_info(graph_inputs: list[Any], resolved: pp.ResolvedSpec) -> tuple[InputInfo, pp.ResolvedSpec]:
    if not graph_inputs:
        raise ModelError("not an image classifier: the model has no input")
    if len(graph_inputs) > 1:
        names = ", ".join(i.name for i in graph_inputs)
        raise ModelError(f"not an image classifier: the model has {len(graph_inputs)} inputs ({names}); bbx needs one image input")
    gi = graph_inputs[0]
    tt = gi.type.tensor_type
    if not gi.type.HasField("tensor_type"):
        raise ModelError(f"not an image classifier: input {gi.name!r} is not a tensor")
    dtype = _DTYPES.get(tt.elem_type)
    if dtype is None:
        from onnx import TensorProto

        kind = TensorProto.DataType.Name(tt.elem_type) if tt.elem_type in TensorProto.DataType.values() else tt.elem_type
        raise ModelError(f"input {gi.name!r} has element type {kind}; bbx supports float32, float16 and uint8 images")
    dims: list[int | None] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
    return image_input(gi.name, dims, np.dtype(dtype).name, resolved)


def image_input(name: str, dims: Sequence[int | None], dtype: str,
                resolved: pp.ResolvedSpec) -> tuple[InputInfo, pp.ResolvedSpec]:
    """An image input's conventions from its shape (``None`` where a size varies): layout from the
    axis of 3 channels (the spec decides when both could be), size from a static height and width."""
    dims = list(dims)
    if len(dims) != 4:
        raise ModelError(f"not an image input: {name!r} has shape {_fmt_dims(dims)}, expected 4 dimensions (N,C,H,W or N,H,W,C)")
    c1, c3 = dims[1], dims[3]
    if c1 == 3 and c3 != 3:
        layout = "NCHW"
    elif c3 == 3 and c1 != 3:
        layout = "NHWC"
    elif c1 in (3, None) and c3 in (3, None):
        layout = None  # ambiguous: the spec decides
    else:
        raise ModelError(f"not an RGB image input: {name!r} has shape {_fmt_dims(dims)} (no axis of 3 channels)")
    resolved = pp.with_graph(resolved, layout=layout)
    hw = (dims[2], dims[3]) if resolved.spec.layout == "NCHW" else (dims[1], dims[2])
    size = (int(hw[0]), int(hw[1])) if None not in hw and 0 not in hw else None
    if size is not None and max(size) > pp.MAX_SIDE:
        raise ModelError(f"input {name!r} is {size[0]}x{size[1]} pixels, above bbx's limit of {pp.MAX_SIDE} per side")
    resolved = pp.with_graph(resolved, size=size)
    batch = dims[0] if dims[0] else None
    info = InputInfo(name=name, layout=resolved.spec.layout, height=resolved.spec.size[0],
                     width=resolved.spec.size[1], dtype=dtype, batch=batch)
    return info, resolved


def _providers(device: str, available: Sequence[str], cuda_options: Mapping[str, Any] | None = None) -> list[Any]:
    device = device.lower()
    if device not in ("cpu", "cuda", "auto"):
        raise OptionError(f"unknown device {device!r}: use cpu, cuda or auto")
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        # TF32: ResNet-18 at batch 32 scores 9,400 images/s with it and 5,031 without on an H200
        # (../shared/gpu/README.md). The exhaustive cuDNN search is paid once per batch shape, and
        # an explanation sends the same shape again and again.
        _preload_cuda_libraries()
        cuda = {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "1", "do_copy_in_default_stream": "1"}
        cuda.update({str(k): str(v) for k, v in (cuda_options or {}).items()})
        return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
    if device == "cuda":
        warnings.warn(f"CUDA was asked for but {_no_cuda_provider()}; running on the CPU", RuntimeWarning, stacklevel=3)
    return ["CPUExecutionProvider"]


def cuda_status() -> str | None:
    """``None`` when onnxruntime's CUDA provider starts here, else why not and the fix, in one line.

    Opens a one-node session on CUDA: the only way to know, since a provider that is listed can
    still fail to load its libraries or find no GPU.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return _no_cuda_provider()
    _preload_cuda_libraries()
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        with warnings.catch_warnings():  # onnxruntime's own warning is replaced by the line below
            warnings.simplefilter("ignore")
            sess = ort.InferenceSession(probe.SerializeToString(), sess_options=opts,
                                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if sess.get_providers()[0] == "CUDAExecutionProvider":
            return None
    except Exception:
        pass
    return f"the CUDA provider could not start ({_cuda_failure_reason()})"


def _no_cuda_provider() -> str:
    """Why the CUDA provider is missing and the command that fixes it. ``pip install bbx[gpu]`` puts
    onnxruntime-gpu beside the CPU onnxruntime that bbx depends on; both install the same
    ``onnxruntime`` module, and whichever pip wrote last is the one imported."""
    from importlib import metadata

    try:
        gpu = metadata.version("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return "onnxruntime has no CUDAExecutionProvider here (install bbx[gpu])"
    return (f"onnxruntime has no CUDAExecutionProvider here (onnxruntime-gpu {gpu} is installed but the CPU "
            f"package onnxruntime overwrote its files; fix: pip install --force-reinstall --no-deps "
            f"onnxruntime-gpu=={gpu})")


def _cuda_failure_reason() -> str:
    """Name what stopped the CUDA provider: onnxruntime only logs it. Loading the provider library
    again tells a missing CUDA/cuDNN library (the usual cause) from a machine without a usable GPU."""
    import ctypes

    import onnxruntime as ort

    name = "onnxruntime_providers_cuda.dll" if sys.platform == "win32" else "libonnxruntime_providers_cuda.so"
    lib = Path(ort.__file__).parent / "capi" / name
    if not lib.is_file():
        return "its library is not in this onnxruntime build"
    try:
        ctypes.CDLL(str(lib))
    except OSError as exc:
        text = _first_line(exc)  # "libcublasLt.so.13: cannot open shared object file: ..."
        if "cannot open shared object" not in text:
            return f"its library does not load: {text}"
        return (f"{text.split(':')[0].strip()} not found: install the CUDA and cuDNN versions this "
                "onnxruntime-gpu needs, or NVIDIA's pip packages of them, or import torch first")
    return "no usable NVIDIA GPU or driver"


def _preload_cuda_libraries() -> None:
    """Let onnxruntime-gpu find CUDA and cuDNN from the NVIDIA pip packages (PyTorch's, say) without
    LD_LIBRARY_PATH; harmless where they are already loaded or absent (the CPU fallback then warns)."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None or "torch" in sys.modules:  # an imported PyTorch has loaded its own already
        return
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preload()
    except Exception:
        pass


def _fmt_options(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _fmt_dims(dims: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _io_desc(node: Any) -> dict[str, Any]:
    return {"name": node.name, "shape": [d if isinstance(d, int) else str(d) for d in node.shape], "type": node.type}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return line[:300]
