"""The paper's optimisation of a soft mask M, shared by ftc, fntc and plain (their losses differ).

image -> Q(X; M) -> query the model -> objective -> optimiser, from M = 1. With ``estimator``
``active`` (the default) :func:`bbx.active.optimise` screens the mask's elements and takes only
checked steps on those that can move, within the budget; with ``nes`` or ``spsa`` the model's part
of the gradient is estimated from each step's antithetic probes, sent in one batch, the
regulariser's is exact, and Adam steps for ``iterations`` steps. Either way the result carries
whether it converged (:mod:`bbx.convergence`).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from .. import defaults as d
from ..active import optimise as active_optimise
from ..config import ExplainConfig
from ..convergence import assess
from ..estimate import Estimator, background
from ..explanation import Explanation
from ..model import Scores
from ..objective import Objective
from ..optimize import Adam
from ..perturb import BlurSpec, Perturber
from ..query import MaskQuery
from .context import Context

#: the ExplainConfig fields the optimisation reads (besides the registry's common ones and seed),
#: with a random estimator (nes, spsa) and with the active one, which draws nothing and runs no Adam
OPTIONS = ("iterations", "pairs", "estimator", "step", "resolution", "lr", "beta1", "lambda1", "lambda2",
           "beta", "gamma", "mask_size", "query_path")
ACTIVE_OPTIONS = ("iterations", "estimator", "lambda1", "lambda2", "beta", "gamma", "mask_size", "query_path")


def options(cfg: ExplainConfig, loss: str) -> tuple[str, ...]:
    """What ``loss``'s optimisation reads under ``cfg`` (plain has no gamma term)."""
    read = ACTIVE_OPTIONS if cfg.estimator == "active" else OPTIONS
    return tuple(o for o in read if not (loss == "plain" and o == "gamma"))


def seeded(cfg: ExplainConfig) -> bool:
    """Seeds change the answer of the random estimators only."""
    return cfg.estimator != "active"


DEFAULT_BUDGET = "2 + 2 x pairs x iterations (3,202 with the defaults); active spends at most that"
#: the budget multiple a non-converged NES/SPSA run is told to try: 8 x 3,202 is where NES's
#: objective gain first came within a quarter of the exact-gradient reference's (docs/reproduce.md)
NES_SCALE = 8


def optimise(ctx: Context, cfg: ExplainConfig, loss: str) -> Explanation:
    """Minimise ``loss`` (ftc, fntc or plain: :class:`~bbx.objective.Objective`) over the mask."""
    if cfg.estimator == "active":
        return _optimise_active(ctx, cfg, loss)
    iterations, pairs = cfg.plan()
    estimator = Estimator(cfg.estimator, pairs, cfg.step, cfg.resolution, dtype="float32")  # what MaskQuery reads
    shape = (cfg.mask_size, cfg.mask_size)
    directions = estimator.stream(np.random.default_rng(cfg.seed), shape, iterations)  # drawn during the set-up

    pert = Perturber(ctx.image, shape, BlurSpec(cfg.sigma, cfg.kernel))
    k, z0 = ctx.target, ctx.logits_before
    objective = Objective(loss, cfg.lambda1, cfg.lambda2, cfg.beta, cfg.gamma)
    query = MaskQuery(ctx.model, pert, cfg.query_path, target=k)

    def model_loss(masks: np.ndarray) -> np.ndarray:
        return objective.model_loss(query(masks), k, z0)

    def pairs_loss(centre: np.ndarray, offsets: np.ndarray) -> np.ndarray:  # probes formed on the device
        return objective.model_loss(query.antithetic(centre, offsets), k, z0)

    mask = np.ones(shape, dtype=np.float64)
    adam = Adam(lr=cfg.lr, beta1=cfg.beta1)
    history: list[float] = []
    on_device = pairs_loss if query.pairs_on_device(pairs) else None
    # R_M is exact and needs M alone: each step's is computed on the worker while the model runs,
    # queued behind no draw but the one that step waits for anyway
    regulariser = background(objective.regularizer, mask)
    for step, drawn in enumerate(directions):
        g_model, value = estimator.estimate(model_loss, mask, u=drawn, pairs_loss=on_device)
        reg, g_reg = regulariser.result()
        mask = adam.step(mask, g_model + g_reg)
        if step + 1 < iterations:
            regulariser = background(objective.regularizer, mask)
        history.append(value + reg)
        ctx.report(step + 1, iterations, history[-1])

    perturbed = pert(mask.astype(np.float32))
    final = ctx.model.scores(perturbed[None])
    heatmap = 1.0 - pert.upsample(mask.astype(np.float32))
    config = {**asdict(cfg), "method": loss, "iterations": iterations, "pairs": pairs,
              "query_path": query.query_path,
              "probes": "host" if on_device is None else "graph"}  # who formed the antithetic probes
    verdict = assess(*objective_ends(objective, z0, k, final, mask), history, ctx.spent, stopped=None, scale=NES_SCALE)
    return ctx.finish(mask=mask, heatmap=heatmap, perturbed=perturbed, config=config, loss_history=history,
                      probs_after=final.probs[0], convergence=verdict.summary())


def _optimise_active(ctx: Context, cfg: ExplainConfig, loss: str) -> Explanation:
    """:func:`optimise` with :func:`bbx.active.optimise` in place of the estimate-and-Adam loop."""
    iterations, pairs = cfg.iterations, d.PAIRS
    budget = cfg.budget if cfg.budget is not None else 2 + 2 * iterations * pairs
    ctx.require(4, "the image, M = 1, one step, the perturbed image")
    shape = (cfg.mask_size, cfg.mask_size)
    pert = Perturber(ctx.image, shape, BlurSpec(cfg.sigma, cfg.kernel))
    k, z0 = ctx.target, ctx.logits_before
    objective = Objective(loss, cfg.lambda1, cfg.lambda2, cfg.beta, cfg.gamma)
    query = MaskQuery(ctx.model, pert, cfg.query_path, target=k)

    def model_loss(masks: np.ndarray) -> np.ndarray:
        return objective.model_loss(query(masks), k, z0)

    at_ones = float(model_loss(np.ones((1, *shape)))[0])  # X through the same path as every probe
    result = active_optimise(model_loss, objective.regularizer, shape, budget - ctx.spent - 1, at_ones,
                             cfg.lambda2, progress=lambda step, _, j: ctx.report(step, max(step, budget // 60), j))
    mask = result.mask
    perturbed = pert(mask.astype(np.float32))
    final = ctx.model.scores(perturbed[None])
    heatmap = 1.0 - pert.upsample(mask.astype(np.float32))
    config = {**asdict(cfg), "method": loss, "iterations": len(result.history) - 1, "pairs": None,
              "budget": budget, "query_path": query.query_path, "screens": result.screens,
              "active": len(result.active)}
    verdict = assess(*objective_ends(objective, z0, k, final, mask), result.history, ctx.spent,
                     stopped=result.converged)
    return ctx.finish(mask=mask, heatmap=heatmap, perturbed=perturbed, config=config, loss_history=result.history,
                      probs_after=final.probs[0], convergence=verdict.summary())


def objective_ends(objective: Objective, z0: np.ndarray, k: int, final: Scores, mask: np.ndarray) -> tuple[float, float]:
    """J(1) and J(M) without a query: the image's own logits, and the scores of the final image
    every method takes anyway (R_M is exact; R_M(1) = 0)."""
    at_ones = float(objective.model_loss(Scores(z0[None]), k, z0)[0])
    return at_ones, float(objective.model_loss(final, k, z0)[0] + objective.regularizer(mask)[0])
