"""Where an explanation step's host time goes: one F-TC explanation under cProfile, by function.

``tools/bench_gpu.py`` says how much host time a step takes; this says what it is spent on. The
time inside onnxruntime's runs (``run_with_iobinding``, ``run``) is device work seen from the host;
the rest of the table is bbx's own.

    python tools/profile_step.py --model tiny --device cpu --query-path fused
    python tools/profile_step.py --model resnet18 --device cuda --query-path fused --one-thread
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import sys
import tempfile
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import bench_gpu  # noqa: E402  (its models, its --one-thread, and bbx on the path)
from bench_gpu import LOOP_PATHS, bbx  # noqa: E402
from bbx.errors import exit_on_error  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="resnet18, vgg19, tiny or an .onnx file")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--query-path", default="fused", choices=LOOP_PATHS)
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=25)
    ap.add_argument("--one-thread", action="store_true", help="as tools/bench_gpu.py --one-thread")
    ap.add_argument("--inline-directions", action="store_true",
                    help="draw each step's directions in the loop, not ahead in bbx's worker thread")
    ap.add_argument("--top", type=int, default=25, help="rows of the table")
    ap.add_argument("--image", type=Path, default=bench_gpu.ROOT / "models" / "samples" / "chelsea.png")
    args = ap.parse_args()
    if args.one_thread:
        bench_gpu.one_thread_sessions()
    if args.inline_directions:
        from bbx.maths.estimate import Estimator

        Estimator.stream = lambda self, rng, shape, steps: (self.draw(rng, shape) for _ in range(steps))
    with tempfile.TemporaryDirectory() as tmp:
        if args.model in ("tiny", "resnet18", "vgg19"):
            path = bench_gpu.model_file(args.model, args.precision, Path(tmp), args.device)
        else:
            path = Path(args.model)
        model = bbx.OnnxClassifier(path, device=args.device, max_batch=2 * args.pairs)

        def run(iterations: int) -> bbx.Explanation:
            return bbx.explain(model, args.image, method="ftc", estimator="nes", pairs=args.pairs, iterations=iterations,
                               query_path=args.query_path)

        run(2)  # warm-up: sessions, shapes, cuDNN's search
        profile = cProfile.Profile()
        e = profile.runcall(run, args.iterations)
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    # onnxruntime's run calls, by own time (no double counting): its Python wrapper (some versions
    # call the C method from there) and the C method, however the profiler names them
    inside = sum(t for (where, _, name), (_, _, t, _, _) in stats.stats.items()
                 if "onnxruntime" in where + name and re.search(r"\brun(_with_iobinding)?\b(?!_)", name))
    stats.sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())
    print(f"{args.model} {args.precision} on {model.device}, path {e.config['query_path']}"
          f"{', one thread' if args.one_thread else ''}{', directions inline' if args.inline_directions else ''}: {e.queries} queries in "
          f"{e.seconds:.4f} s under cProfile; {1e3 * inside / args.iterations:.2f} ms a step inside onnxruntime's runs, "
          f"{1e3 * (stats.total_tt - inside) / args.iterations:.2f} ms a step outside them (set-up included)")


if __name__ == "__main__":
    exit_on_error(main, "profile_step.py")
