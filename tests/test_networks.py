"""docs/networks.md: what the page claims about modules, parameters, train/eval and activations.

The tests read the names the page's blocks define, run once here in page order (the ``page`` fixture of
tests/conftest.py).
"""

import pytest
import torch
import torch.nn.functional as F
from conftest import test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from torch import nn


def test_calling_the_module_runs_hooks_and_forward_does_not(page):
    assert page.calls == [(5, 3)]  # one hook call for model(x), none for model.forward(x)
    assert torch.equal(page.model(page.features), page.model.forward(page.features))


def test_linear_weight_is_out_by_in_and_computes_x_wt_plus_b(page):
    assert page.layer.weight.shape == (128, 784)
    assert page.layer.bias.shape == (128,)
    assert page.hidden.shape == (32, 128)
    expected = page.images @ page.layer.weight.T + page.layer.bias
    assert torch.allclose(page.hidden, expected, atol=1e-5)
    assert torch.allclose(page.hidden[:, 7], page.images @ page.layer.weight[7] + page.layer.bias[7], atol=1e-5)


def test_sequential_parameters_names_shapes_and_count(page):
    shapes = {name: tuple(p.shape) for name, p in page.mlp.named_parameters()}
    assert shapes == {"1.weight": (128, 784), "1.bias": (128,), "3.weight": (10, 128), "3.bias": (10,)}
    assert page.n_params == 101_770 == 784 * 128 + 128 + 128 * 10 + 10
    assert page.mlp(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert "Linear(in_features=784, out_features=128, bias=True)" in str(page.mlp)


def test_dropout_differs_in_train_mode_and_not_in_eval_mode(page):
    torch.manual_seed(1)
    page.net.train()
    assert not torch.equal(page.net(page.sample), page.net(page.sample))
    page.net.eval()
    assert not page.net.training and not page.net[2].training  # eval() reaches submodules
    assert torch.equal(page.net(page.sample), page.net(page.sample))


def test_dropout_zeroes_and_rescales_survivors():
    torch.manual_seed(0)
    out = nn.Dropout(p=0.5)(torch.ones(1000))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert 400 < (out == 0).sum() < 600


def test_eval_does_not_disable_gradients_but_inference_mode_does(page):
    page.net.eval()
    assert page.net(page.sample).requires_grad
    with torch.no_grad():
        assert not page.net(page.sample).requires_grad
    with torch.inference_mode():
        assert not page.net(page.sample).requires_grad


def test_autograd_derivatives_equal_closed_forms(page):
    x = page.x.detach()
    sig, tanh = torch.sigmoid(x), torch.tanh(x)
    torch.testing.assert_close(page.slopes["sigmoid"], sig * (1 - sig))
    torch.testing.assert_close(page.slopes["tanh"], 1 - tanh**2)
    torch.testing.assert_close(page.slopes["ReLU"], (x > 0).float())
    torch.testing.assert_close(page.slopes["LeakyReLU"], torch.where(x > 0, 1.0, 0.1))
    assert torch.all(page.slopes["GELU"][x > 3] > 0.99) and torch.all(page.slopes["GELU"][x < -3].abs() < 0.02)


def test_grid_and_value_ranges(page):
    assert page.x.shape == (100,) and page.x[0] == -10 and page.x[-1] == 10
    v = page.values
    assert 0 < v["sigmoid"].min() and v["sigmoid"].max() < 1
    assert -1 <= v["tanh"].min() and v["tanh"].max() <= 1 and v["tanh"].min() < -0.999
    assert v["ReLU"].min() == 0 and v["ReLU"].max() == 10
    assert v["LeakyReLU"].min() == pytest.approx(-1.0)
    assert v["GELU"].min() == pytest.approx(-0.17, abs=0.005)
    fine = torch.linspace(-10, 10, 100_001)
    assert F.gelu(fine).min() == pytest.approx(-0.17, abs=0.001)  # the table's ≈ −0.17


def test_slopes_at_plus_minus_5_printed_on_the_page(page):
    expected = {
        "sigmoid": (6.65e-3, 6.65e-3),
        "tanh": (1.82e-4, 1.82e-4),
        "ReLU": (0.0, 1.0),
        "LeakyReLU": (0.1, 1.0),
        "GELU": (-7.12e-6, 1.0),
    }
    for name, f in page.activations.items():
        probe = torch.tensor([-5.0, 5.0], requires_grad=True)
        (slope,) = torch.autograd.grad(f(probe).sum(), probe)
        assert slope.tolist() == pytest.approx(expected[name], rel=1e-2, abs=1e-7), name


def test_sigmoid_max_slope_is_a_quarter_and_vanishes_over_ten_layers(page):
    z = torch.linspace(-10, 10, 2001, requires_grad=True)
    (slope,) = torch.autograd.grad(torch.sigmoid(z).sum(), z)
    assert slope.max().item() == pytest.approx(0.25)
    assert z[slope.argmax()].item() == pytest.approx(0.0, abs=1e-6)
    assert page.z.grad.item() == 0.25
    sigmoid_chain = page.slope_through(torch.sigmoid, 1.0)
    assert sigmoid_chain <= 0.25**10
    assert sigmoid_chain < page.slope_through(torch.tanh, 1.0) < 1
    assert page.slope_through(torch.relu, 1.0) == 1.0


def test_parameter_count_exercise(page):
    assert page.count_linear([784, 256, 64, 10]) == 218_058
    assert sum(p.numel() for p in page.deeper.parameters()) == 218_058
    assert isinstance(page.deeper[-1], nn.Linear)  # logits: no activation at the end


def test_plain_list_hides_parameters_and_modulelist_registers_them(page):
    assert list(page.PlainList().parameters()) == []
    assert len(list(page.Registered().parameters())) == 4
    registered = page.Registered()
    assert set(registered.state_dict()) == {"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"}


def test_batchnorm_train_uses_batch_stats_and_eval_uses_running_stats(page):
    bn = nn.BatchNorm1d(3)
    batch = page.batch
    bn.train()
    out = bn(batch)
    assert out.mean(0).abs().max() < 1e-5
    torch.testing.assert_close(bn.running_mean, 0.1 * batch.mean(0))
    torch.testing.assert_close(page.bn.running_mean, 0.1 * batch.mean(0))
    bn.eval()
    before = bn.running_mean.clone()
    out = bn(batch)
    assert torch.equal(bn.running_mean, before)
    assert out.mean(0).min() > 1  # far from normalised: running stats have seen one batch


def test_gelu_derivative_matches_closed_form(page):
    torch.testing.assert_close(page.autograd_slope, page.closed_form)


def test_activation_figure_has_two_labelled_panels(page):
    titles = [ax.get_title() for ax in page.fig.axes]
    assert titles == ["Activation functions", "Their derivatives (autograd)"]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in page.fig.axes)
    assert len(page.ax_f.lines) == len(page.ax_d.lines) == 5
