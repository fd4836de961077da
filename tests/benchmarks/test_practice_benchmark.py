"""The practice benchmark's profile, run short. The record itself is made by ``python -m benchmarks.practice
--record``; tests/test_practice.py checks it against the page and the code."""

from pathlib import Path

import torch
from conftest import ROOT

import benchmarks.practice as bench


def test_the_record_is_produced_by_the_benchmark_and_the_chapter_module():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/practice.py", "benchmarks/practice.py"}


def test_the_profile_ranks_operators_by_their_own_time(capsys):
    threads = torch.get_num_threads()
    try:
        metrics = bench.main(["--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    shares = [event["share"] for event in metrics["top"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    assert metrics["steps"] == 2 * 29 and metrics["threads"] == 1  # two epochs of 29 batches of 64
    printed = capsys.readouterr().out
    assert "operator (self time: without what it calls)" in printed and "aten::" in printed
    # (which operators make the top 12 depends on the load: with the other xdist worker busy, the DataLoader's share
    # grows and addmm may drop out of it)
    assert len(metrics["top"]) == 12
    assert "Self CPU time total" in metrics["table"]
