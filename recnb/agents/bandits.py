"""Multi-armed bandits over a few arms (genres): epsilon-greedy and UCB1 (notebook 05).

A bandit has no state: it learns one value per arm, the mean reward of pulling it, with the
incremental average ``value += (reward - value) / pulls`` and picks arms by a rule that balances
exploring and exploiting. It is the stepping stone to Q-learning: a Q-table with a single state
and ``gamma = 0``. What it cannot learn is that the best arm *now* depends on what came before
(fatigue), which is why notebook 05 moves on to states.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._checks import check_int, check_non_negative, check_seed
from .tabular import check_epsilon


class Bandit:
    """Shared bookkeeping: pull counts and incremental mean reward per arm (notebook 05)."""

    name = "bandit"

    def __init__(self, n_arms: int, seed: int = 0):
        self.n_arms = check_int("n_arms", n_arms, minimum=1)
        self.reset(seed)

    def reset(self, seed: int = 0) -> None:
        """Forget everything learned and reseed."""
        self.rng = np.random.default_rng(check_seed("seed", seed))
        self.counts = np.zeros(self.n_arms, dtype=np.int64)
        self.values = np.zeros(self.n_arms)

    def select(self) -> int:
        raise NotImplementedError

    def update(self, arm: int, reward: float) -> None:
        """Fold one observed reward into the arm's running mean."""
        if not 0 <= arm < self.n_arms:
            raise IndexError(f"arm must be in [0, {self.n_arms}), got {arm}")
        self.counts[arm] += 1
        self.values[arm] += (reward - self.values[arm]) / self.counts[arm]


class EpsilonGreedyBandit(Bandit):
    """With probability ``epsilon`` a random arm, otherwise the best-looking one (notebook 05)."""

    name = "epsilon-greedy"

    def __init__(self, n_arms: int, epsilon: float = 0.1, seed: int = 0):
        self.epsilon = check_epsilon(epsilon)
        super().__init__(n_arms, seed)

    def select(self) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_arms))
        best = np.flatnonzero(self.values == self.values.max())
        return int(self.rng.choice(best))  # random tie-break, so untried arms are not ranked by index


class UCBBandit(Bandit):
    """UCB1: every arm once, then ``argmax value + c * sqrt(ln t / pulls)`` (notebook 05).

    Optimism under uncertainty: an arm pulled rarely gets a large bonus, so it is tried again."""

    name = "UCB"

    def __init__(self, n_arms: int, c: float = 1.0, seed: int = 0):
        self.c = check_non_negative("c (the exploration bonus scale)", c)
        super().__init__(n_arms, seed)

    def select(self) -> int:
        untried = np.flatnonzero(self.counts == 0)
        if len(untried):
            return int(untried[0])
        t = self.counts.sum()
        return int(np.argmax(self.values + self.c * np.sqrt(np.log(t) / self.counts)))


def run_bandit(bandit: Bandit, pull: Callable[[int], float], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Play ``steps`` rounds: select, ``reward = pull(arm)``, update; returns ``(arms, rewards)`` (notebook 05)."""
    check_int("steps", steps, minimum=1)
    arms = np.zeros(steps, dtype=np.int64)
    rewards = np.zeros(steps)
    for t in range(steps):
        arm = bandit.select()
        reward = float(pull(arm))
        bandit.update(arm, reward)
        arms[t], rewards[t] = arm, reward
    return arms, rewards
