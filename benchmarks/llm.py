"""The language-model chapter's recorded runs (a script, not a test).

    python -m benchmarks.llm            # print them
    python -m benchmarks.llm --record   # and record them

``--record`` writes docs/records/llm.json. The corpus is the Python standard
library's source on the machine that records (its version, file names and a
hash are recorded), split by file (snippets.llm.split_by_file). In order:

1. tokenizers: the BPE written by hand and Hugging Face's byte-level BPE, each
   trained on the same slice of the training files with the same vocabulary;
   tokens per byte on the validation files, and training seconds;
2. training: each candidate recipe trains the model from seed 0; the one with
   the lowest validation loss is chosen and trained again from seeds 1 to 4;
   each of the chosen recipe's five models is scored on the test files, once;
   loss curves, tokens per second, the bigram baseline, and samples at two
   temperatures (from the seed-0 model);
3. generation: tokens per second with and without the KV cache as the
   sequence grows (an untrained model of the same shape with a longer
   context: the speed does not depend on the weights), greedy outputs
   compared;
4. fine-tuning on the guide's own pages (split by file): LoRA on the attention
   projections against full fine-tuning, the same number of steps from the
   seed-0 trained model, each with its learning rate chosen on validation
   (seed 0) and then run from seeds 1 to 4 too; validation loss before and
   after, and each chosen recipe's five models on the test pages, once.

--record refuses to start above a load average of 0.5 (benchmarks.cnn's
guard) and uses 2 threads.
"""

import argparse
import copy
import hashlib
import importlib.metadata
import os
import platform
import sysconfig
import tempfile
import time
from pathlib import Path

import snippets.llm as llm
import torch
from site_tools.records import ROOT, write_record
from snippets.llm import (
    BytePairTokenizer,
    TinyLM,
    add_lora,
    bigram_loss,
    evaluate,
    generate,
    parameter_count,
    read_texts,
    save_adapters,
    split_by_file,
    stdlib_files,
    train,
    train_library_tokenizer,
    utf8,
)

from benchmarks.cnn import IDLE_LOAD, refuse_a_busy_machine

PRODUCERS = [llm.__file__, __file__]
TOKENIZER = {"vocabulary_size": 1024, "training_characters": 2_000_000}
MODEL = {"context": 128, "d_model": 128, "heads": 4, "kv_heads": 2, "depth": 4}
RECIPE = {"steps": 350, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.1}
SEEDS = (0, 1, 2, 3, 4)  # the chosen recipes' runs: seed 0 chooses
CANDIDATES = {  # peak learning rates a factor of about 3 apart
    "peak learning rate 1e-3": {**RECIPE, "lr": 1e-3},
    "peak learning rate 3e-3": RECIPE,
    "peak learning rate 1e-2": {**RECIPE, "lr": 1e-2},
}
CURVE_EVERY = 50  # steps between two validation losses of the curve
CURVE_TOKENS = 16_384  # of the validation part, for the curve (the final: all)
SAMPLES = {  # name -> generate() settings, from the prompt "def "
    "temperature 0.7, top-p 0.95": {"temperature": 0.7, "top_p": 0.95},
    "temperature 1.2, top-p 0.95": {"temperature": 1.2, "top_p": 0.95},
}
SAMPLE_TOKENS = 100
KV_CONTEXT, KV_LENGTHS = 1024, (64, 128, 256, 512, 1024)
KV_REPEATS = 3
FINE_TUNING = {"steps": 150, "batch_size": 16, "weight_decay": 0.0}
LORA = {"rank": 8, "alpha": 16}
FINE_TUNING_CANDIDATES = {  # LoRA's adapters usually want a higher rate
    "LoRA": {"lr 1e-3": 1e-3, "lr 3e-3": 3e-3, "lr 1e-2": 1e-2, "lr 3e-2": 3e-2},
    "full": {"lr 1e-4": 1e-4, "lr 3e-4": 3e-4, "lr 1e-3": 1e-3, "lr 3e-3": 3e-3},
}


def corpus_record(files, root):
    """Names, sizes and one SHA-256 of the files, in order: what was read."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return {
        "files": len(files),
        "bytes": sum(path.stat().st_size for path in files),
        "sha256": digest.hexdigest(),
    }


def stdlib_corpus(root=None, max_files=None):
    """The standard library split by file; its texts and its description."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root)[:max_files]
    parts = split_by_file(files, root)
    texts = {name: read_texts(part) for name, part in parts.items()}
    description = {
        "python": platform.python_version(),
        "root": "sysconfig.get_paths()['stdlib']",
        **{name: corpus_record(part, root) for name, part in parts.items()},
    }
    return texts, description


def compare_tokenizers(texts):
    """The hand-written BPE and tokenizers' on the same training slice."""
    size = TOKENIZER["vocabulary_size"]
    slice_ = "\n".join(texts["train"])[: TOKENIZER["training_characters"]]
    validation = "\n".join(texts["validation"])
    val_bytes = len(utf8(validation))
    start = time.perf_counter()
    ours = BytePairTokenizer.train(slice_, size)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    library = train_library_tokenizer(slice_, size)
    library_seconds = time.perf_counter() - start
    ours_ids = ours.encode(validation)
    assert ours.decode(ours_ids) == validation  # the round trip, on every file
    results = {
        "vocabulary_size": size,
        "training_characters": len(slice_),
        "validation_bytes": val_bytes,
        "by_hand": {
            "tokens_per_byte": len(ours_ids) / val_bytes,
            "train_seconds": ours_seconds,
        },
        "tokenizers": {
            "tokens_per_byte": len(library.encode(validation).ids) / val_bytes,
            "train_seconds": library_seconds,
        },
    }
    print(
        f"tokens per byte: {results['by_hand']['tokens_per_byte']:.3f} by hand,",
        end=" ",
    )
    print(f"{results['tokenizers']['tokens_per_byte']:.3f} tokenizers", flush=True)
    return ours, results


def pretrain(tokenizer, texts, candidates=None):
    """Each candidate from seed 0; the lowest validation loss is chosen; its
    model alone is scored on the test part, once. Returns it and the results."""
    candidates = candidates or CANDIDATES
    started = time.perf_counter()
    ids = {
        name: torch.tensor(tokenizer.encode_documents(part))
        for name, part in texts.items()
    }
    curve_ids = ids["validation"][:CURVE_TOKENS]

    def run(config, seed):
        # --8<-- [start:pretrain]
        torch.manual_seed(seed)
        model = TinyLM(len(tokenizer), **MODEL)
        curve, evaluating = [], []  # (step, validation loss), seconds spent

        def validate_now(step):
            if step % CURVE_EVERY == 0 or step == config["steps"]:
                began = time.perf_counter()
                curve.append([step, evaluate(model, curve_ids)])
                evaluating.append(time.perf_counter() - began)

        start = time.perf_counter()
        losses = train(
            model,
            ids["train"],
            steps=config["steps"],
            batch_size=config["batch_size"],
            lr=config["lr"],
            weight_decay=config["weight_decay"],
            seed=seed,
            after_step=validate_now,
        )
        seconds = time.perf_counter() - start - sum(evaluating)  # training alone
        validation = evaluate(model, ids["validation"])  # every validation token
        # --8<-- [end:pretrain]
        tokens = config["steps"] * config["batch_size"] * MODEL["context"]
        return model, {
            "config": config,
            "validation": validation,
            "train_loss": losses,
            "validation_curve": curve,
            "train_seconds": seconds,
            "tokens_per_second": tokens / seconds,
        }

    tried, models = [], {}
    for name, config in candidates.items():
        models[name], result = run(config, SEEDS[0])
        tried.append({"name": name, **result})
        print(f"  {name}: validation {result['validation']:.3f} nats", flush=True)
    chosen = min(tried, key=lambda t: t["validation"])
    model = models[chosen["name"]]
    seeds = [{"seed": SEEDS[0], "validation": chosen["validation"]}]
    seeds[0]["test"] = evaluate(model, ids["test"])  # once per chosen model
    for seed in SEEDS[1:]:
        again, result = run(chosen["config"], seed)
        test = evaluate(again, ids["test"])
        seeds.append(
            {"seed": seed, "validation": result["validation"], "test": test}
        )
        print(
            f"  seed {seed}: validation {result['validation']:.3f} nats", flush=True
        )
    vocabulary = len(tokenizer)
    samples = []
    for name, settings in SAMPLES.items():
        generator = torch.Generator().manual_seed(0)
        drawn = generate(
            model,
            tokenizer.encode("def "),
            SAMPLE_TOKENS,
            **settings,
            generator=generator,
        )
        samples.append({"settings": name, "text": tokenizer.decode(drawn)})
    results = {
        "model": MODEL,
        "parameters": parameter_count(model),
        "tokens": {name: len(part) for name, part in ids.items()},
        "candidates": tried,
        "chosen": chosen["name"],
        "seeds": seeds,
        "seconds": time.perf_counter() - started,  # encoding, runs, evaluations
        "baseline": {  # bigram counts from the training part
            "validation": bigram_loss(ids["train"], ids["validation"], vocabulary),
            "test": bigram_loss(ids["train"], ids["test"], vocabulary),
        },
        "samples": samples,
    }
    test = sum(run["test"] for run in seeds) / len(seeds)
    print(f"test loss {test:.3f} nats (mean of {len(seeds)} seeds)", flush=True)
    return model, results


def kv_cache_speed(vocabulary_size):
    """Greedy generation from one token up to each of KV_LENGTHS, with and
    without the cache: tokens per second (the fastest of KV_REPEATS runs), and
    whether the tokens are the same."""
    lengths, context = KV_LENGTHS, KV_CONTEXT
    torch.manual_seed(0)
    model = TinyLM(vocabulary_size, **{**MODEL, "context": context})
    generate(model, [0], 16)  # a first run pays one-time costs: not timed
    rows = []
    for length in lengths:
        row = {"length": length}
        outputs = {}
        for use_cache in (True, False):
            times = []  # the fastest of KV_REPEATS runs: the least disturbed
            for _ in range(KV_REPEATS):
                start = time.perf_counter()
                outputs[use_cache] = generate(
                    model, [0], length - 1, use_cache=use_cache
                )
                times.append(time.perf_counter() - start)
            row["cache" if use_cache else "no_cache"] = (length - 1) / min(times)
        row["same_tokens"] = outputs[True] == outputs[False]
        print(
            f"  length {length}: {row['cache']:.0f} tokens/s with the cache,",
            end=" ",
        )
        print(f"{row['no_cache']:.0f} without", flush=True)
        rows.append(row)
    return {"context": context, "repeats": KV_REPEATS, "rows": rows}


def guide_pages(folder=ROOT / "docs"):
    """The guide's Markdown pages split by file, each by a hash of its own
    name (a new page moves no other): about a quarter to validation, a quarter
    to test, the rest to train; their names, sizes and hashes."""
    parts = {"train": [], "validation": [], "test": []}
    for path in sorted(Path(folder).glob("*.md")):
        bucket = hashlib.sha256(path.name.encode()).digest()[0] % 4
        part = "validation" if bucket == 0 else "test" if bucket == 1 else "train"
        parts[part].append(path)
    empty = [name for name, part in parts.items() if not part]
    if empty:
        raise ValueError(f"no page in {empty}: the split needs more pages")
    texts = {name: read_texts(part) for name, part in parts.items()}
    pages = {
        name: [
            {
                "name": path.name,
                "bytes": path.stat().st_size,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
            for path in part
        ]
        for name, part in parts.items()
    }
    return texts, pages


def fine_tune(base, tokenizer, folder=ROOT / "docs", candidates=None):
    """LoRA against full fine-tuning, the same steps from ``base``; for each
    kind, the learning rate chosen on validation (seed 0), run again from the
    other SEEDS, and each of its five models on the test part, once."""
    candidates = candidates or FINE_TUNING_CANDIDATES
    texts, pages = guide_pages(folder)
    ids = {
        name: torch.tensor(tokenizer.encode_documents(part))
        for name, part in texts.items()
    }
    results = {
        "pages": pages,
        "tokens": {name: len(part) for name, part in ids.items()},
        "config": {**FINE_TUNING, **LORA},
        "before": {
            "validation": evaluate(base, ids["validation"]),
            "test": evaluate(base, ids["test"]),
        },
    }

    def run(kind, lr, seed):
        # --8<-- [start:fine-tune]
        torch.manual_seed(seed)  # the adapters' random start
        model = copy.deepcopy(base)
        if kind == "LoRA":
            add_lora(model, LORA["rank"], LORA["alpha"])  # only adapters train
        start = time.perf_counter()
        train(
            model,
            ids["train"],
            steps=FINE_TUNING["steps"],
            batch_size=FINE_TUNING["batch_size"],
            lr=lr,
            weight_decay=FINE_TUNING["weight_decay"],
            seed=seed,
        )
        seconds = time.perf_counter() - start
        validation = evaluate(model, ids["validation"])
        # --8<-- [end:fine-tune]
        return model, validation, seconds

    for kind, rates in candidates.items():
        tried, models = [], {}
        for name, lr in rates.items():
            model, validation, seconds = run(kind, lr, SEEDS[0])
            trainable = sum(
                p.numel() for p in model.parameters() if p.requires_grad
            )
            print(f"  {kind}, {name}: validation {validation:.3f} nats", flush=True)
            tried.append(
                {
                    "name": name,
                    "lr": lr,
                    "validation": validation,
                    "train_seconds": seconds,
                    "trainable": trainable,
                    "parameters": parameter_count(model),
                }
            )
            models[name] = model
        chosen = min(tried, key=lambda t: t["validation"])
        model = models[chosen["name"]]
        seeds = [
            {
                "seed": SEEDS[0],
                "validation": chosen["validation"],
                "test": evaluate(model, ids["test"]),  # once per chosen model
            }
        ]
        for seed in SEEDS[1:]:
            again, validation, _ = run(kind, chosen["lr"], seed)
            test = evaluate(again, ids["test"])
            seeds.append({"seed": seed, "validation": validation, "test": test})
        results[kind] = {
            "candidates": tried,
            "chosen": chosen["name"],
            "seeds": seeds,
        }
        if kind == "LoRA":
            with tempfile.TemporaryDirectory() as folder_:
                path = save_adapters(model, Path(folder_) / "a.pt")
                results[kind]["adapter_bytes"] = path.stat().st_size
                torch.save(base.state_dict(), Path(folder_) / "base.pt")
                results[kind]["base_bytes"] = (
                    (Path(folder_) / "base.pt").stat().st_size
                )
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.llm", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/llm.json"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    load_before = refuse_a_busy_machine(parser, args.record)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    # tokenizers' Rust threads too (read when its thread pool first starts)
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    texts, corpus = stdlib_corpus()
    print(
        "corpus:",
        {name: corpus[name]["files"] for name in texts},
        "files",
        flush=True,
    )
    tokenizer, tokenizers = compare_tokenizers(texts)
    model, training = pretrain(tokenizer, texts)
    metrics = {
        "corpus": corpus,
        "tokenizers": tokenizers,
        "training": training,
        "kv_cache": kv_cache_speed(len(tokenizer)),
        "fine_tuning": fine_tune(model, tokenizer),
        "threads": torch.get_num_threads(),
        "tokenizers_version": importlib.metadata.version("tokenizers"),
        "idle_load": IDLE_LOAD,
    }
    metrics["load_average"] = [load_before, os.getloadavg()[0]]
    metrics["total_seconds"] = time.perf_counter() - started
    print(f"{metrics['total_seconds']:.0f} s in all")
    if args.record:
        print("recorded:", write_record("llm", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
