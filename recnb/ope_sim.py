"""Off-policy evaluation against ground truth: log in the simulator, estimate, compare (notebook 10).

The setting is a two-stage recommender. Each step a candidate generator offers ``n_candidates``
unconsumed items (drawn in proportion to popularity); the *logging policy* -- the production
ranker -- shows the most popular candidate with probability ``1 - epsilon`` and a uniformly random
candidate otherwise, and records the probability of what it showed (the propensity). A *target*
policy picks among the same candidates with its own scores. Its per-step value -- the expected
click rate of what it would show in the logged states -- is what the estimators of
:mod:`recnb.ope` estimate from the logs alone.

**Who sees what.** Logs are collected through the platform's view of the simulator
(:class:`recnb.platform.PlatformEnv`): the candidate generator and the logger use the platform's
popularity counts and availability log, target policies score ``env`` (their own platform-side
observation; a target labelled *oracle* may read ``env.sim``, as a reference), and the reward model
of the direct method and doubly robust is learned from the logs (cross-fitted) on features the
platform has (:func:`platform_features`: its recommender's score, shrunk mean training ratings,
popularity, the genres of the logged recent history, the step).

**Ground truth** comes from the simulator: in every logged state we also record the simulator's own
expected reward of each candidate (``truth``, ``env.sim.expected_reward()``). That is the grader, not
an input: the estimators, the reward model and every non-oracle target never see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import ope
from ._checks import (
    check_columns,
    check_int,
    check_non_negative,
    check_positive,
    check_range,
    check_seed,
    need,
)
from .platform import platform_view

Scorer = Callable[[object], torch.Tensor]  # scorer(env) -> [B, N] scores, higher = better


@dataclass(frozen=True)
class LoggingConfig:
    """How the logs are collected in the simulator (notebook 10). Frozen, and validated on creation."""

    n_rounds: int = 10_000
    """Logged interactions (one shown item and its reward each)."""
    n_candidates: int = 5
    """Items the candidate generator offers per step; the policies choose one of them."""
    epsilon: float = 0.5
    """Chance that the logging policy shows a uniformly random candidate instead of the most popular one."""
    batch_users: int = 256
    """Simulated users logged in parallel (a new batch starts when every episode of the last has ended)."""
    seed: int = 0
    """Seeds the simulated users, the candidates and the logging policy's coin flips."""

    def __post_init__(self):
        check_int("LoggingConfig.n_rounds", self.n_rounds, minimum=10)
        check_int("LoggingConfig.n_candidates (a choice needs two options)", self.n_candidates, minimum=2)
        # epsilon 0 would never log the other candidates, so no other policy could be evaluated
        check_range("LoggingConfig.epsilon (> 0: other candidates must be logged)", self.epsilon, 0, 1, "right")
        check_int("LoggingConfig.batch_users", self.batch_users, minimum=1)
        check_seed("LoggingConfig.seed", self.seed)


@dataclass
class BanditLog:
    """Logged rounds; ``truth`` is the simulator's expected reward, for grading only (notebook 10)."""

    user: np.ndarray  # [n] calibration row of the simulated user
    step: np.ndarray  # [n] step of the episode
    candidates: np.ndarray  # [n, K] item indices offered
    action: np.ndarray  # [n] position (0..K-1) of the shown candidate
    propensity: np.ndarray  # [n] logging probability of the shown candidate
    logging_probs: np.ndarray  # [n, K] the logging policy's distribution over candidates
    reward: np.ndarray  # [n] observed reward
    features: np.ndarray  # [n, K, F] what the platform knows about each (state, candidate)
    truth: np.ndarray  # [n, K] simulator's expected reward of each candidate (never shown to estimators)
    target_scores: dict  # name -> [n, K] a target's scores of the candidates in each logged state

    def __len__(self) -> int:
        return len(self.action)


def history_genre_overlap(env) -> torch.Tensor:
    """[B, N] share of each item's genres among the genres of the user's logged recent history (notebook 10)."""
    platform_view(env, "history_genre_overlap")
    item_genres = env.item_genres.float()
    hist = env.history  # pad = n_items
    padded = torch.cat([item_genres, torch.zeros(1, item_genres.shape[1], device=item_genres.device)])
    profile = padded[hist].sum(1)  # [B, G] genre counts in the history
    profile = profile / profile.sum(1, keepdim=True).clamp_min(1.0)
    share = item_genres / item_genres.sum(1, keepdim=True).clamp_min(1.0)
    return profile @ share.T


@dataclass
class RatingStats:
    """Shrunk mean training ratings per item and per user: what the platform's rating logs say (notebook 10)."""

    item_mean: torch.Tensor  # [N] shrunk mean training rating of each item
    user_mean: torch.Tensor  # [U] shrunk mean training rating of each user (calibration-row order)


def rating_stats(train: pd.DataFrame, n_users: int, n_items: int, shrink: float = 5.0) -> RatingStats:
    """Shrunk mean ratings per item and user from ``train`` (``user``/``item`` index columns; ``MovieLens.indexed()``
    users are the calibration rows, in order) (notebook 10)."""
    check_columns("train", train, ("user", "item", "rating"), "pass a split of MovieLens.indexed()")
    check_non_negative("shrink", shrink)
    need(
        int(train["user"].max()) < n_users and int(train["item"].max()) < n_items,
        f"train has user/item indices beyond [{n_users}, {n_items}]; pass the dataset's n_users and n_items",
    )
    mu = float(train["rating"].mean())

    def shrunk(col, n):
        g = train.groupby(col)["rating"].agg(["sum", "size"]).reindex(range(n), fill_value=0)
        return torch.tensor(np.array((g["sum"] + shrink * mu) / (g["size"] + shrink), dtype=np.float32))

    return RatingStats(shrunk("item", n_items), shrunk("user", n_users))


def platform_features(env, stats: RatingStats) -> torch.Tensor:
    """[B, N, 6] what the platform has on each (state, item): its recommender's score, item and user mean
    rating, log popularity, share of the item's genres in the logged recent history, elapsed step (notebook 10).

    Read from the platform's view only (``env`` a :class:`recnb.platform.PlatformEnv`), never from ``env.sim``.
    """
    platform_view(env, "platform_features")
    score = env.platform_scores()
    item_mean = stats.item_mean.to(score.device).expand_as(score)
    user_mean = stats.user_mean.to(score.device)[env.user][:, None].expand_as(score)
    pop = torch.log1p(env.item_popularity.float()).expand_as(score)
    overlap = history_genre_overlap(env)
    step = (env.t.float() / env.config.horizon)[:, None].expand_as(score)
    return torch.stack([score, item_mean, user_mean, pop, overlap, step], 2)


def _sample_candidates(env, k: int, gen: torch.Generator) -> torch.Tensor:
    """k available items per user, drawn without replacement in proportion to popularity + 1 (Gumbel top-k)."""
    u = torch.rand(env.n_users, env.n_items, generator=gen).clamp_(1e-12, 1 - 1e-7).to(env.device)
    keys = torch.log1p(env.item_popularity.float()) - torch.log(-torch.log(u))
    return keys.masked_fill(~env.available_mask(), float("-inf")).topk(k, dim=1).indices


@torch.no_grad()
def collect_logs(
    env,
    stats: RatingStats,
    config: LoggingConfig = LoggingConfig(),
    targets: dict[str, Scorer] | None = None,
    progress: bool = True,
) -> BanditLog:
    """Run the epsilon-greedy popularity logger through the platform's view ``env`` and record bandit logs
    (notebook 10).

    ``env`` is a :class:`recnb.platform.PlatformEnv` (its user pool is who gets logged); ``stats`` the
    platform's rating summaries (:func:`rating_stats`). ``targets`` maps names to scorers
    ``scorer(env) -> [B, N]``; their scores of the candidates are recorded in every logged state, so the
    targets can be evaluated on these logs afterwards. The simulator's expected reward of every candidate
    is recorded as ``truth`` for grading; nothing else is read from ``env.sim``.
    """
    platform_view(env, "collect_logs")
    cfg, targets = config, dict(targets or {})
    need(
        stats.user_mean.shape == (env.n_calibration_users,) and stats.item_mean.shape == (env.n_items,),
        f"the platform's rating stats must cover {env.n_calibration_users} calibration users and "
        f"{env.n_items} items, got {tuple(stats.user_mean.shape)} users, {tuple(stats.item_mean.shape)} items",
    )
    need(
        env.config.slate_size == 1,
        "collect_logs logs single-item recommendations; use a SimulatorConfig with slate_size=1",
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    K, eps, dev = cfg.n_candidates, cfg.epsilon, env.device
    rows: dict[str, list] = {
        k: [] for k in ("user", "step", "cand", "action", "prop", "probs", "reward", "feat", "truth")
    }
    scores: dict[str, list] = {name: [] for name in targets}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.n_rounds, desc="logging", unit="round", leave=False)
    n, batch = 0, 0
    while n < cfg.n_rounds:
        env.reset(cfg.batch_users, seed=cfg.seed * 1000 + batch)
        batch += 1
        while n < cfg.n_rounds and bool(env.active.any()):
            B = env.n_users
            active = env.active.clone()
            cand = _sample_candidates(env, K, gen)  # [B, K]
            best = env.item_popularity[cand].argmax(1)  # the production ranker: most popular candidate
            explore = (torch.rand(B, generator=gen) < eps).to(dev)
            random_pick = torch.randint(0, K, (B,), generator=gen).to(dev)
            action = torch.where(explore, random_pick, best)
            probs = torch.full((B, K), eps / K, device=dev)
            probs[torch.arange(B, device=dev), best] += 1 - eps
            truth = env.sim.expected_reward().gather(1, cand)  # the grader's truth, never an input
            feats = platform_features(env, stats)
            feats = feats.gather(1, cand[:, :, None].expand(-1, -1, feats.shape[2]))
            for name, scorer in targets.items():
                scores[name].append(scorer(env).float().gather(1, cand)[active])
            step = env.t.clone()
            user = env.user.clone()
            _, reward, _, _, _ = env.step(cand.gather(1, action[:, None]).squeeze(1))
            for key, value in (
                ("user", user),
                ("step", step),
                ("cand", cand),
                ("action", action),
                ("prop", probs.gather(1, action[:, None]).squeeze(1)),
                ("probs", probs),
                ("reward", reward),
                ("feat", feats),
                ("truth", truth),
            ):
                rows[key].append(value[active])
            n += int(active.sum())
            if bar is not None:
                bar.update(int(active.sum()))
    if bar is not None:
        bar.close()
    cat = {k: torch.cat(v)[: cfg.n_rounds].cpu().numpy() for k, v in rows.items()}
    return BanditLog(
        cat["user"],
        cat["step"].astype(np.int64),
        cat["cand"],
        cat["action"],
        cat["prop"].astype(float),
        cat["probs"].astype(float),
        cat["reward"].astype(float),
        cat["feat"].astype(float),
        cat["truth"].astype(float),
        {k: torch.cat(v)[: cfg.n_rounds].cpu().numpy().astype(float) for k, v in scores.items()},
    )


def greedy_probs(scores: np.ndarray) -> np.ndarray:
    """[n, K] one-hot distribution on each row's best-scored candidate (a deterministic policy) (notebook 10)."""
    out = np.zeros_like(scores, dtype=float)
    out[np.arange(len(scores)), np.argmax(scores, 1)] = 1.0
    return out


def softmax_probs(scores: np.ndarray, temperature: float) -> np.ndarray:
    """[n, K] softmax of scores / temperature: a stochastic policy, greedy as temperature -> 0 (notebook 10)."""
    check_positive("temperature (for a deterministic policy use greedy_probs)", temperature)
    z = scores / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def true_value(log: BanditLog, target: np.ndarray) -> float:
    """The target's exact per-step value on the logged states, from the simulator's expected rewards: the grader
    (notebook 10)."""
    return float((target * log.truth).sum(1).mean())


def logistic_reward_model(log: BanditLog, l2: float = 1.0):
    """``(fit, predict)`` for :func:`recnb.ope.cross_fit`: logistic regression of the reward on the platform's
    features of the shown candidate (with pairwise products), predicting every candidate (notebook 10)."""
    from sklearn.linear_model import LogisticRegression

    def expand(x: np.ndarray) -> np.ndarray:  # [..., F] -> [..., F + F(F+1)/2]
        i, j = np.triu_indices(x.shape[-1])
        return np.concatenate([x, x[..., i] * x[..., j]], -1)

    shown = log.features[np.arange(len(log)), log.action]  # [n, F]
    mean, std = shown.mean(0), shown.std(0) + 1e-8
    X_all = expand((log.features - mean) / std)  # [n, K, F']
    y = (log.reward > 0.5).astype(int)
    need(
        len(np.unique(y)) == 2 and np.all(np.isin(log.reward, (0.0, 1.0))),
        "logistic_reward_model needs 0/1 rewards with both values in the log (the click reward)",
    )
    check_positive("l2", l2)

    def fit(rows):
        model = LogisticRegression(C=1.0 / l2, max_iter=1000)
        model.fit(X_all[rows, log.action[rows]], y[rows])
        return model

    def predict(model, rows):
        X = X_all[rows]
        return model.predict_proba(X.reshape(-1, X.shape[-1]))[:, 1].reshape(X.shape[:2])

    return fit, predict


def estimate_all(log: BanditLog, target: np.ndarray, predicted: np.ndarray, clip: float = 10.0) -> dict:
    """Every estimator of :mod:`recnb.ope` on one target, plus the true value and ESS (notebook 10)."""
    args = (log.action, log.reward, log.propensity, target)
    out = {"true": true_value(log, target)}
    for est in (
        ope.direct_method(target, predicted),
        ope.ips(*args),
        ope.ips(*args, clip=clip),
        ope.snips(*args),
        ope.doubly_robust(*args, predicted),
    ):
        key = "IPS-clip" if est.estimator.startswith("IPS (clip") else est.estimator
        out[key], out[f"{key}_se"] = est.value, est.stderr
    out["ESS"] = ope.effective_sample_size(ope.importance_weights(log.action, log.propensity, target))
    return out


def evaluate_targets(
    log: BanditLog, targets: dict[str, np.ndarray], predicted: np.ndarray, clip: float = 10.0
) -> pd.DataFrame:
    """One row per target policy: true value, each estimate with its stderr, relative errors, ESS (notebook 10)."""
    table = pd.DataFrame({name: estimate_all(log, probs, predicted, clip) for name, probs in targets.items()}).T
    for key in ("DM", "IPS", "IPS-clip", "SNIPS", "DR"):
        table[f"{key}_relerr"] = (table[key] - table["true"]).abs() / table["true"].abs()
    return table


def mixture(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) a + alpha b``: a policy that moves from ``a`` (alpha 0) to ``b`` (alpha 1) (notebook 10)."""
    check_range("alpha", alpha, 0, 1)
    return (1 - alpha) * a + alpha * b
