"""The sequences chapter's two projects (a script, not a test).

    python -m benchmarks.sequences --data-root data            # print them
    python -m benchmarks.sequences --data-root data --record   # and record them

``--record`` writes docs/records/sequences.json. Every recipe is chosen on a
validation split and the test set is read once per run, at the end (the CNN
chapter's ``choose_and_test``): each candidate recipe is trained with seeds 0
and 1, the best on validation is trained with seeds 2 to 6, fresh ones, and
those 5 runs are scored on the test set. MNIST read as sequences: the LSTM over
rows and the transformer over patches, on the MNIST chapter's 55,000/5,000
split, test accuracy and seconds of training. The character-level language
model on the guide's own pages (their names and sizes are recorded), split in
page order into 80% to train, 10% to validate and 10% to test: bits per
character (sliding window) against the unigram and bigram baselines, training
time, and text sampled from the first test run's model. Each run records the
machine's load at its start and end and the process's CPU seconds; --record
refuses to start above a load average of 0.5 and before each run waits while
something else keeps the machine busy (the CNN benchmark's guard).
"""

import argparse
import hashlib
import os
import time
from pathlib import Path

import snippets.cnn as c
import snippets.mnist as m
import snippets.sequences as s
import torch
from site_tools.records import ROOT, write_record
from snippets.cnn import choose_and_test, random_affine
from snippets.mnist import evaluate, fit, preload
from snippets.sequences import (
    CharTransformer,
    PatchTransformer,
    RowLSTM,
    Vocabulary,
    bigram_bits,
    bits_per_character,
    read_pages,
    sample,
    train_language_model,
    unigram_bits,
)

from benchmarks.cnn import IDLE_LOAD, measured, refuse_a_busy_machine

PRODUCERS = [s.__file__, m.__file__, c.__file__, __file__]
VAL_SIZE, SPLIT_SEED = 5000, 0  # the MNIST chapter's validation split
MODELS = {"RowLSTM": RowLSTM, "PatchTransformer": PatchTransformer}
LSTM = {
    "model": "RowLSTM",
    "size": {"hidden": 128},
    "epochs": 8,
    "batch_size": 128,
    "max_lr": 3e-3,
    "label_smoothing": 0.0,
    "augment": None,
}
TRANSFORMER = {
    "model": "PatchTransformer",
    "size": {"d_model": 64, "heads": 4, "depth": 4, "hidden": 128},
    "epochs": 7,
    "batch_size": 128,
    "max_lr": 2e-3,
    "label_smoothing": 0.0,
    "augment": None,
}
MNIST_CANDIDATES = {
    "LSTM over rows": {
        "8 epochs": LSTM,
        "12 epochs": {**LSTM, "epochs": 12},
        "peak learning rate 6e-3": {**LSTM, "max_lr": 6e-3},
    },
    "transformer over patches": {
        "7 epochs": TRANSFORMER,
        "peak learning rate 4e-3": {**TRANSFORMER, "max_lr": 4e-3},
        "with augmentation and label smoothing": {
            **TRANSFORMER,
            "label_smoothing": 0.1,
            "augment": {"degrees": 10, "shift": 0.1, "scale": (0.9, 1.1)},
        },
    },
}
LANGUAGE_MODEL = {
    "context": 128,
    "d_model": 96,
    "heads": 4,
    "depth": 4,
    "batch_size": 32,
    "steps": 600,
    "max_lr": 2e-3,
    "weight_decay": 0.1,
    "clip": 1.0,
}
LM_CANDIDATES = {
    "peak learning rate 2e-3": LANGUAGE_MODEL,
    "peak learning rate 4e-3": {**LANGUAGE_MODEL, "max_lr": 4e-3},
}
SAMPLES = {  # name -> sample() settings, each from the prompt "## "
    "temperature 1": {"temperature": 1.0},
    "temperature 0.8, top-k 10": {"temperature": 0.8, "top_k": 10},
    "temperature 0.8, top-p 0.9": {"temperature": 0.8, "top_p": 0.9},
}


def train_sequence_model(train_part, val_part, config, seed):
    """One run of an MNIST-as-a-sequence recipe; the model and its history."""
    # --8<-- [start:train-mnist]
    torch.manual_seed(seed)
    model = MODELS[config["model"]](**config["size"])  # RowLSTM, PatchTransformer
    augment = None
    if config["augment"]:  # the CNN chapter's random rotation, shift and zoom
        # a stream of its own: fit's batch order is seeded with `seed`
        generator = torch.Generator().manual_seed(10_000 + seed)

        def augment(x):
            return random_affine(x, **config["augment"], generator=generator)

    history = fit(  # validation accuracy after every epoch; never the test set
        model,
        train_part,  # 55,000 images
        val_part,  # the 5,000 held out of the training set
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        max_lr=config["max_lr"],
        label_smoothing=config["label_smoothing"],
        augment=augment,
        seed=seed,
    )
    # --8<-- [end:train-mnist]
    return model, history


def mnist_project(data_root, threads=None):
    """Each model's recipe chosen on validation; its 5 runs on the test set.
    threads: when recording (benchmarks.cnn.measured)."""
    train, test = preload(data_root, train=True), preload(data_root, train=False)
    train_index, val_index = m.split_indices(len(train[1]), VAL_SIZE, SPLIT_SEED)
    train_part = train[0][train_index], train[1][train_index]
    val_part = train[0][val_index], train[1][val_index]

    def run(config, seed):
        model, history = train_sequence_model(train_part, val_part, config, seed)
        seconds = sum(history["epoch_seconds"])
        validation = history["val_accuracy"][-1]
        print(
            f"  seed {seed}: validation {validation:.2%}, {seconds:.0f} s",
            flush=True,
        )
        return {
            "seed": seed,
            "model": model,
            **history,
            "train_seconds": seconds,
            "validation": validation,
        }

    results = {}
    for name, candidates in MNIST_CANDIDATES.items():
        print(f"{name}:", flush=True)
        result = choose_and_test(
            candidates, measured(run, threads), lambda model: evaluate(model, *test)
        )
        first = result["runs"][0]["model"]
        result.update(
            parameters=sum(p.numel() for p in first.parameters()),
            runs=without_models(result["runs"]),
        )
        print(f"  test accuracy: {result['test']}", flush=True)
        results[name] = result
    return results


def without_models(runs):
    return [{k: v for k, v in run.items() if k != "model"} for run in runs]


def corpus(folder=ROOT / "docs"):
    """The guide's pages, in page order: 80% to train, 10% to validate, 10% to
    test; the vocabulary from the training part only (anything else: <unk>)."""
    text = read_pages(folder)  # the pages' texts, joined by newlines
    train_end, val_end = int(0.8 * len(text)), int(0.9 * len(text))
    parts = {
        "train": text[:train_end],
        "validation": text[train_end:val_end],
        "test": text[val_end:],
    }
    vocabulary = Vocabulary(parts["train"])
    ids = {name: vocabulary.encode(part) for name, part in parts.items()}
    unknown = {name: int((ids[name] == 0).sum()) for name in ("validation", "test")}
    return text, vocabulary, ids, unknown


def pages(folder=ROOT / "docs"):
    """The corpus's pages, in read_pages' order: name, characters, SHA-256."""
    return [
        {
            "name": page.name,
            "characters": len(text := page.read_text(encoding="utf-8")),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
        for page in sorted(Path(folder).glob("*.md"))
    ]


def language_model(candidates=None, folder=ROOT / "docs", threads=None):
    """The character transformer, its recipe chosen on validation bits per
    character; its 5 runs on the test part; baselines; samples of the first
    test run's model. threads: when recording (benchmarks.cnn.measured)."""
    candidates = candidates or LM_CANDIDATES
    text, vocabulary, ids, unknown = corpus(folder)

    def run(config, seed):
        # --8<-- [start:train-text]
        torch.manual_seed(seed)
        model = CharTransformer(
            len(vocabulary),
            config["context"],
            config["d_model"],
            config["heads"],
            config["depth"],
        )
        start = time.perf_counter()
        losses = train_language_model(
            model,
            ids["train"],
            steps=config["steps"],
            batch_size=config["batch_size"],
            max_lr=config["max_lr"],
            weight_decay=config["weight_decay"],
            clip=config["clip"],
            seed=seed,
        )
        seconds = time.perf_counter() - start
        validation = bits_per_character(model, ids["validation"])  # sliding window
        # --8<-- [end:train-text]
        print(
            f"  seed {seed}: validation {validation:.3f} bits, {seconds:.0f} s",
            flush=True,
        )
        return {
            "seed": seed,
            "model": model,
            "losses": losses[::10],  # every tenth step's, in nats
            "train_seconds": seconds,
            "validation": validation,
        }

    result = choose_and_test(
        candidates,
        measured(run, threads),
        lambda model: bits_per_character(model, ids["test"]),
        best=min,  # bits per character: lower is better
    )
    model = result["runs"][0]["model"]
    samples = []  # a list: in SAMPLES' order (a record's keys are sorted)
    for name, settings in SAMPLES.items():
        prompt = vocabulary.encode("## ")
        generator = torch.Generator().manual_seed(0)
        generated = sample(model, prompt, 300, **settings, generator=generator)
        samples.append(
            {"settings": name, "text": "## " + vocabulary.decode(generated)}
        )
    config = result["config"]
    seconds = sum(r["train_seconds"] for r in result["runs"]) / len(result["runs"])
    result.update(
        parameters=sum(p.numel() for p in model.parameters()),
        runs=without_models(result["runs"]),
        characters={name: len(part) for name, part in ids.items()},
        unknown_characters=unknown,
        vocabulary=len(vocabulary),
        corpus_sha256=hashlib.sha256(text.encode()).hexdigest(),
        pages=pages(folder),  # in order, joined by newlines
        baselines={  # on the test part, from the training part's counts
            "unigram": unigram_bits(ids["train"], ids["test"], len(vocabulary)),
            "bigram": bigram_bits(ids["train"], ids["test"], len(vocabulary)),
        },
        characters_per_second=config["steps"]
        * config["batch_size"]
        * config["context"]  # predicted characters per step
        / seconds,
        samples=samples,
    )
    print(f"language model, test bits per character: {result['test']}", flush=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sequences", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--data-root", required=True, help="folder holding MNIST/raw"
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/sequences.json"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    load_before = refuse_a_busy_machine(parser, args.record)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    guarded = args.threads if args.record else None  # runs wait while busy
    metrics = {
        "mnist": mnist_project(args.data_root, guarded),
        "language_model": language_model(threads=guarded),
        "threads": torch.get_num_threads(),
        "idle_load": IDLE_LOAD,
    }
    metrics["load_average"] = [load_before, os.getloadavg()[0]]
    metrics["total_seconds"] = time.perf_counter() - started
    print(f"{metrics['total_seconds']:.0f} s in all")
    if args.record:
        print("recorded:", write_record("sequences", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
