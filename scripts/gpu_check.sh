#!/usr/bin/env bash
# One pass over everything that needs a CUDA device, for a lent GPU: within 8 minutes (TOTAL_S) it
#   1. prints nvidia-smi and the torch / CUDA / cuDNN / NCCL versions;
#   2. runs the tests marked gpu (tests/test_gpu.py: PLAN under bfloat16 autocast, generate under torchrun, the
#      trainer's float16 blocks, chunk sizing from free memory) and fails if any of them fails or is skipped;
#   3. runs the GPU benchmarks, each writing its own section of benchmarks/RESULTS.md:
#      bench_paths (paths-cuda, goal >= 15x at 64 paths, 256 px), bench_invert (invert-cuda, goal >= 8x at batch 32),
#      bench_generate (generate-cxr-cuda), then the same two at stylegan2-ada's paper256 widths (…-paper256);
#   4. prints a summary: each step's outcome and time, and each benchmark's headline ratio.
#
#   bash scripts/gpu_check.sh                  # exits non-zero at once, with one line, when there is no CUDA device
#   TOTAL_S=900 bash scripts/gpu_check.sh      # a longer overall budget
#
# Every step runs under `timeout`, capped by what is left of TOTAL_S; a step with under 20 s left is not started.
# Logs and a copy of benchmarks/RESULTS.md go to $LOG_DIR (default: $OUT when set, else a new temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
TOTAL_S="${TOTAL_S:-465}"  # seconds for the whole script; a step killed at the end adds at most 10 s
START=$(date +%s)

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check.sh: no CUDA device (torch.cuda.is_available() is False); run it on a machine with an NVIDIA GPU" >&2
    exit 2
fi

LOG_DIR="${LOG_DIR:-${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}}"
mkdir -p "$LOG_DIR"
SUMMARY_FILE="$LOG_DIR/bench_summary.txt"
: >"$SUMMARY_FILE"
export LATENTWALK_BENCH_SUMMARY="$SUMMARY_FILE"  # benchmarks/record.py appends each headline ratio here
export PYTHONUNBUFFERED=1
STEPS=()
FAILED=0

# step NAME LIMIT_S COMMAND...: run COMMAND with its output in $LOG_DIR/NAME.log and on the terminal, under a
# timeout of LIMIT_S or what is left of TOTAL_S, whichever is less; record the outcome for the summary.
step() {
    local name="$1" limit="$2"
    shift 2
    local left=$((TOTAL_S - ($(date +%s) - START)))
    if ((left < 20)); then
        STEPS+=("$(printf '%-24s %-9s %s' "$name" "not run" "(out of time: ${left} s of ${TOTAL_S} s left)")")
        FAILED=1
        return 0
    fi
    ((limit > left)) && limit=$left
    echo
    echo "=== $name (limit ${limit} s): $*"
    local t0 rc=0
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOG_DIR/$name.log" || rc=${PIPESTATUS[0]}
    local took=$(($(date +%s) - t0)) outcome="ok"
    if ((rc == 124 || rc == 137)); then
        outcome="TIMEOUT"
    elif ((rc != 0)); then
        outcome="FAILED"
    fi
    [[ "$outcome" == ok ]] || FAILED=1
    STEPS+=("$(printf '%-24s %-9s %4d s  (log: %s)' "$name" "$outcome" "$took" "$LOG_DIR/$name.log")")
}

echo "=== machine"
nvidia-smi || echo "(nvidia-smi not found)"
"$PYTHON" - <<'EOF'
import torch
import torch.distributed as dist

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"{torch.cuda.device_count()} device(s), device 0: {torch.cuda.get_device_name(0)} "
      f"(compute capability {'.'.join(map(str, torch.cuda.get_device_capability(0)))})")
nccl = ".".join(map(str, torch.cuda.nccl.version())) if dist.is_nccl_available() else "not available"
print(f"NCCL {nccl}; bfloat16 supported: {torch.cuda.is_bf16_supported()}")
EOF

# 1. The gpu tests. Every one of them must run: a skip (e.g. too little free GPU memory) fails the check.
step gpu-tests 240 "$PYTHON" -m pytest -m gpu -q -rs -p no:cacheprovider tests/
if [[ -f "$LOG_DIR/gpu-tests.log" ]] && tail -n 3 "$LOG_DIR/gpu-tests.log" | grep -qE '[0-9]+ skipped'; then
    echo "gpu_check.sh: some gpu tests were skipped on this CUDA machine (reasons above); that is a failure here"
    STEPS+=("$(printf '%-24s %-9s' gpu-tests-all-ran FAILED)")
    FAILED=1
fi

# 2. Benchmarks on the GPU, most wanted first; each writes its RESULTS.md section (device-suffixed names).
step bench-paths 90 "$PYTHON" benchmarks/bench_paths.py --device cuda --resolution 256 --paths 64 --chunk 512
step bench-invert 75 "$PYTHON" benchmarks/bench_invert.py --device cuda --resolution 256
step bench-generate 150 "$PYTHON" benchmarks/bench_generate.py --device cuda
step bench-paths-paper256 100 "$PYTHON" benchmarks/bench_paths.py --device cuda --resolution 256 --paths 64 \
    --chunk 128 --arch paper256
step bench-invert-paper256 90 "$PYTHON" benchmarks/bench_invert.py --device cuda --resolution 256 --arch paper256

cp benchmarks/RESULTS.md "$LOG_DIR/RESULTS.md"
echo
echo "=== summary ($(($(date +%s) - START)) s of ${TOTAL_S} s)"
printf '  %s\n' "${STEPS[@]}"
echo "Headline ratios (goals: PLAN paths >= 15x at 64 paths, 256 px; inversion >= 8x at batch 32):"
if [[ -s "$SUMMARY_FILE" ]]; then sed 's/^/  /' "$SUMMARY_FILE"; else echo "  (none)"; fi
echo "RESULTS.md sections written: paths-cuda, invert-cuda, generate-cxr-cuda, paths-cuda-paper256, "
echo "  invert-cuda-paper256 (for the steps that finished); a copy is in $LOG_DIR/RESULTS.md."
echo "Optional next step (about 10 minutes more): bash scripts/gpu_train_demo_gans.sh  (wider demo GANs on the GPU)"
if ((FAILED)); then
    echo "gpu_check.sh: FAILED (see the summary above)"
    exit 1
fi
echo "gpu_check.sh: all steps passed"
