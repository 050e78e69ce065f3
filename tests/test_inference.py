"""
Algorithm 2's inference tools: `recalibrate` (exact population statistics) and
`fold_batch_norm` (batch norms merged into the layer before them).
"""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from labml_nn_bn import BatchNorm, fold_batch_norm, recalibrate
from labml_nn_bn.experiments.mnist import Model

IMPLS = {
    'ours': lambda c, **kw: BatchNorm(c, **kw),
    'torch1d': lambda c, **kw: nn.BatchNorm1d(c, **kw),
    'torch2d': lambda c, **kw: nn.BatchNorm2d(c, **kw),
    'torch3d': lambda c, **kw: nn.BatchNorm3d(c, **kw),
}


def randomise(model):
    """Non-trivial γ, β and running statistics, as after training."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (BatchNorm, nn.modules.batchnorm._BatchNorm)):
                c = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(c, generator=g))
                    m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
                if m.weight is not None:
                    m.weight.copy_(torch.randn(c, generator=g))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(c, generator=g))
    return model


def relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def direct_statistics(inputs):
    """Algorithm 2 written out over a list of [B, C, *] batch-norm inputs, in float64."""
    means, variances = [], []
    for x in inputs:
        x = x.double().transpose(0, 1).reshape(x.shape[1], -1)  # [C, m]
        m = x.shape[1]
        means.append(x.mean(dim=1))
        # biased batch variance σ²_B
        variances.append(((x - x.mean(dim=1, keepdim=True)) ** 2).mean(dim=1))
    # E[x] = E_B[μ_B], Var[x] = m/(m−1) E_B[σ²_B]
    return torch.stack(means).mean(0), m / (m - 1) * torch.stack(variances).mean(0)


# ## recalibrate
@pytest.mark.parametrize('impl', ['ours', 'torch2d'])
def test_recalibrate_matches_algorithm_2_on_a_conv(impl):
    conv = nn.Conv2d(3, 4, 3, bias=False)
    model = nn.Sequential(conv, IMPLS[impl](4, momentum=0.1))
    batches = [torch.randn(5, 3, 6, 6) * 3 + 2 for _ in range(7)]
    with torch.no_grad():
        expected_mean, expected_var = direct_statistics([conv(x) for x in batches])
    params = copy.deepcopy(model.state_dict())
    recalibrate(model, batches)
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, expected_mean.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, expected_var.float(), rtol=1e-5, atol=1e-6)
    assert bn.num_batches_tracked.item() == 7
    # Only the statistics changed; the learned parameters did not, and nothing has grad
    assert torch.equal(bn.weight, params['1.weight']) and torch.equal(conv.weight, params['0.weight'])
    assert all(p.grad is None for p in model.parameters())


def test_recalibrate_uses_the_unbiased_factor_m_over_m_minus_1():
    # m = 4 × 2 × 2 = 16 values per channel: the factor is 16/15, not 4/3 or 1
    model = nn.Sequential(BatchNorm(2))
    batches = [torch.randn(4, 2, 2, 2) for _ in range(3)]
    recalibrate(model, batches)
    biased = torch.stack([x.double().var(dim=(0, 2, 3), unbiased=False) for x in batches]).mean(0)
    torch.testing.assert_close(model[0].running_var.double(), biased * 16 / 15, rtol=1e-6, atol=0)


@pytest.mark.parametrize('impl', ['ours', 'torch1d'])
def test_recalibrate_sees_the_training_network(impl):
    # The second batch norm's input is the first one's *training* output (batch statistics)
    lin1, lin2 = nn.Linear(6, 5), nn.Linear(5, 4, bias=False)
    bn1, bn2 = IMPLS[impl](5), IMPLS[impl](4)
    model = randomise(nn.Sequential(lin1, bn1, nn.Tanh(), lin2, bn2))
    model.eval()
    batches = [torch.randn(8, 6) for _ in range(5)]
    with torch.no_grad():
        inputs = [lin2(torch.tanh(F.batch_norm(lin1(x), None, None, bn1.weight, bn1.bias,
                                               training=True, eps=bn1.eps))) for x in batches]
    recalibrate(model, [(x, torch.zeros(8)) for x in batches])
    expected_mean, expected_var = direct_statistics(inputs)
    torch.testing.assert_close(bn2.running_mean, expected_mean.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn2.running_var, expected_var.float(), rtol=1e-5, atol=1e-6)
    # The model was in eval mode and still is
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize('momentum', [None, 0.1, 1.0])
def test_recalibrate_with_any_momentum_and_a_generator(momentum):
    model = nn.Sequential(BatchNorm(3, momentum=momentum))
    batches = [torch.randn(10, 3) + i for i in range(4)]
    recalibrate(model, (x for x in batches))
    expected_mean, expected_var = direct_statistics(batches)
    torch.testing.assert_close(model[0].running_mean, expected_mean.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[0].running_var, expected_var.float(), rtol=1e-5, atol=1e-6)
    assert model[0].num_batches_tracked.item() == 4


def test_momentum_none_continues_as_the_cumulative_average():
    # With momentum=None the moving average *is* Algorithm 2's average; after recalibrating
    # on some batches and training on more, it is still the average of all of them
    batches = [torch.randn(10, 3) * (i + 1) for i in range(6)]
    model = nn.Sequential(BatchNorm(3, momentum=None))
    recalibrate(model, batches[:4])
    model.train()
    for x in batches[4:]:
        model(x)
    expected_mean, expected_var = direct_statistics(batches)
    torch.testing.assert_close(model[0].running_mean, expected_mean.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[0].running_var, expected_var.float(), rtol=1e-5, atol=1e-6)


def test_recalibrate_restores_each_training_flag_and_changes_nothing_else():
    model = Model(bn_impl='ours')
    model.train()
    model.bn2.eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if 'running' not in k}
    recalibrate(model, [torch.randn(6, 1, 28, 28) for _ in range(2)])
    assert model.training and model.bn1.training and not model.bn2.training
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items() if 'num_batches' not in k)


def test_recalibrate_errors():
    with pytest.raises(ValueError, match='at least one batch norm'):
        recalibrate(nn.Sequential(nn.Linear(2, 2)), [torch.randn(3, 2)])
    with pytest.raises(ValueError, match='at least one batch'):
        recalibrate(nn.Sequential(BatchNorm(2)), [])
    with pytest.raises(TypeError, match='single tensor'):
        recalibrate(nn.Sequential(BatchNorm(2)), torch.randn(3, 2))
    with pytest.raises(TypeError, match='iterable'):
        recalibrate(nn.Sequential(BatchNorm(2)), 3)
    with pytest.raises(TypeError, match='torch.nn.Module'):
        recalibrate('model', [torch.randn(3, 2)])
    with pytest.raises(TypeError, match='tensor'):
        recalibrate(nn.Sequential(BatchNorm(2)), [['x']])
    # A batch that fails leaves the previous statistics in place
    model = randomise(nn.Sequential(BatchNorm(2)))
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match='at least 2 values'):
        recalibrate(model, [torch.randn(3, 2), torch.randn(1, 2)])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


# ## fold_batch_norm
def random_nets():
    yield 'linear+ours', nn.Sequential(nn.Linear(7, 6), BatchNorm(6), nn.ReLU(), nn.Linear(6, 3)), (5, 7)
    yield 'linear+torch, no bias, no affine', nn.Sequential(
        nn.Linear(7, 6, bias=False), nn.BatchNorm1d(6, affine=False)), (5, 7)
    yield 'conv1d+torch', nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4)), (2, 3, 9)
    yield 'conv2d+ours nested', nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, groups=1, bias=False), BatchNorm(8)),
        nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, groups=2), BatchNorm(4)), (2, 3, 8, 8)
    yield 'conv3d+torch', nn.Sequential(nn.Conv3d(2, 3, 2), nn.BatchNorm3d(3)), (2, 2, 4, 4, 4)
    yield 'grouped conv2d+ours no bias', nn.Sequential(
        nn.Conv2d(4, 6, 3, groups=2, bias=False), BatchNorm(6, bias=False)), (2, 4, 6, 6)


@pytest.mark.parametrize('name,net,shape', list(random_nets()), ids=[n for n, _, _ in random_nets()])
def test_fold_matches_the_unfolded_network(name, net, shape):
    net = randomise(net).eval()
    state = copy.deepcopy(net.state_dict())
    folded = fold_batch_norm(net)
    x = torch.randn(shape)
    assert relative_error(folded(x), net(x)) <= 1e-5
    # Every batch norm with running statistics is gone from the copy...
    assert not any(isinstance(m, (BatchNorm, nn.modules.batchnorm._BatchNorm))
                   for m in folded.modules())
    # ...and the original is untouched
    assert any(isinstance(m, (BatchNorm, nn.modules.batchnorm._BatchNorm)) for m in net.modules())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert not folded.training


@pytest.mark.parametrize('impl', ['ours', 'torch'])
@pytest.mark.parametrize('channels_last', [False, True])
def test_fold_the_mnist_cnn(impl, channels_last):
    model = randomise(Model(bn_impl=impl))
    model.train()
    x = torch.randn(16, 1, 28, 28)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    folded = fold_batch_norm(model)
    # The custom forward's `self.bn1(self.conv1(x))` calls are found by tracing
    assert all(isinstance(getattr(folded, f'bn{i}'), nn.Identity) for i in (1, 2, 3))
    assert isinstance(model.bn1, (BatchNorm, nn.BatchNorm2d)) and model.training
    model.eval()
    with torch.no_grad():
        assert relative_error(folded(x), model(x)) <= 1e-5
    if channels_last:
        assert folded.conv1.weight.is_contiguous(memory_format=torch.channels_last)


class SharedOutput(nn.Module):
    """The convolution's output goes to the batch norm *and* elsewhere: no fold allowed."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.bn = BatchNorm(3)
        self.lin = nn.Linear(3, 3)
        self.bn_after_relu = nn.BatchNorm1d(3)

    def forward(self, x):
        h = self.conv(x)
        y = self.bn(h) + h
        z = self.bn_after_relu(torch.relu(self.lin(y.mean(dim=(2, 3)))))
        return z


def test_fold_only_where_it_is_exact():
    model = randomise(SharedOutput()).eval()
    folded = fold_batch_norm(model)
    assert isinstance(folded.bn, BatchNorm) and isinstance(folded.bn_after_relu, nn.BatchNorm1d)
    x = torch.randn(4, 2, 3, 3)
    torch.testing.assert_close(folded(x), model(x))
    # Nor a batch norm that normalises with batch statistics in evaluation
    net = nn.Sequential(nn.Linear(3, 3), BatchNorm(3, track_running_stats=False))
    assert isinstance(fold_batch_norm(net)[1], BatchNorm)


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(2, 3, 3), BatchNorm(3))

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = -x
        return self.block(x)


def test_fold_falls_back_to_sequential_and_takes_explicit_pairs():
    model = randomise(Untraceable()).eval()
    folded = fold_batch_norm(model)
    assert isinstance(folded.block[1], nn.Identity)
    x = torch.randn(2, 2, 5, 5)
    assert relative_error(folded(x), model(x)) <= 1e-5

    model = randomise(SharedOutput()).eval()
    folded = fold_batch_norm(model, pairs=[('lin', 'bn_after_relu')])
    assert isinstance(folded.bn_after_relu, nn.Identity)
    with pytest.raises(ValueError, match='cannot fold'):
        fold_batch_norm(model, pairs=[('bn', 'lin')])
    with pytest.raises(ValueError, match='submodule'):
        fold_batch_norm(model, pairs=[('conv', 'nope')])
    with pytest.raises(TypeError, match='torch.nn.Module'):
        fold_batch_norm(lambda x: x)


def test_fold_speed_benchmark_runs(tmp_path):
    # The benchmark's plumbing (not its timings): a tiny run writes its JSON
    import importlib.util
    import json
    from conftest import ROOT
    spec = importlib.util.spec_from_file_location('fold_speed', ROOT / 'benchmarks' / 'fold_speed.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        module.main(['--device', 'cpu', '--batch-size', '4', '--repeats', '1', '--calls', '1',
                     '--threads', '1', '--out', str(tmp_path / 'fold.json')])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / 'fold.json').read_text())
    assert set(result['median_ms']) == {'ours', 'torch', 'folded', 'plain (no BN)'}
    assert result['folded_relative_error'] <= 1e-5
