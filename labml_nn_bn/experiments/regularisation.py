r"""
---
title: Batch normalization and Dropout
summary: >
  Four fully connected networks on 4,000 MNIST digits: neither, Dropout only, batch
  normalization only, both. Train and test accuracy, the generalisation gap, and the paper's
  mechanism measured directly: how much one example's output moves with the mini-batch it is in.
---

# Batch normalization and Dropout

**The paper's claim** (Section 3.4, "Batch Normalization regularizes the model"). While a
batch-normalised network trains, an example is never seen on its own: its hidden units are
normalised with the mean and variance of the mini-batch it happens to be in, so the network
no longer gives a deterministic output for it. The paper found this good for generalisation,
and says that where Dropout is normally used against overfitting, a batch-normalised
network can do with less of it, or none. For BN-Inception (Section 4.2.1) the authors
removed Dropout, which they report sped up training without increasing overfitting; among
the other changes they cut the L2 weight decay by a factor of 5 and shuffled the training
examples more thoroughly, so that the same examples do not keep meeting in a mini-batch
(worth about 1% of validation accuracy, they report). The paper gives no ablation of Dropout
against batch normalization. This claim is one row of [the claims page](../../claims.md).
The symbols ($\mu_\mathcal{B}$, $\sigma^2_\mathcal{B}$, ...) are the site's
[notation](../../notation.md).

**What we test, and how.** A setting in which overfitting is easy to see: the 4,000 training
images of the offline MNIST subset and a fully connected ReLU network of two hidden layers of
256 units, which learns (almost) every training image before the end. We train it four ways, from
the same five seeds and on the same batches:

* **none**: neither Dropout nor batch normalization;
* **dropout**: Dropout with $p = 0.5$ after each hidden ReLU;
* **bn**: batch normalization before each hidden ReLU (and no bias in the linear layer under it);
* **both**: batch normalization before, and Dropout after, each hidden ReLU.

After every epoch we measure, in evaluation mode, the accuracy and loss on the whole training
set and on the 1,000 test images. The *generalisation gap* is the training accuracy minus the
test accuracy, both in evaluation mode (so batch normalization uses its population statistics,
the running averages of mean and variance collected during training, and Dropout is off),
so a gap of 5% means 5 percentage points of accuracy. The curves are
the median over the five seeds, the bands their range.

We also measure the paper's mechanism directly. At a few points in training we take a fixed
probe of 512 training examples and put each one into 20 different random mini-batches of the
training size, drawn from the training set. With batch normalization in training mode (and
Dropout switched off), the example's logits change from batch to batch: that is the batch
noise of Section 3.4. With Dropout in training mode (and batch normalization using its
population statistics), the logits change from mask to mask: Dropout's noise. We report each
as the spread of one example's logits across draws, relative to the spread of logits between
examples, so that the two noises are on the same scale.

```bash
python -m labml_nn_bn.experiments.regularisation           # 4 networks x 5 seeds, 40 epochs
python -m labml_nn_bn.experiments.regularisation --smoke   # seconds
python -m labml_nn_bn.experiments.regularisation --help
```

![Train and test accuracy, the generalisation gap, the test loss and the noise of one example's output, for networks with neither, Dropout, batch normalization, or both](../../figures/regularisation.svg)

### What the figure shows

*Our reading of our run* (data set, epochs and device are stamped under the figure; the values
are in `docs/figures/regularisation.json`). Look first at (b), where the red curve of the
plain network sits above the other three, and at (d), where the two dashed curves of Dropout's
noise sit far above the two solid ones of batch normalization's. Unless said otherwise, each
number below is the median over the five seeds at the last epoch, with the range over the
seeds in parentheses; the test set has 1,000 images, so one image is 0.1%.

* **Every network learns the training set.** At the end, the four networks classify
  <!-- measured regularisation:summary.train.none.median .2% -->100.00%<!-- /measured -->,
  <!-- measured regularisation:summary.train.dropout.median .2% -->100.00%<!-- /measured -->,
  <!-- measured regularisation:summary.train.bn.median .2% -->100.00%<!-- /measured --> and
  <!-- measured regularisation:summary.train.both.median .2% -->99.98%<!-- /measured --> of
  the training images correctly (none, Dropout, batch norm, both), so the gap is in effect the test error.
* **(a, b) Batch normalization alone narrows the gap as much as Dropout alone.** The gap is
  <!-- measured regularisation:summary.gap.none.median .1% -->5.8%<!-- /measured -->
  (<!-- measured regularisation:summary.gap.none.min .1% -->5.2%<!-- /measured --> to
  <!-- measured regularisation:summary.gap.none.max .1% -->6.1%<!-- /measured -->) without
  either, <!-- measured regularisation:summary.gap.dropout.median .1% -->4.4%<!-- /measured -->
  (<!-- measured regularisation:summary.gap.dropout.min .1% -->3.8%<!-- /measured --> to
  <!-- measured regularisation:summary.gap.dropout.max .1% -->4.5%<!-- /measured -->) with
  Dropout, <!-- measured regularisation:summary.gap.bn.median .1% -->4.3%<!-- /measured -->
  (<!-- measured regularisation:summary.gap.bn.min .1% -->4.1%<!-- /measured --> to
  <!-- measured regularisation:summary.gap.bn.max .1% -->4.6%<!-- /measured -->) with batch
  normalization and <!-- measured regularisation:summary.gap.both.median .1% -->4.6%<!-- /measured -->
  (<!-- measured regularisation:summary.gap.both.min .1% -->4.2%<!-- /measured --> to
  <!-- measured regularisation:summary.gap.both.max .1% -->4.9%<!-- /measured -->) with both.
  The test accuracies are
  <!-- measured regularisation:summary.test.none.median .1% -->94.2%<!-- /measured -->,
  <!-- measured regularisation:summary.test.dropout.median .1% -->95.6%<!-- /measured -->,
  <!-- measured regularisation:summary.test.bn.median .1% -->95.7%<!-- /measured --> and
  <!-- measured regularisation:summary.test.both.median .1% -->95.4%<!-- /measured -->
  (the best epoch of each run gives
  <!-- measured regularisation:summary.best_test.none.median .1% -->94.5%<!-- /measured -->,
  <!-- measured regularisation:summary.best_test.dropout.median .1% -->95.9%<!-- /measured -->,
  <!-- measured regularisation:summary.best_test.bn.median .1% -->96.0%<!-- /measured --> and
  <!-- measured regularisation:summary.best_test.both.median .1% -->95.8%<!-- /measured -->).
  For the gap and for the test accuracy alike, the ranges of the three regularised networks
  overlap, and none of them overlaps the plain network's.
* **Both together are no better than either.** Adding Dropout to the batch-normalised network
  did not lower its gap or raise its test accuracy; if anything both moved the wrong way, by
  less than the spread over seeds. Read the other way round, this is the paper's practical
  advice: in a batch-normalised network, Dropout can be removed at no cost here.
* **(c) The test loss shows overfitting sooner than the accuracy.** The plain network's test
  loss is lowest, <!-- measured regularisation:summary.min_test_loss.none.median .3f -->0.227<!-- /measured -->,
  at epoch <!-- measured regularisation:summary.min_test_loss_epoch.none.median d -->12<!-- /measured -->
  and climbs to <!-- measured regularisation:summary.test_loss.none.median .3f -->0.276<!-- /measured -->
  by the end, while its test accuracy stays level: our reading is that its predictions grow
  more confident, the wrong ones included. The end values of the others are
  <!-- measured regularisation:summary.test_loss.dropout.median .3f -->0.223<!-- /measured -->
  (Dropout), <!-- measured regularisation:summary.test_loss.bn.median .3f -->0.183<!-- /measured -->
  (batch normalization) and <!-- measured regularisation:summary.test_loss.both.median .3f -->0.200<!-- /measured -->
  (both). By this measure batch normalization alone does best; its test loss reaches its
  lowest, <!-- measured regularisation:summary.min_test_loss.bn.median .3f -->0.166<!-- /measured -->,
  at epoch <!-- measured regularisation:summary.min_test_loss_epoch.bn.median d -->10<!-- /measured -->
  (each number the median over seeds).
* **(d) Batch noise is real, and smaller than Dropout's.** Put into different random
  mini-batches of 64, a typical (the median) training example's logits spread by
  <!-- measured regularisation:noise.bn_batch.relative.median .3f -->0.146<!-- /measured -->
  (<!-- measured regularisation:noise.bn_batch.relative.min .3f -->0.145<!-- /measured --> to
  <!-- measured regularisation:noise.bn_batch.relative.max .3f -->0.150<!-- /measured -->)
  of the spread between examples, and about as much at every point of training (after epoch
  1: <!-- measured regularisation:noise.bn_batch.relative_curve.median.0 .3f -->0.146<!-- /measured -->).
  Dropout's masks spread them by
  <!-- measured regularisation:noise.dropout_mask.relative.median .3f -->0.380<!-- /measured -->
  (<!-- measured regularisation:noise.dropout_mask.relative.min .3f -->0.376<!-- /measured --> to
  <!-- measured regularisation:noise.dropout_mask.relative.max .3f -->0.391<!-- /measured -->;
  after epoch 1: <!-- measured regularisation:noise.dropout_mask.relative_curve.median.0 .3f -->0.468<!-- /measured -->).
  In the network with both, the two noises are
  <!-- measured regularisation:noise.both.bn_batch.relative.median .3f -->0.138<!-- /measured -->
  and <!-- measured regularisation:noise.both.dropout_mask.relative.median .3f -->0.387<!-- /measured -->.
  In plainer terms: after epoch 1 the mini-batch changes the predicted class of
  <!-- measured regularisation:noise.bn_batch.flipped_curve.median.0 .1% -->11.9%<!-- /measured -->
  of the probe's training examples in at least one of the 20 draws, and after the last
  epoch that of <!-- measured regularisation:noise.bn_batch.flipped.median .1% -->0.0%<!-- /measured -->;
  Dropout's masks change that of
  <!-- measured regularisation:noise.dropout_mask.flipped_curve.median.0 .1% -->74.0%<!-- /measured -->
  after epoch 1, and of <!-- measured regularisation:noise.dropout_mask.flipped.median .1% -->11.7%<!-- /measured -->
  after the last.

**The paper's claim, here.** Batch normalization regularises: on its own it narrows the
generalisation gap as much as Dropout with $p = 0.5$ does, and in a batch-normalised network
Dropout can be removed without any loss (in our run, removing it helped slightly, within the
spread). The mechanism the paper names is there: a training example's output does depend on
its mini-batch.

**Our view.** The batch noise is well under half of Dropout's noise, and it changes almost no
prediction once the network has learned, yet the regularising effect is as large. So in this
setting the noise may not be the whole story. Batch normalization also changes the training
itself: the batch-normalised network learns faster (test accuracy after one epoch
<!-- measured regularisation:curves.bn.test_accuracy.median.0 .1% -->91.8%<!-- /measured -->
against <!-- measured regularisation:curves.none.test_accuracy.median.0 .1% -->84.6%<!-- /measured -->
without either). And because a batch norm's output does not change when the weights under it
are scaled (Section 3.3), the same gradient step moves large weights relatively less: without
weight decay those weights grow, and the effective learning rate falls as training goes on
(later work, e.g. van Laarhoven, "L2 Regularization versus Batch and Weight Normalization",
2017, [arXiv:1706.05350](https://arxiv.org/abs/1706.05350); we did not measure it). We have
not separated
these effects; an experiment that keeps batch normalization but removes its batch-to-batch
noise would.

**Later work.** Li, Chen, Hu and Yang ("Understanding the Disharmony between Dropout and
Batch Normalization by Variance Shift", CVPR 2019) showed that Dropout placed before a batch
norm makes the variance the batch norm sees in training differ from the one at inference,
and that this can make the combination worse than batch normalization alone; one remedy
they propose is to apply Dropout only after the last batch norm. Our `both` network does not
follow that advice: the first layer's Dropout feeds the second layer's batch norm (only the
second layer's Dropout comes after the last batch norm). Its slightly worse numbers are
consistent with their finding, but we did not measure the variance shift, and the
difference is within our spread over seeds.

### Where ours differs from the paper, and why a small-scale result may differ

* **The network and the data.** The paper's evidence is BN-Inception, a deep convolutional
  network trained on 1.2 million ImageNet images; ours is a fully connected network of two
  hidden layers on 4,000 digits, which every variant fits (almost) perfectly. With so little
  data the gap is large and easy to see; with the 60,000 images of full MNIST we would expect
  it, and what any regulariser can gain, to be smaller (we have not run that here).
* **The amount of batch noise depends on the layer.** In a convolution, a batch norm takes
  its statistics over the batch and every position of the feature map, $m \cdot p \cdot q$
  values instead of $m$ (Section 3.2), so its statistics move less from batch to batch than in
  our fully connected layers. The noise also grows as the batch shrinks (a test checks it).
  So the ratio of the two noises measured here belongs to this network and this batch of 64.
* **One change at a time.** For BN-Inception the paper removed Dropout, reduced the weight
  decay five-fold and shuffled more thoroughly, together with other changes, and describes the
  effect of each in a sentence, with no ablation table. We compare
  the four combinations with no weight decay at all, reshuffling every epoch as usual, and
  with one learning rate for all four (SGD with momentum 0.9, 0.01), which we did not tune for
  each; a different rate, or a weaker Dropout, could change the ranking of the three
  regularised networks, which lie within about half a point of each other.
* **Seeds and the test set.** Five seeds, one test set of 1,000 images: differences of a few
  tenths of a percent between the three regularised networks are within the noise.

On a GPU,
[the notebook](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/regularisation.ipynb)
runs the same experiment, and can run it on full MNIST (`--dataset mnist` on the command
line).
"""

import argparse
import dataclasses
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from labml_nn_bn import data
from labml_nn_bn.batch_norm import BatchNorm, Module
from labml_nn_bn.experiments import cli, trainer


# ## The four networks
#
# A fully connected network, $784 \to 256 \to 256 \to 10$, with ReLUs. Each hidden layer is
#
# $$h \mapsto \mathrm{Dropout}\big(\mathrm{ReLU}(\mathrm{BN}(W h))\big)$$
#
# with either part left out. Batch normalization goes between the linear map and the
# non-linearity, where the paper puts it (Section 3.2), and the linear map has no bias under
# it: the mean subtraction would cancel the bias, and $\beta$ takes its role. Dropout goes
# after the non-linearity, where it is usually put, and drops each hidden unit with
# probability $p$, scaling the others by $\frac{1}{1 - p}$ so that evaluation needs no change.
NETWORKS = ('none', 'dropout', 'bn', 'both')


class Network(Module):
    """
    * `batch_norm`: our `BatchNorm` before each hidden ReLU
    * `dropout`: the Dropout probability after each hidden ReLU (0: no Dropout)
    """

    def __init__(self, batch_norm: bool, dropout: float, hidden: int = 256, layers: int = 2):
        super().__init__()
        sizes = [28 * 28] + [hidden] * layers
        self.linears = nn.ModuleList(
            nn.Linear(n_in, n_out, bias=not batch_norm) for n_in, n_out in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(
            BatchNorm(n) if batch_norm else nn.Identity() for n in sizes[1:])
        self.drops = nn.ModuleList(
            nn.Dropout(dropout) if dropout > 0 else nn.Identity() for _ in sizes[1:])
        self.output = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # $[B, 1, 28, 28] \to [B, 784]$
        h = x.flatten(1)
        for linear, norm, drop in zip(self.linears, self.norms, self.drops):
            # $[B, 256]$
            h = drop(torch.relu(norm(linear(h))))
        # The logits, $[B, 10]$
        return self.output(h)


def make_network(name: str, settings: 'Settings') -> Network:
    if name not in NETWORKS:
        raise ValueError(f'network must be one of {", ".join(NETWORKS)}, got {name!r}')
    return Network(batch_norm=name in ('bn', 'both'),
                   dropout=settings.dropout if name in ('dropout', 'both') else 0.,
                   hidden=settings.hidden, layers=settings.layers)


# ## Settings
#
# One optimiser and one learning rate for all four networks, so that they differ only in
# their layers: SGD with momentum 0.9 at a fixed rate of 0.01, at which the network without
# either trains steadily (the paper's point that batch normalization allows higher rates is
# tested on [its own page](learning_rate.md)). No weight decay, so that nothing but the two
# layers under test holds back the overfitting; the paper reduced BN-Inception's weight decay.
# The epochs are long enough for every network to learn all 4,000 training images and for the
# test loss to pass its minimum.
#
# **Width and seeds.** Two hidden layers of 256 units already memorise the 4,000 images, and
# cost less than half as much as 512-unit layers on a CPU. The differences we look for are about a
# percentage point, the size of the differences between seeds, so we spend the time on five
# seeds rather than on width. (In a one-seed trial with 512 units, not kept in the figures'
# values, the picture was the same: the three regularised networks' gaps were below the plain
# one's.)
#
# **The data.** The offline subset by default, even where full MNIST could be downloaded: the
# experiment is about overfitting, and 4,000 images are what makes it easy to see.
@dataclass
class Settings:
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 0.01
    momentum: float = 0.9
    dropout: float = 0.5
    hidden: int = 256
    layers: int = 2
    seeds: Tuple[int, ...] = (0, 1, 2, 3, 4)
    networks: Tuple[str, ...] = NETWORKS
    # The epochs after which the noise of the outputs is measured (those beyond `epochs` are
    # dropped; the last epoch is always measured)
    noise_epochs: Tuple[int, ...] = (1, 5, 10, 20, 40)
    # Training examples in the probe, and how many mini-batches (or masks) each one is put in
    probe_size: int = 512
    noise_draws: int = 20
    device: str = 'auto'
    dataset: str = 'mnist-5k'
    data_dir: Optional[str] = None
    download: bool = True
    train_limit: int = 0

    def measured_epochs(self) -> List[int]:
        return sorted({e for e in self.noise_epochs if e <= self.epochs} | {self.epochs})


# ## The noise of one example's output
#
# The probe is $P$ training examples. One *draw* gives each of them an output from the
# network in training mode:
#
# * **batch noise**: batch normalization in training mode, normalising with the statistics of
#   the mini-batch, and Dropout off. Each mini-batch holds half probe examples and half other
#   training examples, drawn afresh for every draw: a mini-batch of the training size, drawn
#   from the training set, as in training. (Half and half keeps the cost down: every
#   mini-batch computed serves $\frac{B}{2}$ probe examples. The probe is the first $P$
#   training images, which are in no particular order (the loader shuffles the offline
#   subset), so a batch made this way is as random as one drawn from the whole set.)
# * **mask noise**: Dropout in training mode, with a fresh mask, and batch normalization using
#   its population statistics, so that the batch does not matter.
#
# Over $K$ draws, example $i$ has logits $z_{i}^{(1)}, \dots, z_{i}^{(K)} \in \mathbb{R}^{10}$.
# Its noise is the spread across draws, $s_i$, the root mean square over the 10 logits of
# their standard deviation across draws. To give it a scale we divide by the spread of the
# logits between examples, $S$: the standard deviation across the probe of the mean logits
# (again the root mean square over the 10). The *relative noise* is $\mathrm{median}_i\, s_i / S$:
# 0 for a deterministic network, and about 1 when an example's output moves across draws as
# much as outputs differ from example to example.
#
# The measurement changes nothing in the run: the running statistics that the training-mode
# forward passes update are put back, and so is the random generator that Dropout draws its
# masks from, so that training goes on exactly as it would have without it (a test checks).
KINDS = ('bn_batch', 'dropout_mask')


def set_noise(model: nn.Module, kind: str):
    """Training mode for the part of the network whose noise `kind` measures, evaluation mode
    for the rest."""
    model.eval()
    for m in model.modules():
        if kind == 'bn_batch' and isinstance(m, BatchNorm):
            m.train()
        elif kind == 'dropout_mask' and isinstance(m, nn.Dropout):
            m.train()
        elif kind not in KINDS:
            raise ValueError(f'noise kind must be one of {", ".join(KINDS)}, got {kind!r}')


@torch.no_grad()
def draw_outputs(model: nn.Module, kind: str, probe_x: torch.Tensor, others_x: torch.Tensor,
                 batch_size: int, draws: int, generator: torch.Generator) -> torch.Tensor:
    """The probe's logits in `draws` draws, $[K, P, 10]$ (see above)."""
    device = probe_x.device
    p = len(probe_x)
    # Probe examples per mini-batch, and the mini-batches that hold them all
    g = max(1, batch_size // 2)
    n_batches = -(-p // g)
    forks = [device] if device.type == 'cuda' else []
    outputs = []
    with trainer.statistics_kept(model):
        with torch.random.fork_rng(devices=forks):
            set_noise(model, kind)
            for _ in range(draws):
                if kind == 'dropout_mask':
                    # The batch does not matter: batch normalization uses population statistics
                    outputs.append(torch.cat([model(xb) for xb in probe_x.split(batch_size)]))
                    continue
                order = torch.randperm(p, generator=generator)
                # The last mini-batch is filled up with probe examples again; only the first
                # output of each example is kept
                slots = torch.cat([order, order[:n_batches * g - p]]).view(n_batches, g)
                # $B - g$ other training examples for each mini-batch; $[N_b, B - g]$
                fill = torch.rand(n_batches, len(others_x), generator=generator) \
                    .argsort(dim=1)[:, :batch_size - g]
                logits = []
                for b in range(n_batches):
                    xb = torch.cat([probe_x[slots[b].to(device)], others_x[fill[b].to(device)]])
                    # Only the probe part of the batch's logits; $[g, 10]$
                    logits.append(model(xb)[:g])
                # $[N_b \cdot g, 10]$, in the order of `slots`; back to the probe's order
                logits = torch.cat(logits)
                out = torch.empty(p, logits.shape[1], device=device)
                out[order.to(device)] = logits[:p]
                outputs.append(out)
    # $[K, P, 10]$
    return torch.stack(outputs)


def noise_of(logits: torch.Tensor) -> Dict[str, float]:
    """
    The relative noise of $[K, P, 10]$ logits, and a reading in plainer terms: the share of
    probe examples whose predicted class is not the same in every draw.
    """
    if logits.dim() != 3 or logits.shape[0] < 2 or logits.shape[1] < 2:
        # A spread needs two draws, and a scale needs two examples
        raise ValueError(f'expected logits of shape [K, P, classes] with K >= 2 draws and '
                         f'P >= 2 examples, got {list(logits.shape)}')
    # $s_i = \sqrt{\frac{1}{10} \sum_c \mathrm{Var}_k\, z^{(k)}_{ic}}$; $[P]$
    within = logits.var(dim=0).mean(dim=1).sqrt()
    # $S = \sqrt{\frac{1}{10} \sum_c \mathrm{Var}_i\, \bar{z}_{ic}}$, $\bar{z}_{ic}$ the mean over draws
    between = logits.mean(dim=0).var(dim=0).mean().sqrt()
    predicted = logits.argmax(dim=2)
    flipped = (predicted != predicted[:1]).any(dim=0)
    return {'relative': (within.median() / between).item(),
            'flipped': flipped.float().mean().item()}


# ## Training one network from one seed
#
# The [shared trainer](trainer.md) runs each epoch: one pass over the training set in
# shuffled mini-batches, in a new order every epoch, so that an example does not keep meeting
# the same others in its mini-batch (what the paper's more thorough shuffling, Section 4.2.1,
# is for). After each epoch both sets are evaluated in
# `eval()` mode. A run whose loss becomes non-finite is a result: it stops and records the
# step; the epochs before it are kept.
@dataclass
class Run:
    network: str
    seed: int
    train_accuracy: List[float] = field(default_factory=list)
    test_accuracy: List[float] = field(default_factory=list)
    train_loss: List[float] = field(default_factory=list)
    test_loss: List[float] = field(default_factory=list)
    # Per noise kind: the epochs measured and `noise_of`'s values at each
    noise: Dict[str, Dict[str, list]] = field(default_factory=dict)
    diverged_at: Optional[int] = None
    seconds: float = 0.

    def gap(self) -> List[float]:
        # The generalisation gap: training accuracy $-$ test accuracy, both in `eval()` mode
        return [a - b for a, b in zip(self.train_accuracy, self.test_accuracy)]


def kinds_of(name: str) -> List[str]:
    """The noises a network has: none for `none`."""
    return [k for k, has in (('bn_batch', name in ('bn', 'both')),
                             ('dropout_mask', name in ('dropout', 'both'))) if has]


def train(settings: Settings, name: str, seed: int, tensors: data.DeviceData,
          on_epoch: Optional[Callable[[int, Dict[str, float]], None]] = None) -> Run:
    generator = trainer.seed_everything(seed)
    model = make_network(name, settings).to(tensors.train_x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate,
                                momentum=settings.momentum)
    # The probe: the first training examples; the rest fill its mini-batches
    probe_x = tensors.train_x[:settings.probe_size]
    others_x = tensors.train_x[settings.probe_size:]
    # Its own generator, so that measuring does not change the order of the training batches
    noise_generator = torch.Generator().manual_seed(seed + 1_000_003)
    measured = settings.measured_epochs()
    steps_per_epoch = len(tensors.train_y) // settings.batch_size
    run = Run(name, seed, noise={k: {'epochs': [], 'relative': [], 'flipped': []}
                                 for k in kinds_of(name)})
    start = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        try:
            trainer.train_epoch(model, optimizer, tensors.train_x, tensors.train_y,
                                settings.batch_size, generator,
                                first_step=(epoch - 1) * steps_per_epoch, progress=None)
        except trainer.DivergenceError as e:
            run.diverged_at = e.step
            break
        train_loss, train_accuracy = trainer.evaluate(model, tensors.train_x, tensors.train_y)
        test_loss, test_accuracy = trainer.evaluate(model, tensors.test_x, tensors.test_y)
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            # Finite while training, but the weights have grown so far that evaluation
            # overflows: diverged, at the end of this epoch
            run.diverged_at = epoch * steps_per_epoch
            break
        run.train_accuracy.append(train_accuracy)
        run.test_accuracy.append(test_accuracy)
        run.train_loss.append(train_loss)
        run.test_loss.append(test_loss)
        if epoch in measured:
            for kind, record in run.noise.items():
                noise = noise_of(draw_outputs(model, kind, probe_x, others_x, settings.batch_size,
                                              settings.noise_draws, noise_generator))
                record['epochs'].append(epoch)
                for key, value in noise.items():
                    record[key].append(value)
        if on_epoch is not None:
            on_epoch(epoch, {'accuracy.train': train_accuracy, 'accuracy.test': test_accuracy,
                             'loss.test': test_loss, 'gap': train_accuracy - test_accuracy})
    run.seconds = time.perf_counter() - start
    return run


def load_data(settings: Settings, log=print) -> Tuple[data.DeviceData, str]:
    """The data, with the split of the first seed (the same for every run)."""
    tensors, dataset = cli.load_checked_data(
        settings.dataset, settings.data_dir, settings.download, settings.device,
        seed=settings.seeds[0], batch_size=settings.batch_size,
        train_limit=settings.train_limit, log=log)
    n = len(tensors.train_y)
    # Every mini-batch of the probe needs other training examples to fill it
    most = n - (settings.batch_size - settings.batch_size // 2)
    if settings.probe_size > most:
        raise cli.UsageError(
            f'argument --probe-size: expected at most {most:,} (the {n:,} training images less '
            f'the other examples that fill a mini-batch of {settings.batch_size}), '
            f'got {settings.probe_size:,}')
    return tensors, f'{dataset.name}: {n:,} training and {len(tensors.test_y):,} test images'


def run_all(settings: Settings, log=print, on_epoch=None,
            loaded: Optional[Tuple[data.DeviceData, str]] = None) -> Dict[str, object]:
    """Every network from every seed, on the same data."""
    tensors, dataset = loaded or load_data(settings, log)
    device = tensors.train_x.device
    runs: Dict[str, List[Run]] = {name: [] for name in settings.networks}
    start, cpu_start = time.perf_counter(), time.process_time()
    with trainer.one_cpu_thread(device):
        for seed in settings.seeds:
            for name in settings.networks:
                run = train(settings, name, seed, tensors,
                            on_epoch(name, seed) if on_epoch is not None else None)
                runs[name].append(run)
                end = (f'diverged at step {run.diverged_at}' if run.diverged_at is not None else
                       f'train {run.train_accuracy[-1]:.4f}, test {run.test_accuracy[-1]:.4f}')
                log(f'{name:8s} seed {seed}: {end} ({run.seconds:.1f} s)')
    # The processor time, beside the wall-clock time: on a machine shared with other work the
    # two differ, and with one thread the processor time is close to what the run takes on a
    # core of its own
    seconds = {'wall': time.perf_counter() - start, 'cpu': time.process_time() - cpu_start}
    return {'runs': runs, 'dataset': dataset, 'device': device, 'seconds': seconds}


# ## Medians and ranges over seeds
def spread(values: Sequence[float]) -> Optional[Dict[str, float]]:
    """Median, minimum and maximum; None when there is nothing (every run diverged)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {'median': statistics.median(values), 'min': min(values), 'max': max(values)}


def curve(series: List[List[float]], length: int) -> Dict[str, List[Optional[float]]]:
    """Median, minimum and maximum at each epoch over the runs that reached it."""
    points = [spread([s[i] for s in series if i < len(s)]) for i in range(length)]
    return {k: [p[k] if p is not None else None for p in points] for k in ('median', 'min', 'max')}


def values_of(result, settings: Settings) -> Dict:
    runs: Dict[str, List[Run]] = result['runs']
    values = {
        'settings': {'epochs': settings.epochs, 'batch_size': settings.batch_size,
                     'learning_rate': settings.learning_rate, 'momentum': settings.momentum,
                     'optimizer': 'SGD', 'dropout': settings.dropout, 'hidden': settings.hidden,
                     'layers': settings.layers, 'seeds': list(settings.seeds),
                     'networks': list(settings.networks), 'probe_size': settings.probe_size,
                     'noise_draws': settings.noise_draws,
                     'noise_epochs': settings.measured_epochs(),
                     'train_limit': settings.train_limit},
        'dataset': result['dataset'],
        'epochs': list(range(1, settings.epochs + 1)),
        'runs': {}, 'curves': {},
        'summary': {k: {} for k in ('gap', 'test', 'best_test', 'best_epoch', 'train',
                                    'test_loss', 'min_test_loss', 'min_test_loss_epoch',
                                    'seconds')},
        'diverged': {},
        'noise': {},
    }
    summary = values['summary']
    for name, network_runs in runs.items():
        done = [r for r in network_runs if r.diverged_at is None]
        values['runs'][name] = [
            {'seed': r.seed, 'train_accuracy': r.train_accuracy, 'test_accuracy': r.test_accuracy,
             'test_loss': r.test_loss, 'noise': r.noise, 'diverged_at': r.diverged_at,
             'seconds': r.seconds}
            for r in network_runs]
        values['diverged'][name] = [r.diverged_at for r in network_runs]
        values['curves'][name] = {
            key: curve([getattr(r, key) if key != 'gap' else r.gap() for r in network_runs],
                       settings.epochs)
            for key in ('train_accuracy', 'test_accuracy', 'gap', 'test_loss')}
        # At the end of training, over the runs that finished
        summary['gap'][name] = spread([r.gap()[-1] for r in done])
        summary['test'][name] = spread([r.test_accuracy[-1] for r in done])
        summary['train'][name] = spread([r.train_accuracy[-1] for r in done])
        summary['test_loss'][name] = spread([r.test_loss[-1] for r in done])
        # The best any epoch reached: what early stopping on the test set would give (an
        # optimistic number, quoted beside the final one)
        summary['best_test'][name] = spread([max(r.test_accuracy) for r in done])
        summary['best_epoch'][name] = spread(
            [1 + r.test_accuracy.index(max(r.test_accuracy)) for r in done])
        summary['min_test_loss'][name] = spread([min(r.test_loss) for r in done])
        summary['min_test_loss_epoch'][name] = spread(
            [1 + r.test_loss.index(min(r.test_loss)) for r in done])
        summary['seconds'][name] = spread([r.seconds for r in network_runs])
        for kind in kinds_of(name):
            # `noise.bn_batch` is the network with batch normalization alone, `noise.dropout_mask`
            # the one with Dropout alone; `noise.both` holds both noises of the fourth network
            records = [r.noise[kind] for r in done]
            if not records:
                continue
            entry = {'epochs': records[0]['epochs']}
            for key in ('relative', 'flipped'):
                entry[key] = spread([rec[key][-1] for rec in records])
                entry[f'{key}_curve'] = curve([rec[key] for rec in records],
                                              len(records[0]['epochs']))
            if name == 'both':
                values['noise'].setdefault('both', {})[kind] = entry
            else:
                values['noise'][kind] = entry
    values['seconds'] = result.get('seconds')
    return _rounded(values)


def _rounded(node):
    # Six decimals are more than any quote shows, and keep the JSON file small
    if isinstance(node, float):
        return round(node, 6)
    if isinstance(node, dict):
        return {k: _rounded(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_rounded(v) for v in node]
    return node


# ## The figure
#
# Four panels, one colour per network throughout: (a) accuracy, training dashed and test
# solid; (b) the generalisation gap; (c) the test loss, where overfitting shows earlier than in
# the accuracy; (d) the two noises. Lines are medians over seeds, bands their range.
COLOURS = {'none': '#d62728', 'dropout': '#ff7f0e', 'bn': '#1f77b4', 'both': '#2ca02c'}
LABELS = {'none': 'neither', 'dropout': 'Dropout', 'bn': 'batch norm', 'both': 'both'}


def _band(ax, epochs, c, colour, line='-', label=None):
    keep = [i for i, m in enumerate(c['median']) if m is not None]
    x = [epochs[i] for i in keep]
    ax.plot(x, [c['median'][i] for i in keep], line, color=colour, lw=1.4, label=label)
    ax.fill_between(x, [c['min'][i] for i in keep], [c['max'][i] for i in keep],
                    color=colour, alpha=0.15, lw=0)


def draw(values: Dict, plt):
    """The figure, drawn with `plt` (pyplot): for the site, or inline in a notebook."""
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 7.4))
    fig.subplots_adjust(wspace=0.24, hspace=0.38, bottom=0.1, top=0.87)
    (ax_acc, ax_gap), (ax_loss, ax_noise) = axes
    s = values['settings']
    epochs = values['epochs']
    names = [n for n in NETWORKS if n in values['curves']]
    for name in names:
        c = values['curves'][name]
        _band(ax_acc, epochs, c['train_accuracy'], COLOURS[name], '--')
        _band(ax_acc, epochs, c['test_accuracy'], COLOURS[name], '-', LABELS[name])
        _band(ax_gap, epochs, {k: [None if v is None else 100 * v for v in c['gap'][k]]
                               for k in c['gap']}, COLOURS[name])
        _band(ax_loss, epochs, c['test_loss'], COLOURS[name])
    lows = [v for n in names for v in values['curves'][n]['test_accuracy']['min'] if v is not None]
    if lows:
        ax_acc.set_ylim(max(0., min(lows) - 0.01), 1.003)
    ax_acc.set_title('(a) accuracy: training (dashed), test (solid)', fontsize=10)
    ax_acc.set_ylabel('accuracy, eval mode')
    ax_gap.set_title('(b) generalisation gap: training − test accuracy', fontsize=10)
    ax_gap.set_ylabel('percentage points')
    ax_loss.set_title('(c) test loss (cross-entropy)', fontsize=10)
    ax_loss.set_ylabel('loss')
    # (d): median over seeds with the range as error bars; Dropout's noise dashed
    styles = [('bn', 'bn_batch', 'batch noise, batch norm', 'o', '-'),
              ('both', 'bn_batch', 'batch noise, both', 'o', '-'),
              ('dropout', 'dropout_mask', 'mask noise, Dropout', 's', '--'),
              ('both', 'dropout_mask', 'mask noise, both', 's', '--')]
    for name, kind, label, marker, line in styles:
        entry = values['noise'].get('both', {}).get(kind) if name == 'both' \
            else values['noise'].get(kind)
        if entry is None:
            continue
        c = entry['relative_curve']
        keep = [i for i, m in enumerate(c['median']) if m is not None]
        x = [entry['epochs'][i] for i in keep]
        med = [c['median'][i] for i in keep]
        ax_noise.errorbar(x, med, yerr=[[m - c['min'][i] for m, i in zip(med, keep)],
                                        [c['max'][i] - m for m, i in zip(med, keep)]],
                          fmt=marker + line, color=COLOURS[name], ms=4, lw=1.2, capsize=2,
                          label=label)
    ax_noise.set_ylim(bottom=0)
    ax_noise.set_title("(d) noise: spread of one example's logits across draws", fontsize=10)
    ax_noise.set_ylabel('÷ spread between examples')
    if ax_noise.get_legend_handles_labels()[0]:
        ax_noise.legend(fontsize=7, loc='best')
    for ax in axes.flat:
        ax.set_xlabel('epoch')
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25)
    fig.legend(*ax_acc.get_legend_handles_labels(), loc='upper center', ncol=4, fontsize=9,
               bbox_to_anchor=(0.5, 0.945), frameon=False)
    fig.suptitle(f'MLP {s["layers"]}×{s["hidden"]} ReLU, Dropout p = {s["dropout"]:g}, '
                 f'batch {s["batch_size"]}, SGD lr {s["learning_rate"]:g} momentum '
                 f'{s["momentum"]:g}; median and range over {len(s["seeds"])} seeds',
                 fontsize=9.5, y=0.985)
    return fig


def plot(values: Dict, stamp_text: str, path: Path):
    """Saves the figure as a stamped, self-contained SVG."""
    from labml_nn_bn import figure_tools
    figure_tools.save_svg(draw(values, figure_tools.pyplot()), path, stamp_text)


def stamp_of(result, settings: Settings) -> str:
    from labml_nn_bn import figure_tools
    return figure_tools.stamp(result['dataset'],
                              f'{settings.epochs} epochs × {len(settings.seeds)} seeds per network',
                              figure_tools.describe_device(result['device']))


SMOKE = Settings(epochs=3, hidden=64, seeds=(0, 1), noise_epochs=(1, 3), probe_size=128,
                 noise_draws=6, dataset='mnist-5k', download=False, train_limit=1024)


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    """
    Writes `regularisation.svg` and `.json`. The full run trains 4 networks from 5 seeds for
    40 epochs each, on the offline subset (the data the text describes); smoke mode, 2 seeds
    for 3 epochs on 1,024 of its images.
    """
    from labml_nn_bn import figure_tools
    settings = SMOKE if smoke else Settings()
    result = run_all(settings)
    values = values_of(result, settings)
    return figure_tools.save_figure(out_dir, 'regularisation', draw, values,
                                    stamp_of(result, settings))


# ## Command line
#
# Runs are tracked with labml: the settings, and after every epoch of every run its accuracies,
# test loss and gap.
PROG = 'python -m labml_nn_bn.experiments.regularisation'


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.make_parser(PROG, 'Batch normalization and Dropout: four MLPs (neither, '
                                       'Dropout, batch norm, both), their generalisation gap, '
                                       "and the noise of one example's output.")
    d = Settings()
    parser.add_argument('--epochs', type=int, default=d.epochs,
                        help='passes over the training data')
    parser.add_argument('--batch-size', type=int, default=d.batch_size,
                        help='images per mini-batch')
    parser.add_argument('--lr', '--learning-rate', dest='learning_rate', type=float,
                        default=d.learning_rate, help='learning rate of SGD')
    parser.add_argument('--momentum', type=float, default=d.momentum, help='momentum of SGD')
    parser.add_argument('--dropout', type=float, default=d.dropout,
                        help='Dropout probability after each hidden ReLU (networks dropout, both)')
    parser.add_argument('--hidden', type=int, default=d.hidden, help='units per hidden layer')
    parser.add_argument('--layers', type=int, default=d.layers, help='hidden layers')
    parser.add_argument('--seeds', type=int, nargs='+', default=list(d.seeds),
                        help='one run of every network per seed (initial weights, batch order)')
    parser.add_argument('--networks', nargs='+', choices=NETWORKS, default=list(d.networks),
                        help='which of the four networks to train')
    parser.add_argument('--noise-epochs', type=int, nargs='+', default=list(d.noise_epochs),
                        help='epochs after which the noise is measured (those beyond --epochs are '
                             'dropped; the last epoch always is)')
    parser.add_argument('--probe-size', type=int, default=d.probe_size,
                        help='training examples whose noise is measured')
    parser.add_argument('--noise-draws', type=int, default=d.noise_draws,
                        help='mini-batches (or Dropout masks) per probe example')
    cli.add_device_argument(parser, d.device)
    cli.add_data_arguments(parser, d.dataset, train_limit=True)
    cli.add_logs_argument(parser)
    cli.add_figure_and_smoke_arguments(
        parser, smoke_help='a run of seconds (2 seeds, 3 epochs, 64 hidden units, '
                           '1,024 images of the offline subset), for tests; options '
                           'given with it override its settings')
    return cli.parse_experiment_arguments(parser, argv, check_arguments)


def check_arguments(args: argparse.Namespace):
    """What `cli.check_values` does not know about."""
    for seed in args.seeds:
        cli.check_seed(seed, '--seeds')
    for option, values in (('--seeds', args.seeds), ('--networks', args.networks)):
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        if repeated:
            raise cli.UsageError(f'argument {option}: expected each once, got '
                                 f'{" ".join(map(str, repeated))} more than once')
    if not (math.isfinite(args.dropout) and 0 <= args.dropout < 1):
        raise cli.UsageError(f'argument --dropout: expected a probability >= 0 and < 1, '
                             f'got {args.dropout}')
    if not (math.isfinite(args.momentum) and 0 <= args.momentum < 1):
        raise cli.UsageError(f'argument --momentum: expected a number >= 0 and < 1, '
                             f'got {args.momentum}')
    for option, value, least in (('--hidden', args.hidden, 1), ('--layers', args.layers, 1),
                                 ('--probe-size', args.probe_size, 2),
                                 ('--noise-draws', args.noise_draws, 2)):
        if value < least:
            # Two draws are the fewest with a spread; two probe examples the fewest with a
            # spread between examples
            raise cli.UsageError(f'argument {option}: expected at least {least}, got {value}')
    for e in args.noise_epochs:
        if e < 1:
            raise cli.UsageError(f'argument --noise-epochs: expected epochs >= 1, got {e}')


def settings_of(args: argparse.Namespace) -> Settings:
    # With --smoke, the smoke settings, with the options written on top
    return cli.settings_from(args, Settings, SMOKE)


def main(argv=None):
    def start():
        args = parse_args(argv)
        settings = settings_of(args)
        loaded = load_data(settings)
        from labml import tracker

        def on_epoch(name, seed):
            return lambda epoch, metrics: tracker.save(
                epoch, {f'{k}.{name}.seed{seed}': v for k, v in metrics.items()})

        configs = {k: list(v) if isinstance(v, tuple) else v
                   for k, v in dataclasses.asdict(settings).items()}
        with cli.labml_run('regularisation', configs, logs_dir=args.logs_dir):
            result = run_all(settings, on_epoch=on_epoch, loaded=loaded)
        if args.figure:
            plot(values_of(result, settings), stamp_of(result, settings), Path(args.figure))
        return result

    return cli.run_main(start, PROG)


if __name__ == '__main__':
    main(sys.argv[1:])


# ## Exercises
#
# **1. The noise that the mean adds** (derivation). Take one feature, of population
# variance $\mathrm{Var}[x]$, and one training example $x_i$. Training puts it in a
# mini-batch with $m - 1$ other examples drawn at random. Given $x_i$, what is the
# variance of $\mu_\mathcal{B}$ from batch to batch? For the page's $m = 64$, by about
# how much does $\hat{x}_i$ move through the mean alone, in units of the feature's
# standard deviation?
#
# ??? success "Solution"
#     $\mu_\mathcal{B} = \frac{1}{m} x_i + \frac{1}{m}\sum_{j \ne i} x_j$; the first
#     term is fixed and the $m - 1$ others are independent draws, so
#     $\mathrm{Var}[\mu_\mathcal{B} \mid x_i] = \frac{m - 1}{m^2}\,\mathrm{Var}[x]$. At
#     $m = 64$ that is $\frac{63}{4096} = 0.0154$ of the variance: a standard deviation
#     of $0.124$ standard deviations. Since $\hat{x}_i$ divides by about the feature's
#     standard deviation, the mean alone moves it by about $0.124$ from batch to batch,
#     for every example, at every layer. It is this sort of randomness that Section 3.4
#     credits with the regularisation.
#
# **2. The noise that the variance adds, and the batch size** (derivation). If the
# feature is Gaussian, how much does $\sigma^2_\mathcal{B}$ vary relative to its mean,
# and the scale $1 / \sqrt{\sigma^2_\mathcal{B} + \epsilon}$? How do exercise 1's and
# these numbers change at a batch of 16?
#
# ??? success "Solution"
#     $m\,\sigma^2_\mathcal{B} / \mathrm{Var}[x]$ is $\chi^2$ with $m - 1$ degrees of
#     freedom, of mean $m - 1$ and variance $2(m - 1)$, so $\sigma^2_\mathcal{B}$ varies
#     by $\sqrt{2 / (m - 1)} = 0.178$ of its mean at $m = 64$, and the scale, a power
#     $-\frac{1}{2}$ of it, by about half that, $0.089$. Both noises shrink as
#     $1/\sqrt{m}$: at $m = 16$ the mean's is $0.242$, the variance's $0.365$ and the
#     scale's $0.183$, about twice as large. A smaller batch regularises more, and its
#     statistics are worse estimates (see [Algorithm 2's
#     page](population_statistics.md)).
#
# **3. Batch normalization without the batch noise** (code). The page's *Our view* asks
# for a network that keeps batch normalization but loses its batch-to-batch noise. Write
# a module that normalises every example with the statistics of a fixed *reference
# batch* that goes through the network with each mini-batch (the gradient still flows
# through those statistics), and check that an example's output no longer depends on the
# others in its mini-batch.
#
# ??? success "Solution"
#     The first `n_ref` rows of every input are the reference batch (the same images at
#     every step); only they set $\mu$ and $\sigma^2$:
#
#     ```python
#     class ReferenceNorm(nn.Module):
#         def __init__(self, features: int, n_ref: int, eps: float = 1e-5):
#             super().__init__()
#             self.n_ref, self.eps = n_ref, eps
#             self.weight = nn.Parameter(torch.ones(features))
#             self.bias = nn.Parameter(torch.zeros(features))
#
#         def forward(self, x: torch.Tensor) -> torch.Tensor:
#             var, mean = torch.var_mean(x[:self.n_ref], dim=0, correction=0)
#             x_hat = (x - mean) / torch.sqrt(var + self.eps)
#             return self.weight * x_hat + self.bias
#
#
#     def reference_network(settings: Settings, n_ref: int) -> Network:
#         network = make_network('bn', settings)
#         network.norms = nn.ModuleList(ReferenceNorm(n.num_features, n_ref)
#                                       for n in network.norms)
#         return network
#     ```
#
#     Train it on `torch.cat([reference_x, x])` and keep only the outputs after the
#     first `n_ref` rows for the loss (and for evaluation: it has no running statistics,
#     it always uses the reference). The output of an example is then the same in every
#     mini-batch (a test checks). This is close to the "virtual batch normalization" of
#     Salimans et al. (2016), who normalise with a reference batch for another reason.
#     We have not run it: if its gap stays as narrow as the `bn` network's, the batch
#     noise was not what regularised here; if it widens towards the plain network's, it
#     was.
#
# **4. A smaller batch, more noise** (experiment). Exercise 2 predicts that at a batch
# of 16 the statistics are about twice as noisy as at 64. Train the batch-normalised
# network alone, from one seed, for 10 epochs, and compare panel (d) with the page's (a
# few minutes on a CPU):
#
# ```bash
# python -m labml_nn_bn.experiments.regularisation --networks bn --seeds 0 \
#     --batch-size 16 --epochs 10 --noise-epochs 1 10 --figure /tmp/batch16.svg
# ```
#
# ??? success "Solution"
#     The solid line of panel (d), the batch noise, sits about twice as high as on the
#     page (there, at a batch of 64 and the last epoch,
#     <!-- measured regularisation:noise.bn_batch.relative.median .3f -->0.146<!-- /measured -->),
#     and stays there through training, as exercise 2's $1/\sqrt{m}$ predicts. Panels
#     (a) and (b) are the harder part to read: a batch of 16 also takes four times as
#     many steps per epoch at the same rate, so it changes more than the noise. When we
#     tried it (one seed), the doubled noise did not narrow the gap; one seed cannot
#     tell whether more batch noise means more regularisation here.
