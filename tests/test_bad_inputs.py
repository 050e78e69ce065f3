"""
Bad inputs to the package's functions, against `torch.nn.functional.batch_norm`: where
torch refuses, they refuse with a `TypeError` or `ValueError` that says what was
expected; none returns a wrong answer without a word.
"""
import pytest
import torch

from labml_nn_bn import BatchNormFunction, batch_norm_reference, batch_statistics

C = 3


def batch_norm_function(x, weight, bias):
    return BatchNormFunction.apply(x, weight, bias, 1e-5)[0]


def statistics(x, weight, bias):
    return batch_statistics(x)


FUNCTIONS = {'BatchNormFunction': batch_norm_function,
             'batch_norm_reference': batch_norm_reference,
             'batch_statistics': statistics}


def torch_batch_norm(x, weight, bias):
    return torch.nn.functional.batch_norm(x, None, None, weight, bias, training=True)


# Integer tensors: torch has no batch norm for them; `BatchNormFunction` returned the
# normalised values rounded to integers. One value without a channel dimension: torch
# fails on dimension 1; `batch_norm_reference` broadcast it into a `[1, C]` output.
BAD = {
    'integer input': (lambda: torch.arange(12).view(4, C), TypeError,
                      r'floating-point tensor, got dtype torch\.int64'),
    'boolean input': (lambda: torch.ones(4, C, dtype=torch.bool), TypeError,
                      r'floating-point tensor, got dtype torch\.bool'),
    'no channel dimension': (lambda: torch.randn(C), ValueError,
                             r'shape \(N, C, \.\.\.\) with at least 2 dimensions, '
                             r'got shape \(3,\)'),
    'not a tensor': (lambda: [[1., 2., 3.]] * 4, TypeError, r'torch\.Tensor, got list'),
}


@pytest.mark.parametrize('case', list(BAD))
@pytest.mark.parametrize('function', list(FUNCTIONS))
def test_bad_inputs_are_refused_where_torch_refuses(function, case):
    make, error, match = BAD[case]
    weight, bias = torch.rand(C) + 0.5, torch.randn(C)
    with pytest.raises(Exception):
        torch_batch_norm(make(), weight, bias)
    with pytest.raises(error, match=match):
        FUNCTIONS[function](make(), weight, bias)


@pytest.mark.parametrize('function', ['BatchNormFunction', 'batch_norm_reference'])
@pytest.mark.parametrize('which', ['weight', 'bias'])
def test_a_weight_or_bias_of_another_size_is_refused(function, which):
    x = torch.randn(4, C, 2)
    params = {'weight': torch.ones(C), 'bias': torch.zeros(C)}
    params[which] = torch.ones(C + 2)
    with pytest.raises(RuntimeError):
        torch_batch_norm(x, params['weight'], params['bias'])
    with pytest.raises(ValueError, match=rf'{which} of 3 values \(one per channel\), '
                                         rf'got shape \(5,\)'):
        FUNCTIONS[function](x, params['weight'], params['bias'])


@pytest.mark.parametrize('function', list(FUNCTIONS))
def test_good_inputs_still_match_torch(function):
    torch.manual_seed(0)
    x = torch.randn(4, C, 2, 3, dtype=torch.float64) * 2 + 1
    weight = torch.rand(C, dtype=torch.float64) + 0.5
    bias = torch.randn(C, dtype=torch.float64)
    if function == 'batch_statistics':
        shift, residual, var = batch_statistics(x)
        torch.testing.assert_close((shift + residual).flatten(), x.mean((0, 2, 3)))
        torch.testing.assert_close(var.flatten(), x.var((0, 2, 3), unbiased=False))
    else:
        torch.testing.assert_close(FUNCTIONS[function](x, weight, bias),
                                   torch_batch_norm(x, weight, bias))
