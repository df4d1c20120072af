"""The ``bbx`` console script on bad input, on the bundled model, and image loading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto
from PIL import Image

import onnx_builders as ob
from bbx.errors import ImageError
from bbx.preprocess.image import load_rgb

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLES = ROOT / "models" / "samples"
CATS = {"tabby", "tiger cat", "Egyptian cat"}


def bbx(*args, cwd=None, module=False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bbx"] if module else ["bbx"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, exactly one stderr line, starting 'bbx: error:', no traceback anywhere."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("bbx: error:"), line
    assert len(line) > len("bbx: error: "), f"empty error message: {line!r}"
    for f in fragments:
        assert f in line, line
    assert proc.returncode == 2, (proc.returncode, line)
    return line


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    plain = ob.build("plain", d)
    data = plain.read_bytes()
    (d / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (d / "garbage.onnx").write_bytes(np.random.default_rng(0).bytes(4000))
    (d / "empty.onnx").write_bytes(b"")
    ob.build_output_3d(d)
    ob.build_output_1d(d)
    ob.build_rank2_input(d)
    ob.build_two_inputs(d)
    # a graph that loads but fails when run (Reshape of [N, 10] to [-1, 7])
    g = ob._Graph()
    z = g.reference("image", ob.SIZE, ob.CLASSES, ob.SEED)
    g.op("Reshape", [z, g.const([-1, 7], "shape", np.int64)], out="logits")
    ob.save(g, [ob._vi("image", TensorProto.FLOAT, ["N", 3, ob.SIZE, ob.SIZE])],
            [ob._vi("logits", TensorProto.FLOAT, ["N", ob.CLASSES])], d / "runfail.onnx", metadata=ob.spec())
    (d / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(500))
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(d / "noise.png")
    raw = (d / "noise.png").read_bytes()
    (d / "truncated.png").write_bytes(raw[: len(raw) // 2])
    Image.fromarray(noise).save(d / "ok.png")
    return d


# -- bad input: one line, exit code 2 ----------------------------------------------------------

@pytest.mark.parametrize("model, fragment", [
    ("truncated.onnx", "not a readable ONNX model"),
    ("garbage.onnx", "not a readable ONNX model"),
    ("empty.onnx", "not a readable ONNX model"),
    ("missing.onnx", "model not found"),
    ("out3d.onnx", "[batch, classes]"),
    ("out1d.onnx", "[batch, classes]"),
    ("tabular.onnx", "not an image input"),
    ("two_inputs.onnx", "2 inputs"),
])
def test_bad_model(files, model, fragment):
    assert_one_error_line(bbx("inspect", files / model), fragment)


def test_bad_model_predict(files):
    assert_one_error_line(bbx("predict", files / "out3d.onnx", files / "ok.png"), "not an image classifier")


def test_model_that_fails_when_run(files):
    proc = bbx("inspect", files / "runfail.onnx")
    first = (proc.stderr.splitlines() or [""])[0]
    assert "[E:onnxruntime" not in first, (
        "BUG bbx/model.py: onnxruntime logs its own [E:onnxruntime:...] line on stderr before bbx's "
        "error when the model fails at run time; set SessionOptions.log_severity_level = 4 (not 3)")
    assert_one_error_line(proc, "the model failed")


@pytest.mark.parametrize("image, fragment", [
    ("garbage.png", "cannot read image"),
    ("truncated.png", "cannot read image"),
    ("missing.png", "image not found"),
])
def test_bad_image(files, image, fragment):
    line = assert_one_error_line(bbx("predict", files / "plain.onnx", files / image), fragment)
    assert image in line


@pytest.mark.parametrize("args, fragment", [
    (["predict", "{d}/plain.onnx", "{d}/ok.png", "--top", "0"], "--top"),
    (["predict", "{d}/plain.onnx", "{d}/ok.png", "--top", "many"], "--top"),
    (["inspect", "{d}/plain.onnx", "--layout", "NCWH"], "layout"),
    (["inspect", "{d}/plain.onnx", "--device", "tpu"], "unknown device"),
    (["inspect", "{d}/plain.onnx", "--mean", "a,b,c"], "--mean"),
    (["inspect", "{d}/plain.onnx", "--std", "0,1,1"], "std"),
    (["inspect", "{d}/plain.onnx", "--preset", "nope"], "unknown preset"),
    (["inspect", "{d}/plain.onnx", "--output", "nope"], "no output named"),
    (["inspect", "{d}/plain.onnx", "--size", "32"], "contradicts"),
    (["inspect", "{d}/plain.onnx", "--frobnicate"], "--frobnicate"),
    (["predict", "{d}/plain.onnx", "{d}/ok.png", "--max-batch", "0"], "max batch"),
    (["predict", "{d}/plain.onnx", "{d}/ok.png", "--cuda-option", "prefer_nhwc"], "--cuda-option needs KEY=VALUE"),
    (["explain", "{d}/plain.onnx", "{d}/ok.png", "--method", "nope"], "method"),
    (["explain", "{d}/plain.onnx", "{d}/ok.png", "--query-path", "gpu"], "query path must be one of"),
    (["frobnicate"], "frobnicate"),
])
def test_wrong_option(files, args, fragment):
    assert_one_error_line(bbx(*[a.format(d=files) for a in args]), fragment)


def test_explain_takes_the_query_path_and_reports_it(files, tmp_path):
    """--query-path fused: one composed graph; report.json names the path an explanation took."""
    import json

    proc = bbx("explain", files / "plain.onnx", files / "ok.png", "--method", "ftc", "--iterations", "2", "--pairs", "2",
               "--estimator", "nes", "--query-path", "FUSED", "--out", tmp_path / "out")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["query_path"] == "fused" and report["queries"] == 2 + 2 * 2 * 2


def test_python_dash_m_reports_the_same_way(files):
    assert_one_error_line(bbx("inspect", files / "tabular.onnx", module=True), "not an image input")


def test_no_arguments_shows_help_without_an_empty_error(files):
    proc = bbx()
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "Usage" in proc.stdout + proc.stderr and "inspect" in proc.stdout + proc.stderr
    bad = [ln for ln in proc.stderr.splitlines() if ln.strip() == "bbx: error:"]
    assert not bad, ("BUG bbx/cli.py main(): `bbx` with no arguments prints the help and then an empty "
                     "'bbx: error: ' line (typer's NoArgsIsHelpError has an empty format_message()); "
                     "exit quietly with its exit_code instead of calling _fail('')")
    assert proc.returncode in (0, 2)


# -- a tiny model end to end -------------------------------------------------------------------

def test_predict_tiny_model_lists_top_classes(files):
    proc = bbx("predict", files / "plain.onnx", files / "ok.png", "--top", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("ok.png") and len(lines) == 4
    probs = [float(ln.split()[-3]) for ln in lines[1:]]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
    assert lines[1].lstrip().startswith("1. class ")


# -- the bundled model -------------------------------------------------------------------------

def _top(stdout: str, image: str) -> list[str]:
    """Class names listed under ``image`` in ``bbx predict`` output, best first."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip().endswith(image))
    names = []
    for ln in lines[start + 1:]:
        if not ln.startswith("  "):
            break
        body = ln.split(".", 1)[1]                  # "  1. tiger cat   0.3834  (class 282)"
        names.append(body.rsplit("(class", 1)[0].rsplit(None, 1)[0].strip())
    return names


@pytest.mark.skipif(not BUNDLED.is_file(), reason="bundled model missing")
def test_predict_bundled_model():
    proc = bbx("predict", BUNDLED, SAMPLES / "chelsea.png", SAMPLES / "coffee.png")
    assert proc.returncode == 0, proc.stderr
    cat = _top(proc.stdout, "chelsea.png")
    coffee = _top(proc.stdout, "coffee.png")
    assert len(cat) == len(coffee) == 5
    assert CATS & set(cat), cat
    assert coffee[0] == "espresso", coffee


@pytest.mark.skipif(not BUNDLED.is_file(), reason="bundled model missing")
def test_inspect_bundled_model():
    proc = bbx("inspect", BUNDLED)
    assert proc.returncode == 0, proc.stderr
    pre = {ln.split()[0]: ln for ln in proc.stdout.split("preprocess", 1)[1].splitlines() if ln.startswith("  ")}
    for field in ("crop_pct", "interpolation", "scale", "mean", "std", "channel_order"):
        assert pre[field].rstrip().endswith("from metadata"), pre[field]
    assert "127.0" in pre["mean"] and "128.0" in pre["std"] and "255.0" in pre["scale"]
    assert "1000 classes, logits" in proc.stdout
    assert "layout NCHW, 224x224, float32, batch dynamic" in proc.stdout


# -- image loading -----------------------------------------------------------------------------

def test_exif_orientation_6_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)      # 40 wide, 20 high
    stored[:, :20] = (255, 0, 0)                  # left half red
    stored[:, 20:] = (0, 0, 255)                  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6                              # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    rgb = load_rgb(path)
    assert rgb.shape == (40, 20, 3) and rgb.dtype == np.uint8
    top, bottom = rgb[:16].reshape(-1, 3).mean(0), rgb[24:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50, top          # red on top: the left edge turned clockwise
    assert bottom[2] > 200 and bottom[0] < 50, bottom


def test_exif_orientation_8_turns_the_other_way(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "rotated8.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    rgb = load_rgb(path)
    assert rgb.shape == (40, 20, 3)
    assert rgb[:16, :, 2].mean() > 200 and rgb[24:, :, 0].mean() > 200


def _check_rgb(rgb, shape):
    assert isinstance(rgb, np.ndarray)
    assert rgb.shape == (*shape, 3) and rgb.dtype == np.uint8
    assert rgb.flags["C_CONTIGUOUS"]


def test_greyscale(tmp_path):
    g = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (6, 1))     # 6 x 25
    Image.fromarray(g, "L").save(tmp_path / "grey.png")
    rgb = load_rgb(tmp_path / "grey.png")
    _check_rgb(rgb, (6, 25))
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], g)


def test_one_bit(tmp_path):
    im = Image.new("1", (8, 4), 0)
    im.putpixel((3, 2), 1)
    im.save(tmp_path / "bits.png")
    rgb = load_rgb(tmp_path / "bits.png")
    _check_rgb(rgb, (4, 8))
    assert tuple(rgb[2, 3]) == (255, 255, 255) and tuple(rgb[0, 0]) == (0, 0, 0)


def test_palette(tmp_path):
    im = Image.new("P", (5, 3), 0)
    im.putpalette([10, 20, 30, 200, 100, 50] + [0, 0, 0] * 254)
    im.putpixel((4, 2), 1)
    im.save(tmp_path / "pal.png")
    assert Image.open(tmp_path / "pal.png").mode == "P"
    rgb = load_rgb(tmp_path / "pal.png")
    _check_rgb(rgb, (3, 5))
    assert tuple(rgb[0, 0]) == (10, 20, 30)
    assert tuple(rgb[2, 4]) == (200, 100, 50)


def test_palette_with_transparency_goes_over_white(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([10, 20, 30, 200, 100, 50] + [0, 0, 0] * 254)
    im.putpixel((1, 1), 1)
    im.save(tmp_path / "palt.png", transparency=0)
    rgb = load_rgb(tmp_path / "palt.png")
    _check_rgb(rgb, (4, 4))
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[1, 1]) == (200, 100, 50)


def test_rgba_composed_over_white(tmp_path):
    a = np.zeros((2, 3, 4), np.uint8)
    a[0, 0] = (255, 0, 0, 0)        # fully transparent red -> white
    a[0, 1] = (0, 0, 255, 255)      # opaque blue
    a[0, 2] = (0, 0, 0, 128)        # half-transparent black -> mid grey
    a[1, :] = (0, 200, 0, 255)
    Image.fromarray(a, "RGBA").save(tmp_path / "rgba.png")
    rgb = load_rgb(tmp_path / "rgba.png")
    _check_rgb(rgb, (2, 3))
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 1]) == (0, 0, 255)
    assert all(abs(int(v) - 127) <= 1 for v in rgb[0, 2]), rgb[0, 2]
    assert tuple(rgb[1, 1]) == (0, 200, 0)


def test_greyscale_with_alpha(tmp_path):
    im = Image.new("LA", (3, 2), (50, 255))
    im.putpixel((0, 0), (50, 0))
    im.save(tmp_path / "la.png")
    rgb = load_rgb(tmp_path / "la.png")
    _check_rgb(rgb, (2, 3))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[1, 2]) == (50, 50, 50)


def test_cmyk(tmp_path):
    im = Image.new("CMYK", (3, 1), (0, 0, 0, 0))       # white
    im.putpixel((1, 0), (255, 0, 0, 0))                # cyan
    im.putpixel((2, 0), (0, 0, 0, 255))                # black
    im.save(tmp_path / "cmyk.tif")
    assert Image.open(tmp_path / "cmyk.tif").mode == "CMYK"
    rgb = load_rgb(tmp_path / "cmyk.tif")
    _check_rgb(rgb, (1, 3))
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 1]) == (0, 255, 255)
    assert tuple(rgb[0, 2]) == (0, 0, 0)


def test_cmyk_jpeg(tmp_path):
    im = Image.new("CMYK", (16, 8), (0, 0, 0, 0))
    im.paste((0, 255, 255, 0), (0, 0, 8, 8))           # magenta + yellow = red, left half
    im.save(tmp_path / "cmyk.jpg", quality=95)
    rgb = load_rgb(tmp_path / "cmyk.jpg")
    _check_rgb(rgb, (8, 16))
    left, right = rgb[:, :6].reshape(-1, 3).mean(0), rgb[:, 10:].reshape(-1, 3).mean(0)
    assert left[0] > 200 and left[1] < 60 and left[2] < 60, left
    assert right.min() > 220, right


def test_16_bit_greyscale(tmp_path):
    full = np.full((4, 6), 65535, np.uint16)
    Image.fromarray(full).save(tmp_path / "white16.png")
    assert Image.open(tmp_path / "white16.png").mode.startswith("I")
    rgb = load_rgb(tmp_path / "white16.png")
    _check_rgb(rgb, (4, 6))
    assert (rgb == 255).all()
    ramp = np.array([[0, 257 * 64, 32768, 65535]], np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    rgb = load_rgb(tmp_path / "ramp16.png")
    _check_rgb(rgb, (1, 4))
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 64, 128, 255])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_16_bit_dark_image_stays_dark(tmp_path):
    """A pixel's value must not depend on the brightest pixel of the image."""
    dark = np.full((4, 4), 200, np.uint16)                 # 200 / 65535: nearly black
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    with_one_brighter = dark.copy()
    with_one_brighter[0, 0] = 300
    Image.fromarray(with_one_brighter).save(tmp_path / "dark16b.png")
    a = load_rgb(tmp_path / "dark16.png")
    b = load_rgb(tmp_path / "dark16b.png")
    assert b[2, 2, 0] <= 1
    assert a[2, 2, 0] <= 1, (
        f"BUG bbx/image.py _to_rgb: a 16-bit PNG whose pixels are all <= 255 is read as 8-bit "
        f"(200/65535 became {a[2, 2, 0]}/255, while the same pixel reads {b[2, 2, 0]} when one other pixel "
        f"is 300); for modes I;16* always divide by 65535")


def test_unreadable_images_raise_image_error(files):
    for name in ("garbage.png", "truncated.png", "missing.png"):
        with pytest.raises(ImageError):
            load_rgb(files / name)
