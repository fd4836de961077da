"""What docs/practice.md shows from its recorded run (docs/records/practice.json): hidden page blocks."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:profile]
    from site_tools.records import RecordedText, describe, read_record

    record = read_record("practice")  # made by: python -m benchmarks.practice --record
    results = record["metrics"]
    out = RecordedText(record)
    out(describe(record))
    out(f"{results['steps']} training steps profiled, {results['threads']} threads")
    out()
    out(f"{'operator (self time: without what it calls)':56} {'share':>6} calls")
    for event in results["top"]:
        out(f"{event['name'][:56]:56} {event['share']:6.1%} {event['calls']:5}")
    print(out)
    # --8<-- [end:profile]
