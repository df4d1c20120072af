"""The model card of a report: what was audited, how its inputs were prepared, on what software."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any



def model_card(model: Any, command: str) -> dict[str, Any]:
    """File and sha256 (or what else identifies the black box), inputs and outputs, detected conventions, preprocessing field by field with
    its source, the labels' source, onnxruntime and bbx versions, the device and the command."""
    import onnxruntime

    d = model.describe()
    return {
        "file": Path(model.name).name,
        "identity": model.identity(),  # a file's path and sha256, an endpoint's address ...
        "inputs": d.get("inputs", []),
        "outputs": d.get("outputs", []),
        "input": d["input"],
        "output": d["output"],
        "preprocess": [{"field": k, "value": v, "source": d["preprocess_sources"].get(k, "?")}
                       for k, v in d["preprocess"].items()],
        "labels_source": d["labels_source"],
        "num_classes": d["num_classes"],
        "onnxruntime": onnxruntime.__version__,
        "providers": d.get("providers", []),
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
