"""Performance: measure, then make it fast: the code of docs/performance.md.

How to time code (torch.utils.benchmark) and see where its time goes (the
profiler), what a training step keeps in memory and how checkpointing and
gradient accumulation trade it for compute, float16 against bfloat16, where a
NaN starts, and torch.compile's graph breaks, recompilations and stances. Other
code may import ``mnist_mlp``, ``training_step``, ``saved_activation_bytes``,
``bytes_of``, ``first_nonfinite`` and the two ``branchy``/``branchless``
functions.
"""

# --8<-- [start:load]
import math

import torch
import torch.nn.functional as F
from torch import nn


def mnist_mlp(hidden=128, seed=0):
    """The MNIST chapter's network (its ``build_model((128,))``): 784 pixels,
    one hidden layer of 128, 10 logits."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )


def a_batch(size=512, seed=0):
    """Random images and labels with MNIST's shapes."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(size, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (size,), generator=generator)
    return images, labels


def training_step(model, optimizer, images, labels):
    """One step: forward, loss, backward, update. Returns the loss tensor."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss


# --8<-- [end:load]

# --8<-- [start:timer]
from torch.utils import benchmark


def timer_for(model, images, threads=1):
    """A Timer for the model's forward pass on ``images``."""
    return benchmark.Timer(
        stmt="model(images)",
        globals={"model": model, "images": images},
        num_threads=threads,
        label="MNIST MLP",
        description="forward, batch 512",
    )


# --8<-- [end:timer]

# --8<-- [start:profile]
from torch.profiler import ProfilerActivity, profile, record_function, schedule

REGIONS = ("forward", "backward", "optimizer step")


def profiled_step(model, optimizer, images, labels):
    """A training step with each part in a named region of the profile."""
    optimizer.zero_grad(set_to_none=True)
    with record_function("forward"):
        loss = F.cross_entropy(model(images), labels)
    with record_function("backward"):
        loss.backward()
    with record_function("optimizer step"):
        optimizer.step()


def region_counts(prof):
    """How many times each named region was recorded."""
    events = prof.key_averages()
    return {event.key: event.count for event in events if event.key in REGIONS}


# --8<-- [end:profile]


# --8<-- [start:memory]
def bytes_of(tensors):
    """The bytes of ``tensors``, each storage counted once."""
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage() for t in tensors
    }
    return sum(storage.nbytes() for storage in storages.values())


def saved_activation_bytes(model, images, labels):
    """The bytes autograd saves for backward during one forward pass, the
    parameters left out (they are kept anyway)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = []

    def keep(tensor):
        if tensor.untyped_storage().data_ptr() not in parameters:
            saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        loss = F.cross_entropy(model(images), labels)
    return bytes_of(saved), loss


# --8<-- [end:memory]

# --8<-- [start:checkpoint]
from torch.utils.checkpoint import checkpoint


def deep_mlp(depth=4, hidden=256, seed=0):
    """``depth`` hidden layers of ``hidden`` units: a body, then a head."""
    torch.manual_seed(seed)
    layers = [nn.Linear(784, hidden), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), nn.ReLU()]
    return nn.Sequential(
        nn.Flatten(), nn.Sequential(*layers), nn.Linear(hidden, 10)
    )


class Checkpointed(nn.Module):
    """The same network, its body recomputed during backward: only the body's
    input and output are kept, not what the layers inside it save."""

    def __init__(self, network):
        super().__init__()
        self.flatten, self.body, self.head = network

    def forward(self, images):
        x = self.flatten(images)
        return self.head(checkpoint(self.body, x, use_reentrant=False))


# --8<-- [end:checkpoint]

# --8<-- [start:compile]
import torch._dynamo


def branchy(x):
    """A data-dependent ``if``: Python must see the value to pick a branch."""
    if x.sum() > 0:
        return torch.relu(x) * 2
    return x - 1


def branchless(x):
    """The same function, both branches computed, one kept by ``torch.where``."""
    return torch.where(x.sum() > 0, torch.relu(x) * 2, x - 1)


# --8<-- [end:compile]


# --8<-- [start:recompile]
def scale_rows(x):
    return x * 2 + 1


graphs = []


def counting_backend(graph_module, example_inputs):
    """A torch.compile backend that keeps each graph and runs it as it is."""
    graphs.append(graph_module)
    return graph_module.forward


# --8<-- [end:recompile]

# --8<-- [start:graph-break-log]
import logging


class KeepMessages(logging.Handler):
    """A logging handler that keeps every message, to read them in code."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


# --8<-- [end:graph-break-log]

# --8<-- [start:nan-hooks]
import torch


def first_nonfinite(model, inputs):
    """Run ``model`` on ``inputs``; return the name of the first module whose
    output holds an inf or a NaN (None if none does)."""
    found = []

    def check(name):
        def hook(module, args, output):
            if not found and not torch.isfinite(output).all():
                found.append(name)

        return hook

    handles = [
        module.register_forward_hook(check(name))
        for name, module in model.named_modules()
        if not list(module.children())  # the layers, not their containers
    ]
    try:
        model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


class LogFeatures(nn.Module):
    """A layer with a bug: the log of a ReLU's output, which can be 0."""

    def forward(self, x):
        return torch.log(x)


# --8<-- [end:nan-hooks]


# --8<-- [start:exercise-graph-break]
def clipped_scale(x, limit=1.0):
    """Scale ``x`` down so that its largest absolute value is at most ``limit``."""
    largest = x.abs().max().item()  # a Python float: the graph ends here
    if largest > limit:
        return x * (limit / largest)
    return x


def clipped_scale_fixed(x, limit=1.0):
    """The same in tensors: dividing by max(largest, limit) scales by 1 when
    ``x`` is already within the limit."""
    largest = x.abs().max()
    return x * (limit / largest.clamp(min=limit))


# --8<-- [end:exercise-graph-break]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.performance` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:timer-demo]
    model = mnist_mlp()
    images, labels = a_batch()
    timer = timer_for(model, images)
    fixed = timer.timeit(20)  # 20 timed runs (after 2 warm-up runs)
    print(f"runs: {fixed.number_per_run}, threads: {fixed.num_threads}")
    auto = timer.blocked_autorange(min_run_time=0.05)  # as many runs as it needs
    print("blocked_autorange returns a", type(auto).__name__)
    # --8<-- [end:timer-demo]

    # --8<-- [start:profile-demo]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with profile(
        activities=[ProfilerActivity.CPU],
        schedule=schedule(wait=1, warmup=1, active=2, repeat=1),
    ) as prof:
        for _ in range(5):
            profiled_step(model, optimizer, images, labels)
            prof.step()  # moves the schedule on: wait, warm up, record, stop
    for name, count in sorted(region_counts(prof).items()):
        print(f"{name:>15}: recorded {count} times")
    # --8<-- [end:profile-demo]

    # --8<-- [start:compile-demo]
    x = torch.randn(8, generator=torch.Generator().manual_seed(0))
    for function in (branchy, branchless):
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(function)(x)
        print(
            f"{function.__name__:>10}: {explanation.graph_count} graph(s), "
            f"{explanation.graph_break_count} break(s)"
        )
    reason = torch._dynamo.explain(branchy)(x).break_reasons[0].reason
    print("why:", reason.splitlines()[0][:70])
    # --8<-- [end:compile-demo]

    # --8<-- [start:recompile-demo]
    for dynamic in (None, False, True):
        torch._dynamo.reset()  # forget every compiled version
        graphs.clear()
        compiled = torch.compile(
            scale_rows, backend=counting_backend, dynamic=dynamic
        )
        counts = []
        for size in (4, 8, 16, 32):
            compiled(torch.ones(size))
            counts.append(len(graphs))
        print(f"dynamic={dynamic!s:>5}: graphs after each call {counts}")

    torch._dynamo.reset()
    graphs.clear()
    compiled = torch.compile(scale_rows, backend=counting_backend)
    first = torch.ones(4)
    torch._dynamo.mark_dynamic(first, 0)  # dimension 0 will change: compile for any
    compiled(first)
    compiled(torch.ones(9))
    print("mark_dynamic:", len(graphs), "graph")
    # --8<-- [end:recompile-demo]

    # --8<-- [start:graph-break-log-demo]
    torch._dynamo.reset()
    kept = KeepMessages()
    dynamo_log = logging.getLogger("torch._dynamo")  # where TORCH_LOGS writes
    dynamo_log.addHandler(kept)  # a copy for us; stderr still gets its own
    torch._logging.set_logs(graph_breaks=True)  # as TORCH_LOGS="graph_breaks"
    torch.compile(branchy, backend=counting_backend)(x)
    torch._logging.set_logs()  # the defaults again: graph breaks not logged
    dynamo_log.removeHandler(kept)
    print("messages logged:", len(kept.messages))
    lines = kept.messages[0].splitlines()
    print(next(line for line in lines if line.startswith("Graph Break Reason")))
    # --8<-- [end:graph-break-log-demo]

    # --8<-- [start:fullgraph]
    torch._dynamo.reset()
    strict = torch.compile(branchy, backend=counting_backend, fullgraph=True)
    try:
        strict(x)
    except torch._dynamo.exc.Unsupported as error:  # a RuntimeError
        print(f"{type(error).__name__}: {str(error).splitlines()[0]}")
    # --8<-- [end:fullgraph]

    # --8<-- [start:stance]
    torch._dynamo.reset()
    graphs.clear()
    compiled = torch.compile(scale_rows, backend=counting_backend, dynamic=False)
    with torch.compiler.set_stance("force_eager"):
        compiled(torch.ones(4))  # runs the Python function: nothing compiled
    print("force_eager:", len(graphs), "graphs")
    compiled(torch.ones(4))  # the default stance again: compiles for size 4
    print("default:", len(graphs), "graph")
    with torch.compiler.set_stance("fail_on_recompile"):
        compiled(torch.ones(4))  # size 4 is compiled already: runs
        try:
            compiled(torch.ones(8))  # size 8 would need a second graph
        except RuntimeError as error:
            print(f"{type(error).__name__}: {str(error).split(' filename')[0]}")
    with torch.compiler.set_stance("eager_on_recompile"):
        compiled(torch.ones(8))  # runs uncompiled instead of compiling
    print("eager_on_recompile:", len(graphs), "graph")
    # --8<-- [end:stance]

    # --8<-- [start:memory-demo]
    model = mnist_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    training_step(model, optimizer, images, labels)
    parameters = bytes_of(model.parameters())
    gradients = bytes_of(p.grad for p in model.parameters())
    adam_state = bytes_of(
        t for state in optimizer.state.values() for t in state.values() if t.ndim
    )
    activations, loss = saved_activation_bytes(model, images, labels)
    for name, size in [
        ("parameters", parameters),
        ("gradients", gradients),
        ("Adam's two averages", adam_state),
        ("saved activations", activations),
    ]:
        print(f"{name:>19}: {size:>9,} bytes")
    # --8<-- [end:memory-demo]

    # --8<-- [start:checkpoint-demo]
    plain = deep_mlp()
    checkpointed = Checkpointed(deep_mlp())  # the same seed: the same weights
    both = []
    for network in (plain, checkpointed):
        saved, loss = saved_activation_bytes(network, images, labels)
        loss.backward()
        both.append([p.grad for p in network.parameters()])
        print(f"{type(network).__name__:>12}: autograd saves {saved:>9,} bytes")
    same = all(torch.equal(a, b) for a, b in zip(*both))
    print("the same gradients:", same)
    # --8<-- [end:checkpoint-demo]

    # --8<-- [start:accumulation]
    model = mnist_mlp()
    F.cross_entropy(model(images), labels).backward()  # one batch of 512
    whole = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    parts = 4  # four micro-batches of 128
    for part_images, part_labels in zip(images.chunk(parts), labels.chunk(parts)):
        loss = F.cross_entropy(model(part_images), part_labels) / parts
        loss.backward()  # adds to .grad, then frees this micro-batch's activations
    accumulated = [p.grad for p in model.parameters()]
    pairs = list(zip(whole, accumulated))
    print("the same gradients:", all(torch.allclose(a, b) for a, b in pairs))
    difference = max((a - b).abs().max().item() for a, b in pairs)
    print("largest difference below 1e-7:", difference < 1e-7)  # float rounding
    for size in (512, 128):  # a batch of its own: a slice shares the whole storage
        saved, _ = saved_activation_bytes(model, *a_batch(size))
        print(f"batch {size}: autograd saves {saved:>9,} bytes")
    # --8<-- [end:accumulation]

    # --8<-- [start:finfo]
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        info = torch.finfo(dtype)
        print(
            f"{str(dtype):>14}: max {info.max:9.3g}, tiny {info.tiny:9.3g}, "
            f"eps {info.eps:.3g}"
        )
    # --8<-- [end:finfo]

    # --8<-- [start:overflow]
    big = torch.tensor([70_000.0])
    small = torch.tensor([1e-8])
    for dtype in (torch.float16, torch.bfloat16):
        print(
            f"{str(dtype):>14}: 70000 -> {big.to(dtype).item():g}, "
            f"1e-8 -> {small.to(dtype).item():.3g}, "
            f"257 -> {torch.tensor(257.0).to(dtype).item():g}"
        )
    # --8<-- [end:overflow]

    # --8<-- [start:loss-scaling]
    gradient = torch.tensor([1e-8, 3e-6, 0.5])  # float32, as backward gives them
    scale = 2.0**16
    stored = {
        "in float16": gradient.to(torch.float16).float(),
        "scaled by 2**16, back": (gradient * scale).to(torch.float16).float()
        / scale,
        "scaled by 2**18": (gradient * 2.0**18).to(torch.float16).float(),
    }
    for name, values in stored.items():
        print(f"{name:>21}:", ", ".join(f"{v:.3g}" for v in values.tolist()))
    # --8<-- [end:loss-scaling]

    # --8<-- [start:grad-scaler]
    torch.manual_seed(0)
    layer = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # far too large
    inputs = 1000 * torch.randn(8, 4)  # large inputs: large gradients
    targets = torch.randint(0, 2, (8,))
    initial_weight = layer.weight.detach().clone()
    scales = []
    for step in range(3):
        optimizer.zero_grad(set_to_none=True)
        scales.append(scaler.get_scale())
        loss = F.cross_entropy(layer(inputs), targets)
        scaler.scale(loss).backward()  # the gradients of scale * loss: inf
        scaler.step(optimizer)  # finds the inf and skips optimizer.step()
        scaler.update()  # halves the scale
        print(f"step {step}: scale 2**{math.log2(scales[-1]):.0f}", end=", ")
        print("weights unchanged:", torch.equal(layer.weight, initial_weight))
    # --8<-- [end:grad-scaler]

    # --8<-- [start:precision-defaults]
    print("float32 matmul precision:", torch.get_float32_matmul_precision())
    print("cuDNN convolutions:", torch.backends.cudnn.conv.fp32_precision)
    # --8<-- [end:precision-defaults]

    # --8<-- [start:nan-hooks-demo]
    from collections import OrderedDict

    torch.manual_seed(0)
    layers = OrderedDict(
        hidden=nn.Linear(4, 8), relu=nn.ReLU(), out=nn.Linear(8, 2)
    )
    clean = nn.Sequential(layers)
    buggy = nn.Sequential(  # the same layers, and the log of the ReLU's output
        OrderedDict(
            hidden=layers["hidden"],
            relu=nn.ReLU(),
            log=LogFeatures(),
            out=layers["out"],
        )
    )
    inputs = torch.randn(3, 4)
    corrupt = inputs.clone()
    corrupt[0, 0] = float("inf")  # one bad value in the data
    print("clean model, finite input:", first_nonfinite(clean, inputs))
    print("clean model, an inf in the input:", first_nonfinite(clean, corrupt))
    print("log of a ReLU, finite input:", first_nonfinite(buggy, inputs))
    # --8<-- [end:nan-hooks-demo]

    # --8<-- [start:exercise-sgd]
    model = mnist_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    training_step(model, optimizer, images, labels)
    momentum = bytes_of(
        state["momentum_buffer"] for state in optimizer.state.values()
    )
    print(f"momentum buffers: {momentum:,} bytes, parameters: {parameters:,} bytes")
    # --8<-- [end:exercise-sgd]

    # --8<-- [start:exercise-graph-break-demo]
    values = 3 * torch.randn(8, generator=torch.Generator().manual_seed(0))
    for function in (clipped_scale, clipped_scale_fixed):
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(function)(values)
        print(f"{function.__name__:>19}: {explanation.graph_break_count} break(s)")
    for limit in (1.0, 10.0):  # scaled down, and left as it is
        same = torch.allclose(
            clipped_scale(values, limit), clipped_scale_fixed(values, limit)
        )
        print(f"limit {limit:g}: the same values: {same}")
    # --8<-- [end:exercise-graph-break-demo]

    # --8<-- [start:exercise-activations]
    batch, hidden, classes = 128, 128, 10
    by_hand = {
        "images, saved by the first Linear": batch * 784 * 4,
        "ReLU output, saved once for two uses": batch * hidden * 4,
        "log-softmax, saved by the loss": batch * classes * 4,
        "labels (int64)": batch * 8,
        "the loss's total weight (a scalar)": 4,
    }
    model = mnist_mlp()
    measured = {
        size: saved_activation_bytes(model, *a_batch(size))[0]
        for size in (128, 512)
    }
    print(f"by hand: {sum(by_hand.values()):,} bytes, measured: {measured[128]:,}")
    print(f"batch 512 / batch 128: {measured[512] / measured[128]:.6f}")
    # --8<-- [end:exercise-activations]
