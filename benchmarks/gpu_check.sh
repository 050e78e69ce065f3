#!/usr/bin/env bash
# The GPU measurements of issue 10 in one go, each step with its own time limit, under 9 minutes
# in all. Triton compiles every kernel for each new tile shape on first use, so the first
# calls of each input are slow (the benchmarks warm up before timing):
#   1. FastBatchNorm's kernels against the eager BatchNorm on CUDA (tests/test_fast_batch_norm.py
#      with FAST_BN_TEST_DEVICE=cuda: tiny inputs and inputs of real size),
#   2. benchmarks/bn_speed.py: native, eager and fused, the shapes,
#   3. benchmarks/resnet_step.py: ResNet-50 training steps, fp32 and bf16 channels-last, with the
#      backward pass on autograd's thread for the GPU (as usual) and on the calling thread,
#   4. benchmarks/mnist_throughput.py: the MNIST CNN's epoch, plain and as a CUDA graph, when
#      MNIST_DIR names a folder of MNIST-format IDX files (e.g. Fashion-MNIST),
#   5. benchmarks/fast_tiles.py: the tile-shape sweep behind FastBatchNorm's choices (optional:
#      TILES=1).
# Everything (JSON, logs, nvidia-smi) goes to OUT_DIR. Then copy OUT_DIR/*.json to
# benchmarks/results/ and docs/figures/, run `python benchmarks/performance_page.py` (the GPU
# section of docs/performance.md) and commit. Set BENCH_COMMIT to the commit measured when the
# tree on the GPU machine is a copy without this repository's git.
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
run bn_speed 150 $python benchmarks/bn_speed.py --device cuda --out "$out"
run resnet_step 150 $python benchmarks/resnet_step.py --device cuda --out "$out"
run resnet_step_single_thread 150 $python benchmarks/resnet_step.py --device cuda \
    --single-thread-backward --out "$out"
if [ -n "${MNIST_DIR:-}" ]; then
    run mnist_throughput 120 $python benchmarks/mnist_throughput.py --dataset idx \
        --data-dir "$MNIST_DIR" --no-cpu --no-compile --repeats 3 --out "$out"
fi
if [ "${TILES:-0}" = 1 ]; then
    run fast_tiles 120 $python benchmarks/fast_tiles.py --seconds 60 --out "$out"
fi
exit $status
