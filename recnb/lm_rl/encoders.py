"""Does a larger sentence encoder help on cold films? The text Q-network with each encoder's vectors (notebook 07).

:func:`compare_encoders` trains notebook 07's text Q-network once per training seed on each encoder's item vectors
(same warm start, TD budget, training users and cold films: :func:`recnb.lm_rl.train_agent`) and evaluates it on
the cold catalogue of the same evaluation users (:func:`recnb.lm_rl.catalogue_evaluations`, common random
numbers). :class:`EncoderComparison` reads the result: per encoder the seed-averaged cold click rate, and the
paired per-user difference between two encoders (:func:`recnb.lm_rl.paired_click_rate`). Notebook 07 (GPU
profile) and ``benchmarks/larger_encoder_cold_start.py`` both call it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd
import torch

from ..agents.dqn import DQNConfig
from ..policies import Comparison, Evaluation, seed_average
from ..stats import mean_ci
from .catalogue import train_agent
from .serving import catalogue_evaluations, paired_click_rate, q_scorer


@dataclass
class EncoderComparison:
    """The text Q-network's cold-catalogue evaluations, one list per encoder (one :class:`Evaluation` a seed)."""

    evaluations: dict[str, list[Evaluation]]
    dims: dict[str, int]  # each encoder's vector width

    def pooled(self, name: str) -> Evaluation:
        """Per user, the mean over training seeds (the same users throughout, so encoders pair user by user)."""
        return seed_average(self.evaluations[name], name=name)

    def table(self) -> pd.DataFrame:
        """One row per encoder: cold click rate (mean over seeds), its 95% interval over users, the seeds' spread."""
        rows = []
        for name, runs in self.evaluations.items():
            per_seed = [ev.click_rate for ev in runs]
            rows.append(
                {
                    "encoder": name,
                    "dim": self.dims[name],
                    "cold_click_rate": self.pooled(name).click_rate,
                    "user_ci95": self.pooled(name).summary()["click_rate_ci95"],
                    "seeds": len(runs),
                    "seed_min": min(per_seed),
                    "seed_max": max(per_seed),
                    "seed_ci95": mean_ci(per_seed)[1] if len(runs) > 1 else float("nan"),
                }
            )
        return pd.DataFrame(rows).set_index("encoder")

    def difference(self, a: str, b: str) -> Comparison:
        """Paired per-user difference of the seed-averaged cold click rates, ``a - b`` (equation (5) of notebook 07)."""
        return paired_click_rate(self.pooled(a), self.pooled(b))


def cold_evaluations(
    train_env, eval_env, item_feats: torch.Tensor, cold, config: DQNConfig, seeds, *, alpha, n_users, eval_seed
) -> list[Evaluation]:
    """The text Q-network on ``item_feats``, trained once per seed, evaluated on the cold catalogue (notebook 07)."""
    runs = []
    for seed in seeds:
        agent = train_agent(
            train_env, item_feats, cold, dataclasses.replace(config, seed=seed), progress=False, alpha=alpha
        )
        scorer = {"text Q-net": q_scorer(agent.online)}
        evals = catalogue_evaluations(eval_env, scorer, cold, n_users=n_users, seed=eval_seed, catalogues=("cold",))
        runs.append(evals["text Q-net", "cold"])
    return runs


def compare_encoders(
    train_env,
    eval_env,
    features: dict[str, torch.Tensor],
    cold,
    config: DQNConfig,
    seeds,
    *,
    alpha: float,
    n_users: int,
    eval_seed: int,
    measured: dict[str, list[Evaluation]] | None = None,
) -> EncoderComparison:
    """Notebook 07's text Q-network on each encoder's item vectors ``features`` (name -> [n_items, dim]).

    ``measured``: evaluations an encoder already has from this very recipe (notebook 07 passes its MiniLM
    runs), one per seed of ``seeds``, on ``n_users`` users with ``eval_seed``; that encoder is not trained again.
    """
    if len(features) < 2:
        raise ValueError(f"compare at least two encoders, got {sorted(features)}")
    measured = dict(measured or {})
    for name, feats in features.items():
        if feats.ndim != 2 or feats.shape[0] != train_env.n_items:
            raise ValueError(f"features[{name!r}] must be [n_items={train_env.n_items}, dim], got {tuple(feats.shape)}")
    for name, runs in measured.items():
        if name not in features or len(runs) != len(seeds):
            raise ValueError(f"measured[{name!r}] needs one evaluation per seed ({len(seeds)}) of an encoder compared")
        if any(ev.seed != eval_seed or len(ev.returns) != n_users for ev in runs):
            raise ValueError(
                f"measured[{name!r}] was not evaluated on these users: use eval_seed and n_users as it did"
            )
    evaluations = {
        name: measured.get(name)
        or cold_evaluations(
            train_env, eval_env, feats, cold, config, seeds, alpha=alpha, n_users=n_users, eval_seed=eval_seed
        )
        for name, feats in features.items()
    }
    return EncoderComparison(evaluations, {name: int(feats.shape[1]) for name, feats in features.items()})
