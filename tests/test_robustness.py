"""recnb.robustness: injected users are well-formed, marked, sized and reproducible."""

import pandas as pd
import pytest
from conftest import random_ratings

from recnb.robustness import inject_random_raters, inject_shilling_attack


@pytest.fixture
def ratings():
    return random_ratings(n_users=40, n_items=80, sizes=(20, 30), times=(1000, 2000), seed=0)


def test_random_raters(ratings):
    out = inject_random_raters(ratings, fraction=0.1, seed=1)
    fake = out[out["injected"]]
    assert fake["user_id"].nunique() == 4 and fake["user_id"].min() > ratings["user_id"].max()
    assert fake["rating"].between(1, 5).all() and fake["timestamp"].between(1000, 2000).all()
    assert not fake.duplicated(["user_id", "item_id"]).any()
    pd.testing.assert_frame_equal(out[~out["injected"]].drop(columns="injected"), ratings)
    pd.testing.assert_frame_equal(out, inject_random_raters(ratings, fraction=0.1, seed=1))


def test_shilling_attack_promotes_target(ratings):
    out = inject_shilling_attack(ratings, target_item=77, fraction=0.1, seed=2)
    fake = out[out["injected"]]
    per_user = fake.groupby("user_id")
    assert per_user.ngroups == 4
    assert (fake[fake["item_id"] == 77]["rating"] == 5).all() and (
        per_user["item_id"].apply(lambda s: 77 in set(s))
    ).all()
    assert fake["rating"].between(1, 5).all()


def test_bad_inputs(ratings):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        inject_random_raters(ratings, fraction=0)
    with pytest.raises(ValueError, match="not in the ratings"):
        inject_shilling_attack(ratings, target_item=999)
    with pytest.raises(ValueError, match="lacks column"):
        inject_random_raters(ratings.drop(columns="rating"))
