"""An evaluation's folder: its lock, its pinned settings and its JSON lines, read back.

``results.jsonl`` holds one record per finished job; ``settings.json`` pins what changes the
numbers, so that a rerun with other settings is refused instead of mixing incomparable results;
``.lock`` keeps one writer per folder (:mod:`bbx.evaluate` and every engine behind it).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ._io import atomic_write, write_json
from .errors import OutputError

RESULTS, SETTINGS = "results.jsonl", "settings.json"


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The file's records; unreadable lines (a torn last line after a kill) are dropped from it.

    Rewriting the file (atomically) matters: appending after a torn line without a newline
    would glue the next record onto it.
    """
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    records, bad = [], 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not {"image", "method", "seed"} <= rec.keys():
                raise ValueError("not a record")
            records.append(rec)
        except ValueError:
            bad += 1
    if bad or (raw and not raw.endswith(b"\n")):
        keep = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        atomic_write(path, lambda fh: fh.write(keep), mode="w")
    return records


def record_key(rec: dict[str, Any]) -> tuple[str, str, int]:
    return rec["image"], rec["method"], int(rec["seed"])


def check_settings(path: Path, settings: dict[str, Any]) -> None:
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        if old != settings:
            keys = settings.keys() | (old.keys() if isinstance(old, dict) else set())
            changed = ", ".join(sorted(k for k in keys if not isinstance(old, dict) or old.get(k) != settings.get(k)))
            raise OutputError(f"{path.parent} holds an evaluation with other settings ({changed}); "
                              f"use another --out or delete {path.parent}")
        return
    write_json(path, settings)


@contextmanager
def lock(folder: Path) -> Iterator[None]:
    """One writer per output folder; the OS drops the lock when its holder dies, even by SIGKILL."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(folder / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"another bbx evaluate is writing to {folder}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
