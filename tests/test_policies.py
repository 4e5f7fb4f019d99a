"""Tests for recnb.policies on the small synthetic catalogue of conftest."""

import numpy as np
import pytest
import torch
from conftest import platform_for

from recnb import stats
from recnb.platform import PlatformEnv
from recnb.policies import (
    DiversifyingPolicy,
    Evaluation,
    GreedyPolicy,
    MMRPolicy,
    PlatformGreedyPolicy,
    PopularityPolicy,
    RandomPolicy,
    evaluate_policy,
    top_items,
)
from recnb.simulator import SimulatorConfig


@pytest.fixture(scope="module")
def simulator(make_simulator):
    return make_simulator(horizon=20)


def test_top_items_respects_mask_and_slate():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    mask = torch.tensor([[True, False, True, True]])
    assert top_items(scores, mask, 1).tolist() == [3]
    assert top_items(scores, mask, 2).tolist() == [[3, 2]]


@pytest.mark.parametrize(
    "policy",
    [
        RandomPolicy(0),
        PopularityPolicy(),
        GreedyPolicy(),
        PlatformGreedyPolicy(),
        DiversifyingPolicy(1.0),
        MMRPolicy(1.0),
    ],
)
def test_policies_pick_available_items_of_the_right_shape(simulator, policy):
    platform = platform_for(simulator)
    env = PlatformEnv(simulator.with_config(SimulatorConfig(slate_size=3)), platform)
    env.reset(8, seed=0)
    actions = policy(env)
    assert actions.shape == (8, 3)
    assert bool(env.available_mask().gather(1, actions).all())
    single = PlatformEnv(simulator, platform)
    single.reset(8, seed=0)
    assert policy(single).shape == (8,)


def test_greedy_picks_the_best_expected_reward(simulator):
    simulator.reset(16, seed=2)
    scores = simulator.expected_reward().masked_fill(~simulator.available_mask(), -1)
    chosen = GreedyPolicy()(simulator)
    assert torch.equal(scores.gather(1, chosen[:, None])[:, 0], scores.max(1).values)  # ties may pick either


def test_evaluate_policy_reports_means_and_cis(simulator):
    result = evaluate_policy(simulator, RandomPolicy(1), n_users=200, seed=3)
    assert isinstance(result, Evaluation) and result.returns.shape == (200,)
    row = result.summary()
    assert row["users"] == 200 and 0 < row["return_ci95"] < row["return"]
    assert (row["return"], row["return_ci95"]) == stats.mean_ci(result.returns)  # Student t, from recnb.stats
    assert 1 <= result.mean_length <= 20 and 0 <= result.click_rate <= 1
    assert np.all(result.click_rates <= 1)
    again = evaluate_policy(simulator, RandomPolicy(1), n_users=200, seed=3)
    np.testing.assert_array_equal(result.returns, again.returns)
    held_out = evaluate_policy(simulator, GreedyPolicy(), n_users=50, seed=0, users=[1, 2, 3])
    assert set(simulator.state.user.tolist()) <= {1, 2, 3} and held_out.returns.shape == (50,)
    with pytest.raises(ValueError, match="n_users"):
        evaluate_policy(simulator, GreedyPolicy(), n_users=1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer seed such as 0, got the bool"):
        evaluate_policy(simulator, GreedyPolicy(), n_users=8, seed=True)
    with pytest.raises(ValueError, match="RandomPolicy seed"):
        RandomPolicy(True)
    with pytest.raises(ValueError, match="penalty"):
        DiversifyingPolicy(-1)
