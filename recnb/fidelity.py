"""How faithful the simulated user is: the fitted choice and rating models against held-out real data (notebook 04).

Each check compares what :class:`recnb.calibration.Calibration` predicts with ratings it was not fitted on:
ranking quality against BPR and chance, the share of rare first picks, and the distances between simulated and
real rating and popularity distributions (docs/protocols.md, "The simulated user"). Re-exported by
:mod:`recnb.calibration`, where notebook 04 and the simulator import them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from .calibration import Calibration

__all__ = [
    "RATING_BINS",
    "greedy_first_picks",
    "rare_pick_share",
    "histogram_distance",
    "rating_distance",
    "popularity_bins",
    "popularity_distance",
    "calibration_rows",
    "ranking_fidelity",
    "simulated_choices",
    "FidelityReport",
    "fidelity_report",
]


def greedy_first_picks(cal: Calibration, scores: torch.Tensor | None = None) -> torch.Tensor:
    """LongTensor [U]: each user's most likely choice among films they have not rated in training (notebook 04).

    ``scores`` ([U, N], calibration rows) ranks by another model instead, e.g. ``cal.ratings()``.
    """
    logits = (cal.choice_logits() if scores is None else torch.as_tensor(scores, dtype=torch.float32)).clone()
    if logits.shape != (len(cal.train_items), cal.item_popularity.shape[0]):
        raise ValueError(
            f"scores must have shape ({len(cal.train_items)}, {cal.item_popularity.shape[0]}) "
            f"(calibration users x films), got {tuple(logits.shape)}"
        )
    for row, seen in enumerate(cal.train_items):
        logits[row, torch.as_tensor(seen, dtype=torch.long)] = float("-inf")
    return logits.argmax(1)


def rare_pick_share(cal: Calibration, max_ratings: int = 5, scores: torch.Tensor | None = None) -> float:
    """Share of users whose greedy first pick has at most ``max_ratings`` training ratings (notebook 04).

    The winner's-curse check: a simulated user who loves films almost nobody chose is not a real one.
    """
    picks = greedy_first_picks(cal, scores)
    return float((cal.item_popularity[picks] <= max_ratings).float().mean())


def histogram_distance(a: np.ndarray, b: np.ndarray, bins) -> float:
    """Total-variation distance between the histograms of ``a`` and ``b`` over ``bins`` (0 = same, 1 = disjoint)."""
    ha = np.histogram(a, bins=bins)[0].astype(float)
    hb = np.histogram(b, bins=bins)[0].astype(float)
    if ha.sum() == 0 or hb.sum() == 0:
        raise ValueError("histogram_distance needs at least one value of each sample inside the bins")
    return float(0.5 * np.abs(ha / ha.sum() - hb / hb.sum()).sum())


RATING_BINS = np.arange(0.5, 6.0)  # one bin per star, 1..5


def rating_distance(simulated, real) -> float:
    """Total-variation distance between the star histograms of two rating samples, rounded to 1..5 (notebook 04)."""
    return histogram_distance(
        np.round(np.asarray(simulated, dtype=float)), np.round(np.asarray(real, dtype=float)), RATING_BINS
    )


def popularity_bins(cal: Calibration, n_bins: int = 20) -> np.ndarray:
    """Equal-width bins over ``log(1 + training ratings)`` of the catalogue's films (notebook 04)."""
    top = float(np.log1p(float(cal.item_popularity.max())))
    return np.linspace(0.0, top + 1e-6, n_bins + 1)


def popularity_distance(cal: Calibration, items_a, items_b, n_bins: int = 20) -> float:
    """Total-variation distance between the popularity (log training count) histograms of two film samples
    (notebook 04)."""
    pop = np.log1p(cal.item_popularity.numpy())
    return histogram_distance(
        pop[np.asarray(items_a, dtype=np.int64)], pop[np.asarray(items_b, dtype=np.int64)], popularity_bins(cal, n_bins)
    )


def calibration_rows(cal: Calibration, frame: pd.DataFrame) -> np.ndarray:
    """The dataset's 0-based ``user`` index of every calibration row, read from an indexed frame (notebook 04)."""
    if not {"user", "user_id"} <= set(frame.columns):
        raise ValueError("frame needs `user` and `user_id` columns; pass a part of split_random(ml.indexed())")
    index_of = dict(zip(frame["user_id"].to_numpy().tolist(), frame["user"].to_numpy().tolist()))
    missing = [int(u) for u in cal.user_ids if int(u) not in index_of]
    if missing:
        raise KeyError(
            f"calibration users {missing[:5]} are not in the frame; pass the split the calibration was fitted on"
        )
    return np.asarray([index_of[int(u)] for u in cal.user_ids], dtype=np.int64)


def ranking_fidelity(
    cal: Calibration,
    split,
    n_users: int,
    n_items: int,
    others: dict | None = None,
    part: str = "test",
    k: int = 10,
    seed: int = 0,
) -> dict:
    """The choice and rating models as rankers of a held-out part, beside popularity, random and ``others``
    (notebook 04).

    Full-ranking evaluation (``recnb.metrics.split_evaluator``: training and, for test, validation
    films masked). ``others`` maps a name to a ``[U, N]`` score tensor in calibration-row order (e.g.
    the platform's BPR, ``movielens_platform().scores()``). Returns ``{name: EvalResult}``.
    """
    from .metrics import split_evaluator

    rows = torch.as_tensor(calibration_rows(cal, split.train))
    if int(rows.max()) >= n_users or cal.item_popularity.shape[0] != n_items:
        raise ValueError(
            f"the calibration ({len(rows)} users, {cal.item_popularity.shape[0]} films) does not fit "
            f"a catalogue of {n_users} users and {n_items} films"
        )
    evaluator = split_evaluator(split, part, n_users, n_items, ks=(k,))
    gen = torch.Generator().manual_seed(seed)
    rankers = {
        "choice model": cal.choice_logits(),
        "rating model": cal.ratings(),
        **(others or {}),
        "popularity": cal.item_popularity.expand(len(rows), -1),
        "random": torch.rand(len(rows), n_items, generator=gen),
    }
    out = {}
    for name, scores in rankers.items():
        scores = torch.as_tensor(scores, dtype=torch.float32)
        if scores.shape != (len(rows), n_items):
            raise ValueError(f"scores of {name!r} must have shape ({len(rows)}, {n_items}), got {tuple(scores.shape)}")
        full = torch.zeros(n_users, n_items)
        full[rows] = scores
        out[name] = evaluator.evaluate(full)
    return out


@torch.no_grad()
def simulated_choices(
    cal: Calibration, n_users: int = 2000, steps: int = 5, slate_size: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(films clicked, their ratings) of simulated users shown random slates, long-term effects off (notebook 04).

    A random recommender does not steer the choice, so what gets clicked is the simulated user's own
    taste: the thing to compare with what real users went on to rate.
    """
    from .policies import RandomPolicy
    from .simulator import SimulatorConfig, UserSimulator

    sim = UserSimulator(cal, SimulatorConfig(slate_size=slate_size, long_term=False, horizon=max(steps, 1)))
    policy = RandomPolicy(seed)
    sim.reset(n_users, seed=seed)
    items, ratings = [], []
    for _ in range(steps):
        if not bool(sim.active.any()):
            break
        _, _, _, _, info = sim.step(policy(sim))
        clicked = info["clicked"]
        items.append(info["item"][clicked])
        ratings.append(info["rating"][clicked])
    if not items:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return torch.cat(items).numpy(), torch.cat(ratings).numpy()


@dataclass
class FidelityReport:
    """The simulated user measured against a held-out part of real data (notebook 04)."""

    rankers: dict  # name -> EvalResult: each model as a ranker of the held-out part
    k: int
    rare_share: float  # share of greedy first picks with <= max_ratings training ratings
    max_ratings: int
    first_pick_counts: np.ndarray  # [U] training ratings of each user's greedy first pick
    simulated_items: np.ndarray  # films clicked under random slates
    simulated_ratings: np.ndarray  # their ratings (the rating model's, unrounded)
    real_items: np.ndarray  # films of the held-out part
    real_ratings: np.ndarray  # and their real ratings
    popularity_distance: float  # simulated clicks vs real held-out films (TV over log training count)
    popularity_references: dict  # name -> the same distance for a reference sample
    rating_distance: float  # simulated click ratings vs real held-out ratings (TV over stars)
    rating_references: dict  # name -> the same distance for a reference rating sample
    protocol: str

    def ndcg(self) -> dict:
        """``{ranker: NDCG@k}``."""
        return {name: r[f"NDCG@{self.k}"] for name, r in self.rankers.items()}

    def table(self) -> pd.DataFrame:
        """The distances with their references, one row each."""
        rows = [("popularity of chosen films", "simulated clicks (random slates)", self.popularity_distance)]
        rows += [("popularity of chosen films", name, d) for name, d in self.popularity_references.items()]
        rows += [("ratings of chosen films", "simulated clicks (random slates)", self.rating_distance)]
        rows += [("ratings of chosen films", name, d) for name, d in self.rating_references.items()]
        return pd.DataFrame(rows, columns=["what", "sample", "distance to real"]).set_index(["what", "sample"])


def fidelity_report(
    cal: Calibration,
    split,
    n_users: int,
    n_items: int,
    others: dict | None = None,
    part: str = "test",
    k: int = 10,
    max_ratings: int = 5,
    n_sim_users: int = 2000,
    steps: int = 5,
    slate_size: int = 5,
    seed: int = 0,
) -> FidelityReport:
    """Every fidelity check of the simulated user against ``split``'s held-out ``part`` (notebook 04).

    Rankers: :func:`ranking_fidelity`. Winner's curse: :func:`rare_pick_share`. Choices:
    :func:`simulated_choices` vs the real held-out films (popularity) and ratings, each with
    total-variation distances of reference samples -- uniformly random films; a constant rating
    (the training mean), uniformly random stars, and the rating model's own rating of the real
    held-out pairs (how much of the gap is the rating model rather than the choice).
    """
    real = getattr(split, part)
    rankers = ranking_fidelity(cal, split, n_users, n_items, others, part=part, k=k, seed=seed)
    picks = greedy_first_picks(cal)
    counts = cal.item_popularity[picks].numpy()
    sim_items, sim_ratings = simulated_choices(cal, n_sim_users, steps, slate_size, seed)
    if len(sim_items) == 0:
        raise RuntimeError("no simulated user clicked anything; raise n_sim_users or steps")
    real_items = real["item"].to_numpy().astype(np.int64)
    real_ratings = real["rating"].to_numpy().astype(np.float32)
    rng = np.random.default_rng(seed)
    random_items = rng.integers(0, n_items, len(real_items))
    rows = np.searchsorted(cal.user_ids, real["user_id"].to_numpy())
    if np.any(cal.user_ids[np.minimum(rows, len(cal.user_ids) - 1)] != real["user_id"].to_numpy()):
        raise KeyError(f"the {part} part has users the calibration does not know; pass the split it was fitted on")
    model_on_real = cal.ratings()[torch.as_tensor(rows), torch.as_tensor(real_items)].numpy()
    train_mean = float(split.train["rating"].mean())
    return FidelityReport(
        rankers=rankers,
        k=k,
        rare_share=float((counts <= max_ratings).mean()),
        max_ratings=max_ratings,
        first_pick_counts=counts,
        simulated_items=sim_items,
        simulated_ratings=sim_ratings,
        real_items=real_items,
        real_ratings=real_ratings,
        popularity_distance=popularity_distance(cal, sim_items, real_items),
        popularity_references={"uniformly random films": popularity_distance(cal, random_items, real_items)},
        rating_distance=rating_distance(sim_ratings, real_ratings),
        rating_references={
            "the training mean, every time": rating_distance(np.full(len(real_ratings), train_mean), real_ratings),
            "uniformly random stars": rating_distance(rng.integers(1, 6, len(real_ratings)), real_ratings),
            "rating model on the real held-out pairs": rating_distance(model_on_real, real_ratings),
        },
        protocol=f"{split.protocol}, {part} part; simulated: {n_sim_users} users, {steps} steps of "
        f"{slate_size} random films, long-term effects off, seed {seed}",
    )
