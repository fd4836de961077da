"""Convolutional networks and transfer learning: the code of docs/cnn.md.

A convolution by hand and with F.conv2d, output sizes, receptive fields, the
cost of weight sharing, the layers of a CNN, the chapter's MNIST CNN (it takes
the MNIST chapter's preloaded N x 784 tensors as they are), per-image
augmentation on tensors, checkpoints that refuse the wrong network, and transfer
learning with torchvision's ResNet-18. Definitions are at module level
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
    out = torch.zeros(rows, cols)
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
    preloaded tensors) or N x 1 x 28 x 28 images in, N x 1 x 28 x 28 out."""

    def forward(self, x):
        if x.ndim == 2 and x.shape[1] == 784:
            x = x.reshape(len(x), 1, 28, 28)
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(
                f"the CNN reads N x 1 x 28 x 28 digits (or N x 784 pixels); "
                f"got {tuple(x.shape)}: {shape_hint(x.shape)}"
            )
        if not self.training and x.amax() > 10:  # normalised: at most 2.8
            raise ValueError(
                "pixel values up to 255: normalise the images as in training "
                "(divide by 255, subtract 0.1307, divide by 0.3081)"
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
    one set of parameters for all of it."""
    x = images.reshape(len(images), 1, 28, 28)

    def uniform(low, high):
        return torch.empty(len(x)).uniform_(low, high, generator=generator)

    angle = uniform(-degrees, degrees) * math.pi / 180
    zoom = uniform(*scale)
    dx, dy = uniform(-shift, shift) * 2, uniform(-shift, shift) * 2  # sides span 2
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, dx], 1), torch.stack([sin, cos, dy], 1)], 1
    )  # N x 2 x 3
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    # grid_sample fills what comes in from outside with 0: shift so that 0 is black
    moved = F.grid_sample(x - BLACK, grid, align_corners=False) + BLACK
    return moved.reshape(images.shape)


# --8<-- [end:augment]


# --8<-- [start:checkpoint]
import torch


def load_cnn(path, channels=(16, 32), hidden=0):
    """The CNN with the weights saved in ``path`` (tensors only), in eval mode; a
    checkpoint of another network is refused with what differs."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_cnn(channels, hidden)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    resized = [
        key
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    if missing or unexpected or resized:
        raise ValueError(
            f"{path} does not hold this CNN's weights: {len(missing)} tensors "
            f"missing (such as {missing[:2]}), {len(unexpected)} unexpected (such "
            f"as {unexpected[:2]}), {len(resized)} of another shape"
        )
    model.load_state_dict(state)
    return model.eval()


# --8<-- [end:checkpoint]


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
from torch import nn


def adapt(pretrained, method, seed=0):
    """A copy of a trained CNN ready to learn new digits: 'frozen' trains only a
    new last layer on the CNN's features, 'fine-tune' trains every layer,
    'scratch' starts from random weights (the seed sets the new weights)."""
    torch.manual_seed(seed)
    if method == "scratch":
        return build_cnn(), 3e-3
    model = copy.deepcopy(pretrained)
    model[-1] = nn.Linear(model[-1].in_features, 10)  # a new head
    if method == "frozen":
        model.requires_grad_(False)
        model[-1].requires_grad_(True)
        return model, 3e-3
    return model, 1e-3  # fine-tune: smaller steps, not to undo what it knows


def train_few(model, images, labels, method, steps=150, lr=3e-3):
    """Train on a few labelled images (full batches, AdamW); a frozen model keeps
    its batch norm statistics (eval mode) and only its head learns."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    for _ in range(steps):
        model.train(method != "frozen")
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


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
        f"per epoch of 60,000: {per_image * 60_000 / 1e12:.2f} TFLOP"
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
    for attempt in [
        lambda: load_cnn(folder / "mlp.pt"),
        lambda: reloaded(torch.zeros(2, 1, 32, 32)),
        lambda: reloaded(torch.zeros(2, 3, 28, 28)),
        lambda: reloaded(images[0]),  # one image, 1 x 28 x 28
        lambda: reloaded(torch.full((2, 1, 28, 28), 255.0)),  # raw pixels
    ]:
        try:
            attempt()
        except ValueError as error:
            message = str(error).replace(str(folder), "...")
            print(textwrap.fill(f"ValueError: {message}", 80))
    # --8<-- [end:checkpoint-demo]

    # --8<-- [start:resnet]
    from torchvision.models import ResNet18_Weights, resnet18

    weights = ResNet18_Weights.DEFAULT  # the ImageNet weights' description
    preprocess = weights.transforms()  # resize, crop 224, ImageNet mean and std
    print(preprocess)
    model = resnet18(weights=None)  # this site cannot download weights: random ones
    model.requires_grad_(False)  # freeze the backbone
    model.fc = nn.Linear(model.fc.in_features, 10)  # a new head, trainable
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    total = sum(p.numel() for p in model.parameters())
    print(f"trainable: {sum(p.numel() for p in trainable):,} of {total:,}")

    photos = torch.rand(2, 3, 256, 320)  # stand-ins for two RGB photos in [0, 1]
    model.eval()  # the frozen backbone keeps its batch norm statistics
    loss = nn.functional.cross_entropy(
        model(preprocess(photos)), torch.tensor([3, 7])
    )
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
