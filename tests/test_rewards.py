"""Tests for recnb.rewards: hand-worked values, torch/NumPy agreement, composites, errors."""

import math

import numpy as np
import pytest
import torch

from recnb import rewards
from recnb.rewards import Signals


def signals(lib):
    click = [1.0, 1.0, 0.0, 1.0]
    rating = [5.0, 3.0, 4.0, 1.0]
    exposure = [0.0, 0.7, 0.0, 1.6]
    conv = torch.tensor if lib == "torch" else np.array
    return Signals(*(conv(x, dtype=torch.float32 if lib == "torch" else np.float32) for x in (click, rating, exposure)))


EXPECTED = {
    "click": [1, 1, 0, 1],
    "rating": [5, 3, 0, 1],
    "log_rating": [math.log(6), math.log(4), 0, math.log(2)],
    "watch_time": [1.0, 0.5, 0.0, 0.0],
    "conversion": [1, 0, 0, 0],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("lib", ["torch", "numpy"])
def test_rewards_hand_cases(name, lib):
    got = rewards.get(name)(signals(lib))
    assert type(got) is (torch.Tensor if lib == "torch" else np.ndarray)
    np.testing.assert_allclose(np.asarray(got, dtype=float), EXPECTED[name], atol=1e-6)


def test_composite_adds_bonus_and_penalty_on_clicks_only():
    fn = rewards.composite("rating", diversity=0.5, fatigue=1.0)
    got = fn(signals("torch"))
    want = [5 + 0.5, 3 + 0.5 * math.exp(-0.7) - 0.7, 0.0, 1 + 0.5 * math.exp(-1.6) - 1.6]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    assert "composite" in fn.__name__
    plain = rewards.composite("click")
    np.testing.assert_allclose(plain(signals("numpy")), EXPECTED["click"])


def test_settings_map_to_rewards_and_errors_are_clear():
    assert {rewards.SETTINGS[k] for k in ("ads", "content", "e-commerce")} <= set(rewards.REWARDS)
    with pytest.raises(ValueError, match="choose one of"):
        rewards.get("likes")
    with pytest.raises(ValueError, match="diversity must be a finite non-negative number"):
        rewards.composite("click", diversity=-1)
    with pytest.raises(ValueError, match="fatigue must be a finite non-negative number, got the bool"):
        rewards.composite("click", fatigue=True)
    assert rewards.get(rewards.click) is rewards.click


def test_rewards_broadcast_over_users_and_items():
    click = torch.ones(3, 5)
    rating = torch.linspace(1, 5, 5).expand(3, 5)
    got = rewards.watch_time(Signals(click, rating))
    assert got.shape == (3, 5) and torch.allclose(got[0], torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))
