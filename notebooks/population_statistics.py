# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     name: population_statistics.ipynb
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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/population_statistics.ipynb)
#
# # Algorithm 2: population statistics for inference
#
# A batch norm is trained with the statistics of each mini-batch and used with fixed
# population statistics. The [paper](https://arxiv.org/abs/1502.03167)'s Algorithm 2 computes
# them exactly after training; in practice they are moving averages kept during training.
# This notebook trains the MNIST CNN at batch sizes 4, 16, 64 and 256 and compares the test
# accuracy with batch statistics, with the moving averages, and with the exact statistics
# of `labml_nn_bn.recalibrate`. The code is in
# [`labml_nn_bn/experiments/population_statistics.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/experiments/population_statistics.py),
# explained on its [annotated page](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/experiments/population_statistics.html).
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
# ## Run
#
# `bn_impl='torch'` runs the same experiment with `torch.nn.BatchNorm2d/1d`.
# `LABML_NN_BN_SMOKE=1` shrinks the run to seconds (the project's tests run the notebook that way).

# %%
import os

from labml_nn_bn.experiments import population_statistics

SMOKE = os.environ.get('LABML_NN_BN_SMOKE') == '1'
kwargs = population_statistics.SMOKE if SMOKE else dict(batch_sizes=(4, 16, 64, 256), epochs=3)
result = population_statistics.run(**kwargs, bn_impl='ours')

# %% [markdown]
# ## The figure

# %%
import matplotlib.pyplot as plt

values = population_statistics.values_of(result)
fig = population_statistics.draw(values, plt)
fig.text(0.005, 0.005, f"{values['dataset']} · {result['device']}", fontsize=7, color='#777777')
plt.show()

# %%
for r in result['rows']:
    print(f"batch {r['batch_size']:4d}: batch statistics {r['batch_statistics']:.2%}, "
          f"moving averages {r['moving_average']:.2%}, recalibrated {r['recalibrated']:.2%}")
