"""What docs/sequences.md shows from its recorded run (docs/records/sequences.json): hidden page blocks."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:record]
    import statistics

    import matplotlib.pyplot as plt
    from site_tools.records import RecordedText, describe_cpu_run, read_record

    record = read_record("sequences")  # made by: python -m benchmarks.sequences --data-root data --record
    results = record["metrics"]
    out = RecordedText(record)
    out(describe_cpu_run(record))
    print(out)
    # --8<-- [end:record]

    # --8<-- [start:mnist]
    mlp, cnn = read_record("mnist")["metrics"], read_record("cnn")["metrics"]
    out = RecordedText(record)
    for name, project in results["mnist"].items():
        config = project["config"]
        out(f"{name}: {project['parameters']:,} parameters, {config['epochs']} epochs, batch {config['batch_size']}")
        for run in project["runs"]:
            out(f"  seed {run['seed']}: test accuracy {run['test_accuracy']:.2%} after {run['train_seconds']:.0f} s")
    out()
    out(f"{'test accuracy, mean of 3 seeds':33} {'mean':>7} {'range':>16} {'parameters':>11}")
    rows = [
        (
            "MLP (MNIST chapter)",
            mlp["chapter"]["test_accuracy_mean"],
            mlp["chapter"]["test_accuracy_min"],
            mlp["chapter"]["test_accuracy_max"],
            mlp["chapter"]["parameters"],
        ),
        (
            "CNN (CNN chapter)",
            cnn["chapter"]["mean"],
            cnn["chapter"]["min"],
            cnn["chapter"]["max"],
            cnn["chapter"]["parameters"],
        ),
    ] + [
        (name, project["mean"], project["min"], project["max"], project["parameters"])
        for name, project in results["mnist"].items()
    ]
    for name, mean, low, high, parameters in rows:
        out(f"{name:33} {mean:7.2%} {low:7.2%}-{high:7.2%} {parameters:11,}")
    print(out)

    fig, ax = plt.subplots(figsize=(6, 3))
    for name, project in results["mnist"].items():
        curve = [
            statistics.mean(run["val_accuracy"][e] for run in project["runs"])
            for e in range(len(project["runs"][0]["val_accuracy"]))
        ]
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
    ax.set(title="Test accuracy after each epoch (mean of 3 seeds)", xlabel="epoch", ylabel="accuracy")
    ax.legend()
    # --8<-- [end:mnist]

    # --8<-- [start:language]
    lm = results["language_model"]
    config = lm["config"]
    out = RecordedText(record)
    out(
        f"{lm['characters']:,} characters of the guide's pages, {lm['vocabulary']} different; "
        f"validation: the last {lm['val_characters']:,}"
    )
    out(
        f"model: {lm['parameters']:,} parameters (d_model {config['d_model']}, {config['depth']} blocks, "
        f"{config['heads']} heads, context {config['context']})"
    )
    out(
        f"{config['steps']} steps of {config['batch_size']} x {config['context']} characters in "
        f"{lm['train_seconds']:.0f} s ({lm['tokens_per_second']:,.0f} characters/s)"
    )
    out(f"validation: {lm['val_bits_per_character']:.2f} bits per character")
    out(f"unigram baseline: {lm['unigram_bits_per_character']:.2f} bits per character")
    for temperature, text in lm["samples"].items():
        out()
        out(f"--- sampled at temperature {temperature}, after the prompt '## ':")
        for line in text.splitlines():  # long lines wrapped at the column's width
            for start in range(0, max(len(line), 1), 84):
                out(line[start : start + 84])
    print(out)
    # --8<-- [end:language]
