"""docs/practice.md: schedules, loss options, clipping, NaN hunting, TensorBoard logs read back, checkpoints that
resume bit-identically (also across processes), refuse bad files and survive a crash while saving.

The page's blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); the
tests that need a fresh state call the module's functions."""

import os
import re
import stat
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from conftest import (  # noqa: F401 (a test)
    CHAPTER_TEST_THREADS,
    ROOT,
    run_section,
    snippet_sections,
    test_the_page_prints_what_its_build_shows,
)
from torch import nn

import snippets.practice as p
from site_tools.records import check_fresh, read_record


@pytest.fixture(scope="module")
def digits():
    return p.digits_tensors()


def test_building_a_model_leaves_the_global_random_state_alone(monkeypatch):
    """The CPU generator is restored, and no other device's generator is seeded (torch.manual_seed would seed every
    GPU's: fork_rng(devices=[]) would not restore them)."""

    def reseeds(*args):
        pytest.fail("building a model seeded a device's generator")

    for device in (torch.cuda, torch.mps, torch.xpu):
        monkeypatch.setattr(device, "manual_seed_all", reseeds, raising=False)
        monkeypatch.setattr(device, "manual_seed", reseeds, raising=False)
    before = torch.get_rng_state()
    p.build_mlp(seed=3), p.deep_net(seed=3)
    assert torch.equal(before, torch.get_rng_state())
    monkeypatch.undo()
    first, again = p.build_mlp(seed=3), p.build_mlp(seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))


def test_weight_decay_goes_to_the_weight_matrices_only(printed, digits):
    assert "weight_decay 0.01: [(64, 64), (10, 64)]" in printed and "weight_decay 0.0: [(64,), (10,)]" in printed
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    decay, no_decay = p.parameter_groups(model, 0.1)
    assert [tuple(t.shape) for t in decay["params"]] == [(4, 4), (2, 4)] and decay["weight_decay"] == 0.1
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0  # two biases, the norm's scale and shift
    groups = p.Run(*digits).optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0] and sum(len(g["params"]) for g in groups) == 4


def test_the_wrong_order_warns_and_skips_the_first_rate(printed):
    flat = " ".join(printed.split())
    assert "Detected call of `lr_scheduler.step()` before `optimizer.step()`. In PyTorch 1.1.0 and later" in flat
    assert "you should call them in the opposite order: `optimizer.step()` before `lr_scheduler.step()`." in flat
    assert "learning rate of the first real step: 0.05" in printed


def test_learning_rates_are_what_the_scheduler_reports():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = p.warmup_cosine(optimizer, 30, 300)
    reported = []
    for _ in range(300):
        reported.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    rates = p.learning_rates(lambda opt: p.warmup_cosine(opt, 30, 300), 300)
    assert rates == pytest.approx(reported)
    assert rates[0] == pytest.approx(0.01) and rates[30] == pytest.approx(0.1) == max(rates)
    assert all(a <= b + 1e-12 for a, b in zip(rates[:30], rates[1:31]))  # warm-up rises
    assert all(a >= b - 1e-12 for a, b in zip(rates[30:], rates[31:]))  # then decays
    assert rates[-1] == pytest.approx(1e-4, rel=0.05)  # the rate of the last step, just above eta_min


def test_the_schedules_page_lines(printed):
    assert "warm-up 30, then cosine          first 0.0100 peak 0.1000 last 0.0001" in printed
    assert "StepLR(step_size=100, gamma=0.3) first 0.1000 peak 0.1000 last 0.009" in printed
    plateau = p.learning_rates(
        lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=20),
        300,
        metric=lambda step: 1.0 / (1 + min(step, 120) / 30),
    )
    assert plateau[:141] == [0.1] * 141 and plateau[142] == 0.05  # 21 calls without improvement after step 120
    assert f"ReduceLROnPlateau(patience=20)   first 0.1000 peak 0.1000 last {plateau[-1]:.2g}\n" in printed


def test_reductions_are_consistent(printed):
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
    targets = torch.tensor([0, 2, 1])
    each = nn.functional.cross_entropy(logits, targets, reduction="none")
    assert torch.isclose(each.mean(), nn.functional.cross_entropy(logits, targets))
    assert f"weighted mean: {((each[0] + each[1]) / 2).item()}" in printed
    assert "none: tensor([0.2413, 0.1096, 1.0986])" in printed  # log(3) for the uniform row


def measured(printed, steps):
    """{name: (recall 0-4, recall 5-9, precision 0-4, precision 5-9)} of the class-weight table."""
    rows = re.findall(rf"^{steps} steps, (no weight|weight) +(\S+) +(\S+) +(\S+) +(\S+)$", printed, re.M)
    return {name: tuple(map(float, values)) for name, *values in rows}


def test_class_weights_raise_the_recall_of_rare_digits(printed):
    assert "training images per digit: [" in printed
    short, long = measured(printed, 100), measured(printed, 300)
    assert set(short) == set(long) == {"no weight", "weight"}
    for results in (short, long):
        assert results["weight"][1] > results["no weight"][1] + 0.1  # the rare digits recognised far more often
        assert results["weight"][0] >= results["no weight"][0] - 0.05  # "a small cost in recall on the common ones"
        assert results["weight"][2] > results["no weight"][2]  # without weights: low precision on the common ones
    # "trained longer, the unweighted model catches up part of the way"
    assert short["no weight"][1] < long["no weight"][1] < long["weight"][1]


def test_pos_weight_finds_more_nines(printed):
    rows = dict(re.findall(r"^(plain|pos_weight)\s+recall (\S+)", printed, re.M))
    assert float(rows["pos_weight"]) > float(rows["plain"]) + 0.2
    counts = re.search(r"nines in training: (\d+); pos_weight (\S+)", printed)
    assert int(counts[1]) > 0 and float(counts[2]) > 10


def test_ignore_index_and_soft_targets(printed):
    assert "ignoring the unlabelled: True" in printed and "label_smoothing=0.1 is these soft targets: True" in printed
    assert "no label in the batch: tensor(nan)" in printed


def test_measuring_the_norm_leaves_the_gradients_alone():
    """get_total_norm (the page's way) reads the gradients; clip_grad_norm_ with an infinite limit (a common way to
    measure) writes NaN into all of them when the norm is infinite."""
    layer = nn.Linear(3, 1)
    layer.weight.grad, layer.bias.grad = torch.tensor([[float("inf"), 1.0, 2.0]]), torch.zeros(1)
    assert nn.utils.get_total_norm(p.grad for p in layer.parameters()) == float("inf")
    assert layer.weight.grad[0, 1:].tolist() == [1.0, 2.0]
    nn.utils.clip_grad_norm_(layer.parameters(), float("inf"))
    assert layer.weight.grad.isnan().all()
    assert "clip_grad_norm_(model.parameters(), float" not in snippet_sections("practice")["clipping"]


def test_clipping_cures_the_explosion(page_run):
    clipped = page_run.names_after("clipping-demo")  # the last run of the block: max_norm 1.0
    assert clipped.max_norm == 1.0 and len(clipped.norms) == 30
    assert clipped.losses[-1] < 1.0 < clipped.losses[0] and all(0 < n < float("inf") for n in clipped.norms)
    assert clipped.norms[0] > 50  # clip_grad_norm_ returns the norm before clipping


def test_the_clipping_lines(printed):
    unclipped = re.search(r"max_norm None: first gradient norm (\d+), largest (\S+); loss \S+ -> (.+)", printed)
    clipped = re.search(r"max_norm 1.0: first gradient norm (\d+), largest (\S+); loss \S+ -> (.+)", printed)
    assert unclipped[3] == "nan" and float(unclipped[2]) > 1e6 and clipped[3] == "below 1"
    assert unclipped[1] == clipped[1] == "93"  # "a gradient norm of 93 on the first step"


def test_the_scaler_skips_overflowing_steps_then_trains(printed):
    scales = [int(s) for s in re.search(r"scale after each step: (.*)", printed)[1].split()]
    norms = re.search(r"gradient norm \(unscaled\): (.*)", printed)[1].split()
    assert scales[0] == 65536 // 2 and scales == sorted(scales, reverse=True)  # halved on every overflow
    skipped = norms.count("inf")
    assert skipped >= 1 and norms[:skipped] == ["inf"] * skipped and "inf" not in norms[skipped:]
    assert scales[skipped - 1] == scales[-1]  # no more halving once the gradients fit


def test_anomaly_detection_finds_a_nan_that_only_the_backward_pass_makes(printed):
    assert "loss: 2.0 | gradient: tensor([   nan, 0.2500])" in printed  # a finite loss, a NaN gradient
    assert "RuntimeError: Function 'SqrtBackward0' returned nan values in its 0th output." in printed
    assert "Error detected in SqrtBackward0. Traceback of forward call that caused the error:" in printed
    lines = snippet_sections("practice")["anomaly"].splitlines()
    forward = [number for number, line in enumerate(lines, start=1) if "loss = torch.where" in line][-1]
    assert f"  ...the forward call: line {forward} of this block" in printed


def test_anomaly_detection_checks_for_nan_only():
    weights = torch.tensor([0.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Anomaly Detection has been enabled"
        with torch.autograd.detect_anomaly():
            weights.sqrt().sum().backward()  # an infinite gradient: no error
    assert weights.grad.isinf().all()


def test_a_non_finite_gradient_norm_raises_before_the_step(printed):
    flat = " ".join(printed.split())
    assert "RuntimeError: The total norm of order 2.0 for gradients from `parameters` is non-finite" in flat


def test_tensorboard_logs_what_the_page_says(page, printed):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(page.log_dir), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {"loss/train", "loss/validation", "accuracy/validation", "lr"}
    assert tags["histograms"] == ["weights/first-layer"]
    steps = len(page.run.loader)
    validation = events.Scalars("loss/validation")
    assert [e.step for e in validation] == [steps, 2 * steps, 3 * steps, 4 * steps]  # optimizer steps, not epochs
    logged = re.findall(r"^epoch (\d): loss train (\S+) validation (\S+), accuracy (\S+)$", printed, re.M)
    assert [round(e.value, 3) for e in validation] == [float(v) for _, _, v, _ in logged]
    assert [round(e.value, 3) for e in events.Scalars("loss/train")] == [float(t) for _, t, _, _ in logged]
    assert all(0.5 < e.value <= 1 for e in events.Scalars("accuracy/validation"))
    histogram = events.Histograms("weights/first-layer")[-1].histogram_value
    assert histogram.num == 64 * 64 and histogram.min == pytest.approx(page.run.model[0].weight.min().item())
    best_epoch = min(logged, key=lambda row: float(row[2]))[0]
    assert f"best.pt: epoch {best_epoch} |" in printed and page.best_state["epoch"] == int(best_epoch)
    assert page.best.path.parent == page.log_dir and f"tensorboard --logdir {page.log_dir.parent}\n" in printed


def test_the_best_checkpoint_is_kept_only_when_the_loss_falls(tmp_path):
    best = p.BestCheckpoint(tmp_path / "best.pt")
    saved = [best.update(loss, {"epoch": epoch}) for epoch, loss in enumerate([0.9, 0.7, 0.8, 0.6, 0.6, float("nan")])]
    assert saved == [True, True, False, True, False, False] and best.loss == 0.6
    assert p.load_checkpoint(best.path) == {"epoch": 3}


def test_evaluate_uses_eval_and_inference_mode_and_restores_the_mode(digits):
    images, labels = digits
    model = p.build_mlp(dropout=0.5).train()
    modes = []
    model.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    loss, accuracy = p.evaluate(model, images, labels, batch_size=100)
    assert modes == [True] * 18  # every batch, in inference mode
    assert model.training  # restored
    with torch.no_grad():
        logits = model.eval()(images)  # dropout off: the same numbers as evaluate's
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    assert accuracy == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert p.evaluate(model.eval(), images, labels)[0] == pytest.approx(loss) and not model.training


def test_the_page_resumes_bit_identically_at_an_epoch_end_and_in_the_middle(printed):
    assert "resumed from epoch-2.pt          bit-identical: True" in printed
    assert "resumed from epoch-2-batch-10.pt bit-identical: True" in printed
    size = int(re.search(r"checkpoint: (\d+) KiB", printed)[1])
    assert 50 < size < 200


def test_a_mid_epoch_checkpoint_without_the_epochs_start_would_not_resume_exactly(digits):
    """Why the checkpoint keeps the generator's state from the start of the epoch: the state at the time of saving
    has already drawn the epoch's order, and resuming from it gives another order."""
    torch.manual_seed(0)
    run = p.Run(*digits)
    run.train_epoch(stop_after=5)
    state = run.state()
    order = [targets for _inputs, targets in run.loader]  # what a fresh iteration draws now
    assert state["batch"] == 5 and not torch.equal(run.shuffle.get_state(), state["rng"]["shuffle"])
    resumed = p.Run(*digits)
    resumed.load_state(state)
    resumed.shuffle.set_state(resumed.epoch_start)
    replayed = [targets for _inputs, targets in resumed.loader]
    assert not all(torch.equal(a, b) for a, b in zip(order, replayed))


def test_after_resumption_the_optimizer_state_is_where_the_parameters_are(printed, digits):
    """The page's order (move, then load) with a dtype standing in for a device, and the wrong order's failure."""
    assert "load, then move: parameters torch.float64, AdamW's moments torch.float32" in printed
    assert "RuntimeError: expected dtype float" in " ".join(printed.split())
    assert "move, then load: parameters torch.float64, AdamW's moments torch.float64\n  next step: fine" in printed
    torch.manual_seed(0)
    run = p.Run(*digits)
    run.train_epoch(stop_after=3)
    state = run.state()
    moved = p.Run(*digits)
    moved.model.to(torch.float64)
    moved.load_state(state)
    for parameter in moved.model.parameters():
        for name, value in moved.optimizer.state[parameter].items():
            if name != "step":  # a CPU scalar for a non-fused optimizer, wherever the parameters are
                assert (value.dtype, value.device) == (parameter.dtype, parameter.device)


def test_a_run_built_on_a_device_loads_the_optimizer_state_onto_it(digits, tmp_path):
    """Run(..., device=...) puts the model on its device before the optimizer exists; the meta device stands in for
    a GPU (no GPU here). The random states stay on the CPU, where torch.set_rng_state wants them."""
    torch.manual_seed(0)
    run = p.Run(*digits)
    run.train_epoch(stop_after=3)
    p.save_checkpoint(run.state(), tmp_path / "run.pt")
    elsewhere = p.Run(*digits, device="meta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copying into meta parameters is a no-op, and torch says so
        elsewhere.load_state(p.load_checkpoint(tmp_path / "run.pt"))
    for parameter in elsewhere.model.parameters():
        assert parameter.device.type == "meta"
        assert {v.device.type for k, v in elsewhere.optimizer.state[parameter].items() if k != "step"} == {"meta"}
    assert elsewhere.batch == 3 and torch.get_rng_state().device.type == "cpu"
    with pytest.raises(TypeError, match="ByteTensor"):  # why load_checkpoint reads onto the CPU
        torch.set_rng_state(torch.get_rng_state().to("meta"))


def test_a_run_resumed_in_another_process_is_bit_identical(page, digits, tmp_path):
    """This process trains two epochs and 10 batches and saves; a new process loads and finishes. The same numbers as
    the page's uninterrupted run (trained, as everything here, with the chapter test's threads)."""
    images, labels = digits
    threads = torch.get_num_threads()
    torch.set_num_threads(CHAPTER_TEST_THREADS)
    try:
        torch.manual_seed(0)
        run = p.Run(images, labels)
        for stop_after in [None, None, 10]:
            run.train_epoch(stop_after)
        p.save_checkpoint(run.state(), tmp_path / "run.pt")
    finally:
        torch.set_num_threads(threads)
    script = textwrap.dedent(f"""
        import torch
        torch.set_num_threads({CHAPTER_TEST_THREADS})
        import snippets.practice as p
        run = p.Run(*p.digits_tensors())
        run.load_state(p.load_checkpoint("run.pt"))
        while run.epoch < p.CONFIG["epochs"]:
            run.train_epoch()
        torch.save(run.model.state_dict(), "final.pt")
    """)
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        check=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    resumed = torch.load(tmp_path / "final.pt", weights_only=True)
    assert all(torch.equal(resumed[k], v) for k, v in page.uninterrupted.model.state_dict().items())


def test_the_checkpoint_holds_every_state_that_matters(digits):
    run = p.Run(*digits)
    run.train_epoch()
    state = run.state()
    assert set(state) == {"config", "epoch", "batch", "model", "optimizer", "scheduler", "scaler", "rng"}
    assert set(state["rng"]) == {"torch", "cuda", "shuffle", "python"} and (state["epoch"], state["batch"]) == (1, 0)
    assert state["scheduler"]["last_epoch"] == len(run.loader)  # counted per batch


def test_a_truncated_or_corrupt_file_is_refused_with_its_name(tmp_path, digits, printed):
    run = p.Run(*digits)
    p.save_checkpoint(run.state(), tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    for name, content in [
        ("half.pt", data[: len(data) // 2]),
        ("tail.pt", data[:-100]),
        ("noise.pt", os.urandom(4096)),
        ("empty.pt", b""),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(p.CheckpointError, match=re.escape(str(tmp_path / name))):
            p.load_checkpoint(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        p.load_checkpoint(tmp_path / "missing.pt")
    assert "truncated.pt is not a usable checkpoint: truncated or corrupt" in " ".join(printed.split())


def test_another_model_is_refused_before_anything_is_loaded(digits):
    run = p.Run(*digits)
    state = run.state()
    state["model"] = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(), nn.Linear(32, 10)).state_dict()
    target = p.Run(*digits)
    before = [t.clone() for t in target.model.state_dict().values()]
    with pytest.raises(p.CheckpointError, match=r"another model: \['0.bias', '0.weight', '3.weight'\]"):
        target.load_state(state)
    assert all(torch.equal(a, b) for a, b in zip(before, target.model.state_dict().values()))


def test_a_changed_configuration_is_detected(digits, printed):
    state = p.Run(*digits).state()
    with pytest.raises(p.CheckpointError, match=r"another configuration: \{'batch_size': \(64, 32\)\}"):
        p.Run(*digits, {**p.CONFIG, "batch_size": 32}).load_state(state)
    assert "another configuration: {'lr': (0.003," in printed


def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch, digits):
    run = p.Run(*digits)
    path = tmp_path / "run.pt"
    p.save_checkpoint(run.state(), path)
    before = path.read_bytes()
    run.train_epoch()

    def crash_midway(obj, file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # or the power goes

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        p.save_checkpoint(run.state(), path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]  # no partial file left
    monkeypatch.undo()
    assert p.load_checkpoint(path)["epoch"] == 0


def test_a_checkpoint_gets_the_permissions_of_a_new_file_and_its_folder_is_synced(tmp_path, monkeypatch):
    """mkstemp's files are private (0600): colleagues and a serving job could not read them. And the rename is only
    durable once the folder is on the disk too."""
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        synced.append(stat.S_ISDIR(os.fstat(descriptor).st_mode))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    old_umask = os.umask(0o022)
    try:
        p.save_checkpoint({"x": torch.ones(2)}, tmp_path / "run.pt")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "run.pt").stat().st_mode) == 0o644
    assert synced == [False, True]  # the file, then its folder


def test_weights_only_refuses_an_unknown_class_until_allowed(printed):
    flat = " ".join(printed.split())
    assert "paths.pt is not a usable checkpoint: it holds types weights_only refuses: ['pathlib." in flat
    assert "\ndata/digits\n" in printed


def test_keep_last_keeps_the_newest_by_how_far_the_run_got_and_leaves_other_files(tmp_path, printed):
    others = ["best.pt", "epoch-best.pt", "epoch-3.pt.partial", "epoch-3-batch-x.pt"]
    places = [(1, 0), (2, 0), (2, 10), (9, 0), (9, 5), (10, 0), (10, 20), (11, 0)]
    for name in [*(p.checkpoint_name(*place) for place in places), *others]:
        (tmp_path / name).write_bytes(b"x")
    assert p.checkpoint_name(2) == "epoch-2.pt" and p.checkpoint_name(2, 10) == "epoch-2-batch-10.pt"
    kept = p.keep_last(tmp_path, keep=3)
    assert [k.name for k in kept] == ["epoch-10.pt", "epoch-10-batch-20.pt", "epoch-11.pt"]  # 10 after 9, not after 1
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([k.name for k in kept] + others)
    assert "kept: ['epoch-4.pt', 'epoch-5.pt', 'epoch-6.pt']" in printed
    assert "also in the folder: ['paths.pt', 'truncated.pt']" in printed  # the mid-epoch checkpoint went too
    with pytest.raises(ValueError, match="keep at least the newest"):
        p.keep_last(tmp_path, keep=0)
    assert len(list(tmp_path.iterdir())) == 3 + len(others)


def test_a_batch_sampler_indexes_the_dataset_once_per_batch_and_getitems_needs_a_collate_fn():
    """The profile section's advice: a sampler of whole batches with batch_size=None; __getitems__ returning a batch
    fails with the default collate_fn."""
    from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

    class Counted(TensorDataset):
        calls = 0

        def __getitem__(self, index):
            Counted.calls += 1
            return super().__getitem__(index)

    data = Counted(torch.arange(200.0), torch.arange(200))
    sampler = BatchSampler(RandomSampler(data, generator=torch.Generator().manual_seed(0)), 64, drop_last=False)
    batches = list(DataLoader(data, sampler=sampler, batch_size=None))
    assert Counted.calls == 4 and [len(x) for x, _ in batches] == [64, 64, 64, 8]
    assert torch.equal(torch.cat([x for x, _ in batches]).sort().values, torch.arange(200.0))

    class WholeBatch(Dataset):
        def __init__(self, features, labels):
            self.features, self.labels = features, labels

        def __len__(self):
            return len(self.labels)

        def __getitems__(self, indices):
            return self.features[indices], self.labels[indices]

    images = torch.rand(200, 64)
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        next(iter(DataLoader(WholeBatch(images, data.tensors[1]), batch_size=64)))
    # features and labels of one shape: stacked as if they were two items, without an error
    stacked = next(iter(DataLoader(WholeBatch(*data.tensors), batch_size=64)))
    assert stacked.shape == (2, 64)
    passed_through = DataLoader(WholeBatch(images, data.tensors[1]), batch_size=64, collate_fn=lambda batch: batch)
    features, labels = next(iter(passed_through))
    assert features.shape == (64, 64) and labels.shape == (64,)


def test_threads_change_the_last_bits_only(printed):
    assert "1 thread and 2 threads, bit-identical: " in printed
    assert "largest difference below 1e-4: True" in printed


def test_seeded_runs_repeat_exactly_with_deterministic_algorithms(digits):
    torch.use_deterministic_algorithms(True)
    try:
        first, second = (p.train_with_threads(1, *digits, epochs=1) for _ in range(2))
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(first, second)


def test_an_op_without_a_deterministic_implementation_raises_and_the_flag_is_reset(printed):
    assert "RuntimeError: put_ does not have a deterministic implementation, but you set" in printed
    assert not torch.are_deterministic_algorithms_enabled()


def test_exercises(printed):
    assert "after 15 steps: 0.0550; peak 0.1 at step 30" in printed
    assert "bit-identical to the uninterrupted run: False" in printed
    assert re.search(r"uninterrupted +\d+ mistakes", printed) and re.search(r"weights only +\d+ mistakes", printed)


# the recorded profile: python -m benchmarks.practice --record

# The load average when the recording started: below one busy core, which a machine with nothing else running meets
# (a 2-core machine shared with other jobs does not).
IDLE_LOAD = 1.0


def test_the_profile_record_is_fresh_and_says_what_the_page_says():
    record = check_fresh(read_record("practice"))
    metrics = record["metrics"]
    top = {event["name"]: event["share"] for event in metrics["top"]}
    loader = sum(share for name, share in top.items() if "DataLoader" in name)
    arithmetic = sum(share for name, share in top.items() if name in ("aten::addmm", "aten::mm"))
    assert loader > 2 * arithmetic and arithmetic < 0.1  # "a small part of the time"; the DataLoader far more
    assert top.get("aten::select", 0) > 0 and any("AdamW" in name for name in top)
    assert metrics["overhead"] > 1  # "the profiled epoch is slower than a plain one"
    phases = metrics["phase_seconds"]
    share = {phase: seconds / sum(phases.values()) for phase, seconds in phases.items()}
    assert share["loader"] + share["optimizer"] > 0.5  # "loading the batch and the optimizer take a large part"
    assert metrics["load_average"][0] < IDLE_LOAD  # recorded on an idle machine


def test_the_recorded_profile_renders():
    _, out = run_section("benchmarks/reports/practice.py", "profile")
    assert out.count('class="guide-record"') == 1 and "aten::addmm" in out
