"""``greedy``: undesirable pixels found by blurring, hard, one window at a time (not in the paper).

A query-only search for the pixels whose blurring raises the target most, built on occlusion:

1. occlusion (:func:`.cells.cell_gains`): blur each 16 px cell alone, one query each, and
   keep the rise of the target probability as every window's first priority;
2. lazy greedy search over 16 x 16 windows at an 8 px stride: each step scores, in one batch, the
   highest-priority windows *added to what is already blurred*, keeps the best, and stores the
   measured gains of the others as their new priorities; it stops when ``area`` of the image is
   blurred or the budget is spent. The queries per step are the budget left over the steps still
   needed.

Unlike occlusion, each window is judged together with the ones already chosen (blurring two
regions is not the sum of blurring each), and the windows overlap, so a region need not sit on
the grid. The heatmap ranks the chosen cells in the order they were chosen, then the others by
their occlusion gain. The undesirable pixels (heatmap > 0.6) are the prefix of chosen windows
whose blurring gave the highest target probability; the perturbed image blurs exactly those, and
its probabilities were measured during the search, so no extra query is needed.
How it compares with occlusion and the paper's methods is measured in docs/reproduce.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import ExplainConfig
from ..defaults import GREEDY_BUDGET, THRESHOLD
from ..errors import OptionError
from ..result.explanation import Explanation
from ..evaluation.insertion import hard_blur
from ..maths.perturb import BlurSpec, Perturber
from .cells import cell_gains, cell_map, fine_prior
from .context import Context
from .registry import Method, register


@dataclass(frozen=True)
class Levers:
    """Changes to greedy's search, each measured as a lever (:mod:`.levers`, docs/reproduce.md); the default
    changes nothing. ``grow``: after the first window, only windows touching what is blurred are tried (one
    region); ``density``: the window kept is the one with the largest gain per pixel it adds; ``tie``:
    candidates within this share of the best gain count as tied, and the one the prior rates highest is kept
    (a choice the pixels' noise does not flip); ``rank`` (one value per ``stride`` cell): the undesirable
    cells are ranked by it, highest first, instead of in the order chosen (:func:`_heat`); ``start`` (cells,
    the probabilities with them blurred): the search's first step, already measured."""

    grow: bool = False
    density: bool = False
    tie: float = 0.0
    rank: np.ndarray | None = None
    start: tuple[np.ndarray, np.ndarray] | None = None

    def config(self) -> dict:
        """The levers in use, as the explanation's config records them."""
        used = {"grow": self.grow, "density": self.density, "ranked": self.rank is not None,
                "started": self.start is not None}
        return {**{name: True for name, on in used.items() if on}, **({"tie": self.tie} if self.tie else {})}


def greedy(ctx: Context, cfg: ExplainConfig, levers: Levers = Levers()) -> Explanation:
    """Greedy hard-blur search from occlusion priorities; at most ``budget`` queries (``levers``:
    :class:`Levers`, :mod:`.levers`).

    ``patch``: occlusion cell (px; where the budget cannot pay for the default's cells, the default
    grows until they take half of it, :func:`fitting_patch`; a given one is kept, or refused); ``stride``: cell of the search grid and of the mask (px);
    ``window``: side of a window added per step (px, rounded to whole ``stride`` cells); ``area``:
    share of the image's pixels blurred before the search stops. Queries: 1 (the image) + one per
    occlusion cell + the search (the rest of the budget, unless ``area`` is reached first).
    """
    budget = GREEDY_BUDGET if cfg.budget is None else cfg.budget
    pert, prior, patch = occlusion_prior(ctx, cfg, budget)
    return search(ctx, cfg, pert, prior, budget, {"patch": patch}, levers)


def split_budget(ctx: Context, cfg: ExplainConfig, share: float) -> tuple[int, int]:
    """(greedy's budget, the RISE masks of ``share`` of it) for a method that spends that share on RISE first."""
    budget = GREEDY_BUDGET if cfg.budget is None else int(cfg.budget)
    n = math.floor(budget * share)
    if n < 2:
        raise OptionError(f"budget {budget} is too small for {ctx.method}: it needs at least 2 RISE masks "
                          f"besides greedy's queries")
    return budget, n


def occlusion_prior(ctx: Context, cfg: ExplainConfig, budget: int, before: int = 0,
                    ) -> tuple[Perturber, np.ndarray, int]:
    """Step 1 above: (the perturber, each ``stride`` cell's occlusion gain, the occlusion cell used);
    ``before``: queries of ``budget`` the method spends on something else first."""
    patch, stride = cfg.patch, cfg.stride
    model, x = ctx.model, ctx.image
    h, w = x.shape[:2]
    room = budget - before
    if "patch" not in cfg.given() and room < cell_count((h, w), patch) + 2:
        patch = fitting_patch((h, w), patch, room // 2)  # the default cell would be refused here
    coarse = cell_map((h, w), (math.ceil(h / patch), math.ceil(w / patch)))
    n_coarse = int(coarse.max()) + 1
    if room < n_coarse + 2:
        first = f"{before} of its own, " if before else ""
        raise OptionError(f"budget {budget} is too small for {ctx.method} on a {h}x{w} input: it needs "
                          f"{before + n_coarse + 2} queries ({first}the image, {n_coarse} occlusion cells, one "
                          f"search step); give a larger --budget or --patch")

    pert = Perturber(x, blur_spec=BlurSpec(cfg.sigma, cfg.kernel))
    gains = cell_gains(model, pert, coarse, ctx.target, float(ctx.probs_before[ctx.target]))  # one query per cell
    fine = cell_map((h, w), (math.ceil(h / stride), math.ceil(w / stride)))
    return pert, fine_prior(fine, gains[coarse]), patch


def search(ctx: Context, cfg: ExplainConfig, pert: Perturber, prior: np.ndarray, budget: int,
           settings: dict, levers: Levers = Levers()) -> Explanation:
    """The lazy greedy window search (step 2 above) from ``prior``, one value per ``stride`` cell (higher:
    tried first), until ``area`` is blurred or ``budget`` (all of the explanation's queries) is spent,
    changed by ``levers`` (recorded in the explanation's config)."""
    h, w = ctx.image.shape[:2]
    stride, area = cfg.stride, cfg.area
    fine, windows, px = window_grid((h, w), cfg)
    grid, side = _grid_side((h, w), cfg)
    priority = window_means(windows, px, prior)
    rims = _blocks(np.arange(px.size).reshape(grid), side, ring=1) if levers.grow else None

    run = _Search(ctx, pert, windows, priority, px, fine, goal=area * h * w,
                  window_px=h * w * side * side / px.size, rims=rims, density=levers.density, tie=levers.tie)
    order, history, trail = run.run(budget - ctx.spent, levers.start)
    k = ctx.target

    steps = len(history)
    prefix = int(np.argmax([p[k] for p in trail]))  # the steps whose blurring raised the target most
    heat_cells = _heat(order, steps, prefix, prior, levers.rank)
    heatmap = heat_cells[fine].astype(np.float32)
    perturbed = hard_blur(pert, heatmap > THRESHOLD)
    p1 = trail[prefix]  # measured during the search: blurring exactly these cells
    config = {"method": ctx.method, "budget": budget, "area": area, **settings, **levers.config(), "stride": stride,
              "window": side * stride, "sigma": cfg.sigma, "kernel": cfg.kernel, "steps": steps, "prefix": prefix}
    return ctx.finish(mask=1.0 - heat_cells.reshape(grid), heatmap=heatmap, perturbed=perturbed,
                      probs_after=p1, loss_history=history, config=config)


def window_grid(size: tuple[int, int], cfg: ExplainConfig) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The search's grid on an input of ``size``: (each pixel's ``stride`` cell, the cells of every
    ``window``, each cell's pixel count)."""
    grid, side = _grid_side(size, cfg)
    fine = cell_map(size, grid)
    px = np.bincount(fine.ravel(), minlength=grid[0] * grid[1]).astype(np.float64)
    return fine, _blocks(np.arange(px.size).reshape(grid), side), px


def _grid_side(size: tuple[int, int], cfg: ExplainConfig) -> tuple[tuple[int, int], int]:
    """The search's grid of ``stride`` cells on an input of ``size``, and a window's side in those cells."""
    grid = (math.ceil(size[0] / cfg.stride), math.ceil(size[1] / cfg.stride))
    return grid, max(1, min(round(cfg.window / cfg.stride), *grid))


def window_means(windows: list[np.ndarray], px: np.ndarray, per_cell: np.ndarray) -> np.ndarray:
    """Each window's pixel-weighted mean of a per-cell value."""
    return np.array([px[c] @ per_cell[c] / px[c].sum() for c in windows])


def lead_window(ctx: Context, cfg: ExplainConfig, pert: Perturber, rating: np.ndarray, tried: int,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Of the ``tried`` windows ``rating`` (one value per ``stride`` cell) rates highest, each blurred alone
    (one query each): (the cells of the one that raised the target most, the probabilities with it blurred)."""
    fine, windows, px = window_grid(ctx.image.shape[:2], cfg)
    top = np.argsort(-window_means(windows, px, rating), kind="stable")[:tried]
    probs = np.concatenate([ctx.model.scores(np.stack([hard_blur(pert, np.isin(fine, windows[t]))
                                                       for t in top[rows]])).probs
                            for rows in ctx.model.batches(len(top))[0]])
    best = int(np.argmax(probs[:, ctx.target]))
    return windows[top[best]], probs[best]


def _blocks(ids: np.ndarray, side: int, ring: int = 0) -> list[np.ndarray]:
    """The cells of every ``side`` x ``side`` window inside the grid ``ids``, with ``ring`` cells around it."""
    rows, cols = ids.shape
    return [ids[max(0, i - ring):i + side + ring, max(0, j - ring):j + side + ring].ravel()
            for i in range(rows - side + 1) for j in range(cols - side + 1)]


class _Search:
    """Greedy's search: each step scores the blurred copies of the most promising windows not yet
    blurred (as many as the budget left allows per step still to come), keeps the one that raised
    the target most, and updates the priorities it measured (lazy greedy). With ``rims`` (each
    window's cells and the ring around them), a window is tried only once its rim touches the blur."""

    def __init__(self, ctx: Context, pert: Perturber, windows: list[np.ndarray], priority: np.ndarray,
                 px: np.ndarray, fine: np.ndarray, goal: float, window_px: float,
                 rims: list[np.ndarray] | None = None, density: bool = False, tie: float = 0.0):
        self.ctx, self.pert, self.windows, self.priority = ctx, pert, windows, priority
        self.px, self.fine, self.goal, self.window_px, self.rims = px, fine, goal, window_px, rims
        self.density, self.tie, self.first = density, tie, priority.copy()
        self.chosen = np.zeros(len(px), dtype=bool)

    def run(self, left: int, start: tuple[np.ndarray, np.ndarray] | None = None,
            ) -> tuple[np.ndarray, list[float], list[np.ndarray]]:
        """(each cell's step, -1 if never chosen; -p(target) after each step; the probabilities
        after each step, trail[0] with nothing blurred); ``start``: the first step's cells and probabilities."""
        ctx, k, chosen, px = self.ctx, self.ctx.target, self.chosen, self.px
        order = np.full(len(px), -1)
        probs_now = ctx.probs_before
        trail = [probs_now]
        history: list[float] = []
        if start is not None:
            chosen[start[0]], order[start[0]], probs_now = True, 0, start[1]
            trail.append(probs_now)
            history.append(-float(probs_now[k]))
        while px[chosen].sum() < self.goal and left > 0:
            fresh = np.array([(~chosen[c]).any() for c in self.windows])
            if self.rims is not None and chosen.any():
                fresh &= np.array([chosen[r].any() for r in self.rims])
            if not fresh.any():
                break
            steps_left = max(1, math.ceil((self.goal - px[chosen].sum()) / self.window_px))
            n = int(min(fresh.sum(), max(1, left // steps_left)))
            cand = np.argsort(-np.where(fresh, self.priority, -np.inf), kind="stable")[:n]
            probs = self._scored(cand)
            left -= n
            self.priority[cand] = probs[:, k] - probs_now[k]  # lazy greedy: the latest measured gain
            pick = self._pick(cand, probs[:, k] - probs_now[k])
            best = self.windows[cand[pick]]
            added = best[~chosen[best]]
            order[added] = len(history)
            chosen[added] = True
            probs_now = probs[pick]
            trail.append(probs_now)
            history.append(-float(probs_now[k]))
            ctx.report(len(history), len(history) + math.ceil(max(0.0, self.goal - px[chosen].sum()) / self.window_px),
                       history[-1])
        return order, history, trail

    def _pick(self, cand: np.ndarray, gain: np.ndarray) -> int:
        """The candidate kept: the largest gain, or with ``density`` the largest gain per pixel it adds;
        with ``tie``, of those within ``tie`` of it, the one the prior rated highest."""
        if self.density:
            added = np.array([self.px[c][~self.chosen[c]].sum() for c in (self.windows[t] for t in cand)])
            gain = gain / added
        best = int(np.argmax(gain))
        if self.tie <= 0:
            return best
        near = gain >= gain[best] - self.tie * abs(gain[best])
        return int(np.argmax(np.where(near, self.first[cand], -np.inf)))

    def _scored(self, cand: np.ndarray) -> np.ndarray:
        """The probabilities with each candidate window blurred besides the chosen cells, one
        model batch of blurred copies at a time."""
        model = self.ctx.model
        probs = np.empty((len(cand), len(self.ctx.probs_before)))
        for rows in model.batches(len(cand))[0]:
            part = cand[rows]
            blur_cells = np.repeat(self.chosen[None], len(part), axis=0)
            for row, t in enumerate(part):
                blur_cells[row, self.windows[t]] = True
            probs[rows] = model.scores(hard_blur(self.pert, blur_cells[:, self.fine])).probs
        return probs


def fitting_patch(size: tuple[int, int], patch: int, room: int) -> int:
    """``patch``, or on an input too large for its cells to fit in ``room`` queries the smallest cell
    that does (at least 1 cell): the default cell is sized for inputs of a few hundred pixels, and
    a default run on a larger one should spend half its budget on occlusion, not be refused."""
    while cell_count(size, patch) > max(1, room) and patch < max(size):
        patch += 1
    return patch


def cell_count(size: tuple[int, int], patch: int) -> int:
    """How many ``patch`` px cells cover an input of ``size`` (the last row and column may be narrower)."""
    return math.ceil(size[0] / patch) * math.ceil(size[1] / patch)


def _heat(order: np.ndarray, steps: int, prefix: int, prior: np.ndarray,
          rank: np.ndarray | None = None) -> np.ndarray:
    """Cell heat: the best prefix in (0.6, 1] in the order chosen (with ``rank``: by ``rank``, highest
    first), the rest of the chosen cells in (0.5, 0.6) in the order chosen; unchosen cells in [0, 0.5]
    by their occlusion gain (negative gains at 0)."""
    rest = np.clip(prior, 0.0, None)
    heat = 0.5 * rest / rest.max() if rest.max() > 0 else rest.copy()
    s = order.astype(np.float64)
    early = (order >= 0) & (order < prefix)
    late = order >= prefix
    if rank is not None and early.any():  # the same cells, placed by rank (ties: the order chosen)
        cells = np.flatnonzero(early)
        by_rank = cells[np.lexsort((s[cells], -rank[cells]))]
        s[by_rank] = np.arange(len(cells)) * max(prefix, 1) / len(cells)
    heat[early] = 1.0 - 0.4 * s[early] / max(prefix, 1)
    heat[late] = 0.5 + 0.1 * (steps - s[late]) / (steps - prefix + 1)
    return heat


register(Method(
    name="greedy", run=greedy, options=("patch", "stride", "window", "area"), seeded=False,
    summary="hard-blur window search from occlusion's priorities (not in the paper)",
    default_budget=f"{GREEDY_BUDGET:,}", mask="cells", needs="topk", reports="-p(target)",
))
