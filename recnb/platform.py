"""The platform's view of a simulated user: what an agent may see (notebooks 06-10; docs/protocols.md).

A real recommender never sees its users' minds. It logs what it showed, what was clicked, the
ratings given and where in the session a user is, and it has its own models fitted on past logs.
Nothing else. So every agent and every non-oracle baseline here sees the simulator through
:class:`PlatformEnv`, which keeps such a log and nothing of the simulator's hidden state:

* :class:`PlatformModel` -- the platform's own recommender, BPR-MF fitted on the training split's
  logs (the same data the simulator was calibrated on, with another model: the platform does not
  know the simulated user's true choice model), plus item genres and training popularity.
* :class:`PlatformEnv` -- wraps a :class:`recnb.simulator.UserSimulator`; ``reset`` / ``step`` /
  ``reset_where`` pass through, and it logs per user: consumed films (training films + clicks),
  the recent clicked history, decaying per-genre counts of clicked and of ignored films, clicks
  and ratings given this session, and the step. ``users=`` restricts which calibration users it
  simulates (agents train on some users and are evaluated on others).
* :func:`observe_platform` -- the observation built only from that log and the platform's model.

Policies read the same view: ``env.available_mask()``, ``env.platform_scores()`` (the platform's
immediate guess), ``env.genre_clicks`` ... Only a policy labelled **oracle** reads ``env.sim``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._checks import check_int, check_range, check_seed, need


@dataclass
class PlatformModel:
    """What the platform knows before any session: its recommender's factors, item genres, popularity."""

    user_factors: torch.Tensor  # [U, d] rows in the simulator's calibration-user order
    item_factors: torch.Tensor  # [N, d]
    item_bias: torch.Tensor  # [N]
    item_genres: torch.Tensor  # [N, G] 0/1
    item_popularity: torch.Tensor  # [N] training ratings per film
    train_items: list  # per user: the films in their logged past (training split)

    def scores(self) -> torch.Tensor:
        """FloatTensor [U, N]: the platform recommender's score of every film for every user, standardised."""
        raw = self.user_factors @ self.item_factors.T + self.item_bias
        return (raw - raw.mean()) / raw.std().clamp_min(1e-6)

    def genre_shares(self) -> torch.Tensor:
        """FloatTensor [N, G]: each film's genres, summing to 1 per film."""
        return (self.item_genres / self.item_genres.sum(1, keepdim=True)).float()

    def item_features(self) -> torch.Tensor:
        """FloatTensor [N, F]: the platform's item features -- factors, bias, genre shares, log popularity."""
        return torch.cat(
            [
                self.item_factors,
                self.item_bias[:, None],
                self.genre_shares(),
                torch.log1p(self.item_popularity)[:, None],
            ],
            1,
        ).float()


def fit_platform_model(split, n_users: int, n_items: int, calibration, config=None) -> PlatformModel:
    """BPR on ``split.train`` (early-stopped on ``split.valid``), rows aligned with ``calibration``'s users
    (notebook 06).

    ``split`` holds indexed frames (``MovieLens.indexed()``: 0-based ``user``/``item`` and ``user_id``).
    """
    from .baselines import BPR, BPRConfig
    from .calibration import calibration_rows

    model = BPR(n_users, n_items, config or BPRConfig(progress=False)).fit(split.train, split.valid)
    users, items = model.factors()
    rows = torch.as_tensor(calibration_rows(calibration, split.train), dtype=torch.long)
    return PlatformModel(
        users[rows],
        items,
        model.net.bias.weight.detach()[:, 0].clone(),
        calibration.item_genres.clone(),
        calibration.item_popularity.clone(),
        [np.asarray(t) for t in calibration.train_items],
    )


PLATFORM_VERSION = 1  # bump when fit_platform_model changes, so stale caches are refitted


def movielens_platform(seed: int = 0, refresh: bool = False) -> PlatformModel:
    """The platform model for the standard simulator (Track-A train split ``seed``), cached as safetensors
    (notebook 06).

    The cache follows :mod:`recnb.cache`'s policy: a lock per entry, a sha256 sidecar checked on
    read, a corrupt entry reported and refitted.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load, save

    from . import cache, config
    from .calibration import movielens_calibration

    cal = movielens_calibration(seed=seed)
    names = ("user_factors", "item_factors", "item_bias")

    def fit() -> PlatformModel:
        from .data import load_movielens
        from .splits import split_random

        ml = load_movielens("100k")
        return fit_platform_model(split_random(ml.indexed(), seed=seed), ml.n_users, ml.n_items, cal)

    def parse(data: bytes, meta: dict) -> PlatformModel:
        try:
            t = load(data)
            tensors = [t[k] for k in names]
        except (SafetensorError, KeyError, ValueError) as exc:
            raise cache.CorruptEntry(f"not a platform model ({exc!r})") from exc
        return PlatformModel(
            *tensors, cal.item_genres.clone(), cal.item_popularity.clone(), [np.asarray(x) for x in cal.train_items]
        )

    def dump(platform: PlatformModel) -> tuple[bytes, dict]:
        return save({k: getattr(platform, k).contiguous() for k in names}), {}

    path = config.data_dir(create=False) / "simulator" / f"ml-100k-platform-v{PLATFORM_VERSION}-seed{seed}.safetensors"
    return cache.cached(path, load=parse, build=fit, dump=dump, what="platform model cache", refresh=refresh)


def platform_view(env, what: str):
    """``env`` when it is the platform's view of a simulator (a :class:`PlatformEnv`), else a ``TypeError``
    naming the fix. ``what`` is the caller, named in the message (e.g. ``"ScorePolicy"``)."""
    if not (hasattr(env, "platform_scores") and hasattr(env, "sim")):
        raise TypeError(
            f"{what} reads the platform's view of the simulator, not the bare simulator: wrap it, "
            "recnb.platform.PlatformEnv(sim, recnb.platform.movielens_platform(), users=...)"
        )
    return env


def split_users(n_users: int, train_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint calibration-user rows: (train users, evaluation users), a seeded random cut (notebook 06)."""
    check_int("n_users", n_users, minimum=2)
    check_range("train_fraction", train_fraction, 0, 1, closed="neither")
    order = np.random.default_rng(check_seed("seed", seed)).permutation(n_users)
    cut = int(round(train_fraction * n_users))
    need(0 < cut < n_users, f"{n_users} users cannot be cut into two non-empty groups at {train_fraction}")
    return np.sort(order[:cut]), np.sort(order[cut:])


class PlatformEnv:
    """A simulator seen only through the platform's logs and models (see the module docstring) (notebook 06)."""

    def __init__(self, sim, platform: PlatformModel, users=None, decay: float = 0.8):
        check_range("PlatformEnv decay", decay, 0, 1, closed="left")
        if platform.item_factors.shape[0] != sim.n_items or len(platform.train_items) != sim.n_calibration_users:
            raise ValueError(
                "the platform model and the simulator disagree on the catalogue or the users; "
                "fit the platform on the split the simulator was calibrated on"
            )
        self.sim, self.platform, self.decay = sim, platform, float(decay)
        self.device = sim.device
        self.config = sim.config
        self.pool = None if users is None else torch.as_tensor(np.asarray(users), dtype=torch.long)
        if self.pool is not None and (
            self.pool.numel() == 0 or int(self.pool.min()) < 0 or int(self.pool.max()) >= sim.n_calibration_users
        ):
            raise ValueError(f"users must be calibration rows in [0, {sim.n_calibration_users})")
        dev = self.device
        self.item_popularity = platform.item_popularity.to(dev)
        self.item_genres = platform.item_genres.to(dev)
        self.genre_share = platform.genre_shares().to(dev)
        self._scores = platform.scores().to(dev)
        self._user_factors = platform.user_factors.to(dev)
        K, N = sim.config.history_len, sim.n_items
        self._logged_seen = torch.zeros(sim.n_calibration_users, N, dtype=torch.bool)
        self._logged_history = torch.full((sim.n_calibration_users, K), N, dtype=torch.long)
        for row, seen in enumerate(platform.train_items):
            seen = torch.as_tensor(np.asarray(seen), dtype=torch.long)
            self._logged_seen[row, seen] = True
            if len(seen):
                self._logged_history[row, -min(K, len(seen)) :] = seen[-K:]
        self._logged_seen, self._logged_history = self._logged_seen.to(dev), self._logged_history.to(dev)
        self.user = None

    # ------------------------------------------------------------ sizes
    @property
    def n_items(self) -> int:
        return self.sim.n_items

    @property
    def n_genres(self) -> int:
        return self.item_genres.shape[1]

    @property
    def n_calibration_users(self) -> int:
        return self.sim.n_calibration_users

    @property
    def n_users(self) -> int:
        return 0 if self.user is None else self.user.shape[0]

    @property
    def active(self) -> torch.Tensor:
        """BoolTensor [B]: users still in their session (a platform sees who is still there)."""
        return self.sim.active

    # ------------------------------------------------------------ episodes
    def reset(self, n_users: int, seed: int | None = None, users=None) -> dict:
        """Start ``n_users`` sessions; without ``users`` they are drawn from this env's pool (or from everyone)."""
        if users is None and self.pool is not None:
            if seed is None:
                raise ValueError("give a seed: the env draws its users from its pool with it")
            pick = torch.randint(0, len(self.pool), (int(n_users),), generator=torch.Generator().manual_seed(int(seed)))
            users = self.pool[pick]
        self.sim.reset(n_users, seed=seed, users=users)
        B, dev, G = self.sim.n_users, self.device, self.n_genres
        self.user = torch.zeros(B, dtype=torch.long, device=dev)
        self.consumed = torch.zeros(B, self.n_items, dtype=torch.bool, device=dev)
        self.ignored = torch.zeros(B, self.n_items, dtype=torch.bool, device=dev)
        self.history = torch.zeros(B, self.config.history_len, dtype=torch.long, device=dev)
        self.genre_clicks = torch.zeros(B, G, device=dev)
        self.genre_ignored = torch.zeros(B, G, device=dev)
        self.t = torch.zeros(B, device=dev)
        self.clicks = torch.zeros(B, device=dev)
        self.rating_sum = torch.zeros(B, device=dev)
        self.last_click = torch.zeros(B, device=dev)
        self._start(torch.ones(B, dtype=torch.bool, device=dev))
        return observe_platform(self)

    def reset_where(self, mask: torch.Tensor) -> dict:
        """Restart the sessions where ``mask`` is True (vector-env autoreset), drawing users from the pool."""
        users = None
        if self.pool is not None:
            n = int(mask.sum())
            users = (
                self.pool[
                    torch.randint(0, len(self.pool), (n,), generator=self.sim.generator, device=self.sim.device).cpu()
                ]
                if n
                else None
            )
        self.sim.reset_where(mask, users=users)
        self._start(mask)
        return observe_platform(self)

    def _start(self, mask: torch.Tensor) -> None:
        """Fill the log of restarted users from the platform's records of their past (not from the simulator)."""
        rows = mask.nonzero().squeeze(1)
        who = self.sim.state.user.index_select(0, rows)  # who the user is: a platform knows its users
        self.user.index_copy_(0, rows, who)
        if self.config.mask_train_items:
            self.consumed[rows] = self._logged_seen.index_select(0, who)
            self.history[rows] = self._logged_history.index_select(0, who)
        else:
            self.consumed[rows] = False
            self.history[rows] = self.n_items
        self.ignored[rows] = False
        for log in (self.genre_clicks, self.genre_ignored):
            log[rows] = 0.0
        for log in (self.t, self.clicks, self.rating_sum, self.last_click):
            log[rows] = 0.0

    def step(self, actions):
        """Show items; returns ``(obs, reward, terminated, truncated, info)``, ``obs`` from the log
        (:meth:`observation`)."""
        _, reward, terminated, truncated, info = self.sim.step(actions)
        was = info["was_active"]
        clicked = info["clicked"]
        shown = actions if actions.dim() == 2 else actions[:, None]
        item = info["item"].clamp_min(0)
        hit = clicked.float()
        # what a platform logs: the films shown and ignored, the click and its rating, the step
        self.genre_clicks.mul_(self.decay).addcmul_(self.genre_share.index_select(0, item), hit[:, None])
        ignored_share = self.genre_share.index_select(0, shown.reshape(-1)).view(*shown.shape, -1).sum(1)
        self.genre_ignored.mul_(self.decay).addcmul_(ignored_share, ((~clicked) & was).float()[:, None])
        miss_rows = ((~clicked) & was).nonzero().squeeze(1)
        self.ignored[miss_rows.repeat_interleave(shown.shape[1]), shown[miss_rows].reshape(-1)] = True
        self.consumed[clicked.nonzero().squeeze(1), item[clicked]] = True
        shifted = torch.cat([self.history[:, 1:], item[:, None]], 1)
        self.history = torch.where(clicked[:, None], shifted, self.history)
        self.t += was.float()
        self.clicks += hit
        self.rating_sum += info["rating"] * hit
        self.last_click = torch.where(was, hit, self.last_click)
        return self.observation(), reward, terminated, truncated, info

    def observation(self) -> dict:
        """The log's ``history`` [B, K], ``mask`` [B, N] and ``step`` [B], like the simulator's observation.

        Cheap: what ``step`` returns. An agent's full view (user features, the platform's scores) is
        :func:`observe_platform`, built only when asked for.
        """
        return {"history": self.history, "mask": self.available_mask(), "step": self.t}

    # ------------------------------------------------------------ what policies read
    def available_mask(self) -> torch.Tensor:
        """BoolTensor [B, N]: films the platform has not seen this user consume."""
        return ~self.consumed

    def platform_scores(self) -> torch.Tensor:
        """FloatTensor [B, N]: the platform recommender's (standardised) score of every film for these users."""
        return self._scores.index_select(0, self.user)

    def genre_exposure(self) -> torch.Tensor:
        """FloatTensor [B, N]: the user's recent clicks on each film's genres (decayed counts, from the log)."""
        return self.genre_clicks @ self.genre_share.T

    def user_features(self) -> torch.Tensor:
        """FloatTensor [B, F]: ``[platform user factors | genre clicks (G) | genre ignored (G) | elapsed |
        session click rate | last step clicked | mean rating given / 5]``."""
        elapsed = self.t / self.config.horizon
        rate = self.clicks / self.t.clamp_min(1)
        mean_rating = self.rating_sum / self.clicks.clamp_min(1) / 5.0
        return torch.cat(
            [
                self._user_factors.index_select(0, self.user),
                self.genre_clicks,
                self.genre_ignored,
                elapsed[:, None],
                rate[:, None],
                self.last_click[:, None],
                mean_rating[:, None],
            ],
            1,
        ).float()

    def exposure_columns(self) -> slice:
        """Where :meth:`user_features` keeps the per-genre click counts (the fatigue signal a platform has)."""
        d = self._user_factors.shape[1]
        return slice(d, d + self.n_genres)

    def user_feature_dim(self) -> int:
        return self._user_factors.shape[1] + 2 * self.n_genres + 4

    def item_features(self) -> torch.Tensor:
        """FloatTensor [N, F] of the platform's item features (see :meth:`PlatformModel.item_features`)."""
        return self.platform.item_features().to(self.device)


def observe_platform(env: PlatformEnv) -> dict:
    """The agent's observation, built from the platform's log and models only, as new tensors (notebook 06).

    ``user``: :meth:`PlatformEnv.user_features`; ``history``: last clicked films (pad = n_items);
    ``mask``: films not yet consumed; ``user_id``: the calibration row (who the user is);
    ``immediate``: the platform recommender's score of every film -- what platform-greedy maximises.
    """
    return {
        "user": env.user_features(),
        "history": env.history.clone(),
        "mask": env.available_mask(),
        "user_id": env.user.clone(),
        "immediate": env.platform_scores(),
    }
