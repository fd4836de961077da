"""The practice chapter's profile of a training step (a script, not a test).

    python -m benchmarks.practice            # print it
    python -m benchmarks.practice --record   # and record it

The profiler's table differs in every run (times, and the order of ops that take
about as long), so the page shows a recorded one: ``--record`` writes
docs/records/practice.json with the table, the top operators and their share of
the time, and two checks of the profile against the wall clock: an epoch timed
with and without the profiler (its overhead), and the wall-clock time of each
phase of a step (loading the batch, forward and backward, the optimizer).
Record on an idle machine.
"""

import argparse
import contextlib
import os
import time

import snippets.practice as p
import torch
from site_tools.records import write_record
from snippets.practice import Run, digits_tensors

PRODUCERS = [p.__file__, __file__]
PHASES = ("loader", "forward and backward", "optimizer")


def profile_training():
    """Profile two epochs of the chapter's run; the table and the top operators'
    shares, and the run (for the wall-clock checks)."""
    images, labels = digits_tensors()
    # --8<-- [start:profile]
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)  # the run's seed (dropout), where the run starts
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
    return {"table": table, "top": top, "steps": 2 * len(run.loader)}, run


def epoch_seconds(run, repeats):
    """The fastest of ``repeats`` epochs by the wall clock, without the profiler
    and with it recording: one of each in turn, so that a change in the
    machine's load reaches both."""
    from torch.profiler import ProfilerActivity, profile

    fastest = {"plain": float("inf"), "profiled": float("inf")}
    for _ in range(repeats):
        for kind in fastest:
            recording = (
                profile(activities=[ProfilerActivity.CPU])
                if kind == "profiled"
                else contextlib.nullcontext()
            )
            with recording:
                start = time.perf_counter()
                run.train_epoch()
                fastest[kind] = min(fastest[kind], time.perf_counter() - start)
    return fastest


def phase_seconds(run, repeats):
    """Wall-clock seconds of one epoch in each phase of Run.train_epoch's step
    (Run.backward, then Run.step), without the profiler (each phase: the
    fastest of ``repeats`` epochs)."""
    fastest = dict.fromkeys(PHASES, float("inf"))
    for _ in range(repeats):
        spent = dict.fromkeys(PHASES, 0.0)
        run.model.train()
        batches = iter(run.loader)
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            loaded = time.perf_counter()
            if batch is None:
                break
            run.backward(*batch)
            stepping = time.perf_counter()
            run.step()
            done = time.perf_counter()
            spent["loader"] += loaded - start
            spent["forward and backward"] += stepping - loaded
            spent["optimizer"] += done - stepping
        for phase, seconds in spent.items():
            fastest[phase] = min(fastest[phase], seconds)
    return fastest


def measure(repeats):
    """The profile, then the wall-clock checks of it on the same run."""
    # 3 epochs, then 3 x repeats more of the same run: past the end of its
    # 6-epoch schedule, whose learning rate then no longer follows the plan;
    # that changes no operator's cost, which is all that is measured here
    metrics, run = profile_training()
    seconds = epoch_seconds(run, repeats)
    metrics.update(
        repeats=repeats,
        epoch_seconds=seconds,
        overhead=seconds["profiled"] / seconds["plain"],
        phase_seconds=phase_seconds(run, repeats),
    )
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.practice",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/practice.json"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default: 1, as the page's own blocks run)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=10,
        help="epochs per wall-clock check; the fastest counts (default: 10)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: at least 1")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    metrics = measure(args.repeats)
    metrics.update(
        threads=torch.get_num_threads(),
        load_average=[load_before, os.getloadavg()[0]],
    )
    print(
        f"one epoch: {metrics['epoch_seconds']['plain'] * 1000:.1f} ms, "
        f"{metrics['epoch_seconds']['profiled'] * 1000:.1f} ms profiled "
        f"(x{metrics['overhead']:.2f})"
    )
    for phase, seconds in metrics["phase_seconds"].items():
        print(f"{phase:21} {seconds * 1000:6.1f} ms per epoch")
    if args.record:
        print("recorded:", write_record("practice", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
