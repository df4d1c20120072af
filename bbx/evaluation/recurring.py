"""Recurring regions of an evaluation: its records' heatmaps tested (:mod:`bbx.result.recurring`),
then each flagged region blurred alone in every photo of its group and scored.

Heatmaps are redrawn from each record's mask in the model's input coordinates (every photo went
through the model's own ``prepare``, so one cell is one place of the input for all of them).
Groups: all photos, and the :data:`MAX_CLASSES` largest predicted classes with at least
:data:`~bbx.result.recurring.MIN_PHOTOS` photos; the data set's family-wise level
:data:`FAMILY_ALPHA` is split evenly over the groups tested (Bonferroni).

Blurring a region costs one query per photo, and as many again for the control: the same cells
moved half the input away (circularly), so "blurring *this* place" is read against "blurring as
much elsewhere".
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._io import atomic_write, json_text
from ..defaults import MASK_SIZE, PHI_MIN_RESIDUAL
from ..errors import ImageError
from ..maths.perturb import BlurSpec, Perturber, upsample
from ..methods import mask_kind
from ..methods.cells import cell_map
from ..preprocess.image import load_rgb
from ..result import recurring as rc
from ..result.metrics import phi
from .insertion import hard_blur

#: The data set's chance of one false flag or more, over every group tested.
FAMILY_ALPHA = 0.05
#: Besides all photos, at most this many predicted classes (the largest) are tested.
MAX_CLASSES = 8
#: A recurring region is flagged only when blurring it alone raises p(top-1) by this much on average
#: (and by more than blurring as much elsewhere): heatmaps can recur where blurring changes nothing
#: that matters (the image's border, a centre bias), which is not a shortcut (docs/audit.md).
MIN_EFFECT = 0.01
#: A photo whose explanation raised p(top-1) by no more than this marks no undesirable pixel: a
#: search that gained nothing still returns cells (its ties), and they would recur wherever the
#: model reads, whether or not the photos hold anything there.
GAIN_FLOOR = 1e-3
RECURRING_JSON = "recurring.json"


def heatmap(rec: dict[str, Any]) -> np.ndarray:
    """1 - M' at the model's input size, as the record's method drew it."""
    mask = np.asarray(rec["mask"], dtype=np.float32)
    size = tuple(rec["input_size"])
    if mask_kind(rec["method"]) == "soft":
        return 1.0 - upsample(mask, size)
    return (1.0 - mask).ravel()[cell_map(size, mask.shape)].astype(np.float32)


@dataclass
class Effect:
    """Blurring one region alone in every photo of its group (and the control)."""

    delta_p: float  # mean change of p(top-1)
    phi: float  # mean φ over the photos whose residual is not ~0
    raised: int  # photos whose p(top-1) rose
    control_delta_p: float  # the same cells shifted half the input away
    queries: int
    per_photo: list[float] = field(default_factory=list, repr=False)  # delta p, the group's order
    unreadable: int = 0  # photos that could not be read again (left out)

    @property
    def matters(self) -> bool:
        """Blurring the region raises p(top-1) by :data:`MIN_EFFECT` or more, and by more than the control."""
        return bool(self.delta_p >= MIN_EFFECT and self.delta_p > self.control_delta_p)


@dataclass
class Found:
    """One recurring region of one group: flagged once blurring it is shown to matter."""

    region: rc.Region
    description: str
    pixel_box: tuple[int, int, int, int]
    images: list[str]  # the group's photos, in order; region.involved indexes them
    effect: Effect | None = None

    @property
    def flagged(self) -> bool:
        return self.effect is not None and self.effect.matters

    def sentence(self, group: str, floor: float) -> str:
        text = (f"Recurring region ({group}): {self.description}, in {len(self.region.involved)} of "
                f"{len(self.images)} photos, {rc.p_text(self.region.p, floor)}")
        if self.effect is not None:
            e = self.effect
            text += (f"; blurring it changes p(top-1) by {e.delta_p:+.2f} on average (raised in {e.raised}; "
                     f"as much blurred elsewhere: {e.control_delta_p:+.2f})")
        return text


@dataclass
class Group:
    name: str
    images: list[str]
    scan: rc.Scan
    found: list[Found]


@dataclass
class Recurring:
    """The recurring regions of one method's heatmaps over an evaluation."""

    method: str
    size: tuple[int, int]
    groups: list[Group]
    seconds: float  # the test's own time (no model)
    blur_seconds: float = 0.0
    queries: int = 0
    note: str = ""  # why nothing was tested, when nothing was
    gained: int = 0  # photos whose explanation raised p(top-1) (the others mark nothing: GAIN_FLOOR)

    @property
    def found(self) -> list[tuple[Group, Found]]:
        """Every region the test found (each is blurred)."""
        return [(g, f) for g in self.groups for f in g.found]

    @property
    def flagged(self) -> list[tuple[Group, Found]]:
        """The regions whose blurring matters (:attr:`Effect.matters`): the ones the page reports."""
        return [(g, f) for g, f in self.found if f.flagged]

    def lines(self) -> list[str]:
        """One sentence per flagged region, or the one line saying none was."""
        if self.note:
            return [f"Recurring regions: {self.method} not tested: {self.note}."]
        if not self.groups:
            return [f"Recurring regions: too few photos to test ({self.method}; at least {rc.MIN_PHOTOS})."]
        weak = len(self.found) - len(self.flagged)
        aside = (f" {weak} place{'s' * (weak > 1)} recurred in the heatmaps but blurring {'them' if weak > 1 else 'it'} "
                 f"raised p(top-1) by less than {MIN_EFFECT:g}, or no more than blurring as much elsewhere: "
                 f"not flagged ({RECURRING_JSON}).") if weak else ""
        if not self.flagged:
            tested = ", ".join(f"{g.name} ({len(g.images)})" for g in self.groups)
            return [f"No recurring region in the {self.method} heatmaps (tested: {tested}; "
                    f"{self.gained} photos whose explanation raised p(top-1); family-wise α {FAMILY_ALPHA:g})." + aside]
        return [f.sentence(g.name, g.scan.p_floor) for g, f in self.flagged] + ([aside.strip()] if weak else [])

    def markdown(self) -> str:
        return "\n".join([f"## Recurring regions ({self.method})", "", *(f"- {line}" for line in self.lines()), "",
                          f"{self.method} heatmaps; null: each photo's heatmap shifted circularly at random "
                          f"({rc.DRAWS} draws); {self.queries} model queries for the blurs.", ""])

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "input_size": list(self.size), "grid": MASK_SIZE, "draws": rc.DRAWS,
            "family_alpha": FAMILY_ALPHA, "null": "each heatmap shifted circularly by its own random offset",
            "seconds": round(self.seconds, 3), "blur_seconds": round(self.blur_seconds, 3), "queries": self.queries,
            "photos_with_gain": self.gained, "gain_floor": GAIN_FLOOR, "lines": self.lines(),
            "groups": [_group_dict(g) for g in self.groups],
        }



def write(results: Sequence[Recurring], out: str | Path) -> Path:
    """``recurring.json``: one entry per method tested."""
    data = {"recurring": [r.to_dict() for r in results]}
    return atomic_write(Path(out) / RECURRING_JSON, lambda fh: fh.write(json_text(data, indent=1)), mode="w")


def markdown(results: Sequence[Recurring]) -> str:
    return "\n".join(r.markdown() for r in results)


def _group_dict(g: Group) -> dict[str, Any]:
    return {
        "name": g.name, "photos": len(g.images), "alpha": g.scan.alpha, "threshold": finite(g.scan.threshold),
        "regions": [{
            "description": f.description, "flagged": f.flagged, "box": list(f.pixel_box), "cells": np.argwhere(f.region.cells).tolist(),
            "p": f.region.p, "peak": f.region.peak, "background": f.region.background, "area": f.region.area,
            "photos_involved": len(f.region.involved), "images_involved": [f.images[i] for i in f.region.involved],
            **({} if f.effect is None else {"blur": {
                "delta_p": finite(f.effect.delta_p), "phi": finite(f.effect.phi), "raised": f.effect.raised,
                "control_delta_p": finite(f.effect.control_delta_p), "queries": f.effect.queries,
                "unreadable": f.effect.unreadable,
                "per_photo_delta_p": f.effect.per_photo}}),
        } for f in g.found],
    }


def primary(records: Sequence[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """Per photo, ``method``'s record with the lowest seed, in the records' order."""
    best: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec["method"] == method and "error" not in rec and (
                rec["image"] not in best or rec["seed"] < best[rec["image"]]["seed"]):
            best[rec["image"]] = rec
    return list(best.values())


def groups_of(recs: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """"all photos" and the largest classes (see the module's docstring) -> record indices."""
    out: dict[str, list[int]] = {"all photos": list(range(len(recs)))} if len(recs) >= rc.MIN_PHOTOS else {}
    counts = Counter(r["top1_name"] for r in recs)
    big = sorted((c for c, n in counts.items() if rc.MIN_PHOTOS <= n < len(recs)), key=lambda c: (-counts[c], c))
    for name in big[:MAX_CLASSES]:
        out[f"class {name}"] = [i for i, r in enumerate(recs) if r["top1_name"] == name]
    return out


def gained(rec: dict[str, Any]) -> bool:
    """Whether the record's explanation raised p(top-1) at all (:data:`GAIN_FLOOR`)."""
    return rec["top1_prob_after"] - rec["top1_prob_before"] > GAIN_FLOOR


def find(records: Sequence[dict[str, Any]], method: str, seed: int = 0) -> Recurring:
    """Test ``method``'s heatmaps (first seed per photo) for recurring regions; no model needed."""
    start = time.perf_counter()
    recs = primary(records, method)
    size = tuple(recs[0]["input_size"]) if recs else (0, 0)
    grids = np.stack([rc.to_grid(heatmap(r)) for r in recs]) if recs else np.zeros((0, MASK_SIZE, MASK_SIZE))
    if len(grids) > 1 and np.all(grids == grids[:1]):  # e.g. random: one mask per seed, whatever the photo
        return Recurring(method, size, [], time.perf_counter() - start, note="its heatmap is the same in every photo "
                         "(a mask that does not depend on the photo, as random's; or photos the model cannot tell apart)")
    gains = np.array([gained(r) for r in recs], dtype=bool)
    grids[~gains] = 0.0
    named = groups_of(recs)
    groups = []
    for name, idx in named.items():
        scan = rc.scan(grids[idx], alpha=FAMILY_ALPHA / len(named), seed=seed)
        images = [recs[i]["image"] for i in idx]
        found = [Found(r, rc.describe(r, size), rc.pixel_box(r, size), images) for r in scan.regions]
        groups.append(Group(name, images, scan, found))
    return Recurring(method, size, groups, time.perf_counter() - start, gained=int(gains.sum()))


def blur_effects(result: Recurring, records: Sequence[dict[str, Any]], model: Any, blur: BlurSpec,
                 load: Callable[[str], np.ndarray] = load_rgb) -> Recurring:
    """Blur each flagged region alone (and its control) in every photo of its group; counts queries.

    A photo that can no longer be read (moved since the evaluation) is left out of the means and
    counted in ``Effect.unreadable``; nothing is kept in memory between photos (3,000 views would
    hold 1.8 GB)."""
    start = time.perf_counter()
    by_image = {r["image"]: r for r in primary(records, result.method)}
    for group, found in result.found:
        where = rc.to_pixels(found.region.cells, result.size)
        control = rc.to_pixels(np.roll(found.region.cells, tuple(s // 2 for s in found.region.cells.shape),
                                       axis=(0, 1)), result.size)
        deltas, controls, phis, unreadable = [], [], [], 0
        for image in group.images:
            try:
                pert = Perturber(model.prepare(load(image)), blur_spec=blur)
            except ImageError:
                unreadable += 1
                continue
            rec = by_image[image]
            probs = model.scores(hard_blur(pert, np.stack([where, control]))).probs[:, rec["top1"]]
            before = rec["top1_prob_before"]
            deltas.append(float(probs[0] - before))
            controls.append(float(probs[1] - before))
            if 1 - before > PHI_MIN_RESIDUAL:
                phis.append(phi(before, float(probs[0])))
        found.effect = Effect(_mean(deltas), _mean(phis), sum(d > 0 for d in deltas), _mean(controls),
                              2 * len(deltas), deltas, unreadable)
        result.queries += 2 * len(deltas)
    result.blur_seconds += time.perf_counter() - start
    return result


def finite(value: float) -> float | None:
    """JSON has no NaN: an undefined mean is null."""
    return value if np.isfinite(value) else None


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
