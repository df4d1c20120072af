"""The ground-truth localisation columns of an evaluation's tables, from the records' ``truth`` entries.

As for φ, an image's seeds are averaged first; means and 95% Student-t intervals
(:func:`bbx.result.metrics.mean_ci`) are over the images whose every run has a truth entry. The
truth region's own φ leaves out the images whose top-1 residual is too small to read φ, as φ does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..result.findings import phi_readable
from ..result.localisation import LOCALISATION
from ..result.metrics import mean_ci

METRICS = tuple(m.name for m in LOCALISATION)
#: the reference: blurring the truth region alone (its own φ), and the region's share of the photo
REFERENCE = ("phi", "region_share")
HEADERS = {"pointing_game": "pointing game", "relevance_mass": "relevance mass", "relevance_mass_lift": "mass lift",
           "top1_share": "top 1% in", "top5_share": "top 5% in", "top10_share": "top 10% in",
           "phi": "φ truth region", "region_share": "region %"}

Stats = dict[str, tuple[float, float]]  # column -> (mean, 95% CI half-width)


def truth_means(by_image: dict[str, list[dict[str, Any]]]) -> Stats:
    """Mean and CI of every metric and of the reference, over the images with a truth; {} when none has."""
    have = [rs for rs in by_image.values() if all(isinstance(r.get("truth"), dict) for r in rs)]
    if not have:
        return {}
    out = {key: mean_ci([_seed_mean(rs, key) for rs in have]) for key in METRICS + ("region_share",)}
    out["phi"] = mean_ci([_seed_mean(rs, "phi") for rs in have if phi_readable(rs[0]["top1_prob_before"])])
    out["images"] = (float(len(have)), float("nan"))
    return out


def _seed_mean(runs: list[dict[str, Any]], key: str) -> float:
    values = [r["truth"].get(key) for r in runs]
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def cells(rows: list[Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the localisation table of ``rows`` (summary Rows with ``truth`` stats);
    no body when none has any."""
    keys = METRICS + REFERENCE
    head = ["method", "images", "φ ± 95% CI", *[HEADERS[k] for k in keys]]
    body = [[r.method, f"{r.truth['images'][0]:.0f}", _cell(r.phi, r.phi_ci, ".1f"),
             *[_cell(*r.truth[k], ".1f" if k == "phi" else ".2f", 100 if k == "region_share" else 1) for k in keys]]
            for r in rows if r.truth]
    return head, body


def markdown(rows: list[Any], tolerance: Any) -> list[str]:
    """The localisation section of summary.md, or [] when no row has a truth."""
    head, body = cells(rows)
    if not body:
        return []
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return ["## Ground-truth localisation", "", *lines, "", legend(tolerance), ""]


def _cell(mean: float, ci: float, fmt: str = ".2f", scale: float = 1) -> str:
    if not math.isfinite(mean):
        return "–"
    return format(scale * mean, fmt) + (f" ± {scale * ci:{fmt}}" if math.isfinite(ci) else "")


def legend(tolerance: Any) -> str:
    return ("Against each photo's truth region (--truth), on the heatmap brought back to the photo's size: "
            f"pointing game = the heatmap's maximum within {tolerance} px of the region (tied maxima share the "
            "hit); relevance mass = share of the positive heatmap inside the region, mass lift = that share over "
            "the region's area share (1 = a uniform heatmap); top k% in = share of the top k% heatmap pixels "
            "inside the region (a uniform heatmap scores the region's share). φ truth region: φ after blurring "
            "the truth region alone, the reference a method's φ may be read against (one query per run, not in "
            "queries/run). Means ± 95% Student-t intervals over images, seeds averaged first; docs/localisation.md.")


def csv_header() -> list[str]:
    return [c for k in METRICS + REFERENCE for c in (f"truth_{k}", f"truth_{k}_ci95")]


def csv_cells(stats: Stats) -> list[float]:
    nan = (float("nan"), float("nan"))
    return [v for k in METRICS + REFERENCE for v in stats.get(k, nan)]


def tolerance_of(records: list[dict[str, Any]]) -> str:
    """The pointing game's tolerance as the records state it ("15", or "10, 15" when they differ)."""
    found = sorted({r["truth"].get("tolerance_px") for r in records if isinstance(r.get("truth"), dict)}, key=str)
    return ", ".join(f"{t:g}" if isinstance(t, (int, float)) else str(t) for t in found)
