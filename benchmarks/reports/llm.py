"""What docs/llm.md shows from its recorded run (docs/records/llm.json): hidden page blocks.

Until the record is made, each block shows one note saying so, with the command that makes it."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:record]
    import math
    import textwrap
    from functools import partial

    import matplotlib.pyplot as plt
    from site_tools.figures import open_figures_as_svg
    from site_tools.records import RecordedText, describe_cpu_run, not_recorded_note, record_or_none

    COMMAND = "python -m benchmarks.llm --record"
    record = record_or_none("llm")  # made by the command above
    not_recorded = partial(not_recorded_note, command=COMMAND, takes="about 15 minutes on 2 CPU threads")

    def printable(text):
        """Sampled text as a page can show it: control characters as U+FFFD."""
        return "".join(c if c.isprintable() or c == "\n" else "\ufffd" for c in text)

    def wrapped(out, text, width=84):
        for line in text.splitlines() or [""]:
            for start in range(0, max(len(line), 1), width):
                out(line[start : start + width])

    if record is None:
        print(not_recorded("The provenance of the recorded run"))
    else:
        metrics = record["metrics"]
        out = RecordedText(record)
        out(describe_cpu_run(record))
        corpus = metrics["corpus"]
        out(f"corpus: the standard library of Python {corpus['python']}, split by file:")
        for name in ("train", "validation", "test"):
            part = corpus[name]
            out(f"  {name:10} {part['files']:4} files, {part['bytes'] / 1e6:5.1f} MB, SHA-256 {part['sha256'][:16]}")
        print(out)
    # --8<-- [end:record]

    # --8<-- [start:tokenizers]
    if record is None:
        print(not_recorded("The tokenizers' compression"))
    else:
        tokenizers = metrics["tokenizers"]
        out = RecordedText(record)
        out(
            f"vocabulary {tokenizers['vocabulary_size']:,} each, trained on "
            f"{tokenizers['training_characters']:,} characters of the training files"
        )
        out(f"tokens per byte on the validation files ({tokenizers['validation_bytes']:,} bytes):")
        for name, label in (("by_hand", "BPE by hand"), ("tokenizers", "tokenizers (Rust)")):
            result = tokenizers[name]
            out(
                f"  {label:18} {result['tokens_per_byte']:.3f} tokens per byte, "
                f"trained in {result['train_seconds']:.1f} s"
            )
        print(out)
    # --8<-- [end:tokenizers]

    # --8<-- [start:training]
    if record is None:
        print(not_recorded("The training run"))
    else:
        training = metrics["training"]
        model, tokens = training["model"], training["tokens"]
        out = RecordedText(record)
        out(
            f"model: {training['parameters']:,} parameters; d_model {model['d_model']}, "
            f"{model['depth']} blocks, {model['heads']} heads, {model['kv_heads']} key/value heads,"
        )
        out(f"  context {model['context']}")
        out(f"tokens: {tokens['train']:,} to train, {tokens['validation']:,} to validate, {tokens['test']:,} to test")
        out("recipes tried (seed 0), validation loss in nats per token:")
        for tried in training["candidates"]:
            mark = "  chosen" if tried["name"] == training["chosen"] else ""
            config = tried["config"]
            out(
                f"  {tried['name']:26} {tried['validation']:.3f}  {config['steps']} steps of "
                f"{config['batch_size']}, {tried['train_seconds']:.0f} s, "
                f"{tried['tokens_per_second']:,.0f} tokens/s{mark}"
            )
        baseline = training["baseline"]

        def spread(values):
            """Mean (range) of the seeds' losses, and the mean's perplexity."""
            mean = sum(values) / len(values)
            return f"{mean:.3f} ({min(values):.3f} to {max(values):.3f}; perplexity {math.exp(mean):.1f})"

        seeds = training["seeds"]
        out(f"the chosen recipe, {len(seeds)} seeds ({', '.join(str(run['seed']) for run in seeds)}):")
        out(f"  validation {spread([run['validation'] for run in seeds])}")
        out(f"  test, each model once: {spread([run['test'] for run in seeds])}")
        out(
            f"bigram baseline: validation {baseline['validation']:.3f} "
            f"({math.exp(baseline['validation']):.1f}), test {baseline['test']:.3f} "
            f"({math.exp(baseline['test']):.1f})"
        )
        for drawn in training["samples"]:
            out()
            out(f"--- {drawn['settings']}, after the prompt 'def ':")
            wrapped(out, printable(drawn["text"]))
        print(out)

        fig, ax = plt.subplots(figsize=(6, 3))
        for tried in training["candidates"]:
            losses = tried["train_loss"]
            smooth = [
                sum(losses[max(0, i - 19) : i + 1]) / len(losses[max(0, i - 19) : i + 1]) for i in range(len(losses))
            ]
            line = ax.plot(range(1, len(losses) + 1), smooth, label=f"{tried['name']}, training")[0]
            steps, values = zip(*tried["validation_curve"])
            ax.plot(steps, values, "o--", color=line.get_color(), label=f"{tried['name']}, validation (a slice)")
            ax.plot(steps[-1], tried["validation"], "*", markersize=12, color=line.get_color())
        ax.axhline(baseline["validation"], color="gray", linestyle=":", label="bigram, every validation token")
        ax.set(
            title="Loss while training (★: every validation token)",
            xlabel="step",
            ylabel="nats per token",
        )
        ax.legend(fontsize=7)
        print(open_figures_as_svg())
    # --8<-- [end:training]

    # --8<-- [start:kv-cache]
    if record is None:
        print(not_recorded("The KV cache's speed"))
    else:
        kv = metrics["kv_cache"]
        out = RecordedText(record)
        out(f"greedy generation from one token, untrained model of the same shape, context {kv['context']};")
        out(f"tokens per second, the fastest of {kv['repeats']} runs:")
        out(f"{'tokens':>8} {'with cache':>12} {'without':>12} {'speed-up':>9}  same tokens")
        for row in kv["rows"]:
            out(
                f"{row['length']:8} {row['cache']:10,.0f}/s {row['no_cache']:10,.0f}/s "
                f"{row['cache'] / row['no_cache']:8.1f}x  {row['same_tokens']}"
            )
        print(out)
    # --8<-- [end:kv-cache]

    # --8<-- [start:fine-tuning]
    if record is None:
        print(not_recorded("LoRA against full fine-tuning"))
    else:
        tuning = metrics["fine_tuning"]
        config, pages = tuning["config"], tuning["pages"]
        out = RecordedText(record)
        out(
            "the guide's pages: "
            + ", ".join(f"{len(pages[name])} {name}" for name in ("train", "validation", "test"))
            + f" ({tuning['tokens']['train']:,} training tokens)"
        )
        for name in ("validation", "test"):
            listed = ", ".join(page["name"] for page in pages[name])
            wrapped(out, textwrap.fill(f"  {name}: {listed}", 84, subsequent_indent="    "))
        before = tuning["before"]
        out(
            f"{config['steps']} steps of {config['batch_size']} from the trained model; "
            f"LoRA rank {config['rank']}, alpha {config['alpha']}"
        )
        out(f"before fine-tuning: validation {before['validation']:.3f}, test {before['test']:.3f}")
        out(f"seed 0, each learning rate:{'trainable':>13} {'validation':>11}{'seconds':>8}")
        for kind in ("LoRA", "full"):
            result = tuning[kind]
            for tried in result["candidates"]:
                chosen = " (chosen)" if tried["name"] == result["chosen"] else ""
                share = tried["trainable"] / tried["parameters"]
                label = f"  {kind}, {tried['name']}{chosen}"
                out(f"{label:28}{share:11.1%} {tried['validation']:11.3f}{tried['train_seconds']:8.0f}")
        for kind in ("LoRA", "full"):
            seeds = tuning[kind]["seeds"]
            for part in ("validation", "test"):
                values = [run[part] for run in seeds]
                out(
                    f"{kind}, chosen rate, {len(seeds)} seeds, {part:10}: {sum(values) / len(values):.3f} "
                    f"({min(values):.3f} to {max(values):.3f})"
                )
        lora = tuning["LoRA"]
        out(
            f"adapter file {lora['adapter_bytes'] / 1e3:,.0f} kB; the base model's weights "
            f"{lora['base_bytes'] / 1e3:,.0f} kB"
        )
        out("(losses in nats per token; test: each of the chosen rate's models, once)")
        print(out)
    # --8<-- [end:fine-tuning]
