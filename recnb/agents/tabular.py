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

from .._checks import check_int, check_probability, check_range, check_seed, need

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
    # the name says what the values mean: near 1 weighs the far future, 0 is myopic
    return check_range("gamma (the discount factor; 0 = myopic, near 1 = far-sighted)", gamma, 0, 1, closed="left")


def check_epsilon(epsilon: float, name: str = "epsilon") -> float:
    """``epsilon`` as a float, or a clear error when it is outside [0, 1] (notebook 05)."""
    return check_probability(f"{name} (an exploration probability)", epsilon)


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
            raise ValueError(
                f"a deterministic policy is one action in [0, {mdp.n_actions}) per state "
                f"({mdp.n_states} states), got shape {policy.shape}"
            )
        return np.eye(mdp.n_actions)[policy]
    if policy.shape != (mdp.n_states, mdp.n_actions) or not np.allclose(policy.sum(1), 1.0):
        raise ValueError(f"a stochastic policy has shape ({mdp.n_states}, {mdp.n_actions}) and rows summing to 1")
    return policy


# ---------------------------------------------------------------- learning (TD control)


@dataclass(frozen=True)
class TDConfig:
    """Hyperparameters of tabular TD control, the ones the source article lists and more (notebook 05).

    Frozen, and validated on creation."""

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
        check_int("TDConfig.episodes", self.episodes, minimum=1)
        check_range("TDConfig.gamma (the discount factor)", self.gamma, 0, 1, closed="left")
        check_range("TDConfig.learning_rate", self.learning_rate, 0, 1, closed="right")
        if isinstance(self.lr_power, bool) or self.lr_power != 0:  # 0: a constant step size
            check_range("TDConfig.lr_power (or 0 for a constant step)", self.lr_power, 0.5, 1, closed="right")
        check_range("TDConfig.lr_min (at most learning_rate)", self.lr_min, 0, self.learning_rate)
        check_probability("TDConfig.epsilon_start", self.epsilon_start)
        check_probability("TDConfig.epsilon_end", self.epsilon_end)
        check_range("TDConfig.epsilon_decay_fraction", self.epsilon_decay_fraction, 0, 1, closed="right")
        check_int("TDConfig.max_steps", self.max_steps, minimum=1)
        check_seed("TDConfig.seed", self.seed)

    def epsilon(self, episode: int) -> float:
        """Exploration rate of an episode: linear from ``epsilon_start`` to ``epsilon_end``, then flat."""
        frac = min(1.0, episode / max(1.0, self.epsilon_decay_fraction * self.episodes))
        return self.epsilon_start + frac * (self.epsilon_end - self.epsilon_start)

    def step_size(self, visits: int) -> float:
        """Learning rate of the ``visits``-th update of one state-action (visits >= 1)."""
        return float(self.step_sizes(np.asarray(visits)))

    def step_sizes(self, visits: np.ndarray) -> np.ndarray:
        """:meth:`step_size` of an array of visit counts."""
        return np.maximum(self.lr_min, self.learning_rate / np.maximum(1, visits) ** self.lr_power)


def q_learning_target(Q: np.ndarray, reward: float, next_state: int, terminated: bool, gamma: float) -> float:
    """``r + gamma * (1 - terminated) * max_a' Q(s', a')`` (notebook 05)."""
    return reward + gamma * (not terminated) * float(Q[next_state].max())


def sarsa_target(
    Q: np.ndarray, reward: float, next_state: int, next_action: int, terminated: bool, gamma: float
) -> float:
    """``r + gamma * (1 - terminated) * Q(s', a')`` for the action ``a'`` actually taken next (notebook 05)."""
    return reward + gamma * (not terminated) * float(Q[next_state, next_action])


def epsilon_greedy_probs(q_row: np.ndarray, epsilon: float) -> np.ndarray:
    """Action probabilities of epsilon-greedy on one row of Q (ties: the lowest index is greedy) (notebook 05)."""
    probs = np.full(len(q_row), epsilon / len(q_row))
    probs[int(np.argmax(q_row))] += 1.0 - epsilon
    return probs


def expected_sarsa_target(
    Q: np.ndarray, reward: float, next_state: int, terminated: bool, gamma: float, epsilon: float
) -> float:
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
    """What :func:`train_td` learned: the Q-table, its greedy policy and learning curves (notebook 05)."""

    method: str
    Q: np.ndarray
    returns: np.ndarray  # undiscounted return of each training episode (exploration included)
    discounted: np.ndarray  # discounted return of each training episode
    visits: np.ndarray  # [S, A] updates per state-action
    curve_episodes: np.ndarray  # episodes finished at each checkpoint
    curve_values: np.ndarray  # exact value of the greedy policy at each checkpoint (policy_value)
    config: TDConfig

    @property
    def policy(self) -> np.ndarray:
        return greedy_policy(self.Q)


class ModelSampler:
    """Samples a batch of parallel episodes of a :class:`TabularMDP`, as an environment would (notebook 05)."""

    def __init__(self, mdp: TabularMDP, seed: int = 0):
        self.mdp = mdp
        self.rng = np.random.default_rng(seed)
        self._cum = np.cumsum(mdp.P, axis=2)
        self._cum[..., -1] = 1.0  # guard against rounding: the last bin always catches u < 1
        self._start = np.cumsum(mdp.start)
        self._start[-1] = 1.0

    def reset(self, n: int) -> np.ndarray:
        """``n`` start states."""
        return np.searchsorted(self._start, self.rng.random(n), side="right")

    def step(self, states: np.ndarray, actions: np.ndarray):
        """``(next_states, rewards, terminated)`` for arrays of states and actions."""
        u = self.rng.random(len(states))
        nxt = (self._cum[states, actions] <= u[:, None]).sum(1)
        return nxt, self.mdp.R[states, actions, nxt], self.mdp.terminal[nxt]


def epsilon_greedy(Q: np.ndarray, states: np.ndarray, epsilon, rng: np.random.Generator) -> np.ndarray:
    """One epsilon-greedy action per state (``epsilon`` a number or one per state) (notebook 05)."""
    greedy = Q[states].argmax(1)
    explore = rng.random(len(states)) < epsilon
    return np.where(explore, rng.integers(Q.shape[1], size=len(states)), greedy)


def td_targets(method: str, Q: np.ndarray, rewards, next_states, next_actions, terminated, gamma: float, epsilon):
    """Vectorised TD targets of Q-learning, SARSA or expected SARSA (notebook 05)."""
    q_next = Q[next_states]
    if method == "q_learning":
        value = q_next.max(1)
    elif method == "sarsa":
        value = q_next[np.arange(len(next_states)), next_actions]
    else:  # expected SARSA under the epsilon-greedy policy that acts
        eps = np.broadcast_to(np.asarray(epsilon, dtype=float), (len(next_states),))
        value = (1 - eps) * q_next.max(1) + eps * q_next.mean(1)
    return rewards + gamma * (1.0 - terminated) * value


def train_td(
    mdp: TabularMDP,
    config: TDConfig = TDConfig(),
    method: str = "q_learning",
    parallel: int = 1,
    eval_every: int = 0,
    progress: bool = False,
    Q_init: np.ndarray | None = None,
) -> TDResult:
    """Tabular Q-learning, SARSA or expected SARSA on episodes sampled from ``mdp`` (notebook 05).

    The learner sees only sampled ``(s, a, r, s', terminated)``; ``P`` and ``R`` stay hidden in the
    sampler. ``parallel`` episodes run side by side (a new one starts in a slot when one ends); each
    step applies their TD updates together, averaging the errors of a state-action hit more than
    once, so ``parallel=1`` is the textbook one-update-per-step algorithm. ``eval_every`` > 0
    records the exact value of the greedy policy every so many finished episodes (the learning curve).
    """
    need(method in METHODS, f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(config, TDConfig):
        raise TypeError(f"config must be a TDConfig, got {type(config).__name__}")
    check_int("parallel", parallel, minimum=1)
    gamma, S, A, E = config.gamma, mdp.n_states, mdp.n_actions, config.episodes
    env = ModelSampler(mdp, seed=config.seed)
    rng = np.random.default_rng([config.seed, 1])  # exploration draws, apart from the world's draws
    Q = np.zeros((S, A)) if Q_init is None else np.array(Q_init, dtype=float)
    visits = np.zeros((S, A), dtype=np.int64)
    returns, discounted = np.zeros(E), np.zeros(E)
    curve_x, curve_y = [], []
    B = min(int(parallel), E)
    episode = np.arange(B)  # which episode each slot is playing
    started, finished = B, 0
    steps, weight = np.zeros(B, dtype=np.int64), np.ones(B)
    eps_of = np.array([config.epsilon(e) for e in range(E)])
    s = env.reset(B)
    a = epsilon_greedy(Q, s, eps_of[episode], rng)
    live = ~mdp.terminal[s]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=E, desc=method, leave=False)
    while live.any():
        idx = np.flatnonzero(live)
        si, ai, eps = s[idx], a[idx], eps_of[episode[idx]]
        s2, r, term = env.step(si, ai)
        a2 = epsilon_greedy(Q, s2, eps, rng)  # the next action (SARSA learns about it; the others just act on it)
        error = td_targets(method, Q, r, s2, a2, term, gamma, eps) - Q[si, ai]
        flat = si * A + ai
        hits = np.bincount(flat, minlength=S * A).reshape(S, A)
        error_sum = np.bincount(flat, weights=error, minlength=S * A).reshape(S, A)
        touched = hits > 0
        visits += hits
        step = np.minimum(1.0, hits[touched] * config.step_sizes(visits[touched]))
        Q[touched] += step * error_sum[touched] / hits[touched]
        ep = episode[idx]
        returns[ep] += r
        discounted[ep] += weight[idx] * r
        weight[idx] *= gamma
        steps[idx] += 1
        s[idx], a[idx] = s2, a2
        done = term | (steps[idx] >= config.max_steps)  # truncation ends the episode but bootstrapped above
        for slot in idx[done]:  # finished episodes hand their slot to the next one
            finished += 1
            if bar is not None:
                bar.update(1)
            if eval_every and finished % eval_every == 0:
                curve_x.append(finished)
                curve_y.append(policy_value(mdp, greedy_policy(Q), gamma))
            if started < E:
                episode[slot], started = started, started + 1
                s[slot] = env.reset(1)[0]
                a[slot] = epsilon_greedy(Q, s[slot : slot + 1], eps_of[episode[slot]], rng)[0]
                steps[slot], weight[slot] = 0, 1.0
                live[slot] = not mdp.terminal[s[slot]]
            else:
                live[slot] = False
    if bar is not None:
        bar.close()
    return TDResult(method, Q, returns, discounted, visits, np.asarray(curve_x), np.asarray(curve_y), config)


def config_table(config) -> str:
    """A dataclass config as ``name = value`` lines, for printing beside results (notebook 05)."""
    return "\n".join(f"{k:>24} = {v}" for k, v in asdict(config).items())


def q_update_cases() -> list:
    """Hand-worked cases for the notebook-05 exercise ``q_update(Q, s, a, r, s_next, terminated, alpha, gamma)``."""
    from ..exercises import Case

    def q(*rows):
        return np.array(rows, dtype=float)

    return [
        Case(
            (q([0, 0], [1, 2]), 0, 1, 1.0, 1, False, 0.5, 0.9),
            q([0, 1.4], [1, 2]),
            "target = r + gamma * max_a' Q(s', a') = 1 + 0.9 * 2 = 2.8; move Q(s, a) half of the way there",
        ),
        Case(
            (q([0, 0], [1, 2]), 0, 1, 1.0, 1, True, 0.5, 0.9),
            q([0, 0.5], [1, 2]),
            "terminated: the user left, there is no future to bootstrap from, so target = r",
        ),
        Case(
            (q([0, 3], [1, 2]), 0, 1, 0.0, 1, False, 0.1, 0.5),
            q([0, 2.8], [1, 2]),
            "a step of alpha times the TD error (target - Q(s, a)): 3 + 0.1 * (1 - 3); do not overwrite Q(s, a)",
        ),
        Case(
            (q([0, 0], [5, -1]), 1, 1, 2.0, 0, False, 1.0, 0.0),
            q([0, 0], [5, 2]),
            "gamma = 0 is myopic: the target is the immediate reward alone",
        ),
        Case(
            (q([2, 0], [0, 0]), 1, 0, 0.0, 0, False, 1.0, 0.5),
            q([2, 0], [1, 0]),
            "the bootstrap uses the best next action, max_a' Q(s', a'), not the mean of Q(s', .)",
        ),
    ]
