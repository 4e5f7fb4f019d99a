"""The same user model for one user at a time, in plain NumPy: the batched simulator's reference (notebook 04)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import rewards as rewards_mod
from ..calibration import Calibration
from .config import SimulatorConfig, episode_generator, normal_from_uniform, resolve_config


class PerUserSimulator:
    """The same user model for one user at a time, in plain NumPy (notebook 04).

    It is the reference the batched core is tested against (same seed -> the very same
    trajectory, because both draw from a ``torch.Generator`` in the same order), the engine of the
    single-user gymnasium env (a batch of one pays torch's per-op overhead; NumPy's is ~10x
    smaller), and the per-user baseline of ``benchmarks/simulator_throughput.py``.
    """

    def __init__(self, calibration: Calibration, config: SimulatorConfig | None = None):
        self.config = resolve_config(config)
        self.calibration = calibration

        def array(name):
            return getattr(calibration, name).numpy().astype(np.float32)

        self.mu = np.float32(calibration.mu)
        self.user_factors, self.user_bias = array("user_factors"), array("user_bias")
        self.item_factors, self.item_bias = array("item_factors"), array("item_bias")
        self.choice_user_factors, self.choice_user_bias = array("choice_user_factors"), array("choice_user_bias")
        self.choice_item_factors, self.choice_item_bias = array("choice_item_factors"), array("choice_item_bias")
        genres = array("item_genres")
        self.genre_share = genres / genres.sum(1, keepdims=True)
        self.n_items = self.item_factors.shape[0]
        self._drift_scale = np.float32(
            np.linalg.norm(self.choice_user_factors, axis=1).mean()
            / max(np.linalg.norm(self.choice_item_factors, axis=1).mean(), 1e-8)
        )
        self.reward_fn = rewards_mod.get(self.config.reward)
        self.generator = None
        self.done = True

    def reset(self, seed: int | None = None, user: int | None = None) -> dict:
        """Start one episode; ``seed`` fixes every draw that follows (notebook 04)."""
        self.generator = episode_generator(seed)
        n_users = self.user_factors.shape[0]
        if user is None:
            user = int(torch.randint(0, n_users, (1,), generator=self.generator)[0])
        if not 0 <= int(user) < n_users:
            raise ValueError(f"user must be a calibration row in [0, {n_users}), got {user}")
        cfg = self.config
        self.user = int(user)
        self.sensitivity = np.float32(torch.randn(1, generator=self.generator).mul_(cfg.trait_spread).exp_()[0])
        self.base = np.float32(self.choice_user_bias[self.user] + np.float32(cfg.choice_offset))
        self.rating_base = self.mu + self.user_bias[self.user]
        self.preference = self.choice_user_factors[self.user].copy()
        self.exposure = np.zeros(self.genre_share.shape[1], dtype=np.float32)
        self.satisfaction = np.float32(cfg.satisfaction_init)
        self.available = np.ones(self.n_items, dtype=bool)
        self.history = np.full(cfg.history_len, self.n_items, dtype=np.int64)
        if cfg.mask_train_items:
            seen = np.asarray(self.calibration.train_items[self.user], dtype=np.int64)
            self.available[seen] = False
            last = seen[-cfg.history_len :]
            if len(last):
                self.history[-len(last) :] = last
        self.t, self.done = 0, False
        self._draws, self._next_draw = np.empty((0, 3)), 0
        return self.observation()

    def _draw(self) -> tuple[float, float, float]:
        """The next (click uniform, leave uniform, rating normal).

        Drawn in blocks of 128 steps: the same numbers as one draw a step, for a fraction of the calls.
        """
        if self._next_draw == len(self._draws):
            block = torch.rand(128, 3, generator=self.generator)
            block[:, 2] = normal_from_uniform(block[:, 2])
            self._draws = block.double().numpy()
            self._next_draw = 0
        u = self._draws[self._next_draw]
        self._next_draw += 1
        return float(u[0]), float(u[1]), float(u[2])

    def _rated(self, rating: float, z: float) -> float:
        """The stars a click gives: ``round(rating + rating_noise * z)`` in 1..5 (the prediction if no noise)."""
        noise = self.config.rating_noise
        if noise <= 0:
            return rating
        return float(min(max(round(float(np.float32(rating) + np.float32(noise) * np.float32(z))), 1.0), 5.0))

    def observation(self) -> dict:
        """``{"history": [K] int64, "mask": [N] bool}`` (copies)."""
        return {"history": self.history.copy(), "mask": self.available.copy()}

    def step(self, action):
        """Show an item (or a slate of ``slate_size``); returns ``(obs, reward, terminated, truncated, info)``."""
        reward, terminated, truncated, info = self.advance(action)
        return self.observation(), reward, terminated, truncated, info

    def _check_action(self, action) -> np.ndarray:
        if isinstance(action, (int, np.integer)) and not isinstance(action, bool) and self.config.slate_size == 1:
            if not 0 <= action < self.n_items:
                raise IndexError(f"item ids must be in [0, {self.n_items}), got {[int(action)]}")
            return (int(action),)
        shown = np.atleast_1d(np.asarray(action))
        if shown.dtype.kind not in "iu":
            raise TypeError(f"actions must be integer item ids, got {action!r}")
        if shown.shape != (self.config.slate_size,):
            raise ValueError(f"action must be {self.config.slate_size} item id(s), got shape {list(np.shape(action))}")
        if shown.min() < 0 or shown.max() >= self.n_items:
            raise IndexError(f"item ids must be in [0, {self.n_items}), got {shown.tolist()}")
        if len(set(shown.tolist())) < len(shown):
            raise ValueError("a slate shows each item at most once; remove the duplicate item ids")
        return shown

    def advance(self, action):
        """:meth:`step` without building the observation: ``(reward, terminated, truncated, info)``."""
        if self.done:
            raise RuntimeError("this episode has ended (the user left or the horizon was reached); call reset()")
        cfg = self.config
        shown = self._check_action(action)
        if len(shown) == 1:  # the common case in Python floats: a fraction of NumPy's per-call cost
            i = int(shown[0])
            item_exposure = float(self.genre_share[i] @ self.exposure)
            utility = (
                float(self.choice_item_factors[i] @ self.preference)
                + float(self.choice_item_bias[i])
                + float(self.base)
            )
            if cfg.long_term:
                utility -= cfg.fatigue_strength * item_exposure
            rating = (
                float(self.item_factors[i] @ self.user_factors[self.user])
                + float(self.item_bias[i])
                + float(self.rating_base)
            )
            rating = min(max(rating, 1.0), 5.0)
            weight = math.exp(utility) * bool(self.available[i])
            u_click, u_leave, z = self._draw()
            clicked = u_click * (1.0 + weight) < weight
            item, item_rating = i, (self._rated(rating, z) if clicked else 0.0)
        else:
            exposure = self.genre_share[shown] @ self.exposure
            utility = self.choice_item_factors[shown] @ self.preference + self.choice_item_bias[shown] + self.base
            if cfg.long_term:
                utility = utility - np.float32(cfg.fatigue_strength) * exposure
            rating = self.item_factors[shown] @ self.user_factors[self.user] + self.item_bias[shown] + self.rating_base
            rating = np.clip(rating, 1.0, 5.0).astype(np.float32)
            weight = np.exp(utility.astype(np.float32)) * self.available[shown]
            u_click, u_leave, z = self._draw()
            choice = int((u_click > np.cumsum(weight / (1.0 + weight.sum()))).sum())
            clicked = choice < len(shown)
            pick = min(choice, len(shown) - 1)
            item, item_exposure = int(shown[pick]), float(exposure[pick])
            item_rating = self._rated(float(rating[pick]), z) if clicked else 0.0
        signals = rewards_mod.Signals(float(clicked), item_rating, item_exposure)
        reward = float(self.reward_fn(signals))
        self.exposure *= np.float32(cfg.fatigue_recovery)
        if clicked:
            self.available[item] = False
            self.exposure += self.sensitivity * self.genre_share[item]
            self.history[:-1] = self.history[1:]
            self.history[-1] = item
        if cfg.long_term:
            if clicked:
                self.preference = self.preference + np.float32(cfg.drift_rate) * (
                    self.choice_item_factors[item] * self._drift_scale - self.preference
                )
                experience = min(max((item_rating - 1.0) * 0.25 - cfg.boredom * item_exposure, 0.0), 1.0)
            else:
                experience = cfg.no_click_experience
            self.satisfaction = np.float32(self.satisfaction + cfg.satisfaction_rate * (experience - self.satisfaction))
            leave_p = cfg.leave_base + cfg.leave_sensitivity * (1.0 - float(self.satisfaction)) ** 2
        else:
            leave_p = cfg.leave_base
        self.t += 1
        terminated = u_leave < leave_p
        truncated = not terminated and self.t >= cfg.horizon
        self.done = terminated or truncated
        info = {
            "clicked": clicked,
            "item": item if clicked else -1,
            "rating": item_rating,
            "satisfaction": float(self.satisfaction),
        }
        return reward, terminated, truncated, info
