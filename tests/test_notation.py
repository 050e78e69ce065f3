"""
One notation for the whole site (issue 20): the notation page lists every symbol with an anchor,
every page that writes the batch statistics or the normalised value links it, and the symbols
the issue found used for several things are gone from the pages they were misused on.
"""
import json
import re
from pathlib import Path

import pytest
import yaml

from site_build import ROOT

NOTATION = ROOT / 'docs' / 'notation.md'

# Each row of the table: its anchor and the TeX of the symbols it defines
ROWS = {
    'layer-input': [r'$u$'],
    'weights': [r'$W$', r'$b$'],
    'x': [r'$x$', r'$x^{(k)}$'],
    'feature': [r'$k$'],
    'mini-batch': [r'$\mathcal{B}$', r'$m$', r'$i$'],
    'batch-statistics': [r'$\mu_\mathcal{B}$', r'$\sigma^2_\mathcal{B}$'],
    'epsilon': [r'$\epsilon$'],
    'x-hat': [r'$\hat{x}$'],
    'gamma-beta': [r'$\gamma$', r'$\beta$'],
    'y': [r'$y$'],
    'nonlinearity': [r'$g$'],
    'nonlinearity-output': [r'$z$'],
    'loss': [r'$\ell$'],
    'learning-rate': [r'$\eta$'],
    'population-statistics': [r'$\mathbb{E}[x]$', r'$\mathrm{Var}[x]$'],
    'momentum': [r'$\alpha$'],
    'folded': [r'$\tilde\gamma$', r'$\tilde\beta$'],
    'scale-invariance': [r'$a$'],
    'shift': [r'$K$', r'$\delta_i$', r'$\bar\delta$'],
    'ranks': [r'$R$'],
    'renorm': [r'$r$', r'$d$'],
}


def _rows():
    """`{anchor: the table row (or paragraph) that carries it}` of the notation page."""
    rows = {}
    for line in NOTATION.read_text(encoding='utf-8').splitlines():
        for anchor in re.findall(r'<a id="([\w-]+)"></a>', line):
            rows[anchor] = line
    return rows


def test_the_notation_page_lists_every_symbol_with_an_anchor():
    rows = _rows()
    for anchor, symbols in ROWS.items():
        assert anchor in rows, f'notation.md has no row with id {anchor!r}'
        # The symbol opens its row, right after the anchor
        first_cell = rows[anchor].split('|')[1]
        for symbol in symbols[:1]:
            assert symbol in first_cell, (anchor, first_cell)
        for symbol in symbols:
            assert symbol in rows[anchor], (anchor, symbol)
    # Tensor shapes are named, and said not to be math symbols
    assert 'shapes' in rows
    text = NOTATION.read_text(encoding='utf-8')
    assert '`[N, C, H, W]`' in text and 'not symbols of this table' in text
    # A later paper's colliding letter is renamed on our pages
    assert 'renames' in text


def test_the_notation_page_comes_right_after_home_in_the_nav():
    config = yaml.safe_load(re.sub(r'!!python/\S+', '', (ROOT / 'mkdocs.yml').read_text()))
    nav = config['nav']
    assert nav[0] == {'Home': 'index.md'}
    assert nav[1] == {'Notation': 'notation.md'}


def _pages():
    """The site's pages written in Markdown, and every annotated source (front matter)."""
    pages = sorted((ROOT / 'docs').glob('*.md'))
    for path in sorted((ROOT / 'labml_nn_bn').rglob('*.py')):
        text = path.read_text(encoding='utf-8')
        if re.match(r'\s*r?"""\s*\n---\n', text):
            pages.append(path)
    return pages


# The symbols whose use makes a page link the table
BATCH_SYMBOLS = (r'\mu_\mathcal{B}', r'\sigma^2_\mathcal{B}', r'\hat{x}')


@pytest.mark.parametrize('path', [p for p in _pages() if p != NOTATION],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_page_that_uses_the_batch_symbols_links_the_notation_page(path):
    text = path.read_text(encoding='utf-8')
    if not any(symbol in text for symbol in BATCH_SYMBOLS):
        return
    assert re.search(r'\]\((?:\.\./)*notation\.md(?:#[\w-]+)?\)', text), (
        f'{path.relative_to(ROOT)} uses the batch statistics or x̂ but does not link the '
        f'notation page')
    # Near the top: within the first fifth of the page
    first = re.search(r'notation\.md', text).start()
    assert first < max(len(text) // 5, 4000), path


# ## The symbols the issue found misused, on the sources this lint covers
#
# (pattern, what is wrong): each pattern was in the text when the issue was filed.
BAD = [
    (r'y\s*=\s*a\s*x\s*\+\s*c', 'the inference map is y = γ̃x + β̃'),
    (r'\$s(?:_k)?\$|\bs_k\b', '$s$ as a shift or a scale: the shift is $K$, a scale $\\tilde\\gamma$'),
    (r'\$W\$ (?:processes|ranks|triples)|ranks \$W\$|\[W, ', '$W$ for the number of ranks: $R$'),
    (r'\bg_[ij]\b|\\sum_?\w* g\b|\\sum g', '$g$ as a gradient: write ∂ℓ/∂y_i'),
    (r'\\bar\{d\}|\bd_i\b', '$d$ for the shifted values: δ_i = x_i − K'),
    (r'\bk_[12]\b|\ba = \\frac', 'one-letter backward coefficients: write the sums out'),
    (r'\$\d*Nb\$|\$N\$ values', '$N$ and $b$ for a tensor\'s size: $P$ bytes per pass'),
    (r'\$\[B, C', 'a shape in math with $B$: write `[N, C, ...]` as code'),
    (r'\(W x \+ b\)', 'the layer\'s input is u: x = Wu + b'),
    (r"(?i)\bthe issue\b(?!s)|\bthe issue's", '"the issue" means nothing to a reader'),
]
LINTED = ['docs/index.md', 'docs/notation.md', 'docs/later_work.md', 'docs/performance.md',
          'docs/claims.md', 'README.md', 'labml_nn_bn/inference.py',
          'labml_nn_bn/sync_batch_norm.py', 'labml_nn_bn/fast_batch_norm.py',
          'labml_nn_bn/experiments/variance_identity.py', 'labml_nn_bn/experiments/trainer.py',
          'labml_nn_bn/experiments/cli.py', 'labml_nn_bn/data.py']


def misused_symbols(text: str):
    """Every `line: text (what is wrong)` of `text` that matches a bad pattern."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern, why in BAD:
            if re.search(pattern, line):
                found.append(f'{number}: {line.strip()[:80]} ({why})')
    return found


@pytest.mark.parametrize('name', LINTED)
def test_no_symbol_is_misused(name):
    assert misused_symbols((ROOT / name).read_text(encoding='utf-8')) == []


def test_the_lint_finds_what_the_issue_found():
    # One line of each kind the issue reported, as the pages had them
    for line in ['feature goes through a fixed map $y = a x + c$. The layer before',
                 'shifted by its first value $s$, so that $d_i = x_i - s$ is computed',
                 'not: $W$ processes (*ranks*, usually one per GPU) each hold a copy',
                 r'two sums over the whole batch per channel, $\sum g$ and $\sum g\,\hat{x}$',
                 r'with $g_i = \frac{\partial \ell}{\partial y_i}$: it needs two sums',
                 'For an input of $N$ values of $b$ bytes each, any implementation',
                 r'$$y_k = \gamma_k \frac{(W x + b)_k - \mathbb{E}[x_k]}{\sqrt{}}$$',
                 'The issue that started this work measured `torch.nn.BatchNorm2d`']:
        assert misused_symbols(line), line
    # and leaves the right ones alone
    for line in [r'$y = \tilde\gamma x + \tilde\beta$', 'the number of ranks $R$',
                 r'$\delta_i = x_i - K$', r'$\sum_i \frac{\partial \ell}{\partial y_i}$',
                 'the processor that issues the kernels', r'$x = Wu + b$']:
        assert not misused_symbols(line), line


# ## Numbers the Performance page derives from the baseline and the measurements
def test_the_performance_pages_derived_bandwidths():
    page = (ROOT / 'docs' / 'performance.md').read_text(encoding='utf-8')
    values = json.loads((ROOT / 'docs' / 'figures' / 'bn_speed-nvidia-h200.json')
                        .read_text())['values']
    big = values['fp32_256x64x56x56']
    assert 256 * 64 * 56 * 56 == 51_380_224 and '51,380,224' in page
    assert big['bytes_per_pass'] == 4 * 51_380_224
    # The baseline's 1.84 ms against the minimal traffic, the specification and our copy
    gbps = big['train']['minimal_bytes'] / 1.84e-3 / 1e9
    assert f'about {gbps:.0f} GB/s' in page and '≈ 558 GB/s' in page
    assert f'about {gbps / 4800:.0%} of the H200\'s specified 4.8 TB/s' in page
    assert f'or {gbps / big["train"]["copy"]["gbps"]:.1%} of the' in page
    assert f'{big["train"]["minimal_bytes"] / 1e9:.2f} GB' in page
    half = values['bf16_cl_256x64x56x56']['train']['minimal_bytes'] / 0.72e-3 / 1e9
    assert f'about\n{half:.0f} GB/s' in page
