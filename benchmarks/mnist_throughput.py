"""
Training throughput of the MNIST CNN (images per second over one epoch), with our `BatchNorm`
and with `torch.nn.BatchNorm*d`, on the CPU and, when there is one, on the GPU.

Not a test: timings depend on the machine. It prints the data set, the devices and a table.

    .venv/bin/python benchmarks/mnist_throughput.py                 # offline subset when needed
    .venv/bin/python benchmarks/mnist_throughput.py --dataset idx --data-dir /usr/share/datasets/fashion-mnist
"""
import argparse
import platform
import time

import torch

from labml_nn_bn import data, mnist


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def epoch_throughput(tensors: data.DeviceData, device, bn_impl: str, batch_size: int, seed: int = 0,
                     warmup_steps: int = 5) -> float:
    """Images per second for one epoch of the experiment's own `train_epoch`, after a warm-up."""
    torch.manual_seed(seed)
    model = mnist.Model(batch_norm=bn_impl != 'none', bn_impl='torch' if bn_impl == 'none' else bn_impl)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    x, y = tensors.train_x, tensors.train_y
    warmup = warmup_steps * batch_size
    mnist.train_epoch(model, optimizer, x[:warmup], y[:warmup], batch_size, generator)
    synchronize(device)
    start = time.perf_counter()
    # `train_epoch` drops the last incomplete batch
    images = len(y) - len(y) % batch_size
    mnist.train_epoch(model, optimizer, x, y, batch_size, generator)
    synchronize(device)
    return images / (time.perf_counter() - start)


def cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'CPU'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--dataset', default='auto', choices=list(data.DATASETS))
    parser.add_argument('--data-dir', default=None)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--repeats', type=int, default=3, help='epochs timed per setting (best is kept)')
    args = parser.parse_args()

    dataset, how = data.load_dataset(args.dataset, args.data_dir)
    devices = [torch.device('cpu')] + ([torch.device('cuda')] if torch.cuda.is_available() else [])
    print(f'{dataset} ({how})')
    print(f'torch {torch.__version__}, Python {platform.python_version()}, '
          f'{torch.get_num_threads()} CPU threads, batch {args.batch_size}, '
          f'best of {args.repeats} epochs')
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name()
        tensors = data.DeviceData(dataset, device)
        rates = {impl: max(epoch_throughput(tensors, device, impl, args.batch_size)
                           for _ in range(args.repeats))
                 for impl in ('ours', 'torch', 'none')}
        print(f'{device.type} ({name}): ours {rates["ours"]:,.0f} images/s, '
              f'torch.nn {rates["torch"]:,.0f} images/s '
              f'(ours/torch = {rates["ours"] / rates["torch"]:.2f}), '
              f'no batch norm {rates["none"]:,.0f} images/s')


if __name__ == '__main__':
    main()
