"""Autograd: the code of docs/autograd.md.

The page teaches ``requires_grad``, ``backward()`` and ``.grad`` against
derivatives worked out by hand, the recorded graph, gradient accumulation, non-
scalar outputs, switching autograd off, leaf tensors, in-place pitfalls, a
custom ``torch.autograd.Function`` checked with ``gradcheck``, and gradient
descent by hand; four exercises close it. Each section is small and fast. What
the page runs is at the end, at module level; importing the module runs nothing.
"""

# What the page runs, in page order, at module level as on the page:
# `python -m snippets.autograd` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:first-gradient]
    import torch

    x = torch.tensor(2.0, requires_grad=True)  # track what is computed from x
    y = x**2 + 3 * x  # 4 + 6 = 10, plus a record of how y was computed
    print(y)
    y.backward()  # walk the record backwards: dy/dx lands in x.grad
    print(x.grad)  # by hand: dy/dx = 2x + 3 = 7 at x = 2
    # --8<-- [end:first-gradient]

    # --8<-- [start:graph]
    print(type(y.grad_fn).__name__)  # the node that made y: the addition
    inputs_of_add = y.grad_fn.next_functions  # pairs (node, output index)
    print([type(node).__name__ for node, _ in inputs_of_add])

    def show_graph(node, depth=0):
        """Print the backward graph that ends at node, one node per line."""
        print("    " * depth + type(node).__name__)
        for child, _ in node.next_functions:
            if child is not None:  # None: an input that needs no gradient
                show_graph(child, depth + 1)

    show_graph(y.grad_fn)
    print(x.grad_fn, x.is_leaf)  # x was made by you, not by an operation
    # --8<-- [end:graph]

    # --8<-- [start:many-inputs]
    import torch

    x = torch.linspace(-2, 2, 5, requires_grad=True)
    y = x**2 + 3 * x  # five outputs, each depending on one input
    y.sum().backward()  # a scalar, and d(sum)/dx_i = dy_i/dx_i
    print(x.grad)
    print(2 * x.detach() + 3)  # by hand: 2x + 3 (detach: values, no graph)
    # --8<-- [end:many-inputs]

    # --8<-- [start:accumulation]
    import torch

    x = torch.tensor(2.0, requires_grad=True)
    for call in (1, 2):
        y = x**2 + 3 * x  # a fresh forward pass: backward freed the last graph
        y.backward()
        print(f"after backward #{call}: x.grad = {x.grad}")
    x.grad = None  # reset: what optimizer.zero_grad() does
    (x**2 + 3 * x).backward()
    print(f"after a reset:      x.grad = {x.grad}")
    # --8<-- [end:accumulation]

    # --8<-- [start:micro-batches]
    import torch

    torch.manual_seed(0)
    inputs, targets = torch.randn(8, 3), torch.randn(8)
    w = torch.zeros(3, requires_grad=True)

    loss = ((inputs @ w - targets) ** 2).mean()  # one batch of 8
    loss.backward()
    full_batch_grad = w.grad.clone()

    w.grad = None
    for x_part, y_part in zip(inputs.split(2), targets.split(2)):  # 4 x 2
        part_loss = ((x_part @ w - y_part) ** 2).mean() / 4  # 4 means -> 1
        part_loss.backward()  # adds this part's gradient into w.grad
    print(full_batch_grad)
    print(w.grad)
    print(torch.allclose(w.grad, full_batch_grad))
    # --8<-- [end:micro-batches]

    # --8<-- [start:non-scalar]
    import textwrap

    import torch

    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x**2  # three outputs: the gradient of which one?
    try:
        y.backward()
    except RuntimeError as error:
        print(textwrap.fill(f"RuntimeError: {error}", 80))

    y.backward(gradient=torch.ones_like(y))  # the gradient of (v * y).sum()
    print(x.grad)  # v = ones: the same as y.sum().backward(), here 2x
    x.grad = None
    (x**2).backward(gradient=torch.tensor([0.0, 1.0, 0.0]))  # only y[1]
    print(x.grad)
    # --8<-- [end:non-scalar]

    # --8<-- [start:no-grad]
    import torch

    w = torch.tensor([1.0, -2.0], requires_grad=True)
    with torch.no_grad():  # record nothing: evaluation, weight updates
        z = w * 2
    print(z.requires_grad, z.grad_fn)

    with torch.inference_mode():  # no_grad, minus more bookkeeping
        z = w * 2
    print(z.requires_grad, z.is_inference())
    (z + w).sum().backward()  # fine: the sum's backward needs no saved z
    print(w.grad)
    try:
        z * w  # the product's backward would need z, and z cannot be saved
    except RuntimeError as error:
        print("RuntimeError:", str(error).split(". ")[0])

    d = w.detach()  # same values, same memory, no history, no requires_grad
    print(d, d.requires_grad, d.data_ptr() == w.data_ptr())
    # --8<-- [end:no-grad]

    # --8<-- [start:leaf]
    import torch

    x = torch.tensor(3.0, requires_grad=True)  # a leaf: created by you
    h = x * 2  # not a leaf: the result of an operation
    h.retain_grad()  # keep h's gradient too (only leaves keep theirs)
    out = h**2
    out.backward()
    print(x.is_leaf, h.is_leaf, out.is_leaf)
    print(x.grad, h.grad)  # d(out)/dx = 24, d(out)/dh = 12
    print(torch.zeros(3).is_leaf)  # no requires_grad: a leaf too
    # --8<-- [end:leaf]

    # --8<-- [start:inplace]
    import textwrap

    import torch

    w = torch.tensor([1.0, 2.0], requires_grad=True)
    try:
        w.add_(1.0)  # change a leaf that requires grad, while recording
    except RuntimeError as error:
        print(textwrap.fill(f"RuntimeError: {error}", 80))
    with torch.no_grad():
        w.add_(1.0)  # allowed: an update autograd was told not to record
    print(w)

    a = torch.tensor([0.0, 1.0], requires_grad=True)
    s = a.sigmoid()  # sigmoid saves its output: its derivative is s * (1 - s)
    s.mul_(2)  # overwrite that saved output in place
    try:
        s.sum().backward()
    except RuntimeError as error:
        message = str(error).split(" Hint:")[0]  # drop the long hint
        print(textwrap.fill(f"RuntimeError: {message}", 80))
    # --8<-- [end:inplace]

    # --8<-- [start:custom-function]
    import torch

    class StableSoftplus(torch.autograd.Function):
        """softplus(x) = log(1 + exp(x)) without overflow; derivative sigmoid(x)."""

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)  # keep what backward will need
            # max(x, 0) + log(1 + exp(-|x|)) equals log(1 + exp(x)) for every x
            return x.clamp(min=0) + torch.log1p(torch.exp(-x.abs()))

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            # chain rule: the upstream gradient times the local derivative
            return grad_output * torch.sigmoid(x)

    softplus = StableSoftplus.apply  # a Function is called through .apply
    x = torch.tensor([-100.0, 0.0, 100.0], requires_grad=True)
    print(torch.log(1 + torch.exp(x.detach())))  # naive: exp(100) is inf
    y = softplus(x)
    print(y)
    y.sum().backward()
    print(x.grad)  # sigmoid(x): 0, 0.5, 1
    # --8<-- [end:custom-function]

    # --8<-- [start:gradcheck]
    import torch

    generator = torch.Generator().manual_seed(0)
    x64 = torch.randn(8, dtype=torch.float64, generator=generator) * 5
    x64.requires_grad_()
    print(torch.autograd.gradcheck(softplus, (x64,)))  # True, or it raises

    class WrongSoftplus(StableSoftplus):
        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * torch.exp(x)  # a plausible-looking mistake

    check = torch.autograd.gradcheck(
        WrongSoftplus.apply, (x64,), raise_exception=False
    )
    print(check)  # the mistake is caught
    # --8<-- [end:gradcheck]

    # --8<-- [start:descent-step]
    import torch

    torch.manual_seed(0)
    inputs = torch.linspace(-1, 1, 20).unsqueeze(1)  # 20 samples, 1 feature
    noise = 0.1 * torch.randn(20, 1)
    targets = 2.0 * inputs - 1.0 + noise  # the line w = 2, b = -1, plus noise

    def mse_loss(w, b):
        return ((inputs @ w + b - targets) ** 2).mean()

    w = torch.zeros(1, 1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    learning_rate = 0.5

    loss = mse_loss(w, b)
    loss.backward()
    print(f"loss before: {loss.item():.4f}")
    print(
        f"gradients:   dloss/dw = {w.grad.item():.4f}, "
        f"dloss/db = {b.grad.item():.4f}"
    )
    with torch.no_grad():  # the update is not part of the model
        w -= learning_rate * w.grad  # in place: w stays the same leaf
        b -= learning_rate * b.grad
    print(f"loss after:  {mse_loss(w, b).item():.4f}")
    print(f"parameters:  w = {w.item():.4f}, b = {b.item():.4f}")
    # --8<-- [end:descent-step]

    # --8<-- [start:rebind-pitfall]
    with torch.no_grad():
        rebound = w - learning_rate * w.grad  # a NEW tensor, made under no_grad
    print(rebound.requires_grad)  # False: backward() will not reach it
    rebound.requires_grad_()  # if you rebind, turn tracking back on
    print(rebound.requires_grad, rebound.is_leaf)
    # --8<-- [end:rebind-pitfall]

    # --8<-- [start:descent-loop]
    import matplotlib.pyplot as plt

    w = torch.zeros(1, 1, requires_grad=True)  # start again from zero
    b = torch.zeros(1, requires_grad=True)
    losses = []
    for _ in range(25):
        loss = mse_loss(w, b)
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w -= learning_rate * w.grad
            b -= learning_rate * b.grad
        w.grad = None  # zero the gradients, or the next step adds to them
        b.grad = None
    print(f"loss: {losses[0]:.4f} -> {losses[-1]:.4f}")
    print(f"gradient descent: w = {w.item():.4f}, b = {b.item():.4f}")

    design = torch.cat([inputs, torch.ones_like(inputs)], dim=1)  # columns x, 1
    best = torch.linalg.lstsq(design, targets).solution.flatten()  # exact fit
    print(f"least squares:    w = {best[0].item():.4f}, b = {best[1].item():.4f}")

    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.plot(losses, marker="o", markersize=3)
    ax.set(
        title="Gradient descent by hand",
        xlabel="step",
        ylabel="mean squared error",
        yscale="log",
    )
    # --8<-- [end:descent-loop]

    # --8<-- [start:exercise-sigmoid]
    import torch

    x = (torch.arange(-60, 61) / 10).requires_grad_()  # -6.0, -5.9, ..., 6.0
    s = torch.sigmoid(x)
    s.sum().backward()  # x.grad[i] = sigmoid'(x[i])
    print(torch.allclose(x.grad, (s * (1 - s)).detach()))  # the identity
    steepest = x.grad.argmax()
    print(
        f"largest slope: {x.grad[steepest].item():.4f} "
        f"at x = {x[steepest].item():.1f}"
    )
    print(f"slope at x = 6: {x.grad[-1].item():.4f}")  # saturated
    # --8<-- [end:exercise-sigmoid]

    # --8<-- [start:exercise-straight-through]
    import torch

    class RoundStraightThrough(torch.autograd.Function):
        """Round going forward; act as the identity going backward."""

        @staticmethod
        def forward(ctx, x):
            return torch.round(x)

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output  # straight through: the gradient, unchanged

    x = torch.tensor([0.2, 1.7, -0.6], requires_grad=True)
    torch.round(x).sum().backward()
    print(x.grad)  # round is flat almost everywhere: nothing to learn from
    x.grad = None
    y = RoundStraightThrough.apply(x)
    y.sum().backward()
    print(y, x.grad)

    x64 = x.detach().double().requires_grad_()
    check = torch.autograd.gradcheck(
        RoundStraightThrough.apply, (x64,), raise_exception=False
    )
    print(check)  # fails, by design: not the true derivative
    # --8<-- [end:exercise-straight-through]

    # --8<-- [start:exercise-newton]
    import torch

    def f(x):
        return x**4 - 3 * x**2 + 2

    x = torch.tensor(2.0, requires_grad=True)
    for step in range(6):
        # f'(x), recorded in a graph of its own so that it can be differentiated
        (slope,) = torch.autograd.grad(f(x), x, create_graph=True)
        (curvature,) = torch.autograd.grad(slope, x)  # f''(x)
        print(
            f"step {step}: x = {x.item():.6f}, "
            f"f'(x) = {slope.item():8.5f}, f''(x) = {curvature.item():7.4f}"
        )
        with torch.no_grad():
            x -= slope / curvature  # Newton's step towards f'(x) = 0
    print(f"x = {x.item():.6f}, sqrt(1.5) = {1.5**0.5:.6f}")
    # --8<-- [end:exercise-newton]

    # --8<-- [start:exercise-quadratic]
    import torch

    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 50)
    y = 0.5 * x**2 - x + 2 + 0.05 * torch.randn(50)  # a, b, c = 0.5, -1, 2
    features = torch.stack([x**2, x, torch.ones_like(x)], dim=1)  # (50, 3)
    params = torch.zeros(3, requires_grad=True)  # a, b, c
    for _ in range(300):
        loss = ((features @ params - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            params -= 0.5 * params.grad
        params.grad = None
    exact = torch.linalg.lstsq(features, y.unsqueeze(1)).solution.flatten()
    print(f"final loss:       {loss.item():.5f}")
    print(f"gradient descent: {params.detach()}")
    print(f"least squares:    {exact}")
    # --8<-- [end:exercise-quadratic]
