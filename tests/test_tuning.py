"""Hyperparameter search (recnb.tuning): the objective, pruning, samplers, storages and several worker processes."""

import math
import os

import numpy as np
import optuna
import pandas as pd
import pytest

from recnb import tuning
from recnb.baselines import BPR, BPRConfig

N_USERS, N_ITEMS = 40, 30
SMALL = tuning.BPRSearchSpace(dim=(2, 8), lr=(1e-2, 1e-1), reg=(1e-4, 1e-2))
QUICK = BPRConfig(max_epochs=3, batch_size=256, progress=False)


@pytest.fixture(scope="module")
def parts():
    """Two taste groups (users 0-19 like items 0-14, the rest items 15-29); each user's liked items cut 6/2."""
    rng = np.random.default_rng(0)
    train, valid = [], []
    for user in range(N_USERS):
        liked = rng.permutation(np.arange(15) + (0 if user < 20 else 15))[:8]
        train += [(user, item) for item in liked[:6]]
        valid += [(user, item) for item in liked[6:]]
    return pd.DataFrame(train, columns=["user", "item"]), pd.DataFrame(valid, columns=["user", "item"])


@pytest.fixture()
def objective(parts):
    train, valid = parts
    return tuning.BPRObjective(train, valid, N_USERS, N_ITEMS, space=SMALL, base=QUICK)


def test_objective_returns_the_best_validation_ndcg_of_the_trial_configuration(objective, parts):
    params = {"dim": 4, "lr": 0.05, "reg": 1e-3}
    value = objective(optuna.trial.FixedTrial(params))
    reference = BPR(N_USERS, N_ITEMS, objective.config(params)).fit(*parts)
    assert value == pytest.approx(max(row["valid_NDCG@10"] for row in reference.history))
    assert 0 < value <= 1
    assert objective.config(params).max_epochs == QUICK.max_epochs  # what the search does not choose stays


def test_objective_in_a_study_records_pid_and_epochs(objective):
    study = optuna.create_study(direction="maximize", sampler=tuning.make_sampler("random", SMALL, seed=0))
    study.optimize(objective, n_trials=2)
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.user_attrs["pid"] == os.getpid()
        assert trial.user_attrs["epochs"] == QUICK.max_epochs
        assert len(trial.intermediate_values) == QUICK.max_epochs  # one report an epoch, for the pruner


def test_pruning_logger_raises_when_the_pruner_says_so():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trial = study.ask()
    logger = tuning.PruningLogger(trial)
    logger.log(1, **{"train/loss": 0.5})  # no validation score: nothing reported, nothing pruned
    assert trial.should_prune() is False and logger.reported == 0
    with pytest.raises(optuna.TrialPruned, match=r"pruned at epoch 2: valid/NDCG@10 = 0\.3000"):
        logger.log(2, **{"valid/NDCG@10": 0.3})  # every value is below the threshold 2.0
    assert study.trials[0].intermediate_values == {2: 0.3}


def test_pruning_logger_lets_a_good_trial_run():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.1))
    logger = tuning.PruningLogger(study.ask())
    logger.log(1, **{"valid/NDCG@10": 0.3})
    assert logger.reported == 1


def test_a_pruned_trial_stops_training_early(objective):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["epochs"] == 1  # the exception from the logger ended the loop after epoch 1


def test_samplers_and_the_grid():
    grid = SMALL.grid()
    assert grid["dim"] == [2, 4, 8]
    assert grid["lr"] == pytest.approx([1e-2, 10**-1.5, 1e-1])
    assert isinstance(tuning.make_sampler("grid", SMALL), optuna.samplers.GridSampler)
    assert isinstance(tuning.make_sampler("random", SMALL), optuna.samplers.RandomSampler)
    assert isinstance(tuning.make_sampler("tpe", SMALL), optuna.samplers.TPESampler)


def test_grid_search_visits_grid_points_only(objective):
    study = optuna.create_study(direction="maximize", sampler=tuning.make_sampler("grid", SMALL, seed=1))
    study.optimize(objective, n_trials=3)
    grid = SMALL.grid()
    for trial in study.trials:
        assert trial.params["dim"] in grid["dim"]
        assert any(math.isclose(trial.params["lr"], v) for v in grid["lr"])
    assert len({tuple(t.params.values()) for t in study.trials}) == 3  # no point twice


def _study_with(states_values):
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for state, value in states_values:
        trial = optuna.trial.create_trial(
            state=state, value=value if state.name == "COMPLETE" else None, params={"x": 0.5}, distributions=dist
        )
        study.add_trial(trial)
    return study


def test_best_so_far_and_best_after_skip_pruned_trials():
    S = optuna.trial.TrialState
    study = _study_with([(S.PRUNED, None), (S.COMPLETE, 0.2), (S.PRUNED, None), (S.COMPLETE, 0.1), (S.COMPLETE, 0.4)])
    curve = tuning.best_so_far(study)
    assert np.isnan(curve[0]) and list(curve[1:]) == [0.2, 0.2, 0.2, 0.4]
    other = _study_with([(S.COMPLETE, 0.3)] * 5)
    table = tuning.best_after({("random", 0): study, ("random", 1): other}, (2, 5))
    row = table.set_index("trials").loc[5]
    assert row["mean"] == pytest.approx(0.35) and row["seeds"] == 2
    assert row["std"] == pytest.approx(np.std([0.4, 0.3], ddof=1))
    with pytest.raises(ValueError, match="fewer than n_trials=9"):
        tuning.best_so_far(study, 9)


def test_bad_inputs_get_clear_errors(parts, tmp_path):
    train, valid = parts
    with pytest.raises(ValueError, match="method must be one of"):
        tuning.make_sampler("bayes", SMALL)
    with pytest.raises(ValueError, match=r"0 < low < high"):
        tuning.BPRSearchSpace(lr=(1e-1, 1e-3))
    with pytest.raises(ValueError, match="grid_points"):
        tuning.BPRSearchSpace(grid_points=1)
    with pytest.raises(ValueError, match="the valid part is empty"):
        tuning.BPRObjective(train, valid.iloc[:0], N_USERS, N_ITEMS)
    with pytest.raises(ValueError, match="'user' and 'item' columns"):
        tuning.BPRObjective(train, None, N_USERS, N_ITEMS)
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        tuning.open_storage(tmp_path / "missing" / "journal.log")
    with pytest.raises(TypeError, match="needs an optuna trial"):
        tuning.PruningLogger(object())
    objective = tuning.BPRObjective(train, valid, N_USERS, N_ITEMS, space=SMALL, base=QUICK)
    with pytest.raises(ValueError, match="n_workers must be an integer >= 1"):
        tuning.compare_samplers(objective, tmp_path / "j.log", n_workers=0)
    with pytest.raises(ValueError, match="method must be one of"):
        tuning.compare_samplers(objective, tmp_path / "j.log", methods=("grid", "annealing"))


@pytest.mark.parametrize("where", ["journal", pytest.param("sqlite", marks=pytest.mark.slow)])
def test_one_study_two_worker_processes_on_a_shared_storage(objective, tmp_path, where):
    storage = tmp_path / "journal.log" if where == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    study = tuning.run_study(objective, storage, "shared", method="tpe", seed=0, n_trials=4, n_workers=2)
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state.is_finished() for t in trials)
    pids = {t.user_attrs["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids  # both workers, neither of them this process
    # the study lives in the storage: another process (here: this one) loads the same trials by name
    again = optuna.load_study(study_name="shared", storage=tuning.open_storage(storage))
    assert [t.number for t in again.trials] == [0, 1, 2, 3]
    frame = tuning.trials_frame({("tpe", 0): study})
    assert set(frame["pid"]) == pids and frame["value"].notna().sum() == sum(t.value is not None for t in trials)
