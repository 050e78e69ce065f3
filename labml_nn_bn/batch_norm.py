r"""
---
title: Batch Normalization
summary: >
  An annotated PyTorch implementation of Batch Normalization (Ioffe & Szegedy, 2015):
  the paper's Algorithm 1 as a short reference function, then a fast drop-in module with
  the paper's back-propagation, stable statistics and the moving averages for inference.
---

# Batch Normalization

This is a [PyTorch](https://pytorch.org) implementation of Batch Normalization from the paper
[Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift](https://arxiv.org/abs/1502.03167)
by Sergey Ioffe and Christian Szegedy (ICML 2015).
It is a drop-in replacement for `torch.nn.BatchNorm1d`, `BatchNorm2d` and `BatchNorm3d`,
and this single file can be copied into any project that has PyTorch.

The page is a learning path. First the problem the paper set out to solve and its answer,
then Algorithm 1 as a short function you can read in one go, what the paper derives from it,
back-propagation through the batch statistics, and the layer you would put in a model: its
moving averages and what it does at inference. Only then comes how we make it fast and exact,
which is our engineering, not the paper's, and can be skipped; then what to remember, the
usual pitfalls, and exercises. Argument checks and compatibility are an appendix at the end.
Every symbol means one thing on every page of this site; the [notation](../notation.md)
table lists them.
A [Colab notebook](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/batch_norm.ipynb)
builds batch normalization step by step on a tiny batch, checks the backward pass against
autograd, and holds runnable solutions to the exercises at the end of this page.

### The problem the paper set out to solve

A deep network is a stack of functions, and each layer is trained on the outputs of the layers
below it. Those outputs are not fixed: every gradient step changes the parameters of the lower
layers, and with them the distribution of what the upper layers receive.
The paper calls this change *internal covariate shift*.

Picture a layer $l_2$ that, early in training, sees inputs that look like $\mathcal{N}(0.5, 1)$.
A few thousand steps later the layers under it have moved, and $l_2$ now sees something like
$\mathcal{N}(0.6, 1.5)$. The paper's hypothesis is that part of every update is then spent
chasing a moving target, and that this is why deep networks needed small learning rates and
careful initialisation, and why saturating non-linearities such as the sigmoid were hard to
train: an input that drifts into the flat tails of the sigmoid gets almost no gradient.
The paper's Figure 1 shows such a drift on MNIST; we rerun it in
[our reproduction of Figure 1](experiments/covariate_shift.md).

!!! warning "A hypothesis, not a settled explanation"
    That batch normalization helps *because* it reduces internal covariate shift is the paper's
    hypothesis. Santurkar et al. (NeurIPS 2018) found that networks train just as well with
    batch normalization when noise is deliberately added to shift its outputs' distribution,
    and traced the benefit instead to a smoother loss landscape. The method below works either
    way; [What later work found](../later_work.md) has the details.

### Whitening, and why the paper does not whiten every layer

A network is known to train faster when its inputs are *whitened*: shifted to zero mean, scaled
to unit variance and decorrelated. Whitening the inputs of every layer would fix their means
and covariances, which the paper sees as a step towards fixed distributions. For a vector $x$
of $p$ inputs, whitening needs the covariance matrix, which the paper writes (Section 2) as
$$\mathrm{Cov}[x] = \mathbb{E}_{x \in \mathcal{X}}[x x^\top] - \mathbb{E}[x]\,\mathbb{E}[x]^\top$$
over the training set $\mathcal{X}$. Exact in real arithmetic, this is the one-pass form that
loses its digits in floating point when the mean is large against the spread (our remark,
not the paper's: see the numerics aside in [Making it fast and exact](#making-it-fast-and-exact-our-engineering-not-the-papers-skippable), and
[the variance identity](experiments/variance_identity.md)). The paper gives
three reasons not to whiten fully: it is costly (the covariance matrix of a layer's inputs,
its inverse square root, and the derivatives of both for back-propagation, at every step); it
is not everywhere differentiable; and with statistics estimated from a mini-batch of $m$
examples, the covariance of $p > m$ features is singular. To put a size on the cost (our
estimate, not the paper's): a $p \times p$ matrix, $O(p^2)$ numbers, and a decomposition of
$O(p^3)$ operations per layer and step.

### Normalising outside the gradient does not work

A tempting shortcut is to normalise activations but let the optimiser ignore the normalisation,
treating the statistics as constants. The paper shows why this fails.
Take a layer that adds a learned bias $b$ to its input $u$, so $x = u + b$, and centre it with
$\hat{x} = x - \mathbb{E}[x]$, where the mean is computed over the training data but is
invisible to the gradient. The gradient step $b \leftarrow b + \Delta b$, with
$\Delta b \propto -\frac{\partial \ell}{\partial \hat{x}}$, then yields

$$\begin{aligned}&u + (b + \Delta b) - \mathbb{E}[u + (b + \Delta b)] \\
  &\quad = u + b - \mathbb{E}[u + b]\end{aligned}$$

The output, and so the loss, is exactly what it was before the step. The optimiser keeps seeing
the same gradient, keeps moving $b$, and $b$ grows without bound while the loss stays where it
is. The paper adds that the problem can get worse when the normalisation also scales by the
standard deviation, and that in their early experiments the model blew up when the
normalisation statistics were computed outside the gradient step. We show the growing bias in
[a small experiment](experiments/detached_mean.md). The lesson is that the normalisation has
to be *part of the network*: the gradient must flow through the mean and variance, so that
the optimiser knows they depend on the parameters.

### Two simplifications

Batch Normalization makes this affordable with two simplifications.

**1. Each feature is normalised on its own.** Instead of whitening the vector $x$ jointly,
every component $x^{(k)}$ is standardised,
$$\hat{x}^{(k)} = \frac{x^{(k)} - \mathbb{E}[x^{(k)}]}{\sqrt{\mathrm{Var}[x^{(k)}]}}$$
This keeps the speed-up from standardising and drops the decorrelation, which would need the
covariance matrix.

What is a feature? (Shapes are written with PyTorch's dimension names, `N` for the batch, `C`
for the channels, `H` and `W` for height and width; they are not math symbols.) For the
output of a fully connected layer, `[N, C]`, a feature is one of the `C` columns, and its
statistics are taken over the examples of the batch: $m$ is the batch size. For a
convolution's output, `[N, C, H, W]`, the paper wants every position of a feature map to be
normalised the same way, so that the layer stays a convolution: a feature is a channel, with
one $\gamma$ and $\beta$, and its statistics are taken over all the values of that channel in
the batch, $m$ = batch size × height × width. Sequences `[N, C, L]` and volumes
`[N, C, D, H, W]` work the same way; in general this module accepts any `[N, C, *]` and
reduces over every dimension except `C`.

![The values of one channel of an [N, C, H, W] batch, over which its mean and variance are taken](../figures/bn_axes.svg)

**2. The statistics come from the mini-batch.** $\mathbb{E}$ and $\mathrm{Var}$ are estimated
from the mini-batch being trained on, so they are cheap to compute and, crucially,
differentiable functions of the batch: gradients flow through them. The paper points out that
the first simplification is what makes the second one workable: a per-feature variance can be
estimated from a handful of examples, while the joint covariance of $p$ features from a batch
of $m < p$ examples would be singular.

### Scale and shift

Forcing every input of a layer to zero mean and unit variance can limit what the layer can
express. Inputs of a sigmoid, for instance, would be confined to its nearly linear region
around zero. So each feature gets two learned parameters, a scale $\gamma^{(k)}$ and a shift
$\beta^{(k)}$:

$$y^{(k)} = \gamma^{(k)} \hat{x}^{(k)} + \beta^{(k)}$$

The paper's argument that nothing is lost: with $\gamma^{(k)} = \sqrt{\mathrm{Var}[x^{(k)}]}$ and
$\beta^{(k)} = \mathbb{E}[x^{(k)}]$, the population statistics, the layer would give back its
original activations (neglecting $\epsilon$), if that were the best thing to do. The argument
is about the population statistics: during training each batch has its own $\mu_\mathcal{B}$ and $\sigma_\mathcal{B}$,
and one fixed $\gamma$, $\beta$ cannot undo all of them exactly.
"""

import numbers

import torch


# ## Algorithm 1, plainly
#
# Over a mini-batch $\mathcal{B} = \{x_1, \dots, x_m\}$ of one feature, the paper's
# Algorithm 1 computes
#
# $$\text{line 1:} \quad \mu_\mathcal{B} = \frac{1}{m} \sum_{i=1}^m x_i$$
#
# $$\text{line 2:} \quad
#   \sigma^2_\mathcal{B} = \frac{1}{m} \sum_{i=1}^m (x_i - \mu_\mathcal{B})^2$$
#
# $$\text{line 3:} \quad
#   \hat{x}_i = \frac{x_i - \mu_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$$
#
# $$\text{line 4:} \quad y_i = \gamma \hat{x}_i + \beta$$
#
# where $\epsilon$ is a small constant that keeps the division finite when a feature is
# constant over the batch, and $\sigma^2_\mathcal{B}$ divides by $m$, not $m - 1$.
# The function below is exactly that, for every feature at once. It is slow (several passes
# over the data) and, as the numerics aside in *Making it fast and exact* below shows,
# inaccurate for inputs whose mean is far larger than their spread; the tests use it as the
# reference the fast module must match.
def batch_norm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         eps: float = 1e-5) -> torch.Tensor:
    r"""
    `x` has shape `[N, C, *]`, `weight` ($\gamma$) and `bias` ($\beta$) have shape `[C]`.

    A worked example: a batch of $m = 4$ examples with two features.

    ```pycon
    >>> x = torch.tensor([[1., 10.], [3., 16.],
    ...                   [5., 16.], [7., 18.]])
    >>> x.mean(dim=0)                 # mu_B
    tensor([ 4., 15.])
    >>> x.var(dim=0, unbiased=False)  # sigma^2_B
    tensor([5., 9.])
    >>> ones, zeros = torch.ones(2), torch.zeros(2)
    >>> x_hat = batch_norm_reference(x, ones, zeros)
    >>> x_hat                  # gamma = 1, beta = 0
    tensor([[-1.3416, -1.6667],
            [-0.4472,  0.3333],
            [ 0.4472,  0.3333],
            [ 1.3416,  1.0000]])
    >>> gamma = torch.tensor([2., 0.5])
    >>> beta = torch.tensor([0., 1.])
    >>> batch_norm_reference(x, gamma, beta)  # y
    tensor([[-2.6833,  0.1667],
            [-0.8944,  1.1667],
            [ 0.8944,  1.1667],
            [ 2.6833,  1.5000]])

    ```

    Within the batch, every feature of $\hat{x}$ sums to zero, and its mean square is one
    (up to the $\epsilon$ in the denominator):
    $\sum_i \hat{x}_i = 0$ and $\frac{1}{m}\sum_i \hat{x}_i^2 = 1$.

    ```pycon
    >>> bool(x_hat.sum(dim=0).abs().max() < 1e-6)
    True
    >>> x_hat.pow(2).mean(dim=0)
    tensor([1.0000, 1.0000])

    ```

    ![The 4 × 2 batch through mu, sigma², x̂ and y](../figures/bn_worked_example.svg)

    The same batch, live (with JavaScript): edit any entry of the batch, $\gamma$, $\beta$ or
    $\epsilon$ and watch $\mu_\mathcal{B}$, $\sigma^2_\mathcal{B}$, $\hat{x}$ and $y$ follow;
    change $x^*$ or its companions to see one example get two outputs in training mode and
    one in evaluation mode; type a gradient $\partial\ell/\partial y$ to see the three paths
    by which it reaches each $x_i$ (directly, through $\mu_\mathcal{B}$, through
    $\sigma^2_\mathcal{B}$) add up to $\partial\ell/\partial x_i$.

    <div class="explorable" data-explorable="worked-example" markdown="0"></div>

    Mean $0$ and variance $1$ hold for the batch's own statistics, by construction. The
    paper's caveat: they describe the feature's distribution, so that the layer above sees
    inputs with fixed moments, only as far as $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$
    are good estimates of it, which needs the examples of a mini-batch to be drawn from the
    same distribution. Small batches, or batches whose examples are not independent draws,
    give poor estimates, and the network then trains on a normalisation that inference
    (which uses population statistics) does not reproduce. That gap is what Batch
    Renormalization (Ioffe, 2017) corrects; Exercise 7 below adds its corrections.
    """
    # (What would go wrong without a word is refused; see the appendix)
    _check_function_input(x, weight, bias)
    # Every dimension except the feature dimension $1$
    dims = [0] + list(range(2, x.dim()))
    # Line 1, $\mu_\mathcal{B}$; `[1, C, 1, ...]`
    mean = x.mean(dim=dims, keepdim=True)
    # Line 2, $\sigma^2_\mathcal{B}$; `[1, C, 1, ...]`
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    # Line 3, $\hat{x}_i$; `[N, C, *]`
    x_hat = (x - mean) / torch.sqrt(var + eps)
    # Line 4, $y_i = \gamma \hat{x}_i + \beta$, with $\gamma$, $\beta$ shaped `[1, C, 1, ...]`
    shape = [1, -1] + [1] * (x.dim() - 2)
    return weight.view(shape) * x_hat + bias.view(shape)


# ## What the paper derives from it
#
# ### Where the batch norm goes, and why the bias goes away (Section 3.2)
#
# The paper normalises $x = Wu + b$, the input of the non-linearity, rather than $u$, the
# layer's input. Its reasoning: $u$ is usually the output of another non-linearity, so the
# shape of its distribution changes during training and fixing its first two moments would
# not remove the shift; $Wu + b$ is more likely to be symmetric, non-sparse and "more
# Gaussian", so normalising it should give activations with a stable distribution.
# The bias $b$ is then redundant: it is the same for every example, the mean subtraction
# cancels it, and $\beta$ takes over its role. So $z = g(Wu + b)$ becomes
# $z = g(\mathrm{BN}(Wu))$, and the layer before a batch norm is built with `bias=False`.
#
# ### Scale invariance (Section 3.3)
#
# The paper writes that for a scalar $a$, $\mathrm{BN}(Wu) = \mathrm{BN}((aW)u)$, that the
# gradient with respect to the layer's input is unchanged, and that the gradient with respect
# to the weights shrinks as they grow,
# $$\frac{\partial \mathrm{BN}((aW)u)}{\partial (aW)} = \frac{1}{a}
#   \frac{\partial \mathrm{BN}(Wu)}{\partial W}$$
# so that large weights get small updates, which stabilises their growth and allows larger
# learning rates. The paper states this loosely: it holds exactly only for $a > 0$ and when
# $\epsilon$ is neglected. A negative $a$ flips the sign of $\hat{x}$, and with $\epsilon > 0$,
# $\frac{a(x - \mu_\mathcal{B})}{\sqrt{a^2\sigma^2_\mathcal{B} + \epsilon}}$ differs from
# $\frac{x - \mu_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$ for every
# $a \ne \pm 1$, and noticeably unless both $\sigma^2_\mathcal{B}$ and
# $a^2\sigma^2_\mathcal{B}$ are much larger than $\epsilon$ (Exercise 4).
#
# The paper goes further with a conjecture, which it leaves open: batch normalization may keep
# the singular values of the layer Jacobians close to one, which is known to help training.
# If two consecutive normalised vectors $\hat{x}$ and $\hat{x}' = F(\hat{x})$ were Gaussian,
# uncorrelated, and related by a linear map $J$, both would have unit covariance, so
# $I = J J^\top$ and every singular value of $J$ would be $1$. Real layers are neither linear
# nor Gaussian, and later work examined this (see [What later work found](../later_work.md)).
#
# ### A regulariser (Section 3.4)
#
# In training, an example is normalised together with the other, randomly drawn, examples of
# its mini-batch, so the network no longer produces deterministic values for a given example.
# The paper found this helped generalisation, to the point that in a batch-normalized network
# Dropout could be removed or reduced in strength.
#
# ## Back-propagation through the statistics (Section 3)
#
# Autograd could differentiate the forward pass on its own. Writing the backward pass out
# shows what the paper's Section 3 derives: how the loss gradient reaches every input *through*
# the mean and the variance, which is exactly what normalising outside the gradient was
# missing. It also saves memory: the backward pass below needs only $x$, $\gamma$ and three numbers
# per channel, where autograd would keep every intermediate tensor of the forward pass.
#
# A `torch.autograd.Function` pairs a `forward` with a hand-written `backward`. `forward`
# computes the outputs from the inputs alone; `setup_context` then sees the inputs and the
# outputs and keeps on a context `ctx` what the other passes will need (tensors through
# `ctx.save_for_backward`, which lets autograd check they were not modified in the meantime).
# `backward` receives one gradient per output of `forward` and returns one gradient per
# input of `forward`, here four for $x$, $\gamma$, $\beta$ and $\epsilon$, with `None` for
# $\epsilon$ (a number, not a tensor) and for any input whose `ctx.needs_input_grad` entry
# says no gradient is wanted. `jvp` is forward-mode differentiation: it receives one tangent
# per input and returns one per output.
#
# Keeping `ctx` out of `forward` is what `torch.func` asks for: its transforms (`grad`,
# `jacrev`, `jvp`, `vmap`, ...) run `forward` themselves and call `setup_context` where a
# backward pass is wanted. Since `setup_context` sees only inputs and outputs, the three
# numbers per channel that back-propagation reuses leave `forward` as outputs too.
class BatchNormFunction(torch.autograd.Function):
    # Under `torch.func.vmap`, torch runs `forward`, `setup_context`, `backward` and `jvp`
    # themselves on batched tensors, each example (or model) of the batch separately; inside
    # a transform they take the functional path (see `_functional`), plain PyTorch operations
    # that `vmap` supports.
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, weight, bias, eps: float):
        r"""
        ### Forward: Algorithm 1

        `x` has shape `[N, C, *]`; `weight` ($\gamma$) and `bias` ($\beta$) have shape `[C]` or
        are `None`. Returns the output $y$ in the dtype of `x`; the batch mean and biased
        batch variance of shape `[C]`, for the running statistics; and, for the backward pass,
        the shift $K$, the mean $\bar\delta$ of the shifted values and
        $\frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$, each of shape `[1, C, 1, ...]`.

        The comments below say which line of Algorithm 1 each step computes. One thing
        differs from `batch_norm_reference`: the statistics are taken around a *shift* $K$, a
        rough guess of the channel's mean. With $\delta_i = x_i - K$ and
        $\bar\delta = \frac{1}{m}\sum_i \delta_i$, the mean is $\mu_\mathcal{B} = K + \bar\delta$
        and the centred values are $x_i - \mu_\mathcal{B} = \delta_i - \bar\delta$, so the
        algorithm is unchanged; why this keeps the statistics accurate, and how they are
        computed fast, is in [Making it fast and exact](#making-it-fast-and-exact-our-engineering-not-the-papers-skippable)
        (our engineering, skippable).
        """
        _check_function_input(x, weight, bias)
        shape = _channel_shape(x)
        # Under a `torch.func` transform or forward-mode AD, plain operations that write
        # only new tensors (see `_functional`)
        functional = _functional()
        # **Algorithm 1, lines 1 and 2: $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$**, as
        # $\bar\delta = \mu_\mathcal{B} - K$ and $\sigma^2_\mathcal{B}$, from the shift $K$ and
        # $\delta_i = x_i - K$ in the compute dtype; `[N, C, *]`, then `[1, C, 1, ...]`. On the
        # CPU the squares $\delta_i^2$ are formed over `d` (which holds the $\delta_i$), then
        # rebuilt (see `_squares_over_d`); a half-precision input there goes through in
        # pieces of the batch (see `_piece_size`).
        shift = _cheap_shift(x)
        piece = None if functional else _piece_size(x)
        if piece is None:
            d = _subtract(x, shift)
            squares_over_d = not functional and _squares_over_d(d)
            residual, var = _shifted_moments(d, in_place=squares_over_d)
            if squares_over_d:
                d = _subtract(x, shift, out=d)
        else:
            parts = x.split(piece)
            sums = _sum_over(_shifted_sums(_subtract(p, shift)) for p in parts)
            residual, var = _moments(*sums, x.numel() // x.shape[1])
        # $\frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$
        inv_std = torch.rsqrt(var + eps)
        # **Algorithm 1, lines 3 and 4: $\hat{x}_i$ and $y_i$**, in one step. Since
        # $\hat{x}_i = \frac{\delta_i - \bar\delta}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$,
        # $y_i = \gamma \hat{x}_i + \beta = \tilde\gamma\,\delta_i + (\beta - \tilde\gamma\,\bar\delta)$
        # with one scale $\tilde\gamma = \frac{\gamma}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$
        # and one offset per channel (the $\tilde\gamma x_i + \tilde\beta$ of the
        # [notation](../notation.md), written around $K$)
        scale = inv_std
        if weight is not None:
            scale = scale * weight.to(var.dtype).view(shape)
        if bias is not None:
            beta = bias.to(var.dtype).view(shape)
            offset = torch.addcmul(beta, residual, scale, value=-1)
        else:
            offset = (residual * scale).neg_()
        # $y_i = \tilde\gamma\,\delta_i + (\beta - \tilde\gamma\,\bar\delta)$, over `d`, in the
        # dtype of $x$; `[N, C, *]`
        if piece is None:
            y = _multiply_add(d, scale, offset, inplace=not functional).to(x.dtype)
        else:
            y = torch.empty_like(x)
            for p, y_p in zip(x.split(piece), y.split(piece)):
                d = _subtract(p, shift)
                y_p.copy_(_multiply_add(d, scale, offset, inplace=True))
        # $\mu_\mathcal{B} = K + \bar\delta$ and $\sigma^2_\mathcal{B}$, for the running statistics
        return y, (shift + residual).flatten(), var.flatten(), shift, residual, inv_std

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        x, weight, bias, eps = inputs
        _, mean, var, shift, residual, inv_std = outputs
        # Back-propagation needs $x$, $\gamma$ and the statistics; $\hat{x}$ is rebuilt from
        # them rather than stored, which keeps one activation-sized tensor instead of two.
        # Forward-mode differentiation (`jvp`) reads the same tensors, through the same
        # `ctx.saved_tensors`.
        ctx.save_for_backward(x, weight, shift, residual, inv_std)
        ctx.save_for_forward(x, weight, shift, residual, inv_std)
        ctx.eps = eps
        ctx.bias_dtype = None if bias is None else bias.dtype
        # $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$ leave as plain numbers: the running
        # averages are bookkeeping, not part of the function being differentiated; and the
        # three values for the backward pass are only that.
        ctx.mark_non_differentiable(mean, var, shift, residual, inv_std)
        # Nothing differentiates them, so autograd passes `None` for their gradients rather
        # than tensors of zeros it would have to make
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor, *_grad_statistics):
        r"""
        ### Backward: the paper's Section 3

        ![The computation graph: each input reaches the loss directly, through the mean and through the variance](../figures/bn_graph.svg)

        `grad_y` holds $\frac{\partial \ell}{\partial y_i}$, of shape `[N, C, *]`. Every sum
        runs over the $m$ values of one channel, that is over all dimensions except `C`.
        The paper applies the chain rule along the graph above:

        $$\frac{\partial \ell}{\partial \hat{x}_i} = \frac{\partial \ell}{\partial y_i}
          \cdot \gamma$$

        $$\begin{aligned}\frac{\partial \ell}{\partial \sigma^2_\mathcal{B}} =
          &\sum_{i=1}^m \frac{\partial \ell}{\partial \hat{x}_i} (x_i - \mu_\mathcal{B}) \\
          &\cdot \frac{-1}{2} (\sigma^2_\mathcal{B} + \epsilon)^{-3/2}\end{aligned}$$

        $$\begin{aligned}\frac{\partial \ell}{\partial \mu_\mathcal{B}} =
          &\Bigg(\sum_{i=1}^m \frac{\partial \ell}{\partial \hat{x}_i}
          \cdot \frac{-1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}} \Bigg) \\
          &+ \frac{\partial \ell}{\partial \sigma^2_\mathcal{B}}
          \cdot \frac{\sum_{i=1}^m -2(x_i - \mu_\mathcal{B})}{m}\end{aligned}$$

        $$\begin{aligned}\frac{\partial \ell}{\partial x_i} =
          &\frac{\partial \ell}{\partial \hat{x}_i}
          \cdot \frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}} \\
          &+ \frac{\partial \ell}{\partial \sigma^2_\mathcal{B}}
          \cdot \frac{2(x_i - \mu_\mathcal{B})}{m} \\
          &+ \frac{\partial \ell}{\partial \mu_\mathcal{B}} \cdot \frac{1}{m}\end{aligned}$$

        $$\frac{\partial \ell}{\partial \gamma}
          = \sum_{i=1}^m \frac{\partial \ell}{\partial y_i} \hat{x}_i \qquad
          \frac{\partial \ell}{\partial \beta} = \sum_{i=1}^m \frac{\partial \ell}{\partial y_i}$$

        The last line but one has the three paths: directly, through the variance and through
        the mean. The tests evaluate exactly these equations as the reference for the code.

        **The compact form.** Since
        $x_i - \mu_\mathcal{B} = \hat{x}_i \sqrt{\sigma^2_\mathcal{B} + \epsilon}$,
        $$\frac{\partial \ell}{\partial \sigma^2_\mathcal{B}} =
          \frac{-\gamma}{2(\sigma^2_\mathcal{B} + \epsilon)}
          \sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j$$
        the second term of $\frac{\partial \ell}{\partial \mu_\mathcal{B}}$ vanishes because the
        centred values sum to zero, leaving
        $\frac{-\gamma}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
        \sum_j \frac{\partial \ell}{\partial y_j}$; and substituting both,
        $$\begin{aligned}\frac{\partial \ell}{\partial x_i}
          = \frac{\gamma}{m \sqrt{\sigma^2_\mathcal{B} + \epsilon}}
          \Big(&m \frac{\partial \ell}{\partial y_i} -
             \sum_j \frac{\partial \ell}{\partial y_j} \\
          &- \hat{x}_i \sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j\Big)\end{aligned}$$
        Only two sums per channel are needed, $\sum_j \frac{\partial \ell}{\partial y_j}$ and
        $\sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j$, and they are also
        $\frac{\partial \ell}{\partial \beta}$ and $\frac{\partial \ell}{\partial \gamma}$.
        Summing over $i$ shows what the gradient cannot do:
        $\sum_i \frac{\partial \ell}{\partial x_i} = 0$ exactly, so a step along it never
        moves the batch mean, while
        $$\begin{aligned}&\sum_i \hat{x}_i \frac{\partial \ell}{\partial x_i} \\
          &\quad = \frac{\gamma}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
          \sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j
          \Big(1 - \frac{1}{m}\sum_i \hat{x}_i^2\Big)\end{aligned}$$
        is zero only in the limit $\epsilon \to 0$, where
        $\frac{1}{m}\sum_i \hat{x}_i^2 = \frac{\sigma^2_\mathcal{B}}{\sigma^2_\mathcal{B} + \epsilon}$
        reaches one (Exercise 1).
        """
        if grad_y is None:
            return None, None, None, None
        x, weight, shift, residual, inv_std = ctx.saved_tensors
        shape = _channel_shape(x)
        dtype = shift.dtype
        # $m$, the number of values each statistic is computed over
        m = x.numel() // x.shape[1]
        # A second derivative, a `torch.func` transform or a batch of gradients
        # (`is_grads_batched`) takes the functional path: plain operations, with the
        # statistics as functions of $x$ (see the end). Otherwise a half-precision input on
        # the CPU goes through in pieces of the batch (see `_piece_size`).
        functional = torch.is_grad_enabled() or _functional(grad_y)
        piece = None if functional else _piece_size(x)
        # The products $\frac{\partial \ell}{\partial y_j} \delta_j$ are formed over `d`,
        # which is then rebuilt for the input gradient (see `_squares_over_d`)
        lean = not functional and not _is_compiling()
        # $\sum_j \frac{\partial \ell}{\partial y_j}$ and
        # $\sum_j \frac{\partial \ell}{\partial y_j} \delta_j$, with $\delta_i = x_i - K$
        # rebuilt from the saved input; `[1, C, 1, ...]`
        if piece is None:
            d = _subtract(x, shift)
            if functional:
                residual, var = _shifted_moments(d)
                inv_std = torch.rsqrt(var + ctx.eps)
            grad_y = _widen(grad_y, dtype)
            sum_g, sum_g_d = _gradient_sums(grad_y, d, in_place=lean)
        else:
            parts = zip(x.split(piece), grad_y.split(piece))
            sum_g, sum_g_d = _sum_over(_gradient_sums(g, _subtract(p, shift))
                                       for p, g in parts)
        # $\sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j
        #   = \frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
        #   \big(\sum_j \frac{\partial \ell}{\partial y_j} \delta_j -
        #   \bar\delta \sum_j \frac{\partial \ell}{\partial y_j}\big)$
        sum_g_x_hat = torch.addcmul(sum_g_d, residual, sum_g, value=-1) * inv_std

        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # The compact form with
            # $\hat{x}_i = \frac{\delta_i - \bar\delta}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$
            # expanded: per channel, $\frac{\partial \ell}{\partial x_i}$ is a multiple of
            # $\frac{\partial \ell}{\partial y_i}$ (`on_g`,
            # $\frac{\gamma}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$), plus a multiple of
            # $\delta_i$ (`on_d`, `on_g` times
            # $\frac{-1}{m\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
            # \sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j$), plus a constant
            # (`const`, $-\frac{1}{m}$ `on_g` $\sum_j \frac{\partial \ell}{\partial y_j}$
            # $-$ `on_d` $\bar\delta$)
            on_g = inv_std if weight is None else inv_std * weight.to(dtype).view(shape)
            # ($-\frac{1}{m}$, with an empty batch's $m = 0$ taken as 1: its sums are zero)
            minus_inv_m = -1 / max(m, 1)
            on_d = on_g * inv_std * sum_g_x_hat * minus_inv_m
            const = torch.addcmul(on_g * sum_g * minus_inv_m, on_d, residual, value=-1)

            # Over `d`, unless on the functional path (where `vmap` has a rule for
            # `addcmul`, not for `addcmul_`)
            def input_gradient(d, g):
                if functional:
                    return torch.addcmul(_multiply_add(d, on_d, const), g, on_g)
                return _multiply_add(d, on_d, const, inplace=True).addcmul_(g, on_g)

            if piece is None:
                if lean:
                    d = _subtract(x, shift, out=d)
                grad_x = input_gradient(d, grad_y).to(x.dtype)
            else:
                grad_x = torch.empty_like(x)
                parts = zip(x.split(piece), grad_y.split(piece), grad_x.split(piece))
                for p, g, out in parts:
                    out.copy_(input_gradient(_subtract(p, shift), _widen(g, dtype)))
        # $\frac{\partial \ell}{\partial \gamma}
        #   = \sum_i \frac{\partial \ell}{\partial y_i} \hat{x}_i$
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = sum_g_x_hat.view(-1).to(weight.dtype)
        # $\frac{\partial \ell}{\partial \beta} = \sum_i \frac{\partial \ell}{\partial y_i}$
        if ctx.needs_input_grad[2]:
            grad_bias = sum_g.view(-1).to(ctx.bias_dtype)

        # **Second derivatives.** `gradgradcheck`, `create_graph=True` in
        # `torch.autograd.grad`, or `torch.func.hessian` differentiate this backward pass
        # itself. The statistics must then be functions of $x$, not the numbers saved by the
        # forward pass, so on the functional path they are recomputed from `d` above; the
        # shift $K$ may stay a constant because $\delta_i - \bar\delta$ does not depend on it.
        return grad_x, grad_weight, grad_bias, None

    @staticmethod
    def jvp(ctx, x_t, weight_t, bias_t, _eps_t):
        r"""
        ### Forward-mode differentiation

        Forward mode (`torch.func.jvp`, `jacfwd`, `torch.autograd.forward_ad`) pushes a
        *tangent* through the function instead of pulling a gradient back: given the
        directions $\dot{x}_i$, $\dot{\gamma}$ and $\dot{\beta}$ in which the inputs move, it
        returns the direction $\dot{y}_i$ in which the output moves. The chain rule runs along
        the same graph as in the backward pass, from the inputs to the output:

        $$\dot{\mu}_\mathcal{B} = \frac{1}{m} \sum_{j=1}^m \dot{x}_j$$

        $$\begin{aligned}\dot{\sigma}^2_\mathcal{B}
          &= \frac{2}{m} \sum_{j=1}^m (x_j - \mu_\mathcal{B})
          (\dot{x}_j - \dot{\mu}_\mathcal{B}) \\
          &= \frac{2}{m} \sum_{j=1}^m (x_j - \mu_\mathcal{B}) \dot{x}_j\end{aligned}$$

        (the centred values sum to zero, so $\dot{\mu}_\mathcal{B}$ drops out)

        $$\begin{aligned}\dot{\hat{x}}_i =
          &\frac{\dot{x}_i - \dot{\mu}_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}} \\
          &+ (x_i - \mu_\mathcal{B}) \cdot \frac{-1}{2} (\sigma^2_\mathcal{B} + \epsilon)^{-3/2}
          \cdot \dot{\sigma}^2_\mathcal{B}\end{aligned}$$

        $$\dot{y}_i = \gamma \dot{\hat{x}}_i + \dot{\gamma} \hat{x}_i + \dot{\beta}$$

        **The compact form.** With
        $x_i - \mu_\mathcal{B} = \hat{x}_i \sqrt{\sigma^2_\mathcal{B} + \epsilon}$ as before,
        $\dot{\sigma}^2_\mathcal{B} = \frac{2}{m} \sqrt{\sigma^2_\mathcal{B} + \epsilon}
        \sum_j \hat{x}_j \dot{x}_j$, and
        $$\begin{aligned}\dot{\hat{x}}_i = \frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
          \Big(&\dot{x}_i - \frac{1}{m} \sum_j \dot{x}_j \\
          &- \hat{x}_i \frac{1}{m} \sum_j \hat{x}_j \dot{x}_j\Big)\end{aligned}$$
        This is the backward pass's compact form with $\dot{x}$ in the place of
        $\frac{\partial \ell}{\partial y}$ (and without $\gamma$): the
        Jacobian of $\hat{x}$ with respect to $x$,
        $\frac{k}{m}\big(m I - \mathbf{1}\mathbf{1}^\top - \hat{x}\hat{x}^\top\big)$, is
        symmetric. Read as a projection, the tangent loses its mean (a shift of the whole
        channel) and its component along $\hat{x}$ (a scaling of the centred values), the two
        directions the normalisation takes out, up to the $\epsilon$ that keeps
        $\frac{1}{m}\sum_j \hat{x}_j^2$ just under one.
        """
        x, weight, shift, _, _ = ctx.saved_tensors
        shape = _channel_shape(x)
        dims = _reduced_dims(x)
        # $m$, with an empty batch's $m = 0$ taken as 1 (its sums are zero)
        m = max(x.numel() // x.shape[1], 1)
        # The statistics again, from $x$: a transform that differentiates this pass in turn
        # (reverse over forward, forward over forward) must see how they depend on $x$
        d = _subtract(x, shift)
        residual, var = _shifted_moments(d)
        # $\frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$
        inv_std = torch.rsqrt(var + ctx.eps)
        # $\hat{x}_i = \frac{\delta_i - \bar\delta}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$
        x_hat = (d - residual) * inv_std
        if x_t is None:
            x_hat_t = torch.zeros_like(x_hat)
        else:
            # $\frac{1}{m} \sum_j \dot{x}_j$
            mean_t = x_t.sum(dim=dims, keepdim=True, dtype=d.dtype) / m
            # $\frac{1}{m} \sum_j \hat{x}_j \dot{x}_j$
            mean_x_hat_t = (x_hat * x_t).sum(dim=dims, keepdim=True) / m
            # $\dot{\hat{x}}_i = \frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
            #   \big(\dot{x}_i - \frac{1}{m} \sum_j \dot{x}_j
            #   - \hat{x}_i \frac{1}{m} \sum_j \hat{x}_j \dot{x}_j\big)$
            x_hat_t = (x_t - mean_t - x_hat * mean_x_hat_t) * inv_std
        # $\gamma \dot{\hat{x}}_i$
        y_t = x_hat_t if weight is None else x_hat_t * weight.to(d.dtype).view(shape)
        # $+ \dot{\gamma} \hat{x}_i$
        if weight_t is not None:
            y_t = y_t + weight_t.to(d.dtype).view(shape) * x_hat
        # $+ \dot{\beta}$
        if bias_t is not None:
            y_t = y_t + bias_t.to(d.dtype).view(shape)
        # No tangents for the statistics, which are not differentiable
        return y_t.to(x.dtype), None, None, None, None, None


# ## The layer
#
# The module you would put in a model. In training it computes the same $y$ as
# `batch_norm_reference` (the tests check this), through `BatchNormFunction` and its
# back-propagation; besides, it learns the population statistics that inference uses.
#
# It is a [`labml_helpers`](https://github.com/labmlai/labml/tree/master/helpers) module when
# that package is installed; otherwise a plain `torch.nn.Module`, so that this file can be
# copied into any project with only PyTorch.
try:
    from labml_helpers.module import Module
except ImportError:
    Module = torch.nn.Module


# Besides `Module`, the layer derives from PyTorch's own base class of batch norms, so that
# code which finds batch norms by their class finds it too (see *Recognised as a batch norm*
# in the appendix at the end); none of that class's code runs.
class BatchNorm(torch.nn.modules.batchnorm._BatchNorm, Module):
    r"""
    Normalises each channel of a `[N, C, *]` input over the batch and every other dimension,
    then scales and shifts it with learned $\gamma$ and $\beta$.

    * `channels` is `C`, the number of features (`num_features` in PyTorch)
    * `eps` is $\epsilon$, added to the variance so that a constant channel does not divide by
      zero
    * `momentum` is $\alpha$, the weight of the newest batch in the moving averages for
      inference (see below); `None` gives the plain average of all batches seen
    * `affine` whether to learn $\gamma$ and $\beta$
    * `bias` whether to learn $\beta$ when `affine` (as in recent PyTorch); `False` keeps only
      the scale
    * `track_running_stats` whether to keep population estimates for inference;
      if `False`, batch statistics are used in evaluation too

    The parameters and buffers are named as in `torch.nn.BatchNorm2d`
    (`weight` is $\gamma$, `bias` is $\beta$), so state dictionaries move freely between the two.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum=0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None, *, bias: bool = True):
        # A plain module to start with: `_BatchNorm`'s constructor would build PyTorch's own
        # version of what follows
        torch.nn.Module.__init__(self)
        _check_arguments(channels, eps, momentum)
        self.channels = int(channels)
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

        # Population estimates $\mathbb{E}[x]$ and $\mathrm{Var}[x]$ for inference, and the
        # number of batches they have seen (for `momentum=None`). They are buffers: saved in
        # the `state_dict` and moved with the module, but never trained.
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

    def reset_running_stats(self):
        # $\mathbb{E}[x] = 0$ and $\mathrm{Var}[x] = 1$: the statistics of an already
        # normalised input
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

    def forward(self, x: torch.Tensor):
        r"""
        `x` has shape `[N, C, *]`; the output has the same shape, dtype and memory format.
        """
        self._check_input(x)

        # **Training or inference.** `model.train()` and `model.eval()` set `self.training`.
        # In training the batch normalises itself (Algorithm 1); in evaluation the population
        # estimates do (Algorithm 2). Without running statistics there is nothing else to use,
        # so batch statistics serve in evaluation too. As in PyTorch, the buffers decide, not
        # the flag: a module whose `track_running_stats` is switched off after construction
        # keeps its buffers and uses them in evaluation (a common way to freeze them while
        # fine-tuning), but no longer updates them.
        mean, var = self.running_mean, self.running_var
        if not self.training and mean is not None and var is not None:
            return self._normalise_for_inference(x, mean, var)
        track = self.training and self.track_running_stats
        # $m$, the number of values per channel
        m = x.numel() // x.shape[1]

        # **The normalisation.** `apply` runs `BatchNormFunction.forward` and, when any input
        # requires a gradient, records `BatchNormFunction.backward` in the autograd graph.
        # Besides $y$ it returns $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$, for the
        # running statistics (and what the backward pass reuses, which we need not see).
        y, mean, var, *_ = BatchNormFunction.apply(x, self.weight, self.bias, self.eps)

        # **Learning the population statistics**, while training only: every batch moves the
        # running averages a little towards its own statistics. An empty batch has nothing to
        # teach them, but it is counted, as PyTorch counts it, so that checkpoints agree.
        if track:
            if m == 0:
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
            else:
                self._update_running_stats(mean, var, m)
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, m: int):
        r"""
        ### Moving averages for inference

        Inference needs statistics that do not depend on the batch: the population's
        $\mathbb{E}[x]$ and $\mathrm{Var}[x]$. Algorithm 2 of the paper (its lines 10 and 11)
        estimates them
        $$\mathbb{E}[x] \leftarrow \mathbb{E}_\mathcal{B}[\mu_\mathcal{B}] \qquad
          \mathrm{Var}[x] \leftarrow \frac{m}{m - 1} \mathbb{E}_\mathcal{B}[\sigma^2_\mathcal{B}]$$
        averages over many training batches of size $m$, where the factor $\frac{m}{m-1}$
        turns the biased batch variance, which the training forward pass normalises with, into
        an unbiased estimate of the population variance (Exercise 6). Instead of a second pass
        over the training set, we track the averages while training, as exponential moving
        averages, the alternative the paper mentions in Section 3.1 (and what PyTorch does),
        $$\mathbb{E}[x] \leftarrow (1 - \alpha)\,\mathbb{E}[x] + \alpha\,\mu_\mathcal{B}$$
        $$\mathrm{Var}[x] \leftarrow (1 - \alpha)\,\mathrm{Var}[x]
          + \alpha\,\frac{m}{m - 1}\sigma^2_\mathcal{B}$$
        with $\alpha$ = `momentum`, or $\alpha = \frac{1}{n}$ for the $n$-th batch when
        `momentum` is `None`, which makes them the plain average of all batches so far.
        [Our Algorithm 2 experiment](experiments/population_statistics.md) compares these
        estimates with the true population statistics.

        `momentum` is the weight of the *new* batch. It has nothing to do with the momentum of
        an optimiser such as SGD with momentum, which accumulates gradients. PyTorch uses this
        convention (default $0.1$); Keras uses the opposite one, where `momentum=0.99` is the
        weight of the *old* average.

        ![The running mean following the batch means over training steps, for momentum 0.1 and None](../figures/bn_running_mean.svg)

        Drag the slider under the picture (with JavaScript) to redraw the running mean for
        any momentum $\alpha$ from 0.01 to 1, or tick `None` for the plain average: the
        smaller $\alpha$, the longer the lag behind the drift; the larger, the more of each
        batch's noise it copies.

        <div class="explorable" data-explorable="momentum" markdown="0"></div>

        Look at the first 100 steps, where the feature's mean drifts. With `momentum=0.1` the
        running mean follows the drift about ten steps behind, and wobbles with the noisy means
        of the batches of 16; with `None`, the average of every batch so far, the curve is
        smooth but lags: it is at
        <!-- measured batch_norm_pictures:running_mean.at_step_100.None .2f -->1.52<!-- /measured -->
        at step 100 and still only at
        <!-- measured batch_norm_pictures:running_mean.final.None .2f -->2.48<!-- /measured -->
        after 300 steps, because the batches from before the drift keep their weight. That is
        the trade: a larger momentum means less lag and more noise.

        This runs under `no_grad`, so the buffers never hold autograd history.
        """
        # Inside `torch.func` transforms, only where the buffers can take the batch's
        # statistics (see `_check_running_stats_can_learn`), and otherwise before any change
        _check_running_stats_can_learn(self, mean, var)
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
        # `average.lerp_(new, α)` is the in-place linear interpolation
        # `average + α * (new - average)`, that is `(1 - α) * average + α * new`: both moving
        # averages in one call each
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), alpha)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), alpha)

    def _normalise_for_inference(self, x: torch.Tensor, mean: torch.Tensor,
                                 var: torch.Tensor):
        r"""
        ### Inference

        With the population statistics fixed, the layer is one affine map per channel,
        $$y = \frac{\gamma}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot \big(x - \mathbb{E}[x]\big) + \beta$$
        The output for an example no longer depends on the rest of its batch. Below, the
        example $2$ is normalised inside two batches, `one` and `two`:

        ```pycon
        >>> bn = BatchNorm(1)          # in training mode
        >>> one = torch.tensor([[2.], [0.], [4.]])
        >>> two = torch.tensor([[2.], [6.], [10.]])
        >>> def first(batch):          # output for 2.0
        ...     return round(bn(batch)[0, 0].item(), 4)
        >>> first(one), first(two)
        (0.0, -1.2247)
        >>> _ = bn.eval()
        >>> first(one), first(two)
        (0.733, 0.733)

        ```

        In training mode the same example gives two outputs, one per batch; in evaluation mode
        it gives one, computed from the running statistics that the two training steps left.

        ![One example normalised inside two batches: two outputs in training mode, one in evaluation mode](../figures/bn_train_eval.svg)

        The paper writes the map as $y = \tilde\gamma x + \tilde\beta$, with one scale
        $\tilde\gamma = \frac{\gamma}{\sqrt{\mathrm{Var}[x] + \epsilon}}$ and one offset
        $\tilde\beta = \beta - \tilde\gamma\,\mathbb{E}[x]$ per channel, and stops there.
        Later practice, not the paper, goes one step further and folds it into the preceding
        linear or convolution layer $Wu + b$: multiply that layer's weights for the channel by
        $\tilde\gamma$, replace its bias $b$ by $\tilde\gamma b + \tilde\beta$, and the batch
        norm disappears from the inference network (`fold_batch_norm` on the
        [Inference](inference.md) page does this).
        We compute the same $\tilde\gamma x + \tilde\beta$, one multiplication and one
        addition per value.

        The population statistics are also what the paper's conclusion proposes to change
        when the data changes: it suggests, as future work, that a batch-normalized network
        might adapt to a new data distribution with just a recomputation of the population
        means and variances. `recalibrate` on the [Inference](inference.md) page does that
        recomputation for any model.

        **Numerics (ours).** In training we took care never to subtract a large mean from the data after
        rounding it; here that care would buy little, because $\mathbb{E}[x]$ is a stored
        number, already rounded to the buffer's precision. When $|\mathbb{E}[x]|$ is large
        compared with $\sqrt{\mathrm{Var}[x]}$, that rounding alone shifts the output by about
        $\frac{|\mathbb{E}[x]|}{\sqrt{\mathrm{Var}[x]}}$ times the unit roundoff, and rounding
        $\tilde\gamma x$ and $\tilde\beta$ adds an error of the same size, not a larger one.
        """
        dtype = _compute_dtype(x)
        weight, bias = self.weight, self.bias
        # Under `torch.func` transforms and forward-mode AD the population statistics are
        # constants, as in PyTorch (see `_check_statistics_have_no_tangents`), and the input is
        # used as it is
        functional = _functional()
        if functional:
            _check_statistics_have_no_tangents(mean, var)
        # Where the channels are innermost in memory, the input as rows of `k` examples,
        # `[rows, k, C]` (see `_as_rows`); else `None`
        rows, k = (None, 1) if functional else _as_rows(x)
        # $\mathrm{Var}[x] + \epsilon$, as `k` copies of the `C` values for rows of `k`
        # examples
        if k > 1:
            var = var.expand(k, -1)
        var = _cast(var, dtype) + _epsilon(self.eps, dtype)
        mean = _cast(mean, dtype)
        # $\tilde\gamma = \frac{\gamma}{\sqrt{\mathrm{Var}[x] + \epsilon}}$; `[C]` or `[k, C]`
        scale = var.rsqrt_()
        if weight is not None:
            scale = scale.mul_(_cast(weight, dtype))
        # A `bfloat16` input read as rows is normalised in `bfloat16`, with $\tilde\gamma$
        # rounded to it
        # first (see `_rounds_coefficients`)
        if rows is not None and _rounds_coefficients(x):
            scale = scale.to(x.dtype)
        # $\tilde\beta = \beta - \tilde\gamma\,\mathbb{E}[x]$, from the $\tilde\gamma$ that
        # is applied
        if bias is not None:
            offset = torch.addcmul(_cast(bias, dtype), mean, scale, value=-1)
        else:
            offset = (mean * scale).neg_()
        offset = _cast(offset, scale.dtype)
        # $y = \tilde\gamma x + \tilde\beta$, one multiplication and one addition per value,
        # in one pass where
        # PyTorch's kernels allow it (see `_per_channel_affine`)
        y = _per_channel_affine(x, rows, scale, offset)
        return _cast(y, x.dtype)



# ## Making it fast and exact (our engineering, not the paper's; skippable)
#
# *Not here for the engineering? [Skip to What to remember](#what-to-remember).*
#
# Everything in this part is ours: the paper says nothing about floating point, memory,
# dtypes or memory layouts. It changes no result beyond rounding; it decides how accurately
# and how fast the statistics and the outputs are computed.
#
# ### Mini-batch statistics around a shift
#
# The forward pass needs $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$ per channel. We compute
# them around a *shift* $K$, a rough guess of the channel's mean: with $\delta_i = x_i - K$
# and $\bar\delta = \frac{1}{m}\sum_{i=1}^m \delta_i$,
#
# $$\mu_\mathcal{B} = K + \bar\delta$$
#
# $$\sigma^2_\mathcal{B} = \frac{1}{m}\sum_{i=1}^m \delta_i^2 - \bar\delta^2$$
#
# Both sums are read from the same shifted values, so two reductions give both statistics,
# and the centred values $x_i - \mu_\mathcal{B} = \delta_i - \bar\delta$ never need
# $\mu_\mathcal{B}$ itself. The shift costs next to nothing: it is the median of five values of each
# channel.
# The aside below explains why this is more accurate than the textbook formulas.
#
# ??? note "Numerics: why the statistics are computed around a shift (our addition, not the paper's)"
#     The paper does not discuss floating point; this aside is ours.
#
#     **The one-pass identity.** $\mathrm{Var}[x] = \mathbb{E}[x^2] - \mathbb{E}[x]^2$, one
#     feature's entry of the paper's $\mathrm{Cov}[x] = \mathbb{E}[x x^\top] - \mathbb{E}[x]\,
#     \mathbb{E}[x]^\top$ (Section 2), gives the variance from two sums in one pass, and it is
#     exact in real arithmetic. In floating point
#     it subtracts two large, nearly equal numbers: when the mean is much larger than the
#     standard deviation, almost all significant bits cancel and what is left is rounding
#     error, sometimes negative, and then the output is `NaN`.
#
#     **The two-pass form** $\frac{1}{m}\sum_i (x_i - \mu_\mathcal{B})^2$ does not cancel, but it
#     still depends on how well $\mu_\mathcal{B}$ itself is stored: at $10^4$ the spacing of
#     `float32` numbers is about $10^{-3}$, so the rounded mean is off by up to
#     $5 \times 10^{-4}$ standard deviations before any summation error.
#
#     **The shifted form** above avoids both. When the mean is large compared with the spread,
#     every $x_i$ is within a factor of two of $K$, and then $\delta_i = x_i - K$ is computed
#     exactly (Sterbenz's lemma; when they are not, the subtraction rounds like any other).
#     The $\delta_i$ are small, of the order of the standard deviation, so
#     $\frac{1}{m}\sum_i \delta_i^2 - \bar\delta^2$ cancels only as much as $K$ is off from the
#     mean, and $K$,
#     the median of five values of the channel, is typically within a standard deviation of it.
#     Nothing of size $\mu_\mathcal{B}$ is ever subtracted from a value of size
#     $\sigma_\mathcal{B}$.
#
#     Relative error of the normalised output against a `float64` computation, for `float32`
#     input $\mathcal{N}(\mu, 1)$: the identity, the two-pass form, the shifted form of this
#     module, and `torch.nn.BatchNorm2d`; from [the variance-identity experiment](experiments/variance_identity.md):
#
#     | $\mu$ | identity | two-pass | shifted | `BatchNorm2d` |
#     |---|---|---|---|---|
#     | $1$ | <!-- measured variance_identity:float32.identity.1e0 .1e -->2.3e-07<!-- /measured --> | <!-- measured variance_identity:float32.two_pass.1e0 .1e -->1.4e-07<!-- /measured --> | <!-- measured variance_identity:float32.shifted.1e0 .1e -->1.5e-07<!-- /measured --> | <!-- measured variance_identity:float32.torch_batch_norm.1e0 .1e -->5.5e-08<!-- /measured --> |
#     | $10^3$ | <!-- measured variance_identity:float32.identity.1e3 .1e -->1.2e-01<!-- /measured --> | <!-- measured variance_identity:float32.two_pass.1e3 .1e -->1.0e-04<!-- /measured --> | <!-- measured variance_identity:float32.shifted.1e3 .1e -->1.5e-07<!-- /measured --> | <!-- measured variance_identity:float32.torch_batch_norm.1e3 .1e -->2.9e-05<!-- /measured --> |
#     | $10^4$ | <!-- measured variance_identity:float32.identity.1e4 -->nan<!-- /measured --> | <!-- measured variance_identity:float32.two_pass.1e4 .1e -->1.3e-03<!-- /measured --> | <!-- measured variance_identity:float32.shifted.1e4 .1e -->9.4e-08<!-- /measured --> | <!-- measured variance_identity:float32.torch_batch_norm.1e4 .1e -->4.8e-04<!-- /measured --> |
#     | $10^6$ | <!-- measured variance_identity:float32.identity.1e6 .1e -->1.0e+00<!-- /measured --> | <!-- measured variance_identity:float32.two_pass.1e6 .1e -->2.1e-02<!-- /measured --> | <!-- measured variance_identity:float32.shifted.1e6 .1e -->5.6e-08<!-- /measured --> | <!-- measured variance_identity:float32.torch_batch_norm.1e6 .1e -->2.2e-02<!-- /measured --> |
#
#     The tests check that this module stays within $10^{-6}$ of the `float64` result from
#     $\mathcal{N}(0, 1)$ to $\mathcal{N}(10^6, 1)$. The shifted form has one weakness: when
#     the shift lands many standard deviations from the mean (three of its five samples would
#     have to be outliers), the relative error grows roughly like
#     $1 + (K - \mu_\mathcal{B})^2 / \sigma^2_\mathcal{B}$ times the unit roundoff. `float16` and
#     `bfloat16` inputs are summed in `float32`, so the cast costs nothing extra: the
#     subtraction $x_i - K$ promotes them.
def batch_statistics(x: torch.Tensor, shift: torch.Tensor = None):
    r"""
    Returns the shift $K$, $\bar\delta = \mu_\mathcal{B} - K$ and the biased variance
    $\sigma^2_\mathcal{B}$, each of shape `[1, C, 1, ...]` in the compute dtype (at least
    `float32`), for an input `x` of shape `[N, C, *]`. A `shift` may be passed in, so that
    back-propagation can rebuild the statistics around the same $K$ as the forward pass did.
    """
    _check_function_input(x)
    if shift is None:
        shift = _cheap_shift(x)
    # $\delta_i = x_i - K$; `[N, C, *]`
    d = _subtract(x, shift)
    residual, var = _shifted_moments(d)
    return shift, residual, var


# The shift $K$: for each channel, the median of five of its values, taken from examples and
# positions spread over the batch. Any $K$ gives the same statistics in exact arithmetic; one
# within a few standard deviations of the mean keeps the cancellation in
# $\frac{1}{m}\sum_i \delta_i^2 - \bar\delta^2$ small, and a median of five is there unless three of the
# five are outliers. Being one of the values, it is also exact for a channel that is constant
# over the batch: every $\delta_i$ is then $0$ and the output is exactly $\beta$ for any
# $\epsilon$ that `float32` can represent (above about $10^{-45}$). Gathering five values per channel
# costs nothing next to a pass over the data; the calls that gather them are what cost, so
# they are read through one strided view of $x$ (`_samples`), without an index tensor.
def _cheap_shift(x: torch.Tensor) -> torch.Tensor:
    shape = _channel_shape(x)
    if x.numel() == 0:
        return torch.zeros(shape, dtype=_compute_dtype(x), device=x.device)
    # `[5, C]`, then the median (the third smallest) of each column; `[1, C, 1, ...]`
    median = _samples(x).kthvalue(3, dim=0).values
    return median.to(_compute_dtype(x)).view(shape)


# Five values of each channel, as a `[5, C]` view of `x`: sample `t` (from 0 to 4) comes
# from example `t * ((N - 1) // 4)` and, along each further dimension of length `size`, from
# position `(2 * t + 1) * (size // 10)`. Every index grows linearly with `t`, so the
# five samples of a channel lie at evenly spaced places in memory, whatever the strides, and
# one strided view reaches them all. A view makes no tensor from host data, which a step
# captured as a CUDA graph could not replay.
def _samples(x: torch.Tensor) -> torch.Tensor:
    step = (x.shape[0] - 1) // 4 * x.stride(0)
    offset = x.storage_offset()
    for size, stride in zip(x.shape[2:], x.stride()[2:]):
        step += 2 * (size // 10) * stride
        offset += size // 10 * stride
    return x.as_strided((5, x.shape[1]), (step, x.stride(1)), offset)


# $\bar\delta$ and $\sigma^2_\mathcal{B}$ from the shifted values $\delta_i$ (held in `d`): two
# reductions over the data, $\sum_i \delta_i$ and $\sum_i \delta_i^2$. Rounding could leave a
# tiny negative variance for a constant channel; it is clamped at zero. An empty batch gets
# $\bar\delta = \sigma^2_\mathcal{B} = 0$, so that its
# gradients are zero, not `NaN`.
def _shifted_moments(d: torch.Tensor, in_place: bool = False):
    return _moments(*_shifted_sums(d, in_place), d.numel() // d.shape[1])


def _shifted_sums(d: torch.Tensor, in_place: bool = False):
    dims = _reduced_dims(d)
    return d.sum(dim=dims, keepdim=True), _sum_of_squares(d, dims, in_place)


# $\sum_i \delta_i^2$. On a GPU, as the square of `torch.linalg.vector_norm`: one pass that
# writes nothing, where `d * d` and a sum are two passes and an activation-sized temporary
# (so a training step's peak memory is one tensor lower; we have no committed measurement of
# the time it saves). On the CPU the norm is several times slower than the two steps, and when
# autograd records the computation (a second derivative) the norm's gradient is undefined at a
# constant channel, so both keep the product; with `in_place` (the CPU's forward pass, see
# `_squares_over_d`) it is formed over `d` itself, which the caller then rebuilds.
def _sum_of_squares(d: torch.Tensor, dims, in_place: bool = False) -> torch.Tensor:
    if _on_gpu(d) and not d.requires_grad:
        return torch.linalg.vector_norm(d, 2, dim=dims, keepdim=True).square()
    return (d.mul_(d) if in_place else d * d).sum(dim=dims, keepdim=True)


def _moments(sum_d: torch.Tensor, sum_d2: torch.Tensor, m: int):
    m = max(m, 1)
    # $\bar\delta = \frac{1}{m}\sum_i \delta_i$
    residual = sum_d / m
    # $\sigma^2_\mathcal{B} = \frac{1}{m}\sum_i \delta_i^2 - \bar\delta^2$
    var = torch.addcmul(sum_d2 / m, residual, residual, value=-1)
    return residual, var.clamp_min(0.)


# ### Memory: no activation-sized temporaries
#
# Where the products $\delta_i^2$ (forward, on the CPU) and
# $\frac{\partial \ell}{\partial y_i} \delta_i$ (backward, everywhere) would need a
# tensor of their own, they are formed over `d`, and `d` is rebuilt from $x$ afterwards: one
# more pass over memory, but for a `float32` input a training step then allocates nothing as
# large as the input except its outputs $y$ and $\frac{\partial \ell}{\partial x}$. On an
# H200 that brought the peak of a `float32` NCHW step down to native's; on the CPU it is two
# thirds of native's, and fewer fresh tensors also mean fewer page faults (the allocator often
# hands a freed activation-sized tensor back to the operating system, and the next one costs
# a fault for every 4 KiB it touches; `benchmarks/bn_speed.py` counts them, and the
# [Performance](../performance.md) page has the numbers). The forward pass does it on the
# CPU only, since on a GPU the sum of squares writes nothing (see `_sum_of_squares`); neither
# pass does it while `torch.compile` traces the code, which fuses the passes itself, and the
# backward pass not when autograd records it for a second derivative, which needs `d` as it
# is.
def _squares_over_d(d: torch.Tensor) -> bool:
    return not _on_gpu(d) and not _is_compiling()


# ### Memory layouts
#
# `t * scale + offset` for per-channel `scale` and `offset` of shape `[1, C, 1, ...]` (the
# $\tilde\gamma$ and offset of the forward pass, or the coefficients of the input gradient),
# with `inplace` over `t`: on the CPU a fresh activation-sized tensor can cost a page fault per 4 KiB, when the
# allocator has handed the memory back to the system. One fused multiply-add
# is a single pass on a GPU, whatever the layout, and on the CPU where the channel is the
# innermost dimension of `t` (a `[N, C]` batch, or channels-last). Otherwise the CPU loop runs
# along the positions of one channel and is vectorised for one operand that is constant along
# them, not for two, and a multiplication followed by an addition is faster. While
# `torch.compile` or `torch.export` traces the code, the result goes to a new tensor: autograd
# refuses a recorded `out=` when the traced module later runs with gradients.
#
# **The same input in two memory formats** can therefore give results that differ in the
# last bit on the CPU, where PyTorch's own kernel gives the same bits for both (our choice):
# the fused multiply-add rounds `t * scale + offset` once, the two steps round
# `t * scale` first. Doing the same in both formats would cost one of them its speed: on
# this project's CPU a fused multiply-add over a channels-first `float32` tensor was slower
# than the two steps, and the two steps over a channels-last one slower than the fused
# multiply-add (informal timings, not in a committed benchmark). The difference is one
# rounding of the product, at most one unit roundoff of its size: no more than the
# rounding of $x$ itself, before it reached us, has already put into $y$. A test checks both formats against the exact result
# (`test_eval_memory_formats_differ_by_at_most_one_rounding_of_the_product`). On a GPU
# both take the fused multiply-add.
def _multiply_add(t: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor,
                  inplace: bool = False) -> torch.Tensor:
    if t.stride(1) == 1 or not t.is_cpu:
        out = t if inplace and not _is_compiling() else None
        return torch.addcmul(offset, t, scale, out=out)
    return (t.mul_(scale) if inplace else t * scale).add_(offset)


# Inference reads each value once and writes it once: $y = \tilde\gamma x + \tilde\beta$
# with per-channel $\tilde\gamma$, $\tilde\beta$. Where the channel is the innermost dimension
# of the memory (a `[N, C]` batch, or channels-last), PyTorch's loop over the values runs
# along the channels, `C` values at a time, and restarts for every example and position.
# Seen as rows of `k` examples, `[rows, k, C]`, with the coefficients laid out as `k` copies,
# `[k, C]`, the same pass runs in stretches of `k * C` values, long enough for the loop's
# start-up to vanish. A `[N, C]` batch with wide rows is used as it is (`k = 1`).
def _as_rows(x: torch.Tensor):
    channels = x.shape[1]
    if not x.is_cpu or (x.stride(1) != 1 and channels > 1):
        return None, 1
    # The memory must hold `(N, *, C)` in this order, densely
    if not (x.movedim(1, -1) if x.dim() > 2 else x).is_contiguous():
        return None, 1
    rows = x.numel() // channels
    k = 1
    while k * channels < 1024 and rows % (2 * k) == 0 and rows >= 1024 * k:
        k *= 2
    if k == 1 and x.dim() == 2:
        return x, 1
    # The same memory, `(N, *, C)` in order, seen as `[rows, k, C]`
    return x.as_strided((rows // k, k, channels), (k * channels, channels, 1)), k


# The output of a pass over rows, `[rows, k, C]`, seen as the input's `[N, C, *]` in the input's
# memory format
def _from_rows(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if y.dim() == 2:  # a `[N, C]` batch used as it is
        return y
    return y.as_strided(x.shape, x.stride())


# $y = \tilde\gamma x + \tilde\beta$ for inference, into a new tensor: over rows where the
# channels are innermost (see `_as_rows`), otherwise as in `_multiply_add`, with `scale`
# ($\tilde\gamma$) and `offset` ($\tilde\beta$) of shape `[C]`.
def _per_channel_affine(x: torch.Tensor, rows, scale: torch.Tensor,
                        offset: torch.Tensor):
    if rows is not None:
        return _from_rows(torch.addcmul(offset, rows, scale), x)
    shape = _channel_shape(x)
    return _multiply_add(x, scale.view(shape), offset.view(shape))


# ### Dtypes
#
# **Inference in `bfloat16` on the CPU.** PyTorch's
# CPU kernels have no fast loop for a `bfloat16` tensor times a `float32` one: the product goes
# through a generic loop, slower than the same product in `bfloat16`, where each value is
# widened to `float32` in registers and rounded once. So we round the coefficients to
# `bfloat16`, whose unit roundoff is $2^{-8}$. The scale first, to
# $\tilde\gamma(1 + \rho_1)$, then the offset computed from it,
# $\tilde\beta' = \beta - \tilde\gamma(1 + \rho_1)\,\mathbb{E}[x]$, rounded to
# $\tilde\beta'(1 + \rho_2)$, with relative rounding errors $|\rho_1|, |\rho_2| \le 2^{-8}$.
# Before the output's own rounding,
# $$\begin{aligned}&\tilde\gamma(1 + \rho_1) x + \tilde\beta'(1 + \rho_2) - y \\
#   &\quad = \rho_1\,\tilde\gamma\big(x - \mathbb{E}[x]\big) + \rho_2\,\tilde\beta'\end{aligned}$$
# with $|\tilde\beta'| \le |\beta| + |\tilde\gamma(1 + \rho_1)|\,|\mathbb{E}[x]|$.
# The first term is a relative $2^{-8}$ of $y - \beta$, the size of the output's rounding. The
# second grows with the mean, but never beyond what the input's own rounding already did: $x$
# arrived rounded to `bfloat16`, by up to $2^{-8}|x| \approx 2^{-8}|\mathbb{E}[x]|$, which moved
# $y$ by about $2^{-8}|\tilde\gamma\,\mathbb{E}[x]|$ before we saw it. This holds for one fused
# multiply-add, which rounds once: where the channel is not innermost (see `_multiply_add`)
# the product $\tilde\gamma x$ would be rounded on its own, so there, for `float16`, whose
# largest value is 65,504 and could overflow $\tilde\beta'$, and on GPUs, which widen mixed operands in registers, the pass stays in
# `float32`. `test_bfloat16_inference_error_is_bounded` checks the bound against `float64`.
def _rounds_coefficients(x: torch.Tensor) -> bool:
    return x.dtype == torch.bfloat16 and x.is_cpu


# $\delta_i = x_i - K$ in the compute dtype of the shift, into `out` if given. A half-precision $x$ is
# widened first on the CPU, whose kernels mixing `bfloat16` and `float32` operands run through
# a slow generic loop; GPUs widen mixed operands in registers, in the same pass.
def _subtract(x: torch.Tensor, shift: torch.Tensor, out: torch.Tensor = None):
    if x.dtype != shift.dtype and x.is_cpu:
        d = x.to(shift.dtype) if out is None else out.copy_(x)
        return d.sub_(shift)
    return torch.sub(x, shift, out=out)


# A half-precision gradient widened on the CPU, for the same reason
def _widen(t: torch.Tensor, dtype) -> torch.Tensor:
    return t.to(dtype) if t.dtype != dtype and t.is_cpu else t


# $\sum_j \frac{\partial \ell}{\partial y_j}$ and $\sum_j \frac{\partial \ell}{\partial y_j}
# \delta_j$ per channel (`g` holds the $\frac{\partial \ell}{\partial y_j}$), in the dtype of
# `d`; with `in_place`, the products are formed over `d`
def _gradient_sums(g: torch.Tensor, d: torch.Tensor, in_place: bool = False):
    g = _widen(g, d.dtype)
    dims = _reduced_dims(d)
    sum_g = g.sum(dim=dims, keepdim=True, dtype=d.dtype)
    product = d.mul_(g) if in_place else g * d
    return sum_g, product.sum(dim=dims, keepdim=True)


# **Half precision on the CPU, in pieces of the batch.** Statistics and gradients are computed in `float32`. A `bfloat16` or `float16`
# input widened whole would add a `float32` copy, twice its own size, to the memory a training
# step holds at its peak, and the backward pass one more (the widened gradient). On the CPU,
# an input of $2^{20}$ values or more goes through instead in up to eight pieces of the
# batch, each at least one example and on average $2^{17}$ values or more: each
# piece is widened and reduced, and in a second pass turned into its part of the output (or of
# the input gradient) in the input's dtype, so the `float32` copies only ever hold one piece.
# The sums over the pieces add up to the same statistics; only the order of the additions
# differs. Smaller inputs, whose copies take a few MiB, go through whole: every extra call shows
# in their time. GPUs widen half-precision operands in registers and need none of this, and
# neither does a second derivative, where autograd records every operation, nor
# `torch.compile`, which fuses the passes itself.
_PIECES = 8
_PIECE_VALUES = 1 << 17


# The number of examples in a piece (for `x.split`), or `None` for the whole batch
def _piece_size(x: torch.Tensor):
    if not x.is_cpu or x.element_size() >= 4 or x.numel() < _PIECES * _PIECE_VALUES \
            or _is_compiling():
        return None
    count = min(_PIECES, x.shape[0], x.numel() // _PIECE_VALUES)
    return None if count < 2 else -(-x.shape[0] // count)


# Per-channel sums over the pieces: `parts` gives a tuple of sums for each piece
def _sum_over(parts):
    return [torch.stack(column).sum(dim=0) for column in zip(*parts)]


# ### Fixed costs
#
# $\epsilon$ as a tensor of the compute dtype, made once for each (eps, dtype) and kept, up to
# 64 of them. Added to a tensor as a Python number, it is converted to a tensor on every call,
# which on this project's CPU cost more than the addition itself for 128 channels (an
# informal timing, not in a committed benchmark): on small inputs, inference is mostly such
# fixed costs. It is made as a normal tensor
# even under `torch.inference_mode`, so that autograd can use it later; while `torch.compile`
# or `torch.export` traces the code, nothing is kept, since the trace's tensors must not
# outlive it.
_EPSILONS = {}


def _epsilon(eps: float, dtype):
    if _is_compiling():
        return eps
    key = (eps, dtype)
    if key not in _EPSILONS:
        if len(_EPSILONS) >= 64:
            _EPSILONS.clear()
        with torch.inference_mode(False):
            _EPSILONS[key] = torch.tensor(eps, dtype=dtype)
    return _EPSILONS[key]


# ## What to remember
#
# **What it computes.** In training (Algorithm 1), for each feature over the $m$ values of a
# mini-batch (batch size × height × width for a convolution):
# $$\mu_\mathcal{B} = \frac{1}{m}\sum_i x_i \qquad
#   \sigma^2_\mathcal{B} = \frac{1}{m}\sum_i (x_i - \mu_\mathcal{B})^2$$
# $$y_i = \gamma \frac{x_i - \mu_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}} + \beta$$
# and the gradient flows *through* $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$. In inference
# (Algorithm 2) the population statistics replace them, and each feature is one affine map,
# the same for every example:
# $$y = \tilde\gamma x + \tilde\beta$$
# $$\tilde\gamma = \frac{\gamma}{\sqrt{\mathrm{Var}[x] + \epsilon}} \qquad
#   \tilde\beta = \beta - \tilde\gamma\,\mathbb{E}[x]$$
# with $\mathbb{E}[x]$ and $\mathrm{Var}[x]$ (unbiased, the factor $\frac{m}{m-1}$) tracked as
# moving averages during training.
#
# **Where it goes.** The paper puts it on $x = Wu$, the input of the non-linearity:
# $z = g(\mathrm{BN}(Wu))$, with the layer before it built with `bias=False` (its bias would
# be cancelled, and $\beta$ takes its role). For a convolution, one $\gamma$, $\beta$ and one
# pair of statistics per channel.
#
# **What it costs.** In training, two reductions per channel (the two sums that give
# $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$) and one elementwise pass for $y$; the backward
# pass two more reductions ($\sum_j \frac{\partial \ell}{\partial y_j}$ and
# $\sum_j \frac{\partial \ell}{\partial y_j}\hat{x}_j$) and one elementwise pass. Memory: one
# activation-sized tensor kept for back-propagation ($\hat{x}$, or, as here, $x$ from which
# $\hat{x}$ is rebuilt) and a few numbers per channel. In inference, one multiplication and
# one addition per value, or nothing at all once folded into the layer before it.
# Parameters: $\gamma$ and $\beta$ per channel, plus the two running statistics (buffers).
#
# **What to set.** `eps` ($\epsilon$; $10^{-5}$ in PyTorch and here, $10^{-3}$ in Keras);
# `momentum` ($\alpha$, the weight of the *new* batch: $0.1$ in PyTorch and here, while
# Keras's `momentum=0.99` is the weight of the *old* average, that is $\alpha = 0.01$;
# `None` for the plain average of all batches); `affine` (learn $\gamma$ and $\beta$; leave
# it on unless what follows rescales anyway); and the batch size, which sets how noisy
# $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$ are.
#
# ## Pitfalls
#
# * **Forgetting `model.eval()`.** In training mode the output for an example depends on the
#   rest of its batch, and every forward pass moves the running statistics, test data
#   included. `torch.no_grad()` does not change the mode. *Fix:* `model.eval()` before
#   evaluating or serving, `model.train()` before training again.
# * **Batches of one, and small batches.** With one value per channel there is no variance:
#   the module refuses it in training. With a few values, $\mu_\mathcal{B}$ and
#   $\sigma^2_\mathcal{B}$ are noisy, the variance is underestimated (Exercise 6), and the
#   network trains on a normalisation that inference does not reproduce
#   ([our Algorithm 2 experiment](experiments/population_statistics.md) measures the gap).
#   *Fix:* larger batches, statistics over several GPUs (below), or, from later work, Batch
#   Renormalization (Exercise 7) or a normalisation that does not use the batch
#   ([What later work found](../later_work.md)).
# * **A bias before the batch norm.** A `Linear` or `Conv2d` with a bias in front of a batch
#   norm adds a parameter that the mean subtraction cancels: in training its gradient is
#   exactly zero (Exercises 1 and 3), so it never learns. *Fix:* `bias=False`.
# * **Fine-tuning with frozen statistics.** `model.train()` puts every batch norm back into
#   training mode, so small fine-tuning batches overwrite the running statistics learned on
#   a large data set; `requires_grad = False` on $\gamma$ and $\beta$ freezes the parameters
#   but not the running statistics, which are buffers. *Fix:* after `model.train()`, call
#   `.eval()` on the batch norms to freeze (find them as instances of
#   `torch.nn.modules.batchnorm._BatchNorm`, which `BatchNorm` is), and set `requires_grad`
#   on $\gamma$ and $\beta$ as you want them.
# * **Batch norm with Dropout.** The paper found it could remove Dropout or reduce it
#   (Section 3.4). Later work (Li et al., CVPR 2019) traced a failure of the combination to
#   Dropout *before* a batch norm: the variance the batch norm sees in training, with
#   Dropout, is not the one it sees in inference, without. *Fix:* try without Dropout first;
#   if you keep it, put it after the last batch norm.
# * **Weight decay on $\gamma$ and $\beta$.** Decay pulls $\gamma$ and $\beta$ towards zero,
#   which shrinks the normalised output itself rather than any weights that could overfit
#   (our view; the paper does not discuss it). *Fix* (common practice, not the paper's):
#   leave batch norm parameters (and biases) out of weight decay, in a parameter group of
#   their own.
# * **Batch norm across GPUs.** With `DistributedDataParallel` each process normalises over
#   its own part of the batch, so $m$ is the per-GPU batch, which can be small.
#   *Fix:* [SyncBatchNorm](sync_batch_norm.md) computes the statistics over all $R$ processes.
# * **Before or after the activation.** The paper normalises $x = Wu$, before the
#   non-linearity, and most later architectures (ResNets, for one) keep the batch norm before
#   the ReLU. Some practitioners report that after the activation works as well or better;
#   that is later practice, with mixed evidence, not the paper's result. *Fix:* follow the
#   paper unless a measurement on your model says otherwise.
#
# ## Exercises
#
# **1. Gradients that sum to zero** (derivation). Show that in training mode
# $\sum_i \frac{\partial \ell}{\partial x_i} = 0$, and that
# $\sum_i \frac{\partial \ell}{\partial x_i}\hat{x}_i = 0$ when $\epsilon \to 0$. What does
# each say about the directions in which a gradient step can move a channel?
#
# ??? success "Solution"
#     Start from the compact form of the backward pass,
#     $\frac{\partial \ell}{\partial x_i} = \frac{\gamma}{m\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
#     \big(m \frac{\partial \ell}{\partial y_i} - \sum_j \frac{\partial \ell}{\partial y_j} -
#     \hat{x}_i \sum_j \frac{\partial \ell}{\partial y_j}\hat{x}_j\big)$.
#     Summing over $i$, the first two terms cancel and the third is a multiple of
#     $\sum_i \hat{x}_i = 0$, so $\sum_i \frac{\partial \ell}{\partial x_i} = 0$ exactly.
#     Multiplying by $\hat{x}_i$ first, the middle term vanishes for the same reason and
#     $$\sum_i \frac{\partial \ell}{\partial x_i}\hat{x}_i
#       = \frac{\gamma}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
#       \sum_j \frac{\partial \ell}{\partial y_j}\hat{x}_j
#       \cdot \frac{\epsilon}{\sigma^2_\mathcal{B} + \epsilon}$$
#     since $\frac{1}{m}\sum_i \hat{x}_i^2 = \frac{\sigma^2_\mathcal{B}}{\sigma^2_\mathcal{B} + \epsilon}$:
#     zero in the limit $\epsilon \to 0$, tiny for the usual $\epsilon$. Meaning: the output
#     does not change when the whole channel is shifted (and, up to $\epsilon$, when it is
#     scaled about its mean), so the gradient has no component in those directions; a step
#     never moves the batch mean of $x$, which is why a bias before a batch norm never learns.
#
# **2. The worked example by hand** (numbers). Take the first feature of the worked example,
# $x = (1, 3, 5, 7)$, with $\gamma = 2$, $\beta = 0$ and $\epsilon$ negligible. Compute
# $\mu_\mathcal{B}$, $\sigma^2_\mathcal{B}$, $\hat{x}$ and $y$.
#
# ??? success "Solution"
#     $\mu_\mathcal{B} = 16 / 4 = 4$; the centred values are $(-3, -1, 1, 3)$, so
#     $\sigma^2_\mathcal{B} = (9 + 1 + 1 + 9) / 4 = 5$ (divided by $m = 4$, not 3).
#     $\hat{x} = (-3, -1, 1, 3)/\sqrt{5} = (-1.3416, -0.4472, 0.4472, 1.3416)$ and
#     $y = 2\hat{x} = (-2.6833, -0.8944, 0.8944, 2.6833)$, the first column of the doctest.
#
# **3. Why `bias=False`** (derivation). Show that in training mode
# $\mathrm{BN}(Wu + b) = \mathrm{BN}(Wu)$ for any bias $b$, and find the gradient that $b$
# receives.
#
# ??? success "Solution"
#     Adding $b$ to every $x_i$ of a channel adds $b$ to $\mu_\mathcal{B}$, so
#     $x_i - \mu_\mathcal{B}$ and with it $\sigma^2_\mathcal{B}$, $\hat{x}_i$ and $y_i$ are
#     unchanged. Its gradient is $\frac{\partial \ell}{\partial b}
#     = \sum_i \frac{\partial \ell}{\partial x_i} = 0$ (Exercise 1): it never moves, and it only
#     costs a parameter. In inference it is not cancelled exactly, but the running mean has
#     absorbed it, so it changes nothing there either; $\beta$ plays its role.
#
# **4. Scale invariance, exactly** (derivation). Show that $\mathrm{BN}((aW)u) = \mathrm{BN}(Wu)$
# for a scalar $a > 0$ when $\epsilon = 0$. What happens for $a < 0$? And with $\epsilon > 0$?
#
# ??? success "Solution"
#     Scaling the weights scales $x_i$, $\mu_\mathcal{B}$ by $a$ and $\sigma^2_\mathcal{B}$ by
#     $a^2$, so with $\epsilon = 0$
#     $\hat{x}_i \to \frac{a(x_i - \mu_\mathcal{B})}{|a|\sqrt{\sigma^2_\mathcal{B}}}
#     = \mathrm{sign}(a)\,\hat{x}_i$: unchanged for $a > 0$, flipped for $a < 0$ (then
#     $y_i = -\gamma\hat{x}_i + \beta$, as if $\gamma$ had changed sign). With $\epsilon > 0$,
#     $\hat{x}_i$ is multiplied by
#     $\frac{a\sqrt{\sigma^2_\mathcal{B} + \epsilon}}{\sqrt{a^2\sigma^2_\mathcal{B} + \epsilon}}$,
#     close to $\mathrm{sign}(a)$ only while both $\sigma^2_\mathcal{B}$ and
#     $a^2\sigma^2_\mathcal{B}$ are much larger than $\epsilon$; as $a \to 0$ the output goes
#     to $\beta$.
#
# **5. How fast the running mean learns** (numbers). Start the running mean at $0$, keep
# $\alpha = 0.1$, and feed batches whose mean is always $\mu^*$. Show that after $n$ batches
# the running mean is $\mu^*(1 - 0.9^n)$. After how many batches is it within 1% of $\mu^*$?
#
# ??? success "Solution"
#     Each update is $\mathbb{E}[x] \leftarrow 0.9\,\mathbb{E}[x] + 0.1\,\mu^*$, so the
#     distance to $\mu^*$ is multiplied by $0.9$ at every batch: after $n$ batches it is
#     $0.9^n \mu^*$ and the running mean is $\mu^*(1 - 0.9^n)$. Within 1% means
#     $0.9^n \le 0.01$, $n \ge \ln 0.01 / \ln 0.9 = 43.7$: after **44** batches. With
#     Keras's `momentum=0.99` ($\alpha = 0.01$) it would take 459.
#
# **6. Why $\frac{m}{m-1}$** (derivation and a number). For $m$ independent values of a
# feature with variance $\mathrm{Var}[x]$, show that
# $\mathbb{E}[\sigma^2_\mathcal{B}] = \frac{m-1}{m}\mathrm{Var}[x]$. By how much does the plain
# average of the batch variances underestimate $\mathrm{Var}[x]$ for $m = 4$?
#
# ??? success "Solution"
#     Around the true mean $\mathbb{E}[x]$,
#     $\sum_i (x_i - \mu_\mathcal{B})^2 = \sum_i (x_i - \mathbb{E}[x])^2 -
#     m(\mu_\mathcal{B} - \mathbb{E}[x])^2$.
#     The expectation of the first sum is $m\,\mathrm{Var}[x]$; the batch mean has variance
#     $\mathrm{Var}[x]/m$, so the second term's is $\mathrm{Var}[x]$. Dividing by $m$,
#     $\mathbb{E}[\sigma^2_\mathcal{B}] = \frac{m-1}{m}\mathrm{Var}[x]$. For $m = 4$ that is
#     $\frac{3}{4}\mathrm{Var}[x]$: 25% too low, which the factor $\frac{4}{3}$ undoes. For a
#     convolution $m$ counts every position, so the factor is close to one there.
#
# **7. Batch Renormalization** (code). Ioffe (2017) keeps the training output from depending
# on the batch's statistics alone: with the running statistics $\mathbb{E}[x]$ and
# $\mathrm{Var}[x]$,
# $$r = \mathrm{clip}_{[1/r_{\max},\, r_{\max}]}
#   \frac{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}{\sqrt{\mathrm{Var}[x] + \epsilon}}$$
# $$d = \mathrm{clip}_{[-d_{\max},\, d_{\max}]}
#   \frac{\mu_\mathcal{B} - \mathbb{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}}$$
# and $\hat{x}_i \leftarrow \hat{x}_i r + d$, where $r$ and $d$ are treated as constants by
# back-propagation. Write it as a function in the style of `batch_norm_reference`. What does
# it compute when $r_{\max} = 1$ and $d_{\max} = 0$, and when the clips never bite?
#
# ??? success "Solution"
#     ```python
#     def batch_renorm(x, weight, bias, running_mean,
#                      running_var, r_max, d_max, eps=1e-5):
#         dims = [0] + list(range(2, x.dim()))
#         shape = [1, -1] + [1] * (x.dim() - 2)
#         mean = x.mean(dim=dims, keepdim=True)
#         var = x.var(dim=dims, unbiased=False,
#                     keepdim=True)
#         std = torch.sqrt(var + eps)
#         run_mean = running_mean.view(shape)
#         run_std = torch.sqrt(running_var.view(shape) + eps)
#         # r and d: constants for back-propagation
#         r = (std / run_std).detach()
#         r = r.clamp(1 / r_max, r_max)
#         d = ((mean - run_mean) / run_std).detach()
#         d = d.clamp(-d_max, d_max)
#         x_hat = (x - mean) / std * r + d
#         return weight.view(shape) * x_hat + bias.view(shape)
#     ```
#     With $r_{\max} = 1$ and $d_{\max} = 0$, $r = 1$ and $d = 0$: it is Algorithm 1. When the
#     clips never bite, $\hat{x}_i r + d = \frac{x_i - \mathbb{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}}$:
#     the output is the inference output, computed in training, while the gradient still
#     flows through $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$ (scaled by $r$). The paper
#     starts with $r_{\max} = 1$, $d_{\max} = 0$ and relaxes them during training.
#
# **8. The train/eval gap against the batch size** (experiment). Before running anything,
# predict how the gap between batch-statistics accuracy and eval-mode accuracy changes when
# the batch gets smaller. Then run
# `python -m labml_nn_bn.experiments.population_statistics --batch-sizes 2 4 8 64`
# (add `--figure gap.svg` for the plot; `--help` lists the other options) and compare.
#
# ??? success "Solution"
#     The smaller the batch, the noisier $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$ are, and
#     the more the batch-statistics output differs from the eval-mode output that the running
#     averages give. In our committed run (4,000 training images, three epochs), the gap
#     (batch-statistics accuracy minus eval accuracy, as a fraction) was
#     <!-- measured population_statistics:batch_4.gap_moving_average .3f -->-0.038<!-- /measured -->
#     with batches of 4 and
#     <!-- measured population_statistics:batch_256.gap_moving_average .4f -->-0.0001<!-- /measured -->
#     with batches of 256: below zero means eval mode is better. Expect batches of 2 to be
#     worse still. Note that with the epochs fixed, smaller batches also mean more steps.


# ## Appendix: argument checks and compatibility
#
# Mistakes are caught at the door, with messages that say what was expected and what was
# given, rather than surfacing later as a shape error deep inside a forward pass.
# The checks and the compatibility methods belong to `BatchNorm`; they are written here, at
# the end, so that the page can show the idea first, and set on the class at the end of this
# part (Python looks a method up only when it is called).
def _check_arguments(channels, eps, momentum):
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral):
        raise TypeError(f"channels must be an int, got {type(channels).__name__}")
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if not _is_real(eps) or not 0 < eps < float('inf'):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if momentum is not None and not (_is_real(momentum) and 0. <= momentum <= 1.):
        raise ValueError(f"momentum must be None or a number in [0, 1], "
                         f"got {momentum!r}")


# **`torch.func` and the running statistics.** Under `vmap` the batch statistics of
# a training step are batched, one set per example (or model) of the transform; under
# `grad`, `jacrev` or `jvp` the transform tracks them. An in-place update can write
# them only into buffers batched or tracked at the same levels: stacked buffers given
# to `torch.func.functional_call` under `vmap`, as `stack_module_state` makes them for
# an ensemble. PyTorch refuses the other cases, and so do we, before anything changes.
def _check_running_stats_can_learn(bn, mean: torch.Tensor, var: torch.Tensor):
    levels = _transform_levels(mean) | _transform_levels(var)
    if not levels:
        return
    buffers = (bn.running_mean, bn.running_var, bn.num_batches_tracked)
    if all(levels <= _transform_levels(b) for b in buffers if b is not None):
        return
    raise ValueError(
        "cannot update running_mean, running_var and num_batches_tracked inside "
        "torch.func.vmap, grad, jacrev or jvp: the batch statistics there are "
        "batched or differentiated and the buffers are not. Build the module with "
        "track_running_stats=False (or call "
        "torch.func.replace_all_batch_norm_modules_ on the model), put it in "
        "evaluation mode, or, under vmap, pass stacked buffers to "
        "torch.func.functional_call (torch.func.stack_module_state)")


# **Forward-mode AD in evaluation.** PyTorch's batch norm is not differentiable with
# respect to its running statistics: where a tangent would have to go through them,
# it refuses. Ours would carry the tangent through the affine map, an answer PyTorch
# never gives; we refuse whenever a running statistic carries a tangent.
def _check_statistics_have_no_tangents(mean: torch.Tensor, var: torch.Tensor):
    dual = [name for name, t in (('running_mean', mean), ('running_var', var))
            if _has_tangent(t)]
    if dual:
        raise ValueError(
            f"BatchNorm in evaluation is not differentiable with respect to "
            f"running_mean and running_var, as in torch.nn.BatchNorm2d: expected "
            f"them without forward-mode tangents, got a tangent on "
            f"{' and '.join(dual)}")


# The functions `batch_norm_reference`, `batch_statistics` and `BatchNormFunction` take
# any input the module passes on to them, so they check only what would otherwise give
# a wrong answer without a word (or fail deep inside): an integer tensor, whose outputs
# would be rounded to integers, a tensor without a channel dimension, which would be
# broadcast into another shape, and a $\gamma$ or $\beta$ without one value per channel.
def _check_function_input(x, weight=None, bias=None):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"expected an input of shape (N, C, ...) with at least 2 "
                         f"dimensions, got shape {tuple(x.shape)}")
    for name, t in (('weight', weight), ('bias', bias)):
        if t is not None and t.numel() != x.shape[1]:
            raise ValueError(f"expected {name} of {x.shape[1]} values (one per "
                             f"channel), got shape {tuple(t.shape)}")


# The input must be a floating-point `(N, C, ...)` tensor with this module's `C`. Where
# batch statistics are used, a single value per channel has a zero variance and no
# unbiased estimate, so there is nothing sensible to normalise with or learn from.
# (A method of `BatchNorm`, which `SyncBatchNorm` extends.)
def _check_input(self, x):
    _check_function_input(x)
    if x.shape[1] != self.channels:
        raise ValueError(f"expected {self.channels} channels in dimension 1 of the "
                         f"input, got shape {tuple(x.shape)} "
                         f"with {x.shape[1]} channels")
    uses_batch_statistics = (self.training or self.running_mean is None
                             or self.running_var is None)
    if uses_batch_statistics and x.numel() == x.shape[1]:
        when = ('when training' if self.training else
                'in evaluation without running statistics')
        raise ValueError(f"expected more than 1 value per channel {when}, "
                         f"got input of shape {tuple(x.shape)}")


# ### Recognised as a batch norm
#
# Code that looks for the batch norms of a model checks PyTorch's base class,
# `torch.nn.modules.batchnorm._BatchNorm`: training scripts that leave $\gamma$ and
# $\beta$ out of weight decay, `torch.nn.SyncBatchNorm.convert_sync_batchnorm`, the
# fusion of a convolution with the batch norm after it (`torch.nn.utils.fusion`), SWA's
# `update_bn`, `torch.func.replace_all_batch_norm_modules_`. A layer that is not an
# instance is skipped without a word, and a model would, say, decay $\gamma$ and $\beta$
# towards zero. So `BatchNorm` derives from that class as well as from `Module` (a
# `labml_helpers` module where that package is installed), and it is found as PyTorch's
# are. The class lends nothing else: the constructor starts from `torch.nn.Module`'s,
# and every method it defines is written out on this page, but `_check_input_dim`,
# which only PyTorch's own `forward` calls. Such code reads `num_features`, PyTorch's
# name for `channels`.
def _num_features(self) -> int:
    return self.channels


def _extra_repr(self) -> str:
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
def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                          missing_keys, unexpected_keys, error_msgs):
    version = local_metadata.get('version', None)
    key = prefix + 'num_batches_tracked'
    if (version is None or version < 2) and self.num_batches_tracked is not None \
            and key not in state_dict:
        # Nothing to read: keep the count we have (a meta tensor has no value to keep)
        count = self.num_batches_tracked
        state_dict[key] = (torch.tensor(0, dtype=torch.long) if count.is_meta
                           else count)
    # The loading itself, as for any module
    torch.nn.Module._load_from_state_dict(self, state_dict, prefix, local_metadata,
                                          strict, missing_keys, unexpected_keys,
                                          error_msgs)


# The methods above, set on the class
BatchNorm._check_input = _check_input
BatchNorm.num_features = property(_num_features)
BatchNorm.extra_repr = _extra_repr
BatchNorm._version = 2
BatchNorm._load_from_state_dict = _load_from_state_dict


# ## Helpers
#
# Numbers given to the constructor: any real number, NumPy's scalars included (as
# configuration files and hyper-parameter searches hand them over), but not `True`, which
# is an `int` to Python and not a sensible `eps`.
def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# The dimensions that are reduced to get per-channel statistics: all of them except the
# channel dimension $1$, so that a `[N, C, *]` input gives `[1, C, 1, ...]` statistics which
# broadcast back over the input.
def _reduced_dims(x: torch.Tensor):
    return [0] + list(range(2, x.dim()))


# The shape `[1, C, 1, ...]` that per-channel values ($\gamma$, $\beta$, statistics) take to
# broadcast over a `[N, C, *]` input.
def _channel_shape(x: torch.Tensor):
    return [1, x.shape[1]] + [1] * (x.dim() - 2)


# A cast that costs nothing when there is nothing to cast
def _cast(t: torch.Tensor, dtype) -> torch.Tensor:
    return t if t.dtype == dtype else t.to(dtype)



# Whether `torch.compile` or `torch.export` is tracing the code: `torch.compiler.is_compiling`
# arrived in PyTorch 2.3; the versions before it have dynamo's own.
def _is_compiling() -> bool:
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and hasattr(compiler, 'is_compiling'):
        return compiler.is_compiling()
    from torch import _dynamo
    return _dynamo.is_compiling()


# Whether a `torch.func` transform (`grad`, `vmap`, `jvp`, ...), or forward-mode AD
# (`torch.autograd.forward_ad`, which `torch.func.jvp` also opens), is at work. Then
# `BatchNormFunction` takes its functional path: plain operations that write only the new
# tensors they return. The lean paths write over tensors they made (`_squares_over_d`) and
# into given outputs (`out=`), which a transform cannot follow when the data written in is
# batched and the tensor written over is not, as with a batch of gradients going through one
# backward pass: `torch.autograd.grad(..., is_grads_batched=True)` batches `tensors` with an
# older `vmap` of its own, which only the tensors show. While `torch.compile` traces the
# code it is `False`: the trace takes care of transforms itself.
def _functional(*tensors) -> bool:
    if _is_compiling():
        return False
    forward_ad = getattr(torch.autograd, 'forward_ad', None)
    if getattr(forward_ad, '_current_level', -1) >= 0:
        return True
    active = getattr(torch._C, '_are_functorch_transforms_active', None)
    if active is not None and active():
        return True
    functorch = getattr(torch._C, '_functorch', None)
    batched = getattr(functorch, 'is_legacy_batchedtensor', None)
    return batched is not None and any(batched(t) for t in tensors if t is not None)


# The levels of the `torch.func` transforms that wrap `t` (batched by a `vmap`, or tracked
# by a `grad` or `jvp`), from the innermost out; an empty set for a plain tensor
def _transform_levels(t: torch.Tensor) -> set:
    functorch = None if _is_compiling() else getattr(torch._C, '_functorch', None)
    levels = set()
    while functorch is not None and functorch.is_functorch_wrapped_tensor(t):
        levels.add(functorch.maybe_get_level(t))
        t = functorch.get_unwrapped(t)
    return levels


# Whether `t` carries a forward-mode tangent (`torch.autograd.forward_ad.make_dual`, or the
# primals of `torch.func.jvp`)
def _has_tangent(t: torch.Tensor) -> bool:
    forward_ad = getattr(torch.autograd, 'forward_ad', None)
    if getattr(forward_ad, '_current_level', -1) < 0:
        return False
    return forward_ad.unpack_dual(t).tangent is not None


# Whether `t` takes the GPU's path where it differs from the CPU's (the sum of squares, see
# `_sum_of_squares` and `_squares_over_d`); a function, so that the tests can run that path on
# the CPU.
def _on_gpu(t: torch.Tensor) -> bool:
    return t.is_cuda


# Statistics are computed in at least `float32`, so that `float16` and `bfloat16` inputs
# (with a few bits of mantissa) are not summed over thousands of values in their own precision.
def _compute_dtype(x: torch.Tensor):
    return torch.promote_types(x.dtype, torch.float32)
