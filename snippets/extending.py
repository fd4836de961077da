"""Extending PyTorch: the code of docs/extending.md.

Four doors for an idea that no built-in layer fits: hooks and
parametrizations; a custom autograd.Function (a stable log-sum-exp, a
straight-through estimator, gradcheck); the transforms of torch.func (grad,
vmap, Jacobians, per-sample gradients, a model ensemble); and custom operators
registered with torch.library (a NumPy routine as an op that torch.compile and
torch.export understand), with a C++ operator shown as a listing. Other code
may import the definitions. What the page runs is at the end, at module level,
in page order.
"""

# --8<-- [start:hooks]
import torch
from torch import nn


def small_network(seed=0):
    """3 inputs -> 4 ReLU units -> 2 outputs, seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


# --8<-- [end:hooks]


# --8<-- [start:parametrize]
import torch.nn.functional as F
from torch.nn.utils import parametrize


class Positive(nn.Module):
    """A parametrization: the layer's weight is softplus(original) > 0."""

    def forward(self, original):
        return F.softplus(original)

    def right_inverse(self, weight):  # what `layer.weight = w` stores
        if (weight <= 0).any():
            raise ValueError("a positive weight needs every entry > 0")
        return weight + torch.log(-torch.expm1(-weight))  # softplus's inverse


# --8<-- [end:parametrize]


# --8<-- [start:function]
class LogSumExp(torch.autograd.Function):
    """log(sum(exp(x))) over the last dimension, stable for large x, with
    the softmax as its gradient."""

    @staticmethod
    def forward(x):
        largest = x.amax(dim=-1, keepdim=True)
        shifted = torch.exp(x - largest).sum(dim=-1, keepdim=True)
        return (largest + torch.log(shifted)).squeeze(-1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        ctx.save_for_backward(x, output)

    @staticmethod
    def backward(ctx, grad_output):
        x, output = ctx.saved_tensors
        softmax = torch.exp(x - output.unsqueeze(-1))
        return grad_output.unsqueeze(-1) * softmax


def naive_logsumexp(x):
    return torch.log(torch.exp(x).sum(dim=-1))


# --8<-- [end:function]


# --8<-- [start:straight-through]
class RoundStraightThrough(torch.autograd.Function):
    """Rounds in the forward pass; passes the gradient through unchanged."""

    @staticmethod
    def forward(x):
        return torch.round(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass  # the backward needs nothing

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


# --8<-- [end:straight-through]


# --8<-- [start:old-style]
class SineOldStyle(torch.autograd.Function):
    """The older style: forward takes ctx, no setup_context."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * torch.cos(x)


# --8<-- [end:old-style]


# --8<-- [start:func]
from torch.func import grad, hessian, jacfwd, jacrev, vmap


def central_differences(f, x, step=1e-6):
    """The Jacobian of f at x (float64) by central differences: column j is
    (f(x + h e_j) - f(x - h e_j)) / 2h."""
    columns = []
    for j in range(x.numel()):
        e = torch.zeros_like(x)
        e[j] = step
        columns.append((f(x + e) - f(x - e)) / (2 * step))
    return torch.stack(columns, dim=-1)


def field(x):
    """R^3 -> R^3: sin(x) times the sum of x."""
    return torch.sin(x) * x.sum()


def energy(x):
    """R^3 -> R: a scalar with a non-diagonal Hessian."""
    return (x**3).sum() + x.prod()


# --8<-- [end:func]


# --8<-- [start:per-sample]
from torch.func import functional_call


def per_sample_gradients(model, x, y):
    """The gradient of the loss of each example alone, for every parameter:
    {name: tensor of shape (batch, *parameter.shape)}."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_of_one(params, xi, yi):
        out = functional_call(model, params, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    return vmap(grad(loss_of_one), in_dims=(None, 0, 0))(params, x, y)


def per_sample_gradients_loop(model, x, y):
    """The same, one example at a time with backward()."""
    rows = []
    for xi, yi in zip(x, y):
        model.zero_grad()
        F.cross_entropy(model(xi.unsqueeze(0)), yi.unsqueeze(0)).backward()
        rows.append({k: p.grad.clone() for k, p in model.named_parameters()})
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


# --8<-- [end:per-sample]


# --8<-- [start:ensemble]
import copy

from torch.func import stack_module_state


def ensemble_forward(models, x):
    """Every model of ``models`` (same architecture) on x, in one vmapped
    call: shape (len(models), *output shape)."""
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")  # the architecture, no data

    def one_model(params, buffers, x):
        return functional_call(base, (params, buffers), (x,))

    return vmap(one_model, in_dims=(0, 0, None))(params, buffers, x)


# --8<-- [end:ensemble]


# --8<-- [start:custom-op]
import numpy as np

NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def check_interp_inputs(x, xp, fp):
    """What the shapes, dtypes and devices must be: checked by the fake too."""
    if not (x.dtype in NUMPY_FLOATS and xp.dtype == fp.dtype == x.dtype):
        dtypes = x.dtype, xp.dtype, fp.dtype
        raise TypeError(f"x, xp, fp: one of float16/32/64, got {dtypes}")
    if xp.ndim != 1 or xp.shape != fp.shape or len(xp) < 2:
        shapes = tuple(xp.shape), tuple(fp.shape)
        raise ValueError(f"xp, fp: one 1-D shape of length >= 2, got {shapes}")
    if not x.device == xp.device == fp.device:
        devices = x.device, xp.device, fp.device
        raise ValueError(f"x, xp, fp: one device, got {devices}")


@torch.library.custom_op("guide::interp", mutates_args=())
def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """NumPy's np.interp as a PyTorch operator: the piecewise linear function
    through the points (xp, fp), xp increasing, at x."""
    check_interp_inputs(x, xp, fp)
    increasing = (xp[1:] > xp[:-1]).all()  # needs the values: real kernel only
    if not increasing:
        raise ValueError("xp: the knots must increase strictly")
    out = np.asarray(  # np.interp gives a NumPy scalar for a 0-d x
        np.interp(x.cpu().numpy(), xp.cpu().numpy(), fp.cpu().numpy())
    )
    return torch.from_numpy(out).to(dtype=x.dtype, device=x.device)


@interp.register_fake
def _(x, xp, fp):
    """What torch.compile and torch.export see: the output's shape and dtype,
    computed without data."""
    check_interp_inputs(x, xp, fp)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)  # contiguous


def interp_setup_context(ctx, inputs, output):
    x, xp, fp = inputs
    if xp.requires_grad or fp.requires_grad:
        raise ValueError("interp has a gradient for x only: xp, fp must be fixed")
    ctx.save_for_backward(x, xp, fp)


def interp_backward(ctx, grad_output):
    """d interp / dx: the slope of the segment x lies on; at an inner knot,
    the slope of the segment to its left; 0 at the end knots and outside."""
    x, xp, fp = ctx.saved_tensors
    slopes = torch.diff(fp) / torch.diff(xp)
    segment = (torch.searchsorted(xp, x.contiguous()) - 1).clamp(0, len(slopes) - 1)
    inside = (x > xp[0]) & (x < xp[-1])
    return grad_output * slopes[segment] * inside, None, None


interp.register_autograd(interp_backward, setup_context=interp_setup_context)


class Calibrated(nn.Module):
    """A linear layer followed by a fixed piecewise linear curve."""

    def __init__(self, knots):
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.register_buffer("xp", knots)
        self.register_buffer("fp", knots**2)

    def forward(self, x):
        # the op as registered now: still valid if interp is defined again
        return torch.ops.guide.interp(self.linear(x).squeeze(-1), self.xp, self.fp)


# --8<-- [end:custom-op]


# --8<-- [start:no-fake]
@torch.library.custom_op("guide::interp_without_fake", mutates_args=())
def interp_without_fake(
    x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor
) -> torch.Tensor:
    out = np.interp(x.numpy(), xp.numpy(), fp.numpy())
    return torch.from_numpy(out).to(x.dtype)


# --8<-- [end:no-fake]


# --8<-- [start:cpp-extension]
from torch.utils.cpp_extension import load_inline

CPP_SOURCE = """
#include <torch/extension.h>

// max(x, 0) + log1p(exp(-|x|)): softplus without overflow
torch::Tensor stable_softplus(torch::Tensor x) {
  TORCH_CHECK(x.is_floating_point(), "stable_softplus: floating x");
  return torch::clamp_min(x, 0) + torch::log1p(torch::exp(-torch::abs(x)));
}
"""


def build_stable_softplus(build_directory=None):
    """Compile CPP_SOURCE with the machine's C++ compiler (tens of seconds
    the first time) and return the compiled function."""
    module = load_inline(
        name="guide_stable_softplus",
        cpp_sources=CPP_SOURCE,
        functions=["stable_softplus"],
        build_directory=build_directory,
    )
    return module.stable_softplus


# --8<-- [end:cpp-extension]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.extending` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:hooks-demo]
    torch.set_num_threads(1)
    model = small_network()
    seen = []

    def before_forward(module, args):  # may return replacement args
        seen.append(f"pre-hook: input {tuple(args[0].shape)}")

    def after_forward(module, args, output):  # may return a new output
        seen.append(f"forward hook: {(output > 0).float().mean():.2f} active")

    def after_backward(module, grad_input, grad_output):
        seen.append(f"backward hook: grad_output {tuple(grad_output[0].shape)}")

    handles = [
        model[0].register_forward_pre_hook(before_forward),
        model[1].register_forward_hook(after_forward),
        model[2].register_full_backward_hook(after_backward),
    ]
    x = torch.randn(5, 3)
    model(x).sum().backward()
    print("\n".join(seen))
    for handle in handles:
        handle.remove()
    seen.clear()
    model(x).sum().backward()
    print("after remove():", seen)
    # --8<-- [end:hooks-demo]

    # --8<-- [start:tensor-hook]
    w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    handle = w.register_hook(lambda g: g.clamp(-1, 1))  # the new gradient
    (w * torch.tensor([0.5, 4.0, -9.0])).sum().backward()
    print("clipped gradient:", w.grad)
    handle.remove()
    # --8<-- [end:tensor-hook]

    # --8<-- [start:parametrize-demo]
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.abs_()  # registering passes the weight to right_inverse
    parametrize.register_parametrization(layer, "weight", Positive())
    print("weight > 0:", bool((layer.weight > 0).all()))
    print("state_dict keys:", list(layer.state_dict()))
    layer.weight = torch.full((2, 3), 0.5)  # goes through right_inverse
    print(
        "weight after assignment:", [round(v, 4) for v in layer.weight[0].tolist()]
    )
    original = layer.parametrizations.weight.original
    print("stored:", [round(v, 4) for v in original[0].tolist()])
    plain = nn.Linear(3, 2)
    try:
        plain.load_state_dict(layer.state_dict())
    except RuntimeError as error:
        print("into a plain Linear:")
        for line in str(error).splitlines()[1:]:
            print("  " + line.strip())
    # --8<-- [end:parametrize-demo]

    # --8<-- [start:function-demo]
    x = torch.tensor([1000.0, 1000.5, 999.0], requires_grad=True)
    value = naive_logsumexp(x)
    value.backward()
    print("naive:", value.item(), x.grad.tolist())
    x.grad = None
    value = LogSumExp.apply(x)
    value.backward()
    print("custom:", round(value.item(), 3), [round(g, 3) for g in x.grad.tolist()])
    difference = (x.grad - torch.softmax(x.detach(), 0)).abs().max().item()
    print("gradient against torch.softmax, difference < 1e-5:", difference < 1e-5)
    # --8<-- [end:function-demo]

    # --8<-- [start:straight-through-demo]
    x = torch.tensor([0.2, 0.7, 1.6], requires_grad=True)
    (torch.round(x) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    print("round's own gradient:", x.grad.tolist())
    x.grad = None
    rounded = RoundStraightThrough.apply(x)
    (rounded * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    print(
        "straight-through: rounded", rounded.tolist(), "gradient", x.grad.tolist()
    )
    # --8<-- [end:straight-through-demo]

    # --8<-- [start:gradcheck]
    import textwrap
    import warnings

    torch.manual_seed(0)
    x64 = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    print("gradcheck:    ", torch.autograd.gradcheck(LogSumExp.apply, (x64,)))
    print("gradgradcheck:", torch.autograd.gradgradcheck(LogSumExp.apply, (x64,)))
    x32 = x64.detach().float().requires_grad_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.autograd.gradcheck(LogSumExp.apply, (x32,))
        except RuntimeError as error:  # a GradcheckError
            print("float32:", str(error).splitlines()[0])
    print(textwrap.fill("warning: " + str(caught[0].message), 84))
    # --8<-- [end:gradcheck]

    # --8<-- [start:old-style-demo]
    from torch.func import grad, vmap

    x = torch.tensor([0.0, 1.0])
    sines = SineOldStyle.apply(x.requires_grad_())
    print("old style, autograd:", [round(v, 4) for v in sines.tolist()])
    try:
        grad(lambda x: SineOldStyle.apply(x).sum())(x.detach())
    except RuntimeError as error:
        print(textwrap.fill(str(error).split(" For more")[0], 84))
    print("new style under grad:", grad(lambda x: LogSumExp.apply(x))(x.detach()))
    try:
        vmap(LogSumExp.apply)(torch.zeros(4, 2))
    except RuntimeError as error:
        print(textwrap.fill(str(error).split(" For more")[0], 84))
    # --8<-- [end:old-style-demo]

    # --8<-- [start:func-demo]
    x = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    slope = grad(energy)(x)
    print("grad:", [round(v, 4) for v in slope.tolist()])
    with warnings.catch_warnings():  # torch 2.14's forward mode warns about
        warnings.filterwarnings(  # its own use of torch.jit.script
            "ignore", "`torch.jit.script` is deprecated", FutureWarning
        )
        results = {
            "grad": (slope, central_differences(energy, x)),
            "jacrev": (jacrev(field)(x), central_differences(field, x)),
            "jacfwd": (jacfwd(field)(x), central_differences(field, x)),
            "hessian": (hessian(energy)(x), central_differences(grad(energy), x)),
        }
    for name, (exact, estimate) in results.items():
        difference = (exact - estimate).abs().max().item()
        close = difference < 1e-8
        print(f"{name:8} against central differences, difference < 1e-8: {close}")
    print(results["hessian"][0])
    # --8<-- [end:func-demo]

    # --8<-- [start:vmap-demo]
    batch = torch.randn(4, 3, dtype=torch.float64)
    by_vmap = vmap(energy)(batch)
    by_loop = torch.stack([energy(row) for row in batch])
    print("vmap(energy) equals the loop:", torch.allclose(by_vmap, by_loop))
    print("per-row Jacobians:", tuple(vmap(jacrev(field))(batch).shape))
    try:
        vmap(torch.add)(torch.ones(3, 2), torch.ones(4, 2))
    except ValueError as error:
        print(textwrap.fill(str(error), 84))
    # --8<-- [end:vmap-demo]

    # --8<-- [start:per-sample-demo]
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    inputs, labels = torch.randn(32, 8), torch.randint(3, (32,))
    fast = per_sample_gradients(classifier, inputs, labels)
    slow = per_sample_gradients_loop(classifier, inputs, labels)
    for name, g in fast.items():
        same = torch.allclose(g, slow[name], atol=1e-6)
        print(f"{name:9} {tuple(g.shape)!s:13} equals the loop: {same}")
    # --8<-- [end:per-sample-demo]

    # --8<-- [start:ensemble-demo]
    members = [small_network(seed) for seed in range(5)]
    x = torch.randn(6, 3)
    together = ensemble_forward(members, x)
    one_by_one = torch.stack([member(x) for member in members])
    print("outputs:", tuple(together.shape))
    print("equal to one by one:", torch.allclose(together, one_by_one, atol=1e-6))
    # --8<-- [end:ensemble-demo]

    # --8<-- [start:custom-op-demo]
    knots = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    x = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=torch.float64, requires_grad=True)
    y = interp(x, knots, knots**2)
    y.sum().backward()
    print("interp:  ", [round(v, 6) for v in y.tolist()])
    print("gradient:", [round(v, 6) for v in x.grad.tolist()])
    print(
        "gradcheck:",
        torch.autograd.gradcheck(lambda x: interp(x, knots, knots**2), (x,)),
    )
    report = torch.library.opcheck(interp, (x, knots, knots**2))
    for test, outcome in report.items():
        print(f"{test:27} {outcome}")
    # --8<-- [end:custom-op-demo]

    # --8<-- [start:custom-op-errors]
    for bad in [
        (torch.tensor([1, 2]), knots, knots),  # integers
        (x.detach(), knots, knots[:3]),  # 5 knots, 3 values
        (x.detach(), knots.flip(0), knots),  # decreasing knots
    ]:
        try:
            interp(*bad)
        except (TypeError, ValueError) as error:
            print(f"{type(error).__name__}: {textwrap.fill(str(error), 70)}")
    # --8<-- [end:custom-op-errors]

    # --8<-- [start:compile-export]
    torch.manual_seed(0)
    calibrated = Calibrated(torch.linspace(-2.0, 2.0, 9))
    x = torch.randn(6, 3)
    compiled = torch.compile(calibrated, fullgraph=True)
    print("compiled equals eager:", torch.allclose(compiled(x), calibrated(x)))
    exported = torch.export.export(calibrated, (x,))
    ops = [n.target for n in exported.graph.nodes if n.op == "call_function"]
    print("exported graph:", [str(op) for op in ops])
    print(
        "exported equals eager:",
        torch.allclose(exported.module()(x), calibrated(x)),
    )
    # --8<-- [end:compile-export]

    # --8<-- [start:no-fake-demo]
    class Uncalibrated(Calibrated):
        def forward(self, x):
            y = self.linear(x).squeeze(-1)
            return torch.ops.guide.interp_without_fake(y, self.xp, self.fp)

    try:
        torch.export.export(Uncalibrated(torch.linspace(-2.0, 2.0, 9)), (x,))
    except RuntimeError as error:
        print(textwrap.fill(str(error).splitlines()[0], 84))
    # --8<-- [end:no-fake-demo]

    # --8<-- [start:exercise-gradient-norms]
    max_norm = 2.0
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in fast.values()])
    norms = norms.norm(dim=0)  # each example's norm over all parameters
    factor = (max_norm / norms).clamp(max=1.0)
    clipped = {
        name: g * factor.view(-1, *[1] * (g.ndim - 1)) for name, g in fast.items()
    }
    update = {name: g.mean(0) for name, g in clipped.items()}  # the batch's step
    after = torch.stack([g.flatten(1).norm(dim=1) for g in clipped.values()])
    print(f"norms from {norms.min():.2f} to {norms.max():.2f}")
    print("examples clipped:", int((norms > max_norm).sum()), "of", len(norms))
    print("largest norm after:", round(after.norm(dim=0).max().item(), 4))
    # --8<-- [end:exercise-gradient-norms]

    # --8<-- [start:exercise-activation-statistics]
    means = {}

    def record_mean(name):
        def hook(module, args, output):
            means[name] = round(output.mean().item(), 3)

        return hook

    model = small_network()
    handles = [
        m.register_forward_hook(record_mean(name))
        for name, m in model.named_children()
    ]
    model(torch.randn(64, 3))
    for handle in handles:
        handle.remove()
    print(means)
    # --8<-- [end:exercise-activation-statistics]
