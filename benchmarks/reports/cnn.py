"""What docs/cnn.md shows from its recorded run (docs/records/cnn.json): hidden page blocks, not reader code."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:record]
    import statistics

    import matplotlib.pyplot as plt
    import torch
    from site_tools.records import RecordedText, describe_cpu_run, read_record

    record = read_record("cnn")  # made by: python -m benchmarks.cnn --data-root data --record
    results = record["metrics"]
    chapter, speed = results["chapter"], results["speed"]
    out = RecordedText(record)
    out(describe_cpu_run(record))
    print(out)
    # --8<-- [end:record]

    # --8<-- [start:training]
    config = chapter["config"]
    out = RecordedText(record)
    out(
        f"CNN {'/'.join(map(str, config['channels']))} filters, {chapter['parameters']:,} parameters; "
        f"{config['epochs']} epochs, batch {config['batch_size']}"
    )
    for run in chapter["runs"]:
        out(
            f"seed {run['seed']}: test accuracy {run['test_accuracy']:.2%} after {run['train_seconds']:.1f} s "
            f"of training"
        )
    out(f"mean {chapter['mean']:.2%} (spread {chapter['min']:.2%} to {chapter['max']:.2%})")
    steps = speed["layout_step_seconds"]
    out(f"one training step (batch {config['batch_size']}): {steps['contiguous'] * 1000:.0f} ms in the default layout,")
    out(
        f"  {steps['channels_last'] * 1000:.0f} ms channels_last: "
        f"{steps['contiguous'] / steps['channels_last']:.2f}x faster"
    )
    out(f"median epoch {chapter['median_epoch_seconds']:.1f} s: {chapter['images_per_second']:,.0f} images/s")
    out(
        f"compute floor: {speed['flops_per_image'] / 1e6:.1f} MFLOP x 60,000 images at "
        f"{speed['conv_gflops']:.0f} GFLOP/s = {speed['floor_seconds']:.2f} s per epoch"
    )
    out(f"  the runs took {chapter['floor_ratio']:.1f}x that")
    print(out)

    fig, ax = plt.subplots(figsize=(6, 3))
    for run in chapter["runs"]:
        ax.plot(range(1, len(run["val_accuracy"]) + 1), run["val_accuracy"], marker="o", label=f"seed {run['seed']}")
    ax.set(title="Test accuracy after each epoch", xlabel="epoch", ylabel="accuracy")
    ax.legend()
    # --8<-- [end:training]

    # --8<-- [start:filters]
    analysis = chapter["analysis"]
    filters, feature_maps = torch.tensor(analysis["filters"]), torch.tensor(analysis["maps"])
    fig, axes = plt.subplots(2, 16, figsize=(10, 1.9))
    for number in range(16):
        limit = filters[number].abs().max().item()  # white is 0: red positive, blue negative
        axes[0, number].imshow(filters[number].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[1, number].imshow(feature_maps[number].numpy(), cmap="gray")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"First-layer filters (top) and their feature maps of a test {analysis['map_label']} (bottom)")
    # --8<-- [end:filters]

    # --8<-- [start:evaluation]
    mlp = read_record("mnist")["metrics"]
    mlp_epoch = statistics.median_high(s for run in mlp["chapter"]["runs"] for s in run["epoch_seconds"])
    counts = torch.tensor(analysis["confusion"])
    out = RecordedText(record)
    out(f"{'':22}{'test accuracy':>14}{'errors':>8}{'parameters':>12}{'s/epoch':>9}")
    mlp_mean = mlp["chapter"]["test_accuracy_mean"]
    out(
        f"{'MLP 784-128-10':22}{mlp_mean:>14.2%}{round((1 - mlp_mean) * 10_000):>8}"
        f"{mlp['chapter']['parameters']:>12,}{mlp_epoch:>9.1f}"
    )
    out(
        f"{'CNN 16/32':22}{chapter['mean']:>14.2%}{round((1 - chapter['mean']) * 10_000):>8}"
        f"{chapter['parameters']:>12,}{chapter['median_epoch_seconds']:>9.1f}"
    )
    out("(means over 3 seeds; errors out of 10,000 test images; the MLP's numbers are")
    out("the MNIST chapter's record)")
    mistakes = counts - torch.diag(counts.diag())
    pairs = sorted(((int(n), i // 10, i % 10) for i, n in enumerate(mistakes.flatten().tolist()) if n), reverse=True)
    frequent = [f"{label} → {guess} ({n})" for n, label, guess in pairs if n >= 4]
    out(f"seed 0: {int(mistakes.sum())} errors; label → prediction at least 4 times:")
    out("  " + ", ".join(frequent))
    out(f"  and {sum(1 for n, _, _ in pairs if n < 4)} other pairs, 1 to 3 times each")
    print(out)

    wrong = analysis["wrong"]
    wrong_images = torch.tensor(wrong["images"], dtype=torch.uint8).reshape(-1, 28, 28)
    fig, axes = plt.subplots(2, 6, figsize=(9, 3.8))
    shown = zip(axes.flat, wrong_images, wrong["labels"], wrong["predicted"], wrong["probability"])
    for ax, wrong_image, label, guess, p in shown:
        ax.imshow(wrong_image.numpy(), cmap="gray")
        ax.set_title(f"{label} → {guess} ({p:.2f})", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"Seed 0's most confident mistakes, of {wrong['count']}: label → prediction (probability)")
    # --8<-- [end:evaluation]

    # --8<-- [start:further]
    further, ablations = results["further"], results["ablations"]
    config = further["config"]
    out = RecordedText(record)
    augment = config["augment"]
    out(
        f"CNN {'/'.join(map(str, config['channels']))} filters, hidden layer {config['hidden']}, dropout "
        f"{config['dropout']}; {config['epochs']} epochs, batch {config['batch_size']}"
    )
    out(
        f"augmentation: rotation up to {augment['degrees']} degrees, shift {augment['shift']:.0%}, zoom "
        f"{augment['scale'][0]}-{augment['scale'][1]}; label smoothing {config['label_smoothing']}"
    )
    out(f"{further['parameters']:,} parameters")
    for run in further["runs"]:
        out(f"seed {run['seed']}: test accuracy {run['test_accuracy']:.2%} after {run['train_seconds']:.0f} s")
    out(f"mean {further['mean']:.2%} (spread {further['min']:.2%} to {further['max']:.2%})")
    seed0 = further["runs"][0]["test_accuracy"]
    for name, summary in ablations.items():
        change = (seed0 - summary["runs"][0]["test_accuracy"]) * 100
        out(f"{name} (seed 0): {summary['runs'][0]['test_accuracy']:.2%}: it adds {change:+.2f} points")
    out(f"the chapter's recipe ({chapter['config']['epochs']} epochs, no hidden layer): mean {chapter['mean']:.2%}")
    print(out)
    # --8<-- [end:further]

    # --8<-- [start:transfer]
    transfer = results["transfer"]
    per_class, methods = transfer["config"]["per_class"], transfer["config"]["methods"]
    out = RecordedText(record)
    out(
        f"accuracy on {transfer['config']['held_out']} held-out UCI digits, mean (min-max) over seeds "
        f"{transfer['config']['seeds']}"
    )
    out(f"{'labelled per class':20}" + "".join(f"{method:>21}" for method in methods))
    for n in per_class:
        cells = []
        for method in methods:
            values = transfer["results"][f"{method}/{n}"]
            cells.append(f"{statistics.mean(values):.1%} ({min(values):.1%}-{max(values):.1%})")
        out(f"{n:<20}" + "".join(f"{cell:>21}" for cell in cells))
    print(out)

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for method in methods:
        means = [statistics.mean(transfer["results"][f"{method}/{n}"]) for n in per_class]
        ax.plot(per_class, means, marker="o", label=method)
    ax.set(
        title="The MNIST CNN reused for other digits",
        xlabel="labelled images per class (log scale)",
        ylabel="held-out accuracy",
        xscale="log",
        xticks=list(per_class),
        xticklabels=list(map(str, per_class)),
    )
    ax.legend()
    # --8<-- [end:transfer]
