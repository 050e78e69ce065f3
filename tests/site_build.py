"""
Helpers for the site tests: building the site (strict mode), serving it on 127.0.0.1, and
reading the side-by-side pages; and a small fixture project, built with the real hook, whose
one annotated source holds every case the renderer must handle (an image in the notes,
characters that `str.splitlines()` would take for line breaks, a docstring beside its
definition, headings with the same name in two sections). The session fixtures that use
them are in `conftest.py`.
"""
import functools
import http.server
import os
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

MKDOCS = [sys.executable, '-m', 'mkdocs']


def build_site(site_dir: Path, project: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING='1')
    return subprocess.run(MKDOCS + ['build', '--strict', '--site-dir', str(site_dir)],
                          cwd=project, env=env, capture_output=True, text=True, timeout=180)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site_dir: Path):
    """Serves `site_dir` on a free port of 127.0.0.1; returns the server and its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f'http://127.0.0.1:{server.server_address[1]}/'


class AnnotatedPageParser(HTMLParser):
    """
    Collects, from a side-by-side page, the text of each code line (a character shown as an
    escape, `.annotated-char`, is read back as the character itself), the number each line
    is shown with, the columns and classes of each section, and every `<img>`.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines = []
        self.numbers = []
        self.sections = []
        self.images = []
        self.gaps = []
        self._line = None
        self._stack = []  # the open elements inside the current line: is each a shown char?

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get('class') or '').split()
        if tag == 'img':
            self.images.append(attrs)
        if self._line is not None:
            if tag in ('img', 'br', 'wbr'):
                return  # void elements have no end tag
            char = attrs.get('data-char') if 'annotated-char' in classes else None
            if char:
                self._line.append(chr(int(char, 16)))
            self._stack.append(bool(char))
            return
        if 'annotated-section' in classes:
            self.sections.append({'notes': 0, 'code': 0, 'id': attrs.get('id'), 'classes': classes})
        elif 'annotated-notes' in classes:
            self.sections[-1]['notes'] += 1
        elif 'annotated-code' in classes:
            self.sections[-1]['code'] += 1
        elif 'annotated-gap' in classes:
            self.gaps.append(attrs.get('title'))
        elif 'annotated-line' in classes:
            self._line = []
            self.numbers.append(int(attrs['id'][1:]))

    def handle_endtag(self, tag):
        if self._line is None:
            return
        if self._stack:
            self._stack.pop()
        else:
            self.lines.append(''.join(self._line))
            self._line = None

    def handle_data(self, data):
        if self._line is not None and not any(self._stack):
            self._line.append(data)


def parse_annotated_page(path: Path) -> AnnotatedPageParser:
    parser = AnnotatedPageParser()
    parser.feed(path.read_text(encoding='utf-8'))
    return parser


# --- the fixture project ------------------------------------------------------------------

# Characters that `str.splitlines()` breaks at and Python's tokenizer does not
SPLITLINES_ONLY = ['\f', '\v', '\x1c', '\x1d', '\x1e', '\x85', '\u2028', '\u2029']

# A 40×20 SVG: an image in the notes must load with this natural size
DOT_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" viewBox="0 0 40 20">'
           '<rect width="40" height="20" fill="#fff"/><circle cx="20" cy="10" r="8" fill="#3f51b5"/></svg>\n')


def fixture_source() -> str:
    """
    An annotated source with each hard case. Its code lines that carry special characters
    are `S<k> = ...` lines, so that a test can find them.
    """
    strings = '\n'.join(f'S{k} = "a{c}b"  # c{c}d' for k, c in enumerate(SPLITLINES_ONLY))
    comments = '\n'.join(f'# A note with {c} in it' for c in SPLITLINES_ONLY)
    return f'''"""
---
title: Fixture
summary: Every case the renderer handles, on one page.
---

# Fixture

The introduction has no code beside it, so it spans the page.

![A blue dot](../../figures/dot.svg)

## Details

An introduction heading, with the same name as a heading further down.
"""
import math

# ## Strings
#
# Each line below holds a character in a string and in a comment.
{strings}

# ## Comments
#
{comments}
AFTER_COMMENTS = 1


# ## Details
#
# The same heading name as in the introduction: its id must differ.
def area(radius):
    """
    The docstring sits beside the header; the code's line numbers jump over it.
    It holds the characters too: {''.join(SPLITLINES_ONLY)}.

    ![The dot again](../../figures/dot.svg)
    """
    squared = radius ** 2

    return math.pi * squared
'''


def write_fixture_project(project: Path, source: str = None, use_directory_urls: bool = True,
                          extra_files=None) -> Path:
    """
    A tiny mkdocs project that uses this repository's hook, overrides and KaTeX, with
    `labml_nn_bn/demo/fixture.py` as its annotated source (`source`, bytes or text) and
    docs/figures/dot.svg; `extra_files` maps more paths to contents.
    """
    (project / 'docs' / 'figures').mkdir(parents=True, exist_ok=True)
    (project / 'docs' / 'index.md').write_text('# Home\n\nThe fixture site.\n')
    (project / 'docs' / 'figures' / 'dot.svg').write_text(DOT_SVG)
    package = project / 'labml_nn_bn' / 'demo'
    package.mkdir(parents=True, exist_ok=True)
    source = fixture_source() if source is None else source
    data = source if isinstance(source, bytes) else source.encode('utf-8')
    (package / 'fixture.py').write_bytes(data)
    for path, content in (extra_files or {}).items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_bytes(content if isinstance(content, bytes) else content.encode('utf-8'))
    if not (project / 'node_modules').exists():
        (project / 'node_modules').symlink_to(ROOT / 'node_modules')
    main = yaml.safe_load((ROOT / 'mkdocs.yml').read_text())
    config = {
        'site_name': 'Fixture',
        'use_directory_urls': use_directory_urls,
        'theme': dict(main['theme'], custom_dir=str(ROOT / 'docs' / 'overrides')),
        'hooks': [str(ROOT / 'docs' / 'hooks' / 'annotate.py')],
        'markdown_extensions': main['markdown_extensions'],
        # The site's own stylesheets, so that the browser sees the real layout (the math
        # arrives typeset: no script), and the script that lays out a long page's far
        # sections after it has loaded (the overrides let the browser skip them until then)
        'extra_css': ['assets/katex/katex.min.css', 'assets/annotated.css'],
        'extra_javascript': ['assets/lazy-layout.js'],
    }
    assets = project / 'docs' / 'assets'
    assets.mkdir(exist_ok=True)
    (assets / 'annotated.css').write_bytes((ROOT / 'docs/assets/stylesheets/annotated.css').read_bytes())
    (assets / 'lazy-layout.js').write_bytes((ROOT / 'docs/assets/javascripts/lazy-layout.js').read_bytes())
    (project / 'mkdocs.yml').write_text(yaml.safe_dump(config, sort_keys=False))
    return project
