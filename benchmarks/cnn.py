"""The CNN chapter's numbers, on the real MNIST data (a script, not a test).

    python -m benchmarks.cnn --data-root data            # print them
    python -m benchmarks.cnn --data-root data --record   # and record them

``--record`` writes docs/records/cnn.json: the chapter's CNN over 3 seeds (test
accuracy per epoch, seconds of training, images per second, the ratio to the
compute floor counted per layer by ``cnn.training_flops`` at the measured
convolution throughput, with and without channels_last), its confusion matrix,
the test digits it gets wrong, its first-layer filters and feature maps; the
going-further recipe over 3 seeds and what each of its changes adds; and the
transfer experiment on scikit-learn's digits (frozen features, fine-tuning, from
scratch, with 5, 10 and 50 labelled images per class). Record on an idle machine.
"""

import argparse
import itertools
import os
import statistics
import time

import snippets.cnn as c
import snippets.mnist as m
import torch
from site_tools.records import write_record
from snippets.cnn import (
    adapt,
    build_cnn,
    digits_as_mnist,
    random_affine,
    train_few,
)
from snippets.mnist import evaluate, fit
from torch import nn

PRODUCERS = [c.__file__, m.__file__, __file__]
SEEDS = (0, 1, 2)
CHAPTER = {
    "channels": (16, 32),
    "epochs": 5,
    "batch_size": 256,
    "max_lr": 4e-3,
    "label_smoothing": 0.1,
    "augment": {"degrees": 8, "shift": 0.08, "scale": (0.92, 1.08)},
}
FURTHER = {
    "channels": (16, 32),
    "hidden": 128,
    "dropout": 0.4,
    "epochs": 15,
    "batch_size": 256,
    "max_lr": 4e-3,
    "label_smoothing": 0.1,
    "augment": {"degrees": 10, "shift": 0.1, "scale": (0.9, 1.1)},
}


def conv_gflops(batch=256, repeats=10):
    """Measured throughput of the CNN's largest layer (16 -> 32 channels, 5x5,
    on 14 x 14 maps), forward, channels_last: the speed the floor assumes."""
    conv = nn.Conv2d(16, 32, 5, padding=2, bias=False).to(
        memory_format=torch.channels_last
    )
    x = torch.randn(batch, 16, 14, 14).to(memory_format=torch.channels_last)
    with torch.no_grad():
        for _ in range(3):
            conv(x)
        start = time.perf_counter()
        for _ in range(repeats):
            conv(x)
        seconds = (time.perf_counter() - start) / repeats
    return 2 * batch * 32 * 14 * 14 * 16 * 25 / seconds / 1e9


def train_cnn(train, test, config, seed, channels_last=True):
    """One training run of a recipe; returns the model and its history."""
    # --8<-- [start:train-cnn]
    torch.manual_seed(seed)
    model = build_cnn(
        config["channels"], config.get("hidden", 0), config.get("dropout", 0.0)
    )
    if channels_last:  # NHWC in memory: faster convolutions on this CPU
        model = model.to(memory_format=torch.channels_last)
    augment = None
    if config["augment"]:  # a new random rotation, shift and zoom per image
        generator = torch.Generator().manual_seed(seed)

        def augment(x):
            return random_affine(x, **config["augment"], generator=generator)

    history = fit(
        model,
        train,
        test,
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        max_lr=config["max_lr"],
        label_smoothing=config["label_smoothing"],
        augment=augment,
        seed=seed,
    )
    # --8<-- [end:train-cnn]
    return model, history


def runs_of(config, train, test, seeds):
    runs, first = [], None
    for seed in seeds:
        model, history = train_cnn(train, test, config, seed)
        seconds = sum(history["epoch_seconds"])
        runs.append(
            {
                "seed": seed,
                **history,
                "train_seconds": seconds,
                "test_accuracy": history["val_accuracy"][-1],
            }
        )
        print(
            f"  seed {seed}: {runs[-1]['test_accuracy']:.2%} in {seconds:.1f} s",
            flush=True,
        )
        first = model if first is None else first
    accuracies = [run["test_accuracy"] for run in runs]
    summary = {
        "config": config,
        "runs": runs,
        "mean": statistics.mean(accuracies),
        "min": min(accuracies),
        "max": max(accuracies),
        "parameters": sum(p.numel() for p in first.parameters()),
    }
    return summary, first


def analysis(model, test_x, test_y, raw_test):
    """Seed 0's confusion matrix, wrong digits, first-layer filters and maps."""
    probabilities = m.predict_proba(model, test_x)
    confidence, predicted = probabilities.max(dim=1)
    wrong = (predicted != test_y).nonzero().squeeze(1)
    worst = wrong[confidence[wrong].argsort(descending=True)[:12]]
    filters = model[1][0].weight.detach()  # 16 x 1 x 5 x 5
    with torch.inference_mode():
        maps = model[1][0](model[0](test_x[:1]))[0]  # conv1 of test image 0
    return {
        "confusion": m.confusion_matrix(predicted, test_y).tolist(),
        "wrong": {
            "images": raw_test[worst].reshape(-1, 784).tolist(),
            "labels": test_y[worst].tolist(),
            "predicted": predicted[worst].tolist(),
            "probability": confidence[worst].tolist(),
            "count": len(wrong),
        },
        "filters": filters.squeeze(1).tolist(),
        "maps": maps.tolist(),
        "map_image": raw_test[0].tolist(),
        "map_label": int(test_y[0]),
    }


def layout_speed(train, steps=60):
    """Seconds per training step of the chapter's CNN: channels_last or not."""
    images, labels = train
    speed = {}
    for channels_last in (False, True, False, True):  # twice each: less noise
        torch.manual_seed(0)
        model = c.build_cnn()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = m.make_optimizer(model, 1e-3)
        batches = m.batches(
            images, labels, CHAPTER["batch_size"], torch.Generator().manual_seed(0)
        )
        chosen = list(itertools.islice(batches, steps))
        start = time.perf_counter()
        m.train_epoch(model, chosen, optimizer)
        seconds = (time.perf_counter() - start) / len(chosen)
        key = "channels_last" if channels_last else "contiguous"
        speed[key] = min(seconds, speed.get(key, float("inf")))
    return speed


# --8<-- [start:transfer-run]
TRANSFER = {
    "per_class": (5, 10, 50),
    "methods": ("frozen", "fine-tune", "scratch"),
    "seeds": (0, 1, 2),
    "held_out": 797,
    "steps": 150,
}


def transfer_experiment(pretrained):
    """The MNIST CNN reused for the UCI digits with a few labels per class."""
    images, labels = digits_as_mnist()
    order = torch.randperm(
        len(labels), generator=torch.Generator().manual_seed(1234)
    )
    held_out, pool = order[: TRANSFER["held_out"]], order[TRANSFER["held_out"] :]
    results = {}
    for per_class in TRANSFER["per_class"]:
        for method in TRANSFER["methods"]:
            accuracies = []
            for seed in TRANSFER["seeds"]:
                chosen = []  # `per_class` labelled images of each digit
                generator = torch.Generator().manual_seed(seed)
                for digit in range(10):
                    members = pool[labels[pool] == digit]
                    picks = torch.randperm(len(members), generator=generator)
                    chosen.append(members[picks[:per_class]])
                chosen = torch.cat(chosen)
                model, lr = adapt(pretrained, method, seed)
                model = train_few(
                    model,
                    images[chosen],
                    labels[chosen],
                    method,
                    steps=TRANSFER["steps"],
                    lr=lr,
                )
                accuracies.append(
                    evaluate(model, images[held_out], labels[held_out])
                )
            results[f"{method}/{per_class}"] = accuracies
            print(
                f"  {method:9} {per_class:2} per class: "
                + ", ".join(f"{a:.1%}" for a in accuracies),
                flush=True,
            )
    return results


# --8<-- [end:transfer-run]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cnn", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--data-root", default="data", help="folder holding MNIST/raw"
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/cnn.json"
    )
    parser.add_argument(
        "--skip-further", action="store_true", help="not the long runs"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (default: 2)"
    )
    args = parser.parse_args(argv)
    if args.record and args.skip_further:
        parser.error("--record needs the going-further runs (drop --skip-further)")
    torch.set_num_threads(args.threads)
    load_before, started = os.getloadavg()[0], time.perf_counter()
    train_set, test_set = (
        m.load_mnist(args.data_root, True),
        m.load_mnist(args.data_root, False),
    )
    train, test = m.preload(train_set, True), m.preload(test_set, False)

    gflops = conv_gflops()
    layers = c.training_flops(c.build_cnn(CHAPTER["channels"]), train[0][:1])
    flops = sum(
        row["forward"] + row["weight_grad"] + row["input_grad"] for row in layers
    )
    floor = flops * len(train[1]) / (gflops * 1e9)
    print(
        f"conv throughput {gflops:.0f} GFLOP/s; floor {floor:.2f} s per epoch",
        flush=True,
    )
    speed = layout_speed(train)
    print(f"seconds per step: {speed}", flush=True)

    print("chapter CNN:", CHAPTER, flush=True)
    chapter, model = runs_of(CHAPTER, train, test, SEEDS)
    chapter["analysis"] = analysis(model, *test, test_set.data)
    epoch = statistics.median(
        s for run in chapter["runs"] for s in run["epoch_seconds"]
    )
    chapter.update(
        median_epoch_seconds=epoch,
        images_per_second=len(train[1]) / epoch,
        floor_ratio=epoch / floor,
    )

    print("transfer to the UCI digits:", flush=True)
    transfer = transfer_experiment(model)

    further = ablations = None
    if not args.skip_further:
        print("going further:", FURTHER, flush=True)
        further, _ = runs_of(FURTHER, train, test, SEEDS)
        ablations = {}
        variants = {
            "without augmentation": {**FURTHER, "augment": None},
            "without the hidden layer": {**FURTHER, "hidden": 0, "dropout": 0.0},
        }
        for name, config in variants.items():
            print(f"going further, {name}:", flush=True)
            ablations[name], _ = runs_of(config, train, test, SEEDS[:1])

    metrics = {
        "chapter": chapter,
        "further": further,
        "ablations": ablations,
        "transfer": {"config": TRANSFER, "results": transfer},
        "speed": {
            "conv_gflops": gflops,
            "layers": layers,
            "flops_per_image": flops,
            "floor_seconds": floor,
            "layout_step_seconds": speed,
        },
        "threads": torch.get_num_threads(),
        "load_average": [load_before, os.getloadavg()[0]],
        "total_seconds": time.perf_counter() - started,
    }
    print(
        f"{metrics['total_seconds']:.0f} s in all; load average {load_before:.2f} "
        f"before, {os.getloadavg()[0]:.2f} after"
    )
    if args.record:
        print("recorded:", write_record("cnn", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
