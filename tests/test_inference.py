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
    """Algorithm 2 written out over a list of [N, C, *] batch-norm inputs, in float64."""
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


class SkipsOneNorm(nn.Module):
    """The second batch norm is never called."""

    def __init__(self):
        super().__init__()
        self.used, self.unused = BatchNorm(3), nn.BatchNorm1d(3)
        self.sn = torch.nn.utils.parametrizations.spectral_norm(nn.Linear(3, 3))
        # A power iteration far from converged, so that every training forward changes it
        with torch.no_grad():
            self.sn.parametrizations.weight[0]._u.copy_(torch.tensor([1., 0., 0.]))

    def forward(self, x):
        return self.sn(self.used(x))


def test_a_refused_recalibration_leaves_the_model_as_it_was():
    model = randomise(SkipsOneNorm())
    model.train()
    model.used.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    with pytest.raises(ValueError, match="'unused' .*was never called"):
        recalibrate(model, [torch.randn(5, 3) for _ in range(4)])
    after = model.state_dict()
    assert after.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(v, after[k]) and v.dtype == after[k].dtype, k
    assert [m.training for m in model.modules()] == modes


def test_recalibrate_changes_no_buffer_but_the_statistics():
    # The spectral norm's power iteration runs in training mode; its vectors stay as they were
    model = randomise(SkipsOneNorm())
    model.forward = lambda x: model.unused(model.sn(model.used(x)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate(model, [torch.randn(5, 3) for _ in range(3)])
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f'{bn}.{s}' for bn in ('used', 'unused')
                       for s in ('running_mean', 'running_var', 'num_batches_tracked')}


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



@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
@pytest.mark.parametrize('impl', ['ours', 'torch2d'])
def test_recalibrate_refuses_non_finite_statistics(impl, bad):
    # A NaN or inf in one batch would make every running mean NaN; the call names the
    # batch and the batch norm, and leaves the model exactly as it was
    torch.manual_seed(0)
    model = randomise(nn.Sequential(nn.Conv2d(3, 3, 1), IMPLS[impl](3), nn.ReLU(),
                                    nn.Conv2d(3, 3, 1), IMPLS[impl](3)))
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    poisoned = torch.randn(4, 3, 2, 2)
    poisoned[1, 2, 0, 1] = bad
    batches = [torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2), poisoned]
    with pytest.raises(ValueError, match=r"non-finite.*'1' .*batch 2 "):
        recalibrate(model, batches)
    after = model.state_dict()
    for k, v in state.items():
        assert torch.equal(v, after[k]), k
    assert not any(m.training for m in model.modules())


def test_recalibrate_refuses_a_nan_batch_as_in_the_report():
    model = nn.Sequential(BatchNorm(3))
    with pytest.raises(ValueError, match=r"non-finite.*'0' \(BatchNorm\) in batch 1 "):
        recalibrate(model, [torch.randn(4, 3, 2, 2),
                            torch.full((4, 3, 2, 2), float('nan'))])
    assert torch.equal(model[0].running_mean, torch.zeros(3))
    assert torch.equal(model[0].running_var, torch.ones(3))
    assert model[0].num_batches_tracked.item() == 0



@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('impl', ['ours', 'torch1d'])
def test_recalibrate_refuses_statistics_beyond_the_buffers_range(impl, dtype):
    # A variance of 1e60 is finite in the float64 sums but infinite as float32 (and one
    # of 1e6, as float16): the buffers would hold inf and every output would be beta
    scale = 1e30 if dtype == torch.float32 else 1e3
    model = nn.Sequential(IMPLS['ours'](3), IMPLS[impl](3)).to(dtype)
    model.forward = lambda x: model[1](model[0](x) * scale)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [torch.randn(8, 3).to(dtype) for _ in range(2)]
    name = type(model[1]).__name__
    with pytest.raises(ValueError, match=rf"'1' \({name}\).*{dtype}"):
        recalibrate(model, batches)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in state.items())


def test_recalibrate_refuses_a_batch_without_a_channel_dimension():
    model = nn.Sequential(nn.Identity(), BatchNorm(3))
    with pytest.raises(ValueError, match=r"shape \(N, C, \.\.\.\).* \(3,\) .*'1' "
                                         r"\(BatchNorm\).*batch 1"):
        recalibrate(model, [torch.randn(4, 3), torch.randn(3)])
    assert model[1].num_batches_tracked.item() == 0


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


def test_fold_an_untraceable_model_only_with_explicit_pairs():
    model = randomise(Untraceable()).eval()
    # Which layers feed which batch norms cannot be read off an untraceable forward
    with pytest.raises(ValueError, match=r"torch.fx cannot trace Untraceable.forward .*"
                                         r"pairs=\[\('block.0', 'block.1'\)\]"):
        fold_batch_norm(model)
    # Named by the user, the pair is folded
    folded = fold_batch_norm(model, pairs=[('block.0', 'block.1')])
    assert isinstance(folded.block[1], nn.Identity)
    x = torch.randn(2, 2, 5, 5)
    assert relative_error(folded(x), model(x)) <= 1e-5


class SkipAroundTheNorm(nn.Module):
    """Untraceable; the convolution's raw output is also added after the batch norm."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(2, 3, 1), BatchNorm(3))

    def forward(self, x):
        if x.sum() > 0:
            x = -x
        h = self.layers[0](x)
        return self.layers[1](h) + h


class ReversedSequential(nn.Module):
    """Untraceable; the neighbours of the `nn.Sequential` are called in the other order."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))

    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return self.layers[0](self.layers[1](x))


@pytest.mark.parametrize('cls,shape', [(SkipAroundTheNorm, (3, 2, 4, 4)),
                                       (ReversedSequential, (5, 4))])
def test_neighbours_in_a_sequential_are_no_proof_of_a_chain(cls, shape):
    # These folded with an error of 3 to 4 when untraceable models fell back to neighbours
    model = randomise(cls()).eval()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match='cannot trace'):
        fold_batch_norm(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_explicit_pairs_are_checked():
    model = randomise(SharedOutput()).eval()
    with pytest.raises(ValueError, match='cannot fold'):
        fold_batch_norm(model, pairs=[('bn', 'lin')])
    with pytest.raises(ValueError, match='submodule'):
        fold_batch_norm(model, pairs=[('conv', 'nope')])
    with pytest.raises(TypeError, match='torch.nn.Module'):
        fold_batch_norm(lambda x: x)
    # A ReLU between the layer and the batch norm: bn(relu(lin(x))) is not a fold
    with pytest.raises(ValueError, match="'bn_after_relu' does not take 'lin''s output"):
        fold_batch_norm(model, pairs=[('lin', 'bn_after_relu')])
    # The convolution's output also goes around its batch norm
    with pytest.raises(ValueError, match="'conv''s output is also used"):
        fold_batch_norm(model, pairs=[('conv', 'bn')])

    net = randomise(nn.Sequential(nn.Linear(4, 4), BatchNorm(4), nn.Linear(4, 4),
                                  BatchNorm(4))).eval()
    x = torch.randn(6, 4)
    # A pair given twice would fold twice
    with pytest.raises(ValueError, match="'0' named in more than one pair"):
        fold_batch_norm(net, pairs=[('0', '1'), ('0', '1')])
    with pytest.raises(ValueError, match="'1' named in more than one pair"):
        fold_batch_norm(net, pairs=[('0', '1'), ('2', '1')])
    with pytest.raises(TypeError, match='expected pairs'):
        fold_batch_norm(net, pairs=('0', '1'))
    # Not neighbours in forward: layer 0 feeds batch norm 1, which feeds layer 2
    with pytest.raises(ValueError, match="'3' does not take '0''s output"):
        fold_batch_norm(net, pairs=[('0', '3')])
    # A subset of the chains is folded, and only it
    folded = fold_batch_norm(net, pairs=[['2', '3']])
    assert isinstance(folded[1], BatchNorm) and isinstance(folded[3], nn.Identity)
    assert relative_error(folded(x), net(x)) <= 1e-5


# ### The batch norm's channel dimension must be the layer's features
#
# A batch norm normalises dimension 1 of its input. After a `Linear` on a `[N, L, C]`
# input that is $L$, not the linear's features $C$: with $L = C$ the channel counts
# agree, and a fold would scale the wrong dimension.
@pytest.mark.parametrize('impl', ['ours', 'torch1d'])
def test_a_folded_linear_refuses_inputs_whose_features_are_not_in_dimension_1(impl):
    net = randomise(nn.Sequential(nn.Linear(5, 5), IMPLS[impl](5))).eval()
    folded = fold_batch_norm(net)
    x = torch.randn(3, 5, 5)
    with torch.no_grad():
        # The unfolded network normalises the L dimension; the fold cannot
        assert relative_error(folded[0](x), net(x)) > 0.1
        with pytest.raises(ValueError, match=r"folded into '0' expects .*2 dimensions.*"
                                             r"got shape \(3, 5, 5\)"):
            folded(x)
        # [N, C]: the features are in dimension 1, and the fold is exact
        x = torch.randn(4, 5)
        assert relative_error(folded(x), net(x)) <= 1e-5


def test_a_folded_convolution_refuses_an_unbatched_input():
    # An unbatched Conv1d output is [C, L]: our BatchNorm then normalises L
    net = randomise(nn.Sequential(nn.Conv1d(4, 4, 1), BatchNorm(4))).eval()
    folded = fold_batch_norm(net)
    with torch.no_grad():
        with pytest.raises(ValueError, match='3 dimensions'):
            folded(torch.randn(4, 4))
        x = torch.randn(2, 4, 4)
        assert relative_error(folded(x), net(x)) <= 1e-5


def test_the_folded_model_can_be_traced_and_folded_again():
    net = randomise(nn.Sequential(nn.Linear(5, 5), BatchNorm(5), nn.ReLU())).eval()
    folded = fold_batch_norm(net)
    traced = torch.fx.symbolic_trace(folded)
    x = torch.randn(3, 5)
    torch.testing.assert_close(traced(x), folded(x))
    # The check survives tracing
    with pytest.raises(ValueError, match='expects'):
        traced(torch.randn(3, 5, 5))
    torch.testing.assert_close(fold_batch_norm(folded)(x), folded(x))


# ### Reparametrised and shared weights
#
# With a weight computed from other tensors (weight norm, spectral norm) or a parametrised
# bias, the layer's `weight` is not the tensor the fold may change.
class Affine(nn.Module):
    def forward(self, b):
        return b * 2 + 1


def _parametrised_bias(layer):
    torch.nn.utils.parametrize.register_parametrization(layer, 'bias', Affine())
    return layer


REPARAMETRISED = {
    'weight_norm': lambda: torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 4, 3)),
    'spectral_norm': lambda: torch.nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 4, 3)),
    'old weight_norm': lambda: torch.nn.utils.weight_norm(nn.Conv2d(3, 4, 3)),
    'old spectral_norm': lambda: torch.nn.utils.spectral_norm(nn.Conv2d(3, 4, 3)),
    'parametrised bias': lambda: _parametrised_bias(nn.Conv2d(3, 4, 3)),
    'weight_norm linear': lambda: torch.nn.utils.parametrizations.weight_norm(nn.Linear(3, 4)),
}


@pytest.mark.filterwarnings('ignore:.*torch.nn.utils.weight_norm. is deprecated:FutureWarning')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('name', list(REPARAMETRISED))
def test_fold_a_reparametrised_layer(name, dtype):
    torch.manual_seed(0)
    layer = REPARAMETRISED[name]()
    model = randomise(nn.Sequential(layer, BatchNorm(4))).to(dtype)
    shape = (5, 3) if isinstance(layer, nn.Linear) else (2, 3, 6, 6)
    # Some training steps' history (the spectral norms' power iterations), then inference
    model.train()
    model(torch.randn(shape, dtype=dtype))
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batch_norm(model)
    x = torch.randn(shape, dtype=dtype)
    with torch.no_grad():
        error = relative_error(folded(x), model(x))
    assert error <= (1e-5 if dtype == torch.float32 else 1e-12), error
    assert isinstance(folded[1], nn.Identity)
    # The folded layer is a plain one; the original keeps its parametrisation, untouched
    assert not torch.nn.utils.parametrize.is_parametrized(folded[0])
    assert not folded[0]._forward_pre_hooks
    assert torch.nn.utils.parametrize.is_parametrized(model[0]) or model[0]._forward_pre_hooks
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(v, after[k]) for k, v in state.items())


def test_fold_a_layer_whose_weight_is_shared():
    # The last layer uses the first one's weight: the fold must not change it there
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4))
    net[3].weight = net[0].weight
    net = randomise(net).eval()
    folded = fold_batch_norm(net)
    assert isinstance(folded[1], nn.Identity)
    x = torch.randn(6, 4)
    with torch.no_grad():
        assert relative_error(folded(x), net(x)) <= 1e-5


class Doubled(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) * 2


def test_layers_with_hooks_or_their_own_forward_are_not_folded():
    x = torch.randn(2, 3, 5, 5)
    net = randomise(nn.Sequential(Doubled(3, 4, 1), BatchNorm(4))).eval()
    # Found automatically, such a pair is left as it is...
    folded = fold_batch_norm(net)
    assert isinstance(folded[1], BatchNorm)
    torch.testing.assert_close(folded(x), net(x))
    # ...and named, it is refused
    with pytest.raises(ValueError, match='its own forward'):
        fold_batch_norm(net, pairs=[('0', '1')])

    net = randomise(nn.Sequential(nn.Conv2d(3, 4, 1), BatchNorm(4))).eval()
    net[0].register_forward_hook(lambda module, inputs, y: y * 2)
    net[1].register_forward_pre_hook(lambda module, inputs: (inputs[0] + 1,))
    folded = fold_batch_norm(net)
    assert isinstance(folded[1], BatchNorm)
    torch.testing.assert_close(folded(x), net(x))
    with pytest.raises(ValueError, match='hooks'):
        fold_batch_norm(net, pairs=[('0', '1')])


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
