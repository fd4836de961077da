"""What docs/serving.md shows from its recorded load test (docs/records/serving.json): a hidden page block."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:load-test]
    import matplotlib.pyplot as plt
    from site_tools.figures import open_figures_as_svg
    from site_tools.records import RecordedText, describe_cpu_run, read_record

    record = read_record("serving")  # made by: python -m benchmarks.serving --record
    metrics = record["metrics"]
    order = ["no batching", "batching, no wait", "batching, wait 5 ms"]  # the record's JSON sorts its keys
    results = {
        name: dict(sorted(metrics["results"][name].items(), key=lambda item: int(item[0])))
        for name in sorted(metrics["results"], key=lambda n: order.index(n) if n in order else len(order))
    }
    out = RecordedText(record)
    out(describe_cpu_run(record))
    out(f"FastAPI {metrics['fastapi']}, uvicorn {metrics['uvicorn']}; {metrics['load_generator']}")
    out(
        f"server on CPU {metrics['server_cpus']}, load generator on CPU {metrics['client_cpus']}; "
        f"{metrics['seconds']:g} s per run"
    )
    out(f"after a {metrics['warmup_seconds']:g} s warm-up")
    for name in results:
        out(f"  {name}: {metrics['settings'][name]}")
    out()

    def ms(value):
        return f"{value:7.1f}" if value is not None else f"{'-':>7}"

    out(f"{'':20} {'clients':>7} {'requests/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'n':>6} {'batch':>6} {'errors':>6}")
    for name, runs in results.items():
        for clients, run in runs.items():
            errors = sum(run["errors"].values())
            out(
                f"{name:20} {clients:>7} {run['requests_per_s']:10,.0f} {ms(run['p50_ms'])} {ms(run['p99_ms'])}"
                f" {run['requests']:6} {run['mean_batch']:6.1f} {errors:6}"
            )
    out("(n: the answers behind p50 and p99; batch: mean requests per forward pass)")
    out()
    alone, batched, waited = (results.get(name) for name in order)

    def measured(*runs):  # each with answers, so with a rate and a p99
        return all(run["requests"] > 0 for run in runs)

    if alone and batched and measured(alone[most := max(alone, key=int)], batched[most]):
        ratio = batched[most]["requests_per_s"] / alone[most]["requests_per_s"]
        out(f"at {most} clients, batching without a wait: {ratio:.1f}x the requests/s of no batching,")
        out(f"  with a p99 of {batched[most]['p99_ms']:.0f} ms against {alone[most]['p99_ms']:.0f} ms")
    if batched and waited and measured(waited[most := max(waited, key=int)], batched[most]):
        out(
            f"at {most} clients, the 5 ms wait: {waited[most]['requests_per_s']:,.0f} requests/s and a p99 of "
            f"{waited[most]['p99_ms']:.0f} ms,"
        )
        out(f"  against {batched[most]['requests_per_s']:,.0f} and {batched[most]['p99_ms']:.0f} ms without it")
    if batched and waited and "1" in waited and measured(waited["1"], batched["1"]):
        out(
            f"at 1 client, the 5 ms wait: p50 {waited['1']['p50_ms']:.1f} ms against "
            f"{batched['1']['p50_ms']:.1f} ms without it"
        )
    statuses = sorted(set(metrics["exit_status_after_sigterm"].values()))
    out(f"each server's exit status after SIGTERM: {', '.join(map(str, statuses))}")
    print(out)

    fig, (speed, tail) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, runs in results.items():
        clients = [int(c) for c in runs]
        speed.plot(clients, [run["requests_per_s"] for run in runs.values()], marker="o", label=name)
        p99 = [run["p99_ms"] if run["p99_ms"] else float("nan") for run in runs.values()]  # none: no point
        tail.plot(clients, p99, marker="o", label=name)
    for ax in (speed, tail):
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.set_xlabel("concurrent clients")
    speed.set(title="Throughput", ylabel="requests per second", ylim=(0, None))
    tail.set(title="99th percentile latency", ylabel="ms", yscale="log")
    speed.legend()
    fig.tight_layout()
    print(open_figures_as_svg())
    # --8<-- [end:load-test]
