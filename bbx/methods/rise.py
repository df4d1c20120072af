"""``rise``: RISE (Petsiuk, Das & Saenko, BMVC 2018) with bbx's blur as the perturbation.

RISE scores the target class on ``N`` images, each keeping the pixels of a random smooth mask
and blurring the rest, and weighs each mask by the target probability it gave:

    S(x) = sum_i f_k(Q(X; M_i)) M_i(x) / (N p)

M_i: a ``grid`` x ``grid`` binary grid (each cell kept with probability ``keep`` = p), upsampled
bilinearly to a grid one cell larger and cropped at a random offset (so the cells need not sit
on a fixed grid). Here everything is at the learned methods' mask resolution (28 x 28, upsampled
bilinearly to the input like theirs), and Q is bbx's operator: X where M = 1, h(X) (Gaussian blur)
where M = 0.

bbx centres the weights: E(x) = sum_i (f_i - f̄) M_i(x) / sum_i M_i(x), f̄ = mean_i f_i, the mean
change of the target when x is kept. The paper's S(x) carries f̄ times sum_i M_i(x) / (N p), how
often x happened to be kept: a smooth random field of the masks' own scale, of relative size
sqrt(Var M / (N p^2)) (about 2% at 2,000 masks), which on a confident photo (f̄ near 1, small
effects) is as large as the signal and ranks pixels by chance; centring removes it and changes
nothing else (docs/reproduce.md, "Fidelity round 3"). Undesirable pixels are those whose presence
lowers the target, E(x) < 0; the heatmap is -E / max(-E), clipped at 0: 1 where keeping the pixel
hurts most, 0 where it does not hurt (0 everywhere when no pixel changes the target). As for occlusion, the perturbed image blurs, hard, every pixel above 0.6.
Queries: 1 (the image) + N + 1 (the perturbed image) = ``budget`` (default 2,000).
"""

from __future__ import annotations

import math

import numpy as np

from .. import defaults as d
from ..config import ExplainConfig
from ..defaults import THRESHOLD
from ..result.explanation import Explanation
from ..evaluation.insertion import hard_blur
from ..maths.objective import Objective
from ..maths.perturb import BlurSpec, Perturber, upsample
from ..query.masks import MaskQuery
from .cells import cell_map, fine_prior
from .context import Context
from .registry import Method, register

#: a change of the target below this share of its value is rounding, not an effect of the pixels
NO_EFFECT = 1e-9


def rise(ctx: Context, cfg: ExplainConfig) -> Explanation:
    """RISE saliency of the target from ``budget - 2`` random masks (default :data:`bbx.defaults.RISE_BUDGET`)."""
    budget = d.RISE_BUDGET if cfg.budget is None else int(cfg.budget)
    ctx.require(3, "the image, one mask, the perturbed image")
    grid, keep, size = d.RISE_GRID, d.RISE_KEEP, cfg.mask_size
    shape = (size, size)
    pert = Perturber(ctx.image, shape, BlurSpec(cfg.sigma, cfg.kernel))
    n = budget - 2
    masks = random_masks(ctx.rng(cfg.seed), n, min(grid, size), keep, size)
    probs = target_probs(ctx, pert, masks)
    heat = undesirable(probs, masks)
    mask = 1.0 - heat
    heatmap = 1.0 - pert.upsample(mask.astype(np.float32))
    perturbed = hard_blur(pert, heatmap > THRESHOLD)
    config = {"method": "rise", "budget": budget, "masks": n, "grid": grid, "keep": keep, "mask_size": size,
              "seed": cfg.seed, "sigma": cfg.sigma, "kernel": cfg.kernel}
    return ctx.finish(mask=mask, heatmap=heatmap, perturbed=perturbed, config=config)


def target_probs(ctx: Context, pert: Perturber, masks: np.ndarray, report: bool = True) -> np.ndarray:
    """The target's probability on Q(X; M_i) for each mask, one counted query each, with progress unless
    ``report`` is off (a prior for a search, whose steps are the method's progress)."""
    k, n = ctx.target, len(masks)
    query = MaskQuery(ctx.model, pert, target=k)
    plain = Objective("plain")  # its model loss is -f_k
    probs = np.empty(n)
    chunk = max(1, ctx.model.max_batch) * 4
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        probs[start:stop] = -plain.model_loss(query(masks[start:stop]), k, ctx.logits_before)
        if report:
            ctx.report(stop, n, float(probs[:stop].mean()))
    return probs


def effect(probs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """E(x): the target's mean change, against its mean over all masks, over the masks that keep x."""
    centred = probs - probs.mean()
    return np.einsum("n,nij->ij", centred, masks) / np.maximum(masks.sum(axis=0), 1e-12)


def undesirable(probs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Heat in [0, 1] where keeping a pixel lowers the target: -E(x) (:func:`effect`) divided by its
    largest value; 0 where it does not lower it."""
    change = effect(probs, masks)
    worst = -float(change.min())
    if not worst > NO_EFFECT * max(float(np.abs(probs).max()), 1e-12):  # a target no mask moves: no heat
        return np.zeros(change.shape)
    return np.clip(-change / worst, 0.0, None)


def rise_prior(ctx: Context, cfg: ExplainConfig, n: int, blur: BlurSpec) -> np.ndarray:
    """-E(x) (:func:`effect`) from ``n`` RISE masks, averaged over each ``stride`` cell: the target's mean
    drop where the cell is kept, a prior or a rank for the methods built on greedy's search."""
    x, size = ctx.image, cfg.mask_size
    h, w = x.shape[:2]
    masks = random_masks(ctx.rng(cfg.seed), n, min(d.RISE_GRID, size), d.RISE_KEEP, size)
    drop = -effect(target_probs(ctx, Perturber(x, (size, size), blur), masks, report=False), masks)
    fine = cell_map((h, w), (math.ceil(h / cfg.stride), math.ceil(w / cfg.stride)))
    return fine_prior(fine, upsample(drop.astype("float32"), (h, w)))


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


register(Method(
    name="rise", run=rise, options=("mask_size",), seeded=True,
    summary="RISE: random smooth masks, heat = where keeping a pixel lowers the target",
    default_budget=f"{d.RISE_BUDGET:,}", reports="mean p(target)",
))
