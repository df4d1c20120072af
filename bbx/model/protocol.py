"""The small protocol every black box satisfies, and the behaviour all of them share.

bbx's methods only ever *score* images: :class:`BlackBox` is all they may use of a model, so an
ONNX file run by onnxruntime (:class:`~bbx.model.onnx_classifier.OnnxClassifier`) and a model
behind an endpoint are explained alike. :class:`Classifier` implements the protocol once its
conventions are known; an implementation supplies those and :meth:`Classifier.run_batch`, one
call of the model on a batch already in its input format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .. import preprocess as pp
from ..errors import ModelError, OptionError
from .conventions import InputInfo, OutputInfo, squeeze
from .scores import Scores, pad_batch


@runtime_checkable
class BlackBox(Protocol):
    """What bbx may know of and do with a model.

    * the input spec: :attr:`input` (layout, size, dtype, static batch), :attr:`spec` (how a photo
      becomes the model's input) with each field's source in :attr:`spec_sources`;
    * the output: :attr:`output` (which scores, logits or probabilities) and :attr:`labels`;
    * batched scoring: :meth:`scores` of ``(N, H, W, 3)`` 0-1 RGB images, in calls of the shapes
      :meth:`batches` gives;
    * query counting: :attr:`queries` grows by one for every image scored, never otherwise;
    * what an answer reveals (:attr:`reveals`: ``scores``, ``topk`` or ``label``; :attr:`revealed`
      classes), the traffic an endpoint counts (:attr:`traffic`, ``None`` for a local model) and a
      hard cap on the images it answers (:meth:`cap_answers`);
    * :meth:`onnx`: the ONNX graph and runtime behind it, for bbx's graphs run beside the model, or
      ``None`` where there is none to run beside (an endpoint, an explanation's share of a model).

    Every member is part of the contract: callers use them directly, never probing with ``getattr``.
    """

    name: str  # a file's path or an endpoint's address, for reports
    input: InputInfo
    output: OutputInfo
    spec: pp.PreprocessSpec
    spec_sources: dict[str, str]
    labels: list[str]
    labels_source: str
    device: str
    max_batch: int
    queries: int
    reveals: str

    @property
    def input_size(self) -> tuple[int, int]: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def revealed(self) -> int: ...

    @property
    def traffic(self) -> dict[str, int] | None: ...

    def prepare(self, rgb: np.ndarray) -> np.ndarray: ...

    def predict(self, rgb: np.ndarray) -> Scores: ...

    def scores(self, images: np.ndarray, real: int | None = None) -> Scores: ...

    def score_tensor(self, x: np.ndarray, real: int | None = None) -> Scores: ...

    def cap_answers(self, images: int) -> None: ...

    def onnx(self) -> OnnxBackend | None: ...

    def batches(self, n: int) -> tuple[list[slice], int]: ...

    def class_index(self, target: int | str) -> int: ...

    def describe(self) -> dict[str, Any]: ...

    def identity(self) -> dict[str, Any]: ...


class OnnxBackend(Protocol):
    """An ONNX file run by onnxruntime, as bbx's own graphs beside it use it (the query paths of
    :mod:`bbx.query.masks`, lockstep's device images): its file, its session and its bound calls,
    which count their queries on the model like :meth:`BlackBox.scores`."""

    path: Path
    runtime: Any
    device: str
    input: InputInfo
    output: OutputInfo
    spec: pp.PreprocessSpec

    @property
    def input_size(self) -> tuple[int, int]: ...

    @property
    def num_classes(self) -> int: ...

    def batches(self, n: int) -> tuple[list[slice], int]: ...

    def scores_type(self) -> tuple[int, int]: ...

    def score_bound(self, x: Any, n: int) -> Scores: ...

    def run_bound(self, x: Any, n: int) -> Any: ...

    def run_binding(self, session: Any, binding: Any, n: int) -> None: ...

    def read_scores(self, raw: np.ndarray, rows: int, n: int) -> Scores: ...


class Classifier:
    """:class:`BlackBox` for any model whose conventions are set: subclasses set the attributes
    the protocol lists (:class:`BlackBox`'s annotations) and implement :meth:`run_batch` and
    :meth:`identity`. A local model reveals every score, counts no traffic, needs no cap beyond
    the methods' own budgets and has no graph to run beside it unless it says otherwise."""

    queries: int = 0
    reveals: str = "scores"

    # -- what a subclass supplies ---------------------------------------------------------------
    def run_batch(self, x: np.ndarray) -> np.ndarray:
        """The model's scores output for one call on ``x``, a batch in the model's input format of
        a size :meth:`batches` gives. Counts nothing: :meth:`score_tensor` does."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What pins this model in an evaluation's settings (a file and its hash, an address ...)."""
        raise NotImplementedError

    # -- the protocol ------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return self.input.height, self.input.width

    @property
    def num_classes(self) -> int:
        return self.output.num_classes

    @property
    def revealed(self) -> int:
        """How many classes' scores an answer holds: all of them, for a model that reveals scores."""
        return self.num_classes

    @property
    def traffic(self) -> dict[str, int] | None:
        """An endpoint's counters (images answered, requests, retries ...); ``None``: no traffic."""
        return None

    def cap_answers(self, images: int) -> None:
        """At most ``images`` more images answered from here on. A local model needs no cap of its
        own: every method refuses to pass its budget before it queries."""

    def onnx(self) -> OnnxBackend | None:
        """The ONNX graph behind this model for graphs run beside it; none by default."""
        return None

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """A photo (uint8 RGB) resized and cropped to the model's input, 0-1 float32 HWC."""
        return pp.prepare(rgb, self.spec)

    def predict(self, rgb: np.ndarray) -> Scores:
        return self.scores(self.prepare(rgb)[None])

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
        return self.score_tensor(pp.to_model_input(images, self.spec, np.dtype(self.input.dtype)), real)

    def score_tensor(self, x: np.ndarray, real: int | None = None) -> Scores:
        """Score a batch already in the model's own input format (layout, scale, dtype) in calls of
        one shape (:meth:`batches`); counts ``N`` (or ``real``, as in :meth:`scores`)."""
        n = len(x) if real is None else real
        chunks, size = self.batches(len(x))
        parts = []
        for part in chunks:
            chunk = pad_batch(x[part], size)
            parts.append(squeeze(self.run_batch(chunk), len(chunk))[: part.stop - part.start])
        self.count(n)
        return self.to_scores(np.concatenate(parts)[:n])

    def count(self, n: int) -> None:
        """``n`` more images scored: the one place where queries are counted."""
        self.queries += n

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

    def class_index(self, target: int | str) -> int:
        """A class given by index (an int, or ``"index:N"``) or by name (``"name:X"``, else exact, then
        case-insensitive).

        A string of digits is a name first where a class has that name (labels ``"0"`` and ``"180"``:
        ``"180"`` is the second class), else an index; where it names one class and indexes
        another, it is refused as ambiguous rather than guessed.
        """
        if isinstance(target, (int, np.integer)):
            return self._index(int(target))
        text = str(target).strip()
        kind, sep, rest = text.partition(":")
        if sep and kind.lower() in ("index", "name"):
            if kind.lower() == "name":
                return self._named(rest.strip())
            if not rest.strip().lstrip("-").isdecimal() or len(rest.strip()) > 18:
                raise OptionError(f"target {text[:40]!r}: index: needs a whole number of at most 18 digits")
            return self._index(int(rest))
        if text.lstrip("-").isdecimal() and len(text) > 18 and text not in self.labels:
            raise OptionError(f"target {text[:20]}... is out of range: the model has {self.num_classes} classes "
                              f"(0..{self.num_classes - 1})")
        if text.lstrip("-").isdecimal():
            k = int(text)
            named = self.labels.index(text) if text in self.labels else None
            if named is None:
                return self._index(k, numeric_names=any(lab.strip().isdecimal() for lab in self.labels))
            if 0 <= k < self.num_classes and k != named:
                raise OptionError(f"target {text!r} is ambiguous: class {named} is named {text!r} and class {k} "
                                  f"({self.labels[k]!r}) has index {k}; give name:{text} or index:{text}")
            return named
        return self._named(text)

    def _index(self, k: int, numeric_names: bool = False) -> int:
        if not 0 <= k < self.num_classes:
            no_name = "no class is named that and " if numeric_names else ""
            raise OptionError(f"target {k} is out of range: {no_name}the model has {self.num_classes} classes "
                              f"(0..{self.num_classes - 1})")
        return k

    def _named(self, name: str) -> int:
        if not name:
            raise OptionError("the target class is empty: give a class index or name")
        for same in (lambda lab: lab == name, lambda lab: lab.lower() == name.lower()):
            hits = [i for i, lab in enumerate(self.labels) if same(lab)]
            if len(hits) == 1:
                return hits[0]
            if hits:
                shown = ", ".join(map(str, hits[:10])) + (" ..." if len(hits) > 10 else "")
                raise OptionError(f"target class {name!r} is ambiguous: classes {shown} have that name; "
                                  f"give the index")
        near = [lab for lab in self.labels if name.lower() in lab.lower()][:5]
        hint = f"; did you mean: {', '.join(near)}" if near else ""
        raise OptionError(f"unknown target class {name!r}{hint}")

    def describe(self) -> dict[str, Any]:
        """Everything ``bbx inspect`` reports."""
        return {
            "model": self.name,
            "input": vars(self.input),
            "output": vars(self.output),
            "preprocess": self.spec.to_json(),
            "preprocess_sources": dict(self.spec_sources),
            "labels_source": self.labels_source,
            "num_classes": self.num_classes,
        }

    def batch_effect(self, n: int = 4, seed: int = 0) -> tuple[float, int, float, float]:
        """How much an image's probabilities change when it is scored in a batch of ``n`` instead of
        alone: (largest difference, its image, probability alone, in the batch) over ``n`` random
        images. bbx optimises on batched scores and reports single ones, so they must agree."""
        images = np.random.default_rng(seed).random((n, *self.input_size, 3), dtype=np.float32)
        together = self.scores(images).probs
        alone = np.concatenate([self.scores(images[i:i + 1]).probs for i in range(n)])
        diff = np.abs(together - alone)
        i, k = np.unravel_index(int(np.argmax(diff)), diff.shape)
        return float(diff[i, k]), int(i), float(alone[i, k]), float(together[i, k])

    # -- shared helpers ---------------------------------------------------------------------------
    def read_scores(self, raw: np.ndarray, rows: int, n: int) -> Scores:
        """The scores of the first ``n`` of a call's ``rows`` images, from this model's raw output."""
        return self.to_scores(squeeze(raw, rows)[:n])

    def to_scores(self, raw: np.ndarray) -> Scores:
        raw = np.asarray(raw)
        if raw.ndim != 2 or raw.shape[1] != self.num_classes:
            raise ModelError(f"the model returned scores of shape {raw.shape}, expected (N, {self.num_classes})")
        if not np.isfinite(raw).all():
            raise ModelError("the model returned NaN or infinite scores")
        if self.output.kind == "probabilities":
            check_probabilities(raw)
        return Scores(raw, self.output.kind)


#: how far a probability output may stray from [0, 1] and a row's sum from 1 (float32 softmax rounding)
PROB_TOLERANCE = 1e-3


def check_probabilities(raw: np.ndarray) -> None:
    """Every call's probabilities, not only the first's: each in [0, 1] and each row summing to 1.

    A model that probed as a softmax and later returns negative values or a row of zeros would
    otherwise be renormalised into numbers no model gave (a probability of 1.0069, NaN scores)."""
    lo, hi = float(raw.min()), float(raw.max())
    sums = raw.sum(axis=1, dtype=np.float64)
    worst = float(np.abs(sums - 1.0).max())
    if lo < -PROB_TOLERANCE or hi > 1 + PROB_TOLERANCE or worst > PROB_TOLERANCE:
        raise ModelError(f"the model's probabilities stopped being probabilities (values {lo:.4g}..{hi:.4g}, "
                         f"a row summing to {float(sums[np.argmax(np.abs(sums - 1.0))]):.4g}): its scores cannot "
                         f"be trusted")
