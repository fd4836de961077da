"""The serving load test, run small: the server started as a process with and without batching, loaded by the
closed-loop clients, stopped by SIGTERM; its metrics written as a record and rendered by the page's report. The record
itself is made by ``python -m benchmarks.serving --record``; tests/test_serving.py checks it against the page."""

import asyncio
import os
import re
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_sections

import benchmarks.serving as bench
import site_tools.records as records
import snippets.serving as s


def test_the_record_is_produced_by_the_benchmark_and_the_chapter_module():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/serving.py", "benchmarks/serving.py"}


def test_the_summary_counts_answers_percentiles_and_batches():
    results = [(0.0, (i + 1) / 1000, 200) for i in range(100)] + [(0.0, 0.5, 503), (0.0, 0.1, "connection error")]
    row = bench.summary(results, 50.0, {"1": 3, "4": 2, "2": 0})
    assert row["requests"] == 100 and row["requests_per_s"] == 50
    assert 50 <= row["p50_ms"] <= 51 and 99 <= row["p99_ms"] <= 100
    assert row["batch_sizes"] == {1: 3, 4: 2} and row["mean_batch"] == 11 / 5
    assert row["errors"] == {"503": 1, "connection error": 1}


def test_the_summary_of_one_answer_or_none_has_no_made_up_percentiles():
    one = bench.summary([(0.0, 0.004, 200)], 1.0, {})
    assert (one["p50_ms"], one["p99_ms"], one["requests"]) == (4.0, 4.0, 1)
    none = bench.summary([(0.0, 10.0, "timeout")], 0.0, {})
    assert (none["p50_ms"], none["p99_ms"], none["mean_batch"], none["errors"]) == (None, None, 0, {"timeout": 1})
    assert "p99      - ms" in bench.line(none)


def test_a_server_that_never_answers_counts_timeouts_and_does_not_hang_the_load_test():
    async def scenario():
        silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)  # accepts, never answers
        port = silent.sockets[0].getsockname()[1]
        results = []
        async with asyncio.timeout(5):
            await bench.client(port, b"GET / HTTP/1.1\r\n\r\n", time.perf_counter() + 0.3, results, timeout=0.2)
        silent.close()
        return results

    results = asyncio.run(scenario())
    assert results and {status for _, _, status in results} == {"timeout"}


def test_a_server_that_is_not_ready_in_time_is_killed_with_a_clear_error(tmp_path):
    with zipfile.ZipFile(tmp_path / "empty.pt2", "w"):  # passes the program's check, and never loads
        pass
    with pytest.raises(RuntimeError, match=r"not ready within 0\.3 s"):
        bench.start_server(tmp_path / "empty.pt2", [], 1, None, seconds=0.3)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One server (batching, at most 4 per pass: 4 sizes to warm up), 1 and 8 clients, 0.3 s each."""
    folder = tmp_path_factory.mktemp("serving-benchmark")
    s.export_to(folder / "digits.pt2", s.Deployable(s.build_cnn()).eval(), torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    settings = {"batching, no wait": ["--max-batch", "4", "--max-wait-ms", "0"]}
    metrics = bench.measure(folder / "digits.pt2", settings, concurrency=(1, 8), seconds=0.3, warmup=0.1)
    return metrics, affinity


def test_a_tiny_load_test_measures_its_setting_and_stops_the_server_with_status_0(tiny_run):
    metrics, affinity = tiny_run
    [runs] = metrics["results"].values()
    assert list(runs) == ["1", "8"]
    for run in runs.values():
        assert run["requests"] > 0 and run["requests_per_s"] > 0 and run["errors"] == {}
        assert 0 < run["p50_ms"] <= run["p99_ms"] and max(run["batch_sizes"]) <= 4
    assert runs["1"]["mean_batch"] == 1.0  # one client: nothing to batch
    assert metrics["exit_status_after_sigterm"] == {"batching, no wait": 0}
    if affinity is not None:  # the load generator's pinning is undone
        assert os.sched_getaffinity(0) == affinity


def test_the_report_renders_a_record_as_a_table_and_a_figure(tiny_run, tmp_path, monkeypatch):
    """The tiny run's results stand in for each of the record's three settings; one run without answers shows "-"
    and leaves the comparisons out rather than divide by zero."""
    runs = tiny_run[0]["results"]["batching, no wait"]
    silent = {**runs["8"], "requests": 0, "requests_per_s": 0.0, "p50_ms": None, "p99_ms": None}
    results = {name: dict(runs) for name in bench.SETTINGS}
    results["no batching"]["8"] = silent
    metrics = {
        **tiny_run[0], "results": results, "settings": {name: " ".join(o) for name, o in bench.SETTINGS.items()},
        "exit_status_after_sigterm": dict.fromkeys(bench.SETTINGS, 0), "load_average": [0.5, 0.7], "fastapi": "x",
        "uvicorn": "y",
    }  # fmt: skip
    records.write_record("serving", metrics, bench.PRODUCERS, "cpu", command="python -m x", records_dir=tmp_path)
    record = records.read_record("serving", records_dir=tmp_path)
    monkeypatch.setattr(records, "read_record", lambda name: record)
    _, [html] = run_sections("benchmarks/reports/serving.py", ["load-test"])
    assert 'class="guide-record"' in html and html.count("<svg") == 1
    assert re.search(r"no batching +1 ", html) and re.search(r"no batching +8 +0 +- +- +0 ", html)
    assert "batching without a wait: " not in html  # no answers at 8 clients without batching: no ratio
    assert "at 8 clients, the 5 ms wait: " in html and "at 1 client, the 5 ms wait: " in html
    assert "exit status after SIGTERM: 0" in html
