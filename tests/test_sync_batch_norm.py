"""
Tests of `labml_nn_bn.sync_batch_norm`: `SyncBatchNorm` on every rank must compute what
`BatchNorm` computes on the batch concatenated over the ranks.

The distributed cases run in one group of 3 CPU processes (gloo on 127.0.0.1, a free port),
spawned once for this file. Each case is a function `case_*(rank, world, **kwargs)` run by all
ranks together; it returns numpy arrays, which the test compares here, in the pytest process,
with `BatchNorm` on the concatenated batch. Every comparison is paired with a check that the
unsynchronised computation would differ, so that none of them can pass by accident.
"""
import multiprocessing
import queue
import socket
import traceback
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from labml_nn_bn.batch_norm import BatchNorm
from labml_nn_bn.sync_batch_norm import (SyncBatchNorm, convert_sync_batch_norm, local_moments,
                                         merge_moments)

WORLD = 3
CHANNELS = 3
# Seconds a collective may wait inside the workers, and a case in the test process
COLLECTIVE_TIMEOUT = 30
CASE_TIMEOUT = 90


# ---- the process group ---------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank, world, port, inbox, outbox):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT))
    while True:
        job = inbox.get()
        if job is None:
            break
        name, kwargs = job
        try:
            torch.manual_seed(0)
            outbox.put((rank, True, globals()[name](rank, world, **kwargs)))
        except BaseException:
            outbox.put((rank, False, traceback.format_exc()))


class Group:
    """`world` spawned ranks that run the named case functions of this file together."""

    def __init__(self, world: int):
        ctx = multiprocessing.get_context('spawn')
        port = _free_port()
        self.world = world
        self.outbox = ctx.Queue()
        self.inboxes = [ctx.Queue() for _ in range(world)]
        self.processes = [ctx.Process(target=_worker, args=(r, world, port, self.inboxes[r], self.outbox),
                                      daemon=True) for r in range(world)]
        for p in self.processes:
            p.start()
        self.broken = None

    def run(self, case: str, **kwargs):
        """Every rank's result of `case`, in rank order; fails with a rank's traceback."""
        if self.broken:
            pytest.fail(f'the process group is broken: {self.broken}')
        for inbox in self.inboxes:
            inbox.put((case, kwargs))
        results, errors = {}, []
        for _ in range(self.world):
            try:
                rank, ok, value = self.outbox.get(timeout=CASE_TIMEOUT)
            except queue.Empty:
                self.broken = f'{case} did not finish in {CASE_TIMEOUT} s'
                pytest.fail(self.broken)
            if ok:
                results[rank] = value
            else:
                errors.append(f'rank {rank}:\n{value}')
        if errors:
            pytest.fail(f'{case} failed\n' + '\n'.join(errors))
        return [results[r] for r in range(self.world)]

    def close(self):
        for inbox in self.inboxes:
            inbox.put(None)
        for p in self.processes:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


@pytest.fixture(scope='module')
def group():
    g = Group(WORLD)
    yield g
    g.close()


def _np(t):
    return None if t is None else t.detach().to(torch.float64).numpy()


# ---- data shared by the ranks and the reference --------------------------------------------

def _bounds(sizes, rank):
    start = sum(sizes[:rank])
    return start, start + sizes[rank]


def _data(step, sizes, tail, dtype, channels_last, offset=0.):
    """
    The concatenated batch `x` ($[\\sum B_r, C, *tail]$) of one step and the weights `w` of the
    loss $\\sum_i w_i y_i$. Each rank's rows get their own per-channel shift and scale, so that
    a rank's own statistics are far from the global ones.
    """
    g = torch.Generator().manual_seed(1000 + step)
    n = sum(sizes)
    x = torch.randn(n, CHANNELS, *tail, generator=g)
    for r in range(len(sizes)):
        a, b = _bounds(sizes, r)
        shift = torch.randn(CHANNELS, generator=g) * 2 + r
        scale = torch.rand(CHANNELS, generator=g) * 2 + 0.5
        shape = [1, CHANNELS] + [1] * len(tail)
        x[a:b] = x[a:b] * scale.view(shape) + shift.view(shape)
    x = (x + offset).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if len(tail) == 2
                         else torch.channels_last_3d)
    w = torch.randn(n, CHANNELS, *tail, generator=g)
    return x, w


def _make(cls, affine, momentum, **kwargs):
    torch.manual_seed(0)
    bn = cls(CHANNELS, affine=affine, momentum=momentum, **kwargs)
    if affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return bn


def _steps(bn, xs, ws):
    """Training steps of `bn` on the batches `xs` with losses $\\sum_i w_i y_i$: per step, the
    output, the input gradient and the parameter gradients; and the final running statistics."""
    out = []
    for x, w in zip(xs, ws):
        x = x.clone().requires_grad_()
        y = bn(x)
        (y.float() * w).sum().backward()
        out.append({'y': y, 'grad_x': x.grad,
                    'grad_weight': None if bn.weight is None else bn.weight.grad,
                    'grad_bias': None if bn.bias is None else bn.bias.grad,
                    'channels_last': y.is_contiguous(memory_format=torch.channels_last)
                    if y.dim() == 4 else None})
        bn.zero_grad(set_to_none=True)
    stats = {k: getattr(bn, k) for k in ('running_mean', 'running_var', 'num_batches_tracked')}
    return out, stats


# ---- forward, backward and statistics against the concatenated batch -----------------------

def case_equivalence(rank, world, sizes, tail, dtype, channels_last, affine=True, momentum=0.1,
                     steps=2, offset=0.):
    dtype = getattr(torch, dtype)
    data = [_data(s, sizes, tail, dtype, channels_last, offset) for s in range(steps)]
    a, b = _bounds(sizes, rank)
    xs, ws = [x[a:b] for x, _ in data], [w[a:b] for _, w in data]
    out, stats = _steps(_make(SyncBatchNorm, affine, momentum), xs, ws)
    result = {'steps': [{k: (_np(v) if isinstance(v, torch.Tensor) else v) for k, v in o.items()}
                        for o in out],
              'stats': {k: _np(v) for k, v in stats.items()}}
    # The same module without synchronisation, where this rank has enough values for it
    if (b - a) * int(np.prod(tail)) > 1:
        local, _ = _steps(_make(BatchNorm, affine, momentum), xs[:1], ws[:1])
        result['unsynced_y'] = _np(local[0]['y'])
    return result


CASES = {
    # name: sizes per rank, tail (the dimensions after C), dtype, channels-last, affine, momentum
    '2d': ([4, 3, 5], (), 'float32', False, True, 0.1),
    '3d': ([2, 2, 3], (4,), 'float32', False, True, 0.1),
    '4d': ([2, 3, 1], (4, 5), 'float32', False, True, 0.1),
    '5d': ([1, 2, 2], (2, 3, 2), 'float32', False, True, 0.1),
    '4d-channels-last': ([2, 1, 3], (3, 4), 'float32', True, True, 0.1),
    '2d-uneven-empty': ([5, 0, 2], (), 'float32', False, True, 0.1),
    '4d-channels-last-empty': ([0, 3, 2], (3, 3), 'float32', True, True, 0.1),
    '2d-bf16-empty': ([3, 0, 4], (), 'bfloat16', False, True, 0.1),
    '4d-bf16': ([2, 3, 2], (3, 4), 'bfloat16', False, True, 0.1),
    '4d-bf16-channels-last': ([3, 2, 0], (4, 3), 'bfloat16', True, True, 0.1),
    # Without γ and β, and with the cumulative average of momentum=None
    '2d-plain-cumulative': ([4, 3, 5], (), 'float32', False, False, None),
    '4d-channels-last-empty-plain-cumulative': ([0, 3, 2], (3, 3), 'float32', True, False, None),
}


@pytest.mark.parametrize('name', list(CASES))
def test_equals_batch_norm_on_concatenated_batch(group, name):
    sizes, tail, dtype, channels_last, affine, momentum = CASES[name]
    steps = 2
    ranks = group.run('case_equivalence', sizes=sizes, tail=tail, dtype=dtype,
                      channels_last=channels_last, affine=affine, momentum=momentum, steps=steps)

    data = [_data(s, sizes, tail, getattr(torch, dtype), channels_last) for s in range(steps)]
    ref, ref_stats = _steps(_make(BatchNorm, affine, momentum), *zip(*data))
    bf16 = dtype == 'bfloat16'
    # `bfloat16` outputs of two float32 computations may round one last bit apart
    close = dict(rtol=2e-2, atol=2e-2) if bf16 else dict(rtol=1e-5, atol=1e-5)

    for step in range(steps):
        got = [r['steps'][step] for r in ranks]
        want = ref[step]
        # Output and input gradient: each rank's slice of the concatenated batch's
        np.testing.assert_allclose(np.concatenate([g['y'] for g in got]), _np(want['y']), **close)
        np.testing.assert_allclose(np.concatenate([g['grad_x'] for g in got]), _np(want['grad_x']),
                                   **close)
        # γ and β: the per-rank gradients add up to the concatenated batch's, as DDP adds them
        if affine:
            for key in ('grad_weight', 'grad_bias'):
                np.testing.assert_allclose(sum(g[key] for g in got), _np(want[key]),
                                           rtol=1e-4, atol=1e-3 if bf16 else 1e-5)
        else:
            assert all(g['grad_weight'] is None and g['grad_bias'] is None for g in got)
        # Memory format kept, on the empty rank too
        if channels_last:
            assert all(g['channels_last'] for g in got)
        for r, g in enumerate(got):
            assert g['y'].shape[0] == sizes[r] and g['grad_x'].shape[0] == sizes[r]

    # Running statistics on every rank: the concatenated batch's, with m / (m - 1) of global m
    for r in ranks:
        for key, value in ref_stats.items():
            np.testing.assert_allclose(r['stats'][key], _np(value), rtol=1e-5, atol=1e-6,
                                       err_msg=key)

    # Without synchronisation each rank would normalise differently: the test can fail
    y_ref = _np(ref[0]['y'])
    differences = [np.abs(r['unsynced_y'] - y_ref[slice(*_bounds(sizes, i))]).max()
                   for i, r in enumerate(ranks) if 'unsynced_y' in r]
    assert differences and max(differences) > 0.1


def case_large_mean(rank, world, sizes, offset):
    """The output of float32 input $\\mathcal{N}(\\text{offset}, \\sigma)$ per rank."""
    result = case_equivalence(rank, world, sizes=sizes, tail=(4, 4), dtype='float32',
                              channels_last=False, steps=1, offset=offset)
    return result['steps'][0]['y']


def test_statistics_merge_without_cancellation(group):
    # A mean 10⁴ times the standard deviation, where E[x²] − E[x]² in float32 breaks down
    sizes, offset = [8, 5, 3], 1e4
    ys = group.run('case_large_mean', sizes=sizes, offset=offset)
    x, w = _data(0, sizes, (4, 4), torch.float64, False, offset)
    ref = _make(BatchNorm, True, 0.1).double()(x)
    error = np.abs(np.concatenate(ys) - _np(ref)).max()
    assert error < 1e-4, error

    # What a merge of Σx and Σx² in float32 would give on the same data: far off
    x32 = x.float()
    n = x32.numel() // CHANNELS
    s1 = sum(x32[slice(*_bounds(sizes, r))].sum(dim=(0, 2, 3)) for r in range(WORLD))
    s2 = sum((x32[slice(*_bounds(sizes, r))] ** 2).sum(dim=(0, 2, 3)) for r in range(WORLD))
    naive_var = s2 / n - (s1 / n) ** 2
    true_var = x.var(dim=(0, 2, 3), unbiased=False)
    assert (naive_var.double() - true_var).abs().max() / true_var.max() > 0.1


def test_merge_moments_equals_moments_of_the_union():
    # Chan's merge on three parts, one empty, against the statistics of the whole
    x = torch.randn(11, 4, 3, dtype=torch.float64) * 3 + 7
    parts = [x[:6], x[6:6], x[6:]]
    n, mean, var = merge_moments(torch.stack([local_moments(p) for p in parts]))
    assert n == 33
    torch.testing.assert_close(mean, x.mean(dim=(0, 2)))
    torch.testing.assert_close(var, x.var(dim=(0, 2), unbiased=False))
    # Dropping the spread of the parts' means (the second sum) would be wrong
    within = sum(local_moments(p)[2] for p in parts) / n
    assert (within - var).abs().max() > 0.1


# ---- edge cases of the global count --------------------------------------------------------

def case_count_edge(rank, world, sizes):
    bn = SyncBatchNorm(CHANNELS)
    x = torch.randn(sizes[rank], CHANNELS, requires_grad=True)
    try:
        y = bn(x)
    except ValueError as e:
        return {'error': str(e)}
    y.sum().backward()
    return {'shape': tuple(y.shape), 'grad': _np(x.grad),
            'batches': int(bn.num_batches_tracked), 'mean': _np(bn.running_mean)}


def test_all_empty_and_single_value_batches(group):
    # No values anywhere: what BatchNorm does with an empty batch, an empty output and no
    # change to the averages
    empty = BatchNorm(CHANNELS)
    empty(torch.randn(0, CHANNELS))
    for r in group.run('case_count_edge', sizes=[0, 0, 0]):
        assert r['shape'] == (0, CHANNELS) and not r['mean'].any()
        assert r['batches'] == int(empty.num_batches_tracked)
    # One value over all ranks: every rank raises, none is left waiting in a collective
    for r in group.run('case_count_edge', sizes=[0, 1, 0]):
        assert 'expected more than 1 value per channel over all ranks' in r['error']
    # Two values, on different ranks: fine, although BatchNorm would refuse each rank's alone
    ranks = group.run('case_count_edge', sizes=[1, 0, 1])
    assert [r['batches'] for r in ranks] == [1, 1, 1]
    with pytest.raises(ValueError, match='expected more than 1 value per channel'):
        BatchNorm(CHANNELS)(torch.randn(1, CHANNELS))
    assert ranks[0]['grad'].shape == (1, CHANNELS) and np.isfinite(ranks[0]['grad']).all()


# ---- gradcheck through the collectives -----------------------------------------------------

class _Shard(torch.autograd.Function):
    """This rank's rows of the concatenated batch; the gradient comes back whole on every rank."""

    @staticmethod
    def forward(ctx, x, sizes, rank):
        ctx.sizes, ctx.rank = sizes, rank
        return x[slice(*_bounds(sizes, rank))].clone()

    @staticmethod
    def backward(ctx, grad):
        return _all_rows(grad, ctx.sizes), None, None


class _Gather(torch.autograd.Function):
    """Every rank's rows concatenated (the same on every rank); the gradient of one's own rows
    goes back, as the incoming gradient is the same on every rank."""

    @staticmethod
    def forward(ctx, y, sizes, rank):
        ctx.sizes, ctx.rank = sizes, rank
        return _all_rows(y, sizes)

    @staticmethod
    def backward(ctx, grad):
        return grad[slice(*_bounds(ctx.sizes, ctx.rank))].clone(), None, None


class _Replicate(torch.autograd.Function):
    """A parameter shared by the ranks, whose gradients are summed as DDP does."""

    @staticmethod
    def forward(ctx, p):
        return p.clone()

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _all_rows(t, sizes):
    """All ranks' row blocks of `t`, concatenated: rows padded to the largest, gathered, cut."""
    padded = t.new_zeros((max(sizes),) + tuple(t.shape[1:]))
    padded[:t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def case_gradcheck(rank, world, sizes, tail):
    bn = SyncBatchNorm(CHANNELS, dtype=torch.float64)
    torch.manual_seed(5)
    x = torch.randn(sum(sizes), CHANNELS, *tail, dtype=torch.float64, requires_grad=True)
    gamma = (torch.rand(CHANNELS, dtype=torch.float64) + 0.5).requires_grad_()
    beta = torch.randn(CHANNELS, dtype=torch.float64, requires_grad=True)

    # The same function of the whole batch on every rank, each rank computing its slice;
    # γ and β enter as the module's parameters, replicated like DDP's
    def f(x, gamma, beta):
        params = {'weight': _Replicate.apply(gamma), 'bias': _Replicate.apply(beta)}
        y = torch.func.functional_call(bn, params, (_Shard.apply(x, sizes, rank),))
        return _Gather.apply(y, sizes, rank)

    return torch.autograd.gradcheck(f, (x, gamma, beta), eps=1e-6, atol=1e-6)


def test_gradcheck_through_the_all_reduce(group):
    assert group.run('case_gradcheck', sizes=[2, 0, 1], tail=(2,)) == [True] * WORLD
    assert group.run('case_gradcheck', sizes=[2, 1, 2], tail=()) == [True] * WORLD



def case_transforms_refused(rank, world):
    """The message of each refusal, and whether the module changed, on every rank."""
    bn = SyncBatchNorm(CHANNELS)
    x = torch.randn(4, CHANNELS, 2)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    messages = {}

    def batched_gradients():
        xg = x.clone().requires_grad_()
        y = bn(xg)
        torch.autograd.grad(y, [xg, bn.weight], torch.randn(2, *y.shape),
                            is_grads_batched=True)

    calls = {'grad': lambda: torch.func.grad(lambda x: bn(x).sin().sum())(x),
             'vmap': lambda: torch.func.vmap(bn)(torch.stack([x, x + 1])),
             'jvp': lambda: torch.func.jvp(bn, (x,), (torch.ones_like(x),)),
             'is_grads_batched': batched_gradients}
    for name, call in calls.items():
        if name == 'is_grads_batched':
            # The transforms are refused before any change; the batch of gradients in
            # the backward pass, after the forward pass has counted its batch
            state = bn.state_dict()
            unchanged = all(torch.equal(v, state[k]) for k, v in before.items())
        try:
            call()
            messages[name] = None
        except Exception as e:
            messages[name] = f'{type(e).__name__}: {e}'
    return {'messages': messages, 'unchanged': unchanged,
            'batches': bn.num_batches_tracked.item()}


def test_torch_func_and_batched_gradients_across_ranks_are_refused_clearly(group):
    # torch.nn.SyncBatchNorm refuses these too; ours said "Batching rule not implemented
    # for c10d::allgather_" or "must override the setup_context staticmethod"
    for r in group.run('case_transforms_refused'):
        for name, message in r['messages'].items():
            assert message is not None, name
            assert message.startswith('ValueError: '), (name, message)
            assert 'SyncBatchNorm' in message and 'ranks' in message, (name, message)
        assert r['batches'] == 1 and r['unchanged']


# ---- without other ranks, and in evaluation --------------------------------------------------

def test_without_a_process_group_it_is_batch_norm():
    assert not dist.is_initialized()
    x = torch.randn(6, CHANNELS, 4, 4) * 3 + 1
    w = torch.randn_like(x)
    xs, ws = [x, x * 2 + 1], [w, w]
    (sync, sync_stats), (plain, plain_stats) = [
        _steps(_make(cls, True, 0.1), xs, ws) for cls in (SyncBatchNorm, BatchNorm)]
    for got, want in zip(sync, plain):
        for key in ('y', 'grad_x', 'grad_weight', 'grad_bias'):
            assert torch.equal(got[key], want[key]), key
    for key in sync_stats:
        assert torch.equal(sync_stats[key], plain_stats[key]), key
    assert int(sync_stats['num_batches_tracked']) == 2


def case_subgroups(rank, world, sizes):
    """Groups of one (every rank alone) and a group of ranks 0, 1 with rank 2 alone."""
    alone, _ = dist.new_subgroups(group_size=1)
    pairs = [dist.new_group([0, 1]), dist.new_group([2])]
    result = {}
    data = [_data(0, sizes, (3,), torch.float32, False)]
    for name, grp in (('alone', alone), ('pair', pairs[0] if rank < 2 else pairs[1])):
        a, b = _bounds(sizes, rank)
        out, stats = _steps(_make(SyncBatchNorm, True, 0.1, process_group=grp),
                            [data[0][0][a:b]], [data[0][1][a:b]])
        result[name] = {'y': _np(out[0]['y']), 'grad_x': _np(out[0]['grad_x']),
                        'running_var': _np(stats['running_var'])}
    return result


def test_process_group_of_one_and_subgroups(group):
    sizes = [3, 2, 4]
    ranks = group.run('case_subgroups', sizes=sizes)
    x, w = _data(0, sizes, (3,), torch.float32, False)

    def reference(a, b):
        out, stats = _steps(_make(BatchNorm, True, 0.1), [x[a:b]], [w[a:b]])
        return _np(out[0]['y']), _np(out[0]['grad_x']), _np(stats['running_var'])

    # A group of one: exactly BatchNorm on the rank's own slice
    for r, got in enumerate(ranks):
        y, grad_x, var = reference(*_bounds(sizes, r))
        np.testing.assert_array_equal(got['alone']['y'], y)
        np.testing.assert_array_equal(got['alone']['grad_x'], grad_x)
        np.testing.assert_array_equal(got['alone']['running_var'], var)
    # Ranks 0 and 1 together: their concatenated batch, not all three ranks'
    y, grad_x, var = reference(0, sizes[0] + sizes[1])
    np.testing.assert_allclose(np.concatenate([ranks[0]['pair']['y'], ranks[1]['pair']['y']]), y,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([ranks[0]['pair']['grad_x'],
                                               ranks[1]['pair']['grad_x']]), grad_x,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ranks[1]['pair']['running_var'], var, rtol=1e-5)
    np.testing.assert_array_equal(ranks[2]['pair']['y'], ranks[2]['alone']['y'])
    assert np.abs(ranks[0]['pair']['y'] - ranks[0]['alone']['y']).max() > 0.1


def _refuse(*args, **kwargs):
    raise AssertionError('communicated')


def case_eval_without_communication(rank, world):
    bn = _make(SyncBatchNorm, True, 0.1)
    no_stats = SyncBatchNorm(CHANNELS, track_running_stats=False)
    x = torch.randn(4, CHANNELS, 2, 2) + rank
    saved = dist.all_gather, dist.all_reduce
    dist.all_gather, dist.all_reduce = _refuse, _refuse
    try:
        # Training would communicate: the patched collectives catch it
        try:
            bn(x)
            trained = True
        except AssertionError:
            trained = False
        bn.eval()
        no_stats.eval()
        # Different numbers of calls on different ranks: fine without collectives
        for _ in range(rank + 1):
            y = bn(x)
            y_local = no_stats(x)
    finally:
        dist.all_gather, dist.all_reduce = saved
    expected = BatchNorm(CHANNELS, track_running_stats=False)(x)
    return {'trained': trained, 'y': _np(y), 'x': _np(x), 'local_ok': torch.equal(y_local, expected)}


def test_evaluation_does_not_communicate(group):
    for r in group.run('case_eval_without_communication'):
        assert r['trained'] is False
        # Population statistics at their initial values: y = γ x / √(1 + ε) + β
        bn = _make(BatchNorm, True, 0.1).eval()
        np.testing.assert_allclose(r['y'], _np(bn(torch.from_numpy(r['x']).float())), rtol=1e-6)
        assert r['local_ok']


# ---- converting a model --------------------------------------------------------------------

def test_convert_the_mnist_cnn():
    from labml_nn_bn.experiments.mnist import Model
    for impl in ('ours', 'torch'):
        model = Model(batch_norm=True, bn_impl=impl)
        # Some history in the statistics, and one layer left in evaluation mode
        model(torch.randn(8, 1, 28, 28))
        model.bn2.eval()
        x = torch.randn(5, 1, 28, 28)
        y_before = model(x)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        params = dict(model.named_parameters())
        originals = [model.bn1, model.bn2, model.bn3]

        converted = convert_sync_batch_norm(model)
        assert converted is model
        norms = [model.bn1, model.bn2, model.bn3]
        assert all(type(m) is SyncBatchNorm for m in norms)
        # Every batch norm is now ours, synchronised (ours counts as a torch batch norm too)
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                       and not isinstance(m, SyncBatchNorm) for m in model.modules())
        assert [m.channels for m in norms] == [o.num_features for o in originals]
        # 570 channels: the page's count of numbers communicated per step is 3 and 2 times this
        assert sum(m.channels for m in norms) == 570
        # The same parameter objects, so an optimiser built before still trains the model
        assert all(p is params[n] for n, p in model.named_parameters())
        after = model.state_dict()
        assert after.keys() == before.keys()
        for k in before:
            assert torch.equal(after[k], before[k]), k
        assert [m.training for m in norms] == [True, False, True]
        # Outside a process group the converted model computes what it computed before
        torch.testing.assert_close(model(x), y_before)


def test_convert_keeps_flags_device_and_dtype():
    model = torch.nn.Sequential(
        torch.nn.BatchNorm1d(4, eps=1e-3, momentum=None, affine=False),
        torch.nn.Sequential(torch.nn.BatchNorm3d(5, track_running_stats=False, bias=False)),
        BatchNorm(6, momentum=0.3, bias=False),
    ).to(torch.float64)
    model.train(False)
    convert_sync_batch_norm(model, process_group='group')
    first, second, third = model[0], model[1][0], model[2]
    assert all(type(m) is SyncBatchNorm for m in (first, second, third))
    assert (first.eps, first.momentum, first.affine, first.weight) == (1e-3, None, False, None)
    assert first.running_mean.dtype == torch.float64
    assert second.running_mean is None and second.weight.dtype == torch.float64
    assert second.bias is None and third.bias is None and third.momentum == 0.3
    assert all(m.process_group == 'group' and not m.training for m in (first, second, third))
    # A batch norm itself comes back converted
    assert type(convert_sync_batch_norm(torch.nn.BatchNorm2d(3))) is SyncBatchNorm
    # Lazy batch norms do not know their channels yet
    with pytest.raises(ValueError, match='before its first forward pass'):
        convert_sync_batch_norm(torch.nn.LazyBatchNorm2d())
    with pytest.raises(TypeError, match='expected a torch.nn.Module, got int'):
        convert_sync_batch_norm(3)


def test_convert_a_batch_norm_registered_under_several_names():
    # One batch norm under two names of one parent and a third in another: all three names
    # get the same new module, so what was shared stays shared
    bn = torch.nn.BatchNorm1d(3)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), bn)
    model.alias = bn
    model.add_module('nested', torch.nn.Sequential(bn))
    assert convert_sync_batch_norm(model) is model
    assert type(model[1]) is SyncBatchNorm
    assert model.alias is model[1] and model.nested[0] is model[1]
    assert model[1].weight is bn.weight
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   and not isinstance(m, SyncBatchNorm) for m in model.modules())


def test_a_refused_conversion_names_the_module_and_changes_nothing():
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3),
                                torch.nn.Sequential(torch.nn.Linear(3, 3),
                                                    torch.nn.LazyBatchNorm1d()))
    first = model[0]
    with pytest.raises(ValueError, match=r"cannot convert '1.1' \(LazyBatchNorm1d\) before its "
                                         r"first forward pass"):
        convert_sync_batch_norm(model)
    assert model[0] is first
    # Flags that promise tensors the module does not hold
    broken = BatchNorm(3)
    broken.weight = None
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Sequential(broken))
    first = model[0]
    with pytest.raises(ValueError, match=r"cannot convert '1.0' \(BatchNorm\): its flags"):
        convert_sync_batch_norm(model)
    assert model[0] is first
    # A batch norm given on its own is named as the model
    with pytest.raises(ValueError, match=r"cannot convert the model \(LazyBatchNorm2d\)"):
        convert_sync_batch_norm(torch.nn.LazyBatchNorm2d())


# ---- data-parallel training of the MNIST CNN -----------------------------------------------

# In float64, so that rounding (sums taken in another order) stays far below the tolerance
STEPS, GLOBAL_BATCH, LR = 5, 11, 0.05


def _training_data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(STEPS * GLOBAL_BATCH, 1, 28, 28, generator=g, dtype=torch.float64), \
        torch.randint(0, 10, (STEPS * GLOBAL_BATCH,), generator=g)


def _flat_parameters(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def case_ddp_training(rank, world, sync):
    from torch.nn.parallel import DistributedDataParallel
    from labml_nn_bn import data
    from labml_nn_bn.experiments import mnist_ddp
    from labml_nn_bn.experiments.mnist import Model
    torch.manual_seed(0)
    model = Model(batch_norm=True).double()
    if sync:
        model = convert_sync_batch_norm(model)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=0.9)
    x, y = _training_data()
    history = []
    for xb, yb in data.batches(x, y, GLOBAL_BATCH, generator=torch.Generator().manual_seed(0)):
        share = mnist_ddp.shard(len(yb), rank, world)
        mnist_ddp.train_step(ddp, optimizer, xb[share], yb[share], len(yb), world)
        history.append(_np(_flat_parameters(model)))
    stats = _np(torch.cat([model.bn1.running_mean, model.bn3.running_var]))
    # The experiment's epoch and evaluation on the same data: one more pass, then the test
    loss, accuracy = mnist_ddp.train_epoch(ddp, optimizer, x, y, GLOBAL_BATCH,
                                           torch.Generator().manual_seed(1), rank, world)
    test = mnist_ddp.evaluate(model, x[:7], y[:7], rank, world, batch_size=2)
    return {'history': history, 'stats': stats, 'epoch': (loss, accuracy), 'test': test,
            'final': _np(_flat_parameters(model))}


def test_ddp_training_equals_single_process_training(group):
    from labml_nn_bn import data
    from labml_nn_bn.experiments.mnist import Model
    torch.manual_seed(0)
    model = Model(batch_norm=True).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    x, y = _training_data()
    history = []
    for xb, yb in data.batches(x, y, GLOBAL_BATCH, generator=torch.Generator().manual_seed(0)):
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(_np(_flat_parameters(model)))
    assert len(history) == STEPS

    synced = group.run('case_ddp_training', sync=True)
    for r in synced:
        for step, (got, want) in enumerate(zip(r['history'], history)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f'step {step}')
        np.testing.assert_allclose(r['stats'], _np(torch.cat([model.bn1.running_mean,
                                                               model.bn3.running_var])),
                                   rtol=1e-10, atol=1e-12)
        # Every rank agrees on the epoch's loss and accuracy and on the test numbers
        assert r['epoch'] == synced[0]['epoch'] and r['test'] == synced[0]['test']
        np.testing.assert_array_equal(r['final'], synced[0]['final'])

    # The experiment's epoch and evaluation against one process on the same batches
    total, correct = 0., 0
    model.train()
    for xb, yb in data.batches(x, y, GLOBAL_BATCH, generator=torch.Generator().manual_seed(1),
                               drop_last=True):
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(yb)
        correct += (logits.argmax(1) == yb).sum().item()
    np.testing.assert_allclose(synced[0]['epoch'], (total / len(y), correct / len(y)), rtol=1e-10)
    np.testing.assert_allclose(synced[0]['final'], _np(_flat_parameters(model)), rtol=1e-10,
                               atol=1e-12)
    model.eval()
    with torch.no_grad():
        logits = model(x[:7])
    test = (F.cross_entropy(logits, y[:7]).item(), (logits.argmax(1) == y[:7]).double().mean().item())
    np.testing.assert_allclose(synced[0]['test'], test, rtol=1e-10)

    # Without synchronisation the same run departs from one process's at the first step
    unsynced = group.run('case_ddp_training', sync=False)
    assert np.abs(unsynced[0]['history'][0] - history[0]).max() > 1e-3


def case_divergence(rank, world, lr, nan_on_rank=None, first_step=0):
    from torch.nn.parallel import DistributedDataParallel
    from labml_nn_bn.experiments import mnist_ddp, trainer
    from labml_nn_bn.experiments.mnist import Model
    torch.manual_seed(0)
    ddp = DistributedDataParallel(Model(batch_norm=True))
    optimizer = torch.optim.SGD(ddp.parameters(), lr=lr)
    x, y = _training_data()
    x = x.float()
    if rank == nan_on_rank:
        x = torch.full_like(x, float('nan'))
    kwargs = {'first_step': first_step} if first_step else {}
    try:
        mnist_ddp.train_epoch(ddp, optimizer, x, y, GLOBAL_BATCH,
                              torch.Generator().manual_seed(0), rank, world, **kwargs)
    except trainer.DivergenceError as e:
        return {'step': e.step, 'message': str(e)}
    return {'step': None, 'message': ''}


def test_ddp_training_stops_on_every_rank_at_the_first_non_finite_loss(group):
    # Only rank 1's share is non-finite at step 1; without agreeing, the others would stop one
    # step later (when the averaged gradient has spread the NaN), or never
    ranks = group.run('case_divergence', lr=0.01, nan_on_rank=1)
    assert [r['step'] for r in ranks] == [1] * WORLD, ranks
    assert all(r['message'].startswith('training diverged: the loss is nan at step 1,')
               for r in ranks)
    # The command line's --lr 1e30: every rank stops at the same step, counted across epochs
    ranks = group.run('case_divergence', lr=1e30, first_step=10)
    steps = {r['step'] for r in ranks}
    assert len(steps) == 1 and steps.pop() > 10, ranks
    assert all('--lr (now 1e+30)' in r['message'] for r in ranks)


# ---- the experiment's command line -----------------------------------------------------------

def test_experiment_command_line_errors(capsys):
    from labml_nn_bn.experiments import mnist_ddp
    assert mnist_ddp.parse_args(['--no-sync', '--batch-size', '8'], world=2)['sync'] is False
    bad = [
        ([], None, 'expected to be started by torchrun'),
        (['--batch-size', '2'], 3, 'argument --batch-size: expected at least 3 for 3 processes with sync'),
        (['--no-sync', '--batch-size', '6'], 4,
         'argument --batch-size: expected at least 8 for 4 processes without sync, got 6'),
        (['--batch-size', '1'], 1, 'argument --batch-size: expected at least 2, got 1'),
        (['--epochs', '0'], 2, 'argument --epochs: expected at least 1, got 0'),
        (['--lr', '0'], 2, 'argument --lr: expected a finite number > 0'),
        (['--dataset', 'idx'], 2, 'idx needs --data-dir'),
        (['--device', 'tpu'], 2, "argument --device: invalid choice: 'tpu'"),
    ]
    for argv, world, message in bad:
        with pytest.raises(SystemExit) as e:
            mnist_ddp.parse_args(argv, world)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and err[-1].startswith('torchrun --nproc_per_node N -m '
                                                         'labml_nn_bn.experiments.mnist_ddp: error:'), err


def _launch(args, world, tmp_path, **env):
    """`world` processes of the experiment, started with the environment torchrun gives."""
    import os
    import subprocess
    import sys
    from conftest import ROOT
    port = _free_port()
    processes = []
    for rank in range(world):
        environ = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                       LOCAL_WORLD_SIZE=str(world), MASTER_ADDR='127.0.0.1',
                       MASTER_PORT=str(port), OMP_NUM_THREADS='1', HOME=str(tmp_path),
                       PYTHONPATH=str(ROOT), **env)
        processes.append(subprocess.Popen(
            [sys.executable, '-m', 'labml_nn_bn.experiments.mnist_ddp', '--dataset', 'mnist-5k',
             '--device', 'cpu', '--logs-dir', str(tmp_path / 'logs')] + args,
            cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    return processes


def _finish(processes, timeout=240):
    results = []
    for p in processes:
        try:
            out, err = p.communicate(timeout=timeout)
        except Exception:
            p.kill()
            raise
        results.append((p.returncode, out, err))
    return results


def test_a_diverged_run_exits_1_with_one_line(tmp_path):
    (code0, out0, err0), (code1, out1, err1) = _finish(_launch(
        ['--lr', '1e30', '--epochs', '1', '--train-limit', '256'], 2, tmp_path))
    assert (code0, code1) == (1, 1), (err0, err1)
    lines = err0.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        'torchrun --nproc_per_node N -m labml_nn_bn.experiments.mnist_ddp: error: training '
        'diverged: the loss is '), err0
    assert 'Final test accuracy' not in out0
    assert err1.strip() == '', err1


def test_the_survivor_of_a_killed_rank_says_which_rank_went_away(tmp_path):
    import time
    processes = _launch(['--epochs', '5'], 2, tmp_path)
    try:
        # Rank 0 names the processes just before training starts
        deadline = time.monotonic() + 240
        for line in processes[0].stdout:
            if line.startswith('Processes:') or time.monotonic() > deadline:
                break
        processes[1].kill()
        (code, out, err), _ = _finish(processes, timeout=120)
    finally:
        for p in processes:
            p.kill()
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('torchrun --nproc_per_node N -m labml_nn_bn.experiments.mnist_ddp: '
                               'error: rank 0 lost contact with rank 1, whose process has '
                               'stopped'), err


@pytest.mark.parametrize('rank', [0, 1])
def test_a_malformed_labml_yaml_is_said_once_by_process_0(rank, tmp_path, monkeypatch, capsys):
    # Under torchrun every process reads the same .labml.yaml: one line in all, from process 0
    from labml_nn_bn.experiments import mnist_ddp
    (tmp_path / '.labml.yaml').write_text('data_path: 5\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('RANK', str(rank))
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(SystemExit) as e:
        mnist_ddp.main(['--dataset', 'mnist-5k', '--epochs', '1'])
    assert e.value.code == 1
    err = capsys.readouterr().err
    if rank == 0:
        assert err.strip().splitlines() == [
            f'{mnist_ddp.PROG}: error: {tmp_path / ".labml.yaml"}: '
            + err.split(str(tmp_path / '.labml.yaml') + ': ', 1)[1].strip()]
        assert 'data_path' in err
    else:
        assert err == ''
