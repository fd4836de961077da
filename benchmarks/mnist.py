"""The MNIST chapter's numbers, on the real data (a script, not a test).

    python -m benchmarks.mnist --data-root data            # print them
    python -m benchmarks.mnist --data-root data --record   # and record them

``--record`` saves them as docs/records/mnist.json. It prints the test accuracy
over 3 seeds; seconds per epoch of the standard path (torchvision dataset,
per-sample transforms, DataLoader) and of the fast path (preloaded tensors);
images per second; the time to 98% test accuracy; the ratio to the compute
floor (the matmul FLOPs of an epoch, counted per layer by
``mnist.training_flops``, at the measured matmul GFLOP/s); and the
going-further result. Timings depend on the machine and on what else runs on
it: the load average is recorded.
"""

import argparse
import os
import statistics
import time

import snippets.mnist as m
import torch
from site_tools.records import write_record
from snippets.mnist import build_model, make_optimizer, train_epoch
from torch.utils.data import DataLoader

PRODUCERS = [m.__file__, __file__]
SEEDS = (0, 1, 2)
CHAPTER = {
    "hidden": (128,),
    "epochs": 6,
    "batch_size": 128,
    "max_lr": 3e-3,
    "val_size": 5000,
}


def matmul_gflops(batch, repeats=50, rounds=5):
    """fp32 GFLOP/s of (batch x 784) @ (784 x 128), the first layer's matmul."""
    a, w = torch.randn(batch, 784), torch.randn(784, 128)
    for _ in range(10):
        a @ w
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ w
        best = min(best, time.perf_counter() - start)
    return 2 * batch * 784 * 128 * repeats / best / 1e9


def chapter_runs(test_set, images, labels, test_x, test_y):
    """The chapter's model over 3 seeds (one 55,000/5,000 split), then seed 0's
    test-set analysis."""
    runs, first = [], None
    for seed in SEEDS:
        train_index, val_index = m.split_indices(
            len(labels), CHAPTER["val_size"], seed=0
        )  # one split for all
        torch.manual_seed(seed)
        model = m.build_model(CHAPTER["hidden"])
        history = m.fit(
            model,
            (images[train_index], labels[train_index]),
            (images[val_index], labels[val_index]),
            epochs=CHAPTER["epochs"],
            batch_size=CHAPTER["batch_size"],
            max_lr=CHAPTER["max_lr"],
            seed=seed,
        )
        runs.append(
            {
                "seed": seed,
                **history,
                "test_accuracy": m.evaluate(model, test_x, test_y),
            }
        )
        print(
            f"seed {seed}: test accuracy {runs[-1]['test_accuracy']:.2%}",
            flush=True,
        )
        first = model if first is None else first
    probabilities = m.predict_proba(first, test_x)
    confidence, predicted = probabilities.max(dim=1)
    counts = m.confusion_matrix(predicted, test_y)
    wrong = (predicted != test_y).nonzero().squeeze(1)
    worst = wrong[confidence[wrong].argsort(descending=True)[:12]]
    raw_test = test_set.data  # uint8 pixels, for the figures
    accuracies = [run["test_accuracy"] for run in runs]
    return {
        "config": CHAPTER,
        "runs": runs,
        "test_accuracy_mean": statistics.mean(accuracies),
        "test_accuracy_min": min(accuracies),
        "test_accuracy_max": max(accuracies),
        "parameters": m.count_parameters(first),
        "confusion": counts.tolist(),
        "per_class": (counts.diag() / counts.sum(dim=1)).tolist(),
        "wrong": {
            "index": worst.tolist(),
            "images": raw_test[worst].reshape(-1, 784).tolist(),
            "labels": test_y[worst].tolist(),
            "predicted": predicted[worst].tolist(),
            "probability": confidence[worst].tolist(),
            "probabilities": probabilities[worst].tolist(),
        },
    }


def time_fast_path(images, labels, test_x, test_y, batch_size, epochs=6):
    """784-128-10 on all 60,000 preloaded images; test accuracy every epoch."""
    torch.manual_seed(0)
    model = m.build_model((128,))
    history = m.fit(
        model,
        (images, labels),
        (test_x, test_y),
        epochs=epochs,
        batch_size=batch_size,
        max_lr=3e-3,
    )
    seconds, accuracy = history["epoch_seconds"], history["val_accuracy"]
    elapsed = [sum(seconds[: i + 1]) for i in range(len(seconds))]
    reached = [t for t, acc in zip(elapsed, accuracy) if acc >= 0.98]
    return {
        "batch_size": batch_size,
        "epoch_seconds": seconds,
        "test_accuracy": accuracy,
        "median_epoch_seconds": statistics.median(seconds),
        "best_epoch_seconds": min(seconds),
        "seconds_to_98": reached[0] if reached else None,
    }


def time_standard_path(train_set, num_workers):
    """One epoch of 784-128-10 fed by a DataLoader over the torchvision dataset."""
    # --8<-- [start:bench-paths]
    torch.manual_seed(0)
    model = build_model((128,))
    optimizer = make_optimizer(model, lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(
        train_set,
        batch_size=128,
        shuffle=True,
        num_workers=num_workers,
        generator=generator,
    )

    # the standard path: PIL image -> ToImage -> ToDtype -> Normalize, per image
    start = time.perf_counter()
    train_epoch(model, loader, optimizer)
    standard_seconds = time.perf_counter() - start

    start = time.perf_counter()  # the data alone: the same loader, no model
    for _batch in loader:
        pass
    loading_seconds = time.perf_counter() - start
    # --8<-- [end:bench-paths]
    return {
        "num_workers": num_workers,
        "train_epoch_seconds": standard_seconds,
        "loading_seconds": loading_seconds,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mnist", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--data-root",
        default="data",
        help="folder holding MNIST/raw (default: data)",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="save the results as docs/records/mnist.json",
    )
    parser.add_argument(
        "--skip-further",
        action="store_true",
        help="skip the ~30 s going-further runs",
    )
    parser.add_argument(
        "--further-seeds",
        type=int,
        default=3,
        help="going-further runs (default: 3)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    train_set, test_set = (
        m.load_mnist(args.data_root, True),
        m.load_mnist(args.data_root, False),
    )
    images, labels = m.preload(train_set, train=True)
    test_x, test_y = m.preload(test_set, train=False)
    pixels = train_set.data.float().div(255)
    first = train_set.data[:24]
    data = {
        "n_train": len(train_set),
        "n_test": len(test_set),
        "train_counts": torch.bincount(labels, minlength=10).tolist(),
        "test_counts": torch.bincount(test_y, minlength=10).tolist(),
        "pixel_mean": pixels.mean().item(),
        "pixel_std": pixels.std().item(),
        "sample_images": first.reshape(-1, 784).tolist(),
        "sample_labels": labels[:24].tolist(),
    }

    gflops = {str(b): matmul_gflops(b) for b in (128, 512, 4096)}
    peak = max(gflops.values())
    model = m.build_model(CHAPTER["hidden"])
    params = m.count_parameters(model)
    layers = m.training_flops(model)
    flops_per_image = sum(
        row["forward"] + row["weight_grad"] + row["input_grad"] for row in layers
    )
    floor_seconds = flops_per_image * len(labels) / (peak * 1e9)
    print(
        f"matmul GFLOP/s: {gflops}; compute floor {floor_seconds:.3f} s/epoch",
        flush=True,
    )

    fast = [
        time_fast_path(images, labels, test_x, test_y, batch_size)
        for batch_size in (128, 512)
    ]
    for run in fast:
        run["images_per_second"] = len(labels) / run["median_epoch_seconds"]
        run["floor_ratio"] = run["median_epoch_seconds"] / floor_seconds
        print(
            f"fast path, batch {run['batch_size']}: "
            f"{run['median_epoch_seconds']:.3f} s/epoch, "
            f"{run['floor_ratio']:.2f}x the floor; 98% after "
            f"{run['seconds_to_98']} s",
            flush=True,
        )
    standard = [time_standard_path(train_set, workers) for workers in (0, 2)]
    for run in standard:
        print(
            f"standard path, {run['num_workers']} workers: "
            f"{run['train_epoch_seconds']:.2f} s/epoch "
            f"(loading alone {run['loading_seconds']:.2f} s)",
            flush=True,
        )

    chapter = chapter_runs(test_set, images, labels, test_x, test_y)
    print(
        f"chapter model: mean test accuracy {chapter['test_accuracy_mean']:.2%}",
        flush=True,
    )

    further = None
    if not args.skip_further:
        further = {"config": m.FURTHER, "runs": []}
        for seed in SEEDS[: args.further_seeds]:
            model, history = m.train_further(
                (images, labels), (test_x, test_y), seed=seed
            )
            further["runs"].append(
                {
                    "seed": seed,
                    **history,
                    "train_seconds": sum(history["epoch_seconds"]),
                    "parameters": m.count_parameters(model),
                }
            )
            print(
                f"going further, seed {seed}: "
                f"{history['val_accuracy'][-1]:.2%} test accuracy",
                flush=True,
            )
        finals = [run["val_accuracy"][-1] for run in further["runs"]]
        further.update(
            test_accuracy_mean=statistics.mean(finals),
            test_accuracy_min=min(finals),
            test_accuracy_max=max(finals),
        )

    metrics = {
        "data": data,
        "chapter": chapter,
        "further": further,
        "threads": torch.get_num_threads(),
        "speed": {
            "matmul_gflops": gflops,
            "floor_seconds": floor_seconds,
            "parameters": params,
            "flops_per_image": flops_per_image,
            "layers": layers,
            "fast": fast,
            "standard": standard,
        },
        "load_average": [load_before, os.getloadavg()[0]],
        "total_seconds": time.perf_counter() - started,
    }
    print(
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{metrics['total_seconds']:.0f} s in all"
    )
    if args.record:
        if further is None:
            raise SystemExit(
                "--record needs the going-further runs (drop --skip-further)"
            )
        print("recorded:", write_record("mnist", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
