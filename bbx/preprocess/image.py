"""Image input: any file Pillow reads becomes an upright 8-bit RGB array.

Orientation and colour-mode handling live here so that nothing downstream has to guess
what a pixel means.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import ImageError

#: Largest image bbx decodes (pixels); bigger files are refused as possible decompression bombs.
MAX_PIXELS = 64_000_000


def load_rgb(path: str | Path) -> np.ndarray:
    """Read ``path`` as an ``(H, W, 3)`` uint8 RGB array, EXIF orientation applied.

    Greyscale, palette, alpha, CMYK and 16-bit images are converted to RGB (alpha is composed
    over white, as an image viewer shows it).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(not_a_file(path, "image"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageError(
                        f"image too large: {path} is {w}x{h} pixels, above bbx's limit of {MAX_PIXELS:,}"
                    )
                if w < 1 or h < 1:
                    raise ImageError(f"image is empty: {path} is {w}x{h}")
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(f"image too large: {path} exceeds bbx's limit of {MAX_PIXELS:,} pixels") from None
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise ImageError(f"cannot read image {path}: {_reason(exc)}") from None


def not_a_file(path: Path, what: str) -> str:
    """Why ``path`` cannot be read as a ``what``: missing, a folder, or not a regular file (a FIFO,
    which would block the read, or a device)."""
    if path.is_dir():
        return f"{what} {path} is a folder, not a file"
    if path.exists():
        return f"{what} {path} is not a regular file (a FIFO or a device)"
    return f"{what} not found: {path}"


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "F":  # stretched to 0-255 over its finite values; NaN and -inf black, +inf white
        a = np.asarray(im, dtype=np.float64)
        ok = np.isfinite(a)
        lo, hi = (float(a[ok].min()), float(a[ok].max())) if ok.any() else (0.0, 0.0)
        g = np.zeros_like(a)
        if hi > lo:
            g[ok] = (a[ok] - lo) / (hi - lo)
        g[a == np.inf] = 1.0
        g = np.clip(np.round(g * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def _reason(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[:200]
