"""What docs/sequences.md shows from its recorded run (docs/records/sequences.json): hidden page blocks."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:record]
    import statistics

    import matplotlib.pyplot as plt
    from site_tools.records import RecordedText, describe_cpu_run, read_record, run_conditions

    record = read_record("sequences")  # made by: python -m benchmarks.sequences --data-root data --record
    results = record["metrics"]

    out = RecordedText(record)
    out(describe_cpu_run(record))
    print(out)

    def tried_lines(out, result, show):
        """The candidate recipes' mean validation score (``show`` formats it) and which was chosen."""
        choice_seeds = " and ".join(str(run["seed"]) for run in result["candidates"][0]["runs"])
        out(f"  recipes tried with seeds {choice_seeds}:")
        for tried in result["candidates"]:
            seconds = ", ".join(f"{run['train_seconds']:.0f}" for run in tried["runs"])
            mark = "  chosen" if tried["name"] == result["chosen"] else ""
            out(f"    {tried['name']:40}{show(tried['validation']):>10}  {seconds:>9} s{mark}")
        for line in run_conditions(result):
            out(f"  {line}")

    def recipe_label(config):
        """What a recipe adds to plain training, from its settings."""
        added = ["aug"] if config["augment"] else []
        added += [f"LS {config['label_smoothing']:g}"] if config["label_smoothing"] else []
        return ", ".join(added) or "plain"

    # --8<-- [end:record]

    # --8<-- [start:mnist]
    mlp, cnn = read_record("mnist")["metrics"]["chapter"], read_record("cnn")["metrics"]
    out = RecordedText(record)
    for name, project in results["mnist"].items():
        config = project["config"]
        out(f"{name}: {project['parameters']:,} parameters")
        tried_lines(out, project, lambda v: f"{v:.2%}")
        out(
            f"  chosen: {config['epochs']} epochs, batch {config['batch_size']}, peak learning rate "
            f"{config['max_lr']}, {recipe_label(config)}"
        )
        seeds = ", ".join(str(run["seed"]) for run in project["runs"])
        out(f"  test accuracy, seeds {seeds}: " + ", ".join(f"{run['test']:.2%}" for run in project["runs"]))
        test = project["test"]
        out(
            f"  mean {test['mean']:.2%}, range {test['min']:.2%} to {test['max']:.2%}; a single run: the mean "
            f"give or take {test['std']:.2%}"
        )
    out()

    def seconds_per_run(runs):
        return statistics.mean(sum(run["epoch_seconds"]) for run in runs)

    out(f"{'test accuracy over seeds':27}{'mean':>8}{'range':>15}{'parameters':>11}{'s/run':>7}  recipe")
    rows = [
        (
            "MLP (MNIST chapter)",
            mlp["test_accuracy_mean"],
            mlp["test_accuracy_min"],
            mlp["test_accuracy_max"],
            mlp["parameters"],
            seconds_per_run(mlp["runs"]),
            None,
        ),
        (
            "CNN, trained like the MLP",
            *(cnn["like_the_mlp"]["test"][k] for k in ("mean", "min", "max")),
            cnn["chapter"]["parameters"],
            seconds_per_run(cnn["like_the_mlp"]["runs"]),
            cnn["like_the_mlp"]["config"],
        ),
        (
            "CNN, the chapter's recipe",
            *(cnn["chapter"]["test"][k] for k in ("mean", "min", "max")),
            cnn["chapter"]["parameters"],
            seconds_per_run(cnn["chapter"]["runs"]),
            cnn["chapter"]["config"],
        ),
    ] + [
        (
            name,
            *(project["test"][k] for k in ("mean", "min", "max")),
            project["parameters"],
            seconds_per_run(project["runs"]),
            project["config"],
        )
        for name, project in results["mnist"].items()
    ]
    for name, mean, low, high, parameters, seconds, config in rows:
        recipe = recipe_label(config) if config else "plain"
        out(f"{name:27}{mean:8.2%}{f'{low:.2%}-{high:.2%}':>15}{parameters:11,}{seconds:7.0f}  {recipe}")
    out("plain: no augmentation, no label smoothing; aug: random rotation, shift and zoom;")
    others = sorted(
        {len(cnn["like_the_mlp"]["runs"]), len(cnn["chapter"]["runs"])}
        | {len(p["runs"]) for p in results["mnist"].values()}
    )
    out(
        f"LS x: label smoothing x. Seeds: {len(mlp['runs'])} for the MLP (its record), "
        f"{' or '.join(map(str, others))} for the others."
    )
    print(out)

    fig, ax = plt.subplots(figsize=(6, 3))
    for name, project in results["mnist"].items():
        curve = [
            statistics.mean(run["val_accuracy"][e] for run in project["runs"])
            for e in range(len(project["runs"][0]["val_accuracy"]))
        ]
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
    ax.set(title="Validation accuracy after each epoch (mean of 5 seeds)", xlabel="epoch", ylabel="accuracy")
    ax.legend()
    # --8<-- [end:mnist]

    # --8<-- [start:language]
    lm = results["language_model"]
    config, characters = lm["config"], lm["characters"]
    out = RecordedText(record)
    out(
        f"{sum(characters.values()):,} characters of the guide's pages, in file-name order: "
        f"{characters['train']:,} to train,"
    )
    out(f"  {characters['validation']:,} to validate, {characters['test']:,} to test")
    unknown = lm["unknown_characters"]
    out(f"from {len(lm['pages'])} pages (their names and sizes are in the record)")
    out(f"{lm['vocabulary']} ids: <unk> and the characters of the training part")
    out(f"  characters read as <unk>: {unknown['validation']} in validation, {unknown['test']} in test")
    out(
        f"model: {lm['parameters']:,} parameters (d_model {config['d_model']}, {config['depth']} blocks, "
        f"{config['heads']} heads, context {config['context']})"
    )
    tried_lines(out, lm, lambda v: f"{v:.3f} bits")
    seconds = statistics.mean(run["train_seconds"] for run in lm["runs"])
    out(
        f"chosen: peak learning rate {config['max_lr']}; {config['steps']} steps of {config['batch_size']} x "
        f"{config['context']} characters"
    )
    out(f"  in {seconds:.0f} s per run on average ({lm['characters_per_second']:,.0f} characters/s)")
    test = lm["test"]
    out("test bits per character (sliding window): " + ", ".join(f"{v:.3f}" for v in test["values"]))
    out(
        f"  mean {test['mean']:.3f}, range {test['min']:.3f} to {test['max']:.3f}; a single run: the mean give "
        f"or take {test['std']:.3f}"
    )
    out(f"  perplexity at the mean: {2 ** test['mean']:.2f} (2 to the bits)")
    baselines = lm["baselines"]
    out(f"baselines on the test part: unigram {baselines['unigram']:.2f}, bigram {baselines['bigram']:.2f} bits")
    for drawn in lm["samples"]:
        out()
        out(f"--- seed {lm['runs'][0]['seed']}'s model, {drawn['settings']}, after the prompt '## ':")
        for line in drawn["text"].splitlines():  # long lines wrapped at the column's width
            for start in range(0, max(len(line), 1), 84):
                out(line[start : start + 84])
    print(out)
    # --8<-- [end:language]
