"""The sequences benchmark, run small: both MNIST models on the tiny synthetic MNIST of tests/conftest.py, and the
language model for a few steps on the guide's pages; then the page's report rendered from a record the benchmark
writes. The record itself is made by ``python -m benchmarks.sequences --data-root data --record``;
tests/test_sequences.py checks it against the page."""

import html
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from conftest import DOCS, ROOT, run_sections, snippet_sections

import benchmarks.cnn
import benchmarks.sequences as bench
import site_tools.records as records
import snippets.cnn
import snippets.mnist as m
import snippets.sequences as s

pytestmark = pytest.mark.usefixtures("keep_threads")  # tests/conftest.py


def test_the_record_is_produced_by_the_benchmark_and_the_modules_it_imports():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {
        "snippets/sequences.py",
        "snippets/mnist.py",
        "snippets/cnn.py",
        "benchmarks/sequences.py",
    }
    assert bench.choose_and_test is snippets.cnn.choose_and_test  # one protocol for both chapters


def test_the_recipes_the_issue_asks_for():
    assert set(bench.MNIST_CANDIDATES) == {"LSTM over rows", "transformer over patches"}
    for candidates in (*bench.MNIST_CANDIDATES.values(), bench.LM_CANDIDATES):
        assert len(candidates) >= 2
    assert bench.LANGUAGE_MODEL["clip"] == 1.0 and bench.LANGUAGE_MODEL["weight_decay"] > 0


TINY_LM = {**bench.LANGUAGE_MODEL, "context": 16, "d_model": 16, "heads": 2, "depth": 1, "steps": 3}


@pytest.fixture(scope="module")
def tiny_run(mnist_root):
    """main() on the tiny data, one epoch and three steps per run; what fit, the scoring and the training were given."""
    seen = {"validated": [], "scored": [], "started": []}
    real = {name: getattr(bench, name) for name in ("fit", "bits_per_character", "train_language_model", "corpus")}

    def fit(model, train, val, **kwargs):
        seen["validated"].append(val)
        return real["fit"](model, train, val, **kwargs)

    def corpus(*args):
        seen["corpus"] = real["corpus"](*args)
        return seen["corpus"]

    def bits_per_character(model, ids, *args):
        parts = seen["corpus"][2]
        seen["scored"].append(next((name for name in parts if torch.equal(ids, parts[name])), "neither"))
        return real["bits_per_character"](model, ids, *args)

    def train_language_model(model, *args, seed, **kwargs):
        seen["started"].append((seed, model.embed.weight.sum().item()))  # the weights it starts from
        return real["train_language_model"](model, *args, seed=seed, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "VAL_SIZE", 50)
        tiny = {
            name: {label: {**config, "epochs": 1} for label, config in candidates.items()}
            for name, candidates in bench.MNIST_CANDIDATES.items()
        }
        patch.setattr(bench, "MNIST_CANDIDATES", tiny)
        patch.setattr(bench, "LM_CANDIDATES", {"a": TINY_LM, "b": {**TINY_LM, "max_lr": 4e-3}})
        for name, spy in (
            ("fit", fit),
            ("corpus", corpus),
            ("bits_per_character", bits_per_character),
            ("train_language_model", train_language_model),
        ):
            patch.setattr(bench, name, spy)
        seen["metrics"] = bench.main(["--data-root", str(mnist_root), "--threads", "1"])
    train = m.preload(mnist_root, train=True)
    _, val_index = m.split_indices(len(train[1]), 50, bench.SPLIT_SEED)
    seen["val_part"] = train[0][val_index], train[1][val_index]
    return seen


@pytest.fixture(scope="module")
def tiny_metrics(tiny_run):
    return tiny_run["metrics"]


def test_the_mnist_project_chooses_on_validation_and_tests_five_seeds(tiny_metrics):
    results = tiny_metrics["mnist"]
    assert set(results) == {"LSTM over rows", "transformer over patches"}
    for name, project in results.items():
        assert [run["seed"] for run in project["runs"]] == [2, 3, 4, 5, 6]  # fresh seeds for the test runs
        assert [t["name"] for t in project["candidates"]] == list(bench.MNIST_CANDIDATES[name])
        assert all(len(run["val_accuracy"]) == 1 and 0 <= run["test"] <= 1 for run in project["runs"])
        assert project["test"]["min"] <= project["test"]["mean"] <= project["test"]["max"]
        assert project["parameters"] > 10_000
        assert len({run["train_loss"][0] for run in project["runs"]}) == 5  # five different networks
        every_run = project["runs"] + [run for t in project["candidates"] for run in t["runs"]]
        assert all(len(run["load"]) == 2 and run["cpu_seconds"] > 0 for run in every_run)


def test_the_mnist_models_validate_on_the_validation_split_never_the_test_set(tiny_run):
    val_images, val_labels = tiny_run["val_part"]
    runs = sum(2 * len(candidates) + 5 for candidates in bench.MNIST_CANDIDATES.values())
    assert len(tiny_run["validated"]) == runs
    for images, labels in tiny_run["validated"]:
        assert torch.equal(images, val_images) and torch.equal(labels, val_labels)


def test_the_language_model_is_scored_on_validation_then_on_the_test_part_once_per_test_run(tiny_run):
    choice = 2 * len(snippets.cnn.CHOICE_SEEDS)  # two candidates
    assert tiny_run["scored"] == ["validation"] * (choice + 5) + ["test"] * 5  # every run validated; then the test


def test_each_language_model_seed_starts_from_its_own_weights_and_batches(tiny_run):
    started = tiny_run["started"]
    assert [seed for seed, _ in started] == [0, 1, 0, 1, 2, 3, 4, 5, 6]  # the batches' seed is the run's
    first_weights = dict(started)
    assert len(set(first_weights.values())) == 7  # one network per seed...
    assert all(first_weights[seed] == weights for seed, weights in started)  # ...and the same for the same seed


def test_an_augmented_recipe_trains(mnist_root, monkeypatch):
    images, labels = m.preload(mnist_root, train=True)
    config = bench.MNIST_CANDIDATES["transformer over patches"]["with augmentation and label smoothing"]
    small = {**config, "epochs": 1, "size": {"d_model": 16, "heads": 2, "depth": 1, "hidden": 16}}
    streams = []
    real_affine = bench.random_affine
    monkeypatch.setattr(
        bench, "random_affine", lambda x, **kw: streams.append(kw["generator"].initial_seed()) or real_affine(x, **kw)
    )
    model, history = bench.train_sequence_model((images[:100], labels[:100]), (images[100:], labels[100:]), small, 0)
    again, _ = bench.train_sequence_model((images[:100], labels[:100]), (images[100:], labels[100:]), small, 0)
    assert len(history["val_accuracy"]) == 1 and torch.equal(model.head.weight, again.head.weight)
    assert streams and 0 not in streams  # augmentation draws from its own stream, not fit's batch order (seed 0)


def test_the_language_model_is_chosen_on_validation_and_tested_once_per_run(tiny_metrics):
    lm = tiny_metrics["language_model"]
    text = s.read_pages(DOCS)
    assert sum(lm["characters"].values()) == len(text) and lm["vocabulary"] > 50
    assert lm["characters"]["train"] == int(0.8 * len(text))
    assert [run["seed"] for run in lm["runs"]] == [2, 3, 4, 5, 6]
    assert lm["chosen"] == min(lm["candidates"], key=lambda t: t["validation"])["name"]  # fewest bits
    pages = lm["pages"]  # the corpus, reproducible: every page's name, size and hash, in order
    assert [page["name"] for page in pages] == sorted(p.name for p in DOCS.glob("*.md"))
    assert sum(page["characters"] for page in pages) + len(pages) - 1 == len(text)
    assert all(0 < run["test"] < 10 and 0 < run["validation"] < 10 for run in lm["runs"])
    assert 3 < lm["baselines"]["unigram"] < 7 and lm["baselines"]["bigram"] < lm["baselines"]["unigram"]
    assert [drawn["settings"] for drawn in lm["samples"]] == list(bench.SAMPLES)
    assert all(drawn["text"].startswith("## ") and len(drawn["text"]) >= 303 for drawn in lm["samples"])


def test_the_corpus_is_split_in_page_order_with_a_training_vocabulary(tmp_path):
    (tmp_path / "a.md").write_text("abc" * 40 + "xyz" * 10, encoding="utf-8")  # 80% is the abc
    text, vocabulary, ids, unknown = bench.corpus(tmp_path)
    assert set(vocabulary.characters) == {"<unk>", "a", "b", "c"}  # the training part's only
    assert unknown == {"validation": 15, "test": 15} and len(ids["train"]) == 120


def test_a_corpus_without_pages_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .md files"):
        bench.corpus(tmp_path)


def test_the_page_report_renders_a_record_the_benchmark_writes(tiny_metrics, tmp_path, monkeypatch):
    producers = [ROOT / p for p in ("benchmarks/sequences.py", "snippets/sequences.py", "snippets/mnist.py")]
    records.write_record("sequences", tiny_metrics, producers, "cpu", command="python -m x", records_dir=tmp_path)
    real = records.read_record
    recipe = {"augment": None, "label_smoothing": 0.0}
    runs = [{"epoch_seconds": [10.0, 11.0]}] * 5
    summary = {"mean": 0.99, "min": 0.98, "max": 0.995}
    cnn = {  # what the report reads of the CNN chapter's record, whose tests are its own
        "chapter": {"test": summary, "parameters": 28_986, "runs": runs, "config": benchmarks.cnn.CHAPTER},
        "like_the_mlp": {"test": summary, "runs": runs, "config": recipe},
    }

    def read(name, records_dir=None):
        if name == "cnn":
            return {"name": "cnn", "metrics": cnn}
        return real(name, tmp_path) if name == "sequences" else real(name)

    monkeypatch.setattr(records, "read_record", read)
    plt.close("all")
    report = "benchmarks/reports/sequences.py"
    _, outputs = run_sections(report, list(snippet_sections(report)))
    out = "".join(outputs)
    assert out.count('class="guide-record"') == 3 and "perplexity at the mean" in out and "chosen" in out
    text = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<p .*?</p>", "\n", out)))
    assert [line for line in text.splitlines() if len(line) > 84] == []
    assert re.search(r"CNN, the chapter's recipe .* aug, LS 0\.1\n", text)  # the label says what the recipe has
    assert re.search(r"CNN, trained like the MLP .* plain\n", text)
    mlp_seeds = len(records.read_record("mnist")["metrics"]["chapter"]["runs"])
    assert f"Seeds: {mlp_seeds} for the MLP (its record), 5 for the others." in text
    assert "<unk>" not in "".join(drawn["text"] for drawn in tiny_metrics["language_model"]["samples"])
    plt.close("all")


def test_recording_on_a_busy_machine_is_refused_before_any_work(capsys, monkeypatch):
    monkeypatch.setattr(benchmarks.cnn.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    with pytest.raises(SystemExit):
        bench.main(["--data-root", "nowhere", "--record"])
    assert "load average 1.50 (1 minute), above 0.5" in capsys.readouterr().err
