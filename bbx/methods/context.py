"""What every method does before and after its own work, written once.

Before: open the model (from a path if need be), bring the image to the model's view, start the
clock and the query count. On first use: score the image (one counted query) and settle the
target. After: score the perturbed image (unless the method measured it already), build the
:class:`~bbx.result.explanation.Explanation` with the queries and seconds spent.
"""

from __future__ import annotations

import logging
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import preprocess as pp
from ..errors import ModelError, OptionError
from ..result.explanation import Explanation
from ..preprocess.image import load_rgb
from ..model import BlackBox, open_model
from ..result.provenance import record

#: bbx's logger: INFO one line per explanation, WARNING its notes (found nothing ...), DEBUG each step
log = logging.getLogger("bbx")

Progress = Callable[[int, int, float], None]  # (step, total steps, loss)


class Context:
    """One explanation in progress: its model, image, target, clock, query count and budget."""

    def __init__(self, model: BlackBox | str | Path, image: str | Path | np.ndarray,
                 target: int | str | None, method: str, budget: int | None,
                 progress: Progress | None = None):
        self.model: BlackBox = open_model(model)
        self.source = str(image) if isinstance(image, (str, Path)) else "<array>"
        self.photo = load_rgb(image) if isinstance(image, (str, Path)) else _photo(image)
        self.image = model_view(self.model, image if self.photo is None else self.photo)
        self.method = method
        self.budget = budget
        self.progress = progress
        self._target = target
        self.started = time.perf_counter()
        self.queries_before = self.model.queries

    @cached_property
    def _scored(self) -> tuple[np.ndarray, np.ndarray, int]:
        s0 = self.model.scores(self.image[None])
        p0 = s0.probs[0]
        k = int(np.argmax(p0)) if self._target is None else self.model.class_index(self._target)
        return p0, s0.logits[0], k

    @property
    def probs_before(self) -> np.ndarray:
        """The image's own probabilities (the first use costs one query)."""
        return self._scored[0]

    @property
    def logits_before(self) -> np.ndarray:
        return self._scored[1]

    @property
    def target(self) -> int:
        """The class explained: the one asked for (an index or a name), else the image's top-1."""
        return self._scored[2]

    @property
    def spent(self) -> int:
        """Queries this explanation has made so far."""
        return self.model.queries - self.queries_before

    def require(self, needed: int, why: str) -> None:
        """Refuse, before any query, a budget below what the method needs at least."""
        if self.budget is not None and self.budget < needed:
            raise OptionError(f"budget {self.budget} is too small for {self.method}: it needs {needed} queries ({why})")

    def report(self, step: int, total: int, loss: float) -> None:
        """One optimiser step done: to the ``progress`` callback and the ``bbx`` logger (DEBUG)."""
        log.debug("%s step %d/%d loss %.6f, %d queries", self.method, step, total, loss, self.spent)
        if self.progress is not None:
            self.progress(step, total, loss)

    def finish(self, *, mask: np.ndarray, heatmap: np.ndarray, perturbed: np.ndarray, config: dict[str, Any],
               probs_after: np.ndarray | None = None, loss_history: list[float] | None = None,
               convergence: dict[str, Any] | None = None) -> Explanation:
        """The result: ``probs_after`` is measured here (one query) unless the method did."""
        if not (np.isfinite(mask).all() and np.isfinite(heatmap).all()):
            raise ModelError(f"{self.method} produced a mask holding NaN or infinite values (the model's scores "
                             f"or the options drove the optimisation out of range); nothing was written")
        if probs_after is None:
            probs_after = self.model.scores(perturbed[None]).probs[0]
        e = Explanation.build(
            self.model, image=self.image, source=self.source, mask=mask, heatmap=heatmap, perturbed=perturbed,
            target=self.target, probs_before=self.probs_before, probs_after=probs_after, queries=self.spent,
            seconds=time.perf_counter() - self.started, loss_history=loss_history, config=config,
            photo=self.photo, provenance=record(self.model),
            geometry=None if self.photo is None else pp.geometry(self.photo.shape[:2], self.model.spec),
            convergence=convergence,
        )
        log.info("%s on %s: target %s %.4f -> %.4f, %d queries in %.1f s", self.method, self.source,
                 e.target_name, e.prob_before, e.prob_after, e.queries, e.seconds)
        for line in e.notes:
            log.warning("%s", line)
        return e


def _photo(image: np.ndarray) -> np.ndarray | None:
    """A uint8 (h, w, 3) array is a photo (resized per the model's spec); a float one is not."""
    arr = np.asarray(image)
    return arr if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3 else None


def model_view(model: BlackBox, image: str | Path | np.ndarray) -> np.ndarray:
    """The image as the model sees it: (H, W, 3) float32 in 0-1 at the model's input size."""
    if isinstance(image, (str, Path)):
        return model.prepare(load_rgb(image))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise OptionError(f"an image array must be (H, W, 3), not {arr.shape}")
    if arr.dtype == np.uint8:
        return model.prepare(arr)
    if arr.shape[:2] != model.input_size:
        raise OptionError(f"a float image must already be at the model's input size {model.input_size}")
    return np.clip(arr.astype(np.float32), 0.0, 1.0)
