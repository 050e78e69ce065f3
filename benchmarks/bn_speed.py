"""
Speed of batch normalization: our eager `BatchNorm`, the fused `FastBatchNorm` (CUDA with
Triton only) and `torch.nn.BatchNorm*d`, side by side in the same run.

For every input (shape, dtype, memory layout) and mode (`train`: forward + backward with running
statistics; `eval`: forward with population statistics, no autograd) it reports the median time
of rounds that interleave the implementations, each one's ratio to native, and its effective
bandwidth: the *minimal traffic* divided by the time. The minimal traffic, for $N$ values of
$b$ bytes, is what any implementation must move: training reads $x$ and writes $y$ forward,
reads $x$ and $\\partial\\ell/\\partial y$ and writes $\\partial\\ell/\\partial x$ backward
($5Nb$); evaluation reads $x$ and writes $y$ ($2Nb$). A device-to-device copy of $x$
(`torch.empty_like(x).copy_(x)`, $2Nb$ bytes) timed in the same rounds gives the bandwidth the
device actually reaches. The peak memory of one training step is compared with native's
(on a CPU, from the allocations torch's profiler records). On a CPU, the page faults per call
are counted too: memory that the allocator handed back to the system and took again, which
costs a fault per 4 KiB page touched.

    python benchmarks/bn_speed.py                   # CUDA when available, else CPU
    python benchmarks/bn_speed.py --device cpu --figures   # also docs/figures/bn_speed-cpu.json
    python benchmarks/bn_speed.py --smoke --out /tmp/x     # seconds, for the tests

Writes `benchmarks/results/bn_speed-<device kind>.json` (atomically; with `--smoke`, by default
`test-output/bench-smoke/`), prints a table.
Timings on a shared machine are noisy: compare ratios measured in the same run.
"""
import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    import resource  # page-fault counts, where the system keeps them (not on Windows)
except ImportError:
    resource = None

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labml_nn_bn.batch_norm import BatchNorm  # noqa: E402
from labml_nn_bn.fast_batch_norm import FastBatchNorm, kernels_apply  # noqa: E402
from labml_nn_bn.figure_tools import (describe_device, save_values, stamp,  # noqa: E402
                                      today)

sys.path.insert(0, str(ROOT / 'benchmarks'))
import cli_checks  # noqa: E402

RESULTS = ROOT / 'benchmarks' / 'results'
FIGURES = ROOT / 'docs' / 'figures'

# (shape, dtype, channels last): the shapes on a GPU ...
GPU_INPUTS = [((256, 64, 56, 56), 'fp32', False), ((128, 256, 14, 14), 'fp32', False),
              ((64, 20, 24, 24), 'fp32', False), ((64, 50, 8, 8), 'fp32', False),
              ((64, 500), 'fp32', False), ((4096, 512), 'fp32', False),
              ((256, 64, 56, 56), 'bf16', True), ((128, 256, 14, 14), 'bf16', True),
              ((64, 20, 24, 24), 'bf16', True), ((64, 50, 8, 8), 'bf16', True),
              ((4096, 512), 'bf16', False)]
# ... and a smaller set on a CPU
CPU_INPUTS = [((32, 64, 28, 28), 'fp32', False), ((1024, 512), 'fp32', False),
              ((64, 20, 24, 24), 'fp32', False), ((16, 128, 14, 14), 'fp32', False),
              ((64, 500), 'fp32', False), ((32, 64, 28, 28), 'bf16', True)]
SMOKE_INPUTS = [((4, 8, 6, 6), 'fp32', False), ((16, 8), 'fp32', False), ((4, 8, 6, 6), 'bf16', True)]

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def input_key(shape, dtype: str, channels_last: bool) -> str:
    """`fp32_32x64x28x28`, `bf16_cl_32x64x28x28`: the JSON key of an input."""
    return f'{dtype}{"_cl" if channels_last else ""}_{"x".join(map(str, shape))}'


def native_batch_norm(channels: int, dim: int) -> torch.nn.Module:
    return {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
            5: torch.nn.BatchNorm3d}[dim](channels)


def make_modules(channels: int, dim: int, device, fast: bool):
    modules = {'native': native_batch_norm(channels, dim), 'eager': BatchNorm(channels)}
    if fast:
        modules['fast'] = FastBatchNorm(channels)
    # The same γ, β and running statistics in every implementation
    with torch.no_grad():
        modules['native'].weight.uniform_(0.5, 1.5)
        modules['native'].bias.normal_()
    for name, module in modules.items():
        if name != 'native':
            module.load_state_dict(modules['native'].state_dict())
    return {name: module.to(device) for name, module in modules.items()}


def step_function(module, mode: str, x: torch.Tensor, grad: torch.Tensor):
    """One call of the thing being timed: a training step, or an evaluation forward."""
    if mode == 'train':
        module.train()
        inputs = [x, module.weight, module.bias]

        def step():
            y = module(x)
            torch.autograd.grad(y, inputs, grad)
    else:
        module.eval()

        def step():
            with torch.no_grad():
                module(x)
    return step


def copy_function(x: torch.Tensor):
    def step():
        torch.empty_like(x).copy_(x)
    return step


class Timer:
    """Milliseconds per call of `fn`, over `iters` calls: CUDA events on a GPU, `perf_counter`
    on a CPU. On a GPU two untimed calls start each sample, so that the sample times a steady
    run of calls: after the synchronisation that ends a sample, the autograd engine's thread for
    the GPU has gone to sleep, and on the H200 machine we measured on, the first backward
    passes after it were much slower than the rest."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn, iters: int) -> float:
        if self.device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            for _ in range(2):
                fn()
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize(self.device)
            return start.elapsed_time(end) / iters
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - start) * 1e3 / iters


def iterations_for(fn, timer: Timer, target_ms: float) -> int:
    """Enough calls that one timed sample lasts about `target_ms` (after a warm-up)."""
    for _ in range(2):
        fn()
    once = max(timer(fn, 3), 1e-3)
    return max(1, min(1000, int(target_ms / once)))


def peak_memory(fn, device) -> int:
    """Bytes allocated at the peak of one call of `fn`, above what was allocated before it:
    from CUDA's allocator statistics on a GPU; on a CPU, whose allocator keeps none, from the
    allocations and frees torch's profiler records, each with the running total."""
    if device.type != 'cuda':
        return _cpu_peak_memory(fn)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def _cpu_peak_memory(fn) -> int:
    memory = cpu_memory_events(fn)
    if not memory:
        return 0
    base = memory[0]['Total Allocated'] - memory[0]['Bytes']
    return max(m['Total Allocated'] for m in memory) - base


def cpu_memory_events(fn):
    """The CPU allocations and frees of one call of `fn`, in order, as torch's profiler records
    them: each a dict with `Bytes` (> 0 for an allocation, < 0 for a free) and
    `Total Allocated` after it."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with _quiet_stderr(), torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'trace.json')
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)['traceEvents']
    return [e['args'] for e in events
            if e.get('name') == '[memory]' and e['args'].get('Device Type', 0) == 0]


class _quiet_stderr:
    """The profiler's C++ side logs its start and stop to stderr; a benchmark's output is its
    table."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def measure_input(shape, dtype: str, channels_last: bool, device, rounds: int, target_ms: float,
                  fast: bool):
    dt = DTYPES[dtype]
    x = torch.randn(shape, device=device).to(dt)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    grad = torch.randn(shape, device=device).to(dt)
    if channels_last:
        grad = grad.contiguous(memory_format=torch.channels_last)
    modules = make_modules(shape[1], len(shape), device, fast)
    timer = Timer(device)
    bytes_per_pass = x.numel() * x.element_size()
    result = {'shape': list(shape), 'dtype': dtype, 'channels_last': channels_last,
              'bytes_per_pass': bytes_per_pass}
    for mode in ('train', 'eval'):
        functions = {name: step_function(m, mode, x, grad) for name, m in modules.items()}
        functions['copy'] = copy_function(x.detach())
        iters = {name: iterations_for(fn, timer, target_ms) for name, fn in functions.items()}
        samples = {name: [] for name in functions}
        faults = {name: 0 for name in functions}
        # Interleaved rounds: every implementation sees the same machine load. The order
        # changes from round to round (seeded), so that none always runs right after the same
        # neighbour, whose memory traffic and allocations it would inherit.
        order = list(functions)
        shuffle = random.Random(0).shuffle
        for _ in range(rounds):
            shuffle(order)
            for name in order:
                before = _page_faults()
                samples[name].append(timer(functions[name], iters[name]))
                faults[name] += _page_faults() - before
        ms = {name: statistics.median(s) for name, s in samples.items()}
        # The minimal traffic of this mode, and of the copy
        minimal = (5 if mode == 'train' else 2) * bytes_per_pass
        copy_gbps = 2 * bytes_per_pass / ms['copy'] / 1e6
        values = {'copy': {'ms': ms['copy'], 'gbps': copy_gbps}}
        for name in modules:
            gbps = minimal / ms[name] / 1e6
            values[name] = {'ms': ms[name], 'ratio': ms[name] / ms['native'], 'gbps': gbps,
                            'of_copy': gbps / copy_gbps, 'spread': _spread(samples[name])}
            if mode == 'train':
                values[name]['peak_bytes'] = peak_memory(functions[name], device)
        if device.type == 'cpu':
            for name in functions:
                values[name]['faults'] = faults[name] / (rounds * iters[name])
        if mode == 'train':
            for name in modules:
                values[name]['peak_ratio'] = values[name]['peak_bytes'] / values['native']['peak_bytes']
        values['minimal_bytes'] = minimal
        values['iters'] = iters
        result[mode] = values
    return result


def _page_faults() -> int:
    """Minor page faults of this process so far (all threads); 0 where the system keeps no
    count."""
    if resource is None:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _spread(samples):
    """(max − min) / median of the rounds: how noisy a median is."""
    return (max(samples) - min(samples)) / statistics.median(samples)


def device_kind(device) -> str:
    """`cpu`, or the GPU's name as a file-name-friendly slug (`nvidia-h100-80gb-hbm3`)."""
    if device.type != 'cuda':
        return 'cpu'
    return re.sub(r'[^a-z0-9]+', '-', torch.cuda.get_device_name(device).lower()).strip('-')


def run(device, smoke: bool, rounds: int, target_ms: float):
    fast = device.type == 'cuda' and kernels_apply(torch.empty(1, 1, device=device))
    if smoke:
        inputs = SMOKE_INPUTS
    else:
        inputs = GPU_INPUTS if device.type == 'cuda' else CPU_INPUTS
    results = {}
    for shape, dtype, channels_last in inputs:
        key = input_key(shape, dtype, channels_last)
        torch.manual_seed(0)
        results[key] = measure_input(shape, dtype, channels_last, device, rounds, target_ms, fast)
        print(format_rows(key, results[key]), flush=True)
    return results


# The targets, as (name, input, mode, implementation, quantity, limit): met when the
# measured quantity is at most the limit. Inputs that were not measured are left out.
TARGETS = [
    ('cpu_train_32x64x28x28', 'fp32_32x64x28x28', 'train', 'eager', 'ratio', 2.),
    ('cpu_train_1024x512', 'fp32_1024x512', 'train', 'eager', 'ratio', 3.),
    ('gpu_eager_256x64x56x56', 'fp32_256x64x56x56', 'train', 'eager', 'ratio', 1.25),
    ('gpu_fast_256x64x56x56_ms', 'fp32_256x64x56x56', 'train', 'fast', 'ms', 0.5),
    ('gpu_fast_256x64x56x56', 'fp32_256x64x56x56', 'train', 'fast', 'ratio', 0.27),
    ('gpu_fast_bf16_cl_256x64x56x56', 'bf16_cl_256x64x56x56', 'train', 'fast', 'ratio', 1.),
]


def targets(results, device_type: str):
    """Which of the issue's targets hold in this run: `{name: {value, limit, met}}`."""
    found = {}
    prefix = 'gpu' if device_type == 'cuda' else device_type
    for name, key, mode, impl, quantity, limit in TARGETS:
        if name.startswith(prefix) and key in results and impl in results[key][mode]:
            value = results[key][mode][impl][quantity]
            found[name] = {'value': value, 'limit': limit, 'met': 'yes' if value <= limit else 'no'}
    # Every other shape: eager ≤ 2× (GPU); fast ≤ 1× (GPU); evaluation ≤ 1.5× (everywhere);
    # peak memory of a training step ≤ 1.1× (everywhere). On a GPU the eager module keeps
    # `float32` temporaries for half-precision inputs (only the CPU splits the batch into
    # pieces), and the half-precision path there is `FastBatchNorm`: its memory target
    # is checked on `float32` inputs. The worst case of each is reported.
    on_gpu = device_type == 'cuda'
    groups = [('eval_eager', 'eval', 'eager', 'ratio', 1.5, lambda key: True),
              ('gpu_eager_peak_memory' if on_gpu else 'cpu_eager_peak_memory',
               'train', 'eager', 'peak_ratio', 1.1,
               lambda key: key.startswith('fp32_') or not on_gpu)]
    if device_type == 'cuda':
        groups += [('gpu_eager_other_shapes', 'train', 'eager', 'ratio', 2.,
                    lambda key: key != 'fp32_256x64x56x56'),
                   ('gpu_fast_smaller_shapes', 'train', 'fast', 'ratio', 1.,
                    lambda key: '256x64x56x56' not in key)]
    for name, mode, impl, quantity, limit, chosen in groups:
        measured = {key: r[mode][impl][quantity] for key, r in results.items()
                    if chosen(key) and impl in r[mode] and quantity in r[mode][impl]}
        if measured:
            worst = max(measured, key=measured.get)
            found[name] = {'value': measured[worst], 'limit': limit, 'input': worst,
                           'met': 'yes' if measured[worst] <= limit else 'no'}
    return found


def format_rows(key: str, result) -> str:
    lines = []
    for mode in ('train', 'eval'):
        v = result[mode]
        parts = [f'{key:>24} {mode:5}', f'copy {v["copy"]["gbps"]:7.1f} GB/s']
        for name in ('native', 'eager', 'fast'):
            if name in v:
                peak = (f', peak memory {v[name]["peak_ratio"]:.2f}×'
                        if 'peak_ratio' in v[name] and name != 'native' else '')
                faults = (f', {v[name]["faults"]:.0f} faults'
                          if 'faults' in v[name] else '')
                parts.append(f'{name} {v[name]["ms"]:8.3f} ms ({v[name]["ratio"]:.2f}×, '
                             f'{v[name]["gbps"]:.1f} GB/s{peak}{faults})')
        lines.append('  '.join(parts))
    return '\n'.join(lines)


def markdown_table(name: str, results, mode: str) -> str:
    """A table for docs/performance.md whose numbers are measured quotes of `name`.json."""
    impls = [i for i in ('native', 'eager', 'fast') if i in next(iter(results.values()))[mode]]
    head = ['input'] + [f'{i} ms' for i in impls] + [f'{i} / native' for i in impls if i != 'native']
    head += [f'{i} GB/s (of copy)' for i in impls] + ['copy GB/s']
    rows = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for key, result in results.items():
        v = result[mode]
        cells = [key.replace('_', ' ')]
        cells += [_quote(name, f'{key}.{mode}.{i}.ms', '.3f', v[i]['ms']) for i in impls]
        cells += [_quote(name, f'{key}.{mode}.{i}.ratio', '.2f', v[i]['ratio']) + '×'
                  for i in impls if i != 'native']
        cells += [_quote(name, f'{key}.{mode}.{i}.gbps', '.1f', v[i]['gbps']) + ' (' +
                  _quote(name, f'{key}.{mode}.{i}.of_copy', '.0%', v[i]['of_copy']) + ')'
                  for i in impls]
        cells.append(_quote(name, f'{key}.{mode}.copy.gbps', '.1f', v['copy']['gbps']))
        rows.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(rows)


def _quote(name, key, spec, value):
    return f'<!-- measured {name}:{key} {spec} -->{format(value, spec)}<!-- /measured -->'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=cli_checks.HelpFormatter)
    parser.add_argument('--device', default='auto',
                        help="'auto' (cuda when available, else cpu), 'cpu' or 'cuda'")
    parser.add_argument('--smoke', action='store_true', help='tiny inputs, a few rounds: seconds')
    parser.add_argument('--rounds', type=int, default=None,
                        help='interleaved rounds per input; when not given 15, 3 with --smoke')
    parser.add_argument('--target-ms', type=float, default=None,
                        help='length of one timed sample; when not given 20 ms, 1 ms with --smoke')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads for torch; when not given torch\'s own choice')
    parser.add_argument('--out', default=None,
                        help='folder for the JSON; when not given benchmarks/results, '
                             'test-output/bench-smoke with --smoke')
    parser.add_argument('--figures', action='store_true',
                        help='also copy the JSON to docs/figures/ for the Performance page '
                             '(not with --smoke)')
    parser.add_argument('--table', action='store_true', help='print the Markdown tables of the page')
    args = parser.parse_args(argv)
    device = cli_checks.device(parser, args.device)
    rounds = args.rounds if args.rounds is not None else (3 if args.smoke else 15)
    target_ms = args.target_ms if args.target_ms is not None else (1. if args.smoke else 20.)
    if rounds < 1:
        parser.error(f'--rounds must be at least 1, got {rounds}')
    if not target_ms > 0:
        parser.error(f'--target-ms: expected a positive number, got {target_ms}')
    cli_checks.at_least(parser, '--threads', args.threads)
    out = cli_checks.output_folder(parser, args, RESULTS)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(True)
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
    start = time.time()
    values = run(device, args.smoke, rounds, target_ms)
    values['targets'] = targets(values, 'cuda' if device.type == 'cuda' else 'cpu')
    for name, t in values['targets'].items():
        print(f'target {name}: {t["value"]:.3f} ≤ {t["limit"]}: {t["met"]}')
    kind = device_kind(device)
    description = describe_device(device)
    steps = f'{rounds} interleaved rounds, median' + (' (smoke)' if args.smoke else '')
    name = f'bn_speed-{kind}'
    meta = {'device': description, 'kind': kind, 'torch': torch.__version__, 'date': today(),
            'triton': _triton_version(), 'rounds': rounds, 'target_ms': target_ms,
            'smoke': args.smoke, 'load_average_before': load, 'seconds': time.time() - start,
            'commit': _commit(), 'threads': torch.get_num_threads()}
    text_stamp = stamp('random N(0,1) inputs', steps, description)
    written = [save_values(out / f'{name}.json', dict(values, meta=meta), text_stamp)]
    if args.figures:
        written.append(save_values(FIGURES / f'{name}.json', dict(values, meta=meta), text_stamp))
    for path in written:
        print(f'wrote {path}')
    if args.table:
        inputs = {k: v for k, v in values.items() if k != 'targets'}
        for mode in ('train', 'eval'):
            print(f'\n{mode}:\n' + markdown_table(name, inputs, mode))


def _triton_version():
    try:
        import triton
        return triton.__version__
    except ImportError:
        return None


def _commit():
    """The commit measured: `BENCH_COMMIT` where it is set (a copy of the working tree sent to a
    GPU machine, whose git, if any, is not this one's), else git's."""
    import subprocess
    try:
        found = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ''
    return os.environ.get('BENCH_COMMIT') or found or None


if __name__ == '__main__':
    import cli_checks
    cli_checks.run(main)
