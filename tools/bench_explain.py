"""Benchmark: how close the explain loop comes to the model's own batch throughput on this machine.

Prints, for one model and photo: the model's own queries/s when scoring batches of the size one
explain step sends (2 x pairs), the explain loop's queries/s (everything: perturbation, query,
objective, estimate, Adam), their ratio, and the wall time of a default `bbx explain` run
(CLI included: model load, image, optimisation, writing the figures). Appends a CSV row.

    python tools/bench_explain.py [--model M] [--image I] [--csv tools/results/bench_explain_cpu.csv]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bbx  # noqa: E402
from bbx._io import append_csv_row  # noqa: E402
from bbx.errors import exit_on_error  # noqa: E402
from bbx.defaults import PAIRS as DEFAULT_PAIRS  # noqa: E402
from bbx.maths.perturb import Perturber  # noqa: E402


def model_throughput(model: bbx.OnnxClassifier, batch: np.ndarray, seconds: float) -> float:
    """Queries/s of the bare model on a ready-made input tensor (no host work at all)."""
    from bbx.preprocess import to_model_input

    x = to_model_input(batch, model.spec, np.dtype(model.input.dtype))
    model.score_tensor(x)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.score_tensor(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "efficientnet_lite0.onnx")
    ap.add_argument("--image", type=Path, default=ROOT / "models" / "samples" / "chelsea.png")
    ap.add_argument("--pairs", type=int, default=DEFAULT_PAIRS)
    ap.add_argument("--iterations", type=int, default=60, help="explain-loop iterations to time")
    ap.add_argument("--seconds", type=float, default=10.0, help="time spent measuring the bare model")
    ap.add_argument("--csv", type=Path, default=ROOT / "tools" / "results" / "bench_explain_cpu.csv")
    args = ap.parse_args()

    model = bbx.OnnxClassifier(args.model)
    x = model.prepare(bbx.load_rgb(args.image))
    masks = np.random.default_rng(0).uniform(0.5, 1.0, (2 * args.pairs, 28, 28))
    batch = Perturber(x)(masks)
    ceiling = model_throughput(model, batch, args.seconds)

    soft = {"method": "ftc", "estimator": "nes"}  # the stepping loop this benchmark times
    bbx.explain(model, x, iterations=2, pairs=args.pairs, **soft)  # warm-up
    e = bbx.explain(model, x, iterations=args.iterations, pairs=args.pairs, **soft)
    loop = e.queries / e.seconds

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bbx", "explain", str(args.model), str(args.image), "--method", "ftc",
                        "--estimator", "nes", "--out", out, "--quiet"], check=True, stdout=subprocess.DEVNULL)
        cli_seconds = time.perf_counter() - t0

    row = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "model": args.model.name,
        "batch": 2 * args.pairs,
        "model_queries_per_s": round(ceiling, 1),
        "explain_queries_per_s": round(loop, 1),
        "ratio": round(loop / ceiling, 3),
        "default_explain_seconds": round(cli_seconds, 2),
        "default_explain_queries": 2 + 2 * DEFAULT_PAIRS * 200,
    }
    for k, v in row.items():
        print(f"{k:<24}{v}")
    append_csv_row(args.csv, row)


if __name__ == "__main__":
    exit_on_error(main, "bench_explain.py")
