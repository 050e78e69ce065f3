"""
Unit tests of the side-by-side renderer (`docs/hooks/annotate.py`) on tricky sources.
"""
import ast
import io
import sys
import textwrap
import tokenize

import markdown
import pytest

from conftest import ROOT, imported_packages, load_annotate_hook
from site_build import SPLITLINES_ONLY, AnnotatedPageParser, build_site, write_fixture_project

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


def physical_lines(source):
    """The source's lines as Python reads them: broken at newlines only."""
    lines = source.replace('\r\n', '\n').replace('\r', '\n').split('\n')
    return lines[:-1] if lines[-1] == '' else lines


def tokenizer_line_count(source):
    """How many lines Python's tokenizer reads in a source that ends with a newline."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    assert tokens[-1].type == tokenize.ENDMARKER
    return tokens[-1].start[0] - 1


def assert_every_line_accounted_for(source, sections):
    """Each code line appears once, in order, with its own text; every other line is a
    blank line, a whole-line comment or part of a docstring."""
    lines = physical_lines(source)
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


def test_a_docstring_whose_closing_line_carries_a_comment_is_notes():
    # A comment after the closing quotes (a linter's `# noqa`, say) does not make the docstring
    # code; the comment is a directive for tools, not text for the reader, and is not shown
    source = src('''
        def f(x):
            """
            Explains f.
            """  # noqa: D401
            return x


        def g(x):
            """Explains g."""  # a comment
            return x
    ''')
    result = annotate.split_sections(source)
    assert code_of(result, 'def f').notes == 'Explains f.'
    assert code_of(result, 'def g').notes == 'Explains g.'
    assert not any('"""' in text or 'noqa' in text for s in result.sections for _, text in s.code)
    assert_every_line_accounted_for(source, result.sections)


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
    assert not annotate.looks_annotated('"""Just a docstring."""\nx = 1\n')
    assert not annotate.looks_annotated('x = 1\n"""\n---\ntitle: T\n---\n"""\n')
    assert annotate.looks_annotated(TRICKY)
    # Recognised from the text alone, so that a syntax error further down is reported
    assert annotate.looks_annotated("# coding: utf-8\n\nr'''  \n  ---\ntitle: T\n---\n'''\ndef broken(:\n")


def test_highlighted_lines_match_source_lines():
    lines = annotate.highlight_lines(TRICKY)
    assert len(lines) == len(physical_lines(TRICKY)) == tokenizer_line_count(TRICKY)
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
    page = annotate.render_sections(result, md, 'https://github.com/o/r/blob/main/t.py').html
    # The introduction (module docstring) is a section of its own, without code
    assert len(result.sections) == 3 and not result.sections[0].code
    assert page.count('class="annotated-section annotated-section--notes-only"') == 1
    assert page.count('class="annotated-notes"') == 3 and page.count('class="annotated-code"') == 2
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
    third_party = imported_packages(annotate.__file__) - set(sys.stdlib_module_names)
    assert third_party == {'markdown', 'yaml', 'pygments', 'mkdocs'}
    docs_requirements = (ROOT / 'requirements' / 'docs.txt').read_text().lower()
    for package in ['markdown', 'pyyaml', 'pygments', 'mkdocs']:
        assert f'\n{package}==' in docs_requirements


# --- line numbers: as Python's tokenizer counts them (issue 9) ----------------------------

def special_source(char):
    """A source with `char` (which `str.splitlines()` takes for a line break) in the module
    docstring, a whole-line comment, a string, a trailing comment, a multi-line string and
    a function's docstring. Built by concatenation: no dedent that might touch `char`."""
    return (f'"""\n---\ntitle: T\n---\n# T\n\nThe introduction, {char} inside.\n"""\n'
            f'# A note with {char} in it\n'
            f'A = "x{char}y"  # trailing {char} comment\n'
            f'# Another note\n'
            f'B = 2\n'
            f'C = """\nmulti {char} line\n"""\n'
            f'\n\ndef f():\n    """Doc {char} string."""\n    return A  # {char}\n'
            f'LAST = 3\n')


def render(source):
    md = markdown.Markdown(extensions=['toc', 'pymdownx.arithmatex', annotate.DisplayMathExtension()],
                           extension_configs={'pymdownx.arithmatex': {'generic': True}})
    annotated = annotate.split_sections(source)
    parser = AnnotatedPageParser()
    parser.feed(annotate.render_sections(annotated, md).html)
    return annotated, parser


@pytest.mark.parametrize('char', SPLITLINES_ONLY, ids=lambda c: f'U+{ord(c):04X}')
def test_lines_are_numbered_as_the_tokenizer_numbers_them(char):
    source = special_source(char)
    lines = physical_lines(source)
    # What the test stands on: Python reads no line break in `char`, str.splitlines() does
    assert len(lines) == tokenizer_line_count(source) < len(source.splitlines())
    assert annotate.split_lines(source) == lines
    assert len(annotate.highlight_lines(source)) == len(lines)
    annotated, page = render(source)
    assert_every_line_accounted_for(source, annotated.sections)
    # The page shows every code line once, in order, each with its own number and text
    expected = [(n, line) for n, line in enumerate(lines, start=1)
                if line.strip() and not line.lstrip().startswith('#')
                and n not in docstring_lines(source)]
    assert list(zip(page.numbers, page.lines)) == expected
    # The tokenizer agrees on the number of the lines after the character
    rows = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME:
            rows.setdefault(tok.string, tok.start[0])
    for name in ('A', 'B', 'C', 'LAST'):
        assert lines[rows[name] - 1].startswith(name)
        assert page.lines[page.numbers.index(rows[name])].startswith(name)
    # The character is on the page, shown as a visible escape rather than as a line break
    assert page.lines[page.numbers.index(rows['A'])] == f'A = "x{char}y"  # trailing {char} comment'


def test_windows_and_old_mac_newlines_are_line_breaks():
    source = '"""\r\n---\r\ntitle: T\r\n---\r\n"""\r\nA = 1\rB = 2\n'
    annotated, page = render(source)
    assert page.numbers == [6, 7] and page.lines == ['A = 1', 'B = 2']


def test_hidden_characters_are_shown_as_escapes():
    fragment = annotate.highlight_lines('A = "\u2028\u202e\x1c"\n')[0]
    assert fragment.count('class="annotated-char"') == 3
    assert '\\u2028' in fragment and 'U+202E RIGHT-TO-LEFT OVERRIDE' in fragment and '\\x1c' in fragment
    assert '\u2028' not in fragment and '\u202e' not in fragment
    # Tabs are ordinary indentation
    assert 'annotated-char' not in annotate.highlight_lines('if x:\n\treturn 1\n')[1]


# --- the layout's structure (issue 12) --------------------------------------------------

def test_introduction_is_a_section_of_notes_only():
    source = src('''
        """
        ---
        title: T
        ---
        # T

        A long introduction.
        """
        import torch
    ''')
    annotated, page = render(source)
    first, second = annotated.sections
    assert first.notes.startswith('# T') and first.code == []
    assert second.notes == '' and second.code == [(9, 'import torch')]
    assert page.sections[0]['classes'] == ['annotated-section', 'annotated-section--notes-only']
    assert page.sections[0]['code'] == 0 and page.sections[1]['code'] == 1


def test_a_jump_in_line_numbers_is_marked_with_the_lines_it_skips():
    source = src('''
        def f(x):
            """
            Two lines of
            docstring.
            """
            return x


        def g(x):
            # One comment line opening the body
            return x
    ''')
    _, page = render(source)
    assert page.numbers == [1, 6, 9, 11]
    assert page.gaps == ['Lines 2\u20135 are shown as notes', 'Line 10 is shown as notes']


def test_short_code_beside_notes_is_sticky_and_long_code_is_not():
    short = '# Notes\nx = 1\n'
    long = '# Notes\n' + ''.join(f'x{i} = {i}\n' for i in range(annotate.STICKY_MAX_LINES + 1))
    assert 'annotated-section--sticky' in render(short)[1].sections[0]['classes']
    assert 'annotated-section--sticky' not in render(long)[1].sections[0]['classes']


def test_indentation_is_marked_so_that_wrapping_never_starts_after_it():
    md = markdown.Markdown()
    html = annotate.render_sections(annotate.split_sections('def f():\n    return """\n  x"""\n'), md).html
    assert 'style="--indent: 4"' in html
    assert '<span class="annotated-indent">    </span><span class="k">return</span>' in html
    # Indentation inside a string token is taken out of the token, text unchanged
    assert '<span class="annotated-indent">  </span><span class="s2">x&quot;&quot;&quot;</span>' in html \
        or '<span class="annotated-indent">  </span><span class="s2">x"""</span>' in html


def test_copy_button_copies_exactly_the_code_lines_shown():
    source = 'def f():\n    """Doc."""\n    return "<&>"\n'
    html = annotate.render_sections(annotate.split_sections(source), markdown.Markdown()).html
    assert 'data-copy="def f():\n    return &quot;&lt;&amp;&gt;&quot;"' in html


def test_table_of_contents_has_every_heading_with_ids_unique_on_the_page():
    source = src('''
        """
        ---
        title: T
        ---
        # T

        ## Details

        ## Area
        """

        # ## Details
        #
        # The same heading in another section.
        def area():
            return 1
    ''')
    md = markdown.Markdown(extensions=['toc'])
    rendered = annotate.render_sections(annotate.split_sections(source), md)
    # The section of `area` has the anchor `area`: the heading "Area" may not take it
    assert 'id="area"' in rendered.html and 'id="area_1"' in rendered.html
    ids = [t['id'] for t in annotate._flat_toc(rendered.toc)]
    assert ids == ['t', 'details', 'area_1', 'details_1']
    assert [t['level'] for t in annotate._flat_toc(rendered.toc)] == [1, 2, 2, 2]
    # Nested under the page's title, as mkdocs expects
    assert [c['id'] for c in rendered.toc[0]['children']] == ['details', 'area_1', 'details_1']
    import re
    all_ids = re.findall(r'\bid="([^"]+)"', rendered.html)
    assert len(all_ids) == len(set(all_ids))


# --- sources that cannot be annotated: one line naming the file (issue 9) -----------------

GOOD = '"""\n---\ntitle: Good\nsummary: Fine.\n---\n# Good\n"""\nx = 1\n'


def load(tmp_path, data, name='bad.py'):
    package = tmp_path / 'labml_nn_bn'
    package.mkdir(exist_ok=True)
    (package / name).write_bytes(data if isinstance(data, bytes) else data.encode('utf-8'))
    return annotate.load_annotated(package / name, tmp_path)


@pytest.mark.parametrize('data, message', [
    (b'"""\n---\ntitle: T\n---\n"""\nx = "\xff"\n',
     'labml_nn_bn/bad.py: line 6: byte ff is not valid utf-8 (the file must be UTF-8 or declare its encoding)'),
    (b'"""\n---\ntitle: T\nsummary: \xe9\xe9\n---\n"""\n',
     'labml_nn_bn/bad.py: line 4: byte e9 is not valid utf-8'),
    (b'# \xff\n"""\n---\ntitle: T\n---\n"""\n',
     'labml_nn_bn/bad.py: line 1: byte ff is not valid utf-8'),
    (b'# coding: klingon\n"""\n---\ntitle: T\n---\n"""\n',
     'labml_nn_bn/bad.py: line 1: unknown encoding: klingon'),
    ('"""\n---\ntitle: [unclosed\n---\n"""\nx = 1\n',
     "labml_nn_bn/bad.py: line 4: invalid front matter YAML: expected ',' or ']', but got '<stream end>'"),
    ('"""\n---\ntitle: T\nsummary: a: b\n---\n"""\n',
     'labml_nn_bn/bad.py: line 4: invalid front matter YAML: mapping values are not allowed here'),
    ('"""\n---\n- a list\n---\n"""\n',
     'labml_nn_bn/bad.py: line 2: front matter must be a mapping, got list'),
    ('#!/usr/bin/env python\n"""\n  ---\n  title: [1, 2]\n  ---\n"""\n',
     "labml_nn_bn/bad.py: line 3: front matter 'title' must be text, got list"),
    ('"""\n---\ntitle: T\n\n# T\n"""\n',
     "labml_nn_bn/bad.py: line 2: the front matter opened by '---' is never closed by a '---' line"),
    ('"""\n---\ntitle: T\n---\n"""\ndef f(:\n    pass\n',
     'labml_nn_bn/bad.py: line 6: invalid syntax'),
    ('r"""\n---\ntitle: T\n---\n"""\nif True:\nx = 1\n',
     "labml_nn_bn/bad.py: line 7: expected an indented block after 'if' statement on line 6"),
    ('"""\n---\ntitle: T\n---\n"""\nx = 1\0\n',
     'labml_nn_bn/bad.py: line 6: source code string cannot contain null bytes'),
    (b'\xef\xbb\xbf# -*- coding: latin-1 -*-\n"""\n---\ntitle: T\n---\n"""\n',
     'labml_nn_bn/bad.py: line 1: the file starts with a UTF-8 byte order mark but its coding line '
     'declares another encoding'),
], ids=['bad-byte-in-code', 'bad-byte-in-front-matter', 'bad-byte-first', 'unknown-coding', 'yaml-unclosed', 'yaml-colon',
        'not-a-mapping', 'title-not-text', 'front-matter-unclosed', 'syntax-error',
        'indentation-error', 'null-byte', 'bom-contradicts-coding'])
def test_a_bad_annotated_source_is_one_line_naming_file_line_and_problem(tmp_path, data, message):
    with pytest.raises(annotate.AnnotationError) as raised:
        load(tmp_path, data)
    assert str(raised.value).startswith(message), str(raised.value)
    assert '\n' not in str(raised.value)


def test_an_annotation_error_stops_mkdocs_without_a_traceback():
    from mkdocs.exceptions import BuildError
    assert issubclass(annotate.AnnotationError, BuildError)


@pytest.mark.parametrize('data', [
    b'x = "\xff"\n',                     # undecodable, but not meant to be a page
    'def broken(:\n',                     # a syntax error, not meant to be a page
    '"""A plain docstring."""\nx = 1\n',  # a docstring without front matter
    '# ---\nx = 1\n',
], ids=['bad-byte', 'syntax-error', 'plain-docstring', 'comment'])
def test_a_file_not_meant_to_be_annotated_is_no_page(tmp_path, data):
    assert load(tmp_path, data) is None


def test_a_byte_order_mark_is_accepted_as_python_accepts_it(tmp_path):
    # Python runs a file that starts with a UTF-8 byte order mark; so the site renders it,
    # with the mark dropped: the same page as without it, line numbers unchanged
    with_bom = load(tmp_path, b'\xef\xbb\xbf' + GOOD.encode(), 'bom.py')
    without = load(tmp_path, GOOD, 'plain.py')
    assert with_bom.title == 'Good'
    assert [s.code for s in with_bom.sections] == [s.code for s in without.sections] == [[], [(8, 'x = 1')]]
    assert with_bom.lines == without.lines and '\ufeff' not in ''.join(with_bom.lines)


def test_a_declared_encoding_is_honoured_as_python_honours_it(tmp_path):
    source = '# -*- coding: latin-1 -*-\n"""\n---\ntitle: Caf\xe9\n---\n"""\nx = "\xe9"\n'
    annotated = load(tmp_path, source.encode('latin-1'))
    assert annotated.title == 'Caf\xe9'
    assert annotated.sections[-1].code == [(7, 'x = "\xe9"')]


def test_every_project_source_that_looks_annotated_loads():
    # No source of the project is skipped by the site: each file whose text opens with a
    # front matter docstring is a page
    for path in sorted((ROOT / 'labml_nn_bn').rglob('*.py')):
        text = path.read_text(encoding='utf-8')
        assert (annotate.load_annotated(path, ROOT) is not None) == annotate.looks_annotated(text), path


# --- math typeset at build time (issue 20: the page is slow to open) ----------------------

KATEX = ROOT / 'node_modules' / 'katex'


@pytest.fixture(scope='module')
def katex_renderer():
    renderer = annotate.MathRenderer(KATEX)
    yield renderer
    renderer.close()


def test_formulas_are_typeset_by_katex_when_the_page_is_built(katex_renderer):
    page = ('<p>Inline <span class="arithmatex">\\(x_i &lt; \\mu_\\mathcal{B}\\)</span> and</p>\n'
            '<div class="arithmatex">\\[\\hat{x}_i = \\frac{x_i - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}\\]</div>')
    out = annotate.typeset_math(page, katex_renderer)
    assert '\\(' not in out and '\\[' not in out and '\\frac' not in out.split('<annotation')[0]
    # The wrappers stay (the layout's CSS is unchanged) and are marked as typeset
    assert out.count('<span class="arithmatex" data-typeset="build"><span class="katex">') == 1
    assert out.count('<div class="arithmatex" data-typeset="build"><span class="katex-display">') == 1
    # KaTeX's default output: the visible HTML, and MathML with the TeX for screen readers
    assert out.count('<math xmlns="http://www.w3.org/1998/Math/MathML"') == 2
    assert 'display="block"' in out and 'class="katex-html" aria-hidden="true"' in out
    assert '<annotation encoding="application/x-tex">x_i &lt; \\mu_\\mathcal{B}</annotation>' in out
    assert out.startswith('<p>Inline ') and '</span> and</p>\n<div' in out


def test_a_formula_seen_before_is_not_typeset_again(katex_renderer):
    page = '<span class="arithmatex">\\(a + a\\)</span>'
    first = annotate.typeset_math(page, katex_renderer)
    katex_renderer.cache[('a + a', False)] = {'html': 'CACHED'}
    assert annotate.typeset_math(page * 2, katex_renderer) == \
        '<span class="arithmatex" data-typeset="build">CACHED</span>' * 2
    assert 'katex' in first


def test_a_formula_katex_cannot_parse_stops_the_build_naming_page_and_formula(katex_renderer):
    page = '<span class="arithmatex">\\(\\frac{1}{m}\\)</span><span class="arithmatex">\\(\\frac{1}{\\)</span>'
    with pytest.raises(annotate.MathError) as raised:
        annotate.typeset_math(page, katex_renderer, where=lambda tex: 'docs/x.md: line 3')
    message = str(raised.value)
    assert message.startswith("docs/x.md: line 3: KaTeX cannot typeset the formula '\\\\frac{1}{': ")
    assert 'KaTeX parse error: Unexpected end of input' in message and '\n' not in message
    # A build error: mkdocs prints it as one line and exits non-zero
    from mkdocs.exceptions import BuildError
    assert issubclass(annotate.MathError, BuildError)


def test_without_node_or_katex_one_error_says_to_run_make_install(tmp_path, monkeypatch):
    with pytest.raises(annotate.MathError, match=r'KaTeX not found at .*: run `make install` \(npm ci\)'):
        annotate.MathRenderer(tmp_path / 'node_modules' / 'katex')
    monkeypatch.setattr(annotate.shutil, 'which', lambda name: None)
    with pytest.raises(annotate.MathError, match=r'node \(Node.js\) not found: .*`make install`'):
        annotate.MathRenderer(KATEX)


def test_mkdocs_build_fails_on_a_bad_formula_with_its_file_line_and_text(tmp_path):
    # One bad formula in an annotated source's comment, one in a Markdown page
    source = '"""\n---\ntitle: T\n---\n# T\n"""\n# Fine: $x^2$, not: $\\sqrt[{x}$\nX = 1\n'
    project = write_fixture_project(tmp_path / 'project', source)
    done = build_site(tmp_path / 'site', project)
    assert done.returncode != 0
    assert ("labml_nn_bn/demo/fixture.py: line 7: KaTeX cannot typeset the formula '\\\\sqrt[{x}'"
            in done.stderr), done.stderr
    assert 'Traceback' not in done.stderr
    (project / 'labml_nn_bn' / 'demo' / 'fixture.py').write_text(source.replace('\\sqrt[{x}', 'y'))
    (project / 'docs' / 'index.md').write_text('# Home\n\nFine $a$.\n\n$$\\left( x$$\n')
    done = build_site(tmp_path / 'site', project)
    assert done.returncode != 0
    assert "docs/index.md: line 5: KaTeX cannot typeset the formula '\\\\left( x'" in done.stderr, done.stderr


def test_punctuation_that_touches_an_inline_formula_is_wrapped_with_it(katex_renderer):
    # `of $x$.` and `($y$),`: the formula and what touches it in one element that keeps
    # them on one line (annotated.css), KaTeX's last box marked so that its line takes
    # the period
    page = ('<p>Of <span class="arithmatex">\\(x + 1\\)</span>. And '
            '(<span class="arithmatex">\\(y\\)</span>), then <span class="arithmatex">'
            '\\(z\\)</span> alone.</p><div class="arithmatex">\\[w\\]</div>.')
    out = annotate.typeset_math(page, katex_renderer)
    assert out.count('<span class="arithmatex-nowrap">') == 2
    assert out.startswith('<p>Of <span class="arithmatex-nowrap">'
                          '<span class="arithmatex" ')
    assert '</span></span>.</span> And <span class="arithmatex-nowrap">(' in out
    assert '</span></span>),</span> then <span class="arithmatex" ' in out
    # The formula followed by a space, and display math, are left as they were
    assert ('</span></span> alone.</p>'
            '<div class="arithmatex" data-typeset="build">') in out
    assert out.endswith('</div>.')
    # In each wrapped formula KaTeX's last box (`x + 1` has two: `x +`, `1`) is the tail
    assert out.count('<span class="arithmatex-tail"><span class="katex-base">') == 2
    first = out.split('</span>.</span>')[0]
    assert first.count('class="katex-base"') == 2
    assert first.index('arithmatex-tail') > first.index('class="katex-base"')


def test_the_search_index_reads_each_formula_as_text_and_the_page_keeps_its_tex():
    page = ('<h2 id="v">The variance <span class="arithmatex">'
            '\\(\\sigma^2_\\mathcal{B}\\)</span></h2>\n'
            '<p>With <span class="arithmatex">'
            '\\(x_i &lt; \\mu_\\mathcal{B}\\)</span>:</p>\n'
            '<div class="arithmatex">\\[\\hat{x} = \\frac{x - \\mu}{\\sigma}\\]</div>')
    text, originals = annotate.formulas_as_text(page)
    assert '\\' not in text
    assert '<span class="arithmatex" data-math-text="0">σ²_B</span></h2>' in text
    assert '<span class="arithmatex" data-math-text="1">x_i &lt; μ_B</span>:' in text
    assert '<div class="arithmatex" data-math-text="2">x̂ = (x − μ)/σ</div>' in text
    assert annotate.formulas_as_tex(text, originals) == page
    assert annotate.formulas_as_text('<p>No math</p>') == ('<p>No math</p>', [])


# --- notes are paired only with their own code (issue 20: the sticky code column) ---------

PAIRING = src('''
    """
    ---
    title: T
    ---
    # T
    """
    import torch

    # ## What the paper derives
    #
    # ### Where it goes
    #
    # Prose about the paper, no code of its own.

    # ### Scale invariance
    #
    # $$\\mathrm{BN}((aW)u) = \\mathrm{BN}(Wu)$$
    #
    # ## The module
    #
    # Explains the import below.
    try:
        import labml_helpers
    except ImportError:
        labml_helpers = None
''')


def test_notes_that_a_heading_follows_before_any_code_are_a_section_of_notes_only():
    annotated, page = render(PAIRING)
    assert_every_line_accounted_for(PAIRING, annotated.sections)
    notes = [s.notes.split('\n')[0] for s in annotated.sections]
    assert notes == ['# T', '', '## What the paper derives', '### Where it goes',
                     '### Scale invariance', '## The module']
    assert [bool(s.code) for s in annotated.sections] == [False, True, False, False, False, True]
    # The code sits only beside the notes that explain it, level with their heading
    assert annotated.sections[-1].notes.startswith('## The module\n\nExplains the import')
    assert annotated.sections[-1].code[0] == (22, 'try:')
    only = [s for s in page.sections if 'annotated-section--notes-only' in s['classes']]
    assert len(only) == 4 and all(s['code'] == 0 for s in only)
    assert 'annotated-section--sticky' in page.sections[-1]['classes']


def test_a_hash_line_in_a_fenced_block_of_notes_starts_no_section():
    source = src('''
        # An example:
        #
        # ```python
        # # not a heading
        # x = 1
        # ```
        y = 2
    ''')
    annotated, _ = render(source)
    assert len(annotated.sections) == 1
    assert annotated.sections[0].code == [(7, 'y = 2')]


def test_a_heading_that_opens_a_body_stays_beside_the_definition():
    source = src('''
        # Notes about f
        def f(x):
            # ## A heading inside the body
            return x
    ''')
    annotated, _ = render(source)
    assert len(annotated.sections) == 1
    assert annotated.sections[0].notes == 'Notes about f\n\n## A heading inside the body'


def test_a_header_alone_is_not_kept_in_view_beside_notes_about_its_body():
    source = src('''
        class Norm:
            @staticmethod
            def update(x):
                r"""
                ### Moving averages

                $$\\mathbb{E}[x] \\leftarrow (1 - \\alpha)\\,\\mathbb{E}[x] + \\alpha\\,\\mu$$
                """
                # The body's own note
                return x


        def whole(x):
            """Short enough to be shown whole beside its notes."""
            return x
    ''')
    annotated, page = render(source)
    codes = [[t.strip() for _, t in s.code] for s in annotated.sections]
    assert codes == [['class Norm:'], ['@staticmethod', 'def update(x):'], ['return x'],
                     ['def whole(x):', 'return x']]
    assert [s.header_only for s in annotated.sections] == [True, True, False, False]
    sticky = ['annotated-section--sticky' in s['classes'] for s in page.sections]
    assert sticky == [False, False, True, True]
