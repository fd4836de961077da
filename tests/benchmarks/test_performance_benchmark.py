"""The performance benchmark's pieces, on the tiny IDX fixture of tests/conftest.py (no MNIST files needed): the
ladder of loops, batches that are the same however they are cut, every loop training the same model, and the page's
report rendered from a record the benchmark writes. The numbers are recorded by ``python -m benchmarks.performance
--data-root data --record`` on an idle machine."""

import copy
import dataclasses
import html
import re
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_sections, snippet_sections

import benchmarks.performance as bench
import site_tools.records as records
import snippets.mnist as m

pytestmark = pytest.mark.usefixtures("keep_threads")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_run(mnist_root, tmp_path_factory):
    """main() on the 200 fixture digits, one round; the two fresh compiling processes left out (seconds each)."""
    fresh = {"imports": 1.0, "first_step": 2.0, "second_step": 0.001, "eager_step": 0.001, "caches": {"hit": 1}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "compile_seconds", lambda: {"cold": fresh, "warm": fresh})
        patch.setattr(bench, "GFLOPS_BATCHES", (128, 256))
        patch.setattr(bench, "matmul_gflops", lambda batch: batch / 2)  # the floor must use the best: 128
        patch.setattr(bench, "TIMER_SECONDS", 0.02)
        try:
            metrics = bench.main(["--data-root", str(mnist_root), "--rounds", "1"])
        finally:
            torch._dynamo.reset()
    # the report's columns are sized for an epoch's ratios to the floor on MNIST (2 to 4), not on 200 images
    shown = copy.deepcopy(metrics)
    for row in shown["rows"]:
        row.update(floor_ratios=[2.0], median_ratio=2.0, against_before=1.05)
    records_dir = tmp_path_factory.mktemp("records")
    records.write_record("performance", shown, bench.PRODUCERS, "cpu", records_dir=records_dir)
    return metrics, records_dir


def test_the_record_would_be_produced_by_the_benchmark_and_the_two_chapter_modules():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/performance.py", "snippets/mnist.py", "benchmarks/performance.py"}


def test_each_row_of_the_ladder_makes_one_change_and_row_6_is_the_mnist_chapters_loop():
    loops = [loop for _, loop in bench.ladder_loops()]
    for (_, change), before, after in zip(bench.LADDER[1:], loops, loops[1:]):
        changed = {f.name for f in dataclasses.fields(bench.Loop) if getattr(before, f.name) != getattr(after, f.name)}
        assert changed == set(change), change
    # snippets/mnist.py: fit's train_epoch, fused AdamW (make_optimizer), zero_grad(set_to_none=True), no .item()
    assert loops[5] == bench.Loop(batch_size=512)
    assert m.make_optimizer(m.build_model(), lr=1e-3).defaults["fused"]
    asides = [loop for _, loop in bench.all_loops()[len(bench.LADDER) :]]
    for (_, change), aside in zip(bench.ASIDES, asides, strict=True):  # one change each to row 6
        assert aside == dataclasses.replace(loops[bench.CHAPTER_ROW], **change)


def test_one_gather_per_epoch_cuts_the_same_batches_as_the_mnist_chapter():
    images, labels = torch.randn(1000, 784), torch.randint(0, 10, (1000,))
    chapter = bench.Trainer(bench.Loop(batch_size=300), images, labels, epochs=2)
    gathered = bench.Trainer(bench.Loop(batch_size=300, one_gather_per_epoch=True), images, labels, epochs=2)
    for _ in range(2):  # a new order every epoch
        pairs = list(zip(chapter.batches(), gathered.batches(), strict=True))
        assert [len(y) for (_, y), _ in pairs] == [300, 300, 300, 100]
        assert all(torch.equal(x, x2) and torch.equal(y, y2) for (x, y), (x2, y2) in pairs)


def test_every_loop_trains_the_same_model_to_the_same_loss(tiny_run):
    metrics, _ = tiny_run
    rows = metrics["rows"]
    assert [row["label"] for row in rows] == [label for label, _ in bench.all_loops()]
    same = [
        row["last_loss"]
        for row in rows
        if row["loop"]["batch_size"] == 512 and not row["loop"]["compile_optimizer"] and not row["loop"]["bfloat16"]
    ]
    assert len(same) == len(rows) - 5  # not batch 128 (twice) or 2048, the fixed beta1, bfloat16
    assert max(same) - min(same) < 1e-4 * max(same)  # the same steps, summed in other orders


def test_row_6_is_the_mnist_chapters_train_epoch_bit_for_bit():
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.randn(1500, 784, generator=generator), torch.randint(0, 10, (1500,), generator=generator)
    trainer = bench.Trainer(bench.ladder_loops()[bench.CHAPTER_ROW][1], images, labels, epochs=2)
    torch.manual_seed(0)
    model = m.build_model((128,))
    optimizer = m.make_optimizer(model, 3e-3, 0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=2 * 3)
    batches_generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        trainer.epoch()
        loss = m.train_epoch(model, m.batches(images, labels, 512, batches_generator), optimizer, scheduler)
        assert trainer.loss == loss
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.parameters(), model.parameters()))


def test_each_trainer_does_what_its_row_says(monkeypatch):
    images, labels = torch.randn(600, 784), torch.randint(0, 10, (600,))
    threads_seen = []
    real_train_epoch = bench.Trainer.train_epoch

    def train_epoch(self):
        threads_seen.append(torch.get_num_threads())
        return real_train_epoch(self)

    monkeypatch.setattr(bench.Trainer, "train_epoch", train_epoch)
    for label, loop in bench.all_loops():
        trainer = bench.Trainer(loop, images, labels, epochs=1)
        defaults = trainer.optimizer.defaults
        implementation = "fused" if defaults["fused"] else "foreach" if defaults["foreach"] else "for-loop"
        assert implementation == loop.optimizer, label
        assert hasattr(trainer.loss_of, "_torchdynamo_orig_callable") == loop.compile_model, label
        assert hasattr(trainer.update, "_torchdynamo_orig_callable") == loop.compile_optimizer, label
        assert trainer.scheduler.cycle_momentum != loop.compile_optimizer, label
        if loop.threads:
            threads_seen.clear()
            before = torch.get_num_threads()
            trainer.epoch()
            assert threads_seen == [loop.threads] and torch.get_num_threads() == before
    torch._dynamo.reset()


def test_item_per_step_and_set_to_none_change_the_calls(monkeypatch):
    images, labels = torch.randn(1024, 784), torch.randint(0, 10, (1024,))
    calls = []
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append("item") or float(self.detach()))
    for set_to_none, item_per_step in [(False, True), (True, False)]:
        trainer = bench.Trainer(bench.Loop(set_to_none=set_to_none, item_per_step=item_per_step), images, labels, 1)
        seen = []
        real_zero_grad = trainer.optimizer.zero_grad

        def zero_grad(set_to_none, seen=seen, real_zero_grad=real_zero_grad):
            seen.append(set_to_none)
            real_zero_grad(set_to_none)

        trainer.optimizer.zero_grad = zero_grad
        calls.clear()
        trainer.epoch()
        assert seen == [set_to_none, set_to_none] and calls.count("item") == (2 if item_per_step else 0)


def test_vs_before_pairs_each_row_with_the_row_it_changes_round_by_round():
    loops = bench.all_loops()
    seconds = [[1.0 + number, 2.0 + 2 * number] for number in range(len(loops))]  # round 2 twice as slow
    rows = bench.summarise(loops, seconds, floors=[0.5, 1.0])
    assert rows[0]["floor_ratios"] == [2.0, 2.0] and rows[0]["median_ratio"] == 2.0
    assert rows[3]["against_before"] == 4 / 3  # row 4 against row 3, in each round
    for aside in range(len(bench.LADDER), len(loops)):  # the asides: against the MNIST chapter's loop
        assert rows[aside]["against_before"] == (1 + aside) / (1 + bench.CHAPTER_ROW)


def test_a_tiny_run_measures_every_piece(tiny_run):
    metrics, _ = tiny_run
    assert all(len(row["epoch_seconds"]) == len(row["floor_ratios"]) == 1 for row in metrics["rows"])
    assert metrics["matmul_gflops"] == [128] and len(metrics["floor_seconds"]) == 1  # the best of 64 and 128
    assert metrics["flops_per_epoch"] == 409_088 * 200 == metrics["images"] * 409_088
    profiled = metrics["profile"]
    assert set(profiled["matmul_seconds"]) == set(bench.MATMULS)
    assert 0 < sum(profiled["matmul_seconds"].values()) < profiled["self_seconds_total"]
    top = [seconds for _, seconds in profiled["top_operators"]]
    assert top == sorted(top, reverse=True) and len(top) == 10
    assert set(metrics["timer"]) == {1, 2} and all(t["runs"] > 0 for t in metrics["timer"].values())
    plain, checkpointed = metrics["checkpoint"]["plain"], metrics["checkpoint"]["checkpointed"]
    assert checkpointed["saved_bytes"] < plain["saved_bytes"]


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--rounds", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_the_fresh_process_code_is_python():
    compile(bench.FRESH_PROCESS.format(threads=1), "fresh", "exec")


def test_the_report_renders_from_the_record(tiny_run, monkeypatch):
    _, records_dir = tiny_run
    real_read = records.read_record
    monkeypatch.setattr(records, "read_record", lambda name: real_read(name, records_dir))
    report = "benchmarks/reports/performance.py"
    _, outputs = run_sections(report, list(snippet_sections(report)))
    text = "\n".join(html.unescape(re.sub(r"<[^>]+>", "", out)) for out in outputs)
    assert "Not recorded yet" not in text
    assert "no .item() per step" in text and "784x128 weight gradient" in text
    assert "importing AOTAutograd and Inductor" in text
    for out in outputs:  # the printed lines fit the page's column
        for code in re.findall(r"<code>(.*?)</code>", out, flags=re.S):
            for line in html.unescape(code).splitlines():
                assert len(line) <= 84 or line.startswith("by "), line  # the command: here pytest's
