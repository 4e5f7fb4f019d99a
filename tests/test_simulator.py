"""Tests for recnb.simulator on a small synthetic catalogue built here (fast: no MovieLens)."""

import functools

import numpy as np
import pytest
import torch
from conftest import synthetic_ratings

from recnb.data import GENRES
from recnb.policies import GreedyPolicy, PopularityPolicy, RandomPolicy, evaluate_policy
from recnb.simulator import SimulatorConfig, UserSimulator, calibrate


def synthetic(n_users=60, n_items=50, per_user=15, seed=0):
    """Ratings from a hidden 3-factor model, item ids 1..n_items, genres 1-3 per item (shared by several test files)."""
    return synthetic_ratings(n_users, n_items, per_user, seed, max_genres=3)


@pytest.fixture(scope="module")
def calibration():
    ratings, items = synthetic()
    return calibrate(ratings, items, dim=4, seed=0, rating_l2=1.0)


def make(calibration, **kw):
    return UserSimulator(calibration, SimulatorConfig(**kw))


def rollout(sim, policy, n_users=20, seed=3):
    sim.reset(n_users, seed=seed)
    items, rewards = [], []
    while bool(sim.active.any()):
        _, r, _, _, info = sim.step(policy(sim))
        items.append(info["item"].clone())
        rewards.append(r.clone())
    return torch.stack(items), torch.stack(rewards)


def test_calibration_shapes_and_fit(calibration):
    assert calibration.user_factors.shape == (60, 4) and calibration.item_factors.shape == (50, 4)
    assert calibration.item_genres.shape == (50, len(GENRES))
    assert bool((calibration.item_genres.sum(1) >= 1).all())
    assert calibration.item_popularity.sum() == 60 * 15
    assert calibration.train_rmse < 0.9  # the hidden model is low-rank, so MF fits it well


def test_reset_masks_training_items_and_fills_history(calibration):
    sim = make(calibration, history_len=5)
    obs = sim.reset(8, seed=0, users=list(range(8)))
    assert obs["mask"].shape == (8, 50) and obs["history"].shape == (8, 5)
    for row in range(8):
        seen = calibration.train_items[row]
        assert not obs["mask"][row, torch.as_tensor(seen)].any()
        assert int(obs["mask"][row].sum()) == 50 - len(seen)
        assert obs["history"][row].tolist() == list(seen[-5:])
    unmasked = make(calibration, mask_train_items=False).reset(4, seed=0)
    assert bool(unmasked["mask"].all()) and bool((unmasked["history"] == 50).all())


def test_same_seed_same_trajectories_other_seed_differs(calibration):
    sim = make(calibration)
    a_items, a_rewards = rollout(sim, RandomPolicy(seed=1))
    b_items, b_rewards = rollout(sim, RandomPolicy(seed=1))
    assert torch.equal(a_items, b_items) and torch.equal(a_rewards, b_rewards)
    g1, g2 = rollout(sim, GreedyPolicy(), seed=5), rollout(sim, GreedyPolicy(), seed=5)
    assert torch.equal(g1[0], g2[0])
    other = rollout(sim, GreedyPolicy(), seed=6)
    assert other[0].shape != g1[0].shape or not torch.equal(other[0], g1[0])


def test_click_rate_matches_click_probability(calibration):
    sim = make(calibration, mask_train_items=False)
    n = 4000
    sim.reset(n, seed=0, users=[7] * n)
    p = sim.click_probability()[0]
    item = int(torch.argsort(p)[len(p) // 2])  # an item with a middling click chance
    p_item = float(p[item])
    expected = float(sim.expected_reward()[0, item])
    _, reward, _, _, info = sim.step(torch.full((n,), item))
    rate = info["clicked"].float().mean().item()
    assert abs(rate - p_item) < 4 * np.sqrt(p_item * (1 - p_item) / n) + 1e-3
    assert abs(reward.mean().item() - expected) < 0.05  # reward = click, so E[reward] = p


def test_slate_choice_is_multinomial_logit(calibration):
    sim = make(calibration, slate_size=3, mask_train_items=False)
    n = 6000
    sim.reset(n, seed=0, users=[3] * n)
    slate = torch.tensor([0, 1, 2]).expand(n, 3)
    logits = sim.utility()[0, :3]  # the choice logits of the three films
    want = torch.exp(logits) / (1 + torch.exp(logits).sum())
    _, _, _, _, info = sim.step(slate)
    got = torch.stack([(info["item"] == j).float().mean() for j in range(3)])
    assert torch.allclose(got, want, atol=0.03)
    assert float((info["item"] == -1).float().mean()) == pytest.approx(float(1 - want.sum()), abs=0.03)


def test_consumed_item_is_legal_but_earns_nothing(calibration):
    sim = make(calibration)
    sim.reset(5, seed=0, users=[0, 1, 2, 3, 4])
    seen = torch.tensor([calibration.train_items[u][0] for u in range(5)])
    _, reward, _, _, info = sim.step(seen)
    assert not info["clicked"].any() and bool((reward == 0).all())


def test_click_consumes_item_and_moves_state(calibration):
    sim = make(calibration, leave_base=0.0, leave_sensitivity=0.0, mask_train_items=False)
    sim.reset(200, seed=0)
    before = sim.state.preference.clone()
    _, _, _, _, info = sim.step(torch.zeros(200, dtype=torch.long))
    hit = info["clicked"]
    assert hit.any()
    assert not sim.available_mask()[hit, 0].any() and sim.available_mask()[~hit, 0].all()
    assert bool((sim.state.history[hit, -1] == 0).all())
    assert not torch.allclose(sim.state.preference[hit], before[hit])  # drift
    assert torch.allclose(sim.state.preference[~hit], before[~hit])
    assert bool((sim.exposure_of_items()[hit, 0] > 0).all())


def test_long_term_off_freezes_the_user(calibration):
    sim = make(calibration, long_term=False, mask_train_items=False)
    sim.reset(50, seed=0)
    pref, sat = sim.state.preference.clone(), sim.state.satisfaction.clone()
    first = sim.predicted_rating().clone()
    for _ in range(5):
        sim.step(GreedyPolicy()(sim))
    assert torch.equal(sim.state.preference, pref) and torch.equal(sim.state.satisfaction, sat)
    assert torch.allclose(sim.predicted_rating(), first)


def test_strength_zero_equals_long_term_off(calibration):
    base = SimulatorConfig(horizon=30)
    off = rollout(UserSimulator(calibration, SimulatorConfig(horizon=30, long_term=False)), GreedyPolicy(), seed=2)
    zero = rollout(UserSimulator(calibration, base.with_strength(0.0)), GreedyPolicy(), seed=2)
    assert torch.equal(off[0], zero[0]) and torch.allclose(off[1], zero[1])


def test_termination_and_truncation_are_separate(calibration):
    sim = make(calibration, horizon=5, leave_base=0.0, leave_sensitivity=0.0)
    sim.reset(10, seed=0)
    for step in range(5):
        _, _, terminated, truncated, _ = sim.step(RandomPolicy()(sim))
        assert not terminated.any()
        assert bool(truncated.all()) == (step == 4)
    with pytest.raises(RuntimeError, match="reset"):
        sim.step(torch.zeros(10, dtype=torch.long))
    leaver = make(calibration, leave_base=0.999, leave_sensitivity=0.0)
    leaver.reset(10, seed=0)
    _, reward, terminated, truncated, info = leaver.step(torch.zeros(10, dtype=torch.long))
    assert bool(terminated.all()) and not truncated.any() and not info["active"].any()


def test_finished_users_earn_nothing(calibration):
    sim = make(calibration, horizon=50, leave_base=0.3, leave_sensitivity=0.0, mask_train_items=False)
    sim.reset(64, seed=0)
    while bool(sim.active.any()):
        was = sim.active.clone()
        _, reward, terminated, truncated, _ = sim.step(GreedyPolicy()(sim))
        assert bool((reward[~was] == 0).all()) and not (terminated | truncated)[~was].any()


@pytest.mark.parametrize(
    "actions, error, match",
    [
        (torch.zeros(3, dtype=torch.long), ValueError, "shape"),
        (torch.zeros(4, 2, dtype=torch.long), ValueError, "shape"),
        (torch.zeros(4), TypeError, "integer"),
        (torch.tensor([0, 1, 2, 50]), IndexError, r"\[0, 50\)"),
        (torch.tensor([0, 1, -1, 2]), IndexError, "item ids"),
    ],
)
def test_bad_actions_raise_clear_errors(calibration, actions, error, match):
    sim = make(calibration)
    sim.reset(4, seed=0)
    with pytest.raises(error, match=match):
        sim.step(actions)


def test_slate_duplicates_and_use_before_reset_raise(calibration):
    sim = make(calibration, slate_size=2)
    with pytest.raises(RuntimeError, match="reset"):
        sim.step(torch.zeros(1, 2, dtype=torch.long))
    sim.reset(2, seed=0)
    with pytest.raises(ValueError, match="duplicate"):
        sim.step(torch.tensor([[1, 1], [2, 3]]))
    with pytest.raises(ValueError, match="n_users"):
        sim.reset(0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("horizon", 0),
        ("slate_size", 1.5),
        ("choice_offset", float("inf")),
        ("trait_spread", -1.0),
        ("drift_rate", -0.1),
        ("fatigue_recovery", 1.0),
        ("satisfaction_rate", 0.0),
        ("leave_base", 1.0),
        ("leave_sensitivity", 2.0),
        ("reward", "likes"),
        ("long_term", "yes"),
        ("boredom", -1.0),
    ],
)
def test_invalid_config_values_raise(field, value):
    with pytest.raises(ValueError, match=field):
        SimulatorConfig(**{field: value})
    with pytest.raises(ValueError, match="strength"):
        SimulatorConfig().with_strength(-1)


def test_calibrate_rejects_bad_frames():
    ratings, items = synthetic(n_users=5, n_items=10, per_user=3)
    with pytest.raises(ValueError, match="lacks column"):
        calibrate(ratings.drop(columns="rating"), items)
    with pytest.raises(ValueError, match="empty"):
        calibrate(ratings.iloc[:0], items)
    with pytest.raises(KeyError, match="not in items"):
        calibrate(ratings.assign(item_id=ratings["item_id"] + 100), items)


def test_greedy_beats_baselines_when_long_term_off(calibration):
    sim = make(calibration, long_term=False, horizon=20)
    greedy = evaluate_policy(sim, GreedyPolicy(), n_users=400, seed=0).mean_return
    for other in (RandomPolicy(seed=0), PopularityPolicy()):
        assert greedy > evaluate_policy(sim, other, n_users=400, seed=0).mean_return


@pytest.mark.parametrize("kw", [{}, {"long_term": False}, {"slate_size": 3}, {"reward": "watch_time"}])
def test_per_user_reference_follows_the_same_trajectory(calibration, kw):
    from recnb.simulator import PerUserSimulator

    batched, single = make(calibration, **kw), PerUserSimulator(calibration, SimulatorConfig(**kw))
    k = batched.config.slate_size
    for seed in range(6):
        batched.reset(1, seed=seed)
        single.reset(seed=seed)
        assert single.user == int(batched.state.user[0])
        rng = np.random.default_rng(seed)
        while not single.done:
            action = rng.choice(50, size=k, replace=False)
            _, r1, te1, tr1, info1 = batched.step(torch.as_tensor(action).reshape(1, k))
            _, r2, te2, tr2, info2 = single.step(action if k > 1 else int(action[0]))
            assert int(info1["item"][0]) == info2["item"] and float(r1[0]) == pytest.approx(r2, abs=1e-5)
            assert (bool(te1[0]), bool(tr1[0])) == (te2, tr2)
            assert float(batched.state.satisfaction[0]) == pytest.approx(float(single.satisfaction), abs=1e-5)
        assert not bool(batched.active[0])
        np.testing.assert_array_equal(batched.available_mask()[0].numpy(), single.available)


def test_per_user_reference_rejects_bad_actions(calibration):
    from recnb.simulator import PerUserSimulator

    single = PerUserSimulator(calibration)
    single.reset(seed=0)
    with pytest.raises(IndexError, match=r"\[0, 50\)"):
        single.step(50)
    with pytest.raises(TypeError, match="integer"):
        single.step(1.5)
    with pytest.raises(ValueError, match="1 item id"):
        single.step([1, 2])


def test_greedy_is_exactly_optimal_when_long_term_off(calibration):
    """Exhaustive dynamic programming over (consumed set, step) on a 6-item slice of one user."""

    sim = make(calibration, long_term=False, mask_train_items=False)
    sim.reset(1, seed=0, users=[5])
    p_all = sim.click_probability()[0].double().numpy()  # constant when long-term effects are off
    items = np.argsort(p_all)[::8][:6]  # a spread of click chances
    p, stay, horizon = p_all[items], 1 - sim.config.leave_base, 5

    def value(choose):
        @functools.cache
        def v(consumed: frozenset, t: int) -> float:
            if t == horizon:
                return 0.0
            options = [i for i in range(len(p)) if i not in consumed] or [0]
            q = {
                i: (p[i] if i not in consumed else 0.0) * (1 + stay * v(consumed | {i}, t + 1))
                + (1 - (p[i] if i not in consumed else 0.0)) * stay * v(consumed, t + 1)
                for i in options
            }
            return choose(q)

        return v(frozenset(), 0)

    optimal = value(lambda q: max(q.values()))
    greedy = value(lambda q: q[max(q, key=lambda i: p[i])])  # best immediate expected click
    assert greedy == pytest.approx(optimal, abs=1e-12)
    worst = value(lambda q: min(q.values()))
    assert optimal > worst + 0.1  # the check can fail: actions do matter here


@pytest.mark.parametrize("kw", [{}, {"long_term": False}])
def test_predicted_rating_is_the_rating_a_click_reveals(calibration, kw):
    """The [B, N] view (one matrix product of the packed rows) and step (per shown item) agree."""
    sim = make(calibration, mask_train_items=False, rating_noise=0.0, **kw)
    sim.reset(300, seed=0)
    policy = RandomPolicy(seed=1)
    for _ in range(5):
        actions = policy(sim)
        expected = sim.predicted_rating().gather(1, actions[:, None])[:, 0].clone()
        _, _, _, _, info = sim.step(actions)
        hit = info["clicked"]
        assert hit.any()
        torch.testing.assert_close(info["rating"][hit], expected[hit], atol=1e-5, rtol=0)


def test_noisy_ratings_are_whole_stars_around_the_prediction(calibration):
    """With rating_noise, a click gives round(prediction + noise) stars in 1..5, centred on the prediction."""
    sim = make(calibration, mask_train_items=False, long_term=False, rating_noise=0.9)
    sim.reset(4000, seed=0)
    predicted = sim.predicted_rating()
    actions = RandomPolicy(seed=1)(sim)
    expected = predicted.gather(1, actions[:, None])[:, 0].clone()
    _, _, _, _, info = sim.step(actions)
    hit = info["clicked"]
    given = info["rating"][hit]
    assert hit.sum() > 300
    assert torch.equal(given, given.round()) and given.min() >= 1 and given.max() <= 5
    gap = given - expected[hit]
    assert abs(float(gap.mean())) < 0.15 and 0.6 < float(gap.std()) < 1.1
    assert len(set(given.tolist())) >= 4  # a spread of stars, not one value


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_both_engines_refuse_a_bad_config_and_a_bad_seed(calibration, engine):
    """The batched simulator and its NumPy reference share one config check and one seeding rule."""
    from recnb.simulator import PerUserSimulator

    build = UserSimulator if engine == "batched" else PerUserSimulator
    with pytest.raises(TypeError, match="SimulatorConfig"):
        build(calibration, {"horizon": 5})
    sim = build(calibration)
    reset = functools.partial(sim.reset, 2) if engine == "batched" else sim.reset
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            reset(seed=bad)
    reset(seed=None)  # None: a fresh random seed
