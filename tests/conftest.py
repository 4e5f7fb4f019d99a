"""Shared fixtures: every test gets its own data directory so nothing touches the real cache, and every test
that needs a small simulated user builds it with one factory (:func:`synthetic_simulator`, fixture
``make_simulator``)."""

import pytest


def pytest_collection_modifyitems(config, items):
    """Test tiers: nbval's notebook items are marked ``notebooks``; ``gpu`` tests are skipped without CUDA."""
    cuda = None
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.notebooks)
        if item.get_closest_marker("gpu") is not None:
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (runs on the GPU machine and in Colab)"))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh, empty RECNB_DATA_DIR for one test."""
    folder = tmp_path / "data"
    monkeypatch.setenv("RECNB_DATA_DIR", str(folder))
    return folder


def random_ratings(n_users, n_items, sizes, times, seed):
    """Uniformly random ratings: users 1..n_users each rate ``sizes`` = (low, high) distinct items of 1..n_items
    (a size drawn in [low, high)), random stars, a timestamp drawn in ``times`` = [low, high). No structure: for
    the tests of splits and injections, where only the bookkeeping matters."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = [
        (u, i, int(rng.integers(1, 6)), int(rng.integers(*times)))
        for u in range(1, n_users + 1)
        for i in rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(*sizes)), replace=False)
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


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


SMALL = dict(n_users=60, n_items=50, per_user=15, max_genres=3)  # the catalogue most simulator tests share
TINY = dict(n_users=40, n_items=30, per_user=10, max_genres=2)  # fast RL tests


def synthetic_simulator(horizon=20, *, catalogue=SMALL, seed=0, dim=4, **config):
    """A :class:`recnb.simulator.UserSimulator` calibrated on :func:`synthetic_ratings` of ``catalogue`` (a dict of
    its arguments, e.g. :data:`SMALL` or :data:`TINY`), with ``SimulatorConfig(horizon=horizon, **config)``."""
    from recnb.simulator import SimulatorConfig, UserSimulator, calibrate

    ratings, items = synthetic_ratings(**catalogue, seed=seed)
    return UserSimulator(calibrate(ratings, items, dim=dim, seed=seed), SimulatorConfig(horizon=horizon, **config))


@pytest.fixture(scope="session")
def make_simulator():
    """The factory :func:`synthetic_simulator`, for module fixtures: ``make_simulator(horizon=30)``."""
    return synthetic_simulator


@pytest.fixture(scope="module")
def tiny_sim(make_simulator):
    """A 40-user, 30-item simulator calibrated on synthetic ratings (horizon 8): fast RL tests."""
    return make_simulator(horizon=8, catalogue=TINY)


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
    """Change everything the simulator knows about its users that a platform does not log (platform-view tests)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    s = sim.state
    for tensor in (s.preference, s.base, s.exposure, s.satisfaction, s.sensitivity):
        tensor.copy_(torch.randn(tensor.shape, generator=gen))
    sim._packed.copy_(torch.randn(sim._packed.shape, generator=gen))
    for table in (sim.choice_item_factors, sim.choice_item_bias, sim.item_factors, sim.item_bias):
        table.copy_(torch.randn(table.shape, generator=gen))
    sim._cache.clear()


def tiny_text_dqn(seed=0, total_steps=640, **overrides):
    """A DQNConfig small enough for a unit test of the text Q-network (linear item head, CPU)."""
    from recnb.agents.dqn import DQNConfig

    sizes = dict(n_envs=16, buffer_size=total_steps, batch_size=32, learning_starts=64, hidden=16, embed_dim=8)
    return DQNConfig(
        seed=seed,
        total_steps=total_steps,
        **sizes,
        linear_items=True,
        item_lr_scale=1.0,
        device="cpu",
        **overrides,
    )
