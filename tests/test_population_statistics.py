"""
Algorithm 2's experiment (`labml_nn_bn.experiments.population_statistics`) in smoke mode.
"""
import pytest
import torch

from labml_nn_bn.experiments import population_statistics as ps


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp('population_statistics')
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = ps.main(['--smoke', '--figure', str(folder / 'figure.svg')])
    return result, folder


def test_cli_smoke_run(smoke_run):
    result, folder = smoke_run
    assert [r['batch_size'] for r in result['rows']] == [4, 32]
    svg = (folder / 'figure.svg').read_text()
    assert '<svg' in svg and 'href="http' not in svg
    assert (folder / 'logs').is_dir()
    for r in result['rows']:
        for key in ('batch_statistics', 'moving_average', 'recalibrated'):
            assert 0.1 < r[key] <= 1
        assert r['gap_recalibrated'] == pytest.approx(r['batch_statistics'] - r['recalibrated'])


def test_recalibrated_statistics_beat_young_moving_averages(smoke_run):
    # After 8 steps with momentum 0.1, 43% of each running average is still its initial value
    # (mean 0, variance 1): the moving averages are far from the population statistics, and
    # Algorithm 2's exact estimates classify better
    row = smoke_run[0]['rows'][-1]
    assert row['steps'] == 8
    assert row['variance_difference'] > 0.3
    assert row['recalibrated'] > row['moving_average'] + 0.02


def test_works_with_torch_batch_norm():
    result = ps.run(batch_sizes=(8,), epochs=1, dataset='mnist-5k', train_limit=64,
                    test_limit=64, bn_impl='torch', log=lambda *_: None)
    row = result['rows'][0]
    assert result['settings']['bn_impl'] == 'torch'
    assert 0 <= row['recalibrated'] <= 1 and row['variance_difference'] > 0


def test_batch_statistics_accuracy_leaves_the_model_unchanged():
    model = ps.Model(batch_norm=True)  # the MNIST CNN
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(12, 1, 28, 28), torch.randint(0, 10, (12,))
    ps.accuracy_with_batch_statistics(model, x, y, 4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert not model.training


@pytest.mark.parametrize('argv', [['--batch-sizes', '1'], ['--epochs', '0'], ['--lr', '0'],
                                  ['--train-limit', '-1'], ['--device', 'gpu!'],
                                  ['--dataset', 'mnist-5k', '--train-limit', '10']])
def test_cli_errors_are_one_line(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        ps.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any('Traceback' in line for line in err)
    assert err[-1].startswith(
        'python -m labml_nn_bn.experiments.population_statistics: error: argument')


class _Stop(BaseException):
    """Not caught by the command line (as Ctrl-C now is): stops it where it is raised."""


def test_options_given_with_smoke_are_applied_on_top_of_it(tmp_path, monkeypatch):
    seen = {}

    def stop(batch_sizes, **kwargs):
        seen.update(kwargs, batch_sizes=batch_sizes)
        raise _Stop

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ps, 'load_data', stop)
    with pytest.raises(_Stop):
        ps.main(['--smoke', '--batch-sizes', '8', '--seed', '5'])
    assert seen['batch_sizes'] == (8,) and seen['seed'] == 5
    assert seen['epochs'] == ps.SMOKE['epochs'] and seen['train_limit'] == ps.SMOKE['train_limit']


@pytest.mark.parametrize('argv,message', [
    (['--smoke', '--batch-sizes', '8', '8'], 'argument --batch-sizes: expected each size once, '
                                             'got 8 more than once'),
    (['--smoke', '--seed', '-1'], 'argument --seed: expected an integer >= 0'),
    (['--smoke', '--batch-sizes', '100000'],
     'argument --batch-sizes: 100000 is larger than the 256 training images'),
    (['--dataset', 'mnist-5k', '--train-limit', '99999'],
     'argument --train-limit: expected at most the 4,000 training images'),
    # --smoke reads the offline subset, which reads no folder: the folder would be ignored
    (['--smoke', '--data-dir', '.'],
     'argument --data-dir: the offline subset (--dataset mnist-5k) reads no folder'),
])
def test_bad_values_are_named_and_leave_no_run(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        ps.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any('Traceback' in line for line in err)
    assert message in err[-1], err
    assert not (tmp_path / 'logs').exists()
