"""The deployment benchmark's forms and its floor, run small. The record itself is made by ``python -m
benchmarks.deploy --record``; tests/test_deploy.py checks the record against the page."""

from pathlib import Path

import torch
from conftest import ROOT
from torch.utils.flop_counter import FlopCounterMode

import benchmarks.deploy as bench
import snippets.deploy as d


def test_the_record_is_produced_by_the_benchmark_and_the_chapter_module():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/deploy.py", "benchmarks/deploy.py"}


def test_the_floor_counted_per_layer_is_what_pytorch_counts():
    model = d.build_cnn().eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(3, 1, 28, 28))
    assert bench.forward_flops(batch=3) == counter.get_total_flops()


def test_every_form_computes_the_same_probabilities(tmp_path):
    pixels, _ = d.digits_as_mnist()
    deployable = d.Deployable(d.build_cnn()).eval()
    forms = bench.forms(deployable, pixels[:2], tmp_path, threads=1)
    assert len(forms) == 7
    batch = pixels[100:108].clone()
    with torch.inference_mode():
        expected = deployable(batch)
    for name, run in forms.items():
        with torch.inference_mode():
            got = run(batch)
        tolerance = 0.05 if "int8" in name else 1e-5
        assert got.shape == (8, 10) and (got - expected).abs().max() < tolerance, name


def test_latency_reports_the_median_between_its_quartiles():
    calls = []
    times = d.call_times(calls.append, None, repeats=9, warmup=3)
    assert len(calls) == 12 and len(times) == 9
    median, low, high = d.latency(times)
    assert 0 <= low <= median <= high and median == sorted(times)[4]
