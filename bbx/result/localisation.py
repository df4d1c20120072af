"""Ground-truth localisation: does a heatmap of undesirable pixels point at a known region?

Each metric is a small self-describing :class:`~bbx.result.metrics.Metric` called as
``metric(heatmap, region)``: ``heatmap`` is H×W at the photo's own size, higher = more
undesirable; ``region`` is an H×W boolean map of where the truth says the undesirable pixels are.
Definitions, tie rules and what chance scores: docs/localisation.md.

* :func:`pointing_game` — the heatmap's maximum within ``tolerance`` px of the region (Zhang et al. 2018).
* :func:`relevance_mass` — share of the positive heatmap mass inside the region (Arras et al. 2022),
  and :func:`relevance_mass_lift`, that share over the region's share of the photo.
* :func:`top_share` — share of the top k % heatmap pixels inside the region (Quantus' top-k intersection).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..defaults import POINTING_TOLERANCE, TOP_PERCENTS
from .metrics import Metric


def check_region(heatmap: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pair as float64 heatmap and boolean region; ValueError unless same 2-D shape and a region."""
    heat = np.asarray(heatmap, dtype=np.float64)
    mask = np.asarray(region).astype(bool)
    if heat.ndim != 2 or heat.shape != mask.shape:
        raise ValueError(f"heatmap {heat.shape} and truth region {mask.shape} must be the same H x W")
    if not mask.any():
        raise ValueError("the truth region is empty")
    return heat, mask


def area_share(region: np.ndarray) -> float:
    """Share of the photo's pixels inside the region: what a uniform heatmap scores on mass and top-k."""
    return float(np.asarray(region, dtype=bool).mean())


def near_region(region: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels within ``tolerance`` px (Euclidean, pixel centres) of a region pixel, the region included."""
    if tolerance <= 0:
        return np.asarray(region, dtype=bool)
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~np.asarray(region, dtype=bool)) <= tolerance


def pointing_game(heatmap: np.ndarray, region: np.ndarray, tolerance: float = POINTING_TOLERANCE) -> float:
    """1 if the heatmap's maximum lies within ``tolerance`` px of the region, else 0.

    Ties: the share of the tied maximal pixels near the region, i.e. the expected hit when one of
    them is picked uniformly at random. A hard-cell method's maximum is often a whole cell, and
    Quantus' "any tied maximum inside" would let a flat heatmap always hit. A heatmap with no
    positive value points nowhere: 0.
    """
    heat, mask = check_region(heatmap, region)
    top = heat.max()
    if top <= 0:
        return 0.0
    maxima = heat == top
    return float(near_region(mask, tolerance)[maxima].mean())


def relevance_mass(heatmap: np.ndarray, region: np.ndarray) -> float:
    """Σ positive heat inside / Σ positive heat (CLEVR-XAI's relevance mass accuracy); 0 with no positive heat."""
    heat, mask = check_region(heatmap, region)
    positive = np.clip(heat, 0.0, None)
    total = positive.sum()
    return float(positive[mask].sum() / total) if total > 0 else 0.0


def relevance_mass_lift(heatmap: np.ndarray, region: np.ndarray) -> float:
    """relevance_mass / area share of the region: 1 = no better than a uniform heatmap."""
    return relevance_mass(heatmap, region) / area_share(region)


def top_share(heatmap: np.ndarray, region: np.ndarray, percent: float) -> float:
    """Share of the top ``percent`` % heatmap pixels (at least one) that lie inside the region.

    Ties at the cut are shared: of the pixels equal to the k-th value, each counts in proportion
    to how many of them the top k still needs (the expected share under a random tie-break), so
    no raster order decides, and a flat heatmap scores the region's area share. The best possible
    score is min(1, region pixels / k).
    """
    heat, mask = check_region(heatmap, region)
    flat, inside = heat.ravel(), mask.ravel()
    k = max(1, int(round(percent / 100.0 * flat.size)))
    cut = np.partition(flat, flat.size - k)[flat.size - k]
    above, tied = flat > cut, flat == cut
    needed = k - int(above.sum())
    from_ties = needed * inside[tied].sum() / tied.sum()
    return float((inside[above].sum() + from_ties) / k)


def pointing_metric(tolerance: float = POINTING_TOLERANCE) -> Metric:
    return Metric("pointing_game", True,
                  f"heatmap maximum within {tolerance:g} px of the truth region (1 hit, 0 miss; ties shared)",
                  partial(pointing_game, tolerance=tolerance))


def top_metric(percent: float) -> Metric:
    return Metric(f"top{percent:g}_share", True,
                  f"share of the top {percent:g}% heatmap pixels inside the truth region",
                  partial(top_share, percent=percent))


POINTING_GAME = pointing_metric()
RELEVANCE_MASS = Metric("relevance_mass", True, "share of the positive heatmap mass inside the truth region "
                        "(Arras et al. 2022)", relevance_mass)
RELEVANCE_MASS_LIFT = Metric("relevance_mass_lift", True, "relevance_mass over the region's area share "
                             "(1 = a uniform heatmap)", relevance_mass_lift)
TOP_SHARES = tuple(top_metric(p) for p in TOP_PERCENTS)
LOCALISATION = (POINTING_GAME, RELEVANCE_MASS, RELEVANCE_MASS_LIFT, *TOP_SHARES)


def localisation(heatmap: np.ndarray, region: np.ndarray, metrics=LOCALISATION) -> dict[str, float]:
    """Every metric's value on one heatmap, by name, and the region's area share (what chance scores)."""
    heat, mask = check_region(heatmap, region)
    return {"region_share": area_share(mask), **{m.name: m(heat, mask) for m in metrics}}
