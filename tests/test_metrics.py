"""The full-ranking evaluator against hand-worked cases and a brute-force per-user reference."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from recnb import metrics
from recnb.metrics import FullRankingEvaluator, gini, ndcg_at_k


def frame(pairs):
    return pd.DataFrame(pairs, columns=["user", "item"])


# ---------------------------------------------------------------- hand-worked cases


def test_ndcg_hand_cases():
    assert ndcg_at_k([1, 0, 0], n_relevant=1, k=3) == pytest.approx(1.0)
    assert ndcg_at_k([0, 1, 0], n_relevant=1, k=3) == pytest.approx(1 / math.log2(3))
    # two targets, hits at ranks 1 and 3: (1 + 1/2) / (1 + 1/log2 3)
    assert ndcg_at_k([1, 0, 1], n_relevant=2, k=3) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k([0, 0, 1], n_relevant=1, k=2) == 0.0


def test_gini_hand_cases():
    assert gini([3, 3, 3]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)  # (n - 1) / n for one item with everything
    assert gini([0, 0]) == 0.0


def test_evaluator_hand_case():
    # 2 users, 5 items. User 0 trained on item 0; targets 1 and 3. User 1 trained on 4; target 2.
    train = frame([(0, 0), (1, 4)])
    test = frame([(0, 1), (0, 3), (1, 2)])
    scores = torch.tensor(
        [
            [9.0, 5, 1, 4, 3],  # ranking after masking item 0: 1, 3, 4, 2
            [1.0, 2, 3, 4, 9],
        ]
    )  # masking item 4: 3, 2, 1, 0
    ev = FullRankingEvaluator(train, test, n_users=2, n_items=5, ks=(1, 2))
    res = ev.evaluate(scores)
    assert res.n_users == 2 and res.n_skipped == 0
    assert res["HR@1"] == pytest.approx(0.5)
    assert res["HR@2"] == pytest.approx(1.0)
    assert res["Precision@2"] == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert res["Recall@2"] == pytest.approx((1.0 + 1.0) / 2)
    assert res["NDCG@2"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
    assert res["MRR"] == pytest.approx((1.0 + 0.5) / 2)
    assert res["Coverage@1"] == pytest.approx(2 / 5)  # items 1 and 3
    assert "full ranking" in res.protocol and "full ranking" in str(res)


def test_masked_items_are_never_recommended_nor_counted():
    train = frame([(0, 0), (0, 1)])
    valid = frame([(0, 2)])
    test = frame([(0, 3), (0, 1)])  # item 1 is also in train: it is no target
    scores = torch.tensor([[10.0, 9, 8, 1, 0]])
    ev = FullRankingEvaluator(train, test, 1, 5, exclude=[valid], ks=(1, 2))
    res = ev.evaluate(scores)
    assert res["HR@1"] == 1.0 and res["Recall@1"] == 1.0  # only target left: item 3, ranked first


def test_users_without_targets_are_skipped():
    train = frame([(0, 0), (1, 0), (2, 1)])
    test = frame([(0, 1), (2, 1)])  # user 2's only target is a training item
    res = FullRankingEvaluator(train, test, 3, 3, ks=(1,)).evaluate(torch.ones(3, 3))
    assert res.n_users == 1 and res.n_skipped == 2
    assert list(res.users) == [0]


def test_ties_are_broken_by_item_index():
    test = frame([(0, 2)])
    res = FullRankingEvaluator(frame([(0, 0)]), test, 1, 4, ks=(1, 2)).evaluate(torch.zeros(1, 4))
    # after masking item 0, ties order 1, 2, 3: the target sits at rank 2
    assert res["HR@1"] == 0.0 and res["HR@2"] == 1.0 and res["MRR"] == pytest.approx(0.5)


# ---------------------------------------------------------------- brute-force reference


def reference(scores, train, test, ks):
    """Per-user loops in plain Python: the definition, spelled out."""
    n_users, n_items = scores.shape
    seen = {u: set() for u in range(n_users)}
    for u, i in train:
        seen[u].add(i)
    targets = {u: set() for u in range(n_users)}
    for u, i in test:
        if i not in seen[u]:
            targets[u].add(i)
    out = {f"{m}@{k}": [] for m in metrics.METRICS for k in ks}
    out["MRR"] = []
    for u in range(n_users):
        if not targets[u]:
            continue
        ranked = sorted((i for i in range(n_items) if i not in seen[u]), key=lambda i: (-scores[u, i], i))
        rel = [1 if i in targets[u] else 0 for i in ranked]
        out["MRR"].append(1 / (rel.index(1) + 1))
        for k in ks:
            hits = sum(rel[:k])
            out[f"HR@{k}"].append(float(hits > 0))
            out[f"Precision@{k}"].append(hits / k)
            out[f"Recall@{k}"].append(hits / len(targets[u]))
            dcg = sum(r / math.log2(j + 2) for j, r in enumerate(rel[:k]))
            idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(targets[u]))))
            out[f"NDCG@{k}"].append(dcg / idcg)
    return {name: float(np.mean(v)) for name, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 17, 23
    pairs = np.array([(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.3])
    part = rng.integers(0, 3, len(pairs))
    train, test = pairs[part < 2], pairs[part == 2]
    # integer scores create plenty of ties, which the reference breaks by item index too
    scores = rng.integers(0, 5, (n_users, n_items)).astype(np.float32)
    ks = (1, 3, 10)
    ev = FullRankingEvaluator(train, test, n_users, n_items, ks=ks, batch_size=4)  # several batches
    got = ev.evaluate(torch.from_numpy(scores))
    want = reference(scores, train.tolist(), test.tolist(), ks)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name


def test_model_object_and_callable_agree_with_matrix():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.random((6, 8)).astype(np.float32))
    train, test = frame([(u, u) for u in range(6)]), frame([(u, (u + 3) % 8) for u in range(6)])
    ev = FullRankingEvaluator(train, test, 6, 8, ks=(2,))

    class Model:
        def scores(self, users):
            return scores[users]

    a, b, c = ev.evaluate(scores), ev.evaluate(Model()), ev.evaluate(lambda users: scores[users])
    assert a.metrics == b.metrics == c.metrics


def test_catalogue_metrics():
    train = frame([(0, 0), (1, 0), (2, 0), (0, 1)])
    test = frame([(0, 2), (1, 2), (2, 2)])
    res = FullRankingEvaluator(train, test, 3, 4, ks=(1,)).evaluate(torch.tensor([[0, 0, 1, 0.0]] * 3))
    assert res["Coverage@1"] == pytest.approx(1 / 4)
    assert res["AvgPop@1"] == pytest.approx(0.0)  # item 2 was never rated in training
    assert res["Gini@1"] == pytest.approx(0.75)


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_give_clear_errors():
    train, test = frame([(0, 0)]), frame([(0, 1)])
    for ks in ((0,), (-5, 10), (True,), True, (2.5,)):
        with pytest.raises(ValueError, match="cut-off k must be an integer >= 1"):
            FullRankingEvaluator(train, test, 1, 3, ks=ks)
    with pytest.raises(ValueError, match="empty"):
        FullRankingEvaluator(train, frame([]).astype(int), 1, 3)
    with pytest.raises(IndexError, match="outside the catalogue"):
        FullRankingEvaluator(train, frame([(0, 3)]), 1, 3)
    with pytest.raises(IndexError, match="outside the catalogue"):
        FullRankingEvaluator(frame([(5, 0)]), test, 1, 3)
    with pytest.raises(ValueError, match="user"):
        FullRankingEvaluator(pd.DataFrame({"user_id": [1], "item_id": [1]}), test, 1, 3)
    with pytest.raises(ValueError, match="no user has a target"):
        FullRankingEvaluator(train, frame([(0, 0)]), 1, 3)
    ev = FullRankingEvaluator(train, test, 1, 3)
    with pytest.raises(ValueError, match="shape"):
        ev.evaluate(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        ev.evaluate(torch.full((1, 3), float("nan")))
    with pytest.raises(ValueError, match="n_relevant"):
        ndcg_at_k([1], n_relevant=0, k=1)


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 30
    pairs = np.array([(u, i) for u in range(n_users) for i in rng.choice(n_items, 6, replace=False)])
    train, test = pairs[::2], pairs[1::2]
    ev = FullRankingEvaluator(train, test, n_users, n_items, ks=(5,))
    oracle = torch.from_numpy(metrics.interaction_matrix(test, n_users, n_items).numpy().astype(np.float32))
    good, bad = ev.evaluate(oracle), ev.evaluate(torch.rand(n_users, n_items))
    mean, lo, hi = metrics.paired_bootstrap(good, bad, "NDCG@5")
    assert lo <= mean <= hi and lo > 0.3
    from recnb import stats  # the one home of intervals: the same resamples, so the same numbers

    assert (mean, lo, hi) == stats.paired_bootstrap_ci(good.per_user["NDCG@5"], bad.per_user["NDCG@5"])
    assert metrics.paired_bootstrap(good, good, "NDCG@5") == (0.0, 0.0, 0.0)
    other = FullRankingEvaluator(train, test[:50], n_users, n_items, ks=(5,)).evaluate(oracle)
    with pytest.raises(ValueError, match="same users"):
        metrics.paired_bootstrap(good, other)


def test_top_k_stable_equals_a_full_stable_sort():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.integers(0, 4, (50, 30)).astype(np.float32))
    scores[:, :5] = float("-inf")  # masked items tie at -inf
    full = torch.sort(scores, dim=1, descending=True, stable=True).indices
    for k in (1, 7, 25, 30):
        assert torch.equal(metrics.top_k_stable(scores, k), full[:, :k])
    targets = torch.from_numpy(rng.random((50, 30)) < 0.2)
    targets[:, 10] = True
    rank = targets.gather(1, full).int().argmax(1) + 1
    assert torch.equal(metrics.first_hit_rank(scores, targets), rank)
