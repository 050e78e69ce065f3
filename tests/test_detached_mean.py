"""
The `detached_mean` experiment (Section 2 of the paper): with the statistics detached, the
bias drifts and the scale is thrown across zero; with the gradient through them, neither moves.
"""
import os
import subprocess
import sys

import pytest

from labml_nn_bn.experiments import detached_mean
from conftest import assert_bad_out_is_refused_before_the_run
from site_build import ROOT


@pytest.fixture(scope='module')
def smoke():
    return detached_mean.measure(smoke=True)


def test_detached_bias_drifts_while_the_gradient_through_the_mean_is_zero(smoke):
    detached, through = smoke['runs']['mean']['detached'], smoke['runs']['mean']['through']
    assert detached['b_norm'][-1] >= 10 * detached['b_norm'][0]
    # The drift buys nothing: the loss does not move
    assert detached['loss'][-1] == pytest.approx(detached['loss'][0], rel=1e-4)
    assert max(through['grad_b']) <= 1e-6
    assert through['b_norm'][-1] == pytest.approx(through['b_norm'][0], abs=1e-5)
    # The detached gradient is the unreachable part of the target, -2 E[u] / C, at every step
    u = detached_mean.make_data(0)
    expected = (2 * u.mean(dim=0) / detached_mean.C).abs().max().item()
    assert detached['grad_b'][0] == pytest.approx(expected, rel=1e-4)
    assert detached['grad_b'][-1] == pytest.approx(expected, rel=1e-3)


def test_detached_scale_collapses_and_flips_while_through_the_statistics_it_stays():
    u = detached_mean.make_data(0)
    steps, lr = detached_mean.STEPS['scale'], detached_mean.LR['scale']
    detached = detached_mean.train_scale(u, True, steps, lr)
    through = detached_mean.train_scale(u, False, steps, lr)
    # Some feature's scale crosses zero, and the loss jumps when it does
    assert any((p > 0) != (q > 0) for a, b in zip(detached['a'], detached['a'][1:])
               for p, q in zip(a, b))
    assert max(detached['loss']) > 2 * detached['loss'][0]
    assert max(through['grad_a']) <= 1e-6
    assert all(v == 1. for row in through['a'] for v in row)


def _cli(args, cwd):
    env = dict(os.environ, HOME=str(cwd), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-m', 'labml_nn_bn.experiments.detached_mean'] + args,
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_command_line_smoke_run_writes_figure_and_labml_run(tmp_path):
    out = _cli(['--smoke', '--out', str(tmp_path / 'figs')], tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / 'figs' / 'detached_mean.svg').stat().st_size > 1000
    assert (tmp_path / 'figs' / 'detached_mean.json').exists()
    runs = list((tmp_path / 'logs' / 'detached_mean').iterdir())
    assert len(runs) == 1 and (runs[0] / 'run.yaml').exists()


def test_command_line_rejects_bad_arguments(tmp_path):
    out = _cli(['--seed', '-1'], tmp_path)
    assert out.returncode == 2 and 'argument --seed: expected an integer >= 0 and < 2**64, got -1' in out.stderr


def test_a_bad_out_is_refused_before_the_run(tmp_path):
    assert_bad_out_is_refused_before_the_run('labml_nn_bn.experiments.detached_mean', tmp_path)
