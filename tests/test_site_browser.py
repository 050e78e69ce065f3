"""
The site in a real browser: Debian's chromium driven by Playwright, the site served on 127.0.0.1.
Screenshots go to test-output/screenshots/ (ignored by git).
"""
import shutil

import pytest
from playwright.sync_api import sync_playwright


CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']


@pytest.fixture(scope='module')
def browser():
    # A missing browser is a failure, not a skip: `make test` installs it (scripts/system-deps.sh)
    assert shutil.which('chromium') or shutil.os.path.exists(CHROMIUM), \
        'chromium is not installed: run `make system-deps`'
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit:
    """A page opened at a viewport width, with its console errors and every request recorded.
    Requests to any other host than the test server are blocked and recorded."""

    def __init__(self, browser, base, path, width, color_scheme='light'):
        self.base = base
        self.context = browser.new_context(viewport={'width': width, 'height': 900},
                                           color_scheme=color_scheme)
        self.page = self.context.new_page()
        self.errors, self.requests, self.blocked = [], [], []
        self.page.on('console', lambda m: self.errors.append(m.text) if m.type == 'error' else None)
        self.page.on('pageerror', lambda e: self.errors.append(str(e)))
        self.page.on('request', lambda r: self.requests.append(r.url))
        self.page.route('**/*', self._route)
        self.page.goto(base + path)
        self.page.wait_for_load_state('networkidle')

    def _route(self, route):
        if route.request.url.startswith(self.base) or route.request.url.startswith('data:'):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def close(self):
        self.context.close()


@pytest.fixture
def visit(browser, served_site):
    opened = []

    def open_page(path, width, **kwargs):
        v = Visit(browser, served_site, path, width, **kwargs)
        opened.append(v)
        return v

    yield open_page
    for v in opened:
        v.close()


def _box(page, selector, index=0):
    return page.locator(selector).nth(index).bounding_box()


def assert_clean(v):
    assert v.errors == [], v.errors
    assert v.blocked == [], f'requests to other hosts: {v.blocked}'
    assert all(u.startswith(v.base) or u.startswith('data:') for u in v.requests)
    assert v.page.locator('.katex-error').count() == 0


def test_batch_norm_page_side_by_side_at_desktop_width(visit, test_output):
    v = visit('labml_nn_bn/batch_norm/', 1280)
    assert_clean(v)
    page = v.page
    assert page.locator('.katex').count() > 100
    # Every formula was typeset: no arithmatex wrapper was left with raw TeX
    assert page.locator('.arithmatex:not([data-typeset])').count() == 0
    notes_text = ' '.join(page.locator('.annotated-notes').all_inner_texts())
    assert '$' not in notes_text, 'a stray $ in the rendered notes'
    # Sections whose two columns both have content sit side by side
    section = page.locator('#batchnormfunction-backward')
    notes, code = _box(section, '.annotated-notes'), _box(section, '.annotated-code')
    assert notes['x'] + notes['width'] <= code['x'] + 1
    assert abs(notes['y'] - code['y']) < 40
    # The page itself never scrolls sideways (long code lines scroll inside their block)
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')
    page.screenshot(path=str(test_output / 'screenshots' / 'batch_norm-1280.png'))
    section.scroll_into_view_if_needed()
    page.screenshot(path=str(test_output / 'screenshots' / 'batch_norm-backward-1280.png'))


def test_batch_norm_page_stacks_on_a_phone(visit, test_output):
    v = visit('labml_nn_bn/batch_norm/', 390)
    assert_clean(v)
    page = v.page
    section = page.locator('#batchnormfunction-backward')
    notes, code = _box(section, '.annotated-notes'), _box(section, '.annotated-code')
    # Notes above code, each the full width of the content
    assert notes['y'] + notes['height'] <= code['y'] + 1
    assert abs(notes['x'] - code['x']) < 2
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')
    section.scroll_into_view_if_needed()
    page.screenshot(path=str(test_output / 'screenshots' / 'batch_norm-390.png'))


def test_dark_mode_toggles(visit, test_output):
    v = visit('labml_nn_bn/batch_norm/', 1280)
    page = v.page
    scheme = 'document.body.getAttribute("data-md-color-scheme")'
    assert page.evaluate(scheme) == 'default'
    page.locator('label[title="Switch to dark mode"]').first.click()
    page.wait_for_function(f'{scheme} === "slate"')
    background = page.evaluate('getComputedStyle(document.body).backgroundColor')
    page.screenshot(path=str(test_output / 'screenshots' / 'batch_norm-dark.png'))
    page.locator('label[title="Switch to light mode"]').first.click()
    page.wait_for_function(f'{scheme} === "default"')
    assert page.evaluate('getComputedStyle(document.body).backgroundColor') != background
    assert_clean(v)


def test_home_page(visit, test_output):
    v = visit('', 1280)
    assert_clean(v)
    page = v.page
    assert page.locator('.katex').count() >= 3
    assert page.locator('a[href="https://arxiv.org/abs/1502.03167"]').count() == 1
    # The search works offline: its index and worker come from the site
    page.locator('.md-search__input').first.click()
    # Typed key by key: Material's search listens to keyboard events
    page.keyboard.type('covariate', delay=30)
    page.wait_for_selector('.md-search-result__item', timeout=15_000)
    assert page.locator('.md-search-result__item').count() > 0
    page.keyboard.press('Escape')
    page.screenshot(path=str(test_output / 'screenshots' / 'home-1280.png'))
    assert_clean(v)


@pytest.fixture(scope='session')
def test_output(test_output):  # noqa: F811 (extends conftest's fixture)
    (test_output / 'screenshots').mkdir(parents=True, exist_ok=True)
    return test_output
