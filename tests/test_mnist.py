"""
Tests of the MNIST experiment (`labml_nn_bn.experiments.mnist`, also reachable under its first
name `labml_nn_bn.mnist`) on the offline 5k subset, on CPU. The command line's bad-input cases
are in test_trainer.py.
"""
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from labml_nn_bn import BatchNorm, data
from labml_nn_bn.experiments import mnist, trainer


def conf(**overrides):
    c = mnist.Configs()
    c.dataset = 'mnist-5k'
    c.device = 'cpu'
    for k, v in overrides.items():
        setattr(c, k, v)
    return c


@pytest.fixture(scope='module')
def two_epoch_runs():
    """The quality-bar run (2 epochs, batch 64, Adam 1e-3), twice with the same seed."""
    return mnist.train(conf()), mnist.train(conf())


def test_reaches_96_percent_in_two_epochs_on_the_offline_subset(two_epoch_runs):
    result, _ = two_epoch_runs
    assert result.dataset.startswith('MNIST 5k subset')
    assert len(result.history) == 2
    assert result.test_accuracy >= 0.96, result.history
    # "Well under a minute" on this machine: about 3 s measured; a loose bound, not a benchmark
    assert result.seconds < 60


def test_training_is_deterministic_under_a_fixed_seed(two_epoch_runs):
    first, second = two_epoch_runs
    assert first.history == second.history


def test_model_with_and_without_batch_norm():
    with_bn = mnist.Model(batch_norm=True)
    assert sum(isinstance(m, BatchNorm) for m in with_bn.modules()) == 3
    assert with_bn.conv1.bias is None and with_bn.conv2.bias is None and with_bn.fc1.bias is None
    without = mnist.Model(batch_norm=False)
    assert not any(isinstance(m, (BatchNorm, torch.nn.modules.batchnorm._BatchNorm)) for m in without.modules())
    assert without.conv1.bias is not None and without.fc1.bias is not None
    torch_bn = mnist.Model(batch_norm=True, bn_impl='torch')
    assert isinstance(torch_bn.bn1, torch.nn.BatchNorm2d) and isinstance(torch_bn.bn3, torch.nn.BatchNorm1d)
    # The same parameter and buffer names, so a model trained with one loads into the other
    torch_bn.load_state_dict(with_bn.state_dict())
    x = torch.randn(4, 1, 28, 28)
    assert with_bn(x).shape == (4, 10)
    # FastBatchNorm: the same state, and on the CPU the same numbers as BatchNorm
    fast = mnist.Model(batch_norm=True, bn_impl='fast')
    assert type(fast.bn1).__name__ == 'FastBatchNorm' and type(fast.bn3).__name__ == 'FastBatchNorm'
    fast.load_state_dict(with_bn.state_dict())
    torch.testing.assert_close(fast(x), with_bn(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="bn_impl must be one of 'ours', 'fast', 'torch', got 'cudnn'"):
        mnist.Model(bn_impl='cudnn')


def test_evaluation_uses_running_statistics():
    # In eval() mode the result cannot depend on how the test set is batched
    torch.manual_seed(0)
    model = mnist.Model()
    dataset = data.load_mnist_5k()
    tensors = data.DeviceData(dataset, torch.device('cpu'))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    mnist.train_epoch(model, optimizer, tensors.train_x[:640], tensors.train_y[:640], 64,
                      torch.Generator().manual_seed(0))
    assert model.training
    x, y = tensors.test_x[:200], tensors.test_y[:200]
    loss_big, acc_big = mnist.evaluate(model, x, y, batch_size=200)
    # The training mode is restored, so a hook may evaluate in the middle of training
    assert model.training
    loss_small, acc_small = mnist.evaluate(model, x, y, batch_size=7)
    assert acc_big == acc_small
    assert loss_big == pytest.approx(loss_small, rel=1e-5)


def test_optimizer_and_device_choices():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(mnist.make_optimizer('sgd', params, 0.1), torch.optim.SGD)
    with pytest.raises(ValueError, match="optimizer must be 'adam' or 'sgd', got 'lbfgs'"):
        mnist.make_optimizer('lbfgs', params, 0.1)
    assert mnist.pick_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')


def _cli(args, cwd, home, module='labml_nn_bn.mnist'):
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-m', module] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_old_module_name_is_the_same_experiment():
    from labml_nn_bn import mnist as old
    for name in ['Model', 'Configs', 'Result', 'train', 'run', 'main', 'parse_args', 'evaluate',
                 'train_epoch', 'make_optimizer', 'pick_device', 'make_figures']:
        assert getattr(old, name) is getattr(mnist, name), name
    # Only the experiment's file is a page of the site
    assert not old.__doc__.lstrip().startswith('---')
    assert mnist.__doc__.lstrip().startswith('---')


def test_command_line_trains_offline_and_stores_the_run_locally(tmp_path):
    # The first name of the command, `python -m labml_nn_bn.mnist`, still works
    home = tmp_path / 'home'
    home.mkdir()
    out = _cli(['--dataset', 'auto', '--no-download', '--data-dir', str(tmp_path / 'none'),
                '--epochs', '1', '--train-limit', '640', '--device', 'cpu'], tmp_path, home)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert 'MNIST 5k subset' in text
    assert 'using the offline MNIST subset instead' in text
    assert 'accuracy.test' in text
    assert 'Final test accuracy:' in text
    # The run is stored under logs/ of the working folder (no .labml.yaml above it)
    runs = list((tmp_path / 'logs' / 'mnist_batch_norm').iterdir())
    assert len(runs) == 1 and (runs[0] / 'run.yaml').exists()


def test_command_line_help_lists_the_options(tmp_path):
    for module in ('labml_nn_bn.experiments.mnist', 'labml_nn_bn.mnist'):
        out = _cli(['--help'], tmp_path, tmp_path, module)
        assert out.returncode == 0
        # The usage line names the command the user typed
        assert out.stdout.startswith(f'usage: python -m {module} '), out.stdout[:80]
        for option in ['--epochs', '--batch-size', '--lr', '--optimizer', '--device', '--bn, --no-bn',
                       '--dataset', '--data-dir', '--seed', '--logs-dir', '--fast-step']:
            assert option in out.stdout, option


def test_compiled_step_gives_the_plain_paths_results():
    # The compiled step through torch.compile's graph capture (Dynamo, and AOTAutograd for the
    # backward), with the 'aot_eager' backend, which runs the captured graphs without generating
    # code (on the CPU the generated code is not used, see the trainer)
    tensors = mnist.load_data(conf(train_limit=256, epochs=1))
    results = {}
    for batch_norm in (True, False):
        for mode in ('off', 'compile'):
            generator = trainer.seed_everything(0)
            model = mnist.Model(batch_norm=batch_norm)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            step, text = trainer.make_fast_step(model, optimizer, mode, tensors.device,
                                                compile_backend='aot_eager')
            train = trainer.train_epoch(model, optimizer, tensors.train_x, tensors.train_y, 64,
                                        generator, step_fn=step)
            results[batch_norm, mode] = train, trainer.evaluate(model, tensors.test_x, tensors.test_y)
        assert text == 'fast step: forward, backward and optimizer compiled with torch.compile ' \
                       '(aot_eager) on cpu'
        (plain_train, plain_test), (fast_train, fast_test) = \
            results[batch_norm, 'off'], results[batch_norm, 'compile']
        assert fast_test[1] == plain_test[1]
        assert fast_train[0] == pytest.approx(plain_train[0], rel=1e-5)
        assert fast_test[0] == pytest.approx(plain_test[0], rel=1e-4)


def test_compile_on_cpu_falls_back_to_the_plain_step():
    tensors = mnist.load_data(conf(train_limit=128, epochs=1))
    result = mnist.train(conf(train_limit=128, epochs=1, fast_step='compile'), tensors)
    assert result.step.startswith('fast step: torch.compile is used on GPUs only')
    assert result.step.endswith('using the plain step')
    assert result.history == mnist.train(conf(train_limit=128, epochs=1), tensors).history


def test_cuda_graph_step_falls_back_on_cpu():
    tensors = mnist.load_data(conf(train_limit=128, epochs=1))
    result = mnist.train(conf(train_limit=128, epochs=1, fast_step='cuda-graph'), tensors)
    assert result.step == 'fast step: CUDA graphs need a CUDA device, got cpu; using the plain step'
    plain = mnist.train(conf(train_limit=128, epochs=1), tensors)
    assert result.history == plain.history
