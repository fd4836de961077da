"""docs/deploy.md: what to ship, torch.export and its .pt2 file, ONNX with onnxruntime, int8 quantization, the
inference program (its command line in a separate process) and the HTTP endpoint (bad input, no hang), and the
recorded latency table against what the page says of it.

The page's blocks (the demonstrations under ``if __name__ == "__page__":`` in snippets/deploy.py) run once here in page
order: the ``page`` and ``printed`` fixtures of tests/conftest.py. The program itself (``__main__``) runs as a separate
process.
"""

import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from PIL import Image

import snippets.deploy as d
from site_tools.records import check_fresh, read_record

SHELL_FENCE = re.compile(r"```bash\n(python -m snippets\.deploy export .*?)```", re.S)


@pytest.fixture(scope="module")
def shell_run():
    """The page's shell commands, run as they are shown, from the repository root: the command line's own export
    (FOLDER/digits.pt2 and ten held-out PNG digits), then a prediction of two of them."""
    commands = SHELL_FENCE.search((ROOT / "docs" / "deploy.md").read_text(encoding="utf-8"))[1]
    folder = ROOT / re.search(r"^cd (\S+)$", commands, re.M)[1]
    shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-e", "-c", commands], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    return commands, folder, result


@pytest.fixture(scope="module")
def exported(shell_run):
    _commands, folder, result = shell_run
    assert result.returncode == 0, result.stderr
    return folder


def test_the_pages_shell_commands_export_and_predict_two_digits(shell_run):
    commands, folder, result = shell_run
    assert result.returncode == 0, result.stderr
    assert (folder / "digits.pt2").exists() and len(list(folder.glob("*.png"))) == 10
    files = re.findall(r"digit-\d+-label-\d\.png", commands)
    lines = result.stdout.splitlines()[-2:]
    assert [line.split(":")[0] for line in lines] == files, result.stdout
    assert all(re.match(r"digit-\d+-label-(\d)\.png: \1 \(probability [01]\.\d\d\)$", line) for line in lines), lines


def command(*args, cwd=ROOT, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "snippets.deploy", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


NOISE = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)  # a PNG that does not compress to nothing


def png_bytes(array, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_model_learns_the_digits_and_the_run_does_not_depend_on_the_thread_count(printed):
    accuracy = float(re.search(r"held-out accuracy: ([\d.]+)%", printed)[1])
    assert accuracy >= 90
    pixels, labels = d.digits_as_mnist()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        twice = d.train(d.build_cnn(), pixels[:300], labels[:300], epochs=1)
    finally:
        torch.set_num_threads(threads)
    once = d.train(d.build_cnn(), pixels[:300], labels[:300], epochs=1)
    assert all(torch.equal(a, b) for a, b in zip(once.state_dict().values(), twice.state_dict().values()))
    assert torch.get_num_threads() == threads


def test_pickled_modules_are_refused_and_the_state_dict_round_trips(page, printed):
    assert "Unsupported global: GLOBAL torch.nn.modules.container.Sequential" in printed
    for name, tensor in page.model.state_dict().items():
        assert torch.equal(tensor, page.rebuilt.state_dict()[name])


def test_the_exported_program_equals_eager_for_any_batch_size_up_to_its_bound(page, printed):
    assert printed.count("equal to eager: True") == 2
    pixels = torch.randint(0, 256, (1024, 1, 28, 28), dtype=torch.uint8)
    with torch.inference_mode():
        for n in (1, 7, 1024):
            assert torch.equal(page.loaded(pixels[:n]), page.deployable(pixels[:n]))
        with pytest.raises(AssertionError, match="<= 1024"):
            page.loaded(torch.cat([pixels, pixels[:1]]))
    assert "VR[1, 1024]" in printed and "('pixels',) -> ('softmax',)" in printed
    # the preprocessing is in the graph, before the first layer (what the page says)
    assert "operators: _assert_tensor_metadata, to, div, sub, div, conv2d, batch_norm ..." in printed


def test_a_sliced_example_is_cloned_so_the_file_stays_small(page):
    assert page.path.stat().st_size < 1.1 * d.saved_bytes(page.deployable)


def test_a_branch_on_a_value_does_not_export_and_the_fix_does(printed):
    assert "GuardOnDataDependentSymNode: Could not guard on data-dependent expression" in printed
    assert "exported: ExportedProgram" in printed


def test_onnxruntime_matches_eager_within_the_stated_tolerance(page, printed):
    assert printed.count("largest difference < 1e-5: True") == 2
    assert "[('pixels', 'tensor(uint8)', ['batch', 1, 28, 28])]" in printed
    pixels = torch.randint(0, 256, (33, 1, 28, 28), dtype=torch.uint8)
    [out] = page.session.run(None, {"pixels": pixels.numpy()})
    with torch.inference_mode():
        assert (torch.from_numpy(out) - page.deployable(pixels)).abs().max() < 1e-5


def test_torchscript_warns_that_it_is_deprecated(printed):
    assert "FutureWarning:\n`torch.jit.script` is deprecated. Please switch to `torch.compile` or" in printed


def test_int8_shrinks_the_file_below_a_third_and_keeps_the_accuracy(page, printed):
    sizes = {name: int(kib) for name, kib in re.findall(r"(float32|int8): +(\d+) KiB", printed)}
    assert sizes["int8"] < sizes["float32"] / 3
    accuracies = [float(a) for a in re.findall(r"KiB, held-out accuracy ([\d.]+)%", printed)]
    assert abs(accuracies[0] - accuracies[1]) <= 1.0
    assert "'Conv2d': 'Parameter'" in printed and "'Linear': 'Int8Tensor'" in printed
    hidden_only = [line for line in printed.splitlines() if line.startswith("that layer:")]
    used, total = (int(n.replace(",", "")) for n in re.findall(r"[\d,]+", hidden_only[0]))
    assert used > 0.9 * total  # "almost all of it": the layer holds most of the weights


def test_the_page_predicts_its_two_files_and_explains_each_bad_input(printed):
    assert re.search(r"digit-1500-label-(\d)\.png: \1 \(probability", printed)
    assert re.search(r"digit-1501-label-(\d)\.png: \1 \(probability", printed)
    errors = [line for line in printed.splitlines() if line.startswith("InputError:")]
    assert len(errors) == 6
    for expected in ("mode RGB", "32 x 32", "not an image", "not a torch.export file", "1 x 28 x 28", "float32"):
        assert any(expected in line for line in errors), expected


def test_the_page_server_answers_a_digit_and_refuses_the_rest(printed):
    assert re.search(r'^200 \{"digit": \d, "probability": 0\.\d+\}$', printed, re.M)
    assert '400 {"error": "send a PNG image as the body"}' in printed
    assert '400 {"error": "not an image (send a PNG file)"}' in printed


def test_the_exercises_print_their_answers(printed):
    assert "AssertionError: Guard failed: pixels.size()[0] == 2" in printed
    assert "Unexpected input data type" in printed


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: d.read_digit(io.BytesIO(png_bytes(np.zeros((28, 28, 3), np.uint8)))), "mode RGB"),
        (lambda: d.read_digit(io.BytesIO(png_bytes(np.zeros((28, 28), np.uint16)))), "mode I;16"),
        (lambda: d.read_digit(io.BytesIO(png_bytes(np.zeros((20, 28), np.uint8)))), "28 x 20 image"),
        (lambda: d.read_digit(io.BytesIO(png_bytes(NOISE)[:200])), "broken image: image file is truncated"),
        (lambda: d.read_digit(io.BytesIO(b"")), "not an image"),
        (lambda: d.predict(None, torch.zeros(0, 1, 28, 28, dtype=torch.uint8)), "0 images"),
        (lambda: d.predict(None, torch.zeros(2, 3, 28, 28, dtype=torch.uint8)), "2 x 3 x 28 x 28"),
    ],
)
def test_bad_input_raises_an_input_error_that_says_what_is_wrong(make, message):
    with pytest.raises(d.InputError, match=re.escape(message)):
        make()


def test_a_huge_png_is_refused_before_it_is_decoded():
    compressed = png_bytes(np.zeros((5000, 5000), np.uint8))  # 25 MB of pixels in about 25 kB
    assert len(compressed) < d.MAX_BYTES
    with pytest.raises(d.InputError, match="5000 x 5000 image"):
        d.read_digit(io.BytesIO(compressed))


def test_a_jpeg_is_refused_by_name():
    buffer = io.BytesIO()
    Image.new("L", (28, 28)).save(buffer, format="JPEG")
    with pytest.raises(d.InputError, match="a JPEG image: send a PNG"):
        d.read_digit(io.BytesIO(buffer.getvalue()))


def test_missing_and_corrupt_model_files_get_a_message(tmp_path):
    with pytest.raises(d.InputError, match="no such file"):
        d.load_program(tmp_path / "missing.pt2")
    (tmp_path / "garbage.pt2").write_bytes(b"\0" * 100)
    with pytest.raises(d.InputError, match="not a torch.export file"):
        d.load_program(tmp_path / "garbage.pt2")
    import zipfile

    with zipfile.ZipFile(tmp_path / "other.pt2", "w") as archive:  # a zip, but not a program
        archive.writestr("hello.txt", "hi")
    with pytest.raises(d.InputError, match="cannot load the program"):
        d.load_program(tmp_path / "other.pt2")


def test_a_failed_save_leaves_the_old_file_whole_and_no_temporary_file(tmp_path):
    path = tmp_path / "digits.pt2"
    path.write_bytes(b"the old program")

    def write_half_then_fail(temporary):
        with open(temporary, "wb") as file:
            file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        d.save_atomic(write_half_then_fail, path)
    assert path.read_bytes() == b"the old program" and os.listdir(tmp_path) == ["digits.pt2"]


# --- the command line, as a separate process


def test_the_command_line_predicts_the_exported_digits_without_training_code(exported):
    pngs = sorted(exported.glob("*.png"))
    assert len(pngs) == 10
    probe = (
        "import runpy, sys; sys.argv = ['deploy', 'predict', *sys.argv[1:]];"
        "runpy.run_module('snippets.deploy', run_name='__main__');"
        "print('loaded:', sorted(m for m in ('sklearn', 'onnx', 'onnxruntime', 'torchao', 'torchvision')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *map(str, pngs)], capture_output=True, text=True, cwd=exported, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "loaded: []"  # the program needs neither the training data nor the exporters
    right = sum(bool(re.match(r"digit-\d+-label-(\d)\.png: \1 \(probability [01]\.\d\d\)$", line)) for line in lines)
    assert right >= 8, result.stdout


@pytest.mark.parametrize("bad", ["corrupt", "missing", "rgb"])
def test_the_command_line_ends_bad_input_with_a_message_and_status_1(exported, tmp_path, bad):
    model, image = exported / "digits.pt2", sorted(exported.glob("*.png"))[0]
    if bad == "corrupt":
        model = tmp_path / "digits.pt2"
        model.write_bytes((exported / "digits.pt2").read_bytes()[:5000])
    elif bad == "missing":
        model = tmp_path / "nothing.pt2"
    else:
        image = tmp_path / "rgb.png"
        image.write_bytes(png_bytes(np.zeros((28, 28, 3), np.uint8)))
    result = command("predict", str(image), "--model", str(model))
    assert result.returncode == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr and result.stdout == ""


# --- the HTTP endpoint, as a separate process on 127.0.0.1


@pytest.fixture(scope="module")
def server(exported):
    process = subprocess.Popen(
        [sys.executable, "-m", "snippets.deploy", "serve", "--port", "0", "--model", str(exported / "digits.pt2")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"on http://127\.0\.0\.1:(\d+)$", line.strip())
        assert match, line + process.stderr.read() if process.poll() is not None else line
        yield int(match[1])
    finally:
        process.terminate()
        process.wait(timeout=30)


def ask(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode()
    finally:
        connection.close()


def test_the_endpoint_answers_a_digit(server, exported):
    png = sorted(exported.glob("*.png"))[0]
    status, kind, body = ask(server, "POST", "/predict", png.read_bytes(), {"Content-Type": "image/png"})
    assert status == 200 and kind == "application/json"
    answer = json.loads(body)
    assert set(answer) == {"digit", "probability"} and 0 <= answer["digit"] <= 9 and 0 < answer["probability"] <= 1
    assert ask(server, "GET", "/health")[0::2] == (200, '{"status": "ok"}')


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        ("POST", "/predict", b"", 400, "send a PNG image as the body"),
        ("POST", "/predict", b"GIF89a not really", 400, "not an image"),
        ("POST", "/predict", png_bytes(np.zeros((28, 28, 3), np.uint8)), 400, "mode RGB"),
        ("POST", "/predict", png_bytes(np.zeros((64, 64), np.uint8)), 400, "64 x 64 image"),
        ("POST", "/elsewhere", b"x", 404, "POST /predict"),
        ("GET", "/", None, 404, "POST /predict"),
    ],
)
def test_the_endpoint_refuses_bad_requests_with_json_and_no_traceback(server, method, path, body, status, message):
    got, kind, text = ask(server, method, path, body)
    assert (got, kind) == (status, "application/json")
    assert message in json.loads(text)["error"] and "Traceback" not in text


def test_the_endpoint_refuses_a_body_too_large_before_reading_it(server):
    with socket.create_connection(("127.0.0.1", server), timeout=30) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        reply = connection.makefile("rb").read().decode()  # the server answers and closes
    assert reply.startswith("HTTP/1.0 413") and "larger than 1000000 bytes" in reply


def test_a_client_that_stops_sending_is_dropped_and_others_are_still_served(page):
    handler = type("Quick", (d.PredictionHandler,), {"program": page.loaded, "timeout": 0.5})
    handler.log_message = lambda *args: None
    httpd = d.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as stalled:
            stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a little")
            assert ask(port, "GET", "/health")[0] == 200  # served meanwhile
            start = time.monotonic()
            assert stalled.recv(4096) == b""  # closed by the server, without an answer
            assert time.monotonic() - start < 5
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- the recorded latency table


@pytest.fixture(scope="module")
def record():
    return read_record("deploy")


def test_the_record_is_current(record):
    check_fresh(record)


def test_the_record_supports_what_the_page_says(record):
    rows = {row["form"]: row for row in record["metrics"]["rows"]}
    assert len(rows) == 7

    def median(form, batch):
        return rows[form][str(batch)]["median"]

    # batch 1 is overhead: onnxruntime is several times faster than every PyTorch form; compile removes part of it
    assert all(median("onnxruntime", 1) * 3 < median(form, 1) for form in rows if form != "onnxruntime")
    assert median("torch.compile", 1) < median("eager, inference_mode", 1)
    # autograd off: no gain that stands out of the noise (within 1.5x either way)
    for batch in (1, 256):
        ratio = median("eager, inference_mode", batch) / median("eager (autograd on)", batch)
        assert 1 / 1.5 < ratio < 1.5
    # batch 256: compile and onnxruntime about 3x faster than the eager kernels, which the exported program runs
    for fast in ("torch.compile", "onnxruntime"):
        for slow in ("eager, inference_mode", "exported program (.pt2)"):
            assert 2 < median(slow, 256) / median(fast, 256) < 5
    exported, eager = median("exported program (.pt2)", 256), median("eager, inference_mode", 256)
    assert 1 / 1.3 < exported / eager < 1.3  # as fast as eager at batch 256...
    assert median("exported program (.pt2)", 1) > 0.9 * median("eager, inference_mode", 1)  # ...not faster at 1
    # torchao int8 is not faster than float32: slower at batch 1, no faster at 256, eager or compiled
    assert median("int8 (torchao), eager", 1) > 1.5 * median("eager, inference_mode", 1)
    for batch in (1, 256):
        assert median("int8 (torchao), eager", batch) > 0.9 * median("eager, inference_mode", batch)
        assert median("int8 (torchao), compiled", batch) > 0.9 * median("torch.compile", batch)
    accuracies = {row["accuracy"] for form, row in rows.items() if "int8" not in form}
    assert len(accuracies) == 1  # every float32 form predicts the same
    sizes = record["metrics"]["sizes"]
    assert sizes["state_dict (int8 linear layers)"] < sizes["state_dict (float32)"] / 3
