"""What an agent observes: the platform's view of the simulated user, turned into network inputs (notebooks 06-07).

One home for every function that turns an environment into an agent's observation:

* :func:`observe_platform` -- the platform's log and models as tensors (defined in :mod:`recnb.platform`,
  re-exported here): the default ``observe`` of :class:`recnb.agents.dqn.DQN`;
* :func:`restricted_observe` -- that view without the platform recommender's scores, optionally limited to
  an allowed catalogue (the cold-start study of notebook 07);
* :func:`genre_shares` -- how an item spreads one unit of exposure over its genres (the fatigue term of
  :class:`recnb.agents.networks.QNetwork`).

None of them reads the simulator's hidden state (docs/protocols.md, "What an agent sees").
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..platform import observe_platform

__all__ = ["genre_shares", "observe_platform", "restricted_observe"]


def genre_shares(env) -> torch.Tensor:
    """FloatTensor [N, G]: each item's genres, summing to 1 per item (how exposure is spread over genres)."""
    return (env.item_genres / env.item_genres.sum(1, keepdim=True)).float()


def restricted_observe(allowed: torch.Tensor | None = None, hide_history: bool = True) -> Callable:
    """``observe(env)`` for the cold-start study: the platform's view without its recommender's scores (notebook 07).

    Built on :func:`recnb.platform.observe_platform` (``env`` is a :class:`recnb.platform.PlatformEnv`):
    drops ``immediate`` (the platform's BPR scores -- it has none for a film it never logged), keeps
    the user features, history and mask; with ``allowed`` given, the mask keeps only those items and
    (if ``hide_history``) the history shows the others as padding.
    """
    allowed = None if allowed is None else torch.as_tensor(allowed, dtype=torch.bool)

    def observe(env) -> dict:
        if not hasattr(env, "platform_scores"):
            raise TypeError(
                "restricted_observe reads the platform's view: pass a recnb.platform.PlatformEnv, "
                "not the bare simulator"
            )
        obs = observe_platform(env)
        del obs["immediate"]
        if allowed is None:
            return obs
        if allowed.shape != (env.n_items,):
            raise ValueError(f"allowed must be a BoolTensor of shape ({env.n_items},), got {tuple(allowed.shape)}")
        ok = allowed.to(obs["mask"].device)
        obs["mask"] &= ok
        if hide_history:  # an unseen item is not even a name to the agent: it reads as padding
            hist = obs["history"]
            visible = (hist < env.n_items) & ok[hist.clamp(max=env.n_items - 1)]
            obs["history"] = torch.where(visible, hist, torch.full_like(hist, env.n_items))
        return obs

    return observe
