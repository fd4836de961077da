"""benchmarks/gpu.py: the benchmark runs every variant on the CPU, and its record is fresh and honest."""

import json
import struct

import pytest
import torch

import benchmarks.gpu as bench
from site_tools.records import check_fresh, read_record


def easy_digits(n, seed):
    """Fake 28x28 uint8 'digits': class k lights up row block k, plus noise. Learnable in one epoch."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    images = torch.randint(0, 60, (n, 28, 28), generator=generator, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        images[i, 2 * label : 2 * label + 3, :] = 255
    return images, labels


class FakeTrainSet(torch.utils.data.Dataset):
    """What the benchmark needs from torchvision's MNIST: items for the DataLoader, .data/.targets for preloading."""

    def __init__(self, images, labels):
        self.data, self.targets = images, labels

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return ((self.data[i].float() / 255 - bench.MEAN) / bench.STD).unsqueeze(0), int(self.targets[i])


@pytest.fixture(scope="module")
def data():
    return FakeTrainSet(*easy_digits(512, 0)), easy_digits(200, 1)


@pytest.mark.parametrize("variant", ["dataloader", "on-device", "amp"])
def test_each_variant_trains_to_the_target_and_reports_its_metrics(data, variant):
    run = bench.run_variant(variant, "cpu", *data, hidden=(32,), batch_size=64, target=0.9, max_epochs=5, num_workers=0)
    assert run["epochs_to_target"] == len(run["accuracy"]) == len(run["epoch_s"])
    assert run["accuracy"][-1] >= 0.9 > max(run["accuracy"][:-1], default=0)
    assert run["time_to_target_s"] == pytest.approx(sum(run["epoch_s"]), abs=0.01)
    assert run["images_per_s"] > 0
    assert run["amp_dtype"] == ("bfloat16" if variant == "amp" else None)


def test_compile_variant_compiles_the_model_in_place_and_matches_eager_accuracy(data, monkeypatch):
    compiled_in_place, module_compile = [], torch.nn.Module.compile

    def spy(module, *args, **kwargs):  # the page recommends model.compile(), and the benchmark it shows uses it
        compiled_in_place.append(type(module).__name__)
        return module_compile(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "compile", spy)
    options = dict(hidden=(16,), batch_size=64, target=1.1, max_epochs=2)
    eager = bench.run_variant("on-device", "cpu", *data, **options)
    assert compiled_in_place == []
    compiled = bench.run_variant("compile", "cpu", *data, **options)
    assert compiled_in_place == ["Sequential"]
    assert compiled["time_to_target_s"] is None and compiled["epochs_to_target"] is None  # 110% is unreachable
    assert compiled["accuracy"] == pytest.approx(eager["accuracy"], abs=0.02)
    assert compiled["epoch_s"][0] > compiled["epoch_s"][1]  # the first epoch pays for the compilation


def test_unknown_variant_is_a_clear_error(data):
    with pytest.raises(ValueError, match="unknown variant 'fast'"):
        bench.run_variant("fast", "cpu", *data)


def test_device_batches_drop_the_partial_batch_and_do_not_repeat():
    labels = torch.arange(100)
    batches = list(bench.device_batches(torch.zeros(100, 1), labels, 32, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [32, 32, 32]
    assert len(set(torch.cat([y for _, y in batches]).tolist())) == 96


def test_amp_dtype_is_bfloat16_on_cpu():
    assert bench.amp_dtype(torch.device("cpu")) == torch.bfloat16


def write_idx(path, tensor, magic):
    path.write_bytes(struct.pack(f">{1 + tensor.dim()}i", magic, *tensor.shape) + tensor.numpy().tobytes())


def test_the_record_command_loads_mnist_files_and_writes_a_record(tmp_path, capsys):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, seed in [("train", 256, 0), ("t10k", 64, 1)]:
        images, labels = easy_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.to(torch.uint8), 2049)
    metrics = bench.main(
        [
            "--data-root",
            str(tmp_path / "data"),
            "--devices",
            "cpu",
            "--variants",
            "on-device",
            "--max-epochs",
            "1",
            "--record",
            "--records-dir",
            str(tmp_path),
        ]
    )
    record = json.loads((tmp_path / "gpu.json").read_text())
    assert record["metrics"] == json.loads(json.dumps(metrics))
    assert record["metrics"]["devices"]["gpu"] is None
    assert record["metrics"]["missing"]["gpu"] == bench.NO_GPU
    assert list(record["metrics"]["devices"]["cpu"]["variants"]) == ["on-device"]
    assert record["provenance"]["producers"] == ["benchmarks/gpu.py"]
    assert record["provenance"]["command"].startswith("python -m benchmarks.gpu --data-root")
    assert "recorded" in capsys.readouterr().out


def test_default_devices_are_the_cpu_and_the_available_accelerator():
    devices = bench.default_devices()
    assert devices[0] == "cpu"
    assert len(devices) == (2 if torch.accelerator.is_available() else 1)


def test_the_committed_record_is_fresh_and_complete():
    record = check_fresh(read_record("gpu"))
    metrics = record["metrics"]
    assert record["provenance"]["command"] == "python -m benchmarks.gpu --data-root data --record"
    assert metrics["config"]["target_accuracy"] == 0.98
    cpu = metrics["devices"]["cpu"]["variants"]
    assert metrics["variants"] == list(bench.VARIANTS) and set(cpu) == set(bench.VARIANTS)  # JSON keys are sorted
    for run in cpu.values():
        assert len(run["accuracy"]) == len(run["epoch_s"]) >= 1
        if run["epochs_to_target"] is not None:
            assert run["accuracy"][run["epochs_to_target"] - 1] >= 0.98
    if metrics["devices"]["gpu"] is None:
        assert metrics["missing"]["gpu"] == bench.NO_GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_device_variant_runs_on_cuda(data):
    run = bench.run_variant("on-device", "cuda", *data, hidden=(32,), batch_size=64, target=0.9, max_epochs=5)
    assert run["accuracy"][-1] >= 0.9
