"""Atomic file writes: a killed bbx never leaves a half-written PNG or JSON behind."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import OptionError, OutputError


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


def clear_stale(folder: str | Path, names: "tuple[str, ...] | set[str]") -> list[str]:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` for ``names`` when a run
    was killed mid-write (``.NAME.XXXXXXXX.tmp``); nothing else is touched. Returns what went."""
    gone = []
    prefixes = tuple(f".{name}." for name in names)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return gone
    for entry in entries:
        if entry.name.startswith(prefixes) and entry.name.endswith(".tmp") and not entry.is_dir(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                gone.append(entry.name)
            except OSError:
                pass
    return gone


def write_json(path: str | Path, data: Any) -> Path:
    return atomic_write(path, lambda fh: fh.write(json_text(data, indent=2)), mode="w")


def json_text(data: Any, indent: int | None = None) -> str:
    """``data`` as strict JSON (one line without ``indent``): a NaN or an infinity is refused, since
    it would make a file no JSON reader accepts."""
    try:
        text = json.dumps(data, indent=indent, default=_jsonable, allow_nan=False,
                          separators=None if indent else (",", ":"))
    except ValueError:
        raise OutputError("refusing to write a result holding NaN or infinite numbers") from None
    return text + "\n"


def append_line(path: str | Path, data: Any) -> None:
    """Append one JSON line in a single write, flushed and synced (a kill leaves whole lines).

    The file is opened only if it is a regular file (a link or a FIFO there is refused)."""
    line = json_text(data).encode("utf-8")
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "results file")
    try:
        os.write(fd, line)
        os.fsync(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def open_regular(path: str | Path, flags: int, what: str = "file") -> int:
    """``os.open`` of a regular file, never through a symbolic link and never blocking on a FIFO
    or a device: anything else at ``path`` is one clear :class:`OutputError`."""
    nofollow = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | nofollow, 0o666)
    except OSError as exc:
        if os.path.islink(path):
            raise OutputError(f"refusing {what} {path}: it is a symbolic link") from None
        if os.path.isdir(path):
            raise OutputError(f"refusing {what} {path}: it is a folder, not a file") from None
        raise OutputError(f"cannot open {what} {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
        raise OutputError(f"refusing {what} {path}: it is {kind}")
    if getattr(os, "O_NONBLOCK", 0):
        os.set_blocking(fd, True)
    return fd


def read_regular(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (a FIFO, a device such as /dev/zero,
    a folder or a larger file is refused before it is read). Links are followed: the user named
    this file."""
    path = Path(path)
    if path.is_dir():
        raise OptionError(f"{what} {path} is a folder, not a file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise OptionError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise OptionError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OptionError(f"{what} {path} is not a regular file (a FIFO or a device)")
        if st.st_size > limit:
            raise OptionError(f"{what} {path} is {st.st_size:,} bytes, above bbx's limit of {limit:,}")
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        try:
            return fh.read(limit + 1)[:limit]
        except OSError as exc:
            raise OptionError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


#: what :func:`load_json` accepts from outside bbx (sidecars, metadata, labels, endpoint answers,
#: records, settings): no file or answer of bbx's own comes near these
MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 64
MAX_NUMBER_CHARS = 64  # a float64 needs 24 characters at most; a 401-digit score is not a score


def load_json(data: bytes | str, limit: int = MAX_JSON_BYTES) -> Any:
    """JSON read from outside bbx, bounded: at most ``limit`` bytes, ``MAX_JSON_DEPTH`` levels of
    nesting and ``MAX_NUMBER_CHARS`` characters per number. Anything else is a ValueError whose
    text says what is wrong (never a RecursionError, an OverflowError or Python's 4,300-digit
    limit on integers). Types are the caller's to check."""
    if len(data) > limit:
        raise ValueError(f"{len(data):,} bytes, above bbx's limit of {limit:,}")
    try:
        value = json.loads(data, parse_int=_bounded(int), parse_float=_bounded(float))
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from None
    _check_depth(value)
    return value


def _bounded(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for a JSON number of at most ``MAX_NUMBER_CHARS`` characters."""
    def bounded(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number of {len(text):,} characters (bbx reads at most {MAX_NUMBER_CHARS})")
        return parse(text)
    return bounded


def _check_depth(value: Any) -> None:
    """Iteratively (a recursive walk would fail where the parser did not)."""
    if not isinstance(value, (list, dict)):
        return
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (list, dict)))


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


def check_out(path: str | Path) -> Path:
    """Refuse, before any work, an output folder that could not be created or written; create
    nothing (a refused or failed run leaves no empty folder behind)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {path} exists and is not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"output folder {path} is not writable")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create output folder {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create output folder {path}: {parent} is not writable")
    return path


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """A benchmark's rows as one CSV file (the first row's keys are the header), written atomically."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()), mode="w")


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
