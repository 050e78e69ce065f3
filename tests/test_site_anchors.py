"""
The long annotated pages lay out a section only as it nears the screen (annotated.css,
`content-visibility`, only when there is JavaScript), which is most of what makes the BatchNorm
page open fast (benchmarks/page_load.py). The price would be links to headings that land in the
wrong place, because the sections above the heading have only estimated heights when the
browser scrolls; assets/javascripts/anchors.js scrolls again until the heading stays put.
These tests open the BatchNorm page at headings near its top, middle and end, with and without
JavaScript, and check each heading lands just under the header, as on any short page.
"""
import pytest

from test_site_math import browser  # noqa: F401 (the module's browser fixture)

HEADINGS = ['algorithm-1-plainly', 'batchnormfunction-backward', 'what-to-remember',
            'exercises']


@pytest.mark.parametrize('javascript', [True, False], ids=['javascript', 'no-javascript'])
def test_a_link_to_a_heading_lands_on_it(browser, served_site, javascript):  # noqa: F811
    context = browser.new_context(viewport={'width': 1440, 'height': 900},
                                  java_script_enabled=javascript)
    try:
        page = context.new_page()
        lazy = None
        for heading in HEADINGS:
            page.goto(served_site + f'labml_nn_bn/batch_norm/#{heading}')
            page.wait_for_load_state('load')
            if javascript:
                # anchors.js settles within about half a second
                page.wait_for_timeout(800)
            top = page.evaluate(f'document.getElementById("{heading}")'
                                '.getBoundingClientRect().top')
            lazy = page.evaluate('document.documentElement.classList.contains('
                                 '"annotated-lazy")')
            # Just under Material's header (about 3 rem): where scroll-margin-top puts it
            assert 30 < top < 120, (heading, top)
        # The fast path is on exactly when there is a script to keep the links right
        assert lazy == javascript
    finally:
        context.close()


def test_the_lazy_layout_is_on_for_annotated_sections_only_with_javascript(
        browser, served_site):  # noqa: F811
    context = browser.new_context(viewport={'width': 1440, 'height': 900})
    try:
        page = context.new_page()
        page.goto(served_site + 'labml_nn_bn/batch_norm/')
        page.wait_for_load_state('load')
        visibility = page.evaluate('getComputedStyle(document.querySelector('
                                   '".annotated-section")).contentVisibility')
        assert visibility == 'auto'
    finally:
        context.close()
