"""The Tensors chapter: every claim docs/tensors.md makes about its sections' results.

The tests read the page's blocks, run once here in page order (the ``page_run`` fixture of tests/conftest.py):
``section(name)`` gives the names right after a section and what its block printed.
"""

import re

import numpy as np
import pytest
import torch
from conftest import page_html, run_section, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)


def test_create(section):
    _, out = section("create")
    lines = out.splitlines()
    assert "tensor([0, 3, 6, 9])" in lines  # arange excludes the stop
    assert "tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000])" in lines  # linspace includes both ends
    assert torch.ones(2, 3, dtype=torch.int64).dtype == torch.int64


def test_random_is_reproducible_and_a_seeded_generator_repeats_the_seeded_global_stream(section):
    ns, out = section("random")
    assert run_section("tensors", "random")[1] == out  # a fresh session prints the same numbers
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3, generator=torch.Generator().manual_seed(0)), torch.rand(2, 3)[0])


def test_empty_has_the_shape_and_dtype_then_is_filled_and_deterministic_mode_is_restored(section):
    ns, out = section("empty")
    assert ns["buffer"].shape == (2, 3) and ns["buffer"].dtype == torch.float32
    assert torch.all(ns["buffer"] == 0.5)
    assert torch.all(ns["scratch"].abs() <= 1)
    assert out.splitlines()[-1] == "tensor([nan, nan, nan])"
    assert not torch.are_deterministic_algorithms_enabled()


def test_dtype_defaults_and_promotion(section):
    _, out = section("dtypes")
    table = {line.split(":")[0].strip(): line.split(":", 1)[1].strip() for line in out.splitlines()[1:]}
    assert table["from Python floats"] == "torch.float32"
    assert table["from Python ints"] == "torch.int64"
    assert table["from Python bools"] == "torch.bool"
    assert table["int64 / 2"] == "tensor([0.5000, 1.0000, 1.5000])"
    assert table["int64 // 2"] == "tensor([0, 1, 1])"
    assert table["int64 + 0.5"] == "torch.float32"
    assert table["int32 + 7"] == "torch.int32"
    assert table["float16 + float32"] == "torch.float32"
    assert table["promote_types"] == "torch.float16"
    # the page: neither 16-bit float is wider, so the result is the smallest dtype holding both
    assert torch.promote_types(torch.float16, torch.bfloat16) == torch.float32
    assert (torch.ones(1, dtype=torch.float16) + torch.ones(1, dtype=torch.bfloat16)).dtype == torch.float32
    assert out.splitlines()[0] == "torch.Size([2, 3]) 2 6 torch.float32 cpu"


def test_float_equality_fails_but_isclose_holds(section):
    ns, _ = section("float-equality")
    assert ns["total"].item() != 1.0
    assert torch.isclose(ns["total"], torch.tensor(1.0))


def test_indexing_and_masks(section):
    ns, _ = section("indexing")
    x, y = ns["x"], ns["y"]
    assert x[1:, ::2].tolist() == [[4, 6], [8, 10]]
    assert x[ns["mask"]].tolist() == [0, 3, 6, 9]
    assert x[[0, 2]].tolist() == [[0, 1, 2, 3], [8, 9, 10, 11]]
    assert y.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, -1, -1, -1]]
    assert x.max() == 11  # the clone protected x


def test_a_view_shares_storage_and_advanced_indexing_copies(section):
    ns, out = section("views")
    assert ns["same_memory"]
    assert ns["x"].tolist() == [100, 1, 2, 0, 0, 0]  # the writes through v reached x; the write to picked did not
    assert ns["picked"].tolist() == [-7, -7]
    assert "one storage: True" in out


def test_contiguity_view_fails_and_reshape_copies_only_when_it_must(section):
    ns, out = section("contiguity")
    assert not ns["t"].is_contiguous() and ns["m"].is_contiguous()
    assert "view size is not compatible" in out
    assert ns["flat"].tolist() == [0, 3, 1, 4, 2, 5]
    assert "shares m's memory: False" in out and "m.reshape(6) shares: True" in out


def test_squeeze_unsqueeze_permute_shapes(section):
    ns, out = section("squeeze")
    assert out.splitlines()[:3] == ["torch.Size([1, 3]) torch.Size([3, 1])"] * 2 + [
        "torch.Size([3]) torch.Size([3, 1])"
    ]
    assert ns["chw"].shape == (3, 28, 32) and not ns["chw"].is_contiguous()
    _, out = section("squeeze-trap")
    assert out.splitlines() == ["torch.Size([])", "torch.Size([1])"]


def test_broadcasting_worked_example(section):
    ns, _ = section("broadcasting")
    assert ns["table"].shape == (3, 4)
    assert ns["table"].tolist() == [[10 * i + j for j in range(4)] for i in range(3)]


def test_broadcasting_centres_every_feature(section):
    ns, _ = section("broadcasting-center")
    assert ns["centered"].shape == (5, 3)
    assert torch.allclose(ns["centered"].mean(dim=0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(ns["centered"][2], ns["data"][2] - ns["data"].mean(dim=0))


def test_broadcasting_error_is_caught_and_printed_then_fixed(section):
    ns, out = section("broadcasting-error")
    message = "RuntimeError: The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 1"
    assert message in " ".join(out.split())  # the page wraps it
    assert (ns["a"] + ns["b"][:, None]).tolist() == [[11.0] * 3, [21.0] * 3]


def test_broadcasting_trap_gives_every_pair(section):
    ns, _ = section("broadcasting-trap")
    assert ns["difference"].shape == (3, 3)
    assert ns["wrong"].item() == pytest.approx(12 / 9)  # (i - j)² summed over all 9 pairs is 12
    assert ns["right"].item() == 0.0


def test_math_in_place_and_out_of_place(section):
    ns, out = section("math")
    assert ns["same"] is ns["a"]
    assert ns["c"].tolist() == [2.0, 3.0, 4.0]
    assert ns["a"].tolist() == [4.0, 6.0, 8.0]  # ((1+1)·2 − 1) + 1 = 4, ...
    assert "tensor([1., 2., 2.])" in out  # clamp(max=2)


def test_matmul_shapes_and_elementwise_product(section):
    ns, out = section("matmul")
    A, B, v = ns["A"], ns["B"], ns["v"]
    assert (A @ B).shape == (2, 4) and (ns["batch"] @ B).shape == (10, 2, 4)
    assert (A @ v).tolist() == [-2.0, -2.0]  # row · (1, 0, -1)
    assert (v @ v).item() == 2.0
    assert (A * A).tolist() == [[0.0, 1.0, 4.0], [9.0, 16.0, 25.0]]
    assert "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)" in out


def test_reductions_with_dim_and_keepdim(section):
    ns, out = section("reductions")
    scores = ns["scores"]
    assert scores.sum(dim=0).tolist() == [5.0, 5.0, 8.0]
    assert scores.sum(dim=1).tolist() == [8.0, 10.0]
    assert ns["values"].tolist() == [5.0, 6.0] and ns["indices"].tolist() == [1, 2]
    normalised = scores / scores.sum(dim=1, keepdim=True)
    assert torch.allclose(normalised.sum(dim=1), torch.ones(2))
    assert "mean(): could not infer output dtype" in out


def test_forgetting_keepdim_divides_the_wrong_axis(section):
    ns, _ = section("keepdim-trap")
    assert ns["wrong"].sum(dim=1).tolist() == [0.625, 1.25]
    assert ns["right"].sum(dim=1).tolist() == [1.0, 1.0]


def test_numpy_bridge_shares_memory_and_torch_tensor_copies(section):
    ns, out = section("numpy")
    array, shared, back, copied = ns["array"], ns["shared"], ns["back"], ns["copied"]
    assert array.tolist() == [1.0, 2.0, 3.0] and shared.tolist() == [1.0, 2.0, 3.0]
    assert np.shares_memory(array, back) and shared.data_ptr() == array.ctypes.data
    assert copied[0].item() == -1.0 and array[0] == 1.0
    assert shared.dtype == torch.float64
    assert "Use tensor.detach().numpy() instead." in " ".join(out.split())


def test_device_selection_falls_back_to_cpu_when_no_accelerator_is_usable(section):
    ns, out = section("device")
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    if torch.accelerator.is_available():
        assert accelerator is not None and ns["device"] == accelerator
    else:
        assert accelerator is None and ns["device"] == torch.device("cpu")
    assert ns["x"].device.type == ns["device"].type and ns["y"].device.type == ns["device"].type
    assert out.splitlines()[-1] == (
        f"unchecked: {torch.accelerator.current_accelerator()} usable: {torch.accelerator.is_available()}"
    )


def test_python_numbers_and_0d_cpu_tensors_mix_with_any_device_and_other_cpu_tensors_do_not():
    """The page's exception to "all operands on the same device", on the meta device (no accelerator needed)."""
    x = torch.ones(3, device="meta")
    assert (x * 2).device.type == "meta" and (x * torch.tensor(2.0)).device.type == "meta"
    with pytest.raises(RuntimeError, match="device"):
        x * torch.ones(3)


def test_exercise_distances_match_a_loop(section):
    ns, _ = section("exercise-distances")
    points, distances = ns["points"], ns["distances"]
    for i in range(len(points)):
        for j in range(len(points)):
            assert distances[i, j].item() == pytest.approx(torch.linalg.norm(points[i] - points[j]).item(), abs=1e-6)
    for i in range(len(points)):
        others = [j for j in range(len(points)) if j != i]
        assert ns["nearest"][i].item() == min(others, key=lambda j: distances[i, j].item())
    assert torch.all(distances.diagonal() == 0)  # the clone kept the original intact


def test_exercise_one_hot_and_accuracy(section):
    ns, _ = section("exercise-one-hot")
    assert torch.equal(ns["one_hot"], torch.nn.functional.one_hot(ns["labels"], 3).float())
    assert ns["predictions"].tolist() == [2, 0, 0, 2, 1]
    assert ns["accuracy"].item() == pytest.approx(4 / 5)


def test_exercise_images_layout_and_scale(section):
    ns, out = section("exercise-images")
    batch, images = ns["batch"], ns["images"]
    assert batch.shape == (4, 3, 28, 28) and batch.dtype == torch.float32
    assert torch.allclose(batch * 255, torch.from_numpy(images).permute(0, 3, 1, 2).float(), atol=1e-4)
    assert out.splitlines()[1:] == ["True", "False True"]


def test_exercise_softmax_is_stable_and_correct(section):
    ns, _ = section("exercise-softmax")
    assert torch.isnan(ns["naive"][1]).all()
    result = ns["softmax_rows"](ns["logits"])
    assert not torch.isnan(result).any()
    assert torch.allclose(result.sum(dim=1), torch.ones(2))
    assert torch.allclose(result[0], result[1])
    big = torch.tensor([[-5000.0, 0.0, 5000.0]])
    assert torch.equal(ns["softmax_rows"](big), torch.tensor([[0.0, 0.0, 1.0]]))


def test_page_renders_outputs_and_exercise_solutions_inside_collapsibles(built_site):
    html = page_html(built_site, "tensors")
    assert "tensor([nan, nan, nan])" in html
    solutions = re.findall(r'<details class="success">(.*?)</details>', html, re.S)
    assert len(solutions) == 4
    assert all("language-text" in body or "<code>" in body for body in solutions)
    assert "nearest neighbours:" in solutions[0] and "tensor(0.8000)" in solutions[1]
