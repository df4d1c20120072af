"""Pictures of an explanation: heatmap, overlay, perturbed image and a paper-style figure.

Only numpy and Pillow: a small built-in inferno colormap on a fixed 0..1 range keeps every
heatmap comparable across images, and each file is written atomically so a killed run never
leaves a half-written PNG behind.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ._io import atomic_write, ensure_dir, write_json
from .findings import phi_readable

if TYPE_CHECKING:  # an Explanation saves itself through this module
    from .explanation import Explanation

#: Inferno sampled at 0, 1/8, ..., 1; the LUT interpolates linearly between these anchors.
_INFERNO = np.array(
    [
        (0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
        (227, 89, 51), (249, 142, 9), (249, 203, 53), (252, 255, 164),
    ],
    dtype=np.float64,
)
_ANCHORS = np.linspace(0.0, 1.0, len(_INFERNO))
LUT = np.stack(
    [np.interp(np.linspace(0.0, 1.0, 256), _ANCHORS, _INFERNO[:, c]) for c in range(3)], axis=1
).round().astype(np.uint8)

#: Opacity of the heatmap colour where the heatmap is 1 (it falls to 0 where the heatmap is 0).
OVERLAY_ALPHA = 0.7
PANEL_MIN = 256  # smallest side of a figure panel, in pixels
MARGIN, GAP = 16, 6
#: every file an explanation may write (an output folder holding one of them is not overwritten in silence)
OUTPUT_NAMES = ("report.json", "heatmap.png", "overlay.png", "perturbed.png", "figure.png", "mask.npy",
                "photo_heatmap.png", "photo_overlay.png", "photo_mask.npy", "index.html", "photo.png")


def to_uint8(img01: np.ndarray) -> np.ndarray:
    """A 0-1 float array as 8-bit (values outside 0-1 are clipped, NaN becomes 0)."""
    a = np.nan_to_num(np.asarray(img01, dtype=np.float64), nan=0.0)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """An ``(H, W)`` heatmap in 0..1 as ``(H, W, 3)`` uint8 inferno (fixed range, no rescaling)."""
    return LUT[to_uint8(heatmap)]


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The photo with the coloured heatmap blended on top, opacity ``alpha * heatmap``."""
    h = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)), 0.0, 1.0)[..., None] * alpha
    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    return to_uint8((1.0 - h) * img + h * (colorize(heatmap) / 255.0))


def save_explanation(e: "Explanation", out_dir: Path) -> dict[str, Path]:
    """Write heatmap.png, overlay.png, perturbed.png, figure.png, mask.npy (at the model's input size;
    the mask at its own resolution), with a photo also photo_heatmap.png, photo_overlay.png and
    photo_mask.npy (M' on the photo at its own size), and report.json last."""
    out_dir = ensure_dir(out_dir)
    heat, over, pert = colorize(e.heatmap), overlay(e.image, e.heatmap), to_uint8(e.perturbed)
    paths = {
        "heatmap": _save_png(out_dir / "heatmap.png", heat),
        "overlay": _save_png(out_dir / "overlay.png", over),
        "perturbed": _save_png(out_dir / "perturbed.png", pert),
        "figure": _save_png(out_dir / "figure.png", figure(e, over, pert)),
        "mask": atomic_write(out_dir / "mask.npy", lambda fh: np.save(fh, np.asarray(e.mask))),
    }
    back = e.on_photo()
    if back is not None:  # the same maps on the user's photo, at its own size
        heat_photo, mask_photo = back
        paths["photo_heatmap"] = _save_png(out_dir / "photo_heatmap.png", colorize(heat_photo))
        paths["photo_overlay"] = _save_png(out_dir / "photo_overlay.png", overlay(e.photo / 255.0, heat_photo))
        paths["photo_mask"] = atomic_write(out_dir / "photo_mask.npy", lambda fh: np.save(fh, mask_photo))
    paths["report"] = write_json(out_dir / "report.json", e.summary())  # last: a report means a whole set
    return paths


def figure(e: "Explanation", over: np.ndarray | None = None, pert: np.ndarray | None = None) -> np.ndarray:
    """[original | heatmap overlay | perturbed] with a caption under each and a title on top."""
    over = overlay(e.image, e.heatmap) if over is None else over
    pert = to_uint8(e.perturbed) if pert is None else pert
    h, w = e.heatmap.shape[:2]
    k = max(1, -(-PANEL_MIN // min(h, w)))  # integer factor: crisp nearest-neighbour upscaling
    pw, ph = w * k, h * k
    panels = [to_uint8(e.image), over, pert]
    captions = [  # (text that may be shortened, tail that is always shown)
        (e.target_name, f": {100 * e.prob_before:.1f}%"),
        ("undesirable pixels", f" {100 * e.undesirable_ratio:.1f}%"),
        (e.target_name, f": {100 * e.prob_after:.1f}%" + (f" (phi {e.phi:.1f})" if e.target == e.top1 and phi_readable(e.top1_prob_before) else "")),
    ]
    title = (f"{e.config.get('method', '?')} · target {e.target_name}", f" · {e.queries} queries")

    font = _font(14)
    line = _text_height(font)
    width = 2 * MARGIN + 3 * pw + 2 * MARGIN
    height = MARGIN + line + 2 * GAP + ph + GAP + line + MARGIN
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    _centred(draw, title[0], width / 2, MARGIN, width - 2 * MARGIN, font, title[1])
    top = MARGIN + line + 2 * GAP
    for i, (arr, (text, tail)) in enumerate(zip(panels, captions)):
        left = MARGIN + i * (pw + MARGIN)
        canvas.paste(Image.fromarray(arr).resize((pw, ph), Image.NEAREST), (left, top))
        _centred(draw, text, left + pw / 2, top + ph + GAP, pw, font, tail)
    return np.asarray(canvas)


def figure_png(e: Explanation) -> bytes:
    """:func:`figure` as PNG bytes."""
    return _png(figure(e))


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def _save_png(path: Path, arr: np.ndarray) -> Path:
    data = _png(arr)
    return atomic_write(path, lambda fh: fh.write(data))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 (scalable with FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    left, top, right, bottom = font.getbbox("Ag·%")
    return int(bottom) + 2


def _centred(draw: ImageDraw.ImageDraw, text: str, cx: float, y: float, room: float, font, tail: str = "") -> None:
    """Draw ``text + tail`` centred on ``cx``; if wider than ``room``, ``text`` (never ``tail``) is cut."""
    line = text + tail
    while draw.textlength(line, font=font) > room and len(text) > 1:
        text = text[:-1].rstrip()
        line = text + "..." + tail  # ASCII: Pillow's bitmap fallback font is Latin-1 only
    draw.text((cx - draw.textlength(line, font=font) / 2, y), line, fill="black", font=font)
