"""Levers on greedy's search (not in the paper): ``greedy_region``, ``rise_region``, ``greedy_density``,
``greedy_steady``.

Levers of the fidelity work (docs/reproduce.md, "Fidelity round 3"). Greedy's windows may land
anywhere, so its top pixels scatter over many small gains, while a confound such as a watermark is
one connected region:

* ``greedy_region`` / ``rise_region``: the search's first window is chosen as before (from
  occlusion's prior, from RISE's as in :mod:`.rise_greedy`), and every later window must touch
  what is already blurred (:class:`.greedy.Levers` ``grow``). A step tries fewer windows when
  fewer touch the region, so a run may stop at ``area`` with queries left.
* ``greedy_density``: greedy keeping, at each step, the window with the largest gain per pixel it
  adds (``density``), not the largest gain: a window mostly inside the blur already adds few pixels.
* ``greedy_steady``: greedy counting the windows within :data:`bbx.defaults.STEADY_TIE` of a step's
  best gain as tied and keeping the one occlusion rated highest (``tie``): a search that keeps the best
  of many near-equal windows changes its choice when the pixels change a little (a JPEG re-encoding),
  while occlusion's single-cell gains hardly move.

Queries as :mod:`.greedy` and :mod:`.rise_greedy`.

Not imported by :mod:`bbx.methods`, so not registered unless this module is imported (the
fidelity tools do).
"""

from __future__ import annotations

from .. import defaults as d
from ..config import ExplainConfig
from ..result.explanation import Explanation
from .context import Context
from .greedy import Levers, greedy
from .registry import Method, register
from .rise_greedy import rise_greedy


def greedy_region(ctx: Context, cfg: ExplainConfig) -> Explanation:
    """Greedy from occlusion's prior, every window after the first touching the blurred region."""
    return greedy(ctx, cfg, Levers(grow=True))


def greedy_density(ctx: Context, cfg: ExplainConfig) -> Explanation:
    """Greedy from occlusion's prior, keeping the window with the largest gain per added pixel."""
    return greedy(ctx, cfg, Levers(density=True))


def greedy_steady(ctx: Context, cfg: ExplainConfig) -> Explanation:
    """Greedy from occlusion's prior, near-ties of a step's gain settled by that prior."""
    return greedy(ctx, cfg, Levers(tie=d.STEADY_TIE))


def rise_region(ctx: Context, cfg: ExplainConfig) -> Explanation:
    """rise_greedy (:mod:`.rise_greedy`), every window after the first touching the blurred region."""
    return rise_greedy(ctx, cfg, Levers(grow=True))


GREEDY_REGION = register(Method(
    name="greedy_region", run=greedy_region, options=("patch", "stride", "window", "area"), seeded=False,
    summary="greedy's window search grown as one region from occlusion's prior (not in the paper)",
    default_budget=f"{d.GREEDY_BUDGET:,}", mask="cells", needs="topk", reports="-p(target)",
))
RISE_REGION = register(Method(
    name="rise_region", run=rise_region, options=("mask_size", "stride", "window", "area"), seeded=True,
    summary="rise_greedy's search grown as one region from RISE's prior (not in the paper)",
    default_budget=f"{d.GREEDY_BUDGET:,}", mask="cells", needs="topk", reports="-p(target)",
))
GREEDY_STEADY = register(Method(
    name="greedy_steady", run=greedy_steady, options=("patch", "stride", "window", "area"), seeded=False,
    summary="greedy's window search settling near-ties by occlusion's gain (not in the paper)",
    default_budget=f"{d.GREEDY_BUDGET:,}", mask="cells", needs="topk", reports="-p(target)",
))
GREEDY_DENSITY = register(Method(
    name="greedy_density", run=greedy_density, options=("patch", "stride", "window", "area"), seeded=False,
    summary="greedy's window search keeping the largest gain per added pixel (not in the paper)",
    default_budget=f"{d.GREEDY_BUDGET:,}", mask="cells", needs="topk", reports="-p(target)",
))
