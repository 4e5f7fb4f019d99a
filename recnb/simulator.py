"""A fast, batched simulated MovieLens user with long-term dynamics (notebook 04; docs/protocols.md).

API (stable: notebooks 05-08 build on it)::

    from recnb.data import load_movielens
    from recnb.splits import split_random
    from recnb.simulator import SimulatorConfig, UserSimulator

    ml = load_movielens("100k")
    split = split_random(ml.indexed(), seed=0)                  # Track A; calibrate on train only
    sim = UserSimulator.from_movielens(split.train, ml.items, SimulatorConfig(), device="cpu", seed=0)
    obs = sim.reset(n_users=1024, seed=1)                        # dict of batched tensors
    obs, reward, terminated, truncated, info = sim.step(actions) # actions: LongTensor [B] or [B, slate]
    sim.available_mask()    # BoolTensor [B, n_items]; consumed items are False
    sim.expected_reward()   # FloatTensor [B, n_items]: immediate expected reward of showing each item
                            # alone, under the simulator's own model (what the greedy policy maximises)
    sim.item_genres, sim.item_popularity   # what a platform also knows (genres, training counts)
    sim.state               # UserState: hidden per-user tensors (preference, exposure, satisfaction, ...);
                            # updated in place by step/reset: .clone() what you keep
    sim.reset_where(mask)   # restart the finished users only (vector-env autoreset)
    UserSimulator.movielens(config)          # the standard one: Track-A train split 0, cached calibration
    sim.with_config(SimulatorConfig(long_term=False))   # same calibration, other dynamics
    SimulatorConfig().with_strength(s)       # long-term effects scaled by s (0 == long_term=False)
    PerUserSimulator(sim.calibration, config)  # the same dynamics, one user, NumPy (gym env, benchmark)

Observations are ``{"history": [B, K] last consumed items (pad = n_items), "mask": [B, N] True =
available, "step": [B]}``. For speed they, and the ``[B, N]`` views (``predicted_rating``,
``click_probability``, ``expected_reward``, cached until the next step), are the simulator's own
tensors: read them, ``.clone()`` what you keep past the next step, never modify them. They are the
simulator's *truth*: an agent sees the platform's view instead (``recnb.platform``); a policy that
reads them is an **oracle**.

**Calibration** (training split only, ``recnb.calibration``): a *choice* model (logistic MF on who
rated what) and a *rating* model (explicit MF shrunk by count). A simulated user is a real training
user (drawn uniformly with replacement): their choice and rating factors, and their training items,
which start out consumed (masked) and fill the start of their history. Each episode also draws the
user's hidden *sensitivity to repetition* ``s_u = exp(trait_spread * N(0, 1))``: some users tire of a
genre quickly, others hardly at all, and only their behaviour tells which.

**One step**, for each user still in their episode:

1. The utility of a shown film is its choice logit ``a_u + b_i + pref . q_i`` plus ``choice_offset``
   (a recommended film is likelier chosen than an average unrated one) minus
   ``fatigue_strength * s_u * exposure_i`` (long-term effects on); ``exposure_i`` is the user's recent
   consumption of the film's genres (a decaying per-genre count).
2. Choice: multinomial logit over the slate plus a no-click option with utility 0; a single item is a
   slate of one, clicked with probability ``sigmoid(utility)``. An already-consumed item is legal to
   show but is never clicked and earns nothing.
3. On a click the user rates the film: the rating model's prediction plus noise, in whole stars 1..5
   (``rating_noise``; ``predicted_rating()`` is the prediction itself); the reward
   function (``recnb.rewards``: click, ``log(1 + rating)``, ...) scores the outcome; the film is consumed.
4. Long-term effects (``long_term=True``): interest drift -- the choice preference moves a step
   ``drift_rate`` towards the consumed film; fatigue -- exposure of the film's genres rises and every
   genre's exposure decays by ``fatigue_recovery`` a step; satisfaction -- an average of the
   experience (``(rating - 1) / 4 - boredom * s_u * exposure_i`` on a click, ``no_click_experience``
   otherwise) that sets the chance of leaving ``leave_base + leave_sensitivity * (1 - satisfaction)**2``.
   Off, the user never changes and leaves with the constant chance ``leave_base``: then the best
   immediate expected reward is also the best return, so greedy (on the truth) is optimal.
5. ``terminated`` = the user left this step; ``truncated`` = the ``horizon`` was reached this step.

Users whose episode ended stay ended until the next ``reset`` (their actions are ignored and earn
0; ``info["active"]`` says who is still in); stepping after every episode ended raises. All
randomness comes from one ``torch.Generator`` seeded by ``reset``: same seed, same trajectories.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from . import rewards as rewards_mod

LONG_TERM_FIELDS = ("drift_rate", "fatigue_strength", "boredom", "leave_sensitivity")


def normal_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """Standard normal draws from uniform ones (inverse CDF), so one uniform block serves every draw of a step."""
    return u.mul(2.0).sub_(1.0).erfinv_().mul_(math.sqrt(2.0))


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that shapes the simulated user (notebook 04). Validated on creation."""

    horizon: int = 100
    """Steps before an episode is truncated (the time limit)."""
    slate_size: int = 1
    """Items shown per step; 1 = single-item recommendation, > 1 = slate with a multinomial-logit choice."""
    history_len: int = 10
    """How many recently consumed items the observation carries."""
    choice_offset: float = 2.0
    """Logit added to the choice model for a recommended film: being shown a film makes choosing it likelier
    than the data's ``P(rated)`` over the whole catalogue (a random film is then clicked ~15% of the time)."""
    long_term: bool = True
    """The one switch: False turns off drift, fatigue and satisfaction-driven leaving."""
    drift_rate: float = 0.05
    """Fraction of the way the preference vector moves towards a consumed item (long-term effect)."""
    fatigue_strength: float = 1.0
    """Logit utility lost per unit of (felt) exposure to a film's genres (long-term effect)."""
    fatigue_recovery: float = 0.85
    """Fraction of genre exposure kept from one step to the next (in [0, 1); lower = faster recovery)."""
    satisfaction_init: float = 0.7
    """Satisfaction of a user at the start of an episode, in [0, 1]."""
    satisfaction_rate: float = 0.2
    """Weight of the latest experience in the satisfaction average, in (0, 1]."""
    boredom: float = 0.3
    """Satisfaction lost per unit of (felt) exposure when consuming a film of recently consumed genres
    (long-term effect): the hidden cost of repetition that a greedy policy does not see."""
    trait_spread: float = 0.75
    """Spread across users of the hidden sensitivity to repetition, ``s_u = exp(trait_spread * N(0, 1))``,
    which scales each user's fatigue and boredom; 0 = every user alike."""
    rating_noise: float = 0.9
    """Spread of a click's rating around the rating model's prediction: the user gives
    ``round(prediction + rating_noise * N(0, 1))`` stars, clipped to 1..5, like a real rater (0.9 is about the
    rating model's error on Track A's validation ratings). 0 = the prediction itself, unrounded."""
    no_click_experience: float = 0.2
    """Experience (0..1) of a step without a click; a click gives ``(rating - 1) / 4``."""
    leave_base: float = 0.01
    """Chance per step of leaving whatever happens (the only leaving when ``long_term`` is off)."""
    leave_sensitivity: float = 0.3
    """Extra chance of leaving at zero satisfaction: ``leave_sensitivity * (1 - satisfaction)**2``."""
    reward: str = "click"
    """Reward function name from ``recnb.rewards.REWARDS`` (or a function of ``Signals``)."""
    mask_train_items: bool = True
    """Start each user with their training items consumed (they have seen them already)."""

    def __post_init__(self):
        def need(ok: bool, what: str):
            if not ok:
                raise ValueError(f"SimulatorConfig: {what}")

        for name in ("horizon", "slate_size", "history_len"):
            value = getattr(self, name)
            need(
                isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1,
                f"{name} must be an integer >= 1, got {value!r}",
            )
        need(math.isfinite(self.choice_offset), f"choice_offset must be a finite logit, got {self.choice_offset}")
        need(self.trait_spread >= 0, f"trait_spread must be >= 0, got {self.trait_spread}")
        need(self.rating_noise >= 0, f"rating_noise must be >= 0, got {self.rating_noise}")
        for name in LONG_TERM_FIELDS:
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(0 <= self.drift_rate <= 1, f"drift_rate must be in [0, 1], got {self.drift_rate}")
        need(0 <= self.fatigue_recovery < 1, f"fatigue_recovery must be in [0, 1), got {self.fatigue_recovery}")
        need(0 <= self.satisfaction_init <= 1, f"satisfaction_init must be in [0, 1], got {self.satisfaction_init}")
        need(0 < self.satisfaction_rate <= 1, f"satisfaction_rate must be in (0, 1], got {self.satisfaction_rate}")
        need(
            0 <= self.no_click_experience <= 1, f"no_click_experience must be in [0, 1], got {self.no_click_experience}"
        )
        need(0 <= self.leave_base < 1, f"leave_base must be in [0, 1), got {self.leave_base}")
        need(
            self.leave_base + self.leave_sensitivity <= 1,
            f"leave_base + leave_sensitivity must be <= 1 (a probability), got {self.leave_base + self.leave_sensitivity}",
        )
        need(isinstance(self.long_term, bool), f"long_term must be True or False, got {self.long_term!r}")
        rewards_mod.get(self.reward)  # raises on an unknown name

    def with_strength(self, strength: float) -> SimulatorConfig:
        """The same config with drift, fatigue and satisfaction-driven leaving scaled by ``strength`` (notebook 04).

        ``strength=0`` behaves exactly like ``long_term=False``; 1 is this config.
        """
        if not strength >= 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        scaled = {name: getattr(self, name) * strength for name in LONG_TERM_FIELDS}
        scaled["drift_rate"] = min(scaled["drift_rate"], 1.0)
        scaled["leave_sensitivity"] = min(scaled["leave_sensitivity"], 1.0 - self.leave_base)
        return replace(self, **scaled)

    def describe(self) -> str:
        """One line with every field, for printing next to results."""
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())


# ---------------------------------------------------------------- calibration (recnb.calibration)

from .calibration import (  # noqa: E402,F401
    CALIBRATION_VERSION,
    Calibration,
    calibrate,
    fit_choice_model,
    fit_rating_model,
    movielens_calibration,
)

# ---------------------------------------------------------------- the batched simulator


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
        self.config = config if config is not None else SimulatorConfig()
        if not isinstance(self.config, SimulatorConfig):
            raise TypeError(f"config must be a SimulatorConfig, got {type(self.config).__name__}")
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
        # each item spreads one unit of exposure over its genres
        self._genre_share = self.item_genres / self.item_genres.sum(1, keepdim=True)
        # drift moves preferences towards items on the scale of user vectors, not item vectors
        self._drift_scale = float(
            self.choice_user_factors.norm(dim=1).mean() / self.choice_item_factors.norm(dim=1).mean().clamp_min(1e-8)
        )
        self._train_mask = torch.zeros(len(calibration.train_items), self.n_items, dtype=torch.bool)  # True = seen
        self._train_history = torch.full(
            (len(calibration.train_items), self.config.history_len), self.n_items, dtype=torch.long
        )
        for row, seen in enumerate(calibration.train_items):
            self._train_mask[row, torch.as_tensor(seen, dtype=torch.long)] = True
            last = torch.as_tensor(seen[-self.config.history_len :], dtype=torch.long)
            if len(last):
                self._train_history[row, -len(last) :] = last
        self._train_available = (~self._train_mask).to(dev)
        del self._train_mask
        self._train_history = self._train_history.to(dev)
        self._pack_tables()
        self.reward_fn: Callable = rewards_mod.get(self.config.reward)
        self.state: UserState | None = None
        self._cache: dict = {}
        self.generator: torch.Generator | None = None

    def _pack_tables(self) -> None:
        """Lay items and users out so one step is a handful of tensor ops (speed; see ``step``).

        A user's float state is one row ``[choice pref (d) | choice base | 1 | felt exposure (G) |
        rating pref (d) | mu + b_u | 1]`` and an item's features one row ``[choice q (d) | 1 | choice
        bias | genre shares (G) | rating q (d) | 1 | rating bias]``, so one elementwise product of the
        two holds every term of the choice utility (the first ``d + 2`` columns), of the film's genre
        exposure (the next ``G``) and of the rating (the last ``d + 2``). A reset copies a user's
        starting row from ``_user_table`` in one indexed copy.
        """
        cfg, d, G, dev = self.config, self.choice_item_factors.shape[1], self.n_genres, self.device
        dr = self.item_factors.shape[1]
        ones_n = torch.ones(self.n_items, 1, device=dev)
        self._item_table = torch.cat(
            [
                self.choice_item_factors,
                ones_n,
                self.choice_item_bias[:, None],
                self._genre_share,
                self.item_factors,
                ones_n,
                self.item_bias[:, None],
            ],
            1,
        )
        n_users = self.n_calibration_users
        ones_u = torch.ones(n_users, 1, device=dev)
        self._user_table = torch.cat(
            [
                self.choice_user_factors,
                (self.choice_user_bias + cfg.choice_offset)[:, None],
                ones_u,
                torch.zeros(n_users, G, device=dev),
                self.user_factors,
                (self.mu + self.user_bias)[:, None],
                ones_u,
            ],
            1,
        )
        self._cols = {
            "preference": slice(0, d),
            "base": d,
            "choice_terms": slice(0, d + 2),
            "exposure": slice(d + 2, d + 2 + G),
            "rating_terms": slice(d + 2 + G, d + 2 + G + dr + 2),
        }
        # the [B, N] views weigh the columns of packed user rows x item rows: utility = choice terms
        # - fatigue_strength * exposure (0 with long-term effects off); rating = the rating terms
        width = self._item_table.shape[1]
        self._utility_weights = torch.zeros(width, device=dev)
        self._utility_weights[self._cols["choice_terms"]] = 1.0
        self._utility_weights[self._cols["exposure"]] = -cfg.fatigue_strength if cfg.long_term else 0.0
        self._rating_weights = torch.zeros(width, device=dev)
        self._rating_weights[self._cols["rating_terms"]] = 1.0
        # the config's numbers as 0-dim tensors: `x * tensor` costs a third of `x * python_float` here,
        # because a Python number is wrapped into a new tensor at every call
        self._c = SimpleNamespace(
            **{
                name: torch.tensor(value, device=dev)
                for name, value in dict(
                    fatigue_strength=cfg.fatigue_strength,
                    fatigue_recovery=cfg.fatigue_recovery,
                    drift_rate=cfg.drift_rate,
                    drift_scale=self._drift_scale,
                    boredom=cfg.boredom,
                    no_click_experience=cfg.no_click_experience,
                    satisfaction_rate=cfg.satisfaction_rate,
                    leave_base=cfg.leave_base,
                    leave_sensitivity=cfg.leave_sensitivity,
                    one=1.0,
                    quarter=0.25,
                ).items()
            }
        )
        self._c.no_item = torch.tensor(-1, device=dev)

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
        if not isinstance(n_users, (int, np.integer)) or isinstance(n_users, bool) or n_users < 1:
            raise ValueError(f"n_users must be an integer >= 1, got {n_users!r}")
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        B, dev, cols = int(n_users), self.device, self._cols
        packed = torch.zeros(B, self._user_table.shape[1], device=dev)  # see _pack_tables
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
        """FloatTensor [B, N]: immediate expected reward of showing each item alone (greedy maximises it) (notebook 04)."""
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
        not their size -- hence the packed layouts of ``_pack_tables``, the constants as tensors
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
        #    the user rows, three sums (see _pack_tables)
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


# ---------------------------------------------------------------- the same dynamics, one user at a time


class PerUserSimulator:
    """The same user model for one user at a time, in plain NumPy (notebook 04).

    It is the reference the batched core is tested against (same seed -> the very same
    trajectory, because both draw from a ``torch.Generator`` in the same order), the engine of the
    single-user gymnasium env (a batch of one pays torch's per-op overhead; NumPy's is ~10x
    smaller), and the per-user baseline of ``benchmarks/simulator_throughput.py``.
    """

    def __init__(self, calibration: Calibration, config: SimulatorConfig | None = None):
        self.config = config if config is not None else SimulatorConfig()
        if not isinstance(self.config, SimulatorConfig):
            raise TypeError(f"config must be a SimulatorConfig, got {type(self.config).__name__}")
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
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.generator = torch.Generator().manual_seed(int(seed))
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
        """The next (click uniform, leave uniform, rating normal); drawn in blocks, the same numbers as one draw a step."""
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
