r"""
The pictures of the [BatchNorm page](batch_norm.md), drawn from numbers that `BatchNorm`
computes.

Six SVGs under `docs/figures/`, each placed beside the text it illustrates:

* `bn_axes.svg`: which values of an `[N, C, H, W]` batch one channel's statistics are over;
* `bn_worked_example.svg`: a $4 \times 2$ batch through $\mu_\mathcal{B}$, $\sigma^2_\mathcal{B}$,
  $\hat{x}$ and $y$ (`WORKED_EXAMPLE`);
* `bn_graph.svg`: the computation graph, and the three ways an input reaches the loss;
* `bn_running_mean.svg`: the running mean following the batch means, for `momentum=0.1` and
  `momentum=None`;
* `bn_train_eval.svg`: one example in two different batches, in training and in evaluation
  mode;
* `norm_axes.svg` (on the later-work page): which values batch, layer, instance and group
  normalization each average over.

No number on a picture is typed in: each is computed here, with `labml_nn_bn.BatchNorm` where
the picture is about what the layer does, and saved in `batch_norm_pictures.json` so that the
tests can recompute it independently. The pictures computed from numbers carry a line saying
what computed them; the diagrams (`DIAGRAMS`) carry none. `python -m labml_nn_bn.figures --only batch_norm_pictures`
redraws them.
"""
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

import torch

from labml_nn_bn import BatchNorm


# ## The worked example
#
# A mini-batch of $m = 4$ examples with two features. Small integers, so that a reader can
# follow $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$ by hand; the two features have different
# means and variances, and $\gamma$, $\beta$ differ from $1$, $0$ so that the last step shows.
# The doctest of `batch_norm_reference` in `labml_nn_bn/batch_norm.py` uses the same numbers.
class WorkedExample(NamedTuple):
    x: Tuple[Tuple[float, ...], ...]
    gamma: Tuple[float, ...]
    beta: Tuple[float, ...]


WORKED_EXAMPLE = WorkedExample(
    x=((1., 10.), (3., 16.), (5., 16.), (7., 18.)),
    gamma=(2., 0.5),
    beta=(0., 1.),
)
EPS = 1e-5

# The site's palette: Material indigo for what a picture is about, two accents, greys
INDIGO = '#3F51B5'
INDIGO_LIGHT = '#C5CAE9'
INDIGO_PALE = '#E8EAF6'
TEAL = '#00897B'
TEAL_LIGHT = '#B2DFDB'
ORANGE = '#F57C00'
ORANGE_LIGHT = '#FFE0B2'
GREY = '#90A4AE'
GREY_LIGHT = '#ECEFF1'
INK = '#263238'


def worked_example_values(example: WorkedExample = WORKED_EXAMPLE) -> Dict:
    """Runs the example through a `BatchNorm` in training mode; returns every intermediate."""
    x = torch.tensor(example.x, dtype=torch.float64)  # [4, 2]
    bn = BatchNorm(x.shape[1], eps=EPS, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(example.gamma))
        bn.bias.copy_(torch.tensor(example.beta))
    y = bn.train()(x)
    # The statistics the layer normalised with, read back from its first running-average
    # update: with momentum 1 the buffers hold exactly the batch's mean and unbiased variance
    probe = BatchNorm(x.shape[1], eps=EPS, momentum=1., affine=False, dtype=torch.float64)
    probe.train()(x)
    m = x.shape[0]
    mean = probe.running_mean
    var = probe.running_var * (m - 1) / m
    x_hat = BatchNorm(x.shape[1], eps=EPS, affine=False, dtype=torch.float64).train()(x)
    return {
        'x': x.tolist(), 'gamma': list(example.gamma), 'beta': list(example.beta), 'eps': EPS,
        'mean': mean.tolist(), 'var': var.tolist(),
        'x_hat': x_hat.tolist(), 'y': y.detach().tolist(),
        'x_hat_mean': x_hat.mean(0).tolist(), 'x_hat_var': x_hat.var(0, unbiased=False).tolist(),
        'gradient_paths': gradient_path_values(example),
    }


# ## The three gradient paths
#
# The computation-graph picture splits $\partial\ell/\partial x_i$ into three paths: directly
# into $\hat{x}_i$, through $\mu_\mathcal{B}$ and through $\sigma^2_\mathcal{B}$ (Section 3 of
# the paper writes the same sum). The live worked example on the page shows each path's value for
# a $\partial\ell/\partial y$ the reader types; these are the values for the default one, where
# the loss depends on example 1's outputs only ($\ell = y_1^{(1)} + y_1^{(2)}$), so that the
# direct path reaches example 1 alone while the statistics carry a gradient to every example.
WORKED_EXAMPLE_GRAD_Y = ((1., 1.), (0., 0.), (0., 0.), (0., 0.))


def gradient_path_values(example: WorkedExample = WORKED_EXAMPLE,
                         grad_y=WORKED_EXAMPLE_GRAD_Y, eps: float = EPS) -> Dict:
    r"""Each path's share of $\partial\ell/\partial x$, by autograd in float64, and the
    module's own $\partial\ell/\partial x$ that they sum to."""
    x = torch.tensor(example.x, dtype=torch.float64)  # [m, C]
    gamma = torch.tensor(example.gamma, dtype=torch.float64)
    beta = torch.tensor(example.beta, dtype=torch.float64)
    grad_y = torch.tensor(grad_y, dtype=torch.float64)
    # Three leaf copies of the batch, one per path: $x_i$ as it enters $\hat{x}_i$ directly,
    # as it enters $\mu_\mathcal{B}$, and as it enters $\sigma^2_\mathcal{B}$. Autograd's
    # gradient with respect to each copy is that path's share. (The third copy also enters
    # the $\mu_\mathcal{B}$ inside $\sigma^2_\mathcal{B}$; that term sums to zero.)
    direct, via_mean, via_var = (x.clone().requires_grad_() for _ in range(3))
    var = ((via_var - via_var.mean(0)) ** 2).mean(0)
    x_hat = (direct - via_mean.mean(0)) / torch.sqrt(var + eps)
    (grad_y * (gamma * x_hat + beta)).sum().backward()
    # The whole gradient, from the module
    x_module = x.clone().requires_grad_()
    bn = BatchNorm(x.shape[1], eps=eps, dtype=torch.float64).train()
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
    (grad_y * bn(x_module)).sum().backward()
    return {'grad_y': grad_y.tolist(), 'direct': direct.grad.tolist(),
            'via_mean': via_mean.grad.tolist(), 'via_var': via_var.grad.tolist(),
            'grad_x': x_module.grad.tolist()}


# ## One example in two batches
#
# In training mode an example is normalised with the statistics of whatever batch it is in;
# in evaluation mode with the running estimates. A fresh `BatchNorm(1)` (momentum 0.1) sees two
# batches of three that share the example $x^* = 2$, the first with smaller, the second with
# larger companions, then evaluates both. The doctest of `BatchNorm._normalise_for_inference`
# in `labml_nn_bn/batch_norm.py` runs the same numbers.
TRAIN_EVAL_X = 2.
TRAIN_EVAL_BATCHES = ((2., 0., 4.), (2., 6., 10.))
TRAIN_EVAL_MOMENTUM = 0.1


def train_eval_values() -> Dict:
    batches = [torch.tensor(b).view(-1, 1) for b in TRAIN_EVAL_BATCHES]  # [3, 1] each
    bn = BatchNorm(1, eps=EPS, momentum=TRAIN_EVAL_MOMENTUM)
    bn.train()
    with torch.no_grad():
        train_out = [bn(b).flatten().tolist() for b in batches]
        bn.eval()
        eval_out = [bn(b).flatten().tolist() for b in batches]
    return {
        'x_star': TRAIN_EVAL_X,
        'batches': [list(b) for b in TRAIN_EVAL_BATCHES],
        'momentum': TRAIN_EVAL_MOMENTUM,
        'train': train_out, 'eval': eval_out,
        'running_mean': bn.running_mean.item(), 'running_var': bn.running_var.item(),
        'eps': EPS,
    }


# ## The running mean
#
# A synthetic feature whose mean drifts while early training moves the layers below it, then
# settles: batch $t$ of 16 values is drawn from $\mathcal{N}(\mu_t, 1)$ with $\mu_t$ rising
# from 0 to 3 over the first 100 steps, then constant.
RUNNING_MEAN_STEPS = 300
RUNNING_MEAN_BATCH = 16


def drift(step: int) -> float:
    return 3. * min(step, 100) / 100


# The momenta whose running means the JSON keeps (at step 100 and at the end): the picture's
# two, and two more that the live figure on the page is checked against
RUNNING_MEAN_MOMENTA = (0.1, None)
RUNNING_MEAN_CHECKED_MOMENTA = (0.01, 0.1, 0.5, None)


def running_mean_values(steps: int = RUNNING_MEAN_STEPS, seed: int = 0,
                        momenta=RUNNING_MEAN_MOMENTA) -> Dict:
    generator = torch.Generator().manual_seed(seed)
    layers = {str(momentum): BatchNorm(1, momentum=momentum, affine=False).train()
              for momentum in momenta}
    batch_means, running = [], {k: [] for k in layers}
    for step in range(steps):
        x = torch.randn(RUNNING_MEAN_BATCH, 1, generator=generator) + drift(step)
        batch_means.append(x.mean().item())
        for name, layer in layers.items():
            layer(x)
            running[name].append(layer.running_mean.item())
    return {'true_mean': [drift(s) for s in range(steps)], 'batch_means': batch_means,
            'running_mean': running, 'batch_size': RUNNING_MEAN_BATCH, 'steps': steps}


# ## Reduced axes
AXES_SHAPE = (4, 3, 4, 4)
AXES_CHANNEL = 1


def axes_values() -> Dict:
    x = torch.randn(AXES_SHAPE)
    bn = BatchNorm(AXES_SHAPE[1]).train()
    bn(x)
    return {'shape': list(x.shape), 'channel': AXES_CHANNEL,
            'm': x.numel() // x.shape[1], 'statistics': bn.running_mean.numel()}


# ## Which values each normalisation averages over
#
# The [later-work page](../later_work.md) compares batch normalization with the normalisations
# that drop the batch: layer, instance and group normalization. All four compute a mean and a
# variance over some of the values of an `[N, C, H, W]` tensor and differ only in which. The
# picture does not take that from a description: it changes one value of a random tensor
# (example 1, channel 1, first position) and marks every output of `torch.nn.functional`'s
# normalisation that moves. Those are the values that share that value's statistics.
NORM_SHAPE = (4, 6, 3, 3)
NORM_GROUPS = 3
NORMS = ('batch', 'layer', 'instance', 'group')


def _normalise(kind: str, x: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F
    if kind == 'batch':
        return F.batch_norm(x, None, None, training=True)
    if kind == 'layer':
        return F.layer_norm(x, x.shape[1:])
    if kind == 'instance':
        return F.instance_norm(x)
    return F.group_norm(x, NORM_GROUPS)


def norm_axes_values(seed: int = 0) -> Dict:
    """For each normalisation, the `[N, C]` cells (example, channel) whose outputs share the
    statistics of example 1, channel 1; the values per statistic and the number of statistics."""
    x = torch.randn(NORM_SHAPE, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    nudged = x.clone()
    nudged[0, 0, 0, 0] += 1.
    values = {'shape': list(NORM_SHAPE), 'groups': NORM_GROUPS}
    for kind in NORMS:
        moved = (_normalise(kind, nudged) - _normalise(kind, x)).abs() > 1e-9
        # A cell is in the set with all its height × width positions, or with none
        cells = moved.flatten(2)
        if not bool((cells.all(dim=2) | ~cells.any(dim=2)).all()):
            raise ValueError(f'{kind} normalization shares statistics across part of a channel')
        shared = cells.all(dim=2)
        m = int(moved.sum())
        values[kind] = {'cells': shared.int().tolist(), 'm': m,
                        'statistics': x.numel() // m}
    return values


# ## Drawing
#
# The BatchNorm page shows these pictures in its notes column, about 420 CSS pixels wide
# beside the code. Each figure is about 4.5 inches wide, which an SVG shows at about 430 pixels,
# so a font size of 8 points appears as about 11 pixels: readable without zooming.
def _card(plt, width: float, height: float):
    """A figure with a white card background, so that it reads on light and dark pages."""
    fig = plt.figure(figsize=(width, height))
    fig.patch.set_facecolor('white')
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    return fig, ax


def _sheet(ax, x0, y0, w, h, skew, rows, cols, face, edge, lw=0.8, zorder=1):
    """An $H \\times W$ grid drawn as a slanted sheet, lower left corner at (x0, y0)."""
    from matplotlib.patches import Polygon
    corners = [(x0, y0), (x0 + w, y0), (x0 + w + skew, y0 + h), (x0 + skew, y0 + h)]
    ax.add_patch(Polygon(corners, closed=True, facecolor=face, edgecolor=edge, lw=lw,
                         zorder=zorder))
    for r in range(1, rows):
        t = r / rows
        ax.plot([x0 + skew * t, x0 + w + skew * t], [y0 + h * t, y0 + h * t], color=edge,
                lw=lw * 0.5, zorder=zorder)
    for c in range(1, cols):
        t = c / cols
        ax.plot([x0 + w * t, x0 + w * t + skew], [y0, y0 + h], color=edge, lw=lw * 0.5,
                zorder=zorder)


def draw_axes(values: Dict, path: Path, stamp_text=None) -> Path:
    from labml_nn_bn.figure_tools import pyplot, save_svg
    from matplotlib.patches import FancyBboxPatch
    plt = pyplot()
    b, c, h, w = values['shape']
    channel = values['channel']
    fig, ax = _card(plt, 4.6, 2.72)
    sheet_w, sheet_h, skew, gap_y, gap_x = 0.9, 0.42, 0.32, 0.62, 1.45
    left, top = 1.0, 2.55
    for i in range(b):
        for k in range(c):
            x0 = left + i * gap_x
            y0 = top - k * gap_y
            chosen = k == channel
            _sheet(ax, x0, y0, sheet_w, sheet_h, skew, h, w,
                   face=INDIGO_LIGHT if chosen else GREY_LIGHT,
                   edge=INDIGO if chosen else GREY, lw=1.1 if chosen else 0.8)
        ax.text(left + i * gap_x + (sheet_w + skew) / 2, top + sheet_h + 0.18, f'example {i + 1}',
                ha='center', va='bottom', fontsize=9, color=INK)
    for k in range(c):
        chosen = k == channel
        ax.text(left - 0.2, top - k * gap_y + sheet_h / 2, f'channel {k + 1}', ha='right',
                va='center', fontsize=9, color=INDIGO if chosen else '#607D8B',
                fontweight='bold' if chosen else 'normal')
    # The values one channel's statistics are over: the same sheet in every example
    y_sel = top - channel * gap_y
    ax.add_patch(FancyBboxPatch((left - 0.08, y_sel - 0.09), (b - 1) * gap_x + sheet_w + skew + 0.16,
                                sheet_h + 0.18, boxstyle='round,pad=0.02,rounding_size=0.08',
                                facecolor='none', edgecolor=INDIGO, lw=1.4, ls=(0, (4, 2)),
                                zorder=3))
    ax.text(left + 0.5 * ((b - 1) * gap_x + sheet_w + skew), top - (c - 1) * gap_y - 0.3,
            f'one $\\mu_\\mathcal{{B}}$, $\\sigma^2_\\mathcal{{B}}$ per channel: $m$ = {b} examples'
            f' × {h} × {w} positions = {values["m"]} values',
            ha='center', va='top', fontsize=9.5, color=INDIGO)
    ax.text(left + 0.5 * ((b - 1) * gap_x + sheet_w + skew), top - (c - 1) * gap_y - 0.68,
            f'[N, C, H, W] = [{b}, {c}, {h}, {w}]: '
            f'{values["statistics"]} means and {values["statistics"]} variances',
            ha='center', va='top', fontsize=8.5, color='#546E7A')
    ax.set_xlim(0, 6.75)
    ax.set_ylim(0.3, 3.4)
    return save_svg(fig, path, stamp_text)


def _block(ax, x0, y0, cells, cell, depth, label_axes: bool):
    """An `[N, C, H × W]` block: examples across, channels down, positions going back; the
    cells set in `cells` ([N][C]) highlighted on every face that shows them."""
    from matplotlib.patches import Polygon
    n, c = len(cells), len(cells[0])
    dx, dy = depth

    def face(corners, on):
        ax.add_patch(Polygon(corners, closed=True, lw=0.6 if not on else 0.9,
                             facecolor=INDIGO_LIGHT if on else GREY_LIGHT,
                             edgecolor=INDIGO if on else GREY, zorder=3 if on else 2))

    top = y0 + c * cell
    for i in range(n):
        for k in range(c):
            left, bottom = x0 + i * cell, top - (k + 1) * cell
            face([(left, bottom), (left + cell, bottom), (left + cell, bottom + cell),
                  (left, bottom + cell)], cells[i][k])
        # The top face shows channel 1 of each example
        left = x0 + i * cell
        face([(left, top), (left + cell, top), (left + cell + dx, top + dy), (left + dx, top + dy)],
             cells[i][0])
    right = x0 + n * cell
    for k in range(c):
        # The right face shows the last example's channels
        bottom = top - (k + 1) * cell
        face([(right, bottom), (right + dx, bottom + dy), (right + dx, bottom + cell + dy),
              (right, bottom + cell)], cells[n - 1][k])
    if label_axes:
        ax.annotate('', (x0 + n * cell, y0 - 0.1), (x0, y0 - 0.1),
                    arrowprops=dict(arrowstyle='->', color='#546E7A', lw=0.8))
        ax.text(x0 + n * cell / 2, y0 - 0.14, 'N: examples', ha='center', va='top',
                fontsize=7.5, color='#546E7A')
        ax.annotate('', (x0 - 0.1, y0), (x0 - 0.1, top),
                    arrowprops=dict(arrowstyle='->', color='#546E7A', lw=0.8))
        ax.text(x0 - 0.14, y0 + c * cell / 2, 'C: channels', ha='right', va='center',
                fontsize=7.5, color='#546E7A', rotation=90)
        ax.text(right + dx + 0.05, top + dy / 2 - 0.04, 'height × width:\npositions', ha='left',
                va='center', fontsize=7.5, color='#546E7A')


def draw_norm_axes(values: Dict, path: Path, stamp_text=None) -> Path:
    from labml_nn_bn.figure_tools import pyplot, save_svg
    plt = pyplot()
    fig, ax = _card(plt, 4.6, 4.4)
    n, c, h, w = values['shape']
    titles = {'batch': 'Batch norm', 'layer': 'Layer norm', 'instance': 'Instance norm',
              'group': f'Group norm ({values["groups"]} groups)'}
    over = {'batch': 'one channel, all examples', 'layer': 'one example, all channels',
            'instance': 'one example, one channel',
            'group': 'one example, one group of channels'}
    cell, depth = 0.2, (0.42, 0.3)
    for j, kind in enumerate(NORMS):
        column, row = j % 2, j // 2
        x0, y0 = 0.5 + column * 2.5, 2.55 - row * 2.4
        v = values[kind]
        _block(ax, x0, y0, v['cells'], cell, depth, label_axes=j == 0)
        centre = x0 + (n * cell + depth[0]) / 2
        title_y = y0 + c * cell + depth[1] + 0.32
        ax.text(centre, title_y, titles[kind], ha='center', va='bottom', fontsize=9.5,
                color=INK, fontweight='bold')
        ax.text(centre, title_y - 0.04, over[kind], ha='center', va='top', fontsize=7.5,
                color=INDIGO)
        ax.text(x0 + n * cell + depth[0] + 0.08, y0 + 0.1,
                f'{v["statistics"]} means,\n{v["m"]} values each', ha='left',
                va='bottom', fontsize=7.5, color='#546E7A')
    ax.text(2.55, 0.02, f'[N, C, H, W] = [{n}, {c}, {h}, {w}]; highlighted: the values that share '
            f'the statistics of example 1, channel 1', ha='center', va='bottom', fontsize=7,
            color='#546E7A')
    ax.set_xlim(0, 5.1)
    ax.set_ylim(-0.05, 4.75)
    return save_svg(fig, path, stamp_text)


def _fmt(v: float) -> str:
    # Three decimals, and no "-0.000"
    text = f'{v:.3f}'
    return '0.000' if text == '-0.000' else text.replace('-', '−')


def _number(v: float) -> str:
    # A value that is a short decimal (the data, and statistics of it that come out round)
    # as it is, otherwise with three decimals
    return f'{v:g}'.replace('-', '−') if abs(v - round(v, 3)) < 1e-9 else _fmt(v)


def draw_worked_example(values: Dict, path: Path, stamp_text: str) -> Path:
    from labml_nn_bn.figure_tools import pyplot, save_svg
    from matplotlib.patches import FancyArrowPatch, Rectangle
    plt = pyplot()
    fig, ax = _card(plt, 4.6, 2.56)
    cell_w, cell_h = 0.68, 0.3
    faces = [INDIGO_PALE, TEAL_LIGHT]
    edges = [INDIGO, TEAL]
    blocks = [
        ('$x$', values['x'], [('$\\mu_\\mathcal{B}$', values['mean']),
                              ('$\\sigma^2_\\mathcal{B}$', values['var'])]),
        ('$\\hat{x} = \\dfrac{x - \\mu_\\mathcal{B}}{\\sqrt{\\sigma^2_\\mathcal{B} + \\epsilon}}$',
         values['x_hat'], [('$\\mu$', values['x_hat_mean']), ('$\\sigma^2$', values['x_hat_var'])]),
        ('$y = \\gamma\\,\\hat{x} + \\beta$', values['y'],
         [('$\\gamma$', values['gamma']), ('$\\beta$', values['beta'])]),
    ]
    m = len(values['x'])
    top = 2.45
    starts = [0.55, 2.35, 4.15]
    for (title, grid, rows), x0 in zip(blocks, starts):
        ax.text(x0 + cell_w, top + 0.22, title, ha='center', va='bottom', fontsize=9.5, color=INK)
        for i in range(m):
            for k in range(2):
                y0 = top - (i + 1) * cell_h
                ax.add_patch(Rectangle((x0 + k * cell_w, y0), cell_w, cell_h, facecolor=faces[k],
                                       edgecolor='white', lw=1.5))
                ax.text(x0 + (k + 0.5) * cell_w, y0 + cell_h / 2, _fmt(grid[i][k]) if x0 > 1
                        else _number(grid[i][k]), ha='center', va='center', fontsize=8, color=INK)
        # Per-feature rows under the grid
        for r, (label, row) in enumerate(rows):
            y0 = top - (m + 1) * cell_h - 0.12 - r * cell_h
            for k in range(2):
                ax.add_patch(Rectangle((x0 + k * cell_w, y0), cell_w, cell_h, facecolor='white',
                                       edgecolor=edges[k], lw=0.9))
                ax.text(x0 + (k + 0.5) * cell_w, y0 + cell_h / 2,
                        _fmt(row[k]) if x0 > 1 and x0 < 3 else _number(row[k]),
                        ha='center', va='center', fontsize=8, color=edges[k])
            ax.text(x0 - 0.06, y0 + cell_h / 2, label, ha='right', va='center', fontsize=8,
                    color='#546E7A')
    for x0, x1 in zip(starts[:-1], starts[1:]):
        ax.add_patch(FancyArrowPatch((x0 + 2 * cell_w + 0.08, top - m * cell_h / 2),
                                     (x1 - 0.08, top - m * cell_h / 2), arrowstyle='-|>',
                                     mutation_scale=12, color=GREY, lw=1.2))
    for k, (face, edge) in enumerate(zip(faces, edges)):
        ax.text(starts[0] + (k + 0.5) * cell_w, top + 0.02, f'feature {k + 1}', ha='center',
                va='bottom', fontsize=7, color=edge)
    ax.text(0.1, top - m * cell_h / 2, f'$m = {m}$', ha='left', va='center', fontsize=8.5,
            color='#546E7A', rotation=90)
    ax.set_xlim(0, 5.6)
    ax.set_ylim(0.05, 3.15)
    return save_svg(fig, path, stamp_text)


def _text_row(fig, ax, centre: float, y: float, parts, fontsize: float, gap: float = 0.07):
    """Texts of different colours side by side, measured so that they neither overlap nor
    drift apart, the row centred on `centre` (data coordinates)."""
    renderer = fig.canvas.get_renderer()
    to_data = ax.transData.inverted()
    texts, x = [], 0.
    for text, colour in parts:
        t = ax.text(x, y, text, ha='left', va='center', fontsize=fontsize, color=colour)
        box = t.get_window_extent(renderer=renderer)
        (x0, _), (x1, _) = to_data.transform([(box.x0, box.y0), (box.x1, box.y1)])
        texts.append(t)
        x += (x1 - x0) + gap
    shift = centre - (x - gap) / 2
    for t in texts:
        t.set_x(t.get_position()[0] + shift)


def draw_graph(path: Path, stamp_text=None) -> Path:
    from labml_nn_bn.figure_tools import pyplot, save_svg
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    plt = pyplot()
    fig, ax = _card(plt, 4.5, 3.53)

    def box(x, y, w, h, edge=INK, face='white', lw=1.1):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                                    boxstyle='round,pad=0.02,rounding_size=0.1',
                                    facecolor=face, edgecolor=edge, lw=lw, zorder=3))

    def arrow(a, b, colour, lw=2., rad=0., ls='-'):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle='-|>', mutation_scale=13, color=colour,
                                     lw=lw, shrinkA=0, shrinkB=0,
                                     connectionstyle=f'arc3,rad={rad}', ls=ls, zorder=2))

    # $x_i$, the two statistics, and the whole batch of $\hat{x}_j$ and $y_j$: the statistics
    # feed every normalised value, not only $\hat{x}_i$
    x_i, mu, var = (0.5, 1.9), (1.95, 3.15), (1.95, 0.65)
    for (x, y), label in ((x_i, '$x_i$'), (mu, '$\\mu_\\mathcal{B}$'),
                          (var, '$\\sigma^2_\\mathcal{B}$')):
        box(x, y, 0.62, 0.44)
        ax.text(x, y, label, ha='center', va='center', fontsize=12, color=INK, zorder=4)
    column_y = {'1': 2.85, 'i': 1.9, 'm': 0.95}
    for x, name in ((3.55, '\\hat{x}'), (4.65, 'y')):
        box(x, 1.9, 0.66, 2.55)
        ax.add_patch(FancyBboxPatch((x - 0.25, 1.9 - 0.19), 0.5, 0.38,
                                    boxstyle='round,pad=0.01,rounding_size=0.08',
                                    facecolor=INDIGO_PALE, edgecolor='none', zorder=3.5))
        for j, y in column_y.items():
            ax.text(x, y, f'${name}_{j}$', ha='center', va='center', fontsize=11, color=INK,
                    zorder=4)
        for y in (2.4, 1.42):
            ax.text(x, y, '$\\vdots$', ha='center', va='center', fontsize=10, color=GREY,
                    zorder=4)
    box(5.5, 1.9, 0.44, 0.44)
    ax.text(5.5, 1.9, '$\\ell$', ha='center', va='center', fontsize=12, color=INK, zorder=4)

    # The three paths from $x_i$ to the loss
    arrow((x_i[0] + 0.33, x_i[1]), (3.55 - 0.27, 1.9), INDIGO)
    arrow((x_i[0] + 0.1, x_i[1] + 0.24), (mu[0] - 0.33, mu[1]), TEAL, rad=-0.25)
    arrow((mu[0] + 0.33, mu[1]), (3.55 - 0.35, 2.75), TEAL, rad=-0.15)
    arrow((x_i[0] + 0.1, x_i[1] - 0.24), (var[0] - 0.33, var[1]), ORANGE, rad=0.25)
    arrow((var[0] + 0.33, var[1]), (3.55 - 0.35, 1.05), ORANGE, rad=0.15)
    # $\sigma^2_\mathcal{B}$ also depends on $\mu_\mathcal{B}$; in the backward pass this term
    # sums to zero
    arrow((mu[0], mu[1] - 0.24), (var[0], var[1] + 0.24), GREY, lw=1., ls=(0, (3, 2)))
    ax.text(mu[0] + 0.07, 2.55, '$\\sigma^2_\\mathcal{B}$ uses $\\mu_\\mathcal{B}$:\nthis term is 0',
            ha='left', va='center', fontsize=7.5, color='#78909C')
    arrow((3.55 + 0.35, 1.9), (4.65 - 0.35, 1.9), INK, lw=1.3)
    arrow((4.65 + 0.35, 1.9), (5.5 - 0.24, 1.9), INK, lw=1.3)
    ax.text(4.1, 1.98, '$\\gamma, \\beta$', ha='center', va='bottom', fontsize=9,
            color='#546E7A')
    ax.text(2.62, 1.98, 'directly', ha='center', va='bottom', fontsize=8.5, color=INDIGO)
    ax.text(2.75, 3.2, 'through $\\mu_\\mathcal{B}$,\nto every $\\hat{x}_j$', ha='left',
            va='bottom', fontsize=8.5, color=TEAL)
    ax.text(2.75, 0.6, 'through $\\sigma^2_\\mathcal{B}$,\nto every $\\hat{x}_j$', ha='left',
            va='top', fontsize=8.5, color=ORANGE)

    # What each path contributes to $\partial \ell / \partial x_i$ (Section 3 of the paper),
    # in the colour of its path, as one centred row
    ax.set_xlim(0, 5.8)
    ax.set_ylim(-0.95, 3.6)
    _text_row(fig, ax, 2.9, -0.45, [
        ('$\\dfrac{\\partial \\ell}{\\partial x_i} =$', INK),
        ('$\\dfrac{\\partial \\ell}{\\partial \\hat{x}_i}'
         '\\dfrac{1}{\\sqrt{\\sigma^2_\\mathcal{B} + \\epsilon}}$', INDIGO),
        ('$+$', INK),
        ('$\\dfrac{\\partial \\ell}{\\partial \\mu_\\mathcal{B}}\\dfrac{1}{m}$', TEAL),
        ('$+$', INK),
        ('$\\dfrac{\\partial \\ell}{\\partial \\sigma^2_\\mathcal{B}}'
         '\\dfrac{2(x_i - \\mu_\\mathcal{B})}{m}$', ORANGE),
    ], fontsize=10)
    return save_svg(fig, path, stamp_text)


def draw_running_mean(values: Dict, path: Path, stamp_text: str) -> Path:
    from labml_nn_bn.figure_tools import pyplot, save_svg
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 2.9))
    steps = range(1, values['steps'] + 1)
    ax.plot(steps, values['batch_means'], ls='none', marker='o', ms=2.2, color=GREY, alpha=0.8,
            label=f'batch means ({values["batch_size"]} values each)')
    ax.plot(steps, values['true_mean'], color=INK, lw=1, ls=(0, (4, 3)), label='true mean')
    ax.plot(steps, values['running_mean']['0.1'], color=INDIGO, lw=2,
            label='running mean, momentum = 0.1')
    ax.plot(steps, values['running_mean']['None'], color=ORANGE, lw=2,
            label='running mean, momentum = None')
    ax.set_xlabel('training step', fontsize=8.5)
    ax.set_ylabel('mean of the feature', fontsize=8.5)
    ax.tick_params(labelsize=7.5)
    ax.grid(alpha=0.3)
    for side in ('top', 'right'):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=7.5, frameon=False, loc='lower right')
    ax.set_xlim(0, values['steps'])
    fig.tight_layout()
    return save_svg(fig, path, stamp_text)


def draw_train_eval(values: Dict, path: Path, stamp_text: str) -> Path:
    from labml_nn_bn.figure_tools import pyplot, save_svg
    plt = pyplot()
    fig, (ax_in, ax_out) = plt.subplots(2, 1, figsize=(4.5, 3.7),
                                        gridspec_kw={'height_ratios': [2, 4]})
    batch_colours = [INDIGO, TEAL]
    star = values['x_star']

    def lane(ax, y, points, colour, star_value, label):
        others = [p for n, p in enumerate(points) if n != 0]
        ax.axhline(y, color=GREY_LIGHT, lw=6, zorder=0, solid_capstyle='round')
        ax.plot(others, [y] * len(others), 'o', ms=6, color=colour, alpha=0.45, mew=0)
        ax.plot([star_value], [y], marker='*', ms=14, color=colour, mec='white', mew=0.8)
        ax.text(star_value, y + 0.22, _fmt(star_value), ha='center', va='bottom', fontsize=7.5,
                color=colour)
        ax.text(-0.02, y, label, ha='right', va='center', fontsize=8, color=INK,
                transform=ax.get_yaxis_transform())

    for n, batch in enumerate(values['batches']):
        lane(ax_in, 1 - n, batch, batch_colours[n], batch[0], f'batch {"AB"[n]}')
    rows = [('train, batch A', values['train'][0], 0), ('train, batch B', values['train'][1], 1),
            ('eval, batch A', values['eval'][0], 0), ('eval, batch B', values['eval'][1], 1)]
    for r, (label, out, n) in enumerate(rows):
        lane(ax_out, 3 - r, out, batch_colours[n], out[0], label)
    ax_in.set_title(f'input: the same example $x^* = {star:g}$ (★) in two batches',
                    fontsize=8.5, loc='left', color=INK)
    ax_out.set_title('output of BatchNorm(1): train mode uses the batch statistics,\n'
                     'eval mode the running statistics the two batches left', fontsize=8.5,
                     loc='left', color=INK)
    ax_out.axhline(1.55, color=GREY, lw=0.6, ls=':')
    for ax in (ax_in, ax_out):
        ax.set_yticks([])
        for side in ('top', 'right', 'left'):
            ax.spines[side].set_visible(False)
        ax.tick_params(labelsize=8)
    ax_in.set_ylim(-0.6, 1.8)
    ax_out.set_ylim(-0.6, 3.8)
    ax_out.text(1.0, 2.5, 'two outputs for $x^*$', transform=ax_out.get_yaxis_transform(),
                ha='right', va='center', fontsize=7.5, color='#546E7A')
    ax_out.text(1.0, 0.5, 'one output for $x^*$', transform=ax_out.get_yaxis_transform(),
                ha='right', va='center', fontsize=7.5, color='#546E7A')
    fig.tight_layout(h_pad=0.8)
    fig.subplots_adjust(left=0.22, right=0.98)
    return save_svg(fig, path, stamp_text)


# ## The figure maker
FILES = ['bn_axes.svg', 'bn_worked_example.svg', 'bn_graph.svg', 'bn_running_mean.svg',
         'bn_train_eval.svg', 'norm_axes.svg']
# The pictures that show how the computation is laid out, not what it gave: no stamp
DIAGRAMS = ['bn_axes.svg', 'bn_graph.svg', 'norm_axes.svg']


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    """The figure maker `batch_norm_pictures` (see `labml_nn_bn.figures`): the six SVGs and
    `batch_norm_pictures.json`. They are cheap, so a smoke run draws the same pictures."""
    from labml_nn_bn.figure_tools import computed_stamp, describe_device, save_values
    torch.manual_seed(0)
    out_dir = Path(out_dir)
    device = describe_device('cpu')
    values = {
        'axes': axes_values(),
        'worked_example': worked_example_values(),
        'train_eval': train_eval_values(),
        'running_mean': running_mean_values(),
        'norm_axes': norm_axes_values(),
    }
    paths = [
        draw_axes(values['axes'], out_dir / 'bn_axes.svg', None),
        draw_worked_example(values['worked_example'], out_dir / 'bn_worked_example.svg',
                            computed_stamp('BatchNorm on WORKED_EXAMPLE', device)),
        draw_graph(out_dir / 'bn_graph.svg', None),
        draw_running_mean(values['running_mean'], out_dir / 'bn_running_mean.svg',
                          computed_stamp(f'BatchNorm, {RUNNING_MEAN_STEPS} batches of '
                                         f'{RUNNING_MEAN_BATCH}', device)),
        draw_train_eval(values['train_eval'], out_dir / 'bn_train_eval.svg',
                        computed_stamp('BatchNorm(1), 2 batches of 3', device)),
        draw_norm_axes(values['norm_axes'], out_dir / 'norm_axes.svg', None),
    ]
    json_values = dict(values)
    running = values['running_mean']
    # The JSON keeps the running means' end points, not every step
    # (for more momenta than the picture draws), and the batch means and true means, which
    # the live running-mean figure on the page redraws for any momentum
    checked = running_mean_values(momenta=RUNNING_MEAN_CHECKED_MOMENTA)['running_mean']
    json_values['running_mean'] = {
        'final': {k: v[-1] for k, v in checked.items()},
        'at_step_100': {k: v[99] for k, v in checked.items()},
        'steps': running['steps'], 'batch_size': running['batch_size'],
        'batch_means': running['batch_means'], 'true_mean': running['true_mean'],
    }
    paths.append(save_values(out_dir / 'batch_norm_pictures.json', json_values,
                             computed_stamp('labml_nn_bn.batch_norm_pictures', device)))
    return paths
