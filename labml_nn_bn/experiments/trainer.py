"""
---
title: The shared trainer
summary: >
  One small training loop for every experiment that trains a classifier: steps or epochs over
  tensors already on the device, evaluation in eval() mode, a stop at the first non-finite loss,
  an optional captured train step, labml run set-up and the common command-line options.
---

# The shared trainer

Every experiment of this project that trains a classifier does the same few things: pick a
device, build an optimizer, run mini-batch steps over tensors that already live on that device,
evaluate in `eval()` mode, and track the run with [labml](https://github.com/labmlai/labml).
They share this one module, so that a reader studies the training loop once, and so that the
experiments differ only in what they are about.

Two ways to train, on the same loop:

* `train_steps(model, optimizer, batches, steps, on_step=...)` runs a given number of steps
  and calls `on_step` after each one. Experiments that record something every $N$ steps (the
  paper's Figure 1 records the test accuracy and the distribution of a sigmoid's input over
  50,000 steps) use it with `batch_stream`, an endless supply of shuffled mini-batches.
* `train_epochs(...)` wraps it into epochs, evaluating on the test set after each one.

A training run whose loss becomes `nan` or `inf` stops at the first such step with a
`DivergenceError` that names the step, the loss and what to try; it never runs on to report the
accuracy of a network full of `nan`s.

The command-line helpers make every experiment behave the same way: `--help` shows every
default, meaningless values are refused before anything is loaded, the data is loaded and
checked before the labml run is created (so a failed start leaves no run folder behind), and
expected errors end in one line on stderr, not a traceback.
"""

import argparse
import itertools
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from labml_nn_bn import data


# ## One training step
#
# A step function takes a mini-batch `(x, y)`, updates the model and returns the loss and the
# logits, detached. The plain step is the textbook one; `make_fast_step` below returns a step
# with the same effect that is compiled or captured as a CUDA graph.
def make_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              loss_fn: Callable = F.cross_entropy) -> Callable:
    def step(x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), logits.detach()

    return step


@dataclass
class Step:
    """What `on_step` receives after each step. `step` counts the updates done so far (1 after
    the first); `loss` and `logits` are detached device tensors (with a CUDA-graph step they are
    overwritten by the next step: copy what you keep); `model` is the model being trained (a
    hook may evaluate it: `evaluate` restores the training mode)."""
    step: int
    loss: torch.Tensor
    logits: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    model: torch.nn.Module


@dataclass
class StepStats:
    """Mean training loss and accuracy over the steps of one `train_steps` call."""
    loss: float
    accuracy: float
    steps: int
    images: int


class DivergenceError(RuntimeError):
    """The training loss became `nan` or `inf`."""

    def __init__(self, step: int, loss: float, lr: Optional[float] = None):
        self.step, self.loss, self.lr = step, loss, lr
        now = f' (now {lr:g})' if lr is not None else ''
        super().__init__(f'training diverged: the loss is {loss} at step {step}, the first '
                         f'non-finite loss; try a lower learning rate with --lr{now}, '
                         f'and check the data')


# ## Training for a number of steps
#
# Training uses `train()` mode: each batch is normalised with its own statistics and the
# running averages are updated (Algorithm 1 of the paper normalises with the batch's
# statistics; the running averages are the alternative to Algorithm 2 that its Section 3.1
# mentions). The loss and accuracy sums stay on
# the device: reading them every step would make the CPU wait for a GPU.
#
# The divergence check reads the loss every `check_every` steps. On a CPU that costs nothing,
# so it reads every step; on a GPU the default is every 100 steps, and a flag kept on the
# device remembers the first bad step and its loss, so the error still names the first one.
def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                batches: Iterable[Tuple[torch.Tensor, torch.Tensor]], steps: Optional[int] = None,
                *, step_fn: Optional[Callable] = None, on_step: Optional[Callable[[Step], None]] = None,
                first_step: int = 0, check_every: Optional[int] = None,
                progress: Optional[str] = 'Train') -> StepStats:
    """
    Runs `steps` training steps (all of `batches` when `steps` is None) and returns the mean
    training loss and accuracy. `first_step` is the number of steps done before this call, so
    that `Step.step` counts across calls. `progress` names the progress bar shown on a terminal.
    """
    if steps is not None and steps < 1:
        raise ValueError(f'steps must be >= 1, got {steps}')
    step_fn = step_fn or make_step(model, optimizer)
    model.train()
    iterator = iter(batches)
    counter = range(steps) if steps is not None else itertools.count()
    if progress and steps is not None and is_terminal():
        from labml import monit
        # labml's bar runs over the step numbers, which always run to their end
        counter = monit.iterate(progress, counter)
    device = _first_device(model)
    check_every = check_every or (1 if device.type == 'cpu' else 100)
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    bad_step = torch.full((), -1, dtype=torch.long, device=device)
    bad_loss = torch.zeros((), device=device)
    done = images = 0
    for _ in counter:
        try:
            x, y = next(iterator)
        except StopIteration:
            break
        loss, logits = step_fn(x, y)
        done += 1
        step = first_step + done
        if check_every == 1:
            if not torch.isfinite(loss):
                raise DivergenceError(step, loss.item(), _learning_rate(optimizer))
        else:
            first_bad = (bad_step < 0) & ~torch.isfinite(loss)
            bad_step = torch.where(first_bad, step, bad_step)
            bad_loss = torch.where(first_bad, loss.float(), bad_loss)
            if done % check_every == 0:
                _raise_if_diverged(bad_step, bad_loss, optimizer)
        total_loss += loss.float() * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
        images += len(y)
        if on_step is not None:
            on_step(Step(step, loss, logits, x, y, model))
    if check_every != 1:
        _raise_if_diverged(bad_step, bad_loss, optimizer)
    if steps is not None and done < steps:
        raise ValueError(f'the batches ran out after {done} of {steps} steps; '
                         f'use batch_stream() for an endless supply')
    if done == 0:
        raise ValueError('no batches to train on (is the training data smaller than a batch?)')
    return StepStats(total_loss.item() / images, correct.item() / images, done, images)


def batch_stream(x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 generator: torch.Generator) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled mini-batches of exactly `batch_size`, epoch after epoch, without end (each
    epoch a new permutation; the last incomplete batch of each epoch is dropped)."""
    check_batch_size(batch_size, len(y))
    while True:
        yield from data.batches(x, y, batch_size, generator=generator, drop_last=True)


# ## Training for epochs
#
# An epoch is one pass over the shuffled training data. The last, incomplete batch is dropped:
# a tiny batch gives poor batch statistics, and a fixed batch size lets a captured step replay.
def train_epoch(model, optimizer, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                generator: torch.Generator, **kwargs) -> Tuple[float, float]:
    """One epoch of `train_steps` (same keyword arguments); returns (mean loss, accuracy)."""
    check_batch_size(batch_size, len(y))
    stats = train_steps(model, optimizer,
                        data.batches(x, y, batch_size, generator=generator, drop_last=True),
                        len(y) // batch_size, **kwargs)
    return stats.loss, stats.accuracy


def train_epochs(model, optimizer, train: Tuple[torch.Tensor, torch.Tensor],
                 test: Tuple[torch.Tensor, torch.Tensor], epochs: int, batch_size: int,
                 generator: torch.Generator, *, step_fn: Optional[Callable] = None,
                 on_step: Optional[Callable[[Step], None]] = None,
                 on_epoch: Optional[Callable[[int, Dict[str, float]], None]] = None,
                 check_every: Optional[int] = None) -> List[Dict[str, float]]:
    """
    Trains for `epochs` epochs, evaluating on `test` after each. Returns one dict of metrics
    per epoch (`loss.train`, `accuracy.train`, `loss.test`, `accuracy.test`), which are also
    saved to labml's tracker. `on_epoch(epoch, metrics)` is called after each (epoch from 1).
    """
    from labml import logger, monit, tracker

    use_plain_output_when_not_a_terminal()
    if epochs < 1:
        raise ValueError(f'epochs must be >= 1, got {epochs}')
    check_batch_size(batch_size, len(train[1]))
    step_fn = step_fn or make_step(model, optimizer)
    steps_per_epoch = len(train[1]) // batch_size
    history = []
    # On a terminal labml's loop redraws one line per epoch; elsewhere we print a plain one
    epochs_iter = monit.loop(epochs) if is_terminal() else range(epochs)
    for epoch in epochs_iter:
        train_loss, train_acc = train_epoch(model, optimizer, *train, batch_size, generator,
                                            step_fn=step_fn, on_step=on_step,
                                            first_step=epoch * steps_per_epoch,
                                            check_every=check_every)
        test_loss, test_acc = evaluate(model, *test)
        metrics = {'loss.train': train_loss, 'accuracy.train': train_acc,
                   'loss.test': test_loss, 'accuracy.test': test_acc}
        history.append(metrics)
        tracker.save(metrics)
        if not is_terminal():
            # Through labml's logger, so that this line replaces the tracker's partial one
            logger.log(f'epoch {epoch + 1}/{epochs}: ' +
                       '  '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
        if on_epoch is not None:
            on_epoch(epoch + 1, metrics)
    return history


# ## Evaluation
#
# Evaluation uses `eval()` mode: each image is normalised with the population estimates (the
# running averages), so its prediction does not depend on the other images of its batch. The
# model's mode is restored afterwards, so an `on_step` hook may evaluate in the middle of
# training.
@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 1000) -> Tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `model` on `(x, y)`, in eval() mode."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    try:
        for xb, yb in data.batches(x, y, batch_size):
            logits = model(xb)
            total_loss += F.cross_entropy(logits, yb, reduction='sum')
            correct += (logits.argmax(dim=1) == yb).sum()
    finally:
        model.train(was_training)
    return total_loss.item() / len(y), correct.item() / len(y)


# ## A faster step: compiled, or captured as a CUDA graph
#
# A small network on a GPU is launch-bound: each step launches a few hundred small kernels, and
# the GPU waits for the CPU to issue them. Two ways around it, with the same arithmetic:
#
# * `compile`: `torch.compile` fuses the forward and backward passes into fewer kernels, and
#   the optimizer's update into one. GPU only: on the CPU, torch 2.13.0's generated code gave
#   wrong gradients for the convolutions of the MNIST CNN without batch norm (the whole gradient
#   was off; eager `float32` agrees with `float64` to $10^{-8}$), so there the plain step is
#   used, unless a `compile_backend` is asked for explicitly (the tests use `'aot_eager'`,
#   which captures the same graphs without generating code);
# * `cuda-graph`: the whole step (forward, backward and the optimizer's update) is recorded
#   once as a CUDA graph and replayed, so a step is one launch. It needs a fixed batch shape
#   (the dropped last batch gives that) and an optimizer whose state lives on the GPU
#   (`capturable=True`). CUDA only; on a CPU it falls back to the plain step.
FAST_STEPS = ('off', 'compile', 'cuda-graph')


def make_fast_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, mode: str,
                   device: torch.device, loss_fn: Callable = F.cross_entropy, *,
                   compile_backend: Optional[str] = None) -> Tuple[Callable, str]:
    """A step function for `mode` and one line saying what it does on `device`."""
    if mode not in FAST_STEPS:
        raise ValueError(f'fast step must be one of {", ".join(FAST_STEPS)}, got {mode!r}')
    device = torch.device(device)
    if mode == 'compile':
        if device.type == 'cpu' and compile_backend is None:
            return make_step(model, optimizer, loss_fn), \
                ('fast step: torch.compile is used on GPUs only (its CPU code gave wrong '
                 'convolution gradients in our checks); using the plain step')
        backend = compile_backend or 'inductor'
        return _compiled_step(model, optimizer, loss_fn, backend), \
            (f'fast step: forward, backward and optimizer compiled with torch.compile '
             f'({backend}) on {device.type}')
    if mode == 'cuda-graph':
        if device.type == 'cuda':
            return CudaGraphStep(model, optimizer, loss_fn), \
                'fast step: the whole train step is captured as a CUDA graph and replayed'
        return make_step(model, optimizer, loss_fn), \
            f'fast step: CUDA graphs need a CUDA device, got {device.type}; using the plain step'
    return make_step(model, optimizer, loss_fn), 'plain step (no compile, no CUDA graph)'


def _compiled_step(model, optimizer, loss_fn, backend: str) -> Callable:
    # The model is compiled as a whole (its backward too, through AOTAutograd), and so is the
    # optimizer's update; zero_grad and backward stay in Python between them.
    compiled_model = torch.compile(model, backend=backend)

    @torch.compile(backend=backend)
    def update():
        optimizer.step()

    def step(x, y):
        logits = compiled_model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        update()
        return loss.detach(), logits.detach()

    return step


class CudaGraphStep:
    """
    The train step captured as one CUDA graph (PyTorch's "whole network capture"). The first
    `warmup` steps run eagerly on a side stream (so that lazily created state, such as the
    optimizer's moments, exists before capture); the next step is captured and every step from
    then on copies its batch into the graph's input tensors and replays the graph. Every step is
    a real training step on its own batch, in the same order as the plain path.
    """

    def __init__(self, model, optimizer, loss_fn=F.cross_entropy, warmup: int = 3):
        self.model, self.optimizer, self.loss_fn, self.warmup = model, optimizer, loss_fn, warmup
        self.eager = make_step(model, optimizer, loss_fn)
        self.calls = 0
        self.graph = None
        # The optimizer's step counter must be a GPU tensor to be updated inside the graph
        for group in optimizer.param_groups:
            if 'capturable' in group:
                group['capturable'] = True

    def __call__(self, x, y):
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss, logits = self.eager(x, y)
            torch.cuda.current_stream().wait_stream(side)
            return loss, logits
        if self.graph is None:
            self._capture(x, y)
        if x.shape != self.x.shape or y.shape != self.y.shape:
            raise ValueError(f'a CUDA-graph step replays one batch shape, {tuple(self.x.shape)}; '
                             f'got {tuple(x.shape)}')
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.loss, self.logits

    def _capture(self, x, y):
        self.x, self.y = x.clone(), y.clone()
        # Gradients set to None, so that backward allocates them in the graph's own memory
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self.model(self.x)
            loss = self.loss_fn(logits, self.y)
            loss.backward()
            self.optimizer.step()
        self.loss, self.logits = loss.detach(), logits.detach()
        self.graph = graph


# ## Device and optimizer
def pick_device(name: str) -> torch.device:
    """`'auto'` is CUDA when available, else the CPU. A device that this machine does not have
    is refused with the reason, before any data is loaded."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") \
            from None
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            why = 'this torch has no CUDA support' if torch.version.cuda is None else \
                'no CUDA GPU is visible'
            raise ValueError(f'device {name!r}: CUDA is not available here ({why}); '
                             f"use --device cpu or --device auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f'device {name!r}: this machine has {torch.cuda.device_count()} '
                             f'CUDA device(s), numbered from 0')
    elif device.type == 'mps':
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {name!r}: MPS is not available here; use --device cpu")
    elif device.type != 'cpu':
        raise ValueError(f"device {name!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return device


OPTIMIZERS = ('adam', 'sgd')


def make_optimizer(name: str, params, lr: float, *, momentum: float = 0.9) -> torch.optim.Optimizer:
    """`'adam'` (PyTorch's defaults) or `'sgd'` with momentum."""
    if name == 'adam':
        return torch.optim.Adam(params, lr=lr)
    if name == 'sgd':
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def seed_everything(seed: int) -> torch.Generator:
    """Seeds torch's global generator (initial weights) and returns a CPU generator seeded the
    same way for the order of the batches."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# ## The labml run
#
# A run is stored in labml's experiments folder: `--logs-dir` when given, else what the
# nearest `.labml.yaml` above the current folder says (`experiments_path`, relative to that
# file), else `logs/` in the current folder. Both that folder and labml's own settings folder
# (`~/.labml`) are checked before the run is created, so that a read-only folder or HOME ends
# in one line saying what to do, not in a `PermissionError` inside labml.
class LogsError(PermissionError):
    """Nowhere to store the run."""


def logs_folder(logs_dir: Optional[Union[str, Path]] = None) -> Path:
    """Where labml will store runs (and sets it up so): `logs_dir`, or labml's configuration."""
    from labml.internal import lab as labml_lab

    # A fresh view of labml's configuration for the current folder, so that one process can
    # start runs with and without --logs-dir, one after the other
    lab = labml_lab.Lab(Path.cwd().resolve())
    if logs_dir is not None:
        lab.set_configurations({'experiments_path': str(Path(logs_dir).expanduser().resolve())})
    labml_lab._internal = lab
    return Path(lab.experiments)


def check_writable(folder: Path, hint: str):
    """Creates `folder` if needed and writes a file in it; `LogsError` with `hint` if it cannot."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix='.write-test-')
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise LogsError(f'cannot write to {folder} ({e.strerror or e}); {hint}') from None


@contextmanager
def labml_run(name: str, configs, *, logs_dir: Optional[Union[str, Path]] = None,
              writers: Sequence[str] = ('screen', 'file'), comment: Optional[str] = None):
    """
    Creates and starts a labml run named `name` recording `configs` (a labml `BaseConfigs` or
    a dict); yields the folder of runs. Call it only after the arguments and the data have been
    checked: from here on, a failure leaves a run folder marked as crashed.
    """
    from labml import experiment

    folder = logs_folder(logs_dir)
    check_writable(folder, 'pass --logs-dir with a writable folder '
                           '(or set experiments_path in .labml.yaml)')
    check_writable(Path.home() / '.labml', "labml keeps its settings there; "
                                           "set HOME to a writable folder")
    use_plain_output_when_not_a_terminal()
    experiment.create(name=name, writers=set(writers), python_file=str(Path.cwd()),
                      comment=comment)
    experiment.configs(configs)
    with experiment.start():
        yield folder


# ## Command-line helpers
#
# Every experiment builds its parser with `make_parser` and the `add_*` helpers, so the same
# option has the same name, default and checks everywhere, and `--help` shows every default.
class UsageError(ValueError):
    """A command-line value that cannot work; printed argparse-style, exit status 2."""


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_training_arguments(parser: argparse.ArgumentParser, *, epochs: Optional[int] = 2,
                           steps: Optional[int] = None, batch_size: int = 64, lr: float = 1e-3,
                           optimizer: str = 'adam', seed: int = 0, fast_step: bool = False):
    """`--epochs` and/or `--steps` (give None to leave one out), `--batch-size`, `--lr`,
    `--optimizer`, `--seed` and, with `fast_step=True`, `--fast-step`."""
    if epochs is not None:
        parser.add_argument('--epochs', type=int, default=epochs, help='passes over the training data')
    if steps is not None:
        parser.add_argument('--steps', type=int, default=steps, help='training steps (mini-batches)')
    parser.add_argument('--batch-size', type=int, default=batch_size, help='images per mini-batch')
    parser.add_argument('--lr', '--learning-rate', dest='learning_rate', type=float, default=lr,
                        help='learning rate')
    parser.add_argument('--optimizer', choices=OPTIMIZERS, default=optimizer,
                        help="'adam' (PyTorch's defaults) or 'sgd' (momentum 0.9)")
    parser.add_argument('--seed', type=int, default=seed,
                        help='fixes the initial weights and the order of the batches')
    if fast_step:
        parser.add_argument('--fast-step', choices=FAST_STEPS, default='off',
                            help='compile the train step, or capture it as a CUDA graph (GPU only; '
                                 'the plain step elsewhere)')


def add_device_argument(parser: argparse.ArgumentParser, default: str = 'auto'):
    parser.add_argument('--device', default=default,
                        help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")


def add_data_arguments(parser: argparse.ArgumentParser, dataset: str = 'auto',
                       train_limit: bool = True):
    parser.add_argument('--dataset', choices=list(data.DATASETS), default=dataset,
                        help="'auto': full MNIST if cached or downloadable, else the offline subset")
    parser.add_argument('--data-dir', default=None,
                        help='where MNIST is cached, or the IDX folder for --dataset idx; '
                             'None: data/ beside .labml.yaml, or in the current folder')
    parser.add_argument('--download', action=argparse.BooleanOptionalAction, default=True,
                        help='download full MNIST when it is not cached (--no-download: never; '
                             'use cached files or the offline subset)')
    if train_limit:
        parser.add_argument('--train-limit', type=int, default=0,
                            help='use only this many training images (0: all)')


def add_logs_argument(parser: argparse.ArgumentParser):
    parser.add_argument('--logs-dir', default=None,
                        help="where labml stores the runs; None: labml's experiments_path from "
                             "the nearest .labml.yaml, else logs/ in the current folder")


def add_common_arguments(parser: argparse.ArgumentParser, **training):
    """Training (keyword arguments as `add_training_arguments`), device, data and logs options."""
    add_training_arguments(parser, **training)
    add_device_argument(parser)
    add_data_arguments(parser)
    add_logs_argument(parser)


# torch seeds its generators with an unsigned 64-bit integer: anything outside that range fails
# inside `torch.manual_seed`, after the data has been loaded, with a message about C types
SEED_LIMIT = 2 ** 64


def check_seed(seed: int, option: str = '--seed'):
    if seed < 0 or seed >= SEED_LIMIT:
        raise UsageError(f'argument {option}: expected an integer >= 0 and < 2**64, got {seed}')


def check_values(*, epochs: Optional[int] = None, steps: Optional[int] = None,
                 batch_size: Optional[int] = None, learning_rate: Optional[float] = None,
                 train_limit: Optional[int] = None, device: Optional[str] = None,
                 fast_step: Optional[str] = None, seed: Optional[int] = None,
                 dataset: Optional[str] = None, data_dir: Optional[str] = None,
                 download: bool = True, figure: Optional[str] = None, **_ignored):
    """Refuses values that cannot make a meaningful run (`UsageError` naming the option).
    Takes the options as keywords (e.g. `**vars(args)`); those not given are not checked."""
    if seed is not None:
        check_seed(seed)
    check_data_dir(dataset, data_dir, download)
    if figure is not None:
        check_output_file(figure, '--figure')
    if epochs is not None and epochs < 1:
        raise UsageError(f'argument --epochs: expected at least 1, got {epochs}')
    if steps is not None and steps < 1:
        raise UsageError(f'argument --steps: expected at least 1, got {steps}')
    if batch_size is not None and batch_size < 2:
        # One image per batch has no batch statistics to speak of (its variance is zero)
        raise UsageError(f'argument --batch-size: expected at least 2, got {batch_size}')
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        raise UsageError(f'argument --lr: expected a finite number > 0, got {learning_rate}')
    if train_limit is not None and train_limit < 0:
        raise UsageError(f'argument --train-limit: expected 0 (all) or more, got {train_limit}')
    if fast_step is not None and fast_step not in FAST_STEPS:
        raise UsageError(f'argument --fast-step: expected one of {", ".join(FAST_STEPS)}, '
                         f'got {fast_step!r}')
    if device is not None:
        try:
            pick_device(device)
        except ValueError as e:
            raise UsageError(f'argument --device: {e}') from None


def check_data_dir(dataset: Optional[str], data_dir: Optional[str], download: bool = True):
    """What can be told about `--data-dir` without reading it: a file is never a data folder,
    and `--dataset idx` (or `mnist` without downloading) needs a folder that exists. Checked
    here because the loader would otherwise fall back to the offline subset, or fail with a
    message about copying files into what is not a folder."""
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if folder.exists() and not folder.is_dir():
            raise UsageError(f'argument --data-dir: {data_dir} is a file, expected a folder')
        if not folder.exists() and (dataset == 'idx' or (dataset == 'mnist' and not download)):
            raise UsageError(f'argument --data-dir: expected an existing folder with the '
                             f'MNIST IDX files for --dataset {dataset}, got {data_dir} '
                             f'(no such folder)')
    elif dataset == 'idx':
        raise UsageError('argument --dataset: idx needs --data-dir, the folder of the IDX files')


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_can_create_in(path: Path, option: str, given):
    """The nearest existing folder above `path` must be a folder we may write in. A test file
    is written and removed: `os.access` says yes to root even where writing fails (`/proc`)."""
    base = _nearest_existing(path.parent if not path.exists() else path)
    if not base.is_dir():
        raise UsageError(f'argument {option}: {base} is a file, expected a folder (in {given})')
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix='.write-test-')
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f'argument {option}: cannot write to {base} ({e.strerror or e}), '
                         f'expected a writable place for {given}') from None


def check_output_file(path: Union[str, Path], option: str):
    """Refuses, before any work, an output file that could not be written at the end: a folder
    in its place, a file among its parents, or a parent we may not write in."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f'argument {option}: {path} is a folder, expected a file name')
    _check_can_create_in(target, option, path)


def check_output_folder(path: Union[str, Path], option: str):
    """Like `check_output_file`, for an output folder (created at the end if missing)."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UsageError(f'argument {option}: {path} is a file, expected a folder')
    _check_can_create_in(target, option, path)


def check_logs_dir(logs_dir: Optional[Union[str, Path]]):
    """A `--logs-dir` that was given, checked as `labml_run` does, but before the data loads.
    Without one, the folder comes from labml's configuration, not from the command line: that
    is checked by `labml_run` (exit 1, no usage line)."""
    if logs_dir is None:
        return
    if Path(logs_dir).expanduser().exists() and not Path(logs_dir).expanduser().is_dir():
        raise UsageError(f'argument --logs-dir: {logs_dir} is a file, expected a folder')
    import contextlib
    import io
    try:
        # labml warns on stdout about a missing .labml.yaml; it says so again when the run
        # is created, and here it would bury the one line of an error
        with contextlib.redirect_stdout(io.StringIO()):
            folder = logs_folder(logs_dir)
        check_writable(folder, 'pass --logs-dir with a writable folder '
                               '(or set experiments_path in .labml.yaml)')
    except LogsError as e:
        raise UsageError(f'argument --logs-dir: {e}') from None



def add_figure_arguments(parser: argparse.ArgumentParser, name: str, smoke_help: str,
                         seed_help: str):
    """The options of an experiment that measures once and draws a figure:
    `--smoke`, `--seed`, `--out` (the folder for `name`.svg and .json) and `--logs-dir`."""
    parser.add_argument('--smoke', action='store_true', help=smoke_help)
    parser.add_argument('--seed', type=int, default=0, help=seed_help)
    parser.add_argument('--out', default=None, help=f'folder to write {name}.svg and .json into')
    add_logs_argument(parser)


def parse_figure_arguments(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Parses `add_figure_arguments`' options and checks every place the run writes to before
    the labml run and the measurements; `args.out` becomes a `Path` or `None`."""
    args = parser.parse_args(argv)
    try:
        check_seed(args.seed)
        if args.out is not None:
            check_output_folder(args.out, '--out')
        check_logs_dir(args.logs_dir)
    except UsageError as e:
        parser.error(str(e))
    args.out = None if args.out is None else Path(args.out)
    return args

def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """`check_values` on parsed arguments, and the logs folder when the parser has
    `--logs-dir`, reported by `parser.error` (usage line, exit 2)."""
    try:
        check_values(**vars(args))
        if 'logs_dir' in vars(args):
            check_logs_dir(args.logs_dir)
    except UsageError as e:
        parser.error(str(e))


def given_options(parser: argparse.ArgumentParser, argv=None) -> set:
    """The destinations of the options written on the command line (not left at their
    default). `--smoke` applies these on top of its own settings, so that no value the user
    typed is dropped without a word."""
    saved = [(action, action.default) for action in parser._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv)))
    finally:
        for action, default in saved:
            action.default = default


def check_batch_size(batch_size: int, n_train: int, hint: str = '', option: str = '--batch-size'):
    """Once the data size is known: a batch must fit in the training data. `hint` may add a
    way out (e.g. `' or a larger --train-limit'`)."""
    if batch_size > n_train:
        raise UsageError(f'argument {option}: {batch_size} is larger than the {n_train:,} '
                         f'training images; use a smaller batch{hint}')


def limit_training_data(x: torch.Tensor, y: torch.Tensor, limit: int,
                        seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of `limit` training images (all of them when `limit` is 0)."""
    if limit and limit > len(y):
        # Taking "more than there is" as "all" would let a typo pass for a smaller run
        raise UsageError(f'argument --train-limit: expected at most the {len(y):,} training '
                         f'images of this data set (or 0 for all), got {limit:,}')
    if not limit or limit == len(y):
        return x, y
    subset = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:limit]
    subset = subset.to(y.device)
    return x[subset], y[subset]


def run_main(fn: Callable, prog: str):
    """
    Calls `fn()` and returns its result; the errors a user can meet end in one line on stderr
    and a non-zero exit instead of a traceback: bad values (exit 2), bad data, a diverged run,
    nowhere to write, an output that cannot be written (exit 1). Set `LABML_NN_BN_TRACEBACK=1` to see the traceback anyway.
    """
    use_plain_output_when_not_a_terminal()
    try:
        return fn()
    except (ValueError, DivergenceError, OSError) as e:
        if os.environ.get('LABML_NN_BN_TRACEBACK') == '1':
            raise
        sys.stdout.flush()
        print(f'{prog}: error: {describe_error(e)}', file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(e, UsageError) else 1)


def describe_error(e: BaseException) -> str:
    """One line for an error; an `OSError` (a failed write of an output, say) names the file
    and the reason, without Python's `[Errno N]`."""
    if isinstance(e, OSError) and not isinstance(e, LogsError) and e.strerror:
        return f'{e.filename}: {e.strerror}' if e.filename else e.strerror
    return str(e)


# ## Plain output when stdout is not a terminal
#
# labml redraws its progress lines with carriage returns and colours them with ANSI codes:
# right on a terminal, noise in a CI log, a `| tee` or a file. When stdout is not a terminal
# (and not a notebook, where labml writes HTML), we replace labml's console destination with
# one that keeps what a terminal would finally show: no colour codes, and one line per line.
def is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def use_plain_output_when_not_a_terminal():
    from labml.internal.util import is_ipynb
    from labml.internal.logger import logger_singleton

    if is_terminal() or is_ipynb():
        return
    logger = logger_singleton()
    # labml 0.5 keeps its destinations in a private attribute; it has no public switch
    destinations = getattr(logger, '_Logger__destinations', None)
    if destinations is not None and not any(isinstance(d, _PlainConsole) for d in destinations):
        logger._Logger__destinations = [_PlainConsole()]


class _PlainConsole:
    def __init__(self):
        self.line = ''

    def log(self, parts, *, is_new_line: bool, is_reset: bool):
        text = ''.join(p if isinstance(p, str) else p[0] for p in parts)
        # What a terminal would show: a reset redraws the line, anything else appends to it
        self.line = text if is_reset else self.line + text
        if is_new_line:
            print(self.line.replace('\r', ''), flush=True)
            self.line = ''


def _first_device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device('cpu')


def _learning_rate(optimizer: torch.optim.Optimizer) -> Optional[float]:
    try:
        return float(optimizer.param_groups[0]['lr'])
    except (IndexError, KeyError, TypeError):
        return None


def _raise_if_diverged(bad_step: torch.Tensor, bad_loss: torch.Tensor, optimizer):
    step = int(bad_step.item())
    if step >= 0:
        raise DivergenceError(step, bad_loss.item(), _learning_rate(optimizer))
