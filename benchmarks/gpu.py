"""CPU vs GPU benchmark of an MNIST MLP (docs/gpu.md): four ways to train it.

    python -m benchmarks.gpu --data-root data --record

benchmarks the CPU and, when there is one, the accelerator, and writes
docs/records/gpu.json. Without an accelerator the GPU entry is left empty,
with the reason. The CPU's vector instruction sets are recorded with it. Variants:

- ``dataloader``: torchvision's MNIST through a DataLoader (PIL images,
  transforms.v2), worker processes, pinned memory and non-blocking copies on CUDA;
- ``on-device``: the whole dataset preloaded on the device, batches by indexing;
- ``amp``: on-device + autocast (bfloat16; float16 with a GradScaler where
  bfloat16 is not supported);
- ``compile``: on-device + the model compiled in place with ``model.compile()``
  (its first epoch includes compiling).
"""

import argparse
import os
import statistics
import sys
import time

import torch
from site_tools.records import device_description, write_record
from torch import nn
from torch.utils.data import DataLoader

VARIANTS = ("dataloader", "on-device", "amp", "compile")
MEAN, STD = 0.1307, 0.3081  # MNIST training-set pixel statistics
NO_GPU = "not recorded: no GPU was available in the session that made this record"


def build_model(hidden=(256, 128)):
    """The MNIST classifier: an MLP, 784 pixels in, 10 logits out."""
    layers, width = [nn.Flatten()], 784
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def synchronize(device):
    if device.type != "cpu":
        torch.accelerator.synchronize()


def preload(images_uint8, labels, device):
    """uint8 images (N, 28, 28) -> normalised float32 (N, 1, 28, 28) on device."""
    images = (
        images_uint8.to(device).unsqueeze(1).float().div_(255).sub_(MEAN).div_(STD)
    )
    return images, labels.to(device)


# --8<-- [start:bench-step]
def amp_dtype(device):
    """bfloat16 where the device supports it (no scaler needed), else float16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def train_epoch(model, optimizer, batches, device, amp, scaler, scheduler):
    """One epoch; returns the number of images seen. model may be compiled in
    place (model.compile()); amp is None or a 16-bit dtype."""
    model.train()
    seen = 0
    for images, labels in batches:
        # a no-op for the on-device variants
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        dtype = amp or torch.float32
        with torch.autocast(device.type, dtype=dtype, enabled=amp is not None):
            loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        seen += len(images)
    synchronize(device)  # kernels run asynchronously: wait before reading the clock
    return seen


# --8<-- [end:bench-step]


@torch.inference_mode()
def accuracy(model, images, labels, batch_size=2000):
    model.eval()
    correct = 0
    # a compiled model evaluates eagerly: no compilation for evaluation's shapes
    with torch.compiler.set_stance("force_eager"):
        for start in range(0, len(images), batch_size):
            batch = slice(start, start + batch_size)
            predicted = model(images[batch]).argmax(1)
            correct += (predicted == labels[batch]).sum().item()
    return correct / len(images)


def device_batches(images, labels, batch_size, generator):
    """Shuffled full batches of tensors on the device (the last partial dropped)."""
    order = torch.randperm(len(images), device=images.device, generator=generator)
    for start in range(0, len(images) - batch_size + 1, batch_size):
        index = order[start : start + batch_size]
        yield images[index], labels[index]


def run_variant(
    variant,
    device,
    train_set,
    test_set,
    hidden=(256, 128),
    batch_size=128,
    lr=3e-3,
    target=0.98,
    max_epochs=10,
    num_workers=None,
    seed=0,
):
    """Train from the same seed until the test accuracy reaches ``target`` (or
    ``max_epochs``); return the metrics.

    ``train_set`` is a Dataset of (image tensor, label) for the DataLoader
    variant and carries ``.data`` (uint8 images) and ``.targets`` for the
    preloaded ones; ``test_set`` is a pair of tensors (images, labels).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: choose from {VARIANTS}")
    device = torch.device(device)
    torch.manual_seed(seed)
    model = build_model(hidden).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    # One-cycle over max_epochs (the MNIST chapter's recipe); lr is its peak.
    # Every variant drops the last partial batch.
    steps_per_epoch = len(train_set) // batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max_epochs * steps_per_epoch
    )
    if variant == "compile":
        model.compile()  # in place, as the chapter recommends
    amp = amp_dtype(device) if variant == "amp" else None
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    test_images, test_labels = preload(*test_set, device)

    start = time.perf_counter()
    if variant == "dataloader":
        if num_workers is None:
            num_workers = min(4, os.cpu_count() or 1)
        loader = DataLoader(
            train_set,
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )

        def epoch_batches():
            return loader
    else:
        train_images, train_labels = preload(
            train_set.data, train_set.targets, device
        )
        generator = torch.Generator(device=device).manual_seed(seed)

        def epoch_batches():
            return device_batches(train_images, train_labels, batch_size, generator)

    synchronize(device)
    setup_s = time.perf_counter() - start

    epoch_s, images_per_s, accuracies = [], [], []
    time_to_target = epochs_to_target = None
    for _ in range(max_epochs):
        start = time.perf_counter()
        seen = train_epoch(
            model,
            optimizer,
            epoch_batches(),
            device,
            amp,
            scaler,
            scheduler,
        )
        epoch_s.append(time.perf_counter() - start)
        images_per_s.append(seen / epoch_s[-1])
        accuracies.append(accuracy(model, test_images, test_labels))  # not timed
        if accuracies[-1] >= target:
            time_to_target, epochs_to_target = sum(epoch_s), len(epoch_s)
            break
    # the first epoch pays warm-up (and compilation)
    steady = images_per_s[1:] or images_per_s
    return {
        "setup_s": round(setup_s, 3),
        "epoch_s": [round(s, 3) for s in epoch_s],
        "images_per_s": round(statistics.median(steady), 1),
        "accuracy": [round(a, 4) for a in accuracies],
        "time_to_target_s": None
        if time_to_target is None
        else round(time_to_target, 3),
        "epochs_to_target": epochs_to_target,
        "amp_dtype": None if amp is None else str(amp).removeprefix("torch."),
    }


def load_mnist(root):
    """torchvision's MNIST: train with per-image transforms, test as tensors."""
    from torchvision import datasets
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((MEAN,), (STD,)),
        ]
    )
    train = datasets.MNIST(root, train=True, download=True, transform=transform)
    test = datasets.MNIST(root, train=False, download=True)
    return train, (test.data, test.targets)


def benchmark(train_set, test_set, devices, variants=VARIANTS, **options):
    """A record's metrics: per device kind ('cpu', 'gpu') the runs of every
    variant, or None if missing."""
    results = {"cpu": None, "gpu": None}
    missing = {}
    # other work on the machine slows the CPU runs: say how busy it was
    load_before = os.getloadavg()[0]
    names = {}
    for device in devices:
        device = torch.device(device)
        kind = "cpu" if device.type == "cpu" else "gpu"
        names[kind] = device_description(device)
        runs = {}
        for variant in variants:
            runs[variant] = run_variant(
                variant, device, train_set, test_set, **options
            )
            print(f"{kind} {variant}: {runs[variant]}", flush=True)
        results[kind] = {
            "device": str(device),
            "device_name": names[kind],
            "variants": runs,
        }
        if kind == "cpu":
            results[kind]["instruction_sets"] = cpu_instruction_sets()
    if results["gpu"] is None:
        missing["gpu"] = NO_GPU
    if results["cpu"] is None:
        missing["cpu"] = "not recorded: the CPU was not benchmarked in this run"
    config = {
        key: options.get(key, default)
        for key, default in [
            ("hidden", (256, 128)),
            ("batch_size", 128),
            ("lr", 3e-3),
            ("target", 0.98),
            ("max_epochs", 10),
        ]
    }
    config["hidden"] = list(config["hidden"])
    config["target_accuracy"] = config.pop("target")
    load = {
        "before": round(load_before, 2),
        "after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    return {
        "devices": results,
        "missing": missing,
        "config": config,
        "variants": list(variants),
        "load_average_1min": load,
    }


def cpu_instruction_sets():
    """What the CPU's vector units can do: torch's kernel level, and the flags
    behind bfloat16 speed (AVX-512 BF16, AMX) as the Linux kernel reports them."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            line = next(line for line in cpuinfo if line.startswith("flags"))
        flags = set(line.split(":", 1)[1].split())
    except (OSError, StopIteration):
        pass
    wanted = [
        "avx2",
        "avx512f",
        "avx512_bf16",
        "avx512_fp16",
        "amx_bf16",
        "amx_tile",
    ]
    return {
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "flags": [flag for flag in wanted if flag in flags],
    }


def default_devices():
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    return ["cpu"] + ([str(accelerator)] if accelerator is not None else [])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-root",
        default="data",
        help="folder holding MNIST/raw (see the chapter)",
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        default=None,
        help="default: cpu and the accelerator, if any",
    )
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS
    )
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/gpu.json"
    )
    parser.add_argument("--records-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    devices = args.devices or default_devices()
    train_set, test_set = load_mnist(args.data_root)
    metrics = benchmark(
        train_set, test_set, devices, args.variants, max_epochs=args.max_epochs
    )
    if args.record:
        gpu = metrics["devices"]["gpu"]
        extra = (
            {} if args.records_dir is None else {"records_dir": args.records_dir}
        )
        path = write_record(
            "gpu",
            metrics,
            [__file__],
            gpu["device"] if gpu else "cpu",
            command=" ".join(["python -m benchmarks.gpu", *(argv or sys.argv[1:])]),
            **extra,
        )
        print("recorded", path)
    return metrics


if __name__ == "__main__":
    main()
