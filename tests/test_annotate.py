"""
Unit tests of the side-by-side renderer (`docs/hooks/annotate.py`) on tricky sources.
"""
import ast
import textwrap

import markdown
import pytest

from conftest import ROOT, imported_packages, load_annotate_hook

annotate = load_annotate_hook()


def src(text):
    return textwrap.dedent(text).lstrip('\n')


def docstring_lines(source):
    """Lines of docstrings, found independently of the renderer."""
    tree = ast.parse(source)
    found = set()
    for node in [tree] + list(ast.walk(tree)):
        body = getattr(node, 'body', None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            found.update(range(body[0].lineno, body[0].end_lineno + 1))
    return found


def assert_every_line_accounted_for(source, sections):
    """Each code line appears once, in order, with its own text; every other line is a
    blank line, a whole-line comment or part of a docstring."""
    lines = source.splitlines()
    numbers = [n for s in sections for n, _ in s.code]
    assert numbers == sorted(set(numbers)), 'code lines out of order or duplicated'
    for s in sections:
        for n, text in s.code:
            assert text == lines[n - 1]
    docs = docstring_lines(source)
    for n, line in enumerate(lines, start=1):
        if n not in numbers:
            assert not line.strip() or line.strip().startswith('#') or n in docs, \
                f'line {n} lost: {line!r}'


TRICKY = src('''
    #!/usr/bin/env python3
    """
    ---
    title: Tricky
    summary: >
      A source with every awkward case.
    ---

    # Tricky

    The module docstring.
    """
    import functools

    # A string with a hash is code
    URL = "https://example.com/#anchor"  # a trailing comment stays code
    TEMPLATE = """
    # this line is inside a string
    $ not math either
    """


    # ## A decorated function
    #
    # Second paragraph of the same note.
    @functools.lru_cache()
    @staticmethod
    def cached(x):
        """
        Its docstring sits beside its header.
        """
        def inner(y):
            """The nested function's docstring."""
            return y + 1

        # A note inside the body
        value = inner(x)

        return value


    def one_liner(): """stays code"""; return 1


    class Thing:
        # A comment opening the class body
        size = 3

        def method(self):
            return self.size
''')


def test_front_matter_becomes_meta():
    result = annotate.split_sections(TRICKY)
    assert result.title == 'Tricky'
    assert result.summary == 'A source with every awkward case.'
    # The shebang is code of its own section; the module docstring opens the next one
    assert '---' not in result.sections[1].notes
    assert result.sections[1].notes.startswith('# Tricky\n\nThe module docstring.')


def test_no_line_lost_or_duplicated_in_tricky_source():
    result = annotate.split_sections(TRICKY)
    assert_every_line_accounted_for(TRICKY, result.sections)


@pytest.mark.parametrize('path', sorted(p.relative_to(ROOT).as_posix() for p in
                                        list((ROOT / 'labml_nn_bn').rglob('*.py')) +
                                        list((ROOT / 'docs' / 'hooks').glob('*.py')) +
                                        list((ROOT / 'tests').glob('*.py'))))
def test_no_line_lost_or_duplicated_in_project_files(path):
    source = (ROOT / path).read_text()
    assert_every_line_accounted_for(source, annotate.split_sections(source).sections)


def code_of(result, needle):
    """The section whose code contains `needle`."""
    for s in result.sections:
        if any(needle in t for _, t in s.code):
            return s
    raise AssertionError(needle)


def test_hash_inside_strings_is_code():
    result = annotate.split_sections(TRICKY)
    section = code_of(result, 'URL = ')
    texts = [t for _, t in section.code]
    assert '# this line is inside a string' in texts
    assert any('a trailing comment stays code' in t for t in texts)
    assert section.notes == 'A string with a hash is code'


def test_shebang_stays_code():
    result = annotate.split_sections(TRICKY)
    assert result.sections[0].code[0] == (1, '#!/usr/bin/env python3')


def test_decorators_and_docstring_go_with_the_definition():
    result = annotate.split_sections(TRICKY)
    section = code_of(result, 'def cached')
    texts = [t.strip() for _, t in section.code]
    assert texts[:3] == ['@functools.lru_cache()', '@staticmethod', 'def cached(x):']
    assert section.notes == ('## A decorated function\n\nSecond paragraph of the same note.'
                             '\n\nIts docstring sits beside its header.')
    assert section.anchor == 'cached'


def test_nested_function_docstring_and_body_comment():
    result = annotate.split_sections(TRICKY)
    inner = code_of(result, 'def inner')
    assert inner.notes == "The nested function's docstring."
    assert inner.anchor == 'cached-inner'
    body = code_of(result, 'value = inner(x)')
    assert body.notes == 'A note inside the body'
    # The blank line between `value = ...` and `return` is kept inside the block
    assert [t for _, t in body.code][:3] == ['    value = inner(x)', '', '    return value']


def test_one_line_docstring_on_the_def_line_stays_code():
    result = annotate.split_sections(TRICKY)
    assert any('"""stays code"""' in t for _, t in code_of(result, 'def one_liner').code)


def test_comment_opening_a_body_stays_beside_the_header():
    result = annotate.split_sections(TRICKY)
    section = code_of(result, 'class Thing')
    assert section.notes == 'A comment opening the class body'
    assert [t.strip() for _, t in section.code][:2] == ['class Thing:', 'size = 3']
    assert section.anchor == 'thing'


def test_blank_lines_at_block_edges_are_dropped():
    source = src('''
        # Note

        x = 1


        # Another note
        y = 2
    ''')
    result = annotate.split_sections(source)
    assert [s.code for s in result.sections] == [[(3, 'x = 1')], [(7, 'y = 2')]]


def test_comment_paragraphs_and_empty_comment_lines():
    source = src('''
        # First line
        # continues the paragraph.
        #
        # New paragraph.

        # After a blank line: also a new paragraph.
        x = 1
    ''')
    (section,) = annotate.split_sections(source).sections
    assert section.notes == ('First line\ncontinues the paragraph.\n\nNew paragraph.'
                             '\n\nAfter a blank line: also a new paragraph.')


def test_comment_inside_a_call_splits_the_block_without_losing_lines():
    source = src('''
        result = dict(
            # The first key
            a=1,
            b=2,
        )
    ''')
    result = annotate.split_sections(source)
    assert [s.notes for s in result.sections] == ['', 'The first key']
    assert_every_line_accounted_for(source, result.sections)


def test_indentation_of_list_continuations_is_kept():
    source = src('''
        def f():
            # 1. **Item**
            #    continued inside the item
            return 1
    ''')
    section = annotate.split_sections(source).sections[0]
    assert section.notes == '1. **Item**\n   continued inside the item'


def test_source_without_front_matter_is_not_annotated():
    assert not annotate.has_front_matter('"""Just a docstring."""\nx = 1\n')
    assert annotate.has_front_matter(TRICKY)
    assert not annotate.has_front_matter('def broken(:\n')


def test_highlighted_lines_match_source_lines():
    lines = annotate.highlight_lines(TRICKY)
    assert len(lines) == len(TRICKY.splitlines())
    # A multi-line string is split into balanced per-line fragments
    for fragment in lines:
        assert fragment.count('<span') == fragment.count('</span>')


def test_render_sections_gives_two_columns_per_section_and_math():
    source = src(r'''
        r"""
        ---
        title: T
        ---
        # T

        Inline $a_1 + b_2$ and, in the same paragraph, $$\frac{x_i}{y_i}$$ display.
        """
        import torch

        # $$\mu = \frac{1}{m}\sum_i x_i$$
        mu = x.mean()
    ''')
    md = markdown.Markdown(extensions=['pymdownx.arithmatex', annotate.DisplayMathExtension()],
                           extension_configs={'pymdownx.arithmatex': {'generic': True}})
    result = annotate.split_sections(source)
    page = annotate.render_sections(result, source, md, 'https://github.com/o/r/blob/main/t.py')
    assert page.count('class="annotated-section"') == len(result.sections) == 2
    assert page.count('class="annotated-notes"') == page.count('class="annotated-code"') == 2
    assert 'href="https://github.com/o/r/blob/main/t.py"' in page
    # Math is handed to KaTeX whole: no `$` is left, underscores are not emphasis
    assert '$' not in page.replace('$a', '')
    assert r'\(a_1 + b_2\)' in page
    assert r'\[\frac{x_i}{y_i}\]' in page
    assert r'\[\mu = \frac{1}{m}\sum_i x_i\]' in page
    assert '<em>' not in page
    assert 'id="L12"' in page and 'data-lineno="12"' in page


def test_every_annotated_source_is_found():
    found = [p.relative_to(ROOT).as_posix() for p in annotate.annotated_sources(ROOT)]
    assert 'labml_nn_bn/batch_norm.py' in found
    assert 'labml_nn_bn/__init__.py' not in found


def test_front_matter_must_be_a_mapping():
    with pytest.raises(ValueError, match='front matter must be a mapping, got list'):
        annotate.split_front_matter('---\n- a\n- b\n---\ntext')


def test_repo_links_derive_from_repo_url():
    class Config:
        repo_url = 'https://github.com/owner/name/'
        site_url = 'https://owner.github.io/name/'
    links = annotate.repo_links(Config)
    assert links == {'repo_url': 'https://github.com/owner/name',
                     'site_url': 'https://owner.github.io/name',
                     'colab_url': 'https://colab.research.google.com/github/owner/name/blob/main'}


def test_hook_imports_only_what_the_docs_requirements_install():
    third_party = imported_packages(annotate.__file__) - {'ast', 'html', 'inspect', 'io', 're', 'tokenize', 'xml', 'dataclasses',
                           'pathlib', 'typing'}
    assert third_party == {'markdown', 'yaml', 'pygments', 'mkdocs'}
    docs_requirements = (ROOT / 'requirements' / 'docs.txt').read_text().lower()
    for package in ['markdown', 'pyyaml', 'pygments', 'mkdocs']:
        assert f'\n{package}==' in docs_requirements
