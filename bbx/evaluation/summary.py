"""Tables of an evaluation, computed from its JSON lines alone (Markdown and CSV).

Seeds of one image are not independent samples: each image's runs are averaged first, and
means and 95% confidence intervals (Student t, :func:`bbx.result.metrics.mean_ci`) are over images.
φ depends strongly on how sure the model already is (its residual 1 - f_h(X) is the
denominator), so the same table is repeated per bin of the original top-1 probability.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .. import methods as registry
from .._io import atomic_write
from ..defaults import PHI_MIN_RESIDUAL
from ..result.findings import phi_readable
from ..result.metrics import mask_correlation, mean_ci, top_iou
from ..maths.perturb import upsample
from . import truth_table

#: Edges of the confidence bins (original top-1 probability); the last bin includes 1.
CONFIDENCE_BINS = (0.0, 0.5, 0.8, 0.95, 1.0)
REFERENCE = "occlusion"  # the method every other one is compared with at equal area
BELOW = "▾"


@dataclass(frozen=True)
class Row:
    """One method over a set of images."""

    method: str
    images: int
    runs: int
    phi: float  # mean over images of the seed-mean φ (Eq. 8), operating point
    phi_ci: float  # half-width of the 95% t-interval over images
    unstable: int  # images left out of φ: top-1 residual 1 - p below PHI_MIN_RESIDUAL (φ measures noise)
    delta_p: float  # mean over images of the top-1 probability's change, percentage points (every image)
    undesirable: float  # percent of pixels above 0.6: the operating point's area
    correlation: float  # mean pairwise Pearson r of the masks across seeds
    top_iou: float  # mean pairwise IoU of the top 5% (marked) pixels across seeds
    queries: float  # per run, the method's own
    seconds: float  # per run, the method's own
    phi_at_area: tuple[float, ...]  # blur-insertion curve
    below_reference: tuple[bool, ...]  # φ at that area under occlusion's, on the images both have
    converged: float = float("nan")  # share of runs whose objective converged (bbx.maths.convergence); nan: none report it
    objective_gain: float = float("nan")  # mean J(1) - J(M) over runs that report it: > 0 = below M = 1
    truth: dict[str, tuple[float, float]] = field(default_factory=dict)  # localisation (truth_table); {}: no truth


@dataclass(frozen=True)
class Summary:
    areas: tuple[float, ...]
    images: int
    overall: list[Row]
    by_confidence: list[tuple[str, list[Row]]]
    devices: tuple[str, ...] = ()  # where the runs' seconds were measured ("cpu", "cuda")
    tolerance: str = ""  # the pointing game's, in px, as the records state it ("" without a truth)

    def markdown(self) -> str:
        return to_markdown(self)

    def csv(self) -> str:
        return to_csv(self)

    def write(self, out: str | Path) -> tuple[Path, Path]:
        """``summary.md`` and ``summary.csv`` in ``out``, each written atomically."""
        out = Path(out)
        md, text = self.markdown(), self.csv()
        return (atomic_write(out / "summary.md", lambda fh: fh.write(md), mode="w"),
                atomic_write(out / "summary.csv", lambda fh: fh.write(text), mode="w"))


def summarise(records: Iterable[dict[str, Any]], bins: Sequence[float] = CONFIDENCE_BINS) -> Summary:
    """All tables from records (one per image x method x seed; a repeated key counts once)."""
    unique = {(r["image"], r["method"], int(r["seed"])): r for r in records}
    recs = list(unique.values())
    areas = tuple(recs[0]["areas"]) if recs else ()
    confidence = {r["image"]: r["top1_prob_before"] for r in recs}
    overall = _rows(recs, areas)
    by_conf = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        last = hi == bins[-1]
        inside = {img for img, p in confidence.items() if lo <= p < hi or (last and p == hi)}
        if inside:
            label = f"[{lo:g}, {hi:g}{']' if last else ')'}"
            by_conf.append((label, _rows([r for r in recs if r["image"] in inside], areas)))
    devices = tuple(sorted({r["device"] for r in recs if r.get("device")}))
    return Summary(areas=areas, images=len(confidence), overall=overall, by_confidence=by_conf, devices=devices,
                   tolerance=truth_table.tolerance_of(recs))


def _rows(recs: list[dict[str, Any]], areas: tuple[float, ...]) -> list[Row]:
    groups: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in recs:
        groups[r["method"]][r["image"]].append(r)
    curves = {m: {img: np.mean([r["phi_at_area"] for r in runs], axis=0) for img, runs in by_img.items()
                  if _stable(runs)}
              for m, by_img in groups.items()}
    order = registry.names()  # the registry's order; methods no longer registered last
    methods = sorted(groups, key=lambda m: (order.index(m) if m in order else len(order), m))
    return [_row(m, groups[m], curves[m], curves.get(REFERENCE) if m != REFERENCE else None, areas)
            for m in methods]


def _row(method: str, by_image: dict[str, list[dict[str, Any]]], curve: dict[str, np.ndarray],
         reference: dict[str, np.ndarray] | None, areas: tuple[float, ...]) -> Row:
    runs = [r for rs in by_image.values() for r in rs]
    stable = [rs for rs in by_image.values() if _stable(rs)]
    phi, ci = mean_ci([np.mean([r["phi"] for r in rs]) for rs in stable])
    deltas = [np.mean([r["top1_prob_after"] - r["top1_prob_before"] for r in rs]) for rs in by_image.values()
              if all("top1_prob_after" in r for r in rs)]
    multi = [rs for rs in by_image.values() if len(rs) >= 2]
    below: tuple[bool, ...] = (False,) * len(areas)
    if reference:
        common = [img for img in curve if img in reference]
        if common:
            mine = np.mean([curve[img] for img in common], axis=0)
            ref = np.mean([reference[img] for img in common], axis=0)
            below = tuple(bool(a < b) for a, b in zip(mine, ref))
    return Row(
        method=method,
        images=len(by_image),
        runs=len(runs),
        phi=phi,
        phi_ci=ci,
        unstable=len(by_image) - len(stable),
        delta_p=100 * float(np.mean(deltas)) if deltas else float("nan"),
        undesirable=100 * float(np.mean([np.mean([r["undesirable_ratio"] for r in rs]) for rs in by_image.values()])),
        correlation=_nanmean([mask_correlation([np.asarray(r["mask"]) for r in rs]) for rs in multi]),
        top_iou=_nanmean([top_iou([_heatmap(r) for r in rs]) for rs in multi]),
        queries=float(np.mean([r["queries"] for r in runs])),
        seconds=float(np.mean([r["seconds"] for r in runs])),
        phi_at_area=(tuple(float(v) for v in np.mean(list(curve.values()), axis=0)) if curve
                     else (float("nan"),) * len(areas)),
        below_reference=below,
        converged=_nanmean([float(r["converged"]) for r in runs if r.get("converged") is not None]),
        objective_gain=_nanmean([r["objective_at_ones"] - r["objective_final"] for r in runs
                                 if r.get("objective_final") is not None]),
        truth=truth_table.truth_means(by_image),
    )


def _stable(runs: list[dict[str, Any]]) -> bool:
    """Whether an image's φ can be read: its top-1 residual 1 - p is not below PHI_MIN_RESIDUAL."""
    return phi_readable(runs[0]["top1_prob_before"])


def _heatmap(rec: dict[str, Any]) -> np.ndarray:
    """1 - M' at input size, from the stored low-resolution mask (bilinear, as the methods use it)."""
    return 1.0 - upsample(np.asarray(rec["mask"], dtype=np.float32), tuple(rec["input_size"]))


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# -- formatting ------------------------------------------------------------------------------

def _f(v: float, fmt: str) -> str:
    return "–" if not math.isfinite(v) else format(v, fmt)


def _area(a: float) -> str:
    return f"{a:g}%"


def _md_table(rows: list[Row], areas: tuple[float, ...], first: tuple[str, str] | None = None) -> list[str]:
    head = ["method", "images", "runs", "φ (Eq. 8) ± 95% CI", "φ left out", "Δp top-1 (pp)", "undesirable %", "r seeds", "IoU top 5%",
            "queries/run", "s/run", "converged", "J(1) − J", *[f"φ@{_area(a)}" for a in areas]]
    if first:
        head.insert(0, first[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        ci = "" if not math.isfinite(r.phi_ci) else f" ± {r.phi_ci:.1f}"
        cells = [r.method, str(r.images), str(r.runs), _f(r.phi, ".1f") + ci, str(r.unstable),
                 _f(r.delta_p, "+.2f"), _f(r.undesirable, ".2f"),
                 _f(r.correlation, ".2f"), _f(r.top_iou, ".2f"), _f(r.queries, ".0f"), _f(r.seconds, ".2f"),
                 _f(100 * r.converged, ".0f") + ("%" if math.isfinite(r.converged) else ""),
                 _f(r.objective_gain, ".4f"),
                 *[_f(v, ".1f") + (f" {BELOW}" if low else "") for v, low in zip(r.phi_at_area, r.below_reference)]]
        if first:
            cells.insert(0, first[1])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(s: Summary) -> str:
    out = [f"## Overall ({s.images} images)", ""]
    out += _md_table(s.overall, s.areas)
    out += ["", "## By confidence (original top-1 probability)", ""]
    table: list[str] = []
    for label, rows in s.by_confidence:
        part = _md_table(rows, s.areas, ("p(top-1)", label))
        table += part if not table else part[2:]
    out += table
    out += [
        "",
        "φ and undesirable % are each method's own operating point: φ (Eq. 8, top-1 class of the "
        "original) of its own perturbed image, whose area is the share of pixels with heatmap > 0.6. "
        "Means are over images (the seeds of an image averaged first); ± is the 95% Student-t "
        "interval over images. φ divides by the top-1 residual 1 - p: the images where it is below "
        f"{PHI_MIN_RESIDUAL:g} (the model already sure) are left out of φ and φ@a% (column φ left out), where "
        "it would measure noise; Δp top-1 is the mean change of the top-1 probability in percentage "
        "points over every image. r seeds: mean pairwise Pearson r of the masks across seeds; IoU top 5%: "
        "mean pairwise IoU of the top 5% heatmap pixels that are marked (> 0). queries and s per run "
        "are the method's own (the insertion curve adds one query per area). "
        f"φ@a%: φ after blurring, hard, the top a% pixels of the heatmap; {BELOW} = below "
        f"{REFERENCE} at that area (on the images both have). converged: share of runs whose "
        "objective stopped improving below its value at M = 1 (bbx.maths.convergence); J(1) − J: mean drop of "
        "the objective from M = 1 (positive = the mask is better than no mask); – for methods that "
        "optimise no objective.",
        "",
    ]
    out += truth_table.markdown(s.overall, s.tolerance)
    if len(s.devices) > 1:
        out += [f"s/run mixes runs on {' and '.join(s.devices)} (a resumed evaluation): compare seconds "
                "only between runs on one device.", ""]
    elif s.devices:
        out += [f"s/run measured on {s.devices[0]}.", ""]
    return "\n".join(out)


def to_csv(s: Summary) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    has_truth = any(r.truth for r in s.overall)  # the columns come only with a truth: older tables unchanged
    w.writerow(["section", "method", "images", "runs", "phi", "phi_ci95", "phi_left_out", "delta_p_top1_pp",
                "undesirable_pct", "seed_correlation",
                "top5_iou", "queries", "seconds", *[f"phi_at_{a:g}pct" for a in s.areas],
                f"below_{REFERENCE}_at_pct", "converged_share", "objective_gain",
                *(truth_table.csv_header() if has_truth else [])])
    sections = [("overall", s.overall)] + [(f"p_top1 {label}", rows) for label, rows in s.by_confidence]
    for name, rows in sections:
        for r in rows:
            w.writerow([name, r.method, r.images, r.runs, _num(r.phi), _num(r.phi_ci), r.unstable, _num(r.delta_p),
                        *map(_num, (r.undesirable, r.correlation,
                        r.top_iou, r.queries, r.seconds, *r.phi_at_area)),
                        ";".join(f"{a:g}" for a, low in zip(s.areas, r.below_reference) if low),
                        _num(r.converged), _num(r.objective_gain),
                        *(map(_num, truth_table.csv_cells(r.truth)) if has_truth else [])])
    return buf.getvalue()


def _num(v: float) -> str:
    return "" if not math.isfinite(v) else f"{v:.6g}"
