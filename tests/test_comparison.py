"""Tests for recnb.comparison on small synthetic data built here (fast: no MovieLens)."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SMALL, platform_for, synthetic_ratings

from recnb import comparison
from recnb.metrics import FullRankingEvaluator
from recnb.platform import PlatformEnv, split_users
from recnb.policies import GreedyPolicy, PopularityPolicy, evaluate_policy
from recnb.splits import split_random


@pytest.fixture(scope="module")
def sim(make_simulator):
    return make_simulator(horizon=20)


@pytest.fixture(scope="module")
def env(sim):
    return PlatformEnv(sim, platform_for(sim))


def test_score_policy_follows_its_scores_and_the_mask(env):
    scores = torch.arange(env.n_items, dtype=torch.float32).expand(env.n_calibration_users, -1)
    policy = comparison.ScorePolicy(scores, "by index")
    env.reset(8, seed=0)
    items = policy(env)
    avail = env.available_mask()
    best = torch.where(avail, torch.arange(env.n_items), -1).max(1).values
    assert torch.equal(items, best)
    # each user is served their own row of the scores (row = calibration user)
    per_user = torch.zeros(env.n_calibration_users, env.n_items)
    per_user[torch.arange(env.n_calibration_users), torch.arange(env.n_calibration_users) % env.n_items] = 1.0
    env.reset(8, seed=0, users=torch.arange(8))
    items = comparison.ScorePolicy(per_user, "own row")(env)
    open_ = env.available_mask()[torch.arange(8), torch.arange(8)]  # user u's favourite (film u) not yet consumed
    assert open_.any() and torch.equal(items[open_], torch.arange(8)[open_])
    with pytest.raises(ValueError, match="scores must be"):
        comparison.ScorePolicy(torch.zeros(3, 3), "bad")(env)
    with pytest.raises(TypeError, match="PlatformEnv"):  # the bare simulator is not a platform's view
        policy(env.sim)


def test_left_aligned_windows():
    pad = 9
    hist = torch.tensor([[pad, pad, 3, 4], [1, 2, 5, 6], [pad, pad, pad, pad]])
    window, last = comparison.left_aligned(hist, pad)
    assert window.tolist() == [[3, 4, pad, pad], [1, 2, 5, 6], [pad] * 4]
    assert last.tolist() == [1, 3, 0]


def test_simulate_counts_exposure(env):
    row, ev = comparison.simulate(env, PopularityPolicy(), n_users=30, seed=1)
    assert row["users"] == 30 and 0 <= row["click_rate"] <= 1
    assert np.isclose(row["return"], ev.mean_return) and len(ev.returns) == 30
    # every shown item is counted once per active user-step: the counts add up to the total episode length
    counter = comparison.ExposureCounter(PopularityPolicy(), env.n_items)
    again = evaluate_policy(env, counter, n_users=30, seed=1)
    assert counter.counts.sum() == again.lengths.sum()
    assert 0 < row["exposure_coverage"] <= 1 and 0 <= row["exposure_gini"] <= 1
    assert np.isclose(row["length"], again.mean_length)
    with pytest.raises(TypeError, match="PlatformEnv"):
        comparison.simulate(env.sim, PopularityPolicy(), n_users=30, seed=1)


def test_simulate_draws_only_the_pool(sim):
    _, held_out = split_users(sim.n_calibration_users, 0.5, seed=0)
    pool_env = PlatformEnv(sim, platform_for(sim), users=held_out)
    seen = []

    class Spy:
        name = "spy"

        def __call__(self, e):
            seen.append(e.user.clone())
            return PopularityPolicy()(e)

    comparison.simulate(pool_env, Spy(), n_users=40, seed=2)
    assert set(torch.cat(seen).tolist()) <= set(held_out.tolist())


def indexed_synthetic():
    ratings, items = synthetic_ratings(**{**SMALL, "n_users": 40, "n_items": 30, "per_user": 12})
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

    out = comparison.robustness_study(
        split,
        items["item_id"].to_numpy(),
        {"pop": popularity},
        comparison.RobustnessConfig(fractions=(0.5,), k=3),
        progress=False,
    )
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


def test_initial_state_scores_use_the_platform_observation(env):
    from recnb.platform import observe_platform

    class Agent:  # scores = the user's calibration row, to see who was observed; records what it was given
        def observe(self, e):
            self.obs = observe_platform(e)
            return self.obs

        def q_values(self, obs):
            return obs["user_id"][:, None].float().expand(-1, env.n_items)

    agent = Agent()
    scores = comparison.initial_state_scores(agent, env, 10)
    assert torch.equal(scores[:, 0], torch.arange(10).float())
    # the agent saw the first step of each real user as the platform logs it: their training films are consumed
    assert set(agent.obs) == {"user", "history", "mask", "user_id", "immediate"}
    assert torch.equal(agent.obs["mask"], env.available_mask()) and bool((env.t == 0).all())
    with pytest.raises(ValueError, match="knows"):
        comparison.initial_state_scores(agent, env, env.n_calibration_users + 1)
    with pytest.raises(TypeError, match="PlatformEnv"):
        comparison.initial_state_scores(agent, env.sim, 10)


def test_oracle_initial_scores_are_the_simulators_expected_reward(env):
    scores = comparison.oracle_initial_scores(env, 10)
    env.sim.reset(10, seed=0, users=torch.arange(10))
    assert torch.equal(scores, env.sim.expected_reward())
    # oracle greedy's first choice is the top of this ranking
    env.reset(10, seed=0, users=torch.arange(10))
    assert torch.equal(GreedyPolicy()(env), scores.masked_fill(~env.available_mask(), -1e9).argmax(1))


def test_random_scores_repeat_with_the_seed():
    a, b = comparison.random_scores(5, 7, seed=3), comparison.random_scores(5, 7, seed=3)
    assert a.shape == (5, 7) and torch.equal(a, b) and not torch.equal(a, comparison.random_scores(5, 7, seed=4))


def test_mean_ci_is_the_student_t_interval():
    runs = pd.DataFrame({"model": ["a"] * 5 + ["b"] * 2, "NDCG": [1.0, 2.0, 3.0, 4.0, 5.0, 0.5, 0.5]})
    out = comparison.mean_ci(runs, "model", ["NDCG"])
    # a: mean 3, sample std sqrt(2.5), t(0.975, 4 df) = 2.7764451
    assert out.loc["a", "NDCG"] == pytest.approx(3.0)
    assert out.loc["a", "NDCG ± CI"] == pytest.approx(2.7764451 * np.sqrt(2.5) / np.sqrt(5), rel=1e-6)
    assert out.loc["b", "NDCG ± CI"] == pytest.approx(0.0) and out["runs"].tolist() == [5, 2]
    with pytest.raises(ValueError, match="need >= 2 runs"):
        comparison.mean_ci(runs.iloc[:6], "model", ["NDCG"])


# ---------------------------------------------------------------- notebook 06's agents, reused by notebook 10


def test_validation_users_cut_the_training_users_in_two_disjoint_groups():
    train_users = np.arange(100, 200, 2)
    fit, valid = comparison.validation_users(train_users)
    assert len(fit) == 40 and len(valid) == 10
    assert set(fit).isdisjoint(valid) and set(fit) | set(valid) == set(train_users)
    again = comparison.validation_users(train_users)
    assert np.array_equal(fit, again[0]) and np.array_equal(valid, again[1])
    assert not np.array_equal(valid, comparison.validation_users(train_users, seed=2)[1])


def test_dqn_checkpoint_is_keyed_by_the_config_and_the_users(data_dir):
    from recnb.agents.dqn import DQNConfig

    fit, valid = comparison.validation_users(np.arange(50))
    fingerprint = comparison.dqn_fingerprint(fit, valid)
    path = comparison.dqn_checkpoint(DQNConfig(seed=0), fingerprint)
    assert path.parent == data_dir / "agents" and path.suffix == ".safetensors"
    assert path == comparison.dqn_checkpoint(DQNConfig(seed=0), comparison.dqn_fingerprint(fit[::-1], valid))
    assert path != comparison.dqn_checkpoint(DQNConfig(seed=1), fingerprint)
    assert path != comparison.dqn_checkpoint(DQNConfig(seed=0), comparison.dqn_fingerprint(valid, fit))
    assert comparison.dqn_checkpoint(DQNConfig(), fingerprint, folder="elsewhere").parent.name == "elsewhere"


def test_a_saved_agent_and_its_report_are_found_again(sim, data_dir, monkeypatch):
    """Notebook 06 trains, saves and reports; notebook 10 loads the same file and finds the same report."""
    from recnb.agents.dqn import DQN, DQNConfig

    small = dict(total_steps=160, n_envs=16, buffer_size=320, batch_size=16, learning_starts=32, device="cpu")
    cfg = DQNConfig(**small, fatigue_term=False)
    fit, valid = comparison.validation_users(np.arange(sim.n_calibration_users))
    fingerprint = comparison.dqn_fingerprint(fit, valid)
    path = comparison.dqn_checkpoint(cfg, fingerprint)
    env = PlatformEnv(sim.with_config(sim.config), platform_for(sim), users=fit)
    agent = DQN(env, cfg, fingerprint=fingerprint)
    agent.train(progress=False)
    agent.save(path)
    eval_users = np.arange(sim.n_calibration_users)
    evaluation = evaluate_policy(PlatformEnv(sim.with_config(sim.config), env.platform), agent.policy(), 30, seed=5)
    assert comparison.read_report(path) is None
    comparison.save_report(path, agent, evaluation, eval_users)

    monkeypatch.setattr(DQN, "train", lambda *a, **k: pytest.fail("load_or_train retrained a matching checkpoint"))
    loaded = DQN.load_or_train(path, env, cfg, fingerprint=fingerprint)
    assert loaded is not agent and loaded.updates == agent.updates
    assert comparison.parameters_digest(loaded) == comparison.parameters_digest(agent)
    again = evaluate_policy(PlatformEnv(sim.with_config(sim.config), env.platform), loaded.policy(), 30, seed=5)
    assert comparison.read_report(path) == comparison.report_of(loaded, again, eval_users)
    other = evaluate_policy(PlatformEnv(sim.with_config(sim.config), env.platform), loaded.policy(), 30, seed=6)
    assert comparison.read_report(path)["returns"] != comparison.report_of(loaded, other, eval_users)["returns"]
    with torch.no_grad():  # one changed weight changes the digest
        next(loaded.online.parameters()).add_(1.0)
    assert comparison.parameters_digest(loaded) != comparison.parameters_digest(agent)


def test_read_report_is_none_for_an_unreadable_record(tmp_path):
    path = tmp_path / "dqn-x.safetensors"
    (tmp_path / "dqn-x.report.json").write_text("{not json")
    assert comparison.read_report(path) is None
