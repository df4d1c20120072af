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

from .._io import atomic_write, clear_stale, ensure_dir, json_text
from ..errors import OutputError
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


#: widest photo drawn as photo_heatmap.png / photo_overlay.png: Pillow's PNG encoder keeps several
#: filtered copies of a row (docs/security.md)
MAX_PNG_WIDTH = 1 << 16
WIDE_NOTE = "photo-size pictures not drawn"
#: pixels converted at a time: the float64 temporaries of a 64-megapixel photo stay a few MB
TILE_PIXELS = 1 << 18


def to_uint8(img01: np.ndarray) -> np.ndarray:
    """A 0-1 float array as 8-bit (values outside 0-1 are clipped, NaN becomes 0); tiled."""
    a = np.asarray(img01)
    out = np.empty(a.shape, dtype=np.uint8)
    flat, dest = a.reshape(-1), out.reshape(-1)
    for s in range(0, flat.size, TILE_PIXELS):
        dest[s:s + TILE_PIXELS] = _u8(flat[s:s + TILE_PIXELS])
    return out


def _u8(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(np.asarray(a, dtype=np.float64), nan=0.0)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """An ``(H, W)`` heatmap in 0..1 as ``(H, W, 3)`` uint8 inferno (fixed range, no rescaling)."""
    return LUT[to_uint8(heatmap)]


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The photo (0-1 floats, or uint8 0-255) with the coloured heatmap blended on top, opacity
    ``alpha * heatmap``. Tiled: the uint8 result is the only full-size array it makes."""
    image, heat = np.asarray(image), np.asarray(heatmap)
    scale = 1 / 255.0 if image.dtype == np.uint8 else 1.0
    out = np.empty((*heat.shape[:2], 3), dtype=np.uint8)
    pixels, heats, dest = image.reshape(-1, 3), heat.reshape(-1), out.reshape(-1, 3)
    for s in range(0, heats.size, TILE_PIXELS):
        part = slice(s, s + TILE_PIXELS)
        h = np.clip(np.nan_to_num(heats[part].astype(np.float64)), 0.0, 1.0)
        img = np.clip(pixels[part].astype(np.float64) * scale, 0.0, 1.0)
        colour = LUT[_u8(heats[part])] / 255.0
        a = h[:, None] * alpha
        dest[part] = _u8((1.0 - a) * img + a * colour)
    return out


def save_explanation(e: "Explanation", out_dir: Path) -> dict[str, Path]:
    """Write heatmap.png, overlay.png, perturbed.png, figure.png, mask.npy (at the model's input size;
    the mask at its own resolution), with a photo also photo_heatmap.png, photo_overlay.png and
    photo_mask.npy (M' on the photo at its own size), and report.json, as one set.

    Everything is rendered before the first file is written. The old report goes first and the
    new one comes last, naming a fresh ``run_id`` and the SHA-256 of every file of its run: a
    folder whose report is missing is a run that did not finish, and one whose files do not match
    their report's hashes holds files of two runs. Temporary files a killed run left are removed.
    """
    import hashlib
    import uuid

    heat, over, pert = colorize(e.heatmap), overlay(e.image, e.heatmap), to_uint8(e.perturbed)
    blobs = {"heatmap.png": _png(heat), "overlay.png": _png(over), "perturbed.png": _png(pert),
             "figure.png": _png(figure(e, over, pert)), "mask.npy": _npy(e.mask)}
    heat_photo = e.heat_on_photo()
    if heat_photo is not None:  # the same maps on the user's photo, at its own size, one at a time
        if heat_photo.shape[1] <= MAX_PNG_WIDTH:
            blobs["photo_heatmap.png"] = _png(colorize(heat_photo))
            blobs["photo_overlay.png"] = _png(overlay(e.photo, heat_photo))  # uint8 photo: no float copy of it
        elif not any(n.startswith(WIDE_NOTE) for n in e.notes):
            e.notes.append(f"{WIDE_NOTE}: the photo is {heat_photo.shape[1]:,} pixels wide, above bbx's limit "
                           f"of {MAX_PNG_WIDTH:,} for a PNG (photo_mask.npy holds the map at the photo's size)")
        blobs["photo_mask.npy"] = _npy(np.subtract(1.0, heat_photo, out=heat_photo))  # M' = 1 - heatmap, in place
        del heat_photo
    report = {**e.summary(), "run_id": uuid.uuid4().hex,
              "files": {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}}
    report_text = json_text(report, indent=2).encode("utf-8")  # refused here (NaN) before anything is written

    out_dir = ensure_dir(out_dir)
    clear_stale(out_dir, OUTPUT_NAMES)
    old_report = out_dir / "report.json"
    if old_report.is_dir() and not old_report.is_symlink():
        raise OutputError(f"cannot write {old_report}: it is a folder")
    try:
        old_report.unlink()  # a link is removed, never followed
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"cannot write {old_report}: {exc.strerror or exc}") from None
    paths = {name.rsplit(".", 1)[0]: atomic_write(out_dir / name, lambda fh, data=data: fh.write(data))
             for name, data in blobs.items()}
    paths["report"] = atomic_write(old_report, lambda fh: fh.write(report_text))
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


def _npy(arr: np.ndarray) -> memoryview:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr))
    return buf.getbuffer()  # no copy: a photo-size mask is 256 MB at 64 megapixels


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


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
    text = "".join(ch if ch.isprintable() else "?" for ch in text)  # a class name may hold newlines, escapes
    line = text + tail
    if draw.textlength(line, font=font) > room:
        # the longest prefix that fits, by bisection: a few measurements even for a 5,000-character
        # class name (cutting one character at a time made that one caption 38 s)
        lo, hi = 1, min(len(text), int(room) + 1)  # no glyph is narrower than a pixel
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if draw.textlength(text[:mid].rstrip() + "..." + tail, font=font) <= room:
                lo = mid
            else:
                hi = mid - 1
        line = text[:lo].rstrip() + "..." + tail  # ASCII: Pillow's bitmap fallback font is Latin-1 only
    draw.text((cx - draw.textlength(line, font=font) / 2, y), line, fill="black", font=font)
