"""Baselines with the call shape of :func:`bbx.explain`: occlusion and a random mask.

* :func:`occlusion` blurs one patch of a grid at a time (14x14 patches of 16 px on a 224 input)
  and maps how much each blurred patch raises the target: the simplest query-only answer to
  "which pixels hurt this class", one query per patch. If bbx's optimised masks cannot beat
  it at equal area, the optimisation is not earning its queries.
* :func:`random_baseline` is a random mask at the methods' own resolution: the floor any
  explanation must clear.

Both return the same :class:`~bbx.explanation.Explanation` with honest ``queries`` counts, so
``bbx evaluate`` treats every method alike.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from .explain import open_inputs, score_image
from .explanation import Explanation
from .insertion import hard_blur
from .metrics import THRESHOLD
from .model import OnnxClassifier
from .perturb import BlurSpec, Perturber


def occlusion(
    model: OnnxClassifier | str | Path,
    image: str | Path | np.ndarray,
    target: int | str | None = None,
    *,
    patch: int = 16,
    sigma: float = 5.0,
    kernel: int = 11,
) -> Explanation:
    """Blur each patch of a ``ceil(H/patch) x ceil(W/patch)`` grid alone; heatmap = target gain.

    The grid cells split the input evenly (exactly ``patch`` px when it divides the input
    size). The heatmap is the rise of the target probability when a cell is blurred, clipped
    at 0 and divided by its maximum; ``mask`` is ``1 - heatmap`` on the grid. The perturbed
    image blurs, hard, every pixel above :data:`THRESHOLD` (the cells that gain at least 60%
    as much as the best one): the operating point sits at ``undesirable_ratio`` like the
    other methods'. Queries: 1 (the image) + one per cell + 1 (the perturbed image).
    """
    if patch < 1:
        raise ValueError(f"patch must be at least 1 pixel, not {patch}")
    model, x, source = open_inputs(model, image)
    started, queries_before = time.perf_counter(), model.queries
    h, w = x.shape[:2]
    grid = (math.ceil(h / patch), math.ceil(w / patch))
    pert = Perturber(x, grid, BlurSpec(sigma, kernel))
    p0, _, k = score_image(model, x, target)

    cells = cell_map((h, w), grid)
    gains = np.clip(cell_gains(model, pert, cells, k, float(p0[k])), 0.0, None)
    top = gains.max()
    cell_heat = gains / top if top > 0 else gains
    heatmap = cell_heat[cells].astype(np.float32)
    perturbed = hard_blur(pert, heatmap > THRESHOLD)
    config = {"method": "occlusion", "patch": patch, "grid": list(grid), "sigma": sigma, "kernel": kernel}
    return _result(model, x, source, k, p0, perturbed, 1.0 - cell_heat.reshape(grid), heatmap,
                   queries_before, started, config)


def random_baseline(
    model: OnnxClassifier | str | Path,
    image: str | Path | np.ndarray,
    target: int | str | None = None,
    *,
    seed: int = 0,
    mask_size: int = 28,
    sigma: float = 5.0,
    kernel: int = 11,
) -> Explanation:
    """A uniform random ``mask_size``-square mask, stretched to span [0, 1], used like a learned one.

    Same resolution, bilinear upsampling and soft operator Q(X; M') as :func:`bbx.explain`,
    so its top-a% regions are blobs of the methods' own scale. Queries: 2 (image, perturbed).
    """
    model, x, source = open_inputs(model, image)
    started, queries_before = time.perf_counter(), model.queries
    noise = np.random.default_rng(seed).random((mask_size, mask_size))
    span = noise.max() - noise.min()
    mask = 1.0 - (noise - noise.min()) / (span if span > 0 else 1.0)
    pert = Perturber(x, mask.shape, BlurSpec(sigma, kernel))
    p0, _, k = score_image(model, x, target)
    perturbed = pert(mask.astype(np.float32))
    heatmap = 1.0 - pert.upsample(mask.astype(np.float32))
    config = {"method": "random", "seed": seed, "mask_size": mask_size, "sigma": sigma, "kernel": kernel}
    return _result(model, x, source, k, p0, perturbed, mask, heatmap, queries_before, started, config)


def cell_gains(model: OnnxClassifier, pert: Perturber, cells: np.ndarray, k: int, base: float) -> np.ndarray:
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


def _result(model: OnnxClassifier, x: np.ndarray, source: str, k: int, p0: np.ndarray, perturbed: np.ndarray,
            mask: np.ndarray, heatmap: np.ndarray, queries_before: int, started: float,
            config: dict[str, Any]) -> Explanation:
    """Score the perturbed image (one query) and fill the Explanation as :func:`bbx.explain` does."""
    p1 = model.scores(perturbed[None]).probs[0]
    return Explanation.build(
        model, image=x, source=source, mask=mask, heatmap=heatmap, perturbed=perturbed, target=k,
        probs_before=p0, probs_after=p1, queries=model.queries - queries_before,
        seconds=time.perf_counter() - started, config=config,
    )
