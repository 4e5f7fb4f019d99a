"""Hyperparameter search with Optuna: BPR on validation NDCG@10, pruning, several processes (notebook 02).

One study is a search: a *sampler* proposes hyperparameters (grid, random or TPE), the *objective* trains a
model with them and returns its validation score, and a *pruner* stops trials whose per-epoch validation
score trails the others. The study lives in a *storage* that several worker processes share, each calling
``study.optimize`` on it; the storage hands out trial numbers and keeps every result, so no scheduler of our
own is needed::

    from recnb import tuning
    objective = tuning.BPRObjective(split.train, split.valid, n_users, n_items)   # Track A: train / valid
    studies = tuning.compare_samplers(objective, "runs/02/optuna.log", seeds=(0, 1, 2), n_trials=20)
    tuning.best_so_far(studies["tpe", 0])        # best validation NDCG@10 after 1, 2, ... trials

Only the validation part ever reaches the objective: the test part is scored once, on the chosen
configuration, by the notebook. ``storage`` is a path (a journal file, safe for several processes on one
machine) or a database URL: ``sqlite:///...`` on one machine, ``postgresql://...`` for workers on many
machines -- the code is the same either way.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from .baselines import BPR, BPRConfig
from .tracking import Logger

__all__ = [
    "METHODS",
    "BPRSearchSpace",
    "BPRObjective",
    "PruningLogger",
    "make_sampler",
    "make_pruner",
    "open_storage",
    "study_name",
    "run_study",
    "compare_samplers",
    "trials_frame",
    "best_so_far",
    "best_after",
]

METHODS = ("grid", "random", "tpe")


# ---------------------------------------------------------------- what is searched


def _check_range(name: str, bounds) -> tuple:
    try:
        low, high = bounds
    except (TypeError, ValueError):
        raise ValueError(f"BPRSearchSpace.{name} must be a (low, high) pair, got {bounds!r}") from None
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))) or not 0 < low < high:
        raise ValueError(f"BPRSearchSpace.{name} must satisfy 0 < low < high (searched on a log scale), got {bounds!r}")
    return low, high


@dataclass(frozen=True)
class BPRSearchSpace:
    """Log-uniform ranges for BPR's factor dimension, Adam learning rate and L2 strength (notebook 02).

    ``grid_points`` values per axis, evenly spaced on the log scale and endpoints included, make the grid
    that :func:`make_sampler` gives ``"grid"``: ``grid_points ** 3`` configurations.
    """

    dim: tuple[int, int] = (8, 128)
    lr: tuple[float, float] = (1e-3, 1e-1)
    reg: tuple[float, float] = (1e-5, 1e-1)
    grid_points: int = 3

    def __post_init__(self):
        for name in ("dim", "lr", "reg"):
            _check_range(name, getattr(self, name))
        if not all(isinstance(v, int) for v in self.dim):
            raise ValueError(f"BPRSearchSpace.dim must be a pair of integers, got {self.dim!r}")
        if isinstance(self.grid_points, bool) or not isinstance(self.grid_points, int) or self.grid_points < 2:
            raise ValueError(f"BPRSearchSpace.grid_points must be an integer >= 2, got {self.grid_points!r}")

    def suggest(self, trial) -> dict:
        """Ask ``trial`` for one configuration: ``{"dim": int, "lr": float, "reg": float}``."""
        return {
            "dim": trial.suggest_int("dim", *self.dim, log=True),
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "reg": trial.suggest_float("reg", *self.reg, log=True),
        }

    def grid(self) -> dict[str, list]:
        """The grid search's values per parameter (log-spaced, endpoints included; dims rounded to integers)."""
        n = self.grid_points
        dims = sorted({int(round(v)) for v in np.geomspace(*self.dim, n)})
        return {
            "dim": dims,
            "lr": [float(v) for v in np.geomspace(*self.lr, n)],
            "reg": [float(v) for v in np.geomspace(*self.reg, n)],
        }


# ---------------------------------------------------------------- pruning and the objective


class PruningLogger(Logger):
    """A training-loop logger that reports the validation metric to an Optuna trial and prunes it (notebook 02).

    Pass it as ``BPR(...).fit(train, valid, logger=PruningLogger(trial))``: every epoch's ``valid/NDCG@10`` goes
    to ``trial.report``; when the study's pruner says the trial trails the others (``trial.should_prune()``),
    :meth:`log` raises ``optuna.TrialPruned``, which ends the training loop and marks the trial pruned.
    """

    def __init__(self, trial, metric: str = "valid/NDCG@10"):
        if not callable(getattr(trial, "report", None)) or not callable(getattr(trial, "should_prune", None)):
            raise TypeError(f"PruningLogger needs an optuna trial (with report and should_prune), got {trial!r}")
        self.trial, self.metric = trial, metric
        self.reported = 0

    def log(self, step: int, **scalars: float) -> None:
        if self.metric not in scalars:  # an epoch without validation: nothing to judge the trial on
            return
        value = float(scalars[self.metric])
        self.trial.report(value, int(step))
        self.reported += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {step}: {self.metric} = {value:.4f} trails the other trials")

    def log_hparams(self, hparams: dict, metrics: dict) -> None:
        """Nothing to do: Optuna keeps the trial's parameters and value itself."""


def _default_trial_config() -> BPRConfig:
    # few epochs: the search compares configurations on a short budget, pruning cuts the weak ones sooner
    return BPRConfig(max_epochs=4, progress=False)


@dataclass
class BPRObjective:
    """Optuna objective: train BPR with the trial's dim, lr and reg; return its best validation NDCG@10 (notebook 02).

    ``train`` and ``valid`` are Track A's training and validation parts (never the test part). ``base`` holds
    everything the search does not choose (epochs, batch size, patience, training seed); the metric is
    ``base.metric``. Each trial records in ``trial.user_attrs`` the worker's process id (``"pid"``), the epochs it
    trained (``"epochs"``) and the CPU seconds they took (``"cpu_seconds"``). Picklable, so worker processes can
    run it.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    n_users: int
    n_items: int
    space: BPRSearchSpace = field(default_factory=BPRSearchSpace)
    base: BPRConfig = field(default_factory=_default_trial_config)

    def __post_init__(self):
        if not isinstance(self.space, BPRSearchSpace):
            raise TypeError(f"space must be a BPRSearchSpace, got {type(self.space).__name__}")
        if not isinstance(self.base, BPRConfig):
            raise TypeError(f"base must be a BPRConfig, got {type(self.base).__name__}")
        for name in ("train", "valid"):
            frame = getattr(self, name)
            if not isinstance(frame, pd.DataFrame) or not {"user", "item"} <= set(frame.columns):
                raise ValueError(f"{name} must be a frame with 'user' and 'item' columns (e.g. split.{name})")
            if frame.empty:
                raise ValueError(
                    f"the {name} part is empty: the search scores validation {self.base.metric}, so it needs "
                    "Track A's training and validation parts (split.train, split.valid)"
                )

    @property
    def metric(self) -> str:
        """The validation tag the training loop logs and the pruner watches, e.g. ``valid/NDCG@10``."""
        return f"valid/{self.base.metric}"

    def config(self, params: dict) -> BPRConfig:
        """The full BPR configuration of a trial's ``params`` (e.g. ``study.best_params``)."""
        return replace(self.base, **params)

    def __call__(self, trial) -> float:
        trial.set_user_attr("pid", os.getpid())
        model = BPR(self.n_users, self.n_items, self.config(self.space.suggest(trial)))
        cpu = time.process_time()
        try:
            model.fit(self.train, self.valid, logger=PruningLogger(trial, self.metric))
        finally:  # a pruned trial too: how long it trained is what pruning saves
            trial.set_user_attr("epochs", len(model.history))
            trial.set_user_attr("cpu_seconds", time.process_time() - cpu)
        scores = [row[f"valid_{self.base.metric}"] for row in model.history if f"valid_{self.base.metric}" in row]
        if not scores:
            raise RuntimeError(f"BPR logged no {self.metric}: set base.eval_every <= base.max_epochs")
        return max(scores)  # the early-stopped model keeps exactly this epoch's weights


# ---------------------------------------------------------------- samplers, pruner, storage


def make_sampler(method: str, space: BPRSearchSpace, seed: int = 0) -> optuna.samplers.BaseSampler:
    """``"grid"`` (the space's log grid, visited in a seeded random order), ``"random"`` or ``"tpe"`` (notebook 02).

    TPE starts from 5 random trials (Optuna's default is 10, half of a 20-trial budget) and uses the
    *constant liar*: trials still running count as bad, so parallel workers do not propose the same point.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if method == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # Optuna 4 still marks constant_liar "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, constant_liar=True)


def make_pruner(startup_trials: int = 4, warmup_epochs: int = 1) -> optuna.pruners.BasePruner:
    """The median rule: from epoch ``warmup_epochs`` on, stop a trial whose validation score at an epoch is below
    the median of the earlier trials' scores at that epoch; nothing is pruned before ``startup_trials`` trials have
    completed (notebook 02)."""
    for name, value in (("startup_trials", startup_trials), ("warmup_epochs", warmup_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)


def open_storage(where) -> optuna.storages.BaseStorage:
    """A storage several processes can share: a database URL (``sqlite:///x.db``, ``postgresql://...``) or a path
    to a journal file (Optuna's ``JournalFileBackend``: file-locked appends, for processes on one machine)."""
    if isinstance(where, str) and "://" in where:
        return optuna.storages.RDBStorage(where)
    if not isinstance(where, (str, os.PathLike)) or not str(where).strip():
        raise ValueError(f"storage must be a database URL or a journal file path, got {where!r}")
    path = Path(where)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the journal file's folder {path.parent} does not exist; create it first")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path)))


def _check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _shares(n_trials: int, n_workers: int) -> list[int]:
    """Split ``n_trials`` over the workers as evenly as possible (a worker may get 0 when trials are fewer)."""
    base, extra = divmod(n_trials, n_workers)
    return [base + (w < extra) for w in range(n_workers)]


def _worker_seed(method: str, seed: int, worker: int) -> int:
    # grid: every worker walks the same shuffled grid (trial k takes grid point k), so they share the seed;
    # random/TPE: workers with the same seed would propose the same points, so each gets its own stream
    return seed if method == "grid" else seed * 1000 + worker


def _work(storage, plan, objective, pruner, worker: int) -> int:
    """One worker process: for each ``(study name, method, seed, n_trials)`` of ``plan``, load that study from the
    shared storage and run its ``n_trials`` there (``study.optimize``); returns the process id."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line a trial from every worker is noise
    store = open_storage(storage)
    for name, method, seed, n_trials in plan:
        sampler = make_sampler(method, objective.space, _worker_seed(method, seed, worker))
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler, pruner=pruner)
        study.optimize(objective, n_trials=n_trials)
    return os.getpid()


def _executor(n_workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: a forked child of a process that already ran torch's thread pools can deadlock.
    # One task per process: each worker's plan runs in a process of its own, never two plans in one.
    return ProcessPoolExecutor(
        max_workers=n_workers, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
    )


# ---------------------------------------------------------------- running studies


def study_name(method: str, seed: int) -> str:
    """The study name :func:`compare_samplers` uses for one method and search seed, e.g. ``bpr-tpe-seed0``."""
    return f"bpr-{method}-seed{seed}"


def run_study(
    objective: BPRObjective,
    storage,
    name: str,
    *,
    method: str = "tpe",
    seed: int = 0,
    n_trials: int = 20,
    n_workers: int = 2,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create (or load) study ``name`` in ``storage`` and run ``n_trials`` over ``n_workers`` processes (notebook 02).

    Each worker process loads the same study and calls ``study.optimize`` for its share of the trials; the
    storage coordinates them. Point ``storage`` at a shared PostgreSQL URL and start this on many machines
    (``load_if_exists``) to scale out. Returns the study, read back from the storage.
    """
    return compare_samplers(
        objective,
        storage,
        methods=(method,),
        seeds=(seed,),
        n_trials=n_trials,
        n_workers=n_workers,
        pruner=pruner,
        names={(method, seed): name},
    )[method, seed]


def compare_samplers(
    objective: BPRObjective,
    storage,
    methods: Iterable[str] = METHODS,
    seeds: Iterable[int] = (0, 1, 2),
    *,
    n_trials: int = 20,
    n_workers: int = 2,
    pruner: optuna.pruners.BasePruner | None = None,
    names: dict | None = None,
) -> dict[tuple[str, int], optuna.Study]:
    """One study per (method, search seed), all at the same trial budget ``n_trials``, run by ``n_workers``
    processes (notebook 02). Returns ``{(method, seed): study}``.

    Each worker process calls ``study.optimize`` for its share of every study's trials, one study after the
    other in the same order, so the workers meet on each study and the storage coordinates them.

    Every study gets the same pruner (default :func:`make_pruner`) and the same objective, so the samplers
    differ only in where they look. Studies that already exist in ``storage`` are continued, not restarted.
    """
    if not isinstance(objective, BPRObjective):
        raise TypeError(f"objective must be a BPRObjective, got {type(objective).__name__}")
    methods, seeds = list(methods), list(seeds)
    if not methods or not seeds:
        raise ValueError("give at least one method and one search seed")
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for seed in seeds:
        _check_count("each search seed", seed, minimum=0)
    n_trials = _check_count("n_trials", n_trials)
    n_workers = _check_count("n_workers", n_workers)
    pruner = make_pruner() if pruner is None else pruner
    names = names or {}
    store = open_storage(storage)  # fails here, with a clear message, not inside a worker
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {}
    for method in methods:
        for seed in seeds:
            name = names.get((method, seed), study_name(method, seed))
            optuna.create_study(storage=store, study_name=name, direction="maximize", load_if_exists=True)
            studies[method, seed] = name
    shares = _shares(n_trials, n_workers)
    # worker w runs its share of every study, in the same order as the others: the workers meet on each study
    plans = [
        [(name, method, seed, shares[w]) for (method, seed), name in studies.items() if shares[w]]
        for w in range(n_workers)
    ]
    with _executor(n_workers) as pool:
        jobs = [pool.submit(_work, storage, plan, objective, pruner, w) for w, plan in enumerate(plans) if plan]
        for job in jobs:
            job.result()  # re-raises a worker's exception here
    return {key: optuna.load_study(study_name=name, storage=store) for key, name in studies.items()}


# ---------------------------------------------------------------- reading the results


def trials_frame(studies: dict) -> pd.DataFrame:
    """Every trial of ``{(method, seed): study}`` as one frame (notebook 02): method, seed, number, state, value
    (NaN unless the trial completed), epochs trained, wall and CPU seconds, the worker's pid, and the parameters."""
    rows = []
    for (method, seed), study in studies.items():
        for t in study.get_trials(deepcopy=False):
            complete = t.state == optuna.trial.TrialState.COMPLETE
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "number": t.number,
                    "state": t.state.name,
                    "value": t.value if complete else math.nan,
                    "epochs": t.user_attrs.get("epochs"),
                    "seconds": t.duration.total_seconds() if t.duration is not None else math.nan,
                    "cpu_seconds": t.user_attrs.get("cpu_seconds", math.nan),
                    "pid": t.user_attrs.get("pid"),
                    **t.params,
                }
            )
    return pd.DataFrame(rows)


def best_so_far(study: optuna.Study, n_trials: int | None = None) -> np.ndarray:
    """Best completed value after the first 1, 2, ..., ``n_trials`` trials in trial-number order (notebook 02).

    Pruned and failed trials use up budget without a value; NaN until the first trial completes.
    """
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    n = len(trials) if n_trials is None else _check_count("n_trials", n_trials)
    if n > len(trials):
        raise ValueError(f"the study has {len(trials)} trials, fewer than n_trials={n}")
    values = [t.value if t.state == optuna.trial.TrialState.COMPLETE else -math.inf for t in trials[:n]]
    best = np.maximum.accumulate(np.asarray(values, dtype=float))
    best[np.isneginf(best)] = math.nan
    return best


def best_after(studies: dict, checkpoints: Iterable[int]) -> pd.DataFrame:
    """Per method and checkpoint, the best value after that many trials: mean and standard deviation over the
    search seeds, with the seed count (notebook 02)."""
    checkpoints = [_check_count("each checkpoint", c) for c in checkpoints]
    rows = []
    for (method, seed), study in studies.items():
        curve = best_so_far(study, max(checkpoints))
        rows += [{"method": method, "seed": seed, "trials": c, "best": curve[c - 1]} for c in checkpoints]
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["method", "trials"], sort=False)["best"].agg(["mean", "std", "count"])
    return summary.rename(columns={"count": "seeds"}).reset_index()
