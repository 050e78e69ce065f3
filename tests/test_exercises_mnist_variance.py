"""
The exercises at the end of the MNIST and variance-identity pages: each page closes with
an Exercises section of at least four numbered exercises, each with a collapsed
solution; every code solution runs; every command line an exercise gives parses, with
options that exist; and every number a solution derives is what a computation gives.
(The measured quotes in the solutions are checked against the JSON by
`tests/test_figures.py`, like every other quote.)
"""
import json
import math
import re
import textwrap

import markdown
import pytest
import torch

from conftest import ROOT, load_annotate_hook
from labml_nn_bn import BatchNorm
from labml_nn_bn.experiments import cli, mnist, variance_identity

EXPERIMENTS = ROOT / 'labml_nn_bn' / 'experiments'
PAGES = {'mnist': EXPERIMENTS / 'mnist.py',
         'variance_identity': EXPERIMENTS / 'variance_identity.py'}
pages = pytest.mark.parametrize('name', list(PAGES))

TITLE = re.compile(r'^\*\*(\d+)\. (.+?)\*\* \((derivation|code|experiment)\)\. ',
                   re.MULTILINE)
CODE = re.compile(r'^    ```python\n(.*?)^    ```$', re.MULTILINE | re.DOTALL)


def _last_section(name):
    annotate = load_annotate_hook()
    return annotate.split_sections(PAGES[name].read_text(encoding='utf-8')).sections[-1]


def _notes(name) -> str:
    """The Exercises section's markdown, as the renderer reads it."""
    return _last_section(name).notes


def _exercises(name):
    """(number, title, kind, text) of each exercise, the text with its solution."""
    notes = _notes(name)
    found = list(TITLE.finditer(notes))
    ends = [m.start() for m in found[1:]] + [len(notes)]
    return [(int(m.group(1)), m.group(2), m.group(3), notes[m.start():end])
            for m, end in zip(found, ends)]


def _measured(source):
    path = ROOT / 'docs' / 'figures' / f'{source}.json'
    return json.loads(path.read_text())['values']


@pages
def test_the_exercises_close_the_page_as_notes(name):
    # The renderer turns the comments after `main()` into a section of notes at the end
    last = _last_section(name)
    assert last.notes.startswith('## Exercises') and not last.code


@pages
def test_at_least_four_numbered_exercises_each_with_a_collapsed_solution(name):
    exercises = _exercises(name)
    assert len(exercises) >= 4
    assert [n for n, *_ in exercises] == list(range(1, len(exercises) + 1))
    # A mix of derivations, code and experiments
    assert {kind for _, _, kind, _ in exercises} == {'derivation', 'code', 'experiment'}
    for number, _, kind, text in exercises:
        assert text.count('??? success "Solution"') == 1, number
        solution = text.split('??? success "Solution"\n')[1]
        assert solution.startswith('    ') and len(solution.strip()) > 80, number
        if kind == 'code':
            assert CODE.search(text), f'exercise {number} has no code in its solution'
    md = markdown.Markdown(extensions=['admonition', 'pymdownx.details',
                                       'pymdownx.superfences', 'pymdownx.arithmatex'],
                           extension_configs={'pymdownx.arithmatex': {'generic': True}})
    html = md.convert(_notes(name))
    assert html.count('<details class="success">') == len(exercises)
    assert html.count('<summary>Solution</summary>') == len(exercises)


@pages
def test_code_solutions_run(name):
    blocks = [textwrap.dedent(b) for b in CODE.findall(_notes(name))]
    assert blocks
    for block in blocks:
        exec(compile(block, f'{name} exercise', 'exec'), {'__name__': 'exercise'})


def _help(main, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(['--help'])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pages
def test_every_option_an_exercise_names_exists(name, capsys):
    main = mnist.parse_args if name == 'mnist' else variance_identity.main
    options = set(re.findall(r'(?<![\w-])--[a-z][a-z-]*', _help(main, capsys)))
    named = set(re.findall(r'(?<![\w-])--[a-z][a-z-]*', _notes(name)))
    assert named and named <= options, named - options


def _commands(name):
    module = f'labml_nn_bn.experiments.{name}'
    pattern = rf'`python -m {re.escape(module)}((?: [^`]+)?)`'
    return [c.split() for c in re.findall(pattern, _notes(name))]


def test_the_mnist_command_lines_parse():
    commands = _commands('mnist')
    assert ['--batch-size', '2', '--epochs', '1'] in commands
    for argv in commands:
        mnist.parse_args(argv)
    assert mnist.parse_args(['--batch-size', '2'])['batch_size'] == 2
    assert mnist.parse_args(['--bn-impl', 'torch'])['bn_impl'] == 'torch'


def test_the_variance_identity_command_line_parses(monkeypatch):
    commands = _commands('variance_identity')
    assert commands == [['--smoke', '--seed', '1']]
    calls = []
    monkeypatch.setattr(variance_identity, 'run', lambda *args: calls.append(args))
    monkeypatch.setattr(cli, 'run_main', lambda fn, prog: fn())
    variance_identity.main(commands[0])
    assert calls == [(True, 1, None, None)]


# ## The numbers the solutions derive

def test_mnist_parameter_counts():
    text = _notes('mnist')
    with_bn, without = mnist.Model(batch_norm=True), mnist.Model(batch_norm=False)
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    biases = sum(getattr(without, n).bias.numel() for n in ('conv1', 'conv2', 'fc1'))
    bn_parameters = sum(p.numel() for n in ('bn1', 'bn2', 'bn3')
                        for p in getattr(with_bn, n).parameters())
    norms = [getattr(with_bn, n) for n in ('bn1', 'bn2', 'bn3')]
    buffers = sum(bn.running_mean.numel() + bn.running_var.numel() for bn in norms)
    assert (biases, bn_parameters, buffers) == (570, 1140, 1140)
    assert (count(with_bn), count(without)) == (431_650, 431_080)
    assert count(with_bn) - count(without) == 570
    assert f'{100 * 570 / count(without):.2f} %' == '0.13 %'
    for shown in ('$20 + 50 + 500 = 570$', '$2 \\times 570 = 1{,}140$',
                  '431,650 against 431,080', '0.13 % more', 'another 1,140 numbers',
                  'without batch normalization, 431,080'):
        assert shown in ' '.join(text.split()), shown


def test_mnist_batch_of_two():
    text = ' '.join(_notes('mnist').split())
    model = mnist.Model().train()
    m = {}

    def count_values(name):
        def hook(module, args):
            m[name] = args[0].numel() // args[0].shape[1]
        return hook

    for n in ('bn1', 'bn2', 'bn3'):
        getattr(model, n).register_forward_pre_hook(count_values(n))
    with torch.no_grad():
        model(torch.randn(2, 1, 28, 28))
    assert m == {'bn1': 1152, 'bn2': 128, 'bn3': 2}
    assert '$m = 2 \\times 24 \\times 24 = 1{,}152$' in text
    assert '$m = 2 \\times 8 \\times 8 = 128$' in text
    # With m = 2, every feature normalises to -+sqrt(var / (var + eps)), about +-1
    pair = torch.randn(2, 6, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        x_hat = BatchNorm(6, affine=False).train()(pair)
    var = pair.var(dim=0, unbiased=False)
    assert torch.allclose(x_hat.abs(), torch.sqrt(var / (var + 1e-5)).expand(2, 6))
    assert torch.allclose(x_hat[0], -x_hat[1])
    steps = _measured('mnist')['settings']['train_images'] // 2
    assert f'the epoch takes {steps:,} steps' in text


def test_mnist_one_test_image():
    values = _measured('mnist')
    images = values['settings']['test_images']
    ours, theirs = values['bn']['accuracy_test'], values['torch_bn']['accuracy_test']
    difference = abs(theirs - ours)
    assert round(difference * images) == 1
    assert round(100 / images, 1) == 0.1
    assert '0.1 percentage points is one image' in ' '.join(_notes('mnist').split())


def test_variance_identity_cancellation_estimates():
    text = ' '.join(_notes('variance_identity').split())
    float32 = _measured('variance_identity')['float32']['identity']
    float16 = _measured('variance_identity')['float16']['identity']
    # Exercise 1: unit roundoff times the squared offset, at 10^3, and the measurement
    estimate = torch.finfo(torch.float32).eps / 2 * 1e3 ** 2
    assert f'{estimate:.2f}' == '0.06'
    assert '$2^{-24} \\times 10^6 \\approx 0.06$' in text
    assert 1 <= float32['1e3'] / estimate <= 4
    # Exercise 2: the offset where that estimate reaches one, and the measured decades
    # on either side of it
    assert (torch.finfo(torch.float32).eps / 2) ** -0.5 == 2 ** 12 == 4096
    assert '$2^{12} = 4{,}096$' in text
    assert math.isfinite(float32['1e3']) and float32['1e4'] == 'nan'
    float16_limit = (torch.finfo(torch.float16).eps / 2) ** -0.5
    assert round(float16_limit) == 45 and '$2^{5.5} \\approx 45$' in text
    assert 10 < float16_limit < 100
    assert math.isfinite(float16['1e1']) and float16['1e2'] == 'nan'


def test_variance_identity_overflow():
    text = ' '.join(_notes('variance_identity').split())
    largest = torch.finfo(torch.float16).max
    assert largest == 65504 and f'{math.sqrt(largest):.1f}' == '255.9'
    assert '\\sqrt{65{,}504} \\approx 255.9' in text and '$256^2 = 65{,}536$' in text
    assert math.isinf((torch.tensor(256., dtype=torch.float16) ** 2).item())
    assert math.isfinite((torch.tensor(255.875, dtype=torch.float16) ** 2).item())
    # bfloat16 has float32's range
    assert f'{torch.finfo(torch.bfloat16).max:.1e}' == '3.4e+38'
    assert '$3.4 \\times 10^{38}$' in text


@pytest.mark.parametrize('seed', range(4))
def test_variance_identity_breaks_down_at_the_same_offsets_for_other_seeds(seed):
    # Exercise 5's answer, for seeds 0 to 3
    near = variance_identity.measure_one(1e3, torch.float32, seed)['errors']
    far = variance_identity.measure_one(1e4, torch.float32, seed)['errors']
    assert 0.03 < near['identity'] < 0.5
    assert math.isnan(far['identity'])
    assert near['shifted'] < 1e-6 and far['shifted'] < 1e-6
    text = ' '.join(_notes('variance_identity').split())
    assert 'the tests check seeds 0 to 3' in text
