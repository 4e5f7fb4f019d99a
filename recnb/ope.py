"""Off-policy evaluation: estimate a new policy's value from logs of another (notebook 10).

Logs are bandit feedback: for each logged round ``i`` a context ``x_i``, the action ``a_i`` the logging
policy took with probability ``p_i`` (its propensity), and the reward ``r_i`` observed for it. The target
policy is given as a matrix ``target[i, a] = pi(a | x_i)`` over the actions of each round.

Estimators (each returns an :class:`Estimate`: a value, its standard error and a Student-t 95% interval, both
from :mod:`recnb.stats`):

* :func:`direct_method` -- average the reward model's prediction under the target policy (biased when
  the model is wrong; low variance).
* :func:`ips` -- reweight observed rewards by ``pi(a_i|x_i) / p_i``; unbiased when propensities are
  right and positive, high variance when the policies differ; optional weight clipping (biased, lower variance).
* :func:`snips` -- self-normalised IPS: divide by the mean weight instead of 1 (slightly biased, much steadier).
* :func:`doubly_robust` -- direct method plus an IPS correction of the model's residual: unbiased if either
  the propensities or the reward model are right. :func:`cross_fit` makes the model's predictions
  out-of-fold so the same logs do not both train and correct it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import stats
from ._checks import check_int, check_non_negative, check_positive, check_seed, need


@dataclass(frozen=True)
class Estimate:
    """A policy-value estimate, its standard error and 95% confidence interval."""

    value: float
    """The estimated value of the target policy (mean reward per round)."""
    stderr: float
    """Standard error of the estimate (:func:`recnb.stats.standard_error` of its per-round terms)."""
    estimator: str
    """Which estimator, e.g. ``"IPS"`` or ``"DR"``."""
    rounds: int
    """Logged rounds the estimate averages (the interval has ``rounds - 1`` degrees of freedom)."""

    @property
    def ci(self) -> tuple[float, float]:
        """The Student-t 95% interval ``(low, high)`` (NaN for a single round)."""
        half = stats.t_quantile(self.rounds) * self.stderr if self.rounds > 1 else float("nan")
        return self.value - half, self.value + half

    def __str__(self) -> str:
        lo, hi = self.ci
        return f"{self.estimator}: {self.value:.4f} (95% CI {lo:.4f} to {hi:.4f})"


def _as_logs(actions, rewards, propensities, target):
    actions = np.asarray(actions)
    rewards = np.asarray(rewards, dtype=float)
    propensities = np.asarray(propensities, dtype=float)
    target = np.asarray(target, dtype=float)
    n = len(actions)
    if n == 0:
        raise ValueError("the log is empty: off-policy evaluation needs at least one logged round")
    if rewards.shape != (n,) or propensities.shape != (n,):
        raise ValueError(
            f"actions, rewards and propensities must be 1-D of one length, got {actions.shape}, "
            f"{rewards.shape}, {propensities.shape}"
        )
    if target.ndim != 2 or target.shape[0] != n:
        raise ValueError(f"target must be a [rounds, actions] matrix of pi(a|x), got shape {target.shape}")
    if actions.min() < 0 or actions.max() >= target.shape[1]:
        raise ValueError(f"logged actions must be in [0, {target.shape[1]}); got {actions.min()}..{actions.max()}")
    if not (np.all(propensities > 0) and np.all(propensities <= 1)):
        raise ValueError(
            "propensities must be in (0, 1]: a logged action with probability 0 cannot be "
            "reweighted; log the logging policy's probability of the action it took"
        )
    if np.any(target < -1e-9) or not np.allclose(target.sum(1), 1, atol=1e-6):
        raise ValueError("each row of target must be a probability distribution over actions (>= 0, sums to 1)")
    return actions, rewards, propensities, target


def _estimate(terms: np.ndarray, name: str, value: float | None = None) -> Estimate:
    """An estimate from its per-round terms: their mean (unless ``value`` is given) and its standard error."""
    value = float(terms.mean()) if value is None else value
    return Estimate(value, stats.standard_error(terms), name, len(terms))


def importance_weights(actions, propensities, target, clip: float | None = None) -> np.ndarray:
    """``pi(a_i|x_i) / p_i`` for each logged round, optionally clipped at ``clip`` (notebook 10)."""
    actions, propensities, target = np.asarray(actions), np.asarray(propensities, float), np.asarray(target, float)
    w = target[np.arange(len(actions)), actions] / propensities
    if clip is not None:
        w = np.minimum(w, check_positive("clip", clip))
    return w


def effective_sample_size(weights) -> float:
    """Kish's effective sample size of importance weights: how many logs the estimate is really worth."""
    w = np.asarray(weights, float)
    return float(w.sum() ** 2 / np.square(w).sum())


def direct_method(target, predicted_rewards) -> Estimate:
    """Mean over rounds of sum_a pi(a|x) q_hat(x, a) (notebook 10)."""
    target, q = np.asarray(target, float), np.asarray(predicted_rewards, float)
    if target.shape != q.shape:
        raise ValueError(f"target {target.shape} and predicted_rewards {q.shape} must have one shape [rounds, actions]")
    return _estimate((target * q).sum(1), "DM")


def ips(actions, rewards, propensities, target, clip: float | None = None) -> Estimate:
    """Inverse propensity scoring, optionally with clipped weights (notebook 10)."""
    actions, rewards, propensities, target = _as_logs(actions, rewards, propensities, target)
    w = importance_weights(actions, propensities, target, clip)
    return _estimate(w * rewards, "IPS" if clip is None else f"IPS (clip {clip:g})")


def snips(actions, rewards, propensities, target) -> Estimate:
    """Self-normalised IPS: sum(w r) / sum(w); stderr by the delta method (notebook 10)."""
    actions, rewards, propensities, target = _as_logs(actions, rewards, propensities, target)
    w = importance_weights(actions, propensities, target)
    if w.sum() <= 0:
        raise ValueError("the target policy never takes a logged action: SNIPS is undefined; log more varied actions")
    value = float((w * rewards).sum() / w.sum())
    terms = w * (rewards - value) / w.mean()  # influence function of the ratio estimator
    return _estimate(terms, "SNIPS", value)


def doubly_robust(actions, rewards, propensities, target, predicted_rewards) -> Estimate:
    """DM + mean of w * (r - q_hat(x, a)): unbiased if propensities or the model are right (notebook 10)."""
    actions, rewards, propensities, target = _as_logs(actions, rewards, propensities, target)
    q = np.asarray(predicted_rewards, float)
    if q.shape != target.shape:
        raise ValueError(f"predicted_rewards {q.shape} must match target {target.shape}")
    w = importance_weights(actions, propensities, target)
    rows = np.arange(len(actions))
    terms = (target * q).sum(1) + w * (rewards - q[rows, actions])
    return _estimate(terms, "DR")


def cross_fit(
    n_rounds: int,
    fit: Callable[[np.ndarray], object],
    predict: Callable[[object, np.ndarray], np.ndarray],
    folds: int = 2,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold reward predictions: fit on the other folds, predict each fold's rounds (notebook 10).

    ``fit(train_rows) -> model`` and ``predict(model, rows) -> [len(rows), n_actions]``.
    """
    check_int("cross_fit folds", folds, minimum=2)
    need(n_rounds >= folds, f"{n_rounds} rounds cannot be split into {folds} folds; use fewer folds")
    order = np.random.default_rng(check_seed("seed", seed)).permutation(n_rounds)
    parts = np.array_split(order, folds)
    out = None
    for k, rows in enumerate(parts):
        model = fit(np.concatenate([p for j, p in enumerate(parts) if j != k]))
        pred = np.asarray(predict(model, rows), float)
        if out is None:
            out = np.empty((n_rounds, pred.shape[1]))
        out[rows] = pred
    return out


def tabular_reward_model(contexts, actions, rewards, n_contexts: int, n_actions: int, prior_strength: float = 1.0):
    """A simple reward model for discrete contexts: per-(context, action) mean shrunk to the action mean.

    Returns ``(fit, predict)`` for :func:`cross_fit` (notebook 10).
    """
    contexts, actions, rewards = np.asarray(contexts), np.asarray(actions), np.asarray(rewards, float)
    check_non_negative("prior_strength", prior_strength)

    def fit(rows):
        c, a, r = contexts[rows], actions[rows], rewards[rows]
        global_mean = r.mean()
        action_sum = np.bincount(a, r, minlength=n_actions)
        action_n = np.bincount(a, minlength=n_actions)
        action_mean = (action_sum + prior_strength * global_mean) / (action_n + prior_strength)
        flat = c * n_actions + a
        s = np.bincount(flat, r, minlength=n_contexts * n_actions).reshape(n_contexts, n_actions)
        k = np.bincount(flat, minlength=n_contexts * n_actions).reshape(n_contexts, n_actions)
        return (s + prior_strength * action_mean) / (k + prior_strength)

    def predict(table, rows):
        return table[contexts[rows]]

    return fit, predict
