"""Benchmark: explanations in lockstep against one at a time, and Ray workers, in queries/s.

Photos: crops of the bundled samples (seeded boxes of 55-100 % of each side, so every photo
differs), written as PNG to a temporary folder. The job is ``bbx evaluate --methods ftc --seeds 1``
for Ray (F-TC with NES; one seed, its blur-insertion curve), timed end to end, queries/s counting every
query; its lines are checked against one process's (the ``seconds`` field aside). For one process
(cpu, gpu), F-TC explanations alone (:func:`bbx.evaluation.lockstep.explain_many`) with ``--estimator``
(default: the library's; NES and SPSA run ``--iterations`` x ``--pairs``, active spends
``--budget``), their masks checked against the first mode's; the model's calls counted and their
mean batch, and the bare model's images/s at that batch and at its ceiling (``--max-batch``: 64 on
the CPU, 256 on CUDA) beside them. One CSV row per mode.

    nice -n 10 python tools/bench_lockstep.py cpu --photos 16 --iterations 40 --estimator nes   # lockstep K vs 1, CPU
    nice -n 10 python tools/bench_lockstep.py cpu --photos 16 --estimator active --budget 1000 --lockstep 1,2,4
    nice -n 10 python tools/bench_lockstep.py ray --photos 8 --iterations 40         # Ray: 1 worker vs 2
    python tools/bench_lockstep.py gpu --photos 256 --iterations 200 --alone-photos 8 --models lite0,resnet18
"""

from __future__ import annotations

import argparse
import functools
import json
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
from bbx import defaults  # noqa: E402
from bbx.config import ExplainConfig  # noqa: E402
from bbx.evaluation.runner import EvalConfig, evaluate, record_key  # noqa: E402
from bbx.evaluation.lockstep import lockstep_width  # noqa: E402

LITE0 = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLES = sorted((ROOT / "models" / "samples").glob("*.*"))


def crops(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` different photos: seeded crops of the bundled samples, as PNG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        im = Image.open(SAMPLES[i % len(SAMPLES)]).convert("RGB")
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.55, 1.0)), int(h * rng.uniform(0.55, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        path = folder / f"crop{i:04d}.png"
        im.crop((x, y, x + cw, y + ch)).save(path)
        out.append(path)
    return out


def lines(out: Path) -> dict:
    return {record_key(r): {k: v for k, v in r.items() if k != "seconds"}
            for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}


def bare(model: bbx.OnnxClassifier, batch: int, seconds: float) -> float:
    """Images/s of the model alone on a fixed batch: on the device already (IOBinding) on CUDA, a
    ready NumPy tensor on the CPU. No bbx code between calls: the model's own ceiling."""
    shape = (batch, 3, *model.input_size) if model.input.layout == "NCHW" else (batch, *model.input_size, 3)
    x = np.random.default_rng(0).random(shape, dtype=np.float32).astype(model.input.dtype)
    if model.device == "cuda":
        import onnxruntime as ort

        binding = model.session.io_binding()
        binding.bind_ortvalue_input(model.input.name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        binding.bind_output(model.output.name, "cpu")

        def call():
            model.session.run_with_iobinding(binding)
            binding.copy_outputs_to_cpu()
    else:
        def call():
            model.session.run([model.output.name], {model.input.name: x})
    for _ in range(3):
        call()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        call()
        n += batch
    return n / (time.perf_counter() - t0)


def ray_row(args: argparse.Namespace) -> dict:
    """:func:`base_row` of the Ray mode, whose job is F-TC with NES (its CSV has no estimator column)."""
    row = base_row(argparse.Namespace(**{**vars(args), "estimator": "nes"}), LITE0, "cpu")
    return {k: v for k, v in row.items() if k not in ("estimator", "budget")}


def base_row(args: argparse.Namespace, model_path: Path, device: str) -> dict:
    active = args.estimator == "active"
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": commit(),
            "machine": f"{platform.machine()} {os.cpu_count()} cores", "load_1min": round(os.getloadavg()[0], 1),
            "model": model_path.name, "device": device, "photos": args.photos, "estimator": args.estimator,
            "iterations": "" if active else args.iterations, "pairs": "" if active else args.pairs,
            "budget": args.budget or ""}


def soft_mask_config(args: argparse.Namespace, **changes: object) -> ExplainConfig:
    """F-TC with the benchmark's estimator: NES and SPSA read iterations and pairs, active a budget."""
    if args.estimator == "active":
        return ExplainConfig(method="ftc", estimator="active", budget=changes.get("budget", args.budget))
    return ExplainConfig(method="ftc", seed=0, iterations=changes.get("iterations", args.iterations),
                         pairs=args.pairs, estimator=args.estimator, budget=args.budget)


def counted_calls(model: bbx.OnnxClassifier) -> list[int]:
    """The sizes of the model's calls from now on."""
    sizes: list[int] = []
    run = model.run_batch
    model.run_batch = lambda x: (sizes.append(len(x)), run(x))[1]
    return sizes


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return ""


def timed_evaluate(model: bbx.OnnxClassifier, photos: list[Path], cfg: EvalConfig, out: Path, k: int | None):
    t0 = time.perf_counter()
    outcome = evaluate(model, photos, cfg, out, lockstep=k)
    return outcome, time.perf_counter() - t0


def run_local(args: argparse.Namespace, tmp: Path, model_path: Path, device: str, label: str) -> None:
    """One process, F-TC explanations (no insertion curves): lockstep 1 (each alone, on the method's
    own query path: fused on CUDA) then K; ``--alone-photos`` caps the photos of lockstep 1."""
    from bbx.evaluation.lockstep import explain_many

    photos = crops(tmp / "photos", args.photos)
    cfg = soft_mask_config(args)
    model = bbx.OnnxClassifier(model_path, device=device)
    widths = [int(k) for k in args.lockstep.split(",")] if args.lockstep else [1, lockstep_width(model, cfg)]
    first: dict = {}
    for k in widths:
        model = bbx.OnnxClassifier(model_path, device=device)
        some = photos[: args.alone_photos] if k == 1 and args.alone_photos else photos
        warm = [(i, "ftc", p, soft_mask_config(args, iterations=3, budget=60)) for i, p in enumerate(photos[:k])]
        list(explain_many(model, warm, k))  # sessions, cuDNN's search for this batch shape
        before = model.queries
        calls = counted_calls(model)
        t0 = time.perf_counter()
        got = dict(explain_many(model, [(i, "ftc", p, cfg) for i, p in enumerate(some)], k))
        seconds = time.perf_counter() - t0
        queries = model.queries - before
        assert queries == sum(e.queries for e in got.values())
        masks = {i: e.mask for i, e in got.items()}
        shared = sorted(set(masks) & set(first))
        if not first:
            first = masks
        mean_call = sum(calls) / len(calls)  # padding rows included: what the model ran
        # the bare model is timed at a step's batch (NES, SPSA), or at the mean call (active's vary)
        batch = round(mean_call) if cfg.estimator == "active" else min(k * 2 * cfg.plan()[1], model.max_batch)
        row = {**base_row(args, model_path, model.device), "photos": len(some), "engine": "one process",
               "lockstep": k, "batch": batch, "model_calls": len(calls), "mean_call_batch": round(mean_call, 1),
               "queries": queries, "seconds": round(seconds, 2),
               "queries_per_s": round(queries / seconds, 1),
               "bare_model_images_per_s": round(bare(model, batch, args.bare_seconds), 1),
               "bare_model_images_per_s_at_ceiling": round(bare(model, model.max_batch, args.bare_seconds), 1),
               "masks_equal_to_first": all(np.array_equal(masks[i], first[i]) for i in shared),
               "max_mask_diff_to_first": float(max((np.abs(masks[i] - first[i]).max() for i in shared), default=0.0))}
        row["ratio_to_ceiling"] = round(row["queries_per_s"] / row["bare_model_images_per_s_at_ceiling"], 3)
        print(json.dumps(row), flush=True)
        append_csv_row(args.csv, row)


def run_ray(args: argparse.Namespace, tmp: Path) -> None:
    """Ray on this machine: W workers of one onnxruntime thread each, against one process with one
    thread (a worker's settings, so that only Ray differs); then the overhead per photo: a nearly
    free job (the random baseline: 7 queries a photo) on Ray and not."""
    import ray

    from bbx.evaluation.ray_engine import evaluate_on_ray

    photos = crops(tmp / "photos", args.photos)
    cfg = EvalConfig(methods=("ftc",), seeds=1, explain=ExplainConfig(iterations=args.iterations, pairs=args.pairs,
                                                                   estimator="nes"))
    cheap = EvalConfig(methods=("random",), seeds=1)
    # one process with a worker's settings (one onnxruntime thread), so that only Ray differs
    model = bbx.OnnxClassifier(LITE0, threads=1)
    outcome, seconds = timed_evaluate(model, photos, cfg, tmp / "one", None)
    first = lines(tmp / "one")
    local = bbx.OnnxClassifier(LITE0, threads=1)
    _, cheap_local = timed_evaluate(local, photos, cheap, tmp / "cheap_one", None)
    row0 = {**ray_row(args), "engine": "one process, 1 thread", "workers": 1,
            "queries": outcome.queries, "seconds": round(seconds, 2), "queries_per_s": round(outcome.queries / seconds, 1),
            "same_lines": True, "cluster_start_s": "", "cheap_job_s_per_photo": round(cheap_local / len(photos), 3)}
    print(json.dumps(row0), flush=True)
    append_csv_row(args.csv, row0)
    for workers in [int(w) for w in args.workers.split(",")]:
        t0 = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        started = time.perf_counter() - t0
        opener = functools.partial(bbx.OnnxClassifier, LITE0, threads=1)
        try:
            t0 = time.perf_counter()
            out = evaluate_on_ray(model, opener, photos, cfg, tmp / f"ray{workers}")
            seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            evaluate_on_ray(model, opener, photos, cheap, tmp / f"cheap_ray{workers}")
            cheap_ray = time.perf_counter() - t0
        finally:
            ray.shutdown()
        row = {**row0, **ray_row(args), "engine": "ray", "workers": workers, "queries": out.queries, "seconds": round(seconds, 2),
               "queries_per_s": round(out.queries / seconds, 1), "same_lines": lines(tmp / f"ray{workers}") == first,
               "cluster_start_s": round(started, 2), "cheap_job_s_per_photo": round(cheap_ray / len(photos), 3)}
        print(json.dumps(row), flush=True)
        append_csv_row(args.csv, row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["cpu", "ray", "gpu"])
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--estimator", default=defaults.ESTIMATOR, help="cpu and gpu modes: active, nes or spsa "
                    "(default: the library's)")
    ap.add_argument("--budget", type=int, default=None, help="queries per explanation (active: default "
                    "2 + 2 x 8 x iterations; nes, spsa: a cap)")
    ap.add_argument("--lockstep", default="", help="comma list of K (default: 1 and the model's batch ceiling)")
    ap.add_argument("--workers", default="1,2", help="ray mode: worker counts")
    ap.add_argument("--models", default="lite0", help="gpu mode: lite0, resnet18 (exported with PyTorch)")
    ap.add_argument("--bare-seconds", type=float, default=5.0)
    ap.add_argument("--alone-photos", type=int, default=0, help="photos explained one at a time (default: all)")
    ap.add_argument("--csv", type=Path, default=None)
    args = ap.parse_args()
    args.csv = args.csv or ROOT / "tools" / "results" / f"bench_lockstep_{args.mode}.csv"
    with tempfile.TemporaryDirectory(prefix="bbx-lockstep-") as tmp:
        tmp = Path(tmp)
        if args.mode == "cpu":
            run_local(args, tmp, LITE0, "cpu", "cpu")
        elif args.mode == "ray":
            run_ray(args, tmp)
        else:
            for name in args.models.split(","):
                if name == "lite0":
                    path = LITE0
                else:
                    from bench_gpu import export  # noqa: PLC0415  (PyTorch, on the device machine)

                    path = export(name, "fp32", tmp, "cuda")
                run_local(args, tmp, path, "cuda", name)


if __name__ == "__main__":
    main()
