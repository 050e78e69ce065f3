r"""
---
title: Algorithm 2, population statistics
summary: >
  Test accuracy of the MNIST CNN with the batch norms' moving averages, with Algorithm 2's
  population statistics (recalibrate), and with batch statistics, as the batch size shrinks.
---

# Algorithm 2: population statistics

*Symbols as in [the notation table](../../notation.md).*

At inference a batch norm normalises with fixed *population* statistics. The paper's
Algorithm 2 computes them after training, averaging over training mini-batches of size $m$,
$$\mathbb{E}[x] \leftarrow \mathbb{E}_\mathcal{B}[\mu_\mathcal{B}] \qquad
  \mathrm{Var}[x] \leftarrow \frac{m}{m - 1}\, \mathbb{E}_\mathcal{B}[\sigma^2_\mathcal{B}]$$
and the paper notes that moving averages updated during training can be used instead, which
lets the accuracy be tracked while training; PyTorch, Keras and our `BatchNorm` do that. [`recalibrate`](../inference.md) computes Algorithm 2's average. Two questions:

1. Does the cheap moving average cost accuracy, compared with Algorithm 2's population
   statistics?
2. The network is *trained* with batch statistics and *evaluated* with population statistics.
   How large is that train/eval gap, and how does it grow as the batch size shrinks? With a
   batch of 4, a fully connected batch norm estimates each mean and variance from 4 numbers.

For each batch size we train the [MNIST CNN](mnist.md) with our batch norm from the same
seed for the same number of epochs, then measure its test accuracy three ways:

* **batch statistics**: in training mode, test images in batches of the training batch size,
  each batch normalised with its own statistics (what the network saw while training; whole
  batches only, so up to one batch less than the whole test set);
* **moving averages**: in evaluation mode with the running statistics training left behind;
* **recalibrated**: in evaluation mode after `recalibrate` over one pass of the training set
  in batches of the training size.

```bash
python -m labml_nn_bn.experiments.population_statistics
python -m labml_nn_bn.experiments.population_statistics --bn-impl torch   # torch.nn.BatchNorm*d
python -m labml_nn_bn.experiments.population_statistics --smoke
```

![Test accuracy with batch statistics, moving averages and recalibrated population statistics, against the batch size](../../figures/population_statistics.svg)

### What the figure shows

*Our reading of our run* (data set, epochs and device are stamped under the figure; the
values are in `docs/figures/population_statistics.json`). Every batch size trains for the same
number of epochs, so the number of steps differs:
<!-- measured population_statistics:batch_4.steps ,d -->3,000<!-- /measured --> with batches of 4,
<!-- measured population_statistics:batch_256.steps ,d -->45<!-- /measured --> with batches of 256.
Panel (b) shows the batch-statistics accuracy minus the eval-mode accuracy: a value below 0
means that the network classifies better with the fixed statistics of inference than with
each batch's own. The test set has 1,000 images, so one
image is 0.1%: read differences of a few tenths of a percent as noise.

* **The train/eval gap grows as the batch shrinks.** With batches of 4, the network classifies
  <!-- measured population_statistics:batch_4.batch_statistics .1% -->93.7%<!-- /measured -->
  of the test images when each batch of 4 is normalised with its own statistics (as in
  training), and
  <!-- measured population_statistics:batch_4.recalibrated .1% -->97.7%<!-- /measured -->
  with population statistics. At a batch of 64 the three measurements agree to within
  0.125 percentage points
  (<!-- measured population_statistics:batch_64.batch_statistics .1% -->98.1%<!-- /measured -->,
  <!-- measured population_statistics:batch_64.moving_average .1% -->98.1%<!-- /measured -->,
  <!-- measured population_statistics:batch_64.recalibrated .1% -->98.0%<!-- /measured -->;
  batch statistics are measured on the 960 images of whole batches, the other two on all
  1,000).
  At a batch of 4 the fully connected batch norm estimates each mean and variance from 4
  numbers: the training-mode output of an image depends a lot on the 3 others, and the fixed
  population statistics are the better normaliser. This is the paper's reason for Algorithm 2
  (a deterministic output), and it shows that for small batches it also classifies better.
* **Moving averages or Algorithm 2's statistics.** Recalibrating changes little here: with batches of
  4 it gains
  <!-- measured population_statistics:batch_4.recalibrated .1% -->97.7%<!-- /measured --> vs
  <!-- measured population_statistics:batch_4.moving_average .1% -->97.5%<!-- /measured -->,
  under one percentage point, although the two sets of statistics differ: the largest relative difference
  between a moving-average variance and the recalibrated one is
  <!-- measured population_statistics:batch_4.variance_difference .0% -->61%<!-- /measured -->
  at a batch of 4 and
  <!-- measured population_statistics:batch_64.variance_difference .0% -->16%<!-- /measured -->
  at 64. The moving averages mix batches from the last few dozen steps of a network
  that is still changing; Algorithm 2's average is taken over the final network, which matters
  more when each batch is noisier. For a short training run (few steps at a large batch) the
  moving averages can still carry their initial values; the tests check that case.

The paper gives Algorithm 2 but no experiment on it; this one is ours. Later work studied the
small-batch gap in depth: Batch Renormalization (Ioffe, 2017) corrects the batch statistics
towards the moving averages during training, and "Rethinking 'Batch' in BatchNorm"
(Wu & Johnson, 2021) recomputes the population statistics after training, as `recalibrate`
does, and finds the moving averages can be inaccurate.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from labml_nn_bn import data
from labml_nn_bn.experiments import cli, trainer
from labml_nn_bn.experiments.mnist import Model
from labml_nn_bn.experiments.trainer import evaluate, make_optimizer, pick_device, train_epoch
from labml_nn_bn.inference import BATCH_NORMS, recalibrate


# ## Accuracy with batch statistics
#
# Training mode on test batches of the training size: every batch norm normalises with the
# statistics of the batch at hand, as it did in training. The running statistics this
# updates are put back afterwards, so the measurement leaves the model as it found it.
@torch.no_grad()
def accuracy_with_batch_statistics(model, x, y, batch_size: int) -> float:
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    n = 0
    with trainer.statistics_kept(model):
        model.train()
        # Whole batches only: a last batch of one image has no batch statistics
        for xb, yb in data.batches(x, y, batch_size, drop_last=True):
            correct += (model(xb).argmax(dim=1) == yb).sum()
            n += len(yb)
    model.eval()
    return correct.item() / n


# ## One batch size
#
# Trains a fresh CNN with the [shared trainer](trainer.md) and measures the three
# accuracies. Recalibration runs over the training set once, in training-size batches in a
# fixed order.
def measure(batch_size: int, tensors: data.DeviceData, *, epochs: int, learning_rate: float,
            bn_impl: str, seed: int) -> Dict[str, float]:
    device = tensors.train_x.device
    generator = trainer.seed_everything(seed)
    model = Model(batch_norm=True, bn_impl=bn_impl).to(device)
    optimizer = make_optimizer('adam', model.parameters(), learning_rate)
    start = time.perf_counter()
    for _ in range(epochs):
        train_epoch(model, optimizer, tensors.train_x, tensors.train_y, batch_size, generator)
    seconds = time.perf_counter() - start

    x, y = tensors.test_x, tensors.test_y
    result = {'batch_size': batch_size, 'train_seconds': seconds,
              'steps': epochs * (len(tensors.train_y) // batch_size)}
    result['batch_statistics'] = accuracy_with_batch_statistics(model, x, y, batch_size)
    result['moving_average'] = evaluate(model, x, y)[1]
    moving = [(b.running_mean.clone(), b.running_var.clone())
              for b in model.modules() if isinstance(b, BATCH_NORMS)]
    recalibrate(model, data.batches(tensors.train_x, tensors.train_y, batch_size,
                                    drop_last=True))
    result['recalibrated'] = evaluate(model, x, y)[1]
    # How far the moving averages were from the population statistics: the largest relative
    # difference of a variance, over every channel of every batch norm
    result['variance_difference'] = max(
        ((v - b.running_var).abs() / b.running_var).max().item()
        for (_, v), b in zip(moving, [b for b in model.modules() if isinstance(b, BATCH_NORMS)]))
    # The train/eval gaps: how much accuracy changes between training and inference mode
    result['gap_moving_average'] = result['batch_statistics'] - result['moving_average']
    result['gap_recalibrated'] = result['batch_statistics'] - result['recalibrated']
    return result


def load_data(batch_sizes: Sequence[int], *, dataset: str = 'auto', data_dir: Optional[str] = None,
              device: str = 'auto', seed: int = 0, train_limit: int = 0, test_limit: int = 0,
              download: bool = True, log=print, **_ignored) -> Tuple[data.DeviceData, str]:
    """The data on the device, limited, with every batch size checked against it."""
    device = pick_device(device)
    ds, how = data.load_dataset(dataset, data_dir, download_ok=download, seed=seed)
    log(f'Data: {ds} ({how})')
    tensors = data.DeviceData(ds, device)
    if train_limit > len(tensors.train_y):
        raise cli.UsageError(f'argument --train-limit: expected at most the '
                             f'{len(tensors.train_y):,} training images of this data set '
                             f'(or 0 for all), got {train_limit:,}')
    # Quick runs use the first images of each part (both are shuffled, see `labml_nn_bn.data`)
    if train_limit:
        tensors.train_x, tensors.train_y = (tensors.train_x[:train_limit],
                                            tensors.train_y[:train_limit])
    if test_limit:
        tensors.test_x, tensors.test_y = tensors.test_x[:test_limit], tensors.test_y[:test_limit]
    cli.check_batch_size(max(batch_sizes), len(tensors.train_y),
                         ' or a larger --train-limit' if train_limit else '',
                         option='--batch-sizes')
    return tensors, str(ds)


def run(batch_sizes: Sequence[int] = (4, 16, 64, 256), *, epochs: int = 3,
        learning_rate: float = 1e-3, bn_impl: str = 'ours', dataset: str = 'auto',
        data_dir: Optional[str] = None, device: str = 'auto', seed: int = 0,
        train_limit: int = 0, test_limit: int = 0, download: bool = True, log=print,
        loaded: Optional[Tuple[data.DeviceData, str]] = None) -> Dict:
    """Measures each batch size; `loaded` is what `load_data` returned for the same settings
    (the command line loads and checks the data before it creates the labml run)."""
    tensors, ds = loaded or load_data(batch_sizes, dataset=dataset, data_dir=data_dir,
                                      device=device, seed=seed, train_limit=train_limit,
                                      test_limit=test_limit, download=download, log=log)
    device = tensors.train_x.device
    rows = []
    with trainer.one_cpu_thread(device):
        for b in batch_sizes:
            rows.append(measure(b, tensors, epochs=epochs, learning_rate=learning_rate,
                                bn_impl=bn_impl, seed=seed))
            r = rows[-1]
            log(f'batch {b:4d}: batch statistics {r["batch_statistics"]:.4f}, moving averages '
                f'{r["moving_average"]:.4f}, recalibrated {r["recalibrated"]:.4f} '
                f'({r["steps"]} steps, {r["train_seconds"]:.1f} s)')
    return {'rows': rows, 'dataset': ds, 'device': device,
            'settings': {'epochs': epochs, 'learning_rate': learning_rate, 'optimizer': 'Adam',
                         'bn_impl': bn_impl, 'seed': seed, 'batch_sizes': list(batch_sizes),
                         'train_images': len(tensors.train_y),
                         'test_images': len(tensors.test_y)}}


# ## The figure
def values_of(result: Dict) -> Dict:
    values = {'settings': result['settings'], 'dataset': result['dataset']}
    for r in result['rows']:
        values[f'batch_{r["batch_size"]}'] = r
    return values


LINES = (('batch_statistics', 'batch statistics (training mode)', '#2ca02c', 'o', ':'),
         ('moving_average', 'moving averages (eval)', '#d62728', 's', '--'),
         ('recalibrated', 'recalibrated, Algorithm 2 (eval)', '#1f77b4', '^', '-'))


def draw(values: Dict, plt):
    """The figure, drawn with `plt` (pyplot): for the site, or inline in a notebook."""
    sizes = values['settings']['batch_sizes']
    rows = [values[f'batch_{b}'] for b in sizes]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    fig.subplots_adjust(wspace=0.3, bottom=0.22)
    for key, label, colour, marker, line in LINES:
        axes[0].plot(sizes, [r[key] for r in rows], line, marker=marker, color=colour, label=label)
    axes[0].set_title('(a) test accuracy', fontsize=10)
    axes[0].legend(fontsize=7, loc='lower right')
    for key, label, colour, marker, line in LINES[1:]:
        axes[1].plot(sizes, [r[f'gap_{key}'] for r in rows], line, marker=marker, color=colour,
                     label=label.replace(' (eval)', ''))
    axes[1].axhline(0, color='#999999', lw=0.8)
    axes[1].set_title('(b) train/eval gap: batch-statistics minus eval accuracy', fontsize=10)
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.set_xscale('log', base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_xlabel('batch size (training, recalibration and batch-statistics test)')
        ax.tick_params(labelsize=8)
        ax.xaxis.label.set_size(8)
        ax.grid(alpha=0.25)
    s = values['settings']
    fig.suptitle(f'MNIST CNN with {"our" if s["bn_impl"] == "ours" else "torch"} BatchNorm, '
                 f'Adam lr {s["learning_rate"]}, {s["epochs"]} epochs per batch size',
                 fontsize=9, y=1.0)
    return fig


def plot(values: Dict, stamp_text: str, path: Path):
    """Saves the figure as a stamped, self-contained SVG."""
    from labml_nn_bn import figure_tools
    figure_tools.save_svg(draw(values, figure_tools.pyplot()), path, stamp_text)


SMOKE = dict(batch_sizes=(4, 32), epochs=1, dataset='mnist-5k', download=False, train_limit=256,
             test_limit=256)


def make_figures(out_dir: Path, smoke: bool) -> List[Path]:
    """Writes `population_statistics.svg` and `.json`."""
    from labml_nn_bn import figure_tools
    result = run(**SMOKE) if smoke else run()
    values = values_of(result)
    s = result['settings']
    stamp_text = figure_tools.stamp(result['dataset'], f'{s["epochs"]} epochs per batch size',
                                    figure_tools.describe_device(result['device']))
    return figure_tools.save_figure(out_dir, 'population_statistics', draw, values,
                                    stamp_text)


# ## Command line
PROG = 'python -m labml_nn_bn.experiments.population_statistics'


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.make_parser(PROG, 'Moving averages vs recalibrated population statistics '
                                       '(Algorithm 2), and the train/eval gap, against the '
                                       'batch size.')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[4, 16, 64, 256],
                        help='the training batch sizes to compare')
    parser.add_argument('--epochs', type=int, default=3, help='passes over the training data')
    parser.add_argument('--lr', '--learning-rate', dest='learning_rate', type=float, default=1e-3,
                        help='Adam learning rate')
    parser.add_argument('--bn-impl', choices=['ours', 'torch'], default='ours',
                        help="whose batch norm: this package's or torch.nn's")
    parser.add_argument('--seed', type=int, default=0,
                        help='fixes the initial weights and the order of the batches')
    cli.add_device_argument(parser)
    cli.add_data_arguments(parser)
    cli.add_logs_argument(parser)
    cli.add_figure_and_smoke_arguments(
        parser, smoke_help='a run of seconds, for tests: batch sizes 4 and 32, one '
                           'epoch, 256 images of the offline subset; options given '
                           'with it override these')
    return cli.parse_experiment_arguments(parser, argv, check_batch_sizes)


def check_batch_sizes(args: argparse.Namespace):
    for b in args.batch_sizes:
        if b < 2:
            raise cli.UsageError(f'argument --batch-sizes: expected every size at '
                                 f'least 2, got {b}')
    repeated = sorted({b for b in args.batch_sizes if args.batch_sizes.count(b) > 1})
    if repeated:
        raise cli.UsageError(f'argument --batch-sizes: expected each size once, got '
                             f'{" ".join(map(str, repeated))} more than once')


def main(argv=None):
    def start():
        args = parse_args(argv)
        kwargs = dict(batch_sizes=tuple(args.batch_sizes), epochs=args.epochs,
                      learning_rate=args.learning_rate, dataset=args.dataset,
                      data_dir=args.data_dir, download=args.download, device=args.device,
                      seed=args.seed, train_limit=args.train_limit)
        if args.smoke:
            # The smoke settings, then every option written on the command line on top
            kwargs.update({k: v for k, v in SMOKE.items() if k not in args.given})
            # The smoke data set, with a --data-dir given on top, is checked again
            cli.check_data_dir(kwargs['dataset'], kwargs['data_dir'], kwargs['download'])
        kwargs['bn_impl'] = args.bn_impl
        from labml import tracker
        loaded = load_data(**kwargs)
        configs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
        with cli.labml_run('population_statistics', configs, logs_dir=args.logs_dir):
            result = run(**kwargs, loaded=loaded)
            for r in result['rows']:
                tracker.save(r['batch_size'], {k: r[k] for k, *_ in LINES})
        if args.figure:
            from labml_nn_bn import figure_tools
            s = result['settings']
            plot(values_of(result), figure_tools.stamp(result['dataset'], f'{s["epochs"]} epochs',
                                                       figure_tools.describe_device(result['device'])),
                 Path(args.figure))
        return result

    return cli.run_main(start, PROG)


if __name__ == '__main__':
    main(sys.argv[1:])


# ## Exercises
#
# **1. How many values per statistic?** (derivation). The [MNIST CNN](mnist.md) has
# three batch norms: after the first convolution (20 channels of $24 \times 24$
# positions), after the second (50 channels of $8 \times 8$) and after the first fully
# connected layer (500 features). With batches of 4, what is $m$ for each, and how large
# is Algorithm 2's correction $\frac{m}{m-1}$?
#
# ??? success "Solution"
#     A convolution's batch norm takes its statistics over the batch and every position
#     (Section 3.2), so $m = 4 \cdot 24 \cdot 24 = 2304$ for the first and
#     $m = 4 \cdot 8 \cdot 8 = 256$ for the second, with corrections $1.0004$ and
#     $1.0039$; the fully connected one has $m = 4$ and $\frac{4}{3} = 1.3333$. Only the
#     last batch norm works with truly small samples: the small-batch trouble on this
#     page is mostly its. (Exercise 3 checks where the gap comes from.)
#
# **2. No value stands out in a batch of 4** (derivation). In training mode, show that
# for any batch of $m$ values (taking $\epsilon \to 0$), every normalised value
# satisfies $|\hat{x}_i| \le \sqrt{m - 1}$. What is the bound for the fully connected
# batch norm at a batch of 4, and for the first convolution's?
#
# ??? success "Solution"
#     Over the batch, $\sum_i \hat{x}_i = 0$ and $\sum_i \hat{x}_i^2 = m$. For one
#     value, $\hat{x}_1 = -\sum_{i \ge 2} \hat{x}_i$, and by the Cauchy-Schwarz
#     inequality $\hat{x}_1^2 \le (m - 1) \sum_{i \ge 2} \hat{x}_i^2 = (m - 1)(m -
#     \hat{x}_1^2)$, so $\hat{x}_1^2 \le m - 1$. It is reached when the other $m - 1$
#     values are equal. At $m = 4$ the bound is $\sqrt{3} = 1.73$: a test image whose
#     feature is five population standard deviations out shows up, in training mode, at
#     most 1.73 out (in the batch's own standard deviations). For the first convolution,
#     $\sqrt{2303} = 48$, no limit in practice. With population statistics (evaluation
#     mode) there is no such bound, which is one way to see why they classify better at
#     small batches.
#
# **3. Which batch norm makes the gap?** (code). Write
# `accuracy_with_one_in_training(model, x, y, batch_size, name)`: the test accuracy with
# only the batch norm called `name` (`'bn1'`, `'bn2'` or `'bn3'`) normalising with batch
# statistics and the others with their population statistics. Try it on the network
# trained with batches of 4.
#
# ??? success "Solution"
#     ```python
#     @torch.no_grad()
#     def accuracy_with_one_in_training(model, x, y, batch_size: int,
#                                       name: str) -> float:
#         correct, n = 0, 0
#         with trainer.statistics_kept(model):
#             model.eval()
#             getattr(model, name).train()
#             for xb, yb in data.batches(x, y, batch_size, drop_last=True):
#                 correct += (model(xb).argmax(dim=1) == yb).sum().item()
#                 n += len(yb)
#         return correct / n
#     ```
#
#     `statistics_kept` puts back the running statistics that the training-mode batch
#     norm updates, and every module's mode. From exercises 1 and 2, expect `bn3`, with
#     its 4 values per statistic, to give most of the gap, and `bn1`, with 2,304, almost
#     none. That is what we saw when we tried it once on the page's settings (seed 0,
#     not part of the figure's values): with only `bn3` in training mode the accuracy
#     fell about as far as with all three, and with only `bn1` or `bn2` it stayed within
#     a few images of the population statistics' accuracy.
#
# **4. Is the gap a seed's accident?** (experiment). Run batches of 4 and 64 from
# another seed (a few minutes on a CPU):
#
# ```bash
# python -m labml_nn_bn.experiments.population_statistics --seed 1 --batch-sizes 4 64 \
#     --dataset mnist-5k
# ```
#
# ??? success "Solution"
#     The printed lines give the three accuracies per batch size. At a batch of 4 the
#     batch-statistics accuracy is again several points below the other two (the page's
#     seed:
#     <!-- measured population_statistics:batch_4.batch_statistics .1% -->93.7%<!-- /measured -->
#     against
#     <!-- measured population_statistics:batch_4.recalibrated .1% -->97.7%<!-- /measured -->):
#     dozens of test images, far beyond the 0.1% one image is worth. At a batch of 64
#     the three differ by a few tenths and in another order than on the page: noise, as
#     the page says. A gap that survives a change of seed is the batch's doing; an
#     ordering that does not is not.
