"""
The live figures of issue 22 (`docs/assets/javascripts/explorable*.js`, their data embedded by
`docs/hooks/explorables.py`) in a real browser: Debian's chromium driven by Playwright, the
site served on 127.0.0.1. Each figure must draw, change when the reader changes a control,
show the numbers the Python module computes (the ones the build embedded, and others this
test computes itself for inputs it types in), leave no console error and send no request
elsewhere, and read in dark mode. Screenshots go to test-output/screenshots/.
"""
import importlib.util
import json
import math

import pytest
import torch

from conftest import ROOT, wait_until_laid_out
from labml_nn_bn import BatchNorm
from labml_nn_bn import batch_norm_pictures as pictures

BN_PAGE = 'labml_nn_bn/batch_norm/'
LR_PAGE = 'labml_nn_bn/experiments/learning_rate/'
WORKED = '.explorable[data-explorable="worked-example"]'
MOMENTUM = '.explorable[data-explorable="momentum"]'
RATES = '.explorable[data-explorable="learning-rate"]'
FIGURES = ROOT / 'docs' / 'figures'
SHOTS = ROOT / 'test-output' / 'screenshots'


def _figure_values(name):
    return json.loads((FIGURES / name).read_text())['values']


# --- without a browser: the numbers and the hook ---------------------------------------------

def test_gradient_paths_are_section_3_and_sum_to_the_module_gradient():
    """The three paths the worked example shows, against the paper's chain rule (Section 3)
    written out here by plain arithmetic."""
    example, eps = pictures.WORKED_EXAMPLE, pictures.EPS
    values = pictures.gradient_path_values()
    m = len(example.x)
    for k in range(2):
        x = [row[k] for row in example.x]
        dy = [row[k] for row in values['grad_y']]
        mu = sum(x) / m
        var = sum((v - mu) ** 2 for v in x) / m
        inv = 1 / math.sqrt(var + eps)
        dx_hat = [g * example.gamma[k] for g in dy]
        d_var = sum(g * (v - mu) for g, v in zip(dx_hat, x)) * -0.5 * inv ** 3
        d_mu = -inv * sum(dx_hat)
        for i in range(m):
            assert values['direct'][i][k] == pytest.approx(dx_hat[i] * inv, abs=1e-12)
            assert values['via_mean'][i][k] == pytest.approx(d_mu / m, abs=1e-12)
            assert values['via_var'][i][k] == pytest.approx(d_var * 2 * (x[i] - mu) / m,
                                                            abs=1e-12)
            total = sum(values[p][i][k] for p in ('direct', 'via_mean', 'via_var'))
            assert values['grad_x'][i][k] == pytest.approx(total, abs=1e-12)
    # The default gradient reaches example 1 only; the statistics pass it on to the others
    assert values['direct'][1] == [0., 0.] and values['grad_x'][1][0] != 0.


def test_committed_json_holds_what_the_live_figures_need():
    values = _figure_values('batch_norm_pictures.json')
    assert values['worked_example']['gradient_paths'] == pictures.gradient_path_values()
    running = values['running_mean']
    fresh = pictures.running_mean_values(momenta=pictures.RUNNING_MEAN_CHECKED_MOMENTA)
    assert running['batch_means'] == fresh['batch_means']
    assert running['true_mean'] == fresh['true_mean']
    for key, series in fresh['running_mean'].items():
        assert running['at_step_100'][key] == series[99]
        assert running['final'][key] == series[-1]


def _load_hook():
    spec = importlib.util.spec_from_file_location(
        'explorables', ROOT / 'docs' / 'hooks' / 'explorables.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_embeds_the_json_and_names_what_is_missing(tmp_path):
    hook = _load_hook()
    page = '<p>a</p><div class="explorable" data-explorable="momentum"></div><p>b</p>'
    html = hook.embed(page, FIGURES, 'x.md')
    start = html.index('class="explorable-data">') + len('class="explorable-data">')
    data = json.loads(html[start:html.index('</script>')])
    assert data['batch_means'] == _figure_values('batch_norm_pictures.json')[
        'running_mean']['batch_means']
    assert html.startswith('<p>a</p>') and html.endswith('</div><p>b</p>')
    with pytest.raises(hook.ExplorableError, match=r"x\.md: .*'nope' is unknown"):
        hook.embed(page.replace('momentum', 'nope'), FIGURES, 'x.md')
    empty = '{"values": {"running_mean": {}}}'
    (tmp_path / 'batch_norm_pictures.json').write_text(empty)
    with pytest.raises(hook.ExplorableError, match="no key 'batch_means'"):
        hook.embed(page, tmp_path, 'x.md')
    with pytest.raises(hook.ExplorableError, match='learning_rate.json does not exist'):
        hook.embed(page.replace('momentum', 'learning-rate'), tmp_path, 'x.md')


# --- in the browser ----------------------------------------------------------------------------



class Visit:
    """A page at a viewport width, with its console errors and requests to other hosts."""

    def __init__(self, browser, base, path, width, **options):
        self.base = base
        self.context = browser.new_context(viewport={'width': width, 'height': 900},
                                           **options)
        self.page = self.context.new_page()
        self.errors, self.blocked = [], []
        self.page.on('console', self._console)
        self.page.on('pageerror', lambda e: self.errors.append(str(e)))
        self.page.route('**/*', self._route)
        self.page.goto(base + path)
        self.page.wait_for_load_state('networkidle')
        wait_until_laid_out(self.page)

    def _console(self, message):
        if message.type == 'error':
            self.errors.append(message.text)

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.base) or url.startswith('data:'):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def assert_clean(self):
        assert self.errors == [], self.errors
        assert self.blocked == [], f'requests to other hosts: {self.blocked}'


@pytest.fixture
def visit(browser, served_site):
    opened = []

    def open_page(path, width=1440, **options):
        opened.append(Visit(browser, served_site, path, width, **options))
        return opened[-1]

    yield open_page
    for v in opened:
        v.context.close()


def _value(page, figure, key):
    output = page.locator(f'{figure} output[data-key="{key}"]')
    text = output.get_attribute('data-value')
    assert text, f'{key} shows no number'
    return float(text)


def _shot(page, selector, path):
    page.locator(selector).scroll_into_view_if_needed()
    page.screenshot(path=str(path))


def _no_sideways_scroll(page):
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')


# The worked example

def _python_worked_example(x, gamma, beta, eps, grad_y):
    """What our BatchNorm computes for a batch (float64): statistics, x̂, y, and the paths of
    ∂ℓ/∂x."""
    batch = torch.tensor(x, dtype=torch.float64)
    bn = BatchNorm(2, eps=eps, dtype=torch.float64, affine=False).train()
    x_hat = bn(batch)
    y = (torch.tensor(gamma, dtype=torch.float64) * x_hat
         + torch.tensor(beta, dtype=torch.float64))
    example = pictures.WorkedExample(x=x, gamma=gamma, beta=beta)
    paths = pictures.gradient_path_values(example, grad_y, eps=eps)
    return {'mean': batch.mean(0).tolist(),
            'var': batch.var(0, unbiased=False).tolist(),
            'xhat': x_hat.tolist(), 'y': y.tolist(), **paths}


def _python_train_eval(star, companions, eps, momentum):
    """x* normalised in two batches by a BatchNorm(1) in training mode, then in evaluation."""
    bn = BatchNorm(1, eps=eps, momentum=momentum, dtype=torch.float64).train()
    train = []
    with torch.no_grad():
        for others in companions:
            batch = torch.tensor([star] + list(others), dtype=torch.float64).view(-1, 1)
            train.append(bn(batch)[0, 0].item())
        evaluated = bn.eval()(torch.tensor([[star]], dtype=torch.float64))[0, 0].item()
    return {'train-0': train[0], 'train-1': train[1], 'eval': evaluated,
            'running-mean': bn.running_mean.item(),
            'running-var': bn.running_var.item()}


def _check_worked_example(page, expected, tol):
    for k in range(2):
        for name in ('mean', 'var'):
            assert _value(page, WORKED, f'{name}-{k}') == \
                pytest.approx(expected[name][k], abs=tol), (name, k)
        for i in range(4):
            for name in ('xhat', 'y', 'direct', 'via_mean', 'via_var', 'grad_x'):
                assert _value(page, WORKED, f'{name}-{i}-{k}') == \
                    pytest.approx(expected[name][i][k], abs=tol), (name, i, k)


def _fill(page, figure, key, value):
    page.locator(f'{figure} input[data-key="{key}"]').fill(repr(float(value)))


# Batches the test types in: negative values, a feature whose values are all equal (σ²_B = 0,
# where ε alone keeps the division finite), a large ε, and gradients on several examples
OTHER_BATCHES = [
    dict(x=((-2., 0.5), (4., 0.5), (0., 0.5), (1.5, 0.5)), gamma=(1., 3.),
         beta=(0.5, -1.), eps=1e-5,
         grad_y=((0., 1.), (1., -2.), (0.5, 0.), (-1., 0.25))),
    dict(x=((10., -3.), (11., 7.), (9.5, 2.), (12., -1.)), gamma=(-0.5, 1.),
         beta=(0., 0.), eps=0.5, grad_y=((1., 0.), (0., 0.), (0., 0.), (0., 1.))),
]


def test_worked_example_agrees_with_python_and_follows_edits(visit, test_output):
    v = visit(BN_PAGE, 1440)
    page = v.page
    assert page.locator(f'{WORKED}[data-ready]').count() == 1
    # The defaults: what the build embedded, which the Python module computed
    we = pictures.worked_example_values()
    default = dict(mean=we['mean'], var=we['var'], xhat=we['x_hat'], y=we['y'],
                   **we['gradient_paths'])
    _check_worked_example(page, default, 1e-12)
    te = pictures.train_eval_values()
    saved = {'train-0': te['train'][0][0], 'train-1': te['train'][1][0],
             'eval': te['eval'][0][0], 'running-mean': te['running_mean'],
             'running-var': te['running_var']}
    for key, value in saved.items():
        assert _value(page, WORKED, key) == pytest.approx(value, abs=1e-6), key
    _shot(page, WORKED, SHOTS / 'explorable-worked-example-1440.png')

    # Other batches, typed in; what our BatchNorm computes for them
    before = _value(page, WORKED, 'y-0-0')
    for case in OTHER_BATCHES:
        for i in range(4):
            for k in range(2):
                _fill(page, WORKED, f'x-{i}-{k}', case['x'][i][k])
                _fill(page, WORKED, f'dy-{i}-{k}', case['grad_y'][i][k])
        for k in range(2):
            _fill(page, WORKED, f'gamma-{k}', case['gamma'][k])
            _fill(page, WORKED, f'beta-{k}', case['beta'][k])
        _fill(page, WORKED, 'eps', case['eps'])
        expected = _python_worked_example(case['x'], case['gamma'], case['beta'],
                                          case['eps'], case['grad_y'])
        _check_worked_example(page, expected, 1e-9)
    assert _value(page, WORKED, 'y-0-0') != before

    # The example in two batches, with other numbers
    star, companions = -1., ((3., 0.5), (-4., 8.))
    _fill(page, WORKED, 'star', star)
    for n, others in enumerate(companions):
        for j, value in enumerate(others):
            _fill(page, WORKED, f'batch-{n}-{j}', value)
    expected = _python_train_eval(star, companions, te['eps'], te['momentum'])
    for key, value in expected.items():
        assert _value(page, WORKED, key) == pytest.approx(value, abs=1e-9), key

    # A field that is not a number is marked, and shows no number rather than a wrong one
    field = page.locator(f'{WORKED} input[data-key="x-0-0"]')
    field.fill('')
    assert field.get_attribute('aria-invalid') == 'true'
    mean = page.locator(f'{WORKED} output[data-key="mean-0"]')
    assert mean.get_attribute('data-value') == '' and mean.inner_text() == '—'
    v.assert_clean()


def test_worked_example_on_a_phone(visit, test_output):
    v = visit(BN_PAGE, 390, has_touch=True, is_mobile=True)
    page = v.page
    _no_sideways_scroll(page)
    # Each field has a label, and is reached with the keyboard
    ids = page.locator(f'{WORKED} input').evaluate_all('els => els.map(e => e.id)')
    for input_id in ids:
        assert page.locator(f'{WORKED} label[for="{input_id}"]').count() == 1
    page.locator(f'{WORKED} input[data-key="x-0-0"]').tap()
    page.keyboard.press('ArrowUp')
    assert _value(page, WORKED, 'mean-0') == pytest.approx((2 + 3 + 5 + 7) / 4)
    _shot(page, WORKED, SHOTS / 'explorable-worked-example-390.png')
    v.assert_clean()


# Momentum

def _running(page):
    return _value(page, MOMENTUM, 'at-100'), _value(page, MOMENTUM, 'final')


def test_momentum_slider_redraws_the_running_mean_of_python(visit, test_output):
    v = visit(BN_PAGE, 1440)
    page = v.page
    saved = _figure_values('batch_norm_pictures.json')['running_mean']
    line = page.locator(f'{MOMENTUM} polyline.xp-running')
    slider = page.locator(f'{MOMENTUM} input[type="range"]')
    # α = 0.1 to start, as the static picture
    assert page.locator(MOMENTUM).get_attribute('data-momentum') == '0.1'
    assert _running(page) == pytest.approx(
        (saved['at_step_100']['0.1'], saved['final']['0.1']), abs=1e-5)
    drawn = line.get_attribute('points')
    # The left end of the slider, α = 0.01 (the keyboard's Home key)
    slider.focus()
    page.keyboard.press('Home')
    assert page.locator(MOMENTUM).get_attribute('data-momentum') == '0.01'
    assert _running(page) == pytest.approx(
        (saved['at_step_100']['0.01'], saved['final']['0.01']), abs=1e-5)
    assert line.get_attribute('points') != drawn
    # Another α, set here and run through our BatchNorm
    slider.fill('170')
    alpha = float(page.locator(MOMENTUM).get_attribute('data-momentum'))
    assert alpha == pytest.approx(10 ** -0.3, rel=1e-2)
    python = pictures.running_mean_values(momenta=(alpha,))['running_mean'][str(alpha)]
    assert _running(page) == pytest.approx((python[99], python[-1]), abs=1e-5)
    _shot(page, MOMENTUM, SHOTS / 'explorable-momentum-1440.png')
    # momentum=None: the plain average
    page.locator(f'{MOMENTUM} input[type="checkbox"]').check()
    assert page.locator(MOMENTUM).get_attribute('data-momentum') == 'None'
    assert _running(page) == pytest.approx(
        (saved['at_step_100']['None'], saved['final']['None']), abs=1e-5)
    assert slider.is_disabled()
    v.assert_clean()


def test_momentum_on_a_phone(visit, test_output):
    v = visit(BN_PAGE, 390, has_touch=True, is_mobile=True)
    page = v.page
    _no_sideways_scroll(page)
    box = page.locator(f'{MOMENTUM} svg').bounding_box()
    assert 250 < box['width'] <= 390
    label = page.locator(f'{MOMENTUM} label[for]').first
    control = page.locator('#' + label.get_attribute('for'))
    assert control.get_attribute('type') == 'range'
    _shot(page, MOMENTUM, SHOTS / 'explorable-momentum-390.png')
    v.assert_clean()


# The learning-rate sweep

def _plotted_curves(page):
    """Each drawn curve, read back from its SVG coordinates into (steps, accuracies)."""
    svg = page.locator(f'{RATES} svg')
    x0, x1, y0, y1, last = (
        float(svg.get_attribute(a))
        for a in ('data-x0', 'data-x1', 'data-y0', 'data-y1', 'data-last-step'))
    curves = {}
    for line in page.locator(f'{RATES} polyline').all():
        points = [tuple(map(float, p.split(',')))
                  for p in line.get_attribute('points').split()]
        key = (line.get_attribute('data-series'), int(line.get_attribute('data-seed')))
        curves[key] = ([(x - x0) / (x1 - x0) * last for x, _ in points],
                       [(y - y0) / (y1 - y0) for _, y in points])
    return curves


def _check_rate(page, values, rate):
    slider = page.locator(f'{RATES} input[type="range"]')
    slider.fill(str(values['rates'].index(rate)))
    assert float(page.locator(RATES).get_attribute('data-rate')) == rate
    curves = _plotted_curves(page)
    diverged = 0
    for name in ('no_bn', 'bn'):
        run = next(r for r in values[name]['runs'] if r['lr'] == rate)
        for seed, curve in zip(run['seeds'], run['curves']):
            steps, accuracy = curves[(name, seed)]
            assert accuracy == pytest.approx(curve, abs=2e-4)
            assert steps == pytest.approx(run['steps'][:len(curve)], abs=0.1)
        diverged += sum(d is not None for d in run['diverged_at'])
    assert page.locator(f'{RATES} path.xp-cross').count() == diverged
    return diverged


def test_learning_rate_slider_shows_the_measured_curves(visit, test_output):
    v = visit(LR_PAGE, 1440)
    page = v.page
    relu = _figure_values('learning_rate.json')
    # The reference rate, where nothing diverges, and 30 times it, where runs do
    assert _check_rate(page, relu, 0.1) == 0
    drawn = _plotted_curves(page)
    assert _check_rate(page, relu, 3.0) > 0
    assert _plotted_curves(page) != drawn
    _shot(page, RATES, SHOTS / 'explorable-learning-rate-1440.png')
    # The sigmoid network's runs
    page.locator(f'{RATES} label', has_text='sigmoid').click()
    assert page.locator(RATES).get_attribute('data-activation') == 'sigmoid'
    _check_rate(page, _figure_values('learning_rate_sigmoid.json'), 1.0)
    v.assert_clean()


def test_learning_rate_on_a_phone_by_keyboard(visit, test_output):
    v = visit(LR_PAGE, 390, has_touch=True, is_mobile=True)
    page = v.page
    _no_sideways_scroll(page)
    slider = page.locator(f'{RATES} input[type="range"]')
    before = page.locator(RATES).get_attribute('data-rate')
    slider.focus()
    page.keyboard.press('ArrowRight')
    assert page.locator(RATES).get_attribute('data-rate') != before
    _shot(page, RATES, SHOTS / 'explorable-learning-rate-390.png')
    v.assert_clean()


# Dark mode, and without JavaScript

def _luminance(rgb):
    inside = rgb[rgb.index('(') + 1:rgb.index(')')]
    channels = [int(c) / 255 for c in inside.split(',')[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
              for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a, b):
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize('path, figure, line', [
    (BN_PAGE, WORKED, 'output[data-key="via_var-0-0"]'),
    (BN_PAGE, MOMENTUM, 'polyline.xp-running'),
    (LR_PAGE, RATES, 'polyline.xp-bn'),
])
def test_dark_mode_keeps_the_figures_readable(visit, test_output, path, figure, line):
    v = visit(path, 390, color_scheme='dark')
    page = v.page
    scheme = page.evaluate('document.body.getAttribute("data-md-color-scheme")')
    assert scheme == 'slate'
    style = page.locator(figure).evaluate(
        'e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]')
    assert _contrast(*style) >= 7, style
    mark = page.locator(f'{figure} {line}').first.evaluate(
        'e => e.tagName === "polyline" ? getComputedStyle(e).stroke'
        ' : getComputedStyle(e).color')
    assert _contrast(mark, style[1]) >= 3, (mark, style[1])
    name = figure.split('"')[1]
    _shot(page, figure, SHOTS / f'explorable-{name}-dark-390.png')
    v.assert_clean()


def test_without_javascript_the_static_figures_remain(visit):
    v = visit(BN_PAGE, 1440, java_script_enabled=False)
    page = v.page
    assert page.locator('img[src$="bn_worked_example.svg"]').is_visible()
    assert page.locator('img[src$="bn_running_mean.svg"]').is_visible()
    assert not page.locator(WORKED).is_visible()
    assert not page.locator(MOMENTUM).is_visible()
