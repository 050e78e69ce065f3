"""
The `variance_identity` experiment: E[x²] − E[x]² loses the variance to cancellation when the
mean is large, the stable forms do not, and the JSON keeps the schema the BatchNorm page quotes.
"""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from labml_nn_bn.experiments import variance_identity as vi
from labml_nn_bn.figures import FIGURES_DIR
from conftest import assert_bad_out_is_refused_before_the_run
from site_build import ROOT

STABLE = ['shifted', 'torch_var_mean', 'torch_batch_norm']


@pytest.fixture(scope='module')
def float32_at_1e3():
    return vi.measure_one(1e3, torch.float32, seed=0)


def test_identity_cancels_at_offset_1e3_in_float32_while_stable_forms_do_not(float32_at_1e3):
    errors = float32_at_1e3['errors']
    assert errors['identity'] >= 1e-2
    for name in STABLE:
        assert errors[name] <= 1e-4, name
    # The two-pass form only suffers from the rounded mean: far better than the identity
    assert errors['two_pass'] <= errors['identity'] / 100


def test_identity_variance_turns_negative_and_the_output_is_nan():
    row = vi.measure_one(1e4, torch.float32, seed=0)
    assert row['identity_negative_channels'] > 0
    assert math.isnan(row['errors']['identity'])
    assert row['errors']['shifted'] <= 1e-6


def test_float16_input_overflow_is_recorded_not_measured():
    row = vi.measure_one(1e5, torch.float16, seed=0)
    assert row['input_overflow'] and all(math.isnan(e) for e in row['errors'].values())
    row = vi.measure_one(1e3, torch.float16, seed=0)
    assert row['identity_square_overflow'] and not row['input_overflow']
    assert row['errors']['shifted'] <= 2 * row['floor']


def test_relative_error_is_measured_against_float64():
    x = vi.make_input(10., torch.float32, seed=0)
    ref = vi.reference(x)
    assert vi.relative_error(ref, ref) == 0.
    assert vi.relative_error(ref * 1.01, ref) == pytest.approx(0.01)
    assert math.isnan(vi.relative_error(ref * float('nan'), ref))


def _check_schema(values, smoke=True):
    assert sorted(values) == sorted(vi.DTYPES)
    keys = [vi.offset_key(offset) for offset in vi.offsets_for(smoke)]
    assert set(vi.DECADES) <= set(keys)
    for dtype, methods in values.items():
        assert sorted(methods) == sorted([*vi.METHODS, 'floor'])
        for name, by_offset in methods.items():
            assert sorted(by_offset) == sorted(keys)
            for value in by_offset.values():
                assert value == 'nan' or (isinstance(value, float) and math.isfinite(value))


def test_committed_json_has_the_schema_and_the_current_numbers():
    values = json.loads((FIGURES_DIR / 'variance_identity.json').read_text())['values']
    _check_schema(values, smoke=False)
    row = vi.measure_one(1e3, torch.float32, seed=0)
    assert values['float32']['identity']['1e3'] == pytest.approx(row['errors']['identity'], rel=1e-6)


def test_command_line_smoke_run_writes_figure_json_and_labml_run(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, '-m', 'labml_nn_bn.experiments.variance_identity',
                          '--smoke', '--out', str(tmp_path / 'figs')], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'float32: relative error' in out.stdout
    assert (tmp_path / 'figs' / 'variance_identity.svg').stat().st_size > 1000
    _check_schema(json.loads((tmp_path / 'figs' / 'variance_identity.json').read_text())['values'])
    runs = list((tmp_path / 'logs' / 'variance_identity').iterdir())
    assert len(runs) == 1 and (runs[0] / 'run.yaml').exists()
    bad = subprocess.run([sys.executable, '-m', 'labml_nn_bn.experiments.variance_identity',
                          '--seed', '-3'], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and 'argument --seed: expected an integer >= 0 and < 2**64, got -3' in bad.stderr


def test_a_bad_out_is_refused_before_the_run(tmp_path):
    assert_bad_out_is_refused_before_the_run('labml_nn_bn.experiments.variance_identity', tmp_path)
