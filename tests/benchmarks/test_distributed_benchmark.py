"""The distributed benchmark, run short: its scaling worker under torchrun and its log filter. The record itself is
made by ``python -m benchmarks.distributed --record``; tests/test_distributed.py checks it against the page and the
code, and runs the launch helpers (standalone, two nodes, the crash run)."""

from pathlib import Path

from conftest import ROOT

import benchmarks.distributed as bench


def test_the_record_is_produced_by_the_benchmark_and_the_chapter_module():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/distributed.py", "benchmarks/distributed.py"}


def test_the_scaling_worker_times_both_ways(tmp_path):
    results = bench.scaling(tmp_path, samples=1024, hidden=32, epochs=1, nprocs=(2,))
    row = results["2"]  # 2 processes (the record also has 1: the same code)
    assert len(row["times"]["sync"]) == len(row["times"]["no_sync"]) == 1
    assert row["epoch_s"] > 0 and row["no_sync_epoch_s"] > 0 and 0 <= row["communication_share"] < 1
    assert results["samples"] == 1024 and results["hidden"] == 32


def test_the_restart_log_keeps_rank_0_and_torchrun_lines_without_times():
    output = "\n".join(
        [
            "2 processes, backend gloo, device type cpu, ddp, effective batch 128",
            "epoch 0: loss 0.7338 (0.21 s)",
            "[rank0]: RuntimeError: Connection closed by peer",
            "W1201 16:25:58.949000 13540 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 13548"
            " closing signal SIGTERM",
            "E1201 16:25:59.015000 13540 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -9)"
            " local_rank: 1 (pid: 13549) of binary: /usr/bin/python",
            "resumed from epoch-0000.pt: epoch 1 is next",
        ]
    )
    assert bench.restart_log(output) == [
        "2 processes, backend gloo, device type cpu, ddp, effective batch 128",
        "epoch 0: loss 0.7338",
        "torchrun: Sending process 13548 closing signal SIGTERM",
        "torchrun: failed (exitcode: -9) local_rank: 1 (pid: 13549)",
        "resumed from epoch-0000.pt: epoch 1 is next",
    ]
    assert bench.epoch_seconds(output) == [0.21]
