r"""
---
title: Normalising outside the gradient
summary: >
  The paper's Section 2 argument, run: a bias followed by mean subtraction drifts without
  bound when the mean is treated as a constant, and a scale followed by division by the
  standard deviation is thrown across zero; with the gradient through the statistics, both
  stay put.
---

# Normalising outside the gradient

*Symbols as in [the notation table](../../notation.md); this page follows the paper's Section 2,
where $\hat{x}$ is the centred value only.*

Before it introduces batch normalization, the paper (Section 2) explains why normalising the
activations *outside* the gradient step does not work. Take a layer that adds a learned bias,
$x = u + b$, and centre it, $\hat{x} = x - \mathbb{E}[x]$, where the mean is computed over the
training data but the optimiser ignores that it depends on $b$. A gradient step
$b \leftarrow b + \Delta b$ with $\Delta b \propto -\frac{\partial \ell}{\partial \hat{x}}$ then gives

$$\begin{aligned}&u + (b + \Delta b) - \mathbb{E}[u + (b + \Delta b)] \\
  &\quad = u + b - \mathbb{E}[u + b]\end{aligned}$$

The output and the loss are what they were before the step, so the next step sees the same
gradient, and $b$ keeps moving. The paper adds that the problem can get worse when the
normalisation also scales the activations, and that in its early experiments the model blew
up when the normalisation statistics were computed outside the gradient step. Its conclusion: the gradient must flow through the statistics
(see [the BatchNorm page](../batch_norm.md)).

Here both cases are trained, once with the statistics detached and once with the gradient
flowing through them.

## A loss that keeps pushing

$b$ only drifts if $\frac{\partial \ell}{\partial \hat{x}}$ keeps the same sign on average over
the data: the argument needs a loss that the normalised output *cannot* satisfy. That is the
ordinary situation when a layer is normalised: whatever part of the target lies in the
direction the normalisation removes is out of reach. Our layer is asked to pass its input
through, target $t = u$, on data $u$ whose mean is not zero, with the mean squared error
$\ell = \frac{1}{NC}\sum_{n, c} (\hat{x}_{n,c} - t_{n,c})^2$ over $N$ examples of $C$ features.
Centring removes exactly that mean, so $\hat{x} - t = -\mathbb{E}[u]$ for every example, and

$$\frac{\partial \ell}{\partial b_c} = \frac{1}{NC}\sum_n 2\,(\hat{x}_{n,c} - t_{n,c})
  = -\frac{2}{C}\,\mathbb{E}[u_c]$$

with the mean detached: the same non-zero push at every step. With the gradient through the
mean, $\frac{\partial \hat{x}_n}{\partial b} = 1 - 1 = 0$: the loss does not depend on $b$ at
all, and neither does its gradient.

For the scale, the layer is $x = a\,u$ with a learned scale $a$ per feature, normalised to
$\hat{x} = (x - \mathbb{E}[x]) / \sqrt{\mathrm{Var}[x]}$, and the target is half of what the
normalisation produces, $t = \frac{1}{2}(u - \mathbb{E}[u]) / \sqrt{\mathrm{Var}[u]}$. With the
statistics detached, $\frac{\partial \ell}{\partial a_c} = \frac{1}{C a_c}$ for $a_c > 0$:
the scale shrinks, ever faster as it approaches zero, until a step throws it past zero. There
the feature's output flips sign, the loss jumps (from $\frac{1}{4}$, by $\frac{1}{2}$ for each
flipped feature), and the chase goes on. With the gradient through the statistics, $\hat{x}$ does not depend on $a > 0$
and $\frac{\partial \ell}{\partial a} = 0$.

Both are full-batch gradient descent (SGD, no momentum) on $N = 256$ examples of $4$ features,
so $\mathbb{E}$ and $\mathrm{Var}$ are over the whole training data, as in the paper's argument.

![|b|, a and the loss over training steps, with the statistics detached and with the gradient through them](../../figures/detached_mean.svg)

What the figure shows:

* **Mean, detached:** $\lVert b \rVert$ grows linearly, from <!-- measured detached_mean:mean.detached.b_start .2f -->0.20<!-- /measured --> to <!-- measured detached_mean:mean.detached.b_end .1f -->176.7<!-- /measured --> in <!-- measured detached_mean:mean.steps ,d -->1,000<!-- /measured --> steps, while the loss stays at <!-- measured detached_mean:mean.detached.loss_end .3f -->3.125<!-- /measured -->: every step
  is undone by the next mean.
* **Mean, through the gradient:** the largest $|\partial \ell / \partial b|$ over the run is <!-- measured detached_mean:mean.through.max_abs_grad_b .1e -->4.5e-07<!-- /measured -->, rounding
  error, and $b$ does not move. The loss is the same: the unreachable part of the target costs
  the same either way; only the detached run wastes its updates on $b$.
* **Scale, detached:** $a$ shrinks towards zero, is thrown across it, and the loss jumps to <!-- measured detached_mean:scale.detached.loss_max .2f -->2.25<!-- /measured --> from <!-- measured detached_mean:scale.detached.loss_start .2f -->0.25<!-- /measured -->: the
  output's sign flipped for all four features at once.
  A flipped feature is pushed back towards zero too, and thrown across it again, so after the
  first flips the loss jumps between the levels $\frac{1}{4} + \frac{k}{2}$ with $k$
  flipped features: the spikes are moments with three or four flipped, and the plateau at
  $0.75$–$1.25$ is one or two flipped at a time. The run ends at
  <!-- measured detached_mean:scale.detached.loss_end .2f -->0.75<!-- /measured -->: one
  feature flipped.
  Through the statistics, the largest $|\partial \ell / \partial a|$ is <!-- measured detached_mean:scale.through.max_abs_grad_a .1e -->1.8e-07<!-- /measured --> and
  nothing moves.

In our view the toy keeps what matters. A real network is messier: mini-batch statistics are
noisy and other parameters adapt. But the direction the normalisation removes is always there,
and with the statistics detached, any part of the loss's gradient along it pushes the bias (or
the scale) step after step without changing the output, until precision or stability gives out. Batch normalization avoids this by back-propagating through
$\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$.

Run it with

```bash
python -m labml_nn_bn.experiments.detached_mean
```

which records the four runs with labml under `logs/`, prints the summary, and with
`--out DIR` writes the figure and `detached_mean.json`.
"""

import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

# $N$ examples with $C$ features
N, C = 256, 4


def make_data(seed: int) -> torch.Tensor:
    """$u$: features with different, non-zero means and spreads; $[N, C]$."""
    generator = torch.Generator().manual_seed(seed)
    mean = torch.tensor([1., -2., 0.5, 3.])
    std = torch.tensor([1., 2., 0.5, 1.5])
    return torch.randn(N, C, generator=generator) * std + mean


# ## The bias and the mean
#
# $x = u + b$, $\hat{x} = x - \mathbb{E}[x]$ and $\ell = \frac{1}{NC}\sum_{n,c} (\hat{x}_{n,c} - t_{n,c})^2$
# with $t = u$. `detach` decides whether the optimiser sees that $\mathbb{E}[x]$ depends on $b$.
def train_bias(u: torch.Tensor, detach: bool, steps: int, lr: float) -> Dict[str, List[float]]:
    b = torch.nn.Parameter(torch.full((C,), 0.1))
    optimizer = torch.optim.SGD([b], lr=lr)
    history = {'b_norm': [], 'loss': [], 'grad_b': []}
    for _ in range(steps):
        x = u + b  # [N, C]
        # $\mathbb{E}[x]$ over the training data; [C]
        mean = x.mean(dim=0)
        if detach:
            mean = mean.detach()
        x_hat = x - mean
        loss = (x_hat - u).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        history['b_norm'].append(b.detach().norm().item())
        history['loss'].append(loss.item())
        history['grad_b'].append(b.grad.abs().max().item())
        optimizer.step()
    return history


# ## The scale and the standard deviation
#
# $x = a\,u$, $\hat{x} = (x - \mathbb{E}[x]) / \sqrt{\mathrm{Var}[x]}$ and the target
# $t = \frac{1}{2}(u - \mathbb{E}[u]) / \sqrt{\mathrm{Var}[u]}$, which the normalised output
# cannot reach.
def train_scale(u: torch.Tensor, detach: bool, steps: int, lr: float) -> Dict[str, List[float]]:
    a = torch.nn.Parameter(torch.ones(C))
    target = 0.5 * (u - u.mean(dim=0)) / u.std(dim=0, unbiased=False)
    optimizer = torch.optim.SGD([a], lr=lr)
    history = {'a': [], 'loss': [], 'grad_a': []}
    for _ in range(steps):
        x = a * u  # [N, C]
        mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False)
        if detach:
            mean, std = mean.detach(), std.detach()
        x_hat = (x - mean) / std
        loss = (x_hat - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        history['a'].append(a.detach().tolist())
        history['loss'].append(loss.item())
        history['grad_a'].append(a.grad.abs().max().item())
        optimizer.step()
    return history


# ## Both, both ways
STEPS = {'mean': 1000, 'scale': 300}
SMOKE_STEPS = {'mean': 50, 'scale': 50}
LR = {'mean': 0.1, 'scale': 0.02}


def measure(smoke: bool = False, seed: int = 0) -> Dict:
    steps = SMOKE_STEPS if smoke else STEPS
    u = make_data(seed)
    runs = {'mean': {}, 'scale': {}}
    for name, detach in (('detached', True), ('through', False)):
        runs['mean'][name] = train_bias(u, detach, steps['mean'], LR['mean'])
        runs['scale'][name] = train_scale(u, detach, steps['scale'], LR['scale'])
    return {'steps': steps, 'lr': LR, 'seed': seed, 'runs': runs}


def summary(results: Dict) -> Dict:
    """The numbers the text quotes."""
    mean, scale = results['runs']['mean'], results['runs']['scale']
    values = {'mean': {'steps': results['steps']['mean'], 'lr': results['lr']['mean']},
              'scale': {'steps': results['steps']['scale'], 'lr': results['lr']['scale']}}
    for name, h in mean.items():
        values['mean'][name] = {
            'b_start': h['b_norm'][0], 'b_end': h['b_norm'][-1],
            'loss_start': h['loss'][0], 'loss_end': h['loss'][-1],
            'max_abs_grad_b': max(h['grad_b']),
        }
    for name, h in scale.items():
        flat = [v for row in h['a'] for v in row]
        values['scale'][name] = {
            'a_min': min(flat), 'a_max': max(flat),
            'loss_start': h['loss'][0], 'loss_max': max(h['loss']),
            'loss_end': h['loss'][-1], 'max_abs_grad_a': max(h['grad_a']),
            # Steps at which some feature's scale changed sign
            'sign_flips': sum(1 for p, q in zip(h['a'], h['a'][1:])
                              for x, y in zip(p, q) if (x > 0) != (y > 0)),
        }
    return values


# ## The figure
DETACHED = '#F57C00'
THROUGH = '#3F51B5'


def draw(results: Dict):
    """The figure, as a Matplotlib figure (shown inline in a notebook)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(6.2, 5.2))
    mean, scale = results['runs']['mean'], results['runs']['scale']
    labels = {'detached': 'statistics detached', 'through': 'gradient through them'}
    colours = {'detached': DETACHED, 'through': THROUGH}

    ax = axes[0][0]
    for name, h in mean.items():
        ax.plot(range(1, len(h['b_norm']) + 1), h['b_norm'], color=colours[name], lw=2,
                label=labels[name])
    ax.set_ylim(bottom=0)
    ax.set_title('bias $b$ before centring: $\\Vert b \\Vert$', fontsize=9.5, loc='left')
    ax = axes[0][1]
    for name, h in mean.items():
        ax.plot(range(1, len(h['loss']) + 1), h['loss'], color=colours[name], lw=2,
                ls='-' if name == 'detached' else (0, (4, 3)))
    ax.set_title('loss', fontsize=9.5, loc='left')
    ax.set_ylim(0, max(max(h['loss']) for h in mean.values()) * 1.3)
    grad = max(mean['through']['grad_b'])
    ax.text(0.97, 0.7, 'the same, constant loss\nin both runs', transform=ax.transAxes,
            ha='right', va='top', fontsize=7.5, color='#546E7A')
    ax.text(0.97, 0.08, f'through the mean:\nmax $|\\partial\\ell/\\partial b|$ = {grad:.1e}',
            transform=ax.transAxes, ha='right', va='bottom', fontsize=7.5, color=THROUGH)

    ax = axes[1][0]
    for name, h in scale.items():
        steps = range(1, len(h['a']) + 1)
        for k in range(C):
            ax.plot(steps, [row[k] for row in h['a']], color=colours[name],
                    lw=1.4 if name == 'detached' else 2, alpha=0.85 if name == 'detached' else 1)
    ax.axhline(0, color='#90A4AE', lw=0.8)
    ax.set_title('scale $a$ before standardising (4 features)', fontsize=9.5, loc='left')
    ax = axes[1][1]
    for name, h in scale.items():
        ax.plot(range(1, len(h['loss']) + 1), h['loss'], color=colours[name], lw=1.6,
                ls='-' if name == 'detached' else (0, (4, 3)))
    ax.set_title('loss', fontsize=9.5, loc='left')
    grad = max(scale['through']['grad_a'])
    ax.text(0.97, 0.92, f'through the statistics:\nmax $|\\partial\\ell/\\partial a|$ = {grad:.1e}',
            transform=ax.transAxes, ha='right', va='top', fontsize=7.5, color=THROUGH)

    for row in axes:
        for ax in row:
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            for side in ('top', 'right'):
                ax.spines[side].set_visible(False)
    for ax in axes[1]:
        ax.set_xlabel('step (full-batch SGD)', fontsize=8.5)
    fig.text(0.01, 0.985, '$x = u + b$,  $\\hat{x} = x - \\mathbb{E}[x]$', fontsize=10,
             va='top', color='#263238')
    fig.text(0.01, 0.5, '$x = a\\,u$,  $\\hat{x} = (x - \\mathbb{E}[x]) / \\sqrt{\\mathrm{Var}[x]}$',
             fontsize=10, va='top', color='#263238')
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc='upper right', ncol=2, fontsize=8, frameon=False,
               bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.95), h_pad=3.2)
    return fig


def plot(results: Dict, stamp_text: str, path: Path) -> Path:
    from labml_nn_bn.figure_tools import pyplot, save_svg
    pyplot()
    return save_svg(draw(results), path, stamp_text)


def save(results: Dict, out_dir: Path) -> List[Path]:
    from labml_nn_bn.figure_tools import describe_device, save_values, stamp
    steps = results['steps']
    stamp_text = stamp(f'synthetic u, {N}×{C}, seed {results["seed"]}',
                       f'{steps["mean"]} + {steps["scale"]} steps', describe_device('cpu'))
    out_dir = Path(out_dir)
    svg = plot(results, stamp_text, out_dir / 'detached_mean.svg')
    return [svg, save_values(out_dir / 'detached_mean.json', summary(results), stamp_text)]


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    """The figure maker `detached_mean` (see `labml_nn_bn.figures`)."""
    return save(measure(smoke), out_dir)


# ## Running it
def format_summary(values: Dict) -> str:
    mean, scale = values['mean'], values['scale']
    return '\n'.join([
        f"bias, mean detached:      |b| {mean['detached']['b_start']:.2f} -> "
        f"{mean['detached']['b_end']:.2f} in {mean['steps']} steps, loss "
        f"{mean['detached']['loss_start']:.4f} -> {mean['detached']['loss_end']:.4f}",
        f"bias, through the mean:   |b| {mean['through']['b_start']:.2f} -> "
        f"{mean['through']['b_end']:.2f}, largest |dl/db| {mean['through']['max_abs_grad_b']:.1e}",
        f"scale, detached:          {scale['detached']['sign_flips']} sign flips in "
        f"{scale['steps']} steps, loss {scale['detached']['loss_start']:.2f} -> up to "
        f"{scale['detached']['loss_max']:.2f}",
        f"scale, through the stats: largest |dl/da| {scale['through']['max_abs_grad_a']:.1e}",
    ])


def run(smoke: bool = False, seed: int = 0, out: Optional[Path] = None,
        logs_dir: Optional[str] = None, writers=('file',)) -> Dict:
    """Trains the four runs as one labml experiment: one step per training step."""
    from labml import tracker
    from labml_nn_bn.experiments import cli
    configs = {'smoke': smoke, 'seed': seed, 'examples': N, 'features': C,
               'lr_mean': LR['mean'], 'lr_scale': LR['scale']}
    with cli.labml_run('detached_mean', configs, logs_dir=logs_dir, writers=writers):
        results = measure(smoke, seed)
        mean, scale = results['runs']['mean'], results['runs']['scale']
        for step in range(max(results['steps'].values())):
            metrics = {}
            for name in ('detached', 'through'):
                if step < len(mean[name]['loss']):
                    metrics[f'b_norm.{name}'] = mean[name]['b_norm'][step]
                    metrics[f'loss_mean.{name}'] = mean[name]['loss'][step]
                if step < len(scale[name]['loss']):
                    metrics[f'loss_scale.{name}'] = scale[name]['loss'][step]
            tracker.save(step, metrics)
    values = summary(results)
    print(format_summary(values))
    if out is not None:
        for path in save(results, out):
            print(f'wrote {path}')
    return results


def main(argv=None):
    from labml_nn_bn.experiments import cli
    prog = 'python -m labml_nn_bn.experiments.detached_mean'
    parser = cli.make_parser(
        prog,
        description='Train a bias before centring, and a scale before standardising, with the '
                    'statistics detached and with the gradient through them.')
    cli.add_figure_arguments(parser, 'detached_mean', smoke_help='50 steps of each (seconds)',
                             seed_help='seed of the data')
    args = cli.parse_figure_arguments(parser, argv)
    return cli.run_main(lambda: run(args.smoke, args.seed, args.out, args.logs_dir), prog)


if __name__ == '__main__':
    main(sys.argv[1:])


# ## Exercises
#
# **1. How fast the bias drifts** (derivation). With the mean detached, the loss stays
# at <!-- measured detached_mean:mean.detached.loss_end .3f -->3.125<!-- /measured -->
# for the whole run. From that number alone, predict $\lVert b \rVert$ after 1,000 steps
# of rate $\eta = 0.1$, and compare with the figure.
#
# ??? success "Solution"
#     With the mean detached, $\hat{x} - t = -\mathbb{E}[u]$ for every example (the text
#     above shows it), so the loss is $\frac{1}{C}\lVert\mathbb{E}[u]\rVert^2$ and
#     $\lVert\mathbb{E}[u]\rVert = \sqrt{C \cdot 3.125} = 3.536$. Every step adds
#     $-\eta\,\frac{\partial \ell}{\partial b} = \eta\,\frac{2}{C}\,\mathbb{E}[u]$: the
#     same vector, so $b$ moves along a straight line at a constant speed of
#     $\eta \cdot \frac{2}{C} \cdot 3.536 = 0.177$ per step, and after 1,000 steps
#     $\lVert b \rVert \approx 176.8$. The run ends at
#     <!-- measured detached_mean:mean.detached.b_end .1f -->176.7<!-- /measured -->
#     (its last record is taken before the 1,000th step, from
#     $b = (0.1, 0.1, 0.1, 0.1)$). The growth is linear and never stops: nothing in the
#     loss ever pushes back.
#
# **2. When the scale crosses zero** (derivation). With the statistics detached, the
# text gives $\frac{\partial \ell}{\partial a_c} = \frac{1}{C a_c}$ for $a_c > 0$.
# Starting from $a_c = 1$ with rate $\eta = 0.02$, after about how many steps is the
# scale thrown across zero? Why do all four features flip together?
#
# ??? success "Solution"
#     Each step is $a \leftarrow a - \frac{\eta}{C a}$. In continuous time,
#     $\frac{d a}{d t} = -\frac{\eta}{C a}$ gives $a^2 = 1 - \frac{2\eta}{C} t$, which
#     reaches zero at $t = \frac{C}{2\eta} = 100$ steps. The discrete steps get there a
#     little later: iterating the update from 1, the step that crosses zero is step 102,
#     where the scale is small and the step $\frac{\eta}{C a}$ is large, so it jumps
#     past zero. The gradient does not depend on the data (the $\frac{1}{C a_c}$ has no
#     $u$ in it), so every feature follows the same path and all four flip at the same
#     step: the loss's first jump, from
#     <!-- measured detached_mean:scale.detached.loss_start .2f -->0.25<!-- /measured -->
#     to
#     <!-- measured detached_mean:scale.detached.loss_max .2f -->2.25<!-- /measured -->,
#     is $\frac{1}{4} + 4 \cdot \frac{1}{2}$.
#
# **3. Which statistic must be in the gradient?** (code). For the scale, detach only the
# mean, then only the standard deviation. Write `scale_gradient(u, detach_mean,
# detach_std)` that returns $\frac{\partial \ell}{\partial a}$ at $a = 1$ for
# `train_scale`'s loss, and find out which one breaks.
#
# ??? success "Solution"
#     ```python
#     def scale_gradient(u: torch.Tensor, detach_mean: bool, detach_std: bool):
#         a = torch.ones(C, requires_grad=True)
#         target = 0.5 * (u - u.mean(dim=0)) / u.std(dim=0, unbiased=False)
#         x = a * u
#         mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False)
#         if detach_mean:
#             mean = mean.detach()
#         if detach_std:
#             std = std.detach()
#         loss = ((x - mean) / std - target).pow(2).mean()
#         return torch.autograd.grad(loss, a)[0]
#     ```
#
#     `scale_gradient(make_data(0), False, True)` is $\frac{1}{C} = 0.25$ for every
#     feature, the detached case's push; `scale_gradient(make_data(0), True, False)` is
#     zero up to rounding. For the scale it is the standard deviation that must carry
#     the gradient: with only the mean detached, $\partial \hat{x}_n / \partial a_c$ is
#     the same for every example $n$, and it multiplies $\hat{x} - t$, whose sum over
#     the examples is zero. For the bias it is the mean. Batch normalization
#     back-propagates through both.
#
# **4. Another sample of the data** (experiment). The data's means set the drift. Run it
# on another sample (seconds):
#
# ```bash
# python -m labml_nn_bn.experiments.detached_mean --seed 1
# ```
#
# and check exercise 1's prediction against the printed summary.
#
# ??? success "Solution"
#     The summary line of the detached bias gives its loss and its $\lVert b \rVert$
#     after the run. The loss is again $\frac{1}{C}\lVert\mathbb{E}[u]\rVert^2$, now for
#     seed 1's sample, and $\lVert b \rVert$ is again within a fraction of a percent of
#     $1000 \cdot \eta \cdot \frac{2}{C} \sqrt{C \cdot \text{loss}}$. The rate of drift
#     is set by the part of the target that the normalisation removes, the data's mean;
#     only data of mean zero would leave nothing to push.
