"""``active``: the paper's loss minimised on the few mask elements that can move, with exact line searches.

Why: M starts at 1 and is clipped there, and the L1 term holds an element at 1 unless blurring
it lowers the model's part of the loss by more than its L1 cost (lambda2 / n per unit). So the
gradient that matters is sparse, and a random-direction estimate (NES, SPSA) spends nearly all
of its queries on elements that will never move, its noise moving them anyway. The model is
deterministic, so the loss at a given mask is known exactly from one query: a step can be
*checked* before it is taken. The optimiser:

1. **screen**: M = 1 with one element lowered by ``screen_step``, one query per element (the
   model's loss at M = 1 is the image's own, already scored): the one-sided gain of blurring
   each element, occlusion at the mask's resolution;
2. **active set**: the elements whose gain exceeds ``threshold`` x their L1 cost, most gain
   first, at most ``max_active``, and their 4-neighbours while room is left (the TV term moves
   regions, not single elements);
3. **descent on the active set**: central differences on each active element (2 |A| queries)
   plus the exact gradient of R_M, projected on [0, 1]; ``trials`` step lengths along it scored
   in one batch, J(M) = model part (queried) + R_M (exact), the best kept only if it lowers J.
   The lengths follow the last accepted one (doubled when the longest won) and shrink by 4
   when none lowers J. With ``reuse``, a step that lowered nothing left the mask, and so the
   slopes, as they were: the next one scores only the lengths below those tried, no new probes;
4. when the step length falls below ``min_step`` the active set has converged: the screen is
   repeated at the current mask, and the run ends (converged) if no new element would pay,
   else continues on the enlarged set. It also ends when the budget is spent. With ``local``,
   that screen looks first only at the elements near those moved (and at earlier candidates
   that found no room), and screens every element only when those hold nothing new. With
   ``stall``, a descent whose last 3 steps gained little against its round's drop screens early
   (a re-screen is where new elements, and the large drops, come from); only a step length
   shrunk to ``min_step`` certifies convergence.

J never rises (only improving steps are taken), so the result is never worse than M = 1. No
random draws: the result is a function of the image, the model and the settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generator

import numpy as np

from .. import defaults as d
from .active_steps import Descent, Progress, RegFn

LossFn = Callable[[np.ndarray], np.ndarray]  # (B, h, w) masks -> (B,) model losses, one query each


@dataclass(frozen=True)
class ActiveSet:
    """The active optimiser's settings; each default is in :mod:`bbx.defaults` (``ACTIVE_*``)."""

    screen_step: float = d.ACTIVE_SCREEN_STEP
    step: float = d.ACTIVE_STEP
    threshold: float = d.ACTIVE_THRESHOLD
    max_active: int = d.ACTIVE_MAX_ACTIVE
    trials: int = d.ACTIVE_TRIALS
    first_length: float = d.ACTIVE_FIRST_LENGTH
    min_step: float = d.ACTIVE_MIN_STEP
    recheck: int = d.ACTIVE_RECHECK
    combine: bool = d.ACTIVE_COMBINE
    neighbours: bool = d.ACTIVE_NEIGHBOURS
    central: bool = d.ACTIVE_CENTRAL
    reuse: bool = d.ACTIVE_REUSE
    local: int = d.ACTIVE_LOCAL
    memory: int = d.ACTIVE_MEMORY
    stall: float = d.ACTIVE_STALL
    block_screen: int = d.ACTIVE_BLOCK_SCREEN
    room_steps: int = d.ACTIVE_ROOM_STEPS


@dataclass
class ActiveResult:
    mask: np.ndarray
    history: list[float]  # exact J after each step (J(1) first)
    queries: int
    converged: bool  # the step length shrank to min_step and a screen of every element found none that pays
    screens: int = 0
    active: list[int] = field(default_factory=list)  # flat indices of the final active set


def optimise(loss: LossFn, regularizer: RegFn, shape: tuple[int, int], budget: int, loss_at_ones: float,
             lambda2: float, settings: ActiveSet = ActiveSet(), progress: Progress | None = None) -> ActiveResult:
    """Minimise J(M) = loss(M) + R_M(M) over M in [0, 1]^shape from M = 1 with at most ``budget`` queries.

    ``loss_at_ones``: the model's loss at M = 1 (the image itself, scored by the caller);
    ``lambda2``: the L1 weight of R_M, which sets what a screened gain must exceed.
    :func:`optimise_steps` driven by ``loss``.
    """
    steps = optimise_steps(regularizer, shape, budget, loss_at_ones, lambda2, settings, progress)
    try:
        masks = next(steps)
        while True:
            masks = steps.send(loss(masks))
    except StopIteration as end:
        return end.value


def optimise_steps(regularizer: RegFn, shape: tuple[int, int], budget: int, loss_at_ones: float, lambda2: float,
                   settings: ActiveSet = ActiveSet(),
                   progress: Progress | None = None) -> Generator[np.ndarray, np.ndarray, ActiveResult]:
    """:func:`optimise` as a generator, for a caller that scores the probes itself (:mod:`bbx.evaluation.lockstep`
    scores many explanations' together): it yields each batch of probe masks ``(B, h, w)`` and is
    sent their model losses ``(B,)``, one query each; it returns the :class:`ActiveResult`.

    The steps of the module's docstring, each a method of :class:`~.active_steps.Descent`: a screen,
    then rounds of slopes on the active set and a line search along them, a re-screen whenever the
    step length shrinks to nothing."""
    d = Descent(settings, regularizer, shape, budget, loss_at_ones, lambda2, ActiveResult)
    found = yield from d.screen()
    if not found:  # None: the budget cannot pay for one screen; 0: at M = 1 no element pays its L1 cost
        return d.result(converged=found == 0 and d.fine)
    while True:
        probe = d.choose_probes()
        if probe is None:  # the budget cannot pay for another step
            break
        yield from d.slopes(probe)
        yield from d.line_search(d.direction())
        d.history.append(d.j)
        if progress is not None:
            progress(len(d.history) - 1, 0, d.j)
        d.check_stall()
        if d.length < settings.min_step:
            stop = yield from d.rescreen()
            if stop is not None:
                return d.result(converged=stop)
    return d.result(converged=False)
