"""Finite MDPs solved exactly (value / policy iteration) and learned by tabular TD control (notebook 05).

A :class:`TabularMDP` holds a transition model ``P[s, a, s']``, a reward ``R[s, a, s']`` (its
expectation ``r(s, a) = sum_s' P R``), a start distribution and which states are terminal
(absorbing, worth 0). Two ways to find good behaviour:

* **Planning with the model** -- :func:`value_iteration` and :func:`policy_iteration` give the
  exact optimum ``V*``/``Q*``; :func:`policy_value` scores any policy exactly (a linear solve).
* **Learning from samples** -- :func:`train_td` runs Q-learning, SARSA or expected SARSA on
  episodes sampled from the model, never reading ``P`` or ``R``. All three share one update::

      Q(s, a) <- Q(s, a) + alpha * (target - Q(s, a))
      target  = r + gamma * (1 - terminated) * (value of s')

  where "value of s'" is ``max_a' Q(s', a')`` (Q-learning, off-policy), ``Q(s', a')`` for the
  action actually taken next (SARSA, on-policy) or its expectation under the epsilon-greedy
  policy (expected SARSA). It is a step towards a bootstrapped target, not the minimisation of
  a ``-log Q`` loss: Q values are expected returns, not probabilities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

METHODS = ("q_learning", "sarsa", "expected_sarsa")


# ---------------------------------------------------------------- the model

@dataclass
class TabularMDP:
    """A finite MDP: ``P[s, a, s']``, ``R[s, a, s']``, start distribution, terminal states (notebook 05)."""

    P: np.ndarray
    R: np.ndarray
    start: np.ndarray
    terminal: np.ndarray
    state_names: list = field(default_factory=list)
    action_names: list = field(default_factory=list)

    def __post_init__(self):
        self.P = np.asarray(self.P, dtype=float)
        self.R = np.asarray(self.R, dtype=float)
        if self.R.ndim == 2:  # r(s, a) given: the same reward whatever s'
            self.R = np.repeat(self.R[:, :, None], self.P.shape[-1], axis=2)
        self.start = np.asarray(self.start, dtype=float)
        self.terminal = np.asarray(self.terminal, dtype=bool)
        if self.P.ndim != 3 or self.P.shape[0] != self.P.shape[2]:
            raise ValueError(f"P must have shape [S, A, S], got {self.P.shape}")
        S, A, _ = self.P.shape
        if self.R.shape != self.P.shape:
            raise ValueError(f"R must have shape [S, A] or [S, A, S] = {self.P.shape}, got {self.R.shape}")
        if np.any(self.P < 0) or not np.allclose(self.P.sum(2), 1.0, atol=1e-8):
            raise ValueError("every row P[s, a, :] must be a probability distribution (non-negative, summing to 1)")
        if self.start.shape != (S,) or np.any(self.start < 0) or not np.isclose(self.start.sum(), 1.0):
            raise ValueError(f"start must be a probability distribution over the {S} states")
        if self.terminal.shape != (S,):
            raise ValueError(f"terminal must be a bool array of shape ({S},), got {self.terminal.shape}")
        if not self.state_names:
            self.state_names = [f"s{i}" for i in range(S)]
        if not self.action_names:
            self.action_names = [f"a{i}" for i in range(A)]

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    @property
    def expected_reward(self) -> np.ndarray:
        """``r(s, a) = sum_s' P(s'|s, a) R(s, a, s')``, 0 in terminal states."""
        r = (self.P * self.R).sum(2)
        r[self.terminal] = 0.0
        return r


def check_gamma(gamma: float) -> float:
    """``gamma`` as a float, or a clear error when it is outside [0, 1) (notebook 05)."""
    if not isinstance(gamma, (int, float, np.floating, np.integer)) or isinstance(gamma, bool) or not 0 <= gamma < 1:
        raise ValueError(f"gamma (the discount factor) must be in [0, 1), got {gamma!r}; "
                         "values near 1 weigh the far future, 0 is myopic")
    return float(gamma)


def check_epsilon(epsilon: float, name: str = "epsilon") -> float:
    """``epsilon`` as a float, or a clear error when it is outside [0, 1] (notebook 05)."""
    if not isinstance(epsilon, (int, float, np.floating, np.integer)) or isinstance(epsilon, bool) or not 0 <= epsilon <= 1:
        raise ValueError(f"{name} (an exploration probability) must be in [0, 1], got {epsilon!r}")
    return float(epsilon)


# ---------------------------------------------------------------- planning (exact)

def q_from_v(mdp: TabularMDP, V: np.ndarray, gamma: float) -> np.ndarray:
    """One Bellman backup: ``Q(s, a) = sum_s' P (R + gamma V(s'))``, 0 in terminal states (notebook 05)."""
    Q = (mdp.P * (mdp.R + check_gamma(gamma) * V[None, None, :])).sum(2)
    Q[mdp.terminal] = 0.0
    return Q


def value_iteration(mdp: TabularMDP, gamma: float, tol: float = 1e-10, max_iter: int = 100_000):
    """The optimal ``(V*, Q*)`` by repeated Bellman optimality backups until they change < ``tol`` (notebook 05)."""
    V = np.zeros(mdp.n_states)
    for _ in range(max_iter):
        Q = q_from_v(mdp, V, gamma)
        V_new = Q.max(1)
        if np.max(np.abs(V_new - V)) < tol:
            return V_new, q_from_v(mdp, V_new, gamma)
        V = V_new
    raise RuntimeError(f"value iteration did not converge in {max_iter} sweeps; raise max_iter or lower gamma")


def evaluate_policy_exact(mdp: TabularMDP, policy: np.ndarray, gamma: float) -> np.ndarray:
    """``V^pi`` of a deterministic ``policy[s]`` or stochastic ``policy[s, a]``, by a linear solve (notebook 05)."""
    gamma = check_gamma(gamma)
    pi = _as_stochastic(policy, mdp)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    r_pi = (pi * mdp.expected_reward).sum(1)
    P_pi[mdp.terminal] = 0.0  # terminal states are worth 0 and lead nowhere
    return np.linalg.solve(np.eye(mdp.n_states) - gamma * P_pi, r_pi)


def policy_value(mdp: TabularMDP, policy: np.ndarray, gamma: float) -> float:
    """Expected discounted return of ``policy`` from the start distribution (notebook 05)."""
    return float(mdp.start @ evaluate_policy_exact(mdp, policy, gamma))


def policy_iteration(mdp: TabularMDP, gamma: float, max_iter: int = 1000):
    """The optimal deterministic policy and its ``V``: evaluate exactly, improve greedily, repeat (notebook 05)."""
    policy = np.zeros(mdp.n_states, dtype=int)
    for _ in range(max_iter):
        V = evaluate_policy_exact(mdp, policy, gamma)
        Q = q_from_v(mdp, V, gamma)
        # keep the current action on ties, so the loop stops instead of cycling between equals
        current = Q[np.arange(mdp.n_states), policy]
        better = Q.max(1) > current + 1e-12
        if not better.any():
            return policy, V
        policy = np.where(better, Q.argmax(1), policy)
    raise RuntimeError(f"policy iteration did not converge in {max_iter} steps")


def greedy_policy(Q: np.ndarray) -> np.ndarray:
    """``argmax_a Q(s, a)`` per state, ties to the lowest action index (notebook 05)."""
    return np.asarray(Q).argmax(1)


def _as_stochastic(policy: np.ndarray, mdp: TabularMDP) -> np.ndarray:
    policy = np.asarray(policy)
    if policy.ndim == 1:
        if policy.shape != (mdp.n_states,) or policy.min() < 0 or policy.max() >= mdp.n_actions:
            raise ValueError(f"a deterministic policy is one action in [0, {mdp.n_actions}) per state "
                             f"({mdp.n_states} states), got shape {policy.shape}")
        return np.eye(mdp.n_actions)[policy]
    if policy.shape != (mdp.n_states, mdp.n_actions) or not np.allclose(policy.sum(1), 1.0):
        raise ValueError(f"a stochastic policy has shape ({mdp.n_states}, {mdp.n_actions}) and rows summing to 1")
    return policy


# ---------------------------------------------------------------- learning (TD control)

@dataclass(frozen=True)
class TDConfig:
    """Hyperparameters of tabular TD control, the ones the source article lists and more (notebook 05)."""

    episodes: int = 3000
    """Training episodes sampled from the model."""
    gamma: float = 0.9
    """Discount factor in [0, 1): 0 = myopic (greedy), near 1 = long-term planning."""
    learning_rate: float = 1.0
    """Initial step size alpha; a state-action's n-th update uses ``max(lr_min, learning_rate / n**lr_power)``."""
    lr_power: float = 0.7
    """Decay exponent of the step size per visit, in (0.5, 1] so the steps satisfy Robbins-Monro."""
    lr_min: float = 0.0
    """Floor of the step size (0 = keep decaying; > 0 tracks a changing world but never settles)."""
    epsilon_start: float = 1.0
    """Exploration rate at the first episode, in [0, 1]."""
    epsilon_end: float = 0.05
    """Exploration rate after the decay, in [0, 1]."""
    epsilon_decay_fraction: float = 0.6
    """Fraction of the episodes over which epsilon falls linearly from start to end, in (0, 1]."""
    max_steps: int = 200
    """Steps before an episode is truncated (truncation still bootstraps; only termination zeroes it)."""
    seed: int = 0
    """Seed of the episode sampler and of exploration."""

    def __post_init__(self):
        check_gamma(self.gamma)
        check_epsilon(self.epsilon_start, "epsilon_start")
        check_epsilon(self.epsilon_end, "epsilon_end")
        for name in ("episodes", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TDConfig.{name} must be an integer >= 1, got {value!r}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"TDConfig.learning_rate must be in (0, 1], got {self.learning_rate}")
        if not 0.5 < self.lr_power <= 1 and self.lr_power != 0:
            raise ValueError(f"TDConfig.lr_power must be in (0.5, 1] (or 0 for a constant step), got {self.lr_power}")
        if not 0 <= self.lr_min <= self.learning_rate:
            raise ValueError(f"TDConfig.lr_min must be in [0, learning_rate], got {self.lr_min}")
        if not 0 < self.epsilon_decay_fraction <= 1:
            raise ValueError(f"TDConfig.epsilon_decay_fraction must be in (0, 1], got {self.epsilon_decay_fraction}")

    def epsilon(self, episode: int) -> float:
        """Exploration rate of an episode: linear from ``epsilon_start`` to ``epsilon_end``, then flat."""
        frac = min(1.0, episode / max(1.0, self.epsilon_decay_fraction * self.episodes))
        return self.epsilon_start + frac * (self.epsilon_end - self.epsilon_start)

    def step_size(self, visits: int) -> float:
        """Learning rate of the ``visits``-th update of one state-action (visits >= 1)."""
        return max(self.lr_min, self.learning_rate / max(1, visits) ** self.lr_power)


def q_learning_target(Q: np.ndarray, reward: float, next_state: int, terminated: bool, gamma: float) -> float:
    """``r + gamma * (1 - terminated) * max_a' Q(s', a')`` (notebook 05)."""
    return reward + gamma * (not terminated) * float(Q[next_state].max())


def sarsa_target(Q: np.ndarray, reward: float, next_state: int, next_action: int, terminated: bool, gamma: float) -> float:
    """``r + gamma * (1 - terminated) * Q(s', a')`` for the action ``a'`` actually taken next (notebook 05)."""
    return reward + gamma * (not terminated) * float(Q[next_state, next_action])


def epsilon_greedy_probs(q_row: np.ndarray, epsilon: float) -> np.ndarray:
    """Action probabilities of epsilon-greedy on one row of Q (ties: the lowest index is greedy) (notebook 05)."""
    probs = np.full(len(q_row), epsilon / len(q_row))
    probs[int(np.argmax(q_row))] += 1.0 - epsilon
    return probs


def expected_sarsa_target(Q: np.ndarray, reward: float, next_state: int, terminated: bool, gamma: float,
                          epsilon: float) -> float:
    """``r + gamma * (1 - terminated) * E_{a' ~ eps-greedy} Q(s', a')`` (notebook 05)."""
    value = float(epsilon_greedy_probs(Q[next_state], epsilon) @ Q[next_state])
    return reward + gamma * (not terminated) * value


def td_update(Q: np.ndarray, state: int, action: int, target: float, alpha: float) -> float:
    """Move ``Q(s, a)`` a fraction ``alpha`` towards ``target``; returns the TD error (notebook 05)."""
    error = target - Q[state, action]
    Q[state, action] += alpha * error
    return float(error)


@dataclass
class TDResult:
    """What :func:`train_td` learned: the Q-table, its greedy policy and per-episode returns (notebook 05)."""

    method: str
    Q: np.ndarray
    returns: np.ndarray  # undiscounted return of each training episode (exploration included)
    discounted: np.ndarray  # discounted return of each training episode
    visits: np.ndarray  # [S, A] updates per state-action
    config: TDConfig

    @property
    def policy(self) -> np.ndarray:
        return greedy_policy(self.Q)


class ModelSampler:
    """Samples episodes of a :class:`TabularMDP` step by step, as an environment would (notebook 05)."""

    def __init__(self, mdp: TabularMDP, seed: int = 0):
        self.mdp = mdp
        self.rng = np.random.default_rng(seed)
        self._cum = np.cumsum(mdp.P, axis=2)
        self._cum[..., -1] = 1.0  # guard against rounding: the last bin always catches u < 1
        self._start = np.cumsum(mdp.start)
        self._start[-1] = 1.0

    def reset(self) -> int:
        return int(np.searchsorted(self._start, self.rng.random(), side="right"))

    def step(self, state: int, action: int) -> tuple[int, float, bool]:
        """``(next_state, reward, terminated)``."""
        nxt = int(np.searchsorted(self._cum[state, action], self.rng.random(), side="right"))
        return nxt, float(self.mdp.R[state, action, nxt]), bool(self.mdp.terminal[nxt])


def _pick(q_row: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    if rng.random() < epsilon:
        return int(rng.integers(len(q_row)))
    return int(np.argmax(q_row))


def train_td(mdp: TabularMDP, config: TDConfig = TDConfig(), method: str = "q_learning",
             progress: bool = False, Q_init: np.ndarray | None = None) -> TDResult:
    """Tabular Q-learning, SARSA or expected SARSA on episodes sampled from ``mdp`` (notebook 05).

    The learner sees only sampled ``(s, a, r, s', terminated)``; ``P`` and ``R`` stay hidden in the sampler.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(config, TDConfig):
        raise TypeError(f"config must be a TDConfig, got {type(config).__name__}")
    gamma = config.gamma
    env = ModelSampler(mdp, seed=config.seed)
    rng = np.random.default_rng([config.seed, 1])  # exploration draws, apart from the world's draws
    Q = np.zeros((mdp.n_states, mdp.n_actions)) if Q_init is None else np.array(Q_init, dtype=float)
    visits = np.zeros((mdp.n_states, mdp.n_actions), dtype=np.int64)
    returns = np.zeros(config.episodes)
    discounted = np.zeros(config.episodes)
    episodes = range(config.episodes)
    if progress:
        from tqdm.auto import tqdm

        episodes = tqdm(episodes, desc=method, leave=False)
    for episode in episodes:
        eps = config.epsilon(episode)
        s = env.reset()
        a = _pick(Q[s], eps, rng)
        total, disc, weight = 0.0, 0.0, 1.0
        for _ in range(config.max_steps):
            if mdp.terminal[s]:
                break
            s2, r, terminated = env.step(s, a)
            a2 = _pick(Q[s2], eps, rng)  # the next action (SARSA learns about it; others just act on it)
            if method == "q_learning":
                target = q_learning_target(Q, r, s2, terminated, gamma)
            elif method == "sarsa":
                target = sarsa_target(Q, r, s2, a2, terminated, gamma)
            else:
                target = expected_sarsa_target(Q, r, s2, terminated, gamma, eps)
            visits[s, a] += 1
            td_update(Q, s, a, target, config.step_size(visits[s, a]))
            total += r
            disc += weight * r
            weight *= gamma
            if terminated:
                break
            s, a = s2, a2
        returns[episode], discounted[episode] = total, disc
    return TDResult(method, Q, returns, discounted, visits, config)


def config_table(config) -> str:
    """A dataclass config as ``name = value`` lines, for printing beside results (notebook 05)."""
    return "\n".join(f"{k:>24} = {v}" for k, v in asdict(config).items())
