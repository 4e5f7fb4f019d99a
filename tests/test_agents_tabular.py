"""Tabular DP and TD control on hand-made MDPs whose optimum is known in closed form."""

import numpy as np
import pytest

from recnb.agents import tabular as tb


def stay_or_go(bonus: float = 20.0) -> tb.TabularMDP:
    """s0: 'stay' earns 1 and stays; 'go' earns 0 and moves to s1. s1: any action earns ``bonus`` and ends (s2)."""
    P = np.zeros((3, 2, 3))
    R = np.zeros((3, 2, 3))
    P[0, 0, 0] = 1.0
    R[0, 0, 0] = 1.0
    P[0, 1, 1] = 1.0
    P[1, :, 2] = 1.0
    R[1, :, 2] = bonus
    P[2, :, 2] = 1.0
    return tb.TabularMDP(
        P,
        R,
        start=[1, 0, 0],
        terminal=[False, False, True],
        state_names=["s0", "s1", "end"],
        action_names=["stay", "go"],
    )


def slippery(slip: float = 0.2) -> tb.TabularMDP:
    """Two live states and an end: action 1 in s0 reaches s1 with prob 1 - slip; s1 pays 1 per step and
    leaves with prob 0.1 under action 0, pays 2 and always leaves under action 1."""
    P = np.zeros((3, 2, 3))
    R = np.zeros((3, 2, 3))
    P[0, 0, 0] = 1.0  # wait: nothing
    P[0, 1, 1], P[0, 1, 0] = 1 - slip, slip
    P[1, 0, 1], P[1, 0, 2] = 0.9, 0.1
    R[1, 0, :] = 1.0
    P[1, 1, 2] = 1.0
    R[1, 1, 2] = 2.0
    P[2, :, 2] = 1.0
    return tb.TabularMDP(P, R, start=[1, 0, 0], terminal=[False, False, True])


def test_value_iteration_matches_closed_form():
    mdp = stay_or_go(20.0)
    V, Q = tb.value_iteration(mdp, 0.9)
    assert Q[0, 0] == pytest.approx(1 + 0.9 * 18)  # stay once, then go: 1 + 0.9 V*(s0)
    assert tb.policy_value(mdp, np.array([0, 0, 0]), 0.9) == pytest.approx(1 / (1 - 0.9))  # stay forever
    assert Q[0, 1] == pytest.approx(0.9 * 20)
    assert V[0] == pytest.approx(18.0) and V[2] == 0.0
    V0, Q0 = tb.value_iteration(mdp, 0.0)  # myopic: the immediate 1 beats a later 20
    assert tb.greedy_policy(Q0)[0] == 0 and V0[0] == pytest.approx(1.0)


def test_slippery_closed_form_and_policy_iteration_agree():
    mdp, g = slippery(0.2), 0.95
    v1_stay = 1 / (1 - g * 0.9)  # keep earning 1 until leaving
    v1 = max(v1_stay, 2.0)
    v0 = g * 0.8 * v1 / (1 - g * 0.2)  # V0 = g (0.8 V1 + 0.2 V0)
    V, Q = tb.value_iteration(mdp, g)
    assert V[1] == pytest.approx(v1) and V[0] == pytest.approx(v0)
    policy, V_pi = tb.policy_iteration(mdp, g)
    np.testing.assert_allclose(V_pi, V, atol=1e-8)
    assert list(policy[:2]) == [1, 0]
    assert tb.policy_value(mdp, policy, g) == pytest.approx(v0)
    # a worse policy is worth less, exactly
    assert tb.policy_value(mdp, np.array([1, 1, 0]), g) == pytest.approx(g * 0.8 * 2.0 / (1 - g * 0.2))


def test_stochastic_policy_evaluation():
    mdp, g = stay_or_go(20.0), 0.9
    half = np.full((3, 2), 0.5)
    V = tb.evaluate_policy_exact(mdp, half, g)
    # V0 = 0.5 (1 + g V0) + 0.5 g V1, V1 = 20
    assert V[0] == pytest.approx((0.5 + 0.5 * g * 20) / (1 - 0.5 * g))


def test_targets_are_the_bellman_ones():
    Q = np.array([[1.0, 3.0], [2.0, -1.0]])
    assert tb.q_learning_target(Q, 0.5, 0, False, 0.9) == pytest.approx(0.5 + 0.9 * 3.0)  # max, not mean / taken
    assert tb.q_learning_target(Q, 0.5, 0, True, 0.9) == pytest.approx(0.5)  # terminated: no bootstrap
    assert tb.sarsa_target(Q, 0.5, 0, 0, False, 0.9) == pytest.approx(0.5 + 0.9 * 1.0)  # the action taken
    assert tb.expected_sarsa_target(Q, 0.5, 1, False, 0.9, 0.2) == pytest.approx(0.5 + 0.9 * (0.9 * 2.0 + 0.1 * -1.0))
    Qc = Q.copy()
    err = tb.td_update(Qc, 1, 1, target=3.0, alpha=0.25)
    assert err == pytest.approx(4.0) and Qc[1, 1] == pytest.approx(-1.0 + 0.25 * 4.0) and Qc[0, 0] == 1.0


@pytest.mark.parametrize("method", tb.METHODS)
def test_td_control_reaches_the_optimum(method):
    mdp, g = slippery(0.2), 0.95
    V, Q_star = tb.value_iteration(mdp, g)
    cfg = tb.TDConfig(episodes=800, gamma=g, seed=3, epsilon_end=0.05)
    result = tb.train_td(mdp, cfg, method)
    assert list(result.policy[:2]) == [1, 0]
    assert tb.policy_value(mdp, result.policy, g) >= 0.99 * V[0]
    if method == "q_learning":  # off-policy: learns Q* itself, whatever it explores with
        np.testing.assert_allclose(result.Q[:2], Q_star[:2], rtol=0.1)
    assert result.returns.shape == (800,) and result.visits.sum() > 800


def test_q_learning_respects_gamma():
    mdp = stay_or_go(20.0)
    far = tb.train_td(mdp, tb.TDConfig(episodes=300, gamma=0.9, max_steps=50, seed=0))
    near = tb.train_td(mdp, tb.TDConfig(episodes=300, gamma=0.0, max_steps=50, seed=0))
    assert far.policy[0] == 1 and near.policy[0] == 0
    assert near.Q[0, 0] == pytest.approx(1.0) and near.Q[0, 1] == pytest.approx(0.0)


def test_train_td_is_deterministic_per_seed():
    mdp = slippery()
    a = tb.train_td(mdp, tb.TDConfig(episodes=50, seed=7), "sarsa")
    b = tb.train_td(mdp, tb.TDConfig(episodes=50, seed=7), "sarsa")
    np.testing.assert_array_equal(a.Q, b.Q)


def test_schedules():
    cfg = tb.TDConfig(
        episodes=100,
        epsilon_start=1.0,
        epsilon_end=0.1,
        epsilon_decay_fraction=0.5,
        learning_rate=0.8,
        lr_power=1.0,
        lr_min=0.05,
    )
    assert cfg.epsilon(0) == 1.0 and cfg.epsilon(25) == pytest.approx(0.55) and cfg.epsilon(80) == pytest.approx(0.1)
    assert cfg.step_size(1) == 0.8 and cfg.step_size(4) == pytest.approx(0.2) and cfg.step_size(1000) == 0.05
    probs = tb.epsilon_greedy_probs(np.array([0.0, 2.0, 1.0]), 0.3)
    np.testing.assert_allclose(probs, [0.1, 0.8, 0.1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"gamma": 1.0}, "gamma"),
        ({"gamma": -0.1}, "gamma"),
        ({"epsilon_start": 1.5}, "epsilon_start"),
        ({"epsilon_end": -0.1}, "epsilon_end"),
        ({"episodes": 0}, "episodes"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"lr_power": 0.3}, "lr_power"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tb.TDConfig(**kwargs)


def test_bad_models_and_arguments():
    with pytest.raises(ValueError, match="probability distribution"):
        tb.TabularMDP(np.ones((2, 1, 2)), np.zeros((2, 1)), [1, 0], [False, True])
    with pytest.raises(ValueError, match="gamma"):
        tb.value_iteration(slippery(), 1.0)
    with pytest.raises(ValueError, match="method"):
        tb.train_td(slippery(), tb.TDConfig(episodes=1), "td_lambda")
    with pytest.raises(ValueError, match="deterministic policy"):
        tb.policy_value(slippery(), np.array([0, 5, 0]), 0.9)


@pytest.mark.parametrize("method", tb.METHODS)
def test_parallel_episodes_learn_the_same_optimum(method):
    mdp, g = slippery(0.2), 0.95
    V, _ = tb.value_iteration(mdp, g)
    result = tb.train_td(
        mdp, tb.TDConfig(episodes=2000, gamma=g, seed=1, epsilon_end=0.01), method, parallel=64, eval_every=500
    )
    assert result.returns.shape == (2000,) and np.all(result.returns > 0)  # every episode was played
    assert list(result.curve_episodes) == [500, 1000, 1500, 2000]
    assert result.curve_values[-1] == pytest.approx(tb.policy_value(mdp, result.policy, g))
    assert result.curve_values[-1] >= 0.99 * V[0]
