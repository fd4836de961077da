"""What docs/practice.md shows from its recorded run (docs/records/practice.json): hidden page blocks."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:profile]
    from site_tools.records import RecordedText, describe, read_record

    record = read_record("practice")  # made by: python -m benchmarks.practice --record
    results = record["metrics"]
    out = RecordedText(record)
    out(describe(record))
    threads = results["threads"]
    out(f"{results['steps']} training steps profiled, {threads} thread{'s' * (threads != 1)}")
    out()
    out(f"{'operator (self time: without what it calls)':56} {'share':>6} calls")
    for event in results["top"]:
        out(f"{event['name'][:56]:56} {event['share']:6.1%} {event['calls']:5}")
    if "overhead" in results:  # records made before the wall-clock checks lack them
        plain, profiled = (results["epoch_seconds"][k] * 1000 for k in ("plain", "profiled"))
        out()
        out(
            f"one epoch, by the wall clock (fastest of {results['repeats']}): {plain:.1f} ms, "
            f"{profiled:.1f} ms profiled (x{results['overhead']:.2f})"
        )
        phases = results["phase_seconds"]
        total = sum(phases.values())
        out("each phase of a step, by the wall clock, without the profiler:")
        for phase in ("loader", "forward and backward", "optimizer"):
            out(f"  {phase:21} {phases[phase] / total:6.1%}")
    print(out)
    # --8<-- [end:profile]
