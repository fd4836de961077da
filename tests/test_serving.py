"""docs/serving.md: the FastAPI server of the exported CNN, its batching, limits and shutdown.

Tested three ways: the page's own run (the ``page`` and ``printed`` fixtures of tests/conftest.py: a server in a
thread, good and bad requests, 64 requests at once, a slow client); the batcher and the app alone, in this process;
and the program itself, ``python -m snippets.serving serve``, as a separate process on a free local port: readiness
before warm-up, malformed headers, bodies over the limit, slow clients, bad images, 200 concurrent requests compared
with the eager model, and SIGTERM under load. Every wait is bounded, and every process is killed in ``finally``.
"""

import asyncio
import collections
import contextlib
import http.client
import io
import json
import logging
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import ROOT, read_record_or_skip, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from PIL import Image

import snippets.serving as s
from site_tools.records import check_fresh

REQUEST_TIMEOUT = 1.0  # the deadline of the server process the tests start (the program's default: 10 s)
PNG = {"Content-Type": "image/png"}
NOISE = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)  # a PNG that does not compress to nothing


def png_bytes(array, format="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format)
    return buffer.getvalue()


def ask(port, method, path, body=None, headers=None, timeout=30):
    """(status, headers, body text) of one request on a connection of its own."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def read_to_the_end(connection):
    return b"".join(iter(lambda: connection.recv(65536), b""))


def raw(port, data, timeout=10):
    """What the server answers to ``data`` sent as it is, up to the server's closing the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(data)
        return read_to_the_end(connection).decode("latin-1")


HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"


def predict_request(body):
    """The bytes of POST /predict with ``body`` and its Content-Length."""
    return HEAD + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def timed_raw(port, data):
    """(what the server answers to ``data``, up to its closing the connection; the seconds that took)."""
    started = time.monotonic()
    answer = raw(port, data)
    return answer, time.monotonic() - started


def refused(port):
    """Whether a connection to ``port`` is refused."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_for(condition, seconds, message):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.05)


class ServerProcess:
    """``python -m snippets.serving serve`` as a separate process, its model's loading held until ``release()``
    (torch.export.load waits for a line on its standard input), its log in a file."""

    def __init__(self, model, log, *options):
        code = (
            "import sys, torch, snippets.serving as serving\n"
            "load = torch.export.load\n"
            "def held(*args, **kwargs):\n"
            "    sys.stdin.readline()\n"
            "    return load(*args, **kwargs)\n"
            "torch.export.load = held\n"
            "serving.main(sys.argv[1:])\n"
        )
        self.log = log
        with open(log, "w") as file:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, "serve", "--model", str(model), "--port", "0", "--threads", "1",
                 "--no-access-log", *options],
                stdin=subprocess.PIPE, stderr=file, cwd=ROOT, text=True,
            )  # fmt: skip
        wait_for(lambda: self.port_in_log() or self.process.poll() is not None, 120, "the server did not start")
        self.port = self.port_in_log()
        assert self.port, self.log.read_text()

    def port_in_log(self):
        found = re.search(r"running on http://127\.0\.0\.1:(\d+)", self.log.read_text())
        return int(found[1]) if found else None

    def release(self):
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        wait_for(lambda: ask(self.port, "GET", "/ready")[0] == 200, 120, "the server was not ready in 120 s")

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(page, tmp_path_factory):
    """The program serving the page's model, with a deadline of REQUEST_TIMEOUT; what its readiness and prediction
    routes answered before the model was loaded."""
    started = ServerProcess(
        page.model_path, tmp_path_factory.mktemp("server") / "log.txt", "--request-timeout", str(REQUEST_TIMEOUT),
        "--max-connections", "400",
    )  # fmt: skip
    try:
        started.before = {
            "ready": ask(started.port, "GET", "/ready"),
            "predict": ask(started.port, "POST", "/predict", png_bytes(np.zeros((28, 28), np.uint8)), PNG),
            "predict, no body sent": timed_raw(started.port, HEAD + b"Content-Length: 50000\r\n\r\n"),
        }
        started.release()
        yield started
    finally:
        started.stop()


# --- the page's run


def test_the_model_learns_the_digits(printed):
    assert float(re.search(r"held-out accuracy: ([\d.]+)%", printed)[1]) >= 90


def test_the_page_asks_before_and_after_the_model_is_ready(page_run):
    out = page_run.printed_by("server-demo")
    assert out == "before loading: 503 {'detail': 'loading the model'}\nafter warm-up:  200 {'status': 'ready'}\n"


def test_the_page_predicts_its_digit_and_refuses_each_bad_request(page, page_run):
    lines = page_run.printed_by("requests-demo").splitlines()
    label = page.labels[1501].item()
    assert re.fullmatch(rf"label {label}: 200 \{{'digit': {label}, 'probability': 0\.9\d*\}}", lines[0]), lines[0]
    statuses = [int(re.search(r": (\d{3}) ", line)[1]) for line in lines[1:]]
    assert statuses == [400, 422, 422, 422, 415]


def test_the_page_batches_64_requests_and_answers_each_with_its_own_digit(page_run):
    assert page_run.printed_by("batching-demo") == (
        "64 answers, all 200: True\n"
        "each answer the eager model's digit for its image: True\n"
        "fewer forward passes than requests: True\n"
    )


def test_the_page_shows_the_limits(page_run):
    out = page_run.printed_by("limits-demo")
    assert out.startswith('400 Invalid HTTP request received.\n413 {"detail":"a body over 100,000 bytes"}\n')
    assert "another client meanwhile: 200 {'digit'" in out
    cut_off = float(re.search(r"cut off after ([\d.]+) s", out)[1])
    assert 0.9 <= cut_off <= 3  # the page's server has a deadline of 1 s


def test_a_frozen_heap_makes_a_full_collection_cheap(page_run):
    out = page_run.printed_by("gc-demo")
    before, after = (float(t) for t in re.findall(r"a full collection, .*?: ([\d.]+) ms", out))
    assert "over 100,000: True\nloading the model added under a tenth of them: True\n" in out and after < before / 10


def test_the_exercises_print_their_answers(page_run):
    assert page_run.printed_by("exercise-wait").startswith("each request took at least 50 ms: True\n")
    assert page_run.printed_by("exercise-overload") == "statuses: [200, 503]\neach 503 says when to try again: True\n"
    missing = page_run.printed_by("exercise-missing")
    assert missing.startswith("503 the model failed to load: [Errno 2] No such file or directory:")
    assert "…/missing.pt2" in missing


# --- the batcher and the app, in this process


class Lookup:
    """A stand-in model whose answer for an image is its first pixel, as a digit: each image's row is its own."""

    def __init__(self, fail_on=None, delay=0.0):
        self.batches, self.fail_on, self.delay = [], fail_on, delay

    def __call__(self, pixels):
        self.batches.append(len(pixels))
        time.sleep(self.delay)
        if self.fail_on is not None and (pixels[:, 0, 0, 0] == self.fail_on).any():
            raise RuntimeError("the model failed")
        return torch.nn.functional.one_hot(pixels[:, 0, 0, 0].long() % 10, 10).float()


def image(value):
    return torch.full((1, 1, 28, 28), value, dtype=torch.uint8)


@contextlib.asynccontextmanager
async def running(batcher):
    """``batcher`` running in a task; then cancelled, and its worker thread shut down."""
    runner = asyncio.create_task(batcher.run())
    try:
        yield batcher
    finally:
        runner.cancel()
        batcher.worker.shutdown()


def test_each_request_gets_its_own_row_in_batches_of_at_most_n():
    async def scenario():
        model = Lookup()
        async with running(s.Batcher(model, max_batch=8, max_wait=0.05)) as batcher:
            answers = await asyncio.gather(*(batcher.predict(image(i)) for i in range(30)))
        return model, batcher, answers

    model, batcher, answers = asyncio.run(scenario())
    assert [digit for digit, _ in answers] == [i % 10 for i in range(30)]
    assert all(probability == 1.0 for _, probability in answers)
    assert max(model.batches) == 8 and sum(model.batches) == 30 and len(model.batches) == 4
    assert sum(size * n for size, n in batcher.batch_sizes.items()) == 30


def test_a_batch_waits_t_for_company_but_not_once_it_is_full():
    async def timed(requests, max_batch):
        async with running(s.Batcher(Lookup(), max_batch=max_batch, max_wait=0.3)) as batcher:
            started = time.perf_counter()
            await asyncio.gather(*(batcher.predict(image(i)) for i in range(requests)))
            return time.perf_counter() - started

    assert asyncio.run(timed(1, max_batch=4)) >= 0.3  # alone: the whole wait
    assert asyncio.run(timed(4, max_batch=4)) < 0.25  # full at once: no wait


def a_failed_batch_then_one_more(batcher, values, mend=lambda: None):
    """(the answers, exceptions included, to images of ``values`` sent at once; after ``mend()``, the answer to an
    image of 7)."""

    async def scenario():
        async with running(batcher), asyncio.timeout(5):  # the batcher's death: these would wait forever
            failed = await asyncio.gather(*(batcher.predict(image(i)) for i in values), return_exceptions=True)
            mend()
            return failed, await batcher.predict(image(7))

    return asyncio.run(scenario())


def test_a_failing_forward_pass_fails_its_batch_only():
    batcher = s.Batcher(Lookup(fail_on=3), max_batch=4, max_wait=0.05)
    failed, after = a_failed_batch_then_one_more(batcher, range(2, 6))
    assert all(isinstance(answer, RuntimeError) for answer in failed) and after == (7, 1.0)


def test_a_failure_outside_the_forward_pass_fails_its_batch_and_the_batcher_goes_on():
    batcher = s.Batcher(Lookup(), max_batch=4)
    counted, batcher.batch_sizes = batcher.batch_sizes, None  # a bug after the forward pass

    def mend():
        batcher.batch_sizes = counted

    failed, after = a_failed_batch_then_one_more(batcher, range(3), mend)
    assert all(isinstance(answer, TypeError) for answer in failed) and after == (7, 1.0)


def test_a_full_queue_is_refused_at_once():
    async def scenario():
        batcher = s.Batcher(Lookup(), max_queue=2)  # not running: nothing leaves the queue
        waiting = [asyncio.ensure_future(batcher.predict(image(i))) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(asyncio.QueueFull):
            await batcher.predict(image(2))
        for future in waiting:
            future.cancel()

    asyncio.run(scenario())


def test_a_digit_decodes_in_well_under_a_millisecond(page):
    """The page: a 28 x 28 PNG decodes in microseconds, so the server decodes it on its event loop."""
    body = png_bytes(page.pixels[1500, 0].numpy())
    started = time.perf_counter()
    for _ in range(100):
        s.read_png(body)
    assert (time.perf_counter() - started) / 100 < 1e-3


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_header_that_claims_50000_by_50000_pixels_is_refused_as_bad_input():
    """Pillow refuses to open an image of over ~179 Mpx (DecompressionBombError): a 422, not a 500."""
    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )
    with pytest.raises(s.InputError, match="too many pixels"):
        s.read_png(bomb)


def test_broken_pngs_are_refused_as_bad_input_and_never_raise_anything_else():
    """2,000 copies of a digit's PNG with a few bytes changed, a third of them cut short: each decodes, or raises
    InputError (a 422); any other exception would be a 500."""
    good = png_bytes(NOISE)
    rng = np.random.default_rng(0)
    outcomes = collections.Counter()
    for _ in range(2000):
        body = bytearray(good)
        for position in rng.integers(8, len(body), rng.integers(1, 5)):
            body[position] = rng.integers(256)
        if rng.random() < 0.3:
            body = body[: rng.integers(8, len(body))]
        try:
            s.read_png(bytes(body))
            outcomes["decoded"] += 1
        except s.InputError:
            outcomes["422"] += 1
    assert outcomes["422"] > 1000, outcomes


def test_a_batch_sizes_first_call_is_slower_than_the_next_ones_eager_or_exported(page):
    """The page's warm-up, which runs every batch size the batcher can form: a model's first call with a batch size
    this process has not used does one-time work (a millisecond or more here), the eager model's as the exported
    program's. Each size's first call against the minimum of its next five (a busy machine makes a call slower, never
    faster); the lower median of six sizes, against noise."""
    program = torch.export.load(page.model_path).module()

    def seconds(model, batch):
        started = time.perf_counter()
        model(batch)
        return time.perf_counter() - started

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the test's server: two threads on a busy machine only add noise
    try:
        with torch.inference_mode():
            for model, sizes in ((page.model, range(40, 46)), (program, range(50, 56))):  # sizes nothing here used
                extra = []
                for size in sizes:
                    batch = torch.zeros(size, 1, 28, 28, dtype=torch.uint8)
                    first = seconds(model, batch)
                    extra.append(first - min(seconds(model, batch) for _ in range(5)))
                assert sorted(extra)[2] > 3e-4, extra
    finally:
        torch.set_num_threads(threads)


def call_app(app, headers, body=b""):
    """(status, JSON) of POST /predict sent to the ASGI app directly, with ``headers`` as they are: what a server
    that passes any header on would hand it."""
    messages = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    return messages[0]["status"], json.loads(messages[1]["body"])


def test_the_app_checks_content_length_as_ascii_digits():
    """h11 refuses "²" before the app sees it; the app refuses it too, for a server that would not."""
    assert "²".isdigit() and not "²".isascii()
    app = s.create_app(lambda: None)
    app.state.batcher, app.state.failure = types.SimpleNamespace(), None  # ready, as far as the route can tell
    for value in ("²".encode("latin-1"), "１０".encode(), b"-5", b"1e3"):
        status, answer = call_app(app, [(b"content-type", b"image/png"), (b"content-length", value)])
        assert status == 400 and "is not a number" in answer["detail"]


def test_the_deadline_counts_from_each_requests_first_byte_not_from_the_connection(server):
    """Two requests on one keep-alive connection, further apart than the deadline: the second is served."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for pause in (REQUEST_TIMEOUT + 0.3, 0):  # the pause is under uvicorn's keep-alive timeout of 5 s
            connection.request("GET", "/ready")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b'{"status":"ready"}')
            time.sleep(pause)
    finally:
        connection.close()


def test_the_program_refuses_a_model_file_that_is_not_one(tmp_path):
    (tmp_path / "text.pt2").write_text("not a zip archive")
    for model in (tmp_path / "missing.pt2", tmp_path / "text.pt2", tmp_path):
        with pytest.raises(SystemExit, match=r"^error: .*: not a torch\.export \.pt2 file$"):
            s.main(["serve", "--model", str(model)])


def test_idle_connections_are_accepted_past_the_limit_and_a_request_then_gets_uvicorns_plain_503(page):
    """limit_concurrency sheds load, it does not bound connections: uvicorn accepts them all, counts the connections
    it holds (the asking one included), and refuses a request over the limit."""
    server, thread, port = page.start_in_thread(s.create_app(lambda: page.loaded), max_connections=3)
    idle = []
    try:
        page.wait_until_ready(port)
        for others, expected in ((1, 200), (2, 503)):
            while len(idle) < others:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            time.sleep(0.2)  # accepted by the server
            status, headers, body = ask(port, "GET", "/ready")
            assert status == expected
        idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))  # accepted all the same
        idle[-1].settimeout(0.2)
        with pytest.raises(TimeoutError):  # open: nothing to read, no close
            idle[-1].recv(1)
        assert headers["content-type"].startswith("text/plain") and body == "Service Unavailable"
    finally:
        for connection in idle:
            connection.close()
        server.should_exit = True
        thread.join(timeout=30)


def test_a_failing_model_gets_a_json_500_and_the_traceback_stays_in_the_log(page):
    class FailsOnWhite:
        def __call__(self, pixels):
            if (pixels == 255).any():
                raise RuntimeError("the model failed")
            return page.loaded(pixels)

    server, thread, port = page.start_in_thread(s.create_app(FailsOnWhite))
    logged = logging.Handler()
    logged.records = []
    logged.emit = logged.records.append
    logging.getLogger("uvicorn.error").addHandler(logged)  # after uvicorn has configured its loggers
    try:
        page.wait_until_ready(port)
        status, headers, body = ask(port, "POST", "/predict", png_bytes(np.full((28, 28), 255, np.uint8)), PNG)
        assert (status, json.loads(body)) == (500, {"detail": "internal error"})
        assert ask(port, "POST", "/predict", png_bytes(np.zeros((28, 28), np.uint8)), PNG)[0] == 200  # still serving
    finally:
        logging.getLogger("uvicorn.error").removeHandler(logged)
        server.should_exit = True
        thread.join(timeout=30)
    errors = [record.exc_info[1] for record in logged.records if record.exc_info]
    assert any(str(error) == "the model failed" for error in errors)  # the traceback, in uvicorn's log


@pytest.fixture(scope="module")
def stand_in(page):
    """The app in a thread, serving a Lookup (max_batch 4); the batch sizes it saw before /ready answered 200."""
    model = Lookup()
    app = s.create_app(lambda: model, max_batch=4)
    server, thread, port = page.start_in_thread(app)
    try:
        page.wait_until_ready(port)
        yield types.SimpleNamespace(model=model, app=app, port=port, warmed_up=list(model.batches))
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_the_warm_up_runs_every_batch_size_before_the_server_is_ready(stand_in):
    assert stand_in.warmed_up == [1, 2, 3, 4]


def test_a_request_whose_client_went_away_is_not_computed(stand_in):
    """A request waits while a slow forward pass runs; its client closes the connection: the batcher drops it."""
    stand_in.model.delay, stand_in.model.batches = 0.4, []
    try:
        with ThreadPoolExecutor(max_workers=1) as other:
            first = other.submit(ask, stand_in.port, "POST", "/predict", png_bytes(np.full((28, 28), 3, np.uint8)), PNG)
            wait_for(lambda: stand_in.model.batches, 5, "the first request was not computed")
            with socket.create_connection(("127.0.0.1", stand_in.port), timeout=5) as leaving:
                body = png_bytes(np.full((28, 28), 5, np.uint8))
                leaving.sendall(predict_request(body))
                time.sleep(0.1)  # queued behind the first
            assert first.result(timeout=5)[0::2] == (200, '{"digit":3,"probability":1.0}')
        time.sleep(0.5)  # time for another forward pass, if any
        assert stand_in.model.batches == [1]
    finally:
        stand_in.model.delay = 0.0


def test_what_the_page_says_of_uvicorns_source():
    import inspect

    import uvicorn
    from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
    from uvicorn.protocols.http.h11_impl import H11Protocol

    assert HIGH_WATER_LIMIT == 64 * 1024  # it stops reading a socket while 64 KiB of body wait unread
    assert uvicorn.Config("app:app").timeout_keep_alive == 5
    # no timer on a new connection; the keep-alive timer cancelled at a request's first byte, set again after an
    # answer (#157)
    assert "call_later" not in inspect.getsource(H11Protocol.connection_made)
    received = inspect.getsource(H11Protocol.data_received)
    assert received.index("self._unset_keepalive_if_required()") < received.index("self.conn.receive_data(data)")
    assert "self.timeout_keep_alive_task = self.loop.call_later" in inspect.getsource(H11Protocol.on_response_complete)
    # limit_concurrency is checked per request, once the request's head is parsed: connections are all accepted
    assert "len(self.connections) >= self.limit_concurrency" in inspect.getsource(H11Protocol.handle_events)
    # a pipelined request is parsed from the buffer after an answer, with no data_received: hence handle_events
    assert "self.handle_events()" in inspect.getsource(H11Protocol.on_response_complete)
    assert "signal.raise_signal(captured_signal)" in inspect.getsource(uvicorn.Server.capture_signals)
    assert "await self.lifespan.startup()" in inspect.getsource(uvicorn.Server.startup).split("create_server")[0]


# --- the program, as a separate process on a free port


def test_readiness_answers_503_until_the_model_is_loaded_and_warmed_up(server):
    status, headers, body = server.before["ready"]
    assert (status, json.loads(body), headers["retry-after"]) == (503, {"detail": "loading the model"}, "1")
    status, headers, body = server.before["predict"]
    assert status == 503 and headers["retry-after"] == "1"
    answer, seconds = server.before["predict, no body sent"]  # closed at once, its body not awaited
    assert answer.startswith("HTTP/1.1 503 ") and "connection: close" in answer.lower() and seconds < 0.5
    assert ask(server.port, "GET", "/ready")[0::2] == (200, '{"status":"ready"}')


@pytest.mark.parametrize("value", [b"\xb2", "²".encode(), b"12abc", b"-1"])
def test_a_malformed_content_length_gets_a_400_and_the_server_goes_on(server, value):
    answer = raw(server.port, HEAD + b"Content-Length: " + value + b"\r\n\r\n")
    assert answer.startswith("HTTP/1.1 400 ") and "Traceback" not in answer
    assert ask(server.port, "GET", "/ready")[0] == 200


def test_a_body_over_the_limit_is_refused_before_it_is_sent(server):
    answer = raw(server.port, HEAD + b"Content-Length: 5000000\r\n\r\n")  # headers only: the server answers, and closes
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413 ") and "connection: close" in head.lower()
    assert json.loads(body) == {"detail": "a body over 100,000 bytes"}


def test_a_streamed_body_is_counted_as_it_arrives_and_refused_past_the_limit(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        connection.settimeout(0.05)
        sent, answer = 0, b""
        while not answer and sent < 1_000_000:  # 10 kB chunks, until the server answers
            connection.sendall(b"2710\r\n" + b"x" * 10_000 + b"\r\n")
            sent += 10_000
            try:
                answer = connection.recv(65536)
            except TimeoutError:
                pass
    assert answer.startswith(b"HTTP/1.1 413 ") and 100_000 < sent <= 140_000


def test_a_slow_body_is_cut_off_within_the_deadline_while_others_are_served(server):
    """The head at once, then the body a byte every 0.1 s: the deadline still runs once the head is complete."""
    served = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.settimeout(0.1)
        started = time.monotonic()
        slow.sendall(HEAD + b"Content-Length: 1000\r\n\r\n")  # more than it will send
        for _ in range(100):
            try:
                slow.sendall(b"x")
                if slow.recv(1) == b"":
                    break
            except TimeoutError:  # still open: meanwhile, another client
                if len(served) < 3:
                    served.append(ask(server.port, "GET", "/ready")[0])
            except ConnectionError:
                break
        elapsed = time.monotonic() - started
    assert REQUEST_TIMEOUT - 0.1 <= elapsed <= REQUEST_TIMEOUT + 1.5, elapsed
    assert served == [200, 200, 200]
    assert "request not complete within 1.0 s" in server.log.read_text()


def test_a_request_pipelined_behind_a_complete_one_has_the_deadline_too(server, page):
    """A complete request and the start of a second in one write: uvicorn answers the first, then parses the second
    from its buffer, with no byte received; the deadline runs from the first's answer. Two connections, one whose
    second request stops in its head, one in its body."""
    body = png_bytes(page.pixels[1500, 0].numpy())
    first = predict_request(body)
    connections = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
    try:
        started = time.monotonic()
        connections[0].sendall(first + b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        connections[1].sendall(first + HEAD + b"Content-Length: 900\r\n\r\nx")
        for connection in connections:
            connection.settimeout(REQUEST_TIMEOUT + 1.5)  # within the deadline after the answer, or TimeoutError
            answer = read_to_the_end(connection)
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1") == 1
        assert time.monotonic() - started <= REQUEST_TIMEOUT + 1.5
    finally:
        for connection in connections:
            connection.close()


def test_an_answer_sent_before_the_body_is_read_closes_the_connection(server):
    """A 415 from the head alone: the server closes at once rather than read a body it does not want."""
    answer, seconds = timed_raw(
        server.port, HEAD.replace(b"image/png", b"text/plain") + b"Content-Length: 50000\r\n\r\n"
    )
    assert answer.startswith("HTTP/1.1 415 ") and "connection: close" in answer.lower() and seconds < 0.5


def test_a_connection_that_sends_nothing_is_closed_within_the_deadline(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        started = time.monotonic()
        assert idle.recv(1) == b""
        assert time.monotonic() - started <= REQUEST_TIMEOUT + 1.5


@pytest.mark.parametrize(
    "method, path, body, headers, status, message",
    [
        ("POST", "/predict", b"", PNG, 400, "no body"),
        ("POST", "/predict", b"\x89PNG\r\n\x1a\n but not really", PNG, 422, "not an image"),
        ("POST", "/predict", png_bytes(np.zeros((28, 28, 3), np.uint8)), PNG, 422, "image mode RGB"),
        ("POST", "/predict", png_bytes(np.zeros((28, 20), np.uint8)), PNG, 422, "a 20 x 28 image"),
        ("POST", "/predict", png_bytes(np.zeros((50_000, 1), np.uint8)), PNG, 422, "a 1 x 50000 image"),
        ("POST", "/predict", png_bytes(np.zeros((28, 28), np.uint8), "JPEG"), PNG, 422, "a JPEG image"),
        ("POST", "/predict", png_bytes(NOISE)[:200], PNG, 422, "broken PNG"),
        ("POST", "/predict", b"{}", {"Content-Type": "application/json"}, 415, "send image/png"),
        ("POST", "/predict", b"x", {}, 415, "send image/png"),
        ("GET", "/predict", None, {}, 405, "Method Not Allowed"),
        ("GET", "/nowhere", None, {}, 404, "Not Found"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_json_message_and_no_traceback(server, method, path, body, headers, status,
                                                                     message):  # fmt: skip
    log_before = server.log.read_text()
    got, answer_headers, text = ask(server.port, method, path, body, headers)
    assert (got, answer_headers["content-type"]) == (status, "application/json")
    assert message in json.loads(text)["detail"] and "Traceback" not in text
    assert "Traceback" not in server.log.read_text()[len(log_before) :]


def test_200_concurrent_requests_each_get_their_own_prediction(server, page):
    images = page.pixels[1500:1700]
    with torch.inference_mode():
        probabilities, digits = page.model(images).max(dim=1)
    before = json.loads(ask(server.port, "GET", "/stats")[2])["batch_sizes"]
    barrier = threading.Barrier(200, timeout=60)

    def predict(index):
        body = png_bytes(images[index, 0].numpy())
        barrier.wait()  # all at once
        status, _, text = ask(server.port, "POST", "/predict", body, PNG, timeout=60)
        return status, json.loads(text)

    with ThreadPoolExecutor(max_workers=200) as clients:
        answers = list(clients.map(predict, range(200)))
    assert [status for status, _ in answers] == [200] * 200
    assert [answer["digit"] for _, answer in answers] == digits.tolist()
    assert all(abs(answer["probability"] - p) < 1e-4 for (_, answer), p in zip(answers, probabilities.tolist()))
    after = json.loads(ask(server.port, "GET", "/stats")[2])["batch_sizes"]
    passes = sum(after.values()) - sum(before.values())
    assert passes < 200 and max(int(size) for size in after) > 1  # batched


def test_the_export_command_writes_the_model_and_ten_digits(tmp_path, monkeypatch):
    """``python -m snippets.serving export FOLDER`` (its training replaced by an untrained model, for time)."""
    monkeypatch.setattr(s, "trained", lambda pixels, labels: s.Deployable(s.build_cnn()).eval())
    assert s.main(["export", str(tmp_path)]) is None
    pngs = sorted(tmp_path.glob("digit-*-label-*.png"))
    assert [path.name for path in pngs][:2] == ["digit-1500-label-1.png", "digit-1501-label-7.png"]
    assert len(pngs) == 10 and all(s.read_png(path.read_bytes()).shape == (1, 1, 28, 28) for path in pngs)
    program = torch.export.load(tmp_path / "digits.pt2").module()
    assert program(torch.zeros(3, 1, 28, 28, dtype=torch.uint8)).shape == (3, 10)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["digits.pt2", *(p.name for p in pngs)])


def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(server, page):
    """The last test of the module's server. 50 requests, their last bytes held back, are in flight when SIGTERM
    comes: new connections are refused, each held request, completed after the signal, is answered with its image's
    digit as the eager model predicts it, and the process exits with status 0."""
    images = page.pixels[1500:1550]
    with torch.inference_mode():
        expected = page.model(images).argmax(dim=1).tolist()
    connections = []
    try:
        for picture in images:
            request = predict_request(png_bytes(picture[0].numpy()))
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            connection.sendall(request[:-1])
            connections.append((connection, request[-1:]))
        time.sleep(0.1)  # read by the server: accepted, each waiting for its last byte
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: refused(server.port), 0.5, "the server still accepts connections 0.5 s after SIGTERM")
        for connection, last_byte in connections:  # within the server's deadline of 1 s
            connection.sendall(last_byte)
        answers = []
        for connection, _ in connections:
            head, _, body = read_to_the_end(connection).decode().partition("\r\n\r\n")  # then the server closes it
            answers.append((head.split()[1], json.loads(body)["digit"]))
        assert server.process.wait(timeout=30) == 0
    finally:
        for connection, _ in connections:
            connection.close()
    assert answers == [("200", digit) for digit in expected]
    assert "Finished server process" in server.log.read_text()


# --- the recorded load test


@pytest.fixture(scope="module")
def record():
    return read_record_or_skip("serving")


def test_the_record_is_current(record):
    check_fresh(record)


def test_the_record_supports_what_the_page_says(record):
    metrics = record["metrics"]
    results = metrics["results"]
    alone, batched, waited = (results[name] for name in ("no batching", "batching, no wait", "batching, wait 5 ms"))
    assert all(run["mean_batch"] == 1.0 for run in alone.values())
    for runs in results.values():
        assert runs["1"]["mean_batch"] == 1.0  # one client: nothing to batch
        assert all(run["errors"] == {} for run in runs.values())
    assert waited["1"]["p50_ms"] >= batched["1"]["p50_ms"] + 4  # the wait is added to every answer
    assert alone["64"]["requests_per_s"] < 1.5 * alone["8"]["requests_per_s"]  # stops growing
    assert alone["1"]["p50_ms"] < alone["8"]["p50_ms"] < alone["32"]["p50_ms"] < alone["64"]["p50_ms"]
    means = [batched[c]["mean_batch"] for c in ("1", "8", "32", "64")]
    assert means == sorted(means) and means[-1] > 4  # batches grow with the clients
    assert waited["8"]["mean_batch"] > batched["8"]["mean_batch"]  # the wait makes larger batches at 8 clients,
    assert all(waited[c]["mean_batch"] >= 0.9 * batched[c]["mean_batch"] for c in ("32", "64"))  # never much smaller
    assert set(metrics["exit_status_after_sigterm"].values()) == {0}


def test_the_served_cnn_is_the_deployment_chapters_own():
    """The page defines the model it serves, so that it stands alone: the same network, layer for layer, as the
    deployment chapter's, and the same preprocessing."""
    import snippets.deploy as deploy

    assert str(s.build_cnn()) == str(deploy.build_cnn())
    for served, deployed in zip(
        s.build_cnn(seed=3).state_dict().values(), deploy.build_cnn(seed=3).state_dict().values()
    ):
        assert torch.equal(served, deployed)
    pixels = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    model = deploy.build_cnn().eval()
    assert torch.equal(s.Deployable(model).eval()(pixels), deploy.Deployable(model).eval()(pixels))
