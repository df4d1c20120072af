"""Every documented preprocessing bbx can be told, checked against the vendor's own pipeline.

Each test builds an "echo" model (its scores are its own input, flattened: onnx_builders.build_echo),
so what bbx feeds the model is read back exactly and compared, within float tolerance, with the
vendor's documented pipeline written here independently in PIL and numpy.
"""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
from onnx import TensorProto
from PIL import Image

import onnx_builders as ob
from bbx import preprocess as pp
from bbx.errors import OptionError
from bbx.model import OnnxClassifier


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _fed(m: OnnxClassifier, rgb: np.ndarray) -> np.ndarray:
    """What bbx gave the model for this photo, as the model's own (C, H, W) or (H, W, C) tensor."""
    raw = m.scores(m.prepare(rgb)[None]).raw[0]
    h, w = m.input_size
    return raw.reshape((3, h, w) if m.input.layout == "NCHW" else (h, w, 3))


def _chw(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).transpose(2, 0, 1)


# -- the vendors' pipelines, written from their documentation ------------------------------------

def torchvision_eval(rgb: np.ndarray, size: int, resize: int) -> np.ndarray:
    """torchvision ``Resize(resize)`` (short side) + ``CenterCrop(size)`` + ``ToTensor`` + ImageNet
    ``Normalize``, in PIL and numpy (CHW float32)."""
    im = Image.fromarray(rgb)
    w, h = im.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    im = im.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    x = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    return _chw((x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32))


def stretch(rgb: np.ndarray, h: int, w: int, interp=Image.BILINEAR) -> np.ndarray:
    """Plain ``resize((w, h))`` to the model's size, 0-1 (the NSFW and many Keras pipelines)."""
    return _chw(np.asarray(Image.fromarray(rgb).resize((w, h), interp), dtype=np.float32) / 255.0)


def letterbox(rgb: np.ndarray, h: int, w: int, pad: int = 114) -> np.ndarray:
    """Ultralytics ``LetterBox(center=True)``: scale to fit, round, pad both sides with 114, 0-1."""
    ph, pw = rgb.shape[:2]
    r = min(h / ph, w / pw)
    nw, nh = int(round(pw * r)), int(round(ph * r))
    dw, dh = (w - nw) / 2, (h - nh) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    out = np.full((h, w, 3), pad, dtype=np.uint8)
    out[top:top + nh, left:left + nw] = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
    return _chw(out.astype(np.float32) / 255.0)


def paddleocr_cls(rgb: np.ndarray, img_h: int, img_w: int) -> np.ndarray:
    """PaddleOCR's ``ClsResizeImg``/``resize_norm_img``: height to img_h, width ceil(img_h * w / h) capped
    at img_w, ``/255 - 0.5) / 0.5``, zeros to the right (after normalisation)."""
    h, w = rgb.shape[:2]
    ratio = w / float(h)
    resized_w = img_w if math.ceil(img_h * ratio) > img_w else int(math.ceil(img_h * ratio))
    resized = np.asarray(Image.fromarray(rgb).resize((resized_w, img_h), Image.BILINEAR), dtype=np.float32)
    resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    out = np.zeros((3, img_h, img_w), dtype=np.float32)
    out[:, :, 0:resized_w] = resized
    return out


def caffe_bvlc(rgb: np.ndarray, size: int = 16, resize: int = 18) -> np.ndarray:
    """Caffe's BVLC models: short side to ``resize``, centre crop, BGR, 0-255, minus the mean 104/117/123."""
    im = Image.fromarray(rgb)
    w, h = im.size
    s = resize / min(w, h)
    nw, nh = round(w * s), round(h * s)
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    x = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)[..., ::-1]
    return _chw(x - np.array([104.0, 117.0, 123.0], np.float32))


# -- bbx against them -----------------------------------------------------------------------------

def test_centre_crop_is_torchvision(tmp_path):
    path = ob.build_echo(tmp_path, size=(16, 16))
    m = OnnxClassifier(path, preset="resnet", preprocess_overrides={"crop_pct": 16 / 18})
    rgb = _photo(30, 40)  # short side 30 -> 18, long 24; crop 16 from (1, 4)
    assert m.spec.resize_mode == "crop" and m.spec_sources["resize_mode"] == "default"
    np.testing.assert_allclose(_fed(m, rgb), torchvision_eval(rgb, 16, 18), atol=1e-5)


@pytest.mark.parametrize("shape", [(30, 70), (50, 20)])
@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "nearest", "lanczos"])
def test_stretch_with_each_interpolation(tmp_path, shape, interp):
    path = ob.build_echo(tmp_path, size=(12, 20), metadata=ob.spec(size=[12, 20], resize_mode="stretch",
                                                                    interpolation=interp))
    m = OnnxClassifier(path)
    rgb = _photo(*shape)
    pil = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
           "lanczos": Image.LANCZOS}[interp]
    np.testing.assert_allclose(_fed(m, rgb), stretch(rgb, 12, 20, pil), atol=1e-6)


@pytest.mark.parametrize("shape", [(30, 70), (50, 20), (24, 32), (7, 9)])
def test_letterbox_is_ultralytics(tmp_path, shape):
    path = ob.build_echo(tmp_path, size=(24, 32))
    m = OnnxClassifier(path, preprocess_overrides={"resize_mode": "letterbox", "pad_value": [114] * 3, "scale": 1.0,
                                                   "mean": [0, 0, 0], "std": [1, 1, 1]})
    rgb = _photo(*shape)
    np.testing.assert_allclose(_fed(m, rgb), letterbox(rgb, 24, 32), atol=1e-6)


@pytest.mark.parametrize("shape", [(20, 30), (16, 200), (40, 40)])
def test_pad_is_paddleocr_text_direction(tmp_path, shape):
    """PaddleOCR's cls model takes 3 x 48 x 192 (here 12 x 48, the same pipeline): its zero padding after
    normalisation is pad value 127.5 before it."""
    path = ob.build_echo(tmp_path, size=(12, 48))
    side = tmp_path / "elsewhere" / "paddle_cls.json"
    side.parent.mkdir()
    side.write_text(json.dumps({"preprocess": {"resize_mode": "pad", "pad_value": 127.5, "scale": 1.0,
                                               "mean": [0.5] * 3, "std": [0.5] * 3}}))
    m = OnnxClassifier(path, spec_file=side)
    assert m.spec_sources["resize_mode"] == "sidecar" and m.describe()["spec_file"] == str(side)
    rgb = _photo(*shape)
    np.testing.assert_allclose(_fed(m, rgb), paddleocr_cls(rgb, 12, 48), atol=1e-5)


def test_caffe_preset_chosen_by_the_producer_before_the_file_name(tmp_path):
    """An inception_v1 exported from Caffe: its name matches the inception preset (0.5/0.5, RGB), its
    producer says Caffe (BGR, 0-255, mean 104/117/123); the evidence wins."""
    path = ob.build_echo(tmp_path, name="inception_v1", size=(16, 16), producer="onnx-caffe2")
    m = OnnxClassifier(path, preprocess_overrides={"crop_pct": 16 / 18})
    assert m.spec_sources["channel_order"] == "preset:caffe (producer onnx-caffe2)"
    rgb = _photo(27, 36)
    np.testing.assert_allclose(_fed(m, rgb), caffe_bvlc(rgb), atol=1e-4)
    named = OnnxClassifier(ob.build_echo(tmp_path / "b", name="inception_v1", size=(16, 16)))
    assert named.spec_sources["mean"] == "preset:inception"


def test_onnx_image_metadata_is_evidence(tmp_path):
    """ONNX's documented ``Image.BitmapPixelFormat`` / ``Image.NominalPixelRange`` set order and range."""
    path = ob.build_echo(tmp_path, size=(8, 8), props_extra={"Image.BitmapPixelFormat": "Bgr8",
                                                            "Image.NominalPixelRange": "NominalRange_0_255"})
    m = OnnxClassifier(path, preprocess_overrides={"resize_mode": "stretch"})
    rgb = _photo(8, 8)
    expect = _chw(rgb[..., ::-1].astype(np.float32))
    np.testing.assert_allclose(_fed(m, rgb), expect, atol=1e-4)
    assert m.spec_sources["channel_order"] == "metadata:Image.BitmapPixelFormat"


def test_uint8_input_takes_raw_pixels_with_no_flags(tmp_path):
    """A uint8 input can only mean raw 0-255 bytes: with no metadata at all bbx must predict what the model
    computes on them (before, ImageNet-normalised values were fed and the class was wrong)."""
    m = OnnxClassifier(ob.build_uint8(tmp_path))
    assert m.spec_sources["scale"] == "graph:uint8 input" and m.spec.mean == (0, 0, 0)
    rgb = _photo(16, 16, seed=3)
    view = m.prepare(rgb)
    expect = ob.reference_logits(np.round(view * 255)[None] / 255.0)
    np.testing.assert_allclose(m.scores(view[None]).logits, expect, atol=1e-4)
    assert int(m.predict(rgb).probs.argmax()) == int(expect.argmax())


def test_height_by_width_size_on_the_command_line(tmp_path):
    path = ob.build_symbolic_size(tmp_path)
    out = subprocess.run(["bbx", "inspect", str(path), "--size", "48,192", "--json"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert (d["input"]["height"], d["input"]["width"]) == (48, 192) and d["preprocess_sources"]["size"] == "cli"
    bad = subprocess.run(["bbx", "inspect", str(path), "--size", "48,wide"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("bbx: error: --size needs")


def test_spec_file_must_exist(tmp_path):
    with pytest.raises(OptionError, match="spec file not found"):
        OnnxClassifier(ob.build_plain(tmp_path), spec_file=tmp_path / "nope.json")


def test_bad_resize_mode_and_pad_value_are_refused(tmp_path):
    path = ob.build_plain(tmp_path)
    with pytest.raises(OptionError, match="resize_mode 'squash' must be one of"):
        OnnxClassifier(path, preprocess_overrides={"resize_mode": "squash"})
    with pytest.raises(OptionError, match="pad_value"):
        OnnxClassifier(path, preprocess_overrides={"pad_value": [300], "resize_mode": "pad"})
    with pytest.raises(OptionError, match="--pad-value does nothing with resize mode crop"):
        OnnxClassifier(path, preprocess_overrides={"pad_value": [114]})
    with pytest.raises(OptionError, match="--crop-pct does nothing with resize mode stretch"):
        OnnxClassifier(path, preprocess_overrides={"crop_pct": 0.9, "resize_mode": "stretch"})


# -- back onto the photo (the geometry's worked answers: tests/test_geometry.py) ------------------

def test_explanation_is_also_written_on_the_photo(tmp_path):
    path = ob.build_plain(tmp_path)
    photo = tmp_path / "photo.png"
    Image.fromarray(_photo(40, 50)).save(photo)
    out = tmp_path / "out"
    proc = subprocess.run(["bbx", "explain", str(path), str(photo), "--out", str(out)],  # the default method, rise_lead
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out / "photo_overlay.png") as im:
        assert im.size == (50, 40)
    with Image.open(out / "heatmap.png") as im:
        assert im.size == (ob.SIZE, ob.SIZE)
    mask = np.load(out / "photo_mask.npy")
    assert mask.shape == (40, 50) and mask.min() >= 0 and mask.max() <= 1
    assert (mask[:, :5] == 1).all() and (mask[:, -5:] == 1).all()  # centre crop of a 40 x 50 photo
