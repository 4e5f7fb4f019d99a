"""Tests for recnb.offline_rl: windows, TD target pieces, training, scoring through the shared evaluator."""

import numpy as np
import pandas as pd
import pytest
import torch

from recnb.metrics import FullRankingEvaluator
from recnb.offline_rl import SequentialConfig, SequentialRecommender, _histories, _windows


def _cyclic_logs(n_users=30, n_items=20, length=14, seed=0):
    """Every user walks the catalogue in a fixed cycle from a random start: next item = current + 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for t in range(length):
            rows.append({"user": u, "item": (start + t) % n_items, "timestamp": t, "rating": 4 + (t % 2)})
    frame = pd.DataFrame(rows)
    frame["user_id"], frame["item_id"] = frame["user"] + 1, frame["item"] + 1
    return frame


def test_windows_pair_each_item_with_the_next_and_mark_the_end():
    seqs = [np.array([3, 1, 4, 1, 5])]
    rewards = [np.array([0.2, 0.4, 0.6, 0.8, 1.0], np.float32)]
    inputs, targets, rew, lengths, done = _windows(seqs, rewards, max_len=3, pad=9)
    assert inputs.tolist() == [[3, 1, 4], [1, 9, 9]]
    assert targets.tolist() == [[1, 4, 1], [5, 9, 9]]
    assert rew[0].tolist() == pytest.approx([0.4, 0.6, 0.8]) and rew[1, 0] == pytest.approx(1.0)
    assert lengths.tolist() == [3, 1] and done.tolist() == [False, True]


def test_histories_are_chronological_and_rewards_are_rating_over_five():
    frame = pd.DataFrame({"user": [0, 0, 1], "item": [5, 2, 7], "timestamp": [9, 1, 3], "rating": [5, 3, 4]})
    seqs, rews = _histories(frame, 3)
    assert seqs[0].tolist() == [2, 5] and seqs[1].tolist() == [7] and len(seqs[2]) == 0
    assert rews[0].tolist() == pytest.approx([0.6, 1.0])
    with pytest.raises(ValueError, match="timestamp"):
        _histories(frame.drop(columns="timestamp"), 3)


@pytest.mark.parametrize("q_head", [False, True])
def test_learns_a_deterministic_next_item_rule(q_head):
    logs = _cyclic_logs()
    train = logs[logs["timestamp"] < 12]
    test = logs[logs["timestamp"] == 12]
    cfg = SequentialConfig(
        dim=16, max_len=8, q_head=q_head, max_epochs=25, batch_size=16, lr=1e-2, dropout=0.0, progress=False, threads=1
    )
    model = SequentialRecommender(30, 20, cfg).fit(train)
    ev = FullRankingEvaluator(train, test, 30, 20, ks=(1,))
    result = ev.evaluate(model.scorer(train))
    assert result["HR@1"] > 0.9  # random: 1/8 of the unseen items
    if q_head:
        assert model.history[-1]["td_loss"] > 0  # the Q-head really trains
    else:
        assert model.history[-1]["td_loss"] == 0


def test_text_features_and_early_stopping():
    logs = _cyclic_logs()
    train, valid = logs[logs["timestamp"] < 12], logs[logs["timestamp"] == 12]
    text = torch.randn(20, 8)
    cfg = SequentialConfig(
        dim=8, max_len=6, text=True, q_head=True, max_epochs=4, patience=1, progress=False, threads=1
    )
    model = SequentialRecommender(30, 20, cfg, text_vectors=text).fit(train, valid)
    assert 1 <= model.best_epoch <= len(model.history) <= 4
    assert "valid_NDCG@10" in model.history_frame()
    assert model.scorer(train)(torch.arange(5)).shape == (5, 20)


def test_clear_errors():
    with pytest.raises(ValueError, match="gamma"):
        SequentialConfig(gamma=1.0)
    with pytest.raises(ValueError, match="text_vectors"):
        SequentialRecommender(3, 4, SequentialConfig(text=True))
    with pytest.raises(ValueError, match="rows"):
        SequentialRecommender(3, 4, SequentialConfig(text=True), text_vectors=np.zeros((5, 2)))


def test_fit_logs_each_epoch_and_the_final_hparams(tmp_path):
    from recnb import tracking

    logs = _cyclic_logs()
    train, valid = logs[logs["timestamp"] < 12], logs[logs["timestamp"] == 12]
    cfg = SequentialConfig(dim=8, max_len=6, q_head=True, max_epochs=3, patience=3, progress=False, threads=1)
    with tracking.RunLogger(tmp_path / "sqn") as logger:
        model = SequentialRecommender(30, 20, cfg).fit(train, valid, logger=logger)
    frame = tracking.read_scalars(tmp_path)
    tags = set(frame.tag)
    assert {"train/loss", "train/ce_loss", "train/td_loss", "train/lr", "valid/NDCG@10", "final/best_epoch"} <= tags
    assert frame[frame.tag == "valid/NDCG@10"].value.tolist() == pytest.approx(
        [row["valid_NDCG@10"] for row in model.history], rel=1e-6
    )
    row = model.history[0]  # the logged loss is the one trained on: cross-entropy + q_weight * TD
    assert row["loss"] == pytest.approx(row["ce_loss"] + cfg.q_weight * row["td_loss"])


def test_an_exception_in_the_logger_stops_fit():
    from recnb.tracking import CallbackLogger

    class Pruned(Exception):
        pass

    def prune(step, scalars):
        raise Pruned

    logs = _cyclic_logs()
    model = SequentialRecommender(30, 20, SequentialConfig(dim=8, max_len=6, max_epochs=3, progress=False, threads=1))
    with pytest.raises(Pruned):
        model.fit(logs, logger=CallbackLogger(prune))
    assert len(model.history) == 1


def test_config_is_frozen_and_validated():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        SequentialConfig().lr = 1.0
    for bad in (dict(dim=0), dict(seed=-1), dict(q_head="yes"), dict(train_tail=0), dict(max_len=2.5)):
        with pytest.raises(ValueError, match="SequentialConfig"):
            SequentialConfig(**bad)
