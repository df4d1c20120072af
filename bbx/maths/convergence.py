"""Whether an optimised mask converged: the objective at M = 1 and at the end, and how noisy the end was.

J(M) = model part + R_M. Both ends are exact and cost no extra query: J(1) is the image's own
score (R_M(1) = 0) and J(M_end) is read off the final perturbed image, which every explanation
scores anyway. An explanation whose J(M_end) is not below J(1) found nothing the objective
rewards, however large its φ looks.

The noise measure reads the loss history of the last quarter of the steps: a straight line is
fitted to it; ``trend`` is the fitted change over that quarter and ``noise`` the residuals'
standard deviation. A run still descending (the fitted drop exceeds twice its standard error and
:data:`TOLERANCE` of the total drop) has not converged either. A plateau of a noisy estimator
(NES, SPSA) is where its noise stops it, not a certificate of the optimum: ``noise`` says how
large that noise was. An optimiser with a test of its own on the exact J (``stopped``: the active
estimator's step shrank to nothing and a screen found no element that pays) is converged by that
test, however the tail fell before it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

#: the last quarter's fitted drop, as a share of the whole drop from M = 1, that counts as still falling
TOLERANCE = 0.01


@dataclass(frozen=True)
class Convergence:
    objective_at_ones: float  # J(1): the image left alone
    objective_final: float  # J(M) of the returned mask
    converged: bool
    trend: float  # fitted change of the loss over the last quarter of the steps (negative: still falling)
    noise: float  # standard deviation of the loss around that fit (0 for exact values)
    reason: str  # one line: why converged is what it is
    suggested_budget: int | None = None  # queries that would do, when it did not converge

    def summary(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """What the CLI prints: one line either way."""
        if self.converged:
            return (f"converged: objective {self.objective_final:.4f} at the end, "
                    f"{self.objective_at_ones:.4f} at M = 1 ({self.reason})")
        budget = f"; try --budget {self.suggested_budget:,}" if self.suggested_budget else ""
        return (f"NOT converged: objective {self.objective_final:.4f} at the end, "
                f"{self.objective_at_ones:.4f} at M = 1 ({self.reason}){budget}")


def assess(at_ones: float, final: float, history: Sequence[float], queries: int,
           stopped: bool | None = None, scale: int = 2) -> Convergence:
    """Judge one run from J(1), J(M_end) and its loss history.

    ``stopped``: the optimiser's own verdict where it has one (True: it stopped because no step
    lowered J any more; False: the budget ran out first); None for a fixed number of noisy steps,
    judged by the history's last quarter. ``scale``: what the budget is multiplied by in the
    suggestion when it did not converge.
    """
    trend, noise, falling = tail_trend(history)
    suggestion = max(4, int(queries) * scale)
    if not final < at_ones - 1e-6 * max(1.0, abs(at_ones)):  # float32 scores: equal within rounding
        if stopped:  # the optimiser checked every element at M = 1: none pays, M = 1 is the answer
            return Convergence(at_ones, final, True, trend, noise, "no element pays at M = 1: M = 1 is the optimum")
        return Convergence(at_ones, final, False, trend, noise, "ended no lower than M = 1", suggestion)
    if stopped:  # the optimiser's own test, with exact J: however fast J fell before, no step lowers it now
        return Convergence(at_ones, final, True, trend, noise, "no step lowered J any more")
    if falling and -trend > TOLERANCE * (at_ones - final):
        why = "the budget ran out while steps still lowered J" if stopped is False else \
            "the loss was still falling in the last quarter of the steps"
        return Convergence(at_ones, final, False, trend, noise, why, suggestion)
    return Convergence(at_ones, final, True, trend, noise, "flat over the last quarter of the steps")


def tail_trend(history: Sequence[float]) -> tuple[float, float, bool]:
    """(fitted change over the last quarter, residual std, whether the fall is beyond 2 standard errors)."""
    h = np.asarray(history, dtype=np.float64)
    tail = h[-max(2, len(h) // 4):]
    if len(tail) < 3:
        return (float(tail[-1] - tail[0]) if len(tail) == 2 else 0.0), 0.0, False
    t = np.arange(len(tail), dtype=np.float64)
    slope, intercept = np.polyfit(t, tail, 1)
    resid = tail - (slope * t + intercept)
    noise = float(resid.std(ddof=2)) if len(tail) > 2 else 0.0
    se = noise / np.sqrt(((t - t.mean()) ** 2).sum()) if noise > 0 else 0.0
    change = float(slope * (len(tail) - 1))
    return change, noise, bool(slope < -2 * se) if se > 0 else bool(slope < 0)
