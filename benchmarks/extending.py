"""The extending chapter's timings (a script, not a test): per-sample gradients
with vmap(grad) against a loop, and the cost of torch.compile and torch.export.

    python -m benchmarks.extending                      # print them
    python -m benchmarks.extending --record             # and record them

A page block must not print a timing (they change from run to run), so the page
shows these from a record: ``--record`` writes docs/records/extending.json.
--record refuses to start above a load average of 0.5 (benchmarks.cnn's guard).
The first torch.compile and torch.export are each timed once, in a fresh
process (the first in a process also loads the compiler).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from functools import partial

import snippets.extending as chapter
import torch
from site_tools.records import write_record
from snippets.extending import per_sample_gradients, per_sample_gradients_loop
from torch import nn

from benchmarks.cnn import IDLE_LOAD, refuse_a_busy_machine

PRODUCERS = [chapter.__file__, __file__]


def fastest(function, repeats):
    """The shortest of ``repeats`` wall-clock runs of function(), in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def per_sample_seconds(batch_sizes, repeats):
    """{batch size: {"vmap": s, "loop": s}} for the page's classifier, the
    fastest of ``repeats`` runs each, after one run of each to warm up."""
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    results = {}
    for size in batch_sizes:
        inputs, labels = torch.randn(size, 8), torch.randint(3, (size,))
        ways = {
            "vmap": partial(per_sample_gradients, classifier, inputs, labels),
            "loop": partial(per_sample_gradients_loop, classifier, inputs, labels),
        }
        for way in ways.values():
            way()
        results[size] = {name: fastest(way, repeats) for name, way in ways.items()}
    return results


FRESH_PROCESS = """
import time, torch
torch.set_num_threads({threads})
import snippets.extending as chapter
torch.manual_seed(0)
model = chapter.Calibrated(torch.linspace(-2.0, 2.0, 9))
x = torch.randn(6, 3)
start = time.perf_counter()
{timed}
print(time.perf_counter() - start)
"""


def in_a_fresh_process(timed):
    """Seconds that the statement ``timed`` takes in a new Python process that
    has imported torch and built the page's Calibrated model, with an empty
    Inductor cache: what a reader's first torch.compile or torch.export in a
    session costs when nothing was compiled before."""
    code = FRESH_PROCESS.format(threads=torch.get_num_threads(), timed=timed)
    with tempfile.TemporaryDirectory() as cache:  # nothing compiled before
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache},
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"timing {timed!r} in a fresh process failed:\n{done.stderr}"
        )
    return float(done.stdout.split()[-1])


def compile_and_export_seconds():
    """Seconds for torch.compile(fullgraph=True) with its first call and for
    torch.export, each in a fresh process; and a call once warm, compiled and
    not (eager), the fastest of 20 each."""
    torch.manual_seed(0)
    model = chapter.Calibrated(torch.linspace(-2.0, 2.0, 9))
    x = torch.randn(6, 3)
    compiled = torch.compile(model, fullgraph=True)
    compiled(x)
    return {
        "compile_first_call": in_a_fresh_process(
            "torch.compile(model, fullgraph=True)(x)"
        ),
        "compiled_call": fastest(lambda: compiled(x), 20),
        "eager_call": fastest(lambda: model(x), 20),
        "export": in_a_fresh_process("torch.export.export(model, (x,))"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.extending",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/extending.json"
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
        help="runs per timing; the fastest counts (default: 10)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[32, 256],
        help="batch sizes for the per-sample gradients (default: 32 256)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: at least 1")
    if min(args.batch_sizes) < 1:
        parser.error(f"--batch-sizes {args.batch_sizes}: each at least 1")
    load_before = refuse_a_busy_machine(parser, args.record)
    torch.set_num_threads(args.threads)
    metrics = {
        "per_sample": per_sample_seconds(args.batch_sizes, args.repeats),
        **compile_and_export_seconds(),
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "idle_load": IDLE_LOAD,
    }
    metrics["load_average"] = [load_before, os.getloadavg()[0]]
    for size, seconds in metrics["per_sample"].items():
        vmap_ms, loop_ms = seconds["vmap"] * 1000, seconds["loop"] * 1000
        print(
            f"batch {size:4}: vmap(grad) {vmap_ms:7.2f} ms, loop {loop_ms:7.2f} ms"
            f" (x{loop_ms / vmap_ms:.1f})"
        )
    print(
        f"torch.compile and first call {metrics['compile_first_call']:.2f} s, "
        f"then {metrics['compiled_call'] * 1000:.2f} ms a call; "
        f"torch.export {metrics['export']:.2f} s"
    )
    if args.record:
        print("recorded:", write_record("extending", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
