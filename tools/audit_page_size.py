"""Size and load time of ``bbx audit``'s report: a real 3-photo audit and a synthesised N-photo one.

The 3-photo report is a real run (bundled model, its three photos, F-TC, occlusion and random at
--budget 200). The N-photo report (default 300) is drawn by the same code from synthesised records: N
photos made from the bundled three (random crops, flips, colour shifts), and per photo and method
a random mask, class (one of 60), probabilities, φ, insertion curve and loss trend, so that no model
has to run 900 explanations. The page's size is index.html plus img/ and plots/; its load time is
measured in headless Chromium over the DevTools pipe (tests/browser.py): the load event (lazy
pictures below the fold not loaded yet) and the time until every picture has loaded, median of 3.

    python tools/audit_page_size.py --photos 300 --out /tmp/audit-size
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import LOAD_ALL_IMAGES, Browser, find_chromium  # noqa: E402

from bbx._io import write_csv  # noqa: E402
from bbx.audit.page import write_page  # noqa: E402
from bbx.audit.run import build_report  # noqa: E402
from bbx.evaluation.runner import EvalConfig  # noqa: E402
from bbx.result.record import thin  # noqa: E402
from bbx.config import ExplainConfig  # noqa: E402
from bbx.result.metrics import phi  # noqa: E402
from bbx.model import OnnxClassifier  # noqa: E402

MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLES = sorted((ROOT / "models" / "samples").glob("*"))
METHODS = ("ftc", "occlusion", "random")  # what the measured report ran (bbx audit's default then; docs/audit.md)


def synth_photos(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = [np.asarray(Image.open(p).convert("RGB")) for p in SAMPLES]
    out = []
    for i in range(n):
        img = sources[i % len(sources)]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1)), int(w * rng.uniform(0.6, 1))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = img[y:y + ch, x:x + cw][:, ::rng.choice([-1, 1])]
        crop = np.clip(crop * rng.uniform(0.8, 1.2, 3), 0, 255).astype(np.uint8)
        path = folder / f"photo{i:04d}.jpg"
        Image.fromarray(crop).save(path, quality=90)
        out.append(path)
    return out


def synth_records(photos: list[Path], config: EvalConfig, labels: list[str], rng: np.random.Generator) -> list[dict]:
    from scipy.ndimage import gaussian_filter

    classes = rng.choice(len(labels), 60, replace=False)
    recs = []
    for path in photos:
        top1 = int(rng.choice(classes))
        p0 = float(rng.beta(2, 1.5))
        for method in config.methods:
            grid = (14, 14) if method == "occlusion" else (28, 28)
            mask = 1 - np.clip(gaussian_filter(rng.random(grid), 2) * 4 - 1.6, 0, 1)
            p1 = float(np.clip(p0 + rng.normal(0.1, 0.1), 0.01, 0.999))
            at_area = np.clip(p0 + rng.normal(0.03, 0.05, len(config.areas)).cumsum(), 0.01, 0.999)
            flips = [top1 if a > 0.3 else int(rng.choice(classes)) for a in at_area]
            loss = list(np.linspace(0, -1, 200) + rng.normal(0, 0.05, 200)) if method != "occlusion" else []
            recs.append({
                "image": str(path.resolve()), "method": method, "seed": 0, "target": top1, "target_name": labels[top1],
                "top1": top1, "top1_name": labels[top1], "prob_before": p0, "prob_after": p1,
                "top1_prob_before": p0, "top1_prob_after": p1, "phi": phi(p0, p1),
                "undesirable_ratio": float((1 - mask > 0.6).mean()), "marked_ratio": float((mask < 1).mean()),
                "queries": 3202, "seconds": 17.0, "device": "cpu", "areas": list(config.areas),
                "prob_at_area": [float(a) for a in at_area], "phi_at_area": [phi(p0, float(a)) for a in at_area],
                "insertion_queries": len(config.areas), "top1_at_area": flips, "loss_trend": thin(loss, 21),
                "input_size": [224, 224], "mask": np.round(mask, 4).tolist(),
            })
    return recs


def measure(chromium: str, page: Path, runs: int = 3) -> dict[str, float]:
    loads, alls, pictures = [], [], 0
    for _ in range(runs):
        with Browser(chromium) as b:
            started = time.perf_counter()
            b.open(page.as_uri())
            loads.append(b.js("performance.getEntriesByType('navigation')[0].loadEventEnd"))
            result = b.js(LOAD_ALL_IMAGES)
            alls.append(1000 * (time.perf_counter() - started))
            assert not result["broken"] and not b.console_errors(), (result, b.console_errors())
            pictures = result["count"]
    return {"load_event_ms": statistics.median(loads), "all_pictures_ms": statistics.median(alls), "pictures": pictures}


def size(folder: Path) -> dict[str, int]:
    html = (folder / "index.html").stat().st_size
    files = [p for sub in ("img", "plots") for p in (folder / sub).rglob("*") if p.is_file()]
    return {"html_bytes": html, "files": len(files) + 1, "total_bytes": html + sum(p.stat().st_size for p in files)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("/tmp/audit-size"))
    ap.add_argument("--csv", type=Path, default=ROOT / "tools" / "results" / "audit_page.csv")
    args = ap.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("no chromium on PATH")
    rows = []

    real = args.out / "real3"
    subprocess.run(["bbx", "audit", str(MODEL), *map(str, SAMPLES), "--budget", "200", "--methods", ",".join(METHODS),
                    "--out", str(real), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    rows.append({"photos": 3, "records": "real (--budget 200)", **size(real), **measure(chromium, real / "index.html")})

    rng = np.random.default_rng(0)
    model = OnnxClassifier(MODEL)
    config = EvalConfig(methods=METHODS, seeds=1, explain=ExplainConfig())
    synth = args.out / f"synth{args.photos}"
    photos = synth_photos(args.out / "photos", args.photos, rng)
    records = synth_records(photos, config, model.labels, rng)
    synth.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    write_page(synth, build_report(model, records, config, synth, "tools/audit_page_size.py"))
    drawn_s = time.perf_counter() - started
    rows.append({"photos": args.photos, "records": f"synthesised (report drawn in {drawn_s:.1f} s)", **size(synth),
                 **measure(chromium, synth / "index.html")})

    import bbx

    for row in rows:
        row["chromium"] = subprocess.run([chromium, "--version"], capture_output=True, text=True).stdout.strip()
        row["bbx"] = bbx.__version__
        print(row)
    print(f"wrote {write_csv(args.csv, rows)}")


if __name__ == "__main__":
    main()
