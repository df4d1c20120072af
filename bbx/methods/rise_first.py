"""``rise_first``: greedy's search started at RISE's worst window when blurring it pays (not in the paper).

Greedy (:mod:`.greedy`) starts from the window whose blurring alone raises the target most. On
photos with a known confound that window is seldom on it, while RISE (:mod:`.rise`), which averages
each pixel's effect over random contexts, points at the confound far more often but ranks the rest
of the photo badly (docs/reproduce.md, "Fidelity round 3").

Here a share of the budget (:data:`bbx.defaults.RISE_FIRST_SHARE`) goes to RISE's masks, which
pick the window where keeping the pixels lowers the target most (-E(x), centred RISE, averaged over
the window). One query blurs that window alone. If that raises the target by at least
:data:`bbx.defaults.RISE_FIRST_GATE` times occlusion's best cell gain, the window is the search's
first step, so the heatmap's top is on it; otherwise the search runs as greedy's. Either way the
rest is greedy unchanged (occlusion's cells, the lazy window search, the best prefix as the
undesirable pixels, measured during the search). Queries: 1 (the image) + the RISE masks + 1 (the
window) + greedy's occlusion cells + the search.
"""

from __future__ import annotations

from .. import defaults as d
from ..config import ExplainConfig
from ..maths.perturb import BlurSpec
from ..result.explanation import Explanation
from .context import Context
from .greedy import Levers, lead_window, occlusion_prior, search, split_budget
from .registry import Method, register
from .rise import rise_prior


def rise_first(ctx: Context, cfg: ExplainConfig) -> Explanation:
    """RISE's worst window first when blurring it gains enough, then greedy's search (module doc)."""
    budget, n = split_budget(ctx, cfg, d.RISE_FIRST_SHARE)
    drop = rise_prior(ctx, cfg, n, BlurSpec(cfg.sigma, cfg.kernel))
    pert, prior, patch = occlusion_prior(ctx, cfg, budget, before=n + 1)
    cells, probs = lead_window(ctx, cfg, pert, drop, 1)
    gain = float(probs[ctx.target] - ctx.probs_before[ctx.target])
    best = float(prior.max())  # occlusion's best cell gain
    first = gain > 0 and gain >= d.RISE_FIRST_GATE * best
    settings = {"rise_masks": n, "mask_size": cfg.mask_size, "seed": cfg.seed, "patch": patch,
                "first_gain": gain, "best_cell_gain": best, "first_kept": first}
    return search(ctx, cfg, pert, prior, budget, settings, Levers(start=(cells, probs) if first else None))


METHOD = register(Method(
    name="rise_first", run=rise_first, options=("patch", "mask_size", "stride", "window", "area"), seeded=True,
    summary="greedy's search started at RISE's worst window when blurring it pays (not in the paper)",
    default_budget=f"{d.GREEDY_BUDGET:,}", mask="cells", needs="topk", reports="-p(target)",
))
