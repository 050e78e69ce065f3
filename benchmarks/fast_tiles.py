"""
Tile shapes for `FastBatchNorm`'s kernels on a GPU: the forward and the backward time of the
kernels for each choice of values per tile, programs per multiprocessor and warps per
program, on a few of the issue's inputs. `_Layout`'s choices in
`labml_nn_bn/fast_batch_norm.py` are read off this sweep.

Triton compiles the kernels again for every tile shape and warp count, so a sweep spends most
of its time compiling; `--seconds` stops it (after the input in progress) and keeps what it
measured.

    python benchmarks/fast_tiles.py --out OUT_DIR       # CUDA and Triton only

Writes `fast_tiles-<device kind>.json` (atomically) and prints, for every input, the fastest
choices and where the default stands.
"""
import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labml_nn_bn import fast_batch_norm as fbn  # noqa: E402
from labml_nn_bn.figure_tools import (describe_device, save_values, stamp,  # noqa: E402
                                      today)

sys.path.insert(0, str(ROOT / 'benchmarks'))
import cli_checks  # noqa: E402
from bn_speed import DTYPES, RESULTS, _commit, device_kind, input_key  # noqa: E402

INPUTS = [((256, 64, 56, 56), 'fp32', False), ((256, 64, 56, 56), 'bf16', True),
          ((128, 256, 14, 14), 'fp32', False), ((4096, 512), 'fp32', False),
          ((64, 20, 24, 24), 'fp32', False)]
TILES = (1024, 2048, 4096, 8192)
PER_SM = (2, 4, 8, 16)
WARPS = (4, 8)


def cuda_ms(fn, iters: int = 10) -> float:
    """Median of `iters` single calls timed with CUDA events, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def sweep_input(shape, dtype: str, channels_last: bool, multiprocessors: int):
    torch.manual_seed(0)
    x = torch.randn(shape, device='cuda').to(DTYPES[dtype])
    grad = torch.randn(shape, device='cuda').to(DTYPES[dtype])
    if channels_last:
        x, grad = (t.contiguous(memory_format=torch.channels_last) for t in (x, grad))
    channels = shape[1]
    weight = torch.rand(channels, device='cuda') + 0.5
    bias = torch.randn(channels, device='cuda')
    rows = []
    default = fbn._layout(x)
    for tile, per_sm, warps in itertools.product(TILES, PER_SM, WARPS):
        tuning = dict(tile=tile, programs=per_sm * multiprocessors, warps=warps)
        layout = fbn._layout(x, tuning)
        _, saved, _, _ = fbn.batch_norm_forward(x, weight, bias, 1e-5, **tuning)
        forward = cuda_ms(lambda: fbn.batch_norm_forward(x, weight, bias, 1e-5, **tuning))
        backward = cuda_ms(lambda: fbn.batch_norm_backward(grad, *saved, torch.float32,
                                                           torch.float32, **tuning))
        rows.append({'tile': tile, 'per_sm': per_sm, 'warps': warps,
                     'block_c': layout.block_c, 'block_s': layout.block_s,
                     'grid': list(layout.grid), 'forward_ms': forward, 'backward_ms': backward,
                     'total_ms': forward + backward,
                     'default': (layout.block_c, layout.block_s, layout.grid, layout.warps) ==
                                (default.block_c, default.block_s, default.grid, default.warps)})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=cli_checks.HelpFormatter)
    parser.add_argument('--seconds', type=float, default=150.,
                        help='stop starting new inputs after this many seconds')
    parser.add_argument('--out', default=None,
                        help='folder for the JSON; when not given benchmarks/results')
    args = parser.parse_args(argv)
    if not (torch.cuda.is_available() and fbn.triton is not None):
        parser.exit(2, f'{parser.prog}: error: needs a CUDA device and Triton\n')
    out = cli_checks.writable_folder(parser, '--out', args.out or RESULTS)
    device = torch.device('cuda')
    multiprocessors = fbn._multiprocessors(torch.cuda.current_device())
    start = time.time()
    values = {}
    for shape, dtype, channels_last in INPUTS:
        if time.time() - start > args.seconds:
            print(f'stopped after {time.time() - start:.0f} s')
            break
        key = input_key(shape, dtype, channels_last)
        rows = sweep_input(shape, dtype, channels_last, multiprocessors)
        values[key] = rows
        best = sorted(rows, key=lambda r: r['total_ms'])[:3]
        default = [r for r in rows if r['default']]
        print(f'{key}: best ' + '; '.join(
            f"tile {r['tile']} ×{r['per_sm']}/SM {r['warps']}w: {r['forward_ms']:.3f}+"
            f"{r['backward_ms']:.3f} ms" for r in best) +
            (f"  | default {default[0]['forward_ms']:.3f}+{default[0]['backward_ms']:.3f} ms"
             if default else ''), flush=True)
        print(f'  best forward {min(r["forward_ms"] for r in rows):.3f} ms, best backward '
              f'{min(r["backward_ms"] for r in rows):.3f} ms', flush=True)
    meta = {'device': describe_device(device), 'kind': device_kind(device),
            'torch': torch.__version__, 'triton': fbn.triton.__version__, 'date': today(),
            'seconds': time.time() - start, 'commit': _commit()}
    path = save_values(out / f'fast_tiles-{device_kind(device)}.json', dict(values, meta=meta),
                       stamp('random N(0,1) inputs', 'median of 10 calls per choice',
                             meta['device']))
    print(f'wrote {path}')


if __name__ == '__main__':
    import cli_checks
    cli_checks.run(main)
