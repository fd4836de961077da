"""docs/practice.md: schedules, loss options, clipping, NaN hunting, TensorBoard logs read back, checkpoints that
resume bit-identically (also across processes), refuse bad files and survive a crash while saving.

The page's blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); the
tests that need a fresh state call the module's functions."""

import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT, run_section, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from torch import nn

import snippets.practice as p
from site_tools.records import check_fresh, read_record


@pytest.fixture(scope="module")
def digits():
    return p.digits_tensors()


def test_the_wrong_order_warns_and_skips_the_first_rate(printed):
    assert "Detected call of `lr_scheduler.step()` before `optimizer.step()`" in printed
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


def recalls(printed, steps):
    rows = re.findall(rf"{steps} steps, (no weight|weight)\s+recall 0-4: (\S+)  5-9: (\S+)  worst: (\S+)", printed)
    return {name: tuple(map(float, values)) for name, *values in rows}


def test_class_weights_raise_the_recall_of_rare_digits(printed):
    assert "training images per digit: [" in printed
    short, long = recalls(printed, 100), recalls(printed, 300)
    assert short["weight"][1] > short["no weight"][1] + 0.2 and short["weight"][2] > short["no weight"][2]
    assert short["weight"][0] >= short["no weight"][0] - 0.05  # "a small cost on the common ones"
    # "trained longer, the unweighted model catches up part of the way"
    assert short["no weight"][1] < long["no weight"][1] < long["weight"][1]


def test_pos_weight_finds_more_nines(printed):
    rows = dict(re.findall(r"^(plain|pos_weight)\s+recall (\S+)", printed, re.M))
    assert float(rows["pos_weight"]) > float(rows["plain"]) + 0.2
    counts = re.search(r"nines in training: (\d+); pos_weight (\S+)", printed)
    assert int(counts[1]) > 0 and float(counts[2]) > 10


def test_ignore_index_and_soft_targets(printed):
    assert "ignoring the unlabelled: True" in printed and "label_smoothing=0.1 is these soft targets: True" in printed


def test_clipping_cures_the_explosion(digits):
    images, labels = digits
    norms, losses = p.train_steps(p.deep_net(), images[:256], labels[:256], steps=30, lr=0.1)
    assert not torch.isfinite(torch.tensor(losses[-1])) and norms[0] > 50
    norms, losses = p.train_steps(p.deep_net(), images[:256], labels[:256], steps=30, lr=0.1, max_norm=1.0)
    assert losses[-1] < 1.0 < losses[0] and all(map(lambda n: n == n and n < float("inf"), norms))


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


def test_anomaly_detection_names_the_backward_function(printed):
    assert "loss: nan" in printed
    assert "RuntimeError: Function 'LogBackward0' returned nan values in its 0th output." in printed
    assert "Error detected in LogBackward0. Traceback of forward call that caused the error:" in printed


def test_a_non_finite_gradient_norm_raises_before_the_step(printed):
    flat = " ".join(printed.split())
    assert "RuntimeError: The total norm of order 2.0 for gradients from `parameters` is non-finite" in flat


def test_tensorboard_logs_what_the_page_says(page):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(page.log_dir), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {"accuracy/train", "lr"} and tags["histograms"] == ["weights/first-layer"]
    accuracy = events.Scalars("accuracy/train")
    assert [e.step for e in accuracy] == [0, 1, 2] and all(0.5 < e.value <= 1 for e in accuracy)
    assert accuracy[-1].value > accuracy[0].value
    histogram = events.Histograms("weights/first-layer")[-1].histogram_value
    assert histogram.num == 64 * 64 and histogram.min == pytest.approx(page.run.model[0].weight.min().item())


def test_the_page_resumes_bit_identically(printed):
    assert "resumed after epoch 2, bit-identical to the uninterrupted run: True" in printed
    size = int(re.search(r"checkpoint: (\d+) KiB", printed)[1])
    assert 50 < size < 200


def test_a_run_resumed_in_another_process_is_bit_identical(digits, tmp_path):
    """Two processes: one trains two epochs, saves and dies; the next loads and finishes. The same numbers."""
    images, labels = digits
    threads = torch.get_num_threads()
    script = textwrap.dedent(f"""
        import os, sys, torch
        torch.set_num_threads({threads})
        import snippets.practice as p
        images, labels = p.digits_tensors()
        run = p.Run(images, labels)
        if sys.argv[1] == "start":
            for _ in range(2):
                run.train_epoch()
            p.save_checkpoint(run.state(), "run.pt")
            os._exit(0)  # no clean-up, as a killed process
        run.load_state(p.load_checkpoint("run.pt"))
        while run.epoch < p.CONFIG["epochs"]:
            run.train_epoch()
        torch.save(run.model.state_dict(), "final.pt")
    """)
    for step in ("start", "resume"):
        subprocess.run(
            [sys.executable, "-c", script, step],
            cwd=tmp_path,
            check=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    uninterrupted = p.Run(images, labels)
    for _ in range(p.CONFIG["epochs"]):
        uninterrupted.train_epoch()
    resumed = torch.load(tmp_path / "final.pt", weights_only=True)
    assert all(torch.equal(resumed[k], v) for k, v in uninterrupted.model.state_dict().items())


def test_the_checkpoint_holds_every_state_that_matters(digits):
    run = p.Run(*digits)
    run.train_epoch()
    state = run.state()
    assert set(state) == {"config", "epoch", "model", "optimizer", "scheduler", "scaler", "rng"}
    assert set(state["rng"]) == {"torch", "cuda", "shuffle", "python"} and state["epoch"] == 1
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
    assert "truncated.pt is not a readable checkpoint" in printed


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


def test_weights_only_refuses_an_unknown_class_until_allowed(printed):
    flat = " ".join(printed.split())
    assert "Unsupported global: GLOBAL pathlib." in flat and "Path was not an allowed global" in flat
    assert "\ndata/digits\n" in printed


def test_keep_last_keeps_the_newest_by_epoch_number(tmp_path, printed):
    for epoch in (1, 2, 9, 10, 11):
        (tmp_path / f"epoch-{epoch}.pt").write_bytes(b"x")
    kept = p.keep_last(tmp_path, keep=3)
    assert [k.name for k in kept] == ["epoch-9.pt", "epoch-10.pt", "epoch-11.pt"]  # 10 after 9, not after 1
    assert sorted(x.name for x in tmp_path.iterdir()) == ["epoch-10.pt", "epoch-11.pt", "epoch-9.pt"]
    assert "kept: ['epoch-4.pt', 'epoch-5.pt', 'epoch-6.pt']" in printed
    with pytest.raises(ValueError, match="keep at least the newest"):
        p.keep_last(tmp_path, keep=0)
    assert len(list(tmp_path.iterdir())) == 3


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


def test_the_profile_record_is_fresh_and_says_what_the_page_says():
    record = check_fresh(read_record("practice"))
    top = {event["name"]: event["share"] for event in record["metrics"]["top"]}
    loader = sum(share for name, share in top.items() if "DataLoader" in name)
    arithmetic = sum(share for name, share in top.items() if name in ("aten::addmm", "aten::mm"))
    assert loader > 2 * arithmetic and arithmetic < 0.1  # "under a tenth"; the DataLoader far more
    assert top.get("aten::select", 0) > 0 and any("AdamW" in name for name in top)


def test_the_recorded_profile_renders():
    _, out = run_section("benchmarks/reports/practice.py", "profile")
    assert out.count('class="guide-record"') == 1 and "aten::addmm" in out
