"""Losses to minimise: the model's part (queried) and the regulariser R_M (exact).

Model part, from scores of perturbed images (f softmax, z logits, k target, z0 logits of X):

* ``plain`` (Eq. 3):  -f_k
* ``ftc``   (Eq. 5):  -f_k + gamma * |mean_{i!=k}(z_i - z0_i)|
* ``fntc``  (Eq. 7):  sum_{i!=k} f_i + gamma * |z_k - z0_k|

R_M = lambda1 * TV_beta(M) + lambda2 * ||1 - M||_1, each term averaged over mask elements so
that the paper's lambda2 = 3 does not forbid every perturbation. R_M is a known function of M,
so its gradient is computed exactly instead of being estimated with queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..defaults import BETA, GAMMA, LAMBDA1, LAMBDA2
from ..errors import OptionError
from ..model.scores import Scores, TargetTerms

METHODS = ("ftc", "fntc", "plain")  # the losses, by the name of the method that minimises each


@dataclass(frozen=True)
class Objective:
    method: str = METHODS[0]
    lambda1: float = LAMBDA1
    lambda2: float = LAMBDA2
    beta: float = BETA
    gamma: float = GAMMA
    tv_eps: float = 1e-8  # keeps TV differentiable where the mask is flat

    def model_loss(self, scores: Scores | TargetTerms, target: int, reference_logits: np.ndarray) -> np.ndarray:
        """The queried part of the loss, one value per scored image (from scores, or the target's
        terms already reduced on the device)."""
        t = scores if isinstance(scores, TargetTerms) else scores.target(target)
        k, z0 = target, reference_logits
        if self.method == "plain":
            return -t.prob
        if self.method == "ftc":
            others0 = (z0.sum() - z0[k]) / (len(z0) - 1)  # mean_{i!=k}(z_i - z0_i) = mean(z_i) - mean(z0_i)
            return -t.prob + self.gamma * np.abs(t.others_mean - others0)
        if self.method == "fntc":
            return t.rest + self.gamma * np.abs(t.logit - z0[k])
        raise OptionError(f"unknown loss {self.method!r}: one of {', '.join(METHODS)}")

    def regularizer(self, mask: np.ndarray) -> tuple[float, np.ndarray]:
        """R_M and its exact gradient for one ``(h, w)`` mask."""
        tv, g_tv = total_variation(mask, self.beta, self.tv_eps)
        n = mask.size
        l1 = np.abs(1.0 - mask).sum() / n
        g_l1 = -np.sign(1.0 - mask) / n
        return self.lambda1 * tv + self.lambda2 * l1, self.lambda1 * g_tv + self.lambda2 * g_l1


def total_variation(mask: np.ndarray, beta: float = BETA, eps: float = 1e-8) -> tuple[float, np.ndarray]:
    """Mean over elements of ((dx)^beta + (dy)^beta)^(1/beta), forward differences, and its gradient."""
    m = np.asarray(mask, dtype=np.float64)
    dx = np.zeros_like(m)
    dy = np.zeros_like(m)
    dx[:-1, :] = m[1:, :] - m[:-1, :]
    dy[:, :-1] = m[:, 1:] - m[:, :-1]
    ax, ay = np.abs(dx), np.abs(dy)
    s = ax**beta + ay**beta + eps
    t = s ** (1.0 / beta) - eps ** (1.0 / beta)  # a flat mask has TV exactly 0
    n = m.size
    # d t / d dx = sign(dx) |dx|^(beta-1) * s^(1/beta - 1)
    common = s ** (1.0 / beta - 1.0)
    gx = np.sign(dx) * ax ** (beta - 1.0) * common
    gy = np.sign(dy) * ay ** (beta - 1.0) * common
    grad = np.zeros_like(m)
    grad[1:, :] += gx[:-1, :]
    grad[:-1, :] -= gx[:-1, :]
    grad[:, 1:] += gy[:, :-1]
    grad[:, :-1] -= gy[:, :-1]
    return float(t.sum() / n), grad / n
