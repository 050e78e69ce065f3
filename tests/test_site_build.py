"""
Tests of the built site: strict build, complete side-by-side pages, nothing from other hosts.
"""
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, load_annotate_hook
from site_build import (DOT_SVG, MKDOCS, SPLITLINES_ONLY, AnnotatedPageParser, build_site, parse_annotated_page,
                        write_fixture_project)

annotate = load_annotate_hook()


def annotated_pages(site_dir):
    for path in annotate.annotated_sources(ROOT):
        rel = path.relative_to(ROOT).with_suffix('')
        yield path, site_dir / rel / 'index.html'


def test_strict_build_has_no_warnings(built_site):
    _, log = built_site
    assert 'WARNING' not in log, log
    assert 'Documentation built' in log


def test_every_annotated_source_has_a_page_with_every_code_line_once(built_site):
    site_dir, _ = built_site
    pages = list(annotated_pages(site_dir))
    assert pages, 'no annotated source found'
    for source_path, page in pages:
        assert page.exists(), page
        source = source_path.read_text()
        expected = [t for s in annotate.split_sections(source).sections for _, t in s.code]
        parsed = parse_annotated_page(page)
        assert parsed.lines == expected, source_path
        # Every non-blank code line of the file, and only once (the module is not a code dump:
        # comments and docstrings are in the notes column)
        counts = Counter(parsed.lines)
        for line in set(expected):
            if line.strip():
                assert counts[line] == expected.count(line), line


def test_each_section_has_a_notes_and_a_code_column_and_an_anchor(built_site):
    site_dir, _ = built_site
    for _, page in annotated_pages(site_dir):
        parsed = parse_annotated_page(page)
        assert len(parsed.sections) > 10
        # The introduction is notes only, and spans the page
        assert 'annotated-section--notes-only' in parsed.sections[0]['classes'], page
        for section in parsed.sections:
            notes_only = 'annotated-section--notes-only' in section['classes']
            assert section['notes'] == 1 and section['code'] == (0 if notes_only else 1), section
            assert section['id']
        ids = [s['id'] for s in parsed.sections]
        assert len(ids) == len(set(ids))
        html = page.read_text()
        for anchor in ids:
            assert f'href="#{anchor}"' in html


def test_batch_norm_page_title_summary_and_source_link(built_site):
    site_dir, _ = built_site
    html = (site_dir / 'labml_nn_bn' / 'batch_norm' / 'index.html').read_text()
    assert '<title>Batch Normalization - Batch Normalization, annotated</title>' in html
    assert 'An annotated PyTorch implementation of Batch Normalization' in html
    config = yaml.safe_load((ROOT / 'mkdocs.yml').read_text())
    repo = config['repo_url'].rstrip('/')
    assert f'href="{repo}/blob/main/labml_nn_bn/batch_norm.py"' in html
    for anchor in ['batchnorm', 'batchnormfunction-backward', 'batch_statistics']:
        assert f'id="{anchor}"' in html


class _ResourceParser(HTMLParser):
    """Every URL a page loads by itself: scripts, styles, fonts, images, icons, frames."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ('script', 'img', 'iframe', 'source', 'video', 'audio', 'embed') and attrs.get('src'):
            self.urls.append(attrs['src'])
        if tag == 'link' and attrs.get('href') and attrs.get('rel') != 'canonical':
            self.urls.append(attrs['href'])
        if tag == 'img' and attrs.get('srcset'):
            self.urls.extend(u.split()[0] for u in attrs['srcset'].split(','))


def _is_external(url):
    return bool(re.match(r'^(https?:)?//', url.strip()))


def test_no_resource_is_loaded_from_another_host(built_site):
    site_dir, _ = built_site
    pages = list(site_dir.rglob('*.html'))
    assert len(pages) >= 3
    for page in pages:
        parser = _ResourceParser()
        parser.feed(page.read_text(encoding='utf-8'))
        external = [u for u in parser.urls if _is_external(u)]
        assert not external, f'{page}: {external}'
    for css in site_dir.rglob('*.css'):
        urls = re.findall(r'url\(\s*[\'"]?([^\'")]+)', css.read_text(encoding='utf-8'))
        external = [u for u in urls if _is_external(u)]
        assert not external, f'{css}: {external}'
        assert '@import' not in css.read_text(encoding='utf-8') or not re.search(
            r'@import\s+(url\()?[\'"]?(https?:)?//', css.read_text(encoding='utf-8'))


def test_katex_is_hosted_by_the_site(built_site):
    site_dir, _ = built_site
    # The formulas are typeset when the site is built: the browser gets KaTeX's stylesheet and
    # fonts, never its script
    assert not (site_dir / 'assets' / 'katex' / 'katex.min.js').exists()
    css = (site_dir / 'assets' / 'katex' / 'katex.min.css').read_text()
    assert len(css) > 10_000
    # Every woff2 font the stylesheet names is there
    for font in set(re.findall(r'url\((fonts/[^)]+\.woff2)\)', css)):
        assert (site_dir / 'assets' / 'katex' / font).exists(), font


def test_home_page_links_the_paper_the_pages_and_the_source(built_site):
    site_dir, _ = built_site
    html = (site_dir / 'index.html').read_text()
    assert 'https://arxiv.org/abs/1502.03167' in html
    assert 'Sergey Ioffe' in html and 'Christian Szegedy' in html
    assert 'href="labml_nn_bn/batch_norm/"' in html
    assert '{{' not in html, 'a placeholder was not replaced'
    config = yaml.safe_load((ROOT / 'mkdocs.yml').read_text())
    assert f'href="{config["repo_url"]}"' in html


def test_site_tooling_is_not_published(built_site):
    site_dir, _ = built_site
    assert not (site_dir / 'hooks').exists()
    assert not (site_dir / 'overrides').exists()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_mkdocs_serve_serves_the_site_on_localhost(tmp_path):
    # What `make site` runs, on a free port
    port = _free_port()
    env = dict(os.environ, NO_MKDOCS_2_WARNING='1')
    proc = subprocess.Popen(MKDOCS + ['serve', '--strict', '--dev-addr', f'127.0.0.1:{port}'],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 90
        body = None
        while time.time() < deadline:
            try:
                # The root redirects to the site's base path (the path of site_url)
                with urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=5) as response:
                    base = response.geturl()
                    assert 'Batch Normalization, annotated' in response.read().decode()
                with urllib.request.urlopen(base + 'labml_nn_bn/batch_norm/', timeout=5) as response:
                    body = response.read().decode()
                    break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        assert body is not None, proc.stdout.read().decode() if proc.poll() is not None else 'timeout'
        assert 'annotated-section' in body
        # Live reload is on
        assert 'livereload' in body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_publishing_workflow_builds_and_deploys_with_the_docs_requirements():
    workflow = yaml.safe_load((ROOT / '.github' / 'workflows' / 'pages.yml').read_text())
    steps = [s.get('run', '') for s in workflow['jobs']['deploy']['steps']]
    text = '\n'.join(steps)
    assert 'pip install -r requirements/docs.txt' in text
    assert 'npm ci' in text
    assert 'mkdocs build --strict' in text and 'ghp-import' in text  # see test_site_offline.py
    assert workflow['permissions'] == {'contents': 'write'}
    # `on:` is parsed by YAML 1.1 as True
    trigger = workflow.get('on', workflow.get(True))
    assert 'main' in trigger['push']['branches']


def test_urls_are_named_once_and_agree():
    config = yaml.safe_load((ROOT / 'mkdocs.yml').read_text())
    repo = config['repo_url']
    pyproject = (ROOT / 'pyproject.toml').read_text()
    assert f'Repository = "{repo}"' in pyproject
    assert f'Homepage = "{config["site_url"]}"' in pyproject
    assert repo in (ROOT / 'README.md').read_text()


class _LinkParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ('href', 'src') and value:
                self.links.append(value)


def test_no_broken_internal_link(built_site):
    site_dir, _ = built_site
    # Absolute links (the 404 page's) start with the path of site_url
    base_path = '/' + yaml.safe_load((ROOT / 'mkdocs.yml').read_text())['site_url'].split('/', 3)[3]
    checked = 0
    for page in site_dir.rglob('*.html'):
        parser = _LinkParser()
        parser.feed(page.read_text(encoding='utf-8'))
        for link in parser.links:
            if re.match(r'^([a-z][a-z0-9+.-]*:|//|#)', link):
                continue
            path = link.split('#')[0].split('?')[0]
            if path.startswith('/'):
                assert path.startswith(base_path), f'{page}: {link} is outside the site'
                target = site_dir / path[len(base_path):]
            else:
                target = (page.parent / path).resolve()
            if target.is_dir():
                target = target / 'index.html'
            assert target.exists(), f'{page.relative_to(site_dir)}: broken link {link}'
            checked += 1
    assert checked > 50


def test_links_between_annotated_pages_are_resolved(built_site):
    site_dir, _ = built_site
    html = (site_dir / 'labml_nn_bn' / 'experiments' / 'mnist' / 'index.html').read_text()
    notes = html.split('class="annotated"', 1)[1]
    # `../batch_norm.md` from labml_nn_bn/experiments/mnist.py, and `trainer.md` beside it
    assert 'href="../../batch_norm/"' in notes
    assert 'href="../trainer/"' in notes
    assert '.md"' not in notes


# --- the table of contents (issue 12) ---------------------------------------------------

class _TocParser(HTMLParser):
    """The links of the page's table of contents, wherever Material put it."""

    def __init__(self):
        super().__init__()
        self.links, self.ids, self._depth = [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get('id'):
            self.ids.append(attrs['id'])
        if tag == 'nav' and 'md-nav--secondary' in (attrs.get('class') or ''):
            self._depth = 1
        elif tag == 'nav' and self._depth:
            self._depth += 1
        elif tag == 'a' and self._depth and (attrs.get('href') or '').startswith('#'):
            self.links.append(attrs['href'][1:])

    def handle_endtag(self, tag):
        if tag == 'nav' and self._depth:
            self._depth -= 1


def test_every_annotated_page_has_a_table_of_contents_in_the_left_sidebar(built_site):
    site_dir, _ = built_site
    for _, page in annotated_pages(site_dir):
        html = page.read_text(encoding='utf-8')
        parser = _TocParser()
        parser.feed(html)
        assert len(parser.links) >= 3, page
        # Every entry leads to a heading of the page, and no id is used twice
        assert set(parser.links) <= set(parser.ids), page
        assert len(parser.ids) == len(set(parser.ids)), page
        # In the primary sidebar (navigation), not in a second one that takes the code's width
        assert 'md-nav md-nav--primary md-nav--integrated' in html
        assert 'md-sidebar--secondary' not in html


# --- the fixture project: every hard case, built by mkdocs with the real hook ------------

def test_fixture_page_numbers_each_code_line_as_python_does(fixture_site):
    site_dir, project = fixture_site
    source = (project / 'labml_nn_bn' / 'demo' / 'fixture.py').read_text(encoding='utf-8')
    lines = source.split('\n')
    parsed = parse_annotated_page(site_dir / 'labml_nn_bn' / 'demo' / 'fixture' / 'index.html')
    # Each line is shown with its number as the tokenizer counts, with its own text
    for number, text in zip(parsed.numbers, parsed.lines):
        assert lines[number - 1] == text
    for k, char in enumerate(SPLITLINES_ONLY):
        assert f'S{k} = "a{char}b"  # c{char}d' in parsed.lines
    assert 'AFTER_COMMENTS = 1' in parsed.lines
    assert parsed.numbers == sorted(set(parsed.numbers))
    # The docstring of `area` moved to the notes: the jump is marked
    assert any(g.endswith('are shown as notes') for g in parsed.gaps)


def _img_targets(page: Path, site_dir: Path):
    parser = AnnotatedPageParser()
    parser.feed(page.read_text(encoding='utf-8'))
    return [(img['src'], (page.parent / img['src']).resolve()) for img in parser.images]


@pytest.mark.parametrize('use_directory_urls', [True, False])
def test_images_in_notes_are_resolved_like_links(tmp_path, use_directory_urls):
    project = write_fixture_project(tmp_path / 'project', use_directory_urls=use_directory_urls)
    result = build_site(tmp_path / 'site', project)
    assert result.returncode == 0, result.stdout + result.stderr
    page = tmp_path / 'site' / 'labml_nn_bn' / 'demo' / ('fixture/index.html' if use_directory_urls else 'fixture.html')
    images = _img_targets(page, tmp_path / 'site')
    # One in the introduction, one in a docstring; both the site's copy of docs/figures/dot.svg
    assert len(images) == 2
    for src, target in images:
        assert target == (tmp_path / 'site' / 'figures' / 'dot.svg').resolve(), src
        assert target.read_text() == DOT_SVG
    # Each opens at full size on a click
    html = page.read_text(encoding='utf-8')
    assert html.count(f'<a class="annotated-figure" href="{images[0][0]}"') == 2


def _build_error(tmp_path, source, extra_files=None):
    """A failed build of the fixture project: its output, which must name the problem in
    one line and hold no traceback."""
    project = write_fixture_project(tmp_path / 'project', source=source, extra_files=extra_files)
    result = build_site(tmp_path / 'site', project)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert 'Traceback' not in output, output
    return output


@pytest.mark.parametrize('source, message', [
    (b'"""\n---\ntitle: T\n---\n"""\nx = "\xff"\n',
     'labml_nn_bn/demo/fixture.py: line 6: byte ff is not valid utf-8'),
    ('"""\n---\ntitle: [unclosed\n---\n"""\n',
     'labml_nn_bn/demo/fixture.py: line 4: invalid front matter YAML'),
    ('"""\n---\ntitle: T\n---\n"""\ndef f(:\n    pass\n',
     'labml_nn_bn/demo/fixture.py: line 6: invalid syntax'),
    ('"""\n---\ntitle: T\n---\n\n![x](../../figures/nothing.svg)\n"""\n',
     "labml_nn_bn/demo/fixture.py: line 6: image '../../figures/nothing.svg' not found "
     "(looked for docs/figures/nothing.svg)"),
    ('"""\n---\ntitle: T\n---\n"""\n# ![x](https://example.com/x.png)\nx = 1\n',
     "labml_nn_bn/demo/fixture.py: line 6: image 'https://example.com/x.png': images must be files of the site"),
    ('"""\n---\ntitle: T\n---\n"""\n# See [the page](../nowhere.md).\nx = 1\n',
     "labml_nn_bn/demo/fixture.py: line 6: link to '../nowhere.md' not found (looked for docs/labml_nn_bn/nowhere.md)"),
], ids=['bad-byte', 'bad-yaml', 'syntax-error', 'missing-image', 'external-image',
        'link-to-no-page'])
def test_a_bad_source_fails_the_build_with_one_line_naming_it(tmp_path, source, message):
    output = _build_error(tmp_path, source)
    assert [line for line in output.splitlines() if message in line] != [], output
    assert len([line for line in output.splitlines() if 'fixture.py' in line]) == 1, output
