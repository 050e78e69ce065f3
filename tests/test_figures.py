"""
The figure pipeline: stamped, self-contained SVGs, atomic writes, and measured numbers in the
text that agree with the committed measurements.
"""
import json
import os
import re
import stat
import subprocess
import sys

import pytest

from labml_nn_bn import figure_tools, figures, measured
from site_build import ROOT


def test_svg_is_self_contained_and_stamped(tmp_path):
    plt = figure_tools.pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    ax.set_title('A title')
    text = figure_tools.stamp('MNIST (5k)', '100 steps', figure_tools.describe_device('cpu'), date='2026-01-02')
    path = figure_tools.save_svg(fig, tmp_path / 'a.svg', text)
    svg = path.read_text()
    assert svg.lstrip().startswith('<?xml') and '</svg>' in svg
    # Text is drawn as paths: no font is needed and none is requested
    assert '@font-face' not in svg and 'font-family' not in svg
    assert not re.search(r'(?:href|src)="(?:https?:)?//', svg)
    # The stamp is in the figure, glyphs as paths, kept as a comment by Matplotlib
    assert 'MNIST (5k) · 100 steps · CPU' in svg and '2026-01-02' in svg
    # Unchanged figures give unchanged files
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    ax.set_title('A title')
    assert figure_tools.save_svg(fig, tmp_path / 'b.svg', text).read_text() == svg


def _stamps(svg: str):
    # Matplotlib keeps each text as a comment before its glyphs; a stamp joins its parts by " · "
    return [t for t in re.findall(r'<!-- (.*?) -->', svg) if ' · ' in t]


def test_a_diagram_gets_no_stamp_and_a_computation_says_what_computed_it(tmp_path):
    plt = figure_tools.pyplot()
    for name, text in (('diagram', None),
                       ('computed', figure_tools.computed_stamp('labml_nn_bn.BatchNorm', 'CPU',
                                                                date='2026-01-02'))):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.set_title('A title')
        svg = figure_tools.save_svg(fig, tmp_path / f'{name}.svg', text).read_text()
        assert _stamps(svg) == ([] if text is None else
                                ['computed by labml_nn_bn.BatchNorm · CPU · 2026-01-02'])


def test_committed_diagrams_carry_no_run_stamp_and_every_other_figure_one():
    from labml_nn_bn.batch_norm_pictures import DIAGRAMS
    svgs = sorted(figures.FIGURES_DIR.glob('*.svg'))
    assert set(DIAGRAMS) <= {p.name for p in svgs}
    for path in svgs:
        stamps = _stamps(path.read_text())
        if path.name in DIAGRAMS:
            assert stamps == [], f'{path.name} is a diagram, stamped {stamps}'
        else:
            assert len(stamps) == 1 and 'torch ' in stamps[0], (path.name, stamps)


def test_write_atomically_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / 'x.json'
    target.write_text('old')

    def broken_replace(src, dst):
        raise OSError('disk full')

    monkeypatch.setattr(figure_tools.os, 'replace', broken_replace)
    with pytest.raises(OSError):
        figure_tools.write_atomically(target, b'new')
    assert target.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['x.json']


@pytest.mark.parametrize('umask', [0o022, 0o077, 0o002])
def test_write_atomically_gives_the_mode_of_an_ordinary_file(tmp_path, umask):
    path = tmp_path / 'out.json'
    old = os.umask(umask)
    try:
        figure_tools.write_atomically(path, b'{}')
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def _figures_main(argv, capsys):
    try:
        figures.main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_a_bad_out_is_refused_before_any_run(tmp_path, capsys, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError('make_all ran')

    monkeypatch.setattr(figures, 'make_all', must_not_run)
    (tmp_path / 'afile').write_text('x')
    for out, message in [(tmp_path / 'afile', 'afile is a file, expected a folder'),
                         (tmp_path / 'afile' / 'figs', 'afile is a file, expected a folder')]:
        code, err = _figures_main(['--smoke', '--out', str(out)], capsys)
        assert code == 2
        assert 'Traceback' not in err
        assert err.splitlines()[-1].startswith('python -m labml_nn_bn.figures: error: argument '
                                               '--out: '), err
        assert message in err


def test_a_failed_write_is_one_line(tmp_path, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise PermissionError(13, 'Permission denied', str(tmp_path / 'x.svg'))

    monkeypatch.setattr(figures, 'make_all', fail)
    code, err = _figures_main(['--smoke', '--out', str(tmp_path)], capsys)
    assert code == 1
    assert err == f'python -m labml_nn_bn.figures: error: {tmp_path / "x.svg"}: Permission denied\n'


def test_help_shows_the_smoke_default(capsys):
    with pytest.raises(SystemExit):
        figures.main(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert '--smoke tiny runs' in text and '(default: off, the full runs)' in text


def test_quotes_are_checked_and_updated(tmp_path):
    (tmp_path / 'docs' / 'figures').mkdir(parents=True)
    figure_tools.save_values(tmp_path / 'docs' / 'figures' / 'exp.json',
                             {'bn': {'accuracy': 0.976}, 'steps': 50000}, 'stamp')
    readme = tmp_path / 'README.md'
    readme.write_text('BN reaches <!-- measured exp:bn.accuracy .1% -->97.7%<!-- /measured --> '
                      'in <!-- measured exp:steps ,d -->50,000<!-- /measured --> steps.\n')
    problems = measured.check_quotes(tmp_path / 'docs' / 'figures', root=tmp_path)
    assert len(problems) == 1 and "'97.7%'" in problems[0] and "'97.6%'" in problems[0]
    assert measured.update_quotes(tmp_path / 'docs' / 'figures', root=tmp_path) == [readme]
    assert '-->97.6%<!--' in readme.read_text()
    assert measured.check_quotes(tmp_path / 'docs' / 'figures', root=tmp_path) == []
    readme.write_text('<!-- measured exp:bn.missing -->1<!-- /measured -->')
    assert 'no value' in measured.check_quotes(tmp_path / 'docs' / 'figures', root=tmp_path)[0]


def test_every_quote_in_the_repository_matches_the_committed_measurements():
    assert measured.check_quotes(figures.FIGURES_DIR) == []


def test_make_figures_smoke_writes_every_figure_and_each_is_committed(tmp_path):
    cmd = [sys.executable, '-m', 'labml_nn_bn.figures', '--smoke', '--out', str(tmp_path)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    # One line per maker: `name: a.svg, a.json (1.2 s)`
    made = {}
    for line in result.stdout.splitlines():
        m = re.match(r'([\w-]+): (.*) \([\d.]+ s\)$', line)
        if m:
            made[m.group(1)] = m.group(2).split(', ')
    assert sorted(made) == sorted(figures.MAKERS), result.stdout
    for name, files in made.items():
        assert any(f.endswith('.svg') for f in files), f'{name} made no figure'
        for f in files:
            assert (tmp_path / f).stat().st_size > 0, f
            # The committed version of every figure is there for the site
            assert (figures.FIGURES_DIR / f).exists(), f'{f} is not committed: run `make figures`'
        for f in files:
            if f.endswith('.svg'):
                assert '</svg>' in (tmp_path / f).read_text()
    # A smoke run never touches the committed figures or the quotes
    assert 'updated quotes' not in result.stdout


def test_non_finite_values_are_refused_and_bad_quotes_name_their_file(tmp_path):
    with pytest.raises(ValueError):
        figure_tools.save_values(tmp_path / 'x.json', {'loss': float('nan')}, 'stamp')
    assert not (tmp_path / 'x.json').exists()
    (tmp_path / 'docs' / 'figures').mkdir(parents=True)
    figure_tools.save_values(tmp_path / 'docs' / 'figures' / 'exp.json', {'name': 'text'}, 'stamp')
    (tmp_path / 'README.md').write_text('\n\n<!-- measured exp:name .2% -->x<!-- /measured -->\n')
    with pytest.raises(ValueError, match=r'README.md:3: '):
        measured.update_quotes(tmp_path / 'docs' / 'figures', root=tmp_path)


def test_the_site_hides_the_markers_and_keeps_the_paragraph():
    import markdown
    from conftest import load_annotate_hook
    hook = load_annotate_hook()
    text = ('With batch norm it reaches\n'
            '<!-- measured mnist:bn.accuracy_test .2% -->97.80%<!-- /measured --> test accuracy.')
    html_text = markdown.Markdown().convert(hook.strip_measured_markers(text))
    assert html_text == '<p>With batch norm it reaches\n97.80% test accuracy.</p>'
    # The hook's pattern and measured.py's are the same syntax: every quote is stripped
    for path in measured.quoting_files():
        if path.name != 'measured.py':
            assert 'measured ' not in hook.strip_measured_markers(
                '\n'.join(m.group(0) for m in measured.QUOTE.finditer(path.read_text()))), path


# ## What `make figures` does to the text (issue 21: tests that a planted bug would fail)
def _fake_maker(monkeypatch, accuracy: float):
    """A figure maker that writes `exp.json` with `accuracy`, registered as the only one."""
    import types
    module = types.ModuleType('labml_nn_bn_fake_maker')

    def make_figures(out_dir, smoke):
        return [figure_tools.save_values(out_dir / 'exp.json', {'runs': [{'accuracy': accuracy}]},
                                         'stamp')]

    module.make_figures = make_figures
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(figures, 'MAKERS', {'exp': module.__name__})


def test_a_full_run_rewrites_the_quotes_and_a_smoke_run_does_not(tmp_path, monkeypatch, capsys):
    root = tmp_path / 'repo'
    monkeypatch.setattr(figures, 'ROOT', root)
    monkeypatch.setattr(figures, 'FIGURES_DIR', root / 'docs' / 'figures')
    monkeypatch.setattr(figures, 'SMOKE_DIR', root / 'test-output' / 'figures-smoke')
    readme = root / 'README.md'
    readme.parent.mkdir(parents=True)
    stale = 'Accuracy <!-- measured exp:runs.0.accuracy .1% -->50.0%<!-- /measured -->.\n'
    readme.write_text(stale)
    _fake_maker(monkeypatch, 0.976)
    figures.main(['--smoke', '--out', str(tmp_path / 'smoke')])
    assert readme.read_text() == stale
    figures.main([])
    assert (root / 'docs' / 'figures' / 'exp.json').exists()
    assert readme.read_text() == stale.replace('50.0%', '97.6%')
    assert 'updated quotes in README.md' in capsys.readouterr().out


def test_a_quote_past_the_end_of_a_list_is_a_clear_problem(tmp_path):
    folder = tmp_path / 'docs' / 'figures'
    figure_tools.save_values(folder / 'exp.json', {'runs': [{'a': 1}, {'a': 2}]}, 'stamp')
    with pytest.raises(ValueError, match=r"exp.json has no value 'runs.2.a' \(runs has 2 items, "
                                         r"numbered from 0\)"):
        measured.value(folder, 'exp', 'runs.2.a')
    assert measured.value(folder, 'exp', 'runs.1.a') == 2
    (tmp_path / 'README.md').write_text('<!-- measured exp:runs.2.a d -->2<!-- /measured -->\n')
    problems = measured.check_quotes(folder, root=tmp_path)
    assert len(problems) == 1 and problems[0].startswith('README.md:1: ') and \
        'runs has 2 items' in problems[0]
    with pytest.raises(ValueError, match=r'README.md:1: .*runs has 2 items'):
        measured.update_quotes(folder, root=tmp_path)


@pytest.mark.parametrize('finished', [0, 1])
def test_ctrl_c_in_make_figures_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch, finished):
    def interrupted(out_dir, smoke, only, written):
        written += [tmp_path / 'a.svg', tmp_path / 'a.json'][:2 * finished]
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, 'make_all', interrupted)
    monkeypatch.delenv('LABML_NN_BN_TRACEBACK', raising=False)
    code, err = _figures_main(['--smoke', '--out', str(tmp_path)], capsys)
    assert code == 130
    assert 'Traceback' not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('python -m labml_nn_bn.figures: interrupted; ')
    assert ('nothing was written' in lines[0]) == (finished == 0)


def test_ctrl_c_in_a_benchmark_is_one_line_and_exit_130(tmp_path):
    # A benchmark interrupted while it measures: the real script, stopped by SIGINT
    script = tmp_path / 'slow.py'
    script.write_text('import sys, os, signal\n'
                      f'sys.path.insert(0, {str(ROOT / "benchmarks")!r})\n'
                      'import cli_checks\n'
                      'def main():\n'
                      '    os.kill(os.getpid(), signal.SIGINT)\n'
                      '    while True: pass\n'
                      'cli_checks.run(main)\n')
    env = {k: v for k, v in os.environ.items() if k != 'LABML_NN_BN_TRACEBACK'}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 130
    assert result.stderr.strip() == 'slow.py: interrupted; nothing was written'


def test_every_benchmark_script_runs_its_main_through_the_interrupt_handler():
    for path in sorted((ROOT / 'benchmarks').glob('*.py')):
        text = path.read_text()
        if "if __name__ == '__main__':" in text:
            block = text.split("if __name__ == '__main__':", 1)[1]
            assert 'cli_checks.run(main' in block, path.name


def test_save_figure_writes_the_drawing_and_its_values_with_one_stamp(tmp_path):
    drawn = []

    def draw(values, plt):
        drawn.append(values)
        fig, ax = plt.subplots()
        ax.plot(values['x'], values['y'])
        return fig

    values = {'x': [0, 1, 2], 'y': [0.5, 0.25, 0.125]}
    paths = figure_tools.save_figure(tmp_path / 'new', 'demo', draw, values, 'a stamp')
    assert paths == [tmp_path / 'new' / 'demo.svg', tmp_path / 'new' / 'demo.json']
    assert drawn == [values]
    assert json.loads(paths[1].read_text()) == {'stamp': 'a stamp', 'values': values}
    # The same file as saving the drawing and the values one by one
    figure_tools.save_svg(draw(values, figure_tools.pyplot()), tmp_path / 'one.svg',
                          'a stamp')
    assert paths[0].read_bytes() == (tmp_path / 'one.svg').read_bytes()
