#!/usr/bin/env bash
# The one command to run when a GPU is lent (BENCHMARKS.md, "castseg on a GPU"): random weights,
# no downloads. On one H200 the checks before the demo take about 5 minutes (139 + 39 + 43 + 38 +
# 41 s); the full demo takes longer than 4 more (its tiny models are host-bound). Each check
# runs under its own time limit and the script goes on after a failure; the last lines sum up
# which checks passed.
#
#     bash benchmarks/gpu_check.sh            # needs CUDA
#     bash benchmarks/gpu_check.sh --dry-run  # CPU: the same code paths at tiny sizes, no demo
#
# Logs go to $GPU_CHECK_LOGS (default runs/gpu_check/); the run folders to runs/gpu_check/.
#   1. paper-size teacher and student steps in fp32 (TF32) and bf16-mixed: time, peak memory
#      and host syncs per step; pseudo-labelling throughput      (benchmarks/gpu_check.py)
#   2. `castseg demo --smoke` in bf16-mixed and in 16-mixed (grad scaler)
#   3. `castseg demo --smoke` in fp32 under DDP, launched by torchrun
#   4. `castseg bench`: teacher vs student latency, batch 1, 518 x 1036
#   5. the full `castseg demo`, with its wall time
# A machine whose Python lacks castseg's dependencies (an image with torch, transformers and
# Lightning only) needs kornia, kornia_rs, faster-coco-eval, pycocotools, cityscapesscripts,
# appdirs, coloredlogs, humanfriendly and pyquaternion as wheels (`pip download --no-deps`; not
# the `typing` backport, which would shadow the standard library), installed with
# `pip install --no-deps --target /tmp/site` and PYTHONPATH=/tmp/site:$PWD.
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python}"
runs=runs/gpu_check
logs="${GPU_CHECK_LOGS:-$runs}"
mkdir -p "$runs" "$logs"
summary=()

check() {  # check NAME SECONDS COMMAND...: run, log, time and record one check
    local name=$1 limit=$2
    shift 2
    local began=$SECONDS
    echo "=== $name (limit ${limit} s)"
    timeout "$limit" "$@" 2>&1 | tee "$logs/$name.log"
    local status=${PIPESTATUS[0]}
    local line="$name: rc $status, $((SECONDS - began)) s"
    [[ $status == 124 ]] && line="$line (stopped at its limit)"
    summary+=("$line")
    echo "=== $line"
}

if [[ "${1:-}" == "--dry-run" ]]; then
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    check steps 600 "$python" benchmarks/gpu_check.py --dry-run
    check bench 300 "$python" -m castseg.cli bench --device cpu --student-size tiny \
        --teacher NONE --height 56 --width 112 --repeats 1 --warmup 0
else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$python" -c "import torch, transformers, lightning; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'lightning', lightning.__version__)"
    check steps 200 "$python" benchmarks/gpu_check.py
    for precision in bf16-mixed 16-mixed; do
        check "smoke_$precision" 90 "$python" -m castseg.cli demo --smoke --no-progress \
            --restart --out "$runs/smoke_$precision" --set "run.precision=$precision"
    done
    check smoke_ddp_fp32 90 "$python" -m torch.distributed.run --standalone --nproc_per_node 1 \
        -m castseg.cli demo --smoke --no-progress --restart --out "$runs/smoke_ddp" \
        --set run.precision=32-true --set run.strategy=ddp --set run.devices=1
    check bench 60 "$python" -m castseg.cli bench --device cuda --height 518 --width 1036 \
        --repeats 20
    check demo 420 "$python" -m castseg.cli demo --no-progress --restart --out "$runs/demo"
fi
printf '%s\n' "${summary[@]}" | tee "$logs/summary.txt"
! grep -qv ": rc 0," "$logs/summary.txt"
