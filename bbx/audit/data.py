"""What the audit page shows, computed from ``bbx evaluate``'s JSON lines alone (no model, no files).

One gallery row per photo, from the first method's first seed; per class, its photos with the
fragile decisions first; the convergence diagnostic of one record. A record holds the top-1 class
after each blur-insertion area (``top1_at_area``) when written by this version of bbx; older
records cannot say whether a decision is fragile, and the page says so.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

#: A decision is fragile when blurring at most this percentage of the pixels changes the top-1 class.
FRAGILE_AREA = 2.0
#: The loss's last quarter falling by more than this fraction of the whole run's fall: still converging.
STILL_FALLING = 0.1


@dataclass
class Row:
    """One photo in the gallery (numbers of the first method, first seed)."""

    key: str  # names the photo's image files: stable across reruns, whatever the order of the photos
    image: str
    name: str
    method: str
    top1_name: str
    prob_before: float
    prob_after: float
    phi: float
    undesirable: float  # percent
    queries: int
    seconds: float
    convergence: str
    converged: bool | None  # None: the method does not optimise, or the record cannot say
    fragile: str | None  # "1% ftc -> tabby" when some method's top <= 2% flips the top-1, else None
    fragile_known: bool
    record: dict[str, Any] = field(repr=False, default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # picture kind -> path relative to the report


@dataclass
class ClassGroup:
    name: str
    rows: list[Row]  # fragile decisions first, then by file name

    @property
    def fragile(self) -> int:
        return sum(r.fragile is not None for r in self.rows)


def photo_key(image: str) -> str:
    return hashlib.sha256(image.encode()).hexdigest()[:12]


def primary_records(records: Sequence[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """Per photo, in the records' order, the record of ``method`` with the lowest seed."""
    best: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec["method"] == method and (rec["image"] not in best or rec["seed"] < best[rec["image"]]["seed"]):
            best[rec["image"]] = rec
    return list(best.values())


def rows(records: Sequence[dict[str, Any]], method: str, labels: Sequence[str]) -> list[Row]:
    """The gallery: one row per photo that ``method`` explained."""
    by_image: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_image.setdefault(rec["image"], []).append(rec)
    out = []
    for rec in primary_records(records, method):
        text, ok = convergence(rec)
        flip, known = fragile(by_image[rec["image"]], labels)
        out.append(Row(
            key=photo_key(rec["image"]), image=rec["image"], name=Path(rec["image"]).name, method=rec["method"],
            top1_name=rec["top1_name"], prob_before=rec["top1_prob_before"], prob_after=rec["top1_prob_after"],
            phi=rec["phi"], undesirable=100 * rec["undesirable_ratio"], queries=int(rec["queries"]),
            seconds=float(rec["seconds"]), convergence=text, converged=ok, fragile=flip, fragile_known=known,
            record=rec,
        ))
    return out


def classes(gallery: Sequence[Row]) -> list[ClassGroup]:
    """Photos grouped by top-1 class: classes with fragile decisions first, then the larger ones."""
    groups: dict[str, list[Row]] = {}
    for row in gallery:
        groups.setdefault(row.top1_name, []).append(row)
    out = [ClassGroup(name, sorted(rs, key=lambda r: (r.fragile is None, r.name))) for name, rs in groups.items()]
    return sorted(out, key=lambda g: (-g.fragile, -len(g.rows), g.name))


def fragile(records: Sequence[dict[str, Any]], labels: Sequence[str],
            limit: float = FRAGILE_AREA) -> tuple[str | None, bool]:
    """The smallest blurred area (<= ``limit`` %) under any method's heatmap that changes the top-1
    class, as "1% ftc -> tabby"; and whether any record could tell (it holds ``top1_at_area``)."""
    found: tuple[float, str, str] | None = None
    known = False
    for rec in records:
        after = rec.get("top1_at_area")
        if after is None:
            continue
        known = True
        for area, k in zip(rec["areas"], after):
            if area <= limit and k != rec["top1"] and (found is None or area < found[0]):
                name = labels[k] if 0 <= k < len(labels) else f"class {k}"
                found = (area, rec["method"], name)
    if found is None:
        return None, known
    return f"{found[0]:g}% {found[1]} \u2192 {found[2]}", known


def convergence(rec: dict[str, Any]) -> tuple[str, bool | None]:
    """The objective at M = 1 against the end when the record holds them, else the loss's trend.

    ``bbx evaluate``'s convergence columns (``objective_at_ones``, ``objective_final``, ``converged``:
    :func:`bbx.result.record.convergence_fields`) or a convergence record (``convergence``:
    ``objective_start``, ``objective_end`` and optionally ``converged``) take precedence. A record that
    has the columns empty comes from a method that optimises no objective (greedy's trail of target
    probabilities is a search, not a loss): no verdict. Only a record written before those columns
    existed falls back to the thinned loss history (``loss_trend``, its first step standing in for
    M = 1): whether the loss ended below its start and had stopped falling over its last quarter.
    """
    conv = rec.get("convergence")
    if _finite(rec.get("objective_at_ones")) and _finite(rec.get("objective_final")):
        conv = {"objective_start": rec["objective_at_ones"], "objective_end": rec["objective_final"],
                "converged": rec.get("converged")}
    if isinstance(conv, dict) and _finite(conv.get("objective_start")) and _finite(conv.get("objective_end")):
        start, end = float(conv["objective_start"]), float(conv["objective_end"])
        ok = conv.get("converged")
        ok = bool(ok) if isinstance(ok, bool) else end < start
        return f"objective {start:.3g} at M=1 \u2192 {end:.3g}", ok
    if "objective_at_ones" in rec:  # the columns exist and are empty: nothing was optimised
        return "\u2014", None
    trend = [float(v) for v in rec.get("loss_trend") or [] if _finite(v)]
    if len(trend) < 4:
        return "\u2014", None
    start, end = trend[0], trend[-1]
    quarter = max(1, len(trend) // 4)
    late = trend[-quarter - 1] - end  # fall over the last quarter
    total = max(start - min(trend), 1e-12)
    falling = late > STILL_FALLING * total
    verdict = ", ended above its start" if end >= start else ", still falling" if falling else ", flat at the end"
    return f"loss {start:.3g} \u2192 {end:.3g}{verdict}", end < start and not falling


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
