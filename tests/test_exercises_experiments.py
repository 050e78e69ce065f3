"""
The exercises at the end of the six claim-experiment pages: every page has at least
four, each with a collapsed solution; every number a solution derives is computed here
and must be the one the page shows; every code solution is taken from the page and run;
every command line an exercise gives is accepted by that experiment's own parser.
"""
import importlib
import math
import re
import shlex
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from site_build import ROOT

PAGES = ('covariate_shift', 'learning_rate', 'regularisation',
         'internal_covariate_shift', 'detached_mean', 'population_statistics')
HEADING = re.compile(r'^\*\*(\d+)\. (.+?)\*\*\s+\((derivation|code|experiment)\)',
                     re.S)
SOLUTION = '??? success "Solution"'


def source(page: str) -> str:
    path = ROOT / 'labml_nn_bn' / 'experiments' / f'{page}.py'
    return path.read_text(encoding='utf-8')


def exercises_markdown(page: str) -> str:
    """The page's `## Exercises` section as the Markdown the site renders."""
    lines = source(page).split('\n')
    start = lines.index('# ## Exercises')
    out = []
    for line in lines[start:]:
        if not line.startswith('#'):
            assert not line.strip(), f'{page}: code after the exercises: {line!r}'
            continue
        out.append(line[2:] if line.startswith('# ') else line[1:])
    return '\n'.join(out)


def exercises(page: str):
    """`(number, title, kind, question, solution)` of each exercise, in order."""
    found = []
    for block in re.split(r'\n(?=\*\*\d+\. )', exercises_markdown(page))[1:]:
        m = HEADING.match(block)
        assert m, (f'{page}: an exercise that does not start with **N. Title** (kind): '
                   f'{block[:60]!r}')
        question, _, solution = block.partition(SOLUTION)
        # The solution as written: the block's lines, indented under `???`
        found.append((int(m.group(1)), m.group(2), m.group(3), question, solution))
    return found


def code_blocks(text: str, language: str):
    return [textwrap.dedent(m.group(2)) for m in
            re.finditer(rf'^( *)```{language}\n(.*?)^\1```', text, re.S | re.M)]


def solution_code(page: str, number: int) -> str:
    """The Python of exercise `number`'s solution (all its ```python blocks)."""
    for n, _, _, _, solution in exercises(page):
        if n == number:
            blocks = code_blocks(solution, 'python')
            assert blocks, f'{page}: exercise {number} has no code in its solution'
            return '\n'.join(blocks)
    raise AssertionError(f'{page}: no exercise {number}')


def run_solution(page: str, number: int) -> dict:
    """Runs a code solution in the namespace of its page's module, as a reader would."""
    module = importlib.import_module(f'labml_nn_bn.experiments.{page}')
    namespace = dict(vars(module))
    code = compile(solution_code(page, number), f'{page}.py exercise {number}', 'exec')
    exec(code, namespace)
    return namespace


def shows(page: str, text: str) -> bool:
    """Whether the exercises show `text`, wherever their lines happen to be wrapped."""
    return ' '.join(text.split()) in ' '.join(exercises_markdown(page).split())


def assert_shows(page: str, *texts: str):
    for text in texts:
        assert shows(page, text), f'{page}: the exercises do not show {text!r}'


# ## Structure

@pytest.mark.parametrize('page', PAGES)
def test_each_page_ends_with_four_or_more_exercises_with_collapsed_solutions(page):
    found = exercises(page)
    assert len(found) >= 4
    assert [n for n, *_ in found] == list(range(1, len(found) + 1))
    for n, title, kind, question, solution in found:
        assert SOLUTION not in solution, f'{page}: exercise {n} has two solutions'
        assert solution.strip(), f'{page}: exercise {n} has no solution'
        # Inside the collapsed block: every line of the solution is indented
        for line in solution.split('\n')[1:]:
            assert not line.strip() or line.startswith('    '), \
                f'{page}: exercise {n}: a solution line outside the block: {line!r}'
    # A mix: no page is all one kind
    assert len({kind for _, _, kind, _, _ in found}) >= 2


# ## Command lines

def parser_check(page: str, argv):
    """Parses `argv` with the experiment's own parser; SystemExit if it refuses."""
    module = importlib.import_module(f'labml_nn_bn.experiments.{page}')
    if page == 'detached_mean':
        from labml_nn_bn.experiments import cli
        parser = cli.make_parser('detached_mean', '')
        cli.add_figure_arguments(parser, 'detached_mean', smoke_help='', seed_help='')
        return parser.parse_args(argv)
    return module.parse_args(argv)


def command_lines(page: str):
    text = exercises_markdown(page)
    commands = []
    for block in code_blocks(text, 'bash') + re.findall(r'`(python -m [^`]+)`', text):
        for line in block.replace('\\\n', ' ').split('\n'):
            if line.strip().startswith('python -m'):
                commands.append(shlex.split(line, comments=True))
    return commands


@pytest.mark.parametrize('page', PAGES)
def test_every_command_line_in_the_exercises_is_accepted(page, tmp_path, monkeypatch):
    commands = command_lines(page)
    kinds = [kind for _, _, kind, _, _ in exercises(page)]
    assert len(commands) >= kinds.count('experiment') > 0
    monkeypatch.chdir(tmp_path)  # where an --out folder may be checked
    for argv in commands:
        assert argv[:3] == ['python', '-m', f'labml_nn_bn.experiments.{page}'], argv
        parser_check(page, argv[3:])


def test_the_command_line_check_can_fail():
    with pytest.raises(SystemExit):
        parser_check('covariate_shift', ['--no-such-option', '1'])


# ## Figure 1 (covariate_shift)

def test_covariate_shift_percentiles_of_a_standard_normal():
    q85 = torch.distributions.Normal(0., 1.).icdf(torch.tensor(0.85)).item()
    assert_shows('covariate_shift', f'\\Phi^{{-1}}(0.85) = {q85:.3f}$', f'$-{q85:.2f}$',
                 f'${q85:.2f}$')
    # And a batch-normalised unit at initialisation puts them there, on Gaussian inputs
    from labml_nn_bn.experiments.covariate_shift import Network
    torch.manual_seed(0)
    x = Network(batch_norm=True).sigmoid_input(torch.randn(4000, 1, 28, 28))
    p = torch.quantile(x, torch.tensor([0.15, 0.5, 0.85]), dim=0).median(dim=1).values
    assert p.tolist() == pytest.approx([-q85, 0., q85], abs=0.05)


def spreads(network, x):
    """The spread across examples of each hidden layer's sigmoid input (unit mean)."""
    out, h = [], x.flatten(1)
    for linear in network.linears:
        z = linear(h)
        out.append(z.std(dim=0).mean().item())
        h = torch.sigmoid(z)
    return out


def test_covariate_shift_scale_at_initialisation():
    sigma, n = 0.01, 100
    level = 0.5 * sigma * math.sqrt(n)
    factor = sigma * math.sqrt(n) / 4
    assert_shows('covariate_shift', f'\\sqrt{{100}} = {level:.2f}$',
                 f'= {factor:.3f}$',
                 f'{factor:.3f}^2 = {factor ** 2 * 1e4:.1f} \\times 10^{{-4}}$')
    from labml_nn_bn.experiments.covariate_shift import Network
    torch.manual_seed(0)
    network = Network(batch_norm=False)
    with torch.no_grad():
        s = spreads(network, torch.randn(2000, 1, 28, 28))
        # Levels across units: the input of the last layer, on any example
        h = torch.sigmoid(network.linears[1](torch.sigmoid(network.linears[0](
            torch.randn(50, 784)))))
        levels = network.linears[2](h).mean(dim=0)
    assert s[2] / s[0] == pytest.approx(factor ** 2, rel=0.5)
    assert levels.std().item() == pytest.approx(level, rel=0.3)


def test_covariate_shift_code_solution_keeps_the_spread():
    namespace = run_solution('covariate_shift', 3)
    torch.manual_seed(0)
    network = namespace['Network'](batch_norm=False)
    namespace['init_for_sigmoids'](network)
    with torch.no_grad():
        s = spreads(network, torch.randn(2000, 1, 28, 28))
    assert 0.1 < s[2] / s[0] < 1
    assert all(l.bias is None or not l.bias.any() for l in network.linears)
    # The hidden layers' scale that exercise 4 passes as --sigma
    assert_shows('covariate_shift', f'4 / \\sqrt{{100}} = {4 / math.sqrt(100):g}$',
                 f'--sigma {4 / math.sqrt(100):g}')


# ## Algorithm 2 (population_statistics)

def test_population_statistics_values_per_statistic_of_the_mnist_cnn():
    from labml_nn_bn.experiments.mnist import Model
    model = Model(batch_norm=True)
    m = {}
    for name in ('bn1', 'bn2', 'bn3'):
        getattr(model, name).register_forward_pre_hook(
            lambda bn, inputs, name=name: m.__setitem__(name, inputs[0].numel()
                                                        // inputs[0].shape[1]))
    model(torch.randn(4, 1, 28, 28))
    assert m == {'bn1': 2304, 'bn2': 256, 'bn3': 4}
    assert_shows('population_statistics', '4 \\cdot 24 \\cdot 24 = 2304',
                 '4 \\cdot 8 \\cdot 8 = 256', '$m = 4$',
                 f'${m["bn1"] / (m["bn1"] - 1):.4f}$ and '
                 f'${m["bn2"] / (m["bn2"] - 1):.4f}$',
                 f'\\frac{{4}}{{3}} = {4 / 3:.4f}$')


def test_population_statistics_no_value_stands_out_in_a_small_batch():
    from labml_nn_bn.batch_norm import BatchNorm
    assert_shows('population_statistics', f'\\sqrt{{3}} = {math.sqrt(3):.2f}$',
                 f'at most {math.sqrt(3):.2f} out',
                 f'\\sqrt{{2303}} = {math.sqrt(2303):.0f}$')
    bn = BatchNorm(1, eps=1e-12).train()
    # The bound is reached when the other values are equal, however far the one value is
    for far in (5., 1e3):
        x_hat = bn(torch.tensor([[far], [0.], [0.], [0.]], dtype=torch.float64))
        assert x_hat[0, 0].item() == pytest.approx(math.sqrt(3), rel=1e-6)
    # and never passed
    torch.manual_seed(0)
    x = torch.randn(4, 1000, dtype=torch.float64) * 9
    x_hat = BatchNorm(1000, eps=1e-12).train()(x * torch.rand_like(x))
    assert x_hat.abs().max().item() <= math.sqrt(3) + 1e-9


def test_population_statistics_code_solution_measures_one_batch_norm_in_training():
    from labml_nn_bn.experiments.mnist import Model
    namespace = run_solution('population_statistics', 3)
    torch.manual_seed(0)
    model = Model(batch_norm=True)
    # Running statistics that differ from any batch's
    for bn in (model.bn1, model.bn2, model.bn3):
        bn.running_mean.fill_(3.)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    modes = set()
    for name in ('bn1', 'bn2', 'bn3'):
        getattr(model, name).register_forward_pre_hook(
            lambda m, i, name=name: modes.add((name, m.training)))
    for name in ('bn1', 'bn2', 'bn3'):
        modes.clear()
        accuracy = namespace['accuracy_with_one_in_training'](model, x, y, 4, name)
        assert 0 <= accuracy <= 1
        # Only the one named normalises with batch statistics
        assert modes == {(n, n == name) for n in ('bn1', 'bn2', 'bn3')}
    # It leaves the model as it found it
    assert not model.training and not any(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# ## Normalising outside the gradient (detached_mean)

def detached_bias_prediction(loss: float, steps: int = 1000) -> float:
    from labml_nn_bn.experiments import detached_mean
    C, lr = detached_mean.C, detached_mean.LR['mean']
    return steps * lr * 2 / C * math.sqrt(C * loss)


def test_detached_mean_bias_drift_predicted_from_the_loss():
    import json
    from labml_nn_bn.experiments import detached_mean
    values = json.loads((ROOT / 'docs' / 'figures' / 'detached_mean.json')
                        .read_text())['values']['mean']
    loss, C, lr = values['detached']['loss_end'], detached_mean.C, values['lr']
    assert values['steps'] == 1000 and lr == 0.1
    norm = math.sqrt(C * loss)
    speed = lr * 2 / C * norm
    prediction = detached_bias_prediction(loss)
    # The solution works from the loss as the page quotes it
    assert_shows('detached_mean', f'\\sqrt{{C \\cdot {loss:.3f}}} = {norm:.3f}$',
                 f'= {speed:.3f}$ per step', f'\\approx {prediction:.1f}$')
    assert values['detached']['b_end'] == pytest.approx(prediction, rel=2e-3)


def test_detached_mean_scale_crosses_zero_when_predicted():
    from labml_nn_bn.experiments import detached_mean
    C, lr = detached_mean.C, detached_mean.LR['scale']
    continuous = C / (2 * lr)
    a, step = 1., 0
    while a > 0:
        a, step = a - lr / (C * a), step + 1
    assert_shows('detached_mean', f'\\frac{{C}}{{2\\eta}} = {continuous:.0f}$',
                 f'is step {step}', '\\frac{1}{4} + 4 \\cdot \\frac{1}{2}$')
    # The run does it: every feature's scale changes sign at that step, all four at once
    u = detached_mean.make_data(0)
    history = detached_mean.train_scale(u, True, step + 2, lr)['a']
    assert all(v > 0 for v in history[step - 1]) and all(v < 0 for v in history[step])
    assert 1 / 4 + 4 / 2 == pytest.approx(2.25)


def test_detached_mean_code_solution_finds_the_statistic_that_matters():
    namespace = run_solution('detached_mean', 3)
    u = namespace['make_data'](0)
    C = namespace['C']
    grad = namespace['scale_gradient']
    assert grad(u, False, True).tolist() == pytest.approx([1 / C] * C, rel=1e-4)
    assert grad(u, True, False).abs().max().item() < 1e-5
    assert grad(u, False, False).abs().max().item() < 1e-5
    assert_shows('detached_mean', f'\\frac{{1}}{{C}} = {1 / C:.2f}$',
                 'scale_gradient(make_data(0), False, True)',
                 'scale_gradient(make_data(0), True, False)')


def test_detached_mean_prediction_holds_for_another_sample():
    from labml_nn_bn.experiments import detached_mean
    u = detached_mean.make_data(1)
    history = detached_mean.train_bias(u, True, 1000, detached_mean.LR['mean'])
    prediction = detached_bias_prediction(history['loss'][-1])
    assert history['b_norm'][-1] == pytest.approx(prediction, rel=3e-3)
    assert_shows('detached_mean', '--seed 1')


# ## Batch normalization and Dropout (regularisation)

def test_regularisation_noise_of_the_statistics():
    from labml_nn_bn.batch_norm import BatchNorm
    m = 64
    mean_var = (m - 1) / m ** 2
    var_rel = math.sqrt(2 / (m - 1))
    assert_shows('regularisation', f'\\frac{{63}}{{4096}} = {mean_var:.4f}$',
                 f'{math.sqrt(mean_var):.3f}$ standard deviations',
                 f'\\sqrt{{2 / (m - 1)}} = {var_rel:.3f}$',
                 f'half that, ${var_rel / 2:.3f}$')
    m = 16
    assert_shows('regularisation', f"the mean's is ${math.sqrt((m - 1) / m ** 2):.3f}$",
                 f"the variance's ${math.sqrt(2 / (m - 1)):.3f}$",
                 f"the scale's ${math.sqrt(2 / (m - 1)) / 2:.3f}$")
    # Drawn: example 0 (at the population mean) in 4,000 random batches of 64
    torch.manual_seed(0)
    batches = torch.randn(4000, 64, 1, dtype=torch.float64)
    batches[:, 0] = 0.
    bn = BatchNorm(1).train()
    x_hat = torch.stack([bn(b)[0, 0] for b in batches])
    assert x_hat.std().item() == pytest.approx(math.sqrt((64 - 1) / 64 ** 2), rel=0.05)
    var = batches.var(dim=1, correction=0)
    assert (var.std() / var.mean()).item() == pytest.approx(math.sqrt(2 / 63), rel=0.05)


def test_regularisation_code_solution_removes_the_batch_noise():
    namespace = run_solution('regularisation', 3)
    settings = namespace['Settings'](hidden=32)
    torch.manual_seed(0)
    network = namespace['reference_network'](settings, n_ref=16).train()
    plain = namespace['make_network']('bn', settings).train()
    reference, example = torch.randn(16, 1, 28, 28), torch.randn(1, 1, 28, 28)
    outputs, plain_outputs = [], []
    for _ in range(3):
        others = torch.randn(7, 1, 28, 28)
        outputs.append(network(torch.cat([reference, example, others]))[16])
        plain_outputs.append(plain(torch.cat([example, others]))[0])
    assert all(torch.allclose(o, outputs[0], atol=1e-6) for o in outputs)
    assert not torch.allclose(plain_outputs[1], plain_outputs[0], atol=1e-3)
    # The gradient reaches the weights through the reference statistics
    loss = network(torch.cat([reference, example]))[16:].sum()
    loss.backward()
    assert network.linears[0].weight.grad.abs().sum() > 0


def test_regularisation_batch_16_doubles_the_noise_prediction():
    factor = math.sqrt((16 - 1) / 16 ** 2) / math.sqrt((64 - 1) / 64 ** 2)
    assert 1.9 < factor < 2.1  # "about twice"
    assert_shows('regularisation', 'about twice as noisy', '--batch-size 16',
                 "exercise 2's $1/\\sqrt{m}$")


# ## Higher learning rates (learning_rate)

def bn_layer_loss(weight):
    from labml_nn_bn.batch_norm import BatchNorm
    torch.manual_seed(1)
    u, target = torch.randn(60, 20), torch.randn(60, 5)
    bn = BatchNorm(5).train()
    return ((torch.tanh(bn(u @ weight.T)) - target) ** 2).mean()


def test_learning_rate_gradient_of_a_scale_invariant_weight():
    torch.manual_seed(0)
    w = torch.randn(5, 20, dtype=torch.float32)
    grads = {}
    for a in (1., 2.):
        weight = (a * w).requires_grad_()
        bn_layer_loss(weight).backward()
        grads[a] = weight.grad
    # Each row is orthogonal to its gradient, and the gradient at 2 W is half that at W
    assert (w * grads[1.]).sum(dim=1).abs().max() < 1e-6 * grads[1.].norm()
    assert torch.allclose(grads[2.], grads[1.] / 2, rtol=1e-3, atol=1e-7)
    assert_shows('learning_rate', 'Doubling the norm divides it by $4$',
                 '\\eta / \\lVert W_k \\rVert^2$')


def test_learning_rate_norm_grows_by_the_square_of_the_step():
    torch.manual_seed(0)
    weight = torch.randn(5, 20).requires_grad_()
    bn_layer_loss(weight).backward()
    lr = 3.
    after = weight.detach() - lr * weight.grad
    expected = weight.detach().norm(dim=1) ** 2 + lr ** 2 * weight.grad.norm(dim=1) ** 2
    assert torch.allclose(after.norm(dim=1) ** 2, expected, rtol=1e-5)
    assert_shows('learning_rate', f'\\sqrt{{2}} = {math.sqrt(2):.3f}$',
                 'halves the effective')


def test_learning_rate_code_solution_norms_grow_more_at_a_high_rate():
    import functools
    namespace = run_solution('learning_rate', 3)
    # A smaller network than the page's, for a quick test: the argument does not care
    namespace['Network'] = functools.partial(namespace['Network'], hidden=32, layers=3)
    generator = torch.Generator().manual_seed(0)
    # Random images whose label depends on them, so that there is something to learn
    x = torch.randn(40 * 32, 1, 28, 28, generator=generator)
    y = x.flatten(1)[:, :10].argmax(dim=1)
    batches = list(zip(x.split(32), y.split(32)))
    torch.manual_seed(0)
    slow = namespace['norm_growth'](0.1, batches)
    torch.manual_seed(0)
    fast = namespace['norm_growth'](3., batches)
    assert min(slow + fast) >= 1 - 1e-5
    assert max(slow) < 1.5 and all(f > 1.3 * s for s, f in zip(slow, fast))
    # The effective rates end closer than the factor of 30 between the rates
    effective = [3 / f ** 2 / (0.1 / s ** 2) for s, f in zip(slow, fast)]
    assert max(effective) < 30 / 2


def test_learning_rate_depth_experiment_is_the_failing_rates_on_two_layers():
    import json
    values = json.loads((ROOT / 'docs' / 'figures' / 'learning_rate.json')
                        .read_text())['values']
    # The rates the exercise calls failing are where the page's network diverged
    assert values['no_bn']['runs'][5]['lr'] == 1 and values['lr_30x'] == 3
    assert values['no_bn']['first_diverged_lr'] == 1
    args = parser_check('learning_rate', ['--lrs', '1', '3', '--layers', '2',
                                          '--reference-lr', '0.1'])
    assert args.layers == 2 and args.learning_rates == [1, 3]
    assert_shows('learning_rate', '--lrs 1 3', '--layers 2')


# ## Internal covariate shift, tested (internal_covariate_shift)

def test_internal_covariate_shift_noise_moves_a_unit_as_derived():
    from labml_nn_bn.experiments.internal_covariate_shift import DistributionNoise
    k = 1.
    assert_shows('internal_covariate_shift', f'by ${2 * k / 3:.2f}$ of a normalised',
                 f'\\sqrt{{2}} = {math.sqrt(1 + k ** 2):.2f}$',
                 f'\\sqrt{{5}} = {math.sqrt((1 + k) ** 2 + k ** 2):.2f}$',
                 f'1 + \\frac{{k}}{{2}} = {1 + k / 2:g}$')
    # Drawn: a normalised unit through the noise, at 3,000 steps
    noise = DistributionNoise(1, k, torch.Generator().manual_seed(0)).train()
    torch.manual_seed(0)
    y = torch.randn(2000, 1)
    y = (y - y.mean()) / y.std(correction=0)
    out = torch.stack([noise(y)[:, 0] for _ in range(3000)])
    means, stds = out.mean(dim=1), out.std(dim=1)
    jump = (means[1:] - means[:-1]).abs().mean().item()
    assert jump == pytest.approx(2 * k / 3, rel=0.05)
    assert stds.min().item() == pytest.approx(math.sqrt(2), abs=0.05)
    assert stds.max().item() == pytest.approx(math.sqrt(5), abs=0.05)
    assert noise.eval()(y).div(y).mean().item() == pytest.approx(1 + k / 2)


def test_internal_covariate_shift_code_solution_measures_the_gradient_shift():
    namespace = run_solution('internal_covariate_shift', 3)
    shift = namespace['gradient_shift']
    torch.manual_seed(0)
    model = namespace['Network']('bn', hidden=32).train()
    x, y = torch.randn(60, 1, 28, 28), torch.randint(0, 10, (60,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    distance, cosine = shift(model, x, y, 0.5, 0)
    assert distance == pytest.approx(0., abs=1e-6)
    assert cosine == pytest.approx(1., abs=1e-5)
    distance, cosine = shift(model, x, y, 0.5, 2)
    assert distance > 0 and -1 <= cosine < 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_internal_covariate_shift_weaker_noise_experiment_matches_the_page():
    import json
    values = json.loads((ROOT / 'docs' / 'figures' / 'internal_covariate_shift.json')
                        .read_text())['values']
    # The comparison the solution draws: the page's noisy standard network, 0.5, k = 1
    assert values['settings']['learning_rates'][1] == 0.5
    assert values['settings']['noise'] == 1
    diverged = values['runs']['lr_0p5']['noisy_standard']['diverged_at']
    # "within the first ... steps" quotes the later of the two
    assert max(d for d in diverged if d is not None) == diverged[1]
    args = parser_check('internal_covariate_shift',
                        ['--lrs', '0.5', '--noise', '0.25', '--noise-sweep'])
    assert args.noise == 0.25 and list(args.noise_sweep) == []


def figure_values(name: str) -> dict:
    import json
    path = ROOT / 'docs' / 'figures' / f'{name}.json'
    return json.loads(path.read_text(encoding='utf-8'))['values']


def test_measured_quotes_in_the_exercises_name_what_the_text_says():
    # Quotes by position in a list: the position must still be the step the text names
    cs = figure_values('covariate_shift')
    assert cs['no_bn']['steps'][:2] == [0, 500] and cs['bn']['steps'][0] == 0
    assert_shows('covariate_shift', 'no_bn.accuracy.1 ', 'test accuracy at step 500',
                 'bn.percentiles.0.0 ', 'bn.percentiles.2.0 ')
    assert cs['settings']['steps'] == 50_000  # "step 5,000" is its tenth
    reg = figure_values('regularisation')
    assert reg['settings']['batch_size'] == 64
    ps = figure_values('population_statistics')
    assert ps['batch_4']['batch_size'] == 4
