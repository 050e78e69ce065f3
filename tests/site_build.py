"""
Helpers for the site tests: building the site (strict mode), serving it on 127.0.0.1, and
reading the side-by-side pages. The session fixtures that use them are in `conftest.py`.
"""
import functools
import http.server
import os
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MKDOCS = [sys.executable, '-m', 'mkdocs']


def build_site(site_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING='1')
    return subprocess.run(MKDOCS + ['build', '--strict', '--site-dir', str(site_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


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
    """Collects the text of each code line and the columns of each section of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines = []
        self.sections = []
        self._line = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get('class') or '').split()
        if self._line is not None:
            self._depth += 1
        if 'annotated-section' in classes:
            self.sections.append({'notes': 0, 'code': 0, 'id': dict(attrs).get('id')})
        elif 'annotated-notes' in classes:
            self.sections[-1]['notes'] += 1
        elif 'annotated-code' in classes:
            self.sections[-1]['code'] += 1
        elif 'annotated-line' in classes:
            self._line = []
            self._depth = 0

    def handle_endtag(self, tag):
        if self._line is None:
            return
        if self._depth == 0:
            self.lines.append(''.join(self._line))
            self._line = None
        else:
            self._depth -= 1

    def handle_data(self, data):
        if self._line is not None:
            self._line.append(data)


def parse_annotated_page(path: Path) -> AnnotatedPageParser:
    parser = AnnotatedPageParser()
    parser.feed(path.read_text(encoding='utf-8'))
    return parser
