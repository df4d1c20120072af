"""Preprocessing stored with the model, never guessed at a call site.

A :class:`PreprocessSpec` says how a photo becomes what the model was trained on: the geometry
(resize mode, height x width, crop or pad, interpolation: :mod:`.resize`), the value scale,
mean/std, channel order and layout (:mod:`.spec`). bbx blurs and blends in the image's own 0-1
RGB space and applies the spec's normalisation only when a batch goes to the model, so the
explanation never depends on the model's conventions. Where each field comes from, and in what
order the sources count, is :mod:`.sources`.
"""

from .resize import Axis, Geometry, geometry, prepare, to_photo
from .sources import (LABELS_KEY, METADATA_KEY, PRESETS, GraphFacts, ResolvedSpec, evidence, preset_for,
                      read_sidecar, resolve, sidecar_path, with_graph)
from .spec import (FIELDS, INTERPOLATIONS, MAX_SIDE, RESIZE_MODES, VALUE_FIELDS, PreprocessSpec, affine,
                   normalise, normalised, parse_size, to_model_input, validate)

__all__ = ["Axis", "FIELDS", "Geometry", "GraphFacts", "INTERPOLATIONS", "LABELS_KEY", "MAX_SIDE", "METADATA_KEY",
           "PRESETS", "PreprocessSpec", "RESIZE_MODES", "ResolvedSpec", "VALUE_FIELDS", "affine", "evidence",
           "geometry", "normalise", "normalised", "parse_size", "prepare", "preset_for", "read_sidecar", "resolve",
           "sidecar_path", "to_model_input", "to_photo", "validate", "with_graph"]
