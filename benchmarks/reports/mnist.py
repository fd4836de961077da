"""What docs/mnist.md shows from its recorded run (docs/records/mnist.json): hidden page blocks, not reader code.

Each section collects its lines in a ``RecordedText``, which prints as an output block captioned with the record
it comes from, and draws figures that the page's render block then shows. Kept apart from the benchmark that writes
the record, so that changing how a result is shown does not make the record stale.
"""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:record]
    from site_tools.records import RecordedText, describe_cpu_run, read_record

    record = read_record("mnist")  # made by: python -m benchmarks.mnist --data-root data --record
    results = record["metrics"]
    out = RecordedText(record)
    out(describe_cpu_run(record))
    print(out)
    # --8<-- [end:record]

    # --8<-- [start:look]
    import matplotlib.pyplot as plt
    import torch

    data = results["data"]
    out = RecordedText(record)
    out(f"{data['n_train']:,} training images, {data['n_test']:,} test images")
    out(f"training pixels in [0, 1]: mean {data['pixel_mean']:.4f}, std {data['pixel_std']:.4f}")
    out("training, per digit:", data["train_counts"])
    out("test, per digit:    ", data["test_counts"])
    print(out)

    samples = torch.tensor(data["sample_images"], dtype=torch.uint8).reshape(-1, 28, 28)
    fig, axes = plt.subplots(3, 8, figsize=(8, 3.6))
    for ax, image, label in zip(axes.flat, samples, data["sample_labels"]):
        ax.imshow(image.numpy(), cmap="gray")
        ax.set_title(str(label), fontsize=10)
        ax.axis("off")
    fig.suptitle("The first 24 training images, each titled with its label")

    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.bar(range(10), data["train_counts"], color="tab:orange")
    ax.set(title="Training images per digit", xlabel="digit", ylabel="images", xticks=range(10))
    # --8<-- [end:look]

    # --8<-- [start:curves]
    chapter = results["chapter"]
    config = chapter["config"]
    out = RecordedText(record)
    out(
        f"784-128-10, {chapter['parameters']:,} parameters; {config['epochs']} epochs, batch "
        f"{config['batch_size']}, peak learning rate {config['max_lr']}"
    )
    out("epoch  train loss  validation accuracy  seconds (seed 0)")
    first = chapter["runs"][0]
    for epoch, (loss, accuracy, seconds) in enumerate(
        zip(first["train_loss"], first["val_accuracy"], first["epoch_seconds"]), start=1
    ):
        out(f"{epoch:5}  {loss:10.4f}  {accuracy:19.2%}  {seconds:7.2f}")
    print(out)

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for run in chapter["runs"]:
        epochs = range(1, len(run["train_loss"]) + 1)
        left.plot(epochs, run["train_loss"], marker="o", label=f"seed {run['seed']}")
        right.plot(epochs, run["val_accuracy"], marker="o", label=f"seed {run['seed']}")
    left.set(title="Training loss", xlabel="epoch", ylabel="cross-entropy (log scale)", yscale="log")
    right.set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy")
    right.legend()
    fig.tight_layout()
    # --8<-- [end:curves]

    # --8<-- [start:test-results]
    counts = torch.tensor(chapter["confusion"])
    mistakes = counts - torch.diag(counts.diag())  # off the diagonal: the errors
    top = mistakes.flatten().topk(5)
    out = RecordedText(record)
    accuracies = [run["test_accuracy"] for run in chapter["runs"]]
    out("test accuracy, seeds 0, 1, 2:", ", ".join(f"{a:.2%}" for a in accuracies))
    out(
        f"mean {chapter['test_accuracy_mean']:.2%} (spread {chapter['test_accuracy_min']:.2%} to "
        f"{chapter['test_accuracy_max']:.2%})"
    )
    per_digit = [f"{d}:{a:.1%}" for d, a in enumerate(chapter["per_class"])]
    out("per digit (seed 0):", " ".join(per_digit[:5]))
    out("                   ", " ".join(per_digit[5:]))
    out("most frequent mistakes:", ", ".join(f"{i // 10} → {i % 10} ({n})" for n, i in zip(*top) if n))
    print(out)

    fig, ax = plt.subplots(figsize=(5.4, 4.8))
    ax.imshow(counts.clamp(min=1).log().numpy(), cmap="Oranges")
    for true in range(10):
        for guess in range(10):
            if counts[true, guess]:
                ax.text(
                    guess,
                    true,
                    counts[true, guess].item(),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if true == guess else "#222222",
                )
    ax.set(
        title="Confusion matrix, test set (seed 0)",
        xlabel="predicted digit",
        ylabel="true digit",
        xticks=range(10),
        yticks=range(10),
    )
    # --8<-- [end:test-results]

    # --8<-- [start:wrong]
    wrong = chapter["wrong"]
    images = torch.tensor(wrong["images"], dtype=torch.uint8).reshape(-1, 28, 28)
    fig, axes = plt.subplots(2, 6, figsize=(9, 3.8))
    for ax, image, label, guess, p in zip(axes.flat, images, wrong["labels"], wrong["predicted"], wrong["probability"]):
        ax.imshow(image.numpy(), cmap="gray")
        ax.set_title(f"{label} → {guess} ({p:.3f})", fontsize=9)
        ax.axis("off")
    fig.suptitle("The most confidently wrong test digits: label → prediction (its probability)")
    # --8<-- [end:wrong]

    # --8<-- [start:speed]
    speed = results["speed"]
    floor = speed["floor_seconds"]
    peak = max(speed["matmul_gflops"].values())
    rows = [
        (f"standard: DataLoader, {run['num_workers']} workers, batch 128", run["train_epoch_seconds"])
        for run in speed["standard"]
    ]
    rows += [
        (f"fast: preloaded tensors, batch {run['batch_size']}", run["median_epoch_seconds"]) for run in speed["fast"]
    ]
    fast = speed["fast"][0]
    out = RecordedText(record)
    measured = sorted(speed["matmul_gflops"].items(), key=lambda item: int(item[0]))  # by batch size
    out("matmul (B x 784) @ (784 x 128), GFLOP/s:", ", ".join(f"B={b}: {g:.0f}" for b, g in measured))
    out(
        f"compute floor: {speed['flops_per_image']:,} FLOPs x 60,000 images = "
        f"{speed['flops_per_image'] * 60_000 / 1e9:.1f} GFLOP"
    )
    out(f"  at {peak:.0f} GFLOP/s: {floor:.3f} s per epoch")
    out(f"{'784-128-10, one epoch of 60,000 images':44}{'s/epoch':>8}{'images/s':>10}{'x floor':>8}")
    for name, seconds in rows:
        out(f"{name:44}{seconds:8.2f}{60_000 / seconds:10,.0f}{seconds / floor:8.1f}")
    out(f"the DataLoader alone (no model, 0 workers): {speed['standard'][0]['loading_seconds']:.2f} s")
    speed_up = speed["standard"][0]["train_epoch_seconds"] / fast["median_epoch_seconds"]
    out(f"fast path speed-up at batch 128: {speed_up:.1f}x")
    out(f"98% test accuracy after {fast['seconds_to_98']:.2f} s of training (batch 128)")
    small, large = speed["fast"][0], speed["fast"][-1]
    steps = [-(-60_000 // run["batch_size"]) for run in (small, large)]  # per epoch, rounded up
    saved = small["median_epoch_seconds"] - large["median_epoch_seconds"]
    out(
        f"batch {small['batch_size']} → {large['batch_size']}: {steps[0] - steps[1]} fewer steps, "
        f"{saved:.3f} s less per epoch, still {large['median_epoch_seconds'] / floor:.1f}x the floor"
    )
    print(out)

    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.barh([name for name, _ in rows][::-1], [s for _, s in rows][::-1], color="tab:orange")
    ax.axvline(floor, color="black", linestyle="--", label=f"compute floor ({floor:.2f} s)")
    ax.set(title="Seconds per training epoch (lower is faster)", xlabel="seconds per epoch")
    ax.legend()
    # --8<-- [end:speed]

    # --8<-- [start:further-results]
    further = results["further"]
    out = RecordedText(record)
    config = further["config"]
    out(
        f"784-{config['hidden'][0]}-10, {further['runs'][0]['parameters']:,} parameters; {config['epochs']} epochs, "
        f"batch {config['batch_size']}, peak learning rate {config['max_lr']}"
    )
    out(f"label smoothing {config['label_smoothing']}, random shifts of up to {config['max_shift']} pixels")
    for run in further["runs"]:
        out(
            f"seed {run['seed']}: test accuracy {run['val_accuracy'][-1]:.2%} after "
            f"{run['train_seconds']:.1f} s of training"
        )
    out(
        f"mean {further['test_accuracy_mean']:.2%} (spread {further['test_accuracy_min']:.2%} to "
        f"{further['test_accuracy_max']:.2%})"
    )
    print(out)
    # --8<-- [end:further-results]
