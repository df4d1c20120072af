"""Where each field of a model's preprocessing comes from, strongest first.

1. the command line (or the Python API's ``preprocess_overrides``);
2. a sidecar: ``--spec FILE`` where it is given, else ``<model>.bbx.json`` next to the model;
3. the ONNX ``metadata_props`` key ``bbx.preprocess``;
4. evidence in the graph and its metadata: a uint8 image input takes raw 0-255 pixels; ONNX's
   documented image metadata (``Image.BitmapPixelFormat``, ``Image.NominalPixelRange``); a
   Caffe-lineage producer selects the ``caffe`` preset;
5. a bundled preset, named (``--preset``) or matched by the model's file name;
6. bbx's defaults.

Every resolved field remembers where it came from (``bbx inspect`` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from .._io import load_json, read_regular
from ..errors import ModelError, OptionError
from .spec import FIELDS, PreprocessSpec, normalised, validate

METADATA_KEY = "bbx.preprocess"
LABELS_KEY = "bbx.labels"

_IMAGENET = {"scale": 1.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "channel_order": "RGB"}
_LITE = {"scale": 255.0, "mean": (127.0, 127.0, 127.0), "std": (128.0, 128.0, 128.0), "channel_order": "RGB"}

#: Bundled presets, matched against the model's file name (first match wins).
PRESETS: dict[str, dict[str, Any]] = {
    "efficientnet_lite0": {"size": (224, 224), "crop_pct": 0.875, **_LITE},
    "efficientnet_lite1": {"size": (240, 240), "crop_pct": 0.882, **_LITE},
    "efficientnet_lite2": {"size": (260, 260), "crop_pct": 0.890, **_LITE},
    # Caffe's BVLC models: BGR, 0-255, minus the ImageNet mean per channel, no std (B, G, R order)
    "caffe": {"size": (224, 224), "crop_pct": 0.875, "scale": 255.0, "mean": (104.0, 117.0, 123.0),
              "std": (1.0, 1.0, 1.0), "channel_order": "BGR"},
    "inception": {"size": (299, 299), "crop_pct": 0.875, "scale": 1.0,
                  "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "channel_order": "RGB"},
    "resnet": dict(_IMAGENET), "vgg": dict(_IMAGENET), "densenet": dict(_IMAGENET),
    "mobilenet": dict(_IMAGENET), "efficientnet": dict(_IMAGENET), "convnext": dict(_IMAGENET),
}
_NAMED_ONLY = ("caffe",)  # chosen by evidence or by name, never matched in a file name

#: ONNX's image metadata (onnx/docs/MetadataProps.md): value range and channel order.
_PIXEL_RANGES = {
    "NominalRange_0_255": {"scale": 255.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
    "Normalized_0_1": {"scale": 1.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
    "Normalized_1_1": {"scale": 1.0, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
}
_PIXEL_FORMATS = {"Rgb8": "RGB", "Rgba8": "RGB", "Bgr8": "BGR", "Bgra8": "BGR"}


@dataclass(frozen=True)
class ResolvedSpec:
    spec: PreprocessSpec
    #: field -> "cli" | "sidecar" | "metadata" | "graph:..." | "metadata:KEY" | "preset:NAME ..." | "default"
    sources: dict[str, str]

    def defaulted(self, names: tuple[str, ...]) -> list[str]:
        """Which of ``names`` nothing but bbx's defaults decided."""
        return [n for n in names if self.sources.get(n) == "default"]


@dataclass(frozen=True)
class GraphFacts:
    """What the graph says about its own preprocessing, read by the model's loader."""

    input_dtype: str = "float32"
    producer: str = ""


def sidecar_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".bbx.json")


#: a sidecar or spec file holds a few fields and at most a list of class names
MAX_SIDECAR_BYTES = 16 * 2**20


def read_sidecar(model_path: str | Path, spec_file: str | Path | None = None) -> dict[str, Any]:
    """The sidecar JSON (``spec_file``, else the one next to the model), ``{}`` when there is none.

    A ``spec_file`` that was asked for must exist. Either is read as a regular file of at most
    ``MAX_SIDECAR_BYTES`` (a FIFO or /dev/zero is refused before it is read) through the bounded
    JSON reader (:func:`bbx._io.load_json`)."""
    path = Path(spec_file) if spec_file is not None else sidecar_path(model_path)
    what = "spec file" if spec_file is not None else "sidecar"
    if spec_file is None and not (path.exists() or path.is_symlink()):
        return {}
    try:
        data = load_json(read_regular(path, MAX_SIDECAR_BYTES, what))
    except OptionError as exc:
        raise (exc if spec_file is not None else ModelError(str(exc))) from None
    except ValueError as exc:
        raise ModelError(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{what} {path} must hold a JSON object")
    return data


def preset_for(model_path: str | Path, name: str | None = None) -> tuple[str, dict[str, Any]] | None:
    if name is not None:
        key = name.lower().replace("-", "_")
        if key not in PRESETS:
            raise OptionError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
        return key, PRESETS[key]
    stem = Path(model_path).stem.lower().replace("-", "_")
    for key, values in PRESETS.items():
        if key in stem and key not in _NAMED_ONLY:
            return key, values
    return None


def evidence(facts: GraphFacts, metadata: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Layers of fields the graph and its metadata imply, strongest first."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if facts.input_dtype == "uint8":  # nothing but raw bytes fits a uint8 input
        layers.append(("graph:uint8 input", {"scale": 255.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}))
    rng = metadata.get("Image.NominalPixelRange")
    if rng in _PIXEL_RANGES:
        layers.append(("metadata:Image.NominalPixelRange", _PIXEL_RANGES[rng]))
    fmt = metadata.get("Image.BitmapPixelFormat")
    if fmt in _PIXEL_FORMATS:
        layers.append(("metadata:Image.BitmapPixelFormat", {"channel_order": _PIXEL_FORMATS[fmt]}))
    if "caffe" in facts.producer.lower():
        layers.append((f"preset:caffe (producer {facts.producer})", PRESETS["caffe"]))
    return layers


def resolve(
    model_path: str | Path,
    metadata: Mapping[str, str],
    *,
    cli: Mapping[str, Any] | None = None,
    preset: str | None = None,
    spec_file: str | Path | None = None,
    facts: GraphFacts | None = None,
    beside: bool = True,
) -> ResolvedSpec:
    """Merge the spec sources field by field, remembering each field's origin. ``beside``: look for
    a sidecar next to ``model_path`` when no ``spec_file`` is given (an endpoint has no folder)."""
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if cli:
        layers.append(("cli", {k: v for k, v in cli.items() if v is not None}))
    side = (read_sidecar(model_path, spec_file) if beside or spec_file is not None else {}).get("preprocess")
    if side:
        where = f"spec file {spec_file}" if spec_file is not None else f"sidecar {sidecar_path(model_path)}"
        layers.append(("sidecar", _checked(side, where)))
    if METADATA_KEY in metadata:
        try:
            meta = load_json(metadata[METADATA_KEY])
        except ValueError as exc:
            raise ModelError(f"metadata {METADATA_KEY} is not valid JSON: {exc}") from None
        layers.append(("metadata", _checked(meta, f"metadata {METADATA_KEY}")))
    if preset is not None:  # a preset asked for by name outranks what bbx infers
        found = preset_for(model_path, preset)
        layers.append((f"preset:{found[0]}", found[1]))
    layers += evidence(facts or GraphFacts(), metadata)
    found = preset_for(model_path) if preset is None else None
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
    spec = validate(PreprocessSpec(**normalised(values)))
    _refuse_unused(spec, sources)
    return ResolvedSpec(spec, sources)


def _refuse_unused(spec: PreprocessSpec, sources: Mapping[str, str]) -> None:
    """A flag the resize mode would not read is refused, never silently dropped."""
    if sources["pad_value"] == "cli" and spec.resize_mode not in ("letterbox", "pad"):
        raise OptionError(f"--pad-value does nothing with resize mode {spec.resize_mode}: only letterbox and pad pad")
    if sources["crop_pct"] == "cli" and spec.resize_mode != "crop":
        raise OptionError(f"--crop-pct does nothing with resize mode {spec.resize_mode}: only crop crops")


def with_graph(resolved: ResolvedSpec, **graph_values: Any) -> ResolvedSpec:
    """Fields the graph fixes (a static spatial size, an unambiguous layout) override the spec."""
    changes = {k: v for k, v in graph_values.items() if v is not None}
    sources = dict(resolved.sources)
    for k, v in changes.items():
        if getattr(resolved.spec, k) != v and sources[k] == "cli":
            raise OptionError(f"--{k.replace('_', '-')} {_shown(getattr(resolved.spec, k))} contradicts the model, "
                              f"whose input fixes {k} = {_shown(v)}")
        sources[k] = "graph"
    return ResolvedSpec(replace(resolved.spec, **changes), sources)


def _shown(v: Any) -> str:
    return f"{v[0]},{v[1]}" if isinstance(v, tuple) else str(v)


def _checked(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ModelError(f"{where} must be a JSON object")
    unknown = set(d) - set(FIELDS)
    if unknown:
        raise ModelError(f"{where} has unknown field(s): {', '.join(sorted(unknown))}")
    return d
