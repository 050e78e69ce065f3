"""
The page layout in a real browser, on every page of the site (issue 20): display
equations sit in the text column on wide screens and are never cut on a phone, the prose
of the plain pages keeps a readable line length, and code in the notes (doctests) does
not scroll sideways.
Screenshots go to test-output/screenshots/.
"""
import pytest

from conftest import wait_until_laid_out

# The longest prose line a reader should meet, in characters (about 90 is the aim)
MAX_LINE_CHARS = 95




@pytest.fixture(scope='module')
def screenshots(test_output):
    path = test_output / 'screenshots'
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope='session')
def site_dir(built_site):
    return built_site[0]


def site_pages(site_dir):
    """The URL path of every page of the built site, relative to its root."""
    pages = []
    for index in sorted(site_dir.rglob('index.html')):
        rel = index.relative_to(site_dir).parent.as_posix()
        if not rel.startswith(('assets', 'search')):
            pages.append('' if rel == '.' else rel + '/')
    return pages


class Tab:
    """A browser tab at a viewport width; `open` waits until the math is typeset (in
    the browser or at build time: no `.arithmatex` is left without a `.katex`)."""

    def __init__(self, browser, base, width, **options):
        self.base = base
        self.context = browser.new_context(viewport={'width': width, 'height': 900},
                                           **options)
        self.page = self.context.new_page()

    def open(self, path):
        self.page.goto(self.base + path)
        self.page.wait_for_load_state('load')
        self.page.wait_for_function('[...document.querySelectorAll(".arithmatex")]'
                                    '.every(el => el.querySelector(".katex"))')
        wait_until_laid_out(self.page)
        return self.page


# For each display equation: its box (the element that holds it and may scroll) and the
# text column it belongs to (the paragraph it is in, or else the paragraphs beside it);
# whether the box lies inside the column, whether the equation fits its box or else the
# box scrolls sideways, and whether any part of it is cut (an element between the
# equation and the page that hides what overflows it, the box cut at the top or bottom,
# or a box past the window).
DISPLAY_PROBLEMS = '''() => {
  const problems = {outside: [], cut: []};
  const containers = '.annotated-notes, .md-content__inner, li, td, th, details, ' +
                     '.admonition, blockquote';
  const paragraph = (first, next) => {
    for (let s = first; s; s = next(s)) if (s.matches('p')) return s;
    return null;
  };
  const column = box => {
    let block = box;
    while (block.parentElement && !block.parentElement.matches(containers))
      block = block.parentElement;
    if (block.matches('p')) return block;
    return paragraph(block.previousElementSibling, s => s.previousElementSibling) ||
           paragraph(block.nextElementSibling, s => s.nextElementSibling) ||
           block.parentElement;
  };
  const px = x => Math.round(x);
  for (const display of document.querySelectorAll('.katex-display')) {
    const box = display.closest('div.arithmatex') || display;
    const annotation = display.querySelector('annotation');
    const tex = (annotation ? annotation.textContent : '').trim().slice(0, 50);
    const b = box.getBoundingClientRect(), c = column(box).getBoundingClientRect();
    if (b.left < c.left - 1 || b.right > c.right + 1)
      problems.outside.push(`${tex}: box ${px(b.left)}-${px(b.right)} px, ` +
                            `column ${px(c.left)}-${px(c.right)} px`);
    const math = display.querySelector('.katex-html') ||
                 display.querySelector('.katex');
    const m = math.getBoundingClientRect();
    // Every element from the equation up to the page: one that is narrower than the
    // equation must let it scroll; one that hides its overflow cuts it
    const top = document.documentElement;
    for (let el = math.parentElement; el && el !== top; el = el.parentElement) {
      const s = getComputedStyle(el), r = el.getBoundingClientRect();
      const scrolls = ['auto', 'scroll'].includes(s.overflowX);
      const wider = el.scrollWidth > el.clientWidth + 1;
      if (wider && !scrolls && s.overflowX !== 'visible') {
        problems.cut.push(`${tex}: cut by ${el.tagName}.${el.className}`);
        break;
      }
      if (scrolls) {
        const hidden = el.scrollHeight - el.clientHeight;
        if (hidden > 1) problems.cut.push(`${tex}: ${hidden} px cut at top or bottom`);
        if (r.left < -1 || r.right > window.innerWidth + 1)
          problems.cut.push(`${tex}: its scrolling box reaches past the window`);
        break;
      }
      if (m.right > r.right + 1 && el.matches(containers)) {
        problems.cut.push(`${tex}: ${px(m.right - r.right)} px past its column`);
        break;
      }
    }
  }
  if (document.documentElement.scrollWidth > window.innerWidth)
    problems.cut.push(`the page is ${document.documentElement.scrollWidth} px wide`);
  return problems;
}'''


NOTES_CODE_SCROLLS = '''() => [...document.querySelectorAll(
        '.annotated-notes pre, .annotated-notes pre > code')]
    .filter(el => el.scrollWidth > el.clientWidth + 1)
    .map(el => el.textContent.trim().split('\\n')[0].slice(0, 60))'''

# The characters of each rendered line of a paragraph: its text, character by
# character (the hidden MathML copy of each formula left out), with a new line wherever
# a character starts to the left of the one before it and lower down
LINE_LENGTHS = '''(p) => {
  const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT, {acceptNode: n =>
      n.parentElement.closest('.katex-mathml') ? NodeFilter.FILTER_REJECT
                                               : NodeFilter.FILTER_ACCEPT});
  const lines = [];
  let count = 0, last = null;
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const r = range.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (last && r.left < last.left - 2 && r.top > last.top + 4) {
        lines.push(count);
        count = 0;
      }
      count += 1;
      last = r;
    }
  }
  lines.push(count);
  return lines;
}'''


WIDTHS = [1440, 1280, 390]


@pytest.fixture(scope='module')
def measured(browser, served_site, site_dir, screenshots):
    """
    Every page opened once, at 1440 px, then resized to 1280 and 390 px: for each (page,
    width) the display equations' problems, the notes' code blocks that scroll sideways
    and, on the plain pages at 1440 px, the characters per line of the five longest
    paragraphs.
    """
    tab = Tab(browser, served_site, WIDTHS[0])
    plain = plain_pages(site_dir)
    results = {}
    try:
        for path in site_pages(site_dir):
            page = tab.open(path)
            for width in WIDTHS:
                page.set_viewport_size({'width': width, 'height': 900})
                result = {'display': page.evaluate(DISPLAY_PROBLEMS),
                          'notes_code': page.evaluate(NOTES_CODE_SCROLLS)}
                if path in plain and width == 1440:
                    paragraphs = page.locator('.md-content__inner p')
                    texts = paragraphs.all_inner_texts()
                    longest = sorted(range(len(texts)),
                                     key=lambda i: -len(texts[i]))[:5]
                    result['lines'] = {i: paragraphs.nth(i).evaluate(LINE_LENGTHS)
                                       for i in longest}
                results[path, width] = result
                _screenshot(page, path, width, screenshots)
    finally:
        tab.context.close()
    return results


def _screenshot(page, path, width, screenshots):
    name = path.strip('/').replace('/', '-') or 'home'
    if path == 'labml_nn_bn/batch_norm/':
        for what, selector in [('equation', '.katex-display'),
                               ('doctest', '.annotated-notes pre')]:
            page.locator(selector).first.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshots / f'layout-{name}-{what}-{width}.png'))
    elif path in ('', 'later_work/') and width == 1440:
        page.evaluate('window.scrollTo(0, 0)')
        page.screenshot(path=str(screenshots / f'layout-{name}-{width}.png'))


def plain_pages(site_dir):
    """The pages written in Markdown (no side-by-side source)."""
    return [path for path in site_pages(site_dir) if 'annotated-section'
            not in (site_dir / path / 'index.html').read_text(encoding='utf-8')]


def _problems(measured, widths, kind):
    return {f'{path} at {width} px: {what}': items
            for (path, width), result in measured.items() if width in widths
            for what, items in result[kind].items() if items}


@pytest.mark.parametrize('width', [1440, 1280])
def test_display_equations_sit_in_the_text_column(measured, width):
    assert len([key for key in measured if key[1] == width]) > 10
    found = _problems(measured, [width], 'display')
    assert found == {}, found


def test_no_equation_is_cut_on_a_phone(measured):
    found = _problems(measured, [390], 'display')
    assert found == {}, found


def test_prose_of_plain_pages_keeps_a_readable_line_length(measured):
    longest = {f'{path} paragraph {i}': max(lines)
               for (path, width), result in measured.items() if 'lines' in result
               for i, lines in result['lines'].items()}
    assert any(key.startswith(' paragraph') for key in longest)  # the home page
    assert any(key.startswith('later_work/ ') for key in longest)
    too_long = {key: n for key, n in longest.items() if n > MAX_LINE_CHARS}
    assert too_long == {}, too_long
    # The measure did count lines: a long paragraph fills most of a line
    assert max(longest.values()) > 60, longest


@pytest.mark.parametrize('width', [1440, 1280])
def test_code_in_the_notes_does_not_scroll_sideways(measured, width):
    assert ('labml_nn_bn/batch_norm/', width) in measured
    found = {path: scrolls for (path, w), result in measured.items()
             if w == width and (scrolls := result['notes_code'])}
    assert found == {}, found

