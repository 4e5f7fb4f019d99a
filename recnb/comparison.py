"""Side by side: language-model, collaborative-filtering and RL recommenders on one protocol (notebook 10).

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

Notebook 06's DQN agents are reused here, not retrained: :func:`validation_users` cuts the training users into
the users an agent learns from and the validation users that choose its weights, :func:`dqn_fingerprint` and
:func:`dqn_checkpoint` name the checkpoint a configuration is kept in (``DQN.load_or_train`` loads it, or trains
in place when it is missing), and :func:`save_report` / :func:`read_report` keep beside it what notebook 06
reported for it, so notebook 10 can assert that it reports the same.

Robustness (:func:`robustness_study`) retrains cheap models on training data with injected abnormal users
(:mod:`recnb.robustness`) and measures the drop in NDCG@10 and the attacked item's exposure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import config as _config
from ._checks import check_columns, check_int, check_range, check_seed, check_tuple, need
from .cache import atomic_write
from .checkpoints import digest
from .metrics import FullRankingEvaluator, gini
from .platform import platform_view, split_users
from .policies import NEG, Evaluation, evaluate_policy, top_items
from .stats import grouped_mean_ci

mean_ci = grouped_mean_ci  # notebook 10's name for it: per group, each metric's mean and Student-t half-width


# ---------------------------------------------------------------- models as simulator policies


class ScorePolicy:
    """A static recommender in the simulator: each user's best available items by fixed scores (notebook 10).

    Simulated users are calibration rows, which are the real users in ``MovieLens.indexed()`` order,
    so row ``u`` of ``scores`` is the model's view of simulated user ``u``. It reads the platform's
    view (``env.user``: who the user is; ``env.available_mask()``: what the log says they consumed).
    """

    def __init__(self, scores: torch.Tensor, name: str):
        self.scores, self.name = torch.as_tensor(scores, dtype=torch.float32), name

    def __call__(self, env) -> torch.Tensor:
        env = platform_view(env, "ScorePolicy")
        need(
            self.scores.shape[1] == env.n_items and self.scores.shape[0] >= env.n_calibration_users,
            f"scores must be [>= {env.n_calibration_users} users, {env.n_items} items], got {tuple(self.scores.shape)}",
        )
        return top_items(self.scores.to(env.device)[env.user], env.available_mask(), env.config.slate_size)


def left_aligned(history: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Histories (oldest first, padding in front) as windows padded at the end, and the
    index of each row's last item (0 for an empty row) -- the layout sequential models read (notebook 10)."""
    is_pad = history == pad
    order = torch.sort(is_pad.int(), dim=1, stable=True).indices  # real items first, in their order
    window = history.gather(1, order)
    last = ((~is_pad).sum(1) - 1).clamp_min(0)
    return window, last


class SequencePolicy:
    """A sequential next-item model (``recnb.offline_rl.SequentialRecommender``) as a simulator policy:
    its state is the user's recent consumption as the platform logged it (``env.history``) (notebook 10)."""

    def __init__(self, model, name: str | None = None):
        self.model, self.name = model, name or model.name

    @torch.no_grad()
    def __call__(self, env) -> torch.Tensor:
        env = platform_view(env, "SequencePolicy")
        window, last = left_aligned(env.history, env.n_items)
        net = self.model.net
        was_training = net.training
        net.eval()
        h = net.states(window)[torch.arange(len(window)), last]
        net.train(was_training)
        return top_items(net.ce_head(h), env.available_mask(), env.config.slate_size)


class ExposureCounter:
    """Wraps a policy and counts how often each item is shown to users still in their episode (notebook 10)."""

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
    """Run ``policy`` on ``n_users`` fresh users of ``env``'s pool (docs/protocols.md, simulator protocol)
    (notebook 10).

    ``env`` is a :class:`recnb.platform.PlatformEnv` (give it the evaluation users). Returns a table row --
    return, session length and click rate with 95% CIs, plus exposure coverage, Gini and mean popularity
    of the shown items -- and the per-user :class:`recnb.policies.Evaluation`, for paired comparisons
    (:func:`recnb.policies.paired_difference`) with other policies run with the same seed.
    """
    env = platform_view(env, "simulate")
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
    """NDCG, HR, coverage, popularity and Gini of the top-k lists of one model under ``evaluator`` (notebook 10)."""
    res = evaluator.evaluate(scores)
    return {f"{m}@{k}": res[f"{m}@{k}"] for m in ("NDCG", "HR", "Coverage", "AvgPop", "Gini")} | {"users": res.n_users}


def text_knn_scores(train: pd.DataFrame, text_vectors: np.ndarray, n_users: int, neighbours: int = 20) -> torch.Tensor:
    """[n_users, n_items] text kNN scores over the whole catalogue from ``train``: notebook 03's scorer
    (notebook 10)."""
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
    factors by confidence; the shrinkage is chosen on validation NDCG@10. Returns (scores, shrinkage) (notebook 10)."""
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
    check_int("n_users", n_users, minimum=1)
    need(
        n_users <= env.n_calibration_users,
        f"the simulator knows {env.n_calibration_users} users, asked for {n_users}; ask for at most that many",
    )
    env.reset(n_users, seed=0, users=torch.arange(n_users))


@torch.no_grad()
def initial_state_scores(agent, env, n_users: int) -> torch.Tensor:
    """[n_users, n_items] Q-values of an agent at each real user's first step, observed through the platform
    (``agent.observe(env)``, by default :func:`recnb.platform.observe_platform`), so an RL policy can be ranked
    offline on Track A -- the split the simulator and the platform are fitted on (notebook 10).

    ``env`` is a :class:`recnb.platform.PlatformEnv`; the user pool is ignored (every real user is scored).
    """
    env = platform_view(env, "initial_state_scores")
    _first_step(env, n_users)
    return agent.q_values(agent.observe(env)).float().cpu()


@torch.no_grad()
def oracle_initial_scores(env, n_users: int) -> torch.Tensor:
    """[n_users, n_items] **oracle** ranking: the simulator's own expected reward of each film at each real
    user's first step (what oracle greedy maximises). A reference with information no platform has (notebook 10)."""
    sim = getattr(env, "sim", env)
    _first_step(env, n_users)
    return sim.expected_reward().float().cpu().clone()


def random_scores(n_users: int, n_items: int, seed: int = 0) -> torch.Tensor:
    """[n_users, n_items] uniform random scores: the chance level of a ranking (notebook 10)."""
    return torch.rand(n_users, n_items, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- notebook 06's agents, reused


def validation_users(train_users, fraction: float = 0.8, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Cut the training users into the users a DQN learns from (``fraction``) and the validation users that
    choose its weights (the rest), disjoint from each other and, like ``train_users``, from the evaluation users
    (docs/training.md; notebooks 06 and 10)."""
    train_users = np.asarray(train_users, dtype=np.int64)
    fit, valid = split_users(len(train_users), fraction, seed=seed)
    return train_users[fit], train_users[valid]


def dqn_fingerprint(fit_users, valid_users) -> dict:
    """The ``fingerprint=`` of notebook 06's DQN: digests of the users it trained on and of the validation users
    that chose its weights (the environment's own fingerprint -- catalogue, observation, simulator, platform --
    is added by ``DQN``) (notebooks 06 and 10)."""
    users = {"training users": fit_users, "validation users": valid_users}
    return {k: digest(np.sort(np.asarray(v, dtype=np.int64))) for k, v in users.items()}


def dqn_checkpoint(dqn_config, fingerprint: dict, folder=None) -> Path:
    """Where the DQN trained with ``dqn_config`` on ``fingerprint`` is kept: ``<data>/agents/dqn-<digest>.safetensors``
    (notebooks 06 and 10).

    Keyed by both, so notebook 10 finds the file notebook 06 wrote for the same configuration and users, and a
    run with another configuration (another profile, a tuned one) writes its own file instead of replacing it.
    """
    folder = _config.data_dir() / "agents" if folder is None else Path(folder)
    return folder / f"dqn-{digest(dqn_config, fingerprint)}.safetensors"


def parameters_digest(agent) -> str:
    """A digest of an agent's network weights (``agent.networks()``): equal digests, equal parameters."""
    return digest({name: module.state_dict() for name, module in agent.networks().items()})


def _report_path(checkpoint) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".report.json")


def report_of(agent, evaluation: Evaluation, eval_users) -> dict:
    """What notebook 06 reports for ``agent``: its parameters' digest, the protocol (evaluation users, sessions,
    seed) and the per-user returns (digest and mean) of ``evaluation`` -- comparable with :func:`read_report`."""
    return {
        "parameters": parameters_digest(agent),
        "evaluation users": digest(np.sort(np.asarray(eval_users, dtype=np.int64))),
        "sessions": len(evaluation.returns),
        "seed": int(evaluation.seed),
        "mean_return": evaluation.mean_return,
        "returns": digest(np.asarray(evaluation.returns, dtype=np.float64)),
    }


def save_report(checkpoint, agent, evaluation: Evaluation, eval_users) -> Path:
    """Keep :func:`report_of` beside ``checkpoint`` (``<name>.report.json``), atomically (notebook 06)."""
    path = _report_path(checkpoint)
    atomic_write(path, json.dumps(report_of(agent, evaluation, eval_users), indent=1).encode())
    return path


def read_report(checkpoint) -> dict | None:
    """What :func:`save_report` kept beside ``checkpoint``, or None when there is no (readable) record."""
    try:
        return json.loads(_report_path(checkpoint).read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- robustness


ATTACKS = ("random raters", "shilling")  # the injections robustness_study knows (recnb.robustness)


@dataclass(frozen=True)
class RobustnessConfig:
    """The robustness experiment of notebook 10. Frozen, and validated on creation."""

    fractions: tuple = (0.05, 0.10)
    """Injected abnormal users as a fraction of the real users, each in (0, 1]."""
    attacks: tuple = ATTACKS
    """Which injections (from :data:`ATTACKS`): uniformly random raters, and an average attack promoting one item."""
    k: int = 10
    """Top-k lists scored and inspected for the attacked item."""
    seed: int = 0
    """Seed of the injected users."""

    def __post_init__(self):
        def fraction(name, value):
            return check_range(name, value, 0, 1, closed="right")

        object.__setattr__(self, "fractions", check_tuple("RobustnessConfig.fractions", self.fractions, fraction))
        object.__setattr__(self, "attacks", check_tuple("RobustnessConfig.attacks", self.attacks))
        unknown = [a for a in self.attacks if a not in ATTACKS]
        need(self.attacks and not unknown, f"RobustnessConfig.attacks must be taken from {ATTACKS}, got {self.attacks}")
        check_int("RobustnessConfig.k", self.k, minimum=1)
        check_seed("RobustnessConfig.seed", self.seed)


def pick_attack_target(train: pd.DataFrame, min_ratings: int = 5, quantile: float = 0.25) -> int:
    """An ``item_id`` an attacker would push: rated by few users, the lower ``quantile`` of the items with at least
    ``min_ratings`` training ratings (notebook 10)."""
    counts = train.groupby("item_id").size()
    counts = counts[counts >= min_ratings]
    need(not counts.empty, f"no item has >= {min_ratings} training ratings; lower min_ratings")
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
    of real users whose top-k holds the attacked item and its median rank for them (notebook 10).

    ``fit_models`` maps names to ``fit(train, valid, n_users, n_items) -> [n_users, n_items] scores``.
    """
    from tqdm.auto import tqdm

    from .robustness import inject_random_raters, inject_shilling_attack

    check_columns("split.train", split.train, ("user", "item", "user_id", "item_id"), "split MovieLens.indexed()")
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
            else:  # "random raters": RobustnessConfig admits no other
                injected = inject_random_raters(split.train, fraction, seed=config.seed)
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


def markdown_table(frame: pd.DataFrame, digits: int = 3, missing: str = "n/a") -> str:
    """A pipe table of ``frame`` (index as the first column) for a README, without extra packages (notebook 10)."""

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
