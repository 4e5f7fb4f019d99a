"""The batched simulated user: every user of a batch stepped as a few tensor ops (notebook 04).

:class:`UserSimulator` is the engine every notebook from 04 on runs (the API and the user model are in
:mod:`recnb.simulator`'s docstring); :class:`UserState` is its hidden per-user state. The packed layout
that keeps a step cheap is built by :func:`recnb.simulator.tables.pack_tables`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import rewards as rewards_mod
from .._checks import is_int
from ..calibration import Calibration, calibrate, movielens_calibration
from .config import SimulatorConfig, episode_generator, normal_from_uniform, resolve_config
from .tables import pack_tables


@dataclass
class UserState:
    """The hidden state of a batch of simulated users (all tensors have the batch first).

    For speed, ``base``, ``preference`` and ``exposure`` are views of one packed ``[B, F]`` float
    tensor (``UserSimulator`` updates them in place), and ``history`` is the transposed view of a
    history-major ``[K, B]`` tensor; all read like ordinary ``[B, ...]`` tensors.
    """

    user: torch.Tensor  # [B] calibration row of each simulated user
    base: torch.Tensor  # [B] the user's choice bias + choice_offset
    preference: torch.Tensor  # [B, d] choice preference; drifts towards consumed items
    exposure: torch.Tensor  # [B, G] recent consumption per genre, times the user's sensitivity (drives fatigue)
    sensitivity: torch.Tensor  # [B] hidden trait: how much repetition tires this user
    satisfaction: torch.Tensor  # [B] in [0, 1]
    available: torch.Tensor  # [B, N] bool, False once consumed (changes in place)
    history: torch.Tensor  # [B, K] last consumed items, oldest first, padded with n_items
    t: torch.Tensor  # [B] steps taken
    active: torch.Tensor  # [B] still in the episode

    @property
    def consumed(self) -> torch.Tensor:
        """BoolTensor [B, N]: items already consumed (a copy)."""
        return ~self.available


class UserSimulator:
    """A batch of simulated users stepped as tensor ops; see the module docstring (notebook 04)."""

    def __init__(self, calibration: Calibration, config: SimulatorConfig | None = None, device: str = "cpu"):
        self.config = resolve_config(config)
        self.calibration = calibration
        self.device = torch.device(device)
        dev = self.device
        self.mu = calibration.mu
        # rating model (what a click reveals) and choice model (what gets clicked); see recnb.calibration
        self.user_factors = calibration.user_factors.to(dev)
        self.user_bias = calibration.user_bias.to(dev)
        self.item_factors = calibration.item_factors.to(dev)
        self.item_bias = calibration.item_bias.to(dev)
        self.choice_user_factors = calibration.choice_user_factors.to(dev)
        self.choice_user_bias = calibration.choice_user_bias.to(dev)
        self.choice_item_factors = calibration.choice_item_factors.to(dev)
        self.choice_item_bias = calibration.choice_item_bias.to(dev)
        self.item_genres = calibration.item_genres.to(dev)
        self.item_popularity = calibration.item_popularity.to(dev)
        tables = pack_tables(calibration, self.config, dev)  # the layout a step reads (recnb.simulator.tables)
        self._item_table, self._user_table, self._cols = tables.item_table, tables.user_table, tables.cols
        self._utility_weights, self._rating_weights = tables.utility_weights, tables.rating_weights
        self._genre_share, self._drift_scale, self._c = tables.genre_share, tables.drift_scale, tables.c
        self._train_available, self._train_history = tables.train_available, tables.train_history
        self.reward_fn: Callable = rewards_mod.get(self.config.reward)
        self.state: UserState | None = None
        self._cache: dict = {}
        self.generator: torch.Generator | None = None

    @classmethod
    def from_movielens(
        cls,
        ratings_train: pd.DataFrame,
        items: pd.DataFrame,
        config: SimulatorConfig | None = None,
        device: str = "cpu",
        seed: int = 0,
        dim: int = 16,
    ) -> UserSimulator:
        """Calibrate on a training split (``split.train``) and ``MovieLens.items`` (notebook 04)."""
        return cls(calibrate(ratings_train, items, dim=dim, seed=seed), config, device)

    @classmethod
    def movielens(cls, config: SimulatorConfig | None = None, device: str = "cpu", seed: int = 0) -> UserSimulator:
        """The standard simulator: MovieLens-100K, Track-A train split ``seed``, cached calibration (notebook 04)."""
        return cls(movielens_calibration(seed=seed), config, device)

    def with_config(self, config: SimulatorConfig) -> UserSimulator:
        """A new simulator with the same calibration and another config (no refit)."""
        return UserSimulator(self.calibration, config, str(self.device))

    # ------------------------------------------------------------ sizes and features
    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    @property
    def n_genres(self) -> int:
        return self.item_genres.shape[1]

    @property
    def n_calibration_users(self) -> int:
        return self.user_factors.shape[0]

    @property
    def n_users(self) -> int:
        """Batch size of the current episode (0 before the first reset)."""
        return 0 if self.state is None else self.state.user.shape[0]

    @property
    def active(self) -> torch.Tensor:
        """BoolTensor [B]: users still in their episode."""
        self._require_reset()
        return self.state.active

    # ------------------------------------------------------------ reset
    def reset(self, n_users: int, seed: int | None = None, users=None) -> dict:
        """Start ``n_users`` fresh episodes; ``seed`` fixes every random draw that follows (notebook 04).

        ``users`` (optional, [n_users] calibration rows) picks which real users to simulate;
        by default they are drawn uniformly with replacement.
        """
        if not is_int(n_users) or n_users < 1:
            raise ValueError(f"n_users must be an integer >= 1, got {n_users!r}")
        self.generator = episode_generator(seed, self.device)
        B, dev, cols = int(n_users), self.device, self._cols
        packed = torch.zeros(B, self._user_table.shape[1], device=dev)  # see recnb.simulator.tables
        self._packed = packed
        self.state = UserState(
            user=torch.zeros(B, dtype=torch.long, device=dev),
            base=packed[:, cols["base"]],
            preference=packed[:, cols["preference"]],
            exposure=packed[:, cols["exposure"]],
            sensitivity=torch.ones(B, device=dev),
            satisfaction=torch.zeros(B, device=dev),
            available=torch.ones(B, self.n_items, dtype=torch.bool, device=dev),
            # history-major, so the per-step shift is one contiguous copy (see step)
            history=torch.zeros(self.config.history_len, B, dtype=torch.long, device=dev).T,
            t=torch.zeros(B, dtype=torch.long, device=dev),
            active=torch.zeros(B, dtype=torch.bool, device=dev),
        )
        self.reset_where(torch.ones(B, dtype=torch.bool, device=dev), users=users)
        return self.observation()

    def reset_where(self, mask: torch.Tensor, users=None) -> dict:
        """Restart the episodes of the users where ``mask`` is True (vector-env autoreset); same generator."""
        self._require_reset()
        mask = torch.as_tensor(mask, device=self.device)
        if mask.dtype != torch.bool or mask.shape != (self.n_users,):
            raise ValueError(
                f"mask must be a BoolTensor of shape ({self.n_users},), got {tuple(mask.shape)} {mask.dtype}"
            )
        rows = mask.nonzero().squeeze(1)
        n = rows.numel()
        if n == 0:
            return self.observation()
        if users is None:
            who = torch.randint(0, self.n_calibration_users, (n,), generator=self.generator, device=self.device)
        else:
            who = torch.as_tensor(users, dtype=torch.long, device=self.device).reshape(-1)
            if who.numel() != n or who.min() < 0 or who.max() >= self.n_calibration_users:
                raise ValueError(f"users must be {n} calibration rows in [0, {self.n_calibration_users})")
        s, cfg = self.state, self.config
        trait = torch.randn(n, generator=self.generator, device=self.device).mul_(cfg.trait_spread).exp_()
        self._cache.clear()
        # one indexed copy per tensor (they are per-op-overhead bound at these sizes)
        s.user.index_copy_(0, rows, who)
        self._packed.index_copy_(0, rows, self._user_table.index_select(0, who))  # preference, base, exposure = 0
        s.sensitivity.index_copy_(0, rows, trait)
        s.satisfaction.index_fill_(0, rows, cfg.satisfaction_init)
        if cfg.mask_train_items:
            s.available[rows] = self._train_available.index_select(0, who)
            s.history[rows] = self._train_history.index_select(0, who)
        else:
            s.available[rows] = True
            s.history[rows] = self.n_items
        s.t.index_fill_(0, rows, 0)
        s.active.index_fill_(0, rows, True)
        return self.observation()

    # ------------------------------------------------------------ the user model
    def observation(self) -> dict:
        """What an agent sees: recent ``history`` [B, K] (pad = n_items), item ``mask`` [B, N], ``step`` [B].

        For speed these are the simulator's own tensors, not copies; ``mask`` changes in place at the
        next step, so ``.clone()`` anything you keep beyond it (a replay buffer's copy is enough).
        """
        s = self._require_reset()
        return {"history": s.history, "mask": s.available, "step": s.t}

    def available_mask(self) -> torch.Tensor:
        """BoolTensor [B, N]: True where an item has not been consumed yet; live, clone to keep (notebook 04)."""
        return self._require_reset().available

    # The [B, N] views below are cached until the next step or reset (policies ask for several of
    # them each step); they are shared, so treat them as read-only.
    def _cached(self, name: str, compute):
        value = self._cache.get(name)
        if value is None:
            value = self._cache[name] = compute()
        return value

    def predicted_rating(self) -> torch.Tensor:
        """FloatTensor [B, N]: the rating each user would give every film once watched, in [1, 5] (truth)."""
        self._require_reset()
        return self._cached(
            "rating", lambda: torch.mm(self._packed * self._rating_weights, self._item_table.T).clamp_(1.0, 5.0)
        )

    def utility(self) -> torch.Tensor:
        """FloatTensor [B, N]: each user's current choice logit of every film, fatigue included (truth)."""
        self._require_reset()
        return self._cached("utility", lambda: torch.mm(self._packed * self._utility_weights, self._item_table.T))

    def exposure_of_items(self) -> torch.Tensor:
        """FloatTensor [B, N]: each user's recent exposure to every item's genres."""
        s = self._require_reset()
        return self._cached("exposure", lambda: s.exposure @ self._genre_share.T)

    def click_probability(self) -> torch.Tensor:
        """FloatTensor [B, N]: chance each item is clicked when shown alone (0 if consumed) (notebook 04)."""
        s = self._require_reset()
        return self._cached("click", lambda: self.utility().sigmoid().mul_(s.available))

    def expected_reward(self, reward=None) -> torch.Tensor:
        """FloatTensor [B, N]: immediate expected reward of showing each item alone (notebook 04).

        The greedy policy maximises it.
        """
        fn = self.reward_fn if reward is None else rewards_mod.get(reward)
        p = self.click_probability()
        if fn is rewards_mod.click:  # the common case: E[click] is the click probability
            return p

        def compute():
            exposure = self.exposure_of_items()
            hit = fn(rewards_mod.Signals(torch.ones_like(p), self.predicted_rating(), exposure))
            miss = fn(rewards_mod.Signals(torch.zeros_like(p), torch.zeros_like(p), exposure))
            return p * hit + (1 - p) * miss

        return self._cached(("expected", fn), compute)

    # ------------------------------------------------------------ one step
    def step(self, actions):
        """Show items to every active user; returns ``(obs, reward, terminated, truncated, info)`` (notebook 04).

        Written for speed: at 1,024 users every tensor is small, so the cost is the number of ops,
        not their size -- hence the packed layouts of ``pack_tables``, the constants as tensors
        (``self._c``), in-place updates and few dtype conversions. ``PerUserSimulator.advance`` is
        the same model written plainly, and tested to give the same trajectories.
        """
        s = self._require_reset()
        if not bool(s.active.any()):
            raise RuntimeError("every episode in this batch has ended; call reset() before step()")
        cfg, c, cols = self.config, self._c, self._cols
        a = self._check_actions(actions)  # [B, k]
        self._cache.clear()
        B, k = a.shape
        active = s.active
        # 1. utilities and ratings of the shown films now: one gather of item rows, one product with
        #    the user rows, three sums (see recnb.simulator.tables)
        feats = self._item_table.index_select(0, a.reshape(-1)).view(B, k, -1)  # [B, k, F]
        terms = feats * self._packed.unsqueeze(1)
        exposure = terms[..., cols["exposure"]].sum(2)  # [B, k], already times the user's sensitivity
        utility = terms[..., cols["choice_terms"]].sum(2)
        if cfg.long_term:
            utility = utility.sub_(exposure * c.fatigue_strength)
        rating = terms[..., cols["rating_terms"]].sum(2).clamp_(1.0, 5.0)
        # 2. multinomial-logit choice with a no-click option (utility 0); consumed items are never chosen
        shown_available = s.available.gather(1, a)
        weight = utility.exp_()  # exp(utility)
        draws = torch.rand(B, 3, generator=self.generator, device=self.device)  # [click, leave, rating] uniforms
        if k == 1:  # the common case, without gathers: u < w / (1 + w), never for a consumed item
            weight = weight[:, 0]
            clicked = (draws[:, 0] * (weight + c.one) < weight) & shown_available[:, 0] & active
            item, item_rating, item_exposure = a[:, 0], rating[:, 0], exposure[:, 0]
            item_available, item_feats = shown_available[:, 0], feats[:, 0]
        else:
            weight = weight * shown_available
            prob = weight / (1.0 + weight.sum(1, keepdim=True))
            choice = (draws[:, :1] > prob.cumsum(1)).sum(1, keepdim=True)  # k = no click
            clicked = (choice[:, 0] < k) & active
            pick = choice.clamp_(max=k - 1)
            item, item_rating = a.gather(1, pick).squeeze(1), rating.gather(1, pick).squeeze(1)
            item_exposure, item_available = (
                exposure.gather(1, pick).squeeze(1),
                shown_available.gather(1, pick).squeeze(1),
            )
            item_feats = feats.gather(1, pick.unsqueeze(2).expand(B, 1, feats.shape[2])).squeeze(1)  # [B, F]
        clicked_f = clicked.float()
        clicked_col = clicked_f.unsqueeze(1)
        if cfg.rating_noise > 0:  # whole stars around the prediction (see SimulatorConfig.rating_noise)
            item_rating = (
                item_rating.add(normal_from_uniform(draws[:, 2]), alpha=cfg.rating_noise).round_().clamp_(1.0, 5.0)
            )
        item_rating = item_rating * clicked_f
        # 3. reward of what happened (a click already implies an active user)
        if self.reward_fn is rewards_mod.click:
            reward = clicked_f
        else:
            reward = self.reward_fn(rewards_mod.Signals(clicked_f, item_rating, item_exposure)) * active
        # 4. state: consumption, exposure (always tracked; it only hurts the user when long_term), drift, satisfaction
        # a click implies the item was available, so "still available" is available XOR clicked
        s.available.scatter_(1, item.unsqueeze(1), (item_available ^ clicked).unsqueeze(1))
        s.exposure.mul_(c.fatigue_recovery).addcmul_(
            item_feats[:, cols["exposure"]], (clicked_f * s.sensitivity).unsqueeze(1)
        )
        hist = s.history.T  # stored [K, B]: the shift is a contiguous copy and `clicked` broadcasts over rows
        shifted = torch.cat([hist[1:], item.unsqueeze(0)])
        s.history = torch.where(clicked, shifted, hist, out=shifted).T
        if cfg.long_term:
            # lerp(a, b, w) = a + w * (b - a): a step of drift_rate towards the item, for clickers only
            s.preference.lerp_(item_feats[:, cols["preference"]] * c.drift_scale, clicked_col * c.drift_rate)
            enjoyed = (item_rating - c.one).mul_(c.quarter).sub_(item_exposure * c.boredom).clamp_(0.0, 1.0)
            experience = torch.where(clicked, enjoyed, c.no_click_experience)
            s.satisfaction = s.satisfaction.lerp(experience, active * c.satisfaction_rate)  # active users only
            unhappy = c.one - s.satisfaction
            left = draws[:, 1] < torch.addcmul(c.leave_base, unhappy * c.leave_sensitivity, unhappy)
        else:
            left = draws[:, 1] < c.leave_base
        # 5. episode ends: leaving (terminated) or the time limit (truncated)
        s.t = s.t + active
        stayed = active & ~left
        out_of_time = s.t >= cfg.horizon
        terminated, truncated = active & left, stayed & out_of_time
        s.active = stayed & ~out_of_time
        info = {
            "clicked": clicked,
            "item": torch.where(clicked, item, c.no_item),
            "rating": item_rating,
            "active": s.active,
            "was_active": active,
            "satisfaction": s.satisfaction,
        }
        return self.observation(), reward, terminated, truncated, info

    # ------------------------------------------------------------ checks
    def _require_reset(self) -> UserState:
        if self.state is None:
            raise RuntimeError("call reset(n_users, seed) before using the simulator")
        return self.state

    def _check_actions(self, actions) -> torch.Tensor:
        if not isinstance(actions, torch.Tensor):
            actions = torch.as_tensor(np.asarray(actions))
        if actions.dtype.is_floating_point or actions.dtype == torch.bool or actions.is_complex():
            raise TypeError(f"actions must be integer item indices (LongTensor), got dtype {actions.dtype}")
        B, k = self.n_users, self.config.slate_size
        if actions.dim() == 1 and k == 1:
            actions = actions.unsqueeze(1)
        if actions.dim() != 2 or actions.shape != (B, k):
            want = f"[{B}] or [{B}, 1]" if k == 1 else f"[{B}, {k}]"
            raise ValueError(f"actions must have shape {want} (n_users={B}, slate_size={k}), got {list(actions.shape)}")
        actions = actions.to(device=self.device, dtype=torch.long)
        low, high = (int(v) for v in torch.aminmax(actions))
        if low < 0 or high >= self.n_items:
            raise IndexError(f"item ids must be in [0, {self.n_items}), got min {low} and max {high}")
        if k > 1:
            ordered = actions.sort(1).values
            if bool((ordered[:, 1:] == ordered[:, :-1]).any()):
                raise ValueError("a slate shows each item at most once; remove the duplicate item ids")
        return actions
