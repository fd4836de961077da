"""The generative chapter's benchmark, run small: main() on the tiny synthetic MNIST of tests/conftest.py with tiny
models and few steps; then the page's report rendered from a record the benchmark writes. The record itself is made
by ``python -m benchmarks.generative --data-root data --record``; tests/test_generative.py checks it against the
page."""

import base64
import html
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from conftest import ROOT, run_sections, snippet_sections

import benchmarks.generative as bench
import site_tools.records as records

pytestmark = pytest.mark.usefixtures("keep_threads")  # tests/conftest.py


def test_the_record_is_produced_by_the_benchmark_and_the_chapter_module():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/generative.py", "benchmarks/generative.py"}
    _, hashed = records.code_hash("benchmarks/generative.py")
    for name in ("TinyUNet", "sample", "sample_flow", "train_gan", "frechet_distance", "nt_xent", "linear_probe"):
        assert f"snippets/generative.py:{name}" in hashed


def test_the_seeds_and_the_recipes_the_issue_asks_for():
    assert bench.SEEDS == (0, 1, 2, 3, 4) and bench.BOTTLENECKS == (2, 16)
    assert bench.LABELS_PER_CLASS == (10, 100, None)
    recipes = list(bench.GAN_RECIPES.values())
    assert [recipe.get("saturating", False) for recipe in recipes] == [True, False]
    assert all(recipe["lr"] == recipes[0]["lr"] and recipe["epochs"] == recipes[0]["epochs"] for recipe in recipes)


@pytest.fixture(scope="module")
def tiny_run(mnist_root, tmp_path_factory):
    """main() on 200 synthetic training digits (50 to validate) and 100 test digits, everything tiny."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "VAL_SIZE", 50)
        patch.setattr(bench, "SEEDS", (0, 1))
        patch.setattr(bench, "SAMPLES", 40)
        patch.setattr(bench, "GRID", 8)
        patch.setattr(bench, "CLASSIFIER", {**bench.CLASSIFIER, "hidden": 16, "epochs": 1})
        patch.setattr(bench, "AUTOENCODER", {**bench.AUTOENCODER, "hidden": 16, "epochs": 1})
        patch.setattr(bench, "VAE_RECIPE", {**bench.VAE_RECIPE, "hidden": 16, "epochs": 1})
        patch.setattr(bench, "CONTRASTIVE", {**bench.CONTRASTIVE, "steps": 2, "batch_size": 16})
        patch.setattr(bench, "SUPERVISED", {**bench.SUPERVISED, "steps": 4, "check_every": 2})
        patch.setattr(bench, "GAN", {**bench.GAN, "hidden": 16})
        patch.setattr(bench, "GAN_RECIPES", {n: {**r, "epochs": 1} for n, r in bench.GAN_RECIPES.items()})
        patch.setattr(bench, "DIFFUSION", {**bench.DIFFUSION, "channels": 8, "epochs": 1, "batch_size": 64})
        patch.setattr(bench, "SAMPLING_STEPS", 3)
        # the defaults were bound when the functions were defined: pass the tiny ones
        for name, config in (
            ("train_classifier", "CLASSIFIER"),
            ("autoencoders", "AUTOENCODER"),
            ("variational_autoencoders", "VAE_RECIPE"),
            ("pretrain_contrastive", "CONTRASTIVE"),
            ("train_supervised", "SUPERVISED"),
            ("diffusion", "DIFFUSION"),
        ):
            function = getattr(bench, name)
            patch.setattr(bench, name, bind_config(function, getattr(bench, config)))
        for name in ("autoencoders", "variational_autoencoders", "gans", "diffusion", "contrastive", "real_images"):
            patch.setattr(bench, name, bind_seeds(getattr(bench, name), bench.SEEDS))
        metrics = bench.main(["--data-root", str(mnist_root), "--threads", "1"])
        records_dir = tmp_path_factory.mktemp("records")
        records.write_record("generative", metrics, bench.PRODUCERS, "cpu", records_dir=records_dir)
    return metrics, records_dir


def bind_config(function, config):
    def bound(*args, **kwargs):
        kwargs.setdefault("config", config)
        return function(*args, **kwargs)

    return bound


def bind_seeds(function, seeds):
    def bound(*args, **kwargs):
        kwargs.setdefault("seeds", seeds)
        return function(*args, **kwargs)

    return bound


def images_in(text):
    return len(base64.b64decode(text)) // 784


def test_every_model_has_a_run_per_seed_and_its_samples_measured(tiny_run):
    metrics, _ = tiny_run
    assert [run["seed"] for run in metrics["real"]] == [0, 1]
    assert [run["seed"] for run in metrics["vae"]] == [0, 1]
    assert set(metrics["gan"]) == set(bench.GAN_RECIPES) and set(metrics["diffusion"]) == {"DDPM", "flow matching"}
    measured = [run["samples"] for run in metrics["vae"] + metrics["real"]]
    measured += [run["samples"] for runs in metrics["gan"].values() for run in runs]
    measured += [run["samples"] for runs in metrics["diffusion"].values() for run in runs]
    for samples in measured:
        assert samples["frechet"] >= -1e-6 and samples["commonest"] == pytest.approx(max(samples["class_shares"]))
        assert sum(samples["class_shares"]) == pytest.approx(1)


def test_the_autoencoders_record_errors_aucs_codes_and_images(tiny_run):
    metrics, _ = tiny_run
    result = metrics["autoencoders"]
    for bottleneck in (2, 16):
        runs = result[f"bottleneck {bottleneck}"]
        assert [run["seed"] for run in runs] == [0, 1]
        assert all(0 <= auc <= 1 for run in runs for auc in run["auc"].values())
        assert images_in(runs[0]["reconstructions"]) == 16 and "reconstructions" not in runs[1]
    assert len(result["bottleneck 2"][0]["codes"]) == len(metrics["codes_labels"]) == 50  # the 50 validation digits


def test_the_grids_hold_the_images_the_figures_show(tiny_run):
    metrics, _ = tiny_run
    assert images_in(metrics["vae"][0]["grid"]) == 8 and images_in(metrics["vae"][0]["interpolation"]) == 8
    assert all(images_in(runs[0]["grid"]) == 8 for runs in metrics["gan"].values())
    assert all(images_in(runs[0]["grid"]) == 8 for runs in metrics["diffusion"].values())


def test_the_probes_and_the_supervised_runs_read_each_split(tiny_run):
    metrics, _ = tiny_run
    for run in metrics["contrastive"]:
        assert set(run["labels"]) == {"10", "100", "all"}
        for scores in run["labels"].values():  # the probe's weight decay: the best on validation
            tried = {float(decay): value for decay, value in scores["probe_tried"].items()}
            assert set(tried) == set(bench.PROBE_WEIGHT_DECAYS)
            assert scores["probe_validation"] == max(tried.values()) == tried[scores["probe_weight_decay"]]


def test_the_labelled_subset_draws_per_class_and_all():
    labels = torch.arange(100) % 10
    chosen = bench.labelled_subset(labels, 3, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[chosen], minlength=10).tolist() == [3] * 10
    assert len(bench.labelled_subset(labels, None, torch.Generator())) == 100


def test_the_sample_meter_reads_the_hidden_layer_of_normalised_images_in_eval_mode():
    torch.manual_seed(0)
    classifier = bench.build_cnn(hidden=8, dropout=0.5).train()
    reference = torch.rand(60, 784)
    meter = bench.SampleMeter(classifier, reference)
    assert not classifier.training and meter.reference.shape == (60, 8)
    with torch.no_grad():
        expected = classifier[:-2](bench.to_normalised(reference))
    assert torch.equal(meter.reference, expected) and (expected >= 0).all()  # after the hidden layer's ReLU
    measured = meter(reference)
    assert abs(measured["frechet"]) < 1e-6 and measured["commonest"] == max(measured["class_shares"])


def test_the_odd_digits_are_flipped_top_to_bottom_and_shifted_right_and_down():
    image = torch.zeros(1, 28, 28)
    image[0, 2, 5] = 1.0  # one pixel: row 2, column 5
    odd = bench.odd_digits(image.reshape(1, 784))
    assert odd["flipped"].reshape(28, 28)[25, 5] == 1 and odd["flipped"].sum() == 1
    shifted = odd["shifted"].reshape(28, 28)
    assert shifted[2 + bench.SHIFT, 5 + bench.SHIFT] == 1 and shifted.sum() == 1


def test_the_report_renders_from_the_record(tiny_run, monkeypatch):
    _, records_dir = tiny_run
    real_read = records.read_record
    monkeypatch.setattr(records, "read_record", lambda name: real_read(name, records_dir))
    monkeypatch.setattr(records, "check_fresh", lambda record, sources=None: None)
    report = "benchmarks/reports/generative.py"
    _, outputs = run_sections(report, list(snippet_sections(report)))
    plt.close("all")
    text = "\n".join(html.unescape(re.sub(r"<[^>]+>", "", out)) for out in outputs)
    assert "Not recorded yet" not in text
    assert "bottleneck 16" in text and "non-saturating loss" in text and "flow matching" in text
    assert text.count("<svg") == 0 and sum(out.count("<svg") for out in outputs) >= 5
    for out in outputs:  # the printed lines fit the page's column
        for code in re.findall(r"<code>(.*?)</code>", out, flags=re.S):
            for line in html.unescape(code).splitlines():
                assert len(line) <= 84 or line.startswith("by "), line  # the command: here pytest's
