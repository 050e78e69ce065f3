"""
Shared fixtures and helpers of the test suite.
"""
import ast
import importlib.util
import shutil
from pathlib import Path

import pytest

# ROOT is the repository root
from site_build import ROOT, build_site, serve, write_fixture_project

# Test output (screenshots, built sites) goes here; ignored by git
TEST_OUTPUT = ROOT / 'test-output'


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    # labml and matplotlib write caches under HOME; keep every test away from the real one
    home = tmp_path_factory.getbasetemp() / 'home'
    home.mkdir(exist_ok=True)
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.setenv('MPLCONFIGDIR', str(home / 'mpl'))


@pytest.fixture(autouse=True)
def _seed():
    import torch
    torch.manual_seed(0)


@pytest.fixture(scope='session')
def test_output():
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT


def imported_packages(path) -> set:
    """The top-level names a Python file imports."""
    roots = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split('.')[0])
    return roots


def load_annotate_hook():
    """The site's renderer, `docs/hooks/annotate.py` (site tooling, not part of the package)."""
    spec = importlib.util.spec_from_file_location('annotate', ROOT / 'docs' / 'hooks' / 'annotate.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def built_site(tmp_path_factory):
    """The site, built once per session in strict mode: `(site folder, build log)`."""
    site_dir = tmp_path_factory.mktemp('site')
    result = build_site(site_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    return site_dir, result.stdout + result.stderr


@pytest.fixture(scope='session')
def served_site(built_site):
    """The built site on http://127.0.0.1:<free port>/ for the session."""
    server, url = serve(built_site[0])
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope='session')
def fixture_site(tmp_path_factory):
    """
    The fixture project of `site_build.py` (one annotated source with every hard case),
    built once per session in strict mode: `(site folder, project folder)`.
    """
    project = write_fixture_project(tmp_path_factory.mktemp('fixture-project'))
    site_dir = tmp_path_factory.mktemp('fixture-site')
    result = build_site(site_dir, project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'WARNING' not in result.stdout + result.stderr, result.stdout + result.stderr
    return site_dir, project


@pytest.fixture(scope='session')
def served_fixture_site(fixture_site):
    server, url = serve(fixture_site[0])
    yield url
    server.shutdown()
    server.server_close()


def assert_bad_out_is_refused_before_the_run(module: str, tmp_path):
    """`python -m MODULE --smoke --out X` with an X that cannot be a folder fails at once: one
    line naming the option, exit 2, no traceback, and no labml run left behind."""
    import os
    import subprocess
    import sys
    (tmp_path / 'afile').write_text('x')
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    for out, message in [(tmp_path / 'afile', 'afile is a file, expected a folder'),
                         (tmp_path / 'afile' / 'figs', 'afile is a file, expected a folder')] + \
            ([('/proc/labml-nn-bn-x', 'cannot write to /proc')] if os.path.exists('/proc/self') else []):
        done = subprocess.run([sys.executable, '-m', module, '--smoke', '--out', str(out)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f'python -m {module}: error: argument --out: ')
        assert message in last and 'Traceback' not in done.stderr
        assert not (tmp_path / 'logs').exists()


# --- the browser tests ------------------------------------------------------------------------

# Debian's chromium, driven by Playwright (never `playwright install`)
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']


@pytest.fixture(scope='module')
def browser():
    """One Chromium for the test module."""
    from playwright.sync_api import sync_playwright

    # A missing browser is a failure, not a skip: `make test` installs it (scripts/system-deps.sh)
    assert shutil.which('chromium') or Path(CHROMIUM).exists(), \
        'chromium is not installed: run `make system-deps`'
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# True once the page is laid out whole. A long annotated page, with JavaScript, lets the browser
# skip the sections far from the screen while it loads and lays them out just after
# (docs/assets/javascripts/lazy-layout.js), marking the html element when it is done.
LAID_OUT = '''(() => {
  const marks = document.documentElement.classList;
  return !marks.contains('annotated-lazy') || marks.contains('annotated-laid-out');
})()'''


def wait_until_laid_out(page, timeout=60_000):
    """Waits until every section of the page is laid out (see LAID_OUT), for the tests that
    measure where things are on the finished page."""
    page.wait_for_function(LAID_OUT, timeout=timeout)
