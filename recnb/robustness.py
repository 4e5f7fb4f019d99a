"""Abnormal users injected into training data, to measure how recommenders cope (notebook 10).

* :func:`inject_random_raters` -- fake users who rate random items with random stars (noise).
* :func:`inject_shilling_attack` -- fake users who give one target item 5 stars and fill their profiles
  with popular items rated around each item's mean, so they look like ordinary users ("average attack").

Both add ``fraction`` x (number of real users) fake users with new ids after the largest real id, with
profile sizes drawn from the real users' sizes, and timestamps inside the real time span. They return a
new ratings frame (the input is not modified) with a boolean ``injected`` column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._checks import check_columns, check_int, check_range, check_seed, need


def _plan(ratings: pd.DataFrame, fraction: float, seed: int):
    """The random generator, the fake users' ids and their profile sizes, after checking the arguments."""
    columns = ("user_id", "item_id", "rating", "timestamp")
    check_columns("ratings frame", ratings, columns, "pass MovieLens.ratings or a split's train part")
    check_range("fraction of injected users", fraction, 0, 1, closed="right")
    rng = np.random.default_rng(check_seed("seed", seed))
    n_real = ratings["user_id"].nunique()
    n_fake = max(1, int(round(fraction * n_real)))
    sizes = rng.choice(ratings.groupby("user_id").size().to_numpy(), size=n_fake)
    first_id = int(ratings["user_id"].max()) + 1
    return rng, np.arange(first_id, first_id + n_fake), sizes


def _frame(users, items, stars, rng, ratings) -> pd.DataFrame:
    lo, hi = int(ratings["timestamp"].min()), int(ratings["timestamp"].max())
    fake = pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "rating": np.clip(stars, 1, 5),
            "timestamp": rng.integers(lo, hi + 1, size=len(users)),
        }
    )
    fake = fake.astype({c: ratings[c].dtype for c in fake.columns})
    out = pd.concat([ratings.assign(injected=False), fake.assign(injected=True)], ignore_index=True)
    return out


def inject_random_raters(ratings: pd.DataFrame, fraction: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Add fake users rating uniformly random items with uniformly random stars (notebook 10)."""
    rng, fake_ids, sizes = _plan(ratings, fraction, seed)
    catalogue = ratings["item_id"].unique()
    users, items = [], []
    for uid, size in zip(fake_ids, sizes):
        users.append(np.full(size, uid))
        items.append(rng.choice(catalogue, size=min(size, len(catalogue)), replace=False))
    users, items = np.concatenate(users), np.concatenate(items)
    return _frame(users, items, rng.integers(1, 6, size=len(items)), rng, ratings)


def inject_shilling_attack(
    ratings: pd.DataFrame, target_item: int, fraction: float = 0.05, seed: int = 0, filler_pool: int = 200
) -> pd.DataFrame:
    """Add fake users giving ``target_item`` 5 stars, padded with popular items at their mean rating (notebook 10)."""
    need(
        target_item in set(ratings["item_id"].unique()),
        f"target_item {target_item} is not in the ratings; pick an item id from the catalogue",
    )
    check_int("filler_pool", filler_pool, minimum=1)
    rng, fake_ids, sizes = _plan(ratings, fraction, seed)
    stats = ratings.groupby("item_id")["rating"].agg(["size", "mean"]).drop(index=target_item)
    pool = stats.sort_values("size", ascending=False).head(filler_pool)
    users, items, stars = [], [], []
    for uid, size in zip(fake_ids, sizes):
        filler = rng.choice(pool.index.to_numpy(), size=min(size - 1, len(pool)), replace=False)
        users.append(np.full(len(filler) + 1, uid))
        items.append(np.concatenate([[target_item], filler]))
        noisy_mean = pool.loc[filler, "mean"].to_numpy() + rng.normal(0, 0.5, len(filler))
        stars.append(np.concatenate([[5], np.rint(noisy_mean)]).astype(int))
    return _frame(np.concatenate(users), np.concatenate(items), np.concatenate(stars), rng, ratings)
