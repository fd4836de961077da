"""docs/neurons.md: the claims the page makes, checked on the names its blocks define, run once here in page order
(the ``page`` fixture of tests/conftest.py)."""

import math

import pytest
import torch
from conftest import test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from torch import nn


def test_hand_neuron_matches_the_written_arithmetic(page):
    assert page.weighted_sum == pytest.approx(0.5 * 0.8 + (-1.0) * 0.2 + 2.0 * (-0.5) + 0.1)
    assert page.relu_output == 0.0  # z < 0, so ReLU clips it
    assert page.sigmoid_output == pytest.approx(1 / (1 + math.exp(0.7)))


def test_nn_linear_computes_the_same_neuron_as_by_hand(page):
    assert page.z.shape == (1,)
    assert page.z.item() == pytest.approx(page.weighted_sum, abs=1e-6)
    assert torch.sigmoid(page.z).item() == pytest.approx(page.sigmoid_output, abs=1e-6)


def test_activations_in_the_figure_are_continuous_except_the_step(page):
    step = page.curves["step (z > 0)"]
    assert set(step.unique().tolist()) == {0.0, 1.0}
    for name in ("sigmoid", "tanh", "ReLU"):
        assert len(page.curves[name].unique()) > 50, name  # many distinct values, not two
    assert 0 < page.curves["sigmoid"].min() and page.curves["sigmoid"].max() < 1
    assert page.curves["ReLU"].min() == 0 and page.curves["ReLU"].max() > 1


def test_a_layer_is_one_row_of_weights_per_neuron_and_one_matrix_product(page):
    assert page.layer.weight.shape == (4, 3) and page.layer.bias.shape == (4,)
    assert torch.allclose(page.layer_output, page.by_rows)
    assert torch.allclose(page.layer_output, page.as_matrix_product)
    assert torch.allclose(page.layer_output, page.layer(page.x))


def test_the_network_outputs_ten_logits_per_image(page):
    assert page.logits.shape == (2, 10)
    assert [type(layer) for layer in page.model] == [nn.Linear, nn.ReLU, nn.Linear]


def test_softmax_of_log4_and_0_is_exactly_80_20_and_argmax_is_cat(page):
    assert torch.allclose(page.probabilities, torch.tensor([0.8, 0.2]), atol=1e-6)
    assert page.probabilities.sum().item() == pytest.approx(1.0)
    assert page.predicted == "cat"
    assert torch.allclose(page.shifted, page.probabilities, atol=1e-6)


def test_parameter_formula_equals_numel(page):
    assert page.parameter_counts[(784, 128, 10)] == (101_770, 101_770)
    assert page.parameter_counts[(784, 256, 128, 10)] == (235_146, 235_146)
    # the page's arithmetic
    assert 784 * 128 + 128 == 100_480 and 128 * 10 + 10 == 1_290


def test_first_layer_holds_almost_all_parameters(page):
    network = page.mlp(784, 128, 10)
    first = sum(p.numel() for p in network[0].parameters())
    assert first / page.parameter_formula(784, 128, 10) > 0.98
    assert sum(p.numel() for p in nn.ReLU().parameters()) == 0


def test_one_optimizer_step_changes_every_hidden_weight(page):
    assert page.hidden_change.shape == (3, 4)
    assert (page.hidden_change != 0).all()
    assert torch.allclose(page.small[0].weight.detach(), page.hidden_before + page.hidden_change)


def test_exercise_neuron(page):
    assert page.exercise_z.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.sigmoid(page.exercise_z).item() == pytest.approx(0.5, abs=1e-6)


def test_exercise_params(page):
    assert page.cifar_count == 1_578_506 == page.parameter_formula(3072, 512, 10)


def test_exercise_logits(page):
    assert torch.allclose(page.nine_to_one, torch.tensor([0.9, 0.1]), atol=1e-6)
    assert torch.allclose(page.three_way, torch.tensor([0.5, 0.3, 0.2]), atol=1e-6)
