#!/usr/bin/env bash
# Reproduces the recorded results in benchmarks/results/: the full-size C3D (width 1, 16x112x112 clips),
# exported in every format, then `c3d-rt bench` with the live-pipeline (--e2e) run.
#
#   bash benchmarks/reproduce.sh                      # trains its own full-size checkpoint first (slow on a CPU)
#   CKPT=runs/ucf/best.pt bash benchmarks/reproduce.sh  # or benchmark a checkpoint you have
#   BATCH=1,8,32,64 bash benchmarks/reproduce.sh        # batch sizes (GPU machines: go higher)
#   RESULTS=/tmp/out BENCH_ARGS="--devices cuda" bash benchmarks/reproduce.sh   # elsewhere, other bench options
#
# The checkpoint it trains: C3D-BN from scratch on the built-in synthetic set (9 classes, 30 clips each,
# 171x128) for 3 epochs: a real, partly trained full-size model, so agreement figures are measured on
# real clips with a model whose outputs are not flat. It took 27 min on the 2-core CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
c3d() { python -m c3d_rt.cli "$@"; }  # works with the package installed or only on PYTHONPATH
WORK=${WORK:-runs/bench-full}
BATCH=${BATCH:-1,8}
ITERS=${ITERS:-20}
RESULTS=${RESULTS:-benchmarks/results}
if [ -z "${CKPT:-}" ]; then
  [ -f "$WORK/data/dataset.json" ] || c3d synth "$WORK/data" --clips-per-class 30 --frames 32
  [ -f "$WORK/run/last.pt" ] || c3d train "$WORK/data" --out "$WORK/run" --width 1 --crop-size 112 \
      --epochs 3 --batch-size 8 --workers "${WORKERS:-1}"
  CKPT="$WORK/run/last.pt"
fi
[ -f "$WORK/export/c3d.onnx" ] || c3d export "$CKPT" --out "$WORK/export"
NAME="$(python -c 'from c3d_rt.bench.report import device_slug; print(device_slug())')-$(date +%F)"
mkdir -p "$RESULTS"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
c3d bench --model "$WORK/export" --checkpoint "$CKPT" --batch "$BATCH" --iters "$ITERS" --clips 32 \
    --e2e --e2e-seconds 20 ${BENCH_ARGS:-} \
    --json "$RESULTS/$NAME.json" --markdown "$RESULTS/$NAME.md" \
    --plot "$RESULTS/$NAME.png" | tee "$RESULTS/$NAME.txt"
