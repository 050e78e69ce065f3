"""
The long annotated pages open fast (issue 20): with JavaScript the browser skips the sections far
from the screen while the page loads (annotated.css, `content-visibility: auto`) and Material
sets up each code block only as it nears the screen (mkdocs.yml, `content.lazy`); just after
the load, docs/assets/javascripts/lazy-layout.js lays the rest out in short slices and keeps
what the reader looks at still meanwhile. The speed is measured by benchmarks/page_load.py;
these tests check that nothing is lost for it, on the BatchNorm page:
- the shortcut is taken (sections were skipped during the load, code blocks set up lazily);
- a link to a heading lands on it and stays there while the rest is laid out, as without
  JavaScript;
- once laid out, every section has the height it has when laid out whole (without
  JavaScript), so find-in-page, the scroll bar and later links are right.
"""
import pytest

from conftest import wait_until_laid_out

PAGE = 'labml_nn_bn/batch_norm/'
HEADINGS = ['algorithm-1-plainly', 'batchnormfunction-backward', 'what-to-remember',
            'exercises']

# Before the page's scripts: count the sections the browser skipped (a Chromium event of
# `content-visibility: auto` elements), and note whether any was skipped before the load
RECORD_SKIPPING = '''
window.__skipped = 0;
window.__skippedBeforeLoad = null;
document.addEventListener('contentvisibilityautostatechange', e => {
  if (e.skipped) window.__skipped += 1;
}, true);
window.addEventListener('load', () => { window.__skippedBeforeLoad = window.__skipped; });
'''

# After the load: the target heading's top on the screen at every frame until the page is laid
# out whole (and a few frames more)
FOLLOW_TARGET = '''async (id) => {
  const tops = [];
  const laidOut = () => document.documentElement.classList.contains('annotated-laid-out');
  let after = 0;
  while (after < 5 && tops.length < 2000) {
    await new Promise(r => requestAnimationFrame(r));
    tops.push(document.getElementById(id).getBoundingClientRect().top);
    if (laidOut()) after += 1;
  }
  return tops;
}'''

SECTION_HEIGHTS = '''() => [...document.querySelectorAll('.annotated-section')]
  .filter(s => !s.querySelector('.explorable'))
  .map(s => [s.id, s.getBoundingClientRect().height])'''


@pytest.fixture
def context_of(browser):
    opened = []

    def open_context(javascript=True, width=1440):
        opened.append(browser.new_context(viewport={'width': width, 'height': 900},
                                          java_script_enabled=javascript))
        return opened[-1]

    yield open_context
    for context in opened:
        context.close()


def test_the_page_loads_with_far_sections_skipped_and_code_set_up_lazily(context_of,
                                                                          served_site):
    page = context_of().new_page()
    page.add_init_script(RECORD_SKIPPING)
    page.goto(served_site + PAGE)
    page.wait_for_load_state('load')
    blocks = page.locator('.annotated-code .highlight').count()
    buttons = page.locator('.annotated-code .md-code__button').count()
    # Material sets up only the code blocks near the screen
    assert blocks > 100 and buttons < blocks / 4, (blocks, buttons)
    assert page.evaluate('window.__skippedBeforeLoad') > 50
    wait_until_laid_out(page)
    visibility = page.evaluate('''[...document.querySelectorAll('.annotated-section')]
        .map(s => getComputedStyle(s).contentVisibility)''')
    assert set(visibility) == {'visible'}
    # A code block far down gets its copy button once the reader reaches it
    last = page.locator('.annotated-code .highlight').last
    last.scroll_into_view_if_needed()
    page.wait_for_function('''() => { const all = document.querySelectorAll(
        '.annotated-code .highlight'); return !!all[all.length - 1]
        .closest('.annotated-code').querySelector('.md-code__button'); }''')


def test_without_javascript_nothing_is_skipped(context_of, served_site):
    page = context_of(javascript=False).new_page()
    page.goto(served_site + PAGE)
    visibility = page.evaluate('''[...document.querySelectorAll('.annotated-section')]
        .map(s => getComputedStyle(s).contentVisibility)''')
    assert set(visibility) == {'visible'}


@pytest.mark.parametrize('width', [1440, 390])
def test_once_laid_out_every_section_has_its_real_height(context_of, served_site, width):
    whole = context_of(javascript=False, width=width).new_page()
    whole.goto(served_site + PAGE)
    expected = dict(whole.evaluate(SECTION_HEIGHTS))
    page = context_of(width=width).new_page()
    page.goto(served_site + PAGE)
    wait_until_laid_out(page)
    found = dict(page.evaluate(SECTION_HEIGHTS))
    assert found.keys() == expected.keys() and len(found) > 100
    wrong = {k: (found[k], expected[k]) for k in found if abs(found[k] - expected[k]) > 1}
    assert wrong == {}


@pytest.mark.parametrize('javascript', [True, False], ids=['javascript', 'no-javascript'])
@pytest.mark.parametrize('width', [1440, 390])
def test_a_link_to_a_heading_lands_on_it_and_stays(context_of, served_site, javascript,
                                                  width):
    context = context_of(javascript=javascript, width=width)
    for heading in HEADINGS:
        # A fresh load of the page at the heading, as from another page or a search result
        page = context.new_page()
        page.goto(served_site + PAGE + f'#{heading}')
        page.wait_for_load_state('load')
        if javascript:
            tops = page.evaluate(FOLLOW_TARGET, heading)
        else:
            tops = [page.evaluate(f'document.getElementById("{heading}")'
                                  '.getBoundingClientRect().top')]
        # Just under Material's header (about 3 rem), where scroll-margin-top puts it, at
        # every frame while the rest of the page is laid out
        assert all(30 < top < 120 for top in tops), (heading, min(tops), max(tops))
        assert max(tops) - min(tops) < 2, (heading, min(tops), max(tops))
        lazy = page.evaluate('document.documentElement.classList.contains("annotated-lazy")')
        assert lazy == javascript
        page.close()


def test_a_link_followed_on_the_page_lands_on_its_heading(context_of, served_site):
    page = context_of().new_page()
    page.goto(served_site + PAGE)
    page.wait_for_load_state('load')
    # Followed at once, while the page is still being laid out
    page.evaluate('location.hash = "#exercises"')
    tops = page.evaluate(FOLLOW_TARGET, 'exercises')
    assert all(30 < top < 120 for top in tops), (min(tops), max(tops))


# The headings whose table-of-contents entries are marked active and passed
TOC_MARKS = '''() => {
  const id = a => decodeURIComponent(a.hash.slice(1));
  const links = [...document.querySelectorAll('[data-annotated-toc] a.md-nav__link')];
  return {active: links.filter(a => a.classList.contains('md-nav__link--active')).map(id),
          passed: links.filter(a => a.classList.contains('md-nav__link--passed')).map(id),
          all: links.map(id)};
}'''


def test_the_table_of_contents_marks_where_the_reader_is(context_of, served_site):
    # Material's own marking is off on side-by-side pages (it would measure every heading
    # while the page loads) and on elsewhere
    page = context_of().new_page()
    page.goto(served_site + 'notation/')
    assert page.locator('[data-md-component="toc"]').count() >= 1
    page.goto(served_site + PAGE)
    assert page.locator('[data-md-component="toc"]').count() == 0
    assert page.locator('[data-annotated-toc]').count() == 1
    wait_until_laid_out(page)
    # At the top, no heading has been passed
    page.wait_for_timeout(100)
    entries = page.evaluate(TOC_MARKS)['all']
    assert page.evaluate(TOC_MARKS)['active'] == [] and len(entries) > 10
    for heading in [entries[1], entries[len(entries) // 2], entries[-3]]:
        page.evaluate(f'location.hash = "#{heading}"')
        page.wait_for_timeout(200)
        marks = page.evaluate(TOC_MARKS)
        assert marks['active'] == [heading]
        # Every entry up to it is passed, and none after it
        assert marks['passed'] == marks['all'][:marks['all'].index(heading) + 1]
    # Scrolled by hand, up a little: the heading above the screen's top is the active one
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(300)
    active = page.evaluate(TOC_MARKS)['active']
    assert len(active) == 1 and entries.index(active[0]) < entries.index(heading)
