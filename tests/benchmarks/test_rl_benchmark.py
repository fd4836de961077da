"""The RL chapter's benchmark, run small: main() with tiny budgets, in this process (its pool of two processes
replaced by a loop); then the page's report rendered from a record the benchmark writes. The record itself is made by
``python -m benchmarks.rl --record``; tests/test_rl.py checks it against the page."""

import html
import itertools
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from conftest import ROOT, run_sections, snippet_sections

import benchmarks.rl as bench
import site_tools.records as records

pytestmark = pytest.mark.usefixtures("keep_threads")  # tests/conftest.py


def test_the_record_is_produced_by_the_benchmark_and_the_chapter_module():
    produced_by = {str(Path(p).relative_to(ROOT)) for p in bench.PRODUCERS}
    assert produced_by == {"snippets/rl.py", "benchmarks/rl.py"}
    _, hashed = records.code_hash("benchmarks/rl.py")
    for name in ("train_reinforce", "train_dqn", "train_ppo", "rollout", "generalised_advantages", "evaluate_many"):
        assert f"snippets/rl.py:{name}" in hashed


def test_the_recipes_seeds_and_evaluation_the_issue_asks_for():
    assert bench.SEEDS == (0, 1, 2, 3, 4) and bench.EVALUATION_EPISODES == 100
    on_cartpole = [name for name, run in bench.RUNS.items() if run["environment"] == "CartPole-v1"]
    assert on_cartpole == ["REINFORCE", "DQN", "PPO"]
    assert bench.RUNS["PPO on Acrobot"]["environment"] == "Acrobot-v1"
    # each run's training episodes have seeds of their own, below the evaluation seeds: an episode takes a step or more
    longest = max(run["steps"] for run in bench.RUNS.values())
    assert longest < bench.SEED_BLOCK and (max(bench.SEEDS) + 1) * bench.SEED_BLOCK <= bench.EVALUATION_SEED
    assert bench.EVALUATION_SEED + bench.EVALUATION_EPISODES <= bench.CONFIRMATION_SEED


class InProcess:
    """multiprocessing's stand-in: get_context(...).Pool(n) runs starmap here, so that the patches below hold."""

    def get_context(self, method):
        return self

    def Pool(self, processes):  # noqa: N802 (multiprocessing's name)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starmap(self, function, jobs, chunksize=None):
        return list(itertools.starmap(function, jobs))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """main() with budgets of 1,024 steps, an evaluation every 512 of them on 5 episodes, and seeds 0 and 1."""
    with pytest.MonkeyPatch.context() as patch:
        tiny = {}
        for name, run in bench.RUNS.items():
            settings = {**run["settings"]}
            if "rollout_steps" in settings:
                settings["rollout_steps"] = 256
            if "start" in settings:
                settings["start"] = 128
            tiny[name] = {**run, "steps": 1024, "hidden": 8, "settings": settings}
        patch.setattr(bench, "RUNS", tiny)
        patch.setattr(bench, "EVERY", 512)
        patch.setattr(bench, "EVALUATION_EPISODES", 5)
        patch.setattr(bench, "multiprocessing", InProcess())
        metrics = bench.main(["--seeds", "0", "1"])
        records_dir = tmp_path_factory.mktemp("records")
        records.write_record("rl", metrics, bench.PRODUCERS, "cpu", records_dir=records_dir)
    return metrics, records_dir


def test_every_recipe_has_a_run_per_seed_and_its_curve(tiny_run):
    metrics, _ = tiny_run
    assert [(run["name"], run["seed"]) for run in metrics["runs"]] == [
        (name, seed) for name in bench.RUNS for seed in (0, 1)
    ]
    for run in metrics["runs"]:
        steps = [point[0] for point in run["curve"]]
        assert len(steps) == 2 and 512 <= steps[0] < 1024 <= steps[1] == run["steps"]
        assert all(low <= mean <= high for _, mean, low, high in run["curve"])
        reached = [step for step, mean, _, _ in run["curve"] if mean >= run["threshold"]]
        assert run["reached_at"] == (reached[0] if reached else None)
        assert (run["confirmed_mean"] is None) == (run["reached_at"] is None)
        assert run["steps"] >= 1024 and run["steps_per_second"] > 0 and run["evaluation_seconds"] > 0


def test_the_runs_are_seeded(tiny_run):
    metrics, _ = tiny_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "RUNS", {"DQN": {**metrics["recipes"]["DQN"]}})
        patch.setattr(bench, "EVERY", 512)
        patch.setattr(bench, "EVALUATION_EPISODES", 5)
        again = bench.train_one("DQN", 1)
    first = next(run for run in metrics["runs"] if run["name"] == "DQN" and run["seed"] == 1)
    assert again["curve"] == first["curve"] and again["training_episodes"] == first["training_episodes"]


def test_record_refuses_a_partial_run():
    with pytest.raises(SystemExit):
        bench.main(["--record", "--seeds", "0"])


def test_the_report_renders_from_the_record(tiny_run, monkeypatch):
    _, records_dir = tiny_run
    real_read = records.read_record
    monkeypatch.setattr(records, "read_record", lambda name: real_read(name, records_dir))
    report = "benchmarks/reports/rl.py"
    _, outputs = run_sections(report, list(snippet_sections(report)))
    plt.close("all")
    text = "\n".join(html.unescape(re.sub(r"<[^>]+>", "", out)) for out in outputs)
    assert "Not recorded yet" not in text
    assert "PPO on Acrobot" in text and "of 2" in text and "rollout_steps=256" in text
    assert sum(out.count("<svg") for out in outputs) == 1
    for out in outputs:  # the printed lines fit the page's column
        for code in re.findall(r"<code>(.*?)</code>", out, flags=re.S):
            for line in html.unescape(code).splitlines():
                assert len(line) <= 84 or line.startswith("by "), line  # the command: here pytest's


def test_evaluations_use_their_seeds_and_leave_the_training_speed_alone(monkeypatch):
    """A stub evaluate_many that records its seeds and takes a known time: the training's steps per second must
    leave that time out, and the first policy at the threshold is confirmed on the confirmation seeds."""
    seeds, clock = [], [0.0]

    def stub(env_id, model, episodes, seed):
        seeds.append(seed)
        clock[0] += 100.0  # each evaluation "takes" 100 s
        # a return that tells the policies apart: above any threshold, different after each update
        return [1000.0 + model.layers[0].weight.sum().item()] * episodes

    monkeypatch.setattr(bench.rl, "evaluate_many", stub)

    def ticking():  # a clock that moves 1 s per reading, and 100 s per evaluation
        clock[0] += 1.0
        return clock[0]

    monkeypatch.setattr(bench.time, "perf_counter", ticking)
    tiny = {**bench.RUNS["PPO"], "steps": 512, "hidden": 8}
    tiny["settings"] = {**tiny["settings"], "rollout_steps": 256}
    monkeypatch.setattr(bench, "RUNS", {"PPO": tiny})
    monkeypatch.setattr(bench, "EVERY", 256)
    result = bench.train_one("PPO", 3)
    assert seeds == [bench.EVALUATION_SEED] * 2 + [bench.CONFIRMATION_SEED]
    first, last = result["curve"][0][1], result["curve"][-1][1]
    assert result["reached_at"] == 256 and first != last
    assert result["confirmed_mean"] == first  # the policy of the first evaluation at the bar, kept as it was
    assert result["evaluation_seconds"] == 2 * 101.0  # two evaluations of 100 s, each read twice
    assert result["seconds"] - result["evaluation_seconds"] < 10  # the rest: the clock's own ticks
    assert result["steps_per_second"] == 512 / (result["seconds"] - result["evaluation_seconds"])
