"""The distributed chapter's launches that are too slow for every build.

    python -m benchmarks.distributed            # print it
    python -m benchmarks.distributed --record   # and record it

Launches snippets/distributed.py with torchrun (CPU, gloo): a crash-and-restart
run whose log the page shows, the memory per rank of DDP and FSDP2, the time per
epoch with 1 and 2 processes and the share of it spent communicating, and the
exit abort of torch 2.14 counted over many launches with and without the
script's --fast-exit (os._exit). ``--record`` writes
docs/records/distributed.json. Record on an idle machine: the timings and the
abort rate depend on the load.

The launch helpers are shared with tests/test_distributed.py. They launch the
script with --fast-exit unless told otherwise, so that the dozens of launches of
a test run do not fail on that abort.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import snippets.distributed as d
import torch
from site_tools.records import write_record

PRODUCERS = [d.__file__, __file__]
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "snippets" / "distributed.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # what torchrun runs
# CPU and gloo, even on a GPU machine; one thread per process
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
ABORT = "terminate called without an active exception"
# the crash run: epochs long enough (about 0.2 s) to kill a worker mid-training
CRASH_ARGS = ["--epochs", "5", "--samples", "8192"]


def free_port():
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Launch:
    """A torchrun launcher in its own process group: killed with all its workers
    on timeout or on leaving the with block. fast_exit: pass --fast-exit."""

    def __init__(
        self,
        launcher_args,
        script_args,
        cwd,
        timeout=120,
        merge=False,
        fast_exit=True,
    ):
        script_args = [*script_args, *(["--fast-exit"] if fast_exit else [])]
        command = [*TORCHRUN, *launcher_args, str(SCRIPT), *script_args]
        self.timeout = timeout
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.began = time.perf_counter()

    def wait(self):
        """(returncode, stdout, stderr, seconds); raise TimeoutError on timeout."""
        try:
            out, err = self.process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.process.communicate()
            raise TimeoutError(
                f"torchrun ran past {self.timeout} s:\n{out[-2000:]}\n{err or ''}"
            ) from None
        err = err or ""  # merged into out
        return self.process.returncode, out, err, time.perf_counter() - self.began

    def kill(self):
        """SIGKILL the launcher's group and every process below it: torchrun
        starts each worker in a session of its own."""
        import psutil

        try:
            below = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            below = []
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for child in below:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:  # still running: an error or a timeout
            self.kill()
        self.process.communicate()


def standalone(
    nproc, script_args, cwd, timeout=120, extra=(), merge=False, fast_exit=True
):
    launcher = ["--standalone", "--nproc-per-node", str(nproc), *extra]
    return Launch(launcher, script_args, cwd, timeout, merge, fast_exit)


def worker_pids(launcher_pid):
    """The training processes of a torchrun launcher, by local rank: from each
    one's LOCAL_RANK, or, where none shows one (a /proc that hides or denies
    environments), from the order torchrun started them in (rank 0 first)."""
    import psutil

    workers, unread = {}, []
    for child in psutil.Process(launcher_pid).children():
        try:
            env = child.environ()
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            env = {}
        if "LOCAL_RANK" in env:
            workers[int(env["LOCAL_RANK"])] = child.pid
        else:
            unread.append(child)
    if unread and not workers:
        ordered = sorted(unread, key=lambda child: (child.create_time(), child.pid))
        workers = {rank: child.pid for rank, child in enumerate(ordered)}
    return workers


def crash_run(out, kill_after_epoch=1, timeout=120):
    """torchrun --max-restarts 1 with per-epoch checkpoints; SIGKILL local rank 1
    once the checkpoint of kill_after_epoch is on disk. Every checkpoint that
    appears is loaded while the run goes on: a half-written one would fail."""
    out = Path(out)
    checkpoints = out / "checkpoints"
    seen, problems, killed, watch_errors = {}, [], {}, []
    args = [*CRASH_ARGS, "--checkpoint-dir", str(checkpoints)]
    args += ["--summary", str(out / "summary.json")]
    restarts = ["--max-restarts", "1"]
    with standalone(2, args, out, timeout, restarts, merge=True) as launch:
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                try:
                    look()
                except Exception as error:  # reported once; the watch goes on
                    if repr(error) not in watch_errors:
                        watch_errors.append(repr(error))
                time.sleep(0.01)

        def look():
            for path in sorted(checkpoints.glob("epoch-*.pt")):
                if path.name in seen:
                    continue
                try:
                    state = torch.load(path, weights_only=True)
                    seen[path.name] = state["epoch"]
                except Exception as error:  # a torn file
                    problems.append(f"{path.name}: {error!r}")
                    seen[path.name] = None
            due = d.checkpoint_path(checkpoints, kill_after_epoch).exists()
            if due and not killed:
                workers = worker_pids(launch.process.pid)
                if 1 in workers:
                    os.kill(workers[1], signal.SIGKILL)
                    killed["pid"] = workers[1]

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            code, stdout, stderr, seconds = launch.wait()
        finally:
            stop.set()
            watcher.join()
    return {
        "returncode": code,
        "stdout": stdout,
        "stderr": stderr,
        "seconds": seconds,
        "killed_pid": killed.get("pid"),
        "watch_errors": watch_errors,
        "checkpoints_seen": seen,
        "torn": problems,
        "leftovers": sorted(p.name for p in checkpoints.glob(".*")),
        "summary": json.loads((out / "summary.json").read_text())
        if (out / "summary.json").exists()
        else None,
    }


def reported_crash_run(out, attempts=3):
    """A crash run in which torchrun names the killed worker, and the attempt
    it took (torchrun names rank 0 instead when rank 0 has exited first)."""
    for attempt in range(1, attempts + 1):
        folder = Path(out) / f"crash-{attempt}"
        folder.mkdir()
        crash = crash_run(folder)
        if crash["returncode"] != 0 or crash["summary"] is None:
            raise RuntimeError(f"the crash run failed:\n{crash['stdout'][-3000:]}")
        killed = f"failed (exitcode: -9) local_rank: 1 (pid: {crash['killed_pid']})"
        if crash["killed_pid"] and killed in crash["stdout"]:
            return crash, attempt
    raise RuntimeError(f"torchrun named rank 0 first in all {attempts} runs")


def restart_log(output):
    """What a reader needs from a crash run: rank 0's lines and torchrun's
    messages about the failure and the restart, without paths and timestamps."""
    keep = []
    for line in output.splitlines():
        if line.startswith(("epoch ", "resumed ", "2 processes")):
            keep.append(re.sub(r" \(\d+\.\d+ s\)", "", line))
        elif "failed (exitcode:" in line or "closing signal" in line:
            # torchrun's own lines, without their level, time, pid and path
            message = re.sub(r"^[EWI]\d+ \S+ \d+ \S+\] ", "torchrun: ", line)
            keep.append(message.split(" of binary")[0])
    return keep


def epoch_seconds(stdout):
    return [
        float(s)
        for s in re.findall(r"^epoch \d+: loss \S+ \((\S+) s\)", stdout, re.M)
    ]


def memory(tmp, hidden):
    """Parameter and optimizer-state bytes per rank, and peak RSS: DDP vs FSDP2."""
    rows = {}
    for strategy in ("ddp", "fsdp"):
        summary = Path(tmp) / f"memory-{strategy}.json"
        args = ["--epochs", "1", "--samples", "1024", "--hidden", str(hidden)]
        args += ["--strategy", strategy, "--summary", str(summary)]
        with standalone(2, args, tmp) as launch:
            code, out, err, _ = launch.wait()
        if code != 0:
            raise RuntimeError(f"{strategy} failed:\n{err[-3000:]}")
        result = json.loads(summary.read_text())
        rows[strategy] = {
            "state_bytes": result["state_bytes"],
            "max_rss_mib": result["max_rss_mib"],
        }
    model = d.build_model(20, hidden)
    rows["parameters"] = sum(p.numel() for p in model.parameters())
    return rows


# --8<-- [start:scaling-worker]
def scaling_worker(samples, hidden, epochs):
    """Under torchrun: time epochs with DDP as usual, then the same epochs with
    every backward inside no_sync (no gradient all-reduce; the replicas drift
    apart, fine for a timing). The difference is the communication's cost."""
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    d.setup()
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(samples, 20, generator=generator)
    labels = torch.randint(0, 10, (samples,), generator=generator)
    dataset = TensorDataset(features, labels)
    sampler = DistributedSampler(dataset, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=64, sampler=sampler)
    torch.manual_seed(0)
    model = d.wrap(d.build_model(20, hidden), "ddp")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def epoch(sync):
        dist.barrier()
        began = time.perf_counter()
        for x, y in loader:
            with nullcontext() if sync else model.no_sync():
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        dist.barrier()
        return time.perf_counter() - began

    epoch(True)  # warm-up
    times = {"sync": [], "no_sync": []}
    for _ in range(epochs):  # interleaved: both see the same load
        times["sync"].append(epoch(True))
        times["no_sync"].append(epoch(False))
    if dist.get_rank() == 0:
        print("TIMES " + json.dumps(times), flush=True)
    dist.destroy_process_group()
    # --8<-- [end:scaling-worker]


def scaling(tmp, samples=16384, hidden=256, epochs=3, nprocs=(1, 2)):
    results = {}
    for nproc in nprocs:
        command = [*TORCHRUN, "--standalone", "--nproc-per-node", str(nproc)]
        command += ["-m", "benchmarks.distributed", "--worker"]
        command += [str(samples), str(hidden), str(epochs)]
        env = {**ENV, "PYTHONPATH": str(ROOT)}
        with subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as process:
            launch = Launch.__new__(Launch)  # kill() for a launch started here
            launch.process = process
            try:
                stdout, stderr = process.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                launch.kill()
                raise
        done = subprocess.CompletedProcess(
            command, process.returncode, stdout, stderr
        )
        match = re.search(r"^TIMES (.*)$", done.stdout, re.M)
        if match is None:
            raise RuntimeError(f"{nproc} processes failed:\n{done.stderr[-3000:]}")
        times = json.loads(match[1])
        sync, no_sync = min(times["sync"]), min(times["no_sync"])
        results[str(nproc)] = {
            "times": times,
            "epoch_s": sync,
            "no_sync_epoch_s": no_sync,
            "communication_share": max(0.0, 1 - no_sync / sync),
        }
    results["samples"], results["hidden"] = samples, hidden
    return results


def exit_aborts(tmp, launches, parallel=2):
    """Launch the small run `launches` times with the script's --fast-exit
    (os._exit) and as many times without, `parallel` at a time, interleaved."""

    def one(job):
        index, plain = job
        out = Path(tmp) / f"exit-{index}"
        out.mkdir()
        args = ["--epochs", "4", "--samples", "1024"]
        with standalone(2, args, out, timeout=120, fast_exit=not plain) as launch:
            code, stdout, stderr, _ = launch.wait()
        return plain, code, ABORT in stderr, stdout.count("epoch ") == 4

    jobs = [(i, i % 2 == 0) for i in range(2 * launches)]
    counts = {
        variant: {"launches": 0, "aborts": 0, "other_failures": 0}
        for variant in ("plain_exit", "os_exit")
    }
    with ThreadPoolExecutor(parallel) as pool:
        for plain, code, aborted, complete in pool.map(one, jobs):
            row = counts["plain_exit" if plain else "os_exit"]
            row["launches"] += 1
            if code != 0 and aborted and complete:
                row["aborts"] += 1
            elif code != 0:
                row["other_failures"] += 1
    counts["parallel"] = parallel
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.distributed",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/distributed.json"
    )
    parser.add_argument(
        "--launches", type=int, default=50, help="exit-abort launches per variant"
    )
    parser.add_argument("--hidden", type=int, default=1024, help="memory model")
    parser.add_argument(
        "--scaling-samples", type=int, default=16384, help="scaling dataset"
    )
    parser.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        scaling_worker(*args.worker)
        sys.stdout.flush()
        os._exit(0)  # as the chapter's script does with --fast-exit
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        crash, attempts = reported_crash_run(tmp)
        metrics = {
            "crash": {
                "attempts": attempts,
                "log": restart_log(crash["stdout"]),
                "loss": crash["summary"]["loss"],
                "restarts": crash["summary"]["restarts"],
                "torn": crash["torn"],
                "seconds": crash["seconds"],
            },
            "memory": memory(tmp, args.hidden),
            "scaling": scaling(tmp, args.scaling_samples),
            "exit_aborts": exit_aborts(tmp, args.launches),
        }
    metrics.update(
        threads=1,  # per process (OMP_NUM_THREADS=1)
        cpus=os.cpu_count(),
        load_average=[load_before, os.getloadavg()[0]],
    )
    print(json.dumps(metrics, indent=1))
    if args.record:
        print("recorded:", write_record("distributed", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
