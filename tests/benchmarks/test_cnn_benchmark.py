"""The CNN benchmark's pieces, on the tiny IDX fixture of tests/conftest.py and scikit-learn's digits (no MNIST
files needed). The numbers themselves are recorded by ``python -m benchmarks.cnn --data-root data --record``;
tests/test_cnn.py checks that record against the page's claims and against the code (freshness)."""

from pathlib import Path

import pytest
import torch
from conftest import ROOT

import benchmarks.cnn as bench
import snippets.cnn as c
import snippets.mnist as m

SHORT = {**bench.CHAPTER, "epochs": 2, "batch_size": 50}


@pytest.fixture(scope="module")
def data(mnist_root):
    train_set, test_set = m.load_mnist(mnist_root, True), m.load_mnist(mnist_root, False)
    return train_set, test_set, m.preload(train_set, True), m.preload(test_set, False)


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_record_is_produced_by_the_benchmark_and_both_chapter_modules():
    assert {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS} == {
        "snippets/cnn.py",
        "snippets/mnist.py",
        "benchmarks/cnn.py",
    }


def test_the_convolution_throughput_is_measured_in_gflops():
    assert 0.1 < bench.conv_gflops(batch=8, repeats=2) < 1e6


def test_a_training_run_learns_the_synthetic_digits_with_augmentation(data):
    _, _, train, test = data
    model, history = bench.train_cnn(train, test, SHORT, seed=0)
    assert len(history["val_accuracy"]) == 2 and history["val_accuracy"][-1] > 0.5
    assert model[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    again, _ = bench.train_cnn(train, test, SHORT, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_runs_summarise_accuracy_over_seeds_and_the_analysis_is_consistent(data):
    _, test_set, train, test = data
    summary, model = bench.runs_of(SHORT, train, test, seeds=(0, 1))
    accuracies = [run["test_accuracy"] for run in summary["runs"]]
    assert summary["mean"] == pytest.approx(sum(accuracies) / 2) and summary["min"] == min(accuracies)
    assert summary["parameters"] == 28_986
    analysis = bench.analysis(model, *test, test_set.data)
    assert sum(map(sum, analysis["confusion"])) == len(test[1]) == 100
    assert analysis["wrong"]["count"] == 100 - sum(analysis["confusion"][i][i] for i in range(10))
    assert len(analysis["filters"]) == 16 and len(analysis["filters"][0]) == 5 and len(analysis["maps"][0]) == 28


def test_layout_speed_times_both_memory_layouts(data):
    speed = bench.layout_speed(data[2], steps=2)
    assert set(speed) == {"contiguous", "channels_last"} and all(s > 0 for s in speed.values())


def test_the_transfer_experiment_fills_the_table(monkeypatch):
    monkeypatch.setitem(bench.TRANSFER, "steps", 2)
    monkeypatch.setitem(bench.TRANSFER, "per_class", (5,))
    results = bench.transfer_experiment(c.build_cnn())
    assert set(results) == {"frozen/5", "fine-tune/5", "scratch/5"}
    assert all(len(v) == 3 and all(0 <= a <= 1 for a in v) for v in results.values())


def test_main_measures_everything_but_will_not_record_without_the_long_runs(mnist_root, monkeypatch):
    monkeypatch.setitem(bench.TRANSFER, "steps", 1)
    monkeypatch.setitem(bench.TRANSFER, "per_class", (5,))
    monkeypatch.setattr(bench, "CHAPTER", {**bench.CHAPTER, "epochs": 1})
    monkeypatch.setattr(bench, "layout_speed", lambda train: {"contiguous": 2.0, "channels_last": 1.0})
    metrics = bench.main(["--data-root", str(mnist_root), "--skip-further", "--threads", "1"])
    assert metrics["further"] is None and metrics["threads"] == 1
    assert metrics["speed"]["flops_per_image"] == 16_401_280 and metrics["chapter"]["floor_ratio"] > 0


def test_recording_without_the_long_runs_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--data-root", "nowhere", "--skip-further", "--record"])
    assert "--record needs the going-further runs" in capsys.readouterr().err
