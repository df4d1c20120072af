"""The audit's pictures, drawn from the JSON lines: a record's mask and its photo give them all.

Soft-mask methods (and random) blur with Q(X; M'), M' the bilinear upsampling of the stored mask,
as they did while running; grid methods (occlusion, greedy) blur, hard, the cells whose heatmap
is above the threshold, their heatmap constant per cell. Files are written once (atomically) and
kept: a resumed audit draws only the new photos'.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from .._io import atomic_write, ensure_dir
from ..preprocess.image import load_rgb
from ..defaults import THRESHOLD
from ..evaluation.insertion import hard_blur
from ..evaluation.recurring import heatmap
from ..methods import mask_kind
from ..maths.perturb import BlurSpec, Perturber
from ..result.render import colorize, overlay, to_uint8

KINDS = ("photo", "overlay", "perturbed")
JPEG_QUALITY = 88  # photos as JPEG: a 300-photo report stays a few MB (docs/audit.md)


def pictures(rec: dict[str, Any], view: np.ndarray, blur: BlurSpec) -> dict[str, np.ndarray]:
    """The photo as the model sees it, the heatmap overlay and the perturbed photo (uint8 RGB)."""
    heat = heatmap(rec)
    mask = np.asarray(rec["mask"], dtype=np.float32)
    pert = Perturber(view, mask.shape, blur)
    perturbed = pert(mask) if mask_kind(rec["method"]) == "soft" else hard_blur(pert, heat > THRESHOLD)
    return {"photo": to_uint8(view), "overlay": overlay(view, heat), "perturbed": to_uint8(perturbed)}


def file_names(key: str) -> dict[str, str]:
    """Each picture's path relative to the report folder."""
    return {kind: f"img/{key}-{kind}.jpg" for kind in KINDS}


def draw_rows(out: Path, recs: Sequence[tuple[str, dict[str, Any]]], prepare: Callable[[np.ndarray], np.ndarray],
              blur: BlurSpec) -> int:
    """Write the pictures of each ``(key, record)`` that lacks one; how many photos were drawn."""
    ensure_dir(out / "img")
    drawn = 0
    for key, rec in recs:
        names = file_names(key)
        if all((out / n).exists() for n in names.values()):
            continue
        view = prepare(load_rgb(rec["image"]))
        for kind, arr in pictures(rec, view, blur).items():
            save(out / names[kind], arr)
        drawn += 1
    return drawn


def class_heatmap(recs: Sequence[dict[str, Any]]) -> np.ndarray:
    """The mean heatmap over ``recs`` (one class's photos), coloured on the fixed 0-1 range."""
    return colorize(np.mean([heatmap(r) for r in recs], axis=0))


def save(path: Path, arr: np.ndarray, fmt: str | None = None) -> Path:
    fmt = fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format=fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))
