"""The audit page's comparison section (``bbx audit A --compare B``): the second model's
heatmap overlays of the photos that differ most, beside the first model's, from
:mod:`bbx.evaluation.compare`'s result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..evaluation.compare import Comparison
from ..evaluation.recurring import heatmap, primary
from ..preprocess.image import load_rgb
from ..result.render import overlay
from . import images
from .data import photo_key

FOLDER = "compare"  # the second model's evaluation, inside the report folder
#: Photos drawn with both overlays (the most different); the rest are listed with numbers only.
DRAWN = 24


@dataclass
class Row:
    name: str
    top1_a: str
    top1_b: str
    prob_a: float
    prob_b: float
    r: float
    iou: float
    agree: bool
    pictures: list[tuple[str, str]] = field(default_factory=list)  # (whose, path relative to the report)


@dataclass
class Section:
    names: tuple[str, str]
    lines: list[str]
    rows: list[Row]
    json_file: str


def names(model_a: Any, model_b: Any) -> tuple[str, str]:
    a, b = Path(model_a.name).name, Path(model_b.name).name
    return (a, b) if a != b else (f"{a} (A)", f"{b} (B)")


def draw(result: Comparison, out: Path, other_records: Sequence[dict[str, Any]],
         prepare: Callable[[np.ndarray], np.ndarray], json_file: str) -> Section:
    """The second model's overlays of the :data:`DRAWN` most different photos; the section's rows."""
    by_image = {r["image"]: r for r in primary(other_records, result.method)}
    rows = []
    for n, p in enumerate(result.pairs):
        key = photo_key(p.image)
        row = Row(Path(p.image).name, p.top1_a, p.top1_b, p.prob_a, p.prob_b, p.r, p.iou, p.agree)
        if n < DRAWN:
            mine = images.file_names(key)["overlay"]
            theirs = f"img/{FOLDER}-{key}-overlay.jpg"
            if not (out / theirs).exists():
                images.save(out / theirs, overlay(prepare(load_rgb(p.image)), heatmap(by_image[p.image])))
            row.pictures = [(result.name_a, mine), (result.name_b, theirs)]
        rows.append(row)
    return Section((result.name_a, result.name_b), result.lines(), rows, json_file)
