"""Recorded runs: provenance, atomic writes, and a record going stale exactly when the code that made it changes."""

import ast
import io
import json
import re
import tokenize

import pytest

import site_tools.records as records

RECORDS = sorted(path.stem for path in records.RECORDS_DIR.glob("*.json"))
BENCHMARK = "benchmarks/practice.py"  # a real benchmark module: a record's producers must include one


def test_a_record_round_trips_with_provenance(tmp_path):
    producers = [records.ROOT / BENCHMARK, records.ROOT / "snippets" / "practice.py"]
    path = records.write_record(
        "demo", {"accuracy": 0.98}, producers, "cpu", command="python -m x", records_dir=tmp_path
    )
    record = records.read_record("demo", records_dir=tmp_path)
    assert record["metrics"] == {"accuracy": 0.98}
    prov = record["provenance"]
    assert prov["torch"] and prov["device"] == "cpu" and prov["command"] == "python -m x"
    assert prov["producers"] == [BENCHMARK, "snippets/practice.py"]
    assert len(prov["code_hash"]) == 64
    assert prov["hashed"][0] == BENCHMARK and "snippets/practice.py:Run" in prov["hashed"]
    assert records.check_fresh(record) is record
    assert "code_hash" in records.format_provenance(record)
    assert not list(tmp_path.glob(".*.tmp")), "temporary files must not be left behind"
    assert json.loads(path.read_text())["name"] == "demo"


def test_a_record_names_one_benchmark_module(tmp_path):
    with pytest.raises(ValueError, match="exactly one benchmark module"):
        records.write_record("demo", {}, [records.ROOT / "snippets" / "practice.py"], "cpu", records_dir=tmp_path)


def test_a_cpu_run_is_described_with_its_threads_and_load(tmp_path):
    metrics = {"threads": 2, "load_average": [0.25, 1.5]}
    producers = [records.ROOT / BENCHMARK]
    records.write_record("run", metrics, producers, "cpu", command="python -m x", records_dir=tmp_path)
    record = records.read_record("run", records_dir=tmp_path)
    lines = records.describe_cpu_run(record).splitlines()
    assert lines[:-1] == records.describe(record).splitlines()
    assert lines[-1] == "2 threads; load average 0.25 at the start, 1.50 at the end"


def test_one_thread_is_one_thread_in_new_records_and_in_old_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(records.torch, "get_num_threads", lambda: 1)
    assert records.device_description("cpu").endswith("(1 thread)")
    records.write_record(
        "run", {"threads": 1, "load_average": [0, 0]}, [records.ROOT / BENCHMARK], "cpu", "x", tmp_path
    )
    record = records.read_record("run", records_dir=tmp_path)
    record["provenance"]["device_name"] = "AMD EPYC (1 threads)"  # as records made before the fix say
    assert "AMD EPYC (1 thread)\n" in records.describe(record)
    assert records.describe_cpu_run(record).endswith("1 thread; load average 0.00 at the start, 0.00 at the end")


def test_a_changed_hash_makes_the_record_stale():
    record = {"name": "demo", "provenance": {"producers": [BENCHMARK], "code_hash": "0" * 64, "command": "python -m x"}}
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
    monkeypatch.setattr(records.sys, "argv", [str(records.ROOT / BENCHMARK), "--record"])
    records.write_record("demo", {}, [records.ROOT / BENCHMARK], "cpu", records_dir=tmp_path)
    command = records.read_record("demo", records_dir=tmp_path)["provenance"]["command"]
    assert command == "python -m benchmarks.practice --record"


# --- freshness: what the hash covers


@pytest.mark.parametrize("name", RECORDS)
def test_every_record_was_made_by_the_code_in_this_repository(name):
    records.check_fresh(records.read_record(name))


def producer_sources():
    """{file: text} of every file some record's hash covers."""
    files = {p for name in RECORDS for p in records.read_record(name)["provenance"]["producers"]}
    return {path: (records.ROOT / path).read_text(encoding="utf-8") for path in files}


def comments_and_docstrings_edited(text):
    """The same code with every comment and docstring rewritten, and comment lines and blank lines added."""
    lines = text.split("\n")
    tree = ast.parse(text)
    edits = []  # (line, column, end line, end column, replacement), 1-based lines
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            edits.append((*token.start, *token.end, "# an edited comment"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                edits.append((first.lineno, first.col_offset, first.end_lineno, first.end_col_offset, '"""Edited."""'))
    for line, col, end_line, end_col, replacement in sorted(edits, reverse=True):
        head, tail = lines[line - 1][:col], lines[end_line - 1][end_col:]
        lines[line - 1 : end_line] = [head + replacement + tail]
    return "# a new first line\n\n" + "\n".join(lines) + "\n# a new last line\n"


def with_line_added(text, function):
    """The code with one statement added at the end of the top-level function ``function``."""
    node = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == function)
    lines = text.split("\n")
    indent = re.match(r"\s*", lines[node.body[0].lineno - 1])[0]
    lines.insert(node.end_lineno, f"{indent}_changed = 1")
    return "\n".join(lines)


def stale_records(sources):
    stale = set()
    for name in RECORDS:
        try:
            records.check_fresh(records.read_record(name), sources)
        except records.StaleRecordError:
            stale.add(name)
    return stale


def test_editing_only_comments_and_docstrings_keeps_every_record_fresh():
    edited = {path: comments_and_docstrings_edited(text) for path, text in producer_sources().items()}
    assert all(edited[path] != text for path, text in producer_sources().items())
    assert stale_records(edited) == set()


def test_a_changed_line_in_a_used_function_makes_exactly_the_records_that_use_it_stale():
    sources = producer_sources()
    using_fit = {
        name for name in RECORDS if "snippets/mnist.py:fit" in records.read_record(name)["provenance"]["hashed"]
    }
    assert using_fit == {"mnist", "cnn", "sequences"}
    changed = {"snippets/mnist.py": with_line_added(sources["snippets/mnist.py"], "fit")}
    assert stale_records(changed) == using_fit


def test_a_changed_line_in_a_function_no_benchmark_uses_keeps_every_record_fresh():
    sources = producer_sources()
    assert not any("snippets/mnist.py:load_png" in records.read_record(n)["provenance"]["hashed"] for n in RECORDS)
    assert stale_records({"snippets/mnist.py": with_line_added(sources["snippets/mnist.py"], "load_png")}) == set()


def test_a_program_the_benchmark_launches_counts_from_its_main_and_its_main_guard():
    """benchmarks/distributed.py runs snippets/distributed.py with torchrun: its main(), what main() uses, and its
    `if __name__ == "__main__":` block."""
    hashed = records.read_record("distributed")["provenance"]["hashed"]
    assert {"snippets/distributed.py:main", "snippets/distributed.py:parse_args"} <= set(hashed)
    source = producer_sources()["snippets/distributed.py"]
    changed = with_line_added(source, "parse_args")
    assert stale_records({"snippets/distributed.py": changed}) == {"distributed"}
    guard = 'if __name__ == "__main__":\n'
    assert source.count(guard) == 1
    in_the_guard = source.replace(guard, guard + "    _changed = 1\n")
    assert stale_records({"snippets/distributed.py": in_the_guard}) == {"distributed"}


@pytest.mark.parametrize(
    "line, refused",
    [("import snippets.mnist", "import snippets.mnist as <name>"), ("from snippets.mnist import *", "not *")],
)
def test_an_import_the_hash_cannot_follow_is_refused(line, refused):
    sources = {BENCHMARK: producer_sources()[BENCHMARK] + f"\n{line}\n"}
    with pytest.raises(ValueError, match=re.escape(refused)):
        records.code_hash(BENCHMARK, sources)
