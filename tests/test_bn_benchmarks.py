"""
The speed benchmarks of batch normalization (`benchmarks/bn_speed.py`, `benchmarks/resnet_step.py`)
in their `--smoke` form: they run, and write the JSON the Performance page quotes. No timing is
checked here; speed targets live in the benchmarks.
"""
import importlib.util
import json

import pytest
import torch

from site_build import ROOT


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'benchmarks' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def bn_speed():
    return _load('bn_speed')


@pytest.fixture(scope='module')
def resnet_step():
    return _load('resnet_step')


def test_bn_speed_smoke_writes_the_results(bn_speed, tmp_path, capsys):
    bn_speed.main(['--smoke', '--device', 'cpu', '--rounds', '1', '--out', str(tmp_path), '--table'])
    data = json.loads((tmp_path / 'bn_speed-cpu.json').read_text())
    meta = data['values'].pop('meta')
    # the evaluation and memory targets are checked on every device; the smoke inputs have no
    # other target
    targets = data['values'].pop('targets')
    assert set(targets) == {'eval_eager', 'cpu_eager_peak_memory'}
    assert meta['device'].startswith('CPU') and meta['torch'] == torch.__version__ and meta['date']
    assert set(data['values']) == {bn_speed.input_key(*i) for i in bn_speed.SMOKE_INPUTS}
    for result in data['values'].values():
        n_bytes = result['bytes_per_pass']
        for mode, passes in (('train', 5), ('eval', 2)):
            v = result[mode]
            assert v['minimal_bytes'] == passes * n_bytes
            # No fast path on CPU: native, ours and the copy
            assert set(v) >= {'native', 'eager', 'copy'} and 'fast' not in v
            assert v['native']['ratio'] == 1.
            assert v['eager']['ratio'] == pytest.approx(v['eager']['ms'] / v['native']['ms'])
            assert v['eager']['gbps'] == pytest.approx(passes * n_bytes / v['eager']['ms'] / 1e6)
            assert v['copy']['gbps'] == pytest.approx(2 * n_bytes / v['copy']['ms'] / 1e6)
        # The peak memory of a training step, from the profiler's record of allocations: at
        # least the output and the input gradient, one pass each
        for impl in ('native', 'eager'):
            assert result['train'][impl]['peak_bytes'] >= 2 * n_bytes
        assert result['train']['eager']['peak_ratio'] == pytest.approx(
            result['train']['eager']['peak_bytes'] / result['train']['native']['peak_bytes'])
        # Page faults per call, counted on a CPU
        for mode in ('train', 'eval'):
            for impl in ('native', 'eager', 'copy'):
                assert result[mode][impl]['faults'] >= 0
    # The page's tables quote the JSON
    assert '<!-- measured bn_speed-cpu:fp32_16x8.train.eager.ratio .2f -->' in capsys.readouterr().out


def test_bn_speed_counts_the_page_faults_of_fresh_memory(bn_speed):
    pytest.importorskip('resource')  # where the system keeps the count
    # 64 MiB is above the largest size glibc's allocator serves from its heap: it comes fresh
    # from the system, and every page written is a fault (fewer with huge pages, never none)
    before = bn_speed._page_faults()
    torch.ones(1 << 24)
    assert bn_speed._page_faults() > before


# Memory is counted, not timed, so the target can be checked here. A bfloat16 training step on
# the CPU computes in float32: widened whole, the input and the gradient would hold 12 bytes a
# value at the peak, where torch's native batch norm holds 6 (the output, the input gradient and
# one more). In pieces of the batch the float32 copies hold one piece at a time.
@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last])
def test_a_bfloat16_training_step_on_the_cpu_holds_no_more_memory_than_torchs(
        bn_speed, memory_format):
    torch.manual_seed(0)
    shape = (16, 64, 32, 32)  # 2^20 values, the smallest input that goes through in pieces
    x = torch.randn(shape).bfloat16().contiguous(memory_format=memory_format).requires_grad_()
    grad = torch.randn(shape).bfloat16().contiguous(memory_format=memory_format)
    modules = bn_speed.make_modules(64, 4, torch.device('cpu'), fast=False)
    peak = {name: bn_speed.peak_memory(bn_speed.step_function(module, 'train', x, grad),
                                       torch.device('cpu'))
            for name, module in modules.items()}
    assert peak['eager'] <= 1.1 * peak['native'], peak


def test_bn_speed_rejects_bad_arguments(bn_speed, capsys):
    with pytest.raises(SystemExit):
        bn_speed.main(['--rounds', '0', '--device', 'cpu'])
    assert '--rounds must be at least 1' in capsys.readouterr().err


def test_our_resnet50_is_torchvisions_architecture(resnet_step):
    model, _ = resnet_step.resnet50()
    # torchvision's resnet50 has 25,557,032 parameters and 53 BatchNorm2d
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    assert resnet_step.swap_batch_norms(model, resnet_step.BatchNorm) == 53
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_the_gpu_targets_are_read_from_a_gpu_run(bn_speed):
    # The named GPU targets (the 256×64×56×56 ones) are evaluated for a CUDA run, and
    # the CPU's are not; a CPU run gets the CPU's
    def entry(ms):
        return {'ms': ms, 'ratio': ms / 2., 'peak_ratio': 1.}
    results = {'fp32_256x64x56x56': {'train': {'native': entry(2.), 'eager': entry(2.2),
                                               'fast': entry(0.4)},
                                     'eval': {'native': entry(2.), 'eager': entry(2.)}},
               'bf16_cl_256x64x56x56': {'train': {'native': entry(2.), 'eager': entry(4.),
                                                  'fast': entry(1.5)},
                                        'eval': {'native': entry(2.), 'eager': entry(2.)}}}
    found = bn_speed.targets(results, 'cuda')
    assert found['gpu_fast_256x64x56x56_ms'] == {'value': 0.4, 'limit': 0.5, 'met': 'yes'}
    assert found['gpu_eager_256x64x56x56']['value'] == 1.1
    assert found['gpu_fast_bf16_cl_256x64x56x56']['met'] == 'yes'
    assert not any(name.startswith('cpu') for name in found)
    assert not any(name.startswith('gpu') for name in bn_speed.targets(results, 'cpu'))


def test_resnet_step_smoke_writes_the_results(resnet_step, tmp_path):
    resnet_step.main(['--smoke', '--device', 'cpu', '--settings', 'fp32', '--rounds', '1',
                      '--size', '16', '--out', str(tmp_path)])
    data = json.loads((tmp_path / 'resnet_step-cpu.json').read_text())['values']
    assert data['meta']['device'].startswith('CPU')
    fp32 = data['fp32']
    assert fp32['native']['ratio'] == 1. and fp32['eager']['ms'] > 0 and fp32['batch_norms'] == 17
    # The peak memory of a step, on a CPU too
    assert fp32['native']['peak_ratio'] == 1. and fp32['eager']['peak_bytes'] > 0


def test_resnet_step_can_run_the_backward_on_the_calling_thread(resnet_step, tmp_path, monkeypatch):
    # --single-thread-backward: every backward pass under set_multithreading_enabled(False),
    # written to its own JSON
    seen = []
    original = torch.autograd.set_multithreading_enabled

    def spy(mode):
        seen.append(mode)
        return original(mode)
    monkeypatch.setattr(torch.autograd, 'set_multithreading_enabled', spy)
    resnet_step.main(['--smoke', '--device', 'cpu', '--settings', 'fp32', '--rounds', '1',
                      '--size', '16', '--single-thread-backward', '--out', str(tmp_path)])
    data = json.loads((tmp_path / 'resnet_step-cpu-single-thread-backward.json').read_text())
    assert data['values']['fp32']['single_thread_backward'] is True
    assert 'backward on the calling thread' in data['stamp']
    assert seen and not any(seen)


def test_the_performance_page_quotes_the_committed_measurements():
    # docs/performance.md's CPU section is what benchmarks/performance_page.py makes of the JSON
    page = _load('performance_page')
    assert page.main(['--check']) == 0


def test_the_gpu_section_quotes_a_gpu_run(tmp_path):
    # A GPU run's JSON, made here from the committed CPU one with a fused column added (the
    # numbers are stand-ins that never leave this test): every quote the section writes must
    # name a value that exists, and show it as the JSON has it
    from labml_nn_bn import measured
    page = _load('performance_page')
    assert 'not measured yet' in page.gpu_section(tmp_path)
    bn = json.loads((ROOT / 'docs' / 'figures' / 'bn_speed-cpu.json').read_text())
    for key, result in bn['values'].items():
        if key in ('meta', 'targets'):
            continue
        for mode in ('train', 'eval'):
            result[mode]['fast'] = dict(result[mode]['eager'])
            for impl in ('native', 'eager', 'fast'):
                result[mode][impl]['peak_ratio'] = 1.
    bn['values']['meta']['triton'] = '3.9.0'
    (tmp_path / 'bn_speed-test-gpu.json').write_text(json.dumps(bn))
    resnet = json.loads((ROOT / 'docs' / 'figures' / 'resnet_step-cpu.json').read_text())
    for setting in ('fp32', 'bf16'):
        resnet['values'][setting]['fast'] = dict(resnet['values'][setting]['eager'])
        for impl in ('native', 'eager', 'fast'):
            resnet['values'][setting][impl]['peak_ratio'] = 1.
    (tmp_path / 'resnet_step-test-gpu.json').write_text(json.dumps(resnet))
    text = page.gpu_section(tmp_path)
    assert 'not measured yet' not in text and 'fast ms' in text and 'ResNet-50' in text
    quotes = [m for m in measured.QUOTE.finditer(text)]
    assert len(quotes) > 50
    for m in quotes:
        assert measured.formatted(tmp_path, m.group(1), m.group(2), m.group(3) or '') == m.group(4)
