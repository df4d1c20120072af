"""The geometry of preprocessing: a photo to the model's height x width, and back.

:func:`prepare` makes the model's view of a photo with the spec's resize mode; :func:`geometry`
says where each photo pixel landed (per axis, an affine map and the span of the model input that
holds the photo, the rest being crop or padding), and :func:`to_photo` uses it to bring a map at
the model's input size (a heatmap, a mask) back onto the photo at the photo's own size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .spec import PreprocessSpec

#: largest photo resized whole before the centre crop; beyond, only the crop's region is resampled
#: (a 1 x 20,000 PNG scaled by its short side would otherwise be a 5 GB image). The other modes
#: resize into the model's size, never beyond it.
MAX_RESIZED_PIXELS = 4096 * 4096

_INTERP = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
           "lanczos": Image.LANCZOS}


@dataclass(frozen=True)
class Axis:
    """One axis of the map photo -> model input: ``u = x * scale + offset`` in continuous pixel
    coordinates (edges at integers), photo content on ``[start, stop)`` of the model's axis."""

    scale: float
    offset: float
    start: int
    stop: int


@dataclass(frozen=True)
class Geometry:
    """Where a photo of ``photo`` (h, w) sits in a model input of ``size`` (H, W), and at what size
    it was resized before any crop or padding."""

    photo: tuple[int, int]
    size: tuple[int, int]
    resized: tuple[int, int]  # (height, width) the photo was resized to
    y: Axis
    x: Axis


def geometry(photo_hw: tuple[int, int], spec: PreprocessSpec) -> Geometry:
    """Resize size and placement of a photo of ``photo_hw`` pixels under ``spec``."""
    H, W = spec.size
    h, w = photo_hw
    mode = spec.resize_mode
    if mode == "crop":
        scale = max(H / spec.crop_pct / h, W / spec.crop_pct / w)
        rh, rw = max(H, round(h * scale)), max(W, round(w * scale))
        top, left = (rh - H) // 2, (rw - W) // 2
        return Geometry((h, w), (H, W), (rh, rw), Axis(rh / h, -top, 0, H), Axis(rw / w, -left, 0, W))
    if mode == "stretch":
        return Geometry((h, w), (H, W), (H, W), Axis(H / h, 0, 0, H), Axis(W / w, 0, 0, W))
    if mode == "letterbox":
        r = min(H / h, W / w)
        rh, rw = min(H, max(1, round(h * r))), min(W, max(1, round(w * r)))
        top, left = (H - rh) // 2, (W - rw) // 2
        return Geometry((h, w), (H, W), (rh, rw), Axis(rh / h, top, top, top + rh),
                        Axis(rw / w, left, left, left + rw))
    if mode == "pad":
        rw = min(W, math.ceil(H * w / h))
        return Geometry((h, w), (H, W), (H, rw), Axis(H / h, 0, 0, H), Axis(rw / w, 0, 0, rw))
    raise ValueError(f"unknown resize mode {mode!r}")


def prepare(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """An ``(h, w, 3)`` uint8 photo as the model's ``(H, W, 3)`` float32 view in 0-1, per ``spec``."""
    g = geometry(rgb.shape[:2], spec)
    rh, rw = g.resized
    if spec.resize_mode == "crop":
        top, left = int(-g.y.offset), int(-g.x.offset)
        H, W = g.size
        if rh * rw <= MAX_RESIZED_PIXELS:
            im = Image.fromarray(rgb).resize((rw, rh), _INTERP[spec.interpolation])
            im = im.crop((left, top, left + W, top + H))
        else:  # resample only the crop's region of the photo (the same pixels within one grey level)
            sy, sx = g.photo[0] / rh, g.photo[1] / rw
            box = (left * sx, top * sy, (left + W) * sx, (top + H) * sy)
            im = Image.fromarray(rgb).resize((W, H), _INTERP[spec.interpolation], box=box)
        return np.asarray(im, dtype=np.float32) / 255.0
    im = Image.fromarray(rgb).resize((rw, rh), _INTERP[spec.interpolation])
    out = np.empty((*g.size, 3), dtype=np.float32)
    out[...] = np.asarray(spec.pad_value, dtype=np.float32) / 255.0
    out[g.y.start:g.y.stop, g.x.start:g.x.stop] = np.asarray(im, dtype=np.float32) / 255.0
    return out


#: photo pixels resampled at a time: temporaries stay a few MB whatever the photo's size (whole-photo
#: float64 temporaries did not: docs/security.md)
TILE_PIXELS = 1 << 18


def to_photo(values: np.ndarray, g: Geometry, fill: float) -> np.ndarray:
    """A map at the model's input size ``(H, W)`` resampled onto the photo ``(h, w)`` (bilinear between
    model pixel centres); photo pixels that the model never saw (cropped away) get ``fill``.

    Tiled: the (h, w) float32 result is the only full-size array."""
    values = np.asarray(values, dtype=np.float32)
    h, w = g.photo
    out = np.empty((h, w), dtype=np.float32)
    cols = max(1, min(w, TILE_PIXELS // values.shape[0]))
    for c0 in range(0, w, cols):
        (x0, x1), wx, okx = _taps(g.x, c0, min(w, c0 + cols))
        rows = values[:, x0] * (1 - wx) + values[:, x1] * wx  # (H, this block's columns)
        step = max(1, TILE_PIXELS // rows.shape[1])
        for r0 in range(0, h, step):
            (y0, y1), wy, oky = _taps(g.y, r0, min(h, r0 + step))
            block = rows[y0] * (1 - wy)[:, None] + rows[y1] * wy[:, None]
            block[~oky, :] = fill
            block[:, ~okx] = fill
            out[r0:r0 + len(wy), c0:c0 + rows.shape[1]] = block
    return out


def _taps(axis: Axis, lo: int, hi: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """For photo pixels ``lo..hi-1`` along ``axis``: the two model pixels around each centre, the
    weight of the second, and whether the centre falls on the photo's content."""
    u = (np.arange(lo, hi, dtype=np.float64) + 0.5) * axis.scale + axis.offset
    inside = (u >= axis.start) & (u < axis.stop)
    t = np.clip(u - 0.5, axis.start, axis.stop - 1)
    i0 = np.floor(t).astype(np.intp)
    i1 = np.minimum(i0 + 1, axis.stop - 1)
    return (i0, i1), (t - i0).astype(np.float32), inside
