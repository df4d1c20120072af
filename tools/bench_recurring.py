"""Recurring regions on data sets whose answer is known: how often a region is flagged, and where.

Three kinds of data set, each ``--datasets`` times with fresh random photos (``--photos`` each):

* ``stamp``: a planted model that reads texture in one fixed box (blurring it raises class 0),
  photos with that texture stamped in the box and two textured squares at random places. The box
  must be flagged (detection rate, IoU of the first region with the box).
* ``stamp-free``: the same model, photos without the stamp (their squares avoid the box): no flag.
* ``anywhere``: a model that reads texture over the whole image, photos with two textured squares
  at random places: heatmaps with real structure at places no two photos share. No flag: its
  flag rate is the test's false-flag rate.

    python tools/bench_recurring.py --datasets 40 --photos 16 --method greedy --budget 300

Rows go to ``tools/results/recurring_flags.csv`` (one per data set) and a summary to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import planted  # noqa: E402

from bbx._io import write_csv  # noqa: E402
from bbx.config import ExplainConfig  # noqa: E402
from bbx.evaluation import recurring as er  # noqa: E402
from bbx.evaluation.runner import EvalConfig, evaluate  # noqa: E402
from bbx.maths.perturb import BlurSpec  # noqa: E402
from bbx.model import OnnxClassifier  # noqa: E402
from bbx.result import recurring as rc  # noqa: E402

SIZE = 112
STAMP = (slice(16, 40), slice(56, 96))
EVERYWHERE = (slice(0, SIZE), slice(0, SIZE))
STRENGTH = 0.125  # texture energy about 1: class 0 stays top-1 with the stamp (p 0.58; 0.79 blurred)


def one(kind: str, index: int, args: argparse.Namespace, folder: Path) -> dict:
    model_path = folder / f"{kind}.onnx"
    if not model_path.exists():
        planted.build_reader(model_path, EVERYWHERE if kind == "anywhere" else STAMP, SIZE)
    model = OnnxClassifier(str(model_path))
    seed = 10_000 * (1 + ["stamp", "stamp-free", "anywhere"].index(kind)) + index * args.photos
    photos = planted.stamped_folder(folder / f"{kind}-{index}", args.photos, STAMP if kind == "stamp" else None,
                                    SIZE, first_seed=seed, strength=STRENGTH,
                                    avoid=STAMP if kind == "stamp-free" else None)
    explain = ExplainConfig(**({} if args.budget is None else {"budget": args.budget}))
    config = EvalConfig(methods=(args.method,), seeds=1, explain=explain).validate()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = evaluate(model, photos, config, folder / f"eval-{kind}-{index}")
    explain_s = time.perf_counter() - start
    found = er.find(outcome.records, args.method, seed=index)
    er.blur_effects(found, outcome.records, model, BlurSpec())
    regions = [f for _, f in found.flagged]
    first = regions[0] if regions else None
    truth = planted.patch_mask(STAMP, SIZE)
    return {
        "kind": kind, "index": index, "photos": args.photos, "method": args.method, "budget": args.budget,
        "flagged": len(regions), "recurred": len(found.found), "gained": sum(er.gained(r) for r in outcome.records),
        "p": first.region.p if first else "", "involved": len(first.region.involved) if first else "",
        "iou": rc.iou(rc.to_pixels(first.region.cells, (SIZE, SIZE)), truth) if first else "",
        "delta_p": first.effect.delta_p if first else "", "control_delta_p": first.effect.control_delta_p if first else "",
        "explain_s": round(explain_s, 2), "scan_s": round(found.seconds, 3), "blur_s": round(found.blur_seconds, 3),
        "queries": outcome.queries, "blur_queries": found.queries,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=40)
    ap.add_argument("--first", type=int, default=0, help="index of the first data set (its photos' seeds follow)")
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--method", default="greedy")
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--kinds", default="stamp,stamp-free,anywhere")
    ap.add_argument("--out", type=Path, default=ROOT / "tools" / "results" / "recurring_flags.csv")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            for i in range(args.first, args.first + args.datasets):
                rows.append(one(kind, i, args, Path(tmp)))
                rows[-1]["load_average"] = round(os.getloadavg()[0], 1)
                print({k: rows[-1][k] for k in ("kind", "index", "flagged", "gained", "p", "involved", "iou")},
                      flush=True)
                write_csv(args.out, rows)  # after each data set: an interrupted run keeps what it measured
    for kind in args.kinds.split(","):
        mine = [r for r in rows if r["kind"] == kind]
        flagged = [r for r in mine if r["flagged"]]
        ious = [r["iou"] for r in flagged]
        print(f"{kind}: flagged {len(flagged)}/{len(mine)} data sets ({100 * len(flagged) / len(mine):.1f} %)"
              + (f", IoU of the first region median {np.median(ious):.2f} (min {min(ious):.2f})" if ious else "")
              + f"; explain {np.mean([r['explain_s'] for r in mine]):.1f} s, scan {np.mean([r['scan_s'] for r in mine]):.2f} s,"
              f" blur {np.mean([r['blur_s'] for r in mine]):.2f} s per data set")


if __name__ == "__main__":
    main()
