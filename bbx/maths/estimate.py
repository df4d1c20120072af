"""Black-box gradient estimates of the model's part of the loss.

Antithetic finite differences along random directions u_j:

    g = 1/(2 c P) * sum_j (L(M + c u_j) - L(M - c u_j)) u_j

with Gaussian u (NES) or +-1 u (SPSA). All 2P perturbed masks of a step are scored in one
batch. Directions may be drawn on a coarser grid and upsampled (``resolution`` < mask size):
fewer unknowns, less variance, at the price of estimating a smoothed gradient. Scaled by
``resolution / mask size`` so that E[u u^T] g stays close to g for smooth g.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from ..defaults import ESTIMATOR, PAIRS, PROBE_STEP
from ..errors import OptionError
from .perturb import upsample

ESTIMATORS = ("nes", "spsa")
T = TypeVar("T")

LossFn = Callable[[np.ndarray], np.ndarray]  # (B, h, w) masks -> (B,) losses, one query each
#: (mask (h, w), offsets (P, h, w)) -> the 2P losses of mask + offsets then mask - offsets, for a
#: model side that forms the probes itself (bbx.query.masks's front graph, on the GPU)
PairsLossFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Estimator:
    kind: str = ESTIMATOR
    pairs: int = PAIRS
    step: float = PROBE_STEP  # c: finite-difference step in mask units
    resolution: int | None = None  # direction grid side; None = the mask's own
    #: the probes' dtype. float32 where the loss reads float32 anyway (the model's side, bbx.query.masks):
    #: summed in float64 and rounded once, the same numbers as a float64 array cast later, without
    #: that second pass over 2P masks per step
    dtype: str = "float64"

    def directions(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        r = self.resolution or shape[0]
        rc = self.resolution or shape[1]
        if self.kind == "nes":
            v = rng.standard_normal((self.pairs, r, rc))
        elif self.kind == "spsa":
            v = rng.integers(0, 2, size=(self.pairs, r, rc)) * 2.0 - 1.0
        else:
            raise OptionError(f"unknown estimator {self.kind!r}: one of {', '.join(ESTIMATORS)}")
        if (r, rc) == tuple(shape):
            return v
        return upsample(v, shape).astype(np.float64) * np.sqrt(r * rc / (shape[0] * shape[1]))

    def draw(self, rng: np.random.Generator, shape: tuple[int, int]) -> "Draw":
        """One step's directions with their offsets, as :meth:`stream` makes them ahead of the step."""
        u = self.directions(rng, shape)
        return Draw(u, self._offsets(u))

    def _offsets(self, u: np.ndarray) -> np.ndarray:
        return np.multiply(u, self.step, dtype=self.dtype)

    def estimate(self, loss: LossFn, mask: np.ndarray, rng: np.random.Generator | None = None,
                 u: "np.ndarray | Draw | None" = None, pairs_loss: PairsLossFn | None = None) -> tuple[np.ndarray, float]:
        """Gradient estimate at ``mask`` and the mean loss over the probes (≈ L(mask)); 2P queries.

        ``u``: this step's directions when drawn ahead (a :class:`Draw` from :meth:`stream`, or the
        bare array), else drawn from ``rng``. ``pairs_loss``: used instead of ``loss`` where the
        model's side forms the probes from the mask and the offsets c u in the probes' dtype (half
        the bytes of 2P masks, no pass over them here).
        """
        drawn = u if isinstance(u, Draw) else None
        if drawn is not None:
            u = drawn.u
        elif u is None:
            u = self.directions(rng, mask.shape)
        if pairs_loss is not None:
            values = pairs_loss(mask, drawn.offsets if drawn is not None else self._offsets(u))
        else:
            values = loss(self.probes(mask, u))
        return self.gradient(values, u)

    def probes(self, mask: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The step's ``2P`` probes: ``mask + c u`` then ``mask - c u``, in the probes' dtype."""
        cu = self.step * u
        probes = np.empty((2 * self.pairs, *mask.shape), dtype=self.dtype)
        np.add(mask, cu, out=probes[: self.pairs], casting="same_kind")
        np.subtract(mask, cu, out=probes[self.pairs:], casting="same_kind")
        return probes

    def gradient(self, values: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, float]:
        """The estimate from the probes' ``2P`` losses (in :meth:`probes`' order) and the mean loss."""
        diff = values[: self.pairs] - values[self.pairs:]
        grad = np.einsum("p,pij->ij", diff, u) / (2.0 * self.step * self.pairs)  # no BLAS: see perturb.upsample
        return grad, float(values.mean())

    def stream(self, rng: np.random.Generator, shape: tuple[int, int], steps: int) -> "DirectionStream":
        """The draws of ``steps`` steps in turn, the first drawn from now on: see :class:`DirectionStream`."""
        return DirectionStream(functools.partial(self.draw, rng, shape), steps)


@dataclass(frozen=True)
class Draw:
    """One step's directions ``u`` (float64) and the offsets ``c u`` in the probes' dtype, made
    together on the worker: the multiply is off the step's path too."""

    u: np.ndarray
    offsets: np.ndarray


class DirectionStream:
    """Each step's directions (a :class:`Draw`) made one step ahead on a worker thread, iterated in order.

    Drawing 2P x 784 normals is host work that would otherwise sit between two device batches;
    the worker overlaps it with the step before (NumPy's generators and onnxruntime's run both
    release the GIL), and the first draw with whatever the caller sets up meanwhile (the blur,
    scoring X). One worker draws in order, so the numbers are those of drawing each step in turn.
    The worker is shared and stays: a thread per explanation costs more than a step's host work
    (docs/gpu.md has the figures).
    """

    def __init__(self, draw: Callable[[], Any], steps: int):
        self._draw, self._left = draw, steps
        self._ahead: Future | None = background(draw) if steps > 0 else None

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._ahead is None:
            raise StopIteration
        drawn = self._ahead.result()
        self._left -= 1
        self._ahead = background(self._draw) if self._left > 0 else None
        return drawn


_WORKERS: dict[int, ThreadPoolExecutor] = {}


def _worker() -> ThreadPoolExecutor:
    """The process's worker, made on first use; keyed by process id, since a forked child inherits
    the executor but not its thread, and work queued there would never run."""
    pid = os.getpid()
    if pid not in _WORKERS:
        _WORKERS.clear()
        _WORKERS[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bbx-worker")
    return _WORKERS[pid]


def background(fn: Callable[..., T], *args: Any) -> "Future[T]":
    """``fn(*args)`` on bbx's one worker thread, after what was queued before: host work of an
    explanation step that does not wait for the model's answer (the directions, R_M) runs while
    the model does."""
    return _worker().submit(fn, *args)
