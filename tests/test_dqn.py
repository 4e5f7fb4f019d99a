"""Tests for recnb.agents.dqn: each RL pitfall has a test that fails when the bug is put back.

The pitfall tests train the real agent on tiny hand-made batched environments whose Q-values are
known exactly, once with the correct TD target and once with a deliberately broken one; the
correct target must land on the true values and every broken one must miss them.
"""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import platform_for

from recnb.agents.dqn import DQN, DQNConfig, dqn_targets, select_actions, td_target
from recnb.agents.networks import NaiveQNetwork, QNetwork
from recnb.agents.replay import ReplayBuffer
from recnb.data import GENRES
from recnb.platform import PlatformEnv, observe_platform
from recnb.policies import evaluate_policy
from recnb.simulator import SimulatorConfig, UserSimulator, calibrate

# ---------------------------------------------------------------- a tiny batched tabular environment


class TinyEnv:
    """A deterministic tabular MDP stepped for a batch of users, with the simulator's interface.

    ``nxt[s, a]``, ``reward[s, a]``, ``terminal[s, a]``: dynamics; ``available[s]``: the item mask;
    ``obs_of[s]``: what the agent sees (two states may look alike); ``horizon``: the time limit.
    """

    device = torch.device("cpu")

    def __init__(self, nxt, reward, terminal, available, obs_of=None, horizon=10):
        self.nxt, self.reward = torch.tensor(nxt), torch.tensor(reward, dtype=torch.float32)
        self.terminal, self.available = torch.tensor(terminal), torch.tensor(available)
        self.obs_of = torch.arange(len(nxt)) if obs_of is None else torch.tensor(obs_of)
        self.horizon, self.n_items = horizon, self.nxt.shape[1]

    def reset(self, n_users, seed=0):
        self.s, self.t = torch.zeros(n_users, dtype=torch.long), torch.zeros(n_users, dtype=torch.long)

    def reset_where(self, mask):
        self.s[mask], self.t[mask] = 0, 0

    def step(self, a):
        assert bool(self.available[self.s, a].all()), "the agent picked an unavailable item"
        r, term = self.reward[self.s, a], self.terminal[self.s, a]
        self.s, self.t = self.nxt[self.s, a], self.t + 1
        trunc = ~term & (self.t >= self.horizon)
        return None, r, term, trunc, {"clicked": torch.zeros_like(term)}


def tiny_observe(env):
    n = int(env.obs_of.max()) + 1
    B = env.s.shape[0]
    return {
        "user": torch.nn.functional.one_hot(env.obs_of[env.s], n).float(),
        "history": torch.full((B, 1), env.n_items),
        "user_id": torch.zeros(B, dtype=torch.long),
        "mask": env.available[env.s].clone(),
    }


def train_tiny(env, targets=dqn_targets, gamma=0.5, steps=2400, **kw):
    cfg = DQNConfig(
        total_steps=steps,
        n_envs=16,
        buffer_size=1000,
        batch_size=64,
        learning_rate=2e-2,
        gamma=gamma,
        n_step=1,
        tau=0.3,
        epsilon_start=1.0,
        epsilon_end=1.0,
        learning_starts=0,
        embed_dim=16,
        hidden=32,
        updates_per_collect=2,
        item_lr_scale=1.0,
        fatigue_term=False,
        device="cpu",
        **kw,
    )
    agent = DQN(env, cfg, observe=tiny_observe, item_feats=torch.eye(env.n_items), targets=targets)
    agent.train(progress=False)
    return agent


def q_at(agent, env, state):
    env.reset(1)
    env.s[:] = state
    with torch.no_grad():
        return agent.online(tiny_observe(env))[0].numpy()


# ---------------------------------------------------------------- deliberately broken targets


def inverted_done(agent, batch):  # bootstraps only on terminal steps
    return dqn_targets(agent, {**batch, "terminated": ~batch["terminated"]})


def truncation_as_terminal(agent, batch):  # a time limit treated as the user leaving
    return dqn_targets(agent, {**batch, "terminated": batch["ended"]})


def unmasked_target(agent, batch):  # max over items already consumed too
    return dqn_targets(agent, {**batch, "next_mask": torch.ones_like(batch["next_mask"])})


def current_state_target(agent, batch):  # bootstraps from s instead of s'
    obs = {**ReplayBuffer.obs(batch), "mask": batch["next_mask"]}
    with torch.no_grad():
        q = agent.target(obs)
    return td_target(batch["reward"], batch["discount"], batch["terminated"], q, batch["next_mask"])


def close(agent, env, state, expected, tol):
    return np.allclose(q_at(agent, env, state)[: len(expected)], expected, atol=tol)


# one state; item 0: reward 1.5 and stay; item 1: reward 2 and the user leaves; time limit 1 step.
# True Q (gamma 0.5): Q0 = 1.5 + 0.5 * max(Q0, Q1) = 3, Q1 = 2.
def leave_env():
    return TinyEnv(nxt=[[0, 0]], reward=[[1.5, 2.0]], terminal=[[False, True]], available=[[True, True]], horizon=1)


@pytest.mark.parametrize(
    "targets, correct", [(dqn_targets, True), (inverted_done, False), (truncation_as_terminal, False)]
)
def test_termination_mask_and_time_limit(targets, correct):
    env = leave_env()
    agent = train_tiny(env, targets)
    assert close(agent, env, 0, [3.0, 2.0], 0.25) == correct, q_at(agent, env, 0)


# two states X -> Y -> X with rewards 1, 0: Q(X) = 1 / (1 - 0.25) = 4/3, Q(Y) = 2/3.
# Bootstrapping from the current state gives Q(X) = 2, Q(Y) = 0 instead.
@pytest.mark.parametrize("targets, correct", [(dqn_targets, True), (current_state_target, False)])
def test_target_uses_next_state(targets, correct):
    env = TinyEnv(
        nxt=[[1], [0]], reward=[[1.0], [0.0]], terminal=[[False], [False]], available=[[True], [True]], horizon=4
    )
    agent = train_tiny(env, targets)
    assert (close(agent, env, 0, [4 / 3], 0.15) and close(agent, env, 1, [2 / 3], 0.15)) == correct, (
        q_at(agent, env, 0),
        q_at(agent, env, 1),
    )


# item 0 pays 10 once and is then consumed; item 1 pays 1 forever. Both states look alike, so only
# the mask tells them apart: masked, Q1 = 1 + 0.5 Q1 = 2 and Q0 = 10 + 0.5 Q1 = 11; unmasked, the
# consumed item 0 leaks into the target: Q1 = 1 + 0.5 Q0 -> Q0 = 14, Q1 = 8.
@pytest.mark.parametrize("targets, correct", [(dqn_targets, True), (unmasked_target, False)])
def test_target_masks_consumed_items(targets, correct):
    env = TinyEnv(
        nxt=[[1, 1], [1, 1]],
        reward=[[10.0, 0.0], [0.0, 1.0]],
        terminal=[[False, False]] * 2,
        available=[[True, False], [False, True]],
        obs_of=[0, 0],
        horizon=5,
    )
    agent = train_tiny(env, targets, steps=3200)
    assert close(agent, env, 0, [11.0, 2.0], 0.5) == correct, q_at(agent, env, 0)


def test_double_dqn_trains_to_the_same_values():
    env = leave_env()
    agent = train_tiny(env, double_dqn=False)
    assert close(agent, env, 0, [3.0, 2.0], 0.25), q_at(agent, env, 0)


# ---------------------------------------------------------------- the rules as pure functions


def test_td_target_by_hand():
    q_next = torch.tensor([[5.0, 1.0, 2.0], [5.0, 1.0, 2.0], [5.0, 1.0, 2.0], [5.0, 1.0, 2.0]])
    mask = torch.tensor([[True, True, True], [False, True, True], [False, True, True], [False, False, False]])
    term = torch.tensor([False, False, True, False])
    out = td_target(torch.ones(4), torch.full((4,), 0.5), term, q_next, mask)
    assert out.tolist() == [3.5, 2.0, 1.0, 1.0]  # masked max, no bootstrap when terminated or nothing left
    online = torch.tensor([[0.0, 9.0, 0.0]] * 4)  # Double DQN: online picks item 1, target values it
    assert td_target(torch.ones(4), torch.full((4,), 0.5), term, q_next, mask, online).tolist() == [1.5, 1.5, 1.0, 1.0]


def test_exploration_and_greedy_choice_are_masked():
    gen = torch.Generator().manual_seed(0)
    mask = torch.zeros(500, 6, dtype=torch.bool)
    mask[:, [1, 4]] = True
    q = torch.arange(6.0).expand(500, 6)  # item 5 best, but unavailable
    for eps in (0.0, 0.5, 1.0):
        picks = select_actions(q, mask, eps, gen)
        assert bool(mask.gather(1, picks[:, None]).all())
    assert set(select_actions(q, mask, 1.0, gen).tolist()) == {1, 4}  # both available items explored
    assert set(select_actions(q, mask, 0.0, gen).tolist()) == {4}


def test_n_step_returns_stop_at_episode_end():
    buf = ReplayBuffer(capacity=10, n_envs=1, user_dim=1, history_len=1, n_items=2)

    def obs(v):
        return {
            "user": torch.tensor([[float(v)]]),
            "history": torch.zeros(1, 1, dtype=torch.long),
            "user_id": torch.zeros(1, dtype=torch.long),
            "mask": torch.ones(1, 2, dtype=torch.bool),
        }

    steps = [(1.0, False, False), (2.0, False, True), (4.0, False, False), (8.0, True, False), (16.0, False, False)]
    for t, (r, term, trunc) in enumerate(steps):  # episode 1 truncated at t=1, episode 2 terminated at t=3
        buf.add(obs(t), torch.tensor([0]), torch.tensor([r]), torch.tensor([term]), torch.tensor([trunc]), obs(t + 1))
    batch = buf.sample(200, n_step=3, gamma=0.5, generator=torch.Generator().manual_seed(0))
    by_start = {
        int(u): (float(r), float(d), bool(te), float(nu))
        for u, r, d, te, nu in zip(
            batch["user"][:, 0], batch["reward"], batch["discount"], batch["terminated"], batch["next_user"][:, 0]
        )
    }
    assert by_start[0] == (1 + 0.5 * 2, 0.25, False, 2.0)  # cut at the truncation, still bootstraps
    assert by_start[1] == (2.0, 0.5, False, 2.0)
    assert by_start[2] == (4 + 0.5 * 8, 0.25, True, 4.0)  # cut at the termination: no bootstrap


# ---------------------------------------------------------------- networks, configs, checkpoints


def test_qnetwork_scores_all_and_new_items():
    feats = torch.randn(7, 5)
    net = QNetwork(feats, user_dim=3, embed_dim=4, hidden=8)
    torch.nn.init.normal_(net.item_tower.skip.weight)
    obs = {"user": torch.randn(2, 3), "history": torch.tensor([[0, 7], [7, 7]]), "immediate": torch.rand(2, 7)}
    q = net(obs)
    assert q.shape == (2, 7)
    assert torch.allclose(net(obs, torch.tensor([3, 5])), q[[0, 1], [3, 5]], atol=1e-5)
    emb, bias = net.items(torch.randn(4, 5))  # four brand-new items, scored from features alone
    assert emb.shape == (4, 4) and bias.shape == (4,)
    assert NaiveQNetwork(3, 7)({"user_id": torch.tensor([0, 2])}).shape == (2, 7)
    linear = QNetwork(feats, user_dim=3, embed_dim=4, hidden=8, linear_items=True)
    assert torch.allclose(linear(obs), obs["immediate"], atol=1e-6)  # starts as greedy: Q = immediate reward


def test_fatigue_price_scores_genre_exposure():
    share = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    net = QNetwork(
        torch.randn(3, 4),
        user_dim=4,
        embed_dim=4,
        hidden=8,
        linear_items=True,
        genre_share=share,
        exposure_cols=slice(1, 3),
    )
    obs = {"user": torch.tensor([[0.0, 2.0, 0.0, 1.0]]), "history": torch.tensor([[3]]), "immediate": torch.rand(1, 3)}
    assert torch.allclose(net(obs), obs["immediate"], atol=1e-6)  # the price starts at 0: still greedy
    torch.nn.init.constant_(net.fatigue.bias, -1.0)  # c = d = -1: Q -= exposure * (immediate + 1)
    exposure = torch.tensor([[2.0, 1.0, 0.0]])  # user exposure [2, 0] spread over each item's genres
    assert torch.allclose(net(obs), obs["immediate"] - exposure * (obs["immediate"] + 1), atol=1e-6)
    assert torch.allclose(net(obs, torch.tensor([1])), net(obs)[:, 1], atol=1e-6)
    with pytest.raises(ValueError, match="exposure_cols"):
        QNetwork(torch.randn(3, 4), user_dim=4, genre_share=share, exposure_cols=slice(1, 2))


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("gamma", 1.0, "gamma"),
        ("gamma", -0.1, "gamma"),
        ("epsilon_end", 1.5, "epsilon_end"),
        ("tau", 0.0, "tau"),
        ("n_step", 0, "n_step"),
        ("buffer_size", 10, "buffer_size"),
        ("network", "mlp", "network"),
        ("device", "tpu", "device"),
        ("batch_size", 2.5, "batch_size"),
        ("double_dqn", "yes", "double_dqn"),
        ("precision", "fp64", "precision"),
        ("eval_every", -1, "eval_every"),
        ("eval_users", 1, "eval_users"),
        ("seed", True, "seed"),
    ],
)
def test_invalid_configs_raise_clear_errors(field, value, match):
    with pytest.raises(ValueError, match=match):
        DQNConfig(**{field: value})


def synthetic_simulator(n_users=30, n_items=40, seed=0, **config):
    rng = np.random.default_rng(seed)
    rows = [
        (u + 1, int(i) + 1, int(rng.integers(1, 6)), 100 * u + k)
        for u in range(n_users)
        for k, i in enumerate(rng.choice(n_items, 8, replace=False))
    ]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame(
        {"item_id": np.arange(1, n_items + 1), "genres": [[GENRES[1 + i % 5]] for i in range(n_items)]}
    )
    sim = UserSimulator(calibrate(ratings, items, dim=4, seed=seed), SimulatorConfig(horizon=20, **config))
    return PlatformEnv(sim, platform_for(sim, seed))


def test_trains_on_the_simulator_and_its_policy_evaluates():
    sim = synthetic_simulator()
    cfg = DQNConfig(total_steps=640, n_envs=32, buffer_size=640, batch_size=32, learning_starts=64, device="cpu")
    agent = DQN(sim, cfg)
    log = agent.train(progress=False)
    assert agent.env_steps == 640 and agent.updates > 0 and len(log["return"]) > 0
    obs = observe_platform(sim)
    assert set(obs) == {"user", "history", "user_id", "mask", "immediate"} and obs["immediate"].shape == (32, 40)
    result = evaluate_policy(sim, agent.policy(), n_users=16, seed=1)
    assert result.policy == "dqn" and result.returns.shape == (16,)
    # checkpoints (save, load, resume, fingerprint) are tested in tests/test_checkpoints.py


def test_fatigue_term_needs_the_platform_observation():
    env = TinyEnv([[0]], [[0.0]], [[True]], [[True]])
    with pytest.raises(ValueError, match="fatigue_term=False"):
        DQN(env, DQNConfig(device="cpu", n_envs=4, buffer_size=64), observe=tiny_observe, item_feats=torch.eye(1))


def test_simulator_on_another_device_is_refused():
    sim = synthetic_simulator()
    sim.device = torch.device("meta")
    with pytest.raises(ValueError, match="device"):
        DQN(sim, DQNConfig(device="cpu"))


def test_one_definition_of_an_unavailable_items_score():
    from recnb import policies
    from recnb.agents import dqn

    assert dqn.NEG is policies.NEG


# ---------------------------------------------------------------- tracking hook


def test_train_logs_the_curves_and_the_hparams(tmp_path):
    from recnb import tracking

    sim = synthetic_simulator()
    cfg = DQNConfig(
        total_steps=640, n_envs=32, buffer_size=640, batch_size=32, learning_starts=64, device="cpu", log_every=2
    )
    agent = DQN(sim, cfg)
    with tracking.RunLogger(tmp_path / "dqn") as logger:
        log = agent.train(progress=False, logger=logger)
    frame = tracking.read_scalars(tmp_path)
    curves = {"train/loss", "train/epsilon", "train/mean_q", "train/lr", "rollout/return", "rollout/episode_length"}
    assert curves <= set(frame.tag)
    returns = frame[frame.tag == "rollout/return"]
    assert returns.step.tolist() == log["step"] and returns.value.tolist() == pytest.approx(log["return"], rel=1e-6)
    assert frame[frame.tag == "final/updates"].value.tolist() == [agent.updates]


def test_an_exception_in_the_logger_stops_training():
    from recnb.tracking import CallbackLogger

    class Stop(Exception):
        pass

    def stop(step, scalars):
        raise Stop

    env = leave_env()
    cfg = DQNConfig(total_steps=640, n_envs=16, buffer_size=200, batch_size=16, learning_starts=0, device="cpu")
    agent = DQN(
        env, replace(cfg, n_step=1, fatigue_term=False, log_every=1), observe=tiny_observe, item_feats=torch.eye(2)
    )
    with pytest.raises(Stop):
        agent.train(progress=False, logger=CallbackLogger(stop))
    assert agent.env_steps == 16  # stopped at the first logged point


# ---------------------------------------------------------------- mixed precision


def _short_run(precision, seed=0):
    """640 steps on the synthetic simulator: per-update losses, Q on fixed users, the forward passes' precision."""
    sim = synthetic_simulator()
    cfg = DQNConfig(
        total_steps=640, n_envs=32, buffer_size=640, batch_size=32, learning_starts=64, device="cpu", seed=seed
    )
    agent = DQN(sim, replace(cfg, precision=precision))
    dtypes, losses, update = set(), [], agent.update

    def record_dtype(module, inputs, output):  # the autocast dtype every forward pass runs under
        dtypes.add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)

    def record_loss():
        loss, q = update()
        losses.append(loss)
        return loss, q

    agent.online.register_forward_hook(record_dtype)
    agent.update = record_loss
    agent.train(progress=False)
    probe = synthetic_simulator()
    probe.reset(64, seed=5)
    q = agent.q_values(observe_platform(probe))
    return np.array(losses), q[q > -1e8], dtypes


def test_bf16_on_cpu_trains_close_to_fp32():
    loss32, q32, dtypes32 = _short_run("fp32")
    loss16, q16, dtypes16 = _short_run("bf16")
    assert dtypes32 == {torch.float32} and dtypes16 == {torch.bfloat16}  # autocast on for bf16 only
    assert not np.array_equal(loss16, loss32)  # another arithmetic, the same training:
    # measured over seeds 0-2: Q-values within 0.017 of fp32 (|Q| <= 4.4), mean loss within 0.4%
    assert torch.allclose(q16, q32, atol=0.1)
    assert loss16.mean() == pytest.approx(loss32.mean(), rel=0.05)


def test_fp32_step_is_the_plain_sequence():
    """precision="fp32" runs backward, clip, step exactly as before: the from-scratch DQN of notebook 06 matches it."""
    from recnb.precision import MixedPrecision

    def make():
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 2)
        return net, torch.optim.Adam(net.parameters(), lr=0.1)

    x = torch.randn(8, 3)
    plain, plain_opt = make()
    loss = plain(x).pow(2).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(plain.parameters(), 0.01)
    plain_opt.step()
    mixed, mixed_opt = make()
    fp32 = MixedPrecision("fp32", "cpu")
    with fp32.autocast():
        assert not torch.is_autocast_enabled("cpu")
        loss = mixed(x).pow(2).mean()
    fp32.step(loss, mixed_opt, mixed.parameters(), 0.01)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), mixed.parameters()))


def test_fp16_on_a_cpu_is_refused_naming_bf16():
    with pytest.raises(ValueError, match="precision='bf16'"):
        DQN(synthetic_simulator(), DQNConfig(device="cpu", precision="fp16", n_envs=4, buffer_size=64))
