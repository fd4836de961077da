"""What docs/distributed.md shows from its recorded run (docs/records/distributed.json): hidden page blocks."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:crash]
    from site_tools.records import RecordedText, describe_cpu_run, read_record

    dist_record = read_record("distributed")  # made by: python -m benchmarks.distributed --record
    dist_metrics = dist_record["metrics"]
    dist_out = RecordedText(dist_record)
    dist_out(describe_cpu_run(dist_record))
    dist_out(f"{dist_metrics['cpus']} CPUs; one thread per process")
    dist_out()
    for line in dist_metrics["crash"]["log"]:
        dist_out(line[:84])
    crash = dist_metrics["crash"]
    dist_out(f"restarts: {crash['restarts']}; half-written checkpoints seen: {len(crash['torn'])}")
    dist_out(f"crash runs until torchrun named the killed worker: {crash['attempts']}")
    print(dist_out)
    # --8<-- [end:crash]

    # --8<-- [start:memory]
    # dist_record and RecordedText: from the crash section, in the same page session
    memory = dist_record["metrics"]["memory"]
    dist_out = RecordedText(dist_record)
    dist_out(f"an MLP of {memory['parameters']:,} parameters, 2 processes; per rank:")
    dist_out(f"{'':6} {'parameters + momentum':>22} {'peak resident memory':>21}")
    for strategy in ("ddp", "fsdp"):
        row = memory[strategy]
        state = row["state_bytes"][0] / 2**20
        rss = max(row["max_rss_mib"])
        dist_out(f"{strategy:6} {state:18.2f} MiB {rss:17.0f} MiB")
    print(dist_out)
    # --8<-- [end:memory]

    # --8<-- [start:scaling]
    # dist_record and RecordedText: from the crash section, in the same page session
    scaling = dist_record["metrics"]["scaling"]
    dist_out = RecordedText(dist_record)
    dist_out(f"{scaling['samples']} samples, batch 64 per process, hidden width {scaling['hidden']}")
    dist_out(f"{'processes':>9} {'epoch s':>8} {'without all-reduce s':>21} {'communication':>14}")
    for nproc in ("1", "2"):
        row = scaling[nproc]
        dist_out(f"{nproc:>9} {row['epoch_s']:8.3f} {row['no_sync_epoch_s']:21.3f} {row['communication_share']:14.0%}")
    speedup = scaling["1"]["epoch_s"] / scaling["2"]["epoch_s"]
    dist_out(f"speed-up with 2 processes: {speedup:.2f}x")
    print(dist_out)
    # --8<-- [end:scaling]

    # --8<-- [start:exit-aborts]
    # dist_record and RecordedText: from the crash section, in the same page session
    aborts = dist_record["metrics"]["exit_aborts"]
    dist_out = RecordedText(dist_record)
    dist_out(f"launches of 2 processes, {aborts['parallel']} launches at a time:")
    for variant, label in (("plain_exit", "plain ending"), ("os_exit", "--fast-exit")):
        row = aborts[variant]
        dist_out(
            f"{label:13} {row['aborts']:3} exit aborts in {row['launches']} launches, "
            f"{row['other_failures']} other failures"
        )
    print(dist_out)
    # --8<-- [end:exit-aborts]
