"""Shared fixtures: every test gets its own data directory so nothing touches the real cache."""

import pytest


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh, empty RECNB_DATA_DIR for one test."""
    folder = tmp_path / "data"
    monkeypatch.setenv("RECNB_DATA_DIR", str(folder))
    return folder


def synthetic_ratings(n_users=40, n_items=30, per_user=10, seed=0, max_genres=2):
    """Ratings from a hidden 3-factor model, item ids 1..n_items, genres 1..max_genres per item."""
    import numpy as np
    import pandas as pd

    from recnb.data import GENRES

    rng = np.random.default_rng(seed)
    P, Q = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, size=per_user, replace=False):
            r = int(np.clip(np.round(3.5 + P[u] @ Q[i] + rng.normal(scale=0.3)), 1, 5))
            rows.append((u + 1, i + 1, r, 1000 * u + len(rows)))
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    names = list(GENRES[1:])
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1),
            "genres": [
                list(rng.choice(names, size=rng.integers(1, max_genres + 1), replace=False)) for _ in range(n_items)
            ],
        }
    )
    return ratings, items


@pytest.fixture(scope="module")
def tiny_sim():
    """A 40-user, 30-item simulator calibrated on synthetic ratings (horizon 8): fast RL tests."""
    from recnb.simulator import SimulatorConfig, UserSimulator, calibrate

    ratings, items = synthetic_ratings()
    return UserSimulator(calibrate(ratings, items, dim=4, seed=0), SimulatorConfig(horizon=8))


def platform_for(sim, seed=0, dim=4):
    """A platform model for a synthetic simulator: random recommender factors (tests of mechanics, not quality)."""
    import numpy as np
    import torch

    from recnb.platform import PlatformModel

    gen = torch.Generator().manual_seed(seed)
    cal = sim.calibration
    return PlatformModel(
        torch.randn(sim.n_calibration_users, dim, generator=gen),
        torch.randn(sim.n_items, dim, generator=gen),
        torch.zeros(sim.n_items),
        cal.item_genres.clone(),
        cal.item_popularity.clone(),
        [np.asarray(t) for t in cal.train_items],
    )


@pytest.fixture(scope="module")
def tiny_env(tiny_sim):
    """``tiny_sim`` seen through the platform's log (``recnb.platform.PlatformEnv``)."""
    from recnb.platform import PlatformEnv

    return PlatformEnv(tiny_sim, platform_for(tiny_sim))


def scramble_hidden_state(sim, seed):
    """Change everything the simulator knows about its users that a platform does not log (tests of the platform view)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    s = sim.state
    for tensor in (s.preference, s.base, s.exposure, s.satisfaction, s.sensitivity):
        tensor.copy_(torch.randn(tensor.shape, generator=gen))
    sim._packed.copy_(torch.randn(sim._packed.shape, generator=gen))
    for table in (sim.choice_item_factors, sim.choice_item_bias, sim.item_factors, sim.item_bias):
        table.copy_(torch.randn(table.shape, generator=gen))
    sim._cache.clear()
