r"""
---
title: Internal covariate shift, tested
summary: >
  The later-work test of the paper's explanation (Santurkar et al., 2018), at MNIST scale:
  noise injected after each batch norm makes the inputs of the next layer jump around from
  step to step; we measure whether the network still trains as fast as with plain batch
  normalization, whether the same noise stops a network without it, and how smooth the loss
  is along the gradient with and without batch normalization.
---

# Internal covariate shift, tested

*The 2015 paper's claim.* Batch normalization speeds up training *because* it reduces
internal covariate shift: it keeps the distribution of each layer's inputs from moving while
the layers below it learn (Sections 1 and 2; its Figure 1 shows the drift, and
[our reproduction of Figure 1](covariate_shift.md) shows it too).

*Santurkar et al.'s finding.* Santurkar, Tsipras, Ilyas and Madry, "How Does Batch
Normalization Help Optimization?", NeurIPS 2018
([arXiv:1805.11604](https://arxiv.org/abs/1805.11604)), tested that explanation by breaking
the stability on purpose. Right after each batch norm of a VGG network trained on CIFAR-10
they injected noise, i.i.d. for each activation and each example, drawn from a distribution
whose mean is not zero and whose variance is not one, and which changes at every step
(their Section 2.1 and Appendix A). The layers above then see a different input distribution
at every step, less stable even than in the network without batch normalization. Their
Figure 2 shows that this "noisy" batch-normalized network trains almost exactly as well as
the plain batch-normalized one, and much better than the standard network; their text adds
that the same noise in the standard network stops it from training at all. Their Section 3
then credits batch normalization with a smoother loss landscape: along the gradient, the
loss changes less (it is more Lipschitz: its rate of change is bounded by a smaller
constant) and the gradient changes less (it is more "predictive", $\beta$-smoother; this
$\beta$ is a smoothness constant, not batch normalization's shift). The
[later work page](../../later_work.md) summarises the paper, and
[the claims page](../../claims.md) collects what our experiments say about each claim.

*What we test.* Both parts, at the scale of the 2015 paper's Figure 1: a fully connected
network with three hidden layers of 100 units on MNIST (ReLUs, as in Santurkar et al.'s VGG,
where the 2015 Figure 1 had sigmoids), trained four ways (`standard`, `bn`, `noisy_bn`, and
the control `noisy_standard`: the same noise where the batch norm would be), on three seeds
and at two learning rates. The noise has one knob, its strength $\kappa$ (defined under "The
noise" below; $\kappa = 1$ unless said otherwise, $\kappa = 0$ is no noise). We record (a) the training
and test accuracy, (b) the 15th, 50th and 85th percentiles of one unit's input, *after* the
noise, which is what the next layer sees, as in Figure 1, and (c) at regular steps, three
smoothness measures along the gradient for the networks without and with batch
normalization.

```bash
python -m labml_nn_bn.experiments.internal_covariate_shift           # 4 networks × 2 rates × 3 seeds
python -m labml_nn_bn.experiments.internal_covariate_shift --smoke   # seconds
python -m labml_nn_bn.experiments.internal_covariate_shift --help
```

The committed figures come from this machine's CPU;
[the notebook](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/internal_covariate_shift.ipynb)
runs the same experiment on Colab, and on full MNIST where it can download it.

![Training and test accuracy of the four networks at two learning rates, and the percentiles of one unit's input over training](../../figures/internal_covariate_shift.svg)

![The loss range and the gradient change along the gradient, and the effective beta-smoothness, without and with batch normalization](../../figures/internal_covariate_shift_landscape.svg)

### What the figures show

*Our measurement* (the data set, steps and device are stamped under each figure; the values
are in `docs/figures/internal_covariate_shift.json` and
`docs/figures/internal_covariate_shift_landscape.json`). Every accuracy is the median over
<!-- measured internal_covariate_shift:seeds_count d -->3<!-- /measured --> seeds, with the smallest and largest in brackets.

* **Noisy batch normalization makes the inputs unstable (middle row).** We measure how much
  a unit's input distribution moves as the distance its 15th, 50th and 85th percentiles
  travel from one record to the next (50 steps apart), divided by the unit's own width (the
  85th minus the 15th percentile), and take the median over the 100 units of the last hidden
  layer (`Run.relative_jitter`). At learning rate 0.1 that is
  <!-- measured internal_covariate_shift:runs.lr_0p1.bn.relative_jitter.median .3f -->0.010<!-- /measured --> with batch normalization,
  <!-- measured internal_covariate_shift:runs.lr_0p1.standard.relative_jitter.median .3f -->0.023<!-- /measured --> without it, and
  <!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.relative_jitter.median .3f -->0.177<!-- /measured --> with the noise: the noisy network's inputs move
  <!-- measured internal_covariate_shift:instability.noisy_bn_over_bn .0f -->17<!-- /measured --> times as much as the plain batch-normalized network's
  and <!-- measured internal_covariate_shift:instability.noisy_bn_over_standard .1f -->7.7<!-- /measured --> times as much as the standard network's (the
  seeds range over <!-- measured internal_covariate_shift:runs.lr_0p1.bn.relative_jitter.min .3f -->0.010<!-- /measured -->–<!-- measured internal_covariate_shift:runs.lr_0p1.bn.relative_jitter.max .3f -->0.010<!-- /measured -->,
  <!-- measured internal_covariate_shift:runs.lr_0p1.standard.relative_jitter.min .3f -->0.021<!-- /measured -->–<!-- measured internal_covariate_shift:runs.lr_0p1.standard.relative_jitter.max .3f -->0.024<!-- /measured --> and
  <!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.relative_jitter.min .3f -->0.176<!-- /measured -->–<!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.relative_jitter.max .3f -->0.179<!-- /measured -->). As in Santurkar et al.'s Figure 2,
  the noisy network's inputs are less stable than even the standard network's.
* **It still trains, but here not as fast as with plain batch normalization (top row).**
  Test accuracy at step <!-- measured internal_covariate_shift:runs.lr_0p1.bn.early_step , -->300<!-- /measured -->, learning rate 0.1:
  <!-- measured internal_covariate_shift:runs.lr_0p1.bn.test_early.median .1% -->95.0%<!-- /measured --> with batch normalization
  [<!-- measured internal_covariate_shift:runs.lr_0p1.bn.test_early.min .1% -->94.7%<!-- /measured -->, <!-- measured internal_covariate_shift:runs.lr_0p1.bn.test_early.max .1% -->95.1%<!-- /measured -->],
  <!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.test_early.median .1% -->92.0%<!-- /measured --> with the noise
  [<!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.test_early.min .1% -->90.8%<!-- /measured -->, <!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.test_early.max .1% -->92.6%<!-- /measured -->] and
  <!-- measured internal_covariate_shift:runs.lr_0p1.standard.test_early.median .1% -->90.8%<!-- /measured --> without batch normalization
  [<!-- measured internal_covariate_shift:runs.lr_0p1.standard.test_early.min .1% -->90.7%<!-- /measured -->, <!-- measured internal_covariate_shift:runs.lr_0p1.standard.test_early.max .1% -->92.0%<!-- /measured -->]. Over the last tenth of
  training: <!-- measured internal_covariate_shift:runs.lr_0p1.bn.test_final.median .1% -->95.3%<!-- /measured -->,
  <!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.test_final.median .1% -->94.5%<!-- /measured --> and
  <!-- measured internal_covariate_shift:runs.lr_0p1.standard.test_final.median .1% -->94.2%<!-- /measured -->. At this strength the noisy network gives up
  most of batch normalization's (small) lead over the standard network, though by the median
  it keeps some of it (the ranges over seeds overlap), with inputs several times less
  stable. On its own noisy training batches it reaches
  <!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.train_final.median .1% -->97.0%<!-- /measured --> in the last tenth, where the networks without
  noise reach <!-- measured internal_covariate_shift:runs.lr_0p1.bn.train_final.median .1% -->100.0%<!-- /measured -->. At learning rate 0.5 the picture is much the
  same (panels c, d), except that over the last tenth the noisy network only draws level with
  the standard one (<!-- measured internal_covariate_shift:runs.lr_0p5.noisy_bn.test_final.median .1% -->94.8%<!-- /measured --> and
  <!-- measured internal_covariate_shift:runs.lr_0p5.standard.test_final.median .1% -->94.8%<!-- /measured -->).
* **The strength of the noise decides (bottom row).** Instability grows steadily with $\kappa$,
  and so does the cost. At $\kappa = 0.5$ the noisy network's inputs move
  <!-- measured internal_covariate_shift:sweep.noisy_bn.relative_jitter.2.median .3f -->0.121<!-- /measured --> of their width per record, against the standard
  network's <!-- measured internal_covariate_shift:runs.lr_0p1.standard.relative_jitter.median .3f -->0.023<!-- /measured -->, and it reaches <!-- measured internal_covariate_shift:sweep.noisy_bn.test_early.2.median .1% -->94.2%<!-- /measured --> at step
  <!-- measured internal_covariate_shift:runs.lr_0p1.bn.early_step , -->300<!-- /measured --> and <!-- measured internal_covariate_shift:sweep.noisy_bn.test_final.2.median .1% -->94.9%<!-- /measured --> over the last tenth:
  close to plain batch normalization and above the standard network on both counts. At
  $\kappa = 2$ it falls to <!-- measured internal_covariate_shift:sweep.noisy_bn.test_early.4.median .1% -->89.4%<!-- /measured --> and
  <!-- measured internal_covariate_shift:sweep.noisy_bn.test_final.4.median .1% -->92.7%<!-- /measured -->. With the *same* noise, the batch-normalized network
  learns faster than the standard one at every strength we tried: at step
  <!-- measured internal_covariate_shift:runs.lr_0p1.bn.early_step , -->300<!-- /measured -->,
  <!-- measured internal_covariate_shift:sweep.noisy_bn.test_early.1.median .1% -->94.6%<!-- /measured --> against <!-- measured internal_covariate_shift:sweep.noisy_standard.test_early.1.median .1% -->91.5%<!-- /measured --> at $\kappa = 0.25$,
  <!-- measured internal_covariate_shift:sweep.noisy_bn.test_early.3.median .1% -->92.0%<!-- /measured --> against <!-- measured internal_covariate_shift:sweep.noisy_standard.test_early.3.median .1% -->90.8%<!-- /measured --> at $\kappa = 1$ and
  <!-- measured internal_covariate_shift:sweep.noisy_bn.test_early.4.median .1% -->89.4%<!-- /measured --> against <!-- measured internal_covariate_shift:sweep.noisy_standard.test_early.4.median .1% -->87.8%<!-- /measured --> at $\kappa = 2$, with
  about equally unstable inputs (panel l). These are medians; at $\kappa \ge 1$ the ranges over
  seeds overlap. By the end the order turns at $\kappa \ge 1$: the noisy
  standard network ends at <!-- measured internal_covariate_shift:sweep.noisy_standard.test_final.3.median .1% -->95.0%<!-- /measured --> and
  <!-- measured internal_covariate_shift:sweep.noisy_standard.test_final.4.median .1% -->94.7%<!-- /measured -->, above its noise-free self.
* **The control: the same noise without batch normalization.** At learning rate 0.1 it does
  *not* stop the standard network from training, at any strength we tried. Our reading: the
  standard network grows its pre-activations until the additive part of the noise is small
  beside them. Its units are typically about <!-- measured internal_covariate_shift:runs.lr_0p1.noisy_standard.spread.median .0f -->10<!-- /measured --> wide
  (85th minus 15th percentile), against <!-- measured internal_covariate_shift:runs.lr_0p1.standard.spread.median .1f -->3.7<!-- /measured --> without the noise
  and about <!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.spread.median .0f -->4<!-- /measured --> in the noisy batch-normalized network, and it fits its noisy batches
  better (<!-- measured internal_covariate_shift:runs.lr_0p1.noisy_standard.train_final.median .1% -->99.5%<!-- /measured --> in the last tenth). At learning rate 0.5 the
  noise does stop it, as Santurkar et al. report: <!-- measured internal_covariate_shift:runs.lr_0p5.noisy_standard.diverged d -->2<!-- /measured --> of
  <!-- measured internal_covariate_shift:seeds_count d -->3<!-- /measured --> seeds diverge (at steps
  <!-- measured internal_covariate_shift:runs.lr_0p5.noisy_standard.diverged_at.0 d -->18<!-- /measured --> and <!-- measured internal_covariate_shift:runs.lr_0p5.noisy_standard.diverged_at.1 d -->30<!-- /measured -->) and the
  other stays at chance (<!-- measured internal_covariate_shift:runs.lr_0p5.noisy_standard.test_final.median .0% -->10%<!-- /measured -->), while the noisy
  batch-normalized network trains to <!-- measured internal_covariate_shift:runs.lr_0p5.noisy_bn.test_final.median .1% -->94.8%<!-- /measured -->. Even without
  noise, <!-- measured internal_covariate_shift:runs.lr_0p5.standard.diverged d -->1<!-- /measured --> of the standard network's seeds diverges at this rate (at
  step <!-- measured internal_covariate_shift:runs.lr_0p5.standard.diverged_at.1 d -->1168<!-- /measured -->).
* **The landscape (second figure).** In the first fifth of training (steps up to 600), the
  median over the measured steps and seeds of the loss range along the gradient is
  <!-- measured internal_covariate_shift_landscape:runs.standard.loss_range_early .3g -->0.0738<!-- /measured --> without batch normalization and
  <!-- measured internal_covariate_shift_landscape:runs.bn.loss_range_early .3g -->0.00678<!-- /measured --> with it
  (<!-- measured internal_covariate_shift_landscape:loss_range_early_ratio .0f -->11<!-- /measured --> times larger without); the largest gradient change
  is <!-- measured internal_covariate_shift_landscape:runs.standard.gradient_change_early .3g -->2.7<!-- /measured --> against
  <!-- measured internal_covariate_shift_landscape:runs.bn.gradient_change_early .3g -->0.149<!-- /measured --> (<!-- measured internal_covariate_shift_landscape:gradient_change_early_ratio .0f -->18<!-- /measured --> times), and the effective
  $\beta$-smoothness <!-- measured internal_covariate_shift_landscape:runs.standard.beta_early .3g -->16.5<!-- /measured --> against
  <!-- measured internal_covariate_shift_landscape:runs.bn.beta_early .3g -->7.5<!-- /measured --> (<!-- measured internal_covariate_shift_landscape:beta_early_ratio .1f -->2.2<!-- /measured --> times). Part of the first
  two gaps is the length of the move: the standard network's gradient is longer early on
  (norm <!-- measured internal_covariate_shift_landscape:runs.standard.gradient_norm_early .2f -->0.79<!-- /measured --> against
  <!-- measured internal_covariate_shift_landscape:runs.bn.gradient_norm_early .2f -->0.19<!-- /measured -->), so the same step sizes move it further; the
  $\beta$ measure divides that out, and its gap is the smallest. In the second half of
  training, when both networks fit their training batches almost perfectly, the ratios are
  <!-- measured internal_covariate_shift_landscape:loss_range_late_ratio .2f -->0.68<!-- /measured -->, <!-- measured internal_covariate_shift_landscape:gradient_change_late_ratio .2f -->0.64<!-- /measured --> and
  <!-- measured internal_covariate_shift_landscape:beta_late_ratio .2f -->0.86<!-- /measured -->: no smoother with batch normalization.

*Our view.* At this scale the experiment supports the weak form of Santurkar et al.'s
finding, and the strong form only for mild noise. The weak form: unstable input
distributions do not stop a batch-normalized network from training. With inputs several
times less stable than the standard network's, the noisy network trains, learns faster than
the standard network under the same noise, and survives a learning rate at which that noise
without batch normalization diverges. That is hard to square with the 2015 paper's claim
that batch normalization works *by* stabilising those distributions. The strong form, that
the noisy network trains as fast as the plain one, nearly holds here for mild noise
($\kappa \le 0.5$: within a point of plain batch normalization) and fails at $\kappa = 1$, where most
of the lead is lost; batch normalization's own lead is small on this
problem (an MLP trains well on MNIST without it), so there is little room before the noise's
cost shows, and we could not check how strong Santurkar et al.'s noise was. The smoother
landscape with batch normalization is there in the first few hundred steps, where the two
networks' speeds differ most, and gone once both have fitted their training data.

### Where ours differs from Santurkar et al., and why a small result may differ

*What we could confirm from their text, and what we could not.* We confirmed (from
quotations of the paper) that the noise is added after each batch norm, to each activation of each
example, i.i.d., from a distribution with non-zero mean and non-unit variance that changes
at every time step; that the network is VGG on CIFAR-10; that Figure 2 compares "Standard",
"Standard + BatchNorm" and "Standard + 'Noisy' BatchNorm"; that the same noise in the
standard network stops it from training; and that the landscape measures take, at each
training step, the gradient there and record how the loss changes along it, how far the
gradient at points along that direction is (in $\ell_2$) from the gradient at the start, and
an "effective" $\beta$-smoothness. We could *not* read their Appendix A, so how the noise's
mean and variance are drawn, the size of the noise, the learning rate of the noisy runs,
whether the noise is on at test time, and the range of step sizes along the gradient are
*our choices*, described in the code below, not theirs.

* **Scale.** Three hidden layers of 100 units on 4,000 MNIST digits (the offline subset this
  machine has) instead of VGG on CIFAR-10. A shallow network has few layers for the noise to
  pile up through, and on MNIST it trains well without batch normalization, so the
  differences between the networks are smaller than in their figures.
* **The noise.** Ours multiplies each activation by a scale and adds a shift, both drawn anew
  for each unit at every step, plus a Gaussian drawn for each activation of each example,
  all sized by one strength $\kappa$; see `DistributionNoise` below. Because the size of theirs is
  in the part we could not read, we show five strengths.
* **Test accuracy.** At test time we replace the noise by its mean, as dropout does. We also
  measured it with the noise drawn at test time as in training (the batch norms' running
  statistics were collected with the noise): that is lower, at learning rate 0.1 and $\kappa = 1$
  <!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.test_noisy_final.median .1% -->90.1%<!-- /measured --> over the last tenth against
  <!-- measured internal_covariate_shift:runs.lr_0p1.noisy_bn.test_final.median .1% -->94.5%<!-- /measured -->, so the mean is the kinder choice. The
  accuracy on the training batches is taken with the noise, as the optimiser sees them; for
  the noisy networks it is lower partly because the noise corrupts the batch itself.
* **Smoothness.** We measure on the training batch of the step, over seven step sizes, at
  every 50th step, for the networks without and with batch normalization at learning rate
  0.1; their Figure 4 shows VGG on CIFAR-10, with step sizes and spacing we could not
  confirm.
"""

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from labml_nn_bn import data
from labml_nn_bn.batch_norm import BatchNorm, Module
from labml_nn_bn.experiments import cli, trainer


# ## The noise
#
# Santurkar et al. (Section 2.1) perturb every activation of every example after each batch
# norm with i.i.d. noise whose mean is not zero and whose variance is not one, from a
# distribution that changes at every step. Their Appendix A gives how its parameters are
# drawn; we could not read it, so this is our reading, with one knob, the strength $\kappa$. At
# every step, each unit $j$ of the layer draws a shift and a scale,
#
# $$\mu_{t,j} \sim \mathcal{U}(-\kappa, \kappa) \qquad \sigma_{t,j} \sim \mathcal{U}(1, 1 + \kappa)$$
#
# and each activation $y_{ij}$ of example $i$ becomes
#
# $$\tilde{y}_{ij} = \sigma_{t,j}\, y_{ij} + \mu_{t,j} + \kappa\, \varepsilon_{ij} \qquad
#   \varepsilon_{ij} \sim \mathcal{N}(0, 1)$$
#
# Given $y$, that is a draw from $\mathcal{N}(\sigma_{t,j} y_{ij} + \mu_{t,j}, \kappa^2)$, i.i.d.
# over examples and units. For a batch-normalized unit ($y$ of mean $\beta$ and variance
# $\gamma^2$) the next layer sees mean $\sigma_t \beta + \mu_t$ and variance
# $\sigma_t^2 \gamma^2 + \kappa^2$: both moments jump at every step, which is the instability the
# experiment needs. The scale matters: an additive noise alone can be outgrown by learning a
# larger $\gamma$, a multiplicative one cannot. At $\kappa = 1$, our default, the mean moves by up
# to one standard deviation of a freshly normalised unit and the spread by up to a factor of
# two; $\kappa = 0$ is no noise at all. Because the size is our guess, we also train at other
# strengths.
#
# The noise is a training perturbation. In `eval()` mode it is replaced by its mean,
# $\mathbb{E}[\tilde{y}] = (1 + \frac{\kappa}{2})\, y$, as dropout is; what Santurkar et al. did at
# test time is not in the parts of the paper we could read. With `sample_in_eval` it is drawn in
# `eval()` mode too: the records use that for a second test accuracy, with the noise the
# running statistics of the batch norms were collected under.
class DistributionNoise(nn.Module):
    """
    * `features`: the number of units, `C` of an `[N, C]` input
    * `strength`: $\\kappa \\ge 0$
    * `generator`: the random numbers of the noise, apart from those of the weights and batches
    """

    def __init__(self, features: int, strength: float, generator: torch.Generator):
        super().__init__()
        if not (math.isfinite(strength) and strength >= 0):
            raise ValueError(f'strength must be a finite number >= 0, got {strength}')
        self.features, self.strength, self.generator = features, float(strength), generator
        self.sample_in_eval = False

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        k = self.strength
        if not self.training and not self.sample_in_eval:
            # $\mathbb{E}[\tilde{y}] = \mathbb{E}[\sigma]\, y$
            return y * (1. + k / 2.)
        # The draws are made on the CPU generator and moved, so a GPU run gets the same noise
        # $\mu_t, \sigma_t$: $[C]$, one of each per unit, new at every call (every step)
        mu = (torch.rand(self.features, generator=self.generator) * 2. - 1.) * k
        sigma = 1. + torch.rand(self.features, generator=self.generator) * k
        # $\varepsilon$: [N, C], one per activation and example
        eps = torch.randn(tuple(y.shape), generator=self.generator)
        # $\tilde{y} = \sigma_t y + \mu_t + \kappa \varepsilon$
        return y * sigma.to(y.device) + (mu + k * eps).to(y.device)

    def extra_repr(self) -> str:
        return f'{self.features}, strength={self.strength:g}'


# ## The networks
#
# The 2015 paper's Figure 1 network (three hidden layers of 100 units, batches of 60) with
# ReLUs, as in Santurkar et al.'s VGG, and PyTorch's default initialisation. Each hidden
# layer is linear → [batch norm] → [noise] → ReLU:
#
# * `standard`: linear (with bias) → ReLU
# * `bn`: linear (no bias: $\beta$ replaces it) → batch norm → ReLU
# * `noisy_bn`: linear → batch norm → noise → ReLU, Santurkar et al.'s "noisy" BatchNorm
# * `noisy_standard`: linear (with bias) → noise → ReLU, their control: the same noise
#   without batch normalization
NETWORKS = ('standard', 'bn', 'noisy_bn', 'noisy_standard')


class Network(Module):
    def __init__(self, kind: str, *, hidden: int = 100, layers: int = 3, noise: float = 1.,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        if kind not in NETWORKS:
            raise ValueError(f'kind must be one of {", ".join(NETWORKS)}, got {kind!r}')
        self.kind = kind
        batch_norm, noisy = kind in ('bn', 'noisy_bn'), kind.startswith('noisy')
        if noisy and generator is None:
            generator = torch.Generator().manual_seed(0)
        sizes = [28 * 28] + [hidden] * layers
        self.linears = nn.ModuleList(
            nn.Linear(n_in, n_out, bias=not batch_norm) for n_in, n_out in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(
            BatchNorm(n) if batch_norm else nn.Identity() for n in sizes[1:])
        self.noises = nn.ModuleList(
            DistributionNoise(n, noise, generator) if noisy else nn.Identity()
            for n in sizes[1:])
        self.output = nn.Linear(hidden, 10)

    def relu_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the last hidden layer's ReLUs receive, $[B, 100]$: after the noise, if any."""
        # $[B, 1, 28, 28] \to [B, 784]$
        h = x.flatten(1)
        last = len(self.linears) - 1
        for i, (linear, norm, noise) in enumerate(zip(self.linears, self.norms, self.noises)):
            z = noise(norm(linear(h)))
            if i == last:
                return z
            h = F.relu(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The logits, $[B, 10]$
        return self.output(F.relu(self.relu_input(x)))


# ## Smoothness along the gradient
#
# Santurkar et al. (Section 3.1, Figure 4) measure the landscape where training actually
# goes: at a step of training, with parameters $\theta$ and the gradient
# $\nabla \ell(\theta)$ of the loss on a batch, they move along the gradient and look at
# (in our letters: $\ell$ is the loss, $\tau$ the step size, as [the notation](../../notation.md)
# keeps $\eta$ for the learning rate and $\beta$ for batch norm's shift)
#
# * the loss $\ell(\theta - \tau \nabla \ell(\theta))$ over a range of step sizes $\tau$: its
#   range is a measure of how Lipschitz the loss is there;
# * the Euclidean distance
#   $\|\nabla \ell(\theta) - \nabla \ell(\theta - \tau \nabla \ell(\theta))\|$
#   between the gradient at the start and the gradients along that direction: small means a
#   "predictive" gradient, one that stays a good guide further away;
# * the "effective" smoothness (their "$\beta$-smoothness"), the largest ratio of that gradient
#   change to the distance moved,
#   $\max_\tau \frac{\|\nabla \ell(\theta) - \nabla \ell(\theta - \tau \nabla \ell(\theta))\|}
#   {\tau \|\nabla \ell(\theta)\|}$.
#
# We evaluate everything on the *same* batch (so that the changes come from the move, not from
# a new batch), in training mode (so a batch norm uses the batch's statistics, as in
# training), and put the parameters and running statistics back afterwards: measuring changes
# nothing in the run. The step sizes are our choice (the range in the paper is in the part we
# could not read): $\tau = \eta \cdot 2^j$ for $j = -4, \dots, 2$, from a sixteenth of the
# learning rate $\eta$ to four times it; the loss range includes $\tau = 0$.
STEP_MULTIPLIERS = tuple(2. ** i for i in range(-4, 3))


def landscape(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              step_sizes: Sequence[float]) -> Dict[str, Optional[float]]:
    """The loss range, the largest gradient change and the effective smoothness along
    the negative gradient on the batch `(x, y)`; `None` for a measure that met a non-finite loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    saved_params = [p.detach().clone() for p in params]

    def loss_and_gradient():
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params)
        # One flat vector of every parameter's gradient
        return loss.detach(), torch.cat([g.reshape(-1) for g in grads])

    with trainer.statistics_kept(model):
        model.train()
        try:
            loss0, g = loss_and_gradient()
            losses, changes, betas = [loss0], [], []
            g_norm = g.norm()
            for eta in step_sizes:
                with torch.no_grad():
                    offset = 0
                    for p, p0 in zip(params, saved_params):
                        n = p.numel()
                        # $\theta - \tau \nabla \ell(\theta)$
                        p.copy_(p0 - eta * g[offset:offset + n].view_as(p))
                        offset += n
                loss, g_eta = loss_and_gradient()
                # $\|\nabla \ell(\theta) - \nabla \ell(\theta - \tau \nabla \ell(\theta))\|$
                change = (g - g_eta).norm()
                losses.append(loss)
                changes.append(change)
                betas.append(change / (eta * g_norm))
            losses = torch.stack(losses)
            changes, betas = torch.stack(changes), torch.stack(betas)
            measures = {'loss': loss0, 'loss_range': losses.max() - losses.min(),
                        'gradient_change': changes.max(), 'beta': betas.max(),
                        'gradient_norm': g_norm}
            # A measure that met a non-finite number along the way is missing, not NaN
            finite = bool(torch.isfinite(losses).all() and torch.isfinite(changes).all()
                          and torch.isfinite(betas).all())
            return {k: v.item() if (finite or k in ('loss', 'gradient_norm')) and
                    bool(torch.isfinite(v)) else None for k, v in measures.items()}
        finally:
            with torch.no_grad():
                for p, p0 in zip(params, saved_params):
                    p.copy_(p0)


# ## Settings
#
# Plain SGD at a fixed learning rate, as in [our Figure 1 run](covariate_shift.md). Two
# rates: $0.1$, at which the standard network trains well, and $0.5$, at which it is near
# its limit. Santurkar et al.'s Figure 1 shows their VGG at $0.1$ and $0.5$; which rate their
# noisy runs used is in the part we could not read.
@dataclass
class Settings:
    steps: int = 3000
    batch_size: int = 60
    learning_rates: Tuple[float, ...] = (0.1, 0.5)
    hidden: int = 100
    layers: int = 3
    # The strength $\kappa$ of the noise of the noisy networks
    noise: float = 1.
    # Other strengths, for the noisy networks at the first learning rate only
    noise_sweep: Tuple[float, ...] = (0.25, 0.5, 2.)
    # Test accuracy and the probe's percentiles every `record_every` steps
    record_every: int = 50
    # The smoothness along the gradient every `landscape_every` steps, for `standard` and
    # `bn` at the first learning rate (0: never)
    landscape_every: int = 50
    # The fixed probe batch: the first `probe_size` test images
    probe_size: int = 1000
    seeds: Tuple[int, ...] = (0, 1, 2)
    device: str = 'auto'
    dataset: str = 'auto'
    data_dir: Optional[str] = None
    download: bool = True


# The percentiles that the 2015 paper's Figure 1 draws
PERCENTILES = (0.15, 0.50, 0.85)
# The networks whose landscape is measured
LANDSCAPE_NETWORKS = ('standard', 'bn')
# Each noisy network, and the network it adds the noise to (strength 0)
NOISY_OF = {'noisy_bn': 'bn', 'noisy_standard': 'standard'}


@dataclass
class Run:
    """What one network, learning rate, noise strength and seed recorded."""
    kind: str
    learning_rate: float
    seed: int
    noise: float = 0.
    # Records at these steps, from 0 (before any update)
    steps: List[int] = field(default_factory=list)
    test_accuracy: List[float] = field(default_factory=list)
    # For the noisy networks, the test accuracy with the noise drawn as in training
    test_accuracy_noisy: List[float] = field(default_factory=list)
    # The accuracy on the training batches since the previous record, with the noise, as
    # the optimiser saw them (at step 0: none yet, so `None`)
    train_accuracy: List[Optional[float]] = field(default_factory=list)
    # $[R, 3, 100]$: the percentiles of each unit's ReLU input on the probe batch
    percentiles: Optional[torch.Tensor] = None
    # The smoothness along the gradient, one dict per measured step
    landscape_steps: List[int] = field(default_factory=list)
    landscape: List[Dict[str, Optional[float]]] = field(default_factory=list)
    # The first step whose loss was not finite; `None` if training never diverged
    diverged_at: Optional[int] = None
    seconds: float = 0.

    def jitter(self) -> torch.Tensor:
        r"""
        How much each unit's input distribution moves from one record to the next, $[100]$:
        the mean over records and over the three percentiles of $|q_k(t) - q_k(t - 1)|$.
        """
        return (self.percentiles[1:] - self.percentiles[:-1]).abs().mean(dim=(0, 1))

    def spread(self) -> torch.Tensor:
        """Each unit's typical width, $[100]$: the median over records of $q_{85} - q_{15}$."""
        return (self.percentiles[:, 2] - self.percentiles[:, 0]).median(dim=0).values

    def relative_jitter(self) -> torch.Tensor:
        """The jitter in units of the unit's own width, $[100]$: a unit twice as wide may move
        twice as far for the same change in what the next layer makes of it."""
        return self.jitter() / self.spread().clamp_min(1e-12)

    def drift(self) -> torch.Tensor:
        r"""`covariate_shift.Run.drift`: $\frac{1}{3}\sum_k \max_t |q_k(t) - q_k(T)|$, $[100]$."""
        return (self.percentiles - self.percentiles[-1:]).abs().amax(dim=0).mean(dim=0)

    def typical_unit(self) -> int:
        """The unit whose jitter is the median of all units': the one the figure shows."""
        jitter = self.jitter()
        return int(jitter.argsort()[len(jitter) // 2])


# ## Training with records
#
# The [shared trainer](trainer.md) runs the steps. After every `record_every` steps a hook
# measures the test accuracy (in `eval()` mode: population statistics, noise at its mean) and
# the percentiles of the last hidden layer's ReLU inputs on a fixed probe batch, in training
# mode, as training sees them: each batch norm normalising with the probe's statistics and
# the noise drawn anew. The running statistics that this pass updates are put back, as in
# `covariate_shift.train`. A run whose loss stops being finite is a result: it ends there,
# with `diverged_at` set.
def train(settings: Settings, kind: str, learning_rate: float, seed: int,
          tensors: data.DeviceData, *, noise: Optional[float] = None,
          measure_landscape: bool = False,
          on_record: Optional[Callable[[int, float], None]] = None) -> Run:
    device = tensors.train_x.device
    noise = (settings.noise if noise is None else noise) if kind in NOISY_OF else 0.
    generator = trainer.seed_everything(seed)
    # The noise has its own generator, so that the noisy and plain networks of a seed start
    # from the same weights and see the same batches
    noise_generator = torch.Generator().manual_seed(seed + 10_000)
    model = Network(kind, hidden=settings.hidden, layers=settings.layers, noise=noise,
                    generator=noise_generator).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    probe = tensors.test_x[:settings.probe_size]
    quantiles = torch.tensor(PERCENTILES, device=device)
    step_sizes = [learning_rate * k for k in STEP_MULTIPLIERS]
    run = Run(kind, learning_rate, seed, noise)
    percentiles = []
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = [0]

    noises = [m for m in model.modules() if isinstance(m, DistributionNoise)]

    @torch.no_grad()
    def record(step: int):
        accuracy = trainer.evaluate(model, tensors.test_x, tensors.test_y, batch_size=2000)[1]
        if noises:
            for m in noises:
                m.sample_in_eval = True
            run.test_accuracy_noisy.append(
                trainer.evaluate(model, tensors.test_x, tensors.test_y, batch_size=2000)[1])
            for m in noises:
                m.sample_in_eval = False
        with trainer.statistics_kept(model):
            model.train()
            # $[P, 100] \to [3, 100]$
            percentiles.append(torch.quantile(model.relu_input(probe), quantiles, dim=0))
        run.steps.append(step)
        run.test_accuracy.append(accuracy)
        run.train_accuracy.append(correct.item() / seen[0] if seen[0] else None)
        correct.zero_()
        seen[0] = 0
        if on_record is not None:
            on_record(step, accuracy)

    def on_step(s: trainer.Step):
        correct.add_((s.logits.argmax(dim=1) == s.y).sum())
        seen[0] += len(s.y)
        if s.step % settings.record_every == 0 or s.step == settings.steps:
            record(s.step)
        if measure_landscape and settings.landscape_every and \
                s.step % settings.landscape_every == 0:
            # At the parameters after this step, on the batch it trained on
            run.landscape_steps.append(s.step)
            run.landscape.append(landscape(model, s.x, s.y, step_sizes))

    run.diverged_at, run.seconds = trainer.train_watched(
        model, optimizer, (tensors.train_x, tensors.train_y), settings.batch_size,
        generator, settings.steps, before=lambda: record(0), on_step=on_step,
        progress=None)
    percentiles = torch.stack(percentiles).cpu()
    # A record taken just before the loss turned non-finite may already hold infinities:
    # the distribution is kept up to the last finite record
    finite = torch.isfinite(percentiles).flatten(1).all(dim=1)
    run.percentiles = percentiles[:int(finite.long().cumprod(0).sum())]
    return run


def load_data(settings: Settings, log=print) -> Tuple[data.DeviceData, str]:
    tensors, dataset = cli.load_checked_data(settings.dataset, settings.data_dir,
                                             settings.download, settings.device, seed=0,
                                             batch_size=settings.batch_size, log=log)
    cli.check_probe_size(settings.probe_size, len(tensors.test_y))
    return tensors, str(dataset)


def planned_runs(settings: Settings) -> List[Tuple[str, float, float, bool]]:
    """`(kind, learning rate, noise strength, measure the landscape)` of every run, per seed:
    the four networks at every rate, then the noisy ones at the other strengths."""
    plan = []
    for i, lr in enumerate(settings.learning_rates):
        for kind in NETWORKS:
            plan.append((kind, lr, settings.noise if kind in NOISY_OF else 0.,
                         i == 0 and kind in LANDSCAPE_NETWORKS))
    for k in settings.noise_sweep:
        for kind in NOISY_OF:
            plan.append((kind, settings.learning_rates[0], k, False))
    return plan


def run_all(settings: Settings, log=print, on_record=None,
            loaded: Optional[Tuple[data.DeviceData, str]] = None) -> Dict[str, object]:
    """Every planned run for every seed, on the same data."""
    check_settings(settings)
    tensors, dataset = loaded or load_data(settings, log)
    device = tensors.train_x.device
    runs: List[Run] = []
    with trainer.one_cpu_thread(device):
        for kind, lr, k, measure in planned_runs(settings):
            for seed in settings.seeds:
                hook = on_record(kind, lr, k, seed) if on_record is not None else None
                run = train(settings, kind, lr, seed, tensors, noise=k,
                            measure_landscape=measure, on_record=hook)
                runs.append(run)
                ended = f'diverged at step {run.diverged_at}' if run.diverged_at \
                    else f'test accuracy {run.test_accuracy[-1]:.4f}'
                log(f'{kind:15s} lr {lr:g} noise {k:g} seed {seed}: {ended} '
                    f'({run.seconds:.1f} s)')
    return {'runs': runs, 'dataset': dataset, 'device': device}


# ## The numbers behind the figures
#
# Curves are summarised over seeds by their median and range at each record. A diverged seed
# contributes up to its last record; after that its accuracy is missing, and the step at
# which each seed diverged is stored.
def lr_key(lr: float) -> str:
    """The key of a learning rate in the values, without a dot (quotes split keys at dots):
    `lr_0p1` for 0.1."""
    return f'lr_{lr:g}'.replace('.', 'p')


def _median(values: List[float]) -> float:
    # The middle value; for an even count, the mean of the two middle ones
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def _summary(series: List[List[Optional[float]]]) -> Dict[str, List[Optional[float]]]:
    """Median, min and max at each position over the seeds that have a value there."""
    out = {'median': [], 'min': [], 'max': []}
    for i in range(max(len(s) for s in series)):
        at = [s[i] for s in series if i < len(s) and s[i] is not None]
        out['median'].append(_median(at) if at else None)
        out['min'].append(min(at) if at else None)
        out['max'].append(max(at) if at else None)
    return out


def _spread(values: List[Optional[float]]) -> Optional[Dict[str, float]]:
    done = [v for v in values if v is not None]
    return {'median': _median(done), 'min': min(done), 'max': max(done)} if done else None


def _window_mean(values: List[Optional[float]], steps: List[int], start: int) -> Optional[float]:
    at = [v for v, s in zip(values, steps) if s > start and v is not None]
    return sum(at) / len(at) if at else None


def _group_values(group: List[Run], settings: Settings, first_seed: int) -> Dict:
    """The curves and summary numbers of one network, rate and strength, over its seeds."""
    steps = max((r.steps for r in group), key=len)
    # Accuracy over the last tenth of the steps, where every curve has levelled off
    late = settings.steps - settings.steps // 10
    # The test accuracy at the first record after a tenth of the steps: how fast it learns
    # (none, if every seed diverged before it)
    early = min((s for s in steps if s >= settings.steps // 10), default=None)
    v = {
        'noise': group[0].noise,
        'steps': steps,
        'test_accuracy': _summary([r.test_accuracy for r in group]),
        'train_accuracy': _summary([r.train_accuracy for r in group]),
        'diverged': sum(r.diverged_at is not None for r in group),
        'diverged_at': [r.diverged_at for r in group],
        'test_final': _spread([_window_mean(r.test_accuracy, r.steps, late) for r in group]),
        'train_final': _spread([_window_mean(r.train_accuracy, r.steps, late) for r in group]),
        'test_noisy_final': _spread([_window_mean(r.test_accuracy_noisy, r.steps, late)
                                     for r in group if r.test_accuracy_noisy]),
        'test_early': _spread([r.test_accuracy[r.steps.index(early)] if early in r.steps
                               else None for r in group]),
        'early_step': early,
    }
    # How unstable the unit inputs are, for every seed that recorded more than once (a run
    # that diverged before its first record has nothing to measure)
    measured = [r for r in group if len(r.percentiles) > 1]
    if measured:
        v['jitter'] = _spread([r.jitter().median().item() for r in measured])
        v['relative_jitter'] = _spread([r.relative_jitter().median().item() for r in measured])
        v['drift'] = _spread([r.drift().median().item() for r in measured])
        v['spread'] = _spread([r.spread().median().item() for r in measured])
        # The figure shows one unit of one seed
        shown = next((r for r in measured if r.seed == first_seed), measured[0])
        unit = shown.typical_unit()
        v['unit'], v['unit_seed'] = unit, shown.seed
        v['percentiles'] = shown.percentiles[:, :, unit].T.tolist()  # [3, R]
        v['percentile_steps'] = shown.steps[:len(shown.percentiles)]
    return v


def values_of(result, settings: Settings) -> Tuple[Dict, Dict]:
    """The values of the accuracy figure and of the landscape figure."""
    runs: List[Run] = result['runs']
    common = {'settings': {'steps': settings.steps, 'batch_size': settings.batch_size,
                           'learning_rates': list(settings.learning_rates),
                           'hidden': settings.hidden, 'layers': settings.layers,
                           'noise': settings.noise, 'noise_sweep': list(settings.noise_sweep),
                           'record_every': settings.record_every,
                           'landscape_every': settings.landscape_every,
                           'step_multipliers': list(STEP_MULTIPLIERS),
                           'probe_size': settings.probe_size, 'seeds': list(settings.seeds),
                           'optimizer': 'SGD'},
              'dataset': result['dataset'], 'seeds_count': len(settings.seeds)}
    first_seed = min(settings.seeds)

    def group(kind, lr, k):
        return [r for r in runs if r.kind == kind and r.learning_rate == lr and r.noise == k]

    accuracy = dict(common, runs={}, sweep={})
    for lr in settings.learning_rates:
        accuracy['runs'][lr_key(lr)] = {
            kind: _group_values(group(kind, lr, settings.noise if kind in NOISY_OF else 0.),
                                settings, first_seed)
            for kind in NETWORKS}
    # How many times less stable the noisy batch-normalized network's unit inputs are than
    # the other networks', by the median relative jitter
    main = accuracy['runs'][lr_key(settings.learning_rates[0])]
    if all('relative_jitter' in main[k] for k in ('noisy_bn', 'bn', 'standard')):
        noisy = main['noisy_bn']['relative_jitter']['median']
        accuracy['instability'] = {
            f'noisy_bn_over_{k}': noisy / main[k]['relative_jitter']['median']
            for k in ('bn', 'standard')}
    # The noise sweep: each noisy network at every strength, from 0 (its plain network)
    lr = settings.learning_rates[0]
    strengths = sorted({0., settings.noise, *settings.noise_sweep})
    accuracy['sweep']['strengths'] = strengths
    for noisy, plain in NOISY_OF.items():
        rows = [_group_values(group(plain, lr, 0.) if k == 0 else group(noisy, lr, k),
                              settings, first_seed) for k in strengths]
        accuracy['sweep'][noisy] = {
            name: [row.get(name) for row in rows]
            for name in ('test_early', 'test_final', 'train_final', 'test_noisy_final',
                         'jitter', 'relative_jitter', 'diverged')}
    landscape_values = dict(common, learning_rate=lr, runs={})
    for kind in LANDSCAPE_NETWORKS:
        measured = [r for r in group(kind, lr, 0.) if r.landscape_steps]
        if not measured:
            continue
        v = {'steps': max((r.landscape_steps for r in measured), key=len)}
        # One number per network and phase: the median over the measured steps of every seed
        # in the first fifth of training (where the networks differ most) and in its second
        # half
        phases = {'early': lambda s: s <= max(v['steps'][0], settings.steps // 5),
                  'late': lambda s: s > settings.steps // 2}
        for measure in ('loss_range', 'gradient_change', 'beta', 'gradient_norm', 'loss'):
            per_seed = [[m[measure] for m in r.landscape] for r in measured]
            v[measure] = _summary(per_seed)
            for phase, inside in phases.items():
                at = [x for r, s in zip(measured, per_seed)
                      for step, x in zip(r.landscape_steps, s) if x is not None and inside(step)]
                v[f'{measure}_{phase}'] = _median(at) if at else None
        landscape_values['runs'][kind] = v
    if len(landscape_values['runs']) == 2:
        s, b = landscape_values['runs']['standard'], landscape_values['runs']['bn']
        for measure in ('loss_range', 'gradient_change', 'beta'):
            for phase in ('early', 'late'):
                key = f'{measure}_{phase}'
                if s[key] and b[key]:
                    # How many times larger without batch normalization
                    landscape_values[f'{key}_ratio'] = s[key] / b[key]
    return accuracy, landscape_values


# ## The figures
#
# The first figure: the accuracy of the four networks at each learning rate, on the
# training batches (with the noise) and on the test set, as the median over seeds with a band
# from the lowest to the highest seed; below, the percentiles of one unit's input for each
# network at the first learning rate, on one shared vertical axis, so that a distribution
# that jumps and one that stays put are drawn on the same scale; at the bottom, the noise
# sweep.
STYLES = {'standard': ('Standard', '#d62728', '--'),
          'bn': ('+ BatchNorm', '#1f77b4', '-'),
          'noisy_bn': ('+ "noisy" BatchNorm', '#2ca02c', '-'),
          'noisy_standard': ('Standard + noise', '#9467bd', ':')}
SHORT = {'standard': 'standard', 'bn': 'BatchNorm', 'noisy_bn': '"noisy" BN',
         'noisy_standard': 'standard + noise'}
# The accuracy axes start here; curves below it are named in the panel instead
ACCURACY_FLOOR = 0.8


def _band(ax, steps, summary, colour, line, label, lw=1.4, marker=None):
    points = [(s, m, lo, hi) for s, m, lo, hi in
              zip(steps, summary['median'], summary['min'], summary['max']) if m is not None]
    if not points:
        return
    xs, med, lo, hi = zip(*points)
    ax.plot(xs, med, line, color=colour, label=label, lw=lw, marker=marker, ms=4)
    ax.fill_between(xs, lo, hi, color=colour, alpha=0.18, lw=0)


def _legend(ax, **options):
    # Only where something was drawn (a run that diverged at once draws nothing)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _notes(runs: Dict, measure: str) -> List[str]:
    """What the accuracy axes cannot show: diverged seeds, and curves below the floor."""
    notes = []
    for kind in NETWORKS:
        v = runs[kind]
        parts = []
        if v['diverged']:
            at = ', '.join(str(a) for a in v['diverged_at'] if a is not None)
            parts.append(f'{v["diverged"]} of {len(v["diverged_at"])} diverged '
                         f'(step{"s" if v["diverged"] > 1 else ""} {at})')
        final = v[f'{measure.split("_")[0]}_final']
        if final is not None and final['median'] < ACCURACY_FLOOR:
            rest = len(v['diverged_at']) - v['diverged']
            parts.append(f'{"the other ends" if rest == 1 else "the others end"} at '
                         f'{final["median"]:.0%}')
        if parts:
            notes.append(f'{SHORT[kind]}: ' + ',\n    '.join(parts))
    return notes


def draw(values: Dict, plt):
    """The accuracy, distribution and sweep figure, drawn with `plt` (pyplot)."""
    s = values['settings']
    lrs = s['learning_rates']
    columns = 2 * len(lrs)
    fig, axes = plt.subplots(3, columns, figsize=(3.4 * columns, 10.5), squeeze=False)
    fig.subplots_adjust(wspace=0.3, hspace=0.5, bottom=0.07, top=0.92)
    letters = iter('abcdefghijklmnopqrstuvwxyz')
    for i, lr in enumerate(lrs):
        runs = values['runs'][lr_key(lr)]
        for j, (measure, what) in enumerate((('train_accuracy', 'training batches'),
                                             ('test_accuracy', 'test set'))):
            ax = axes[0][2 * i + j]
            for kind in NETWORKS:
                label, colour, line = STYLES[kind]
                _band(ax, runs[kind]['steps'], runs[kind][measure], colour, line, label)
            notes = _notes(runs, measure)
            if notes:
                ax.text(0.97, 0.04, '\n'.join(notes), transform=ax.transAxes, ha='right',
                        va='bottom', fontsize=6.5, color='#555555')
            ax.set_title(f'({next(letters)}) lr {lr:g}: accuracy, {what}', fontsize=9)
            ax.set_xlabel('training steps')
            ax.set_ylim(ACCURACY_FLOOR, 1.0)
    axes[0][0].set_ylabel('accuracy (training batches: with noise)', fontsize=8)
    _legend(axes[0][0], loc='center right', fontsize=7)
    runs = values['runs'][lr_key(lrs[0])]
    shown = [k for k in NETWORKS if 'percentiles' in runs[k]][:columns]
    lows = [min(min(p) for p in runs[k]['percentiles']) for k in shown] or [0.]
    highs = [max(max(p) for p in runs[k]['percentiles']) for k in shown] or [1.]
    pad = 0.05 * (max(highs) - min(lows)) or 0.5
    for ax, kind in zip(axes[1], shown):
        v = runs[kind]
        for q, series in zip(PERCENTILES, v['percentiles']):
            ax.plot(v['percentile_steps'], series, color=STYLES[kind][1],
                    lw=1.3 if q == 0.5 else 0.8, ls='-' if q == 0.5 else ':', label=f'{q:.0%}')
        ax.set_title(f'({next(letters)}) {SHORT[kind]}: unit {v["unit"]}\nall units: '
                     f'jitter / width {v["relative_jitter"]["median"]:.3f}', fontsize=9)
        ax.set_xlabel('training steps')
        ax.set_ylim(min(lows) - pad, max(highs) + pad)
    for ax in axes[1][len(shown):]:
        ax.axis('off')
    axes[1][0].set_ylabel(f'ReLU input after noise, lr {lrs[0]:g}', fontsize=8)
    _legend(axes[1][0], title='percentile', fontsize=7, title_fontsize=7, loc='lower left')
    sweep = values['sweep']
    ks = sweep['strengths']
    early = runs['bn']['early_step']
    sweep_panels = (('test_early', f'test accuracy at step {early:,}' if early is not None
                     else 'test accuracy, early'),
                    ('test_final', 'test accuracy, last tenth'),
                    ('train_final', 'training-batch accuracy, last tenth'),
                    ('relative_jitter', 'unit jitter / unit width'))
    for ax, (measure, title) in zip(axes[2], sweep_panels):
        for noisy in NOISY_OF:
            label, colour, line = STYLES[noisy]
            cells = sweep[noisy][measure]
            summary = {x: [c[x] if c else None for c in cells] for x in ('median', 'min', 'max')}
            _band(ax, ks, summary, colour, line, label, marker='o')
        ax.set_title(f'({next(letters)}) lr {lrs[0]:g}: {title}', fontsize=9)
        ax.set_xlabel('noise strength k (0: no noise)')
        if measure.startswith('test') or measure.startswith('train'):
            ax.set_ylim(ACCURACY_FLOOR, 1.0)
    for ax in axes[2][len(sweep_panels):]:
        ax.axis('off')
    _legend(axes[2][1], loc='lower left', fontsize=7)
    for row in axes:
        for ax in row:
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.25)
    fig.suptitle(f'MLP {s["layers"]}×{s["hidden"]} ReLU, batch {s["batch_size"]}, plain SGD; '
                 f'noise strength k = {s["noise"]:g} (bottom row: other k); median of '
                 f'{len(s["seeds"])} seeds, band min–max.\nLook at: does the green curve keep '
                 f'up with the blue one while its unit input (middle row) jumps around?',
                 fontsize=9, y=0.98)
    return fig


def draw_landscape(values: Dict, plt):
    """The landscape figure: the three measures over training, standard vs batch norm."""
    s = values['settings']
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    fig.subplots_adjust(wspace=0.3, bottom=0.22)
    titles = {'loss_range': '(a) loss range along the gradient',
              'gradient_change': '(b) gradient predictiveness: max ‖∇L(θ) − ∇L(θ−ηg)‖',
              'beta': '(c) effective β-smoothness'}
    for ax, (measure, title) in zip(axes, titles.items()):
        for kind in LANDSCAPE_NETWORKS:
            if kind not in values['runs']:
                continue
            label, colour, line = STYLES[kind]
            v = values['runs'][kind]
            _band(ax, v['steps'], v[measure], colour, line, label)
        ax.set_yscale('log')
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('training steps')
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25, which='both')
    axes[0].legend(fontsize=8)
    lo, hi = min(s['step_multipliers']), max(s['step_multipliers'])
    fig.suptitle(f'Along −g on the training batch, η from {lo:g}× to {hi:g}× the learning rate '
                 f'{values["learning_rate"]:g}; median of {len(s["seeds"])} seeds, band min–max.'
                 f'\nLower is smoother: look at how far the red curves lie above the blue ones, '
                 f'and when that gap closes.', fontsize=9, y=1.04)
    return fig


def plot(values: Dict, stamp_text: str, path: Path, drawer=draw):
    """Saves a figure as a stamped, self-contained SVG."""
    from labml_nn_bn import figure_tools
    figure_tools.save_svg(drawer(values, figure_tools.pyplot()), path, stamp_text)


SMOKE = Settings(steps=150, noise_sweep=(2.,), record_every=25, landscape_every=25,
                 probe_size=200, seeds=(0,), dataset='mnist-5k', download=False)


def _stamp(settings: Settings, result) -> str:
    from labml_nn_bn import figure_tools
    n_runs = len(settings.seeds) * len(planned_runs(settings))
    return figure_tools.stamp(result['dataset'], f'{settings.steps:,} steps per run, {n_runs} runs',
                              figure_tools.describe_device(result['device']))


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    """
    Writes `internal_covariate_shift.svg`/`.json` and `internal_covariate_shift_landscape.svg`/
    `.json`. The full run is 3,000 steps for each of 4 networks × 2 learning rates, and 2 noisy
    networks × 3 other strengths, on 3 seeds; smoke mode trains 150 steps on one seed.
    """
    from labml_nn_bn import figure_tools
    settings = SMOKE if smoke else Settings()
    result = run_all(settings)
    accuracy, landscape_values = values_of(result, settings)
    stamp_text = _stamp(settings, result)
    return (figure_tools.save_figure(out_dir, 'internal_covariate_shift', draw,
                                     accuracy, stamp_text) +
            figure_tools.save_figure(out_dir, 'internal_covariate_shift_landscape',
                                     draw_landscape, landscape_values, stamp_text))


# ## Command line
#
# Runs are tracked with labml like the other experiments: the settings, and at every record
# the test accuracy of each network, learning rate, noise strength and seed.
PROG = 'python -m labml_nn_bn.experiments.internal_covariate_shift'


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.make_parser(PROG, "Santurkar et al.'s test of internal covariate shift: "
                                       "standard, batch-normalized and 'noisy' "
                                       "batch-normalized MLPs, and the smoothness of their "
                                       "loss along the gradient.")
    d = Settings()
    parser.add_argument('--steps', type=int, default=d.steps, help='training steps per run')
    parser.add_argument('--batch-size', type=int, default=d.batch_size, help='images per mini-batch')
    parser.add_argument('--lrs', '--learning-rates', dest='learning_rates', type=float, nargs='+',
                        default=list(d.learning_rates),
                        help='learning rates of plain SGD; the landscape and the noise sweep '
                             'use the first')
    parser.add_argument('--hidden', type=int, default=d.hidden, help='units per hidden layer')
    parser.add_argument('--layers', type=int, default=d.layers, help='hidden layers')
    parser.add_argument('--noise', type=float, default=d.noise,
                        help='strength k of the noise: each step, each unit is scaled by '
                             'sigma ~ U(1, 1+k) and shifted by mu ~ U(-k, k), and each '
                             'activation gets k * N(0, 1)')
    parser.add_argument('--noise-sweep', type=float, nargs='*', default=list(d.noise_sweep),
                        help='other strengths for the noisy networks at the first rate '
                             '(none: no sweep)')
    parser.add_argument('--record-every', type=int, default=d.record_every,
                        help='steps between records of the accuracy and the percentiles')
    parser.add_argument('--landscape-every', type=int, default=d.landscape_every,
                        help='steps between measurements along the gradient (0: none)')
    parser.add_argument('--probe-size', type=int, default=d.probe_size,
                        help='test images in the fixed probe batch')
    parser.add_argument('--seeds', type=int, nargs='+', default=list(d.seeds),
                        help='seeds: each fixes the initial weights, the batches and the noise')
    cli.add_device_argument(parser, d.device)
    cli.add_data_arguments(parser, d.dataset, train_limit=False)
    cli.add_logs_argument(parser)
    cli.add_figure_and_smoke_arguments(
        parser,
        figure_help='also write the accuracy figure to this SVG file (and the '
                    'landscape figure beside it, with _landscape added to its name)',
        smoke_help='a run of seconds (150 steps, one seed, one other noise strength, '
                   'on the offline subset), for tests; options given with it override '
                   'its settings')
    return cli.parse_experiment_arguments(parser, argv, check_values)


def check_values(args: argparse.Namespace):
    """What `cli.check_values` does not know about."""
    for seed in args.seeds:
        cli.check_seed(seed, '--seeds')
    for lr in args.learning_rates:
        if not (math.isfinite(lr) and lr > 0):
            raise cli.UsageError(f'argument --lrs: expected finite numbers > 0, '
                                 f'got {lr}')
    for name, values in (('--seeds', args.seeds), ('--lrs', args.learning_rates)):
        if len(set(values)) != len(values):
            raise cli.UsageError(f'argument {name}: expected different values, '
                                 f'got {values}')
    for name in ('hidden', 'layers', 'record_every'):
        if getattr(args, name) < 1:
            option = f'--{name.replace("_", "-")}'
            raise cli.UsageError(f'argument {option}: expected at least 1, '
                                 f'got {getattr(args, name)}')
    if args.landscape_every < 0:
        raise cli.UsageError(f'argument --landscape-every: expected 0 (none) or more, '
                             f'got {args.landscape_every}')
    if args.probe_size < 2:
        raise cli.UsageError(f'argument --probe-size: expected at least 2, '
                             f'got {args.probe_size}')
    for k in [args.noise] + args.noise_sweep:
        if not (math.isfinite(k) and k > 0):
            option = '--noise' if k == args.noise else '--noise-sweep'
            raise cli.UsageError(f'argument {option}: expected finite strengths > 0 '
                                 f'(the plain networks are strength 0), got {k}')


def check_settings(settings: Settings):
    """What can be checked before the data loads, on the settings a run will really use."""
    if settings.record_every > settings.steps:
        # Only the first and the last step would be recorded: not the curve that was asked for
        raise cli.UsageError(f'argument --record-every: expected at most --steps '
                             f'({settings.steps:,}), got {settings.record_every:,}')
    if settings.landscape_every > settings.steps:
        raise cli.UsageError(f'argument --landscape-every: expected at most --steps '
                             f'({settings.steps:,}), got {settings.landscape_every:,}')


def _settings_from(args) -> Settings:
    # With --smoke, the smoke settings, with the options written on top
    settings = cli.settings_from(args, Settings, SMOKE)
    # The default spacings, shortened to fit a shorter run; a spacing that was given is
    # checked instead
    if 'record_every' not in args.given:
        settings.record_every = min(settings.record_every, settings.steps)
    if 'landscape_every' not in args.given:
        settings.landscape_every = min(settings.landscape_every, settings.steps)
    # A strength asked for twice is run once
    settings.noise_sweep = tuple(k for k in dict.fromkeys(settings.noise_sweep)
                                 if k != settings.noise)
    return settings


def main(argv=None):
    def start():
        args = parse_args(argv)
        settings = _settings_from(args)
        check_settings(settings)
        loaded = load_data(settings)
        from labml import tracker

        def on_record(kind, lr, k, seed):
            # labml groups indicators at dots, so the numbers in the name have none
            noise = f'noise_{k:g}'.replace('.', 'p')
            key = f'accuracy.{kind}.{lr_key(lr)}.{noise}.seed_{seed}'
            return lambda step, accuracy: tracker.save(step, {key: accuracy})

        configs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()}
        with cli.labml_run('internal_covariate_shift', configs, logs_dir=args.logs_dir):
            result = run_all(settings, on_record=on_record, loaded=loaded)
        if args.figure:
            accuracy, landscape_values = values_of(result, settings)
            stamp_text = _stamp(settings, result)
            path = Path(args.figure)
            plot(accuracy, stamp_text, path)
            if landscape_values['runs']:
                plot(landscape_values, stamp_text,
                     path.with_name(f'{path.stem}_landscape{path.suffix or ".svg"}'),
                     draw_landscape)
        return result

    return cli.run_main(start, PROG)


if __name__ == '__main__':
    main(sys.argv[1:])


# ## Exercises
#
# **1. How far the noise moves a unit** (derivation). Take a unit that the batch norm
# has just normalised, $\beta = 0$ and $\gamma = 1$, and the page's noise of strength
# $k = 1$. (a) By how much does the mean that the next layer sees jump between two
# steps, on average? (b) Between which values does its standard deviation move? (c) By
# what factor does evaluation mode scale the unit instead?
#
# ??? success "Solution"
#     (a) The next layer sees mean $\mu_t$, drawn anew from $\mathcal{U}(-k, k)$ at
#     every step. For two independent draws,
#     $\mathbb{E}|\mu_t - \mu_{t+1}| = \frac{2k}{3}$, so the mean jumps by $0.67$ of a
#     normalised unit's standard deviation per step, on average. (b) Its variance is
#     $\sigma_t^2 + k^2$ with $\sigma_t$ in $[1, 1 + k]$, so the standard deviation
#     moves between $\sqrt{2} = 1.41$ and $\sqrt{5} = 2.24$. (c)
#     $1 + \frac{k}{2} = 1.5$, the mean of $\sigma_t$. A distribution that jumps like
#     that at every step is far less stable than anything a plain network's slow drift
#     produces (the page measures it: the noisy network's inputs move
#     <!-- measured internal_covariate_shift:instability.noisy_bn_over_standard .1f -->7.7<!-- /measured -->
#     times as much as the standard network's).
#
# **2. Two ways to measure internal covariate shift** (derivation). The page measures
# the shift as the 2015 paper pictures it: how far the percentiles of a unit's input
# move. What did Santurkar et al. measure in their Section 2.2, and when can the two
# disagree?
#
# ??? success "Solution"
#     They asked how much the *gradient* of a layer's weights changes because the layers
#     below it were updated: on the same batch, the gradient $G$ with respect to layer
#     $i$'s weights before the step and the gradient $G'$ after the layers
#     $1, \dots, i - 1$ have taken theirs (layer $i$ and those above kept as they were),
#     compared by $\lVert G - G' \rVert$ and by the cosine of the angle between them.
#     That is the shift as the optimiser feels it, where ours is the shift as the
#     forward pass shows it. They can disagree: a batch norm pins the mean and variance
#     of its output, so our percentiles move little, but the layers below can still
#     change *which* examples land where, and with it the gradient of the layer above.
#     Santurkar et al. found that by their measure batch normalization did not
#     necessarily reduce the shift, and in some of their networks increased it. Exercise
#     3 computes their measure for our networks.
#
# **3. Santurkar et al.'s measure, in code** (code). Write `gradient_shift(model, x, y,
# learning_rate, i)` that returns $\lVert G - G' \rVert$ and the cosine between $G$ and
# $G'$ of exercise 2 for `model.linears[i]`, leaving `model` as it was.
#
# ??? success "Solution"
#     ```python
#     import copy
#
#
#     def gradient_shift(model, x, y, learning_rate: float, i: int):
#         def gradient(m):
#             m.zero_grad()
#             F.cross_entropy(m(x), y).backward()
#             return m.linears[i].weight.grad.clone()
#
#         moved = copy.deepcopy(model)
#         before = gradient(moved)
#         # One SGD step of the layers below layer i only, with this batch's gradients
#         with torch.no_grad():
#             for lower in list(moved.linears[:i]) + list(moved.norms[:i]):
#                 for p in lower.parameters():
#                     p -= learning_rate * p.grad
#         after = gradient(moved)
#         return ((before - after).norm().item(),
#                 F.cosine_similarity(before.flatten(), after.flatten(), dim=0).item())
#     ```
#
#     The copy keeps `model` untouched (its weights, its gradients and the running
#     statistics that the forward passes update). For the first layer there is nothing
#     below, and for a network without the noise the function returns a distance of 0
#     and a cosine of 1 (a test checks); in a noisy network the two passes draw
#     different noise, so reset the noise's generator before each to compare like with
#     like. Calling it every few steps in `train` for `standard` and `bn` gives the
#     comparison of their Figure 5 for our networks; we have not run it.
#
# **4. Weaker noise at the high rate** (experiment). At learning rate 0.5 and $k = 1$
# the noise stops the standard network. Does a quarter of it? Run the four networks at
# 0.5 with $k = 0.25$, without the sweep and the landscape, for 1,000 steps:
#
# ```bash
# python -m labml_nn_bn.experiments.internal_covariate_shift --lrs 0.5 --noise 0.25 \
#     --noise-sweep --landscape-every 0 --steps 1000 --dataset mnist-5k
# ```
#
# ??? success "Solution"
#     When we ran it (three seeds, 1,000 steps), the noisy batch-normalized network
#     trained as well as the plain batch-normalized one, seed for seed. The standard
#     network with the weaker noise was no longer stopped outright: one seed diverged,
#     after hundreds of steps, and the other two trained. At $k = 1$ the page's run lost
#     <!-- measured internal_covariate_shift:runs.lr_0p5.noisy_standard.diverged d -->2<!-- /measured -->
#     of its 3 seeds within the first
#     <!-- measured internal_covariate_shift:runs.lr_0p5.noisy_standard.diverged_at.1 d -->30<!-- /measured -->
#     steps. So the harm that the noise does to the standard network grows with its
#     strength, while the batch-normalized network takes both strengths in its stride,
#     even though its layers' inputs jump at every step. That is the shape of Santurkar
#     et al.'s argument: whatever batch normalization does for training, it is not
#     keeping those distributions still.
