"""Your own data: the code of docs/data.md.

Real data on disk (scikit-learn's 1,797 handwritten 8 x 8 digits written out as
PNG files and a CSV, as a reader's own data looks) loaded with Dataset,
DataLoader and transforms.v2. Definitions are at module level (the datasets and
collate functions are importable, so that DataLoader workers started with
"forkserver" or "spawn" find them); what the page runs is at the end, at module
level.
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
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class CsvImageDataset(Dataset):
    """Images listed in a CSV file (columns file, label), read one per item.

    shape: the shape every transformed item must have (None: not checked).
    check_files: test that every file exists now (one request per row: turn it
    off on a network file system with millions of files).
    """

    def __init__(
        self, csv_path, num_classes, transform=None, shape=None, check_files=True
    ):
        self.transform, self.shape = transform, shape
        root, paths, labels = Path(csv_path).parent, [], []
        with open(csv_path, newline="") as file:
            rows = csv.DictReader(file)
            if not {"file", "label"} <= set(rows.fieldnames or []):
                raise ValueError(
                    f"{csv_path}:1: the header must name the columns file and "
                    f"label, not {rows.fieldnames}"
                )
            for line, row in enumerate(rows, start=2):
                label = (row["label"] or "").strip()  # None: a short row
                if not label.isdecimal() or int(label) >= num_classes:
                    raise ValueError(
                        f"{csv_path}:{line}: label {label!r} is not one of the "
                        f"{num_classes} classes 0..{num_classes - 1}"
                    )
                path = root / (row["file"] or "")
                if check_files and not path.is_file():  # now, not in epoch 3
                    raise FileNotFoundError(f"{csv_path}:{line}: no file {path}")
                paths.append(os.fsencode(path))  # bytes: see below
                labels.append(int(label))
        # one array of names (as bytes) and one tensor of labels, not a list of
        # Python objects: worker processes read them without copying them
        self.paths, self.labels = np.array(paths), torch.tensor(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        path = os.fsdecode(self.paths[index])  # bytes back to a str
        try:
            with Image.open(path) as image:  # read lazily: only this item
                image = image.convert("L")  # 8-bit files: one gray channel
        except OSError as error:  # a missing, truncated or non-image file
            raise OSError(f"item {index}: cannot read {path}: {error}") from error
        if self.transform is not None:
            image = self.transform(image)
        if self.shape is not None and tuple(image.shape) != self.shape:
            raise ValueError(
                f"item {index} ({path}) has shape {tuple(image.shape)}, not "
                f"{self.shape}: resize it in the transform"
            )
        return image, int(self.labels[index])


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
import numpy as np
import torch
from sklearn.model_selection import train_test_split


def stratified_split(labels, seed, validation=0.15, test=0.15):
    """Train, validation and test indices that keep each class's share:
    scikit-learn's train_test_split, twice (it checks the fractions)."""
    labels = np.asarray(labels)
    everything = np.arange(len(labels))
    train, rest = train_test_split(
        everything, test_size=validation + test, stratify=labels, random_state=seed
    )
    validation, test = train_test_split(
        rest,
        test_size=test / (validation + test),
        stratify=labels[rest],
        random_state=seed,
    )
    return [torch.from_numpy(np.sort(part)) for part in (train, validation, test)]


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
    gray = v2.Compose([v2.Grayscale(), to_tensor])  # ImageFolder opens RGB
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

    generator = torch.Generator().manual_seed(0)
    parts = random_split(dataset, [0.7, 0.15, 0.15], generator=generator)
    print("random_split:", [len(part) for part in parts])

    splits = stratified_split(dataset.labels, seed=0)
    train_index, val_index, test_index = splits
    print("stratified:  ", [len(index) for index in splits])

    def shares(index):  # each class's share of a split, in percent
        counts = dataset.labels[index].bincount(minlength=10)
        return " ".join(f"{100 * count / len(index):4.1f}" for count in counts)

    print("class shares (%):         ", " ".join(f"{d:>4}" for d in range(10)))
    print("  all the data:           ", shares(torch.arange(len(dataset))))
    print("  random_split, test part:", shares(torch.tensor(parts[2].indices)))
    print("  stratified, test split: ", shares(test_index))
    # --8<-- [end:split-demo]

    # --8<-- [start:stats]
    train_plain = Subset(dataset, train_index.tolist())  # ToImage, ToDtype only
    train_pixels = torch.stack([image for image, _label in train_plain])
    mean, std = train_pixels.mean().item(), train_pixels.std().item()
    print(f"training pixels: mean {mean:.4f}, std {std:.4f}")

    normalize = v2.Normalize((mean,), (std,))
    evaluate_transform = v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), normalize]
    )
    normed = torch.stack([evaluate_transform(image) for image in train_pixels])
    print(f"after Normalize: mean {normed.mean():.4f}, std {normed.std():.4f}")
    # --8<-- [end:stats]

    # --8<-- [start:augment]
    import matplotlib.pyplot as plt

    augment = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomAffine(degrees=15, translate=(0.15, 0.15), scale=(0.85, 1.1)),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomErasing(p=0.5, scale=(0.05, 0.15), value=0),  # 0: no ink
            normalize,
        ]
    )
    path, label = os.fsdecode(dataset.paths[0]), int(dataset.labels[0])
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

    # --8<-- [start:train-evaluate]
    for_training = CsvImageDataset(csv_path, 10, transform=augment)
    for_evaluation = CsvImageDataset(csv_path, 10, transform=evaluate_transform)
    train_set = Subset(for_training, train_index.tolist())
    val_set = Subset(for_evaluation, val_index.tolist())
    test_set = Subset(for_evaluation, test_index.tolist())
    for name, part in [("training", train_set), ("validation", val_set)]:
        same = torch.equal(part[0][0], part[0][0])
        print(f"{name} item 0, read twice, identical: {same}")
    # --8<-- [end:train-evaluate]

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
    moved = transforms.RandomAffine(degrees=0, translate=(0.3, 0.3))(batch)
    print(
        "v1 on a batch:",
        tuple(moved.shape),
        "moved alike:",
        moved.eq(moved[0]).all().item(),
    )
    # --8<-- [end:v1]

    # --8<-- [start:sizes]
    from torchvision.models import ResNet18_Weights

    photos = root / "photos"  # real photos: each its own size, in colour
    photos.mkdir(exist_ok=True)
    for number, (width, height) in enumerate([(40, 30), (64, 64), (23, 57)]):
        small = Image.open(os.fsdecode(dataset.paths[number])).convert("RGB")
        small.resize((width, height)).save(photos / f"{number}.png")

    train_resize = v2.Compose(  # on uint8 images: crop, resize, then floats
        [v2.ToImage(), v2.RandomResizedCrop(24, scale=(0.5, 1.0))]
    )
    evaluate_resize = v2.Compose([v2.ToImage(), v2.Resize(28), v2.CenterCrop(24)])
    to_float = v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize((mean,), (std,))]
    )
    for path in sorted(photos.iterdir()):
        with Image.open(path) as image:
            image = image.convert("L")
        trained, evaluated = train_resize(image), evaluate_resize(image)
        print(
            f"{path.name}: {image.width} x {image.height} -> {trained.dtype} "
            f"train {tuple(to_float(trained).shape)}, "
            f"evaluate {tuple(to_float(evaluated).shape)}"
        )

    deep = np.array([[0, 1000, 30000, 65535]], dtype=np.uint16)  # 16 bits
    Image.fromarray(deep).save(photos / "deep.png")
    with Image.open(photos / "deep.png") as image:
        print(
            f"16-bit ({image.mode}), convert('L'):", np.asarray(image.convert("L"))
        )
        as_read = v2.ToImage()(image)  # no convert: the 16 bits kept
    scaled = v2.ToDtype(torch.float32, scale=True)(as_read)
    print("ToImage keeps", as_read.dtype)
    print("ToDtype(scale=True):", scaled.flatten())

    clear_red = Image.new("RGBA", (1, 1), (255, 0, 0, 0))  # fully transparent
    on_white = Image.alpha_composite(Image.new("RGBA", (1, 1), "white"), clear_red)
    print("transparent red, convert('L'):", clear_red.convert("L").getpixel((0, 0)))
    print("  composited on white first:  ", on_white.convert("L").getpixel((0, 0)))

    pretrained = ResNet18_Weights.DEFAULT.transforms()  # no download: a recipe
    print("ResNet18_Weights:", pretrained.resize_size, pretrained.crop_size)
    print("  mean", pretrained.mean, "std", pretrained.std)
    # --8<-- [end:sizes]

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
    items = [  # (characters as numbers, label: 1 for a word longer than 5)
        (torch.tensor([vocabulary[c] for c in word]), int(len(word) > 5))
        for word in words
    ]

    padded, mask, targets = next(
        iter(DataLoader(items, batch_size=3, collate_fn=pad_collate))
    )
    print(padded)
    print(mask.int())
    print("lengths:", mask.sum(dim=1).tolist(), "| labels:", targets.tolist())
    # --8<-- [end:collate-demo]

    # --8<-- [start:collate-models]
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    embed = nn.Embedding(len(vocabulary) + 1, 8, padding_idx=0)
    vectors = embed(padded)  # 3 x 6 x 8
    attention = nn.MultiheadAttention(8, num_heads=2, batch_first=True)
    _, weights = attention(vectors, vectors, vectors, key_padding_mask=~mask)
    print(
        "attention paid to padding:",
        weights[~mask[:, None, :].expand_as(weights)].sum().item(),
    )

    lstm = nn.LSTM(8, 16, batch_first=True)
    lengths = mask.sum(dim=1)
    packed = pack_padded_sequence(
        vectors, lengths.cpu(), batch_first=True, enforce_sorted=False
    )
    _, (last, _) = lstm(packed)  # each word's state after its last real character
    alone, _ = lstm(vectors[1, : lengths[1]])  # "grad" by itself, unpadded
    print(
        "LSTM state after 'grad', padded batch = alone:",
        torch.allclose(last[0, 1], alone[-1], atol=1e-6),
    )
    # --8<-- [end:collate-models]

    # --8<-- [start:sampler]
    from torch.utils.data import WeightedRandomSampler

    train_labels = dataset.labels[train_index]
    zeros = train_index[train_labels == 0]
    keep = torch.cat([train_index[train_labels != 0], zeros[:8]])  # 8 zeros left
    rare = Subset(for_evaluation, keep.tolist())
    rare_labels = dataset.labels[keep]
    counts = rare_labels.bincount(minlength=10)
    print("items per class:    ", counts.tolist())

    weights = 1.0 / counts[rare_labels].double()  # every class: the same total
    sampler = WeightedRandomSampler(
        weights,
        num_samples=len(rare),
        replacement=True,
        generator=torch.Generator().manual_seed(0),
    )
    drawn = list(sampler)  # one epoch's positions in rare
    print(
        "drawn in one epoch: ", rare_labels[drawn].bincount(minlength=10).tolist()
    )
    distinct = rare_labels[sorted(set(drawn))].bincount(minlength=10)
    print("distinct items seen:", distinct.tolist())
    # --8<-- [end:sampler]

    # --8<-- [start:errors]
    import shutil
    import textwrap

    broken = Path(tempfile.mkdtemp())
    shutil.copytree(root / "images", broken / "images")
    rows = csv_path.read_text().splitlines()
    (broken / "missing.csv").write_text(
        "\n".join([*rows[:3], "images/3/9999.png,3"])
    )
    (broken / "label.csv").write_text(
        "\n".join([*rows[:3], rows[3].rsplit(",")[0] + ",12"])
    )
    (broken / "header.csv").write_text("\n".join(["path,label", *rows[1:3]]))
    (broken / "images" / "5" / "0005.png").write_bytes(b"not a PNG file")
    (broken / "unreadable.csv").write_text(
        "\n".join([rows[0], "images/5/0005.png,5"])
    )
    Image.new("L", (7, 8)).save(broken / "images" / "5" / "0006.png")  # 7 wide
    (broken / "sizes.csv").write_text("\n".join([*rows[:3], "images/5/0006.png,5"]))

    for name in ["missing.csv", "label.csv", "header.csv", "unreadable.csv"]:
        try:
            CsvImageDataset(broken / name, num_classes=10, transform=to_tensor)[0]
        except (OSError, ValueError) as error:
            message = str(error).replace(str(broken), "...")
            print(textwrap.fill(f"{type(error).__name__}: {message}", 80))

    for shape in (None, (1, 8, 8)):  # not checked, then checked in the dataset
        sizes = CsvImageDataset(broken / "sizes.csv", 10, to_tensor, shape=shape)
        try:
            next(iter(DataLoader(sizes, batch_size=3)))
        except (RuntimeError, ValueError) as error:
            message = str(error).replace(str(broken), "...")
            print(textwrap.fill(f"{type(error).__name__}: {message}", 80))
    # --8<-- [end:errors]

    # --8<-- [start:exercise-tabular]
    from sklearn.datasets import load_digits

    class TableDataset(Dataset):
        """Rows of a CSV of numbers: every column a feature, the last the label."""

        def __init__(self, csv_path):
            values = np.loadtxt(csv_path, delimiter=",", skiprows=1, ndmin=2)
            values = torch.from_numpy(values).float()
            self.features, self.labels = values[:, :-1], values[:, -1].long()

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, index):
            return self.features[index], self.labels[index]

    digits = load_digits()  # the same digits as a table: 64 pixel columns
    table = root / "table.csv"
    header = ",".join([f"pixel{i}" for i in range(64)] + ["label"])
    columns = np.column_stack([digits.data, digits.target])
    np.savetxt(table, columns, fmt="%g", delimiter=",", header=header, comments="")
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
            self.labels, self.per_class = labels, per_class
            self.generator = generator

        def __len__(self):
            return self.per_class * len(self.labels.unique())

        def __iter__(self):
            chosen = []
            for label in self.labels.unique():
                members = (self.labels == label).nonzero().squeeze(1)
                picks = torch.randint(  # with replacement: rare classes repeat
                    len(members), (self.per_class,), generator=self.generator
                )
                chosen.append(members[picks])
            order = torch.cat(chosen)
            shuffled = torch.randperm(len(order), generator=self.generator)
            yield from order[shuffled].tolist()

    balanced = BalancedSampler(rare_labels, 50, torch.Generator().manual_seed(0))
    drawn = rare_labels[list(balanced)]
    print(
        len(balanced), "indices per epoch:", drawn.bincount(minlength=10).tolist()
    )
    # --8<-- [end:exercise-balanced]
