"""Tests for recnb.coldstart on hand cases and a small synthetic catalogue built here."""

import numpy as np
import pandas as pd
import pytest
import torch

from recnb import coldstart as C
from recnb.baselines import BPRConfig


def test_genre_vectors_are_unit_multi_hot():
    items = pd.DataFrame({"genres": [["Action", "Comedy"], ["unknown"]]})
    g = C.genre_vectors(items)
    assert g.shape == (2, 19) and np.allclose(np.linalg.norm(g, axis=1), 1)
    assert np.isclose(g[0] @ g[1], 0) and np.count_nonzero(g[0]) == 2


def test_user_profiles_rating_weighted_and_empty_users():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    ratings = np.array([[3.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    prof = C.user_profiles(ratings, vectors)
    assert np.allclose(prof[0], np.array([3.0, 1.0]) / np.sqrt(10))
    assert np.allclose(prof[1], 0)  # no ratings: a zero profile, not NaN
    with pytest.raises(ValueError, match="items"):
        C.user_profiles(ratings, vectors[:1])


def test_knn_scores_keep_only_nearest_rated_items():
    vectors = np.eye(3, dtype=np.float32)
    vectors[2] = [0.8, 0.6, 0.0]  # candidate 2 is close to item 0, less to item 1
    ratings = np.array([[5.0, 2.0, 0.0]], dtype=np.float32)
    assert np.allclose(C.knn_scores(ratings, vectors, np.array([2]), neighbours=1), [[5 * 0.8]])
    assert np.allclose(C.knn_scores(ratings, vectors, np.array([2]), neighbours=2), [[5 * 0.8 + 2 * 0.6]])


def test_text_projection_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8))
    A, c = rng.normal(size=(8, 4)), rng.normal(size=4)
    Y = X @ A + c
    proj = C.fit_text_projection(X, Y[:, :3], Y[:, 3], np.full(200, 5.0), alphas=(1e-6, 10.0))
    factors, bias = proj(X)
    assert proj.alpha == 1e-6
    assert np.abs(factors - Y[:, :3]).max() < 1e-4 and np.abs(bias - Y[:, 3]).max() < 1e-4
    with pytest.raises(ValueError, match="rated items"):
        C.fit_text_projection(X, Y[:, :3], Y[:, 3], np.zeros(200))


def test_blend_weights_id_by_confidence():
    idf, tf = np.ones((3, 2), np.float32), np.zeros((3, 2), np.float32)
    counts = np.array([0.0, 10.0, 1000.0])
    f, b = C.blend(idf, np.ones(3, np.float32), tf, np.zeros(3, np.float32), counts, shrinkage=10.0)
    assert np.allclose(f[:, 0], [0.0, 0.5, 1000 / 1010]) and np.allclose(b, f[:, 0])
    f0, _ = C.blend(idf, np.ones(3, np.float32), tf, np.zeros(3, np.float32), counts, shrinkage=0.0)
    assert np.allclose(f0[:, 0], [0.0, 1.0, 1.0])  # lambda 0: plain ID factors wherever there are ratings


def _synthetic(n_users=80, n_items=60, seed=0):
    """Two tastes: users of taste t rate items of cluster t; text vectors reveal the cluster."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(n_items) % 2
    rows = []
    for u in range(n_users):
        liked = np.flatnonzero(cluster == u % 2)
        for i in rng.choice(liked, size=12, replace=False):
            rows.append((u + 1, i + 1, int(rng.integers(3, 6)), int(rng.integers(0, 10**6))))
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    ratings["user"], ratings["item"] = ratings["user_id"] - 1, ratings["item_id"] - 1
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1),
            "genres": [["Action"] if k else ["Drama"] for k in rng.integers(0, 2, n_items)],
        }
    )
    text = np.stack([np.eye(2)[cluster], rng.normal(scale=0.3, size=(n_items, 2))], axis=1).reshape(n_items, 4)
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    return ratings, items, text


def test_cold_evaluator_ranks_only_cold_items():
    ratings, items, text = _synthetic()
    from recnb.splits import split_cold_items

    split = split_cold_items(ratings, seed=0)
    cold = np.sort(split.cold_items - 1)
    ev = C.cold_evaluator(split, 80, cold, k=10)
    oracle = torch.zeros(80, len(cold))
    oracle[
        torch.as_tensor(split.cold_test["user"].to_numpy().copy()),
        torch.as_tensor(np.searchsorted(cold, split.cold_test["item"].to_numpy())),
    ] = 1.0
    assert ev.evaluate(oracle)["NDCG@10"] == pytest.approx(1.0)
    assert "ranking among the 12 cold items" in ev.protocol


def test_study_on_synthetic_data_text_beats_random():
    ratings, items, text = _synthetic()
    cfg = C.ColdStartConfig(seeds=(0, 1), bpr=BPRConfig(max_epochs=3, eval_every=1, progress=False), k=5)
    results = C.run_cold_start(ratings, items, text, cfg, progress=False)
    assert len(results) == 2 * 9 and set(results["setting"]) == {"cold items", "warm items"}
    table = C.summarise(results)
    cold = table.loc["cold items", ("NDCG@5", "mean")]
    assert cold["text profile"] > cold["random"] + 0.2  # the text reveals the taste cluster
    assert cold["hybrid (text -> BPR)"] > cold["random"]
    with pytest.raises(ValueError, match="rows"):
        C.run_seed(ratings, items, text[:10], 0, cfg)
