"""What docs/gpu.md shows from its recorded benchmark (docs/records/gpu.json): a hidden page block."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:bench-results]
    from site_tools.records import RecordedText, describe, read_record

    bench = read_record("gpu")  # made by: python -m benchmarks.gpu --data-root data --record
    metrics = bench["metrics"]
    config = metrics["config"]
    out = RecordedText(bench)
    hidden = "-".join(str(width) for width in [784, *config["hidden"], 10])
    out(f"MNIST MLP {hidden}, batch {config['batch_size']}, AdamW + one-cycle, peak lr {config['lr']}")
    out(f"until {config['target_accuracy']:.0%} test accuracy, at most {config['max_epochs']} epochs\n")
    out(
        f"{'':5}{'variant':<11}{'images/s':>9}{'fastest s':>10}{'first s':>9}{'epochs':>7}{'to target s':>12}"
        f"{'best acc':>9}"
    )
    for kind in ["cpu", "gpu"]:
        runs = metrics["devices"][kind]
        if runs is None:
            out(f"{kind.upper():<5}{metrics['missing'][kind]}")
            continue
        for name in metrics["variants"]:
            run = runs["variants"][name]
            reached = run["time_to_target_s"]
            to_target = f"{reached:.1f}" if reached is not None else "not reached"
            epochs = run["epochs_to_target"] or len(run["accuracy"])
            fastest = min(run["epoch_s"])  # the epoch least slowed down by other work on the machine
            out(
                f"{kind.upper():<5}{name:<11}{run['images_per_s']:>9,.0f}{fastest:>10.2f}"
                f"{run['epoch_s'][0]:>9.2f}{epochs:>7}{to_target:>12}{max(run['accuracy']):>9.2%}"
            )
    cpu = metrics["devices"]["cpu"]
    if cpu is not None:
        speed = {name: run["images_per_s"] for name, run in cpu["variants"].items()}
        out(
            f"\nCPU, images/s against on-device float32: amp {speed['amp'] / speed['on-device']:.2f}x, "
            f"compile {speed['compile'] / speed['on-device']:.2f}x"
        )
        sets = cpu["instruction_sets"]
        out(f"\nCPU: {cpu['device_name']}")
        out(f"  torch CPU kernels: {sets['torch_capability']}; flags: {', '.join(sets['flags'])}")
    load = metrics["load_average_1min"]
    out(f"load average (1 min), {load['cpus']} CPUs: {load['before']} before, {load['after']} after\n")
    out(describe(bench))
    print(out)
    # --8<-- [end:bench-results]
