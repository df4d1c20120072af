"""Blur-insertion: blur the top a% pixels of a heatmap as a hard mask and score the result.

The one place where a heatmap becomes a hard 0/1 blur mask, used for every method (bbx's
own, occlusion, random), so an equal-area comparison scores them all with the same operator:
h(X) where blurred, X elsewhere, with h the Gaussian blur of Eq. 1 and no soft edges. Soft
masks differ in how much they blur as well as where; at equal hard area only *where* counts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..result.metrics import top_mask
from ..model import BlackBox
from ..maths.perturb import BlurSpec, Perturber

#: Areas of the blur-insertion curve, in percent of the image's pixels.
AREAS = (0.5, 1.0, 2.0, 5.0, 10.0)


def hard_blur(pert: Perturber, blur_where: np.ndarray) -> np.ndarray:
    """``(B, H, W, 3)`` images (``(H, W, 3)`` for one map): h(X) where ``blur_where``, X elsewhere."""
    where = np.asarray(blur_where, dtype=bool)[..., None]
    return np.where(where, pert.blurred, pert.image)


def blur_top(
    model: BlackBox,
    source: Perturber | np.ndarray,
    heatmap: np.ndarray,
    fractions: Sequence[float],
    cls: int,
    blur_spec: BlurSpec = BlurSpec(),
) -> list[float]:
    """Probability of class ``cls`` after blurring the top ``fraction`` of ``heatmap``, per fraction.

    ``source`` is the image's :class:`Perturber` or its ``(H, W, 3)`` 0-1 model view (blurred
    with ``blur_spec``). One query per fraction. Ties are broken in raster order
    (:func:`bbx.result.metrics.top_mask`): where a heatmap marks fewer pixels than asked, the rest of
    the area is unmarked pixels from the top of the image.
    """
    return [float(p) for p in blur_top_probs(model, source, heatmap, fractions, blur_spec)[:, cls]]


def blur_top_probs(
    model: BlackBox,
    source: Perturber | np.ndarray,
    heatmap: np.ndarray,
    fractions: Sequence[float],
    blur_spec: BlurSpec = BlurSpec(),
) -> np.ndarray:
    """Every class's probability ``(len(fractions), classes)`` after blurring the top ``fraction``
    of ``heatmap``, as :func:`blur_top` scores them (one query per fraction): which class wins
    after the blur, too."""
    pert = source if isinstance(source, Perturber) else Perturber(np.asarray(source), blur_spec=blur_spec)
    if not len(fractions):
        return np.zeros((0, len(model.labels)))
    masks = np.stack([top_mask(heatmap, f) for f in fractions])
    return model.scores(hard_blur(pert, masks)).probs
