"""The cost of the recurring-regions test beside the explanations it reads.

Synthesised records (a smooth random 28 x 28 soft mask per photo, 224 px input, one of 60 classes,
a band at rows 90-130 in ``--band`` of them) at each ``--photos`` count; the time of
:func:`bbx.evaluation.recurring.find` (heatmaps redrawn from the masks, all photos and the 8
largest classes each tested with 999 shifted draws), median of ``--repeat``. The blur that follows
costs 2 model queries per photo per region: against greedy's 2,000 per photo, 0.1 %.

    python tools/recurring_cost.py --photos 16,300,3000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bbx._io import write_csv  # noqa: E402
from bbx.evaluation import recurring as er  # noqa: E402


def records(n: int, band: float, rng: np.random.Generator) -> list[dict]:
    out = []
    for i in range(n):
        mask = 1 - np.clip(gaussian_filter(rng.random((28, 28)), 2) * 4 - 1.6, 0, 1)
        if rng.random() < band:
            mask[11:16] = np.minimum(mask[11:16], 0.2)
        out.append({"image": f"/p/{i}.jpg", "method": "ftc", "seed": 0, "top1_name": f"c{rng.integers(60)}",
                    "top1_prob_before": 0.5, "top1_prob_after": 0.7, "input_size": [224, 224], "mask": mask})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default="16,300,3000")
    ap.add_argument("--band", type=float, default=0.4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--csv", type=Path, default=ROOT / "tools" / "results" / "recurring_cost.csv")
    args = ap.parse_args()
    rows = []
    for n in (int(v) for v in args.photos.split(",")):
        recs = records(n, args.band, np.random.default_rng(n))
        times, result = [], None
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = er.find(recs, "ftc")
            times.append(time.perf_counter() - started)
        rows.append({"photos": n, "groups": len(result.groups), "regions": len(result.found),
                     "find_s_median": round(statistics.median(times), 3), "find_s_min": round(min(times), 3),
                     "per_photo_ms": round(1000 * statistics.median(times) / n, 2),
                     "load_average": round(os.getloadavg()[0], 1), "cpus": os.cpu_count()})
        print(rows[-1], flush=True)
        write_csv(args.csv, rows)  # after each count: an interrupted run keeps what it measured


if __name__ == "__main__":
    main()
