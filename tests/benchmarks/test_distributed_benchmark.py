"""The distributed benchmark, run short: its scaling worker under torchrun and its log filter. The record itself is
made by ``python -m benchmarks.distributed --record``; tests/test_distributed.py checks it against the page and the
code, and runs the launch helpers (standalone, two nodes, the crash run)."""

import time
from pathlib import Path

import pytest
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


def test_the_workers_are_found_by_local_rank_or_by_start_order(monkeypatch):
    """The crash run kills local rank 1: read from LOCAL_RANK, or, where no process environment can be read, taken
    from the order the launcher started its workers in (rank 0 first)."""
    import subprocess
    import sys

    import psutil

    parent = (
        "import os, subprocess, sys, time\n"
        "for rank in (1, 0):  # started in the opposite order of their ranks\n"
        "    env = {**os.environ, 'LOCAL_RANK': str(rank)}\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], env=env)\n"
        "    time.sleep(0.05)\n"
        "time.sleep(60)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", parent])
    try:
        deadline = time.monotonic() + 30  # until both children run their own code, with their own environment
        while len(bench.worker_pids(launcher.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        first, second = sorted(psutil.Process(launcher.pid).children(), key=lambda c: (c.create_time(), c.pid))
        assert bench.worker_pids(launcher.pid) == {1: first.pid, 0: second.pid}
        monkeypatch.setattr(psutil.Process, "environ", lambda self: {})  # a /proc that hides environments
        assert bench.worker_pids(launcher.pid) == {0: first.pid, 1: second.pid}
    finally:
        for child in psutil.Process(launcher.pid).children():
            child.kill()
        launcher.kill()
        launcher.wait()


def test_the_record_keeps_the_first_crash_run_in_which_torchrun_names_the_killed_worker(monkeypatch, tmp_path):
    def run(pid, report):
        return {"returncode": 0, "summary": {}, "killed_pid": pid, "stdout": f"failed (exitcode: {report} (pid: 7)"}

    runs = iter([run(7, "1) local_rank: 0"), run(7, "-9) local_rank: 1")])
    monkeypatch.setattr(bench, "crash_run", lambda folder: next(runs))
    crash, attempts = bench.reported_crash_run(tmp_path)
    assert attempts == 2 and "-9" in crash["stdout"]
    monkeypatch.setattr(bench, "crash_run", lambda folder: run(7, "1) local_rank: 0"))
    (tmp_path / "again").mkdir()
    with pytest.raises(RuntimeError, match="named rank 0 first in all 3 runs"):
        bench.reported_crash_run(tmp_path / "again")
