"""
Checks of the benchmarks' command lines, made before anything is measured: every bad input ends
in one `parser.error` line (exit 2) that names the option, what was expected and what was given.
"""
import argparse
import os
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# Where a `--smoke` run writes when `--out` is not given: never benchmarks/results/ or docs/figures/
SMOKE_OUT = ROOT / 'test-output' / 'bench-smoke'


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: options whose default is `None` (computed at run time) say in
    their own help what they default to, so that `(default: None)` is not added."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def device(parser: argparse.ArgumentParser, value, option: str = '--device') -> torch.device:
    """`value` as a `torch.device` ('auto' or `None`: cuda when available), which must be a CPU or
    an available CUDA device."""
    if value in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        d = torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        parser.error(f'{option}: expected cpu or cuda, got {value!r}')
    if d.type not in ('cpu', 'cuda'):
        parser.error(f'{option}: expected cpu or cuda, got {value!r}')
    if d.type == 'cuda':
        if not torch.cuda.is_available():
            parser.error(f'{option}: expected a device this machine has, got {value!r} '
                         f'but no CUDA device is available')
        if d.index is not None and d.index >= torch.cuda.device_count():
            parser.error(f'{option}: expected a CUDA index below {torch.cuda.device_count()}, '
                         f'got {value!r}')
    return d


def at_least(parser: argparse.ArgumentParser, option: str, value, minimum=1):
    """`value` (when given) must be at least `minimum`."""
    if value is not None and value < minimum:
        parser.error(f'{option}: expected an integer >= {minimum}, got {value}')
    return value


def writable_folder(parser: argparse.ArgumentParser, option: str, path) -> Path:
    """Makes sure `path` is (or can be made) a folder this process can write files into; creates
    it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        parser.error(f'{option}: expected a folder, got the file {path}')
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        parser.error(f'{option}: expected a folder that can be written, got {path} '
                     f'({e.strerror or e})')
    return path


def names_folder(path) -> bool:
    """Whether `path` is a folder: one that exists, or one named with a trailing slash (`out/`),
    which `Path` would silently drop and a shell user means as a folder."""
    return str(path).endswith(('/', os.sep)) or Path(path).is_dir()


def writable_file(parser: argparse.ArgumentParser, option: str, path) -> Path:
    """Makes sure a file can be written (atomically) at `path`: not a folder, in a folder this
    process can write into (created when missing)."""
    if names_folder(path):
        parser.error(f'{option}: expected a file path, got the folder {path}')
    path = Path(path)
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        parser.error(f'{option}: expected a file path in a folder, got {path} '
                     f'({folder} is a file)')
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        parser.error(f'{option}: expected a file path that can be written, got {path} '
                     f'({e.strerror or e})')
    return path


# Where the committed measurements live: a `--smoke` run's numbers must never land there
COMMITTED = (ROOT / 'benchmarks' / 'results', ROOT / 'docs' / 'figures')


def not_committed(parser: argparse.ArgumentParser, option: str, path) -> None:
    """A `--smoke` run may not write `path` if it is in (or is) a folder of committed results."""
    resolved = Path(path).resolve()
    for folder in COMMITTED:
        if resolved == folder or folder in resolved.parents:
            parser.error(f'{option}: expected a path outside {folder.relative_to(ROOT)}/ with '
                         f'--smoke (smoke numbers are not results), got {path}')


def output_folder(parser: argparse.ArgumentParser, args, results: Path) -> Path:
    """
    The folder a benchmark with `--out`, `--smoke` and `--figures` writes its JSON into, checked
    (and made) before measuring, so that a bad path fails in a second, not after the run. A smoke
    run never writes committed results: it defaults to `SMOKE_OUT` and may not name them.
    """
    if args.smoke and args.figures:
        parser.error('--figures: expected a full run, got --smoke (a smoke run never writes '
                     'docs/figures/)')
    if args.smoke and args.out is not None:
        not_committed(parser, '--out', args.out)
    out = writable_folder(parser, '--out', args.out if args.out is not None else
                          (SMOKE_OUT if args.smoke else results))
    if args.figures:
        writable_folder(parser, '--figures', ROOT / 'docs' / 'figures')
    return out


def run(main, *args):
    """Runs a benchmark's `main`; Ctrl-C ends it with one line and exit 130 (as a shell reports
    a process ended by SIGINT) instead of a traceback. Results are written atomically once
    measured, so an interrupted benchmark has written nothing."""
    import sys
    try:
        return main(*args)
    except KeyboardInterrupt:
        if os.environ.get('LABML_NN_BN_TRACEBACK') == '1':
            raise
        sys.stdout.flush()
        prog = Path(sys.argv[0]).name or 'benchmark'
        print(f'\n{prog}: interrupted; nothing was written', file=sys.stderr, flush=True)
        sys.exit(130)
