"""RISE variants on the same queries: which mask scheme and which estimator find undesirable pixels.

For each photo, two sets of ``budget - 2`` random masks are scored (one query each):

* ``paper``: RISE as written by Petsiuk et al. (2018): 7 x 7 binary grids (p 0.5) upsampled
  bilinearly to 256 px and cropped at a random offset in [0, 32) to 224 px, so at the input's
  full resolution; Q keeps X where M = 1 and bbx's blur h(X) where M = 0;
* ``bbx``: bbx's ``rise`` masks (:func:`bbx.methods.rise.random_masks`: the same grids at the
  learned methods' 28 x 28 resolution, offsets in whole 28-grid cells, upsampled to the input);
* ``multi``: ``bbx``'s masks at three scales, a third each on 4 x 4, 7 x 7 and 14 x 14 grids;
* ``keep25`` / ``keep75``: ``bbx``'s masks keeping each cell with probability 0.25 / 0.75 instead of 0.5.

From the same scores, three estimators of where keeping a pixel lowers the target (heat = higher
is more undesirable):

* ``S``: the paper's saliency S(x) = sum_i f_i M_i(x) / (N p), heat = f̄ - S (bbx's old ``rise``);
* ``centred``: sum_i (f_i - f̄) M_i(x) / sum_i M_i(x): the paper's sum carries f̄ times the
  number of times x was kept, a smooth random field as large as the signal; centring removes it;
* ``contrast``: E[f | x blurred] - E[f | x kept], weighted by 1 - M and M.

Each heatmap is scored like ``bbx evaluate``'s insertion curve (blur, hard, the top a%; φ; one
query per area, not counted) and against the overlay's boxes (tools/confound_eval.py's figures: bbx.result.localisation).
``bbx:<method>`` rows run that bbx method through ``bbx.explain`` at the same budget.

    python tools/rise_levers.py /tmp/confounds photos/tuning --every 3 --csv tools/results/rise_levers_tuning.csv
    python tools/rise_levers.py /tmp/confounds --list heldout.txt --methods rise,rise_greedy --schemes paper
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import bbx  # noqa: E402
from bbx.evaluation.insertion import blur_top  # noqa: E402
import bbx.methods.levers  # noqa: E402,F401  registers the levers (not in bbx.methods until one wins)
from bbx.maths.perturb import Perturber, upsample  # noqa: E402
from bbx.methods import get as get_method  # noqa: E402
from bbx.methods.rise import random_masks  # noqa: E402
from bbx.model import OnnxClassifier  # noqa: E402
from bbx.preprocess.image import load_rgb  # noqa: E402
from bbx.result.metrics import phi  # noqa: E402
from bbx.evaluation.truth import load_truth  # noqa: E402
from confound_eval import AREAS, COLUMNS, PHOTO, figures, markdown, table, write_csv  # noqa: E402

GRID, KEEP = 7, 0.5
ESTIMATORS = ("S", "centred", "contrast")


def paper_masks(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``n`` full-resolution RISE masks: 7 x 7 grids, bilinear to (7 + 1) * cell, random crop."""
    cell = -(-size // GRID)
    binary = (rng.random((n, GRID, GRID)) < KEEP).astype(np.float32)
    big = upsample(binary, ((GRID + 1) * cell, (GRID + 1) * cell))
    dy, dx = rng.integers(0, cell, size=n), rng.integers(0, cell, size=n)
    return np.stack([big[i, y:y + size, x:x + size] for i, (y, x) in enumerate(zip(dy, dx))])


def multi_masks(rng: np.random.Generator, n: int, grids: tuple[int, ...] = (4, 7, 14)) -> np.ndarray:
    """``n`` bbx masks (28 x 28), split as evenly as can be over ``grids``."""
    counts = [n // len(grids) + (i < n % len(grids)) for i in range(len(grids))]
    return np.concatenate([random_masks(rng, c, g, KEEP, 28) for g, c in zip(grids, counts) if c])


def accumulate(model, view: np.ndarray, k: int, make, n: int, shape: tuple[int, int], chunk: int = 64) -> dict:
    """Score ``n`` masks from ``make(count)`` in chunks; keep the sums the estimators need."""
    pert = Perturber(view, shape)
    acc = {"fM": np.zeros(shape), "M": np.zeros(shape), "f": 0.0, "n": 0}
    for start in range(0, n, chunk):
        masks = make(min(chunk, n - start))
        f = model.scores(pert(masks.astype(np.float32))).probs[:, k]
        acc["fM"] += np.einsum("n,nij->ij", f, masks)
        acc["M"] += masks.sum(axis=0)
        acc["f"] += f.sum()
        acc["n"] += len(f)
    return acc


def heat(acc: dict, estimator: str) -> np.ndarray:
    n, fM, M, fsum = acc["n"], acc["fM"], acc["M"], acc["f"]
    if estimator == "S":
        return fsum / n - fM / (n * KEEP)
    if estimator == "centred":
        return -(fM - fsum / n * M) / np.maximum(M, 1e-9)
    kept = fM / np.maximum(M, 1e-9)
    blurred = (fsum - fM) / np.maximum(n - M, 1e-9)
    return blurred - kept


def to_input(h: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """At the input size, clipped at 0 (pixels that do not lower the target are not undesirable): the
    localisation metrics count positive heat only."""
    h = np.clip(h, 0.0, None)
    return h if h.shape == size else upsample(h.astype(np.float32), size)


def variants(model, view: np.ndarray, k: int, budget: int, seed: int,
             schemes_run: tuple[str, ...] = ("paper", "bbx")) -> dict[str, tuple[np.ndarray, int]]:
    """Every RISE variant's heatmap at the input size (of the mask schemes in ``schemes_run``), with
    the queries it cost."""
    n, size = budget - 2, view.shape[:2]
    rng = np.random.default_rng(seed)
    out = {}
    schemes = {"paper": (lambda c: paper_masks(rng, c, size[0]), size),
               "bbx": (lambda c: random_masks(rng, c, GRID, KEEP, 28), (28, 28)),
               "multi": (lambda c: multi_masks(rng, c), (28, 28)),
               "keep25": (lambda c: random_masks(rng, c, GRID, 0.25, 28), (28, 28)),
               "keep75": (lambda c: random_masks(rng, c, GRID, 0.75, 28), (28, 28))}
    for scheme, (make, shape) in schemes.items():
        if scheme not in schemes_run:
            continue
        acc = accumulate(model, view, k, make, n, shape)
        for est in ESTIMATORS:
            out[f"{scheme}/{est}"] = (to_input(heat(acc, est), size), budget)
    return out


def evaluate(model, photo: Path, region: np.ndarray | None, methods: list[str], budget: int, seed: int,
             schemes_run: tuple[str, ...]) -> list[dict]:
    view = model.prepare(load_rgb(photo))
    p0 = model.scores(view[None]).probs[0]
    k = int(np.argmax(p0))
    heats: dict[str, tuple[np.ndarray, int, float]] = {}
    for m in methods:
        t = time.perf_counter()
        seeded = {"seed": seed} if get_method(m).seeded else {}  # an unseeded method refuses a seed
        e = bbx.explain(model, photo, method=m, budget=budget, **seeded)
        heats[f"bbx:{m}"] = (e.heatmap, e.queries, time.perf_counter() - t)
    t = time.perf_counter()
    for name, (h, q) in variants(model, view, k, budget, seed, schemes_run).items():
        heats[name] = (h, q, (time.perf_counter() - t) / (len(schemes_run) * len(ESTIMATORS)))
    rows = []
    for name, (h, q, s) in heats.items():
        probs = blur_top(model, view, h, [a / 100 for a in AREAS], k)
        row = {"photo": photo.name, "method": name, "seed": seed, **(figures(h, region) if region is not None else {})}
        row.update({f"phi@{a:g}": phi(float(p0[k]), p) for a, p in zip(AREAS, probs)})
        row.update({"queries": q, "seconds": s})
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="a tools/confounds.py folder (without boxes.json: φ only)")
    ap.add_argument("photos", nargs="?", default="photos/tuning", help="its sub-folder of photos")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--every", type=int, default=1, help="every n-th photo, sorted by name")
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="rise", help="bbx methods run beside the variants")
    ap.add_argument("--schemes", default="paper,bbx", help="RISE mask schemes whose variants run (none: '')")
    ap.add_argument("--list", type=Path, help="photos to run, one path a line, in this order (instead of photos)")
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args(argv)
    model = OnnxClassifier(ROOT / "models" / "efficientnet_lite0.onnx")
    truth = load_truth(args.bench / "boxes.json") if (args.bench / "boxes.json").exists() else None
    photos = ([Path(p) for p in args.list.read_text().split()] if args.list
              else sorted((args.bench / args.photos).glob("*.png")))[::args.every][:args.limit]
    rows = []
    for photo in photos:
        region = truth.region(photo.name, PHOTO) if truth is not None else None
        rows += evaluate(model, photo, region, [m for m in args.methods.split(",") if m],
                         args.budget, args.seed, tuple(x for x in args.schemes.split(",") if x))
        print(f"{photo.name} done", flush=True)
        if args.csv:
            write_csv(args.csv, rows)
    columns = [c for c in COLUMNS if c in rows[0]]  # no localisation columns without truth
    summary = table(rows, columns)
    print(markdown(summary, columns))
    if args.csv:
        write_csv(args.csv.with_name(args.csv.stem + "_summary.csv"), summary)


if __name__ == "__main__":
    main()
