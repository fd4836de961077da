"""docs/distributed.md: snippets/distributed.py launched with torchrun on the CPU (gloo): on one node, as two nodes,
killed and restarted, sharded with FSDP2 and saved with DCP; an unreachable rendezvous; the record the page shows.

The page's blocks (the demonstrations under ``if __name__ == "__page__":`` in snippets/distributed.py) run once here
in page order: the ``page`` and ``printed`` fixtures of tests/conftest.py. The record's hidden blocks
(benchmarks/reports/distributed.py) run section by section.
"""

import html
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

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
    for bad in (["--data", "mnist"], ["--accumulate", "0"], ["--strategy", "fsdp", "--checkpoint-dir", "c"]):
        with pytest.raises(SystemExit):
            ddp.parse_args(bad)


def test_save_atomically_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("old")

    def broken(obj, path):
        open(path, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ddp.save_atomically({}, target, broken)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


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
    assert aborts["plain_exit"]["aborts"] >= 1  # the page: it happens with the plain ending
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
