#!/usr/bin/env bash
# The triton engine against local ONNX Runtime on one machine: a real Triton server (PyTriton's, from
# tools/pytriton-venv.sh) serves EXPORT/triton/c3d on free local ports, and `c3d-rt bench` times the ort and
# triton rows (fp32, CPU) once over HTTP and once over gRPC. The server runs the same ONNX file with ONNX
# Runtime in Triton's Python backend, so triton - ort is what the server path adds (transport, queue,
# Python backend), on the same cores.
#
#   c3d-rt export CKPT --out export --formats onnx,triton
#   EXPORT=export BATCH=1,4 ITERS=10 TAG=full bash benchmarks/triton.sh   # results/triton-full-<machine>-<date>-{http,grpc}.*
set -euo pipefail
cd "$(dirname "$0")/.."
EXPORT=${EXPORT:-export}
BATCH=${BATCH:-1,4}
ITERS=${ITERS:-10}
RESULTS=${RESULTS:-benchmarks/results}
SERVER_PYTHON=${C3D_RT_PYTRITON_PYTHON:-.venv-triton/bin/python}
port() { python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
HTTP=$(port); GRPC=$(port); METRICS=$(port)
LOG=$(mktemp)
"$SERVER_PYTHON" tools/pytriton_server.py "c3d=$EXPORT/triton/c3d" --http-port "$HTTP" --grpc-port "$GRPC" \
    --metrics-port "$METRICS" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 240); do grep -q serving "$LOG" && break; kill -0 $SERVER || { cat "$LOG"; exit 1; }; sleep 0.5; done
NAME="triton-${TAG:+$TAG-}$(python -c 'from c3d_rt.bench.report import device_slug; print(device_slug())')-$(date +%F)"
mkdir -p "$RESULTS"
for url in "http://127.0.0.1:$HTTP" "grpc://127.0.0.1:$GRPC"; do
  proto=${url%%:*}
  python -m c3d_rt.cli bench --model "$EXPORT" --engines ort,triton --precision fp32 --devices cpu \
      --batch "$BATCH" --iters "$ITERS" --clips 8 --triton-url "$url" --json "$RESULTS/$NAME-$proto.json" \
      | tee "$RESULTS/$NAME-$proto.txt"
done
