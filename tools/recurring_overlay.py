"""Recurring regions on real photos with an overlay of our own at one fixed place.

Photos: scikit-image's colour photos (CC0) and the bundled samples, cut into ``--photos`` variants
(random crops, flips, colour shifts, as tools/audit_page_size.py makes them). The overlay
(``--overlay``), pasted after the model's own preprocessing geometry (the photo is prepared first,
so it sits at the same input pixels in every photo): ``band``, high-contrast random blocks (a
barcode-like strip, no text) across rows ``--rows``; or ``text``, a semi-transparent watermark of
our own words (tools/confounds.py's kind: "PROOF COPY", DejaVu Sans Bold 30 px, black at opacity
0.6) from row ``--rows``'s first, 20 px from the left. The same photos without
the band are the clean set. Each set is audited with ``--method`` through the bundled model and
tested; the row says whether the band's place was flagged (IoU with the band) and what blurring it did.

    python tools/recurring_overlay.py --photos 12 --method occlusion --skimage DIR
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

from bbx._io import write_csv  # noqa: E402
from bbx.config import ExplainConfig  # noqa: E402
from bbx.evaluation import recurring as er  # noqa: E402
from bbx.evaluation.runner import EvalConfig, evaluate  # noqa: E402
from bbx.maths.perturb import BlurSpec  # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--method", default="occlusion")
    ap.add_argument("--budget", type=int, default=None)
    ap.add_argument("--rows", default="176,200")
    ap.add_argument("--overlay", choices=("band", "text"), default="band")
    ap.add_argument("--skimage", type=Path, required=True, help="scikit-image's data folder")
    ap.add_argument("--csv", type=Path, default=ROOT / "tools" / "results" / "recurring_overlay.csv")
    args = ap.parse_args()
    rows = tuple(int(v) for v in args.rows.split(","))
    model = OnnxClassifier(MODEL)
    size = model.input_size
    truth = np.zeros(size, dtype=bool)
    truth[rows[0]:rows[1]] = True
    if args.overlay == "text":
        truth = text_mark(np.zeros((*size, 3), np.float32), rows)[1]
    out_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = tmp / "sources"
        sources.mkdir()
        for name in COLOUR:
            Image.open(args.skimage / name).convert("RGB").save(sources / Path(name).with_suffix(".png").name)
        import audit_page_size
        audit_page_size.SAMPLES = sorted(sources.glob("*.png"))
        photos = synth_photos(tmp / "cut", args.photos, np.random.default_rng(0))
        rng = np.random.default_rng(1)
        for kind in ("clean", args.overlay):
            folder = tmp / kind
            folder.mkdir()
            for p in photos:  # the model's view, saved at its input size: the band at fixed input rows
                view = model.prepare(load_rgb(p))
                if kind != "clean":
                    view = band(view, rows, rng) if kind == "band" else text_mark(view, rows)[0]
                Image.fromarray((view * 255).round().astype(np.uint8)).save(folder / f"{p.stem}.png")
            explain = ExplainConfig(**({} if args.budget is None else {"budget": args.budget}))
            config = EvalConfig(methods=(args.method,), seeds=1, explain=explain).validate()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcome = evaluate(model, sorted(folder.glob("*.png")), config, tmp / f"eval-{kind}")
            found = er.blur_effects(er.find(outcome.records, args.method), outcome.records, model, BlurSpec())
            for line in found.lines():
                print(kind, line, flush=True)
            first = found.flagged[0][1] if found.flagged else None
            out_rows.append({
                "set": kind, "photos": args.photos, "method": args.method, "band_rows": args.rows,
                "truth_pixels": int(truth.sum()),
                "flagged": len(found.flagged), "recurred": len(found.found), "gained": found.gained,
                "first": first.description if first else "", "p": first.region.p if first else "",
                "involved": len(first.region.involved) if first else "",
                "iou_with_truth": rc.iou(rc.to_pixels(first.region.cells, size), truth) if first else "",
                "blur_delta_p": first.effect.delta_p if first else "",
                "control_delta_p": first.effect.control_delta_p if first else "",
                "queries": outcome.queries, "blur_queries": found.queries,
            })
    print(f"wrote {write_csv(args.csv, out_rows)}")


if __name__ == "__main__":
    main()
