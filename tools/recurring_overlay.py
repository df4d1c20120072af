"""Recurring regions on real photos with an overlay of our own at one fixed place.

Photos: scikit-image's colour photos (CC0), cut into ``--photos`` variants (random crops, flips,
colour shifts, as tools/audit_page_size.py makes them; ``--cut-seed`` picks them). Each cut is saved
as the model's view, once clean and once with the overlay (``--overlay``) at fixed view pixels:
``band``, high-contrast random blocks (a barcode-like strip, no text) across rows ``--rows``; or
``text``, a semi-transparent watermark of our own words (tools/confounds.py's kind: "PROOF COPY",
DejaVu Sans Bold 30 px, black at opacity 0.6) from row ``--rows``'s first, 20 px from the left.
A saved view is prepared again when it is explained, so the truth is the overlay's place sent
through the model's own preparation. ``--shortcut-only`` keeps the photos where the overlay is a
shortcut by tools/confounds.py's rule (a data set that leans on it); otherwise every cut is kept.
Each set is audited with ``--method`` through the bundled model and tested; the row says whether
the overlay's place was flagged (the first region's IoU with the truth, and the best IoU of any
flagged region with its group) and what blurring the first did.

    python tools/recurring_overlay.py --photos 12 --method occlusion --skimage DIR
    python tools/recurring_overlay.py --photos 90 --overlay text --rows 160,0 --shortcut-only --skimage DIR
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from audit_page_size import synth_photos  # noqa: E402
from confounds import MIN_DROP, MIN_RECOVERY  # noqa: E402

from bbx._io import write_csv  # noqa: E402
from bbx.config import ExplainConfig  # noqa: E402
from bbx.evaluation import recurring as er  # noqa: E402
from bbx.evaluation.runner import EvalConfig, evaluate  # noqa: E402
from bbx.evaluation.insertion import hard_blur  # noqa: E402
from bbx.maths.perturb import BlurSpec, Perturber  # noqa: E402
from bbx.model import OnnxClassifier  # noqa: E402
from bbx.preprocess.image import load_rgb  # noqa: E402
from bbx.result import recurring as rc  # noqa: E402

MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
COLOUR = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
          "retina.jpg", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png")


def band(view: np.ndarray, rows: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``view`` with random black/white blocks (4 px wide) across ``rows``."""
    out = view.copy()
    width = view.shape[1]
    blocks = rng.integers(0, 2, size=(rows[1] - rows[0], -(-width // 4))).repeat(4, axis=1)[:, :width]
    out[rows[0]:rows[1]] = blocks[..., None].astype(np.float32)
    return out


def text_mark(view: np.ndarray, rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``view`` with the watermark blended in, and where it lies (its box, bool)."""
    from PIL import ImageDraw, ImageFont

    layer = Image.new("RGBA", view.shape[1::-1], (0, 0, 0, 0))
    face = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 30)
    ImageDraw.Draw(layer).text((20, rows[0]), "PROOF COPY", font=face, fill=(0, 0, 0, int(255 * 0.6)))
    base = Image.fromarray((view * 255).round().astype(np.uint8)).convert("RGBA")
    base.alpha_composite(layer)
    where = np.zeros(view.shape[:2], dtype=bool)
    x0, y0, x1, y1 = layer.getchannel("A").getbbox()
    where[y0:y1, x0:x1] = True
    return np.asarray(base.convert("RGB"), dtype=np.float32) / 255, where


def input_truth(model: OnnxClassifier, where: np.ndarray) -> np.ndarray:
    """Where the overlay drawn at ``where`` on a saved view lies in the model's input: the saved view
    is prepared again when it is explained (resized and cropped), so the truth goes the same way."""
    image = np.repeat(where[..., None].astype(np.uint8) * 255, 3, axis=2)
    return model.prepare(image)[..., 0] > 0.5


def overlaid(view: np.ndarray, kind: str, rows: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    return band(view, rows, rng) if kind == "band" else text_mark(view, rows)[0]


def is_shortcut(model: OnnxClassifier, clean: Path, dirty: Path, truth: np.ndarray) -> bool:
    """tools/confounds.py's rule: the overlay lowers p(clean top-1) by MIN_DROP or more, keeps the
    top-1, and blurring its place raises p again by MIN_RECOVERY or more."""
    views = [model.prepare(load_rgb(clean)), model.prepare(load_rgb(dirty))]
    probs = model.scores(np.stack([*views, hard_blur(Perturber(views[1]), truth)])).probs
    k = int(np.argmax(probs[0]))
    return bool(probs[0, k] - probs[1, k] >= MIN_DROP and int(np.argmax(probs[1])) == k
                and probs[2, k] - probs[1, k] >= MIN_RECOVERY)


def build_sets(model: OnnxClassifier, photos: list[Path], args: argparse.Namespace, rows: tuple[int, int],
               tmp: Path) -> tuple[dict[str, list[Path]], np.ndarray]:
    """The clean and the overlaid set (the same photos, saved as the model's view), and the truth;
    with ``--shortcut-only``, only the photos where the overlay passes :func:`is_shortcut`."""
    rng = np.random.default_rng(1)
    where = np.zeros(model.input_size, dtype=bool)
    where[rows[0]:rows[1]] = True
    if args.overlay == "text":
        where = text_mark(np.zeros((*model.input_size, 3), np.float32), rows)[1]
    truth = input_truth(model, where)
    sets: dict[str, list[Path]] = {"clean": [], args.overlay: []}
    for kind in sets:
        (tmp / kind).mkdir()
    for p in photos:
        view = model.prepare(load_rgb(p))
        pair = []
        for kind, img in (("clean", view), (args.overlay, overlaid(view, args.overlay, rows, rng))):
            pair.append(tmp / kind / f"{p.stem}.png")
            Image.fromarray((img * 255).round().astype(np.uint8)).save(pair[-1])
        if not args.shortcut_only or is_shortcut(model, *pair, truth):
            sets["clean"].append(pair[0])
            sets[args.overlay].append(pair[1])
    return sets, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=12, help="photo cuts made (before --shortcut-only)")
    ap.add_argument("--method", default="occlusion")
    ap.add_argument("--budget", type=int, default=None)
    ap.add_argument("--rows", default="176,200")
    ap.add_argument("--overlay", choices=("band", "text"), default="band")
    ap.add_argument("--shortcut-only", action="store_true",
                    help="keep only the photos where the overlay is a shortcut (tools/confounds.py's rule)")
    ap.add_argument("--cut-seed", type=int, default=0, help="seed of the photo cuts (tuning 0, held out 1)")
    ap.add_argument("--skimage", type=Path, required=True, help="scikit-image's data folder")
    ap.add_argument("--csv", type=Path, default=ROOT / "tools" / "results" / "recurring_overlay.csv")
    args = ap.parse_args()
    rows = tuple(int(v) for v in args.rows.split(","))
    model = OnnxClassifier(MODEL)
    out_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = tmp / "sources"
        sources.mkdir()
        for name in COLOUR:
            Image.open(args.skimage / name).convert("RGB").save(sources / Path(name).with_suffix(".png").name)
        import audit_page_size
        audit_page_size.SAMPLES = sorted(sources.glob("*.png"))
        photos = synth_photos(tmp / "cut", args.photos, np.random.default_rng(args.cut_seed))
        sets, truth = build_sets(model, photos, args, rows, tmp)
        for kind, files in sets.items():
            out_rows.append(audit_set(model, kind, files, truth, args, tmp))
    print(f"wrote {write_csv(args.csv, out_rows)}")


def audit_set(model: OnnxClassifier, kind: str, files: list[Path], truth: np.ndarray,
              args: argparse.Namespace, tmp: Path) -> dict:
    """Explain one set with ``--method``, test it, blur what was found; one CSV row."""
    explain = ExplainConfig(**({} if args.budget is None else {"budget": args.budget}))
    config = EvalConfig(methods=(args.method,), seeds=1, explain=explain).validate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = evaluate(model, sorted(files), config, tmp / f"eval-{kind}")
    found = er.blur_effects(er.find(outcome.records, args.method), outcome.records, model, BlurSpec())
    for line in found.lines():
        print(kind, line, flush=True)
    first = found.flagged[0][1] if found.flagged else None
    ious = [(rc.iou(rc.to_pixels(f.region.cells, model.input_size), truth), g.name) for g, f in found.flagged]
    best = max(ious, default=("", ""))
    return {
        "set": kind, "photos": len(files), "cuts": args.photos, "cut_seed": args.cut_seed,
        "shortcut_only": args.shortcut_only, "method": args.method, "band_rows": args.rows,
        "truth_pixels": int(truth.sum()),
        "flagged": len(found.flagged), "recurred": len(found.found), "gained": found.gained,
        "first": first.description if first else "", "p": first.region.p if first else "",
        "involved": len(first.region.involved) if first else "",
        "iou_with_truth": rc.iou(rc.to_pixels(first.region.cells, model.input_size), truth) if first else "",
        "best_iou": best[0], "best_iou_group": best[1], "flagged_groups": "; ".join(g.name for g, _ in found.flagged),
        "blur_delta_p": first.effect.delta_p if first else "",
        "control_delta_p": first.effect.control_delta_p if first else "",
        "queries": outcome.queries, "blur_queries": found.queries,
    }


if __name__ == "__main__":
    main()
