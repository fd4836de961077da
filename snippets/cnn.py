"""Convolutional networks and transfer learning: the code of docs/cnn.md.

A convolution by hand and with F.conv2d, output sizes, receptive fields, the
cost of weight sharing, the layers of a CNN, the chapter's MNIST CNN (it takes
the MNIST chapter's preloaded N x 784 tensors as they are), per-image
augmentation on tensors, strict checkpoints and a check of the inputs'
preprocessing, ResNet's basic block and pooled head, batch norm when
fine-tuning, and transfer learning (torchvision's ResNet-18; the MNIST CNN
reused for other digits by four methods). Definitions are at module level
(benchmarks/cnn.py trains and records them); what the page runs is at the end,
at module level.
"""

# --8<-- [start:by-hand]
import torch


def conv2d_by_hand(image, kernel):
    """Slide a kernel over a 2-D image (no padding, stride 1): at each position,
    the sum of the products of the kernel's weights and the pixels under it."""
    kh, kw = kernel.shape
    rows, cols = image.shape[0] - kh + 1, image.shape[1] - kw + 1
    out = torch.zeros(rows, cols, dtype=image.dtype, device=image.device)
    for i in range(kh):  # one shifted copy of the image per kernel weight
        for j in range(kw):
            out += kernel[i, j] * image[i : i + rows, j : j + cols]
    return out


# --8<-- [end:by-hand]


# --8<-- [start:output-size]
def output_size(size, kernel, padding=0, stride=1, dilation=1):
    """The length of a convolution's (or pooling's) output along one dimension."""
    span = dilation * (kernel - 1) + 1  # how far the kernel reaches
    return (size + 2 * padding - span) // stride + 1


# --8<-- [end:output-size]


# --8<-- [start:receptive-field]
def receptive_fields(layers):
    """For (name, kernel, stride) layers in order: how many input pixels (along
    one side) each layer's output sees."""
    field, jump, rows = 1, 1, []
    for name, kernel, stride in layers:
        # the kernel spans `kernel` outputs of the previous layer, `jump` apart
        field += (kernel - 1) * jump
        jump *= stride  # input pixels between neighbouring outputs
        rows.append((name, field))
    return rows


# --8<-- [end:receptive-field]


# --8<-- [start:model]
from torch import nn


class DigitImages(nn.Module):
    """The CNN's first layer: N x 784 rows of pixels (the MNIST chapter's
    preloaded tensors) or N x 1 x 28 x 28 images in, N x 1 x 28 x 28 out. It
    checks shapes only: a shape is known without reading the values, so the
    check costs nothing (check_digits, below, reads the values, once per input)."""

    def forward(self, x):
        if x.ndim == 2 and x.shape[1] == 784:
            x = x.reshape(len(x), 1, 28, 28)
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(
                f"the CNN reads N x 1 x 28 x 28 digits (or N x 784 pixels); "
                f"got {tuple(x.shape)}: {shape_hint(x.shape)}"
            )
        return x


def shape_hint(shape):
    """What to do with a tensor of the wrong shape."""
    if tuple(shape[-2:]) == (28, 28) and len(shape) == 3:
        if shape[0] == 1:
            return "one image without its batch dimension: x.unsqueeze(0)"
        return "no channel dimension: x.unsqueeze(1)"
    if len(shape) == 4 and shape[1] == 3 and tuple(shape[-2:]) == (28, 28):
        return "a colour image: convert it to one gray channel"
    return "resize it to 28 x 28"


def conv_block(in_channels, out_channels, kernel_size=5):
    """Convolution, batch norm, ReLU, then halve the height and the width."""
    return nn.Sequential(
        # no bias: the batch norm's shift does its job
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


def build_cnn(channels=(16, 32), hidden=0, dropout=0.0):
    """An MNIST classifier: conv blocks, then (optionally a hidden layer and)
    one linear layer to 10 logits."""
    blocks, width = [], 1
    for out_channels in channels:
        blocks.append(conv_block(width, out_channels))
        width = out_channels
    side = 28 // 2 ** len(channels)  # each block halves the side: 28 -> 14 -> 7
    features = width * side * side
    head = [nn.Flatten()]
    if hidden:
        head += [nn.Linear(features, hidden), nn.ReLU()]
        features = hidden
    head += [nn.Dropout(dropout), nn.Linear(features, 10)]
    return nn.Sequential(DigitImages(), *blocks, *head)


# --8<-- [end:model]


# --8<-- [start:flops]
import torch
from torch import nn


def training_flops(model, example):
    """FLOPs per image of one training step, layer by layer (convolutions and
    linear layers): the forward pass, the weight gradient, and the input gradient,
    which the first layer skips (nothing needs the gradient of the pixels)."""
    layers = [
        (name, layer)
        for name, layer in model.named_modules()
        if isinstance(layer, (nn.Conv2d, nn.Linear))
    ]
    outputs = {}
    hooks = [
        layer.register_forward_hook(
            lambda module, args, out, name=name: outputs.__setitem__(name, out[0])
        )
        for name, layer in layers
    ]
    was_training = model.training
    with torch.no_grad():
        model.eval()(example[:1])  # one image, to learn every layer's output size
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    rows = []
    for number, (name, layer) in enumerate(layers):
        if isinstance(layer, nn.Conv2d):  # per output value: in/groups x kh x kw
            kh, kw = layer.kernel_size
            per_output = layer.in_channels // layer.groups * kh * kw
        else:
            per_output = layer.in_features
        forward = 2 * outputs[name].numel() * per_output  # a multiply and an add
        if isinstance(layer, nn.Conv2d):
            shape = f"{layer.in_channels}->{layer.out_channels}, {kh}x{kw}"
        else:
            shape = f"{layer.in_features}->{layer.out_features}"
        input_grad = 0 if number == 0 else forward
        counts = {
            "forward": forward,
            "weight_grad": forward,
            "input_grad": input_grad,
        }
        rows.append({"layer": shape, "kind": type(layer).__name__, **counts})
    return rows


# --8<-- [end:flops]


# --8<-- [start:augment]
import math

import torch
import torch.nn.functional as F

BLACK = -0.1307 / 0.3081  # a black pixel, normalised like MNIST


def random_affine(
    images, degrees=10.0, shift=0.1, scale=(0.9, 1.1), generator=None
):
    """A different random rotation, shift and zoom for every image of a batch
    (N x 784 or N x 1 x 28 x 28): v2's random transforms, called on a batch, draw
    one set of parameters for all of it. The random numbers are drawn on the
    images' device (a generator must be on it too): drawn on the CPU and copied,
    they would make a GPU wait for the copy at every batch."""
    x = images.reshape(len(images), 1, 28, 28)

    def uniform(low, high):
        drawn = torch.empty(len(x), device=x.device, dtype=x.dtype)
        return drawn.uniform_(low, high, generator=generator)

    angle = uniform(-degrees, degrees) * math.pi / 180
    zoom = uniform(*scale)
    dx, dy = uniform(-shift, shift) * 2, uniform(-shift, shift) * 2  # sides span 2
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, dx], 1), torch.stack([sin, cos, dy], 1)], 1
    )  # N x 2 x 3
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # grid_sample fills what comes in from outside with 0: shift so that 0 is black
    moved = F.grid_sample(x - BLACK, grid, align_corners=False) + BLACK
    return moved.reshape(images.shape)


# --8<-- [end:augment]


# --8<-- [start:choose]
import statistics

CHOICE_SEEDS, SEEDS = (0, 1), (2, 3, 4, 5, 6)  # the test runs' seeds are fresh


def choose_and_test(candidates, train_run, test_score, time_limit=None, best=max):
    """Choose a recipe on validation, then read the test set once per run.

    candidates: {name: recipe}; train_run(recipe, seed): a dict with the trained
    "model", its final "validation" score and its "train_seconds". Every
    candidate runs with CHOICE_SEEDS; the best mean validation score (best: max,
    or min for a loss) among those whose runs all fit in time_limit seconds
    wins. It runs again with SEEDS, fresh ones (the seeds that chose it would
    flatter it), and each of those runs meets the test set once, at the end."""
    tried = {
        name: [train_run(recipe, seed) for seed in CHOICE_SEEDS]
        for name, recipe in candidates.items()
    }

    def mean_validation(name):
        return statistics.mean(run["validation"] for run in tried[name])

    def fits(name):
        limit = time_limit or float("inf")
        return all(run["train_seconds"] <= limit for run in tried[name])

    chosen = best(
        [n for n in candidates if fits(n)] or candidates, key=mean_validation
    )
    runs = [train_run(candidates[chosen], seed) for seed in SEEDS]
    for run in runs:
        run["test"] = test_score(run["model"])  # once per run, at the end
    tests = [run["test"] for run in runs]
    return {
        "chosen": chosen,
        "config": candidates[chosen],
        "runs": runs,
        "test": {
            "values": tests,
            "mean": statistics.mean(tests),
            "min": min(tests),
            "max": max(tests),
            "std": statistics.stdev(tests),  # how far one run typically lands
        },
        "time_limit": time_limit,
        "candidates": [  # in the order tried; every run kept, without its model
            {
                "name": name,
                "config": candidates[name],
                "validation": mean_validation(name),
                "within_time_limit": fits(name),
                "runs": [
                    {k: v for k, v in run.items() if k != "model"}
                    for run in tried[name]
                ],
            }
            for name in candidates
        ],
    }


# --8<-- [end:choose]


# --8<-- [start:checkpoint]
import torch


def load_cnn(path, channels=(16, 32), hidden=0):
    """The CNN with the weights saved in ``path`` (tensors only), in eval mode."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_cnn(channels, hidden)
    try:  # strict, the default: every tensor present, none extra, same shapes
        model.load_state_dict(state)
    except RuntimeError as error:  # its message lists what differs
        differs = " ".join(str(error).split())  # on one line
        raise ValueError(
            f"{path} is not a checkpoint of this CNN: {differs}"
        ) from error
    return model.eval()


def check_digits(images):
    """Refuse images not preprocessed like MNIST's training digits (white on
    black, normalised): once per input, where the data comes in, not in forward
    (a check of the values would read them back from the GPU at every call)."""
    background = images.flatten(1).median(dim=1).values  # most pixels: background
    if images.amax() > 10:
        problem = "pixel values up to 255: divide by 255"
    elif background.amax() > 0.5:
        problem = "a white background: MNIST digits are white on black, invert"
    elif (background - BLACK).abs().amax() > 0.2:
        worst = background[(background - BLACK).abs().argmax()]
        problem = f"a background of {worst:.2f}, not {BLACK:.2f}"
    else:
        return images
    raise ValueError(
        f"{problem}, then normalise as in training (minus 0.1307, over 0.3081)"
    )


# --8<-- [end:checkpoint]


# --8<-- [start:residual]
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3 x 3 convolutions with batch norm, and the
    block's input added to their output (through a 1 x 1 convolution where the
    block changes the number of channels or the size)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:  # make the shapes match
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + shortcut)  # the convolutions learn a correction


def pooled_head(channels, classes):
    """Global average pooling (the mean of each feature map), then one linear
    layer: the same head for any image size."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)
    )


# --8<-- [end:residual]


# --8<-- [start:freeze-batch-norm]
from torch import nn


def freeze_batch_norm(model):
    """Keep every batch norm layer on its pretrained statistics while the rest
    trains: eval mode, and no gradient for its scale and shift. model.train()
    switches them back: call this after every model.train()."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval().requires_grad_(False)
    return model


# --8<-- [end:freeze-batch-norm]


# --8<-- [start:digits-as-mnist]
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits


def digits_as_mnist():
    """scikit-learn's 1,797 8x8 digits, made to look like MNIST: ink 1 on 0,
    resized to 20 x 20, centred in 28 x 28, normalised with MNIST's statistics."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4))  # a 4-pixel black border, as MNIST has
    return (x - 0.1307) / 0.3081, torch.tensor(digits.target)


# --8<-- [end:digits-as-mnist]


# --8<-- [start:transfer]
import copy

import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("frozen", "fine-tune, one rate", "head, then all", "scratch")


def train_full_batch(model, images, labels, groups, steps, frozen_norm=False):
    """AdamW on all the images at once, ``steps`` times; ``groups`` is a list
    of (parameters, learning rate); frozen_norm: batch norm stays on its
    running statistics (freeze_batch_norm, after train())."""
    optimizer = torch.optim.AdamW(
        [{"params": list(params), "lr": lr} for params, lr in groups],
        weight_decay=0.01,
    )
    model.train()
    if frozen_norm:
        freeze_batch_norm(model)
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def transfer(pretrained, method, images, labels, lr, steps=150, seed=0):
    """A CNN for new digits from a few labelled ``images``, by one of METHODS:
    'frozen' trains a new last layer on the pretrained features; 'fine-tune,
    one rate' trains every layer at ``lr`` from a random new head; 'head, then
    all' trains the head alone for half the steps, then every layer, the
    pretrained ones at lr / 10, batch norm frozen; 'scratch' trains the
    architecture from random weights. The seed sets the new weights."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: use one of {METHODS}")
    torch.manual_seed(seed)
    if method == "scratch":
        model = build_cnn()
        return train_full_batch(
            model, images, labels, [(model.parameters(), lr)], steps
        )
    model = copy.deepcopy(pretrained).eval()
    backbone, head = model[:-1], nn.Linear(model[-1].in_features, 10)
    model[-1] = head
    if method == "fine-tune, one rate":
        return train_full_batch(
            model, images, labels, [(model.parameters(), lr)], steps
        )
    head_steps = steps if method == "frozen" else steps // 2
    with torch.no_grad():  # the backbone does not change: its features, once
        features = backbone(images)
    train_full_batch(head, features, labels, [(head.parameters(), lr)], head_steps)
    if method == "frozen":
        return model.requires_grad_(False).eval()
    groups = [(backbone.parameters(), lr / 10), (head.parameters(), lr)]
    return train_full_batch(  # batch norm keeps the pretrained statistics
        model, images, labels, groups, steps - head_steps, frozen_norm=True
    )


# --8<-- [end:transfer]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.cnn` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:digits-demo]
    import matplotlib.pyplot as plt

    images, labels = digits_as_mnist()
    print("images:", tuple(images.shape))
    print("per class:", labels.bincount().tolist())
    fig, axes = plt.subplots(1, 8, figsize=(8, 1.4))
    raw = load_digits().images
    for ax, small in zip(axes[::2], raw[10:14]):
        ax.imshow(small, cmap="gray")
    for ax, picture in zip(axes[1::2], images[10:14]):
        ax.imshow(picture[0].numpy(), cmap="gray")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(
        "UCI digits: 8 x 8 as shipped, and as the MNIST CNN will read them"
    )
    # --8<-- [end:digits-demo]

    # --8<-- [start:by-hand-demo]
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    images, labels = digits_as_mnist()  # real digits, 28 x 28
    image = images[0, 0]
    # Sobel: negative weights on the left, positive on the right
    vertical_edges = torch.tensor(
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
    )
    by_hand = conv2d_by_hand(image, vertical_edges)
    by_torch = F.conv2d(image[None, None], vertical_edges[None, None])[0, 0]
    print(tuple(image.shape), "->", tuple(by_hand.shape))
    print("same as F.conv2d:", torch.allclose(by_hand, by_torch, atol=1e-5))

    fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
    axes[0].imshow(image.numpy(), cmap="gray")
    axes[0].set_title(f"a {labels[0].item()}, 28 x 28")
    limit = by_hand.abs().max().item()  # white is 0: red positive, blue negative
    axes[1].imshow(by_hand.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[1].set_title("vertical edges, 26 x 26")
    for ax in axes:
        ax.axis("off")
    fig.suptitle("A 3 x 3 edge filter slid over a digit")
    # --8<-- [end:by-hand-demo]

    # --8<-- [start:output-size-demo]
    from torch import nn

    x = torch.zeros(1, 1, 28, 28)
    print("kernel padding stride dilation -> size   (nn.Conv2d gives)")
    for kernel, padding, stride, dilation in [
        (3, 0, 1, 1),
        (3, 1, 1, 1),
        (5, 2, 1, 1),
        (3, 1, 2, 1),
        (3, 2, 1, 2),
        (7, 3, 2, 1),
    ]:
        conv = nn.Conv2d(1, 1, kernel, stride, padding, dilation)
        size = output_size(28, kernel, padding, stride, dilation)
        print(
            f"{kernel:6} {padding:7} {stride:6} {dilation:8} -> {size:4}"
            f"   ({conv(x).shape[-1]})"
        )
    # --8<-- [end:output-size-demo]

    # --8<-- [start:channels]
    conv = nn.Conv2d(in_channels=1, out_channels=16, kernel_size=5, padding=2)
    print("weight:", tuple(conv.weight.shape), "| bias:", tuple(conv.bias.shape))
    maps = conv(images[:8])  # 8 digits in, 16 feature maps each out
    print("in:", tuple(images[:8].shape), "-> out:", tuple(maps.shape))
    pooled = nn.MaxPool2d(kernel_size=2)(maps)  # the largest of each 2 x 2 square
    print("after MaxPool2d(2):", tuple(pooled.shape))
    print(
        nn.MaxPool2d(2)(
            torch.tensor([[[[1.0, 2.0, 5.0, 0.0], [3.0, 4.0, 1.0, 1.0]]]])
        )
    )
    # --8<-- [end:channels]

    # --8<-- [start:receptive-field-demo]
    stack = [
        ("conv 5x5", 5, 1),
        ("pool 2x2", 2, 2),
        ("conv 5x5", 5, 1),
        ("pool 2x2", 2, 2),
        ("conv 5x5", 5, 1),
        ("pool 2x2", 2, 2),
    ]
    for name, field in receptive_fields(stack):
        print(f"after {name}: each output sees {field:2} x {field:2} input pixels")
    # --8<-- [end:receptive-field-demo]

    # --8<-- [start:sharing]
    conv = nn.Conv2d(1, 32, kernel_size=3, padding=1)  # 28x28 in, 32 x 28 x 28 out
    dense = nn.Linear(28 * 28, 32 * 28 * 28, bias=True)  # the same input and output
    conv_params = sum(p.numel() for p in conv.parameters())
    dense_params = sum(p.numel() for p in dense.parameters())
    conv_flops = 2 * 32 * 28 * 28 * (1 * 3 * 3)  # per output: 9 multiply-adds
    dense_flops = 2 * 784 * 32 * 28 * 28  # per output: 784 multiply-adds
    print(
        f"Conv2d(1, 32, 3): {conv_params:>10,} parameters, {conv_flops:>12,} FLOPs"
    )
    print(
        f"Linear(784, {32 * 784}): {dense_params:>10,} parameters, "
        f"{dense_flops:>12,} FLOPs"
    )
    print(
        f"the linear layer: {dense_params / conv_params:,.0f}x the parameters, "
        f"{dense_flops / conv_flops:.0f}x the FLOPs"
    )
    # --8<-- [end:sharing]

    # --8<-- [start:batch-norm]
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(3)
    batch = torch.randn(8, 3, 4, 4) * 5 + 2  # mean 2, std 5 in every channel
    out = norm(batch)  # training mode: this batch's statistics, per channel
    mean, std = out.mean().item(), out.std().item()
    print("train: output mean 0:", abs(mean) < 1e-6, f"| std {std:.2f}")
    # the running mean moved 10% of the way from 0 towards the batch mean, 2
    print("running mean after one batch:", norm.running_mean)
    unbiased = batch.var(dim=(0, 2, 3))  # divided by n - 1
    print(
        "running variance, 10% of the way to the unbiased one:",
        torch.allclose(norm.running_var, 0.9 * 1 + 0.1 * unbiased),
    )
    print(
        "learned per channel: scale",
        tuple(norm.weight.shape),
        "and shift",
        tuple(norm.bias.shape),
    )
    norm.eval()  # eval mode: the running statistics, the same for every batch
    print("eval: output mean", round(norm(batch).mean().item(), 2))

    drop = nn.Dropout(p=0.5)
    ones = torch.ones(8)
    print("dropout, train:", drop(ones).tolist())  # zeros, and the rest doubled
    print("dropout, eval: ", drop.eval()(ones).tolist())
    # --8<-- [end:batch-norm]

    # --8<-- [start:model-demo]
    torch.manual_seed(0)
    model = build_cnn()
    for name, layer in model.named_children():  # print(model), in shorter lines
        parts = layer if isinstance(layer, nn.Sequential) else [layer]
        print(name, " ".join(repr(part).split("(")[0] for part in parts))
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters")
    rows = images[:4].reshape(4, 784)  # the MNIST chapter's preloaded layout
    print("logits:", tuple(model(rows).shape), "from", tuple(rows.shape))
    x = images[:4]
    for layer in model[:4]:
        x = layer(x)
        print(f"{type(layer).__name__:12} -> {tuple(x.shape)}")
    # --8<-- [end:model-demo]

    # --8<-- [start:flops-demo]
    rows = training_flops(model, images[:1])
    header = ["layer", "kind", "forward", "weight grad", "input grad"]
    print(f"{header[0]:14}{header[1]:>7}" + "".join(f"{h:>12}" for h in header[2:]))
    for row in rows:
        counts = [row["forward"], row["weight_grad"], row["input_grad"]]
        print(
            f"{row['layer']:14}{row['kind']:>7}"
            + "".join(f"{c:>12,}" for c in counts)
        )
    per_image = sum(r["forward"] + r["weight_grad"] + r["input_grad"] for r in rows)
    print(
        f"per training image: {per_image / 1e6:.1f} MFLOP; "
        f"per epoch of 55,000: {per_image * 55_000 / 1e12:.2f} TFLOP"
    )
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # PyTorch's own count
        build_cnn()(images[:1]).sum().backward()  # a fresh CNN, one image
    print(
        "FlopCounterMode counts the same:", counter.get_total_flops() == per_image
    )
    # --8<-- [end:flops-demo]

    # --8<-- [start:augment-demo]
    generator = torch.Generator().manual_seed(0)
    shown = images[:6].repeat_interleave(3, dim=0)  # six digits, three times each
    moved = random_affine(shown, degrees=10, shift=0.1, generator=generator)
    fig, axes = plt.subplots(3, 6, figsize=(6, 3.2))
    for ax, picture in zip(axes.T.flat, moved):
        ax.imshow(picture[0].numpy(), cmap="gray")
        ax.axis("off")
    fig.suptitle("Each copy of a digit gets its own rotation, shift and zoom")
    blank = torch.full((4, 1, 28, 28), BLACK)  # what comes in from outside: black
    filled = random_affine(blank, degrees=10, shift=0.1, generator=generator)
    print("a black image stays black:", torch.allclose(filled, blank))
    # --8<-- [end:augment-demo]

    # --8<-- [start:checkpoint-demo]
    import tempfile
    import textwrap
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    torch.save(model.state_dict(), folder / "cnn.pt")
    reloaded = load_cnn(folder / "cnn.pt")
    same = torch.equal(reloaded(images[:5]), model.eval()(images[:5]))
    print("reloaded, same predictions:", same)

    mlp = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    torch.save(mlp.state_dict(), folder / "mlp.pt")  # the MNIST chapter's network
    pixels = images[:2] * 0.3081 + 0.1307  # two digits back in [0, 1]
    for attempt in [
        lambda: load_cnn(folder / "mlp.pt"),
        lambda: reloaded(torch.zeros(2, 1, 32, 32)),
        lambda: reloaded(torch.zeros(2, 3, 28, 28)),
        lambda: reloaded(images[0]),  # one image, 1 x 28 x 28
        lambda: check_digits(pixels * 255),  # raw pixels
        lambda: check_digits(pixels),  # not normalised
        lambda: check_digits((1 - pixels - 0.1307) / 0.3081),  # black on white
    ]:
        try:
            attempt()
        except ValueError as error:
            message = str(error).replace(str(folder), "...")
            print(textwrap.fill(f"ValueError: {message}", 80))
    print("MNIST-like digits pass:", check_digits(images) is images)
    # --8<-- [end:checkpoint-demo]

    # --8<-- [start:residual-demo]
    from torchvision.models import resnet18

    torch.manual_seed(0)
    resnet = resnet18(weights=None).eval()  # random weights: shapes and wiring
    block = BasicBlock(64, 128, stride=2).eval()
    block.load_state_dict(resnet.layer2[0].state_dict())  # the same names
    maps = torch.randn(2, 64, 56, 56)
    with torch.no_grad():
        same = torch.allclose(block(maps), resnet.layer2[0](maps), atol=1e-5)
        print("BasicBlock(64, 128, stride=2) equals resnet18.layer2[0]:", same)
        x = torch.randn(1, 3, 224, 224)  # one photo's size
        for name, layer in list(resnet.named_children())[:-2]:  # up to layer4
            x = layer(x)
            if name not in ("bn1", "relu"):
                print(f"{name:8} -> {tuple(x.shape)}")
        head = pooled_head(512, 1000).eval()
        head[-1].load_state_dict(resnet.fc.state_dict())
        expected = resnet.fc(resnet.avgpool(x).flatten(1))
        print("pooled_head equals avgpool + fc:", torch.allclose(head(x), expected))
        print("160 x 160 in:", tuple(resnet(torch.randn(1, 3, 160, 160)).shape))
        x = torch.randn(8, 64, 16, 16).relu()  # a block's input: after a ReLU
        for zero in (False, True):  # train mode: batch norm on batch statistics
            first = resnet18(weights=None, zero_init_residual=zero).layer1[0]
            f = first.bn2(first.conv2(first.relu(first.bn1(first.conv1(x)))))
            ratio = f.norm() / x.norm()
            print(f"zero_init_residual={zero}: |f(x)| / |x| = {ratio:.1f}")
    # --8<-- [end:residual-demo]

    # --8<-- [start:resnet]
    from torchvision.models import ResNet18_Weights, resnet18
    from torchvision.transforms import v2

    weights = ResNet18_Weights.DEFAULT  # the ImageNet weights' description
    preprocess = weights.transforms()  # resize, crop 224, ImageNet mean and std
    print(preprocess)
    augment = v2.Compose(  # for training: random crops and flips, same statistics
        [
            v2.ToImage(),  # a PIL image, or a uint8 or float tensor,
            v2.ToDtype(torch.float32, scale=True),  # to floats in [0, 1]
            v2.RandomResizedCrop(224),
            v2.RandomHorizontalFlip(),
            v2.Normalize(mean=preprocess.mean, std=preprocess.std),
        ]
    )
    model = resnet18(weights=None)  # this site cannot download weights: random ones
    model.requires_grad_(False)  # freeze the backbone
    model.fc = nn.Linear(model.fc.in_features, 10)  # a new head, trainable
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    total = sum(p.numel() for p in model.parameters())
    print(f"trainable: {sum(p.numel() for p in trainable):,} of {total:,}")

    photos = torch.rand(2, 3, 256, 320)  # stand-ins for two RGB photos in [0, 1]
    model.eval()  # the frozen backbone keeps its batch norm statistics
    batch = torch.stack([augment(photo) for photo in photos])  # one draw each
    loss = nn.functional.cross_entropy(model(batch), torch.tensor([3, 7]))
    loss.backward()
    optimizer.step()
    print(
        "gradients only in:",
        {
            n.split(".")[0]
            for n, p in model.named_parameters()
            if p.grad is not None
        },
    )

    model.requires_grad_(True)  # then fine-tune everything, the backbone slowly
    backbone = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    optimizer = torch.optim.AdamW(
        [
            {"params": backbone, "lr": 1e-5},
            {"params": model.fc.parameters(), "lr": 1e-3},
        ]
    )
    print("learning rates:", [group["lr"] for group in optimizer.param_groups])
    # --8<-- [end:resnet]

    # --8<-- [start:freeze-batch-norm-demo]
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(0)
    cnn = build_cnn()  # batch norm statistics start at mean 0, variance 1
    with torch.no_grad():  # no gradients, but batch norm still updates
        cnn.train()(images[:256])
    moved = cnn[1][1].running_mean.abs().sum() > 0
    print("a forward pass in train mode moved the running mean:", bool(moved))

    first_with = images[[0, 1]], images[[0, 2]]  # digit 0, two partners
    with torch.no_grad():
        a, b = (cnn.train()(pair)[0] for pair in first_with)
        print(
            "batch of 2, train mode, digit 0's logits change with its partner:",
            not torch.allclose(a, b),
        )
        freeze_batch_norm(cnn.train())  # after train(): running statistics
        a, b = (cnn(pair)[0] for pair in first_with)
        print("batch norm frozen, they do not:", torch.allclose(a, b))

    frozen = resnet18(weights=None, norm_layer=FrozenBatchNorm2d)
    frozen.load_state_dict(resnet.state_dict())  # strict: every tensor matches
    photo = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        same = torch.allclose(
            frozen.train()(photo), resnet.eval()(photo), atol=1e-5
        )
    print("FrozenBatchNorm2d, train mode = BatchNorm2d, eval mode:", same)
    left = sum(p.numel() for p in frozen.parameters())
    total = sum(p.numel() for p in resnet.parameters())
    print(f"parameters: {left:,} of {total:,} (scales and shifts are constants)")
    # --8<-- [end:freeze-batch-norm-demo]

    # --8<-- [start:exercise-sizes]
    layers = [nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3, stride=2), nn.MaxPool2d(2)]
    size = 28
    for layer in layers:
        kernel, stride = layer.kernel_size, layer.stride  # ints or (height, width)
        kernel, stride = [
            v if isinstance(v, int) else v[0] for v in (kernel, stride)
        ]
        size = output_size(size, kernel, stride=stride)
    print(
        "by the formula:",
        size,
        "| by running it:",
        nn.Sequential(*layers)(torch.zeros(1, 1, 28, 28)).shape[-1],
    )
    # --8<-- [end:exercise-sizes]

    # --8<-- [start:exercise-separable]
    standard = nn.Conv2d(32, 64, 3, padding=1)
    separable = nn.Sequential(
        nn.Conv2d(32, 32, 3, padding=1, groups=32),  # one 3x3 filter per channel
        nn.Conv2d(32, 64, 1),  # then mix the channels, 1x1
    )
    maps = torch.zeros(1, 32, 14, 14)
    for name, layer in [("standard", standard), ("separable", separable)]:
        count = sum(p.numel() for p in layer.parameters())
        print(f"{name:9} {count:6,} parameters, output {tuple(layer(maps).shape)}")
    # --8<-- [end:exercise-separable]
