"""Side by side: language-model, collaborative-filtering and RL recommenders on one protocol (notebook 08).

Each model enters as what it can provide:

* a **score matrix** ``[n_users, n_items]`` for offline ranking (Tracks A and B, docs/protocols.md) --
  scored by :func:`ranking_row` with the shared :class:`recnb.metrics.FullRankingEvaluator`;
* a **policy** ``policy(env) -> items`` for the simulator, where ``env`` is the platform's view of it
  (:class:`recnb.platform.PlatformEnv`: the platform's log and models, never the simulator's hidden
  state) -- a score matrix becomes one with :class:`ScorePolicy`, a sequential model with
  :class:`SequencePolicy`; :func:`simulate` runs it on fresh users of the env's pool (the evaluation
  users, disjoint from the users agents and heuristics were trained or tuned on) and also counts how
  often each item was shown (exposure). Only a policy labelled *oracle* reads ``env.sim``.

An RL agent is ranked offline from its Q-values at each real user's first step, observed through the
platform (:func:`initial_state_scores`); the oracle's ranking is the simulator's own expected reward
(:func:`oracle_initial_scores`), a reference with information no platform has.

Robustness (:func:`robustness_study`) retrains cheap models on training data with injected abnormal users
(:mod:`recnb.robustness`) and measures the drop in NDCG@10 and the attacked item's exposure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .metrics import FullRankingEvaluator, gini
from .policies import NEG, Evaluation, evaluate_policy, top_items


def _platform_env(env, what: str):
    """``env`` if it is the platform's view of a simulator, else a TypeError naming the fix."""
    if not (hasattr(env, "platform_scores") and hasattr(env, "sim")):
        raise TypeError(
            f"{what} reads the platform's view of the simulator: wrap it, "
            "recnb.platform.PlatformEnv(sim, recnb.platform.movielens_platform(), users=eval_users)"
        )
    return env


# ---------------------------------------------------------------- models as simulator policies


class ScorePolicy:
    """A static recommender in the simulator: each user's best available items by fixed scores (notebook 08).

    Simulated users are calibration rows, which are the real users in ``MovieLens.indexed()`` order,
    so row ``u`` of ``scores`` is the model's view of simulated user ``u``. It reads the platform's
    view (``env.user``: who the user is; ``env.available_mask()``: what the log says they consumed).
    """

    def __init__(self, scores: torch.Tensor, name: str):
        self.scores, self.name = torch.as_tensor(scores, dtype=torch.float32), name

    def __call__(self, env) -> torch.Tensor:
        env = _platform_env(env, "ScorePolicy")
        if self.scores.shape[1] != env.n_items or self.scores.shape[0] < env.n_calibration_users:
            raise ValueError(
                f"scores must be [>= {env.n_calibration_users} users, {env.n_items} items], "
                f"got {tuple(self.scores.shape)}"
            )
        return top_items(self.scores.to(env.device)[env.user], env.available_mask(), env.config.slate_size)


def left_aligned(history: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Histories (oldest first, padding in front) as windows padded at the end, and the
    index of each row's last item (0 for an empty row) -- the layout sequential models read (notebook 08)."""
    is_pad = history == pad
    order = torch.sort(is_pad.int(), dim=1, stable=True).indices  # real items first, in their order
    window = history.gather(1, order)
    last = ((~is_pad).sum(1) - 1).clamp_min(0)
    return window, last


class SequencePolicy:
    """A sequential next-item model (``recnb.offline_rl.SequentialRecommender``) as a simulator policy:
    its state is the user's recent consumption as the platform logged it (``env.history``) (notebook 08)."""

    def __init__(self, model, name: str | None = None):
        self.model, self.name = model, name or model.name

    @torch.no_grad()
    def __call__(self, env) -> torch.Tensor:
        env = _platform_env(env, "SequencePolicy")
        window, last = left_aligned(env.history, env.n_items)
        net = self.model.net
        was_training = net.training
        net.eval()
        h = net.states(window)[torch.arange(len(window)), last]
        net.train(was_training)
        return top_items(net.ce_head(h), env.available_mask(), env.config.slate_size)


class ExposureCounter:
    """Wraps a policy and counts how often each item is shown to users still in their episode (notebook 08)."""

    def __init__(self, policy, n_items: int):
        self.policy, self.counts = policy, np.zeros(n_items, dtype=np.int64)
        self.name = getattr(policy, "name", type(policy).__name__)

    def reset(self, seed: int = 0):
        self.counts[:] = 0
        if hasattr(self.policy, "reset"):
            self.policy.reset(seed)

    def __call__(self, env) -> torch.Tensor:
        items = self.policy(env)
        shown = items[env.active] if items.dim() == 1 else items[env.active].reshape(-1)
        self.counts += np.bincount(shown.cpu().numpy(), minlength=len(self.counts))
        return items


def simulate(env, policy, n_users: int, seed: int) -> tuple[dict, Evaluation]:
    """Run ``policy`` on ``n_users`` fresh users of ``env``'s pool (docs/protocols.md, simulator protocol) (notebook 08).

    ``env`` is a :class:`recnb.platform.PlatformEnv` (give it the evaluation users). Returns a table row --
    return, session length and click rate with 95% CIs, plus exposure coverage, Gini and mean popularity
    of the shown items -- and the per-user :class:`recnb.policies.Evaluation`, for paired comparisons
    (:func:`recnb.policies.paired_difference`) with other policies run with the same seed.
    """
    env = _platform_env(env, "simulate")
    counter = ExposureCounter(policy, env.n_items)
    ev = evaluate_policy(env, counter, n_users=n_users, seed=seed)
    row = ev.summary()
    counts = counter.counts
    pop = env.item_popularity.cpu().numpy() / env.n_calibration_users  # share of users who rated the item
    row.update(
        exposure_coverage=float((counts > 0).mean()),
        exposure_gini=gini(counts),
        exposure_avgpop=float((counts * pop).sum() / max(counts.sum(), 1)),
    )
    return row, ev


# ---------------------------------------------------------------- offline ranking


def ranking_row(evaluator: FullRankingEvaluator, scores, k: int = 10) -> dict:
    """NDCG, HR, coverage, popularity and Gini of the top-k lists of one model under ``evaluator`` (notebook 08)."""
    res = evaluator.evaluate(scores)
    return {f"{m}@{k}": res[f"{m}@{k}"] for m in ("NDCG", "HR", "Coverage", "AvgPop", "Gini")} | {"users": res.n_users}


def text_knn_scores(train: pd.DataFrame, text_vectors: np.ndarray, n_users: int, neighbours: int = 20) -> torch.Tensor:
    """[n_users, n_items] text kNN scores over the whole catalogue from ``train`` (notebook 03's scorer) (notebook 08)."""
    from .coldstart import knn_scores, rating_matrix

    n_items = len(text_vectors)
    R = rating_matrix(train, n_users, n_items)
    return torch.as_tensor(knn_scores(R, text_vectors, np.arange(n_items), neighbours), dtype=torch.float32)


def hybrid_scores(
    bpr,
    train: pd.DataFrame,
    text_vectors: np.ndarray,
    valid_evaluator: FullRankingEvaluator,
    shrinkages=(0.0, 3.0, 10.0, 30.0, 100.0),
    seed: int = 0,
) -> tuple[torch.Tensor, float]:
    """Text -> BPR hybrid (notebook 03) on the whole catalogue: item factors blend ID and text-projected
    factors by confidence; the shrinkage is chosen on validation NDCG@10. Returns (scores, shrinkage) (notebook 08)."""
    from .coldstart import blend, fit_text_projection

    n_items = len(text_vectors)
    counts = np.bincount(train["item"], minlength=n_items).astype(np.float64)
    P, Q = (t.numpy() for t in bpr.factors())
    b = bpr.net.bias.weight.detach().numpy()[:, 0]
    Qt, bt = fit_text_projection(text_vectors, Q, b, counts, seed=seed)(text_vectors)

    def scores(lam):
        Qh, bh = blend(Q, b, Qt, bt, counts, lam)
        return torch.as_tensor(P @ Qh.T + bh, dtype=torch.float32)

    k = 10 if 10 in valid_evaluator.ks else valid_evaluator.ks[0]
    best = max(shrinkages, key=lambda lam: valid_evaluator.evaluate(scores(lam))[f"NDCG@{k}"])
    return scores(best), float(best)


def _first_step(env, n_users: int) -> None:
    """Start one session for each of the first ``n_users`` calibration users (the real users, in order)."""
    if n_users > env.n_calibration_users:
        raise ValueError(f"the simulator knows {env.n_calibration_users} users, asked for {n_users}")
    env.reset(n_users, seed=0, users=torch.arange(n_users))


@torch.no_grad()
def initial_state_scores(agent, env, n_users: int) -> torch.Tensor:
    """[n_users, n_items] Q-values of an agent at each real user's first step, observed through the platform
    (``agent.observe(env)``, by default :func:`recnb.platform.observe_platform`), so an RL policy can be ranked
    offline on Track A -- the split the simulator and the platform are fitted on (notebook 08).

    ``env`` is a :class:`recnb.platform.PlatformEnv`; the user pool is ignored (every real user is scored).
    """
    env = _platform_env(env, "initial_state_scores")
    _first_step(env, n_users)
    return agent.q_values(agent.observe(env)).float().cpu()


@torch.no_grad()
def oracle_initial_scores(env, n_users: int) -> torch.Tensor:
    """[n_users, n_items] **oracle** ranking: the simulator's own expected reward of each film at each real
    user's first step (what oracle greedy maximises). A reference with information no platform has (notebook 08)."""
    sim = getattr(env, "sim", env)
    _first_step(env, n_users)
    return sim.expected_reward().float().cpu().clone()


def random_scores(n_users: int, n_items: int, seed: int = 0) -> torch.Tensor:
    """[n_users, n_items] uniform random scores: the chance level of a ranking (notebook 08)."""
    return torch.rand(n_users, n_items, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- robustness


@dataclass(frozen=True)
class RobustnessConfig:
    """The robustness experiment of notebook 08."""

    fractions: tuple = (0.05, 0.10)
    """Injected abnormal users as a fraction of the real users."""
    attacks: tuple = ("random raters", "shilling")
    """Which injections: uniformly random raters, and an average attack promoting one item."""
    k: int = 10
    """Top-k lists scored and inspected for the attacked item."""
    seed: int = 0
    """Seed of the injected users."""


def pick_attack_target(train: pd.DataFrame, min_ratings: int = 5, quantile: float = 0.25) -> int:
    """An ``item_id`` an attacker would push: rated by few users (lower quartile of items with >= 5 ratings) (notebook 08)."""
    counts = train.groupby("item_id").size()
    counts = counts[counts >= min_ratings]
    if counts.empty:
        raise ValueError(f"no item has >= {min_ratings} training ratings; lower min_ratings")
    level = counts.quantile(quantile)
    return int(counts[counts <= level].sort_index().index[0])


def _indexed_injection(train: pd.DataFrame, injected: pd.DataFrame, n_users: int, item_ids: np.ndarray) -> pd.DataFrame:
    """Give injected users new 0-based ``user`` indices after the real ones; keep ``item`` consistent."""
    fake = injected[injected["injected"]].copy()
    fake_ids = np.unique(fake["user_id"].to_numpy())
    fake["user"] = n_users + np.searchsorted(fake_ids, fake["user_id"].to_numpy())
    fake["item"] = np.searchsorted(item_ids, fake["item_id"].to_numpy())
    return pd.concat([train.assign(injected=False), fake[train.columns.tolist() + ["injected"]]], ignore_index=True)


def robustness_study(
    split,
    item_ids: np.ndarray,
    fit_models: dict[str, Callable],
    config: RobustnessConfig = RobustnessConfig(),
    progress: bool = True,
) -> pd.DataFrame:
    """Retrain each model on clean and injected training data; test NDCG@k of the real users, the share
    of real users whose top-k holds the attacked item and its median rank for them (notebook 08).

    ``fit_models`` maps names to ``fit(train, valid, n_users, n_items) -> [n_users, n_items] scores``.
    """
    from tqdm.auto import tqdm

    from .robustness import inject_random_raters, inject_shilling_attack

    for col in ("user", "item", "user_id", "item_id"):
        if col not in split.train.columns:
            raise ValueError(f"split.train lacks column {col!r}; split MovieLens.indexed()")
    n_users, n_items = int(split.train["user"].max()) + 1, len(item_ids)
    target_id = pick_attack_target(split.train)
    target = int(np.searchsorted(item_ids, target_id))
    evaluator = FullRankingEvaluator(
        split.train,
        split.test,
        n_users,
        n_items,
        exclude={"valid": split.valid},
        ks=(config.k,),
        protocol=split.protocol,
    )
    runs = [("clean", 0.0)] + [(a, f) for a in config.attacks for f in config.fractions]
    rows = []
    for attack, fraction in tqdm(runs, desc="robustness", disable=not progress, leave=False):
        if attack == "clean":
            train, n_total = split.train, n_users
        else:
            if attack == "shilling":
                injected = inject_shilling_attack(split.train, target_id, fraction, seed=config.seed)
            elif attack == "random raters":
                injected = inject_random_raters(split.train, fraction, seed=config.seed)
            else:
                raise ValueError(f"unknown attack {attack!r}; use 'random raters' or 'shilling'")
            train = _indexed_injection(split.train, injected, n_users, item_ids)
            n_total = int(train["user"].max()) + 1
        for name, fit in fit_models.items():
            scores = torch.as_tensor(fit(train, split.valid, n_total, n_items), dtype=torch.float32)[:n_users]
            res = evaluator.evaluate(scores)
            masked = scores.masked_fill(evaluator.mask, NEG)
            top = masked.topk(config.k, dim=1).indices
            open_users = ~evaluator.mask[:, target]  # users who have not rated the attacked item
            rank = (masked > masked[:, target : target + 1]).sum(1) + 1  # 1-based rank of the attacked item
            rows.append(
                {
                    "model": name,
                    "attack": attack,
                    "fraction": fraction,
                    f"NDCG@{config.k}": res[f"NDCG@{config.k}"],
                    "target_exposure": float((top == target).any(1).float().mean()),
                    "target_rank": float(rank[open_users].float().median()),
                    "target_item": target_id,
                }
            )
    out = pd.DataFrame(rows)
    clean = out[out["attack"] == "clean"].set_index("model")[f"NDCG@{config.k}"]
    out["NDCG_drop"] = out["model"].map(clean) - out[f"NDCG@{config.k}"]
    return out


def mean_ci(runs: pd.DataFrame, by: str, metrics: list[str], level: float = 0.95) -> pd.DataFrame:
    """Per group ``by``: each metric's mean over runs (e.g. seeds) and the half-width of its Student-t
    ``level`` confidence interval, as columns ``metric`` and ``metric ± CI``, plus ``runs`` (notebook 08)."""
    from scipy import stats

    groups = runs.groupby(by, sort=False)[metrics]
    n = runs.groupby(by, sort=False).size()
    if (n < 2).any():
        raise ValueError(f"need >= 2 runs per {by!r} for a confidence interval, got {n.min()}; run more seeds")
    mean, std = groups.mean(), groups.std(ddof=1)
    t = stats.t.ppf((1 + level) / 2, n - 1)
    out = pd.DataFrame(index=mean.index)
    for m in metrics:
        out[m] = mean[m]
        out[f"{m} ± CI"] = t * std[m].to_numpy() / np.sqrt(n.to_numpy())
    out["runs"] = n
    return out


def markdown_table(frame: pd.DataFrame, digits: int = 3, missing: str = "n/a") -> str:
    """A pipe table of ``frame`` (index as the first column) for a README, without extra packages (notebook 08)."""

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return missing if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    head = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [
        "| " + " | ".join([str(i)] + [cell(v) for v in row]) + " |" for i, row in zip(frame.index, frame.to_numpy())
    ]
    return "\n".join(lines)
