"""Bandits find the best arm of Bernoulli arms and keep their running means exact."""

import numpy as np
import pytest

from recnb.agents.bandits import EpsilonGreedyBandit, UCBBandit, run_bandit


def bernoulli_arms(means, seed=0):
    rng = np.random.default_rng(seed)
    return lambda arm: float(rng.random() < means[arm])


@pytest.mark.parametrize("bandit", [EpsilonGreedyBandit(4, epsilon=0.1, seed=1), UCBBandit(4, c=1.0, seed=1)])
def test_bandits_find_the_best_arm(bandit):
    means = [0.2, 0.5, 0.8, 0.4]
    arms, rewards = run_bandit(bandit, bernoulli_arms(means), 3000)
    assert int(np.argmax(bandit.values)) == 2
    assert np.mean(arms[-1000:] == 2) > 0.85  # mostly exploiting by the end
    assert rewards[-1000:].mean() > 0.7


def test_running_mean_is_exact():
    b = EpsilonGreedyBandit(2, epsilon=0.0)
    for r in (1.0, 0.0, 0.5):
        b.update(1, r)
    assert b.values[1] == pytest.approx(0.5) and b.counts.tolist() == [0, 3]


def test_ucb_tries_every_arm_first_then_prefers_uncertain_arms():
    b = UCBBandit(3, c=2.0)
    assert [b.select() for _ in range(1)] == [0]
    for arm in range(3):
        b.update(arm, 0.5)
    for _ in range(20):
        b.update(0, 0.5)
    assert b.select() in (1, 2)  # equal means: the less-pulled arms carry the bigger bonus


def test_epsilon_zero_never_explores():
    b = EpsilonGreedyBandit(3, epsilon=0.0, seed=0)
    b.update(1, 1.0)
    assert all(b.select() == 1 for _ in range(50))


def test_validation():
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedyBandit(3, epsilon=1.2)
    with pytest.raises(ValueError, match="n_arms"):
        UCBBandit(0)
    with pytest.raises(ValueError, match="c "):
        UCBBandit(2, c=-1)
    with pytest.raises(IndexError):
        EpsilonGreedyBandit(2).update(5, 1.0)
