"""Data-parallel training with DistributedDataParallel, launched by torchrun (docs/gpu.md).

One script for CPUs and GPUs: each process trains a replica of the model on its share of the data, and DDP averages
the gradients across processes during backward, so every replica takes the same step.

    torchrun --standalone --nproc-per-node 2 snippets/distributed.py --epochs 5
    torchrun --standalone --nproc-per-node gpu snippets/distributed.py --data-root data   # every GPU, MNIST

The script is self-contained (it imports nothing from this project), so it can be copied and launched anywhere.
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
    local_rank = int(os.environ["LOCAL_RANK"])  # set by torchrun: 0..nproc-per-node-1 on each machine
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    if accelerator is not None:
        device = torch.device(accelerator.type, local_rank)  # one device per process
        torch.accelerator.set_device_index(local_rank)
    else:
        device = torch.device("cpu")
    backend = dist.get_default_backend_for_device(device)  # nccl for CUDA, gloo for CPU
    dist.init_process_group(backend=backend, device_id=device if device.type != "cpu" else None)
    return device


def log(*args):
    if dist.get_rank() == 0:  # one line per event, not one per process
        print(*args, flush=True)
# --8<-- [end:ddp-setup]


# --8<-- [start:ddp-data]
def make_dataset(args):
    """A small synthetic classification task (the default) or MNIST from --data-root."""
    if args.data == "synthetic":
        generator = torch.Generator().manual_seed(0)  # identical data on every rank
        features = torch.randn(args.samples, 20, generator=generator)
        teacher = torch.randn(20, 4, generator=generator)
        return TensorDataset(features, (features @ teacher).argmax(1))
    from torchvision import datasets, transforms

    if int(os.environ["LOCAL_RANK"]) == 0:  # one process per machine downloads or extracts the files
        datasets.MNIST(args.data_root, train=True, download=True)
    dist.barrier()  # the others wait until the files are there
    transform = transforms.Compose([transforms.ToTensor(), transforms.Lambda(torch.flatten)])
    return datasets.MNIST(args.data_root, train=True, transform=transform)


def make_loader(dataset, args):
    sampler = DistributedSampler(dataset, shuffle=True, seed=args.seed)  # a disjoint share for each rank
    # batch_size is per process: the global batch is batch_size * world_size
    return DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)
# --8<-- [end:ddp-data]


# --8<-- [start:ddp-train]
def train(model, loader, optimizer, device, epochs):
    """Train; return the loss of each epoch, averaged over all samples of all ranks."""
    history = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
        loss_sum, count = torch.zeros((), device=device), 0
        for features, labels in loader:
            features, labels = features.to(device), labels.to(device)
            loss = nn.functional.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            loss.backward()  # DDP all-reduces (averages) the gradients here, overlapped with backward
            optimizer.step()
            loss_sum += loss.detach() * len(labels)  # stays on the device: no synchronization per step
            count += len(labels)
        total = torch.stack([loss_sum, torch.tensor(float(count), device=device)])
        dist.all_reduce(total)  # sum over ranks: every rank now holds the global numbers
        history.append((total[0] / total[1]).item())
        log(f"epoch {epoch}: loss {history[-1]:.4f}")
    return history
# --8<-- [end:ddp-train]


# --8<-- [start:ddp-save]
def parameter_checksum(model):
    """A hash of every parameter's bytes: equal on all ranks if the replicas stayed in sync."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_atomically(obj, path, write):
    """Write to a temporary file next to path, then rename: a crash never leaves a half-written file."""
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
    dist.all_gather_object(checksums, parameter_checksum(model.module))  # collective: every rank calls it
    pids = [None] * dist.get_world_size()
    dist.all_gather_object(pids, os.getpid())
    if dist.get_rank() == 0:  # one writer
        if args.save:
            save_atomically(model.module.state_dict(), args.save, torch.save)  # .module: the unwrapped model
        if args.summary:
            summary = {"world_size": dist.get_world_size(), "backend": dist.get_backend(), "loss": history,
                       "checksums": checksums, "pids": pids}
            save_atomically(summary, args.summary, lambda s, p: Path(p).write_text(json.dumps(s, indent=1)))
    dist.barrier()  # nobody exits (or reads the files) before rank 0 has written them
# --8<-- [end:ddp-save]


# --8<-- [start:ddp-main]
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train an MLP with DistributedDataParallel (launch with torchrun).")
    parser.add_argument("--data", choices=["synthetic", "mnist"], default="synthetic")
    parser.add_argument("--data-root", help="MNIST root folder (implies --data mnist)")
    parser.add_argument("--samples", type=int, default=2048, help="size of the synthetic dataset")
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
        torch.manual_seed(args.seed)  # same initial weights everywhere (DDP also broadcasts rank 0's)
        model = nn.Sequential(nn.Linear(n_in, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)  # 10 classes at most
        model = DistributedDataParallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
        log(f"{dist.get_world_size()} processes, backend {dist.get_backend()}, device type {device.type}")
        history = train(model, make_loader(dataset, args), optimizer, device, args.epochs)
        save(model, args, history)
    finally:
        dist.destroy_process_group()  # clean shutdown, even after an error


if __name__ == "__main__":
    main()
# --8<-- [end:ddp-main]
