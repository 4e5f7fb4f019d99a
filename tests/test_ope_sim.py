"""Tests for recnb.ope_sim on a small synthetic simulator built here (fast: no MovieLens)."""

import numpy as np
import pytest
import torch
from conftest import SMALL, platform_for, scramble_hidden_state, synthetic_ratings

from recnb import ope, ope_sim
from recnb.platform import PlatformEnv
from recnb.simulator import UserSimulator


@pytest.fixture(scope="module")
def setup(make_simulator):
    sim = make_simulator(horizon=30)
    ratings, _ = synthetic_ratings(**SMALL)  # what the simulator was calibrated on
    env = PlatformEnv(sim, platform_for(sim))
    train = ratings.assign(user=ratings["user_id"] - 1, item=ratings["item_id"] - 1)
    stats = ope_sim.rating_stats(train, sim.n_calibration_users, sim.n_items)
    # the oracle target reads the simulator (a labelled reference); the platform's targets read the env
    targets = {
        "oracle greedy": lambda e: e.sim.expected_reward(),
        "popularity": lambda e: e.item_popularity.expand(e.n_users, -1),
        "platform greedy": lambda e: e.platform_scores(),
    }
    cfg = ope_sim.LoggingConfig(n_rounds=3000, n_candidates=4, epsilon=0.5, batch_users=64, seed=1)
    return env, stats, targets, cfg, ope_sim.collect_logs(env, stats, cfg, targets, progress=False)


def test_logs_are_consistent(setup):
    env, _, targets, cfg, log = setup
    sim = env.sim
    n, K = cfg.n_rounds, cfg.n_candidates
    assert len(log) == n and log.candidates.shape == (n, K) and log.features.shape[:2] == (n, K)
    assert set(log.target_scores) == set(targets) and log.target_scores["oracle greedy"].shape == (n, K)
    # candidates are distinct items; propensities are the logging distribution at the shown candidate
    assert all(len(set(row)) == K for row in log.candidates)
    np.testing.assert_allclose(log.logging_probs.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(log.propensity, log.logging_probs[np.arange(n), log.action])
    # epsilon-greedy on popularity: the most popular candidate gets 1 - eps + eps / K, the others eps / K
    best = sim.item_popularity.numpy()[log.candidates].argmax(1)
    np.testing.assert_allclose(log.logging_probs[np.arange(n), best], 1 - cfg.epsilon + cfg.epsilon / K)
    assert np.isclose(log.logging_probs.min(), cfg.epsilon / K)
    assert np.all((log.truth >= 0) & (log.truth <= 1)) and set(np.unique(log.reward)) <= {0.0, 1.0}
    # the logger shows its best candidate about 1 - eps + eps / K of the time
    shown_best = (log.action == best).mean()
    assert abs(shown_best - (1 - cfg.epsilon + cfg.epsilon / K)) < 0.05


def test_logs_repeat_with_the_seed(setup):
    env, stats, targets, cfg, log = setup
    again = ope_sim.collect_logs(env, stats, cfg, targets, progress=False)
    np.testing.assert_array_equal(again.candidates, log.candidates)
    np.testing.assert_array_equal(again.reward, log.reward)


def test_observed_rewards_match_the_simulator_truth(setup):
    """The logged reward of the shown item averages to its expected reward (the truth is the right truth)."""
    *_, log = setup
    shown_truth = log.truth[np.arange(len(log)), log.action]
    se = np.sqrt(shown_truth * (1 - shown_truth)).mean() / np.sqrt(len(log))
    assert abs(log.reward.mean() - shown_truth.mean()) < 4 * se


def test_estimators_recover_the_true_value(setup):
    *_, log = setup
    fit, predict = ope_sim.logistic_reward_model(log)
    q = ope.cross_fit(len(log), fit, predict, folds=2)
    targets = {name: ope_sim.greedy_probs(s) for name, s in log.target_scores.items()}
    targets["logging"] = log.logging_probs
    table = ope_sim.evaluate_targets(log, targets, q)
    for name, row in table.iterrows():
        for est in ("IPS", "SNIPS", "DR"):
            assert abs(row[est] - row["true"]) < 4 * row[f"{est}_se"] + 1e-3, (name, est, row[est], row["true"])
    # on the logging policy itself every importance weight is 1: IPS is the plain mean reward, ESS = n
    assert np.isclose(table.loc["logging", "IPS"], log.reward.mean())
    assert np.isclose(table.loc["logging", "ESS"], len(log))
    # a model equal to the truth makes the direct method exact
    assert np.isclose(ope.direct_method(targets["oracle greedy"], log.truth).value, table.loc["oracle greedy", "true"])


def test_variance_grows_as_the_target_departs(setup):
    *_, log = setup
    greedy = ope_sim.greedy_probs(log.target_scores["oracle greedy"])
    ess = [
        ope.effective_sample_size(
            ope.importance_weights(log.action, log.propensity, ope_sim.mixture(log.logging_probs, greedy, a))
        )
        for a in (0.0, 0.5, 1.0)
    ]
    assert ess[0] > ess[1] > ess[2]


def test_policies_from_scores():
    s = np.array([[0.1, 0.9, 0.3], [2.0, 1.0, 0.0]])
    np.testing.assert_array_equal(ope_sim.greedy_probs(s), [[0, 1, 0], [1, 0, 0]])
    soft = ope_sim.softmax_probs(s, 0.5)
    np.testing.assert_allclose(soft.sum(1), 1.0)
    assert np.all(soft.argmax(1) == s.argmax(1))
    np.testing.assert_allclose(ope_sim.softmax_probs(s, 1e-4), ope_sim.greedy_probs(s), atol=1e-6)
    np.testing.assert_allclose(ope_sim.mixture(soft, ope_sim.greedy_probs(s), 0.0), soft)
    with pytest.raises(ValueError, match="temperature"):
        ope_sim.softmax_probs(s, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        ope_sim.mixture(soft, soft, 1.5)


def test_bad_inputs_raise_clear_errors(setup):
    env, stats, *_ = setup
    with pytest.raises(ValueError, match="epsilon"):
        ope_sim.LoggingConfig(epsilon=0.0)
    with pytest.raises(ValueError, match="n_candidates"):
        ope_sim.LoggingConfig(n_candidates=1)
    with pytest.raises(ValueError, match="beyond"):
        ope_sim.rating_stats(synthetic_ratings(**SMALL)[0].assign(user=100, item=0, rating=3), 60, 50)
    with pytest.raises(ValueError, match="lacks column"):
        ope_sim.rating_stats(synthetic_ratings(**SMALL)[0], 60, 50)
    small = ope_sim.RatingStats(torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="rating stats"):
        ope_sim.collect_logs(env, small, ope_sim.LoggingConfig(n_rounds=10), progress=False)
    with pytest.raises(TypeError, match="PlatformEnv"):  # the bare simulator is not the platform's view
        ope_sim.collect_logs(env.sim, stats, ope_sim.LoggingConfig(n_rounds=10), progress=False)


def test_reward_model_features_are_platform_side(setup):
    """The features the reward model learns from are read from the platform's log, not the simulator's state."""
    env, stats, *_ = setup
    sim = UserSimulator(env.sim.calibration.__class__(**vars(env.sim.calibration)), env.sim.config)
    view = PlatformEnv(sim, env.platform)
    view.reset(16, seed=0)
    for _ in range(3):
        view.step(view.platform_scores().masked_fill(~view.available_mask(), -1e9).argmax(1))
    before = ope_sim.platform_features(view, stats).clone()
    truth = sim.expected_reward().clone()
    scramble_hidden_state(sim, seed=1)
    assert torch.equal(before, ope_sim.platform_features(view, stats))
    assert before.shape == (16, sim.n_items, 6)
    assert not torch.equal(truth, sim.expected_reward())  # the scramble did change what the simulator knows
