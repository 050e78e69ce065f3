"""
Inference speed-up from folding batch norms into the layers before them (`fold_batch_norm`),
on the MNIST CNN in evaluation mode: our `BatchNorm`, `torch.nn.BatchNorm*d`, and the folded
network, timed in the same run on the CPU and, when there is one, on the GPU.

Not a test: timings depend on the machine. Each setting is timed `--repeats` times, in turn
with the others (so that a change in the machine's load hits all of them alike), and the
median is kept. Writes `benchmarks/results/fold_speed-<device>.json` (with `--smoke`, by default
`test-output/bench-smoke/`).

    .venv/bin/python benchmarks/fold_speed.py
    .venv/bin/python benchmarks/fold_speed.py --device cuda --batch-size 1000 --repeats 50
"""
import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from labml_nn_bn import fold_batch_norm
from labml_nn_bn.figure_tools import describe_device, write_atomically
from labml_nn_bn.experiments.mnist import Model

RESULTS = Path(__file__).resolve().parent / 'results'

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cli_checks  # noqa: E402


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_once(model, x, device, calls: int) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        model(x)
    synchronize(device)
    return (time.perf_counter() - start) / calls


@torch.no_grad()
def measure(device: torch.device, batch_size: int, repeats: int, calls: int, threads: int):
    if device.type == 'cpu' and threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(batch_size, 1, 28, 28, device=device)
    models = {}
    for impl in ('ours', 'torch'):
        model = Model(batch_norm=True, bn_impl=impl).to(device)
        # Statistics of a few training-mode batches, so that the batch norms are not identities
        model.train()
        for _ in range(3):
            model(torch.randn(64, 1, 28, 28, device=device))
        model.eval()
        models[impl] = model
    models['folded'] = fold_batch_norm(models['ours'])
    models['plain (no BN)'] = Model(batch_norm=False).to(device).eval()
    error = ((models['folded'](x) - models['ours'](x)).abs().max() /
             models['ours'](x).abs().max()).item()

    for model in models.values():
        # Warm-up: allocator, kernels, caches
        time_once(model, x, device, 2)
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(time_once(model, x, device, calls))
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        'device': describe_device(device),
        'torch': torch.__version__,
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'batch_size': batch_size,
        'repeats': repeats,
        'calls_per_repeat': calls,
        'threads': torch.get_num_threads() if device.type == 'cpu' else None,
        'median_ms': {name: 1e3 * t for name, t in medians.items()},
        'speed_up_folded_vs_ours': medians['ours'] / medians['folded'],
        'speed_up_folded_vs_torch': medians['torch'] / medians['folded'],
        'folded_relative_error': error,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=cli_checks.HelpFormatter)
    parser.add_argument('--device', default='auto',
                        help="'auto' (the CPU and, when there is one, the GPU), 'cpu' or 'cuda'")
    parser.add_argument('--smoke', action='store_true',
                        help='batch 8, one repeat of one call: seconds, for the tests')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='images per forward pass; when not given 1000, 8 with --smoke')
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed repeats per setting (median kept); when not given 15, '
                             '1 with --smoke')
    parser.add_argument('--calls', type=int, default=None,
                        help='forward passes per timed repeat; when not given 3, 1 with --smoke')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads (0: torch default)')
    parser.add_argument('--out', default=None,
                        help='JSON file, or a folder (an existing one, one ending in /, or always '
                             'with two devices) for fold_speed-<device>.json; when not given '
                             'benchmarks/results/, '
                             'test-output/bench-smoke/ with --smoke')
    args = parser.parse_args(argv)
    batch_size = args.batch_size if args.batch_size is not None else (8 if args.smoke else 1000)
    repeats = args.repeats if args.repeats is not None else (1 if args.smoke else 15)
    calls = args.calls if args.calls is not None else (1 if args.smoke else 3)
    for option, value in (('--batch-size', batch_size), ('--repeats', repeats), ('--calls', calls)):
        cli_checks.at_least(parser, option, value)
    cli_checks.at_least(parser, '--threads', args.threads, 0)
    if args.device == 'auto':
        devices = [torch.device('cpu')] + ([torch.device('cuda')] if torch.cuda.is_available() else [])
    else:
        devices = [cli_checks.device(parser, args.device)]
    if args.smoke and args.out is not None:
        cli_checks.not_committed(parser, '--out', args.out)
    # Output paths, checked (and their folders made) before measuring
    outs = {}
    for device in devices:
        name = f'fold_speed-{device.type}.json'
        if args.out is None:
            outs[device] = cli_checks.writable_folder(
                parser, '--out', cli_checks.SMOKE_OUT if args.smoke else RESULTS) / name
        elif cli_checks.names_folder(args.out) or len(devices) > 1:
            # a folder: an existing one, one named `out/`, or one JSON per device
            outs[device] = cli_checks.writable_folder(parser, '--out', args.out) / name
        else:
            outs[device] = cli_checks.writable_file(parser, '--out', args.out)
    for device in devices:
        result = measure(device, batch_size, repeats, calls, args.threads)
        result['smoke'] = args.smoke
        out = outs[device]
        write_atomically(out, (json.dumps(result, indent=2) + '\n').encode())
        print(f'{result["device"]}, batch {batch_size}, median of {repeats}:')
        for name, ms in result['median_ms'].items():
            print(f'  {name:14s} {ms:8.2f} ms')
        print(f'  folded is {result["speed_up_folded_vs_ours"]:.2f}x faster than ours, '
              f'{result["speed_up_folded_vs_torch"]:.2f}x than torch\'s BN '
              f'(relative error {result["folded_relative_error"]:.1e}); wrote {out}')


if __name__ == '__main__':
    import cli_checks
    cli_checks.run(main, sys.argv[1:])
