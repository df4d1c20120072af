#!/usr/bin/env bash
# The one prepared device call for GPU work (issue 5), run on the GPU machine from the repo root.
# Before it: `bash tools/gpu_parts.sh` here, then one quick call per onnxruntime-gpu part but the last
# (see that script). This call carries the last part:
#   run(carry=[".ortgpu/p.4"], command="bash tools/gpu_session.sh", timeout_s=500)
# It joins onnxruntime-gpu, checks the CUDA query path against the NumPy reference, benchmarks, and
# leaves bench_gpu.csv and session.log in $OUT. Extra arguments go to tools/bench_gpu.py.
set -euo pipefail
out=${OUT:-/tmp}
exec > >(tee "$out/session.log") 2>&1
mkdir -p /root/og
mv .ortgpu/p.* /root/og/ 2>/dev/null || true
python3 tools/ort_gpu_join.py /root/og /tmp/site
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
python3 -c "import torch, onnxruntime as ort; print(torch.__version__, torch.cuda.get_device_name(0), 'onnxruntime', ort.__version__, ort.get_available_providers())"  || true
python3 -m bbx devices || true
# the fused paths against the NumPy reference, on the GPU (the tests refuse a silent CPU fallback)
BBX_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_compose.py \
  -k "query_paths or onnx_path or one_shape or opset_form or outlive or antithetic" || true
# the CUDA default ("fused": front graph, model and back graph as one session, one run per batch,
# the probes formed on the device), fp32 then fp16; then the same with cuDNN's NHWC kernels
python3 tools/bench_gpu.py --models resnet18,vgg19,tiny --query-paths fused --csv "$out/bench_gpu.csv" "$@" || true
python3 tools/bench_gpu.py --models resnet18,vgg19 --query-paths fused --cuda-option prefer_nhwc=1 \
  --csv "$out/bench_gpu.csv" "$@" || true
# what forming the probes in the front graph saves: ResNet-18 fp32, fused, the probes formed on the host as before
python3 tools/bench_gpu.py --models resnet18 --precisions fp32 --query-paths fused --host-probes \
  --csv "$out/bench_gpu.csv" "$@" || true
# the README's main job on the GPU: the bundled EfficientNet-Lite0 and photo, twice (the first pays cuDNN's search)
for run in 1 2; do python3 -m bbx explain --method ftc --device cuda --out /tmp/explain_cuda || true; done
python3 -c "import json; r = json.load(open('/tmp/explain_cuda/report.json')); print('query path', r['config']['query_path'], 'probes', r['config']['probes'], 'on', r['device'])" || true
# the chained path for comparison, and ResNet-18 fp32 on the default again: how much a row moves between runs
python3 tools/bench_gpu.py --models resnet18 --precisions fp32 --query-paths onnx,fused --csv "$out/bench_gpu.csv" "$@" || true

# where the host's time per step goes now (cProfile of one ResNet-18 fp32 F-TC explanation on the fused path)
python3 -W ignore tools/profile_step.py --model resnet18 --device cuda --query-path fused --top 15 || true

# let tee finish writing session.log before the call returns
sleep 1
