"""docs/neurons.md: the claims the page makes, checked on the executed sections."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

import snippets.neurons as m


def test_hand_neuron_matches_the_written_arithmetic():
    assert m.weighted_sum == pytest.approx(0.5 * 0.8 + (-1.0) * 0.2 + 2.0 * (-0.5) + 0.1)
    assert m.relu_output == 0.0  # z < 0, so ReLU clips it
    assert m.sigmoid_output == pytest.approx(1 / (1 + math.exp(0.7)))


def test_nn_linear_computes_the_same_neuron_as_by_hand():
    assert m.z.shape == (1,)
    assert m.z.item() == pytest.approx(m.weighted_sum, abs=1e-6)
    assert torch.sigmoid(m.z).item() == pytest.approx(m.sigmoid_output, abs=1e-6)


def test_activations_in_the_figure_are_continuous_except_the_step():
    step = m.curves["step (z > 0)"]
    assert set(step.unique().tolist()) == {0.0, 1.0}
    for name in ("sigmoid", "tanh", "ReLU"):
        assert len(m.curves[name].unique()) > 50, name  # many distinct values, not two
    assert 0 < m.curves["sigmoid"].min() and m.curves["sigmoid"].max() < 1
    assert m.curves["ReLU"].min() == 0 and m.curves["ReLU"].max() > 1
    plt.close("all")


def test_a_layer_is_one_row_of_weights_per_neuron_and_one_matrix_product():
    assert m.layer.weight.shape == (4, 3) and m.layer.bias.shape == (4,)
    assert torch.allclose(m.layer_output, m.by_rows)
    assert torch.allclose(m.layer_output, m.as_matrix_product)
    assert torch.allclose(m.layer_output, m.layer(m.x))


def test_the_network_outputs_ten_logits_per_image():
    assert m.logits.shape == (2, 10)
    assert [type(layer) for layer in m.model] == [nn.Linear, nn.ReLU, nn.Linear]


def test_softmax_of_log4_and_0_is_exactly_80_20_and_argmax_is_cat():
    assert torch.allclose(m.probabilities, torch.tensor([0.8, 0.2]), atol=1e-6)
    assert m.probabilities.sum().item() == pytest.approx(1.0)
    assert m.predicted == "cat"
    assert torch.allclose(m.shifted, m.probabilities, atol=1e-6)


def test_parameter_formula_equals_numel():
    assert m.parameter_counts[(784, 128, 10)] == (101_770, 101_770)
    assert m.parameter_counts[(784, 256, 128, 10)] == (235_146, 235_146)
    # the page's arithmetic
    assert 784 * 128 + 128 == 100_480 and 128 * 10 + 10 == 1_290


def test_first_layer_holds_almost_all_parameters():
    network = m.mlp(784, 128, 10)
    first = sum(p.numel() for p in network[0].parameters())
    assert first / m.parameter_formula(784, 128, 10) > 0.98
    assert sum(p.numel() for p in nn.ReLU().parameters()) == 0


def test_one_optimizer_step_changes_every_hidden_weight():
    assert m.hidden_change.shape == (3, 4)
    assert (m.hidden_change != 0).all()
    assert torch.allclose(m.small[0].weight.detach(), m.hidden_before + m.hidden_change)


def test_exercise_neuron():
    assert m.exercise_z.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.sigmoid(m.exercise_z).item() == pytest.approx(0.5, abs=1e-6)


def test_exercise_params():
    assert m.cifar_count == 1_578_506 == m.parameter_formula(3072, 512, 10)


def test_exercise_logits():
    assert torch.allclose(m.nine_to_one, torch.tensor([0.9, 0.1]), atol=1e-6)
    assert torch.allclose(m.three_way, torch.tensor([0.5, 0.3, 0.2]), atol=1e-6)
