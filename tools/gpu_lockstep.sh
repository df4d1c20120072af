#!/usr/bin/env bash
# Issue 26's one prepared device call: lockstep on one GPU, the issue's job (bundled
# EfficientNet-Lite0, F-TC with NES, 200 steps x 8 antithetic pairs = 16 probes a step, 3,202 queries;
# asked for with --estimator nes, since the default estimator is now active)
# over 256 photo crops, K = 256 // 16 = 16 explanations in flight (batches of 256), against the
# bare model's batch-256 ceiling measured in the same run; then ResNet-18 (random weights,
# exported with PyTorch by tools/bench_gpu.py) the same way. A few photos also run one at a time
# (the fused path), for the speed-up and the masks' difference to lockstep (float tolerance on CUDA).
#
# Before it: onnxruntime-gpu's parts (an xz tar of the wheel, cut to fit a call: tools/gpu_parts.sh)
# moved to /root/og/ by one quick call per part but the last, which this call carries (BBX_PARTS:
# the folder holding it, default .ortgpu). The device tool sends the session's checkout: a helper's
# worktree goes along as an ignored copy (BBX_TREE, default: this checkout), e.g. from the lead's
# checkout with the parts and a copy of this branch's bbx/ and tools/ in .ortgpu/i26/:
#   run(carry=[".ortgpu/i26/p.0"], command="mkdir -p /root/og && mv .ortgpu/i26/p.0 /root/og/")  # p.1 .. p.3 alike
#   run(carry=[".ortgpu/i26/p.4", ".ortgpu/i26/wt26"], timeout_s=420,
#       command="BBX_PARTS=.ortgpu/i26 BBX_TREE=.ortgpu/i26/wt26 bash .ortgpu/i26/wt26/tools/gpu_lockstep.sh")
# Sized for about 4-5 minutes of the call (Lite0 and ResNet-18: 256 x 3,202 queries each in
# lockstep, 4 photos alone, the ceilings); not run yet (issue 26: no machine was lent).
# Leaves bench_lockstep_gpu.csv and lockstep.log in $OUT.
set -uo pipefail
out=${OUT:-/tmp}
exec > >(tee "$out/lockstep.log") 2>&1
root=$PWD
tree=${BBX_TREE:-.}
mkdir -p /root/og
mv "${BBX_PARTS:-.ortgpu}"/p.* /root/og/ 2>/dev/null || true
python3 "$tree/tools/ort_gpu_join.py" /root/og /tmp/site || exit 1
[ -e "$tree/models" ] || ln -s "$root/models" "$tree/models"  # the bundled model, from the checkout sent
cd "$tree"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
python3 -c "import torch, onnxruntime as ort; print(torch.__version__, torch.cuda.get_device_name(0), 'onnxruntime', ort.__version__, ort.get_available_providers())"
# the shared batches' images built on the device against the host's, on CUDA (one round of 3 x 40 probes)
BBX_TEST_DEVICE=cuda timeout 60 python3 - <<'PY' || true
import numpy as np, bbx
from bbx.config import ExplainConfig
from bbx.evaluation.lockstep import Tally
from bbx.evaluation.lockstep_graph import DeviceImages
from bbx.methods import Context, get
m = bbx.OnnxClassifier("models/efficientnet_lite0.onnx", device="cuda")
runs = [get("ftc").stepper(Context(Tally(m), p, None, "ftc", None), ExplainConfig(method="ftc", seed=s, iterations=2, pairs=20, estimator="nes"))
        for s, p in enumerate(["models/samples/chelsea.png", "models/samples/coffee.png", "models/samples/rocket.jpg"])]
probes = [r.probes() for r in runs]
host = m.score_tensor(np.concatenate([r.query.model_input(p) for r, p in zip(runs, probes)])).raw
dev = DeviceImages(m).score([r.query.parts for r in runs], probes, True).raw
print("device images vs host on cuda: max abs logit diff", float(np.abs(dev - host).max()), "of max", float(np.abs(host).max()))
PY
python3 tools/bench_lockstep.py gpu --estimator nes --models lite0,resnet18 --photos 256 --iterations 200 --alone-photos 4 \
  --bare-seconds 3 --csv "$out/bench_lockstep_gpu.csv"
sleep 1
