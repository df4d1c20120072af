"""What a preprocessing spec holds, its checks, and the value map from 0-1 RGB to the model's tensor.

``mean``/``std`` are per channel in the order the model receives them (BGR models list BGR
means), applied as ``(pixel * scale - mean) / std`` with ``pixel`` in 0-1. The geometry (resize
mode, size, crop, pad) is in :mod:`bbx.preprocess.resize`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..errors import OptionError

MAX_SIDE = 8192  # largest model input side bbx accepts (pixels)

#: How a photo becomes the model's height x width (:mod:`bbx.preprocess.resize` says each exactly).
RESIZE_MODES = {
    "crop": "resize the short side to size / crop_pct, then take the centre (torchvision, timm)",
    "stretch": "resize to height x width, aspect ratio not kept",
    "letterbox": "fit inside height x width keeping the aspect ratio, pad both sides evenly with pad_value",
    "pad": "resize to the height keeping the aspect ratio (width at most the model's), pad the right "
           "with pad_value (PaddleOCR's text classifiers)",
}
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")


@dataclass(frozen=True)
class PreprocessSpec:
    """How pixels are prepared for one model (see the module docstring for the value map)."""

    size: tuple[int, int] = (224, 224)  # height, width
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"
    layout: str = "NCHW"
    resize_mode: str = "crop"
    pad_value: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB, 0-255, before normalisation

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


FIELDS = tuple(f.name for f in fields(PreprocessSpec))
#: Fields whose default silently changes the answer when the model was trained otherwise.
VALUE_FIELDS = ("scale", "mean", "std", "channel_order")


def normalised(values: dict[str, Any]) -> dict[str, Any]:
    """Field values from JSON or the command line as the dataclass holds them (one clear error)."""
    out = dict(values)
    try:
        if "size" in out:
            out["size"] = parse_size(out["size"])
        for k in ("mean", "std", "pad_value"):
            if k in out:
                v = out[k]
                if isinstance(v, (str, bytes, dict)):  # a string is not a list of its characters
                    raise ValueError(f"{k} must be a number or a list of numbers, not {v!r}")
                v = [v] if isinstance(v, (int, float)) else list(v)
                out[k] = tuple(float(x) for x in (v * 3 if len(v) == 1 else v))  # one value: every channel
        for k in ("crop_pct", "scale"):
            if k in out:
                out[k] = float(out[k])
        for k in ("channel_order", "layout"):
            if k in out:
                out[k] = str(out[k]).upper()
        for k in ("interpolation", "resize_mode"):
            if k in out:
                out[k] = str(out[k]).lower()
    except (TypeError, ValueError, OverflowError) as exc:
        raise OptionError(f"bad preprocessing value: {exc}") from None
    return out


def parse_size(value: Any) -> tuple[int, ...]:
    """``224``, ``"224"``, ``"48,192"``, ``"48x192"`` or ``[48, 192]`` as (height, width)."""
    if isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)):
        raise ValueError(f"size must be whole pixels, not {value!r}")  # JSON true is not the number 1
    if isinstance(value, str):
        parts = value.lower().replace("x", ",").replace(" ", "").split(",")
        value = [p for p in parts if p]
        if len(value) == 1:
            value = value[0]
    if isinstance(value, (int, float, str)):
        return (int(value), int(value))
    sides = []
    for x in value:
        if float(x) != int(float(x)):
            raise ValueError(f"size {list(value)} must be whole pixels")
        sides.append(int(float(x)))
    return tuple(sides)


#: the per-channel map (pixel * scale - mean) / std stays within this in float32, far from overflow
MAX_GAIN = 1e6


def validate(spec: PreprocessSpec) -> PreprocessSpec:
    problems = []
    if len(spec.size) != 2 or min(spec.size) < 1 or max(spec.size) > MAX_SIDE:
        problems.append(f"size {spec.size} must be two integers (height, width) in 1..{MAX_SIDE}")
    if not 0.05 <= spec.crop_pct <= 1.0:
        problems.append(f"crop_pct {spec.crop_pct} must be in (0.05, 1]")
    if spec.interpolation not in INTERPOLATIONS:
        problems.append(f"interpolation {spec.interpolation!r} must be one of {', '.join(INTERPOLATIONS)}")
    if not 0 < spec.scale < np.inf:
        problems.append(f"scale {spec.scale} must be positive and finite")
    if (len(spec.mean) != 3 or len(spec.std) != 3 or any(not 0 < s < np.inf for s in spec.std)
            or not np.isfinite(spec.mean).all()):
        problems.append("mean and std need three finite values each, std positive")
    elif 0 < spec.scale < np.inf:
        with np.errstate(all="ignore"):  # a tiny std overflows float32: reported below, not warned
            gain, shift = affine(spec)
        if not (np.abs(gain) <= MAX_GAIN).all() or not (np.abs(shift) <= MAX_GAIN).all():
            problems.append(f"scale / std and mean / std must stay within {MAX_GAIN:g} (std {list(spec.std)}, "
                            f"mean {list(spec.mean)}, scale {spec.scale:g})")
    if spec.channel_order not in ("RGB", "BGR"):
        problems.append(f"channel_order {spec.channel_order!r} must be RGB or BGR")
    if spec.layout not in ("NCHW", "NHWC"):
        problems.append(f"layout {spec.layout!r} must be NCHW or NHWC")
    if spec.resize_mode not in RESIZE_MODES:
        problems.append(f"resize_mode {spec.resize_mode!r} must be one of {', '.join(RESIZE_MODES)}")
    if len(spec.pad_value) != 3 or not all(0 <= v <= 255 for v in spec.pad_value):
        problems.append(f"pad_value {spec.pad_value} must be one or three values in 0..255")
    if problems:
        raise OptionError("bad preprocessing: " + "; ".join(problems))
    return spec


def to_model_input(batch: np.ndarray, spec: PreprocessSpec, dtype: np.dtype) -> np.ndarray:
    """Turn an ``(N, H, W, 3)`` 0-1 RGB batch into the tensor the model expects."""
    x = normalise(batch, spec, channels_first=spec.layout == "NCHW")
    if np.dtype(dtype) == np.uint8:
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x.astype(dtype, copy=False))


def normalise(batch: np.ndarray, spec: PreprocessSpec, channels_first: bool, offset: bool = True) -> np.ndarray:
    """``batch * gain + shift`` per channel (``batch * gain`` without ``offset``) as a new
    C-contiguous float32 array in the model's channel order, ``(N, 3, H, W)`` if ``channels_first``
    else ``(N, H, W, 3)``.

    Channels first, the copy into that layout comes first and the map is applied in place per
    channel plane: the same float32 operations, without NumPy's slow three-wide inner loop (an
    eighth of the time; docs/gpu.md).
    """
    gain, shift = affine(spec)
    x = np.asarray(batch, dtype=np.float32)
    if spec.channel_order == "BGR":
        x = x[..., ::-1]
    if not channels_first:
        return x * gain + shift if offset else x * gain
    out = np.array(x.transpose(0, 3, 1, 2), dtype=np.float32, order="C")
    out *= gain[:, None, None]
    if offset:
        out += shift[:, None, None]
    return out


def affine(spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(gain, offset)`` with model value = pixel_0_1 * gain + offset (model channel order).

    Normalisation is affine, so a blend of two images can be normalised by blending their
    normalised versions: the fused query path relies on this.
    """
    std = np.asarray(spec.std, np.float32)
    return np.float32(spec.scale) / std, -np.asarray(spec.mean, np.float32) / std
