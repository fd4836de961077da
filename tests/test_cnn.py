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
    run_sections,
    snippet_sections,
    test_the_page_prints_what_its_build_shows,  # noqa: F401 (a test)
)
from PIL import Image
from torch import nn

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


def test_wrong_images_are_refused_with_what_to_do():
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
    with pytest.raises(ValueError, match="pixel values up to 255: normalise"):
        model(torch.full((2, 784), 255.0))
    model.train()(torch.full((2, 784), 255.0))  # not checked while training: no cost per step
    assert model.eval()(torch.zeros(2, 784).t().contiguous().t()).shape == (2, 10)  # non-contiguous rows


def test_checkpoints_reload_and_refuse_another_network(tmp_path, printed):
    torch.manual_seed(1)
    model = c.build_cnn().eval()
    m.save_state_dict_atomic(model, tmp_path / "cnn.pt")
    reloaded = c.load_cnn(tmp_path / "cnn.pt")
    x = torch.randn(5, 784)
    assert not reloaded.training and torch.equal(reloaded(x), model(x))
    torch.save(m.build_model().state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(ValueError, match="does not hold this CNN's weights: 14 tensors missing"):
        c.load_cnn(tmp_path / "mlp.pt")
    torch.save(c.build_cnn((32, 64)).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="0 unexpected .* of another shape"):
        c.load_cnn(tmp_path / "wide.pt")
    assert isinstance(c.load_cnn(tmp_path / "wide.pt", channels=(32, 64)), nn.Sequential)
    assert "reloaded, same predictions: True" in printed and printed.count("ValueError:") == 5


def test_the_png_block_classifies_a_digit_file(tmp_path, monkeypatch):
    """The page's PNG block, run as shown with the MNIST chapter's module importable as ``mnist``."""
    source = (DOCS / "cnn.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(from mnist import load_png\n.*?)```", source, re.S)[1]
    images, labels = c.digits_as_mnist()
    torch.manual_seed(0)
    model = c.build_cnn()
    c.train_few(model, images[:300], labels[:300], "fine-tune", steps=40, lr=3e-3)
    m.save_state_dict_atomic(model, tmp_path / "cnn.pt")
    pixels = (images[500, 0] * 0.3081 + 0.1307).mul(255).round().clamp(0, 255).to(torch.uint8)
    Image.fromarray(pixels.numpy()).convert("RGB").save(tmp_path / "digit.png")  # colour: converted to gray
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "mnist", m)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(block, {"load_cnn": c.load_cnn, "torch": torch})
    # the file, read back through load_png, is classified as the tensor it was made from
    with torch.inference_mode():
        expected = model.eval()(images[500:501]).softmax(1)[0]
    shown = re.fullmatch(r"digit\.png: a (\d) \(probability (\d\.\d\d)\)\n", out.getvalue())
    assert int(shown[1]) == expected.argmax() and abs(float(shown[2]) - expected.max()) < 0.02
    Image.fromarray(pixels.numpy()).resize((32, 32)).save(tmp_path / "digit.png")
    with pytest.raises(ValueError, match="Crop and resize it to 28x28"):
        exec(block, {"load_cnn": c.load_cnn, "torch": torch})


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


def test_the_resnet_block_freezes_the_backbone_then_fine_tunes_slowly(page, printed):
    assert "trainable: 5,130 of 11,181,642" in printed and "gradients only in: {'fc'}" in printed
    assert "learning rates: [1e-05, 0.001]" in printed
    assert "crop_size=[224]" in printed and "resize_size=[256]" in printed
    assert page.model.fc.out_features == 10 and all(p.requires_grad for p in page.model.parameters())


def test_adapt_prepares_each_transfer_method():
    pretrained = c.build_cnn()
    frozen, lr = c.adapt(pretrained, "frozen")
    assert [n for n, p in frozen.named_parameters() if p.requires_grad] == ["5.weight", "5.bias"] and lr == 3e-3
    assert torch.equal(frozen[1][0].weight, pretrained[1][0].weight)
    assert frozen[1][0].weight is not pretrained[1][0].weight  # a copy
    tuned, lr = c.adapt(pretrained, "fine-tune")
    assert all(p.requires_grad for p in tuned.parameters()) and lr == 1e-3
    assert not torch.equal(tuned[-1].weight, pretrained[-1].weight)  # a new head
    scratch, _ = c.adapt(pretrained, "scratch")
    assert not torch.equal(scratch[1][0].weight, pretrained[1][0].weight)
    torch.manual_seed(99)  # whatever ran before, the seed decides the new weights
    again, _ = c.adapt(pretrained, "scratch")
    assert torch.equal(again[1][0].weight, scratch[1][0].weight)
    head_a, _ = c.adapt(pretrained, "frozen", seed=1)
    head_b, _ = c.adapt(pretrained, "frozen", seed=2)
    assert not torch.equal(head_a[-1].weight, head_b[-1].weight)


def test_training_a_frozen_model_changes_only_its_head_and_keeps_batch_norm_statistics():
    images, labels = c.digits_as_mnist()
    pretrained = c.build_cnn()
    model, lr = c.adapt(pretrained, "frozen")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    c.train_few(model, images[:50], labels[:50], "frozen", steps=3, lr=lr)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"5.weight", "5.bias"} and not model.training


def test_exercise_solutions(printed):
    assert "by the formula: 6 | by running it: 6" in printed
    standard, separable = re.findall(r"(\d[\d,]*) parameters, output \(1, 64, 14, 14\)", printed)
    ratio = int(standard.replace(",", "")) / int(separable.replace(",", ""))
    assert 7 < ratio < 8.5  # "about 8 times fewer"


# the recorded run on the real data: python -m benchmarks.cnn --data-root data --record


def test_the_record_is_fresh():
    check_fresh(read_record("cnn"))


def test_the_chapters_cnn_reaches_99_3_percent_in_a_minute(record):
    chapter = record["chapter"]
    assert len(chapter["runs"]) == 3 and chapter["mean"] >= 0.993
    assert all(run["train_seconds"] <= 60 for run in chapter["runs"])
    assert chapter["config"]["channels"] == [16, 32] and chapter["parameters"] == 28_986
    assert record["threads"] == 2  # the 2 cores


def test_going_further_reaches_99_5_percent_in_five_minutes(record):
    further = record["further"]
    assert len(further["runs"]) == 3 and further["mean"] >= 0.995
    assert all(run["train_seconds"] <= 300 for run in further["runs"])
    assert set(record["ablations"]) == {"without augmentation", "without the hidden layer"}
    seed0 = further["runs"][0]["test_accuracy"]
    for ablation in record["ablations"].values():  # "each costs about two tenths of a point; both are needed"
        accuracy = ablation["runs"][0]["test_accuracy"]
        assert 0.001 < seed0 - accuracy < 0.003 and accuracy < 0.995
    assert further["config"]["hidden"] == 128 and further["config"]["epochs"] == 15
    # "the same 15 epochs without the hidden layer end where the chapter's 5-epoch recipe ends"
    no_hidden = record["ablations"]["without the hidden layer"]["runs"][0]["test_accuracy"]
    assert abs(no_hidden - record["chapter"]["mean"]) < 0.001 and record["chapter"]["config"]["epochs"] == 5


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
    assert speed["floor_seconds"] == pytest.approx(per_image * 60_000 / (speed["conv_gflops"] * 1e9))
    assert 1.5 < record["chapter"]["floor_ratio"] < 2.5  # "about twice as long"
    mlp_ratio = min(run["floor_ratio"] for run in read_record("mnist")["metrics"]["speed"]["fast"])
    assert mlp_ratio > record["chapter"]["floor_ratio"]  # "much further from its floor"


def test_channels_last_is_faster_here_as_the_page_says(record):
    steps = record["speed"]["layout_step_seconds"]
    assert steps["channels_last"] < steps["contiguous"]


def test_the_analysis_is_consistent(record):
    analysis = record["chapter"]["analysis"]
    counts = torch.tensor(analysis["confusion"])
    assert counts.sum() == 10_000
    wrong = analysis["wrong"]
    assert wrong["count"] == 10_000 - counts.trace().item()
    assert all(t != p for t, p in zip(wrong["labels"], wrong["predicted"]))
    assert wrong["probability"] == sorted(wrong["probability"], reverse=True)
    assert len(analysis["filters"]) == 16 and len(analysis["maps"]) == 16
    # "roughly a third of the MLP's mistakes"
    mlp = read_record("mnist")["metrics"]["chapter"]["test_accuracy_mean"]
    assert 0.2 < (1 - record["chapter"]["mean"]) / (1 - mlp) < 0.45


def test_the_transfer_table_is_complete(record):
    transfer = record["transfer"]
    config = transfer["config"]
    assert set(transfer["results"]) == {f"{m}/{n}" for m in config["methods"] for n in config["per_class"]}
    assert all(len(v) == 3 and all(0 <= a <= 1 for a in v) for v in transfer["results"].values())


def test_transfer_helps_most_with_the_fewest_labels_as_the_page_says(record):
    results = record["transfer"]["results"]

    def mean(method, n):
        return sum(results[f"{method}/{n}"]) / 3

    for n in (5, 10):  # "about 3 points or more" with 5 or 10 labelled digits per class
        for method in ("frozen", "fine-tune"):
            assert 0.025 < mean(method, n) - mean("scratch", n) < 0.05  # "about 3 points or more"
        assert 0 <= mean("fine-tune", n) - mean("frozen", n) < 0.01  # "almost as well"
    for method in ("frozen", "fine-tune"):  # with 50 per class "the gap shrinks to about a point"
        assert 0.005 < mean(method, 50) - mean("scratch", 50) < 0.015


REPORT = "benchmarks/reports/cnn.py"


def test_the_recorded_results_render():
    plt.close("all")
    names, outputs = run_sections(REPORT, list(snippet_sections(REPORT)))  # the page's hidden blocks, in page order
    out = "".join(outputs)
    assert "code hash" in out and out.count('class="guide-record"') == 5
    assert "x faster" in out and "the runs took" in out
    assert len(plt.get_fignums()) >= 4 and names["further"]  # every section's figures
    plt.close("all")
