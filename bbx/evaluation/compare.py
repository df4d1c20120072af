"""Two models on one data set: per photo and in aggregate, from each model's records alone.

Both evaluations explain the same photos with the same method and settings, each through its own
model's preprocessing and labels. Top-1 classes are compared by name (two models may number their
classes differently). The explanations are compared on the mask grid (:func:`bbx.result.recurring.to_grid`),
so two inputs of different sizes still compare cell by cell: Pearson r of the two grids, and IoU
of their top 5 % cells among the marked ones (:func:`bbx.result.metrics.top_iou`). Photos are
listed most different first: a changed top-1 before an unchanged one, then the lowest r.
Recurring regions (:mod:`bbx.evaluation.recurring`) of one model that overlap none of the other's
(cell IoU below :data:`SAME_REGION`) are reported as the one model's alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import atomic_write, json_text
from ..result import recurring as rc
from ..result.metrics import mask_correlation, top_iou
from .recurring import Recurring, heatmap, primary

COMPARE_JSON = "compare.json"
#: Two models' regions whose cells overlap at least this much (IoU) are the same region.
SAME_REGION = 0.3
TOP_FRACTION = 0.05


@dataclass
class Pair:
    """One photo through both models."""

    image: str
    top1_a: str
    top1_b: str
    prob_a: float  # each model's probability of its own top-1
    prob_b: float
    r: float  # Pearson r of the two heatmaps' grids
    iou: float  # IoU of their top 5 % cells

    @property
    def agree(self) -> bool:
        return self.top1_a == self.top1_b

    @property
    def confidence_change(self) -> float:
        """p_B(top-1) - p_A(top-1): the same class's confidence where they agree."""
        return self.prob_b - self.prob_a


@dataclass
class Comparison:
    name_a: str
    name_b: str
    method: str
    pairs: list[Pair]  # most different first
    only_a: list[str]  # recurring-region sentences of A with no match in B
    only_b: list[str]
    lines_a: list[str]
    lines_b: list[str]
    missing: int = 0  # photos explained by one model only

    @property
    def agreement(self) -> float:
        return float(np.mean([p.agree for p in self.pairs])) if self.pairs else float("nan")

    def aggregate(self) -> dict[str, float]:
        agree = [p for p in self.pairs if p.agree]
        return {
            "photos": len(self.pairs),
            "top1_agreement": self.agreement,
            "mean_confidence_change_where_agreeing": _mean([p.confidence_change for p in agree]),
            "median_r": _median([p.r for p in self.pairs]),
            "median_top5_iou": _median([p.iou for p in self.pairs]),
        }

    def lines(self) -> list[str]:
        a = self.aggregate()
        text = [f"{self.name_b} against {self.name_a} on {a['photos']} photos ({self.method}): top-1 agrees on "
                f"{100 * a['top1_agreement']:.0f} %, p(top-1) changes by {a['mean_confidence_change_where_agreeing']:+.3f} "
                f"on average where it agrees; explanations: median r {a['median_r']:.2f}, median IoU of the top 5 % "
                f"{a['median_top5_iou']:.2f}."]
        text += [f"Only {self.name_a}: {s}" for s in self.only_a] + [f"Only {self.name_b}: {s}" for s in self.only_b]
        if not self.only_a and not self.only_b:
            text.append("No recurring region of one model that the other lacks.")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_a": self.name_a, "model_b": self.name_b, "method": self.method,
            "aggregate": {k: _finite(v) for k, v in self.aggregate().items()},
            "missing": self.missing, "lines": self.lines(), "recurring_a": self.lines_a, "recurring_b": self.lines_b,
            "photos": [{"image": p.image, "top1_a": p.top1_a, "top1_b": p.top1_b, "prob_a": p.prob_a,
                        "prob_b": p.prob_b, "agree": p.agree, "confidence_change": p.confidence_change,
                        "r": _finite(p.r), "top5_iou": _finite(p.iou)} for p in self.pairs],
        }

    def write(self, out: str | Path) -> Path:
        data = self.to_dict()
        return atomic_write(Path(out) / COMPARE_JSON, lambda fh: fh.write(json_text(data, indent=1)), mode="w")


def _finite(v: float) -> float | None:
    """JSON has no NaN: an undefined number is null."""
    return v if math.isfinite(v) else None


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _median(values: Sequence[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return float(np.median(vals)) if vals else float("nan")


def pair(rec_a: dict[str, Any], rec_b: dict[str, Any]) -> Pair:
    grid_a, grid_b = rc.to_grid(heatmap(rec_a)), rc.to_grid(heatmap(rec_b))
    return Pair(rec_a["image"], rec_a["top1_name"], rec_b["top1_name"], float(rec_a["top1_prob_before"]),
                float(rec_b["top1_prob_before"]), mask_correlation([grid_a, grid_b]),
                top_iou([grid_a, grid_b], TOP_FRACTION))


def compare(records_a: Sequence[dict[str, Any]], records_b: Sequence[dict[str, Any]], method: str,
            recurring_a: Recurring, recurring_b: Recurring, names: tuple[str, str] = ("A", "B")) -> Comparison:
    """Every photo both models explained with ``method`` (first seed), most different first."""
    by_b = {r["image"]: r for r in primary(records_b, method)}
    recs_a = primary(records_a, method)
    pairs = [pair(rec, by_b[rec["image"]]) for rec in recs_a if rec["image"] in by_b]
    pairs.sort(key=lambda p: (p.agree, p.r if math.isfinite(p.r) else 2.0, p.image))
    missing = len(recs_a) + len(by_b) - 2 * len(pairs)
    return Comparison(names[0], names[1], method, pairs, unmatched(recurring_a, recurring_b),
                      unmatched(recurring_b, recurring_a), recurring_a.lines(), recurring_b.lines(), missing)


def unmatched(mine: Recurring, theirs: Recurring) -> list[str]:
    """Sentences of ``mine``'s regions that overlap none of ``theirs``'s (in any group)."""
    other = [f.region.cells for _, f in theirs.flagged]
    return [f.sentence(g.name, g.scan.p_floor) for g, f in mine.flagged
            if all(rc.iou(f.region.cells, cells) < SAME_REGION for cells in other)]
