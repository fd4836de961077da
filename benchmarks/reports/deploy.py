"""What docs/deploy.md shows from its recorded run (docs/records/deploy.json): hidden page blocks."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:latency]
    from site_tools.records import RecordedText, describe_cpu_run, read_record

    record = read_record("deploy")  # made by: python -m benchmarks.deploy --record
    results = record["metrics"]
    out = RecordedText(record)
    out(describe_cpu_run(record))
    out(f"onnxruntime {results['onnxruntime']}, torchao {results['torchao']}")
    out(f"median of {results['repeats']} calls, the forms in turn (25th to 75th percentile)")
    out()
    out(f"{'':25} {'batch 1 (ms)':>21} {'batch 256 (ms)':>20} {'images/s':>9}")
    for row in results["rows"]:
        one, many = row["1"], row["256"]
        out(
            f"{row['form']:25} {one['median'] * 1e3:6.3f} ({one['low'] * 1e3:.3f}-{one['high'] * 1e3:.3f})"
            f" {many['median'] * 1e3:6.1f} ({many['low'] * 1e3:4.1f}-{many['high'] * 1e3:4.1f})"
            f" {256 / many['median']:9,.0f}"
        )
    accuracies = sorted({f"{row['accuracy']:.1%}" for row in results["rows"]})
    out(f"held-out accuracy of every form: {', '.join(accuracies)}")
    out()
    flops = results["flops_per_image"]
    fastest = min(row["256"]["median"] for row in results["rows"])
    out(f"one image: {flops / 1e6:.2f} MFLOP (counted per layer)")
    out(f"the fastest form at batch 256: {256 * flops / fastest / 1e9:.0f} GFLOP/s")
    out()
    for name, size in results["sizes"].items():
        out(f"{name:32} {size / 1024:5.0f} KiB")
    print(out)
    # --8<-- [end:latency]
