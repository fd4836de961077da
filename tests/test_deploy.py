"""docs/deploy.md: what to ship, torch.export and its .pt2 file, ONNX with onnxruntime, int8 quantization, the
inference program (its command line in a separate process), and the recorded latency table against what the page
says of it. (The HTTP server is the serving chapter's: tests/test_serving.py.)

The page's blocks (the demonstrations under ``if __name__ == "__page__":`` in snippets/deploy.py) run once here in page
order: the ``page`` and ``printed`` fixtures of tests/conftest.py. The program itself (``__main__``) runs as a separate
process.
"""

import io
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

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


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width, height, *chunks):
    """An 8-bit grayscale PNG written chunk by chunk, to say what Pillow's writer would not."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + b"".join(chunks) + chunk(b"IEND", b"")


ROWS = zlib.compress(bytes(29 * 28))  # 28 black rows, each a filter byte and 28 pixels
# a 66-byte file whose header claims 20,000 x 20,000 pixels: Pillow raises DecompressionBombError, not an OSError
BOMB = raw_png(20_000, 20_000, chunk(b"IDAT", zlib.compress(b"\0")))
# the pixel data split over two chunks, the second one's type garbled: Pillow's load() raises SyntaxError
BAD_CHUNK = raw_png(28, 28, chunk(b"IDAT", ROWS[:5]), chunk(b"\xf8:\xd1y", ROWS[5:]))
GOOD_CHUNKS = raw_png(28, 28, chunk(b"IDAT", ROWS[:5]), chunk(b"IDAT", ROWS[5:]))


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


def test_a_branch_on_a_value_does_not_export_in_either_mode_and_the_fix_does(printed):
    assert (
        "strict=False: GuardOnDataDependentSymNode:\n  Could not guard on data-dependent expression Eq(u0, 1)\n"
        in printed
    )
    assert "strict=True: Unsupported:\n  Data-dependent branching" in printed
    assert "exported: ExportedProgram" in printed


def test_a_print_runs_once_at_export_and_is_not_in_the_program(page, printed, capsys):
    """The page: non-strict export runs the print while exporting; the program has no print; strict export drops it
    without running it; NumPy on a tensor fails in non-strict mode and is translated in strict mode."""
    assert printed.count("forward ran on a batch of 2") == 1  # at export, not at the call after it
    assert "in the program: ['aten.div.Tensor']" in printed
    page.logged.module()(page.example)
    assert capsys.readouterr().out == ""
    torch.export.export(page.Logs(), (page.example,), strict=True)
    assert "forward ran" not in capsys.readouterr().out

    class UsesNumPy(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(np.exp(x.numpy()))

    with pytest.raises(RuntimeError, match="not supported for tensor subclasses"):
        torch.export.export(UsesNumPy(), (torch.ones(2, 3),))
    translated = torch.export.export(UsesNumPy(), (torch.ones(2, 3),), strict=True)
    assert torch.allclose(translated.module()(torch.ones(2, 3)), torch.full((2, 3), np.e))

    class Timed(torch.nn.Module):
        def forward(self, x):
            time.time()
            return x * 2

    torch.export.export(Timed(), (torch.ones(2, 3),))  # non-strict: runs it once
    with pytest.raises(Exception, match="time.time"):
        torch.export.export(Timed(), (torch.ones(2, 3),), strict=True)


def test_sizes_0_and_1_specialise_and_dim_auto_decides_silently(page, printed):
    assert "UserError:\n  You marked batch as dynamic but your code specialized it to be a constant (1)." in printed
    assert "Dim.AUTO, an example of 1: batch sizes static" in printed
    assert "Dim.AUTO, an example of 2: batch sizes [VR[2, int_oo]]" in printed
    auto = page.auto.module()  # exported from the example of 2: its range starts at 2, yet a batch of 1 runs
    pixels = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    with torch.inference_mode():
        for n in (1, 3):
            assert torch.equal(auto(pixels[:n]), page.deployable(pixels[:n]))
    static = torch.export.export(page.deployable, (page.one,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    with pytest.raises(AssertionError, match="== 1"):
        static.module()(pixels[:2])
    with pytest.raises(ValueError, match="0/1 specialized"):
        torch.export.export(page.deployable, (page.one,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))


def test_onnxruntime_matches_eager_within_the_stated_tolerance(page, printed):
    assert printed.count("largest difference < 1e-5: True") == 2
    assert "[('pixels', 'tensor(uint8)', ['batch', 1, 28, 28])]" in printed
    pixels = torch.randint(0, 256, (33, 1, 28, 28), dtype=torch.uint8)
    [out] = page.session.run(None, {"pixels": pixels.numpy()})
    with torch.inference_mode():
        assert (torch.from_numpy(out) - page.deployable(pixels)).abs().max() < 1e-5


def test_the_session_options_and_what_onnxruntime_fuses(printed):
    assert "this session runs on: ['CPUExecutionProvider']" in printed
    assert "BatchNormalization" not in printed  # the exporter folded it into the convolutions
    nodes = {name: int(count) for name, count in re.findall(r"(\w+\.onnx), (\d+) nodes", printed)}
    assert nodes["optimized.onnx"] < nodes["digits.onnx"]
    assert "FusedConv" in printed and "FusedGemm" in printed


def test_onnx_session_turns_spinning_off_and_prefers_an_installed_provider(monkeypatch, page):
    import onnxruntime

    made = {}

    def spy(path, options, providers):
        made.update(options=options, providers=providers)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    d.onnx_session(page.onnx_path, threads=3, spinning=False)
    assert made["options"].get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert made["options"].intra_op_num_threads == 3 and made["providers"] == ["CPUExecutionProvider"]
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    d.onnx_session(page.onnx_path)
    assert made["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_torchscript_warns_that_it_is_deprecated(printed):
    """A FutureWarning since 2.14; 2.13, the oldest release the home page names, raised a DeprecationWarning."""
    category = "FutureWarning" if torch.__version__ >= "2.14" else "DeprecationWarning"
    assert f"{category}:\n`torch.jit.script` is deprecated. Please switch to `torch.compile` or" in printed


def test_int8_scales_each_image_on_its_own(page):
    """The page: the input scale is computed for each row (image) at run time, not per batch: an image's output does
    not depend on the other images of its batch."""
    pixels = page.test_pixels[:8].clone()
    pixels[0] = 255  # an image far brighter than the rest: a scale per batch would change theirs
    with torch.inference_mode():
        together = page.quantized(pixels)
        alone = torch.cat([page.quantized(pixels[i : i + 1]) for i in range(len(pixels))])
    assert torch.allclose(together, alone, atol=1e-6)


def test_the_old_api_warns_of_a_removal_in_a_version_that_has_passed():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    assert any("will be removed in 2.10" in str(w.message) for w in caught if w.category is DeprecationWarning)


def test_torch_export_load_says_to_trust_the_file():
    """The page's warning, from the function's own documentation."""
    assert "Never load data from an untrusted source" in torch.export.load.__doc__


def test_quantizing_leaves_the_compiler_settings_alone(page):
    import torch._inductor.config as inductor

    before = inductor.get_config_copy()
    d.quantized_int8(page.deployable)
    assert inductor.get_config_copy() == before


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
    assert len(errors) == 8
    for expected in (
        "mode RGB",
        "32 x 32",
        "not an image",
        "…/missing.png: No such file or directory",
        "InputError: …: Is a directory",
        "not a torch.export file",
        "1 x 28 x 28",
        "float32",
    ):
        assert any(expected in line for line in errors), expected


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
        (lambda: d.read_digit(io.BytesIO(BOMB)), "a huge image: the model reads 28 x 28"),
        (lambda: d.read_digit(io.BytesIO(BAD_CHUNK)), "a broken image: broken PNG file"),
        (lambda: d.predict(None, torch.zeros(0, 1, 28, 28, dtype=torch.uint8)), "0 images"),
        (lambda: d.predict(None, torch.zeros(2, 3, 28, 28, dtype=torch.uint8)), "2 x 3 x 28 x 28"),
    ],
)
def test_bad_input_raises_an_input_error_that_says_what_is_wrong(make, message):
    with pytest.raises(d.InputError, match=re.escape(message)):
        make()


def test_a_huge_png_is_refused_before_it_is_decoded():
    compressed = png_bytes(np.zeros((5000, 5000), np.uint8))  # 25 MB of pixels in about 25 kB
    assert len(compressed) < 100_000
    with pytest.raises(d.InputError, match="5000 x 5000 image"):
        d.read_digit(io.BytesIO(compressed))


def test_the_hand_written_pngs_are_readable_but_for_their_one_fault():
    assert torch.equal(d.read_digit(io.BytesIO(GOOD_CHUNKS)), torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    under_the_limit = raw_png(20_000, 2, chunk(b"IDAT", zlib.compress(b"\0")))  # the bomb, but for its size
    with pytest.raises(d.InputError, match="a 20000 x 2 image: the model reads 28 x 28"):
        d.read_digit(io.BytesIO(under_the_limit))


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


def test_a_refused_image_file_is_closed(tmp_path):
    import gc
    import warnings

    path = tmp_path / "rgb.png"
    path.write_bytes(png_bytes(np.zeros((28, 28, 3), np.uint8)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(d.InputError, match="mode RGB"):
            d.read_digit(path)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_directory_given_as_the_model_is_named_as_such(tmp_path):
    with pytest.raises(d.InputError, match="a directory, not a .pt2 file"):
        d.load_program(tmp_path)


def test_the_saved_file_is_on_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync"))
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(f"replace {Path(a).name}"), real_replace(a, b)))
    d.save_atomic(lambda temporary: Path(temporary).write_bytes(b"x"), tmp_path / "f.pt2")
    # the file, the rename, then the folder that holds the rename
    assert [event.split()[0] for event in events] == ["fsync", "replace", "fsync"]
    assert re.fullmatch(r"replace \.f\.pt2\.\w+\.pt2", events[1])  # hidden from a shell's *.pt2
    assert (tmp_path / "f.pt2").read_bytes() == b"x"


def test_an_onnx_file_that_fails_the_check_never_replaces_the_old_one(tmp_path, monkeypatch):
    import onnx

    class Exported:  # what torch.onnx.export returns, reduced to its save
        def save(self, path, external_data):
            Path(path).write_bytes(b"a new, broken model")

    def refuse(path):
        raise onnx.checker.ValidationError(f"{Path(path).name}: broken")

    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: Exported())
    monkeypatch.setattr(onnx.checker, "check_model", refuse)
    path = tmp_path / "digits.onnx"
    path.write_bytes(b"the good model")
    with pytest.raises(onnx.checker.ValidationError, match=r"^\.digits\.onnx\.\w+\.onnx: broken"):
        d.export_onnx(None, torch.zeros(2, 1, 28, 28, dtype=torch.uint8), path)
    assert path.read_bytes() == b"the good model" and os.listdir(tmp_path) == ["digits.onnx"]


@pytest.fixture(scope="module")
def aoti(page, tmp_path_factory):
    """The page's AOTInductor section (shown, not run at build): the page's program compiled to a package, once,
    and the seconds that took and that an export of the same model takes."""
    started = time.perf_counter()
    torch.export.export(page.deployable, (page.two,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    path = d.compile_package(page.program, tmp_path_factory.mktemp("aoti") / "digits-aoti.pt2")
    return path, time.perf_counter() - started, export_s


def test_the_aotinductor_package_matches_eager_and_is_not_an_export_file(page, aoti):
    """The page: the package's probabilities match eager within 1e-5; compiling takes far longer than exporting;
    torch.export.load cannot read the package."""
    path, compile_s, export_s = aoti
    compiled = d.load_package(path)
    with torch.inference_mode():
        for batch in (page.test_pixels[:1], page.test_pixels):
            assert (compiled(batch) - page.deployable(batch)).abs().max() < 1e-5
    assert compile_s > 10 * export_s
    with pytest.raises(RuntimeError, match="error when deserializing the saved file"):
        torch.export.load(path)


def test_the_package_checks_no_input_and_its_optional_checks_narrow_the_batch(page, aoti, monkeypatch):
    """The page: float32 pixels run through the package (the exported program refuses them), predict's checks in
    front of it refuse them; with AOTI_RUNTIME_CHECK_INPUTS=1 the package refuses the wrong dtype but checks a batch
    range that is not the program's (PyTorch 2.14.1: fails when that changes, so that the page does not go stale)."""
    path, _, _ = aoti
    floats = page.test_pixels[:2].float()
    with pytest.raises(RuntimeError, match="dtype mismatch"):  # the exported program's guard
        page.loaded(floats)
    unchecked = d.load_package(path)
    with torch.inference_mode():
        assert unchecked(floats).shape == (2, 10)  # runs: meaningless probabilities, no error
    with pytest.raises(d.InputError, match="float32"):
        d.predict(unchecked, floats)
    monkeypatch.setenv("AOTI_RUNTIME_CHECK_INPUTS", "1")  # read at a loaded package's first run
    checked = d.load_package(path)
    many = page.test_pixels.repeat(4, 1, 1, 1)[:1024]
    with torch.inference_mode():
        assert checked(page.test_pixels[:2]).shape == (2, 10)
        for batch, message in (
            (floats, "unmatched dtype"),
            (page.test_pixels[:1], "expected it to be >= 2"),  # the program allows 1 to 1024...
            (page.test_pixels[:16], "expected to be <= 15"),  # ...these checks 2 to 15, on this machine
            (many, "dim value is too large"),
        ):
            with pytest.raises(RuntimeError, match=re.escape(message)):
                checked(batch)


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


@pytest.mark.parametrize(
    "bad, message",
    [
        ("missing image", "no-such-file.png: No such file or directory"),
        ("directory as image", ": Is a directory"),
        ("directory as model", "a directory, not a .pt2 file"),
        ("huge image", "a huge image: the model reads 28 x 28"),
        ("bad chunk", "a broken image: broken PNG file (chunk b'\\xf8:\\xd1y')"),
    ],
)
def test_a_missing_file_or_a_directory_ends_the_program_with_a_message_and_status_1(exported, tmp_path, bad, message):
    """main() in this process: sys.exit(message) is what prints the message and exits with status 1 (the three
    cases above run the same main() as a separate process)."""
    model, image = exported / "digits.pt2", tmp_path / "no-such-file.png"
    if bad == "directory as image":
        image = tmp_path
    elif bad == "directory as model":
        model, image = tmp_path, sorted(exported.glob("*.png"))[0]
    elif bad in ("huge image", "bad chunk"):
        image.write_bytes(BOMB if bad == "huge image" else BAD_CHUNK)
    with pytest.raises(SystemExit) as ended:
        d.main(["predict", str(image), "--model", str(model)])
    assert isinstance(ended.value.code, str) and ended.value.code.startswith("error: ")
    assert ended.value.code.endswith(message)


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
