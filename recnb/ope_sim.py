"""Off-policy evaluation against ground truth: log in the simulator, estimate, compare (notebook 08).

The setting is a two-stage recommender. Each step a candidate generator offers ``n_candidates``
unconsumed items (drawn in proportion to popularity); the *logging policy* -- the production
ranker -- shows the most popular candidate with probability ``1 - epsilon`` and a uniformly random
candidate otherwise, and records the probability of what it showed (the propensity). A *target*
policy picks among the same candidates with its own scores. Its per-step value -- the expected
click rate of what it would show in the logged states -- is what the estimators of
:mod:`recnb.ope` estimate from the logs alone.

Ground truth comes from the simulator: in every logged state we also record the simulator's own
expected reward of each candidate (``truth``). The estimators never see it; the reward model of
the direct method and doubly robust is learned from the logs (cross-fitted) on features the
platform has (its own BPR scores, popularity, the genres of the user's recent history).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from . import ope

Scorer = Callable[[object], torch.Tensor]  # scorer(sim) -> [B, N] scores, higher = better


@dataclass(frozen=True)
class LoggingConfig:
    """How the logs are collected in the simulator (notebook 08). Validated on creation."""

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
        if not (isinstance(self.n_rounds, int) and self.n_rounds >= 10):
            raise ValueError(f"n_rounds must be an integer >= 10, got {self.n_rounds!r}")
        if not (isinstance(self.n_candidates, int) and self.n_candidates >= 2):
            raise ValueError(f"n_candidates must be an integer >= 2 (a choice needs two options), got {self.n_candidates!r}")
        if not 0 < self.epsilon <= 1:
            raise ValueError(f"epsilon must be in (0, 1]: with 0 the other candidates are never logged "
                             f"and no other policy can be evaluated; got {self.epsilon}")
        if not (isinstance(self.batch_users, int) and self.batch_users >= 1):
            raise ValueError(f"batch_users must be an integer >= 1, got {self.batch_users!r}")


@dataclass
class BanditLog:
    """Logged rounds; ``truth`` is the simulator's expected reward, for grading only (notebook 08)."""

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


def history_genre_overlap(sim, item_genres: torch.Tensor) -> torch.Tensor:
    """[B, N] share of each item's genres among the genres of the user's recent history (notebook 08)."""
    hist = sim.state.history  # pad = n_items
    padded = torch.cat([item_genres, torch.zeros(1, item_genres.shape[1], device=item_genres.device)])
    profile = padded[hist].sum(1)  # [B, G] genre counts in the history
    profile = profile / profile.sum(1, keepdim=True).clamp_min(1.0)
    share = item_genres / item_genres.sum(1, keepdim=True).clamp_min(1.0)
    return profile @ share.T


@dataclass
class PlatformModel:
    """What the platform knows, learned from the training ratings only -- never the simulator's parameters."""

    user_item_scores: torch.Tensor  # [U, N] its own recommender's scores (e.g. BPR on the training split)
    item_mean: torch.Tensor  # [N] shrunk mean training rating of each item
    user_mean: torch.Tensor  # [U] shrunk mean training rating of each user


def platform_model(train: pd.DataFrame, user_item_scores, n_users: int, n_items: int, shrink: float = 5.0) -> PlatformModel:
    """Shrunk mean ratings per item and user from ``train`` (``user``/``item`` index columns) plus model scores."""
    for col in ("user", "item", "rating"):
        if col not in train.columns:
            raise ValueError(f"train lacks column {col!r}; pass a split of MovieLens.indexed()")
    mu = float(train["rating"].mean())

    def shrunk(col, n):
        g = train.groupby(col)["rating"].agg(["sum", "size"]).reindex(range(n), fill_value=0)
        return torch.tensor(np.array((g["sum"] + shrink * mu) / (g["size"] + shrink), dtype=np.float32))

    scores = torch.as_tensor(user_item_scores, dtype=torch.float32)
    if scores.shape != (n_users, n_items):
        raise ValueError(f"user_item_scores must be [{n_users}, {n_items}], got {tuple(scores.shape)}")
    return PlatformModel(scores, shrunk("item", n_items), shrunk("user", n_users))


def platform_features(sim, platform: PlatformModel) -> torch.Tensor:
    """[B, N, 6] what the platform has on each (state, item): its model's score, item and user mean rating,
    log popularity, share of the item's genres in the recent history, elapsed step (notebook 08)."""
    s = sim.state
    score = platform.user_item_scores[s.user]
    item_mean = platform.item_mean.expand_as(score)
    user_mean = platform.user_mean[s.user][:, None].expand_as(score)
    pop = torch.log1p(sim.item_popularity).expand_as(score)
    overlap = history_genre_overlap(sim, sim.item_genres)
    step = (s.t.float() / sim.config.horizon)[:, None].expand_as(score)
    return torch.stack([score, item_mean, user_mean, pop, overlap, step], 2)


def _sample_candidates(sim, k: int, gen: torch.Generator) -> torch.Tensor:
    """k available items per user, drawn without replacement in proportion to popularity + 1 (Gumbel top-k)."""
    u = torch.rand(sim.n_users, sim.n_items, generator=gen).clamp_(1e-12, 1 - 1e-7)
    keys = torch.log1p(sim.item_popularity) - torch.log(-torch.log(u))
    return keys.masked_fill(~sim.available_mask(), float("-inf")).topk(k, dim=1).indices


@torch.no_grad()
def collect_logs(sim, platform: PlatformModel, config: LoggingConfig = LoggingConfig(),
                 targets: dict[str, Scorer] | None = None, progress: bool = True) -> BanditLog:
    """Run the epsilon-greedy popularity logger in ``sim`` and record bandit logs (notebook 08).

    ``targets`` maps names to scorers ``scorer(sim) -> [B, N]``; their scores of the candidates are
    recorded in every logged state, so the targets can be evaluated on these logs afterwards.
    """
    cfg, targets = config, dict(targets or {})
    if platform.user_item_scores.shape != (sim.n_calibration_users, sim.n_items):
        raise ValueError(f"the platform model must cover [{sim.n_calibration_users}, {sim.n_items}] (calibration users x "
                         f"items), got {tuple(platform.user_item_scores.shape)}")
    if sim.config.slate_size != 1:
        raise ValueError("collect_logs logs single-item recommendations; use a SimulatorConfig with slate_size=1")
    gen = torch.Generator().manual_seed(cfg.seed)
    K, eps = cfg.n_candidates, cfg.epsilon
    rows: dict[str, list] = {k: [] for k in ("user", "step", "cand", "action", "prop", "probs", "reward", "feat", "truth")}
    scores: dict[str, list] = {name: [] for name in targets}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.n_rounds, desc="logging", unit="round", leave=False)
    n, batch = 0, 0
    while n < cfg.n_rounds:
        sim.reset(cfg.batch_users, seed=cfg.seed * 1000 + batch)
        batch += 1
        while n < cfg.n_rounds and bool(sim.active.any()):
            active = sim.active.clone()
            cand = _sample_candidates(sim, K, gen)  # [B, K]
            best = sim.item_popularity[cand].argmax(1)  # the production ranker: most popular candidate
            explore = torch.rand(sim.n_users, generator=gen) < eps
            random_pick = torch.randint(0, K, (sim.n_users,), generator=gen)
            action = torch.where(explore, random_pick, best)
            probs = torch.full((sim.n_users, K), eps / K)
            probs[torch.arange(sim.n_users), best] += 1 - eps
            truth = sim.expected_reward().gather(1, cand)
            feats = platform_features(sim, platform)
            feats = feats.gather(1, cand[:, :, None].expand(-1, -1, feats.shape[2]))
            for name, scorer in targets.items():
                scores[name].append(scorer(sim).float().gather(1, cand)[active])
            step = sim.state.t.clone()
            _, reward, _, _, _ = sim.step(cand.gather(1, action[:, None]).squeeze(1))
            for key, value in (("user", sim.state.user), ("step", step), ("cand", cand), ("action", action),
                               ("prop", probs.gather(1, action[:, None]).squeeze(1)), ("probs", probs),
                               ("reward", reward), ("feat", feats), ("truth", truth)):
                rows[key].append(value[active])
            n += int(active.sum())
            if bar is not None:
                bar.update(int(active.sum()))
    if bar is not None:
        bar.close()
    cat = {k: torch.cat(v)[:cfg.n_rounds].cpu().numpy() for k, v in rows.items()}
    return BanditLog(cat["user"], cat["step"], cat["cand"], cat["action"], cat["prop"].astype(float),
                     cat["probs"].astype(float), cat["reward"].astype(float), cat["feat"].astype(float),
                     cat["truth"].astype(float),
                     {k: torch.cat(v)[:cfg.n_rounds].cpu().numpy().astype(float) for k, v in scores.items()})


def greedy_probs(scores: np.ndarray) -> np.ndarray:
    """[n, K] one-hot distribution on each row's best-scored candidate (a deterministic policy) (notebook 08)."""
    out = np.zeros_like(scores, dtype=float)
    out[np.arange(len(scores)), np.argmax(scores, 1)] = 1.0
    return out


def softmax_probs(scores: np.ndarray, temperature: float) -> np.ndarray:
    """[n, K] softmax of scores / temperature: a stochastic policy, greedy as temperature -> 0 (notebook 08)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; use greedy_probs for a deterministic policy")
    z = scores / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def true_value(log: BanditLog, target: np.ndarray) -> float:
    """The target's exact per-step value on the logged states, from the simulator's expected rewards (notebook 08)."""
    return float((target * log.truth).sum(1).mean())


def logistic_reward_model(log: BanditLog, l2: float = 1.0):
    """``(fit, predict)`` for :func:`recnb.ope.cross_fit`: logistic regression of the reward on the platform's
    features of the shown candidate (with pairwise products), predicting every candidate (notebook 08)."""
    from sklearn.linear_model import LogisticRegression

    def expand(x: np.ndarray) -> np.ndarray:  # [..., F] -> [..., F + F(F+1)/2]
        i, j = np.triu_indices(x.shape[-1])
        return np.concatenate([x, x[..., i] * x[..., j]], -1)

    shown = log.features[np.arange(len(log)), log.action]  # [n, F]
    mean, std = shown.mean(0), shown.std(0) + 1e-8
    X_all = expand((log.features - mean) / std)  # [n, K, F']
    y = (log.reward > 0.5).astype(int)
    if len(np.unique(y)) < 2 or not np.all(np.isin(log.reward, (0.0, 1.0))):
        raise ValueError("logistic_reward_model needs 0/1 rewards with both values in the log (the click reward)")

    def fit(rows):
        model = LogisticRegression(C=1.0 / l2, max_iter=1000)
        model.fit(X_all[rows, log.action[rows]], y[rows])
        return model

    def predict(model, rows):
        X = X_all[rows]
        return model.predict_proba(X.reshape(-1, X.shape[-1]))[:, 1].reshape(X.shape[:2])

    return fit, predict


def estimate_all(log: BanditLog, target: np.ndarray, predicted: np.ndarray, clip: float = 10.0) -> dict:
    """Every estimator of :mod:`recnb.ope` on one target, plus the true value and ESS (notebook 08)."""
    args = (log.action, log.reward, log.propensity, target)
    out = {"true": true_value(log, target)}
    for est in (ope.direct_method(target, predicted), ope.ips(*args), ope.ips(*args, clip=clip), ope.snips(*args),
                ope.doubly_robust(*args, predicted)):
        key = "IPS-clip" if est.estimator.startswith("IPS (clip") else est.estimator
        out[key], out[f"{key}_se"] = est.value, est.stderr
    out["ESS"] = ope.effective_sample_size(ope.importance_weights(log.action, log.propensity, target))
    return out


def evaluate_targets(log: BanditLog, targets: dict[str, np.ndarray], predicted: np.ndarray, clip: float = 10.0) -> pd.DataFrame:
    """One row per target policy: true value, each estimate with its stderr, relative errors, ESS (notebook 08)."""
    table = pd.DataFrame({name: estimate_all(log, probs, predicted, clip) for name, probs in targets.items()}).T
    for key in ("DM", "IPS", "IPS-clip", "SNIPS", "DR"):
        table[f"{key}_relerr"] = (table[key] - table["true"]).abs() / table["true"].abs()
    return table


def mixture(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) a + alpha b``: a policy that moves from ``a`` (alpha 0) to ``b`` (alpha 1) (notebook 08)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return (1 - alpha) * a + alpha * b
