"""docs/data.md: the digits written to disk and read back, and every claim the page makes about datasets,
transforms, splits, loaders, workers and errors.

The page's blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); the
module's definitions are imported for the tests that need fresh files."""

import ast
import time

import numpy as np
import pytest
import torch
from conftest import page_html, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader

import snippets.data as m


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return m.write_digit_files(tmp_path_factory.mktemp("digits"))


def test_the_files_are_the_scikit_learn_digits_exactly(files):
    digits = load_digits()
    rows = files.read_text().splitlines()
    assert rows[0] == "file,label" and len(rows) == 1 + 1797
    assert sorted(p.name for p in (files.parent / "images").iterdir()) == [str(d) for d in range(10)]
    for number in (0, 3, 1796):
        path, label = rows[1 + number].split(",")
        assert int(label) == digits.target[number] and path == f"images/{label}/{number:04d}.png"
        pixels = np.array(Image.open(files.parent / path))
        assert pixels.dtype == np.uint8 and pixels.shape == (8, 8)
        assert np.array_equal(pixels, (digits.images[number] * 255 / 16).round().astype(np.uint8))


def test_the_csv_dataset_reads_each_image_lazily_with_its_transform(files):
    seen = []
    dataset = m.CsvImageDataset(files, num_classes=10, transform=lambda image: seen.append(image) or "done")
    assert len(dataset) == 1797 and seen == []  # nothing read at construction
    assert dataset[42] == ("done", int(load_digits().target[42])) and len(seen) == 1
    assert seen[0].mode == "L" and seen[0].size == (8, 8)


def test_the_page_prints_what_it_says(printed):
    assert "files in images/3: 183" in printed
    assert "1797 items; item 3: (1, 8, 8) torch.float32 label 3" in printed
    assert "item 0: (3, 8, 8) label 0" in printed and "with Grayscale(): (1, 8, 8)" in printed


def test_image_folder_finds_the_classes_and_opens_images_as_rgb(page):
    assert page.folder.classes == [str(d) for d in range(10)] and len(page.folder) == 1797
    assert page.folder[0][0].shape == (1, 8, 8)  # the last one, with Grayscale()


def test_the_sharded_stream_yields_every_item_once_and_the_unsharded_twice(printed):
    assert "shard=True: 1797 items, 178 zeros" in printed
    assert "shard=False: 3594 items, 356 zeros" in printed


def test_the_stream_in_the_main_process_yields_everything(files):
    stream = m.CsvImageStream(files)
    labels = [label for _image, label in stream]
    assert labels == load_digits().target.tolist()


def test_splits_are_disjoint_complete_reproducible_and_stratified(page):
    parts = [page.train_index, page.val_index, page.test_index]
    joined = torch.cat(parts)
    assert len(joined) == 1797 and len(joined.unique()) == 1797
    again = m.stratified_split(page.all_labels, [0.7, 0.15, 0.15], seed=0)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    overall = page.all_labels.bincount(minlength=10).float()
    for index, fraction in zip(parts, [0.7, 0.15, 0.15]):
        per_class = page.all_labels[index].bincount(minlength=10).float()
        assert ((per_class - fraction * overall).abs() <= 1).all()  # each class within one image of its share
    assert [len(p) for p in page.parts] == [1258, 270, 269]


def test_normalisation_uses_the_training_split_only(page):
    train = [page.to_tensor(Image.open(page.dataset.items[i][0]).convert("L")) for i in page.train_index.tolist()]
    train = torch.stack(train)
    assert page.mean == pytest.approx(train.mean().item(), abs=1e-6)
    assert page.std == pytest.approx(train.std().item(), abs=1e-6)
    assert abs(page.normed.mean().item()) < 1e-5 and abs(page.normed.std().item() - 1) < 1e-5


def test_augmentation_draws_new_parameters_and_repeats_with_the_seed(page):
    assert not torch.equal(page.versions[0], page.versions[1])
    torch.manual_seed(0)
    assert torch.equal(page.augment(page.original), page.versions[0])
    assert page.versions[0].shape == (1, 8, 8)


def test_a_random_transform_on_a_batch_moves_every_image_alike(page, printed):
    corners = [page.corner(image) for image in page.together]
    assert len(set(corners)) == 1
    assert len({page.corner(image) for image in page.apart}) > 1
    assert f"on the batch:   {corners}" in printed


def test_v1_and_v2_agree(printed):
    assert "v1 and v2 agree to within 1e-6: True" in printed


def test_the_loader_makes_seeded_batches_and_drops_the_last(printed):
    assert "1258 images -> 19 batches of 64" in printed and "same seed, same first batch: True" in printed
    assert "batch: (64, 1, 8, 8) torch.float32" in printed


def test_the_padded_batch_and_its_mask_are_right(page):
    padded, mask, targets = m.pad_collate(page.items[:3])
    words = ["tensor", "grad", "module"]
    assert padded.shape == (3, 6) and mask.dtype == torch.bool
    for row, word in enumerate(words):
        codes = [page.vocabulary[c] for c in word]
        assert padded[row, : len(word)].tolist() == codes and (padded[row, len(word) :] == 0).all()
        assert mask[row].tolist() == [True] * len(word) + [False] * (6 - len(word))
    assert targets.tolist() == [True, False, True]
    assert 0 not in page.vocabulary.values()  # 0 means padding


def test_the_weighted_sampler_balances_a_rare_class(page):
    assert page.counts[0] < page.counts[1:].min() / 10
    per_class = len(page.rare) / 10
    drawn = page.rare_labels[list(page.sampler)].bincount(minlength=10)  # another epoch of the same sampler
    assert drawn.min() > 0.6 * per_class and drawn.max() < 1.4 * per_class


def test_workers_give_the_same_items_as_the_main_process(page):
    def ordered(workers):
        loader = DataLoader(page.dataset, batch_size=64, num_workers=workers)
        return torch.cat([images for images, _labels in loader])

    assert torch.equal(ordered(0), ordered(2))


def test_the_measured_timings_are_positive_and_the_preloaded_tensor_is_much_faster(page):
    timings = page.timings
    assert set(timings) == {"files, 0 workers", "files, 1 workers", "files, 2 workers", "preloaded tensor"}
    assert all(seconds > 0 for seconds in timings.values())
    assert timings["files, 0 workers"] > 100 * timings["preloaded tensor"]  # "hundreds of times slower"
    per_item = timings["files, 0 workers"] / len(page.dataset)
    assert 20e-6 < per_item < 2e-3  # "a fraction of a millisecond per item"


def test_the_worker_random_number_bug_and_its_fix(printed):
    draws = {}
    for line in printed.splitlines():
        name, _, values = line.partition(":")
        if name.strip() in ("0 workers", "2 workers", "seeded", "again"):
            draws[name.strip()] = ast.literal_eval(values.strip())
    assert len(set(draws["0 workers"])) == 8
    buggy = draws["2 workers"]
    assert buggy[0:2] == buggy[2:4] and buggy[4:6] == buggy[6:8]  # worker 0 and worker 1 drew the same numbers
    assert len(set(draws["seeded"])) == 8 and draws["seeded"] == draws["again"]


def test_the_spawn_guard_is_needed_and_sufficient(printed):
    assert "guarded.py: exit code 0\n  last line: [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]" in printed
    assert "unguarded.py: exit code 1" in printed and "bootstrapping phase" in printed


def test_bad_input_errors_name_the_file_or_the_item(printed):
    text = " ".join(printed.split())
    assert "FileNotFoundError: .../missing.csv:4: no file .../images/3/9999.png" in text
    assert "ValueError: .../label.csv:4: label 12 is not one of the 10 classes 0..9" in text
    assert "OSError: item 0: cannot read .../images/5/0005.png: cannot identify image file" in text
    assert "RuntimeError: stack expects each tensor to be equal size" in text
    assert "ValueError: batch item 1 has shape (1, 8, 7), item 0 has (1, 8, 8)" in text


def test_a_dead_worker_and_a_stuck_one_are_reported(printed):
    crashed = next(line for line in printed.splitlines() if line.startswith("Crashes:"))
    hung = next(line for line in printed.splitlines() if line.startswith("Hangs:"))
    assert crashed == "Crashes: DataLoader worker exited unexpectedly"
    assert hung == "Hangs: DataLoader timed out after 3 seconds"


def test_from_the_main_thread_a_dead_worker_is_reported_before_the_timeout(page):
    """The page's claim: in the main thread (where the DataLoader installs its SIGCHLD handler) a crash is noticed
    at once; a stuck worker only when the timeout runs out."""
    seconds = {}
    for dataset_class in (page.Crashes, page.Hangs):
        start = time.perf_counter()
        with pytest.raises(RuntimeError):
            list(DataLoader(dataset_class(), batch_size=2, num_workers=2, timeout=3))
        seconds[dataset_class.__name__] = time.perf_counter() - start
    assert seconds["Crashes"] < 3 <= seconds["Hangs"]  # the crash, before the timeout would have fired


def test_a_non_integer_label_is_reported_with_its_line(tmp_path, files):
    bad = tmp_path / "bad.csv"
    lines = files.read_text().splitlines()
    bad.write_text("\n".join([lines[0], lines[1].replace(",0", ",zero")]).replace("images/", f"{files.parent}/images/"))
    with pytest.raises(ValueError, match="zero"):
        m.CsvImageDataset(bad, num_classes=10)


def test_exercises(page, printed):
    assert page.features.shape == (16, 64) and page.features.dtype == torch.float32
    assert page.labels.tolist()[:8] == list(range(8))
    lengths = [len(item[0]) for item in page.items[:4]]
    assert "lengths: " + str(sorted(lengths, reverse=True)) in printed
    assert page.drawn.bincount(minlength=10).tolist() == [50] * 10 and len(page.balanced) == 500


def test_the_page_renders_with_its_figure(built_site):
    html = page_html(built_site, "data")
    assert html.count('<figure class="guide-figure">') == 1
    assert "shard=True: 1797 items" in html and "Traceback" not in html
