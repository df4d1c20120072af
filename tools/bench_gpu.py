"""Benchmark on a GPU: the explain loop against the model's own ceiling on onnxruntime's CUDA provider.

Random-weight ResNet-18 and VGG-19 (the paper's architectures; only speed matters here, and no
pretrained weights can be had offline) are built with PyTorch, exported to ONNX in fp32 and fp16,
and measured:

* ceiling: the bare session scoring a fixed batch bound on the device (IOBinding), images/s;
* loop: ``bbx.explain`` end to end (directions, probes, front graph, model, loss, Adam), queries/s;
* their ratio, and the wall time of one F-TC explanation of 6,400 queries;
* where a step's time goes: inside onnxruntime's runs (front graph and model) or on the host.

One CSV row per model x precision goes to ``tools/results/bench_gpu_<gpu>.csv``.
Needs PyTorch (for the export) and onnxruntime-gpu. ``--device cpu --models tiny --query-paths onnx``
runs the same loop on the CPU around a nearly free model: its host ms per step is bbx's own
overhead, which bounds the ratio any GPU can reach (ratio <= device / (device + host)).

    python tools/bench_gpu.py --models resnet18,vgg19 --precisions fp32,fp16
    python tools/bench_gpu.py --device cpu --models tiny --query-paths onnx --csv /tmp/host.csv
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bbx  # noqa: E402
from bbx._io import append_csv_row  # noqa: E402
from bbx.cli.app import key_values  # noqa: E402  (the CLI's --cuda-option parsing)
from bbx.errors import OptionError, exit_on_error  # noqa: E402
from bbx.query.masks import QUERY_PATHS as PATHS, sessions  # noqa: E402  (sessions: bbx's own graphs around the model, device work)


#: the paths a row can time; "reference" is what every row is checked against (paths_agree)
LOOP_PATHS = tuple(p for p in PATHS if p != "reference")

IMAGENET = {"size": [224, 224], "crop_pct": 0.875, "scale": 1.0, "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225], "channel_order": "RGB", "layout": "NCHW"}


def resnet18(torch):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    return nn.Sequential(*layers)


def vgg19(torch):
    nn = torch.nn
    cfg = [64, 64, "M", 128, 128, "M"] + [256] * 4 + ["M"] + ([512] * 4 + ["M"]) * 2
    layers, cin = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    layers += [nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(512 * 49, 4096), nn.ReLU(),
               nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000)]
    return nn.Sequential(*layers)


def export(name: str, precision: str, folder: Path, device: str) -> Path:
    """Random-weight model -> ONNX (dynamic batch) with ImageNet preprocessing in its metadata."""
    import json

    import onnx
    import torch

    torch.manual_seed(0)
    net = {"resnet18": resnet18, "vgg19": vgg19}[name](torch).eval()
    dev = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if precision == "fp16" else torch.float32
    net = net.to(dev, dtype)
    path = folder / f"{name}_{precision}.onnx"
    dummy = torch.zeros(1, 3, 224, 224, device=dev, dtype=dtype)
    torch.onnx.export(net, dummy, str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"bbx.preprocess": json.dumps(IMAGENET)})
    onnx.save(model, str(path))
    return path


def ceiling(model: bbx.OnnxClassifier, batch: int, seconds: float) -> float:
    """Images/s of the bare session: a batch already on the device (IOBinding), raw scores copied back.

    No bbx code runs between calls, so this is the model's own ceiling, not bbx's.
    """
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(model.input.dtype)
    binding = model.session.io_binding()
    binding.bind_ortvalue_input(model.input.name, ort.OrtValue.ortvalue_from_numpy(x, model.device, 0))
    binding.bind_output(model.output.name, "cpu")
    for _ in range(3):
        model.session.run_with_iobinding(binding)
        binding.copy_outputs_to_cpu()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.session.run_with_iobinding(binding)
        binding.copy_outputs_to_cpu()
        n += batch
    return n / (time.perf_counter() - t0)


class RunClock:
    """Time spent inside onnxruntime's run calls of the given sessions; the rest of a loop is host work."""

    def __init__(self, *sessions):
        self.seconds, self.calls = 0.0, 0
        self._wrapped = [(sess, name, getattr(sess, name)) for sess in sessions
                         for name in ("run", "run_with_iobinding")]
        for sess, name, fn in self._wrapped:
            setattr(sess, name, self._timed(fn))

    def restore(self) -> None:
        for sess, name, fn in self._wrapped:
            setattr(sess, name, fn)

    def _timed(self, fn):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
        return run


def model_file(name: str, precision: str, folder: Path, device: str) -> Path:
    """One of the benchmark's models as an .onnx file in ``folder``: tiny, or resnet18/vgg19 exported."""
    return tiny(folder) if name == "tiny" else export(name, precision, folder, device)


def tiny(folder: Path) -> Path:
    """A nearly free classifier (global average pool, then 3 -> 1000): on the CPU, what is left of the
    loop's time outside onnxruntime is bbx's host work per step, the figure that bounds the GPU ratio."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((3, 1000)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"bbx.preprocess": json.dumps(IMAGENET)})
    path = folder / "tiny_fp32.onnx"
    onnx.save(model, str(path))
    return path


def paths_agree(model: bbx.OnnxClassifier, image: Path, path: str) -> float:
    """Largest probability difference between a query path and the NumPy reference path (on the
    ``device`` and ``fused`` paths: of the top-1 class, the one probability that comes back)."""
    from bbx.model import TargetTerms
    from bbx.maths.perturb import Perturber
    from bbx.query.masks import MaskQuery

    pert = Perturber(model.prepare(bbx.load_rgb(image)))
    masks = np.random.default_rng(0).uniform(0, 1, (8, 28, 28))
    ref = MaskQuery(model, pert, "reference")(masks).probs
    k = int(np.argmax(ref[0]))
    fast = MaskQuery(model, pert, path, target=k)(masks)
    if isinstance(fast, TargetTerms):
        return float(np.abs(fast.prob - ref[:, k]).max())
    return float(np.abs(fast.probs - ref).max())


def one_thread_sessions() -> None:
    """Every onnxruntime session made from now on runs on one thread that does not spin when idle."""
    import onnxruntime as ort

    base = ort.SessionOptions

    class OneThread(base):
        def __init__(self):
            super().__init__()
            self.intra_op_num_threads = 1
            self.add_session_config_entry("session.intra_op.allow_spinning", "0")

    ort.SessionOptions = OneThread


def gpu_name(device: str) -> str:
    if device != "cuda":
        return "cpu"
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception:
        return "cuda"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,vgg19")
    ap.add_argument("--precisions", default="fp32,fp16")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batch", type=int, default=256, help="batch of the ceiling and of each explain step")
    ap.add_argument("--queries", type=int, default=6400, help="queries of the timed F-TC explanation")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--image", type=Path, default=ROOT / "models" / "samples" / "chelsea.png")
    ap.add_argument("--query-paths", default="auto",
                    help=f"comma-separated bbx.query.masks paths, one row each: {', '.join(LOOP_PATHS)}")
    ap.add_argument("--one-thread", action="store_true",
                    help="onnxruntime on one thread without spinning: on a small CPU, leaves the host's other "
                         "core free, as on a GPU machine, so that host_ms_per_step is bbx's alone")
    ap.add_argument("--cuda-option", action="append", default=[], metavar="KEY=VALUE",
                    help="onnxruntime CUDA provider option over bbx's, repeatable (prefer_nhwc=1): as bbx's --cuda-option")
    ap.add_argument("--host-probes", action="store_true",
                    help="form each step's antithetic probes on the host, as bbx did before its front graph "
                         "formed them on the device: what that saves, measured")
    ap.add_argument("--csv", type=Path, default=None)
    args = ap.parse_args()
    unknown = set(args.models.split(",")) - {"resnet18", "vgg19", "tiny"}
    if unknown:
        ap.error(f"unknown models: {', '.join(sorted(unknown))} (resnet18, vgg19, tiny)")
    try:
        args.cuda_options = key_values(args.cuda_option, "cuda-option")
    except OptionError as exc:
        ap.error(str(exc))
    args.query_paths = args.query_paths.split(",")
    unknown = set(args.query_paths) - set(LOOP_PATHS)
    if unknown:
        ap.error(f"unknown query paths: {', '.join(sorted(unknown))} ({', '.join(LOOP_PATHS)})")

    bbx.load_rgb(args.image)  # a bad photo is one error, not one failed row per model and path
    if args.one_thread:
        one_thread_sessions()
    if args.host_probes:
        from bbx.query.masks import MaskQuery

        MaskQuery.pairs_on_device = lambda self, pairs: False
    name = gpu_name(args.device)
    out_csv = args.csv or ROOT / "tools" / "results" / f"bench_gpu_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}.csv"
    failed: list[str] = []
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        # precision by precision: the pass/fail figures (fp32) come first if a session runs short
        for precision in args.precisions.split(","):
            for model_name in args.models.split(","):
                if model_name == "tiny" and precision != "fp32":
                    continue
                try:  # one model failing (export, memory) must not cost the rows of the others
                    for row in measure(model_name, precision, args, Path(tmp), name, failed):
                        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
                        append_csv_row(out_csv, row)  # as soon as measured: a run cut short keeps what it had
                        rows.append(row)
                except Exception as exc:
                    report_failure(failed, f"{model_name} {precision}", exc)
    if rows:  # the figures the issue asks for, short enough to read at the end of a device call's output
        print(f"{'model':9} {'prec':5} {'path':7} {'ceiling/s':>10} {'loop q/s':>9} {'ratio':>6} {'F-TC s':>7} {'host ms':>8}")
        for r in rows:
            print(f"{r['model']:9} {r['precision']:5} {r['query_path']:7} {r['ceiling_images_per_s']:>10} "
                  f"{r['explain_queries_per_s']:>9} {r['ratio']:>6} {r['ftc_seconds']:>7} {r['host_ms_per_step']:>8}")
    print(f"wrote {len(rows)} rows to {out_csv}" if rows else "no rows")
    sys.exit(1 if failed else 0)


def report_failure(failed: list[str], what: str, exc: Exception) -> None:
    """Print a failed row as it happens and keep it for the exit status."""
    failed.append(f"{what}: {type(exc).__name__}: {exc}")
    print(f"FAILED {failed[-1]}", flush=True)


def measure(model_name: str, precision: str, args: argparse.Namespace, tmp: Path, name: str, failed: list[str]):
    """Rows, one per query path: ceiling (measured once), loop, ratio, F-TC wall time (median of 3)
    and the host/device split. A query path that fails is added to ``failed``; the next one runs."""
    path = model_file(model_name, precision, tmp, args.device)
    model = bbx.OnnxClassifier(path, device=args.device, max_batch=args.batch, cuda_options=args.cuda_options)
    if model.device != args.device:  # a CPU fallback would spend the GPU session timing VGG-19 on the CPU
        raise RuntimeError(f"asked for {args.device}, running on {model.device} (see the warning above)")
    top = ceiling(model, args.batch, args.seconds)
    for query_path in args.query_paths:
        try:
            row = loop_row(model, query_path, top, args)
        except Exception as exc:
            report_failure(failed, f"{model_name} {precision} {query_path}", exc)
            continue
        yield {"gpu": name, "model": model_name, "precision": precision, **row}


def loop_row(model: bbx.OnnxClassifier, query_path: str, top: float, args: argparse.Namespace) -> dict:
    agree = paths_agree(model, args.image, query_path)
    pairs = args.batch // 2
    iterations = max(1, round(args.queries / (2 * pairs)))
    run = functools.partial(bbx.explain, model, args.image, pairs=pairs, query_path=query_path)
    warm = run(iterations=2).config  # warm-up: shapes, cuDNN algorithm search, bbx's sessions
    taken, probes = warm["query_path"], warm["probes"]
    clock = RunClock(model.session, *sessions(model))

    def timed(steps: int) -> tuple[bbx.Explanation, float, float]:
        before = clock.seconds
        e = run(iterations=steps)
        inside = clock.seconds - before
        return e, e.seconds - inside, inside

    _, short_host, _ = timed(5)
    runs = sorted((timed(iterations) for _ in range(3)), key=lambda r: r[0].seconds)
    e, long_host, long_run = runs[1]  # the median explanation
    clock.restore()
    # host work grows with the steps; the intercept is the set-up (blur, X, final Q, report)
    host = (long_host - short_host) / (iterations - 5) if iterations > 5 else long_host / iterations
    setup = long_host - host * iterations
    return {"providers": model.providers[0], "cuda_options": " ".join(args.cuda_option),  # over bbx's own
            "query_path": taken,  # the path taken (fused may fall back)
            "probes": probes,  # who formed each step's 2P probes from M and c u: bbx's front graph or the host
            "ort_threads": 1 if args.one_thread else "default",
            "max_prob_diff_vs_reference": f"{agree:.1e}",
            "batch": args.batch, "ceiling_images_per_s": round(top, 1),
            "explain_queries_per_s": round(e.queries / e.seconds, 1),
            "ratio": round(e.queries / e.seconds / top, 3),
            "ftc_queries": e.queries, "ftc_seconds": round(e.seconds, 4),
            "ftc_seconds_min": round(runs[0][0].seconds, 4),
            "ftc_iterations": iterations, "ftc_pairs": pairs,
            "in_run_ms_per_step": round(1e3 * long_run / iterations, 3),
            "host_ms_per_step": round(1e3 * host, 3), "host_setup_ms": round(1e3 * setup, 2),
            "date": time.strftime("%Y-%m-%d")}


if __name__ == "__main__":
    exit_on_error(main, "bench_gpu.py")
