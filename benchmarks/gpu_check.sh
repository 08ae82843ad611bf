#!/usr/bin/env bash
# The GPU check of BENCHMARKS.md ("Teacher memory and the GPU check"): random weights, no
# downloads, about 8 minutes on one GPU. With --dry-run, the same code on CPU at tiny sizes.
#
#     bash benchmarks/gpu_check.sh            # needs CUDA (and onnxruntime-gpu for the ONNX row)
#     bash benchmarks/gpu_check.sh --dry-run  # CPU: checks the code path, figures meaningless
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python}"
if [[ "${1:-}" == "--dry-run" ]]; then
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$python" benchmarks/gpu_check.py --dry-run
    "$python" -m castseg.cli bench --device cpu --student-size tiny --teacher NONE \
        --height 56 --width 112 --repeats 1 --warmup 0 --onnx
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$python" benchmarks/gpu_check.py
# teacher vs student latency, batch 1, 518 x 1036; the student also in ONNX Runtime (CUDA EP)
"$python" -m castseg.cli bench --device cuda --height 518 --width 1036 --repeats 20 --onnx
