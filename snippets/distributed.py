"""Data-parallel training with DistributedDataParallel, launched by torchrun.

One script for CPUs and GPUs: each process trains a replica of the model on its
share of the data, and DDP averages the gradients across processes during
backward, so every replica takes the same step (docs/distributed.md). With
--strategy fsdp, FSDP2 shards the parameters across the processes instead; with
--checkpoint-dir, every epoch is checkpointed atomically and a restarted run
resumes from the latest checkpoint (torchrun --max-restarts).

    torchrun --standalone --nproc-per-node 2 snippets/distributed.py --epochs 5
    torchrun --standalone --nproc-per-node gpu snippets/distributed.py \
        --data-root data  # MNIST, one process per GPU (written for NCCL, not
                          # yet run on a GPU here: tested with Gloo only)
    torchrun --standalone --nproc-per-node 2 --max-restarts 3 \
        snippets/distributed.py --checkpoint-dir checkpoints

The script is self-contained (it imports nothing from this project), so it can
be copied and launched anywhere.
"""

# --8<-- [start:ddp-setup]
import argparse
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def setup():
    """Join the process group torchrun prepared; return this process's device."""
    if "LOCAL_RANK" not in os.environ:
        sys.exit("launch this script with torchrun (see its docstring)")
    # set by torchrun: 0 .. nproc-per-node - 1 on each machine
    local_rank = int(os.environ["LOCAL_RANK"])
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    if accelerator is not None:
        # one device per process
        device = torch.device(accelerator.type, local_rank)
        torch.accelerator.set_device_index(local_rank)
    else:
        device = torch.device("cpu")
    backend = dist.get_default_backend_for_device(device)  # nccl: CUDA; gloo: CPU
    device_id = device if device.type != "cpu" else None
    # torchrun's store (MASTER_ADDR:MASTER_PORT) outlives a restart: a key prefix
    # per attempt keeps a restarted group from reading the addresses its dead
    # predecessors published there ("Connection refused" at the restart)
    store, rank, world_size = next(dist.rendezvous("env://"))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(
        backend=backend,
        store=dist.PrefixStore(f"attempt-{attempt}", store),
        rank=rank,
        world_size=world_size,
        device_id=device_id,
    )
    return device


def wrap(model, strategy, mixed_precision=False):
    """DDP: a full replica per rank. FSDP2: each Linear's parameters sharded;
    mixed_precision: compute in bfloat16, reduce gradients in float32."""
    if strategy == "ddp":
        return DistributedDataParallel(model)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy()  # float32 throughout
    if mixed_precision:  # the sharded parameters and the optimizer stay float32
        policy = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32
        )
    for layer in model:
        if isinstance(layer, nn.Linear):
            # one all-gather per layer, just before it runs
            fully_shard(layer, mp_policy=policy)
    return fully_shard(model, mp_policy=policy)  # parameters now DTensors


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
        download_mnist(args.data_root)
    dist.barrier()  # the others wait until the files are there
    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Lambda(torch.flatten),
        ]
    )
    return datasets.MNIST(args.data_root, train=True, transform=transform)


def download_mnist(root):
    """MNIST into root/MNIST, atomically: downloaded into a temporary folder,
    then renamed. Machines that share root (each one's local rank 0 calls
    this) never read a half-written file; the first rename wins."""
    import shutil

    from torchvision import datasets

    final = Path(root) / "MNIST"
    if final.is_dir():
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=root, prefix=".mnist-"))
    try:
        datasets.MNIST(temporary, train=True, download=True)
        try:
            os.rename(temporary / "MNIST", final)
        except OSError:  # another machine's copy is already in place
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def make_loader(dataset, args, device):
    # a share for each rank: disjoint when the length divides by the world size,
    # otherwise padded by repeating the first indices (drop_last=True drops them)
    sampler = DistributedSampler(
        dataset, shuffle=True, seed=args.seed, drop_last=args.drop_last
    )
    # batch_size is per process: one optimizer step uses
    # batch_size * accumulate * world_size samples (the effective batch)
    return DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,  # MNIST's images are decoded in parallel
        persistent_workers=args.workers > 0,
        pin_memory=device.type not in ("cpu", "mps"),  # asynchronous copies
    )


# --8<-- [end:ddp-data]


# --8<-- [start:ddp-train]
def skip_sync(model):
    """A context in which backward does not all-reduce the gradients."""
    if isinstance(model, DistributedDataParallel):
        return model.no_sync()  # DDP: gradients accumulate locally

    class NoSync:  # FSDP2: the same switch, as a setter
        def __enter__(self):
            model.set_requires_gradient_sync(False)

        def __exit__(self, *exc):
            model.set_requires_gradient_sync(True)

    return NoSync()


def step_shares(samples, batch_size, accumulate):
    """For each micro-batch of an epoch, its share of the samples of its
    optimizer step: a step's weighted mean losses add up to the mean over its
    samples, also in a last step of fewer or smaller micro-batches."""
    sizes = [min(batch_size, samples - i) for i in range(0, samples, batch_size)]
    shares = []
    for first in range(0, len(sizes), accumulate):
        group = sizes[first : first + accumulate]
        shares += [size / sum(group) for size in group]
    return shares


def train(
    model,
    loader,
    optimizer,
    device,
    epochs,
    accumulate=1,
    start=0,
    history=None,
    on_epoch_end=None,
    max_norm=None,
):
    """Train from epoch start; return each epoch's loss, averaged over the
    samples of all ranks. accumulate: micro-batches per optimizer step;
    max_norm: clip the gradients' norm before each step."""
    history = list(history or [])
    for epoch in range(start, epochs):
        loader.sampler.set_epoch(epoch)  # a new shuffle, the same on every rank
        shares = step_shares(len(loader.sampler), loader.batch_size, accumulate)
        loss_sum, count = torch.zeros((), device=device), 0
        began = time.perf_counter()
        for step, (features, labels) in enumerate(loader):
            features = features.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            last = (step + 1) % accumulate == 0 or step + 1 == len(loader)
            # all but the last micro-batch of a step: keep the gradients local
            with nullcontext() if last else skip_sync(model):
                loss = nn.functional.cross_entropy(model(features), labels)
                # DDP all-reduces bucket by bucket while backward still runs
                (loss * shares[step]).backward()
            if last:
                if max_norm is not None:  # FSDP2: the norm of DTensors, global
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                optimizer.step()
                optimizer.zero_grad()
            # the running loss stays on the device: no synchronization per step
            loss_sum += loss.detach() * len(labels)
            count += len(labels)
        total = torch.stack([loss_sum, torch.tensor(float(count), device=device)])
        dist.all_reduce(total)  # summed over ranks: every rank holds the totals
        history.append((total[0] / total[1]).item())
        seconds = time.perf_counter() - began
        log(f"epoch {epoch}: loss {history[-1]:.4f} ({seconds:.2f} s)")
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
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


def state_bytes(model, optimizer):
    """Bytes of parameters, gradients and optimizer state held by this rank."""
    tensors = [p for p in model.parameters()]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    for state in optimizer.state.values():
        tensors += [v for v in state.values() if torch.is_tensor(v)]
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
    return sum(t.numel() * t.element_size() for t in local)


def save(model, optimizer, args, history):
    world = dist.get_world_size()
    module = model.module if isinstance(model, DistributedDataParallel) else model
    checksum = parameter_checksum(module) if args.strategy == "ddp" else None
    per_rank = {
        "checksum": checksum,
        "pid": os.getpid(),
        "state_bytes": state_bytes(model, optimizer),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    ranks = [None] * world
    dist.all_gather_object(ranks, per_rank)  # a collective: every rank calls it
    if args.save and args.strategy == "fsdp":
        save_sharded(model, optimizer, args.save)  # every rank writes its shards
    if dist.get_rank() == 0:  # one writer
        if args.save and args.strategy == "ddp":
            state = module.state_dict()  # .module: the unwrapped model
            save_atomically(state, args.save, torch.save)
        if args.summary:
            summary = {
                "world_size": world,
                "backend": dist.get_backend(),
                "strategy": args.strategy,
                "loss": history,
                "restarts": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)),
                **{key: [r[key] for r in ranks] for key in per_rank},
            }
            summary["checksums"] = summary.pop("checksum")
            summary["pids"] = summary.pop("pid")

            def write_json(obj, path):
                Path(path).write_text(json.dumps(obj, indent=1))

            save_atomically(summary, args.summary, write_json)
    dist.barrier()  # nobody exits (or reads the files) before rank 0 wrote them


# --8<-- [end:ddp-save]


# --8<-- [start:ddp-checkpoint]
def checkpoint_path(directory, epoch):
    return Path(directory) / f"epoch-{epoch:04d}.pt"


def latest_checkpoint(directory):
    """The newest complete checkpoint, or None (the files are written atomically,
    so any epoch-NNNN.pt there is whole; .epoch-* are leftovers of a crash)."""
    paths = sorted(Path(directory).glob("epoch-[0-9][0-9][0-9][0-9].pt"))
    return paths[-1] if paths else None


def check_resumable(state, world_size, global_batch, path):
    """Refuse a checkpoint made with another world size or global batch: the
    data order and the effective batch (so the learning rate) would change."""
    saved = (state["world_size"], state["global_batch"])
    if saved != (world_size, global_batch):
        raise ValueError(
            f"{path} was written by {saved[0]} processes with a global batch of "
            f"{saved[1]}; this run has {world_size} and {global_batch}. Relaunch "
            f"with the same world size, or start fresh in another --checkpoint-dir."
        )


def resume(model, optimizer, args, global_batch):
    """Load the latest checkpoint on every rank; return (start epoch, history)."""
    if not args.checkpoint_dir:
        return 0, []
    if dist.get_rank() == 0:  # temporary files of a writer killed mid-write
        for leftover in Path(args.checkpoint_dir).glob(".epoch-*"):
            leftover.unlink()
    path = latest_checkpoint(args.checkpoint_dir)
    if path is None:
        return 0, []
    state = torch.load(path, map_location="cpu", weights_only=True)
    check_resumable(state, dist.get_world_size(), global_batch, path)
    model.module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log(f"resumed from {path.name}: epoch {state['epoch'] + 1} is next")
    return state["epoch"] + 1, state["history"]


def checkpointer(model, optimizer, args, global_batch):
    """What train() calls after each epoch: rank 0 writes epoch-NNNN.pt."""

    def on_epoch_end(epoch, history):
        if dist.get_rank() == 0:
            state = {
                "model": model.module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "history": history,
                "world_size": dist.get_world_size(),
                "global_batch": global_batch,
            }
            path = checkpoint_path(args.checkpoint_dir, epoch)
            save_atomically(state, path, torch.save)
        dist.barrier()  # the next epoch starts once the checkpoint is on disk

    return on_epoch_end


# --8<-- [end:ddp-checkpoint]


# --8<-- [start:fsdp-checkpoint]
def save_sharded(model, optimizer, path):
    """Save a sharded model and its optimizer state with DCP, every rank its
    own shards, into a temporary folder that rank 0 renames to path once every
    rank has written: a crash never leaves a checkpoint without its .metadata."""
    import shutil

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    path = Path(path)
    partial, old = (path.with_name(f".{path.name}.{end}") for end in ("new", "old"))
    if dist.get_rank() == 0:  # what a crash in an earlier save may have left
        shutil.rmtree(partial, ignore_errors=True)
        if old.exists() and not path.exists():  # a crash between the renames
            os.replace(old, path)
        shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    # full names ("0.weight") and DTensor shards, for the model and optimizer
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.save(state, checkpoint_id=partial)  # returns once every rank has written
    if dist.get_rank() == 0:
        if path.exists():
            os.replace(path, old)  # the previous checkpoint stays whole till here
        os.replace(partial, path)
        shutil.rmtree(old, ignore_errors=True)
    dist.barrier()


def resume_sharded(model, optimizer, path):
    """Load a checkpoint of save_sharded into a sharded model and optimizer,
    on any number of ranks (DCP reshards on load)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_state_dict,
        set_state_dict,
    )

    path = Path(path)
    old = path.with_name(f".{path.name}.old")  # see save_sharded
    if not path.exists() and old.exists():  # a crash between save's renames
        path = old
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=path)  # fills the shards this rank holds
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
    )


# --8<-- [end:fsdp-checkpoint]


# --8<-- [start:ddp-uneven]
def train_uneven(model, batches, optimizer):
    """DDP when ranks have different numbers of batches: under Join, a rank
    that has run out joins the others' all-reduces (with zeros) until every
    rank is done, instead of leaving them waiting forever."""
    from torch.distributed.algorithms.join import Join

    with Join([model]):  # model: a DistributedDataParallel
        for features, labels in batches:
            loss = nn.functional.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


# --8<-- [end:ddp-uneven]


# --8<-- [start:resumable-sampler]
from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """A DistributedSampler that can resume in the middle of an epoch: its
    state is the epoch and how many of its samples this rank has trained on."""

    def __init__(self, dataset, **kwargs):
        super().__init__(dataset, **kwargs)
        self.start = 0  # samples of this epoch trained on before a restart

    def set_epoch(self, epoch):
        if epoch != self.epoch:
            self.start = 0  # only the resumed epoch starts late
        super().set_epoch(epoch)

    def state_dict(self, samples_done):
        """samples_done: trained on since this epoch's iteration began."""
        return {"epoch": self.epoch, "samples_done": self.start + samples_done}

    def load_state_dict(self, state):
        self.set_epoch(state["epoch"])
        self.start = state["samples_done"]

    def __iter__(self):
        return iter(list(super().__iter__())[self.start :])

    def __len__(self):  # the same all epoch: the training loop counts on it
        return self.num_samples - self.start


# --8<-- [end:resumable-sampler]


# --8<-- [start:dcp-load]
def load_sharded(model, path):
    """Load a DCP checkpoint (saved by any number of ranks) into a plain model,
    in one process without a process group: DCP reshards on load."""
    import warnings

    import torch.distributed.checkpoint as dcp

    state = {"model": model.state_dict()}  # the tensors to fill, by name
    with warnings.catch_warnings():  # it warns that it loads in one process
        warnings.filterwarnings("ignore", "torch.distributed is disabled")
        # reads each tensor's pieces from the shard files, in place
        dcp.load(state, checkpoint_id=path, no_dist=True)
    model.load_state_dict(state["model"])
    return model


# --8<-- [end:dcp-load]


# What the page runs, in page order, at module level as on the page. This
# module's __main__ is its program (main), so these run under their own name:
# runpy.run_module("snippets.distributed", run_name="__page__") prints the page.
if __name__ == "__page__":
    # --8<-- [start:sampler-demo]
    from torch.utils.data import DistributedSampler

    data = list(range(10))  # any dataset with a length
    for epoch in range(2):
        for rank in range(2):
            sampler = DistributedSampler(
                data, num_replicas=2, rank=rank, shuffle=True, seed=0
            )
            sampler.set_epoch(epoch)  # without it, every epoch repeats its order
            print(f"epoch {epoch} rank {rank}: {list(sampler)}")

    odd = list(range(11))  # 11 does not divide by 2 ranks: the sampler pads
    for rank in range(2):
        padded = DistributedSampler(odd, num_replicas=2, rank=rank, shuffle=False)
        dropped = DistributedSampler(
            odd, num_replicas=2, rank=rank, shuffle=False, drop_last=True
        )
        print(
            f"11 samples, rank {rank}: {list(padded)}; drop_last: {list(dropped)}"
        )
    # --8<-- [end:sampler-demo]

    # --8<-- [start:batch-demo]
    batch_size, accumulate, lr_for_64 = 64, 2, 0.05  # per process
    for world_size in (1, 2, 8):
        effective = batch_size * accumulate * world_size
        # the linear scaling rule: a batch k times larger, a rate k times larger
        processes = "process" if world_size == 1 else "processes"
        print(
            f"{world_size} {processes}: effective batch {effective:4}, "
            f"lr {lr_for_64 * effective / 64:.2f} by linear scaling"
        )
    # --8<-- [end:batch-demo]

    # --8<-- [start:resumable-sampler-demo]
    from torch.utils.data import DataLoader

    data = list(range(10))
    sampler = ResumableSampler(data, num_replicas=2, rank=0, seed=0)
    loader = DataLoader(data, batch_size=2, sampler=sampler)
    sampler.set_epoch(3)
    print("epoch 3, rank 0:", [batch.tolist() for batch in loader])
    first = next(iter(loader))  # one step of epoch 3, then a crash
    state = sampler.state_dict(samples_done=len(first))  # saved with the model
    print("checkpoint:", state)

    restarted = ResumableSampler(data, num_replicas=2, rank=0, seed=0)
    restarted.load_state_dict(state)  # after the restart, from the checkpoint
    loader = DataLoader(data, batch_size=2, sampler=restarted)
    print("resumed:", [batch.tolist() for batch in loader], len(loader), "batches")
    second = next(iter(loader))  # one more step, then a second crash
    print("checkpoint:", restarted.state_dict(samples_done=len(second)))
    # --8<-- [end:resumable-sampler-demo]

    # --8<-- [start:exercise-steps]
    import math

    from torch.utils.data import DistributedSampler

    samples, world_size, batch_size, accumulate = 50_001, 8, 25, 2
    for drop_last in (False, True):
        sampler = DistributedSampler(
            range(samples), num_replicas=world_size, rank=0, drop_last=drop_last
        )
        batches = math.ceil(len(sampler) / batch_size)  # the last one may be short
        steps = math.ceil(batches / accumulate)  # one all-reduce per step
        print(
            f"drop_last={drop_last!s:5}: {len(sampler)} samples per rank, "
            f"{batches} batches, {steps} steps and all-reduces"
        )
    # --8<-- [end:exercise-steps]


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
    parser.add_argument(
        "--accumulate", type=int, default=1, help="micro-batches per step"
    )
    parser.add_argument("--drop-last", action="store_true")
    parser.add_argument(
        "--workers", type=int, help="DataLoader workers (default: 4 for MNIST)"
    )
    parser.add_argument("--hidden", type=int, default=128, help="hidden width")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--clip-norm", type=float, help="clip the gradient norm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--save", help="model path: a file (ddp), a folder (fsdp)")
    parser.add_argument("--summary", help="JSON summary path (written by rank 0)")
    parser.add_argument("--checkpoint-dir", help="checkpoint every epoch; resume")
    parser.add_argument(
        "--fast-exit", action="store_true", help="end with os._exit (see below)"
    )
    args = parser.parse_args(argv)
    if args.data_root:
        args.data = "mnist"
    elif args.data == "mnist":
        parser.error("--data mnist needs --data-root")
    if args.workers is None:  # the synthetic tensors need no decoding
        args.workers = 4 if args.data == "mnist" else 0
    if args.accumulate < 1:
        parser.error("--accumulate must be at least 1")
    if args.checkpoint_dir and args.strategy != "ddp":
        parser.error("--checkpoint-dir is written with torch.save: ddp only")
    return args


def build_model(n_in, hidden):
    return nn.Sequential(
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),  # 10 classes at most
    )


@record  # torchrun's error summary then shows this rank's traceback
def main(argv=None):
    args = parse_args(argv)
    device = setup()
    try:
        dataset = make_dataset(args)
        # the same initial weights everywhere (DDP also broadcasts rank 0's)
        torch.manual_seed(args.seed)
        model = build_model(dataset[0][0].numel(), args.hidden).to(device)
        model = wrap(model, args.strategy)
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
        world = dist.get_world_size()
        global_batch = args.batch_size * args.accumulate * world
        log(
            f"{world} processes, backend {dist.get_backend()}, "
            f"device type {device.type}, {args.strategy}, "
            f"effective batch {global_batch}"
        )
        start, history = resume(model, optimizer, args, global_batch)
        on_epoch_end = None
        if args.checkpoint_dir:
            on_epoch_end = checkpointer(model, optimizer, args, global_batch)
        loader = make_loader(dataset, args, device)
        history = train(
            model,
            loader,
            optimizer,
            device,
            args.epochs,
            args.accumulate,
            start,
            history,
            on_epoch_end,
            args.clip_norm,
        )
        save(model, optimizer, args, history)
    finally:
        dist.destroy_process_group()  # clean shutdown, even after an error
    return args


if __name__ == "__main__":
    args = main()
    if args.fast_exit:
        # torch 2.14: a rank sometimes aborts after this point, at interpreter
        # exit ("terminate called without an active exception"; seen in this
        # guide's tests). All is written and the group destroyed: flush, and
        # exit without the teardown (and without atexit handlers).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
# --8<-- [end:ddp-main]
