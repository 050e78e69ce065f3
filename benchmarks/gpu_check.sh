#!/usr/bin/env bash
# The GPU measurements of issue 10 in one go. Each step has its own time limit, 9.5 minutes
# at most in all; Triton compiles every kernel for each new tile shape on first use, so the
# first calls of each input are slow (the benchmarks warm up before timing):
#   1. FastBatchNorm's kernels against the eager BatchNorm on CUDA (tests/test_fast_batch_norm.py
#      with FAST_BN_TEST_DEVICE=cuda: tiny inputs and inputs of real size),
#   2. benchmarks/bn_speed.py: native, eager and fused, the shapes,
#   3. benchmarks/resnet_step.py: ResNet-50 training steps, fp32 and bf16 channels-last.
# Everything (JSON, logs, nvidia-smi) goes to OUT_DIR. Then copy OUT_DIR/*.json to
# benchmarks/results/ and docs/figures/, run `python benchmarks/performance_page.py` (the GPU
# tables of docs/performance.md) and commit.
# Needs a CUDA build of torch, triton and pytest (torchvision is used when it imports).
#
#   benchmarks/gpu_check.sh OUT_DIR            (from the repository root)
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: benchmarks/gpu_check.sh OUT_DIR" >&2
    exit 2
fi
out=$1
mkdir -p "$out"
python=${PYTHON:-python}
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET

if ! $python -c "import torch, triton; assert torch.cuda.is_available()" 2>/dev/null; then
    echo "gpu_check: needs a CUDA device, torch with CUDA, and triton" >&2
    exit 2
fi
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
$python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee "$out/versions.txt"

status=0
run() {  # run NAME SECONDS COMMAND...: log to OUT_DIR/NAME.log, remember a failure
    local name=$1 seconds=$2
    shift 2
    echo "== $name"
    timeout "$seconds" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "gpu_check: $name failed (exit $rc)" >&2
        status=1
    fi
}

run test_fast_batch_norm 150 env FAST_BN_TEST_DEVICE=cuda \
    $python -m pytest tests/test_fast_batch_norm.py -q -rs -p no:cacheprovider
run bn_speed 210 $python benchmarks/bn_speed.py --device cuda --out "$out"
run resnet_step 210 $python benchmarks/resnet_step.py --device cuda --out "$out"
exit $status
