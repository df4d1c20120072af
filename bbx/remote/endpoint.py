"""A classifier behind an Open Inference Protocol endpoint, as a black box like an ONNX file.

:class:`EndpointClassifier` reads the model's metadata (``GET /v2/models/NAME``), works out the
input's conventions from it as an ONNX file's are read from its graph, resolves the
preprocessing from its sources (flags, a spec file given with --spec, a preset matched by the
model's name, the endpoint's ``bbx.preprocess`` parameter), sends one real request to see what the
endpoint reveals, and from then on scores batches of images over HTTP. The rest of bbx's black-box
protocol comes from :class:`~bbx.model.protocol.Classifier`, as for a file.

What an endpoint reveals decides what can run (each method's ``needs`` in :mod:`bbx.methods`):

* ``scores``: every class's score (logits or probabilities): every method;
* ``topk``: the k best classes with their probabilities: greedy, occlusion and random, which read
  one class's probability; a class outside the top k gets the mass the k leave, spread evenly over
  the other classes (never more than the k-th), an estimate that is exact while it stays inside;
* ``label``: the top-1 class only: ``bbx predict``; no method of bbx runs on labels alone.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import preprocess as pp
from .._io import load_json
from ..errors import EndpointError, ModelError, OptionError, TooLargeError
from ..model.labels import read_labels_file, resolve_labels
from ..model import Classifier, OutputInfo, Scores
from ..model.protocol import PROB_TOLERANCE, check_probabilities
from ..model.conventions import _hint_rank, _kind, image_input
from . import oip
from .client import ClientConfig, Credentials
from .wire import open_wire

DEFAULT_MAX_BATCH = 32  # images per request unless the endpoint fixes a batch or --max-batch says
CACHE_ROWS = 8192  # answers kept so that a probe asked for again is not sent again


class EndpointClassifier(Classifier):
    """An image classifier behind ``http(s)://HOST:PORT/v2/models/NAME`` (JSON) or
    ``grpc(s)://HOST:PORT/NAME`` (raw tensors; :mod:`.wire`), queried only through
    :meth:`scores`; every image asked for counts in :attr:`queries` (answered from the cache or not),
    every image sent counts in ``traffic``."""

    device = "remote"

    def __init__(
        self,
        url: str,
        *,
        preprocess_overrides: dict[str, Any] | None = None,
        preset: str | None = None,
        spec_file: str | Path | None = None,
        output: str | None = None,
        labels: str | Path | Sequence[str] | None = None,
        max_batch: int | None = None,
        client: ClientConfig | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        if max_batch is not None and max_batch < 1:
            raise OptionError(f"max batch must be at least 1, not {max_batch}")
        self.wire = open_wire(url, client, credentials)
        self.url, self.client = self.wire.url, self.wire.client
        self.name = self.url.shown
        self.meta = self.wire.metadata()
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.meta.parameters.items()
                  if k in (pp.METADATA_KEY, pp.LABELS_KEY)}
        self.metadata = params
        name_as_file = Path(f"{self.url.model}.onnx")  # presets match the model's name as they match a file's
        side = pp.read_sidecar(name_as_file, spec_file) if spec_file is not None else {}
        self._input_meta = self._image_input()
        resolved = pp.resolve(name_as_file, params, cli=preprocess_overrides, preset=preset, spec_file=spec_file,
                              facts=pp.GraphFacts(input_dtype=oip.IMAGE_DATATYPES[self._input_meta.datatype]),
                              beside=False)
        dims = [d if d > 0 else None for d in self._input_meta.shape]
        self.input, resolved = image_input(self._input_meta.name, dims, oip.IMAGE_DATATYPES[self._input_meta.datatype],
                                           resolved)
        self.spec, self.spec_sources = resolved.spec, resolved.sources
        self.max_batch = self.input.batch or max_batch or DEFAULT_MAX_BATCH
        self._cache: OrderedDict[bytes, tuple[np.ndarray, ...]] = OrderedDict()
        explicit = None
        if labels is not None:
            explicit = read_labels_file(labels) if isinstance(labels, (str, Path)) else list(labels)
        self.queries = 0
        self.output, self.reveals, self._wanted = self._detect(output, explicit, side)
        self.labels, self.labels_source = resolve_labels(self.output.num_classes, explicit=explicit, sidecar=side,
                                                         metadata=params)
        self.queries = 0  # the detection request is traffic, not a query of the user's

    @property
    def traffic(self) -> dict[str, int]:
        return self.client.traffic.as_dict()

    @property
    def revealed(self) -> int:
        """How many classes an answer names: all of them, the top k, or 1 (the label)."""
        return self._revealed

    def cap_answers(self, images: int) -> None:
        self.client.cap_more(images)

    def identity(self) -> dict[str, Any]:
        """What pins the model for a resumed evaluation: its URL, and its metadata as the endpoint
        sent them (a change of weights behind the same metadata is not seen)."""
        text = json.dumps([self.name, self.meta.raw], sort_keys=True, default=str)
        return {"model": self.name, "model_sha256": hashlib.sha256(text.encode()).hexdigest()}

    def score_tensor(self, x: np.ndarray, real: int | None = None) -> Scores:
        """Score a batch in the model's input format; counts ``N`` (or ``real``: rows after it pad a
        local call to one shape and are never sent). Requests go out in parallel, an image asked
        for before is answered from the cache."""
        n = len(x) if real is None else real
        rows = self._answers(np.asarray(x)[:n])
        self.count(n)
        return self._to_scores(rows)

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        """The scores (or what the endpoint reveals, as probabilities) of one batch, counting nothing."""
        return self._to_scores(self._answers(np.asarray(x))).raw

    def describe(self) -> dict[str, Any]:
        """Everything ``bbx inspect`` reports (no credential: only the header's name)."""
        creds = self.client.credentials
        return {
            "providers": [f"endpoint ({self.meta.platform or 'platform not given'})"],
            "inputs": [_io(t) for t in self.meta.inputs],
            "outputs": [_io(t) for t in self.meta.outputs],
            **super().describe(),
            "reveals": self.reveals,
            "max_batch": self.max_batch,
            "auth_header": creds.header if creds is not None else None,
            "wire": self.wire.form,
            "traffic": self.traffic,
        }

    def close(self) -> None:
        self.client.close()

    # -- internals -------------------------------------------------------------------------
    def _image_input(self) -> oip.TensorMeta:
        inputs = self.meta.inputs
        if len(inputs) != 1:
            names = ", ".join(t.name for t in inputs) or "none"
            raise ModelError(f"not an image classifier: the endpoint's model has {len(inputs)} inputs ({names}); "
                             "bbx needs one image input")
        t = inputs[0]
        if t.datatype not in oip.IMAGE_DATATYPES:
            raise ModelError(f"input {t.name!r} has datatype {t.datatype}; bbx sends FP32, FP16 and UINT8 images")
        return t

    def _answers(self, x: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        """One answer per image of ``x``: from the cache, or from requests of at most
        :attr:`max_batch` new images (an image twice in ``x`` is sent once)."""
        keys = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x]
        missing: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._cache and key not in missing:
                missing[key] = i
        self.client.traffic.cached += len(keys) - len(missing)
        if missing:
            order = list(missing.items())
            chunks = [order[i:i + self.max_batch] for i in range(0, len(order), self.max_batch)]
            answers = self.client.map(lambda chunk: self._send(x[[i for _, i in chunk]]), chunks)
            for chunk, outs in zip(chunks, answers):
                for (key, _), row in zip(chunk, self._rows(outs, len(chunk))):
                    self._cache[key] = row
        out = []
        for key in keys:
            self._cache.move_to_end(key)
            out.append(self._cache[key])
        while len(self._cache) > max(CACHE_ROWS, len(keys)):
            self._cache.popitem(last=False)
        return out

    def _send(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One request, or, when the endpoint refuses it as too large (413), halves until it takes
        them, or splits it at once to the size its stated limit takes (gRPC's "larger than max (X vs.
        Y)"); later requests are no larger than what passed (the batch size is found, not guessed)."""
        try:
            return self.wire.infer(self._input_meta, x, self._wanted)
        except TooLargeError as exc:
            if len(x) == 1 or self.input.batch:
                raise
            size = (len(x) + 1) // 2 if exc.share is None else max(1, min(len(x) - 1, int(len(x) * exc.share)))
        self.max_batch = min(self.max_batch, size)
        return _join([self._send(x[start:start + size]) for start in range(0, len(x), size)], self.name)

    def _rows(self, outs: dict[str, np.ndarray], n: int) -> list[tuple[np.ndarray, ...]]:
        parts = []
        for name in self._wanted:
            if name not in outs:
                raise EndpointError(f"{self.name} answered without output {name!r} (it sent: {', '.join(outs) or 'none'})")
            a = _squeeze(outs[name])
            if a.ndim == 0 or a.shape[0] != n:
                raise EndpointError(f"{self.name} answered output {name!r} of shape {list(outs[name].shape)} "
                                    f"for {n} images")
            parts.append(a)
        expected = {"scores": (self.num_classes,), "topk": (self.revealed,), "label": ()}[self.reveals]
        if any(p.shape[1:] != expected for p in parts):
            shapes = ", ".join(str(list(p.shape)) for p in parts)
            raise EndpointError(f"{self.name} answered a wrong shape ({shapes}) for {n} images; "
                                f"expected [{n}{''.join(f', {d}' for d in expected)}]")
        self._check_answer(parts)
        return [tuple(p[i] for p in parts) for i in range(n)]

    def _check_answer(self, parts: list[np.ndarray]) -> None:
        """Every answer, not only the first: finite scores, and probabilities that are probabilities
        (a later answer with a negative one would otherwise become a wrong figure, exit 0)."""
        if self.reveals == "label":
            return
        values = parts[0]
        if values.dtype.kind not in "fiu" or not np.isfinite(values.astype(np.float64)).all():
            raise EndpointError(f"{self.name} answered NaN, infinite or non-numeric scores in {self._wanted[0]!r}")
        if self.reveals == "topk":
            sums = values.sum(axis=1, dtype=np.float64)
            if values.min() < -PROB_TOLERANCE or values.max() > 1 + PROB_TOLERANCE or sums.max() > 1 + PROB_TOLERANCE:
                raise EndpointError(f"{self.name} answered top-{self.revealed} values that are not probabilities "
                                    f"(values {float(values.min()):.4g}..{float(values.max()):.4g}, a row summing "
                                    f"to {float(sums.max()):.4g})")
        elif self.output.kind == "probabilities":
            try:
                check_probabilities(values.astype(np.float64))
            except ModelError as exc:
                raise EndpointError(f"{self.name} answered {str(exc).replace('the model', 'its', 1)}") from None

    def _to_scores(self, rows: list[tuple[np.ndarray, ...]]) -> Scores:
        if self.reveals == "scores":
            raw = np.stack([r[0] for r in rows]).astype(np.float32, copy=False)
            if not np.isfinite(raw).all():
                raise EndpointError(f"{self.name} answered NaN or infinite scores")
            return Scores(raw, self.output.kind)
        if self.reveals == "topk":
            return Scores(_topk_probs(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]),
                                      self.num_classes), "probabilities")
        probs = np.full((len(rows), self.num_classes), 1e-6)
        probs[np.arange(len(rows)), [self._label_index(r[0]) for r in rows]] = 1.0
        return Scores(probs / probs.sum(axis=1, keepdims=True), "probabilities")

    def _label_index(self, value: Any) -> int:
        if isinstance(value, (bytes, str)):
            name = value.decode() if isinstance(value, bytes) else value
            if name not in self.labels:
                raise EndpointError(f"{self.name} answered label {name[:60]!r}, which is not among the labels")
            return self.labels.index(name)
        k = int(value)
        if not 0 <= k < self.num_classes:
            raise EndpointError(f"{self.name} answered class {k}, outside 0..{self.num_classes - 1}")
        return k

    def _detect(self, wanted: str | None, explicit: Sequence[str] | None,
                side: dict[str, Any]) -> tuple[OutputInfo, str, list[str]]:
        """Which outputs hold the answer and what they reveal, from one real request of a grey
        image and a random one (or the endpoint's fixed batch)."""
        names = [t.name for t in self.meta.outputs]
        if wanted is not None and wanted not in names:
            raise OptionError(f"no output named {wanted!r}; the endpoint's outputs: {', '.join(names)}")
        h, w = self.input_size
        n = self.input.batch or 2
        rng = np.random.default_rng(0)
        probe = np.concatenate([np.full((1, h, w, 3), 0.5, np.float32),
                                rng.random((max(n - 1, 0), h, w, 3), dtype=np.float32)])[:n]
        x = pp.to_model_input(probe, self.spec, np.dtype(self.input.dtype))
        outs = {k: _squeeze(v) for k, v in self.wire.infer(self._input_meta, x, names).items()}
        rows = {k: v for k, v in outs.items() if v.ndim >= 1 and v.shape[0] == n}
        floats = [k for k, v in rows.items() if v.dtype.kind == "f" and v.ndim == 2 and v.shape[1] >= 2]
        ints = [k for k, v in rows.items() if v.dtype.kind in "iu"]
        if wanted is not None:
            floats = [k for k in floats if k == wanted]
        for f in floats:  # k probabilities beside k class indices: a top-k endpoint
            pair = next((i for i in ints if rows[i].shape == rows[f].shape), None)
            if pair is not None:
                self._revealed = rows[f].shape[1]
                classes = self._class_count(explicit, side, "the top-k classes")
                if not (rows[f] >= 0).all() or not (rows[f].sum(axis=1) <= 1 + 1e-3).all():
                    raise ModelError(f"the endpoint's top-{self.revealed} values in {f!r} are not probabilities")
                return OutputInfo(f, classes, "probabilities", classes == 1001), "topk", [f, pair]
        if floats:
            floats.sort(key=lambda c: (_kind(rows[c].astype(np.float64)) != "logits", _hint_rank(c)))
            f = floats[0]
            if not np.isfinite(rows[f]).all():
                raise ModelError("the endpoint returned NaN or infinite scores on a plain grey image")
            c = rows[f].shape[1]
            self._revealed = c
            return OutputInfo(f, c, _kind(rows[f].astype(np.float64)), c == 1001), "scores", [f]
        labels = [k for k, v in rows.items() if v.ndim == 1 and (v.dtype.kind in "iu" or v.dtype == object)
                  and (wanted is None or k == wanted)]
        if labels:
            classes = self._class_count(explicit, side, "only labels")
            self._revealed = 1
            return OutputInfo(labels[0], classes, "probabilities", classes == 1001), "label", [labels[0]]
        desc = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in outs.items())
        raise ModelError(f"not an image classifier: no output of class scores, top-k classes or labels "
                         f"for a batch of {n} (outputs: {desc})")

    def _class_count(self, explicit: Sequence[str] | None, side: dict[str, Any], what: str) -> int:
        """How many classes a model has that does not say (it reveals only some): its labels tell."""
        for names in (explicit, side.get("labels"), self.metadata.get(pp.LABELS_KEY)):
            if names:
                return len(load_json(names) if isinstance(names, str) else names)
        raise OptionError(f"the endpoint reveals {what}, not how many classes it has: give the class names "
                          "with --labels (or \"labels\" in the --spec file)")


def _topk_probs(values: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, C) probabilities from the top k: the k known, the mass they leave spread evenly over the
    other classes and never above the k-th (module docstring)."""
    n, k = values.shape
    if (classes < 0).any() or (classes >= num_classes).any():
        raise EndpointError(f"the endpoint answered a class index outside 0..{num_classes - 1}")
    values = values.astype(np.float64)
    left = np.clip(1.0 - values.sum(axis=1), 0.0, None) / max(num_classes - k, 1)
    rest = np.minimum(left, values.min(axis=1))
    probs = np.repeat(rest[:, None], num_classes, axis=1)
    np.put_along_axis(probs, classes.astype(np.int64), values, axis=1)
    return probs


def _join(answers: list[dict[str, np.ndarray]], where: str) -> dict[str, np.ndarray]:
    """The answers to the parts of one request as one: each output's rows, part after part."""
    try:
        return {name: np.concatenate([a[name] for a in answers]) for name in answers[0]}
    except (KeyError, ValueError) as exc:
        raise EndpointError(f"{where} answered two halves of a request differently ({type(exc).__name__})") from None


def _squeeze(a: np.ndarray) -> np.ndarray:
    while a.ndim > 1 and a.shape[-1] == 1:
        a = a[..., 0]
    return a


def _io(t: oip.TensorMeta) -> dict[str, Any]:
    return {"name": t.name, "shape": [d if d >= 0 else "?" for d in t.shape], "type": t.datatype}
