"""Adam on the mask, projected onto [0, 1] after every step (paper Sect. 4.1: lr 0.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..defaults import BETA1, BETA2, LR


@dataclass
class Adam:
    lr: float = LR
    beta1: float = BETA1
    beta2: float = BETA2
    eps: float = 1e-8
    _m: np.ndarray | None = field(default=None, repr=False)
    _v: np.ndarray | None = field(default=None, repr=False)
    _t: int = 0

    def step(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """One projected Adam step; returns the new ``x`` kept in [0, 1]."""
        if self._m is None:
            self._m = np.zeros_like(x)
            self._v = np.zeros_like(x)
        self._t += 1
        self._m = self.beta1 * self._m + (1 - self.beta1) * grad
        self._v = self.beta2 * self._v + (1 - self.beta2) * grad * grad
        m_hat = self._m / (1 - self.beta1**self._t)
        v_hat = self._v / (1 - self.beta2**self._t)
        return np.clip(x - self.lr * m_hat / (np.sqrt(v_hat) + self.eps), 0.0, 1.0)
