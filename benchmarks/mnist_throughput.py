"""
Training throughput of the MNIST CNN (images per second over one epoch, and seconds per
epoch), with our `BatchNorm`, with `torch.nn.BatchNorm*d` and without batch norm, on the CPU and,
when there is one, on the GPU; and, in the same run, the experiment's fast train steps
(`--fast-step compile` and `cuda-graph`, GPU only) against the plain step, with the test
accuracy each reaches after the same epochs, which should agree.

Not a test: timings depend on the machine. It prints the data set, the devices and a table.

    .venv/bin/python benchmarks/mnist_throughput.py                 # offline subset when needed
    .venv/bin/python benchmarks/mnist_throughput.py --dataset idx --data-dir /usr/share/datasets/fashion-mnist
    .venv/bin/python benchmarks/mnist_throughput.py --no-compile     # skip torch.compile on the GPU
    python benchmarks/mnist_throughput.py --no-cpu --out benchmarks/results   # also the JSON

With `--out FOLDER` it also writes `mnist_throughput-<device kind>.json` there (atomically), the
kind of the last device measured (the GPU, where there is one).
"""
import argparse
import os
import platform
import statistics
import time

import sys
from pathlib import Path

import torch

from labml_nn_bn import data
from labml_nn_bn.experiments import mnist, trainer
from labml_nn_bn.figure_tools import describe_device, save_values, stamp, today

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cli_checks  # noqa: E402
from bn_speed import _commit, device_kind  # noqa: E402


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def epoch_seconds(tensors: data.DeviceData, device, bn_impl: str, batch_size: int,
                  fast_step: str = 'off', repeats: int = 3, seed: int = 0):
    """Seconds for each of `repeats` epochs of the experiment's own training loop, after a
    warm-up epoch (which also compiles or captures a fast step), and the test accuracy after
    the first timed epoch."""
    generator = trainer.seed_everything(seed)
    model = mnist.Model(batch_norm=bn_impl != 'none', bn_impl='torch' if bn_impl == 'none' else bn_impl)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step, text = trainer.make_fast_step(model, optimizer, fast_step, device)
    x, y = tensors.train_x, tensors.train_y
    trainer.train_epoch(model, optimizer, x, y, batch_size, generator, step_fn=step, progress=None)
    times, accuracy = [], None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        trainer.train_epoch(model, optimizer, x, y, batch_size, generator, step_fn=step,
                            progress=None)
        synchronize(device)
        times.append(time.perf_counter() - start)
        if accuracy is None:
            accuracy = trainer.evaluate(model, tensors.test_x, tensors.test_y)[1]
    return times, accuracy, text


def device_name(device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'CPU'


def main(argv=None):
    parser = argparse.ArgumentParser(description=' '.join(__doc__.strip().split('\n\n')[0].split()),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--dataset', default='auto', choices=list(data.DATASETS), help='data set')
    parser.add_argument('--data-dir', default=argparse.SUPPRESS,
                        help="MNIST cache or IDX folder (needed by --dataset idx); when not "
                             "given labml's data path")
    parser.add_argument('--batch-size', type=int, default=64,
                        help='images per step (at least 2: batch norm needs more than one value '
                             'per channel)')
    parser.add_argument('--repeats', type=int, default=3, help='timed epochs per setting (median kept)')
    parser.add_argument('--compile', dest='compile', action=argparse.BooleanOptionalAction,
                        default=True, help='also time --fast-step compile on the GPU')
    parser.add_argument('--cpu', dest='cpu', action=argparse.BooleanOptionalAction, default=True,
                        help='also time the CPU')
    parser.add_argument('--out', default=argparse.SUPPRESS,
                        help='folder for the JSON; when not given, only the table is printed')
    args = parser.parse_args(argv)
    data_dir = getattr(args, 'data_dir', None)
    if args.batch_size < 2:
        parser.error(f'--batch-size: expected an integer >= 2 (batch norm needs more than one '
                     f'value per channel), got {args.batch_size}')
    if args.repeats < 1:
        parser.error(f'--repeats: expected an integer >= 1, got {args.repeats}')
    if args.dataset == 'idx' and data_dir is None:
        parser.error('--dataset idx: expected --data-dir with the folder of IDX files, got none')
    if data_dir is not None and os.path.exists(data_dir) and not os.path.isdir(data_dir):
        parser.error(f'--data-dir: expected a folder, got the file {data_dir}')
    if args.dataset == 'idx' and not os.path.isdir(data_dir):
        parser.error(f'--data-dir: expected a folder of IDX files, got {data_dir} (no such folder)')

    out = getattr(args, 'out', None)
    out = cli_checks.writable_folder(parser, '--out', out) if out is not None else None
    try:
        dataset, how = data.load_dataset(args.dataset, data_dir)
    except (data.DataError, OSError) as e:
        # Not a usage error, but one line all the same
        parser.exit(1, f'{parser.prog}: error: --dataset {args.dataset}: {e}\n')
    if args.batch_size > len(dataset.train_labels):
        parser.error(f'--batch-size: expected at most the {len(dataset.train_labels):,} training '
                     f'images of {dataset.name}, got {args.batch_size}')
    devices = ([torch.device('cpu')] if args.cpu else []) + \
        ([torch.device('cuda')] if torch.cuda.is_available() else [])
    print(f'{dataset} ({how})')
    print(f'torch {torch.__version__}, Python {platform.python_version()}, '
          f'{torch.get_num_threads()} CPU threads, batch {args.batch_size}, '
          f'median of {args.repeats} epochs after a warm-up epoch')
    values = {}
    for device in devices:
        tensors = data.DeviceData(dataset, device)
        rows = values[device.type] = {'device': describe_device(device), 'steps': {}}
        print(f'\n{device.type} ({device_name(device)})')
        print(f'{"batch norm":<12} {"step":<11} {"s/epoch":>9} {"images/s":>10} {"vs plain":>9} '
              f'{"test acc":>9}')
        # The fast steps are GPU-only: on a CPU both fall back to the plain step
        steps = ['off'] + ((['compile'] if args.compile else []) + ['cuda-graph']
                           if device.type == 'cuda' else [])
        # FastBatchNorm is BatchNorm on a CPU: timed on GPUs only
        impls = ('ours', 'fast', 'torch', 'none') if device.type == 'cuda' else ('ours', 'torch', 'none')
        for impl in impls:
            plain = None
            for fast in steps:
                times, accuracy, text = epoch_seconds(tensors, device, impl, args.batch_size, fast,
                                                      args.repeats)
                seconds = statistics.median(times)
                plain = plain or seconds
                images = len(tensors.train_y) - len(tensors.train_y) % args.batch_size
                print(f'{impl:<12} {fast:<11} {seconds:>9.3f} {images / seconds:>10,.0f} '
                      f'{plain / seconds:>8.2f}x {accuracy:>9.2%}', flush=True)
                n_steps = len(tensors.train_y) // args.batch_size
                rows['steps'].setdefault(impl, {})[fast] = {
                    'seconds': seconds, 'epochs': times, 'images_per_s': images / seconds,
                    'ms_per_step': seconds * 1e3 / n_steps, 'vs_plain': plain / seconds,
                    'test_accuracy': accuracy, 'what': text}
    if out is not None and devices:
        device = devices[-1]
        kind = device_kind(device)
        meta = {'dataset': str(dataset), 'how': how, 'batch': args.batch_size,
                'repeats': args.repeats, 'torch': torch.__version__, 'date': today(),
                'threads': torch.get_num_threads(), 'commit': _commit()}
        path = save_values(out / f'mnist_throughput-{kind}.json', dict(values, meta=meta),
                           stamp(str(dataset), f'median of {args.repeats} epochs after a warm-up '
                                 f'epoch, batch {args.batch_size}', values[device.type]['device']))
        print(f'wrote {path}')


if __name__ == '__main__':
    import cli_checks
    cli_checks.run(main)
