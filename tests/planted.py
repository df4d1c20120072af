"""Tiny ONNX classifiers with a planted answer: a known patch of the image hurts the target.

The model reads high-frequency energy (squared Laplacian of the grey image) inside fixed
patches. Blurring a textured patch removes its energy, so we know exactly which pixels are
"undesirable" for each class:

* ``target`` model: logit 0 = 2 - 1.0 * energy(A), logits 1, 2 = 0. Texture in A suppresses
  class 0; blurring A raises it (F-TC / plain should find A).
* ``other`` model: logit 0 = 1, logit 1 = 1.0 * energy(B), logit 2 = 0. Texture in B feeds
  class 1; blurring B lowers it and so raises class 0 (F-NTC should find B).

The photo has texture in A, in B and in a decoy patch C that no logit reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 56
A = (slice(8, 20), slice(8, 20))
B = (slice(34, 46), slice(30, 42))
C = (slice(36, 48), slice(6, 18))  # decoy: textured, read by no logit


def patch_mask(patch: tuple[slice, slice], size: int = SIZE) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[patch] = True
    return m


def photo(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """A smooth random background with checkerboard texture in A, B and C (0-1 RGB float32)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.15 * np.sin(2 * np.pi * (xx + rng.random())) * np.cos(2 * np.pi * (yy + rng.random()))
    img = np.repeat(base[..., None], 3, axis=2)
    checker = ((np.indices((size, size)).sum(axis=0) % 2) * 2 - 1) * 0.25
    for patch in (A, B, C):
        img[patch] += checker[patch][..., None]
    return np.clip(img, 0, 1).astype(np.float32)


def photo_folder(folder: Path, count: int) -> list[Path]:
    """``count`` planted photos (seeds 0, 1, ...) saved as PNG files in ``folder``, sorted."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.rint(photo(seed=i) * 255).astype(np.uint8)).save(folder / f"photo{i}.png")
    return sorted(folder.glob("*.png"))


def build(path: Path, kind: str = "target") -> Path:
    """Write the ``target`` or ``other`` planted model to ``path`` (with its preprocessing)."""
    if kind == "target":
        return build_reader(path, A, coef=(-1.0, 0.0, 0.0), bias=(2.0, 0.0, 0.0), name=f"planted_{kind}")
    return build_reader(path, B, coef=(0.0, 1.0, 0.0), bias=(1.0, 0.0, 0.0), name=f"planted_{kind}")


def build_reader(path: Path, region: tuple[slice, slice] | list[tuple[slice, slice]], size: int = SIZE,
                 coef=(-1.0, 0.0, 0.0), bias=(2.0, 0.0, 0.0), name: str = "planted_reader") -> Path:
    """A model whose logits are ``bias + coef * energy(region)``: the default reads texture in
    ``region`` (one patch, or the union of a list of them) as evidence against class 0 (blurring
    ``region`` raises it), at any input ``size``."""
    lap = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32)
    w_conv = np.repeat(lap[None, None] / 3.0, 3, axis=1)  # grey = channel mean
    union = np.logical_or.reduce([patch_mask(r, size) for r in (region if isinstance(region, list) else [region])])
    w_map = (union / union.sum()).astype(np.float32)
    inits = [
        numpy_helper.from_array(w_conv, "w_conv"),
        numpy_helper.from_array(w_map[None, None], "w_map"),
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "shape_n1"),
        numpy_helper.from_array(np.array([coef], dtype=np.float32), "coef"),
        numpy_helper.from_array(np.array(bias, dtype=np.float32), "bias"),
    ]
    nodes = [  # energy = mean over the patch of the squared Laplacian of the grey image
        helper.make_node("Conv", ["x", "w_conv"], ["lap"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["lap", "lap"], ["sq"]),
        helper.make_node("Mul", ["sq", "w_map"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axes"], ["energy1"], keepdims=1),
        helper.make_node("Reshape", ["energy1", "shape_n1"], ["energy"]),
        helper.make_node("MatMul", ["energy", "coef"], ["lin"]),
        helper.make_node("Add", ["lin", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = {"size": [size, size], "crop_pct": 1.0, "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1],
            "channel_order": "RGB", "layout": "NCHW"}
    helper.set_model_props(model, {"bbx.preprocess": json.dumps(spec),
                                   "bbx.labels": json.dumps(["target", "rival", "other"])})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def stamped_photo(seed: int, region: tuple[slice, slice] | None, size: int = SIZE, decoys: int = 2,
                  strength: float = 0.25, avoid: tuple[slice, slice] | None = None) -> np.ndarray:
    """A smooth random background, ``decoys`` textured squares at random places (none touching
    ``avoid``), and, unless ``region`` is None, the same texture in ``region`` (the stamp every photo shares)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.15 * np.sin(2 * np.pi * (xx + rng.random())) * np.cos(2 * np.pi * (yy + rng.random()))
    img = np.repeat(base[..., None], 3, axis=2)
    checker = ((np.indices((size, size)).sum(axis=0) % 2) * 2 - 1) * strength
    side = size // 6
    patches: list[tuple[slice, slice]] = []
    while len(patches) < decoys:
        r, c = rng.integers(0, size - side, 2)
        patch = (slice(r, r + side), slice(c, c + side))
        if avoid is None or not (patch_mask(patch, size) & patch_mask(avoid, size)).any():
            patches.append(patch)
    for patch in patches + ([region] if region is not None else []):
        img[patch] = base[patch][..., None] + checker[patch][..., None]
    return np.clip(img, 0, 1).astype(np.float32)


def stamped_folder(folder: Path, count: int, region: tuple[slice, slice] | None, size: int = SIZE,
                   first_seed: int = 0, **kw) -> list[Path]:
    """``count`` :func:`stamped_photo` files (PNG) in ``folder``, sorted."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        arr = stamped_photo(first_seed + i, region, size, **kw)
        Image.fromarray(np.rint(arr * 255).astype(np.uint8)).save(folder / f"photo{i:04d}.png")
    return sorted(folder.glob("*.png"))
