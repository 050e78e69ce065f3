"""
Batch Normalization (Ioffe & Szegedy, 2015), annotated.

`from labml_nn_bn import BatchNorm` gives a drop-in replacement for `torch.nn.BatchNorm1d/2d/3d`;
`FastBatchNorm` is the same layer with fused Triton kernels on GPUs, `SyncBatchNorm` shares
statistics across processes, and `recalibrate` / `fold_batch_norm` are Algorithm 2's
inference tools.
"""

from labml_nn_bn.batch_norm import (BatchNorm, BatchNormFunction, batch_norm_reference,
                                    batch_statistics)
from labml_nn_bn.inference import fold_batch_norm, recalibrate
from labml_nn_bn.sync_batch_norm import SyncBatchNorm, convert_sync_batch_norm

__all__ = ['BatchNorm', 'BatchNormFunction', 'batch_norm_reference', 'batch_statistics',
           'FastBatchNorm', 'fold_batch_norm', 'recalibrate', 'SyncBatchNorm',
           'convert_sync_batch_norm']
__version__ = '0.1.0'


def __getattr__(name):
    # `FastBatchNorm` is imported on first use: where Triton is installed, importing it costs
    # about a second, which nobody who only wants `BatchNorm` should pay
    if name == 'FastBatchNorm':
        from labml_nn_bn.fast_batch_norm import FastBatchNorm
        return FastBatchNorm
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
