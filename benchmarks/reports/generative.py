"""What docs/generative.md shows from its recorded run (docs/records/generative.json): hidden page blocks.

Until the record is made, each block shows one note saying so, with the command that makes it."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:record]
    import base64
    from functools import partial

    import matplotlib.pyplot as plt
    import numpy as np
    from site_tools.figures import open_figures_as_svg
    from site_tools.records import (
        RecordedText,
        describe_cpu_run,
        mean_and_range,
        not_recorded_note,
        record_or_none,
    )

    COMMAND = "python -m benchmarks.generative --data-root data --record"
    record = record_or_none("generative")  # made by the command above
    not_recorded = partial(not_recorded_note, command=COMMAND, takes="about 40 minutes on 2 CPU threads")

    def decoded(text):
        """Images stored as base64 of one byte per pixel, as an N x 28 x 28 array in [0, 1]."""
        return np.frombuffer(base64.b64decode(text), dtype=np.uint8).reshape(-1, 28, 28) / 255

    def mosaic(images, columns=8):
        """Images side by side, ``columns`` per row, with a one-pixel gap."""
        rows = -(-len(images) // columns)
        canvas = np.ones((rows * 29 + 1, columns * 29 + 1))
        for i, image in enumerate(images):
            r, c = divmod(i, columns)
            canvas[1 + r * 29 : 1 + r * 29 + 28, 1 + c * 29 : 1 + c * 29 + 28] = image
        return canvas

    def show_grids(grids, columns=8, height=2.4):
        """One row of mosaics (title -> images), dark ink on white, in one figure."""
        fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids), height), squeeze=False)
        for ax, (title, images) in zip(axes[0], grids.items()):
            # "none": the pixels themselves go into the SVG, not a resampled copy
            ax.imshow(1 - mosaic(images, columns), cmap="gray", vmin=0, vmax=1, interpolation="none")
            ax.set_title(title, fontsize=9)
            ax.axis("off")

    def percents(values):
        """Mean (lowest-highest) of shares, in whole percents."""
        low, high = round(100 * min(values)), round(100 * max(values))
        return f"{100 * sum(values) / len(values):.0f}% ({low}-{high})"

    if record is None:
        print(not_recorded("The provenance of the recorded run"))
    else:
        metrics = record["metrics"]
        out = RecordedText(record)
        out(describe_cpu_run(record))
        out(f"{metrics['total_seconds'] / 60:.0f} minutes in all")
        classifier = metrics["classifier"]
        out(
            f"measuring classifier: {classifier['epochs']} epochs; validation accuracy "
            f"{classifier['validation_accuracy']:.2%}, test {classifier['test_accuracy']:.2%}"
        )
        print(out)
    # --8<-- [end:record]

    # --8<-- [start:autoencoders]
    if record is None:
        print(not_recorded("The autoencoders on MNIST"))
    else:
        result = metrics["autoencoders"]
        seeds = result["bottleneck 2"]
        out = RecordedText(record)
        out(f"validation, {len(seeds)} seeds each: mean (lowest to highest)")
        out(f"{'':15}{'squared error per pixel':>26}")
        out(f"{'mean image':16}{result['mean_image_error']:.4f}")
        for bottleneck in (2, 16):
            runs = result[f"bottleneck {bottleneck}"]
            out(f"{'bottleneck ' + str(bottleneck):15}{mean_and_range([r['error'] for r in runs], '{:.4f}'):>26}")
        out()
        out(f"{'ROC AUC':15}{'flipped digits':>26}{'shifted digits':>26}")
        for bottleneck in (2, 16):
            runs = result[f"bottleneck {bottleneck}"]
            out(
                f"{'bottleneck ' + str(bottleneck):15}"
                f"{mean_and_range([r['auc']['flipped'] for r in runs], '{:.3f}'):>26}"
                f"{mean_and_range([r['auc']['shifted'] for r in runs], '{:.3f}'):>26}"
            )
        print(out)
        shown = {b: decoded(result[f"bottleneck {b}"][0]["reconstructions"]) for b in (2, 16)}
        show_grids(
            {
                "validation digits": shown[2][:8],
                "bottleneck 2 (seed 0)": shown[2][8:],
                "bottleneck 16 (seed 0)": shown[16][8:],
            },
            columns=4,
            height=1.8,
        )
        print(open_figures_as_svg())
    # --8<-- [end:autoencoders]

    # --8<-- [start:vae]
    if record is None:
        print(not_recorded("The VAE on MNIST"))
    else:
        runs = metrics["vae"]
        out = RecordedText(record)
        out(f"validation, nats per image, {len(runs)} seeds: mean (lowest to highest)")
        out(f"  loss            {mean_and_range([r['reconstruction'] + r['kl'] for r in runs], '{:.1f}')}")
        out(f"  reconstruction  {mean_and_range([r['reconstruction'] for r in runs], '{:.1f}')}")
        out(f"  KL              {mean_and_range([r['kl'] for r in runs], '{:.1f}')}")
        out(f"the reconstruction's floor, the grey pixels' own entropy: {runs[0]['floor']:.1f}")
        print(out)
        show_grids(
            {
                "samples, codes from N(0, I) (seed 0)": decoded(runs[0]["grid"])[:16],
                "from one validation digit's code to another's": decoded(runs[0]["interpolation"]),
            }
        )
        print(open_figures_as_svg())
    # --8<-- [end:vae]

    # --8<-- [start:contrastive]
    if record is None:
        print(not_recorded("The probes on MNIST"))
    else:
        runs = metrics["contrastive"]
        out = RecordedText(record)
        out(f"test accuracy, {len(runs)} seeds: mean (lowest to highest)")
        out(f"{'labels per class':18}{'linear probe':>26}{'supervised, same network':>28}")
        for labels in ("10", "100", "all"):
            probe = [r["labels"][labels]["probe_test"] for r in runs]
            supervised = [r["labels"][labels]["supervised_test"] for r in runs]
            out(f"{labels:18}{mean_and_range(probe, '{:.2%}'):>26}{mean_and_range(supervised, '{:.2%}'):>28}")
        decays = [r["labels"][labels]["probe_weight_decay"] for r in runs for labels in r["labels"]]
        counts = ", ".join(f"{decay:.0e} {decays.count(decay)}x" for decay in sorted(set(decays)))
        out(f"probe weight decay chosen on validation: {counts}")
        seconds = [r["pretraining_seconds"] for r in runs]
        out(f"pretraining without labels: {sum(seconds) / len(seconds):.0f} s per seed")
        print(out)
    # --8<-- [end:contrastive]

    # --8<-- [start:gan]
    if record is None:
        print(not_recorded("The two GAN recipes on MNIST"))
    else:
        gan = metrics["gan"]
        out = RecordedText(record)
        out(f"against the validation images, {len(next(iter(gan.values())))} seeds: mean (lowest to highest)")
        out(f"{'recipe':24}{'Fréchet distance':>22}{'commonest class':>24}")
        for name, runs in gan.items():
            out(
                f"{name:24}{mean_and_range([r['validation']['frechet'] for r in runs], '{:.1f}'):>22}"
                f"{mean_and_range([r['validation']['commonest'] for r in runs], '{:.1%}'):>24}"
            )
        out("mean losses per epoch, seed 0 (discriminator / generator):")
        for name, runs in gan.items():
            out(f"  {name}")
            for which, label in ((0, "D"), (1, "G")):
                out(f"    {label}  " + " ".join(f"{epoch[which]:5.2f}" for epoch in runs[0]["losses"]))
        print(out)
        show_grids({f"{name} (seed 0)": decoded(runs[0]["grid"])[:16] for name, runs in gan.items()}, height=1.6)
        print(open_figures_as_svg())
    # --8<-- [end:gan]

    # --8<-- [start:diffusion]
    if record is None:
        print(not_recorded("DDPM and flow matching on MNIST"))
    else:
        runs = metrics["diffusion"]
        out = RecordedText(record)
        for name, seeds in runs.items():
            train = sum(r["seconds"] for r in seeds) / len(seeds)
            draw = sum(r["sampling_seconds"] for r in seeds) / len(seeds)
            out(f"{name:14} training {train:3.0f} s, 1,000 samples {draw:3.0f} s (means of {len(seeds)} seeds)")
        print(out)
        show_grids({f"{name} (seed 0)": decoded(seeds[0]["grid"])[:16] for name, seeds in runs.items()}, height=1.6)
        print(open_figures_as_svg())
    # --8<-- [end:diffusion]

    # --8<-- [start:quality]
    if record is None:
        print(not_recorded("The sample-quality table"))
    else:
        rows = {"real (validation)": metrics["real"], "VAE": metrics["vae"]}
        rows.update({f"GAN, {name}": runs for name, runs in metrics["gan"].items()})
        rows.update(metrics["diffusion"])
        out = RecordedText(record)
        out(f"1,000 images per seed against the 10,000 test images, {len(metrics['real'])} seeds:")
        out("mean (lowest to highest)")
        out(f"{'images':25}{'Fréchet distance':>23}{'commonest class':>17}{'confidence':>14}")
        for name, runs in rows.items():
            measured = [r["samples"] for r in runs]
            out(
                f"{name:25}{mean_and_range([s['frechet'] for s in measured], '{:.1f}'):>23}"
                f"{percents([s['commonest'] for s in measured]):>17}"
                f"{percents([s['confidence'] for s in measured]):>14}"
            )
        print(out)
        fig, ax = plt.subplots(figsize=(7, 2.8))
        width = 0.8 / len(rows)
        for i, (name, runs) in enumerate(rows.items()):
            shares = np.mean([r["samples"]["class_shares"] for r in runs], axis=0)
            ax.bar(np.arange(10) + (i - len(rows) / 2 + 0.5) * width, list(shares), width, label=name)
        ax.set(title="Predicted class of the samples (mean of the seeds)", xlabel="digit", ylabel="share")
        ax.set_xticks(range(10))
        ax.legend(fontsize=6, ncol=2)
        print(open_figures_as_svg())
    # --8<-- [end:quality]
