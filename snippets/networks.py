"""Building networks: the code of docs/networks.md.

The page builds networks out of ``nn.Module``: calling a module (hooks around
``forward``), ``nn.Linear`` as ``x @ W.T + b``, ``nn.Sequential`` and its
parameters, train and eval modes (dropout; ``inference_mode`` is what turns
autograd off), activation functions and their derivatives, and why gradients
vanish through many sigmoid layers. The exercises count parameters, compare a
plain list with ``nn.ModuleList``, follow BatchNorm's statistics and check
GELU's derivative.

What the page runs is at the end, at module level; importing the module runs
nothing.
"""

# What the page runs, in page order, at module level as on the page:
# `python -m snippets.networks` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:module]
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, n_in, n_hidden, n_out):
            super().__init__()  # sets up the registry of layers and parameters
            self.hidden = nn.Linear(n_in, n_hidden)
            self.out = nn.Linear(n_hidden, n_out)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x)))

    torch.manual_seed(0)
    model = TinyNet(n_in=4, n_hidden=8, n_out=3)
    features = torch.randn(5, 4)  # a batch of 5 samples, 4 features each

    calls = []

    def record(module, inputs, output):
        calls.append(tuple(output.shape))

    handle = model.register_forward_hook(record)
    scores = model(features)  # __call__ runs the hooks around forward
    model.forward(features)  # bypasses them: don't do this
    handle.remove()
    print("output shape:", tuple(scores.shape))
    print("hook calls:", calls)
    # --8<-- [end:module]

    # --8<-- [start:linear]
    import torch
    from torch import nn

    torch.manual_seed(0)
    layer = nn.Linear(784, 128)  # in: a flattened 28x28 image; out: 128
    print("weight:", tuple(layer.weight.shape), "bias:", tuple(layer.bias.shape))

    images = torch.randn(32, 784)  # a batch of 32 flattened images
    hidden = layer(images)
    print("output:", tuple(hidden.shape))
    by_hand = images @ layer.weight.T + layer.bias
    # equal up to float32 rounding (the sums run in a different order)
    print("layer(x) == x @ W.T + b:", torch.allclose(hidden, by_hand, atol=1e-5))
    # row i of the weight holds the 784 weights of output neuron i
    neuron_0 = images @ layer.weight[0] + layer.bias[0]
    print(
        "output 0 == x @ W[0] + b[0]:",
        torch.allclose(hidden[:, 0], neuron_0, atol=1e-5),
    )
    # --8<-- [end:linear]

    # --8<-- [start:sequential]
    import torch
    from torch import nn

    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Flatten(),  # (batch, 1, 28, 28) -> (batch, 784)
        nn.Linear(784, 128),
        nn.ReLU(),
        nn.Linear(128, 10),  # 10 scores (logits), one per digit
    )
    print(mlp)
    print("logits:", tuple(mlp(torch.randn(32, 1, 28, 28)).shape))
    # --8<-- [end:sequential]

    # --8<-- [start:parameters]
    for name, param in mlp.named_parameters():
        print(f"{name:10} {tuple(param.shape)}")

    n_params = sum(p.numel() for p in mlp.parameters())
    print("parameters:", n_params)
    print("by hand:   ", 784 * 128 + 128 + 128 * 10 + 10)
    # --8<-- [end:parameters]

    # --8<-- [start:train-eval]
    import torch
    from torch import nn

    torch.manual_seed(0)
    # dropout zeroes each input with probability p and scales survivors by 1/(1-p)
    print("dropout on ones:", nn.Dropout(p=0.5)(torch.ones(8)))

    net = nn.Sequential(
        nn.Linear(4, 16), nn.ReLU(), nn.Dropout(p=0.5), nn.Linear(16, 2)
    )
    sample = torch.randn(1, 4)

    net.train()  # the default for a new module
    print("train mode, same output twice:", torch.equal(net(sample), net(sample)))
    net.eval()
    print("eval mode,  same output twice:", torch.equal(net(sample), net(sample)))

    print("eval() output tracks gradients:", net(sample).requires_grad)
    with torch.inference_mode():  # this is what turns autograd off
        print("inference_mode output tracks gradients:", net(sample).requires_grad)
    # --8<-- [end:train-eval]

    # --8<-- [start:activations]
    import torch
    import torch.nn.functional as F

    activations = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "ReLU": torch.relu,
        "LeakyReLU": lambda t: F.leaky_relu(t, negative_slope=0.1),
        "GELU": F.gelu,
    }
    x = torch.linspace(-10, 10, 100, requires_grad=True)
    probe = torch.tensor([-5.0, 5.0], requires_grad=True)
    values, slopes = {}, {}
    for name, f in activations.items():
        y = f(x)
        # y[i] depends only on x[i]: the gradient of y.sum() is f' at each point
        (slope,) = torch.autograd.grad(y.sum(), x)
        values[name], slopes[name] = y.detach(), slope
        (at_5,) = torch.autograd.grad(f(probe).sum(), probe)
        print(
            f"{name:9} min {y.min():8.3g}  max {y.max():8.6g}"
            f"  slope at -5: {at_5[0]:9.2e}, at 5: {at_5[1]:.2e}"
        )
    # --8<-- [end:activations]

    # --8<-- [start:activations-plot]
    import matplotlib.pyplot as plt

    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name in activations:
        ax_f.plot(x.detach(), values[name], label=name)
        ax_d.plot(x.detach(), slopes[name], label=name)
    ax_f.set(title="Activation functions", xlabel="x", ylabel="f(x)", ylim=(-2, 4))
    ax_d.set(
        title="Their derivatives (autograd)",
        xlabel="x",
        ylabel="f'(x)",
        ylim=(-0.2, 1.2),
    )
    for ax in (ax_f, ax_d):
        ax.grid(alpha=0.3)
    ax_f.legend()
    fig.tight_layout()
    # --8<-- [end:activations-plot]

    # --8<-- [start:vanishing]
    import torch

    z = torch.tensor(0.0, requires_grad=True)
    torch.sigmoid(z).backward()
    print("sigmoid'(0) =", z.grad.item(), "(its largest value)")
    print("0.25 ** 10  =", 0.25**10)

    def slope_through(f, x0, depth=10):
        """d/dx of f(f(...f(x))) at x0: the product of every layer's slope."""
        x = torch.tensor(x0, requires_grad=True)
        h = x
        for _ in range(depth):
            h = f(h)
        h.backward()
        return x.grad.item()

    for name, f in [
        ("sigmoid", torch.sigmoid),
        ("tanh", torch.tanh),
        ("ReLU", torch.relu),
    ]:
        slope = slope_through(f, 1.0)
        print(f"slope through 10 {name:7} layers at x=1: {slope:.2e}")
    # --8<-- [end:vanishing]

    # --8<-- [start:ex-count]
    from torch import nn

    def count_linear(sizes):
        """Parameters of chained nn.Linear layers: in*out weights + out biases."""
        return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes, sizes[1:]))

    sizes = [784, 256, 64, 10]
    layers = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    deeper = nn.Sequential(*layers[:-1])  # no activation at the end: logits
    print("formula:", count_linear(sizes))
    print("PyTorch:", sum(p.numel() for p in deeper.parameters()))
    # --8<-- [end:ex-count]

    # --8<-- [start:ex-modulelist]
    from torch import nn

    class PlainList(nn.Module):
        def __init__(self):
            super().__init__()
            # a plain list is invisible to nn.Module
            self.layers = [nn.Linear(4, 4), nn.Linear(4, 2)]

    class Registered(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2)])

    print("plain list: ", len(list(PlainList().parameters())), "parameters")
    print("ModuleList: ", len(list(Registered().parameters())), "parameters")
    # --8<-- [end:ex-modulelist]

    # --8<-- [start:ex-batchnorm]
    import torch
    from torch import nn

    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3)
    batch = torch.randn(64, 3) * 5 + 10  # features with mean ~10, std ~5

    bn.train()
    normed = bn(batch)  # normalised with this batch's own mean and std
    print(
        "train: output means below 1e-6:", normed.mean(0).abs().max().item() < 1e-6
    )
    # the running mean moved 10% of the way from 0 towards the batch mean (~10)
    print("running_mean after one batch:", bn.running_mean)

    bn.eval()
    before = bn.running_mean.clone()
    normed = bn(batch)  # normalised with the running statistics instead
    print("eval: output mean", normed.mean(0).detach())
    print("running_mean unchanged in eval:", torch.equal(before, bn.running_mean))
    # --8<-- [end:ex-batchnorm]

    # --8<-- [start:ex-gelu]
    import math

    import torch
    import torch.nn.functional as F

    points = torch.linspace(-4, 4, 9, requires_grad=True)
    (autograd_slope,) = torch.autograd.grad(F.gelu(points).sum(), points)

    xd = points.detach()
    cdf = 0.5 * (1 + torch.erf(xd / math.sqrt(2)))  # Φ(x)
    pdf = torch.exp(-(xd**2) / 2) / math.sqrt(2 * math.pi)  # φ(x)
    closed_form = cdf + xd * pdf  # d/dx [x Φ(x)]
    print("max difference:", (autograd_slope - closed_form).abs().max().item())
    # --8<-- [end:ex-gelu]
