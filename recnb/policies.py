"""Baseline policies for the simulated user, and how to evaluate any policy (notebook 04).

A policy is any callable ``policy(env) -> actions``: it looks at the environment and returns a
LongTensor of item ids, ``[n_users]`` for single items or ``[n_users, slate_size]`` for slates. A
policy with a ``reset(seed)`` method is reseeded at the start of every evaluation. ``env`` is a
:class:`recnb.platform.PlatformEnv` (what a platform sees) or, for random, popularity and the
oracle, the bare simulator.

* :class:`RandomPolicy` -- a uniformly random unconsumed item.
* :class:`PopularityPolicy` -- the most-rated (training split) unconsumed item.
* :class:`PlatformGreedyPolicy` -- the platform recommender's best item: the main myopic baseline.
* :class:`DiversifyingPolicy` -- platform-greedy minus a penalty on the genres the user clicked
  lately (from the log): a one-line plan against fatigue; tune its penalty on training users.
* :class:`MMRPolicy` -- maximal marginal relevance: platform score minus the similarity to the
  films clicked lately (the platform's item factors).
* :class:`GreedyPolicy` -- the **oracle**: the best immediate expected reward under the simulator's
  own hidden click model, which no platform has. A reference, never a baseline to beat.

:func:`evaluate_policy` runs a policy on fresh users (docs/protocols.md, simulator protocol) and
reports mean return, episode length (retention) and click rate with 95% Student-t intervals
(:func:`recnb.stats.mean_ci`); :func:`paired_difference` compares two evaluations on the same users, user by
user (:func:`recnb.stats.paired_ci`), and
:func:`seed_average` pools a training procedure's seeds into one such evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import stats
from ._checks import check_int, check_non_negative, check_seed, need
from .platform import platform_view

NEG = -1e9  # score of an unavailable item


def top_items(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best available items per user, as ``[B]`` when ``k == 1`` else ``[B, k]`` (notebook 04)."""
    best = scores.masked_fill(~mask, NEG).topk(k, dim=1).indices
    return best.squeeze(1) if k == 1 else best


class RandomPolicy:
    """A uniformly random unconsumed item (or slate) per user (notebook 04)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.reset(seed)

    def reset(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(check_seed("RandomPolicy seed", seed))

    def __call__(self, sim) -> torch.Tensor:
        mask = sim.available_mask()
        noise = torch.rand(mask.shape, generator=self.generator).to(mask.device)
        return top_items(noise, mask, sim.config.slate_size)


class PopularityPolicy:
    """The most popular (most training ratings) unconsumed items (notebook 04)."""

    name = "popularity"

    def __call__(self, sim) -> torch.Tensor:
        mask = sim.available_mask()
        return top_items(sim.item_popularity.expand_as(mask), mask, sim.config.slate_size)


class GreedyPolicy:
    """**Oracle**: the best immediate expected reward under the simulator's hidden model (notebook 04).

    No platform has the simulated user's true click model, so this is a reference (and, with
    long-term effects off, the optimum), never a baseline an agent could be given. On a
    :class:`recnb.platform.PlatformEnv` it reads the wrapped simulator.
    """

    name = "oracle greedy"

    def __call__(self, env) -> torch.Tensor:
        sim = getattr(env, "sim", env)
        return top_items(sim.expected_reward(), env.available_mask(), env.config.slate_size)


class PlatformGreedyPolicy:
    """The platform recommender's best unconsumed films (BPR fitted on the training logs) (notebook 06)."""

    name = "greedy (platform)"

    def __call__(self, env) -> torch.Tensor:
        env = platform_view(env, type(self).__name__)
        return top_items(env.platform_scores(), env.available_mask(), env.config.slate_size)


class DiversifyingPolicy:
    """Platform-greedy on ``score - penalty * recent clicks on the film's genres`` (notebook 04).

    Clicking a film of a genre the user has just consumed a lot adds to their fatigue, which costs
    future clicks and satisfaction; greedy ignores that cost, this one-line heuristic prices it.
    Its penalty is a hyperparameter: tune it on training users (:func:`tune_heuristic`).
    """

    name = "diversifying"

    def __init__(self, penalty: float = 0.5):
        self.penalty = check_non_negative("DiversifyingPolicy penalty", penalty)

    def __call__(self, env) -> torch.Tensor:
        env = platform_view(env, type(self).__name__)
        score = env.platform_scores() - self.penalty * env.genre_exposure()
        return top_items(score, env.available_mask(), env.config.slate_size)


class MMRPolicy:
    """Maximal marginal relevance: ``score - weight * max cosine(film, recently clicked films)`` (notebook 06).

    Similarity is read from the platform's item factors, so it sees more than genres.
    """

    name = "MMR"

    def __init__(self, weight: float = 0.5):
        self.weight = check_non_negative("MMRPolicy weight", weight)
        self._similarity = None  # [N, N] cosine of the item factors, clamped at 0; computed once per catalogue

    def __call__(self, env) -> torch.Tensor:
        env = platform_view(env, type(self).__name__)
        score = env.platform_scores()
        if self.weight > 0:  # weight 0 is platform-greedy: skip the [B, K, N] similarity look-up
            score = score - self.weight * self.recent_similarity(env)
        return top_items(score, env.available_mask(), env.config.slate_size)

    def recent_similarity(self, env) -> torch.Tensor:
        """``max(0, max cosine(film, recently clicked film))`` per user and film [B, N] (0 without history)."""
        if self._similarity is None or self._similarity.shape[0] != env.n_items:
            unit = torch.nn.functional.normalize(env.platform.item_factors.to(env.device), dim=1)
            self._similarity = (unit @ unit.T).clamp_min_(0)  # one matmul, then each step only reads rows
        hist = env.history
        valid = hist < env.n_items
        recent = self._similarity.index_select(0, hist.clamp(max=env.n_items - 1).reshape(-1)).view(*hist.shape, -1)
        return recent.masked_fill_(~valid[..., None], 0.0).amax(1)


@dataclass
class Evaluation:
    """Per-user returns, episode lengths and click rates of one policy, with 95% Student-t CIs (notebook 04)."""

    policy: str
    returns: np.ndarray
    lengths: np.ndarray
    click_rates: np.ndarray
    seed: int

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    @property
    def mean_length(self) -> float:
        return float(self.lengths.mean())

    @property
    def click_rate(self) -> float:
        return float(self.click_rates.mean())

    def summary(self) -> dict:
        """Means and their 95% Student-t half-widths (:func:`recnb.stats.mean_ci`), one flat dict (a table row)."""
        out = {"policy": self.policy, "users": len(self.returns)}
        for name, values in (("return", self.returns), ("length", self.lengths), ("click_rate", self.click_rates)):
            mean, half = stats.mean_ci(values)
            out[name], out[f"{name}_ci95"] = mean, half
        return out

    def __str__(self) -> str:
        s = self.summary()
        return (
            f"{self.policy}: return {s['return']:.3f} ± {s['return_ci95']:.3f}, length {s['length']:.1f} ± "
            f"{s['length_ci95']:.1f}, click rate {s['click_rate']:.3f} ± {s['click_rate_ci95']:.3f} "
            f"({s['users']} users, seed {self.seed})"
        )


@torch.no_grad()
def evaluate_policy(sim, policy, n_users: int = 1000, seed: int = 0, users=None, progress: bool = False) -> Evaluation:
    """Run ``policy`` on ``n_users`` fresh simulated users until every episode ends (notebook 04).

    The same ``seed`` gives the same users and the same random draws, so policies are compared on
    common random numbers. ``users`` restricts which calibration users are simulated (e.g. a
    held-out half for reporting after tuning on the other half).
    """
    check_int("n_users (>= 2 for a confidence interval)", n_users, minimum=2)
    check_seed("seed", seed)
    if hasattr(policy, "reset"):
        policy.reset(seed)
    if users is not None:
        pool = torch.as_tensor(users, dtype=torch.long)
        pick = torch.randint(0, len(pool), (n_users,), generator=torch.Generator().manual_seed(seed))
        users = pool[pick]
    sim.reset(n_users, seed=seed, users=users)
    total = torch.zeros(n_users, device=sim.device)
    clicks = torch.zeros(n_users, device=sim.device)
    steps = torch.zeros(n_users, device=sim.device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sim.config.horizon, desc=getattr(policy, "name", "policy"), leave=False)
    while bool(sim.active.any()):
        _, reward, _, _, info = sim.step(policy(sim))
        total += reward
        clicks += info["clicked"].float()
        steps += info["was_active"].float()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    lengths = steps.double().cpu().numpy()
    return Evaluation(
        getattr(policy, "name", type(policy).__name__),
        total.double().cpu().numpy(),
        lengths,
        (clicks.double().cpu().numpy() / np.maximum(lengths, 1)),
        seed,
    )


@dataclass
class Comparison:
    """``a - b`` user by user on the same simulated users (common random numbers) (notebook 06)."""

    a: str
    b: str
    diff: float
    """Mean per-user return difference."""
    ci95: float
    """Half-width of its 95% Student-t interval of the per-user differences (:func:`recnb.stats.paired_ci`)."""
    relative: float
    """``diff / mean return of b``."""
    relative_ci95: float
    """``ci95 / mean return of b`` (the baseline's mean taken as known)."""
    users: int

    @property
    def excludes_zero(self) -> bool:
        return abs(self.diff) > self.ci95

    def __str__(self) -> str:
        return (
            f"{self.a} - {self.b}: {self.diff:+.3f} ± {self.ci95:.3f} return per user "
            f"({self.relative:+.1%} ± {self.relative_ci95:.1%}; paired, {self.users} users)"
        )


def seed_average(evaluations, name: str | None = None) -> Evaluation:
    """One :class:`Evaluation` whose per-user figures are the mean over several runs on the same users (notebook 06).

    Give it the evaluations of one training procedure's seeds (same evaluation seed and users): the
    result is that procedure, not one lucky run, ready for :func:`paired_difference`.
    """
    runs = list(evaluations)
    need(
        runs and len({(e.seed, len(e.returns)) for e in runs}) == 1,
        "seed_average needs one or more evaluations with the same seed and number of users",
    )

    def mean(attr):
        return np.mean([getattr(e, attr) for e in runs], axis=0)

    return Evaluation(name or runs[0].policy, mean("returns"), mean("lengths"), mean("click_rates"), runs[0].seed)


def paired_difference(a: Evaluation, b: Evaluation) -> Comparison:
    """Paired per-user comparison of two evaluations run with the same seed and users (notebook 06)."""
    need(
        a.seed == b.seed and len(a.returns) == len(b.returns),
        "a paired comparison needs two evaluations with the same seed and number of users",
    )
    diff, half = stats.paired_ci(a.returns, b.returns)
    base = float(b.returns.mean())
    return Comparison(a.policy, b.policy, diff, half, diff / base, half / base, len(a.returns))


def tune_heuristic(env, make_policy, grid, n_users: int = 1000, seed: int = 0) -> tuple[float, dict]:
    """Pick the parameter of ``make_policy(value)`` with the best mean return on ``env``'s users (notebook 06).

    Pass an env whose pool holds the *training* users only: a heuristic tuned on the users it is
    reported on is flattered exactly as an agent would be. Returns (best value, {value: mean return}).
    """
    values = list(grid)
    need(values, "grid is empty: give the values to try, e.g. [0, 0.5, 1, 2]")
    returns = {v: evaluate_policy(env, make_policy(v), n_users=n_users, seed=seed).mean_return for v in values}
    return max(returns, key=returns.get), returns
