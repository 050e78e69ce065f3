"""
The user's number: one training step of ResNet-50 with every batch norm swapped for ours,
against the same model with `torch.nn.BatchNorm2d`, side by side in the same run.

A step is forward, cross-entropy loss, backward and an SGD update with momentum. Two settings:
`fp32` (channels first) and `bf16` (autocast to bfloat16, channels-last model and input).
Implementations: `native` (torchvision's or our own ResNet-50 as built), `eager` (every
`BatchNorm2d` replaced by `labml_nn_bn.BatchNorm`, its `state_dict` loaded) and, on CUDA with
Triton, `fast` (`FastBatchNorm`). It reports the median step time over interleaved rounds, the
ratio to native, and the peak memory of a step (from the CUDA allocator, or on a CPU from the
profiler's record of allocations) and its ratio to native.

torchvision's `resnet50` is used where it imports (GPU machines); elsewhere the same
architecture is built below (torchvision's layer names, so `state_dict`s are interchangeable).

    python benchmarks/resnet_step.py                        # CUDA when available, else CPU
    python benchmarks/resnet_step.py --device cpu           # batch 8 at 112×112
    python benchmarks/resnet_step.py --smoke --out /tmp/x   # a narrow, tiny model: seconds

Writes `benchmarks/results/resnet_step-<device kind>.json` (atomically; with `--smoke`, by default
`test-output/bench-smoke/`), prints a table.
"""
import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labml_nn_bn.batch_norm import BatchNorm  # noqa: E402
from labml_nn_bn.fast_batch_norm import FastBatchNorm, kernels_apply  # noqa: E402
from labml_nn_bn.figure_tools import (describe_device, save_values, stamp,  # noqa: E402
                                      today)

sys.path.insert(0, str(ROOT / 'benchmarks'))
from bn_speed import (RESULTS, Timer, _commit, _spread, device_kind,  # noqa: E402
                      peak_memory)
import cli_checks  # noqa: E402


# ## ResNet-50, for machines without torchvision
#
# He et al. (2016), "Deep Residual Learning for Image Recognition", with the bottleneck's
# stride on its 3×3 convolution (as torchvision does). Written here only so that the benchmark
# runs where torchvision does not import; torchvision's model is preferred where it does.
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, blocks=(3, 4, 6, 3), base_width: int = 64, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = base_width
        for i, count in enumerate(blocks):
            width = base_width * 2 ** i
            layer = []
            for j in range(count):
                layer.append(Bottleneck(channels, width, 2 if (j == 0 and i > 0) else 1))
                channels = width * Bottleneck.expansion
            setattr(self, f'layer{i + 1}', nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(smoke: bool = False):
    """torchvision's ResNet-50 where it imports, else ours; a narrow two-block net for `--smoke`."""
    if smoke:
        return (ResNet(blocks=(1, 1, 1, 1), base_width=8, classes=10),
                'ResNet (smoke: 1-1-1-1 blocks, width 8)')
    try:
        from torchvision.models import resnet50 as torchvision_resnet50
        return torchvision_resnet50(), 'torchvision resnet50'
    except Exception:  # torchvision missing or not importable with this torch
        return ResNet(), 'ResNet-50 (benchmarks/resnet_step.py)'


def swap_batch_norms(model: nn.Module, cls) -> int:
    """Replaces every `torch.nn.BatchNorm2d` in `model` by `cls`, with the same state; returns how many."""
    count = 0
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            bn = cls(child.num_features, eps=child.eps, momentum=child.momentum,
                     affine=child.affine, track_running_stats=child.track_running_stats)
            bn.load_state_dict(child.state_dict())
            setattr(model, name, bn.to(next(child.parameters()).device))
            count += 1
        else:
            count += swap_batch_norms(child, cls)
    return count


def make_step(model, setting: str, x, target, single_thread_backward: bool = False):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        if setting == 'bf16':
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                loss = loss_fn(model(x), target)
        else:
            loss = loss_fn(model(x), target)
        # With `single_thread_backward`, the backward pass runs on this thread rather than on
        # the autograd engine's thread for the GPU
        with torch.autograd.set_multithreading_enabled(not single_thread_backward):
            loss.backward()
        optimizer.step()
    return step


def measure(device, setting: str, batch: int, size: int, rounds: int, smoke: bool, fast: bool,
            single_thread_backward: bool = False):
    torch.manual_seed(0)
    base, description = resnet50(smoke)
    base = base.to(device)
    models = {'native': base}
    for name, cls in (('eager', BatchNorm), ('fast', FastBatchNorm)):
        if name == 'fast' and not fast:
            continue
        model = copy.deepcopy(base)
        swapped = swap_batch_norms(model, cls)
        models[name] = model
    x = torch.randn(batch, 3, size, size, device=device)
    target = torch.randint(0, base.fc.out_features, (batch,), device=device)
    if setting == 'bf16':
        x = x.contiguous(memory_format=torch.channels_last)
        for model in models.values():
            model.to(memory_format=torch.channels_last)
    for model in models.values():
        model.train()
    steps = {name: make_step(model, setting, x, target, single_thread_backward)
             for name, model in models.items()}
    timer = Timer(device)
    for fn in steps.values():
        for _ in range(2):
            fn()
    samples = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            samples[name].append(timer(fn, 1))
    ms = {name: statistics.median(s) for name, s in samples.items()}
    result = {'model': description, 'batch_norms': swapped, 'batch': batch, 'size': size,
              'setting': setting, 'single_thread_backward': single_thread_backward}
    for name in steps:
        result[name] = {'ms': ms[name], 'ratio': ms[name] / ms['native'],
                        'spread': _spread(samples[name]),
                        'peak_bytes': peak_memory(steps[name], device)}
    for name in steps:
        result[name]['peak_ratio'] = result[name]['peak_bytes'] / result['native']['peak_bytes']
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=cli_checks.HelpFormatter)
    parser.add_argument('--device', default='auto',
                        help="'auto' (cuda when available, else cpu), 'cpu' or 'cuda'")
    parser.add_argument('--smoke', action='store_true', help='a tiny model and input: seconds')
    parser.add_argument('--settings', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16'],
                        help='settings to time, in turn')
    parser.add_argument('--batch', type=int, default=None,
                        help='images per step (at least 2); when not given 64 (fp32) and 128 (bf16) '
                             'on CUDA, 8 on CPU, 2 with --smoke')
    parser.add_argument('--size', type=int, default=None,
                        help='image side; when not given 224 on CUDA, 112 on CPU, 32 with --smoke')
    parser.add_argument('--rounds', type=int, default=None,
                        help='timed steps per implementation, interleaved; when not given 20 on '
                             'CUDA, 5 on CPU, 3 with --smoke')
    parser.add_argument('--single-thread-backward', action='store_true',
                        help="run each backward pass on the calling thread "
                             "(torch.autograd.set_multithreading_enabled(False)); the JSON's "
                             "name ends in -single-thread-backward")
    parser.add_argument('--out', default=None,
                        help='folder for the JSON; when not given benchmarks/results, '
                             'test-output/bench-smoke with --smoke')
    parser.add_argument('--figures', action='store_true',
                        help='also copy the JSON to docs/figures/ for the Performance page '
                             '(not with --smoke)')
    args = parser.parse_args(argv)
    device = cli_checks.device(parser, args.device)
    cuda = device.type == 'cuda'
    rounds = args.rounds if args.rounds is not None else (3 if args.smoke else 20 if cuda else 5)
    size = args.size if args.size is not None else (32 if args.smoke else 224 if cuda else 112)
    for value, name in ((rounds, '--rounds'), (size, '--size')):
        if value < 1:
            parser.error(f'{name} must be at least 1, got {value}')
    if args.batch is not None and args.batch < 2:
        parser.error(f'--batch: expected at least 2 images, got {args.batch} (batch norm in '
                     f'training needs more than one value per channel)')
    out = cli_checks.output_folder(parser, args, RESULTS)
    fast = cuda and kernels_apply(torch.empty(1, 1, device=device))
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
    start = time.time()
    kind = device_kind(device)
    description = describe_device(device)
    stem = f'resnet_step-{kind}' + ('-single-thread-backward' if args.single_thread_backward
                                    else '')
    text_stamp = stamp('random images, 1000 classes', f'{rounds} interleaved steps, median'
                       + (', backward on the calling thread' if args.single_thread_backward
                          else '') + (' (smoke)' if args.smoke else ''), description)

    def save(values):
        meta = {'device': description, 'kind': kind, 'torch': torch.__version__, 'date': today(),
                'rounds': rounds, 'smoke': args.smoke, 'load_average_before': load,
                'threads': torch.get_num_threads(), 'seconds': time.time() - start,
                'commit': _commit()}
        paths = [out / f'{stem}.json']
        if args.figures:
            paths.append(ROOT / 'docs' / 'figures' / f'{stem}.json')
        return [save_values(path, dict(values, meta=meta), text_stamp) for path in paths]

    values = {}
    for setting in args.settings:
        if args.batch is not None:
            batch = args.batch
        else:
            batch = 2 if args.smoke else (64 if setting == 'fp32' else 128) if cuda else 8
        values[setting] = r = measure(device, setting, batch, size, rounds, args.smoke, fast,
                                      args.single_thread_backward)
        parts = [f'{name} {r[name]["ms"]:.1f} ms ({r[name]["ratio"]:.2f}×, '
                 f'peak {r[name]["peak_ratio"]:.2f}×)'
                 for name in ('native', 'eager', 'fast') if name in r]
        print(f'{setting} batch {batch} {size}×{size}: ' + '  '.join(parts), flush=True)
        # Written after every setting, so that a long run that is stopped keeps what it measured
        written = save(values)
    for path in written:
        print(f'wrote {path}')


if __name__ == '__main__':
    import cli_checks
    cli_checks.run(main)
