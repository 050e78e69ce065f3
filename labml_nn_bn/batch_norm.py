r"""
---
title: Batch Normalization
summary: >
  An annotated PyTorch implementation of Batch Normalization (Ioffe & Szegedy, 2015),
  with the paper's back-propagation written out by hand and numerically stable statistics.
---

# Batch Normalization

This is a [PyTorch](https://pytorch.org) implementation of Batch Normalization from the paper
[Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift](https://arxiv.org/abs/1502.03167)
by Sergey Ioffe and Christian Szegedy (ICML 2015).
It is a drop-in replacement for `torch.nn.BatchNorm1d`, `BatchNorm2d` and `BatchNorm3d`,
and this single file can be copied into any project that has PyTorch.

### Internal covariate shift

A deep network is a stack of functions, and each layer is trained on the outputs of the layers
below it. Those outputs are not fixed: every gradient step changes the parameters of the lower
layers, and with them the distribution of what the upper layers receive.
The paper calls this change *internal covariate shift*.

Picture a layer $l_2$ that, early in training, sees inputs that look like $\mathcal{N}(0.5, 1)$.
A few thousand steps later the layers under it have moved, and $l_2$ now sees something like
$\mathcal{N}(0.6, 1.5)$. Whatever $l_2$ had learned about its inputs is partly stale, so part of
every update is spent chasing a moving target. This is one reason deep networks needed small
learning rates and careful initialisation, and why saturating non-linearities such as the
sigmoid were hard to train: once a shifted input drifts into the flat tails of the sigmoid,
its gradient almost vanishes and the unit gets stuck.

### Whitening, and why it is too expensive

It has long been known that a network trains faster when its inputs are *whitened*: shifted to
zero mean, scaled to unit variance and decorrelated. Doing the same for the inputs of every
layer would hold their distributions still. Full whitening, however, needs the covariance
matrix of each layer's inputs, its inverse square root, and the derivatives of all of that
for back-propagation, at every training step. For a layer with $d$ inputs that is an
$O(d^2)$ matrix and an $O(d^3)$ decomposition per step.

### Normalising outside the gradient does not work

A tempting shortcut is to normalise activations but let the optimiser ignore the normalisation,
treating the statistics as constants. The paper shows why this fails.
Take a layer that adds a learned bias $b$ to its input $u$, so $x = u + b$, and centre it with
$\hat{x} = x - \mathbb{E}[x]$, where the mean is computed over the training data but is
invisible to the gradient. The gradient step $b \leftarrow b + \Delta b$, with
$\Delta b \propto -\frac{\partial \ell}{\partial \hat{x}}$, then yields

$$u + (b + \Delta b) - \mathbb{E}[u + (b + \Delta b)] = u + b - \mathbb{E}[u + b]$$

The output, and so the loss, is exactly what it was before the step. The optimiser keeps seeing
the same non-zero gradient, keeps moving $b$, and $b$ grows without bound while nothing
improves. Scaling by the standard deviation fails in the same way. The lesson is that the
normalisation has to be *part of the network*: the gradient must flow through the mean and
variance, so that the optimiser knows they depend on the parameters.

### Two simplifications

Batch Normalization makes this affordable with two simplifications.

1. **Each feature is normalised on its own.** Instead of whitening the vector $x$ jointly,
   every component $x^{(k)}$ is standardised,
   $$\hat{x}^{(k)} = \frac{x^{(k)} - \mathbb{E}[x^{(k)}]}{\sqrt{\mathrm{Var}[x^{(k)}]}}$$
   This keeps the speed-up from standardising, and drops the decorrelation, which would need
   the covariance matrix.
2. **The statistics come from the mini-batch.** $\mathbb{E}$ and $\mathrm{Var}$ are estimated from the
   mini-batch that is being trained on, so they are cheap to compute and, crucially,
   differentiable functions of the batch: gradients flow through them.

### Scale and shift

Forcing every input of a layer to zero mean and unit variance can limit what the layer can
express. Inputs of a sigmoid, for instance, would be confined to its nearly linear region
around zero. So each feature gets two learned parameters, a scale $\gamma^{(k)}$ and a shift
$\beta^{(k)}$:

$$y^{(k)} = \gamma^{(k)} \hat{x}^{(k)} + \beta^{(k)}$$

With $\gamma^{(k)} = \sqrt{\mathrm{Var}[x^{(k)}]}$ and $\beta^{(k)} = \mathbb{E}[x^{(k)}]$ the layer
recovers its original activations, so normalisation never removes capacity: the network decides
how much of it to keep.

### The bias before a batch norm is redundant

Batch normalization is usually placed after a linear or convolution layer, $x = Wu + b$.
The bias $b$ is constant over the batch, so subtracting the batch mean removes it completely,
and $\beta$ takes over its job. The layer before a batch norm should therefore be built with
`bias=False`: the bias would only waste parameters and computation.

### Scale invariance and regularisation

Multiplying the weights of the layer before a batch norm by a scalar $a$ changes nothing
downstream, $\text{BN}(Wu) = \text{BN}((aW)u)$, and it does not change the gradient with
respect to the layer's input either. The gradient with respect to the weights shrinks as they
grow,
$$\frac{\partial \text{BN}((aW)u)}{\partial (aW)} = \frac{1}{a} \frac{\partial \text{BN}(Wu)}{\partial W}$$
so large weights get small updates, which stabilises the growth of the parameters and allows
larger learning rates. In practice batch normalization also regularises: a training example is
always normalised together with the other, randomly drawn, examples of its mini-batch, so the
network never sees exactly the same activation twice.

### Inference

After training, the output for an example should depend on that example alone, not on
whichever batch it arrives with. At inference time the mini-batch statistics are replaced by
population statistics, estimated during training with moving averages; see
[`BatchNorm`](#batchnorm) below.

### Input layouts

Statistics are computed per channel $C$, over every other dimension: $[B, C]$ for the outputs
of a fully connected layer, $[B, C, L]$ for sequences, $[B, C, H, W]$ for images (one $\gamma$
and $\beta$ per feature map, with an effective mini-batch of $m = B \cdot H \cdot W$ values),
and in general any $[B, C, *]$.
"""

import torch

# The module is a [`labml_helpers`](https://github.com/labmlai/labml/tree/master/helpers) module
# when that package is installed; otherwise a plain `torch.nn.Module`, so that this file can be
# copied into any project with only PyTorch.
try:
    from labml_helpers.module import Module
except ImportError:
    Module = torch.nn.Module


# ## Shapes
#
# The dimensions that are reduced to get per-channel statistics: all of them except the
# channel dimension $1$, so that a $[B, C, *]$ input gives $[1, C, 1, \dots]$ statistics which
# broadcast back over the input.
def _reduced_dims(x: torch.Tensor):
    return [0] + list(range(2, x.dim()))


# The shape $[1, C, 1, \dots]$ that per-channel values ($\gamma$, $\beta$, statistics) take to
# broadcast over a $[B, C, *]$ input.
def _channel_shape(x: torch.Tensor):
    return [1, x.shape[1]] + [1] * (x.dim() - 2)


# Statistics are computed in at least `float32`, so that `float16` and `bfloat16` inputs
# (with a few bits of mantissa) are not summed over thousands of values in their own precision.
def _compute_dtype(x: torch.Tensor):
    return torch.promote_types(x.dtype, torch.float32)


# ## Mini-batch statistics
#
# Algorithm 1 of the paper needs the mini-batch mean and the *biased* mini-batch variance of
# each channel,
#
# $$\mu_\mathcal{B} = \frac{1}{m} \sum_{i=1}^m x_i \qquad
#   \sigma^2_\mathcal{B} = \frac{1}{m} \sum_{i=1}^m (x_i - \mu_\mathcal{B})^2$$
#
# ### Why not $\mathrm{Var}[x] = \mathbb{E}[x^2] - \mathbb{E}[x]^2$?
#
# That identity gives the variance in a single pass over the data, and it is exact in real
# arithmetic. In floating point it subtracts two large, nearly equal numbers: when the mean is
# much larger than the standard deviation, almost all significant bits cancel and what is left
# is rounding error, sometimes negative. We measured it on `float32` input of shape
# $[64, 16, 8, 8]$ (`benchmarks/variance_numerics.py`): the relative error of the normalised
# output against a `float64` reference is $9 \times 10^{-2}$ for $\mathcal{N}(10^3, 1)$, and
# for $\mathcal{N}(10^4, 1)$ the "variance" comes out negative and the output is `NaN`.
#
# The two-pass form, $\frac{1}{m}\sum_i (x_i - \mu_\mathcal{B})^2$, does not cancel, but it still
# depends on how well $\mu_\mathcal{B}$ itself is represented: at $10^4$ the spacing of `float32`
# numbers is about $10^{-3}$, so a rounded mean is off by up to $5 \times 10^{-4}$ standard
# deviations, and summation error adds to that. We measured $1.5 \times 10^{-3}$ relative error
# for $\mathcal{N}(10^4, 1)$; `torch.nn.BatchNorm2d` gives $3.8 \times 10^{-4}$ there.
#
# We therefore keep the mean in two parts. A first pass gives an estimate $s$ of the mean.
# Since every $x_i$ is close to $s$, the differences $d_i = x_i - s$ are computed exactly, and
# the residual $r = \frac{1}{m}\sum_i d_i$ is the small correction that rounding took away:
# $\mu_\mathcal{B} = s + r$ without ever rounding the sum $s + r$.
# The centred values are $x_i - \mu_\mathcal{B} = d_i - r$, and
#
# $$\sigma^2_\mathcal{B} = \frac{1}{m} \sum_{i=1}^m (d_i - r)^2$$
#
# This costs one more pass over the data and keeps the relative error below $10^{-7}$ from
# $\mathcal{N}(0, 1)$ all the way to $\mathcal{N}(10^6, 1)$, where `torch.nn.BatchNorm2d` is
# at $2.7 \times 10^{-2}$ (measured with torch 2.13 on CPU).
def batch_statistics(x: torch.Tensor, shift: torch.Tensor = None):
    r"""
    Returns the shift $s$, the residual $r$ and the biased variance $\sigma^2_\mathcal{B}$,
    each of shape $[1, C, 1, \dots]$, for an input `x` of shape $[B, C, *]$ in the compute
    dtype. A `shift` may be passed in, so that back-propagation can rebuild the statistics
    around the same $s$ as the forward pass did.
    """
    dims = _reduced_dims(x)
    # $s$, a first estimate of the mean; $[1, C, 1, \dots]$
    if shift is None:
        shift = x.mean(dim=dims, keepdim=True)
    # $d_i = x_i - s$
    d = x - shift
    # $r = \frac{1}{m}\sum_i d_i$
    residual = d.mean(dim=dims, keepdim=True)
    # $x_i - \mu_\mathcal{B} = d_i - r$
    centred = d - residual
    # $\sigma^2_\mathcal{B} = \frac{1}{m}\sum_i (x_i - \mu_\mathcal{B})^2$
    var = (centred * centred).mean(dim=dims, keepdim=True)
    return shift, residual, var


# ## Normalisation with the paper's back-propagation
#
# Autograd could differentiate the forward pass on its own. Writing the backward pass out
# shows what the paper's Section 3 derives: how the loss gradient reaches every input *through*
# the mean and the variance, which is exactly what normalising outside the gradient was missing.
class BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight, bias, eps: float):
        r"""
        ### Forward: Algorithm 1

        `x` has shape $[B, C, *]$; `weight` ($\gamma$) and `bias` ($\beta$) have shape $[C]$ or are
        `None`. Returns the output $y$ in the dtype of `x`, and the batch mean and biased batch
        variance of shape $[C]$ for the running statistics.
        """
        dtype = _compute_dtype(x)
        shape = _channel_shape(x)
        xc = x.to(dtype)
        # $s$, $r$ and $\sigma^2_\mathcal{B}$ as above
        shift, residual, var = batch_statistics(xc)
        # $\frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$; $[1, C, 1, \dots]$
        inv_std = torch.rsqrt(var + eps)
        # $\hat{x}_i = \frac{x_i - \mu_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$; $[B, C, *]$
        x_hat = ((xc - shift) - residual) * inv_std
        # $y_i = \gamma \hat{x}_i + \beta$
        y = x_hat
        if weight is not None:
            y = y * weight.to(dtype).view(shape)
        if bias is not None:
            y = y + bias.to(dtype).view(shape)

        # Back-propagation needs $x$, $\gamma$ and the statistics; $\hat{x}$ is rebuilt from them
        # rather than stored, which keeps one activation-sized tensor instead of two.
        ctx.save_for_backward(x, weight, shift, residual, inv_std)
        ctx.eps = eps
        ctx.bias_dtype = None if bias is None else bias.dtype

        # $\mu_\mathcal{B} = s + r$ and $\sigma^2_\mathcal{B}$ leave as plain numbers: the running
        # averages are bookkeeping, not part of the function being differentiated.
        mean = (shift + residual).flatten()
        var = var.flatten()
        ctx.mark_non_differentiable(mean, var)
        return y.to(x.dtype), mean, var

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor, _grad_mean, _grad_var):
        r"""
        ### Backward: the paper's Section 3

        `grad_y` is $\frac{\partial \ell}{\partial y_i}$ of shape $[B, C, *]$. Every sum below runs
        over the $m$ values of one channel, i.e. over all dimensions except $C$.
        """
        x, weight, shift, residual, inv_std = ctx.saved_tensors
        dtype = _compute_dtype(x)
        dims = _reduced_dims(x)
        shape = _channel_shape(x)
        xc = x.to(dtype)
        # $m$, the number of values each statistic is computed over
        m = x.numel() // x.shape[1]

        # For a second derivative (`create_graph=True`, as `gradgradcheck` does), the statistics
        # must themselves be functions of $x$, so they are rebuilt differentiably around the same
        # shift $s$. The result does not depend on $s$: any constant shift cancels in $d_i - r$.
        if torch.is_grad_enabled():
            _, residual, var = batch_statistics(xc, shift)
            inv_std = torch.rsqrt(var + ctx.eps)

        # $x_i - \mu_\mathcal{B}$; $[B, C, *]$
        centred = (xc - shift) - residual
        # $\hat{x}_i$
        x_hat = centred * inv_std
        g = grad_y.to(dtype)
        gamma = weight.to(dtype).view(shape) if weight is not None else 1.

        # $$\frac{\partial \ell}{\partial \hat{x}_i} = \frac{\partial \ell}{\partial y_i} \cdot \gamma$$
        grad_x_hat = g * gamma
        # $$\frac{\partial \ell}{\partial \sigma^2_\mathcal{B}} =
        #   \sum_{i=1}^m \frac{\partial \ell}{\partial \hat{x}_i} (x_i - \mu_\mathcal{B})
        #   \cdot \frac{-1}{2} (\sigma^2_\mathcal{B} + \epsilon)^{-3/2}$$
        #
        # Since $x_i - \mu_\mathcal{B} = \hat{x}_i \sqrt{\sigma^2_\mathcal{B} + \epsilon}$, this equals
        # $-\frac{1}{2} \sum_i \frac{\partial \ell}{\partial \hat{x}_i} \hat{x}_i \cdot
        # (\sigma^2_\mathcal{B} + \epsilon)^{-1}$, which is how it is computed, one factor of
        # $\frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$ at a time: for a constant channel and a
        # tiny $\epsilon$ (say $10^{-30}$), $(\sigma^2_\mathcal{B} + \epsilon)^{-3/2}$ overflows `float32`
        # to infinity, and $0 \cdot \infty$ would make every gradient `NaN`.
        grad_var = ((grad_x_hat * x_hat).sum(dim=dims, keepdim=True) * inv_std) * (-0.5 * inv_std)
        # $$\begin{aligned}\frac{\partial \ell}{\partial \mu_\mathcal{B}} =
        #   &\Bigg(\sum_{i=1}^m \frac{\partial \ell}{\partial \hat{x}_i}
        #   \cdot \frac{-1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}} \Bigg) \\
        #   &+ \frac{\partial \ell}{\partial \sigma^2_\mathcal{B}}
        #   \cdot \frac{\sum_{i=1}^m -2(x_i - \mu_\mathcal{B})}{m}\end{aligned}$$
        #
        # The second term is zero in exact arithmetic, since the centred values sum to zero;
        # it is kept to follow the paper's derivation step by step.
        grad_mean = ((grad_x_hat * -inv_std).sum(dim=dims, keepdim=True) +
                     grad_var * (-2. * centred).sum(dim=dims, keepdim=True) / m)
        # $$\begin{aligned}\frac{\partial \ell}{\partial x_i} =
        #   &\frac{\partial \ell}{\partial \hat{x}_i} \cdot \frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
        #   + \frac{\partial \ell}{\partial \sigma^2_\mathcal{B}} \cdot \frac{2(x_i - \mu_\mathcal{B})}{m} \\
        #   &+ \frac{\partial \ell}{\partial \mu_\mathcal{B}} \cdot \frac{1}{m}\end{aligned}$$
        #
        # Each input reaches the loss three ways: directly, through the variance and through
        # the mean. Collecting the terms gives the compact form
        # $\frac{\partial \ell}{\partial x_i} = \frac{\gamma}{m\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
        # \big(m g_i - \sum_j g_j - \hat{x}_i \sum_j g_j \hat{x}_j\big)$ with
        # $g_i = \frac{\partial \ell}{\partial y_i}$: the gradient is projected so that it
        # can neither shift the batch mean nor stretch the batch variance.
        grad_x = grad_x_hat * inv_std + grad_var * 2. * centred / m + grad_mean / m

        grad_weight = grad_bias = None
        # $$\frac{\partial \ell}{\partial \gamma} = \sum_{i=1}^m \frac{\partial \ell}{\partial y_i} \cdot \hat{x}_i$$
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = (g * x_hat).sum(dim=dims).to(weight.dtype)
        # $$\frac{\partial \ell}{\partial \beta} = \sum_{i=1}^m \frac{\partial \ell}{\partial y_i}$$
        if ctx.needs_input_grad[2]:
            grad_bias = g.sum(dim=dims).to(ctx.bias_dtype)

        return grad_x.to(x.dtype), grad_weight, grad_bias, None


# Numbers given to the constructor: `True` is an `int` to Python, but not a sensible `eps`.
def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ## Batch Normalization Layer
class BatchNorm(Module):
    r"""
    Normalises each channel of a $[B, C, *]$ input over the batch and every other dimension,
    then scales and shifts it with learned $\gamma$ and $\beta$.

    * `channels` is $C$, the number of features (`num_features` in PyTorch)
    * `eps` is $\epsilon$, added to the variance so that a constant channel does not divide by zero
    * `momentum` is the weight of the newest batch in the exponential moving averages;
      `None` gives the cumulative average of all batches seen
    * `affine` whether to learn $\gamma$ and $\beta$
    * `bias` whether to learn $\beta$ when `affine` (as in recent PyTorch); `False` keeps only the scale
    * `track_running_stats` whether to keep population estimates for inference;
      if `False`, batch statistics are used in evaluation too

    The parameters and buffers are named as in `torch.nn.BatchNorm2d`
    (`weight` is $\gamma$, `bias` is $\beta$), so state dictionaries move freely between the two.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum=0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        # Arguments are checked here, with messages that say what was expected, rather than
        # surfacing later as a shape error deep inside a forward pass.
        if isinstance(channels, bool) or not isinstance(channels, int):
            raise TypeError(f"channels must be an int, got {type(channels).__name__}")
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        if not _is_real(eps) or not eps > 0:
            raise ValueError(f"eps must be a number > 0, got {eps!r}")
        if momentum is not None and not (_is_real(momentum) and 0. <= momentum <= 1.):
            raise ValueError(f"momentum must be None or a number in [0, 1], "
                             f"got {momentum!r}")

        self.channels = channels
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        factory = {'device': device, 'dtype': dtype}

        # $\gamma$ and $\beta$, one per channel
        if self.affine:
            self.weight = torch.nn.Parameter(torch.empty(channels, **factory))
            if bias:
                self.bias = torch.nn.Parameter(torch.empty(channels, **factory))
            else:
                self.register_parameter('bias', None)
        else:
            self.register_parameter('weight', None)
            self.register_parameter('bias', None)

        # Population estimates $\mathbb{E}[x]$ and $\mathrm{Var}[x]$ for inference, and the number of
        # batches they have seen (for `momentum=None`). They are buffers: saved in the
        # `state_dict` and moved with the module, but never trained.
        if self.track_running_stats:
            self.register_buffer('running_mean', torch.empty(channels, **factory))
            self.register_buffer('running_var', torch.empty(channels, **factory))
            self.register_buffer('num_batches_tracked',
                                 torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer('running_mean', None)
            self.register_buffer('running_var', None)
            self.register_buffer('num_batches_tracked', None)

        self.reset_parameters()

    @property
    def num_features(self) -> int:
        # The name PyTorch's batch norms use for `channels`, for code that reads it
        return self.channels

    def reset_running_stats(self):
        # $\mathbb{E}[x] = 0$ and $\mathrm{Var}[x] = 1$: the statistics of an already normalised input
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.)
            self.num_batches_tracked.zero_()

    def reset_parameters(self):
        # $\gamma = 1$, $\beta = 0$: the layer starts as a pure normalisation
        self.reset_running_stats()
        if self.affine:
            torch.nn.init.ones_(self.weight)
            if self.bias is not None:
                torch.nn.init.zeros_(self.bias)

    # Shape and dtype mistakes are caught at the door, with the shape that was given, instead
    # of surfacing as a broadcasting error in the middle of the computation.
    def _check_input(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point tensor, got dtype {x.dtype}")
        if x.dim() < 2:
            raise ValueError(f"expected an input of shape [B, C, *] with at least 2 dimensions, "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels in dimension 1 of the input, "
                             f"got shape {tuple(x.shape)} with {x.shape[1]} channels")

    def forward(self, x: torch.Tensor):
        r"""
        `x` has shape $[B, C, *]$; the output has the same shape, dtype and memory format.
        """
        self._check_input(x)
        # $m$, the number of values per channel
        m = x.numel() // x.shape[1]
        # Batch statistics are used while training, and in evaluation when there are no running
        # statistics. As in PyTorch, the buffers decide, not the flag: a module whose
        # `track_running_stats` is switched off after construction keeps its buffers and still
        # uses them in evaluation (a common way to freeze the statistics while fine-tuning).
        use_batch_stats = self.training or self.running_mean is None or self.running_var is None
        # Running statistics learn from the batch only in training and while the flag is on
        track = self.training and self.track_running_stats
        if use_batch_stats:
            # An empty batch has no statistics to normalise with or to learn from. It still goes
            # through the function, so that $\gamma$ and $\beta$ get (zero) gradients, and it is
            # counted in `num_batches_tracked`: both as in PyTorch, so checkpoints agree.
            if m == 0:
                if track and self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
                return BatchNormFunction.apply(x, self.weight, self.bias, self.eps)[0]
            # With a single value per channel, the variance is zero and its unbiased estimate
            # is undefined, so there is nothing sensible to normalise with or learn from.
            if m == 1:
                when = ('when training' if self.training else
                        'in evaluation without running statistics')
                raise ValueError(f"expected more than 1 value per channel {when}, "
                                 f"got input of shape {tuple(x.shape)}")
            y, mean, var = BatchNormFunction.apply(x, self.weight, self.bias, self.eps)
            if track:
                self._update_running_stats(mean, var, m)
            return y
        return self._normalise_for_inference(x)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, m: int):
        r"""
        ### Moving averages for inference

        Algorithm 2 of the paper uses the population statistics
        $$\mathbb{E}[x] \leftarrow \mathbb{E}_\mathcal{B}[\mu_\mathcal{B}] \qquad
          \mathrm{Var}[x] \leftarrow \frac{m}{m - 1} \mathbb{E}_\mathcal{B}[\sigma^2_\mathcal{B}]$$
        where the factor $\frac{m}{m-1}$ turns the biased batch variance, which the training
        forward pass normalises with, into an unbiased estimate of the population variance.
        Instead of a second pass over the training set, the expectations over batches are
        tracked as moving averages while training,
        $$\mathbb{E}[x] \leftarrow (1 - \alpha)\,\mathbb{E}[x] + \alpha\,\mu_\mathcal{B}$$
        with $\alpha$ = `momentum`, or $\alpha = \frac{1}{n}$ for the $n$-th batch when `momentum`
        is `None`, which is the plain average of all batches. This runs under `no_grad`, so the
        buffers never hold autograd history.
        """
        # A module whose buffers were set to `None`, or one built without running statistics
        # whose flag is switched on later, has nothing to update: PyTorch then only counts the
        # batch (if it has a counter), and so do we.
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        if self.running_mean is None or self.running_var is None:
            return
        if self.momentum is not None:
            alpha = self.momentum
        elif self.num_batches_tracked is not None:
            alpha = 1. / float(self.num_batches_tracked)
        else:
            alpha = 0.
        # $\frac{m}{m - 1} \sigma^2_\mathcal{B}$
        unbiased_var = var * (m / (m - 1))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), alpha)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), alpha)

    def _normalise_for_inference(self, x: torch.Tensor):
        r"""
        ### Inference

        With the population statistics fixed, the layer is a per-channel affine map,
        $$y = \frac{\gamma}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot \big(x - \mathbb{E}[x]\big) + \beta$$
        The output for an example no longer depends on the rest of the batch. Since the map is
        affine, it can even be folded into the weights of the preceding linear or convolution
        layer. We subtract $\mathbb{E}[x]$ before scaling, instead of adding a precomputed
        $\beta - \frac{\gamma \mathbb{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}}$, for the same reason as
        in `batch_statistics`: it avoids cancellation when the mean is large.
        """
        dtype = _compute_dtype(x)
        shape = _channel_shape(x)
        # $\frac{1}{\sqrt{\mathrm{Var}[x] + \epsilon}}$
        scale = torch.rsqrt(self.running_var.to(dtype) + self.eps)
        if self.affine:
            scale = scale * self.weight.to(dtype)
        mean = self.running_mean.to(dtype).view(shape)
        y = (x.to(dtype) - mean) * scale.view(shape)
        if self.bias is not None:
            y = y + self.bias.to(dtype).view(shape)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        # The same fields as PyTorch's `BatchNorm2d(20, eps=1e-05, ...)`
        return (f"{self.channels}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")

    # ### Compatibility with older PyTorch checkpoints
    #
    # PyTorch stores a format version for each module in a state dictionary's metadata. Batch
    # norm checkpoints written by PyTorch versions from before `num_batches_tracked` existed
    # (format version 1, or no version at all) do not have the counter. PyTorch loads them anyway
    # and keeps the module's own count; we declare the same format version (2) and do the same,
    # so such checkpoints load here exactly as they do into `torch.nn.BatchNorm2d`.
    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        version = local_metadata.get('version', None)
        key = prefix + 'num_batches_tracked'
        if (version is None or version < 2) and self.num_batches_tracked is not None \
                and key not in state_dict:
            # Nothing to read: keep the count we have (a meta tensor has no value to keep)
            count = self.num_batches_tracked
            state_dict[key] = (torch.tensor(0, dtype=torch.long) if count.is_meta else count)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
