"""``rise_greedy``: greedy's window search driven by a RISE prior instead of occlusion's (not in the paper).

Greedy (:mod:`.greedy`) orders its first tries by occlusion: what blurring each 16 px cell alone
does. A confound whose effect shows only together with its surroundings (a watermark across an
object, a frame) gains little alone and is tried late. Here a share of the budget
(:data:`bbx.defaults.RISE_GREEDY_SHARE`) goes to RISE's random smooth masks instead
(:func:`.rise.rise_prior`, centred weights): the prior of a ``stride`` cell is -E(x), the target's
mean drop when its pixels are kept, averaged over the cell, in the same units as occlusion's gains
(probability). The rest of the budget is greedy's lazy search from that prior, unchanged
(:func:`.greedy.search`). Queries: 1 (the image) + the RISE masks + the search; no extra query at
the end (the search measured the perturbed image).

A lever, measured in docs/reproduce.md ("Fidelity round 3"): not imported by
:mod:`bbx.methods`, so not registered unless this module is imported (tools/rise_levers.py does).
"""

from __future__ import annotations

from .. import defaults as d
from ..config import ExplainConfig
from ..errors import OptionError
from ..maths.perturb import BlurSpec, Perturber
from ..result.explanation import Explanation
from .context import Context
from .greedy import Levers, search
from .registry import Method, register
from .rise import rise_prior


def rise_greedy(ctx: Context, cfg: ExplainConfig, levers: Levers = Levers()) -> Explanation:
    """A RISE prior from ``share`` of ``budget`` queries, then greedy's window search with the rest
    (``levers``: :class:`.greedy.Levers`, :mod:`.levers`)."""
    budget = d.GREEDY_BUDGET if cfg.budget is None else int(cfg.budget)
    n = int(budget * d.RISE_GREEDY_SHARE)
    if n < 2 or budget - n < 3:
        raise OptionError(f"budget {budget} is too small for {ctx.method}: it needs at least 2 RISE masks and "
                          f"3 queries besides (the image, one search step)")
    blur = BlurSpec(cfg.sigma, cfg.kernel)
    settings = {"rise_masks": n, "mask_size": cfg.mask_size, "seed": cfg.seed}
    return search(ctx, cfg, Perturber(ctx.image, blur_spec=blur), rise_prior(ctx, cfg, n, blur), budget,
                  settings, levers)


METHOD = register(Method(
    name="rise_greedy", run=rise_greedy, options=("mask_size", "stride", "window", "area"), seeded=True,
    summary="greedy's window search from a RISE prior (not in the paper)",
    default_budget=f"{d.GREEDY_BUDGET:,}", mask="cells", needs="topk", reports="-p(target)",
))
