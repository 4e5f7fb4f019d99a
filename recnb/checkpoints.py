"""Checkpoints: weights in safetensors, with the config and a fingerprint of what they were trained on (notebook 06).

A checkpoint is one ``.safetensors`` file: tensors only (no pickle, so loading runs no code -- the safety that
``torch.load(weights_only=True)`` aims at) plus JSON metadata:

* ``config`` -- the training config (a dataclass as a dict), to rebuild the model;
* ``fingerprint`` -- what the weights only make sense with: the catalogue, the observation layout, digests of
  the simulator and the platform's models (see :func:`digest`), and anything the caller adds (e.g. the data
  split). :func:`load_checkpoint` compares it with the one expected now and names every entry that differs,
  so an agent trained on one catalogue or simulator is never silently scored on another;
* ``extra`` -- anything else the owner needs (counters, optimiser settings, the best validation score).

Files are written atomically (``recnb.cache.atomic_write``): a reader sees the old checkpoint or the new
one, never half of one. For RL agents: :class:`AgentCheckpoints` gives ``DQN`` its ``fingerprint``, ``save``,
``load`` and ``load_or_train`` (:func:`load_or_build`: load a matching file, else train and save), and
:class:`BestOnValidation` keeps the weights that scored best on validation users (docs/training.md).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import warnings
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path

import numpy as np
import torch

from .cache import atomic_write, lock

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointMismatch",
    "save_checkpoint",
    "load_checkpoint",
    "check_fingerprint",
    "digest",
    "optimizer_tensors",
    "load_optimizer",
    "save_training_state",
    "restore_training_state",
    "KeepBest",
    "BestOnValidation",
    "AgentCheckpoints",
    "check_disjoint_users",
    "load_or_build",
]

FORMAT = "recnb-checkpoint-1"


class CheckpointMismatch(ValueError):
    """A checkpoint was trained on something else than what it is loaded for (its fingerprint differs)."""


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` read: tensors (CPU), config, fingerprint and extra metadata."""

    tensors: dict
    config: dict
    fingerprint: dict
    extra: dict
    path: Path


def _feed(h, value) -> None:
    """Hash ``value`` into ``h``: tensors and arrays by dtype, shape and bytes; containers item by item."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous()
        h.update(f"tensor{value.dtype}{tuple(value.shape)}".encode())
        h.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    elif isinstance(value, np.ndarray):
        h.update(f"array{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif is_dataclass(value) and not isinstance(value, type):
        h.update(type(value).__name__.encode())
        for f in fields(value):
            h.update(f.name.encode())
            _feed(h, getattr(value, f.name))
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            h.update(str(key).encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"seq{len(value)}".encode())
        for item in value:
            _feed(h, item)
    elif value is None or isinstance(value, (str, bool, numbers.Number)):
        h.update(repr(value).encode())
    else:
        raise TypeError(f"cannot fingerprint a {type(value).__name__}; pass tensors, arrays, numbers or strings")


def digest(*values) -> str:
    """A short sha256 (16 hex digits) of ``values``: tensors, arrays, dataclasses, dicts, lists, numbers, strings."""
    h = hashlib.sha256()
    for value in values:
        _feed(h, value)
    return h.hexdigest()[:16]


def _jsonable(config) -> dict:
    if is_dataclass(config) and not isinstance(config, type):
        config = asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dataclass or a dict, got {type(config).__name__}")
    return config


def save_checkpoint(path, tensors, config, fingerprint: dict, extra: dict | None = None) -> Path:
    """Write ``tensors`` (a ``{name: tensor}`` dict or a module's ``state_dict``) with ``config``, ``fingerprint``
    and ``extra`` (JSON-able) to one safetensors file, atomically (notebook 06)."""
    from safetensors.torch import save

    if isinstance(tensors, torch.nn.Module):
        tensors = tensors.state_dict()
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {
        "format": FORMAT,
        "config": json.dumps(_jsonable(config)),
        "fingerprint": json.dumps(dict(fingerprint), sort_keys=True),
        "extra": json.dumps(extra or {}),
    }
    path = Path(path)
    atomic_write(path, save(cpu, metadata=meta))
    return path


def check_fingerprint(saved: dict, expected: dict, where="the checkpoint") -> None:
    """Raise :class:`CheckpointMismatch` naming every entry of ``expected`` that ``saved`` lacks or holds otherwise."""
    differ = [
        f"{key}: trained on {saved.get(key, '(not recorded)')!r}, now {value!r}"
        for key, value in expected.items()
        if saved.get(key) != value
    ]
    if differ:
        raise CheckpointMismatch(
            f"{where} was trained on something else -- " + "; ".join(differ) + ". Load it with the environment "
            "(catalogue, simulator, observation) it was trained on, or train a new one"
        )


def load_checkpoint(path, expected_fingerprint: dict | None = None) -> Checkpoint:
    """Read a :func:`save_checkpoint` file (safetensors: no code runs); with ``expected_fingerprint``, raise
    :class:`CheckpointMismatch` when the saved fingerprint differs from it (notebook 06)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train and save one first (e.g. agent.save(path))")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as exc:
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({exc}); delete it and save again") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a recnb checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    ckpt = Checkpoint(
        tensors, json.loads(meta["config"]), json.loads(meta["fingerprint"]), json.loads(meta["extra"]), path
    )
    if expected_fingerprint is not None:
        check_fingerprint(ckpt.fingerprint, expected_fingerprint, where=str(path))
    return ckpt


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str = "optim.") -> tuple[dict, list]:
    """An optimiser's state as flat tensors ``{prefix<param>.<key>: tensor}`` and its param groups (JSON-able)."""
    state = optimizer.state_dict()
    tensors = {
        f"{prefix}{idx}.{key}": torch.as_tensor(value) for idx, s in state["state"].items() for key, value in s.items()
    }
    return tensors, state["param_groups"]


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, groups: list, prefix: str = "optim.") -> None:
    """Restore :func:`optimizer_tensors` into ``optimizer`` (its current learning rates are kept)."""
    device = next((p.device for g in optimizer.param_groups for p in g["params"]), torch.device("cpu"))
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, name = key[len(prefix) :].split(".", 1)
            state.setdefault(int(idx), {})[name] = value if name == "step" else value.to(device)
    groups = [{**saved, "lr": fresh["lr"]} for saved, fresh in zip(groups, optimizer.param_groups)]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_training_state(path, modules: dict, optimizer, config, fingerprint: dict, extra: dict | None = None) -> Path:
    """:func:`save_checkpoint` of several modules (``{"online": net, ...}``, tensors named ``<name>.<param>``) and
    an optimiser's state, so training can resume where it stopped (notebook 06)."""
    tensors = {f"{name}.{k}": v for name, module in modules.items() for k, v in module.state_dict().items()}
    optim, groups = optimizer_tensors(optimizer)
    return save_checkpoint(path, {**tensors, **optim}, config, fingerprint, {**(extra or {}), "param_groups": groups})


def restore_training_state(ckpt: Checkpoint, modules: dict, optimizer=None) -> None:
    """Load a :func:`save_training_state` checkpoint into ``modules`` (same names) and ``optimizer``."""
    for name, module in modules.items():
        prefix = f"{name}."
        device = next(module.parameters()).device
        module.load_state_dict(
            {k[len(prefix) :]: v.to(device) for k, v in ckpt.tensors.items() if k.startswith(prefix)}
        )
    if optimizer is not None:
        load_optimizer(optimizer, ckpt.tensors, ckpt.extra["param_groups"])


class KeepBest:
    """Keep in memory the weights of ``modules`` at their best validation score; :meth:`restore` puts them back.

    Early stopping's memory (notebook 06): :meth:`offer` a score after each evaluation; higher is better.
    """

    def __init__(self, modules: dict):
        self.modules, self.score, self.info, self._state = modules, float("-inf"), None, None

    def offer(self, score: float, **info) -> bool:
        """Keep the current weights when ``score`` beats every earlier one; True when it did."""
        if not score > self.score:  # NaN never wins
            return False
        self.score, self.info = float(score), {"score": float(score), **info}
        self._state = {n: {k: v.detach().clone() for k, v in m.state_dict().items()} for n, m in self.modules.items()}
        return True

    def restore(self) -> bool:
        """Load the kept weights back into the modules; False when nothing was offered."""
        if self._state is None:
            return False
        for name, module in self.modules.items():
            module.load_state_dict(self._state[name])
        return True


def check_disjoint_users(train_env, valid_env) -> None:
    """Raise ``ValueError`` unless both environments draw from explicit, disjoint user pools (``users=...``)."""
    mine, theirs = getattr(train_env, "pool", None), getattr(valid_env, "pool", None)
    if mine is None or theirs is None or np.intersect1d(np.asarray(mine), np.asarray(theirs)).size:
        raise ValueError(
            "validation users must be disjoint from the training users: build both envs with users=..., e.g. "
            "fit, valid = split_users(len(train_users), 0.8, seed=1) -> train_users[fit], train_users[valid]"
        )


class BestOnValidation:
    """Model selection for an RL agent (notebook 06): score it on validation users every ``config.eval_every``
    updates, keep the best weights (saved to ``checkpoint`` when given), and restore them at the end.

    ``agent`` needs ``validate(env) -> float``, ``networks()``, ``updates``, ``env_steps``, ``save(path)`` and a
    ``best`` attribute (set here to ``{"score", "update", "env_step"}`` of the best evaluation).
    """

    def __init__(self, agent, valid_env, checkpoint=None, logger=None):
        if getattr(valid_env, "sim", valid_env) is getattr(agent.env, "sim", agent.env):
            raise ValueError(  # evaluating would reset the users the agent is collecting from
                "valid_env must have its own simulator: PlatformEnv(sim.with_config(sim.config), platform, users=...)"
            )
        if hasattr(agent.env, "pool"):  # a platform env: its users must not be validation users
            check_disjoint_users(agent.env, valid_env)
        self.agent, self.valid_env, self.checkpoint, self.logger = agent, valid_env, checkpoint, logger
        self.keeper = KeepBest(agent.networks())

    def __call__(self) -> float:
        """Evaluate now; keep (and save) the weights when they are the best so far; log ``valid/return``."""
        agent = self.agent
        value = agent.validate(self.valid_env)
        if self.keeper.offer(value, update=agent.updates, env_step=agent.env_steps):
            agent.best = self.keeper.info
            if self.checkpoint is not None:
                agent.save(self.checkpoint)
        if self.logger is not None:
            self.logger.log(agent.env_steps, **{"valid/return": value})
        return value

    def finish(self) -> None:
        """Evaluate the last weights too, then put the best ones back into the agent's networks."""
        self()
        self.keeper.restore()


class AgentCheckpoints:
    """``fingerprint`` / ``save`` / ``load`` / ``load_or_train`` for an RL agent (a mixin; notebooks 06-10).

    The agent class sets ``config_class`` and has ``config``, ``env``, ``observe``, ``item_feats``, ``layout``
    (its observation's shapes, as text), ``extra_fingerprint``, ``optimizer``, ``networks()`` and the counters
    ``env_steps``, ``updates``, ``best``; its constructor takes ``(env, config, observe=, item_feats=, fingerprint=)``.
    """

    config_class: type

    def fingerprint(self) -> dict:
        """What the weights only make sense with: catalogue size, observation layout, digests of the item features,
        the simulator (config and calibration) and the platform's models, plus the constructor's ``fingerprint``."""
        sim = getattr(self.env, "sim", self.env)
        observe = getattr(self.observe, "__qualname__", type(self.observe).__name__)
        return {
            "catalogue": int(self.item_feats.shape[0]),
            "observation": f"{observe}: {self.layout}",
            "item_features": digest(self.item_feats),
            "simulator": digest(type(sim).__name__, getattr(sim, "config", None), getattr(sim, "calibration", None)),
            "platform": digest(getattr(self.env, "platform", None)),
            **self.extra_fingerprint,
        }

    def save(self, path) -> Path:
        """Networks, optimiser state, counters, config and :meth:`fingerprint` to one safetensors file, atomically.

        The replay buffer is not saved: a resumed run refills it while it keeps learning.
        """
        extra = {"env_steps": self.env_steps, "updates": self.updates, "best": self.best}
        return save_training_state(path, self.networks(), self.optimizer, self.config, self.fingerprint(), extra)

    @classmethod
    def load(cls, path, env, observe=None, item_feats=None, fingerprint=None, **overrides):
        """Rebuild an agent from :meth:`save`'s file on ``env``; ``overrides`` change config fields (e.g.
        ``total_steps``). A different catalogue, observation, simulator or ``fingerprint`` entry is refused with
        :class:`CheckpointMismatch` naming what differs."""
        ckpt = load_checkpoint(path)
        unknown = set(overrides) - {f.name for f in fields(cls.config_class)}
        if unknown:
            raise TypeError(f"unknown {cls.config_class.__name__} fields {sorted(unknown)}")
        config = cls.config_class(**{**ckpt.config, **overrides})
        agent = cls(env, config, **_given(observe=observe, item_feats=item_feats), fingerprint=fingerprint)
        check_fingerprint(ckpt.fingerprint, agent.fingerprint(), where=f"the checkpoint {path}")
        restore_training_state(ckpt, agent.networks(), agent.optimizer)
        agent.env_steps, agent.updates, agent.best = ckpt.extra["env_steps"], ckpt.extra["updates"], ckpt.extra["best"]
        return agent

    @classmethod
    def load_or_train(cls, path, env, config, fingerprint=None, observe=None, item_feats=None, **train):
        """The agent saved at ``path`` when it was trained with ``config`` on this ``env`` (same fingerprint); else
        a new one trained (``train``: the arguments of ``train``) and saved there. Stale files are retrained."""
        given = _given(observe=observe, item_feats=item_feats)

        def load(p):
            agent = cls.load(p, env, fingerprint=fingerprint, **given)
            differ = [f.name for f in fields(config) if getattr(agent.config, f.name) != getattr(config, f.name)]
            if differ:
                raise CheckpointMismatch(f"it was trained with other {type(config).__name__} values for {differ}")
            return agent

        def build():
            agent = cls(env, config, fingerprint=fingerprint, **given)
            agent.train(**train)
            agent.save(path)
            return agent

        return load_or_build(path, load, build, what=f"{cls.__name__} checkpoint")


def _given(**kwargs) -> dict:
    return {k: v for k, v in kwargs.items() if v is not None}


def load_or_build(path, load, build, what: str = "checkpoint"):
    """``load(path)`` when an intact, matching checkpoint is there; else ``build()`` (which saves it) (notebook 10).

    A missing file builds quietly; a stale one (:class:`CheckpointMismatch`: trained on something else, or with
    another config) or a corrupt one is reported with a warning and rebuilt. One process builds at a time
    (a file lock beside ``path``), so notebooks run together share one training run.
    """
    path = Path(path)
    with lock(path):
        try:
            return load(path)
        except FileNotFoundError:
            pass
        except (CheckpointMismatch, ValueError) as exc:
            warnings.warn(f"{what} {path} cannot be used ({exc}); training a new one", stacklevel=3)
        return build()
