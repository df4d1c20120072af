"""Grid cells of an image, what blurring each alone does, and a pixel map averaged per cell: shared by
occlusion, greedy and the methods built on its search."""

from __future__ import annotations

import numpy as np

from ..evaluation.insertion import hard_blur
from ..model import BlackBox
from ..maths.perturb import Perturber


def cell_gains(model: BlackBox, pert: Perturber, cells: np.ndarray, k: int, base: float) -> np.ndarray:
    """Rise of class ``k``'s probability over ``base`` when each cell of ``cells`` alone is blurred, hard.

    ``cells`` is an ``(H, W)`` map of cell indices (:func:`cell_map`); one query per cell, sent in
    batches of the model's largest batch.
    """
    n = int(cells.max()) + 1
    gains = np.empty(n, dtype=np.float64)
    for part in model.batches(n)[0]:  # one batch of blurred copies at a time
        ids = np.arange(part.start, part.stop)
        gains[ids] = model.scores(hard_blur(pert, cells[None] == ids[:, None, None])).probs[:, k] - base
    return gains


def cell_map(size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` index of the grid cell each pixel falls in (row-major), cells split evenly."""
    rows = np.arange(size[0]) * grid[0] // size[0]
    cols = np.arange(size[1]) * grid[1] // size[1]
    return rows[:, None] * grid[1] + cols[None, :]


def fine_prior(fine: np.ndarray, pixel_gain: np.ndarray) -> np.ndarray:
    """A per-pixel gain averaged over each cell of ``fine`` (:func:`.cells.cell_map`)."""
    n = int(fine.max()) + 1
    px = np.bincount(fine.ravel(), minlength=n).astype(np.float64)
    return np.bincount(fine.ravel(), weights=pixel_gain.ravel(), minlength=n) / px
