"""docs/pytorch_vs_tensorflow.md: the PyTorch-side claims, checked on the names the page's blocks define (run once
here in page order: the ``page`` fixture of tests/conftest.py); the page's fences and sources."""

import contextlib
import io
import re

import numpy as np
import pytest
import torch
from conftest import DOCS, SNIPPETS, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)

PAGE = (DOCS / "pytorch_vs_tensorflow.md").read_text(encoding="utf-8")


def test_eager_forward_runs_python_on_every_call(page):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        page.tiny(torch.randn(5, 4))
        page.tiny(torch.randn(5, 4))
    assert out.getvalue().count("hidden: (5, 3) mean") == 2
    assert page.eager_output.shape == (5, 2)


def test_from_numpy_shares_memory_and_torch_tensor_copies(page):
    assert page.shared[0, 0].item() == 100.0
    assert page.copied[0, 0].item() == 0.0
    assert np.shares_memory(page.shared.numpy(), page.array)
    assert isinstance(page.back, np.ndarray) and page.back.dtype == np.float32
    assert page.back[0, 0] == 200.0


def test_compiled_function_matches_eager(page):
    assert torch.allclose(page.compiled_result, page.eager_result)
    # the formula is the tanh approximation of GELU that PyTorch implements
    assert torch.allclose(page.eager_result, torch.nn.functional.gelu(page.x, approximate="tanh"), atol=1e-6)


def test_default_inductor_backend_matches_eager_too(page):
    """The page says the tests run the default backend (Inductor): slower to compile, same result."""
    torch._dynamo.reset()
    compiled = torch.compile(page.gelu_tanh)
    assert torch.allclose(compiled(page.x), page.eager_result, atol=1e-6)


def test_exported_program_computes_what_the_eager_model_does(page):
    assert isinstance(page.exported, torch.export.ExportedProgram)
    targets = [str(node.target) for node in page.exported.graph.nodes if node.op == "call_function"]
    assert targets == ["aten.linear.default", "aten.relu.default"]
    fresh = torch.randn(2, 4)
    assert torch.allclose(page.exported.module()(fresh), page.to_export(fresh))


def test_debug_exercise_names_the_first_bad_layer(page):
    assert page.debug_message == "layer 0 (Linear) produced non-finite values"
    assert page.checked(torch.ones(2, 3)).shape == (2, 1)


def test_numpy_exercise_view_follows_the_tensor_and_the_copy_does_not(page):
    assert page.view.tolist() == [2.0, 2.0, 2.0]
    assert page.independent.tolist() == [1.0, 1.0, 1.0]


def test_no_tensorflow_code_is_executed_on_the_page():
    fences = re.findall(r"^ *```(python[^\n]*)\n(.*?)^ *```", PAGE, re.M | re.S)
    assert fences
    for info, _body in fences:
        assert 'exec="on"' in info
    source = (SNIPPETS / "pytorch_vs_tensorflow.py").read_text(encoding="utf-8")
    assert "import tensorflow" not in source and "import keras" not in source


@pytest.mark.parametrize(
    "claim, source",
    [
        ("TF 2.0", "blog.tensorflow.org/2019/09/tensorflow-20-is-now-available"),
        ("Keras 3", "keras.io/keras_3"),
        ("LiteRT", "developers.googleblog.com/en/tensorflow-lite-is-now-litert"),
        ("version 5", "huggingface.co/blog/transformers-v5"),
        ("torch.export", "docs.pytorch.org/docs/stable/export.html"),
    ],
)
def test_claims_not_executed_here_cite_a_source(claim, source):
    assert claim in PAGE and f"https://{source}" in PAGE


def test_the_outdated_static_graph_claim_is_corrected_not_repeated():
    assert '!!! warning "Misconception: TensorFlow builds static graphs' in PAGE
    assert "Eager by default since TF 2.0 (2019)" in PAGE
