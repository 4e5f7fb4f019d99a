"""Evaluation splits (docs/protocols.md) and chronological user histories (notebook 01).

* Track A -- :func:`split_random`: per user, a seeded random 80/10/10 train/valid/test split.
* Track B -- :func:`split_leave_one_out`: per user, chronological; last = test, second last = valid.
* Cold start -- :func:`split_cold_items`: 20% of items held out entirely; their ratings are the cold test.

All splits are deterministic given the seed and work on any ratings frame with ``user_id``,
``item_id`` and ``timestamp`` columns (the ``user``/``item`` index columns ride along).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._checks import check_columns, check_range, check_seed, need

CHRONOLOGICAL = ["user_id", "timestamp", "item_id"]  # ties broken by item id, so order is reproducible


@dataclass
class Split:
    """Train / validation / test parts of one ratings frame, plus the protocol that made them."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    protocol: str

    def summary(self) -> pd.DataFrame:
        """One row a part: ratings, users and items."""
        parts = {"train": self.train, "valid": self.valid, "test": self.test}
        return pd.DataFrame(
            {
                name: {"ratings": len(p), "users": p["user_id"].nunique(), "items": p["item_id"].nunique()}
                for name, p in parts.items()
            }
        ).T


@dataclass
class ColdStartSplit(Split):
    """A Track-A split of the warm items plus every rating of the held-out (cold) items."""

    cold_test: pd.DataFrame = None
    cold_items: np.ndarray = None
    warm_items: np.ndarray = None

    def summary(self) -> pd.DataFrame:
        out = super().summary()
        out.loc["cold_test"] = [
            len(self.cold_test),
            self.cold_test["user_id"].nunique(),
            self.cold_test["item_id"].nunique(),
        ]
        return out


def _check(ratings: pd.DataFrame, seed: int = 0, valid: float = 0.0, test: float = 0.0) -> None:
    """The ratings have the columns a split reads and rows; the seed is a seed; the fractions leave a train part."""
    check_columns("ratings frame", ratings, ("user_id", "item_id", "timestamp"), "pass MovieLens.ratings or .indexed()")
    need(not ratings.empty, "ratings frame is empty: there is nothing to split")
    check_seed("seed", seed)
    check_range("valid fraction", valid, 0, 1, closed="left")
    check_range("test fraction", test, 0, 1, closed="left")
    need(valid + test < 1, f"valid and test fractions must sum below 1 (a train part must remain), got {valid}, {test}")


def split_random(ratings: pd.DataFrame, seed: int = 0, valid: float = 0.1, test: float = 0.1) -> Split:
    """Track A: per user, shuffle with ``seed`` and cut into train/valid/test (default 80/10/10)."""
    _check(ratings, seed, valid, test)
    rng = np.random.default_rng(seed)
    frame = ratings.sort_values(CHRONOLOGICAL, kind="stable").reset_index(drop=True)
    # a random key, then rank within user: a per-user shuffle done as one vectorised sort
    frame["_key"] = rng.random(len(frame))
    frame = frame.sort_values(["user_id", "_key"], kind="stable")
    rank = frame.groupby("user_id").cumcount().to_numpy()
    size = frame.groupby("user_id")["item_id"].transform("size").to_numpy()
    n_test = np.round(size * test).astype(int)
    n_valid = np.round(size * valid).astype(int)
    part = np.where(rank < size - n_test - n_valid, 0, np.where(rank < size - n_test, 1, 2))
    frame = frame.drop(columns="_key")
    pieces = [frame[part == k].sort_values(CHRONOLOGICAL, kind="stable").reset_index(drop=True) for k in range(3)]
    return Split(
        *pieces, protocol=f"Track A: per-user random {1 - valid - test:.0%}/{valid:.0%}/{test:.0%} split, seed {seed}"
    )


def split_leave_one_out(ratings: pd.DataFrame) -> Split:
    """Track B: per user, chronological; the last rating is test, the second last validation."""
    _check(ratings)
    frame = ratings.sort_values(CHRONOLOGICAL, kind="stable").reset_index(drop=True)
    from_end = frame.groupby("user_id").cumcount(ascending=False).to_numpy()
    need(
        (frame.groupby("user_id").size() >= 3).all(),
        "leave-one-out needs at least 3 ratings per user; filter short histories first",
    )
    parts = [frame[from_end >= 2], frame[from_end == 1], frame[from_end == 0]]
    return Split(*[p.reset_index(drop=True) for p in parts], protocol="Track B: chronological leave-one-out")


def split_cold_items(
    ratings: pd.DataFrame, seed: int = 0, fraction: float = 0.2, valid: float = 0.1, test: float = 0.1
) -> ColdStartSplit:
    """Cold start: hold out ``fraction`` of items entirely, then Track A on the warm ratings."""
    _check(ratings, seed, valid, test)
    check_range("fraction of cold items", fraction, 0, 1, closed="neither")
    rng = np.random.default_rng(seed)
    items = np.sort(ratings["item_id"].unique())
    cold = np.sort(rng.choice(items, size=int(round(fraction * len(items))), replace=False))
    is_cold = ratings["item_id"].isin(cold).to_numpy()
    warm = split_random(ratings[~is_cold], seed=seed, valid=valid, test=test)
    cold_test = ratings[is_cold].sort_values(CHRONOLOGICAL, kind="stable").reset_index(drop=True)
    return ColdStartSplit(
        warm.train,
        warm.valid,
        warm.test,
        protocol=f"Cold start: {fraction:.0%} of items held out, seed {seed}",
        cold_test=cold_test,
        cold_items=cold,
        warm_items=np.setdiff1d(items, cold),
    )


def user_histories(ratings: pd.DataFrame, column: str = "item_id") -> pd.Series:
    """Chronological histories: a Series mapping each user to an array of ``column`` values."""
    _check(ratings)
    frame = ratings.sort_values(CHRONOLOGICAL, kind="stable")
    # a dict comprehension, not .agg(to_numpy): pandas < 2.1 rejects an aggregate that returns an array
    groups = frame.groupby("user_id")[column]
    histories = {user: values.to_numpy() for user, values in groups}
    return pd.Series(histories, name=column, dtype=object).rename_axis("user_id")
