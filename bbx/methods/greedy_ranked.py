"""``greedy_ranked``: greedy's undesirable pixels, ranked by RISE (not in the paper).

Greedy (:mod:`.greedy`) finds the windows whose blurring together raises the target most and ranks
them in the order it chose them, the largest gain first. On photos with a known confound that
first window is seldom on it: the largest gain is not the cause (docs/reproduce.md, "Fidelity
round 3"). RISE (:mod:`.rise`) averages each pixel's effect over random contexts and points at the
confound far more often, but its own top pixels raise the target little.

Here a share of the budget (:data:`bbx.defaults.RANKED_RISE_SHARE`) goes to RISE's masks, the rest
to greedy unchanged (occlusion's cells, then the window search). The undesirable pixels, the
perturbed image and its probabilities are greedy's; only their order changes: each of greedy's
undesirable cells is ranked by -E(x) (the target's mean drop where the cell is kept, centred RISE),
so the heatmap's top is the part of greedy's region that hurts the target in most contexts.
Queries: 1 (the image) + the RISE masks + greedy's occlusion cells + the search.
"""

from __future__ import annotations

from .. import defaults as d
from ..config import ExplainConfig
from ..maths.perturb import BlurSpec
from ..result.explanation import Explanation
from .context import Context
from .greedy import Levers, occlusion_prior, search, split_budget
from .registry import Method, register
from .rise import rise_prior


def greedy_ranked(ctx: Context, cfg: ExplainConfig) -> Explanation:
    """RISE from ``share`` of ``budget`` queries, then greedy with the rest, its cells ranked by RISE."""
    budget, n = split_budget(ctx, cfg, d.RANKED_RISE_SHARE)
    rank = rise_prior(ctx, cfg, n, BlurSpec(cfg.sigma, cfg.kernel))
    pert, prior, patch = occlusion_prior(ctx, cfg, budget, before=n)
    settings = {"rise_masks": n, "mask_size": cfg.mask_size, "seed": cfg.seed, "patch": patch}
    return search(ctx, cfg, pert, prior, budget, settings, Levers(rank=rank))


METHOD = register(Method(
    name="greedy_ranked", run=greedy_ranked, options=("patch", "mask_size", "stride", "window", "area"), seeded=True,
    summary="greedy's undesirable pixels, ranked by RISE's average effect (not in the paper)",
    default_budget=f"{d.GREEDY_BUDGET:,}", mask="cells", needs="topk", reports="-p(target)",
))
