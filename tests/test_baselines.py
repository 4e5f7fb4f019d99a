"""Baselines on a small synthetic catalogue with known structure (two taste groups)."""

import numpy as np
import pandas as pd
import pytest
import torch

from recnb import baselines as B
from recnb.metrics import FullRankingEvaluator

N_USERS, N_ITEMS = 60, 40


@pytest.fixture(scope="module")
def data():
    """Users 0..29 like items 0..19, users 30..59 like items 20..39; each rates 12 of their block."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(N_USERS):
        block = np.arange(20) if u < 30 else np.arange(20, 40)
        for i in rng.choice(block, 12, replace=False):
            rows.append((u, int(i)))
    frame = pd.DataFrame(rows, columns=["user", "item"])
    part = np.tile(np.array([0] * 8 + [1] * 2 + [2] * 2), N_USERS)
    return frame[part == 0], frame[part == 1], frame[part == 2]


def make_evaluator(data):
    train, valid, test = data
    return FullRankingEvaluator(train, test, N_USERS, N_ITEMS, exclude=[valid], ks=(5,))


def score(model, data):
    return make_evaluator(data).evaluate(model)["NDCG@5"]


FAST = dict(max_epochs=40, patience=5, progress=False, batch_size=64)


@pytest.mark.parametrize(
    "make",
    [
        lambda: B.PopularityRecommender(N_USERS, N_ITEMS),
        lambda: B.ItemKNN(N_USERS, N_ITEMS, candidates=(5, 10)),
        lambda: B.BPR(N_USERS, N_ITEMS, B.BPRConfig(dim=8, lr=0.05, **FAST)),
        lambda: B.NeuMF(N_USERS, N_ITEMS, B.NeuMFConfig(dim=8, hidden=(16, 8), lr=0.01, **FAST)),
    ],
)
def test_models_learn_the_taste_groups(data, make):
    train, valid, _ = data
    model = make().fit(train, valid)
    scores = model.scores(torch.arange(N_USERS))
    assert scores.shape == (N_USERS, N_ITEMS) and torch.isfinite(scores).all()
    random = score(B.RandomRecommender(N_USERS, N_ITEMS, seed=0).fit(), data)
    if isinstance(model, B.PopularityRecommender):
        assert score(model, data) >= 0  # popularity cannot see taste groups; it just has to run
    else:
        # the ceiling is ~0.4 (targets are 2 of the 10 unmasked items in the block); random ~0.12
        assert score(model, data) > random + 0.15, (type(model).__name__, score(model, data), random)
        top = model.recommend(0, k=5, exclude=train[train.user == 0].item.to_numpy())
        assert (top < 20).all()  # user 0's group likes items 0..19


def test_early_stopping_keeps_best_epoch(data):
    train, valid, _ = data
    model = B.BPR(N_USERS, N_ITEMS, B.BPRConfig(dim=8, lr=0.05, **FAST)).fit(train, valid)
    hist = model.history_frame()
    assert {"epoch", "loss", "valid_NDCG@10", "seconds"} <= set(hist.columns)
    best = hist["valid_NDCG@10"].idxmax()
    assert model.best_epoch == hist.loc[best, "epoch"]
    assert len(hist) <= FAST["max_epochs"]
    if len(hist) < FAST["max_epochs"]:  # stopped early: exactly `patience` evaluations without a new best
        assert len(hist) - model.best_epoch == FAST["patience"]
    # the kept weights are the best epoch's: re-evaluating on valid reproduces the best value
    ev = FullRankingEvaluator(train, valid, N_USERS, N_ITEMS, ks=(10,))
    assert ev.evaluate(model)["NDCG@10"] == pytest.approx(hist["valid_NDCG@10"].max(), abs=1e-6)
    assert hist["loss"].iloc[-1] < hist["loss"].iloc[0]
    assert model.fit_seconds > 0 and model.fit_cpu_seconds > 0


def test_training_is_seeded(data):
    train, valid, _ = data
    cfg = B.BPRConfig(dim=8, lr=0.05, **{**FAST, "max_epochs": 3})
    a = B.BPR(N_USERS, N_ITEMS, cfg).fit(train, valid).scores(torch.arange(5))
    b = B.BPR(N_USERS, N_ITEMS, cfg).fit(train, valid).scores(torch.arange(5))
    assert torch.equal(a, b)


def test_itemknn_tunes_neighbours_on_validation(data):
    train, valid, _ = data
    model = B.ItemKNN(N_USERS, N_ITEMS, candidates=(2, 5, 30)).fit(train, valid)
    assert [h["neighbours"] for h in model.history] == [2, 5, 30]
    assert model.neighbours == max(model.history, key=lambda h: h["valid_NDCG@10"])["neighbours"]


def test_negatives_avoid_rated_items(data):
    train, _, _ = data
    model = B.BPR(N_USERS, N_ITEMS, B.BPRConfig(dim=4, progress=False, max_epochs=1)).fit(train)
    users = torch.tensor(train["user"].to_numpy())
    neg = model._negatives(users, torch.Generator().manual_seed(0))
    # three uniform draws leave P(still rated) = (8/40)^3 < 1%: nearly all negatives are unrated
    assert model._seen[users, neg].float().mean() < 0.02


def test_bad_inputs(data):
    train, valid, _ = data
    with pytest.raises(RuntimeError, match="fit"):
        B.BPR(N_USERS, N_ITEMS).scores(torch.arange(3))
    model = B.PopularityRecommender(N_USERS, N_ITEMS).fit(train)
    with pytest.raises(IndexError, match="user ids"):
        model.scores(torch.tensor([N_USERS]))
    with pytest.raises(IndexError, match="outside the catalogue"):
        B.PopularityRecommender(N_USERS, 10).fit(train)
    with pytest.raises(ValueError, match="empty"):
        B.PopularityRecommender(N_USERS, N_ITEMS).fit(train.iloc[:0])
    with pytest.raises(ValueError, match="positive"):
        B.BPR(N_USERS, N_ITEMS, B.BPRConfig(lr=0))
    with pytest.raises(TypeError, match="BPRConfig"):
        B.BPR(N_USERS, N_ITEMS, B.NeuMFConfig())
    with pytest.raises(ValueError, match="k must be positive"):
        model.recommend(0, k=0)
