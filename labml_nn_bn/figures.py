"""
The site's figures: one place that saves them and one command that regenerates them all.

Every figure on the site is an SVG under `docs/figures/`, drawn by the code that produced its
data. This module

* saves a Matplotlib figure as a self-contained SVG (text drawn as paths, no fonts or requests
  to other hosts, stable ids so that an unchanged figure gives an unchanged file), stamped with
  the data set, the number of steps, the device and the date it came from;
* keeps the measured values a figure's text quotes in a JSON file beside it
  (`docs/figures/<name>.json`, see `labml_nn_bn.measured`);
* runs every figure maker: `python -m labml_nn_bn.figures` (what `make figures` runs), or
  `--smoke` for a seconds-long run that writes into `test-output/figures-smoke/`.

A figure maker is a module with `make_figures(out_dir: Path, smoke: bool) -> List[Path]`,
listed in `MAKERS`.
"""
import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parent.parent
# Where `make figures` writes the committed figures, and where a smoke run writes by default
FIGURES_DIR = ROOT / 'docs' / 'figures'
SMOKE_DIR = ROOT / 'test-output' / 'figures-smoke'

# Figure makers, by name; `make_figures` returns the files each one wrote
MAKERS: Dict[str, str] = {
    'batch_norm_pictures': 'labml_nn_bn.batch_norm_pictures',
    'mnist': 'labml_nn_bn.experiments.mnist',
    'covariate_shift': 'labml_nn_bn.experiments.covariate_shift',
    'detached_mean': 'labml_nn_bn.experiments.detached_mean',
    'variance_identity': 'labml_nn_bn.experiments.variance_identity',
    'population_statistics': 'labml_nn_bn.experiments.population_statistics',
    'learning_rate': 'labml_nn_bn.experiments.learning_rate',
    'regularisation': 'labml_nn_bn.experiments.regularisation',
    'internal_covariate_shift': 'labml_nn_bn.experiments.internal_covariate_shift',
}


def describe_device(device=None) -> str:
    """`'NVIDIA H100 80GB HBM3, torch 2.11.0'` or `'CPU: AMD EPYC 7B13 (2 cores), torch 2.13.0'`."""
    device = torch.device(device or 'cpu')
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
    else:
        name = f'CPU: {_cpu_name()} ({os.cpu_count()} cores)'
    return f'{name}, torch {torch.__version__.split("+")[0]}'


def _cpu_name() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return ' '.join(line.split(':', 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown'


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')


def stamp(dataset: str, steps: str, device: str, date: Optional[str] = None) -> str:
    """The line printed under every figure: where its data came from."""
    return f'{dataset} · {steps} · {device} · {date or today()}'


def pyplot():
    """Matplotlib's pyplot without a display, set up for self-contained, reproducible SVGs."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    # Glyphs as paths: the SVG needs no font on the reader's machine
    matplotlib.rcParams['svg.fonttype'] = 'path'
    # Fixed ids, so regenerating an unchanged figure gives the same file
    matplotlib.rcParams['svg.hashsalt'] = 'labml_nn_bn'
    return plt


def write_atomically(path: Path, data: bytes):
    """Writes `data` to `path` through a temporary file in the same folder, so that a failure
    never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        # mkstemp makes the file private (0600); an output is an ordinary file, readable as
        # the umask allows, the same as open() would create it
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    # The only way to read the umask is to set it; set it straight back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_svg(fig, path: Path, stamp_text: str) -> Path:
    """Saves `fig` as a stamped, self-contained SVG at `path` and closes it."""
    import io
    plt = pyplot()
    fig.text(0.005, 0.005, stamp_text, fontsize=6.5, color='#777777', ha='left', va='bottom')
    buffer = io.BytesIO()
    # No creation date in the metadata: the stamp says when the data was made
    fig.savefig(buffer, format='svg', bbox_inches='tight', metadata={'Date': None})
    plt.close(fig)
    write_atomically(Path(path), buffer.getvalue())
    return Path(path)


def save_values(path: Path, values: Dict, stamp_text: str) -> Path:
    """Saves the measured values behind a figure (what the text may quote) as JSON."""
    # `allow_nan=False`: a run that diverged must fail here, not be quoted as "nan%" later
    text = json.dumps({'stamp': stamp_text, 'values': values}, indent=2, sort_keys=True,
                      allow_nan=False) + '\n'
    write_atomically(Path(path), text.encode('utf-8'))
    return Path(path)


def make_all(out_dir: Path, smoke: bool, only: Optional[List[str]] = None) -> List[Path]:
    written = []
    for name, module in MAKERS.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        paths = importlib.import_module(module).make_figures(Path(out_dir), smoke)
        print(f'{name}: {", ".join(p.name for p in paths)} ({time.perf_counter() - start:.1f} s)')
        written += paths
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m labml_nn_bn.figures',
        description="Regenerate the site's figures from the experiments.")
    parser.add_argument('--smoke', action='store_true',
                        help='tiny runs, seconds in all, written to test-output/figures-smoke/ '
                             '(default: off, the full runs)')
    parser.add_argument('--out', default=None,
                        help=f'output folder (default: docs/figures, or {SMOKE_DIR.relative_to(ROOT)} '
                             f'with --smoke)')
    parser.add_argument('--only', nargs='+', choices=sorted(MAKERS), default=None,
                        help='make only these figures (default: all)')
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else (SMOKE_DIR if args.smoke else FIGURES_DIR)
    from labml_nn_bn.experiments import trainer
    try:
        # Before the runs, which take hours without --smoke
        trainer.check_output_folder(out, '--out')
    except trainer.UsageError as e:
        parser.error(str(e))
    try:
        written = make_all(out, args.smoke, args.only)
    except OSError as e:
        sys.stdout.flush()
        parser.exit(1, f'{parser.prog}: error: {trainer.describe_error(e)}\n')
    if not args.smoke and out.resolve() == FIGURES_DIR.resolve():
        # The text quotes measured values: bring every quote in line with the new measurements
        from labml_nn_bn import measured
        for path in measured.update_quotes(FIGURES_DIR):
            print(f'updated quotes in {path.relative_to(ROOT)}')
    return written


if __name__ == '__main__':
    main(sys.argv[1:])
