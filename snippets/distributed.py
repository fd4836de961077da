"""Data-parallel training with DistributedDataParallel, launched by torchrun.

One script for CPUs and GPUs: each process trains a replica of the model on its
share of the data, and DDP averages the gradients across processes during
backward, so every replica takes the same step (docs/gpu.md).

    torchrun --standalone --nproc-per-node 2 snippets/distributed.py --epochs 5
    torchrun --standalone --nproc-per-node gpu snippets/distributed.py \
        --data-root data  # MNIST, one process per GPU

The script is self-contained (it imports nothing from this project), so it can
be copied and launched anywhere.
"""

# --8<-- [start:ddp-setup]
import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def setup():
    """Join the process group torchrun prepared; return this process's device."""
    # set by torchrun: 0 .. nproc-per-node - 1 on each machine
    local_rank = int(os.environ["LOCAL_RANK"])
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    if accelerator is not None:
        device = torch.device(
            accelerator.type, local_rank
        )  # one device per process
        torch.accelerator.set_device_index(local_rank)
    else:
        device = torch.device("cpu")
    backend = dist.get_default_backend_for_device(device)  # nccl: CUDA; gloo: CPU
    device_id = device if device.type != "cpu" else None
    dist.init_process_group(backend=backend, device_id=device_id)
    return device


def log(*args):
    if dist.get_rank() == 0:  # one line per event, not one per process
        print(*args, flush=True)


# --8<-- [end:ddp-setup]


# --8<-- [start:ddp-data]
def make_dataset(args):
    """A small synthetic classification task (default), or MNIST (--data-root)."""
    if args.data == "synthetic":
        generator = torch.Generator().manual_seed(0)  # identical data on every rank
        features = torch.randn(args.samples, 20, generator=generator)
        teacher = torch.randn(20, 4, generator=generator)
        return TensorDataset(features, (features @ teacher).argmax(1))
    from torchvision import datasets
    from torchvision.transforms import v2

    if int(os.environ["LOCAL_RANK"]) == 0:  # one process per machine gets the files
        datasets.MNIST(args.data_root, train=True, download=True)
    dist.barrier()  # the others wait until the files are there
    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Lambda(torch.flatten),
        ]
    )
    return datasets.MNIST(args.data_root, train=True, transform=transform)


def make_loader(dataset, args):
    # a share for each rank: disjoint when the length divides by the world size,
    # otherwise padded by repeating the first indices (drop_last=True drops them)
    sampler = DistributedSampler(dataset, shuffle=True, seed=args.seed)
    # batch_size is per process: the global batch is batch_size * world_size
    return DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)


# --8<-- [end:ddp-data]


# --8<-- [start:ddp-train]
def train(model, loader, optimizer, device, epochs):
    """Train; return each epoch's loss, averaged over the samples of all ranks."""
    history = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)  # a new shuffle, the same on every rank
        loss_sum, count = torch.zeros((), device=device), 0
        for features, labels in loader:
            features, labels = features.to(device), labels.to(device)
            loss = nn.functional.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            loss.backward()  # DDP averages gradients across ranks, during backward
            optimizer.step()
            # the running loss stays on the device: no synchronization per step
            loss_sum += loss.detach() * len(labels)
            count += len(labels)
        total = torch.stack([loss_sum, torch.tensor(float(count), device=device)])
        dist.all_reduce(total)  # summed over ranks: every rank holds the totals
        history.append((total[0] / total[1]).item())
        log(f"epoch {epoch}: loss {history[-1]:.4f}")
    return history


# --8<-- [end:ddp-train]


# --8<-- [start:ddp-save]
def parameter_checksum(model):
    """A hash of every parameter's bytes: equal on all ranks if replicas agree."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_atomically(obj, path, write):
    """Write to a temporary file next to path, then rename it: a crash never
    leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(obj, tmp)
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())  # on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(model, args, history):
    checksums = [None] * dist.get_world_size()
    # a collective: every rank calls it
    dist.all_gather_object(checksums, parameter_checksum(model.module))
    pids = [None] * dist.get_world_size()
    dist.all_gather_object(pids, os.getpid())
    if dist.get_rank() == 0:  # one writer
        if args.save:
            state = model.module.state_dict()  # .module: the unwrapped model
            save_atomically(state, args.save, torch.save)
        if args.summary:
            summary = {
                "world_size": dist.get_world_size(),
                "backend": dist.get_backend(),
                "loss": history,
                "checksums": checksums,
                "pids": pids,
            }

            def write_json(obj, path):
                Path(path).write_text(json.dumps(obj, indent=1))

            save_atomically(summary, args.summary, write_json)
    dist.barrier()  # nobody exits (or reads the files) before rank 0 wrote them


# --8<-- [end:ddp-save]


# --8<-- [start:ddp-main]
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train an MLP with DistributedDataParallel (use torchrun)."
    )
    parser.add_argument(
        "--data", choices=["synthetic", "mnist"], default="synthetic"
    )
    parser.add_argument(
        "--data-root", help="MNIST root folder (implies --data mnist)"
    )
    parser.add_argument(
        "--samples", type=int, default=2048, help="size of the synthetic dataset"
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", help="checkpoint path (written by rank 0)")
    parser.add_argument("--summary", help="JSON summary path (written by rank 0)")
    args = parser.parse_args(argv)
    if args.data_root:
        args.data = "mnist"
    elif args.data == "mnist":
        parser.error("--data mnist needs --data-root")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = setup()
    try:
        dataset = make_dataset(args)
        n_in = dataset[0][0].numel()
        # the same initial weights everywhere (DDP also broadcasts rank 0's)
        torch.manual_seed(args.seed)
        model = nn.Sequential(nn.Linear(n_in, 128), nn.ReLU(), nn.Linear(128, 10))
        model = model.to(device)  # 10 classes at most
        model = DistributedDataParallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
        log(
            f"{dist.get_world_size()} processes, backend {dist.get_backend()}, "
            f"device type {device.type}"
        )
        loader = make_loader(dataset, args)
        history = train(model, loader, optimizer, device, args.epochs)
        save(model, args, history)
    finally:
        dist.destroy_process_group()  # clean shutdown, even after an error


if __name__ == "__main__":
    main()
# --8<-- [end:ddp-main]
