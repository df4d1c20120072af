"""Preprocessing stored with the model, never guessed at a call site.

A :class:`PreprocessSpec` says how a photo becomes what the model was trained on: resize and
centre crop, value scale, mean/std, channel order and layout. bbx blurs and blends in the
image's own 0-1 RGB space and applies the spec's normalisation only when a batch goes to the
model, so the explanation never depends on the model's conventions.

Sources, strongest first: CLI flags, a sidecar ``<model>.bbx.json``, the ONNX ``metadata_props``
key ``bbx.preprocess``, a bundled preset matched by file name, bbx's defaults.
Every resolved field remembers where it came from (``bbx inspect`` prints it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from .errors import ModelError, OptionError

METADATA_KEY = "bbx.preprocess"
MAX_SIDE = 8192  # largest model input side bbx accepts (pixels)
LABELS_KEY = "bbx.labels"

_INTERP = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
           "lanczos": Image.LANCZOS}


@dataclass(frozen=True)
class PreprocessSpec:
    """How pixels are prepared for one model.

    ``mean``/``std`` are per channel in the order the model receives them (BGR models list
    BGR means), applied as ``(pixel * scale - mean) / std`` with ``pixel`` in 0-1.
    """

    size: tuple[int, int] = (224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"
    layout: str = "NCHW"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


FIELDS = tuple(f.name for f in fields(PreprocessSpec))

_IMAGENET = {"scale": 1.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

#: Bundled presets, matched against the model's file name (first match wins).
PRESETS: dict[str, dict[str, Any]] = {
    "efficientnet_lite0": {"size": (224, 224), "crop_pct": 0.875, "scale": 255.0,
                           "mean": (127.0, 127.0, 127.0), "std": (128.0, 128.0, 128.0)},
    "efficientnet_lite1": {"size": (240, 240), "crop_pct": 0.882, "scale": 255.0,
                           "mean": (127.0, 127.0, 127.0), "std": (128.0, 128.0, 128.0)},
    "efficientnet_lite2": {"size": (260, 260), "crop_pct": 0.890, "scale": 255.0,
                           "mean": (127.0, 127.0, 127.0), "std": (128.0, 128.0, 128.0)},
    "inception": {"size": (299, 299), "crop_pct": 0.875, "scale": 1.0,
                  "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "resnet": dict(_IMAGENET), "vgg": dict(_IMAGENET), "densenet": dict(_IMAGENET),
    "mobilenet": dict(_IMAGENET), "efficientnet": dict(_IMAGENET), "convnext": dict(_IMAGENET),
}


@dataclass(frozen=True)
class ResolvedSpec:
    spec: PreprocessSpec
    sources: dict[str, str]  # field -> "cli" | "sidecar" | "metadata" | "preset:NAME" | "graph" | "default"


def sidecar_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".bbx.json")


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    """The sidecar JSON next to the model, or ``{}`` when there is none."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read sidecar {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"sidecar {path} must hold a JSON object")
    return data


def preset_for(model_path: str | Path, name: str | None = None) -> tuple[str, dict[str, Any]] | None:
    if name is not None:
        key = name.lower().replace("-", "_")
        if key not in PRESETS:
            raise OptionError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
        return key, PRESETS[key]
    stem = Path(model_path).stem.lower().replace("-", "_")
    for key, values in PRESETS.items():
        if key in stem:
            return key, values
    return None


def resolve(
    model_path: str | Path,
    metadata: Mapping[str, str],
    *,
    cli: Mapping[str, Any] | None = None,
    preset: str | None = None,
) -> ResolvedSpec:
    """Merge the spec sources field by field, remembering each field's origin."""
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if cli:
        layers.append(("cli", {k: v for k, v in cli.items() if v is not None}))
    side = read_sidecar(model_path).get("preprocess")
    if side:
        layers.append(("sidecar", _checked(side, f"sidecar {sidecar_path(model_path)}")))
    if METADATA_KEY in metadata:
        try:
            meta = json.loads(metadata[METADATA_KEY])
        except json.JSONDecodeError as exc:
            raise ModelError(f"metadata {METADATA_KEY} is not valid JSON: {exc}") from None
        layers.append(("metadata", _checked(meta, f"metadata {METADATA_KEY}")))
    found = preset_for(model_path, preset)
    if found:
        layers.append((f"preset:{found[0]}", found[1]))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        for origin, layer in layers:
            if name in layer and layer[name] is not None:
                values[name] = layer[name]
                sources[name] = origin
                break
        else:
            sources[name] = "default"
    return ResolvedSpec(validate(PreprocessSpec(**_normalised(values))), sources)


def with_graph(resolved: ResolvedSpec, **graph_values: Any) -> ResolvedSpec:
    """Fields the graph fixes (a static spatial size, an unambiguous layout) override the spec."""
    changes = {k: v for k, v in graph_values.items() if v is not None}
    sources = dict(resolved.sources)
    for k, v in changes.items():
        if getattr(resolved.spec, k) != v and sources[k] == "cli":
            raise OptionError(f"--{k.replace('_', '-')} {getattr(resolved.spec, k)} contradicts the model, "
                              f"whose input fixes {k} = {v}")
        sources[k] = "graph"
    return ResolvedSpec(replace(resolved.spec, **changes), sources)


def _checked(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ModelError(f"{where} must be a JSON object")
    unknown = set(d) - set(FIELDS)
    if unknown:
        raise ModelError(f"{where} has unknown field(s): {', '.join(sorted(unknown))}")
    return d


def _normalised(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    try:
        if "size" in out:
            s = out["size"]
            out["size"] = (int(s), int(s)) if isinstance(s, (int, float)) else tuple(int(x) for x in s)
        for k in ("mean", "std"):
            if k in out:
                v = out[k]
                out[k] = (float(v),) * 3 if isinstance(v, (int, float)) else tuple(float(x) for x in v)
        for k in ("crop_pct", "scale"):
            if k in out:
                out[k] = float(out[k])
        for k in ("channel_order", "layout"):
            if k in out:
                out[k] = str(out[k]).upper()
        if "interpolation" in out:
            out["interpolation"] = str(out["interpolation"]).lower()
    except (TypeError, ValueError, OverflowError) as exc:
        raise OptionError(f"bad preprocessing value: {exc}") from None
    return out


def validate(spec: PreprocessSpec) -> PreprocessSpec:
    problems = []
    if len(spec.size) != 2 or min(spec.size) < 1 or max(spec.size) > MAX_SIDE:
        problems.append(f"size {spec.size} must be two integers in 1..{MAX_SIDE}")
    if not 0.05 <= spec.crop_pct <= 1.0:
        problems.append(f"crop_pct {spec.crop_pct} must be in (0.05, 1]")
    if spec.interpolation not in _INTERP:
        problems.append(f"interpolation {spec.interpolation!r} must be one of {', '.join(_INTERP)}")
    if not 0 < spec.scale < np.inf:
        problems.append(f"scale {spec.scale} must be positive and finite")
    if (len(spec.mean) != 3 or len(spec.std) != 3 or any(not 0 < s < np.inf for s in spec.std)
            or not np.isfinite(spec.mean).all()):
        problems.append("mean and std need three finite values each, std positive")
    if spec.channel_order not in ("RGB", "BGR"):
        problems.append(f"channel_order {spec.channel_order!r} must be RGB or BGR")
    if spec.layout not in ("NCHW", "NHWC"):
        problems.append(f"layout {spec.layout!r} must be NCHW or NHWC")
    if problems:
        raise OptionError("bad preprocessing: " + "; ".join(problems))
    return spec


def prepare(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize and centre-crop an ``(h, w, 3)`` uint8 photo to ``(H, W, 3)`` float32 in 0-1."""
    H, W = spec.size
    h, w = rgb.shape[:2]
    scale = max(H / spec.crop_pct / h, W / spec.crop_pct / w)
    rh, rw = max(H, round(h * scale)), max(W, round(w * scale))
    im = Image.fromarray(rgb).resize((rw, rh), _INTERP[spec.interpolation])
    top, left = (rh - H) // 2, (rw - W) // 2
    im = im.crop((left, top, left + W, top + H))
    return np.asarray(im, dtype=np.float32) / 255.0


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
