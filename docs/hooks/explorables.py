"""
An mkdocs hook that gives each explorable figure its data at build time.

A page asks for a live figure with an empty placeholder in its notes,

    <div class="explorable" data-explorable="momentum" markdown="0"></div>

and the script of that figure (`docs/assets/javascripts/explorable-*.js`) draws into it.
The numbers it draws are never typed: this hook reads them from the JSON that `make figures`
wrote to docs/figures/ and puts them inside the placeholder as
`<script type="application/json">`. Embedded rather than fetched, so that the site also works
opened from disk, where a browser refuses `fetch()` of a `file://` URL.

A placeholder that names no known figure, or whose JSON file or key is missing, stops the
build with one line naming the page and what is missing. Without JavaScript the placeholder
stays empty and the static figure above it is all the reader sees.
"""
import html
import json
import re
from pathlib import Path
from typing import Callable, Dict

from mkdocs.exceptions import PluginError


class ExplorableError(PluginError):
    """A placeholder whose figure or data cannot be found: one line, naming the page."""


def _get(values: Dict, dotted: str, source: str):
    node = values
    for key in dotted.split('.'):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f'{source} has no key {dotted!r} (missing {key!r}); '
                           f'run `make figures` or the figure maker that writes it')
        node = node[key]
    return node


def _runs(values: Dict, source: str) -> Dict:
    # Only what the learning-rate figure draws: each rate's curves per seed, with and without
    # batch normalization, and where a run stopped
    keep = ('lr', 'seeds', 'steps', 'curves', 'diverged_at')
    return {
        'rates': _get(values, 'rates', source),
        'target': _get(values, 'target', source),
        'runs': {name: [{k: _get(run, k, source) for k in keep}
                        for run in _get(values, f'{name}.runs', source)]
                 for name in ('no_bn', 'bn')},
    }


def _worked_example(load) -> Dict:
    values = load('batch_norm_pictures.json')
    source = 'batch_norm_pictures.json'
    return {'worked_example': _get(values, 'worked_example', source),
            'gradient_paths': _get(values, 'worked_example.gradient_paths', source),
            'train_eval': _get(values, 'train_eval', source)}


def _momentum(load) -> Dict:
    source = 'batch_norm_pictures.json'
    values = _get(load(source), 'running_mean', source)
    return {key: _get(values, key, source)
            for key in ('batch_means', 'true_mean', 'batch_size', 'steps')}


def _learning_rate(load) -> Dict:
    return {activation: _runs(load(name), name)
            for activation, name in (('relu', 'learning_rate.json'),
                                     ('sigmoid', 'learning_rate_sigmoid.json'))}


# Each figure's name, as written in `data-explorable`, and the data it is given
FIGURES: Dict[str, Callable] = {
    'worked-example': _worked_example,
    'momentum': _momentum,
    'learning-rate': _learning_rate,
}

_PLACEHOLDER = re.compile(
    r'<div class="explorable" data-explorable="([^"]*)"[^>]*>\s*</div>')


def embed(html_text: str, figures_dir: Path, page: str) -> str:
    """`html_text` with each placeholder filled with its figure's data."""
    cache = {}

    def load(name: str) -> Dict:
        if name not in cache:
            path = figures_dir / name
            if not path.exists():
                raise FileNotFoundError(
                    f'docs/figures/{name} does not exist; run `make figures`')
            cache[name] = json.loads(path.read_text(encoding='utf-8'))['values']
        return cache[name]

    def fill(match):
        name = match.group(1)
        if name not in FIGURES:
            raise ExplorableError(f'{page}: explorable figure {name!r} is unknown; '
                                  f'expected one of {", ".join(sorted(FIGURES))}')
        try:
            data = FIGURES[name](load)
        except (KeyError, FileNotFoundError) as e:
            raise ExplorableError(
                f'{page}: explorable figure {name!r}: {e.args[0]}') from None
        # `</` never closes the script early; the JSON is read back unchanged
        text = json.dumps(data, separators=(',', ':'), allow_nan=False)
        text = text.replace('</', '<\\/')
        return (f'<div class="explorable" data-explorable="{html.escape(name)}">'
                f'<script type="application/json" class="explorable-data">'
                f'{text}</script></div>')

    return _PLACEHOLDER.sub(fill, html_text)


def on_page_content(html_text, page, config, files):
    if 'data-explorable=' not in html_text:
        return html_text
    figures_dir = Path(config.docs_dir) / 'figures'
    return embed(html_text, figures_dir, page.file.src_uri)
