"""Training in practice: the code of docs/practice.md.

Weight decay by parameter group, learning-rate schedules, the options of the
losses, gradient clipping (also under a GradScaler), finding where a NaN came
from, checkpoints that resume a run exactly (also in the middle of an epoch), a
validation loop logged for TensorBoard with the best checkpoint kept, and what
seeding does and does not make reproducible. Everything runs on scikit-learn's
8 x 8 digits in seconds. Definitions are at module level; what the page runs is
at the end, at module level.
"""

# --8<-- [start:data]
import torch
from sklearn.datasets import load_digits
from torch import nn


def digits_tensors():
    """scikit-learn's 1,797 digits as N x 64 floats in [0, 1] and labels."""
    digits = load_digits()
    images = torch.tensor(digits.data, dtype=torch.float32) / 16
    return images, torch.tensor(digits.target)


def build_mlp(seed=0, dropout=0.1):
    """A small classifier for the 64 pixels: 64 -> 64 -> 10, initialised from
    ``seed`` without touching the global random state."""
    with torch.random.fork_rng(devices=[]):  # the CPU generator is restored
        # seed the CPU generator only: torch.manual_seed would reseed every
        # GPU's generator too, which fork_rng(devices=[]) does not restore
        torch.default_generator.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(64, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 10)
        )


def parameter_groups(model, weight_decay):
    """Weight decay for the weight matrices only: not for biases and the
    scales of normalisation layers (the tensors with one dimension)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# --8<-- [end:data]


# --8<-- [start:schedules]
import torch


def learning_rates(make_scheduler, steps, metric=None):
    """The learning rate a scheduler sets at each of ``steps`` optimizer steps
    (a throwaway optimizer: the scheduler is the only thing measured)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = make_scheduler(optimizer)
    rates = []
    for step in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # first the optimizer...
        if metric is None:
            scheduler.step()  # ...then the scheduler
        else:  # ReduceLROnPlateau reads a validation metric
            scheduler.step(metric(step))
    return rates


def warmup_cosine(optimizer, warmup_steps, total_steps):
    """A linear warm-up from a tenth of the learning rate, then a cosine decay."""
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=0.1, total_iters=warmup_steps
    )
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=total_steps - warmup_steps, eta_min=1e-4
    )
    return torch.optim.lr_scheduler.SequentialLR(
        optimizer, [warmup, decay], milestones=[warmup_steps]
    )


# --8<-- [end:schedules]


# --8<-- [start:clipping]
import torch
from torch import nn


def deep_net(depth=12, width=64, seed=0):
    """12 ReLU layers initialised a little too large (std 2/sqrt(width), where
    He's initialisation is 1.41/sqrt(width)): every layer amplifies the signal,
    and the gradients on the way back."""
    layers = []
    with torch.random.fork_rng(devices=[]):  # its own seed, as build_mlp
        torch.default_generator.manual_seed(seed)
        for _ in range(depth):
            layer = nn.Linear(width, width)
            nn.init.normal_(layer.weight, std=2.0 / width**0.5)
            layers += [layer, nn.ReLU()]
        return nn.Sequential(nn.Linear(64, width), *layers, nn.Linear(width, 10))


def train_steps(model, images, labels, steps, lr, max_norm=None):
    """Full-batch SGD; each step's loss and gradient norm (before clipping)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    norms, losses = [], []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        if max_norm is None:  # measure only: the gradients are not touched
            norm = nn.utils.get_total_norm(p.grad for p in model.parameters())
        else:  # rescale all gradients together so that their norm <= max_norm
            norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        norms.append(norm.item())
        losses.append(loss.item())
    return norms, losses


# --8<-- [end:clipping]


# --8<-- [start:checkpoint]
import os
import re
import uuid
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, or for another run."""


def save_checkpoint(state, path):
    """Write ``state`` to ``path`` atomically: the complete new file or the old
    one, never half of one, even if the machine loses power while saving."""
    path = Path(path)
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(temporary, "xb") as file:  # permissions as for any new file
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())  # the bytes on the disk...
        os.replace(temporary, path)  # ...then the name (atomic on POSIX)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # ...and the new name on the disk too
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def load_checkpoint(path):
    """Read a checkpoint onto the CPU (tensors and plain Python values only);
    a truncated or corrupt file, or one holding other types, is refused with
    its name."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError):  # not the content's fault
        raise
    except Exception as error:  # the zip archive or the pickle inside it
        try:
            refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            refused = []  # not even an archive torch.save wrote
        reason = (
            f"it holds types weights_only refuses: {refused}"
            if refused
            else f"truncated or corrupt ({type(error).__name__})"
        )
        raise CheckpointError(
            f"{path} is not a usable checkpoint: {reason}"
        ) from error


def checkpoint_name(epoch, batch=0):
    """epoch-<epochs done>.pt, or epoch-<epochs done>-batch-<batches done>.pt
    in the middle of an epoch: the names keep_last orders."""
    return f"epoch-{epoch}.pt" if batch == 0 else f"epoch-{epoch}-batch-{batch}.pt"


def keep_last(folder, keep=3):
    """Delete all but the ``keep`` newest checkpoints named by checkpoint_name,
    ordered by how far the run got; other files, such as best.pt, are left."""
    if keep < 1:
        raise ValueError(f"keep={keep}: keep at least the newest checkpoint")
    found = {}
    for path in Path(folder).glob("epoch-*.pt"):
        name = re.fullmatch(r"epoch-(\d+)(?:-batch-(\d+))?\.pt", path.name)
        if name:  # (epochs done, batches done)
            found[int(name[1]), int(name[2] or 0)] = path
    paths = [found[done] for done in sorted(found)]
    for old in paths[:-keep]:
        old.unlink()
    return paths[-keep:]


# --8<-- [end:checkpoint]


# --8<-- [start:resume]
import itertools
import random

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

CONFIG = {
    "lr": 3e-3,
    "weight_decay": 0.01,
    "batch_size": 64,
    "epochs": 6,
    "dropout": 0.1,
    "seed": 0,
}


class Run:
    """Everything a training run changes as it goes: the model, the optimizer,
    the schedule, the GradScaler, the loader's shuffling, the random dropout,
    and how far it got. ``state()`` is one checkpoint of all of it."""

    def __init__(self, images, labels, config=CONFIG, device="cpu"):
        self.config, self.device = dict(config), torch.device(device)
        self.shuffle = torch.Generator().manual_seed(config["seed"])
        self.loader = DataLoader(
            TensorDataset(images, labels),
            batch_size=config["batch_size"],
            shuffle=True,
            generator=self.shuffle,
        )
        # first the model, on its device; then the optimizer of its parameters
        self.model = build_mlp(config["seed"], config["dropout"]).to(device)
        groups = parameter_groups(self.model, config["weight_decay"])
        self.optimizer = torch.optim.AdamW(groups, lr=config["lr"])
        steps = config["epochs"] * len(self.loader)  # optimizer steps in the run
        self.scheduler = warmup_cosine(self.optimizer, steps // 10, steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=False)  # fp32
        self.epoch, self.batch = 0, 0  # epochs done, batches done in this one
        # the generator's state when the epoch began: its order is drawn from it
        self.epoch_start = self.shuffle.get_state()

    def train_epoch(self, stop_after=None):
        """Train to the end of the epoch, or until ``stop_after`` of its batches
        are done. An epoch resumed half-way draws the same order again and
        skips the batches it has done."""
        self.shuffle.set_state(self.epoch_start)
        self.model.train()
        for inputs, targets in itertools.islice(
            self.loader, self.batch, stop_after
        ):
            self.backward(inputs, targets)
            self.step()
            self.batch += 1
        if self.batch == len(self.loader):  # the epoch is complete
            self.epoch, self.batch = self.epoch + 1, 0
            self.epoch_start = self.shuffle.get_state()

    def backward(self, inputs, targets):
        """The forward and backward pass of one batch: its gradients."""
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        loss = nn.functional.cross_entropy(self.model(inputs), targets)
        self.optimizer.zero_grad()
        self.scaler.scale(loss).backward()

    def step(self):
        """The optimizer's step with those gradients, then the schedule's."""
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()  # per batch: the schedule counts steps

    def state(self):
        # dropout on GPUs: one generator per device
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {
            "config": self.config,
            "epoch": self.epoch,
            "batch": self.batch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),  # dropout on the CPU
                "cuda": cuda,
                "shuffle": self.epoch_start,  # the order of the epoch under way
                "python": random.getstate(),  # if your code uses it
            },
        }

    def load_state(self, state):
        if state["config"] != self.config:
            changed = {
                key: (state["config"].get(key), value)
                for key, value in self.config.items()
                if state["config"].get(key) != value
            }
            raise CheckpointError(
                f"the checkpoint is of another configuration: {changed} "
                "(saved, now); resume with the saved one or start afresh"
            )
        expected = self.model.state_dict()
        different = [  # checked before anything is loaded: no half-loaded model
            key
            for key in expected.keys() | state["model"].keys()
            if key not in expected
            or key not in state["model"]
            or expected[key].shape != state["model"][key].shape
        ]
        if different:
            raise CheckpointError(
                f"the checkpoint holds another model: {sorted(different)[:4]} "
                "missing, unexpected or of another shape"
            )
        self.model.load_state_dict(state["model"])  # copied onto its device
        # the optimizer moves its state to each parameter's device and dtype as
        # they are now: the model was moved before (in __init__), never after
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])  # CPU tensors, as loaded
        if state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch_start = state["rng"]["shuffle"]
        random.setstate(state["rng"]["python"])
        self.epoch, self.batch = state["epoch"], state["batch"]


# --8<-- [end:resume]


# --8<-- [start:evaluate]
from pathlib import Path

import torch
from torch import nn


def evaluate(model, images, labels, batch_size=512):
    """Mean loss and accuracy on held-out data: in eval mode (dropout off) and
    in inference mode (no graph is kept, nothing can be trained by mistake)."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            logits = model(images[start : start + batch_size])
            targets = labels[start : start + batch_size]
            loss = nn.functional.cross_entropy(logits, targets, reduction="sum")
            total_loss += loss.item()
            correct += (logits.argmax(1) == targets).sum().item()
    model.train(was_training)
    return total_loss / len(labels), correct / len(labels)


class BestCheckpoint:
    """Keeps at ``path`` the checkpoint of the lowest validation loss so far."""

    def __init__(self, path):
        self.path, self.loss = Path(path), float("inf")

    def update(self, loss, state):
        """Save ``state`` if ``loss`` is the lowest so far; whether it was."""
        if not loss < self.loss:  # a NaN loss is never the best
            return False
        self.loss = loss
        save_checkpoint(state, self.path)
        return True


# --8<-- [end:evaluate]


# --8<-- [start:threads]
import torch


def train_with_threads(threads, images, labels, epochs=1):
    """The same seeded run with ``threads`` CPU threads; its final parameters."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(CONFIG["seed"])  # a run's seed, where the run starts
        run = Run(images, labels, {**CONFIG, "epochs": epochs})
        for _ in range(epochs):
            run.train_epoch()
        return torch.cat([p.detach().flatten() for p in run.model.parameters()])
    finally:
        torch.set_num_threads(before)


# --8<-- [end:threads]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.practice` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:weight-decay]
    model = build_mlp()
    for group in parameter_groups(model, weight_decay=0.01):
        shapes = [tuple(parameter.shape) for parameter in group["params"]]
        print(f"weight_decay {group['weight_decay']}: {shapes}")
    # --8<-- [end:weight-decay]

    # --8<-- [start:order]
    import textwrap
    import warnings

    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scheduler.step()  # the wrong order: the first learning rate is skipped
        optimizer.step()
    said = " ".join(str(caught[0].message).split()).split(". ")  # sentences
    print(textwrap.fill(". ".join(said[:2]) + ".", 80))
    print("learning rate of the first real step:", optimizer.param_groups[0]["lr"])
    # --8<-- [end:order]

    # --8<-- [start:schedules-demo]
    import matplotlib.pyplot as plt

    steps = 300
    schedules = {
        "StepLR(step_size=100, gamma=0.3)": lambda opt: (
            torch.optim.lr_scheduler.StepLR(opt, step_size=100, gamma=0.3)
        ),
        "OneCycleLR(max_lr=0.1)": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, 0.1, total_steps=steps
        ),
        "warm-up 30, then cosine": lambda opt: warmup_cosine(opt, 30, steps),
    }
    curves = {name: learning_rates(make, steps) for name, make in schedules.items()}

    def plateauing_loss(step):  # a validation loss that stops improving at 120
        return 1.0 / (1 + min(step, 120) / 30)

    curves["ReduceLROnPlateau(patience=20)"] = learning_rates(
        lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=0.5, patience=20
        ),
        steps,
        metric=plateauing_loss,
    )
    for name, rates in curves.items():
        first, peak, last = rates[0], max(rates), rates[-1]
        print(f"{name:32} first {first:.4f} peak {peak:.4f} last {last:.2g}")
    fig, ax = plt.subplots(figsize=(7, 3))
    for name, rates in curves.items():
        ax.plot(rates, label=name)
    ax.set(xlabel="optimizer step", ylabel="learning rate", yscale="log")
    ax.set_title("Learning-rate schedules, read from the schedulers")
    ax.legend(fontsize=8)
    # --8<-- [end:schedules-demo]

    # --8<-- [start:reduction]
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
    targets = torch.tensor([0, 2, 1])
    each = nn.functional.cross_entropy(logits, targets, reduction="none")
    print("none:", each)
    print("mean:", nn.functional.cross_entropy(logits, targets).item())
    print(
        "sum: ",
        nn.functional.cross_entropy(logits, targets, reduction="sum").item(),
    )
    weights = torch.tensor([1.0, 1.0, 0.0])  # e.g. a sample known to be mislabelled
    print("weighted mean:", ((each * weights).sum() / weights.sum()).item())
    # --8<-- [end:reduction]

    # --8<-- [start:class-weight]
    images, labels = digits_tensors()
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=generator)
    held_out, train_index = order[:600], order[600:]  # held-out: balanced
    # make the training set imbalanced: keep only 1 in 10 of the digits 5 to 9
    rare = labels[train_index] >= 5
    keep = ~rare | (torch.rand(len(train_index), generator=generator) < 0.1)
    train_index = train_index[keep]
    counts = labels[train_index].bincount(minlength=10)
    print("training images per digit:", counts.tolist())

    def per_digit(class_weight, steps):
        """Recall and precision of each digit on the held-out images."""
        torch.manual_seed(0)
        model = nn.Linear(64, 10)  # softmax regression: quick to show the effect
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        loss_fn = nn.CrossEntropyLoss(weight=class_weight)
        for _ in range(steps):  # full batches
            loss = loss_fn(model(images[train_index]), labels[train_index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.inference_mode():
            predicted = model.eval()(images[held_out]).argmax(1)
        truth = labels[held_out]
        hits = truth[predicted == truth].bincount(minlength=10)  # right, per digit
        recall = hits / truth.bincount(minlength=10)
        precision = hits / predicted.bincount(minlength=10).clamp(min=1)
        return recall, precision

    balanced = counts.sum() / (10 * counts)  # rare digits weigh more
    print(f"{'':21} {'recall':^12}  {'precision':^12}")
    print(f"{'':21} {'0-4':>5} {'5-9':>6}  {'0-4':>5} {'5-9':>6}")
    for steps in (100, 300):
        for name, class_weight in [("no weight", None), ("weight", balanced)]:
            recall, precision = per_digit(class_weight, steps)
            print(
                f"{steps} steps, {name:9}  {recall[:5].mean():5.2f} "
                f"{recall[5:].mean():6.2f}  {precision[:5].mean():5.2f} "
                f"{precision[5:].mean():6.2f}"
            )
    # --8<-- [end:class-weight]

    # --8<-- [start:pos-weight]
    is_nine = (labels == 9).float()  # one digit against the nine others
    positives = is_nine[train_index].sum()
    pos_weight = (len(train_index) - positives) / positives
    print(f"nines in training: {int(positives)}; pos_weight {pos_weight:.1f}")
    for name, weight in [("plain", None), ("pos_weight", pos_weight)]:
        torch.manual_seed(0)
        detector = nn.Linear(64, 1)  # logistic regression
        optimizer = torch.optim.AdamW(detector.parameters(), lr=0.05)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
        for _ in range(300):
            scores = detector(images[train_index]).squeeze(1)
            loss = loss_fn(scores, is_nine[train_index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.inference_mode():
            said_nine = detector(images[held_out]).squeeze(1) > 0
        truth = is_nine[held_out].bool()
        recall = (said_nine & truth).sum() / truth.sum()
        precision = (said_nine & truth).sum() / said_nine.sum()
        print(f"{name:10} recall {recall:.2f}  precision {precision:.2f}")
    # --8<-- [end:pos-weight]

    # --8<-- [start:ignore-index]
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    partly_labelled = torch.tensor([3, -100, 7, -100])  # -100: no label
    loss = nn.functional.cross_entropy(logits, partly_labelled)  # ignore_index=-100
    labelled_only = nn.functional.cross_entropy(
        logits[[0, 2]], torch.tensor([3, 7])
    )
    print("ignoring the unlabelled:", torch.isclose(loss, labelled_only).item())
    unlabelled = torch.tensor([-100, -100])  # a batch with no label at all
    print(
        "no label in the batch:",
        nn.functional.cross_entropy(logits[:2], unlabelled),
    )

    soft = torch.full((4, 10), 0.1 / 10)  # soft targets: probabilities per class
    soft[torch.arange(4), torch.tensor([3, 1, 7, 0])] += 0.9
    smoothed = nn.functional.cross_entropy(
        logits, torch.tensor([3, 1, 7, 0]), label_smoothing=0.1
    )
    as_soft = nn.functional.cross_entropy(logits, soft)
    print(
        "label_smoothing=0.1 is these soft targets:",
        torch.isclose(smoothed, as_soft).item(),
    )
    # --8<-- [end:ignore-index]

    # --8<-- [start:clipping-demo]
    inputs, targets = images[:256], labels[:256]
    for max_norm in [None, 1.0]:
        norms, losses = train_steps(
            deep_net(), inputs, targets, steps=30, lr=0.1, max_norm=max_norm
        )
        end = losses[-1]  # print a bound: the last digits depend on the threads
        final = "nan" if end != end else ("below 1" if end < 1 else f"{end:.1f}")
        print(
            f"max_norm {max_norm}: first gradient norm {norms[0]:.0f}, largest "
            f"{max(norms):.3g}; loss {losses[0]:.1f} -> {final}"
        )
    # --8<-- [end:clipping-demo]

    # --8<-- [start:scaler]
    model = deep_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")  # float16 on a CPU; "cuda" on a GPU
    scales, norms = [], []
    for _ in range(12):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        scaler.scale(loss).backward()  # the gradients are multiplied by the scale
        scaler.unscale_(optimizer)  # divide them back before measuring them
        norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        scaler.step(optimizer)  # skips the step if a gradient is inf or NaN
        scaler.update()  # an inf or NaN: halve the scale
        scales.append(int(scaler.get_scale()))
        norms.append(norm.item())
    print("scale after each step:", " ".join(map(str, scales)))
    print("gradient norm (unscaled):", " ".join(f"{n:.0f}" for n in norms))
    # --8<-- [end:scaler]

    # --8<-- [start:anomaly]
    import re

    weights = torch.tensor([0.0, 4.0], requires_grad=True)
    loss = torch.where(weights > 0, weights.sqrt(), 0.0).sum()  # sqrt(0) unused
    loss.backward()
    print("loss:", loss.item(), "| gradient:", weights.grad)
    with warnings.catch_warnings(record=True) as caught:  # it warns, then raises
        warnings.simplefilter("always")
        try:
            with torch.autograd.detect_anomaly():
                loss = torch.where(weights > 0, weights.sqrt(), 0.0).sum()
                loss.backward()
        except RuntimeError as error:
            print("RuntimeError:", error)
    # the warning holds the traceback of the forward call that made the NaN
    message = str(caught[-1].message)
    print(message.splitlines()[0])
    forward_call = re.findall(r'File "[^"]*", (line \d+)', message)[-1]
    print("  ...the forward call:", forward_call, "of this block")
    # --8<-- [end:anomaly]

    # --8<-- [start:finite]
    import textwrap

    model = deep_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    bad = inputs.clone()
    bad[5, 3] = float("nan")  # one corrupt pixel in the batch
    loss = nn.functional.cross_entropy(model(bad), targets)
    loss.backward()
    try:
        nn.utils.clip_grad_norm_(
            model.parameters(), max_norm=1.0, error_if_nonfinite=True
        )
    except RuntimeError as error:
        print(textwrap.fill(f"RuntimeError: {str(error).split('. ')[0]}.", 80))
    # --8<-- [end:finite]

    # --8<-- [start:checkpoint-demo]
    import tempfile

    folder = Path(tempfile.mkdtemp())
    torch.manual_seed(0)  # a run's seed: once, where the run starts
    uninterrupted = Run(images, labels)
    for _ in range(CONFIG["epochs"]):
        uninterrupted.train_epoch()

    torch.manual_seed(0)  # the same run, started again...
    interrupted = Run(images, labels)
    for stop_after in [None, None, 10]:  # two epochs, 10 batches of the third
        interrupted.train_epoch(stop_after)
        where = checkpoint_name(interrupted.epoch, interrupted.batch)
        save_checkpoint(interrupted.state(), folder / where)  # after each
    del interrupted  # ...then the process dies

    for name in ["epoch-2.pt", "epoch-2-batch-10.pt"]:
        resumed = Run(images, labels)  # a new process: everything built afresh
        resumed.load_state(load_checkpoint(folder / name))
        while resumed.epoch < CONFIG["epochs"]:
            resumed.train_epoch()
        same = all(
            torch.equal(a, b)
            for a, b in zip(
                resumed.model.state_dict().values(),
                uninterrupted.model.state_dict().values(),
            )
        )
        print(f"resumed from {name:19} bit-identical: {same}")
    size = (folder / "epoch-2.pt").stat().st_size
    print(f"checkpoint: {size / 1024:.0f} KiB")
    # --8<-- [end:checkpoint-demo]

    # --8<-- [start:resume-order]
    checkpoint = load_checkpoint(folder / "epoch-2.pt")
    for order in ["load, then move", "move, then load"]:  # float64: as a GPU
        run = Run(images, labels)
        if order == "move, then load":
            run.model.to(torch.float64)  # in place: the optimizer's parameters
        run.load_state(checkpoint)
        run.model.to(torch.float64)  # a no-op for the second
        weight = run.model[0].weight
        moment = run.optimizer.state[weight]["exp_avg"]
        print(f"{order}: parameters {weight.dtype}, AdamW's moments {moment.dtype}")
        try:
            run.model(images[:8].double()).sum().backward()
            run.optimizer.step()
        except RuntimeError as error:
            print(textwrap.fill(f"  next step: RuntimeError: {error}", 80))
        else:
            print("  next step: fine")
    # --8<-- [end:resume-order]

    # --8<-- [start:checkpoint-errors]
    truncated = folder / "truncated.pt"
    complete = (folder / "epoch-2.pt").read_bytes()
    truncated.write_bytes(complete[: len(complete) // 2])  # a copy cut short
    for attempt in [
        lambda: load_checkpoint(truncated),
        lambda: Run(images, labels, {**CONFIG, "lr": 1e-3}).load_state(checkpoint),
    ]:
        try:
            attempt()
        except CheckpointError as error:
            message = str(error).replace(str(folder), "...")
            print(textwrap.fill(f"CheckpointError: {message}", 80))

    # a Path is not a tensor, a number, a string or a container: refused
    save_checkpoint({"data_dir": Path("data/digits")}, folder / "paths.pt")
    try:
        load_checkpoint(folder / "paths.pt")
    except CheckpointError as error:
        message = str(error).replace(str(folder), "...")
        print(textwrap.fill(f"CheckpointError: {message}", 80))
    with torch.serialization.safe_globals([type(Path())]):  # trusted: allow it
        print(load_checkpoint(folder / "paths.pt")["data_dir"].as_posix())
    # --8<-- [end:checkpoint-errors]

    # --8<-- [start:keep-last]
    for epoch in range(3, 7):
        save_checkpoint(resumed.state(), folder / checkpoint_name(epoch))
        kept = keep_last(folder, keep=3)
    print("kept:", [path.name for path in kept])
    others = sorted(
        {path.name for path in folder.iterdir()} - {k.name for k in kept}
    )
    print("also in the folder:", others)
    # --8<-- [end:keep-last]

    # --8<-- [start:tensorboard]
    from torch.utils.tensorboard import SummaryWriter

    validation = torch.randperm(len(labels), generator=generator)[:360]
    in_training = torch.ones(len(labels), dtype=torch.bool)
    in_training[validation] = False
    log_dir = Path(tempfile.mkdtemp()) / "runs" / "digits-mlp"  # runs/: yours
    best, step = BestCheckpoint(log_dir / "best.pt"), 0
    torch.manual_seed(0)
    run = Run(images[in_training], labels[in_training], {**CONFIG, "epochs": 4})
    with SummaryWriter(log_dir) as writer:  # one folder per run; closed at the end
        while run.epoch < 4:
            run.train_epoch()
            step += len(run.loader)  # the x axis: optimizer steps, not epochs
            train_loss, train_accuracy = evaluate(
                run.model, images[in_training], labels[in_training]
            )
            loss, accuracy = evaluate(
                run.model, images[validation], labels[validation]
            )
            writer.add_scalar("loss/train", train_loss, step)
            writer.add_scalar("loss/validation", loss, step)
            writer.add_scalar("accuracy/validation", accuracy, step)
            writer.add_scalar("lr", run.scheduler.get_last_lr()[0], step)
            writer.add_histogram("weights/first-layer", run.model[0].weight, step)
            best.update(loss, run.state())  # saved if the best so far
            print(
                f"epoch {run.epoch}: loss train {train_loss:.3f} validation "
                f"{loss:.3f}, accuracy {accuracy:.3f}"
            )
    best_state = load_checkpoint(best.path)
    print(
        "best.pt: epoch",
        best_state["epoch"],
        "| files:",
        sorted(path.name.split(".")[0] for path in log_dir.iterdir()),
    )
    print("tensorboard --logdir", log_dir.parent)
    # --8<-- [end:tensorboard]

    # --8<-- [start:threads-demo]
    one, two = (train_with_threads(n, images, labels) for n in (1, 2))
    print("1 thread and 2 threads, bit-identical:", torch.equal(one, two))
    print("largest difference below 1e-4:", (one - two).abs().max().item() < 1e-4)
    # --8<-- [end:threads-demo]

    # --8<-- [start:deterministic]
    torch.use_deterministic_algorithms(True)
    try:  # put_ writes values to positions: two writes to position 0, which wins?
        torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
    except RuntimeError as error:
        print(textwrap.fill(f"RuntimeError: {str(error).split('. ')[0]}.", 80))
    finally:
        torch.use_deterministic_algorithms(False)  # back to the default
    # --8<-- [end:deterministic]

    # --8<-- [start:exercise-warmup]
    rates = learning_rates(lambda opt: warmup_cosine(opt, 30, 300), 300)
    peak = max(rates)
    print(
        f"after 15 steps: {rates[15]:.4f}; peak {peak} at step {rates.index(peak)}"
    )
    # --8<-- [end:exercise-warmup]

    # --8<-- [start:exercise-weights-only]
    torch.manual_seed(0)
    weights_only = Run(images, labels)  # fresh optimizer, schedule and order
    weights_only.model.load_state_dict(checkpoint["model"])
    weights_only.epoch = 2
    while weights_only.epoch < CONFIG["epochs"]:
        weights_only.train_epoch()
    same = all(
        torch.equal(a, b)
        for a, b in zip(
            weights_only.model.parameters(), uninterrupted.model.parameters()
        )
    )
    print("bit-identical to the uninterrupted run:", same)
    for name, trained in [
        ("uninterrupted", uninterrupted),
        ("weights only", weights_only),
    ]:
        with torch.inference_mode():
            predicted = trained.model.eval()(images).argmax(1)
        mistakes = (predicted != labels).sum().item()
        print(f"{name:13} {mistakes} mistakes on the 1,797 digits")
    # --8<-- [end:exercise-weights-only]
