"""The README's first CPU run is what bbx prints, to the fourth decimal (the centre crop, the blur and
the optimiser unchanged), and the crop stays the documented one bit for bit."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from bbx import preprocess as pp
from bbx.image import load_rgb

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- readme-cpu-run:"


def _readme_run() -> tuple[str, str]:
    """The README's command (the first ``bbx explain`` line after "First run") and its quoted result."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = text.split("## First run", 1)[1]
    command = re.search(r"^(bbx explain[^\n#]*?)\s*(#|$)", first, re.M).group(1).split()
    quoted = first.split(MARKER, 1)[1].split("```text\n", 1)[1].split("\n", 1)[0]
    return command, quoted


def test_readme_cpu_explanation_is_what_bbx_prints(tmp_path):
    command, quoted = _readme_run()
    assert command == ["bbx", "explain"]
    proc = subprocess.run([*command, "--out", str(tmp_path / "out"), "-q"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.splitlines()[0]
    name, result = quoted.split(": ", 1)
    assert line.split(": ", 1)[0].endswith(name)
    assert line.split(": ", 1)[1].startswith(result + " in "), (line, quoted)


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
