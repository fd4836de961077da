"""docs/mnist.md: the MNIST pipeline on tiny synthetic files in the real IDX format, and the recorded run.

The real data is never needed: a fixture writes 200 training and 100 test images (each digit class a bright block
at its own place, plus noise) as the four gzip IDX files torchvision reads, under <root>/MNIST/raw/. The page's
blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); the recorded
results are the report's hidden blocks (benchmarks/reports/mnist.py), run section by section.
"""

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError

import matplotlib.pyplot as plt
import pytest
import torch
from conftest import (
    run_sections,
    snippet_sections,
    synthetic_digits,
    test_the_page_prints_what_its_build_shows,  # noqa: F401 (a test)
    write_synthetic_mnist,
)
from PIL import Image
from torch.utils.data import DataLoader, random_split

import snippets.mnist as m
from site_tools.records import RECORDS_DIR, check_fresh, read_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module", autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_load_mnist_reads_the_gzip_idx_files_through_torchvision(mnist_root):
    train, test = m.load_mnist(mnist_root, train=True), m.load_mnist(mnist_root, train=False)
    assert (len(train), len(test)) == (200, 100)
    image, label = train[3]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and label == 3
    assert torch.equal(train.data, synthetic_digits(200, 0)[0])  # the bytes we wrote, read by torchvision
    assert (mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()  # unpacked once
    assert not list((mnist_root / "MNIST" / "raw").glob(".*partial"))
    # the transform normalises: black (0) becomes -MEAN/STD
    assert image.min().item() >= -m.MEAN / m.STD - 1e-6


def test_missing_data_fails_fast_and_says_how_to_get_it(tmp_path):
    start = time.perf_counter()
    with pytest.raises(m.MnistNotFoundError, match="download=True") as caught:
        m.load_mnist(tmp_path / "nowhere", train=True)
    assert time.perf_counter() - start < 2
    assert "train-images-idx3-ubyte.gz" in str(caught.value) and "MNIST/raw" in str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)


def test_a_failed_download_becomes_the_same_clear_error(tmp_path, monkeypatch):
    def offline(self):
        raise URLError("no network")

    monkeypatch.setattr(m.MNIST, "download", offline)
    with pytest.raises(m.MnistNotFoundError, match="downloading MNIST .* failed: .*no network"):
        m.load_mnist(tmp_path, train=True, download=True)


def test_preload_is_the_per_sample_transform_bit_for_bit(mnist_root):
    dataset = m.load_mnist(mnist_root, train=True)
    images, labels = m.preload(dataset, train=True)
    assert images.shape == (200, 784) and images.dtype == torch.float32 and images.is_contiguous()
    assert labels.dtype == torch.int64 and torch.equal(labels, dataset.targets)
    one_by_one = torch.stack([dataset[i][0].reshape(784) for i in range(len(dataset))])
    assert torch.equal(images, one_by_one)
    from_root = m.preload(mnist_root, train=False)
    assert from_root[0].shape == (100, 784)


def test_split_indices_are_the_ones_random_split_picks(mnist_root):
    dataset = m.load_mnist(mnist_root, train=True)
    train_part, val_part = random_split(dataset, [180, 20], generator=torch.Generator().manual_seed(7))
    train_index, val_index = m.split_indices(200, 20, seed=7)
    assert train_index.tolist() == train_part.indices and val_index.tolist() == val_part.indices
    assert sorted(train_index.tolist() + val_index.tolist()) == list(range(200))


def test_batches_visit_every_sample_once_in_a_seeded_order():
    images, labels = torch.arange(10.0).unsqueeze(1).repeat(1, 784), torch.arange(10)
    seen = list(m.batches(images, labels, 4, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in seen] == [4, 4, 2]
    order = torch.cat([y for _, y in seen])
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    assert all(torch.equal(x[:, 0], y.float()) for x, y in seen)  # images stay paired with their labels
    again = torch.cat([y for _, y in m.batches(images, labels, 4, torch.Generator().manual_seed(0))])
    assert torch.equal(order, again)
    in_order = torch.cat([y for _, y in m.batches(images, labels, 4, None, shuffle=False)])
    assert in_order.tolist() == list(range(10))


def test_model_shapes_and_parameter_counts():
    model = m.build_model()
    assert m.count_parameters(model) == 784 * 128 + 128 + 128 * 10 + 10 == 101_770
    assert m.count_parameters(m.build_model((256, 128))) == 235_146
    assert [type(layer).__name__ for layer in model] == ["Flatten", "Linear", "ReLU", "Linear"]
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(model(x), model(x.reshape(3, 784)))  # both input layouts


def test_fit_learns_the_synthetic_digits(mnist_root):
    train_x, train_y = m.preload(mnist_root, train=True)
    test_x, test_y = m.preload(mnist_root, train=False)
    torch.manual_seed(0)
    model = m.build_model()
    seen = []
    history = m.fit(
        model,
        (train_x, train_y),
        (test_x, test_y),
        epochs=4,
        batch_size=32,
        max_lr=1e-2,
        on_epoch=lambda epoch, h: seen.append(epoch),
    )
    assert seen == [0, 1, 2, 3]
    assert history["train_loss"][-1] < history["train_loss"][0] / 4
    assert history["val_accuracy"][-1] >= 0.95
    assert m.evaluate(model, test_x, test_y) == history["val_accuracy"][-1]
    assert not model.training  # evaluation left the model in eval mode
    assert all(s > 0 for s in history["epoch_seconds"])


def test_train_epoch_takes_a_dataloader_too(mnist_root):
    dataset = m.load_mnist(mnist_root, train=True)
    torch.manual_seed(0)
    model = m.build_model()
    optimizer = m.make_optimizer(model, lr=1e-2)
    losses = [m.train_epoch(model, DataLoader(dataset, batch_size=32, shuffle=True), optimizer) for _ in range(3)]
    assert losses[-1] < losses[0] and model.training


def test_predict_proba_and_confusion_matrix():
    model = m.build_model()
    probabilities = m.predict_proba(model, torch.randn(7, 784), batch_size=3)
    assert probabilities.shape == (7, 10) and torch.allclose(probabilities.sum(1), torch.ones(7))
    assert not probabilities.requires_grad
    counts = m.confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), num_classes=3)
    assert counts.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_save_reload_gives_identical_predictions_and_infers_the_widths(tmp_path):
    torch.manual_seed(0)
    model = m.build_model((64, 32))
    path = m.save_state_dict_atomic(model, tmp_path / "sub" / "net.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["net.pt"]  # no temporary file left
    reloaded = m.load_model(path)
    assert [layer.out_features for layer in reloaded if hasattr(layer, "out_features")] == [64, 32, 10]
    probe = torch.randn(9, 784)
    assert torch.equal(m.predict_proba(model, probe), m.predict_proba(reloaded, probe))
    assert not reloaded.training
    with pytest.raises(RuntimeError):  # wrong widths: load_state_dict is strict
        m.load_model(path, hidden=(128,))


def test_an_atomic_save_gets_the_permissions_of_a_plain_save(tmp_path):
    """Not tempfile.mkstemp's 0600, which the rename would keep: a server running as another user can read it."""
    previous = os.umask(0o022)  # the usual one: under umask 077 every new file is 0600 and this would prove nothing
    try:
        plain = tmp_path / "plain.pt"
        torch.save({}, plain)
        atomic = m.save_state_dict_atomic(m.build_model(), tmp_path / "atomic.pt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert stat.S_IMODE(atomic.stat().st_mode) == 0o644


@pytest.mark.skipif(os.name != "posix", reason="only POSIX can open and sync a folder")
def test_an_atomic_save_syncs_the_file_then_its_folder_after_the_rename(tmp_path, monkeypatch):
    """The file's bytes reach the disk before the rename, and the folder's entry for the new name after it: a crash
    then leaves the old file or the whole new one."""
    path, synced, fsync = tmp_path / "net.pt", [], os.fsync

    def recording_fsync(fd):
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), path.exists()))
        fsync(fd)

    monkeypatch.setattr(m.os, "fsync", recording_fsync)
    m.save_state_dict_atomic(m.build_model(), path)
    assert synced == [(False, False), (True, True)]  # (a folder?, renamed yet?): the file first, then the folder


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.pt"
    path.write_bytes(b"old weights")

    def broken_save(obj, file):
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(m.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        m.save_state_dict_atomic(m.build_model(), path)
    assert path.read_bytes() == b"old weights"
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt"]


def test_png_prediction_uses_the_training_preprocessing(mnist_root, tmp_path):
    dataset = m.load_mnist(mnist_root, train=False)
    Image.fromarray(dataset.data[5].numpy(), mode="L").save(tmp_path / "digit.png")
    assert torch.equal(m.load_png(tmp_path / "digit.png"), dataset[5][0].unsqueeze(0))
    Image.fromarray(dataset.data[5].numpy(), mode="L").convert("RGB").save(tmp_path / "rgb.png")
    assert torch.equal(m.load_png(tmp_path / "rgb.png"), dataset[5][0].unsqueeze(0))  # gray RGB -> same pixels
    Image.new("L", (32, 28)).save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match="(?s)32x28 pixels.*28x28"):
        m.load_png(tmp_path / "wide.png")


def test_random_shift_translates_each_image_within_the_limit():
    images = torch.randn(6, 784)
    assert torch.equal(m.random_shift(images, max_shift=0), images)
    shifted = m.random_shift(images, max_shift=2, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images.reshape(6, 1, 28, 28), (2, 2, 2, 2), value=-m.MEAN / m.STD)
    offsets = []
    for i in range(6):
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[i, 0, dy : dy + 28, dx : dx + 28].reshape(784), shifted[i])
        ]
        assert found, f"image {i} is not a shift of the original"
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # each image gets its own shift


def test_progress_bar_only_for_a_person_at_a_terminal(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert m.show_progress() is False
    monkeypatch.delenv("CI")
    assert m.show_progress() == sys.stderr.isatty()


def test_pick_device_falls_back_to_the_cpu():
    device = m.pick_device()
    if torch.accelerator.is_available():
        assert device == torch.accelerator.current_accelerator()
    else:
        assert device == torch.device("cpu")


def test_the_page_shows_what_the_page_says(page_run, printed):
    assert "identical to the per-image transform: True" in printed
    assert "identical predictions: True" in printed
    assert "parameters: 101770" in printed and "MnistNotFoundError: MNIST not found" in printed
    assert "ValueError: the image is 64x64 pixels" in printed
    names = page_run.names_after("preload-demo")
    assert torch.equal(names.one_by_one, names.all_at_once)


def test_command_line_help():
    result = subprocess.run(
        [sys.executable, "-m", "snippets.mnist", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--data-root" in result.stdout and "--epochs" in result.stdout


def test_command_line_run_on_the_fixture(mnist_root, tmp_path, capsys):
    results = m.main(
        [
            "--data-root",
            str(mnist_root),
            "--epochs",
            "2",
            "--val-size",
            "20",
            "--lr",
            "1e-2",
            "--batch-size",
            "32",
            "--save",
            str(tmp_path / "mnist_mlp.pt"),
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert "200 training and 100 test images" in out and "test accuracy:" in out
    assert results["reloaded_identical"] and (tmp_path / "mnist_mlp.pt").exists()
    assert results["test_accuracy"] >= 0.9 and len(results["history"]["train_loss"]) == 2
    assert results["png_prediction"] == 0  # test image 0 of the fixture is a 0
    assert sum(map(sum, results["confusion"])) == 100
    with pytest.raises(SystemExit):
        m.main(["--data-root", str(mnist_root), "--val-size", "200"])


RECORDS = sorted(RECORDS_DIR.glob("mnist*.json"))


def test_there_is_a_recorded_run():
    assert RECORDS, "no MNIST record: run python -m benchmarks.mnist --data-root data --record"


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.name)
def test_records_are_fresh(path):
    check_fresh(read_record(path.stem))


def test_the_record_meets_the_chapters_claims():
    results = read_record("mnist")["metrics"]
    chapter, speed, further = results["chapter"], results["speed"], results["further"]
    assert chapter["test_accuracy_mean"] >= 0.98 and len(chapter["runs"]) == 3
    assert sum(map(sum, chapter["confusion"])) == 10_000 == results["data"]["n_test"]
    assert all(p > q for p, q in zip(chapter["wrong"]["probability"], chapter["wrong"]["probability"][1:]) if p != q)
    assert all(t != p for t, p in zip(chapter["wrong"]["labels"], chapter["wrong"]["predicted"]))
    assert further["test_accuracy_mean"] >= 0.985
    assert all(run["train_seconds"] <= 30 for run in further["runs"])
    fast, standard = speed["fast"][0], speed["standard"][0]
    assert fast["batch_size"] == 128 and standard["train_epoch_seconds"] > fast["median_epoch_seconds"]
    assert abs(results["data"]["pixel_mean"] - m.MEAN) < 1e-4 and abs(results["data"]["pixel_std"] - m.STD) < 1e-4


REPORT = "benchmarks/reports/mnist.py"


def test_the_recorded_results_render():
    plt.close("all")
    _, outputs = run_sections(REPORT, list(snippet_sections(REPORT)))  # the page's hidden blocks, in page order
    out = "".join(outputs)
    assert "code hash" in out and "mean" in out and out.count('class="guide-record"') == 6
    assert len(plt.get_fignums()) >= 5  # every section's figures
    plt.close("all")


def test_the_speed_report_says_what_a_larger_batch_saved_from_the_record():
    """The page's batch-size paragraph reads its numbers off these lines (no cause is claimed that was not measured)."""
    plt.close("all")
    _, outputs = run_sections(REPORT, ["record", "look", "speed"])  # look imports what speed uses
    speed = read_record("mnist")["metrics"]["speed"]
    small, large = speed["fast"][0], speed["fast"][-1]
    assert (small["batch_size"], large["batch_size"]) == (128, 512)
    saved = small["median_epoch_seconds"] - large["median_epoch_seconds"]
    ratio = large["median_epoch_seconds"] / speed["floor_seconds"]
    line = f"batch 128 → 512: {469 - 118} fewer steps, {saved:.3f} s less per epoch, still {ratio:.1f}x the floor"
    assert line in outputs[2]
    plt.close("all")


def test_exercise_cross_entropy_is_nll_of_log_softmax_and_log_of_softmax_overflows(page_run):
    out = page_run.printed_by("exercise-loss")
    assert "log_softmax: 200.0" in out and "log(softmax): inf" in out
    names = page_run.names_after("exercise-loss")
    ce = torch.nn.functional.cross_entropy(names.logits, names.target)
    assert torch.allclose(ce, -names.logits.log_softmax(1)[0, 2])


def test_training_flops_are_counted_per_layer_without_the_pixels_gradient():
    rows = m.training_flops(m.build_model((128,)))
    assert [row["layer"] for row in rows] == ["784x128", "128x10"]
    first, last = rows
    assert first["forward"] == first["weight_grad"] == 2 * 784 * 128 and first["input_grad"] == 0
    assert last["forward"] == last["weight_grad"] == last["input_grad"] == 2 * 128 * 10
    per_image = sum(sum(v for k, v in row.items() if k != "layer") for row in rows)
    assert per_image == 409_088 and round(per_image * 60_000 / 1e9, 1) == 24.5  # the page's 24.5 GFLOP
    # the usual shortcut, 6 x parameters, overstates this network's work by half (the page says so)
    assert 1.45 < 6 * m.count_parameters(m.build_model((128,))) / per_image < 1.55


def test_the_recorded_floor_is_the_per_layer_count():
    speed = read_record("mnist")["metrics"]["speed"]
    per_image = sum(row["forward"] + row["weight_grad"] + row["input_grad"] for row in speed["layers"])
    assert speed["flops_per_image"] == per_image == 409_088
    assert speed["floor_seconds"] == pytest.approx(per_image * 60_000 / (max(speed["matmul_gflops"].values()) * 1e9))
    assert all(run["floor_ratio"] > 1 for run in speed["fast"])  # a true floor: no run beats it


def test_the_seed_option_leaves_the_validation_split_alone(mnist_root, tmp_path):
    def held_out(*options):
        run = m.main(
            [
                "--data-root",
                str(mnist_root),
                "--epochs",
                "1",
                "--val-size",
                "20",
                *options,
                "--save",
                str(tmp_path / "net.pt"),
                "--device",
                "cpu",
            ]
        )
        return run["val_index"]

    assert held_out("--seed", "0") == held_out("--seed", "1")
    assert held_out("--split-seed", "0") != held_out("--split-seed", "1")


def test_the_notebook_runs_top_to_bottom_the_scripts_cells_included(tmp_path):
    """Jupyter's "Run all" runs the cells the site's build skips too (tagged skip-execution): mnist.ipynb, every code
    cell, in a real kernel, on synthetic MNIST files in data/ (enough images for the default 5,000 held out), with
    every proxy pointing nowhere: the page's options find the files, and the script's cells train and save."""
    from nbclient import NotebookClient

    import site_tools.notebooks as notebooks

    write_synthetic_mnist(tmp_path / "data", train=6000, test=300)
    config = notebooks.load_site_config()
    page = (Path(config["docs_dir"]) / "mnist.md").read_text(encoding="utf-8")
    nb = notebooks.Converter.from_config(config).notebook("mnist.md", page)
    skipped = [cell for cell in nb.cells if notebooks.SKIP_TAG in cell.metadata.get("tags", [])]
    assert len(skipped) == 5  # the script's cells: data, preload, train, test, save
    nowhere = "http://127.0.0.1:9"  # the discard port: a download would fail at once
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND" and not k.startswith("PYTHON")}
    env.update(http_proxy=nowhere, https_proxy=nowhere, HTTP_PROXY=nowhere, HTTPS_PROXY=nowhere, CI="true")
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
        skip_cells_with_tag="run-every-cell",  # no cell has it: the kernel runs them all, as "Run all" does
    )
    client.execute(env=env)
    out = "".join(
        output.get("text", "") for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    )
    assert "6000 training and 300 test images" in out and "validation (5000, 784)" in out
    assert "epoch 6:" in out and "test accuracy:" in out
    assert "identical predictions: True" in out  # the page's save demo, after the script trained the model
    assert "the reloaded model gives identical predictions: True" in out
    assert "mnist_mlp.sample.png: predicted" in out and (tmp_path / "mnist_mlp.pt").exists()
