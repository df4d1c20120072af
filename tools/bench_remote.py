"""The README's job (`bbx explain`: the bundled model and photo) through MLServer on loopback, over HTTP
(JSON) and gRPC (raw tensors), vs the local file: seconds, requests, images per request, bytes, overhead
per request. Rows go to a CSV.

Starts MLServer on 127.0.0.1 (free ports) with the runtime of tests/mlserver_onnx.py (onnxruntime's
default threads, as bbx's own session), runs each setting as the real command (`python -m bbx explain
...`) and reads its report.json. Each setting is run on the file, then on each protocol's URL, with the
same seed, one after the other; the masks must be equal (checked).

    python tools/bench_remote.py --out tools/results/bench_remote.csv [--settings default,pairs64]
        [--protocols http,grpc] [--grpc-max-message BYTES]
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
    "readme": [],  # `bbx explain` with today's defaults: greedy, 2,000 queries at most
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
    ap.add_argument("--protocols", default="http,grpc", help="comma list of http (JSON), grpc (raw tensors)")
    ap.add_argument("--grpc-max-message", type=int, default=None,
                    help="MLServer's limit on one gRPC message in bytes (default: its own, gRPC's 4 MB)")
    ap.add_argument("--endpoint-args", default="", help="extra flags for the remote runs, e.g. '--concurrency 4'")
    args = ap.parse_args()
    bundled = ROOT / "models" / "efficientnet_lite0.onnx"
    rows = []
    protocols = args.protocols.split(",")
    with tempfile.TemporaryDirectory() as tmp, MLServer(Path(tmp) / "server",
                                                        {"efficientnet_lite0": Served(bundled, threads=0)},
                                                        grpc_max_message=args.grpc_max_message) as server:
        urls = {"mlserver-http": server.model_url("efficientnet_lite0"),
                "mlserver-grpc": server.grpc_url("efficientnet_lite0")}
        for name in args.settings.split(","):
            extra = SETTINGS[name]
            local, wall = run(str(bundled), Path(tmp) / f"{name}-local", extra)
            rows.append(_row(name, "local", extra, local, wall, local, True))
            print(rows[-1], flush=True)
            for where in (f"mlserver-{p}" for p in protocols):
                out = Path(tmp) / f"{name}-{where}"
                remote, wall = run(urls[where], out, extra + args.endpoint_args.split())
                same = np.array_equal(np.load(Path(tmp) / f"{name}-local" / "mask.npy"), np.load(out / "mask.npy"))
                rows.append(_row(name, where, extra, remote, wall, local, same, args.grpc_max_message))
                print(rows[-1], flush=True)
    print(f"wrote {write_csv(args.out, rows)}")


def _row(setting: str, where: str, extra: list[str], report: dict, wall: float, local: dict, same: bool,
         grpc_limit: int | None = None) -> dict:
    traffic = report.get("traffic", {})
    requests = traffic.get("requests", 0)
    return {
        "setting": setting, "model": where, "flags": " ".join(extra), "queries": report["queries"],
        "explain_seconds": round(report["seconds"], 2), "command_seconds": round(wall, 2),
        "remote_over_local": round(report["seconds"] / local["seconds"], 2),
        "requests": requests, "images_per_request": round(traffic["answered"] / requests, 1) if requests else "",
        "retries": traffic.get("retries", ""), "failures": traffic.get("failures", ""),
        "mb_sent": round(traffic["bytes_sent"] / 1e6, 1) if traffic else "",
        "kb_sent_per_image": round(traffic["bytes_sent"] / 1e3 / traffic["answered"], 1) if traffic else "",
        "mb_received": round(traffic["bytes_received"] / 1e6, 1) if traffic else "",
        "overhead_ms_per_request": round(1000 * (report["seconds"] - local["seconds"]) / requests, 1)
        if requests else "",
        "mask_equal_to_local": same,
        "grpc_max_message": (grpc_limit or "server default (4 MB)") if where.endswith("grpc") else "",
        "load_1min": round(os.getloadavg()[0], 1),  # a shared machine: what else ran
    }


if __name__ == "__main__":
    main()
