"""What the soft mask's runs share (:mod:`.soft_mask`'s stepping estimators, :mod:`.active_run`'s
active one): the :class:`Run` protocol lockstep steps them through, their common set-up
(:class:`SoftMaskBase`: perturbation, objective, query) and their common end (the perturbed image
scored, J at both ends, the verdict on convergence).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Protocol

import numpy as np

from ..config import ExplainConfig
from ..errors import OptionError
from ..maths.convergence import assess
from ..maths.objective import Objective
from ..maths.perturb import BlurSpec, Perturber
from ..model import Scores, TargetTerms
from ..query.masks import MaskQuery
from ..result.explanation import Explanation
from .context import Context

#: query paths whose probes a shared batch can hold: built on the host in the model's input format
SHAREABLE_PATHS = ("auto", "numpy", "reference")


class Run(Protocol):
    """One explanation that someone else steps (:mod:`bbx.evaluation.lockstep`): it hands out the
    probe masks it wants scored (:meth:`probes`), takes their scores in order (:meth:`feed`) until
    :attr:`done`, then ends with :meth:`finish`. ``query`` builds its probes' images in the model's
    format; ``shared_images`` is set by who scored them (``host`` or ``device``)."""

    ctx: Context
    query: MaskQuery
    shared_images: str | None

    @property
    def done(self) -> bool: ...

    def probes(self) -> np.ndarray: ...

    def feed(self, scores: Scores | TargetTerms) -> None: ...

    def finish(self) -> Explanation: ...


class SoftMaskBase:
    """The set-up and the end every soft-mask run shares: Q(X; M) for ``cfg``'s mask and blur, the
    ``loss``'s objective and the query path (the host's when ``shared``: :func:`shared_path`)."""

    def __init__(self, ctx: Context, cfg: ExplainConfig, loss: str, shared: bool):
        self.ctx, self.cfg, self.loss = ctx, cfg, loss
        self.shape = (cfg.mask_size, cfg.mask_size)
        self.perturber = Perturber(ctx.image, self.shape, BlurSpec(cfg.sigma, cfg.kernel))
        self.target, self._z0 = ctx.target, ctx.logits_before
        self.objective = Objective(loss, cfg.lambda1, cfg.lambda2, cfg.beta, cfg.gamma)
        path = shared_path(cfg.query_path) if shared else cfg.query_path
        self.query = MaskQuery(ctx.model, self.perturber, path, target=self.target)
        #: where shared batches' images were built ("host" or "device"), set by who scores them
        self.shared_images: str | None = None

    def conclude(self, mask: np.ndarray, history: list[float], settings: dict[str, Any],
                 **assess_options: Any) -> Explanation:
        """The explanation of ``mask``; ``settings`` follow the method's name in its config."""
        config = {**asdict(self.cfg), "method": self.loss, **settings}
        if self.shared_images is not None:
            config["lockstep_images"] = self.shared_images
        return finished(self.ctx, self.perturber, self.objective, mask, config, history, **assess_options)


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
