"""The README's job (`bbx explain`: the bundled model and photo) through MLServer on loopback vs the local
file: seconds, requests, images per request, bytes, overhead per request. Rows go to a CSV.

Starts MLServer on 127.0.0.1 (a free port) with the runtime of tests/mlserver_onnx.py (onnxruntime's
default threads, as bbx's own session), runs each setting as the real command (`python -m bbx explain
...`) and reads its report.json. Each setting is run locally and remotely with the same seed; the
masks must be equal (checked).

    python tools/bench_remote.py --out tools/results/bench_remote.csv [--settings default,pairs64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the MLServer runner and runtime the tests use

from remote_support import MLServer, Served  # noqa: E402

sys.path.insert(0, str(ROOT))
from bbx._io import write_csv  # noqa: E402

SETTINGS = {
    # the README's job as measured (NES was bbx's default then): 200 steps of 8 pairs, 16 probes per step
    "default": ["--method", "ftc", "--estimator", "nes"],
    "pairs64": ["--method", "ftc", "--estimator", "nes", "--pairs", "64", "--iterations", "25"],  # the same 3,202 queries, 128 per step
}


def run(model: str, out: Path, extra: list[str]) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bbx", "explain", model, "--out", str(out), "-q", *extra],
                          capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench_remote: {model} failed: {proc.stderr.strip()}")
    return json.loads((out / "report.json").read_text()), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tools" / "results" / "bench_remote.csv")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--endpoint-args", default="", help="extra flags for the remote runs, e.g. '--concurrency 4'")
    args = ap.parse_args()
    bundled = ROOT / "models" / "efficientnet_lite0.onnx"
    rows = []
    with tempfile.TemporaryDirectory() as tmp, MLServer(Path(tmp) / "server",
                                                        {"efficientnet_lite0": Served(bundled, threads=0)}) as server:
        url = server.model_url("efficientnet_lite0")
        for name in args.settings.split(","):
            extra = SETTINGS[name]
            local, local_wall = run(str(bundled), Path(tmp) / f"{name}-local", extra)
            remote, remote_wall = run(url, Path(tmp) / f"{name}-remote", extra + args.endpoint_args.split())
            same = np.array_equal(np.load(Path(tmp) / f"{name}-local" / "mask.npy"),
                                  np.load(Path(tmp) / f"{name}-remote" / "mask.npy"))
            t = remote["traffic"]
            for where, report, wall in (("local", local, local_wall), ("mlserver", remote, remote_wall)):
                traffic = report.get("traffic", {})
                requests = traffic.get("requests", 0)
                rows.append({
                    "setting": name, "model": where, "flags": " ".join(extra), "queries": report["queries"],
                    "explain_seconds": round(report["seconds"], 2), "command_seconds": round(wall, 2),
                    "requests": requests, "images_per_request": round(traffic["answered"] / requests, 1) if requests else "",
                    "retries": traffic.get("retries", ""), "mb_sent": round(traffic["bytes_sent"] / 1e6, 1) if traffic else "",
                    "mb_received": round(traffic["bytes_received"] / 1e6, 1) if traffic else "",
                    "overhead_ms_per_request": round(1000 * (report["seconds"] - local["seconds"]) / t["requests"], 1)
                    if where == "mlserver" else "",
                    "mask_equal_to_local": same,
                    "load_1min": round(os.getloadavg()[0], 1),  # a shared machine: what else ran
                })
            print(rows[-2], rows[-1], sep="\n", flush=True)
    print(f"wrote {write_csv(args.out, rows)}")


if __name__ == "__main__":
    main()
