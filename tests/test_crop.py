"""The centre crop stays the documented one, bit for bit (test_engine holds the README's CPU run to
the line bbx prints)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bbx import preprocess as pp
from bbx.preprocess.image import load_rgb

ROOT = Path(__file__).resolve().parent.parent


def test_centre_crop_is_the_documented_one_bit_for_bit():
    """Short side to size / crop_pct (rounded), the centre at ((resized - size) // 2): bbx's crop as it
    was before the resize modes, on the bundled photo."""
    rgb = load_rgb(ROOT / "bbx" / "_data" / "bundled" / "samples" / "chelsea.png")
    spec = pp.PreprocessSpec(size=(224, 224), crop_pct=0.875)
    h, w = rgb.shape[:2]
    s = max(224 / 0.875 / h, 224 / 0.875 / w)
    rh, rw = max(224, round(h * s)), max(224, round(w * s))
    im = Image.fromarray(rgb).resize((rw, rh), Image.BILINEAR)
    top, left = (rh - 224) // 2, (rw - 224) // 2
    expect = np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    assert np.array_equal(pp.prepare(rgb, spec), expect)
