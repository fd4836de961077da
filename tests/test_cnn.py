"""docs/cnn.md: the convolution by hand, sizes, receptive fields, the CNN and its checks, augmentation, transfer
learning, and the recorded run on the real MNIST data against every number the page states.

The page's blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); the
recorded results are the report's hidden blocks (benchmarks/reports/cnn.py), run section by section.
"""

import contextlib
import io
import re
import sys

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    DOCS,
    check_chosen_on_validation,
    run_sections,
    snippet_sections,
    test_the_page_prints_what_its_build_shows,  # noqa: F401 (a test)
)
from PIL import Image
from torch import nn

import benchmarks.cnn as bench
import snippets.cnn as c
import snippets.mnist as m
from site_tools.records import check_fresh, read_record


@pytest.fixture(scope="module")
def record():
    return read_record("cnn")["metrics"]


def test_the_digits_look_like_mnist():
    images, labels = c.digits_as_mnist()
    assert images.shape == (1797, 1, 28, 28) and labels.shape == (1797,)
    black = -0.1307 / 0.3081
    border = torch.cat([images[:, :, :4].flatten(), images[..., -4:].flatten()])
    assert torch.allclose(border, torch.tensor(black))
    assert images.max() == pytest.approx((1 - 0.1307) / 0.3081, abs=0.05)  # full ink somewhere


def test_the_convolution_by_hand_is_f_conv2d():
    torch.manual_seed(0)
    for shape, kernel in [((28, 28), (3, 3)), ((9, 13), (2, 5)), ((5, 5), (5, 5))]:
        image, weights = torch.randn(shape), torch.randn(kernel)
        expected = F.conv2d(image[None, None], weights[None, None])[0, 0]
        assert torch.allclose(c.conv2d_by_hand(image, weights), expected, atol=1e-5)
    double = c.conv2d_by_hand(torch.randn(6, 6, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64))
    assert double.dtype == torch.float64  # the image's dtype (and device), not the default


def test_the_page_says_the_hand_convolution_matches(printed):
    assert "(28, 28) -> (26, 26)" in printed and "same as F.conv2d: True" in printed


@pytest.mark.parametrize("kernel", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("padding", [0, 1, 3])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_the_output_size_formula_is_what_conv2d_and_pooling_give(kernel, padding, stride, dilation):
    size = 28
    expected = c.output_size(size, kernel, padding, stride, dilation)
    x = torch.zeros(1, 1, size, size)
    assert nn.Conv2d(1, 1, kernel, stride, padding, dilation)(x).shape[-1] == expected
    if 2 * padding <= kernel:  # pooling allows at most half the kernel as padding
        assert nn.MaxPool2d(kernel, stride, padding, dilation)(x).shape[-1] == expected


def test_the_output_size_table_agrees_in_every_row(printed):
    rows = re.findall(r"->\s+(\d+)\s+\((\d+)\)", printed)
    assert len(rows) == 6 and all(a == b for a, b in rows)


def test_pooling_with_ceil_mode_rounds_up_as_the_page_says():
    x = torch.zeros(1, 1, 7, 7)
    assert nn.MaxPool2d(2)(x).shape[-1] == c.output_size(7, 2, stride=2) == 3
    assert nn.MaxPool2d(2, ceil_mode=True)(x).shape[-1] == 4


def test_receptive_fields_grow_as_the_page_says(printed):
    stack = [("conv", 5, 1), ("pool", 2, 2)] * 3
    assert [field for _, field in c.receptive_fields(stack)] == [5, 6, 14, 16, 32, 36]
    # checked against a real stack: the gradient of one central output reaches exactly that many pixels (seeded:
    # the gradient passes max pooling only at each window's maximum, and some draws reach only 13 rows)
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Conv2d(1, 1, 5), nn.MaxPool2d(2), nn.Conv2d(1, 1, 5))
    x = torch.randn(1, 1, 40, 40, requires_grad=True)
    out = layers(x)
    out[0, 0, 5, 5].backward()
    rows, cols = x.grad[0, 0].abs().gt(0).nonzero().unbind(1)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (14, 14)
    assert "after conv 5x5: each output sees 14 x 14 input pixels" in printed


def test_weight_sharing_numbers(printed):
    assert "Conv2d(1, 32, 3):        320 parameters,      451,584 FLOPs" in printed
    assert "19,694,080 parameters" in printed
    ratio = 19_694_080 / 320
    assert ratio > 60_000 and f"{ratio:,.0f}x the parameters, 87x the FLOPs" in printed  # "over 60,000", "nearly 90"
    dense = nn.Linear(784, 32 * 784)
    assert sum(p.numel() for p in dense.parameters()) == 19_694_080


def test_max_pooling_keeps_the_largest_of_each_square(printed):
    assert "tensor([[[[4., 5.]]]])" in printed and "after MaxPool2d(2): (8, 16, 14, 14)" in printed


def test_batch_norm_and_dropout_behave_as_described(printed):
    assert "train: output mean 0: True | std 1.00" in printed
    running = re.search(r"running mean after one batch: tensor\(\[(.*)\]\)", printed)[1]
    assert all(0.15 < float(v) < 0.25 for v in running.split(","))  # a tenth of the way to 2
    evaluated = float(re.search(r"eval: output mean (\S+)", printed)[1])
    assert evaluated > 0.5  # far from centred, as the page says
    train_drop = re.search(r"dropout, train: \[(.*)\]", printed)[1].split(", ")
    assert set(train_drop) == {"0.0", "2.0"}
    assert "dropout, eval:  [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]" in printed
    assert "running variance, 10% of the way to the unbiased one: True" in printed
    assert "learned per channel: scale (3,) and shift (3,)" in printed


def test_the_cnn_has_the_shapes_and_parameters_the_page_states(page, printed):
    model = c.build_cnn()
    assert sum(p.numel() for p in model.parameters()) == 28_986 and "28,986 parameters" in printed
    assert 28_986 * 3 < 101_770  # "less than a third of the MLP's"
    assert "logits: (4, 10) from (4, 784)" in printed
    assert "Sequential   -> (4, 32, 7, 7)" in printed
    wider = c.build_cnn((32, 64), dropout=0.2)
    assert wider(torch.zeros(2, 784)).shape == (2, 10) and wider[4].p == 0.2
    further = c.build_cnn(hidden=128, dropout=0.4)
    assert [type(x).__name__ for x in further[3:]] == ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]
    total = sum(p.numel() for p in further.parameters())
    assert total == 28_986 - 15_690 + 1568 * 128 + 128 + 1290
    assert 0.9 < sum(p.numel() for p in further[4].parameters()) / total < 0.95  # "nine tenths"


def test_the_flops_are_counted_per_layer(printed):
    rows = c.training_flops(c.build_cnn(), torch.zeros(1, 1, 28, 28))
    first, second, last = rows
    assert first["forward"] == 2 * 16 * 28 * 28 * 25 and first["input_grad"] == 0
    assert second["forward"] == second["weight_grad"] == second["input_grad"] == 2 * 32 * 14 * 14 * 16 * 25
    assert last["forward"] == 2 * 32 * 7 * 7 * 10
    per_image = sum(r["forward"] + r["weight_grad"] + r["input_grad"] for r in rows)
    assert round(per_image / 1e6, 1) == 16.4 and "per training image: 16.4 MFLOP" in printed
    assert "FlopCounterMode counts the same: True" in printed
    assert 38 < per_image / 409_088 < 42  # "40 times the MLP's 0.4"
    second_share = 3 * second["forward"] / per_image
    assert 0.88 < second_share < 0.95  # "nine tenths"
    # the count is the model's own: a wider network has more
    wider = c.training_flops(c.build_cnn((32, 64)), torch.zeros(1, 784))
    assert sum(r["forward"] for r in wider) > 3 * sum(r["forward"] for r in rows)


def test_the_flop_count_leaves_the_model_as_it_was():
    model = c.build_cnn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    c.training_flops(model, torch.randn(4, 784))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model[1][0]._forward_hooks


def test_wrong_shapes_are_refused_with_what_to_do():
    model = c.build_cnn().eval()
    for shape, hint in [
        ((2, 1, 32, 32), "resize it to 28 x 28"),
        ((2, 3, 28, 28), "convert it to one gray channel"),
        ((2, 28, 28), "no channel dimension: x.unsqueeze(1)"),
        ((1, 28, 28), "without its batch dimension: x.unsqueeze(0)"),
        ((2, 783), "resize"),
    ]:
        with pytest.raises(ValueError, match=re.escape(hint)):
            model(torch.zeros(shape))
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert model.eval()(torch.zeros(2, 784).t().contiguous().t()).shape == (2, 10)  # non-contiguous rows


def test_the_model_reads_no_values_in_forward_so_it_compiles_in_one_graph():
    explanation = torch._dynamo.explain(c.build_cnn().eval())(torch.randn(2, 784))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def test_check_digits_refuses_the_three_usual_preprocessing_mistakes(printed):
    images, _ = c.digits_as_mnist()
    assert c.check_digits(images) is images
    pixels = images[:3] * 0.3081 + 0.1307
    for bad, message in [
        (pixels * 255, "pixel values up to 255: divide by 255"),
        (pixels, "a background of 0.00, not -0.42"),
        ((1 - pixels - 0.1307) / 0.3081, "a white background"),
        (1 - pixels, "a white background"),  # inverted, not normalised
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            c.check_digits(bad)
    mixed = images[:3].clone()
    mixed[1] = pixels[1]  # one image of the batch preprocessed the wrong way
    with pytest.raises(ValueError, match="a background of 0.00"):
        c.check_digits(mixed)
    assert "MNIST-like digits pass: True" in printed


def test_checkpoints_reload_and_refuse_another_network(tmp_path, printed):
    torch.manual_seed(1)
    model = c.build_cnn().eval()
    m.save_state_dict_atomic(model, tmp_path / "cnn.pt")
    reloaded = c.load_cnn(tmp_path / "cnn.pt")
    x = torch.randn(5, 784)
    assert not reloaded.training and torch.equal(reloaded(x), model(x))
    torch.save(m.build_model().state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(ValueError, match='not a checkpoint of this CNN: .*Missing key.*"1.0.weight".*Unexpected'):
        c.load_cnn(tmp_path / "mlp.pt")
    torch.save(c.build_cnn((32, 64)).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match=r"size mismatch for 1.0.weight: .*\[32, 1, 5, 5\]"):
        c.load_cnn(tmp_path / "wide.pt")
    assert isinstance(c.load_cnn(tmp_path / "wide.pt", channels=(32, 64)), nn.Sequential)
    assert "reloaded, same predictions: True" in printed and printed.count("ValueError:") == 7
    assert "\t" not in printed  # the strict loader's message, on one line


def test_the_png_block_classifies_a_digit_file(tmp_path, monkeypatch):
    """The page's PNG block, run as shown with the MNIST chapter's module importable as ``mnist``."""
    source = (DOCS / "cnn.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(from mnist import load_png\n.*?)```", source, re.S)[1]
    images, labels = c.digits_as_mnist()
    torch.manual_seed(0)
    model = c.build_cnn()
    c.train_full_batch(model, images[:100], labels[:100], [(model.parameters(), 3e-3)], steps=10)
    m.save_state_dict_atomic(model, tmp_path / "cnn.pt")
    pixels = (images[500, 0] * 0.3081 + 0.1307).mul(255).round().clamp(0, 255).to(torch.uint8)
    Image.fromarray(pixels.numpy()).convert("RGB").save(tmp_path / "digit.png")  # colour: converted to gray
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "mnist", m)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(block, {"load_cnn": c.load_cnn, "check_digits": c.check_digits, "torch": torch})
    # the file, read back through load_png, is classified as the tensor it was made from
    with torch.inference_mode():
        expected = model.eval()(images[500:501]).softmax(1)[0]
    shown = re.fullmatch(r"digit\.png: a (\d) \(probability (\d\.\d\d)\)\n", out.getvalue())
    assert int(shown[1]) == expected.argmax() and abs(float(shown[2]) - expected.max()) < 0.02
    Image.fromarray(255 - pixels.numpy()).save(tmp_path / "digit.png")  # black on white
    with pytest.raises(ValueError, match="a white background"):
        exec(block, {"load_cnn": c.load_cnn, "check_digits": c.check_digits, "torch": torch})
    Image.fromarray(pixels.numpy()).resize((32, 32)).save(tmp_path / "digit.png")
    with pytest.raises(ValueError, match="Crop and resize it to 28x28"):
        exec(block, {"load_cnn": c.load_cnn, "check_digits": c.check_digits, "torch": torch})


def test_random_affine_moves_each_image_differently_and_keeps_the_background_black(printed):
    images, _ = c.digits_as_mnist()
    batch = images[:1].repeat(16, 1, 1, 1)
    moved = c.random_affine(batch, generator=torch.Generator().manual_seed(0))
    assert moved.shape == batch.shape
    assert len({tuple(x.flatten().tolist()) for x in moved}) == 16  # one draw per image
    assert torch.isclose(moved.amin(), torch.tensor(c.BLACK)) and moved.amax() <= images.amax() + 1e-4
    flat = c.random_affine(images[:4].reshape(4, 784), degrees=0, shift=0, scale=(1, 1))
    assert flat.shape == (4, 784) and torch.allclose(flat, images[:4].reshape(4, 784), atol=1e-5)  # identity
    again = c.random_affine(batch, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, moved)  # seeded: the same draws
    assert "a black image stays black: True" in printed
    # without the shift to black, what comes in from outside would be 0, a gray
    blank = torch.full((2, 1, 28, 28), c.BLACK)
    grid = F.affine_grid(torch.tensor([[[1.0, 0, 0.5], [0, 1, 0]]] * 2), [2, 1, 28, 28], align_corners=False)
    assert F.grid_sample(blank, grid, align_corners=False).amax() == 0  # the trap random_affine avoids


def test_the_residual_block_and_the_pooled_head_are_resnet18s(page, printed):
    assert "BasicBlock(64, 128, stride=2) equals resnet18.layer2[0]: True" in printed
    for stage, shape in [
        ("conv1", (1, 64, 112, 112)),
        ("maxpool", (1, 64, 56, 56)),
        ("layer1", (1, 64, 56, 56)),
        ("layer2", (1, 128, 28, 28)),
        ("layer3", (1, 256, 14, 14)),
        ("layer4", (1, 512, 7, 7)),
    ]:
        assert f"{stage:8} -> {shape}" in printed
    assert "pooled_head equals avgpool + fc: True" in printed and "160 x 160 in: (1, 1000)" in printed
    default = float(re.search(r"zero_init_residual=False: \|f\(x\)\| / \|x\| = ([\d.]+)", printed)[1])
    assert default >= 1.0 and "zero_init_residual=True: |f(x)| / |x| = 0.0" in printed  # "as large as the input"
    # a block that keeps the shape has no shortcut convolution, and its output is relu(f(x) + x)
    same = c.BasicBlock(8, 8).eval()
    assert same.downsample is None
    with torch.no_grad():
        nn.init.zeros_(same.bn2.weight)  # f(x) = 0 (plus the shift, zeroed too): the block passes x through relu
        nn.init.zeros_(same.bn2.bias)
        x = torch.randn(2, 8, 5, 5)
        assert torch.equal(same(x), x.relu())
    assert c.pooled_head(32, 10)(torch.randn(3, 32, 9, 11)).shape == (3, 10)  # any map size


def test_the_resnet_block_freezes_the_backbone_then_fine_tunes_slowly(page, printed):
    assert "trainable: 5,130 of 11,181,642" in printed and "gradients only in: {'fc'}" in printed
    assert "learning rates: [1e-05, 0.001]" in printed
    assert "crop_size=[224]" in printed and "resize_size=[256]" in printed
    assert page.model.fc.out_features == 10 and all(p.requires_grad for p in page.model.parameters())
    names = [type(t).__name__ for t in page.augment.transforms]
    assert names == ["ToImage", "ToDtype", "RandomResizedCrop", "RandomHorizontalFlip", "Normalize"]
    assert page.augment.transforms[-1].mean == page.preprocess.mean and page.batch.shape == (2, 3, 224, 224)


def test_batch_norm_when_fine_tuning(page, printed):
    assert "a forward pass in train mode moved the running mean: True" in printed
    assert "batch of 2, train mode, digit 0's logits change with its partner: True" in printed
    assert "batch norm frozen, they do not: True" in printed
    assert "FrozenBatchNorm2d, train mode = BatchNorm2d, eval mode: True" in printed
    assert "parameters: 11,679,912 of 11,689,512" in printed
    # freeze_batch_norm leaves the other layers training, and a training step leaves the statistics alone
    model = c.freeze_batch_norm(c.build_cnn().train())
    norm = model[1][1]
    before = norm.running_mean.clone()
    assert model[1][0].training and not norm.training and not norm.weight.requires_grad
    model(torch.randn(8, 784)).sum().backward()
    assert torch.equal(norm.running_mean, before) and model[1][0].weight.grad is not None


def test_transfer_methods_train_what_they_say():
    images, labels = c.digits_as_mnist()
    x, y = images[:50], labels[:50]
    torch.manual_seed(0)
    pretrained = c.build_cnn().eval()
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}

    frozen = c.transfer(pretrained, "frozen", x, y, lr=3e-3, steps=5)
    changed = {k for k, v in frozen.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"5.weight", "5.bias"} and not frozen.training  # only its new head learns

    tuned = c.transfer(pretrained, "fine-tune, one rate", x, y, lr=1e-3, steps=3)
    assert not torch.equal(tuned[1][0].weight, pretrained[1][0].weight)
    assert all(torch.equal(before[k], v) for k, v in pretrained.state_dict().items())  # the original is untouched

    two_phase = c.transfer(pretrained, "head, then all", x, y, lr=3e-3, steps=4)
    assert not torch.equal(two_phase[1][0].weight, pretrained[1][0].weight)
    scratch = c.transfer(pretrained, "scratch", x, y, lr=3e-3, steps=2, seed=1)
    again = c.transfer(pretrained, "scratch", x, y, lr=3e-3, steps=2, seed=1)
    assert torch.equal(scratch[1][0].weight, again[1][0].weight)  # the seed decides the new weights
    with pytest.raises(ValueError, match="method 'finetune': use one of"):
        c.transfer(pretrained, "finetune", x, y, lr=1e-3)


def test_the_linear_probe_computes_the_features_once(monkeypatch):
    images, labels = c.digits_as_mnist()
    pretrained = c.build_cnn().eval()
    forwards = []
    original = c.DigitImages.forward
    monkeypatch.setattr(c.DigitImages, "forward", lambda self, x: forwards.append(len(x)) or original(self, x))
    model = c.transfer(pretrained, "frozen", images[:40], labels[:40], lr=3e-3, steps=20)
    assert forwards == [40]  # one pass over the 40 images for 20 steps
    forwards.clear()
    c.transfer(pretrained, "head, then all", images[:40], labels[:40], lr=3e-3, steps=20)
    assert forwards == [40] + [40] * 10  # the features once for the head's 10 steps, then 10 full steps
    assert model(images[:2]).shape == (2, 10)


def test_head_then_all_uses_a_ten_times_smaller_rate_for_the_pretrained_layers(monkeypatch):
    seen = []
    real = c.train_full_batch

    def spy(model, images, labels, groups, steps, frozen_norm=False):
        groups = [(list(params), lr) for params, lr in groups]
        seen.append(([len(params) for params, _ in groups], [lr for _, lr in groups], steps, frozen_norm))
        return real(model, images, labels, groups, steps, frozen_norm=frozen_norm)

    monkeypatch.setattr(c, "train_full_batch", spy)
    images, labels = c.digits_as_mnist()
    pretrained = c.build_cnn()
    model = c.transfer(pretrained, "head, then all", images[:20], labels[:20], lr=3e-3, steps=6)
    (head_sizes, head_rates, head_steps, head_frozen), (sizes, rates, steps, frozen) = seen
    assert head_sizes == [2] and head_rates == [3e-3] and head_steps == 3 and not head_frozen
    assert rates == pytest.approx([3e-4, 3e-3]) and sizes[1] == 2 and steps == 3 and frozen
    norms = [(old, new) for old, new in zip(pretrained.modules(), model.modules()) if isinstance(new, nn.BatchNorm2d)]
    assert norms and all(torch.equal(old.running_mean, new.running_mean) for old, new in norms)  # kept, not updated
    assert all(torch.equal(old.weight, new.weight) for old, new in norms)


def test_exercise_solutions(printed):
    assert "by the formula: 6 | by running it: 6" in printed
    standard, separable = re.findall(r"(\d[\d,]*) parameters, output \(1, 64, 14, 14\)", printed)
    ratio = int(standard.replace(",", "")) / int(separable.replace(",", ""))
    assert 7 < ratio < 8.5  # "about 8 times fewer"


# the recorded run on the real data: python -m benchmarks.cnn --data-root data --record


def test_the_record_is_fresh():
    check_fresh(read_record("cnn"))


def test_the_chapters_recipe_is_chosen_on_validation_within_a_minute(record):
    chapter = record["chapter"]
    check_chosen_on_validation(chapter, 60)
    assert [t["name"] for t in chapter["candidates"]] == list(bench.CHAPTER_CANDIDATES)
    assert chapter["config"]["channels"] == [16, 32] and chapter["parameters"] == 28_986
    config = chapter["config"]  # "the higher peak learning rate, 8e-3, with the chapter's augmentation and ..."
    assert config["max_lr"] == 8e-3 and config["augment"] and config["label_smoothing"] == 0.1
    assert min(round(10_000 * v) for v in chapter["test"]["values"]) >= 9_930  # "all reach at least 99.3%"
    validations = [t["validation"] for t in chapter["candidates"]]
    assert max(validations) - min(validations) < 0.0015  # "within about a tenth of a point of one another"
    seven = next(t for t in chapter["candidates"] if t["name"] == "the same, 7 epochs")
    assert not seven["within_time_limit"] and seven["validation"] == max(validations)  # "not eligible, although ..."
    assert all(run["train_seconds"] < 40 for run in chapter["candidates"][0]["runs"])  # "first runs took 37 s"
    assert max(run["train_seconds"] for t in chapter["candidates"] for run in t["runs"]) > 80  # "more than 80 s"
    assert record["threads"] == 2 and record["split"] == {"train": 55_000, "validation": 5_000}


def test_going_further_is_chosen_on_validation_within_five_minutes(record):
    further = record["further"]
    check_chosen_on_validation(further, 300)
    assert [t["name"] for t in further["candidates"]] == list(bench.FURTHER_CANDIDATES)
    assert further["config"]["hidden"] in (0, 128)
    validation = {t["name"]: t["validation"] for t in further["candidates"]}
    recipe = validation["hidden layer, dropout, augmentation"]
    assert recipe - validation["without the hidden layer"] > 0.001  # "adds more than that, about two tenths"
    assert 0 < recipe - validation["without augmentation"] < 0.001  # "add less than a tenth"
    assert 0 < validation["the same, 20 epochs"] - recipe < 0.001
    values = [round(10_000 * v) for v in further["test"]["values"]]
    assert sum(values) / 5 >= 9_950 and min(values) < 9_950  # "99.5% on average ... though not every one"


def test_the_floor_is_the_per_layer_count_and_no_run_beats_it(record):
    speed = record["speed"]
    per_image = sum(row["forward"] + row["weight_grad"] + row["input_grad"] for row in speed["layers"])
    assert (
        speed["flops_per_image"]
        == per_image
        == sum(
            r["forward"] + r["weight_grad"] + r["input_grad"]
            for r in c.training_flops(c.build_cnn(), torch.zeros(1, 784))
        )
    )
    assert speed["floor_seconds"] == pytest.approx(per_image * 55_000 / (speed["conv_gflops"] * 1e9))
    assert record["chapter"]["floor_ratio"] > 1  # "the training takes longer"


def test_channels_last_is_faster_here_as_the_page_says(record):
    steps = record["speed"]["layout_step_seconds"]
    assert steps["channels_last"] < steps["contiguous"]


def test_the_analysis_is_consistent(record):
    analysis = record["chapter"]["analysis"]
    counts = torch.tensor(analysis["confusion"])
    assert counts.sum() == 10_000
    wrong = analysis["wrong"]
    assert wrong["count"] == 10_000 - counts.trace().item()
    assert round(10_000 * (1 - record["chapter"]["runs"][0]["test"])) == wrong["count"]  # the first test run's model
    assert all(t != p for t, p in zip(wrong["labels"], wrong["predicted"]))
    assert wrong["probability"] == sorted(wrong["probability"], reverse=True)
    assert len(analysis["filters"]) == 16 and len(analysis["maps"]) == 16


def test_the_cnn_trained_like_the_mlp_as_the_page_says(record):
    like = record["like_the_mlp"]
    assert len(like["runs"]) == 5 and like["config"]["augment"] is None and like["config"]["epochs"] == 6
    mlp = read_record("mnist")["metrics"]["chapter"]["test_accuracy_mean"]
    assert (1 - like["test"]["mean"]) / (1 - mlp) < 0.6  # "a fraction of the MLP's mistakes"

    def gap(runs):
        return sum(run["train_accuracy"] - run["validation"] for run in runs) / len(runs)

    assert gap(like["runs"]) > 0  # "more accurate on its training digits than on the held-out ones"
    # "augmentation narrows that gap": the report's pair, two candidates that differ in augmentation only
    tried = record["chapter"]["candidates"]
    plain = next(t for t in tried if not t["config"]["augment"])
    augmented = [t for t in tried if t["config"]["augment"] and {**t["config"], "augment": None} == plain["config"]]
    assert len(augmented) == 1 and gap(plain["runs"]) > 0
    assert gap(augmented[0]["runs"]) < gap(plain["runs"])


def test_the_transfer_table_is_complete_and_its_rates_chosen_on_validation(record):
    transfer = record["transfer"]
    config = transfer["config"]
    assert config["methods"] == list(c.METHODS) and len(config["seeds"]) == 5
    assert set(transfer["results"]) == {f"{m}/{n}" for m in config["methods"] for n in config["per_class"]}
    assert all(len(v) == 5 and all(0 <= a <= 1 for a in v) for v in transfer["results"].values())
    for method, tried in transfer["choice"].items():
        assert transfer["learning_rates"][method] == float(max(tried, key=lambda lr: sum(tried[lr])))


def test_transfer_helps_most_with_the_fewest_labels_as_the_page_says(record):
    results = record["transfer"]["results"]

    def mean(method, n):
        return sum(results[f"{method}/{n}"]) / len(results[f"{method}/{n}"])

    def gap(n):
        return max(mean(method, n) for method in c.METHODS[:3]) - mean("scratch", n)

    for n in (5, 10):  # "worth two to three points over training the same network from scratch"
        assert 0.02 < mean("frozen", n) - mean("scratch", n) < 0.035
        best_tuned = max(mean("fine-tune, one rate", n), mean("head, then all", n))
        assert best_tuned - mean("frozen", n) < 0.005  # "within half a point of fine-tuning every layer"
        assert mean("head, then all", n) < mean("fine-tune, one rate", n)  # "a little below it with 5 and 10"
    for n in (5, 10, 50):  # "within a point of it at every size"
        assert abs(mean("head, then all", n) - mean("fine-tune, one rate", n)) < 0.01
    assert gap(50) < gap(5)  # "with 50 per class the gap shrinks"


REPORT = "benchmarks/reports/cnn.py"


def test_the_recorded_results_render():
    plt.close("all")
    names, outputs = run_sections(REPORT, list(snippet_sections(REPORT)))  # the page's hidden blocks, in page order
    out = "".join(outputs)
    assert "code hash" in out and out.count('class="guide-record"') == 5
    assert "x faster" in out and "the runs took" in out and "mean at least 99.3%" in out
    assert len(plt.get_fignums()) >= 4 and names["further"]  # every section's figures
    plt.close("all")
