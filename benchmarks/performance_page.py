"""
Writes the measured sections of docs/performance.md from the JSON in docs/figures/: the CPU
section (between `## CPU: eager and native` and `## GPU`) from bn_speed-cpu.json and
resnet_step-cpu.json, and the GPU section (between `## GPU` and `### Before this work`) from
every other bn_speed-<device kind>.json (with its resnet_step-<device kind>.json), or, while
there is none, rows marked "not measured yet". Every number is a measured quote, so
`tests/test_figures.py` checks it against the JSON.

After `benchmarks/gpu_check.sh OUT_DIR` on a GPU machine: copy OUT_DIR/*.json to
benchmarks/results/ and to docs/figures/, then run this script.

    python benchmarks/performance_page.py            # after bn_speed.py/resnet_step.py --figures
    python benchmarks/performance_page.py --check    # exit 1 if the page is not up to date
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'benchmarks'))

import bn_speed  # noqa: E402

PAGE = ROOT / 'docs' / 'performance.md'
FIGURES = ROOT / 'docs' / 'figures'
START, END = '## CPU: eager and native\n', '\n## GPU\n'
GPU_START, GPU_END = '## GPU\n', '\n### Before this work'
NOT_MEASURED = "\n**Not measured yet.** No GPU was available to the session that wrote the kernels and the\nbenchmarks. `benchmarks/gpu_check.sh OUT_DIR` runs the kernels' correctness tests on CUDA and\nboth benchmarks in one go; its JSON goes to `benchmarks/results/` and its numbers here.\nThe kernels are compiled for `sm_90` (H100/H200) in the test suite on every run, but they have\nnot run on a GPU.\n\n| input (train fwd+bwd) | native | eager | fast | fast / native |\n|---|---|---|---|---|\n| 256×64×56×56 fp32 | not measured yet | not measured yet | not measured yet | not measured yet |\n| 128×256×14×14 fp32 | not measured yet | not measured yet | not measured yet | not measured yet |\n| 64×20×24×24 fp32 | not measured yet | not measured yet | not measured yet | not measured yet |\n| 64×50×8×8 fp32 | not measured yet | not measured yet | not measured yet | not measured yet |\n| 64×500 fp32 | not measured yet | not measured yet | not measured yet | not measured yet |\n| 4096×512 fp32 | not measured yet | not measured yet | not measured yet | not measured yet |\n| 256×64×56×56 bf16 channels-last | not measured yet | not measured yet | not measured yet | not measured yet |\n| ResNet-50 step, fp32, batch 64 | not measured yet | not measured yet | | |\n| ResNet-50 step, bf16 channels-last, batch 128 | not measured yet | not measured yet | not measured yet | not measured yet |\n"


def q(name, key, spec, value):
    return f'<!-- measured {name}:{key} {spec} -->{format(value, spec)}<!-- /measured -->'


def qs(name, key, value):
    return f'<!-- measured {name}:{key} -->{value}<!-- /measured -->'


def cpu_section() -> str:
    bn = json.loads((FIGURES / 'bn_speed-cpu.json').read_text())['values']
    rs = json.loads((FIGURES / 'resnet_step-cpu.json').read_text())['values']
    N = 'bn_speed-cpu'; R = 'resnet_step-cpu'
    m = bn['meta']
    inputs = {k: v for k, v in bn.items() if k not in ('meta', 'targets')}
    out = []
    out.append(f"Measured on {qs(N, 'meta.device', m['device'])}, {qs(N, 'meta.date', m['date'])}, "
               f"at commit {qs(N, 'meta.commit', m['commit'])}, with "
               f"{q(N, 'meta.threads', 'd', m['threads'])} torch threads; "
               f"{q(N, 'meta.rounds', 'd', m['rounds'])} interleaved rounds of about "
               f"{q(N, 'meta.target_ms', '.0f', m['target_ms'])} ms each per implementation, in an order "
               f"shuffled from round to round, median. "
               f"The machine is shared with other jobs; this run was made while it was quiet (load average "
               f"{q(N, 'meta.load_average_before', '.1f', m['load_average_before'])} when it started). When it is busy, "
               f"torch's two-thread loops stall behind the other jobs and every time, even the copy's, "
               f"grows many-fold, so only ratios measured side by side mean much. Even on a quiet machine the "
               f"rounds of one input spread widely (the JSON keeps `spread`, the range of the rounds over their "
               f"median), so a ratio moves by tens of percent from run to run. "
               f"There is no fused path on a CPU: `FastBatchNorm` is `BatchNorm` there.")
    out.append('')
    out.append('**Training** (forward and backward, running statistics updated); GB/s is the minimal '
               'traffic $5P$ over the time:')
    out.append('')
    out.append(bn_speed.markdown_table(N, inputs, 'train'))
    out.append('')
    out.append('**Peak memory** of a training step (above what was allocated before it, from the '
               "allocations torch's profiler records), eager / native, and the **page faults** per "
               'step over the timed rounds (memory the allocator had handed back to the system '
               'and took again, a fault per 4 KiB page):')
    out.append('')
    out.append('| input | native bytes | eager bytes | eager / native | native faults | eager faults |')
    out.append('|---|---|---|---|---|---|')
    for key, r in inputs.items():
        v = r['train']
        out.append(f"| {key.replace('_', ' ')} | {q(N, f'{key}.train.native.peak_bytes', ',d', v['native']['peak_bytes'])} | "
                   f"{q(N, f'{key}.train.eager.peak_bytes', ',d', v['eager']['peak_bytes'])} | "
                   f"{q(N, f'{key}.train.eager.peak_ratio', '.2f', v['eager']['peak_ratio'])}× | "
                   f"{q(N, f'{key}.train.native.faults', '.0f', v['native']['faults'])} | "
                   f"{q(N, f'{key}.train.eager.faults', '.0f', v['eager']['faults'])} |")
    out.append('')
    out.append('**Evaluation** (forward with population statistics, no autograd); GB/s is $2P$ over the time:')
    out.append('')
    out.append(bn_speed.markdown_table(N, inputs, 'eval'))
    out.append('')
    t = bn['targets']
    names = {'cpu_train_32x64x28x28': 'training at 32×64×28×28 `float32`, eager / native ≤ 2',
             'cpu_train_1024x512': 'training at 1024×512 `float32`, eager / native ≤ 3',
             'eval_eager': 'evaluation, eager / native ≤ 1.5 (the worst input)',
             'cpu_eager_peak_memory': 'peak memory of a training step, eager / native ≤ 1.1 '
                                      '(the worst input)'}
    out.append("The targets this work set itself on a CPU, in this run:")
    out.append('')
    for key, label in names.items():
        if key in t:
            extra = f" ({t[key]['input']})" if 'input' in t[key] else ''
            out.append(f"* {label}: {q(N, f'targets.{key}.value', '.2f', t[key]['value'])}×{extra}, "
                       f"met: {qs(N, f'targets.{key}.met', t[key]['met'])}")
    out.append('')
    rm = rs['meta']
    out.append(f"**ResNet-50 training step** (`benchmarks/resnet_step.py`: {rs['fp32']['model'].replace(' (benchmarks/resnet_step.py)', ', defined in the benchmark since torchvision does not import here')}, random images, "
               f"forward, cross-entropy, backward and SGD with momentum), measured on "
               f"{qs(R, 'meta.device', rm['device'])}, {qs(R, 'meta.date', rm['date'])}, commit "
               f"{qs(R, 'meta.commit', rm['commit'])}, {q(R, 'meta.rounds', 'd', rm['rounds'])} interleaved steps "
               f"per implementation after two warm-up steps, median, with "
               f"{q(R, 'meta.threads', 'd', rm['threads'])} torch threads (load average "
               f"{q(R, 'meta.load_average_before', '.1f', rm['load_average_before'])} when it started); the peak memory of one "
               f"step above what was allocated before it, from the profiler's record of allocations. On a CPU the "
               f"convolutions dominate a step, and `bfloat16` convolutions are slow on this processor:")
    out.append('')
    out.append('| setting | batch | image | native ms | eager ms | eager / native | eager peak memory / native |')
    out.append('|---|---|---|---|---|---|---|')
    for s, label in (('fp32', '`float32`'), ('bf16', '`bfloat16` autocast, channels-last')):
        if s in rs:
            r = rs[s]
            out.append(f"| {label} | {q(R, f'{s}.batch', 'd', r['batch'])} | {q(R, f'{s}.size', 'd', r['size'])}² | "
                       f"{q(R, f'{s}.native.ms', '.0f', r['native']['ms'])} | {q(R, f'{s}.eager.ms', '.0f', r['eager']['ms'])} | "
                       f"{q(R, f'{s}.eager.ratio', '.2f', r['eager']['ratio'])}× | "
                       f"{q(R, f'{s}.eager.peak_ratio', '.2f', r['eager']['peak_ratio'])}× |")
    return '\n'.join(out)


def gpu_section(figures: Path = FIGURES) -> str:
    files = sorted(p for p in figures.glob('bn_speed-*.json') if p.stem != 'bn_speed-cpu')
    if not files:
        return NOT_MEASURED
    out = ['']
    for path in files:
        name = path.stem
        kind = name.split('-', 1)[1]
        bn = json.loads(path.read_text())['values']
        m = bn['meta']
        inputs = {k: v for k, v in bn.items() if k not in ('meta', 'targets')}
        out.append(f"Measured on {qs(name, 'meta.device', m['device'])} "
                   f"(triton {qs(name, 'meta.triton', m['triton'])}), {qs(name, 'meta.date', m['date'])}, "
                   f"at commit {qs(name, 'meta.commit', m['commit'])}; "
                   f"{q(name, 'meta.rounds', 'd', m['rounds'])} interleaved rounds of about "
                   f"{q(name, 'meta.target_ms', '.0f', m['target_ms'])} ms each in an order shuffled "
                   f"from round to round, each round after two untimed calls, timed with CUDA "
                   f"events, median.")
        out.append('')
        out += _gpu_findings(name, inputs, figures, kind)
        out.append('**Training** (forward and backward); GB/s is the minimal traffic $5P$ over the time:')
        out.append('')
        out.append(bn_speed.markdown_table(name, inputs, 'train'))
        out.append('')
        out.append('**Evaluation**; GB/s is $2P$ over the time:')
        out.append('')
        out.append(bn_speed.markdown_table(name, inputs, 'eval'))
        out.append('')
        impls = [i for i in ('eager', 'fast') if i in next(iter(inputs.values()))['train']]
        out.append('**Peak memory** of a training step, as a ratio to native\'s:')
        out.append('')
        out.append('| input | ' + ' | '.join(impls) + ' |')
        out.append('|---|' + '---|' * len(impls))
        for key, r in inputs.items():
            cells = [q(name, f'{key}.train.{i}.peak_ratio', '.2f', r['train'][i]['peak_ratio']) + '×'
                     for i in impls]
            out.append(f"| {key.replace('_', ' ')} | " + ' | '.join(cells) + ' |')
        out.append('')
        out.append("The targets this work set itself, in this run:")
        out.append('')
        for target, t in bn['targets'].items():
            where = f" ({t['input']})" if 'input' in t else ''
            out.append(f"* `{target}`{where}: {q(name, f'targets.{target}.value', '.3f', t['value'])} "
                       f"≤ {t['limit']}, met: {qs(name, f'targets.{target}.met', t['met'])}")
        out.append('')
        for suffix, how in (('', 'the backward pass on the autograd engine\'s thread for the GPU, '
                                 'as PyTorch runs it by default'),
                            ('-single-thread-backward',
                             'the backward pass on the calling thread '
                             '(`torch.autograd.set_multithreading_enabled(False)`)')):
            resnet = figures / f'resnet_step-{kind}{suffix}.json'
            if resnet.exists():
                out += _resnet_table(resnet, how)
        mnist = figures / f'mnist_throughput-{kind}.json'
        if mnist.exists():
            out += _mnist_table(mnist)
    return '\n'.join(out)


def _gpu_findings(name, inputs, figures: Path, kind: str):
    """What the GPU run shows, in words, with its numbers quoted."""
    big, half = inputs.get('fp32_256x64x56x56'), inputs.get('bf16_cl_256x64x56x56')
    if big is None:
        return []
    b, k = big['train'], 'fp32_256x64x56x56.train'
    out = [f"**What this run shows.** At $256 \\times 64 \\times 56 \\times 56$ `float32`, native "
           f"training takes {q(name, f'{k}.native.ms', '.3f', b['native']['ms'])} ms, "
           f"{q(name, f'{k}.native.of_copy', '.0%', b['native']['of_copy'])} of the copy's "
           f"bandwidth: cuDNN's NCHW kernels are as far from the floor as the baseline at the end of "
           f"this page says. The eager "
           f"module, with its few passes, is as fast "
           f"({q(name, f'{k}.eager.ratio', '.2f', b['eager']['ratio'])}× native) and holds no more "
           f"memory ({q(name, f'{k}.eager.peak_ratio', '.2f', b['eager']['peak_ratio'])}×); the fused "
           f"kernels take a median of {q(name, f'{k}.fast.ms', '.3f', b['fast']['ms'])} ms "
           f"({q(name, f'{k}.fast.ratio', '.2f', b['fast']['ratio'])}× native, "
           f"{q(name, f'{k}.fast.of_copy', '.0%', b['fast']['of_copy'])} of the copy's bandwidth against "
           f"the minimal traffic), but their rounds spread widely, over "
           f"{q(name, f'{k}.fast.spread', '.0%', b['fast']['spread'])} of that median (native's over "
           f"{q(name, f'{k}.native.spread', '.1%', b['native']['spread'])}).", '']
    tiles = figures / f'fast_tiles-{kind}.json'
    if tiles.exists():
        t_name = tiles.stem
        rows = json.loads(tiles.read_text())['values'].get('fp32_256x64x56x56', [])
        chosen = [i for i, r in enumerate(rows) if (r['tile'], r['per_sm'], r['warps']) == (4096, 4, 4)]
        if chosen:
            i, r = chosen[0], rows[chosen[0]]
            out[-2] += (f" The kernels alone, called back to back without autograd or the module "
                        f"around them (`benchmarks/fast_tiles.py`, tiles of 4,096 values, 4 warps), took "
                        f"{q(t_name, f'fp32_256x64x56x56.{i}.forward_ms', '.3f', r['forward_ms'])} ms "
                        f"forward and {q(t_name, f'fp32_256x64x56x56.{i}.backward_ms', '.3f', r['backward_ms'])} "
                        f"ms backward, medians of ten calls each (the sweep keeps no spread): the "
                        f"rest of a step is the cost of calling them.")
    if half is not None:
        h, k = half['train'], 'bf16_cl_256x64x56x56'
        out.append(f"In `bfloat16` channels-last, native's kernel is much better "
                   f"({q(name, f'{k}.train.native.ms', '.3f', h['native']['ms'])} ms, "
                   f"{q(name, f'{k}.train.native.of_copy', '.0%', h['native']['of_copy'])} of the copy's "
                   f"bandwidth) and the fused kernels take a median of "
                   f"{q(name, f'{k}.train.fast.ratio', '.2f', h['fast']['ratio'])}× its time, with rounds "
                   f"spread over {q(name, f'{k}.train.fast.spread', '.0%', h['fast']['spread'])} of "
                   f"that median; in evaluation the "
                   f"fused apply kernel takes {q(name, f'{k}.eval.fast.ratio', '.2f', half['eval']['fast']['ratio'])}× "
                   f"native's.")
        out.append('')
    out.append("**At the smaller inputs every implementation is bound by the processor that "
               "issues the kernels, not by the GPU.** Native's whole step is two calls into C++; ours "
               "is Python around each launch: an autograd `Function`, its backward pass, and for the "
               "eager module about twenty tensor operations per direction, for `FastBatchNorm` three "
               "Triton launches and a few allocations. On the machine we measured on, that made our "
               "steps several times native's at every input smaller than "
               "$256 \\times 64 \\times 56 \\times 56$ (the tables below), whatever the kernels do.")
    out.append('')
    threads = [figures / f'resnet_step-{kind}{suffix}.json' for suffix in ('', '-single-thread-backward')]
    if all(path.exists() for path in threads):
        (a_name, a), (b_name, b) = ((p.stem, json.loads(p.read_text())['values']) for p in threads)
        if all('fast' in r.get('fp32', {}) for r in (a, b)):
            out.append(f"PyTorch runs a backward pass on a thread of its own for each GPU. There our "
                       f"Python backward passes were much slower than on the calling thread, and "
                       f"native's were not: in a ResNet-50 training step (`float32`, the two tables "
                       f"below), `FastBatchNorm` took "
                       f"{q(a_name, 'fp32.fast.ratio', '.2f', a['fp32']['fast']['ratio'])}× native's time "
                       f"with PyTorch's default and "
                       f"{q(b_name, 'fp32.fast.ratio', '.2f', b['fp32']['fast']['ratio'])}× with "
                       f"`torch.autograd.set_multithreading_enabled(False)` around the backward pass, "
                       f"which runs it on the calling thread; the eager module "
                       f"{q(a_name, 'fp32.eager.ratio', '.2f', a['fp32']['eager']['ratio'])}× and "
                       f"{q(b_name, 'fp32.eager.ratio', '.2f', b['fp32']['eager']['ratio'])}×, while "
                       f"native itself took {q(a_name, 'fp32.native.ms', '.1f', a['fp32']['native']['ms'])} "
                       f"and {q(b_name, 'fp32.native.ms', '.1f', b['fp32']['native']['ms'])} ms. "
                       f"Why the thread costs our Python so much there we have not established. "
                       f"For single-GPU training with these modules, running the backward pass on "
                       f"the calling thread is worth trying; captured as a CUDA graph, a step runs no "
                       f"Python at all (the MNIST table).")
            out.append('')
    return out


def _resnet_table(resnet: Path, how: str):
    r_name = resnet.stem
    rs = json.loads(resnet.read_text())['values']
    settings = [s for s in ('fp32', 'bf16') if s in rs]
    impls = [i for i in ('eager', 'fast') if i in rs[settings[0]]]
    out = [f"**ResNet-50 training step** ({rs[settings[0]]['model']}, every `BatchNorm2d` swapped, "
           f"{how}), median of {q(r_name, 'meta.rounds', 'd', rs['meta']['rounds'])} interleaved "
           f"steps, each after two untimed steps, at commit "
           f"{qs(r_name, 'meta.commit', rs['meta']['commit'])}:", '']
    head = ['setting', 'batch', 'native ms'] + [f'{i} ms' for i in impls]
    head += [f'{i} / native' for i in impls] + [f'{i} peak memory / native' for i in impls]
    out.append('| ' + ' | '.join(head) + ' |')
    out.append('|' + '---|' * len(head))
    for s in settings:
        r = rs[s]
        cells = [s, q(r_name, f'{s}.batch', 'd', r['batch']),
                 q(r_name, f'{s}.native.ms', '.1f', r['native']['ms'])]
        cells += [q(r_name, f'{s}.{i}.ms', '.1f', r[i]['ms']) for i in impls]
        cells += [q(r_name, f'{s}.{i}.ratio', '.2f', r[i]['ratio']) + '×' for i in impls]
        cells += [q(r_name, f'{s}.{i}.peak_ratio', '.2f', r[i]['peak_ratio']) + '×' for i in impls]
        out.append('| ' + ' | '.join(cells) + ' |')
    out.append('')
    return out


def _mnist_table(mnist: Path):
    name = mnist.stem
    data = json.loads(mnist.read_text())['values']
    meta = data['meta']
    gpu = data.get('cuda')
    if gpu is None:
        return []
    out = [f"**The MNIST CNN's training epoch** (`benchmarks/mnist_throughput.py` on Fashion-MNIST's "
           f"full training set, which has MNIST's shapes, batch {q(name, 'meta.batch', 'd', meta['batch'])}, "
           f"the experiment's own loop with the data on the GPU; median of "
           f"{q(name, 'meta.repeats', 'd', meta['repeats'])} epochs after a warm-up epoch, at commit "
           f"{qs(name, 'meta.commit', meta['commit'])}). `cuda-graph` is the experiment's "
           f"`--fast-step cuda-graph`: the whole step, forward, backward and Adam, captured once and "
           f"replayed, so no Python runs per step. The test accuracy is after the first timed epoch:", '']
    labels = {'ours': '`BatchNorm` (eager)', 'fast': '`FastBatchNorm`', 'torch': '`torch.nn.BatchNorm*d`',
              'none': 'no batch norm'}
    out.append('| batch norm | step | s per epoch | ms per step | test accuracy |')
    out.append('|---|---|---|---|---|')
    for impl, steps in gpu['steps'].items():
        for step, r in steps.items():
            k = f'cuda.steps.{impl}.{step}'
            out.append(f"| {labels.get(impl, impl)} | {step} | {q(name, f'{k}.seconds', '.3f', r['seconds'])} | "
                       f"{q(name, f'{k}.ms_per_step', '.3f', r['ms_per_step'])} | "
                       f"{q(name, f'{k}.test_accuracy', '.2%', r['test_accuracy'])} |")
    out.append('')
    return out


def _replace(page: str, start_mark: str, end_mark: str, text: str) -> str:
    start = page.index(start_mark) + len(start_mark)
    end = page.index(end_mark)
    return page[:start] + text + page[end:]


def updated(page: str) -> str:
    page = _replace(page, START, END, '\n' + cpu_section() + '\n')
    return _replace(page, GPU_START, GPU_END, gpu_section())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--check', action='store_true', help='only check that the page is up to date')
    args = parser.parse_args(argv)
    page = PAGE.read_text(encoding='utf-8')
    new = updated(page)
    if args.check:
        if new != page:
            print(f'{PAGE.relative_to(ROOT)} is not up to date: run python benchmarks/performance_page.py')
            return 1
        return 0
    from labml_nn_bn.figure_tools import write_atomically
    write_atomically(PAGE, new.encode('utf-8'))
    print(f'wrote {PAGE.relative_to(ROOT)}')
    return 0


if __name__ == '__main__':
    import cli_checks
    sys.exit(cli_checks.run(main))
