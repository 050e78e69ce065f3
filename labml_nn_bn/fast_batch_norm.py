r"""
---
title: Fused Batch Normalization kernels
summary: >
  A Triton kernel pair for Batch Normalization, written to move as few bytes as the
  algorithm allows: statistics and normalisation in the forward pass, the two per-channel
  reductions and the input gradient in the backward pass.
---

# Fused Batch Normalization kernels

*Symbols as in [the notation table](../notation.md); $K$ is the shift of the statistics.*

[`BatchNorm`](batch_norm.md) writes Batch Normalization as a sequence of PyTorch operations,
so that each line matches a line of the paper. On a GPU that costs speed, and this page is
about why, and about a second implementation, `FastBatchNorm`, that computes exactly the same
function with two hand-written [Triton](https://triton-lang.org) kernels per direction.

### Where the time goes

Batch normalization does almost no arithmetic: a handful of additions and multiplications per
value. A GPU does arithmetic far faster than it can bring values in from its main memory, so
the running time is set by how many bytes move between memory and the chip, not by the
arithmetic. Every PyTorch operation is one trip over the whole tensor: it reads
its inputs from memory and writes its output back. The eager module is a chain of such
operations, so however few of them the numerics allow (the shift, the sums, the
normalisation, the scale and shift; the two sums and the input gradient backward), each one
is a full pass. Our first version, written line by line in the paper's form, made about a
dozen passes forward and about twenty backward (counted when this work began).

### The memory floor

Call $P$ the bytes of one *pass*, one read or one write of the whole input (4 bytes per value
in `float32`, 2 in `bfloat16`). Any implementation has to

* **forward**: read $x$ and write $y$: $2P$,
* **backward**: read $x$ (or something as large saved from the forward pass) and
  $\frac{\partial \ell}{\partial y}$, and write $\frac{\partial \ell}{\partial x}$: $3P$.

That is the *minimal traffic*, $5P$ for a training step, and the time it takes at the
device's memory bandwidth is the floor no implementation can go under. `benchmarks/bn_speed.py`
reports every implementation's effective bandwidth against this minimal traffic, next to the
bandwidth of a plain device-to-device copy measured in the same run.

The floor cannot quite be reached when the tensor is larger than the chip's on-chip memory:
the statistics need *all* of a channel before the first output can be written, so the
forward pass reads $x$ twice (once for $\mu_\mathcal{B}, \sigma^2_\mathcal{B}$, once to
normalise), and the backward pass reads $x$ and $\frac{\partial \ell}{\partial y}$ twice (once
for the two sums, once for the input gradient). That is $3P + 5P = 8P$, 1.6 times the floor,
and it is what the kernels below do. The second reads often come from the GPU's L2 cache when
the tensor is small.

### What fusing buys

A kernel can load a tile of values into registers, do every operation on them there, and write
only the result. The forward pass becomes two passes over memory: a *statistics* kernel, which
reads $x$ once and leaves a few numbers per channel, and an *apply* kernel, which reads $x$ once
more and writes $y$. The backward pass becomes a *gradient sums* kernel, which reads $x$ and
$\frac{\partial \ell}{\partial y}$ and leaves $\sum_i \frac{\partial \ell}{\partial y_i}$ and
$\sum_i \frac{\partial \ell}{\partial y_i} \hat{x}_i$ per channel,
and a *gradient input* kernel, which reads them again and writes
$\frac{\partial \ell}{\partial x}$. Between each pair, a tiny kernel combines the per-channel
partial results of many programs. Nothing activation-sized is ever written except $y$ and
$\frac{\partial \ell}{\partial x}$, and nothing is saved for backward beyond $x$ itself and a
few numbers per channel, so peak memory is that of `torch.nn.BatchNorm2d`.

### How fast, measured

On an NVIDIA H200 (every number is on the [Performance](../performance.md) page), a training
step at $256 \times 64 \times 56 \times 56$ `float32` took
<!-- measured bn_speed-nvidia-h200:fp32_256x64x56x56.train.fast.ms .3f -->0.740<!-- /measured --> ms
on these kernels against
<!-- measured bn_speed-nvidia-h200:fp32_256x64x56x56.train.native.ms .3f -->1.669<!-- /measured --> ms
with `torch.nn.BatchNorm2d`, and an evaluation forward in `bfloat16` channels-last
<!-- measured bn_speed-nvidia-h200:bf16_cl_256x64x56x56.eval.fast.ratio .2f -->0.48<!-- /measured -->
times native's time. At smaller inputs a step is bound by the Python that launches the kernels,
not by the GPU, and native, a single call into C++ per direction, is faster; inside a captured
CUDA graph, where no Python runs per step, the MNIST CNN trained faster with these kernels than
with native's (the Performance page's MNIST table).

### Memory layouts

An input of shape `[N, C, *]` is seen as `[N, C, S]`, with `S` the product of the trailing
dimensions (the positions).
Two layouts are common, and a kernel reads memory fastest along the dimension that is
contiguous:

* *channels first* (`torch.contiguous_format`, NCHW): each channel of each example is a run of
  `S` contiguous values; a tile is a few channels by many positions.
* *channels last* (`torch.channels_last`, NHWC, and every `[N, C]` input): the `C` channels of
  one position are contiguous, so the whole tensor is `N * S` rows of `C` values; a tile is
  many channels by a few rows.

The kernels take the three strides of the `[N, C, S]` view as arguments, so the same code serves
both; only the tile shape changes. Any other layout is copied to channels first.

### Numerics

The statistics are accumulated in `float32` for every input dtype, with the same care as the
eager module's [`batch_statistics`](batch_norm.md). Each channel is shifted by its first
value $K$. When every $x_i$ of the channel lies between $K/2$ and $2K$, which is the case that
matters, a mean far from zero compared with the spread, $\delta_i = x_i - K$ is computed
exactly (Sterbenz's lemma); otherwise it is rounded once, like any subtraction, to a number
of the size of the spread. Either way nothing of the size of the mean is left in $\delta_i$,
even when the mean is $10^6$ standard deviations from zero. Each tile computes its own mean
and sum of squared deviations of $\delta$ in two passes over registers, and tiles are merged
with the pairwise update of Chan, Golub and LeVeque (1979), which adds only non-negative
terms: for two parts $1$ and $2$ with $n_1$ and $n_2$ values, means $\bar\delta_1$,
$\bar\delta_2$ and sums of squared deviations $M_{2,1}$, $M_{2,2}$,

$$\begin{aligned}
  n &= n_1 + n_2 \qquad \Delta = \bar\delta_2 - \bar\delta_1 \\
  \bar\delta &= \bar\delta_1 + \Delta \frac{n_2}{n} \\
  M_2 &= M_{2,1} + M_{2,2} + \Delta^2 \frac{n_1 n_2}{n}
\end{aligned}$$

The mean is kept in two parts, $\mu_\mathcal{B} = K + \bar\delta$, and the centred values
are computed as $(x_i - K) - \bar\delta$, never as $x_i - (K + \bar\delta)$.
"""

import os
from collections import Counter
from functools import lru_cache

import torch

from labml_nn_bn.batch_norm import BatchNorm, _functional

# Triton is optional: without it `FastBatchNorm` is `BatchNorm`. The kernels below are plain
# functions, compiled on first use (see `_compiled`), so defining them needs only the names
# `triton.language.constexpr` and friends; when Triton is missing, `tl.constexpr` is a stand-in
# that is never used.
try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where Triton is not installed
    triton = None

    class tl:
        constexpr = None

# How many times each kernel was launched in this process. Tests read it to make sure the
# kernels ran, and not the eager fallback.
launches = Counter()


# ## Forward: per-channel statistics
#
# Each program owns `BLOCK_C` channels and a range of tiles along the reduced dimensions
# (examples, `b`, and positions, `s`). It walks its tiles, and for each tile computes the
# tile's mean and $M_2$ of $\delta_i = x_i - K$ in registers, then merges them into its running
# $(n, \bar\delta, M_2)$ with Chan's update. It writes one partial result per channel.
def _channel_stats_kernel(x_ptr, part_ptr, C, S, n_s_tiles, n_tiles, tiles_per_program,
                          n_splits, stride_b, stride_c, stride_s,
                          BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BLOCK_C]
    split = tl.program_id(1)
    c_ok = c < C
    # $K$: the first value of each channel, a cheap shift (exact subtraction under
    # Sterbenz's condition, see the numerics above)
    shift = tl.load(x_ptr + c * stride_c, mask=c_ok, other=0.).to(tl.float32)  # [BLOCK_C]
    n = tl.zeros([BLOCK_C], dtype=tl.float32)
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    first = split * tiles_per_program
    last = tl.minimum(first + tiles_per_program, n_tiles)
    for t in range(first, last):
        b = (t // n_s_tiles).to(tl.int64)
        s = (t % n_s_tiles) * BLOCK_S + tl.arange(0, BLOCK_S)  # [BLOCK_S]
        s_ok = s < S
        mask = c_ok[:, None] & s_ok[None, :]  # [BLOCK_C, BLOCK_S]
        x = tl.load(x_ptr + b * stride_b + c[:, None] * stride_c + s[None, :] * stride_s,
                    mask=mask, other=0.).to(tl.float32)
        # $\delta_i = x_i - K$
        d = tl.where(mask, x - shift[:, None], 0.)
        # The tile's count, mean $\bar\delta_t$ and $M_2 = \sum_i (\delta_i - \bar\delta_t)^2$
        n_t = tl.sum(s_ok.to(tl.float32), axis=0)
        mean_t = tl.sum(d, axis=1) / n_t  # [BLOCK_C]
        dev = tl.where(mask, d - mean_t[:, None], 0.)
        m2_t = tl.sum(dev * dev, axis=1)
        # Chan's merge of $(n, \bar\delta, M_2)$ with the tile's
        n_new = n + n_t
        delta = mean_t - mean
        mean = mean + delta * (n_t / n_new)
        m2 = m2 + m2_t + delta * delta * (n * n_t / n_new)
        n = n_new
    # Partials are laid out as three [splits, C] planes: count, mean, $M_2$
    out = part_ptr + split * C + c
    tl.store(out, n, mask=c_ok)
    tl.store(out + n_splits * C, mean, mask=c_ok)
    tl.store(out + 2 * n_splits * C, m2, mask=c_ok)


# ### Combining the partial statistics
#
# One program per `BLOCK_C` channels loads all partials of its channels at once and combines
# them with the many-part form of the same update,
# over the partial results $j$ of the programs,
# $$\begin{aligned}
#   \bar\delta &= \frac{\sum_j n_j \bar\delta_j}{n} \qquad
#   \sigma^2_\mathcal{B} = \frac{M_2}{n} \\
#   M_2 &= \sum_j M_{2,j} + \sum_j n_j (\bar\delta_j - \bar\delta)^2
# \end{aligned}$$
# It writes what the apply kernel and the backward pass need: the shift $K$, the residual
# $\bar\delta$, $\frac{1}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$ and the scale
# $\tilde\gamma = \frac{\gamma}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}$; and, for the running
# averages, $\mu_\mathcal{B} = K + \bar\delta$ and $\sigma^2_\mathcal{B}$.
def _combine_stats_kernel(x_ptr, part_ptr, w_ptr, shift_ptr, res_ptr, inv_std_ptr, scale_ptr,
                          mean_ptr, var_ptr, run_mean_ptr, run_var_ptr, count_ptr,
                          C, n_splits, stride_c, eps, momentum, unbias,
                          HAS_WEIGHT: tl.constexpr, HAS_RUNNING: tl.constexpr,
                          BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BLOCK_C]
    k = tl.arange(0, BLOCK_K)  # [BLOCK_K]
    c_ok = c < C
    mask = (k[:, None] < n_splits) & c_ok[None, :]  # [BLOCK_K, BLOCK_C]
    at = part_ptr + k[:, None] * C + c[None, :]
    n_k = tl.load(at, mask=mask, other=0.)
    mean_k = tl.load(at + n_splits * C, mask=mask, other=0.)
    m2_k = tl.load(at + 2 * n_splits * C, mask=mask, other=0.)
    # (channels past $C$ get a count of one, only so that nothing divides by zero)
    n = tl.where(c_ok, tl.sum(n_k, axis=0), 1.)  # [BLOCK_C]
    # $\bar\delta$, the mean of $\delta$
    res = tl.sum(n_k * mean_k, axis=0) / n
    dev = tl.where(mask, mean_k - res[None, :], 0.)
    var = (tl.sum(m2_k, axis=0) + tl.sum(n_k * dev * dev, axis=0)) / n
    inv_std = 1. / tl.sqrt(var + eps)
    scale = inv_std
    if HAS_WEIGHT:
        scale = inv_std * tl.load(w_ptr + c, mask=c_ok, other=1.).to(tl.float32)
    shift = tl.load(x_ptr + c * stride_c, mask=c_ok, other=0.).to(tl.float32)
    tl.store(shift_ptr + c, shift, mask=c_ok)
    tl.store(res_ptr + c, res, mask=c_ok)
    tl.store(inv_std_ptr + c, inv_std, mask=c_ok)
    tl.store(scale_ptr + c, scale, mask=c_ok)
    tl.store(mean_ptr + c, shift + res, mask=c_ok)
    tl.store(var_ptr + c, var, mask=c_ok)
    # The running averages of the module (see `BatchNorm._update_running_stats`), updated here
    # rather than by four more small launches: $\mathbb{E}[x] \leftarrow \mathbb{E}[x] +
    # \alpha (\mu_\mathcal{B} - \mathbb{E}[x])$, the same for $\frac{m}{m-1}\sigma^2_\mathcal{B}$,
    # and the batch counter
    if HAS_RUNNING:
        run_mean = tl.load(run_mean_ptr + c, mask=c_ok, other=0.)
        run_var = tl.load(run_var_ptr + c, mask=c_ok, other=0.)
        tl.store(run_mean_ptr + c, run_mean + momentum * ((shift + res) - run_mean), mask=c_ok)
        tl.store(run_var_ptr + c, run_var + momentum * (var * unbias - run_var), mask=c_ok)
        if tl.program_id(0) == 0:
            tl.store(count_ptr, tl.load(count_ptr) + 1)


# ## Forward: normalise, scale and shift
#
# $$y_i = \big((x_i - K) - \bar\delta\big) \cdot \tilde\gamma + \beta$$
# one read of $x$ and one write of $y$. Evaluation uses the same kernel with the running
# mean $\mathbb{E}[x]$ as $K$, no $\bar\delta$, and the scale
# $\tilde\gamma = \frac{\gamma}{\sqrt{\mathrm{Var}[x] + \epsilon}}$
# computed by each program from the running variance (`FROM_VAR`), so that evaluation is a
# single launch.
def _apply_kernel(x_ptr, y_ptr, shift_ptr, res_ptr, scale_ptr, w_ptr, b_ptr, C, S, n_s_tiles,
                  n_tiles, tiles_per_program, stride_b, stride_c, stride_s, eps,
                  HAS_RES: tl.constexpr, FROM_VAR: tl.constexpr, HAS_WEIGHT: tl.constexpr,
                  HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BLOCK_C]
    c_ok = c < C
    shift = tl.load(shift_ptr + c, mask=c_ok, other=0.).to(tl.float32)
    scale = tl.load(scale_ptr + c, mask=c_ok, other=0.).to(tl.float32)
    if FROM_VAR:
        scale = 1. / tl.sqrt(scale + eps)
        if HAS_WEIGHT:
            scale = scale * tl.load(w_ptr + c, mask=c_ok, other=1.).to(tl.float32)
    res = tl.zeros([BLOCK_C], dtype=tl.float32)
    if HAS_RES:
        res = tl.load(res_ptr + c, mask=c_ok, other=0.)
    beta = tl.zeros([BLOCK_C], dtype=tl.float32)
    if HAS_BIAS:
        beta = tl.load(b_ptr + c, mask=c_ok, other=0.).to(tl.float32)
    first = tl.program_id(1) * tiles_per_program
    last = tl.minimum(first + tiles_per_program, n_tiles)
    for t in range(first, last):
        b = (t // n_s_tiles).to(tl.int64)
        s = (t % n_s_tiles) * BLOCK_S + tl.arange(0, BLOCK_S)  # [BLOCK_S]
        mask = c_ok[:, None] & (s[None, :] < S)  # [BLOCK_C, BLOCK_S]
        offset = b * stride_b + c[:, None] * stride_c + s[None, :] * stride_s
        x = tl.load(x_ptr + offset, mask=mask, other=0.).to(tl.float32)
        y = ((x - shift[:, None]) - res[:, None]) * scale[:, None] + beta[:, None]
        tl.store(y_ptr + offset, y.to(y_ptr.dtype.element_ty), mask=mask)


# ## Backward: the two per-channel sums
#
# The collapsed form of the paper's three-path gradient (derived on the
# [`BatchNorm`](batch_norm.md#normalisation-with-the-papers-back-propagation) page) is
# $$\begin{aligned}
#   \frac{\partial \ell}{\partial x_i} = \tilde\gamma
#   \Big(&\frac{\partial \ell}{\partial y_i} - \frac{1}{m}\sum_j \frac{\partial \ell}{\partial y_j} \\
#   &- \hat{x}_i \frac{1}{m}\sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j\Big)
# \end{aligned}$$
# with $\tilde\gamma = \gamma / \sqrt{\sigma^2_\mathcal{B} + \epsilon}$: it needs two sums
# per channel, which are also
# $\frac{\partial \ell}{\partial \beta} = \sum_j \frac{\partial \ell}{\partial y_j}$ and
# $\frac{\partial \ell}{\partial \gamma} = \sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j$.
# This kernel computes partial sums of $\frac{\partial \ell}{\partial y_j}$ and of
# $\frac{\partial \ell}{\partial y_j} (\delta_j - \bar\delta)$ over each program's tiles;
# $\hat{x}_j = (\delta_j - \bar\delta) / \sqrt{\sigma^2_\mathcal{B} + \epsilon}$ is
# rebuilt from $x$, never stored.
def _grad_sums_kernel(x_ptr, g_ptr, shift_ptr, res_ptr, part_ptr, C, S, n_s_tiles, n_tiles,
                      tiles_per_program, n_splits, stride_b, stride_c, stride_s,
                      BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BLOCK_C]
    split = tl.program_id(1)
    c_ok = c < C
    shift = tl.load(shift_ptr + c, mask=c_ok, other=0.)
    res = tl.load(res_ptr + c, mask=c_ok, other=0.)
    sum_g = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_gc = tl.zeros([BLOCK_C], dtype=tl.float32)
    first = split * tiles_per_program
    last = tl.minimum(first + tiles_per_program, n_tiles)
    for t in range(first, last):
        b = (t // n_s_tiles).to(tl.int64)
        s = (t % n_s_tiles) * BLOCK_S + tl.arange(0, BLOCK_S)  # [BLOCK_S]
        mask = c_ok[:, None] & (s[None, :] < S)  # [BLOCK_C, BLOCK_S]
        offset = b * stride_b + c[:, None] * stride_c + s[None, :] * stride_s
        x = tl.load(x_ptr + offset, mask=mask, other=0.).to(tl.float32)
        g = tl.load(g_ptr + offset, mask=mask, other=0.).to(tl.float32)
        # $x_i - \mu_\mathcal{B} = (x_i - K) - \bar\delta$
        centred = tl.where(mask, (x - shift[:, None]) - res[:, None], 0.)
        sum_g += tl.sum(g, axis=1)
        sum_gc += tl.sum(g * centred, axis=1)
    out = part_ptr + split * C + c
    tl.store(out, sum_g, mask=c_ok)
    tl.store(out + n_splits * C, sum_gc, mask=c_ok)


# ### Combining the sums
#
# Adds the partials, writes $\frac{\partial \ell}{\partial \gamma}$ and
# $\frac{\partial \ell}{\partial \beta}$, and folds everything the input gradient needs into two
# numbers per channel besides the scale $\tilde\gamma$, the bracketed factors below (`k1` and
# `k2` in the code):
# $$\begin{aligned}
#   \frac{\partial \ell}{\partial x_i} = \tilde\gamma \frac{\partial \ell}{\partial y_i}
#   &- \Big[\frac{\tilde\gamma}{m} \sum_j \frac{\partial \ell}{\partial y_j}\Big] \\
#   &- \Big[\frac{\tilde\gamma}{m\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
#     \sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j\Big] \big((x_i - K) - \bar\delta\big)
# \end{aligned}$$
def _combine_grad_kernel(part_ptr, inv_std_ptr, scale_ptr, dw_ptr, db_ptr, k1_ptr, k2_ptr,
                         C, n_splits, m,
                         BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BLOCK_C]
    k = tl.arange(0, BLOCK_K)  # [BLOCK_K]
    c_ok = c < C
    mask = (k[:, None] < n_splits) & c_ok[None, :]  # [BLOCK_K, BLOCK_C]
    at = part_ptr + k[:, None] * C + c[None, :]
    sum_g = tl.sum(tl.load(at, mask=mask, other=0.), axis=0)  # [BLOCK_C]
    sum_gc = tl.sum(tl.load(at + n_splits * C, mask=mask, other=0.), axis=0)
    inv_std = tl.load(inv_std_ptr + c, mask=c_ok, other=0.)
    scale = tl.load(scale_ptr + c, mask=c_ok, other=0.)
    # $\sum_j \frac{\partial \ell}{\partial y_j} \hat{x}_j$
    sum_gx = sum_gc * inv_std
    tl.store(dw_ptr + c, sum_gx.to(dw_ptr.dtype.element_ty), mask=c_ok)
    tl.store(db_ptr + c, sum_g.to(db_ptr.dtype.element_ty), mask=c_ok)
    tl.store(k1_ptr + c, scale * sum_g / m, mask=c_ok)
    tl.store(k2_ptr + c, scale * inv_std * sum_gx / m, mask=c_ok)


# ## Backward: the input gradient
#
# One more read of $x$ and $\frac{\partial \ell}{\partial y}$, one write of
# $\frac{\partial \ell}{\partial x}$.
def _grad_input_kernel(x_ptr, g_ptr, dx_ptr, shift_ptr, res_ptr, scale_ptr, k1_ptr, k2_ptr,
                       C, S, n_s_tiles, n_tiles, tiles_per_program, stride_b, stride_c, stride_s,
                       BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BLOCK_C]
    c_ok = c < C
    shift = tl.load(shift_ptr + c, mask=c_ok, other=0.)
    res = tl.load(res_ptr + c, mask=c_ok, other=0.)
    scale = tl.load(scale_ptr + c, mask=c_ok, other=0.)
    k1 = tl.load(k1_ptr + c, mask=c_ok, other=0.)
    k2 = tl.load(k2_ptr + c, mask=c_ok, other=0.)
    first = tl.program_id(1) * tiles_per_program
    last = tl.minimum(first + tiles_per_program, n_tiles)
    for t in range(first, last):
        b = (t // n_s_tiles).to(tl.int64)
        s = (t % n_s_tiles) * BLOCK_S + tl.arange(0, BLOCK_S)  # [BLOCK_S]
        mask = c_ok[:, None] & (s[None, :] < S)  # [BLOCK_C, BLOCK_S]
        offset = b * stride_b + c[:, None] * stride_c + s[None, :] * stride_s
        x = tl.load(x_ptr + offset, mask=mask, other=0.).to(tl.float32)
        g = tl.load(g_ptr + offset, mask=mask, other=0.).to(tl.float32)
        centred = (x - shift[:, None]) - res[:, None]
        dx = scale[:, None] * g - k1[:, None] - k2[:, None] * centred
        tl.store(dx_ptr + offset, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# ## Launching the kernels
#
# How an input is seen by the kernels: whether it must be copied to channels first (unusual
# strides), its `[N, C, S]` sizes and strides, the tile shape and the grid. Worked out once for
# each shape, strides and dtype (see `_layout`): on a GPU, a small batch norm is over in a few
# microseconds, and the Python that launches it is what takes the time.
class _Layout:
    def __init__(self, x: torch.Tensor, tile: int = None, programs: int = None,
                 warps: int = None, device: torch.device = None):
        batch, channels = x.shape[0], x.shape[1]
        positions = x.numel() // (batch * channels)
        contiguous = x.is_contiguous()
        channels_last = x.dim() > 2 and x.movedim(1, -1).is_contiguous()
        device = device or x.device
        tile = tile or _tile_elements(device, x.element_size())
        if positions == 1 or (channels_last and not contiguous):
            # Rows of C contiguous channels: [N, C, S] is read as [1, C, N * S]
            self.copy = not channels_last and not contiguous
            self.batch, self.positions = 1, batch * positions
            self.strides = (0, 1, channels)
            self.block_c = min(triton.next_power_of_2(channels), 64)
            self.block_s = min(triton.next_power_of_2(self.positions), max(1, tile // self.block_c))
        else:
            # Channels first: runs of $S$ contiguous positions
            self.copy = not contiguous
            self.batch, self.positions = batch, positions
            self.strides = (channels * positions, positions, 1)
            self.block_s = min(triton.next_power_of_2(positions), tile)
            self.block_c = min(triton.next_power_of_2(channels), max(1, tile // self.block_s))
        self.channels = channels
        self.s_tiles = triton.cdiv(self.positions, self.block_s)
        self.tiles = self.batch * self.s_tiles
        self.c_blocks = triton.cdiv(channels, self.block_c)
        # Enough programs to keep every multiprocessor busy, each with a contiguous run of tiles
        wanted = triton.cdiv(programs or _programs(device), self.c_blocks)
        self.splits = max(1, min(self.tiles, 1024, wanted))
        self.tiles_per_program = triton.cdiv(self.tiles, self.splits)
        self.splits = triton.cdiv(self.tiles, self.tiles_per_program)
        self.grid = (self.c_blocks, self.splits)
        self.warps = warps or 4
        # A reduction's combining kernel loads all partials of `combine_c` channels at once
        self.block_k = triton.next_power_of_2(self.splits)
        self.combine_c = max(1, min(triton.next_power_of_2(channels), 4096 // self.block_k))
        self.combine_grid = (triton.cdiv(channels, self.combine_c),)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The tensor the kernels read: `x`, or a channels-first copy of it."""
        return x.contiguous() if self.copy else x

    def tiling(self):
        """The arguments every streaming kernel takes, in order."""
        return (self.channels, self.positions, self.s_tiles, self.tiles, self.tiles_per_program)

    def streaming(self):
        """The tile shape and warps of every streaming kernel."""
        return dict(BLOCK_C=self.block_c, BLOCK_S=self.block_s, num_warps=self.warps)


# The layout of `x`, kept for each shape, strides, dtype and device, up to 256 of them; `tuning`
# (`tile`, `programs`, `warps`) overrides the choices, for `benchmarks/fast_tiles.py`.
_LAYOUTS = {}


def _layout(x: torch.Tensor, tuning: dict = None) -> _Layout:
    if tuning:
        return _Layout(x, **tuning)
    key = (tuple(x.shape), x.stride(), x.dtype, x.device)
    if key not in _LAYOUTS:
        if len(_LAYOUTS) >= 256:
            _LAYOUTS.clear()
        _LAYOUTS[key] = _Layout(x)
    return _LAYOUTS[key]


# Values per tile: 16 KiB of input on a GPU (4,096 `float32` or 8,192 `bfloat16` values), read
# by 4 warps with 4 programs per multiprocessor, the best of the choices `fast_tiles.py` measured
# on an H200 over four of the benchmark's inputs; small tiles under the interpreter, so that the
# tests' tiny inputs still span several tiles.
def _tile_elements(device: torch.device, element_size: int) -> int:
    return 16384 // element_size if device.type == 'cuda' else 32


# How many programs a streaming kernel is split into: a few per multiprocessor on a GPU, and a
# few in all under the interpreter, enough that the tests exercise the merging of partials.
def _programs(device: torch.device) -> int:
    if device.type == 'cuda':
        return 4 * _multiprocessors(device.index if device.index is not None
                                    else torch.cuda.current_device())
    return 6


@lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _launch(kernel, grid, *args, **constants):
    launches[kernel.__name__] += 1
    _compiled(kernel)[grid](*args, **constants)


def batch_norm_forward(x: torch.Tensor, weight, bias, eps: float, running=None, **tuning):
    """
    The training forward pass on the kernels: returns $y$ (same shape, dtype and layout as `x`),
    the per-channel values backward needs, and $\\mu_\\mathcal{B}$, $\\sigma^2_\\mathcal{B}$.
    `running`, `(running_mean, running_var, num_batches_tracked, momentum)` with `float32`
    buffers, are updated in place. `tuning` (`tile`, `programs`, `warps`) overrides
    `_Layout`'s choices.
    """
    layout = _layout(x, tuning)
    x = layout.prepare(x)
    c = layout.channels
    # One allocation for the partial statistics, [3, splits, C], and the six
    # per-channel results
    scratch = torch.empty((3 * layout.splits + 6) * c, device=x.device, dtype=torch.float32)
    partials = scratch[:3 * layout.splits * c]
    shift, res, inv_std, scale, mean, var = scratch[3 * layout.splits * c:].view(6, c).unbind(0)
    _launch(_channel_stats_kernel, layout.grid, x, partials, *layout.tiling(),
            layout.splits, *layout.strides, **layout.streaming())
    run_mean, run_var, count, momentum = running or (scale, scale, scale, 0.)
    m = x.numel() // c
    _launch(_combine_stats_kernel, layout.combine_grid, x, partials,
            weight if weight is not None else scale, shift, res, inv_std, scale, mean, var,
            run_mean, run_var, count, c, layout.splits, layout.strides[1], eps,
            float(momentum), m / max(m - 1, 1), HAS_WEIGHT=weight is not None,
            HAS_RUNNING=running is not None, BLOCK_K=layout.block_k, BLOCK_C=layout.combine_c)
    y = torch.empty_like(x)
    _launch(_apply_kernel, layout.grid, x, y, shift, res, scale, scale,
            bias if bias is not None else scale, *layout.tiling(), *layout.strides, eps,
            HAS_RES=True, FROM_VAR=False, HAS_WEIGHT=False, HAS_BIAS=bias is not None,
            **layout.streaming())
    return y, (x, shift, res, inv_std, scale), mean, var


def batch_norm_backward(grad_y: torch.Tensor, x: torch.Tensor, shift, res, inv_std, scale,
                        weight_dtype, bias_dtype, **tuning):
    """
    The backward pass on the kernels: returns $\\frac{\\partial \\ell}{\\partial x}$ (in the
    layout of `x`), $\\frac{\\partial \\ell}{\\partial \\gamma}$ and
    $\\frac{\\partial \\ell}{\\partial \\beta}$.
    """
    layout = _layout(x, tuning)
    # The gradient with exactly the strides of the input the kernels read
    g = grad_y if grad_y.stride() == x.stride() else torch.empty_like(x).copy_(grad_y)
    c = layout.channels
    m = x.numel() // c
    scratch = torch.empty((2 * layout.splits + 2) * c, device=x.device, dtype=torch.float32)
    partials = scratch[:2 * layout.splits * c]
    k1, k2 = scratch[2 * layout.splits * c:].view(2, c).unbind(0)
    _launch(_grad_sums_kernel, layout.grid, x, g, shift, res, partials, *layout.tiling(),
            layout.splits, *layout.strides, **layout.streaming())
    grad_weight = torch.empty(c, device=x.device, dtype=weight_dtype or torch.float32)
    grad_bias = torch.empty(c, device=x.device, dtype=bias_dtype or torch.float32)
    _launch(_combine_grad_kernel, layout.combine_grid, partials, inv_std, scale, grad_weight,
            grad_bias, k1, k2, c, layout.splits, float(m),
            BLOCK_K=layout.block_k, BLOCK_C=layout.combine_c)
    grad_x = torch.empty_like(x)
    _launch(_grad_input_kernel, layout.grid, x, g, grad_x, shift, res, scale, k1, k2,
            *layout.tiling(), *layout.strides, **layout.streaming())
    return grad_x, grad_weight, grad_bias


def affine_forward(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, weight, bias,
                   eps: float):
    """$y = (x - \\mathbb{E}[x]) \\frac{\\gamma}{\\sqrt{\\mathrm{Var}[x] + \\epsilon}} + \\beta$
    in one pass, for evaluation."""
    layout = _layout(x)
    x = layout.prepare(x)
    y = torch.empty_like(x)
    _launch(_apply_kernel, layout.grid, x, y, mean, mean, var,
            weight if weight is not None else var, bias if bias is not None else var,
            *layout.tiling(), *layout.strides, eps,
            HAS_RES=False, FROM_VAR=True, HAS_WEIGHT=weight is not None,
            HAS_BIAS=bias is not None, **layout.streaming())
    return y


# ## The autograd function
class FastBatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight, bias, eps: float, running=None):
        y, saved, mean, var = batch_norm_forward(x, weight, bias, eps, running)
        ctx.save_for_backward(*saved)
        ctx.weight_dtype = None if weight is None else weight.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.mark_non_differentiable(mean, var)
        # No zero tensors for the gradients of $\mu_\mathcal{B}$ and
        # $\sigma^2_\mathcal{B}$, which nothing differentiates: `None` instead
        ctx.set_materialize_grads(False)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor, _grad_mean, _grad_var):
        # The kernels compute first derivatives only. A second derivative would need the
        # backward pass itself to be differentiable, which the eager `BatchNorm` provides.
        if torch.is_grad_enabled():
            raise RuntimeError("FastBatchNorm does not support double backward "
                               "(create_graph=True); use labml_nn_bn.BatchNorm for higher-order "
                               "gradients")
        if grad_y is None:
            return None, None, None, None, None
        # A batch of gradients (`torch.autograd.grad(..., is_grads_batched=True)`) comes
        # batched by torch's older `vmap`, whose values a kernel cannot read: the same
        # formulas in plain operations, which `vmap` batches
        backward = _backward_in_plain_operations if _functional(grad_y) else \
            batch_norm_backward
        grad_x, grad_weight, grad_bias = backward(
            grad_y, *ctx.saved_tensors, ctx.weight_dtype, ctx.bias_dtype)
        return (grad_x,
                grad_weight if ctx.needs_input_grad[1] else None,
                grad_bias if ctx.needs_input_grad[2] else None,
                None, None)


# The backward kernels' formulas, on a `[N, C, *]` `grad_y`, in `float32`
def _backward_in_plain_operations(grad_y: torch.Tensor, x: torch.Tensor, shift, res,
                                  inv_std, scale, weight_dtype, bias_dtype):
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    dims = [0] + list(range(2, x.dim()))
    m = max(x.numel() // x.shape[1], 1)
    # $\hat{x}_i$, from $K$, $\bar\delta$ and $1 / \sqrt{\sigma^2_\mathcal{B} + \epsilon}$
    x_hat = (x.float() - shift.view(shape) - res.view(shape)) * inv_std.view(shape)
    g = grad_y.float()
    sum_g = g.sum(dims)
    sum_g_x_hat = (g * x_hat).sum(dims)
    grad_x = scale.view(shape) * (g - sum_g.view(shape) / m -
                                  x_hat * sum_g_x_hat.view(shape) / m)
    return (grad_x.to(x.dtype), sum_g_x_hat.to(weight_dtype or torch.float32),
            sum_g.to(bias_dtype or torch.float32))


# ## Batch Normalization layer on the kernels
class FastBatchNorm(BatchNorm):
    r"""
    [`BatchNorm`](batch_norm.md#batch-normalization-layer) with the same constructor,
    parameters, buffers and `state_dict`, computed by the kernels above for `float32`,
    `bfloat16` and `float16` inputs on a CUDA device (or on CPU tensors under
    `TRITON_INTERPRET=1`). Everywhere else, for instance on CPU or without Triton, and for
    `float64`, it is `BatchNorm`.

    * Evaluation with population statistics is one launch of the apply kernel, unless a
      gradient is wanted (fine-tuning with frozen statistics), which the eager module provides.
    * In training, the running averages are updated by the statistics kernel's combining step
      when they are `float32` buffers and `momentum` is a number; otherwise as in `BatchNorm`.
    * Double backward (`create_graph=True`) through the kernels is refused with a
      `RuntimeError`; use `BatchNorm` for higher-order gradients.
    * Under `torch.func` transforms (`grad`, `vmap`, `jvp`, ...) and forward-mode AD it is
      `BatchNorm`.
    """

    def forward(self, x: torch.Tensor):
        # The kernels have no rule for `torch.func`'s transforms or forward-mode AD; the
        # eager module has (see `_functional`)
        if not kernels_apply(x) or _functional():
            return super().forward(x)
        self._check_input(x)
        # $m$, the number of values per channel
        m = x.numel() // x.shape[1]
        if not (self.training or self.running_mean is None or self.running_var is None):
            # Evaluation on the kernel is a plain function, without a backward pass; when a
            # gradient is wanted through an evaluation-mode layer, the eager module provides it.
            if torch.is_grad_enabled() and (
                    x.requires_grad or any(p.requires_grad for p in self.parameters())):
                return super().forward(x)
            return affine_forward(x, self.running_mean, self.running_var, self.weight,
                                  self.bias, self.eps)
        # The same guards as `BatchNorm`: an empty batch, and a single value per channel
        if m == 0 or (self.training and m == 1):
            return super().forward(x)
        track = self.training and self.track_running_stats
        running = self._running_in_kernel(x) if track else None
        y, mean, var = FastBatchNormFunction.apply(x, self.weight, self.bias, self.eps, running)
        if track and running is None:
            self._update_running_stats(mean, var, m)
        return y

    # The running averages and the counter, for the kernel to update, where it can: `float32`
    # buffers on the input's device and a fixed `momentum` (with `momentum=None` the weight of
    # a batch depends on the counter, which `_update_running_stats` reads)
    def _running_in_kernel(self, x: torch.Tensor):
        buffers = (self.running_mean, self.running_var, self.num_batches_tracked)
        if self.momentum is None or any(b is None or b.device != x.device for b in buffers):
            return None
        if self.running_mean.dtype != torch.float32 or self.running_var.dtype != torch.float32:
            return None
        return buffers + (self.momentum,)


# ## Compatibility
#
# Whether the kernels can run on `x`: Triton is installed and either `x` is on a CUDA device or
# Triton's interpreter is on and `x` is on the CPU; the dtype is one the kernels accumulate in
# `float32` without losing precision (`float64` stays with the eager module).
def kernels_apply(x: torch.Tensor) -> bool:
    if triton is None or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return False
    if x.dim() < 2 or x.numel() == 0:
        return False
    if x.device.type == 'cuda':
        return True
    return x.device.type == 'cpu' and _interpreting()


def _interpreting() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0').lower() in ('1', 'true', 'on', 'yes')


# Kernels are compiled when first used, not when this module is imported, so that whether they
# run on the GPU or in Triton's interpreter is decided by `TRITON_INTERPRET` at that time.
_cache = {}


def _compiled(kernel):
    key = (kernel.__name__, _interpreting())
    if key not in _cache:
        _cache[key] = triton.jit(kernel)
    return _cache[key]
