"""The practice chapter's profile of a training step (a script, not a test).

    python -m benchmarks.practice            # print it
    python -m benchmarks.practice --record   # and record it

The profiler's table differs in every run (times, and the order of ops that take
about as long), so the page shows a recorded one: ``--record`` writes
docs/records/practice.json with the table, the top operators and their share of
the time. Record on an idle machine.
"""

import argparse
import os

import snippets.practice as p
import torch
from site_tools.records import write_record
from snippets.practice import Run, digits_tensors

PRODUCERS = [p.__file__, __file__]


def profile_training():
    """Profile the chapter's run; the table and the top operators' shares."""
    images, labels = digits_tensors()
    # --8<-- [start:profile]
    from torch.profiler import ProfilerActivity, profile

    run = Run(images, labels)
    run.train_epoch()  # once first: the first steps pay for one-time set-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):  # two epochs
            run.train_epoch()
    events = prof.key_averages()  # one row per operator, summed over calls
    # events.table(sort_by="self_cpu_time_total") prints all the columns
    total = sum(event.self_cpu_time_total for event in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    print(f"{'operator (self time: without what it calls)':56} {'share':>6} calls")
    for event in ranked[:12]:
        share = event.self_cpu_time_total / total
        print(f"{event.key[:56]:56} {share:6.1%} {event.count:5}")
    # --8<-- [end:profile]
    table = events.table(sort_by="self_cpu_time_total", row_limit=12)
    top = [
        {
            "name": event.key,
            "calls": event.count,
            "share": event.self_cpu_time_total / total,
        }
        for event in ranked[:12]
    ]
    return {"table": table, "top": top, "steps": 2 * len(run.loader)}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.practice",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/practice.json"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (default: 2)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    metrics = profile_training()
    metrics.update(
        threads=torch.get_num_threads(),
        load_average=[load_before, os.getloadavg()[0]],
    )
    if args.record:
        print("recorded:", write_record("practice", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
