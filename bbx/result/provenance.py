"""What makes a result reproducible, recorded with it: schema version, versions, model, preprocessing, time."""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

#: report.json's layout; raised when a field changes meaning or goes (2: provenance, notes, photo files)
SCHEMA_VERSION = 2


def versions() -> dict[str, str]:
    """bbx's, onnxruntime's, numpy's and Python's versions as installed."""
    from importlib import metadata

    out = {}
    for name in ("bbx", "onnxruntime", "onnxruntime-gpu", "numpy", "onnx", "pillow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    if "onnxruntime" not in out:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    out["python"] = platform.python_version()
    return out


def record(model: Any, command: str | None = None) -> dict[str, Any]:
    """The provenance block of a report: everything but the result itself."""
    return {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "versions": versions(),
        **model.identity(),
        "preprocess": model.spec.to_json(),
        "preprocess_sources": dict(model.spec_sources),
        "labels_source": model.labels_source,
    }
