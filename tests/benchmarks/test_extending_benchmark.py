"""The extending benchmark's timings, run short. Nothing is recorded yet: ``python -m benchmarks.extending --record``
writes the record on an idle machine."""

from pathlib import Path

import pytest
import torch
from conftest import ROOT

import benchmarks.extending as bench


def test_the_record_would_be_produced_by_the_benchmark_and_the_chapter_module():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/extending.py", "benchmarks/extending.py"}


def test_a_short_run_times_both_ways_and_the_compiler(monkeypatch):
    timed = []

    def fresh(statement):  # the fresh processes cost seconds each: timed once below
        timed.append(statement)
        return 2.0

    monkeypatch.setattr(bench, "in_a_fresh_process", fresh)
    threads = torch.get_num_threads()
    try:
        metrics = bench.main(["--threads", "1", "--repeats", "1", "--batch-sizes", "4"])
    finally:
        torch.set_num_threads(threads)
        torch._dynamo.reset()  # no compiled graph of the chapter's op outlives this test (see test_extending.py)
    assert timed == ["torch.compile(model, fullgraph=True)(x)", "torch.export.export(model, (x,))"]
    assert list(metrics["per_sample"]) == [4]
    assert all(seconds > 0 for seconds in metrics["per_sample"][4].values())
    assert metrics["compile_first_call"] > metrics["compiled_call"] > 0 and metrics["export"] > 0
    assert metrics["threads"] == 1 and len(metrics["load_average"]) == 2


@pytest.mark.parametrize("arguments", [["--repeats", "0"], ["--batch-sizes", "0"]])
def test_bad_arguments_are_refused(arguments, capsys):
    with pytest.raises(SystemExit):
        bench.main(arguments)
    assert "at least 1" in capsys.readouterr().err


def test_a_fresh_process_times_a_statement_on_the_pages_model():
    assert 0 < bench.in_a_fresh_process("model(x)") < 5  # seconds: one call of the model, not the import
