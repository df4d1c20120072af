"""``rise_lead``: greedy's search led by the best-paying of RISE's worst windows (the default; not in the paper).

Greedy (:mod:`.greedy`) starts from the window whose blurring alone raises the target most; on photos
with a known confound that window is seldom on it. RISE (:mod:`.rise`) averages each pixel's effect
over random contexts and points at the confound more often, but its single worst window often gains
little when blurred alone (``rise_first``, docs/reproduce.md "Levers, round 3").

Here a share of the budget (:data:`bbx.defaults.RISE_LEAD_SHARE`) goes to RISE's masks, which rate
every 16 px window by where keeping its pixels lowers the target most (-E(x), centred RISE). The
:data:`bbx.defaults.RISE_LEAD_WINDOWS` worst windows are each blurred alone, in one batch, and the one
that raises the target most is the search's first step, so the heatmap's top is on it (unless even
that one lowers the target: a window that helps the class never tops a map of what hurts it, and
the search starts as greedy's). The rest is
greedy unchanged: occlusion's cells, the lazy window search from occlusion's priorities, the best
prefix as the undesirable pixels (measured during the search, no extra query). Queries: 1 (the image)
+ the RISE masks + the lead windows + greedy's occlusion cells + the search. Seeded: RISE's masks come
from the seed and the photo, so one seed gives one heatmap.

bbx's default method: of the methods that keep φ at occlusion's or above on photos without a
confound, it points at a known confound most often (docs/reproduce.md, "Levers, round 4").
"""

from __future__ import annotations

from .. import defaults as d
from ..config import ExplainConfig
from ..maths.perturb import BlurSpec
from ..result.explanation import Explanation
from .context import Context
from .greedy import Levers, lead_window, occlusion_prior, search, split_budget, window_grid
from .registry import Method, register
from .rise import rise_prior


def rise_lead(ctx: Context, cfg: ExplainConfig) -> Explanation:
    """RISE's worst windows, the best-paying one first, then greedy's search (module doc)."""
    budget, n = split_budget(ctx, cfg, d.RISE_LEAD_SHARE)
    drop = rise_prior(ctx, cfg, n, BlurSpec(cfg.sigma, cfg.kernel))
    tried = min(d.RISE_LEAD_WINDOWS, len(window_grid(ctx.image.shape[:2], cfg)[1]))
    pert, prior, patch = occlusion_prior(ctx, cfg, budget, before=n + tried)
    cells, probs = lead_window(ctx, cfg, pert, drop, tried)
    gain = float(probs[ctx.target] - ctx.probs_before[ctx.target])
    settings = {"rise_masks": n, "mask_size": cfg.mask_size, "seed": cfg.seed, "patch": patch,
                "lead_windows": tried, "lead_gain": gain, "lead_kept": gain > 0}
    return search(ctx, cfg, pert, prior, budget, settings, Levers(start=(cells, probs) if gain > 0 else None))


METHOD = register(Method(
    name="rise_lead", run=rise_lead, options=("patch", "mask_size", "stride", "window", "area"), seeded=True,
    summary="greedy's search led by the best-paying of RISE's worst windows, the default (not in the paper)",
    default_budget=f"{d.GREEDY_BUDGET:,}", mask="cells", needs="topk", reports="-p(target)",
))
