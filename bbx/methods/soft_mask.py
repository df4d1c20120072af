"""The paper's optimisation of a soft mask M, shared by ftc, fntc and plain (their losses differ).

image -> Q(X; M) -> query the model -> objective -> optimiser, from M = 1. With ``estimator``
``active`` (the default) :mod:`bbx.maths.active` screens the mask's elements and takes only checked
steps on those that can move, within the budget (:class:`~.active_run.ActiveRun`); with ``nes``
or ``spsa`` the model's part
of the gradient is estimated from each step's antithetic probes, sent in one batch, the
regulariser's is exact, and Adam steps for ``iterations`` steps. Either way the result carries
whether it converged (:mod:`bbx.maths.convergence`).

With ``nes`` or ``spsa``, :class:`SoftMaskRun` is the loop as a stepper: :meth:`~SoftMaskRun.run`
steps with the run's own query (the device paths where they apply), and :mod:`bbx.evaluation.lockstep` steps
many runs through :meth:`~SoftMaskRun.probes` and :meth:`~SoftMaskRun.feed`, their probes scored
in shared batches. Both go through the same estimate, regulariser and Adam step, so a run's
numbers do not depend on who scored its probes. :class:`~.active_run.ActiveRun` is ``active``'s
stepper, with the same protocol: :class:`Stepper` makes the one the estimator needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ExplainConfig
from ..maths.estimate import Draw, Estimator, background
from ..maths.optimize import Adam
from ..model import Scores, TargetTerms
from ..result.explanation import Explanation
from .active_run import ActiveRun
from .context import Context
from .soft_run import SoftMaskBase

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


class SoftMaskRun(SoftMaskBase):
    """One explanation's optimisation in progress: its mask, Adam state, directions and history.

    ``shared``: its probes are scored by someone else (:mod:`bbx.evaluation.lockstep`) in batches with other
    runs', so its query takes the host path (:func:`~bbx.methods.soft_run.shared_path`: ``numpy``;
    ``reference`` for integer inputs), which builds model-format images that can be concatenated;
    a device path is refused.
    """

    def __init__(self, ctx: Context, cfg: ExplainConfig, loss: str, shared: bool = False):
        self.iterations, self.pairs = cfg.plan()
        self.estimator = Estimator(cfg.estimator, self.pairs, cfg.step, cfg.resolution, dtype="float32")  # what MaskQuery reads
        shape = (cfg.mask_size, cfg.mask_size)
        self._directions = self.estimator.stream(np.random.default_rng(cfg.seed), shape, self.iterations)  # drawn during the set-up
        super().__init__(ctx, cfg, loss, shared)
        self._on_device = (not shared) and self.query.pairs_on_device(self.pairs)

        self.mask = np.ones(shape, dtype=np.float64)
        self.adam = Adam(lr=cfg.lr, beta1=cfg.beta1)
        self.history: list[float] = []
        self.steps_done = 0
        self._drawn: Draw | None = None  # the directions of the step whose probes are out
        # R_M is exact and needs M alone: each step's is computed on the worker while the model runs,
        # queued behind no draw but the one that step waits for anyway
        self._regulariser = background(self.objective.regularizer, self.mask)

    @property
    def done(self) -> bool:
        return self.steps_done >= self.iterations

    # -- stepped by someone else: the probes out, their scores in ------------------------------------
    def probes(self) -> np.ndarray:
        """This step's ``2 P`` probe masks ``(2P, h, w)``; :meth:`feed` takes their scores, in order."""
        if self._drawn is not None:
            raise RuntimeError("the probes of this step are out already: feed their scores first")
        self._drawn = next(self._directions)
        return self.estimator.probes(self.mask, self._drawn.u)

    def feed(self, scores: Scores | TargetTerms) -> None:
        """The scores of :meth:`probes`' masks: finish the step."""
        drawn, self._drawn = self._drawn, None
        if drawn is None:
            raise RuntimeError("no probes are out: call probes() first")
        values = self.objective.model_loss(scores, self.target, self._z0)
        self._advance(*self.estimator.gradient(values, drawn.u))

    # -- stepped alone: this run's own query -----------------------------------------------------------
    def step(self) -> None:
        """One step, its probes scored by this run's query (formed on the device where it can)."""
        drawn = next(self._directions)
        on_device = self._pairs_loss if self._on_device else None
        self._advance(*self.estimator.estimate(self._model_loss, self.mask, u=drawn, pairs_loss=on_device))

    def run(self) -> Explanation:
        while not self.done:
            self.step()
        return self.finish()

    def _model_loss(self, masks: np.ndarray) -> np.ndarray:
        return self.objective.model_loss(self.query(masks), self.target, self._z0)

    def _pairs_loss(self, centre: np.ndarray, offsets: np.ndarray) -> np.ndarray:  # probes formed on the device
        return self.objective.model_loss(self.query.antithetic(centre, offsets), self.target, self._z0)

    def _advance(self, g_model: np.ndarray, value: float) -> None:
        reg, g_reg = self._regulariser.result()
        self.mask = self.adam.step(self.mask, g_model + g_reg)
        self.steps_done += 1
        if self.steps_done < self.iterations:
            self._regulariser = background(self.objective.regularizer, self.mask)
        self.history.append(value + reg)
        self.ctx.report(self.steps_done, self.iterations, self.history[-1])

    def finish(self) -> Explanation:
        """The explanation (one more query: the perturbed image) and whether it converged."""
        settings = {"iterations": self.iterations, "pairs": self.pairs, "query_path": self.query.query_path,
                    "probes": "graph" if self._on_device else "host"}  # who formed the antithetic probes
        return self.conclude(self.mask, self.history, settings, stopped=None, scale=NES_SCALE)


@dataclass(frozen=True)
class Stepper:
    """A soft-mask method's ``stepper`` (:class:`~bbx.methods.registry.Method`): a shared
    :class:`~.active_run.ActiveRun` for ``active``, a shared :class:`SoftMaskRun` for nes and spsa."""

    loss: str

    def accepts(self, cfg: ExplainConfig) -> bool:
        return True  # every estimator steps

    def __call__(self, ctx: Context, cfg: ExplainConfig) -> SoftMaskRun | ActiveRun:
        if cfg.estimator == "active":
            return ActiveRun(ctx, cfg, self.loss, shared=True)
        return SoftMaskRun(ctx, cfg, self.loss, shared=True)


def optimise(ctx: Context, cfg: ExplainConfig, loss: str) -> Explanation:
    """Minimise ``loss`` (ftc, fntc or plain: :class:`~bbx.maths.objective.Objective`) over the mask."""
    if cfg.estimator == "active":
        return ActiveRun(ctx, cfg, loss).run()
    return SoftMaskRun(ctx, cfg, loss).run()
