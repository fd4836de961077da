"""The sequences chapter's two projects (a script, not a test).

    python -m benchmarks.sequences --data-root data            # print them
    python -m benchmarks.sequences --data-root data --record   # and record them

``--record`` writes docs/records/sequences.json: MNIST read as sequences (the
LSTM over rows and the transformer over patches, 3 seeds each: test accuracy,
seconds of training), and the character-level language model trained on the
guide's own pages (validation bits per character against the unigram baseline,
training time, and text sampled at two temperatures). Record on an idle machine.
"""

import argparse
import hashlib
import math
import os
import statistics
import time

import snippets.mnist as m
import snippets.sequences as s
import torch
from site_tools.records import ROOT, write_record
from snippets.mnist import fit, preload
from snippets.sequences import (
    CharTransformer,
    PatchTransformer,
    RowLSTM,
    Vocabulary,
    next_character_loss,
    read_pages,
    sample,
    unigram_bits,
)

PRODUCERS = [s.__file__, m.__file__, __file__]
SEEDS = (0, 1, 2)
MNIST_MODELS = {
    "LSTM over rows": {
        "build": lambda: RowLSTM(hidden=128),
        "epochs": 8,
        "batch_size": 128,
        "max_lr": 3e-3,
    },
    "transformer over patches": {
        "build": lambda: PatchTransformer(d_model=64, heads=4, depth=4, hidden=128),
        "epochs": 7,
        "batch_size": 128,
        "max_lr": 2e-3,
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
}


def mnist_project(data_root, epochs_scale=1.0, seeds=SEEDS):
    """Each model over ``seeds``: test accuracy and training seconds."""
    train, test = preload(data_root, train=True), preload(data_root, train=False)
    results = {}
    for name, config in MNIST_MODELS.items():
        runs = []
        for seed in seeds:
            # --8<-- [start:train-mnist]
            torch.manual_seed(seed)
            model = config["build"]()
            history = fit(
                model,
                train,
                test,
                epochs=max(1, round(config["epochs"] * epochs_scale)),
                batch_size=config["batch_size"],
                max_lr=config["max_lr"],
                seed=seed,
            )
            # --8<-- [end:train-mnist]
            runs.append(
                {
                    "seed": seed,
                    "test_accuracy": history["val_accuracy"][-1],
                    "val_accuracy": history["val_accuracy"],
                    "train_seconds": sum(history["epoch_seconds"]),
                }
            )
            print(
                f"{name}, seed {seed}: {runs[-1]['test_accuracy']:.2%}, "
                f"{runs[-1]['train_seconds']:.0f} s"
            )
        accuracies = [run["test_accuracy"] for run in runs]
        results[name] = {
            "config": {k: v for k, v in config.items() if k != "build"},
            "parameters": sum(p.numel() for p in config["build"]().parameters()),
            "runs": runs,
            "mean": statistics.mean(accuracies),
            "min": min(accuracies),
            "max": max(accuracies),
        }
    return results


def corpus(folder=ROOT / "docs"):
    """The guide's pages: the first 90% to train on, the rest to validate."""
    text = read_pages(folder)
    split = int(0.9 * len(text))
    vocabulary = Vocabulary(text)  # every character (the last pages' too)
    return (
        text,
        vocabulary,
        vocabulary.encode(text[:split]),
        vocabulary.encode(text[split:]),
    )


def language_model(config=LANGUAGE_MODEL, seed=0, folder=ROOT / "docs"):
    """The character transformer: bits per character, time, and samples."""
    text, vocabulary, train_ids, val_ids = corpus(folder)
    # --8<-- [start:train-text]
    torch.manual_seed(seed)
    model = CharTransformer(
        len(vocabulary),
        config["context"],
        config["d_model"],
        config["heads"],
        config["depth"],
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["max_lr"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config["max_lr"], total_steps=config["steps"]
    )
    generator = torch.Generator().manual_seed(seed)
    window = config["context"] + 1  # the inputs and, shifted by one, the targets
    start_time = time.perf_counter()
    for _ in range(config["steps"]):
        starts = torch.randint(
            len(train_ids) - window, (config["batch_size"],), generator=generator
        )
        batch = torch.stack([train_ids[i : i + window] for i in starts])
        loss = next_character_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    train_seconds = time.perf_counter() - start_time

    model.eval()
    with torch.no_grad():  # every validation character, in windows of the context
        chunks = val_ids[: len(val_ids) // window * window].reshape(-1, window)
        losses = [next_character_loss(model, part) for part in chunks.split(64)]
        sizes = [len(part) for part in chunks.split(64)]
        val_nats = sum(loss.item() * n for loss, n in zip(losses, sizes)) / sum(
            sizes
        )
    bits = val_nats / math.log(2)
    # --8<-- [end:train-text]
    baseline = unigram_bits(train_ids, val_ids, len(vocabulary))
    samples = {}
    for temperature in (0.5, 1.0):
        prompt = vocabulary.encode("## ")
        ids = sample(
            model, prompt, 300, temperature, torch.Generator().manual_seed(0)
        )
        samples[str(temperature)] = "## " + vocabulary.decode(ids)
    print(
        f"language model: {bits:.2f} bits per character (unigram {baseline:.2f}),"
        f" {train_seconds:.0f} s"
    )
    return {
        "config": config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "characters": len(text),
        "train_characters": len(train_ids),
        "val_characters": len(chunks.flatten()),
        "vocabulary": len(vocabulary),
        "corpus_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "val_bits_per_character": bits,
        "unigram_bits_per_character": baseline,
        "train_seconds": train_seconds,
        "tokens_per_second": config["steps"]
        * config["batch_size"]
        * window
        / train_seconds,
        "samples": samples,
    }


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
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    metrics = {
        "mnist": mnist_project(args.data_root),
        "language_model": language_model(),
        "threads": torch.get_num_threads(),
    }
    metrics["load_average"] = [load_before, os.getloadavg()[0]]
    if args.record:
        print("recorded:", write_record("sequences", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
