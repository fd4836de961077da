"""MNIST, a digit classifier end to end: the code of docs/mnist.md.

One file a reader can download and run: ``python mnist.py --data-root data``.
Other code reuses it (the benchmark, later chapters); keep these names stable:

- ``MEAN, STD``: the training pixels' mean and standard deviation.
- ``TO_FLOAT``: uint8 image tensors (one or a batch) -> normalised float32;
  ``TRANSFORM``: a PIL image -> ``TO_FLOAT`` of it (what the dataset applies).
- ``MnistNotFoundError``; ``load_mnist(root, train, download=False)``.
- ``preload(dataset_or_root, train, device="cpu") -> (images, labels)``: a
  split as float32 N x 784 (bit for bit ``TRANSFORM``) and int64 labels.
- ``split_indices(n, n_val, seed)``; ``batches(images, labels, batch_size,
  generator, shuffle=True)``.
- ``build_model(hidden=(128,))``, ``count_parameters(model)``,
  ``training_flops(model)``.
- ``make_optimizer``, ``train_epoch``, ``fit`` (AdamW + one-cycle on preloaded
  tensors), ``predict_proba``, ``evaluate``, ``confusion_matrix``.
- ``save_state_dict_atomic``, ``load_model``, ``load_png``, ``pick_device``.
- ``random_shift``, ``FURTHER``, ``train_further``; ``parse_args(argv=None)``,
  ``main(argv=None)``.
"""

# --8<-- [start:setup]
import torch
from torchvision.transforms import v2

MEAN, STD = 0.1307, 0.3081  # of all 47 million training pixels, in [0, 1]

# uint8 image tensors (one, or a whole batch) -> normalised float32
TO_FLOAT = v2.Compose(
    [
        v2.ToDtype(torch.float32, scale=True),  # 0..255 -> 0.0..1.0
        v2.Normalize((MEAN,), (STD,)),  # (x - mean) / std: mean 0, std 1
    ]
)
# what the dataset applies to each image
TRANSFORM = v2.Compose(
    [
        v2.ToImage(),  # PIL image 28x28 -> uint8 tensor 1x28x28, channels first
        TO_FLOAT,
    ]
)


def pick_device():
    """The machine's accelerator (CUDA, MPS, XPU...) if usable, else the CPU."""
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    return accelerator if accelerator is not None else torch.device("cpu")


# --8<-- [end:setup]


# --8<-- [start:load]
import gzip
import os
import shutil
from pathlib import Path

from torchvision.datasets import MNIST

FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
HOW_TO_GET_MNIST = (
    "\nPass download=True (or --download) to fetch the 4 files (11 MB), or,\n"
    "offline, copy the four original .gz files (train-images-idx3-ubyte.gz,\n"
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,\n"
    "t10k-labels-idx1-ubyte.gz) into <root>/MNIST/raw/."
)


class MnistNotFoundError(FileNotFoundError):
    """The MNIST files are not there, and were not (or could not be) downloaded."""


def load_mnist(root, train, download=False):
    """The training (60,000) or test (10,000) set: (image tensor, label) pairs."""
    raw = Path(root) / "MNIST" / "raw"
    extract_gzipped(raw)  # the .gz files are enough: unpack them once
    if download and not all((raw / name).exists() for name in FILES):
        try:
            # 11 MB, from the mirrors torchvision knows
            MNIST(root, train=train, download=True)
        except Exception as error:  # offline: a DNS or HTTP error, within seconds
            raise MnistNotFoundError(
                f"downloading MNIST into {raw} failed: {error}{HOW_TO_GET_MNIST}"
            ) from error
    missing = [name for name in FILES if not (raw / name).exists()]
    if missing:
        listed = "".join(f"\n  {name}" for name in missing)
        raise MnistNotFoundError(
            f"MNIST not found: {raw} lacks{listed}{HOW_TO_GET_MNIST}"
        )
    return MNIST(root, train=train, download=False, transform=TRANSFORM)


def extract_gzipped(raw):
    """Unpack each original .gz file once, atomically (as torchvision does)."""
    for name in FILES:
        target, packed = raw / name, raw / f"{name}.gz"
        if not target.exists() and packed.exists():
            partial = raw / f".{name}.partial"
            with gzip.open(packed, "rb") as source, open(partial, "wb") as sink:
                shutil.copyfileobj(source, sink)
            os.replace(partial, target)  # never a half-file under the real name


# --8<-- [end:load]


# --8<-- [start:arguments]
import argparse


def parse_args(argv=None):
    """The script's options: from a list, or (None) from the command line."""
    parser = argparse.ArgumentParser(
        description="Train, evaluate and save the MNIST classifier."
    )
    add = parser.add_argument
    add("--data-root", default="data", help="folder holding MNIST/raw")
    add("--download", action="store_true", help="download the files if missing")
    add("--epochs", type=int, default=6)
    add("--batch-size", type=int, default=128)
    add("--lr", type=float, default=3e-3, help="peak one-cycle learning rate")
    add("--hidden", type=int, nargs="+", default=[128], help="hidden widths")
    add("--val-size", type=int, default=5000, help="images held out to validate")
    add("--split-seed", type=int, default=0, help="seed of the validation split")
    add("--seed", type=int, default=0, help="seed of the weights and batch order")
    add("--save", default="mnist_mlp.pt", help="where to save the weights")
    add("--device", default=None, help="cpu, cuda, mps... (default: the best)")
    return parser.parse_args(argv)


# --8<-- [end:arguments]


# --8<-- [start:preload]
import torch


def preload(dataset_or_root, train, device="cpu"):
    """A whole split as one normalised float32 tensor (N x 784), and its labels."""
    if isinstance(dataset_or_root, MNIST):
        dataset = dataset_or_root
    else:
        dataset = load_mnist(dataset_or_root, train)
    pixels = dataset.data.to(device).unsqueeze(1)  # uint8 N x 1 x 28 x 28: no PIL
    images = TO_FLOAT(pixels).reshape(len(pixels), 784)  # the transform, batched
    return images.contiguous(), dataset.targets.to(device, torch.int64)


# --8<-- [end:preload]


# --8<-- [start:split]
import torch


def split_indices(n, n_val, seed):
    """A seeded train/validation split: the indices random_split picks."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[: n - n_val], order[n - n_val :]


def batches(images, labels, batch_size, generator, shuffle=True):
    """(images, labels) batches of preloaded tensors; a new order per call."""
    n = len(labels)
    if shuffle:
        order = torch.randperm(n, generator=generator, device=generator.device)
        order = order.to(labels.device)
    for start in range(0, n, batch_size):
        if shuffle:
            index = order[start : start + batch_size]
            yield images.index_select(0, index), labels.index_select(0, index)
        else:
            end = start + batch_size
            yield images[start:end], labels[start:end]


# --8<-- [end:split]


# --8<-- [start:model]
import torch
from torch import nn


def build_model(hidden=(128,)):
    """784 pixels -> hidden ReLU layers -> 10 logits, one score per digit."""
    layers, width = [nn.Flatten()], 784  # N x 1 x 28 x 28 (or N x 784) -> N x 784
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, 10))  # no softmax: the loss takes logits
    return nn.Sequential(*layers)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


# --8<-- [end:model]


# --8<-- [start:flops]
from torch import nn


def training_flops(model):
    """FLOPs of one training step per image, layer by layer (matmuls only).

    A Linear layer of in x out weights costs 2*in*out FLOPs (a multiply and an
    add per weight) for the forward pass, as much for the gradient of its
    weights, and as much again for the gradient of its input, which the first
    layer skips: nothing needs a gradient with respect to the pixels.
    """
    linears = [layer for layer in model.modules() if isinstance(layer, nn.Linear)]
    rows = []
    for number, layer in enumerate(linears):
        forward = 2 * layer.in_features * layer.out_features
        shape = f"{layer.in_features}x{layer.out_features}"
        input_grad = 0 if number == 0 else forward
        rows.append(
            {
                "layer": shape,
                "forward": forward,
                "weight_grad": forward,
                "input_grad": input_grad,
            }
        )
    return rows


# --8<-- [end:flops]


# --8<-- [start:train]
import os
import sys
import time

import torch
from torch import nn
from tqdm.auto import tqdm


def make_optimizer(model, lr, weight_decay=0.01):
    """AdamW, with the fused kernel (one call updates every parameter) if any."""
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=weight_decay, fused=fused
    )


def show_progress():
    """A progress bar for a person watching: not into a file, a pipe or CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def train_epoch(
    model,
    batch_iterable,
    optimizer,
    scheduler=None,
    loss_fn=None,
    augment=None,
    device=None,
    progress=False,
):
    """One pass over the batches; returns the mean training loss of the epoch."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.train()  # training behaviour for dropout (and batch norm, if any)
    total, count = 0.0, 0
    for x, y in tqdm(batch_iterable, leave=False, disable=not progress):
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
        total = total + loss.detach() * len(y)  # a tensor: no .item(), no wait
        count += len(y)
    return float(total) / count  # one synchronisation per epoch


def fit(
    model,
    train,
    val,
    *,
    epochs,
    batch_size=128,
    max_lr=3e-3,
    weight_decay=0.01,
    label_smoothing=0.0,
    augment=None,
    seed=0,
    progress=False,
    on_epoch=None,
):
    """AdamW + one-cycle on preloaded (images, labels); validate every epoch."""
    images, labels = train
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model, max_lr, weight_decay)
    steps = (len(labels) + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=epochs * steps
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    history = {"train_loss": [], "val_accuracy": [], "epoch_seconds": []}
    for epoch in range(epochs):
        start = time.perf_counter()
        loss = train_epoch(
            model,
            batches(images, labels, batch_size, generator),
            optimizer,
            scheduler,
            loss_fn,
            augment,
            progress=progress,
        )
        history["epoch_seconds"].append(time.perf_counter() - start)  # training
        history["train_loss"].append(loss)
        history["val_accuracy"].append(evaluate(model, *val))
        if on_epoch is not None:
            on_epoch(epoch, history)
    return history


# --8<-- [end:train]


# --8<-- [start:evaluate]
import torch


def predict_proba(model, images, batch_size=10_000):
    """Class probabilities (N x 10): softmax of the logits, without autograd."""
    model.eval()  # dropout off (and batch norm on its running statistics)
    with torch.inference_mode():  # no graph, no saved activations
        chunks = [
            model(images[i : i + batch_size]).softmax(dim=1)
            for i in range(0, len(images), batch_size)
        ]
    return torch.cat(chunks)


def evaluate(model, images, labels, batch_size=10_000):
    """Accuracy: the fraction of images whose highest-scoring class is the label."""
    predicted = predict_proba(model, images, batch_size).argmax(dim=1)
    return (predicted == labels).float().mean().item()


def confusion_matrix(predicted, labels, num_classes=10):
    """counts[true, predicted]: the diagonal holds the correct answers."""
    flat = labels.to(torch.int64) * num_classes + predicted.to(torch.int64)
    counts = torch.bincount(flat, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


# --8<-- [end:evaluate]


# --8<-- [start:save]
import os
import secrets
import tempfile
from pathlib import Path

import torch


def save_state_dict_atomic(model, path):
    """Save the weights to a temporary file next to ``path``, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    # a new file, with the permissions open() gives (mkstemp's are 0600)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    handle = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(model.state_dict(), file)
            file.flush()
            os.fsync(file.fileno())  # on disk before the rename makes it visible
        os.replace(temporary, path)  # atomic: the old file or the new, never half
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable: sync the folder
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path


def load_model(path, hidden=None, device="cpu"):
    """Rebuild the network, load saved weights (tensors only: no pickled code)."""
    state = torch.load(path, map_location=device, weights_only=True)
    if hidden is None:  # read the hidden widths off the saved weight shapes
        widths = [w.shape[0] for key, w in state.items() if key.endswith("weight")]
        hidden = tuple(widths[:-1])
    model = build_model(hidden).to(device)
    model.load_state_dict(state)  # strict: a missing or extra tensor is an error
    return model.eval()


# --8<-- [end:save]


# --8<-- [start:png]
from PIL import Image


def load_png(path):
    """A 28x28 digit image file, preprocessed like the training data: 1x1x28x28."""
    with Image.open(path) as image:  # closed again, even when we raise
        if image.size != (28, 28):
            raise ValueError(
                f"{path}: the image is {image.size[0]}x{image.size[1]} pixels;\n"
                "the model reads 28x28 MNIST-style digits (white on black,\n"
                "centred in a 20x20 box). Crop and resize it to 28x28 first."
            )
        gray = image.convert("L")  # RGB, palette...: keep the brightness
    return TRANSFORM(gray).unsqueeze(0)  # the same transform as training


# --8<-- [end:png]


# --8<-- [start:further]
import torch


def random_shift(images, max_shift=2, generator=None):
    """Move each image (N x 784) by up to max_shift pixels in x and in y."""
    n, device, side = len(images), images.device, 28 + 2 * max_shift
    black = -MEAN / STD
    padded = torch.full((n, side, side), black, dtype=images.dtype, device=device)
    inner = slice(max_shift, max_shift + 28)
    padded[:, inner, inner] = images.reshape(n, 28, 28)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator)
    offsets = offsets.to(device)
    rows = (offsets[0] + torch.arange(28, device=device)).unsqueeze(2)  # n x 28 x 1
    cols = (offsets[1] + torch.arange(28, device=device)).unsqueeze(1)  # n x 1 x 28
    picked = padded[torch.arange(n, device=device).view(n, 1, 1), rows, cols]
    return picked.reshape(n, 784)


FURTHER = {
    "hidden": (1024,),
    "epochs": 8,
    "batch_size": 256,
    "max_lr": 2e-3,
    "label_smoothing": 0.1,
    "max_shift": 2,
}


def train_further(train, val, seed=0, config=FURTHER):
    """A wider network, label smoothing, random shifts of the training batches."""
    torch.manual_seed(seed)
    model = build_model(config["hidden"]).to(train[0].device)
    shift_generator = torch.Generator().manual_seed(seed)

    def augment(x):
        return random_shift(x, config["max_shift"], shift_generator)

    history = fit(
        model,
        train,
        val,
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        max_lr=config["max_lr"],
        label_smoothing=config["label_smoothing"],
        augment=augment,
        seed=seed,
    )
    return model, history


# --8<-- [end:further]


# What the page runs, in page order, at module level as on the page. This
# module's __main__ is its program (main), so these run under their own name:
# runpy.run_module("snippets.mnist", run_name="__page__") prints the page.
if __name__ == "__page__":
    # --8<-- [start:setup-demo]
    print("device:", pick_device())
    black, white = (0 - MEAN) / STD, (1 - MEAN) / STD
    print(f"a black pixel becomes {black:.4f} and a white one {white:.4f}")
    # --8<-- [end:setup-demo]

    # --8<-- [start:missing]
    try:
        load_mnist("no-such-folder", train=True)
    except MnistNotFoundError as error:
        print(type(error).__name__ + ":", error)
    # --8<-- [end:missing]

    # --8<-- [start:arguments-demo]
    # mnist.py passes its command line; a notebook has none: pass a list
    args = parse_args(["--data-root", "data", "--download"])
    print(f"MNIST files in {args.data_root}/MNIST/raw; download: {args.download}")
    print(f"{args.epochs} epochs, batch {args.batch_size}, hidden {args.hidden}")
    # --8<-- [end:arguments-demo]

    # --8<-- [start:preload-demo]
    # The batched transform against the per-image one: identical, bit for bit.
    generator = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 256, (3, 28, 28), generator=generator).byte()
    pil_images = [v2.functional.to_pil_image(digit) for digit in digits]
    one_by_one = torch.stack([TRANSFORM(im).reshape(784) for im in pil_images])
    all_at_once = TO_FLOAT(digits.unsqueeze(1)).reshape(3, 784)
    same = torch.equal(one_by_one, all_at_once)
    print("identical to the per-image transform:", same)
    # --8<-- [end:preload-demo]

    # --8<-- [start:split-demo]
    demo_images, demo_labels = torch.randn(10, 784), torch.arange(10)
    demo_generator = torch.Generator().manual_seed(0)
    for x, y in batches(demo_images, demo_labels, 4, demo_generator):
        print(tuple(x.shape), y.tolist())
    # --8<-- [end:split-demo]

    # --8<-- [start:model-demo]
    torch.manual_seed(0)
    model = build_model(hidden=(128,))
    print(model)
    print("parameters:", count_parameters(model), "= 784*128 + 128 + 128*10 + 10")
    deeper = count_parameters(build_model(hidden=(256, 128)))
    print("784-256-128-10:", deeper, "parameters")
    print("logits for 2 images:", tuple(model(torch.randn(2, 1, 28, 28)).shape))
    # --8<-- [end:model-demo]

    # --8<-- [start:evaluate-demo]
    predicted, labels = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2])
    print(confusion_matrix(predicted, labels, num_classes=3))
    # --8<-- [end:evaluate-demo]

    # --8<-- [start:save-demo]
    with tempfile.TemporaryDirectory() as folder:
        saved = save_state_dict_atomic(model, Path(folder) / "mnist_mlp.pt")
        files = sorted(p.name for p in Path(folder).iterdir())
        print(files, saved.stat().st_size, "bytes")
        device = next(model.parameters()).device  # reload it where the model is
        reloaded = load_model(saved, device=device)
        probe = torch.randn(5, 784, generator=torch.Generator().manual_seed(1))
        probe = probe.to(device)
        before, after = predict_proba(model, probe), predict_proba(reloaded, probe)
        print("identical predictions:", torch.equal(before, after))
    # --8<-- [end:save-demo]

    # --8<-- [start:png-demo]
    with tempfile.TemporaryDirectory() as folder:
        Image.new("RGB", (28, 28)).save(Path(folder) / "rgb.png")
        print("RGB 28x28 ->", tuple(load_png(Path(folder) / "rgb.png").shape))
        Image.new("L", (64, 64)).save(Path(folder) / "big.png")
        try:
            load_png(Path(folder) / "big.png")
        except ValueError as error:
            print("ValueError:", str(error).split(": ", 1)[1])  # without the path
    # --8<-- [end:png-demo]

    # --8<-- [start:flops-demo]
    rows = training_flops(build_model(hidden=(128,)))
    print(f"{'layer':9}{'forward':>10}{'weight grad':>13}{'input grad':>12}")
    for row in rows:
        print(
            f"{row['layer']:9}{row['forward']:>10,}{row['weight_grad']:>13,}"
            f"{row['input_grad']:>12,}"
        )
    per_image = sum(r["forward"] + r["weight_grad"] + r["input_grad"] for r in rows)
    print(
        f"per image: {per_image:,} FLOPs; per epoch of 60,000 images: "
        f"{per_image * 60_000 / 1e9:.1f} GFLOP"
    )
    print(f"(6 x parameters would say {6 * count_parameters(model):,} per image)")
    # --8<-- [end:flops-demo]

    # --8<-- [start:exercise-loss]
    logits, target = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([2])
    cross_entropy = nn.CrossEntropyLoss()(logits, target)
    nll_of_log_softmax = nn.NLLLoss()(logits.log_softmax(dim=1), target)
    print(cross_entropy.item(), nll_of_log_softmax.item())

    confident = torch.tensor([[200.0, 0.0]])  # sure of class 0; the label is 1
    label = torch.tensor([1])
    fused = nn.NLLLoss()(confident.log_softmax(dim=1), label)
    separate = nn.NLLLoss()(confident.softmax(dim=1).log(), label)
    print("log_softmax:", fused.item())
    print("log(softmax):", separate.item())
    # --8<-- [end:exercise-loss]


def main(argv=None):
    """Train, evaluate and save the MNIST classifier; returns the results."""
    args = parse_args(argv)

    # --8<-- [start:main-data]
    from torch.utils.data import DataLoader, random_split

    device = torch.device(args.device) if args.device else pick_device()
    train_set = load_mnist(args.data_root, train=True, download=args.download)
    test_set = load_mnist(args.data_root, train=False, download=args.download)
    image, label = train_set[0]  # one sample: PIL image -> TRANSFORM -> tensor
    print(
        f"{len(train_set)} training and {len(test_set)} test images; "
        f"sample: {tuple(image.shape)} {image.dtype}, label {label}"
    )

    # hold out a validation set: a seeded generator gives the same split every run
    if not 0 < args.val_size < len(train_set):
        raise SystemExit(f"--val-size must be between 1 and {len(train_set) - 1}")
    n_train = len(train_set) - args.val_size
    train_part, val_part = random_split(
        train_set,
        [n_train, args.val_size],
        generator=torch.Generator().manual_seed(args.split_seed),
    )
    loader = DataLoader(
        train_part,
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    images, labels = next(iter(loader))
    print(
        f"a batch: images {tuple(images.shape)} {images.dtype}, "
        f"labels {tuple(labels.shape)} {labels.dtype}"
    )
    # --8<-- [end:main-data]

    # --8<-- [start:main-preload]
    all_images, all_labels = preload(train_set, train=True, device=device)
    train_index, val_index = split_indices(
        len(train_set), args.val_size, seed=args.split_seed
    )
    assert train_index.tolist() == train_part.indices  # random_split's split
    train_index, val_index = train_index.to(device), val_index.to(device)
    train_x, train_y = all_images[train_index], all_labels[train_index]
    val_x, val_y = all_images[val_index], all_labels[val_index]
    test_x, test_y = preload(test_set, train=False, device=device)
    print(
        f"preloaded on {device}: train {tuple(train_x.shape)}, "
        f"validation {tuple(val_x.shape)}, test {tuple(test_x.shape)}"
    )
    # --8<-- [end:main-preload]

    # --8<-- [start:main-train]
    torch.manual_seed(args.seed)  # the initial weights
    model = build_model(hidden=tuple(args.hidden)).to(device)
    print(f"{count_parameters(model):,} parameters")

    def report(epoch, history):
        print(
            f"epoch {epoch + 1}: train loss {history['train_loss'][-1]:.4f}, "
            f"validation accuracy {history['val_accuracy'][-1]:.2%} "
            f"({history['epoch_seconds'][-1]:.2f} s)"
        )

    history = fit(
        model,
        (train_x, train_y),
        (val_x, val_y),
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_lr=args.lr,
        seed=args.seed,
        progress=show_progress(),
        on_epoch=report,
    )
    # --8<-- [end:main-train]

    # --8<-- [start:main-test]
    probabilities = predict_proba(model, test_x)
    predicted = probabilities.argmax(dim=1)
    test_accuracy = (predicted == test_y).float().mean().item()
    counts = confusion_matrix(predicted, test_y).cpu()
    per_class = counts.diag() / counts.sum(dim=1)  # correct / images of that digit
    print(f"test accuracy: {test_accuracy:.2%}")
    per_digit = [f"{d}:{accuracy:.1%}" for d, accuracy in enumerate(per_class)]
    print("per digit:", " ".join(per_digit))
    # --8<-- [end:main-test]

    # --8<-- [start:main-save]
    path = save_state_dict_atomic(model, args.save)
    reloaded = load_model(path, device=device)
    same = torch.equal(predict_proba(reloaded, test_x), probabilities)
    print(
        f"saved {path} ({path.stat().st_size:,} bytes); "
        f"the reloaded model gives identical predictions: {same}"
    )

    # one image from a file, through the same preprocessing as the training data
    png = Path(path).with_suffix(".sample.png")
    v2.functional.to_pil_image(test_set.data[0]).save(png)  # test image 0
    png_probabilities = predict_proba(reloaded, load_png(png).to(device))[0]
    print(
        f"{png.name}: predicted {png_probabilities.argmax().item()} "
        f"(probability {png_probabilities.max().item():.3f}), "
        f"label {test_set.targets[0].item()}"
    )
    # --8<-- [end:main-save]
    return {
        "history": history,
        "test_accuracy": test_accuracy,
        "per_class": per_class.tolist(),
        "confusion": counts.tolist(),
        "model": model,
        "path": path,
        "reloaded_identical": same,
        "png": png,
        "png_prediction": png_probabilities.argmax().item(),
        "val_index": val_index.tolist(),
    }


if __name__ == "__main__":
    main()
