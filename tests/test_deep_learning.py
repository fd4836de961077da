"""docs/deep_learning.md: the claims the page makes, checked on its blocks, run once here in page order (the
``page`` and ``page_run`` fixtures of tests/conftest.py)."""

import pytest
import torch
from conftest import test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)


def test_the_hand_written_rule_converts_known_points(page):
    assert page.celsius_to_fahrenheit(-40) == -40
    assert page.celsius_to_fahrenheit(100) == 212
    assert page.celsius_to_fahrenheit(0) == 32


def test_the_training_answers_come_from_the_rule(page):
    assert torch.allclose(page.fahrenheit, page.celsius * 1.8 + 32)


def test_gradient_descent_recovers_the_rule_from_examples(page):
    assert page.learned_weight == pytest.approx(1.8, abs=1e-3)
    assert page.learned_bias == pytest.approx(32.0, abs=0.01)


def test_the_learned_model_generalises_to_an_unseen_input(page):
    assert 100.0 not in page.celsius
    prediction = page.learned_weight * 100 + page.learned_bias
    assert prediction == pytest.approx(212.0, abs=0.2)


def test_a_linear_model_cannot_separate_the_circle_but_a_hidden_layer_can(page):
    # "does no better than always answering 'outside'"
    assert page.linear_accuracy <= page.majority + 0.02
    # "classifies almost every test point correctly"
    assert page.deep_accuracy >= 0.95
    assert page.deep_accuracy > page.linear_accuracy + 0.3


def test_the_circle_test_set_is_distinct_from_the_training_set(page):
    assert page.train_points.shape == page.test_points.shape == (400, 2)
    assert not torch.equal(page.train_points, page.test_points)


def test_building_block_shapes_are_as_the_page_explains(page):
    expected = {
        "Linear(20, 5)": ((8, 20), (8, 5)),
        "Conv2d(3, 16, 3, padding=1)": ((8, 3, 32, 32), (8, 16, 32, 32)),
        "LSTM(12, 32)": ((8, 10, 12), (8, 10, 32)),
        "TransformerEncoderLayer(64, 4)": ((8, 10, 64), (8, 10, 64)),
    }
    assert {name: (tuple(a), tuple(b)) for name, (a, b) in page.shapes.items()} == expected
    assert page.last_hidden.shape == page.last_cell.shape == (1, 8, 32)
    # the last step of the LSTM output is its last hidden state
    assert torch.allclose(page.lstm_outputs[:, -1], page.last_hidden[0])


def test_the_transformer_layer_in_eval_mode_is_deterministic(page):
    with torch.no_grad():
        assert torch.equal(page.encoder_layer(page.tokens), page.encoder_layer(page.tokens))


def test_kelvin_exercise_recovers_weight_one_and_offset(page):
    assert page.kelvin_weight == pytest.approx(1.0, abs=1e-3)
    assert page.kelvin_bias == pytest.approx(273.15, abs=0.05)


def test_conv_exercise_shapes(page):
    images = torch.zeros(4, 1, 28, 28)
    assert page.no_padding(images).shape == (4, 8, 24, 24)
    assert page.same_padding(images).shape == (4, 8, 28, 28)


def test_the_weight_converges_long_before_the_bias(page_run):
    """The Kelvin answer: at step 1,000 the weight is within a few hundredths of 1.8, the bias still several degrees
    short of 32."""
    out = page_run.printed_by("learn")
    step_1000 = next(line for line in out.splitlines() if line.startswith("step 1000"))
    weight = float(step_1000.split("weight")[1].split()[0])
    bias = float(step_1000.split("bias")[1].split()[0])
    assert abs(weight - 1.8) < 0.05 and 32 - bias > 3
