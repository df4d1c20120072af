"""The paper's optimisation of a soft mask M, shared by ftc, fntc and plain (their losses differ).

image -> Q(X; M) -> query the model -> objective -> gradient estimate -> projected Adam, from
M = 1 for ``iterations`` steps. The model's part of the gradient is estimated from each step's
antithetic probes, sent in one batch; the regulariser's is exact.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..config import ExplainConfig
from ..estimate import Estimator, background
from ..explanation import Explanation
from ..objective import Objective
from ..optimize import Adam
from ..perturb import BlurSpec, Perturber
from ..query import MaskQuery
from .context import Context

#: the ExplainConfig fields the optimisation reads (besides the registry's common ones and seed)
OPTIONS = ("iterations", "pairs", "estimator", "step", "resolution", "lr", "beta1", "lambda1", "lambda2",
           "beta", "gamma", "mask_size", "query_path")
DEFAULT_BUDGET = "2 + 2 x pairs x iterations (3,202 with the defaults)"


def optimise(ctx: Context, cfg: ExplainConfig, loss: str) -> Explanation:
    """Minimise ``loss`` (ftc, fntc or plain: :class:`~bbx.objective.Objective`) over the mask."""
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
    heatmap = 1.0 - pert.upsample(mask.astype(np.float32))
    config = {**asdict(cfg), "method": loss, "iterations": iterations, "pairs": pairs,
              "query_path": query.query_path,
              "probes": "host" if on_device is None else "graph"}  # who formed the antithetic probes
    return ctx.finish(mask=mask, heatmap=heatmap, perturbed=perturbed, config=config, loss_history=history)
