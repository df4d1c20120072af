"""``bbx audit A --compare B`` (issue 33): a planted model against a variant reading another place,
the bundled model against its int8 build made here with onnxruntime.quantization, and the page
in headless Chromium (every picture loads, nothing leaves the folder)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import planted
from browser import LOAD_ALL_IMAGES, Browser, find_chromium
from bbx.evaluation import compare as cmp

pytest.importorskip("matplotlib", reason="bbx audit needs the report extra (matplotlib, rich)")

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLES = ROOT / "models" / "samples"
SIZE = 112
STAMP = (slice(16, 40), slice(56, 96))
ELSEWHERE = (slice(70, 94), slice(10, 50))


def _audit(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["bbx", "audit", *map(str, args), "-q"], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def planted_pair(tmp_path_factory):
    """The stamp reader (A) against a variant reading an empty place (B), on 6 stamped photos."""
    d = tmp_path_factory.mktemp("compare")
    a = planted.build_reader(d / "stamp.onnx", STAMP, SIZE)
    b = planted.build_reader(d / "variant.onnx", ELSEWHERE, SIZE)
    photos = planted.stamped_folder(d / "photos", 6, STAMP, SIZE, strength=0.125, avoid=ELSEWHERE)
    out = d / "audit"
    run = _audit(a, photos[0].parent, "--compare", b, "--methods", "greedy", "--budget", "300", "--out", out)
    assert run.returncode == 0, run.stderr
    return out


def test_the_variant_keeps_the_class_gains_confidence_and_loses_the_stamp(planted_pair):
    data = json.loads((planted_pair / "compare.json").read_text())
    agg = data["aggregate"]
    assert agg["photos"] == 6 and agg["top1_agreement"] == 1.0
    # A: logit 0 = 2 - energy(stamp) ~ 1, p 0.58; B reads no texture: logit 2, p 0.79
    assert agg["mean_confidence_change_where_agreeing"] == pytest.approx(0.79 - 0.58, abs=0.02)
    assert agg["median_top5_iou"] < 0.1  # A marks the stamp, B (which gains nothing) marks nothing of it
    assert any(line.startswith("Only stamp.onnx: Recurring region (all photos): patch at rows")
               for line in data["lines"])
    assert not any(line.startswith("Only variant.onnx") for line in data["lines"])
    assert (planted_pair / "compare" / "results.jsonl").exists()  # B's own evaluation, resumable


def test_compare_page_in_headless_chromium(planted_pair):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    page = planted_pair / "index.html"
    html = page.read_text()
    assert html.index("id=recurring") < html.index("id=compare") < html.index("id=card")
    with Browser(chromium, width=1400, height=900) as b:
        b.open(page.as_uri())
        loaded = b.js(LOAD_ALL_IMAGES)
        assert loaded["broken"] == [] and loaded["count"] >= 6 * 2, loaded  # both overlays of every photo
        urls = b.requested_urls()
        assert urls and all(u.startswith(planted_pair.as_uri() + "/") or u == page.as_uri() for u in urls), urls
        assert b.console_errors() == []
        rows = b.js("document.querySelectorAll('#compare-table tbody tr').length")
        assert rows == 6


def test_pairs_are_listed_most_different_first():
    def rec(image, name, mask):
        return {"image": image, "method": "ftc", "seed": 0, "top1_name": name, "top1_prob_before": 0.5,
                "top1_prob_after": 0.6, "input_size": [28, 28], "mask": mask.tolist()}

    rng = np.random.default_rng(0)
    same, other = rng.random((28, 28)), rng.random((28, 28))
    a = [rec("x", "cat", same), rec("y", "cat", same), rec("z", "cat", same)]
    b = [rec("x", "cat", same), rec("y", "dog", same), rec("z", "cat", other)]
    empty = cmp.Recurring("ftc", (28, 28), [], 0.0)
    result = cmp.compare(a, b, "ftc", empty, empty)
    assert [p.image for p in result.pairs] == ["y", "z", "x"]  # the changed class, then the lowest r
    assert result.pairs[2].r == pytest.approx(1.0) and result.agreement == pytest.approx(2 / 3)


def test_bundled_model_against_its_int8_build(tmp_path):
    quantization = pytest.importorskip("onnxruntime.quantization")
    int8 = tmp_path / "int8.onnx"
    quantization.quantize_dynamic(str(BUNDLED), str(int8), weight_type=quantization.QuantType.QUInt8)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        (photos / name).write_bytes((SAMPLES / name).read_bytes())
    out = tmp_path / "audit"
    run = _audit(BUNDLED, photos, "--compare", int8, "--methods", "greedy", "--budget", "200", "--out", out)
    assert run.returncode == 0, run.stderr
    data = json.loads((out / "compare.json").read_text())
    assert data["model_b"] == "int8.onnx" and data["aggregate"]["photos"] == 2
    assert data["aggregate"]["top1_agreement"] == 1.0  # int8 keeps tabby/tiger cat and espresso
    assert all(abs(p["confidence_change"]) > 1e-3 for p in data["photos"])  # but not the probabilities
    assert all(-1 <= p["r"] <= 1 for p in data["photos"])
    assert "Comparison: efficientnet_lite0.onnx and int8.onnx" in (out / "index.html").read_text()
