#!/usr/bin/env bash
# Measures a machine with an NVIDIA GPU in one go, and writes everything under one folder:
#   1. the machine: nvidia-smi, driver, CUDA, library versions, which ONNX Runtime providers load;
#   2. `pytest -m cuda` (I/O binding, CUDA graphs, torch fp16/bf16 and torch.compile, TensorRT where present);
#   3. a full-size C3D: fitted briefly here on the synthetic set (or CKPT=...), exported and proven;
#   4. `c3d-rt bench` on the GPU (torch, ONNX Runtime CUDA with I/O binding and CUDA graphs, fp16/bf16) with
#      the live pipeline (--e2e, engine auto) on a 30 fps synthetic camera;
#   5. `c3d-rt webcam` on the synthetic camera with the GPU engine;
#   6. `c3d-rt serve`'s streams against the GPU goal (benchmarks/serve_bench.py);
#   7. training speed of full-size C3D per precision / channels_last / torch.compile, and (full mode) the
#      input pipeline (raw decode vs frame cache) per worker count.
#   8. `c3d-rt predict`'s batched throughput (benchmarks/predict_throughput.py: the batch it chooses, clips/s
#      against the engine alone at that batch and against `webcam` on the same file) over the synthetic videos.
#
#   bash tools/gpu-check.sh --quick [OUT_DIR]     # fits one device lease: done within TOTAL_S=450 s (7.5 min)
#   bash tools/gpu-check.sh [OUT_DIR]             # everything, larger batches and longer runs (about 30 min)
#   CKPT=runs/ucf/best.pt bash tools/gpu-check.sh # measure your own checkpoint instead of fitting one
#   DEVICE=cpu WIDTH=0.125 CROP=48 bash tools/gpu-check.sh --quick /tmp/gc   # a dry run here, to time the steps
#
# Each step's output is in OUT/<step>.txt and its wall time in OUT/steps.tsv; a step that fails is recorded
# and the next one still runs; the exit status counts the failed steps. In --quick every step is capped (STEP_S)
# and the whole run too (TOTAL_S): a step that would start past it is recorded as skipped, so the lease
# always ends with the table of what was measured (steps in order of what matters most on a GPU).
#
# On the project's lent GPU machine (no package registry; at most 64 MiB carried per call; 15 min of
# device time in all, every call counted): it has torch (CUDA), onnx, onnxruntime (CPU build), opencv,
# numpy, typer, tqdm, matplotlib, psutil, pytest. ONNX Runtime's CUDA build must be carried in chunks:
#   1. here: bash ../shared/device/ort-gpu-chunks.sh        # .ortgpu1 ... .ortgpuN (50 MiB each, git-ignored)
#   2. one call per chunk k, back to back (the machine is given back 30 s after a call ends), carrying
#      [".ortgpuk"]:   mkdir -p /tmp/ortw && cp .ortgpuk/part.* /tmp/ortw/
#   3. the check itself, in the same warm machine, with timeout_s 600:
#      cat /tmp/ortw/part.* > /tmp/ortw/W.whl && python3 -m pip install -q --no-deps --no-index \
#        --target /tmp/site /tmp/ortw/W.whl && PYTHONPATH=/tmp/site bash tools/gpu-check.sh --quick $OUT/gc
#      (W.whl: the wheel name ort-gpu-chunks.sh printed.)
# It needs no registry: it runs from the repository (the package is put on PYTHONPATH).
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
OUT=$(realpath -m "${1:-${OUT:-gpu-check-$(date +%F)}}")
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
WIDTH=${WIDTH:-1}
CROP=${CROP:-112}
WORK=${WORK:-runs/gpu-check}
C3D=("$PY" -m c3d_rt.cli)
if [ "$QUICK" = 1 ]; then
  CLIPS=12 EPOCHS=2 BATCH=${BATCH:-1,8,64} ITERS=${ITERS:-20} E2E_S=8 FRAMES=300 STREAMS=16,64 SERVE_S=8
  STEP_S=${STEP_S:-150} TOTAL_S=${TOTAL_S:-450}  # no step may eat the lease: a stuck one is stopped, recorded
  TRAIN_VARIANTS=fp32,bf16,bf16+channels_last TRAIN_STEPS=8 FORMATS=onnx,onnx-fp16,torchscript
else
  CLIPS=30 EPOCHS=3 BATCH=${BATCH:-1,8,64,256} ITERS=${ITERS:-50} E2E_S=20 FRAMES=900 STREAMS=8,16,32,64,96,128
  SERVE_S=15 TRAIN_VARIANTS=fp32,bf16,fp16,channels_last,bf16+channels_last,bf16+compile,bf16+compile+channels_last
  TRAIN_STEPS=20 FORMATS="" STEP_S=${STEP_S:-1800} TOTAL_S=${TOTAL_S:-7200}
fi
failed=0
DEADLINE=$(( $(date +%s) + TOTAL_S ))
printf 'step\tseconds\tstatus\n' > "$OUT/steps.tsv"
step() {  # step NAME COMMAND...: run, keep its output in OUT/NAME.txt and its time in OUT/steps.tsv
  local name=$1 start status left; shift
  start=$(date +%s%N)
  left=$(( DEADLINE - $(date +%s) ))
  if [ "$left" -lt 15 ]; then
    printf '%s\t0\tskipped (TOTAL_S=%s reached)\n' "$name" "$TOTAL_S" >> "$OUT/steps.tsv"
    echo "== $name: skipped (TOTAL_S reached)"; return
  fi
  echo "== $name: $*"
  timeout "$(( left < STEP_S ? left : STEP_S ))" "$@" > >(tee "$OUT/$name.txt") 2>&1
  case $? in
    0) status=ok ;;
    124) status="timed out"; failed=$((failed + 1)) ;;
    *) status=FAILED; failed=$((failed + 1)) ;;
  esac
  printf '%s\t%d\t%s\n' "$name" $(( ($(date +%s%N) - start) / 1000000000 )) "$status" >> "$OUT/steps.tsv"
  echo "== $name: $status"
}
CKPT=${CKPT:-$WORK/run/last.pt}

step machine bash -c "nvidia-smi || echo 'nvidia-smi: not here'; $PY - <<'PY'
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
# The synthetic set: real encoded videos to fit on (without CKPT) and for predict's throughput.
[ -f "$WORK/data/dataset.json" ] || step synth "${C3D[@]}" synth "$WORK/data" --clips-per-class "$CLIPS" --frames 32
if [ ! -f "$CKPT" ]; then  # a real, briefly fitted model, so agreement is measured on outputs that are not flat
  step fit "${C3D[@]}" train "$WORK/data" --out "$WORK/run" --width "$WIDTH" --crop-size "$CROP" \
      --epochs "$EPOCHS" --batch-size 16 --workers 4 --device "$DEVICE" --ema 0
fi
# The proofs run on the CPU (the reference is the eager model); --formats keeps the quick mode's export short.
step export "${C3D[@]}" export "$CKPT" --out "$WORK/export" ${FORMATS:+--formats "$FORMATS"}
NAME="bench-$DEVICE"
step bench "${C3D[@]}" bench --model "$WORK/export" --checkpoint "$CKPT" --devices "$DEVICE" --batch "$BATCH" \
    --iters "$ITERS" --clips 32 --e2e --e2e-seconds "$E2E_S" \
    --json "$OUT/$NAME.json" --markdown "$OUT/$NAME.md" --plot "$OUT/$NAME.png"
# Offline: every window, batched (the batch is measured: on a GPU it should reach 64 or more).
step predict "$PY" benchmarks/predict_throughput.py --model "$WORK/export" --engine auto --device "$DEVICE" \
    --videos "$WORK/data" --repeats 2 --work "$WORK/predict" --out "$OUT"
step live "${C3D[@]}" webcam --model "$WORK/export" --device "$DEVICE" --source synthetic@30 --max-frames "$FRAMES" \
    --no-show --summary-json "$OUT/live-$DEVICE.json"
# The issue's GPU goal for serve: >= 64 streams x 30 fps at stride 4 with p99 glass-to-label <= 50 ms.
step serve "$PY" benchmarks/serve_bench.py --model "$WORK/export" --device "$DEVICE" --streams "$STREAMS" \
    --stride 4 --max-batch 64 --max-wait-ms 5 --p99-ms 50 --seconds "$SERVE_S" \
    --json "$OUT/serve-$DEVICE.json" --markdown "$OUT/serve-$DEVICE.md"
step train-speed "$PY" benchmarks/train_speed.py --device "$DEVICE" --width "$WIDTH" --batch 32 \
    --steps "$TRAIN_STEPS" --warmup 3 --variants "$TRAIN_VARIANTS" --out "$OUT"
if [ "$QUICK" != 1 ]; then
  step input-pipeline "$PY" benchmarks/input_pipeline.py --videos 32 --workers 0,1,2,4,8 --out "$OUT"
fi
cat "$OUT/steps.tsv"
echo "results in $OUT; $failed step(s) failed"
exit "$failed"
