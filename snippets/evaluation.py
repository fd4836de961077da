"""Evaluating and improving a model: the code of docs/evaluation.md.

Metrics beyond accuracy, each checked against scikit-learn's; how sure a test
accuracy is (a bootstrap interval, a paired test of two models); calibration
and temperature scaling; overfitting diagnosed and treated; why deep networks
fail to train (statistics read with hooks); normalisation layers by hand; and a
hyperparameter search that reads the test set once. Everything runs on
scikit-learn's 1,797 digits, in seconds. Other code may import the definitions.
What the page runs is at the end, at module level, in page order.
"""

# --8<-- [start:data]
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def digit_splits(seed=0):
    """scikit-learn's 1,797 digits (8 x 8 pixels, ink 0..16) as float tensors in
    [0, 1]: 60% to train, 20% to validate, 20% to test, every digit in the same
    share in each part (stratified), the same parts for the same seed."""
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)
    index = np.arange(len(y))
    train, rest = train_test_split(
        index, test_size=0.4, stratify=digits.target, random_state=seed
    )
    validation, test = train_test_split(
        rest, test_size=0.5, stratify=digits.target[rest], random_state=seed
    )
    parts = {"train": train, "validation": validation, "test": test}
    return {name: (x[part], y[part]) for name, part in parts.items()}


def per_class(data, count):
    """The first ``count`` examples of each class of ``data`` = (x, y)."""
    x, y = data
    fewest = torch.bincount(y, minlength=10).min().item()
    if count > fewest:
        raise ValueError(f"{count} per class asked; the rarest class has {fewest}")
    chosen = torch.cat([(y == c).nonzero()[:count, 0] for c in range(10)])
    return x[chosen], y[chosen]


def corrupt_labels(data, share, seed=0):
    """A copy of data = (x, y) in which ``share`` of the examples, drawn at
    random, carry another class's label (a careless annotator's mistakes)."""
    if not 0 <= share <= 1:
        raise ValueError(f"share={share}: a share of the labels, from 0 to 1")
    x, y = data
    generator = torch.Generator().manual_seed(seed)
    wrong = torch.randperm(len(y), generator=generator)[: round(share * len(y))]
    offset = torch.randint(1, 10, (len(wrong),), generator=generator)
    y = y.clone()
    y[wrong] = (y[wrong] + offset) % 10  # never the true class
    return x, y


# --8<-- [end:data]


# --8<-- [start:models]
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def mlp(hidden=64, dropout=0.0):
    """64 pixels -> ``hidden`` ReLU units -> 10 logits; hidden=0: one linear
    layer (multinomial logistic regression)."""
    if hidden == 0:
        return nn.Linear(64, 10)
    return nn.Sequential(
        nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10)
    )


@torch.no_grad()
def evaluate(model, x, y):
    """Cross-entropy and accuracy of ``model`` on (x, y), in eval mode."""
    model.eval()
    logits = model(x)
    accuracy = (logits.argmax(1) == y).float().mean()
    return F.cross_entropy(logits, y).item(), accuracy.item()


def train(
    model,
    data,
    epochs=300,
    lr=3e-3,
    weight_decay=0.0,
    augment=None,
    validation=None,
    patience=None,
    on_epoch=None,
    seed=0,
):
    """Full-batch AdamW on data = (x, y), one step per epoch; returns the
    history: per epoch, the training loss and accuracy (of that step's forward
    pass) and, given ``validation`` = (x, y), the validation loss and accuracy.
    augment(x, generator): new inputs at every epoch. patience: early stopping
    when the validation loss has not improved for that many epochs; the best
    epoch's weights are restored. on_epoch(epoch, model): True stops."""
    if patience is not None and (validation is None or patience < 1):
        raise ValueError("early stopping needs a validation set and patience >= 1")
    torch.manual_seed(seed)  # dropout's masks
    generator = torch.Generator().manual_seed(seed)  # the augmentation's draws
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=lr,
        weight_decay=weight_decay,  # 0 here; AdamW's own default is 0.01
    )
    x, y = data
    history = {name: [] for name in ("train_loss", "train_accuracy")}
    history.update(val_loss=[], val_accuracy=[])
    best_loss, best_weights, waited = math.inf, None, 0
    for epoch in range(epochs):
        model.train()
        logits = model(augment(x, generator) if augment else x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history["train_loss"].append(loss.item())
        right = (logits.argmax(1) == y).float().mean()
        history["train_accuracy"].append(right.item())
        if validation is not None:
            val_loss, val_accuracy = evaluate(model, *validation)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
        if on_epoch is not None and on_epoch(epoch, model):
            break
        if patience is not None:
            if val_loss < best_loss:
                best_loss, waited = val_loss, 0
                best_weights = copy.deepcopy(model.state_dict())
                history["best_epoch"] = epoch
            else:
                waited += 1
                if waited == patience:
                    break
    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.eval()
    return history


@torch.no_grad()
def predict_proba(model, x):
    """Class probabilities (softmax of the logits), in eval mode."""
    return model.eval()(x).softmax(dim=1)


# --8<-- [end:models]


# --8<-- [start:confusion]
import torch


def check_labels(labels, predicted, classes):
    """Refuse label tensors that cannot be compared: two 1-D integer tensors of
    one length, every value a class from 0 to classes - 1."""
    if labels.ndim != 1 or labels.shape != predicted.shape:
        raise ValueError(
            f"labels {tuple(labels.shape)} and predictions "
            f"{tuple(predicted.shape)}: need two 1-D tensors of one length"
        )
    for name, values in (("labels", labels), ("predictions", predicted)):
        if values.is_floating_point():
            raise TypeError(f"{name} are {values.dtype}: need class indices")
        if len(values) and (values.min() < 0 or values.max() >= classes):
            raise ValueError(
                f"{name} from {values.min().item()} to {values.max().item()}: "
                f"the classes are 0 to {classes - 1}"
            )


def confusion_matrix(labels, predicted, classes=10):
    """counts[i, j]: how many examples of class i were predicted as class j."""
    check_labels(labels, predicted, classes)
    pairs = labels.long() * classes + predicted  # one number per pair
    counts = torch.bincount(pairs, minlength=classes * classes)
    return counts.reshape(classes, classes)


# --8<-- [end:confusion]


# --8<-- [start:per-class]
import torch


def precision_recall_f1(counts):
    """Per class, from a confusion matrix: precision (of the examples predicted
    as the class, the share that are), recall (of the class's examples, the
    share found) and F1 (their harmonic mean); 0 where there is nothing to
    divide by, like scikit-learn's zero_division=0."""
    counts = counts.double()
    right = counts.diag()
    precision = right / counts.sum(0).clamp(min=1)  # no prediction: 0 / 1
    recall = right / counts.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return precision, recall, f1


# --8<-- [end:per-class]


# --8<-- [start:top-k]
import torch


def top_k_accuracy(scores, labels, k):
    """The share of examples whose label is among the ``k`` highest scores."""
    if scores.ndim != 2 or not 1 <= k <= scores.shape[1]:
        raise ValueError(
            f"need N x classes scores and 1 <= k <= classes, got "
            f"{tuple(scores.shape)} and k={k}"
        )
    check_labels(labels, scores.argmax(dim=1), classes=scores.shape[1])
    if len(labels) == 0 or not scores.isfinite().all():
        raise ValueError("need at least one example, and finite scores")
    top = scores.topk(k, dim=1).indices  # N x k
    return (top == labels[:, None]).any(dim=1).float().mean().item()


# --8<-- [end:top-k]


# --8<-- [start:curves]
import torch


def ranked(scores, positive):
    """True and false positives counted from the highest score down, at the
    last example of every run of equal scores (one threshold per score)."""
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError("need one score and one 0/1 label per example")
    if not ((positive == 0) | (positive == 1)).all():
        raise ValueError("the labels must be 0/1 (is it the class?)")
    if not scores.isfinite().all():
        raise ValueError("the scores hold NaN or infinite values")
    positive = positive.double()
    if positive.sum() == 0 or positive.sum() == len(positive):
        raise ValueError("need positive and negative examples, both")
    order = scores.argsort(descending=True)
    scores, positive = scores[order], positive[order]
    true_positives = positive.cumsum(0)
    false_positives = (1 - positive).cumsum(0)
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]  # a threshold falls after these
    return true_positives[last], false_positives[last]


def roc_curve(scores, positive):
    """False positive rate and true positive rate at every threshold, from
    (0, 0) to (1, 1)."""
    tp, fp = ranked(scores, positive)
    zero = tp.new_zeros(1)
    return torch.cat([zero, fp / fp[-1]]), torch.cat([zero, tp / tp[-1]])


def roc_auc(scores, positive):
    """The area under the ROC curve: the chance that a random positive scores
    above a random negative (ties count half)."""
    fpr, tpr = roc_curve(scores, positive)
    return torch.trapezoid(tpr, fpr).item()


def average_precision(scores, positive):
    """A step-wise summary of the precision-recall curve, as scikit-learn
    defines it: the precision at each threshold, weighted by the recall it
    adds."""
    tp, fp = ranked(scores, positive)
    precision, recall = tp / (tp + fp), tp / tp[-1]
    added = torch.diff(recall, prepend=recall.new_zeros(1))
    return (added * precision).sum().item()


# --8<-- [end:curves]


# --8<-- [start:bootstrap]
import torch


def check_outcomes(*outcomes):
    """Refuse what is not one right-or-wrong (1/0, True/False) per example, the
    same examples for every model."""
    for outcome in outcomes:
        if (
            outcome.ndim != 1
            or len(outcome) == 0
            or outcome.shape != outcomes[0].shape
        ):
            raise ValueError(
                f"need one 0/1 per example, the same examples for every model: "
                f"got {[tuple(o.shape) for o in outcomes]}"
            )
        if not ((outcome == 0) | (outcome == 1)).all():
            raise ValueError("need 1 where a prediction is right, 0 where wrong")


def bootstrap_means(values, resamples, seed):
    """The mean of ``values`` resampled with replacement, ``resamples`` times
    (in chunks of about ten million draws, so memory stays bounded)."""
    generator = torch.Generator().manual_seed(seed)
    n, chunk = len(values), max(1, 10_000_000 // len(values))
    means = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        index = torch.randint(n, (size, n), generator=generator)
        means.append(values[index].mean(dim=1))
    return torch.cat(means)


def bootstrap_interval(correct, level=0.95, resamples=2000, seed=0):
    """A percentile bootstrap interval for the accuracy, the mean of ``correct``
    (1 where the prediction is right): the test set resampled with replacement,
    ``resamples`` times, and the middle ``level`` of the accuracies."""
    check_outcomes(correct)
    means = bootstrap_means(correct.double(), resamples, seed)
    tails = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(means, tails).tolist()
    return low, high


# --8<-- [end:bootstrap]


# --8<-- [start:paired]
import torch


def mcnemar(correct_a, correct_b):
    """The exact McNemar test of two models on the same examples: where exactly
    one of them is right, is it either one more often than a fair coin would
    make it? Returns (only A right, only B right, two-sided p-value)."""
    check_outcomes(correct_a, correct_b)
    correct_a, correct_b = correct_a.bool(), correct_b.bool()
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    coin = torch.distributions.Binomial(
        only_a + only_b, probs=torch.tensor(0.5, dtype=torch.float64)
    )
    fewer = torch.arange(min(only_a, only_b) + 1, dtype=torch.float64)
    tail = coin.log_prob(fewer).logsumexp(0).exp().item()  # P(split this uneven)
    return only_a, only_b, min(1.0, 2 * tail)


def paired_bootstrap(correct_a, correct_b, level=0.95, resamples=2000, seed=0):
    """A bootstrap interval for accuracy(A) - accuracy(B): both models scored
    on the same resampled examples, so what the test set's draw does to both
    cancels out."""
    check_outcomes(correct_a, correct_b)
    difference = correct_a.double() - correct_b.double()
    means = bootstrap_means(difference, resamples, seed)
    tails = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(means, tails).tolist()
    return low, high


# --8<-- [end:paired]


# --8<-- [start:calibration]
import torch


def check_probabilities(probabilities):
    """Refuse what is not one probability distribution per row."""
    if probabilities.ndim != 2 or len(probabilities) == 0:
        raise ValueError(
            f"need N x classes, N > 0: got {tuple(probabilities.shape)}"
        )
    if not probabilities.isfinite().all():
        raise ValueError("probabilities hold NaN or infinite values")
    outside = ((probabilities < 0) | (probabilities > 1)).any(dim=1)
    if outside.any():
        row = outside.nonzero()[0, 0].item()
        raise ValueError(
            f"row {row} has values outside [0, 1]: need probabilities "
            "(softmax the logits first)"
        )
    sums = probabilities.sum(dim=1)
    worst = (sums - 1).abs().argmax()
    if (sums[worst] - 1).abs() > 1e-4:
        raise ValueError(
            f"row {worst.item()} sums to {sums[worst].item():.4g}: need "
            "probabilities that sum to 1 (softmax the logits first)"
        )


def calibration_bins(probabilities, labels, bins=10):
    """Per bin of confidence (the highest probability; equal widths, each bin
    closed on the right, as Guo et al.'s): how many predictions, their mean
    confidence, their accuracy."""
    check_probabilities(probabilities)
    confidence, predicted = probabilities.max(dim=1)
    check_labels(labels, predicted, classes=probabilities.shape[1])
    which = ((confidence * bins).ceil().long() - 1).clamp(0, bins - 1)
    count = torch.bincount(which, minlength=bins)
    right = (predicted == labels).double()
    confidence_sum = torch.bincount(
        which, weights=confidence.double(), minlength=bins
    )
    right_sum = torch.bincount(which, weights=right, minlength=bins)
    filled = count.clamp(min=1)
    return count, confidence_sum / filled, right_sum / filled


def expected_calibration_error(probabilities, labels, bins=10):
    """The gap between confidence and accuracy, bin by bin, weighted by the
    share of predictions in each bin."""
    count, confidence, accuracy = calibration_bins(probabilities, labels, bins)
    weight = count / count.sum()
    return (weight * (accuracy - confidence).abs()).sum().item()


# --8<-- [end:calibration]


# --8<-- [start:temperature]
import torch
import torch.nn.functional as F


def fit_temperature(logits, labels):
    """The temperature T that minimises the cross-entropy of logits / T on a
    validation set (Guo et al., 2017). One number divides every logit, so the
    predictions, the largest logits, do not change; only their confidence."""
    if len(labels) == 0:
        raise ValueError("temperature scaling needs validation examples: none")
    if not logits.isfinite().all():
        raise ValueError("the logits hold NaN or infinite values")
    rows_sum_to_1 = torch.allclose(logits.sum(dim=1), torch.ones(len(logits)))
    if rows_sum_to_1 and logits.min() >= 0:
        raise ValueError("these look like probabilities: pass the logits")
    logits = logits.detach()
    log_t = torch.zeros(1, requires_grad=True)  # T = exp(log_t) stays positive
    optimizer = torch.optim.LBFGS(
        [log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return log_t.exp().item()


# --8<-- [end:temperature]


# --8<-- [start:augment]
import torch
import torch.nn.functional as F


def shift_digits(x, generator, pixels=1):
    """Each 8 x 8 digit of x (N x 64) moved by up to ``pixels`` in each
    direction, its own draw per digit; what comes in from the edge is blank."""
    images = F.pad(x.reshape(-1, 8, 8), (pixels,) * 4)  # N x 10 x 10 for 1
    dx, dy = torch.randint(0, 2 * pixels + 1, (2, len(x)), generator=generator)
    rows = torch.arange(8) + dy[:, None]  # N x 8: the rows each digit keeps
    cols = torch.arange(8) + dx[:, None]
    each = torch.arange(len(x))[:, None, None]
    return images[each, rows[:, :, None], cols[:, None, :]].reshape(-1, 64)


# --8<-- [end:augment]


# --8<-- [start:deep]
import torch
import torch.nn.functional as F
from torch import nn


def deep_mlp(depth=10, width=64, init="kaiming"):
    """``depth`` hidden layers of ``width`` ReLU units. init: "default"
    (PyTorch's nn.Linear), "xavier" (Glorot, normal) or "kaiming" (He,
    normal, for ReLU), with zero biases but in default."""
    layers, size = [], 64
    for _ in range(depth):
        linear = nn.Linear(size, width)
        if init == "xavier":
            nn.init.xavier_normal_(linear.weight)
        elif init == "kaiming":
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        elif init != "default":
            raise ValueError(f"init {init!r}: default, xavier or kaiming")
        if init != "default":
            nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
        size = width
    return nn.Sequential(*layers, nn.Linear(size, 10))


def layer_statistics(model, x, y):
    """For every hidden layer, in one forward and backward pass on (x, y): the
    standard deviation of its ReLU's output, the share of its units that are 0
    for every example (dead ones), and the standard deviation of its weight's
    gradient. Forward hooks read the outputs; the model is not changed."""
    if not isinstance(model, nn.Sequential):
        raise TypeError("layer_statistics reads an nn.Sequential of Linear, ReLU")
    outputs = []

    def keep(module, inputs, output):
        outputs.append(output.detach())

    relus = [m for m in model if isinstance(m, nn.ReLU)]
    hooks = [relu.register_forward_hook(keep) for relu in relus]
    try:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
    finally:
        for hook in hooks:
            hook.remove()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    return [
        {
            "activation_std": output.std().item(),
            "dead": (output == 0).all(dim=0).float().mean().item(),
            "gradient_std": linear.weight.grad.std().item(),
        }
        for output, linear in zip(outputs, linears)
    ]


def train_sgd(model, data, epochs=15, lr=0.01, batch_size=64, seed=0):
    """Mini-batch SGD with momentum 0.9, the optimizer that shows the scale
    of the gradients plainly (Adam divides it out)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    x, y = data
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(batch_size):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


# --8<-- [end:deep]


# --8<-- [start:norms]
import torch


def batch_norm(x, eps=1e-5):
    """Per channel (dimension 1), over the batch and every position."""
    dims = [0, *range(2, x.ndim)]
    mean = x.mean(dims, keepdim=True)
    variance = x.var(dims, correction=0, keepdim=True)  # the biased one
    return (x - mean) / torch.sqrt(variance + eps)


def layer_norm(x, last_dims=1, eps=1e-5):
    """Per example, over its last ``last_dims`` dimensions."""
    dims = list(range(-last_dims, 0))
    mean = x.mean(dims, keepdim=True)
    variance = x.var(dims, correction=0, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps)


def group_norm(x, groups, eps=1e-5):
    """Per example and per group of channels, over the group's channels and
    every position: groups=1 is a layer norm, groups=channels an instance norm."""
    grouped = x.reshape(x.shape[0], groups, -1)
    mean = grouped.mean(-1, keepdim=True)
    variance = grouped.var(-1, correction=0, keepdim=True)
    return ((grouped - mean) / torch.sqrt(variance + eps)).reshape(x.shape)


def rms_norm(x, eps=None):
    """Per example, over the last dimension: divided by the root mean square,
    not centred (eps: by default the machine epsilon of x's dtype, which is
    nn.RMSNorm's for float32 input)."""
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


# --8<-- [end:norms]


# --8<-- [start:search]
import math
import random

import torch


def fit_setting(data, lr, weight_decay, seed=0, on_epoch=None):
    """The recipe the search tunes: an MLP of 128 units trained 100 epochs on
    ``data`` with this learning rate and weight decay."""
    torch.manual_seed(seed)
    model = mlp(hidden=128)
    train(
        model,
        data,
        epochs=100,
        lr=lr,
        weight_decay=weight_decay,
        on_epoch=on_epoch,
        seed=seed,
    )
    return model


def grid_settings(per_axis=4):
    """per_axis x per_axis settings: learning rates 1e-4 to 1e-1 and weight
    decays 1e-4 to 1, evenly spaced on a log scale."""
    if per_axis < 2:
        raise ValueError(f"per_axis={per_axis}: a grid needs 2 or more per axis")

    def spaced(low, high):
        step = (math.log10(high) - math.log10(low)) / (per_axis - 1)
        return [10 ** (math.log10(low) + i * step) for i in range(per_axis)]

    return [
        {"lr": lr, "weight_decay": wd}
        for lr in spaced(1e-4, 1e-1)
        for wd in spaced(1e-4, 1.0)
    ]


def random_settings(trials, seed=0):
    """``trials`` settings drawn log-uniformly from the grid's ranges."""
    draw = random.Random(seed)
    return [
        {
            "lr": 10 ** draw.uniform(-4, -1),
            "weight_decay": 10 ** draw.uniform(-4, 0),
        }
        for _ in range(trials)
    ]


# --8<-- [end:search]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.evaluation` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:data-demo]
    # one thread: faster for models this small, and the same sums in the same
    # order, so the same numbers on any number of cores (of one kind of CPU)
    torch.set_num_threads(1)
    splits = digit_splits()
    for name, (_, y) in splits.items():
        print(
            f"{name:10} {len(y):4} digits, per class {torch.bincount(y).tolist()}"
        )
    # --8<-- [end:data-demo]

    # --8<-- [start:models-demo]
    torch.manual_seed(0)
    linear, network = mlp(hidden=0), mlp(hidden=64)  # fixed recipes, not tuned
    for model in (linear, network):
        train(model, splits["train"], epochs=300, lr=1e-2)
    x_test, y_test = splits["test"]  # read only to evaluate, at the end
    probabilities = {
        "linear": predict_proba(linear, x_test),
        "MLP": predict_proba(network, x_test),
    }
    predicted = {name: p.argmax(dim=1) for name, p in probabilities.items()}
    for name, guess in predicted.items():
        accuracy = (guess == y_test).float().mean().item()
        print(f"{name:6} test accuracy {accuracy:.2%} ({len(y_test)} digits)")
    # --8<-- [end:models-demo]

    # --8<-- [start:confusion-demo]
    counts = confusion_matrix(y_test, predicted["linear"])
    print("rows: true digit, columns: predicted (the linear model)")
    print(counts)
    mistakes = counts - torch.diag(counts.diag())
    worst = mistakes.flatten().argmax().item()
    print(f"most frequent mistake: {worst // 10} read as {worst % 10}")
    # --8<-- [end:confusion-demo]

    # --8<-- [start:per-class-demo]
    from sklearn import metrics

    precision, recall, f1 = precision_recall_f1(counts)
    for digit in range(10):
        print(
            f"digit {digit}: precision {precision[digit]:.2f}, "
            f"recall {recall[digit]:.2f}, F1 {f1[digit]:.2f}"
        )
    accuracy = counts.diag().sum() / counts.sum()
    print(f"macro F1 {f1.mean():.4f}; micro F1 = accuracy {accuracy:.4f}")
    theirs = metrics.precision_recall_fscore_support(
        y_test, predicted["linear"], zero_division=0
    )
    ours = torch.stack([precision, recall, f1]).numpy()
    print("equal to scikit-learn's:", np.allclose(ours, np.stack(theirs[:3])))
    macro = metrics.f1_score(y_test, predicted["linear"], average="macro")
    print("macro F1 equal:", np.isclose(f1.mean().item(), macro))
    # --8<-- [end:per-class-demo]

    # --8<-- [start:top-k-demo]
    for k in (1, 2, 3):
        ours = top_k_accuracy(probabilities["linear"], y_test, k)
        theirs = metrics.top_k_accuracy_score(
            y_test, probabilities["linear"], k=k, labels=list(range(10))
        )
        print(f"top-{k} accuracy {ours:.2%} (scikit-learn: {theirs:.2%})")
    # --8<-- [end:top-k-demo]

    # --8<-- [start:curves-demo]
    is_eight = y_test == 8  # one class against the rest
    score = probabilities["linear"][:, 8]  # the model's probability of an 8
    print(f"8 against the rest: {is_eight.sum().item()} eights in {len(y_test)}")
    print(
        f"ROC AUC {roc_auc(score, is_eight):.4f} "
        f"(scikit-learn {metrics.roc_auc_score(is_eight, score):.4f}), "
        f"average precision {average_precision(score, is_eight):.4f} "
        f"(scikit-learn {metrics.average_precision_score(is_eight, score):.4f})"
    )
    # the same scores, every non-8 ten times: eights ten times rarer
    rare = torch.cat(
        [torch.arange(len(y_test))[is_eight]]
        + 10 * [torch.arange(len(y_test))[~is_eight]]
    )
    rare_auc = roc_auc(score[rare], is_eight[rare])
    rare_precision = average_precision(score[rare], is_eight[rare])
    print(
        f"eights ten times rarer: ROC AUC {rare_auc:.4f}, "
        f"average precision {rare_precision:.4f}"
    )
    # --8<-- [end:curves-demo]

    # --8<-- [start:curves-figure]
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.4))
    for name, rows in (
        ("as tested", torch.arange(len(y_test))),
        ("8s 10x rarer", rare),
    ):
        fpr, tpr = roc_curve(score[rows], is_eight[rows])
        left.plot(fpr, tpr, label=name)
        precision_curve, recall_curve, _ = metrics.precision_recall_curve(
            is_eight[rows], score[rows]
        )
        right.plot(recall_curve, precision_curve, label=name)
    left.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    right.set(title="Precision-recall", xlabel="recall", ylabel="precision")
    left.legend()
    right.legend()
    fig.tight_layout()
    # --8<-- [end:curves-figure]

    # --8<-- [start:bootstrap-demo]
    correct = {name: guess == y_test for name, guess in predicted.items()}
    for name, right in correct.items():
        low, high = bootstrap_interval(right)
        mean = right.float().mean().item()
        print(f"{name:6} {mean:.2%}, 95% interval {low:.2%} to {high:.2%}")
    # --8<-- [end:bootstrap-demo]

    # --8<-- [start:paired-demo]
    from scipy.stats import binomtest

    only_mlp, only_linear, p = mcnemar(correct["MLP"], correct["linear"])
    print(f"only the MLP right: {only_mlp}; only the linear model: {only_linear}")
    print(f"McNemar's exact p-value: {p:.4f}")
    check = binomtest(only_mlp, only_mlp + only_linear, 0.5).pvalue
    print("equal to scipy's binomial test:", math.isclose(p, check))
    low, high = paired_bootstrap(correct["MLP"], correct["linear"])
    print(f"MLP minus linear: 95% interval {low:+.2%} to {high:+.2%}")
    # --8<-- [end:paired-demo]

    # --8<-- [start:seeds-demo]
    seeds = []
    for seed in range(5):  # the same recipe, five initialisations
        torch.manual_seed(seed)
        model = mlp(hidden=64)
        train(model, splits["train"], epochs=300, lr=1e-2, seed=seed)
        seeds.append(evaluate(model, *splits["validation"])[1])
    print("MLP, 5 seeds, validation:", " ".join(f"{a:.2%}" for a in seeds))
    print(f"range {min(seeds):.2%} to {max(seeds):.2%}")
    # --8<-- [end:seeds-demo]

    # --8<-- [start:calibration-demo]
    for name, p in probabilities.items():
        ece = expected_calibration_error(p, y_test)
        confidence = p.max(dim=1).values.mean().item()
        accuracy = (p.argmax(dim=1) == y_test).float().mean().item()
        print(
            f"{name:6} mean confidence {confidence:.2%}, accuracy {accuracy:.2%}, "
            f"ECE {ece:.4f}"
        )
    # --8<-- [end:calibration-demo]

    # --8<-- [start:temperature-demo]
    x_val, y_val = splits["validation"]
    scaled = {}
    for name, model in (("linear", linear), ("MLP", network)):
        with torch.no_grad():
            val_logits, test_logits = model(x_val), model(x_test)
        temperature = fit_temperature(val_logits, y_val)  # validation only
        scaled[name] = (test_logits / temperature).softmax(dim=1)
        print(f"{name}: temperature fitted on validation {temperature:.3f}")
        for when, t in (("before", 1.0), ("after", temperature)):
            p = (test_logits / t).softmax(dim=1)
            ece = expected_calibration_error(p, y_test)
            cross_entropy = F.cross_entropy(test_logits / t, y_test).item()
            print(
                f"  test, {when:6} ECE {ece:.4f}, cross-entropy {cross_entropy:.4f}"
            )
        same = torch.equal(scaled[name].argmax(1), predicted[name])
        print("  the same predictions:", same)
        # how sure is the ECE's fall? the test digits resampled, 1,000 times
        generator = torch.Generator().manual_seed(0)
        falls = []
        for _ in range(1000):
            rows = torch.randint(len(y_test), (len(y_test),), generator=generator)
            before = expected_calibration_error(
                probabilities[name][rows], y_test[rows]
            )
            after = expected_calibration_error(scaled[name][rows], y_test[rows])
            falls.append(before - after)
        low, high = torch.quantile(
            torch.tensor(falls), torch.tensor([0.025, 0.975])
        )
        print(f"  ECE's fall, 95% bootstrap interval {low:+.4f} to {high:+.4f}")
    # --8<-- [end:temperature-demo]

    # --8<-- [start:reliability-figure]
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(8, 6), sharex=True, sharey=True)
    for row, name in zip(axes, ("linear", "MLP")):
        for ax, when, p in zip(
            row, ("before", "after scaling"), (probabilities[name], scaled[name])
        ):
            count, confidence, accuracy = calibration_bins(p, y_test)
            centres = (torch.arange(10) + 0.5) / 10
            filled = count > 0  # matplotlib takes lists, not tensors, for bars
            ax.bar(
                centres[filled].tolist(),
                accuracy[filled].tolist(),
                width=0.1,
                edgecolor="black",
            )
            ax.plot([0, 1], [0, 1], color="gray", linestyle="--")
            ax.set(title=f"{name}, test, {when}")
        row[0].set(ylabel="accuracy in the bin")
    for ax in axes[1]:
        ax.set(xlabel="confidence (bins of 0.1)")
    fig.tight_layout()
    # --8<-- [end:reliability-figure]

    # --8<-- [start:overfitting-demo]
    clean = per_class(splits["train"], 20)  # 200 training digits
    noisy = corrupt_labels(clean, share=0.2)  # 40 of them labelled wrongly
    mislabelled = noisy[1] != clean[1]
    torch.manual_seed(0)
    model = mlp(hidden=128)
    history = train(model, noisy, epochs=200, validation=splits["validation"])
    best = min(range(200), key=lambda epoch: history["val_loss"][epoch])
    print(f"training accuracy at the end {history['train_accuracy'][-1]:.2%}")
    with torch.no_grad():
        copied = model(noisy[0][mislabelled]).argmax(1) == noisy[1][mislabelled]
    print(f"wrong labels the model reproduces: {copied.sum()} of {len(copied)}")
    print(
        f"validation loss: lowest {history['val_loss'][best]:.3f} at epoch "
        f"{best + 1}, {history['val_loss'][-1]:.3f} at the end"
    )
    print(
        f"validation accuracy: {history['val_accuracy'][best]:.2%} at epoch "
        f"{best + 1}, {history['val_accuracy'][-1]:.2%} at the end"
    )
    # --8<-- [end:overfitting-demo]

    # --8<-- [start:overfitting-figure]
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    epochs = range(1, 201)
    left.plot(epochs, history["train_loss"], label="training (noisy labels)")
    left.plot(epochs, history["val_loss"], label="validation")
    right.plot(epochs, history["train_accuracy"], label="training (noisy labels)")
    right.plot(epochs, history["val_accuracy"], label="validation")
    for ax, what in ((left, "cross-entropy"), (right, "accuracy")):
        ax.axvline(best + 1, color="gray", linestyle="--")
        ax.set(xlabel="epoch", ylabel=what)
    left.legend()
    fig.tight_layout()
    # --8<-- [end:overfitting-figure]

    # --8<-- [start:sizes-demo]
    for count in (2, 5, 10, 20, 50, 100):  # clean labels, per class
        part = per_class(splits["train"], count)
        torch.manual_seed(0)
        model = mlp(hidden=128)
        history = train(model, part, epochs=300)
        _, train_accuracy = evaluate(model, *part)
        _, val_accuracy = evaluate(model, *splits["validation"])
        print(
            f"{len(part[1]):4} digits: training accuracy {train_accuracy:.2%}, "
            f"validation {val_accuracy:.2%}"
        )
    # --8<-- [end:sizes-demo]

    # --8<-- [start:regularisation-demo]
    import statistics

    def summary(values):
        low, high = min(values), max(values)
        return f"{statistics.mean(values):.2%} ({low:.2%} to {high:.2%})"

    recipes = {  # each changes one thing of the baseline
        "baseline": {},
        "weight decay 0.1": {"weight_decay": 0.1},
        "weight decay 1": {"weight_decay": 1.0},
        "dropout 0.5": {"dropout": 0.5},
        "early stopping": {"patience": 20, "validation": splits["validation"]},
        "shifted digits": {"augment": shift_digits},
    }
    models, results = {}, {}
    print(f"{'':17} {'validation, 5 seeds':28} wrong labels learnt")
    for name, recipe in recipes.items():
        settings = {k: v for k, v in recipe.items() if k != "dropout"}
        models[name], validation, learnt = [], [], []
        for seed in range(5):
            torch.manual_seed(seed)
            model = mlp(hidden=128, dropout=recipe.get("dropout", 0.0))
            train(model, noisy, epochs=200, seed=seed, **settings)
            models[name].append(model)
            validation.append(evaluate(model, *splits["validation"])[1])
            with torch.no_grad():
                guesses = model(noisy[0][mislabelled]).argmax(dim=1)
            learnt.append((guesses == noisy[1][mislabelled]).sum().item())
        learnt = f"{statistics.mean(learnt):4.1f} of {len(guesses)}"
        print(f"{name:17} {summary(validation):28} {learnt}")
        results[name] = validation
    chosen = max(results, key=lambda name: statistics.mean(results[name]))
    test = [evaluate(model, *splits["test"])[1] for model in models[chosen]]
    print(f"chosen on validation: {chosen}")
    print(f"its five models on the test set, read once: {summary(test)}")
    # --8<-- [end:regularisation-demo]

    # --8<-- [start:deep-demo]
    x_train, y_train = splits["train"]
    statistics_at_start = {}
    for init in ("default", "xavier", "kaiming"):
        accuracies, dead_before, dead_after = [], [], []
        for seed in range(5):
            torch.manual_seed(seed)
            model = deep_mlp(depth=10, init=init)
            start = layer_statistics(model, x_train, y_train)
            dead_before.append(statistics.mean(layer["dead"] for layer in start))
            if seed == 0:
                statistics_at_start[init] = start
            train_sgd(model, splits["train"], seed=seed)
            accuracies.append(evaluate(model, *splits["validation"])[1])
            after = layer_statistics(model, x_train, y_train)
            dead_after.append(statistics.mean(layer["dead"] for layer in after))
        first, last = statistics_at_start[init][0], statistics_at_start[init][-1]
        dead = statistics.mean(dead_before)
        print(f"{init}, seed 0, at the start, layer 1 -> 10:")
        print(
            f"  activation std {first['activation_std']:.1e} -> "
            f"{last['activation_std']:.1e}, gradient std "
            f"{first['gradient_std']:.1e} -> {last['gradient_std']:.1e}"
        )
        print(
            f"  5 seeds: dead units {dead:.0%} at the start, "
            f"{statistics.mean(dead_after):.0%} after training"
        )
        print(f"  5 seeds, trained, validation: {summary(accuracies)}")
    # --8<-- [end:deep-demo]

    # --8<-- [start:deep-figure]
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), sharex=True)
    for layers in statistics_at_start.values():
        depth = range(1, len(layers) + 1)
        left.semilogy(depth, [layer["activation_std"] for layer in layers], "o-")
        right.semilogy(depth, [layer["gradient_std"] for layer in layers], "o-")
    left.set(title="activations", xlabel="layer", ylabel="standard deviation")
    right.set(title="weight gradients", xlabel="layer")
    left.legend(list(statistics_at_start))
    fig.tight_layout()
    # --8<-- [end:deep-figure]

    # --8<-- [start:norms-demo]
    from torch import nn

    torch.manual_seed(0)
    images = torch.randn(4, 6, 5, 5) * 3 + 1  # N x C x H x W
    tokens = torch.randn(2, 7, 16) * 3 + 1  # batch x time x features
    pairs = {
        "BatchNorm2d": (batch_norm(images), nn.BatchNorm2d(6)(images)),
        "LayerNorm": (
            layer_norm(images, last_dims=3),
            nn.LayerNorm([6, 5, 5])(images),
        ),
        "GroupNorm(3 groups)": (group_norm(images, 3), nn.GroupNorm(3, 6)(images)),
        "LayerNorm on tokens": (layer_norm(tokens), nn.LayerNorm(16)(tokens)),
        "RMSNorm on tokens": (rms_norm(tokens), nn.RMSNorm(16)(tokens)),
    }
    for name, (ours, theirs) in pairs.items():
        print(f"{name:20} equal: {torch.allclose(ours, theirs, atol=1e-5)}")
    # --8<-- [end:norms-demo]

    # --8<-- [start:batch-norm-modes]
    import textwrap

    norm = nn.BatchNorm1d(3)  # momentum 0.1: running = 0.9 running + 0.1 batch
    batch = torch.randn(8, 3) * 2 + 5  # features of mean about 5
    norm(batch)  # training mode: this batch's statistics, and the running ones
    print("batch mean:                 ", batch.mean(dim=0))
    print("running mean after one batch:", norm.running_mean)  # 0.1 of it
    for _ in range(100):  # more training batches of the same data
        norm(torch.randn(8, 3) * 2 + 5)
    print("after 101 batches:          ", norm.running_mean)
    norm.eval()  # evaluation: the running statistics, whatever the batch
    with torch.no_grad():
        print("one example in eval mode:", norm(batch[:1]))
    norm.train()
    try:
        norm(batch[:1])
    except ValueError as error:
        print("one example in training mode: ValueError")
        print(textwrap.fill(str(error), width=60))
    # --8<-- [end:batch-norm-modes]

    # --8<-- [start:search-demo]
    import optuna

    def score(setting, seed=0):  # the objective: validation, never the test set
        model = fit_setting(noisy, seed=seed, **setting)
        return evaluate(model, *splits["validation"])[1]

    budget = 16  # trainings of 100 epochs each
    searches = {"grid": grid_settings(4), "random": random_settings(budget)}
    found = {}
    for name, settings in searches.items():
        scores = [score(setting) for setting in settings]
        best = max(range(budget), key=lambda i: scores[i])
        found[name] = settings[best]
        distinct = len({setting["lr"] for setting in settings})
        print(
            f"{name:6}: best validation {scores[best]:.2%}, "
            f"{distinct} distinct learning rates tried"
        )

    def objective(trial):
        setting = {
            "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-4, 1, log=True),
        }

        def report(epoch, model):  # every 10 epochs; the pruner may stop it
            if epoch % 10 == 9:
                trial.report(evaluate(model, *splits["validation"])[1], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

        model = fit_setting(noisy, on_epoch=report, **setting)
        return evaluate(model, *splits["validation"])[1]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, warm_up in (("Optuna", 0), ("Optuna, warm-up", 50)):
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=0),
            pruner=optuna.pruners.MedianPruner(
                n_startup_trials=5, n_warmup_steps=warm_up
            ),
        )
        study.optimize(objective, n_trials=budget)
        found[name] = study.best_params
        pruned = [t for t in study.trials if t.state.name == "PRUNED"]
        epochs = sum(t.last_step + 1 if t in pruned else 100 for t in study.trials)
        print(f"{name}: best validation {study.best_value:.2%}")
        trained = f"{epochs} of {budget * 100} epochs trained"
        print(f"  {len(pruned)} trials pruned, {trained}")
        if pruned:  # what the pruned trials would have scored
            finished = max(score(trial.params) for trial in pruned)
            print(f"  the pruned trials, trained to the end: best {finished:.2%}")
    # --8<-- [end:search-demo]

    # --8<-- [start:search-horizon]
    def every_10_epochs(accuracies):  # a callback that keeps validation scores
        def keep(epoch, model):
            if epoch % 10 == 9:
                accuracies.append(evaluate(model, *splits["validation"])[1])

        return keep

    for lr in (3e-2, 3e-3, 1e-3):
        accuracies = []
        fit_setting(
            noisy, lr, weight_decay=1e-4, on_epoch=every_10_epochs(accuracies)
        )
        print(
            f"lr {lr:.0e}, every 10 epochs:",
            " ".join(f"{a:.0%}" for a in accuracies),
        )
    # --8<-- [end:search-horizon]

    # --8<-- [start:search-seeds]
    again, means = {}, {}
    for name, setting in found.items():  # the winners, five new seeds each
        again[name] = [
            fit_setting(noisy, seed=seed, **setting) for seed in range(1, 6)
        ]
        scores = [
            evaluate(model, *splits["validation"])[1] for model in again[name]
        ]
        print(
            f"{name}: lr {setting['lr']:.1e}, weight decay "
            f"{setting['weight_decay']:.1e}\n  validation {summary(scores)}"
        )
        means[name] = statistics.mean(scores)
    chosen = max(means, key=means.get)
    test = [evaluate(model, *splits["test"])[1] for model in again[chosen]]
    print(f"chosen: {chosen}'s setting")
    print(f"its five models on the test set, read once: {summary(test)}")
    # --8<-- [end:search-seeds]

    # --8<-- [start:exercise-macro-micro]
    def macro_and_micro_f1(labels, guesses):
        counts = confusion_matrix(labels, guesses)
        _, _, f1 = precision_recall_f1(counts)
        return f1.mean().item(), (counts.diag().sum() / counts.sum()).item()

    keep_few = (y_test != 3) | (torch.arange(len(y_test)) % 6 == 0)
    for name, rows in (("every 3", y_test >= 0), ("one 3 in six", keep_few)):
        labels, guesses = y_test[rows], predicted["linear"][rows].clone()
        macro, micro = macro_and_micro_f1(labels, guesses)
        right_3 = ((labels == 3) & (guesses == 3)).nonzero()[0, 0]
        guesses[right_3] = 5  # one more 3 read as a 5
        macro_after, micro_after = macro_and_micro_f1(labels, guesses)
        print(
            f"{name}, {(labels == 3).sum()} 3s in {len(labels)} digits: one more "
            f"wrong 3 costs\n  macro F1 {macro - macro_after:.4f}, "
            f"micro F1 {micro - micro_after:.4f}"
        )
    # --8<-- [end:exercise-macro-micro]

    # --8<-- [start:exercise-interval-width]
    half = correct["MLP"][: len(y_test) // 2]
    for name, right in (("all", correct["MLP"]), ("half", half)):
        low, high = bootstrap_interval(right)
        print(f"{name:4} {len(right)} digits: interval width {high - low:.2%}")
    # --8<-- [end:exercise-interval-width]
