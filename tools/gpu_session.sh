#!/usr/bin/env bash
# The one prepared device call for GPU work (issue 5), run on the GPU machine from the repo root after
# parts 0-2 of onnxruntime-gpu were moved to /root/og (see ../shared/gpu/README.md):
#   run(carry=[".ortgpu/part.3", ".ortgpu/ort_gpu_unpack.py"], command="bash tools/gpu_session.sh")
# Unpacks onnxruntime-gpu, checks the CUDA query path against the reference, benchmarks, and leaves
# the CSV in $OUT.
set -euo pipefail
mkdir -p /root/og && mv .ortgpu/part.3 /root/og/
python3 .ortgpu/ort_gpu_unpack.py
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import torch, onnxruntime as ort; print(torch.cuda.get_device_name(0), ort.__version__, ort.get_available_providers())"
# the fused paths against the NumPy reference, on the GPU (the tests refuse a silent CPU fallback)
BBX_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider tests/test_engine.py -k "query_paths or onnx_path" || true
python3 tools/bench_gpu.py --models resnet18,vgg19,tiny --csv "${OUT:-/tmp}/bench_gpu.csv" "$@"
