"""
The site in a real browser: Debian's chromium driven by Playwright, the site served on 127.0.0.1.
Screenshots go to test-output/screenshots/ (ignored by git).
"""
from pathlib import Path

import pytest

from conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, load_annotate_hook, wait_until_laid_out  # noqa: F401
from site_build import AnnotatedPageParser, SPLITLINES_ONLY

annotate = load_annotate_hook()




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
        wait_until_laid_out(self.page)

    def _route(self, route):
        if route.request.url.startswith(self.base) or route.request.url.startswith('data:'):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def close(self):
        self.context.close()


def _visitor(browser, base):
    opened = []

    def open_page(path, width, **kwargs):
        v = Visit(browser, base, path, width, **kwargs)
        opened.append(v)
        return v

    return open_page, opened


@pytest.fixture
def visit(browser, served_site):
    open_page, opened = _visitor(browser, served_site)
    yield open_page
    for v in opened:
        v.close()


@pytest.fixture
def visit_fixture(browser, served_fixture_site):
    """Opens a page of the fixture site (see site_build.py)."""
    open_page, opened = _visitor(browser, served_fixture_site)
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


# --- the layout of the side-by-side pages (issue 12) --------------------------------------

def annotated_paths():
    """The URL path of every annotated page, relative to the site's root."""
    return [path.relative_to(ROOT).with_suffix('').as_posix() + '/' for path in annotate.annotated_sources(ROOT)]


# In the browser: each code block wider than its box (it would scroll sideways), each
# copy button that covers a character of code, each numbered line whose number is not level
# with its first row, each line without a row of its own (a blank line of height zero puts
# its number over the next one), and each wrapped line whose continuation does not start at least
# three characters deeper than its first row (the hanging indent).
LAYOUT_PROBLEMS = '''() => {
  const problems = {scrolls: [], covered: [], misaligned: [], collapsed: [], unhung: []};
  for (const el of document.querySelectorAll('.annotated-code pre, .annotated-code code, .annotated-line')) {
    if (el.scrollWidth > el.clientWidth + 1) problems.scrolls.push(el.id || el.tagName);
  }
  for (const pre of document.querySelectorAll('.annotated-code pre')) {
    // Material's copy button (`.md-clipboard` before 9.7, a `.md-code__button` since)
    const button = pre.querySelector('.md-clipboard, .md-code__button[data-md-type="copy"]');
    const b = button && button.getBoundingClientRect();
    for (const line of pre.querySelectorAll('.annotated-line')) {
      const range = document.createRange();
      const indent = line.querySelector('.annotated-indent');
      if (indent) range.setStartAfter(indent); else range.setStart(line, 0);
      range.setEnd(line, line.childNodes.length);
      const rects = [...range.getClientRects()].filter(r => r.width > 0);
      if (b && rects.some(r => r.left < b.right && r.right > b.left && r.top < b.bottom && r.bottom > b.top))
        problems.covered.push(line.id);
      const number = line.querySelector('.annotated-lineno').getBoundingClientRect();
      const box = line.getBoundingClientRect();
      if (Math.abs(number.top - box.top) > 1) problems.misaligned.push(line.id);
      if (box.height < 0.9 * parseFloat(getComputedStyle(line).lineHeight)) problems.collapsed.push(line.id);
      if (rects.length) {
        const ch = parseFloat(getComputedStyle(line).fontSize) * 0.5;
        const first = rects[0];
        const rows = rects.filter(r => r.top > first.bottom - 2);
        if (rows.some(r => r.left < first.left + 3 * ch)) problems.unhung.push(line.id);
      }
    }
  }
  return problems;
}'''

NO_PROBLEMS = {'scrolls': [], 'covered': [], 'misaligned': [], 'collapsed': [], 'unhung': []}

# The lines, of at most `chars` characters, that take more than one row
WRAPPED = '''(chars) => [...document.querySelectorAll('.annotated-line')]
  .filter(l => l.textContent.length <= chars
          && l.getBoundingClientRect().height > 1.5 * parseFloat(getComputedStyle(l).lineHeight))
  .map(l => l.id)'''


@pytest.mark.parametrize('width', [1280, 1440])
def test_batch_norm_code_never_scrolls_sideways_nor_hides_under_the_copy_button(visit, test_output, width):
    v = visit('labml_nn_bn/batch_norm/', width)
    assert_clean(v)
    page = v.page
    assert page.locator('.annotated-code pre').count() > 10
    assert page.evaluate(LAYOUT_PROBLEMS) == NO_PROBLEMS
    if width == 1440:
        # At 1440 px a line as long as the project allows (88 characters) fits on one row
        assert page.evaluate(WRAPPED, 88) == []
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')
    page.locator('#batchnormfunction-backward').scroll_into_view_if_needed()
    page.screenshot(path=str(test_output / 'screenshots' / f'batch_norm-backward-{width}.png'))


@pytest.mark.parametrize('scheme', ['light', 'dark'])
def test_phone_code_wraps_readably_and_the_page_never_scrolls_sideways(visit, test_output, scheme):
    # Every annotated page in light mode; the BatchNorm page in dark mode too
    for path in annotated_paths() if scheme == 'light' else ['labml_nn_bn/batch_norm/']:
        v = visit(path, 390, color_scheme=scheme)
        assert_clean(v)
        page = v.page
        assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), path
        assert page.evaluate(LAYOUT_PROBLEMS) == NO_PROBLEMS, path
        # Code stays at a readable size
        size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.annotated-line')).fontSize)")
        assert size >= 11, path
        if path == 'labml_nn_bn/batch_norm/':
            page.locator('#batchnormfunction-backward').scroll_into_view_if_needed()
            page.screenshot(path=str(test_output / 'screenshots' / f'batch_norm-390-{scheme}.png'))


def test_introduction_spans_the_page_at_a_readable_measure(visit, test_output):
    v = visit('labml_nn_bn/batch_norm/', 1440)
    page = v.page
    intro = page.locator('.annotated-section').first
    assert 'annotated-section--notes-only' in intro.get_attribute('class')
    section, notes = _box(intro, ':scope'), _box(intro, '.annotated-notes')
    assert intro.locator('.annotated-code').count() == 0
    assert notes['width'] >= 0.98 * section['width']
    # Wider than the notes column beside code, but no wider than a comfortable line
    side = _box(page.locator('#batchnormfunction-backward'), '.annotated-notes')
    paragraph = _box(intro, '.annotated-notes > p')
    font = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.annotated-notes > p')).fontSize)")
    assert paragraph['width'] > 1.3 * side['width']
    assert paragraph['width'] <= 42 * font + 1
    page.screenshot(path=str(test_output / 'screenshots' / 'batch_norm-1440.png'))
    assert_clean(v)


def test_each_annotated_page_shows_its_table_of_contents(visit):
    for path in annotated_paths():
        v = visit(path, 1440)
        assert_clean(v)
        page = v.page
        toc = page.locator('.md-sidebar--primary .md-nav--secondary')
        assert toc.is_visible(), path
        links = toc.locator('a.md-nav__link')
        assert links.count() >= 3, path
        # In the left sidebar, left of the notes; the code keeps the width
        assert _box(toc, ':scope')['x'] + _box(toc, ':scope')['width'] <= _box(page, '.annotated')['x']
        # An entry leads to its heading
        target = links.nth(1).get_attribute('href')
        links.nth(1).click()
        page.wait_for_function(f'location.hash === {target!r}')
        heading = page.locator(target)
        assert heading.count() == 1 and heading.is_visible()


def test_short_code_stays_in_view_beside_long_notes(visit):
    v = visit('labml_nn_bn/batch_norm/', 1440)
    page = v.page
    # The section whose notes are the longest compared with its (short) code
    index = page.evaluate('''() => {
      const sections = [...document.querySelectorAll('.annotated-section--sticky')];
      const excess = s => s.querySelector('.annotated-notes').offsetHeight - s.querySelector('.annotated-code pre').offsetHeight;
      return [...document.querySelectorAll('.annotated-section')].indexOf(sections.sort((a, b) => excess(b) - excess(a))[0]);
    }''')
    section = page.locator('.annotated-section').nth(index)
    notes = _box(section, '.annotated-notes')
    code = _box(section, '.annotated-code pre')
    if notes['height'] < code['height'] + 300:
        pytest.skip('no section of this page has notes much longer than its code')
    # Scroll to the end of the notes: the code has come along
    page.evaluate(f'window.scrollTo(0, {notes["y"] + notes["height"] - 500})')
    code_after = _box(section, '.annotated-code pre')
    assert 0 <= code_after['y'] <= 900 - code_after['height']
    assert_clean(v)


def _pages_with_images(site_dir):
    for page in sorted(Path(site_dir).rglob('*.html')):
        parser = AnnotatedPageParser()
        parser.feed(page.read_text(encoding='utf-8'))
        if parser.images:
            rel = page.relative_to(site_dir).as_posix()
            yield rel[:-len('index.html')] if rel.endswith('index.html') else rel


def _assert_images_load(v, where):
    page = v.page
    images = page.locator('img')
    assert images.count() > 0, where
    for i in range(images.count()):
        image = images.nth(i)
        image.scroll_into_view_if_needed()
        page.wait_for_function('img => img.complete', arg=image.element_handle())
        natural = image.evaluate('img => [img.naturalWidth, img.naturalHeight]')
        assert natural[0] > 0 and natural[1] > 0, f'{where}: {image.get_attribute("src")} did not load'
        # Scaled to its column, never wider
        column = image.evaluate('img => (img.closest(".annotated-notes") || img.parentElement).getBoundingClientRect().width')
        assert image.bounding_box()['width'] <= column + 1, where


def test_every_image_of_the_site_loads(visit, built_site):
    # Every page of the built site that has an <img>: figures added later are checked too
    pages = list(_pages_with_images(built_site[0]))
    assert pages, 'no page with an image'  # the home page's Colab badge, at least
    for path in pages:
        v = visit(path, 1440)
        _assert_images_load(v, path)
        assert_clean(v)


def test_fixture_page_images_and_special_characters(visit_fixture, fixture_site, test_output):
    # The fixture's notes hold two images; its code lines hold characters that a browser
    # could draw as line breaks: each code line must stay one row
    for path in _pages_with_images(fixture_site[0]):
        v = visit_fixture(path, 1440)
        _assert_images_load(v, path)
        assert_clean(v)
    v = visit_fixture('labml_nn_bn/demo/fixture/', 1440)
    page = v.page
    assert page.locator('.annotated-notes img').count() == 2
    assert page.locator('.annotated-char').count() == 2 * len(SPLITLINES_ONLY)
    assert page.evaluate(WRAPPED, 200) == []
    assert page.evaluate(LAYOUT_PROBLEMS) == NO_PROBLEMS
    assert page.locator('.annotated-gap').count() == 1
    page.screenshot(path=str(test_output / 'screenshots' / 'fixture-1440.png'), full_page=True)


def test_batch_norm_page_in_dark_mode_at_1440(visit, test_output):
    v = visit('labml_nn_bn/batch_norm/', 1440, color_scheme='dark')
    assert_clean(v)
    page = v.page
    assert page.evaluate('document.body.getAttribute("data-md-color-scheme")') == 'slate'
    page.locator('#batchnormfunction-backward').scroll_into_view_if_needed()
    page.screenshot(path=str(test_output / 'screenshots' / 'batch_norm-backward-1440-dark.png'))


# --- every page: formulas typeset, no raw TeX left (issue 20) and the claims page (issue 19) -

# The visible text of the page outside code: what a reader sees of the notes and pages
VISIBLE_PROSE = '''() => {
  const body = document.querySelector('.md-content').cloneNode(true);
  body.querySelectorAll('pre, code, script, style, .katex, .md-clipboard, .md-code__nav').forEach(e => e.remove());
  return body.innerText;
}'''

# Fragments of TeX that only show when a formula was not typeset
RAW_TEX = ['$$', '\\frac', '\\mathrm', '\\mathcal', '\\hat', '\\sqrt', '\\sum', '\\epsilon',
           '\\gamma', '\\beta', '\\sigma', '\\mu', '\\left', '\\right', '\\(', '\\[']


def _site_paths(site_dir):
    for page in sorted(Path(site_dir).rglob('*.html')):
        rel = page.relative_to(site_dir).as_posix()
        if rel == '404.html':
            continue
        yield rel[:-len('index.html')] if rel.endswith('index.html') else rel


def test_every_page_typesets_its_formulas_and_shows_no_raw_tex(visit, built_site):
    paths = list(_site_paths(built_site[0]))
    assert 'claims/' in paths and 'labml_nn_bn/experiments/learning_rate/' in paths
    for path in paths:
        v = visit(path, 1440)
        page = v.page
        page.wait_for_function("document.querySelectorAll('.arithmatex:not([data-typeset])').length === 0")
        assert page.locator('.katex-error').count() == 0, path
        prose = page.evaluate(VISIBLE_PROSE)
        shown = [t for t in RAW_TEX if t in prose]
        assert not shown, f'{path}: raw TeX on the page: {shown}'
        assert_clean(v)


VERDICTS = {'holds here', 'partly', 'not tested here', 'contested by later work'}


def test_claims_page_reads_at_1440_and_every_row_has_a_verdict(visit, test_output):
    v = visit('claims/', 1440)
    assert_clean(v)
    page = v.page
    rows = page.locator('.claims-table tbody tr')
    assert rows.count() >= 10
    for i in range(rows.count()):
        cells = rows.nth(i).locator('td')
        assert cells.count() == 5
        verdict = cells.nth(4).locator('.verdict')
        assert verdict.count() == 1 and verdict.inner_text().strip() in VERDICTS, i
        # The experiment column links a page of the site, or says there is none
        assert cells.nth(2).locator('a').count() >= 1 or cells.nth(2).inner_text().strip() == 'None'
    # The table fits the content column: no sideways scrolling, neither of it nor of the page
    assert page.evaluate('''() => { const w = document.querySelector('.claims-table .md-typeset__scrollwrap');
                                    return w.scrollWidth <= w.clientWidth + 1; }''')
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')
    # The prose around the table keeps a readable measure (about 90 characters a line)
    prose = page.locator('.claims-prose p')
    assert prose.count() >= 2
    font = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.claims-prose p')).fontSize)")
    assert all(prose.nth(i).bounding_box()['width'] <= 42 * font + 1 for i in range(prose.count()))
    page.screenshot(path=str(test_output / 'screenshots' / 'claims-1440.png'), full_page=True)


@pytest.mark.parametrize('scheme', ['light', 'dark'])
def test_claims_page_rows_become_cards_on_a_phone(visit, test_output, scheme):
    v = visit('claims/', 390, color_scheme=scheme)
    assert_clean(v)
    page = v.page
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')
    first = page.locator('.claims-table tbody tr').first
    cells = [_box(first, 'td', i) for i in range(5)]
    # Stacked: each cell below the previous one, each the card's width
    for above, below in zip(cells, cells[1:]):
        assert above['y'] + above['height'] <= below['y'] + 1
        assert abs(above['x'] - below['x']) < 2
    label = page.evaluate('''() => getComputedStyle(document.querySelector('.claims-table tbody td:nth-child(5)'),
                                                    '::before').content''')
    assert label == '"Verdict"'
    page.screenshot(path=str(test_output / 'screenshots' / f'claims-390-{scheme}.png'), full_page=True)


def test_home_page_points_to_the_claims_page_before_its_first_section(visit):
    v = visit('', 1440)
    page = v.page
    first = page.evaluate('''() => {
      const nodes = [...document.querySelectorAll('.md-content h2, .md-content a[href]')];
      const link = nodes.findIndex(n => n.tagName === 'A' && /claims\\/?$/.test(n.getAttribute('href')));
      const heading = nodes.findIndex(n => n.tagName === 'H2');
      return [link, heading];
    }''')
    assert 0 <= first[0] < first[1], first
    assert_clean(v)


@pytest.mark.parametrize('name', ['learning_rate', 'regularisation', 'internal_covariate_shift'])
@pytest.mark.parametrize('width', [1440, 390])
def test_new_experiment_pages_show_their_figures(visit, test_output, name, width):
    v = visit(f'labml_nn_bn/experiments/{name}/', width)
    assert_clean(v)
    page = v.page
    figures = page.locator(f'.annotated-notes img[src*="{name}"]')
    assert figures.count() >= 1
    for i in range(figures.count()):
        figure = figures.nth(i)
        figure.scroll_into_view_if_needed()
        page.wait_for_function('img => img.complete && img.naturalWidth > 0', arg=figure.element_handle())
        box = figure.bounding_box()
        # Readable: at least most of the phone's width, and never wider than the page
        assert box['width'] >= min(0.8 * width, 600) and box['x'] + box['width'] <= width + 1
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')
    figures.first.scroll_into_view_if_needed()
    page.screenshot(path=str(test_output / 'screenshots' / f'{name}-{width}.png'))
