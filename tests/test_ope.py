"""recnb.ope on synthetic bandit logs whose true policy values are known exactly."""

import numpy as np
import pytest

from recnb import ope

N_CONTEXTS, N_ACTIONS = 6, 4


def bandit(seed=0):
    rng = np.random.default_rng(seed)
    reward_prob = rng.uniform(0.05, 0.9, size=(N_CONTEXTS, N_ACTIONS))
    return reward_prob


def softmax_policy(scores, temperature):
    z = np.exp((scores - scores.max(1, keepdims=True)) / temperature)
    return z / z.sum(1, keepdims=True)


def log(reward_prob, logging, n, seed):
    """Contexts uniform; actions from the logging policy; Bernoulli rewards."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, N_CONTEXTS, n)
    probs = logging[x]
    a = (probs.cumsum(1) > rng.random((n, 1))).argmax(1)
    r = (rng.random(n) < reward_prob[x, a]).astype(float)
    return x, a, r, probs[np.arange(n), a]


def setting(seed=0):
    reward_prob = bandit(seed)
    logging = softmax_policy(np.zeros((N_CONTEXTS, N_ACTIONS)), 1.0)  # uniform logging
    target = softmax_policy(reward_prob, 0.1)  # a policy that prefers good actions
    true_value = (target * reward_prob).sum(1).mean()
    return reward_prob, logging, target, true_value


def test_estimators_are_unbiased_on_average():
    reward_prob, logging, target, truth = setting()
    estimates = {"ips": [], "snips": [], "dr": []}
    for seed in range(40):
        x, a, r, p = log(reward_prob, logging, 2000, seed)
        t = target[x]
        fit, predict = ope.tabular_reward_model(x, a, r, N_CONTEXTS, N_ACTIONS)
        q = ope.cross_fit(len(x), fit, predict, folds=2, seed=seed)
        estimates["ips"].append(ope.ips(a, r, p, t).value)
        estimates["snips"].append(ope.snips(a, r, p, t).value)
        estimates["dr"].append(ope.doubly_robust(a, r, p, t, q).value)
    for name, values in estimates.items():
        values = np.array(values)
        stderr = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - truth) < 4 * stderr + 2e-3, (name, values.mean(), truth)


def test_confidence_intervals_cover_about_95_percent_and_dm_with_true_model_is_exact():
    reward_prob, logging, target, truth = setting(1)
    covered = []
    for seed in range(200):
        x, a, r, p = log(reward_prob, logging, 1000, seed)
        lo, hi = ope.ips(a, r, p, target[x]).ci
        covered.append(lo < truth < hi)
    assert 0.88 <= np.mean(covered) <= 0.99
    dm = ope.direct_method(target[x], reward_prob[x])
    assert abs(dm.value - (target[x] * reward_prob[x]).sum(1).mean()) < 1e-12


def test_doubly_robust_corrects_a_wrong_reward_model():
    reward_prob, logging, target, truth = setting(2)
    x, a, r, p = log(reward_prob, logging, 20_000, 3)
    wrong = np.full_like(reward_prob, 0.5)[x]  # a constant, badly biased model
    dm = ope.direct_method(target[x], wrong).value
    dr = ope.doubly_robust(a, r, p, target[x], wrong).value
    assert abs(dm - truth) > 0.1 and abs(dr - truth) < 0.03


def test_ips_variance_grows_as_target_departs_from_logging():
    reward_prob, logging, _, _ = setting(3)
    x, a, r, p = log(reward_prob, logging, 5000, 4)
    errs = []
    for temperature in (10.0, 0.3, 0.03):
        target = softmax_policy(reward_prob, temperature)[x]
        errs.append(ope.ips(a, r, p, target).stderr)
        ess = ope.effective_sample_size(ope.importance_weights(a, p, target))
        assert 0 < ess <= len(x) + 1e-6
    assert errs[0] < errs[1] < errs[2]


def test_clipping_bounds_weights_and_snips_is_steadier():
    reward_prob, logging, _, _ = setting(4)
    x, a, r, p = log(reward_prob, logging, 3000, 5)
    target = softmax_policy(reward_prob, 0.05)[x]
    assert ope.importance_weights(a, p, target, clip=2.0).max() <= 2.0
    assert ope.snips(a, r, p, target).stderr < ope.ips(a, r, p, target).stderr


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(actions=[], rewards=[], propensities=[], target=np.zeros((0, 2))), "empty"),
        (dict(actions=[0], rewards=[1.0], propensities=[0.0], target=[[1.0, 0.0]]), r"\(0, 1\]"),
        (dict(actions=[2], rewards=[1.0], propensities=[0.5], target=[[1.0, 0.0]]), "must be in"),
        (dict(actions=[0], rewards=[1.0], propensities=[0.5], target=[[0.7, 0.7]]), "probability distribution"),
    ],
)
def test_bad_logs_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ope.ips(**kwargs)
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        ope.cross_fit(10, None, None, folds=1)


def test_a_single_logged_round_gives_a_value_and_no_standard_error_without_warnings():
    import warnings

    target = np.array([[0.25, 0.75]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's "degrees of freedom <= 0" would fail here
        for est in (ope.snips([1], [1.0], [0.5], target), ope.ips([1], [1.0], [0.5], target)):
            assert np.isnan(est.stderr)
    assert ope.snips([1], [1.0], [0.5], target).value == pytest.approx(1.0)
    assert ope.ips([1], [1.0], [0.5], target).value == pytest.approx(1.5)
