"""
The math arrives typeset (issue 20: the page was slow to open while the browser typeset 389
formulas): every page shows its formulas with JavaScript disabled, and with JavaScript the
page loads no KaTeX script and logs no error. How long the page takes is measured by
`benchmarks/page_load.py`, not here.
"""
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
