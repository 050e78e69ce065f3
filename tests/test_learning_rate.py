"""
Higher learning rates (`labml_nn_bn.experiments.learning_rate`), in smoke mode: the CLI sweep
works, a diverged run is a recorded result (the CLI still succeeds), and at 30 times the
reference rate the network without batch norm diverges while the one with it trains.
"""
import dataclasses
import json
import math

import pytest
import torch

from labml_nn_bn import BatchNorm, figure_tools
from labml_nn_bn.experiments import learning_rate as lr

PREFIX = 'python -m labml_nn_bn.experiments.learning_rate: error: '


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    # One CLI smoke sweep (rates 0.1 and 3, then 5x the reference; 2 seeds; 100 steps),
    # shared by the tests below
    folder = tmp_path_factory.mktemp('learning_rate')
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = lr.main(['--smoke', '--figure', str(folder / 'figure.svg')])
    return result, folder


def _row(values, key, rate):
    return next(r for r in values[key]['runs'] if math.isclose(r['lr'], rate))


def test_cli_smoke_run_writes_the_figure_and_is_tracked(smoke_run):
    result, folder = smoke_run
    svg = (folder / 'figure.svg').read_text()
    assert svg.startswith('<?xml') and '<svg' in svg and 'href="http' not in svg
    assert (folder / 'logs').is_dir()  # tracked with labml
    # The grid, then the reference rate's 5x that the grid lacks (30x = 3 is in it)
    values = result['values']
    assert values['reference_lr'] == 0.1 and values['lr_5x'] == 0.5 and values['lr_30x'] == 3.
    assert values['rates'] == [0.1, 0.5, 3.]
    for key in ('no_bn', 'bn'):
        assert len(result['runs'][key]) == 3 * 2
        for row in values[key]['runs']:
            assert row['seeds'] == [0, 1]
            assert len(row['curves']) == len(row['diverged_at']) == len(row['final']) == 2
            # The records' steps: all of them, or as far as the longest diverged run got
            full = list(range(0, 101, 25))
            assert row['steps'] == (full if None in row['diverged_at']
                                    else full[:len(row['steps'])])
            for curve, diverged in zip(row['curves'], row['diverged_at']):
                if diverged is None:
                    assert len(curve) == len(row['steps'])
                else:
                    # A diverged run's curve stops at its last record before the divergence
                    assert 1 <= len(curve) <= len(row['steps']) < len(full)
                    assert row['steps'][len(curve) - 1] < diverged
    # The check of where the limit with batch norm comes from: the network with batch norm
    # once more at the lowest rate at which it fails, its other parameters at the reference
    split = values['bn_split']
    if split['lr'] is not None:
        assert split['other_lr'] == 0.1 and split['lr'] > values['bn']['best_lr']
        assert len(split['runs'][0]['curves']) == 2
        assert all(r.other_lr == 0.1 for r in result['runs']['bn_split'])


def test_values_are_finite_json(smoke_run, tmp_path):
    # A diverged run must not put a NaN into the JSON: `save_values` refuses one
    path = figure_tools.save_values(tmp_path / 'v.json', smoke_run[0]['values'], 'stamp')
    loaded = json.loads(path.read_text())['values']
    assert loaded['no_bn']['n_diverged_at_30x'] == 2
    assert loaded['no_bn']['accuracy_at_30x'] is None


def test_at_30x_only_the_network_without_batch_norm_diverges(smoke_run):
    values = smoke_run[0]['values']
    no_bn, bn = _row(values, 'no_bn', 3.), _row(values, 'bn', 3.)
    # Divergence is a result: recorded with its step, the run kept
    assert all(d is not None and 1 <= d <= 100 for d in no_bn['diverged_at'])
    assert no_bn['median'] is None and no_bn['final'] == [None, None]
    assert bn['diverged_at'] == [None, None] and bn['min'] > 0.6
    assert values['no_bn']['first_diverged_lr'] == 3. and values['bn']['first_diverged_lr'] is None
    # And with batch norm the reference rate learns faster
    assert _row(values, 'bn', 0.1)['median'] > _row(values, 'no_bn', 0.1)['median'] + 0.2


def test_a_huge_rate_diverges_as_a_result(tmp_path):
    settings = dataclasses.replace(lr.SMOKE, steps=30, record_every=5)
    tensors, _ = lr.load_data(settings, log=lambda *_: None)
    run = lr.train(settings, False, 1000., 0, tensors)
    assert run.diverged_at is not None and run.diverged_at <= 30
    assert run.final is None and run.steps[-1] < run.diverged_at
    assert all(math.isfinite(a) for a in run.accuracy)
    row = lr.rate_values(1000., [run], 0.9)
    assert row['median'] is None and row['n_diverged'] == 1 and row['steps_to_target'] == [None]
    figure_tools.save_values(tmp_path / 'v.json', row, 'stamp')


def _run(rate, final=None, diverged_at=None, seed=0, steps=(0, 25, 50)):
    accuracy = [0.1, 0.5, final if final is not None else 0.3]
    return lr.Run(False, rate, seed, list(steps), accuracy, diverged_at)


def test_summaries_count_diverged_runs_apart():
    runs = [_run(0.1, 0.8), _run(0.1, 0.9, seed=1), _run(0.1, diverged_at=40, seed=2),
            _run(1., 0.95), _run(1., diverged_at=3, seed=1), _run(1., diverged_at=7, seed=2)]
    assert lr.median_final(runs[:3]) == pytest.approx(0.85)
    # 1.0 has the best median of its finished runs, but two of its three seeds diverged
    assert lr.best_rate(runs) == 0.1
    assert lr.trains(runs[:3], 0.8) and not lr.trains(runs[3:], 0.8)
    assert lr.median_steps([25, None, 50]) == 50 and lr.median_steps([None, None, 25]) is None
    assert lr.median_steps([50, 25]) == 25
    assert lr.best_rate(runs[4:]) is None  # every run diverged
    # Where the split check runs: the lowest rate above the best one that does not train
    assert lr.lowest_failed_rate(runs + [_run(3., 0.5)], 0.8) == 1.
    assert lr.lowest_failed_rate(runs[:3] + [_run(3., 0.9)], 0.8) is None
    # Rates equal up to rounding are one rate
    assert list(lr.by_rate([_run(3.), _run(0.1 * 30)])) == [3.]


def test_the_network():
    net = lr.Network(batch_norm=True, activation='sigmoid')
    assert [tuple(l.weight.shape) for l in net.linears] == [(100, 784)] + [(100, 100)] * 4
    assert all(l.bias is None for l in net.linears)
    assert all(isinstance(n, BatchNorm) for n in net.norms)
    assert all(l.bias is not None for l in lr.Network(batch_norm=False).linears)
    assert net(torch.randn(60, 1, 28, 28)).shape == (60, 10)
    with pytest.raises(ValueError, match='activation must be one of'):
        lr.Network(True, 'tanh')


def test_make_figures_writes_both_activations(tmp_path, monkeypatch):
    monkeypatch.setattr(lr, 'SMOKE', dataclasses.replace(lr.SMOKE, learning_rates=(0.1,),
                                                         seeds=(0,), steps=20, record_every=10))
    paths = lr.make_figures(tmp_path, smoke=True)
    assert sorted(p.name for p in paths) == ['learning_rate.json', 'learning_rate.svg',
                                             'learning_rate_sigmoid.json',
                                             'learning_rate_sigmoid.svg']
    relu = json.loads((tmp_path / 'learning_rate.json').read_text())
    sigmoid = json.loads((tmp_path / 'learning_rate_sigmoid.json').read_text())
    assert relu['values']['activation'] == 'relu' and sigmoid['values']['activation'] == 'sigmoid'
    # The sigmoid sweep refers to the ReLU network's rate, as BN-x5-Sigmoid does to Inception's
    assert sigmoid['values']['reference_lr'] == relu['values']['reference_lr'] == 0.1
    assert sigmoid['values']['target'] == 0.85 and relu['values']['target'] == 0.9
    assert 'mnist' in relu['stamp'].lower() and '20 steps' in relu['stamp']


@pytest.mark.parametrize('argv', [['--steps', '0'], ['--batch-size', '1'], ['--lrs', '0'],
                                  ['--lrs', '0.1', 'nan'], ['--seeds', '-1'], ['--seeds', '1', '1'],
                                  ['--activation', 'tanh'], ['--target', '1.5'],
                                  ['--reference-lr', '-1'], ['--record-every', '0'],
                                  ['--layers', '0'], ['--device', 'nonsense']])
def test_cli_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        lr.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any('Traceback' in line for line in err)
    assert err[-1].startswith(PREFIX + 'argument')


def test_bad_settings_are_refused_before_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lr, 'load_data', lambda *a, **k: pytest.fail('the data was loaded'))
    with pytest.raises(SystemExit) as e:
        lr.main(['--smoke', '--record-every', '200'])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        PREFIX + 'argument --record-every: expected at most --steps (100), got 200')
    assert not (tmp_path / 'logs').exists()


def test_an_unexpected_error_still_fails(tmp_path, monkeypatch, capsys):
    # Divergence is a result; anything else that goes wrong is not
    def broken(*args, **kwargs):
        raise ValueError('something else went wrong')

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lr, 'train', broken)
    with pytest.raises(SystemExit) as e:
        lr.main(['--smoke'])
    assert e.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == PREFIX + 'something else went wrong'


def test_values_and_figure_without_a_split_check(tmp_path):
    # With batch norm training at every rate above its best, there is no split check to run
    def runs(batch_norm, finals):
        return [lr.Run(batch_norm, rate, seed, [0, 25, 50], [0.1, 0.5, final], None)
                if final is not None else lr.Run(batch_norm, rate, seed, [0, 25], [0.1, 0.5], 30)
                for rate, per_seed in finals.items() for seed, final in enumerate(per_seed)]

    result = {'runs': {'no_bn': runs(False, {0.1: [0.95, 0.94, 0.93], 0.5: [0.9, 0.1, 0.92],
                                             3.: [None, None, 0.1]}),
                       'bn': runs(True, {0.1: [0.96, 0.96, 0.95], 0.5: [0.97, 0.97, 0.96],
                                         3.: [0.97, 0.96, 0.95]}),
                       'bn_split': []},
              'reference_lr': 0.1, 'reference': 'the best rate without BN', 'split_lr': None,
              'dataset': 'synthetic', 'device': 'cpu'}
    settings = dataclasses.replace(lr.SMOKE, steps=50, seeds=(0, 1, 2))
    values = lr.values_of(result, settings)
    assert values['bn_split']['lr'] is None and values['bn_split']['steps_to_target'] is None
    assert values['no_bn']['best_lr'] == 0.1 and values['bn']['best_lr'] == 0.5
    assert values['no_bn']['highest_trained_lr'] == 0.5 and values['bn']['highest_trained_lr'] == 3.
    assert values['trained_lr_ratio'] == pytest.approx(6.)
    assert values['no_bn']['diverged_at_30x'] == [30, 30, None]
    assert values['no_bn']['accuracy_at_30x'] == 0.1
    lr.plot(values, 'stamp', tmp_path / 'figure.svg')
    figure_tools.save_values(tmp_path / 'v.json', values, 'stamp')


def test_a_sweep_in_which_every_run_diverges_still_succeeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = lr.main(['--smoke', '--lrs', '1000', '--seeds', '0', '--steps', '20',
                      '--record-every', '10', '--figure', str(tmp_path / 'figure.svg')])
    values = result['values']
    assert values['no_bn']['runs'][0]['diverged_at'][0] is not None
    assert values['no_bn']['best_lr'] is None and values['no_bn']['best_accuracy'] is None
    assert values['reference_lr'] == 1000. and 'every run without BN diverged' in values['reference']
    assert (tmp_path / 'figure.svg').exists()
    figure_tools.save_values(tmp_path / 'v.json', values, 'stamp')
