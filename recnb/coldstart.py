"""Cold-start study: can item text rank items nobody has rated yet? (notebook 03)

Protocol (docs/protocols.md, "cold start"): :func:`recnb.splits.split_cold_items` holds 20% of the items out
entirely; models learn from the warm training ratings only; each user with ratings on cold items ranks
*all cold items* (full ranking within the cold sub-catalogue, nothing masked, ties by item index), and the
user's cold ratings are the targets. Repeated over several seeds (each a different cold set), mean ± std.

Scorers, each a function of the warm training data that returns scores for (users x items):

* **random** -- the floor;
* **genre** -- cosine between the user's rating-weighted mean genre vector and the item's multi-hot genres;
* **BPR (ID only)** -- :class:`recnb.baselines.BPR` on warm ratings; cold items' factors never see a
  positive, so this is expected near chance;
* **text profile** -- cosine between the user's rating-weighted mean text embedding and the item's;
* **text kNN** -- sum of rating-weighted text similarities to the item's k nearest rated items;
* **hybrid** -- a ridge projection learned from warm items' text vectors to their BPR factors and bias,
  so a cold item gets factors from its text; on warm items the hybrid blends ID and text factors with a
  confidence weight ``n_i / (n_i + lambda)`` (``n_i`` = training ratings), ``lambda`` chosen on validation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ._checks import check_int, check_non_negative, check_positive, check_range, check_seed, check_tuple, need
from .baselines import BPR, BPRConfig
from .data import GENRES, index_of
from .metrics import FullRankingEvaluator, split_evaluator
from .splits import split_cold_items


def _short_bpr() -> BPRConfig:
    return BPRConfig(lr=1e-2, max_epochs=16, eval_every=4, patience=2, progress=False)


@dataclass(frozen=True)
class ColdStartConfig:
    """Settings of the cold-start study (notebook 03). Frozen, and validated on creation."""

    seeds: tuple = (0, 1, 2, 3, 4)
    """One cold-item split and one BPR run per seed (the protocol asks for >= 5); results are mean ± std over seeds."""
    fraction: float = 0.2
    """Share of items held out as cold (docs/protocols.md)."""
    bpr: BPRConfig = field(default_factory=_short_bpr)
    """BPR schedule. Shortened from notebook 02's (lr 1e-2, <= 16 epochs, validation every 4) so five seeds
    fit the notebook's time budget (2 cores); it early-stops on warm validation NDCG@10 as before."""
    neighbours: int = 20
    """Text kNN: how many of the most similar rated items vote for a candidate."""
    ridge_alphas: tuple = (0.1, 1.0, 10.0, 100.0)
    """Ridge penalties tried (on 20% of warm items held out) for the text -> BPR-factor projection."""
    shrinkage: tuple = (0.0, 3.0, 10.0, 30.0, 100.0)
    """Hybrid on warm items: lambda values tried on validation (0 = plain BPR factors)."""
    k: int = 10
    """Cut-off of the reported metrics."""

    def __post_init__(self):
        tuples = {
            "seeds": check_seed,
            "ridge_alphas": check_positive,
            "shrinkage": check_non_negative,
        }
        for name, each in tuples.items():
            object.__setattr__(self, name, check_tuple(f"ColdStartConfig.{name}", getattr(self, name), each))
        check_range("ColdStartConfig.fraction", self.fraction, 0, 1, closed="neither")
        need(isinstance(self.bpr, BPRConfig), f"ColdStartConfig.bpr must be a BPRConfig, got {type(self.bpr).__name__}")
        check_int("ColdStartConfig.neighbours", self.neighbours, minimum=1)
        check_int("ColdStartConfig.k", self.k, minimum=1)


# ---------------------------------------------------------------- item and user vectors


def genre_vectors(items: pd.DataFrame) -> np.ndarray:
    """L2-normalised multi-hot genre vectors [n_items, n_genres] (notebook 03)."""
    out = np.zeros((len(items), len(GENRES)), dtype=np.float32)
    col = {g: j for j, g in enumerate(GENRES)}
    for i, genres in enumerate(items["genres"]):
        for g in genres:
            out[i, col[g]] = 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def rating_matrix(train: pd.DataFrame, n_users: int, n_items: int) -> np.ndarray:
    """Dense float32 [n_users, n_items] with the rating where rated, else 0."""
    out = np.zeros((n_users, n_items), dtype=np.float32)
    out[train["user"].to_numpy(), train["item"].to_numpy()] = train["rating"].to_numpy()
    return out


def user_profiles(ratings: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Each user's rating-weighted mean of the vectors of items they rated, L2-normalised (notebook 03)."""
    need(
        ratings.shape[1] == len(item_vectors),
        f"ratings has {ratings.shape[1]} items but item_vectors has {len(item_vectors)} rows; pass one vector per item",
    )
    profile = ratings @ item_vectors / np.maximum(ratings.sum(1, keepdims=True), 1e-12)
    return profile / np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)


def knn_scores(ratings: np.ndarray, item_vectors: np.ndarray, candidates: np.ndarray, neighbours: int) -> np.ndarray:
    """Scores [n_users, len(candidates)]: rating-weighted similarity to each candidate's nearest rated items."""
    rated = np.flatnonzero(ratings.any(0))
    sims = item_vectors[candidates] @ item_vectors[rated].T  # [n_candidates, n_rated]
    keep = np.argsort(-sims, axis=1)[:, :neighbours]
    sparse = np.zeros_like(sims)
    np.put_along_axis(sparse, keep, np.take_along_axis(sims, keep, axis=1), axis=1)
    return ratings[:, rated] @ sparse.T


# ---------------------------------------------------------------- the hybrid: text -> BPR factor space


@dataclass
class TextProjection:
    """A ridge map from text vectors to BPR item factors and bias (notebook 03)."""

    weights: np.ndarray  # [text_dim, dim + 1]
    intercept: np.ndarray  # [dim + 1]
    alpha: float

    def __call__(self, text_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(factors [n, dim], bias [n]) predicted from text."""
        out = text_vectors @ self.weights + self.intercept
        return out[:, :-1], out[:, -1]


def _ridge(X, Y, w, alpha):
    """Weighted ridge with an unpenalised intercept, closed form: (weights, intercept)."""
    mx, my = (w[:, None] * X).sum(0) / w.sum(), (w[:, None] * Y).sum(0) / w.sum()
    Xc, Yc = (X - mx) * np.sqrt(w)[:, None], (Y - my) * np.sqrt(w)[:, None]
    W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ Yc)
    return W, my - mx @ W


def fit_text_projection(
    text_vectors, factors, bias, counts, alphas=(0.1, 1.0, 10.0, 100.0), seed: int = 0
) -> TextProjection:
    """Ridge regression text -> [factors, bias] on rated items, weighted by log(1 + ratings) (notebook 03).

    The penalty is chosen on a random 20% of the rated items held out from the fit, then refit on all.
    """
    rated = np.flatnonzero(counts > 0)
    need(len(rated) >= 10, f"need at least ten rated items to learn a text projection, got {len(rated)}")
    check_tuple("alphas", alphas, check_positive)
    check_seed("seed", seed)
    X = np.asarray(text_vectors, dtype=np.float64)[rated]
    Y = np.concatenate([factors, bias[:, None]], axis=1).astype(np.float64)[rated]
    w = np.log1p(counts[rated])
    held = np.random.default_rng(seed).random(len(rated)) < 0.2

    def held_out_error(alpha):
        W, b0 = _ridge(X[~held], Y[~held], w[~held], alpha)
        return float((w[held] * ((X[held] @ W + b0 - Y[held]) ** 2).sum(1)).sum())

    alpha = min(alphas, key=held_out_error)
    W, b0 = _ridge(X, Y, w, alpha)
    return TextProjection(W.astype(np.float32), b0.astype(np.float32), float(alpha))


def blend(id_factors, id_bias, text_factors, text_bias, counts, shrinkage: float):
    """Confidence-weighted item factors: w = n / (n + lambda) on the ID part, 1 - w on the text part."""
    w = counts / (counts + shrinkage) if shrinkage > 0 else (counts > 0).astype(np.float64)
    w = w.astype(np.float32)
    return w[:, None] * id_factors + (1 - w[:, None]) * text_factors, w * id_bias + (1 - w) * text_bias


# ---------------------------------------------------------------- evaluation


def cold_evaluator(split, n_users: int, item_index: np.ndarray, k: int = 10) -> FullRankingEvaluator:
    """Full ranking among the cold items only: columns are ``split.cold_items`` in order (notebook 03)."""
    cold = np.asarray(item_index)
    targets = split.cold_test.assign(item=np.searchsorted(cold, split.cold_test["item"].to_numpy()))
    empty = np.zeros((0, 2), dtype=np.int64)  # nothing to mask: no cold item was seen in training
    return FullRankingEvaluator(
        empty,
        targets[["user", "item"]],
        n_users,
        len(cold),
        ks=(k,),
        protocol=f"{split.protocol}; ranking among the {len(cold)} cold items",
    )


def _masked(scores: np.ndarray, columns: np.ndarray) -> torch.Tensor:
    """Scores over the full catalogue with ``columns`` set to -inf (so warm ranking ignores cold items)."""
    out = torch.as_tensor(scores, dtype=torch.float32).clone()
    out[:, torch.as_tensor(columns)] = float("-inf")
    return out


def run_seed(
    ratings: pd.DataFrame,
    items: pd.DataFrame,
    text_vectors: np.ndarray,
    seed: int,
    config: ColdStartConfig | None = None,
) -> list[dict]:
    """One seed of the study: rows of (seed, setting, model, metric values) (notebook 03)."""
    c = config or ColdStartConfig()
    n_users, n_items = int(ratings["user"].max()) + 1, len(items)
    need(
        len(text_vectors) == n_items,
        f"text_vectors has {len(text_vectors)} rows, the catalogue {n_items} items; encode the whole catalogue",
    )
    split = split_cold_items(ratings, seed=seed, fraction=c.fraction)
    cold = index_of(items["item_id"].to_numpy(), split.cold_items)
    counts = np.bincount(split.train["item"], minlength=n_items).astype(np.float64)
    R = rating_matrix(split.train, n_users, n_items)
    genres = genre_vectors(items)
    bpr = BPR(n_users, n_items, dataclasses.replace(c.bpr, seed=seed)).fit(split.train, split.valid)
    users = torch.arange(n_users)
    with torch.no_grad():  # BPR.scores keeps the autograd graph; we only read the values
        bpr_scores = bpr.scores(users).numpy()
    P, Q = (t.numpy() for t in bpr.factors())
    b = bpr.net.bias.weight.detach().numpy()[:, 0]
    projection = fit_text_projection(text_vectors, Q, b, counts, c.ridge_alphas, seed=seed)
    Qt, bt = projection(text_vectors)
    rng = np.random.default_rng(seed)
    cold_scores = {
        "random": rng.random((n_users, len(cold))),
        "genre": user_profiles(R, genres) @ genres[cold].T,
        "BPR (ID only)": bpr_scores[:, cold],
        "text profile": user_profiles(R, text_vectors) @ text_vectors[cold].T,
        "text kNN": knn_scores(R, text_vectors, cold, c.neighbours),
        "hybrid (text -> BPR)": P @ Qt[cold].T + bt[cold],
    }
    rows = []
    evaluator = cold_evaluator(split, n_users, cold, c.k)
    for name, scores in cold_scores.items():
        res = evaluator.evaluate(torch.as_tensor(scores, dtype=torch.float32))
        rows.append(_row(seed, "cold items", name, res, c.k))
    # warm items: choose the hybrid's lambda on validation, report test; cold items are not candidates
    valid_eval = split_evaluator(split, "valid", n_users, n_items, ks=(c.k,))
    test_eval = split_evaluator(split, "test", n_users, n_items, ks=(c.k,))

    def hybrid(shrinkage):
        Qh, bh = blend(Q, b, Qt, bt, counts, shrinkage)
        return _masked(P @ Qh.T + bh, cold)

    best = max(c.shrinkage, key=lambda lam: valid_eval.evaluate(hybrid(lam))[f"NDCG@{c.k}"])
    warm_scores = {
        "BPR (ID only)": _masked(bpr_scores, cold),
        "hybrid (text -> BPR)": hybrid(best),
        "text profile": _masked(user_profiles(R, text_vectors) @ text_vectors.T, cold),
    }
    for name, scores in warm_scores.items():
        rows.append(
            _row(
                seed,
                "warm items",
                name,
                test_eval.evaluate(scores),
                c.k,
                shrinkage=best if name.startswith("hybrid") else np.nan,
            )
        )
    for row in rows:
        row.update(bpr_epoch=bpr.best_epoch, ridge_alpha=projection.alpha)
    return rows


def _row(seed, setting, model, result, k, **extra) -> dict:
    return {
        "seed": seed,
        "setting": setting,
        "model": model,
        f"NDCG@{k}": result[f"NDCG@{k}"],
        f"HR@{k}": result[f"HR@{k}"],
        f"Recall@{k}": result[f"Recall@{k}"],
        "users": result.n_users,
        "protocol": result.protocol,
        **extra,
    }


def run_cold_start(
    ratings: pd.DataFrame,
    items: pd.DataFrame,
    text_vectors: np.ndarray,
    config: ColdStartConfig | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Every seed of the study, one row a (seed, setting, model) (notebook 03)."""
    c = config or ColdStartConfig()  # its seeds are never empty (checked when it was made)
    rows = []
    for seed in tqdm(c.seeds, desc="cold-start seeds", disable=not progress):
        rows += run_seed(ratings, items, text_vectors, seed, c)
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each metric, per setting and model (notebook 03)."""
    metrics = [m for m in results.columns if "@" in m]
    return results.groupby(["setting", "model"], sort=False)[metrics].agg(["mean", "std"])
