"""What the simulated user is made of, fitted on a training split only, and how faithful it is (notebook 04).

A simulated user is a real training user in two parts (docs/protocols.md, "The simulated user"):

* **Choice** -- would this user pick this film if shown it? A logistic matrix factorisation fitted on
  *implicit* feedback: every (user, film) cell of the training split is 1 if the user rated the film
  and 0 if not, ``logit P(rated) = a_u + b_i + p_u . q_i``. It reproduces real consumption, popularity
  included: a film that almost nobody chose gets a low ``b_i``. The click model comes from here.
* **Rating** -- how much they like a film once watched: explicit MF with biases,
  ``r = mu + b_u + b_i + p_u . q_i``, regularised *per film and per user* (not per rating), so a film
  with few ratings is pulled to the prior and a never-rated film *is* the prior (zero bias and factors).
  Fitting the ratings alone and treating the highest predicted rating as "what the user wants" picks
  films with one lucky 5-star rating (the winner's curse); this split avoids it.

How faithful the fitted user is to held-out real data: :mod:`recnb.fidelity` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ._checks import (
    check_columns,
    check_finite_parameters,
    check_int,
    check_non_negative,
    check_positive,
    check_seed,
    finite_or_raise,
    need,
)
from .data import GENRES

CALIBRATION_VERSION = 2  # bump when calibrate() changes, so stale caches are refitted


@dataclass
class Calibration:
    """What the simulator learned from a training split: choice and rating models, genres, train histories."""

    mu: float
    user_factors: torch.Tensor  # [U, d] rating model
    user_bias: torch.Tensor  # [U]
    item_factors: torch.Tensor  # [N, d]
    item_bias: torch.Tensor  # [N]
    choice_user_factors: torch.Tensor  # [U, d] choice model (implicit feedback)
    choice_user_bias: torch.Tensor  # [U]
    choice_item_factors: torch.Tensor  # [N, d]
    choice_item_bias: torch.Tensor  # [N]
    item_genres: torch.Tensor  # [N, G] 0/1
    item_popularity: torch.Tensor  # [N] training ratings per item
    train_items: list  # per user: training item indices in chronological order
    user_ids: np.ndarray  # [U] the real user ids the rows stand for
    train_rmse: float

    def choice_logits(self) -> torch.Tensor:
        """FloatTensor [U, N]: ``logit P(user rated film)`` at the start of a session (notebook 04)."""
        return (
            self.choice_user_bias[:, None]
            + self.choice_item_bias[None, :]
            + self.choice_user_factors @ self.choice_item_factors.T
        )

    def ratings(self) -> torch.Tensor:
        """FloatTensor [U, N]: the rating model's rating of every film, clipped to [1, 5] (notebook 04)."""
        return (
            self.mu + self.user_bias[:, None] + self.item_bias[None, :] + self.user_factors @ self.item_factors.T
        ).clamp(1.0, 5.0)


def _check_fit_arguments(where: str, *, n_users, n_items, dim, l2, steps, lr, seed) -> None:
    """A fit's sizes are integers >= 1, its step size a finite number > 0, its penalty >= 0, its seed a seed."""
    for name, value in (("n_users", n_users), ("n_items", n_items), ("dim", dim), ("steps", steps)):
        check_int(f"{where}.{name}", value, minimum=1)
    check_positive(f"{where}.lr", lr)
    check_non_negative(f"{where}.l2", l2)
    check_seed(f"{where}.seed", seed)


def fit_choice_model(
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    n_items: int,
    dim: int = 16,
    l2: float = 1.0,
    steps: int = 200,
    lr: float = 0.05,
    seed: int = 0,
):
    """Logistic MF on the whole user x film 0/1 matrix, full-batch Adam, seeded; returns (P, a, Q, b) (notebook 04).

    Dense is cheap here (943 x 1,682 cells) and uses every unrated film as a negative, so the
    probabilities are those of the data, not of a sampling scheme. ``l2`` (summed once per factor
    row) was chosen on Track A's validation part (NDCG@10 of the logits as a ranker).
    """
    need(len(users) > 0, "fit_choice_model needs at least one (user, item) pair")
    _check_fit_arguments(
        "fit_choice_model", n_users=n_users, n_items=n_items, dim=dim, l2=l2, steps=steps, lr=lr, seed=seed
    )
    where, fix = "fit_choice_model", f"lower lr (now {lr:g}; the default is 0.05)"
    gen = torch.Generator().manual_seed(seed)
    target = torch.zeros(n_users, n_items)
    target[torch.as_tensor(np.asarray(users, dtype=np.int64)), torch.as_tensor(np.asarray(items, dtype=np.int64))] = 1.0
    P = (0.01 * torch.randn(n_users, dim, generator=gen)).requires_grad_()
    Q = (0.01 * torch.randn(n_items, dim, generator=gen)).requires_grad_()
    a = torch.zeros(n_users, 1, requires_grad=True)
    b = torch.zeros(1, n_items, requires_grad=True)
    opt = torch.optim.Adam([P, Q, a, b], lr=lr)
    for step in range(steps):
        opt.zero_grad()
        logits = torch.addmm(a + b, P, Q.T)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") + l2 * (
            P.pow(2).sum() + Q.pow(2).sum()
        )
        finite_or_raise(loss, where=where, step=f"step {step + 1} of {steps}", fix=fix)  # CPU scalar: no sync to pay
        loss.backward()
        opt.step()
    check_finite_parameters({"P": P, "Q": Q, "a": a, "b": b}, where=where, step=f"the end ({steps} steps)", fix=fix)
    return P.detach(), a.detach()[:, 0], Q.detach(), b.detach()[0]


def fit_rating_model(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    dim: int = 16,
    l2: float = 10.0,
    steps: int = 300,
    lr: float = 0.05,
    seed: int = 0,
):
    """Explicit MF with biases, shrunk by count; returns (mu, P, b_u, Q, b_i, train RMSE) (notebook 04).

    The penalty ``l2 * (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)`` is summed once per user and per film, so a
    film's data must outweigh a fixed prior: with one rating its bias stays near 0. Films and users
    with no rating get exactly the prior (zeros), never their random initial factors. ``l2`` was
    chosen on Track A's validation RMSE.
    """
    need(len(ratings) > 0, "fit_rating_model needs at least one rating")
    _check_fit_arguments(
        "fit_rating_model", n_users=n_users, n_items=n_items, dim=dim, l2=l2, steps=steps, lr=lr, seed=seed
    )
    where, fix = "fit_rating_model", f"lower lr (now {lr:g}; the default is 0.05), or check the ratings for NaN"
    gen = torch.Generator().manual_seed(seed)
    u = torch.as_tensor(np.asarray(users, dtype=np.int64))
    i = torch.as_tensor(np.asarray(items, dtype=np.int64))
    r = torch.as_tensor(np.asarray(ratings, dtype=np.float32))
    mu = float(r.mean())
    P = (0.1 * torch.randn(n_users, dim, generator=gen)).requires_grad_()
    Q = (0.1 * torch.randn(n_items, dim, generator=gen)).requires_grad_()
    bu = torch.zeros(n_users, requires_grad=True)
    bi = torch.zeros(n_items, requires_grad=True)
    opt = torch.optim.Adam([P, Q, bu, bi], lr=lr)
    for step in range(steps):
        opt.zero_grad()
        pred = mu + bu[u] + bi[i] + (P[u] * Q[i]).sum(-1)
        penalty = P.pow(2).sum() + Q.pow(2).sum() + bu.pow(2).sum() + bi.pow(2).sum()
        loss = ((pred - r) ** 2).sum() + l2 * penalty
        finite_or_raise(loss, where=where, step=f"step {step + 1} of {steps}", fix=fix)  # CPU scalar: no sync to pay
        loss.backward()
        opt.step()
    check_finite_parameters(
        {"P": P, "Q": Q, "b_u": bu, "b_i": bi}, where=where, step=f"the end ({steps} steps)", fix=fix
    )
    with torch.no_grad():
        for table, index, size in ((Q, i, n_items), (bi, i, n_items), (P, u, n_users), (bu, u, n_users)):
            table[torch.bincount(index, minlength=size) == 0] = 0.0  # no data: the prior
        pred = (mu + bu[u] + bi[i] + (P[u] * Q[i]).sum(-1)).clamp(1, 5)
        rmse = float(((pred - r) ** 2).mean().sqrt())
    return mu, P.detach(), bu.detach(), Q.detach(), bi.detach(), rmse


def calibrate(
    ratings_train: pd.DataFrame,
    items: pd.DataFrame,
    dim: int = 16,
    seed: int = 0,
    rating_l2: float = 10.0,
    choice_l2: float = 1.0,
) -> Calibration:
    """Fit the simulator's choice and rating models on a training split only (notebook 04).

    The penalties default to the values chosen on MovieLens-100K's Track A validation part; a much
    smaller data set wants smaller ones (the prior weighs more against fewer ratings).
    """
    check_columns(
        "ratings_train",
        ratings_train,
        ("user_id", "item_id", "rating"),
        "pass a split's train frame, e.g. split_random(ml.indexed()).train",
    )
    need(not ratings_train.empty, "ratings_train is empty; pass the training split of MovieLens")
    check_columns("items", items, ("item_id", "genres"), "pass MovieLens.items")
    item_ids = items["item_id"].to_numpy()
    if np.any(np.diff(item_ids) <= 0):
        raise ValueError("items must be sorted by item_id without duplicates (as MovieLens.items is)")
    frame = ratings_train.sort_values(
        ["user_id", "timestamp", "item_id"] if "timestamp" in ratings_train else ["user_id", "item_id"], kind="stable"
    )
    item_idx = np.searchsorted(item_ids, frame["item_id"].to_numpy())
    if np.any(item_idx >= len(item_ids)) or np.any(
        item_ids[np.minimum(item_idx, len(item_ids) - 1)] != frame["item_id"].to_numpy()
    ):
        raise KeyError("ratings_train has item ids that are not in items; pass the items of the same dataset")
    user_ids, user_idx = np.unique(frame["user_id"].to_numpy(), return_inverse=True)
    n_users, n_items = len(user_ids), len(item_ids)
    mu, P, bu, Q, bi, rmse = fit_rating_model(
        user_idx, item_idx, frame["rating"].to_numpy(), n_users, n_items, dim=dim, l2=rating_l2, seed=seed
    )
    cP, ca, cQ, cb = fit_choice_model(user_idx, item_idx, n_users, n_items, dim=dim, l2=choice_l2, seed=seed)
    genre_index = {g: k for k, g in enumerate(GENRES)}
    genres = torch.zeros(n_items, len(GENRES))
    for row, names in enumerate(items["genres"]):
        for name in names:
            genres[row, genre_index.get(name, 0)] = 1.0
    genres[genres.sum(1) == 0, 0] = 1.0  # no genre listed -> "unknown"
    popularity = torch.as_tensor(np.bincount(item_idx, minlength=n_items), dtype=torch.float32)
    starts = np.r_[0, np.flatnonzero(np.diff(user_idx)) + 1, len(user_idx)]
    train_items = [item_idx[a:b] for a, b in zip(starts[:-1], starts[1:])]
    return Calibration(mu, P, bu, Q, bi, cP, ca, cQ, cb, genres, popularity, train_items, user_ids, rmse)


_TENSORS = (
    "user_factors",
    "user_bias",
    "item_factors",
    "item_bias",
    "choice_user_factors",
    "choice_user_bias",
    "choice_item_factors",
    "choice_item_bias",
    "item_genres",
    "item_popularity",
)


def _calibration_bytes(cal: Calibration) -> bytes:
    """A calibration as safetensors bytes (tensors only: loading it runs no code)."""
    from safetensors.torch import save

    lengths = torch.as_tensor([len(t) for t in cal.train_items], dtype=torch.long)
    tensors = {name: getattr(cal, name) for name in _TENSORS}
    tensors.update(
        {
            "mu": torch.tensor([cal.mu]),
            "train_lengths": lengths,
            "train_flat": torch.as_tensor(np.concatenate(cal.train_items), dtype=torch.long),
            "user_ids": torch.as_tensor(cal.user_ids, dtype=torch.long),
            "train_rmse": torch.tensor([cal.train_rmse]),
        }
    )
    return save({k: v.contiguous() for k, v in tensors.items()})


def _calibration_from_bytes(data: bytes, meta: dict | None = None) -> Calibration:
    """Parse verified safetensors bytes; raises CorruptEntry when they do not hold a calibration."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from .cache import CorruptEntry

    try:
        t = load(data)
        ends = t["train_lengths"].cumsum(0).tolist()
        flat = t["train_flat"].numpy()
        train_items = [flat[a:b] for a, b in zip([0] + ends[:-1], ends)]
        return Calibration(
            float(t["mu"]),
            *(t[name] for name in _TENSORS[:8]),
            t["item_genres"],
            t["item_popularity"],
            train_items,
            t["user_ids"].numpy(),
            float(t["train_rmse"]),
        )
    except (SafetensorError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CorruptEntry(f"not a calibration ({exc!r})") from exc


def save_calibration(cal: Calibration, path) -> None:
    """Write a calibration as safetensors plus a sha256 sidecar (``<name>.json``), each atomically."""
    from .cache import write_entry

    write_entry(path, _calibration_bytes(cal))


def load_calibration(path) -> Calibration:
    """Read :func:`save_calibration`'s file: read once, sha256 checked against the sidecar, parsed from those bytes.

    Raises ``FileNotFoundError`` when there is none and :class:`recnb.cache.CorruptEntry` when it fails its check.
    """
    from .cache import read_entry

    entry = read_entry(path)
    if entry is None:
        raise FileNotFoundError(f"no calibration at {path}; write one with save_calibration(cal, path)")
    return _calibration_from_bytes(*entry)


def movielens_calibration(seed: int = 0, dim: int = 16, refresh: bool = False) -> Calibration:
    """Calibration on MovieLens-100K's Track-A training split (``split_random(seed)``), cached on disk (notebook 04).

    The cache (``data_dir()/simulator/``, safetensors + sha256 sidecar, under :mod:`recnb.cache`'s lock)
    saves the ~10 s fit in later notebooks; a corrupt entry is reported and refitted.
    """
    from . import cache, config

    def fit() -> Calibration:
        from .data import load_movielens
        from .splits import split_random

        ml = load_movielens("100k")
        return calibrate(split_random(ml.indexed(), seed=seed).train, ml.items, dim=dim, seed=seed)

    path = (
        config.data_dir(create=False)
        / "simulator"
        / f"ml-100k-calibration-v{CALIBRATION_VERSION}-seed{seed}-dim{dim}.safetensors"
    )
    return cache.cached(
        path,
        load=_calibration_from_bytes,
        build=fit,
        dump=lambda cal: (_calibration_bytes(cal), {}),
        what="simulator calibration",
        refresh=refresh,
    )


# the fidelity checks live in their own module; imported last because they use Calibration (defined above)
from .fidelity import *  # noqa: E402,F403
