r"""
---
title: Synchronised Batch Normalization
summary: >
  Batch normalization across several processes with torch.distributed: every process
  normalises with the statistics of the whole global batch, for the price of a few numbers
  per channel per layer per step.
---

# Synchronised Batch Normalization

*Symbols as in [the notation table](../notation.md): $R$ is the number of ranks.*

[`BatchNorm`](batch_norm.md) computes its statistics over the mini-batch it is given.
On one device, that is the mini-batch the optimiser steps on. With *data parallelism* it is
not: $R$ processes (*ranks*, usually one per GPU) each hold a copy of the network, each gets
its own slice of the global batch, and after the backward pass the gradients are averaged
across the ranks (this is what `torch.nn.parallel.DistributedDataParallel` does).

For almost every layer this is exactly the same as training on the whole batch in one
process, because each example's output depends only on that example, and the loss is a
sum over examples. Batch normalization is the one common layer where that is false: the
output for an example depends on every other example of its batch, through $\mu_\mathcal{B}$
and $\sigma^2_\mathcal{B}$. The paper relies on that dependence twice: Section 2 argues that
the normalisation must be part of the network, with the gradient flowing through these
statistics (normalising outside the gradient let a bias grow without bound), and Section 3.4
credits part of batch normalization's regularising effect to each example being seen together
with the others of its mini-batch. A plain batch norm on each rank therefore normalises with
the statistics of its own slice, and the network being trained is not the one on the whole
batch.

This page builds `SyncBatchNorm`: the same module, except that during training every rank
normalises with the mean and variance of the *concatenated* batch of all ranks, and
back-propagates exactly as one process would on that batch. It uses `torch.distributed`
for the communication.

### Why per-device statistics hurt

*Our view, with later work where cited.*

* **Fewer examples, noisier statistics.** With 8 ranks and a global batch of 256, each
  $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$ comes from 32 examples instead of 256. For
  convolutions the count is the number of images times height × width, but neighbouring pixels of one image are
  strongly correlated, so the number of images is what matters. Detection and segmentation
  networks train on large images with one to a few images per GPU, and there the statistics
  describe little more than the images at hand. Training normalises with these noisy
  estimates while inference uses population averages, so the two disagree. Later work made
  this its motivation: Peng et al.,
  [MegDet](https://arxiv.org/abs/1711.07240) (2018), synchronised batch norm across GPUs to
  train detectors with large batches, and Wu and He, [Group Normalization](https://arxiv.org/abs/1803.08494)
  (2018), showed batch norm's error growing as the per-GPU batch shrinks.
* **The model depends on the hardware.** Without syncing, the batch that is normalised
  together is the global batch divided by the number of GPUs. Moving a training recipe from
  8 GPUs to 16 silently changes the network, not only the speed.
* **The population statistics come from one rank.** Each rank's moving averages follow its
  own slices. `DistributedDataParallel` keeps the copies alike by broadcasting rank 0's
  buffers before every forward pass, so the statistics used at inference are those of rank
  0's slices alone. With syncing, every rank computes the same global statistics and its
  moving averages are identical to everyone else's without any broadcast.

### What is communicated

Not the activations. To normalise, each rank only needs the global mean and variance of each
channel, and these can be put together from three numbers per channel per rank: how many
values rank $q$ has, $n_q$; their mean, $\mu_q$; and their centred sum of squares,
$M_q = \sum_i (x_i - \mu_q)^2$. Every rank sends its $3C$ numbers to every other rank (an
*all-gather*), and each merges the $R$ triples itself (see [the merge](#merging-statistics)).
In the backward pass the gradient with respect to each input needs, besides local values,
two sums over the whole batch per channel, $\sum_i \frac{\partial \ell}{\partial y_i}$ and
$\sum_i \frac{\partial \ell}{\partial y_i}\hat{x}_i$; they are summed
over ranks with an *all-reduce* (see [the backward pass](#backward)).

So a batch norm layer with $C$ channels communicates $3C$ numbers per rank in the forward pass
and $2C$ in the backward pass, once per step. This does not depend on the batch size nor on
the height and width of the feature maps: an `[N, C, H, W]` activation of millions of values
costs as much to synchronise as a $[2, C]$ one.

### When syncing is not worth it

*Our view.*

* **When each rank already has enough examples.** Image classification typically has dozens
  of images per GPU; the local statistics are then already good, and syncing buys little.
  Later work even prefers small normalisation batches on purpose: Hoffer et al.
  ([Train longer, generalize better](https://arxiv.org/abs/1705.08741), 2017) normalise
  "ghost batches" smaller than the optimisation batch, and Goyal et al.
  ([Accurate, Large Minibatch SGD](https://arxiv.org/abs/1706.02677), 2017) keep the
  per-GPU batch norm batch fixed while the global batch grows, treating it as a
  hyper-parameter of its own. The noise of small batches is part of batch norm's
  regularising effect, which the paper observed.
* **When latency dominates.** The amount of data is tiny, but each layer adds one blocking
  collective to the forward pass and one to the backward pass. Gradient averaging in
  `DistributedDataParallel` overlaps with the backward computation; these cannot, since the
  next operation needs their result. A deep network with many thin layers and fast GPUs waits
  on round trips, which costs the most across machines on a slow network.
* **When the batch axis can be avoided.** Normalisations that do not mix examples, such as
  layer or group normalization (later work), need no communication at all.
* **At inference.** In evaluation mode the layer normalises with its population estimates
  and there is nothing to synchronise; `SyncBatchNorm` then communicates nothing.
"""

import torch
import torch.distributed as dist

from labml_nn_bn.batch_norm import BatchNorm, _functional


# ## Per-rank statistics
#
# Each rank $q$ describes its slice of the batch, one channel at a time, by the count $n_q$,
# the mean $\mu_q$ and the centred sum of squares $M_q = \sum_i (x_i - \mu_q)^2$.
#
# We do *not* send $\sum_i x_i$ and $\sum_i x_i^2$, even though they would merge by plain
# addition: the variance would then come from
# $\frac{1}{m}\sum_i x_i^2 - \big(\frac{1}{m}\sum_i x_i\big)^2$, which cancels catastrophically
# when the mean is large compared to the standard deviation (our addition to the paper; see
# the numerics on [the `BatchNorm` page](batch_norm.md)). $M_q$ is a sum of squares of
# *centred* values and has no such cancellation.
#
# Like `BatchNorm`, we centre in two steps: a shift $K$, a first estimate of the mean, then
# the mean $\bar\delta$ of the differences $\delta_i = x_i - K$, which recovers what rounding
# took from $K$. The mean is $\mu_q = K + \bar\delta$, kept in `float64` so that the correction survives the addition.
# The triple is sent in `float64` too: a count above $2^{24}$, easy to reach for a 3D
# input, is no longer exact in `float32`, and the merge below should add no rounding of
# its own. It is $3C$ numbers; their precision costs nothing.
def local_moments(x: torch.Tensor) -> torch.Tensor:
    r"""
    Returns a `float64` tensor of shape `[3, C]` holding $n_q$, $\mu_q$ and $M_q$ of each
    channel of `x` (`[N, C, *]`), computed in at least `float32`.
    An empty slice has $n_q = 0$, $\mu_q = 0$ and $M_q = 0$.
    """
    dims = _reduced_dims(x)
    channels = x.shape[1]
    n = x.numel() // channels
    if n == 0:
        return torch.zeros(3, channels, dtype=torch.float64, device=x.device)
    xc = x.to(_compute_dtype(x))
    # $K$, a first estimate of the mean; [1, C, 1, ...]
    shift = xc.mean(dim=dims, keepdim=True)
    # $\delta_i = x_i - K$
    d = xc - shift
    # $\bar\delta = \frac{1}{n_q}\sum_i \delta_i$
    residual = d.mean(dim=dims, keepdim=True)
    # $M_q = \sum_i (\delta_i - \bar\delta)^2 = \sum_i (x_i - \mu_q)^2$
    centred = d - residual
    m2 = (centred * centred).sum(dim=dims)
    # $\mu_q = K + \bar\delta$, added in `float64`
    mean = shift.flatten().double() + residual.flatten().double()
    count = torch.full_like(mean, float(n))
    return torch.stack([count, mean, m2.double()])  # [3, C]


# ## Merging statistics
#
# Chan, Golub and LeVeque (*Updating formulae and a pairwise algorithm for computing sample
# variances*, 1979; see
# [Wikipedia](https://en.wikipedia.org/wiki/Algorithms_for_calculating_variance#Parallel_algorithm))
# showed how to combine
# the statistics of two parts $1$ and $2$ of a data set without going back to the data:
# with $n = n_1 + n_2$ and $\Delta = \mu_2 - \mu_1$,
#
# $$\mu = \mu_1 + \Delta \frac{n_2}{n} \qquad
#   M = M_1 + M_2 + \Delta^2 \frac{n_1 n_2}{n}$$
#
# The second formula says that the spread of the union is the spread inside each part plus
# the spread of the parts' means around each other. Folding the $R$ ranks in one by one with
# this rule gives the same result as applying it to all of them at once:
#
# $$n = \sum_q n_q \qquad \mu = \frac{1}{n} \sum_q n_q \mu_q$$
#
# $$M = \sum_q M_q + \sum_q n_q (\mu_q - \mu)^2$$
#
# which is what we compute, since it needs no loop over ranks. Every term of $M$ is a square,
# so nothing cancels; a rank with $n_q = 0$ contributes nothing, as it should.
# Over the global batch $\mathcal{B}$ of all ranks, $m = n$ values per channel, the mean is
# $\mu_\mathcal{B} = \mu$ and the biased variance that normalises is
# $\sigma^2_\mathcal{B} = M / n$.
def merge_moments(moments: torch.Tensor):
    r"""
    `moments` is `[R, 3, C]`, the triples of every rank. Returns $n$ (an `int`) and the
    `float64` mean $\mu_\mathcal{B}$ and biased variance $\sigma^2_\mathcal{B}$, each of
    shape `[C]`.
    """
    counts, means, m2 = moments[:, 0], moments[:, 1], moments[:, 2]  # [R, C] each
    # $n = \sum_q n_q$; all channels share one count
    n = counts[:, 0].sum()
    # $\mu = \frac{1}{n} \sum_q n_q \mu_q$
    mean = (counts * means).sum(dim=0) / n
    # $M = \sum_q M_q + \sum_q n_q (\mu_q - \mu)^2$
    spread = means - mean
    m2 = m2.sum(dim=0) + (counts * spread * spread).sum(dim=0)
    return int(n.item()), mean, m2 / n


# ## Communication
#
# Every rank sends its `[3, C]` triple and receives everyone's. All ranks of the group must
# call this together, the ranks with an empty slice included: a collective waits for every
# member, so a rank that skipped it would leave the others waiting.
def gather_moments(local: torch.Tensor, group) -> torch.Tensor:
    """`local` is this rank's `[3, C]`; returns `[R, 3, C]`, in rank order on every rank."""
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, local, group=group)
    return torch.stack(parts)


# ## Normalisation with the global statistics
#
# Given the global $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$, the forward pass is Algorithm 1 of the
# paper applied to this rank's slice. The gradient is where the ranks meet again.
class SyncBatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight, bias, mean: torch.Tensor, var: torch.Tensor,
                count: int, eps: float, group):
        r"""
        ### Forward

        `x` is this rank's slice, `[N, C, *]`; `mean` and `var` are the global `float64`
        $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$ of shape `[C]`, over `count` values per
        channel.

        The mean arrives in `float64`. Rounding it to `float32` would lose the low bits that
        matter when the mean is large compared to the standard deviation, so we split it into
        a `float32` part $\mu_{hi}$ and the remainder $\mu_{lo} = \mu_\mathcal{B} - \mu_{hi}$ and subtract
        them one after the other, as `BatchNorm` subtracts its shift and residual.
        """
        dtype = _compute_dtype(x)
        shape = _channel_shape(x)
        xc = x.to(dtype)
        # $\mu_\mathcal{B} = \mu_{hi} + \mu_{lo}$
        mean_hi = mean.to(dtype)
        mean_lo = (mean - mean_hi.double()).to(dtype)
        mean_hi, mean_lo = mean_hi.view(shape), mean_lo.view(shape)
        # $\frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$, from the `float64` variance
        inv_std = torch.rsqrt(var + eps).to(dtype).view(shape)
        # $\hat{x}_i = \frac{x_i - \mu_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$; [N, C, *]
        x_hat = ((xc - mean_hi) - mean_lo) * inv_std
        # $y_i = \gamma \hat{x}_i + \beta$
        y = x_hat
        if weight is not None:
            y = y * weight.to(dtype).view(shape)
        if bias is not None:
            y = y + bias.to(dtype).view(shape)

        ctx.save_for_backward(x, weight, mean_hi, mean_lo, inv_std)
        ctx.count = count
        ctx.group = group
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y.to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        r"""
        ### Backward

        On one process, the paper's gradient collapses to (see [`BatchNorm`](batch_norm.md))
        $$\begin{aligned}
        \frac{\partial \ell}{\partial x_i} = \frac{\gamma}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
          \Big(&\frac{\partial \ell}{\partial y_i}
          - \frac{1}{m}\sum_j \frac{\partial \ell}{\partial y_j} \\
          &- \hat{x}_i \, \frac{1}{m}\sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j\Big)
        \end{aligned}$$
        The two sums run over the whole batch: the loss reaches $x_i$ through
        $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$, and every example of every rank changes
        those. Everything else is local. So each rank computes both sums over its slice, the
        $2C$ sums are added up over the ranks, and each rank finishes its own part of the
        gradient.
        """
        # A batch of gradients (`is_grads_batched`) would have to go through the
        # all-reduce, which has no rule for it
        if _functional(grad_y):
            raise ValueError(_TRANSFORMS_REFUSED)
        x, weight, mean_hi, mean_lo, inv_std = ctx.saved_tensors
        dtype = _compute_dtype(x)
        dims = _reduced_dims(x)
        shape = _channel_shape(x)
        # $\hat{x}_i$, rebuilt rather than stored
        x_hat = ((x.to(dtype) - mean_hi) - mean_lo) * inv_std
        g = grad_y.to(dtype)
        # This rank's two sums; [2, C]
        local_sums = torch.stack([g.sum(dim=dims), (g * x_hat).sum(dim=dims)])

        grad_x = None
        if ctx.needs_input_grad[0]:
            # The sums over all ranks' values
            sums = local_sums.clone()
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=ctx.group)
            m = ctx.count
            sum_g, sum_g_x_hat = sums[0].view(shape), sums[1].view(shape)
            gamma = weight.to(dtype).view(shape) if weight is not None else 1.
            # $\frac{\partial \ell}{\partial x_i}$, the formula above with the global $m$ and sums
            grad_x = (gamma * inv_std) * (g - sum_g / m - x_hat * (sum_g_x_hat / m))
            grad_x = grad_x.to(x.dtype)

        # $\frac{\partial \ell}{\partial \gamma} = \sum_i \frac{\partial \ell}{\partial y_i} \hat{x}_i$ and
        # $\frac{\partial \ell}{\partial \beta} = \sum_i \frac{\partial \ell}{\partial y_i}$ over this rank's slice only.
        # `DistributedDataParallel` adds up (averages) parameter gradients across ranks
        # itself; summing them here as well would count every rank $R$ times.
        grad_weight = grad_bias = None
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = local_sums[1].to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = local_sums[0].to(ctx.bias_dtype)
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


# ## Synchronised Batch Normalization layer
class SyncBatchNorm(BatchNorm):
    r"""
    `BatchNorm` whose training statistics are those of the batch concatenated over every rank
    of `process_group` (the default group when `None`). It takes the same arguments, and has
    the same parameters, buffers and `state_dict` as [`BatchNorm`](batch_norm.md#batchnorm).

    Every rank of the group must run the layer's forward pass, and its backward pass, the
    same number of times in the same order, with the same number of channels: collectives
    wait for all members. A rank with an empty slice (batch size $0$) still calls the model,
    and gets an empty output.

    Outside an initialised process group, or in a group of one, it is `BatchNorm`.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum=0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None, *, bias: bool = True, process_group=None):
        super().__init__(channels, eps, momentum, affine, track_running_stats, device, dtype,
                         bias=bias)
        self.process_group = process_group

    def forward(self, x: torch.Tensor):
        r"""
        `x` has shape `[N, C, *]`, this rank's slice; the output has the same shape, dtype
        and memory format.
        """
        self._check_input(x)
        # Only the training forward pass uses batch statistics that span the ranks. In
        # evaluation the layer uses its population estimates (or, without them, the local
        # batch, as `torch.nn.SyncBatchNorm` does), so nothing is communicated.
        if not self.training or not self._is_distributed():
            return super().forward(x)
        # The collectives have no rule for `torch.func`'s transforms or forward-mode AD
        # (nor have `torch.nn.SyncBatchNorm`'s): refused before anything is communicated
        if _functional(x):
            raise ValueError(_TRANSFORMS_REFUSED)

        # $n_q$, $\mu_q$, $M_q$ of this rank, everyone's, and the merged $n$, $\mu_\mathcal{B}$,
        # $\sigma^2_\mathcal{B}$
        with torch.no_grad():
            moments = gather_moments(local_moments(x), self.process_group)  # [R, 3, C]
            m, mean, var = merge_moments(moments)

        # The same cases as `BatchNorm`, decided on the global count: every rank knows it, so all
        # of them take the same branch and none is left waiting in a collective. With no values
        # anywhere, every rank's slice is empty, and `BatchNorm` handles it without communicating.
        if m == 0:
            return super().forward(x)
        if m == 1:
            raise ValueError(f"expected more than 1 value per channel over all ranks when "
                             f"training, got 1 (this rank's input has shape {tuple(x.shape)})")

        y = SyncBatchNormFunction.apply(x, self.weight, self.bias, mean, var, m, self.eps,
                                        self.process_group)
        # The moving averages see the global batch: $\mu$, $\sigma^2_\mathcal{B}$, and $m$ in
        # the correction $\frac{m}{m-1}$, so every rank keeps the same population estimates.
        if self.track_running_stats:
            dtype = _compute_dtype(x)
            self._update_running_stats(mean.to(dtype), var.to(dtype), m)
        return y

    def _is_distributed(self) -> bool:
        # Whether there are other ranks to synchronise with
        if not (dist.is_available() and dist.is_initialized()):
            return False
        return dist.get_world_size(self.process_group) > 1

    # `BatchNorm` refuses an input with a single value per channel when training. Synchronised,
    # that rule is about the global batch, checked in `forward` once every rank's count is
    # known: one rank may hold a single example while the others hold many. Here only the
    # type, rank and number of channels are checked, on an empty slice of the same input.
    def _check_input(self, x):
        if self.training and isinstance(x, torch.Tensor) and x.dim() >= 2 \
                and self._is_distributed():
            x = x[:0]
        super()._check_input(x)


# Where the ranks are synchronised, `torch.func` transforms, forward-mode AD and batched
# gradients meet collectives that have no rule for them
_TRANSFORMS_REFUSED = (
    "expected SyncBatchNorm's training forward and backward passes outside torch.func "
    "transforms (grad, vmap, jvp, ...), forward-mode AD and batched gradients "
    "(is_grads_batched) while it synchronises several ranks, got one inside: the "
    "collectives have no rule for them, as in torch.nn.SyncBatchNorm. Use evaluation "
    "mode, or BatchNorm on each rank")


# ## Converting a model
#
# Models are usually built with ordinary batch norms, and switched over for data-parallel
# training. `convert_sync_batch_norm` walks the module tree and swaps each batch norm, ours
# or `torch.nn`'s, for a `SyncBatchNorm` with the same settings. The new module takes over
# the old one's parameter and buffer tensors themselves rather than copies, so device,
# dtype, `requires_grad`, the learned values and the statistics are all kept, and an
# optimiser built on the old model still holds the right parameters.
#
# A module can be registered under several names (a layer reused, or kept under an alias);
# every name of a batch norm gets the same new module, so that what was shared stays shared
# and no name is left unsynchronised. All the new modules are made before any is put in
# place, so that a batch norm that cannot be converted leaves the model as it was.
def convert_sync_batch_norm(model: torch.nn.Module, process_group=None) -> torch.nn.Module:
    """
    Returns `model` with every `BatchNorm` (this package's, `SyncBatchNorm` included) and
    every `torch.nn.BatchNorm1d/2d/3d` (and `torch.nn.SyncBatchNorm`) replaced by a
    `SyncBatchNorm` on `process_group`, under each of its names. Children are replaced in
    place; if `model` itself is a batch norm, the new module is returned.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    converted = {}
    names = []
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, (BatchNorm, torch.nn.modules.batchnorm._BatchNorm)):
            if id(module) not in converted:
                converted[id(module)] = _to_sync(module, name, process_group)
            names.append((name, module))
    if id(model) in converted:
        return converted[id(model)]
    for name, module in names:
        parent, _, child = name.rpartition('.')
        setattr(model.get_submodule(parent), child, converted[id(module)])
    return model


# A `SyncBatchNorm` taking over the parameters and buffers of the batch norm `module`, found
# at `name` in the model
def _to_sync(module: torch.nn.Module, name: str, process_group) -> SyncBatchNorm:
    where = f"{name!r} ({type(module).__name__})" if name else \
        f"the model ({type(module).__name__})"
    if isinstance(module, BatchNorm):
        channels = module.channels
    else:
        if isinstance(module, torch.nn.modules.lazy.LazyModuleMixin) and \
                module.has_uninitialized_params():
            raise ValueError(f"cannot convert {where} before its first forward pass: its "
                             f"number of channels is not known yet")
        channels = module.num_features
    sync = SyncBatchNorm(channels, eps=module.eps, momentum=module.momentum,
                         affine=module.affine, track_running_stats=module.track_running_stats,
                         bias=module.bias is not None, device='meta',
                         process_group=process_group)
    # The very same tensors: learned values, statistics, device, dtype, `requires_grad`
    for tensor in ('weight', 'bias'):
        if getattr(module, tensor, None) is not None:
            setattr(sync, tensor, getattr(module, tensor))
    for tensor in ('running_mean', 'running_var', 'num_batches_tracked'):
        if getattr(module, tensor, None) is not None:
            setattr(sync, tensor, getattr(module, tensor))
    if any(t.is_meta for t in list(sync.parameters()) + list(sync.buffers())):
        raise ValueError(f"cannot convert {where}: its flags say it has parameters or "
                         f"statistics that it does not hold")
    sync.train(module.training)
    return sync


# ## Shapes and dtypes
#
# As in `BatchNorm`: statistics are per channel, over every dimension but $1$.
def _reduced_dims(x: torch.Tensor):
    return [0] + list(range(2, x.dim()))


# The shape [1, C, 1, ...] of per-channel values broadcast over an [N, C, *] input
def _channel_shape(x: torch.Tensor):
    return [1, x.shape[1]] + [1] * (x.dim() - 2)


# Statistics and gradients are computed in at least `float32`, also for `bfloat16` and
# `float16` inputs
def _compute_dtype(x: torch.Tensor):
    return torch.promote_types(x.dtype, torch.float32)
