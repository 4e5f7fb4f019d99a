"""The simulated user's two models and the fidelity checks of recnb.calibration (notebook 04), on small synthetic
data."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import synthetic_ratings

from recnb.calibration import (
    Calibration,
    calibrate,
    calibration_rows,
    fidelity_report,
    fit_rating_model,
    greedy_first_picks,
    histogram_distance,
    popularity_distance,
    ranking_fidelity,
    rare_pick_share,
    rating_distance,
    simulated_choices,
)
from recnb.metrics import torch_threads
from recnb.splits import split_random

N_USERS, N_ITEMS = 80, 50


def consumption_data(n_users=N_USERS, n_items=N_ITEMS, per_user=15, seed=0):
    """Who rated what follows a hidden popularity + 2-factor taste model (so choice is learnable), indexed.

    ``synthetic_ratings`` draws each user's films uniformly, which leaves nothing for a choice
    model to learn; here a film's chance of being picked is a softmax of ``popularity + taste``.
    """
    ratings, items = synthetic_ratings(n_users=n_users, n_items=n_items, per_user=1, seed=seed)
    rng = np.random.default_rng(seed)
    P, Q = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    popularity = np.linspace(2.0, -2.0, n_items)
    rows = []
    for u in range(n_users):
        logits = popularity + 1.5 * Q @ P[u]
        p = np.exp(logits - logits.max())
        for i in rng.choice(n_items, size=per_user, replace=False, p=p / p.sum()):
            r = int(np.clip(np.round(3.5 + P[u] @ Q[i] + rng.normal(scale=0.3)), 1, 5))
            rows.append((u + 1, i + 1, r, 1000 * u + len(rows)))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    frame["user"], frame["item"] = frame["user_id"] - 1, frame["item_id"] - 1
    return frame, items


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These fits are thousands of tiny ops: a second torch thread only adds contention (10x slower on a busy box)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def fitted():
    frame, items = consumption_data()
    split = split_random(frame, seed=0)
    return split, calibrate(split.train, items, dim=4, seed=0, rating_l2=1.0, choice_l2=0.1)


def hand_calibration(choice_item_bias, popularity, train_items):
    """A calibration whose choice logit is the film's bias alone (no factors), so every pick is known."""
    n_users, n_items = len(train_items), len(choice_item_bias)
    zeros = torch.zeros
    return Calibration(
        mu=3.5,
        user_factors=zeros(n_users, 1),
        user_bias=zeros(n_users),
        item_factors=zeros(n_items, 1),
        item_bias=zeros(n_items),
        choice_user_factors=zeros(n_users, 1),
        choice_user_bias=zeros(n_users),
        choice_item_factors=zeros(n_items, 1),
        choice_item_bias=torch.as_tensor(choice_item_bias, dtype=torch.float32),
        item_genres=torch.ones(n_items, 1),
        item_popularity=torch.as_tensor(popularity, dtype=torch.float32),
        train_items=[np.asarray(t, dtype=np.int64) for t in train_items],
        user_ids=np.arange(1, n_users + 1),
        train_rmse=0.0,
    )


def test_choice_model_ranks_held_out_films_above_random_and_the_rating_model_does_not_choose(fitted):
    split, cal = fitted
    results = ranking_fidelity(cal, split, N_USERS, N_ITEMS, others={"copy": cal.choice_logits()})
    ndcg = {name: r["NDCG@10"] for name, r in results.items()}
    assert set(ndcg) == {"choice model", "rating model", "copy", "popularity", "random"}
    assert ndcg["copy"] == ndcg["choice model"]  # an extra ranker is scored the same way
    assert ndcg["choice model"] > 2 * ndcg["random"], ndcg
    assert ndcg["choice model"] > ndcg["rating model"], ndcg


def test_ranking_fidelity_rejects_a_wrong_shape(fitted):
    split, cal = fitted
    with pytest.raises(ValueError, match="shape"):
        ranking_fidelity(cal, split, N_USERS, N_ITEMS, others={"bad": torch.zeros(3, N_ITEMS)})


def test_calibration_rows_follow_user_ids_not_row_order(fitted):
    split, cal = fitted
    assert np.array_equal(calibration_rows(cal, split.train), cal.user_ids - 1)
    shuffled = split.train.assign(user=split.train["user"] + 100)  # another index, same ids
    assert np.array_equal(calibration_rows(cal, shuffled), cal.user_ids - 1 + 100)
    with pytest.raises(KeyError, match="not in the frame"):
        calibration_rows(cal, split.train[split.train["user_id"] != cal.user_ids[0]])


def test_one_lucky_rating_is_shrunk_and_a_never_rated_film_is_the_prior():
    # film 0: rated by everyone, 4 or 5; film 1: one rating of 5 (the lucky one); film 2: never rated
    users = np.r_[np.arange(30), 0]
    items = np.r_[np.zeros(30, dtype=int), 1]
    ratings = np.r_[np.where(np.arange(30) % 2 == 0, 5.0, 4.0), 5.0]
    users, items = np.r_[users, np.arange(30)], np.r_[items, np.full(30, 3)]
    ratings = np.r_[ratings, np.full(30, 2.0)]  # film 3: widely disliked, so the mean is not 5
    mu, P, bu, Q, bi, _ = fit_rating_model(users, items, ratings, 30, 4, dim=2, l2=10.0, steps=300, seed=0)
    assert bi[0] > 0.5 and bi[3] < -0.5, bi  # plenty of data moves a film's bias
    assert abs(float(bi[1])) < 0.25 * (5.0 - mu), (bi, mu)  # one 5-star rating barely does
    assert float(bi[2]) == 0.0 and torch.equal(Q[2], torch.zeros(2))  # no rating: exactly the prior


def test_greedy_first_picks_and_rare_pick_share_count_correctly():
    # films ranked 0 > 1 > 2 > 3 by everyone; popularity 1, 3, 6, 100 training ratings
    cal = hand_calibration([3.0, 2.0, 1.0, 0.0], [1, 3, 6, 100], [[], [0], [0, 1], [0, 1, 2]])
    assert greedy_first_picks(cal).tolist() == [0, 1, 2, 3]  # the best film not seen in training
    assert rare_pick_share(cal) == pytest.approx(2 / 4)  # films with 1 and 3 ratings are <= 5
    assert rare_pick_share(cal, max_ratings=6) == pytest.approx(3 / 4)
    assert rare_pick_share(cal, max_ratings=0) == 0.0
    reversed_taste = torch.tensor([0.0, 1.0, 2.0, 3.0]).expand(4, -1)  # another model's scores
    assert greedy_first_picks(cal, reversed_taste).tolist() == [3, 3, 3, 3]
    assert rare_pick_share(cal, scores=reversed_taste) == 0.0
    with pytest.raises(ValueError, match="shape"):
        greedy_first_picks(cal, torch.zeros(2, 4))


def test_histogram_and_rating_distances():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    bins = np.arange(0.5, 9.0)
    assert histogram_distance(a, a, bins) == 0.0
    assert histogram_distance(a, a + 4, bins) == 1.0  # disjoint
    assert histogram_distance(a, np.array([1.0, 2.0, 7.0, 8.0]), bins) == pytest.approx(0.5)
    assert rating_distance([4.6, 4.4, 1.2], [5, 4, 1]) == 0.0  # rounded to stars first
    assert rating_distance([5, 5], [1, 1]) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        histogram_distance(a, np.array([100.0]), bins)


def test_popularity_distance_separates_popular_from_rare_films(fitted):
    _, cal = fitted
    order = np.argsort(cal.item_popularity.numpy())
    rare, popular = order[:5], order[-5:]
    assert popularity_distance(cal, popular, popular) == 0.0
    assert popularity_distance(cal, popular, rare) > 0.9


def test_simulated_choices_are_clicks_of_unseen_films_and_reproducible(fitted):
    _, cal = fitted
    items, ratings = simulated_choices(cal, n_users=300, steps=3, slate_size=4, seed=1)
    again, _ = simulated_choices(cal, n_users=300, steps=3, slate_size=4, seed=1)
    assert np.array_equal(items, again)
    assert 0 < len(items) <= 300 * 3 and len(items) == len(ratings)
    assert items.min() >= 0 and items.max() < N_ITEMS
    assert ratings.min() >= 1.0 and ratings.max() <= 5.0


def test_fidelity_report_simulated_choices_look_like_held_out_films(fitted):
    split, cal = fitted
    report = fidelity_report(cal, split, N_USERS, N_ITEMS, n_sim_users=400, steps=3, slate_size=5, seed=0)
    ndcg = report.ndcg()
    assert ndcg["choice model"] > ndcg["random"]
    assert 0.0 <= report.rare_share <= 1.0 and len(report.first_pick_counts) == N_USERS
    assert np.array_equal(report.real_items, split.test["item"].to_numpy())
    # choices follow the hidden popularity: closer to the real held-out films than uniformly random films
    assert report.popularity_distance < report.popularity_references["uniformly random films"]
    assert report.rating_distance < report.rating_references["the training mean, every time"]
    assert report.table().shape == (2 + len(report.popularity_references) + len(report.rating_references), 1)
