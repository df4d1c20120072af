"""Many explanations in flight on one model: their probes scored in shared batches.

A model on a GPU runs a batch of 256 in about the time of a batch of 32, and one explanation
step sends only ``2 P`` probes (16 with the defaults) with NES or SPSA, at most
``max_active + trials`` (52) in a step of the active estimator. :func:`explain_many` keeps up to
``k`` explanations of a method with a stepper (the soft masks: :class:`~bbx.methods.soft_mask.SoftMaskRun`
for nes and spsa, :class:`~bbx.methods.active_run.ActiveRun` for active) in flight: every round,
each in-flight run hands out the probes it wants scored next, all of them go to the model together
(in calls of equal size at most the model's batch ceiling), and each run gets back the scores of
its own probes. Runs need not ask for as many: an active run's first request is one probe (the
image at M = 1), then a screen of up to one per mask element, then its steps. Each keeps its own
optimiser, seed, direction stream, budget and query count (:class:`Tally`), so its numbers are
those of running alone; on the CPU, bit for bit (tests check it). Other methods run one at a time,
in order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Iterator, Sequence

import numpy as np

from .. import methods as registry
from ..maths.active import ActiveSet
from ..config import ExplainConfig
from ..errors import OptionError
from ..explain import explain, resolve
from ..result.explanation import Explanation
from ..methods import Context, Progress
from ..methods.soft_run import Run
from .lockstep_graph import DeviceImages
from ..model import BlackBox, Classifier, Scores, pad_batch


class Tally(Classifier):
    """A shared model as one explanation sees it: the same black box, counting only its own queries.

    Its own calls (scoring X, the final Q) are counted by what they add to the shared model's
    count (one caller at a time); a shared batch is counted on the model once and charged to
    each explanation for its own probes (:meth:`charge`). It offers no graph to run beside the
    model (:meth:`onnx`): such a graph would count on the shared model, not here.
    """

    def __init__(self, model: BlackBox):
        self.shared = model
        self.name, self.device, self.max_batch = model.name, model.device, model.max_batch
        self.input, self.output, self.reveals = model.input, model.output, model.reveals
        self.spec, self.spec_sources = model.spec, model.spec_sources
        self.labels, self.labels_source = model.labels, model.labels_source
        self.queries = 0

    @property
    def revealed(self) -> int:
        return self.shared.revealed

    @property
    def traffic(self) -> dict[str, int] | None:
        return self.shared.traffic

    def identity(self) -> dict[str, Any]:
        return self.shared.identity()

    def describe(self) -> dict[str, Any]:
        return self.shared.describe()

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return self.shared.prepare(rgb)

    def batches(self, n: int) -> tuple[list[slice], int]:
        return self.shared.batches(n)

    def cap_answers(self, images: int) -> None:
        self.shared.cap_answers(images)

    def scores(self, images: np.ndarray, real: int | None = None) -> Scores:
        return self._counted(self.shared.scores, images, real)

    def score_tensor(self, x: np.ndarray, real: int | None = None) -> Scores:
        return self._counted(self.shared.score_tensor, x, real)

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        raise TypeError("a tally scores through its shared model (scores, score_tensor), never a raw batch")

    def charge(self, n: int) -> None:
        """``n`` of this explanation's probes were scored in a shared batch (and counted there)."""
        self.queries += n

    def _counted(self, call: Callable[..., Scores], *args: Any) -> Scores:
        before = self.shared.queries
        out = call(*args)
        self.queries += self.shared.queries - before
        return out


@dataclass(frozen=True)
class Flight:
    """One explanation in flight: its request's key, its run and the tally of its queries."""

    key: Hashable
    run: Run
    tally: Tally


class SharedBatches:
    """Scores every in-flight run's step in shared calls: the images built on the host in the
    model's input format (:meth:`~bbx.query.masks.MaskQuery.model_input`, concatenated), or, for an ONNX
    model on CUDA, on the device from the masks (:mod:`bbx.evaluation.lockstep_graph`).

    ``where``: ``auto`` (the device for a float-input ONNX model on CUDA, else the host),
    ``host`` or ``device``.
    """

    def __init__(self, model: BlackBox, where: str = "auto"):
        if where not in ("auto", "host", "device"):
            raise OptionError(f"shared batches are built on the host or the device, not {where!r}")
        floating = np.dtype(model.input.dtype).kind == "f"
        backend = model.onnx() if floating else None
        if where == "device" and backend is None:
            raise OptionError("probes are built on the device for a float-input ONNX model only")
        if where == "auto":
            where = "device" if backend is not None and backend.device == "cuda" else "host"
        self.model, self.where = model, where
        self._device = DeviceImages(backend) if where == "device" else None
        self._last: list[Any] = []  # the runs of the last round (held: their identities are not reused)

    def step(self, flights: Sequence[Flight]) -> None:
        """One step of every run: their probes scored together, each run fed its own scores and
        charged its own queries."""
        runs = [f.run for f in flights]
        probes = [run.probes() for run in runs]
        if self._device is None:
            scores = self._on_host(runs, probes)
        else:
            changed = len(runs) != len(self._last) or any(a is not b for a, b in zip(runs, self._last))
            self._last = list(runs)
            scores = self._device.score([run.query.parts for run in runs], probes, changed)
        start = 0
        for flight, p in zip(flights, probes):
            n, run = len(p), flight.run
            flight.tally.charge(n)
            run.shared_images = self.where
            run.feed(Scores(scores.raw[start: start + n], scores.kind))
            start += n

    def _on_host(self, runs: Sequence[Run], probes: Sequence[np.ndarray]) -> Scores:
        """The probes' scores, their images built one model call at a time: a round of screens
        (hundreds of probes per run) never holds more than one call's images."""
        starts = np.cumsum([0, *(len(p) for p in probes)])
        chunks, size = self.model.batches(int(starts[-1]))
        out = []
        for part in chunks:
            x = np.concatenate([run.query.model_input(p[max(part.start, a) - a: min(part.stop, b) - a])
                                for run, p, a, b in zip(runs, probes, starts[:-1], starts[1:])
                                if a < part.stop and b > part.start])
            out.append(self.model.score_tensor(pad_batch(x, size), real=len(x)))
        return Scores.concat(out)


def lockstep_width(model: BlackBox, config: ExplainConfig) -> int:
    """How many soft-mask explanations fill the model's batch ceiling, at least 1.

    NES and SPSA: ``max_batch // (2 P)``, every step's probes in one call. Active: a step sends the
    probes of its active set and ``trials`` lengths, at most ``max_active + trials`` (52), fewer
    while the set is small; a screen sends hundreds. ``ceil(max_batch / 52)`` (2 on the CPU's 64,
    5 on CUDA's 256): the fewest runs whose steps fill a call when every set is full. Erring above
    costs a round over the ceiling one more call of equal halves (:meth:`~bbx.model.protocol.Classifier.batches`);
    erring below leaves the device idle on every step of a small set.
    """
    if config.estimator == "active":
        s = ActiveSet()
        step = (2 if s.central else 1) * s.max_active + s.trials
        return max(1, -(-model.max_batch // step))
    _, pairs = config.plan()
    return max(1, model.max_batch // (2 * pairs))


def default_width(model: BlackBox, config: ExplainConfig) -> int:
    """K when none is given: 1 on the CPU, else :func:`lockstep_width`.

    On the CPU an image costs no less in a call of 64 than in one of 16, and the shared rounds add
    host work, so explanations in lockstep ran slower there than one at a time (docs/scale.md);
    on CUDA a call of 256 costs little more than one of 16 (and an endpoint is sent fewer, larger
    requests; not measured): there K fills the batch ceiling.
    """
    return 1 if model.device == "cpu" else lockstep_width(model, config)


#: one explanation to make: (key, method, image, config); the key comes back with its result
Request = tuple[Hashable, str, Any, ExplainConfig]


def explain_many(model: BlackBox, requests: Iterable[Request], k: int,
                 progress: Callable[[Hashable], Progress | None] | None = None,
                 where: str = "auto") -> Iterator[tuple[Hashable, Explanation]]:
    """Every request's explanation, each yielded as it finishes: up to ``k`` with a stepper in
    lockstep, the others one at a time. ``progress(key)``: that request's step reporter;
    ``where``: where shared batches' images are built (:class:`SharedBatches`)."""
    if k < 1:
        raise OptionError(f"lockstep needs at least 1 explanation in flight, not {k}")
    shared = SharedBatches(model, where) if k > 1 else None
    queue = deque(requests)
    flight: list[Flight] = []
    while queue or flight:
        while queue and len(flight) < k:
            key, method, image, cfg = queue.popleft()
            spec = registry.get(method)
            report = progress(key) if progress is not None else None
            if k == 1 or spec.stepper is None or not spec.stepper.accepts(cfg):  # alone, on its own query path
                yield key, explain(model, image, config=cfg, method=spec.name, progress=report)
                continue
            cfg = resolve(spec.name, cfg, {})
            tally = Tally(model)
            run = spec.stepper(Context(tally, image, None, spec.name, cfg.budget, report), cfg)
            if run.done:  # no step to take (a budget that allows none)
                yield key, run.finish()
            else:
                flight.append(Flight(key, run, tally))
        if not flight:
            continue
        shared.step(flight)
        for done in [f for f in flight if f.run.done]:
            yield done.key, done.run.finish()
        flight = [f for f in flight if not f.run.done]
