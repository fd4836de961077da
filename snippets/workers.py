"""DataLoader workers: the code of docs/workers.md.

Loading in worker processes, measured alone and overlapped with a step; the
bug that gives every worker the same random numbers, and its fix; start
methods, the __main__ guard and what must be picklable; why a worker's memory
grows; a worker that raises, dies or hangs. The data: scikit-learn's 1,797
handwritten digits written out as PNG files, read by ImageFolder. Definitions
are at module level (importable, so that workers started with "forkserver" or
"spawn" find them); what the page runs is at the end, at module level.
"""

# --8<-- [start:files]
from pathlib import Path

from PIL import Image
from sklearn.datasets import load_digits


def write_digit_images(root):
    """The UCI digits as root/<digit>/<number>.png, 8 x 8 grayscale, 0 (paper)
    to 255 (ink): a folder per class, as ImageFolder reads it."""
    root = Path(root)
    digits = load_digits()
    for number, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        path = root / str(label) / f"{number:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255 / 16).round().astype("uint8")).save(path)
    return root


# --8<-- [end:files]


# --8<-- [start:timing]
import time


def seconds_per_pass(loader, step_seconds=0.0):
    """One pass over ``loader``; after each batch, ``step_seconds`` of a
    training step in which this process mostly waits, as for a GPU."""
    start = time.perf_counter()
    for _batch in loader:
        time.sleep(step_seconds)
    return time.perf_counter() - start


# --8<-- [end:timing]


# --8<-- [start:worker-seeding]
import numpy as np
from torch.utils.data import Dataset, get_worker_info


class NoisyDigits(Dataset):
    """Each item draws a random number from the dataset's own NumPy generator."""

    def __init__(self, size=8, seed=0):
        self.size, self.seed = size, seed
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return float(self.rng.random())  # stands in for a random crop or noise


class WorkerSeededDigits(NoisyDigits):
    """The fix: draw from a generator made in the process that draws: in a
    worker, from ``seed`` and the seed PyTorch chose for that worker (new for
    every worker and every epoch, fixed by the DataLoader's generator); in the
    main process, from ``seed`` alone."""

    def __getitem__(self, index):
        worker = get_worker_info()
        seed = self.seed if worker is None else (self.seed, worker.seed)
        if seed != getattr(self, "rng_seed", None):  # a new worker: a new rng
            self.rng, self.rng_seed = np.random.default_rng(seed), seed
        return float(self.rng.random())


# --8<-- [end:worker-seeding]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.workers` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:files-demo]
    import tempfile

    import torch
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    root = write_digit_images(Path(tempfile.mkdtemp()) / "digits")
    to_tensor = v2.Compose(  # ImageFolder opens RGB: back to one channel
        [v2.Grayscale(), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    )
    dataset = ImageFolder(root, transform=to_tensor)  # reads a file per item
    image, label = dataset[0]
    print(len(dataset), "files; item 0:", tuple(image.shape), "label", label)
    # --8<-- [end:files-demo]

    # --8<-- [start:timing-demo]
    import multiprocessing
    import os

    from torch.utils.data import DataLoader, Subset

    half = Subset(dataset, range(0, len(dataset), 2))  # 899 images, 15 batches
    loaders = {
        workers: DataLoader(
            half,
            batch_size=64,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,  # started once, for every pass
        )
        for workers in (0, 1, 2)
    }
    start = time.perf_counter()
    for loader in loaders.values():
        next(iter(loader))  # start the workers before any pass is timed
    starting = time.perf_counter() - start  # 3 workers and 3 batches

    step = seconds_per_pass(loaders[0]) / len(loaders[0])  # as long as a batch
    step = round(step, 3)
    setups = [(f"workers={n}", loaders[n], 0.0) for n in (0, 1, 2)]
    setups += [(f"workers={n}, step", loaders[n], step) for n in (0, 1)]
    fastest = {name: float("inf") for name, _, _ in setups}
    for _ in range(3):  # the fastest of 3 passes; the loaders take turns
        for name, loader, step_seconds in setups:
            seconds = seconds_per_pass(loader, step_seconds)
            fastest[name] = min(fastest[name], seconds)

    everything = torch.stack([image for image, _label in half])  # read once
    targets = torch.tensor([label for _image, label in half])

    def preloaded_pass():  # batches sliced from tensors in memory
        start = time.perf_counter()
        for index in torch.randperm(len(targets)).split(64):
            _images, _labels = everything[index], targets[index]
        return time.perf_counter() - start

    fastest["preloaded tensor"] = min(preloaded_pass() for _ in range(10))
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may use
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count()
    method = multiprocessing.get_start_method()
    print(f"starting 3 workers ({method}) and 3 first batches: {starting:.2f} s")
    print(f"a step: {step * 1000:.0f} ms, a batch's loading without workers")
    print(f"{len(half)} images, {cores} cores; the fastest of 3 passes:")
    for name, seconds in fastest.items():
        print(f"  {name:18} {seconds * 1000:7.1f} ms per pass")
    # --8<-- [end:timing-demo]

    # --8<-- [start:worker-seeding-demo]
    def draws(loader):
        return [round(x, 3) for x in torch.cat(list(loader)).tolist()]

    print("0 workers:", draws(DataLoader(NoisyDigits(), batch_size=2)))
    print(
        "2 workers:", draws(DataLoader(NoisyDigits(), batch_size=2, num_workers=2))
    )

    def seeded_loader(seed):  # a new generator each time: using one consumes it
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            Subset(
                WorkerSeededDigits(), range(8)
            ),  # wrapped, as datasets often are
            batch_size=2,
            num_workers=2,
            generator=generator,
        )

    loader = seeded_loader(0)
    print("fixed:    ", draws(loader))
    print("epoch 2:  ", draws(loader))  # new workers, new seeds
    print("again:    ", draws(seeded_loader(0)))
    # --8<-- [end:worker-seeding-demo]

    # --8<-- [start:start-methods]
    import re
    import subprocess
    import sys
    import textwrap

    loading = textwrap.dedent("""\
    import sys
    import time
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    def main():
        data = TensorDataset(torch.arange(6.0))
        loader = DataLoader(data, batch_size=3, num_workers=1,
                            multiprocessing_context=sys.argv[1])
        for epoch in (1, 2):  # each epoch starts its worker anew
            start = time.perf_counter()
            batches = [batch.tolist() for (batch,) in loader]
            seconds = time.perf_counter() - start
            print(f"epoch {epoch}: {batches} in {seconds:.1f} s")
    """)
    (root / "guarded.py").write_text(
        loading + 'if __name__ == "__main__":\n    main()\n'
    )
    (root / "unguarded.py").write_text(loading + "main()\n")
    runs = {  # all at once: each imports torch, which takes seconds
        (script, method): subprocess.Popen(
            [sys.executable, script, method],
            cwd=root,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for script, method in [
            ("guarded.py", "forkserver"),  # Linux's default from Python 3.14
            ("unguarded.py", "forkserver"),
            ("unguarded.py", "spawn"),  # macOS's and Windows's default
        ]
    }
    first = "An attempt has been made to start a new process before the"
    for (script, method), run in runs.items():
        try:
            out, err = run.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            run.kill()  # never leave it running
            out, err = run.communicate()
        print(f"{script} with {method}: exit code {run.returncode}")
        for line in out.splitlines() or err.strip().splitlines()[-1:]:
            print("  " + re.sub(r" \(pid\(s\) [\d, ]+\)", "", line))  # pids change
        said = [line.strip() for line in err.splitlines()]
        if first in said:
            message = " ".join(said[said.index(first) : said.index(first) + 2])
            print(
                textwrap.fill(
                    f"the worker said: {message}", 80, subsequent_indent="  "
                )
            )
    # --8<-- [end:start-methods]

    # --8<-- [start:picklable]
    import pickle
    import warnings

    from torch.utils.data import TensorDataset

    loader = DataLoader(
        TensorDataset(torch.arange(6.0)),
        batch_size=3,
        num_workers=1,
        collate_fn=lambda batch: batch,  # a lambda: it cannot be pickled
        multiprocessing_context="spawn",  # "forkserver" fails alike
    )
    with warnings.catch_warnings(record=True) as hints:  # torch adds a hint
        warnings.simplefilter("always")
        try:
            next(iter(loader))
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            message = re.sub(r" at 0x[0-9a-f]+", "", str(error))  # an address
            print(textwrap.fill(f"{type(error).__name__}: {message}", 80))
    for hint in hints:
        print(textwrap.fill(f"{hint.category.__name__}: {hint.message}", 80))
    # --8<-- [end:picklable]

    # --8<-- [start:worker-memory]
    def private_megabytes():  # memory this process has written to (Linux only)
        with open("/proc/self/smaps_rollup") as file:
            for line in file:
                if line.startswith("Private_Dirty:"):
                    return int(line.split()[1]) / 1024

    class ReadsEveryName(Dataset):
        """One item: read every file name, as an epoch does; what it cost."""

        def __init__(self, names):
            self.names = names

        def __len__(self):
            return 1

        def __getitem__(self, index):
            before = private_megabytes()
            longest = max(len(name) for name in self.names)  # noqa: F841
            return private_megabytes() - before

    names = [f"images/{i % 10}/{i:07d}.png" for i in range(300_000)]
    as_bytes = np.array([os.fsencode(name) for name in names])  # 1 byte a letter
    list_megabytes = (sys.getsizeof(names) + sum(map(sys.getsizeof, names))) / 2**20
    print(
        f"300,000 names: {list_megabytes:.0f} MB as a list of str, "
        f"{as_bytes.nbytes / 2**20:.0f} MB as an array of bytes"
    )
    for kind, held in [("list of str", names), ("array of bytes", as_bytes)]:
        worker = DataLoader(ReadsEveryName(held), num_workers=1)
        copied = next(iter(worker)).item()
        print(f"reading the {kind}, the worker copied {copied:.0f} MB")
    # --8<-- [end:worker-memory]

    # --8<-- [start:worker-failures]
    class Crashes(Dataset):  # a worker that dies (out of memory, a segfault...)
        def __len__(self):
            return 8

        def __getitem__(self, index):
            if index == 5:
                os._exit(1)
            return str(index)  # not a tensor: nothing shared with a dead process

    class Hangs(Crashes):  # a worker stuck on a network drive, or a deadlock
        def __getitem__(self, index):
            if index == 5:
                time.sleep(1.5)  # longer than the timeout below
            return str(index)

    class Fails(Crashes):  # a bug: a Python exception in the worker
        def __getitem__(self, index):
            if index == 5:
                raise ValueError(f"item {index}: no label")
            return str(index)

    for dataset_class in (Crashes, Hangs, Fails):
        start = time.perf_counter()
        try:
            list(
                DataLoader(dataset_class(), batch_size=2, num_workers=2, timeout=1)
            )
        except (ValueError, RuntimeError) as error:
            seconds = time.perf_counter() - start  # before the clean-up below
            error.__traceback__ = None  # let the loader go now (see below)
            lines = str(error).splitlines()
            message = re.sub(r" \(pid\S* [\d, ]+\)", "", lines[0])
            print(f"{dataset_class.__name__}, after {seconds:.1f} s:")
            print(f"  {type(error).__name__}: {message}")
            if len(lines) > 1:  # a Python exception: with the worker's traceback
                print(f"  ...ending: {lines[-1]}")
    # --8<-- [end:worker-failures]

    # --8<-- [start:exercise-persistent]
    def persistent_loader(seed):
        return DataLoader(
            WorkerSeededDigits(),
            batch_size=2,
            num_workers=2,
            persistent_workers=True,  # the same workers and seeds every epoch
            generator=torch.Generator().manual_seed(seed),
        )

    loader = persistent_loader(0)
    first, second = draws(loader), draws(loader)
    print("epoch 1:", first)
    print("epoch 2:", second)
    print("a new loader, epoch 1 again:", draws(persistent_loader(0)) == first)
    # --8<-- [end:exercise-persistent]

    # --8<-- [start:exercise-which-worker]
    class WhoLoadedMe(Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, index):
            return get_worker_info().id  # inside a worker: never None

    loader = DataLoader(WhoLoadedMe(), batch_size=3, num_workers=2)
    print("worker of each item, by batch:", [b.tolist() for b in loader])
    # --8<-- [end:exercise-which-worker]
