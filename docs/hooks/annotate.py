"""
An mkdocs hook that renders annotated Python sources side by side: the explanation
(docstrings and whole-line `#` comments, in Markdown + LaTeX) on the left, the code it explains
on the right, section by section.

The work is split in three:

* `split_sections(source)`, a pure function from source text to `Section`s;
* `render_sections(...)`, which turns sections into HTML;
* the mkdocs events at the bottom, which find the annotated sources, add a page for each,
  and host KaTeX.

A source file is annotated when its module docstring starts with a front matter block:

    '''
    ---
    title: Batch Normalization
    summary: One sentence for the page's description.
    ---
    # Markdown from here on
    '''
"""
import ast
import html
import inspect
import io
import re
import tokenize
import xml.etree.ElementTree as etree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import markdown
import yaml
from markdown.inlinepatterns import InlineProcessor
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


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


class AnnotatedSource:
    """What `split_sections` returns: the front matter and the sections."""

    def __init__(self, meta: Dict, sections: List[Section]):
        self.meta = meta
        self.sections = sections

    @property
    def title(self) -> Optional[str]:
        return self.meta.get('title')

    @property
    def summary(self) -> Optional[str]:
        summary = self.meta.get('summary')
        return ' '.join(summary.split()) if summary else None


_FRONT_MATTER = re.compile(r'\A---[ \t]*\n(.*?\n)---[ \t]*(?:\n|\Z)', re.DOTALL)


def split_front_matter(text: str) -> Tuple[Dict, str]:
    """`---`-delimited YAML at the start of a docstring, and the Markdown after it."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta = yaml.safe_load(match.group(1)) or {}
    if not isinstance(meta, dict):
        raise ValueError(f'front matter must be a mapping, got {type(meta).__name__}')
    return meta, text[match.end():]


def has_front_matter(source: str) -> bool:
    """Whether a Python source is annotated (its module docstring starts with front matter)."""
    try:
        docstring = ast.get_docstring(ast.parse(source), clean=True)
    except SyntaxError:
        return False
    return bool(docstring and _FRONT_MATTER.match(docstring))


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
        if lines[first - 1][:node.col_offset].strip():
            continue
        after = lines[last - 1][node.end_col_offset:].strip()
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


def split_sections(source: str) -> AnnotatedSource:
    """
    Splits Python source text into sections of notes and code.

    Every line of the source ends up in exactly one place: a note line in the notes of a
    section, any other line in the code of a section, in source order. Blank lines at the
    edges of a code block are dropped; blank lines inside it are kept.

    * Whole-line `#` comments are notes. A run of them starts a new section when the current
      one already has code. Comments after code on the same line stay code.
    * The module docstring is notes; its front matter becomes `meta`.
    * A class or function docstring, or a comment opening a body, is notes for the section
      that shows the definition's header, so the explanation sits beside the signature and
      body it describes.
    """
    lines = source.splitlines()
    tree = ast.parse(source)
    comments = _comment_lines(source, lines)
    anchors = _anchors(tree)

    # Docstrings, by their first line; their other lines are skipped
    docstrings = {}
    skip = set()
    meta = {}
    for first, last, text, is_module in _docstrings(tree, lines):
        if is_module:
            meta, text = split_front_matter(text)
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
            previous_was_comment = False
        elif number in comments:
            add_notes(section_for_notes(number), comments[number], new_paragraph=not previous_was_comment)
            previous_was_comment = True
        else:
            # Code, or a blank line; a blank line before any code in a section is dropped
            if line.strip() or sections[-1].code:
                sections[-1].code.append((number, line))
            previous_was_comment = False

    for section in sections:
        # Drop blank lines at the edges of each code block
        while section.code and not section.code[0][1].strip():
            section.code.pop(0)
        while section.code and not section.code[-1][1].strip():
            section.code.pop()
        if section.code and section.code[0][0] in anchors:
            section.anchor = anchors[section.code[0][0]]
    sections = [s for s in sections if s.notes.strip() or s.code]
    return AnnotatedSource(meta, sections)


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


def highlight_lines(source: str) -> List[str]:
    """The source highlighted by Pygments, one balanced HTML fragment per line."""
    formatter = HtmlFormatter(nowrap=True)
    rendered = highlight(source, PythonLexer(stripnl=False, ensurenl=True), formatter)
    result = rendered.split('\n')
    # `highlight` ends with a newline: one more empty piece than lines
    return result[:len(source.splitlines())]


def render_sections(annotated: AnnotatedSource, source: str, md: markdown.Markdown,
                    source_url: Optional[str] = None) -> str:
    """The side-by-side HTML of a page: one `.annotated-section` per section."""
    highlighted = highlight_lines(source)
    used = set()
    out = ['<div class="annotated">']
    if source_url:
        out.append(f'<p class="annotated-source"><a href="{html.escape(source_url)}">'
                   f'View this file on GitHub</a></p>')
    for i, section in enumerate(annotated.sections):
        anchor = section.anchor or f'section-{i}'
        while anchor in used:
            anchor += '-'
        used.add(anchor)
        md.reset()
        notes = md.convert(section.notes) if section.notes.strip() else ''
        code = '\n'.join(
            f'<span class="annotated-line" id="L{n}">'
            f'<a class="annotated-lineno" href="#L{n}" data-lineno="{n}" aria-label="line {n}"></a>'
            f'{highlighted[n - 1]}</span>'
            for n, _ in section.code)
        out.append(
            f'<div class="annotated-section" id="{anchor}">'
            f'<div class="annotated-notes">'
            f'<a class="annotated-anchor" href="#{anchor}" title="Link to this section">#</a>'
            f'{notes}</div>'
            f'<div class="annotated-code">'
            + (f'<div class="highlight"><pre><code>{code}</code></pre></div>' if code else '')
            + '</div></div>')
    out.append('</div>')
    return '\n'.join(out)


# --- mkdocs events ------------------------------------------------------------------------

# Annotated sources are looked for here, relative to the folder of mkdocs.yml
SOURCE_PACKAGES = ['labml_nn_bn']
KATEX_DIST = Path('node_modules') / 'katex' / 'dist'
# What the site hosts of KaTeX, under assets/katex/
KATEX_FILES = ['katex.min.js', 'katex.min.css']

# Each generated page's source: its path, its text and its sections
_pages: Dict[str, Tuple[Path, str, AnnotatedSource]] = {}


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


def annotated_sources(root: Path) -> List[Path]:
    """Python files under the source packages whose module docstring has front matter."""
    found = []
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob('*.py')):
            if has_front_matter(path.read_text(encoding='utf-8')):
                found.append(path)
    return found


def on_config(config):
    # The same math syntax on every page: `$$...$$` works inside paragraphs too
    config.markdown_extensions.append(DisplayMathExtension())
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    root = _root(config)
    _pages.clear()
    for path in annotated_sources(root):
        source = path.read_text(encoding='utf-8')
        annotated = split_sections(source)
        rel = path.relative_to(root).as_posix()
        src_uri = rel[:-len('.py')] + '.md'
        front = yaml.safe_dump({'title': annotated.title or path.stem,
                                'description': annotated.summary or '',
                                'hide': ['toc']}, sort_keys=False)
        files.append(File.generated(config, src_uri, content=f'---\n{front}---\n'))
        _pages[src_uri] = (path, source, annotated)

    # KaTeX, copied from the npm package into the site: no request leaves the site's host
    dist = root / KATEX_DIST
    if not (dist / 'katex.min.js').exists():
        raise FileNotFoundError(f'KaTeX not found at {dist}: run `make install` (npm ci) first')
    for name in KATEX_FILES + [f'fonts/{p.name}' for p in sorted((dist / 'fonts').glob('*.woff2'))]:
        files.append(File(name, src_dir=str(dist), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls, dest_uri=f'assets/katex/{name}'))
    return files


def on_page_markdown(markdown_text, page, config, files):
    # `{{ repo_url }}`, `{{ colab_url }}` and `{{ site_url }}` in hand-written pages
    for key, value in repo_links(config).items():
        markdown_text = markdown_text.replace('{{ ' + key + ' }}', value)
    return markdown_text


_MD_LINK = re.compile(r'href="(?![a-z][a-z0-9+.-]*:|/|#)([^"#]+\.md)(#[^"]*)?"')


def resolve_md_links(html_text: str, page, files) -> str:
    """
    Links from notes to other pages are written as in Markdown pages, `batch_norm.md#anchor`,
    relative to the page's source. mkdocs resolves those only in the Markdown it renders itself,
    so the notes' links are resolved here the same way.
    """
    from mkdocs.utils import get_relative_url

    base = page.file.src_uri.rsplit('/', 1)[0] + '/' if '/' in page.file.src_uri else ''

    def replace(match):
        target = files.get_file_from_path(_normalise_path(base + match.group(1)))
        if target is None:
            raise ValueError(f'{page.file.src_uri}: link to {match.group(1)}, which is not a page')
        return f'href="{get_relative_url(target.url, page.url)}{match.group(2) or ""}"'

    return _MD_LINK.sub(replace, html_text)


def _normalise_path(path: str) -> str:
    parts = []
    for part in path.split('/'):
        if part == '..':
            parts.pop()
        elif part not in ('', '.'):
            parts.append(part)
    return '/'.join(parts)


def on_page_content(html_text, page, config, files):
    if page.file.src_uri not in _pages:
        return html_text
    path, source, annotated = _pages[page.file.src_uri]
    md = markdown.Markdown(extensions=config.markdown_extensions, extension_configs=config.mdx_configs)
    rel = path.relative_to(_root(config)).as_posix()
    repo = repo_links(config)['repo_url']
    source_url = f'{repo}/blob/main/{rel}' if repo else None
    rendered = render_sections(annotated, source, md, source_url)
    return resolve_md_links(rendered, page, files)
