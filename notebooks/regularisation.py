# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     name: regularisation.ipynb
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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/labml-nn-bn/labml_nn_bn/blob/main/notebooks/regularisation.ipynb)
#
# # Batch normalization and Dropout
#
# The [paper](https://arxiv.org/abs/1502.03167) (Section 3.4) says batch normalization
# regularises: while training, an example's output depends on the other examples of its
# mini-batch, and a batch-normalised network can do with less Dropout, or none. We train one
# fully connected ReLU network four ways (neither, Dropout only, batch normalization only,
# both) from several seeds, record train and test accuracy and the generalisation gap, and
# measure the mechanism itself: how much one training example's logits move from mini-batch
# to mini-batch, next to how much they move from Dropout mask to mask.
# The code is in
# [`labml_nn_bn/experiments/regularisation.py`](https://github.com/labml-nn-bn/labml_nn_bn/blob/main/labml_nn_bn/experiments/regularisation.py),
# explained on its [annotated page](https://labml-nn-bn.github.io/labml_nn_bn/labml_nn_bn/experiments/regularisation.html).
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
# The site's run: a $784 \to 256 \to 256 \to 10$ ReLU network, Dropout $p = 0.5$, SGD with
# momentum 0.9 at a learning rate of 0.01, batches of 64, 40 epochs, five seeds, on the
# 4,000 training images of the offline MNIST subset, where overfitting is easy to see. Pass
# `dataset='mnist'` to `Settings` to use full MNIST instead (downloaded when there is a
# network): with 60,000 images the networks overfit far less, and the run takes longer. `LABML_NN_BN_SMOKE=1` shrinks the run to seconds (the
# project's tests run the notebook that way).

# %%
import os

from labml_nn_bn.experiments import regularisation

SMOKE = os.environ.get('LABML_NN_BN_SMOKE') == '1'
settings = regularisation.SMOKE if SMOKE else regularisation.Settings()
print(settings)

# %% [markdown]
# ## Train the four networks from every seed

# %%
result = regularisation.run_all(settings)

# %% [markdown]
# ## The figure
#
# (a) accuracy (training dashed, test solid), (b) the generalisation gap, (c) the test loss,
# (d) the spread of one training example's logits across mini-batches (batch noise) and
# across Dropout masks (mask noise), relative to the spread of logits between examples.

# %%
import matplotlib.pyplot as plt

values = regularisation.values_of(result, settings)
fig = regularisation.draw(values, plt)
fig.text(0.005, 0.005, f"{values['dataset']} · {result['device']}", fontsize=7, color='#777777')
plt.show()

# %%
summary = values['summary']
for name in settings.networks:
    gap, test = summary['gap'][name], summary['test'][name]
    if gap is None:
        print(f'{name:8s}: every run diverged')
        continue
    print(f"{name:8s}: gap {gap['median']:.2%} ({gap['min']:.2%} to {gap['max']:.2%}), "
          f"test accuracy {test['median']:.2%} ({test['min']:.2%} to {test['max']:.2%}), "
          f"test loss {summary['test_loss'][name]['median']:.3f}")
noise = values['noise']
for label, entry in (('batch noise, batch norm', noise.get('bn_batch')),
                     ('mask noise, Dropout', noise.get('dropout_mask')),
                     ('batch noise, both', noise.get('both', {}).get('bn_batch')),
                     ('mask noise, both', noise.get('both', {}).get('dropout_mask'))):
    if entry is not None:
        print(f"{label:24s}: relative spread {entry['relative']['median']:.3f}, predictions "
              f"that change between draws {entry['flipped']['median']:.1%}")
