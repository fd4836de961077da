"""The practice benchmark's profile and its wall-clock checks, run short. The record itself is made by ``python -m
benchmarks.practice --record``; tests/test_practice.py checks it against the page and the code."""

from pathlib import Path

import pytest
import torch
from conftest import ROOT

import benchmarks.practice as bench


def test_the_record_is_produced_by_the_benchmark_and_the_chapter_module():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/practice.py", "benchmarks/practice.py"}


@pytest.fixture(scope="module")
def short_run():
    threads = torch.get_num_threads()
    try:
        return bench.main(["--threads", "1", "--repeats", "2"])
    finally:
        torch.set_num_threads(threads)


def test_the_profile_ranks_operators_by_their_own_time(short_run):
    metrics = short_run
    shares = [event["share"] for event in metrics["top"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    assert metrics["steps"] == 2 * 29 and metrics["threads"] == 1  # two epochs of 29 batches of 64
    # (which operators make the top 12 depends on the load: with the other xdist worker busy, the DataLoader's share
    # grows and addmm may drop out of it)
    assert len(metrics["top"]) == 12
    assert "Self CPU time total" in metrics["table"]


def test_the_profilers_overhead_and_the_wall_clock_phases_are_measured(short_run):
    metrics = short_run
    plain, profiled = metrics["epoch_seconds"]["plain"], metrics["epoch_seconds"]["profiled"]
    assert 0 < plain and 0 < profiled and metrics["overhead"] == pytest.approx(profiled / plain)
    assert metrics["repeats"] == 2
    phases = metrics["phase_seconds"]
    assert list(phases) == list(bench.PHASES) and all(seconds > 0 for seconds in phases.values())
    # each phase is the fastest of its own epochs, so together they are at most about one plain epoch (noise aside)
    assert sum(phases.values()) < 3 * plain


def test_the_phases_time_the_same_step_as_the_run(monkeypatch):
    """phase_seconds times the phases of Run.train_epoch's step: it must train as train_epoch does (one optimizer and
    one scheduler step per batch), with the same methods."""
    images, labels = bench.digits_tensors()
    torch.manual_seed(0)
    run = bench.Run(images, labels)
    before = run.scheduler.last_epoch
    bench.phase_seconds(run, repeats=1)
    assert run.scheduler.last_epoch - before == len(run.loader)
    assert run.optimizer.state[run.model[0].weight]["step"].item() == len(run.loader)
    calls = []  # and it is the run's own step: Run.backward, then Run.step, once per batch
    monkeypatch.setattr(bench.Run, "backward", lambda self, inputs, targets: calls.append("backward"))
    monkeypatch.setattr(bench.Run, "step", lambda self: calls.append("step"))
    bench.phase_seconds(run, repeats=1)
    assert calls == ["backward", "step"] * len(run.loader)


def test_the_repeats_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
    assert "at least 1" in capsys.readouterr().err
