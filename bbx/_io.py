"""Atomic file writes: a killed bbx never leaves a half-written PNG or JSON behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import OutputError


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on a temporary file in the same folder, then rename it into place.

    The file gets the usual permissions (0666 less the umask, not mkstemp's 0600); a link at
    ``path`` is replaced, never followed. A failure to write is one line (:class:`OutputError`).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    text = json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n"
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def append_line(path: str | Path, data: Any) -> None:
    """Append one JSON line in a single write, flushed and synced (a kill leaves whole lines)."""
    line = json.dumps(data, default=_jsonable, separators=(",", ":")) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def append_csv_row(path: str | Path, row: dict[str, Any]) -> None:
    """Append one row to a CSV file, writing the header first when the file is new (benchmarks' results).

    An existing file's header decides the column order; a row with other columns is refused
    rather than written under the wrong headings.
    """
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(row)
    if path.exists() and path.stat().st_size:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), [])
        if set(header) != set(fields):
            raise OutputError(f"{path} has the columns {header}, not {fields}: write to another file")
        fields = header
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        if fh.tell() == 0:
            w.writeheader()
        w.writerow(row)


def ensure_dir(path: str | Path) -> Path:
    """Create an output folder, or say in one line why it cannot be used."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {path} is not writable")
    return path


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
