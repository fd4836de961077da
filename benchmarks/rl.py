"""The RL chapter's recorded runs (a script, not a test).

    python -m benchmarks.rl            # print them
    python -m benchmarks.rl --record   # and record them

``--record`` writes docs/records/rl.json. Four recipes, five seeds each
(0 to 4): REINFORCE with a baseline, DQN and PPO on CartPole-v1, and PPO on
Acrobot-v1, each the code of snippets/rl.py with the settings in RUNS. The
settings were chosen in runs with seeds 100 and 101, never with these seeds.

After the first update that reaches each multiple of EVERY environment steps,
and after the last, the greedy policy plays EVALUATION_EPISODES evaluation
episodes, episode i from seed EVALUATION_SEED + i, the same at every
checkpoint and in every run; the curve records the steps actually done. Run
seed k trains on episodes with seeds from k * SEED_BLOCK on, below the
evaluation seeds (the tuning runs, seeds 100 and 101 with the code of that
time, evaluated on other seeds again).

A run "reaches the threshold" at the first evaluation whose mean return is at
least the environment's spec.reward_threshold (CartPole-v1: 475, Acrobot-v1:
-100); Gymnasium calls it "the reward threshold for completing the
environment", and OpenAI Gym's old leaderboard averaged it over 100
consecutive episodes. With about 20 evaluations per run, the first to reach
it is the best of many looks at the same episodes: that policy is kept and
plays EVALUATION_EPISODES fresh episodes (from CONFIRMATION_SEED) at the end,
its "confirmed" mean. Training goes on to the end of its budget anyway, so
the curve shows whether the agent keeps what it learned.

Two runs at a time, in two processes of one thread each (2 CPU threads in
all): these networks are too small to gain from a second thread. Training's
steps per second leave out the time spent evaluating. --record refuses to
start above a load average of 0.5 (benchmarks.cnn's guard).
"""

import argparse
import copy
import multiprocessing
import os
import time

import gymnasium as gym
import snippets.rl as rl
import torch
from site_tools.records import write_record

from benchmarks.cnn import IDLE_LOAD, refuse_a_busy_machine

PRODUCERS = [rl.__file__, __file__]
SEEDS = (0, 1, 2, 3, 4)
EVERY = 5_000  # environment steps between evaluations
EVALUATION_EPISODES = 100
SEED_BLOCK = 200_000  # run seed k trains on episode seeds from k * SEED_BLOCK
EVALUATION_SEED = 1_000_000  # above every training episode's seed
CONFIRMATION_SEED = 2_000_000  # fresh episodes for the first policy to reach
RUNS = {
    "REINFORCE": {
        "environment": "CartPole-v1",
        "steps": 100_000,
        "hidden": 32,
        "settings": {"lr": 1e-2, "gamma": 0.99},
    },
    "DQN": {
        "environment": "CartPole-v1",
        "steps": 60_000,
        "hidden": 128,
        "settings": {
            "lr": 5e-4,
            "gamma": 0.99,
            "batch": 64,
            "buffer_size": 100_000,
            "start": 1_000,
            "sync_every": 100,
            "decay_steps": 10_000,
        },
    },
    "PPO": {
        "environment": "CartPole-v1",
        "steps": 102_400,  # 100 rollouts of 1,024 steps
        "hidden": 64,
        "settings": {
            "lr": 3e-4,
            "gamma": 0.99,
            "lam": 0.95,
            "rollout_steps": 1024,
            "epochs": 10,
            "minibatch": 64,
            "clip": 0.2,
        },
    },
    "PPO on Acrobot": {
        "environment": "Acrobot-v1",
        "steps": 102_400,  # 100 rollouts of 1,024 steps
        "hidden": 64,
        "settings": {
            "lr": 3e-4,
            "gamma": 0.99,
            "lam": 0.95,
            "rollout_steps": 1024,
            "epochs": 10,
            "minibatch": 64,
            "clip": 0.2,
        },
    },
}


def evaluate(run, model, seed):
    """Mean, lowest and highest return of the greedy policy of ``model`` on
    EVALUATION_EPISODES episodes from ``seed`` on."""
    returns = rl.evaluate_many(run["environment"], model, EVALUATION_EPISODES, seed)
    return sum(returns) / len(returns), min(returns), max(returns)


def train_one(name, seed):
    """One recipe with one seed: its evaluation curve; when it first reached
    the threshold, and that policy's mean on fresh evaluation episodes; and
    how fast it trained."""
    torch.set_num_threads(1)
    run = RUNS[name]
    env = gym.make(run["environment"])
    sizes = env.observation_space.shape[0], int(env.action_space.n)
    threshold = env.spec.reward_threshold
    torch.manual_seed(seed)
    if name == "DQN":
        model = rl.q_network(*sizes, hidden=run["hidden"])
    else:
        model = rl.Policy(*sizes, hidden=run["hidden"])
        value = rl.value_network(sizes[0], hidden=run["hidden"])
    curve, evaluation_seconds, steps_done, first = [], 0.0, 0, None

    def checkpoint(done):
        """After an update: evaluate if it reached the next multiple of EVERY,
        or the end of the budget; the curve keeps the steps actually done. The
        first policy at the threshold is kept, to be confirmed at the end."""
        nonlocal evaluation_seconds, steps_done, first
        steps_done = done
        if done >= EVERY * (len(curve) + 1) or done >= run["steps"]:
            started = time.perf_counter()
            curve.append([done, *evaluate(run, model, EVALUATION_SEED)])
            evaluation_seconds += time.perf_counter() - started
            if first is None and curve[-1][1] >= threshold:
                first = copy.deepcopy(model)

    started, cpu_started = time.perf_counter(), time.process_time()
    # each run's training episodes from its own block of seeds
    settings = {
        "seed": seed * SEED_BLOCK,
        "callback": checkpoint,
        **run["settings"],
    }
    if name == "DQN":
        totals = rl.train_dqn(env, model, run["steps"], **settings)
    elif name == "REINFORCE":
        totals = rl.train_reinforce(env, model, value, run["steps"], **settings)
    else:
        totals = rl.train_ppo(env, model, value, run["steps"], **settings)
    seconds = time.perf_counter() - started
    reached = next((point[0] for point in curve if point[1] >= threshold), None)
    confirmed = (
        None if first is None else evaluate(run, first, CONFIRMATION_SEED)[0]
    )
    print(
        f"{name:15} seed {seed}: {len(totals):5} training episodes, "
        f"last evaluation {curve[-1][1]:7.1f}, reached at {reached} steps "
        f"(confirmed {confirmed}), {seconds:.0f} s",
        flush=True,
    )
    return {
        "name": name,
        "seed": seed,
        "curve": curve,
        "threshold": threshold,
        "reached_at": reached,
        "confirmed_mean": confirmed,
        "training_episodes": len(totals),
        "steps": steps_done,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "evaluation_seconds": evaluation_seconds,
        "steps_per_second": steps_done / (seconds - evaluation_seconds),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rl", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/rl.json"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--only", nargs="+", choices=list(RUNS), default=list(RUNS))
    args = parser.parse_args(argv)
    if args.record and (args.seeds != list(SEEDS) or args.only != list(RUNS)):
        parser.error("--record runs every recipe with every seed")
    load_before = refuse_a_busy_machine(parser, args.record)
    started = time.perf_counter()
    torch.set_num_threads(2)  # the record's device line: 2 threads in all
    # the longest runs first, so that the two processes finish together
    jobs = sorted(
        ((name, seed) for name in args.only for seed in args.seeds),
        key=lambda job: -RUNS[job[0]]["steps"] * (2 if job[0] == "DQN" else 1),
    )
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(train_one, jobs, chunksize=1)
    results.sort(
        key=lambda result: (list(RUNS).index(result["name"]), result["seed"])
    )
    metrics = {
        "runs": results,
        "recipes": {name: RUNS[name] for name in args.only},
        "every": EVERY,
        "evaluation_episodes": EVALUATION_EPISODES,
        "evaluation_seed": EVALUATION_SEED,
        "confirmation_seed": CONFIRMATION_SEED,
        "seed_block": SEED_BLOCK,
        "gymnasium": gym.__version__,
        "threads": 2,
        "processes": 2,
        "idle_load": IDLE_LOAD,
    }
    metrics["load_average"] = [load_before, os.getloadavg()[0]]
    metrics["total_seconds"] = time.perf_counter() - started
    print(f"{metrics['total_seconds']:.0f} s in all")
    if args.record:
        print("recorded:", write_record("rl", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
