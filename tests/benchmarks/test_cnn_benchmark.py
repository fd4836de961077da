"""The CNN benchmark's pieces, on the tiny IDX fixture of tests/conftest.py and scikit-learn's digits (no MNIST
files needed): the choice on validation, the test set read once per chosen run, and the page's report rendered from a
record the benchmark writes. The numbers themselves are recorded by ``python -m benchmarks.cnn --data-root data
--record``; tests/test_cnn.py checks that record against the page's claims and against the code (freshness)."""

import html
import re
import statistics
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from conftest import ROOT, run_sections, snippet_sections
from torch.utils.flop_counter import FlopCounterMode

import benchmarks.cnn as bench
import benchmarks.mnist
import site_tools.records as records
import snippets.cnn as c
import snippets.mnist as m

SHORT = {**bench.CHAPTER, "epochs": 2, "batch_size": 50}


@pytest.fixture(scope="module")
def data(mnist_root):
    train_set, test_set = m.load_mnist(mnist_root, True), m.load_mnist(mnist_root, False)
    return train_set, test_set, m.preload(train_set, True), m.preload(test_set, False)


pytestmark = pytest.mark.usefixtures("keep_threads")  # tests/conftest.py


@pytest.fixture
def small_split(monkeypatch):
    monkeypatch.setattr(bench, "VAL_SIZE", 50)


def test_the_record_is_produced_by_the_benchmark_and_both_chapter_modules():
    assert {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS} == {
        "snippets/cnn.py",
        "snippets/mnist.py",
        "benchmarks/cnn.py",
    }


def test_the_seeds_and_the_recipes_the_issue_asks_for():
    assert bench.CHOICE_SEEDS == (0, 1) and bench.SEEDS == (2, 3, 4, 5, 6)  # the test runs' seeds: fresh
    assert bench.TIME_LIMITS == {"chapter": 60, "further": 300}
    assert bench.CHAPTER_CANDIDATES["augmentation, label smoothing"] is bench.CHAPTER
    assert bench.FURTHER_CANDIDATES["hidden layer, dropout, augmentation"] is bench.FURTHER
    # the ablations are candidates: without each change of the going-further recipe
    assert bench.FURTHER_CANDIDATES["without augmentation"]["augment"] is None
    assert bench.FURTHER_CANDIDATES["without the hidden layer"]["hidden"] == 0


def test_the_cnn_trained_like_the_mlp_uses_the_mnist_chapters_recipe():
    mlp = benchmarks.mnist.CHAPTER
    recipe = bench.MLP_RECIPE
    assert (recipe["epochs"], recipe["batch_size"], recipe["max_lr"]) == (
        mlp["epochs"],
        mlp["batch_size"],
        mlp["max_lr"],
    )
    assert recipe["augment"] is None and recipe["label_smoothing"] == 0 and bench.VAL_SIZE == mlp["val_size"]


def test_the_split_is_the_mnist_chapters(data, small_split):
    images, labels = data[2]
    (train_x, train_y), (val_x, val_y) = bench.split_training_set((images, labels))
    train_index, val_index = m.split_indices(len(labels), 50, bench.SPLIT_SEED)
    assert torch.equal(val_x, images[val_index]) and torch.equal(train_y, labels[train_index])
    assert len(val_y) == 50 and len(train_y) == len(labels) - 50


def test_the_convolution_throughput_is_measured_in_gflops(monkeypatch):
    assert 0.1 < bench.conv_gflops(batch=8, repeats=2) < 1e6
    # with a clock that says each repeat took 1 s, it returns the convolution's GFLOP: FlopCounterMode's count
    ticks = iter([0.0, 2.0])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    conv = torch.nn.Conv2d(16, 32, 5, padding=2, bias=False)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        conv(torch.zeros(8, 16, 14, 14))
    assert bench.conv_gflops(batch=8, repeats=2) == pytest.approx(counter.get_total_flops() / 1e9)


def test_a_training_run_validates_and_is_reproducible(data, small_split, monkeypatch):
    train_part, val_part = bench.split_training_set(data[2])
    streams = {}
    real_affine, real_fit = bench.random_affine, bench.fit

    def affine(x, **kwargs):
        streams.setdefault("augmentation", kwargs["generator"].initial_seed())
        return real_affine(x, **kwargs)

    def fit(*args, **kwargs):
        streams["batch order"] = kwargs["seed"]
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(bench, "random_affine", affine)
    monkeypatch.setattr(bench, "fit", fit)
    model, history = bench.train_cnn(train_part, val_part, SHORT, seed=0)
    assert streams["augmentation"] != streams["batch order"]  # two random streams, not one seeded twice
    assert len(history["val_accuracy"]) == 2 and history["val_accuracy"][-1] > 0.5
    assert history["val_accuracy"][-1] == m.evaluate(model, *val_part)  # validated on the held-out part
    assert model[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    again, _ = bench.train_cnn(train_part, val_part, SHORT, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


class Fake:
    """A stand-in model: its validation score and seconds are given; the test set counts its readings."""

    def __init__(self, validation, seconds, seed):
        self.validation, self.seconds, self.seed, self.tested = validation, seconds, seed, 0


def test_the_choice_reads_validation_only_and_the_test_set_once_per_chosen_run():
    made = []

    def train_run(config, seed):
        seconds = config["seconds"] + (50 if seed == 1 and config.get("slow_seed_1") else 0)
        model = Fake(config["validation"] + seed / 1000, seconds, seed)
        made.append((config["name"], model))
        return {"seed": seed, "model": model, "validation": model.validation, "train_seconds": model.seconds}

    def test_score(model):
        model.tested += 1
        return 0.5 + model.seed / 100

    candidates = {
        "good": {"name": "good", "validation": 0.90, "seconds": 10},
        "better but too slow": {"name": "slow", "validation": 0.99, "seconds": 100},
        "better, one run too slow": {"name": "one slow", "validation": 0.95, "seconds": 20, "slow_seed_1": True},
        "worse": {"name": "worse", "validation": 0.80, "seconds": 10},
    }
    result = bench.choose_and_test(candidates, train_run, test_score, time_limit=60)
    assert result["chosen"] == "good" and result["config"] is candidates["good"]  # every run must fit, not one
    assert [run["seed"] for run in result["runs"]] == list(bench.SEEDS)
    tried = {candidate["name"]: candidate for candidate in result["candidates"]}
    assert list(tried) == list(candidates) and not tried["better but too slow"]["within_time_limit"]
    assert not tried["better, one run too slow"]["within_time_limit"]
    for name, model in made:  # the test set: once per chosen test run, never for the runs that chose
        assert model.tested == (1 if name == "good" and model.seed in bench.SEEDS else 0)
    good = [model.seed for name, model in made if name == "good"]
    assert good == [*bench.CHOICE_SEEDS, *bench.SEEDS]  # the test runs are fresh seeds
    assert result["test"]["values"] == [0.5 + seed / 100 for seed in bench.SEEDS]
    assert tried["worse"]["validation"] == pytest.approx(0.8005)  # the mean over the choice's seeds
    assert [run["validation"] for run in tried["worse"]["runs"]] == [0.80, 0.801]  # every run kept...
    assert all("model" not in run and "test" not in run for t in tried.values() for run in t["runs"])  # ...untested
    # no time limit: the best validation wins
    assert bench.choose_and_test(candidates, train_run, test_score)["chosen"] == "better but too slow"
    # none fits: the best of all is still chosen, and the record says it was too slow
    slow_only = {"slow": candidates["better but too slow"]}
    assert bench.choose_and_test(slow_only, train_run, test_score, time_limit=1)["chosen"] == "slow"


def test_a_recipe_is_chosen_on_tiny_data_and_summarised_over_five_seeds(data, small_split, monkeypatch):
    _, test_set, train, test = data
    train_part, val_part = bench.split_training_set(train)
    candidates = {"short": SHORT, "shorter": {**SHORT, "epochs": 1}}
    result, model = bench.recipe(candidates, train_part, val_part, test, time_limit=60)
    values = [run["test"] for run in result["runs"]]
    assert len(values) == 5 and result["test"]["values"] == values
    assert result["test"]["mean"] == pytest.approx(sum(values) / 5) and result["test"]["min"] == min(values)
    assert result["parameters"] == 28_986 and not any("model" in run for run in result["runs"])
    assert m.evaluate(model, *test) == values[0]  # the returned model is the first test run's
    every_run = result["runs"] + [run for tried in result["candidates"] for run in tried["runs"]]
    for run in every_run:  # every candidate's runs kept: curves, epoch times, training accuracy, load, CPU time
        assert len(run["val_accuracy"]) == len(run["epoch_seconds"]) == len(run["train_loss"])
        assert 0 <= run["train_accuracy"] <= 1 and len(run["load"]) == 2 and run["cpu_seconds"] > 0
        epochs = run["epoch_seconds"]  # the time limit's measure: epochs x the median epoch
        assert run["train_seconds"] == len(epochs) * statistics.median(epochs)
        assert run["wall_seconds"] == pytest.approx(sum(epochs)) and run["run_seconds"] >= run["wall_seconds"]
    analysis = bench.analysis(model, *test, test_set.data)
    assert sum(map(sum, analysis["confusion"])) == len(test[1]) == 100
    assert analysis["wrong"]["count"] == 100 - sum(analysis["confusion"][i][i] for i in range(10))
    assert len(analysis["filters"]) == 16 and len(analysis["filters"][0]) == 5 and len(analysis["maps"][0]) == 28


def test_the_time_limit_counts_epochs_times_the_median_epoch(data, small_split, monkeypatch):
    train_part, val_part = bench.split_training_set(data[2])
    history = {"train_loss": [1.0] * 5, "val_accuracy": [0.9] * 5, "epoch_seconds": [10, 11, 30, 10, 12]}
    monkeypatch.setattr(bench, "train_cnn", lambda *args: (c.build_cnn(), history))
    run = bench.cnn_run(train_part, val_part, SHORT, seed=0)
    assert run["train_seconds"] == 5 * 11 and run["wall_seconds"] == 73  # one slow epoch barely counts


def test_layout_speed_times_both_memory_layouts(data):
    speed = bench.layout_speed(data[2], steps=2)
    assert set(speed) == {"contiguous", "channels_last"} and all(s > 0 for s in speed.values())


def test_the_transfer_experiment_chooses_on_validation_and_reads_the_held_out_digits_for_results(monkeypatch):
    monkeypatch.setitem(bench.TRANSFER, "steps", 2)
    monkeypatch.setitem(bench.TRANSFER, "per_class", (5,))
    monkeypatch.setitem(bench.TRANSFER, "seeds", (2, 3))
    monkeypatch.setitem(bench.TRANSFER, "choice_per_class", 2)
    images, _ = c.digits_as_mnist()
    held_out, val, pool = bench.transfer_split(len(images))
    evaluated, drawn = [], []
    real_evaluate, real_labelled = bench.evaluate, bench.labelled

    def evaluate(model, x, y):
        splits = (("held out", held_out), ("validation", val))
        evaluated.append(next((name for name, index in splits if torch.equal(x, images[index])), "neither"))
        return real_evaluate(model, x, y)

    def labelled(*args):
        drawn.append(real_labelled(*args))
        return drawn[-1]

    monkeypatch.setattr(bench, "evaluate", evaluate)
    monkeypatch.setattr(bench, "labelled", labelled)
    result = bench.transfer_experiment(c.build_cnn())
    choices = len(c.METHODS) * len(bench.TRANSFER["learning_rates"]) * len(bench.CHOICE_SEEDS)
    assert evaluated == ["validation"] * choices + ["held out"] * len(c.METHODS) * 2  # choice first, then results
    unseen = set(held_out.tolist()) | set(val.tolist())
    assert drawn and all(not set(chosen.tolist()) & unseen for chosen in drawn)  # labelled only from the pool
    assert set(result["results"]) == {f"{method}/5" for method in c.METHODS}
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in result["results"].values())
    assert all(lr in bench.TRANSFER["learning_rates"] for lr in result["learning_rates"].values())
    for method, tried in result["choice"].items():
        best = max(tried, key=lambda lr: sum(tried[lr]))
        assert result["learning_rates"][method] == float(best)


def test_the_transfer_split_is_disjoint_and_seeded():
    held_out, val, pool = bench.transfer_split(1797)
    assert (len(held_out), len(val), len(pool)) == (797, 200, 800)
    assert sorted(torch.cat([held_out, val, pool]).tolist()) == list(range(1797))
    assert all(torch.equal(a, b) for a, b in zip(bench.transfer_split(1797), (held_out, val, pool)))


def test_the_labelled_images_are_per_class_and_seeded():
    _, labels = c.digits_as_mnist()
    pool = torch.arange(1000)
    chosen = bench.labelled(pool, labels, 5, seed=3)
    assert labels[chosen].bincount().tolist() == [5] * 10
    assert torch.equal(chosen, bench.labelled(pool, labels, 5, seed=3))
    assert not torch.equal(chosen, bench.labelled(pool, labels, 5, seed=4))
    assert set(chosen.tolist()) <= set(bench.labelled(pool, labels, 10, seed=3).tolist())  # more labels: a superset


@pytest.fixture(scope="module")
def tiny_run(mnist_root):
    """main() on the tiny data, every recipe one or two epochs: what a record of it holds, and what fit was given."""
    validated = []
    real_fit = bench.fit

    def fit(model, train, val, **kwargs):
        validated.append(val)
        return real_fit(model, train, val, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "VAL_SIZE", 50)
        patch.setattr(bench, "fit", fit)
        patch.setitem(bench.TRANSFER, "steps", 1)
        patch.setitem(bench.TRANSFER, "per_class", (5,))
        patch.setitem(bench.TRANSFER, "choice_per_class", 2)
        patch.setitem(bench.TRANSFER, "seeds", (2, 3))
        short = {name: {**config, "epochs": 1} for name, config in bench.CHAPTER_CANDIDATES.items()}
        chosen = ("augmentation, label smoothing", "without augmentation")  # the pair the page compares
        patch.setattr(bench, "CHAPTER_CANDIDATES", {name: short[name] for name in chosen})
        patch.setattr(bench, "MLP_RECIPE", {**bench.MLP_RECIPE, "epochs": 1})
        further = {name: {**config, "epochs": 1} for name, config in bench.FURTHER_CANDIDATES.items()}
        patch.setattr(bench, "FURTHER_CANDIDATES", further)
        patch.setattr(bench, "layout_speed", lambda train: {"contiguous": 2.0, "channels_last": 1.0})
        metrics = bench.main(["--data-root", str(mnist_root), "--threads", "1"])
        train = m.preload(m.load_mnist(mnist_root, True), True)
        _, val_part = bench.split_training_set(train)
    return {"metrics": metrics, "validated": validated, "val_part": val_part}


@pytest.fixture(scope="module")
def tiny_metrics(tiny_run):
    return tiny_run["metrics"]


def test_main_measures_everything(tiny_metrics):
    metrics = tiny_metrics
    assert metrics["threads"] == 1 and metrics["split"] == {"train": 150, "validation": 50}
    assert metrics["speed"]["flops_per_image"] == 16_401_280 and metrics["chapter"]["floor_ratio"] > 0
    assert (
        len(metrics["chapter"]["runs"]) == len(metrics["like_the_mlp"]["runs"]) == len(metrics["further"]["runs"]) == 5
    )
    assert [tried["name"] for tried in metrics["further"]["candidates"]] == list(bench.FURTHER_CANDIDATES)
    assert metrics["transfer"]["pretrained_seed"] == metrics["chapter"]["runs"][0]["seed"] == bench.SEEDS[0]


def test_every_training_run_validates_on_the_validation_split_never_the_test_set(tiny_run):
    val_images, val_labels = tiny_run["val_part"]
    metrics = tiny_run["metrics"]
    runs = sum(2 * len(r["candidates"]) + 5 for r in (metrics["chapter"], metrics["further"])) + 5
    assert len(tiny_run["validated"]) == runs  # the choice, the test runs, and the CNN trained like the MLP
    for images, labels in tiny_run["validated"]:
        assert torch.equal(images, val_images) and torch.equal(labels, val_labels)


def test_each_seed_trains_its_own_network(tiny_metrics):
    for result in (tiny_metrics["chapter"], tiny_metrics["further"], tiny_metrics["like_the_mlp"]):
        runs = result["runs"]
        assert [run["seed"] for run in runs] == list(bench.SEEDS)
        assert len({run["train_loss"][0] for run in runs}) == 5  # five different networks and batch orders
    for tried in tiny_metrics["chapter"]["candidates"]:
        assert len({run["train_loss"][0] for run in tried["runs"]}) == len(bench.CHOICE_SEEDS)


def test_the_page_report_renders_a_record_the_benchmark_writes(tiny_metrics, tmp_path, monkeypatch):
    producers = [ROOT / "benchmarks" / "cnn.py", ROOT / "snippets" / "cnn.py", ROOT / "snippets" / "mnist.py"]
    records.write_record(
        "cnn", tiny_metrics, producers, "cpu", command="python -m benchmarks.cnn", records_dir=tmp_path
    )
    real = records.read_record

    def read(name, records_dir=None):
        return real(name, tmp_path) if name == "cnn" else real(name)

    monkeypatch.setattr(records, "read_record", read)
    plt.close("all")
    report = "benchmarks/reports/cnn.py"
    _, outputs = run_sections(report, list(snippet_sections(report)))
    out = "".join(outputs)
    assert out.count('class="guide-record"') == 5 and "code hash" in out
    for claim in (r"mean at least 99\.3%: (yes|no)", r"mean at least 99\.5%: (yes|no)", r"the runs took [\d.]+x"):
        assert re.search(claim, out), claim
    chosen = tiny_metrics["chapter"]["chosen"]
    assert f"chosen: {chosen}" in out and "trained the same way, the CNN makes" in out
    assert re.search(r"augmentation narrows the gap: (yes|no)", out) and "load average (1 minute)" in out
    text = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<p .*?</p>", "\n", out)))
    assert [line for line in text.splitlines() if len(line) > 84] == []  # the page's column
    assert f"the chapter's recipe with seed {bench.SEEDS[0]}" in text
    assert len(plt.get_fignums()) >= 4
    plt.close("all")


def test_recording_on_a_busy_machine_is_refused_before_any_work(capsys, monkeypatch):
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (3.0, 2.0, 1.0))
    with pytest.raises(SystemExit):
        bench.main(["--data-root", "nowhere", "--record"])
    assert "load average 3.00 (1 minute), above 0.5" in capsys.readouterr().err
    assert bench.refuse_a_busy_machine(None, recording=False) == 3.0  # printing is allowed


def test_a_recorded_run_waits_while_something_else_keeps_the_machine_busy(monkeypatch):
    loads, slept = [], []
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (loads.pop(0), 0.0, 0.0))
    monkeypatch.setattr(bench.time, "sleep", slept.append)
    loads[:] = [2.9]  # our own two threads, and a little more: no wait
    bench.wait_while_busy(threads=2)
    loads[:] = [3.5, 3.5, 2.0, 0.4]  # something else: wait until the machine is idle
    bench.wait_while_busy(threads=2, poll=10)
    assert slept == [10, 10] and not loads
    monkeypatch.setattr(bench, "WAIT_SECONDS", 30)
    loads[:] = [3.5] * 10
    with pytest.raises(SystemExit, match="stayed above 0.5 for 30 s"):
        bench.wait_while_busy(threads=2, poll=10)


def test_measured_runs_record_their_load_and_cpu_time_and_wait_only_when_recording(monkeypatch):
    waited = []
    monkeypatch.setattr(bench, "wait_while_busy", waited.append)
    run = bench.measured(lambda config, seed: {"seed": seed})({}, 3)
    assert run["seed"] == 3 and len(run["load"]) == 2 and run["cpu_seconds"] >= 0 and not waited
    bench.measured(lambda config, seed: {}, threads=2)({}, 0)
    assert waited == [2]


def test_recording_without_the_long_runs_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--data-root", "nowhere", "--skip-further", "--record"])
    assert "--record needs the going-further runs" in capsys.readouterr().err
