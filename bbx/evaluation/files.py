"""The files of an evaluation folder: ``results.jsonl`` (one record per line), ``settings.json``
(what the records' numbers depend on) and ``.lock`` (one writer at a time).

Nothing here is opened through a symbolic link or a FIFO: each file is opened as a regular file
or refused in one line. Records are keyed by the photo's content (SHA-256), so a resumed
evaluation never mixes two photos that shared a path.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .._io import atomic_write, load_json, open_regular, write_json
from ..errors import OutputError
from ..result.record import parse_record

RESULTS, SETTINGS, LOCK = "results.jsonl", "settings.json", ".lock"
MAX_SETTINGS_BYTES = 1 << 20

def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The file's records, result and error lines alike.

    A torn last line (a kill in the middle of a write) is cut from the file: appending after it
    would glue the next record onto it. Any other line that is not a whole record is left where
    it is and named in a warning (file and line); its job counts as not done and runs again.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return []
    fd = open_regular(path, os.O_RDONLY, "results file")
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read()
    records = []
    lines = raw.split(b"\n")
    torn = lines.pop() if lines else b""  # what follows the last newline: b"" unless a write was cut
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(parse_record(line))
        except ValueError as exc:
            warnings.warn(f"{path} line {number}: {exc}; skipped, its job runs again", RuntimeWarning, stacklevel=2)
    if torn:
        keep = raw[: len(raw) - len(torn)]
        atomic_write(path, lambda fh: fh.write(keep))
    return records


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_settings(path: Path, settings: dict[str, Any]) -> None:
    if path.exists() or path.is_symlink():
        fd = open_regular(path, os.O_RDONLY, "settings file")
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_SETTINGS_BYTES + 1)
        try:
            old = load_json(raw, MAX_SETTINGS_BYTES)
        except ValueError:
            old = None
        if not isinstance(old, dict):
            raise OutputError(f"{path} is damaged (not a JSON object): it pinned what this evaluation ran with, "
                              f"so results cannot be added; restore it, or use another --out")
        if old != settings:
            changed = ", ".join(sorted(k for k in settings.keys() | old.keys() if old.get(k) != settings.get(k)))
            raise OutputError(f"{path.parent} holds an evaluation with other settings ({changed}); "
                              f"use another --out or delete {path.parent}")
        return
    write_json(path, settings)


@contextmanager
def lock(folder: Path) -> Iterator[None]:
    """One writer per output folder; the OS drops the lock when its holder dies, even by SIGKILL.

    The lock file is opened without following a link and without blocking (a link or a FIFO
    there is refused), and never truncated."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = open_regular(folder / LOCK, os.O_RDWR | os.O_CREAT, "lock file")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"another bbx evaluate is writing to {folder}") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
