"""
Measures how accurately each way of computing the batch statistics normalises a batch whose
mean is large compared with its spread: the relative error of the normalised output, on input
N(offset, 1) of shape [64, 16, 8, 8] in the given dtype, against a float64 computation, for

* `identity`: Var = E[x²] − E[x]² (one pass over the data),
* `two_pass`: the mean first, then the mean of (x − mean)²,
* `shifted`: the statistics around a shift, as `labml_nn_bn.BatchNorm` computes them,
* `torch_var_mean`: `torch.var_mean` followed by the same normalisation,
* `torch_batch_norm`: `torch.nn.BatchNorm2d`.

The numerics aside of `labml_nn_bn/batch_norm.py` quotes the float32 rows of this table from
`docs/figures/variance_identity.json` (same methods and offsets, written by the
variance-identity experiment). This script prints the table on its own, for a quick look.

Run: python benchmarks/variance_numerics.py [--dtype float32|bfloat16|float16]
"""
import argparse
import math

import torch

from labml_nn_bn import BatchNorm

DIMS = (0, 2, 3)
EPS = 1e-5
OFFSETS = ['1e0', '1e1', '1e2', '1e3', '1e4', '1e5', '1e6']
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def reference(x):
    x64 = x.double()
    centred = x64 - x64.mean(DIMS, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(DIMS, keepdim=True) + EPS)


def identity(x):
    x = x.float()
    mean = x.mean(DIMS, keepdim=True)
    var = (x * x).mean(DIMS, keepdim=True) - mean * mean
    return (x - mean) * torch.rsqrt(var + EPS)


def two_pass(x):
    x = x.float()
    mean = x.mean(DIMS, keepdim=True)
    var = (x - mean).pow(2).mean(DIMS, keepdim=True)
    return (x - mean) * torch.rsqrt(var + EPS)


def torch_var_mean(x):
    x = x.float()
    var, mean = torch.var_mean(x, DIMS, correction=0, keepdim=True)
    return (x - mean) * torch.rsqrt(var + EPS)


def relative_error(y, ref):
    y = y.double()
    if not torch.isfinite(y).all():
        return 'nan'
    return ((y - ref).norm() / ref.norm()).item()


CHANNELS = 16


def make_input(offset: str, dtype: torch.dtype) -> torch.Tensor:
    """N(offset, 1) of shape [64, 16, 8, 8], rounded to `dtype` (seed 0)."""
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(64, CHANNELS, 8, 8, generator=generator) + float(offset)).to(dtype)


def measure(dtype: torch.dtype):
    """`{method: {offset: relative error or 'nan'}}` for one input dtype."""
    channels = CHANNELS
    methods = {
        'identity': identity,
        'two_pass': two_pass,
        'shifted': BatchNorm(channels, affine=False),
        'torch_var_mean': torch_var_mean,
        'torch_batch_norm': torch.nn.BatchNorm2d(channels, affine=False),
    }
    table = {name: {} for name in methods}
    for offset in OFFSETS:
        x = make_input(offset, dtype)
        ref = reference(x)
        for name, method in methods.items():
            with torch.no_grad():
                y = method(x) if name != 'torch_batch_norm' else method(x.float())
            table[name][offset] = relative_error(y, ref)
    return table


def notes(dtype: torch.dtype, table) -> list:
    """Why a cell is not a number: the input left the dtype's range, the input has nothing
    left to normalise, or the method itself failed (a measured result, not a broken input)."""
    name = str(dtype).replace('torch.', '')
    overflow, collapsed = [], []
    for offset in OFFSETS:
        x = make_input(offset, dtype)
        if not torch.isfinite(x).all():
            overflow.append(offset)
        elif reference(x).norm() == 0:
            collapsed.append(offset)
    lines = []
    if overflow:
        lines.append(f"{', '.join(overflow)}: beyond {name}'s largest finite value "
                     f"({torch.finfo(dtype).max:,.0f}), the input itself is inf, so every "
                     f"method gives nan")
    if collapsed:
        # The gap between neighbouring numbers of the dtype at the offset
        spacing = ', '.join(f'{o}: {2.0 ** math.floor(math.log2(float(o))) * torch.finfo(dtype).eps:g}'
                            for o in collapsed)
        lines.append(f"{', '.join(collapsed)}: the input rounds to one value per channel in "
                     f"{name} (its spacing there, {spacing}, is larger than the spread of 1), "
                     f"so there is nothing to normalise and the relative error is undefined")
    for offset in OFFSETS:
        if offset in overflow or offset in collapsed:
            continue
        for method, cells in table.items():
            value = cells[offset]
            if isinstance(value, str) or not math.isfinite(value):
                lines.append(f'{offset}, {method}: the input is finite but this method\'s '
                             f'output is not: a measured failure of the method (a variance '
                             f'that cancels to a negative number has no square root)')
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--dtype', choices=sorted(DTYPES), default='float32',
                        help='dtype of the input')
    args = parser.parse_args(argv)
    table = measure(DTYPES[args.dtype])
    print(f'torch {torch.__version__}, {args.dtype} input N(offset, 1) of shape '
          f'[64, 16, 8, 8], seed 0: relative error of the normalised output vs float64')
    print(f'{"offset":>8} ' + ' '.join(f'{name:>17}' for name in table))
    for offset in OFFSETS:
        cells = [table[name][offset] for name in table]
        print(f'{offset:>8} ' + ' '.join(
            f'{c:>17}' if isinstance(c, str) or math.isnan(c) else f'{c:17.1e}' for c in cells))
    why = notes(DTYPES[args.dtype], table)
    if why:
        print('\nWhere a cell is nan or inf:')
        for line in why:
            print(f'  {line}')


if __name__ == '__main__':
    import cli_checks
    cli_checks.run(main)
