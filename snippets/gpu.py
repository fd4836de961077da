"""GPUs (devices, precision, compilation): the code of docs/gpu.md.

Every section runs on a CPU-only machine: the device falls back to the CPU.
Sections that only make sense on a GPU (events, peak memory) define functions,
which the page shows without running: written for CUDA, not yet run on a GPU
here (tests/test_gpu.py runs them where CUDA is available). Definitions are at
module level; what the page runs is at the end, at module level.
"""

# --8<-- [start:pick-device]
import torch


def pick_device():
    """The available accelerator (CUDA, MPS, XPU, ...), or the CPU if none."""
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    return accelerator if accelerator is not None else torch.device("cpu")


# --8<-- [end:pick-device]


# --8<-- [start:time-it]
import statistics
import time

import torch


def time_it(fn, device, warmup=3, repeats=10):
    """Median wall time of fn() in ms, waiting for the device after each call."""

    def sync():
        if torch.device(device).type != "cpu":
            torch.accelerator.synchronize()  # wait until queued kernels ran

    for _ in range(warmup):  # first calls pay one-off costs (kernel choice...)
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


# --8<-- [end:time-it]


# --8<-- [start:events]
import statistics

import torch


def time_events_ms(fn, warmup=3, repeats=10):
    """Median time of fn() in ms between two events on the accelerator's stream:
    from when the device reaches the first to when it reaches the second."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = torch.Event(enable_timing=True)  # on the current accelerator
        end = torch.Event(enable_timing=True)
        start.record()  # queued on the stream, like a kernel
        fn()
        end.record()
        end.synchronize()  # wait for the end event, then read the interval
        times.append(start.elapsed_time(end))
    return statistics.median(times)


# --8<-- [end:events]


# --8<-- [start:loader]
import torch
from torch.utils.data import DataLoader, TensorDataset


def make_loader(dataset, batch_size, device, num_workers=2, shuffle=True):
    """Batches prepared by worker processes, in pinned memory for an accelerator."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,  # prepared in parallel while the device computes
        persistent_workers=num_workers > 0,  # keep the workers between epochs
        # for non_blocking copies (the DataLoader refuses it on MPS, with a warning)
        pin_memory=torch.device(device).type not in ("cpu", "mps"),
    )


# --8<-- [end:loader]


# --8<-- [start:on-device]
import torch


def device_batches(images, labels, batch_size, generator=None):
    """Shuffled mini-batches of tensors that already live on the device."""
    order = torch.randperm(len(images), device=images.device, generator=generator)
    for start in range(0, len(images), batch_size):
        index = order[start : start + batch_size]
        yield images[index], labels[index]


# --8<-- [end:on-device]


# --8<-- [start:grad-scaler]
import torch
from torch import nn


def amp_step(model, optimizer, scaler, x, y, dtype):
    """One mixed-precision training step; with float16 the scaler keeps small
    gradients from flushing to zero. Returns the loss as a tensor on the device:
    reading it (.item()) would wait for the device at every step."""
    with torch.autocast(device_type=x.device.type, dtype=dtype):
        loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    scaler.scale(loss).backward()  # backward of loss * scale
    scaler.step(optimizer)  # unscales the gradients; skips the step on inf/NaN
    scaler.update()  # grows the scale after good steps, shrinks it on overflow
    return loss.detach()


# --8<-- [end:grad-scaler]


# --8<-- [start:compile]
import time

import torch
from torch import nn


def measure_compile(model, example, device, repeats=20):
    """Time model(example) eager, then compile the model in place and time the
    first call (compiling, in s) and the later ones (ms, after warm-up)."""
    eager_ms = time_it(lambda: model(example), device, repeats=repeats)
    model.compile()  # in place: cheap, compiling happens on the first call
    start = time.perf_counter()
    model(example)  # traces the model, generates and compiles kernels
    if torch.device(device).type != "cpu":
        torch.accelerator.synchronize()
    compile_s = time.perf_counter() - start
    compiled_ms = time_it(lambda: model(example), device, repeats=repeats)
    return compile_s, {"eager": eager_ms, "compiled": compiled_ms}


def compiled_train_step(model, optimizer):
    """A training step under torch.compile: Dynamo compiles the forward (with its
    backward) and the update."""

    @torch.compile
    def step(x, y):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


# --8<-- [end:compile]


# --8<-- [start:peak-memory]
import torch


def peak_memory_mb(fn, device="cuda"):
    """Most GPU memory held by tensors while fn() ran, in MB."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 1e6


# --8<-- [end:peak-memory]


# --8<-- [start:oom]
import torch


def largest_batch_that_fits(step, batch_size):
    """Halve the batch size until a training step runs without running out of
    device memory."""
    while batch_size >= 1:
        try:
            step(batch_size)
            return batch_size
        except torch.OutOfMemoryError:
            batch_size //= 2  # the failed step's tensors are freed with the error
    raise RuntimeError("even a batch of 1 does not fit")


def pretend_step(batch_size):  # stands in for a GPU with room for 300 samples
    if batch_size > 300:
        message = f"CUDA out of memory (simulated: batch of {batch_size})"
        raise torch.OutOfMemoryError(message)


# --8<-- [end:oom]


# --8<-- [start:exercise-to-device]
import torch


def to_device(batch, device):
    """Move every tensor in a (nested) tuple, list or dict of tensors to device."""
    if isinstance(batch, torch.Tensor):
        # asynchronous only host -> accelerator: a copy back to the CPU
        # could be read before it has arrived
        return batch.to(device, non_blocking=torch.device(device).type != "cpu")
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(to_device(value, device) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch  # strings, numbers: left alone


# --8<-- [end:exercise-to-device]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.gpu` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:pick-device-demo]
    device = pick_device()
    print("device:", device)
    # --8<-- [end:pick-device-demo]

    # --8<-- [start:accelerator-trap]
    import torch

    # None: a CPU-only or macOS build
    print("torch built for CUDA:", torch.version.cuda)
    print("accelerator available:", torch.accelerator.is_available())
    print("current_accelerator():", torch.accelerator.current_accelerator())
    available = torch.accelerator.current_accelerator(check_available=True)
    print("current_accelerator(check_available=True):", available)
    # --8<-- [end:accelerator-trap]

    # --8<-- [start:move]
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)
    ).to(device)  # once
    # after moving the model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    images, labels = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    images, labels = images.to(device), labels.to(device)  # every batch: a copy
    loss = nn.functional.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print("parameters on:", {p.device.type for p in model.parameters()})
    print("batch on:", images.device, "| loss on:", loss.device)
    print("loss:", round(loss.item(), 4))
    # --8<-- [end:move]

    # --8<-- [start:device-mismatch]
    import torch
    from torch import nn

    # The meta device holds shapes but no data: here it plays "another device".
    layer = nn.Linear(784, 10).to("meta")
    batch = torch.randn(32, 784)  # forgot to move it
    try:
        layer(batch)
    except RuntimeError as error:
        mismatch_message = str(error)
        print("RuntimeError:", mismatch_message)

    weight_device = next(layer.parameters()).device  # the fix: move the batch there
    output = layer(batch.to(weight_device))
    print("fixed:", tuple(output.shape), "on", output.device)

    # A Python number, or a 0-d CPU tensor, mixes with a tensor on any device:
    print("scaled:", (output * 0.5).device, (output * torch.tensor(0.5)).device)
    # --8<-- [end:device-mismatch]

    # --8<-- [start:time-it-demo]
    torch.manual_seed(0)
    a = torch.randn(512, 512, device=device)
    matmul_ms = time_it(lambda: a @ a, device)
    print(f"512x512 matmul on {device}: {matmul_ms:.3f} ms")
    # --8<-- [end:time-it-demo]

    # --8<-- [start:loader-demo]
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(1000, 1, 28, 28, generator=generator)
    dataset = TensorDataset(inputs, torch.randint(0, 10, (1000,)))
    loader = make_loader(dataset, batch_size=256, device=device, num_workers=0)
    for images, labels in loader:
        images = images.to(device, non_blocking=True)  # can overlap with compute
        labels = labels.to(device, non_blocking=True)
    print("batches per epoch:", len(loader), "| last batch:", tuple(images.shape))
    print("pinned:", loader.pin_memory)
    # --8<-- [end:loader-demo]

    # --8<-- [start:on-device-demo]
    mnist_train_bytes = 60_000 * 784 * 4  # 60,000 images of 28x28 float32 pixels
    print(f"MNIST training images as float32: {mnist_train_bytes / 1e6:.0f} MB")

    generator = torch.Generator(device=device).manual_seed(0)
    all_images = torch.randn(1000, 1, 28, 28, device=device)  # moved once
    all_labels = torch.randint(0, 10, (1000,), device=device)
    batches = device_batches(all_images, all_labels, 256, generator)
    print("batch sizes:", [len(x) for x, _ in batches])
    # --8<-- [end:on-device-demo]

    # --8<-- [start:autocast]
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)).to(
        device
    )
    x = torch.randn(64, 784, device=device)
    y = torch.randint(0, 10, (64,), device=device)

    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        hidden = net[0](x)
        logits = net(x)
        probabilities = logits.softmax(dim=1)
        loss = nn.functional.cross_entropy(logits, y)
    loss.backward()  # outside the autocast block
    autocast_dtypes = {
        "input": x.dtype,
        "linear output": hidden.dtype,
        "logits": logits.dtype,
        "softmax": probabilities.dtype,
        "loss": loss.dtype,
        "weight": net[0].weight.dtype,
        "weight.grad": net[0].weight.grad.dtype,
    }
    for name, dtype in autocast_dtypes.items():
        print(f"{name:>14}: {dtype}")
    # --8<-- [end:autocast]

    # --8<-- [start:grad-scaler-demo]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)).to(
        device
    )
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(device.type)  # only needed for float16
    x = torch.randn(64, 784, device=device)
    y = torch.randint(0, 10, (64,), device=device)
    losses = [
        amp_step(net, optimizer, scaler, x, y, torch.float16) for _ in range(5)
    ]
    losses = torch.stack(losses).tolist()  # one wait for the device, at the end
    print("losses:", [round(v, 3) for v in losses])
    print("scale:", scaler.get_scale(), "| master weights:", net[0].weight.dtype)
    # --8<-- [end:grad-scaler-demo]

    # --8<-- [start:oom-demo]
    print("largest batch that fits:", largest_batch_that_fits(pretend_step, 1024))
    # --8<-- [end:oom-demo]

    # --8<-- [start:grad-accumulation]
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))

    net.zero_grad()
    nn.functional.cross_entropy(net(x), y).backward()  # one batch of 64
    big_batch_grad = net[0].weight.grad.clone()

    net.zero_grad()
    steps = 4  # four micro-batches of 16: a quarter of the memory for activations
    for x_part, y_part in zip(x.chunk(steps), y.chunk(steps)):
        # mean of means
        loss = nn.functional.cross_entropy(net(x_part), y_part) / steps
        loss.backward()  # gradients add up in .grad
    accumulated_grad = net[0].weight.grad.clone()
    # then optimizer.step() and optimizer.zero_grad(), once per 4 micro-batches

    difference = (big_batch_grad - accumulated_grad).abs().max().item()
    print(
        "same gradient:",
        torch.allclose(big_batch_grad, accumulated_grad, atol=1e-6),
    )
    print("largest difference below 1e-7:", difference < 1e-7)  # float32 rounding
    # --8<-- [end:grad-accumulation]

    # --8<-- [start:exercise-to-device-demo]
    batch = {"image": torch.zeros(2, 3), "meta": (torch.ones(1), "id-7")}
    moved = to_device(batch, torch.device("meta"))
    print(moved["image"].device, moved["meta"][0].device, moved["meta"][1])
    # --8<-- [end:exercise-to-device-demo]

    # --8<-- [start:exercise-accumulation]
    import torch
    from torch import nn

    torch.manual_seed(0)
    linear = nn.Linear(20, 3)
    x, y = torch.randn(10, 20), torch.randint(0, 3, (10,))

    linear.zero_grad()
    nn.functional.cross_entropy(linear(x), y).backward()
    full_grad = linear.weight.grad.clone()

    linear.zero_grad()
    for x_part, y_part in [(x[:7], y[:7]), (x[7:], y[7:])]:  # 7 and 3 samples
        share = len(x_part) / len(x)  # weight each mean by its share of the samples
        loss = nn.functional.cross_entropy(linear(x_part), y_part) * share
        loss.backward()
    same = torch.allclose(full_grad, linear.weight.grad, atol=1e-6)
    print("same gradient with uneven micro-batches:", same)
    # --8<-- [end:exercise-accumulation]
