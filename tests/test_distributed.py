"""docs/distributed.md: snippets/distributed.py launched with torchrun on the CPU (gloo): on one node, as two nodes,
killed and restarted, sharded with FSDP2 and saved with DCP; an unreachable rendezvous; the record the page shows.
The shown functions that need a process group but no launch (accumulation weights, an epoch resumed mid-way, DDP's
buffers, SyncBatchNorm's device check, Join, FSDP2's mixed precision, clipping and resumable checkpoint, the DETAIL
debug level) run in two plain processes (``two_ranks``); DDP under TORCH_DISTRIBUTED_DEBUG=DETAIL, in one.

The page's blocks (the demonstrations under ``if __name__ == "__page__":`` in snippets/distributed.py) run once here
in page order: the ``page`` and ``printed`` fixtures of tests/conftest.py. The record's hidden blocks
(benchmarks/reports/distributed.py) run section by section.
"""

import html
import json
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import torch
from conftest import (
    ROOT,
    run_sections,
    snippet_sections,
    test_the_page_prints_what_its_build_shows,  # noqa: F401 (a test)
)

import benchmarks.distributed as bench
import snippets.distributed as ddp
from benchmarks.distributed import CRASH_ARGS, Launch, free_port, standalone
from site_tools.records import check_fresh, read_record

TOLERANCE = 1e-6  # the page: a resumed run's final loss is within 1e-6 of an uninterrupted one's
RENDEZVOUS_TIMEOUT = 4  # s, read_timeout of the unreachable launch; the page states the bound below
RENDEZVOUS_BOUND = 30  # s: the launcher gives up well within this


def no_launch_left():
    """No torchrun launcher or worker still runs below this process. A zombie has ended (it waits to be reaped by its
    parent, which may be another test's in the same xdist worker) and has no command line to read."""
    running = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE and "torch.distributed" in " ".join(process.cmdline()):
                running.append(process)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return not running


def gone(pids):
    return all(not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE for pid in pids)


@pytest.fixture(scope="module")
def launches(tmp_path_factory):
    """At the same time: the standalone run (2 processes), the same run as 2 nodes of 1 process (two launchers,
    one c10d rendezvous on 127.0.0.1), and the FSDP2 run saving a DCP checkpoint; then the crash run."""
    out = tmp_path_factory.mktemp("launches")
    for name in ("one-node", "node0", "fsdp", "crash"):
        (out / name).mkdir()
    port = free_port()
    two_node = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    two_node += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "test"]
    summary = ["--summary", "summary.json"]
    started = time.perf_counter()
    with (
        standalone(2, [*CRASH_ARGS, *summary, "--save", "model.pt"], out / "one-node", 120) as one_node,
        Launch([*two_node, "--node-rank", "0"], [*CRASH_ARGS, *summary], out / "node0", 120) as node0,
        Launch([*two_node, "--node-rank", "1"], [*CRASH_ARGS, *summary], out / "node0", 120) as node1,
        standalone(2, ["--strategy", "fsdp", *CRASH_ARGS, *summary, "--save", "dcp"], out / "fsdp", 120) as fsdp,
    ):
        with ThreadPoolExecutor(4) as pool:
            results = dict(
                zip(["one-node", "node0", "node1", "fsdp"], pool.map(Launch.wait, [one_node, node0, node1, fsdp]))
            )
    for name, (code, stdout, stderr, _) in results.items():
        assert code == 0, f"{name} failed:\n{stdout[-2000:]}\n{stderr[-3000:]}"
    crash = bench.crash_run(out / "crash")
    print(f"launches: {time.perf_counter() - started:.1f} s")
    summaries = {name: json.loads((out / name / "summary.json").read_text()) for name in ("one-node", "node0", "fsdp")}
    launchers = [launch.process.pid for launch in (one_node, node0, node1, fsdp)]
    return {"out": out, "results": results, "summaries": summaries, "crash": crash, "launchers": launchers}


def test_the_sampler_splits_disjointly_and_reshuffles_per_epoch(page):
    shares = {}
    for epoch in range(2):
        for rank in range(2):
            sampler = torch.utils.data.DistributedSampler(page.data, num_replicas=2, rank=rank, shuffle=True, seed=0)
            sampler.set_epoch(epoch)
            shares[epoch, rank] = list(sampler)
    for epoch in range(2):
        assert sorted(shares[epoch, 0] + shares[epoch, 1]) == list(range(10))
    assert shares[0, 0] != shares[1, 0]


def test_the_sampler_pads_an_odd_dataset_and_drop_last_drops(printed):
    assert "11 samples, rank 0: [0, 2, 4, 6, 8, 10]; drop_last: [0, 2, 4, 6, 8]" in printed
    assert "11 samples, rank 1: [1, 3, 5, 7, 9, 0]; drop_last: [1, 3, 5, 7, 9]" in printed  # 0 twice per epoch


def test_the_effective_batch_and_the_linear_scaling_rule(printed):
    assert "1 process: effective batch  128, lr 0.10 by linear scaling" in printed
    assert "2 processes: effective batch  256, lr 0.20 by linear scaling" in printed
    assert "8 processes: effective batch 1024, lr 0.80 by linear scaling" in printed


def test_one_node_trained_two_identical_replicas_and_only_rank_0_logged(launches):
    summary = launches["summaries"]["one-node"]
    assert summary["world_size"] == 2 and summary["backend"] == "gloo" and summary["restarts"] == 0
    assert len(summary["loss"]) == 5 and summary["loss"][-1] < 0.2 * summary["loss"][0]
    assert summary["checksums"][0] == summary["checksums"][1]
    stdout = launches["results"]["one-node"][1]
    assert [line.split(":")[0] for line in stdout.splitlines() if line.startswith("epoch ")] == [
        f"epoch {i}" for i in range(5)
    ]
    assert stdout.count("2 processes, backend gloo, device type cpu, ddp, effective batch 128") == 1


def test_rank_0_saved_a_loadable_checkpoint_atomically(launches):
    folder = launches["out"] / "one-node"
    model = ddp.build_model(20, 128)
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    assert ddp.parameter_checksum(model) == launches["summaries"]["one-node"]["checksums"][0]
    assert not list(folder.glob(".*")), "no temporary file may be left behind"


def test_two_nodes_train_exactly_as_one_node_with_two_processes(launches):
    one, two = launches["summaries"]["one-node"], launches["summaries"]["node0"]
    assert two["world_size"] == 2
    assert max(abs(a - b) for a, b in zip(one["loss"], two["loss"])) <= TOLERANCE
    assert two["checksums"][0] == two["checksums"][1]
    logs = [launches["results"][node][1].count("epoch ") for node in ("node0", "node1")]
    assert sorted(logs) == [0, 5]  # one of them holds rank 0, which logs
    # the page: with c10d, the rendezvous assigns the ranks and --node-rank is ignored, with this warning
    assert "node_rank is only used for static rdzv_backend. It will be ignored" in launches["results"]["node1"][2]


def test_a_killed_worker_is_restarted_and_training_resumes_from_the_last_checkpoint(launches):
    crash = launches["crash"]
    assert crash["returncode"] == 0, crash["stdout"][-3000:]
    assert crash["killed_pid"] is not None, f"the worker was not killed mid-training: {crash['watch_errors']}"
    summary = crash["summary"]
    assert summary["restarts"] == 1 and len(summary["loss"]) == 5
    # torchrun names the first failure it sees (it checks every 0.1 s): the killed worker, or rank 0 when rank 0,
    # failing in its next collective, has already exited by then
    reports = re.findall(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+) \(pid: (\d+)\)", crash["stdout"])
    assert len(reports) == 1, crash["stdout"][-3000:]
    exitcode, local_rank, pid = reports[0]
    killed_worker = (exitcode, local_rank, int(pid)) == ("-9", "1", crash["killed_pid"])
    rank_0_first = local_rank == "0" and exitcode not in ("0", "-9")
    assert killed_worker or rank_0_first, reports[0]
    resumed = [line for line in crash["stdout"].splitlines() if line.startswith("resumed from epoch-")]
    assert len(resumed) == 1, crash["stdout"][-3000:]
    # every epoch ran, and the epochs before the checkpoint were not run again
    epochs = [int(line.split()[1][:-1]) for line in crash["stdout"].splitlines() if line.startswith("epoch ")]
    assert sorted(set(epochs)) == list(range(5))
    last = int(resumed[0].split("epoch-")[1][:4])
    assert epochs.count(last) == 1 and all(epochs.count(e) == 1 for e in range(last + 1))


def test_no_checkpoint_was_ever_half_written(launches):
    crash = launches["crash"]
    assert crash["torn"] == [] and crash["leftovers"] == []
    assert sorted(crash["checkpoints_seen"]) == [f"epoch-{e:04d}.pt" for e in range(5)]
    assert sorted(crash["checkpoints_seen"].values()) == list(range(5))


def test_the_resumed_run_ends_within_the_tolerance_of_an_uninterrupted_one(launches):
    resumed, uninterrupted = launches["crash"]["summary"]["loss"], launches["summaries"]["one-node"]["loss"]
    assert abs(resumed[-1] - uninterrupted[-1]) <= TOLERANCE


def test_fsdp2_shards_the_parameters_and_optimizer_state_in_half(launches):
    fsdp, ddp_run = launches["summaries"]["fsdp"], launches["summaries"]["one-node"]
    assert fsdp["strategy"] == "fsdp" and fsdp["world_size"] == 2
    assert fsdp["state_bytes"] == [ddp_run["state_bytes"][0] // 2] * 2
    assert max(abs(a - b) for a, b in zip(fsdp["loss"], ddp_run["loss"])) < 1e-4  # the same training, sharded


def test_the_dcp_checkpoint_reloads_into_one_plain_process(launches):
    folder = launches["out"] / "fsdp" / "dcp"
    assert sorted(p.name for p in folder.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not list(folder.parent.glob(".dcp.*")), "save_sharded leaves no temporary folder"
    sharded = ddp.load_sharded(ddp.build_model(20, 128), folder)  # 2 ranks saved it, 1 process loads it
    replicated = ddp.build_model(20, 128)
    replicated.load_state_dict(torch.load(launches["out"] / "one-node" / "model.pt", weights_only=True))
    for (name, a), b in zip(sharded.state_dict().items(), replicated.state_dict().values()):
        assert type(a) is torch.Tensor and torch.allclose(a, b, atol=1e-4), name


def test_no_process_is_left_behind(launches):
    pids = launches["launchers"] + launches["crash"]["summary"]["pids"]
    pids += [launches["crash"]["killed_pid"]] if launches["crash"]["killed_pid"] else []
    for summary in launches["summaries"].values():
        pids += summary["pids"]
    assert gone(pids) and no_launch_left()


def test_an_unreachable_rendezvous_fails_with_a_clear_error_within_the_bound(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"  # nobody listens there
    launcher = ["--nnodes", "2", "--node-rank", "1", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    launcher += ["--rdzv-endpoint", endpoint, "--rdzv-conf", f"is_host=false,read_timeout={RENDEZVOUS_TIMEOUT}"]
    with Launch(launcher, ["--epochs", "1"], tmp_path, timeout=RENDEZVOUS_BOUND + 30) as launch:
        code, stdout, stderr, seconds = launch.wait()
    assert code == 1 and seconds < RENDEZVOUS_BOUND
    assert "RendezvousConnectionError: The connection to the C10d store has failed" in stderr
    assert f"timed out after {RENDEZVOUS_TIMEOUT * 1000}ms while trying to connect to (127.0.0.1" in stderr
    assert no_launch_left()


def test_a_checkpoint_from_another_world_size_is_refused_with_a_message():
    ddp.check_resumable({"world_size": 2, "global_batch": 128}, 2, 128, "epoch-0003.pt")
    with pytest.raises(ValueError, match="written by 4 processes with a global batch of 256; this run has 2 and 128"):
        ddp.check_resumable({"world_size": 4, "global_batch": 256}, 2, 128, "epoch-0003.pt")


def test_the_latest_checkpoint_ignores_leftover_temporary_files(tmp_path):
    assert ddp.latest_checkpoint(tmp_path) is None
    for name in ("epoch-0000.pt", "epoch-0001.pt", ".epoch-0002.pt.x1y2"):
        (tmp_path / name).write_bytes(b"")
    assert ddp.latest_checkpoint(tmp_path).name == "epoch-0001.pt"


def test_arguments_are_checked():
    assert ddp.parse_args(["--data-root", "data"]).data == "mnist"
    assert ddp.parse_args([]).data == "synthetic"
    assert ddp.parse_args(["--data-root", "data"]).workers == 4 and ddp.parse_args([]).workers == 0
    assert not ddp.parse_args([]).fast_exit  # os._exit only when asked for
    for bad in (["--data", "mnist"], ["--accumulate", "0"], ["--strategy", "fsdp", "--checkpoint-dir", "c"]):
        with pytest.raises(SystemExit):
            ddp.parse_args(bad)
    # the page: FSDP2's mixed precision and sharded resume are functions of the script, not on its command line
    with pytest.raises(SystemExit):
        ddp.parse_args(["--mixed-precision"])


def test_save_atomically_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("old")

    def broken(obj, path):
        open(path, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ddp.save_atomically({}, target, broken)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_the_resumable_sampler_resumes_mid_epoch_in_the_same_order(page, printed):
    assert "epoch 3, rank 0: [[6, 3], [8, 1], [2]]" in printed
    assert "checkpoint: {'epoch': 3, 'samples_done': 2}" in printed
    assert "resumed: [[8, 1], [2]] 2 batches" in printed
    # a second crash, one step into the resumed epoch: the offset counts the samples before the first one too
    assert "checkpoint: {'epoch': 3, 'samples_done': 4}" in printed
    full = ddp.ResumableSampler(page.data, num_replicas=2, rank=0, seed=0)
    full.set_epoch(3)
    assert page.first.tolist() + [8, 1, 2] == list(full)  # the step before the crash, then the resumed ones


def test_the_resumable_samplers_length_holds_through_the_resumed_epoch_and_the_next_is_whole(page):
    """train() ends a step at the loader's last batch (len(loader)): a length that changed once the iteration began
    would leave the resumed epoch's last step without its optimizer step."""
    sampler = ddp.ResumableSampler(page.data, num_replicas=2, rank=0, seed=0)
    sampler.load_state_dict({"epoch": 3, "samples_done": 2})
    sampler.set_epoch(3)  # what train() calls first: the same epoch keeps the offset
    lengths = [len(sampler)]
    for _ in sampler:
        lengths.append(len(sampler))
    assert lengths == [3] * 4 and len(list(sampler)) == 3
    assert sampler.state_dict(samples_done=3) == {"epoch": 3, "samples_done": 5}
    sampler.set_epoch(4)  # the next epoch is whole again
    assert len(sampler) == len(list(sampler)) == 5 and sampler.state_dict(0)["samples_done"] == 0


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")  # a 2-core machine
def test_the_loader_pins_memory_and_decodes_in_workers_for_mnist_on_a_gpu(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)  # rank 0 of 2, without a process group
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    dataset = torch.utils.data.TensorDataset(torch.zeros(8, 2))
    args = ddp.parse_args(["--data-root", "data"])
    for device, pinned in (("cpu", False), ("cuda", True)):
        loader = ddp.make_loader(dataset, args, torch.device(device))
        assert loader.num_workers == 4 and loader.persistent_workers and loader.pin_memory == pinned


def test_the_defaults_the_page_quotes():
    from datetime import timedelta

    import torch.distributed as dist
    from torch.distributed import constants

    assert constants.default_pg_timeout == timedelta(minutes=30)  # Gloo
    assert constants.default_pg_nccl_timeout == timedelta(minutes=10)
    assert dist._DEFAULT_FIRST_BUCKET_BYTES == 2**20  # DDP's first bucket: 1 MiB


def test_step_shares_weight_each_micro_batch_by_its_share_of_its_step():
    assert ddp.step_shares(18, 4, 3) == pytest.approx([1 / 3] * 3 + [4 / 6, 2 / 6])
    assert ddp.step_shares(8, 4, 1) == [1.0, 1.0]
    assert ddp.step_shares(10, 4, 2) == pytest.approx([0.5, 0.5, 1.0])  # a last step of one short micro-batch


def test_machines_sharing_the_data_root_never_see_a_half_written_mnist(tmp_path, monkeypatch):
    """E7: two machines' local rank 0 download into the same root at once (threads stand in for them; a slow fake
    MNIST writes each file in two halves). Whoever looks at root/MNIST sees nothing or every file whole."""
    import torchvision.datasets

    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]

    class SlowMNIST:
        def __init__(self, root, train=True, download=False):
            raw = Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for name in names:
                with open(raw / name, "wb") as file:
                    file.write(b"x" * 1000)
                    file.flush()
                    time.sleep(0.05)
                    file.write(b"x" * 1000)

    monkeypatch.setattr(torchvision.datasets, "MNIST", SlowMNIST)
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            raw = tmp_path / "MNIST" / "raw"
            if raw.is_dir():
                seen.append(sorted((f.name, f.stat().st_size) for f in raw.iterdir()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    machines = [threading.Thread(target=ddp.download_mnist, args=(tmp_path,)) for _ in range(2)]
    for machine in machines:
        machine.start()
    for machine in machines:
        machine.join()
    stop.set()
    watcher.join()
    assert seen and all(files == [(name, 2000) for name in names] for files in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["MNIST"]  # no temporary folder left
    ddp.download_mnist(tmp_path)  # already there: nothing to do


def test_a_failing_rank_records_its_exception_for_torchruns_summary(tmp_path, monkeypatch):
    """main is decorated with @record: the exception and its traceback go to the error file torchrun reads. Here a
    checkpoint from 4 processes, refused by check_resumable, in a one-process group in this process."""
    import torch.distributed as dist

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    torch.save({"world_size": 4, "global_batch": 256}, checkpoints / "epoch-0003.pt")
    error_file = tmp_path / "error.json"
    environment = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    environment.update(MASTER_PORT=str(free_port()), TORCHELASTIC_ERROR_FILE=str(error_file))
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="written by 4 processes with a global batch of 256"):
        ddp.main(["--epochs", "1", "--samples", "64", "--checkpoint-dir", str(checkpoints)])
    assert not dist.is_initialized()  # main's finally destroyed the group
    recorded = json.loads(error_file.read_text())["message"]
    assert recorded["message"].startswith("ValueError: ") and "epoch-0003.pt was written by 4" in recorded["message"]
    assert (
        "Traceback" in recorded["extraInfo"]["py_callstack"]
        and "check_resumable" in recorded["extraInfo"]["py_callstack"]
    )


# Two plain processes (no torchrun): what needs a process group but not a launch. The worker prints one JSON line.

WORKER = r"""
import datetime, json, os, sys, warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, TensorDataset

import snippets.distributed as d

dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
rank, cpu, folder, out = dist.get_rank(), torch.device("cpu"), Path(sys.argv[1]), {}
generator = torch.Generator().manual_seed(0)
features, labels = torch.randn(36, 20, generator=generator), torch.randint(0, 4, (36,), generator=generator)
dataset = TensorDataset(features, labels)
args = d.parse_args(["--batch-size", "4"])  # 18 samples per rank: batches of 4, 4, 4, 4, 2
loader = d.make_loader(dataset, args, cpu)

# accumulation over 3 micro-batches: steps of 4+4+4 and 4+2 samples per rank
torch.manual_seed(0)
model = DistributedDataParallel(d.build_model(20, 16))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
steps, real_step = [], optimizer.step
def spy():  # the parameters each step starts from, and the gradient it uses
    steps.append([(p.detach().clone(), p.grad.clone()) for p in model.parameters()])
    real_step()
optimizer.step = spy
d.train(model, loader, optimizer, cpu, epochs=1, accumulate=3)
orders = [list(DistributedSampler(dataset, num_replicas=2, rank=r, seed=0)) for r in range(2)]
last = [i for order in orders for i in order[12:]]  # the last step's samples, of both ranks
reference = d.build_model(20, 16)
with torch.no_grad():
    for p, (value, _) in zip(reference.parameters(), steps[-1]):
        p.copy_(value)
nn.functional.cross_entropy(reference(features[last]), labels[last]).backward()
out["steps"] = len(steps)
out["last_step_gap"] = max((g - p.grad).abs().max().item() for p, (_, g) in zip(reference.parameters(), steps[-1]))

# train() in an epoch resumed after its first step (2 micro-batches a step; per rank batches of 4, 4 | 4, 4 | 2): the
# resumed run takes the uninterrupted run's last two steps
def stepped(model, optimizer):  # the parameters after each optimizer step
    after, real = [], optimizer.step
    def step():
        real()
        after.append([p.detach().clone() for p in model.parameters()])
    optimizer.step = step
    return after
def resumable(state=None):
    sampler = d.ResumableSampler(dataset, seed=0)
    if state is not None:
        sampler.load_state_dict(state)
    return torch.utils.data.DataLoader(dataset, batch_size=4, sampler=sampler)
torch.manual_seed(0)
whole = DistributedDataParallel(d.build_model(20, 16))
whole_optimizer = torch.optim.SGD(whole.parameters(), lr=0.1)
whole_steps = stepped(whole, whole_optimizer)
d.train(whole, resumable(), whole_optimizer, cpu, epochs=1, accumulate=2)
resumed_model = DistributedDataParallel(d.build_model(20, 16))
with torch.no_grad():
    for p, value in zip(resumed_model.parameters(), whole_steps[0]):
        p.copy_(value)  # the checkpoint of the first step (SGD without momentum: no optimizer state)
resumed_optimizer = torch.optim.SGD(resumed_model.parameters(), lr=0.1)
resumed_steps = stepped(resumed_model, resumed_optimizer)
resumed_loader = resumable({"epoch": 0, "samples_done": 8})
d.train(resumed_model, resumed_loader, resumed_optimizer, cpu, epochs=1, accumulate=2)
out["resumed_epoch"] = {
    "steps": [len(whole_steps), len(resumed_steps)],
    "gap": max((a - b).abs().max().item() for a, b in zip(whole_steps[-1], resumed_steps[-1])),
    "gradients_left": sum(p.grad is not None for p in resumed_model.parameters()),
    "state": resumed_loader.sampler.state_dict(samples_done=4),  # a second crash one step later
}

# DDP's buffers: rank 0's are copied to every rank when DDP is built, then before every forward.
# forward_sync_buffers=False skips the forward's copy only; the deprecated broadcast_buffers=False skips both.
out["buffers"] = {}
for option in ({"forward_sync_buffers": True}, {"forward_sync_buffers": False}, {"broadcast_buffers": False}):
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, momentum=0.0))  # momentum 0: the forward keeps the buffer
    net[1].running_mean.fill_(float(rank))  # the ranks disagree before DDP
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # broadcast_buffers is deprecated
        wrapped = DistributedDataParallel(net, **option)
    built = net[1].running_mean[0].item()
    net[1].running_mean.fill_(float(rank))  # and again after it
    wrapped(torch.randn(3, 4))
    out["buffers"][json.dumps(option)] = [built, net[1].running_mean[0].item()]

# nn.SyncBatchNorm in training, with a process group: CPU tensors refused; in evaluation, a plain batch norm
synced = nn.SyncBatchNorm(4)
try:
    synced(torch.randn(3, 4))
    out["sync_bn_training"] = None
except ValueError as error:
    out["sync_bn_training"] = str(error)
out["sync_bn_eval"] = list(synced.eval()(torch.randn(3, 4)).shape)

# uneven inputs under Join, with static_graph
torch.manual_seed(0)
joined = DistributedDataParallel(nn.Linear(4, 2), static_graph=True)
ranked = torch.Generator().manual_seed(rank)
batches = [(torch.randn(2, 4, generator=ranked), torch.randint(0, 2, (2,), generator=ranked))]
batches *= 3 + 2 * rank  # 3 batches on rank 0, 5 on rank 1
d.train_uneven(joined, batches, torch.optim.SGD(joined.parameters(), lr=0.1))
out["join_checksum"] = d.parameter_checksum(joined.module)

# FSDP2 in practice: mixed precision, accumulation, clipping, a resumable checkpoint with the optimizer state
def sharded(seed):
    torch.manual_seed(seed)
    model = d.wrap(d.build_model(20, 16), "fsdp", mixed_precision=True)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
real_clip, clips = torch.nn.utils.clip_grad_norm_, []
def clip(parameters, max_norm):
    parameters = list(parameters)
    full = torch.stack([p.grad.full_tensor().norm() for p in parameters]).norm()  # of the unsharded gradients
    norm = real_clip(parameters, max_norm)
    clips.append([type(norm).__name__, norm.full_tensor().item(), full.item(), str(parameters[0].grad.dtype)])
    return norm
torch.nn.utils.clip_grad_norm_ = clip
model, optimizer = sharded(0)
forward = []
model[0].register_forward_hook(lambda m, i, o: forward.append([str(i[0].dtype), str(o.dtype)]))
d.train(model, loader, optimizer, cpu, epochs=1, accumulate=3, max_norm=0.5)
if rank == 0:  # an earlier checkpoint, and the .old folder of a save that crashed after its first rename
    for leftover in ("fsdp", ".fsdp.old"):
        (folder / leftover).mkdir()
        (folder / leftover / "stale").write_text("")
dist.barrier()
d.save_sharded(model, optimizer, folder / "fsdp")
out["files"] = sorted(os.listdir(folder))
d.train(model, loader, optimizer, cpu, epochs=2, accumulate=3, start=1, max_norm=0.5)
uninterrupted = [p.full_tensor() for p in model.parameters()]
resumed, resumed_optimizer = sharded(1)  # other initial weights: the checkpoint replaces them
if rank == 0:  # a crash between save_sharded's two renames: the checkpoint is only in .fsdp.old
    os.replace(folder / "fsdp", folder / ".fsdp.old")
dist.barrier()
d.resume_sharded(resumed, resumed_optimizer, folder / "fsdp")
d.train(resumed, loader, resumed_optimizer, cpu, epochs=2, accumulate=3, start=1, max_norm=0.5)
out["resume_gap"] = max((a - p.full_tensor()).abs().max().item() for a, p in zip(uninterrupted, resumed.parameters()))
out["forward"], out["clips"] = forward[0], clips
out["parameter"] = [type(model[0].weight).__name__, str(model[0].weight.dtype)]

# DETAIL, as TORCH_DISTRIBUTED_DEBUG=DETAIL sets it, for a new group (with the variable set from the start, torch
# 2.14.1 crashes in DDP's constructor): a collective on rank 0 alone, while rank 1 goes on to a barrier
dist.set_debug_level(dist.DebugLevel.DETAIL)
checked = dist.new_group(backend="gloo")
try:
    if rank == 0:
        dist.all_reduce(torch.ones(2), group=checked)
    dist.barrier(group=checked)
    out["mismatch"] = None
except RuntimeError as error:
    out["mismatch"] = str(error)
print("RESULT " + json.dumps(out), flush=True)
os._exit(0)  # the group is left as the error left it
"""


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The WORKER on 2 ranks (gloo): each rank's JSON result."""
    folder = tmp_path_factory.mktemp("two-ranks")
    env = {**bench.ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
    # the page: the level INFO, set from the start, does not crash DDP's constructor (DETAIL does: the test below)
    env.update(PYTHONPATH=str(ROOT), TORCH_DISTRIBUTED_DEBUG="INFO")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(folder)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for rank in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=180))
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.communicate()
    results = []
    for stdout, stderr in outputs:
        match = re.search(r"^RESULT (.*)$", stdout, re.M)
        assert match, stderr[-3000:]
        results.append(json.loads(match[1]))
    return results


def test_the_last_short_step_of_an_epoch_gets_the_gradient_of_all_its_samples(two_ranks):
    for result in two_ranks:
        assert result["steps"] == 2 and result["last_step_gap"] < 1e-6


def test_train_takes_every_step_of_an_epoch_resumed_mid_way(two_ranks):
    for result in two_ranks:
        resumed = result["resumed_epoch"]
        assert resumed["steps"] == [3, 2]  # the uninterrupted epoch's 3 steps; the resumed one's last 2
        assert resumed["gap"] < 1e-6 and resumed["gradients_left"] == 0  # no gradient leaks into the next epoch
        assert resumed["state"] == {"epoch": 0, "samples_done": 12}  # 8 before the restart, 4 after


def test_ddp_copies_rank_0s_buffers_at_construction_and_before_each_forward(two_ranks):
    """Each pair: rank 0's and rank 1's first buffer value after DDP's construction, then after a forward (the ranks
    disagreed before each)."""
    buffers = [result["buffers"] for result in two_ranks]
    built_and_forward = {option: [b[option] for b in buffers] for option in buffers[0]}
    assert built_and_forward == {
        '{"forward_sync_buffers": true}': [[0.0, 0.0], [0.0, 0.0]],  # rank 1 holds rank 0's, twice
        '{"forward_sync_buffers": false}': [[0.0, 0.0], [0.0, 1.0]],  # copied at construction, not at forward
        '{"broadcast_buffers": false}': [[0.0, 0.0], [1.0, 1.0]],  # the deprecated option: never copied
    }


def test_sync_batch_norm_refuses_cpu_tensors_only_in_training_with_a_process_group(two_ranks):
    import torch.distributed as dist

    for result in two_ranks:
        assert result["sync_bn_training"].startswith("SyncBatchNorm expected input tensor to be on GPU or XPU")
        assert result["sync_bn_eval"] == [3, 4]
    assert not dist.is_initialized()  # this process: no group, so a plain batch norm, also in training
    assert torch.nn.SyncBatchNorm(4)(torch.randn(3, 4)).shape == (3, 4)


def test_join_lets_ranks_with_3_and_5_batches_finish_with_identical_replicas(two_ranks):
    assert two_ranks[0]["join_checksum"] == two_ranks[1]["join_checksum"]


def test_fsdp2_mixed_precision_computes_in_bfloat16_and_keeps_float32_state(two_ranks):
    for result in two_ranks:
        assert result["forward"] == ["torch.bfloat16", "torch.bfloat16"]  # the first layer's input and output
        assert result["parameter"] == ["DTensor", "torch.float32"]
        assert {clip[3] for clip in result["clips"]} == {"torch.float32"}  # the gradients, reduced in float32


def test_fsdp2_clipping_takes_the_norm_of_all_shards_together(two_ranks):
    for result in two_ranks:
        assert len(result["clips"]) == 6  # 2 epochs of 2 steps, then the resumed epoch's 2
        for kind, norm, unsharded, _ in result["clips"]:
            assert kind == "DTensor" and norm == pytest.approx(unsharded, rel=1e-5)
        assert result["clips"][4:] == result["clips"][2:4]  # the resumed epoch computes the same gradients


def test_fsdp2_resumes_from_its_sharded_checkpoint_exactly(two_ranks):
    for result in two_ranks:
        assert result["resume_gap"] < 1e-6
    # renamed into place, with the .old folder an earlier crash left cleared; resumed from .old after a crash
    # between save_sharded's two renames
    assert two_ranks[0]["files"] == ["fsdp"]


def test_torch_distributed_debug_detail_names_a_mismatched_collective(two_ranks):
    for rank, called in enumerate(["OpType=ALLREDUCE", "OpType=BARRIER"]):
        message = two_ranks[rank]["mismatch"]
        assert message.startswith(f"Detected mismatch between collectives on ranks. Rank {rank} is running collective")
        assert called in message.split(", but ")[0]  # what this rank called, named first


DDP_UNDER_DETAIL = """
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

dist.init_process_group("gloo")
print("group ready", flush=True)
DistributedDataParallel(nn.Linear(4, 2))
print("DDP built", flush=True)
"""


def test_ddp_crashes_when_torch_distributed_debug_is_detail_from_the_start():
    """The page: with torch 2.14.1 and Gloo, building DDP with TORCH_DISTRIBUTED_DEBUG=DETAIL in the environment is a
    segmentation fault, in a one-process group too (INFO is not: the two_ranks workers run with it). When this test
    fails, the crash is fixed: update the page."""
    env = {**bench.ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0", "WORLD_SIZE": "1"}
    env.update(TORCH_DISTRIBUTED_DEBUG="DETAIL")
    run = subprocess.run([sys.executable, "-c", DDP_UNDER_DETAIL], env=env, capture_output=True, text=True, timeout=120)
    assert "group ready" in run.stdout and "DDP built" not in run.stdout
    assert run.returncode == -signal.SIGSEGV, run.stderr[-2000:]


# The record: what the page says about it.


@pytest.fixture(scope="module")
def record():
    return check_fresh(read_record("distributed"))


def test_the_record_is_fresh_and_shows_a_clean_restart(record):
    crash = record["metrics"]["crash"]
    assert crash["restarts"] == 1 and crash["torn"] == [] and len(crash["loss"]) == 5
    assert any(line.startswith("resumed from epoch-") for line in crash["log"])
    assert any("failed (exitcode: -9) local_rank: 1" in line for line in crash["log"])
    assert 1 <= crash["attempts"] <= 3  # the recorder keeps the first run in which torchrun names the killed worker


def test_the_recorded_memory_per_rank_halves_with_fsdp(record):
    memory = record["metrics"]["memory"]
    assert memory["fsdp"]["state_bytes"] == [memory["ddp"]["state_bytes"][0] // 2] * 2
    assert memory["ddp"]["state_bytes"][0] == 2 * 4 * memory["parameters"]  # float32 parameters + momentum


def test_the_recorded_exit_aborts_counted_enough_launches(record):
    aborts = record["metrics"]["exit_aborts"]
    assert aborts["plain_exit"]["launches"] >= 50 and aborts["os_exit"]["launches"] >= 50
    assert aborts["os_exit"]["aborts"] == 0  # the page: with os._exit, none
    # the plain ending's count may be 0 (the abort is rare): the report prints it, and the page quotes no count
    assert aborts["os_exit"]["other_failures"] == 0 and aborts["plain_exit"]["other_failures"] == 0


def test_the_recorded_scaling_is_what_the_page_says(record):
    scaling = record["metrics"]["scaling"]
    # the page: 2 processes slower per epoch than 1, most of their epoch the all-reduce
    assert scaling["2"]["epoch_s"] > scaling["1"]["epoch_s"]
    assert 0.5 < scaling["2"]["communication_share"] < 0.9
    assert scaling["hidden"] == 256  # the page: "a 3-layer MLP of width 256", batch 64


def test_the_recorded_peak_memory_does_not_shrink_with_fsdp(record):
    memory = record["metrics"]["memory"]
    assert max(memory["fsdp"]["max_rss_mib"]) >= max(memory["ddp"]["max_rss_mib"])  # the page: "even a little higher"


REPORT = "benchmarks/reports/distributed.py"


def test_the_report_blocks_print_lines_that_fit_the_page():
    out = "".join(run_sections(REPORT, list(snippet_sections(REPORT)))[1])  # the page's hidden blocks, in order
    blocks = [html.unescape(b) for b in re.findall(r"<code>(.*?)</code>", out, re.S)]
    assert len(blocks) == 4
    assert "resumed from epoch-" in blocks[0] and "exit aborts in" in blocks[3]
    assert all(len(line) <= 84 for block in blocks for line in block.splitlines())


def test_the_page_includes_the_chapter_and_the_gpu_page_links_here():
    page = (ROOT / "docs" / "distributed.md").read_text()
    assert "srun" in page and "--max-restarts" in page and "190489" in page
    assert "distributed.md" in (ROOT / "docs" / "gpu.md").read_text()
    assert "gpu.md" in page and "SIGKILL" in page and "node_rank is only used for static" in page
