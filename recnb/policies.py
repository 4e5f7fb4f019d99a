"""Baseline policies for the simulated user, and how to evaluate any policy (notebook 04).

A policy is any callable ``policy(sim) -> actions``: it looks at the simulator (its observation,
``available_mask()``, ``expected_reward()``, item features) and returns a LongTensor of item ids,
``[n_users]`` for single items or ``[n_users, slate_size]`` for slates. A policy with a
``reset(seed)`` method is reseeded at the start of every evaluation.

* :class:`RandomPolicy` -- a uniformly random unconsumed item.
* :class:`PopularityPolicy` -- the most-rated (training split) unconsumed item.
* :class:`GreedyPolicy` -- the best immediate expected reward under the simulator's own model.
* :class:`DiversifyingPolicy` -- greedy minus a penalty for genres the user consumed lately: a
  hand-written one-line plan against fatigue, which beats greedy when long-term effects are on.

:func:`evaluate_policy` runs a policy on fresh users (DESIGN section 7, simulator protocol) and
reports mean return, episode length (retention) and click rate with 95% confidence intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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
        self.generator = torch.Generator().manual_seed(int(seed))

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
    """The items with the best immediate expected reward under the simulator's own model (notebook 04)."""

    name = "greedy"

    def __call__(self, sim) -> torch.Tensor:
        return top_items(sim.expected_reward(), sim.available_mask(), sim.config.slate_size)


class DiversifyingPolicy:
    """Greedy on ``expected reward - penalty * click chance * recent exposure of the item's genres`` (notebook 04).

    Clicking an item of a genre the user has just consumed a lot adds to their fatigue, which
    costs future clicks and satisfaction; greedy ignores that cost, this policy prices it.
    """

    name = "diversifying"

    def __init__(self, penalty: float = 0.5):
        if penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {penalty}")
        self.penalty = penalty

    def __call__(self, sim) -> torch.Tensor:
        score = sim.expected_reward() - self.penalty * sim.click_probability() * sim.exposure_of_items()
        return top_items(score, sim.available_mask(), sim.config.slate_size)


@dataclass
class Evaluation:
    """Per-user returns, episode lengths and click rates of one policy, with 95% CIs (notebook 04)."""

    policy: str
    returns: np.ndarray
    lengths: np.ndarray
    click_rates: np.ndarray
    seed: int

    @staticmethod
    def _ci(values: np.ndarray) -> tuple[float, float]:
        mean = float(values.mean())
        half = float(1.96 * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
        return mean, half

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
        """Means and 95% CI half-widths, one flat dict (a table row)."""
        out = {"policy": self.policy, "users": len(self.returns)}
        for name, values in (("return", self.returns), ("length", self.lengths), ("click_rate", self.click_rates)):
            mean, half = self._ci(values)
            out[name], out[f"{name}_ci95"] = mean, half
        return out

    def __str__(self) -> str:
        s = self.summary()
        return (f"{self.policy}: return {s['return']:.3f} ± {s['return_ci95']:.3f}, length {s['length']:.1f} ± "
                f"{s['length_ci95']:.1f}, click rate {s['click_rate']:.3f} ± {s['click_rate_ci95']:.3f} "
                f"({s['users']} users, seed {self.seed})")


@torch.no_grad()
def evaluate_policy(sim, policy, n_users: int = 1000, seed: int = 0, users=None, progress: bool = False) -> Evaluation:
    """Run ``policy`` on ``n_users`` fresh simulated users until every episode ends (notebook 04).

    The same ``seed`` gives the same users and the same random draws, so policies are compared on
    common random numbers. ``users`` restricts which calibration users are simulated (e.g. a
    held-out half for reporting after tuning on the other half).
    """
    if n_users < 2:
        raise ValueError(f"n_users must be >= 2 to have a confidence interval, got {n_users}")
    if hasattr(policy, "reset"):
        policy.reset(seed)
    if users is not None:
        pool = torch.as_tensor(users, dtype=torch.long)
        pick = torch.randint(0, len(pool), (n_users,), generator=torch.Generator().manual_seed(seed))
        users = pool[pick]
    sim.reset(n_users, seed=seed, users=users)
    total = torch.zeros(n_users, device=sim.device)
    clicks = torch.zeros(n_users, device=sim.device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sim.config.horizon, desc=getattr(policy, "name", "policy"), leave=False)
    while bool(sim.active.any()):
        _, reward, _, _, info = sim.step(policy(sim))
        total += reward
        clicks += info["clicked"].float()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    lengths = sim.state.t.double().cpu().numpy()
    return Evaluation(getattr(policy, "name", type(policy).__name__), total.double().cpu().numpy(), lengths,
                      (clicks.double().cpu().numpy() / np.maximum(lengths, 1)), seed)
