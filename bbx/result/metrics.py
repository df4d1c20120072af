"""Metrics as small self-describing objects (name, direction), after Quantus.

* :data:`PHI` — relative confidence gain of the top-1 class, paper Eq. 8 (Table 1).
* :data:`UNDESIRABLE_RATIO` — share of pixels with heatmap 1-M' above 0.6 (Table 2).
* :data:`MASK_CORRELATION` / :data:`TOP_IOU` — agreement of masks across seeds (Fig. 3 vs 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Sequence

import numpy as np

from ..defaults import THRESHOLD


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    description: str
    fn: Callable[..., float]

    def __call__(self, *args, **kwargs) -> float:
        return float(self.fn(*args, **kwargs))


def phi(prob_before: float, prob_after: float) -> float:
    """100 * (f_h(Q) - f_h(X)) / (1 - f_h(X)) for the top-1 class h of X."""
    residual = max(1.0 - prob_before, 1e-12)
    return 100.0 * (prob_after - prob_before) / residual




def undesirable_ratio(heatmap: np.ndarray, threshold: float = THRESHOLD) -> float:
    return float((np.asarray(heatmap) > threshold).mean())


def mask_correlation(masks: Sequence[np.ndarray]) -> float:
    """Mean pairwise Pearson correlation (constant masks count as 0)."""
    vals = []
    for a, b in combinations(masks, 2):
        a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
        if a.std() == 0 or b.std() == 0:
            vals.append(1.0 if np.array_equal(a, b) else 0.0)
        else:
            vals.append(float(np.corrcoef(a, b)[0, 1]))
    return float(np.mean(vals)) if vals else float("nan")


def top_mask(heatmap: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean map of the ``fraction`` highest heatmap pixels (ties broken by position)."""
    flat = np.ravel(heatmap)
    k = max(1, int(round(fraction * flat.size)))
    idx = np.argsort(-flat, kind="stable")[:k]
    out = np.zeros(flat.size, dtype=bool)
    out[idx] = True
    return out.reshape(np.shape(heatmap))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def top_iou(heatmaps: Sequence[np.ndarray], fraction: float = 0.05) -> float:
    """Mean pairwise IoU of the top ``fraction`` pixels of each heatmap, among pixels marked at all (> 0).

    A learned mask is exactly 1 (heatmap exactly 0) wherever the optimizer left it alone; when
    less than ``fraction`` of the image is marked, :func:`top_mask` fills up with unmarked
    pixels in raster order, the same ones for every seed, which must not count as agreement.
    """
    tops = [top_mask(h, fraction) & (np.asarray(h) > 0) for h in heatmaps]
    vals = [iou(a, b) for a, b in combinations(tops, 2)]
    return float(np.mean(vals)) if vals else float("nan")


PHI = Metric("phi", True, "relative gain of the top-1 probability, 100*(f(Q)-f(X))/(1-f(X)) (Eq. 8)", phi)
UNDESIRABLE_RATIO = Metric("undesirable_ratio", False, "share of pixels with heatmap > 0.6 (Table 2)",
                           undesirable_ratio)
MASK_CORRELATION = Metric("mask_correlation", True, "mean pairwise Pearson r of masks across seeds",
                          mask_correlation)
TOP_IOU = Metric("top5_iou", True, "mean pairwise IoU of the top 5% heatmap pixels across seeds", top_iou)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its Student-t confidence interval (NaN half-width below 2 values).

    t rather than 1.96: evaluations often have a handful of images, where the normal
    approximation would claim a CI about 2x too narrow (n = 3: t = 4.30 vs 1.96).
    """
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size < 2:
        return float(v.mean()), float("nan")
    from scipy.stats import t

    half = t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(half)
