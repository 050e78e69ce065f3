"""
The claims page (`docs/claims.md`): one row per claim of the paper, each with a verdict, and
every measurement it quotes a measured quote (checked against the JSON by test_figures).
"""
import re

from labml_nn_bn import measured
from site_build import ROOT

CLAIMS = ROOT / 'docs' / 'claims.md'
VERDICT = re.compile(r'<span class="verdict verdict--(holds|partly|untested|contested)">'
                     r'(holds here|partly|not tested here|contested by later work)</span>')
WORDS = {'holds': 'holds here', 'partly': 'partly', 'untested': 'not tested here',
         'contested': 'contested by later work'}


def _rows():
    lines = CLAIMS.read_text(encoding='utf-8').splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith('| Claim'))
    rows = []
    for line in lines[header + 2:]:
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip().strip('|').split(' | ')]
        rows.append(cells)
    return rows


def test_every_row_has_five_cells_and_one_verdict_in_words():
    rows = _rows()
    assert len(rows) >= 10
    for cells in rows:
        assert len(cells) == 5, cells[0]
        verdicts = VERDICT.findall(cells[4])
        assert len(verdicts) == 1, cells[0]
        kind, words = verdicts[0]
        assert WORDS[kind] == words
        assert 'PENDING' not in ' '.join(cells)


def test_the_required_claims_are_there():
    claims = ' '.join(cells[0] for cells in _rows()).lower()
    for needle in ['faster training', 'higher learning rates', 'saturating non-linearities',
                   'dropout', 'internal covariate shift', 'why it works',
                   'outside the gradient', 'population statistics', 'imagenet']:
        assert needle in claims, needle


def test_what_we_measured_is_quoted_unless_untested():
    for cells in _rows():
        quotes = list(measured.QUOTE.finditer(cells[3]))
        if 'verdict--untested' in cells[4]:
            assert not quotes
        elif 'Section 3.3' not in cells[2]:
            # A row backed by an experiment quotes its measurements
            assert quotes, cells[0]


def test_contested_rows_name_the_later_work():
    for cells in _rows():
        if 'verdict--contested' in cells[4]:
            assert re.search(r'et al\.,? \(?\d{4}', cells[4]), cells[0]
