"""The sequences benchmark, run small: both MNIST models on the tiny synthetic MNIST of tests/conftest.py, and the
language model for a few steps on the guide's pages. The record itself is made by ``python -m benchmarks.sequences
--data-root data --record``; tests/test_sequences.py checks it against the page."""

from pathlib import Path

import pytest
from conftest import DOCS, ROOT

import benchmarks.sequences as bench
import snippets.sequences as s


def test_the_record_is_produced_by_the_benchmark_and_the_modules_it_imports():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/sequences.py", "snippets/mnist.py", "benchmarks/sequences.py"}


def test_the_mnist_project_trains_both_models_over_the_seeds(mnist_root):
    results = bench.mnist_project(mnist_root, epochs_scale=0.01, seeds=(0, 1))
    assert set(results) == {"LSTM over rows", "transformer over patches"}
    for project in results.values():
        assert [run["seed"] for run in project["runs"]] == [0, 1]
        assert all(len(run["val_accuracy"]) == 1 and 0 <= run["test_accuracy"] <= 1 for run in project["runs"])
        assert project["min"] <= project["mean"] <= project["max"] and project["parameters"] > 10_000


def test_the_language_model_reports_bits_per_character_and_two_samples():
    config = {**bench.LANGUAGE_MODEL, "context": 16, "d_model": 16, "heads": 2, "depth": 1, "steps": 3}
    lm = bench.language_model(config)
    assert lm["characters"] == len(s.read_pages(DOCS)) and lm["vocabulary"] > 50
    assert 0 < lm["val_bits_per_character"] < 10 and 3 < lm["unigram_bits_per_character"] < 7
    assert set(lm["samples"]) == {"0.5", "1.0"} and all(len(t) == 303 for t in lm["samples"].values())
    assert lm["train_characters"] + len(s.read_pages(DOCS)) // 10 >= lm["characters"] - 1


def test_a_corpus_without_pages_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .md files"):
        bench.corpus(tmp_path)
