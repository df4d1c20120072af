"""Build a confound benchmark: photos with a known overlay that lowers the model's confidence.

Sources are CC0 photos shipped with scikit-image (the bundled models/samples are three of them),
cut into 256 x 256 square crops: at the bundled EfficientNet-Lite0's spec (crop_pct 0.875) a
256 px photo is seen as its central 224 px, so every overlay is drawn inside that centre and is
seen whole. Each crop gets overlays of several kinds, drawn with PIL on a transparent layer and
alpha-blended onto the photo; the layer's alpha is the truth (PNG, non-zero = region):

* ``text``: a semi-transparent watermark in one of several scripts and fonts, sizes, places and
  angles (our own words; Debian font packages fonts-dejavu, fonts-liberation, fonts-noto-core);
* ``logo``: a drawn sticker (disc, star, warning triangle, rounded badge) in saturated colours;
* ``frame``: a coloured border inside the visible centre;
* ``date``: an orange camera date stamp in a corner.

An overlay is kept only where, for the clean photo's top-1 class ("true"): the overlay lowers
p(true) by at least ``--min-drop``, the top-1 stays the same (so ``bbx evaluate``, which explains
the top-1, explains the true class), and blurring the overlay's boxes with bbx's operator
(bbx.maths.perturb: Gaussian blur, hard) raises p(true) again by at least ``--min-recovery``.
Every candidate's figures go to ``filter.csv`` (kept or not). Photos are split by source photo
into ``photos/tuning`` and ``photos/heldout``; ``truth/`` holds one mask per photo (same stem),
``boxes.json`` the overlay's boxes (photo pixels, [x0, y0, x1, y1), a frame gives one box per
side) and ``manifest.json`` everything about each photo; ``clean/photos/<split>/`` every crop without an
overlay (photos without a confound, for the φ target). Seeded: the same seed gives the same files.

``--sources more`` builds a further tuning set from other photos (MORE_SOURCES, none held out).

    python tools/confounds.py --out /tmp/confounds         # 190 candidates, under a minute of CPU
    python tools/confounds.py --out /tmp/more --sources more --seed 1
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bbx.evaluation.insertion import hard_blur  # noqa: E402
from bbx.maths.perturb import Perturber  # noqa: E402
from bbx.model import OnnxClassifier  # noqa: E402

SIZE = 256  # photo side; the model sees [16, 240) of it
VIEW = (16, 240)  # the visible centre, photo pixels
MIN_DROP = 0.05  # least fall of p(true) an overlay must cause to be kept
MIN_RECOVERY = 0.02  # least rise of p(true) when the overlay is blurred
#: source photo -> (split, crops as (side fraction, vertical place, horizontal place) of a square)
SOURCES = {
    "chelsea.png": ("tuning", [(1.0, 0.0, 0.0), (0.7, 1.0, 1.0), (0.7, 0.0, 0.0)]),
    "coffee.png": ("tuning", [(1.0, 0.5, 0.5), (0.7, 0.0, 0.0), (0.7, 0.5, 0.5)]),
    "rocket.jpg": ("tuning", [(0.5, 0.5, 0.5), (1.0, 0.5, 0.5), (0.7, 0.5, 0.5)]),
    "motorcycle_left.png": ("heldout", [(0.7, 0.0, 0.0), (0.7, 1.0, 1.0), (0.7, 0.0, 1.0)]),
    "motorcycle_right.png": ("heldout", [(0.7, 0.5, 0.5), (1.0, 0.0, 0.0)]),  # the same scene: same split as the left
    "camera.png": ("heldout", [(1.0, 0.5, 0.5), (0.7, 1.0, 1.0), (0.5, 0.5, 0.5)]),
    "astronaut.png": ("heldout", [(0.5, 1.0, 1.0), (0.7, 1.0, 1.0)]),
}
#: ``--sources more``: other photos, every one for tuning (the held-out photos stay SOURCES'). Only four
#: photos installed here get a confident top-1 from Lite0: scikit-image's retina, brick and clock_motion
#: (CC0) and matplotlib's sample photo of Grace Hopper (public domain), whatever class they are given.
MORE_SOURCES = {
    "grace_hopper.jpg": ("tuning", [(1.0, 0.5, 0.5), (0.7, 0.5, 0.5), (0.7, 1.0, 1.0)]),
    "retina.jpg": ("tuning", [(0.7, 0.5, 0.5), (0.7, 0.0, 0.0), (0.7, 1.0, 1.0)]),
    "brick.png": ("tuning", [(0.7, 0.5, 0.5), (0.7, 0.0, 0.0), (0.7, 1.0, 1.0)]),
    "clock_motion.png": ("tuning", [(1.0, 0.5, 0.5), (0.7, 0.5, 0.5), (0.7, 0.0, 0.0)]),
}
FONTS = "/usr/share/fonts/truetype"
#: watermark words (our own) with a font that has their script
WORDS = [
    ("SAMPLE", "dejavu/DejaVuSans-Bold.ttf"),
    ("PROOF COPY", "liberation/LiberationSerif-Bold.ttf"),
    ("© bbx test 2026", "liberation/LiberationSans-Regular.ttf"),
    ("ОБРАЗЕЦ", "dejavu/DejaVuSerif-Bold.ttf"),  # Russian: sample
    ("ΔΕΙΓΜΑ", "dejavu/DejaVuSans.ttf"),  # Greek: sample
    ("عينة مجانية", "noto/NotoSansArabic-Bold.ttf"),  # Arabic: free sample
    ("नमूना", "noto/NotoSansDevanagari-Regular.ttf"),  # Hindi: sample
    ("דוגמה", "noto/NotoSansHebrew-Bold.ttf"),  # Hebrew: example
    ("ნიმუში", "noto/NotoSansGeorgian-Regular.ttf"),  # Georgian: sample
]
DATE_FONTS = ("dejavu/DejaVuSansMono-Bold.ttf", "liberation/LiberationMono-Bold.ttf")
KINDS = ("text",) * 5 + ("logo", "logo", "frame", "frame", "date")
FIELDS = ["name", "split", "source", "crop", "kind", "detail", "label", "p_clean", "p_overlay", "drop",
          "p_blurred", "recovery", "top1_kept", "region_share", "kept"]


@dataclass
class Overlay:
    """An RGBA layer at photo size, what it shows, and its boxes in photo pixels."""

    layer: Image.Image
    detail: str
    boxes: list[list[int]]


def crop_photo(rgb: np.ndarray, crop: tuple[float, float, float]) -> np.ndarray:
    """A square crop (side = ``frac`` of the short side, placed at ``fy``, ``fx`` in [0, 1]) at SIZE px."""
    frac, fy, fx = crop
    h, w = rgb.shape[:2]
    s = int(min(h, w) * frac)
    y, x = int((h - s) * fy), int((w - s) * fx)
    return np.asarray(Image.fromarray(rgb[y:y + s, x:x + s]).resize((SIZE, SIZE), Image.BILINEAR))


def font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(f"{FONTS}/{path}", size)


def place(rng: np.random.Generator, w: int, h: int, margin: int = 2) -> tuple[int, int]:
    """A top-left corner that keeps a ``w`` x ``h`` box inside the visible centre."""
    lo, hi = VIEW[0] + margin, VIEW[1] - margin
    return int(rng.integers(lo, max(lo + 1, hi - w))), int(rng.integers(lo, max(lo + 1, hi - h)))


def centred(rng: np.random.Generator, w: int, h: int, spread: int = 30) -> tuple[int, int]:
    """A top-left corner putting the box near the centre (where the photo's object usually is), kept visible."""
    lo, hi = VIEW[0] + 2, VIEW[1] - 2
    x = SIZE // 2 - w // 2 + int(rng.integers(-spread, spread + 1))
    y = SIZE // 2 - h // 2 + int(rng.integers(-spread, spread + 1))
    return int(np.clip(x, lo, max(lo, hi - w))), int(np.clip(y, lo, max(lo, hi - h)))


def bbox(layer: Image.Image) -> list[int]:
    x0, y0, x1, y1 = layer.getchannel("A").getbbox() or (0, 0, 0, 0)
    return [x0, y0, x1, y1]


def text_overlay(rng: np.random.Generator) -> Overlay:
    word, path = WORDS[int(rng.integers(len(WORDS)))]
    size = int(rng.integers(24, 50))
    f = font(path, size)
    x0, y0, x1, y1 = f.getbbox(word)
    tile = Image.new("RGBA", (x1 + 4, y1 + 4), (0, 0, 0, 0))
    tone = int(rng.choice([255, 0]))
    opacity = float(rng.uniform(0.45, 0.75))
    ImageDraw.Draw(tile).text((2, 2), word, font=f, fill=(tone, tone, tone, int(255 * opacity)))
    angle = float(rng.choice([0.0, 0.0, rng.uniform(-35, 35)]))
    tile = tile.rotate(angle, expand=True, resample=Image.BICUBIC)
    tile = tile.crop(tile.getchannel("A").getbbox())
    if tile.width > VIEW[1] - VIEW[0] - 8:  # too long for the visible centre: shrink to fit
        r = (VIEW[1] - VIEW[0] - 8) / tile.width
        tile = tile.resize((int(tile.width * r), max(1, int(tile.height * r))), Image.BICUBIC)
    layer = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    at = centred(rng, tile.width, tile.height) if rng.random() < 0.5 else place(rng, tile.width, tile.height)
    layer.alpha_composite(tile, at)
    detail = f"{word!r} {Path(path).stem} {size}px {'white' if tone else 'black'} a={opacity:.2f} rot={angle:.0f}"
    return Overlay(layer, detail, [bbox(layer)])


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    return [(cx + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
             cy - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5)) for i in range(10)]


def logo_overlay(rng: np.random.Generator) -> Overlay:
    side = int(rng.integers(28, 60))
    x, y = place(rng, side, side)
    colours = [(230, 30, 40), (20, 120, 230), (250, 200, 0), (30, 170, 60), (200, 40, 200)]
    c1, c2 = (colours[i] for i in rng.choice(len(colours), 2, replace=False))
    a = int(255 * rng.uniform(0.8, 1.0))
    shape = str(rng.choice(["disc", "star", "triangle", "badge"]))
    layer = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    box = (x, y, x + side, y + side)
    if shape == "disc":
        d.ellipse(box, fill=(*c1, a))
        d.ellipse((x + side // 4, y + side // 4, x + 3 * side // 4, y + 3 * side // 4), fill=(*c2, a))
    elif shape == "star":
        d.polygon(_star(x + side / 2, y + side / 2, side / 2), fill=(*c1, a))
    elif shape == "triangle":
        d.polygon([(x + side / 2, y), (x + side, y + side), (x, y + side)], fill=(*c1, a))
        d.rectangle((x + side * 0.45, y + side * 0.35, x + side * 0.55, y + side * 0.75), fill=(*c2, a))
    else:
        d.rounded_rectangle(box, radius=side // 5, fill=(*c1, a))
        d.rounded_rectangle((x + 4, y + 4, x + side - 4, y + side - 4), radius=side // 6, outline=(*c2, a), width=3)
    return Overlay(layer, f"{shape} {side}px {c1}/{c2} a={a / 255:.2f}", [bbox(layer)])


def frame_overlay(rng: np.random.Generator) -> Overlay:
    inset = VIEW[0] + int(rng.integers(0, 8))
    width = int(rng.integers(5, 11))
    colour = [(255, 255, 255), (0, 0, 0), (180, 20, 20), (20, 60, 160)][int(rng.integers(4))]
    a = int(255 * rng.uniform(0.6, 0.9))
    layer = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    lo, hi = inset, SIZE - inset
    ImageDraw.Draw(layer).rectangle((lo, lo, hi - 1, hi - 1), outline=(*colour, a), width=width)
    sides = [[lo, lo, hi, lo + width], [lo, hi - width, hi, hi], [lo, lo, lo + width, hi], [hi - width, lo, hi, hi]]
    return Overlay(layer, f"inset {inset}px width {width}px {colour} a={a / 255:.2f}", sides)


def date_overlay(rng: np.random.Generator) -> Overlay:
    stamp = f"'{rng.integers(90, 130) % 100:02d} {rng.integers(1, 13):2d} {rng.integers(1, 29):2d}"
    size = int(rng.integers(14, 22))
    f = font(DATE_FONTS[int(rng.integers(len(DATE_FONTS)))], size)
    x0, y0, x1, y1 = f.getbbox(stamp)
    right = bool(rng.integers(2))
    x = VIEW[1] - 6 - x1 if right else VIEW[0] + 6
    y = VIEW[1] - 6 - y1
    layer = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((x, y), stamp, font=f, fill=(255, 140, 0, 235))
    return Overlay(layer, f"{stamp!r} {size}px {'right' if right else 'left'}", [bbox(layer)])


MAKERS = {"text": text_overlay, "logo": logo_overlay, "frame": frame_overlay, "date": date_overlay}


def composite(photo: np.ndarray, layer: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The photo with the layer alpha-blended on it, and the layer's alpha (uint8, the truth)."""
    base = Image.fromarray(photo).convert("RGBA")
    base.alpha_composite(layer)
    return np.asarray(base.convert("RGB")), np.asarray(layer.getchannel("A"))


def judge(model: OnnxClassifier, clean: np.ndarray, dirty: np.ndarray, alpha: np.ndarray,
          boxes: list[list[int]]) -> dict:
    """p(true) clean, with the overlay, and with the overlay's boxes blurred (bbx's hard blur: blurring
    only the thin strokes of a text leaves them legible, the 11 px kernel mixing them with themselves)."""
    views = np.stack([model.prepare(clean), model.prepare(dirty)])
    region = model.prepare(np.repeat(alpha[..., None], 3, axis=2))[..., 0] > 0
    blurred = hard_blur(Perturber(views[1]), model.prepare(np.repeat(box_mask(boxes)[..., None], 3, axis=2))[..., 0] > 0)
    probs = model.scores(np.concatenate([views, blurred[None]])).probs
    k = int(np.argmax(probs[0]))
    return {"label": model.labels[k], "p_clean": probs[0, k], "p_overlay": probs[1, k], "p_blurred": probs[2, k],
            "top1_kept": int(np.argmax(probs[1])) == k, "region_share": float(region.mean())}


def box_mask(boxes: list[list[int]]) -> np.ndarray:
    """uint8 (SIZE, SIZE): 255 inside any box."""
    m = np.zeros((SIZE, SIZE), dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:
        m[y0:y1, x0:x1] = 255
    return m


def candidates(rng: np.random.Generator, folders: list[Path], sources: dict):
    """Every (source, crop index, crop, split, clean photo, kind, overlay), in a fixed order; each
    source photo from the first of ``folders`` that has it."""
    for source, (split, crops) in sources.items():
        path = next((f / source for f in folders if (f / source).is_file()), None)
        if path is None:
            sys.exit(f"confounds: no {source} in {', '.join(map(str, folders))}")
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for ci, crop in enumerate(crops):
            clean = crop_photo(rgb, crop)
            for kind in KINDS:
                yield source, ci, crop, split, clean, kind, MAKERS[kind](rng)


def build(out: Path, model: OnnxClassifier, seed: int, min_drop: float, min_recovery: float, folders: list[Path],
          sources: dict = SOURCES) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows, boxes, manifest = [], {}, {}
    for split in ("tuning", "heldout"):
        (out / "photos" / split).mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    for n, (source, ci, crop, split, clean, kind, ov) in enumerate(candidates(rng, folders, sources)):
        save_clean(out, split, f"{Path(source).stem}-{ci}", clean)
        dirty, alpha = composite(clean, ov.layer)
        row = {"name": f"{Path(source).stem}-{ci}-{n:03d}-{kind}", "split": split, "source": source,
               "crop": "/".join(map(str, crop)), "kind": kind, "detail": ov.detail,
               **judge(model, clean, dirty, alpha, ov.boxes)}
        row["drop"] = row["p_clean"] - row["p_overlay"]
        row["recovery"] = row["p_blurred"] - row["p_overlay"]
        row["kept"] = bool(row["drop"] >= min_drop and row["top1_kept"] and row["recovery"] >= min_recovery)
        rows.append(row)
        if row["kept"]:
            Image.fromarray(dirty).save(out / "photos" / split / f"{row['name']}.png")
            Image.fromarray(alpha).save(out / "truth" / f"{row['name']}.png")
            boxes[f"{row['name']}.png"] = ov.boxes
            manifest[row["name"]] = {k: _plain(v) for k, v in row.items()} | {"boxes": ov.boxes}
    (out / "boxes.json").write_text(json.dumps(boxes, indent=1))
    settings = {"seed": seed, "min_drop": min_drop, "min_recovery": min_recovery, "size": SIZE,
                "model": str(model.path) if hasattr(model, "path") else "", "sources": sources}
    (out / "manifest.json").write_text(json.dumps({"settings": settings, "photos": manifest}, indent=1,
                                                  ensure_ascii=False))
    return rows


def save_clean(out: Path, split: str, name: str, clean: np.ndarray) -> None:
    """Each crop without an overlay, once, in ``clean/photos/<split>/``: the same crops' photos without a
    confound (a folder ``tools/confound_run.py`` evaluates without truth)."""
    path = out / "clean" / "photos" / split / f"{name}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(clean).save(path)


def _plain(v):
    return round(float(v), 4) if isinstance(v, (float, np.floating)) else v


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _plain(r[k]) for k in FIELDS})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True,
                    help="folder to write (photos/, truth/, boxes.json, clean/: the crops without overlays, ...)")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "efficientnet_lite0.onnx")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-drop", type=float, default=MIN_DROP, help="least fall of p(true) an overlay must cause")
    ap.add_argument("--min-recovery", type=float, default=MIN_RECOVERY, help="least rise of p(true) when it is blurred")
    ap.add_argument("--csv", type=Path, default=None, help="also write the filter's figures here")
    ap.add_argument("--sources", choices=("default", "more"), default="default",
                    help="more: other photos, all for tuning (MORE_SOURCES; needs matplotlib's sample data)")
    args = ap.parse_args(argv)
    try:
        import skimage
    except ImportError:
        sys.exit("confounds: needs scikit-image's sample photos (pip install scikit-image)")
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"confounds: {args.out} is not empty; give a new folder")
    folders = [Path(skimage.__file__).parent / "data"]
    if args.sources == "more":
        try:
            import matplotlib
        except ImportError:
            sys.exit("confounds: --sources more needs matplotlib's sample photos (pip install matplotlib)")
        folders.append(Path(matplotlib.get_data_path()) / "sample_data")
    sources = MORE_SOURCES if args.sources == "more" else SOURCES
    rows = build(args.out, OnnxClassifier(args.model), args.seed, args.min_drop, args.min_recovery, folders, sources)
    write_csv(args.out / "filter.csv", rows)
    if args.csv:
        write_csv(args.csv, rows)
    kept = [r for r in rows if r["kept"]]
    for split in ("tuning", "heldout"):
        mine = [r for r in kept if r["split"] == split]
        kinds = {k: sum(r["kind"] == k for r in mine) for k in MAKERS}
        print(f"{split}: {len(mine)} kept of {sum(r['split'] == split for r in rows)} candidates {kinds}")


if __name__ == "__main__":
    main()
