"""The audit page's recurring-regions section: the flagged regions drawn on the mean map
and on example photos, and the section's HTML, from :mod:`bbx.evaluation.recurring`'s result.

Kept apart from ``page.py`` so the page gains one call at the top of its main part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from ..evaluation.recurring import Recurring, heatmap
from ..preprocess.image import load_rgb
from ..result import recurring as rc
from ..result.render import colorize, overlay
from .data import photo_key
from .images import save

#: Example photos drawn per region (the involved ones first, in the gallery's order).
EXAMPLES = 4
OUTLINE = np.array([0, 255, 255], dtype=np.uint8)  # cyan: apart from every colour of inferno


@dataclass
class Shown:
    """One region as the page shows it."""

    sentence: str
    mean_map: str  # picture path relative to the report
    caption: str
    examples: list[tuple[str, str]] = field(default_factory=list)  # (picture path, photo file name)


@dataclass
class Section:
    lines: list[str]  # every sentence (or the one line saying there is no region)
    shown: list[Shown]
    json_file: str


def outlined(rgb: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``rgb`` with the border of ``where`` (bool, same size) painted :data:`OUTLINE`, 2 px wide."""
    edge = where & ~ndimage.binary_erosion(where, iterations=2, border_value=0)
    out = rgb.copy()
    out[edge] = OUTLINE
    return out


def draw(result: Recurring, out: Path, records: dict[str, dict], prepare: Callable[[np.ndarray], np.ndarray],
         json_file: str) -> Section:
    """Pictures of every flagged region into ``out/img``; the section the page shows."""
    shown = []
    for n, (group, found) in enumerate(result.flagged):
        where = rc.to_pixels(found.region.cells, result.size).astype(bool)
        mean = rc.to_pixels(group.scan.mean, result.size)
        top = float(mean.max()) or 1.0
        key = photo_key(f"{result.method}/{group.name}/{n}")
        mean_file = f"img/recurring-{key}-mean.png"
        save(out / mean_file, outlined(colorize(mean / top), where))
        examples = []
        order = list(found.region.involved) + [i for i in range(len(found.images)) if i not in found.region.involved]
        for j, i in enumerate(order[:EXAMPLES]):
            image = found.images[i]
            view = prepare(load_rgb(image))
            name = f"img/recurring-{key}-{j}.jpg"
            save(out / name, outlined(overlay(view, heatmap(records[image])), where))
            examples.append((name, Path(image).name + ("" if i in found.region.involved else " (not involved)")))
        caption = (f"mean undesirable-pixel map of {group.name} ({len(group.images)} photos, {result.method}), "
                   f"scaled to its maximum {top:.2f}; the region outlined")
        shown.append(Shown(found.sentence(group.name, group.scan.p_floor), mean_file, caption, examples))
    return Section(result.lines(), shown, json_file)
