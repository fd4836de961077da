"""The MNIST benchmark's measurements, on the tiny IDX fixture of tests/conftest.py (no real data needed).

The numbers themselves are recorded by ``python -m benchmarks.mnist --data-root data --record``;
tests/test_mnist.py checks that record against the page's claims and against the code (freshness).
"""

from pathlib import Path

import pytest
import torch
from conftest import ROOT

import benchmarks.mnist as bench
import snippets.mnist as m


def test_matmul_throughput_is_measured_in_gflops():
    gflops = bench.matmul_gflops(64, repeats=5, rounds=2)
    assert 0.1 < gflops < 1e6


def test_fast_path_times_every_epoch_and_finds_when_98_percent_was_reached(mnist_root):
    images, labels = m.preload(mnist_root, train=True)
    test_x, test_y = m.preload(mnist_root, train=False)
    run = bench.time_fast_path(images, labels, test_x, test_y, batch_size=50, epochs=3)
    assert run["batch_size"] == 50 and len(run["epoch_seconds"]) == len(run["test_accuracy"]) == 3
    assert run["best_epoch_seconds"] <= run["median_epoch_seconds"]
    reached = [acc >= 0.98 for acc in run["test_accuracy"]]
    if any(reached):  # the synthetic digits are easy: the time is the training time up to that epoch
        first = reached.index(True)
        assert run["seconds_to_98"] == pytest.approx(sum(run["epoch_seconds"][: first + 1]))
    else:
        assert run["seconds_to_98"] is None


def test_standard_path_times_training_and_loading_alone(mnist_root):
    train_set = m.load_mnist(mnist_root, train=True)
    run = bench.time_standard_path(train_set, num_workers=0)
    assert run["num_workers"] == 0
    assert 0 < run["loading_seconds"] and 0 < run["train_epoch_seconds"]


def test_the_record_is_produced_by_the_benchmark_and_the_chapter_module():
    assert {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS} == {"snippets/mnist.py", "benchmarks/mnist.py"}
    assert bench.CHAPTER["hidden"] == (128,) and torch.get_default_dtype() == torch.float32
