"""Offline RL on logged histories: a sequential recommender with and without an SQN Q-head (notebook 09).

Two models share one small sequential encoder and are trained on the chronological MovieLens
histories of Track B (docs/protocols.md; only the training part):

* **supervised** -- a GRU reads the items a user consumed so far; a linear head scores every
  catalogue item for "what comes next", trained with next-item cross-entropy.
* **SQN** (Xin et al., 2020, "Self-Supervised Reinforcement Learning for Recommender Systems") --
  the same, plus a second linear head ``Q(s, a)`` trained by Q-learning on the *logged* data:
  state ``s_t`` = the GRU state after the first t items, action ``a_t`` = the item the user actually
  consumed next, reward ``r_t`` = ``rating / 5`` of that item, next state ``s_{t+1}`` = the GRU state
  one item later. The TD target is ``r_t + gamma * (1 - done) * Q_target(s_{t+1}, argmax_a Q(s_{t+1}, a))``
  (Double DQN; ``Q_target`` is a slowly updated copy; items already in the window are masked from
  the max). Both losses update the shared encoder -- that is the SQN idea: the RL signal shapes the
  representation -- but, as in the paper, **the supervised head is what ranks** at test time.

Item representation: a learned ID embedding, plus (``text=True``) a learned projection of the frozen
MiniLM vector of the item's text (notebook 03). Scores come from :meth:`SequentialRecommender.scorer`,
which reads each user's most recent ``max_len`` items from the frames you pass (train for the
validation part, train + valid for the test part), so :class:`recnb.metrics.FullRankingEvaluator`
scores it exactly like the baselines of notebook 02. Re-evaluations of SQN-style heads
(e.g. on MovieLens and RetailRocket) often find the RL head adds little; notebook 09 reports what it
finds here.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ._checks import (
    check_finite_parameters,
    check_int,
    check_numbers,
    check_probability,
    check_seed,
    finite_or_raise,
    need,
)
from .metrics import FullRankingEvaluator
from .tracking import log_epoch, log_final


@dataclass(frozen=True)
class SequentialConfig:
    """Hyperparameters of the sequential recommender and its optional Q-head; frozen, validated (notebook 09)."""

    dim: int = 64
    """Size of item embeddings and of the GRU state."""
    max_len: int = 50
    """Items per training window, and how many recent items form the state when scoring."""
    q_head: bool = False
    """Add the SQN Q-learning head (its TD loss also trains the shared encoder)."""
    text: bool = False
    """Add a learned projection of frozen item-text vectors to each item's ID embedding."""
    gamma: float = 0.5
    """Discount of the Q-head's TD target, in [0, 1)."""
    q_weight: float = 1.0
    """Weight of the TD loss next to the cross-entropy loss."""
    target_tau: float = 0.02
    """Soft update rate of the target network (Polyak averaging), in (0, 1]."""
    lr: float = 2e-3
    """Adam learning rate."""
    batch_size: int = 64
    """Windows (of ``max_len`` steps) per gradient step."""
    max_epochs: int = 30
    """Upper bound on passes over the training windows; early stopping usually ends sooner."""
    patience: int = 3
    """Stop after this many epochs without a better validation NDCG@10; the best weights are kept."""
    train_tail: int | None = None
    """Train on each user's most recent ``train_tail`` items only (None: all); shortens epochs on small CPUs."""
    dropout: float = 0.2
    """Dropout on item embeddings while training."""
    seed: int = 0
    """Seeds initial weights and window order."""
    progress: bool = True
    """Show a tqdm progress bar over epochs."""
    threads: int | None = 2
    """CPU threads while training (None: torch's default)."""

    def __post_init__(self):
        name = "SequentialConfig"
        check_numbers(name, self, positive=("lr",), non_negative=("q_weight",), finite=("gamma", "target_tau"))
        need(0 <= self.gamma < 1, f"{name}.gamma must be in [0, 1), got {self.gamma}; use e.g. 0.5")
        need(0 < self.target_tau <= 1, f"{name}.target_tau must be in (0, 1] (1 = hard copy), got {self.target_tau}")
        check_probability(f"{name}.dropout", self.dropout)
        for field in ("dim", "max_len", "batch_size", "max_epochs", "patience"):
            check_int(f"{name}.{field}", getattr(self, field), minimum=1)
        for field in ("train_tail", "threads"):
            if getattr(self, field) is not None:
                check_int(f"{name}.{field}", getattr(self, field), minimum=1)
        check_seed(f"{name}.seed", self.seed)
        for field in ("q_head", "text", "progress"):
            need(isinstance(getattr(self, field), bool), f"{name}.{field} must be True or False")


class _Encoder(nn.Module):
    """Item embeddings (ID, + projected text) -> GRU states -> next-item logits and Q-values."""

    def __init__(self, n_items: int, cfg: SequentialConfig, text_vectors: torch.Tensor | None):
        super().__init__()
        self.pad = n_items
        self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=n_items)
        nn.init.normal_(self.item.weight, std=0.05)
        with torch.no_grad():
            self.item.weight[n_items].zero_()
        if text_vectors is not None:
            table = torch.cat([text_vectors.float(), torch.zeros(1, text_vectors.shape[1])])  # pad row = 0
            self.register_buffer("text", table)
            self.text_proj = nn.Linear(text_vectors.shape[1], cfg.dim, bias=False)
        else:
            self.text = None
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.dim, cfg.dim, batch_first=True)
        self.ce_head = nn.Linear(cfg.dim, n_items)
        self.q_head = nn.Linear(cfg.dim, n_items) if cfg.q_head else None

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        out = self.item(items)
        if self.text is not None:
            out = out + self.text_proj(self.text[items])
        return self.drop(out)

    def states(self, items: torch.Tensor) -> torch.Tensor:
        """GRU state after each position of right-padded windows [B, L] -> [B, L, dim]."""
        return self.gru(self.embed(items))[0]


def _windows(histories: list[np.ndarray], rewards: list[np.ndarray], max_len: int, pad: int):
    """Cut each history into windows of ``max_len`` transitions (input item -> next item).

    Returns inputs, targets, rewards [W, L] (right-padded), the number of valid steps, and whether a
    window's last valid step ends the user's history (``done``: no next state exists at all).
    """
    inputs, targets, rew, lengths, done = [], [], [], [], []
    for seq, r in zip(histories, rewards):
        n = len(seq) - 1  # transitions
        for start in range(0, n, max_len):
            stop = min(start + max_len, n)
            k = stop - start
            row_in = np.full(max_len, pad)
            row_in[:k] = seq[start:stop]
            row_tg = np.full(max_len, pad)
            row_tg[:k] = seq[start + 1 : stop + 1]
            row_r = np.zeros(max_len, np.float32)
            row_r[:k] = r[start + 1 : stop + 1]
            inputs.append(row_in)
            targets.append(row_tg)
            rew.append(row_r)
            lengths.append(k)
            done.append(stop == n)

    def as_t(a, dt):
        return torch.as_tensor(np.stack(a) if isinstance(a[0], np.ndarray) else np.array(a), dtype=dt)

    return (
        as_t(inputs, torch.long),
        as_t(targets, torch.long),
        as_t(rew, torch.float32),
        as_t(lengths, torch.long),
        as_t(done, torch.bool),
    )


def _histories(frames, n_users: int) -> tuple[list, list]:
    """Per user (0..n_users-1): chronological item indices and ``rating / 5`` rewards."""
    frame = pd.concat(frames, ignore_index=True) if isinstance(frames, (list, tuple)) else frames
    need = {"user", "item", "timestamp"}
    if not need <= set(frame.columns):
        raise ValueError(
            f"frames lack columns {sorted(need - set(frame.columns))}; pass parts of a split of "
            "MovieLens.indexed() (0-based `user`/`item`, `timestamp`)"
        )
    frame = frame.sort_values(["user", "timestamp", "item"], kind="stable")
    rating = frame["rating"].to_numpy(np.float32) / 5.0 if "rating" in frame else np.ones(len(frame), np.float32)
    users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
    cuts = np.searchsorted(users, np.arange(n_users + 1))
    return ([items[a:b] for a, b in zip(cuts[:-1], cuts[1:])], [rating[a:b] for a, b in zip(cuts[:-1], cuts[1:])])


class SequentialRecommender:
    """Next-item GRU recommender, optionally with an SQN Q-head, trained offline (notebook 09)."""

    def __init__(self, n_users: int, n_items: int, config: SequentialConfig | None = None, text_vectors=None):
        self.config = config or SequentialConfig()
        if n_users <= 0 or n_items <= 0:
            raise ValueError(f"n_users and n_items must be positive, got {n_users}, {n_items}")
        if self.config.text:
            if text_vectors is None:
                raise ValueError("config.text=True needs text_vectors=[n_items, d] (e.g. recnb.embeddings.encode)")
            text_vectors = torch.as_tensor(np.asarray(text_vectors), dtype=torch.float32)
            if text_vectors.shape[0] != n_items:
                raise ValueError(f"text_vectors must have {n_items} rows (one an item), got {text_vectors.shape[0]}")
        else:
            text_vectors = None
        self.n_users, self.n_items = int(n_users), int(n_items)
        torch.manual_seed(self.config.seed)
        self.net = _Encoder(n_items, self.config, text_vectors)
        self.target = copy.deepcopy(self.net).requires_grad_(False) if self.config.q_head else None
        self.history: list[dict] = []
        self.best_epoch, self.fit_seconds = 0, 0.0
        self._score_history = None

    @property
    def name(self) -> str:
        return ("SQN" if self.config.q_head else "GRU (CE)") + (" + text" if self.config.text else "")

    # ------------------------------------------------------------ training
    def _loss(self, inputs, targets, rewards, lengths, done):
        cfg, L = self.config, inputs.shape[1]
        valid = torch.arange(L)[None, :] < lengths[:, None]  # [B, L]
        h = self.net.states(inputs)
        ce = F.cross_entropy(self.net.ce_head(h)[valid], targets[valid])
        if self.net.q_head is None:
            return ce, ce.detach(), torch.zeros(())
        # next state of step t is the state after consuming targets[t] = inputs[t + 1]
        has_next = torch.arange(L)[None, :] < (lengths[:, None] - 1)
        is_done = done[:, None] & (torch.arange(L)[None, :] == (lengths[:, None] - 1))
        used = has_next | is_done
        q = self.net.q_head(h)  # [B, L, N]
        q_taken = q.gather(2, targets.clamp(max=self.n_items - 1).unsqueeze(2)).squeeze(2)
        with torch.no_grad():
            # items in the window up to and including the next step are consumed: masked from the max
            seen = F.one_hot(targets.clamp(max=self.n_items - 1), self.n_items).bool() & valid.unsqueeze(2)
            seen = seen.cumsum(1).bool() | F.one_hot(inputs[:, :1].clamp(max=self.n_items - 1), self.n_items).bool()
            q_next_online = q.detach()[:, 1:].masked_fill(seen[:, :-1], float("-inf"))  # Q(s_{t+1}, .)
            best = q_next_online.argmax(2, keepdim=True)
            q_next_target = self.target.q_head(self.target.states(inputs))[:, 1:].gather(2, best).squeeze(2)
            q_next = torch.cat([q_next_target, torch.zeros(len(inputs), 1)], 1) * has_next
            target = rewards + cfg.gamma * q_next  # done steps: has_next is False, so target = r
        td = F.smooth_l1_loss(q_taken[used], target[used])
        return ce + cfg.q_weight * td, ce.detach(), td.detach()

    def fit(self, train, valid=None, logger=None) -> SequentialRecommender:
        """Train on ``train`` (Track B training part); early-stop on ``valid`` NDCG@10 when given (notebook 09).

        A loss that turns NaN or infinite (checked every step) or a weight that does (checked after every epoch)
        stops training with :class:`recnb._checks.TrainingDiverged` (a ``FloatingPointError``). ``logger`` (e.g.
        :class:`recnb.tracking.RunLogger`) gets ``train/loss`` (and ``train/ce_loss``, ``train/td_loss``),
        ``train/lr`` and ``valid/NDCG@10`` each epoch, then ``log_hparams`` of the config and final metrics;
        what ``logger.log`` raises propagates.
        """
        threads = torch.get_num_threads()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        try:
            self._fit(train, valid, logger)
        finally:
            torch.set_num_threads(threads)
        log_final(logger, self.config, self.history, self.best_epoch)
        return self

    def _fit(self, train, valid, logger):
        cfg, start = self.config, time.perf_counter()
        seqs, rews = _histories(train, self.n_users)
        if cfg.train_tail:
            seqs, rews = [s[-cfg.train_tail :] for s in seqs], [r[-cfg.train_tail :] for r in rews]
        data = _windows(
            [s for s in seqs if len(s) > 1], [r for s, r in zip(seqs, rews) if len(s) > 1], cfg.max_len, self.n_items
        )
        evaluator = (
            FullRankingEvaluator(train, valid, self.n_users, self.n_items, ks=(10,)) if valid is not None else None
        )
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(cfg.seed)
        best, best_state, waited = -np.inf, None, 0
        self.history = []
        where = f"{self.name} training"
        fix = (
            f"lower SequentialConfig.lr (now {cfg.lr:g}; the default is 0.002)"
            + (f" or q_weight (now {cfg.q_weight:g})" if cfg.q_head else "")
            + ", or check the ratings for NaN"
        )
        bar = tqdm(range(1, cfg.max_epochs + 1), desc=self.name, disable=not cfg.progress, leave=False)
        for epoch in bar:
            self.net.train()
            order = torch.randperm(len(data[0]), generator=gen)
            ce_sum = td_sum = 0.0
            for step, lo in enumerate(range(0, len(order), cfg.batch_size), 1):
                idx = order[lo : lo + cfg.batch_size]
                loss, ce, td = self._loss(*(t[idx] for t in data))
                opt.zero_grad()
                loss.backward()
                opt.step()
                if self.target is not None:
                    with torch.no_grad():
                        for p_t, p in zip(self.target.parameters(), self.net.parameters()):
                            p_t.lerp_(p, cfg.target_tau)
                # the floats are read anyway (epoch means); loss = ce + q_weight * td is finite iff both are
                at = f"epoch {epoch}, step {step}"
                ce_value = finite_or_raise(ce, where=where + " (cross-entropy)", step=at, fix=fix)
                td_value = finite_or_raise(td, where=where + " (TD loss)", step=at, fix=fix)
                ce_sum, td_sum = ce_sum + ce_value * len(idx), td_sum + td_value * len(idx)
            check_finite_parameters(self.net, where=where, step=f"epoch {epoch}", fix=fix)
            row = {
                "epoch": epoch,
                "loss": (ce_sum + cfg.q_weight * td_sum) / len(order),
                "ce_loss": ce_sum / len(order),
                "td_loss": td_sum / len(order),
                "seconds": time.perf_counter() - start,
            }
            if evaluator is not None:
                row["valid_NDCG@10"] = value = evaluator.evaluate(self.scorer(train))["NDCG@10"]
                if value > best:
                    best, best_state, waited, self.best_epoch = value, copy.deepcopy(self.net.state_dict()), 0, epoch
                else:
                    waited += 1
                bar.set_postfix(ndcg=f"{value:.4f}")
            self.history.append(row)
            log_epoch(logger, row, opt.param_groups[0]["lr"])
            if waited >= cfg.patience:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        else:
            self.best_epoch = len(self.history)
        self.net.eval()
        self.fit_seconds = time.perf_counter() - start

    # ------------------------------------------------------------ scoring
    def scorer(self, *frames):
        """A ``scores(users)`` callable whose states are each user's last ``max_len`` items in ``frames``."""
        seqs, _ = _histories(list(frames), self.n_users)
        L, pad = self.config.max_len, self.n_items
        window = torch.full((self.n_users, L), pad, dtype=torch.long)
        last = torch.zeros(self.n_users, dtype=torch.long)
        for u, seq in enumerate(seqs):
            if len(seq):
                tail = torch.as_tensor(np.array(seq[-L:]), dtype=torch.long)
                window[u, : len(tail)] = tail
                last[u] = len(tail) - 1

        @torch.no_grad()
        def scores(users) -> torch.Tensor:
            users = torch.as_tensor(users, dtype=torch.long)
            was_training = self.net.training
            self.net.eval()
            h = self.net.states(window[users])
            h = h[torch.arange(len(users)), last[users]]
            self.net.train(was_training)
            return self.net.ce_head(h)

        return scores

    def history_frame(self) -> pd.DataFrame:
        """Per-epoch losses and validation NDCG@10, for plots."""
        return pd.DataFrame(self.history)
