"""
Tests of the shared trainer (`labml_nn_bn.experiments.trainer`) and of how the experiments'
command line behaves with bad input: one line on stderr, a non-zero exit, no traceback and no
run folder left behind; a diverging run stops at its first non-finite loss; runs go where
--logs-dir or labml's configuration says, with one clear line when nothing is writable; plain
output when stdout is not a terminal.
"""
import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Tuple

import pytest
import torch

from conftest import ROOT
from labml_nn_bn import data
from labml_nn_bn.experiments import cli, mnist, trainer

QUICK = ['--dataset', 'mnist-5k', '--device', 'cpu', '--epochs', '1', '--train-limit', '128']


def _main(argv, capsys):
    """Runs the MNIST command line in this process: (exit status, stdout, stderr)."""
    try:
        mnist.main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _assert_one_line_error(code, err, expected_code, *fragments):
    assert code == expected_code, err
    assert 'Traceback' not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f'{mnist.PROG}: error: '), err
    for fragment in fragments:
        assert fragment in last, last


def _runs(folder: Path):
    return sorted(p for p in folder.rglob('run.yaml')) if folder.exists() else []


BAD_ARGUMENTS = [
    (['--epochs', '0'], 'argument --epochs: expected at least 1, got 0'),
    (['--epochs', '-3'], 'argument --epochs: expected at least 1, got -3'),
    (['--batch-size', '1'], 'argument --batch-size: expected at least 2, got 1'),
    (['--batch-size', '-64'], 'argument --batch-size: expected at least 2, got -64'),
    (['--lr', 'inf'], 'argument --lr: expected a finite number > 0, got inf'),
    (['--lr', 'nan'], 'argument --lr: expected a finite number > 0, got nan'),
    (['--lr', '0'], 'argument --lr: expected a finite number > 0, got 0.0'),
    (['--lr', '-0.1'], 'argument --lr: expected a finite number > 0, got -0.1'),
    (['--train-limit', '-1'], 'argument --train-limit: expected 0 (all) or more, got -1'),
    (['--device', 'tpu0'], "argument --device: unknown device 'tpu0'"),
    (['--optimizer', 'rmsprop'], "argument --optimizer: invalid choice: 'rmsprop'"),
    (['--fast-step', 'turbo'], "argument --fast-step: invalid choice: 'turbo'"),
    (['--epochs', 'two'], "argument --epochs: invalid int value: 'two'"),
    (['--seed', '-1'], 'argument --seed: expected an integer >= 0 and < 2**64, got -1'),
    (['--seed', str(2 ** 64)], f'argument --seed: expected an integer >= 0 and < 2**64, got {2 ** 64}'),
    (['--dataset', 'idx'], 'argument --dataset: idx needs --data-dir'),
    (['--dataset', 'idx', '--data-dir', '/nonexistent-labml-nn-bn'],
     'argument --data-dir: expected an existing folder with the MNIST IDX files for --dataset idx'),
    (['--dataset', 'mnist', '--no-download', '--data-dir', '/nonexistent-labml-nn-bn'],
     'argument --data-dir: expected an existing folder'),
]


@pytest.mark.parametrize('argv,message', BAD_ARGUMENTS, ids=[' '.join(a) for a, _ in BAD_ARGUMENTS])
def test_meaningless_arguments_are_refused_before_anything_runs(argv, message, tmp_path,
                                                                monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(argv, capsys)
    _assert_one_line_error(code, err, 2, message)
    # Refused before the data was loaded and before a labml run was created
    assert 'Data:' not in out
    assert not (tmp_path / 'logs').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')
def test_cuda_is_refused_up_front_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(['--device', 'cuda'], capsys)
    _assert_one_line_error(code, err, 2, "argument --device: device 'cuda': CUDA is not available",
                           '--device cpu')
    assert 'Data:' not in out and not (tmp_path / 'logs').exists()


@pytest.mark.parametrize('argv,fragments', [
    (['--batch-size', '4001'], ['4001 is larger than the 4,000 training images',
                                'use a smaller batch']),
    (['--batch-size', '64', '--train-limit', '10'], ['64 is larger than the 10 training images',
                                                     'or a larger --train-limit']),
])
def test_a_batch_larger_than_the_data_is_refused_before_the_run(argv, fragments, tmp_path,
                                                                monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(['--dataset', 'mnist-5k', '--device', 'cpu'] + argv, capsys)
    _assert_one_line_error(code, err, 2, *fragments)
    assert not (tmp_path / 'logs').exists()


def test_bad_data_is_one_line_and_leaves_no_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'idx').mkdir()
    code, out, err = _main(['--dataset', 'idx', '--data-dir', str(tmp_path / 'idx')], capsys)
    _assert_one_line_error(code, err, 1, 'expected train-images-idx3-ubyte.gz')
    assert not (tmp_path / 'logs').exists()


@pytest.mark.parametrize('option', ['--data-dir', '--logs-dir'])
def test_a_file_given_as_a_folder_is_the_first_and_only_line(option, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'afile').write_text('x')
    code, out, err = _main(QUICK + [option, str(tmp_path / 'afile')], capsys)
    _assert_one_line_error(code, err, 2, f'argument {option}: {tmp_path / "afile"} is a file, '
                                         f'expected a folder')
    assert 'Data:' not in out and not (tmp_path / 'logs').exists()


def test_an_unwritable_logs_dir_is_refused_before_the_data_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'afile').write_text('x')
    code, out, err = _main(QUICK + ['--logs-dir', str(tmp_path / 'afile' / 'logs')], capsys)
    _assert_one_line_error(code, err, 2, 'argument --logs-dir: cannot write to')
    assert 'Data:' not in out and 'LABML WARNING' not in out


def test_a_train_limit_larger_than_the_data_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(QUICK[:-1] + ['4001'], capsys)
    _assert_one_line_error(code, err, 2, 'argument --train-limit: expected at most the 4,000 '
                                         'training images of this data set (or 0 for all), got 4,001')
    assert not (tmp_path / 'logs').exists()


def test_output_paths_are_checked_up_front(tmp_path):
    (tmp_path / 'afile').write_text('x')
    cli.check_output_file(tmp_path / 'new' / 'deeper' / 'x.svg', '--figure')
    cli.check_output_folder(tmp_path / 'new' / 'deeper', '--out')
    assert not (tmp_path / 'new').exists(), 'a check must not create anything'
    with pytest.raises(cli.UsageError, match=r'argument --figure: .* is a folder, expected a file'):
        cli.check_output_file(tmp_path, '--figure')
    with pytest.raises(cli.UsageError, match=r'argument --figure: .*afile is a file, expected a folder'):
        cli.check_output_file(tmp_path / 'afile' / 'x.svg', '--figure')
    with pytest.raises(cli.UsageError, match=r'argument --out: .*afile is a file, expected a folder'):
        cli.check_output_folder(tmp_path / 'afile', '--out')
    if Path('/proc/self').exists():
        # Not writable even to root: the check writes a test file instead of trusting os.access
        with pytest.raises(cli.UsageError, match='argument --out: cannot write to /proc'):
            cli.check_output_folder('/proc/labml-nn-bn-x', '--out')


def test_an_os_error_while_writing_is_one_line(capsys):
    def fail():
        raise FileNotFoundError(2, 'No such file or directory', '/proc/x.svg')

    with pytest.raises(SystemExit) as exit_:
        cli.run_main(fail, 'prog')
    assert exit_.value.code == 1
    assert capsys.readouterr().err == 'prog: error: /proc/x.svg: No such file or directory\n'


def test_given_options_are_those_on_the_command_line():
    parser = cli.make_parser('prog', '')
    cli.add_training_arguments(parser)
    parser.add_argument('--smoke', action='store_true')
    assert cli.given_options(parser, ['--smoke', '--seed', '0', '--lr', '0.5']) == \
        {'smoke', 'seed', 'learning_rate'}
    # The parser's defaults are left as they were
    assert parser.parse_args([]).seed == 0


# ## Divergence
class _NaNAt(torch.nn.Module):
    """A model whose output becomes NaN from the `at`-th training forward pass on."""

    def __init__(self, at: int):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.at, self.calls = at, 0

    def forward(self, x):
        self.calls += 1
        out = self.linear(x)
        return out * float('nan') if self.calls >= self.at else out


@pytest.mark.parametrize('check_every', [1, 2, 100])
def test_training_stops_at_the_first_non_finite_loss(check_every):
    model = _NaNAt(at=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    seen = []
    with pytest.raises(trainer.DivergenceError) as error:
        trainer.train_steps(model, optimizer, trainer.batch_stream(x, y, 8, torch.Generator()),
                            20, on_step=lambda s: seen.append(s.step), check_every=check_every)
    # The error names the first bad step even when the flag is read only every few steps
    assert error.value.step == 3 and math.isnan(error.value.loss)
    message = str(error.value)
    assert 'the loss is nan at step 3' in message and '--lr (now 0.1)' in message
    assert 'check the data' in message
    if check_every == 1:
        assert seen == [1, 2]
    # With a larger interval training stops at the next check (or at the end, if sooner)
    assert max(seen) <= min(2 + check_every, 20)


def test_a_diverging_run_exits_non_zero_with_one_line(tmp_path):
    # 1e30 passes the up-front checks (finite, positive) and makes the loss NaN at once
    out = _cli(QUICK + ['--lr', '1e30'], tmp_path, tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert 'Traceback' not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert 'error: training diverged: the loss is nan at step' in last
    assert 'try a lower learning rate' in last
    assert 'Final test accuracy' not in out.stdout


# ## Where runs go
def _cli(args, cwd, home, module='labml_nn_bn.experiments.mnist'):
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop('LABML_NN_BN_TRACEBACK', None)
    return subprocess.run([sys.executable, '-m', module] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_logs_dir_stores_the_run_there_and_output_is_plain_when_not_a_terminal(tmp_path):
    home = tmp_path / 'home'
    home.mkdir()
    out = _cli(QUICK + ['--logs-dir', str(tmp_path / 'runs')], tmp_path, home)
    assert out.returncode == 0, out.stderr
    assert len(_runs(tmp_path / 'runs' / 'mnist_batch_norm')) == 1
    assert not (tmp_path / 'logs').exists()
    # stdout is a pipe here: no carriage-return redraws, no colour codes, one line per epoch
    text = out.stdout + out.stderr
    assert '\r' not in text and '\x1b' not in text
    assert sum(line.startswith('epoch 1/1: ') for line in out.stdout.splitlines()) == 1
    assert 'Final test accuracy: ' in out.stdout


@pytest.mark.skipif(not hasattr(os, 'openpty'), reason='needs a pseudo-terminal')
def test_a_terminal_keeps_labmls_progress_bar(tmp_path):
    # Under a (pseudo-)terminal the run shows labml's redrawn progress line and finishes
    primary, secondary = os.openpty()
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, '-m', 'labml_nn_bn.experiments.mnist'] + QUICK +
                               ['--logs-dir', str(tmp_path / 'runs')], cwd=tmp_path, env=env,
                               stdout=secondary, stderr=subprocess.PIPE)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 1 << 16)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    code = process.wait(timeout=300)
    stderr = process.stderr.read().decode()
    text = b''.join(chunks).decode(errors='replace')
    assert code == 0, stderr
    assert 'Train:' in text and '\r' in text and '\x1b[' in text
    assert 'Final test accuracy' in text
    assert 'epoch 1/1: ' not in text


def test_labml_configuration_is_honoured_without_logs_dir(tmp_path, monkeypatch, capsys):
    # .labml.yaml in a parent folder says where runs go, relative to that file
    (tmp_path / '.labml.yaml').write_text('experiments_path: my_runs\n')
    work = tmp_path / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = _main(QUICK, capsys)
    assert code == 0, err
    assert len(_runs(tmp_path / 'my_runs' / 'mnist_batch_norm')) == 1
    assert not (work / 'logs').exists()
    # A later run in the same process with --logs-dir goes there, and the next without it
    # goes back to labml's configuration
    code, _, err = _main(QUICK + ['--logs-dir', str(tmp_path / 'other')], capsys)
    assert code == 0, err
    assert len(_runs(tmp_path / 'other')) == 1
    assert _main(QUICK + ['--no-bn'], capsys)[0] == 0
    assert len(_runs(tmp_path / 'my_runs' / 'mnist_no_batch_norm')) == 1


@pytest.fixture
def unwritable_dir(tmp_path):
    """A folder this process cannot write into."""
    if os.geteuid() != 0:
        folder = tmp_path / 'read-only'
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    # root writes through permission bits; sysfs refuses new entries even to root
    folder = Path('/sys/kernel')
    try:
        (folder / 'labml-nn-bn-probe').mkdir()
    except OSError:
        yield folder
        return
    pytest.skip('no folder here is read-only to this user')


def test_read_only_folder_without_logs_dir_is_one_line(unwritable_dir, monkeypatch, capsys):
    monkeypatch.chdir(unwritable_dir)
    code, out, err = _main(QUICK, capsys)
    _assert_one_line_error(code, err, 1, f'cannot write to {unwritable_dir / "logs"}',
                           'pass --logs-dir with a writable folder')


def test_read_only_folder_with_logs_dir_works(unwritable_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(unwritable_dir)
    code, out, err = _main(QUICK + ['--logs-dir', str(tmp_path / 'runs')], capsys)
    assert code == 0, err
    assert len(_runs(tmp_path / 'runs')) == 1


def test_unwritable_home_is_one_line(unwritable_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('HOME', str(unwritable_dir))
    code, out, err = _main(QUICK, capsys)
    _assert_one_line_error(code, err, 1, f'cannot write to {unwritable_dir / ".labml"}',
                           'set HOME to a writable folder')
    assert not _runs(tmp_path / 'logs')


# ## --help
def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        mnist.parse_args(['--help'])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    entries, entry = [], None
    for line in text.split('options:', 1)[1].splitlines():
        if line.startswith('  -'):
            entry = [line]
            entries.append(entry)
        elif entry is not None and line.strip():
            entry.append(line)
    names = [e[0].split()[0].rstrip(',') for e in entries]
    for option in ['--epochs', '--batch-size', '--lr', '--optimizer', '--seed', '--fast-step',
                   '--device', '--bn', '--bn-impl', '--dataset', '--data-dir', '--download',
                   '--train-limit', '--logs-dir']:
        assert option in names, option
    for e in entries:
        if e[0].strip().startswith('-h'):
            continue
        assert '(default: ' in ' '.join(e), e


# ## Library pieces
def test_pick_device():
    assert trainer.pick_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    assert trainer.pick_device('cpu') == torch.device('cpu')
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        trainer.pick_device('gpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available here'):
            trainer.pick_device('cuda:0')


def test_check_values_refuses_each_bad_value_and_accepts_good_ones():
    cli.check_values(epochs=1, steps=1, batch_size=2, learning_rate=1e-3, train_limit=0,
                     device='cpu', fast_step='off')
    for bad in [dict(steps=0), dict(epochs=0), dict(batch_size=1), dict(learning_rate=float('inf')),
                dict(learning_rate=-1e-3), dict(train_limit=-2), dict(device='nope'),
                dict(fast_step='x')]:
        with pytest.raises(cli.UsageError):
            cli.check_values(**bad)


def test_train_steps_counts_steps_across_calls_and_batch_stream_is_endless():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    stream = trainer.batch_stream(x, y, 8, torch.Generator().manual_seed(0))
    steps = []
    # 20 images, batch 8: two batches an epoch; 5 steps need three epochs of the stream
    first = trainer.train_steps(model, optimizer, stream, 5, on_step=lambda s: steps.append(s.step))
    second = trainer.train_steps(model, optimizer, stream, 2, first_step=5,
                                 on_step=lambda s: steps.append(s.step))
    assert steps == [1, 2, 3, 4, 5, 6, 7]
    assert first.steps == 5 and first.images == 40 and second.images == 16
    with pytest.raises(ValueError, match='batch_size 64 is larger than the 20 training images'):
        next(trainer.batch_stream(x, y, 64, torch.Generator()))
    with pytest.raises(ValueError, match='ran out after 2 of 3 steps'):
        trainer.train_steps(model, optimizer, data.batches(x, y, 8, drop_last=True), 3)


def test_evaluate_uses_eval_mode_and_restores_the_mode():
    modes = []
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    model.register_forward_hook(lambda m, i, o: modes.append(m.training))
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    model.train()
    trainer.evaluate(model, x, y, batch_size=4)
    assert modes == [False] * 3 and model.training
    model.eval()
    trainer.evaluate(model, x, y)
    assert not model.training


def test_fast_step_falls_back_to_the_plain_step_without_cuda():
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match='fast step must be one of off, compile, cuda-graph'):
        trainer.make_fast_step(model, optimizer, 'fast', torch.device('cpu'))
    step, text = trainer.make_fast_step(model, optimizer, 'cuda-graph', torch.device('cpu'))
    assert text == 'fast step: CUDA graphs need a CUDA device, got cpu; using the plain step'
    loss, logits = step(torch.randn(8, 4), torch.randint(0, 3, (8,)))
    assert logits.shape == (8, 3) and torch.isfinite(loss)


# ## One line, not a traceback (issue 21)
def test_a_damaged_gzip_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    from test_data import _patterned, damaged_gzip, fake_mnist, idx_bytes, write_folder
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / 'idx'
    write_folder(folder, fake_mnist())
    bad = folder / 'train-images-idx3-ubyte.gz'
    bad.write_bytes(damaged_gzip(idx_bytes(_patterned(60), gz=False)))
    code, out, err = _main(['--dataset', 'idx', '--data-dir', str(folder), '--device', 'cpu'],
                           capsys)
    _assert_one_line_error(code, err, 1, f'{bad}: not a valid gzip file', 'fetch it again')
    assert not (tmp_path / 'logs').exists()


BAD_LABML_YAML = [
    ('bad-yaml', 'experiments_path: [\n', 'not valid YAML'),
    ('data-path-5', 'data_path: 5\n', 'expected data_path to be a folder (text), got 5'),
    ('experiments-path-5', 'experiments_path: 5\n',
     'expected experiments_path to be a folder (text), got 5'),
    ('a-list', '- logs\n', 'expected settings as `name: value` lines, got a list'),
    ('unknown-key', 'experiment_path: runs\n', "unknown setting 'experiment_path'"),
]


@pytest.mark.parametrize('logs_dir', [False, True], ids=['labml-config', 'logs-dir'])
@pytest.mark.parametrize('text,message', [b[1:] for b in BAD_LABML_YAML],
                         ids=[b[0] for b in BAD_LABML_YAML])
def test_a_malformed_labml_yaml_is_one_line_naming_it(text, message, logs_dir, tmp_path,
                                                      monkeypatch, capsys):
    (tmp_path / '.labml.yaml').write_text(text)
    work = tmp_path / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    argv = QUICK + (['--logs-dir', str(tmp_path / 'runs')] if logs_dir else [])
    code, out, err = _main(argv, capsys)
    _assert_one_line_error(code, err, 1, f'{tmp_path / ".labml.yaml"}: ', message,
                           'fix it or remove it')
    # Before the data was loaded
    assert 'Data:' not in out


def test_a_malformed_labml_yaml_is_one_line_for_a_figure_experiment(tmp_path, monkeypatch):
    (tmp_path / '.labml.yaml').write_text('data_path: 5\n')
    out = _cli(['--smoke', '--logs-dir', str(tmp_path / 'runs')], tmp_path, tmp_path,
               module='labml_nn_bn.experiments.detached_mean')
    assert out.returncode == 1, out.stderr
    assert 'Traceback' not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f'python -m labml_nn_bn.experiments.detached_mean: error: {tmp_path / ".labml.yaml"}: '
        f'expected data_path to be a folder (text), got 5; fix it or remove it (without it, '
        f'runs go to logs/ and data to data/ in the current folder)']


def _interrupted_exit(fn, prog='prog') -> int:
    """The exit status of `run_main(fn)`; a KeyboardInterrupt that escapes it fails the test
    (instead of stopping pytest)."""
    try:
        cli.run_main(fn, prog)
    except SystemExit as e:
        return e.code
    except KeyboardInterrupt:
        pytest.fail('KeyboardInterrupt escaped run_main')
    pytest.fail('run_main returned')


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert _interrupted_exit(interrupted) == 130
    assert capsys.readouterr().err == 'prog: interrupted; nothing was written\n'


def test_ctrl_c_during_a_run_says_the_run_folder_is_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def interrupted():
        with cli.labml_run('interrupted', {'a': 1}, logs_dir=tmp_path / 'runs', writers=()):
            raise KeyboardInterrupt

    assert _interrupted_exit(interrupted) == 130
    runs = _runs(tmp_path / 'runs' / 'interrupted')
    assert len(runs) == 1
    err = capsys.readouterr().err
    assert err == f'prog: interrupted; the labml run so far is kept in {runs[0].parent}\n'
    # The next call starts afresh
    assert _interrupted_exit(lambda: (_ for _ in ()).throw(KeyboardInterrupt)) == 130
    assert capsys.readouterr().err == 'prog: interrupted; nothing was written\n'


def test_an_output_file_of_a_previous_run_may_be_overwritten(tmp_path):
    figure = tmp_path / 'figure.svg'
    figure.write_text('<svg/>')
    cli.check_output_file(figure, '--figure')
    cli.check_values(figure=str(figure))


def test_the_fast_batch_norm_says_when_it_falls_back(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    code, out, err = _main(QUICK + ['--bn-impl', 'fast'], capsys)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith('Batch norm: ')]
    assert len(lines) == 1, out
    assert 'FastBatchNorm' in lines[0] and 'using BatchNorm' in lines[0]


@pytest.mark.parametrize('argv,message', [
    (['--dataset', 'mnist-5k', '--data-dir', '.'],
     'argument --data-dir: the offline subset (--dataset mnist-5k) reads no folder'),
    (['--no-bn', '--bn-impl', 'torch'],
     'argument --bn-impl: there is no batch norm to implement with --no-bn'),
    (['--no-bn', '--bn-impl', 'ours'],
     'argument --bn-impl: there is no batch norm to implement with --no-bn'),
])
def test_options_that_would_be_ignored_are_refused(argv, message, tmp_path, monkeypatch,
                                                   capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(['--device', 'cpu'] + argv, capsys)
    _assert_one_line_error(code, err, 2, message)
    assert 'Data:' not in out and not (tmp_path / 'logs').exists()


def test_the_library_refuses_a_folder_for_the_offline_subset(tmp_path):
    with pytest.raises(ValueError, match="dataset 'mnist-5k' reads no folder"):
        data.load_dataset('mnist-5k', tmp_path)


# ## What the loop returns (issue 21: tests that a planted bug would fail)
def test_train_steps_averages_over_images_not_over_steps():
    # Batches of 8, 2 and 5 images: a mean of the steps' means would weigh the two images of
    # the second batch like the eight of the first
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(15, 4), torch.randint(0, 3, (15,))
    batches = [(x[:8], y[:8]), (x[8:10], y[8:10]), (x[10:], y[10:])]
    seen = []

    def record(s):
        seen.append((s.loss.item(), (s.logits.argmax(1) == s.y).sum().item(), len(s.y)))

    stats = trainer.train_steps(model, optimizer, batches, on_step=record)
    images = sum(n for _, _, n in seen)
    assert (stats.steps, stats.images, images) == (3, 15, 15)
    assert stats.loss == pytest.approx(sum(loss * n for loss, _, n in seen) / images, rel=1e-6)
    assert stats.accuracy == pytest.approx(sum(c for _, c, _ in seen) / images)
    # The weighting matters here: the plain mean of the steps is another number
    assert stats.loss != pytest.approx(sum(loss for loss, _, _ in seen) / 3, rel=1e-3)


def test_by_default_training_on_a_cpu_stops_at_the_first_non_finite_step():
    # `check_every` left out: on a CPU every step is checked, so no step runs after the bad one
    model = _NaNAt(at=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    seen = []
    with pytest.raises(trainer.DivergenceError) as error:
        trainer.train_steps(model, optimizer, trainer.batch_stream(x, y, 8, torch.Generator()),
                            30, on_step=lambda s: seen.append(s.step))
    assert error.value.step == 4 and 'at step 4' in str(error.value)
    assert seen == [1, 2, 3] and model.calls == 4


def test_statistics_kept_puts_back_every_buffer_and_the_mode_even_on_an_error():
    from labml_nn_bn import BatchNorm
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), BatchNorm(4))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError):
        with trainer.statistics_kept(model):
            model.train()
            model(torch.randn(8, 3) + 5)
            assert model[1].num_batches_tracked.item() == 1
            raise RuntimeError('stop')
    assert not model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ## The helpers the experiments share
def test_train_watched_measures_first_and_returns_the_first_non_finite_step():
    model = _NaNAt(at=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    events = []
    diverged_at, seconds = trainer.train_watched(
        model, optimizer, (x, y), 8, torch.Generator(), 20,
        before=lambda: events.append('before'), on_step=lambda s: events.append(s.step))
    # The measurement before any update comes first; the run ends at its first bad step
    assert events == ['before', 1, 2] and diverged_at == 3 and seconds >= 0
    with pytest.raises(trainer.DivergenceError, match='at step 3'):
        trainer.train_watched(_NaNAt(at=3), optimizer, (x, y), 8, torch.Generator(), 20,
                              before=lambda: None, on_step=lambda s: None,
                              divergence_is_a_result=False)


def test_train_watched_trains_as_train_steps_over_batch_stream():
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))

    def weights(watched: bool):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(1)
        steps = []
        if watched:
            result = trainer.train_watched(model, optimizer, (x, y), 8, generator, 7,
                                           before=lambda: None,
                                           on_step=lambda s: steps.append(s.step))
            assert result[0] is None
        else:
            stream = trainer.batch_stream(x, y, 8, generator)
            trainer.train_steps(model, optimizer, stream, 7,
                                on_step=lambda s: steps.append(s.step))
        assert steps == list(range(1, 8))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    # The same batches in the same order (5 a pass: the stream runs into a second pass)
    assert torch.equal(weights(True), weights(False))


def test_one_cpu_thread_puts_the_settings_back_even_on_an_error():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError):
            with trainer.one_cpu_thread(torch.device('cpu')):
                assert torch.get_num_threads() == 1
                raise RuntimeError('stop')
        assert torch.get_num_threads() == 2
        # A GPU run keeps the CPU threads it has
        with trainer.one_cpu_thread(torch.device('cuda')):
            assert torch.get_num_threads() == 2
        subnormal = torch.tensor([1e-39])
        if torch.set_flush_denormal(True):  # False where the CPU cannot flush them
            torch.set_flush_denormal(False)
            with trainer.one_cpu_thread('cpu', flush_denormal=True):
                assert (subnormal * 1).item() == 0
            assert (subnormal * 1).item() != 0
    finally:
        torch.set_num_threads(threads)


def test_load_checked_data_limits_the_data_and_checks_the_batch_size():
    lines = []
    tensors, dataset = cli.load_checked_data('mnist-5k', None, False, 'cpu', seed=3,
                                             batch_size=64, train_limit=100,
                                             log=lines.append)
    assert len(tensors.train_y) == 100 and tensors.train_x.shape == (100, 1, 28, 28)
    assert len(lines) == 1 and lines[0].startswith(f'Data: {dataset} (')
    # The same images as `limit_training_data` draws with the same seed
    full, _ = cli.load_checked_data('mnist-5k', None, False, 'cpu', seed=3,
                                    batch_size=64, log=lambda line: None)
    x, _ = cli.limit_training_data(full.train_x, full.train_y, 100, 3)
    assert torch.equal(tensors.train_x, x)
    too_large = ('argument --batch-size: 128 is larger than the 100 training images; '
                 'use a smaller batch')
    with pytest.raises(cli.UsageError, match=too_large):
        cli.load_checked_data('mnist-5k', None, False, 'cpu', seed=3, batch_size=128,
                              train_limit=100, log=lambda line: None)


def _experiment_parser():
    parser = cli.make_parser('prog', 'an experiment')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--epochs', type=int, default=2)
    cli.add_logs_argument(parser)
    cli.add_figure_and_smoke_arguments(parser, smoke_help='seconds')
    return parser


def _different_seeds(args):
    if len(set(args.seeds)) != len(args.seeds):
        raise cli.UsageError(f'argument --seeds: expected different seeds, '
                             f'got {args.seeds}')


def test_parse_experiment_arguments_marks_the_given_options_and_runs_the_checks(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = cli.parse_experiment_arguments(_experiment_parser(),
                                          ['--smoke', '--seeds', '4'], _different_seeds)
    assert args.smoke and args.figure is None and args.seeds == [4]
    assert args.given == {'smoke', 'seeds'}
    refused = [(['--seeds', '1', '1'], 'argument --seeds: expected different seeds'),
               # The shared checks run first
               (['--epochs', '0', '--seeds', '1', '1'],
                'argument --epochs: expected at least 1, got 0'),
               (['--figure', str(tmp_path)],
                f'argument --figure: {tmp_path} is a folder, expected a file name')]
    for argv, message in refused:
        with pytest.raises(SystemExit) as exit_:
            cli.parse_experiment_arguments(_experiment_parser(), argv, _different_seeds)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith('usage: prog')
        assert err.splitlines()[-1].startswith(f'prog: error: {message}'), err
    help_text = _experiment_parser().format_help()
    assert '--figure FIGURE' in help_text
    assert 'also write the figure to this SVG file' in help_text


@dataclasses.dataclass
class _Settings:
    steps: int = 100
    seeds: Tuple[int, ...] = (0, 1)
    device: str = 'auto'


def test_settings_from_lays_the_given_options_on_the_smoke_settings():
    parser = cli.make_parser('prog', '')
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    cli.add_device_argument(parser)
    cli.add_figure_and_smoke_arguments(parser, smoke_help='seconds')
    smoke = _Settings(steps=5, seeds=(7,), device='cpu')

    def settings(argv):
        args = parser.parse_args(argv)
        args.given = cli.given_options(parser, argv)
        return cli.settings_from(args, _Settings, smoke)

    # Only what was written replaces a smoke setting; lists become tuples
    assert settings(['--smoke', '--seeds', '3', '4']) == _Settings(5, (3, 4), 'cpu')
    # Written at its default value, an option still replaces the smoke setting
    assert settings(['--smoke', '--steps', '100']) == _Settings(100, (7,), 'cpu')
    assert settings(['--smoke']) == smoke
    # Without --smoke: every option's value (--figure and --smoke are not settings)
    assert settings(['--steps', '9']) == _Settings(9, (0, 1), 'auto')
    assert settings([]) == _Settings()


def test_check_probe_size_refuses_a_probe_larger_than_the_test_set():
    cli.check_probe_size(1000, 1000)
    with pytest.raises(cli.UsageError) as error:
        cli.check_probe_size(1001, 1000)
    assert str(error.value) == ('argument --probe-size: expected at most the 1,000 '
                                'test images of this data set, got 1,001')
