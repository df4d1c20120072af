#!/usr/bin/env bash
# Runs HERE, before a GPU session: cuts onnxruntime-gpu (packed by ../shared/gpu/prepare-ort-gpu.sh)
# into parts that each fit one device call together with the working tree. A call carries 64 MiB in
# all, the tree included; the tree (the bundled 19 MB model) plus one of the shared script's 49 MiB
# parts is more than that, so the parts are re-cut here: .ortgpu/p.0, p.1, ... (about 45 MiB each).
# Then, on the device, one quick call per part but the last:
#   run(carry=[".ortgpu/p.N"], command="mkdir -p /root/og && mv .ortgpu/p.N /root/og/")
# and the last part with the session:
#   run(carry=[".ortgpu/p.LAST"], command="bash tools/gpu_session.sh", timeout_s=500)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -f .ortgpu/part.0 ] || bash ../shared/gpu/prepare-ort-gpu.sh
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s}')
limit=$((64 * 1024 * 1024 - tree - 2 * 1024 * 1024))  # 2 MiB to spare
rm -f .ortgpu/p.*
cat .ortgpu/part.? | split -b "$limit" -d -a 1 - .ortgpu/p.
echo "working tree $((tree / 1024 / 1024)) MiB; parts of at most $((limit / 1024 / 1024)) MiB:"
ls -l .ortgpu/p.*
