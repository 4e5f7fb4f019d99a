"""Experiment tracking: the one logger every training loop writes its curves through (notebooks 02, 06, 08, 09).

Off unless asked: a training loop logs only when given ``logger=...``. A logger is anything with
``log(step, **scalars)`` and ``log_hparams(hparams, metrics)``; :class:`RunLogger` writes TensorBoard event files
(or, optionally, an offline Weights & Biases run)::

    from recnb import tracking
    with tracking.RunLogger(tracking.run_dir("02", "bpr")) as logger:
        BPR(n_users, n_items, BPRConfig()).fit(split.train, split.valid, logger=logger)
    frame = tracking.read_scalars(tracking.run_dir("02", "bpr").parent)   # run, tag, step, value
    tracking.plot_scalars(frame, ["train/loss", "valid/NDCG@10"])

Tag names: ``train/loss``, ``train/lr``, ``train/epsilon``, ``train/mean_q``, ``valid/NDCG@10``,
``rollout/return``, ``rollout/episode_length``; ``log_hparams`` records a run's configuration beside its final
metrics (``final/...``) for TensorBoard's HPARAMS tab. An exception raised inside ``log`` propagates out of the
training loop: that is how an Optuna study prunes a trial (``optuna.TrialPruned`` raised from the hook).
Open the live board with ``tensorboard --logdir runs`` (or ``%tensorboard --logdir runs`` in a notebook);
docs/training.md says more.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path

import pandas as pd

__all__ = [
    "Logger",
    "RunLogger",
    "CallbackLogger",
    "combine",
    "run_dir",
    "read_scalars",
    "plot_scalars",
    "live_frontend",
    "hparams_of",
    "log_epoch",
    "log_final",
    "log_rollout",
]

BACKENDS = ("tensorboard", "wandb")


class Logger:
    """The logging interface of the training loops; the base class does nothing (subclass what you need)."""

    def log(self, step: int, **scalars: float) -> None:
        """Record ``scalars`` (tag -> number) at ``step``."""

    def log_hparams(self, hparams: dict, metrics: dict) -> None:
        """Record a run's configuration and its final metrics."""

    def close(self) -> None:
        """Flush and release what the logger holds."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _scalar(tag: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:  # a 0-d tensor or NumPy scalar
            value = value.item()
        except AttributeError:
            raise TypeError(f"scalar {tag!r} must be a number, got {type(value).__name__}") from None
    return float(value)


def _step(step) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return int(step)


def _hparam(value):
    """A value TensorBoard's HPARAMS plugin accepts (bool, int, float, str); anything else as its text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def hparams_of(config) -> dict:
    """A config dataclass (or dict) as flat TensorBoard-ready hyperparameters: tuples and ``None`` as text."""
    items = asdict(config) if is_dataclass(config) else dict(config)
    return {str(k): _hparam(v) for k, v in items.items()}


def log_epoch(logger, row: dict, lr: float) -> None:
    """Log one row of a model's training history at its ``epoch``: each ``*loss`` column as ``train/<name>``,
    each ``valid_<metric>`` as ``valid/<metric>``, ``lr`` as ``train/lr`` (notebooks 02, 09). ``None``: a no-op."""
    if logger is None:
        return
    scalars = {f"train/{k}": v for k, v in row.items() if k.endswith("loss")}
    scalars.update({f"valid/{k[6:]}": v for k, v in row.items() if k.startswith("valid_")})
    logger.log(row["epoch"], **scalars, **{"train/lr": lr})


def log_final(logger, config, history: list[dict], best_epoch: int) -> None:
    """``logger.log_hparams`` of ``config`` with the kept epoch's validation metrics and the last epoch's losses."""
    if logger is None:
        return
    kept = next((row for row in history if row["epoch"] == best_epoch), {})
    final = {f"final/{k}": v for k, v in kept.items() if k.startswith("valid_")}
    final.update({f"final/train_{k}": v for k, v in (history[-1] if history else {}).items() if k.endswith("loss")})
    logger.log_hparams(hparams_of(config), {"final/best_epoch": best_epoch, **final})


ROLLOUT_TAGS = {"return": "rollout/return", "length": "rollout/episode_length", "click_rate": "rollout/click_rate"}


def log_rollout(logger, row: dict, lr: float) -> None:
    """Log one point of an RL agent's curves at ``row["step"]`` (environment steps; notebook 06): episode
    statistics as ``rollout/...``, the rest (loss, mean_q, epsilon) as ``train/...``; NaN entries are skipped."""
    if logger is None:
        return
    scalars = {ROLLOUT_TAGS.get(k, f"train/{k}"): v for k, v in row.items() if k not in ("step", "seconds")}
    scalars["train/lr"] = lr
    logger.log(row["step"], **{k: v for k, v in scalars.items() if math.isfinite(v)})


class RunLogger(Logger):
    """Log one run's scalars to ``logdir`` through TensorBoard (default) or an offline W&B run (notebook 02).

    ``hparams`` (optional): W&B records them at once as the run's config; TensorBoard writes them with
    :meth:`log_hparams`, under the ones it is given (every training loop calls it when it ends). Use it as a
    context manager or call :meth:`close`.
    """

    def __init__(self, logdir, backend: str = "tensorboard", hparams: dict | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.logdir, self.backend = Path(logdir), backend
        self.hparams = dict(hparams or {})
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._closed = False
        if backend == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.logdir))
        else:
            self._run = _wandb_run(self.logdir, self.hparams)

    def log(self, step: int, **scalars: float) -> None:
        """Record each ``tag=value`` of ``scalars`` at ``step`` (e.g. ``**{"train/loss": 0.31}``)."""
        self._open()
        step = _step(step)
        values = {tag: _scalar(tag, v) for tag, v in scalars.items()}
        if self.backend == "tensorboard":
            for tag, value in values.items():
                self._writer.add_scalar(tag, value, step)
        else:
            self._run.log(values, step=step)

    def log_hparams(self, hparams: dict, metrics: dict) -> None:
        """Record the run's hyperparameters (merged over the constructor's) with its final ``metrics``."""
        self._open()
        merged = {k: _hparam(v) for k, v in {**self.hparams, **dict(hparams)}.items()}
        final = {k: _scalar(k, v) for k, v in metrics.items()}
        final = {k: v for k, v in final.items() if math.isfinite(v)}  # the HPARAMS table holds numbers only
        if self.backend == "tensorboard":
            # run_name "." keeps the hparams in this run's folder (TensorBoard's default is a new timestamped one)
            self._writer.add_hparams(merged, final, run_name=".")
            self._writer.flush()
        else:
            self._run.config.update(merged, allow_val_change=True)
            self._run.summary.update(final)

    def flush(self) -> None:
        """Write pending events to disk (so a live TensorBoard shows them)."""
        if self.backend == "tensorboard" and not self._closed:
            self._writer.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.backend == "tensorboard":
            self._writer.close()
        else:
            self._run.finish()

    def _open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the logger of {self.logdir} is closed; create a new RunLogger")

    def __repr__(self) -> str:
        return f"RunLogger({str(self.logdir)!r}, backend={self.backend!r})"


def _wandb_run(logdir: Path, hparams: dict):
    """An offline W&B run in ``logdir`` (no account needed; ``wandb sync`` uploads it later)."""
    try:
        import wandb
    except ImportError as exc:
        raise ImportError(
            "RunLogger(backend='wandb') needs the wandb package: `pip install wandb` "
            "(it runs offline, no account needed), or use backend='tensorboard'"
        ) from exc
    return wandb.init(dir=str(logdir), mode="offline", config=hparams, name=logdir.name, reinit="create_new")


class CallbackLogger(Logger):
    """A logger that hands each ``log(step, **scalars)`` to ``on_log(step, scalars)`` (e.g. Optuna pruning).

    Whatever ``on_log`` raises propagates out of the training loop (``optuna.TrialPruned`` stops a trial).
    ``on_hparams(hparams, metrics)`` is optional.
    """

    def __init__(self, on_log, on_hparams=None):
        if not callable(on_log) or (on_hparams is not None and not callable(on_hparams)):
            raise TypeError("on_log (and on_hparams when given) must be callables")
        self.on_log, self.on_hparams = on_log, on_hparams

    def log(self, step: int, **scalars: float) -> None:
        self.on_log(_step(step), {tag: _scalar(tag, v) for tag, v in scalars.items()})

    def log_hparams(self, hparams: dict, metrics: dict) -> None:
        if self.on_hparams is not None:
            self.on_hparams(dict(hparams), dict(metrics))


class _Combined(Logger):
    def __init__(self, loggers):
        self.loggers = loggers

    def log(self, step: int, **scalars: float) -> None:
        for logger in self.loggers:
            logger.log(step, **scalars)

    def log_hparams(self, hparams: dict, metrics: dict) -> None:
        for logger in self.loggers:
            logger.log_hparams(hparams, metrics)

    def close(self) -> None:
        for logger in self.loggers:
            if hasattr(logger, "close"):
                logger.close()


def combine(*loggers) -> Logger:
    """One logger that forwards every call to each of ``loggers`` in order (``None`` entries are skipped)."""
    kept = [lg for lg in loggers if lg is not None]
    for lg in kept:
        if not callable(getattr(lg, "log", None)) or not callable(getattr(lg, "log_hparams", None)):
            raise TypeError(f"{lg!r} is not a logger: it needs log(step, **scalars) and log_hparams(hparams, metrics)")
    return _Combined(kept)


def run_dir(notebook: str, run: str, root=None) -> Path:
    """``<root>/runs/<notebook>/<run>``: the repository root in a checkout, else the current directory (notebook 02).

    The folder is not created here (the logger creates it); ``runs/`` is git-ignored.
    """
    for what, name in (("notebook", notebook), ("run", run)):
        if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"{what} must be a plain folder name such as '02' or 'bpr', got {name!r}")
    if root is None:
        from . import config

        root = config.REPO_DIR if config.in_checkout() else Path.cwd()
    return Path(root) / "runs" / notebook / run


def _event_dirs(logdir: Path) -> list[Path]:
    return sorted({p.parent for p in logdir.rglob("events.out.tfevents.*")})


def read_scalars(logdir) -> pd.DataFrame:
    """Every scalar under ``logdir`` as a frame with columns ``run, tag, step, value`` (notebook 02).

    Each folder holding event files is one run, named by its path relative to ``logdir`` (``"."`` for
    ``logdir`` itself). Read through TensorBoard's own ``EventAccumulator``, so it shows what the board shows.
    """
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    logdir = Path(logdir)
    if not logdir.is_dir():
        raise FileNotFoundError(f"no log folder at {logdir}; train with logger=RunLogger({str(logdir)!r}) first")
    rows = []
    for folder in _event_dirs(logdir):
        acc = EventAccumulator(str(folder), size_guidance={SCALARS: 0})  # 0: keep every point, not a sample
        acc.Reload()
        run = folder.relative_to(logdir).as_posix()
        for tag in acc.Tags()[SCALARS]:
            rows += [(run, tag, ev.step, ev.value) for ev in acc.Scalars(tag)]
    frame = pd.DataFrame(rows, columns=["run", "tag", "step", "value"])
    return frame.sort_values(["run", "tag", "step"], kind="stable", ignore_index=True)


def plot_scalars(frame: pd.DataFrame, tags, runs=None):
    """A matplotlib figure with one panel per tag and one line per run: the board's curves in a committed notebook."""
    import matplotlib.pyplot as plt

    tags = [tags] if isinstance(tags, str) else list(tags)
    missing = sorted(set(tags) - set(frame["tag"]))
    if not tags or missing:
        raise KeyError(f"tags {missing or tags} are not in the frame; it has {sorted(frame['tag'].unique())}")
    runs = sorted(frame["run"].unique()) if runs is None else list(runs)
    fig, axes = plt.subplots(1, len(tags), figsize=(4.2 * len(tags), 3.2), squeeze=False)
    for ax, tag in zip(axes[0], tags):
        for run in runs:
            part = frame[(frame["tag"] == tag) & (frame["run"] == run)]
            if len(part):
                ax.plot(part["step"], part["value"], label=run, lw=1.4)
        ax.set(title=tag, xlabel="step")
        ax.grid(alpha=0.3)
    if len(runs) > 1:
        axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def live_frontend() -> bool:
    """True only in a live notebook kernel that a person is looking at (JupyterLab/Notebook, Colab) (notebook 02).

    The signal: Colab's own module, or ``JPY_SESSION_NAME``, which a Jupyter server sets in the environment
    of each kernel it starts for an open notebook. Headless runs (nbclient, nbval, ``scripts/run_notebooks.py``)
    start their kernels without it, so a ``%tensorboard`` cell guarded by this is skipped there, and so in a
    plain Python process. (A headless run launched from *inside* a live kernel inherits the variable: run the
    tests from a terminal.)
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False  # a terminal IPython or plain Python: no front end to show the board in
    if "google.colab" in sys.modules:
        return True
    return bool(os.environ.get("JPY_SESSION_NAME", "").strip())
