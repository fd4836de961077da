"""What docs/extending.md shows from its recorded timings (docs/records/extending.json): hidden page blocks.

Until the record is made, each block shows one note saying so, with the command that makes it."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:per-sample]
    from functools import partial

    from site_tools.records import RecordedText, describe_cpu_run, not_recorded_note, record_or_none

    COMMAND = "python -m benchmarks.extending --record"
    record = record_or_none("extending")  # made by the command above
    not_recorded = partial(not_recorded_note, command=COMMAND, takes="under a minute on one CPU thread")

    if record is None:
        print(not_recorded("Per-sample gradients, vmap against a loop"))
    else:
        metrics = record["metrics"]
        out = RecordedText(record)
        out(describe_cpu_run(record))
        out(f"the fastest of {metrics['repeats']} runs each, the page's classifier (8 -> 16 -> 3)")
        for size, seconds in metrics["per_sample"].items():
            vmap_ms, loop_ms = seconds["vmap"] * 1000, seconds["loop"] * 1000
            out(
                f"batch {int(size):4}: vmap(grad) {vmap_ms:6.2f} ms, loop {loop_ms:6.2f} ms, "
                f"{loop_ms / vmap_ms:4.1f} times faster"
            )
        print(out)
    # --8<-- [end:per-sample]

    # --8<-- [start:compile]
    if record is None:
        print(not_recorded("The cost of torch.compile and torch.export"))
    else:
        out = RecordedText(record)
        out("the Calibrated model above; the first two in a fresh process each, with an empty")
        out("compiler cache (a later session reuses Inductor's on-disk cache), one measurement:")
        out(f"torch.compile(fullgraph=True) and the first call  {metrics['compile_first_call']:6.2f} s")
        out(f"torch.export.export                              {metrics['export']:6.2f} s")
        out(f"a compiled call, once warm (fastest of 20)       {metrics['compiled_call'] * 1000:6.2f} ms")
        out(f"the same call not compiled (eager)               {metrics['eager_call'] * 1000:6.2f} ms")
        print(out)
    # --8<-- [end:compile]
