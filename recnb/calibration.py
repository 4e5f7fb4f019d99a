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


# ---------------------------------------------------------------- fidelity against held-out real data


def greedy_first_picks(cal: Calibration, scores: torch.Tensor | None = None) -> torch.Tensor:
    """LongTensor [U]: each user's most likely choice among films they have not rated in training (notebook 04).

    ``scores`` ([U, N], calibration rows) ranks by another model instead, e.g. ``cal.ratings()``.
    """
    logits = (cal.choice_logits() if scores is None else torch.as_tensor(scores, dtype=torch.float32)).clone()
    if logits.shape != (len(cal.train_items), cal.item_popularity.shape[0]):
        raise ValueError(
            f"scores must have shape ({len(cal.train_items)}, {cal.item_popularity.shape[0]}) "
            f"(calibration users x films), got {tuple(logits.shape)}"
        )
    for row, seen in enumerate(cal.train_items):
        logits[row, torch.as_tensor(seen, dtype=torch.long)] = float("-inf")
    return logits.argmax(1)


def rare_pick_share(cal: Calibration, max_ratings: int = 5, scores: torch.Tensor | None = None) -> float:
    """Share of users whose greedy first pick has at most ``max_ratings`` training ratings (notebook 04).

    The winner's-curse check: a simulated user who loves films almost nobody chose is not a real one.
    """
    picks = greedy_first_picks(cal, scores)
    return float((cal.item_popularity[picks] <= max_ratings).float().mean())


def histogram_distance(a: np.ndarray, b: np.ndarray, bins) -> float:
    """Total-variation distance between the histograms of ``a`` and ``b`` over ``bins`` (0 = same, 1 = disjoint)."""
    ha = np.histogram(a, bins=bins)[0].astype(float)
    hb = np.histogram(b, bins=bins)[0].astype(float)
    if ha.sum() == 0 or hb.sum() == 0:
        raise ValueError("histogram_distance needs at least one value of each sample inside the bins")
    return float(0.5 * np.abs(ha / ha.sum() - hb / hb.sum()).sum())


RATING_BINS = np.arange(0.5, 6.0)  # one bin per star, 1..5


def rating_distance(simulated, real) -> float:
    """Total-variation distance between the star histograms of two rating samples, rounded to 1..5 (notebook 04)."""
    return histogram_distance(
        np.round(np.asarray(simulated, dtype=float)), np.round(np.asarray(real, dtype=float)), RATING_BINS
    )


def popularity_bins(cal: Calibration, n_bins: int = 20) -> np.ndarray:
    """Equal-width bins over ``log(1 + training ratings)`` of the catalogue's films (notebook 04)."""
    top = float(np.log1p(float(cal.item_popularity.max())))
    return np.linspace(0.0, top + 1e-6, n_bins + 1)


def popularity_distance(cal: Calibration, items_a, items_b, n_bins: int = 20) -> float:
    """Total-variation distance between the popularity (log training count) histograms of two film samples
    (notebook 04)."""
    pop = np.log1p(cal.item_popularity.numpy())
    return histogram_distance(
        pop[np.asarray(items_a, dtype=np.int64)], pop[np.asarray(items_b, dtype=np.int64)], popularity_bins(cal, n_bins)
    )


def calibration_rows(cal: Calibration, frame: pd.DataFrame) -> np.ndarray:
    """The dataset's 0-based ``user`` index of every calibration row, read from an indexed frame (notebook 04)."""
    if not {"user", "user_id"} <= set(frame.columns):
        raise ValueError("frame needs `user` and `user_id` columns; pass a part of split_random(ml.indexed())")
    index_of = dict(zip(frame["user_id"].to_numpy().tolist(), frame["user"].to_numpy().tolist()))
    missing = [int(u) for u in cal.user_ids if int(u) not in index_of]
    if missing:
        raise KeyError(
            f"calibration users {missing[:5]} are not in the frame; pass the split the calibration was fitted on"
        )
    return np.asarray([index_of[int(u)] for u in cal.user_ids], dtype=np.int64)


def ranking_fidelity(
    cal: Calibration,
    split,
    n_users: int,
    n_items: int,
    others: dict | None = None,
    part: str = "test",
    k: int = 10,
    seed: int = 0,
) -> dict:
    """The choice and rating models as rankers of a held-out part, beside popularity, random and ``others``
    (notebook 04).

    Full-ranking evaluation (``recnb.metrics.split_evaluator``: training and, for test, validation
    films masked). ``others`` maps a name to a ``[U, N]`` score tensor in calibration-row order (e.g.
    the platform's BPR, ``movielens_platform().scores()``). Returns ``{name: EvalResult}``.
    """
    from .metrics import split_evaluator

    rows = torch.as_tensor(calibration_rows(cal, split.train))
    if int(rows.max()) >= n_users or cal.item_popularity.shape[0] != n_items:
        raise ValueError(
            f"the calibration ({len(rows)} users, {cal.item_popularity.shape[0]} films) does not fit "
            f"a catalogue of {n_users} users and {n_items} films"
        )
    evaluator = split_evaluator(split, part, n_users, n_items, ks=(k,))
    gen = torch.Generator().manual_seed(seed)
    rankers = {
        "choice model": cal.choice_logits(),
        "rating model": cal.ratings(),
        **(others or {}),
        "popularity": cal.item_popularity.expand(len(rows), -1),
        "random": torch.rand(len(rows), n_items, generator=gen),
    }
    out = {}
    for name, scores in rankers.items():
        scores = torch.as_tensor(scores, dtype=torch.float32)
        if scores.shape != (len(rows), n_items):
            raise ValueError(f"scores of {name!r} must have shape ({len(rows)}, {n_items}), got {tuple(scores.shape)}")
        full = torch.zeros(n_users, n_items)
        full[rows] = scores
        out[name] = evaluator.evaluate(full)
    return out


@torch.no_grad()
def simulated_choices(
    cal: Calibration, n_users: int = 2000, steps: int = 5, slate_size: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(films clicked, their ratings) of simulated users shown random slates, long-term effects off (notebook 04).

    A random recommender does not steer the choice, so what gets clicked is the simulated user's own
    taste: the thing to compare with what real users went on to rate.
    """
    from .policies import RandomPolicy
    from .simulator import SimulatorConfig, UserSimulator

    sim = UserSimulator(cal, SimulatorConfig(slate_size=slate_size, long_term=False, horizon=max(steps, 1)))
    policy = RandomPolicy(seed)
    sim.reset(n_users, seed=seed)
    items, ratings = [], []
    for _ in range(steps):
        if not bool(sim.active.any()):
            break
        _, _, _, _, info = sim.step(policy(sim))
        clicked = info["clicked"]
        items.append(info["item"][clicked])
        ratings.append(info["rating"][clicked])
    if not items:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return torch.cat(items).numpy(), torch.cat(ratings).numpy()


@dataclass
class FidelityReport:
    """The simulated user measured against a held-out part of real data (notebook 04)."""

    rankers: dict  # name -> EvalResult: each model as a ranker of the held-out part
    k: int
    rare_share: float  # share of greedy first picks with <= max_ratings training ratings
    max_ratings: int
    first_pick_counts: np.ndarray  # [U] training ratings of each user's greedy first pick
    simulated_items: np.ndarray  # films clicked under random slates
    simulated_ratings: np.ndarray  # their ratings (the rating model's, unrounded)
    real_items: np.ndarray  # films of the held-out part
    real_ratings: np.ndarray  # and their real ratings
    popularity_distance: float  # simulated clicks vs real held-out films (TV over log training count)
    popularity_references: dict  # name -> the same distance for a reference sample
    rating_distance: float  # simulated click ratings vs real held-out ratings (TV over stars)
    rating_references: dict  # name -> the same distance for a reference rating sample
    protocol: str

    def ndcg(self) -> dict:
        """``{ranker: NDCG@k}``."""
        return {name: r[f"NDCG@{self.k}"] for name, r in self.rankers.items()}

    def table(self) -> pd.DataFrame:
        """The distances with their references, one row each."""
        rows = [("popularity of chosen films", "simulated clicks (random slates)", self.popularity_distance)]
        rows += [("popularity of chosen films", name, d) for name, d in self.popularity_references.items()]
        rows += [("ratings of chosen films", "simulated clicks (random slates)", self.rating_distance)]
        rows += [("ratings of chosen films", name, d) for name, d in self.rating_references.items()]
        return pd.DataFrame(rows, columns=["what", "sample", "distance to real"]).set_index(["what", "sample"])


def fidelity_report(
    cal: Calibration,
    split,
    n_users: int,
    n_items: int,
    others: dict | None = None,
    part: str = "test",
    k: int = 10,
    max_ratings: int = 5,
    n_sim_users: int = 2000,
    steps: int = 5,
    slate_size: int = 5,
    seed: int = 0,
) -> FidelityReport:
    """Every fidelity check of the simulated user against ``split``'s held-out ``part`` (notebook 04).

    Rankers: :func:`ranking_fidelity`. Winner's curse: :func:`rare_pick_share`. Choices:
    :func:`simulated_choices` vs the real held-out films (popularity) and ratings, each with
    total-variation distances of reference samples -- uniformly random films; a constant rating
    (the training mean), uniformly random stars, and the rating model's own rating of the real
    held-out pairs (how much of the gap is the rating model rather than the choice).
    """
    real = getattr(split, part)
    rankers = ranking_fidelity(cal, split, n_users, n_items, others, part=part, k=k, seed=seed)
    picks = greedy_first_picks(cal)
    counts = cal.item_popularity[picks].numpy()
    sim_items, sim_ratings = simulated_choices(cal, n_sim_users, steps, slate_size, seed)
    if len(sim_items) == 0:
        raise RuntimeError("no simulated user clicked anything; raise n_sim_users or steps")
    real_items = real["item"].to_numpy().astype(np.int64)
    real_ratings = real["rating"].to_numpy().astype(np.float32)
    rng = np.random.default_rng(seed)
    random_items = rng.integers(0, n_items, len(real_items))
    rows = np.searchsorted(cal.user_ids, real["user_id"].to_numpy())
    if np.any(cal.user_ids[np.minimum(rows, len(cal.user_ids) - 1)] != real["user_id"].to_numpy()):
        raise KeyError(f"the {part} part has users the calibration does not know; pass the split it was fitted on")
    model_on_real = cal.ratings()[torch.as_tensor(rows), torch.as_tensor(real_items)].numpy()
    train_mean = float(split.train["rating"].mean())
    return FidelityReport(
        rankers=rankers,
        k=k,
        rare_share=float((counts <= max_ratings).mean()),
        max_ratings=max_ratings,
        first_pick_counts=counts,
        simulated_items=sim_items,
        simulated_ratings=sim_ratings,
        real_items=real_items,
        real_ratings=real_ratings,
        popularity_distance=popularity_distance(cal, sim_items, real_items),
        popularity_references={"uniformly random films": popularity_distance(cal, random_items, real_items)},
        rating_distance=rating_distance(sim_ratings, real_ratings),
        rating_references={
            "the training mean, every time": rating_distance(np.full(len(real_ratings), train_mean), real_ratings),
            "uniformly random stars": rating_distance(rng.integers(1, 6, len(real_ratings)), real_ratings),
            "rating model on the real held-out pairs": rating_distance(model_on_real, real_ratings),
        },
        protocol=f"{split.protocol}, {part} part; simulated: {n_sim_users} users, {steps} steps of "
        f"{slate_size} random films, long-term effects off, seed {seed}",
    )
