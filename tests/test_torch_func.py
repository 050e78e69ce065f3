"""
`BatchNorm` under `torch.func` and forward-mode AD, against `torch.nn.BatchNorm1d/2d` in
float64: values and gradients of `grad`, `jacrev`, `jvp`, `vmap` (over examples, over an
ensemble of models, per-example gradients), `hessian`, `torch.autograd.forward_ad`, batched
gradients (`is_grads_batched`, `gradcheck`'s batched checks), and the cases torch refuses.
"""
import warnings

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import (functional_call, grad, hessian, jacfwd, jacrev, jvp, stack_module_state,
                        vmap)

from labml_nn_bn import BatchNorm, BatchNormFunction

C = 3
DTYPE = torch.float64
# [N, C] with BatchNorm1d and [N, C, H, W] with BatchNorm2d
SHAPES = {'2d': ((6, C), torch.nn.BatchNorm1d), '4d': ((3, C, 2, 3), torch.nn.BatchNorm2d)}


def make_pair(kind, **flags):
    """torch's module and ours, float64, with the same random γ, β and running statistics."""
    shape, torch_cls = SHAPES[kind]
    ref = torch_cls(C, dtype=DTYPE, **flags)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
        if ref.running_mean is not None:
            ref.running_mean.uniform_(-1, 1)
            ref.running_var.uniform_(0.5, 2)
    ours = BatchNorm(C, dtype=DTYPE, **flags)
    ours.load_state_dict(ref.state_dict())
    return shape, ref, ours


def randn(*shape):
    return torch.randn(*shape, dtype=DTYPE) * 2 + 1


def assert_close(actual, expected, what):
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-10,
                               msg=lambda m: f'{what}: {m}')


def assert_tree_close(actual, expected, what):
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), what
        for k in expected:
            assert_tree_close(actual[k], expected[k], f'{what}[{k}]')
    elif isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected), what
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_tree_close(a, e, f'{what}[{i}]')
    else:
        assert_close(actual, expected, what)


def params_of(module):
    return {k: v.detach() for k, v in module.named_parameters()}


# A loss that weighs every output differently, so that no gradient vanishes by symmetry
def weighted_loss(y):
    w = torch.linspace(-1, 2, y.numel(), dtype=y.dtype).view(y.shape)
    return (y.sin() * w).sum()


# ## Reverse mode: grad, jacrev, hessian

@pytest.mark.parametrize('kind', list(SHAPES))
def test_grad_wrt_parameters_and_input_matches_torch(kind):
    shape, ref, ours = make_pair(kind, track_running_stats=False)
    x = randn(*shape)

    def loss(module):
        return lambda p, x: weighted_loss(functional_call(module, p, (x,)))
    expected = grad(loss(ref), argnums=(0, 1))(params_of(ref), x)
    actual = grad(loss(ours), argnums=(0, 1))(params_of(ours), x)
    assert_tree_close(actual, expected, 'grad of the loss')


@pytest.mark.parametrize('kind', list(SHAPES))
def test_jacrev_and_jacfwd_wrt_input_match_torch(kind):
    shape, ref, ours = make_pair(kind, track_running_stats=False)
    x = randn(*shape)
    expected = jacrev(ref)(x)
    assert expected.shape == shape + shape
    assert_close(jacrev(ours)(x), expected, 'jacrev')
    assert_close(jacfwd(ours)(x), expected, 'jacfwd')
    # With respect to γ and β as well
    expected = jacrev(lambda p: functional_call(ref, p, (x,)))(params_of(ref))
    assert_tree_close(jacrev(lambda p: functional_call(ours, p, (x,)))(params_of(ours)),
                      expected, 'jacrev wrt the parameters')


def test_hessian_matches_torch():
    # Forward over reverse (jacfwd of jacrev): the backward pass under forward-mode AD
    shape, ref, ours = make_pair('4d', track_running_stats=False)
    x = randn(2, C, 2, 1)
    expected = hessian(lambda x: weighted_loss(ref(x)))(x)
    assert_close(hessian(lambda x: weighted_loss(ours(x)))(x), expected, 'hessian wrt x')
    # Reverse over forward, and reverse over reverse
    assert_close(jacrev(jacfwd(lambda x: weighted_loss(ours(x))))(x), expected,
                 'jacrev of jacfwd')
    assert_close(jacrev(jacrev(lambda x: weighted_loss(ours(x))))(x), expected,
                 'jacrev of jacrev')


# ## Forward mode: jvp and dual tensors

@pytest.mark.parametrize('kind', list(SHAPES))
@pytest.mark.parametrize('train', [True, False])
def test_jvp_matches_torch(kind, train):
    shape, ref, ours = make_pair(kind, track_running_stats=not train)
    ref.train(train), ours.train(train)
    x, tx = randn(*shape), randn(*shape)
    tangents = {'weight': torch.randn(C, dtype=DTYPE), 'bias': torch.randn(C, dtype=DTYPE)}

    def call(module):
        return lambda x, p: functional_call(module, p, (x,))
    y_ref, t_ref = jvp(call(ref), (x, params_of(ref)), (tx, tangents))
    y, t = jvp(call(ours), (x, params_of(ours)), (tx, tangents))
    assert_close(y, y_ref, 'jvp output')
    assert_close(t, t_ref, 'jvp tangent')


@pytest.mark.parametrize('kind', list(SHAPES))
@pytest.mark.parametrize('train', [True, False])
def test_forward_ad_dual_tensors_match_torch(kind, train):
    shape, ref, ours = make_pair(kind)
    ref.train(train), ours.train(train)
    x, tx = randn(*shape), randn(*shape)
    tw, tb = torch.randn(C, dtype=DTYPE), torch.randn(C, dtype=DTYPE)
    results = []
    for module in (ref, ours):
        with fwAD.dual_level():
            p = {'weight': fwAD.make_dual(module.weight.detach(), tw),
                 'bias': fwAD.make_dual(module.bias.detach(), tb)}
            y = functional_call(module, p, (fwAD.make_dual(x, tx),))
            results.append(fwAD.unpack_dual(y))
    (y_ref, t_ref), (y, t) = results
    assert_close(y, y_ref, 'output')
    assert_close(t, t_ref, 'tangent')
    # The running statistics learnt the same (and hold no tangent)
    for name, buf in ref.named_buffers():
        assert_close(dict(ours.named_buffers())[name], buf, name)


def test_forward_ad_through_the_function_without_gamma_and_beta():
    x, tx = randn(5, C, 4), randn(5, C, 4)
    expected = jvp(lambda x: torch.nn.functional.batch_norm(x, None, None, training=True), (x,),
                   (tx,))[1]
    with fwAD.dual_level():
        y = BatchNormFunction.apply(fwAD.make_dual(x, tx), None, None, 1e-5)[0]
        assert_close(fwAD.unpack_dual(y).tangent, expected, 'tangent without γ, β')


# ## vmap: over examples, over an ensemble of models, per-example gradients

@pytest.mark.parametrize('kind', list(SHAPES))
def test_vmap_over_a_leading_axis_of_inputs_matches_torch(kind):
    shape, ref, ours = make_pair(kind, track_running_stats=False)
    xs = randn(4, *shape).requires_grad_()
    g = torch.randn(xs.shape, dtype=DTYPE)
    y_ref, y = vmap(ref)(xs), vmap(ours)(xs)
    assert_close(y, y_ref, 'vmap output')
    # Each slice is normalised on its own: the same as calling the module on it
    assert_close(y[2], ours(xs[2]), 'a slice of the vmap output')
    grads_ref = torch.autograd.grad(y_ref, [xs, ref.weight, ref.bias], g)
    grads = torch.autograd.grad(y, [xs, ours.weight, ours.bias], g)
    assert_tree_close(grads, grads_ref, 'gradients through vmap')


@pytest.mark.parametrize('kind', list(SHAPES))
def test_vmap_in_evaluation_uses_the_shared_running_statistics(kind):
    shape, ref, ours = make_pair(kind)
    ref.eval(), ours.eval()
    xs = randn(4, *shape)
    assert_close(vmap(ours)(xs), vmap(ref)(xs), 'vmap output in evaluation')


@pytest.mark.parametrize('track_running_stats', [False, True])
def test_vmap_over_an_ensemble_of_models_matches_torch(track_running_stats):
    # Three models with stacked parameters (and stacked running statistics, which training
    # updates, one set per model), each with its own batch
    pairs = [make_pair('4d', track_running_stats=track_running_stats) for _ in range(3)]
    shape = pairs[0][0]
    xs = randn(3, *shape)
    results = []
    for side in (1, 2):
        models = [p[side] for p in pairs]
        params, buffers = stack_module_state(models)
        base = models[0]

        def call(p, b, x):
            return functional_call(base, (p, b), (x,))
        y = vmap(call)(params, buffers, xs)
        loss = lambda p, b, x: weighted_loss(call(p, b, x))
        grads = vmap(grad(loss))(params, {k: v.clone() for k, v in buffers.items()}, xs)
        results.append((y, grads, buffers))
    (y_ref, g_ref, b_ref), (y, g, b) = results
    assert_close(y, y_ref, 'ensemble outputs')
    assert_tree_close(g, g_ref, 'ensemble gradients')
    assert_tree_close(b, b_ref, 'ensemble running statistics')


@pytest.mark.parametrize('kind', list(SHAPES))
def test_per_example_gradients_match_torch(kind):
    # Each example is its own batch of a few positions or rows: vmap of grad over examples
    shape, ref, ours = make_pair(kind, track_running_stats=False)
    xs = randn(5, *shape)

    def per_example(module):
        loss = lambda p, x: weighted_loss(functional_call(module, p, (x,)))
        return vmap(grad(loss), in_dims=(None, 0))
    assert_tree_close(per_example(ours)(params_of(ours), xs),
                      per_example(ref)(params_of(ref), xs), 'per-example gradients')


# ## Batched gradients

@pytest.mark.parametrize('kind', list(SHAPES))
def test_is_grads_batched_matches_torch(kind):
    shape, ref, ours = make_pair(kind)
    x = randn(*shape).requires_grad_()
    gs = torch.randn(4, *shape, dtype=DTYPE)
    results = []
    for module in (ref, ours):
        y = module(x)
        results.append(torch.autograd.grad(y, [x, module.weight, module.bias], gs,
                                           is_grads_batched=True))
    expected, actual = results
    assert_tree_close(actual, expected, 'batched gradients')
    # Row by row, the same as four ordinary backward passes
    y = ours(x)
    for i in range(4):
        row = torch.autograd.grad(y, [x, ours.weight, ours.bias], gs[i], retain_graph=True)
        assert_tree_close([a[i] for a in actual], row, f'batched gradient {i}')


@pytest.mark.parametrize('vectorize', [False, True])
def test_torch_autograd_functional_jacobian_and_hessian_match_torch(vectorize):
    # vectorize=True batches the gradients through one backward pass, as is_grads_batched
    shape, ref, ours = make_pair('4d', track_running_stats=False)
    x = randn(2, C, 2, 1)
    jacobian, hess = torch.autograd.functional.jacobian, torch.autograd.functional.hessian
    assert_close(jacobian(ours, x, vectorize=vectorize), jacobian(ref, x, vectorize=vectorize),
                 'jacobian')
    assert_close(hess(lambda x: weighted_loss(ours(x)), x, vectorize=vectorize),
                 hess(lambda x: weighted_loss(ref(x)), x, vectorize=vectorize), 'hessian')


@pytest.mark.parametrize('affine', [True, False])
def test_gradcheck_with_batched_and_forward_checks(affine):
    x = randn(4, 2, 3).requires_grad_()
    w = (torch.rand(2, dtype=DTYPE) + 0.5).requires_grad_()
    b = torch.randn(2, dtype=DTYPE, requires_grad=True)
    inputs = (x, w, b) if affine else (x,)

    def f(x, w=None, b=None):
        return BatchNormFunction.apply(x, w, b, 1e-3)[0]
    assert torch.autograd.gradcheck(f, inputs, check_batched_grad=True, check_forward_ad=True,
                                    check_batched_forward_grad=True)
    assert torch.autograd.gradgradcheck(f, inputs, check_batched_grad=True,
                                        check_fwd_over_rev=True)


# ## What torch refuses, we refuse

@pytest.mark.parametrize('which', ['running_mean', 'running_var'])
@pytest.mark.parametrize('tangent_on', ['x', 'weight', 'nothing else'])
def test_forward_ad_with_dual_running_statistics_in_evaluation_is_refused(which, tangent_on):
    # torch: "batch_norm is not differentiable wrt running_mean and running_var" (where it
    # computes a tangent); ours refuses whenever a running statistic carries a tangent
    shape, ref, ours = make_pair('4d')
    ref.eval(), ours.eval()
    x = randn(*shape)
    for module in (ref, ours):
        before = {k: v.clone() for k, v in module.state_dict().items()}
        with fwAD.dual_level():
            stats = {which: fwAD.make_dual(getattr(module, which).detach().clone(),
                                           torch.ones(C, dtype=DTYPE))}
            inp = fwAD.make_dual(x, torch.ones_like(x)) if tangent_on == 'x' else x
            if tangent_on == 'weight':
                stats['weight'] = fwAD.make_dual(module.weight.detach(),
                                                 torch.ones(C, dtype=DTYPE))
            if module is ref:
                if tangent_on != 'nothing else':
                    with pytest.raises(RuntimeError, match='not differentiable wrt running_mean'):
                        functional_call(module, stats, (inp,))
            else:
                with pytest.raises(ValueError, match=fr'not differentiable with respect to '
                                                     fr'running_mean and running_var.*{which}'):
                    functional_call(module, stats, (inp,))
        for k, v in module.state_dict().items():
            assert torch.equal(v, before[k]), k


def test_forward_ad_with_dual_running_statistics_under_torch_func_jvp_is_refused():
    shape, _, ours = make_pair('4d')
    ours.eval()
    x = randn(*shape)
    with pytest.raises(ValueError, match='not differentiable with respect to running_mean'):
        jvp(lambda m: functional_call(ours, {'running_mean': m}, (x,)),
            (ours.running_mean.clone(),), (torch.ones(C, dtype=DTYPE),))


@pytest.mark.parametrize('transform', ['vmap', 'grad', 'jvp'])
def test_training_with_unbatched_running_statistics_is_refused_and_changes_nothing(transform):
    # torch refuses these too: the in-place update of the running statistics would write
    # batched (or differentiated) values into a tensor that is not
    shape, ref, ours = make_pair('4d')
    xs = randn(2, *shape)
    x = xs[0]
    calls = {'vmap': lambda m: vmap(m)(xs),
             'grad': lambda m: grad(lambda x: weighted_loss(m(x)))(x),
             'jvp': lambda m: jvp(m, (x,), (x,))}
    with pytest.raises(RuntimeError):
        calls[transform](ref)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(ValueError, match=r'cannot update running_mean, running_var and '
                                         r'num_batches_tracked inside torch\.func'):
        calls[transform](ours)
    for k, v in ours.state_dict().items():
        assert torch.equal(v, before[k]), k


# ## The GPU's path

def test_the_gpu_path_under_transforms_matches_the_cpu_path(monkeypatch):
    # On a GPU the sum of squares is the square of a norm (`_sum_of_squares`). Under
    # transforms its derivatives must be those of the sum of squares, also at a constant
    # channel (all d = 0), where the norm itself has none: the CPU's results, and no
    # warning that vmap falls back to a slow loop
    from labml_nn_bn import batch_norm as batch_norm_module
    shape, _, ours = make_pair('4d', track_running_stats=False)
    x = randn(*shape)
    x[:, 1] = 0.5
    tx = randn(*shape)
    f = lambda x: weighted_loss(ours(x))
    calls = {'hessian': lambda: hessian(f)(x),
             'jvp': lambda: jvp(ours, (x,), (tx,))[1],
             'jacfwd': lambda: jacfwd(ours)(x),
             'vmap of grad': lambda: vmap(grad(f))(torch.stack([x, tx]))}
    expected = {name: call() for name, call in calls.items()}
    monkeypatch.setattr(batch_norm_module, '_on_gpu', lambda t: True)
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='.*performance drop')
        for name, call in calls.items():
            assert_close(call(), expected[name], f'{name} on the GPU path')
