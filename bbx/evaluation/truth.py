"""``--truth``: where each photo's undesirable pixels really are, read from masks or boxes.

Either a folder of PNG masks, one per photo with the photo's stem (``cat.jpg`` -> ``cat.png``),
non-zero = region, at the photo's own size; or a JSON / CSV file of boxes in photo pixels (x right,
y down, edges at integers: a pixel is inside when its centre is). JSON: ``{"cat.jpg": [[x0, y0, x1,
y1], ...]}`` keyed by file name or stem; CSV: a header ``image,x0,y0,x1,y1`` and one row per box.
A photo's boxes are united. Every problem (no truth for a photo, a mask of another size, a box
outside its photo, an empty region) is one :class:`~bbx.errors.OptionError` before any job runs.
Formats and definitions: docs/localisation.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import read_regular
from ..defaults import POINTING_TOLERANCE
from ..errors import OptionError
from ..preprocess.image import MAX_PIXELS, load_rgb

MAX_TRUTH_BYTES = 64 << 20  # a boxes file or one mask PNG
BOX_COLUMNS = ("image", "x0", "y0", "x1", "y1")
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Truth:
    """A photo's truth region at the photo's size. ``masks``: the masks' folder, or ``boxes``: per
    file name or stem, its boxes. ``digest`` pins the source in an evaluation's settings; ``tolerance``:
    the pointing game's, in photo pixels (how precisely the truth is meant)."""

    source: str
    digest: str
    masks: str | None = None
    boxes: dict[str, tuple[Box, ...]] = field(default_factory=dict, hash=False)
    tolerance: float = POINTING_TOLERANCE

    def region(self, photo: str | Path, size: tuple[int, int]) -> np.ndarray:
        """The photo's region, an ``size`` (h, w) boolean map; OptionError when it has none or a bad one."""
        photo = Path(photo)
        region = self._mask(photo) if self.masks is not None else self._boxes(photo, size)
        if region.shape != tuple(size):
            raise OptionError(f"truth mask for {photo.name} is {region.shape[1]}x{region.shape[0]}, "
                              f"its photo {size[1]}x{size[0]}: a mask must have its photo's size")
        if not region.any():
            raise OptionError(f"truth region of {photo.name} in {self.source} is empty")
        return region

    def check(self, photos: Sequence[str | Path]) -> None:
        """Every photo has a good region: the first that has not is one OptionError."""
        for photo in photos:
            self.region(photo, load_rgb(photo).shape[:2])

    def pin(self) -> dict[str, Any]:
        return {"source": Path(self.source).name, "sha256": self.digest, "tolerance_px": self.tolerance}

    def _mask(self, photo: Path) -> np.ndarray:
        path = Path(self.masks) / f"{photo.stem}.png"
        if not path.is_file():
            raise OptionError(f"no truth mask for {photo.name}: expected {path}")
        return read_mask(path)

    def _boxes(self, photo: Path, size: tuple[int, int]) -> np.ndarray:
        boxes = self.boxes.get(photo.name, self.boxes.get(photo.stem))
        if boxes is None:
            raise OptionError(f"no truth boxes for {photo.name} in {self.source}")
        return rasterise(boxes, size, photo.name)


def load_truth(path: str | Path, tolerance: float = POINTING_TOLERANCE) -> Truth:
    """A folder of masks, a ``.json`` or a ``.csv`` file of boxes; anything else is one OptionError."""
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise OptionError(f"the pointing game's tolerance must be 0 or more pixels, not {tolerance}")
    path = Path(path)
    if path.is_dir():
        names = sorted(p.name for p in path.glob("*.png"))
        if not names:
            raise OptionError(f"truth folder {path} holds no .png masks")
        return Truth(str(path), _folder_digest(path, names), masks=str(path), tolerance=tolerance)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise OptionError(f"--truth must be a folder of PNG masks, a .json or a .csv of boxes, not {path}")
    raw = read_regular(path, MAX_TRUTH_BYTES, "truth file")
    boxes = parse_json(raw, path) if suffix == ".json" else parse_csv(raw, path)
    return Truth(str(path), hashlib.sha256(raw).hexdigest(), boxes=boxes, tolerance=tolerance)


def _folder_digest(folder: Path, names: list[str]) -> str:
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0" + hashlib.sha256(read_regular(folder / name, MAX_TRUTH_BYTES,
                                                                       "truth mask")).digest())
    return h.hexdigest()


def read_mask(path: Path) -> np.ndarray:
    """A PNG mask as a boolean map: non-zero in any colour channel (alpha ignored) = region."""
    from PIL import Image, ImageOps

    raw = read_regular(path, MAX_TRUTH_BYTES, "truth mask")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise OptionError(f"truth mask {path} is {im.size[0]}x{im.size[1]}, above {MAX_PIXELS:,} pixels")
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "I;16", "F"):
                return np.asarray(im) != 0
            return np.asarray(im.convert("RGB")).any(axis=2)
    except OptionError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise OptionError(f"cannot read truth mask {path}: {exc}") from None


def parse_json(raw: bytes, path: Path) -> dict[str, tuple[Box, ...]]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise OptionError(f"truth file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise OptionError(f"truth file {path} must be an object of photo name -> boxes [[x0, y0, x1, y1], ...]")
    out = {}
    for name, boxes in data.items():
        if isinstance(boxes, list) and len(boxes) == 4 and all(not isinstance(v, list) for v in boxes):
            boxes = [boxes]  # one box given bare
        if not isinstance(boxes, list) or not boxes:
            raise OptionError(f"truth boxes of {name} in {path} must be a list of [x0, y0, x1, y1]")
        out[str(name)] = tuple(check_box(b, f"{name} in {path}") for b in boxes)
    return out


def parse_csv(raw: bytes, path: Path) -> dict[str, tuple[Box, ...]]:
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise OptionError(f"truth file {path} is not a UTF-8 CSV: {exc}") from None
    if not rows or tuple(c.strip().lower() for c in rows[0]) != BOX_COLUMNS:
        raise OptionError(f"truth file {path} must start with the header {','.join(BOX_COLUMNS)}")
    out: dict[str, list[Box]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(BOX_COLUMNS):
            raise OptionError(f"truth file {path} line {n}: {len(row)} fields, expected {len(BOX_COLUMNS)}")
        out.setdefault(row[0].strip(), []).append(check_box(row[1:], f"{path} line {n}"))
    if not out:
        raise OptionError(f"truth file {path} has no boxes")
    return {name: tuple(boxes) for name, boxes in out.items()}


def check_box(values: Any, where: str) -> Box:
    """Four finite numbers x0 < x1, y0 < y1 (photo pixels)."""
    try:
        box = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise OptionError(f"truth box {values!r} ({where}) must be four numbers x0, y0, x1, y1") from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[0] >= box[2] or box[1] >= box[3]:
        raise OptionError(f"truth box {list(values)} ({where}) must be finite x0, y0, x1, y1 with x0 < x1, y0 < y1")
    return box  # type: ignore[return-value]


def rasterise(boxes: Sequence[Box], size: tuple[int, int], name: str) -> np.ndarray:
    """The union of ``boxes`` on an (h, w) photo: the pixels whose centre is in [x0, x1) x [y0, y1)."""
    h, w = size
    region = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise OptionError(f"truth box {[x0, y0, x1, y1]} of {name} lies outside its photo ({w}x{h} px)")
        cols = (np.arange(w) + 0.5 >= x0) & (np.arange(w) + 0.5 < x1)
        rows = (np.arange(h) + 0.5 >= y0) & (np.arange(h) + 0.5 < y1)
        region |= rows[:, None] & cols[None, :]
    return region
