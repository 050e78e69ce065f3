"""
`FastBatchNorm`'s Triton kernels, checked against the eager `BatchNorm`, and its fallback.

On CPU the kernels run in Triton's interpreter. Triton decides at import whether its own
library functions (those behind `tl.sum`, for instance) are interpreted, so the interpreter has
to be on before `triton` is first imported. When this file runs in a process where it was
(`TRITON_INTERPRET=1 python -m pytest tests/test_fast_batch_norm.py`), the kernel tests run
here; otherwise one test runs this file again in a fresh Python with the interpreter on.
`FAST_BN_TEST_DEVICE=cuda` runs the same comparisons on a GPU (`benchmarks/gpu_check.sh`).

The interpreter is slow, so every input here is tiny; the kernels' tiles are small on CPU
(`_tile_elements`), so that even these inputs span several tiles and several programs.
"""
import copy
import os
import subprocess
import sys

import pytest
import torch

from labml_nn_bn.batch_norm import BatchNorm
from labml_nn_bn import fast_batch_norm
from labml_nn_bn.fast_batch_norm import FastBatchNorm, FastBatchNormFunction

# `cpu` runs the kernels in Triton's interpreter; `cuda` compiles them for the GPU
DEVICE = os.environ.get('FAST_BN_TEST_DEVICE', 'cpu')


def _interpreted_here() -> bool:
    """Whether Triton's own library was set up for the interpreter when it was imported."""
    triton = fast_batch_norm.triton
    if triton is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(getattr(triton.language.standard, '_sum_combine', None), InterpretedFunction)


INTERPRETED_HERE = _interpreted_here()
KERNELS_HERE = (torch.cuda.is_available() and fast_batch_norm.triton is not None
                if DEVICE == 'cuda' else INTERPRETED_HERE)


def _run_this_file(select: str, interpret: bool):
    """Runs the tests of this file matching `select` in a fresh Python, with or without
    Triton's interpreter, and checks that they all ran and passed."""
    env = dict(os.environ)
    env.pop('TRITON_INTERPRET', None)
    if interpret:
        env['TRITON_INTERPRET'] = '1'
    result = subprocess.run([sys.executable, '-m', 'pytest', __file__, '-q', '-rs',
                             '-p', 'no:cacheprovider', '-k', select],
                            capture_output=True, text=True, env=env, timeout=600,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # none was skipped for want of the kernels
    assert ' passed' in result.stdout and 'kernels run in' not in result.stdout, result.stdout[-2000:]

ALL_KERNELS = {'_channel_stats_kernel', '_combine_stats_kernel', '_apply_kernel',
               '_grad_sums_kernel', '_combine_grad_kernel', '_grad_input_kernel'}


@pytest.fixture
def kernels(monkeypatch):
    """Turns the interpreter on (CPU); `kernels()` is then the set of kernels launched so far."""
    if not KERNELS_HERE:
        pytest.skip('the kernels run in test_kernels_in_a_fresh_interpreter')
    if DEVICE == 'cpu':
        monkeypatch.setenv('TRITON_INTERPRET', '1')
    before = dict(fast_batch_norm.launches)
    return lambda: {k for k, n in fast_batch_norm.launches.items() if n > before.get(k, 0)}


def _pair(channels, dtype=torch.float32, **kwargs):
    """An eager `BatchNorm` with random γ, β, running statistics and a `FastBatchNorm` copy."""
    eager = BatchNorm(channels, **kwargs).to(DEVICE)
    if eager.affine:
        with torch.no_grad():
            eager.weight.uniform_(0.5, 1.5)
            if eager.bias is not None:
                eager.bias.normal_()
    fast = FastBatchNorm(channels, **kwargs).to(DEVICE)
    fast.load_state_dict(eager.state_dict())
    return eager, fast


def _input(shape, dtype=torch.float32, channels_last=False, offset=2., scale=3.):
    x = (torch.randn(*shape) * scale + offset).to(DEVICE, dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    return x.requires_grad_()


def _step(module, x, grad):
    y = module(x)
    params = [p for p in (module.weight, module.bias) if p is not None]
    grads = torch.autograd.grad(y, [x] + params, grad)
    return [y] + list(grads)


def _assert_close(actual, expected, dtype=torch.float32):
    tol = {torch.float32: dict(rtol=1e-4, atol=1e-5),
           torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
           torch.float16: dict(rtol=2e-3, atol=2e-3)}[dtype]
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        torch.testing.assert_close(a.float(), e.float(), **tol)


SHAPES = [((7, 5), False),  # [N, C]
          ((4, 3, 9), False),  # [N, C, L]
          ((3, 3, 4, 5), False), ((3, 3, 4, 5), True),  # NCHW and NHWC
          ((2, 3, 2, 3, 4), False), ((2, 3, 2, 3, 4), True)]  # NCDHW and NDHWC


@pytest.mark.parametrize('shape, channels_last', SHAPES)
def test_training_matches_eager(kernels, shape, channels_last):
    eager, fast = _pair(shape[1])
    for _ in range(2):
        x = _input(shape, channels_last=channels_last)
        grad = torch.randn(shape, device=DEVICE)
        expected = _step(eager, x, grad)
        actual = _step(fast, x, grad)
        _assert_close(actual, expected)
        # the output and the input gradient keep the input's memory layout
        assert actual[0].stride() == x.stride() and actual[1].stride() == x.stride()
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        torch.testing.assert_close(getattr(fast, name), getattr(eager, name), rtol=1e-5, atol=1e-6)
    assert kernels() == ALL_KERNELS


@pytest.mark.skipif(fast_batch_norm.triton is None, reason='Triton is not installed')
def test_the_reductions_span_several_tiles_and_programs():
    # So that the interpreter tests above exercise Chan's merge inside a program and across
    # programs (a GPU's tiles are larger: test_kernels_compile_for_a_gpu checks those)
    for x in (torch.randn(3, 3, 4, 5), torch.randn(4, 3, 4, 5).to(memory_format=torch.channels_last)):
        layout = fast_batch_norm._layout(x)
        assert layout.splits > 1 and layout.tiles_per_program > 1


@pytest.mark.skipif(DEVICE != 'cuda', reason='inputs of real size, on a GPU')
@pytest.mark.parametrize('shape, dtype, channels_last', [
    ((32, 64, 56, 56), torch.float32, False), ((32, 64, 56, 56), torch.bfloat16, True),
    ((128, 256, 14, 14), torch.float32, False), ((64, 50, 8, 8), torch.float16, False),
    ((64, 500), torch.float32, False), ((4096, 512), torch.bfloat16, False),
    ((8, 16, 4, 8, 8), torch.float32, True)])
def test_real_sizes_match_eager_on_the_gpu(kernels, shape, dtype, channels_last):
    eager, fast = _pair(shape[1])
    exact = copy.deepcopy(eager).double()
    x = _input(shape, dtype, channels_last)
    grad = torch.randn(x.shape, device=DEVICE).to(dtype)
    actual, expected = _step(fast, x, grad), _step(eager, x, grad)
    if dtype != torch.float32:
        _assert_close(actual, expected, dtype)
    else:
        # $\partial \ell / \partial \gamma$ and $\partial \ell / \partial \beta$ are sums of
        # $10^4$ to $10^6$ terms, added in another order by the kernels; where a channel's sum
        # nearly cancels, the two `float32` results differ by more than a relative $10^{-4}$
        # (seen on an H200). Both are judged against `float64` instead: the kernels' error, as
        # a fraction of the largest value, is at most a few times the eager module's.
        reference = _step(exact, x.detach().double().requires_grad_(), grad.double())
        for a, e, r in zip(actual, expected, reference):
            scale = r.abs().max().item()
            error, eager_error = ((t.double() - r).abs().max().item() / scale for t in (a, e))
            assert error <= 4 * eager_error + 1e-6, (error, eager_error)
    torch.testing.assert_close(fast.running_var, eager.running_var, rtol=1e-4, atol=1e-5)
    assert kernels() == ALL_KERNELS


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('channels_last', [False, True])
def test_half_precision_matches_eager(kernels, dtype, channels_last):
    eager, fast = _pair(4)
    x = _input((3, 4, 3, 5), dtype, channels_last)
    grad = torch.randn(x.shape, device=DEVICE).to(dtype)
    _assert_close(_step(fast, x, grad), _step(eager, x, grad), dtype)
    torch.testing.assert_close(fast.running_var, eager.running_var, rtol=1e-5, atol=1e-6)
    assert kernels() == ALL_KERNELS


@pytest.mark.parametrize('options', [dict(affine=False), dict(bias=False), dict(momentum=None),
                                     dict(track_running_stats=False)])
def test_options_match_eager(kernels, options):
    eager, fast = _pair(3, **options)
    for _ in range(3):
        x = _input((5, 3, 4))
        grad = torch.randn(x.shape, device=DEVICE)
        if eager.affine:
            _assert_close(_step(fast, x, grad), _step(eager, x, grad))
        else:
            _assert_close([fast(x)], [eager(x)])
    assert fast.state_dict().keys() == eager.state_dict().keys()
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[name], value, rtol=1e-5, atol=1e-6)
    assert '_channel_stats_kernel' in kernels()


@pytest.mark.parametrize('channels_last', [False, True])
def test_evaluation_matches_eager(kernels, channels_last):
    eager, fast = _pair(3)
    with torch.no_grad():
        eager.running_mean.normal_()
        eager.running_var.uniform_(0.5, 2.)
    fast.load_state_dict(eager.state_dict())
    eager.eval(), fast.eval()
    x = _input((4, 3, 3, 5), channels_last=channels_last)
    with torch.no_grad():
        y = fast(x)
        _assert_close([y], [eager(x)])
    assert y.stride() == x.stride()
    assert kernels() == {'_apply_kernel'}


@pytest.mark.parametrize('channels_last', [False, True])
def test_epsilon_counts_where_the_variance_is_near_it(kernels, channels_last):
    # The tests above have ε = 1e-5 against variances near one (or nine), where a kernel
    # that left ε out of 1/√(σ² + ε) would stay within their tolerance. Here ε = 0.5
    # against running variances of 0.01 to 0.5 (evaluation, the apply kernel) and batch
    # variances of about 0.01 (training, the combining kernel): leaving ε out would scale
    # the output by up to seven times.
    eager, fast = _pair(3, eps=0.5)
    with torch.no_grad():
        eager.running_mean.normal_()
        eager.running_var.copy_(torch.tensor([0.01, 0.1, 0.5]))
    fast.load_state_dict(eager.state_dict())
    shape = (4, 3, 3, 5)
    x = _input(shape, channels_last=channels_last, scale=0.1)
    grad = torch.randn(shape, device=DEVICE)
    _assert_close(_step(fast, x, grad), _step(eager, x, grad))
    torch.testing.assert_close(fast.running_var, eager.running_var, rtol=1e-5, atol=1e-6)
    eager.eval(), fast.eval()
    with torch.no_grad():
        _assert_close([fast(x)], [eager(x)])
    assert {'_combine_stats_kernel', '_apply_kernel'} <= kernels()


def test_the_running_averages_are_updated_by_the_kernel(kernels, monkeypatch):
    # With float32 buffers and a fixed momentum the combining kernel updates them (and counts
    # the batch); with momentum=None or half-precision buffers the module's own update does
    calls = []
    original = BatchNorm._update_running_stats

    def spy(self, *args):
        calls.append(self.momentum)
        return original(self, *args)
    monkeypatch.setattr(BatchNorm, '_update_running_stats', spy)
    for options, by_kernel in ((dict(), True), (dict(momentum=0.5), True),
                               (dict(momentum=None), False)):
        eager, fast = _pair(3, **options)
        for _ in range(3):
            x = _input((6, 3, 4))
            fast(x), eager(x)
        for name in ('running_mean', 'running_var', 'num_batches_tracked'):
            torch.testing.assert_close(getattr(fast, name), getattr(eager, name),
                                       rtol=1e-5, atol=1e-6)
        assert fast.num_batches_tracked.item() == 3
        # the eager module's three updates, and the fast one's where the kernel does not
        assert len(calls) == (3 if by_kernel else 6), (options, calls)
        calls.clear()
    eager, fast = _pair(3)
    fast.running_mean.data = fast.running_mean.data.half()
    fast.running_var.data = fast.running_var.data.half()
    x = _input((6, 3, 4))
    fast(x)
    assert calls and fast.running_mean.dtype == torch.float16


@pytest.mark.parametrize('options', [dict(affine=False), dict(bias=False)])
def test_evaluation_without_weight_or_bias_and_with_half_buffers(kernels, options):
    eager, fast = _pair(3, **options)
    with torch.no_grad():
        eager.running_mean.normal_()
        eager.running_var.uniform_(0.5, 2.)
    fast.load_state_dict(eager.state_dict())
    eager.eval(), fast.eval()
    x = _input((4, 3, 5)).detach()
    half = copy.deepcopy(fast).half()
    with torch.no_grad():
        _assert_close([fast(x)], [eager(x)])
        _assert_close([half(x.half())], [eager(x).half()], torch.float16)
    assert kernels() == {'_apply_kernel'}


def test_layouts_are_kept_per_shape_and_strides():
    if fast_batch_norm.triton is None:
        pytest.skip('Triton is not installed')
    x = torch.randn(4, 8, 3, 5)
    first = fast_batch_norm._layout(x)
    assert fast_batch_norm._layout(x.clone()) is first
    channels_last = fast_batch_norm._layout(x.to(memory_format=torch.channels_last))
    assert channels_last is not first and channels_last.strides == (0, 1, 8)
    transposed = fast_batch_norm._layout(x.transpose(2, 3))
    assert transposed.copy and not first.copy and not channels_last.copy


def test_evaluation_with_gradients_uses_the_eager_path(kernels):
    # The evaluation kernel has no backward pass, so gradients through an evaluation-mode
    # layer (fine-tuning with frozen statistics) come from the eager module
    eager, fast = _pair(3)
    eager.eval(), fast.eval()
    x = _input((4, 3, 5))
    grad = torch.randn(x.shape, device=DEVICE)
    _assert_close(_step(fast, x, grad), _step(eager, x, grad))
    assert kernels() == set()


@pytest.mark.parametrize('channels_last', [False, True])
def test_statistics_are_stable_at_a_mean_of_a_million(kernels, channels_last):
    # The same bound as the eager module: relative error ≤ 1e-6 against float64 for N(1e6, 1)
    for offset in (0., 1e6):
        x = _input((16, 4, 4, 4), offset=offset, scale=1., channels_last=channels_last).detach()
        y = FastBatchNorm(4, affine=False).to(DEVICE)(x)
        x64 = x.double()
        centred = x64 - x64.mean((0, 2, 3), keepdim=True)
        ref = centred / torch.sqrt(centred.pow(2).mean((0, 2, 3), keepdim=True) + 1e-5)
        assert ((y.double() - ref).norm() / ref.norm()).item() <= 1e-6
    assert '_channel_stats_kernel' in kernels()


@pytest.mark.parametrize('train', [True, False])
def test_torch_func_and_forward_ad_use_the_eager_path(kernels, train):
    # The kernels have no rule for torch.func's transforms or for forward-mode AD; under
    # them the layer is the eager module, which has (tests/test_torch_func.py)
    eager, fast = _pair(3, track_running_stats=not train)
    with torch.no_grad():
        eager.bias.normal_()
    fast.load_state_dict(eager.state_dict())
    eager.train(train), fast.train(train)
    x = _input((4, 3, 5)).detach()
    xs = torch.stack([x, 2 * x + 1])
    params = dict(eager.named_parameters())

    def loss(module):
        return lambda p, x: torch.func.functional_call(module, p, (x,)).sin().sum()
    for transform in (lambda m: torch.func.vmap(m)(xs),
                      lambda m: torch.func.grad(loss(m))(params, x),
                      lambda m: torch.func.jvp(m, (x,), (xs[1],)),
                      lambda m: torch.func.vmap(torch.func.grad(loss(m)), (None, 0))(params, xs)):
        torch.testing.assert_close(transform(fast), transform(eager), rtol=1e-5, atol=1e-6)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x, xs[1])
        y_fast, y_eager = (torch.autograd.forward_ad.unpack_dual(m(dual)) for m in (fast, eager))
        torch.testing.assert_close(y_fast, y_eager, rtol=1e-5, atol=1e-6)
    assert kernels() == set()
    # and outside them, the kernels
    with torch.no_grad():
        fast(x)
    assert kernels()



@pytest.mark.parametrize('train, channels_last', [(True, False), (True, True),
                                                  (False, False)])
def test_a_batch_of_gradients_through_the_kernels_matches_eager(kernels, train,
                                                                channels_last):
    # `torch.autograd.grad(..., is_grads_batched=True)` hands the backward pass a batch
    # of gradients that no kernel can read; it gets the eager module's gradients.
    # In evaluation without running statistics the kernels normalise with the batch too.
    eager, fast = _pair(3, track_running_stats=train)
    eager.train(train), fast.train(train)
    shape = (4, 3, 2, 3)
    x = _input(shape, channels_last=channels_last)
    grads = torch.randn(5, *shape, device=DEVICE)
    results = []
    for module in (eager, fast):
        y = module(x)
        results.append(torch.autograd.grad(y, [x, module.weight, module.bias], grads,
                                           is_grads_batched=True))
    _assert_close(results[1], results[0])
    assert '_channel_stats_kernel' in kernels()

def test_double_backward_is_refused_clearly(kernels):
    fast = FastBatchNorm(3).to(DEVICE)
    x = _input((4, 3, 5))
    y = fast(x)
    assert type(y.grad_fn).__name__ == 'FastBatchNormFunctionBackward'
    with pytest.raises(RuntimeError, match='does not support double backward'):
        torch.autograd.grad((y * y).sum(), x, create_graph=True)


def test_float64_and_empty_batches_use_the_eager_path(kernels):
    eager, fast = _pair(3)
    x = _input((4, 3, 5), torch.float64)
    torch.testing.assert_close(fast(x), eager(x))
    empty = torch.randn(0, 3, 5, device=DEVICE)
    assert fast(empty).shape == empty.shape
    with pytest.raises(ValueError, match='more than 1 value per channel'):
        fast(torch.randn(1, 3, device=DEVICE))
    assert kernels() == set()


def test_state_dict_moves_between_fast_eager_and_torch():
    torch_bn = torch.nn.BatchNorm2d(5)
    fast = FastBatchNorm(5, momentum=0.2)
    fast.load_state_dict(torch_bn.state_dict())
    BatchNorm(5).load_state_dict(fast.state_dict())
    assert isinstance(fast, BatchNorm) and fast.momentum == 0.2
    assert {n for n, _ in fast.named_parameters()} == {'weight', 'bias'}


@pytest.mark.skipif(DEVICE != 'cpu', reason='the CPU fallback')
def test_cpu_without_the_interpreter_is_the_eager_module(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    before = sum(fast_batch_norm.launches.values())
    eager, fast = _pair(3)
    x = _input((4, 3, 2, 2))
    grad = torch.randn(x.shape)
    torch.testing.assert_close(_step(fast, x, grad), _step(eager, x, grad), rtol=0, atol=0)
    assert sum(fast_batch_norm.launches.values()) == before


@pytest.mark.skipif(DEVICE != 'cpu', reason='the CPU fallback')
def test_importing_needs_no_triton():
    # With `triton` unimportable, the module imports and `FastBatchNorm` is `BatchNorm`
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch\n"
            "from labml_nn_bn.fast_batch_norm import FastBatchNorm, triton\n"
            "assert triton is None\n"
            "print(FastBatchNorm(3)(torch.randn(4, 3)).shape)\n")
    env = dict(os.environ, TRITON_INTERPRET='1')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'torch.Size([4, 3])' in result.stdout


@pytest.mark.skipif(KERNELS_HERE or DEVICE != 'cpu' or fast_batch_norm.triton is None,
                    reason='the kernel tests run in this process')
def test_kernels_in_a_fresh_interpreter():
    _run_this_file('not fresh_interpreter and not for_a_gpu', interpret=True)


# ## Compiling for a GPU, without one
#
# Triton compiles to a GPU binary on any machine; only running it needs the GPU. Compiling every
# kernel for an H100/H200 (`sm_90`) with the tile shapes a GPU would use catches what the
# interpreter does not check (types of loop-carried values, constexpr branches, layouts).
GPU_PROGRAMS = 4 * 132


def _cuda_signature(kernel, dtype: str, constants: dict):
    names = kernel.__code__.co_varnames[:kernel.__code__.co_argcount]
    signature = {}
    constexpr = [name for name in names if name.startswith(('BLOCK_', 'HAS_'))]
    for name in names:
        if name in constexpr:
            signature[name] = 'constexpr'
        elif name in ('x_ptr', 'y_ptr', 'g_ptr', 'dx_ptr'):
            signature[name] = '*' + dtype
        elif name == 'count_ptr':
            signature[name] = '*i64'
        elif name.endswith('_ptr'):
            signature[name] = '*fp32'
        elif name in ('eps', 'm', 'momentum', 'unbias'):
            signature[name] = 'fp32'
        else:
            signature[name] = 'i32'
    return signature, {name: constants[name] for name in constexpr}


@pytest.mark.skipif(fast_batch_norm.triton is None, reason='Triton is not installed')
@pytest.mark.parametrize('shape, dtype, channels_last', [((256, 64, 56, 56), 'fp32', False),
                                                         ((256, 64, 56, 56), 'bf16', True)])
def test_kernels_compile_for_a_gpu(shape, dtype, channels_last):
    if INTERPRETED_HERE:
        # Triton's library is set up for the interpreter in this process: compile in another
        if shape == (256, 64, 56, 56) and not channels_last:
            _run_this_file('compile_for_a_gpu', interpret=False)
        return
    triton = fast_batch_norm.triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    x = torch.empty(shape, device='meta')
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    layout = fast_batch_norm._Layout(x, programs=GPU_PROGRAMS, device=torch.device('cuda'))
    # The grid keeps a GPU busy: several programs per multiprocessor, several tiles per program
    assert layout.c_blocks * layout.splits >= 2 * 132 and layout.tiles_per_program > 1
    streaming = dict(BLOCK_C=layout.block_c, BLOCK_S=layout.block_s, HAS_RES=True,
                     FROM_VAR=False, HAS_WEIGHT=True, HAS_BIAS=True)
    combining = dict(BLOCK_C=layout.combine_c, BLOCK_K=layout.block_k, HAS_WEIGHT=True,
                     HAS_RUNNING=True)
    for kernel in (fast_batch_norm._channel_stats_kernel, fast_batch_norm._combine_stats_kernel,
                   fast_batch_norm._apply_kernel, fast_batch_norm._grad_sums_kernel,
                   fast_batch_norm._combine_grad_kernel, fast_batch_norm._grad_input_kernel):
        constants = combining if 'combine' in kernel.__name__ else streaming
        signature, constexprs = _cuda_signature(kernel, dtype, constants)
        source = ASTSource(fn=triton.runtime.jit.JITFunction(kernel), signature=signature, constexprs=constexprs)
        compiled = triton.compile(source, target=GPUTarget('cuda', 90, 32),
                                  options={'num_warps': layout.warps})
        assert compiled.asm['cubin'], kernel.__name__


def test_the_package_imports_triton_only_when_fast_batch_norm_is_asked_for():
    code = ('import sys, labml_nn_bn; assert "triton" not in sys.modules; '
            'from labml_nn_bn import FastBatchNorm, BatchNorm; '
            'assert issubclass(FastBatchNorm, BatchNorm); print("ok")')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=300, env={k: v for k, v in os.environ.items()
                                              if k != 'TRITON_INTERPRET'})
    assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr
