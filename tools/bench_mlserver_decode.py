"""Where a gRPC request's time goes inside MLServer: one ModelInfer request of N images of 3x224x224
float32 in raw bytes, through the steps MLServer takes before its runtime sees a NumPy array, beside
onnxruntime's run of the bundled model on the same batch. In-process, no network; best of 3 each.

    python tools/bench_mlserver_decode.py --images 27 --out tools/results/bench_mlserver_decode.csv
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from mlserver.codecs import NumpyCodec
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc.converters import ModelInferRequestConverter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bbx._io import write_csv  # noqa: E402


def best_ms(fn, tries: int = 3) -> float:
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * min(times), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=27)  # greedy's probes per step on the README's job
    ap.add_argument("--out", type=Path, default=ROOT / "tools" / "results" / "bench_mlserver_decode.csv")
    args = ap.parse_args()
    x = np.random.default_rng(0).random((args.images, 3, 224, 224), dtype=np.float32)
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=list(x.shape))
    body = pb.ModelInferRequest(model_name="m", inputs=[tensor], raw_input_contents=[x.tobytes()]).SerializeToString()
    message = pb.ModelInferRequest.FromString(body)
    request = ModelInferRequestConverter.to_types(message)
    session = ort.InferenceSession(str(ROOT / "models" / "efficientnet_lite0.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    steps = {
        "protobuf parse of the request": lambda: pb.ModelInferRequest.FromString(body),
        "mlserver raw bytes -> pydantic request (a Python list of floats)": lambda: ModelInferRequestConverter.to_types(message),
        "mlserver NumpyCodec list -> ndarray": lambda: NumpyCodec.decode_input(request.inputs[0]),
        "onnxruntime run of the bundled model": lambda: session.run(None, {name: x}),
    }
    rows = [{"images": args.images, "step": step, "ms": best_ms(fn), "load_1min": round(os.getloadavg()[0], 1)}
            for step, fn in steps.items()]
    for row in rows:
        print(row, flush=True)
    print(f"wrote {write_csv(args.out, rows)}")


if __name__ == "__main__":
    main()
