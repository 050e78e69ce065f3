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

import yaml

from conftest import ROOT, load_annotate_hook
from site_build import MKDOCS, parse_annotated_page

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
        for section in parsed.sections:
            assert section['notes'] == 1 and section['code'] == 1, section
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
    assert (site_dir / 'assets' / 'katex' / 'katex.min.js').stat().st_size > 100_000
    css = (site_dir / 'assets' / 'katex' / 'katex.min.css').read_text()
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
    assert 'mkdocs gh-deploy --force' in text
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
    html = (site_dir / 'labml_nn_bn' / 'mnist' / 'index.html').read_text()
    notes = html.split('class="annotated"', 1)[1]
    assert 'href="../batch_norm/"' in notes
    assert '.md"' not in notes
