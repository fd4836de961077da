"""The deployment chapter's latency table (a script, not a test).

    python -m benchmarks.deploy            # print it
    python -m benchmarks.deploy --record   # and record it

Times the page's model at batch 1 and 256 in each form the page ships it: eager,
under inference_mode, compiled, the exported program, onnxruntime, and int8. The
times depend on the machine and its load, so the page shows a recorded table:
``--record`` writes docs/records/deploy.json. Record on an idle machine.
"""

import argparse
import copy
import os
import tempfile
from pathlib import Path

import snippets.deploy as d
import torch
from site_tools.records import write_record
from snippets.deploy import (
    Deployable,
    build_cnn,
    call_times,
    digits_as_mnist,
    export_onnx,
    export_program,
    latency,
    onnx_session,
    quantized_int8,
    saved_bytes,
    train,
)

PRODUCERS = [d.__file__, __file__]


def forward_flops(batch=1):
    """Multiply-adds x 2 of one forward pass, counted per layer: 28 x 28 x 16
    outputs of 25 taps, 14 x 14 x 32 outputs of 16 x 25, then the two layers."""
    conv1 = 28 * 28 * 16 * (1 * 25)
    conv2 = 14 * 14 * 32 * (16 * 25)
    hidden, out = 32 * 7 * 7 * 128, 128 * 10
    return 2 * batch * (conv1 + conv2 + hidden + out)


# --8<-- [start:forms]
def forms(deployable, example, folder, threads):
    """{name: a function that takes uint8 pixels and returns probabilities}."""
    program = export_program(deployable, example)
    exported = program.module()
    export_onnx(deployable, example, folder / "digits.onnx")
    session = onnx_session(folder / "digits.onnx", threads=threads)
    compiled = copy.deepcopy(deployable)  # the eager forms keep the original
    compiled.compile()  # in place: compiles at its first call of each shape
    quantized = quantized_int8(deployable)
    quantized_compiled = quantized_int8(deployable)
    quantized_compiled.compile()

    def inference(model):
        def run(pixels):
            with torch.inference_mode():
                return model(pixels)

        return run

    def onnxruntime(pixels):
        return torch.from_numpy(session.run(None, {"pixels": pixels.numpy()})[0])

    return {
        "eager (autograd on)": deployable,
        "eager, inference_mode": inference(deployable),
        "torch.compile": inference(compiled),
        "exported program (.pt2)": inference(exported),
        "onnxruntime": onnxruntime,
        "int8 (torchao), eager": inference(quantized),
        "int8 (torchao), compiled": inference(quantized_compiled),
    }


# --8<-- [end:forms]


def measure(threads=2, rounds=10, repeats=20, batches=(1, 256)):
    """Median and quartiles of each form at each batch size; sizes; accuracy.
    The forms take turns, ``repeats`` calls each per round, so that a change of
    the machine's speed during the run (another process, the clock) affects
    every form alike."""
    torch.set_num_threads(threads)
    pixels, labels = digits_as_mnist()
    model = train(build_cnn(), pixels[:1500], labels[:1500])
    deployable = Deployable(model).eval()
    test_pixels, test_labels = pixels[1500:], labels[1500:]
    folder = Path(tempfile.mkdtemp())
    runs = forms(deployable, test_pixels[:2], folder, threads)
    rows = {}
    for name, run in runs.items():
        with torch.inference_mode():
            predicted = run(test_pixels).argmax(dim=1)
        accuracy = (predicted == test_labels).float().mean().item()
        rows[name] = {"form": name, "accuracy": accuracy}
    for batch in batches:
        inputs = pixels[:batch].clone()
        times = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                times[name] += call_times(run, inputs, repeats=repeats)
        for name in runs:
            median, low, high = latency(times[name])
            rows[name][str(batch)] = {"median": median, "low": low, "high": high}
            print(f"{name:26} batch {batch:3}: {median * 1e3:8.3f} ms")
    rows = list(rows.values())
    torch.export.save(export_program(deployable, test_pixels[:2]), folder / "d.pt2")
    sizes = {
        "state_dict (float32)": saved_bytes(deployable),
        "state_dict (int8 linear layers)": saved_bytes(quantized_int8(deployable)),
        "exported program (.pt2)": (folder / "d.pt2").stat().st_size,
        "ONNX file": (folder / "digits.onnx").stat().st_size,
    }
    return {
        "rows": rows,
        "sizes": sizes,
        "repeats": rounds * repeats,
        "flops_per_image": forward_flops(),
        "threads": torch.get_num_threads(),
        "onnxruntime": __import__("onnxruntime").__version__,
        "torchao": __import__("torchao").__version__,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.deploy", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/deploy.json"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (default: 2)"
    )
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    metrics = measure(args.threads, args.rounds)
    metrics["load_average"] = [load_before, os.getloadavg()[0]]
    if args.record:
        print("recorded:", write_record("deploy", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
