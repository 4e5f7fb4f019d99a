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

The fidelity checks at the bottom measure the fitted user against held-out real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

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
        return (self.choice_user_bias[:, None] + self.choice_item_bias[None, :]
                + self.choice_user_factors @ self.choice_item_factors.T)

    def ratings(self) -> torch.Tensor:
        """FloatTensor [U, N]: the rating model's rating of every film, clipped to [1, 5] (notebook 04)."""
        return (self.mu + self.user_bias[:, None] + self.item_bias[None, :]
                + self.user_factors @ self.item_factors.T).clamp(1.0, 5.0)


def fit_choice_model(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, dim: int = 16,
                     l2: float = 1.0, steps: int = 200, lr: float = 0.05, seed: int = 0):
    """Logistic MF on the whole user x film 0/1 matrix, full-batch Adam, seeded; returns (P, a, Q, b) (notebook 04).

    Dense is cheap here (943 x 1,682 cells) and uses every unrated film as a negative, so the
    probabilities are those of the data, not of a sampling scheme. ``l2`` (summed once per factor
    row) was chosen on Track A's validation part (NDCG@10 of the logits as a ranker).
    """
    if len(users) == 0:
        raise ValueError("fit_choice_model needs at least one (user, item) pair")
    gen = torch.Generator().manual_seed(seed)
    target = torch.zeros(n_users, n_items)
    target[torch.as_tensor(np.asarray(users, dtype=np.int64)), torch.as_tensor(np.asarray(items, dtype=np.int64))] = 1.0
    P = (0.01 * torch.randn(n_users, dim, generator=gen)).requires_grad_()
    Q = (0.01 * torch.randn(n_items, dim, generator=gen)).requires_grad_()
    a = torch.zeros(n_users, 1, requires_grad=True)
    b = torch.zeros(1, n_items, requires_grad=True)
    opt = torch.optim.Adam([P, Q, a, b], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        logits = torch.addmm(a + b, P, Q.T)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") + l2 * (P.pow(2).sum() + Q.pow(2).sum())
        loss.backward()
        opt.step()
    return P.detach(), a.detach()[:, 0], Q.detach(), b.detach()[0]


def fit_rating_model(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
                     dim: int = 16, l2: float = 10.0, steps: int = 300, lr: float = 0.05, seed: int = 0):
    """Explicit MF with biases, shrunk by count; returns (mu, P, b_u, Q, b_i, train RMSE) (notebook 04).

    The penalty ``l2 * (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)`` is summed once per user and per film, so a
    film's data must outweigh a fixed prior: with one rating its bias stays near 0. Films and users
    with no rating get exactly the prior (zeros), never their random initial factors. ``l2`` was
    chosen on Track A's validation RMSE.
    """
    if len(ratings) == 0:
        raise ValueError("fit_rating_model needs at least one rating")
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
    for _ in range(steps):
        opt.zero_grad()
        pred = mu + bu[u] + bi[i] + (P[u] * Q[i]).sum(-1)
        penalty = P.pow(2).sum() + Q.pow(2).sum() + bu.pow(2).sum() + bi.pow(2).sum()
        loss = ((pred - r) ** 2).sum() + l2 * penalty
        loss.backward()
        opt.step()
    with torch.no_grad():
        for table, index, size in ((Q, i, n_items), (bi, i, n_items), (P, u, n_users), (bu, u, n_users)):
            table[torch.bincount(index, minlength=size) == 0] = 0.0  # no data: the prior
        pred = (mu + bu[u] + bi[i] + (P[u] * Q[i]).sum(-1)).clamp(1, 5)
        rmse = float(((pred - r) ** 2).mean().sqrt())
    return mu, P.detach(), bu.detach(), Q.detach(), bi.detach(), rmse


def calibrate(ratings_train: pd.DataFrame, items: pd.DataFrame, dim: int = 16, seed: int = 0,
              rating_l2: float = 10.0, choice_l2: float = 1.0) -> Calibration:
    """Fit the simulator's choice and rating models on a training split only (notebook 04).

    The penalties default to the values chosen on MovieLens-100K's Track A validation part; a much
    smaller data set wants smaller ones (the prior weighs more against fewer ratings).
    """
    need = {"user_id", "item_id", "rating"}
    if not need <= set(ratings_train.columns):
        raise ValueError(f"ratings_train lacks columns {sorted(need - set(ratings_train.columns))}; "
                         "pass a split's train frame, e.g. split_random(ml.indexed()).train")
    if ratings_train.empty:
        raise ValueError("ratings_train is empty; pass the training split of MovieLens")
    if not {"item_id", "genres"} <= set(items.columns):
        raise ValueError("items must have item_id and genres columns; pass MovieLens.items")
    item_ids = items["item_id"].to_numpy()
    if np.any(np.diff(item_ids) <= 0):
        raise ValueError("items must be sorted by item_id without duplicates (as MovieLens.items is)")
    frame = ratings_train.sort_values(["user_id", "timestamp", "item_id"] if "timestamp" in ratings_train
                                      else ["user_id", "item_id"], kind="stable")
    item_idx = np.searchsorted(item_ids, frame["item_id"].to_numpy())
    if np.any(item_idx >= len(item_ids)) or np.any(item_ids[np.minimum(item_idx, len(item_ids) - 1)] != frame["item_id"].to_numpy()):
        raise KeyError("ratings_train has item ids that are not in items; pass the items of the same dataset")
    user_ids, user_idx = np.unique(frame["user_id"].to_numpy(), return_inverse=True)
    n_users, n_items = len(user_ids), len(item_ids)
    mu, P, bu, Q, bi, rmse = fit_rating_model(user_idx, item_idx, frame["rating"].to_numpy(), n_users, n_items,
                                              dim=dim, l2=rating_l2, seed=seed)
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


_TENSORS = ("user_factors", "user_bias", "item_factors", "item_bias", "choice_user_factors", "choice_user_bias",
            "choice_item_factors", "choice_item_bias", "item_genres", "item_popularity")


def save_calibration(cal: Calibration, path) -> None:
    """Write a calibration as safetensors, atomically."""
    from safetensors.torch import save_file

    from .download import atomic_path

    lengths = torch.as_tensor([len(t) for t in cal.train_items], dtype=torch.long)
    tensors = {name: getattr(cal, name) for name in _TENSORS}
    tensors.update({"mu": torch.tensor([cal.mu]), "train_lengths": lengths,
                    "train_flat": torch.as_tensor(np.concatenate(cal.train_items), dtype=torch.long),
                    "user_ids": torch.as_tensor(cal.user_ids, dtype=torch.long), "train_rmse": torch.tensor([cal.train_rmse])})
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))


def load_calibration(path) -> Calibration:
    """Read :func:`save_calibration`'s file (safetensors: no code is loaded)."""
    from safetensors.torch import load_file

    t = load_file(str(path))
    ends = t["train_lengths"].cumsum(0).tolist()
    flat = t["train_flat"].numpy()
    train_items = [flat[a:b] for a, b in zip([0] + ends[:-1], ends)]
    return Calibration(float(t["mu"]), *(t[name] for name in _TENSORS[:8]), t["item_genres"], t["item_popularity"],
                       train_items, t["user_ids"].numpy(), float(t["train_rmse"]))


def movielens_calibration(seed: int = 0, dim: int = 16, refresh: bool = False) -> Calibration:
    """Calibration on MovieLens-100K's Track-A training split (``split_random(seed)``), cached on disk (notebook 04).

    The cache (``data_dir()/simulator/``, safetensors) saves the ~10 s fit in later notebooks.
    """
    from . import config
    from .data import load_movielens
    from .splits import split_random

    path = config.data_dir() / "simulator" / f"ml-100k-calibration-v{CALIBRATION_VERSION}-seed{seed}-dim{dim}.safetensors"
    if path.exists() and not refresh:
        try:
            return load_calibration(path)
        except Exception as exc:  # a corrupt cache is refitted, never trusted
            import warnings

            warnings.warn(f"simulator calibration cache {path} is unreadable ({exc}); refitting", stacklevel=2)
    ml = load_movielens("100k")
    cal = calibrate(split_random(ml.indexed(), seed=seed).train, ml.items, dim=dim, seed=seed)
    save_calibration(cal, path)
    return cal


# ---------------------------------------------------------------- fidelity against held-out real data

def greedy_first_picks(cal: Calibration) -> torch.Tensor:
    """LongTensor [U]: each user's most likely choice among films they have not rated in training (notebook 04)."""
    logits = cal.choice_logits()
    for row, seen in enumerate(cal.train_items):
        logits[row, torch.as_tensor(seen, dtype=torch.long)] = float("-inf")
    return logits.argmax(1)


def rare_pick_share(cal: Calibration, max_ratings: int = 5) -> float:
    """Share of users whose greedy first pick has at most ``max_ratings`` training ratings (notebook 04).

    The winner's-curse check: a simulated user who loves films almost nobody chose is not a real one.
    """
    picks = greedy_first_picks(cal)
    return float((cal.item_popularity[picks] <= max_ratings).float().mean())


def histogram_distance(a: np.ndarray, b: np.ndarray, bins) -> float:
    """Total-variation distance between the histograms of ``a`` and ``b`` over ``bins`` (0 = same, 1 = disjoint)."""
    ha = np.histogram(a, bins=bins)[0].astype(float)
    hb = np.histogram(b, bins=bins)[0].astype(float)
    return float(0.5 * np.abs(ha / ha.sum() - hb / hb.sum()).sum())
