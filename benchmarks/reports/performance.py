"""What docs/performance.md shows from its recorded run (docs/records/performance.json): hidden page blocks.

Until the record is made, each block shows one note saying so, with the command that makes it."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:timer]
    import statistics
    from functools import partial

    from site_tools.records import RecordedText, describe_cpu_run, not_recorded_note, record_or_none

    COMMAND = "python -m benchmarks.performance --data-root data --record"
    record = record_or_none("performance")  # made by the command above
    not_recorded = partial(not_recorded_note, command=COMMAND, takes="about 3 minutes on 2 CPU threads")

    if record is None:
        print(not_recorded("The Timer's measurements"))
    else:
        metrics = record["metrics"]
        out = RecordedText(record)
        out(describe_cpu_run(record))
        out(f"the MLP's forward pass at batch 512, blocked_autorange(min_run_time={metrics['timer_seconds']}):")
        for threads, measured in metrics["timer"].items():
            out(
                f"{threads} thread{'s' if threads != '1' else ' '}: median {measured['median'] * 1e6:5.0f} us, "
                f"IQR {measured['iqr'] * 1e6:4.0f} us, {measured['runs']:,} runs"
            )
        print(out)
    # --8<-- [end:timer]

    # --8<-- [start:floor]
    if record is None:
        print(not_recorded("The compute floor"))
    else:
        floors, gflops = metrics["floor_seconds"], metrics["matmul_gflops"]
        out = RecordedText(record)
        out(f"matmul FLOPs of one epoch ({metrics['images']:,} images), the MNIST chapter's count:")
        for layer in metrics["layers"]:
            flops = layer["forward"] + layer["weight_grad"] + layer["input_grad"]
            out(f"  {layer['layer']:>8}: {flops * metrics['images'] / 1e9:5.2f} GFLOP")
        out(f"  {'in all':>8}: {metrics['flops_per_epoch'] / 1e9:5.2f} GFLOP")
        out(f"the best matmul speed, measured at the start of each of {len(floors)} rounds:")
        speeds = f"{min(gflops):.0f} to {max(gflops):.0f} GFLOP/s"
        out(f"  {speeds}: a floor of {min(floors):.3f} to {max(floors):.3f} s an epoch")
        print(out)
    # --8<-- [end:floor]

    # --8<-- [start:case-study]
    if record is None:
        print(not_recorded("The case study"))
    else:
        rows = metrics["rows"]
        out = RecordedText(record)
        out(f"{len(floors)} rounds: in each, the floor measured, then one epoch of every loop in turn;")
        out("medians of the rounds; x floor: each epoch against its round's floor (range);")
        out("vs before: each epoch against the row it changes, in the same round")
        out(f"{'':3}{'each row keeps the changes above it':<38}{'s/epoch':>9}{'x floor (range)':>17}{'vs before':>13}")
        for number, row in enumerate(rows, start=1):
            if number == len(metrics["ladder"]) + 1:
                out(f"beside them, one change each to row {metrics['chapter_row'] + 1}, the MNIST chapter's loop:")
            ratios = row["floor_ratios"]
            spread = f"({min(ratios):.2f} to {max(ratios):.2f})"
            against = "" if number == 1 else f"{round(100 * (row['against_before'] - 1)):+d}%"
            out(
                f"{number:>2} {row['label'][:40]:<40} {row['median_seconds']:6.3f}"
                f"{row['median_ratio']:6.2f} {spread:<13}{against:>10}"
            )
        contended = metrics["contended_rounds"]
        out(
            f"rounds in which row {metrics['chapter_row'] + 1} ran over {metrics['contended_factor']}x its median: "
            f"{len(contended)} of {len(floors)}"
        )
        print(out)
    # --8<-- [end:case-study]

    # --8<-- [start:case-study-profile]
    if record is None:
        print(not_recorded("The profile of the fastest loop"))
    else:
        profiled = metrics["profile"]
        total = profiled["self_seconds_total"]
        out = RecordedText(record)
        out(f"row {metrics['chapter_row'] + 1}, the MNIST chapter's loop, profiled: self CPU time of an epoch")
        for name, seconds in profiled["top_operators"][:8]:
            out(f"  {name[:38]:<38} {seconds:6.3f} s {seconds / total:4.0%}")
        out(f"  {'every operator':<38} {total:6.3f} s")
        out(f"in these epochs the matmuls took {profiled['matmul_floor_ratio']:.2f}x the floor of their round")
        out(
            f"epochs profiled: {profiled['profiled_epoch_seconds']:.3f} s, "
            f"not: {profiled['epoch_seconds']:.3f} s (medians of {metrics['profiled_epochs']} rounds;"
        )
        chapter_row = rows[metrics["chapter_row"]]
        out(f"row {metrics['chapter_row'] + 1}'s median in the table: {chapter_row['median_seconds']:.3f} s)")
        out("each product of a step at batch 512, timed alone (Timer, 2 threads):")
        steps = metrics["images"] / 512
        products = ["784x128 forward", "784x128 weight gradient", "128x10 forward", "128x10 weight gradient"]
        for name in [*products, "128x10 input gradient"]:
            speed = metrics["products"][name]
            out(f"  {name:<24} {speed['gflops']:4.0f} GFLOP/s, {speed['seconds'] * steps:.3f} s an epoch")
        alone = sum(speed["seconds"] for speed in metrics["products"].values()) * steps
        out(f"  {'the five':<24} {alone:.3f} s an epoch: {alone / statistics.median(floors):.2f}x the floor")
        print(out)
    # --8<-- [end:case-study-profile]

    # --8<-- [start:compile-times]
    if record is None:
        print(not_recorded("Compile times, cold and warm"))
    else:
        out = RecordedText(record)
        out("torch.compile(model), then one forward and backward, in a fresh process each:")
        for run, cache in [("cold", "an empty cache"), ("warm", "the cache the cold run filled")]:
            seconds = metrics["compile"][run]
            caches = seconds["caches"]
            found = ", ".join(f"{name} {count}" for name, count in sorted(caches.items()))
            out(f"{run}, with {cache}:")
            out(
                f"  importing AOTAutograd and Inductor {seconds['imports']:5.2f} s, "
                f"then the first step {seconds['first_step']:5.2f} s"
            )
            out(
                f"  the second step {seconds['second_step'] * 1000:4.1f} ms; "
                f"the same step not compiled {seconds['eager_step'] * 1000:4.1f} ms"
            )
            out(f"  {found}")
        print(out)
    # --8<-- [end:compile-times]

    # --8<-- [start:checkpoint-times]
    if record is None:
        print(not_recorded("Checkpointing's cost"))
    else:
        out = RecordedText(record)
        out("the four-layer MLP above, batch 512, one AdamW training step (Timer's median):")
        for name in ("plain", "checkpointed"):
            numbers = metrics["checkpoint"][name]
            out(
                f"{name:>12}: autograd keeps {numbers['saved_bytes']:>9,} bytes, "
                f"{numbers['step_seconds'] * 1000:5.2f} ms a step"
            )
        print(out)
    # --8<-- [end:checkpoint-times]
