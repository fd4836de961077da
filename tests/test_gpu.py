"""docs/gpu.md: every code path runs on the CPU here (the device falls back); CUDA-only checks skip without CUDA.

The page's blocks run once here in page order (the ``page`` fixture of tests/conftest.py); the tests that need
other inputs call the module's functions."""

import collections

import pytest
import torch
from conftest import run_section, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from torch import nn

import snippets.gpu as m
from site_tools.records import check_fresh, read_record

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_pick_device_is_the_available_accelerator_or_the_cpu(page):
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    expected = accelerator if accelerator is not None else torch.device("cpu")
    assert m.pick_device() == expected == page.device
    if not torch.accelerator.is_available():
        assert page.device == torch.device("cpu")


@pytest.mark.skipif(torch.accelerator.is_available(), reason="the trap shows only without an accelerator")
def test_current_accelerator_without_check_names_a_device_that_is_not_there():
    assert torch.accelerator.current_accelerator(check_available=True) is None
    if torch.version.cuda is not None:  # a CUDA build on a machine without a GPU (the site's build machine)
        assert torch.accelerator.current_accelerator() == torch.device("cuda")
        assert not torch.cuda.is_available()
        with pytest.raises(RuntimeError):
            torch.zeros(1, device=torch.accelerator.current_accelerator())


def test_model_batch_and_loss_share_the_device_and_the_step_ran(page):
    assert {p.device for p in page.model.parameters()} == {page.device}
    assert page.images.device.type == page.loss.device.type == page.device.type
    assert all(p.grad is not None for p in page.model.parameters())


def test_device_mismatch_raises_with_the_printed_message_and_the_fix_works(page):
    assert page.mismatch_message == "Tensor on device meta is not on the expected device cpu!"
    with pytest.raises(RuntimeError, match="is not on the expected device"):
        page.layer(torch.randn(2, 784))
    assert page.output.shape == (32, 10) and page.output.device.type == "meta"
    # Python numbers and 0-d CPU tensors mix with any device; a 1-d CPU tensor does not
    assert (page.output * torch.tensor(0.5)).device.type == "meta"
    with pytest.raises(RuntimeError, match="is not on the expected device"):
        page.output * torch.ones(1)


def test_time_it_returns_a_positive_median_and_runs_warmup_plus_repeats(page):
    calls = []
    ms = m.time_it(lambda: calls.append(1), page.device, warmup=2, repeats=5)
    assert len(calls) == 7 and ms >= 0
    assert page.matmul_ms > 0


def test_time_it_measures_sleep():
    import time

    assert 15 <= m.time_it(lambda: time.sleep(0.02), "cpu", warmup=0, repeats=3) < 200


def test_the_benchmark_timer_measures_wall_clock_time_after_synchronizing_not_kernel_time(monkeypatch):
    """The page: torch.utils.benchmark.Timer times wall-clock time, host time included (a sleep runs no kernel at all,
    and counts), reading the clock after synchronizing the accelerator (here a stand-in that counts the calls), and
    runs on one thread unless told otherwise."""
    import torch.utils.benchmark as benchmark

    synchronized = []
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(torch.accelerator, "synchronize", lambda device=None: synchronized.append(device))
    timer = benchmark.Timer("time.sleep(0.01)", setup="import time")
    assert timer.timeit(3).median >= 0.01
    assert len(synchronized) >= 2  # before and after each timed block (a warm-up block first)
    assert timer._task_spec.num_threads == 1


def test_loader_pins_memory_only_for_an_accelerator_and_keeps_every_sample(page):
    assert not m.make_loader(page.dataset, 256, "cpu", num_workers=0).pin_memory
    assert m.make_loader(page.dataset, 256, "cuda", num_workers=0).pin_memory
    assert m.make_loader(page.dataset, 256, "xpu", num_workers=0).pin_memory
    assert not m.make_loader(page.dataset, 256, "mps", num_workers=0).pin_memory  # the DataLoader would refuse it
    assert len(page.loader) == 4 and page.images.shape == (232, 1, 28, 28)


def test_loader_with_workers_yields_the_same_samples(page):
    loader = m.make_loader(page.dataset, 250, "cpu", num_workers=2, shuffle=False)
    assert loader.persistent_workers
    images = torch.cat([x for x, _ in loader])
    assert torch.equal(images, page.dataset.tensors[0])


def test_device_batches_cover_every_sample_once(page):
    labels = torch.arange(1000)
    seen = torch.cat([y for _, y in m.device_batches(torch.zeros(1000, 1), labels, 256)])
    assert sorted(seen.tolist()) == list(range(1000))
    assert not torch.equal(seen, labels)  # shuffled
    assert [len(x) for x, _ in m.device_batches(page.all_images, page.all_labels, 256)] == [256, 256, 256, 232]
    assert page.mnist_train_bytes == 188_160_000


def test_autocast_runs_linear_layers_in_bfloat16_and_keeps_fp32_master_weights(page):
    assert page.autocast_dtypes == {
        "input": torch.float32,
        "linear output": torch.bfloat16,
        "logits": torch.bfloat16,
        "softmax": torch.bfloat16 if page.device.type == "cpu" else torch.float32,  # CPU autocast does not upcast it
        "loss": torch.float32,
        "weight": torch.float32,
        "weight.grad": torch.float32,
    }
    assert not torch.is_autocast_enabled(page.device.type)  # the block is closed: float32 again
    assert nn.Linear(4, 2).to(page.device)(torch.randn(3, 4, device=page.device)).dtype == torch.float32


def test_grad_scaler_steps_train_and_the_scale_stays_finite(page):
    assert page.losses[-1] < page.losses[0]
    assert page.scaler.is_enabled() and page.scaler.get_scale() == 65536.0


def test_amp_step_returns_the_loss_on_the_device_without_reading_it(monkeypatch):
    """The page: amp_step does not call .item() (a host synchronisation per step); the loss comes back as a tensor.
    With a fused optimizer, nothing in the step reads a number back (with another one, the scaler itself does)."""

    def no_item(self):
        raise AssertionError("amp_step read a number back to the host")

    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, fused=True)
    monkeypatch.setattr(torch.Tensor, "item", no_item)
    loss = m.amp_step(
        net, optimizer, torch.amp.GradScaler("cpu"), torch.randn(3, 4), torch.tensor([0, 1, 0]), torch.bfloat16
    )
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and not loss.requires_grad


def test_grad_scaler_skips_a_step_with_an_inf_gradient():
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    before = net.weight.detach().clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    x = torch.full((3, 4), float("inf"))
    m.amp_step(net, optimizer, scaler, x, torch.tensor([0, 1, 0]), torch.bfloat16)
    assert torch.equal(net.weight, before)  # the step was skipped
    assert scaler.get_scale() == 2.0**9  # and the scale halved


def test_compile_in_place_gives_the_eager_result_keeps_the_keys_and_reports_times():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    eager = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    eager.load_state_dict(mlp.state_dict())
    keys = list(mlp.state_dict())
    x = torch.randn(64, 784)
    with torch.no_grad():
        compile_s, per_call = m.measure_compile(mlp, x, "cpu", repeats=3)
        assert torch.allclose(mlp(x), eager(x), atol=1e-5)
    assert mlp._compiled_call_impl is not None  # compiled in place: the same module
    assert list(mlp.state_dict()) == keys  # no _orig_mod. prefix
    assert compile_s > 0 and set(per_call) == {"eager", "compiled"}


def test_compiled_train_step_matches_an_eager_step():
    torch.manual_seed(0)
    eager = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    compiled = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    compiled.load_state_dict(eager.state_dict())
    x, y = torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1])
    eager_opt = torch.optim.SGD(eager.parameters(), lr=0.1)
    step = m.compiled_train_step(compiled, torch.optim.SGD(compiled.parameters(), lr=0.1))
    for _ in range(2):
        loss = nn.functional.cross_entropy(eager(x), y)
        eager_opt.zero_grad()
        loss.backward()
        eager_opt.step()
        compiled_loss = step(x, y)
        assert torch.allclose(compiled_loss, loss, atol=1e-5)
    for a, b in zip(eager.parameters(), compiled.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_largest_batch_halves_on_out_of_memory():
    assert m.largest_batch_that_fits(m.pretend_step, 1024) == 256
    assert m.largest_batch_that_fits(m.pretend_step, 300) == 300
    with pytest.raises(RuntimeError, match="batch of 1"):
        m.largest_batch_that_fits(lambda b: (_ for _ in ()).throw(torch.OutOfMemoryError("x")), 8)
    assert issubclass(torch.OutOfMemoryError, RuntimeError)


def test_gradient_accumulation_gives_the_big_batch_gradient(page):
    assert torch.allclose(page.big_batch_grad, page.accumulated_grad, atol=1e-6)
    assert 0 < page.difference < 1e-7  # the page prints the bound, not the rounding noise itself
    assert page.big_batch_grad.abs().max() > 1e-3  # a real gradient, not zeros


def test_accumulation_without_dividing_by_steps_is_four_times_too_large():
    torch.manual_seed(0)
    net = nn.Linear(784, 10)
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))
    nn.functional.cross_entropy(net(x), y).backward()
    full = net.weight.grad.clone()
    net.zero_grad()
    for xp, yp in zip(x.chunk(4), y.chunk(4)):
        nn.functional.cross_entropy(net(xp), yp).backward()
    assert torch.allclose(net.weight.grad, 4 * full, atol=1e-5)


def test_optimizer_state_loaded_before_the_move_stays_behind():
    """The page's reason to load optimizer state after .to: load_state_dict casts the state to where each parameter
    is at that moment. float64 stands in for the device (same mechanism, observable on a CPU)."""
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(net.parameters())
    nn.functional.mse_loss(net(torch.randn(4, 3)), torch.zeros(4, 2)).backward()
    optimizer.step()
    saved = optimizer.state_dict()
    late = nn.Linear(3, 2)
    late_optimizer = torch.optim.Adam(late.parameters())
    late_optimizer.load_state_dict(saved)
    late.to(torch.float64)  # moved after loading: the parameters move in place, the state does not
    assert late_optimizer.param_groups[0]["params"][0] is late.weight  # same Parameter objects
    assert late_optimizer.state[late.weight]["exp_avg"].dtype == torch.float32
    nn.functional.mse_loss(
        late(torch.randn(4, 3, dtype=torch.float64)), torch.zeros(4, 2, dtype=torch.float64)
    ).backward()
    with pytest.raises(RuntimeError):
        late_optimizer.step()
    early = nn.Linear(3, 2).to(torch.float64)  # moved first, then optimizer and state: the state follows
    early_optimizer = torch.optim.Adam(early.parameters())
    early_optimizer.load_state_dict(saved)
    assert early_optimizer.state[early.weight]["exp_avg"].dtype == torch.float64


def test_to_device_copies_to_the_cpu_synchronously(monkeypatch):
    seen = []
    original = torch.Tensor.to

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("non_blocking"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    m.to_device({"x": torch.ones(1)}, "cpu")
    m.to_device({"x": torch.ones(1)}, "meta")
    assert seen == [False, True]


def test_exercise_to_device_moves_nested_tensors_and_keeps_the_rest(page):
    assert page.moved["image"].device.type == "meta" and page.moved["meta"][0].device.type == "meta"
    assert page.moved["meta"][1] == "id-7" and isinstance(page.moved["meta"], tuple)
    assert m.to_device([torch.ones(1)], "cpu")[0].device.type == "cpu"
    Pair = collections.namedtuple("Pair", "image label")
    pair = m.to_device(Pair(torch.ones(1), 3), "meta")
    assert type(pair) is Pair and pair.image.device.type == "meta" and pair.label == 3


def test_exercise_uneven_accumulation_matches_the_full_batch(page):
    assert torch.allclose(page.full_grad, page.linear.weight.grad, atol=1e-6)
    assert page.full_grad.abs().max() > 1e-3


def test_benchmark_record_is_fresh_and_leaves_the_gpu_entry_empty_only_with_a_reason():
    record = check_fresh(read_record("gpu"))
    devices = record["metrics"]["devices"]
    assert devices["cpu"] is not None
    assert set(devices["cpu"]["variants"]) == {"dataloader", "on-device", "amp", "compile"}
    if devices["gpu"] is None:
        assert record["metrics"]["missing"]["gpu"].startswith("not recorded: no GPU was available")
    for run in devices["cpu"]["variants"].values():
        assert run["images_per_s"] > 0 and run["accuracy"]


def test_bench_results_section_prints_the_record():
    names, out = run_section("benchmarks/reports/gpu.py", "bench-results")
    assert names["bench"] is not None and "cpu" in names["metrics"]["devices"]
    assert 'class="guide-record"' in out and "MNIST MLP 784-256-128-10" in out and "flags:" in out


def test_the_cpu_flags_behind_the_bfloat16_claim_are_recorded():
    """The page: the recording CPU's flags include avx512_bf16 (a record made on a CPU without it fails here: then
    the page's reading of the bfloat16 row needs rewriting)."""
    cpu = read_record("gpu")["metrics"]["devices"]["cpu"]
    assert cpu["instruction_sets"]["torch_capability"]
    assert "avx512_bf16" in cpu["instruction_sets"]["flags"]


# CUDA-only: written for CUDA, not yet run on a GPU here (they skip without CUDA).


def test_the_event_timer_takes_the_median_and_uses_the_device_agnostic_event(monkeypatch):
    """Without a GPU: torch.Event replaced by a stand-in whose intervals are 5, 1, 3, 9 ms (the median of an even
    count is the mean of the two middle ones, as time_it's)."""
    intervals = iter([5.0, 1.0, 3.0, 9.0])

    class StandInEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing

        def record(self):
            pass

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return next(intervals)

    monkeypatch.setattr(torch, "Event", StandInEvent)
    calls = []
    assert m.time_events_ms(lambda: calls.append(1), warmup=1, repeats=4) == 4.0
    assert len(calls) == 5


@needs_cuda
def test_events_time_a_kernel():
    a = torch.randn(2048, 2048, device="cuda")
    ms = m.time_events_ms(lambda: a @ a)
    assert 0 < ms < 1000


@needs_cuda
def test_time_it_synchronizes_on_cuda():
    a = torch.randn(4096, 4096, device="cuda")
    synced = m.time_it(lambda: a @ a, "cuda", warmup=2, repeats=5)
    assert synced == pytest.approx(m.time_events_ms(lambda: a @ a, warmup=2, repeats=5), rel=0.5, abs=0.5)


@needs_cuda
def test_peak_memory_sees_a_temporary_allocation():
    def allocate():
        torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # 268 MB, freed at once

    assert m.peak_memory_mb(allocate) >= 268


@needs_cuda
def test_a_real_out_of_memory_error_is_caught():
    free, _ = torch.cuda.mem_get_info()
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(free * 4, dtype=torch.uint8, device="cuda")
    torch.zeros(1, device="cuda")  # the device is still usable


@needs_cuda
def test_pinned_loader_and_non_blocking_copy_reach_the_gpu(page):
    loader = m.make_loader(page.dataset, 256, "cuda", num_workers=0)
    images, _ = next(iter(loader))
    assert images.is_pinned()
    assert images.to("cuda", non_blocking=True).device.type == "cuda"


def test_the_recorded_cpu_speeds_back_the_pages_reading_of_them():
    """The page: bfloat16 autocast's epochs run faster than float32's in this record; torch.compile does not pay
    off, and its first epoch pays the compilation."""
    variants = read_record("gpu")["metrics"]["devices"]["cpu"]["variants"]
    speed = {name: run["images_per_s"] for name, run in variants.items()}
    assert speed["amp"] > speed["on-device"]
    assert speed["compile"] < 1.1 * speed["on-device"]
    assert variants["compile"]["epoch_s"][0] > 2 * min(variants["compile"]["epoch_s"])
    assert speed["dataloader"] < speed["on-device"] / 3
