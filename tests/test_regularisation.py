"""
Batch normalization and Dropout (`labml_nn_bn.experiments.regularisation`), in smoke mode and on
tiny runs: the CLI run works and is tracked, the values have the structure the page quotes,
the noise measurement measures what it says and changes nothing in the run, and a diverged run
is recorded as a result.
"""
import dataclasses
import json

import pytest
import torch
import torch.nn as nn

from labml_nn_bn import BatchNorm, figure_tools
from labml_nn_bn.experiments import regularisation as reg
from labml_nn_bn.experiments import trainer

PROG = 'python -m labml_nn_bn.experiments.regularisation'
# A run of a second or two: 512 images, a narrow network, 2 epochs
TINY = dataclasses.replace(reg.SMOKE, epochs=2, hidden=32, seeds=(0,), train_limit=512,
                           probe_size=64, noise_draws=4, noise_epochs=(1, 2))


@pytest.fixture(autouse=True)
def _one_thread():
    # As the experiment itself does on a CPU: the tests' matrices are too small for more, and
    # on a shared machine extra threads mostly wait
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    # One CLI smoke run (4 networks, 2 seeds, 3 epochs) shared by the tests below
    folder = tmp_path_factory.mktemp('regularisation')
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = reg.main(['--smoke', '--figure', str(folder / 'figure.svg')])
    return result, folder


@pytest.fixture(scope='module')
def tiny_data():
    return reg.load_data(TINY, log=lambda *a: None)


def test_cli_smoke_run_writes_the_figure(smoke_run):
    result, folder = smoke_run
    svg = (folder / 'figure.svg').read_text()
    assert svg.startswith('<?xml') and '<svg' in svg and 'href="http' not in svg
    assert (folder / 'logs').is_dir()  # tracked with labml
    runs = result['runs']
    assert list(runs) == list(reg.NETWORKS)
    for name, network_runs in runs.items():
        assert [r.seed for r in network_runs] == [0, 1]
        for r in network_runs:
            assert r.diverged_at is None and len(r.test_accuracy) == len(r.train_accuracy) == 3
            assert sorted(r.noise) == sorted(reg.kinds_of(name))


def test_values_have_what_the_page_quotes(smoke_run, tmp_path):
    values = reg.values_of(smoke_run[0], reg.SMOKE)
    for key in ('gap', 'test', 'best_test', 'test_loss', 'min_test_loss_epoch'):
        for name in reg.NETWORKS:
            s = values['summary'][key][name]
            assert s['min'] <= s['median'] <= s['max']
    assert values['noise']['bn_batch']['epochs'] == [1, 3]
    assert set(values['noise']['both']) == {'bn_batch', 'dropout_mask'}
    assert len(values['curves']['none']['gap']['median']) == 3
    # The gap is training minus test accuracy, at the last epoch, over the seeds
    gaps = [r['train_accuracy'][-1] - r['test_accuracy'][-1] for r in values['runs']['bn']]
    assert abs(values['summary']['gap']['bn']['min'] - min(gaps)) < 1e-5
    assert abs(values['curves']['bn']['gap']['max'][-1] - max(gaps)) < 1e-5
    # The JSON is finite, and the quotes' syntax reaches every summary number
    path = figure_tools.save_values(tmp_path / 'regularisation.json', values, 'stamp')
    assert json.loads(path.read_text())['values']['summary']['gap']['none']['median'] >= -1


def test_dropout_masks_move_an_output_more_than_batches_do(smoke_run):
    # Robust even after 3 epochs: Dropout with p = 0.5 moves an example's logits several times
    # as much as the batch statistics of a batch of 64 do
    noise = reg.values_of(smoke_run[0], reg.SMOKE)['noise']
    assert 0 < noise['bn_batch']['relative']['max'] < 0.5 * noise['dropout_mask']['relative']['min']
    assert 0 < noise['both']['bn_batch']['relative']['median'] < \
        0.5 * noise['both']['dropout_mask']['relative']['median']


def test_the_networks():
    s = reg.Settings()
    plain, both = reg.make_network('none', s), reg.make_network('both', s)
    assert [tuple(l.weight.shape) for l in plain.linears] == [(256, 784), (256, 256)]
    assert all(l.bias is not None for l in plain.linears)
    assert not any(isinstance(m, (BatchNorm, nn.Dropout)) for m in plain.modules())
    # No bias under a batch norm: its mean subtraction would cancel it
    assert all(l.bias is None for l in both.linears)
    assert all(isinstance(n, BatchNorm) for n in both.norms)
    assert all(isinstance(d, nn.Dropout) and d.p == 0.5 for d in both.drops)
    assert reg.make_network('dropout', s).norms[0].__class__ is nn.Identity
    assert both(torch.randn(8, 1, 28, 28)).shape == (8, 10)
    with pytest.raises(ValueError, match='network must be one of'):
        reg.make_network('bn_dropout', s)


def test_each_noise_switches_on_only_its_own_layers():
    model = reg.make_network('both', reg.Settings(hidden=8))
    reg.set_noise(model, 'bn_batch')
    assert all(n.training for n in model.norms) and not any(d.training for d in model.drops)
    reg.set_noise(model, 'dropout_mask')
    assert not any(n.training for n in model.norms) and all(d.training for d in model.drops)


def test_noise_of_a_known_spread():
    g = torch.Generator().manual_seed(0)
    # 200 examples whose logits differ by 1 (standard deviation), each moved by 0.1 per draw
    centre = torch.randn(1, 200, 10, generator=g)
    assert reg.noise_of(centre.expand(16, -1, -1)) == {'relative': 0.0, 'flipped': 0.0}
    noisy = reg.noise_of(centre + 0.1 * torch.randn(400, 200, 10, generator=g))
    assert abs(noisy['relative'] - 0.1) < 0.01
    assert 0 < noisy['flipped'] < 1


def test_batch_noise_shrinks_as_the_batch_grows(tiny_data):
    # The paper's mechanism: the smaller the batch, the more its statistics move an example
    tensors, _ = tiny_data
    torch.manual_seed(0)
    model = reg.make_network('bn', TINY)
    probe, others = tensors.train_x[:64], tensors.train_x[64:]
    relative = [reg.noise_of(reg.draw_outputs(model, 'bn_batch', probe, others, b, 8,
                                              torch.Generator().manual_seed(1)))['relative']
                for b in (8, 128)]
    assert relative[0] > 2 * relative[1] > 0


def test_measuring_the_noise_changes_nothing_in_the_run(tiny_data):
    tensors, _ = tiny_data
    model = reg.make_network('both', TINY)
    buffers = [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    out = reg.draw_outputs(model, 'bn_batch', tensors.train_x[:40], tensors.train_x[40:], 16, 3,
                           torch.Generator().manual_seed(0))
    reg.draw_outputs(model, 'dropout_mask', tensors.train_x[:40], tensors.train_x[40:], 16, 3,
                     torch.Generator().manual_seed(0))
    assert out.shape == (3, 40, 10) and bool(torch.isfinite(out).all())
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    assert torch.equal(rng, torch.get_rng_state()) and model.training
    # A whole run: measured after every epoch, or only after the last, trains the same
    every = reg.train(dataclasses.replace(TINY, noise_epochs=(1, 2)), 'both', 0, tensors)
    last = reg.train(dataclasses.replace(TINY, noise_epochs=(2,)), 'both', 0, tensors)
    assert every.test_loss == last.test_loss and every.train_accuracy == last.train_accuracy
    assert every.noise['dropout_mask']['epochs'] == [1, 2]
    assert last.noise['dropout_mask']['epochs'] == [2]


def test_a_diverged_run_is_recorded_as_a_result(tiny_data, tmp_path):
    settings = dataclasses.replace(TINY, networks=('none', 'bn'), learning_rate=1e6)
    result = reg.run_all(settings, log=lambda *a: None, loaded=tiny_data)
    plain = result['runs']['none'][0]
    assert plain.diverged_at is not None and plain.diverged_at >= 1
    values = reg.values_of(result, settings)
    assert values['diverged']['none'] == [plain.diverged_at]
    assert values['runs']['none'][0]['test_accuracy'] == plain.test_accuracy
    if not plain.test_accuracy:
        assert values['summary']['gap']['none'] is None
    # Still a finite JSON file and a figure
    figure_tools.save_values(tmp_path / 'v.json', values, 'stamp')
    reg.plot(values, 'stamp', tmp_path / 'v.svg')
    assert (tmp_path / 'v.svg').exists()


@pytest.mark.parametrize('argv', [['--epochs', '0'], ['--batch-size', '1'], ['--lr', '-1'],
                                  ['--dropout', '1'], ['--dropout', 'nan'], ['--momentum', '1'],
                                  ['--hidden', '0'], ['--layers', '0'], ['--seeds', '-1'],
                                  ['--seeds', '1', '1'], ['--networks', 'bn', 'bn'],
                                  ['--networks', 'other'], ['--probe-size', '1'],
                                  ['--noise-draws', '1'], ['--noise-epochs', '0'],
                                  ['--device', 'nonsense'], ['--train-limit', '-1']])
def test_cli_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        reg.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any('Traceback' in line for line in err)
    assert err[-1].startswith(f'{PROG}: error: argument')


def test_a_probe_too_large_for_the_data_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        reg.main(['--smoke', '--probe-size', '1000'])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f'{PROG}: error: argument --probe-size: expected at most 992 (the 1,024 training images '
        f'less the other examples that fill a mini-batch of 64), got 1,000')
    assert not (tmp_path / 'logs').exists()


def test_options_given_with_smoke_are_applied_on_top_of_it():
    settings = reg.settings_of(reg.parse_args(['--smoke', '--epochs', '2', '--seeds', '5', '6',
                                               '--networks', 'bn']))
    assert (settings.epochs, settings.seeds, settings.networks) == (2, (5, 6), ('bn',))
    assert settings.hidden == reg.SMOKE.hidden and settings.train_limit == reg.SMOKE.train_limit
    assert settings.measured_epochs() == [1, 2]
    assert reg.settings_of(reg.parse_args(['--smoke'])) == reg.SMOKE
    assert reg.settings_of(reg.parse_args([])) == reg.Settings()


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as e:
        reg.main(['--help'])
    assert e.value.code == 0
    out = ' '.join(capsys.readouterr().out.split())
    for text in ('(default: 40)', '(default: 0.01)', '(default: 0.5)', '(default: 256)',
                 '(default: [0, 1, 2, 3, 4])', "(default: ['none', 'dropout', 'bn', 'both'])",
                 '(default: [1, 5, 10, 20, 40])', '(default: 512)', '(default: 20)'):
        assert text in out, text
