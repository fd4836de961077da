"""Your own data: the code of docs/data.md.

Real data on disk (scikit-learn's 1,797 handwritten 8 x 8 digits written out as
PNG files and a CSV, as a reader's own data looks) loaded with Dataset,
DataLoader and transforms.v2. Definitions are at module level (the datasets and
collate functions are importable, so that DataLoader workers started with
"spawn" find them); what the page runs is at the end, at module level.
"""

# --8<-- [start:write-files]
import csv
from pathlib import Path

from PIL import Image
from sklearn.datasets import load_digits


def write_digit_files(root):
    """Write the UCI digits as a folder of PNGs per class and a CSV of labels.

    root/images/<digit>/<number>.png: 8x8 grayscale, 0 (white) .. 16 (ink) in
    the original, scaled to 0..255; root/labels.csv: one row per image, with
    the file's path relative to root and its label.
    """
    root = Path(root)
    digits = load_digits()
    rows = []
    for number, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        path = root / "images" / str(label) / f"{number:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255 / 16).round().astype("uint8")).save(path)
        rows.append({"file": path.relative_to(root).as_posix(), "label": label})
    with open(root / "labels.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["file", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "labels.csv"


# --8<-- [end:write-files]


# --8<-- [start:csv-dataset]
import csv
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset


class CsvImageDataset(Dataset):
    """Images listed in a CSV file (columns file, label), read one per item."""

    def __init__(self, csv_path, num_classes, transform=None):
        self.transform = transform
        self.items = []  # (path, label): file names only, no pixels in memory
        root = Path(csv_path).parent
        with open(csv_path, newline="") as file:
            for line, row in enumerate(csv.DictReader(file), start=2):
                path, label = root / row["file"], int(row["label"])
                if not path.is_file():  # fail now, not in the middle of epoch 3
                    raise FileNotFoundError(f"{csv_path}:{line}: no file {path}")
                if not 0 <= label < num_classes:
                    raise ValueError(
                        f"{csv_path}:{line}: label {label} is not one of the "
                        f"{num_classes} classes 0..{num_classes - 1}"
                    )
                self.items.append((path, label))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, label = self.items[index]
        try:
            with Image.open(path) as image:  # read lazily: only this item
                image = image.convert("L")
        except OSError as error:  # a missing, truncated or non-image file
            raise OSError(f"item {index}: cannot read {path}: {error}") from error
        if self.transform is not None:
            image = self.transform(image)
        return image, label


# --8<-- [end:csv-dataset]


# --8<-- [start:iterable]
import csv
from pathlib import Path

from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info


class CsvImageStream(IterableDataset):
    """The same images as a stream: rows are read as they come, never counted
    or indexed. Each DataLoader worker takes every num_workers-th row."""

    def __init__(self, csv_path, transform=None, shard=True):
        self.csv_path, self.transform, self.shard = Path(csv_path), transform, shard

    def __iter__(self):
        worker = get_worker_info()  # None in the main process
        count, me = (worker.num_workers, worker.id) if worker else (1, 0)
        with open(self.csv_path, newline="") as file:
            for number, row in enumerate(csv.DictReader(file)):
                if self.shard and number % count != me:
                    continue  # another worker's row
                with Image.open(self.csv_path.parent / row["file"]) as image:
                    image = image.convert("L")
                if self.transform is not None:
                    image = self.transform(image)
                yield image, int(row["label"])


# --8<-- [end:iterable]


# --8<-- [start:split]
import torch


def stratified_split(labels, fractions, seed):
    """Indices of splits that keep each class's share (for example 70/15/15)."""
    generator = torch.Generator().manual_seed(seed)
    parts = [[] for _ in fractions]
    for label in labels.unique():
        members = (labels == label).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        bounds = (torch.tensor(fractions).cumsum(0) * len(members)).round().int()
        for part, start, end in zip(parts, [0, *bounds[:-1]], bounds):
            part.append(members[start:end])
    return [torch.cat(part).sort().values for part in parts]


# --8<-- [end:split]


# --8<-- [start:collate]
import torch
from torch.nn.utils.rnn import pad_sequence


def pad_collate(batch):
    """(sequence, label) items of different lengths -> padded batch and mask."""
    sequences, labels = zip(*batch)
    lengths = torch.tensor([len(sequence) for sequence in sequences])
    padded = pad_sequence(sequences, batch_first=True, padding_value=0)
    mask = torch.arange(padded.shape[1]) < lengths[:, None]  # True: real item
    return padded, mask, torch.tensor(labels)


# --8<-- [end:collate]


# --8<-- [start:checked-collate]
import torch
from torch.utils.data import default_collate


def checked_collate(batch):
    """default_collate, with an error that names the item whose shape differs."""
    first = batch[0][0].shape
    for number, (image, _label) in enumerate(batch):
        if image.shape != first:
            raise ValueError(
                f"batch item {number} has shape {tuple(image.shape)}, item 0 has "
                f"{tuple(first)}: resize in the transform, or pad in a collate_fn"
            )
    return default_collate(batch)


# --8<-- [end:checked-collate]


# --8<-- [start:worker-seeding]
import numpy as np
from torch.utils.data import Dataset, get_worker_info


class NoisyDigits(Dataset):
    """Each item draws a random number from the dataset's own NumPy generator."""

    def __init__(self, size=8, seed=0):
        self.size, self.rng = size, np.random.default_rng(seed)

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return float(self.rng.random())  # stands in for a random crop or noise


def seed_worker(worker_id):
    """In each worker, give the dataset a generator of its own, from the seed
    PyTorch chose for that worker (different per worker, fixed by the
    DataLoader's generator)."""
    worker = get_worker_info()
    worker.dataset.rng = np.random.default_rng(worker.seed)


# --8<-- [end:worker-seeding]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.data` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:write-files-demo]
    import tempfile

    root = Path(tempfile.mkdtemp()) / "digits"  # a folder of your own, in practice
    csv_path = write_digit_files(root)
    folders = sorted(p.name for p in (root / "images").iterdir())
    print("folders:", folders)
    print("files in images/3:", len(list((root / "images" / "3").iterdir())))
    print(csv_path.name, "starts:")
    print("".join(csv_path.read_text().splitlines(keepends=True)[:4]), end="")
    # --8<-- [end:write-files-demo]

    # --8<-- [start:protocol]
    from torch.utils.data import Dataset

    class Squares(Dataset):
        """A map-style dataset: a length, and an item for every index below it."""

        def __len__(self):
            return 5

        def __getitem__(self, index):
            if not 0 <= index < len(self):
                raise IndexError(
                    f"index {index} is out of range for {len(self)} items"
                )
            return index, index**2

    squares = Squares()
    print(len(squares), squares[3], list(squares))
    # --8<-- [end:protocol]

    # --8<-- [start:csv-dataset-demo]
    import torch
    from torchvision.transforms import v2

    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    dataset = CsvImageDataset(csv_path, num_classes=10, transform=to_tensor)
    image, label = dataset[3]
    print(
        len(dataset),
        "items; item 3:",
        tuple(image.shape),
        image.dtype,
        "label",
        label,
    )
    print(f"pixels from {image.min():.2f} to {image.max():.2f}")
    # --8<-- [end:csv-dataset-demo]

    # --8<-- [start:image-folder]
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(root / "images", transform=to_tensor)
    print(folder.classes, len(folder))
    print("item 0:", tuple(folder[0][0].shape), "label", folder[0][1])
    gray = v2.Compose(
        [v2.Grayscale(), to_tensor]
    )  # ImageFolder opens images as RGB
    folder = ImageFolder(root / "images", transform=gray)
    print("with Grayscale():", tuple(folder[0][0].shape))
    # --8<-- [end:image-folder]

    # --8<-- [start:iterable-demo]
    from collections import Counter

    from torch.utils.data import DataLoader

    for shard in (True, False):
        stream = CsvImageStream(csv_path, transform=to_tensor, shard=shard)
        seen = Counter()
        for _images, labels in DataLoader(stream, batch_size=64, num_workers=2):
            seen.update(labels.tolist())
        print(f"shard={shard}: {sum(seen.values())} items, {seen[0]} zeros")
    # --8<-- [end:iterable-demo]

    # --8<-- [start:split-demo]
    from torch.utils.data import Subset, random_split

    all_labels = torch.tensor([label for _path, label in dataset.items])
    generator = torch.Generator().manual_seed(0)
    parts = random_split(dataset, [0.7, 0.15, 0.15], generator=generator)
    print("random_split:", [len(part) for part in parts])

    splits = stratified_split(all_labels, [0.7, 0.15, 0.15], seed=0)
    train_index, val_index, test_index = splits
    train_set, val_set, test_set = (
        Subset(dataset, index.tolist())
        for index in (train_index, val_index, test_index)
    )
    print("stratified:  ", [len(part) for part in (train_set, val_set, test_set)])
    for name, index in [
        ("all", torch.arange(len(all_labels))),
        ("test", test_index),
    ]:
        share = all_labels[index].bincount(minlength=10) / len(index)
        print(f"{name:>4} class shares:", " ".join(f"{s:.3f}" for s in share))
    # --8<-- [end:split-demo]

    # --8<-- [start:stats]
    train_pixels = torch.stack([train_set[i][0] for i in range(len(train_set))])
    mean, std = train_pixels.mean().item(), train_pixels.std().item()
    print(f"training pixels: mean {mean:.4f}, std {std:.4f}")

    normalize = v2.Normalize((mean,), (std,))
    evaluate_transform = v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), normalize]
    )
    dataset.transform = evaluate_transform  # train, val and test share it
    normed = torch.stack([train_set[i][0] for i in range(len(train_set))])
    print(f"after Normalize: mean {normed.mean():.4f}, std {normed.std():.4f}")
    # --8<-- [end:stats]

    # --8<-- [start:augment]
    import matplotlib.pyplot as plt

    augment = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomAffine(degrees=15, translate=(0.15, 0.15), scale=(0.85, 1.1)),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomErasing(p=0.5, scale=(0.05, 0.15), value=0),
            normalize,
        ]
    )
    path, label = dataset.items[0]
    original = Image.open(path).convert("L")
    torch.manual_seed(0)  # v2's random transforms draw from torch's generator
    versions = [augment(original) for _ in range(7)]

    fig, axes = plt.subplots(1, 8, figsize=(8, 1.5))
    for ax, picture in zip(axes, [evaluate_transform(original), *versions]):
        ax.imshow(picture[0].numpy(), cmap="gray_r")
        ax.axis("off")
    fig.suptitle(f"A {label} as loaded (left) and seven random augmentations")
    differ = not torch.equal(versions[0], versions[1])
    print("each call draws new parameters:", differ)
    # --8<-- [end:augment]

    # --8<-- [start:batch-transforms]
    one = torch.zeros(1, 8, 8)
    one[:, 3:5, 3:5] = 1  # a 2x2 square in the middle
    batch = one.expand(4, 1, 8, 8)  # four copies of the same image
    shift = v2.RandomAffine(degrees=0, translate=(0.3, 0.3))
    torch.manual_seed(1)
    together = shift(batch)  # one call on the batch tensor
    apart = torch.stack([shift(image) for image in batch])  # one call per image

    def corner(image):
        return tuple(image[0].nonzero()[0].tolist())  # the square's top-left pixel

    print("on the batch:  ", [corner(image) for image in together])
    print("one at a time: ", [corner(image) for image in apart])
    # --8<-- [end:batch-transforms]

    # --8<-- [start:v1]
    from torchvision import transforms  # v1: still there, for older code

    v1 = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((mean,), (std,))]
    )
    difference = (v1(original) - evaluate_transform(original)).abs().max().item()
    print("v1 and v2 agree to within 1e-6:", difference < 1e-6)
    # --8<-- [end:v1]

    # --8<-- [start:loader]
    loader = DataLoader(
        train_set,
        batch_size=64,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    images, labels = next(iter(loader))
    print(len(train_set), "images ->", len(loader), "batches of", len(labels))
    print(
        "batch:",
        tuple(images.shape),
        images.dtype,
        "| labels:",
        labels[:8].tolist(),
    )
    again = next(
        iter(
            DataLoader(
                train_set,
                batch_size=64,
                shuffle=True,
                generator=torch.Generator().manual_seed(0),
            )
        )
    )
    print("same seed, same first batch:", torch.equal(labels, again[1]))
    # --8<-- [end:loader]

    # --8<-- [start:collate-demo]
    words = ["tensor", "grad", "module", "loss", "optimizer", "batch"]
    vocabulary = {
        char: number + 1 for number, char in enumerate(sorted(set("".join(words))))
    }
    items = [
        (torch.tensor([vocabulary[c] for c in word]), len(word) > 5)
        for word in words
    ]

    padded, mask, targets = next(
        iter(DataLoader(items, batch_size=3, collate_fn=pad_collate))
    )
    print(padded)
    print(mask.int())
    print("lengths:", mask.sum(dim=1).tolist(), "| labels:", targets.tolist())
    # --8<-- [end:collate-demo]

    # --8<-- [start:sampler]
    from torch.utils.data import WeightedRandomSampler

    keep = [i for i in train_index.tolist() if all_labels[i] != 0 or i % 10 == 0]
    rare = Subset(dataset, keep)  # digit 0 kept at about one in ten
    rare_labels = all_labels[keep]
    counts = rare_labels.bincount(minlength=10)
    print("items per class:    ", counts.tolist())

    weights = (
        1.0 / counts[rare_labels].double()
    )  # each class gets the same total weight
    sampler = WeightedRandomSampler(
        weights,
        num_samples=len(rare),
        replacement=True,
        generator=torch.Generator().manual_seed(0),
    )
    drawn = torch.cat(
        [y for _x, y in DataLoader(rare, batch_size=128, sampler=sampler)]
    )
    print("drawn in one epoch: ", drawn.bincount(minlength=10).tolist())
    # --8<-- [end:sampler]

    # --8<-- [start:workers]
    import time

    def seconds_per_pass(loader, passes=2):
        for _ in range(passes):  # the last pass: workers (if any) are already up
            start = time.perf_counter()
            for _batch in loader:
                pass
        return time.perf_counter() - start

    timings = {}
    for workers in (0, 1, 2):
        loader = DataLoader(
            dataset,
            batch_size=64,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers else None,
        )
        timings[f"files, {workers} workers"] = seconds_per_pass(loader)

    everything = torch.stack([dataset[i][0] for i in range(len(dataset))])  # once
    targets = torch.tensor([label for _path, label in dataset.items])
    order = torch.randperm(len(targets))

    def preloaded_pass():
        start = time.perf_counter()
        for begin in range(0, len(order), 64):
            index = order[begin : begin + 64]
            _images, _labels = everything[index], targets[index]
        return time.perf_counter() - start

    # the fastest of 3 passes: one pause (Python's garbage collection, another
    # process) can make a pass this short many times longer
    timings["preloaded tensor"] = min(preloaded_pass() for _ in range(3))

    for name, seconds in timings.items():
        print(
            f"{name:18} {seconds * 1000:7.1f} ms per pass, "
            f"{len(dataset) / seconds:9,.0f} items/s"
        )
    # --8<-- [end:workers]

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
            NoisyDigits(),
            batch_size=2,
            num_workers=2,
            worker_init_fn=seed_worker,
            generator=generator,
        )

    print("seeded:   ", draws(seeded_loader(0)))
    print("again:    ", draws(seeded_loader(0)))
    # --8<-- [end:worker-seeding-demo]

    # --8<-- [start:spawn]
    import re
    import subprocess
    import sys
    import textwrap

    loading = textwrap.dedent("""\
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    def main():
        data = TensorDataset(torch.arange(6.0))
        loader = DataLoader(data, batch_size=3, num_workers=1,
                            multiprocessing_context="spawn", timeout=60)
        print([batch.tolist() for (batch,) in loader])
    """)
    scripts = {
        "guarded.py": loading + 'if __name__ == "__main__":\n    main()\n',
        "unguarded.py": loading + "main()\n",
    }
    runs = {}
    for name, text in scripts.items():  # both at once: each worker imports torch
        (root / name).write_text(text)
        command = [sys.executable, name]
        runs[name] = subprocess.Popen(
            command,
            cwd=root,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    for name, run in runs.items():
        out, err = run.communicate(timeout=120)
        last = (out or err).strip().splitlines()[-1]
        last = re.sub(r" \(pid\(s\) [\d, ]+\)", "", last)  # the pid changes
        print(f"{name}: exit code {run.returncode}\n  last line: {last}")
        said = [line.strip() for line in err.splitlines()]
        first = "An attempt has been made to start a new process before the"
        if first in said:
            start = said.index(first)
            message = " ".join(said[start : start + 2])
            print(textwrap.fill(f"  the worker said: {message}", 80))
    # --8<-- [end:spawn]

    # --8<-- [start:errors]
    import shutil

    broken = Path(tempfile.mkdtemp())
    shutil.copytree(root / "images", broken / "images")
    rows = csv_path.read_text().splitlines()
    (broken / "missing.csv").write_text(
        "\n".join([*rows[:3], "images/3/9999.png,3"])
    )
    (broken / "label.csv").write_text(
        "\n".join([*rows[:3], rows[3].rsplit(",")[0] + ",12"])
    )
    (broken / "images" / "5" / "0005.png").write_bytes(b"not a PNG file")
    (broken / "unreadable.csv").write_text(
        "\n".join([rows[0], "images/5/0005.png,5"])
    )

    for name in ["missing.csv", "label.csv", "unreadable.csv"]:
        try:
            CsvImageDataset(broken / name, num_classes=10, transform=to_tensor)[0]
        except (OSError, ValueError) as error:
            message = str(error).replace(str(broken), "...")
            print(textwrap.fill(f"{type(error).__name__}: {message}", 80))

    mixed = [(torch.zeros(1, 8, 8), 0), (torch.zeros(1, 8, 7), 1)]
    for collate in (None, checked_collate):
        try:
            next(iter(DataLoader(mixed, batch_size=2, collate_fn=collate)))
        except (RuntimeError, ValueError) as error:
            print(textwrap.fill(f"{type(error).__name__}: {error}", 80))
    # --8<-- [end:errors]

    # --8<-- [start:worker-failures]
    import os

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
                time.sleep(6)  # longer than the timeout below
            return str(index)

    for dataset_class in (Crashes, Hangs):
        try:
            list(
                DataLoader(dataset_class(), batch_size=2, num_workers=2, timeout=3)
            )
        except RuntimeError as error:
            message = re.sub(r" \(pid\S* [\d, ]+\)", "", str(error).split(". ")[0])
            print(f"{dataset_class.__name__}: {message}")
    # --8<-- [end:worker-failures]

    # --8<-- [start:exercise-tabular]
    from sklearn.datasets import load_digits

    class TableDataset(Dataset):
        """Rows of a CSV of numbers: every column a feature, the last the label."""

        def __init__(self, csv_path):
            rows = csv_path.read_text().splitlines()[1:]  # skip the header
            values = torch.tensor(
                [[float(v) for v in row.split(",")] for row in rows]
            )
            self.features, self.labels = values[:, :-1], values[:, -1].long()

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, index):
            return self.features[index], self.labels[index]

    digits = load_digits()  # the same digits as a table: 64 pixel columns
    table = root / "table.csv"
    header = ",".join([f"pixel{i}" for i in range(64)] + ["label"])
    lines = [
        ",".join(map(str, [*x, y])) for x, y in zip(digits.data, digits.target)
    ]
    table.write_text("\n".join([header, *lines]))
    features, labels = next(iter(DataLoader(TableDataset(table), batch_size=16)))
    print(tuple(features.shape), features.dtype, labels[:8].tolist())
    # --8<-- [end:exercise-tabular]

    # --8<-- [start:exercise-sorted]
    def sorted_pad_collate(batch):
        """pad_collate with the items sorted longest first, as
        pack_padded_sequence(enforce_sorted=True) wants them."""
        batch = sorted(batch, key=lambda item: len(item[0]), reverse=True)
        return pad_collate(batch)

    padded, mask, targets = sorted_pad_collate(items[:4])
    print("lengths:", mask.sum(dim=1).tolist())
    # --8<-- [end:exercise-sorted]

    # --8<-- [start:exercise-balanced]
    from torch.utils.data import Sampler

    class BalancedSampler(Sampler):
        """Each epoch: the same number of indices from every class, shuffled."""

        def __init__(self, labels, per_class, generator):
            self.labels, self.per_class, self.generator = (
                labels,
                per_class,
                generator,
            )

        def __len__(self):
            return self.per_class * len(self.labels.unique())

        def __iter__(self):
            chosen = []
            for label in self.labels.unique():
                members = (self.labels == label).nonzero().squeeze(1)
                picks = torch.randint(
                    len(members), (self.per_class,), generator=self.generator
                )
                chosen.append(
                    members[picks]
                )  # with replacement: rare classes repeat
            order = torch.cat(chosen)
            yield from order[
                torch.randperm(len(order), generator=self.generator)
            ].tolist()

    balanced = BalancedSampler(rare_labels, 50, torch.Generator().manual_seed(0))
    drawn = rare_labels[list(balanced)]
    print(
        len(balanced), "indices per epoch:", drawn.bincount(minlength=10).tolist()
    )
    # --8<-- [end:exercise-balanced]
