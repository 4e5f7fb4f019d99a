"""Q-networks for recommendation: score every item at once from state and item features (notebook 06).

* :class:`QNetwork` -- ``Q(s, i) = f(s) . g(x_i) + b(x_i) + ...``: a state tower ``f`` (an encoder
  of the recent history plus the user-model features) and an item tower ``g`` over item *features*,
  so one matrix product scores all items and a new item is scored from its features alone; plus
  the click model's immediate reward and, optionally, a learned price on genre fatigue.
* :class:`NaiveQNetwork` -- the source article's "user embedding + item embedding -> Q": it sees
  who the user is, not where they are in the session, so it cannot tell a bored user from a fresh one.

What an agent sees -- user features, history, mask, the platform's immediate scores and item
features -- comes from ``recnb.platform`` (the platform's log and models), never from the simulator;
:mod:`recnb.agents.observe` builds it (``genre_shares`` is re-exported here from there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .observe import genre_shares  # its old home: dqn and the tests import it from here

__all__ = ["LinearTower", "NaiveQNetwork", "QNetwork", "Tower", "genre_shares"]


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
    )


class Tower(nn.Module):
    """An MLP with a linear skip, so bilinear scores like ``taste . item factors`` are easy to represent."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.mlp, self.skip = _mlp(n_in, hidden, n_out), nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + self.skip(x)


class LinearTower(nn.Module):
    """A linear map with the same attributes as :class:`Tower` (``mlp[-1]`` and ``skip`` are the map)."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.skip = nn.Linear(n_in, n_out)
        self.mlp = nn.ModuleList([self.skip])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x)


class QNetwork(nn.Module):
    """``Q(s, i) = v(s) + f(s) . g(x_i) + b(x_i) + w(s) r(s, i) + e(s, i) (c(s) r(s, i) + d(s))`` (notebook 06).

    All items are scored in one product. ``f(s)`` encodes the user features and recent history,
    ``g``/``b`` the item features, and ``r(s, i)`` -- when the observation carries ``immediate`` --
    is the platform recommender's immediate score, weighted by a learned positive, state-dependent
    ``w(s)``; ``v(s)`` carries the level all items share. With ``genre_share`` given, ``e(s, i)`` is
    the user's recent clicks on item ``i``'s genres (``user[:, exposure_cols] @ genre_share.T``, from
    the platform's log) and ``c(s)``, ``d(s)`` are learned: the price of adding to a genre the user
    may be tiring of -- the long-term cost that greedy ignores. Every learned term starts at 0
    (``w(s)`` at 1), so the network starts as greedy on the platform's model.
    """

    def __init__(
        self,
        item_feats: torch.Tensor,
        user_dim: int,
        embed_dim: int = 64,
        hidden: int = 128,
        linear_items: bool = True,
        genre_share: torch.Tensor | None = None,
        exposure_cols: slice | None = None,
        fatigue_init: float = 0.0,
    ):
        super().__init__()
        if item_feats.dim() != 2 or item_feats.shape[0] < 1:
            raise ValueError(f"item_feats must be a [n_items, n_features] tensor, got shape {tuple(item_feats.shape)}")
        if user_dim < 1 or embed_dim < 1 or hidden < 1:
            raise ValueError(f"user_dim, embed_dim and hidden must be >= 1, got {user_dim}, {embed_dim}, {hidden}")
        mean, std = (
            item_feats.mean(0),
            item_feats.std(0).clamp_min(1e-6) if len(item_feats) > 1 else torch.ones(item_feats.shape[1]),
        )
        # features are standardised once, with statistics kept in the state dict (they travel with checkpoints)
        self.register_buffer("item_x", ((item_feats - mean) / std).float())
        # last column = bias b(x_i); a linear item tower keeps the argmax over thousands of items from
        # chasing noise (a deep one overfits item by item), while f(s) stays deep
        self.item_tower = (LinearTower if linear_items else Tower)(item_feats.shape[1], hidden, embed_dim + 1)
        self.history_proj = nn.Linear(embed_dim, embed_dim)
        self.state_tower = Tower(user_dim + embed_dim, hidden, embed_dim)
        self.gain = nn.Linear(embed_dim, 1)  # w(s) = softplus(gain(f(s)))
        self.value = nn.Linear(embed_dim, 1)  # v(s): the item-independent level of Q (as in dueling nets)
        # start as the greedy policy: w(s) = 1 and f . g + b = 0, so learning adds the long run to it
        for layer in (self.item_tower.mlp[-1], self.item_tower.skip, self.gain, self.value):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.constant_(self.gain.bias, math.log(math.e - 1))  # softplus(0.5413) = 1
        self.embed_dim = embed_dim
        self.exposure_cols = exposure_cols
        self.fatigue = None
        if genre_share is not None:
            if (
                exposure_cols is None
                or genre_share.shape[0] != item_feats.shape[0]
                or len(range(user_dim)[exposure_cols]) != genre_share.shape[1]
            ):
                raise ValueError(
                    f"genre_share [{item_feats.shape[0]}, G] needs exposure_cols: G columns of the user "
                    f"features (got shape {tuple(genre_share.shape)}, exposure_cols {exposure_cols})"
                )
            self.register_buffer("genre_share", genre_share.float())
            self.fatigue = nn.Linear(embed_dim, 2)  # c(s), d(s)
            nn.init.zeros_(self.fatigue.weight)
            nn.init.zeros_(self.fatigue.bias)
            nn.init.constant_(self.fatigue.bias[1:], fatigue_init)  # d(s): the starting price of repetition

    @property
    def n_items(self) -> int:
        return self.item_x.shape[0]

    def items(self, item_x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Item embeddings [N, D] and biases [N] (pass standardised features to score new items)."""
        out = self.item_tower(self.item_x if item_x is None else item_x)
        return out[:, :-1], out[:, -1]

    def state(self, obs: dict, item_emb: torch.Tensor) -> torch.Tensor:
        """State embedding [B, D]: user features plus the mean embedding of the recent history."""
        hist = obs["history"]
        valid = hist < self.n_items  # padding = n_items
        emb = item_emb.index_select(0, hist.clamp(max=self.n_items - 1).reshape(-1)).view(*hist.shape, -1)
        pooled = (emb * valid.unsqueeze(-1)).sum(1) / valid.sum(1, keepdim=True).clamp_min(1)
        return self.state_tower(torch.cat([obs["user"], self.history_proj(pooled)], 1))

    def forward(self, obs: dict, actions: torch.Tensor | None = None) -> torch.Tensor:
        """Q-values [B, N] of every item (unmasked: callers mask), or [B] of ``actions`` only."""
        item_emb, bias = self.items()
        state = self.state(obs, item_emb)
        immediate = obs.get("immediate")
        w = F.softplus(self.gain(state)) if immediate is not None else None  # [B, 1]
        c = d = exposure = None
        if self.fatigue is not None:
            c, d = self.fatigue(state).split(1, dim=1)  # [B, 1] each
            exposure = obs["user"][:, self.exposure_cols]  # [B, G]
        if actions is None:
            return self._all_items(state, item_emb, bias, immediate, w, c, d, exposure)
        # one row per user: no [B, N] product, so a training step stays cheap
        q = (state * item_emb.index_select(0, actions)).sum(1) + bias.index_select(0, actions) + self.value(state)[:, 0]
        gain = w[:, 0] if w is not None else None
        if exposure is not None:
            e = (exposure * self.genre_share.index_select(0, actions)).sum(1)  # e(s, a)
            q = q + d[:, 0] * e
            gain = gain + c[:, 0] * e if gain is not None else None
        return q if gain is None else q + gain * _taken(immediate, actions)

    def _all_items(self, state, item_emb, bias, immediate, w, c, d, exposure) -> torch.Tensor:
        """[B, N] with as few [B, N] operations as possible: the forward pass over the whole catalogue.

        Every term that is a state vector times an item vector is one matrix product,
        ``[f(s), v(s), 1, d(s) e_s] . [g_i, 1, b_i, share_i]``; the click-model terms are one more,
        ``r(s, i) (w(s) + c(s) e_s . share_i)``.
        """
        ones_b, ones_n = state.new_ones(state.shape[0], 1), item_emb.new_ones(item_emb.shape[0], 1)
        left, right = [state, self.value(state), ones_b], [item_emb, ones_n, bias[:, None]]
        if exposure is not None:
            left.append(d * exposure)
            right.append(self.genre_share)
        q = torch.cat(left, 1) @ torch.cat(right, 1).T
        if immediate is None:
            return q
        gain = w if exposure is None else torch.addmm(w, c * exposure, self.genre_share.T)  # [B, 1] or [B, N]
        return q.addcmul_(immediate, gain)


def _taken(values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``values`` of the taken items: [B, N] gathered at ``actions``, or already [B]."""
    return values.gather(1, actions[:, None]).squeeze(1) if values.dim() == 2 else values


class NaiveQNetwork(nn.Module):
    """The source article's model: ``Q = user_embedding . item_embedding + item bias`` (notebook 06).

    The state is only *who* the user is; nothing about the session (history, fatigue, time) reaches
    it, so every step of an episode gets the same scores, and a new item has no embedding.
    """

    def __init__(self, n_users: int, n_items: int, embed_dim: int = 32):
        super().__init__()
        if n_users < 1 or n_items < 1:
            raise ValueError(f"n_users and n_items must be >= 1, got {n_users}, {n_items}")
        self.user = nn.Embedding(n_users, embed_dim)
        self.item = nn.Embedding(n_items, embed_dim)
        self.bias = nn.Parameter(torch.zeros(n_items))
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def forward(self, obs: dict, actions: torch.Tensor | None = None) -> torch.Tensor:
        """Q-values [B, N] of every item, or [B] of ``actions`` only."""
        user = self.user(obs["user_id"])
        if actions is None:
            return user @ self.item.weight.T + self.bias
        return (user * self.item(actions)).sum(1) + self.bias[actions]
