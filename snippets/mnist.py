"""MNIST, a digit classifier end to end: the code of docs/mnist.md.

Public API (imported by snippets/mnist_bench.py and the GPU chapter; keep these names and meanings stable):

- ``MEAN, STD``: the training set's pixel mean and standard deviation (0.1307, 0.3081), used by ``Normalize``.
- ``TRANSFORM``: ``transforms.Compose([ToTensor(), Normalize((MEAN,), (STD,))])``, the per-sample preprocessing.
- ``MnistNotFoundError``: raised (fast, never a hang) when the files are missing; says how to provide them.
- ``load_mnist(root, train, download=False)``: the ``torchvision.datasets.MNIST`` dataset with ``TRANSFORM``.
- ``preload(dataset_or_root, train, device="cpu") -> (images, labels)``: the whole split as two tensors on
  ``device``: images float32, shape **N x 784** (flattened, contiguous), normalised exactly like ``TRANSFORM``
  (bit for bit); labels int64, shape N.
- ``split_indices(n, n_val, seed)``: the (train, validation) index tensors ``random_split`` would pick.
- ``batches(images, labels, batch_size, generator, shuffle=True)``: yields (x, y) batches by index slicing of
  preloaded tensors (one random permutation per epoch, drawn from ``generator``).
- ``build_model(hidden=(128,)) -> nn.Sequential``: Flatten, then Linear + ReLU per hidden width, then a Linear
  layer to 10 logits. Accepts N x 1 x 28 x 28 or N x 784 input.
- ``make_optimizer(model, lr, weight_decay=0.01)``: AdamW, fused where the device supports it.
- ``train_epoch(model, batch_iterable, optimizer, scheduler=None, loss_fn=None, augment=None, device=None,
  progress=False) -> float``: one pass over any iterable of (x, y) (a DataLoader or ``batches``); returns the mean
  training loss (one device sync per epoch, not per batch).
- ``fit(model, train, val, *, epochs, batch_size=128, max_lr=3e-3, ...) -> dict``: AdamW + one-cycle training on
  preloaded (images, labels); returns per-epoch history (train_loss, val_accuracy, epoch_seconds).
- ``evaluate(model, images, labels, batch_size=10_000) -> float``: accuracy in [0, 1] (eval mode, inference mode).
- ``predict_proba(model, images, batch_size=10_000) -> Tensor``: N x 10 class probabilities.
- ``confusion_matrix(predicted, labels, num_classes=10) -> Tensor``: rows are true classes, columns predictions.
- ``save_state_dict_atomic(model, path)``, ``load_model(path, hidden=None, device="cpu")`` (hidden inferred from the
  saved shapes when None; the model comes back in eval mode), ``load_png(path)``, ``pick_device()``.
- ``main(argv=None)``: the command line, ``python -m snippets.mnist --data-root DIR --epochs N --save PATH``.
"""

# --8<-- [start:setup]
import torch
from torchvision import transforms

MEAN, STD = 0.1307, 0.3081  # mean and std of all 47 million training pixels, scaled to [0, 1]

TRANSFORM = transforms.Compose([
    transforms.ToTensor(),  # PIL image (28x28, uint8 0..255) -> float32 tensor 1x28x28 in [0, 1]
    transforms.Normalize((MEAN,), (STD,)),  # (x - mean) / std: pixels now have mean 0 and std 1
])


def pick_device():
    """The machine's accelerator (CUDA, MPS, XPU...) if one is usable, else the CPU."""
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    return accelerator if accelerator is not None else torch.device("cpu")

# --8<-- [end:setup]

# --8<-- [start:load]
from pathlib import Path

from torchvision.datasets import MNIST

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


class MnistNotFoundError(FileNotFoundError):
    """The MNIST files are not where we looked, and were not (or could not be) downloaded."""


def load_mnist(root, train, download=False):
    """The MNIST training (60,000) or test (10,000) set as a torchvision dataset of (image tensor, label)."""
    raw = Path(root) / "MNIST" / "raw"
    _extract_gzipped(raw)  # the original .gz files are enough: unpack them once, as torchvision does
    if download and not all((raw / name).exists() for name in FILES):
        try:
            MNIST(root, train=train, download=True)  # 11 MB from the mirrors torchvision knows
        except Exception as error:  # offline: a DNS or HTTP error within a second or two
            raise MnistNotFoundError(f"downloading MNIST into {raw} failed ({error}). {HOW_TO_GET_MNIST}") from error
    missing = [name for name in FILES if not (raw / name).exists()]
    if missing:
        raise MnistNotFoundError(f"MNIST not found: {raw} lacks {', '.join(missing)}. {HOW_TO_GET_MNIST}")
    return MNIST(root, train=train, download=False, transform=TRANSFORM)


HOW_TO_GET_MNIST = (
    "Pass download=True (or --download) to fetch the 4 files (11 MB), or, offline, copy the four original "
    "files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) into <root>/MNIST/raw/."
)


def _extract_gzipped(raw):
    import gzip
    import os
    import shutil

    for name in FILES:
        target, packed = raw / name, raw / f"{name}.gz"
        if not target.exists() and packed.exists():
            partial = raw / f".{name}.partial"
            with gzip.open(packed, "rb") as source, open(partial, "wb") as sink:
                shutil.copyfileobj(source, sink)
            os.replace(partial, target)  # atomic: a half-extracted file never has the real name
# --8<-- [end:load]

# --8<-- [start:preload]
import torch


def preload(dataset_or_root, train, device="cpu"):
    """All images of a split as one normalised float32 tensor (N x 784) and the labels (int64), on ``device``."""
    dataset = dataset_or_root if isinstance(dataset_or_root, MNIST) else load_mnist(dataset_or_root, train)
    pixels = dataset.data.to(device)  # uint8, N x 28 x 28: the raw file, no PIL involved
    images = pixels.reshape(len(pixels), 784).float().div(255).sub(MEAN).div(STD)  # = ToTensor + Normalize
    return images.contiguous(), dataset.targets.to(device, torch.int64)
# --8<-- [end:preload]

# --8<-- [start:split]
import torch


def split_indices(n, n_val, seed):
    """Indices of a seeded train/validation split: the same ones torch.utils.data.random_split picks."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[: n - n_val], order[n - n_val:]


def batches(images, labels, batch_size, generator, shuffle=True):
    """Yield (images, labels) batches sliced from preloaded tensors; a new random order per call."""
    n = len(labels)
    if shuffle:
        order = torch.randperm(n, generator=generator, device=generator.device).to(labels.device)
    for start in range(0, n, batch_size):
        if shuffle:
            index = order[start: start + batch_size]
            yield images.index_select(0, index), labels.index_select(0, index)
        else:
            yield images[start: start + batch_size], labels[start: start + batch_size]
# --8<-- [end:split]

# --8<-- [start:model]
import torch
from torch import nn


def build_model(hidden=(128,)):
    """A fully connected classifier: 784 pixels -> hidden ReLU layers -> 10 logits (one score per digit)."""
    layers, width = [nn.Flatten()], 784  # Flatten: N x 1 x 28 x 28 (or N x 784) -> N x 784
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, 10))  # no softmax: the loss works on logits
    return nn.Sequential(*layers)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
# --8<-- [end:model]

# --8<-- [start:train]
import os
import sys
import time

import torch
from torch import nn
from tqdm.auto import tqdm


def make_optimizer(model, lr, weight_decay=0.01):
    """AdamW; the fused kernel (one call updates every parameter) where the device has one."""
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fused)


def show_progress():
    """A progress bar only for a person watching: not when output goes to a file or a pipe, not in CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def train_epoch(model, batch_iterable, optimizer, scheduler=None, loss_fn=None, augment=None, device=None,
                progress=False):
    """One pass over the batches; returns the mean training loss over the epoch."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.train()  # training behaviour for dropout (and batch norm, if any)
    total, count = 0.0, 0
    for x, y in tqdm(batch_iterable, desc="train", leave=False, disable=not progress):
        if device is not None:  # DataLoader batches arrive on the CPU
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x)
        loss = loss_fn(model(x), y)  # logits in, mean loss over the batch out
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()  # one-cycle: the learning rate changes every batch
        total = total + loss.detach() * len(y)  # a tensor: no .item(), no waiting for the device per batch
        count += len(y)
    return float(total) / count  # one synchronisation per epoch


def fit(model, train, val, *, epochs, batch_size=128, max_lr=3e-3, weight_decay=0.01, label_smoothing=0.0,
        augment=None, seed=0, progress=False, on_epoch=None):
    """Train on preloaded (images, labels) with AdamW + one-cycle; validate after each epoch."""
    images, labels = train
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model, max_lr, weight_decay)
    steps = (len(labels) + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=epochs * steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    history = {"train_loss": [], "val_accuracy": [], "epoch_seconds": []}
    for epoch in range(epochs):
        start = time.perf_counter()
        loss = train_epoch(model, batches(images, labels, batch_size, generator), optimizer, scheduler,
                           loss_fn, augment, progress=progress)
        history["epoch_seconds"].append(time.perf_counter() - start)  # training only, not validation
        history["train_loss"].append(loss)
        history["val_accuracy"].append(evaluate(model, *val))
        if on_epoch is not None:
            on_epoch(epoch, history)
    return history
# --8<-- [end:train]

# --8<-- [start:evaluate]
import torch


def predict_proba(model, images, batch_size=10_000):
    """Class probabilities (N x 10): softmax of the logits, in evaluation mode, without autograd."""
    model.eval()  # dropout off (and batch norm on running statistics)
    with torch.inference_mode():  # no graph, no saved activations: less memory, faster
        return torch.cat([model(images[i: i + batch_size]).softmax(dim=1) for i in range(0, len(images), batch_size)])


def evaluate(model, images, labels, batch_size=10_000):
    """Accuracy: the fraction of images whose highest-scoring class is the label."""
    predicted = predict_proba(model, images, batch_size).argmax(dim=1)
    return (predicted == labels).float().mean().item()


def confusion_matrix(predicted, labels, num_classes=10):
    """counts[true, predicted]: the diagonal holds the correct answers."""
    flat = labels.to(torch.int64) * num_classes + predicted.to(torch.int64)
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)
# --8<-- [end:evaluate]

# --8<-- [start:save]
import os
import tempfile
from pathlib import Path

import torch


def save_state_dict_atomic(model, path):
    """Save the weights to a temporary file in the same folder, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(model.state_dict(), file)
            file.flush()
            os.fsync(file.fileno())  # on disk before the rename makes it visible
        os.replace(temporary, path)  # atomic: readers see the old file or the new one, never half of one
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_model(path, hidden=None, device="cpu"):
    """Rebuild the network and load saved weights (tensors only: weights_only=True runs no pickled code)."""
    state = torch.load(path, map_location=device, weights_only=True)
    if hidden is None:  # read the hidden widths off the saved weight shapes
        hidden = tuple(w.shape[0] for name, w in state.items() if name.endswith("weight"))[:-1]
    model = build_model(hidden).to(device)
    model.load_state_dict(state)  # strict: a missing or unexpected tensor is an error
    return model.eval()
# --8<-- [end:save]

# --8<-- [start:png]
from PIL import Image


def load_png(path):
    """A 28x28 digit image file, preprocessed exactly like the training data: a 1 x 1 x 28 x 28 tensor."""
    image = Image.open(path)
    if image.size != (28, 28):
        raise ValueError(
            f"{path}: the image is {image.size[0]}x{image.size[1]} pixels; the model reads 28x28 MNIST-style "
            "digits (white on black, centred in a 20x20 box). Crop and resize it to 28x28 first."
        )
    if image.mode != "L":  # RGB, RGBA, palette...: keep the brightness, as MNIST is grayscale
        image = image.convert("L")
    return TRANSFORM(image).unsqueeze(0)  # the same transform as the training set
# --8<-- [end:png]

# --8<-- [start:further]
import torch


def random_shift(images, max_shift=2, generator=None):
    """Move each image (N x 784) by up to ``max_shift`` pixels in x and y: data augmentation on the tensor."""
    n, device = len(images), images.device
    side = 28 + 2 * max_shift
    padded = torch.full((n, side, side), -MEAN / STD, dtype=images.dtype, device=device)  # black border
    padded[:, max_shift: max_shift + 28, max_shift: max_shift + 28] = images.reshape(n, 28, 28)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator).to(device)
    rows = (offsets[0] + torch.arange(28, device=device)).unsqueeze(2)  # n x 28 x 1
    cols = (offsets[1] + torch.arange(28, device=device)).unsqueeze(1)  # n x 1 x 28
    return padded[torch.arange(n, device=device).view(n, 1, 1), rows, cols].reshape(n, 784)


FURTHER = {"hidden": (1024,), "epochs": 8, "batch_size": 256, "max_lr": 2e-3, "label_smoothing": 0.1,
           "max_shift": 2}


def train_further(train, val, seed=0, config=FURTHER):
    """The going-further recipe: a wider network, label smoothing, random shifts of the training batches."""
    torch.manual_seed(seed)
    model = build_model(config["hidden"]).to(train[0].device)
    shift_generator = torch.Generator().manual_seed(seed)

    def augment(x):
        return random_shift(x, config["max_shift"], shift_generator)

    history = fit(model, train, val, epochs=config["epochs"], batch_size=config["batch_size"],
                  max_lr=config["max_lr"], label_smoothing=config["label_smoothing"], augment=augment, seed=seed)
    return model, history
# --8<-- [end:further]


def page_examples():
    """The small data-free examples the page runs at build (kept out of import: importing prints nothing)."""
    # --8<-- [start:setup-demo]
    print("device:", pick_device())
    print("a black pixel becomes", round((0 - MEAN) / STD, 4), "and a white one", round((1 - MEAN) / STD, 4))
    # --8<-- [end:setup-demo]

    # --8<-- [start:missing]
    try:
        load_mnist("no-such-folder", train=True)
    except MnistNotFoundError as error:
        print(type(error).__name__ + ":", error)
    # --8<-- [end:missing]

    # --8<-- [start:preload-demo]
    # The same arithmetic as TRANSFORM, in one operation on the whole tensor: the results are identical, bit for bit.
    fake_digits = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    one_by_one = torch.stack([TRANSFORM(transforms.functional.to_pil_image(d)).reshape(784) for d in fake_digits])
    all_at_once = fake_digits.reshape(3, 784).float().div(255).sub(MEAN).div(STD)
    print("identical to the per-image transform:", torch.equal(one_by_one, all_at_once))
    # --8<-- [end:preload-demo]

    # --8<-- [start:split-demo]
    demo_images, demo_labels = torch.randn(10, 784), torch.arange(10)
    for x, y in batches(demo_images, demo_labels, batch_size=4, generator=torch.Generator().manual_seed(0)):
        print(tuple(x.shape), y.tolist())
    # --8<-- [end:split-demo]

    # --8<-- [start:model-demo]
    torch.manual_seed(0)
    model = build_model(hidden=(128,))
    print(model)
    print("parameters:", count_parameters(model), "=", "784*128 + 128 + 128*10 + 10")
    print("784-256-128-10:", count_parameters(build_model(hidden=(256, 128))), "parameters")
    print("logits for 2 images:", tuple(model(torch.randn(2, 1, 28, 28)).shape))
    # --8<-- [end:model-demo]

    # --8<-- [start:evaluate-demo]
    print(confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), num_classes=3))
    # --8<-- [end:evaluate-demo]

    # --8<-- [start:save-demo]
    with tempfile.TemporaryDirectory() as folder:
        saved = save_state_dict_atomic(model, Path(folder) / "mnist_mlp.pt")
        print(sorted(p.name for p in Path(folder).iterdir()), saved.stat().st_size, "bytes")
        reloaded = load_model(saved)
        probe = torch.randn(5, 784, generator=torch.Generator().manual_seed(1))
        print("identical predictions:", torch.equal(predict_proba(model, probe), predict_proba(reloaded, probe)))
    # --8<-- [end:save-demo]

    # --8<-- [start:png-demo]
    with tempfile.TemporaryDirectory() as folder:
        Image.new("RGB", (28, 28)).save(Path(folder) / "rgb.png")
        print("RGB 28x28 ->", tuple(load_png(Path(folder) / "rgb.png").shape))
        Image.new("L", (64, 64)).save(Path(folder) / "big.png")
        try:
            load_png(Path(folder) / "big.png")
        except ValueError as error:
            print("ValueError:", str(error).split(": ", 1)[1])
    # --8<-- [end:png-demo]

    return locals()


def exercise_solutions():
    """The exercises' solutions the page runs (in a function, so that importing the module prints nothing)."""
    # --8<-- [start:exercise-loss]
    import torch
    from torch import nn

    logits, target = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([2])
    print(nn.CrossEntropyLoss()(logits, target).item(), nn.NLLLoss()(logits.log_softmax(dim=1), target).item())

    confident = torch.tensor([[200.0, 0.0]])  # sure of class 0; the label is 1
    print("log_softmax:", nn.NLLLoss()(confident.log_softmax(dim=1), torch.tensor([1])).item())
    print("log(softmax):", nn.NLLLoss()(confident.softmax(dim=1).log(), torch.tensor([1])).item())
    # --8<-- [end:exercise-loss]
    return locals()


def page_results():
    """The page's results, drawn at build from the recorded run (docs/records/mnist.json), never on import."""
    # --8<-- [start:record]
    from snippets.records import format_provenance, read_record

    record = read_record("mnist")  # written by: python -m snippets.mnist_bench --data-root data --record
    results = record["metrics"]
    print(format_provenance(record))
    print(f"threads: {results['threads']}; load average: {results['load_average'][0]:.2f} at the start, "
          f"{results['load_average'][1]:.2f} at the end")
    # --8<-- [end:record]

    # --8<-- [start:look]
    import matplotlib.pyplot as plt
    import torch

    data = results["data"]
    print(f"{data['n_train']:,} training images, {data['n_test']:,} test images")
    print(f"training pixels (scaled to [0, 1]): mean {data['pixel_mean']:.4f}, std {data['pixel_std']:.4f}")
    print("training images per digit:", data["train_counts"])
    print("test images per digit:    ", data["test_counts"])

    samples = torch.tensor(data["sample_images"], dtype=torch.uint8).reshape(-1, 28, 28)
    fig, axes = plt.subplots(3, 8, figsize=(8, 3.6))
    for ax, image, label in zip(axes.flat, samples, data["sample_labels"]):
        ax.imshow(image.numpy(), cmap="gray")
        ax.set_title(str(label), fontsize=10)
        ax.axis("off")
    fig.suptitle("The first 24 training images, each titled with its label")

    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.bar(range(10), data["train_counts"], color="tab:orange")
    ax.set(title="Training images per digit", xlabel="digit", ylabel="images", xticks=range(10))
    # --8<-- [end:look]

    # --8<-- [start:curves]
    chapter = results["chapter"]
    print(f"784-128-10, {chapter['parameters']:,} parameters, {chapter['config']}")
    print("epoch  train loss  validation accuracy  seconds (seed 0)")
    first = chapter["runs"][0]
    for epoch, (loss, accuracy, seconds) in enumerate(
            zip(first["train_loss"], first["val_accuracy"], first["epoch_seconds"]), start=1):
        print(f"{epoch:5}  {loss:10.4f}  {accuracy:19.2%}  {seconds:7.2f}")

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for run in chapter["runs"]:
        epochs = range(1, len(run["train_loss"]) + 1)
        left.plot(epochs, run["train_loss"], marker="o", label=f"seed {run['seed']}")
        right.plot(epochs, run["val_accuracy"], marker="o", label=f"seed {run['seed']}")
    left.set(title="Training loss", xlabel="epoch", ylabel="cross-entropy (log scale)", yscale="log")
    right.set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy")
    right.legend()
    fig.tight_layout()
    # --8<-- [end:curves]

    # --8<-- [start:test-results]
    accuracies = [run["test_accuracy"] for run in chapter["runs"]]
    print("test accuracy, seeds 0, 1, 2:", ", ".join(f"{a:.2%}" for a in accuracies))
    print(f"mean {chapter['test_accuracy_mean']:.2%} (spread {chapter['test_accuracy_min']:.2%} to "
          f"{chapter['test_accuracy_max']:.2%})")
    print("per digit (seed 0):", " ".join(f"{d}:{a:.1%}" for d, a in enumerate(chapter["per_class"])))

    counts = torch.tensor(chapter["confusion"])
    mistakes = counts - torch.diag(counts.diag())  # off the diagonal: the errors
    top = mistakes.flatten().topk(5)
    print("most frequent mistakes:", ", ".join(f"{i // 10} → {i % 10} ({n})" for n, i in zip(*top) if n))

    fig, ax = plt.subplots(figsize=(5.4, 4.8))
    ax.imshow(counts.clamp(min=1).log().numpy(), cmap="Oranges")
    for true in range(10):
        for guess in range(10):
            if counts[true, guess]:
                ax.text(guess, true, counts[true, guess].item(), ha="center", va="center", fontsize=7,
                        color="white" if true == guess else "#222222")
    ax.set(title="Confusion matrix, test set (seed 0)", xlabel="predicted digit", ylabel="true digit",
           xticks=range(10), yticks=range(10))
    # --8<-- [end:test-results]

    # --8<-- [start:wrong]
    wrong = chapter["wrong"]
    images = torch.tensor(wrong["images"], dtype=torch.uint8).reshape(-1, 28, 28)
    fig, axes = plt.subplots(2, 6, figsize=(9, 3.8))
    for ax, image, label, guess, p in zip(axes.flat, images, wrong["labels"], wrong["predicted"],
                                          wrong["probability"]):
        ax.imshow(image.numpy(), cmap="gray")
        ax.set_title(f"{label} → {guess} ({p:.3f})", fontsize=9)
        ax.axis("off")
    fig.suptitle("The most confidently wrong test digits: label → prediction (its probability)")
    # --8<-- [end:wrong]

    # --8<-- [start:speed]
    speed = results["speed"]
    floor = speed["floor_seconds"]
    measured = sorted(speed["matmul_gflops"].items(), key=lambda item: int(item[0]))  # by batch size
    print("matmul (B x 784) @ (784 x 128), GFLOP/s:", ", ".join(f"B={b}: {g:.0f}" for b, g in measured))
    print(f"compute floor: 6 x {speed['parameters']:,} x 60,000 = {6 * speed['parameters'] * 60_000 / 1e9:.1f} "
          f"GFLOP per epoch at {max(speed['matmul_gflops'].values()):.0f} GFLOP/s = {floor:.3f} s")
    print(f"{'784-128-10, one epoch of 60,000 images':44} {'s/epoch':>8} {'images/s':>10} {'x floor':>8}")
    rows = [(f"standard: DataLoader, {run['num_workers']} workers, batch 128", run["train_epoch_seconds"])
            for run in speed["standard"]]
    rows += [(f"fast: preloaded tensors, batch {run['batch_size']}", run["median_epoch_seconds"])
             for run in speed["fast"]]
    for name, seconds in rows:
        print(f"{name:44} {seconds:8.2f} {60_000 / seconds:10,.0f} {seconds / floor:8.1f}")
    fast = speed["fast"][0]
    print(f"the DataLoader alone (no model, 0 workers): {speed['standard'][0]['loading_seconds']:.2f} s per epoch")
    speed_up = speed["standard"][0]["train_epoch_seconds"] / fast["median_epoch_seconds"]
    print(f"fast path speed-up at batch 128: {speed_up:.1f}x")
    print(f"98% test accuracy after {fast['seconds_to_98']:.2f} s of training (batch 128, all 60,000 images)")

    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.barh([name for name, _ in rows][::-1], [s for _, s in rows][::-1], color="tab:orange")
    ax.axvline(floor, color="black", linestyle="--", label=f"compute floor ({floor:.2f} s)")
    ax.set(title="Seconds per training epoch (lower is faster)", xlabel="seconds per epoch")
    ax.legend()
    # --8<-- [end:speed]

    # --8<-- [start:further-results]
    further = results["further"]
    print("recipe:", further["config"], f"({further['runs'][0]['parameters']:,} parameters)")
    for run in further["runs"]:
        print(f"seed {run['seed']}: test accuracy {run['val_accuracy'][-1]:.2%} after "
              f"{run['train_seconds']:.1f} s of training")
    print(f"mean {further['test_accuracy_mean']:.2%} (spread {further['test_accuracy_min']:.2%} to "
          f"{further['test_accuracy_max']:.2%})")
    # --8<-- [end:further-results]


def main(argv=None):
    """Train, evaluate and save the MNIST classifier from the command line; returns the results as a dict."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m snippets.mnist", description=main.__doc__)
    parser.add_argument("--data-root", default="data", help="folder holding MNIST/raw (default: data)")
    parser.add_argument("--download", action="store_true", help="download the files if they are missing")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128], help="hidden layer widths (default: 128)")
    parser.add_argument("--val-size", type=int, default=5000, help="training images held out for validation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default="mnist_mlp.pt", help="where to save the trained weights")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps... (default: the accelerator if any)")
    args = parser.parse_args(argv)

    # --8<-- [start:main-data]
    from torch.utils.data import DataLoader, random_split

    device = torch.device(args.device) if args.device else pick_device()
    train_set = load_mnist(args.data_root, train=True, download=args.download)
    test_set = load_mnist(args.data_root, train=False, download=args.download)
    image, label = train_set[0]  # one sample: PIL image -> TRANSFORM -> tensor
    print(f"{len(train_set)} training and {len(test_set)} test images; sample: {tuple(image.shape)} "
          f"{image.dtype}, label {label}")

    # hold out a validation set, with a seeded generator so the split is the same every run
    if not 0 < args.val_size < len(train_set):
        raise SystemExit(f"--val-size must be between 1 and {len(train_set) - 1}")
    n_train = len(train_set) - args.val_size
    train_part, val_part = random_split(train_set, [n_train, args.val_size],
                                        generator=torch.Generator().manual_seed(args.seed))
    loader = DataLoader(train_part, batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))
    images, labels = next(iter(loader))
    print(f"a batch: images {tuple(images.shape)} {images.dtype}, labels {tuple(labels.shape)} {labels.dtype}")
    # --8<-- [end:main-data]

    # --8<-- [start:main-preload]
    all_images, all_labels = preload(train_set, train=True, device=device)  # one tensor: the fast path
    train_index, val_index = split_indices(len(train_set), args.val_size, seed=args.seed)
    assert train_index.tolist() == train_part.indices  # the very same split as random_split's
    train_x, train_y = all_images[train_index.to(device)], all_labels[train_index.to(device)]
    val_x, val_y = all_images[val_index.to(device)], all_labels[val_index.to(device)]
    test_x, test_y = preload(test_set, train=False, device=device)
    print(f"preloaded on {device}: train {tuple(train_x.shape)}, validation {tuple(val_x.shape)}, "
          f"test {tuple(test_x.shape)}")
    # --8<-- [end:main-preload]

    # --8<-- [start:main-train]
    torch.manual_seed(args.seed)  # the initial weights
    model = build_model(hidden=tuple(args.hidden)).to(device)
    print(f"{count_parameters(model):,} parameters")

    def report(epoch, history):
        print(f"epoch {epoch + 1}: train loss {history['train_loss'][-1]:.4f}, "
              f"validation accuracy {history['val_accuracy'][-1]:.2%} ({history['epoch_seconds'][-1]:.2f} s)")

    history = fit(model, (train_x, train_y), (val_x, val_y), epochs=args.epochs, batch_size=args.batch_size,
                  max_lr=args.lr, seed=args.seed, progress=show_progress(), on_epoch=report)
    # --8<-- [end:main-train]

    # --8<-- [start:main-test]
    probabilities = predict_proba(model, test_x)
    predicted = probabilities.argmax(dim=1)
    test_accuracy = (predicted == test_y).float().mean().item()
    counts = confusion_matrix(predicted, test_y).cpu()
    per_class = counts.diag() / counts.sum(dim=1)  # correct / number of test images of that digit
    print(f"test accuracy: {test_accuracy:.2%}")
    print("per digit:", " ".join(f"{digit}:{acc:.1%}" for digit, acc in enumerate(per_class.tolist())))
    # --8<-- [end:main-test]

    # --8<-- [start:main-save]
    path = save_state_dict_atomic(model, args.save)
    reloaded = load_model(path, device=device)
    same = torch.equal(predict_proba(reloaded, test_x), probabilities)
    print(f"saved {path} ({path.stat().st_size:,} bytes); reloaded model gives identical predictions: {same}")

    # one image from a file, through the same preprocessing as the training data
    png = Path(path).with_suffix(".sample.png")
    transforms.functional.to_pil_image(test_set.data[0]).save(png)  # test image 0 as a grayscale PNG
    png_probabilities = predict_proba(reloaded, load_png(png).to(device))[0]
    print(f"{png.name}: predicted {png_probabilities.argmax().item()} "
          f"(probability {png_probabilities.max().item():.3f}), label {test_set.targets[0].item()}")
    # --8<-- [end:main-save]
    return {"history": history, "test_accuracy": test_accuracy, "per_class": per_class.tolist(),
            "confusion": counts.tolist(), "model": model, "path": path, "reloaded_identical": same,
            "png": png, "png_prediction": png_probabilities.argmax().item()}


if __name__ == "__main__":
    main()
