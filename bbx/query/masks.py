"""Querying the model with perturbed images, one batch of masks at a time.

Five paths give the same numbers (tests check it); they differ in where the work happens:

* ``reference``: builds each Q(X; M) in 0-1 RGB with NumPy and hands it to the model's
  preprocessing. The definition; also the only path for integer inputs (rounding is not affine).
* ``numpy``: the normalisation is affine per channel, so ``norm(h(X))`` and ``gain * (X - h(X))``
  are computed once, in the model's layout; a step only upsamples the masks and does one
  multiply-add. The CPU default.
* ``onnx``: the same upsample-and-blend as a small ONNX graph run by onnxruntime on the model's
  device, its output bound straight to the model's input (IOBinding). Only the 28x28 masks go
  to the device and only the scores come back; for an explanation step's antithetic probes
  M ± c u (:meth:`MaskQuery.antithetic`), only M and the P offsets c u, and the graph forms the
  2P masks. The model itself is never read or changed.
* ``device``: ``onnx``, and a second small graph after the model, on the same device, reduces
  each probe's scores to the four terms the losses read (:class:`~bbx.model.TargetTerms`):
  4 numbers per probe come back instead of C, and the host skips its pass over the scores.
  Needs the target class; for a model that outputs probabilities it is ``onnx``.
* ``fused``: ``device`` (or ``onnx`` without a target or with probabilities) as one graph: the
  front graph, the model's own nodes and weights untouched, and the back graph, composed
  (:func:`bbx.query.graphs.compose`) and run as one session, one launch per batch instead of two or
  three. Where the model cannot be composed (opset before 11, over 2 GB) it warns and chains.
  The CUDA default (``auto``, which chains without the warning).
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import graphs as _graphs
from .graphs import FrontNames, back_graph, front_graph
from ..config import QUERY_PATHS
from ..errors import ModelError, OptionError
from ..model import BlackBox, OnnxBackend, Scores, TargetTerms, pad_batch
from ..maths.perturb import Perturber
from ..preprocess import normalise, to_model_input

_GRAPH_PATHS = ("onnx", "device", "fused")  # graphs run by onnxruntime beside the model


class MaskQuery:
    """``query(masks)`` for ``(B, h, w)`` masks; every mask costs one counted query.

    Returns :class:`~bbx.model.Scores`, or, on the ``device`` and ``fused`` paths with a target,
    only the :class:`~bbx.model.TargetTerms` of ``target`` (what
    :meth:`bbx.maths.objective.Objective.model_loss` reads). :attr:`query_path` is the path taken.
    """

    def __init__(self, model: BlackBox, perturber: Perturber, query_path: str = "auto",
                 target: int | None = None):
        if query_path not in QUERY_PATHS:
            raise OptionError(f"unknown query path {query_path!r}; one of {', '.join(QUERY_PATHS)}")
        if query_path == "device" and target is None:
            raise OptionError("the device query path needs the target class")
        backend = model.onnx()
        if query_path in _GRAPH_PATHS and backend is None:
            raise OptionError(f"the {query_path} query path runs graphs beside an ONNX model; "
                              f"{model.name} is queried with the numpy or reference path")
        self.model = model
        self.perturber = perturber
        floating = np.dtype(model.input.dtype).kind == "f"
        chosen = query_path == "auto"
        if chosen:  # measured fastest on each device (docs/gpu.md)
            query_path = "fused" if backend is not None and backend.device == "cuda" else "numpy"
        if not floating:
            query_path = "reference"
        # the class whose terms a back graph reduces the scores to: Scores.target's logit case only,
        # since with probabilities the losses read centred log-probabilities
        reduced = target if target is not None and model.output.kind == "logits" else None
        if query_path == "device" and reduced is None:
            query_path = "onnx"
        self._engine: Any = None
        if query_path != "reference":
            base, delta = _normalised_parts(model, perturber)
            self._base, self._delta = base, delta  # (C, H, W) in the model's channel order
            self._dtype = np.dtype(model.input.dtype)
            if query_path == "fused":
                try:
                    self._engine = _Fused(backend, base, delta, reduced)
                except _graphs.CannotCompose as exc:
                    query_path = "onnx" if reduced is None else "device"
                    if not chosen:  # "auto" chains quietly: nobody asked for the composed graph
                        warnings.warn(f"the fused query path cannot compose {backend.path.name} ({exc}); "
                                      f"running the {query_path} path instead", RuntimeWarning, stacklevel=2)
            if query_path in ("onnx", "device"):
                back = _OnnxBack(backend, reduced) if query_path == "device" else None
                self._engine = _OnnxFront(backend, base, delta, back)
        self.query_path = query_path

    def __call__(self, masks: np.ndarray) -> Scores | TargetTerms:
        masks = np.asarray(masks, dtype=np.float32)
        chunks, size = self.model.batches(len(masks))
        parts = [self._score(masks[part], size) for part in chunks]
        return (TargetTerms.concat if isinstance(parts[0], TargetTerms) else Scores.concat)(parts)

    def pairs_on_device(self, pairs: int) -> bool:
        """Whether :meth:`antithetic` forms the ``2 * pairs`` probes on the model's device: on the
        paths with a front graph, when they go to the model in one call."""
        chunks, size = self.model.batches(2 * pairs)
        return self._engine is not None and len(chunks) == 1 and size == 2 * pairs

    def antithetic(self, centre: np.ndarray, offsets: np.ndarray) -> Scores | TargetTerms:
        """The probes ``centre + offsets`` then ``centre - offsets`` (``2 P`` queries), formed on
        the device: only the mask and the P offsets cross, not 2P masks. Needs
        :meth:`pairs_on_device`."""
        if not self.pairs_on_device(len(offsets)):
            raise ValueError(f"{2 * len(offsets)} probes do not go to the model in one call on the {self.query_path} path")
        return self._engine(_Feed.antithetic(centre, offsets), 2 * len(offsets))

    def _score(self, masks: np.ndarray, size: int) -> Any:
        """One model call of ``size`` images (``masks`` padded); counts and returns ``len(masks)``."""
        n = len(masks)
        if self._engine is not None:
            return self._engine(_Feed.given(masks, size), n)
        masks = pad_batch(masks, size)
        if self.query_path == "reference":
            return self.model.scores(self.perturber(masks), n)
        return self.model.score_tensor(self.model_input(masks), n)

    @property
    def parts(self) -> tuple[np.ndarray, np.ndarray]:
        """``norm(h(X))`` and ``gain * (X - h(X))``, (C, H, W) float32 in the model's channel order:
        Q(X; M) in the model's format is ``base + delta * M'`` (not on the reference path)."""
        if self.query_path == "reference":
            raise ValueError("the reference path normalises each image: it has no base and delta")
        return self._base, self._delta

    def model_input(self, masks: np.ndarray) -> np.ndarray:
        """The perturbed images of ``(B, h, w)`` masks in the model's own input format (layout, scale,
        dtype), built on the host: what :meth:`~bbx.model.protocol.Classifier.score_tensor` scores.
        Probes of several explanations concatenated this way share one model call (:mod:`bbx.evaluation.lockstep`).
        The host paths only."""
        masks = np.asarray(masks, dtype=np.float32)
        if self.query_path == "reference":
            return to_model_input(self.perturber(masks), self.model.spec, np.dtype(self.model.input.dtype))
        if self._engine is not None:
            raise ValueError(f"the {self.query_path} query path builds its images on the model's device")
        up = self.perturber.upsample(masks)[:, None]  # (B, 1, H, W)
        x = np.multiply(self._delta, up)  # the step's one image-sized allocation
        x += self._base
        if self.model.input.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x, dtype=self._dtype)


def _normalised_parts(model: BlackBox, perturber: Perturber) -> tuple[np.ndarray, np.ndarray]:
    """``norm(h(X))`` and ``gain * (X - h(X))`` as (C, H, W) float32 in the model's channel order."""
    base = normalise(perturber.blurred[None], model.spec, channels_first=True)
    delta = normalise(perturber.delta[None], model.spec, channels_first=True, offset=False)
    return base[0], delta[0]


# -- sessions: one per model and graph, on the model's device, reused by every explanation -----------
_FRONT_SESSIONS: "weakref.WeakKeyDictionary[OnnxBackend, Any]" = weakref.WeakKeyDictionary()
_BACK_SESSIONS: "weakref.WeakKeyDictionary[OnnxBackend, Any]" = weakref.WeakKeyDictionary()
_FUSED_SESSIONS: "weakref.WeakKeyDictionary[OnnxBackend, dict[bool, Any]]" = weakref.WeakKeyDictionary()


def sessions(model: OnnxBackend) -> list[Any]:
    """The sessions bbx has opened around ``model`` (front, back, fused): with the model's own, all
    that an explanation of it runs (``tools/bench_gpu.py`` times them)."""
    fused = [made[0] for made in _FUSED_SESSIONS.get(model, {}).values() if isinstance(made, tuple)]
    return [s for s in (_FRONT_SESSIONS.get(model), _BACK_SESSIONS.get(model), *fused) if s is not None]


def _front_session(model: OnnxBackend) -> Any:
    """The front graph depends on the model's input only."""
    if model not in _FRONT_SESSIONS:
        _FRONT_SESSIONS[model] = model.runtime.new_session(front_graph(
            model.input_size, model.input.layout, np.dtype(model.input.dtype)), small=True)
    return _FRONT_SESSIONS[model]


def _back_session(model: OnnxBackend) -> Any:
    """The back graph depends on the model's output type and class count only."""
    if model not in _BACK_SESSIONS:
        _BACK_SESSIONS[model] = model.runtime.new_session(back_graph(model.num_classes, *model.scores_type()), small=True)
    return _BACK_SESSIONS[model]


def _fused_session(model: OnnxBackend, with_back: bool) -> tuple[Any, _graphs.Composed]:
    """The composed graph (with the back graph or without) and its names; a model that cannot be
    composed is tried once (``bbx evaluate`` asks again for every image)."""
    made = _FUSED_SESSIONS.setdefault(model, {})
    if with_back not in made:
        import onnx

        try:
            composed = _graphs.compose(
                onnx.load(str(model.path.resolve())),  # its external data, if any, was checked when it opened
                model.input.name, model.output.name, model.input_size, model.input.layout,
                np.dtype(model.input.dtype), model.num_classes if with_back else None)
            made[with_back] = (model.runtime.new_session(composed.proto), composed)
        except _graphs.CannotCompose as exc:
            made[with_back] = exc
        except Exception as exc:
            made[with_back] = _graphs.CannotCompose(f"the composed graph did not open: {str(exc).strip()[:200]}")
    if isinstance(made[with_back], _graphs.CannotCompose):
        raise made[with_back]
    return made[with_back]


def _bind_images(session: Any, model: OnnxBackend, base: np.ndarray, delta: np.ndarray,
                 names: FrontNames) -> tuple[Any, list[Any]]:
    """An IOBinding of ``session`` with ``base`` and ``delta`` put on the model's device once (each
    call then rebinds only the masks); returns it and the device values, which must outlive it."""
    import onnxruntime as ort

    values = [ort.OrtValue.ortvalue_from_numpy(a[None], model.device, 0) for a in (base, delta)]
    binding = session.io_binding()
    for name, value in zip((names.base, names.delta), values):
        binding.bind_ortvalue_input(name, value)
    return binding, values


@dataclass(frozen=True)
class _Feed:
    """One call's front inputs: the probes are the first ``rows`` of ``centre + masks`` then
    ``centre - masks`` (``bbx.query.graphs``' front)."""

    masks: np.ndarray  # float32 (B, 1, h, w)
    centre: np.ndarray  # float32 (1, 1, h, w)
    rows: int

    @staticmethod
    def given(masks: np.ndarray, size: int) -> "_Feed":
        """The masks as they are, padded to ``size`` rows: ``centre`` 0."""
        masks = np.ascontiguousarray(pad_batch(masks, size)[:, None], dtype=np.float32)
        return _Feed(masks, np.zeros((1, 1, *masks.shape[2:]), np.float32), size)

    @staticmethod
    def antithetic(centre: np.ndarray, offsets: np.ndarray) -> "_Feed":
        """``centre + offsets`` then ``centre - offsets``, formed on the device."""
        offsets = np.ascontiguousarray(offsets[:, None], dtype=np.float32)
        return _Feed(offsets, np.ascontiguousarray(centre[None, None], dtype=np.float32), 2 * len(offsets))

    def bind(self, binding: Any, names: FrontNames) -> None:
        binding.bind_cpu_input(names.masks, self.masks)
        binding.bind_cpu_input(names.centre, self.centre)
        binding.bind_cpu_input(names.rows, np.array([self.rows], dtype=np.int64))


def _target_terms(out: np.ndarray, n: int) -> TargetTerms:
    """The back graph's [B, 4] output (padding included) as the first ``n`` rows' terms, copied:
    ``out`` may be a buffer that the next call writes over."""
    out = out[:n]
    if not np.isfinite(out).all():  # a NaN or infinite score makes a term so
        raise ModelError("the model returned NaN or infinite scores")
    return TargetTerms(*np.array(out.T))


# -- the engines: ``engine(feed, n)`` scores one call of ``feed.rows`` probes, the first ``n`` real ------
class _OnnxFront:
    """The front graph in its own session on the model's device, chained to the model by IOBinding
    (and to the back graph, when given)."""

    names = FrontNames()  # the standalone front graph's own input names

    def __init__(self, model: OnnxBackend, base: np.ndarray, delta: np.ndarray, back: "_OnnxBack | None"):
        self.model, self.back = model, back
        self.session = _front_session(model)
        self._binding, self._images = _bind_images(self.session, model, base, delta, self.names)

    def __call__(self, feed: _Feed, n: int) -> Scores | TargetTerms:
        binding = self._binding
        feed.bind(binding, self.names)
        binding.bind_output("x", self.model.device)  # afresh: a run keeps its output's shape bound
        self.session.run_with_iobinding(binding)
        x = binding.get_outputs()[0]
        if self.back is None:
            return self.model.score_bound(x, n)
        return self.back(self.model.run_bound(x, n), n)


class _OnnxBack:
    """The back graph in its own session on the model's device, fed the model's scores by IOBinding."""

    def __init__(self, model: OnnxBackend, target: int):
        self.session = _back_session(model)
        self._binding = self.session.io_binding()
        self._binding.bind_cpu_input("k", np.array([target], dtype=np.int64))  # bound once per explanation

    def __call__(self, scores: Any, n: int) -> TargetTerms:
        binding = self._binding
        binding.bind_ortvalue_input("scores", scores)
        binding.bind_output("terms", "cpu")
        self.session.run_with_iobinding(binding)
        return _target_terms(binding.copy_outputs_to_cpu()[0], n)


class _Fused:
    """Front, model and (with a target) back graph as one session: one run per call."""

    def __init__(self, model: OnnxBackend, base: np.ndarray, delta: np.ndarray, target: int | None):
        self.model = model
        self.session, self.names = _fused_session(model, target is not None)
        self._binding, self._images = _bind_images(self.session, model, base, delta, self.names.front)
        if self.names.k is not None:
            self._binding.bind_cpu_input(self.names.k, np.array([target], dtype=np.int64))
        self._terms_out: np.ndarray | None = None  # the terms' output buffer, bound once per call size

    def __call__(self, feed: _Feed, n: int) -> Scores | TargetTerms:
        binding, size = self._binding, feed.rows
        feed.bind(binding, self.names.front)
        if self.names.k is None:
            binding.bind_output(self.names.out, "cpu")  # afresh: the scores' shape is the model's to say
            self.model.run_binding(self.session, binding, n)
            return self.model.read_scores(binding.copy_outputs_to_cpu()[0], size, n)
        if self._terms_out is None or len(self._terms_out) != size:
            # [size, 4] written in place by every run: no output to allocate, bind and copy per step
            self._terms_out = np.empty((size, 4), np.float64)  # the back graph's terms are float64
            binding.bind_output(self.names.out, "cpu", 0, self._terms_out.dtype, list(self._terms_out.shape),
                                self._terms_out.ctypes.data)
        self.model.run_binding(self.session, binding, n)
        return _target_terms(self._terms_out, n)
