"""Deployment: the code of docs/deploy.md.

From a trained model to a program that serves predictions: what to ship,
torch.export to a .pt2 file, ONNX run by onnxruntime, int8 quantization with
torchao, how fast each runs, and a small inference program. The program
(``python -m snippets.deploy predict IMAGE.png``) needs only the exported file,
torch and Pillow: no training code. ``python -m snippets.deploy export FOLDER``
trains the page's model and writes it. (The HTTP server is the serving
chapter's: snippets/serving.py.) Definitions are at module level; what the
page runs is at the end, at module level.
"""

# --8<-- [start:model]
import torch
from torch import nn


def build_cnn(seed=0):
    """The CNN chapter's network: two 5 x 5 convolution blocks (16 and 32
    channels), a hidden layer of 128 and 10 logits, for 1 x 28 x 28 digits."""
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
    """What a client calls: raw 8-bit pixels (N x 1 x 28 x 28, uint8) in,
    probabilities of the 10 digits out. The preprocessing is inside the model,
    so no client can preprocess differently from training."""

    def __init__(self, model, mean=0.1307, std=0.3081):
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, pixels):
        x = (pixels.float() / 255 - self.mean) / self.std
        return self.model(x).softmax(dim=1)


# --8<-- [end:model]


# --8<-- [start:data]
import torch
import torch.nn.functional as F


def digits_as_mnist():
    """scikit-learn's 1,797 8 x 8 digits drawn like MNIST's: enlarged to
    20 x 20, centred in 28 x 28, as uint8 pixels (N x 1 x 28 x 28), and labels."""
    from sklearn.datasets import load_digits  # imported here: training only

    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    large = F.interpolate(small, size=(20, 20), mode="bilinear")
    pixels = F.pad(large, (4, 4, 4, 4)).mul(255).round().to(torch.uint8)
    return pixels, torch.tensor(digits.target)


def train(model, pixels, labels, epochs=6, batch_size=64, seed=0):
    """A short AdamW run; returns the model in eval mode (ready to export)."""
    deployable = Deployable(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    # one thread: the same weights with any number of cores (on one kind of
    # CPU: another vector instruction set rounds differently)
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=generator)
            for batch in order.split(batch_size):
                x = (pixels[batch].float() / 255 - deployable.mean) / deployable.std
                loss = F.cross_entropy(model(x), labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def accuracy(predict, pixels, labels):
    """The share of images whose most probable digit is the label."""
    with torch.inference_mode():
        return (predict(pixels).argmax(dim=1) == labels).float().mean().item()


# --8<-- [end:data]


# --8<-- [start:export]
import os
import tempfile
from pathlib import Path

import torch


def export_program(model, example):
    """The model as an ExportedProgram whose batch size may be 1 to 1024. The
    example needs a batch of 2 or more: export takes a size of 1 as a constant."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    # the file keeps the example: a slice would save all of the tensor it views
    example = example.clone()
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def save_atomic(write, path):
    """write(temporary path), then rename it to ``path``: a crash mid-save
    leaves the old file whole, never a half-written one. The temporary file
    is hidden (.NAME.XXXX.SUFFIX): a shell's *.pt2 does not pick it up."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix
    )
    os.close(handle)
    try:
        write(temporary)  # raises to keep the old file (a failed check)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())  # on disk before the rename makes it visible
        os.replace(temporary, path)
        if os.name == "posix":  # and the rename itself on disk
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


# --8<-- [end:export]


# --8<-- [start:onnx]
import torch


def export_onnx(model, example, path):
    """The model as an ONNX file with a dynamic batch size, checked."""
    import onnx  # imported here: the inference program does not need them

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,  # the torch.export-based exporter
        dynamic_shapes=({0: batch},),
        input_names=["pixels"],
        output_names=["probabilities"],
        verbose=False,
    )

    def write_checked(temporary):
        # one file: over 2 GB, ONNX needs the weights in a file of their own
        program.save(temporary, external_data=False)
        onnx.checker.check_model(temporary)  # a bad file never replaces a good one

    save_atomic(write_checked, path)


def onnx_session(path, threads=0, spinning=True):
    """An onnxruntime session; session.run takes NumPy arrays. threads=0: one
    per core (onnxruntime's default); spinning=False: idle threads sleep
    instead of busy-waiting for work (for a server whose cores do other work)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    # the default level: constant folding, fusions, the CPU's memory layouts
    options.graph_optimization_level = (
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # the first provider installed wins (CUDA needs the onnxruntime-gpu package)
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = [p for p in wanted if p in onnxruntime.get_available_providers()]
    return onnxruntime.InferenceSession(str(path), options, providers=providers)


# --8<-- [end:onnx]


# --8<-- [start:latency]
import statistics
import time


def call_times(run, inputs, repeats=20, warmup=5):
    """Seconds of each of ``repeats`` calls of run(inputs), after ``warmup``."""
    for _ in range(warmup):
        run(inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(inputs)
        times.append(time.perf_counter() - start)
    return times


def latency(times):
    """The median and the 25th and 75th percentiles of call times."""
    low, median, high = statistics.quantiles(times, n=4)
    return median, low, high


# --8<-- [end:latency]


# --8<-- [start:quantize]
import copy
import io

import torch


def quantized_int8(model):
    """A copy whose nn.Linear layers hold int8 weights and quantize their
    inputs on the fly (dynamic quantization); convolutions stay float32."""
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        quantize_,
    )

    quantized = copy.deepcopy(model)
    # set_inductor_config=False: leave torch.compile's global settings alone
    config = Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    quantize_(quantized, config)
    return quantized


def saved_bytes(model):
    """The size of the model's state_dict as torch.save writes it."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


# --8<-- [end:quantize]


# --8<-- [start:aoti]
import torch


def compile_package(program, path):
    """AOTInductor: compile an ExportedProgram to machine code for this kind of
    device (C++ for a CPU, Triton kernels for a GPU) and write it, with its
    weights, as a .pt2 package. Not the file torch.export.save writes."""
    from torch._inductor import aoti_compile_and_package

    return aoti_compile_and_package(program, package_path=str(path))


def load_package(path):
    """A compiled package, to call like the model (from C++: the class
    torch::inductor::AOTIModelPackageLoader). Load only packages you trust.
    It checks no input (export's guards are gone): call it through predict."""
    from torch._inductor import aoti_load_package

    return aoti_load_package(str(path))


# --8<-- [end:aoti]


# --8<-- [start:program]
import io
import zipfile
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError


class InputError(ValueError):
    """Input the program cannot use; the message says what is wrong."""


def load_program(path):
    """The exported model of a .pt2 file, ready to call. Load only files you
    trust: torch.export.load unpickles parts of the file."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a directory, not a .pt2 file")
    if not path.is_file():
        raise InputError(f"{path}: no such file (export the model first)")
    if not zipfile.is_zipfile(path):  # a .pt2 file is a zip archive
        raise InputError(f"{path}: not a torch.export file (truncated or corrupt?)")
    try:
        return torch.export.load(path).module()
    except Exception as error:
        raise InputError(f"{path}: cannot load the program ({error})") from None


def read_digit(file):
    """A 28 x 28 grayscale PNG (a path or a binary file) as 1 x 1 x 28 x 28
    uint8 pixels: white digit on black, as in MNIST."""
    try:
        image = Image.open(file)  # reads the header only
    except UnidentifiedImageError:
        raise InputError("not an image (send a PNG file)") from None
    except Image.DecompressionBombError:  # a header that claims > 178M pixels
        raise InputError("a huge image: the model reads 28 x 28") from None
    except OSError as error:  # a missing file, a directory, no permission
        raise InputError(f"{file}: {error.strerror or error}") from None
    with image:  # closes the file on every way out
        if image.format != "PNG":
            raise InputError(f"a {image.format} image: send a PNG")
        if image.mode != "L":
            raise InputError(
                f"image mode {image.mode}: send 8-bit grayscale "
                "(image.convert('L'))"
            )
        if image.size != (28, 28):  # checked before decoding: no decompression bomb
            width, height = image.size
            raise InputError(f"a {width} x {height} image: the model reads 28 x 28")
        try:
            image.load()
        except (OSError, SyntaxError) as error:  # truncated, a bad chunk
            raise InputError(f"a broken image: {error}") from None
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.reshape(1, 1, 28, 28)


def predict(program, pixels):
    """(digit, probability) for each image of an N x 1 x 28 x 28 uint8 batch."""
    if pixels.dtype != torch.uint8:
        raise InputError(f"pixels of dtype {pixels.dtype}: send uint8 (0 to 255)")
    if pixels.ndim != 4 or pixels.shape[1:] != (1, 28, 28):
        shape = " x ".join(map(str, pixels.shape))
        raise InputError(f"a batch of shape {shape}: send N x 1 x 28 x 28")
    if not 1 <= len(pixels) <= 1024:
        raise InputError(f"{len(pixels)} images: send 1 to 1024 at a time")
    with torch.inference_mode():
        probabilities = program(pixels)
    best, digits = probabilities.max(dim=1)
    return list(zip(digits.tolist(), best.tolist()))


# --8<-- [end:program]


# --8<-- [start:main]
import argparse
import sys


def main(argv=None):
    """python -m snippets.deploy predict IMAGE.png ... | export FOLDER"""
    parser = argparse.ArgumentParser(prog="python -m snippets.deploy")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("predict", help="the digit in each PNG")
    run.add_argument("images", nargs="+")
    run.add_argument("--model", default="digits.pt2")
    write = commands.add_parser("export", help="train, export, write samples")
    write.add_argument("folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            return export_to(Path(args.folder))
        program = load_program(args.model)
        for name in args.images:
            [(digit, probability)] = predict(program, read_digit(name))
            print(f"{Path(name).name}: {digit} (probability {probability:.2f})")
    except InputError as error:
        sys.exit(f"error: {error}")


def export_to(folder):
    """Train the page's model, export it to FOLDER/digits.pt2 and write ten
    held-out digits as PNG files (the training code runs only here)."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels, labels = digits_as_mnist()
    model = train(build_cnn(), pixels[:1500], labels[:1500])
    program = export_program(Deployable(model).eval(), pixels[:2])
    save_atomic(
        lambda temporary: torch.export.save(program, temporary),
        folder / "digits.pt2",
    )
    for i in range(1500, 1510):
        image = Image.fromarray(pixels[i, 0].numpy(), mode="L")
        save_atomic(image.save, folder / f"digit-{i}-label-{labels[i]}.png")
    print(f"wrote {folder / 'digits.pt2'} and 10 PNG digits")


# --8<-- [end:main]


# What the page runs, in page order, at module level as on the page. This
# module's __main__ is its program (main), so these run under their own name:
# runpy.run_module("snippets.deploy", run_name="__page__") prints the page.
if __name__ == "__page__":
    # --8<-- [start:data-demo]
    pixels, labels = digits_as_mnist()
    train_pixels, train_labels = pixels[:1500], labels[:1500]
    test_pixels, test_labels = pixels[1500:], labels[1500:]
    model = train(build_cnn(), train_pixels, train_labels)
    deployable = Deployable(model).eval()
    print(
        f"held-out accuracy: {accuracy(deployable, test_pixels, test_labels):.1%}"
    )
    # --8<-- [end:data-demo]

    # --8<-- [start:pickle]
    import pickle
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())  # a folder of your own, in practice
    torch.save(model.state_dict(), folder / "weights.pt")  # recommended
    rebuilt = build_cnn()  # the code that builds the model...
    rebuilt.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))

    torch.save(model, folder / "whole-model.pt")  # pickles the module object
    try:
        torch.load(folder / "whole-model.pt")  # weights_only=True by default
    except pickle.UnpicklingError as error:
        line = next(line for line in str(error).splitlines() if "GLOBAL" in line)
        print(line.split("error: ")[1].split(" was not")[0])  # the gist of it
    # --8<-- [end:pickle]

    # --8<-- [start:export-demo]
    program = export_program(deployable, test_pixels[:2])
    print(
        program.graph_signature.user_inputs,
        "->",
        program.graph_signature.user_outputs,
    )
    operators = [
        node.target.__name__.split(".")[0]  # aten.conv2d.default -> conv2d
        for node in program.graph.nodes
        if node.op == "call_function"
    ]
    print(len(operators), "operators:", ", ".join(operators[:7]), "...")
    print(program.range_constraints)
    # --8<-- [end:export-demo]

    # --8<-- [start:save-demo]
    path = folder / "digits.pt2"
    save_atomic(lambda temporary: torch.export.save(program, temporary), path)
    loaded = torch.export.load(path).module()  # no build_cnn needed
    with torch.inference_mode():
        for batch in (test_pixels[:1], test_pixels):
            same = torch.equal(loaded(batch), deployable(batch))
            print(f"batch of {len(batch)}: equal to eager: {same}")
    print(f"{path.name}: {path.stat().st_size / 2**20:.1f} MiB")
    # --8<-- [end:save-demo]

    # --8<-- [start:export-fails]
    class ScalesIfNeeded(nn.Module):
        def forward(self, x):
            if x.max() > 1:  # a branch on a value, not on a shape
                x = x / 255
            return x

    example = test_pixels[:2].float()
    for strict in (False, True):  # non-strict: the default since torch 2.8
        try:
            torch.export.export(ScalesIfNeeded(), (example,), strict=strict)
        except Exception as error:
            print(f"strict={strict}: {type(error).__name__}:")
            print("  " + str(error).splitlines()[0].split(" (")[0])

    class ScalesAlways(nn.Module):  # the fix: one contract, no branch
        def forward(self, x):
            return x / 255

    print("exported:", type(export_program(ScalesAlways(), example)).__name__)

    class Logs(nn.Module):
        def forward(self, x):
            print("forward ran on a batch of", len(x))  # Python, not tensor ops
            return x / 255

    logged = torch.export.export(Logs(), (example,))  # runs forward once
    logged.module()(example)  # prints nothing: the print is not in the program
    print("in the program:", [str(n.target) for n in logged.graph.nodes][1:-1])
    # --8<-- [end:export-fails]

    # --8<-- [start:dynamic-shapes]
    from torch.export import Dim

    one, two = test_pixels[:1].clone(), test_pixels[:2].clone()
    try:  # an example of batch 1, with the batch declared dynamic
        batch = Dim("batch", min=1, max=1024)
        torch.export.export(deployable, (one,), dynamic_shapes=({0: batch},))
    except Exception as error:  # torch.export's UserError
        line = next(x for x in str(error).splitlines() if "constant" in x)
        print(type(error).__name__ + ":")
        print("  " + line.split(" If ")[0].strip("- "))
    for example_input in (one, two):  # Dim.AUTO: export decides, silently
        auto = torch.export.export(
            deployable, (example_input,), dynamic_shapes=({0: Dim.AUTO},)
        )
        sizes = list(auto.range_constraints.values()) or "static"
        print(f"Dim.AUTO, an example of {len(example_input)}: batch sizes {sizes}")
    # --8<-- [end:dynamic-shapes]

    # --8<-- [start:onnx-demo]
    onnx_path = folder / "digits.onnx"
    export_onnx(deployable, test_pixels[:2], onnx_path)
    session = onnx_session(onnx_path)
    print([(i.name, i.type, i.shape) for i in session.get_inputs()])
    with torch.inference_mode():
        for batch in (test_pixels[:1], test_pixels):
            [onnx_out] = session.run(None, {"pixels": batch.numpy()})
            gap = (
                (torch.from_numpy(onnx_out) - deployable(batch)).abs().max().item()
            )
            print(f"batch of {len(batch)}: largest difference < 1e-5: {gap < 1e-5}")
    print(f"{onnx_path.name}: {onnx_path.stat().st_size / 2**20:.1f} MiB")
    # --8<-- [end:onnx-demo]

    # --8<-- [start:onnx-options]
    import textwrap

    import onnx
    import onnxruntime

    print("available:", onnxruntime.get_available_providers())
    print("this session runs on:", session.get_providers())
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = (
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    )
    options.optimized_model_filepath = str(folder / "optimized.onnx")  # to read
    onnxruntime.InferenceSession(str(onnx_path), options)
    for name in ("digits.onnx", "optimized.onnx"):
        nodes = [node.op_type for node in onnx.load(folder / name).graph.node]
        print(textwrap.fill(f"{name}, {len(nodes)} nodes: {', '.join(nodes)}", 84))
    # --8<-- [end:onnx-options]

    # --8<-- [start:torchscript]
    import textwrap
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.jit.script(model)
    print(caught[0].category.__name__ + ":")
    print(textwrap.fill(str(caught[0].message), 84))
    # --8<-- [end:torchscript]

    # --8<-- [start:quantize-demo]
    quantized = quantized_int8(deployable)
    weights = {
        type(layer).__name__: type(layer.weight).__name__
        for layer in quantized.model
        if hasattr(layer, "weight")
    }
    print("weights:", weights)
    for name, candidate in (("float32", deployable), ("int8", quantized)):
        held_out = accuracy(candidate, test_pixels, test_labels)
        size = saved_bytes(candidate) / 1024
        print(f"{name:>7}: {size:4.0f} KiB, held-out accuracy {held_out:.1%}")
    with torch.inference_mode():
        gap = (quantized(test_pixels) - deployable(test_pixels)).abs().max().item()
    print(f"largest change of a probability: < 0.05: {gap < 0.05}")
    # --8<-- [end:quantize-demo]

    # --8<-- [start:program-demo]
    import numpy as np

    for i in (1500, 1501):  # two held-out digits, saved as PNG files
        png = Image.fromarray(pixels[i, 0].numpy(), mode="L")
        png.save(folder / f"digit-{i}-label-{labels[i]}.png")
    main(["predict", *sorted(map(str, folder.glob("*.png"))), "--model", str(path)])

    rgb = Image.fromarray(np.zeros((28, 28, 3), dtype=np.uint8))
    rgb.save(folder / "colour.png")
    Image.new("L", (32, 32)).save(folder / "large.png")
    (folder / "broken.pt2").write_bytes(path.read_bytes()[:4096])  # truncated
    for bad in (
        lambda: read_digit(folder / "colour.png"),
        lambda: read_digit(folder / "large.png"),
        lambda: read_digit(io.BytesIO(b"not a PNG")),
        lambda: read_digit(folder / "missing.png"),
        lambda: read_digit(folder),  # a directory
        lambda: load_program(folder / "broken.pt2"),
        lambda: predict(loaded, test_pixels[0]),  # no batch dimension
        lambda: predict(loaded, test_pixels.float()),
    ):
        try:
            bad()
        except InputError as error:
            print("InputError:", str(error).replace(str(folder), "…"))
    # --8<-- [end:program-demo]

    # --8<-- [start:exercise-static]
    fixed = torch.export.export(deployable, (test_pixels[:2].clone(),)).module()
    try:
        fixed(test_pixels[:3])
    except AssertionError as error:
        # the guard of the batch size it was traced with
        print(type(error).__name__ + ":", error)
    # --8<-- [end:exercise-static]

    # --8<-- [start:exercise-onnx-dtype]
    try:
        session.run(None, {"pixels": test_pixels[:1].float().numpy()})
    except Exception as error:  # onnxruntime's InvalidArgument
        print(str(error).split(" : ")[-1][:84])
    # --8<-- [end:exercise-onnx-dtype]

    # --8<-- [start:exercise-quantize-one]
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        quantize_,
    )

    hidden_only = copy.deepcopy(deployable)
    quantize_(
        hidden_only,
        Int8DynamicActivationInt8WeightConfig(set_inductor_config=False),
        filter_fn=lambda module, name: name == "model.9",  # the 1568 -> 128 layer
    )
    held_out = accuracy(hidden_only, test_pixels, test_labels)
    size = saved_bytes(hidden_only) / 1024
    print(f"{size:.0f} KiB, held-out accuracy {held_out:.1%}")
    total = sum(weight.numel() for weight in deployable.parameters())
    print(
        f"that layer: {deployable.model[9].weight.numel():,} of {total:,} weights"
    )
    # --8<-- [end:exercise-quantize-one]


if __name__ == "__main__":
    main()
