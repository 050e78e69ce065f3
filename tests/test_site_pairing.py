"""
Notes sit only beside their own code (issue 20: Sections 3.2-3.4, which have no code, sat beside
the `try: from labml_helpers ...` that the next section explains). In the browser at 1440 px:
no code is ever beside a section of notes only, wherever the reader has scrolled, and each
section's code starts level with its notes. The rule itself is tested on small sources in
test_annotate.py.
"""
import pytest

from conftest import wait_until_laid_out

# Each section of notes only, scrolled so that its top and then its bottom are in the
# window: the boxes of the code blocks (a sticky one where it has moved to) that share rows
# with it
CODE_BESIDE_NOTES_ONLY = '''async () => {
  const found = [];
  const sections = [...document.querySelectorAll('.annotated-section--notes-only')];
  for (const section of sections) {
    for (const where of ['top', 'bottom']) {
      const box = section.getBoundingClientRect();
      window.scrollBy(0, where === 'top' ? box.top - 100 : box.bottom - innerHeight + 100);
      await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
      const s = section.getBoundingClientRect();
      for (const code of document.querySelectorAll('.annotated-code .highlight')) {
        const c = code.getBoundingClientRect();
        if (c.height && c.top < s.bottom - 1 && c.bottom > s.top + 1)
          found.push([section.id, code.closest('.annotated-section').id, where]);
      }
    }
  }
  return [sections.length, found];
}'''

# For each section with both columns: how far its code's top is from its notes' top
CODE_OFFSETS = '''() => [...document.querySelectorAll('.annotated-section')]
  .filter(s => s.querySelector(':scope > .annotated-code'))
  .map(s => [s.id, s.querySelector(':scope > .annotated-code').getBoundingClientRect().top
                  - s.querySelector(':scope > .annotated-notes').getBoundingClientRect().top])'''


@pytest.fixture
def batch_norm_page(browser, served_site):  # noqa: F811
    context = browser.new_context(viewport={'width': 1440, 'height': 900})
    page = context.new_page()
    page.goto(served_site + 'labml_nn_bn/batch_norm/')
    page.wait_for_load_state('networkidle')
    wait_until_laid_out(page)
    yield page
    context.close()


def test_no_code_sits_beside_a_section_of_notes_only_at_1440(batch_norm_page):
    count, beside = batch_norm_page.evaluate(CODE_BESIDE_NOTES_ONLY)
    # The introduction, and the paper's discussion that has no code of its own
    assert count >= 2
    assert beside == []


def test_each_sections_code_starts_level_with_its_notes_at_1440(batch_norm_page):
    offsets = batch_norm_page.evaluate(CODE_OFFSETS)
    assert len(offsets) > 10
    assert [(anchor, round(dy)) for anchor, dy in offsets if abs(dy) > 12] == []
