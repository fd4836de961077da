"""The serving chapter's load test (a script, not a test).

    python -m benchmarks.serving            # print it
    python -m benchmarks.serving --record   # and record it

Starts the chapter's server (``python -m snippets.serving serve``) on 127.0.0.1
once per setting (without batching; batching without a wait; batching with a
wait of 5 ms), and loads it with 1, 8, 32 and 64 clients in a closed loop:
requests per second, p50 and p99 latency, the batch sizes the server formed,
and every answer that was not a 200. On a machine with 2 or more cores the
server runs on one core and the load generator on another, so that they do not
take turns on one. The numbers depend on the machine and its load, so the page
shows a recorded run: ``--record`` writes docs/records/serving.json. Record on
an idle machine.
"""

import argparse
import asyncio
import collections
import contextlib
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import snippets.serving as serving
import torch
from PIL import Image
from site_tools.records import write_record

PRODUCERS = [serving.__file__, __file__]
SETTINGS = {  # name: the server's options
    "no batching": ["--max-batch", "1", "--max-wait-ms", "0"],
    "batching, no wait": ["--max-batch", "32", "--max-wait-ms", "0"],
    "batching, wait 5 ms": ["--max-batch", "32", "--max-wait-ms", "5"],
}
CONCURRENCY = (1, 8, 32, 64)


# --8<-- [start:load]
async def client(port, request, until, results, timeout=10.0):
    """One client in a closed loop, on one keep-alive connection: send a
    request, read the whole answer, send the next, until ``until``
    (time.perf_counter); append (start, end, status) to ``results``. A request
    not answered within ``timeout`` seconds counts as an error."""
    connection = None
    while time.perf_counter() < until:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                connection = connection or await asyncio.open_connection(
                    "127.0.0.1", port
                )
                reader, writer = connection
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                if length is None:
                    raise ConnectionError(f"an answer without length: {head}")
                await reader.readexactly(int(length[1]))
            status = int(head.split(b" ", 2)[1])
            if re.search(rb"(?i)\r\nconnection: *close", head):
                writer.close()
                connection = None
        except TimeoutError:
            status = "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status = "connection error"
        if status in ("timeout", "connection error") and connection:
            connection[1].close()
            connection = None
        results.append((start, time.perf_counter(), status))
    if connection:
        connection[1].close()


async def closed_loop(port, request, clients, seconds, warmup):
    """``clients`` clients for ``warmup`` + ``seconds`` seconds: what each
    request that started in the ``seconds`` got, the number of answers that
    arrived in them, and the server's batch sizes meanwhile."""
    results = []
    begin = time.perf_counter()
    measured_from, until = begin + warmup, begin + warmup + seconds
    tasks = [client(port, request, until, results) for _ in range(clients)]
    load = asyncio.gather(*tasks)
    await asyncio.sleep(warmup)
    before = await get_json(port, "/stats")
    await asyncio.sleep(until - time.perf_counter())
    after = await get_json(port, "/stats")
    await load
    batches = collections.Counter(after["batch_sizes"])
    batches.subtract(before["batch_sizes"])
    kept = [(s, e, status) for s, e, status in results if measured_from <= s]
    answered = sum(
        measured_from <= e <= until and status == 200 for _, e, status in results
    )
    return kept, answered / seconds, batches


async def get_json(port, path, timeout=10.0):
    """The JSON answer of a GET, on a connection of its own."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        answer = await reader.read()
        writer.close()
    return json.loads(answer.partition(b"\r\n\r\n")[2])


# --8<-- [end:load]


def summary(results, requests_per_s, batches):
    """Requests per second, p50 and p99 latency (ms; None without answers),
    the number of answers behind them, batch sizes, errors."""
    latencies = [end - start for start, end, status in results if status == 200]
    statuses = collections.Counter(str(status) for _, _, status in results)
    errors = {status: n for status, n in statuses.items() if status != "200"}
    if len(latencies) > 1:
        cuts = statistics.quantiles(latencies, n=100)
    else:  # one answer is its own p50 and p99; none has neither
        cuts = latencies * 99 or [None] * 99
    sizes = {int(size): n for size, n in batches.items() if n > 0}
    passes = sum(sizes.values())
    return {
        "requests": len(latencies),
        "requests_per_s": requests_per_s,
        "p50_ms": cuts[49] * 1e3 if cuts[49] is not None else None,
        "p99_ms": cuts[98] * 1e3 if cuts[98] is not None else None,
        "batch_sizes": dict(sorted(sizes.items())),
        "mean_batch": sum(s * n for s, n in sizes.items()) / passes
        if passes
        else 0,
        "errors": errors,
    }


def line(row):
    """One run, in a line."""
    p50, p99 = (
        f"{row[k]:6.1f}" if row[k] is not None else "     -"
        for k in ("p50_ms", "p99_ms")
    )
    return (
        f"{row['requests_per_s']:7.0f}/s p50 {p50} ms p99 {p99} ms "
        f"(n {row['requests']}) batch {row['mean_batch']:5.1f} {row['errors']}"
    )


def pinned(cpus):
    """A preexec_fn that runs the server on ``cpus`` (Linux), or None."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def start_server(model, options, threads, cpus, seconds=120):
    """The server as a process on a free port, once it is ready: (process,
    port). Killed if it is not ready within ``seconds``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "snippets.serving", "serve", "--model", str(model),
         "--port", "0", "--threads", str(threads), "--no-access-log",
         "--max-queue", "1024", "--max-connections", "1024", *options],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=pinned(cpus),
    )  # fmt: skip
    log = []  # uvicorn's log, read by a thread: a silent server cannot hang us
    threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
    deadline = time.monotonic() + seconds
    ready = False
    try:
        port = None
        while time.monotonic() < deadline and process.poll() is None:
            if port is None:
                found = re.search(
                    r"running on http://127\.0\.0\.1:(\d+)", "".join(log)
                )
                port = int(found[1]) if found else None
            if port is not None:
                with contextlib.suppress(OSError, ValueError, TimeoutError):
                    answer = asyncio.run(get_json(port, "/ready", 5))
                    if ready := answer.get("status") == "ready":
                        return process, port
            time.sleep(0.1)
    finally:
        if not ready:
            process.kill()
            process.wait(timeout=30)
    if time.monotonic() < deadline:
        raise RuntimeError("the server exited:\n" + "".join(log))
    raise RuntimeError(
        f"the server was not ready within {seconds} s:\n" + "".join(log)
    )


def stop_server(process):
    """SIGTERM, as a process manager stops it; its exit status."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    finally:
        process.kill()


def png_request(image):
    """The bytes of POST /predict with ``image`` (28 x 28 uint8) as a PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image.numpy()).save(buffer, format="PNG")
    body = buffer.getvalue()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def cpu_split():
    """(the server's CPUs, the load generator's CPUs): one core each when there
    are two or more, else both on all (None)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def measure(model, settings=SETTINGS, concurrency=CONCURRENCY, seconds=5.0,
            warmup=1.0, image=None):  # fmt: skip
    """Every setting at every concurrency: {setting: {clients: summary}}, and
    each server's exit status after SIGTERM."""
    image = image if image is not None else torch.zeros(28, 28, dtype=torch.uint8)
    request = png_request(image)
    server_cpus, client_cpus = cpu_split()
    all_cpus = os.sched_getaffinity(0) if client_cpus else None
    results, exit_statuses = {}, {}
    try:
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        for name, options in settings.items():
            process, port = start_server(model, options, 1, server_cpus)
            try:
                results[name] = {}
                for clients in concurrency:
                    run = closed_loop(port, request, clients, seconds, warmup)
                    results[name][str(clients)] = row = summary(*asyncio.run(run))
                    print(f"{name:20} {clients:3} clients:", line(row), flush=True)
            finally:
                exit_statuses[name] = stop_server(process)
    finally:
        if all_cpus:
            os.sched_setaffinity(0, all_cpus)
    return {
        "settings": {name: " ".join(options) for name, options in settings.items()},
        "results": results,
        "exit_status_after_sigterm": exit_statuses,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "server_cpus": sorted(server_cpus) if server_cpus else "all",
        "client_cpus": sorted(client_cpus) if client_cpus else "all",
        "threads": 1,
        "load_generator": "closed-loop asyncio clients, one connection each",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serving", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/serving.json"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the server's: the record names this count
    load_before = os.getloadavg()[0]
    pixels, labels = serving.digits_as_mnist()
    model = serving.trained(pixels[:1500], labels[:1500])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "digits.pt2"
        serving.export_to(path, model, pixels[:2])
        metrics = measure(path, seconds=args.seconds, image=pixels[1500, 0])
    metrics["load_average"] = [load_before, os.getloadavg()[0]]
    metrics["fastapi"] = __import__("fastapi").__version__
    metrics["uvicorn"] = __import__("uvicorn").__version__
    if args.record:
        print("recorded:", write_record("serving", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
