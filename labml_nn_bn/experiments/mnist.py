r"""
---
title: MNIST CNN with Batch Normalization
summary: >
  A small convolutional network trained on MNIST with and without batch normalization,
  tracked with labml, with the whole data set on the training device.
---

# MNIST CNN with Batch Normalization

This experiment trains a small convolutional network on MNIST using our
[`BatchNorm`](../batch_norm.md) after every convolution and hidden fully connected layer, and,
for comparison, the same network without batch normalization. It runs on a laptop's CPU in well
under a minute on the offline 5,000-digit subset, and on Colab's GPUs on full MNIST. The
training loop is the [shared trainer](trainer.md) of all the experiments.
Symbols such as $\mu_\mathcal{B}$ and $\hat{x}$ are the site's [notation](../../notation.md).

Run it with batch normalization, without it, or see every option and its default (epochs,
batch size, optimizer, device, data set, seed, where runs go, a compiled or CUDA-graph step):

```bash
python -m labml_nn_bn.experiments.mnist
python -m labml_nn_bn.experiments.mnist --no-bn
python -m labml_nn_bn.experiments.mnist --help
```

(`python -m labml_nn_bn.mnist` is the same command, under its older name.)

Runs are tracked with [labml](https://github.com/labmlai/labml): configurations, per-epoch
losses and accuracies are printed and stored under `logs/`, next to the nearest `.labml.yaml`
(or in the current folder), or in `--logs-dir`. Nothing is sent anywhere.

## What it shows

![Training loss and test accuracy of the MNIST CNN with and without batch normalization](../../figures/mnist.svg)

The three networks are trained with the same seed, so they see the same batches in the same
order (the network without batch norm draws biases too, so its initial weights differ): 2
epochs of the offline subset, batch 64, Adam at $10^{-3}$, with the test accuracy measured in
`eval()` mode every 4 steps. After <!-- measured mnist:settings.steps -->124<!-- /measured -->
steps, the test accuracy is
<!-- measured mnist:bn.accuracy_test .2% -->97.70%<!-- /measured --> with our batch norm,
<!-- measured mnist:torch_bn.accuracy_test .2% -->97.60%<!-- /measured --> with
`torch.nn.BatchNorm*d` in its place, and
<!-- measured mnist:no_bn.accuracy_test .2% -->96.90%<!-- /measured --> without batch
normalization.

The paper's claim is that batch normalization lets a network reach a given accuracy in fewer
training steps (Figure 1 on MNIST; on ImageNet, less than half the steps with batch
normalization alone, and 14 times fewer with the changes of its Section 4.2.1 as well). Our view
of this figure: the same holds at this small scale. With batch normalization the training
loss falls faster and the test accuracy climbs faster in the first few dozen steps, at the same
learning rate; by the end of this short run the gap in test accuracy has narrowed to under a percentage
point (<!-- measured mnist:bn.accuracy_test .1% -->97.7%<!-- /measured --> against
<!-- measured mnist:no_bn.accuracy_test .1% -->96.9%<!-- /measured -->). Our module
and `torch.nn`'s give curves that lie on top of each other, so the `torch.nn` curve is drawn
over ours as a thin dark dashed line (the legend says so): the blue line with dashes along it is
two curves, and wherever the dashes follow it the two modules agree. The figure is made by
`make_figures` below (`python -m labml_nn_bn.figures --only mnist`).
"""

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from labml import logger
from labml.configs import BaseConfigs
from labml.logger import Text

from labml_nn_bn import data
from labml_nn_bn.batch_norm import BatchNorm, Module
from labml_nn_bn.experiments import cli, trainer
# Kept importable from here, where they used to live
from labml_nn_bn.experiments.trainer import (  # noqa: F401
    evaluate, make_optimizer, pick_device, train_epoch)

PROG = 'python -m labml_nn_bn.experiments.mnist'


# ## The model
#
# Two convolution blocks and two fully connected layers. Each convolution and the hidden
# fully connected layer is followed by batch normalization, then the non-linearity. The layers
# before a batch norm have no bias: the batch norm subtracts the mean, which would cancel any
# bias, and its $\beta$ plays the same role. Without batch normalization, the biases are back.
BN_IMPLS = ('ours', 'fast', 'torch')


class Model(Module):
    """
    * `batch_norm`: whether to normalise after each hidden layer
    * `bn_impl`: `'ours'` for `labml_nn_bn.BatchNorm`, `'fast'` for `labml_nn_bn.FastBatchNorm`
      (the fused kernels, on a GPU with Triton), `'torch'` for `torch.nn.BatchNorm*d` (same
      network, for comparing speed)
    """

    def __init__(self, batch_norm: bool = True, bn_impl: str = 'ours'):
        super().__init__()
        if bn_impl not in BN_IMPLS:
            raise ValueError(f"bn_impl must be one of {', '.join(map(repr, BN_IMPLS))}, "
                             f"got {bn_impl!r}")
        bias = not batch_norm

        def norm(channels, torch_cls):
            if not batch_norm:
                return nn.Identity()
            if bn_impl == 'fast':
                # Imported here: Triton is imported only when the fused kernels are asked for
                from labml_nn_bn.fast_batch_norm import FastBatchNorm
                return FastBatchNorm(channels)
            return BatchNorm(channels) if bn_impl == 'ours' else torch_cls(channels)

        # $[B, 1, 28, 28] \to [B, 20, 24, 24] \to [B, 20, 12, 12]$
        self.conv1 = nn.Conv2d(1, 20, 5, bias=bias)
        self.bn1 = norm(20, nn.BatchNorm2d)
        # $[B, 20, 12, 12] \to [B, 50, 8, 8] \to [B, 50, 4, 4]$
        self.conv2 = nn.Conv2d(20, 50, 5, bias=bias)
        self.bn2 = norm(50, nn.BatchNorm2d)
        # $[B, 800] \to [B, 500]$
        self.fc1 = nn.Linear(4 * 4 * 50, 500, bias=bias)
        self.bn3 = norm(500, nn.BatchNorm1d)
        # $[B, 500] \to [B, 10]$, the logits
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: torch.Tensor):
        # `x` is $[B, 1, 28, 28]$
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        # $[B, 50, 4, 4] \to [B, 800]$
        x = x.flatten(1)
        x = F.relu(self.bn3(self.fc1(x)))
        return self.fc2(x)


# ## Configurations
#
# One object holds every setting of a run; labml records it with the run.
class Configs(BaseConfigs):
    epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 1e-3
    # `'adam'` or `'sgd'` (with momentum 0.9)
    optimizer: str = 'adam'
    # `'auto'` picks CUDA when it is available
    device: str = 'auto'
    batch_norm: bool = True
    bn_impl: str = 'ours'
    # `'auto'`, `'mnist'`, `'mnist-5k'` or `'idx'` (see `labml_nn_bn.data`)
    dataset: str = 'auto'
    data_dir: Optional[str] = None
    download: bool = True
    seed: int = 0
    # Use only `train_limit` training images (0 for all), for quick checks
    train_limit: int = 0
    # `'off'`, `'compile'` or `'cuda-graph'`: see the trainer's fast step
    fast_step: str = 'off'


@dataclass
class Result:
    dataset: str
    device: str
    history: List[Dict[str, float]] = field(default_factory=list)
    seconds: float = 0.
    # What the train step did (plain, compiled, CUDA graph, or a fallback)
    step: str = ''

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]['accuracy.test']


@dataclass
class Tensors:
    """The data of a run, on its device, with the training set already limited."""
    dataset: str
    how: str
    device: torch.device
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


# ## Training and evaluation
#
# The [trainer](trainer.md) does the work: `train()` mode with batch statistics while training,
# `eval()` mode with the running averages for the test set, and a stop at the first non-finite
# loss. The seed fixes the initial weights and the order of the batches.
def train(conf: Configs, tensors: Optional[Tensors] = None, *,
          on_step: Optional[Callable[[trainer.Step], None]] = None) -> Result:
    """Trains and evaluates one model; returns the per-epoch history. Checks `conf` and loads
    the data first unless `tensors` (from `load_data`) is given."""
    if tensors is None:
        check(conf)
        tensors = load_data(conf)
    device = tensors.device
    generator = trainer.seed_everything(conf.seed)
    model = Model(conf.batch_norm, conf.bn_impl).to(device)
    optimizer = make_optimizer(conf.optimizer, model.parameters(), conf.learning_rate)
    step_fn, step_text = trainer.make_fast_step(model, optimizer, conf.fast_step, device)
    if conf.fast_step != 'off':
        logger.log([('Step: ', Text.key), (step_text, Text.value)])
    if conf.batch_norm and conf.bn_impl == 'fast':
        logger.log([('Batch norm: ', Text.key), (fast_batch_norm_text(device), Text.value)])

    result = Result(dataset=tensors.dataset, device=str(device), step=step_text)
    start = time.perf_counter()
    result.history = trainer.train_epochs(
        model, optimizer, (tensors.train_x, tensors.train_y), (tensors.test_x, tensors.test_y),
        conf.epochs, conf.batch_size, generator, step_fn=step_fn, on_step=on_step)
    result.seconds = time.perf_counter() - start
    return result


def fast_batch_norm_text(device: torch.device) -> str:
    """One line saying whether `FastBatchNorm` runs its fused kernels on `device`, or, as
    everywhere they cannot run, is `BatchNorm`."""
    from labml_nn_bn.fast_batch_norm import kernels_apply
    if kernels_apply(torch.zeros(2, 2, device=device)):
        return f'FastBatchNorm, the fused Triton kernels on {device.type}'
    why = 'Triton and a CUDA device (or TRITON_INTERPRET=1 on a CPU)'
    return f'FastBatchNorm runs its fused kernels only with {why}, got {device.type}; using BatchNorm'


def load_data(conf: Configs) -> Tensors:
    """Loads the data set onto the device and checks the batch size against it."""
    cli.use_plain_output_when_not_a_terminal()
    device = pick_device(conf.device)
    dataset, how = data.load_dataset(conf.dataset, conf.data_dir, download_ok=conf.download,
                                     seed=conf.seed)
    logger.log([('Data: ', Text.key), (str(dataset), Text.value)])
    logger.log([('       ', Text.key), (how, Text.meta)])
    logger.log([('Device: ', Text.key), (str(device), Text.value)])
    on_device = data.DeviceData(dataset, device)
    train_x, train_y = cli.limit_training_data(on_device.train_x, on_device.train_y,
                                               conf.train_limit, conf.seed)
    limited = 0 < conf.train_limit < len(on_device.train_y)
    cli.check_batch_size(conf.batch_size, len(train_y),
                         ' or a larger --train-limit' if limited else '')
    return Tensors(str(dataset), how, device, train_x, train_y, on_device.test_x, on_device.test_y)


def run(conf: Configs, *, name: Optional[str] = None, logs_dir: Optional[str] = None,
        writers=frozenset({'screen', 'file'})) -> Result:
    """
    Runs `train` as a labml experiment. The settings and the data are checked first, so a run
    that cannot start leaves no run folder behind.
    """
    check(conf)
    tensors = load_data(conf)
    name = name or ('mnist_batch_norm' if conf.batch_norm else 'mnist_no_batch_norm')
    with cli.labml_run(name, conf, logs_dir=logs_dir, writers=writers):
        result = train(conf, tensors)
    logger.log([('Final test accuracy: ', Text.key), (f'{result.test_accuracy:.2%}', Text.success),
                (f' after {conf.epochs} epochs in {result.seconds:.1f}s on {result.device} '
                 f'({"with" if conf.batch_norm else "without"} batch normalization)', Text.meta)])
    return result


# ## The figure
#
# `make_figures` trains the network three times with the defaults above (with our batch norm,
# with `torch.nn`'s, without), and every few steps records the test loss and accuracy (in
# `eval()` mode, through the hook of the trainer). The recorded times leave out those extra
# evaluations.
VARIANTS = {'bn': dict(batch_norm=True, bn_impl='ours'),
            'torch_bn': dict(batch_norm=True, bn_impl='torch'),
            'no_bn': dict(batch_norm=False, bn_impl='ours')}


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    from labml_nn_bn import figure_tools

    base = Configs()
    base.dataset = 'mnist-5k' if smoke else 'auto'
    base.download = not smoke
    if smoke:
        base.epochs = 1
    base.train_limit = 128 if smoke else 0
    check(base)
    tensors = load_data(base)
    every = 1 if smoke else 4
    values, curves = {}, {}
    for key, variant in VARIANTS.items():
        conf = Configs()
        for k in _CONFIG_KEYS:
            setattr(conf, k, getattr(base, k))
        for k, v in variant.items():
            setattr(conf, k, v)
        curve = {'step': [], 'loss_train': [], 'loss_test': [], 'accuracy_test': []}
        window, spent = [], [0.]

        def record(s: trainer.Step):
            window.append(s.loss.item())
            if s.step % every == 0:
                start = time.perf_counter()
                loss, accuracy = evaluate(s.model, tensors.test_x, tensors.test_y)
                curve['step'].append(s.step)
                curve['loss_train'].append(sum(window) / len(window))
                curve['loss_test'].append(loss)
                curve['accuracy_test'].append(accuracy)
                window.clear()
                spent[0] += time.perf_counter() - start

        result = train(conf, tensors, on_step=record)
        curves[key] = curve
        values[key] = {'accuracy_test': result.test_accuracy,
                       'loss_test': result.history[-1]['loss.test'],
                       'accuracy_train': result.history[-1]['accuracy.train'],
                       'seconds': result.seconds - spent[0],
                       'steps': curve['step'][-1] if curve['step'] else 0}
    steps = values['bn']['steps']
    values['settings'] = {'epochs': base.epochs, 'batch_size': base.batch_size,
                          'optimizer': base.optimizer, 'learning_rate': base.learning_rate,
                          'seed': base.seed, 'steps': steps, 'dataset': tensors.dataset,
                          'train_images': len(tensors.train_y), 'test_images': len(tensors.test_y),
                          'torch_threads': torch.get_num_threads(),
                          'device': figure_tools.describe_device(tensors.device)}
    values['curves'] = curves
    stamp = figure_tools.stamp(tensors.dataset.split(' (')[0] + f', {len(tensors.train_y):,} train / '
                               f'{len(tensors.test_y):,} test', f'{steps} steps ({base.epochs} epochs, '
                               f'batch {base.batch_size}, Adam {base.learning_rate:g}, seed {base.seed})',
                               figure_tools.describe_device(tensors.device))
    return figure_tools.save_figure(out_dir, 'mnist', draw, values, stamp)


# `torch.nn`'s batch norm gives nearly the same numbers as ours, so its curves would hide under
# ours: they are drawn last, thin and dashed, over ours, and the legend says so.
STYLES = {'bn': dict(color='C0', linewidth=2.2),
          'no_bn': dict(color='C1', linewidth=1.5),
          'torch_bn': dict(color='#222222', linestyle=(0, (3, 2)), linewidth=0.9)}
LABELS = {'bn': 'with our BatchNorm',
          'torch_bn': 'with torch.nn.BatchNorm (dashed: it lies on ours)',
          'no_bn': 'without batch norm'}


def draw(values: Dict, plt):
    """The figure from the saved values, drawn with `plt` (pyplot)."""
    curves = values['curves']
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key in ('bn', 'no_bn', 'torch_bn'):
        curve = curves[key]
        label = LABELS[key]
        ax_loss.plot(curve['step'], curve['loss_train'], label=label, **STYLES[key])
        ax_acc.plot(curve['step'], [100 * a for a in curve['accuracy_test']],
                    label=f'{label}: {values[key]["accuracy_test"]:.2%}', **STYLES[key])
    ax_loss.set(xlabel='training step', ylabel='training loss (mean since last point)',
                title='Training loss', yscale='log')
    ax_acc.set(xlabel='training step', ylabel='test accuracy (%)', title='Test accuracy (eval mode)')
    low = min(min(c['accuracy_test']) for c in curves.values())
    ax_acc.set_ylim(max(0., 100 * low - 2), 100)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5)
    fig.tight_layout()
    return fig


_CONFIG_KEYS = ('epochs', 'batch_size', 'learning_rate', 'optimizer', 'device', 'batch_norm',
                'bn_impl', 'dataset', 'data_dir', 'download', 'seed', 'train_limit', 'fast_step')


# ## Argument checks
def check(conf: Configs):
    """Refuses settings that cannot make a meaningful run (`cli.UsageError`)."""
    cli.check_values(epochs=conf.epochs, batch_size=conf.batch_size,
                     learning_rate=conf.learning_rate, train_limit=conf.train_limit,
                     device=conf.device, fast_step=conf.fast_step)
    if conf.optimizer not in trainer.OPTIMIZERS:
        raise cli.UsageError(f"argument --optimizer: expected 'adam' or 'sgd', "
                             f"got {conf.optimizer!r}")
    if conf.bn_impl not in BN_IMPLS:
        raise cli.UsageError(f"argument --bn-impl: expected one of "
                             f"{', '.join(map(repr, BN_IMPLS))}, got {conf.bn_impl!r}")
    if not conf.batch_norm and conf.bn_impl != 'ours':
        _refuse_bn_impl_without_bn(conf.bn_impl)


def _refuse_bn_impl_without_bn(bn_impl: str):
    # Without batch norm the implementation is never used: the run would not compare what the
    # user asked for
    raise cli.UsageError(f'argument --bn-impl: there is no batch norm to implement with '
                         f'--no-bn, got --bn-impl {bn_impl}; leave out one of the two')


# ## Command line
def parse_args(argv=None, prog: str = PROG) -> Dict:
    parser = cli.make_parser(prog, 'Train the MNIST CNN with (or without) batch normalization.')
    defaults = Configs()
    cli.add_training_arguments(parser, epochs=defaults.epochs, batch_size=defaults.batch_size,
                               lr=defaults.learning_rate, optimizer=defaults.optimizer,
                               seed=defaults.seed, fast_step=True)
    cli.add_device_argument(parser, defaults.device)
    parser.add_argument('--bn', dest='batch_norm', action=argparse.BooleanOptionalAction,
                        default=defaults.batch_norm, help='use batch normalization (--no-bn: without)')
    parser.add_argument('--bn-impl', choices=list(BN_IMPLS), default=defaults.bn_impl,
                        help="whose batch norm: this package's (ours: BatchNorm; fast: "
                             "FastBatchNorm, the fused kernels on a GPU) or torch.nn's")
    cli.add_data_arguments(parser, defaults.dataset)
    cli.add_logs_argument(parser)
    args = parser.parse_args(argv)
    if not args.batch_norm and 'bn_impl' in cli.given_options(parser, argv):
        # `--no-bn --bn-impl ours` too, though `ours` is the default
        try:
            _refuse_bn_impl_without_bn(args.bn_impl)
        except cli.UsageError as e:
            parser.error(str(e))
    cli.check_arguments(parser, args)
    return vars(args)


def main(argv=None, prog: str = PROG) -> Result:
    """The command line: one line on stderr and a non-zero exit for the errors a user can meet.
    `prog` is how the user started it (this module also answers to `labml_nn_bn.mnist`)."""

    def start():
        args = parse_args(argv, prog)
        logs_dir = args.pop('logs_dir')
        conf = Configs()
        for key, value in args.items():
            setattr(conf, key, value)
        return run(conf, logs_dir=logs_dir)

    return cli.run_main(start, prog)


if __name__ == '__main__':
    main()


# ## Exercises
#
# **1. What `bias=False` saves** (derivation). The convolutions and the hidden fully
# connected layer before a batch norm are built without a bias $b$. How many parameters
# does that remove, how many do the three batch norms add, and how many more parameters
# does the network with batch normalization have than the one without? What else do the
# batch norms keep?
#
# ??? success "Solution"
#     A bias has one number per output channel: $20 + 50 + 500 = 570$ numbers in
#     `conv1`, `conv2` and `fc1`. Each batch norm learns a $\gamma$ and a $\beta$ per
#     channel, $2 \times 570 = 1{,}140$ numbers. So the network with batch normalization
#     has 570 parameters more: 431,650 against 431,080 (0.13 % more). The bias would
#     have been wasted anyway: the mean subtraction cancels it,
#     $\mathrm{BN}(Wu + b) = \mathrm{BN}(Wu)$ (Section 3.2 of the paper), and its
#     gradient, $\sum_i \partial\ell/\partial x_i$, is exactly zero (exercise 1 of the
#     [BatchNorm page](../batch_norm.md)). Each batch norm also keeps buffers, which are
#     saved with the model but not trained: `running_mean` and `running_var` per channel
#     (another 1,140 numbers) and one `num_batches_tracked` counter.
#
# **2. What `eval()` changes** (code). The trainer measures the test accuracy after
# `model.eval()` and trains after `model.train()`. Show, on an untrained `Model` and
# random images, that in training mode the logits of an image depend on the other images
# of its batch and that a forward pass alone changes the model, and that in evaluation
# mode neither happens.
#
# ??? success "Solution"
#     `eval()` sets `training = False` in every submodule. A batch norm then normalises
#     with its running averages $\mathbb{E}[x]$ and $\mathrm{Var}[x]$ (the paper's
#     Algorithm 2), the same for every batch, and stops updating them. In training mode
#     it normalises with the batch's $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$, and
#     every forward pass, even under `torch.no_grad()` and without an optimizer step,
#     moves the running averages: evaluating in training mode changes the model.
#
#     ```python
#     import torch
#     from labml_nn_bn.experiments.mnist import Model
#
#     torch.manual_seed(0)
#     model = Model()
#     images = torch.randn(8, 1, 28, 28)
#     with torch.no_grad():
#         model.train()
#         before = model.bn1.running_mean.clone()
#         # The first two images, alone and inside the batch of eight
#         assert not torch.allclose(model(images[:2]), model(images)[:2])
#         assert not torch.equal(model.bn1.running_mean, before)
#         model.eval()
#         frozen = model.bn1.running_mean.clone()
#         assert torch.allclose(model(images[:2]), model(images)[:2], atol=1e-5)
#         assert torch.equal(model.bn1.running_mean, frozen)
#     ```
#
# **3. A batch of 2** (experiment). Run
# `python -m labml_nn_bn.experiments.mnist --batch-size 2 --epochs 1`. Before you do:
# over how many values does each of the three batch norms take its statistics, and what
# does the fully connected one, `bn3`, output in training mode? How many steps does the
# epoch take on the offline subset?
#
# ??? success "Solution"
#     A batch norm after a convolution takes its statistics over every position of the
#     batch: $m = 2 \times 24 \times 24 = 1{,}152$ values per channel for `bn1` and
#     $m = 2 \times 8 \times 8 = 128$ for `bn2`, enough for a stable estimate. `bn3` has
#     only $m = 2$: the two values of a feature lie at equal distances on either side of
#     $\mu_\mathcal{B}$, so
#     $\hat{x} = \pm\sqrt{\sigma^2_\mathcal{B} / (\sigma^2_\mathcal{B} + \epsilon)}$,
#     which is $\pm 1$ unless the two values nearly agree. In training, all `bn3` tells
#     the last layer about an image is, feature by feature, whether it is above or below
#     the other image of its pair. The test accuracy is measured in `eval()` mode, with
#     running averages over very noisy pairs. On the
#     <!-- measured mnist:settings.train_images ,d -->4,000<!-- /measured --> training
#     images of the offline subset the epoch takes 2,000 steps. We did not measure a
#     batch of 2 for this page; the nearest measurement is [Algorithm 2's
#     run](population_statistics.md) at a batch of 4, where the network classifies
#     <!-- measured population_statistics:batch_4.batch_statistics .1% -->93.7%<!-- /measured -->
#     of the test images with each batch's own statistics and
#     <!-- measured population_statistics:batch_4.recalibrated .1% -->97.7%<!-- /measured -->
#     with population statistics: expect the gap to grow at a batch of 2.
#
# **4. Our batch norm or `torch.nn`'s** (experiment). Run the page's settings with
# `--bn-impl torch`. The two modules compute the same function, yet the figure's runs
# end at <!-- measured mnist:bn.accuracy_test .1% -->97.7%<!-- /measured --> and
# <!-- measured mnist:torch_bn.accuracy_test .1% -->97.6%<!-- /measured -->. Why are
# they not equal, and how large is the difference?
#
# ??? success "Solution"
#     The two modules round differently: ours computes the statistics around a shift and
#     has its own backward pass, `torch.nn` sums in another order. Their outputs agree
#     to within `float32` rounding, not to the last bit, and
#     <!-- measured mnist:settings.steps -->124<!-- /measured --> steps of Adam carry
#     such differences into slightly different weights. On
#     <!-- measured mnist:settings.test_images ,d -->1,000<!-- /measured --> test
#     images, 0.1 percentage points is one image: the runs differ by one test image,
#     which is noise, not a difference between the implementations.
#
# **5. Fold the batch norms away** (code). After training, a batch norm in evaluation
# mode is one scale and one offset per channel, so it can be folded into the layer
# before it. Fold a `Model` with `labml_nn_bn.fold_batch_norm` and check that its logits
# do not change. How many parameters does the folded network have?
#
# ??? success "Solution"
#     With the statistics fixed, $y = \tilde\gamma x + \tilde\beta$ with
#     $\tilde\gamma = \gamma/\sqrt{\mathrm{Var}[x] + \epsilon}$ and
#     $\tilde\beta = \beta - \tilde\gamma\,\mathbb{E}[x]$; folding multiplies the
#     layer's weights $W$ of each channel by $\tilde\gamma$ and gives it back a bias
#     $\tilde\beta$. The folded network has exactly the parameters of the network
#     without batch normalization, 431,080.
#
#     ```python
#     import torch
#     from labml_nn_bn import fold_batch_norm
#     from labml_nn_bn.experiments.mnist import Model
#
#     torch.manual_seed(0)
#     model = Model()
#     with torch.no_grad():
#         for _ in range(3):  # give the running averages something to hold
#             model.train()(torch.randn(16, 1, 28, 28) * 2 + 1)
#         model.eval()
#         folded = fold_batch_norm(model)
#         images = torch.randn(8, 1, 28, 28)
#         assert torch.allclose(folded(images), model(images), atol=1e-5)
#     assert sum(p.numel() for p in folded.parameters()) == 431_080
#     ```
