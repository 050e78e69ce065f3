"""
---
title: The shared trainer
summary: >
  One small training loop for every experiment that trains a classifier: steps or epochs over
  tensors already on the device, evaluation in eval() mode, a stop at the first non-finite loss,
  and an optional compiled or captured train step.
---

# The shared trainer

Every experiment of this project that trains a classifier does the same few things: pick a
device, build an optimizer, run mini-batch steps over tensors that already live on that device
and evaluate in `eval()` mode. They share this one module, so that a reader studies the
training loop once, and so that the experiments differ only in what they are about.

Three ways to train, on the same loop:

* `train_steps(model, optimizer, batches, steps, on_step=...)` runs a given number of steps
  and calls `on_step` after each one. Experiments that record something at regular steps
  (the paper's Figure 1 records the test accuracy and the distribution of a sigmoid's input over
  50,000 steps) use it with `batch_stream`, an endless supply of shuffled mini-batches.
* `train_epochs(...)` wraps it into epochs, evaluating on the test set after each one.
* `train_watched(...)` is `train_steps` over `batch_stream` for the experiments that measure
  a run as it goes, and count a run that diverges as one of their results.

A training run whose loss becomes `nan` or `inf` stops at the first such step with a
`DivergenceError` that names the step, the loss and what to try; it never runs on to report the
accuracy of a network full of `nan`s.

How an experiment is started (its options, the checks made before anything runs, the
[labml](https://github.com/labmlai/labml) run that records it, and one line instead of a
traceback when something goes wrong) is the job of [the command line](cli.md), which sits on
top of this module.
"""

import itertools
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

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
    _check_batch_fits(batch_size, len(y))
    while True:
        yield from data.batches(x, y, batch_size, generator=generator, drop_last=True)


# ## A run that an experiment watches
#
# Some experiments study a network while it trains: they measure it before the first
# update and every few steps after (its test accuracy, the distribution of a layer's
# inputs), and a run whose loss stops being finite is one of their results, not a
# failure. `train_watched` is that run, written once: the first measurement, the steps
# over an endless stream of shuffled batches with `on_step` after each, and the time it
# all took, measurements included.
def train_watched(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  train: Tuple[torch.Tensor, torch.Tensor], batch_size: int,
                  generator: torch.Generator, steps: int, *,
                  before: Callable[[], None], on_step: Callable[[Step], None],
                  check_every: Optional[int] = None, progress: Optional[str] = 'Train',
                  divergence_is_a_result: bool = True) -> Tuple[Optional[int], float]:
    """
    Calls `before()`, then runs `steps` steps of `train_steps` over
    `batch_stream(*train, batch_size, generator)` (same `on_step`, `check_every` and
    `progress`). Returns the first step whose loss was not finite (None if the run
    finished) and the seconds since `before` was called. With
    `divergence_is_a_result=False` a divergence raises `DivergenceError`.
    """
    start = time.perf_counter()
    before()
    try:
        train_steps(model, optimizer, batch_stream(*train, batch_size, generator),
                    steps, on_step=on_step, check_every=check_every, progress=progress)
    except DivergenceError as e:
        if not divergence_is_a_result:
            raise
        return e.step, time.perf_counter() - start
    return None, time.perf_counter() - start


# ## Training for epochs
#
# An epoch is one pass over the shuffled training data. The last, incomplete batch is dropped:
# a tiny batch gives poor batch statistics, and a fixed batch size lets a captured step replay.
def train_epoch(model, optimizer, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                generator: torch.Generator, **kwargs) -> Tuple[float, float]:
    """One epoch of `train_steps` (same keyword arguments); returns (mean loss, accuracy)."""
    _check_batch_fits(batch_size, len(y))
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

    if epochs < 1:
        raise ValueError(f'epochs must be >= 1, got {epochs}')
    _check_batch_fits(batch_size, len(train[1]))
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


# ## Measuring without changing the run
#
# A measurement taken in the middle of training may need the network in training mode (a
# batch norm normalising with the statistics of the batch at hand, as in training); that
# forward pass also updates the running statistics. Inside `statistics_kept`, every buffer and
# the training mode are put back afterwards, so the measurement leaves the run as it was.
@contextmanager
def statistics_kept(model: torch.nn.Module):
    saved = [b.clone() for b in model.buffers()]
    was_training = model.training
    try:
        yield model
    finally:
        with torch.no_grad():
            for b, s in zip(model.buffers(), saved):
                b.copy_(s)
        model.train(was_training)


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


# On a CPU, the experiments' small networks (matrices of $60 \times 100$, say) gain
# little from several threads, and on a shared machine extra threads mostly wait for
# each other. Inside `one_cpu_thread(device)` torch uses one thread when `device` is a
# CPU; with `flush_denormal=True` it also flushes subnormal numbers (below $10^{-38}$)
# to zero, which x86 CPUs compute with many times more slowly (saturated sigmoids make
# them). Both settings are put back afterwards.
@contextmanager
def one_cpu_thread(device: torch.device, flush_denormal: bool = False):
    threads = torch.get_num_threads()
    on_cpu = torch.device(device).type == 'cpu'
    if on_cpu:
        torch.set_num_threads(1)
        if flush_denormal:
            torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if on_cpu and flush_denormal:
            torch.set_flush_denormal(False)


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


# A progress bar only on a terminal: elsewhere its redrawn line is noise (see
# [plain output](cli.md#plain-output-when-stdout-is-not-a-terminal))
def is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


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


def _check_batch_fits(batch_size: int, n_train: int):
    # Every batch is full (the last incomplete one is dropped): a batch larger than the data
    # would leave an epoch without a step
    if batch_size > n_train:
        raise ValueError(f'batch_size {batch_size} is larger than the {n_train:,} training '
                         f'images; use a smaller batch')
