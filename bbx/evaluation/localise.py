"""A job's ground-truth localisation: its heatmap against the photo's truth region, and the region's own φ.

The heatmap 1 - M' is brought back onto the photo at the photo's size through the inverse map of
preprocessing (:meth:`bbx.result.explanation.Explanation.on_photo`), where the truth lives. The
reference φ blurs the truth region alone, brought forward onto the model's input the way the photo
was (:func:`region_view`), and scores it once: one query per job, counted in the record's
``truth.queries`` and in the evaluation's total.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..defaults import POINTING_TOLERANCE
from ..maths.perturb import Perturber
from ..model import BlackBox
from ..preprocess import geometry, prepare
from ..result.explanation import Explanation
from ..result.localisation import LOCALISATION, localisation, pointing_metric
from ..result.metrics import phi

TRUTH_QUERIES = 1  # the region's own φ: one image scored per job


def truth_fields(model: BlackBox, e: Explanation, region: np.ndarray, pert: Perturber,
                 tolerance: float = POINTING_TOLERANCE) -> dict[str, Any]:
    """The record's ``truth`` entry: every localisation metric, the tolerance, and the region's own φ."""
    back = e.on_photo()
    heat = np.asarray(e.heatmap) if back is None else back[0]
    metrics = (pointing_metric(tolerance), *LOCALISATION[1:])
    scores = localisation(heat, region, metrics)
    soft = region_view(region, model) if back is not None else region.astype(np.float32)
    p_after = float(model.scores(blur_where(pert, soft)[None]).probs[0][e.top1])
    return {**{k: round(v, 6) for k, v in scores.items()}, "tolerance_px": tolerance,
            "phi": phi(e.top1_prob_before, p_after), "top1_prob_after": p_after, "queries": TRUTH_QUERIES}


def region_view(region: np.ndarray, model: BlackBox) -> np.ndarray:
    """The photo-size region as the model sees it: resized and cropped as the photo was (soft at its
    edges, 0-1), 0 on the padding the photo does not cover."""
    spec = model.spec
    rgb = np.repeat((np.asarray(region, dtype=np.uint8) * 255)[..., None], 3, axis=2)
    soft = prepare(rgb, spec)[..., 0]
    g = geometry(region.shape, spec)
    inside = np.zeros(soft.shape, dtype=bool)
    inside[g.y.start:g.y.stop, g.x.start:g.x.stop] = True
    return np.where(inside, soft, 0.0).astype(np.float32)


def blur_where(pert: Perturber, amount: np.ndarray) -> np.ndarray:
    """X where ``amount`` is 0, h(X) where it is 1, blended between: Q(X; 1 - amount)."""
    return pert.blurred + pert.delta * (1.0 - np.asarray(amount, dtype=np.float32))[..., None]
