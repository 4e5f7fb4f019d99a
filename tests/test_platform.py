"""Tests for recnb.platform: the platform's log is the only agent view, and the platform-side baselines."""

import numpy as np
import pytest
import torch
from conftest import platform_for, scramble_hidden_state

from recnb import stats
from recnb.agents.dqn import DQN, DQNConfig
from recnb.platform import PlatformEnv, observe_platform, split_users
from recnb.policies import (
    DiversifyingPolicy,
    Evaluation,
    GreedyPolicy,
    MMRPolicy,
    PlatformGreedyPolicy,
    RandomPolicy,
    evaluate_policy,
    paired_difference,
    seed_average,
    tune_heuristic,
)


def test_observation_holds_no_simulator_state(tiny_sim):
    """Scrambling the simulator's hidden state leaves the agent's observation unchanged: it reads the log only."""
    from recnb.simulator import UserSimulator

    sim = UserSimulator(tiny_sim.calibration.__class__(**vars(tiny_sim.calibration)), tiny_sim.config)
    env = PlatformEnv(sim, platform_for(sim))
    env.reset(16, seed=0)
    policy = RandomPolicy(seed=1)
    for _ in range(3):
        env.step(policy(env))
    before = {k: v.clone() for k, v in observe_platform(env).items()}
    scramble_hidden_state(sim, seed=1)
    after = observe_platform(env)
    assert set(after) == set(before)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    # and the check can fail: the oracle does read the hidden state
    truth = sim.expected_reward().clone()
    scramble_hidden_state(sim, seed=2)
    assert not torch.equal(truth, sim.expected_reward())


def test_agents_observe_the_platform_by_default(tiny_env):
    agent = DQN(tiny_env, DQNConfig(device="cpu", n_envs=8, buffer_size=64, batch_size=8, total_steps=16))
    assert agent.observe is observe_platform
    with pytest.raises(ValueError, match="fatigue_term=False"):
        DQN(
            tiny_env.sim,
            DQNConfig(device="cpu", n_envs=8, buffer_size=64),
            observe=lambda e: observe_platform(tiny_env),
            item_feats=tiny_env.item_features(),
        )


def test_log_records_clicks_ignores_and_genres(tiny_env):
    obs = tiny_env.reset(32, seed=3)
    sim = tiny_env.sim
    np.testing.assert_array_equal(obs["mask"].numpy(), sim.available_mask().numpy())  # same facts, from the log
    actions = PlatformGreedyPolicy()(tiny_env)
    obs, _, _, _, info = tiny_env.step(actions)
    hit, miss = info["clicked"], ~info["clicked"]
    assert hit.any() and miss.any()
    assert not obs["mask"][hit, actions[hit]].any()  # a click consumes the film
    assert tiny_env.ignored[miss, actions[miss]].all() and not tiny_env.ignored[hit, actions[hit]].any()
    assert torch.equal(obs["history"][hit, -1], actions[hit])
    shares = tiny_env.genre_share[actions]
    torch.testing.assert_close(tiny_env.genre_clicks[hit], shares[hit])
    torch.testing.assert_close(tiny_env.genre_ignored[miss], shares[miss])
    assert torch.equal(tiny_env.t, torch.ones(32))
    np.testing.assert_array_equal(obs["mask"].numpy(), sim.available_mask().numpy())


def test_pool_draws_only_its_users(tiny_sim):
    train, held_out = split_users(tiny_sim.n_calibration_users, 0.5, seed=0)
    assert set(train).isdisjoint(held_out) and len(train) + len(held_out) == tiny_sim.n_calibration_users
    env = PlatformEnv(tiny_sim, platform_for(tiny_sim), users=held_out)
    env.reset(64, seed=0)
    assert set(env.user.tolist()) <= set(held_out.tolist())
    done = torch.zeros(64, dtype=torch.bool)
    done[:32] = True
    env.reset_where(done)
    assert set(env.user.tolist()) <= set(held_out.tolist())
    with pytest.raises(ValueError, match="train_fraction"):
        split_users(10, 1.0)
    with pytest.raises(ValueError, match="calibration rows"):
        PlatformEnv(tiny_sim, platform_for(tiny_sim), users=[10_000])


def test_platform_policies_read_the_platform_and_the_oracle_reads_the_truth(tiny_env):
    tiny_env.reset(16, seed=0)
    scores = tiny_env.platform_scores().masked_fill(~tiny_env.available_mask(), -1e9)
    assert torch.equal(PlatformGreedyPolicy()(tiny_env), scores.argmax(1))
    assert torch.equal(DiversifyingPolicy(0.0)(tiny_env), scores.argmax(1))
    assert torch.equal(MMRPolicy(0.0)(tiny_env), scores.argmax(1))
    truth = tiny_env.sim.expected_reward().masked_fill(~tiny_env.available_mask(), -1)
    assert torch.equal(GreedyPolicy()(tiny_env), truth.argmax(1))
    assert GreedyPolicy.name == "oracle greedy"
    with pytest.raises(TypeError, match="PlatformEnv"):
        DiversifyingPolicy(1.0)(tiny_env.sim)


def test_diversifying_penalty_moves_choices_after_clicks(tiny_env):
    tiny_env.reset(64, seed=0)
    for _ in range(3):
        tiny_env.step(PlatformGreedyPolicy()(tiny_env))
    assert not torch.equal(DiversifyingPolicy(50.0)(tiny_env), PlatformGreedyPolicy()(tiny_env))


def test_mmr_similarity_is_the_max_cosine_to_recent_clicks(tiny_env):
    tiny_env.reset(32, seed=0)
    for _ in range(3):
        tiny_env.step(PlatformGreedyPolicy()(tiny_env))
    n = tiny_env.n_items
    tiny_env.history[:4] = n  # users with no click yet, and users with a few
    tiny_env.history[4:8, :6] = n
    unit = torch.nn.functional.normalize(tiny_env.platform.item_factors, dim=1)
    hist = tiny_env.history
    expected = torch.zeros(len(hist), n)
    for row, items in enumerate(hist.tolist()):
        clicked = [i for i in items if i < n]
        if clicked:  # brute force: every recent click against every film, the max, floored at 0
            expected[row] = (unit[clicked] @ unit.T).amax(0).clamp_min(0)
    torch.testing.assert_close(MMRPolicy(1.0).recent_similarity(tiny_env), expected)
    assert not torch.equal(MMRPolicy(50.0)(tiny_env), PlatformGreedyPolicy()(tiny_env))


def test_paired_difference_and_tuning():
    a = Evaluation("a", np.array([2.0, 3.0, 4.0, 5.0]), np.ones(4), np.ones(4), seed=0)
    b = Evaluation("b", np.array([1.0, 2.0, 3.0, 3.0]), np.ones(4), np.ones(4), seed=0)
    c = paired_difference(a, b)
    d = np.array([1.0, 1.0, 1.0, 2.0])
    t3 = 3.182446305284263  # the Student-t 97.5% quantile with 3 degrees of freedom (4 users)
    assert c.diff == pytest.approx(1.25) and c.ci95 == pytest.approx(t3 * d.std(ddof=1) / 2)
    assert (c.diff, c.ci95) == stats.paired_ci(a.returns, b.returns)  # the one home of intervals
    assert c.relative == pytest.approx(1.25 / 2.25) and c.excludes_zero
    with pytest.raises(ValueError, match="same seed"):
        paired_difference(a, Evaluation("b", b.returns, b.lengths, b.click_rates, seed=1))


def test_tune_heuristic_returns_the_best_value(tiny_env):
    best, returns = tune_heuristic(tiny_env, DiversifyingPolicy, [0.0, 1.0, 100.0], n_users=64, seed=0)
    assert best == max(returns, key=returns.get) and set(returns) == {0.0, 1.0, 100.0}
    assert returns[0.0] == evaluate_policy(tiny_env, PlatformGreedyPolicy(), n_users=64, seed=0).mean_return
    with pytest.raises(ValueError, match="grid"):
        tune_heuristic(tiny_env, DiversifyingPolicy, [], n_users=8)


def test_agent_can_start_as_the_tuned_heuristic(tiny_env):
    """fatigue_init = -penalty: before any update the Q-network ranks exactly like DiversifyingPolicy(penalty)."""
    agent = DQN(
        tiny_env, DQNConfig(device="cpu", n_envs=8, buffer_size=64, batch_size=8, total_steps=16, fatigue_init=-3.0)
    )
    tiny_env.reset(64, seed=4)
    for _ in range(3):
        tiny_env.step(PlatformGreedyPolicy()(tiny_env))
    assert torch.equal(agent.policy()(tiny_env), DiversifyingPolicy(3.0)(tiny_env))
    plain = DQN(tiny_env, DQNConfig(device="cpu", n_envs=8, buffer_size=64, batch_size=8, total_steps=16))
    tiny_env.reset(64, seed=4)
    for _ in range(3):
        tiny_env.step(PlatformGreedyPolicy()(tiny_env))
    assert torch.equal(plain.policy()(tiny_env), PlatformGreedyPolicy()(tiny_env))
    assert not torch.equal(plain.policy()(tiny_env), agent.policy()(tiny_env))  # the starting price matters


def test_seed_average_pools_runs_user_by_user():
    a = Evaluation("s0", np.array([1.0, 3.0]), np.array([2.0, 4.0]), np.array([0.5, 1.0]), seed=3)
    b = Evaluation("s1", np.array([3.0, 5.0]), np.array([4.0, 4.0]), np.array([0.5, 0.0]), seed=3)
    pooled = seed_average([a, b], "mean")
    np.testing.assert_allclose(pooled.returns, [2.0, 4.0])
    np.testing.assert_allclose(pooled.lengths, [3.0, 4.0])
    np.testing.assert_allclose(pooled.click_rates, [0.5, 0.5])
    assert pooled.policy == "mean" and pooled.seed == 3
    with pytest.raises(ValueError, match="same seed"):
        seed_average([a, Evaluation("x", a.returns, a.lengths, a.click_rates, seed=4)], "bad")
