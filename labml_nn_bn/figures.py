"""
The site's figures: one command that regenerates them all.

Every figure on the site is an SVG under `docs/figures/`, drawn by the code that produced its
data with the tools of `labml_nn_bn.figure_tools` (stamped, self-contained SVGs and the
measured values beside them as JSON). This module runs every figure maker:
`python -m labml_nn_bn.figures` (what `make figures` runs) writes into `docs/figures/` and then
brings every measured quote of the text in line with the new measurements
(`labml_nn_bn.measured`); `--smoke` is a seconds-long run that writes into
`test-output/figures-smoke/` and changes no quote.

A figure maker is a module with `make_figures(out_dir: Path, smoke: bool) -> List[Path]`,
listed in `MAKERS`. Imports run one way: this runner imports the makers, the figure tools and
the quotes; none of them imports it.
"""
import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

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


def make_all(out_dir: Path, smoke: bool, only: Optional[List[str]] = None,
             written: Optional[List[Path]] = None) -> List[Path]:
    """Runs the makers; the files each one wrote are appended to `written` as it finishes, so
    that a caller interrupted halfway knows which figures are new."""
    written = [] if written is None else written
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
    from labml_nn_bn.experiments import cli
    try:
        # Before the runs, which take hours without --smoke
        cli.check_output_folder(out, '--out')
    except cli.UsageError as e:
        parser.error(str(e))
    written = []
    try:
        make_all(out, args.smoke, args.only, written)
    except OSError as e:
        sys.stdout.flush()
        parser.exit(1, f'{parser.prog}: error: {cli.describe_error(e)}\n')
    except KeyboardInterrupt:
        if os.environ.get('LABML_NN_BN_TRACEBACK') == '1':
            raise
        sys.stdout.flush()
        # Each figure is written atomically when its maker finishes: the finished ones are
        # new, the others as they were; the quotes are not touched
        kept = (f'{len(written)} files of the finished figures were rewritten, the quotes were '
                f'not updated' if written else 'nothing was written')
        parser.exit(130, f'\n{parser.prog}: interrupted; {kept}\n')
    if not args.smoke and out.resolve() == FIGURES_DIR.resolve():
        # The text quotes measured values: bring every quote in line with the new measurements
        from labml_nn_bn import measured
        for path in measured.update_quotes(FIGURES_DIR, root=ROOT):
            print(f'updated quotes in {path.relative_to(ROOT)}')
    return written


if __name__ == '__main__':
    main(sys.argv[1:])
