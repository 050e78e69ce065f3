"""
Tests of `labml_nn_bn.batch_norm.BatchNorm` against `torch.nn.BatchNorm*d`, against the
page's reference function (Algorithm 1, the forward oracle) and against the paper's
three-path back-propagation equations (the backward oracle).
"""
import ast
import copy
import doctest
import gc
import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from conftest import imported_packages
from labml_nn_bn import BatchNorm, BatchNormFunction, batch_statistics
from labml_nn_bn import batch_norm as batch_norm_module
from labml_nn_bn.batch_norm import batch_norm_reference

C = 5
# One input shape per layout, with the torch class that accepts it
LAYOUTS = {
    '2d-[B,C]': ((16, C), torch.nn.BatchNorm1d),
    '3d-[B,C,L]': ((8, C, 7), torch.nn.BatchNorm1d),
    '4d-[B,C,H,W]': ((4, C, 6, 5), torch.nn.BatchNorm2d),
    '5d-[B,C,D,H,W]': ((2, C, 3, 4, 4), torch.nn.BatchNorm3d),
}


def make_pair(layout, **flags):
    """Our module and torch's, with the same random γ, β and running statistics."""
    shape, torch_cls = LAYOUTS[layout]
    ours = BatchNorm(C, **flags)
    ref = torch_cls(C, **flags)
    with torch.no_grad():
        if ref.affine:
            ref.weight.uniform_(0.5, 1.5)
            if ref.bias is not None:
                ref.bias.uniform_(-0.5, 0.5)
        if ref.track_running_stats:
            ref.running_mean.uniform_(-1, 1)
            ref.running_var.uniform_(0.5, 2)
    ours.load_state_dict(ref.state_dict())
    return shape, ours, ref


def assert_close(a, b, what, **kw):
    kw.setdefault('rtol', 1e-4)
    kw.setdefault('atol', 1e-5)
    torch.testing.assert_close(a, b, msg=lambda m: f'{what}: {m}', **kw)


@pytest.mark.parametrize('layout', list(LAYOUTS))
@pytest.mark.parametrize('affine,bias', [(True, True), (True, False), (False, True)],
                         ids=['affine', 'scale-only', 'no-affine'])
@pytest.mark.parametrize('track_running_stats', [True, False])
@pytest.mark.parametrize('momentum', [0.1, None])
def test_matches_torch_over_training_steps(layout, affine, bias, track_running_stats, momentum):
    shape, ours, ref = make_pair(layout, affine=affine, track_running_stats=track_running_stats,
                                 momentum=momentum, bias=bias)
    params = [(p, q) for p, q in zip(ours.parameters(), ref.parameters())]
    assert len(params) == (1 + bias if affine else 0)
    for step in range(4):
        # A shifted, scaled input, different each step, so the running averages move
        x = (torch.randn(shape) * (1 + step) + step).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        ours.train(), ref.train()
        y, y_ref = ours(x), ref(x_ref)
        assert_close(y, y_ref, f'train output, step {step}')
        g = torch.randn(shape)
        y.backward(g)
        y_ref.backward(g)
        assert_close(x.grad, x_ref.grad, f'input grad, step {step}')
        for (p, q), name in zip(params, ['weight', 'bias'][:len(params)]):
            assert_close(p.grad, q.grad, f'{name} grad, step {step}')
        for name, buf in ref.named_buffers():
            assert_close(dict(ours.named_buffers())[name], buf, f'buffer {name}, step {step}')
        # A gradient step on γ, β, as in training
        with torch.no_grad():
            for p, q in params:
                p -= 0.1 * p.grad
                q -= 0.1 * q.grad
                p.grad = q.grad = None
        ours.eval(), ref.eval()
        x_eval = torch.randn(shape) * 2 + 1
        assert_close(ours(x_eval), ref(x_eval), f'eval output, step {step}')


@pytest.mark.parametrize('layout', list(LAYOUTS))
def test_the_gpu_path_on_the_cpu(monkeypatch, layout):
    # Where the GPU's path differs (the norm for the sum of squares, the products formed over
    # d in backward), it is run here on the CPU: the same results as torch's, the same
    # stability far from zero, and a lower peak of memory than the CPU's path
    monkeypatch.setattr(batch_norm_module, '_on_gpu', lambda t: True)
    calls = []
    norm = torch.linalg.vector_norm
    monkeypatch.setattr(torch.linalg, 'vector_norm', lambda *a, **k: calls.append(1) or norm(*a, **k))
    shape, ours, ref = make_pair(layout)
    for step in range(2):
        x = (torch.randn(shape) * (1 + step) + step).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        y, y_ref = ours(x), ref(x_ref)
        g = torch.randn(shape)
        y.backward(g)
        y_ref.backward(g)
        assert_close(y, y_ref, 'output')
        assert_close(x.grad, x_ref.grad, 'input grad')
        assert_close(ours.weight.grad, ref.weight.grad, 'weight grad')
        assert_close(ours.bias.grad, ref.bias.grad, 'bias grad')
        assert_close(ours.running_var, ref.running_var, 'running var')
    assert calls
    x6 = torch.randn(64, 16, 8, 8) + 1e6
    assert _relative_error(x6, BatchNorm(16, affine=False)(x6)) <= 1e-5


@pytest.mark.parametrize('gpu_path', [False, True])
@pytest.mark.parametrize('shape', [(32, 16, 32, 32), (4096, 128)])
def test_a_training_step_allocates_nothing_as_large_as_the_input_but_its_outputs(
        monkeypatch, gpu_path, shape):
    # Two activation-sized allocations, y and the input gradient (each first d, then written
    # over): the squares of the forward pass (on the CPU's path; the GPU's takes a norm) and
    # the products with the gradient (on both) are formed over d, which is rebuilt. Without
    # that, the CPU's path made four, and held three at its peak.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'benchmarks'))
    from bn_speed import cpu_memory_events, peak_memory
    monkeypatch.setattr(batch_norm_module, '_on_gpu', lambda t: gpu_path)
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn(x.shape)
    bn = BatchNorm(shape[1])

    def step():
        torch.autograd.grad(bn(x), [x, bn.weight, bn.bias], g)
    activation = 4 * x.numel()
    large = [e['Bytes'] for e in cpu_memory_events(step) if e['Bytes'] >= activation]
    assert large == [activation, activation]
    assert 2 * activation <= peak_memory(step, torch.device('cpu')) \
        <= 2 * activation + 64 * shape[1] * 4


def test_training_uses_the_papers_backward():
    bn = BatchNorm(C)
    y = bn(torch.randn(8, C, requires_grad=True))
    assert type(y.grad_fn).__name__ == 'BatchNormFunctionBackward'


def test_no_call_to_torch_batch_norm_in_the_module():
    source = open(batch_norm_module.__file__).read()
    tree = ast.parse(source)
    names = {ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for forbidden in ['batch_norm', 'BatchNorm1d', 'BatchNorm2d', 'BatchNorm3d', 'native_batch_norm',
                      'functional']:
        assert not [n for n in names if n.endswith('.' + forbidden)], forbidden


def test_imports_only_torch_and_labml_helpers():
    # and the standard library
    packages = imported_packages(batch_norm_module.__file__) - set(sys.stdlib_module_names)
    assert packages == {'torch', 'labml_helpers'}


def test_is_a_labml_helpers_module():
    from labml_helpers.module import Module
    assert isinstance(BatchNorm(3), Module)


def test_copied_file_works_without_labml_helpers(tmp_path):
    # The file on its own, in a process where labml_helpers cannot be imported
    copied = tmp_path / 'my_bn.py'
    copied.write_text(open(batch_norm_module.__file__).read())
    code = (
        "import sys; sys.modules['labml_helpers'] = None\n"
        "import torch, my_bn\n"
        "assert my_bn.Module is torch.nn.Module\n"
        "bn = my_bn.BatchNorm(3)\n"
        "y = bn(torch.randn(4, 3, 2, 2)); y.sum().backward()\n"
        "print('ok', tuple(y.shape))\n"
    )
    out = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'ok (4, 3, 2, 2)'


@pytest.mark.parametrize('direction', ['ours->torch', 'torch->ours'])
def test_state_dict_round_trip(direction):
    shape, ours, ref = make_pair('4d-[B,C,H,W]')
    # Give the running statistics and counter some history first
    for _ in range(3):
        ref(torch.randn(shape))
    if direction == 'ours->torch':
        src, dst = ref, ours
        dst.load_state_dict(src.state_dict())
        src, dst = ours, torch.nn.BatchNorm2d(C)
    else:
        src, dst = ref, BatchNorm(C)
    dst.load_state_dict(src.state_dict(), strict=True)
    assert set(dst.state_dict()) == set(src.state_dict())
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    src.eval(), dst.eval()
    x = torch.randn(shape)
    assert_close(dst(x), src(x), 'eval output after loading')


def _cnn(bn_cls):
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, bias=False), bn_cls(4), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 8, bias=False),
        torch.nn.BatchNorm1d(8) if bn_cls is torch.nn.BatchNorm2d else BatchNorm(8),
        torch.nn.ReLU(), torch.nn.Linear(8, 3))


def test_swapping_into_a_model_gives_the_same_training():
    torch_model = _cnn(torch.nn.BatchNorm2d)
    our_model = _cnn(lambda c: BatchNorm(c))
    our_model.load_state_dict(torch_model.state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (torch_model, our_model)]
    for step in range(5):
        x, t = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
        losses = []
        for model, opt in zip((torch_model, our_model), opts):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), t)
            loss.backward()
            opt.step()
            losses.append(loss)
        assert_close(losses[1], losses[0], f'loss at step {step}')
    for (k, v), (k2, v2) in zip(torch_model.state_dict().items(), our_model.state_dict().items()):
        assert k == k2
        assert_close(v2, v, f'state {k} after training', rtol=1e-4, atol=1e-5)
    torch_model.eval(), our_model.eval()
    x = torch.randn(16, 1, 8, 8)
    assert_close(our_model(x), torch_model(x), 'eval logits')


@pytest.mark.parametrize('shape', [(6, 3), (4, 3, 5), (3, 2, 3, 2)])
@pytest.mark.parametrize('affine', [True, False])
def test_gradcheck_and_gradgradcheck(shape, affine):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True) * 3 + 1
    x = x.detach().requires_grad_()
    w = torch.rand(shape[1], dtype=torch.float64) + 0.5 if affine else None
    b = torch.randn(shape[1], dtype=torch.float64) if affine else None
    inputs = [x] + ([w.requires_grad_(), b.requires_grad_()] if affine else [])

    def f(x, w=None, b=None):
        return BatchNormFunction.apply(x, w, b, 1e-5)[0]

    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)


def test_module_gradcheck_in_training_mode():
    bn = BatchNorm(3, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    # Every evaluation of the module also updates running stats; that must not disturb gradients
    assert gradcheck(lambda x, w, b: torch.func.functional_call(bn, {'weight': w, 'bias': b}, (x,)),
                     (x, bn.weight, bn.bias))


def _relative_error(x, y):
    dims = [0] + list(range(2, x.dim()))
    x64 = x.double()
    centred = x64 - x64.mean(dims, keepdim=True)
    ref = centred / torch.sqrt(centred.pow(2).mean(dims, keepdim=True) + 1e-5)
    return ((y.double() - ref).norm() / ref.norm()).item()


def test_statistics_are_numerically_stable_for_large_means():
    x = torch.randn(64, 16, 8, 8) + 1e4
    y = BatchNorm(16, affine=False)(x)
    assert _relative_error(x, y) <= 1e-3
    # Our two-part mean does much better than the bound (and than torch's own BatchNorm2d)
    assert _relative_error(x, y) <= 1e-5
    x6 = torch.randn(64, 16, 8, 8) + 1e6
    assert _relative_error(x6, BatchNorm(16, affine=False)(x6)) <= 1e-5


def test_the_variance_identity_fails_as_the_module_says():
    # The numerics aside of the module: E[x²] − E[x]² is unusable at large means
    def naive(x):
        dims = [0, 2, 3]
        mean = x.mean(dims, keepdim=True)
        var = (x * x).mean(dims, keepdim=True) - mean * mean
        return (x - mean) * torch.rsqrt(var + 1e-5)

    x3 = torch.randn(64, 16, 8, 8) + 1e3
    assert _relative_error(x3, naive(x3)) > 1e-2
    x4 = torch.randn(64, 16, 8, 8) + 1e4
    assert torch.isnan(naive(x4)).any()


def test_running_var_is_unbiased_and_batch_var_is_biased():
    bn = BatchNorm(2, momentum=1.0, affine=False)
    x = torch.randn(10, 2, 3) * 4 + 2
    y = bn(x)
    m = 10 * 3
    assert_close(bn.running_var, x.var(dim=(0, 2), unbiased=True), 'running_var')
    assert_close(bn.running_mean, x.mean(dim=(0, 2)), 'running_mean')
    # The output is normalised with the biased variance: its biased variance is 1 - eps-ish
    assert_close(y.var(dim=(0, 2), unbiased=False), torch.ones(2), 'normalised var', rtol=1e-3, atol=1e-3)
    assert m / (m - 1) != 1


def test_momentum_none_is_the_cumulative_average():
    bn = BatchNorm(3, momentum=None)
    batches = [torch.randn(8, 3) * (i + 1) + i for i in range(4)]
    for x in batches:
        bn(x)
    assert int(bn.num_batches_tracked) == 4
    assert_close(bn.running_mean, torch.stack([x.mean(0) for x in batches]).mean(0), 'running_mean')
    assert_close(bn.running_var, torch.stack([x.var(0) for x in batches]).mean(0), 'running_var')


def test_without_running_stats_eval_uses_batch_statistics():
    bn = BatchNorm(3, track_running_stats=False, affine=False).eval()
    assert bn.running_mean is None and 'running_mean' not in bn.state_dict()
    x = torch.randn(8, 3) * 5 + 3
    assert_close(bn(x), (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5), 'eval output')


def test_affine_false_has_no_parameters():
    bn = BatchNorm(4, affine=False)
    assert list(bn.parameters()) == []
    assert bn.weight is None and bn.bias is None


def test_reset_running_stats_and_parameters():
    bn = BatchNorm(3)
    for _ in range(2):
        bn(torch.randn(8, 3) + 5).sum().backward()
    with torch.no_grad():
        bn.weight.fill_(2.)
    bn.reset_running_stats()
    assert torch.equal(bn.running_mean, torch.zeros(3)) and torch.equal(bn.running_var, torch.ones(3))
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(bn.weight, torch.full((3,), 2.))
    bn.reset_parameters()
    assert torch.equal(bn.weight, torch.ones(3)) and torch.equal(bn.bias, torch.zeros(3))


def test_repr_matches_torch():
    assert repr(BatchNorm(20)) == \
        'BatchNorm(20, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)'
    for kwargs in [dict(momentum=None, affine=False), dict(bias=False), dict(track_running_stats=False)]:
        assert BatchNorm(7, **kwargs).extra_repr() == torch.nn.BatchNorm2d(7, **kwargs).extra_repr()
    assert BatchNorm(7).num_features == 7


def test_running_statistics_hold_no_autograd_history():
    bn = BatchNorm(4)
    opt = torch.optim.SGD(bn.parameters(), lr=0.01)
    x = torch.randn(8, 4, 3, requires_grad=True)
    for _ in range(3):
        opt.zero_grad()
        (bn(x) ** 2).sum().backward()
        opt.step()
    for name, buf in bn.named_buffers():
        assert buf.grad_fn is None and not buf.requires_grad, name
    clone = copy.deepcopy(bn)
    assert torch.equal(clone.running_var, bn.running_var)


def test_memory_does_not_grow_over_many_steps():
    bn = BatchNorm(4)
    x = torch.randn(8, 4, requires_grad=True)

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, torch.nn.Parameter))

    for _ in range(5):
        bn(x).sum().backward()
    before = live_tensors()
    for _ in range(200):
        bn(x).sum().backward()
    assert live_tensors() <= before + 2


@pytest.mark.parametrize('memory_format,shape,ref_cls', [
    (torch.channels_last, (4, C, 6, 5), torch.nn.BatchNorm2d),
    (torch.channels_last_3d, (2, C, 3, 4, 4), torch.nn.BatchNorm3d),
])
@pytest.mark.parametrize('training', [True, False])
def test_channels_last_input_keeps_its_memory_format(memory_format, shape, ref_cls, training):
    ours, ref = BatchNorm(C), ref_cls(C)
    ours.train(training), ref.train(training)
    x = torch.randn(shape).contiguous(memory_format=memory_format).requires_grad_()
    y = ours(x)
    assert y.is_contiguous(memory_format=memory_format)
    assert_close(y, ref(x), 'channels_last output')
    if training:
        g = torch.randn(shape)
        gx, = torch.autograd.grad(y, x, g)
        gx_ref, = torch.autograd.grad(ref(x), x, g)
        assert_close(gx, gx_ref, 'channels_last input grad')


def test_non_contiguous_input():
    base = torch.randn(6, 4, C, 5)
    x = base.transpose(1, 2)[:, :, ::2]  # [6, C, 2, 5], strided
    assert not x.is_contiguous()
    ours, ref = BatchNorm(C), torch.nn.BatchNorm2d(C)
    assert_close(ours(x), ref(x), 'strided output')
    assert_close(ours.running_var, ref.running_var, 'strided running_var')


# Inference reads the input as rows of k examples where the channels are innermost in memory
# (`_as_rows`), and uses it as it is otherwise. One input per path, with the k it gets (None:
# not read as rows).
INFERENCE_INPUTS = {
    '2d-rows-of-8': (lambda dt: torch.randn(4096, 16, dtype=dt), 8),
    '2d-wide': (lambda dt: torch.randn(64, 1500, dtype=dt), 1),
    '2d-transposed': (lambda dt: torch.randn(16, 64, dtype=dt).t(), None),
    '3d-channels-innermost': (lambda dt: torch.randn(64, 40, 16, dtype=dt).transpose(1, 2), 4),
    '4d-channels-last': (lambda dt: torch.randn(8, 16, 16, 16, dtype=dt).contiguous(
        memory_format=torch.channels_last), 4),
    '4d-channels-last-sliced': (lambda dt: torch.randn(8, 16, 16, 32, dtype=dt).contiguous(
        memory_format=torch.channels_last)[..., ::2], None),
    '4d-nchw': (lambda dt: torch.randn(8, 16, 6, 5, dtype=dt), None),
    '5d-channels-last': (lambda dt: torch.randn(4, 16, 4, 8, 8, dtype=dt).contiguous(
        memory_format=torch.channels_last_3d), 2),
    '4d-empty-channels-last': (lambda dt: torch.randn(0, 16, 4, 4, dtype=dt).contiguous(
        memory_format=torch.channels_last), 1),
}


@pytest.mark.parametrize('name', list(INFERENCE_INPUTS))
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_inference_matches_torch_on_every_memory_layout(name, dtype):
    make, k = INFERENCE_INPUTS[name]
    torch.manual_seed(0)
    x = make(dtype)
    rows, used_k = batch_norm_module._as_rows(x)
    assert (rows is None and k is None) or used_k == k, (used_k, k)
    channels = x.shape[1]
    ref = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
           5: torch.nn.BatchNorm3d}[x.dim()](channels).to(dtype)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5), ref.bias.uniform_(-0.5, 0.5)
        ref.running_mean.uniform_(-1, 1), ref.running_var.uniform_(0.5, 2)
    ours = BatchNorm(channels).to(dtype)
    ours.load_state_dict(ref.state_dict())
    ours.eval(), ref.eval()
    y, y_ref = ours(x), ref(x)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    assert_close(y, y_ref, name, **tol)
    # The same dtype, shape and memory format as torch's output (torch gives a contiguous
    # output for other strided inputs, where ours keeps the input's order of dimensions)
    assert y.dtype == y_ref.dtype and y.shape == y_ref.shape
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    if x.dim() in formats:
        assert y.is_contiguous(memory_format=formats[x.dim()]) == \
            y_ref.is_contiguous(memory_format=formats[x.dim()])
    # A gradient through an evaluation-mode layer, as when fine-tuning with frozen statistics
    xg = x.detach().requires_grad_()
    g = torch.randn_like(y)
    grads = torch.autograd.grad(ours(xg), [xg, ours.weight, ours.bias], g)
    grads_ref = torch.autograd.grad(ref(xg), [xg, ref.weight, ref.bias], g)
    # (sums over thousands of values: float32 rounding reaches 1e-5 of them)
    grad_tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else tol
    for what, a, b in zip(['x', 'weight', 'bias'], grads, grads_ref):
        assert_close(a, b, f'{name} eval grad {what}', **grad_tol)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape', [(8, C, 6, 5), (64, 16, 4, 4)])
def test_eval_memory_formats_differ_by_at_most_one_rounding_of_the_product(dtype, shape):
    # The page's choice: on the CPU, channels-last (the channel innermost) is normalised
    # with one fused multiply-add, y = fl(a x + c), and channels-first with a
    # multiplication and an addition, y = fl(fl(a x) + c); making both the same costs one
    # of them 1.5 to 3 times its time. So the two formats may differ, by one rounding of
    # a x at most, and each is within that of the exact result.
    torch.manual_seed(0)
    bn = BatchNorm(shape[1], dtype=dtype)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
    bn.eval()
    x = torch.randn(shape, dtype=dtype) * 3
    y_first = bn(x)
    y_last = bn(x.contiguous(memory_format=torch.channels_last))
    # a and c as the module computes them
    var = bn.running_var + batch_norm_module._epsilon(bn.eps, dtype)
    a = (var.rsqrt() * bn.weight).detach().view(1, -1, 1, 1)
    c = torch.addcmul(bn.bias, bn.running_mean, a.flatten(), value=-1).detach().view(1, -1, 1, 1)
    assert torch.equal(y_first, x * a + c)
    assert torch.equal(y_last, torch.addcmul(c, x, a))
    # They differ by at most one rounding of a x and one of y each, and in float32 each is
    # within that of the exact a x + c (computed in float64; the fused one within u |y|)
    u = torch.finfo(dtype).eps / 2
    with torch.no_grad():
        ax, y = (x * a).double().abs(), y_last.double().abs()
        assert ((y_first - y_last).double().abs() <= u * (ax + 2 * y) * (1 + 4 * u)).all()
        if dtype == torch.float32:
            exact = x.double() * a.double() + c.double()
            assert ((y_first.double() - exact).abs() <= u * (ax + y) * (1 + 4 * u)).all()
            assert ((y_last.double() - exact).abs() <= u * exact.abs()).all()
    if dtype == torch.float32:
        assert not torch.equal(y_first, y_last)  # the difference is real, and this bounds it


@pytest.mark.parametrize('memory_format', [torch.channels_last, torch.contiguous_format],
                         ids=['channels-last', 'nchw'])
def test_bfloat16_inference_error_is_bounded(memory_format):
    # Channel means from 0 to 100 standard deviations from zero. The module's comment bounds
    # the error of the bfloat16 pass by u (|y - β| + |β| + |a E[x]|) before the output's own
    # rounding: a scale rounded independently of the offset would miss it by up to u |a E[x]|.
    torch.manual_seed(0)
    channels = 16
    sigma = torch.rand(channels) * 2 + 0.1
    mean = torch.linspace(-100, 100, channels) * sigma
    shape = (1, channels, 1, 1)
    x = (torch.randn(8, channels, 8, 8) * sigma.view(shape) + mean.view(shape)).bfloat16()
    x = x.contiguous(memory_format=memory_format)
    bn = BatchNorm(channels).eval()
    with torch.no_grad():
        bn.running_mean.copy_(mean), bn.running_var.copy_(sigma ** 2)
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-1, 1)
        y = bn(x)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=memory_format)

    def channel(t):
        return t.detach().double().view(shape)

    a = channel(bn.weight) / torch.sqrt(channel(bn.running_var) + bn.eps)
    beta = channel(bn.bias)
    exact = a * (x.double() - channel(bn.running_mean)) + beta
    u = 2. ** -8
    a_mean = (a * channel(bn.running_mean)).abs()
    error = (y.double() - exact).abs()
    if memory_format == torch.channels_last:
        # One fused pass in bfloat16 with rounded coefficients
        bound = 1.02 * u * ((exact - beta).abs() + beta.abs() + a_mean + exact.abs())
        assert (error <= bound).all(), (error - bound).max()
        # The bound is not loose: where the mean is large, the error uses a good part of it
        assert (error / bound).max() > 0.2
    else:
        # Channel not innermost: computed in float32, rounded once to bfloat16
        bound = 1.01 * u * exact.abs() + 2. ** -21 * (a_mean + exact.abs())
        assert (error <= bound).all(), (error - bound).max()


# Inference keeps $\epsilon$ as a tensor made once per value and dtype (see `_epsilon`): an `eps`
# changed after construction, and a float64 input, still get exactly their own
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_inference_uses_the_current_eps(dtype):
    bn, ref = BatchNorm(3).eval(), torch.nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        for m in (bn, ref):
            m.running_var.fill_(1e-4)
    x = torch.randn(4, 3, 5, 5, dtype=dtype)
    bn, ref = bn.to(dtype), ref.to(dtype)
    for eps in (1e-5, 1e-3, 1e-5):
        bn.eps = ref.eps = eps
        torch.testing.assert_close(bn(x), ref(x), rtol=1e-6, atol=1e-6)


def test_float16_inference_keeps_float32_coefficients():
    # An offset of -120,000 is beyond float16 (largest value 65,504): rounding the coefficients
    # to float16 would give infinities, so float16 keeps the pass in float32
    bn, ref = BatchNorm(2).eval(), torch.nn.BatchNorm2d(2).eval()
    with torch.no_grad():
        for m in (bn, ref):
            m.running_mean.fill_(60000.), m.running_var.fill_(0.25)
    x = (torch.randn(4, 2, 3, 3) * 0.5 + 60000.).half().contiguous(
        memory_format=torch.channels_last)
    y = bn(x)
    assert torch.isfinite(y).all()
    assert_close(y.float(), ref(x).float(), 'float16 inference', rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    ours, ref = BatchNorm(C), torch.nn.BatchNorm2d(C)
    x32 = torch.randn(4, C, 6, 6) * 3 + 2
    x = x32.to(dtype).requires_grad_()
    y = ours(x)
    assert y.dtype == dtype
    # Statistics in float32: the result is the float32 computation on the same (rounded) values
    y32 = BatchNorm(C)(x.detach().float())
    assert_close(y.float(), y32, 'half output', rtol=1e-2, atol=1e-2)
    y.float().sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()
    assert ours.running_mean.dtype == torch.float32
    ref(x.detach())
    assert_close(ours.running_mean, ref.running_mean.float(), 'half running_mean', rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_is_finite_where_torch_is(dtype):
    # Large values whose squares overflow float16: sums in the input dtype would give inf
    x = (torch.randn(64, C, 8, 8) * 200 + 3e4).to(dtype)
    y, y_ref = BatchNorm(C)(x), torch.nn.BatchNorm2d(C)(x)
    assert torch.isfinite(y[torch.isfinite(y_ref)]).all()
    assert torch.isfinite(y).all()


# Half-precision inputs on the CPU go through in pieces of the batch (see `_piece_size`). With
# the pieces made small, modest inputs are split, unevenly (11 examples in pieces of 2, the last
# alone); the results must be those of the whole batch, up to the order of the additions.
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('shape,memory_format', [
    ((11, C, 5, 5), torch.contiguous_format), ((11, C, 5, 5), torch.channels_last),
    ((11, C, 9), torch.contiguous_format), ((300, 7), torch.contiguous_format)])
def test_half_precision_in_pieces_gives_the_whole_batchs_results(monkeypatch, dtype, shape,
                                                                  memory_format):
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3 + 2).to(dtype).contiguous(memory_format=memory_format)
    grad = torch.randn(shape).to(dtype)
    results, pieces = {}, {}
    for split, piece_values in (('whole', 1 << 40), ('pieces', 4)):
        monkeypatch.setattr(batch_norm_module, '_PIECE_VALUES', piece_values)
        pieces[split] = batch_norm_module._piece_size(x)
        torch.manual_seed(1)
        bn = BatchNorm(shape[1])
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
        xi = x.clone().requires_grad_()
        y = bn(xi)
        y.backward(grad)
        assert y.dtype == xi.grad.dtype == dtype
        assert y.is_contiguous(memory_format=memory_format)
        results[split] = [y.float(), xi.grad.float(), bn.weight.grad, bn.bias.grad,
                          bn.running_mean, bn.running_var]
    assert pieces['whole'] is None and pieces['pieces'] == -(-shape[0] // 8)
    # The output and the input gradient are rounded to the input's dtype: a sum that differs
    # in its last bit can move them by one unit there
    unit = torch.finfo(dtype).eps
    names = ['output', 'input grad', 'weight grad', 'bias grad', 'running_mean', 'running_var']
    for name, a, b in zip(names, results['pieces'], results['whole']):
        tolerance = unit if name in ('output', 'input grad') else 1e-5
        assert_close(a, b, f'{name} in pieces', rtol=tolerance, atol=tolerance)


# Pieces are slices of the batch, so any strides work: a strided, transposed input, and the
# expanded gradient that `y.sum()` sends back
def test_half_precision_in_pieces_takes_any_strides(monkeypatch):
    torch.manual_seed(0)
    x = (torch.randn(11, 2 * C, 5, 6) * 3 + 2).bfloat16()[:, ::2].transpose(2, 3)
    results = []
    for piece_values in (1 << 40, 4):
        monkeypatch.setattr(batch_norm_module, '_PIECE_VALUES', piece_values)
        bn = BatchNorm(C)
        xi = x.detach().requires_grad_()
        y = bn(xi)
        y.float().sum().backward()
        results.append((y.float(), xi.grad.float(), bn.weight.grad))
    assert batch_norm_module._piece_size(x) == 2
    unit = torch.finfo(torch.bfloat16).eps
    for name, a, b in zip(['output', 'input grad', 'weight grad'], *results):
        assert_close(a, b, f'{name} in pieces', rtol=unit, atol=unit)


# Only large half-precision inputs on the CPU are split, in at most eight pieces, each at least
# one example; float32, second derivatives and small inputs go through whole.
def test_which_inputs_go_through_in_pieces():
    piece_size = batch_norm_module._piece_size
    large = torch.empty(32, 64, 28, 28, dtype=torch.bfloat16)
    assert piece_size(large) == 4
    assert piece_size(large.half()) == 4
    assert piece_size(large.float()) is None
    assert piece_size(torch.empty(1024, 512, dtype=torch.bfloat16)) is None
    assert piece_size(torch.empty(3, 8, 256, 256, dtype=torch.bfloat16)) == 1
    assert piece_size(torch.empty(1, 8, 512, 512, dtype=torch.bfloat16)) is None
    assert piece_size(torch.empty(0, 8, dtype=torch.bfloat16)) is None


# The tensor of eps is made once and kept (see `_epsilon`); made first under
# `torch.inference_mode`, it must still be a normal tensor that autograd can keep for a
# backward pass outside it.
def test_what_is_kept_from_inference_mode_works_with_autograd():
    # A shape and an eps no other test uses, so that this test makes what is kept
    x = torch.randn(5, 3, 7, 11)
    with torch.inference_mode():
        BatchNorm(3, track_running_stats=False).eval()(x)
        BatchNorm(3, eps=3e-5).eval()(x)
    x = x.clone().requires_grad_()
    shift, residual, var = batch_statistics(x)
    (residual.sum() + var.sum()).backward()
    BatchNorm(3, eps=3e-5).eval()(x).sum().backward()
    assert torch.isfinite(x.grad).all()


# A step captured as a CUDA graph (the trainer's `cuda-graph` fast step) cannot record a copy
# from host memory: once a shape has been seen, neither training nor inference may make a tensor
# from Python numbers again.
def test_a_shape_seen_before_makes_no_tensor_from_host_data(monkeypatch):
    bn = BatchNorm(3, eps=2e-5)
    x = torch.randn(6, 3, 4, 5, requires_grad=True)
    bn(x).sum().backward()
    bn.eval()(x)
    bn.train()

    def refuse(*args, **kwargs):
        raise AssertionError('a tensor made from host data')

    monkeypatch.setattr(torch, 'tensor', refuse)
    bn(x).sum().backward()
    bn.eval()(x).sum().backward()


def test_the_kept_tensors_are_bounded():
    x = torch.randn(4, 2)
    for k in range(140):
        BatchNorm(2, eps=1e-5 * (1 + k)).eval()(x)
    assert 0 < len(batch_norm_module._EPSILONS) <= 64


@pytest.mark.parametrize('shape', [(2, 3), (7, 3), (64, 3, 9), (5, 3, 12, 31), (9, 3, 2, 10, 21)])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last', 'transposed'])
def test_the_shift_is_the_median_of_five_values_of_each_channel(shape, layout):
    x = torch.randn(shape)
    if layout == 'channels_last':
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)
    elif layout == 'transposed':
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    samples = batch_norm_module._samples(x)
    # The same values as indexing with the examples and positions the comment gives
    k = torch.arange(5)
    index = (k * ((shape[0] - 1) // 4), slice(None)) + tuple((2 * k + 1) * (n // 10)
                                                             for n in shape[2:])
    torch.testing.assert_close(samples, x[index], rtol=0, atol=0)
    shift = batch_norm_module._cheap_shift(x).flatten()
    torch.testing.assert_close(shift, x[index].median(dim=0).values, rtol=0, atol=0)


def test_works_under_torch_compile():
    eager = BatchNorm(C)
    compiled_module = BatchNorm(C)
    compiled = torch.compile(compiled_module)
    for step in range(2):
        x = torch.randn(4, C, 6, 6) + step
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = eager(x1), compiled(x2)
        assert_close(y2, y1, f'compiled output, step {step}')
        y1.square().sum().backward()
        y2.square().sum().backward()
        assert_close(x2.grad, x1.grad, f'compiled input grad, step {step}')
        assert_close(compiled_module.weight.grad, eager.weight.grad, 'compiled weight grad')
    assert_close(compiled_module.running_mean, eager.running_mean, 'compiled running_mean')
    assert_close(compiled_module.running_var, eager.running_var, 'compiled running_var')
    eager.eval(), compiled_module.eval()
    x = torch.randn(4, C, 6, 6)
    assert_close(compiled(x), eager(x), 'compiled eval output')


@pytest.mark.parametrize('x,error,match', [
    # Shapes in messages are written as PyTorch writes them, (N, C, ...)
    (torch.randn(5), ValueError,
     r'shape \(N, C, \.\.\.\) with at least 2 dimensions, got shape \(5,\)'),
    (torch.randn(4, 3, 2), ValueError, r'expected 5 channels .* got shape \(4, 3, 2\) with 3 channels'),
    (torch.randn(1, 5), ValueError, r'more than 1 value per channel when training, got input of shape \(1, 5\)'),
    (torch.randn(1, 5, 1, 1), ValueError, r'more than 1 value per channel'),
    (torch.ones(4, 5, dtype=torch.long), TypeError, r'floating-point tensor, got dtype torch.int64'),
    ([[1.0] * 5] * 2, TypeError, r'expected a torch.Tensor, got list'),
])
def test_bad_input_is_rejected_with_a_clear_error(x, error, match):
    with pytest.raises(error, match=match):
        BatchNorm(5)(x)


def test_single_value_per_channel_is_fine_in_eval():
    bn = BatchNorm(5).eval()
    assert bn(torch.randn(1, 5)).shape == (1, 5)


def test_empty_batch_leaves_statistics_alone_but_is_counted_as_in_torch():
    bn, ref = BatchNorm(3), torch.nn.BatchNorm1d(3)
    x = torch.randn(0, 3, 4, requires_grad=True)
    y = bn(x)
    assert y.shape == (0, 3, 4)
    ref(torch.randn(0, 3, 4))
    assert int(bn.num_batches_tracked) == int(ref.num_batches_tracked) == 1
    assert torch.equal(bn.running_mean, torch.zeros(3))
    assert torch.equal(bn.running_var, torch.ones(3))
    y.sum().backward()
    assert torch.equal(bn.weight.grad, torch.zeros(3)) and torch.equal(bn.bias.grad, torch.zeros(3))


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(channels=0), ValueError, r'channels must be at least 1, got 0'),
    (dict(channels=-3), ValueError, r'at least 1, got -3'),
    (dict(channels=2.5), TypeError, r'channels must be an int, got float'),
    (dict(channels=True), TypeError, r'channels must be an int, got bool'),
    (dict(channels=3, eps=0), ValueError, r'eps must be a finite number > 0, got 0'),
    (dict(channels=3, eps=-1e-5), ValueError, r'eps must be a finite number > 0'),
    (dict(channels=3, eps=float('inf')), ValueError, r'eps must be a finite number > 0, got inf'),
    (dict(channels=3, momentum=1.5), ValueError, r'momentum must be None or a number in \[0, 1\], got 1.5'),
    (dict(channels=3, momentum=-0.1), ValueError, r'momentum must be None or a number in \[0, 1\]'),
])
def test_constructor_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchNorm(**kwargs)


def test_bounds_of_momentum_are_accepted():
    for momentum in (0, 0.0, 1, 1.0, None):
        BatchNorm(2, momentum=momentum)


def test_every_flag_combination_constructs_like_torch():
    for affine, track, bias in itertools.product([True, False], repeat=3):
        ours, ref = BatchNorm(3, affine=affine, track_running_stats=track, bias=bias), \
            torch.nn.BatchNorm1d(3, affine=affine, track_running_stats=track, bias=bias)
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
        assert list(ours.state_dict()) == list(ref.state_dict())


def test_module_file_is_importable_by_path():
    spec = importlib.util.spec_from_file_location('bn_copy', batch_norm_module.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.BatchNorm(2)(torch.randn(3, 2)).shape == (3, 2)


# --- the page's examples, the reference function and the paper's equations as oracles ------

def test_the_examples_on_the_page_run_and_print_what_the_page_shows():
    # The worked example (μ, σ², x̂, y of a 4×2 batch) and the train/eval demonstration
    result = doctest.testmod(batch_norm_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10
    assert result.failed == 0


@pytest.mark.parametrize('layout', list(LAYOUTS))
def test_forward_matches_the_reference_function(layout):
    shape, _ = LAYOUTS[layout]
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64) * 3 + 2
    w = torch.rand(C, dtype=torch.float64) + 0.5
    b = torch.randn(C, dtype=torch.float64)
    y = BatchNormFunction.apply(x, w, b, 1e-5)[0]
    assert_close(y, batch_norm_reference(x, w, b, 1e-5), 'float64 output', rtol=1e-12, atol=1e-12)
    # float32 against the float64 reference
    y32 = BatchNormFunction.apply(x.float(), w.float(), b.float(), 1e-5)[0]
    assert_close(y32.double(), batch_norm_reference(x, w, b, 1e-5), 'float32 output',
                 rtol=1e-5, atol=1e-6)


def paper_backward(x, g, gamma, eps):
    """
    The paper's Section 3 equations, literally: ∂ℓ/∂x reached three ways (directly, through
    σ²_B and through μ_B), and ∂ℓ/∂γ, ∂ℓ/∂β. Sums over every dimension except 1.
    """
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    m = x.numel() // x.shape[1]
    gamma = gamma.view(shape)
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    x_hat = (x - mean) / torch.sqrt(var + eps)
    grad_x_hat = g * gamma
    grad_var = (grad_x_hat * (x - mean)).sum(dims, keepdim=True) * -0.5 * (var + eps) ** -1.5
    grad_mean = ((grad_x_hat * -1 / torch.sqrt(var + eps)).sum(dims, keepdim=True)
                 + grad_var * (-2 * (x - mean)).sum(dims, keepdim=True) / m)
    grad_x = (grad_x_hat / torch.sqrt(var + eps) + grad_var * 2 * (x - mean) / m
              + grad_mean / m)
    grad_gamma = (g * x_hat).sum(dims)
    grad_beta = g.sum(dims)
    return grad_x, grad_gamma, grad_beta


@pytest.mark.parametrize('layout', list(LAYOUTS))
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_backward_matches_the_papers_equations(layout, dtype):
    shape, _ = LAYOUTS[layout]
    torch.manual_seed(1)
    x64 = torch.randn(shape, dtype=torch.float64) * 2 + 5
    w64 = torch.rand(C, dtype=torch.float64) + 0.5
    b64 = torch.randn(C, dtype=torch.float64)
    g64 = torch.randn(shape, dtype=torch.float64)
    expected = paper_backward(x64, g64, w64, 1e-5)
    x, w, b = (t.to(dtype).requires_grad_() for t in (x64, w64, b64))
    y = BatchNormFunction.apply(x, w, b, 1e-5)[0]
    got = torch.autograd.grad(y, (x, w, b), g64.to(dtype))
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for name, a, e in zip(['x', 'gamma', 'beta'], got, expected):
        assert_close(a.double(), e, f'grad {name}', **tol)


def test_backward_without_gamma_or_input_grad():
    torch.manual_seed(2)
    x = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(6, 3, 4, dtype=torch.float64)
    gx, = torch.autograd.grad(BatchNormFunction.apply(x, None, None, 1e-5)[0], x, g)
    assert_close(gx, paper_backward(x.detach(), g, torch.ones(3, dtype=torch.float64), 1e-5)[0],
                 'grad x without gamma', rtol=1e-10, atol=1e-10)
    # Only γ wants a gradient: the input gradient is not computed at all
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    gw, = torch.autograd.grad(BatchNormFunction.apply(x.detach(), w, None, 1e-5)[0], w, g)
    assert_close(gw, paper_backward(x.detach(), g, w.detach(), 1e-5)[1], 'grad gamma')


@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last])
def test_gradgradcheck_on_a_4d_batch(memory_format):
    torch.manual_seed(3)
    x = (torch.randn(3, 2, 3, 2, dtype=torch.float64) * 2 + 4).contiguous(
        memory_format=memory_format).requires_grad_()
    w = (torch.rand(2, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return BatchNormFunction.apply(x, w, b, 1e-3)[0]

    assert gradcheck(f, (x, w, b))
    assert gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize('layout', ['2d-[B,C]', '4d-[B,C,H,W]'])
def test_second_order_gradients_match_torch_and_the_first_order_gradient(layout):
    # gradgradcheck compares the backward pass only with itself. Here a gradient-penalty
    # loss, the gradient of a function of the first gradient, is compared with torch's, and
    # the first gradient taken with create_graph=True with the ordinary one. ε = 0.5 against
    # variances of about 0.01: a double-backward path that used 1/√σ² for 1/√(σ² + ε) would
    # be off by a factor of seven.
    shape, torch_cls = LAYOUTS[layout]
    ref = torch_cls(C, eps=0.5, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5), ref.bias.uniform_(-0.5, 0.5)
    ours = BatchNorm(C, eps=0.5, dtype=torch.float64)
    ours.load_state_dict(ref.state_dict())
    x = (torch.randn(shape, dtype=torch.float64) * 0.1 + 3).requires_grad_()
    w = torch.linspace(-1, 2, x.numel(), dtype=torch.float64).view(shape)
    results = []
    for module in (ref, ours):
        params = [x, module.weight, module.bias]
        ordinary = torch.autograd.grad((module(x).sin() * w).sum(), params)
        first = torch.autograd.grad((module(x).sin() * w).sum(), params, create_graph=True)
        second = torch.autograd.grad(first[0].pow(2).sum(), params)
        results.append((ordinary, first, second))
    (ordinary_ref, first_ref, second_ref), (ordinary, first, second) = results
    for name, a, e in zip(['x', 'weight', 'bias'], first, ordinary):
        assert_close(a, e, f'first gradient with create_graph, {name}', rtol=1e-12, atol=1e-12)
    for name, a, e in zip(['x', 'weight', 'bias'], first, first_ref):
        assert_close(a, e, f'first gradient, {name}', rtol=1e-10, atol=1e-10)
    for name, a, e in zip(['x', 'weight', 'bias'], second, second_ref):
        assert_close(a, e, f'second-order gradient, {name}', rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize('offset', [0., 1e2, 1e4, 1e6, -1e6])
@pytest.mark.parametrize('shape', [(64, 16, 8, 8), (256, 32)])
def test_float32_output_is_within_1e_6_of_float64_for_large_means(offset, shape):
    torch.manual_seed(0)
    x = torch.randn(shape) + offset
    y = BatchNorm(shape[1], affine=False)(x)
    assert _relative_error(x, y) <= 1e-6
    # and the gradient stays accurate too (against the same equations in float64)
    xg = x.clone().requires_grad_()
    g = torch.randn(shape)
    gx, = torch.autograd.grad(BatchNorm(shape[1], affine=False)(xg), xg, g)
    expected = paper_backward(x.double(), g.double(), torch.ones(shape[1], dtype=torch.float64),
                              1e-5)[0]
    assert ((gx.double() - expected).norm() / expected.norm()).item() <= 1e-5


def test_statistics_stay_accurate_when_the_shift_is_an_outlier():
    # The shift is the median of five values of each channel: two of them 8 standard
    # deviations away, and the first example of the batch offset by 3 too, do not matter
    torch.manual_seed(0)
    x = torch.randn(64, 8, 4) + 1e4
    x[0] += 3
    x[0, :, 0] += 8
    x[-1, :, 3] += 8
    y = BatchNorm(8, affine=False)(x)
    assert _relative_error(x, y) <= 1e-6


def test_a_constant_channel_gives_beta_exactly_even_with_a_tiny_eps():
    bn = BatchNorm(3, eps=1e-30)
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.5, -0.25, 2.]))
    x = torch.randn(4, 3, 5)
    x[:, 1] = 0.1
    x.requires_grad_()
    y = bn(x)
    assert torch.equal(y[:, 1], torch.full_like(y[:, 1], -0.25))
    y.backward(torch.randn_like(y))
    assert torch.isfinite(x.grad).all()


def test_batch_statistics_gives_shift_residual_and_biased_variance():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, dtype=torch.float64) * 2 + 7
    shift, residual, var = batch_statistics(x)
    assert shift.shape == residual.shape == var.shape == (1, 3, 1)
    assert_close((shift + residual).flatten(), x.mean((0, 2)), 'mean', rtol=1e-12, atol=1e-12)
    assert_close(var.flatten(), x.var((0, 2), unbiased=False), 'var', rtol=1e-12, atol=1e-12)
    # Any shift gives the same statistics
    s2, r2, v2 = batch_statistics(x, torch.full((1, 3, 1), 3., dtype=torch.float64))
    assert_close((s2 + r2).flatten(), x.mean((0, 2)), 'mean, other shift', rtol=1e-12, atol=1e-12)
    assert_close(v2, var, 'var, other shift', rtol=1e-12, atol=1e-12)
    # Half-precision input: statistics in float32
    assert batch_statistics(x.half())[2].dtype == torch.float32


def test_the_gradient_sums_to_zero_but_is_orthogonal_to_x_hat_only_as_eps_goes_to_zero():
    # The page's claims about the compact form: Σ ∂ℓ/∂x_i = 0 exactly, and
    # Σ x̂_i ∂ℓ/∂x_i = γ k Σ g x̂ · ε / (σ² + ε)
    torch.manual_seed(4)
    x = torch.randn(10, 2, dtype=torch.float64, requires_grad=True)
    g = torch.randn(10, 2, dtype=torch.float64)
    w = torch.tensor([1.5, 0.5], dtype=torch.float64)
    eps = 0.5
    gx, = torch.autograd.grad(BatchNormFunction.apply(x, w, None, eps)[0], x, g)
    assert gx.sum(0).abs().max() < 1e-12
    xd = x.detach()
    var = xd.var(0, unbiased=False)
    x_hat = (xd - xd.mean(0)) / torch.sqrt(var + eps)
    k = 1 / torch.sqrt(var + eps)
    expected = w * k * (g * x_hat).sum(0) * eps / (var + eps)
    assert_close((x_hat * gx).sum(0), expected, 'sum of x_hat * grad', rtol=1e-10, atol=1e-12)
    assert expected.abs().min() > 1e-3


def test_scale_invariance_holds_for_positive_scales_up_to_eps():
    # BN((aW)u) = BN(Wu) for a > 0 when ε is negligible; a < 0 flips the sign
    torch.manual_seed(5)
    wu = torch.randn(32, 4) * 3
    bn = BatchNorm(4, affine=False)
    assert_close(bn(7. * wu), bn(wu), 'a = 7', rtol=1e-5, atol=1e-5)
    assert_close(bn(-2. * wu), -bn(wu), 'a = -2', rtol=1e-5, atol=1e-5)
    # When a²σ² is close to ε, ε no longer cancels
    assert (bn(0.001 * wu) - bn(wu)).abs().max() > 0.1


def test_the_page_shows_the_algorithm_before_the_machinery():
    source = open(batch_norm_module.__file__).read()
    # The learning path: Algorithm 1, back-propagation, the layer's moving averages and
    # inference, then our engineering, what to remember, exercises, and the appendix
    order = ['def batch_norm_reference', 'class BatchNormFunction',
             'def _update_running_stats', 'def _normalise_for_inference',
             '## Making it fast and exact', 'def batch_statistics', '## What to remember',
             '## Pitfalls', '## Exercises', 'def _check_input', 'def _extra_repr']
    positions = [source.index(name) for name in order]
    assert positions == sorted(positions)
    # The numerics are one collapsible aside, and the page links the later-work page
    assert source.count('??? note') == 1
    assert '../later_work.md' in source
    # Code lines fit the code column without scrolling sideways
    tree = ast.parse(source)
    doc_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node):
            first = node.body[0]
            doc_lines.update(range(first.lineno, first.end_lineno + 1))
    long = [n for n, line in enumerate(source.splitlines(), 1)
            if len(line) > 88 and n not in doc_lines and not line.lstrip().startswith('#')]
    assert not long, long
