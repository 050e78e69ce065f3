"""
The math arrives typeset (issue 20: the page was slow to open while the browser typeset 389
formulas): every page shows its formulas with JavaScript disabled, and with JavaScript the
page loads no KaTeX script and logs no error. How long the page takes is measured by
`benchmarks/page_load.py`, not here.

Search results show each formula as plain text (`σ²_B`, not its TeX), and a period or
comma after an inline formula never starts a line of its own.
"""
import json
import re

import pytest

from conftest import wait_until_laid_out
from test_site_browser import RAW_TEX, VISIBLE_PROSE, _site_paths


def formulas_in(html: str) -> int:
    """How many formulas the page's HTML holds (each one `.arithmatex` element)."""
    return len(re.findall(r'<(?:span|div) class="arithmatex"', html))


def test_every_page_shows_its_formulas_typeset_without_javascript(browser, built_site,
                                                                  served_site):
    site_dir = built_site[0]
    context = browser.new_context(java_script_enabled=False,
                                  viewport={'width': 1440, 'height': 900})
    try:
        checked = 0
        for path in _site_paths(site_dir):
            html = (site_dir / path / 'index.html' if not path.endswith('.html') else
                    site_dir / path).read_text(encoding='utf-8')
            expected = formulas_in(html)
            page = context.new_page()
            page.goto(served_site + path)
            assert page.locator('.katex').count() == expected, path
            assert page.locator('.katex-error').count() == 0, path
            shown = [t for t in RAW_TEX if t in page.evaluate(VISIBLE_PROSE)]
            assert not shown, f'{path}: raw TeX on the page without JavaScript: {shown}'
            if expected:
                # Drawn with KaTeX's stylesheet: the visible part has a size, the MathML
                # (for screen readers) is clipped away
                first = page.locator('.katex-html').first
                first.scroll_into_view_if_needed()
                box = first.bounding_box()
                assert box and box['width'] > 0 and box['height'] > 0, path
                assert page.locator('.katex-mathml').first.evaluate(
                    'e => getComputedStyle(e).position') == 'absolute', path
                checked += expected
            page.close()
        # The BatchNorm page alone has hundreds
        assert checked > 300
    finally:
        context.close()


@pytest.mark.parametrize('path', ['', 'labml_nn_bn/batch_norm/'])
def test_with_javascript_no_katex_script_is_loaded_and_no_error_logged(browser, served_site, path):
    context = browser.new_context(viewport={'width': 1440, 'height': 900})
    try:
        page = context.new_page()
        errors, requests = [], []
        page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
        page.on('pageerror', lambda e: errors.append(str(e)))
        page.on('request', lambda r: requests.append(r.url))
        page.goto(served_site + path)
        page.wait_for_load_state('networkidle')
        wait_until_laid_out(page)
        assert errors == []
        scripts = [u for u in requests if u.endswith('.js')]
        assert scripts, 'Material\'s own script should load'
        assert not [u for u in scripts if 'katex' in u or u.endswith('/math.js')], scripts
        # KaTeX's stylesheet and fonts still come from the site
        assert any(u.endswith('assets/katex/katex.min.css') for u in requests)
        assert page.locator('.arithmatex:not([data-typeset])').count() == 0
        assert page.locator('.katex').count() == page.locator('.arithmatex').count() > 0
    finally:
        context.close()


# --- formulas in the search index (docs/hooks/math_text.py) ---------------------------

def _prose(text: str) -> str:
    """An index entry's text without its code (whose strings may hold `\\n`)."""
    return re.sub(r'<(code|pre)>.*?</\1>', '', text, flags=re.DOTALL)


def test_the_search_index_holds_formulas_as_text_not_tex(built_site):
    index = json.loads((built_site[0] / 'search' / 'search_index.json').read_text())
    entries = index['docs']
    tex = [(e['location'], m) for e in entries for field in ('title', 'text')
           for m in re.findall(r'\\(?:[A-Za-z]+|[()\[\]{},])', _prose(e[field]))]
    assert tex == [], tex[:10]
    # Algorithm 1's normalisation, as the notation page and the BatchNorm page write it
    by_location = {e['location']: e['text'] for e in entries}
    reading = 'x̂_i = (x_i − μ_B)/√(σ²_B + ε)'
    assert reading in by_location['labml_nn_bn/batch_norm/#algorithm-1-plainly']
    assert reading in by_location['notation/#a-layer-and-its-batch-norm']
    assert sum('μ_B' in e['text'] for e in entries) > 20


SHOWN_OUTSIDE_CODE = '''selector => {
  const shown = document.querySelector(selector).cloneNode(true);
  shown.querySelectorAll('code, pre').forEach(e => e.remove());
  return shown.innerText;
}'''


@pytest.mark.parametrize('query', ['momentum', 'variance', 'μ'])
def test_search_results_show_formulas_as_text(browser, served_site, query):
    context = browser.new_context(viewport={'width': 1440, 'height': 900})
    try:
        page = context.new_page()
        page.goto(served_site)
        page.locator('.md-search__input').first.click()
        page.keyboard.type(query, delay=30)  # key by key, as Material expects
        page.wait_for_selector('.md-search-result__item', timeout=15_000)
        # What the results show outside code (whose strings may hold a `\\n`)
        shown = page.evaluate(SHOWN_OUTSIDE_CODE, '.md-search-result__list')
        assert shown.strip() and '\\' not in shown, shown[:2000]
        if query == 'μ':
            # A Greek letter finds the formulas that hold it
            assert 'μ_B' in shown
    finally:
        context.close()


# --- a formula and the punctuation after it share a line ------------------------------

# Each inline formula followed at once by punctuation, and whether the two share a line:
# a line box has no client rect of its own, so the punctuation's middle must lie within
# the formula's last line fragment (its box on the line where it ends)
PUNCTUATION_AFTER_FORMULAS = '''() => {
  const broken = []; let checked = 0;
  for (const formula of document.querySelectorAll('.md-content span.arithmatex')) {
    const next = formula.nextSibling;
    const punctuation = next && next.nodeType === Node.TEXT_NODE
      && /^[.,;:!?)\\]]/.test(next.data);
    if (!punctuation) continue;
    checked++;
    const range = document.createRange();
    range.setStart(next, 0);
    range.setEnd(next, 1);
    const mark = range.getBoundingClientRect();
    const parts = formula.getClientRects();
    const last = parts[parts.length - 1];
    const middle = (mark.top + mark.bottom) / 2;
    if (middle < last.top || middle > last.bottom) {
      const tex = formula.querySelector('annotation').textContent;
      broken.push(tex + ' | ' + next.data.slice(0, 12));
    }
  }
  return {checked, broken};
}'''


@pytest.mark.parametrize('width', [390, 1440])
def test_punctuation_after_an_inline_formula_stays_on_its_line(browser, served_site,
                                                               width):
    context = browser.new_context(viewport={'width': width, 'height': 900})
    try:
        checked = 0
        # The BatchNorm page (notes beside code) and the notation page (plain Markdown)
        for path in ['labml_nn_bn/batch_norm/', 'notation/']:
            page = context.new_page()
            page.goto(served_site + path)
            page.wait_for_load_state('load')
            wait_until_laid_out(page)
            result = page.evaluate(PUNCTUATION_AFTER_FORMULAS)
            assert result['broken'] == [], f'{path} at {width} px: {result["broken"]}'
            checked += result['checked']
            page.close()
        assert checked > 200
    finally:
        context.close()
