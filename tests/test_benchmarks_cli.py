"""
The benchmarks' command lines (`benchmarks/*.py`, run as scripts): every bad input ends, before
anything is measured, in one error line that names the option and what was given (exit 2, no
traceback), and a `--smoke` run never writes into `benchmarks/results/` or `docs/figures/`.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from site_build import ROOT

BENCHMARKS = ROOT / 'benchmarks'
COMMITTED = [ROOT / 'benchmarks' / 'results', ROOT / 'docs' / 'figures']


def run(script, *args, cwd=None, timeout=300):
    env = dict(os.environ, NO_MKDOCS_2_WARNING='1')
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def assert_refused(result, *words, rc=2):
    """Refused with one `error:` line that contains `words`, before anything was measured."""
    assert result.returncode == rc, result.stdout + result.stderr
    assert 'Traceback' not in result.stderr, result.stderr
    assert result.stdout == '', result.stdout
    errors = [line for line in result.stderr.splitlines() if 'error:' in line]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    # Nothing but argparse's usage lines besides the error
    others = [line for line in result.stderr.splitlines()
              if line not in errors and not line.startswith(('usage:', ' '))]
    assert others == [], result.stderr


def snapshot():
    """(mtime, contents) of every file where the committed measurements live."""
    files = {}
    for folder in COMMITTED:
        for path in sorted(folder.rglob('*')):
            if path.is_file():
                files[path] = (path.stat().st_mtime_ns, path.read_bytes())
    return files


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / 'afile'
    path.write_text('not a folder\n')
    return path


CUDA = torch.cuda.is_available()


@pytest.mark.parametrize('script', ['bn_speed.py', 'resnet_step.py', 'fold_speed.py'])
def test_speed_benchmarks_refuse_bad_devices_threads_and_paths(script, tmp_path, a_file):
    smoke = ['--smoke']
    out = tmp_path / 'out'
    assert_refused(run(script, *smoke, '--device', 'foo', '--out', out), '--device', "'foo'")
    if not CUDA:
        assert_refused(run(script, *smoke, '--device', 'cuda', '--out', out), '--device', 'cuda')
    if script != 'resnet_step.py':
        assert_refused(run(script, *smoke, '--threads', '-3', '--out', out), '--threads', '-3')
    if script == 'fold_speed.py':
        # a JSON path: not in a file, not where nothing can be written
        assert_refused(run(script, *smoke, '--out', a_file / 'x.json'), '--out', str(a_file))
        assert_refused(run(script, *smoke, '--out', '/proc/x.json'), '--out', '/proc/x.json')
    else:
        # a folder: not a file, not where nothing can be written
        assert_refused(run(script, *smoke, '--out', a_file), '--out', str(a_file))
        assert_refused(run(script, *smoke, '--out', '/proc/x'), '--out', '/proc/x')
        # A smoke run never writes docs/figures/
        assert_refused(run(script, *smoke, '--figures', '--out', out), '--figures', '--smoke')
    assert not out.exists()


def test_bn_speed_checks_the_output_folder_before_measuring():
    # A long run (the full CPU inputs) that would only fail at the end, were --out not checked
    result = run('bn_speed.py', '--device', 'cpu', '--out', '/proc/x', timeout=60)
    assert_refused(result, '--out', '/proc/x')


def test_resnet_step_refuses_a_batch_of_one(tmp_path):
    result = run('resnet_step.py', '--smoke', '--device', 'cpu', '--batch', '1', '--rounds', '1',
                 '--out', tmp_path)
    assert_refused(result, '--batch', 'got 1', 'more than one value per channel')


def test_fold_speed_refuses_non_positive_sizes(tmp_path):
    for option in ('--batch-size', '--repeats', '--calls'):
        assert_refused(run('fold_speed.py', option, '0', '--out', tmp_path / 'x.json'),
                       option, 'got 0')


def test_mnist_throughput_refuses_bad_arguments(tmp_path, a_file):
    script = 'mnist_throughput.py'
    assert_refused(run(script, '--batch-size', '0', '--no-cpu'), '--batch-size', 'got 0')
    assert_refused(run(script, '--repeats', '0', '--no-cpu', '--dataset', 'mnist-5k'),
                   '--repeats', 'got 0')
    assert_refused(run(script, '--dataset', 'idx'), '--dataset idx', '--data-dir')
    assert_refused(run(script, '--dataset', 'idx', '--data-dir', tmp_path / 'missing'),
                   '--data-dir', 'missing')
    assert_refused(run(script, '--data-dir', a_file), '--data-dir', str(a_file))
    # A data error (a folder without IDX files): not a usage error, but one line all the same
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert_refused(run(script, '--dataset', 'idx', '--data-dir', empty), '--dataset idx',
                   str(empty), rc=1)


def test_help_shows_every_default_once():
    for script in ('bn_speed.py', 'resnet_step.py', 'fold_speed.py', 'mnist_throughput.py'):
        result = run(script, '--help')
        assert result.returncode == 0, result.stderr
        text = ' '.join(result.stdout.split())
        assert '(default: None)' not in text, (script, text)
        for option in text.split(' --')[1:]:
            assert option.count('default:') <= 1, (script, option)
    text = ' '.join(run('mnist_throughput.py', '--help').stdout.split())
    assert '--no-compile (default: True)' not in text and '--compile, --no-compile' in text
    fold = ' '.join(run('fold_speed.py', '--help').stdout.split())
    assert 'BATCH_SIZE images per forward pass' in fold and 'REPEATS timed repeats' in fold


def test_smoke_runs_never_write_the_committed_measurements(tmp_path):
    # Without --out, a smoke run writes test-output/bench-smoke/, not benchmarks/results/ or
    # docs/figures/
    before = snapshot()
    smoke_out = ROOT / 'test-output' / 'bench-smoke'
    for script, args, name in (
            ('bn_speed.py', ['--rounds', '1'], 'bn_speed-cpu.json'),
            ('fold_speed.py', [], 'fold_speed-cpu.json'),
            ('resnet_step.py', ['--settings', 'fp32', '--rounds', '1', '--size', '16'],
             'resnet_step-cpu.json')):
        written = smoke_out / name
        if written.exists():
            written.unlink()
        result = run(script, '--smoke', '--device', 'cpu', *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(written.read_text())
    assert snapshot() == before


@pytest.mark.parametrize('script', ['bn_speed.py', 'resnet_step.py', 'fold_speed.py'])
def test_smoke_runs_refuse_to_write_the_committed_folders(script, tmp_path):
    for out in ('benchmarks/results', 'docs/figures/x.json'):
        assert_refused(run(script, '--smoke', '--device', 'cpu', '--out', ROOT / out),
                       '--out', '--smoke')


def test_fold_speed_takes_a_trailing_slash_for_a_folder(tmp_path):
    # `--out new/` names a folder, as in every other benchmark, even before it exists
    result = run('fold_speed.py', '--smoke', '--device', 'cpu', '--out', f'{tmp_path / "new"}/')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'new').is_dir()
    assert json.loads((tmp_path / 'new' / 'fold_speed-cpu.json').read_text())


def test_a_trailing_slash_never_names_a_file(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import cli_checks
    finally:
        sys.path.remove(str(BENCHMARKS))
    import argparse
    with pytest.raises(SystemExit):
        cli_checks.writable_file(argparse.ArgumentParser(), '--out', f'{tmp_path / "x.json"}/')
    assert not (tmp_path / 'x.json').exists()
    assert cli_checks.names_folder(f'{tmp_path / "new"}/')
    assert not cli_checks.names_folder(tmp_path / 'new.json')


def test_variance_numerics_says_why_a_row_is_nan():
    result = run('variance_numerics.py', '--dtype', 'float16')
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split('\n\n', 1)[1]
    # 1e5 and 1e6 are beyond float16's range: the input itself is inf
    assert "1e5, 1e6: beyond float16's largest finite value (65,504)" in notes, result.stdout
    # The identity's own NaN at 1e4 (its variance cancels to a negative number) is told apart
    assert '1e4, identity: ' in notes
    bf16 = run('variance_numerics.py', '--dtype', 'bfloat16')
    assert 'rounds to one value per channel' in bf16.stdout, bf16.stdout
    # In float32 the input stays in range: only the identity's own failures are left
    float32 = run('variance_numerics.py').stdout
    assert '1e4, identity: ' in float32 and 'beyond' not in float32, float32


def test_mnist_throughput_names_a_damaged_gzip_file(tmp_path):
    from test_data import _patterned, damaged_gzip, fake_mnist, idx_bytes, write_folder
    write_folder(tmp_path, fake_mnist())
    bad = tmp_path / 't10k-images-idx3-ubyte.gz'
    bad.write_bytes(damaged_gzip(idx_bytes(_patterned(20), gz=False)))
    assert_refused(run('mnist_throughput.py', '--dataset', 'idx', '--data-dir', tmp_path,
                       '--no-cpu'), f'{bad}: not a valid gzip file', 'fetch it again', rc=1)


def test_page_load_measures_built_sites_and_refuses_bad_options(built_site, tmp_path):
    site = built_site[0]
    assert_refused(run('page_load.py', '--site', site, '--baseline', tmp_path),
                   '--baseline', 'expected a built site')
    assert_refused(run('page_load.py', '--site', site, '--baseline', site, '--baseline-label',
                       'a', '--baseline-label', 'b'), 'at most one per --baseline')
    assert_refused(run('page_load.py', '--site', site, '--baseline', site,
                       '--baseline-label', 'this tree'), 'different')
    out = tmp_path / 'page_load.json'
    result = run('page_load.py', '--smoke', '--site', site, '--baseline', site, '--out', out)
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(out.read_text())
    assert found['smoke'] and set(found['sites']) == {'this tree', 'baseline'}
    on = found['sites']['this tree']['javascript_on']
    off = found['sites']['this tree']['javascript_off']
    # With JavaScript the BatchNorm page lays its far sections out after the load event;
    # without, everything is laid out by then
    assert on['laid_out_ms']['median'] > on['load_ms']['median'] > 0
    assert off['laid_out_ms']['median'] == off['load_ms']['median']
    assert on['main_thread_cpu_ms']['median'] > 0
