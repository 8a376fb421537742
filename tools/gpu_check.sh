#!/usr/bin/env bash
# The GPU check, prepared for a machine with a CUDA device (< 8 min): the CUDA tests, then hqc's
# CUDA benchmark cells. Results land in tools/results/gpu/ (qnn_gpu.json/.md and pytest.txt);
# `python tools/bench_qnn.py --render` is not needed: BENCHMARKS.md links tools/results/gpu/qnn_gpu.md.
#
#   bash tools/gpu_check.sh [PYTHON]        # PYTHON: interpreter with hqc installed (default: python)
#
# On a machine without CUDA the tests skip ("needs a CUDA device") and the script stops there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python}"
OUT=tools/results/gpu
mkdir -p "$OUT"
"$PY" - <<'PYEOF' | tee "$OUT/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0))
PYEOF
timeout 180 "$PY" -m pytest tests/test_cuda.py -q -rs 2>&1 | tee "$OUT/pytest.txt"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device: tests skipped, no benchmark cells run" | tee -a "$OUT/device.txt"
    exit 0
fi
# hqc's torch peers on cuda, Q 8..22, batch 1 / 64 / 256; one warm-up + <= 5 repeats, 10 s cap.
timeout 360 "$PY" tools/bench_qnn.py --no-check --device cuda --results gpu/qnn_gpu \
    --peers hqc-f32-real,hqc-f32-complex,hqc-f64-real \
    --qubits 8,12,16,20,22 --extra-qubits "" --batches 1,64,256 \
    --cap 10 --repeats 5 --hard-limit 60 --quiet-wait 0 --retries 0 || true
ls -l "$OUT"
