"""Ranking metrics and one shared full-ranking evaluator (introduced in notebook 02).

Every model in the workbook is scored by :class:`FullRankingEvaluator`, so numbers are comparable:

* **full ranking** -- each user's scores over *all* catalogue items are sorted (no sampled negatives);
* **masking** -- items the user met in training (and, when scoring test, in validation) get ``-inf``
  and so can neither be recommended nor count as hits;
* **ties** -- broken by lower item index (as a stable sort would), so results repeat exactly;
* **users** -- a user with no target item left after masking is skipped (and counted as skipped).

Per user, with ``rel_i`` = 1 if the item at rank ``i`` (1-based) is a target and ``T`` the user's targets:

* ``HR@k`` = 1 if any target is in the top k; ``Precision@k`` = hits / k; ``Recall@k`` = hits / |T|
* ``NDCG@k`` = sum_i rel_i / log2(i + 1) divided by the same sum for an ideal list (min(k, |T|) hits)
* ``MRR`` = 1 / rank of the first target in the full ranking (no cut-off)

and over all top-k lists together: ``Coverage@k`` (share of the catalogue recommended at least once),
``AvgPop@k`` (mean training popularity, as the share of users who rated it, of recommended items) and
``Gini@k`` (Gini coefficient of how often each catalogue item is recommended; 0 = equal exposure).

A model is anything with ``scores(users: LongTensor) -> Tensor[len(users), n_items]`` (see
:mod:`recnb.baselines`), a plain callable with the same signature, or a precomputed score matrix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import stats
from ._checks import check_columns, check_int, check_seed, is_int, need

METRICS = ("HR", "NDCG", "Recall", "Precision")
CATALOGUE_METRICS = ("Coverage", "AvgPop", "Gini")


# ---------------------------------------------------------------- inputs


def _pairs(frame, n_users: int, n_items: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) 0-based arrays from a frame with ``user``/``item`` columns, or an [N, 2] array."""
    if isinstance(frame, pd.DataFrame):
        check_columns(
            f"{what} frame",
            frame,
            ("user", "item"),
            "pass rows of MovieLens.indexed() (0-based `user`, `item`) or an [N, 2] array of (user, item) pairs",
        )
        users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
    else:
        arr = np.asarray(frame)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(
                f"{what} must be a DataFrame with `user`/`item` columns or an [N, 2] array, got shape {arr.shape}"
            )
        users, items = arr[:, 0], arr[:, 1]
    if not (np.issubdtype(users.dtype, np.integer) and np.issubdtype(items.dtype, np.integer)):
        raise TypeError(f"{what}: user and item ids must be integers (0-based indices from MovieLens.indexed())")
    for name, ids, size in (("user", users, n_users), ("item", items, n_items)):
        bad = (ids < 0) | (ids >= size)
        if bad.any():
            raise IndexError(
                f"{what}: {name} ids {np.unique(ids[bad])[:5].tolist()} are outside the catalogue "
                f"[0, {size}); use the 0-based `{name}` column of MovieLens.indexed(), not `{name}_id`"
            )
    return users.astype(np.int64), items.astype(np.int64)


def interaction_matrix(frame, n_users: int, n_items: int, what: str = "interactions") -> torch.Tensor:
    """Dense bool [n_users, n_items] matrix, True where the user rated the item (notebook 02)."""
    check_int("n_users", n_users, minimum=1)
    check_int("n_items", n_items, minimum=1)
    users, items = _pairs(frame, n_users, n_items, what)
    out = torch.zeros(n_users, n_items, dtype=torch.bool)
    out[torch.from_numpy(users), torch.from_numpy(items)] = True
    return out


def _check_ks(ks) -> tuple[int, ...]:
    """The cut-offs, sorted and unique; one int or an iterable of them, each an integer >= 1."""
    ks = (ks,) if is_int(ks) or isinstance(ks, bool) else tuple(ks)
    need(ks, "ks is empty; pass cut-offs such as ks=(5, 10, 20)")
    return tuple(sorted({check_int("every cut-off k", k, minimum=1) for k in ks}))


# ---------------------------------------------------------------- single-list metrics (hand-checkable)


def dcg_discounts(k: int) -> torch.Tensor:
    """1 / log2(rank + 1) for ranks 1..k (notebook 02)."""
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))


def ndcg_at_k(ranked_relevance: Sequence[int], n_relevant: int, k: int) -> float:
    """NDCG@k of one ranked list of 0/1 relevances, with ``n_relevant`` targets in total (notebook 02)."""
    k = _check_ks(k)[0]
    if n_relevant <= 0:
        raise ValueError("n_relevant must be positive: NDCG is undefined for a user with no targets")
    rel = torch.as_tensor(list(ranked_relevance)[:k], dtype=torch.float64)
    dcg = (rel * dcg_discounts(len(rel))).sum()
    idcg = dcg_discounts(min(k, n_relevant)).sum()
    return float(dcg / idcg)


def gini(counts) -> float:
    """Gini coefficient of non-negative counts: 0 when all equal, -> 1 when one item gets all (notebook 02)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    if x.size == 0 or (x < 0).any():
        raise ValueError("gini needs a non-empty array of non-negative counts")
    if x.sum() == 0:
        return 0.0
    n = x.size
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * x).sum()) / (n * x.sum()) - (n + 1) / n)


@contextmanager
def torch_threads(n: int | None):
    """Run a block with ``n`` torch CPU threads (None: leave as is), restoring the setting after (notebook 02).

    The evaluator and the small models are memory-bound: on a 2-core machine a second thread buys little,
    and on a busy one it thrashes (we measured 3x slower), so they default to one thread.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- exact top-k without a full sort


def top_k_stable(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each row's ``k`` best scores, ties broken by lower index -- a full stable sort's first ``k``
    columns, computed with ``topk`` plus a tie fix-up (several times faster than sorting all items)."""
    kth = torch.topk(scores, k, dim=1).values[:, -1:]  # the k-th best value per row
    above = scores > kth
    need = k - above.sum(1, keepdim=True)  # how many of the items tied at the k-th value still fit
    tied = scores == kth
    chosen = above | (tied & (torch.cumsum(tied, 1) <= need))  # the lowest-index tied items
    idx = chosen.nonzero()[:, 1].view(len(scores), k)  # exactly k per row, in index order
    order = torch.sort(scores.gather(1, idx), dim=1, descending=True, stable=True).indices
    return idx.gather(1, order)


def first_hit_rank(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each row's best-ranked target in the full ranking (ties by lower index)."""
    target_scores = scores.masked_fill(~targets, float("-inf"))
    best = target_scores.max(1, keepdim=True).values
    # argmax documents returning the first maximal index: the lowest-index target among the best-scored
    best_idx = (targets & (target_scores == best)).int().argmax(1, keepdim=True)
    cols = torch.arange(scores.shape[1]).unsqueeze(0)
    ahead = (scores > best) | ((scores == best) & (cols < best_idx))
    return ahead.sum(1) + 1


# ---------------------------------------------------------------- the evaluator


@dataclass
class EvalResult:
    """What one evaluation found: mean metrics per cut-off, the protocol, and who was scored."""

    metrics: dict  # "NDCG@10" -> value, also "MRR", "Coverage@10", ...
    ks: tuple
    protocol: str
    n_users: int  # users evaluated
    n_skipped: int  # users with no target left after masking
    seconds: float  # wall clock
    per_user: dict = field(default_factory=dict, repr=False)  # "NDCG@10" -> np.ndarray over evaluated users
    users: np.ndarray = field(default=None, repr=False)  # which users, in the order of per_user
    cpu_seconds: float = 0.0  # CPU time: what the evaluation costs on an idle machine

    def __getitem__(self, name: str) -> float:
        return self.metrics[name]

    def table(self) -> pd.DataFrame:
        """Metrics as a frame: one row a cut-off k, one column a metric (MRR repeated, it has no k)."""
        rows = {k: {m: self.metrics[f"{m}@{k}"] for m in (*METRICS, *CATALOGUE_METRICS)} for k in self.ks}
        out = pd.DataFrame(rows).T
        out["MRR"] = self.metrics["MRR"]
        out.index.name = "k"
        return out

    def __str__(self) -> str:
        k = 10 if 10 in self.ks else self.ks[0]
        main = ", ".join(f"{m}@{k}={self.metrics[f'{m}@{k}']:.4f}" for m in METRICS)
        return (
            f"{main}, MRR={self.metrics['MRR']:.4f} | {self.n_users} users ({self.n_skipped} skipped) | {self.protocol}"
        )


class FullRankingEvaluator:
    """Scores a model by ranking every catalogue item for every user with targets (notebook 02).

    ``train`` (and each frame in ``exclude``) are masked; ``targets`` are what should be recommended.
    For test scoring pass ``exclude={"valid": valid}`` (or a list of frames) so validation items are
    masked too; :func:`split_evaluator` does this for a :class:`recnb.splits.Split`. Frames need 0-based
    ``user``/``item`` columns (``MovieLens.indexed()``); ``n_users``/``n_items`` fix the catalogue.
    """

    def __init__(
        self,
        train,
        targets,
        n_users: int,
        n_items: int,
        *,
        exclude: Iterable = (),
        ks=(5, 10, 20),
        protocol: str = "",
        batch_size: int = 1024,
        threads: int | None = 1,
    ):
        self.ks = _check_ks(ks)
        check_int("batch_size", batch_size, minimum=1)
        if len(targets) == 0:
            raise ValueError("the evaluation set (targets) is empty: nothing to evaluate; check the split")
        self.n_users, self.n_items, self.batch_size = int(n_users), int(n_items), int(batch_size)
        self.threads = threads
        self.train = interaction_matrix(train, n_users, n_items, "train")
        self.mask = self.train.clone()
        # exclude: frames, or {name: frame} so the protocol can name what is masked
        exclude = dict(exclude) if isinstance(exclude, dict) else {f"exclude[{i}]": f for i, f in enumerate(exclude)}
        for name, frame in exclude.items():
            self.mask |= interaction_matrix(frame, n_users, n_items, name)
        self.targets = interaction_matrix(targets, n_users, n_items, "targets") & ~self.mask
        self.users = torch.nonzero(self.targets.any(1)).squeeze(1)
        if len(self.users) == 0:
            raise ValueError("no user has a target item that is not masked (all targets are in train/exclude)")
        self.n_skipped = self.n_users - len(self.users)
        # popularity of each item in training, as the share of users who rated it
        self.item_popularity = self.train.sum(0).double() / self.n_users
        masked = " + ".join(["train", *exclude])
        self.protocol = (
            f"{protocol + '; ' if protocol else ''}full ranking over all {self.n_items} items, "
            f"{masked} masked, users without targets skipped, ties by item index"
        )

    def _scores(self, model, users: torch.Tensor) -> torch.Tensor:
        if isinstance(model, torch.Tensor):
            if model.shape != (self.n_users, self.n_items):
                raise ValueError(
                    f"a score matrix must have shape ({self.n_users}, {self.n_items}), got {tuple(model.shape)}"
                )
            out = model[users]
        else:
            fn = model.scores if hasattr(model, "scores") else model
            if not callable(fn):
                raise TypeError("model must have a scores(users) method, be callable, or be a score tensor")
            with torch.no_grad():
                out = fn(users)
        out = torch.as_tensor(out)
        if out.shape != (len(users), self.n_items):
            raise ValueError(f"scores(users) must return shape ({len(users)}, {self.n_items}), got {tuple(out.shape)}")
        return out.detach().to("cpu", torch.float32)

    def evaluate(self, model) -> EvalResult:
        """Rank all items for every evaluated user and average the metrics (batched tensor ops)."""
        with torch_threads(self.threads):
            return self._evaluate(model)

    def _evaluate(self, model) -> EvalResult:
        start, cpu = time.perf_counter(), time.process_time()
        kmax = max(self.ks)
        disc = dcg_discounts(self.n_items).float()
        ideal = torch.cumsum(disc, 0)  # ideal DCG with j targets = ideal[j - 1]
        per_user = {f"{m}@{k}": [] for m in METRICS for k in self.ks}
        per_user["MRR"] = []
        exposure = {k: torch.zeros(self.n_items, dtype=torch.float64) for k in self.ks}
        pop_sum = {k: 0.0 for k in self.ks}
        for lo in range(0, len(self.users), self.batch_size):
            users = self.users[lo : lo + self.batch_size]
            scores = self._scores(model, users).masked_fill(self.mask[users], float("-inf"))
            if torch.isnan(scores).any():
                raise ValueError("scores contain NaN; the model diverged (lower the learning rate)")
            targets = self.targets[users]
            order = top_k_stable(scores, min(kmax, self.n_items))
            rel = targets.gather(1, order).float()  # [B, kmax], 1 where a target sits
            n_rel = targets.sum(1).float()
            per_user["MRR"].append(1.0 / first_hit_rank(scores, targets).float())
            for k in self.ks:
                hits = rel[:, :k].sum(1)
                dcg = (rel[:, :k] * disc[:k]).sum(1)
                idcg = ideal[torch.clamp(n_rel, max=k).long() - 1]
                per_user[f"HR@{k}"].append((hits > 0).float())
                per_user[f"Precision@{k}"].append(hits / k)
                per_user[f"Recall@{k}"].append(hits / n_rel)
                per_user[f"NDCG@{k}"].append(dcg / idcg)
                top = order[:, :k]
                exposure[k] += torch.bincount(top.reshape(-1), minlength=self.n_items).double()
                pop_sum[k] += float(self.item_popularity[top].sum())
        per_user = {name: torch.cat(vals).double().numpy() for name, vals in per_user.items()}
        metrics = {name: float(vals.mean()) for name, vals in per_user.items()}
        for k in self.ks:
            metrics[f"Coverage@{k}"] = float((exposure[k] > 0).double().mean())
            metrics[f"AvgPop@{k}"] = pop_sum[k] / (len(self.users) * k)
            metrics[f"Gini@{k}"] = gini(exposure[k].numpy())
        return EvalResult(
            metrics,
            self.ks,
            self.protocol,
            len(self.users),
            self.n_skipped,
            time.perf_counter() - start,
            per_user,
            self.users.numpy(),
            time.process_time() - cpu,
        )


def split_evaluator(split, part: str, n_users: int, n_items: int, ks=(5, 10, 20)) -> FullRankingEvaluator:
    """Evaluator for ``split.valid`` (train masked) or ``split.test`` (train + valid masked) (notebook 02)."""
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    exclude = {"valid": split.valid} if part == "test" else {}
    return FullRankingEvaluator(
        split.train,
        getattr(split, part),
        n_users,
        n_items,
        exclude=exclude,
        ks=ks,
        protocol=f"{split.protocol}, {part} part",
    )


def paired_bootstrap(
    a: EvalResult, b: EvalResult, metric: str = "NDCG@10", n: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-user ``a - b`` and its 95% paired-bootstrap interval ``(mean, low, high)`` with ``n`` resamples
    (same users in both; :func:`recnb.stats.paired_bootstrap_ci`) (notebook 02)."""
    need(
        a.users is not None and b.users is not None and np.array_equal(a.users, b.users),
        "paired_bootstrap needs two results from the same evaluator (the same users)",
    )
    if metric not in a.per_user:
        raise KeyError(f"no per-user values for {metric!r}; choose one of {sorted(a.per_user)}")
    check_int("n (bootstrap resamples)", n, minimum=1)
    check_seed("seed", seed)
    return stats.paired_bootstrap_ci(a.per_user[metric], b.per_user[metric], 0.95, n, seed)
