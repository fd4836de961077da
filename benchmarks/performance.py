"""The performance chapter's timings (a script, not a test): the case study of
the MNIST chapter's MLP against its compute floor, the Timer's and the
profiler's numbers, compile times cold and warm, and checkpointing's cost.

    python -m benchmarks.performance --data-root data            # print them
    python -m benchmarks.performance --data-root data --record   # and record them

``--record`` writes docs/records/performance.json and refuses to start above a
load average of 0.5 (benchmarks.cnn's guard). The case study trains one model
per loop, all from seed 0 on the same batches, and runs their epochs in turn,
round after round, measuring the floor again at the start of each round: on a
shared machine the speed drifts from second to second, and a ratio taken
within one round is not moved by that drift. Needs the MNIST files (see the
MNIST chapter); the rest runs on random tensors.
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import snippets.mnist as mnist
import snippets.performance as chapter
import torch
import torch.nn.functional as F
from site_tools.records import write_record
from torch.profiler import ProfilerActivity, profile
from torch.utils import benchmark

from benchmarks.cnn import IDLE_LOAD, refuse_a_busy_machine
from benchmarks.mnist import matmul_gflops

PRODUCERS = [chapter.__file__, mnist.__file__, __file__]
MATMULS = ("aten::mm", "aten::addmm")  # the matrix products of Linear layers
GFLOPS_BATCHES = (128, 512, 4096)  # the MNIST benchmark's floor: the best of these
TIMER_SECONDS = 1.0  # blocked_autorange's min_run_time for each timing
PROFILED_EPOCHS = 3  # of the MNIST chapter's loop, each beside one without it


@dataclasses.dataclass(frozen=True)
class Loop:
    """One way to write the MNIST chapter's training loop (AdamW, one-cycle
    learning rate, 784-128-10): every field is one of the changes measured."""

    batch_size: int = 512
    set_to_none: bool = True  # zero_grad(set_to_none=...)
    optimizer: str = "fused"  # AdamW's implementation: for-loop, foreach, fused
    item_per_step: bool = False  # loss.item() after every step
    one_gather_per_epoch: bool = False  # shuffle once, then slice batches
    compile_model: bool = False  # torch.compile the forward pass and the loss
    compile_optimizer: bool = False  # torch.compile optimizer and scheduler steps
    threads: int = 0  # torch.set_num_threads; 0: the process's setting
    bfloat16: bool = False  # the forward under torch.autocast("cpu", bfloat16)


# Each row changes the row above it; the sixth is the MNIST chapter's own loop.
LADDER = [
    (
        "a first loop, batch 128",  # set_to_none=False, for-loop AdamW, .item()
        Loop(128, set_to_none=False, optimizer="for-loop", item_per_step=True),
    ),
    ("batch 512", {"batch_size": 512}),
    ("zero_grad(set_to_none=True)", {"set_to_none": True}),
    ("AdamW(foreach=True)", {"optimizer": "foreach"}),
    ("AdamW(fused=True)", {"optimizer": "fused"}),
    ("no .item() per step: the MNIST loop", {"item_per_step": False}),
    ("shuffle once per epoch, slice batches", {"one_gather_per_epoch": True}),
    ("torch.compile the forward and the loss", {"compile_model": True}),
    # Dynamo does not trace the fused kernel: compile the for-loop AdamW
    (
        "torch.compile the update: for-loop AdamW",
        {"compile_optimizer": True, "optimizer": "for-loop"},
    ),
]
CHAPTER_ROW = 5  # the MNIST chapter's loop: the asides change it
# Measured beside the ladder, each one change to the MNIST chapter's loop.
ASIDES = [
    ("the MNIST loop at batch 128", {"batch_size": 128}),
    ("the MNIST loop at batch 2048", {"batch_size": 2048}),
    ("the MNIST loop on 1 thread", {"threads": 1}),
    ("bfloat16 autocast: other arithmetic", {"bfloat16": True}),
]
CONTENDED = 1.15  # a round whose row-6 epoch is this much above its median


def ladder_loops():
    """[(label, Loop)]: the ladder's rows, each the row above with its change."""
    rows, loop = [], None
    for label, change in LADDER:
        loop = change if loop is None else dataclasses.replace(loop, **change)
        rows.append((label, loop))
    return rows


def all_loops():
    rows = ladder_loops()
    chapter_loop = rows[CHAPTER_ROW][1]
    return rows + [
        (label, dataclasses.replace(chapter_loop, **change))
        for label, change in ASIDES
    ]


def flops_per_image(model):
    """The MNIST chapter's count: matmul FLOPs of one training step per image."""
    rows = mnist.training_flops(model)
    return sum(r["forward"] + r["weight_grad"] + r["input_grad"] for r in rows)


class Trainer:
    """A model, its optimizer and scheduler, trained one epoch per call, the
    way ``loop`` says. Every trainer starts from seed 0 and sees the same
    batches in the same order."""

    def __init__(self, loop, images, labels, epochs):
        self.loop, self.images, self.labels = loop, images, labels
        torch.manual_seed(0)
        self.model = mnist.build_model((128,))
        # a compiled step reads the learning rate as a tensor: changing a
        # float would be a new constant, and a recompilation, every step
        lr = torch.tensor(3e-3) if loop.compile_optimizer else 3e-3
        implementation = {
            "for-loop": {"foreach": False},
            "foreach": {"foreach": True},
            "fused": {"fused": True},
        }[loop.optimizer]
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=lr, weight_decay=0.01, **implementation
        )
        steps = -(-len(labels) // loop.batch_size)
        # one-cycle also cycles AdamW's beta1, a float: compiled, each new
        # value would recompile the update, so the compiled row keeps it fixed
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=3e-3,
            total_steps=epochs * steps,
            cycle_momentum=not loop.compile_optimizer,
        )
        model, optimizer, scheduler = self.model, self.optimizer, self.scheduler

        def loss_of(images, labels):
            return F.cross_entropy(model(images), labels)

        if loop.bfloat16:
            in_float32 = loss_of

            def loss_of(images, labels):
                with torch.autocast("cpu", torch.bfloat16):
                    return in_float32(images, labels)

        def update():  # PyTorch's recipe compiles the two steps together
            optimizer.step()
            scheduler.step()

        self.loss_of = torch.compile(loss_of) if loop.compile_model else loss_of
        self.update = torch.compile(update) if loop.compile_optimizer else update
        self.generator = torch.Generator().manual_seed(0)
        if loop.one_gather_per_epoch:  # allocated once, refilled every epoch
            self.shuffled = (torch.empty_like(images), torch.empty_like(labels))

    def batches(self):
        if not self.loop.one_gather_per_epoch:  # the MNIST chapter's batches
            return mnist.batches(
                self.images, self.labels, self.loop.batch_size, self.generator
            )
        order = torch.randperm(len(self.labels), generator=self.generator)
        images, labels = self.shuffled  # the same order as mnist.batches
        torch.index_select(self.images, 0, order, out=images)
        torch.index_select(self.labels, 0, order, out=labels)
        size = self.loop.batch_size
        return (
            (images[i : i + size], labels[i : i + size])
            for i in range(0, len(labels), size)
        )

    def epoch(self):
        """Seconds for one epoch of training; its mean loss in self.loss."""
        threads = torch.get_num_threads()
        if self.loop.threads:
            torch.set_num_threads(self.loop.threads)
        try:
            start = time.perf_counter()
            self.loss = self.train_epoch()
            return time.perf_counter() - start
        finally:
            torch.set_num_threads(threads)

    def train_epoch(self):
        loop, total = self.loop, 0.0
        for images, labels in self.batches():
            loss = self.loss_of(images, labels)
            self.optimizer.zero_grad(set_to_none=loop.set_to_none)
            loss.backward()
            self.update()
            if loop.item_per_step:
                total += loss.item() * len(labels)  # waits for the step
            else:
                total = total + loss.detach() * len(labels)
        return float(total) / len(self.labels)


def summarise(loops, seconds, floors):
    """A row per loop from its epochs' ``seconds`` and each round's floor: the
    medians, and each epoch against the row it changes in the same round."""
    rows = []
    for number, ((label, loop), times) in enumerate(zip(loops, seconds)):
        ratios = [t / f for t, f in zip(times, floors)]
        before = seconds[number - 1 if number < len(LADDER) else CHAPTER_ROW]
        rows.append(
            {
                "label": label,
                "loop": dataclasses.asdict(loop),
                "epoch_seconds": times,
                "floor_ratios": ratios,
                "median_seconds": statistics.median(times),
                "median_ratio": statistics.median(ratios),
                "against_before": statistics.median(
                    t / b for t, b in zip(times, before)
                ),
            }
        )
    return rows


def case_study(images, labels, rounds):
    """Every loop's seconds per epoch and ratio to the floor, round by round.
    Each trainer runs one epoch first (compilation, warm-up), not counted."""
    loops = all_loops()
    epochs = 1 + rounds + 2 * PROFILED_EPOCHS  # the scheduler's length
    trainers = [Trainer(loop, images, labels, epochs) for _, loop in loops]
    for trainer in trainers:
        trainer.epoch()
    seconds = [[] for _ in loops]
    flops = flops_per_image(trainers[0].model) * len(labels)
    gflops, floors = [], []
    for _ in range(rounds):
        gflops.append(max(matmul_gflops(batch) for batch in GFLOPS_BATCHES))
        floors.append(flops / (gflops[-1] * 1e9))  # seconds an epoch
        for times, trainer in zip(seconds, trainers):
            times.append(trainer.epoch())
    rows = summarise(loops, seconds, floors)
    for row, trainer in zip(rows, trainers):
        row["last_loss"] = trainer.loss
    chapter_seconds = seconds[CHAPTER_ROW]
    typical = statistics.median(chapter_seconds)
    return {
        "contended_rounds": [
            number
            for number, epoch in enumerate(chapter_seconds)
            if epoch > CONTENDED * typical
        ],
        "rows": rows,
        "layers": mnist.training_flops(trainers[0].model),
        "flops_per_epoch": flops,
        "matmul_gflops": gflops,
        "floor_seconds": floors,
        "trainers": trainers,
    }


def self_seconds_by_operator(trainer):
    """One profiled epoch of ``trainer``: its seconds, and each operator's
    self CPU time in seconds, as [name, seconds] pairs, largest first."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds = trainer.epoch()
    events = sorted(
        prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True
    )
    return seconds, [[e.key, e.self_cpu_time_total / 1e6] for e in events]


def where_the_time_goes(trainer, flops):
    """The profile of ``trainer``'s loop, in PROFILED_EPOCHS rounds of: the
    floor measured (``flops`` an epoch), an epoch without the profiler, one
    with it. From the round whose profiled epoch is the median: each
    operator's self time, the matmuls' and their ratio to that round's floor;
    and the profiler's overhead, profiled epochs against plain ones."""
    rounds = []
    for _ in range(PROFILED_EPOCHS):
        gflops = max(matmul_gflops(batch) for batch in GFLOPS_BATCHES)
        plain = trainer.epoch()
        profiled, by_operator = self_seconds_by_operator(trainer)
        rounds.append((profiled, plain, gflops, dict(by_operator)))
    profiled, _, gflops, middle = sorted(rounds, key=lambda r: r[0])[
        (PROFILED_EPOCHS - 1) // 2
    ]
    matmul = {name: middle.get(name, 0.0) for name in MATMULS}
    return {
        "epoch_seconds": statistics.median(r[1] for r in rounds),
        "profiled_epoch_seconds": statistics.median(r[0] for r in rounds),
        "self_seconds_total": sum(middle.values()),
        "matmul_seconds": matmul,
        "floor_gflops": gflops,
        "matmul_floor_ratio": sum(matmul.values()) * gflops * 1e9 / flops,
        "top_operators": sorted(middle.items(), key=lambda kv: -kv[1])[:10],
    }


def product_speeds(batch=512):
    """GFLOP/s of each matrix product of one training step of the MNIST MLP
    at ``batch``, alone (Timer, the process's threads): forward (addmm, with
    the bias) and backward (mm: the weights' gradients, layer 2's input's)."""
    generator = torch.Generator().manual_seed(0)
    tensors = {
        name: torch.randn(*shape, generator=generator)
        for name, shape in {
            "x": (batch, 784),
            "w1": (128, 784),
            "b1": (128,),
            "h": (batch, 128),
            "w2": (10, 128),
            "b2": (10,),
            "g1": (batch, 128),
            "g2": (batch, 10),
        }.items()
    }
    products = {  # name: (statement, FLOPs)
        "784x128 forward": ("torch.addmm(b1, x, w1.t())", 2 * batch * 784 * 128),
        "784x128 weight gradient": ("g1.t().mm(x)", 2 * batch * 784 * 128),
        "128x10 forward": ("torch.addmm(b2, h, w2.t())", 2 * batch * 128 * 10),
        "128x10 weight gradient": ("g2.t().mm(h)", 2 * batch * 128 * 10),
        "128x10 input gradient": ("g2.mm(w2)", 2 * batch * 128 * 10),
    }
    speeds = {}
    for name, (statement, flops) in products.items():
        timer = benchmark.Timer(
            statement,
            globals={"torch": torch, **tensors},
            num_threads=torch.get_num_threads(),
        )
        seconds = timer.blocked_autorange(min_run_time=TIMER_SECONDS / 4).median
        speeds[name] = {"seconds": seconds, "gflops": flops / seconds / 1e9}
    return speeds


def timer_numbers():
    """The page's Timer: the MLP's forward at batch 512, one thread and two."""
    model = chapter.mnist_mlp()
    images, _ = chapter.a_batch()
    results = {}
    for threads in (1, 2):
        timer = chapter.timer_for(model, images, threads)
        measured = timer.blocked_autorange(min_run_time=TIMER_SECONDS)
        results[threads] = {
            "median": measured.median,
            "iqr": measured.iqr,
            "runs": len(measured.times) * measured.number_per_run,
        }
    return results


FRESH_PROCESS = """
import json, time, torch
torch.set_num_threads({threads})
import torch.nn.functional as F
import snippets.performance as chapter
model = chapter.mnist_mlp()
images, labels = chapter.a_batch()
start = time.perf_counter()
import torch._dynamo, torch._functorch.aot_autograd, torch._inductor.compile_fx
imports = time.perf_counter() - start
start = time.perf_counter()
compiled = torch.compile(model)
F.cross_entropy(compiled(images), labels).backward()
first = time.perf_counter() - start
start = time.perf_counter()
F.cross_entropy(compiled(images), labels).backward()
second = time.perf_counter() - start
start = time.perf_counter()
F.cross_entropy(model(images), labels).backward()
eager = time.perf_counter() - start
from torch._dynamo.utils import counters
caches = {{
    name: count
    for group in ("inductor", "aot_autograd")
    for name, count in counters[group].items()
    if "cache" in name
}}
print(json.dumps(dict(
    imports=imports, first_step=first, second_step=second, eager_step=eager,
    caches=caches,
)))
"""


def compile_seconds():
    """torch.compile of the MLP and its first forward and backward, in a fresh
    process with an empty cache (cold), then in a second fresh process with the
    cache the first one filled (warm). In each: the compiler's import first,
    the second step, one step of the same model not compiled, and the caches'
    hit and miss counters."""
    code = FRESH_PROCESS.format(threads=torch.get_num_threads())
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        for run in ("cold", "warm"):
            done = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache},
            )
            if done.returncode != 0:
                raise RuntimeError(f"the {run} compile failed:\n{done.stderr}")
            results[run] = json.loads(done.stdout.splitlines()[-1])
    return results


def checkpoint_numbers():
    """Autograd's saved bytes (counted) and seconds per training step
    (measured: the median of Timer's blocks) of the page's deep MLP, plain and
    checkpointed."""
    images, labels = chapter.a_batch()
    results = {}
    for name, network in [
        ("plain", chapter.deep_mlp()),
        ("checkpointed", chapter.Checkpointed(chapter.deep_mlp())),
    ]:
        saved, _ = chapter.saved_activation_bytes(network, images, labels)
        optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, fused=True)
        chapter.training_step(network, optimizer, images, labels)  # warm-up
        timer = benchmark.Timer(
            "step(network, optimizer, images, labels)",
            globals={
                "step": chapter.training_step,
                "network": network,
                "optimizer": optimizer,
                "images": images,
                "labels": labels,
            },
            num_threads=torch.get_num_threads(),
        )
        measured = timer.blocked_autorange(min_run_time=TIMER_SECONDS)
        results[name] = {"saved_bytes": saved, "step_seconds": measured.median}
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.performance",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--data-root",
        default="data",
        help="folder holding MNIST/raw (default: data)",
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/performance.json"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=11,
        help="epochs of every loop measured, in turn (default: 11)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1")
    load_before = refuse_a_busy_machine(parser, args.record)
    started = time.perf_counter()
    images, labels = mnist.preload(mnist.load_mnist(args.data_root, True), True)
    metrics = measure(images, labels, args.rounds)
    metrics["idle_load"] = IDLE_LOAD
    metrics["load_average"] = [load_before, os.getloadavg()[0]]
    metrics["total_seconds"] = time.perf_counter() - started
    if args.record:
        print("recorded:", write_record("performance", metrics, PRODUCERS, "cpu"))
    return metrics


def measure(images, labels, rounds):
    """Everything the page shows, printed as it is measured."""
    timer = timer_numbers()  # first: before anything was compiled in this process
    for threads, measured in timer.items():
        print(
            f"forward at batch 512, {threads} thread(s): median "
            f"{measured['median'] * 1e6:.0f} us, "
            f"IQR {measured['iqr'] * 1e6:.0f} us",
            flush=True,
        )
    checkpointed = checkpoint_numbers()
    for name, numbers in checkpointed.items():
        print(
            f"{name}: saves {numbers['saved_bytes']:,} bytes, "
            f"{numbers['step_seconds'] * 1000:.2f} ms a step",
            flush=True,
        )
    study = case_study(images, labels, rounds)
    for row in study["rows"]:
        print(
            f"{row['label']:<68} {row['median_seconds']:.3f} s/epoch, "
            f"{row['median_ratio']:.2f}x the floor",
            flush=True,
        )
    print(
        f"rounds where row {CHAPTER_ROW + 1} ran over {CONTENDED}x its median: "
        f"{study['contended_rounds']}",
        flush=True,
    )
    trainer = study.pop("trainers")[CHAPTER_ROW]
    profile_numbers = where_the_time_goes(trainer, study["flops_per_epoch"])
    print(
        f"profile of row {CHAPTER_ROW + 1}: matmuls "
        f"{sum(profile_numbers['matmul_seconds'].values()):.3f} s of "
        f"{profile_numbers['self_seconds_total']:.3f} s, "
        f"{profile_numbers['matmul_floor_ratio']:.2f}x the floor; profiled "
        f"{profile_numbers['profiled_epoch_seconds']:.3f} s, plain "
        f"{profile_numbers['epoch_seconds']:.3f} s",
        flush=True,
    )
    products = product_speeds()
    for name, speed in products.items():
        print(f"{name}: {speed['gflops']:.0f} GFLOP/s", flush=True)
    compiled = compile_seconds()
    for run, seconds in compiled.items():
        print(
            f"compile, {run}: imports {seconds['imports']:.2f} s, "
            f"first step {seconds['first_step']:.2f} s, "
            f"second {seconds['second_step'] * 1000:.1f} ms",
            flush=True,
        )
    return {
        **study,
        "gflops_batches": list(GFLOPS_BATCHES),
        "ladder": [label for label, _ in LADDER],
        "chapter_row": CHAPTER_ROW,
        "profiled_epochs": PROFILED_EPOCHS,
        "profile": profile_numbers,
        "products": products,
        "contended_factor": CONTENDED,
        "timer": timer,
        "timer_seconds": TIMER_SECONDS,
        "compile": compiled,
        "checkpoint": checkpointed,
        "images": len(labels),
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    main()
