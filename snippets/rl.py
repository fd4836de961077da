"""Reinforcement learning: the code of docs/rl.md.

An agent on Gymnasium's CartPole-v1 with plain PyTorch: the loop (observations,
actions, rewards, terminated against truncated, seeding), discounted returns by
hand, a policy network, REINFORCE with a learned baseline, the variance of its
gradient estimate with and without the baseline, evaluation on episodes with
their own seeds, and the inputs an agent refuses. Other code may import the
definitions. What the page runs is at the end, at module level, in page order.
"""

# --8<-- [start:loop]
import gymnasium as gym
import torch


def describe(space):
    """A space in a few words: Discrete(2), or Box of shape (4,)."""
    if isinstance(space, gym.spaces.Discrete):
        return str(space)
    return f"{type(space).__name__} of shape {space.shape}"


def has_time_limit(env):
    """Whether a TimeLimit wrapper (which gym.make adds) is among env's."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return True
        env = env.env
    return False


def check_spaces(env, observation_size, action_count):
    """Refuse an environment whose spaces an agent was not built for: it takes
    ``observation_size`` numbers and chooses one of ``action_count`` actions;
    and one without a time limit, whose episodes might never end."""
    if not has_time_limit(env):
        raise ValueError(
            "this environment has no time limit, so an episode might never "
            "end: gym.make(name, max_episode_steps=...) or "
            "gym.wrappers.TimeLimit(env, max_episode_steps) sets one"
        )
    observations, actions = env.observation_space, env.action_space
    if not isinstance(observations, gym.spaces.Box) or observations.shape != (
        observation_size,
    ):
        raise ValueError(
            f"the agent takes observations of {observation_size} numbers; "
            f"this environment's observation space is {describe(observations)}"
        )
    if not isinstance(actions, gym.spaces.Discrete) or actions.n != action_count:
        raise ValueError(
            f"the agent chooses one of {action_count} actions; "
            f"this environment's action space is {describe(actions)}"
        )


def checked_step(env, action):
    """env.step(action), after refusing an action outside the action space."""
    if isinstance(action, torch.Tensor):
        raise ValueError(
            f"action {action!r} is a tensor: env.step takes a Python int "
            "(action.item())"
        )
    if isinstance(action, bool) or not env.action_space.contains(action):
        raise ValueError(
            f"action {action!r} is outside the action space {env.action_space}"
        )
    return env.step(action)


def run_episode(env, choose, seed):
    """One episode from env.reset(seed=seed), each action choose(observation):
    the rewards, and whether it ended terminated or truncated."""
    observation, _ = env.reset(seed=seed)
    rewards = []
    while True:
        action = choose(observation)
        observation, reward, terminated, truncated, _ = checked_step(env, action)
        rewards.append(float(reward))
        if terminated or truncated:
            return rewards, terminated, truncated


# --8<-- [end:loop]


# --8<-- [start:returns]
def check_discount(gamma):
    if not 0 <= gamma <= 1:
        raise ValueError(f"discount gamma={gamma}: a discount is from 0 to 1")


def discounted_returns(rewards, gamma, following=0.0):
    """G_t = r_t + gamma * G_(t+1) for every step t of one episode, from the
    last step back: the return that followed each step. ``following`` is what
    comes after the last step: 0 where the episode terminated."""
    check_discount(gamma)
    returns = []
    for reward in reversed(rewards):
        following = reward + gamma * following
        returns.append(following)
    return torch.tensor(returns[::-1])


def td_target(reward, next_value, terminated, gamma):
    """The one-step target r + gamma * V(next observation), without the second
    term where the episode terminated: after the end there is nothing more. A
    truncated episode was cut by a time limit, not ended: it keeps the term."""
    check_discount(gamma)
    if isinstance(terminated, torch.Tensor):
        terminated = terminated.float()  # a vector environment's flags: bools
    return reward + gamma * next_value * (1.0 - terminated)


# --8<-- [end:returns]


# --8<-- [start:policy]
from torch import nn


class Policy(nn.Module):
    """Observations -> logits of a categorical distribution over the actions."""

    def __init__(self, observation_size=4, action_count=2, hidden=32):
        super().__init__()
        self.observation_size, self.action_count = observation_size, action_count
        self.layers = nn.Sequential(
            nn.Linear(observation_size, hidden),
            nn.Tanh(),
            nn.Linear(hidden, action_count),
        )

    def forward(self, observations):
        return torch.distributions.Categorical(logits=self.layers(observations))


def model_sizes(model):
    """(observation size, action count) that a Policy or a Q-network (an
    nn.Sequential from Linear to Linear) was built for."""
    if isinstance(model, Policy):
        return model.observation_size, model.action_count
    return model[0].in_features, model[-1].out_features


def value_network(observation_size=4, hidden=32):
    """Observations -> one number each: the return expected from there."""
    return nn.Sequential(
        nn.Linear(observation_size, hidden), nn.Tanh(), nn.Linear(hidden, 1)
    )


def sampler(policy):
    """choose(observation) for run_episode: an action drawn from the policy."""

    def choose(observation):
        with torch.no_grad():
            return policy(torch.as_tensor(observation)).sample().item()

    return choose


def greedy(model):
    """choose(observations): the action a policy makes most probable, or the
    one a Q-network ranks first; for one observation or a batch of them."""

    def choose(observations):
        with torch.no_grad():
            scores = model(torch.as_tensor(observations))
        if isinstance(scores, torch.distributions.Categorical):
            scores = scores.logits
        return scores.argmax(-1).tolist()

    return choose


# --8<-- [end:policy]


# --8<-- [start:reinforce]
def collect(env, policy, seed):
    """One episode with actions sampled from ``policy``: its observations and
    actions as tensors, its rewards, and the observation a time limit cut it
    in (None if it terminated: then nothing follows)."""
    observation, _ = env.reset(seed=seed)
    choose = sampler(policy)
    observations, actions, rewards = [], [], []
    terminated = truncated = False
    while not (terminated or truncated):
        action = choose(observation)
        observations.append(torch.as_tensor(observation))
        actions.append(action)
        observation, reward, terminated, truncated, _ = checked_step(env, action)
        rewards.append(float(reward))
    cut_in = None if terminated else observation
    return torch.stack(observations), torch.tensor(actions), rewards, cut_in


def episode_returns(value, rewards, cut_in, gamma):
    """The discounted returns of one episode; where a time limit cut it, the
    return continues past the cut with V of the state it was cut in."""
    following = 0.0
    if cut_in is not None:
        with torch.no_grad():
            following = value(torch.as_tensor(cut_in)).item()
    return discounted_returns(rewards, gamma, following)


def reinforce_loss(policy, observations, actions, advantages):
    """Minus sum_t log pi(a_t | s_t) * A_t: its gradient is the policy-gradient
    estimate (advantages are constants here: no gradient flows into them)."""
    log_probs = policy(observations).log_prob(actions)
    return -(log_probs * advantages.detach()).sum()


def train_reinforce(
    env, policy, value, steps, gamma=0.99, seed=0, lr=1e-2, callback=None
):
    """REINFORCE with a learned baseline: after each episode, one step on the
    policy with advantages G_t - V(s_t), one on V towards G_t; episodes until
    ``steps`` environment steps are done. Returns each training episode's
    total reward; calls callback(steps done so far) after each update."""
    check_spaces(env, policy.observation_size, policy.action_count)
    check_discount(gamma)
    policy_optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    value_optimizer = torch.optim.Adam(value.parameters(), lr=lr)
    totals, done = [], 0
    while done < steps:
        observations, actions, rewards, cut_in = collect(
            env, policy, seed + len(totals)
        )
        returns = episode_returns(value, rewards, cut_in, gamma)
        baseline = value(observations).squeeze(1)
        policy_optimizer.zero_grad()
        reinforce_loss(policy, observations, actions, returns - baseline).backward()
        policy_optimizer.step()
        value_optimizer.zero_grad()
        nn.functional.mse_loss(baseline, returns).backward()
        value_optimizer.step()
        totals.append(sum(rewards))
        done += len(rewards)
        if callback is not None:
            callback(done)
    return totals


def evaluate(env, policy, episodes, seed):
    """Total reward of ``episodes`` greedy episodes, the i-th from seed + i:
    seeds the training never used, so that the episodes are new."""
    check_spaces(env, policy.observation_size, policy.action_count)
    return [
        sum(run_episode(env, greedy(policy), seed + i)[0]) for i in range(episodes)
    ]


# --8<-- [end:reinforce]


# --8<-- [start:variance]
def gradient_estimates(env, policy, value, episodes, gamma, seed):
    """Two policy-gradient estimates per episode (all parameters, flattened),
    from the same episode: with advantages G_t, and with G_t - V(s_t)."""
    without, with_baseline = [], []
    for episode in range(episodes):
        observations, actions, rewards, cut_in = collect(
            env, policy, seed + episode
        )
        returns = episode_returns(value, rewards, cut_in, gamma)
        with torch.no_grad():
            advantages = returns - value(observations).squeeze(1)
        for weights, estimates in ((returns, without), (advantages, with_baseline)):
            policy.zero_grad()
            reinforce_loss(policy, observations, actions, weights).backward()
            grads = [p.grad.flatten() for p in policy.parameters()]
            estimates.append(torch.cat(grads))
    return torch.stack(without), torch.stack(with_baseline)


# --8<-- [end:variance]


# --8<-- [start:dqn]
import copy


class ReplayBuffer:
    """The last ``capacity`` transitions (observation, action, reward, next
    observation, terminated), sampled uniformly at random for each update."""

    def __init__(self, capacity, observation_size, seed=0):
        if capacity < 1:
            raise ValueError(f"capacity={capacity}: a buffer holds at least 1")
        self.observations = torch.zeros(capacity, observation_size)
        self.next_observations = torch.zeros(capacity, observation_size)
        self.actions = torch.zeros(capacity, dtype=torch.long)
        self.rewards = torch.zeros(capacity)
        self.terminated = torch.zeros(capacity)
        self.capacity, self.count = capacity, 0
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return min(self.count, self.capacity)

    def add(self, observation, action, reward, next_observation, terminated):
        slot = self.count % self.capacity  # the oldest is overwritten
        self.observations[slot] = torch.as_tensor(observation)
        self.next_observations[slot] = torch.as_tensor(next_observation)
        self.actions[slot], self.rewards[slot] = action, reward
        self.terminated[slot] = float(terminated)
        self.count += 1

    def sample(self, size):
        if size > len(self):
            raise ValueError(f"a batch of {size} from a buffer holding {len(self)}")
        chosen = torch.randint(len(self), (size,), generator=self.generator)
        return (
            self.observations[chosen],
            self.actions[chosen],
            self.rewards[chosen],
            self.next_observations[chosen],
            self.terminated[chosen],
        )


def q_network(observation_size=4, action_count=2, hidden=64):
    """Observations -> one estimated return per action, Q(s, a)."""
    return nn.Sequential(
        nn.Linear(observation_size, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, action_count),
    )


def epsilon_at(step, start=1.0, end=0.05, decay_steps=5_000):
    """Exploration: the share of random actions, from ``start`` down to
    ``end`` linearly over ``decay_steps`` steps, then constant."""
    if decay_steps < 1:
        raise ValueError(f"decay_steps={decay_steps}: the decay takes at least 1")
    return end + (start - end) * max(0.0, 1 - step / decay_steps)


def epsilon_greedy(network, observation, epsilon, action_space):
    """A random action with probability epsilon, else the one Q ranks first.
    Draws from the action space's generator (seeded by action_space.seed)."""
    if action_space.np_random.random() < epsilon:
        return int(action_space.sample())
    with torch.no_grad():
        return network(torch.as_tensor(observation)).argmax().item()


def dqn_loss(network, target_network, batch, gamma):
    """Huber loss between Q(s, a) and r + gamma * max_a' Q_target(s', a'),
    the second term dropped where the episode terminated (not where a time
    limit truncated it: those transitions are stored as not terminated)."""
    check_discount(gamma)
    observations, actions, rewards, next_observations, terminated = batch
    predicted = network(observations).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        following = target_network(next_observations).max(dim=1).values
    target = td_target(rewards, following, terminated, gamma)
    return nn.functional.huber_loss(predicted, target)


def train_dqn(
    env,
    network,
    steps,
    gamma=0.99,
    seed=0,
    lr=1e-3,
    batch=64,
    buffer_size=10_000,
    start=500,
    sync_every=500,
    decay_steps=5_000,
    callback=None,
):
    """DQN: act epsilon-greedily, store every transition, and from ``start``
    stored on, one Huber-loss step per environment step on a sampled batch;
    the target network is a copy of the network, refreshed every
    ``sync_every`` steps. Returns each finished episode's total reward;
    calls callback(steps done so far) after each step."""
    check_spaces(env, *model_sizes(network))
    check_discount(gamma)
    if not (1 <= batch <= start <= buffer_size and sync_every >= 1):
        raise ValueError(
            f"batch={batch}, start={start}, buffer_size={buffer_size}, "
            f"sync_every={sync_every}: training needs 1 <= batch <= start <= "
            "buffer_size and sync_every >= 1"
        )
    env.action_space.seed(seed)
    target_network = copy.deepcopy(network)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    buffer = ReplayBuffer(buffer_size, model_sizes(network)[0], seed)
    observation, _ = env.reset(seed=seed)
    totals, total = [], 0.0
    for step in range(steps):
        epsilon = epsilon_at(step, decay_steps=decay_steps)
        action = epsilon_greedy(network, observation, epsilon, env.action_space)
        following, reward, terminated, truncated, _ = checked_step(env, action)
        buffer.add(observation, action, reward, following, terminated)
        observation, total = following, total + reward
        if terminated or truncated:
            totals.append(total)
            observation, _ = env.reset(seed=seed + len(totals))
            total = 0.0
        if len(buffer) >= start:
            loss = dqn_loss(network, target_network, buffer.sample(batch), gamma)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if (step + 1) % sync_every == 0:
            target_network.load_state_dict(network.state_dict())
        if callback is not None:
            callback(step + 1)
    return totals


# --8<-- [end:dqn]


# --8<-- [start:ppo]
def generalised_advantages(
    rewards, values, next_values, terminated, truncated, gamma=0.99, lam=0.95
):
    """GAE for a sequence of steps (1-D tensors, one entry per step): the
    one-step errors delta_t = r_t + gamma * V(s_t+1) * (1 - terminated_t) -
    V(s_t), summed backwards with weights (gamma * lam)^k, the sum cut where
    an episode ended (terminated or truncated). lam=0: delta alone; lam=1:
    the discounted return minus V(s_t), bootstrapped with V(s') at a cut."""
    check_discount(gamma)
    if not 0 <= lam <= 1:
        raise ValueError(f"lam={lam}: GAE's lambda is from 0 to 1")
    columns = (rewards, values, next_values, terminated, truncated)
    if len({column.shape for column in columns}) != 1 or rewards.dim() != 1:
        shapes = ", ".join(str(tuple(column.shape)) for column in columns)
        raise ValueError(
            f"GAE takes five 1-D tensors of one length (a value network's "
            f"output needs .squeeze(1)); these have shapes {shapes}"
        )
    ended = (terminated.bool() | truncated.bool()).float()
    deltas = td_target(rewards, next_values, terminated.float(), gamma) - values
    advantages, following = torch.zeros_like(deltas), torch.tensor(0.0)
    for t in reversed(range(len(deltas))):
        following = deltas[t] + gamma * lam * (1 - ended[t]) * following
        advantages[t] = following
    return advantages


def ppo_clip_loss(log_probs, old_log_probs, advantages, clip=0.2):
    """PPO's clipped objective, negated to minimise: the probability ratio
    r = pi_new(a | s) / pi_old(a | s) times the advantage, with r kept within
    [1 - clip, 1 + clip] where moving it further would only help the objective."""
    ratio = (log_probs - old_log_probs.detach()).exp()
    clipped = ratio.clamp(1 - clip, 1 + clip)
    return -torch.minimum(ratio * advantages, clipped * advantages).mean()


def rollout(env, policy, value, steps, state):
    """``steps`` steps with actions sampled from ``policy``, across episodes;
    ``state`` = {"observation", "seed", "total", "totals"} carries on from one
    rollout to the next. Tensors per step, V(s') of the observation that
    followed each step (before any reset: a truncated step bootstraps)."""
    columns = {k: [] for k in ("observations", "actions", "rewards", "following")}
    columns.update(terminated=[], truncated=[])
    choose = sampler(policy)
    for _ in range(steps):
        observation = state["observation"]
        action = choose(observation)
        following, reward, terminated, truncated, _ = checked_step(env, action)
        for key, item in zip(columns, (observation, action, reward, following)):
            columns[key].append(item)
        columns["terminated"].append(float(terminated))
        columns["truncated"].append(float(truncated))
        state["observation"], state["total"] = following, state["total"] + reward
        if terminated or truncated:
            state["totals"].append(state["total"])
            state["seed"] += 1
            state["observation"], _ = env.reset(seed=state["seed"])
            state["total"] = 0.0
    batch = {
        "observations": torch.stack(
            [torch.as_tensor(o) for o in columns["observations"]]
        ),
        "actions": torch.tensor(columns["actions"]),
        "rewards": torch.tensor(columns["rewards"], dtype=torch.float32),
        "terminated": torch.tensor(columns["terminated"]),
        "truncated": torch.tensor(columns["truncated"]),
    }
    following = torch.stack([torch.as_tensor(o) for o in columns["following"]])
    with torch.no_grad():
        batch["values"] = value(batch["observations"]).squeeze(1)
        batch["next_values"] = value(following).squeeze(1)
        batch["log_probs"] = policy(batch["observations"]).log_prob(
            batch["actions"]
        )
    return batch


def train_ppo(
    env,
    policy,
    value,
    steps,
    rollout_steps=512,
    epochs=4,
    minibatch=64,
    gamma=0.99,
    lam=0.95,
    clip=0.2,
    lr=3e-4,
    seed=0,
    callback=None,
):
    """PPO: alternately collect ``rollout_steps`` steps with the current policy
    and take ``epochs`` passes over them in shuffled minibatches, minimising the
    clipped objective plus half the value loss minus 0.01 times the entropy.
    Returns each finished episode's total reward; calls callback(steps done
    so far) after each rollout's update."""
    check_spaces(env, policy.observation_size, policy.action_count)
    check_discount(gamma)
    if minibatch < 2 or epochs < 1:
        raise ValueError(
            f"minibatch={minibatch}, epochs={epochs}: standardising advantages "
            "needs minibatches of at least 2, and training at least 1 epoch"
        )
    if not 0 < rollout_steps <= steps or rollout_steps % minibatch:
        raise ValueError(
            f"rollout_steps={rollout_steps}: needs a multiple of minibatch="
            f"{minibatch}, at least 1 and at most steps={steps}"
        )
    if steps % rollout_steps:
        raise ValueError(
            f"steps={steps}: needs a multiple of rollout_steps={rollout_steps}"
        )
    parameters = list(policy.parameters()) + list(value.parameters())
    optimizer = torch.optim.Adam(parameters, lr=lr)
    updates = steps // rollout_steps
    # the learning rate falls linearly to 0 over the run: late updates small
    schedule = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, updates)
    generator = torch.Generator().manual_seed(seed)
    observation, _ = env.reset(seed=seed)
    state = {"observation": observation, "seed": seed, "total": 0.0, "totals": []}
    for update in range(updates):
        batch = rollout(env, policy, value, rollout_steps, state)
        advantages = generalised_advantages(
            batch["rewards"],
            batch["values"],
            batch["next_values"],
            batch["terminated"],
            batch["truncated"],
            gamma,
            lam,
        )
        targets = advantages + batch["values"]
        for _ in range(epochs):
            order = torch.randperm(rollout_steps, generator=generator)
            for chosen in order.split(minibatch):
                distribution = policy(batch["observations"][chosen])
                log_probs = distribution.log_prob(batch["actions"][chosen])
                part = advantages[chosen]
                part = (part - part.mean()) / (part.std() + 1e-8)
                loss = (
                    ppo_clip_loss(log_probs, batch["log_probs"][chosen], part, clip)
                    + 0.5
                    * nn.functional.mse_loss(
                        value(batch["observations"][chosen]).squeeze(1),
                        targets[chosen],
                    )
                    - 0.01 * distribution.entropy().mean()
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        schedule.step()
        if callback is not None:
            callback((update + 1) * rollout_steps)
    return state["totals"]


# --8<-- [end:ppo]


# --8<-- [start:evaluation]


def evaluate_many(env_id, model, episodes, seed):
    """evaluate() for a policy or a Q-network, with the ``episodes`` episodes
    played side by side in a vector environment: one forward pass per step
    for all of them. Episode i starts from seed + i, as in evaluate()."""
    import numpy as np

    if episodes < 1:
        raise ValueError(f"episodes={episodes}: evaluation needs at least 1")
    one = gym.make(env_id)
    check_spaces(one, *model_sizes(model))
    one.close()
    envs = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
    observations, _ = envs.reset(seed=seed)  # environment i from seed + i
    totals, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    choose = greedy(model)
    while running.any():
        actions = np.array(choose(observations))
        observations, rewards, terminated, truncated, _ = envs.step(actions)
        totals += rewards * running  # an ended one restarts: not counted
        running &= ~(terminated | truncated)
    envs.close()
    return totals.tolist()


# --8<-- [end:evaluation]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.rl` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:loop-demo]
    # one thread: the same sums in the same order, so the same numbers anywhere
    torch.set_num_threads(1)
    env = gym.make("CartPole-v1")
    space = env.observation_space
    print("observations:", describe(space), space.dtype)
    print("  low: ", [round(float(bound), 3) for bound in space.low])
    print("  high:", [round(float(bound), 3) for bound in space.high])
    print("actions:     ", env.action_space)
    print("time limit:  ", env.spec.max_episode_steps, "steps")
    observation, info = env.reset(seed=0)  # the same first state for seed 0
    print("first observation:", observation.round(3))
    env.action_space.seed(0)  # the random actions below: the same every run
    rewards, terminated, truncated = run_episode(
        env, lambda _: env.action_space.sample(), seed=0
    )
    print(f"random actions: {len(rewards)} steps, reward {sum(rewards):.0f},")
    print(f"  terminated={terminated} truncated={truncated}")
    short = gym.make("CartPole-v1", max_episode_steps=5)
    rewards, terminated, truncated = run_episode(short, lambda _: 0, seed=0)
    print(f"with a 5-step limit: {len(rewards)} steps,")
    print(f"  terminated={terminated} truncated={truncated}")
    # --8<-- [end:loop-demo]

    # --8<-- [start:returns-demo]
    rewards = [1.0, 1.0, 1.0, 1.0]
    gamma = 0.9
    returns = discounted_returns(rewards, gamma)
    direct = [
        sum(gamma**k * r for k, r in enumerate(rewards[t:]))
        for t in range(len(rewards))
    ]
    print("returns:", [round(g, 4) for g in returns.tolist()])
    print("direct sums agree:", torch.allclose(returns, torch.tensor(direct)))
    print("fell (terminated):", td_target(1.0, 10.0, terminated=True, gamma=0.9))
    print("time up (truncated):", td_target(1.0, 10.0, terminated=False, gamma=0.9))
    # --8<-- [end:returns-demo]

    # --8<-- [start:policy-demo]
    torch.manual_seed(0)
    policy = Policy()
    distribution = policy(torch.as_tensor(observation))
    print(
        "action probabilities:", [round(p, 3) for p in distribution.probs.tolist()]
    )
    # the log-probability trick: d log pi(a) / d logits = one_hot(a) - pi
    logits = torch.tensor([0.5, -0.5], requires_grad=True)
    action = torch.tensor(1)
    torch.distributions.Categorical(logits=logits).log_prob(action).backward()
    by_hand = torch.nn.functional.one_hot(action, 2) - logits.detach().softmax(0)
    print("autograd:", [round(g, 4) for g in logits.grad.tolist()])
    print("by hand: ", [round(g, 4) for g in by_hand.tolist()])
    # --8<-- [end:policy-demo]

    # --8<-- [start:reinforce-demo]
    torch.manual_seed(0)
    policy, value = Policy(), value_network()
    before = evaluate(env, policy, episodes=10, seed=10_000)
    totals = train_reinforce(env, policy, value, steps=5_000, seed=0)
    after = evaluate(env, policy, episodes=10, seed=10_000)
    print(f"{len(totals)} training episodes, {sum(totals):,.0f} steps in all")
    print(f"  mean reward of the first 10: {sum(totals[:10]) / 10:5.1f}")
    print(f"  mean reward of the last 10:  {sum(totals[-10:]) / 10:5.1f}")
    print(f"greedy, 10 evaluation episodes: {sum(before) / 10:.1f} before,")
    mean = sum(after) / 10
    print(f"  {mean:.1f} after (range {min(after):.0f}-{max(after):.0f})")
    # --8<-- [end:reinforce-demo]

    # --8<-- [start:variance-demo]
    without, with_baseline = gradient_estimates(
        env, policy, value, episodes=20, gamma=0.99, seed=20_000
    )
    spread = {}
    for name, estimates in (("without", without), ("with", with_baseline)):
        spread[name] = estimates.var(dim=0).sum().item()
        print(f"{name:7} baseline: total variance {spread[name]:12,.0f}")
    print(f"the baseline divides it by {spread['without'] / spread['with']:.1f}")
    # --8<-- [end:variance-demo]

    # --8<-- [start:refusals-demo]
    import textwrap

    for attempt in (
        lambda: check_spaces(gym.make("Acrobot-v1"), 4, 2),
        lambda: check_spaces(gym.make("CartPole-v1", max_episode_steps=-1), 4, 2),
        lambda: checked_step(env, 2),
        lambda: discounted_returns([1.0], gamma=1.5),
    ):
        try:
            attempt()
        except ValueError as error:
            print(textwrap.fill(f"ValueError: {error}", 80))
    # --8<-- [end:refusals-demo]

    # --8<-- [start:dqn-demo]
    torch.manual_seed(0)
    network = q_network()
    target_network = copy.deepcopy(network)  # refreshed now and then in training
    buffer = ReplayBuffer(capacity=1_000, observation_size=4, seed=0)
    observation, _ = env.reset(seed=30_000)
    env.action_space.seed(0)
    for step in range(200):
        epsilon = epsilon_at(step, decay_steps=100)
        action = epsilon_greedy(network, observation, epsilon, env.action_space)
        following, reward, fell, cut, _ = checked_step(env, action)
        buffer.add(observation, action, reward, following, fell)  # not cut
        observation = following
        if fell or cut:
            observation, _ = env.reset(seed=30_001 + step)
    print(f"{len(buffer)} transitions stored, {int(buffer.terminated.sum())} ended")
    print(
        "epsilon at steps 0, 50, 100, 150:",
        [round(epsilon_at(s, decay_steps=100), 3) for s in (0, 50, 100, 150)],
    )
    batch = buffer.sample(64)
    loss = dqn_loss(network, target_network, batch, gamma=0.99)
    print(f"Huber loss on one batch: {loss:.4f}")
    # --8<-- [end:dqn-demo]

    # --8<-- [start:ppo-demo]
    # five steps of one episode that terminates at the last
    step_rewards = torch.ones(5)
    values = torch.tensor([4.0, 3.0, 2.0, 1.5, 1.0])
    next_values = torch.tensor([3.0, 2.0, 1.5, 1.0, 0.0])
    ends, cuts = torch.tensor([0, 0, 0, 0, 1]), torch.zeros(5)
    for lam in (0.0, 0.95, 1.0):
        advantages = generalised_advantages(
            step_rewards, values, next_values, ends, cuts, gamma=0.99, lam=lam
        )
        print(f"lambda={lam}:", [round(a, 3) for a in advantages.tolist()])
    minus_values = discounted_returns(step_rewards.tolist(), 0.99) - values
    print("G_t - V(s_t):", [round(a, 3) for a in minus_values.tolist()])
    ratio = torch.tensor([0.5, 1.0, 1.5])  # pi_new / pi_old for three actions
    for advantage in (1.0, -1.0):
        signs = torch.full((3,), advantage)
        loss = ppo_clip_loss(ratio.log(), torch.zeros(3), signs)
        print(f"advantage {advantage:+.0f}: loss {loss:.3f}")
    # --8<-- [end:ppo-demo]

    # --8<-- [start:evaluation-demo]
    one_by_one = evaluate(env, policy, episodes=10, seed=40_000)
    side_by_side = evaluate_many("CartPole-v1", policy, episodes=10, seed=40_000)
    print("one by one:  ", [int(total) for total in one_by_one])
    print("side by side:", [int(total) for total in side_by_side])
    # --8<-- [end:evaluation-demo]

    # --8<-- [start:exercise-returns]
    print(discounted_returns([0.0, 0.0, 1.0], gamma=0.5).tolist())
    print(discounted_returns([0.0, 0.0, 1.0], gamma=1.0).tolist())
    # --8<-- [end:exercise-returns]

    # --8<-- [start:exercise-truncation]
    # three steps with reward 1; the critic says 10 everywhere, and is right
    rewards, values = torch.ones(3), torch.full((3,), 10.0)
    next_values, last_step, none = (
        torch.full((3,), 10.0),
        torch.eye(3)[2],
        torch.zeros(3),
    )
    right = generalised_advantages(
        rewards, values, next_values, none, last_step, 0.9, 1.0
    )
    wrong = generalised_advantages(
        rewards, values, next_values, last_step, none, 0.9, 1.0
    )
    print(
        "cut by the time limit, truncated: ", [round(a, 2) for a in right.tolist()]
    )
    print(
        "the same, counted as terminated:  ", [round(a, 2) for a in wrong.tolist()]
    )
    # --8<-- [end:exercise-truncation]

    # --8<-- [start:exercise-epsilon]
    decay = 10_000  # the recorded DQN's decay_steps
    random_actions = sum(
        epsilon_at(step, decay_steps=decay) for step in range(decay)
    )
    print(
        f"random actions expected in steps 0-{decay - 1:,}: {random_actions:,.0f}"
    )
    later = 50_000 * epsilon_at(decay, decay_steps=decay)
    print(f"and in the 50,000 steps after: {later:,.0f}")
    # of two actions, a random draw is the greedy one half the time
    off_path = random_actions / 2, later / 2
    print(
        f"of those, off the greedy path: {off_path[0]:,.0f} and {off_path[1]:,.0f}"
    )
    # --8<-- [end:exercise-epsilon]
