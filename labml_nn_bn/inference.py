r"""
---
title: Inference with Batch Normalization
summary: >
  Algorithm 2 of the paper, and one step beyond it: population statistics estimated by
  averaging over training mini-batches (recalibrate), and batch norms folded into the
  convolution or linear layer before them (fold_batch_norm).
---

# Inference with Batch Normalization

*Symbols as in [the notation table](../notation.md): on this page $u$ is a layer's input,
$x = Wu + b$ its output, which the batch norm normalises, and $y$ the batch norm's output.*

During training a batch norm normalises with the statistics of the mini-batch in front of it,
so the output for one example depends on the others. At inference the paper wants a
deterministic function of the input alone. Its **Algorithm 2**, "Training a Batch-Normalized
Network", trains the network and then, in its lines 10–11, builds that *inference network*
in two steps:

1. **Population statistics** (line 10). Run the trained network over several training
   mini-batches $\mathcal{B}$ of size $m$, and average what the batch norm sees,
   $$\begin{aligned}
     \mathbb{E}[x] &\leftarrow \mathbb{E}_\mathcal{B}[\mu_\mathcal{B}] \\
     \mathrm{Var}[x] &\leftarrow \frac{m}{m - 1}\, \mathbb{E}_\mathcal{B}[\sigma^2_\mathcal{B}]
   \end{aligned}$$
   The factor $\frac{m}{m-1}$ makes the variance unbiased: training normalised with the
   *biased* batch variance $\sigma^2_\mathcal{B}$.
2. **One affine map per feature** (line 11). With those statistics fixed, the batch norm is
   $$\begin{aligned}
     y = {} &\frac{\gamma}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot x \\
       &+ \Big(\beta - \frac{\gamma\, \mathbb{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}}\Big)
   \end{aligned}$$
   a scale $\tilde\gamma = \gamma / \sqrt{\mathrm{Var}[x] + \epsilon}$ and an offset
   $\tilde\beta = \beta - \tilde\gamma\,\mathbb{E}[x]$, so $y = \tilde\gamma x + \tilde\beta$:
   the paper combines the fixed normalisation with $\gamma$ and $\beta$ into this one linear
   transform. Merging it further into the convolution or linear layer before it is common
   practice, not part of the paper.

In practice (as the paper suggests, to track accuracy while training, and as
[our `BatchNorm`](batch_norm.md) does) step 1
is replaced by moving averages updated during training, which cost nothing extra but mix
statistics from networks at different points of training. `recalibrate` below is step 1 as
the paper writes it: an average over the mini-batches you give it, so an estimate of the
population statistics, as good as those batches are many and representative;
`fold_batch_norm` goes one step beyond step 2. The experiment on
[population statistics](experiments/population_statistics.md) measures when the difference
between the two estimates matters.

```python
from labml_nn_bn import recalibrate, fold_batch_norm

recalibrate(model, (x for x, _ in train_batches))  # Algorithm 2's population statistics
fast_model = fold_batch_norm(model)                # BN merged into conv/linear weights
```
"""

import copy
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn

from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from labml_nn_bn.batch_norm import BatchNorm


# The batch norms these tools understand: ours, and every `torch.nn.BatchNorm1d/2d/3d`
# (and their subclasses, such as `SyncBatchNorm`), which all derive from `_BatchNorm`.
BATCH_NORMS = (BatchNorm, nn.modules.batchnorm._BatchNorm)


def _keeps_running_stats(module: nn.Module) -> bool:
    return (isinstance(module, BATCH_NORMS) and module.track_running_stats and
            module.running_mean is not None)


# ## Algorithm 2, step 1: population statistics
#
# **A new domain.** The paper's conclusion (Section 5) suggests a second use: a batch-normalized
# network might adapt to a new data distribution with only a recomputation of the population
# means and variances, Algorithm 2's step 1 run on the new data. `recalibrate` does exactly
# that when given batches of the new domain; the paper leaves it as a direction to explore,
# and so do we (no experiment here tests it).
#
# Every batch norm's input is recorded by a forward pre-hook while the network processes the
# given batches **in training mode**, which is how we read Algorithm 2 (it does not say): each
# batch norm sees what it saw in training, with the layers before it normalised by their own
# batch statistics (and any dropout active, as in training). Nothing is learned, so there are
# no gradients and no optimiser. The forward passes disturb the running buffers, the batch
# norms' and any other module's (a spectral norm's power iteration, say): every buffer is put
# back as it was, and then the batch norms' statistics are written, or, when the call
# refuses, nothing is.
@torch.no_grad()
def recalibrate(model: nn.Module, batches: Iterable, *, device=None) -> nn.Module:
    r"""
    Replaces the running statistics of every batch norm in `model` (ours and
    `torch.nn.BatchNorm*d`) with Algorithm 2's population estimates over `batches`, and
    returns `model`.

    * `batches`: an iterable of input tensors, or of `(x, y, ...)` tuples whose first item is
      the input (such as a `DataLoader` over a labelled data set). Use training data, in the
      batch size the model was trained with: the variances average over exactly those batches.
    * `device`: where to move each input; by default the device of the model's first
      parameter or buffer.

    After the call, `running_mean` is $\mathbb{E}_\mathcal{B}[\mu_\mathcal{B}]$,
    `running_var` is $\mathbb{E}_\mathcal{B}[\frac{m}{m-1}\sigma^2_\mathcal{B}]$ (which is
    Algorithm 2's $\frac{m}{m-1}\mathbb{E}_\mathcal{B}[\sigma^2_\mathcal{B}]$ when every batch
    has the same $m$; a smaller last batch gets its own correction) and `num_batches_tracked`
    is the number of batches averaged. That count is also what `momentum=None` (a cumulative
    average) needs to continue correctly if training resumes. Each module's `training` flag
    and every other buffer are as they were. If the call raises (a batch norm that no batch
    reaches, a failing batch, an interrupt), the model is exactly as it was. A batch
    whose statistics at some batch norm are not finite (it holds a NaN or inf) is
    refused with a `ValueError` that names the batch and the batch norm, and so are
    estimates too large for the dtype of a batch norm's buffers.
    """
    _check_recalibrate_args(model, batches)
    norms = [m for m in model.modules() if _keeps_running_stats(m)]
    if not norms:
        raise ValueError(f'expected a model with at least one batch norm that keeps running '
                         f'statistics (labml_nn_bn.BatchNorm or torch.nn.BatchNorm*d), '
                         f'got {type(model).__name__} with none')
    if device is None:
        device = _model_device(model)

    # Per batch norm: the sum over batches of $\mu_\mathcal{B}$ and of
    # $\frac{m}{m-1}\sigma^2_\mathcal{B}$, in `float64` so that averaging thousands of
    # batches adds no rounding error of its own
    sums = {id(bn): [0., 0., 0] for bn in norms}
    names = {id(m): name for name, m in model.named_modules()}
    count = 0

    def record(bn, inputs):
        x = inputs[0]
        where = (f'at the batch norm {names[id(bn)]!r} ({type(bn).__name__}) in batch '
                 f'{count} (counting from 0)')
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'expected an input of shape (N, C, ...) with at least 2 '
                             f'dimensions, got {shape} {where}')
        # $m$, the values per channel in this batch
        m = x.numel() // x.shape[1]
        if m < 2:
            raise ValueError(f'expected at least 2 values per channel in every batch, got an '
                             f'input of shape {tuple(x.shape)} {where}')
        dims = [0] + list(range(2, x.dim()))
        # $\sigma^2_\mathcal{B}$ (biased) and $\mu_\mathcal{B}$; $[C]$
        var, mean = torch.var_mean(x.to(_accumulation_dtype(x)), dim=dims, correction=0)
        # One NaN or inf anywhere in the batch makes its channel's statistics, and so
        # the average over all batches, non-finite: the $2C$ statistics tell, at a
        # fraction of the cost of checking the input
        if not torch.isfinite(mean.sum() + var.sum()):
            raise ValueError(f'expected finite values in every batch, got non-finite '
                             f'statistics (NaN or inf) {where}; the model was left '
                             f'as it was')
        total = sums[id(bn)]
        total[0] = total[0] + mean
        # $\frac{m}{m - 1}\sigma^2_\mathcal{B}$
        total[1] = total[1] + var * (m / (m - 1))
        total[2] += 1

    saved = _save_buffers(model)
    modes = [(m, m.training) for m in model.modules()]
    hooks = [bn.register_forward_pre_hook(record) for bn in norms]
    try:
        model.train()
        for batch in batches:
            model(_input_of(batch).to(device))
            count += 1
        _check_every_norm_was_called(model, norms, sums, count)
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes:
            m.training = training
        _restore_buffers(saved)

    estimates = []
    for bn in norms:
        mean_sum, var_sum, calls = sums[id(bn)]
        # $\mathbb{E}[x] = \mathbb{E}_\mathcal{B}[\mu_\mathcal{B}]$, over the batches this batch
        # norm saw (all of them, unless the model skips it on some)
        mean = (mean_sum / calls).to(bn.running_mean.dtype)
        # $\mathrm{Var}[x] = \frac{m}{m-1}\mathbb{E}_\mathcal{B}[\sigma^2_\mathcal{B}]$
        var = (var_sum / calls).to(bn.running_var.dtype)
        _check_fits(mean, var, bn, names[id(bn)])
        estimates.append((bn, mean, var, calls))
    # Written only once every batch norm's estimates are known to fit its buffers
    for bn, mean, var, calls in estimates:
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.fill_(calls)
    return model


# ## Beyond Algorithm 2: folding into the layer before
#
# A convolution or linear layer followed by a batch norm in inference mode computes, from
# the layer's input $u$, for each output channel $k$,
# $$\begin{aligned}
#   x^{(k)} &= (Wu + b)^{(k)} \\
#   y^{(k)} &= \tilde\gamma^{(k)} x^{(k)} + \tilde\beta^{(k)}
# \end{aligned}$$
# with $\tilde\gamma^{(k)} = \gamma^{(k)} / \sqrt{\mathrm{Var}[x^{(k)}] + \epsilon}$ and
# $\tilde\beta^{(k)} = \beta^{(k)} - \tilde\gamma^{(k)}\,\mathbb{E}[x^{(k)}]$.
# Both are affine, so their composition is one affine layer with the same shape as the first:
# $$\begin{aligned}
#   W'^{(k)} &= \tilde\gamma^{(k)} W^{(k)} \\
#   b'^{(k)} &= \tilde\gamma^{(k)}\,\big(b^{(k)} - \mathbb{E}[x^{(k)}]\big) + \beta^{(k)}
# \end{aligned}$$
# where $W^{(k)}$ is row $k$ of a linear layer's weight, or output filter $k$ of a
# convolution's, and $b'^{(k)} = \tilde\gamma^{(k)} b^{(k)} + \tilde\beta^{(k)}$.
# The folded network skips a full read and write of every batch-normalised activation;
# `benchmarks/fold_speed.py` measures what that saves on the MNIST CNN.
#
# **Which pairs are folded.** A batch norm is folded into a layer only when the layer's output
# goes to that batch norm and nowhere else, and each of them is called once; otherwise the
# layer's other users would see the batch-normalised values. We find such pairs by tracing the
# model with `torch.fx`, which records the calls `forward` makes, so modules called in a
# custom `forward` (like `self.bn1(self.conv1(x))`) are found, not only neighbours in an
# `nn.Sequential`. Being neighbours proves nothing: a `forward` may call the children of a
# container in another order, or use a layer's output around its batch norm as well. So a
# model that `torch.fx` cannot trace (data-dependent control flow) is refused, unless you
# name the pairs yourself with `pairs=[('conv1', 'bn1'), ...]`. Named pairs are checked
# against the trace when there is one, and taken on your word when there is not.
#
# **The features must be in dimension 1.** A batch norm normalises dimension 1 of its input,
# and $k$ above is the layer's output feature: the two agree for a `Linear` on `[N, C]` and a
# convolution on `[N, C, *]`, but not for a `Linear` on `[N, L, C]`, where the batch norm
# normalises `L`. Equal channel counts (`L == C`) do not tell them apart, and neither does the
# model, which works on inputs of any rank. So the folded batch norm leaves behind a check,
# `FoldedBatchNorm`: it passes the layer's output on unchanged when it has the rank that puts
# the features in dimension 1 (that of the layer's weight), and otherwise refuses the input,
# rather than return what the unfolded model would not.
#
# **Layers whose weight is computed.** With weight norm or spectral norm (either API) or any
# parametrisation, a layer's `weight` is computed from other tensors on each call. The fold
# first makes it a plain parameter holding its current value (in the copy), then folds.
# A weight shared with another layer gets a folded copy of its own, so the other keeps it.
def fold_batch_norm(model: nn.Module,
                    pairs: Optional[List[Tuple[str, str]]] = None) -> nn.Module:
    """
    Returns a copy of `model` in evaluation mode in which every batch norm that directly
    follows a `Conv1d/2d/3d` or `Linear` layer (found by tracing as described above, or given
    as `pairs` of qualified module names) is folded into that layer and replaced by a
    `FoldedBatchNorm`, an `nn.Identity` that checks the rank of its input. The original
    `model` is not changed. Batch norms without running statistics (which normalise with
    batch statistics even in evaluation), and layers or batch norms with forward hooks or a
    `forward` of their own, are left alone when found, and refused when named.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f'expected a torch.nn.Module, got {type(model).__name__}')
    folded = _copy(model).eval()
    modules = dict(folded.named_modules(remove_duplicate=False))
    trace, untraceable = _trace(folded)
    if pairs is None:
        if trace is None:
            raise ValueError(_untraceable_message(folded, untraceable))
        pairs = _found_pairs(folded, trace)
    else:
        pairs = _checked_pairs(pairs, folded, modules, trace)
    with torch.no_grad():
        for layer_name, bn_name in pairs:
            layer, bn = modules[layer_name], modules[bn_name]
            _make_plain(layer)
            guard = FoldedBatchNorm(layer_name, layer.weight.dim())
            _fold(layer, bn)
            for name, m in modules.items():
                if m is bn:
                    _set_module(folded, name, guard)
    return folded


@torch.no_grad()
def _fold(layer: nn.Module, bn: nn.Module):
    # The arithmetic is done in `float64` and the results rounded once to the layer's dtype
    weight = layer.weight.to(torch.float64)
    c = weight.shape[0]
    # $\tilde\gamma^{(k)} = \gamma^{(k)} / \sqrt{\mathrm{Var}[x^{(k)}] + \epsilon}$; [C]
    scale = torch.rsqrt(bn.running_var.to(torch.float64) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(torch.float64)
    # $b^{(k)} - \mathbb{E}[x^{(k)}]$, with $b = 0$ for a layer built without a bias
    shifted = -bn.running_mean.to(torch.float64)
    if layer.bias is not None:
        shifted = shifted + layer.bias.to(torch.float64)
    # $b'^{(k)} = \tilde\gamma^{(k)} (b^{(k)} - \mathbb{E}[x^{(k)}]) + \beta^{(k)}$
    bias = scale * shifted
    if bn.bias is not None:
        bias = bias + bn.bias.to(torch.float64)
    # $W'^{(k)} = \tilde\gamma^{(k)} W^{(k)}$; the scale broadcasts over everything but the output channel. New
    # tensors (of the old ones' dtype, device and memory format), not writes into the old
    # ones, which another layer may share.
    old_weight, old_bias = layer.weight, layer.bias
    new_weight = torch.empty_like(old_weight)
    new_weight.copy_(weight * scale.view([c] + [1] * (weight.dim() - 1)))
    new_bias = (torch.empty(c, dtype=old_weight.dtype, device=old_weight.device)
                if old_bias is None else torch.empty_like(old_bias))
    new_bias.copy_(bias)
    layer.weight = nn.Parameter(new_weight, requires_grad=old_weight.requires_grad)
    layer.bias = nn.Parameter(new_bias, requires_grad=old_weight.requires_grad)


# ## What is left where a batch norm was
class FoldedBatchNorm(nn.Identity):
    """
    Stands where a batch norm was folded into `layer`: returns its input unchanged when the
    input has `dims` dimensions, so that `layer`'s features are in dimension 1 (2 for a
    `Linear`, 3 to 5 for a convolution), and raises a `ValueError` otherwise.
    """

    def __init__(self, layer: str, dims: int):
        super().__init__()
        self.layer = layer
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _features_in_dimension_1(x, self.dims, self.layer)

    def extra_repr(self) -> str:
        return f'into={self.layer!r}, dims={self.dims}'


def _features_in_dimension_1(x: torch.Tensor, dims: int, layer: str) -> torch.Tensor:
    if x.dim() != dims:
        raise ValueError(
            f'the batch norm folded into {layer!r} expects {layer!r}\'s output with {dims} '
            f'dimensions, its features in dimension 1, got shape {tuple(x.shape)}: on this '
            f'input the batch norm normalised another dimension, which the fold cannot do; '
            f'use the unfolded model, or fold without this pair (pairs=)')
    return x


# A graph traced by `torch.fx` records the check as one call, kept in the graph
torch.fx.wrap('_features_in_dimension_1')


# ## Finding the pairs
FOLDABLE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class _Tracer(torch.fx.Tracer):
    # Batch norms and the layers they fold into are recorded as calls, not traced into: our
    # `BatchNorm` checks its input's shape in Python, which a symbolic trace cannot evaluate.
    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return isinstance(m, BATCH_NORMS + FOLDABLE_LAYERS) or super().is_leaf_module(
            m, qualified_name)


class _Trace(NamedTuple):
    # The `call_module` nodes of each module, by its first qualified name
    calls: Dict[str, List[torch.fx.Node]]
    # The parameters and buffers that `forward` reads directly (`self.conv.weight`)
    reads: List[str]


def _trace(model: nn.Module) -> Tuple[Optional[_Trace], Optional[str]]:
    """`(trace, None)`, or `(None, reason)` when `torch.fx` cannot trace the model."""
    try:
        graph = _Tracer().trace(model)
    except Exception as e:
        lines = str(e).strip().splitlines()
        return None, type(e).__name__ + (f': {lines[0]}' if lines else '')
    calls = {}
    for n in graph.nodes:
        if n.op == 'call_module':
            calls.setdefault(n.target, []).append(n)
    return _Trace(calls, [n.target for n in graph.nodes if n.op == 'get_attr']), None


# Why the output of `layer` does not go to `bn` and nowhere else, or `None` when it does
def _chain_problem(trace: _Trace, layer: str, bn: str) -> Optional[str]:
    for name in (layer, bn):
        times = len(trace.calls.get(name, []))
        if times != 1:
            return (f'forward calls {name!r} {times} times' if times else
                    f'forward never calls {name!r}')
    layer_call, bn_call = trace.calls[layer][0], trace.calls[bn][0]
    if bn_call.args != (layer_call,) or bn_call.kwargs:
        return f'{bn!r} does not take {layer!r}\'s output as its only input'
    if len(layer_call.users) != 1:
        return f'{layer!r}\'s output is also used elsewhere in forward'
    for target in trace.reads:
        if target.startswith(f'{layer}.') or target.startswith(f'{bn}.'):
            return f'forward also reads {target!r} directly'
    return None


# Why `bn` cannot be folded into `layer` whatever `forward` does, or `None`
def _foldable_problem(layer: nn.Module, bn: nn.Module, layer_name: str, bn_name: str):
    if not isinstance(layer, FOLDABLE_LAYERS):
        return (f'expected a Conv1d/2d/3d or Linear, got {type(layer).__name__} at '
                f'{layer_name!r}')
    if not _keeps_running_stats(bn):
        without = ' without them' if isinstance(bn, BATCH_NORMS) else ''
        return (f'expected a batch norm with running statistics at {bn_name!r}, got '
                f'{type(bn).__name__}{without}')
    if layer.weight.shape[0] != bn.running_mean.shape[0]:
        return (f'expected as many batch norm channels as layer outputs, got '
                f'{bn.running_mean.shape[0]} and {layer.weight.shape[0]}')
    base = next(cls for cls in FOLDABLE_LAYERS if isinstance(layer, cls))
    if any(getattr(type(layer), f, None) is not getattr(base, f, None)
           for f in ('forward', '_conv_forward')):
        return (f'{layer_name!r} ({type(layer).__name__}) has its own forward, which the '
                f'fold cannot see into')
    if parametrize.is_parametrized(layer) and \
            not set(layer.parametrizations.keys()) <= {'weight', 'bias'}:
        return f'{layer_name!r} has parametrised tensors other than its weight and bias'
    for name, module, known in ((layer_name, layer, _REPARAMETRISATION_HOOKS),
                                (bn_name, bn, ())):
        hooks = [h for h in module._forward_pre_hooks.values() if not isinstance(h, known)]
        if hooks or module._forward_hooks:
            return (f'{name!r} has forward hooks, which the folded model would not call on '
                    f'the same values; remove them first')
    return None


def _found_pairs(model: nn.Module, trace: _Trace) -> List[Tuple[str, str]]:
    """Every chain of a foldable layer and a batch norm in the traced graph."""
    modules = dict(model.named_modules())
    pairs = []
    for bn_name, (node, *_) in trace.calls.items():
        source = node.args[0] if node.args else None
        if not isinstance(source, torch.fx.Node) or source.op != 'call_module':
            continue
        layer_name = source.target
        if _chain_problem(trace, layer_name, bn_name) is None and _foldable_problem(
                modules[layer_name], modules[bn_name], layer_name, bn_name) is None:
            pairs.append((layer_name, bn_name))
    return pairs


def _sequential_neighbours(model: nn.Module) -> List[Tuple[str, str]]:
    """Foldable neighbours in `nn.Sequential` containers: candidates, not proven pairs."""
    pairs = []
    for name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.named_children())
        for (a_name, a), (b_name, b) in zip(children, children[1:]):
            prefix = f'{name}.' if name else ''
            if _foldable_problem(a, b, prefix + a_name, prefix + b_name) is None:
                pairs.append((prefix + a_name, prefix + b_name))
    return pairs


def _untraceable_message(model: nn.Module, reason: str) -> str:
    candidates = _sequential_neighbours(model)
    example = repr(candidates) if candidates else "[('conv1', 'bn1'), ...]"
    hint = ('such as these neighbours in nn.Sequential containers if forward calls them '
            'only through their container' if candidates else 'as')
    return (f'cannot find the batch norms to fold: torch.fx cannot trace '
            f'{type(model).__name__}.forward ({reason}), so it is not known which layer\'s '
            f'output goes to a batch norm and nowhere else; make forward traceable, or name '
            f'such pairs yourself, {hint}: pairs={example}')


# ## Layers whose weight is computed
#
# The old API's weight norm and spectral norm keep their computed weight in a plain attribute
# that a forward pre-hook recomputes on every call; the newer one, `parametrizations`, computes
# it in a property. Either way the fold needs the weight as a parameter of its own.
_REPARAMETRISATION_HOOKS = (WeightNorm, SpectralNorm)


def _make_plain(layer: nn.Module):
    """`layer`'s weight and bias made plain parameters holding their current values."""
    if parametrize.is_parametrized(layer):
        names = list(layer.parametrizations.keys())
        values = {name: getattr(layer, name).detach().clone() for name in names}
        requires_grad = {name: any(t.requires_grad
                                   for t in layer.parametrizations[name].parameters())
                         for name in names}
        # Not `remove_parametrizations`: it deletes the properties from the module's class,
        # which the copy shares with the original model. The copy gets its class back instead.
        layer.__class__ = parametrize.type_before_parametrizations(layer)
        del layer.parametrizations
        for name in names:
            setattr(layer, name,
                    nn.Parameter(values[name], requires_grad=requires_grad[name]))
    for hook in list(layer._forward_pre_hooks.values()):
        if isinstance(hook, WeightNorm):
            torch.nn.utils.remove_weight_norm(layer, hook.name)
        elif isinstance(hook, SpectralNorm):
            torch.nn.utils.remove_spectral_norm(layer, hook.name)


# `copy.deepcopy` refuses the old weight norm's computed weight when it is part of an autograd
# graph (after a forward pass with gradients); the copy gets it detached, and recomputes it.
def _copy(model: nn.Module) -> nn.Module:
    memo = {}
    for m in model.modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, _REPARAMETRISATION_HOOKS):
                weight = getattr(m, hook.name, None)
                if isinstance(weight, torch.Tensor) and not weight.is_leaf:
                    memo[id(weight)] = weight.detach().clone()
    try:
        return copy.deepcopy(model, memo)
    except Exception as e:
        raise TypeError(f'expected a model that copy.deepcopy can copy (fold_batch_norm '
                        f'leaves the original unchanged), got {type(model).__name__}, '
                        f'which it cannot: {e}') from e


# ## Helpers and argument checks
def _set_module(root: nn.Module, name: str, module: nn.Module):
    parent_name, _, child = name.rpartition('.')
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _input_of(batch):
    # `(x, y)` pairs and `[x, y]` lists, as data loaders give them, or bare tensors
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError('expected a batch tensor or an (x, y, ...) tuple, got an empty one')
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f'expected each batch to be a tensor or an (x, y, ...) tuple starting '
                        f'with a tensor, got {type(batch).__name__}')
    return batch


def _accumulation_dtype(x: torch.Tensor):
    # Apple's MPS backend has no `float64`
    return torch.float32 if x.device.type == 'mps' else torch.float64


def _model_device(model: nn.Module):
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device('cpu')


# Every buffer of every module, with a copy of its values: `_restore_buffers` puts back the
# very same tensors (in case a forward pass replaced one) holding the very same values
def _save_buffers(model: nn.Module):
    return [(module, name, buffer, buffer.clone())
            for module in model.modules()
            for name, buffer in module.named_buffers(recurse=False)]


def _restore_buffers(saved):
    for module, name, buffer, values in saved:
        if getattr(module, name, None) is not buffer:
            setattr(module, name, buffer)
        buffer.copy_(values)


def _check_every_norm_was_called(model, norms, sums, count):
    if count == 0:
        raise ValueError('expected at least one batch to compute population statistics from, '
                         'got an empty iterable')
    names = {id(m): name for name, m in model.named_modules()}
    for bn in norms:
        if sums[id(bn)][2] == 0:
            raise ValueError(f'the batch norm {names[id(bn)]!r} ({type(bn).__name__}) was '
                             f'never called on the batches, so it has no statistics to '
                             f'recalibrate; the model was left as it was')


# Finite in the `float64` sums, the estimates may still be beyond the range of the
# buffers' dtype (a variance above 65,504 in `float16`, or above about
# $3.4 \times 10^{38}$ in `float32`): they would be stored as inf, and the batch norm
# would output $\beta$ alone
def _check_fits(mean: torch.Tensor, var: torch.Tensor, bn: nn.Module, name: str):
    for buffer, values in (('running_mean', mean), ('running_var', var)):
        if not torch.isfinite(values).all():
            raise ValueError(f'expected population statistics that {buffer} of the '
                             f'batch norm {name!r} ({type(bn).__name__}) can hold as '
                             f'{values.dtype}, got values beyond its range; the model '
                             f'was left as it was')


def _check_recalibrate_args(model, batches):
    if not isinstance(model, nn.Module):
        raise TypeError(f'expected a torch.nn.Module, got {type(model).__name__}')
    if isinstance(batches, torch.Tensor):
        raise TypeError('expected an iterable of batches, got a single tensor '
                        '(wrap it in a list: [x])')
    try:
        iter(batches)
    except TypeError:
        raise TypeError(f'expected an iterable of batches, got {type(batches).__name__}') from None


def _checked_pairs(pairs, model, modules, trace) -> List[Tuple[str, str]]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, (list, tuple)):
        raise TypeError(f'expected pairs as a list of (layer name, batch norm name) '
                        f'tuples, got {type(pairs).__name__}')
    first_name = {id(m): name for name, m in model.named_modules()}
    seen = set()
    checked = []
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and
                all(isinstance(name, str) for name in pair)):
            raise TypeError(f'expected pairs of (layer name, batch norm name), '
                            f'got {pair!r}')
        for name in pair:
            if name not in modules:
                raise ValueError(f'expected the name of a submodule, got {name!r}')
            if id(modules[name]) in seen:
                raise ValueError(f'expected each module in at most one pair, got {name!r} '
                                 f'named in more than one pair')
            seen.add(id(modules[name]))
        layer_name, bn_name = pair
        layer, bn = modules[layer_name], modules[bn_name]
        problem = _foldable_problem(layer, bn, layer_name, bn_name)
        if problem is None and trace is not None:
            # The graph names each module by its first qualified name
            problem = _chain_problem(trace, first_name[id(layer)], first_name[id(bn)])
        if problem is None and trace is None:
            problem = _registered_twice(modules, pair)
        if problem is not None:
            raise ValueError(f'cannot fold {bn_name!r} into {layer_name!r}: {problem}')
        checked.append((layer_name, bn_name))
    return checked


# Without a trace, a module registered under two names may be called under both
def _registered_twice(modules, pair) -> Optional[str]:
    for name in pair:
        others = [other for other, m in modules.items()
                  if m is modules[name] and other != name]
        if others:
            return (f'{name!r} is also registered as {others[0]!r}, and without a trace it '
                    f'is not known which name forward calls')
    return None
