"""gymnasium wrappers of the simulated user: one user (``recnb/MovieLens-v0``) and a vector env (notebook 04).

Importing this module registers ``recnb/MovieLens-v0``::

    import gymnasium as gym
    import recnb.envs  # registers the id
    env = gym.make("recnb/MovieLens-v0")                      # MovieLens-100K, cached calibration
    env = gym.make("recnb/MovieLens-v0", config=SimulatorConfig(long_term=False))

* Actions: ``Discrete(n_items)``; for slates a :class:`SlateSpace` (a ``MultiDiscrete`` that holds
  only slates of distinct items, so ``action_space.sample()`` is always legal). Showing an already-consumed item
  is legal and earns nothing, so mask-unaware agents (e.g. stable-baselines3) run; an id outside
  ``[0, n_items)`` raises ``IndexError``.
* Observation: ``{"history": last consumed items (n_items = padding), "mask": 1 where an item is
  still available}``; ``info["action_mask"]`` repeats the mask as bools for mask-aware agents.
* ``terminated`` = the user left, ``truncated`` = the horizon was reached; stepping after either
  raises until ``reset``.

:class:`MovieLensVectorEnv` steps ``num_envs`` users at once on the batched core, with
gymnasium's next-step autoreset (the step after an episode ends resets that user and ignores its
action).
"""

from __future__ import annotations

from copy import deepcopy

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ._checks import check_int
from .simulator import PerUserSimulator, SimulatorConfig, UserSimulator

ENV_ID = "recnb/MovieLens-v0"


class SlateSpace(spaces.MultiDiscrete):
    """Slates of ``slate_size`` *distinct* item ids in ``[0, n_items)``, optionally batched (notebook 04).

    A plain ``MultiDiscrete`` also holds slates that show one item twice, which the simulator rejects,
    so its ``sample()`` -- and gymnasium's env checker, which steps with a sample -- could give an
    illegal action. This space holds legal slates only: ``sample()`` draws without replacement and
    ``contains()`` requires distinct ids. It stays a ``MultiDiscrete`` for libraries that dispatch on it.
    """

    def __init__(self, n_items: int, slate_size: int, batch: tuple[int, ...] = (), seed=None):
        check_int("n_items", n_items, minimum=2)
        check_int(f"slate_size (a slate needs 2 to n_items = {n_items} items)", slate_size, minimum=2, maximum=n_items)
        self.n_items, self.slate_size, self.batch = int(n_items), int(slate_size), tuple(batch)
        super().__init__(np.full((*self.batch, self.slate_size), self.n_items), seed=seed)

    def sample(self, mask=None, probability=None) -> np.ndarray:
        if mask is not None or probability is not None:
            raise NotImplementedError("SlateSpace samples uniformly; pick masked slates with your own policy")
        keys = self.np_random.random((*self.batch, self.n_items))  # a random order of the items a slate
        return np.argsort(keys, axis=-1)[..., : self.slate_size].astype(self.dtype)

    def contains(self, x) -> bool:
        if not super().contains(x):
            return False
        ordered = np.sort(np.asarray(x), axis=-1)
        return not bool((ordered[..., 1:] == ordered[..., :-1]).any())

    def __repr__(self) -> str:
        return f"SlateSpace(n_items={self.n_items}, slate_size={self.slate_size}, batch={self.batch})"


@batch_space.register(SlateSpace)
def _batch_slates(space: SlateSpace, n: int = 1) -> SlateSpace:
    """A vector env's action space: one legal slate a user."""
    return SlateSpace(space.n_items, space.slate_size, (n, *space.batch), seed=deepcopy(space.np_random))


def _spaces(sim: UserSimulator):
    n, k, slate = sim.n_items, sim.config.history_len, sim.config.slate_size
    action = spaces.Discrete(n) if slate == 1 else SlateSpace(n, slate)
    observation = spaces.Dict({"history": spaces.MultiDiscrete(np.full(k, n + 1)), "mask": spaces.MultiBinary(n)})
    return action, observation


def _simulator(simulator: UserSimulator | None, config: SimulatorConfig | None) -> UserSimulator:
    if simulator is None:
        return UserSimulator.movielens(config)
    if config is not None:
        return simulator.with_config(config)
    return simulator.with_config(simulator.config)  # a private copy: the env owns its batch state


class MovieLensEnv(gym.Env):
    """One simulated MovieLens user as a gymnasium ``Env``, on the NumPy per-user engine (notebook 04)."""

    metadata = {"render_modes": []}

    def __init__(self, simulator: UserSimulator | None = None, config: SimulatorConfig | None = None):
        batched = _simulator(simulator, config)
        self.sim = PerUserSimulator(batched.calibration, batched.config)
        self.action_space, self.observation_space = _spaces(batched)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        user = None if not options or "user" not in options else int(options["user"])
        self.sim.reset(seed=int(self.np_random.integers(0, 2**62)), user=user)
        return self._observation(), {"action_mask": self.sim.available.copy()}

    def step(self, action):
        reward, terminated, truncated, info = self.sim.advance(action)
        info["action_mask"] = self.sim.available.copy()
        return self._observation(), reward, terminated, truncated, info

    def _observation(self) -> dict:
        return {"history": self.sim.history.copy(), "mask": self.sim.available.astype(np.int8)}


class MovieLensVectorEnv(VectorEnv):
    """``num_envs`` simulated users stepped together on the batched core (notebook 04)."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, simulator: UserSimulator | None = None, config: SimulatorConfig | None = None):
        check_int("num_envs", num_envs, minimum=1)
        self.sim = _simulator(simulator, config)
        self.num_envs = int(num_envs)
        self.single_action_space, self.single_observation_space = _spaces(self.sim)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._needs_reset = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sim.reset(self.num_envs, seed=int(self.np_random.integers(0, 2**62)))
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        return self._observation(), {}

    def step(self, actions):
        if self._needs_reset is None:
            raise RuntimeError("call reset() before step()")
        actions = torch.as_tensor(np.asarray(actions))
        resetting = torch.as_tensor(self._needs_reset)
        if bool(resetting.all()):
            reward = torch.zeros(self.num_envs)
            terminated = truncated = torch.zeros(self.num_envs, dtype=torch.bool)
            info = {}
        else:
            _, reward, terminated, truncated, core = self.sim.step(actions)
            info = {"clicked": core["clicked"].numpy(), "item": core["item"].numpy()}
        if bool(resetting.any()):
            self.sim.reset_where(resetting)
        self._needs_reset = (terminated | truncated).numpy()
        return (self._observation(), reward.numpy().astype(np.float64), terminated.numpy(), truncated.numpy(), info)

    def _observation(self) -> dict:
        s = self.sim.state
        return {"history": s.history.numpy().astype(np.int64), "mask": s.available.numpy().astype(np.int8)}


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="recnb.envs:MovieLensEnv")
