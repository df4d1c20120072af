"""The soft mask with the ``active`` estimator (:mod:`bbx.maths.active`) as a stepper: one explanation in progress.

:func:`bbx.maths.active.optimise_steps` decides each request's probes from the last one's answers and
hands them out; :class:`ActiveRun` scores them with its own query (:meth:`~ActiveRun.run`, an
explanation alone) or hands them to :mod:`bbx.evaluation.lockstep` (:meth:`~ActiveRun.probes`,
:meth:`~ActiveRun.feed`), which scores many explanations' in shared batches. Its requests are
the image at M = 1 (one query, through the same path as every probe), a screen (up to one probe
per mask element), then a step's probes and trial lengths (at most ``max_active + trials``), and
a screen again when a step length shrinks to nothing. Both ways go through the same losses and
the same generator, so the numbers do not depend on who scored the probes.
"""

from __future__ import annotations

from typing import Generator

import numpy as np

from .. import defaults as d
from ..config import ExplainConfig
from ..maths.active import ActiveResult, optimise_steps
from ..model import Scores, TargetTerms
from ..result.explanation import Explanation
from .context import Context
from .soft_run import SoftMaskBase


class ActiveRun(SoftMaskBase):
    """One active explanation in progress: the probes it waits for, its generator, its result.

    ``shared``: its probes are scored by someone else (:mod:`bbx.evaluation.lockstep`), so its query takes the
    host path (:func:`~bbx.methods.soft_run.shared_path`).
    """

    def __init__(self, ctx: Context, cfg: ExplainConfig, loss: str, shared: bool = False):
        self.budget = cfg.budget if cfg.budget is not None else 2 + 2 * cfg.iterations * d.PAIRS
        ctx.require(4, "the image, M = 1, one step, the perturbed image")
        super().__init__(ctx, cfg, loss, shared)
        self._steps: Generator[np.ndarray, np.ndarray, ActiveResult] | None = None  # from M = 1's loss on
        self._wanted: np.ndarray | None = np.ones((1, *self.shape))  # X through the same path as every probe
        self._out = False
        self.result: ActiveResult | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    # -- stepped by someone else: the probes out, their scores in ------------------------------------
    def probes(self) -> np.ndarray:
        """The masks ``(B, h, w)`` the optimiser wants scored next; :meth:`feed` takes their scores, in order."""
        if self._out:
            raise RuntimeError("the probes of this request are out already: feed their scores first")
        if self._wanted is None:
            raise RuntimeError("the run is done: nothing more to score")
        self._out = True
        return self._wanted

    def feed(self, scores: Scores | TargetTerms) -> None:
        """The scores of :meth:`probes`' masks: the optimiser goes on to its next request, or ends."""
        if not self._out:
            raise RuntimeError("no probes are out: call probes() first")
        self._out = False
        values = self.objective.model_loss(scores, self.target, self._z0)
        try:
            if self._steps is None:  # M = 1 scored: the budget left is known, the optimiser starts
                budget = self.budget
                self._steps = optimise_steps(
                    self.objective.regularizer, self.shape, budget - self.ctx.spent - 1, float(values[0]),
                    self.cfg.lambda2, progress=lambda step, _, j: self.ctx.report(step, max(step, budget // 60), j))
                self._wanted = next(self._steps)
            else:
                self._wanted = self._steps.send(values)
        except StopIteration as end:
            self._wanted, self.result = None, end.value

    # -- stepped alone: this run's own query -----------------------------------------------------------
    def run(self) -> Explanation:
        while not self.done:
            self.feed(self.query(self.probes()))
        return self.finish()

    def finish(self) -> Explanation:
        """The explanation (one more query: the perturbed image) and whether it converged."""
        result = self.result
        if result is None:
            raise RuntimeError("the run is not done: feed it until done")
        settings = {"iterations": len(result.history) - 1, "pairs": None, "budget": self.budget,
                    "query_path": self.query.query_path, "screens": result.screens, "active": len(result.active)}
        return self.conclude(result.mask, result.history, settings, stopped=result.converged)
