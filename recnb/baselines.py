"""Collaborative-filtering and deep baselines, all scored by one evaluator (introduced in notebook 02).

Every model follows the same small API, so :class:`recnb.metrics.FullRankingEvaluator` and the later
notebooks can score any of them::

    model = BPR(n_users, n_items, BPRConfig()).fit(split.train, split.valid)   # early-stops on valid
    scores = model.scores(torch.arange(n_users))   # Tensor[n_users, n_items], higher = recommend first
    model.history                                   # per-epoch loss and validation metric, for plots

Frames are rows of ``MovieLens.indexed()`` (0-based ``user``/``item``); every rating is a positive
(implicit feedback, docs/protocols.md). Models: :class:`RandomRecommender`, :class:`PopularityRecommender`,
:class:`ItemKNN` (cosine), :class:`BPR` (matrix factorisation, torch), :class:`NeuMF` (NCF, torch).
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_finite_parameters, check_int, check_numbers, check_seed, finite_or_raise, is_int, need
from .metrics import METRICS, FullRankingEvaluator, _pairs, interaction_matrix, torch_threads
from .precision import MixedPrecision, check_precision
from .tracking import log_epoch, log_final


class Recommender:
    """Base class: ``fit(train, valid=None)`` then ``scores(users)``; subclasses fill in both."""

    name = "recommender"

    def __init__(self, n_users: int, n_items: int):
        need(n_users > 0 and n_items > 0, f"n_users and n_items must be positive, got {n_users}, {n_items}")
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.history: list[dict] = []  # one dict an epoch (trained models) or a tried setting (kNN)
        self.fit_seconds = 0.0  # wall-clock seconds of the last fit
        self.fit_cpu_seconds = 0.0  # CPU seconds of the last fit: what it costs on an idle machine
        self._fitted = False

    def fit(self, train, valid=None, logger=None) -> Recommender:
        """Learn from ``train`` (a frame of 0-based ``user``/``item`` rows); ``valid`` guides model selection.

        ``logger`` (trained models; e.g. :class:`recnb.tracking.RunLogger`) gets ``train/loss``, ``train/lr`` and
        ``valid/<metric>`` each epoch, then ``log_hparams`` of the config and final metrics. What ``logger.log``
        raises propagates (an Optuna pruning hook raises ``optuna.TrialPruned`` there).
        """
        wall, cpu, self._logger = time.perf_counter(), time.process_time(), logger
        self._fit(train, valid)
        self._logger = None  # a finished model holds no logger (each fit is given its own)
        self.fit_seconds, self.fit_cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
        self._fitted = True
        return self

    def _fit(self, train, valid) -> None:
        raise NotImplementedError

    def scores(self, users) -> torch.Tensor:
        """Scores of every item for ``users`` (LongTensor of 0-based ids): Tensor[len(users), n_items]."""
        if not self._fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call .fit(train, valid) first")
        users = torch.as_tensor(users, dtype=torch.long)
        if users.numel() and (users.min() < 0 or users.max() >= self.n_users):
            raise IndexError(f"user ids must be in [0, {self.n_users}); got {users.min().item()}..{users.max().item()}")
        with torch.no_grad():  # scores are read, never trained through: no autograd graph to keep
            return self._scores(users)

    def recommend(self, user: int, k: int = 10, exclude=None) -> np.ndarray:
        """Top-``k`` item indices for one user, skipping items in ``exclude`` (e.g. their training items)."""
        need(k > 0, f"k must be positive, got {k}")
        s = self.scores(torch.tensor([user]))[0].clone()
        if exclude is not None and len(exclude):
            s[torch.tensor(np.asarray(exclude), dtype=torch.long)] = float("-inf")
        return torch.sort(s, descending=True, stable=True).indices[:k].numpy()

    def _matrix(self, frame, what="train") -> torch.Tensor:
        need(len(frame) > 0, f"the {what} set is empty: nothing to learn from")
        return interaction_matrix(frame, self.n_users, self.n_items, what)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_users={self.n_users}, n_items={self.n_items})"


# ---------------------------------------------------------------- non-learned baselines


class RandomRecommender(Recommender):
    """Uniformly random scores (fixed by ``seed``): the floor every model must clear (notebook 02)."""

    name = "Random"

    def __init__(self, n_users: int, n_items: int, seed: int = 0):
        super().__init__(n_users, n_items)
        self.seed = seed

    def fit(self, train=None, valid=None, logger=None) -> RandomRecommender:
        return super().fit(train, valid, logger)

    def _fit(self, train, valid):
        gen = torch.Generator().manual_seed(self.seed)
        self._table = torch.rand(self.n_users, self.n_items, generator=gen)

    def _scores(self, users):
        return self._table[users]


class PopularityRecommender(Recommender):
    """Scores every item by how many training users rated it, the same for everyone (notebook 02)."""

    name = "Popularity"

    def _fit(self, train, valid):
        self.counts = self._matrix(train).sum(0).float()

    def _scores(self, users):
        return self.counts.expand(len(users), -1).clone()


class ItemKNN(Recommender):
    """Item-based kNN: score = sum of cosine similarities to the user's items, top ``neighbours`` kept.

    With ``valid`` given, ``fit`` picks ``neighbours`` from ``candidates`` by validation NDCG@10 (notebook 02).
    """

    name = "ItemKNN"

    def __init__(self, n_users: int, n_items: int, neighbours: int = 100, candidates=(20, 50, 100, 200, 400)):
        super().__init__(n_users, n_items)
        need(neighbours > 0 and all(c > 0 for c in candidates), "neighbours and candidates must be positive")
        self.neighbours, self.candidates = int(neighbours), tuple(candidates)

    def _fit(self, train, valid):
        self._x = self._matrix(train).float()
        norms = self._x.norm(dim=0).clamp_min(1e-12)
        sim = (self._x.T @ self._x) / norms[:, None] / norms[None, :]
        sim.fill_diagonal_(0.0)  # an item is not its own neighbour
        self._full_sim = sim
        self._fitted = True
        if valid is not None:
            ev = FullRankingEvaluator(train, valid, self.n_users, self.n_items, ks=(10,))
            for k in self.candidates:
                self._set_neighbours(k)
                self.history.append({"neighbours": k, "valid_NDCG@10": ev.evaluate(self)["NDCG@10"]})
            self.neighbours = max(self.history, key=lambda h: h["valid_NDCG@10"])["neighbours"]
        self._set_neighbours(self.neighbours)

    def _set_neighbours(self, k: int) -> None:
        """Keep, for each item, only its ``k`` most similar items (sparsifies the similarity)."""
        k = min(k, self.n_items - 1)
        top = torch.topk(self._full_sim, k, dim=0)
        self._sim = torch.zeros_like(self._full_sim).scatter_(0, top.indices, top.values)

    def _scores(self, users):
        return self._x[users] @ self._sim


# ---------------------------------------------------------------- trained with early stopping


@dataclass(frozen=True)
class TrainConfig:
    """Options shared by the torch models: optimiser, epochs, early stopping; frozen, validated (notebook 02)."""

    lr: float = 5e-3
    """Adam learning rate."""
    batch_size: int = 2048
    """Training examples per gradient step."""
    max_epochs: int = 60
    """Upper bound on passes over the training ratings; early stopping usually ends sooner."""
    eval_every: int = 1
    """Evaluate on the validation part every this many epochs."""
    patience: int = 4
    """Stop after this many evaluations without a new best validation metric; the best weights are kept."""
    metric: str = "NDCG@10"
    """Validation metric (full ranking) that early stopping watches."""
    seed: int = 0
    """Seeds initial weights and negative sampling."""
    progress: bool = True
    """Show a tqdm progress bar over epochs."""
    threads: int | None = 1
    """CPU threads while training (None: torch's default). These models run many tiny ops, where a
    second thread costs more in synchronisation than it saves (and thrashes on a busy machine)."""

    def __post_init__(self):
        name = type(self).__name__
        rates = [n for n in ("reg", "weight_decay") if hasattr(self, n)]
        check_numbers(name, self, positive=("lr",), non_negative=rates)
        for field in ("batch_size", "max_epochs", "eval_every", "patience", "dim", "negatives"):
            if hasattr(self, field):
                check_int(f"{name}.{field}", getattr(self, field), minimum=1)
        check_seed(f"{name}.seed", self.seed)
        if self.threads is not None:
            check_int(f"{name}.threads", self.threads, minimum=1)
        need(isinstance(self.progress, bool), f"{name}.progress must be True or False, got {self.progress!r}")
        ok = isinstance(self.metric, str) and re.fullmatch(rf"({'|'.join(METRICS)})@[1-9]\d*", self.metric)
        need(ok, f"{name}.metric must be one of {METRICS} with a cut-off, e.g. 'NDCG@10'; got {self.metric!r}")


@dataclass(frozen=True)
class BPRConfig(TrainConfig):
    """BPR matrix factorisation (Rendle et al., 2009) hyperparameters; defaults tuned on Track A validation."""

    dim: int = 64
    """Latent factors per user and item."""
    reg: float = 1e-2
    """L2 penalty on the user, positive-item and negative-item factors of each triple (per example).
    Chosen on Track A validation NDCG@10 from {1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1}: 1e-2 was best."""
    patience: int = 5
    """Stop after this many evaluations without a new best validation metric; the best weights are kept."""


@dataclass(frozen=True)
class NeuMFConfig(TrainConfig):
    """NeuMF / NCF (He et al., 2017) hyperparameters: a GMF branch and an MLP branch, BCE loss."""

    lr: float = 2e-3
    """Adam learning rate."""
    dim: int = 32
    """Embedding size of each branch (GMF and MLP have their own embeddings)."""
    hidden: tuple = (64, 32)
    """Sizes of the MLP branch's hidden layers after the user+item embedding concat."""
    negatives: int = 4
    """Sampled unrated items per rated one (the NCF paper's default)."""
    weight_decay: float = 1e-6
    """Adam L2 weight decay."""
    precision: str = "fp32"
    """Training arithmetic: ``"fp32"``, ``"bf16"`` (autocast; CPU or CUDA) or ``"fp16"`` (autocast with a
    gradient scaler; CUDA only). Weights and scores stay float32 (docs/training.md)."""

    def __post_init__(self):
        super().__post_init__()
        ok = isinstance(self.hidden, tuple) and self.hidden and all(is_int(h) and h >= 1 for h in self.hidden)
        need(ok, f"NeuMFConfig.hidden must be a non-empty tuple of positive integers, got {self.hidden!r}")
        check_precision("NeuMFConfig", self.precision)


class TorchRecommender(Recommender):
    """Shared training loop: epochs of minibatch steps, validation every few epochs, early stopping.

    A loss that turns NaN or infinite (checked every step) or a weight that does (checked after every epoch)
    stops training with :class:`recnb._checks.TrainingDiverged` (a ``FloatingPointError``) naming the model,
    the epoch and step, and the learning rate to lower.
    """

    config_class = TrainConfig

    def __init__(self, n_users: int, n_items: int, config: TrainConfig | None = None):
        super().__init__(n_users, n_items)
        self.config = config or self.config_class()
        if not isinstance(self.config, self.config_class):
            want, got = self.config_class.__name__, type(self.config).__name__
            raise TypeError(f"{type(self).__name__} needs a {want}, got {got}")
        # the baselines train on the CPU; only NeuMFConfig has a precision option
        self.mixed = MixedPrecision(getattr(self.config, "precision", "fp32"), "cpu", type(self.config).__name__)
        torch.manual_seed(self.config.seed)
        self.net = self._build()
        self.best_epoch = 0

    def _build(self) -> nn.Module:
        raise NotImplementedError

    def _epoch(self, users, items, optimiser, gen) -> float:
        raise NotImplementedError

    def _fit(self, train, valid):
        with torch_threads(self.config.threads):
            self._train(train, valid)
        log_final(self._logger, self.config, self.history, self.best_epoch)

    def _train(self, train, valid):
        c, start = self.config, time.perf_counter()
        self._seen = self._matrix(train)
        users, items = (torch.from_numpy(a) for a in _pairs(train, self.n_users, self.n_items, "train"))
        k = int(c.metric.split("@")[1])
        evaluator = None if valid is None else FullRankingEvaluator(train, valid, self.n_users, self.n_items, ks=(k,))
        gen = torch.Generator().manual_seed(c.seed)
        optimiser = self._optimiser()
        best, best_state, waited = -np.inf, None, 0
        self.history, self._fitted = [], True
        bar = tqdm(range(1, c.max_epochs + 1), desc=type(self).__name__, disable=not c.progress, leave=False)
        for epoch in bar:
            self.net.train()
            self._epoch_number = epoch
            loss = self._epoch(users, items, optimiser, gen)
            check_finite_parameters(
                self.net, where=f"{type(self).__name__} training", step=f"epoch {epoch}", fix=self._diverged_fix()
            )
            row = {"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - start}
            if evaluator is not None and epoch % c.eval_every == 0:
                self.net.eval()
                row[f"valid_{c.metric}"] = value = evaluator.evaluate(self)[c.metric]
                if value > best:
                    best, best_state, waited, self.best_epoch = value, copy.deepcopy(self.net.state_dict()), 0, epoch
                else:
                    waited += 1
                bar.set_postfix(loss=f"{loss:.4f}", **{c.metric: f"{value:.4f}"})
            self.history.append(row)
            log_epoch(self._logger, row, optimiser.param_groups[0]["lr"])
            if waited >= c.patience:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)  # keep the best validation epoch, not the last
        else:
            self.best_epoch = len(self.history)
        self.net.eval()

    def _optimiser(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.config.lr)

    def _diverged_fix(self) -> str:
        c, default = self.config, type(self.config).__dataclass_fields__["lr"].default
        return f"lower {type(c).__name__}.lr (now {c.lr:g}; the default is {default:g})"

    def _minibatches(self, n: int, optimiser, gen, batch_loss) -> float:
        """One epoch: ``n`` examples in random minibatches, a step on each ``batch_loss(idx)``; the mean loss.

        Each batch loss is read as a float (for the mean anyway) and raises TrainingDiverged when NaN or infinite.
        """
        order, total, where = torch.randperm(n, generator=gen), 0.0, f"{type(self).__name__} training"
        for step, lo in enumerate(range(0, n, self.config.batch_size), 1):
            idx = order[lo : lo + self.config.batch_size]
            loss = batch_loss(idx)
            optimiser.zero_grad()
            self.mixed.step(loss, optimiser)
            at = f"epoch {self._epoch_number}, step {step}"
            total += finite_or_raise(loss, where=where, step=at, fix=self._diverged_fix()) * len(idx)
        return total / n

    def _negatives(self, users, gen) -> torch.Tensor:
        """Uniform random items, resampled (twice) where the user rated them: near-exact unrated negatives."""
        neg = torch.randint(0, self.n_items, users.shape, generator=gen)
        for _ in range(2):
            clash = self._seen[users, neg]
            if not clash.any():
                break
            neg[clash] = torch.randint(0, self.n_items, (int(clash.sum()),), generator=gen)
        return neg

    def history_frame(self) -> pd.DataFrame:
        """The training history as a frame (one row an epoch)."""
        return pd.DataFrame(self.history)


class _MF(nn.Module):
    def __init__(self, n_users, n_items, dim):
        super().__init__()
        self.user, self.item = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)
        self.bias = nn.Embedding(n_items, 1)
        for emb in (self.user, self.item):
            nn.init.normal_(emb.weight, std=0.1)
        nn.init.zeros_(self.bias.weight)

    def forward(self, users, items):
        return (self.user(users) * self.item(items)).sum(-1) + self.bias(items).squeeze(-1)


class BPR(TorchRecommender):
    """BPR matrix factorisation: learn u·i + b_i so rated items outrank sampled unrated ones (notebook 02)."""

    name = "BPR-MF"
    config_class = BPRConfig

    def _build(self):
        return _MF(self.n_users, self.n_items, self.config.dim)

    def _epoch(self, users, items, optimiser, gen) -> float:
        def batch_loss(idx):
            u, i = users[idx], items[idx]
            j = self._negatives(u, gen)
            pu, qi, qj = self.net.user(u), self.net.item(i), self.net.item(j)
            bias = self.net.bias.weight.squeeze(1)
            diff = (pu * (qi - qj)).sum(1) + bias[i] - bias[j]  # x_ui - x_uj
            factors = pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum()
            return -F.logsigmoid(diff).mean() + self.config.reg * factors / len(idx)

        return self._minibatches(len(users), optimiser, gen, batch_loss)

    def _scores(self, users):
        net = self.net
        return net.user(users) @ net.item.weight.T + net.bias.weight.T

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Learned (user factors [n_users, dim], item factors [n_items, dim]), detached (notebook 02)."""
        return self.net.user.weight.detach().clone(), self.net.item.weight.detach().clone()


class _NeuMF(nn.Module):
    def __init__(self, n_users, n_items, dim, hidden):
        super().__init__()
        self.gmf_user, self.gmf_item = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)
        self.mlp_user, self.mlp_item = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)
        for emb in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(emb.weight, std=0.01)
        # first MLP layer split into a user half and an item half: W[u; i] = W_u u + W_i i, which lets
        # scoring all items add one [B, 1, h] and one [1, I, h] tensor instead of building B*I concats
        self.first_user = nn.Linear(dim, hidden[0])
        self.first_item = nn.Linear(dim, hidden[0], bias=False)
        layers = []
        for a, b in zip(hidden[:-1], hidden[1:]):
            layers += [nn.ReLU(), nn.Linear(a, b)]
        self.mlp = nn.Sequential(*layers, nn.ReLU())
        self.out = nn.Linear(dim + hidden[-1], 1)

    def forward(self, users, items):
        gmf = self.gmf_user(users) * self.gmf_item(items)
        mlp = self.mlp(self.first_user(self.mlp_user(users)) + self.first_item(self.mlp_item(items)))
        return self.out(torch.cat([gmf, mlp], -1)).squeeze(-1)

    def all_items(self, users):
        gmf = self.gmf_user(users)[:, None, :] * self.gmf_item.weight[None]
        hid = self.first_user(self.mlp_user(users))[:, None, :] + self.first_item(self.mlp_item.weight)[None]
        return self.out(torch.cat([gmf, self.mlp(hid)], -1)).squeeze(-1)


class NeuMF(TorchRecommender):
    """Neural collaborative filtering (NeuMF = GMF + MLP), trained as rated-vs-sampled classification (notebook 02)."""

    name = "NeuMF"
    config_class = NeuMFConfig

    def _build(self):
        return _NeuMF(self.n_users, self.n_items, self.config.dim, tuple(self.config.hidden))

    def _optimiser(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _epoch(self, users, items, optimiser, gen) -> float:
        negatives = self.config.negatives
        # each rating plus `negatives` unrated items for the same user, labelled 1 and 0
        u_all = users.repeat(1 + negatives)
        i_all = torch.cat([items, self._negatives(users.repeat(negatives), gen)])
        y_all = torch.cat([torch.ones(len(items)), torch.zeros(len(items) * negatives)])

        def batch_loss(idx):
            with self.mixed.autocast():  # fp32: a disabled context, the plain float32 step
                logits = self.net(u_all[idx], i_all[idx])
            return F.binary_cross_entropy_with_logits(logits.float(), y_all[idx])

        return self._minibatches(len(u_all), optimiser, gen, batch_loss)

    def _scores(self, users):
        chunks = [self.net.all_items(chunk) for chunk in users.split(128)]
        return torch.cat(chunks) if chunks else torch.empty(0, self.n_items)
