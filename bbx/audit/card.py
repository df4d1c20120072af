"""The model card of a report: what was audited, how its inputs were prepared, on what software."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from ..evaluate import _sha256


def model_card(model: Any, command: str) -> dict[str, Any]:
    """File and sha256, inputs and outputs, detected conventions, preprocessing field by field with
    its source, the labels' source, onnxruntime and bbx versions, the device and the command."""
    import onnxruntime

    d = model.describe()
    return {
        "file": model.path.name,
        "path": str(model.path),
        "sha256": _sha256(model.path),
        "inputs": d["inputs"],
        "outputs": d["outputs"],
        "input": d["input"],
        "output": d["output"],
        "preprocess": [{"field": k, "value": v, "source": d["preprocess_sources"].get(k, "?")}
                       for k, v in d["preprocess"].items()],
        "labels_source": d["labels_source"],
        "num_classes": d["num_classes"],
        "onnxruntime": onnxruntime.__version__,
        "providers": d["providers"],
        "device": model.device,
        "bbx": bbx_version(),
        "command": command,
    }


def bbx_version() -> str:
    try:
        return metadata.version("bbx")
    except metadata.PackageNotFoundError:
        from .. import __version__

        return __version__
