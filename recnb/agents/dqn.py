"""Deep Q-learning for recommendation, correct by test and fast by batching (notebook 06).

CleanRL-style: :class:`DQNConfig` holds every hyperparameter with a docstring; :class:`DQN` is the
algorithm (collect a batch of users' steps -> store -> sample -> TD update), networks and the
replay buffer live in ``networks.py`` and ``replay.py``. The correctness rules
are each one line of :func:`td_target`, and each has a regression test that fails when undone:

* bootstrap only where the episode did **not** terminate: ``(1 - terminated)``, not ``terminated``;
* bootstrap from the **next** state, through the target network (Double DQN: chosen by the online one);
* mask items already consumed in the next state: the max runs over available items only;
* a time limit (``truncated``) is not a terminal state: it still bootstraps.

Usage::

    sim = UserSimulator.movielens(SimulatorConfig(long_term=True))
    train_users, eval_users = split_users(sim.n_calibration_users, 0.5, seed=0)
    env = PlatformEnv(sim, movielens_platform(), users=train_users)     # the platform's view only
    agent = DQN(env, DQNConfig(total_steps=100_000))
    agent.train()
    evaluate_policy(PlatformEnv(sim_eval, platform, users=eval_users), agent.policy(), n_users=2000, seed=1)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_finite_parameters, check_numbers, finite_or_raise
from ..platform import observe_platform
from .networks import NaiveQNetwork, QNetwork, genre_shares
from .replay import ReplayBuffer

NEG = -1e9  # Q of an unavailable item: never chosen, never bootstrapped from
CHECK_WEIGHTS_EVERY = 500  # gradient updates between checks that the networks' weights are finite (one sync on CUDA)


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of :class:`DQN` (notebook 06). Validated on creation: every rate is a finite number.

    ``learning_starts > total_steps`` is refused by :meth:`DQN.train`, which knows the budget actually trained
    to (its ``total_steps`` argument, or a resumed agent's ``DQN.load(..., total_steps=...)``).
    """

    seed: int = 0
    """Seeds the networks, exploration, replay sampling and the simulated users."""
    total_steps: int = 100_000
    """Environment steps to train for, summed over all parallel users."""
    n_envs: int = 128
    """Simulated users stepped together per collection step (vectorised collection)."""
    buffer_size: int = 50_000
    """Replay capacity in transitions (kept on the training device)."""
    batch_size: int = 256
    """Transitions per gradient step."""
    learning_rate: float = 1e-3
    """Adam step size."""
    gamma: float = 0.9
    """Discount factor in [0, 1): how much the agent values future clicks."""
    n_step: int = 3
    """Steps summed before bootstrapping (1 = classic DQN); returns stop at an episode's end."""
    double_dqn: bool = True
    """Double DQN: the online net picks the next item, the target net values it (less overestimation)."""
    tau: float = 0.01
    """Target-network update: 1.0 = hard copy every ``target_update_every`` updates, < 1 = Polyak (soft)."""
    target_update_every: int = 1
    """Gradient updates between target-network updates."""
    epsilon_start: float = 1.0
    """Exploration rate at the start: chance of a random *available* item."""
    epsilon_end: float = 0.05
    """Exploration rate after the schedule."""
    exploration_fraction: float = 0.3
    """Fraction of ``total_steps`` over which epsilon falls linearly from start to end."""
    learning_starts: int = 5_000
    """Environment steps collected before the first gradient step."""
    updates_per_collect: int = 1
    """Gradient steps per collection step (each collection step adds ``n_envs`` transitions)."""
    huber_delta: float = 1.0
    """Huber loss threshold: quadratic below, linear above (robust to large TD errors)."""
    max_grad_norm: float = 10.0
    """Gradients are clipped to this global norm."""
    embed_dim: int = 32
    """Width of the state and item embeddings whose dot product is Q."""
    hidden: int = 64
    """Hidden width of the state and item towers."""
    item_lr_scale: float = 1e-3
    """Learning-rate multiplier of the item tower: << 1 keeps the item-by-item correction from outrunning its
    data (an argmax over ~1,600 items amplifies every item's noise); raise it for long runs or new item features."""
    fatigue_term: bool = True
    """Give the Q-network the user's recent clicks on each item's genres and learn their price (QNetwork's
    ``e(s, i)`` term); needs an env with ``exposure_columns()`` (``recnb.platform.PlatformEnv``)."""
    fatigue_init: float = 0.0
    """Starting value of the fatigue term's ``d(s)``: 0 starts the agent as greedy on the platform's scores;
    ``-penalty`` starts it as ``DiversifyingPolicy(penalty)`` (e.g. the penalty tuned on training users),
    so learning refines the best heuristic instead of rediscovering it."""
    linear_items: bool = False
    """Item tower ``g`` linear in the item features (robust argmax over many items) or an MLP."""
    network: str = "qnet"
    """``"qnet"`` (state and item features) or ``"naive"`` (the article's user-id x item-id embeddings)."""
    device: str = "auto"
    """``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``."""
    autocast: bool = True
    """Mixed precision (bfloat16 autocast) for the networks on CUDA; ignored on CPU."""
    log_every: int = 10
    """Collection steps between logged points of the training curves."""

    def __post_init__(self):
        def need(ok: bool, what: str):
            if not ok:
                raise ValueError(f"DQNConfig: {what}")

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        check_numbers(
            "DQNConfig",
            self,
            finite=(
                "learning_rate",
                "gamma",
                "tau",
                "epsilon_start",
                "epsilon_end",
                "exploration_fraction",
                "item_lr_scale",
                "huber_delta",
                "max_grad_norm",
                "fatigue_init",
            ),
        )
        for name in (
            "total_steps",
            "n_envs",
            "buffer_size",
            "batch_size",
            "n_step",
            "target_update_every",
            "updates_per_collect",
            "embed_dim",
            "hidden",
            "log_every",
        ):
            need(
                is_int(getattr(self, name)) and getattr(self, name) >= 1,
                f"{name} must be an integer >= 1, got {getattr(self, name)!r}",
            )
        need(is_int(self.seed) and self.seed >= 0, f"seed must be a non-negative integer, got {self.seed!r}")
        need(
            is_int(self.learning_starts) and self.learning_starts >= 0,
            f"learning_starts must be an integer >= 0, got {self.learning_starts!r}",
        )
        need(0 <= self.gamma < 1, f"gamma must be in [0, 1), got {self.gamma}; use e.g. 0.9")
        for name in ("epsilon_start", "epsilon_end"):
            need(0 <= getattr(self, name) <= 1, f"{name} must be in [0, 1], got {getattr(self, name)}")
        need(
            0 < self.exploration_fraction <= 1,
            f"exploration_fraction must be in (0, 1], got {self.exploration_fraction}",
        )
        need(0 < self.tau <= 1, f"tau must be in (0, 1] (1 = hard update), got {self.tau}")
        need(self.item_lr_scale > 0, f"item_lr_scale must be > 0, got {self.item_lr_scale}")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(np.isfinite(self.fatigue_init), f"fatigue_init must be a finite number, got {self.fatigue_init}")
        need(self.huber_delta > 0 and self.max_grad_norm > 0, "huber_delta and max_grad_norm must be > 0")
        need(
            self.buffer_size >= self.n_envs * max(self.n_step, 2),
            f"buffer_size ({self.buffer_size}) must hold at least n_envs * max(n_step, 2) = "
            f"{self.n_envs * max(self.n_step, 2)} transitions; raise buffer_size or lower n_envs",
        )
        need(self.network in ("qnet", "naive"), f"network must be 'qnet' or 'naive', got {self.network!r}")
        need(self.device in ("auto", "cpu", "cuda"), f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        need(
            all(isinstance(v, bool) for v in (self.double_dqn, self.autocast, self.linear_items, self.fatigue_term)),
            "double_dqn, autocast, linear_items and fatigue_term must be True or False",
        )

    def epsilon(self, step: int) -> float:
        """Linear epsilon schedule at environment step ``step``."""
        frac = min(1.0, step / (self.exploration_fraction * self.total_steps))
        return self.epsilon_start + frac * (self.epsilon_end - self.epsilon_start)


# ---------------------------------------------------------------- the rules, one line each


def masked(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Q with unavailable items pushed to -1e9, so no max or argmax can pick them (notebook 06)."""
    return q.masked_fill(~mask, NEG)


def select_actions(
    q: torch.Tensor, mask: torch.Tensor, epsilon: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Epsilon-greedy over *available* items only: exploration and the greedy choice are both masked (notebook 06)."""
    greedy = masked(q, mask).argmax(1)
    if epsilon <= 0:
        return greedy
    explore = (torch.rand(mask.shape[0], generator=generator, device=mask.device) < epsilon).nonzero().squeeze(1)
    # a uniformly random available item for the exploring users only (noise over the rest would be wasted)
    noise = torch.rand(explore.shape[0], mask.shape[1], generator=generator, device=mask.device)
    return greedy.index_copy(0, explore, noise.masked_fill_(~mask[explore], -1.0).argmax(1))


def td_target(reward, discount, terminated, next_q_target, next_mask, next_q_online=None) -> torch.Tensor:
    """``r + discount * (1 - terminated) * Q_target(s', a*)``, ``a*`` the best *available* next item (notebook 06).

    ``next_q_online`` given = Double DQN (the online net picks ``a*``, the target net values it).
    A user with no item left has nothing to bootstrap from.
    """
    chooser = next_q_target if next_q_online is None else next_q_online
    best = masked(chooser, next_mask).argmax(1, keepdim=True)
    value = next_q_target.gather(1, best).squeeze(1) * next_mask.any(1)
    return reward + discount * (~terminated).float() * value


def dqn_targets(agent: DQN, batch: dict) -> torch.Tensor:
    """The TD targets of a sampled batch: next states through the target network, masked (notebook 06)."""
    next_obs = ReplayBuffer.next_obs(batch)
    with torch.no_grad(), agent.autocast():
        next_q_target = agent.target(next_obs).float()
        next_q_online = agent.online(next_obs).float() if agent.config.double_dqn else None
    return td_target(
        batch["reward"], batch["discount"], batch["terminated"], next_q_target, batch["next_mask"], next_q_online
    )


# ---------------------------------------------------------------- the agent


class DQN:
    """A DQN agent collecting from a batch of simulated users seen by the platform (notebook 06).

    ``env`` (a ``recnb.platform.PlatformEnv``) needs ``reset(n_users, seed)``, ``step(actions)``,
    ``reset_where(mask)``; ``observe(env)`` returns ``{"user", "history", "user_id", "mask"}`` tensors
    (and optionally ``immediate``); ``item_feats`` [N, F] describe items (default: ``env.item_features()``).
    ``targets`` computes TD targets (tests swap in broken ones to show each rule matters).
    """

    def __init__(
        self,
        env,
        config: DQNConfig | None = None,
        observe: Callable = observe_platform,
        item_feats: torch.Tensor | None = None,
        targets: Callable = dqn_targets,
    ):
        self.config = cfg = config if config is not None else DQNConfig()
        if not isinstance(cfg, DQNConfig):
            raise TypeError(f"config must be a DQNConfig, got {type(cfg).__name__}")
        from .. import config as recnb_config

        self.device = torch.device(recnb_config.device(None if cfg.device == "auto" else cfg.device))
        self.env, self.observe, self.targets = env, observe, targets
        if str(getattr(env, "device", self.device)) != str(self.device):
            raise ValueError(
                f"the simulator is on {env.device} but DQNConfig.device resolves to {self.device}; "
                "build the simulator with device=... matching, or set DQNConfig(device=...)"
            )
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        env.reset(cfg.n_envs, seed=cfg.seed)
        obs = observe(env)
        feats = (env.item_features() if item_feats is None else item_feats).to(self.device)
        self.online = self._network(feats, obs["user"].shape[1]).to(self.device)
        self.target = self._network(feats, obs["user"].shape[1]).to(self.device)
        self.target.load_state_dict(self.online.state_dict())
        self.target.requires_grad_(False)
        items = list(self.online.item_tower.parameters()) if hasattr(self.online, "item_tower") else []
        others = [p for p in self.online.parameters() if all(p is not q for q in items)]
        groups = [{"params": others}] + (
            [{"params": items, "lr": cfg.learning_rate * cfg.item_lr_scale}] if items else []
        )
        self.optimizer = torch.optim.Adam(groups, lr=cfg.learning_rate)
        self.buffer = ReplayBuffer(
            cfg.buffer_size,
            cfg.n_envs,
            obs["user"].shape[1],
            obs["history"].shape[1],
            feats.shape[0],
            self.device,
            with_immediate="immediate" in obs,
        )
        self.env_steps, self.updates = 0, 0
        self.log: dict[str, list] = {
            k: [] for k in ("step", "loss", "mean_q", "epsilon", "return", "length", "click_rate", "seconds")
        }

    def _network(self, feats: torch.Tensor, user_dim: int):
        cfg = self.config
        if cfg.network == "naive":
            return NaiveQNetwork(int(getattr(self.env, "n_calibration_users")), feats.shape[0], cfg.embed_dim)
        share = cols = None
        if cfg.fatigue_term:
            if not hasattr(self.env, "exposure_columns") or user_dim != self.env.user_feature_dim():
                raise ValueError(
                    "DQNConfig(fatigue_term=True) needs a recnb.platform.PlatformEnv observed through "
                    "observe_platform (it reads the genre clicks from the user features); "
                    "set DQNConfig(fatigue_term=False) for another environment or observation"
                )
            share, cols = genre_shares(self.env).to(feats.device), self.env.exposure_columns()
        return QNetwork(feats, user_dim, cfg.embed_dim, cfg.hidden, cfg.linear_items, share, cols, cfg.fatigue_init)

    def autocast(self):
        """bfloat16 autocast on CUDA when enabled; a no-op context on CPU."""
        enabled = self.config.autocast and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    @torch.no_grad()
    def q_values(self, obs: dict) -> torch.Tensor:
        """Masked Q-values [B, N] of the online network (float32)."""
        with self.autocast():
            return masked(self.online(obs).float(), obs["mask"])

    def policy(self, name: str = "dqn"):
        """A greedy ``policy(sim) -> items`` for ``recnb.policies.evaluate_policy`` (notebook 06)."""
        agent = self

        class Greedy:
            def __call__(self, sim):
                return agent.q_values(agent.observe(sim)).argmax(1)

        Greedy.name = name
        return Greedy()

    def update(self) -> tuple[float, float]:
        """One gradient step on a sampled batch; returns (loss, mean Q of the taken items).

        Raises :class:`recnb._checks.TrainingDiverged` (a ``FloatingPointError``) when the loss is NaN or infinite,
        and every ``CHECK_WEIGHTS_EVERY`` updates when a weight is: a diverged run stops instead of training on.
        """
        cfg = self.config
        batch = self.buffer.sample(cfg.batch_size, cfg.n_step, cfg.gamma, self.generator)
        target = self.targets(self, batch)
        with self.autocast():
            q = self.online(ReplayBuffer.obs(batch), batch["action"]).float()
        loss = F.huber_loss(q, target, delta=cfg.huber_delta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.online.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        if self.updates % cfg.target_update_every == 0:
            with torch.no_grad():  # tau = 1: hard copy; tau < 1: Polyak averaging
                for t, o in zip(self.target.parameters(), self.online.parameters()):
                    t.lerp_(o, cfg.tau)
        # the float is read anyway (loss curve), so this check adds no device sync
        value = finite_or_raise(loss, where="DQN training", step=self._at(), fix=self._fix())
        if self.updates % CHECK_WEIGHTS_EVERY == 0:
            self.check_weights()
        return value, float(q.detach().mean())

    def _at(self) -> str:
        return f"update {self.updates} (env step {self.env_steps})"

    def _fix(self) -> str:
        default = DQNConfig.__dataclass_fields__["learning_rate"].default
        return (
            f"lower DQNConfig.learning_rate (now {self.config.learning_rate:g}; the default is {default:g}), "
            "or check the rewards and observations for NaN or infinite values"
        )

    def check_weights(self) -> None:
        """Raise :class:`recnb._checks.TrainingDiverged` when a weight of the online or target network is NaN or infinite."""
        for name, net in (("online", self.online), ("target", self.target)):
            check_finite_parameters(net, where=f"DQN training ({name} network)", step=self._at(), fix=self._fix())

    def train(self, total_steps: int | None = None, progress: bool = True) -> dict:
        """Collect from ``n_envs`` users at a time and learn until ``total_steps`` env steps (notebook 06).

        ``total_steps`` (default ``config.total_steps``) counts from the agent's first step, so a resumed agent
        continues to it. ``learning_starts > total_steps`` is refused (no gradient step would ever be taken), and a
        loss or weight that turns NaN or infinite stops training with ``recnb._checks.TrainingDiverged``.
        """
        cfg, env = self.config, self.env
        goal = cfg.total_steps if total_steps is None else int(total_steps)
        if self.env_steps < goal and cfg.learning_starts > goal:
            raise ValueError(
                f"DQNConfig.learning_starts ({cfg.learning_starts}) > total_steps ({goal}): the agent would "
                f"collect {goal} environment steps and never take a gradient step; lower learning_starts "
                f"(e.g. learning_starts={max(goal // 10, 0)}) or raise total_steps"
            )
        ret = torch.zeros(cfg.n_envs, device=self.device)
        clicks = torch.zeros(cfg.n_envs, device=self.device)
        length = torch.zeros(cfg.n_envs, device=self.device)
        done_r, done_l, done_c, losses, qs = [], [], [], [], []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=goal, initial=min(self.env_steps, goal), desc="DQN env steps", unit="step", leave=False)
        start, it = time.perf_counter(), 0
        obs = self.observe(env)
        while self.env_steps < goal:
            eps = cfg.epsilon(self.env_steps)
            action = select_actions(self.q_values(obs), obs["mask"], eps, self.generator)
            _, reward, terminated, truncated, info = env.step(action)
            next_obs = self.observe(env)
            self.buffer.add(obs, action, reward, terminated, truncated, next_obs)
            ended = terminated | truncated
            ret += reward
            clicks += info["clicked"].float() if "clicked" in info else 0.0
            length += 1
            if bool(ended.any()):
                done_r.append(ret[ended]), done_l.append(length[ended]), done_c.append(clicks[ended] / length[ended])
                ret[ended], length[ended], clicks[ended] = 0.0, 0.0, 0.0
                env.reset_where(ended)
                next_obs = self.observe(env)
            obs = next_obs
            self.env_steps += cfg.n_envs
            if self.env_steps >= cfg.learning_starts and self.buffer.size >= cfg.n_step:
                for _ in range(cfg.updates_per_collect):
                    loss, q = self.update()
                    losses.append(loss), qs.append(q)
            it += 1
            if bar is not None:
                bar.update(cfg.n_envs)
            if it % cfg.log_every == 0 and done_r:
                self._log(eps, done_r, done_l, done_c, losses, qs, time.perf_counter() - start)
                done_r, done_l, done_c, losses, qs = [], [], [], [], []
        if bar is not None:
            bar.close()
        if self.updates:
            self.check_weights()
        return self.log

    def _log(self, eps, done_r, done_l, done_c, losses, qs, seconds):
        self.log["step"].append(self.env_steps)
        self.log["epsilon"].append(eps)
        self.log["return"].append(float(torch.cat(done_r).mean()))
        self.log["length"].append(float(torch.cat(done_l).mean()))
        self.log["click_rate"].append(float(torch.cat(done_c).mean()))
        self.log["loss"].append(float(np.mean(losses)) if losses else float("nan"))
        self.log["mean_q"].append(float(np.mean(qs)) if qs else float("nan"))
        self.log["seconds"].append(seconds)

    # ------------------------------------------------------------ checkpoints
    def save(self, path) -> Path:
        """Write networks, optimizer state, counters and config to one safetensors file, atomically (notebook 06).

        The replay buffer is not saved: a resumed run refills it while it keeps learning.
        """
        from safetensors.torch import save_file

        from ..download import atomic_path

        tensors = {f"online.{k}": v for k, v in self.online.state_dict().items()}
        tensors.update({f"target.{k}": v for k, v in self.target.state_dict().items()})
        opt = self.optimizer.state_dict()
        for idx, state in opt["state"].items():
            for key, value in state.items():
                tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value)
        meta = {
            "config": json.dumps(asdict(self.config)),
            "env_steps": str(self.env_steps),
            "updates": str(self.updates),
            "param_groups": json.dumps(opt["param_groups"]),
            "format": "recnb-dqn-1",
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(
        cls, path, env, observe: Callable = observe_platform, item_feats: torch.Tensor | None = None, **overrides
    ) -> DQN:
        """Rebuild an agent from :meth:`save`'s file; ``overrides`` change config fields (e.g. ``total_steps``)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no DQN checkpoint at {path}; train and call agent.save(path) first")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "recnb-dqn-1":
                raise ValueError(f"{path} is not a recnb DQN checkpoint (format {meta.get('format')!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        saved = json.loads(meta["config"])
        unknown = set(overrides) - {f.name for f in fields(DQNConfig)}
        if unknown:
            raise TypeError(f"unknown DQNConfig fields {sorted(unknown)}")
        agent = cls(env, DQNConfig(**{**saved, **overrides}), observe=observe, item_feats=item_feats)
        dev = agent.device
        agent.online.load_state_dict({k[7:]: v.to(dev) for k, v in tensors.items() if k.startswith("online.")})
        agent.target.load_state_dict({k[7:]: v.to(dev) for k, v in tensors.items() if k.startswith("target.")})
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value if name == "step" else value.to(dev)
        groups = json.loads(meta["param_groups"])
        for group, fresh in zip(groups, agent.optimizer.param_groups):
            group["lr"] = fresh["lr"]
        agent.optimizer.load_state_dict({"state": state, "param_groups": groups})
        agent.env_steps, agent.updates = int(meta["env_steps"]), int(meta["updates"])
        return agent


@torch.no_grad()
def q_vs_return(agent: DQN, sim, n_users: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predicted Q of the first greedy choice vs the Monte-Carlo discounted return that followed (notebook 06).

    Return values beyond the episode's end count 0; a truncated episode is cut at the horizon, so
    its Monte-Carlo return slightly undercounts what Q bootstraps (rare when users leave first).
    """
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    gamma = agent.config.gamma
    sim.reset(n_users, seed=seed)
    q = agent.q_values(agent.observe(sim))
    first = q.max(1).values
    ret = torch.zeros(n_users, device=sim.device)
    discount = 1.0
    while bool(sim.active.any()):
        _, reward, _, _, _ = sim.step(agent.q_values(agent.observe(sim)).argmax(1))
        ret += discount * reward
        discount *= gamma
    return first.cpu().numpy(), ret.cpu().numpy()
