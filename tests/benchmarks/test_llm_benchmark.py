"""The language-model benchmark, run small: a tiny tokenizer, model and number of steps on a slice of the standard
library and on the guide's pages; then the page's report rendered from a record the benchmark writes. The record
itself is made by ``python -m benchmarks.llm --record``; tests/test_llm.py checks it against the page."""

import html
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from conftest import DOCS, ROOT, run_sections, snippet_sections

import benchmarks.cnn
import benchmarks.llm as bench
import site_tools.records as records
import snippets.llm as s

pytestmark = pytest.mark.usefixtures("keep_threads")  # tests/conftest.py


def test_the_record_is_produced_by_the_benchmark_and_the_chapter_module():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/llm.py", "benchmarks/llm.py"}
    _, hashed = records.code_hash("benchmarks/llm.py")
    assert {"snippets/llm.py:TinyLM", "snippets/llm.py:generate", "snippets/llm.py:add_lora"} <= set(hashed)


def test_the_recipes_the_issue_asks_for():
    assert len(bench.CANDIDATES) >= 2 and all(len(rates) >= 2 for rates in bench.FINE_TUNING_CANDIDATES.values())
    assert set(bench.FINE_TUNING_CANDIDATES) == {"LoRA", "full"}
    assert len(bench.SAMPLES) == 2  # two temperatures
    assert len({settings["temperature"] for settings in bench.SAMPLES.values()}) == 2
    assert bench.MODEL["kv_heads"] < bench.MODEL["heads"]  # grouped-query attention


TINY_RECIPE = {**bench.RECIPE, "steps": 4, "batch_size": 4}


@pytest.fixture(scope="module")
def tiny_run():
    """main() on 60 files of the standard library with a tiny tokenizer and model; which ids evaluate was given."""
    seen = {"evaluated": []}
    real_evaluate, real_corpus = bench.evaluate, bench.stdlib_corpus

    def evaluate(model, ids, *args):
        seen["evaluated"].append(len(ids))
        return real_evaluate(model, ids, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "TOKENIZER", {"vocabulary_size": 300, "training_characters": 50_000})
        patch.setattr(bench, "MODEL", {"context": 16, "d_model": 16, "heads": 2, "kv_heads": 1, "depth": 1})
        patch.setattr(bench, "CANDIDATES", {"a": TINY_RECIPE, "b": {**TINY_RECIPE, "lr": 1e-2}})
        patch.setattr(bench, "CURVE_EVERY", 2)
        patch.setattr(bench, "SAMPLE_TOKENS", 5)
        patch.setattr(bench, "KV_CONTEXT", 32)
        patch.setattr(bench, "KV_LENGTHS", (8, 32))
        patch.setattr(bench, "KV_REPEATS", 1)
        patch.setattr(bench, "FINE_TUNING", {**bench.FINE_TUNING, "steps": 3, "batch_size": 4})
        patch.setattr(bench, "stdlib_corpus", lambda: real_corpus(max_files=60))
        patch.setattr(bench, "evaluate", evaluate)
        seen["metrics"] = bench.main(["--threads", "1"])
    return seen


@pytest.fixture(scope="module")
def tiny_metrics(tiny_run):
    return tiny_run["metrics"]


def test_the_corpus_is_described_and_split_by_file(tiny_metrics):
    corpus = tiny_metrics["corpus"]
    assert sum(corpus[name]["files"] for name in ("train", "validation", "test")) == 60
    assert all(len(corpus[name]["sha256"]) == 64 for name in ("train", "validation", "test"))
    assert re.fullmatch(r"3\.\d+\.\d+", corpus["python"])


def test_both_tokenizers_are_compared_on_the_validation_files(tiny_metrics):
    tokenizers = tiny_metrics["tokenizers"]
    assert tokenizers["vocabulary_size"] == 300 and tokenizers["training_characters"] == 50_000
    for name in ("by_hand", "tokenizers"):
        assert 0.3 < tokenizers[name]["tokens_per_byte"] < 1 and tokenizers[name]["train_seconds"] > 0


def test_the_recipe_is_chosen_on_validation_and_the_test_part_is_read_once(tiny_run, tiny_metrics):
    training = tiny_metrics["training"]
    chosen = min(training["candidates"], key=lambda t: t["validation"])
    assert training["chosen"] == chosen["name"]
    assert [run["seed"] for run in training["seeds"]] == list(bench.SEEDS) == [0, 1, 2, 3, 4]
    assert training["seeds"][0]["validation"] == chosen["validation"]  # seed 0 is the chosen candidate's run
    assert tiny_run["evaluated"].count(training["tokens"]["test"]) == 5  # each chosen model once, no other
    for tried in training["candidates"]:
        assert len(tried["train_loss"]) == 4 and [step for step, _ in tried["validation_curve"]] == [2, 4]
        assert tried["tokens_per_second"] > 0
    assert training["baseline"]["validation"] > 0 and all(run["test"] > 0 for run in training["seeds"])
    assert [drawn["settings"] for drawn in training["samples"]] == list(bench.SAMPLES)
    assert all(drawn["text"].startswith("def ") for drawn in training["samples"])


def test_the_kv_cache_table_gives_the_same_tokens_with_and_without_the_cache(tiny_metrics):
    kv = tiny_metrics["kv_cache"]
    assert [row["length"] for row in kv["rows"]] == [8, 32] and kv["context"] == 32
    assert all(row["same_tokens"] and row["cache"] > 0 and row["no_cache"] > 0 for row in kv["rows"])


def test_lora_and_full_fine_tuning_on_the_guide_pages(tiny_run, tiny_metrics):
    tuning = tiny_metrics["fine_tuning"]
    pages = [page["name"] for part in tuning["pages"].values() for page in part]
    assert sorted(pages) == sorted(p.name for p in DOCS.glob("*.md"))  # every page, in one part each
    assert tuning["pages"]["validation"] and tuning["pages"]["test"]
    lora, full = tuning["LoRA"], tuning["full"]
    assert all(t["trainable"] < 0.2 * t["parameters"] for t in lora["candidates"])
    assert all(t["trainable"] == t["parameters"] for t in full["candidates"])
    assert tiny_run["evaluated"].count(tuning["tokens"]["test"]) == 1 + 2 * 5  # before; each chosen model once
    for result in (lora, full):
        assert [run["seed"] for run in result["seeds"]] == [0, 1, 2, 3, 4]
        chosen = next(t for t in result["candidates"] if t["name"] == result["chosen"])
        assert chosen["validation"] == min(t["validation"] for t in result["candidates"])
        assert result["seeds"][0]["validation"] == chosen["validation"]
    assert 0 < lora["adapter_bytes"] < lora["base_bytes"]


def test_the_page_report_renders_a_record_the_benchmark_writes(tiny_metrics, tmp_path, monkeypatch):
    producers = [ROOT / p for p in ("benchmarks/llm.py", "snippets/llm.py")]
    tiny_metrics["training"]["samples"][0]["text"] += "\x07 a bell"  # control characters are not shown as such
    records.write_record("llm", tiny_metrics, producers, "cpu", command="python -m x", records_dir=tmp_path)
    real = records.read_record
    monkeypatch.setattr(records, "read_record", lambda name, records_dir=None: real(name, tmp_path))
    plt.close("all")
    report = "benchmarks/reports/llm.py"
    _, outputs = run_sections(report, list(snippet_sections(report)))
    out = "".join(outputs)
    assert out.count('class="guide-record"') == 5 and "Not recorded yet" not in out
    assert "<svg" in out and "chosen" in out
    text = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<p .*?</p>", "\n", out)))
    assert [line for line in re.sub(r"<svg.*?</svg>", "", text, flags=re.S).splitlines() if len(line) > 84] == []
    assert "\x07" not in text
    plt.close("all")


def test_recording_on_a_busy_machine_is_refused_before_any_work(capsys, monkeypatch):
    monkeypatch.setattr(benchmarks.cnn.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    with pytest.raises(SystemExit):
        bench.main(["--record"])
    assert "load average 1.50 (1 minute), above 0.5" in capsys.readouterr().err


def test_the_stdlib_corpus_reads_what_the_chapter_module_lists():
    texts, corpus = bench.stdlib_corpus(max_files=10)
    files = s.stdlib_files()[:10]
    assert sum(len(part) for part in texts.values()) == 10
    assert sum(corpus[name]["bytes"] for name in texts) == sum(path.stat().st_size for path in files)
