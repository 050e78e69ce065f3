r"""
---
title: Data-parallel MNIST with synchronised batch norm
summary: >
  The MNIST CNN trained with DistributedDataParallel over several processes, its batch norms
  either synchronised across the processes or each on its own slice of the batch.
---

# Data-parallel MNIST with synchronised batch norm

This trains [the MNIST CNN](mnist.md), with our [`BatchNorm`](../batch_norm.md)
after each hidden layer, with `torch.nn.parallel.DistributedDataParallel` in several
processes; its batch norms are converted to [`SyncBatchNorm`](../sync_batch_norm.md), or
left as they are. Start it with `torchrun`, which launches the processes and tells each its
rank. With synchronised batch norm, without it, and every option:

```bash
torchrun --nproc_per_node 2 -m labml_nn_bn.experiments.mnist_ddp
torchrun --nproc_per_node 2 -m labml_nn_bn.experiments.mnist_ddp --no-sync
torchrun --nproc_per_node 2 -m labml_nn_bn.experiments.mnist_ddp --help
```

On CPUs the processes talk through the gloo backend; with one GPU per process, through NCCL.

Every process loads the same data and draws the same sequence of global batches from the same
seed; `--batch-size` is the size of the **global** batch, and each process trains on its own
share of every global batch (shares differ by at most one image). Process 0 logs the run
with labml and prints the final test accuracy. The options and their checks are those of the
[shared trainer](trainer.md); the training loop is written out here, since each step works on
a share of the batch. A non-finite loss stops every process at the same step, with the
single-process experiments' "training diverged" and exit status 1; a process that goes
away (killed, say) is named by the others in one line, where they can tell
([below](#when-a-process-goes-away)).

With `--sync` (the default), this is the same training as the single-process experiment
(`python -m labml_nn_bn.experiments.mnist`) with the same seed, batch size and optimiser: the same initial
weights, the same batches, batch norm statistics over the whole global batch, and the
gradient of the mean loss over the global batch. Only the rounding differs, since sums are
taken in another order, and training amplifies it: Adam divides each step by the size of the
gradient, which magnifies differences in tiny gradients, and a max-pool or a ReLU can switch on
a tiny difference. So the final accuracies of the two runs differ a little; the tests check
the equality step by step in `float64`. With `--no-sync`, each process normalises with the
statistics of its share alone, so the network depends on the number of processes.
"""

import argparse
import contextlib
import io
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from labml import logger, monit, tracker
from labml.logger import Text
from torch.nn.parallel import DistributedDataParallel

from labml_nn_bn import data
from labml_nn_bn.experiments import cli, trainer
from labml_nn_bn.experiments.mnist import Model
from labml_nn_bn.sync_batch_norm import convert_sync_batch_norm

PROG = 'torchrun --nproc_per_node N -m labml_nn_bn.experiments.mnist_ddp'


# ## Configuration
#
# One record of every setting, stored with the run by labml. The defaults are those of the
# single-process experiment.
@dataclass
class Config:
    epochs: int = 2
    # The global batch, split over the processes
    batch_size: int = 64
    learning_rate: float = 1e-3
    # `'adam'` or `'sgd'` (with momentum 0.9)
    optimizer: str = 'adam'
    # Synchronise batch norm statistics across the processes
    sync: bool = True
    # `'auto'`: one GPU per process when there are enough, else the CPU
    device: str = 'auto'
    # `'auto'`, `'mnist'`, `'mnist-5k'` or `'idx'` (see `labml_nn_bn.data`)
    dataset: str = 'auto'
    data_dir: Optional[str] = None
    download: bool = True
    seed: int = 0
    # Use only `train_limit` training images, a seeded random subset (0 for all), for quick checks
    train_limit: int = 0
    # Where labml stores runs (`None`: labml's configuration)
    logs_dir: Optional[str] = None
    # Filled in when the processes start
    world_size: int = 1
    backend: str = ''


@dataclass
class Result:
    dataset: str
    device: str
    history: List[Dict[str, float]] = field(default_factory=list)
    seconds: float = 0.

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]['accuracy.test']


# ## Each process's share of a batch
#
# Rank $q$ of $R$ takes a contiguous block of the $n$ examples; the first $n \bmod R$ ranks
# take one more than the others. A share can be empty when $n < R$. ($R$ is the number of
# ranks, as in [the notation](../../notation.md#ranks).)
def shard(n: int, rank: int, world: int) -> slice:
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


# ## One training step
#
# `DistributedDataParallel` *averages* the gradients of the $R$ processes. If each process
# minimised the mean loss over its own share, shares of unequal size would be weighted
# equally, not their examples. So process $q$ minimises
# $$\ell_q = \frac{R}{n} \sum_{i \in \text{share } q} \ell_i$$
# for a global batch of $n$ examples; the average over processes is then
# $\frac{1}{R}\sum_q \nabla \ell_q = \nabla \frac{1}{n}\sum_i \ell_i$, the gradient of the mean
# loss over the global batch, exactly as in one process.
def train_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, global_size: int, world: int):
    """
    One optimiser step on this process's share `x`, `y` of a global batch of `global_size`.
    Returns the logits and the summed cross-entropy of the share (detached).
    """
    logits = model(x)
    # $\sum_{i \in \text{share } q} \ell_i$
    total = F.cross_entropy(logits, y, reduction='sum')
    # $\ell_q = \frac{R}{n} \sum_{i \in \text{share } q} \ell_i$
    loss = total * (world / global_size)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits.detach(), total.detach()


# ## Training and evaluation
#
# Every process runs the same loop; only process 0 shows progress. The loss and accuracy of
# an epoch are summed on each process and added up across processes at the end.
#
# A non-finite loss stops the run, as in the single-process experiments, and on every process
# at the same step: a process that stopped alone would leave the others waiting for it in the
# next collective. Each process keeps the first step at which its own share's loss was not
# finite, and the processes agree on the earliest with an all-reduce. On a CPU that costs
# nothing worth saving and is done every step; on a GPU it would make the CPU wait for the GPU
# every step, so it is done every 100 steps and at the end of the epoch, and the flag kept on
# the device still names the first bad step.
def train_epoch(model, optimizer, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                generator: torch.Generator, rank: int, world: int, progress: bool = False,
                first_step: int = 0):
    """
    One epoch of training steps; `first_step` is the number of steps done before it, so that
    a divergence is reported with the step number counted across epochs.
    """
    model.train()
    # The last, incomplete global batch is dropped, as in the single-process experiment
    steps = len(y) // batch_size
    batches = data.batches(x, y, batch_size, generator=generator, drop_last=True)
    # The progress bar runs over the step numbers, as in the shared trainer
    counter = monit.iterate('Train', range(steps)) if progress else range(steps)
    # Summed loss, number correct and number of examples of this process
    sums = torch.zeros(3, dtype=torch.float64, device=x.device)
    # The first step with a non-finite loss on this process ($\infty$: none yet) and that loss
    bad_step = torch.full((), math.inf, dtype=torch.float64, device=x.device)
    bad_loss = torch.zeros((), dtype=torch.float64, device=x.device)
    check_every = 1 if x.device.type == 'cpu' else 100
    for done, (_, (xb, yb)) in enumerate(zip(counter, batches), start=1):
        share = shard(len(yb), rank, world)
        logits, total = train_step(model, optimizer, xb[share], yb[share], len(yb), world)
        first = (bad_step == math.inf) & ~torch.isfinite(total)
        bad_step = torch.where(first, float(first_step + done), bad_step)
        bad_loss = torch.where(first, total.double(), bad_loss)
        if done % check_every == 0 or done == steps:
            stop_if_diverged(bad_step, bad_loss, optimizer)
        sums[0] += total
        sums[1] += (logits.argmax(dim=1) == yb[share]).sum()
        sums[2] += len(yb[share])
    dist.all_reduce(sums)
    return (sums[0] / sums[2]).item(), (sums[1] / sums[2]).item()


def stop_if_diverged(bad_step: torch.Tensor, bad_loss: torch.Tensor, optimizer):
    """Raises `DivergenceError` on every process if any process has seen a non-finite loss."""
    step = bad_step.reshape(1).clone()
    dist.all_reduce(step, op=dist.ReduceOp.MIN)
    if step.item() == math.inf:
        return
    # The loss at that step, on the processes that saw it (the others add nothing)
    loss = torch.where(bad_step == step, bad_loss, 0.)
    dist.all_reduce(loss)
    raise trainer.DivergenceError(int(step.item()), loss.item(),
                                  optimizer.param_groups[0]['lr'])


# Evaluation uses the population statistics, so the processes need not talk while they
# evaluate: each takes a share of the test set and only the sums are added up at the end.
# `model` is the module inside `DistributedDataParallel`, whose forward pass would otherwise
# broadcast buffers.
#
# Without syncing, every process has updated its moving averages from its own shares since
# `DistributedDataParallel` last broadcast rank 0's, before the last step. We broadcast them
# once more, so that all processes evaluate the same network: rank 0's, which is the one
# `DistributedDataParallel` treats as the reference. With syncing they are already equal.
@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, rank: int, world: int,
             batch_size: int = 1000):
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
    model.eval()
    share = shard(len(y), rank, world)
    sums = torch.zeros(3, dtype=torch.float64, device=x.device)
    for xb, yb in data.batches(x[share], y[share], batch_size):
        logits = model(xb)
        sums[0] += F.cross_entropy(logits, yb, reduction='sum')
        sums[1] += (logits.argmax(dim=1) == yb).sum()
        sums[2] += len(yb)
    dist.all_reduce(sums)
    return (sums[0] / sums[2]).item(), (sums[1] / sums[2]).item()


# ## The training run
#
# The seed is set before the model is built, so every process starts from the same weights
# (`DistributedDataParallel` also copies rank 0's weights to the others when it wraps the
# model), and the batch generator has the same seed everywhere, so the processes agree on every
# global batch without exchanging indices.
def train(conf: Config, rank: int, world: int, device: torch.device, tensors: data.DeviceData,
          dataset: str) -> Result:
    train_x, train_y = tensors.train_x, tensors.train_y
    generator = trainer.seed_everything(conf.seed)
    model = Model(batch_norm=True).to(device)
    if conf.sync:
        model = convert_sync_batch_norm(model)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)
    optimizer = trainer.make_optimizer(conf.optimizer, ddp.parameters(), conf.learning_rate)

    result = Result(dataset=dataset, device=str(device))
    start = time.perf_counter()
    # Progress on a terminal, as the shared trainer shows it; elsewhere one line per epoch
    terminal = rank == 0 and trainer.is_terminal()
    epochs = monit.loop(conf.epochs) if terminal else range(conf.epochs)
    steps = len(train_y) // conf.batch_size
    for epoch in epochs:
        train_loss, train_acc = train_epoch(ddp, optimizer, train_x, train_y, conf.batch_size,
                                            generator, rank, world, progress=terminal,
                                            first_step=epoch * steps)
        test_loss, test_acc = evaluate(model, tensors.test_x, tensors.test_y, rank, world)
        metrics = {'loss.train': train_loss, 'accuracy.train': train_acc,
                   'loss.test': test_loss, 'accuracy.test': test_acc}
        result.history.append(metrics)
        if rank == 0:
            tracker.save(metrics)
            if not terminal:
                logger.log(f'epoch {epoch + 1}/{conf.epochs}: ' +
                           '  '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
    result.seconds = time.perf_counter() - start
    return result


# ## Processes, devices and data
#
# `torchrun` passes each process its rank, the number of processes and its rank on this
# machine in environment variables, and the address of rank 0 for the rendezvous.
class SetupError(ValueError):
    """A choice on the command line that cannot work on this machine, or missing data."""


def pick_device(name: str, local_rank: int, local_world: int) -> torch.device:
    gpus = torch.cuda.device_count()
    if name == 'auto':
        name = 'cuda' if gpus >= local_world else 'cpu'
    if name == 'cuda':
        if gpus < local_world:
            raise SetupError(f'--device cuda needs one GPU per process: {local_world} processes '
                               f'on this machine, {gpus} GPUs found; use --device cpu')
        return torch.device('cuda', local_rank)
    return torch.device('cpu')


# Process 0 reads the data (downloading full MNIST when it is missing and allowed) and sends
# it to the others, so that every process has the very same images, whichever source process
# 0 ended up with. It also checks that it can store the labml run. If either fails, all
# processes stop with its error, rather than the others waiting for it in a collective.
def load_data(conf: Config, rank: int, device: torch.device):
    outcome = [None]
    if rank == 0:
        try:
            dataset, how = data.load_dataset(conf.dataset, conf.data_dir, download_ok=conf.download,
                                             seed=conf.seed)
            cli.check_writable(cli.logs_folder(conf.logs_dir),
                               'pass --logs-dir with a writable folder')
            outcome = [(dataset, how)]
        except (ValueError, OSError) as e:
            outcome = [str(e)]
    dist.broadcast_object_list(outcome, src=0)
    if isinstance(outcome[0], str):
        raise SetupError(outcome[0])
    dataset, how = outcome[0]
    tensors = data.DeviceData(dataset, device)
    # The same seeded subset on every process, checked against the batch size on every process
    tensors.train_x, tensors.train_y = cli.limit_training_data(
        tensors.train_x, tensors.train_y, conf.train_limit, conf.seed)
    cli.check_batch_size(conf.batch_size, len(tensors.train_y))
    return tensors, str(dataset), how


def run(conf: Config) -> Optional[Result]:
    """Trains in this process, one of `WORLD_SIZE` started by `torchrun`."""
    rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    local_world = int(os.environ.get('LOCAL_WORLD_SIZE', world))
    device = pick_device(conf.device, local_rank, local_world)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    conf.backend = 'nccl' if device.type == 'cuda' else 'gloo'
    conf.world_size = world
    dist.init_process_group(conf.backend, timeout=timedelta(minutes=5))
    processes = None
    try:
        processes = describe_processes(rank, world)
        return train_and_report(conf, rank, world, device)
    except Exception as e:
        if not lost_contact(e):
            raise
        raise LostProcess(lost_contact_message(e, rank, processes)) from None
    finally:
        dist.destroy_process_group()


def train_and_report(conf: Config, rank: int, world: int,
                     device: torch.device) -> Optional[Result]:
    """The run itself: data, training, and, on process 0, the labml run and the report."""
    tensors, description, how = load_data(conf, rank, device)
    if rank != 0:
        return train(conf, rank, world, device, tensors, description)
    name = 'mnist_ddp_sync' if conf.sync else 'mnist_ddp_no_sync'
    with cli.labml_run(name, asdict(conf), logs_dir=conf.logs_dir):
        logger.log([('Data: ', Text.key), (description, Text.value)])
        logger.log([('       ', Text.key), (how, Text.meta)])
        logger.log([('Processes: ', Text.key),
                    (f'{world} on {device.type} ({conf.backend})', Text.value)])
        result = train(conf, rank, world, device, tensors, description)
    per_process = conf.batch_size / world
    logger.log([('Final test accuracy: ', Text.key),
                (f'{result.test_accuracy:.2%}', Text.success),
                (f' after {conf.epochs} epochs in {result.seconds:.1f}s, {world} processes '
                 f'on {device.type} ({conf.backend}), global batch {conf.batch_size} '
                 f'({per_process:g} per process), batch norm '
                 f'{"synchronised" if conf.sync else "per process"}', Text.meta)])
    return result


# ## When a process goes away
#
# A process that dies (killed, out of memory, a crash) leaves the others at their next
# collective, which fails with the communication library's error; gloo's names a network
# address, not a rank. To say which rank went away, the processes tell each other at the start
# who they are: their process id and start time, and which process table the id belongs to
# (the kernel's boot id and the pid namespace, so that a process in another container or on
# another machine is never looked up here). A survivor then looks the others up, and names
# those whose process has stopped. What it cannot do reliably:
#
# * look up a process in another process table (another machine, another container); then
#   the message says so, and torchrun's summary names the rank that failed first;
# * tell the first process that went away from those that stopped after it, because they too
#   had lost contact; with two processes there are none such.
#
# torchrun, for its part, stops the survivors (with `SIGTERM`) as soon as it sees a process
# fail, often before they reach their next collective: they then end without a word, and
# torchrun's own summary, which follows, names the failed rank ("Root Cause").
class LostProcess(ConnectionError):
    """Another process of the group went away; the message names it where it can."""


def describe_processes(rank: int, world: int) -> List[Tuple]:
    """`(process table, pid, start time)` of every process, in rank order."""
    processes = [None] * world
    dist.all_gather_object(processes, _this_process())
    return processes


def lost_contact(e: BaseException) -> bool:
    """Whether `e` is a collective failing because another process went away or hung."""
    if isinstance(e, dist.DistError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(
        sign in text for sign in ('gloo/transport', 'Connection reset by peer',
                                  'Connection closed by peer', 'Broken pipe'))


def lost_contact_message(e: BaseException, rank: int, processes) -> str:
    # The first sentence of the library's message, without its source file and line
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    reason = re.sub(r'^\[[^\]]*\]\s*', '', first_line).split('. ')[0]
    if processes is None:
        return f'rank {rank} lost contact with the other processes as they started ({reason})'
    table = processes[rank][0]
    others = [r for r in range(len(processes)) if r != rank]
    here = [r for r in others if table is not None and processes[r][0] == table]
    # A process that was killed may still be ending when its connections close
    deadline = time.monotonic() + 1
    while True:
        gone = [r for r in here if _stopped(*processes[r][1:])]
        if gone or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if gone:
        names = ' and '.join(str(r) for r in gone)
        which = (f'rank {names}, whose process has' if len(gone) == 1 else
                 f'ranks {names}, whose processes have')
        return (f'rank {rank} lost contact with {which} stopped (killed, or ended by an '
                f'error of its own); this process stops too')
    if len(here) < len(others):
        return (f'rank {rank} lost contact with another process ({reason}); processes on '
                f'other machines cannot be looked up from here: torchrun\'s summary names '
                f'the rank that failed')
    return (f'rank {rank} lost contact with another process, though every other process '
            f'still runs ({reason}): a network failure, or a process that stopped responding')


def _this_process() -> Tuple:
    pid = os.getpid()
    try:
        boot = Path('/proc/sys/kernel/random/boot_id').read_text().strip()
        table = (boot, os.readlink('/proc/self/ns/pid'))
        return table, pid, _process_status(pid)[1]
    except (OSError, TypeError):
        # Not Linux: the others cannot be looked up
        return None, pid, None


def _process_status(pid: int) -> Optional[Tuple[str, str]]:
    """The state letter and start time of process `pid`, or `None` when there is none."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    # The fields after the command name, which is in parentheses and may hold spaces
    fields = stat[stat.rindex(')') + 2:].split()
    return fields[0], fields[19]


def _stopped(pid: int, start: str) -> bool:
    status = _process_status(pid)
    # Gone, a zombie waiting to be reaped, or the id reused by a newer process
    return status is None or status[0] in 'ZXx' or status[1] != start


# ## Command line
#
# The options of the single-process experiment, through the shared trainer's helpers, plus
# `--sync`; `--batch-size` is the global batch. Checks that need the number of processes
# come after those of the trainer.
def parse_args(argv=None, world: Optional[int] = None) -> Dict:
    """The settings from the command line; `world` is the number of processes, when known."""
    parser = cli.make_parser(PROG, 'Train the MNIST CNN with DistributedDataParallel, with '
                                       'or without synchronised batch norm.')
    defaults = Config()
    parser.add_argument('--sync', action=argparse.BooleanOptionalAction, default=defaults.sync,
                        help='synchronise batch norm statistics across processes '
                             '(--no-sync: each process its own)')
    cli.add_training_arguments(parser, epochs=defaults.epochs, batch_size=defaults.batch_size,
                               lr=defaults.learning_rate, optimizer=defaults.optimizer,
                               seed=defaults.seed)
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default=defaults.device,
                        help="'auto': one GPU per process if there are enough, else the CPU")
    cli.add_data_arguments(parser, defaults.dataset)
    cli.add_logs_argument(parser)
    args = parser.parse_args(argv)
    cli.check_arguments(parser, argparse.Namespace(**{**vars(args), 'device': None}))

    if args.dataset == 'idx' and args.data_dir is None:
        parser.error('argument --dataset: idx needs --data-dir, the folder of IDX files')
    if world is None:
        parser.error('expected to be started by torchrun (RANK and WORLD_SIZE are not set): '
                     'torchrun --nproc_per_node 2 -m labml_nn_bn.experiments.mnist_ddp')
    # Every process needs at least one image of each batch; without syncing, each batch norm
    # needs 2 images per process, and the smallest share has `batch_size // world`.
    least = max(2, world) if args.sync else 2 * world
    if args.batch_size < least:
        parser.error(f'argument --batch-size: expected at least {least} for {world} processes '
                     f'{"with" if args.sync else "without"} sync, got {args.batch_size}')
    return vars(args)


def main(argv=None) -> Optional[Result]:
    """The command line: errors a user can meet end in one line, printed by process 0."""
    world = int(os.environ['WORLD_SIZE']) if 'RANK' in os.environ and 'WORLD_SIZE' in os.environ \
        else None
    if int(os.environ.get('RANK', 0)) == 0:
        conf = Config(**parse_args(argv, world))
    else:
        # Every process reads the same command line and configuration: only process 0 says
        # what is wrong with them, the others exit with the same status
        with contextlib.redirect_stderr(io.StringIO()):
            conf = Config(**parse_args(argv, world))
    if int(os.environ.get('RANK', 0)) != 0:
        # The others stop quietly with the same status, except when they lost contact with
        # another process: that may be process 0, so each survivor says whom it lost
        try:
            return run(conf)
        except LostProcess as e:
            print(f'{PROG}: error: {e}', file=sys.stderr, flush=True)
            sys.exit(1)
        except (ValueError, cli.LogsError, trainer.DivergenceError):
            sys.exit(1)
    return cli.run_main(lambda: run(conf), PROG)


if __name__ == '__main__':
    main()
