"""Occlusion: blur one cell of a grid at a time and map how much each raises the target.

The simplest query-only answer to "which pixels hurt this class", one query per cell (14 x 14
cells of 16 px on a 224 input): if an optimised mask cannot beat it at equal area, the
optimisation is not earning its queries.

The grid cells split the input evenly (exactly ``patch`` px when it divides the input size). The
heatmap is the rise of the target probability when a cell is blurred, clipped at 0 and divided by
its maximum; ``mask`` is ``1 - heatmap`` on the grid. The perturbed image blurs, hard, every pixel
above the threshold (the cells that gain at least 60% as much as the best one): the operating
point sits at ``undesirable_ratio`` like the other methods'. Queries: 1 (the image) + one per
cell + 1 (the perturbed image).
"""

from __future__ import annotations

import math

import numpy as np

from ..config import ExplainConfig
from ..defaults import THRESHOLD
from ..result.explanation import Explanation
from ..evaluation.insertion import hard_blur
from ..maths.perturb import BlurSpec, Perturber
from .cells import cell_gains, cell_map
from .context import Context
from .registry import Method, register


def occlusion(ctx: Context, cfg: ExplainConfig) -> Explanation:
    h, w = ctx.image.shape[:2]
    grid = (math.ceil(h / cfg.patch), math.ceil(w / cfg.patch))
    ctx.require(grid[0] * grid[1] + 2, f"the image, {grid[0] * grid[1]} cells, the perturbed image")
    pert = Perturber(ctx.image, grid, BlurSpec(cfg.sigma, cfg.kernel))
    k = ctx.target
    cells = cell_map((h, w), grid)
    gains = np.clip(cell_gains(ctx.model, pert, cells, k, float(ctx.probs_before[k])), 0.0, None)
    top = gains.max()
    cell_heat = gains / top if top > 0 else gains
    heatmap = cell_heat[cells].astype(np.float32)
    perturbed = hard_blur(pert, heatmap > THRESHOLD)
    config = {"method": "occlusion", "patch": cfg.patch, "grid": list(grid), "sigma": cfg.sigma, "kernel": cfg.kernel}
    return ctx.finish(mask=1.0 - cell_heat.reshape(grid), heatmap=heatmap, perturbed=perturbed, config=config)


register(Method(
    name="occlusion", run=occlusion, options=("patch",), seeded=False,
    summary="blur one cell at a time, heat = the target's rise", default_budget="2 + one query per cell",
    mask="cells", needs="topk",
))
