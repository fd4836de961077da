"""docs/training.md: losses, the training step, optimizers, splits, overfitting and metrics, as the page claims.

The tests read the names the page's blocks define, run once here in page order (the ``page`` fixture of
tests/conftest.py).
"""

import inspect
import math

import pytest
import torch
from conftest import test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from torch import nn

# --- losses -------------------------------------------------------------------------------------------------------


def test_hand_cross_entropy_equals_nn_cross_entropy(page):
    torch.testing.assert_close(page.ce_by_hand, page.ce)
    # and both equal the definition, sample by sample, in plain Python
    expected = 0.0
    for row, label in zip(page.logits.tolist(), page.labels.tolist()):
        expected -= math.log(math.exp(row[label]) / sum(math.exp(v) for v in row))
    assert page.ce.item() == pytest.approx(expected / len(page.labels), rel=1e-6)


def test_hand_mse_equals_nn_mse(page):
    torch.testing.assert_close(page.mse_by_hand, page.mse)
    assert page.mse.item() == pytest.approx((0.5**2 + 0.5**2 + 0 + 1**2) / 4)


def test_softmax_before_cross_entropy_is_wrong_and_bounded_below(page):
    wrong = nn.CrossEntropyLoss()(page.probs, page.labels)
    assert not torch.isclose(wrong, page.ce)
    # a perfect, certain probability vector still costs log(1 + 2/e) ≈ 0.5514 (the page's "cannot get under 0.55")
    perfect = nn.CrossEntropyLoss()(page.perfect, page.labels[:1]).item()
    assert perfect == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)
    assert 0.55 < perfect < 0.56
    for k in (2, 3, 10):  # the page's general bound, log(1 + (K - 1)/e), for K classes
        floor = nn.CrossEntropyLoss()(torch.eye(k)[:1], torch.tensor([0])).item()
        assert floor == pytest.approx(math.log(1 + (k - 1) / math.e), rel=1e-6)
    certain = torch.eye(3)  # every certain one-hot prediction, each scored against its own class
    assert nn.CrossEntropyLoss()(certain, torch.arange(3)).item() == pytest.approx(perfect, rel=1e-6)


# --- the training step ----------------------------------------------------------------------------------------------


def test_zero_grad_sets_gradients_to_none_by_default():
    assert inspect.signature(torch.optim.Optimizer.zero_grad).parameters["set_to_none"].default is True
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.ones(1, 1)).sum().backward()
    assert model.weight.grad is not None
    optimizer.zero_grad()
    assert model.weight.grad is None and model.bias.grad is None


def test_train_step_updates_and_evaluate_does_not(page):
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    loss = page.train_step(model, nn.MSELoss(), optimizer, page.x_line, page.y_line)
    assert isinstance(loss, float) and model.training
    assert not torch.equal(model.weight, before)
    after_step = model.weight.detach().clone()
    value = page.evaluate(model, nn.MSELoss(), page.x_line, page.y_line)
    assert not model.training and torch.equal(model.weight, after_step)
    assert value < loss  # the step moved downhill
    # train_step clears old gradients: after a second step, .grad is that step's gradient alone
    expected = torch.autograd.grad(nn.MSELoss()(model(page.x_line), page.y_line), model.weight)[0]
    page.train_step(model, nn.MSELoss(), optimizer, page.x_line, page.y_line)
    torch.testing.assert_close(model.weight.grad, expected)


def test_the_loop_recovers_the_line(page):
    assert page.line.weight.item() == pytest.approx(3.0, abs=0.05)
    assert page.line.bias.item() == pytest.approx(2.0, abs=0.05)


# --- optimizers -----------------------------------------------------------------------------------------------------


def first_below(curve, threshold=0.02):
    return next((i for i, loss in enumerate(curve) if loss < threshold), None)


def test_every_optimizer_lowers_the_loss_from_the_same_start(page):
    starts = {curve[0] for curve in page.curves.values()}
    assert len(starts) == 1  # same initial weights
    for name, curve in page.curves.items():
        assert curve[-1] < 0.1 * curve[0], name


def test_comparison_stated_on_the_page(page):
    sgd, momentum, adam = (page.curves[k] for k in ("SGD", "SGD + momentum", "Adam"))
    # plain SGD is the slowest: highest final loss, and about six times as many steps to get below 0.02
    assert sgd[-1] > max(momentum[-1], adam[-1])
    assert first_below(sgd) >= 5 * max(first_below(momentum), first_below(adam))
    assert first_below(sgd) <= 8 * min(first_below(momentum), first_below(adam))
    # the other two reach the noise floor 0.01
    noise_variance = (page.y_wave - torch.sin(2 * page.x_wave)).var().item()
    assert noise_variance == pytest.approx(0.01, rel=0.2)
    assert momentum[-1] < 0.012 and adam[-1] < 0.012


def test_optimizer_figure_is_log_scale(page):
    ax = page.ax  # the optimizer figure's axes (the page's next figure uses other names)
    assert ax.get_title() == "One problem, three optimizers" and ax.get_yscale() == "log"


# --- splits -------------------------------------------------------------------------------------------------------


def test_split_sizes_disjoint_complete_and_reproducible(page):
    assert (len(page.train_set), len(page.val_set), len(page.test_set)) == (800, 100, 100)
    train_idx, val_idx, test_idx = page.train_idx, page.val_idx, page.test_idx
    assert not (train_idx & val_idx) and not (train_idx & test_idx) and not (val_idx & test_idx)
    assert train_idx | val_idx | test_idx == set(range(1000))
    assert page.again[0].indices == page.train_set.indices
    other = torch.utils.data.random_split(page.dataset, [0.8, 0.1, 0.1], generator=torch.Generator().manual_seed(1))
    assert other[0].indices != page.train_set.indices  # the seed, not luck, fixes the split


# --- overfitting --------------------------------------------------------------------------------------------------


def test_unregularised_run_overfits(page):
    plain = page.plain
    assert 1_000 < sum(p.numel() for p in plain["model"].parameters()) < 10_000  # "a few thousand"
    assert plain["best_val"] == min(plain["val"])
    assert plain["val"][-1] > plain["best_val"] * 1.2  # validation loss rose after its best point
    assert plain["train"][-1] < plain["train"][plain["best_step"]]  # while the training loss kept falling
    assert plain["train"][-1] < 0.09 < plain["val"][-1]  # fits the noise: below the noise variance 0.3² on train
    assert plain["best_step"] < 200  # "early in training"


def test_remedies_lower_the_validation_loss(page):
    assert page.decayed["val"][-1] < page.plain["val"][-1]
    assert page.decayed["train"][-1] > page.plain["train"][-1]  # fits the training points less closely
    restored = page.evaluate(page.stopped, nn.MSELoss(), page.x_val, page.y_val)
    assert restored == pytest.approx(page.plain["best_val"])
    assert restored < page.plain["val"][-1]


def test_adamw_decays_by_default():
    assert inspect.signature(torch.optim.AdamW).parameters["weight_decay"].default == 0.01


def test_overfit_figure_panels(page):
    assert [ax.get_title() for ax in page.fig.axes] == ["Train vs validation loss", "What each model learned"]


# --- accuracy is not the objective --------------------------------------------------------------------------------


def test_always_yes_is_99_percent_accurate_and_useless(page):
    assert page.hair_test.mean().item() == pytest.approx(0.99)
    accuracy, precision, recall, f1 = page.report("check", page.always_yes, page.hair_test)
    assert accuracy == pytest.approx(0.99)
    assert (precision, recall, f1) == (0.0, 0.0, 0.0)


def test_report_matches_an_independent_count(page):
    predicted = torch.tensor([0.0, 0, 1, 1, 0, 1])
    truth = torch.tensor([0.0, 1, 0, 1, 0, 1])
    accuracy, precision, recall, f1 = page.report("check", predicted, truth)
    assert accuracy == pytest.approx(4 / 6)
    assert precision == pytest.approx(2 / 3) and recall == pytest.approx(2 / 3) and f1 == pytest.approx(2 / 3)


def test_loss_separates_the_constant_predictor_from_the_trained_one(page):
    constant = nn.BCEWithLogitsLoss()(page.constant_logit, page.hair_test).item()
    assert constant == pytest.approx(-(0.99 * math.log(0.99) + 0.01 * math.log(0.01)), rel=1e-4)
    trained = nn.BCEWithLogitsLoss()(page.test_logits, page.hair_test).item()
    assert trained < 0.5 * constant
    accuracy, precision, recall, f1 = page.learned
    assert 0 < accuracy - 0.99 < 0.01  # accuracy barely moves: less than one percentage point
    assert recall >= 0.8 and f1 > 0.8  # but the bald are now found


def test_accuracy_has_no_gradient_and_loss_has_one(page):
    assert not page.accuracy.requires_grad
    assert nn.BCEWithLogitsLoss()(page.scores, page.hair_test).requires_grad


# --- exercises ----------------------------------------------------------------------------------------------------


def test_gradients_accumulate_without_zeroing(page):
    w = torch.tensor(2.0, requires_grad=True)
    for _ in range(3):
        (w * 3).backward()
    assert w.grad.item() == 9.0
    assert page.w.grad.item() == 3.0  # after zeroing, one backward


def test_bce_by_hand_and_naive_overflow(page):
    torch.testing.assert_close(page.by_hand, nn.BCEWithLogitsLoss(reduction="none")(page.z, page.t))
    assert page.by_hand[3].item() == pytest.approx(100.0)
    assert torch.isinf(page.naive[3]) and torch.allclose(page.naive[:3], page.by_hand[:3])


def test_patience_rule(page):
    assert page.stopping_step([3, 2, 1, 2, 2, 2], patience=2) == (4, 2)
    assert page.stopping_step([3, 2, 1], patience=5) == (2, 2)
    stop_10, best_10 = page.stopping_step(page.plain["val"], 10)
    stop_50, best_50 = page.stopping_step(page.plain["val"], 50)
    assert best_50 == page.plain["best_step"] and stop_50 == best_50 + 50
    # stopped too soon
    assert best_10 != page.plain["best_step"] and page.plain["val"][best_10] > page.plain["best_val"]


def test_learning_rate_sweep(page):
    assert page.final_loss[0.005] > 10 * page.final_loss[0.05]  # too small: barely moves
    assert math.isnan(page.final_loss[0.5])  # too large: diverges
