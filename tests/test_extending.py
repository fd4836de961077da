"""docs/extending.md: hooks, custom Functions, torch.func and custom operators against references, and the errors.

The page's run in this process defines the custom operators again, which replaces their registrations and leaves the
objects of snippets.extending pointing at freed ones (calling them crashed the interpreter, now and then): the tests
call the operators through ``torch.ops.guide``, which always finds the current registration.

``page`` (the names the page's blocks define), ``printed`` and ``page_run`` come from one run of the page's blocks
in this process (tests/conftest.py).
"""

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    read_record_or_skip,
    report_without_record,
    test_the_page_prints_what_its_build_shows,  # noqa: F401 (a test)
)
from torch import nn
from torch.func import grad, vmap

import site_tools.records as records
import snippets.extending as chapter


@pytest.fixture(autouse=True, scope="module")
def current_operators(page):
    """The page's run defined the operators again, which left the module's own objects pointing at freed
    registrations (calling one crashed the interpreter now and then): while these tests run, snippets.extending
    holds the page's current ones, and the tests call the operators through torch.ops.guide."""
    stale = chapter.interp, chapter.interp_without_fake
    chapter.interp, chapter.interp_without_fake = page.interp, page.interp_without_fake
    yield
    chapter.interp, chapter.interp_without_fake = stale


# --- hooks and parametrizations


def test_the_hooks_ran_in_order_and_none_after_remove(page_run):
    printed = page_run.printed_by("hooks-demo").splitlines()
    assert [line.split(":")[0] for line in printed[:3]] == ["pre-hook", "forward hook", "backward hook"]
    assert printed[3] == "after remove(): []"
    assert printed[1] == "forward hook: 0.20 active"  # the prose: "a fifth of its outputs are positive"
    model = page_run.names_after("hooks-demo").model
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


def test_the_forward_hook_reports_the_share_of_active_relus(page):
    model = chapter.small_network()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    shares = []
    handle = model[1].register_forward_hook(lambda m, a, out: shares.append((out > 0).float().mean().item()))
    expected = (model[0](x) > 0).float().mean().item()
    model(x)
    handle.remove()
    model(x)
    assert shares == [expected]


def test_the_tensor_hook_replaces_the_gradient(page):
    assert page.w.grad.tolist() == [0.5, 1.0, -1.0]
    assert not page.w._backward_hooks


def test_the_parametrized_weight_is_positive_and_changes_the_state_dict(page):
    layer = page.layer
    assert (layer.weight > 0).all()
    assert set(layer.state_dict()) == {"bias", "parametrizations.weight.original"}
    original = layer.parametrizations.weight.original
    assert torch.allclose(F.softplus(original), layer.weight) and (original < 0).all()  # softplus(-0.43) = 0.5
    assert torch.allclose(layer.weight, torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="every entry > 0"):
        layer.weight = -torch.ones(2, 3)
    # removing the parametrization stores the current weight as a plain one
    parametrize = chapter.parametrize
    plain = nn.Linear(3, 2)
    copy = nn.Linear(3, 2)
    with torch.no_grad():
        copy.weight.abs_()
    parametrize.register_parametrization(copy, "weight", chapter.Positive())
    copy.load_state_dict(layer.state_dict())
    parametrize.remove_parametrizations(copy, "weight")
    plain.load_state_dict(copy.state_dict())
    assert torch.allclose(plain.weight, layer.weight)


# --- custom autograd Functions


def test_the_naive_logsumexp_overflows_and_the_custom_one_does_not(page_run):
    printed = page_run.printed_by("function-demo")
    assert "naive: inf [nan, nan, nan]" in printed and "difference < 1e-5: True" in printed
    x = torch.tensor([1000.0, 1000.5, 999.0], requires_grad=True)
    value = chapter.LogSumExp.apply(x)
    value.backward()
    assert torch.allclose(value, torch.logsumexp(x, 0))
    assert torch.allclose(x.grad, torch.softmax(x.detach(), 0), rtol=0, atol=1e-5)


def test_logsumexp_batches_over_leading_dimensions():
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(chapter.LogSumExp.apply(x), torch.logsumexp(x, -1))
    assert torch.autograd.gradcheck(chapter.LogSumExp.apply, (x,))


def test_the_straight_through_estimator_rounds_and_passes_the_gradient():
    x = torch.tensor([0.2, 0.7, 1.6], requires_grad=True)
    weights = torch.tensor([1.0, 2.0, 3.0])
    rounded = chapter.RoundStraightThrough.apply(x)
    (rounded * weights).sum().backward()
    assert rounded.tolist() == [0.0, 1.0, 2.0] and torch.equal(x.grad, weights)


def test_gradcheck_passes_in_float64_and_fails_in_float32(page_run):
    printed = page_run.printed_by("gradcheck")
    assert "gradcheck:     True" in printed and "gradgradcheck: True" in printed
    assert "float32: Jacobian mismatch" in printed and "not of double precision" in printed.replace("\n", " ")


def test_a_wrong_backward_fails_gradcheck():
    class WrongSine(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return torch.sin(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output * torch.sin(ctx.saved_tensors[0])  # should be cos

    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="Jacobian mismatch"):
        torch.autograd.gradcheck(WrongSine.apply, (x,))


def test_the_old_style_function_fails_under_torch_func_and_the_new_style_works(page_run):
    printed = page_run.printed_by("old-style-demo").replace("\n", " ")
    assert "must override the setup_context staticmethod" in printed
    assert "does not have vmap support" in printed
    with pytest.raises(RuntimeError, match="setup_context"):
        grad(lambda x: chapter.SineOldStyle.apply(x).sum())(torch.ones(2))
    x = torch.tensor([0.0, 1.0])
    assert torch.allclose(grad(chapter.LogSumExp.apply)(x), torch.softmax(x, 0))


# --- torch.func


def test_every_transform_matches_central_differences(page, page_run):
    printed = page_run.printed_by("func-demo")
    assert printed.count("< 1e-8: True") == 4 and "False" not in printed
    x = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    expected = torch.tensor(
        [[6 * x[0], x[2], x[1]], [x[2], 6 * x[1], x[0]], [x[1], x[0], 6 * x[2]]], dtype=torch.float64
    )  # the Hessian of sum(x^3) + x0 x1 x2, by hand
    assert torch.allclose(page.results["hessian"][0], expected)
    assert torch.allclose(grad(chapter.energy)(x), 3 * x**2 + x.prod() / x)


def test_central_differences_of_a_linear_map_are_its_matrix():
    matrix = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(
        chapter.central_differences(lambda v: matrix @ v, torch.zeros(3, dtype=torch.float64)), matrix
    )


def test_vmap_over_mismatched_batch_sizes_is_refused(page_run):
    printed = page_run.printed_by("vmap-demo").replace("\n", " ")
    assert "vmap(energy) equals the loop: True" in printed and "got sizes [3, 4]" in printed
    with pytest.raises(ValueError, match="same size in the mapped dimension"):
        vmap(torch.add)(torch.ones(3, 2), torch.ones(4, 2))


def test_per_sample_gradients_equal_the_loop_and_average_to_the_batch_gradient(page):
    for name, g in page.fast.items():
        assert g.shape[0] == 32 and torch.allclose(g, page.slow[name], atol=1e-6)
    classifier, inputs, labels = page.classifier, page.inputs, page.labels
    classifier.zero_grad()
    F.cross_entropy(classifier(inputs), labels).backward()
    for name, p in classifier.named_parameters():
        assert torch.allclose(page.fast[name].mean(0), p.grad, atol=1e-6)


def test_the_ensemble_equals_the_models_one_by_one(page):
    assert page.together.shape == (5, 6, 2)
    assert torch.allclose(page.together, page.one_by_one, atol=1e-6)
    assert not torch.allclose(page.together[0], page.together[1])  # the members differ


# --- custom operators


def test_interp_equals_numpys_and_its_gradient_is_the_slope(page):
    knots = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    x = torch.tensor([-0.5, 0.1, 0.3, 0.6, 0.9, 1.5], dtype=torch.float64, requires_grad=True)
    y = torch.ops.guide.interp(x, knots, knots**2)
    assert np.allclose(y.detach().numpy(), np.interp(x.detach().numpy(), knots.numpy(), (knots**2).numpy()))
    y.sum().backward()
    assert x.grad.tolist() == pytest.approx([0.0, 0.25, 0.75, 1.25, 1.75, 0.0])  # flat outside the knots


def test_a_single_number_and_float16_work_too():
    knots = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)  # 0-d: np.interp returns a NumPy scalar
    y = torch.ops.guide.interp(x, knots, knots**2)
    assert y.shape == () and y.item() == pytest.approx(0.0625 + 0.05 * 0.75)  # on the chord from 0.25 to 0.5
    report = torch.library.opcheck(torch.ops.guide.interp.default, (x, knots, knots**2))
    assert set(report.values()) == {"SUCCESS"}
    half = torch.tensor([0.1, 0.6], dtype=torch.float16, requires_grad=True)
    torch.ops.guide.interp(half, knots.half(), (knots**2).half()).sum().backward()
    assert half.grad.tolist() == [0.25, 1.25]


def test_the_gradient_at_the_knots_is_the_left_segments_and_zero_at_the_ends():
    knots = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)  # slopes of x^2 between them: 0.25, 0.75, 1.25, 1.75
    x = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    torch.ops.guide.interp(x, knots, knots**2).sum().backward()
    assert x.grad.tolist() == pytest.approx([0.0, 0.25, 0.75, 0.0])


def test_opcheck_passes(page):
    assert set(page.report.values()) == {"SUCCESS"} and len(page.report) == 4


def test_opcheck_passes_on_a_non_contiguous_input_too():
    knots = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    x = torch.rand(3, 4, dtype=torch.float64).t().requires_grad_()  # strides (1, 4)
    report = torch.library.opcheck(torch.ops.guide.interp.default, (x, knots, knots**2))
    assert set(report.values()) == {"SUCCESS"}


def test_a_wrong_dtype_or_shape_is_refused_clearly(page_run):
    printed = page_run.printed_by("custom-op-errors")
    assert printed.startswith("TypeError: x, xp, fp: one of float16/32/64")
    assert "ValueError: xp, fp: one 1-D shape of length >= 2, got ((5,), (3,))" in printed
    assert "ValueError: xp: the knots must increase strictly" in printed
    knots = torch.linspace(0.0, 1.0, 5)
    with pytest.raises(TypeError, match="float16/32/64"):  # NumPy has no bfloat16
        torch.ops.guide.interp(torch.zeros(2, dtype=torch.bfloat16), knots.bfloat16(), knots.bfloat16())
    with pytest.raises(ValueError, match=r"one device, got \(device\(type='meta'\), device\(type='cpu'\)"):
        torch.ops.guide.interp(torch.zeros(2, device="meta"), knots, knots)
    with pytest.raises(ValueError, match="xp, fp must be fixed"):  # no silent missing gradient
        torch.ops.guide.interp(torch.zeros(2), knots, knots.clone().requires_grad_())
    with pytest.raises(TypeError, match="float16/32/64"):
        torch.ops.guide.interp(torch.zeros(2), knots.double(), knots.double())  # float32 x, float64 knots
    with pytest.raises(ValueError, match="1-D"):
        torch.ops.guide.interp(torch.zeros(2), knots.view(1, 5), knots.view(1, 5))


def test_the_fake_checks_inputs_too_so_tracing_reports_bad_input():
    class Bad(nn.Module):
        def forward(self, x):
            knots = torch.linspace(0.0, 1.0, 5)
            return torch.ops.guide.interp(x, knots, knots[:3])

    with pytest.raises(Exception, match="one 1-D shape"):
        torch.export.export(Bad(), (torch.zeros(3),))


def test_the_model_compiles_in_one_graph_and_exports(page, page_run):
    printed = page_run.printed_by("compile-export")
    assert "compiled equals eager: True" in printed and "exported equals eager: True" in printed
    assert torch.ops.guide.interp.default in [n.target for n in page.exported.graph.nodes]
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(page.exported.module()(x), page.calibrated(x))
    with pytest.raises(AssertionError, match=re.escape("Guard failed: x.size()[0] == 6")):  # as the page quotes
        page.exported.module()(torch.randn(4, 3))


def test_without_a_fake_export_and_compile_fail():
    model = chapter.Calibrated(torch.linspace(-2.0, 2.0, 9))

    def forward(x):
        return torch.ops.guide.interp_without_fake(model.linear(x).squeeze(-1), model.xp, model.fp)

    x = torch.randn(6, 3)
    with pytest.raises(torch._dynamo.exc.TorchRuntimeError, match="no fake impl registered"):  # the page's words
        torch.compile(forward, fullgraph=True)(x)
    assert torch.allclose(forward(x), model(x))  # eager: the same values


def test_the_page_says_what_fails_without_the_fake(page_run):
    printed = page_run.printed_by("no-fake-demo").replace("\n", " ")
    assert "There was no fake impl registered" in printed and "register_fake" in printed


# --- the C++ function


@pytest.mark.filterwarnings("ignore:Dynamo does not know how to trace")
def test_the_cpp_operator_compiles_and_equals_softplus():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler (c++ or g++) on this machine: load_inline cannot build the function")
    if not torch.utils.cpp_extension.is_ninja_available():
        pytest.skip("no ninja on this machine: load_inline builds with it")
    start = time.perf_counter()
    build = Path(__file__).resolve().parents[1] / "build" / "cpp-extension"  # git-ignored
    build.mkdir(parents=True, exist_ok=True)  # a second run reuses the compiled library
    stable_softplus = chapter.build_stable_softplus(build_directory=str(build))
    print(f"load_inline built the operator in {time.perf_counter() - start:.1f} s")
    x = torch.tensor([-1000.0, -3.0, 0.0, 2.5, 1000.0])
    assert torch.allclose(stable_softplus(x), F.softplus(x))
    assert stable_softplus(torch.tensor([1000.0])).item() == 1000.0  # log(1 + exp(1000)) overflows
    page_values = stable_softplus(torch.tensor([-1000.0, 0.0, 1000.0]))  # the page: 0, log 2 and 1000
    assert page_values[0] == 0 and round(page_values[1].item(), 4) == 0.6931 and page_values[2] == 1000
    with pytest.raises(RuntimeError, match="floating x"):
        stable_softplus(torch.arange(3))
    with pytest.raises(Exception, match="does not know how to trace the builtin"):  # not an operator
        torch.compile(lambda x: stable_softplus(x) * 2, fullgraph=True)(x)


# --- the exercises


def test_clipped_gradients_have_a_norm_of_at_most_two(page):
    assert int((page.norms > 2).sum()) == 14
    after = torch.stack([g.flatten(1).norm(dim=1) for g in page.clipped.values()]).norm(dim=0)
    assert after.max() <= 2 + 1e-5
    below = page.norms <= 2
    assert torch.allclose(after[below], page.norms[below])  # untouched below the limit
    assert set(page.update) == set(page.fast) and page.update["0.weight"].shape == (16, 8)


def test_the_activation_hooks_record_every_layer_and_are_removed(page):
    assert set(page.means) == {"0", "1", "2"} and page.means["1"] >= 0
    assert not any(m._forward_hooks for m in page.model.modules())


# --- the recorded timings: python -m benchmarks.extending --record


@pytest.fixture(scope="module")
def record():
    return read_record_or_skip("extending")


def test_the_record_is_current(record):
    records.check_fresh(record)


REPORT = "benchmarks/reports/extending.py"


def test_the_page_says_not_recorded_yet_while_the_record_is_missing(monkeypatch):
    outputs = report_without_record(monkeypatch, REPORT)
    assert len(outputs) == 2 and all("Not recorded yet" in out and "benchmarks.extending" in out for out in outputs)


def test_the_record_supports_what_the_page_says(record):
    metrics = record["metrics"]
    assert metrics["threads"] == 1 and metrics["load_average"][0] <= metrics["idle_load"]
    for seconds in metrics["per_sample"].values():  # "vmap pays the overhead once per batch": faster at each size
        assert seconds["vmap"] < seconds["loop"]
    small, large = (metrics["per_sample"][size] for size in ("32", "256"))
    assert large["loop"] / large["vmap"] > small["loop"] / small["vmap"]  # the loop's time grows with the batch
    assert metrics["compile_first_call"] > 1 > 1000 * metrics["compiled_call"]  # "not free"; a warm call is cheap
    assert metrics["compiled_call"] > metrics["eager_call"]  # "the compiled call is slower than the eager one"
