# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     name: variance_identity.ipynb
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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/variance_identity.ipynb)
#
# # E[x²] − E[x]² in floating point
#
# The variance can be computed in one pass as $\mathbb{E}[x^2] - \mathbb{E}[x]^2$. This notebook
# measures how badly that cancels when the mean is large compared with the spread, against the
# two-pass form, the shifted form our `BatchNorm` uses, `torch.var_mean` and
# `torch.nn.BatchNorm2d`, in `float32`, `bfloat16` and `float16`. The code is in
# [`labml_nn_bn/experiments/variance_identity.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/experiments/variance_identity.py)
# and on its [annotated page](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/experiments/variance_identity/).
# (The paper does not discuss this; it is our addition.)
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
# Setting the environment variable `LABML_NN_BN_SMOKE=1` measures one offset per decade
# instead of four, which is how the project's tests run this notebook.

# %%
import os

from labml_nn_bn.experiments import variance_identity

SMOKE = os.environ.get('LABML_NN_BN_SMOKE') == '1'

# %% [markdown]
# ## Measure
#
# Input $\mathcal{N}(\text{offset}, 1)$ of shape $[64, 16, 8, 8]$ in each dtype; the relative
# error of each method's normalised output against `float64`. Recorded as a labml run under
# `logs/`; the table shows one offset per decade (`nan`: the output is not finite, or the
# input has no spread left in that dtype).

# %%
results = variance_identity.run(smoke=SMOKE)

# %% [markdown]
# ## The figure

# %%
import matplotlib.pyplot as plt

variance_identity.draw(results)
plt.show()

# %% [markdown]
# ## On this machine's accelerator
#
# The measurement above runs on the CPU. On a GPU, PyTorch's kernels sum in a different
# order, so the numbers may differ a little from the CPU's.

# %%
import torch

if torch.cuda.is_available():
    for offset in (1e2, 1e3, 1e4):
        x = variance_identity.make_input(offset, torch.float32, seed=0).cuda()
        ref = variance_identity.reference(x)
        errors = {name: variance_identity.relative_error(method(x), ref)
                  for name, method in variance_identity.METHODS.items()}
        print(f'offset {offset:.0e}: ' + ', '.join(f'{k} {v:.1e}' for k, v in errors.items()))
else:
    print('No GPU here: skipped.')
