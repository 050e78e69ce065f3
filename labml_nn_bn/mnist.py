"""
---
title: MNIST CNN with Batch Normalization
summary: >
  A small convolutional network trained on MNIST with and without batch normalization,
  tracked with labml, with the whole data set on the training device.
---

# MNIST CNN with Batch Normalization

This experiment trains a small convolutional network on MNIST using our
[`BatchNorm`](batch_norm.md) after every convolution and hidden fully connected layer, and, for
comparison, the same network without batch normalization. It runs on a laptop's CPU in well
under a minute on the offline 5,000-digit subset, and on Colab's GPUs on full MNIST.

Run it with batch normalization, without it, or see every option (epochs, batch size,
optimizer, device, data set, seed):

```bash
python -m labml_nn_bn.mnist
python -m labml_nn_bn.mnist --no-bn
python -m labml_nn_bn.mnist --help
```

Runs are tracked with [labml](https://github.com/labmlai/labml): configurations, per-epoch
losses and accuracies are printed and stored under `logs/`, next to the nearest `.labml.yaml`
(or in the current folder). Nothing is sent anywhere.
"""

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from labml import experiment, logger, monit, tracker
from labml.configs import BaseConfigs
from labml.logger import Text

from labml_nn_bn import data
from labml_nn_bn.batch_norm import BatchNorm, Module


# ## The model
#
# Two convolution blocks and two fully connected layers. Each convolution and the hidden
# fully connected layer is followed by batch normalization, then the non-linearity. The layers
# before a batch norm have no bias: the batch norm subtracts the mean, which would cancel any
# bias, and its $\beta$ plays the same role. Without batch normalization, the biases are back.
class Model(Module):
    """
    * `batch_norm`: whether to normalise after each hidden layer
    * `bn_impl`: `'ours'` for `labml_nn_bn.BatchNorm`, `'torch'` for `torch.nn.BatchNorm*d`
      (same network, for comparing speed)
    """

    def __init__(self, batch_norm: bool = True, bn_impl: str = 'ours'):
        super().__init__()
        if bn_impl not in ('ours', 'torch'):
            raise ValueError(f"bn_impl must be 'ours' or 'torch', got {bn_impl!r}")
        bias = not batch_norm

        def norm(channels, torch_cls):
            if not batch_norm:
                return nn.Identity()
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
    # Use only the first `train_limit` training images (0 for all), for quick checks
    train_limit: int = 0


@dataclass
class Result:
    dataset: str
    device: str
    history: List[Dict[str, float]] = field(default_factory=list)
    seconds: float = 0.

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]['accuracy.test']


def pick_device(name: str) -> torch.device:
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return torch.device(name)


def make_optimizer(name: str, params, lr: float):
    if name == 'adam':
        return torch.optim.Adam(params, lr=lr)
    if name == 'sgd':
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


# ## Training and evaluation
#
# Training uses `train()` mode: batch statistics normalise, and the running averages are
# updated. Evaluation uses `eval()` mode, so each test image is normalised with the population
# estimates and its prediction does not depend on the other images of its batch.
def train_epoch(model, optimizer, x, y, batch_size: int, generator: torch.Generator):
    model.train()
    # The last, incomplete batch is dropped: a tiny batch gives poor batch statistics
    steps = len(y) // batch_size
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    seen = 0
    for xb, yb in monit.iterate('Train', data.batches(x, y, batch_size, generator=generator,
                                                      drop_last=True), total_steps=steps):
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Sums stay on the device; reading them every step would synchronise a GPU
        total_loss += loss.detach() * len(yb)
        correct += (logits.argmax(dim=1) == yb).sum()
        seen += len(yb)
    return total_loss.item() / seen, correct.item() / seen


@torch.no_grad()
def evaluate(model, x, y, batch_size: int = 1000):
    model.eval()
    # As in training, the sums stay on the device until the end
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for xb, yb in data.batches(x, y, batch_size):
        logits = model(xb)
        total_loss += F.cross_entropy(logits, yb, reduction='sum')
        correct += (logits.argmax(dim=1) == yb).sum()
    return total_loss.item() / len(y), correct.item() / len(y)


def train(conf: Configs) -> Result:
    """Trains and evaluates one model; returns the per-epoch history."""
    device = pick_device(conf.device)
    dataset, how = data.load_dataset(conf.dataset, conf.data_dir, download_ok=conf.download,
                                     seed=conf.seed)
    logger.log([('Data: ', Text.key), (str(dataset), Text.value)])
    logger.log([('       ', Text.key), (how, Text.meta)])
    logger.log([('Device: ', Text.key), (str(device), Text.value)])
    tensors = data.DeviceData(dataset, device)
    train_x, train_y = tensors.train_x, tensors.train_y
    if conf.train_limit:
        # A seeded random subset, whatever the order of the data set
        subset = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(conf.seed))
        subset = subset[:conf.train_limit].to(device)
        train_x, train_y = train_x[subset], train_y[subset]

    # The seed fixes the initial weights and the order of the batches
    torch.manual_seed(conf.seed)
    model = Model(conf.batch_norm, conf.bn_impl).to(device)
    optimizer = make_optimizer(conf.optimizer, model.parameters(), conf.learning_rate)
    generator = torch.Generator().manual_seed(conf.seed)

    result = Result(dataset=str(dataset), device=str(device))
    start = time.perf_counter()
    for epoch in monit.loop(conf.epochs):
        train_loss, train_acc = train_epoch(model, optimizer, train_x, train_y, conf.batch_size,
                                            generator)
        test_loss, test_acc = evaluate(model, tensors.test_x, tensors.test_y)
        metrics = {'loss.train': train_loss, 'accuracy.train': train_acc,
                   'loss.test': test_loss, 'accuracy.test': test_acc}
        result.history.append(metrics)
        tracker.save(metrics)
    result.seconds = time.perf_counter() - start
    return result


def run(conf: Configs, *, name: Optional[str] = None, writers=frozenset({'screen', 'file'})) -> Result:
    """
    Runs `train` as a labml experiment. The run is stored beside the nearest `.labml.yaml`
    above the current folder (or in the current folder), not beside the installed package.
    """
    name = name or ('mnist_batch_norm' if conf.batch_norm else 'mnist_no_batch_norm')
    experiment.create(name=name, writers=set(writers), python_file=str(Path.cwd()))
    experiment.configs(conf)
    with experiment.start():
        result = train(conf)
    logger.log([('Final test accuracy: ', Text.key), (f'{result.test_accuracy:.2%}', Text.success),
                (f' after {conf.epochs} epochs in {result.seconds:.1f}s on {result.device} '
                 f'({"with" if conf.batch_norm else "without"} batch normalization)', Text.meta)])
    return result


# ## Command line
def parse_args(argv=None) -> Dict:
    parser = argparse.ArgumentParser(
        prog='python -m labml_nn_bn.mnist',
        description='Train the MNIST CNN with (or without) batch normalization.')
    defaults = Configs()
    parser.add_argument('--epochs', type=int, default=defaults.epochs)
    parser.add_argument('--batch-size', type=int, default=defaults.batch_size)
    parser.add_argument('--lr', '--learning-rate', dest='learning_rate', type=float,
                        default=defaults.learning_rate)
    parser.add_argument('--optimizer', choices=['adam', 'sgd'], default=defaults.optimizer)
    parser.add_argument('--device', default=defaults.device,
                        help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument('--bn', dest='batch_norm', action=argparse.BooleanOptionalAction,
                        default=defaults.batch_norm, help='use batch normalization (--no-bn: without)')
    parser.add_argument('--bn-impl', choices=['ours', 'torch'], default=defaults.bn_impl,
                        help="whose batch norm: this package's or torch.nn's")
    parser.add_argument('--dataset', choices=list(data.DATASETS), default=defaults.dataset,
                        help="'auto': full MNIST if cached or downloadable, else the offline subset")
    parser.add_argument('--data-dir', default=None,
                        help="where MNIST is cached, or the IDX folder for --dataset idx")
    parser.add_argument('--no-download', dest='download', action='store_false',
                        help='never download; use cached files or the offline subset')
    parser.add_argument('--seed', type=int, default=defaults.seed)
    parser.add_argument('--train-limit', type=int, default=0,
                        help='use only this many training images (0: all)')
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 2:
        parser.error(f'expected --epochs >= 1 and --batch-size >= 2, '
                     f'got {args.epochs} and {args.batch_size}')
    return vars(args)


def main(argv=None) -> Result:
    conf = Configs()
    for key, value in parse_args(argv).items():
        setattr(conf, key, value)
    return run(conf)


if __name__ == '__main__':
    main()
