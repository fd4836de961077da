"""docs/performance.md: what the page claims about timing, profiling, memory, number formats, NaNs and torch.compile.

``page`` (the names the page's blocks define), ``printed`` and ``page_run`` come from one run of the page's blocks
in this process (tests/conftest.py).
"""

import inspect
import statistics
import warnings

import pytest
import torch
import torch._dynamo
from conftest import (
    read_record_or_skip,
    report_without_record,
    snippet_sections,
    test_the_page_prints_what_its_build_shows,  # noqa: F401 (a test)
)
from torch.profiler import ProfilerActivity, profile, record_function, schedule
from torch.utils import benchmark

import site_tools.records as records
import snippets.performance as chapter
from snippets.cnn import build_cnn
from snippets.mnist import build_model, count_parameters
from snippets.sequences import CharTransformer

FLOAT = 4  # bytes
BATCH, PIXELS, HIDDEN, CLASSES = 512, 784, 128, 10  # the MNIST chapter's network
DEEP_HIDDEN = 256  # the checkpointing example's own network
PARAMETERS = (PIXELS * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES) * FLOAT


def loss_saves(batch):
    """What cross_entropy keeps: log_softmax's output, the int64 labels and a float32 scalar (nll_loss's total
    weight)."""
    return batch * CLASSES * FLOAT + batch * 8 + FLOAT


def activations(batch):
    """The input (saved by the first Linear), the ReLU's output (saved by the ReLU and the second Linear, once)."""
    return (batch * PIXELS + batch * HIDDEN) * FLOAT + loss_saves(batch)


LOSS_SAVES = loss_saves(BATCH)


def test_the_network_is_the_mnist_chapters():
    network, theirs = chapter.mnist_mlp(), build_model((128,))
    assert [type(m) for m in network] == [type(m) for m in theirs]
    assert [p.shape for p in network.parameters()] == [p.shape for p in theirs.parameters()]
    assert count_parameters(network) == 101_770 == PARAMETERS // FLOAT


def test_the_timer_ran_exactly_the_runs_asked_on_one_thread(page, page_run):
    assert page.fixed.number_per_run == 20 and len(page.fixed.raw_times) == 1
    assert page.fixed.num_threads == 1 and page.auto.num_threads == 1
    assert page_run.printed_by("timer-demo").splitlines()[0] == "runs: 20, threads: 1"
    runs = []
    benchmark.Timer("runs.append(1)", globals={"runs": runs}).timeit(20)
    assert len(runs) == 20 + max(20 // 100, 2)  # "after a warm-up of max(n // 100, 2) runs"


def test_the_schedule_skips_one_step_warms_up_on_one_records_two_and_ignores_the_fifth(page_run):
    demo = snippet_sections("snippets/performance.py")["profile-demo"]
    assert "schedule(wait=1, warmup=1, active=2, repeat=1)" in demo and "range(5)" in demo
    with profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=1, warmup=1, active=2, repeat=1)) as prof:
        for step in range(5):
            with record_function(f"step {step}"):
                torch.ones(2).sum()
            prof.step()
    assert sorted(event.key for event in prof.key_averages() if event.key.startswith("step")) == ["step 2", "step 3"]


def test_the_schedule_records_only_the_active_steps(page_run):
    printed = page_run.printed_by("profile-demo").splitlines()
    # wait=1, warmup=1, active=2: of five steps, the third and fourth are recorded
    assert [line.split(":")[0].strip() for line in printed] == ["backward", "forward", "optimizer step"]
    assert all(line.endswith("recorded 2 times") for line in printed)


def test_a_training_step_keeps_what_the_page_counts(page):
    assert page.parameters == PARAMETERS
    assert page.gradients == PARAMETERS
    assert page.adam_state == 2 * PARAMETERS  # exp_avg and exp_avg_sq, one of each per parameter
    assert page.activations == activations(BATCH)
    assert page.activations > page.parameters + page.gradients + page.adam_state  # "outweigh the parameters"


def test_checkpointing_keeps_only_the_body_input_and_output_and_the_same_gradients(page):
    body_input, hidden = BATCH * PIXELS * FLOAT, BATCH * DEEP_HIDDEN * FLOAT
    plain = chapter.deep_mlp()
    saved, _ = chapter.saved_activation_bytes(plain, *chapter.a_batch())
    assert saved == body_input + 4 * hidden + LOSS_SAVES  # four ReLU outputs
    saved, _ = chapter.saved_activation_bytes(chapter.Checkpointed(chapter.deep_mlp()), *chapter.a_batch())
    assert saved == body_input + hidden + LOSS_SAVES  # the body's output only
    assert page.same


def test_float16_overflows_and_underflows_where_bfloat16_does_not(page_run):
    assert torch.tensor(70_000.0).half().isinf()
    assert torch.tensor(1e-8).half() == 0 and torch.tensor(1e-8).bfloat16() != 0
    assert torch.tensor(257.0).bfloat16() == 256  # 8 bits of precision: 257 is not representable
    assert torch.finfo(torch.bfloat16).max > 1e38 and torch.finfo(torch.float16).max == 65504
    assert page_run.printed_by("overflow").splitlines() == [
        " torch.float16: 70000 -> inf, 1e-8 -> 0, 257 -> 257",
        "torch.bfloat16: 70000 -> 70144, 1e-8 -> 1e-08, 257 -> 256",
    ]


def test_loss_scaling_rescues_small_gradients_and_too_large_a_scale_overflows(page):
    assert page.stored["in float16"][0] == 0
    assert page.stored["in float16"][1] != page.gradient[1]  # "the next ones lose digits"
    assert torch.allclose(page.stored["scaled by 2**16, back"], page.gradient, rtol=1e-3)
    assert page.stored["scaled by 2**18"][-1].isinf()  # what GradScaler detects, then skips the step


def test_grad_scaler_skips_every_overflowing_step_and_halves_its_scale(page):
    assert page.scales == [2.0**127, 2.0**126, 2.0**125]
    assert torch.equal(page.layer.weight, page.initial_weight)
    assert page.scaler.get_scale() == 2.0**124
    default = torch.amp.GradScaler("cpu")  # the defaults the page gives
    assert default.get_scale() == 2.0**16 and default.get_growth_interval() == 2000
    assert default.get_growth_factor() == 2 and default.get_backoff_factor() == 0.5
    assert inspect.signature(torch.amp.GradScaler).parameters["device"].default == "cuda"


def test_a_data_dependent_if_breaks_the_graph_and_torch_where_does_not(page_run):
    printed = page_run.printed_by("compile-demo").splitlines()
    assert printed[:2] == ["   branchy: 2 graph(s), 1 break(s)", "branchless: 1 graph(s), 0 break(s)"]
    assert printed[2].startswith("why: generic_jump TensorVariable")
    assert "prototype" in torch.cond.__doc__  # "torch.cond (a prototype in 2.14)"
    x = torch.randn(8)
    assert torch.equal(chapter.branchy(x), chapter.branchless(x))
    assert torch.equal(chapter.branchy(-x.abs()), chapter.branchless(-x.abs()))


def test_a_new_size_recompiles_once_by_default_every_time_when_static_never_when_dynamic(page_run):
    assert page_run.printed_by("recompile-demo").splitlines() == [
        "dynamic= None: graphs after each call [1, 2, 2, 2]",
        "dynamic=False: graphs after each call [1, 2, 3, 4]",
        "dynamic= True: graphs after each call [1, 1, 1, 1]",
        "mark_dynamic: 1 graph",
    ]
    assert torch._dynamo.config.recompile_limit == 8  # the page's "8 in PyTorch 2.14"


def test_past_the_recompile_limit_compiled_versions_still_run_and_new_sizes_run_uncompiled():
    graphs, calls = [], []

    def backend(graph_module, example_inputs):
        graphs.append(graph_module)

        def run(*args):
            calls.append(len(args[0]) if args else None)
            return graph_module.forward(*args)

        return run

    torch._dynamo.reset()
    try:
        compiled = torch.compile(chapter.scale_rows, backend=backend, dynamic=False)
        for size in range(2, 12):  # ten sizes: eight compiled versions, then the limit
            compiled(torch.ones(size))
        assert len(graphs) == torch._dynamo.config.recompile_limit == 8
        calls.clear()
        compiled(torch.ones(3))  # a compiled size: still runs compiled
        compiled(torch.ones(20))  # a new size: runs uncompiled, nothing compiled
        assert calls == [3] and len(graphs) == 8
    finally:
        torch._dynamo.reset()


def test_the_old_tf32_flags_still_work_without_a_warning():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            torch.backends.cuda.matmul.allow_tf32 = matmul
            torch.backends.cudnn.allow_tf32 = cudnn
            assert torch.backends.cuda.matmul.allow_tf32 == matmul
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def test_sgd_with_momentum_keeps_one_buffer_per_parameter_half_of_adam(page):
    assert page.momentum == PARAMETERS == page.adam_state // 2


def test_the_graph_break_log_holds_the_reason_and_fullgraph_raises_it(page_run):
    assert page_run.printed_by("graph-break-log-demo").splitlines() == [
        "messages logged: 1",
        "Graph Break Reason: Data-dependent branching",
    ]
    assert page_run.printed_by("fullgraph") == "Unsupported: Data-dependent branching\n"
    assert issubclass(torch._dynamo.exc.Unsupported, RuntimeError)  # the page's "a RuntimeError"
    assert torch._logging._internal.log_state.is_artifact_enabled("graph_breaks") is False  # set_logs() restored it


def test_stances_run_eager_fail_or_fall_back_on_a_recompile(page_run):
    assert page_run.printed_by("stance").splitlines() == [
        "force_eager: 0 graphs",
        "default: 1 graph",
        "RuntimeError: Detected recompile when torch.compile stance is 'fail_on_recompile'.",
        "eager_on_recompile: 1 graph",
    ]


def test_the_cnn_and_character_models_compile_without_graph_breaks():
    """The CNN and sequences chapters check values outside forward: one graph each (the page says so)."""
    torch.manual_seed(0)
    models_and_inputs = [
        (build_cnn(), torch.rand(4, 1, 28, 28)),
        (build_cnn(), torch.rand(4, 784)),  # the N x 784 rows DigitImages also reads
        (CharTransformer(20, context=16, d_model=32, heads=2, depth=1), torch.randint(0, 20, (2, 16))),
    ]
    for model, inputs in models_and_inputs:
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(model)(inputs)
        assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons


def test_accumulating_four_micro_batches_gives_the_batch_gradient_with_a_quarter_of_the_activations(page, page_run):
    assert page.parts == 4 and all(a.shape == b.shape for a, b in page.pairs)
    assert page.difference < 1e-7
    printed = page_run.printed_by("accumulation").splitlines()
    assert printed[:2] == ["the same gradients: True", "largest difference below 1e-7: True"]
    assert printed[2:] == [
        f"batch 512: autograd saves {activations(512):>9,} bytes",
        f"batch 128: autograd saves {activations(128):>9,} bytes",
    ]
    # a slice shares its whole storage: counted on images[:128], the 512 images would be counted
    sliced, _ = chapter.saved_activation_bytes(chapter.mnist_mlp(), page.images[:128], page.labels[:128])
    assert sliced > activations(128)


def test_the_precision_defaults_are_full_float32_matmuls_and_tf32_convolutions(page_run):
    assert page_run.printed_by("precision-defaults").splitlines() == [
        "float32 matmul precision: highest",
        "cuDNN convolutions: tf32",
    ]


def test_the_hooks_name_the_first_non_finite_layer_and_are_removed(page, page_run):
    assert page_run.printed_by("nan-hooks-demo").splitlines() == [
        "clean model, finite input: None",
        "clean model, an inf in the input: hidden",
        "log of a ReLU, finite input: log",
    ]
    assert not any(module._forward_hooks for module in page.buggy.modules())
    assert (page.buggy.relu(page.buggy.hidden(page.inputs)) == 0).any()  # the zeros the log turns into -inf
    # a NaN made in the middle is found where it is made, not before
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Linear(2, 2), torch.nn.Sigmoid(), chapter.LogFeatures(), torch.nn.Linear(2, 1)
    )
    with torch.no_grad():
        network[0].weight.fill_(float("nan"))
    assert chapter.first_nonfinite(network, torch.ones(1, 2)) == "0"


def test_the_graph_break_exercise_removes_the_break_and_keeps_the_values(page_run):
    assert page_run.printed_by("exercise-graph-break-demo").splitlines() == [
        "      clipped_scale: 1 break(s)",
        "clipped_scale_fixed: 0 break(s)",
        "limit 1: the same values: True",
        "limit 10: the same values: True",
    ]
    values = torch.tensor([-4.0, 2.0])
    assert torch.equal(chapter.clipped_scale_fixed(values, 2.0), torch.tensor([-2.0, 1.0]))


def test_the_activations_exercise_counts_every_byte(page):
    assert sum(page.by_hand.values()) == page.measured[128] == activations(128)
    assert page.measured[512] == activations(512)
    assert page.measured[512] == 4 * page.measured[128] - 3 * FLOAT  # the scalar does not grow: a little under 4


# --- the recorded run: python -m benchmarks.performance --data-root data --record


@pytest.fixture(scope="module")
def record():
    return read_record_or_skip("performance")


def test_the_record_is_current(record):
    records.check_fresh(record)


REPORT = "benchmarks/reports/performance.py"


def test_the_page_says_not_recorded_yet_while_the_record_is_missing(monkeypatch):
    outputs = report_without_record(monkeypatch, REPORT)
    assert len(outputs) == 6 and all("Not recorded yet" in out and "benchmarks.performance" in out for out in outputs)


def test_the_record_was_made_on_an_idle_machine_with_two_threads(record):
    metrics = record["metrics"]
    assert metrics["threads"] == 2 and metrics["load_average"][0] <= metrics["idle_load"]
    assert metrics["images"] == 60_000 and len(metrics["floor_seconds"]) >= 5


def test_the_timer_claims(record):
    one, two = (record["metrics"]["timer"][threads] for threads in ("1", "2"))
    assert 1.6 < one["median"] / two["median"] < 2.05  # "a second thread almost halves the time"
    assert one["iqr"] < 0.1 * one["median"] and two["iqr"] < 0.1 * two["median"]  # "a small fraction"


def test_the_case_study_claims(record):
    metrics = record["metrics"]
    rows = {number: row for number, row in enumerate(metrics["rows"], start=1)}
    change = {number: row["against_before"] for number, row in rows.items()}
    assert [row["loop"]["batch_size"] for row in rows.values()][9:] == [128, 2048, 512, 512]  # the asides' order
    assert change[2] == min(change[n] for n in range(2, 10))  # "the batch size is the change that counts"
    assert rows[11]["median_ratio"] < rows[6]["median_ratio"]  # batch 2048 "closer to the floor again"
    assert all(abs(change[n] - 1) < 0.1 for n in range(3, 8))  # "a few percent at most"
    assert change[8] > 0.95 and change[9] > 0.95  # "torch.compile does not make this loop faster"
    # one thread: "far longer", "worth about as much as going from batch 128 to 512"
    assert change[12] > 1.4 and abs(change[12] - change[10]) < 0.25  # and 1.4: the test's refusal, on the page
    float32_at_512 = [row["median_ratio"] for row in rows.values() if row["loop"]["batch_size"] == 512][:-1]
    assert len(float32_at_512) == 9 and min(float32_at_512) > 1.5  # "the target ... is not reached"
    assert rows[13]["loop"]["bfloat16"] and rows[13]["median_ratio"] < rows[6]["median_ratio"]
    gpu_record = records.read_record("gpu")["metrics"]["devices"]["cpu"]  # "records its CPU flags"
    assert "avx512_bf16" in gpu_record["instruction_sets"]["flags"]
    assert gpu_record["device_name"] == record["provenance"]["device_name"]  # the same kind of machine
    contended = metrics["contended_rounds"]  # "rows 2 to 6 run near 2.8x ... while one thread barely changes"
    if contended:
        in_contended = statistics.median(rows[6]["floor_ratios"][r] for r in contended)
        assert in_contended > 1.15 * rows[6]["median_ratio"]
        assert all(2.5 < rows[n]["floor_ratios"][r] < 3.1 for n in range(2, 7) for r in contended)  # "near 2.8x"
        one_thread = statistics.median(rows[12]["floor_ratios"][r] for r in contended)
        assert one_thread < 1.1 * rows[12]["median_ratio"]  # "barely changes"
    assert len(metrics["contended_rounds"]) <= 2  # "counted as contended": few, or the record is made again
    chapter_loop = rows[6]["loop"]  # the MNIST chapter's: fused AdamW, no .item(), batch 512
    assert chapter_loop["batch_size"] == 512 and chapter_loop["optimizer"] == "fused"
    assert not chapter_loop["item_per_step"]
    same = [rows[n]["last_loss"] for n in (2, 3, 4, 5, 6, 7, 8, 12)]  # batch 512, float32, beta1 cycled
    assert max(same) - min(same) < 0.005 * min(same)  # "the same loss, to rounding"


def test_the_profile_claims(record):
    metrics = record["metrics"]
    profiled, products = metrics["profile"], metrics["products"]
    floor_seconds = metrics["flops_per_epoch"] / (profiled["floor_gflops"] * 1e9)
    matmul = sum(profiled["matmul_seconds"].values())
    names = [name for name, _ in profiled["top_operators"]]
    assert set(names[:2]) == {"aten::mm", "aten::addmm"} and matmul > 0.5 * profiled["self_seconds_total"]
    steps = metrics["images"] / 512
    alone = sum(p["seconds"] for p in products.values()) * steps / statistics.median(metrics["floor_seconds"])
    assert 1.0 < alone < 1.25  # "the matrix products alone ... take about 1.1x the floor"
    rest = (profiled["self_seconds_total"] - matmul) / floor_seconds
    assert rest > 1.5 - alone  # "the other operators take more than that"
    first = products["784x128 forward"]["gflops"]
    assert first > 0.85 * statistics.median(metrics["matmul_gflops"])  # "near the floor's speed"
    assert products["784x128 weight gradient"]["gflops"] < first  # "a little slower"
    small = [products[name] for name in products if name.startswith("128x10")]
    assert all(product["gflops"] < 0.6 * first for product in small)  # "a fraction of it"
    share = sum(p["seconds"] for p in small) / sum(p["seconds"] for p in products.values())
    assert share > 0.04  # "about 2% of the FLOPs ... far more than 2% of the time"
    assert abs(profiled["profiled_epoch_seconds"] / profiled["epoch_seconds"] - 1) < 0.15  # "about as long"


def test_the_compile_and_checkpoint_claims(record):
    cold, warm = (record["metrics"]["compile"][run] for run in ("cold", "warm"))
    assert cold["first_step"] > 3 * warm["first_step"] > 100 * warm["second_step"]  # "seconds"; "not free"
    assert cold["first_step"] > 1 and warm["second_step"] < 0.02  # "milliseconds"
    plain, checkpointed = (record["metrics"]["checkpoint"][name] for name in ("plain", "checkpointed"))
    assert 0.5 < checkpointed["saved_bytes"] / plain["saved_bytes"] < 0.65  # "fall by about two fifths"
    assert checkpointed["step_seconds"] > 1.1 * plain["step_seconds"]  # "the step takes longer"
    assert cold["second_step"] < 0.02 and cold["eager_step"] < 0.02  # "milliseconds, as uncompiled code does"
    assert cold["caches"].get("fxgraph_cache_miss", 0) > 0 and not cold["caches"].get("fxgraph_cache_hit")
    assert warm["caches"].get("fxgraph_cache_hit", 0) > 0 and warm["caches"].get("autograd_cache_hit", 0) > 0
    assert not warm["caches"].get("fxgraph_cache_miss")  # the warm start compiled nothing new
