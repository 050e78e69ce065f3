"""
A plain-text reading of the site's TeX, for the search index: `\\mu_\\mathcal{B}` reads
`μ_B`, `\\sigma^2_\\mathcal{B}` reads `σ²_B`, `\\hat{x}_i` reads `x̂_i`, and
`\\frac{x_i - \\mu_\\mathcal{B}}{\\sqrt{\\sigma^2_\\mathcal{B} + \\epsilon}}` reads
`(x_i − μ_B)/√(σ²_B + ε)`.

Why not the text of KaTeX's MathML, which the build has already? It loses what a reader
needs: subscripts, superscripts and fractions run together (`σB2` for the variance,
`∂ℓ∂yi` for a gradient). This reading keeps them, the way one types a formula in a
plain-text message, and keeps the Greek letters, so that a search for "μ" finds them.

It covers the TeX the site writes (the commands below, `\\frac`, `\\sqrt`, `aligned`);
any other command reads as its bare name, so no backslash reaches a search result.
"""
import re
from typing import List

SYMBOLS = {
    # Greek letters (`\\epsilon`: ε, as the site's prose writes it)
    'alpha': 'α', 'beta': 'β', 'gamma': 'γ', 'delta': 'δ', 'epsilon': 'ε',
    'varepsilon': 'ε', 'eta': 'η', 'theta': 'θ', 'kappa': 'κ', 'mu': 'μ', 'rho': 'ρ',
    'sigma': 'σ', 'tau': 'τ', 'phi': 'φ', 'chi': 'χ', 'lambda': 'λ', 'pi': 'π',
    'nu': 'ν', 'omega': 'ω', 'xi': 'ξ', 'zeta': 'ζ', 'psi': 'ψ', 'Delta': 'Δ',
    'Phi': 'Φ', 'Sigma': 'Σ', 'Gamma': 'Γ', 'Omega': 'Ω', 'Theta': 'Θ', 'Lambda': 'Λ',
    'Pi': 'Π',
    # Letters and large operators
    'ell': 'ℓ', 'partial': '∂', 'nabla': '∇', 'infty': '∞', 'sum': '∑', 'prod': '∏',
    'top': '⊤', 'dots': '…', 'ldots': '…', 'cdots': '⋯',
    # Delimiters
    'lVert': '‖', 'rVert': '‖', '|': '‖', '{': '{', '}': '}',
    'langle': '⟨', 'rangle': '⟩',
}

# Operators and relations: written with a space on each side when they join two terms
OPERATORS = {
    'times': '×', 'cdot': '·', 'pm': '±', 'bmod': 'mod',
    'to': '→', 'leftarrow': '←', 'rightarrow': '→', 'mapsto': '↦', 'le': '≤',
    'leq': '≤', 'ge': '≥', 'geq': '≥', 'ne': '≠', 'neq': '≠', 'approx': '≈', 'sim': '∼',
    'propto': '∝', 'in': '∈', 'll': '≪', 'gg': '≫', 'equiv': '≡', 'mid': '|',
}
PLAIN_OPERATORS = {'+': '+', '-': '−', '=': '=', '<': '<', '>': '>'}

# Accents, as the combining mark that follows the letter they sit on
ACCENTS = {'hat': '\u0302', 'tilde': '\u0303', 'bar': '\u0304', 'dot': '\u0307',
           'vec': '\u20d7', 'widehat': '\u0302', 'widetilde': '\u0303',
           'overline': '\u0305'}

# Commands whose argument reads as itself: fonts (`\\mathcal{B}` reads B) and text
FONTS = {'mathcal', 'mathbb', 'mathrm', 'mathbf', 'mathit', 'mathsf', 'boldsymbol'}
TEXT = {'text', 'textrm', 'textit', 'textbf', 'operatorname'}

# Commands that change only the look: sizes of delimiters, spacing
SILENT = {'big', 'Big', 'bigg', 'Bigg', 'bigl', 'bigr', 'Bigl', 'Bigr', 'biggl',
          'biggr', 'Biggl', 'Biggr', 'left', 'right', 'displaystyle', 'textstyle',
          'limits'}
SPACES = {',': ' ', ':': ' ', ';': ' ', ' ': ' ', 'quad': ' ', 'qquad': ' ', '!': ''}

SUPERSCRIPTS = dict(zip('0123456789+−=()ni⊤', '⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵀ'))

_SCRIPTS = ('^', '_')
_TOKEN = re.compile(r'\\([A-Za-z]+|.)|(\s+)|(.)', re.DOTALL)

# A piece of the reading is text. One that starts with `_OP` is an operator, spaced when
# it joins two terms; one that starts with `_TERM` (a fraction, a sum and its limits, a
# name) stands apart from its neighbours (`x̂_i 1/m`, not `x̂_i1/m`); `_SIGN` follows a
# sum, whose summand may start with a sign (`∑_i −2x_i`); `_TEXT` starts text that is
# joined as it is (the `{,}` of `65{,}504`)
_OP, _TERM, _SIGN, _TEXT = '\x00', '\x01', '\x02', '\x03'
BIG_OPERATORS = {'sum', 'prod'}
NAMES = {'max', 'min', 'ln', 'log', 'exp', 'mod'}


class _Reader:
    def __init__(self, tex: str):
        self.tokens = [m.groups() for m in _TOKEN.finditer(tex)]
        self.pos = 0

    def _next(self):
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _skip_space(self):
        while self.pos < len(self.tokens) and self.tokens[self.pos][1]:
            self.pos += 1

    def _raw_group(self) -> str:
        """The TeX of a `{...}` argument as written (for `\\text` and `\\begin`)."""
        self._skip_space()
        if self.pos >= len(self.tokens) or self.tokens[self.pos][2] != '{':
            return ''
        self.pos += 1
        depth, out = 1, []
        while self.pos < len(self.tokens):
            command, space, char = self._next()
            if char == '{':
                depth += 1
            elif char == '}':
                depth -= 1
                if depth == 0:
                    break
            out.append(space or char or ('' if command in SPACES else command))
        return ''.join(out)

    def argument(self) -> List[str]:
        """One argument: a `{group}`, a command or a single character."""
        self._skip_space()
        if self.pos >= len(self.tokens):
            return []
        if self.tokens[self.pos][2] == '{':
            self.pos += 1
            return self.pieces(until='}')
        return self.atom()

    def atom(self) -> List[str]:
        command, space, char = self._next()
        if space:
            return []
        if char is not None:
            if char == '{':
                inner = self.pieces(until='}')
                return [_TEXT + ','] if inner == [','] else inner
            if char in PLAIN_OPERATORS:
                return [_OP + PLAIN_OPERATORS[char]]
            if char == '&' or char == '}':
                return []
            if char == '~':
                return [' ']
            return [char]
        if command in NAMES:
            return [_TERM + command]
        if command in SYMBOLS:
            return [SYMBOLS[command]]
        if command in OPERATORS:
            return [_OP + OPERATORS[command]]
        if command in SPACES:
            return [SPACES[command]] if SPACES[command] else []
        if command == '\\':
            return [_OP + ';']
        if command in SILENT:
            return []
        if command in ('begin', 'end'):
            self._raw_group()
            return []
        if command in TEXT:
            return [self._raw_group()]
        if command in FONTS:
            return self.argument()
        if command in ACCENTS:
            inner = _join(self.argument())
            return [inner + ACCENTS[command]]
        if command == 'frac':
            numerator = _join(self.argument())
            denominator = _join(self.argument())
            denominator = _bracket(denominator, denominator=True)
            return [f'{_TERM}{_bracket(numerator)}/{denominator}']
        if command == 'sqrt':
            return ['√' + _bracket(_join(self.argument()))]
        return [_TERM + command]  # a command not known here: its bare name

    def pieces(self, until: str = None) -> List[str]:
        out: List[str] = []
        while self.pos < len(self.tokens):
            if until and self.tokens[self.pos][2] == until:
                self.pos += 1
                break
            if self.tokens[self.pos][2] in _SCRIPTS:
                out.append(self._script())
                continue
            big = self.tokens[self.pos][0] in BIG_OPERATORS
            out.extend(self.atom())
            if big:
                self._skip_space()
                while self.tokens[self.pos:self.pos + 1] and \
                        self.tokens[self.pos][2] in _SCRIPTS:
                    out[-1] += self._script()
                    self._skip_space()
                out[-1] = _TERM + out[-1]
                out.append(_SIGN)
        return out

    def _script(self) -> str:
        kind = self._next()[2]
        script = _join(self.argument(), compact=True)
        return _superscript(script) if kind == '^' else _subscript(script)


# What, outside brackets, makes a text more than one term
_BINDS_LOOSER = set(' +−=/·×,;±') | {op for op in OPERATORS.values() if len(op) == 1}
_BINDS_LOOSER.discard('|')  # `|x|` is one term


def _bracket(text: str, denominator: bool = False) -> str:
    """
    `text` as one term: in parentheses when it holds a space or an operator outside the
    brackets it already has (`√(σ² + ε)` and `2(x − μ)` are one term each); a
    denominator also when it is a product that ends in a root or a bracket
    (`γ/(m√(σ² + ε))`).
    """
    depth, bare = 0, False
    for char in text:
        depth += 1 if char in '([' else -1 if char in ')]' else 0
        if depth == 0 and char in _BINDS_LOOSER:
            bare = True
    one_factor = re.fullmatch(r'√?\(.*\)|√?[^\s()\[\]√]+([(\[].*)?', text)
    product = denominator and not one_factor
    if len(text) > 1 and (bare or product):
        return f'({text})'
    return text


def _superscript(text: str) -> str:
    if text and all(c in SUPERSCRIPTS for c in text):
        return ''.join(SUPERSCRIPTS[c] for c in text)
    return '^' + _bracket(text)


def _subscript(text: str) -> str:
    return '_' + _bracket(text)


_SCRIPT_START = ('_', '^') + tuple(SUPERSCRIPTS.values())
_CLOSERS = (')', ']', '}', "'", '/', '|', '‖')
_SIGNS = ('−', '+', '±')


def _join(pieces: List[str], compact: bool = False) -> str:
    """
    The pieces as text. An operator between two terms gets a space on each side (none in
    a sub- or superscript, `compact`); one that starts a term (a sign) gets none. Terms
    side by side touch (`γx̂`), except that a space sets off a term marked `_TERM`
    (`x̂ 1/m`), what follows one (`1/m x`) and a letter after a subscript (`n_j δ̄_j`);
    never before a script or a closing bracket, nor before an opening one after a name
    or a subscript (`max(a, b)`, `q_k(t)`).
    """
    out, after_term, apart = '', False, None
    for piece in pieces:
        if piece == _SIGN:
            after_term = False
            continue
        if piece.startswith(_TEXT):
            out += piece[1:]
            continue
        if piece.startswith(_OP):
            op = piece[1:]
            if compact:
                out += op
            elif op == ';':  # a new row of `aligned`, unless punctuation ends the last
                out = out.rstrip()
                out += ' ' if out.endswith((',', '.', ';')) else '; '
            elif after_term:
                out = out.rstrip() + f' {op} '
            elif op not in _SIGNS:  # a relation that starts a row of `aligned`
                out = out.rstrip() + (' ' if out.strip() else '') + op + ' '
            else:
                spaced = apart and out and not out.endswith((' ', '(', '['))
                out += (' ' if spaced else '') + op
            after_term, apart = False, None
            continue
        if piece == ',':
            out = out.rstrip() + (',' if compact else ', ')
            after_term, apart = False, None
            continue
        term = piece.startswith(_TERM)
        text = piece.lstrip(_TERM)
        if not text.strip():
            out += text
            continue
        opening = text.startswith(('(', '['))
        set_off = term or apart == 'strong' or (apart == 'weak' and not opening)
        touching = text.startswith(_SCRIPT_START + _CLOSERS)
        if (set_off and not compact and (after_term or apart == 'strong') and out
                and not out.endswith(' ') and not touching):
            out += ' '
        out += text
        after_term = not text.endswith(('(', '[', '{', '/'))
        if term:
            # A name (`ln`) keeps its bracket (`ln(x)`), a fraction or a sum does not
            apart = 'weak' if text.isalpha() else 'strong'
        elif text.startswith(_SCRIPT_START) and apart == 'strong':
            pass  # the limits of a sum, or a fraction's power: still apart
        elif text.startswith('_'):
            apart = 'weak'
        else:
            apart = None
    return re.sub(r' {2,}', ' ', out).strip(' ;')


def math_text(tex: str) -> str:
    """The plain-text reading of one formula's TeX (see the module's docstring)."""
    return _join(_Reader(tex).pieces())
