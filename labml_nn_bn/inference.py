r"""
---
title: Inference with Batch Normalization
summary: >
  Algorithm 2 of the paper, and one step beyond it: exact population statistics computed
  over the training data (recalibrate), and batch norms folded into the convolution or linear
  layer before them (fold_batch_norm).
---

# Inference with Batch Normalization

During training a batch norm normalises with the statistics of the mini-batch in front of it,
so the output for one example depends on the others. At inference the paper wants a
deterministic function of the input alone, and its **Algorithm 2** builds that *inference
network* in two steps:

1. **Population statistics.** Run the trained network over several training mini-batches
   $\mathcal{B}$ of size $m$, and average what the batch norm sees,
   $$\mathbb{E}[x] \leftarrow \mathbb{E}_\mathcal{B}[\mu_\mathcal{B}] \qquad
     \mathrm{Var}[x] \leftarrow \frac{m}{m - 1}\, \mathbb{E}_\mathcal{B}[\sigma^2_\mathcal{B}]$$
   The factor $\frac{m}{m-1}$ makes the variance unbiased: training normalised with the
   *biased* batch variance $\sigma^2_\mathcal{B}$.
2. **One affine map per feature.** With those statistics fixed, the batch norm is
   $$y = \frac{\gamma}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot x \; +
     \Big(\beta - \frac{\gamma\, \mathbb{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}}\Big)$$
   a scale and a shift: the paper combines the fixed normalisation with $\gamma$ and $\beta$
   into this one linear transform. Merging it further into the convolution or linear layer
   before it is common practice, not part of the paper.

In practice (as the paper suggests, to track accuracy while training, and as
[our `BatchNorm`](batch_norm.md) does) step 1
is replaced by moving averages updated during training, which cost nothing extra but mix
statistics from networks at different points of training. `recalibrate` below is the exact
step 1; `fold_batch_norm` goes one step beyond step 2. The experiment on
[population statistics](experiments/population_statistics.md) measures when the difference
between the two estimates matters.

```python
from labml_nn_bn import recalibrate, fold_batch_norm

recalibrate(model, (x for x, _ in train_batches))  # exact population statistics
fast_model = fold_batch_norm(model)                # BN merged into conv/linear weights
```
"""

import copy
from typing import Iterable, List, Optional, Tuple

import torch
import torch.nn as nn

from labml_nn_bn.batch_norm import BatchNorm


# The batch norms these tools understand: ours, and every `torch.nn.BatchNorm1d/2d/3d`
# (and their subclasses, such as `SyncBatchNorm`), which all derive from `_BatchNorm`.
BATCH_NORMS = (BatchNorm, nn.modules.batchnorm._BatchNorm)


def _keeps_running_stats(module: nn.Module) -> bool:
    return (isinstance(module, BATCH_NORMS) and module.track_running_stats and
            module.running_mean is not None)


# ## Algorithm 2, step 1: population statistics
#
# Every batch norm's input is recorded by a forward pre-hook while the network processes the
# given batches **in training mode**, which is how we read Algorithm 2 (it does not say): each
# batch norm sees what it saw in training, with the layers before it normalised by their own
# batch statistics (and any dropout active, as in training). Nothing is learned, so there are
# no gradients and no optimiser; the running buffers that the forward passes disturb are
# overwritten at the end.
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
    average) needs to continue correctly if training resumes. Each module's
    `training` flag is restored.
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

    def record(bn, inputs):
        x = inputs[0]
        # $m$, the values per channel in this batch
        m = x.numel() // x.shape[1]
        if m < 2:
            raise ValueError(f'expected at least 2 values per channel in every batch, got an '
                             f'input of shape {tuple(x.shape)} at {type(bn).__name__}')
        dims = [0] + list(range(2, x.dim()))
        # $\sigma^2_\mathcal{B}$ (biased) and $\mu_\mathcal{B}$; $[C]$
        var, mean = torch.var_mean(x.to(_accumulation_dtype(x)), dim=dims, correction=0)
        total = sums[id(bn)]
        total[0] = total[0] + mean
        # $\frac{m}{m - 1}\sigma^2_\mathcal{B}$
        total[1] = total[1] + var * (m / (m - 1))
        total[2] += 1

    # The buffers the forward passes will change, kept in case a batch fails
    saved = [(bn, bn.running_mean.clone(), bn.running_var.clone(),
              None if bn.num_batches_tracked is None else bn.num_batches_tracked.clone())
             for bn in norms]
    modes = [(m, m.training) for m in model.modules()]
    hooks = [bn.register_forward_pre_hook(record) for bn in norms]
    count = 0
    try:
        model.train()
        for batch in batches:
            model(_input_of(batch).to(device))
            count += 1
    except BaseException:
        for bn, mean, var, tracked in saved:
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            if tracked is not None:
                bn.num_batches_tracked.copy_(tracked)
        raise
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes:
            m.training = training
    if count == 0:
        raise ValueError('expected at least one batch to compute population statistics from, '
                         'got an empty iterable')

    for bn in norms:
        mean_sum, var_sum, calls = sums[id(bn)]
        if calls == 0:
            raise ValueError(f'a {type(bn).__name__} of the model was never called on the '
                             f'batches, so it has no statistics to recalibrate')
        # $\mathbb{E}[x] = \mathbb{E}_\mathcal{B}[\mu_\mathcal{B}]$, over the batches this batch
        # norm saw (all of them, unless the model skips it on some)
        bn.running_mean.copy_((mean_sum / calls).to(bn.running_mean.dtype))
        # $\mathrm{Var}[x] = \frac{m}{m-1}\mathbb{E}_\mathcal{B}[\sigma^2_\mathcal{B}]$
        bn.running_var.copy_((var_sum / calls).to(bn.running_var.dtype))
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.fill_(calls)
    return model


# ## Beyond Algorithm 2: folding into the layer before
#
# A convolution or linear layer followed by a batch norm in inference mode computes, for each
# output channel $k$,
# $$y_k = \gamma_k \frac{(W x + b)_k - \mathbb{E}[x_k]}{\sqrt{\mathrm{Var}[x_k] + \epsilon}} + \beta_k$$
# Both are affine, so their composition is one affine layer with the same shape as the first:
# with the per-channel scale $s_k = \gamma_k / \sqrt{\mathrm{Var}[x_k] + \epsilon}$,
# $$W'_k = s_k W_k \qquad b'_k = s_k\,(b_k - \mathbb{E}[x_k]) + \beta_k$$
# where $W_k$ is row $k$ of a linear layer's weight, or output filter $k$ of a convolution's.
# The folded network skips a full read and write of every batch-normalised activation;
# `benchmarks/fold_speed.py` measures what that saves on the MNIST CNN.
#
# **Which pairs are folded.** A batch norm is folded into a layer only when the layer's output
# goes to that batch norm and nowhere else, and each of them is used once; otherwise the
# layer's other users would see the batch-normalised values. We find such pairs by tracing the
# model with `torch.fx`, which records the calls `forward` makes, so modules called in a
# custom `forward` (like `self.bn1(self.conv1(x))`) are found, not only neighbours in an
# `nn.Sequential`. Models that `torch.fx` cannot trace (data-dependent control flow) fall back
# to neighbours in `nn.Sequential` containers, with each module appearing once in the model.
# Or name the pairs yourself with `pairs=[('conv1', 'bn1'), ...]`.
def fold_batch_norm(model: nn.Module, pairs: Optional[List[Tuple[str, str]]] = None) -> nn.Module:
    """
    Returns a copy of `model` in evaluation mode in which every batch norm that directly
    follows a `Conv1d/2d/3d` or `Linear` layer (found as described above, or given as
    `pairs` of qualified module names) is folded into that layer and replaced by
    `nn.Identity`. The original `model` is not changed. Batch norms without running
    statistics (which normalise with batch statistics even in evaluation) are left alone.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f'expected a torch.nn.Module, got {type(model).__name__}')
    folded = copy.deepcopy(model).eval()
    modules = dict(folded.named_modules(remove_duplicate=False))
    if pairs is None:
        pairs = _traced_pairs(folded)
        if pairs is None:
            pairs = _sequential_pairs(folded)
    else:
        _check_pairs(pairs, modules)
    with torch.no_grad():
        for layer_name, bn_name in pairs:
            _fold(modules[layer_name], modules[bn_name])
            _set_module(folded, bn_name, nn.Identity())
    return folded


@torch.no_grad()
def _fold(layer: nn.Module, bn: nn.Module):
    # The arithmetic is done in `float64` and the results rounded once to the layer's dtype
    weight = layer.weight.to(torch.float64)
    c = weight.shape[0]
    # $s_k = \gamma_k / \sqrt{\mathrm{Var}[x_k] + \epsilon}$; $[C]$
    scale = torch.rsqrt(bn.running_var.to(torch.float64) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(torch.float64)
    # $b_k - \mathbb{E}[x_k]$, with $b = 0$ for a layer built without a bias
    shifted = -bn.running_mean.to(torch.float64)
    if layer.bias is not None:
        shifted = shifted + layer.bias.to(torch.float64)
    # $b'_k = s_k (b_k - \mathbb{E}[x_k]) + \beta_k$
    bias = scale * shifted
    if bn.bias is not None:
        bias = bias + bn.bias.to(torch.float64)
    # $W'_k = s_k W_k$; the scale broadcasts over everything but the output channel
    layer.weight.copy_(weight * scale.view([c] + [1] * (weight.dim() - 1)))
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.empty(c, dtype=layer.weight.dtype,
                                              device=layer.weight.device))
    layer.bias.copy_(bias)


# ## Finding the pairs
FOLDABLE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _can_fold(layer: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(layer, FOLDABLE_LAYERS) and _keeps_running_stats(bn) and
            layer.weight.shape[0] == bn.running_mean.shape[0])


class _Tracer(torch.fx.Tracer):
    # Batch norms and the layers they fold into are recorded as calls, not traced into: our
    # `BatchNorm` checks its input's shape in Python, which a symbolic trace cannot evaluate.
    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return isinstance(m, BATCH_NORMS + FOLDABLE_LAYERS) or super().is_leaf_module(
            m, qualified_name)


def _traced_pairs(model: nn.Module) -> Optional[List[Tuple[str, str]]]:
    """Pairs found by tracing; `None` when the model cannot be traced."""
    try:
        graph = _Tracer().trace(model)
    except Exception:
        return None
    calls = [n for n in graph.nodes if n.op == 'call_module']
    # How often each module is called: a module called twice cannot be changed for one call
    times = {}
    for n in calls:
        times[n.target] = times.get(n.target, 0) + 1
    modules = dict(model.named_modules())
    pairs = []
    for n in calls:
        source = n.args[0] if n.args else None
        if (len(n.args) != 1 or n.kwargs or not isinstance(source, torch.fx.Node) or
                source.op != 'call_module' or len(source.users) != 1):
            continue
        if times[n.target] == 1 and times[source.target] == 1 and \
                _can_fold(modules[source.target], modules[n.target]):
            pairs.append((source.target, n.target))
    return pairs


def _sequential_pairs(model: nn.Module) -> List[Tuple[str, str]]:
    """Neighbours in `nn.Sequential` containers, each module appearing once in the model."""
    appearances = {}
    for _, m in model.named_modules(remove_duplicate=False):
        appearances[id(m)] = appearances.get(id(m), 0) + 1
    pairs = []
    for name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.named_children())
        for (a_name, a), (b_name, b) in zip(children, children[1:]):
            if appearances[id(a)] == 1 and appearances[id(b)] == 1 and _can_fold(a, b):
                prefix = f'{name}.' if name else ''
                pairs.append((prefix + a_name, prefix + b_name))
    return pairs


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


def _check_pairs(pairs, modules):
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f'expected pairs of (layer name, batch norm name), got {pair!r}')
        for name in pair:
            if name not in modules:
                raise ValueError(f'expected the name of a submodule, got {name!r}')
        layer, bn = modules[pair[0]], modules[pair[1]]
        if not _can_fold(layer, bn):
            raise ValueError(f'cannot fold {pair[1]} ({type(bn).__name__}) into {pair[0]} '
                             f'({type(layer).__name__}): expected a Conv1d/2d/3d or Linear '
                             f'followed by a batch norm with running statistics and as many '
                             f'channels as the layer has outputs')
