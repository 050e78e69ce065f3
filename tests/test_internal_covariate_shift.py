"""
Santurkar et al.'s test of internal covariate shift
(`labml_nn_bn.experiments.internal_covariate_shift`), in smoke mode: the CLI run works, its
values are complete and finite, the noise does what the page says, measuring the landscape
changes nothing, and divergence is recorded as a result.
"""
import json

import pytest
import torch
import torch.nn.functional as F

from labml_nn_bn import BatchNorm, figure_tools
from labml_nn_bn.experiments import internal_covariate_shift as ics

PROG = 'python -m labml_nn_bn.experiments.internal_covariate_shift'


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    # One CLI smoke run (4 networks × 2 rates, and 2 noisy networks at one other strength,
    # 150 steps each) shared by the tests below
    folder = tmp_path_factory.mktemp('internal_covariate_shift')
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = ics.main(['--smoke', '--figure', str(folder / 'figure.svg')])
    return result, folder


def test_cli_smoke_run_writes_both_figures(smoke_run):
    result, folder = smoke_run
    for name in ('figure.svg', 'figure_landscape.svg'):
        svg = (folder / name).read_text()
        assert svg.startswith('<?xml') and '<svg' in svg and 'href="http' not in svg
    assert (folder / 'logs').is_dir()  # tracked with labml
    runs = result['runs']
    assert len(runs) == len(ics.planned_runs(ics.SMOKE)) == 10
    assert all(r.steps == list(range(0, 151, 25)) for r in runs if r.diverged_at is None)
    measured = [r for r in runs if r.landscape_steps]
    assert sorted(r.kind for r in measured) == ['bn', 'standard']
    assert all(r.learning_rate == 0.1 and r.landscape_steps == list(range(25, 151, 25))
               for r in measured)


def test_values_are_complete_and_finite(smoke_run, tmp_path):
    accuracy, landscape = ics.values_of(smoke_run[0], ics.SMOKE)
    # `save_values` refuses NaN and infinities
    figure_tools.save_values(tmp_path / 'a.json', accuracy, 'stamp')
    figure_tools.save_values(tmp_path / 'l.json', landscape, 'stamp')
    assert set(accuracy['runs']) == {'lr_0p1', 'lr_0p5'}
    for runs in accuracy['runs'].values():
        assert set(runs) == set(ics.NETWORKS)
        for v in runs.values():
            if 'percentiles' in v:
                q15, q50, q85 = (torch.tensor(p) for p in v['percentiles'])
                assert len(q15) == len(v['percentile_steps'])
                assert bool((q15 <= q50).all() and (q50 <= q85).all())
    assert accuracy['sweep']['strengths'] == [0., 1., 2.]
    assert len(accuracy['sweep']['noisy_bn']['test_final']) == 3
    assert set(landscape['runs']) == {'standard', 'bn'}
    for v in landscape['runs'].values():
        assert len(v['loss_range']['median']) == len(v['steps']) == 6
        assert all(x >= 0 for x in v['loss_range']['median'])


def test_the_noise_makes_the_inputs_jump(smoke_run):
    # Robust even in 150 steps: the noisy network's unit inputs move much more from record to
    # record than the plain batch-normalized network's, and more than the standard network's
    runs = ics.values_of(smoke_run[0], ics.SMOKE)[0]['runs']['lr_0p1']
    noisy = runs['noisy_bn']['relative_jitter']['median']
    assert noisy > 3 * runs['bn']['relative_jitter']['median']
    assert noisy > runs['standard']['relative_jitter']['median']


def test_the_noise_distribution_changes_every_step():
    generator = torch.Generator().manual_seed(0)
    noise = ics.DistributionNoise(50, strength=1., generator=generator)
    y = torch.zeros(4000, 50)
    first, second = noise(y), noise(y)
    # With y = 0, each unit's mean is its shift mu, in [-k, k], new at every call
    m1, m2 = first.mean(dim=0), second.mean(dim=0)
    assert m1.abs().max() < 1.1 and not torch.allclose(m1, m2, atol=0.1)
    # The per-example part: i.i.d., of standard deviation k
    assert abs(first.std(dim=0).mean().item() - 1.) < 0.05
    # The scale: sigma in [1, 1 + k] multiplies y, per unit
    ones = torch.ones(4000, 50)
    ratio = (noise(ones) - noise.__class__(50, 0., generator)(ones)).mean(dim=0)
    assert ratio.min() > -1.2 and ratio.max() < 2.2
    # In eval mode, the mean of the noise: (1 + k / 2) y
    noise.eval()
    assert torch.equal(noise(ones), 1.5 * ones)
    # Strength 0 is no noise
    zero = ics.DistributionNoise(50, strength=0., generator=generator)
    x = torch.randn(8, 50)
    assert torch.equal(zero(x), x)


def test_the_networks():
    generator = torch.Generator().manual_seed(0)
    nets = {kind: ics.Network(kind, generator=generator) for kind in ics.NETWORKS}
    for kind, net in nets.items():
        assert [tuple(l.weight.shape) for l in net.linears] == [(100, 784), (100, 100), (100, 100)]
        assert all((l.bias is None) == (kind in ('bn', 'noisy_bn')) for l in net.linears)
        assert all(isinstance(n, BatchNorm) == (kind in ('bn', 'noisy_bn')) for n in net.norms)
        assert all(isinstance(n, ics.DistributionNoise) == kind.startswith('noisy')
                   for n in net.noises)
        x = torch.randn(60, 1, 28, 28)
        assert net(x).shape == (60, 10) and net.relu_input(x).shape == (60, 100)
    with pytest.raises(ValueError, match='kind must be one of'):
        ics.Network('other')


def test_measuring_the_landscape_changes_nothing_and_matches_a_direct_computation():
    torch.manual_seed(1)
    model = ics.Network('bn', hidden=16, layers=2)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    etas = [0.05, 0.2]
    got = ics.landscape(model, x, y, etas)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    # The same numbers, computed independently with torch.func on copies of the parameters
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}

    def loss_grad(p):
        loss = F.cross_entropy(torch.func.functional_call(model, (p, buffers), (x,)), y)
        return loss, torch.autograd.grad(loss, list(p.values()))

    loss0, g = loss_grad(params)
    losses, changes = [loss0.item()], []
    for eta in etas:
        moved = {k: (v - eta * gi).detach().requires_grad_()
                 for (k, v), gi in zip(params.items(), g)}
        loss, g_eta = loss_grad(moved)
        losses.append(loss.item())
        changes.append(torch.cat([(a - b).reshape(-1) for a, b in zip(g, g_eta)]).norm().item())
    assert got['loss_range'] == pytest.approx(max(losses) - min(losses), rel=1e-4)
    assert got['gradient_change'] == pytest.approx(max(changes), rel=1e-4)
    g_norm = torch.cat([gi.reshape(-1) for gi in g]).norm().item()
    assert got['beta'] == pytest.approx(max(c / (e * g_norm) for c, e in zip(changes, etas)),
                                        rel=1e-4)


def test_divergence_is_a_result(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ics.main(['--smoke', '--lrs', '1000', '--steps', '30', '--noise-sweep',
                       '--landscape-every', '0'])
    diverged = [r for r in result['runs'] if r.diverged_at is not None]
    assert diverged, 'a learning rate of 1000 should make some network diverge'
    assert all(1 <= r.diverged_at <= 30 for r in diverged)
    settings = ics.SMOKE.__class__(**{**ics.SMOKE.__dict__, 'steps': 30,
                                      'learning_rates': (1000.,), 'noise_sweep': (),
                                      'landscape_every': 0})
    accuracy, _ = ics.values_of(result, settings)
    text = json.dumps(accuracy, allow_nan=False)  # finite: no NaN stands in for a diverged run
    kinds = {r.kind for r in diverged}
    assert all(accuracy['runs']['lr_1000'][k]['diverged'] == 1 for k in kinds)
    assert 'diverged_at' in text
    # The figures draw such runs too
    folder = tmp_path / 'figures'
    ics.plot(accuracy, 'stamp', folder / 'a.svg')
    assert (folder / 'a.svg').read_text().startswith('<?xml')


@pytest.mark.parametrize('argv', [['--steps', '0'], ['--batch-size', '1'], ['--lrs', '-1'],
                                  ['--probe-size', '1'], ['--device', 'nonsense'],
                                  ['--noise', '0'], ['--noise-sweep', '-1'],
                                  ['--seeds', '1', '1'], ['--seeds', '-1'],
                                  ['--record-every', '0'], ['--landscape-every', '-1'],
                                  ['--hidden', '0'], ['--lrs', 'nan']])
def test_cli_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        ics.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any('Traceback' in line for line in err)
    assert err[-1].startswith(f'{PROG}: error: argument')


def test_bad_spacing_is_refused_before_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ics, 'load_data', lambda *a, **k: pytest.fail('the data was loaded'))
    with pytest.raises(SystemExit) as e:
        ics.main(['--smoke', '--steps', '20', '--record-every', '100'])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f'{PROG}: error: argument --record-every: expected at most --steps (20), got 100')
    assert not (tmp_path / 'logs').exists()


def test_options_given_with_smoke_are_applied_on_top_of_it(monkeypatch, tmp_path):
    class Loaded(Exception):
        pass

    def stop(settings, log=print):
        raise Loaded(settings)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ics, 'load_data', stop)
    with pytest.raises(Loaded) as loaded:
        ics.main(['--smoke', '--steps', '10', '--lrs', '0.2', '--seeds', '3', '4',
                  '--noise', '0.5', '--noise-sweep', '0.5', '3'])
    settings = loaded.value.args[0]
    assert (settings.steps, settings.learning_rates, settings.seeds) == (10, (0.2,), (3, 4))
    # The sweep leaves out the main strength; the spacings shrink to fit the shorter run
    assert (settings.noise, settings.noise_sweep) == (0.5, (3.,))
    assert settings.record_every == settings.landscape_every == 10
    assert settings.probe_size == ics.SMOKE.probe_size
