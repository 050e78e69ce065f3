"""
`BatchNorm` as a drop-in for `torch.nn.BatchNorm1d/2d/3d`, corner by corner.

Each table row is one thing a user can hand to torch's batch norm. For every row, either our
`BatchNorm` does exactly what torch does (outputs, gradients, running statistics,
`num_batches_tracked`, errors), or it refuses, or it deliberately differs, and the row says why.
The tables are asserted in both directions: if torch changes what it does, a row fails and the
recorded reason has to be looked at again.
"""
import copy
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pytest
import torch

from labml_nn_bn import BatchNorm

C = 3
TORCH_CLASS = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
               5: torch.nn.BatchNorm3d}


def make_pair(ndim: int, **kwargs):
    """torch's module and ours, with the same random γ, β and running statistics."""
    ref = TORCH_CLASS[ndim](C, **kwargs)
    with torch.no_grad():
        if ref.weight is not None:
            ref.weight.uniform_(0.5, 1.5)
        if ref.bias is not None:
            ref.bias.uniform_(-0.5, 0.5)
        if ref.running_mean is not None:
            ref.running_mean.uniform_(-1, 1)
            ref.running_var.uniform_(0.5, 2)
            ref.num_batches_tracked.fill_(5)
    ours = BatchNorm(C, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def randn(shape, step):
    # A shifted, scaled input, different at each step, so that running statistics move
    return torch.randn(shape) * (1 + step) + step


def constant_channel(shape, step):
    x = randn(shape, step)
    x[:, 1] = 3.0 + step
    return x


def with_nan(shape, step):
    x = randn(shape, step)
    x.view(-1)[0] = float('nan')
    return x


def with_inf(shape, step):
    x = randn(shape, step)
    x.view(-1)[0] = float('inf')
    return x


def permuted(shape, step):
    # [N, H, W, C] memory seen as [N, C, H, W]: not contiguous (it is channels_last)
    b, c, *rest = shape
    return randn((b, *rest, c), step).movedim(-1, 1)


def strided(shape, step):
    # Every other channel of a wider tensor: no memory format at all
    b, c, *rest = shape
    return randn((b, 2 * c, *rest), step)[:, ::2]


def channels_last(shape, step):
    return randn(shape, step).to(memory_format=torch.channels_last)


def channels_last_3d(shape, step):
    return randn(shape, step).to(memory_format=torch.channels_last_3d)


def freeze_statistics(m):
    # Switching the flag off after construction keeps the buffers
    m.track_running_stats = False


def drop_buffers(m):
    m.running_mean = None
    m.running_var = None


def drop_buffers_and_flag(m):
    drop_buffers(m)
    m.track_running_stats = False


def switch_tracking_on(m):
    m.track_running_stats = True


def momentum_to_none(m):
    m.momentum = None


@dataclass
class Case:
    id: str
    shape: tuple
    train: bool = True
    kwargs: dict = field(default_factory=dict)
    make_input: Callable = randn
    # Applied to both modules after construction, as user code would
    prepare: Optional[Callable] = None
    requires_grad: bool = True
    no_grad: bool = False
    steps: int = 3
    # `None`: same as torch. Else both raise this type, ours with a message matching `match`
    error: Optional[type] = None
    match: str = ''
    # Why the row is what it is, where that is not obvious
    reason: str = ''
    # Where both are not finite, any non-finite value (inf or NaN) counts as the same
    any_non_finite: bool = False


CASES = [
    # Layouts and the three torch classes
    Case('2d-[B,C]', (16, C)),
    Case('3d-[B,C,L]', (8, C, 7)),
    Case('4d-[B,C,H,W]', (4, C, 5, 5)),
    Case('5d-[B,C,D,H,W]', (2, C, 3, 4, 4)),
    Case('eval-4d', (4, C, 5, 5), train=False),
    # The empty batch: torch returns an empty output, gives γ and β zero gradients, leaves
    # the running statistics alone, and still counts the batch in num_batches_tracked
    Case('empty-batch-2d-train', (0, C)),
    Case('empty-batch-4d-train', (0, C, 4, 4)),
    Case('empty-batch-2d-eval', (0, C), train=False),
    Case('empty-batch-4d-eval', (0, C, 4, 4), train=False),
    Case('empty-spatial-4d-train', (2, C, 0, 4)),
    Case('empty-batch-4d-train-no-running-stats', (0, C, 4, 4), kwargs=dict(track_running_stats=False)),
    Case('empty-batch-2d-eval-no-running-stats', (0, C), train=False, kwargs=dict(track_running_stats=False)),
    Case('empty-batch-momentum-none', (0, C, 4, 4), kwargs=dict(momentum=None)),
    # One value per channel: no variance to learn from
    Case('batch-of-one-2d-train', (1, C), error=ValueError,
         match=r'expected more than 1 value per channel when training, got input of shape \(1, 3\)',
         reason='torch raises ValueError: one value per channel has no variance'),
    Case('batch-of-one-4d-1x1-train', (1, C, 1, 1), error=ValueError,
         match=r'more than 1 value per channel when training'),
    Case('batch-of-one-4d-2x1-train', (1, C, 2, 1), reason='two values per channel are enough'),
    Case('batch-of-one-2d-eval', (1, C), train=False, reason='running statistics need no batch'),
    Case('batch-of-one-eval-no-running-stats', (1, C), train=False,
         kwargs=dict(track_running_stats=False), error=ValueError,
         match=r'more than 1 value per channel in evaluation without running statistics, '
               r'got input of shape \(1, 3\)',
         reason='batch statistics are used in eval too, and one value has none'),
    # Extreme eps (0 is in ARGUMENTS: refused)
    Case('eps-1e-30', (4, C, 5, 5), kwargs=dict(eps=1e-30)),
    Case('eps-1e3', (4, C, 5, 5), kwargs=dict(eps=1e3)),
    Case('eps-1e3-eval', (4, C, 5, 5), train=False, kwargs=dict(eps=1e3)),
    # Momentum at its ends, and the cumulative average
    Case('momentum-0', (4, C, 5, 5), kwargs=dict(momentum=0.)),
    Case('momentum-int-0', (4, C, 5, 5), kwargs=dict(momentum=0)),
    Case('momentum-1', (4, C, 5, 5), kwargs=dict(momentum=1.)),
    Case('momentum-none', (4, C, 5, 5), kwargs=dict(momentum=None), steps=4),
    Case('momentum-set-to-none-later', (4, C, 5, 5), prepare=momentum_to_none, steps=4),
    # Memory layouts
    Case('non-contiguous-permuted', (4, C, 5, 5), make_input=permuted),
    Case('non-contiguous-strided', (4, C, 5, 5), make_input=strided),
    Case('non-contiguous-strided-eval', (4, C, 5, 5), train=False, make_input=strided),
    Case('channels-last', (4, C, 5, 5), make_input=channels_last),
    Case('channels-last-eval', (4, C, 5, 5), train=False, make_input=channels_last),
    Case('channels-last-3d', (2, C, 3, 4, 4), make_input=channels_last_3d),
    # Dtypes
    Case('double', (4, C, 5, 5), kwargs=dict(dtype=torch.float64),
         make_input=lambda s, i: randn(s, i).double()),
    Case('double-eval', (4, C, 5, 5), train=False, kwargs=dict(dtype=torch.float64),
         make_input=lambda s, i: randn(s, i).double()),
    Case('half-input-float-module', (4, C, 5, 5), make_input=lambda s, i: randn(s, i).half()),
    # Flags
    Case('no-affine', (4, C, 5, 5), kwargs=dict(affine=False)),
    Case('scale-only', (4, C, 5, 5), kwargs=dict(bias=False)),
    Case('eval-no-running-stats', (4, C, 5, 5), train=False, kwargs=dict(track_running_stats=False),
         reason='no population estimates: batch statistics in eval too'),
    Case('frozen-statistics-train', (4, C, 5, 5), prepare=freeze_statistics,
         reason='flag off after construction: the batch normalises, the buffers stay'),
    Case('frozen-statistics-eval', (4, C, 5, 5), train=False, prepare=freeze_statistics,
         reason='flag off after construction: torch still uses the kept buffers in eval'),
    Case('buffers-set-to-none-train', (4, C, 5, 5), prepare=drop_buffers),
    Case('buffers-set-to-none-eval', (4, C, 5, 5), train=False, prepare=drop_buffers,
         reason='no buffers: batch statistics, whatever the flag says'),
    Case('buffers-and-flag-off-eval', (4, C, 5, 5), train=False, prepare=drop_buffers_and_flag),
    Case('tracking-switched-on-later', (4, C, 5, 5), kwargs=dict(track_running_stats=False),
         prepare=switch_tracking_on, reason='no buffers to update: the batch alone'),
    Case('tracking-switched-on-later-eval', (4, C, 5, 5), train=False,
         kwargs=dict(track_running_stats=False), prepare=switch_tracking_on),
    # Autograd
    Case('input-without-requires-grad', (4, C, 5, 5), requires_grad=False),
    Case('no-grad-training-forward', (4, C, 5, 5), requires_grad=False, no_grad=True,
         reason='running statistics still update under no_grad in training'),
    Case('no-grad-eval-forward', (4, C, 5, 5), train=False, requires_grad=False, no_grad=True),
    # Non-finite input spreads to its channel only, in both
    Case('nan-in-input', (4, C, 5, 5), make_input=with_nan),
    Case('inf-in-input', (4, C, 5, 5), make_input=with_inf, any_non_finite=True,
         reason="torch's running mean of that channel becomes inf, ours NaN (inf - inf in the "
                'shifted mean); both are lost, the outputs are NaN in both'),
]


def run_steps(module, case: Case, inputs, grads):
    """Forward (and backward) of `module` over the inputs; everything torch would let us see."""
    module.train(case.train)
    record = []
    for x, g in zip(inputs, grads):
        x = x.clone().requires_grad_(case.requires_grad)
        for p in module.parameters():
            p.grad = None
        with torch.set_grad_enabled(not case.no_grad):
            y = module(x)
        seen = {'y': y}
        if y.requires_grad:
            y.backward(g.to(y.dtype))
            seen['x.grad'] = x.grad
            for name, p in module.named_parameters():
                seen[f'{name}.grad'] = p.grad
        for name, b in module.named_buffers():
            seen[name] = b.clone()
        record.append(seen)
    return record


def assert_same(a, b, what, dtype, any_non_finite=False):
    if a is None or b is None:
        assert a is None and b is None, f'{what}: torch {a} vs ours {b}'
        return
    if any_non_finite and a.is_floating_point():
        assert torch.equal(torch.isfinite(a), torch.isfinite(b)), f'{what}: {a} vs {b}'
        a, b = (t.masked_fill(~torch.isfinite(t), math.nan) for t in (a, b))
    assert a.shape == b.shape and a.dtype == b.dtype, f'{what}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}'
    if a.numel() and a.dim() >= 4:
        # The same memory format as torch's output
        assert a.stride() == b.stride(), f'{what}: strides {a.stride()} vs {b.stride()}'
    tol = {torch.float16: dict(rtol=1e-3, atol=2e-3), torch.float64: dict(rtol=1e-9, atol=1e-9)}
    torch.testing.assert_close(b, a, equal_nan=True, **tol.get(dtype, dict(rtol=1e-4, atol=1e-4)),
                               msg=lambda m: f'{what}: {m}')


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_behaves_like_torch(case: Case):
    ref, ours = make_pair(len(case.shape), **case.kwargs)
    if case.prepare:
        case.prepare(ref)
        case.prepare(ours)
    inputs = [case.make_input(case.shape, step) for step in range(case.steps)]
    grads = [torch.randn(case.shape) for _ in range(case.steps)]
    if case.error is not None:
        with pytest.raises(case.error):
            run_steps(ref, case, inputs, grads)
        with pytest.raises(case.error, match=case.match):
            run_steps(ours, case, inputs, grads)
        return
    expected = run_steps(ref, case, inputs, grads)
    actual = run_steps(ours, case, inputs, grads)
    for step, (e, a) in enumerate(zip(expected, actual)):
        assert e.keys() == a.keys(), f'step {step}: torch has {sorted(e)}, ours {sorted(a)}'
        for key in e:
            assert_same(e[key], a[key], f'{case.id}, step {step}, {key}', inputs[step].dtype,
                        case.any_non_finite)


# ## Where we deliberately differ
#
# A constant channel has $\sigma^2_\mathcal{B} = 0$ and $\hat{x} = 0$: the output is exactly β
# and the gradient is $\frac{\gamma}{\sqrt{\epsilon}}(g_i - \bar{g})$. torch's kernel computes
# the mean with rounding, so its output there is small noise divided by $\sqrt{\epsilon}$ rather
# than β (far from β when ε is tiny or the value large). Ours is exact, with any ε, and its
# gradient stays finite; so here we compare with the formula in float64, and with torch only where
# its noise is small.
@pytest.mark.parametrize('eps', [1e-5, 1e-30, 1e3])
@pytest.mark.parametrize('value', [3.0, 0.1, 1e4 + 0.3])
def test_constant_channel_gives_beta_exactly(eps, value):
    ref, ours = make_pair(4, eps=eps)
    x = randn((4, C, 5, 5), 0)
    x[:, 1] = value
    x.requires_grad_()
    y = ours(x)
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.equal(y[:, 1], ours.bias[1].detach().expand_as(y[:, 1]))
    # γ / √ε · (g - mean g), in float64
    g1 = g[:, 1].double()
    expected = ours.weight[1].double() / math.sqrt(eps) * (g1 - g1.mean())
    torch.testing.assert_close(x.grad[:, 1].double(), expected, rtol=1e-4, atol=1e-6)
    assert torch.isfinite(x.grad).all()
    # Running statistics: the mean moves towards the value, the variance towards 0, like torch's
    y_ref = ref(x.detach())
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    if eps >= 1e-5 and abs(value) < 10:
        torch.testing.assert_close(y.detach(), y_ref, rtol=1e-4, atol=2e-3)


# torch refuses a module and input of different floating dtypes (on CPU: "mixed dtype"); ours
# computes in the wider of the two and returns the input's dtype, like it does for half inputs.
@pytest.mark.parametrize('module_dtype,input_dtype', [(torch.float32, torch.float64),
                                                      (torch.float64, torch.float32)])
@pytest.mark.parametrize('train', [True, False])
def test_mixed_dtypes_are_accepted_where_torch_refuses(module_dtype, input_dtype, train):
    ref, ours = make_pair(4, dtype=module_dtype)
    ref.train(train), ours.train(train)
    x = randn((4, C, 5, 5), 0).to(input_dtype)
    with pytest.raises(RuntimeError, match='mixed dtype'):
        ref(x)
    y = ours(x)
    assert y.dtype == input_dtype
    # The same as torch in float64 throughout
    ref64, ours64 = make_pair(4, dtype=torch.float64)
    ref64.load_state_dict(ref.state_dict())
    ref64.train(train)
    torch.testing.assert_close(y.double(), ref64(x.double()), rtol=1e-4, atol=1e-5)


# ## Constructor arguments
#
# `torch_does` is what torch does with the arguments; `ours` is `None` where we do the same, or
# the error we raise instead, with the reason.
ARGUMENTS = [
    # (id, args, kwargs, torch_does, ours: None or (error, match), reason)
    ('positional-eps-momentum', (C, 1e-3, 0.01), {}, 'accepts', None, ''),
    ('positional-affine-track', (C, 1e-5, 0.1, False, False), {}, 'accepts', None, ''),
    ('bias-is-keyword-only', (C, 1e-5, 0.1, True, True, None, None, False), {}, 'TypeError',
     (TypeError, 'positional argument'), 'bias is keyword-only in torch too'),
    ('float-channels', (3.0,), {}, 'TypeError', (TypeError, 'channels must be an int, got float'), ''),
    ('eps-0', (C,), dict(eps=0), 'refuses in training',
     (ValueError, r'eps must be a finite number > 0, got 0'),
     'eps = 0 divides a constant channel by zero; torch refuses it only at the first training '
     'forward, we refuse it at construction'),
    ('eps-negative', (C,), dict(eps=-1e-5), 'refuses in training',
     (ValueError, r'eps must be a finite number > 0, got -1e-05'), 'as eps = 0'),
    ('eps-nan', (C,), dict(eps=math.nan), 'accepts',
     (ValueError, r'eps must be a finite number > 0, got nan'),
     'torch then outputs NaN everywhere'),
    ('eps-inf', (C,), dict(eps=math.inf), 'accepts',
     (ValueError, r'eps must be a finite number > 0, got inf'),
     'torch then outputs β everywhere (x̂ = 0): nothing is normalised, without a word'),
    ('eps-true', (C,), dict(eps=True), 'accepts',
     (ValueError, r'eps must be a finite number > 0, got True'), 'True is a flag, not a number'),
    ('momentum-above-1', (C,), dict(momentum=1.5), 'accepts',
     (ValueError, r'momentum must be None or a number in \[0, 1\], got 1.5'),
     'the running average would overshoot the batch statistics'),
    ('momentum-negative', (C,), dict(momentum=-0.5), 'accepts',
     (ValueError, r'momentum must be None or a number in \[0, 1\], got -0.5'),
     'the running average would move away from the batch statistics'),
    ('momentum-nan', (C,), dict(momentum=math.nan), 'accepts',
     (ValueError, r'momentum must be None or a number in \[0, 1\], got nan'),
     'torch then fills the running statistics with NaN'),
    ('momentum-inf', (C,), dict(momentum=math.inf), 'accepts',
     (ValueError, r'momentum must be None or a number in \[0, 1\], got inf'),
     'torch then fills the running statistics with NaN or inf'),
    ('momentum-string', (C,), dict(momentum='0.1'), 'accepts',
     (ValueError, r"momentum must be None or a number in \[0, 1\], got '0.1'"),
     'torch fails only at the first training step'),
    ('momentum-bool', (C,), dict(momentum=True), 'accepts',
     (ValueError, r'momentum must be None or a number in \[0, 1\], got True'),
     'True is a flag, not a weight; write 1.0'),
    ('zero-channels', (0,), {}, 'accepts',
     (ValueError, r'channels must be at least 1, got 0'), 'nothing to normalise'),
    ('num_features-keyword', (), dict(num_features=C), 'accepts',
     (TypeError, r"unexpected keyword argument 'num_features'"),
     "the first argument is named `channels` (the paper's C); pass it positionally"),
]


@pytest.mark.parametrize('args,kwargs,torch_does,ours,reason',
                         [a[1:] for a in ARGUMENTS], ids=[a[0] for a in ARGUMENTS])
def test_constructor_arguments(args, kwargs, torch_does, ours, reason):
    x = torch.randn(4, C)
    if torch_does == 'TypeError':
        with pytest.raises(TypeError):
            torch.nn.BatchNorm1d(*args, **kwargs)
    else:
        ref = torch.nn.BatchNorm1d(*args, **kwargs)
        if torch_does == 'refuses in training':
            with pytest.raises(ValueError, match='eps must be positive'):
                ref(x)
    if ours is None:
        assert repr(BatchNorm(*args, **kwargs)).split('(', 1)[1] == repr(ref).split('(', 1)[1]
    else:
        error, match = ours
        with pytest.raises(error, match=match):
            BatchNorm(*args, **kwargs)


# NumPy scalars, as configuration files and hyper-parameter searches hand them over: torch
# accepts them, and so do we, for any integral `channels` and real `eps` and `momentum`. They
# are kept as Python numbers, so the module prints and pickles as with plain ones.
@pytest.mark.parametrize('channels,eps,momentum', [
    (np.int64(C), np.float32(1e-5), np.float64(0.1)),
    (np.int32(C), np.float64(1e-3), np.float32(0.5)),
    (np.uint8(C), np.float16(0.01), np.int64(1)),
], ids=['int64-float32-float64', 'int32-float64-float32', 'uint8-float16-int64'])
def test_numpy_scalars_are_accepted_like_torch(channels, eps, momentum):
    ref = torch.nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    ours = BatchNorm(channels, eps=eps, momentum=momentum)
    assert type(ours.channels) is int and ours.channels == C == ours.num_features
    assert type(ours.eps) is float and ours.eps == float(eps)
    assert type(ours.momentum) is float and ours.momentum == float(momentum)
    assert repr(ours) == f'BatchNorm({C}, eps={float(eps)}, momentum={float(momentum)}, ' \
                         f'affine=True, bias=True, track_running_stats=True)'
    inputs = [randn((4, C, 5, 5), step) for step in range(2)]
    grads = [torch.randn(4, C, 5, 5) for _ in range(2)]
    case = Case('numpy', (4, C, 5, 5))
    for e, a in zip(run_steps(ref, case, inputs, grads), run_steps(ours, case, inputs, grads)):
        for key in e:
            assert_same(e[key], a[key], f'numpy scalars, {key}', torch.float32)


# ## State dictionaries
#
# torch writes a format version per module into a state dict's `_metadata`; batch norm is at
# version 2. Checkpoints of version 1, or with no metadata (plain dicts, older formats), may lack
# `num_batches_tracked`, which torch then fills with the module's own count.
def state_dict_of(module, drop=(), version='keep', prefix=''):
    sd = module.state_dict()
    out = OrderedDict((prefix + k, v.clone()) for k, v in sd.items() if k not in drop)
    if version != 'no-metadata':
        out._metadata = OrderedDict({prefix.rstrip('.'): dict(sd._metadata[''])})
        if version != 'keep':
            out._metadata[prefix.rstrip('.')]['version'] = version
    return out


def load(module, state_dict, strict=True, **kw):
    """What loading did: the key report, or the error with the class name taken out."""
    try:
        result = module.load_state_dict(state_dict, strict=strict, **kw)
        return 'ok', sorted(result.missing_keys), sorted(result.unexpected_keys)
    except RuntimeError as e:
        return 'error', str(e).replace(type(module).__name__, 'MODULE')


def source(**kwargs):
    m = torch.nn.BatchNorm2d(C, **kwargs)
    with torch.no_grad():
        for t in m.parameters():
            t.uniform_(0.5, 1.5)
        for name, b in m.named_buffers():
            b.copy_(torch.full_like(b, 11) if name == 'num_batches_tracked' else torch.rand_like(b))
    return m


STATE_DICTS = [
    # (id, state dict, target kwargs, strict)
    ('current', lambda: state_dict_of(source()), {}, True),
    ('version-1-without-counter', lambda: state_dict_of(source(), ['num_batches_tracked'], 1), {}, True),
    ('version-none-without-counter', lambda: state_dict_of(source(), ['num_batches_tracked'], None), {}, True),
    ('no-metadata-without-counter',
     lambda: state_dict_of(source(), ['num_batches_tracked'], 'no-metadata'), {}, True),
    ('version-1-with-counter', lambda: state_dict_of(source(), (), 1), {}, True),
    ('version-2-without-counter-strict', lambda: state_dict_of(source(), ['num_batches_tracked']), {}, True),
    ('version-2-without-counter-non-strict',
     lambda: state_dict_of(source(), ['num_batches_tracked']), {}, False),
    ('version-1-missing-running-mean',
     lambda: state_dict_of(source(), ['num_batches_tracked', 'running_mean'], 1), {}, True),
    ('version-1-into-no-running-stats',
     lambda: state_dict_of(source(), ['num_batches_tracked'], 1), dict(track_running_stats=False), True),
    ('version-1-into-no-running-stats-non-strict',
     lambda: state_dict_of(source(), ['num_batches_tracked'], 1), dict(track_running_stats=False), False),
    ('affine-false-into-affine', lambda: state_dict_of(source(affine=False)), {}, True),
    ('affine-false-into-affine-non-strict', lambda: state_dict_of(source(affine=False)), {}, False),
    ('affine-false-into-affine-false', lambda: state_dict_of(source(affine=False)), dict(affine=False), True),
    ('no-running-stats-into-tracking', lambda: state_dict_of(source(track_running_stats=False)), {}, True),
    ('no-running-stats-into-tracking-non-strict',
     lambda: state_dict_of(source(track_running_stats=False)), {}, False),
    ('no-running-stats-version-1-into-tracking',
     lambda: state_dict_of(source(track_running_stats=False), (), 1), {}, True),
    ('no-running-stats-into-no-running-stats', lambda: state_dict_of(source(track_running_stats=False)),
     dict(track_running_stats=False), True),
    ('tracking-into-no-running-stats', lambda: state_dict_of(source()), dict(track_running_stats=False), True),
    ('wrong-channel-count', lambda: state_dict_of(torch.nn.BatchNorm2d(C + 1)), {}, True),
    ('scale-only-into-affine', lambda: state_dict_of(source(bias=False)), {}, True),
]


@pytest.mark.parametrize('make,kwargs,strict', [s[1:] for s in STATE_DICTS], ids=[s[0] for s in STATE_DICTS])
def test_state_dict_loads_like_torch(make, kwargs, strict):
    ref, ours = torch.nn.BatchNorm2d(C, **kwargs), BatchNorm(C, **kwargs)
    if ref.num_batches_tracked is not None:
        # A count of our own, to see whether loading keeps it or replaces it
        ref.num_batches_tracked.fill_(7)
        ours.num_batches_tracked.fill_(7)
    state_dict = make()
    assert load(ours, copy.deepcopy(state_dict), strict) == load(ref, state_dict, strict)
    for (name, a), (_, b) in zip(ref.state_dict().items(), ours.state_dict().items()):
        assert torch.equal(a, b), name


def test_our_state_dict_has_torchs_format_version_and_round_trips():
    for kwargs in [{}, dict(affine=False), dict(track_running_stats=False), dict(bias=False)]:
        ours = BatchNorm(C, **kwargs)
        ours.train()(torch.randn(4, C, 2, 2))
        sd = ours.state_dict()
        assert sd._metadata[''] == torch.nn.BatchNorm2d(C).state_dict()._metadata['']
        ref = torch.nn.BatchNorm2d(C, **kwargs)
        assert load(ref, sd) == ('ok', [], [])
        back = BatchNorm(C, **kwargs)
        assert load(back, ref.state_dict()) == ('ok', [], [])
        for (name, a), (_, b) in zip(sd.items(), back.state_dict().items()):
            assert torch.equal(a, b), name


def test_old_checkpoint_of_a_whole_model():
    # A version-1 batch norm inside a model: the prefix is the submodule's name
    def model(norm):
        return torch.nn.Sequential(torch.nn.Conv2d(1, C, 1), norm(C))
    sd = model(torch.nn.BatchNorm2d).state_dict()
    del sd['1.num_batches_tracked']
    sd._metadata['1']['version'] = 1
    ours, ref = model(BatchNorm), model(torch.nn.BatchNorm2d)
    assert load(ours, OrderedDict(sd)) == load(ref, sd) == ('ok', [], [])


def test_old_checkpoint_into_a_meta_module():
    # Built on the meta device (no memory) and then loaded with assign=True: the counter,
    # absent from the checkpoint, has no value to keep and starts at 0, as in torch
    sd = state_dict_of(source(), ['num_batches_tracked'], 1)
    with torch.device('meta'):
        ours, ref = BatchNorm(C), torch.nn.BatchNorm2d(C)
    assert load(ours, sd, assign=True) == load(ref, sd, assign=True) == ('ok', [], [])
    assert ours.num_batches_tracked.device.type == 'cpu'
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 0
    torch.testing.assert_close(ours.running_var, ref.running_var)


# ## Code that finds batch norms by their class
#
# Training scripts leave γ and β out of weight decay by checking
# `isinstance(m, torch.nn.modules.batchnorm._BatchNorm)`, and so do torch's own helpers that
# look for batch norms. Ours is an instance of that class too, so such code finds it next to
# torch's in a mixed model.
def _mixed_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, C, 3, bias=False), BatchNorm(C), torch.nn.ReLU(),
        torch.nn.Conv2d(C, C, 1, bias=False), torch.nn.BatchNorm2d(C), torch.nn.Flatten(),
        torch.nn.Linear(C * 16, 4, bias=False), BatchNorm(4, bias=False))
    with torch.no_grad():
        for m in (model[1], model[4], model[7]):
            m.weight.uniform_(0.5, 1.5)
            if m.bias is not None:
                m.bias.uniform_(-0.5, 0.5)
    model(torch.randn(8, 2, 6, 6))  # some running statistics
    return model


def test_weight_decay_exclusion_by_class_finds_ours_and_torchs():
    model = _mixed_model()
    decay, no_decay = [], []
    for module in model.modules():
        is_norm = isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        (no_decay if is_norm else decay).extend(module.parameters(recurse=False))
    expected = [model[1].weight, model[1].bias, model[4].weight, model[4].bias,
                model[7].weight]
    assert [id(p) for p in no_decay] == [id(p) for p in expected]
    assert [id(p) for p in decay] == [id(model[i].weight) for i in (0, 3, 6)]
    # ours is still a labml_helpers module, and reads as one class
    from labml_helpers.module import Module
    assert isinstance(model[1], Module) and type(model[1]).__name__ == 'BatchNorm'


def test_torchs_helpers_that_find_batch_norms_by_class_find_ours():
    model = _mixed_model().eval()
    x = torch.randn(8, 2, 6, 6)
    expected = model(x)
    # torch's converter to its SyncBatchNorm, with our statistics and parameters
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    assert [type(synced[i]) for i in (1, 4, 7)] == [torch.nn.SyncBatchNorm] * 3
    assert torch.equal(synced[1].running_var, model[1].running_var)
    assert synced[7].bias is None
    # the fusion of a convolution with the batch norm after it
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(model[0], model[1])
    torch.testing.assert_close(fused(x), model[1](model[0](x)), rtol=1e-5, atol=1e-6)
    # SWA's recomputation of the running statistics (reset, then a plain average)
    swa = copy.deepcopy(model).train()
    batches = [torch.randn(8, 2, 6, 6) for _ in range(3)]
    torch.optim.swa_utils.update_bn(batches, swa)
    assert int(swa[1].num_batches_tracked) == int(swa[4].num_batches_tracked) == 3
    assert swa[1].momentum == 0.1
    # torch.func's switch to batch statistics
    func = copy.deepcopy(model)
    torch.func.replace_all_batch_norm_modules_(func)
    assert func[1].running_mean is None and not func[1].track_running_stats
    assert not torch.equal(func.train()(x), expected)


# ## Graph capture
#
# `torch.export` records what the forward does: the same outputs, and the same counter, as torch.
# TorchScript (deprecated in torch 2.13) compiles the forward from its source and cannot compile
# our hand-written `autograd.Function`; torch.fx treats torch's batch norm as a leaf but traces
# into ours, whose forward branches on the input's size. Both are refused, by torch, while
# compiling or tracing; `torch.export` and `torch.compile` are what to use.
@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last],
                         ids=['nchw', 'channels-last'])
@pytest.mark.parametrize('train', [True, False])
def test_torch_export_gives_torchs_outputs(train, memory_format):
    ref, ours = make_pair(4)
    x = randn((4, C, 5, 5), 0).contiguous(memory_format=memory_format)
    ref.train(train), ours.train(train)
    exported, exported_ref = (torch.export.export(m, (x,)).module() for m in (ours, ref))
    torch.testing.assert_close(exported(x + 1), exported_ref(x + 1), rtol=1e-4, atol=1e-5)
    for (name, a), (_, b) in zip(exported_ref.named_buffers(), exported.named_buffers()):
        torch.testing.assert_close(b, a, msg=lambda m: f'{name}: {m}')


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
@pytest.mark.parametrize('capture', ['torch.jit.script', 'torch.fx inside a model'])
def test_graph_capture_that_needs_the_source_is_refused(capture):
    def attempt(norm):
        if capture == 'torch.jit.script':
            return torch.jit.script(norm(C))
        return torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Conv2d(1, C, 1), norm(C)))
    attempt(torch.nn.BatchNorm2d)
    with pytest.raises(Exception):
        attempt(BatchNorm)
