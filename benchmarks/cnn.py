"""The CNN chapter's numbers, on the real MNIST data (a script, not a test).

    python -m benchmarks.cnn --data-root data            # print them
    python -m benchmarks.cnn --data-root data --record   # and record them

Every recipe is chosen on a validation split and the test set is read once per
run, at the end, as in the MNIST chapter: the 60,000 training images are split
into 55,000 to train on and 5,000 to validate (the MNIST chapter's seeded split).
For the chapter's CNN (at most 60 s of training per run) and the going-further
network (at most 5 minutes), a few candidate recipes are each trained with seeds
0 and 1; the one with the best mean validation accuracy among those whose runs
fit the time limit is trained with seeds 2 to 6, fresh ones, and those 5 runs
are evaluated on the test set, once each. A run's training time, for the limit,
is its number of epochs times its median epoch's seconds. The record also holds
every candidate's runs, the chapter's CNN trained exactly like the MNIST
chapter's MLP (5 seeds, nothing chosen), the speed of the channels_last layout
and the compute floor, the confusion matrix, mistakes, filters and feature maps
of the first test run, and the transfer experiment on scikit-learn's digits
(each method's learning rate chosen on 200 validation digits; 797 held-out
digits read once per run). Each run records the machine's load at its start and
end and the process's CPU seconds. --record refuses to start above a load
average of 0.5, and before each run waits while something else keeps the
machine busy.
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
    CHOICE_SEEDS,
    METHODS,
    SEEDS,
    build_cnn,
    choose_and_test,
    digits_as_mnist,
    random_affine,
    transfer,
)
from snippets.mnist import evaluate, fit
from torch import nn

PRODUCERS = [c.__file__, m.__file__, __file__]
VAL_SIZE, SPLIT_SEED = 5000, 0  # the MNIST chapter's validation split
TIME_LIMITS = {"chapter": 60, "further": 300}  # seconds of training per run
IDLE_LOAD = 0.5  # --record refuses to start above this 1-minute load average
WAIT_SECONDS = 900  # how long a run waits for a busy machine before giving up
CHAPTER = {
    "channels": (16, 32),
    "epochs": 5,
    "batch_size": 256,
    "max_lr": 4e-3,
    "label_smoothing": 0.1,
    "augment": {"degrees": 8, "shift": 0.08, "scale": (0.92, 1.08)},
}
CHAPTER_CANDIDATES = {
    "augmentation, label smoothing": CHAPTER,
    "peak learning rate 8e-3": {**CHAPTER, "max_lr": 8e-3},
    "the same, 7 epochs": {**CHAPTER, "epochs": 7},
    "without augmentation": {**CHAPTER, "augment": None},
    "without label smoothing": {**CHAPTER, "label_smoothing": 0.0},
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
FURTHER_CANDIDATES = {  # the recipe, longer, and without two of its changes
    "hidden layer, dropout, augmentation": FURTHER,
    "the same, 20 epochs": {**FURTHER, "epochs": 20},
    "without augmentation": {**FURTHER, "augment": None},
    "without the hidden layer": {**FURTHER, "hidden": 0, "dropout": 0.0},
}
MLP_RECIPE = {  # the MNIST chapter's MLP recipe (benchmarks/mnist.py), with the CNN
    "channels": (16, 32),
    "epochs": 6,
    "batch_size": 128,
    "max_lr": 3e-3,
    "label_smoothing": 0.0,
    "augment": None,
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


def refuse_a_busy_machine(parser, recording):
    """The 1-minute load average at the start; --record refuses above IDLE_LOAD."""
    load = os.getloadavg()[0]
    if recording and load > IDLE_LOAD:
        parser.error(
            f"load average {load:.2f} (1 minute), above {IDLE_LOAD}: something "
            "else is running; record on an idle machine"
        )
    return load


def wait_while_busy(threads, poll=15):
    """Before a recorded run: our own threads account for a load of about
    ``threads``; above threads + 1 something else is busy, so wait (polling)
    until the load falls to IDLE_LOAD, or give up after WAIT_SECONDS."""
    load = os.getloadavg()[0]
    if load <= threads + 1:
        return
    print(
        f"load average {load:.2f}: waiting for the machine to be idle", flush=True
    )
    waited = 0
    while os.getloadavg()[0] > IDLE_LOAD:
        if waited >= WAIT_SECONDS:
            raise SystemExit(
                f"the load average stayed above {IDLE_LOAD} for {WAIT_SECONDS} s: "
                "something else is running; nothing recorded"
            )
        time.sleep(poll)
        waited += poll


def measured(train_run, threads=None):
    """train_run, with the 1-minute load average at each run's start and end,
    the run's wall-clock and CPU seconds (all threads); given ``threads`` (when
    recording), each run first waits while the machine is busy."""

    def run(config, seed):
        if threads is not None:
            wait_while_busy(threads)
        load, wall, cpu = (
            os.getloadavg()[0],
            time.perf_counter(),
            time.process_time(),
        )
        result = train_run(config, seed)
        result.update(
            load=[load, os.getloadavg()[0]],
            run_seconds=time.perf_counter() - wall,
            cpu_seconds=time.process_time() - cpu,
        )
        return result

    return run


def split_training_set(train):
    """The MNIST chapter's split: 55,000 images to train on, 5,000 to validate."""
    images, labels = train
    train_index, val_index = m.split_indices(len(labels), VAL_SIZE, SPLIT_SEED)
    return (
        (images[train_index], labels[train_index]),
        (images[val_index], labels[val_index]),
    )


def train_cnn(train_part, val_part, config, seed, channels_last=True):
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
        # a stream of its own: fit's batch order is seeded with `seed`
        generator = torch.Generator().manual_seed(10_000 + seed)

        def augment(x):
            return random_affine(x, **config["augment"], generator=generator)

    history = fit(  # validation accuracy after every epoch; never the test set
        model,
        train_part,  # 55,000 images
        val_part,  # the 5,000 held out of the training set
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        max_lr=config["max_lr"],
        label_smoothing=config["label_smoothing"],
        augment=augment,
        seed=seed,
    )
    # --8<-- [end:train-cnn]
    return model, history


def cnn_run(train_part, val_part, config, seed):
    """train_cnn as a run for cnn.choose_and_test: the model, its history, its
    training seconds (epochs x the median epoch: the time limit's measure, which
    one epoch slowed by something else on the machine barely moves), their sum,
    its final validation accuracy and its training accuracy."""
    model, history = train_cnn(train_part, val_part, config, seed)
    epochs = history["epoch_seconds"]
    run = {
        "seed": seed,
        "model": model,
        **history,
        "train_seconds": len(epochs) * statistics.median(epochs),
        "wall_seconds": sum(epochs),
        "validation": history["val_accuracy"][-1],
        "train_accuracy": evaluate(model, *train_part),
    }
    print(
        f"  seed {seed}: validation {run['validation']:.2%}, "
        f"{run['train_seconds']:.1f} s ({run['wall_seconds']:.1f} s in all)",
        flush=True,
    )
    return run


def without_models(runs):
    return [{k: v for k, v in run.items() if k != "model"} for run in runs]


def recipe(candidates, train_part, val_part, test, time_limit, threads=None):
    """choose_and_test for CNN recipes; the record's entry, and the model of
    the chosen recipe's first test run. threads: when recording (measured)."""
    print("recipes:", ", ".join(candidates), flush=True)
    result = choose_and_test(
        candidates,
        measured(
            lambda config, seed: cnn_run(train_part, val_part, config, seed),
            threads,
        ),
        lambda model: evaluate(model, *test),
        time_limit,
    )
    first = result["runs"][0]["model"]
    result.update(
        parameters=sum(p.numel() for p in first.parameters()),
        runs=without_models(result["runs"]),
    )
    print(f"test accuracy: {result['test']}", flush=True)
    return result, first


def mlp_recipe_runs(train_part, val_part, test, threads=None):
    """The chapter's CNN trained exactly like the MNIST chapter's MLP: 5 seeds,
    nothing chosen; training, validation and test accuracy of each run."""
    runs = []
    print("the CNN, trained like the MLP:", flush=True)
    train_run = measured(
        lambda config, seed: cnn_run(train_part, val_part, config, seed), threads
    )
    for seed in SEEDS:
        run = train_run(MLP_RECIPE, seed)
        run["test"] = evaluate(run.pop("model"), *test)
        runs.append(run)
    tests = [run["test"] for run in runs]
    return {
        "config": MLP_RECIPE,
        "runs": runs,
        "test": {
            "values": tests,
            "mean": statistics.mean(tests),
            "min": min(tests),
            "max": max(tests),
            "std": statistics.stdev(tests),
        },
    }


def analysis(model, test_x, test_y, raw_test):
    """One model's confusion matrix, wrong digits, first-layer filters and maps."""
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
    "seeds": SEEDS,
    "held_out": 797,  # read once per run, at the end
    "validation": 200,  # to choose each method's learning rate
    "learning_rates": (1e-3, 3e-3),
    "choice_per_class": 10,
    "steps": 150,
    "split_seed": 1234,
}


def transfer_split(count):
    """Indices of the UCI digits, disjoint: held out, validation, and the pool
    the labelled images are drawn from."""
    generator = torch.Generator().manual_seed(TRANSFER["split_seed"])
    order = torch.randperm(count, generator=generator)
    val_end = TRANSFER["held_out"] + TRANSFER["validation"]
    return (
        order[: TRANSFER["held_out"]],
        order[TRANSFER["held_out"] : val_end],
        order[val_end:],
    )


def labelled(pool, labels, per_class, seed):
    """``per_class`` images of each digit, drawn from ``pool`` with ``seed``."""
    generator, chosen = torch.Generator().manual_seed(seed), []
    for digit in range(10):
        members = pool[labels[pool] == digit]
        chosen.append(members[torch.randperm(len(members), generator=generator)])
    return torch.cat([members[:per_class] for members in chosen])


def transfer_experiment(pretrained):
    """The MNIST CNN reused for the UCI digits with a few labels per class;
    every method and seed starts from the same ``pretrained`` network."""
    images, labels = digits_as_mnist()
    held_out, val, pool = transfer_split(len(labels))

    def accuracy(method, per_class, lr, seed, on):
        chosen = labelled(pool, labels, per_class, seed)
        model = transfer(
            pretrained,
            method,
            images[chosen],
            labels[chosen],
            lr,
            TRANSFER["steps"],
            seed,
        )
        return evaluate(model, images[on], labels[on])

    learning_rates, choice = {}, {}
    for method in METHODS:  # each method's learning rate, on validation
        choice[method] = {
            str(lr): [
                accuracy(method, TRANSFER["choice_per_class"], lr, seed, val)
                for seed in CHOICE_SEEDS
            ]
            for lr in TRANSFER["learning_rates"]
        }
        learning_rates[method] = float(
            max(choice[method], key=lambda lr: statistics.mean(choice[method][lr]))
        )
    results = {}
    for per_class in TRANSFER["per_class"]:
        for method in METHODS:
            results[f"{method}/{per_class}"] = runs = [
                accuracy(method, per_class, learning_rates[method], seed, held_out)
                for seed in TRANSFER["seeds"]
            ]
            print(f"{method}, {per_class} per class: {statistics.mean(runs):.1%}")
    return {
        "config": {**TRANSFER, "methods": METHODS},
        "choice": choice,
        "learning_rates": learning_rates,
        "results": results,
    }


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
    load_before = refuse_a_busy_machine(parser, args.record)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    guarded = args.threads if args.record else None  # runs wait while busy
    train_set, test_set = (
        m.load_mnist(args.data_root, True),
        m.load_mnist(args.data_root, False),
    )
    train, test = m.preload(train_set, True), m.preload(test_set, False)
    train_part, val_part = split_training_set(train)

    gflops = conv_gflops()
    layers = c.training_flops(c.build_cnn(CHAPTER["channels"]), train[0][:1])
    flops = sum(
        row["forward"] + row["weight_grad"] + row["input_grad"] for row in layers
    )
    floor = flops * len(train_part[1]) / (gflops * 1e9)
    print(
        f"conv throughput {gflops:.0f} GFLOP/s; floor {floor:.2f} s per epoch",
        flush=True,
    )
    speed = layout_speed(train_part)
    print(f"seconds per step: {speed}", flush=True)

    chapter, model = recipe(
        CHAPTER_CANDIDATES,
        train_part,
        val_part,
        test,
        TIME_LIMITS["chapter"],
        guarded,
    )
    chapter["analysis"] = analysis(model, *test, test_set.data)
    epoch = statistics.median(
        s for run in chapter["runs"] for s in run["epoch_seconds"]
    )
    chapter.update(
        median_epoch_seconds=epoch,
        images_per_second=len(train_part[1]) / epoch,
        floor_ratio=epoch / floor,
    )
    like_the_mlp = mlp_recipe_runs(train_part, val_part, test, guarded)

    print("transfer to the UCI digits:", flush=True)
    transfer_results = transfer_experiment(model)
    transfer_results["pretrained_seed"] = chapter["runs"][0]["seed"]

    further = None
    if not args.skip_further:
        further, _ = recipe(
            FURTHER_CANDIDATES,
            train_part,
            val_part,
            test,
            TIME_LIMITS["further"],
            guarded,
        )

    metrics = {
        "split": {"train": len(train_part[1]), "validation": len(val_part[1])},
        "chapter": chapter,
        "like_the_mlp": like_the_mlp,
        "further": further,
        "transfer": transfer_results,
        "speed": {
            "conv_gflops": gflops,
            "layers": layers,
            "flops_per_image": flops,
            "floor_seconds": floor,
            "layout_step_seconds": speed,
            "layout_batch_size": CHAPTER["batch_size"],
        },
        "threads": torch.get_num_threads(),
        "idle_load": IDLE_LOAD,
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
