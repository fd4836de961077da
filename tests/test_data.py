"""docs/data.md: the digits written to disk and read back, and every claim the page makes about datasets,
transforms, splits, loaders and errors (worker processes: tests/test_workers.py).

The page's blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); the
module's definitions are imported for the tests that need fresh files."""

import contextlib
import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import page_html, snippet_sections, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import WeightedRandomSampler
from torchvision import transforms
from torchvision.datasets.folder import find_classes
from torchvision.transforms import v2

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


def test_the_csv_dataset_keeps_its_list_in_one_array_and_one_tensor(page):
    """Not a Python list of objects, which worker processes copy as they read it (docs/workers.md); the names as bytes,
    a quarter of the size of NumPy's text type."""
    assert isinstance(page.dataset.paths, np.ndarray) and page.dataset.paths.dtype.kind == "S"
    assert page.dataset.paths.nbytes * 4 == np.array([str(p, "ascii") for p in page.dataset.paths]).nbytes
    assert isinstance(page.dataset.labels, torch.Tensor) and page.dataset.labels.dtype == torch.int64
    assert page.dataset.labels.tolist() == load_digits().target.tolist()


def test_the_page_prints_what_it_says(printed):
    assert "files in images/3: 183" in printed
    assert "1797 items; item 3: (1, 8, 8) torch.float32 label 3" in printed
    assert "item 0: (3, 8, 8) label 0" in printed and "with Grayscale(): (1, 8, 8)" in printed


def test_image_folder_finds_the_classes_and_opens_images_as_rgb(page):
    assert page.folder.classes == [str(d) for d in range(10)] and len(page.folder) == 1797
    assert page.folder[0][0].shape == (1, 8, 8)  # the last one, with Grayscale()


def test_image_folder_sorts_numbered_folders_as_text(tmp_path):
    for name in ("2", "10", "02"):
        (tmp_path / name).mkdir()
    classes, class_to_idx = find_classes(tmp_path)
    assert classes == ["02", "10", "2"] and class_to_idx["10"] < class_to_idx["2"]


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
    again = m.stratified_split(page.dataset.labels, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    overall = page.dataset.labels.bincount(minlength=10).float()
    for index, fraction in zip(parts, [0.7, 0.15, 0.15]):
        per_class = page.dataset.labels[index].bincount(minlength=10).float()
        assert ((per_class - fraction * overall).abs() <= 1).all()  # each class within one image of its share
    assert [len(p) for p in page.parts] == [1258, 270, 269] and [len(p) for p in parts] == [1257, 270, 270]


def test_the_stratified_test_split_keeps_the_shares_better_than_random_split(page):
    overall = page.dataset.labels.bincount(minlength=10) / 1797

    def worst(index):
        return (page.dataset.labels[index].bincount(minlength=10) / len(index) - overall).abs().max()

    assert worst(page.test_index) < 0.01 < worst(torch.tensor(page.parts[2].indices))


def test_the_stratified_split_refuses_fractions_that_do_not_fit(page):
    with pytest.raises(ValueError):
        m.stratified_split(page.dataset.labels, seed=0, validation=0.6, test=0.6)


def test_normalisation_uses_the_training_split_only(page):
    paths = [page.dataset.paths[i].decode() for i in page.train_index.tolist()]
    train = torch.stack([page.to_tensor(Image.open(path)) for path in paths])
    assert page.mean == pytest.approx(train.mean().item(), abs=1e-6)
    assert page.std == pytest.approx(train.std().item(), abs=1e-6)
    assert abs(page.normed.mean().item()) < 1e-5 and abs(page.normed.std().item() - 1) < 1e-5


def test_augmentation_draws_new_parameters_and_repeats_with_the_seed(page):
    assert not torch.equal(page.versions[0], page.versions[1])
    torch.manual_seed(0)
    assert torch.equal(page.augment(page.original), page.versions[0])
    assert page.versions[0].shape == (1, 8, 8)


def test_random_erasing_writes_value_in_the_units_of_the_image():
    image = torch.full((1, 32, 32), 128, dtype=torch.uint8)
    torch.manual_seed(0)
    erased = v2.RandomErasing(p=1, value=1, scale=(0.2, 0.2))(image)
    assert erased.dtype == torch.uint8 and erased.min() == 1  # 1 of 255: a trace of ink
    floats = v2.RandomErasing(p=1, value=1, scale=(0.2, 0.2))(image / 255)
    assert floats.max() == 1.0  # full ink
    written = v2.RandomErasing(p=1, value="random", scale=(0.2, 0.2))(image)
    written = written[written != 128]
    assert written.numel() > 40 and len(written.unique()) <= 9  # "a few garbage values": normal draws as integers
    normalised = v2.RandomErasing(p=1, value="random", scale=(0.2, 0.2))(torch.zeros(1, 32, 32))
    assert len(normalised[normalised != 0].unique()) > 40  # on floats: a normal draw per pixel


def test_evaluation_items_are_the_same_on_every_read_and_training_items_are_not(page, printed):
    assert "validation item 0, read twice, identical: True" in printed
    assert "training item 0, read twice, identical: False" in printed
    assert page.val_set.dataset is page.test_set.dataset is not page.train_set.dataset
    for split in (page.val_set, page.test_set):
        assert split.dataset.transform is page.evaluate_transform
        for index in range(0, len(split), 7):
            assert torch.equal(split[index][0], split[index][0])
    assert page.train_set.dataset.transform is page.augment
    assert [page.train_set.indices, page.val_set.indices] == [page.train_index.tolist(), page.val_index.tolist()]


def test_a_random_transform_on_a_batch_moves_every_image_alike(page, printed):
    corners = [page.corner(image) for image in page.together]
    assert len(set(corners)) == 1
    assert len({page.corner(image) for image in page.apart}) > 1
    assert f"on the batch:   {corners}" in printed


def test_v1_agrees_with_v2_and_takes_batches_too(printed):
    assert "v1 and v2 agree to within 1e-6: True" in printed
    assert "v1 on a batch: (4, 1, 8, 8) moved alike: True" in printed


def test_v1_to_tensor_scales_8_bit_images_only():
    deep = Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.uint16))
    assert transforms.ToTensor()(deep).max() > 1  # 16 bits: not scaled
    assert transforms.ToTensor()(Image.fromarray(np.array([[0, 255]], dtype=np.uint8))).max() == 1


def test_images_of_any_size_come_out_the_same_size_and_16_bit_files_keep_their_range(printed):
    rows = re.findall(r"(\d)\.png: (\d+) x (\d+) -> torch.uint8 train \(1, 24, 24\), evaluate \(1, 24, 24\)", printed)
    assert [(w, h) for _n, w, h in rows] == [("40", "30"), ("64", "64"), ("23", "57")]
    assert "16-bit (I;16), convert('L'): [[  0 255 255 255]]" in printed
    assert "ToImage keeps torch.uint16\nToDtype(scale=True): tensor([0.0000, 0.0153, 0.4578, 1.0000])" in printed
    assert "transparent red, convert('L'): 76" in printed and "composited on white first:   255" in printed
    assert "ResNet18_Weights: [256] [224]" in printed and "mean [0.485, 0.456, 0.406]" in printed


def png_16_bit_rgb(path, values):
    """A 16-bit colour PNG written by hand (PIL cannot write one): ``values`` one row of (r, g, b)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + np.array(values, dtype=">u2").tobytes()
    header = struct.pack(">IIBBBBB", len(values), 1, 16, 2, 0, 0, 0)  # 16 bits, colour
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row)) + chunk(b"IEND", b"")
    )


def test_pil_reads_a_16_bit_colour_file_as_8_bits(tmp_path):
    """Why the page keeps 'ToImage keeps uint16' to grayscale files."""
    png_16_bit_rgb(tmp_path / "rgb16.png", [(0, 1000, 65535), (300, 30000, 40000)])
    with Image.open(tmp_path / "rgb16.png") as image:
        assert image.mode == "RGB"
        assert np.asarray(image).tolist() == [[[0, 3, 255], [1, 117, 156]]]  # the high bytes
        assert v2.ToImage()(image).dtype == torch.uint8
    from torchvision.io import decode_image

    with pytest.warns(DeprecationWarning, match="TorchCodec"):  # the page names it, and does not run it
        decoded = decode_image(str(tmp_path / "rgb16.png"))
    assert decoded.dtype == torch.uint16 and decoded.flatten().tolist() == [0, 300, 1000, 30000, 65535, 40000]


def test_the_sizes_block_runs_twice_as_a_notebook_cell_may(page):
    namespace = dict(vars(page))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(snippet_sections("data")["sizes"], namespace)
    assert "2.png: 23 x 57" in out.getvalue()


def test_the_evaluation_resize_is_deterministic_and_the_training_crop_is_not(page):
    image = Image.open(page.photos / "0.png").convert("L")
    assert torch.equal(page.evaluate_resize(image), page.evaluate_resize(image))
    torch.manual_seed(0)
    crops = [page.train_resize(image) for _ in range(4)]
    assert any(not torch.equal(crops[0], crop) for crop in crops[1:])


def test_the_loader_makes_seeded_batches_and_drops_the_last(printed):
    assert "1257 images -> 19 batches of 64" in printed and "same seed, same first batch: True" in printed
    assert "batch: (64, 1, 8, 8) torch.float32" in printed


def test_the_padded_batch_and_its_mask_are_right(page):
    padded, mask, targets = m.pad_collate(page.items[:3])
    words = ["tensor", "grad", "module"]
    assert padded.shape == (3, 6) and mask.dtype == torch.bool
    for row, word in enumerate(words):
        codes = [page.vocabulary[c] for c in word]
        assert padded[row, : len(word)].tolist() == codes and (padded[row, len(word) :] == 0).all()
        assert mask[row].tolist() == [True] * len(word) + [False] * (6 - len(word))
    assert targets.tolist() == [1, 0, 1] and targets.dtype == torch.int64  # class numbers, as a loss wants them
    assert 0 not in page.vocabulary.values()  # 0 means padding


def test_each_sequence_model_takes_the_padding_with_its_own_convention(page_run, printed):
    assert "attention paid to padding: 0.0" in printed
    assert "LSTM state after 'grad', padded batch = alone: True" in printed
    then = page_run.names_after("collate-models")  # the exercises rebind mask
    vectors, mask = then.vectors.detach(), then.mask
    # key_padding_mask: True means ignore; the page's mask (True: real) there would attend to the padding only
    _, wrong = then.attention(vectors, vectors, vectors, key_padding_mask=mask)
    assert wrong[1][:, :4].abs().max() == 0 and wrong[1][:, 4:].sum() > 0
    # scaled_dot_product_attention's boolean attn_mask: True takes part; the padded values then change nothing
    query, key, value = torch.randn(3, 3, 1, 6, 8).unbind(0)
    changed = value.clone()
    changed[~mask[:, None, :, None].expand_as(value)] = 100.0
    attend = mask[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attend)
    again = torch.nn.functional.scaled_dot_product_attention(query, key, changed, attn_mask=attend)
    assert torch.allclose(out, again)


def test_the_weighted_sampler_balances_a_rare_class_by_repetition(page, printed):
    assert page.counts[0] == 8 and page.counts[1:].min() > 100
    per_class = len(page.rare) / 10
    drawn = page.rare_labels[list(page.sampler)].bincount(minlength=10)  # another epoch of the same sampler
    assert drawn.min() > 0.6 * per_class and drawn.max() < 1.4 * per_class
    distinct = [int(x) for x in re.search(r"distinct items seen: \[(.*)\]", printed)[1].split(",")]
    assert distinct[0] == 8 and all(d < c for d, c in zip(distinct[1:], page.counts[1:].tolist()))


def test_a_weighted_random_sampler_takes_at_most_2_to_the_24_weights():
    with pytest.raises(RuntimeError, match="2\\^24"):
        list(WeightedRandomSampler(torch.ones(2**24 + 1), num_samples=1))


def test_bad_input_errors_name_the_file_or_the_item(printed):
    text = " ".join(printed.split())
    assert "FileNotFoundError: .../missing.csv:4: no file .../images/3/9999.png" in text
    assert "ValueError: .../label.csv:4: label '12' is not one of the 10 classes 0..9" in text
    assert "ValueError: .../header.csv:1: the header must name the columns file and label, not ['path'," in text
    assert "OSError: item 0: cannot read .../images/5/0005.png: cannot identify image file" in text
    assert "RuntimeError: stack expects each tensor to be equal size" in text
    assert "ValueError: item 2 (.../images/5/0006.png) has shape (1, 8, 7), not (1, 8, 8)" in text


@pytest.mark.parametrize("label", ["zero", "-1", "", "3.0"])
def test_a_label_that_is_not_a_class_number_is_reported_with_its_line(tmp_path, files, label):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"file,label\n{files.parent}/images/0/0000.png,0\n{files.parent}/images/0/0000.png,{label}\n")
    with pytest.raises(ValueError, match=f"bad.csv:3: label '{re.escape(label)}' is not one of the 10 classes"):
        m.CsvImageDataset(bad, num_classes=10)


def test_a_short_row_is_reported_with_its_line(tmp_path, files):
    bad = tmp_path / "short.csv"
    bad.write_text(f"file,label\n{files.parent}/images/0/0000.png\n")
    with pytest.raises(ValueError, match="short.csv:2: label ''"):
        m.CsvImageDataset(bad, num_classes=10)


def test_a_file_name_that_is_not_ascii_is_read_back(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "Ziffer-fünf.png")
    (tmp_path / "list.csv").write_text("file,label\nZiffer-fünf.png,5\n", encoding="utf-8")
    dataset = m.CsvImageDataset(tmp_path / "list.csv", num_classes=10, transform=np.asarray)
    image, label = dataset[0]
    assert image.shape == (8, 8) and label == 5


def test_check_files_false_reads_no_file_until_an_item_is_asked_for(tmp_path, monkeypatch):
    listed = tmp_path / "list.csv"
    listed.write_text("file,label\nnowhere.png,1\n")
    monkeypatch.setattr(Path, "is_file", lambda self: pytest.fail("a file was checked"))
    dataset = m.CsvImageDataset(listed, num_classes=10, check_files=False)
    monkeypatch.undo()
    with pytest.raises(OSError, match="item 0: cannot read .*nowhere.png"):
        dataset[0]


def test_exercises(page, printed):
    assert page.features.shape == (16, 64) and page.features.dtype == torch.float32
    assert page.labels.tolist()[:8] == list(range(8))
    assert torch.equal(page.TableDataset(page.table).features, torch.tensor(load_digits().data, dtype=torch.float32))
    lengths = [len(item[0]) for item in page.items[:4]]
    assert "lengths: " + str(sorted(lengths, reverse=True)) in printed
    assert page.drawn.bincount(minlength=10).tolist() == [50] * 10 and len(page.balanced) == 500


def test_the_page_renders_with_its_figure(built_site):
    html = page_html(built_site, "data")
    assert html.count('<figure class="guide-figure">') == 1
    assert "shard=True: 1797 items" in html and "Traceback" not in html
