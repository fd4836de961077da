"""docs/evaluation.md: the metrics against scikit-learn's and scipy's, the errors, and what the page claims.

``page`` (the names the page's blocks define), ``printed`` and ``page_run`` come from one run of the page's blocks
in this process (tests/conftest.py).
"""

import math
import re

import numpy as np
import pytest
import torch
from conftest import test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from scipy.stats import binomtest
from sklearn import metrics
from torch import nn

import snippets.evaluation as e


def random_predictions(n=200, classes=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=generator)
    scores = torch.randn(n, classes, generator=generator)
    scores[torch.arange(n), labels] += 1.5  # better than chance
    return labels, scores


# --- the data


def test_the_splits_are_stratified_disjoint_and_seeded(page):
    splits = e.digit_splits()
    sizes = {name: len(y) for name, (_, y) in splits.items()}
    assert sizes == {"train": 1078, "validation": 359, "test": 360} and sum(sizes.values()) == 1797
    for _, y in splits.values():  # every digit in about the same share
        share = torch.bincount(y, minlength=10) / len(y)
        assert share.min() > 0.09 and share.max() < 0.11
    rows = {name: {tuple(r) for r in x.tolist()} for name, (x, _) in splits.items()}
    assert len(rows["train"] & rows["test"]) < 5  # disjoint but for duplicate images in the data set
    assert torch.equal(e.digit_splits()["test"][0], splits["test"][0])
    x, y = e.per_class(splits["train"], 10)
    assert torch.equal(torch.bincount(y), torch.full((10,), 10)) and x.shape == (100, 64)


# --- metrics against scikit-learn


def test_the_confusion_matrix_and_per_class_scores_equal_scikit_learns():
    labels, scores = random_predictions()
    predicted = scores.argmax(1)
    predicted[predicted == 7] = 6  # no prediction of 7: precision 0 / 0
    counts = e.confusion_matrix(labels, predicted)
    assert np.array_equal(counts.numpy(), metrics.confusion_matrix(labels, predicted, labels=range(10)))
    ours = torch.stack(e.precision_recall_f1(counts)).numpy()
    theirs = metrics.precision_recall_fscore_support(labels, predicted, labels=range(10), zero_division=0)
    assert np.allclose(ours, np.stack(theirs[:3]))
    _, _, f1 = e.precision_recall_f1(counts)
    assert f1.mean().item() == pytest.approx(metrics.f1_score(labels, predicted, average="macro", zero_division=0))
    micro = metrics.f1_score(labels, predicted, average="micro")
    assert micro == pytest.approx((labels == predicted).float().mean().item())  # "micro F1 equals the accuracy"


def test_top_k_accuracy_equals_scikit_learns():
    labels, scores = random_predictions(seed=1)
    for k in (1, 2, 5):
        theirs = metrics.top_k_accuracy_score(labels, scores, k=k, labels=range(10))
        assert e.top_k_accuracy(scores, labels, k) == pytest.approx(theirs)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_and_average_precision_equal_scikit_learns(ties):
    generator = torch.Generator().manual_seed(2)
    positive = torch.rand(300, generator=generator) < 0.2
    scores = torch.randn(300, generator=generator) + positive.float()
    if ties:  # tied scores: one threshold for each run of them
        scores = (scores * 4).round() / 4
    assert e.roc_auc(scores, positive) == pytest.approx(metrics.roc_auc_score(positive, scores))
    assert e.average_precision(scores, positive) == pytest.approx(metrics.average_precision_score(positive, scores))
    fpr, tpr = e.roc_curve(scores, positive)
    their_fpr, their_tpr, _ = metrics.roc_curve(positive, scores, drop_intermediate=False)
    assert np.allclose(fpr.numpy(), their_fpr) and np.allclose(tpr.numpy(), their_tpr)


def test_repeating_the_negatives_keeps_the_roc_auc_and_lowers_average_precision(printed):
    auc, ap = map(float, re.search(r"\nROC AUC ([\d.]+) .*average precision ([\d.]+) ", printed).groups())
    rare_auc, rare_ap = map(
        float, re.search(r"ten times rarer: ROC AUC ([\d.]+), average precision ([\d.]+)", printed).groups()
    )
    assert rare_auc == auc and rare_ap < ap  # "does not move at all", "falls"
    assert printed.count("(scikit-learn ") == 2
    for ours, theirs in re.findall(r"([\d.]+) \(scikit-learn ([\d.]+)\)", printed):
        assert ours == theirs


def test_the_page_agrees_with_scikit_learn(printed):
    assert "equal to scikit-learn's: True" in printed and "macro F1 equal: True" in printed
    for ours, theirs in re.findall(r"top-\d accuracy ([\d.]+)% \(scikit-learn: ([\d.]+)%\)", printed):
        assert ours == theirs


def test_labels_that_cannot_be_compared_are_refused():
    labels = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"labels \(3,\) and predictions \(2,\): need two 1-D tensors of one length"):
        e.confusion_matrix(labels, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="predictions from 0 to 10: the classes are 0 to 9"):
        e.confusion_matrix(labels, torch.tensor([0, 10, 2]))
    with pytest.raises(ValueError, match="labels from -1 to 2"):
        e.confusion_matrix(torch.tensor([-1, 1, 2]), labels)
    with pytest.raises(TypeError, match="predictions are torch.float32: need class indices"):
        e.confusion_matrix(labels, labels.float())
    with pytest.raises(ValueError, match="need positive and negative examples, both"):
        e.roc_auc(torch.rand(5), torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="one score and one 0/1 label per example"):
        e.average_precision(torch.rand(5), torch.ones(4))
    scores = torch.rand(3, 10)
    with pytest.raises(ValueError, match=r"labels \(2,\) and predictions \(3,\)"):
        e.top_k_accuracy(scores, torch.tensor([1, 2]), k=2)
    with pytest.raises(ValueError, match="labels from 0 to 10: the classes are 0 to 9"):
        e.top_k_accuracy(scores, torch.tensor([0, 10, 2]), k=2)
    with pytest.raises(ValueError, match=r"1 <= k <= classes, got \(3, 10\) and k=11"):
        e.top_k_accuracy(scores, labels, k=11)
    with pytest.raises(ValueError, match="need one 0/1 per example"):
        e.bootstrap_interval(torch.zeros(0, dtype=torch.bool))
    with pytest.raises(ValueError, match="the same examples"):
        e.paired_bootstrap(torch.ones(5, dtype=torch.bool), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"labels \(2,\) and predictions \(3,\)"):
        e.expected_calibration_error(scores.softmax(dim=1), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        e.expected_calibration_error(torch.full((2, 2), float("nan")), torch.tensor([0, 1]))
    assert e.mcnemar(torch.tensor([1, 1, 0]), torch.tensor([0, 1, 1]))[:2] == (1, 1)  # 0/1 integers, not bitwise
    with pytest.raises(ValueError, match="need 1 where a prediction is right, 0 where wrong"):
        e.mcnemar(torch.tensor([3, 1, 0]), torch.tensor([0, 1, 1]))  # class predictions, not right/wrong
    with pytest.raises(ValueError, match="need 1 where a prediction is right"):
        e.bootstrap_interval(torch.tensor([2, 8, 5]))
    with pytest.raises(ValueError, match="the labels must be 0/1"):
        e.average_precision(torch.rand(4), torch.tensor([0, 3, 1, 8]))
    with pytest.raises(ValueError, match="the scores hold NaN"):
        e.roc_auc(torch.tensor([0.1, float("nan"), 0.3]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="need at least one example"):
        e.top_k_accuracy(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long), k=1)
    big = torch.tensor([19, 3], dtype=torch.uint8)  # 19 * 20 overflows uint8
    assert e.confusion_matrix(big, big, classes=20)[19, 19] == 1


# --- how sure is the number


def test_the_bootstrap_interval_holds_the_accuracy_and_narrows_with_more_examples(printed):
    correct = torch.rand(400, generator=torch.Generator().manual_seed(3)) < 0.9
    low, high = e.bootstrap_interval(correct)
    mean = correct.float().mean().item()
    assert low < mean < high and (low, high) == e.bootstrap_interval(correct)  # seeded
    standard_error = math.sqrt(mean * (1 - mean) / 400)
    assert high - low == pytest.approx(2 * 1.96 * standard_error, rel=0.15)  # the normal approximation's width
    widths = {name: float(w) for name, w in re.findall(r"(all|half) +\d+ digits: interval width ([\d.]+)%", printed)}
    assert widths["half"] / widths["all"] == pytest.approx(math.sqrt(2), rel=0.25)  # "about √2 wider"


@pytest.mark.parametrize("only_a, only_b", [(0, 0), (3, 3), (2, 9), (15, 4), (0, 7)])
def test_mcnemar_equals_the_exact_binomial_test(only_a, only_b):
    both, neither = 50, 5
    a = torch.tensor([True] * only_a + [False] * only_b + [True] * both + [False] * neither)
    b = torch.tensor([False] * only_a + [True] * only_b + [True] * both + [False] * neither)
    counted_a, counted_b, p = e.mcnemar(a, b)
    assert (counted_a, counted_b) == (only_a, only_b)
    expected = 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert p == pytest.approx(expected)


def test_the_paired_bootstrap_cancels_what_both_models_share():
    correct = torch.rand(300, generator=torch.Generator().manual_seed(4)) < 0.8
    assert e.paired_bootstrap(correct, correct) == (0.0, 0.0)
    better = correct.clone()
    better[~correct] = torch.arange(int((~correct).sum())) % 2 == 0  # right on half of the other's mistakes
    low, high = e.paired_bootstrap(better, correct)
    assert 0 < low < (better.float() - correct.float()).mean().item() < high
    with pytest.raises(ValueError, match="the same examples"):
        e.mcnemar(correct, correct[:10])


def test_the_page_compares_the_two_models_as_it_says(page, printed):
    only_mlp, only_linear, p = e.mcnemar(page.correct["MLP"], page.correct["linear"])
    assert f"only the MLP right: {only_mlp}; only the linear model: {only_linear}" in printed
    assert "equal to scipy's binomial test: True" in printed
    assert p > 0.05 and float(re.search(r"MLP minus linear: 95% interval ([-+][\d.]+)%", printed)[1]) < 0
    assert len(page.seeds) == 5


# --- calibration


def test_the_expected_calibration_error_is_the_weighted_gap_per_bin():
    generator = torch.Generator().manual_seed(5)
    probabilities = torch.randn(500, 10, generator=generator).mul(2).softmax(dim=1)
    labels = torch.randint(10, (500,), generator=generator)
    confidence, predicted = probabilities.max(dim=1)
    total = 0.0
    for b in range(10):  # the definition, bin by bin
        inside = (confidence > b / 10) & (confidence <= (b + 1) / 10)  # closed on the right
        if inside.any():
            gap = (predicted[inside] == labels[inside]).double().mean() - confidence[inside].double().mean()
            total += inside.sum().item() / 500 * abs(gap.item())
    assert e.expected_calibration_error(probabilities, labels) == pytest.approx(total)
    edge = torch.tensor([[0.5, 0.5, 0.0]])  # a confidence of exactly 0.5 goes to the bin (0.4, 0.5]
    assert e.calibration_bins(edge, torch.tensor([0]))[0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    drawn = torch.multinomial(probabilities, 1, generator=generator)[:, 0]  # labels drawn from the probabilities
    calibrated = (
        torch.cat([probabilities] * 40),
        torch.cat([drawn] + [torch.multinomial(probabilities, 1, generator=generator)[:, 0] for _ in range(39)]),
    )
    assert e.expected_calibration_error(*calibrated) < 0.02  # calibrated by construction


def test_probabilities_that_are_not_distributions_are_refused():
    with pytest.raises(ValueError, match=r"row 1 sums to 2: need probabilities that sum to 1"):
        e.expected_calibration_error(torch.tensor([[0.5, 0.5], [1.0, 1.0]]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="softmax the logits first"):
        e.expected_calibration_error(torch.tensor([[2.0, -1.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="temperature scaling needs validation examples: none"):
        e.fit_temperature(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"row 1 has values outside \[0, 1\]"):
        e.expected_calibration_error(torch.tensor([[0.5, 0.5], [1.5, -0.5]]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="N > 0"):
        e.expected_calibration_error(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="these look like probabilities: pass the logits"):
        e.fit_temperature(torch.rand(20, 10).softmax(dim=1), torch.zeros(20, dtype=torch.long))
    with pytest.raises(ValueError, match="the logits hold NaN or infinite values"):
        e.fit_temperature(torch.full((2, 10), float("inf")), torch.zeros(2, dtype=torch.long))


def test_temperature_scaling_recovers_a_known_temperature_and_keeps_the_predictions(page, printed):
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(4000, 10, generator=generator) * 3
    labels = torch.multinomial((logits / 2.5).softmax(dim=1), 1, generator=generator)[:, 0]  # truly at T = 2.5
    assert e.fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.1)
    assert printed.count("the same predictions: True") == 2
    found = dict(re.findall(r"(linear|MLP): temperature fitted on validation ([\d.]+)", printed))
    x_val, y_val = page.splits["validation"]
    for name, model in (("linear", page.linear), ("MLP", page.network)):  # fitted on validation, not on test
        with torch.no_grad():
            assert e.fit_temperature(model(x_val), y_val) == pytest.approx(float(found[name]), abs=5e-4)
    before, after = zip(*re.findall(r"before ECE ([\d.]+), .*\n +test, after +ECE ([\d.]+)", printed))
    assert all(float(b) > float(a) for b, a in zip(before, after))  # scaling lowers the test ECE of both
    falls = dict(zip(["linear", "MLP"], re.findall(r"ECE's fall, 95% bootstrap interval ([-+][\d.]+) to", printed)))
    assert float(falls["linear"]) > 0 > float(falls["MLP"])  # "lies above 0"; "reaches below 0"


def test_the_models_err_in_the_directions_the_page_says(printed):
    rows = re.findall(r"(linear|MLP) +mean confidence ([\d.]+)%, accuracy ([\d.]+)%", printed)
    gap = {name: float(confidence) - float(accuracy) for name, confidence, accuracy in rows}
    assert gap["linear"] < 0 < gap["MLP"]  # "less sure than it is right", "slightly more sure"
    temperature = dict(re.findall(r"(linear|MLP): temperature fitted on validation ([\d.]+)", printed))
    assert float(temperature["linear"]) < 1 < float(temperature["MLP"])  # sharpened, softened


# --- overfitting


def test_corrupt_labels_changes_the_share_asked_to_another_class():
    data = e.per_class(e.digit_splits()["train"], 20)
    x, noisy = e.corrupt_labels(data, share=0.2)
    assert x is data[0] and int((noisy != data[1]).sum()) == 40 and noisy.min() >= 0 and noisy.max() <= 9
    assert torch.equal(e.corrupt_labels(data, 0.2)[1], noisy) and not torch.equal(data[1], noisy)  # seeded, a copy


def test_the_learning_curves_show_overfitting_as_the_page_says(page, printed):
    assert "training accuracy at the end 100.00%" in printed
    assert "wrong labels the model reproduces: 40 of 40" in printed
    losses = re.search(r"validation loss: lowest ([\d.]+) at epoch (\d+), ([\d.]+) at the end", printed)
    lowest, at, end = losses.groups()
    assert float(end) > 1.3 * float(lowest) and 10 < int(at) < 150  # "falls", then "rises again"
    accuracies = re.search(r"validation accuracy: ([\d.]+)% at epoch \d+, ([\d.]+)% at", printed)
    accuracy_best, accuracy_end = accuracies.groups()
    assert float(accuracy_best) > float(accuracy_end) + 5  # "the validation accuracy drops"
    rows = re.findall(r"(\d+) digits: training accuracy ([\d.]+)%, validation ([\d.]+)%", printed)
    assert [int(n) for n, _, _ in rows] == [20, 50, 100, 200, 500, 1000]
    assert all(float(fit) == 100.0 for _, fit, _ in rows)  # "fits every training set"
    validation = [float(v) for _, _, v in rows]
    assert validation == sorted(validation) and validation[-1] - validation[0] > 15  # "what grows with the data"


def test_shifted_digits_move_whole_images_by_at_most_a_pixel():
    x = torch.zeros(3, 64)
    x[:, 3 * 8 + 4] = 1.0  # one pixel at row 3, column 4
    moved = e.shift_digits(x, torch.Generator().manual_seed(0))
    where = moved.reshape(3, 8, 8).nonzero()[:, 1:]
    assert len(where) == 3 and ((where - torch.tensor([3, 4])).abs() <= 1).all()
    border = torch.zeros(1, 64)
    border[0, 0] = 1.0  # a corner pixel can leave the image; nothing comes in
    assert e.shift_digits(border.expand(50, 64), torch.Generator().manual_seed(1)).sum(1).le(1).all()
    many = e.shift_digits(x[:1].expand(50, 64), torch.Generator().manual_seed(2))
    assert len({tuple(row.nonzero()[:, 0].tolist()) for row in many}) == 9  # each digit its own draw: all 9 shifts


def test_the_remedies_table_says_what_the_page_says(page, page_run, printed):
    assert set(page.results) == set(page.recipes) and all(len(v) == 5 for v in page.results.values())
    mean = {name: sum(v) / 5 for name, v in page.results.items()}
    assert page_run.names_after("regularisation-demo").chosen == max(mean, key=mean.get) == "early stopping"
    baseline = page.results["baseline"]
    learnt = {name: float(n) for name, n in re.findall(r"\n(\w[\w .]+?) +[\d.]+% \(.*\) +([\d.]+) of 40", printed)}
    assert set(learnt) == set(page.recipes)
    assert learnt["baseline"] > 38 and learnt["early stopping"] < 5 and learnt["shifted digits"] < 5
    assert 0.35 < learnt["dropout 0.5"] / learnt["baseline"] < 0.65  # "dropout halves what is learnt"
    assert min(page.results["weight decay 0.1"]) < max(baseline)  # "overlaps the baseline's range"
    assert mean["weight decay 1"] > max(baseline)  # "helps a little"
    for name in ("dropout 0.5", "early stopping", "shifted digits"):
        assert min(page.results[name]) > max(baseline) + 0.10  # "by more than ten points on every seed"
    assert 1 - (1 - 3e-3 * 0.1) ** 200 == pytest.approx(0.06, abs=0.005)  # "would shrink a weight by 6%"
    assert "its five models on the test set, read once: " in printed


def test_early_stopping_restores_the_best_epochs_weights():
    splits = e.digit_splits()
    small = e.per_class(splits["train"], 5)
    torch.manual_seed(0)
    model = e.mlp(hidden=128)
    history = e.train(model, small, epochs=300, validation=splits["validation"], patience=10)
    best = history["best_epoch"]
    assert len(history["val_loss"]) == best + 11  # stopped 10 epochs after the best
    assert e.evaluate(model, *splits["validation"])[0] == pytest.approx(history["val_loss"][best])
    with pytest.raises(ValueError, match="early stopping needs a validation set and patience >= 1"):
        e.train(model, small, patience=10)
    with pytest.raises(ValueError, match="patience >= 1"):
        e.train(model, small, validation=splits["validation"], patience=0)
    with pytest.raises(ValueError, match="share=1.5: a share of the labels, from 0 to 1"):
        e.corrupt_labels(small, share=1.5)
    with pytest.raises(ValueError, match="6 per class asked; the rarest class has 5"):
        e.per_class(small, 6)


# --- deep networks


def test_the_initialisations_have_the_variances_the_page_gives():
    torch.manual_seed(0)
    variances = {
        init: e.deep_mlp(depth=2, width=512, init=init)[2].weight.var().item()
        for init in ("default", "xavier", "kaiming")
    }
    assert variances["kaiming"] == pytest.approx(2 / 512, rel=0.05)
    assert variances["xavier"] == pytest.approx(2 / (512 + 512), rel=0.05)
    assert variances["default"] == pytest.approx(1 / (3 * 512), rel=0.05)
    with pytest.raises(ValueError, match="init 'he': default, xavier or kaiming"):
        e.deep_mlp(init="he")


def test_layer_statistics_read_each_layer_and_leave_no_hook():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
        model[0].bias.fill_(-1.0)  # every unit dead on positive inputs
    stats = e.layer_statistics(model, torch.rand(5, 4), torch.zeros(5, dtype=torch.long))
    assert len(stats) == 1 and stats[0]["dead"] == 1.0 and stats[0]["activation_std"] == 0.0
    assert stats[0]["gradient_std"] == 0.0  # no gradient reaches a dead unit's weights
    assert not model[1]._forward_hooks


def test_the_initialisations_train_as_the_page_says(page, printed):
    found = re.findall(
        r"\n(\w+), seed 0, at the start.*\n.*\n  5 seeds: dead units (\d+)% at the start, (\d+)% after training"
        r"\n  5 seeds, trained, validation: ([\d.]+)% \(([\d.]+)% to ([\d.]+)%\)",
        printed,
    )
    dead = {init: (int(before), int(after)) for init, before, after, *_ in found}
    validation = {init: tuple(map(float, v)) for init, _, _, *v in found}
    assert set(validation) == {"default", "xavier", "kaiming"}
    assert validation["default"][2] < 11  # "stays at chance (10%)", every seed
    assert 30 < validation["xavier"][0] < validation["kaiming"][1]  # "part of the way"; Kaiming above every Xavier
    assert validation["kaiming"][0] > 85  # "trains"
    assert dead["kaiming"][1] < dead["kaiming"][0] and dead["xavier"][1] > dead["xavier"][0]  # "falls", "rises"
    start = page.statistics_at_start
    assert len(start["kaiming"]) == 10
    kaiming, xavier, default = start["kaiming"], start["xavier"], start["default"]
    assert kaiming[-1]["activation_std"] / kaiming[0]["activation_std"] > 0.3  # "keep their scale"
    assert xavier[-1]["activation_std"] / xavier[0]["activation_std"] < 0.1  # "shrink layer after layer"
    assert default[0]["gradient_std"] < default[-1]["gradient_std"] / 20  # "far smaller than at the last"


def test_dead_units_are_those_silent_for_every_example():
    model = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [-1.0], [0.0], [1.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 0.0, -1.0, -2.5]))  # unit 3: silent for x <= 2.5 only
    x = torch.tensor([[1.0], [2.0], [3.0]])  # unit 1 silent for all, unit 2 silent for all, unit 0 never
    stats = e.layer_statistics(model, x, torch.zeros(3, dtype=torch.long))
    assert stats[0]["dead"] == 0.5  # units 1 and 2 of 4; unit 3 is alive for x = 3
    with pytest.raises(TypeError, match="nn.Sequential"):
        e.layer_statistics(nn.Module(), x, torch.zeros(3, dtype=torch.long))


def test_the_default_networks_late_activations_come_from_its_biases(page):
    x, y = e.digit_splits()["train"]
    torch.manual_seed(0)
    model = e.deep_mlp(init="default")
    with_biases = e.layer_statistics(model, x, y)[-1]["activation_std"]
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.bias.zero_()
    assert e.layer_statistics(model, x, y)[-1]["activation_std"] < with_biases / 20


# --- normalisation


def test_the_hand_written_norms_equal_pytorchs(printed):
    assert len(re.findall(r"(Norm.*) +equal: True", printed)) == 5 and "equal: False" not in printed
    x = torch.randn(3, 4, 2, 2)
    assert torch.allclose(e.group_norm(x, 1), e.layer_norm(x, last_dims=3), atol=1e-6)  # "groups=1: a layer norm"
    assert torch.allclose(e.group_norm(x, 4), nn.InstanceNorm2d(4)(x), atol=1e-5)  # "groups=channels: instance"


def test_batch_norm_refuses_one_example_in_training_mode(printed):
    assert "one example in training mode: ValueError\nExpected more than 1 value per channel when" in printed
    batch_mean, running = (
        torch.tensor([float(v) for v in re.search(rf"{label} +tensor\(\[([^\]]+)\]", printed)[1].split(",")])
        for label in ("batch mean:", "running mean after one batch:")
    )
    assert torch.allclose(running, 0.1 * batch_mean, atol=1e-4)  # momentum 0.1, from 0
    after = [float(v) for v in re.search(r"after 101 batches: +tensor\(\[([^\]]+)\]", printed)[1].split(",")]
    assert all(abs(v - 5) < 0.5 for v in after)  # "near the data's"


def test_the_searches_have_the_same_budget_and_the_test_set_is_read_once(page, page_run, printed):
    assert len(e.grid_settings(4)) == len(e.random_settings(16)) == 16
    assert len({s["lr"] for s in e.grid_settings(4)}) == 4 and len({s["lr"] for s in e.random_settings(16)}) == 16
    assert "4 distinct learning rates tried" in printed and "16 distinct learning rates tried" in printed
    assert printed.count("test accuracy") == 2  # the two models'; then one reading per model of the two choices
    assert printed.count("on the test set, read once") == 2
    assert set(page.again) == {"grid", "random", "Optuna", "Optuna, warm-up"}
    assert all(len(models) == 5 for models in page.again.values())
    found = page_run.names_after("search-demo").found
    grid_best = float(re.search(r"grid  : best validation ([\d.]+)%", printed)[1])
    model = e.fit_setting(page.noisy, **found["grid"])  # the search scored on validation, not on test
    assert e.evaluate(model, *page.splits["validation"])[1] * 100 == pytest.approx(grid_best, abs=0.006)
    with pytest.raises(ValueError, match="a grid needs 2 or more per axis"):
        e.grid_settings(1)


def test_pruning_early_stops_the_slow_starters_as_the_page_says(printed):
    studies = re.findall(
        r"(Optuna(?:, warm-up)?): best validation ([\d.]+)%\n +(\d+) trials pruned, (\d+) of .*\n"
        r" +the pruned trials, trained to the end: best ([\d.]+)%",
        printed,
    )
    best = {name: float(value) for name, value, *_ in studies}
    epochs = {name: int(n) for name, _, _, n, _ in studies}
    pruned_best = {name: float(value) for name, *_, value in studies}
    assert pruned_best["Optuna"] > best["Optuna"]  # "stopped a trial that would have beaten every trial it kept"
    assert pruned_best["Optuna, warm-up"] < best["Optuna, warm-up"]  # "worse than the best kept"
    assert epochs["Optuna"] < epochs["Optuna, warm-up"] < 1600  # both save training; pruning early saves more
    curves = {
        lr: [int(a) for a in re.findall(r"(\d+)%", values)]
        for lr, values in re.findall(r"lr (\S+), every 10 epochs: ([\d% ]+)", printed)
    }
    fast, slow = curves["3e-02"], curves["1e-03"]
    assert len(fast) == len(slow) == 10
    assert fast[0] > slow[0] + 30 and slow[-1] > fast[-1] + 5  # "starts far behind and ends ahead"
    assert fast[0] == max(fast) and fast[-1] < fast[0] - 10  # best within a few epochs, then memorises


def test_the_winners_retrained_say_what_the_page_says(printed):
    seed_0 = {name: float(v) for name, v in re.findall(r"\n(grid|random) *: best validation ([\d.]+)%", printed)}
    seed_0.update((n, float(v)) for n, v in re.findall(r"(Optuna(?:, warm-up)?): best validation ([\d.]+)%", printed))
    again = {
        name: tuple(map(float, values))
        for name, *values in re.findall(
            r"\n([\w ,-]+): lr \S+, weight decay \S+\n  validation ([\d.]+)% \(([\d.]+)% to ([\d.]+)%\)", printed
        )
    }
    assert set(again) == set(seed_0) == {"grid", "random", "Optuna", "Optuna, warm-up"}
    assert all(again[name][0] > seed_0[name] for name in again)  # "all four winners score higher"
    grid, warm = again["grid"], again["Optuna, warm-up"]
    assert grid[1] <= warm[2] and warm[1] <= grid[2]  # "within each other's ranges"
    assert again["Optuna"][2] < min(grid[1], warm[1])  # "clearly worse than both"


def test_one_more_mistake_costs_a_rare_class_more_in_macro_f1(printed):
    costs = re.findall(r"one more wrong 3 costs\n  macro F1 ([\d.]+), micro F1 ([\d.]+)", printed)
    (macro_all, micro_all), (macro_few, micro_few) = [(float(a), float(b)) for a, b in costs]
    assert macro_all <= micro_all * 1.1 and abs(micro_few - micro_all) < 0.001  # "about the same"
    assert macro_few > 3 * micro_few  # "several times what the micro F1 loses"
