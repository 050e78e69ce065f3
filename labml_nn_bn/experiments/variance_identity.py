r"""
---
title: E[x²] − E[x]² in floating point
summary: >
  How accurately five ways of computing the batch variance normalise an input whose mean is
  far larger than its spread, in float32, bfloat16 and float16, against a float64 reference.
---

# $\mathbb{E}[x^2] - \mathbb{E}[x]^2$ in floating point

*This page is our addition: the paper does not discuss how to compute the variance.
Symbols as in [the notation table](../../notation.md); here $\mu$ and $\sigma$ without a
subscript are the mean and standard deviation of the distribution the input is drawn from.*

Algorithm 1 of the paper needs the mini-batch variance
$\sigma^2_\mathcal{B} = \frac{1}{m}\sum_i (x_i - \mu_\mathcal{B})^2$.
The identity $\mathrm{Var}[x] = \mathbb{E}[x^2] - \mathbb{E}[x]^2$ gives the same number in one
pass over the data, and it is exact in real arithmetic. The paper writes the same one-pass
form once, for the covariance a full whitening would need,
$\mathrm{Cov}[x] = \mathbb{E}[xx^T] - \mathbb{E}[x]\,\mathbb{E}[x]^T$ (Section 2), as a
definition rather than a way to compute it. In floating point it subtracts two
large, nearly equal numbers. When the mean is $10^3$ standard deviations away from zero,
$\mathbb{E}[x^2] \approx 10^6\,\sigma^2$, and a `float32` number near $10^6$ is only known to
about $0.06$, already 6% of the true variance $\sigma^2 = 1$. Summing thousands of values adds
more error, and from about $3 \times 10^3$ on the difference can come out negative.

We measure this directly. The input is $\mathcal{N}(\mu, 1)$ of shape $[64, 16, 8, 8]$ (the
statistics of each of the 16 channels are over $m = 4{,}096$ values), so the *offset*
$|\mu| / \sigma$ is $\mu$, from $1$ to $10^6$. It is stored in `float32`, `bfloat16` or
`float16`, and normalised by

* `identity`: $\mathbb{E}[x^2] - \mathbb{E}[x]^2$, written plainly in the input's dtype;
* `two_pass`: the mean first, then $\frac{1}{m}\sum_i (x_i - \mu_\mathcal{B})^2$, in the
  input's dtype;
* `shifted`: our [`BatchNorm`](../batch_norm.md), which computes in at least `float32` and
  keeps the mean in two parts (a shift and the residual around it);
* `torch_var_mean`: `torch.var_mean`, then the same normalisation in the input's dtype;
* `torch_batch_norm`: `torch.nn.BatchNorm2d` in training mode.

Each output is compared with the same normalisation computed in `float64` from the *same*
stored input: we measure the error the method adds, not the rounding of the input. The error is
$\lVert y - y_{64} \rVert / \lVert y_{64} \rVert$ over the whole tensor. An output in a
16-bit dtype cannot be closer to $y_{64}$ than its own rounding, so the figure also shows that
floor: $y_{64}$ rounded to the dtype.

![Relative error of the normalised output against the offset |mean|/std](../../figures/variance_identity.svg)

What the figure shows (torch 2.13 on CPU):

* In `float32` the identity's error grows with the square of the offset: at $10^3$ it is <!-- measured variance_identity:float32.identity.1e3 .1e -->1.2e-01<!-- /measured -->,
  and from about $3 \times 10^3$ on the "variance" of some channels comes out negative and the
  output is `NaN`. At $10^6$ it is positive again but far too large, which squashes the output
  towards zero (error <!-- measured variance_identity:float32.identity.1e6 .1e -->1.0e+00<!-- /measured -->).
  The two-pass form grows about linearly with the offset up to $10^5$, because all that goes
  wrong is the rounding of the mean: <!-- measured variance_identity:float32.two_pass.1e3 .1e -->1.0e-04<!-- /measured --> at $10^3$,
  <!-- measured variance_identity:float32.two_pass.1e5 .1e -->1.1e-02<!-- /measured --> at $10^5$. Beyond that it grows faster and unevenly,
  <!-- measured variance_identity:float32.two_pass.316228 .1e -->1.2e-01<!-- /measured --> at $3.2 \times 10^5$ and
  <!-- measured variance_identity:float32.two_pass.562341 .1e -->1.7e-01<!-- /measured --> at $5.6 \times 10^5$, then
  <!-- measured variance_identity:float32.two_pass.1e6 .1e -->2.1e-02<!-- /measured --> at $10^6$, a favourable point (our reading: how much the sums
  round depends on where the offset falls on the `float32` grid, and $10^6$ falls well).
  `torch.var_mean` and `torch.nn.BatchNorm2d` grow the same way, a few times below the
  two-pass form, and meet it at $10^6$ (<!-- measured variance_identity:float32.torch_batch_norm.1e6 .1e -->2.2e-02<!-- /measured --> for `BatchNorm2d` at $10^6$). The shifted form stays
  between <!-- measured variance_identity:float32.shifted.316228 .1e -->5.5e-08<!-- /measured --> and <!-- measured variance_identity:float32.shifted.316 .1e -->2.6e-07<!-- /measured --> over the whole range:
  2 to 10 times the error of rounding the exact output to `float32`
  (<!-- measured variance_identity:float32.floor.1e0 .1e -->2.5e-08<!-- /measured -->), and far below every other method at large offsets.
* `bfloat16` keeps 8 significant bits. Written in `bfloat16`, the identity is already wrong by
  orders of magnitude at an offset of about 18 (error <!-- measured variance_identity:bfloat16.identity.18 .1e -->1.8e+02<!-- /measured -->), and its
  variance first comes out negative (`NaN`) at about 30. Above that it is negative at some
  offsets and positive but far too small at others, which blows the output up (error
  <!-- measured variance_identity:bfloat16.identity.1e2 .1e -->3.2e+02<!-- /measured --> at $10^2$, <!-- measured variance_identity:bfloat16.identity.3162 .1e -->5.4e+02<!-- /measured --> at 3,162). From about
  $4 \times 10^3$ on, every stored value of a channel is the same number, so there is nothing
  left to normalise and no error to measure (the grey region); just before that, a channel has
  only a handful of distinct values.
* In `float16` the identity's variance turns negative at an offset of $10^2$, and from about
  $256$ on $x^2$ overflows (the largest `float16` is 65,504, and $256^2 = 65{,}536$), so the
  output is `NaN`. The input itself overflows from $65{,}504$ on.
* With a 16-bit input, the two-pass form and `torch.var_mean` return the mean in the input's
  dtype. In `float16`, `torch.var_mean` is off by <!-- measured variance_identity:float16.torch_var_mean.1e3 .1e -->2.2e-02<!-- /measured --> at $10^3$,
  but $10^3$ is a lucky point: it lies on the `float16` grid, so the mean, which is within a
  few hundredths of it, rounds to almost its exact value. Its neighbours are worse:
  <!-- measured variance_identity:float16.torch_var_mean.562 .1e -->1.6e-01<!-- /measured --> at 562 and <!-- measured variance_identity:float16.torch_var_mean.1778 .1e -->2.7e-01<!-- /measured --> at 1,778.
  Our `BatchNorm` computes the statistics in `float32`; it and `torch.nn.BatchNorm2d` stay at
  the floor of the 16-bit dtypes (except `BatchNorm2d` on the nearly constant `float16`
  channels at $10^4$, <!-- measured variance_identity:float16.torch_batch_norm.1e4 .1e -->3.1e-02<!-- /measured --> against a floor of
  <!-- measured variance_identity:float16.floor.1e4 .1e -->8.3e-05<!-- /measured -->).

The shifted form, which our `BatchNorm` uses, is at the floor of `bfloat16` and `float16` and
2 to 10 times the floor of `float32` over the whole range. Large offsets do occur in
practice, for instance with un-normalised inputs such as time stamps or coordinates far from
the origin, or with the activations of a badly scaled layer.

Run it with

```bash
python -m labml_nn_bn.experiments.variance_identity
```

which prints the table, records it as a labml run under `logs/`, and with `--out DIR` writes the
figure and `variance_identity.json` there.
"""

import json
import math
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from labml_nn_bn import BatchNorm

# The input: 64 examples, 16 channels, 8×8 positions; statistics over all but the channels
SHAPE = (64, 16, 8, 8)
DIMS = (0, 2, 3)
EPS = 1e-5
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
# The offsets |mean|/std quoted in the JSON, one per decade
DECADES = [f'1e{k}' for k in range(7)]


# ## The five ways to normalise
#
# Each takes the stored input $x$ of shape `[N, C, H, W]` and returns
# $\hat{x}_i = (x_i - \mu_\mathcal{B}) / \sqrt{\sigma^2_\mathcal{B} + \epsilon}$ per channel.
#
# The identity, one pass: $\sigma^2_\mathcal{B} = \frac{1}{m}\sum_i x_i^2 - \mu_\mathcal{B}^2$
def identity(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(DIMS, keepdim=True)
    var = (x * x).mean(DIMS, keepdim=True) - mean * mean
    return (x - mean) * torch.rsqrt(var + EPS)


# Two passes: $\sigma^2_\mathcal{B} = \frac{1}{m}\sum_i (x_i - \mu_\mathcal{B})^2$
def two_pass(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(DIMS, keepdim=True)
    var = (x - mean).pow(2).mean(DIMS, keepdim=True)
    return (x - mean) * torch.rsqrt(var + EPS)


# Our `BatchNorm`, exactly as a network would call it while training
def shifted(x: torch.Tensor) -> torch.Tensor:
    return BatchNorm(x.shape[1], affine=False, eps=EPS, device=x.device).train()(x)


# PyTorch's fused variance and mean (biased, as Algorithm 1 normalises with)
def torch_var_mean(x: torch.Tensor) -> torch.Tensor:
    var, mean = torch.var_mean(x, DIMS, unbiased=False, keepdim=True)
    return (x - mean) * torch.rsqrt(var + EPS)


# PyTorch's batch norm layer
def torch_batch_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.BatchNorm2d(x.shape[1], affine=False, eps=EPS, device=x.device).train()(x)


METHODS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    'identity': identity,
    'two_pass': two_pass,
    'shifted': shifted,
    'torch_var_mean': torch_var_mean,
    'torch_batch_norm': torch_batch_norm,
}


# ## The measurement
#
# The reference is the two-pass normalisation in `float64` of the stored values. Its own error
# is around $10^{-16}$ relative to the spread for every offset here, far below anything
# measured.
def reference(x: torch.Tensor) -> torch.Tensor:
    x64 = x.double()
    centred = x64 - x64.mean(DIMS, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(DIMS, keepdim=True) + EPS)


# $\lVert y - y_{64} \rVert / \lVert y_{64} \rVert$, or `NaN` when the output is not finite or
# no error is defined (every value of a channel rounded to the same number)
def relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    # A non-finite value anywhere makes a norm non-finite, and so does a zero reference
    error = ((y.double() - ref).norm() / ref.norm()).item()
    return error if math.isfinite(error) else math.nan


def make_input(offset: float, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """$\\mathcal{N}(\\text{offset}, 1)$ drawn in `float64`, then stored in `dtype`."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(SHAPE, generator=generator, dtype=torch.float64) + offset).to(dtype)


def measure_one(offset: float, dtype: torch.dtype, seed: int) -> Dict:
    """The relative error of every method, the error floor of the dtype, and what happened to
    the input and the identity's variance at this offset."""
    x = make_input(offset, dtype, seed)
    ref = reference(x)
    errors = {name: relative_error(method(x), ref) for name, method in METHODS.items()}
    # The floor: the exact result, rounded to the output's dtype
    floor = relative_error(ref.to(dtype), ref)
    mean = x.mean(DIMS, keepdim=True)
    square = x * x
    identity_var = square.mean(DIMS, keepdim=True) - mean * mean
    x64 = x.double()
    distinct = sorted(torch.unique(x64[:, c]).numel() for c in range(x.shape[1]))
    return {
        'errors': errors,
        'floor': floor,
        # The input itself overflowed the dtype (float16 beyond 65,504)
        'input_overflow': not math.isfinite(x64.abs().max().item()),
        # The median number of distinct stored values in a channel; 1 means the dtype rounded
        # every value of the channel to the same number
        'distinct_values': distinct[len(distinct) // 2],
        # Channels whose variance by the identity came out negative
        'identity_negative_channels': int((identity_var < 0).sum()),
        # Whether $x^2$ overflowed the dtype
        'identity_square_overflow': not math.isfinite(square.abs().max().item()),
    }


def offsets_for(smoke: bool) -> List[float]:
    """One offset per decade in a smoke run; four per decade otherwise, for the figure."""
    per_decade = 1 if smoke else 4
    return [10 ** (k / per_decade) for k in range(6 * per_decade + 1)]


def decade_key(offset: float) -> Optional[str]:
    k = math.log10(offset)
    return f'1e{round(k)}' if abs(k - round(k)) < 1e-9 else None


def offset_key(offset: float) -> str:
    """The JSON's name of an offset: `1e3` for a decade, the rounded offset otherwise (`562`)."""
    return decade_key(offset) or f'{offset:.0f}'


def measure(smoke: bool = False, seed: int = 0) -> Dict:
    """Every measurement: `values[dtype][method][offset]` and `values[dtype]['floor'][offset]`
    for every offset measured, named by `offset_key` (the JSON's schema, which the text quotes),
    and `curves` over all offsets for the figure."""
    offsets = offsets_for(smoke)
    curves = {}
    for dtype_name, dtype in DTYPES.items():
        curves[dtype_name] = [measure_one(offset, dtype, seed) for offset in offsets]
    values = {}
    for dtype_name, rows in curves.items():
        values[dtype_name] = {name: {} for name in [*METHODS, 'floor']}
        for offset, row in zip(offsets, rows):
            errors = {**row['errors'], 'floor': row['floor']}
            for name, error in errors.items():
                key = offset_key(offset)
                values[dtype_name][name][key] = error if math.isfinite(error) else 'nan'
    return {'offsets': offsets, 'curves': curves, 'values': values}


# ## The figure
#
# One log-log panel per dtype. A non-finite output has no error to plot: it is drawn as a
# cross on the "NaN" strip at the top of its panel.
COLOURS = {
    'identity': '#E53935',
    'two_pass': '#FB8C00',
    'shifted': '#3F51B5',
    'torch_var_mean': '#00897B',
    'torch_batch_norm': '#8E24AA',
}
LABELS = {
    'identity': 'E[x²] − E[x]²',
    'two_pass': 'two-pass',
    'shifted': 'shifted (our BatchNorm)',
    'torch_var_mean': 'torch.var_mean',
    'torch_batch_norm': 'torch.nn.BatchNorm2d',
}
STYLES = {'identity': '-', 'two_pass': '-', 'shifted': '-', 'torch_var_mean': (0, (4, 2)),
          'torch_batch_norm': (0, (1.5, 1.5))}
MARKERS = {'identity': 'o', 'two_pass': 's', 'shifted': 'D', 'torch_var_mean': '^',
           'torch_batch_norm': 'v'}
NAN_Y = 2e4


def draw(results: Dict):
    """The figure, as a Matplotlib figure (shown inline in a notebook)."""
    import matplotlib.pyplot as plt
    offsets = results['offsets']
    fig, axes = plt.subplots(3, 1, figsize=(6.2, 8.4), sharex=True)
    for ax, (dtype_name, rows) in zip(axes, results['curves'].items()):
        # Where no error is defined: the input overflowed, or was rounded to a constant
        undefined = [(o, r) for o, r in zip(offsets, rows) if not math.isfinite(r['floor'])]
        if undefined:
            start, row = undefined[0]
            ax.axvspan(start / 10 ** 0.15, 2e6, color='#ECEFF1', lw=0, zorder=0)
            overflows = any(r['input_overflow'] for _, r in undefined)
            why = 'input constant\nper channel'
            if overflows:
                why += '\nor inf (> 65,504)'
            ax.text(math.sqrt(start * 1e6), 1e-6, why, ha='center', va='center',
                    fontsize=8, color='#546E7A')
        ax.plot(offsets, [r['floor'] for r in rows], color='#9E9E9E', lw=1.2, ls='--',
                label='floor: exact output rounded', zorder=1)
        for name in METHODS:
            errors = [r['errors'][name] for r in rows]
            if any(math.isfinite(e) for e in errors):
                # A NaN leaves a gap in the line
                ax.plot(offsets, errors, color=COLOURS[name], marker=MARKERS[name], ms=3.5,
                        lw=1.4, ls=STYLES[name], label=LABELS[name], zorder=3)
            bad = [o for o, e, r in zip(offsets, errors, rows)
                   if not math.isfinite(e) and math.isfinite(r['floor'])]
            if bad:
                ax.plot(bad, [NAN_Y] * len(bad), ls='none', marker='x', ms=6, mew=1.6,
                        color=COLOURS[name], zorder=4)
        negative = [o for o, r in zip(offsets, rows) if r['identity_negative_channels'] > 0]
        if negative:
            ax.axvline(negative[0], color=COLOURS['identity'], lw=0.8, ls=':', zorder=2)
            ax.text(negative[0] * 1.15, 2e-10, 'identity: variance < 0', fontsize=7.5,
                    color=COLOURS['identity'], va='bottom')
        overflow = [o for o, r in zip(offsets, rows) if r['identity_square_overflow'] and
                    math.isfinite(r['floor'])]
        if overflow:
            ax.text(overflow[0] * 1.15, 1e-8, 'identity: x² overflows', fontsize=7.5,
                    color=COLOURS['identity'], va='bottom')
        ax.axhspan(4e3, 1e5, color='#FFEBEE', lw=0, zorder=0)
        ax.text(1.15, NAN_Y, 'NaN', fontsize=7.5, va='center', color='#C62828')
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_ylim(1e-10, 1e5)
        ax.set_yticks([1e-9, 1e-7, 1e-5, 1e-3, 1e-1, 1e1, 1e3])
        ax.set_title(f'{dtype_name} input', fontsize=10, loc='left')
        ax.set_ylabel('relative error', fontsize=9)
        ax.grid(alpha=0.3, which='major')
        ax.tick_params(labelsize=8)
        for side in ('top', 'right'):
            ax.spines[side].set_visible(False)
    axes[-1].set_xlabel('offset |mean| / std of the input', fontsize=9)
    axes[-1].set_xlim(0.8, 1.25e6)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle('Error of the normalised output vs float64', fontsize=11, y=0.995)
    fig.legend(handles, labels, loc='upper center', ncol=3, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.975), handlelength=2.6)
    fig.tight_layout(rect=(0, 0, 1, 0.94), h_pad=1.2)
    return fig


def plot(results: Dict, stamp_text: str, path: Path) -> Path:
    from labml_nn_bn.figure_tools import pyplot, save_svg
    pyplot()
    return save_svg(draw(results), path, stamp_text)


def _json_ready(value):
    if isinstance(value, float) and not math.isfinite(value):
        return 'nan'
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def save(results: Dict, out_dir: Path, smoke: bool, seed: int) -> List[Path]:
    """`variance_identity.svg` and `variance_identity.json` in `out_dir`. The JSON's `values`
    follow the schema the BatchNorm page quotes; `details` keep the rest of the measurement."""
    from labml_nn_bn.figure_tools import describe_device, stamp, write_atomically
    stamp_text = stamp(f'N(offset, 1), {list(SHAPE)}, seed {seed}',
                       f'{len(results["offsets"])} offsets', describe_device('cpu'))
    out_dir = Path(out_dir)
    svg = plot(results, stamp_text, out_dir / 'variance_identity.svg')
    details = {}
    for dtype_name, rows in results['curves'].items():
        details[dtype_name] = {}
        for offset, row in zip(results['offsets'], rows):
            key = decade_key(offset)
            if key is not None:
                details[dtype_name][key] = {k: v for k, v in row.items() if k != 'errors'}
    document = {'stamp': stamp_text, 'values': results['values'], 'details': _json_ready(details)}
    text = json.dumps(document, indent=2, sort_keys=True) + '\n'
    path = out_dir / 'variance_identity.json'
    write_atomically(path, text.encode('utf-8'))
    return [svg, path]


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    """The figure maker `variance_identity` (see `labml_nn_bn.figures`)."""
    return save(measure(smoke), out_dir, smoke, seed=0)


# ## Running it
def format_table(values: Dict) -> str:
    lines = []
    for dtype_name, methods in values.items():
        lines.append(f'{dtype_name}: relative error of the normalised output vs float64')
        lines.append(f'{"offset":>8} ' + ' '.join(f'{name:>17}' for name in methods))
        for key in DECADES:
            cells = []
            for name in methods:
                e = methods[name][key]
                cells.append(f'{e:>17.1e}' if isinstance(e, float) else f'{e:>17}')
            lines.append(f'{key:>8} ' + ' '.join(cells))
    return '\n'.join(lines)


def run(smoke: bool = False, seed: int = 0, out: Optional[Path] = None,
        logs_dir: Optional[str] = None, writers=('file',)) -> Dict:
    """Measures as a labml run: one step per offset, one series per dtype and method."""
    from labml import tracker
    from labml_nn_bn.experiments import cli
    configs = {'smoke': smoke, 'seed': seed, 'shape': str(list(SHAPE)), 'eps': EPS}
    with cli.labml_run('variance_identity', configs, logs_dir=logs_dir, writers=writers):
        results = measure(smoke, seed)
        for step, offset in enumerate(results['offsets']):
            row = {f'{name}.{dtype_name}': results['curves'][dtype_name][step]['errors'][name]
                   for dtype_name in DTYPES for name in METHODS}
            tracker.save(step, {k: v for k, v in row.items() if math.isfinite(v)})
    print(format_table(results['values']))
    if out is not None:
        for path in save(results, out, smoke, seed):
            print(f'wrote {path}')
    return results


def main(argv=None):
    from labml_nn_bn.experiments import cli
    prog = 'python -m labml_nn_bn.experiments.variance_identity'
    parser = cli.make_parser(
        prog,
        description='Relative error of five ways to compute the batch variance, against the '
                    'offset |mean|/std of the input.')
    cli.add_figure_arguments(parser, 'variance_identity',
                             smoke_help='one offset per decade instead of four (seconds)',
                             seed_help='seed of the random input')
    args = cli.parse_figure_arguments(parser, argv)
    return cli.run_main(lambda: run(args.smoke, args.seed, args.out, args.logs_dir), prog)


if __name__ == '__main__':
    main(sys.argv[1:])


# ## Exercises
#
# **1. The cancellation error** (derivation). Estimate the relative error of
# $\sigma^2_\mathcal{B}$ computed in `float32` as
# $\frac{1}{m}\sum_i x_i^2 - \mu_\mathcal{B}^2$ when $|\mu_\mathcal{B}|$ is much larger
# than $\sqrt{\sigma^2_\mathcal{B}}$, and from it the relative error of $\hat{x}$.
# Compare with the measurement at an offset of $10^3$.
#
# ??? success "Solution"
#     Both terms are about $\mu_\mathcal{B}^2$. Rounding a number to `float32` changes
#     it by up to $2^{-24}$ of its size (the unit roundoff), so each term carries an
#     absolute error of about $2^{-24}\mu_\mathcal{B}^2$, and summing $m$ squares adds
#     more. The subtraction is exact, but it keeps these errors while the result shrinks
#     to $\sigma^2_\mathcal{B}$: its relative error is of order
#     $2^{-24}\,\mu_\mathcal{B}^2/\sigma^2_\mathcal{B}$, the unit roundoff times the
#     *square* of the offset. $\hat{x}$ divides by the square root of the variance,
#     which halves a small relative error, so $\hat{x}$ is off by the same order. At an
#     offset of $10^3$ that is $2^{-24} \times 10^6 \approx 0.06$; the measured error is
#     <!-- measured variance_identity:float32.identity.1e3 .1e -->1.2e-01<!-- /measured -->,
#     the same order (several roundings and the summation of 4,096 squares add up). The
#     two-pass form subtracts $\mu_\mathcal{B}$ from each $x_i$ before squaring, so only
#     the rounding of $\mu_\mathcal{B}$ itself, of order $2^{-24}$ times the offset, is
#     left: linear in the offset, as the figure shows.
#
# **2. Where the identity loses every digit** (derivation). At which offset does the
# error of exercise 1 reach the variance itself in `float32`? And in `float16`, whose
# unit roundoff is $2^{-11}$? Check against the table.
#
# ??? success "Solution"
#     The relative error reaches one when
#     $2^{-24}\,\mu_\mathcal{B}^2/\sigma^2_\mathcal{B} \approx 1$, at an offset of
#     $2^{12} = 4{,}096$. From there the computed "variance" is rounding error: not one
#     digit is right, and it can come out negative (then the output is `NaN`). The
#     measurements agree: at $10^3$ the output is still finite, off by
#     <!-- measured variance_identity:float32.identity.1e3 .1e -->1.2e-01<!-- /measured -->,
#     and at $10^4$ it is
#     <!-- measured variance_identity:float32.identity.1e4 -->nan<!-- /measured -->. In
#     `float16` the same estimate gives $2^{5.5} \approx 45$: the error is
#     <!-- measured variance_identity:float16.identity.1e1 .1e -->2.8e-02<!-- /measured -->
#     at an offset of $10$ and the output
#     <!-- measured variance_identity:float16.identity.1e2 -->nan<!-- /measured --> at
#     $10^2$.
#
# **3. When $x^2$ overflows** (derivation). From which value on does $x^2$ overflow in
# `float16`, whose largest finite number is 65,504? Why can `bfloat16` not overflow this
# way here?
#
# ??? success "Solution"
#     $x^2 > 65{,}504$ for $|x| > \sqrt{65{,}504} \approx 255.9$: already
#     $256^2 = 65{,}536$ is `inf`. With $4{,}096$ values of $\mathcal{N}(\mu, 1)$ per
#     channel, the largest is a few units above $\mu$, so the identity's output is `NaN`
#     from an offset of about 250. `bfloat16` keeps the exponent range of `float32` (its
#     largest number is about $3.4 \times 10^{38}$) and gives up precision instead: its
#     problem is the cancellation of exercise 1, not overflow.
#
# **4. Welford's update** (code). Write the one-pass algorithm of Welford (1962): after
# each value $x_n$, update the running mean and the sum of squared deviations
# $M_n = \sum_{i \le n} (x_i - \mu_n)^2$ by $\mu_n = \mu_{n-1} + (x_n - \mu_{n-1})/n$
# and $M_n = M_{n-1} + (x_n - \mu_{n-1})(x_n - \mu_n)$, so that
# $\sigma^2_\mathcal{B} = M_m/m$. Run it in `float32` on $4{,}096$ values of
# $\mathcal{N}(10^4, 1)$ and compare it with the identity.
#
# ??? success "Solution"
#     Welford's update never forms a square of size $\mu_\mathcal{B}^2$: it squares
#     deviations from the current mean, which are of the size of the spread. It is one
#     pass like the identity, but a sequential one (one value after the other); parallel
#     hardware uses a shift instead, or merges Welford's statistics of pieces.
#
#     ```python
#     import torch
#
#     def welford(values):
#         """Mean and biased variance of a 1-D tensor, in one pass and in its dtype."""
#         mean = torch.zeros((), dtype=values.dtype)
#         m2 = torch.zeros((), dtype=values.dtype)
#         for n, x in enumerate(values, start=1):
#             delta = x - mean
#             mean = mean + delta / n
#             m2 = m2 + delta * (x - mean)
#         return mean, m2 / len(values)
#
#     generator = torch.Generator().manual_seed(0)
#     x = (torch.randn(4096, generator=generator, dtype=torch.float64) + 1e4).float()
#     exact = x.double().var(unbiased=False).item()
#     _, var = welford(x)
#     identity = ((x * x).mean() - x.mean() ** 2).item()
#     assert abs(var.item() / exact - 1) < 1e-2       # Welford: within 1 %
#     assert abs(identity / exact - 1) > 0.5          # the identity: nothing left
#     ```
#
# **5. Another seed** (experiment). Run
# `python -m labml_nn_bn.experiments.variance_identity --smoke --seed 1`. Which numbers
# of the `float32` table change, and does the offset at which the identity breaks down
# move?
#
# ??? success "Solution"
#     Every error changes a little: the input is another sample, and rounding errors
#     depend on the exact values. How many channels go negative at $10^4$ changes too.
#     What does not change is the pattern that exercise 2 predicts from the unit
#     roundoff alone: the identity is finite but off by about $10^{-1}$ at $10^3$ and
#     `NaN` at $10^4$ (the tests check seeds 0 to 3), while the shifted form stays near
#     $10^{-7}$ throughout.
#
# **6. Why the shift works** (derivation). Our `BatchNorm` computes the statistics from
# $\delta_i = x_i - K$, with $K$ a rough guess of the mean:
# $\sigma^2_\mathcal{B} = \frac{1}{m}\sum_i \delta_i^2 - \bar\delta^2$. Redo exercise 1
# for this form. What does it need from $K$?
#
# ??? success "Solution"
#     The same argument with $\delta_i$ in place of $x_i$: the two terms are now about
#     $(\mu_\mathcal{B} - K)^2 + \sigma^2_\mathcal{B}$ and $(\mu_\mathcal{B} - K)^2$, so
#     the relative error is of order
#     $2^{-24}\big(1 + (\mu_\mathcal{B} - K)^2/\sigma^2_\mathcal{B}\big)$: the unit
#     roundoff, as long as $K$ is within a few standard deviations of the mean, whatever
#     the offset. The $\delta_i$ themselves are exact when $K$ is within a factor of two
#     of every $x_i$ (Sterbenz's lemma). Even one value of the batch as $K$ will do:
#
#     ```python
#     import torch
#
#     generator = torch.Generator().manual_seed(0)
#     x = (torch.randn(4096, generator=generator, dtype=torch.float64) + 1e4).float()
#     exact = x.double().var(unbiased=False).item()
#     delta = x - x[0]                      # K = the first value
#     shifted = ((delta * delta).mean() - delta.mean() ** 2).item()
#     assert abs(shifted / exact - 1) < 1e-5
#     ```
