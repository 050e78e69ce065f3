"""
The tools every figure is made with: a stamp saying where its data came from, a
self-contained SVG, the measured values beside it as JSON, and a write that never leaves half a
file behind.

The experiments, the benchmarks and the measured quotes (`labml_nn_bn.measured`) use these;
the runner that remakes every figure (`python -m labml_nn_bn.figures`, what `make figures`
runs) sits on top of them. This module imports nothing else of the package, so that imports run
one way.

* `save_svg` saves a Matplotlib figure as an SVG with its text drawn as paths (no fonts, no
  requests to other hosts) and stable ids, so that an unchanged figure gives an unchanged file,
  stamped with `stamp(data set, steps, describe_device(device))` when a run made its data, with
  `computed_stamp(what computed it, describe_device(device))` when a small computation did, and
  with nothing when it is a diagram (a stamp there would name a run that never happened);
* `save_values` keeps the measured values a figure's text quotes in a JSON file beside it
  (`docs/figures/<name>.json`, see `labml_nn_bn.measured`);
* `save_figure` does both for a figure drawn from the values it quotes: the experiments'
  `make_figures` write every figure of a run this way;
* `write_atomically` writes through a temporary file in the same folder and renames it into
  place.
"""
import datetime
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch


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
    """The line printed under a figure of a training run: where its data came from."""
    return f'{dataset} · {steps} · {device} · {date or today()}'


def computed_stamp(computation: str, device: str, date: Optional[str] = None) -> str:
    """The line printed under a figure whose numbers a small computation gave, not a run."""
    return f'computed by {computation} · {device} · {date or today()}'


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


def save_svg(fig, path: Path, stamp_text: Optional[str]) -> Path:
    """Saves `fig` as a self-contained SVG at `path`, stamped unless `stamp_text` is `None`
    (a diagram), and closes it."""
    import io
    plt = pyplot()
    if stamp_text is not None:
        fig.text(0.005, 0.005, stamp_text, fontsize=6.5, color='#777777', ha='left',
                 va='bottom')
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


def save_figure(out_dir: Path, name: str, draw: Callable, values: Dict,
                stamp_text: str) -> List[Path]:
    """
    `name.svg`, drawn by `draw(values, pyplot())`, and `name.json` with `values`, both
    stamped with `stamp_text`, in `out_dir`; returns their paths, the SVG first. One
    call, so that a figure and the numbers its page quotes are always written together,
    from the same values and with the same stamp.
    """
    out_dir = Path(out_dir)
    svg = save_svg(draw(values, pyplot()), out_dir / f'{name}.svg', stamp_text)
    return [svg, save_values(out_dir / f'{name}.json', values, stamp_text)]
