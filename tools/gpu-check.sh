#!/usr/bin/env bash
# Measures a machine with an NVIDIA GPU completely, in one go, and writes everything under one folder:
#   1. the machine: nvidia-smi, driver, CUDA, library versions, which ONNX Runtime providers load;
#   2. `pytest -m cuda` (I/O binding, CUDA graphs, torch fp16/bf16 and torch.compile, TensorRT where present);
#   3. `c3d-rt bench` on a full-size C3D (trained here for 3 epochs on the synthetic set, or CKPT=...)
#      on the GPU at batch 1, 8, 64 and 256, with the live pipeline (--e2e, engine auto) on a 30 fps
#      synthetic camera;
#   4. `c3d-rt webcam` on the synthetic camera with the GPU engine, a prediction on every frame;
#   5. training speed of full-size C3D at batch 32 per precision / channels_last / torch.compile, and the
#      input pipeline (raw decode vs frame cache) per worker count.
#
#   bash tools/gpu-check.sh [OUT_DIR]            # default: gpu-check-<date>
#   CKPT=runs/ucf/best.pt bash tools/gpu-check.sh  # measure your own checkpoint instead
#
# It needs no package registry: run it from the repository (the package is put on PYTHONPATH), with
# torch (CUDA build), onnx, onnxruntime(-gpu), opencv, numpy, typer, tqdm, matplotlib, psutil, pytest.
# A step that fails is recorded and the next one still runs; the exit status counts the failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-${OUT:-gpu-check-$(date +%F)}}")
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
WORK=${WORK:-runs/gpu-check}
failed=0
step() {  # step NAME COMMAND...: run, keep its output in OUT/NAME.txt, count a failure
  local name=$1; shift
  echo "== $name: $*"
  if "$@" > >(tee "$OUT/$name.txt") 2>&1; then echo "== $name: ok"; else echo "== $name: FAILED"; failed=$((failed + 1)); fi
}

step machine bash -c "nvidia-smi; $PY - <<'PY'
import json, platform
info = {'python': platform.python_version()}
for name in ('torch', 'onnxruntime', 'openvino', 'numpy', 'cv2'):
    try:
        module = __import__(name)
        info[name] = module.__version__
    except ImportError:
        info[name] = None
import torch
info['cuda'] = torch.version.cuda
info['gpu'] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
try:
    import onnxruntime as ort
    if hasattr(ort, 'preload_dlls'):
        ort.preload_dlls()
    info['ort_providers'] = ort.get_available_providers()
except ImportError:
    info['ort_providers'] = []
print(json.dumps(info, indent=1))
PY"
step pytest-cuda "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/
step bench env WORK="$WORK" RESULTS="$OUT" BATCH="${BATCH:-1,8,64,256}" ITERS="${ITERS:-50}" WORKERS="${WORKERS:-8}" \
    BENCH_ARGS="--devices cuda" bash benchmarks/reproduce.sh
step live "$PY" -m c3d_rt.cli webcam --model "$WORK/export" --device cuda --source synthetic@30 --max-frames 900 \
    --no-show --summary-json "$OUT/live-cuda.json"
# The issue's GPU goal for serve: >= 64 streams x 30 fps at stride 4 with p99 glass-to-label <= 50 ms.
step serve "$PY" benchmarks/serve_bench.py --model "$WORK/export" --device cuda --streams 8,16,32,64,96,128 \
    --stride 4 --max-batch 64 --max-wait-ms 5 --p99-ms 50 --seconds 15 \
    --json "$OUT/serve-cuda.json" --markdown "$OUT/serve-cuda.md"
step train-speed "$PY" benchmarks/train_speed.py --device cuda --width 1 --batch 32 --steps 20 --warmup 5 \
    --variants fp32,bf16,fp16,channels_last,bf16+channels_last,bf16+compile,bf16+compile+channels_last --out "$OUT"
step input-pipeline "$PY" benchmarks/input_pipeline.py --videos 32 --workers 0,1,2,4,8 --out "$OUT"
echo "results in $OUT; $failed step(s) failed"
exit "$failed"
