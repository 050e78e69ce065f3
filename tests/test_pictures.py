"""
The BatchNorm page's pictures (`labml_nn_bn.batch_norm_pictures`): the numbers they show are
recomputed here by plain arithmetic, independently of `BatchNorm`, and the figures are written.
"""
import json
import math
import re

import pytest

from labml_nn_bn import batch_norm_pictures as pictures
from labml_nn_bn.figures import FIGURES_DIR


def _mean(values):
    return sum(values) / len(values)


def _biased_var(values):
    mu = _mean(values)
    return sum((v - mu) ** 2 for v in values) / len(values)


def test_worked_example_numbers_are_algorithm_1():
    example = pictures.WORKED_EXAMPLE
    values = pictures.worked_example_values()
    eps = values['eps']
    assert len(example.x) == 4 and all(len(row) == 2 for row in example.x)
    for k in range(2):
        column = [row[k] for row in example.x]
        mu, var = _mean(column), _biased_var(column)
        assert values['mean'][k] == pytest.approx(mu, abs=1e-12)
        assert values['var'][k] == pytest.approx(var, abs=1e-12)
        for i, v in enumerate(column):
            x_hat = (v - mu) / math.sqrt(var + eps)
            assert values['x_hat'][i][k] == pytest.approx(x_hat, abs=1e-12)
            y = example.gamma[k] * x_hat + example.beta[k]
            assert values['y'][i][k] == pytest.approx(y, abs=1e-12)
        assert values['x_hat_mean'][k] == pytest.approx(0., abs=1e-12)
        assert values['x_hat_var'][k] == pytest.approx(var / (var + eps), abs=1e-12)
    # The example is meant to be followed by hand: the two features differ, and so do γ, β
    assert values['mean'][0] != values['mean'][1] and values['var'][0] != values['var'][1]
    assert example.gamma != (1., 1.) and example.beta != (0., 0.)


def test_one_example_has_two_outputs_in_training_and_one_in_evaluation():
    values = pictures.train_eval_values()
    star, eps, momentum = values['x_star'], values['eps'], values['momentum']
    batches = values['batches']
    assert all(batch[0] == star for batch in batches)
    # Training: each batch's own statistics
    train = [(star - _mean(b)) / math.sqrt(_biased_var(b) + eps) for b in batches]
    assert values['train'][0][0] == pytest.approx(train[0], abs=1e-6)
    assert values['train'][1][0] == pytest.approx(train[1], abs=1e-6)
    assert abs(train[0] - train[1]) > 1.
    # Evaluation: the moving averages of the batch means and unbiased variances, from 0 and 1
    mean, var = 0., 1.
    for b in batches:
        mean = (1 - momentum) * mean + momentum * _mean(b)
        var = (1 - momentum) * var + momentum * _biased_var(b) * len(b) / (len(b) - 1)
    assert values['running_mean'] == pytest.approx(mean, abs=1e-6)
    assert values['running_var'] == pytest.approx(var, abs=1e-6)
    expected = (star - mean) / math.sqrt(var + eps)
    assert values['eval'][0][0] == pytest.approx(expected, abs=1e-6)
    assert values['eval'][1][0] == values['eval'][0][0]


def test_running_means_follow_the_moving_average_formulas():
    values = pictures.running_mean_values(steps=120)
    ema, total = 0., 0.
    for step, batch_mean in enumerate(values['batch_means'], start=1):
        ema = 0.9 * ema + 0.1 * batch_mean
        total += batch_mean
        assert values['running_mean']['0.1'][step - 1] == pytest.approx(ema, abs=1e-5)
        assert values['running_mean']['None'][step - 1] == pytest.approx(total / step, abs=1e-5)
    # The drift is what the picture shows: momentum 0.1 follows it, the plain average lags
    true = values['true_mean'][-1]
    assert abs(values['running_mean']['0.1'][-1] - true) < 0.3
    assert true - values['running_mean']['None'][-1] > 0.5


def test_axes_picture_counts_values_per_channel():
    values = pictures.axes_values()
    b, c, h, w = values['shape']
    assert values['m'] == b * h * w and values['statistics'] == c


def test_each_normalisation_shares_its_statistics_over_its_own_axes():
    # Independently of the picture's method: the [N, C] cells that share the statistics of
    # example 1, channel 1, from the definitions of the four normalisations
    values = pictures.norm_axes_values()
    n, c, h, w = values['shape']
    groups = values['groups']
    expected = {
        'batch': lambda i, k: k == 0,
        'layer': lambda i, k: i == 0,
        'instance': lambda i, k: i == 0 and k == 0,
        'group': lambda i, k: i == 0 and k < c // groups,
    }
    assert list(pictures.NORMS) == list(expected)
    for kind, shared in expected.items():
        cells = [[int(shared(i, k)) for k in range(c)] for i in range(n)]
        assert values[kind]['cells'] == cells, kind
        m = sum(map(sum, cells)) * h * w
        assert values[kind]['m'] == m
        assert values[kind]['statistics'] * m == n * c * h * w
    # The picture is worth drawing: four different sets, group norm strictly between the
    # instance and the layer
    assert len({str(values[k]['cells']) for k in expected}) == 4
    assert values['instance']['m'] < values['group']['m'] < values['layer']['m']


def test_make_figures_writes_the_pictures_and_their_numbers(tmp_path):
    paths = pictures.make_figures(tmp_path, smoke=True)
    names = sorted(p.name for p in paths)
    assert names == sorted(pictures.FILES + ['batch_norm_pictures.json'])
    assert 'norm_axes.svg' in pictures.FILES
    for name in pictures.FILES:
        svg = (tmp_path / name).read_text()
        assert svg.lstrip().startswith('<?xml') and '</svg>' in svg and len(svg) > 5000
        assert 'font-family' not in svg
    saved = json.loads((tmp_path / 'batch_norm_pictures.json').read_text())['values']
    assert saved['worked_example'] == pictures.worked_example_values()
    assert saved['train_eval'] == pictures.train_eval_values()
    assert saved['norm_axes'] == pictures.norm_axes_values()


def _stamp_lines(svg: str):
    # Matplotlib keeps each text of the figure as a comment before its glyphs; a stamp is the
    # one with the device and date, joined by " · "
    return [t for t in re.findall(r'<!-- (.*?) -->', svg) if ' · ' in t]


def test_diagrams_carry_no_stamp_and_computed_pictures_say_what_computed_them(tmp_path):
    pictures.make_figures(tmp_path, smoke=True)
    assert set(pictures.DIAGRAMS) < set(pictures.FILES)
    for name in pictures.FILES:
        stamps = _stamp_lines((tmp_path / name).read_text())
        if name in pictures.DIAGRAMS:
            assert stamps == [], f'{name} is a diagram: no run made it, so no stamp'
        else:
            # What computed it, short enough to fit under a 4.5-inch picture
            assert len(stamps) == 1 and stamps[0].startswith('computed by BatchNorm'), \
                (name, stamps)
            assert 'steps' not in stamps[0] and len(stamps[0]) <= 95


def test_committed_pictures_show_the_current_numbers():
    committed = json.loads((FIGURES_DIR / 'batch_norm_pictures.json').read_text())['values']
    for name in pictures.FILES:
        assert (FIGURES_DIR / name).exists(), \
            'run `python -m labml_nn_bn.figures --only batch_norm_pictures`'
    assert committed['worked_example'] == pictures.worked_example_values()
    assert committed['train_eval'] == pictures.train_eval_values()
    assert committed['norm_axes'] == pictures.norm_axes_values()
    for name in pictures.DIAGRAMS:
        assert _stamp_lines((FIGURES_DIR / name).read_text()) == [], name
