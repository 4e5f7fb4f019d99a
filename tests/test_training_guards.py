"""Training guards: every gradient-descent loop stops with a clear error when its loss or weights turn NaN or
infinite, and the configs refuse rates that are not finite numbers (recnb._checks)."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_text_dqn

from recnb import baselines as B
from recnb._checks import TrainingDiverged, check_finite_parameters, check_numbers, finite_or_raise, is_int
from recnb.agents.dqn import DQN, DQNConfig
from recnb.offline_rl import SequentialConfig, SequentialRecommender

INF, NAN = float("inf"), float("nan")


# ---------------------------------------------------------------- the helpers


def test_finite_or_raise_returns_the_float_or_names_loop_step_and_fix():
    assert finite_or_raise(torch.tensor(1.5), where="X training", step="step 3") == 1.5
    assert finite_or_raise(2, where="X training") == 2.0
    for bad in (NAN, INF, torch.tensor(-INF)):
        with pytest.raises(TrainingDiverged, match=r"X training diverged at step 3: the loss is .*To fix: lower lr"):
            finite_or_raise(bad, where="X training", step="step 3", fix="lower lr")
    assert issubclass(TrainingDiverged, FloatingPointError)


def test_check_finite_parameters_names_the_bad_weights():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    check_finite_parameters(net, where="net", step="epoch 1")
    with torch.no_grad():
        net[1].bias.fill_(NAN)
    with pytest.raises(TrainingDiverged, match=r"net diverged at epoch 1: weights are NaN or infinite \(1.bias\)"):
        check_finite_parameters(net, where="net", step="epoch 1")
    check_finite_parameters({"a": torch.ones(2)}, where="dict")
    with pytest.raises(TrainingDiverged, match="b"):
        check_finite_parameters({"a": torch.ones(2), "b": torch.tensor([1.0, INF])}, where="dict")


def test_check_numbers_and_is_int():
    @dataclasses.dataclass
    class C:
        lr: float = 1e-3
        reg: float = 0.0

    check_numbers("C", C(), positive=("lr",), non_negative=("reg",))
    for kwargs, match in (
        ({"lr": INF}, "C.lr must be a finite positive number, got inf"),
        ({"lr": NAN}, "C.lr"),
        ({"lr": 0.0}, "C.lr"),
        ({"lr": True}, "C.lr"),
        ({"lr": "0.1"}, "C.lr"),
        ({"reg": -1.0}, "C.reg must be a finite non-negative number"),
    ):
        with pytest.raises(ValueError, match=match):
            check_numbers("C", C(**kwargs), positive=("lr",), non_negative=("reg",))
    assert is_int(3) and is_int(np.int64(3)) and not is_int(True) and not is_int(3.0)


# ---------------------------------------------------------------- DQN


def _dqn(env, **kw):
    base = dict(device="cpu", n_envs=8, buffer_size=64, batch_size=8, total_steps=160, learning_starts=0)
    return DQN(env, DQNConfig(**{**base, **kw}))


@pytest.mark.parametrize(
    "field",
    [
        "learning_rate",
        "gamma",
        "tau",
        "item_lr_scale",
        "huber_delta",
        "max_grad_norm",
        "epsilon_start",
        "exploration_fraction",
    ],
)
@pytest.mark.parametrize("value", [INF, NAN])
def test_dqn_config_rejects_non_finite_numbers(field, value):
    with pytest.raises(ValueError, match=rf"DQNConfig\.{field} must be .*, got {value!r}$"):
        DQNConfig(**{field: value})


def test_dqn_learning_starts_beyond_total_steps_is_refused(tiny_env):
    agent = _dqn(tiny_env, total_steps=160, learning_starts=500)
    with pytest.raises(ValueError, match=r"learning_starts \(500\) > total_steps \(160\).*lower learning_starts"):
        agent.train(progress=False)
    assert agent.env_steps == 0  # refused before collecting anything
    agent = _dqn(tiny_env, total_steps=1000, learning_starts=500)
    with pytest.raises(ValueError, match=r"learning_starts \(500\) > total_steps \(200\)"):
        agent.train(total_steps=200, progress=False)  # the train() argument overrides the config's budget


def test_dqn_normal_run_trains_and_stays_finite(tiny_env):
    agent = _dqn(tiny_env)
    log = agent.train(progress=False)
    assert agent.updates > 0 and all(math.isfinite(v) for v in log["loss"])
    agent.check_weights()  # no error


def test_dqn_absurd_learning_rate_stops_with_a_clear_error(tiny_env):
    agent = _dqn(tiny_env, learning_rate=1e30)
    with pytest.raises(TrainingDiverged, match=r"DQN training diverged at update \d+ .*learning_rate \(now 1e\+30;"):
        agent.train(progress=False)


def test_dqn_injected_nan_weight_stops_training(tiny_env):
    agent = _dqn(tiny_env, total_steps=80)
    agent.train(progress=False)
    with torch.no_grad():
        next(agent.online.parameters()).fill_(NAN)
    with pytest.raises(TrainingDiverged, match="DQN training"):
        agent.check_weights()
    with pytest.raises(TrainingDiverged, match="DQN training"):
        agent.train(total_steps=160, progress=False)


# ---------------------------------------------------------------- BPR and NeuMF


@pytest.fixture(scope="module")
def ratings():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"user": np.repeat(np.arange(20), 6), "item": rng.integers(0, 15, 120)}).drop_duplicates()


MODELS = [(B.BPR, B.BPRConfig, "BPR"), (B.NeuMF, B.NeuMFConfig, "NeuMF")]


@pytest.mark.parametrize("model, config, name", MODELS)
def test_baselines_stop_on_a_diverging_learning_rate(ratings, model, config, name):
    with pytest.raises(
        TrainingDiverged,
        match=rf"{name} training diverged at epoch 1, step \d+: the loss is .*"
        rf"lower {name}Config.lr \(now 1e\+30",
    ):
        model(20, 15, config(lr=1e30, dim=4, max_epochs=3, progress=False, batch_size=32)).fit(ratings)


@pytest.mark.parametrize("model, config, name", MODELS)
def test_baselines_normal_run_still_trains(ratings, model, config, name):
    fitted = model(20, 15, config(dim=4, max_epochs=2, progress=False, batch_size=32)).fit(ratings)
    assert len(fitted.history) == 2 and all(math.isfinite(row["loss"]) for row in fitted.history)


@pytest.mark.parametrize("model, config, name", MODELS)
def test_baselines_check_weights_after_each_epoch(ratings, model, config, name, monkeypatch):
    def poisoned_epoch(self, *args):
        with torch.no_grad():
            next(self.net.parameters()).fill_(INF)
        return 0.5

    monkeypatch.setattr(model, "_epoch", poisoned_epoch)
    with pytest.raises(TrainingDiverged, match=rf"{name} training diverged at epoch 1: weights are NaN or infinite"):
        model(20, 15, config(dim=4, max_epochs=2, progress=False)).fit(ratings)


@pytest.mark.parametrize("field, value", [("lr", INF), ("lr", NAN), ("lr", -1.0), ("reg", NAN), ("reg", -0.1)])
def test_bpr_config_rates_are_validated(field, value):
    with pytest.raises(ValueError, match=f"BPRConfig.{field}"):
        B.BPR(20, 15, B.BPRConfig(**{field: value}))


@pytest.mark.parametrize("field, value", [("lr", INF), ("weight_decay", NAN), ("weight_decay", INF)])
def test_neumf_config_rates_are_validated(field, value):
    with pytest.raises(ValueError, match=f"NeuMFConfig.{field}"):
        B.NeuMF(20, 15, B.NeuMFConfig(**{field: value}))


# ---------------------------------------------------------------- SQN (offline RL)


@pytest.fixture(scope="module")
def logs():
    rows = [{"user": u, "item": (u + k) % 15, "timestamp": k, "rating": 4.0} for u in range(20) for k in range(8)]
    return pd.DataFrame(rows)


def _sequential(q_head=True, **kw):
    return SequentialRecommender(
        20, 15, SequentialConfig(dim=8, max_len=6, q_head=q_head, max_epochs=2, progress=False, threads=1, **kw)
    )


def test_sqn_normal_run_still_trains(logs):
    model = _sequential().fit(logs)
    assert len(model.history) == 2 and model.history[-1]["td_loss"] > 0


def test_sqn_stops_on_a_nan_reward(logs):
    bad = logs.copy()
    bad.loc[5, "rating"] = NAN
    with pytest.raises(
        TrainingDiverged, match=r"SQN training \(TD loss\) diverged at epoch 1, step 1.*lower SequentialConfig.lr"
    ):
        _sequential().fit(bad)


@pytest.mark.parametrize("q_head, name", [(True, "SQN"), (False, r"GRU \(CE\)")])
def test_sequential_models_stop_on_nan_weights(logs, q_head, name):
    model = _sequential(q_head)
    with torch.no_grad():
        model.net.ce_head.weight[0, 0] = NAN
    with pytest.raises(TrainingDiverged, match=rf"{name} training \(cross-entropy\) diverged at epoch 1, step 1"):
        model.fit(logs)


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", INF),
        ("lr", NAN),
        ("gamma", NAN),
        ("target_tau", NAN),
        ("q_weight", INF),
        ("dropout", NAN),
        ("dropout", 1.5),
    ],
)
def test_sequential_config_rejects_non_finite_numbers(field, value):
    with pytest.raises(ValueError, match=field):
        SequentialConfig(**{field: value})


# ---------------------------------------------------------------- the simulator's fits (calibration)


def test_calibration_fits_stop_on_a_diverging_learning_rate():
    from recnb.calibration import fit_choice_model, fit_rating_model

    users, items, stars = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), np.array([5.0, 3.0, 4.0, 1.0])
    fit_choice_model(users, items, 3, 3, dim=2, steps=5)  # a normal fit
    with pytest.raises(TrainingDiverged, match=r"fit_choice_model diverged at step \d+ of 50.*lower lr \(now 1e\+30"):
        fit_choice_model(users, items, 3, 3, dim=2, steps=50, lr=1e30)
    with pytest.raises(TrainingDiverged, match=r"fit_rating_model diverged at step 1 of 5.*ratings for NaN"):
        fit_rating_model(users, items, np.array([5.0, NAN, 4.0, 1.0]), 3, 3, dim=2, steps=5)
    with pytest.raises(ValueError, match="fit_rating_model.lr must be a finite positive number"):
        fit_rating_model(users, items, stars, 3, 3, lr=INF)
    with pytest.raises(ValueError, match="fit_choice_model.l2"):
        fit_choice_model(users, items, 3, 3, l2=NAN)


# ---------------------------------------------------------------- TD fine-tuning of the language model


@pytest.mark.parametrize(
    "field, value",
    [("lm_lr", INF), ("head_lr", NAN), ("head_lr", 0.0), ("steps", 0), ("batch_size", True), ("seed", -1)],
)
def test_finetune_config_is_validated(field, value):
    from recnb.lm_rl import FinetuneConfig

    with pytest.raises(ValueError, match=f"FinetuneConfig.{field}"):
        FinetuneConfig(**{field: value})


@pytest.fixture(scope="module")
def finetune_setup(tiny_env):
    from recnb import lm_rl
    from recnb.data import GENRES

    texts = [f"Film number {i} ({1990 + i % 9}). Genres: {GENRES[1 + i % 18]}." for i in range(tiny_env.n_items)]
    layers = lm_rl.TopLayers.from_texts(texts, n_top=1, cache=False)
    cold = lm_rl.cold_item_mask(tiny_env.n_items, 0.3, seed=0)
    config = tiny_text_dqn(total_steps=320)
    agent = lm_rl.train_agent(tiny_env, layers.all_vectors(), cold, config, progress=False)
    return agent, layers


@pytest.mark.parametrize("finetune_lm", [True, False])
def test_td_finetune_stops_on_a_diverging_learning_rate(finetune_setup, finetune_lm):
    from recnb import lm_rl

    agent, layers = finetune_setup
    cfg = lm_rl.FinetuneConfig(steps=6, batch_size=8, head_lr=1e30, finetune_lm=finetune_lm)
    with pytest.raises(TrainingDiverged, match=r"TD fine-tuning.* diverged at step \d+: .*head_lr \(now 1e\+30\)"):
        lm_rl.td_finetune(agent, layers, cfg, progress=False)


def test_td_finetune_stops_on_a_nan_reward_and_trains_normally_otherwise(finetune_setup):
    from recnb import lm_rl

    agent, layers = finetune_setup
    cfg = lm_rl.FinetuneConfig(steps=2, batch_size=8, finetune_lm=False)
    _, losses = lm_rl.td_finetune(agent, layers, cfg, progress=False)
    assert len(losses) == 2 and np.isfinite(losses).all()
    saved = agent.buffer.data["reward"].clone()
    try:
        agent.buffer.data["reward"].fill_(NAN)
        with pytest.raises(TrainingDiverged, match=r"TD fine-tuning \(LM frozen\) diverged at step 1: the loss is nan"):
            lm_rl.td_finetune(agent, layers, cfg, progress=False)
    finally:
        agent.buffer.data["reward"].copy_(saved)
