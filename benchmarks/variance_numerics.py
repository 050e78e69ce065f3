"""
Measures the figures quoted in `labml_nn_bn/batch_norm.py` about computing the variance:
the relative error of the normalised output, on float32 input N(mu, 1) of shape [64, 16, 8, 8],
against a float64 reference, for

* the identity Var = E[x²] − E[x]² (one pass),
* the plain two-pass form (x − mean)² with a float32 mean,
* our two-part mean (shift + residual), as `labml_nn_bn.BatchNorm` computes it,
* `torch.nn.BatchNorm2d`.

Run: .venv/bin/python benchmarks/variance_numerics.py
"""
import torch

from labml_nn_bn import BatchNorm

DIMS = (0, 2, 3)


def reference(x):
    x64 = x.double()
    centred = x64 - x64.mean(DIMS, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(DIMS, keepdim=True) + 1e-5)


def identity(x):
    mean = x.mean(DIMS, keepdim=True)
    var = (x * x).mean(DIMS, keepdim=True) - mean * mean
    return (x - mean) * torch.rsqrt(var + 1e-5)


def two_pass(x):
    mean = x.mean(DIMS, keepdim=True)
    var = (x - mean).pow(2).mean(DIMS, keepdim=True)
    return (x - mean) * torch.rsqrt(var + 1e-5)


def main():
    methods = {
        'E[x²]−E[x]²': identity,
        'two-pass': two_pass,
        'two-part mean (ours)': BatchNorm(16, affine=False),
        'torch BatchNorm2d': torch.nn.BatchNorm2d(16, affine=False),
    }
    print(f'torch {torch.__version__}, float32 input N(mu, 1) of shape [64, 16, 8, 8], seed 0')
    print(f'{"mu":>8} ' + ' '.join(f'{name:>22}' for name in methods))
    for mu in [0., 1e3, 1e4, 1e5, 1e6]:
        torch.manual_seed(0)
        x = torch.randn(64, 16, 8, 8) + mu
        ref = reference(x)
        errors = [((f(x).double() - ref).norm() / ref.norm()).item() for f in methods.values()]
        print(f'{mu:8.0e} ' + ' '.join(f'{e:22.1e}' for e in errors))


if __name__ == '__main__':
    main()
