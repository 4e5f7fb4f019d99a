"""Reward functions: pure, vectorised, composable (notebook 04).

A reward function maps what happened when one item was shown -- a :class:`Signals` of tensors
(or arrays) that broadcast together -- to a reward of the same shape. The simulator calls it on
the realised outcome of a step (shape ``[n_users]``) and, to compute the *expected* immediate
reward that the greedy policy maximises, on the hypothetical outcome "clicked" and "not clicked"
for every item (shape ``[n_users, n_items]``). So every reward here is elementwise, has no side
effects and works on torch tensors and NumPy arrays alike.

Which signal stands for which business setting of the source article:

=================  ==========================  ============================================
setting            reward                      meaning
=================  ==========================  ============================================
ads                :func:`click`               1 per click (click-through)
content / video    :func:`watch_time`          fraction of the film watched, a rating proxy
e-commerce         :func:`conversion`          1 when the clicked item is rated >= 4 ("bought")
e-commerce repeat  retention (episode length)  repurchase = the user coming back; the
                                               simulator models it as not leaving, so it is
                                               the *return*, not a per-step reward
=================  ==========================  ============================================

:func:`composite` adds a diversity/novelty bonus and a fatigue penalty to any base reward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._checks import check_non_negative


@dataclass
class Signals:
    """What the user did with one shown item; fields broadcast together (notebook 04).

    ``click`` is 1.0/0.0 (or a bool); ``rating`` is the user's rating in [1, 5] of the item as it
    would be consumed *now* (meaningful only where clicked); ``exposure`` >= 0 is the user's
    recent consumption of the item's genres (what drives fatigue); ``novelty`` =
    ``exp(-exposure)`` in (0, 1] is 1 for a genre not consumed lately (computed only when used).
    """

    click: Any
    rating: Any
    exposure: Any = 0.0

    @property
    def novelty(self):
        e = self.exposure
        return torch.exp(-e) if isinstance(e, torch.Tensor) else np.exp(-np.asarray(e, dtype=np.float32))


RewardFn = Callable[[Signals], Any]


def _where(cond, a, b):
    """Elementwise select that works for torch tensors and NumPy arrays."""
    if isinstance(cond, torch.Tensor) or isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        cond = torch.as_tensor(cond)
        return torch.where(
            cond.bool(), torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
        )
    return np.where(np.asarray(cond, dtype=bool), a, b)


def _log1p(x):
    return torch.log1p(x) if isinstance(x, torch.Tensor) else np.log1p(x)


def _clip(x, lo, hi):
    return x.clamp(lo, hi) if isinstance(x, torch.Tensor) else np.clip(x, lo, hi)


def _float(x):
    return x.float() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def click(s: Signals):
    """Ads: 1 for a click, 0 otherwise (notebook 04)."""
    return _float(s.click) * 1.0


def rating(s: Signals):
    """The rating (1..5) of a clicked item, 0 without a click (notebook 04)."""
    return _float(s.click) * s.rating


def log_rating(s: Signals):
    """``log(rating + 1)`` of a clicked item: diminishing returns on high ratings (notebook 04)."""
    return _float(s.click) * _log1p(_clip(s.rating, 0.0, None))


def watch_time(s: Signals):
    """Content: fraction of the film watched, ``(rating - 1) / 4`` of a clicked item (notebook 04)."""
    return _float(s.click) * _clip((s.rating - 1.0) / 4.0, 0.0, 1.0)


def conversion(s: Signals, threshold: float = 4.0):
    """E-commerce: 1 when the item is clicked and rated >= ``threshold`` ("bought"), else 0 (notebook 04)."""
    return _float(s.click) * _float(s.rating >= threshold)


def composite(base: RewardFn | str = "click", diversity: float = 0.0, fatigue: float = 0.0) -> RewardFn:
    """``base + diversity * novelty - fatigue * exposure``, the bonus and penalty on clicks only (notebook 04).

    ``diversity`` rewards clicks on genres the user has not seen lately; ``fatigue`` penalises
    clicks on genres the user has consumed a lot recently. Both weights must be >= 0.
    """
    base_fn = get(base)
    check_non_negative("composite weight diversity", diversity)
    check_non_negative("composite weight fatigue", fatigue)

    def reward(s: Signals):
        clicked = _float(s.click)
        return base_fn(s) + clicked * (diversity * s.novelty - fatigue * s.exposure)

    reward.__name__ = f"composite({getattr(base_fn, '__name__', 'base')}, diversity={diversity}, fatigue={fatigue})"
    return reward


REWARDS: dict[str, RewardFn] = {
    "click": click,
    "rating": rating,
    "log_rating": log_rating,
    "watch_time": watch_time,
    "conversion": conversion,
}
SETTINGS = {"ads": "click", "content": "watch_time", "e-commerce": "conversion"}


def get(reward: RewardFn | str) -> RewardFn:
    """A reward function from its name (see ``REWARDS``) or the callable itself (notebook 04)."""
    if callable(reward):
        return reward
    if reward in REWARDS:
        return REWARDS[reward]
    raise ValueError(f"unknown reward {reward!r}; choose one of {sorted(REWARDS)} or pass a function of Signals")
