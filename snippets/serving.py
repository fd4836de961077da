"""Serving: the code of docs/serving.md.

The deployment chapter's exported CNN behind an HTTP API: FastAPI on uvicorn,
dynamic batching (requests that arrive within a few milliseconds share one
forward pass, run in a worker thread), readiness after warm-up, limits on
bodies, slow clients, connections and the queue, and a graceful shutdown.
``python -m snippets.serving serve --model digits.pt2`` is the server;
``python -m snippets.serving export FOLDER`` trains and exports the page's
model. Definitions are at module level; what the page runs is at the end.
"""

# --8<-- [start:model]
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def build_cnn(seed=0):
    """The deployment chapter's CNN: two 5 x 5 convolution blocks, a hidden
    layer of 128 and 10 logits, for 1 x 28 x 28 digits."""
    torch.manual_seed(seed)

    def block(in_channels, out_channels):
        return [
            nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(1, 16),
        *block(16, 32),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


class Deployable(nn.Module):
    """Raw 8-bit pixels (N x 1 x 28 x 28, uint8) in, the probabilities of the
    10 digits out: the preprocessing is inside the model."""

    def __init__(self, model, mean=0.1307, std=0.3081):
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, pixels):
        x = (pixels.float() / 255 - self.mean) / self.std
        return self.model(x).softmax(dim=1)


def digits_as_mnist():
    """scikit-learn's 1,797 8 x 8 digits drawn like MNIST's (20 x 20, centred
    in 28 x 28) as uint8 pixels (N x 1 x 28 x 28), and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    large = F.interpolate(small, size=(20, 20), mode="bilinear")
    pixels = F.pad(large, (4, 4, 4, 4)).mul(255).round().to(torch.uint8)
    return pixels, torch.tensor(digits.target)


def trained(pixels, labels, epochs=2, seed=0):
    """A Deployable CNN after a short AdamW run, in eval mode."""
    deployable = Deployable(build_cnn(seed))
    optimizer = torch.optim.AdamW(deployable.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights with any number of cores
    try:
        deployable.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(labels), generator=generator).split(64):
                x = (pixels[batch].float() / 255 - deployable.mean) / deployable.std
                loss = F.cross_entropy(deployable.model(x), labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return deployable.eval()


def save_atomically(write, path):
    """write(a temporary path), then rename it to ``path``: a crash on the way
    leaves the old file whole, never half a file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())  # on disk before the rename shows it
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def export_to(path, model, example):
    """torch.export ``model`` for batches of 1 to 1024 (``example``: a batch of
    2 or more) and save it to ``path``."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        model, (example.clone(),), dynamic_shapes=({0: batch},)
    )
    save_atomically(lambda temporary: torch.export.save(program, temporary), path)


# --8<-- [end:model]


# --8<-- [start:input]
import io

from PIL import Image, UnidentifiedImageError


class InputError(ValueError):
    """A request body the server cannot use; the message says why."""


def read_png(body):
    """A 28 x 28 8-bit grayscale PNG (bytes) as 1 x 1 x 28 x 28 uint8 pixels."""
    try:
        image = Image.open(io.BytesIO(body))  # reads the header only
    except UnidentifiedImageError:
        raise InputError("not an image: send a PNG file") from None
    except Image.DecompressionBombError:  # a header that claims ~180 Mpx or more
        raise InputError("an image of too many pixels: send 28 x 28") from None
    except (OSError, SyntaxError, ValueError) as error:  # a broken header
        raise InputError(f"a broken image: {error}") from None
    with image:
        if image.format != "PNG":
            raise InputError(f"a {image.format} image: send a PNG")
        if image.mode != "L":
            raise InputError(f"image mode {image.mode}: send 8-bit grayscale (L)")
        if image.size != (28, 28):  # checked before decoding: no pixel bomb
            width, height = image.size
            raise InputError(f"a {width} x {height} image: send 28 x 28")
        try:
            image.load()
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        except (OSError, SyntaxError, ValueError) as error:  # truncated, bad CRC
            raise InputError(f"a broken PNG: {error}") from None
    return pixels.reshape(1, 1, 28, 28)


# --8<-- [end:input]


# --8<-- [start:batching]
import asyncio
import collections
from concurrent.futures import ThreadPoolExecutor


class Batcher:
    """Dynamic batching. Requests wait in a bounded queue; ``run`` takes the
    first, adds those that arrive within ``max_wait`` seconds (at most
    ``max_batch`` in all), runs them as ONE forward pass in a worker thread,
    and answers each request with its own row."""

    def __init__(self, model, max_batch=32, max_wait=0.0, max_queue=256):
        self.model, self.max_batch, self.max_wait = model, max_batch, max_wait
        self.queue = asyncio.Queue(maxsize=max_queue)
        # one forward pass at a time, with all of torch's threads, off the loop
        self.worker = ThreadPoolExecutor(max_workers=1)
        self.batch_sizes = collections.Counter()  # batch size -> forward passes

    async def predict(self, pixels):
        """(digit, probability) for one image; asyncio.QueueFull at once when
        ``max_queue`` requests are waiting already."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self.queue.put_nowait((pixels, answer, loop.time()))
        return await answer

    async def run(self):
        """Collect a batch, run it, answer it; again, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            arrived = batch[0][2]  # the wait counts from the first's arrival
            try:
                async with asyncio.timeout_at(arrived + self.max_wait):
                    while len(batch) < self.max_batch:
                        batch.append(await self.queue.get())
            except TimeoutError:
                pass  # the wait is over: run what has come
            # a request whose client went away is cancelled: not computed
            batch = [(x, answer) for x, answer, _ in batch if not answer.done()]
            if not batch:
                continue
            try:
                images = [x for x, _ in batch]
                rows = await loop.run_in_executor(self.worker, self.forward, images)
                self.batch_sizes[len(batch)] += 1
                for (_, answer), row in zip(batch, rows, strict=True):
                    if not answer.done():  # cancelled meanwhile
                        answer.set_result(row)
            except Exception as error:  # each request of this batch gets it;
                for _, answer in batch:  # the next batch runs as usual
                    if not answer.done():
                        answer.set_exception(error)

    def forward(self, images):
        """The model on a batch, in the worker thread: [(digit, probability)]."""
        with torch.inference_mode():
            best, digits = self.model(torch.cat(images)).max(dim=1)
        return list(zip(digits.tolist(), best.tolist()))


# --8<-- [end:batching]


# --8<-- [start:app]
import contextlib
import gc
import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

log = logging.getLogger("uvicorn.error")  # uvicorn's log, and its handler


async def read_body(request, limit):
    """The body, refused (413) before it is read when its Content-Length is
    over ``limit`` bytes, or as soon as a streamed body passes it."""
    close = {"Connection": "close"}  # the rest of the body is not read
    too_large = HTTPException(413, f"a body over {limit:,} bytes", headers=close)
    length = request.headers.get("content-length")
    if length is not None:
        if not (length.isascii() and length.isdigit()):  # "²".isdigit() is True
            raise HTTPException(
                400, f"Content-Length {length!r} is not a number", headers=close
            )
        if int(length) > limit:
            raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
    except ClientDisconnect:
        raise HTTPException(400, "the client went away") from None
    if not body:
        raise HTTPException(400, "no body: send a PNG image")
    return bytes(body)


async def disconnected(request):
    """Returns when the client closes its connection (Starlette does not
    cancel a route's task then: it would finish its work for no one)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(
    load_model, max_batch=32, max_wait=0.0, max_queue=256, max_body=100_000
):
    """The API. ``load_model()`` runs in a thread once the server has started;
    GET /ready answers 503 until the model is loaded and warmed up."""

    async def load_and_warm_up(app):
        try:
            model = await asyncio.to_thread(load_model)
            batcher = Batcher(model, max_batch, max_wait, max_queue)
            zeros = torch.zeros(max_batch, 1, 28, 28, dtype=torch.uint8)
            loop = asyncio.get_running_loop()
            for size in range(1, max_batch + 1):  # each size's first call is slow
                await loop.run_in_executor(
                    batcher.worker, batcher.forward, [zeros[:size]]
                )
        except Exception as error:
            log.exception("the model failed to load")
            app.state.failure = f"the model failed to load: {error}"
            return
        # the garbage collector skips what exists now (mostly torch's objects,
        # from its import): a full collection would walk them all, stalling
        # every request
        gc.freeze()
        app.state.batcher = batcher
        await batcher.run()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.batcher = app.state.failure = None
        task = asyncio.create_task(load_and_warm_up(app))
        yield  # serving; uvicorn has answered every request when this returns
        task.cancel()
        if app.state.batcher is not None:
            app.state.batcher.worker.shutdown()

    app = FastAPI(lifespan=lifespan)

    def not_ready(request, **headers):
        detail = request.app.state.failure or "loading the model"
        return HTTPException(503, detail, headers={"Retry-After": "1", **headers})

    # an answer sent before the body is read closes the connection: else
    # uvicorn would read the body to its end, to throw it away
    close = {"Connection": "close"}

    @app.get("/ready")
    async def ready(request: Request):
        if request.app.state.batcher is None:
            raise not_ready(request)
        return {"status": "ready"}

    @app.get("/stats")
    async def stats(request: Request):
        batcher = request.app.state.batcher
        sizes = batcher.batch_sizes if batcher else {}
        return {"batch_sizes": dict(sorted(sizes.items()))}

    @app.post("/predict")
    async def predict(request: Request):
        batcher = request.app.state.batcher
        if batcher is None:
            raise not_ready(request, **close)
        kind = request.headers.get("content-type", "")
        if kind.split(";")[0].strip().lower() != "image/png":
            raise HTTPException(
                415, f"Content-Type {kind!r}: send image/png", headers=close
            )
        body = await read_body(request, max_body)
        try:
            pixels = read_png(body)
        except InputError as error:
            raise HTTPException(422, str(error)) from None
        answer = asyncio.ensure_future(batcher.predict(pixels))
        gone = asyncio.ensure_future(disconnected(request))
        await asyncio.wait((answer, gone), return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not answer.done():  # the client went away: cancel its forward pass
            answer.cancel()
            raise HTTPException(400, "the client went away")
        try:
            digit, probability = answer.result()
        except asyncio.QueueFull:
            raise HTTPException(
                503, "too many requests waiting", headers={"Retry-After": "1"}
            ) from None
        return {"digit": digit, "probability": round(probability, 4)}

    @app.exception_handler(Exception)
    async def internal_error(request, error):  # uvicorn logs the traceback
        return JSONResponse({"detail": "internal error"}, status_code=500)

    return app


# --8<-- [end:app]


# --8<-- [start:limits]
import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class H11WithDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus a deadline: a request must be complete
    ``request_timeout`` seconds after the server starts to wait for it (when
    the connection opens, or at the first byte after an answer), or the
    connection is closed. uvicorn sets no timer on a new connection, and stops
    its keep-alive timer at a request's first byte (uvicorn issue #157)."""

    request_timeout = 10.0
    deadline = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.deadline = self.loop.call_later(self.request_timeout, self.too_slow)

    def handle_events(self):
        # uvicorn calls it for every byte received, and again after an answer
        # for a request that came pipelined behind it, already in the buffer
        super().handle_events()
        state = self.conn.their_state
        if state not in (h11.IDLE, h11.SEND_BODY):  # a request complete: wait
            self.cancel_deadline()  # for the answer (or the connection closed)
        elif self.deadline is None and (
            state is h11.SEND_BODY or self.conn.trailing_data[0]  # begun
        ):
            self.deadline = self.loop.call_later(
                self.request_timeout, self.too_slow
            )

    def cancel_deadline(self):
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def connection_lost(self, exc):
        self.cancel_deadline()
        super().connection_lost(exc)

    def too_slow(self):
        self.deadline = None
        log.warning(
            "closed %s: request not complete within %s s",
            self.client,
            self.request_timeout,
        )
        self.transport.close()


def server_config(app, request_timeout=10.0, max_connections=256, **options):
    """uvicorn's settings: h11 with the deadline; a request on a server that
    holds ``max_connections`` connections or requests gets a 503 (load
    shedding: uvicorn accepts every connection); after SIGTERM, 20 s to answer
    what was accepted."""
    protocol = type("H11", (H11WithDeadline,), {"request_timeout": request_timeout})
    return uvicorn.Config(
        app,
        http=protocol,
        limit_concurrency=max_connections,
        timeout_graceful_shutdown=20,  # under Kubernetes' default grace of 30 s
        **options,
    )


# --8<-- [end:limits]


# --8<-- [start:main]
import argparse
import signal
import sys
import zipfile


def main(argv=None):
    """python -m snippets.serving serve --model FILE.pt2 ... | export FOLDER"""
    parser = argparse.ArgumentParser(prog="python -m snippets.serving")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="answer POST /predict over HTTP")
    serve.add_argument("--model", default="digits.pt2")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0: any free port")
    cores = os.cpu_count() or 1
    serve.add_argument("--threads", type=int, default=max(1, cores - 1))
    serve.add_argument("--max-batch", type=int, default=32)
    serve.add_argument("--max-wait-ms", type=float, default=0.0)
    serve.add_argument("--max-queue", type=int, default=256)
    serve.add_argument("--max-connections", type=int, default=256)
    serve.add_argument("--request-timeout", type=float, default=10.0)
    serve.add_argument("--no-access-log", action="store_true")
    write = commands.add_parser("export", help="train, export, write 10 PNGs")
    write.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "export":
        return export_folder(args.folder)
    model = Path(args.model)
    # a quick check for a typo'd path, not a safety check: torch.export.load
    # unpickles, so a .pt2 file must be trusted as code is
    if not model.is_file() or not zipfile.is_zipfile(model):
        sys.exit(f"error: {model}: not a torch.export .pt2 file")
    # the forward passes run one at a time: they get these threads, and one
    # core is left to the event loop (with W processes on a machine: cores / W)
    torch.set_num_threads(args.threads)
    app = create_app(
        lambda: torch.export.load(model).module(),
        args.max_batch,
        args.max_wait_ms / 1000,
        args.max_queue,
    )
    config = server_config(
        app,
        args.request_timeout,
        args.max_connections,
        host=args.host,
        port=args.port,  # uvicorn logs the port it got ("Uvicorn running on")
        access_log=not args.no_access_log,
    )
    # uvicorn handles SIGTERM: it stops accepting, answers what it accepted,
    # then raises the signal again for the handler it found, which ends here
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(0))
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # Ctrl+C, raised again after the same shutdown
        pass


def export_folder(folder):
    """Train the page's model, export it to FOLDER/digits.pt2, and write ten
    held-out digits as PNG files to send to the server."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels, labels = digits_as_mnist()
    export_to(
        folder / "digits.pt2", trained(pixels[:1500], labels[:1500]), pixels[:2]
    )
    for i in range(1500, 1510):
        image = Image.fromarray(pixels[i, 0].numpy())
        save_atomically(image.save, folder / f"digit-{i}-label-{labels[i]}.png")
    print(f"wrote {folder / 'digits.pt2'} and 10 PNG digits")


# --8<-- [end:main]


# What the page runs, in page order, at module level as on the page. This
# module's __main__ is its program (main), so these run under their own name:
# runpy.run_module("snippets.serving", run_name="__page__") prints the page.
if __name__ == "__page__":
    # --8<-- [start:model-demo]
    pixels, labels = digits_as_mnist()
    model = trained(pixels[:1500], labels[:1500])
    with torch.inference_mode():
        predicted = model(pixels[1500:]).argmax(dim=1)
    print(f"held-out accuracy: {(predicted == labels[1500:]).float().mean():.1%}")
    folder = Path(tempfile.mkdtemp())  # a folder of your own, in practice
    model_path = folder / "digits.pt2"
    export_to(model_path, model, pixels[:2])
    print(f"{model_path.name}: {model_path.stat().st_size / 2**20:.1f} MiB")
    # --8<-- [end:model-demo]

    # --8<-- [start:gc-demo]
    import gc
    import time

    before = len(gc.get_objects())  # torch's import made most of them
    loaded = torch.export.load(model_path).module()
    added = len(gc.get_objects()) - before
    print(f"objects the collector tracks, over 100,000: {before > 1e5}")
    print(f"loading the model added under a tenth of them: {added < before / 10}")
    for frozen in (False, True):
        if frozen:
            gc.freeze()  # what the app does once the model is warm
        started = time.perf_counter()
        gc.collect()
        took = time.perf_counter() - started
        when = "after gc.freeze()" if frozen else "before"
        print(f"a full collection, {when}: {took * 1e3:.1f} ms")
    gc.unfreeze()  # as it was: the app freezes them again at its start
    # --8<-- [end:gc-demo]

    # --8<-- [start:server-demo]
    import http.client
    import json
    import threading
    import time

    def start_in_thread(app, **options):
        """uvicorn serving ``app`` in a background thread, on a free port."""
        config = server_config(app, port=0, log_level="error", **options)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:  # listening
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return server, thread, server.servers[0].sockets[0].getsockname()[1]

    def ask(port, method, path, body=None, headers=None):
        """(status, the JSON answer) of one request."""
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def wait_until_ready(port, seconds=60):
        deadline = time.monotonic() + seconds
        while ask(port, "GET", "/ready")[0] != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready within {seconds} s")
            time.sleep(0.05)

    loading = threading.Event()  # holds the model back, to see /ready say 503

    def load_model():
        loading.wait(timeout=30)
        return torch.export.load(model_path).module()

    app = create_app(load_model, max_wait=0.010)
    server, thread, port = start_in_thread(app, request_timeout=1.0)
    print("before loading:", *ask(port, "GET", "/ready"))
    loading.set()
    wait_until_ready(port)
    print("after warm-up: ", *ask(port, "GET", "/ready"))
    # --8<-- [end:server-demo]

    # --8<-- [start:requests-demo]
    def png(image):
        """A uint8 tensor (height x width, or x 3 for colour) as PNG bytes."""
        buffer = io.BytesIO()
        Image.fromarray(image.numpy()).save(buffer, format="PNG")
        return buffer.getvalue()

    as_png = {"Content-Type": "image/png"}
    digit = png(pixels[1501, 0])
    print(f"label {labels[1501]}:", *ask(port, "POST", "/predict", digit, as_png))
    for name, body, headers in [
        ("no body", b"", as_png),
        ("not an image", b"GIF89a, or so it says", as_png),
        ("32 x 32", png(torch.zeros(32, 32, dtype=torch.uint8)), as_png),
        ("colour", png(torch.zeros(28, 28, 3, dtype=torch.uint8)), as_png),
        ("JSON", b'{"pixels": []}', {"Content-Type": "application/json"}),
    ]:
        print(f"{name:>12}:", *ask(port, "POST", "/predict", body, headers))
    # --8<-- [end:requests-demo]

    # --8<-- [start:batching-demo]
    from concurrent.futures import ThreadPoolExecutor

    def predict_over_http(image):
        return ask(port, "POST", "/predict", png(image[0]), as_png)

    images = pixels[1500:1564]
    before = sum(ask(port, "GET", "/stats")[1]["batch_sizes"].values())
    with ThreadPoolExecutor(max_workers=16) as clients:  # 16 clients at once
        answers = list(clients.map(predict_over_http, images))
    passes = sum(ask(port, "GET", "/stats")[1]["batch_sizes"].values()) - before
    with torch.inference_mode():
        eager = model(images).argmax(dim=1).tolist()
    print(f"{len(answers)} answers, all 200: {all(s == 200 for s, _ in answers)}")
    same = [answer["digit"] for _, answer in answers] == eager
    print(f"each answer the eager model's digit for its image: {same}")
    print(f"fewer forward passes than requests: {passes < len(answers)}")
    # --8<-- [end:batching-demo]

    # --8<-- [start:limits-demo]
    import socket

    def raw(request):
        """The status and body the server answers to bytes sent as they are."""
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(request)
            answer = b"".join(iter(lambda: client.recv(4096), b""))  # to the end
        head, _, body = answer.decode().partition("\r\n\r\n")
        return head.split()[1], body

    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
    print(*raw(head + b"Content-Length: \xb2\r\n\r\n"))  # latin-1 for "²"
    print(*raw(head + b"Content-Length: 5000000000\r\n\r\n"))

    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow.sendall(head + b"Content-Length: 900\r\n\r\n")
    started = time.monotonic()
    print(
        "another client meanwhile:", *ask(port, "POST", "/predict", digit, as_png)
    )

    def closed(connection):
        """Whether the server has closed ``connection`` (waits up to 0.1 s)."""
        try:
            return connection.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionError:  # reset
            return True

    slow.settimeout(0.1)
    while not closed(slow):
        slow.sendall(b"x")  # a byte every 0.1 s
    print(f"the slow client was cut off after {time.monotonic() - started:.1f} s")
    slow.close()
    server.should_exit = True  # what uvicorn does on SIGTERM
    thread.join(timeout=30)
    # --8<-- [end:limits-demo]

    # --8<-- [start:exercise-wait]
    app = create_app(lambda: loaded, max_wait=0.050)  # the model loaded above
    server, thread, port = start_in_thread(app)
    wait_until_ready(port)
    times = []
    for _ in range(5):  # one client, one request at a time
        started = time.perf_counter()
        ask(port, "POST", "/predict", digit, as_png)
        times.append(time.perf_counter() - started)
    print(f"each request took at least 50 ms: {min(times) >= 0.050}")
    print(f"the fastest: {min(times) * 1e3:.1f} ms")
    server.should_exit = True
    thread.join(timeout=30)
    # --8<-- [end:exercise-wait]

    # --8<-- [start:exercise-overload]
    class Slow:
        """The model, 0.2 s slower per forward pass."""

        def __init__(self, model):
            self.model = model

        def __call__(self, pixels):
            time.sleep(0.2)
            return self.model(pixels)

    app = create_app(lambda: Slow(loaded), max_batch=1, max_queue=2)
    server, thread, port = start_in_thread(app)
    wait_until_ready(port)

    def answer_and_retry_after(_):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/predict", digit, as_png)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status, response.getheader("Retry-After")

    with ThreadPoolExecutor(max_workers=16) as clients:
        answers = list(clients.map(answer_and_retry_after, range(16)))
    print("statuses:", sorted({status for status, _ in answers}))
    retry = {after for status, after in answers if status == 503}
    print("each 503 says when to try again:", retry == {"1"})
    server.should_exit = True
    thread.join(timeout=30)
    # --8<-- [end:exercise-overload]

    # --8<-- [start:exercise-missing]
    import textwrap

    app = create_app(lambda: torch.export.load(folder / "missing.pt2").module())
    server, thread, port = start_in_thread(app)
    status, answer = ask(port, "GET", "/ready")
    while answer["detail"] == "loading the model":
        time.sleep(0.05)
        status, answer = ask(port, "GET", "/ready")
    print(status, textwrap.fill(answer["detail"].replace(str(folder), "…"), 80))
    server.should_exit = True
    thread.join(timeout=30)
    # --8<-- [end:exercise-missing]


if __name__ == "__main__":
    main()
