"""The Autograd chapter: gradients against hand-derived values, gradcheck, and the claims of docs/autograd.md.

The tests read the page's blocks, run once here in page order (the ``page_run`` fixture of tests/conftest.py):
``section(name)`` gives the names right after a section and what its block printed.
"""

import math
import re

import pytest
import torch
from conftest import page_html, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)


def test_first_gradient_matches_the_hand_derived_derivative(section):
    ns, out = section("first-gradient")
    x = 2.0
    assert ns["y"].item() == x**2 + 3 * x
    assert ns["x"].grad.item() == 2 * x + 3  # dy/dx = 2x + 3
    assert out.splitlines() == ["tensor(10., grad_fn=<AddBackward0>)", "tensor(7.)"]


def test_the_graph_is_add_of_pow_and_mul_ending_in_accumulate_grad(section):
    ns, out = section("graph")
    assert out.splitlines() == [
        "AddBackward0",
        "['PowBackward0', 'MulBackward0']",
        "AddBackward0",
        "    PowBackward0",
        "        AccumulateGrad",
        "    MulBackward0",
        "        AccumulateGrad",
        "None True",
    ]


def test_gradient_of_a_sum_is_the_elementwise_derivative(section):
    ns, _ = section("many-inputs")
    xs = [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert ns["x"].grad.tolist() == [2 * x + 3 for x in xs]


def test_gradients_accumulate_across_backward_calls_until_reset(section):
    _, out = section("accumulation")
    values = [float(line.rsplit("=", 1)[1]) for line in out.splitlines()]
    assert values == [7.0, 14.0, 7.0]


def test_micro_batch_gradients_add_up_to_the_full_batch_gradient(section):
    ns, out = section("micro-batches")
    inputs, targets = ns["inputs"], ns["targets"]
    by_hand = -2 * inputs.T @ targets / len(targets)  # d/dw mean((Xw - t)²) = 2 Xᵀ(Xw - t) / N, at w = 0
    assert torch.allclose(ns["full_batch_grad"], by_hand, atol=1e-6)
    assert torch.allclose(ns["w"].grad, by_hand, atol=1e-6)
    assert out.splitlines()[-1] == "True"


def test_backward_on_a_non_scalar_needs_a_gradient_argument(section):
    ns, out = section("non-scalar")
    lines = out.splitlines()
    assert lines[0] == "RuntimeError: grad can be implicitly created only for scalar outputs"
    assert lines[1] == "tensor([2., 4., 6.])"  # 2x with v = ones
    assert ns["x"].grad.tolist() == [0.0, 4.0, 0.0]  # only y[1] = x[1]² counted: 2 · 2


def test_no_grad_inference_mode_and_detach(section):
    ns, out = section("no-grad")
    lines = out.splitlines()
    assert lines[0] == "False None"
    assert lines[1] == "False True"
    assert lines[2] == "tensor([1., 1.])"  # z + w joined a graph: the sum's gradient reached w
    assert lines[3] == "RuntimeError: Inference tensors cannot be saved for backward"
    assert not ns["d"].requires_grad and ns["d"].data_ptr() == ns["w"].data_ptr()


def test_a_second_backward_fails_only_when_the_graph_saved_tensors():
    w = torch.ones(3, requires_grad=True)
    y = (w + 1).sum()  # AddBackward0 saves no tensor
    y.backward()
    y.backward()
    assert w.grad.tolist() == [2.0, 2.0, 2.0]
    y = (w * w).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_leaf_gradients_and_retain_grad(section):
    ns, out = section("leaf")
    x = 3.0  # out = (2x)², d(out)/dh = 2h, d(out)/dx = 8x
    assert ns["h"].grad.item() == 2 * (2 * x)
    assert ns["x"].grad.item() == 8 * x
    assert out.splitlines()[0] == "True False False"


def test_in_place_errors_at_once_on_a_leaf_and_at_backward_on_a_saved_value(section):
    ns, out = section("inplace")
    text = " ".join(out.split())  # the page wraps long messages
    assert text.startswith("RuntimeError: a leaf Variable that requires grad is being used in an in-place operation.")
    assert ns["w"].tolist() == [2.0, 3.0]  # the no_grad update happened, once
    assert "RuntimeError: one of the variables needed for gradient computation has been modified" in text
    assert "Hint:" not in text
    assert "which is output 0 of Sigmoid," in text  # the page: since 2.13; 2.12 printed SigmoidBackward0


def test_stable_softplus_values_and_gradient(section):
    ns, out = section("custom-function")
    y, x = ns["y"].detach(), ns["x"]
    assert out.splitlines()[0] == "tensor([0.0000, 0.6931,    inf])"  # the naive formula overflows
    # log(1 + e⁻¹⁰⁰) ≈ e⁻¹⁰⁰ = 3.7e-44: a float32 subnormal, spaced 1.4e-45 apart, so only roughly right
    assert 0 < y[0].item() == pytest.approx(math.exp(-100), rel=0.1, abs=0)
    assert y[1].item() == pytest.approx(math.log(2))
    assert y[2].item() == 100.0
    assert torch.allclose(x.grad, torch.sigmoid(x.detach()))
    grid = torch.linspace(-30, 30, 601)
    assert torch.allclose(ns["softplus"](grid), torch.nn.functional.softplus(grid), atol=1e-6)


def test_gradcheck_passes_for_softplus_and_catches_the_wrong_backward(section):
    ns, out = section("gradcheck")
    assert out.splitlines() == ["True", "False"]
    x = torch.linspace(-40, 40, 33, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ns["softplus"], (x,))
    assert not torch.autograd.gradcheck(ns["WrongSoftplus"].apply, (x,), raise_exception=False)


def test_one_step_of_gradient_descent_lowers_the_loss_with_hand_derived_gradients(section):
    ns, out = section("descent-step")
    inputs, targets, w, b = ns["inputs"], ns["targets"], ns["w"], ns["b"]
    # At w = b = 0: dL/dw = -2 mean(x·t), dL/db = -2 mean(t); w.grad and b.grad still hold them.
    assert w.grad.item() == pytest.approx((-2 * (inputs * targets).mean()).item(), rel=1e-5)
    assert b.grad.item() == pytest.approx((-2 * targets.mean()).item(), rel=1e-5)
    assert w.item() == pytest.approx(-0.5 * w.grad.item()) and w.requires_grad and w.is_leaf
    before = float(re.search(r"loss before: ([\d.]+)", out)[1])
    after = float(re.search(r"loss after:  ([\d.]+)", out)[1])
    assert after < before
    assert ns["mse_loss"](w, b).item() < ns["loss"].item()


def test_rebinding_under_no_grad_loses_requires_grad(section):
    _, out = section("rebind-pitfall")
    assert out.splitlines() == ["False", "True True"]


def test_descent_loop_decreases_the_loss_to_the_least_squares_fit_and_draws_it(section):
    ns, out = section("descent-loop")
    losses = ns["losses"]
    assert all(later <= earlier + 1e-8 for earlier, later in zip(losses, losses[1:]))  # up to float32 rounding
    assert losses[-1] < 0.01 < losses[0]
    assert ns["w"].item() == pytest.approx(ns["best"][0].item(), abs=1e-3)
    assert ns["b"].item() == pytest.approx(ns["best"][1].item(), abs=1e-3)
    assert ns["w"].item() == pytest.approx(2.0, abs=0.2) and ns["b"].item() == pytest.approx(-1.0, abs=0.1)
    ax = ns["ax"]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and len(ax.lines[0].get_ydata()) == 25


def test_exercise_sigmoid_derivative(section):
    ns, out = section("exercise-sigmoid")
    x = ns["x"].detach()
    s = 1 / (1 + torch.exp(-x))
    assert torch.allclose(ns["x"].grad, s * (1 - s), atol=1e-7)
    assert out.splitlines() == ["True", "largest slope: 0.2500 at x = 0.0", "slope at x = 6: 0.0025"]


def test_exercise_straight_through_rounding(section):
    ns, out = section("exercise-straight-through")
    assert ns["y"].tolist() == [0.0, 2.0, -1.0]
    assert ns["x"].grad.tolist() == [1.0, 1.0, 1.0]
    assert out.splitlines()[0] == "tensor([0., 0., 0.])"  # torch.round's gradient
    assert out.splitlines()[-1] == "False"  # gradcheck rejects it: not the true derivative


def test_exercise_newton_finds_the_minimum_with_autograd_second_derivatives(section):
    ns, out = section("exercise-newton")
    assert ns["x"].item() == pytest.approx(math.sqrt(1.5), abs=1e-6)
    first = out.splitlines()[0]  # at x = 2: f' = 4x³ - 6x = 20, f'' = 12x² - 6 = 42
    assert "f'(x) = 20.00000" in first and "f''(x) = 42.0000" in first
    x = torch.tensor(0.7, requires_grad=True)
    (slope,) = torch.autograd.grad(ns["f"](x), x, create_graph=True)
    (curvature,) = torch.autograd.grad(slope, x)
    assert slope.item() == pytest.approx(4 * 0.7**3 - 6 * 0.7, abs=1e-5)  # f'(x) = 4x³ - 6x
    assert curvature.item() == pytest.approx(12 * 0.7**2 - 6, abs=1e-5)  # f''(x) = 12x² - 6


def test_exercise_quadratic_fit_reaches_least_squares(section):
    ns, _ = section("exercise-quadratic")
    assert torch.allclose(ns["params"].detach(), ns["exact"], atol=1e-3)
    assert torch.allclose(ns["exact"], torch.tensor([0.5, -1.0, 2.0]), atol=0.1)


def test_page_renders_the_figure_and_exercise_solutions_inside_collapsibles(built_site):
    html = page_html(built_site, "autograd")
    assert '<svg role="img" aria-label="Figure: Gradient descent by hand' in html
    solutions = re.findall(r'<details class="success">(.*?)</details>', html, re.S)
    assert len(solutions) == 4
    assert "largest slope: 0.2500" in solutions[0] and "least squares:" in solutions[3]
