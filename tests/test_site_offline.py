"""
Reading the site offline (issue 20): the offline build (`OFFLINE=true mkdocs build`,
see docs/hooks/offline.py) opened from disk in a real browser, with no server and no
network; and the Pages workflow that publishes the site and keeps the offline build as a
download.
"""
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from site_build import MKDOCS, ROOT
from conftest import wait_until_laid_out

WORKFLOW = ROOT / '.github' / 'workflows' / 'pages.yml'


@pytest.fixture(scope='module')
def offline_site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp('site-offline')
    env = dict(os.environ, NO_MKDOCS_2_WARNING='1', OFFLINE='true')
    result = subprocess.run(MKDOCS + ['build', '--strict', '--site-dir', str(site_dir)],
                            cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return site_dir


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ('href', 'src'):
            canonical = tag == 'link' and attrs.get('rel') == 'canonical'
            if attrs.get(name) and not canonical:
                self.targets.append(attrs[name])


def test_every_link_of_the_offline_site_names_a_file(offline_site):
    # From disk a browser shows a folder's listing, not its index.html: each link and
    # asset of every page must name a file that is there
    broken = []
    # 404.html is for a server only (its links start at the site's root on the server)
    pages = sorted(set(offline_site.rglob('*.html')) - {offline_site / '404.html'})
    assert len(pages) > 10
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text(encoding='utf-8'))
        for target in parser.targets:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or not parts.path:
                continue  # another site (the paper, GitHub, Colab) or an anchor
            path = (page.parent / unquote(parts.path)).resolve()
            if not path.is_file():
                broken.append(f'{page.relative_to(offline_site)}: {target}')
    assert broken == [], broken[:20]


def test_no_script_of_the_offline_site_comes_from_the_network(offline_site):
    for page in [offline_site / 'index.html',
                 offline_site / 'labml_nn_bn' / 'batch_norm.html']:
        html = page.read_text(encoding='utf-8')
        scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html)
        assert scripts and not [s for s in scripts if '://' in s], scripts
    assert (offline_site / 'search' / 'search_index.js').is_file()


class DiskVisit:
    """A browser tab on `file://` pages: its console errors, and every request that is
    not to a file (each is aborted: the reader may have no network)."""

    def __init__(self, browser, width=1280):
        self.context = browser.new_context(viewport={'width': width, 'height': 900})
        self.page = self.context.new_page()
        self.errors, self.remote = [], []
        self.page.on('console', self._console)
        self.page.on('pageerror', lambda e: self.errors.append(str(e)))
        self.page.on('request', self._request)
        self.context.route(re.compile(r'^https?://'), lambda route: route.abort())

    def _console(self, message):
        if message.type == 'error':
            self.errors.append(message.text)

    def _request(self, request):
        if not request.url.startswith(('file:', 'data:', 'blob:', 'about:')):
            self.remote.append(request.url)

    def open(self, path: Path):
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state('load')
        # Typeset, whether the math comes pre-rendered or typeset by the page's script
        self.page.wait_for_function('[...document.querySelectorAll(".arithmatex")]'
                                    '.every(el => el.querySelector(".katex"))')
        wait_until_laid_out(self.page)




def test_the_offline_site_opened_from_disk(offline_site, browser, test_output):
    shots = test_output / 'screenshots'
    shots.mkdir(exist_ok=True)
    v = DiskVisit(browser)
    try:
        page = v.page
        v.open(offline_site / 'index.html')
        # Search: the index is read from a script and the worker runs without a server
        page.locator('.md-search__input').first.click()
        page.keyboard.type('momentum', delay=30)  # key by key, as Material expects
        page.wait_for_selector('.md-search-result__item', timeout=15_000)
        assert page.locator('.md-search-result__item').count() > 0
        page.screenshot(path=str(shots / 'offline-search.png'))
        page.keyboard.press('Escape')
        # A link of the navigation opens the page it names
        figure_1 = 'Figure 1, internal covariate shift'
        nav = page.locator('.md-nav__link', has_text=figure_1)
        nav.first.click()
        page.wait_for_load_state('load')
        assert page.url.endswith('/labml_nn_bn/experiments/covariate_shift.html')
        assert page.locator('.annotated-section').count() > 0
        page.wait_for_function('document.querySelectorAll(".katex").length > 0')
        assert page.locator('.katex-error').count() == 0
        # Its figures load from disk
        images = page.locator('.annotated-notes img[src*="figures/"]')
        assert images.count() > 0
        for i in range(images.count()):
            images.nth(i).scroll_into_view_if_needed()
            image = images.nth(i)
            assert image.evaluate('img => img.complete && img.naturalWidth > 0'), \
                image.get_attribute('src')
        page.screenshot(path=str(shots / 'offline-covariate_shift.png'))
        assert v.errors == [], v.errors
        assert v.remote == [], f'requests that leave the disk: {v.remote}'
    finally:
        v.context.close()


# --- the Pages workflow ---------------------------------------------------------

def _steps():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return workflow['jobs']['deploy']['steps']


def _site_dir(command: str) -> str:
    match = re.search(r'(?:--site-dir|-d)[ =](\S+)', command)
    assert match, f'a build without an explicit folder: {command}'
    return match.group(1)


def test_pages_workflow_publishes_what_it_built_and_keeps_the_offline_site():
    steps = _steps()
    builds = [s for s in steps if 'mkdocs build' in s.get('run', '')]
    # Every build is strict, and nothing builds again behind the workflow's back
    assert builds and all('--strict' in s['run'] for s in builds)
    assert not any('gh-deploy' in s.get('run', '') for s in steps)
    offline = [s for s in builds
               if str(s.get('env', {}).get('OFFLINE', '')).lower() == 'true']
    online = [s for s in builds if s not in offline]
    assert len(offline) == 1 and len(online) == 1
    # The offline build is kept as a download, with a name and a retention
    uploads = [s for s in steps
               if s.get('uses', '').startswith('actions/upload-artifact@')]
    assert len(uploads) == 1
    upload = uploads[0]['with']
    assert upload['path'] == _site_dir(offline[0]['run'])
    assert 'offline' in upload['name']
    assert 1 <= int(upload['retention-days']) <= 90
    # The published folder is the one the online build wrote
    deploys = [s for s in steps if 'ghp-import' in s.get('run', '')]
    assert len(deploys) == 1
    deploy = deploys[0]['run'].split()
    assert deploy[-1] == _site_dir(online[0]['run'])
    assert '--push' in deploy or '-p' in deploy
    # Steps run in order: build, then keep and publish
    index = steps.index
    assert index(offline[0]) < index(uploads[0])
    assert index(online[0]) < index(deploys[0])
    assert 'ghp-import==' in (ROOT / 'requirements' / 'docs.txt').read_text()
