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

Options (docs/training.md): validation-based model selection (``DQNConfig.eval_every``), TensorBoard curves
(``train(logger=...)``), mixed precision (``DQNConfig.precision``), checkpoints (``save``, ``load_or_train``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import checkpoints as ckpts
from .._checks import check_finite_parameters, check_int, check_numbers, check_range, check_seed, finite_or_raise, need
from ..config import device as resolve_device
from ..policies import NEG, evaluate_policy  # NEG: Q of an unavailable item, never chosen nor bootstrapped from
from ..precision import MixedPrecision, check_precision
from ..tracking import hparams_of, log_rollout
from .networks import NaiveQNetwork, QNetwork
from .observe import genre_shares, observe_platform
from .replay import ReplayBuffer

CHECK_WEIGHTS_EVERY = 500  # gradient updates between checks that the networks' weights are finite (one sync on CUDA)
NETWORKS, DEVICES = ("qnet", "naive"), ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of :class:`DQN` (notebook 06); frozen, validated on creation. ``learning_starts >
    total_steps`` is refused by :meth:`DQN.train`, which knows the budget actually trained to (its ``total_steps``
    argument, or a resumed agent's ``DQN.load(..., total_steps=...)``)."""

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
    precision: str = "fp32"
    """``"fp32"``, ``"bf16"`` (autocast, CPU or CUDA) or ``"fp16"`` (autocast + gradient scaling, CUDA only)."""
    log_every: int = 10
    """Collection steps between logged points of the training curves."""
    eval_every: int = 0
    """Gradient updates between evaluations on validation users (0: never); needs ``train(valid_env=...)``.
    The best evaluated weights are kept, and reloaded when training ends (early stopping's model selection)."""
    eval_users: int = 500
    """Simulated validation users per evaluation: the same users and draws every time (``eval_seed``)."""
    eval_seed: int = 1
    """Seed of the validation users' draws (common random numbers across evaluations)."""

    def __post_init__(self):
        name = "DQNConfig"
        positive = ("learning_rate", "item_lr_scale", "huber_delta", "max_grad_norm")
        check_numbers(name, self, positive=positive, finite=("fatigue_init",))
        counts = ("total_steps", "n_envs", "buffer_size", "batch_size", "n_step", "target_update_every")
        for field in (*counts, "updates_per_collect", "embed_dim", "hidden", "log_every"):
            check_int(f"{name}.{field}", getattr(self, field), minimum=1)
        for field, minimum in (("learning_starts", 0), ("eval_every", 0), ("eval_users", 2)):
            check_int(f"{name}.{field}", getattr(self, field), minimum=minimum)
        for field in ("seed", "eval_seed"):
            check_seed(f"{name}.{field}", getattr(self, field))
        unit = (("gamma", "left"), ("epsilon_start", "both"), ("epsilon_end", "both"), ("tau", "right"))
        for field, closed in (*unit, ("exploration_fraction", "right")):  # in [0, 1]; tau = 1 is a hard update
            check_range(f"{name}.{field}", getattr(self, field), 0, 1, closed=closed)
        need(
            self.buffer_size >= self.n_envs * max(self.n_step, 2),
            f"{name}.buffer_size ({self.buffer_size}) must hold at least n_envs * max(n_step, 2) = "
            f"{self.n_envs * max(self.n_step, 2)} transitions; raise buffer_size or lower n_envs",
        )
        need(self.network in NETWORKS, f"{name}.network must be one of {NETWORKS}, got {self.network!r}")
        need(self.device in DEVICES, f"{name}.device must be one of {DEVICES}, got {self.device!r}")
        for field in ("double_dqn", "linear_items", "fatigue_term"):
            need(isinstance(getattr(self, field), bool), f"{name}.{field} must be True or False")
        check_precision(name, self.precision)

    @property
    def autocast(self) -> bool:
        """Whether the networks run under autocast (``precision`` other than ``"fp32"``)."""
        return self.precision != "fp32"

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


class DQN(ckpts.AgentCheckpoints):
    """A DQN agent collecting from a batch of simulated users seen by the platform (notebook 06).

    ``env`` (a ``recnb.platform.PlatformEnv``) needs ``reset(n_users, seed)``, ``step(actions)``,
    ``reset_where(mask)``; ``observe(env)`` returns ``{"user", "history", "user_id", "mask"}`` tensors
    (and optionally ``immediate``); ``item_feats`` [N, F] describe items (default: ``env.item_features()``).
    ``targets`` computes TD targets (tests swap in broken ones to show each rule matters). ``fingerprint``: what
    else the weights depend on (e.g. ``{"data": "Track A split 0"}``), checked by :meth:`load` (docs/training.md).
    """

    config_class = DQNConfig  # what recnb.checkpoints.AgentCheckpoints.load rebuilds

    def __init__(
        self,
        env,
        config: DQNConfig | None = None,
        observe: Callable = observe_platform,
        item_feats: torch.Tensor | None = None,
        targets: Callable = dqn_targets,
        fingerprint: dict | None = None,
    ):
        self.config = cfg = config if config is not None else DQNConfig()
        if not isinstance(cfg, DQNConfig):
            raise TypeError(f"config must be a DQNConfig, got {type(cfg).__name__}")
        self.device = torch.device(resolve_device(None if cfg.device == "auto" else cfg.device))
        self.env, self.observe, self.targets = env, observe, targets
        if str(getattr(env, "device", self.device)) != str(self.device):
            raise ValueError(
                f"the simulator is on {env.device} but DQNConfig.device resolves to {self.device}; "
                "build the simulator with device=... matching, or set DQNConfig(device=...)"
            )
        self.mixed = MixedPrecision(cfg.precision, self.device, "DQNConfig")
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
        item_group = [{"params": items, "lr": cfg.learning_rate * cfg.item_lr_scale}] if items else []
        self.optimizer = torch.optim.Adam([{"params": others}, *item_group], lr=cfg.learning_rate)
        dims = obs["user"].shape[1], obs["history"].shape[1], feats.shape[0]
        self.buffer = ReplayBuffer(cfg.buffer_size, cfg.n_envs, *dims, self.device, with_immediate="immediate" in obs)
        self.item_feats, self.extra_fingerprint = feats, dict(fingerprint or {})
        self.layout = ", ".join(f"{k} {list(v.shape[1:])} {str(v.dtype)[6:]}" for k, v in sorted(obs.items()))
        self.env_steps, self.updates, self.best = 0, 0, None
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
        """The networks' forward context: autocast at ``config.precision`` (a disabled context for fp32)."""
        return self.mixed.autocast()

    @torch.no_grad()
    def q_values(self, obs: dict) -> torch.Tensor:
        """Masked Q-values [B, N] of the online network (float32)."""
        with self.autocast():
            return masked(self.online(obs).float(), obs["mask"])

    def policy(self, name: str = "dqn"):
        """A greedy ``policy(sim) -> items`` for ``recnb.policies.evaluate_policy`` (notebook 06)."""

        def greedy(sim):
            return self.q_values(self.observe(sim)).argmax(1)

        greedy.name = name
        return greedy

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
        # fp32 and bf16: backward, clip, step; fp16: the same with the loss scaled (precision.MixedPrecision)
        self.mixed.step(loss, self.optimizer, self.online.parameters(), cfg.max_grad_norm)
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
        now, default = self.config.learning_rate, DQNConfig.learning_rate
        lower = f"lower DQNConfig.learning_rate (now {now:g}; the default is {default:g})"
        return lower + ", or check the rewards and observations for NaN or infinite values"

    def check_weights(self) -> None:
        """Raise :class:`recnb._checks.TrainingDiverged` when a weight of either network is NaN or infinite."""
        for name, net in (("online", self.online), ("target", self.target)):
            check_finite_parameters(net, where=f"DQN training ({name} network)", step=self._at(), fix=self._fix())

    def train(
        self, total_steps: int | None = None, progress: bool = True, logger=None, valid_env=None, checkpoint=None
    ) -> dict:
        """Collect from ``n_envs`` users at a time and learn until ``total_steps`` env steps (notebook 06).

        ``total_steps`` (default ``config.total_steps``) counts from the agent's first step, so a resumed agent
        continues to it. ``learning_starts > total_steps`` is refused (no gradient step would ever be taken), and a
        loss or weight that turns NaN or infinite stops training with ``recnb._checks.TrainingDiverged``.
        ``config.eval_every`` > 0 scores the greedy policy on ``valid_env`` (validation users, disjoint from training
        and evaluation users) that often and at the end, saves the best to ``checkpoint`` (a path; optional) and
        reloads it when training ends (``self.best``: when, how good). ``logger``: ``recnb.tracking`` curves.
        """
        cfg, env = self.config, self.env
        goal = cfg.total_steps if total_steps is None else int(total_steps)
        if self.env_steps < goal and cfg.learning_starts > goal:
            raise ValueError(
                f"DQNConfig.learning_starts ({cfg.learning_starts}) > total_steps ({goal}): the agent would "
                f"collect {goal} environment steps and never take a gradient step; lower learning_starts "
                f"(e.g. learning_starts={max(goal // 10, 0)}) or raise total_steps"
            )
        both = "validation needs both DQNConfig(eval_every=N > 0) and train(valid_env=<env on validation users>)"
        need(bool(cfg.eval_every) == (valid_env is not None), both)
        select = ckpts.BestOnValidation(self, valid_env, checkpoint, logger) if cfg.eval_every else None
        ret, clicks, length = (torch.zeros(cfg.n_envs, device=self.device) for _ in range(3))
        done_r, done_l, done_c, losses, qs = [], [], [], [], []
        bar = tqdm(
            total=goal, initial=min(self.env_steps, goal), desc="DQN env steps", leave=False, disable=not progress
        )
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
                    if select is not None and self.updates % cfg.eval_every == 0:
                        select()
            it += 1
            bar.update(cfg.n_envs)
            if it % cfg.log_every == 0 and done_r:
                self._log(eps, done_r, done_l, done_c, losses, qs, time.perf_counter() - start, logger)
                done_r, done_l, done_c, losses, qs = [], [], [], [], []
        bar.close()
        if select is not None:
            select.finish()  # the last weights compete too; the best are reloaded
        if self.updates:
            self.check_weights()
        if logger is not None:
            best = {} if self.best is None else {"final/valid_return": self.best["score"]}
            last = self.log["return"][-1:] or [float("nan")]  # NaN (dropped by the logger) when no episode ended
            logger.log_hparams(
                hparams_of(cfg), {"final/updates": self.updates, "final/rollout_return": last[0], **best}
            )
        return self.log

    def validate(self, valid_env) -> float:
        """Mean return of the greedy policy on ``config.eval_users`` validation users, fixed seed (notebook 06)."""
        result = evaluate_policy(valid_env, self.policy(), n_users=self.config.eval_users, seed=self.config.eval_seed)
        return float(result.returns.mean())

    def _log(self, eps, done_r, done_l, done_c, losses, qs, seconds, logger=None):
        row = {
            "step": self.env_steps,
            "epsilon": eps,
            "return": float(torch.cat(done_r).mean()),
            "length": float(torch.cat(done_l).mean()),
            "click_rate": float(torch.cat(done_c).mean()),
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "mean_q": float(np.mean(qs)) if qs else float("nan"),
            "seconds": seconds,
        }
        for key, value in row.items():
            self.log[key].append(value)
        log_rollout(logger, row, self.optimizer.param_groups[0]["lr"])

    def networks(self) -> dict:
        """The modules a checkpoint holds (``recnb.checkpoints.AgentCheckpoints``: save, load, load_or_train)."""
        return {"online": self.online, "target": self.target}


@torch.no_grad()
def q_vs_return(agent: DQN, sim, n_users: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predicted Q of the first greedy choice vs the Monte-Carlo discounted return that followed (notebook 06).

    Return values beyond the episode's end count 0; a truncated episode is cut at the horizon, so
    its Monte-Carlo return slightly undercounts what Q bootstraps (rare when users leave first).
    """
    check_int("n_users", n_users, minimum=1)
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
