"""Recorded runs: provenance, atomic writes, and staleness detection."""

import json

import pytest

import site_tools.records as records


def test_a_record_round_trips_with_provenance(tmp_path):
    # producers must live in the repository: use a real module of it
    path = records.write_record(
        "demo", {"accuracy": 0.98}, [records.__file__], "cpu", command="python -m x", records_dir=tmp_path
    )
    record = records.read_record("demo", records_dir=tmp_path)
    assert record["metrics"] == {"accuracy": 0.98}
    prov = record["provenance"]
    assert prov["torch"] and prov["device"] == "cpu" and prov["command"] == "python -m x"
    assert prov["producers"] == ["site_tools/records.py"]
    assert len(prov["code_hash"]) == 64
    assert records.check_fresh(record) is record
    assert "code_hash" in records.format_provenance(record)
    assert not list(tmp_path.glob(".*.tmp")), "temporary files must not be left behind"
    assert json.loads(path.read_text())["name"] == "demo"


def test_a_cpu_run_is_described_with_its_threads_and_load(tmp_path):
    metrics = {"threads": 2, "load_average": [0.25, 1.5]}
    records.write_record("run", metrics, [records.__file__], "cpu", command="python -m x", records_dir=tmp_path)
    record = records.read_record("run", records_dir=tmp_path)
    lines = records.describe_cpu_run(record).splitlines()
    assert lines[:-1] == records.describe(record).splitlines()
    assert lines[-1] == "2 threads; load average 0.25 at the start, 1.50 at the end"


def test_a_changed_producer_makes_the_record_stale(tmp_path):
    record = {
        "name": "demo",
        "provenance": {"producers": ["site_tools/records.py"], "code_hash": "0" * 64, "command": "python -m x"},
    }
    with pytest.raises(records.StaleRecordError, match="re-run `python -m x`"):
        records.check_fresh(record)


def test_a_missing_record_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="record command"):
        records.read_record("nothing", records_dir=tmp_path)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "kept.json"
    target.write_text("old")

    class Boom:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        records.atomic_write_text(target, Boom())
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_default_command_names_the_module_not_this_machines_path(tmp_path, monkeypatch):
    monkeypatch.setattr(records.sys, "argv", [str(records.ROOT / "benchmarks" / "mnist.py"), "--record"])
    records.write_record("demo", {}, [records.__file__], "cpu", records_dir=tmp_path)
    command = records.read_record("demo", records_dir=tmp_path)["provenance"]["command"]
    assert command == "python -m benchmarks.mnist --record"
