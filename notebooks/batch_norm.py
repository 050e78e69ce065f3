# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     name: batch_norm.ipynb
#     provenance: []
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/batch_norm.ipynb)
#
# # Batch Normalization, step by step
#
# The companion of the [BatchNorm
# page](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/batch_norm.html), which
# annotates
# [`labml_nn_bn/batch_norm.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/batch_norm.py).
# We build the paper's ([Ioffe & Szegedy, 2015](https://arxiv.org/abs/1502.03167))
# Algorithm 1 by hand on a batch small enough to check with pencil and paper, compare it
# with `torch.nn` and our `BatchNorm`, derive the backward pass and check it against
# autograd, watch the running averages that inference uses, and compare training and
# evaluation mode. The page's exercises follow at the end, each with a collapsed
# solution that runs.
#
# The symbols are the site's
# [notation](https://labml-nn-bn.github.io/labml_nn_bn/notation.html): $x_i$ is one
# feature of example $i$ in a mini-batch $\mathcal{B}$ of $m$ values, $\mu_\mathcal{B}$
# and $\sigma^2_\mathcal{B}$ its mean and biased variance, $\hat{x}_i$ the normalised
# value, $y_i = \gamma \hat{x}_i + \beta$ the output, and $\ell$ the loss.
#
# Everything here runs on a CPU in seconds; only exercise 8 trains a network, and a GPU
# (*Runtime → Change runtime type → GPU*) makes that faster.

# %% [markdown]
# ## Install
#
# On Colab this installs the package from GitHub; locally (after `make install`) it is
# already there and nothing is installed.

# %%
import sys

if 'google.colab' in sys.modules:
    import subprocess
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',
                    'labml-nn-bn @ git+https://github.com/labml-nn-bn/labml_nn_bn'], check=True)

# %% [markdown]
# ## Which device did we get?

# %%
import torch

if torch.cuda.is_available():
    print(f'GPU: {torch.cuda.get_device_name(0)} (torch {torch.__version__})')
else:
    print(f'No GPU: everything runs on the CPU (torch {torch.__version__}). '
          f'On Colab: Runtime → Change runtime type → GPU.')

# %% [markdown]
# ## Settings
#
# `LABML_NN_BN_SMOKE=1` shrinks the two cells that sample or train (exercises 6 and 8)
# to seconds; the project's tests run the notebook that way. The small tensors are in
# `float64`, so that comparisons can be tight.

# %%
import os

import matplotlib.pyplot as plt

from labml_nn_bn import BatchNorm, batch_norm_reference

SMOKE = os.environ.get('LABML_NN_BN_SMOKE') == '1'
torch.set_default_dtype(torch.float64)
EPS = 1e-5
print('smoke mode' if SMOKE else 'full mode')

# %% [markdown]
# ## 1. Algorithm 1 on a 4 × 2 batch
#
# The page's worked example: $m = 4$ examples with two features, and a scale and shift
# that differ from $1$ and $0$ so that the last step shows.

# %%
x = torch.tensor([[1., 10.], [3., 16.], [5., 16.], [7., 18.]])  # [m, C] = [4, 2]
gamma = torch.tensor([2., 0.5])
beta = torch.tensor([0., 1.])

# %% [markdown]
# The four lines of Algorithm 1, one feature per column:
#
# $$\mu_\mathcal{B} = \frac{1}{m}\sum_{i=1}^m x_i \qquad
#   \sigma^2_\mathcal{B} = \frac{1}{m}\sum_{i=1}^m (x_i - \mu_\mathcal{B})^2$$
#
# $$\hat{x}_i = \frac{x_i - \mu_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
#   \qquad
#   y_i = \gamma \hat{x}_i + \beta$$

# %%
mu = x.mean(dim=0)
var = ((x - mu) ** 2).mean(dim=0)  # divides by m: the biased variance
x_hat = (x - mu) / torch.sqrt(var + EPS)
y = gamma * x_hat + beta
print('mu_B      ', mu)
print('sigma^2_B ', var)
print('x_hat\n', x_hat)
print('y\n', y)

# %% [markdown]
# Each column of $\hat{x}$ has mean $0$ and mean square $1$ (up to the $\epsilon$):

# %%
print('mean of x_hat       ', x_hat.mean(dim=0))
print('mean square of x_hat', (x_hat ** 2).mean(dim=0))

# %% [markdown]
# The same numbers from `torch.nn.BatchNorm1d`, from our `BatchNorm` (both in training
# mode, where they normalise with the batch's own statistics) and from the page's
# `batch_norm_reference`:

# %%
torch_bn = torch.nn.BatchNorm1d(2, eps=EPS).train()
our_bn = BatchNorm(2, eps=EPS).train()
with torch.no_grad():
    for layer in (torch_bn, our_bn):
        layer.weight.copy_(gamma)
        layer.bias.copy_(beta)
    y_torch, y_ours = torch_bn(x), our_bn(x)
    y_reference = batch_norm_reference(x, gamma, beta, eps=EPS)
assert torch.allclose(y_torch, y, atol=1e-12)
assert torch.allclose(y_ours, y, atol=1e-12)
assert torch.allclose(y_reference, y, atol=1e-12)
print('torch.nn.BatchNorm1d, BatchNorm and batch_norm_reference all give y')

# %% [markdown]
# ## 2. The backward pass
#
# The loss $\ell$ reaches every $x_i$ along three paths: directly through $\hat{x}_i$,
# through $\mu_\mathcal{B}$ and through $\sigma^2_\mathcal{B}$. Given
# $\partial\ell/\partial y_i$ from the layer above, the paper's chain rule (Section 3)
# is
#
# $$\frac{\partial \ell}{\partial \hat{x}_i} =
#   \frac{\partial \ell}{\partial y_i}\,\gamma
#   \qquad
#   \frac{\partial \ell}{\partial \sigma^2_\mathcal{B}} = \sum_{i=1}^m
#   \frac{\partial \ell}{\partial \hat{x}_i}(x_i - \mu_\mathcal{B})
#   \cdot \frac{-1}{2}(\sigma^2_\mathcal{B} + \epsilon)^{-3/2}$$
#
# $$\frac{\partial \ell}{\partial \mu_\mathcal{B}} = \sum_{i=1}^m
#   \frac{\partial \ell}{\partial \hat{x}_i} \cdot
#   \frac{-1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
#   + \frac{\partial \ell}{\partial \sigma^2_\mathcal{B}} \cdot
#   \frac{\sum_{i=1}^m -2(x_i - \mu_\mathcal{B})}{m}$$
#
# $$\frac{\partial \ell}{\partial x_i} =
#   \frac{\partial \ell}{\partial \hat{x}_i} \cdot
#   \frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
#   + \frac{\partial \ell}{\partial \sigma^2_\mathcal{B}} \cdot
#   \frac{2(x_i - \mu_\mathcal{B})}{m}
#   + \frac{\partial \ell}{\partial \mu_\mathcal{B}} \cdot \frac{1}{m}$$
#
# $$\frac{\partial \ell}{\partial \gamma} =
#   \sum_{i=1}^m \frac{\partial \ell}{\partial y_i}
#   \hat{x}_i \qquad
#   \frac{\partial \ell}{\partial \beta} =
#   \sum_{i=1}^m \frac{\partial \ell}{\partial y_i}$$
#
# Written out, for every feature at once (sums over the batch dimension):

# %%
def paper_backward(x, gamma, grad_y, eps=EPS):
    """The paper's formulas; returns the gradients for x, gamma and beta."""
    m = x.shape[0]
    mu = x.mean(dim=0)
    var = ((x - mu) ** 2).mean(dim=0)
    x_hat = (x - mu) / torch.sqrt(var + eps)
    grad_x_hat = grad_y * gamma
    grad_var = (grad_x_hat * (x - mu)).sum(dim=0) * -0.5 * (var + eps) ** -1.5
    grad_mu = ((grad_x_hat * -1 / torch.sqrt(var + eps)).sum(dim=0)
               + grad_var * (-2 * (x - mu)).sum(dim=0) / m)
    grad_x = (grad_x_hat / torch.sqrt(var + eps) + grad_var * 2 * (x - mu) / m
              + grad_mu / m)
    return grad_x, (grad_y * x_hat).sum(dim=0), grad_y.sum(dim=0)


# %% [markdown]
# Autograd differentiates our `BatchNorm` (whose backward pass is written by hand, in a
# compact form of the same formulas) and `torch.nn.BatchNorm1d`; all three must agree,
# in `float64` to about $10^{-12}$. An arbitrary $\partial\ell/\partial y$ stands for
# the layer above.

# %%
generator = torch.Generator().manual_seed(0)
grad_y = torch.randn(x.shape, generator=generator)
by_hand = paper_backward(x, gamma, grad_y)

for name, layer in (('BatchNorm', our_bn), ('torch.nn.BatchNorm1d', torch_bn)):
    layer.zero_grad()
    x_leaf = x.clone().requires_grad_()
    layer(x_leaf).backward(grad_y)
    by_autograd = (x_leaf.grad, layer.weight.grad, layer.bias.grad)
    for what, a, b in zip(('x', 'gamma', 'beta'), by_hand, by_autograd):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), (name, what)
    print(f'{name}: the paper\'s formulas match autograd for x, gamma and beta')
print('dl/dx by hand\n', by_hand[0])

# %% [markdown]
# `torch.autograd.gradcheck` compares our hand-written backward pass with finite
# differences of the forward pass, for a random input:

# %%
x_random = torch.randn(6, 3, generator=generator, requires_grad=True)
assert torch.autograd.gradcheck(BatchNorm(3).train(), (x_random,))
print('gradcheck passed')

# %% [markdown]
# ## 3. A 4-D batch: `BatchNorm2d`
#
# For a convolution's output $[N, C, H, W]$ a feature is a channel: its statistics are
# taken over the batch *and* every position, $m = N \times$ height $\times$ width
# values. Here $N = 2$ and the feature maps are $2 \times 2$, so $m = 8$ per channel.

# %%
x4 = torch.randn(2, 3, 2, 2, generator=generator) * 3 + 5  # [N, C, H, W]
dims = (0, 2, 3)  # every dimension except the channels
mu4 = x4.mean(dim=dims, keepdim=True)
var4 = ((x4 - mu4) ** 2).mean(dim=dims, keepdim=True)
y4 = (x4 - mu4) / torch.sqrt(var4 + EPS)  # gamma = 1, beta = 0
print('m per channel:', x4.numel() // x4.shape[1])
print('mu_B per channel', mu4.flatten())
with torch.no_grad():
    assert torch.allclose(torch.nn.BatchNorm2d(3, eps=EPS).train()(x4), y4, atol=1e-12)
    assert torch.allclose(BatchNorm(3, eps=EPS).train()(x4), y4, atol=1e-12)
print('torch.nn.BatchNorm2d and BatchNorm agree with the hand-written statistics')

# %% [markdown]
# ## 4. Running averages
#
# At inference there is no batch to take statistics from, so during training every batch
# moves two buffers, $\mathbb{E}[x]$ (`running_mean`) and $\mathrm{Var}[x]$
# (`running_var`), a little towards its own statistics:
# $\mathbb{E}[x] \leftarrow (1 - \alpha)\,\mathbb{E}[x] + \alpha\,\mu_\mathcal{B}$, and
# the same for $\mathrm{Var}[x]$ with the unbiased $\frac{m}{m-1}\sigma^2_\mathcal{B}$.
# The momentum $\alpha$ is the weight of the *new* batch (PyTorch's convention); `None`
# is the plain average of every batch so far.
#
# A feature whose mean drifts from 0 to 3 over the first 100 batches of 16, then stays:

# %%
steps, batch = 300, 16
true_mean = [3. * min(t, 100) / 100 for t in range(steps)]
momentums = (0.01, 0.1, 0.5, None)
layers = {alpha: BatchNorm(1, momentum=alpha, affine=False).train()
          for alpha in momentums}
running = {alpha: [] for alpha in momentums}
batch_means = []
with torch.no_grad():
    for t in range(steps):
        xb = torch.randn(batch, 1, generator=generator) + true_mean[t]
        batch_means.append(xb.mean().item())
        for alpha, layer in layers.items():
            layer(xb)
            running[alpha].append(layer.running_mean.item())

fig, ax = plt.subplots(figsize=(8, 3.5))
ax.plot(batch_means, '.', color='#BBBBBB', ms=3, label='batch means')
ax.plot(true_mean, 'k--', lw=1, label='true mean')
for alpha in momentums:
    ax.plot(running[alpha], lw=1.5, label=f'running mean, momentum = {alpha}')
ax.set(xlabel='batch', ylabel='mean of the feature')
ax.legend(fontsize=8)
plt.show()
for alpha in momentums:
    print(f'momentum {str(alpha):>4}: running mean {running[alpha][-1]:.3f} '
          f'after {steps} batches')

# %% [markdown]
# A small $\alpha$ is smooth but lags the drift; a large one follows it at once but is
# as noisy as a single batch; `None` weighs the batches from before the drift as much as
# the recent ones, so it is still well below 3 at the end.
#
# ## 5. Training mode and evaluation mode
#
# In training mode an example is normalised with the statistics of whatever batch it is
# in; in evaluation mode with the running averages. The example $2$ in two batches of
# three:

# %%
bn = BatchNorm(1, eps=EPS, momentum=0.1)
first_batch = torch.tensor([[2.], [0.], [4.]])
second_batch = torch.tensor([[2.], [6.], [10.]])
with torch.no_grad():
    bn.train()
    train_outputs = [bn(first_batch)[0, 0].item(), bn(second_batch)[0, 0].item()]
    bn.eval()
    eval_outputs = [bn(first_batch)[0, 0].item(), bn(second_batch)[0, 0].item()]
print('training mode  :', [round(v, 4) for v in train_outputs])
print('evaluation mode:', [round(v, 4) for v in eval_outputs])
print('running mean', bn.running_mean.item(), ' running var', bn.running_var.item())

# %% [markdown]
# The evaluation output is one affine map of the example,
# $y = \gamma\,(x - \mathbb{E}[x]) / \sqrt{\mathrm{Var}[x] + \epsilon} + \beta$, with
# the two buffers the training steps left: starting from $0$ and $1$, the first batch
# has mean $2$ and unbiased variance $4$, the second mean $6$ and unbiased variance
# $16$.

# %%
expected_mean = 0.9 * (0.9 * 0. + 0.1 * 2.) + 0.1 * 6.
expected_var = 0.9 * (0.9 * 1. + 0.1 * 4.) + 0.1 * 16.
by_hand_eval = (2. - expected_mean) / (expected_var + EPS) ** 0.5
assert abs(bn.running_mean.item() - expected_mean) < 1e-12
assert abs(bn.running_var.item() - expected_var) < 1e-12
assert all(abs(v - by_hand_eval) < 1e-12 for v in eval_outputs)
print(f'by hand: E[x] = {expected_mean:.2f}, Var[x] = {expected_var:.2f}, '
      f'y = {by_hand_eval:.4f}')

# %% [markdown]
# ## 6. The fast path
#
# Everything above takes several passes over the data. The module on the page computes
# the same function in fewer: the statistics around a *shift* (a rough guess of the
# mean, which keeps them exact when the mean is much larger than the spread), one scale
# and one offset per channel, and a backward pass that needs only two sums per channel.
# On a GPU, `labml_nn_bn.FastBatchNorm` fuses each direction into Triton kernels. That
# part is ours, not the paper's, and skippable on a first reading: see the page's
# [making it fast and
# exact](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/batch_norm.html) sections
# and the [fused kernels
# page](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/fast_batch_norm.html).

# %% [markdown]
# # Exercises
#
# The exercises of the BatchNorm page, with the same numbers. Try each in the empty cell
# first; the solutions are collapsed (on Colab, *Show code* opens one).

# %% [markdown]
# ### Exercise 1: Two sums the gradient cannot move (derivation)
#
# Show that $\sum_i \partial\ell/\partial x_i = 0$ and
# $\sum_i (\partial\ell/\partial x_i)\,\hat{x}_i = 0$ (the second for $\epsilon = 0$),
# and check both numerically. What does the first mean for a gradient step?

# %%
# Your attempt

# %% [markdown]
# <details><summary>Solution</summary>
#
# Substituting $\partial\ell/\partial\sigma^2_\mathcal{B}$ and
# $\partial\ell/\partial\mu_\mathcal{B}$ into $\partial\ell/\partial x_i$ (the centred
# values sum to zero, and
# $x_i - \mu_\mathcal{B} = \hat{x}_i\sqrt{\sigma^2_\mathcal{B} + \epsilon}$) gives the
# compact form
#
# $$\frac{\partial \ell}{\partial x_i} =
#   \frac{\gamma}{m\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
#   \Big(m \frac{\partial \ell}{\partial y_i}
#   - \sum_j \frac{\partial \ell}{\partial y_j}
#   - \hat{x}_i \sum_j \frac{\partial \ell}{\partial y_j}\hat{x}_j\Big)$$
#
# Summing over $i$: the first two terms give
# $m\sum_i \partial\ell/\partial y_i - m\sum_j \partial\ell/\partial y_j = 0$, and the
# third is $\sum_i \hat{x}_i = 0$ times a constant, so $\sum_i \partial\ell/\partial x_i = 0$
# exactly. Multiplying by $\hat{x}_i$ and summing: the middle term vanishes again and
# the others leave
#
# $$\frac{\gamma}{m\sqrt{\sigma^2_\mathcal{B}+\epsilon}}
#   \sum_j \frac{\partial \ell}{\partial y_j}\hat{x}_j \Big(m - \sum_i \hat{x}_i^2\Big)$$
#
# This is zero when $\sum_i \hat{x}_i^2 = m$, that is for $\epsilon = 0$ (with
# $\epsilon > 0$ the sum is
# $m\,\sigma^2_\mathcal{B}/(\sigma^2_\mathcal{B} + \epsilon)$, slightly less). The
# gradient is orthogonal to the two directions the normalisation removes, a shift and a
# scaling of the batch: a step along it changes neither $\mu_\mathcal{B}$ nor (to first
# order) $\sigma^2_\mathcal{B}$.
#
# </details>

# %%
#@title Solution: the numerical check { display-mode: "form" }
x1 = torch.randn(16, 3, generator=generator) * 4 + 7
gamma1 = torch.tensor([2., -1., 0.5])
grad_y1 = torch.randn(16, 3, generator=generator)
for eps in (0., EPS):
    grad_x1 = paper_backward(x1, gamma1, grad_y1, eps=eps)[0]
    x_hat1 = batch_norm_reference(x1, torch.ones(3), torch.zeros(3), eps=eps)
    along_x_hat = (grad_x1 * x_hat1).sum(dim=0)
    print(f'eps = {eps:g}: sum of dl/dx {grad_x1.sum(dim=0).abs().max().item():.1e}, '
          f'sum of dl/dx * x_hat {along_x_hat.abs().max().item():.1e}')
    assert grad_x1.sum(dim=0).abs().max() < 1e-12
    var1 = x1.var(dim=0, unbiased=False)
    expected = (gamma1 / torch.sqrt(var1 + eps) * (grad_y1 * x_hat1).sum(dim=0)
                * (1 - (x_hat1 ** 2).mean(dim=0)))
    assert torch.allclose(along_x_hat, expected, atol=1e-12)
    if eps == 0.:
        assert along_x_hat.abs().max() < 1e-12

# %% [markdown]
# ### Exercise 2: The worked example by hand (derivation)
#
# Work the first feature of the worked example by hand: $x = 1, 3, 5, 7$ with
# $\gamma = 2$, $\beta = 0$. What are $\mu_\mathcal{B}$, $\sigma^2_\mathcal{B}$,
# $\hat{x}$ and $y$?

# %%
# Your attempt

# %% [markdown]
# <details><summary>Solution</summary>
#
# $\mu_\mathcal{B} = (1 + 3 + 5 + 7)/4 = 4$; the deviations are $-3, -1, 1, 3$, so
# $\sigma^2_\mathcal{B} = (9 + 1 + 1 + 9)/4 = 5$ (dividing by $m = 4$, not $3$).
# $\hat{x} = (-3, -1, 1, 3)/\sqrt{5 + 10^{-5}} \approx (-1.3416, -0.4472, 0.4472, 1.3416)$,
# and $y = 2\hat{x} \approx (-2.6833, -0.8944, 0.8944, 2.6833)$. The cell below checks
# these against the first column of section 1.
#
# </details>

# %%
#@title Solution: the check { display-mode: "form" }
assert mu[0].item() == 4. and var[0].item() == 5.
by_hand_x_hat = torch.tensor([-3., -1., 1., 3.]) / (5 + EPS) ** 0.5
assert torch.allclose(x_hat[:, 0], by_hand_x_hat)
by_hand_y = torch.tensor([-2.6833, -0.8944, 0.8944, 2.6833])  # to 4 decimals
assert torch.allclose(y[:, 0], by_hand_y, atol=5e-5)
print('x_hat', [round(v, 4) for v in x_hat[:, 0].tolist()],
      ' y', [round(v, 4) for v in y[:, 0].tolist()])

# %% [markdown]
# ### Exercise 3: The bias before a batch norm (code)
#
# Show in code that $\mathrm{BN}(Wu + b) = \mathrm{BN}(Wu)$ for a linear layer: the bias
# of a layer before a batch norm does nothing. What gradient does $b$ receive?

# %%
# Your attempt

# %%
#@title Solution { display-mode: "form" }
u = torch.randn(32, 5, generator=generator)
with_bias = torch.nn.Linear(5, 4)
without_bias = torch.nn.Linear(5, 4, bias=False)
with torch.no_grad():
    without_bias.weight.copy_(with_bias.weight)
    with_bias.bias.uniform_(-10, 10)
bn3 = BatchNorm(4).train()
out_with, out_without = bn3(with_bias(u)), bn3(without_bias(u))
assert torch.allclose(out_with, out_without, atol=1e-10)
# By exercise 1, dl/db = sum_i dl/dx_i = 0: the bias never learns
out_with.pow(3).sum().backward()
assert with_bias.bias.grad.abs().max() < 1e-10
print('BN(Wu + b) = BN(Wu); the gradient of b is', with_bias.bias.grad)

# %% [markdown]
# ### Exercise 4: Scale invariance, and where it breaks (code)
#
# The paper's scale invariance, $\mathrm{BN}((aW)u) = \mathrm{BN}(Wu)$ for a scalar $a$
# (Section 3.3). Check it for $a = 10$; then find what goes wrong for $a < 0$, and with
# $\epsilon > 0$ when $a$ is small.

# %%
# Your attempt

# %%
#@title Solution { display-mode: "form" }
W = torch.randn(4, 5, generator=generator)
ones4, zeros4 = torch.ones(4), torch.zeros(4)


def bn_of(weights, eps):
    return batch_norm_reference(u @ weights.T, ones4, zeros4, eps=eps)


for a in (10., -10., 1e-3):
    for eps in (0., EPS):
        gap = (bn_of(a * W, eps) - bn_of(W, eps)).abs().max().item()
        print(f'a = {a:>6g}, eps = {eps:g}: largest |BN((aW)u) - BN(Wu)| = {gap:.1e}')
# Exact for a > 0 when eps = 0, and close while a^2 sigma^2 >> eps
assert torch.allclose(bn_of(10 * W, 0.), bn_of(W, 0.), atol=1e-12)
assert torch.allclose(bn_of(10 * W, EPS), bn_of(W, EPS), atol=1e-4)
# A negative a flips the sign of x_hat
assert torch.allclose(bn_of(-10 * W, 0.), -bn_of(W, 0.), atol=1e-12)
# A small a makes a^2 sigma^2 comparable with eps: the output shrinks
assert (bn_of(1e-3 * W, EPS) - bn_of(W, EPS)).abs().max() > 0.1

# %% [markdown]
# ### Exercise 5: How fast the running mean catches up (derivation)
#
# A fresh running mean starts at $0$. From now on every batch has the same mean,
# $\mu_\mathcal{B} = 5$. With $\alpha = 0.1$, after how many batches is the running mean
# within 1 % of $5$?

# %%
# Your attempt

# %% [markdown]
# <details><summary>Solution</summary>
#
# Each update keeps $(1 - \alpha)$ of the distance to $5$, so after $n$ batches the
# running mean is $5\,(1 - 0.9^n)$. Within 1 % means $0.9^n \le 0.01$,
# $n \ge \ln 0.01 / \ln 0.9 \approx 43.7$: after **44** batches
# ($0.9^{43} \approx 0.0108$, $0.9^{44} \approx 0.0097$). The cell below feeds a
# `BatchNorm` batches whose mean is exactly $5$.
#
# </details>

# %%
#@title Solution: the check { display-mode: "form" }
import math

bn5 = BatchNorm(1, momentum=0.1, affine=False).train()
target = 5.
within = []
with torch.no_grad():
    for n in range(1, 61):
        bn5(torch.tensor([[target - 1.], [target + 1.]]))  # mean exactly 5
        within.append(abs(bn5.running_mean.item() - target) <= 0.01 * target)
first = within.index(True) + 1
assert first == 44 and all(within[first - 1:])
assert round(math.log(0.01) / math.log(0.9), 1) == 43.7
assert (round(0.9 ** 43, 4), round(0.9 ** 44, 4)) == (0.0108, 0.0097)
print(f'within 1 % from batch {first} on')

# %% [markdown]
# ### Exercise 6: Why Algorithm 2 multiplies by m/(m − 1) (derivation)
#
# Show that $\mathbb{E}[\sigma^2_\mathcal{B}] = \frac{m-1}{m}\mathrm{Var}[x]$ for
# batches of $m$ independent values, which is why Algorithm 2 multiplies by
# $\frac{m}{m-1}$. Check it by sampling with $m = 4$.

# %%
# Your attempt

# %% [markdown]
# <details><summary>Solution</summary>
#
# Centre on the population mean $\mathbb{E}[x]$ instead of $\mu_\mathcal{B}$:
#
# $$m\,\sigma^2_\mathcal{B} = \sum_i (x_i - \mu_\mathcal{B})^2
#   = \sum_i (x_i - \mathbb{E}[x])^2 - m\,(\mu_\mathcal{B} - \mathbb{E}[x])^2$$
#
# The first sum has expectation $m\,\mathrm{Var}[x]$. $\mu_\mathcal{B}$ is the mean of
# $m$ independent values, so its variance is $\mathrm{Var}[x]/m$ and the second term is
# $\mathrm{Var}[x]$ on average. So
# $\mathbb{E}[\sigma^2_\mathcal{B}] = \frac{m - 1}{m}\mathrm{Var}[x]$: for $m = 4$,
# three quarters of the variance. The batch mean is fitted to the batch itself, which
# uses up one of the $m$ degrees of freedom.
#
# </details>

# %%
#@title Solution: the check { display-mode: "form" }
batches = 20_000 if SMOKE else 500_000
samples = torch.randn(batches, 4, generator=generator) * 2.  # Var[x] = 4
mean_of_var_b = samples.var(dim=1, unbiased=False).mean().item()
print(f'mean of sigma^2_B over {batches:,} batches of 4: {mean_of_var_b:.3f} '
      f'(expected 3/4 x 4 = 3)')
assert abs(mean_of_var_b / 3. - 1) < 0.03

# %% [markdown]
# ### Exercise 7: Batch Renormalization's r and d (code)
#
# Batch Renormalization ([Ioffe, 2017](https://arxiv.org/abs/1702.03275)) normalises a
# training batch with the batch statistics, then corrects towards the running ones:
# $\hat{x}_i = \frac{x_i - \mu_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}\,r + d$
# with $r = \sqrt{\sigma^2_\mathcal{B} + \epsilon}\,/\sqrt{\mathrm{Var}[x] + \epsilon}$
# clipped to $[1/r_{\max}, r_{\max}]$ and
# $d = (\mu_\mathcal{B} - \mathbb{E}[x])\,/\sqrt{\mathrm{Var}[x] + \epsilon}$ clipped to
# $[-d_{\max}, d_{\max}]$, where $r$ and $d$ are treated as constants by the gradient.
# Write it, and check that $r = 1$, $d = 0$ (that is $r_{\max} = 1$, $d_{\max} = 0$)
# reproduces batch normalization, outputs and gradients.

# %%
# Your attempt

# %%
#@title Solution { display-mode: "form" }
def batch_renorm(x, gamma, beta, running_mean, running_var, r_max, d_max, eps=EPS):
    """Batch Renormalization of a [m, C] batch in training mode (the running
    statistics are read, not updated)."""
    mu_b = x.mean(dim=0)
    std_b = torch.sqrt(((x - mu_b) ** 2).mean(dim=0) + eps)
    std = torch.sqrt(running_var + eps)
    # Constants for the gradient: computed from detached statistics
    r = (std_b.detach() / std).clamp(1 / r_max, r_max)
    d = ((mu_b.detach() - running_mean) / std).clamp(-d_max, d_max)
    return gamma * ((x - mu_b) / std_b * r + d) + beta


x7 = (torch.randn(8, 3, generator=generator) * 3 + 1).requires_grad_()
gamma7 = torch.tensor([1.5, 1., 0.5], requires_grad=True)
beta7 = torch.tensor([0., 1., -1.], requires_grad=True)
running_mean7, running_var7 = torch.tensor([0.5, 2., -1.]), torch.tensor([4., 1., 9.])
grad_y7 = torch.randn(8, 3, generator=generator)


def outputs_and_gradients(y):
    grads = torch.autograd.grad(y, (x7, gamma7, beta7), grad_y7)
    return (y.detach(),) + grads


renorm = outputs_and_gradients(batch_renorm(x7, gamma7, beta7, running_mean7,
                                            running_var7, r_max=1., d_max=0.))
plain = outputs_and_gradients(batch_norm_reference(x7, gamma7, beta7, eps=EPS))
for a, b in zip(renorm, plain):
    assert torch.allclose(a, b, atol=1e-12)
wide = batch_renorm(x7, gamma7, beta7, running_mean7, running_var7, r_max=3., d_max=5.)
print('r_max = 1, d_max = 0 reproduces batch normalization, outputs and gradients; '
      f'with r_max = 3, d_max = 5 the outputs move by up to '
      f'{(wide.detach() - plain[0]).abs().max().item():.2f}')

# %% [markdown]
# ### Exercise 8: Algorithm 2 with other batch sizes (experiment)
#
# Rerun Algorithm 2's experiment ([population
# statistics](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/experiments/population_statistics.html))
# with other batch sizes, say 2 and 8. Before you run it: with batches of 2, what is
# $\hat{x}$ of a fully connected feature in training mode, and how will the accuracy
# with batch statistics compare with the accuracy with population statistics?

# %%
# Your attempt

# %% [markdown]
# <details><summary>Solution</summary>
#
# With $m = 2$ the two values of a feature lie on either side of $\mu_\mathcal{B}$, at a
# distance $\sqrt{\sigma^2_\mathcal{B}}$ each, so
# $\hat{x} = \pm\sqrt{\sigma^2_\mathcal{B} / (\sigma^2_\mathcal{B} + \epsilon)}$:
# $\pm 1$, whatever the inputs, unless $\sigma^2_\mathcal{B}$ is as small as $\epsilon$.
# After the fully connected batch norm, an example only knows which of the two is larger
# in each feature. The network trains on that, but classifying a test batch with batch
# statistics throws away most of what the features say about an image, while population
# statistics keep it: expect a far larger gap between the two than at batch 4. The run
# below (tiny in smoke mode) shows it; the first cell checks the $\pm 1$.
#
# </details>

# %%
#@title Solution: x_hat for m = 2 { display-mode: "form" }
pair = torch.randn(2, 6, generator=generator) * 5
x_hat_pair = batch_norm_reference(pair, torch.ones(6), torch.zeros(6), eps=EPS)
# |x_hat| = sqrt(sigma^2_B / (sigma^2_B + eps)) for both: 1 unless sigma^2_B ~ eps
var_pair = pair.var(dim=0, unbiased=False)
expected_pair = torch.sqrt(var_pair / (var_pair + EPS)).expand(2, 6)
assert torch.allclose(x_hat_pair.abs(), expected_pair, atol=1e-12)
print(x_hat_pair)

# %%
#@title Solution: the run { display-mode: "form" }
from labml_nn_bn.experiments import population_statistics

torch.set_default_dtype(torch.float32)
if SMOKE:
    kwargs = dict(population_statistics.SMOKE, batch_sizes=(2, 8))
else:
    kwargs = dict(batch_sizes=(2, 4, 8, 64), epochs=3)
result8 = population_statistics.run(**kwargs)
for row in result8['rows']:
    print(f"batch {row['batch_size']:3d}: "
          f"batch statistics {row['batch_statistics']:.1%}, "
          f"moving averages {row['moving_average']:.1%}, "
          f"recalibrated {row['recalibrated']:.1%}")
