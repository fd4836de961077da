"""docs/rl.md: the loop, returns against direct sums, the log-probability trick against its formula, REINFORCE's
training and baseline, the refusals, and what the page claims.

``page`` (the names the page's blocks define), ``printed`` and ``page_run`` come from one run of the page's blocks
in this process (tests/conftest.py).
"""

import gymnasium as gym
import pytest
import torch
from conftest import (
    read_record_or_skip,
    report_without_record,
    test_the_page_prints_what_its_build_shows,  # noqa: F401 (a test)
)

import site_tools.records as records
import snippets.rl as chapter

# --- the loop


def test_cartpole_has_the_spaces_and_limits_the_page_describes():
    env = gym.make("CartPole-v1")
    assert env.observation_space.shape == (4,) and env.action_space.n == 2
    assert env.spec.max_episode_steps == 500 and env.spec.reward_threshold == 475.0


def test_a_seeded_episode_repeats_and_the_flags_are_the_pages(page):
    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    first = chapter.run_episode(env, lambda _: env.action_space.sample(), seed=0)
    env.action_space.seed(0)
    again = chapter.run_episode(env, lambda _: env.action_space.sample(), seed=0)
    assert first == again
    rewards, terminated, truncated = first
    assert terminated and not truncated and len(rewards) < 500
    assert all(reward == 1.0 for reward in rewards)  # CartPole: 1 per step, the last too
    assert page.terminated is False and page.truncated is True  # the 5-step limit's


def test_the_random_episode_the_page_describes(page_run):
    printed = page_run.printed_by("loop-demo")
    assert "random actions: 18 steps, reward 18," in printed  # the prose says 18 steps
    assert "terminated=True truncated=False" in printed


def test_an_environment_without_a_time_limit_is_refused():
    endless = gym.make("CartPole-v1", max_episode_steps=-1)
    with pytest.raises(ValueError, match="no time limit"):
        chapter.check_spaces(endless, 4, 2)
    with pytest.raises(ValueError, match="no time limit"):
        chapter.train_reinforce(endless, chapter.Policy(), chapter.value_network(), steps=10)


def test_a_time_limit_is_found_among_any_wrappers():
    from gymnasium.envs.classic_control import CartPoleEnv

    chapter.check_spaces(gym.wrappers.TimeLimit(CartPoleEnv(), 200), 4, 2)  # no spec, a limit all the same
    chapter.check_spaces(gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1")), 4, 2)
    with pytest.raises(ValueError, match="no time limit.*TimeLimit"):
        chapter.check_spaces(gym.make("CartPole-v1").unwrapped, 4, 2)


def test_a_time_limit_truncates_and_never_terminates():
    short = gym.make("CartPole-v1", max_episode_steps=5)
    rewards, terminated, truncated = chapter.run_episode(short, lambda _: 0, seed=0)
    assert (len(rewards), terminated, truncated) == (5, False, True)


# --- returns and targets


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.99, 1.0])
def test_discounted_returns_equal_the_direct_sums(gamma):
    rewards = torch.randn(30, generator=torch.Generator().manual_seed(1)).tolist()
    returns = chapter.discounted_returns(rewards, gamma)
    direct = [sum(gamma**k * r for k, r in enumerate(rewards[t:])) for t in range(30)]
    assert torch.allclose(returns, torch.tensor(direct), atol=1e-5)


def test_the_target_bootstraps_after_a_truncation_only(page):
    assert chapter.td_target(1.0, 10.0, terminated=True, gamma=0.9) == 1.0
    assert chapter.td_target(1.0, 10.0, terminated=False, gamma=0.9) == 10.0
    assert torch.allclose(page.returns, torch.tensor([3.439, 2.71, 1.9, 1.0]))


# --- the policy


def test_the_log_probability_gradient_is_one_hot_minus_the_probabilities():
    logits = torch.randn(5, requires_grad=True)
    for action in range(5):
        logits.grad = None
        torch.distributions.Categorical(logits=logits).log_prob(torch.tensor(action)).backward()
        expected = torch.nn.functional.one_hot(torch.tensor(action), 5) - logits.detach().softmax(0)
        assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_the_reinforce_loss_gradient_is_the_sum_of_weighted_score_functions():
    torch.manual_seed(0)
    policy = chapter.Policy()
    observations, actions = torch.randn(6, 4), torch.tensor([0, 1, 1, 0, 1, 0])
    advantages = torch.randn(6)
    chapter.reinforce_loss(policy, observations, actions, advantages).backward()
    ours = policy.layers[2].bias.grad.clone()
    probabilities = policy(observations).probs.detach()
    expected = -((torch.nn.functional.one_hot(actions, 2) - probabilities) * advantages[:, None]).sum(0)
    assert torch.allclose(ours, expected, atol=1e-6)


def test_greedy_takes_the_most_probable_action():
    policy = chapter.Policy()
    with torch.no_grad():
        policy.layers[2].bias.copy_(torch.tensor([0.0, 50.0]))
    assert chapter.greedy(policy)(torch.zeros(4).numpy()) == 1


# --- REINFORCE


def test_reinforce_learned_on_the_page(page):
    assert 5_000 <= sum(page.totals) < 5_000 + 500  # the budget, and at most one episode more
    first, last = sum(page.totals[:10]) / 10, sum(page.totals[-10:]) / 10
    assert last > 2 * first
    assert sum(page.after) / 10 > 5 * sum(page.before) / 10
    assert all(total <= 500 for total in page.after)


def test_the_baseline_reduced_the_variance_on_the_page(page):
    assert page.spread["with"] < page.spread["without"] / 2
    parameters = sum(p.numel() for p in page.policy.parameters())
    assert page.without.shape == page.with_baseline.shape == (20, parameters)


def test_both_estimates_come_from_the_same_episode():
    torch.manual_seed(0)
    env, policy, value = gym.make("CartPole-v1"), chapter.Policy(), chapter.value_network()
    state = torch.get_rng_state()
    without, with_baseline = chapter.gradient_estimates(env, policy, value, 1, 0.99, seed=7)
    torch.set_rng_state(state)
    observations, actions, rewards, cut_in = chapter.collect(env, policy, 7)  # the same episode
    returns = chapter.episode_returns(value, rewards, cut_in, 0.99)
    with torch.no_grad():
        advantages = returns - value(observations).squeeze(1)
    for weights, estimate in ((returns, without[0]), (advantages, with_baseline[0])):
        policy.zero_grad()
        chapter.reinforce_loss(policy, observations, actions, weights).backward()
        assert torch.allclose(estimate, torch.cat([p.grad.flatten() for p in policy.parameters()]))


def test_a_cut_episode_returns_continue_with_the_value_of_its_last_state():
    torch.manual_seed(0)
    policy, value = chapter.Policy(), chapter.value_network()
    short = gym.make("CartPole-v1", max_episode_steps=5)
    observations, actions, rewards, cut_in = chapter.collect(short, policy, seed=0)
    assert len(rewards) == 5 and cut_in is not None and observations.shape == (5, 4)
    assert not torch.equal(torch.as_tensor(cut_in), observations[-1])  # the state after the last step
    with torch.no_grad():
        following = value(torch.as_tensor(cut_in)).item()
    returns = chapter.episode_returns(value, rewards, cut_in, 0.9)
    assert returns[-1].item() == pytest.approx(1 + 0.9 * following)
    fell = gym.make("CartPole-v1")
    *_, rewards, cut_in = chapter.collect(fell, policy, seed=0)
    assert cut_in is None and chapter.episode_returns(value, rewards, None, 0.9)[-1].item() == 1.0


def test_reinforce_with_a_baseline_is_seeded():
    env = gym.make("CartPole-v1")
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(chapter.train_reinforce(env, chapter.Policy(), chapter.value_network(), steps=200, seed=3))
    assert runs[0] == runs[1]


# --- refusals


def test_an_environment_with_other_spaces_is_refused():
    with pytest.raises(ValueError, match=r"observations of 4 numbers.*shape \(6,\)"):
        chapter.check_spaces(gym.make("Acrobot-v1"), 4, 2)
    with pytest.raises(ValueError, match=r"one of 2 actions.*Box of shape \(1,\)"):
        chapter.check_spaces(gym.make("MountainCarContinuous-v0"), 2, 2)
    with pytest.raises(ValueError, match="observation space"):
        chapter.train_reinforce(gym.make("Acrobot-v1"), chapter.Policy(), chapter.value_network(), steps=1)


@pytest.mark.parametrize("action", [2, -1, 1.0, "1", True])
def test_an_action_outside_the_action_space_is_refused(action):
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space Discrete"):
        chapter.checked_step(env, action)


def test_a_tensor_action_is_refused_with_the_fix():
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"a tensor: env.step takes a Python int \(action.item\(\)\)"):
        chapter.checked_step(env, torch.tensor(1))
    assert chapter.checked_step(env, torch.tensor(1).item())[0].shape == (4,)


@pytest.mark.parametrize("gamma", [-0.1, 1.01, float("nan")])
def test_a_discount_outside_zero_to_one_is_refused(gamma):
    with pytest.raises(ValueError, match="a discount is from 0 to 1"):
        chapter.discounted_returns([1.0], gamma)
    with pytest.raises(ValueError, match="discount"):
        chapter.td_target(1.0, 1.0, terminated=False, gamma=gamma)


def test_the_page_prints_the_refusals(page_run):
    printed = page_run.printed_by("refusals-demo")
    assert printed.count("ValueError:") == 4 and "Discrete(2)" in printed and "no time limit" in printed


# --- exercises


def test_the_exercise_returns(page_run):
    assert page_run.printed_by("exercise-returns") == "[0.25, 0.5, 1.0]\n[1.0, 1.0, 1.0]\n"


def test_the_exercise_truncation(page):
    assert page.right.tolist() == [0.0, 0.0, 0.0]
    assert torch.allclose(page.wrong, torch.tensor([-7.29, -8.1, -9.0]))


def test_the_exercise_epsilon(page_run):
    expected = sum(chapter.epsilon_at(step, decay_steps=10_000) for step in range(10_000))
    assert expected == pytest.approx(0.525 * 10_000, rel=1e-3)
    printed = page_run.printed_by("exercise-epsilon")
    assert f"{expected:,.0f}" in printed and "after: 2,500" in printed
    assert "off the greedy path: 2,625 and 1,250" in printed


# --- DQN


def test_dqn_refuses_settings_that_would_never_train():
    env = gym.make("CartPole-v1")
    for settings in (
        {"buffer_size": 100, "start": 500},
        {"batch": 600, "start": 500},
        {"batch": 0},
        {"sync_every": 0},
    ):
        with pytest.raises(ValueError, match="1 <= batch <= start <= buffer_size and sync_every >= 1"):
            chapter.train_dqn(env, chapter.q_network(), 10, **settings)


class Recorder(gym.Wrapper):
    """Records the seeds of reset and the flags DQN stores."""

    def __init__(self, env):
        super().__init__(env)
        self.seeds = []

    def reset(self, *, seed=None, options=None):
        self.seeds.append(seed)
        return self.env.reset(seed=seed, options=options)


def test_dqn_stores_terminated_only_and_resets_with_new_seeds(monkeypatch):
    stored = []
    add = chapter.ReplayBuffer.add

    def recording_add(self, observation, action, reward, following, terminated):
        stored.append(terminated)
        return add(self, observation, action, reward, following, terminated)

    monkeypatch.setattr(chapter.ReplayBuffer, "add", recording_add)
    env = Recorder(gym.make("CartPole-v1", max_episode_steps=5))
    torch.manual_seed(0)
    totals = chapter.train_dqn(env, chapter.q_network(), 40, seed=7, start=64, batch=32)
    # five steps are too few for the pole to fall: every episode is cut by the limit, and none stored as ended
    assert len(stored) == 40 and totals == [5.0] * 8 and not any(stored)
    assert env.seeds[:4] == [7, 8, 9, 10] and len(set(env.seeds)) == len(env.seeds)


def test_dqn_refreshes_its_target_network_every_sync_every_steps(monkeypatch):
    seen = []
    loss = chapter.dqn_loss

    def recording_loss(network, target_network, batch, gamma):
        seen.append(torch.equal(network[0].weight, target_network[0].weight))
        return loss(network, target_network, batch, gamma)

    monkeypatch.setattr(chapter, "dqn_loss", recording_loss)
    torch.manual_seed(0)
    chapter.train_dqn(gym.make("CartPole-v1"), chapter.q_network(), 60, start=32, batch=32, sync_every=10)
    # updates from step 32 on (index 31); a refresh after steps 40 and 50 makes the two equal at the next update
    equal_at = [31 + i for i, same in enumerate(seen) if same]
    assert equal_at == [31, 40, 50]


def test_the_trainers_reset_each_episode_with_a_new_seed():
    env = Recorder(gym.make("CartPole-v1", max_episode_steps=20))
    torch.manual_seed(0)
    chapter.train_reinforce(env, chapter.Policy(), chapter.value_network(), 100, seed=7)
    assert env.seeds[:3] == [7, 8, 9] and len(set(env.seeds)) == len(env.seeds)
    env.seeds.clear()
    chapter.train_ppo(env, chapter.Policy(), chapter.value_network(), 128, 128, minibatch=64, seed=7)
    assert env.seeds[:3] == [7, 8, 9] and len(set(env.seeds)) == len(env.seeds)


def test_the_td_target_takes_a_vector_environments_bool_flags():
    target = chapter.td_target(torch.ones(2), torch.full((2,), 10.0), torch.tensor([True, False]), 0.9)
    assert target.tolist() == [1.0, 10.0]


def test_gae_refuses_columns_of_other_shapes():
    column = torch.zeros(4)
    with pytest.raises(ValueError, match=r"squeeze\(1\)\); these have shapes \(4,\), \(4, 1\)"):
        chapter.generalised_advantages(column, torch.zeros(4, 1), column, column, column)


def test_ppo_refuses_minibatches_that_cannot_be_standardised():
    env = gym.make("CartPole-v1")
    for minibatch, epochs in ((1, 4), (0, 4), (64, 0)):
        with pytest.raises(ValueError, match=f"minibatch={minibatch}, epochs={epochs}"):
            chapter.train_ppo(
                env, chapter.Policy(), chapter.value_network(), 128, 128, minibatch=minibatch, epochs=epochs
            )


def test_the_replay_buffer_overwrites_the_oldest_and_samples_what_it_holds():
    buffer = chapter.ReplayBuffer(capacity=3, observation_size=2, seed=0)
    for i in range(5):
        buffer.add([i, i], i % 2, float(i), [i + 1, i + 1], terminated=i == 4)
    assert len(buffer) == 3 and sorted(buffer.rewards.tolist()) == [2.0, 3.0, 4.0]
    observations, actions, rewards, following, terminated = buffer.sample(3)
    assert observations.shape == (3, 2) and set(rewards.tolist()) <= {2.0, 3.0, 4.0}
    assert torch.equal(following[:, 0], observations[:, 0] + 1)
    assert torch.equal(terminated, (rewards == 4.0).float())
    with pytest.raises(ValueError, match="capacity=0"):
        chapter.ReplayBuffer(0, 2)
    with pytest.raises(ValueError, match="a batch of 4 from a buffer holding 3"):
        _full(3).sample(4)


def _full(count):
    buffer = chapter.ReplayBuffer(capacity=10, observation_size=2)
    for _ in range(count):
        buffer.add([0, 0], 0, 0.0, [0, 0], False)
    return buffer


def test_a_decay_of_no_steps_is_refused():
    with pytest.raises(ValueError, match="decay_steps=0"):
        chapter.epsilon_at(0, decay_steps=0)


def test_epsilon_decays_linearly_then_stays():
    assert chapter.epsilon_at(0) == 1.0 and chapter.epsilon_at(5_000) == pytest.approx(0.05)
    assert chapter.epsilon_at(2_500) == pytest.approx(0.525) and chapter.epsilon_at(10**6) == pytest.approx(0.05)


def test_the_dqn_loss_is_the_huber_loss_to_the_bootstrapped_target():
    torch.manual_seed(0)
    network, target_network = chapter.q_network(), chapter.q_network()
    batch = (torch.randn(8, 4), torch.randint(2, (8,)), torch.ones(8), torch.randn(8, 4), torch.tensor([0, 1] * 4))
    observations, actions, rewards, following, terminated = batch
    with torch.no_grad():
        target = rewards + 0.9 * target_network(following).max(1).values * (1 - terminated)
        predicted = network(observations)[torch.arange(8), actions]
        expected = torch.where(
            (predicted - target).abs() < 1, 0.5 * (predicted - target) ** 2, (predicted - target).abs() - 0.5
        ).mean()
    loss = chapter.dqn_loss(network, target_network, batch, gamma=0.9)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in target_network.parameters())  # the target is a constant


def test_dqn_trains_seeded_and_refuses_what_it_was_not_built_for(page):
    env = gym.make("CartPole-v1")
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(chapter.train_dqn(env, chapter.q_network(), steps=300, start=64, sync_every=50))
    assert runs[0] == runs[1] and len(runs[0]) >= 3
    with pytest.raises(ValueError, match="observation space"):
        chapter.train_dqn(gym.make("Acrobot-v1"), chapter.q_network(), steps=1)
    assert len(page.buffer) == 200


# --- GAE and PPO


def test_gae_is_delta_at_lambda_zero_and_the_return_minus_values_at_one():
    generator = torch.Generator().manual_seed(0)
    rewards, values, next_values = (torch.randn(7, generator=generator) for _ in range(3))
    terminated, truncated = torch.zeros(7), torch.zeros(7)
    terminated[-1] = 1
    next_values[-1] = 0.0
    next_values[:-1] = values[1:]  # one episode: V(s_t+1) is the next step's V
    deltas = rewards + 0.9 * next_values * (1 - terminated) - values
    zero = chapter.generalised_advantages(rewards, values, next_values, terminated, truncated, 0.9, 0.0)
    assert torch.allclose(zero, deltas, atol=1e-6)
    one = chapter.generalised_advantages(rewards, values, next_values, terminated, truncated, 0.9, 1.0)
    assert torch.allclose(one, chapter.discounted_returns(rewards.tolist(), 0.9) - values, atol=1e-5)


def test_gae_stops_at_an_episode_end_and_bootstraps_a_truncation():
    rewards, values, next_values = torch.ones(4), torch.zeros(4), torch.full((4,), 10.0)
    truncated = torch.tensor([0, 1, 0, 0])
    advantages = chapter.generalised_advantages(rewards, values, next_values, torch.zeros(4), truncated, 0.5, 1.0)
    assert advantages[1].item() == 6.0  # 1 + 0.5 * 10: bootstrapped, and nothing of step 2 added
    with pytest.raises(ValueError, match="lambda"):
        chapter.generalised_advantages(rewards, values, next_values, torch.zeros(4), truncated, 0.5, 1.5)


def test_the_ppo_loss_clips_only_where_moving_further_would_help():
    log_ratio = torch.tensor([0.5, 1.0, 1.5]).log().requires_grad_()
    loss = chapter.ppo_clip_loss(log_ratio, torch.zeros(3), torch.ones(3))
    assert loss.item() == pytest.approx(-(0.5 + 1.0 + 1.2) / 3)
    loss.backward()
    assert log_ratio.grad[2].item() == 0.0 and log_ratio.grad[0].item() < 0  # clipped above; pushed up below
    assert chapter.ppo_clip_loss(log_ratio, torch.zeros(3), -torch.ones(3)).item() == pytest.approx(
        (0.8 + 1.0 + 1.5) / 3
    )


def test_a_rollout_crosses_episodes_and_keeps_the_value_after_a_truncation():
    torch.manual_seed(0)
    env = gym.make("CartPole-v1", max_episode_steps=5)
    policy, value = chapter.Policy(), chapter.value_network()
    observation, _ = env.reset(seed=0)
    state = {"observation": observation, "seed": 0, "total": 0.0, "totals": []}
    batch = chapter.rollout(env, policy, value, 12, state)
    assert batch["truncated"].tolist() == [0, 0, 0, 0, 1] * 2 + [0, 0]
    assert batch["terminated"].sum() == 0 and state["totals"] == [5.0, 5.0] and state["total"] == 2.0
    # V(s') at a truncation is the value of the state the episode was cut in, not of the next episode's start
    assert not torch.equal(batch["next_values"][4], batch["values"][5])
    assert torch.equal(batch["next_values"][3], batch["values"][4])


def test_ppo_trains_seeded_and_refuses_what_it_was_not_built_for():
    env = gym.make("CartPole-v1")
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        policy, value = chapter.Policy(), chapter.value_network()
        runs.append(chapter.train_ppo(env, policy, value, steps=256, rollout_steps=128, minibatch=32))
    assert runs[0] == runs[1] and len(runs[0]) >= 3
    with pytest.raises(ValueError, match="observation space"):
        chapter.train_ppo(gym.make("Acrobot-v1"), chapter.Policy(), chapter.value_network(), steps=1)


def test_ppo_refuses_rollouts_that_do_not_fit():
    env = gym.make("CartPole-v1")
    for rollout_steps, minibatch, steps, named in (
        (100, 64, 1000, "rollout_steps=100"),
        (0, 64, 1000, "rollout_steps=0"),
        (128, 64, 100, "rollout_steps=128"),
        (128, 64, 1000, "steps=1000: needs a multiple of rollout_steps=128"),
    ):
        with pytest.raises(ValueError, match=named):
            chapter.train_ppo(
                env, chapter.Policy(), chapter.value_network(), steps, rollout_steps=rollout_steps, minibatch=minibatch
            )


def test_the_learning_rate_of_ppo_falls_to_zero(monkeypatch):
    rates = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    torch.manual_seed(0)
    chapter.train_ppo(
        gym.make("CartPole-v1"),
        chapter.Policy(),
        chapter.value_network(),
        512,
        rollout_steps=128,
        minibatch=64,
        lr=1e-3,
    )
    per_update = rates[:: 4 * 2]  # 4 epochs of 2 minibatches per rollout
    assert per_update == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])


@pytest.mark.parametrize("train", ["reinforce", "dqn", "ppo"])
def test_the_callback_sees_the_steps_done(train):
    env, seen = gym.make("CartPole-v1"), []
    torch.manual_seed(0)
    if train == "reinforce":
        totals = chapter.train_reinforce(env, chapter.Policy(), chapter.value_network(), 300, callback=seen.append)
        assert seen[-1] == sum(totals) >= 300 and len(seen) == len(totals)
    elif train == "dqn":
        chapter.train_dqn(env, chapter.q_network(), 100, start=64, callback=seen.append)
        assert seen == list(range(1, 101))
    else:
        chapter.train_ppo(env, chapter.Policy(), chapter.value_network(), 256, 128, minibatch=64, callback=seen.append)
        assert seen == [128, 256]
    assert seen == sorted(seen)


# --- evaluation


def test_side_by_side_evaluation_plays_the_same_episodes(page, page_run):
    env = gym.make("CartPole-v1")
    torch.manual_seed(0)
    policy = chapter.Policy()
    assert chapter.evaluate_many("CartPole-v1", policy, 6, seed=5) == chapter.evaluate(env, policy, 6, seed=5)
    network = chapter.q_network()  # a Q-network: greedy is its argmax
    by_hand = [sum(chapter.run_episode(env, chapter.greedy(network), 5 + i)[0]) for i in range(6)]
    assert chapter.evaluate_many("CartPole-v1", network, 6, seed=5) == by_hand
    assert page.one_by_one == page.side_by_side and len(page.side_by_side) == 10
    lines = page_run.printed_by("evaluation-demo").splitlines()
    assert lines[0].split(":")[1].strip() == lines[1].split(":")[1].strip()


def test_side_by_side_evaluation_refuses_what_the_model_was_not_built_for():
    with pytest.raises(ValueError, match="observation space is Box of shape \\(6,\\)"):
        chapter.evaluate_many("Acrobot-v1", chapter.Policy(), 3, seed=0)
    with pytest.raises(ValueError, match="one of 2 actions; this environment's action space is Discrete\\(3\\)"):
        chapter.evaluate_many("MountainCar-v0", chapter.q_network(2, 2), 3, seed=0)
    with pytest.raises(ValueError, match="episodes=0"):
        chapter.evaluate_many("CartPole-v1", chapter.Policy(), 0, seed=0)


def test_greedy_takes_a_batch_too():
    policy = chapter.Policy()
    with torch.no_grad():
        policy.layers[2].bias.copy_(torch.tensor([50.0, 0.0]))
    assert chapter.greedy(policy)(torch.zeros(3, 4).numpy()) == [0, 0, 0]


# --- the recorded run: python -m benchmarks.rl --record


@pytest.fixture(scope="module")
def record():
    return read_record_or_skip("rl")


def test_the_record_is_current(record):
    records.check_fresh(record)


REPORT = "benchmarks/reports/rl.py"


def test_the_page_says_not_recorded_yet_while_the_record_is_missing(monkeypatch):
    outputs = report_without_record(monkeypatch, REPORT)
    assert len(outputs) == 3 and all("Not recorded yet" in out and "python -m benchmarks.rl" in out for out in outputs)


def runs_of(record, name):
    return [run for run in record["metrics"]["runs"] if run["name"] == name]


def test_the_record_supports_what_the_page_says(record):
    metrics = record["metrics"]
    assert metrics["threads"] == 2 and metrics["total_seconds"] < 15 * 60  # the budget; the note: ~10 minutes
    assert all(run["reached_at"] is not None for run in metrics["runs"]) and len(metrics["runs"]) == 20
    assert all(run["confirmed_mean"] >= run["threshold"] for run in metrics["runs"])  # "20 of 20"
    reinforce = {run["seed"]: run for run in runs_of(record, "REINFORCE")}
    assert min(run["reached_at"] for run in reinforce.values()) == reinforce[4]["reached_at"] == 5063
    assert max(run["reached_at"] for run in reinforce.values()) == reinforce[1]["reached_at"] == 25306
    others = [reinforce[seed]["reached_at"] / reinforce[0]["reached_at"] for seed in (1, 2, 3)]
    assert reinforce[0]["reached_at"] < 5300 and all(3.5 < ratio < 5.5 for ratio in others)  # "four to five times"
    assert all(run["curve"][-1][1] == 500 for run in reinforce.values())

    def fell_below(run):
        """The returns of the evaluations after the first at the bar that were below it."""
        return [p[1] for p in run["curve"] if p[0] > run["reached_at"] and p[1] < run["threshold"]]

    falls = {name: [fell_below(run) for run in runs_of(record, name)] for name in ("REINFORCE", "DQN", "PPO")}
    assert [sum(bool(f) for f in falls[name]) for name in falls] == [3, 5, 5]
    assert round(min(falls["REINFORCE"][4])) == 139 and round(min(falls["PPO"][0])) == 226
    assert [len(run["curve"]) for run in metrics["runs"][::5]] == [20, 12, 21, 21]
    dqn = {run["seed"]: run for run in runs_of(record, "DQN")}
    assert sum(run["curve"][-1][1] >= 475 for run in dqn.values()) == 2
    assert dqn[3]["reached_at"] == 10000 and round(dqn[3]["curve"][-1][1]) == 28
    ppo = runs_of(record, "PPO")
    steady = [i for i in range(len(ppo[0]["curve"])) if all(p[1] >= 475 for run in ppo for p in run["curve"][i:])]
    assert ppo[0]["curve"][steady[0]][0] == 60416
    acrobot = runs_of(record, "PPO on Acrobot")
    assert sorted(run["reached_at"] for run in acrobot)[::4] == [10240, 30720]
    ends = [round(run["curve"][-1][1]) for run in acrobot]
    assert (min(ends), max(ends)) == (-86, -82)


def test_the_ppo_loss_is_the_clipped_objective_plus_half_the_value_loss_minus_the_entropy(monkeypatch):
    """One rollout of 64 steps, one epoch of one minibatch: train_ppo's first gradient equals one computed here."""
    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    policy, value = chapter.Policy(), chapter.value_network()
    grads = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        grads.append([p.grad.clone() for group in self.param_groups for p in group["params"]])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    before = (chapter.copy.deepcopy(policy), chapter.copy.deepcopy(value))
    torch.manual_seed(1)
    chapter.train_ppo(env, policy, value, 64, rollout_steps=64, epochs=1, minibatch=64, seed=5)
    policy, value = before
    torch.manual_seed(1)
    observation, _ = env.reset(seed=5)
    state = {"observation": observation, "seed": 5, "total": 0.0, "totals": []}
    batch = chapter.rollout(env, policy, value, 64, state)
    columns = [batch[key] for key in ("rewards", "values", "next_values", "terminated", "truncated")]
    advantages = chapter.generalised_advantages(*columns, 0.99, 0.95)
    targets = advantages + batch["values"]
    distribution = policy(batch["observations"])
    standardised = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = (distribution.log_prob(batch["actions"]) - batch["log_probs"]).exp()
    clipped = torch.minimum(ratio * standardised, ratio.clamp(0.8, 1.2) * standardised)
    value_loss = ((value(batch["observations"]).squeeze(1) - targets) ** 2).mean()
    loss = -clipped.mean() + 0.5 * value_loss - 0.01 * distribution.entropy().mean()
    loss.backward()
    expected = [p.grad for p in list(policy.parameters()) + list(value.parameters())]
    assert len(grads) == 1 and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0], expected))
