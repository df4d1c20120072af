"""What the soft mask's two optimisers share at their ends (:mod:`.soft_mask`'s stepping estimators,
:mod:`.active_run`'s active one): the query path of an explanation whose probes share batches, and
the explanation of the final mask (the perturbed image scored, J at both ends, the verdict).
"""

from __future__ import annotations

import numpy as np

from ..maths.convergence import assess
from ..errors import OptionError
from ..result.explanation import Explanation
from ..model import Scores
from ..maths.objective import Objective
from ..maths.perturb import Perturber
from .context import Context

#: query paths whose probes a shared batch can hold: built on the host in the model's input format
SHAREABLE_PATHS = ("auto", "numpy", "reference")


def shared_path(path: str) -> str:
    """The query path of an explanation in lockstep (:mod:`bbx.evaluation.lockstep`): its probes are built on the
    host in the model's format and concatenated with other explanations' (``numpy``; ``reference``
    for integer inputs); a path that builds them on the device is refused."""
    if path not in SHAREABLE_PATHS:
        raise OptionError(f"the {path} query path scores one explanation per call; explanations in "
                          f"lockstep share batches built on the host ({', '.join(SHAREABLE_PATHS)})")
    return "numpy" if path == "auto" else path


def finished(ctx: Context, pert: Perturber, objective: Objective, mask: np.ndarray, config: dict,
             history: list[float], **assess_options: object) -> Explanation:
    """The explanation of ``mask``: the perturbed image scored (one query), the objective at both
    ends and the verdict on convergence (:func:`bbx.maths.convergence.assess` with ``assess_options``)."""
    perturbed = pert(mask.astype(np.float32))
    final = ctx.model.scores(perturbed[None])
    heatmap = 1.0 - pert.upsample(mask.astype(np.float32))
    verdict = assess(*objective_ends(objective, ctx.logits_before, ctx.target, final, mask), history, ctx.spent,
                     **assess_options)
    return ctx.finish(mask=mask, heatmap=heatmap, perturbed=perturbed, config=config, loss_history=history,
                      probs_after=final.probs[0], convergence=verdict.summary())


def objective_ends(objective: Objective, z0: np.ndarray, k: int, final: Scores, mask: np.ndarray) -> tuple[float, float]:
    """J(1) and J(M) without a query: the image's own logits, and the scores of the final image
    every method takes anyway (R_M is exact; R_M(1) = 0)."""
    at_ones = float(objective.model_loss(Scores(z0[None]), k, z0)[0])
    return at_ones, float(objective.model_loss(final, k, z0)[0] + objective.regularizer(mask)[0])
