"""
Figure 1 of the paper (`labml_nn_bn.experiments.covariate_shift`), in smoke mode: the CLI run
works, and its qualitative result holds.
"""
import json

import pytest
import torch

from labml_nn_bn import BatchNorm, figure_tools
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


# ## Activation histograms
def test_saturated_means_a_twentieth_of_the_largest_slope():
    threshold = cs.saturation_threshold()
    g = torch.sigmoid(torch.tensor([threshold, -threshold], dtype=torch.float64))
    # The slope g(1 - g) is 1/20 of its value at 0, 1/4
    assert (g * (1 - g)).tolist() == pytest.approx([1 / 80, 1 / 80], rel=1e-12)
    # The numbers the page gives: |x| > 4.36, output within 1.3% of 0 or 1
    assert f'{threshold:.2f}' == '4.36' and '$|x| > 4.36$' in cs.__doc__
    assert 0.012 < g[1].item() < 0.013
    z = torch.tensor([-5., -4., 0., 4.3, 4.4, 9.])
    assert cs.saturated_fraction(z) == pytest.approx(3 / 6)


@pytest.fixture(scope='module')
def activation_runs():
    # Two seeds of 20 steps, snapshots at 0, 10 and 20: the structure of the figure's values
    settings = cs.Settings(steps=20, record_every=20, probe_size=200, dataset='mnist-5k',
                           download=False)
    loaded = cs.load_data(settings, log=lambda *_: None)
    runs = {}
    for seed in (0, 1):
        s = cs.dataclasses.replace(settings, seed=seed)
        runs[seed] = cs.run_both(s, log=lambda *_: None, loaded=loaded,
                                 snapshots=(0, 10, 20))['runs']
    return runs


def test_activation_values_have_every_layer_seed_and_bin(activation_runs, tmp_path):
    values = cs.activation_values(activation_runs, trained=10, end=20)
    s = values['settings']
    assert s['seeds'] == [0, 1] and s['layers'] == 3 and s['bins'] == cs.HISTOGRAM_BINS
    for key in ('no_bn', 'bn'):
        v = values[key]
        for when in ('init', 'trained'):
            assert len(v['histograms'][when]) == 3
            # Every value of the probe is counted, outliers in the end bins
            assert all(sum(h) == 200 * 100 and len(h) == cs.HISTOGRAM_BINS
                       for h in v['histograms'][when])
            assert len(v['saturated_seeds'][when]) == 2
            for layer in range(3):
                shares = [seed[layer] for seed in v['saturated_seeds'][when]]
                assert v['saturated'][when][layer] == pytest.approx(sum(shares) / 2)
                assert v['saturated_max'][when][layer] == max(shares)
        assert len(v['saturated_end']) == 3
    # A snapshot holds every unit's input for every probe image
    assert activation_runs[0]['bn'].snapshots[0][0].shape == (200, 100)
    fig = cs.draw_activations(values, figure_tools.pyplot())
    assert len(fig.axes) == 6
    figure_tools.pyplot().close(fig)


def test_at_initialisation_batch_norm_gives_every_unit_unit_spread(activation_runs):
    values = cs.activation_values(activation_runs, trained=10, end=20)
    # With BN every unit's input over the probe is normalised: spread 1 in every layer (a bit
    # under where the layer's variance is not large against eps; the spread is the unbiased
    # standard deviation, so a bit over 1 by sqrt(P / (P - 1)))
    for spread in values['bn']['unit_spread']['init']:
        assert 0.95 < spread < 1.01
    # Without it the small weights squeeze the layers above the first into a spike
    no_bn = values['no_bn']['unit_spread']['init']
    assert no_bn[1] < 0.05 and no_bn[2] < 0.05 and no_bn[0] > 10 * no_bn[2]
    assert values['no_bn']['saturated']['init'] == [0., 0., 0.]


def test_snapshots_leave_figure_1_unchanged(activation_runs):
    # The same seed trained without snapshots records the same accuracies and percentiles
    settings = cs.Settings(steps=20, record_every=20, probe_size=200, dataset='mnist-5k',
                           download=False)
    plain = cs.run_both(settings, log=lambda *_: None)['runs']
    for key in ('no_bn', 'bn'):
        assert plain[key].accuracy == activation_runs[0][key].accuracy
        assert torch.equal(plain[key].percentiles, activation_runs[0][key].percentiles)
