"""What docs/cnn.md shows from its recorded run (docs/records/cnn.json): hidden page blocks, not reader code."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:record]
    import statistics
    import textwrap

    import matplotlib.pyplot as plt
    import torch
    from site_tools.records import RecordedText, describe_cpu_run, read_record, run_conditions

    record = read_record("cnn")  # made by: python -m benchmarks.cnn --data-root data --record
    results = record["metrics"]

    chapter, speed, split = results["chapter"], results["speed"], results["split"]
    out = RecordedText(record)
    out(describe_cpu_run(record))
    out(f"MNIST's training set split {split['train']:,} to train, {split['validation']:,} to validate")
    print(out)

    def describe_recipe(out, result):
        """The chosen recipe's settings, in lines that fit the page's column."""
        config, augment = result["config"], result["config"]["augment"]
        out(f"chosen: {result['chosen']}")
        out(
            f"  {config['epochs']} epochs, batch {config['batch_size']}, peak learning rate {config['max_lr']}, "
            f"label smoothing {config['label_smoothing']}"
        )
        if augment:
            out(
                f"  augmentation: rotation up to {augment['degrees']} degrees, shift {augment['shift']:.0%}, "
                f"zoom {augment['scale'][0]}-{augment['scale'][1]}"
            )
        else:
            out("  no augmentation")

    def recipe_lines(out, result, target):
        """The candidates' validation accuracy, the chosen recipe's test runs, and whether they reach ``target``."""
        limit = result["time_limit"]
        choice_seeds = " and ".join(str(run["seed"]) for run in result["candidates"][0]["runs"])
        out(f"recipes tried with seeds {choice_seeds} (at most {limit} s of training per run):")
        out(f"  {'':38}{'validation':>11}  {'seconds':>12}")
        for tried in result["candidates"]:
            name = tried["name"]
            seconds = ", ".join(f"{run['train_seconds']:.0f}" for run in tried["runs"])
            mark = "  chosen" if name == result["chosen"] else ("" if tried["within_time_limit"] else "  too slow")
            out(f"  {name:38}{tried['validation']:>11.2%}  {seconds:>12}{mark}")
        out("  (seconds of training: epochs x the median epoch's seconds)")
        for run in result["runs"]:
            out(
                f"seed {run['seed']}: test accuracy {run['test']:.2%} after {run['train_seconds']:.1f} s of "
                f"training (validation {run['validation']:.2%})"
            )
        test = result["test"]
        out(
            f"test accuracy over {len(result['runs'])} seeds: mean {test['mean']:.2%}, "
            f"range {test['min']:.2%} to {test['max']:.2%}"
        )
        reached = sum(value >= target for value in test["values"])
        out(f"a single run: the mean give or take {test['std']:.2%} (standard deviation over seeds)")
        out(
            f"mean at least {target:.1%}: {'yes' if test['mean'] >= target else 'no'}; "
            f"runs at least {target:.1%}: {reached} of {len(result['runs'])}"
        )
        slowest = max(run["train_seconds"] for run in result["runs"])
        out(f"every run within {limit} s of training: {'yes' if slowest <= limit else 'no'} (slowest {slowest:.0f} s)")
        for line in run_conditions(result):
            out(line)

    # --8<-- [end:record]

    # --8<-- [start:training]
    out = RecordedText(record)
    out(f"CNN {'/'.join(map(str, chapter['config']['channels']))} filters, {chapter['parameters']:,} parameters")
    describe_recipe(out, chapter)
    recipe_lines(out, chapter, 0.993)
    steps = speed["layout_step_seconds"]
    out(
        f"one training step (batch {speed['layout_batch_size']}): "
        f"{steps['contiguous'] * 1000:.0f} ms in the default layout,"
    )
    out(
        f"  {steps['channels_last'] * 1000:.0f} ms channels_last: "
        f"{steps['contiguous'] / steps['channels_last']:.2f}x faster"
    )
    out(f"median epoch {chapter['median_epoch_seconds']:.1f} s: {chapter['images_per_second']:,.0f} images/s")
    out(
        f"compute floor: {speed['flops_per_image'] / 1e6:.1f} MFLOP x {split['train']:,} images at "
        f"{speed['conv_gflops']:.0f} GFLOP/s = {speed['floor_seconds']:.2f} s per epoch"
    )
    out(f"  the runs took {chapter['floor_ratio']:.1f}x that")
    print(out)

    fig, ax = plt.subplots(figsize=(6, 3))
    for run in chapter["runs"]:
        ax.plot(range(1, len(run["val_accuracy"]) + 1), run["val_accuracy"], marker="o", label=f"seed {run['seed']}")
    ax.set(title="Validation accuracy after each epoch", xlabel="epoch", ylabel="accuracy")
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
    fig.suptitle(
        f"Seed {chapter['runs'][0]['seed']}'s first-layer filters (top) and their feature maps of a test "
        f"{analysis['map_label']} (bottom)"
    )
    # --8<-- [end:filters]

    # --8<-- [start:evaluation]
    mlp = read_record("mnist")["metrics"]["chapter"]
    like_the_mlp = results["like_the_mlp"]
    mlp_epoch = statistics.median_high(s for run in mlp["runs"] for s in run["epoch_seconds"])
    like_epoch = statistics.median_high(s for run in like_the_mlp["runs"] for s in run["epoch_seconds"])
    counts = torch.tensor(analysis["confusion"])
    out = RecordedText(record)
    out(f"{'':34}{'test accuracy':>14}{'errors':>8}{'parameters':>12}{'s/epoch':>9}")
    rows = [
        ("MLP 784-128-10 (MNIST chapter)", mlp["test_accuracy_mean"], mlp["parameters"], mlp_epoch),
        ("CNN, trained like the MLP", like_the_mlp["test"]["mean"], chapter["parameters"], like_epoch),
        (
            "CNN, the chapter's recipe",
            chapter["test"]["mean"],
            chapter["parameters"],
            chapter["median_epoch_seconds"],
        ),
    ]
    for name, accuracy, parameters, seconds in rows:
        out(f"{name:34}{accuracy:>14.2%}{round((1 - accuracy) * 10_000):>8}{parameters:>12,}{seconds:>9.1f}")
    out(f"(means over seeds: {len(mlp['runs'])} for the MLP, from its record, {len(chapter['runs'])} for the CNN;")
    out(" errors out of 10,000 test images)")
    ratio = (1 - like_the_mlp["test"]["mean"]) / (1 - mlp["test_accuracy_mean"])
    out(f"trained the same way, the CNN makes {ratio:.0%} of the MLP's mistakes")

    def gap(candidate):
        """Mean training accuracy, validation accuracy, and the gap in points, over a candidate's runs."""
        fit = statistics.mean(run["train_accuracy"] for run in candidate["runs"])
        held = statistics.mean(run["validation"] for run in candidate["runs"])
        return fit, held, 100 * (fit - held)

    tried = chapter["candidates"]
    plain = next(t for t in tried if not t["config"]["augment"])
    augmented = next(t for t in tried if t["config"]["augment"] and {**t["config"], "augment": None} == plain["config"])
    choice_seeds = " and ".join(str(run["seed"]) for run in plain["runs"])
    out(f"two candidates that differ in augmentation only (seeds {choice_seeds}):")
    for label, candidate in (("without augmentation", plain), ("with augmentation", augmented)):
        fit, held, points = gap(candidate)
        out(f"  {label:21} training {fit:.2%}, validation {held:.2%}: {points:.2f} points apart")
    narrows = gap(augmented)[2] < gap(plain)[2]
    out(f"  augmentation narrows the gap: {'yes' if narrows else 'no'}")
    mistakes = counts - torch.diag(counts.diag())
    pairs = sorted(((int(n), i // 10, i % 10) for i, n in enumerate(mistakes.flatten().tolist()) if n), reverse=True)
    frequent = [f"{label} → {guess} ({n})" for n, label, guess in pairs if n >= 4]
    first_seed = chapter["runs"][0]["seed"]
    out(f"seed {first_seed}: {int(mistakes.sum())} errors; label → prediction at least 4 times:")
    out(textwrap.fill(", ".join(frequent), 84, initial_indent="  ", subsequent_indent="  "))
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
    fig.suptitle(f"Seed {first_seed}'s most confident mistakes, of {wrong['count']}: label → prediction (probability)")
    # --8<-- [end:evaluation]

    # --8<-- [start:further]
    further = results["further"]
    config = further["config"]
    out = RecordedText(record)
    out(
        f"CNN {'/'.join(map(str, config['channels']))} filters, hidden layer {config['hidden']}, dropout "
        f"{config['dropout']}; {further['parameters']:,} parameters"
    )
    describe_recipe(out, further)
    recipe_lines(out, further, 0.995)
    out(f"the chapter's recipe: mean test accuracy {chapter['test']['mean']:.2%}")
    print(out)
    # --8<-- [end:further]

    # --8<-- [start:transfer]
    transfer = results["transfer"]
    per_class, methods = transfer["config"]["per_class"], transfer["config"]["methods"]
    out = RecordedText(record)
    out(
        f"accuracy on {transfer['config']['held_out']} held-out UCI digits, mean (min-max) over "
        f"{len(transfer['config']['seeds'])} seeds"
    )
    out(f"{'labelled per class':28}" + "".join(f"{n:>18}" for n in per_class))
    for method in methods:
        cells = []
        for n in per_class:
            values = transfer["results"][f"{method}/{n}"]
            cells.append(f"{statistics.mean(values):.1%} ({100 * min(values):.1f}-{100 * max(values):.1f})")
        out(f"{method:28}" + "".join(f"{cell:>18}" for cell in cells))
    out(
        f"learning rates chosen on {transfer['config']['validation']} other digits "
        f"({transfer['config']['choice_per_class']} labelled per class):"
    )
    out("  " + "; ".join(f"{method} {transfer['learning_rates'][method]:g}" for method in methods))
    out(f"every row starts from one network, the chapter's recipe with seed {transfer['pretrained_seed']}: the seeds")
    out("  vary the labelled images and the new weights")
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
