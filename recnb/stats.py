"""Confidence intervals: the one place recnb turns per-user or per-seed values into a mean and its interval.

Every interval in the package and the notebooks comes from here (docs/protocols.md, "Intervals"):

* :func:`standard_error` -- the standard error of a mean (e.g. an off-policy estimate's, :mod:`recnb.ope`);
* :func:`mean_ci` -- mean and Student-t half-width of independent values (users or seeds);
* :func:`paired_ci` -- mean and Student-t half-width of per-unit differences ``a - b`` (same users, same seed);
* :func:`bootstrap_ci` / :func:`paired_bootstrap_ci` -- percentile bootstrap, for skewed per-user metrics;
* :func:`grouped_mean_ci` -- :func:`mean_ci` per group of a table of runs (e.g. one row per seed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

from ._checks import check_int, check_seed

__all__ = [
    "standard_error",
    "mean_ci",
    "paired_ci",
    "bootstrap_ci",
    "paired_bootstrap_ci",
    "grouped_mean_ci",
    "t_quantile",
]


def _level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}; use e.g. 0.95 for a 95% interval")
    return float(level)


def _values(values, name: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty: an interval needs at least one value")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite entries; drop or fix them before computing an interval")
    return arr


def t_quantile(n: int, level: float = 0.95) -> float:
    """The two-sided Student-t quantile for ``n`` values (``n - 1`` degrees of freedom)."""
    if n < 2:
        raise ValueError(f"a t quantile needs n >= 2 values, got {n}")
    return float(_scipy_stats.t.ppf((1 + _level(level)) / 2, n - 1))


def standard_error(values) -> float:
    """The standard error of the mean of ``values`` (sample sd over sqrt(n)); NaN for a single value."""
    arr = _values(values)
    if arr.size < 2:
        return float("nan")
    return float(arr.std(ddof=1)) / float(np.sqrt(arr.size))


def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t ``level`` interval; the half-width is NaN for a single value."""
    arr = _values(values)
    if arr.size < 2:
        return float(arr.mean()), float("nan")
    return float(arr.mean()), t_quantile(arr.size, level) * standard_error(arr)


def paired_ci(a, b, level: float = 0.95) -> tuple[float, float]:
    """Mean of the per-unit differences ``a - b`` and its Student-t half-width (the same users in both)."""
    a, b = _values(a, "a"), _values(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a paired interval needs values for the same units: got {a.size} and {b.size}")
    return mean_ci(a - b, level)


def bootstrap_ci(values, level: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and the percentile-bootstrap ``level`` interval ``(mean, low, high)`` of independent values."""
    arr = _values(values)
    check_int("n_resamples", n_resamples, minimum=1)
    rng = np.random.default_rng(check_seed("seed", seed))
    means = arr[rng.integers(0, arr.size, (n_resamples, arr.size))].mean(1)
    alpha = (1 - _level(level)) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(arr.mean()), float(low), float(high)


def paired_bootstrap_ci(
    a, b, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """:func:`bootstrap_ci` of the per-unit differences ``a - b`` (the same users in both)."""
    a, b = _values(a, "a"), _values(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a paired interval needs values for the same units: got {a.size} and {b.size}")
    return bootstrap_ci(a - b, level, n_resamples, seed)


def grouped_mean_ci(runs: pd.DataFrame, by: str, metrics: list[str], level: float = 0.95) -> pd.DataFrame:
    """Per group ``by``: each metric's mean over runs (e.g. seeds) and its Student-t half-width, as columns
    ``metric`` and ``metric ± CI``, plus ``runs`` (the number of runs in the group)."""
    missing = [m for m in [by, *metrics] if m not in runs.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the runs table; it has {list(runs.columns)}")
    n = runs.groupby(by, sort=False).size()
    if (n < 2).any():
        raise ValueError(f"need >= 2 runs per {by!r} for a confidence interval, got {n.min()}; run more seeds")
    groups = runs.groupby(by, sort=False)[metrics]
    mean, std = groups.mean(), groups.std(ddof=1)
    t = np.array([t_quantile(int(k), level) for k in n])
    out = pd.DataFrame(index=mean.index)
    for m in metrics:
        out[m] = mean[m]
        out[f"{m} ± CI"] = t * std[m].to_numpy() / np.sqrt(n.to_numpy())
    out["runs"] = n
    return out
