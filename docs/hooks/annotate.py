"""
An mkdocs hook that renders annotated Python sources side by side: the explanation
(docstrings and whole-line `#` comments, in Markdown + LaTeX) on the left, the code it explains
on the right, section by section.

The work is split in four:

* `read_source(data)`, which decodes a file's bytes the way Python does;
* `split_sections(source)`, a pure function from source text to `Section`s;
* `render_sections(...)`, which turns sections into HTML and a table of contents;
* `MathRenderer` and `typeset_math(...)`, which typeset every formula of a built page with
  KaTeX (in Node.js, `katex_render.js`), so that the reader's browser runs no script for it;
  and `formulas_as_text(...)`, which gives the search index a plain-text reading of each
  formula (`math_text.py`) instead of its TeX;
* the mkdocs events at the bottom, which find the annotated sources, add a page for each,
  typeset the math and host KaTeX's stylesheet and fonts.

A source file is annotated when its module docstring starts with a front matter block:

    '''
    ---
    title: Batch Normalization
    summary: One sentence for the page's description.
    ---
    # Markdown from here on
    '''

A file that is meant to be annotated but cannot be (undecodable bytes, a syntax error, bad
front matter, an image that does not exist) stops the build with one line that names the file,
the line and the problem: an `AnnotationError`.
"""
import ast
import html
import importlib.util
import inspect
import io
import json
import logging
import re
import shutil
import subprocess
import tokenize
import unicodedata
import urllib.parse
import xml.etree.ElementTree as etree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import markdown
import yaml
from markdown.extensions.toc import (nest_toc_tokens, remove_fnrefs, render_inner_html, slugify,
                                     strip_tags, unique)
from markdown.inlinepatterns import InlineProcessor
from markdown.treeprocessors import Treeprocessor
from mkdocs.exceptions import PluginError
from mkdocs.plugins import CombinedEvent, event_priority
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


class SourceError(ValueError):
    """A problem with a source's text, at a line of it (1-based) when there is one."""

    def __init__(self, problem: str, line: Optional[int] = None):
        super().__init__(f'line {line}: {problem}' if line else problem)
        self.problem, self.line = problem, line


class AnnotationError(PluginError):
    """
    A source meant to be annotated that cannot be: the message is one line,
    `path: line n: problem`. As a `BuildError`, mkdocs prints it without a traceback.
    """

    def __init__(self, path: str, problem: str, line: Optional[int] = None):
        super().__init__(f'{path}: line {line}: {problem}' if line else f'{path}: {problem}')


# --- reading a source the way Python does -------------------------------------------------

def split_lines(text: str) -> List[str]:
    """
    The lines of a source as Python's tokenizer numbers them: a line ends at `\\n`, `\\r\\n`
    or `\\r` only. (`str.splitlines()` also breaks at form feed, `\\v`, `\\x1c`-`\\x1e`,
    `\\x85`, U+2028 and U+2029, which Python reads as characters of a line; using it would
    shift every line number after one of them.)
    """
    lines = re.split(r'\r\n|\r|\n', text)
    if lines and lines[-1] == '':
        lines.pop()  # the newline that ends the last line does not start another
    return lines


def normalise_newlines(text: str) -> str:
    """`\\r\\n` and `\\r` to `\\n`, as Python does when it reads a source."""
    return text.replace('\r\n', '\n').replace('\r', '\n')


def read_source(data: bytes) -> str:
    """
    A source file's bytes as text, decoded as Python decodes them: UTF-8 unless a PEP 263
    `coding:` line says otherwise; a UTF-8 byte order mark is accepted (Python accepts it)
    and dropped, so it never shows on the page. Newlines are normalised to `\\n`.
    Raises `SourceError` naming the line of anything Python would refuse.
    """
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as e:
        first_lines = data.split(b'\n', 2)[:2]
        cookie = next((n for n, line in enumerate(first_lines, start=1) if b'coding' in line), None)
        if data.startswith(b'\xef\xbb\xbf') and cookie:
            raise SourceError('the file starts with a UTF-8 byte order mark but its coding line '
                              'declares another encoding', cookie) from None
        if cookie:  # an unknown codec
            raise SourceError(str(e), cookie) from None
        encoding = 'utf-8'  # undecodable bytes in the first two lines: found just below
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b'\n') + 1
        bad = data[e.start:e.end]
        what = f'byte {bad.hex()} is' if len(bad) == 1 else f'bytes {bad.hex(" ")} are'
        raise SourceError(f'{what} not valid {encoding.replace("-sig", "")} '
                          f'(the file must be UTF-8 or declare its encoding)', line) from None
    if text.startswith('\ufeff'):
        text = text[1:]
    return normalise_newlines(text)


# A module docstring whose text starts with `---`, after any blank or comment lines (a
# shebang, an encoding line). Used to recognise a file that is meant to be annotated even
# when Python cannot parse it, so that a syntax error is reported instead of the page
# silently vanishing.
_LOOKS_ANNOTATED = re.compile(
    r"""\A(?:[ \t\f]*(?:\#[^\n]*)?\n)*[ \t]*[rRuU]?(?:\"\"\"|\'\'\')\s*---[ \t]*\n""")


def looks_annotated(text: str) -> bool:
    """Whether a source, parsable or not, opens with a docstring that starts with `---`."""
    return bool(_LOOKS_ANNOTATED.match(normalise_newlines(text)))


# --- splitting a source into sections -----------------------------------------------------

@dataclass
class Section:
    # Markdown shown in the left column
    notes: str = ''
    # (line number, text) of the code shown in the right column, in source order; the only
    # gaps are the lines of notes that belong with a definition's header (its docstring)
    code: List[Tuple[int, str]] = field(default_factory=list)
    # A stable anchor, from the first class or function defined in the section's code
    anchor: Optional[str] = None
    # The code is only the header of a definition (decorators and signature) whose body is
    # shown in later sections, beside notes of its own
    header_only: bool = False


class AnnotatedSource:
    """What `split_sections` returns: the front matter, the sections, and the source's lines."""

    def __init__(self, meta: Dict, sections: List[Section], lines: Optional[List[str]] = None):
        self.meta = meta
        self.sections = sections
        self.lines = lines or []

    @property
    def title(self) -> Optional[str]:
        return self.meta.get('title')

    @property
    def summary(self) -> Optional[str]:
        summary = self.meta.get('summary')
        return ' '.join(summary.split()) if summary else None


_FRONT_MATTER = re.compile(r'\A---[ \t]*\n(.*?\n)---[ \t]*(?:\n|\Z)', re.DOTALL)
_OPENS_FRONT_MATTER = re.compile(r'\A---[ \t]*(?:\n|\Z)')


def split_front_matter(text: str) -> Tuple[Dict, str]:
    """
    `---`-delimited YAML at the start of a docstring, and the Markdown after it.
    A `SourceError`'s line counts from the opening `---` (line 1).
    """
    match = _FRONT_MATTER.match(text)
    if not match:
        if _OPENS_FRONT_MATTER.match(text):
            raise SourceError("the front matter opened by '---' is never closed by a '---' line", 1)
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        problem = ' '.join(str(getattr(e, 'problem', None) or e).split())
        raise SourceError(f'invalid front matter YAML: {problem}',
                          mark.line + 2 if mark is not None else 1) from None
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise SourceError(f'front matter must be a mapping, got {type(meta).__name__} '
                          f'(write it as `title: ...` and `summary: ...` lines)', 1)
    for key in ('title', 'summary'):
        if key in meta and not isinstance(meta[key], str):
            raise SourceError(f"front matter '{key}' must be text, got {type(meta[key]).__name__}", 1)
    return meta, text[match.end():]


def parse(source: str) -> ast.Module:
    """The source's syntax tree; a `SourceError` with Python's own message and line."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError) as e:  # ValueError: a null byte, in older Pythons
        line = getattr(e, 'lineno', None)
        if line is None and '\0' in source:
            line = source[:source.index('\0')].count('\n') + 1
        raise SourceError(getattr(e, 'msg', None) or str(e), line) from None


def _chars(line: str, byte_offset: int) -> int:
    """The AST's column (a UTF-8 byte offset) as an index into the line's characters."""
    return len(line.encode('utf-8')[:byte_offset].decode('utf-8', errors='ignore'))


def _docstrings(tree: ast.Module, lines: List[str]):
    """
    `(first line, last line, text, is_module)` of each docstring that stands on lines of its own.
    """
    owners = [tree] + [n for n in ast.walk(tree)
                       if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    for owner in owners:
        body = owner.body
        if not body or not isinstance(body[0], ast.Expr):
            continue
        node = body[0].value
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        first, last = node.lineno, node.end_lineno
        # Only a docstring alone on its lines becomes notes: `def f(): """doc"""` stays code
        if lines[first - 1][:_chars(lines[first - 1], node.col_offset)].strip():
            continue
        after = lines[last - 1][_chars(lines[last - 1], node.end_col_offset):].strip()
        if after and not after.startswith('#'):
            continue
        yield first, last, inspect.cleandoc(node.value), owner is tree


def _comment_lines(source: str, lines: List[str]) -> Dict[int, str]:
    """
    Whole-line `#` comments, by line number, with the `#` and one following space removed.
    Uses the tokenizer, so a `#` inside a string is never mistaken for a comment.
    """
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        row, col = tok.start
        if lines[row - 1][:col].strip():
            continue  # a comment after code, such as a shape, stays with the code
        text = tok.string
        # The shebang and the encoding declaration are for the interpreter, not the reader
        if row <= 2 and (text.startswith('#!') or re.match(r'#.*coding[:=]', text)):
            continue
        text = text[1:]
        comments[row] = text[1:] if text.startswith(' ') else text
    return comments


def _anchors(tree: ast.Module) -> Dict[int, str]:
    """A qualified, lower-case name (`batchnorm-forward`) for the line of each definition."""
    anchors = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f'{prefix}{child.name}'.lower()
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                anchors[first] = name
                visit(child, name + '-')

    visit(tree, '')
    return anchors


# A Markdown heading (ATX), as a comment's text starts it
_HEADING = re.compile(r'#{1,6}(?:[ \t]|$)')


def _in_fence(notes: str) -> bool:
    """Whether Markdown notes end inside a fenced code block (where `#` starts no heading)."""
    fences = [line for line in notes.split('\n') if line.lstrip().startswith(('```', '~~~'))]
    return len(fences) % 2 == 1


def _first_line(node: ast.AST) -> int:
    """A statement's first line: a decorated definition starts at its first decorator."""
    return min([node.lineno] + [d.lineno for d in getattr(node, 'decorator_list', [])])


def _header_spans(tree: ast.Module) -> List[Tuple[int, int]]:
    """
    `(first line, first line of the body)` of each definition whose body has statements
    besides its docstring: the lines in between are its header (and its docstring).
    """
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if ast.get_docstring(node, clean=False) is not None:
                body = body[1:]
            if body:
                spans.append((_first_line(node), _first_line(body[0])))
    return spans


def split_sections(source: str) -> AnnotatedSource:
    """
    Splits Python source text into sections of notes and code.

    Every line of the source ends up in exactly one place: a note line in the notes of a
    section, any other line in the code of a section, in source order. Blank lines at the
    edges of a code block are dropped; blank lines inside it are kept.

    * Whole-line `#` comments are notes. A run of them starts a new section when the current
      one already has code. Comments after code on the same line stay code.
    * The module docstring is notes, a section of its own (the introduction, shown full
      width); its front matter becomes `meta`.
    * A class or function docstring, or a comment opening a body, is notes for the section
      that shows the definition's header, so the explanation sits beside the signature and
      body it describes.
    * A Markdown heading in a comment starts a new section: notes that a heading follows
      before any code are a section of notes only, never beside the code of the next
      heading's section. (A section shows code only beside the notes that explain it.)

    Lines are numbered as Python numbers them (`split_lines`). A source Python cannot parse,
    or bad front matter, raises `SourceError` with the line.
    """
    source = normalise_newlines(source)
    lines = split_lines(source)
    tree = parse(source)
    comments = _comment_lines(source, lines)
    anchors = _anchors(tree)

    # Docstrings, by their first line; their other lines are skipped
    docstrings = {}
    skip = set()
    meta = {}
    module_docstring = None
    for first, last, text, is_module in _docstrings(tree, lines):
        if is_module:
            module_docstring = first
            try:
                meta, text = split_front_matter(text)
            except SourceError as e:
                # The docstring's text starts at its first non-blank line, the opening `---`
                opening = next(n for n in range(first, last + 1) if '---' in lines[n - 1])
                raise SourceError(e.problem, opening + e.line - 1) from None
        docstrings[first] = text.strip('\n')
        skip.update(range(first + 1, last + 1))

    # Definitions, by the span in which a note belongs with the definition's header:
    # from the header's first line (decorators included) to the first statement of the body
    definitions = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            header = min([node.lineno] + [d.lineno for d in node.decorator_list])
            definitions.append((header, node.body[0].lineno))

    sections = [Section()]

    def section_for_notes(number):
        """The section that a note on line `number` goes into, starting one if needed."""
        current = sections[-1]
        if not any(t.strip() for _, t in current.code):
            return current
        # A note between a definition's header and its body (its docstring, or a comment
        # opening the body) explains that definition: keep it beside the header.
        owners = [(header, body) for header, body in definitions
                  if header < number <= body and any(n == header for n, _ in current.code)]
        if owners:
            header = max(owners)[0]
            if not any(t.strip() for n, t in current.code if n < header):
                return current
            moved = [(n, t) for n, t in current.code if n >= header]
            current.code = [(n, t) for n, t in current.code if n < header]
        else:
            moved = []
        sections.append(Section(code=moved))
        return sections[-1]

    def add_notes(section, text, new_paragraph):
        if not section.notes:
            section.notes = text
        else:
            section.notes += ('\n\n' if new_paragraph else '\n') + text

    previous_was_comment = False
    for number, line in enumerate(lines, start=1):
        if number in skip:
            continue
        if number in docstrings:
            add_notes(section_for_notes(number), docstrings[number], new_paragraph=True)
            if number == module_docstring:
                sections.append(Section())
            previous_was_comment = False
        elif number in comments:
            current = sections[-1]
            if (_HEADING.match(comments[number]) and current.notes.strip() and not current.code
                    and not _in_fence(current.notes)):
                sections.append(Section())
            add_notes(section_for_notes(number), comments[number], new_paragraph=not previous_was_comment)
            previous_was_comment = True
        else:
            # Code, or a blank line; a blank line before any code in a section is dropped
            if line.strip() or sections[-1].code:
                sections[-1].code.append((number, line))
            previous_was_comment = False

    spans = _header_spans(tree)
    for section in sections:
        # Drop blank lines at the edges of each code block
        while section.code and not section.code[0][1].strip():
            section.code.pop(0)
        while section.code and not section.code[-1][1].strip():
            section.code.pop()
        if section.code and section.code[0][0] in anchors:
            section.anchor = anchors[section.code[0][0]]
        numbers = [n for n, _ in section.code]
        section.header_only = bool(numbers) and any(
            first <= min(numbers) and max(numbers) < body for first, body in spans)
    sections = [s for s in sections if s.notes.strip() or s.code]
    return AnnotatedSource(meta, sections, lines)


# --- rendering ----------------------------------------------------------------------------

class _DisplayMathInline(InlineProcessor):
    """`$$...$$` inside a paragraph or list item, as display math (arithmatex handles it only
    when it stands alone as a block)."""

    def handleMatch(self, m, data):
        el = etree.Element('span', {'class': 'arithmatex'})
        el.text = markdown.util.AtomicString(r'\[' + html.escape(m.group(1).strip(), quote=False) + r'\]')
        return el, m.start(0), m.end(0)


class DisplayMathExtension(markdown.Extension):
    def extendMarkdown(self, md):
        # Just above arithmatex's inline pattern (189.9), so `$$` is not read as two `$`
        md.inlinePatterns.register(_DisplayMathInline(r'(?<!\\)\$\$(.+?)\$\$', md), 'display-math-inline', 190)


# Names of the control characters that `unicodedata` does not name
_CONTROL_NAMES = {'\f': 'FORM FEED', '\v': 'LINE TABULATION', '\x1c': 'FILE SEPARATOR',
                  '\x1d': 'GROUP SEPARATOR', '\x1e': 'RECORD SEPARATOR', '\x1f': 'UNIT SEPARATOR',
                  '\x85': 'NEXT LINE', '\x00': 'NULL', '\x1b': 'ESCAPE', '\x7f': 'DELETE'}


def _is_hidden(char: str) -> bool:
    """
    A character that a browser draws as a line break (form feed, `\x85`, U+2028, ...) or not
    at all (other controls, zero-width and bidirectional format characters). Python reads
    each as a character of its line, so the page shows it as a visible escape instead: a code
    line stays one line on the screen, and nothing in it is invisible.
    """
    return char != '\t' and unicodedata.category(char) in ('Cc', 'Cf', 'Zl', 'Zp')


def _show_hidden(fragment: str) -> str:
    if not any(_is_hidden(c) for c in fragment):
        return fragment
    out = []
    for char in fragment:
        if _is_hidden(char):
            code = ord(char)
            name = _CONTROL_NAMES.get(char) or unicodedata.name(char, 'CONTROL')
            escape = f'\\x{code:02x}' if code < 0x100 else f'\\u{code:04x}'
            out.append(f'<span class="annotated-char" data-char="{code:x}" '
                       f'title="U+{code:04X} {name}">{escape}</span>')
        else:
            out.append(char)
    return ''.join(out)


def highlight_lines(source: str) -> List[str]:
    """
    The source highlighted by Pygments, one balanced HTML fragment per line, lines numbered
    as Python numbers them (`split_lines`); hidden characters are shown as escapes.
    """
    source = normalise_newlines(source)
    formatter = HtmlFormatter(nowrap=True)
    rendered = highlight(source, PythonLexer(stripnl=False, ensurenl=True), formatter)
    # Pygments' tokens break lines at `\n` only; `highlight` ends with a newline
    result = rendered.split('\n')[:len(split_lines(source))]
    return [_show_hidden(fragment) for fragment in result]


class _PageHeadingIds(Treeprocessor):
    """
    Gives every heading an id that is unique on the whole page. Each section's notes are
    converted on their own, so the toc extension alone would give two `## Notes` headings in
    two sections the same id. Runs just before toc, which keeps ids that are already set.
    """

    def __init__(self, md, used: set):
        super().__init__(md)
        self.used = used

    def run(self, root):
        toc = self.md.treeprocessors['toc'] if 'toc' in self.md.treeprocessors else None
        slugify_id = toc.slugify if toc else slugify
        separator = toc.sep if toc else '-'
        for el in root.iter():
            if not (isinstance(el.tag, str) and re.fullmatch(r'[hH][1-6]', el.tag)):
                continue
            if 'id' in el.attrib:
                el.attrib['id'] = unique(el.attrib['id'], self.used)
            else:
                name = strip_tags(render_inner_html(remove_fnrefs(el), self.md))
                el.attrib['id'] = unique(slugify_id(html.unescape(name), separator), self.used)


def _flat_toc(tokens: List[dict]) -> List[dict]:
    """The toc extension's nested tokens in page order, without their nesting."""
    flat = []
    for token in tokens:
        flat.append({k: v for k, v in token.items() if k != 'children'})
        flat.extend(_flat_toc(token.get('children', [])))
    return flat


# A section whose code has at most this many lines keeps its code in view (sticky) while its
# notes scroll past; a longer block could be taller than the window, and would hide its end.
STICKY_MAX_LINES = 24


@dataclass
class Rendered:
    html: str
    # The page's headings, nested, in the toc extension's format (`mkdocs.structure.toc.get_toc`)
    toc: List[dict]


def _leading(line: str) -> str:
    """A line's indentation: its leading spaces and tabs."""
    return line[:len(line) - len(line.lstrip(' \t'))]


def _mark_indent(fragment: str, indent: str) -> str:
    """
    The highlighted line with its indentation moved into a span of its own, which the CSS
    keeps from wrapping: a long line then wraps after its first word, never right after its
    indentation (which would leave a row with nothing but the line number).
    """
    if not indent:
        return fragment
    out, i, taken = [], 0, 0
    while taken < len(indent) and i < len(fragment):
        if fragment[i] == '<':
            end = fragment.index('>', i) + 1
            out.append(fragment[i:end])
            i = end
        elif fragment[i] == indent[taken]:
            i, taken = i + 1, taken + 1
        else:
            return fragment  # not the expected text: leave the line as it is
    return f'<span class="annotated-indent">{indent}</span>' + ''.join(out) + fragment[i:]


def _gap(first: int, last: int) -> str:
    """A marker between two code lines whose numbers jump: the lines between are notes."""
    lines = f'Line {first} is' if first == last else f'Lines {first}\u2013{last} are'
    text = f'{lines} shown as notes'
    return f'<span class="annotated-gap" role="note" title="{text}" aria-label="{text}"></span>'


def render_sections(annotated: AnnotatedSource, md: markdown.Markdown,
                    source_url: Optional[str] = None) -> Rendered:
    """
    The side-by-side HTML of a page, one `.annotated-section` per section, and its table of
    contents (from the headings in the notes). Registers a treeprocessor on `md`.
    """
    highlighted = highlight_lines('\n'.join(annotated.lines) + '\n')
    code_lines = [(n, t) for s in annotated.sections for n, t in s.code]
    longest = max((len(t.expandtabs(4)) for _, t in code_lines), default=0)
    digits = len(str(max((n for n, _ in code_lines), default=1)))

    # Section anchors first, so that no heading takes one of them
    used = set()
    anchors = []
    for i, section in enumerate(annotated.sections):
        anchors.append(unique(section.anchor or f'section-{i}', used))
    md.treeprocessors.register(_PageHeadingIds(md, used), 'annotated-heading-ids', 6)

    toc = []
    out = [f'<div class="annotated" style="--code-chars: {longest}; --lineno-digits: {digits}">']
    if source_url:
        out.append(f'<p class="annotated-source"><a href="{html.escape(source_url)}">'
                   f'View this file on GitHub</a></p>')
    for section, anchor in zip(annotated.sections, anchors):
        md.reset()
        notes = md.convert(strip_measured_markers(section.notes)) if section.notes.strip() else ''
        toc.extend(_flat_toc(getattr(md, 'toc_tokens', [])))
        notes_div = (f'<div class="annotated-notes">'
                     f'<a class="annotated-anchor" href="#{anchor}" title="Link to this section">#</a>'
                     f'{notes}</div>')
        if not section.code:
            out.append(f'<div class="annotated-section annotated-section--notes-only" id="{anchor}">'
                       f'{notes_div}</div>')
            continue
        code = []
        for k, (n, text) in enumerate(section.code):
            if k and n > section.code[k - 1][0] + 1:
                code.append(_gap(section.code[k - 1][0] + 1, n - 1))
            indent = _leading(text)
            width = len(indent.expandtabs(4))
            style = f' style="--indent: {width}"' if width else ''
            code.append(f'<span class="annotated-line" id="L{n}"{style}>'
                        f'<a class="annotated-lineno" href="#L{n}" data-lineno="{n}" aria-label="line {n}"></a>'
                        f'{_mark_indent(highlighted[n - 1], indent)}</span>')
        # The copy button copies exactly the code lines shown, whatever the layout does
        copy = html.escape('\n'.join(t for _, t in section.code))
        classes = 'annotated-section'
        # A definition's header alone stays level with the start of its notes: kept in view,
        # it would sit beside notes that explain the body, which comes later
        if notes and len(section.code) <= STICKY_MAX_LINES and not section.header_only:
            classes += ' annotated-section--sticky'
        out.append(
            f'<div class="{classes}" id="{anchor}">{notes_div}'
            f'<div class="annotated-code"><div class="highlight" data-copy="{copy}">'
            f'<pre><code>{"".join(code)}</code></pre></div></div></div>')
    out.append('</div>')
    return Rendered('\n'.join(out), nest_toc_tokens(toc))


# --- math, typeset at build time ----------------------------------------------------------

# pymdownx.arithmatex (generic mode) and `DisplayMathExtension` leave each formula as
# `<span|div class="arithmatex">\(inline\)</span>` or `\[display\]`, its TeX HTML-escaped and
# nothing else inside; Material copies headings' formulas into the table of contents as is.
_ARITHMATEX = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.DOTALL)
# Text that touches an inline formula: after it, the characters up to the next space or
# tag (`.`, `,`, `),` or a suffix such as `-th`); before it, opening brackets or quotes
_TOUCHING = re.compile(r'[^\s<]+')
_OPENING = re.compile(r'[(\[‘“]+$')
KATEX_SCRIPT = Path(__file__).resolve().with_name('katex_render.js')
KATEX_PACKAGE = Path('node_modules') / 'katex'
INSTALL_HINT = 'run `make install` (npm ci) first'

log = logging.getLogger('mkdocs.hooks.annotate')


class MathError(PluginError):
    """A formula KaTeX cannot typeset, or no KaTeX to typeset with: one line, no traceback."""


class MathRenderer:
    """
    One Node.js process running `katex_render.js`, which typesets formulas with the KaTeX of
    `node_modules/katex` (KaTeX's default output: HTML, and MathML for screen readers).
    One process serves a whole build, page after page: Node and KaTeX start once. Results
    are kept by `(tex, display)`, so a formula that recurs (and every formula, when
    `mkdocs serve` rebuilds) is typeset once.
    """

    def __init__(self, katex_package: Path, cache: Optional[Dict] = None):
        node = shutil.which('node')
        if node is None:
            raise MathError('node (Node.js) not found: the site typesets its math with KaTeX '
                            f'when it is built; install Node.js 18 or later, then {INSTALL_HINT}')
        if not (katex_package / 'package.json').exists():
            raise MathError(f'KaTeX not found at {katex_package}: {INSTALL_HINT}')
        self.cache: Dict[Tuple[str, bool], dict] = {} if cache is None else cache
        self._process = subprocess.Popen(
            [node, str(KATEX_SCRIPT), str(katex_package.resolve())], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding='utf-8')

    def render(self, formulas: List[Tuple[str, bool]]) -> List[dict]:
        """`{'html': ...}` (and `'warnings'`, a list) or `{'error': ...}` for each formula."""
        todo = list(dict.fromkeys(f for f in formulas if f not in self.cache))
        if todo:
            try:
                self._process.stdin.write(json.dumps(todo) + '\n')
                self._process.stdin.flush()
                answer = self._process.stdout.readline()
            except (BrokenPipeError, OSError):
                answer = ''
            if not answer:
                self.close()
                error = ' '.join(self._process.stderr.read().split())[-500:]
                raise MathError(f'KaTeX (node {KATEX_SCRIPT.name}) stopped: {error or "no output"}; '
                                f'{INSTALL_HINT}')
            self.cache.update(zip(todo, json.loads(answer)))
        return [self.cache[f] for f in formulas]

    def close(self):
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def _formula(escaped: str) -> Tuple[str, bool]:
    """The TeX of an arithmatex element's text, and whether it is display math."""
    tex = html.unescape(escaped).strip()
    if tex.startswith('\\(') and tex.endswith('\\)'):
        return tex[2:-2], False
    if tex.startswith('\\[') and tex.endswith('\\]'):
        return tex[2:-2], True
    return tex, True  # a bare `\begin{...}` environment, which is display math


_SPAN_TAG = re.compile(r'<span\b|</span>')


def _keep_last_box(typeset: str) -> str:
    """
    The formula with the last of KaTeX's boxes (the top-level children of `.katex-html`,
    between which a long formula may break) in `<span class="arithmatex-tail">`. Chrome
    lets a line end after a box when the box's parent allows wrapping; the tail, which
    does not, keeps the text after the formula on the box's line, and the other boxes
    still wrap.
    """
    start = typeset.find('<span class="katex-html"')
    if start < 0:
        return typeset
    depth, last = 0, None
    for tag in _SPAN_TAG.finditer(typeset, typeset.index('>', start) + 1):
        if tag.group(0) == '</span>':
            depth -= 1
            if depth < 0:
                if last is None:
                    return typeset
                return (typeset[:last] + '<span class="arithmatex-tail">' +
                        typeset[last:tag.start()] + '</span>' + typeset[tag.start():])
        else:
            if depth == 0:
                last = tag.start()
            depth += 1
    return typeset


def typeset_math(html_text: str, renderer: MathRenderer,
                 where: Callable[[str], str] = lambda tex: 'a page') -> str:
    """
    Every formula of a page, typeset: the element keeps its tag and class (the layout's CSS
    is unchanged) and gets KaTeX's HTML as content and `data-typeset="build"`. A formula KaTeX
    cannot parse raises `MathError` with `where(tex)` (the page, the line when known) and the
    formula; what KaTeX accepts but LaTeX would not is a warning (an error with `--strict`).

    An inline formula and the text that touches it (punctuation after it, `(` before
    it) are wrapped together in `<span class="arithmatex-nowrap">`, whose CSS
    (annotated.css) lets no line end between them (`_keep_last_box`): a browser may
    otherwise break right after KaTeX's last box and start the next line with a period.
    """
    matches = list(_ARITHMATEX.finditer(html_text))
    if not matches:
        return html_text
    formulas = [_formula(m.group(2)) for m in matches]
    results = renderer.render(formulas)
    for (tex, _), result in zip(formulas, results):
        if 'error' in result:
            raise MathError(f'{where(tex)}: KaTeX cannot typeset the formula {tex!r}: '
                            f'{" ".join(result["error"].split())}')
    warned = set()
    for (tex, _), result in zip(formulas, results):
        for warning in result.get('warnings', []):
            if (tex, warning) not in warned:
                warned.add((tex, warning))
                log.warning(f'{where(tex)}: KaTeX warns about the formula {tex!r}: {warning}')
    out, end = [], 0
    for i, (match, result) in enumerate(zip(matches, results)):
        tag = match.group(1)
        before = html_text[end:match.start()]
        typeset = (f'<{tag} class="arithmatex" data-typeset="build">'
                   f'{result["html"]}</{tag}>')
        end = match.end()
        if tag == 'span':
            # What touches an inline formula, with no space between, ends or starts a
            # line with it (`of $x$.` never leaves the period alone on the next line)
            stop = matches[i + 1].start() if i + 1 < len(matches) else len(html_text)
            lead = _OPENING.search(before)
            trail = _TOUCHING.match(html_text, end, stop)
            if lead or trail:
                opening = lead.group(0) if lead else ''
                before = before[:len(before) - len(opening)]
                closing = trail.group(0) if trail else ''
                if closing:
                    typeset = _keep_last_box(typeset)
                typeset = (f'<span class="arithmatex-nowrap">'
                           f'{opening}{typeset}{closing}</span>')
                end += len(closing)
        out.append(before)
        out.append(typeset)
    out.append(html_text[end:])
    return ''.join(out)


# --- math in the search index ---------------------------------------------------------

def _load_math_text():
    # A file of its own beside this hook; loaded by path, since mkdocs and the tests
    # import this hook by path too, with no package around it
    path = Path(__file__).resolve().with_name('math_text.py')
    spec = importlib.util.spec_from_file_location('labml_nn_bn_hooks_math_text', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


math_text = _load_math_text().math_text

_SEARCH_TEXT = re.compile(
    r'<(span|div) class="arithmatex" data-math-text="(\d+)">.*?</\1>', re.DOTALL)


def formulas_as_text(html_text: str) -> Tuple[str, List[str]]:
    """
    The page with each formula's TeX replaced by its plain-text reading
    (`math_text.py`), for the search index, and the formulas' elements as they were, for
    `formulas_as_tex`.
    """
    originals: List[str] = []

    def read(match):
        originals.append(match.group(0))
        tag = match.group(1)
        text = html.escape(math_text(_formula(match.group(2))[0]), quote=False)
        number = len(originals) - 1
        return f'<{tag} class="arithmatex" data-math-text="{number}">{text}</{tag}>'

    return _ARITHMATEX.sub(read, html_text), originals


def formulas_as_tex(html_text: str, originals: List[str]) -> str:
    """The page of `formulas_as_text` with its formulas' elements as they were."""
    return _SEARCH_TEXT.sub(lambda m: originals[int(m.group(2))], html_text)


# --- mkdocs events ------------------------------------------------------------------------

# Annotated sources are looked for here, relative to the folder of mkdocs.yml
SOURCE_PACKAGES = ['labml_nn_bn']
KATEX_DIST = KATEX_PACKAGE / 'dist'
# What the site hosts of KaTeX, under assets/katex/: its stylesheet and fonts only, since the
# formulas arrive typeset (`typeset_math`); the browser runs no KaTeX script
KATEX_FILES = ['katex.min.css']

# Each generated page's source: its path relative to the root, and its sections
_pages: Dict[str, Tuple[str, AnnotatedSource]] = {}


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def repo_links(config) -> Dict[str, str]:
    """Links derived from `repo_url` in mkdocs.yml, the one place the repository is named."""
    repo = (config.repo_url or '').rstrip('/')
    links = {'repo_url': repo, 'site_url': (config.site_url or '').rstrip('/')}
    match = re.match(r'https://github\.com/([^/]+/[^/]+)$', repo)
    if match:
        links['colab_url'] = f'https://colab.research.google.com/github/{match.group(1)}/blob/main'
    return links


def load_annotated(path: Path, root: Path) -> Optional[AnnotatedSource]:
    """
    The sections of an annotated source; None for a file that is not meant to be annotated.
    A file is meant to be annotated when its module docstring starts with `---` (front
    matter); when Python cannot parse it, when its text opens with such a docstring. Such a
    file that cannot be rendered raises `AnnotationError`, naming it: it is never skipped.
    """
    name = path.relative_to(root).as_posix()
    data = path.read_bytes()
    try:
        text = read_source(data)
    except SourceError as e:
        if looks_annotated(data.decode('utf-8', errors='replace').lstrip('\ufeff')):
            raise AnnotationError(name, e.problem, e.line) from None
        return None
    try:
        tree = parse(text)
    except SourceError as e:
        if looks_annotated(text):
            raise AnnotationError(name, e.problem, e.line) from None
        return None
    docstring = ast.get_docstring(tree, clean=True)
    if not (docstring and _OPENS_FRONT_MATTER.match(docstring)):
        return None
    try:
        return split_sections(text)
    except SourceError as e:
        raise AnnotationError(name, e.problem, e.line) from None


def annotated_sources(root: Path) -> List[Path]:
    """Python files under the source packages whose module docstring has front matter."""
    return [path for path, _ in load_annotated_sources(root)]


def load_annotated_sources(root: Path) -> List[Tuple[Path, AnnotatedSource]]:
    found = []
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob('*.py')):
            annotated = load_annotated(path, root)
            if annotated is not None:
                found.append((path, annotated))
    return found


def on_config(config):
    # The same math syntax on every page: `$$...$$` works inside paragraphs too
    config.markdown_extensions.append(DisplayMathExtension())
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    root = _root(config)
    _pages.clear()
    for path, annotated in load_annotated_sources(root):
        rel = path.relative_to(root).as_posix()
        src_uri = rel[:-len('.py')] + '.md'
        # `annotated.html` (docs/overrides) shows the page's table of contents in the left
        # sidebar, under the page's entry in the navigation, leaving the width to the code
        front = yaml.safe_dump({'title': annotated.title or path.stem,
                                'description': annotated.summary or '',
                                'template': 'annotated.html'}, sort_keys=False)
        files.append(File.generated(config, src_uri, content=f'---\n{front}---\n'))
        _pages[src_uri] = (rel, annotated)

    # KaTeX's stylesheet and fonts, copied from the npm package into the site: no request
    # leaves the site's host
    dist = root / KATEX_DIST
    if not (dist / 'katex.min.css').exists():
        raise MathError(f'KaTeX not found at {dist}: {INSTALL_HINT}')
    for name in KATEX_FILES + [f'fonts/{p.name}' for p in sorted((dist / 'fonts').glob('*.woff2'))]:
        files.append(File(name, src_dir=str(dist), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls, dest_uri=f'assets/katex/{name}'))
    return files


# The markers around measured numbers (`labml_nn_bn/measured.py`) are for the tools that keep the
# numbers current, not for the reader. Left in, a marker that starts a line would begin an HTML
# block and split its paragraph in two, so they are removed before the Markdown is rendered.
_MEASURED_MARKER = re.compile(r'<!-- (?:measured [\w-]+:[\w.-]+(?: \S+)?|/measured) -->')


def strip_measured_markers(text: str) -> str:
    return _MEASURED_MARKER.sub('', text)


def on_page_markdown(markdown_text, page, config, files):
    # `{{ repo_url }}`, `{{ colab_url }}` and `{{ site_url }}` in hand-written pages
    for key, value in repo_links(config).items():
        markdown_text = markdown_text.replace('{{ ' + key + ' }}', value)
    return strip_measured_markers(markdown_text)


_MD_LINK = re.compile(r'href="(?![a-z][a-z0-9+.-]*:|/|#)([^"#]+\.md)(#[^"]*)?"')
_IMG = re.compile(r'<img\b[^>]*>')
_SRC = re.compile(r'\ssrc="([^"]*)"')
_EXTERNAL = re.compile(r'^([a-z][a-z0-9+.-]*:|//)', re.IGNORECASE)


def _source_line(lines: List[str], needle: str) -> Optional[int]:
    """The first line of the source that contains `needle`, to point an error at it."""
    return next((n for n, line in enumerate(lines, start=1) if needle in line), None)


def resolve_urls(html_text: str, page, files, source: str, lines: List[str]) -> str:
    """
    Links and images in the notes are written as in Markdown pages, relative to the page's
    source path: from `labml_nn_bn/batch_norm.py` (page `labml_nn_bn/batch_norm.md`),
    `other.md#anchor` and `../figures/x.svg` (that is, docs/figures/x.svg). mkdocs resolves
    those only in the Markdown it renders itself, so they are resolved here the same way,
    into URLs relative to the page's URL (right with or without `use_directory_urls`).
    A link to no page, an image that does not exist or one from another host stops the
    build with an `AnnotationError` naming the source, its line and the path.
    """
    from mkdocs.utils import get_relative_url

    base = page.file.src_uri.rsplit('/', 1)[0] + '/' if '/' in page.file.src_uri else ''

    def target(path: str, what: str):
        normalised = _normalise_path(base + urllib.parse.unquote(path))
        found = files.get_file_from_path(normalised) if normalised is not None else None
        if found is None:
            where = f'docs/{normalised}' if normalised is not None else 'outside docs/'
            raise AnnotationError(source, f'{what} {path!r} not found (looked for {where})',
                                  _source_line(lines, path))
        return found

    def replace_link(match):
        page_file = target(html.unescape(match.group(1)), 'link to')
        return f'href="{get_relative_url(page_file.url, page.url)}{match.group(2) or ""}"'

    def replace_image(match):
        tag = match.group(0)
        found = _SRC.search(tag)
        src = html.unescape(found.group(1)) if found else 'data:'
        if src.startswith('data:'):
            return tag
        if _EXTERNAL.match(src) or src.startswith('/'):
            raise AnnotationError(source, f'image {src!r}: images must be files of the site, '
                                  f'written relative to the source (like ../figures/x.svg)',
                                  _source_line(lines, src))
        url = html.escape(get_relative_url(target(src, 'image').url, page.url))
        img = tag[:found.start(1)] + url + tag[found.end(1):]
        # A figure is scaled down to the notes column; a click opens it at full size (unless
        # the image is a link already)
        before = match.string[:match.start()]
        if before.rfind('<a ') > before.rfind('</a>'):
            return img
        return f'<a class="annotated-figure" href="{url}" title="Open the figure at full size">{img}</a>'

    return _IMG.sub(replace_image, _MD_LINK.sub(replace_link, html_text))


def _normalise_path(path: str) -> Optional[str]:
    """`a/./b/../c` as `a/c`; None for a path that leaves the docs folder."""
    parts = []
    for part in path.split('/'):
        if part == '..':
            if not parts:
                return None
            parts.pop()
        elif part not in ('', '.'):
            parts.append(part)
    return '/'.join(parts)


def _typeset_titles(toc, tokens: List[dict]):
    """
    Headings with math or code keep their markup in the table of contents (Material shows
    an entry's `typeset.title` as HTML), so that their formulas are typeset there too
    (`on_post_page`).
    """
    by_id = {t['id']: t['html'] for t in tokens}

    def visit(links):
        for link in links:
            markup = by_id.get(link.id, '')
            if ('arithmatex' in markup or '<code' in markup) and '<a' not in markup:
                link.typeset = {'title': markup}
            visit(link.children)

    visit(toc)


def on_page_content(html_text, page, config, files):
    from mkdocs.structure.toc import get_toc

    if page.file.src_uri not in _pages:
        return html_text
    rel, annotated = _pages[page.file.src_uri]
    md = markdown.Markdown(extensions=config.markdown_extensions, extension_configs=config.mdx_configs)
    repo = repo_links(config)['repo_url']
    source_url = f'{repo}/blob/main/{rel}' if repo else None
    rendered = render_sections(annotated, md, source_url)
    # The table of contents of the page is that of its notes (mkdocs read an empty page)
    page.toc = get_toc(rendered.toc)
    _typeset_titles(page.toc, _flat_toc(rendered.toc))
    return resolve_urls(rendered.html, page, files, rel, annotated.lines)


# One KaTeX process per build, started by the first page with math; what it typeset is kept
# for the next build of the same process (`mkdocs serve`)
_math: Dict[str, MathRenderer] = {}
_typeset_cache: Dict[Tuple[str, bool], dict] = {}


def _where(page, config) -> Callable[[str], str]:
    """Names a formula's page for an error: its source file, and the line when found."""
    def where(tex: str) -> str:
        needle = next((line.strip() for line in tex.splitlines() if line.strip()), tex)
        if page.file.src_uri in _pages:
            rel, annotated = _pages[page.file.src_uri]
            line = _source_line(annotated.lines, needle)
            return f'{rel}: line {line}' if line else rel
        name = f'{Path(config.docs_dir).name}/{page.file.src_uri}'
        try:
            text = Path(page.file.abs_src_path).read_text(encoding='utf-8')
        except (OSError, TypeError):
            return name
        line = _source_line(split_lines(text), needle)
        return f'{name}: line {line}' if line else name
    return where


# A page's formulas while the search plugin reads it, by page
_formulas_for_search: Dict[str, List[str]] = {}


@event_priority(50)
def _search_reads_formulas_as_text(context, page, config, nav):
    # Material's search plugin indexes `page.content` in its `on_page_context` (priority
    # 0), long before the math is typeset (`on_post_page`): without this the index, and
    # the snippets of search results, would hold each formula's TeX (`\mu_\mathcal{B}`)
    if not page.content:
        return context
    page.content, originals = formulas_as_text(page.content)
    _formulas_for_search[page.file.src_uri] = originals
    return context


@event_priority(-50)
def _page_shows_formulas_typeset(context, page, config, nav):
    # Right after the search plugin: the page itself gets its TeX back, to be typeset
    originals = _formulas_for_search.pop(page.file.src_uri, [])
    page.content = formulas_as_tex(page.content, originals)
    return context


on_page_context = CombinedEvent(_search_reads_formulas_as_text,
                                _page_shows_formulas_typeset)


# On a side-by-side page the table of contents' mark of where the reader is comes from
# docs/assets/javascripts/toc-highlight.js, not from Material: Material measures where every
# heading is while the page loads, which makes the browser lay out each section it is
# letting skip until later (docs/assets/javascripts/lazy-layout.js): a third of the BatchNorm
# page's work before its load event. Without the attribute, Material leaves the list alone.
MATERIAL_TOC = 'data-md-component="toc"'
OWN_TOC = 'data-annotated-toc'


def on_post_page(output, page, config):
    if page.meta.get('template') == 'annotated.html':
        output = output.replace(MATERIAL_TOC, OWN_TOC)
    # Every formula of the page, with those in the navigation, typeset by KaTeX here
    if 'class="arithmatex"' not in output:
        return output
    if 'renderer' not in _math:
        _math['renderer'] = MathRenderer(_root(config) / KATEX_PACKAGE, _typeset_cache)
    return typeset_math(output, _math['renderer'], _where(page, config))


def _close_math():
    renderer = _math.pop('renderer', None)
    if renderer is not None:
        renderer.close()


def on_post_build(config):
    _close_math()


def on_build_error(error):
    _close_math()
