"""
Figure 1 of the paper (`labml_nn_bn.experiments.covariate_shift`), in smoke mode: the CLI run
works, and its qualitative result holds.
"""
import json

import pytest
import torch

from labml_nn_bn import BatchNorm
from labml_nn_bn.experiments import covariate_shift as cs


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    # One CLI smoke run (both networks, 300 steps each) shared by the tests below
    folder = tmp_path_factory.mktemp('covariate_shift')
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = cs.main(['--smoke', '--figure', str(folder / 'figure.svg')])
    return result, folder


def test_cli_smoke_run_writes_the_figure(smoke_run):
    result, folder = smoke_run
    svg = (folder / 'figure.svg').read_text()
    assert svg.startswith('<?xml') and '<svg' in svg and 'href="http' not in svg
    assert (folder / 'logs').is_dir()  # tracked with labml
    runs = result['runs']
    assert runs['bn'].steps == list(range(0, 301, 50)) == runs['no_bn'].steps
    assert runs['bn'].percentiles.shape == (7, 3, 100)


def test_with_batch_norm_the_sigmoid_input_drifts_less(smoke_run):
    values = cs.values_of(smoke_run[0], cs.SMOKE)
    assert values['bn']['drift_median'] < 0.5 * values['no_bn']['drift_median']
    # Percentiles are ordered at every record
    for key in ('bn', 'no_bn'):
        q15, q50, q85 = (torch.tensor(p) for p in values[key]['percentiles'])
        assert bool((q15 <= q50).all() and (q50 <= q85).all())


def test_with_batch_norm_the_accuracy_is_not_lower(smoke_run):
    runs = smoke_run[0]['runs']
    assert runs['bn'].accuracy[-1] >= runs['no_bn'].accuracy[-1]
    assert runs['bn'].accuracy[-1] > 0.5


def test_the_network_is_the_papers():
    net = cs.Network(batch_norm=True)
    assert [tuple(l.weight.shape) for l in net.linears] == [(100, 784), (100, 100), (100, 100)]
    assert all(l.bias is None for l in net.linears)
    assert all(isinstance(n, BatchNorm) for n in net.norms)
    plain = cs.Network(batch_norm=False)
    assert all(l.bias is not None for l in plain.linears)
    assert abs(plain.linears[0].weight.std().item() - 0.01) < 1e-3
    x = torch.randn(60, 1, 28, 28)
    assert net(x).shape == (60, 10) and net.sigmoid_input(x).shape == (60, 100)


@pytest.mark.parametrize('argv', [['--steps', '0'], ['--batch-size', '1'], ['--lr', '-1'],
                                  ['--probe-size', '1'], ['--device', 'nonsense'],
                                  ['--sigma', '0'], ['--record-every', '0']])
def test_cli_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cs.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err)
    assert err[-1].startswith('python -m labml_nn_bn.experiments.covariate_shift: error: argument')


def test_a_batch_larger_than_the_data_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cs.main(['--dataset', 'mnist-5k', '--batch-size', '5000', '--steps', '1'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['python -m labml_nn_bn.experiments.covariate_shift: error: argument '
                   '--batch-size: 5000 is larger than the 4,000 training images; '
                   'use a smaller batch']
    assert not (tmp_path / 'logs').exists()


class _Loaded(Exception):
    """Stops a command line where it would load the data, with the settings it would use."""


def _settings_of(argv, monkeypatch, tmp_path):
    def stop(settings, log=print):
        raise _Loaded(settings)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cs, 'load_data', stop)
    with pytest.raises(_Loaded) as loaded:
        cs.main(argv)
    return loaded.value.args[0]


def test_options_given_with_smoke_are_applied_on_top_of_it(monkeypatch, tmp_path):
    settings = _settings_of(['--smoke', '--steps', '10', '--lr', '0.25', '--seed', '3'],
                            monkeypatch, tmp_path)
    assert (settings.steps, settings.learning_rate, settings.seed) == (10, 0.25, 3)
    # The rest stays as smoke has it; its record spacing shrinks to fit the shorter run
    assert settings.dataset == cs.SMOKE.dataset and settings.probe_size == cs.SMOKE.probe_size
    assert settings.record_every == 10
    assert _settings_of(['--smoke'], monkeypatch, tmp_path) == cs.SMOKE


@pytest.mark.parametrize('argv,message', [
    (['--smoke', '--seed', '-1'], 'argument --seed: expected an integer >= 0'),
    (['--smoke', '--record-every', '100', '--steps', '20'],
     'argument --record-every: expected at most --steps (20), got 100'),
    (['--smoke', '--figure', '.'], 'argument --figure: . is a folder, expected a file name'),
    (['--smoke', '--figure', 'afile/x.svg'], 'afile is a file, expected a folder'),
    # --smoke reads the offline subset, which reads no folder: the folder would be ignored
    (['--smoke', '--data-dir', '.'],
     'argument --data-dir: the offline subset (--dataset mnist-5k) reads no folder'),
])
def test_bad_smoke_options_are_refused_before_the_data(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'afile').write_text('x')
    monkeypatch.setattr(cs, 'load_data', lambda *a, **k: pytest.fail('the data was loaded'))
    with pytest.raises(SystemExit) as e:
        cs.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith('python -m labml_nn_bn.experiments.covariate_shift: error: ')
    assert message in err[-1]


def test_a_probe_larger_than_the_test_set_is_refused_before_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cs.main(['--smoke', '--probe-size', '100000'])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        'python -m labml_nn_bn.experiments.covariate_shift: error: argument --probe-size: '
        'expected at most the 1,000 test images of this data set, got 100,000')
    assert not (tmp_path / 'logs').exists()


def test_a_figure_of_an_earlier_run_may_be_written_again(monkeypatch, tmp_path):
    # The same command twice: the second run replaces the figure (atomically, as every write)
    (tmp_path / 'figure.svg').write_text('<svg/>')
    settings = _settings_of(['--smoke', '--figure', 'figure.svg'], monkeypatch, tmp_path)
    assert settings == cs.SMOKE
