"""What docs/rl.md shows from its recorded run (docs/records/rl.json): hidden page blocks.

Until the record is made, each block shows one note saying so, with the command that makes it."""

# The hidden blocks of the page, in page order (the page's run executes them as blocks).
if __name__ == "__main__":
    # --8<-- [start:record]
    import textwrap
    from functools import partial

    import matplotlib.pyplot as plt
    from site_tools.figures import open_figures_as_svg
    from site_tools.records import RecordedText, describe_cpu_run, mean_and_range, not_recorded_note, record_or_none

    COMMAND = "python -m benchmarks.rl --record"
    record = record_or_none("rl")  # made by the command above
    not_recorded = partial(not_recorded_note, command=COMMAND, takes="about 10 minutes on 2 CPU threads")

    def by_recipe(runs):
        """The runs grouped by recipe, in the record's order: name -> runs, one per seed."""
        grouped = {}
        for run in runs:
            grouped.setdefault(run["name"], []).append(run)
        return grouped

    if record is None:
        print(not_recorded("The provenance of the recorded run"))
    else:
        metrics = record["metrics"]
        recipes = by_recipe(metrics["runs"])
        out = RecordedText(record)
        out(describe_cpu_run(record))
        out(
            f"gymnasium {metrics['gymnasium']}; two runs at a time, one thread each; "
            f"{metrics['total_seconds'] / 60:.1f} minutes in all"
        )
        for name in recipes:
            recipe = metrics["recipes"][name]
            settings = ", ".join(f"{key}={value:g}" for key, value in recipe["settings"].items())
            out(f"{name} ({recipe['environment']}, {recipe['steps']:,} steps, hidden {recipe['hidden']}):")
            for line in textwrap.wrap(settings, 80):
                out(f"  {line}")
        print(out)
    # --8<-- [end:record]

    # --8<-- [start:curves]
    if record is None:
        print(not_recorded("The learning curves"))
    else:
        fig, axes = plt.subplots(2, 2, figsize=(9, 5.6), sharex=True, squeeze=False)
        for ax, (name, runs) in zip(axes.flat, recipes.items()):
            if len({len(run["curve"]) for run in runs}) != 1:
                raise ValueError(f"{name}: the seeds' curves have different lengths")
            for run in runs:  # each seed thin, in its own colour on every panel; their mean thick
                steps, means = [p[0] for p in run["curve"]], [p[1] for p in run["curve"]]
                ax.plot(steps, means, linewidth=0.9, alpha=0.6, color=f"C{run['seed']}", label=f"seed {run['seed']}")
            points = list(zip(*(run["curve"] for run in runs)))  # one tuple of seeds per evaluation
            steps = [sum(point[0] for point in seeds) / len(seeds) for seeds in points]
            means = [sum(point[1] for point in seeds) / len(seeds) for seeds in points]
            ax.plot(steps, means, color="black", linewidth=1.8, label="mean")
            threshold = runs[0]["threshold"]
            ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8, label="reward_threshold")
            environment = metrics["recipes"][name]["environment"]
            ax.set_title(f"{name} ({environment}, reward_threshold {threshold:g})", fontsize=9)
            ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:.0f}k")
            if threshold > 0:  # CartPole's panels on one scale, so that their dips compare
                ax.set_ylim(0, 510)
        for ax in axes[1]:
            ax.set_xlabel("environment steps of training")
        for ax in axes[:, 0]:
            ax.set_ylabel(f"mean return, {metrics['evaluation_episodes']} episodes")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        print(open_figures_as_svg())
    # --8<-- [end:curves]

    # --8<-- [start:solved]
    if record is None:
        print(not_recorded("The table of results"))
    else:
        out = RecordedText(record)
        out(
            f"evaluated every {metrics['every']:,} steps and at the end, "
            f"{metrics['evaluation_episodes']} greedy episodes each time"
        )
        out(f"{'':16}{'reached':>8}   {'first at (steps)':20}{'confirmed':>10}{'its mean':>10}")
        for name, runs in recipes.items():
            reached = sorted(run["reached_at"] for run in runs if run["reached_at"] is not None)
            confirmed = [run["confirmed_mean"] for run in runs if run["confirmed_mean"] is not None]
            kept = sum(mean >= runs[0]["threshold"] for mean in confirmed)
            steps = " ".join(f"{round(step / 1000)}k" for step in reached) or "-"
            mean = f"{sum(confirmed) / len(confirmed):.0f}" if confirmed else "-"
            out(f"{name:16}{len(reached):>3} of {len(runs)}   {steps:20}{kept:>5} of {len(runs)}{mean:>10}")
        out()
        out(f"{'':16}{'at the end: at the bar, mean (range)':>40}{'training steps/s':>22}")
        for name, runs in recipes.items():
            end = [run["curve"][-1][1] for run in runs]
            kept = sum(value >= runs[0]["threshold"] for value in end)
            at_end = f"{kept} of {len(runs)}, {mean_and_range(end, '{:.0f}')}"
            speed = [run["steps_per_second"] for run in runs]
            out(f"{name:16}{at_end:>40}{sum(speed) / len(speed):>22,.0f}")
        print(out)
    # --8<-- [end:solved]
