"""
The exercises at the end of the BatchNorm page: every number a solution states and every
code solution is computed here, so that a wrong answer on the page fails a test.
"""
import math
import re
from itertools import product

import pytest
import torch

from labml_nn_bn import BatchNorm, BatchNormFunction, batch_norm_reference
from labml_nn_bn import batch_norm as batch_norm_module

SOURCE = open(batch_norm_module.__file__, encoding='utf-8').read()


def exercises_text() -> str:
    start = SOURCE.index('# ## Exercises')
    end = SOURCE.index('# ## Appendix')
    return SOURCE[start:end]


def exercise(number: int) -> str:
    """The comment text of one exercise, statement and solution, without the `#` prefix."""
    text = exercises_text()
    start = text.index(f'# **{number}. ')
    following = text.find(f'# **{number + 1}. ', start)
    block = text[start:following if following >= 0 else len(text)]
    return '\n'.join(line[2:] if line.startswith('# ') else line.lstrip('#')
                     for line in block.split('\n'))


def test_the_page_has_at_least_eight_exercises_each_with_a_collapsed_solution():
    text = exercises_text()
    titles = re.findall(r'^# \*\*(\d+)\. ', text, flags=re.M)
    assert [int(t) for t in titles] == list(range(1, 9))
    assert text.count('# ??? success "Solution"') == 8
    # Each solution's body is indented by four spaces under its admonition
    for number in range(1, 9):
        solution = exercise(number).split('??? success "Solution"\n', 1)[1]
        first = next(line for line in solution.split('\n') if line.strip())
        assert first.startswith('    ') and not first.startswith('     '), (number, first)


def test_the_page_reads_what_to_remember_pitfalls_then_exercises_then_the_appendix():
    order = ['# ## Making it fast and exact', '# ## What to remember', '# ## Pitfalls',
             '# ## Exercises', '# ## Appendix']
    positions = [SOURCE.index(heading) for heading in order]
    assert positions == sorted(positions)
    # The engineering part starts with a way around it
    engineering = SOURCE[positions[0]:positions[0] + 400]
    assert '(#what-to-remember)' in engineering


# 1. Σ ∂ℓ/∂x_i = 0, and Σ x̂_i ∂ℓ/∂x_i = γ/√(σ²+ε) Σ ∂ℓ/∂y_j x̂_j · ε/(σ²+ε)
@pytest.mark.parametrize('eps', [1e-12, 0.3])
def test_exercise_1_the_input_gradient_sums_to_zero(eps):
    torch.manual_seed(1)
    x = (torch.randn(12, 3, dtype=torch.float64) * 2 + 1).requires_grad_()
    grad_y = torch.randn(12, 3, dtype=torch.float64)
    gamma = torch.tensor([1.5, -0.5, 2.], dtype=torch.float64)
    y = BatchNormFunction.apply(x, gamma, None, eps)[0]
    grad_x, = torch.autograd.grad(y, x, grad_y)
    assert grad_x.sum(dim=0).abs().max() < 1e-12
    xd = x.detach()
    var = xd.var(dim=0, unbiased=False)
    x_hat = (xd - xd.mean(dim=0)) / torch.sqrt(var + eps)
    expected = (gamma / torch.sqrt(var + eps) * (grad_y * x_hat).sum(dim=0)
                * eps / (var + eps))
    torch.testing.assert_close((grad_x * x_hat).sum(dim=0), expected, rtol=1e-9, atol=1e-12)
    # The page states that factor ε / (σ² + ε)
    assert r'\frac{\epsilon}{\sigma^2_\mathcal{B} + \epsilon}' in exercise(1)
    if eps < 1e-6:
        assert (grad_x * x_hat).sum(dim=0).abs().max() < 1e-10
    else:
        assert expected.abs().min() > 1e-3


# 2. The worked example's first feature by hand
def test_exercise_2_numbers_are_those_of_the_worked_example():
    x = torch.tensor([1., 3., 5., 7.], dtype=torch.float64)
    mean = x.mean()
    var = x.var(unbiased=False)
    x_hat = (x - mean) / torch.sqrt(var)
    y = 2 * x_hat
    assert mean.item() == 4 and var.item() == 5
    text = exercise(2)
    assert '= 4$' in text and '= 5$' in text
    for values in (x_hat, y):
        shown = '(' + ', '.join(f'{v:.4f}' for v in values.tolist()) + ')'
        assert shown in text, shown
    # The same as the doctest of `batch_norm_reference` (ε = 1e-5 changes no digit shown)
    out = batch_norm_reference(x.view(4, 1), torch.tensor([2.], dtype=torch.float64),
                               torch.zeros(1, dtype=torch.float64))
    assert [f'{v:.4f}' for v in out.view(-1).tolist()] == [f'{v:.4f}' for v in y.tolist()]


# 3. BN(Wu + b) = BN(Wu) in training mode, and b gets no gradient
def test_exercise_3_a_bias_before_the_batch_norm_changes_nothing_and_never_learns():
    torch.manual_seed(3)
    u = torch.randn(16, 5, dtype=torch.float64)
    linear = torch.nn.Linear(5, 4, dtype=torch.float64)
    with torch.no_grad():
        linear.bias.copy_(torch.tensor([3., -2., 10., 0.5]))
    bn = BatchNorm(4, dtype=torch.float64)
    with_bias = bn(linear(u))
    without = bn(torch.nn.functional.linear(u, linear.weight))
    torch.testing.assert_close(with_bias, without, rtol=1e-10, atol=1e-10)
    (with_bias * torch.randn_like(with_bias)).sum().backward()
    assert linear.bias.grad.abs().max() < 1e-12
    assert linear.weight.grad.abs().max() > 1e-3
    assert r'\frac{\partial \ell}{\partial b}' in exercise(3)


# 4. Scale invariance: exact for a > 0 with ε = 0, a sign flip for a < 0, a factor with ε > 0
def test_exercise_4_scale_invariance():
    torch.manual_seed(4)
    wu = torch.randn(20, 3, dtype=torch.float64) * 2 + 0.5
    ones = torch.ones(3, dtype=torch.float64)
    zeros = torch.zeros(3, dtype=torch.float64)

    def bn(x, eps):
        return batch_norm_reference(x, ones, zeros, eps=eps)

    torch.testing.assert_close(bn(7 * wu, 0.), bn(wu, 0.), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn(-2 * wu, 0.), -bn(wu, 0.), rtol=1e-12, atol=1e-12)
    eps, a = 0.5, 0.3
    var = wu.var(dim=0, unbiased=False)
    factor = a * torch.sqrt(var + eps) / torch.sqrt(a ** 2 * var + eps)
    torch.testing.assert_close(bn(a * wu, eps), bn(wu, eps) * factor, rtol=1e-12, atol=1e-12)
    assert (factor - 1).abs().min() > 0.1
    # The page gives that factor
    assert (r'\frac{a\sqrt{\sigma^2_\mathcal{B} + \epsilon}}'
            r'{\sqrt{a^2\sigma^2_\mathcal{B} + \epsilon}}') in exercise(4)
    # As a → 0 the output goes to β = 0
    assert bn(1e-9 * wu, eps).abs().max() < 1e-8


# 5. The running mean after n batches of constant mean μ*: μ*(1 − 0.9ⁿ); within 1% after 44
def test_exercise_5_running_mean_reaches_one_percent_after_44_batches():
    assert math.log(0.01) / math.log(0.9) == pytest.approx(43.7, abs=0.05)
    n = next(n for n in range(1, 1000) if 0.9 ** n <= 0.01)
    assert n == 44
    assert next(n for n in range(1, 1000) if 0.99 ** n <= 0.01) == 459
    text = exercise(5)
    assert '43.7' in text and '**44**' in text and '459' in text
    # The module's running mean follows μ*(1 − 0.9ⁿ) exactly
    target = 5.
    bn = BatchNorm(1, momentum=0.1, dtype=torch.float64)
    batch = target + torch.tensor([[-1.], [0.5], [0.5], [0.]], dtype=torch.float64)
    means = []
    for _ in range(50):
        bn(batch)
        means.append(bn.running_mean.item())
    for n, mean in enumerate(means, start=1):
        assert mean == pytest.approx(target * (1 - 0.9 ** n), rel=1e-12)
    within = [n for n, mean in enumerate(means, start=1) if abs(mean - target) <= 0.01 * target]
    assert within[0] == 44


# 6. E[σ²_B] = (m − 1)/m · Var[x]: 25% low for m = 4
def test_exercise_6_the_biased_batch_variance_is_three_quarters_for_four_values():
    # Exactly, over every batch of four draws from {0, 1, 2} with equal probability
    values = [0., 1., 2.]
    population_var = torch.tensor(values).var(unbiased=False).item()
    batches = torch.tensor(list(product(values, repeat=4)))
    expected_biased = batches.var(dim=1, unbiased=False).mean().item()
    assert expected_biased == pytest.approx(3 / 4 * population_var, rel=1e-6)
    assert 1 - expected_biased / population_var == pytest.approx(0.25, rel=1e-6)
    # And the module's m/(m − 1) undoes it: its running variance after one batch with
    # momentum 1 is the unbiased estimate
    bn = BatchNorm(1, momentum=1., dtype=torch.float64)
    batch = torch.tensor([[0.], [1.], [1.], [2.]], dtype=torch.float64)
    bn(batch)
    assert bn.running_var.item() == pytest.approx(batch.var(unbiased=True).item())
    assert '25%' in exercise(6)


# 7. Batch Renormalization, from the code on the page
def batch_renorm_from_the_page():
    text = exercise(7)
    code = text.split('```python\n', 1)[1].split('```', 1)[0]
    code = '\n'.join(line[4:] for line in code.split('\n'))
    namespace = {'torch': torch}
    exec(compile(code, 'exercise 7', 'exec'), namespace)
    return namespace['batch_renorm']


def test_exercise_7_batch_renorm_with_r_1_and_d_0_is_batch_norm():
    batch_renorm = batch_renorm_from_the_page()
    torch.manual_seed(7)
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64) * 3 + 2
    gamma = torch.tensor([1.5, 0.5, -1.], dtype=torch.float64)
    beta = torch.tensor([0., 1., 2.], dtype=torch.float64)
    running_mean = torch.tensor([10., -3., 0.], dtype=torch.float64)
    running_var = torch.tensor([0.1, 9., 100.], dtype=torch.float64)
    # r_max = 1, d_max = 0 force r = 1, d = 0
    out = batch_renorm(x, gamma, beta, running_mean, running_var, r_max=1., d_max=0.)
    torch.testing.assert_close(out, batch_norm_reference(x, gamma, beta), rtol=1e-12,
                               atol=1e-12)


def test_exercise_7_batch_renorm_without_clipping_gives_the_inference_output():
    batch_renorm = batch_renorm_from_the_page()
    torch.manual_seed(8)
    x = (torch.randn(16, 2, dtype=torch.float64) * 2 + 1).requires_grad_()
    gamma = torch.tensor([2., 0.5], dtype=torch.float64)
    beta = torch.tensor([0.5, -1.], dtype=torch.float64)
    bn = BatchNorm(2, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
        bn.running_mean.copy_(torch.tensor([0.5, 1.5]))
        bn.running_var.copy_(torch.tensor([3., 5.]))
    out = batch_renorm(x, gamma, beta, bn.running_mean, bn.running_var,
                       r_max=1e6, d_max=1e6)
    torch.testing.assert_close(out, bn.eval()(x.detach()), rtol=1e-10, atol=1e-10)
    # r and d are not back-propagated: the gradient is batch norm's, scaled by r
    grad_y = torch.randn_like(out)
    grad_x, = torch.autograd.grad(out, x, grad_y)
    xb = x.detach().requires_grad_()
    grad_bn, = torch.autograd.grad(batch_norm_reference(xb, gamma, beta), xb, grad_y)
    var = x.detach().var(dim=0, unbiased=False)
    r = torch.sqrt(var + 1e-5) / torch.sqrt(bn.running_var + 1e-5)
    torch.testing.assert_close(grad_x, grad_bn * r, rtol=1e-10, atol=1e-12)


# 8. The experiment's command line is a real one, and the quoted gaps are measured quotes
def test_exercise_8_command_uses_real_options():
    from labml_nn_bn.experiments import population_statistics
    text = exercise(8)
    command = re.search(r'`(python -m labml_nn_bn\.experiments\.population_statistics[^`]*)`',
                        text).group(1)
    parser_source = open(population_statistics.__file__, encoding='utf-8').read()
    for option in re.findall(r'(--[\w-]+)', command):
        assert f"'{option}'" in parser_source, option
    assert '<!-- measured population_statistics:batch_4.gap_moving_average' in text
