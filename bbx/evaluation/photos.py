"""The photos of an evaluation: found from files, folders and globs, hashed, and read once."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Sequence

from ..errors import ImageError, OptionError
from .files import file_sha256
from ..preprocess.image import load_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def find_images(specs: Sequence[str | Path], limit: int | None = None) -> list[Path]:
    """Files as given, folders' images (recursive, sorted), globs' images (sorted); no duplicates."""
    found: list[Path] = []
    for spec in map(str, specs):
        path = Path(spec)
        if path.is_dir():
            hits = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(p)
                          and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not hits:
                raise OptionError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {spec}")
        elif path.is_file():
            hits = [path]
        elif glob.has_magic(spec):
            hits = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file() and _is_image(Path(p)))
            if not hits:
                raise OptionError(f"no images match {spec}")
        else:
            raise OptionError(f"no such image, folder or glob: {spec}")
        found += hits
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if limit is not None:
        if limit < 1:
            raise OptionError(f"limit must be at least 1, not {limit}")
        unique = unique[:limit]
    return unique


def photo_content(image: str) -> tuple[str, str]:
    """The photo's content hash and, when it cannot be read or decoded, why (else "")."""
    try:
        digest = file_sha256(image)
        load_rgb(image)  # decoded once here, so that no engine meets a broken photo mid-run
    except OSError as exc:
        return "", f"cannot read image {image}: {exc.strerror or exc}"
    except ImageError as exc:
        return digest, str(exc)
    return digest, ""


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
