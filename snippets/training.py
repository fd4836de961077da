"""Training: the code of docs/training.md.

The page trains models: losses (cross-entropy on logits, mean squared error),
the training step and loop, optimizers compared on one problem, train /
validation / test splits, overfitting and its remedies (weight decay, early
stopping), and why accuracy is a metric but not a loss (class imbalance). The
exercises zero gradients, compute binary cross-entropy by hand, choose a
patience and sweep the learning rate.

What the page runs is at the end, at module level; importing the module runs
nothing.
"""

# What the page runs, in page order, at module level as on the page:
# `python -m snippets.training` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:losses]
    import torch
    from torch import nn

    # classification: 4 samples, 3 classes; the model outputs raw scores (logits)
    logits = torch.tensor(
        [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0], [-0.5, 2.5, 0.0]]
    )
    labels = torch.tensor([0, 2, 1, 1])  # the correct class of each sample

    # log-softmax: log p_k = z_k - log(sum_j exp z_j)
    log_probs = logits - logits.logsumexp(dim=1, keepdim=True)
    ce_by_hand = -log_probs[torch.arange(4), labels].mean()
    ce = nn.CrossEntropyLoss()(logits, labels)
    print("cross-entropy by hand:  ", ce_by_hand)
    print("nn.CrossEntropyLoss:    ", ce)

    # regression: the mean of the squared errors
    predictions = torch.tensor([2.5, 0.0, 2.0, 8.0])
    values = torch.tensor([3.0, -0.5, 2.0, 7.0])
    mse_by_hand = ((predictions - values) ** 2).mean()
    mse = nn.MSELoss()(predictions, values)
    print("mean squared error by hand:", mse_by_hand)
    print("nn.MSELoss:                ", mse)
    # --8<-- [end:losses]

    # --8<-- [start:softmax-twice]
    probs = logits.softmax(dim=1)
    print("loss from logits:       ", nn.CrossEntropyLoss()(logits, labels))
    print("loss from probabilities:", nn.CrossEntropyLoss()(probs, labels))

    perfect = torch.tensor([[1.0, 0.0, 0.0]])  # certain and right
    print("perfect probabilities:  ", nn.CrossEntropyLoss()(perfect, labels[:1]))
    # --8<-- [end:softmax-twice]

    # --8<-- [start:loop]
    import torch
    from torch import nn

    def train_step(model, loss_fn, optimizer, inputs, targets):
        """One optimisation step on one batch; returns the batch's loss."""
        model.train()
        optimizer.zero_grad()  # clear last step's gradients (sets them to None)
        loss = loss_fn(model(inputs), targets)  # 1. forward, 2. loss
        loss.backward()  # 3. backward: d loss / d parameter into each .grad
        optimizer.step()  # 4. step: move each parameter against its gradient
        return loss.item()

    @torch.no_grad()
    def evaluate(model, loss_fn, inputs, targets):
        """The loss on data the model does not learn from."""
        model.eval()
        return loss_fn(model(inputs), targets).item()

    # fit y = 3x + 2 from noisy samples
    g = torch.Generator().manual_seed(0)
    x_line = torch.randn(100, 1, generator=g)
    y_line = 3 * x_line + 2 + 0.1 * torch.randn(100, 1, generator=g)

    torch.manual_seed(0)
    line = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(line.parameters(), lr=0.1)
    for step in range(51):
        loss = train_step(line, nn.MSELoss(), optimizer, x_line, y_line)
        if step % 10 == 0:
            print(f"step {step:2}  loss {loss:.4f}")
    print(f"learned w = {line.weight.item():.3f}, b = {line.bias.item():.3f}")
    # --8<-- [end:loop]

    # --8<-- [start:optimizers]
    import copy

    import torch
    from torch import nn

    g = torch.Generator().manual_seed(0)
    x_wave = torch.rand(200, 1, generator=g) * 4 - 2
    y_wave = torch.sin(2 * x_wave) + 0.1 * torch.randn(200, 1, generator=g)

    torch.manual_seed(0)
    start = nn.Sequential(
        nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)
    )
    make_optimizer = {
        "SGD": lambda p: torch.optim.SGD(p, lr=0.05),
        "SGD + momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
        "Adam": lambda p: torch.optim.Adam(p, lr=0.01),
    }
    curves = {}
    for name, make in make_optimizer.items():
        model = copy.deepcopy(start)  # the same initial weights for each
        optimizer = make(model.parameters())
        curves[name] = [
            train_step(model, nn.MSELoss(), optimizer, x_wave, y_wave)
            for _ in range(300)
        ]
        below = next(
            (i for i, loss in enumerate(curves[name]) if loss < 0.02), None
        )
        print(
            f"{name:14}  loss {curves[name][0]:.4f} -> {curves[name][-1]:.4f}"
            f"  first below 0.02 at step {below}"
        )
    # --8<-- [end:optimizers]

    # --8<-- [start:optimizers-plot]
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, curve in curves.items():
        ax.plot(curve, label=name)
    ax.axhline(0.01, color="gray", linestyle=":", label="noise variance 0.01")
    ax.set(
        title="One problem, three optimizers",
        xlabel="step",
        ylabel="training loss (MSE)",
        yscale="log",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    # --8<-- [end:optimizers-plot]

    # --8<-- [start:splits]
    import torch
    from torch.utils.data import TensorDataset, random_split

    g = torch.Generator().manual_seed(0)
    dataset = TensorDataset(
        torch.randn(1000, 2, generator=g), torch.randint(0, 2, (1000,), generator=g)
    )
    train_set, val_set, test_set = random_split(
        dataset, [0.8, 0.1, 0.1], generator=torch.Generator().manual_seed(42)
    )
    print("sizes:", len(train_set), len(val_set), len(test_set))

    train_idx, val_idx, test_idx = (
        set(s.indices) for s in (train_set, val_set, test_set)
    )
    # disjoint and complete: the three index sets together hold all 1000
    print("disjoint:", len(train_idx | val_idx | test_idx) == len(dataset))
    again = random_split(
        dataset, [0.8, 0.1, 0.1], generator=torch.Generator().manual_seed(42)
    )
    print("same seed, same split:", again[0].indices == train_set.indices)
    # --8<-- [end:splits]

    # --8<-- [start:overfit]
    import copy

    import torch
    from torch import nn

    g = torch.Generator().manual_seed(0)

    def noisy_wave(n):
        x = torch.rand(n, 1, generator=g) * 2 - 1
        return x, torch.sin(3 * x) + 0.3 * torch.randn(n, 1, generator=g)

    x_train, y_train = noisy_wave(30)  # few points: easy to memorise
    x_val, y_val = noisy_wave(200)

    def fit(weight_decay, steps=1000):
        """Train a 1-64-64-1 MLP; keep the curves and the best checkpoint."""
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(1, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 1),
        )
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=0.01, weight_decay=weight_decay
        )
        run = {"model": model, "train": [], "val": [], "best_val": float("inf")}
        for step in range(steps):
            run["train"].append(
                train_step(model, nn.MSELoss(), optimizer, x_train, y_train)
            )
            run["val"].append(evaluate(model, nn.MSELoss(), x_val, y_val))
            if run["val"][-1] < run["best_val"]:  # keep the best checkpoint
                run.update(
                    best_val=run["val"][-1],
                    best_step=step,
                    best_state=copy.deepcopy(model.state_dict()),
                )
        return run

    plain = fit(weight_decay=0.0)
    print(
        f"final: train {plain['train'][-1]:.4f}, validation {plain['val'][-1]:.4f}"
    )
    print(f"best validation {plain['best_val']:.4f} at step {plain['best_step']}")
    # --8<-- [end:overfit]

    # --8<-- [start:remedy]
    decayed = fit(weight_decay=1.0)
    print(
        f"weight decay, final: train {decayed['train'][-1]:.4f},"
        f" validation {decayed['val'][-1]:.4f}"
    )

    # early stopping: restore the plain run's best checkpoint
    stopped = copy.deepcopy(plain["model"])
    stopped.load_state_dict(plain["best_state"])
    print(
        f"early stopping at step {plain['best_step']}: validation"
        f" {evaluate(stopped, nn.MSELoss(), x_val, y_val):.4f}"
    )
    # --8<-- [end:remedy]

    # --8<-- [start:overfit-plot]
    import matplotlib.pyplot as plt
    import torch

    fig, (ax_loss, ax_fit) = plt.subplots(2, 1, figsize=(7, 7.5))
    for run, label, color in [
        (plain, "no regularisation", "C0"),
        (decayed, "weight decay 1.0", "C1"),
    ]:
        ax_loss.plot(run["train"], color=color, label=f"{label}: train")
        ax_loss.plot(
            run["val"], color=color, linestyle="--", label=f"{label}: validation"
        )
    ax_loss.axvline(
        plain["best_step"],
        color="gray",
        linestyle=":",
        label="best checkpoint (early stopping)",
    )
    ax_loss.axhline(0.09, color="gray", linewidth=0.8, label="noise variance 0.09")
    ax_loss.set(
        title="Train vs validation loss",
        xlabel="step",
        ylabel="MSE",
        ylim=(0, 0.25),
    )
    ax_loss.legend(fontsize=8)

    grid = torch.linspace(-1, 1, 200)[:, None]
    with torch.no_grad():
        ax_fit.plot(grid, torch.sin(3 * grid), color="gray", label="true sin(3x)")
        ax_fit.plot(
            grid, plain["model"](grid), color="C0", label="no regularisation"
        )
        ax_fit.plot(grid, decayed["model"](grid), color="C1", label="weight decay")
    ax_fit.scatter(x_train, y_train, color="black", s=12, label="training points")
    ax_fit.set(title="What each model learned", xlabel="x", ylabel="y")
    ax_fit.legend(fontsize=8)
    fig.tight_layout()
    # --8<-- [end:overfit-plot]

    # --8<-- [start:imbalance]
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(0)

    def people(n, n_bald):
        """Features of n people; label 1 = has hair (the 99%), 0 = bald."""
        has_hair = torch.ones(n)
        has_hair[torch.randperm(n, generator=g)[:n_bald]] = 0
        # the bald sit apart in feature space, so they can be recognised
        features = torch.randn(n, 2, generator=g) + 4 * (1 - has_hair)[:, None]
        return features, has_hair

    x_people, hair = people(2000, n_bald=20)
    x_test_people, hair_test = people(2000, n_bald=20)

    def report(name, predicted, truth):
        """Accuracy, and precision/recall/F1 for the minority class (bald = 0)."""
        accuracy = (predicted == truth).float().mean().item()
        tp = ((predicted == 0) & (truth == 0)).sum().item()
        fp = ((predicted == 0) & (truth == 1)).sum().item()
        fn = ((predicted == 1) & (truth == 0)).sum().item()
        precision = tp / (tp + fp) if tp + fp else 0.0  # 0 when never predicted
        recall = tp / (tp + fn)
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        print(
            f"{name:10} accuracy {accuracy:.3f}  bald: precision"
            f" {precision:.2f}  recall {recall:.2f}  F1 {f1:.2f}"
        )
        return accuracy, precision, recall, f1

    always_yes = torch.ones_like(hair_test)
    baseline = report("always yes", always_yes, hair_test)
    # --8<-- [end:imbalance]

    # --8<-- [start:imbalance-loss]
    bce = nn.BCEWithLogitsLoss()  # binary cross-entropy on a raw score

    # the best constant: predict the base rate P(hair) = 0.99 for everyone
    base_rate = hair.mean()
    constant_logit = torch.logit(base_rate).expand(len(hair_test))
    print(f"constant predictor: loss {bce(constant_logit, hair_test):.4f}")

    torch.manual_seed(0)
    classifier = nn.Linear(2, 1)  # logistic regression
    optimizer = torch.optim.Adam(classifier.parameters(), lr=0.1)
    for _ in range(200):
        train_step(classifier, bce, optimizer, x_people, hair[:, None])
    with torch.no_grad():
        test_logits = classifier(x_test_people).squeeze(1)
    print(f"trained classifier: loss {bce(test_logits, hair_test):.4f}")
    learned = report("trained", (test_logits > 0).float(), hair_test)
    # --8<-- [end:imbalance-loss]

    # --8<-- [start:no-gradient]
    scores = classifier(x_test_people).squeeze(1)  # tracked by autograd
    accuracy = ((scores > 0).float() == hair_test).float().mean()
    print("loss has a gradient:    ", bce(scores, hair_test).requires_grad)
    print("accuracy has a gradient:", accuracy.requires_grad)
    # --8<-- [end:no-gradient]

    # --8<-- [start:ex-zero-grad]
    import torch

    w = torch.tensor(2.0, requires_grad=True)
    for attempt in range(3):
        (w * 3).backward()  # d(3w)/dw = 3
        print(f"after backward #{attempt + 1}: w.grad = {w.grad.item()}")
    w.grad = None  # what optimizer.zero_grad() does
    (w * 3).backward()
    print("after zeroing:", w.grad.item())
    # --8<-- [end:ex-zero-grad]

    # --8<-- [start:ex-bce]
    import torch
    import torch.nn.functional as F
    from torch import nn

    z = torch.tensor([2.0, -1.0, 0.5, 100.0])  # logits
    t = torch.tensor([1.0, 0.0, 1.0, 0.0])  # targets
    # log σ(z) and log(1 - σ(z)) = log σ(-z), computed stably
    by_hand = -(t * F.logsigmoid(z) + (1 - t) * F.logsigmoid(-z))
    print("by hand:          ", by_hand)
    print("BCEWithLogitsLoss:", nn.BCEWithLogitsLoss(reduction="none")(z, t))
    naive = -(t * torch.sigmoid(z).log() + (1 - t) * (1 - torch.sigmoid(z)).log())
    print("naive sigmoid+log:", naive)
    # --8<-- [end:ex-bce]

    # --8<-- [start:ex-patience]
    def stopping_step(val_curve, patience):
        """When training stops (`patience` steps without a new best), and the
        step whose checkpoint is restored."""
        best, best_step = float("inf"), 0
        for step, loss in enumerate(val_curve):
            if loss < best:
                best, best_step = loss, step
            elif step - best_step >= patience:
                return step, best_step
        return len(val_curve) - 1, best_step

    for patience in (10, 50, 200):
        stop, best = stopping_step(plain["val"], patience)
        print(
            f"patience {patience:3}: stop at step {stop:3}, restore step {best}"
            f" (validation {plain['val'][best]:.4f})"
        )
    # --8<-- [end:ex-patience]

    # --8<-- [start:ex-lr]
    final_loss = {}
    for lr in (0.005, 0.05, 0.5):
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(300):
            final_loss[lr] = train_step(
                model, nn.MSELoss(), optimizer, x_wave, y_wave
            )
        print(f"SGD lr={lr:<5}  loss after 300 steps: {final_loss[lr]:.4f}")
    # --8<-- [end:ex-lr]
