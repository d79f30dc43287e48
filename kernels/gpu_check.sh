#!/usr/bin/env bash
# The persistent CUDA kernel on a real GPU, in one go: the kernel's self-test, the cuda-marked
# tests, and the speed figures, every result under one folder.
#
#   bash kernels/gpu_check.sh [OUT_DIR]          # default: $OUT if set, else gpu-check/
#
# OUT_DIR gets machine.txt (GPU, driver, CUDA, torch), summary.txt (each step's exit code), a
# log per step, and kernels.json (the bench's records: keep it as benchmarks/h200-kernels.json).
#
# It installs nothing from a registry: the GPU machine has no network. Packages it lacks
# (soundfile, which the engine's audio module imports) travel as wheels in .whl/, fetched
# beforehand on a machine with pip: bash kernels/gpu_wheels.sh. GPU_CHECK_DRY_RUN=1 runs the
# same steps on a CPU (the self-test through numba's CUDA simulator, the GPU tests skipped,
# the torch reference timed briefly) to test the script before a GPU's minutes are spent.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check}}"
mkdir -p "$out"
python=${PYTHON:-python3}

if ! "$python" -c "import soundfile" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu-check-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

failed=0
json_to() {  # json_to FILE COMMAND...: the command's standard output (its JSON) to FILE
    local file=$1
    shift
    "$@" >"$file"
}
step() {  # step NAME COMMAND...: its output to OUT/NAME.log, its exit code to OUT/summary.txt
    local name=$1
    shift
    echo "== $name: $*"
    "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc" | tee -a "$out/summary.txt"
    [ "$rc" -eq 0 ] || failed=1
}

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv 2>&1 || true
    "$python" -c "import torch, numba, numba_cuda; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '| numba', numba.__version__, '| numba-cuda', numba_cuda.__version__)"
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"

if [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then
    step selftest "$python" -m tts.kernels.cuda_checks --selftest
    step pytest "$python" -m pytest -m cuda -q -p no:cacheprovider tests/test_kernels_cuda.py
    step bench json_to "$out/kernels.json" "$python" -m tts.kernels.bench --backends torch --configs default \
        --torch-seconds 0.05 --repeats 1 --skip-startup --json
else
    step selftest "$python" -m tts.kernels.cuda_checks --selftest
    step pytest "$python" -m pytest -m cuda -q -p no:cacheprovider -rs tests/test_kernels_cuda.py
    # Batch 1 for each topology, and many real-time streams at once.
    step bench json_to "$out/kernels.json" "$python" -m tts.kernels.bench --backends torch cuda \
        --configs default medium --cuda-topologies fused split --cuda-batches 100 128 256 --skip-startup --json
fi
echo "results in $out/ ($( [ $failed = 0 ] && echo 'all steps passed' || echo 'a step failed: see summary.txt'))"
exit $failed
