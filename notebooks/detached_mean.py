# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     name: detached_mean.ipynb
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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/detached_mean.ipynb)
#
# # Normalising outside the gradient
#
# Section 2 of the [batch normalization paper](https://arxiv.org/abs/1502.03167) argues that
# normalising activations *outside* the gradient step fails: a bias before mean subtraction
# drifts without bound, and a scale before division by the standard deviation is thrown about (the paper saw models
# blow up).
# This notebook trains both, once with the statistics detached and once with the gradient
# flowing through them. The code and the argument are in
# [`labml_nn_bn/experiments/detached_mean.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/experiments/detached_mean.py)
# and on its [annotated page](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/experiments/detached_mean/).
#
# This experiment is small: it runs in seconds on a CPU, and a GPU is not needed.

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
# Setting the environment variable `LABML_NN_BN_SMOKE=1` shortens the runs to 50 steps, which
# is how the project's tests run this notebook.

# %%
import os

from labml_nn_bn.experiments import detached_mean

SMOKE = os.environ.get('LABML_NN_BN_SMOKE') == '1'

# %% [markdown]
# ## Train: a bias before centring, a scale before standardising
#
# Four full-batch gradient-descent runs on the same 256 × 4 synthetic data, recorded as one
# labml experiment under `logs/`; the summary is printed at the end.

# %%
results = detached_mean.run(smoke=SMOKE)

# %% [markdown]
# ## What happened
#
# Detached, $\lVert b \rVert$ grows at every step while the loss does not move; through the
# mean, $\partial \ell / \partial b$ is rounding error and $b$ stays where it started. The
# scale shrinks towards zero with the statistics detached, is thrown across it, and the loss
# jumps each time a feature's sign flips.

# %%
import matplotlib.pyplot as plt

detached_mean.draw(results)
plt.show()

# %% [markdown]
# ## Try it
#
# A larger learning rate makes the bias drift faster, and the scale reach zero sooner; the
# runs through the statistics do not move at any learning rate.

# %%
u = detached_mean.make_data(seed=1)
for lr in (0.01, 0.1, 1.0):
    history = detached_mean.train_bias(u, detach=True, steps=20 if SMOKE else 200, lr=lr)
    print(f'lr {lr:<5}: |b| after {len(history["b_norm"])} steps = {history["b_norm"][-1]:.2f}')
