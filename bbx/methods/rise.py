"""``rise``: RISE (Petsiuk, Das & Saenko, BMVC 2018) with bbx's blur as the perturbation.

RISE scores the target class on ``N`` images, each keeping the pixels of a random smooth mask
and blurring the rest, and weighs each mask by the target probability it gave:

    S(x) = sum_i f_k(Q(X; M_i)) M_i(x) / (N p)

M_i: a ``grid`` x ``grid`` binary grid (each cell kept with probability ``keep`` = p), upsampled
bilinearly to a grid one cell larger and cropped at a random offset (so the cells need not sit
on a fixed grid). Here everything is at the learned methods' mask resolution (28 x 28, upsampled
bilinearly to the input like theirs), and Q is bbx's operator: X where M = 1, h(X) (Gaussian blur)
where M = 0.

Undesirable pixels are those whose presence lowers the target: S(x) below the mean score
f̄ = mean_i f_k(Q(X; M_i)) (what S would be if keeping x made no difference). The heatmap is
(f̄ - S) / (f̄ - min S), clipped at 0: 1 where keeping the pixel hurts most, 0 where it does not
hurt. As for occlusion, the perturbed image blurs, hard, every pixel above 0.6.
Queries: 1 (the image) + N + 1 (the perturbed image) = ``budget``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import OptionError
from ..explain import open_inputs, score_image
from ..explanation import Explanation
from ..insertion import hard_blur
from ..metrics import THRESHOLD
from ..model import OnnxClassifier
from ..objective import Objective
from ..perturb import BlurSpec, Perturber, upsample
from ..query import MaskQuery

DEFAULT_BUDGET = 2000
Progress = Callable[[int, int, float], None]  # (masks scored, masks in all, mean target probability so far)


def rise(
    model: OnnxClassifier | str | Path,
    image: str | Path | np.ndarray,
    target: int | str | None = None,
    *,
    budget: int | None = None,
    seed: int = 0,
    sigma: float = 5.0,
    kernel: int = 11,
    progress: Progress | None = None,
    grid: int = 7,
    keep: float = 0.5,
    mask_size: int = 28,
) -> Explanation:
    """RISE saliency of ``target`` (default: top-1) from ``budget - 2`` random masks (default 2,000 queries)."""
    budget = DEFAULT_BUDGET if budget is None else int(budget)
    if budget < 3:
        raise OptionError(f"budget {budget} is too small: RISE needs the image, one mask and the result (3 queries)")
    if not 0 < keep < 1:
        raise OptionError(f"keep must be a probability in (0, 1), not {keep}")
    if not 1 <= grid <= mask_size:
        raise OptionError(f"grid must be in 1..{mask_size}, not {grid}")
    model, x, source = open_inputs(model, image)
    started, queries_before = time.perf_counter(), model.queries
    shape = (mask_size, mask_size)
    pert = Perturber(x, shape, BlurSpec(sigma, kernel))
    p0, z0, k = score_image(model, x, target)
    query = MaskQuery(model, pert, target=k)
    plain = Objective("plain")  # its model loss is -f_k

    n = budget - 2
    masks = random_masks(np.random.default_rng(seed), n, grid, keep, mask_size)
    probs = np.empty(n)
    chunk = max(1, model.max_batch) * 4
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        probs[start:stop] = -plain.model_loss(query(masks[start:stop]), k, z0)
        if progress is not None:
            progress(stop, n, float(probs[:stop].mean()))
    saliency = np.einsum("n,nij->ij", probs, masks) / (n * keep)
    mean = float(probs.mean())
    low = mean - float(saliency.min())
    heat = np.clip((mean - saliency) / low, 0.0, None) if low > 0 else np.zeros(shape)
    mask = 1.0 - heat
    heatmap = 1.0 - pert.upsample(mask.astype(np.float32))
    perturbed = hard_blur(pert, heatmap > THRESHOLD)
    p1 = model.scores(perturbed[None]).probs[0]
    config = {"method": "rise", "budget": budget, "masks": n, "grid": grid, "keep": keep, "mask_size": mask_size,
              "seed": seed, "sigma": sigma, "kernel": kernel}
    return Explanation.build(
        model, image=x, source=source, mask=mask, heatmap=heatmap, perturbed=perturbed, target=k,
        probs_before=p0, probs_after=p1, queries=model.queries - queries_before,
        seconds=time.perf_counter() - started, config=config,
    )


def random_masks(rng: np.random.Generator, n: int, grid: int, keep: float, size: int) -> np.ndarray:
    """``n`` RISE masks ``(n, size, size)`` in [0, 1]: binary ``grid`` x ``grid`` grids, bilinear to
    ``(grid + 1) * cell`` and cropped at a random offset in ``[0, cell)``, ``cell = ceil(size / grid)``."""
    cell = -(-size // grid)
    binary = (rng.random((n, grid, grid)) < keep).astype(np.float32)
    big = upsample(binary, ((grid + 1) * cell, (grid + 1) * cell))
    dy, dx = rng.integers(0, cell, size=n), rng.integers(0, cell, size=n)
    rows = dy[:, None] + np.arange(size)[None]
    cols = dx[:, None] + np.arange(size)[None]
    return big[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
