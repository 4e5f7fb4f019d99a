"""Tests for recnb.comparison on small synthetic data built here (fast: no MovieLens)."""

import numpy as np
import pandas as pd
import pytest
import torch

from recnb import comparison
from recnb.metrics import FullRankingEvaluator
from recnb.policies import PopularityPolicy
from recnb.simulator import SimulatorConfig, UserSimulator, calibrate
from recnb.splits import split_random
from test_simulator import synthetic


@pytest.fixture(scope="module")
def sim():
    ratings, items = synthetic()
    return UserSimulator(calibrate(ratings, items, dim=4, seed=0), SimulatorConfig(horizon=20))


def test_score_policy_follows_its_scores_and_the_mask(sim):
    scores = torch.arange(sim.n_items, dtype=torch.float32).expand(sim.n_calibration_users, -1)
    policy = comparison.ScorePolicy(scores, "by index")
    sim.reset(8, seed=0)
    items = policy(sim)
    avail = sim.available_mask()
    best = torch.where(avail, torch.arange(sim.n_items), -1).max(1).values
    assert torch.equal(items, best)
    with pytest.raises(ValueError, match="scores must be"):
        comparison.ScorePolicy(torch.zeros(3, 3), "bad")(sim)


def test_left_aligned_windows():
    pad = 9
    hist = torch.tensor([[pad, pad, 3, 4], [1, 2, 5, 6], [pad, pad, pad, pad]])
    window, last = comparison.left_aligned(hist, pad)
    assert window.tolist() == [[3, 4, pad, pad], [1, 2, 5, 6], [pad] * 4]
    assert last.tolist() == [1, 3, 0]


def test_simulate_counts_exposure(sim):
    row = comparison.simulate(sim, PopularityPolicy(), n_users=30, seed=1)
    assert row["users"] == 30 and 0 <= row["click_rate"] <= 1
    # every shown item is counted once per active user-step: the counts add up to the total episode length
    counter = comparison.ExposureCounter(PopularityPolicy(), sim.n_items)
    from recnb.policies import evaluate_policy
    ev = evaluate_policy(sim, counter, n_users=30, seed=1)
    assert counter.counts.sum() == ev.lengths.sum()
    assert 0 < row["exposure_coverage"] <= 1 and 0 <= row["exposure_gini"] <= 1
    assert np.isclose(row["length"], ev.mean_length)


def indexed_synthetic():
    ratings, items = synthetic(n_users=40, n_items=30, per_user=12)
    ratings = ratings.assign(user=ratings["user_id"] - 1, item=ratings["item_id"] - 1)
    return ratings, items


def test_pick_attack_target_is_an_unpopular_rated_item():
    ratings, _ = indexed_synthetic()
    target = comparison.pick_attack_target(ratings)
    counts = ratings.groupby("item_id").size()
    assert counts[target] >= 5 and counts[target] <= counts[counts >= 5].quantile(0.25)
    with pytest.raises(ValueError, match="min_ratings"):
        comparison.pick_attack_target(ratings, min_ratings=10_000)


def test_robustness_study_shilling_raises_the_target_of_a_popularity_model():
    ratings, items = indexed_synthetic()
    split = split_random(ratings, seed=0)

    def popularity(train, valid, n_users, n_items):
        counts = np.bincount(train["item"], minlength=n_items).astype(float)
        return np.tile(counts, (n_users, 1))

    out = comparison.robustness_study(split, items["item_id"].to_numpy(), {"pop": popularity},
                                      comparison.RobustnessConfig(fractions=(0.5,), k=3), progress=False)
    assert set(out["attack"]) == {"clean", "random raters", "shilling"}
    clean = out[out["attack"] == "clean"].iloc[0]
    shill = out[out["attack"] == "shilling"].iloc[0]
    assert clean["NDCG_drop"] == 0
    # half as many fake users as real ones all rating the target: it becomes the most popular item
    assert shill["target_exposure"] > clean["target_exposure"]
    assert shill["target_exposure"] > 0.5
    assert shill["target_rank"] < clean["target_rank"] and shill["target_rank"] <= 3


def test_ranking_row():
    ratings, items = indexed_synthetic()
    split = split_random(ratings, seed=0)
    ev = FullRankingEvaluator(split.train, split.test, 40, 30, exclude={"valid": split.valid}, ks=(5,))
    row = comparison.ranking_row(ev, torch.rand(40, 30, generator=torch.Generator().manual_seed(0)), k=5)
    assert set(row) == {"NDCG@5", "HR@5", "Coverage@5", "AvgPop@5", "Gini@5", "users"}


def test_markdown_table():
    frame = pd.DataFrame({"a": [1.23456, np.nan], "b": ["x", "y"]}, index=["m1", "m2"])
    lines = comparison.markdown_table(frame, digits=2).splitlines()
    assert lines[0] == "|  | a | b |" and lines[1] == "|---|---|---|"
    assert lines[2] == "| m1 | 1.23 | x |" and lines[3] == "| m2 | n/a | y |"


def test_text_knn_scores_shape_and_own_items():
    ratings, items = indexed_synthetic()
    rng = np.random.default_rng(0)
    text = rng.normal(size=(30, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    scores = comparison.text_knn_scores(ratings, text, n_users=40, neighbours=3)
    assert scores.shape == (40, 30)
    # an item the user rated is its own nearest neighbour: it scores at least its rating
    u, i, r = ratings.iloc[0][["user", "item", "rating"]]
    assert scores[u, i] >= r - 1e-4


def test_initial_state_scores_uses_each_real_user(sim):
    class Agent:  # scores = the user's calibration row, to see who was observed
        def observe(self, s):
            return {"user": s.state.user}

        def q_values(self, obs):
            return obs["user"][:, None].float().expand(-1, sim.n_items)

    scores = comparison.initial_state_scores(Agent(), sim, 10)
    assert torch.equal(scores[:, 0], torch.arange(10).float())
    with pytest.raises(ValueError, match="knows"):
        comparison.initial_state_scores(Agent(), sim, sim.n_calibration_users + 1)


def test_mean_ci_is_the_student_t_interval():
    runs = pd.DataFrame({"model": ["a"] * 5 + ["b"] * 2, "NDCG": [1.0, 2.0, 3.0, 4.0, 5.0, 0.5, 0.5]})
    out = comparison.mean_ci(runs, "model", ["NDCG"])
    # a: mean 3, sample std sqrt(2.5), t(0.975, 4 df) = 2.7764451
    assert out.loc["a", "NDCG"] == pytest.approx(3.0)
    assert out.loc["a", "NDCG ± CI"] == pytest.approx(2.7764451 * np.sqrt(2.5) / np.sqrt(5), rel=1e-6)
    assert out.loc["b", "NDCG ± CI"] == pytest.approx(0.0) and out["runs"].tolist() == [5, 2]
    with pytest.raises(ValueError, match="need >= 2 runs"):
        comparison.mean_ci(runs.iloc[:6], "model", ["NDCG"])
