"""recnb.stats: the one home of confidence intervals, checked against hand computations and scipy."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from recnb import stats


def test_mean_ci_is_the_student_t_interval():
    values = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    mean, half = stats.mean_ci(values)
    se = values.std(ddof=1) / np.sqrt(5)
    assert mean == pytest.approx(5.0) and stats.standard_error(values) == pytest.approx(se)
    assert half == pytest.approx(2.7764451051977934 * se)  # t(0.975, 4), not the normal 1.96
    low, high = scipy_stats.t.interval(0.9, 4, loc=mean, scale=se)
    assert stats.mean_ci(values, level=0.9)[1] == pytest.approx((high - low) / 2)
    single = stats.mean_ci([3.0])
    assert single[0] == 3.0 and np.isnan(single[1]) and np.isnan(stats.standard_error([3.0]))


def test_paired_ci_is_the_interval_of_the_differences():
    a, b = np.array([2.0, 3.0, 4.0, 5.0]), np.array([1.0, 2.0, 3.0, 3.0])
    assert stats.paired_ci(a, b) == stats.mean_ci(a - b)
    with pytest.raises(ValueError, match="same units"):
        stats.paired_ci(a, b[:3])


def test_bootstrap_intervals_hold_the_mean_and_repeat_by_seed():
    rng = np.random.default_rng(0)
    values = rng.exponential(size=300)
    mean, low, high = stats.bootstrap_ci(values, seed=1)
    assert low < mean < high and (mean, low, high) == stats.bootstrap_ci(values, seed=1)
    half = stats.mean_ci(values)[1]
    assert high - low == pytest.approx(2 * half, rel=0.25)  # a large sample: close to the t interval
    other = values + 0.5
    assert stats.paired_bootstrap_ci(other, values) == pytest.approx((0.5, 0.5, 0.5))


def test_grouped_mean_ci_per_group():
    runs = pd.DataFrame({"model": ["a", "a", "a", "b", "b", "b"], "ndcg": [0.1, 0.2, 0.3, 0.5, 0.5, 0.8]})
    out = stats.grouped_mean_ci(runs, "model", ["ndcg"])
    for model in ("a", "b"):
        mean, half = stats.mean_ci(runs.loc[runs["model"] == model, "ndcg"])
        assert out.loc[model, "ndcg"] == pytest.approx(mean) and out.loc[model, "ndcg ± CI"] == pytest.approx(half)
    assert out["runs"].tolist() == [3, 3]
    with pytest.raises(ValueError, match="run more seeds"):
        stats.grouped_mean_ci(runs.iloc[:4], "model", ["ndcg"])
    with pytest.raises(KeyError, match="hr"):
        stats.grouped_mean_ci(runs, "model", ["hr"])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: stats.mean_ci([]), "empty"),
        (lambda: stats.mean_ci([1.0, float("nan")]), "NaN or infinite"),
        (lambda: stats.mean_ci([1.0, 2.0], level=1.0), r"level must be in \(0, 1\)"),
        (lambda: stats.t_quantile(1), "n >= 2"),
        (lambda: stats.bootstrap_ci([1.0, 2.0], n_resamples=0), "n_resamples"),
    ],
)
def test_bad_input_names_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()
