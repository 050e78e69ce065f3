"""
Batch Normalization (Ioffe & Szegedy, 2015), annotated.

`from labml_nn_bn import BatchNorm` gives a drop-in replacement for `torch.nn.BatchNorm1d/2d/3d`.
"""

from labml_nn_bn.batch_norm import BatchNorm, BatchNormFunction, batch_statistics
from labml_nn_bn.inference import fold_batch_norm, recalibrate

__all__ = ['BatchNorm', 'BatchNormFunction', 'batch_statistics', 'fold_batch_norm', 'recalibrate']
__version__ = '0.1.0'
