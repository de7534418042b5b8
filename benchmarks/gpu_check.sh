#!/usr/bin/env bash
# Everything a GPU changes, in one run of at most 8 minutes on one GPU (README: Performance):
#   1. the tests marked `gpu` (CUDA metrics = CPU kernel, evaluate and a smoke submit on CUDA,
#      bf16 and fp16 training, --compile);
#   2. benchmarks/results/gpu_training_speed.json: training images/s of the paper variants at
#      128x128, batch 8, in fp32, bf16 and bf16 + compile, and forward latency at 256x256;
#   3. benchmarks/results/gpu_metrics_throughput.json: PSNR+SSIM throughput against scikit-image.
#
#   benchmarks/gpu_check.sh          on a machine with a CUDA GPU
#   benchmarks/gpu_check.sh --cpu    dry run here: the same steps on CPU at tiny sizes, results in
#                                    a temporary folder (the gpu tests skip, saying why)
# Ray starts inside `unshare --net` when this runs as root (tests/conftest.py does that itself).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MODE=gpu
[[ "${1:-}" == "--cpu" ]] && MODE=cpu
start=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - start )) s] $*"; }

if [[ $MODE == gpu ]]; then
  if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False);" \
         "run it on a GPU machine, or with --cpu for a dry run of the same steps" >&2
    exit 2
  fi
  OUT=benchmarks/results
  "$PY" -c 'import torch; print("GPU:", torch.cuda.get_device_name(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)'
  SPEED=(--device cuda --variant paper --size 128 --batch 8 --steps 10 --warmup 3 --rounds 3 --latency-size 256
         --modes fp32 bf16 bf16+compile)
  METRICS=(--device cuda --images 48 --size 256 --rounds 5 --skip-pyiqa)
  TESTS=(-m gpu)
else
  OUT=$(mktemp -d)
  echo "gpu_check --cpu: a dry run on CPU at tiny sizes; results go to $OUT, not benchmarks/results"
  SPEED=(--device cpu --variant tiny --models nafnet --size 32 --batch 2 --steps 2 --warmup 1 --rounds 1
         --latency-size 64 --latency-repeats 2 --latency-warmup 1 --modes fp32 bf16 bf16+compile)
  METRICS=(--device cpu --images 4 --size 64 --rounds 1 --skip-pyiqa)
  TESTS=(-m gpu -rs)
fi

status=0  # every step runs; a failed step makes the exit status non-zero (a timeout: 124)
step "tests marked gpu (at most 180 s)"
timeout 180 "$PY" -m pytest tests/test_gpu.py "${TESTS[@]}" -q -p no:cacheprovider || status=$?

step "training images/s and forward latency -> $OUT/gpu_training_speed.json"
# the JSON is rewritten after each model, so a timeout keeps the models already measured
timeout 240 "$PY" benchmarks/training_speed.py "${SPEED[@]}" --out "$OUT/gpu_training_speed.json" || status=$?

step "PSNR+SSIM throughput -> $OUT/gpu_metrics_throughput.json"
timeout 45 "$PY" benchmarks/metrics_throughput.py "${METRICS[@]}" --output "$OUT/gpu_metrics_throughput.json" || status=$?

step "done in $(( $(date +%s) - start )) s (limits 180 + 240 + 45 s); results in $OUT; exit status $status"
exit $status
