"""
The plain-text reading of the site's formulas that the search index holds
(docs/hooks/math_text.py): a search result shows `σ²_B`, not `\\sigma^2_\\mathcal{B}`.
That every formula of the built site reads without TeX is tested on the built index
(test_site_math.py).
"""
import importlib.util
import pytest

from site_build import ROOT


def _load():
    path = ROOT / 'docs' / 'hooks' / 'math_text.py'
    spec = importlib.util.spec_from_file_location('math_text_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


math_text = _load().math_text


@pytest.mark.parametrize('tex, text', [
    # The notation's symbols (docs/notation.md)
    ('\\mu_\\mathcal{B}', 'μ_B'),
    ('\\sigma^2_\\mathcal{B}', 'σ²_B'),
    ('\\hat{x}_i', 'x̂_i'),
    ('\\tilde\\gamma', 'γ̃'),
    ('\\bar\\delta', 'δ̄'),
    ('x^{(k)}', 'x^(k)'),
    ('\\mathbb{E}[x], \\mathrm{Var}[x]', 'E[x], Var[x]'),
    # Fractions and roots: a term of more than one symbol is bracketed
    ('\\hat{x}_i = \\frac{x_i - \\mu_\\mathcal{B}}'
     '{\\sqrt{\\sigma^2_\\mathcal{B} + \\epsilon}}',
     'x̂_i = (x_i − μ_B)/√(σ²_B + ε)'),
    ('\\frac{\\partial \\ell}{\\partial y_i}', '∂ℓ/∂y_i'),
    ('\\frac{\\gamma}{m\\sqrt{\\sigma^2_\\mathcal{B} + \\epsilon}}',
     'γ/(m√(σ²_B + ε))'),
    ('1/\\sqrt{m}', '1/√m'),
    # A sum with its limits stands apart from its summand; a sign is no operator
    ('\\sum_{i=1}^m x_i', '∑_(i=1)^m x_i'),
    ('\\sum_j \\frac{\\partial \\ell}{\\partial y_j}', '∑_j ∂ℓ/∂y_j'),
    ('\\sum_{j \\ne i} x_j', '∑_(j≠i) x_j'),
    ('\\mathrm{Var}[\\mu_\\mathcal{B} \\mid x_i]', 'Var[μ_B | x_i]'),
    ('|x| > \\sqrt{65{,}504}', '|x| > √(65,504)'),
    ('\\frac{|\\mathbb{E}[x]|}{\\sqrt{\\mathrm{Var}[x]}}', '|E[x]|/√Var[x]'),
    ('\\frac{1}{m}\\sum_i x_i^2 - \\mu_\\mathcal{B}^2', '1/m ∑_i x_i² − μ_B²'),
    ('-\\frac{\\eta}{2}', '−η/2'),
    ('2^{-24}', '2⁻²⁴'),
    ('\\mathbb{E}[x] \\leftarrow (1 - \\alpha)\\,\\mathbb{E}[x]'
     ' + \\alpha\\,\\mu_\\mathcal{B}',
     'E[x] ← (1 − α) E[x] + α μ_B'),
    # Text, names, sizes and alignment
    ('\\text{line 1:} \\quad \\mu_\\mathcal{B} = \\frac{1}{m} \\sum_{i=1}^m x_i',
     'line 1: μ_B = 1/m ∑_(i=1)^m x_i'),
    ('n \\ge \\ln 0.01 / \\ln 0.9', 'n ≥ ln 0.01/ln 0.9'),
    ('n \\bmod R', 'n mod R'),
    ('\\mathcal{B} = \\{x_1, \\dots, x_m\\}', 'B = {x_1, …, x_m}'),
    ('\\big(x - \\mathbb{E}[x]\\big)', '(x − E[x])'),
    ('\\begin{aligned} y &= \\tilde\\gamma x + \\tilde\\beta, \\\\ '
     '\\tilde\\beta &= \\beta - \\tilde\\gamma\\,\\mathbb{E}[x]. \\end{aligned}',
     'y = γ̃x + β̃, β̃ = β − γ̃ E[x].'),
    ('\\begin{aligned} a &= b + c \\\\ &= d \\end{aligned}', 'a = b + c; = d'),
])
def test_a_formula_reads_as_plain_text(tex, text):
    assert math_text(tex) == text


def test_a_command_the_reading_does_not_know_leaves_no_backslash():
    assert math_text('\\operatorname{sign}(x) \\oplus \\mathfrak{g}') == \
        'sign(x) oplus mathfrak g'
