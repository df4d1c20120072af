"""A batch's class scores as the losses read them: logits, probabilities, one class's terms."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

@dataclass(frozen=True)
class TargetTerms:
    """What the losses read of one class ``k`` per image (B,), float64: the explain loop needs no more."""

    prob: np.ndarray  # f_k
    rest: np.ndarray  # sum_{i != k} f_i, summed directly (no 1 - f_k cancellation when f_k is near 1)
    logit: np.ndarray  # z_k
    others_mean: np.ndarray  # mean_{i != k} z_i

    @staticmethod
    def concat(parts: Sequence["TargetTerms"]) -> "TargetTerms":
        if len(parts) == 1:
            return parts[0]
        return TargetTerms(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                             ("prob", "rest", "logit", "others_mean")))


class Scores:
    """Model outputs for a batch: ``raw`` as the model gave them; ``logits`` and ``probs`` (N, C) float64.

    ``logits`` and ``probs`` are computed on first use. The explain loop reads only
    :meth:`target`, one float32 pass over the batch: on a GPU a full float64 softmax of 256 x 1000
    scores per step is host work of the same order as the device's.
    """

    def __init__(self, raw: np.ndarray, kind: str = "logits"):
        raw = np.asarray(raw)
        self.raw = raw if raw.dtype in (np.float32, np.float64) else raw.astype(np.float32)
        self.kind = kind  # "logits" | "probabilities"

    @cached_property
    def logits(self) -> np.ndarray:
        raw = self.raw.astype(np.float64)
        if self.kind == "probabilities":  # centred log-probabilities stand in for logits
            logp = np.log(np.clip(raw, 1e-12, None))
            return logp - logp.mean(axis=1, keepdims=True)
        return raw

    @cached_property
    def probs(self) -> np.ndarray:
        if self.kind == "probabilities":
            raw = self.raw.astype(np.float64)
            return raw / raw.sum(axis=1, keepdims=True)
        return softmax(self.logits)

    def target(self, k: int) -> TargetTerms:
        """f_k, sum of the other f_i, z_k and the mean of the other z_i, per image."""
        n = self.raw.shape[1]
        if self.kind == "probabilities":
            f, z = self.probs, self.logits
            rest = np.delete(f, k, axis=1).sum(axis=1)  # not 1 - f_k: that cancels when f_k is near 1
            return TargetTerms(f[:, k], rest, z[:, k], (z.sum(axis=1) - z[:, k]) / (n - 1))
        z = self.raw
        e = z - z.max(axis=1, keepdims=True)
        np.exp(e, out=e)
        ek = e[:, k].astype(np.float64)
        e[:, k] = 0.0
        rest = e.sum(axis=1).astype(np.float64)  # positive terms, pairwise sum: float32 is exact enough
        total = rest + ek
        zk = z[:, k].astype(np.float64)
        return TargetTerms(ek / total, rest / total, zk, (z.sum(axis=1, dtype=np.float64) - zk) / (n - 1))

    @staticmethod
    def concat(parts: Sequence["Scores"]) -> "Scores":
        if len(parts) == 1:
            return parts[0]
        return Scores(np.concatenate([p.raw for p in parts]), parts[0].kind)


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` with its last row repeated up to ``size`` rows (a call of the batch's fixed shape)."""
    n = len(x)
    return x if n >= size else np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)

