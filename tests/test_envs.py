"""Tests for the gymnasium wrappers, on the small synthetic catalogue of conftest."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from recnb.envs import ENV_ID, MovieLensEnv, MovieLensVectorEnv, SlateSpace
from recnb.simulator import SimulatorConfig


@pytest.fixture(scope="module")
def simulator(make_simulator):
    return make_simulator(horizon=30)


def test_env_passes_gymnasium_checker(simulator):
    check_env(MovieLensEnv(simulator), skip_render_check=True)
    check_env(MovieLensEnv(simulator, SimulatorConfig(slate_size=3)), skip_render_check=True)


def test_slate_action_spaces_sample_only_legal_slates(simulator):
    env = MovieLensEnv(simulator, SimulatorConfig(slate_size=3))
    assert isinstance(env.action_space, SlateSpace) and isinstance(env.action_space, gym.spaces.MultiDiscrete)
    env.action_space.seed(0)
    samples = np.array([env.action_space.sample() for _ in range(2000)])  # a plain MultiDiscrete: ~6% repeat an item
    assert samples.shape == (2000, 3) and samples.min() >= 0 and samples.max() < 50
    assert all(len(set(s)) == 3 for s in samples)
    assert len(np.unique(samples)) == 50  # every item can be drawn
    assert env.action_space.contains(np.array([1, 2, 3])) and not env.action_space.contains(np.array([1, 1, 3]))
    env.reset(seed=0)
    env.step(samples[0])
    envs = MovieLensVectorEnv(16, simulator, SimulatorConfig(slate_size=3))
    envs.reset(seed=0)
    batch = envs.action_space.sample()
    assert batch.shape == (16, 3) and envs.action_space.contains(batch)
    assert all(len(set(row)) == 3 for row in batch)
    envs.step(batch)
    with pytest.raises(ValueError, match="slate_size"):
        SlateSpace(5, 6)


def test_env_is_registered_and_makes_with_a_simulator(simulator):
    assert ENV_ID in gym.registry
    env = gym.make(ENV_ID, simulator=simulator)
    obs, info = env.reset(seed=0)
    assert obs["mask"].shape == (50,) and obs["history"].shape == (10,)
    np.testing.assert_array_equal(info["action_mask"], obs["mask"].astype(bool))


def test_env_same_seed_same_episode_and_masking(simulator):
    def episode(seed):
        env = MovieLensEnv(simulator)
        obs, info = env.reset(seed=seed)
        rng, out, done = np.random.default_rng(0), [], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(int(rng.integers(50)))
            out.append((info["item"], reward))
            done = terminated or truncated
        return out, obs, terminated, truncated

    a, b = episode(4), episode(4)
    assert a[0] == b[0]
    items = [i for i, _ in a[0] if i >= 0]
    assert len(items) == len(set(items))  # a consumed item is never consumed again
    assert all(a[1]["mask"][i] == 0 for i in items)
    assert a[2] != a[3] or not a[2]  # never both terminated and truncated


def test_env_consumed_item_earns_nothing_and_bad_actions_raise(simulator):
    env = MovieLensEnv(simulator, SimulatorConfig(horizon=5, leave_base=0.0, leave_sensitivity=0.0))
    obs, _ = env.reset(seed=0)
    seen = int(np.flatnonzero(obs["mask"] == 0)[0])
    _, reward, _, _, info = env.step(seen)
    assert reward == 0.0 and not info["clicked"]
    with pytest.raises(IndexError, match="item ids"):
        env.step(50)
    with pytest.raises(IndexError, match="item ids"):
        env.step(-1)
    for _ in range(4):
        _, _, terminated, truncated, _ = env.step(0)
    assert truncated and not terminated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_vector_env_steps_a_batch_and_autoresets(simulator):
    envs = MovieLensVectorEnv(16, simulator, SimulatorConfig(horizon=4, leave_base=0.0, leave_sensitivity=0.0))
    obs, _ = envs.reset(seed=1)
    assert obs["mask"].shape == (16, 50) and envs.single_action_space.n == 50
    for step in range(4):
        obs, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
    assert truncated.all() and reward.shape == (16,)
    obs, reward, terminated, truncated, _ = envs.step(np.zeros(16, dtype=np.int64))  # the autoreset step
    assert not (terminated | truncated).any() and (reward == 0).all()
    assert (envs.sim.state.t == 0).all()
    with pytest.raises(IndexError):
        envs.step(np.full(16, 50))
    with pytest.raises(ValueError, match="num_envs"):
        MovieLensVectorEnv(0, simulator)
