"""
Measured numbers in the text, kept in step with the measurements.

A number the README, a page or a source comment quotes is written between two markers that say
where it comes from,

    <!-- measured mnist:bn.accuracy_test .2% -->97.60%<!-- /measured -->

meaning: the value `values.bn.accuracy_test` of `docs/figures/mnist.json`, shown with the
format `.2%`. The markers are HTML comments, so neither GitHub nor the site shows them.
`python -m labml_nn_bn.figures` rewrites every quote after it has remeasured, and the tests
check that every quote agrees with the committed measurements, so a typed-in number fails.
"""
import json
import re
from pathlib import Path
from typing import List, NamedTuple

from labml_nn_bn.figure_tools import write_atomically

ROOT = Path(__file__).resolve().parent.parent

# A quote: the JSON file's stem, the dotted key, an optional format spec, and the shown text
QUOTE = re.compile(r'<!-- measured ([\w-]+):([\w.-]+)(?: (\S+))? -->(.*?)<!-- /measured -->')


class Quote(NamedTuple):
    path: Path
    line: int
    source: str
    key: str
    spec: str
    shown: str


def quoting_files(root: Path = ROOT) -> List[Path]:
    """The files whose text may quote measurements."""
    files = [root / 'README.md']
    files += sorted((root / 'docs').rglob('*.md'))
    files += sorted((root / 'labml_nn_bn').rglob('*.py'))
    return [f for f in files if f.is_file()]


def find_quotes(path: Path) -> List[Quote]:
    quotes = []
    for number, line in enumerate(Path(path).read_text(encoding='utf-8').split('\n'), start=1):
        for m in QUOTE.finditer(line):
            quotes.append(Quote(Path(path), number, m.group(1), m.group(2), m.group(3) or '',
                                m.group(4)))
    return quotes


def value(figures_dir: Path, source: str, key: str):
    path = Path(figures_dir) / f'{source}.json'
    if not path.exists():
        raise ValueError(f'a quote names {source}:{key}, but {path} does not exist '
                         f'(run `make figures`)')
    node = json.loads(path.read_text(encoding='utf-8'))['values']
    parts = key.split('.')
    for i, part in enumerate(parts):
        missing = f'a quote names {source}:{key}, but {path.name} has no value {key!r}'
        if isinstance(node, list):
            # a list's items are named by their position, from 0
            if not (part.isdigit() and int(part) < len(node)):
                where = '.'.join(parts[:i]) or 'values'
                raise ValueError(f'{missing} ({where} has {len(node)} items, numbered from 0)')
            node = node[int(part)]
            continue
        if not isinstance(node, dict) or part not in node:
            raise ValueError(missing)
        node = node[part]
    return node


def formatted(figures_dir: Path, source: str, key: str, spec: str) -> str:
    return format(value(figures_dir, source, key), spec)


def check_quotes(figures_dir: Path, root: Path = ROOT) -> List[str]:
    """Every quote that disagrees with the measurements, as `file:line: shown ≠ expected`."""
    problems = []
    for path in quoting_files(root):
        if path.resolve() == Path(__file__).resolve():
            continue  # this module's docstring shows the syntax with an example
        for q in find_quotes(path):
            try:
                expected = formatted(figures_dir, q.source, q.key, q.spec)
            except (ValueError, TypeError) as e:
                problems.append(f'{path.relative_to(root)}:{q.line}: {e}')
                continue
            if q.shown != expected:
                problems.append(f'{path.relative_to(root)}:{q.line}: quotes {q.shown!r} for '
                                f'{q.source}:{q.key}, the measurement says {expected!r}')
    return problems


def update_quotes(figures_dir: Path, root: Path = ROOT) -> List[Path]:
    """Rewrites every quote from the measurements; returns the files that changed."""
    changed = []
    for path in quoting_files(root):
        if path.resolve() == Path(__file__).resolve():
            continue
        text = path.read_text(encoding='utf-8')

        def replace(m):
            try:
                shown = formatted(figures_dir, m.group(1), m.group(2), m.group(3) or '')
            except (ValueError, TypeError) as e:
                line = text.count('\n', 0, m.start()) + 1
                raise ValueError(f'{path.relative_to(root)}:{line}: {e}') from None
            return m.group(0)[:m.start(4) - m.start(0)] + shown + '<!-- /measured -->'

        new = QUOTE.sub(replace, text)
        if new != text:
            write_atomically(path, new.encode('utf-8'))
            changed.append(path)
    return changed
