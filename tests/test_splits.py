"""recnb.splits: deterministic by seed, no leakage, the protocols docs/protocols.md describes."""

import numpy as np
import pandas as pd
import pytest
from conftest import random_ratings

from recnb import splits


@pytest.fixture
def ratings():
    return random_ratings(n_users=30, n_items=100, sizes=(20, 40), times=(0, 10_000), seed=1)


def pairs(frame):
    return set(zip(frame["user_id"], frame["item_id"]))


def test_track_a_partitions_each_user_80_10_10(ratings):
    s = splits.split_random(ratings, seed=3)
    assert (
        not pairs(s.train) & pairs(s.test)
        and not pairs(s.train) & pairs(s.valid)
        and not pairs(s.valid) & pairs(s.test)
    )
    assert pairs(s.train) | pairs(s.valid) | pairs(s.test) == pairs(ratings)
    sizes = ratings.groupby("user_id").size()
    assert (s.test.groupby("user_id").size() == np.round(sizes * 0.1)).all()
    assert "Track A" in s.protocol


def test_track_a_is_deterministic_by_seed(ratings):
    a, b, c = (splits.split_random(ratings, seed=s) for s in (5, 5, 6))
    pd.testing.assert_frame_equal(a.test, b.test)
    assert pairs(a.test) != pairs(c.test)


def test_track_b_holds_out_the_last_two_ratings(ratings):
    s = splits.split_leave_one_out(ratings)
    assert (s.test.groupby("user_id").size() == 1).all() and (s.valid.groupby("user_id").size() == 1).all()
    last = ratings.sort_values(splits.CHRONOLOGICAL).groupby("user_id").tail(1)
    assert pairs(last) == pairs(s.test)
    merged = (
        s.train.groupby("user_id")["timestamp"].max().to_frame("train").join(s.valid.set_index("user_id")["timestamp"])
    )
    assert (merged["train"] <= merged["timestamp"]).all()


def test_cold_items_never_appear_in_training(ratings):
    s = splits.split_cold_items(ratings, seed=2)
    cold = set(s.cold_items)
    assert len(cold) == round(0.2 * ratings["item_id"].nunique())
    for part in (s.train, s.valid, s.test):
        assert not cold & set(part["item_id"])
    assert set(s.cold_test["item_id"]) <= cold
    assert len(s.train) + len(s.valid) + len(s.test) + len(s.cold_test) == len(ratings)
    assert "cold_test" in s.summary().index


def test_histories_are_chronological(ratings):
    h = splits.user_histories(ratings)
    user = ratings[ratings["user_id"] == 4].sort_values(["timestamp", "item_id"])
    assert list(h.loc[4]) == list(user["item_id"])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: splits.split_random(r.iloc[:0]), "empty"),
        (lambda r: splits.split_random(r.drop(columns="timestamp")), "timestamp"),
        (lambda r: splits.split_random(r, valid=0.6, test=0.5), "sum below 1"),
        (lambda r: splits.split_cold_items(r, fraction=1.5), r"\(0, 1\)"),
        (lambda r: splits.split_leave_one_out(r.groupby("user_id").head(2)), "at least 3"),
    ],
)
def test_bad_inputs_name_the_fix(ratings, call, message):
    with pytest.raises(ValueError, match=message):
        call(ratings)
