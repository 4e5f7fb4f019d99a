"""A small abstract MDP over genres, estimated from the simulated user, and its policies (notebook 05).

The full simulator (``recnb.simulator``) has a continuous, per-user state and 1682 actions: far
too big for a table. Notebook 05 coarsens it into a finite MDP that tabular methods can solve
exactly and learn, then plays the learned genre policy back in the full simulator.

**Actions** -- a genre ``a`` out of a few common ones (:class:`GenreSpace`). The item shown is the
user's top *available* item tagged with that genre by their current predicted rating (fatigue
included); with the click reward that is also the genre's best immediate expected reward.

**States** -- ``(last genre, fatigue bucket[, satisfaction bucket])``:

* last genre: the action genre of the user's last click (``none`` before the first click);
* fatigue bucket: the user's recent exposure to that genre (``UserState.exposure``), cut at
  ``fatigue_edges`` -- fatigue lowers the ratings of more of the same;
* satisfaction bucket (optional, off by default): ``UserState.satisfaction`` cut at
  ``satisfaction_edges`` -- low satisfaction makes users leave. Off keeps the table small enough
  for tabular learning to converge in seconds (19 states instead of 37);

plus one absorbing ``left`` state (the user terminated). The time limit is not part of the state:
the abstract MDP is discounted and infinite-horizon, so a truncated episode is just cut short.

**Model** -- estimated by sampling (:func:`estimate_genre_mdp`): fresh simulated users are shown
uniformly random genres until they leave or hit the time limit; every observed transition
``(s, a, r, s')`` is counted, ``P(s'|s, a)`` is the observed frequency and ``R(s, a, s')`` the mean
reward of those transitions. A state-action never observed is modelled as "the user leaves,
reward 0" (pessimistic; :attr:`GenreMDP.unvisited` counts them). The coarse state is not exactly
Markov (the user's preference vector, exposure to other genres and consumed items are hidden in
it), so the abstract optimum is the best *genre* policy under this model -- which is why the
notebook checks it back in the full simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._checks import check_int, check_seed, check_tuple, need
from .agents.tabular import TabularMDP
from .data import GENRES
from .policies import NEG

DEFAULT_GENRES = ("Drama", "Comedy", "Action", "Thriller", "Romance")


@dataclass(frozen=True)
class GenreSpace:
    """How simulator states map to abstract states, and genres to actions (notebook 05). Frozen, validated."""

    genres: tuple = DEFAULT_GENRES
    """The action genres (MovieLens genre names)."""
    fatigue_edges: tuple = (0.6, 1.5)
    """Cut points of the exposure to the last-clicked genre: len + 1 fatigue buckets."""
    satisfaction_edges: tuple = ()
    """Cut points of the user's satisfaction: len + 1 satisfaction buckets (empty: not part of the state)."""

    def __post_init__(self):
        for name in ("genres", "fatigue_edges", "satisfaction_edges"):
            value = check_tuple(f"GenreSpace.{name}", getattr(self, name), allow_empty=name != "genres")
            object.__setattr__(self, name, value)  # a tuple: the frozen space stays hashable and unchanged
        unknown = [g for g in self.genres if g not in GENRES]
        need(
            self.genres and not unknown and len(set(self.genres)) == len(self.genres),
            f"GenreSpace.genres must be distinct MovieLens genres from {GENRES}; bad: {unknown or self.genres}",
        )
        for name in ("fatigue_edges", "satisfaction_edges"):
            edges = np.asarray(getattr(self, name), dtype=float)
            need(
                np.isfinite(edges).all() and not np.any(np.diff(edges) <= 0),
                f"GenreSpace.{name} must be increasing finite numbers, got {getattr(self, name)}",
            )

    @property
    def n_actions(self) -> int:
        return len(self.genres)

    @property
    def genre_columns(self) -> list:
        """Column of each action genre in ``sim.item_genres``."""
        return [GENRES.index(g) for g in self.genres]

    @property
    def shape(self) -> tuple:
        """``(last genres incl. none, fatigue buckets, satisfaction buckets)``."""
        return (len(self.genres) + 1, len(self.fatigue_edges) + 1, len(self.satisfaction_edges) + 1)

    @property
    def n_states(self) -> int:
        """Live states plus the absorbing ``left`` state (the last index)."""
        return int(np.prod(self.shape)) + 1

    @property
    def left(self) -> int:
        return self.n_states - 1

    def state_names(self) -> list:
        names = []
        for last in ("none", *self.genres):
            for f in range(self.shape[1]):
                for s in range(self.shape[2]):
                    names.append(f"{last}|fat{f}|sat{s}" if self.shape[2] > 1 else f"{last}|fat{f}")
        return names + ["left"]

    def index(self, last: torch.Tensor, exposure: torch.Tensor, satisfaction: torch.Tensor) -> torch.Tensor:
        """Abstract state per user from last-clicked genre (-1 = none), genre exposure [B, G] and satisfaction [B]."""
        cols = torch.as_tensor([0, *self.genre_columns], device=exposure.device)
        own = exposure.gather(1, cols[last + 1].unsqueeze(1)).squeeze(1)
        own = torch.where(last < 0, torch.zeros_like(own), own)  # no genre yet: no fatigue
        fat = torch.bucketize(own, torch.as_tensor(self.fatigue_edges, dtype=own.dtype, device=own.device))
        sat = torch.bucketize(
            satisfaction, torch.as_tensor(self.satisfaction_edges, dtype=satisfaction.dtype, device=satisfaction.device)
        )
        return ((last + 1) * self.shape[1] + fat) * self.shape[2] + sat


class GenreTracker:
    """Follows a batch of simulated users in the abstract MDP: picks items for genres, updates last genres
    (notebook 05)."""

    def __init__(self, sim, space: GenreSpace):
        self.sim, self.space = sim, space
        self.in_genre = sim.item_genres[:, space.genre_columns].T.bool()  # [A, N]
        self.last = torch.full((sim.n_users,), -1, dtype=torch.long, device=sim.device)
        self._shown = None

    def state(self) -> torch.Tensor:
        """LongTensor [B]: each user's abstract state (``left`` once their episode ended)."""
        s = self.sim.state
        idx = self.space.index(self.last, s.exposure, s.satisfaction)
        return torch.where(s.active, idx, torch.full_like(idx, self.space.left))

    def items_for(self, genres: torch.Tensor) -> torch.Tensor:
        """The available item of each user's genre they are likeliest to click now (the simulator's own model)."""
        score = self.sim.click_probability().masked_fill(~self.sim.available_mask(), NEG)
        in_genre = self.in_genre[genres]  # [B, N]
        best_in = score.masked_fill(~in_genre, NEG).argmax(1)
        # no item of the genre left (rare): fall back to the best item overall
        empty = score.masked_fill(~in_genre, NEG).max(1).values <= NEG / 2
        return torch.where(empty, score.argmax(1), best_in)

    def observe(self, genres: torch.Tensor, clicked: torch.Tensor) -> None:
        """After a step: a click makes the recommended genre the user's last genre."""
        self.last = torch.where(clicked, genres, self.last)


@dataclass
class GenreMDP:
    """The estimated abstract MDP, its genre space and the sample counts behind it (notebook 05)."""

    mdp: TabularMDP
    space: GenreSpace
    counts: np.ndarray  # [S, A, S] observed transitions
    unvisited: int  # live state-actions never observed (modelled as: the user leaves, reward 0)
    n_users: int
    seed: int
    transitions: int = field(init=False)

    def __post_init__(self):
        self.transitions = int(self.counts.sum())


@torch.no_grad()
def estimate_genre_mdp(
    sim, space: GenreSpace = GenreSpace(), n_users: int = 2000, seed: int = 0, users=None, progress: bool = False
) -> GenreMDP:
    """Estimate ``P`` and ``R`` of the genre MDP from random-genre episodes of fresh simulated users (notebook 05)."""
    check_int("n_users", n_users, minimum=1)
    check_seed("seed", seed)
    S, A = space.n_states, space.n_actions
    counts = np.zeros((S, A, S))
    reward_sum = np.zeros((S, A, S))
    if users is not None:
        pool = torch.as_tensor(users, dtype=torch.long)
        users = pool[torch.randint(0, len(pool), (n_users,), generator=torch.Generator().manual_seed(seed))]
    sim.reset(n_users, seed=seed, users=users)
    tracker = GenreTracker(sim, space)
    gen = torch.Generator().manual_seed(seed + 1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sim.config.horizon, desc="sampling the genre MDP", leave=False)
    while bool(sim.active.any()):
        was_active = sim.active.clone()
        state = tracker.state()
        genres = torch.randint(0, A, (sim.n_users,), generator=gen).to(sim.device)
        _, reward, terminated, _, info = sim.step(tracker.items_for(genres))
        tracker.observe(genres, info["clicked"])
        nxt = torch.where(terminated, torch.full_like(state, space.left), tracker.state())
        # a truncated user is inactive now but not "left": record the live state it reached
        nxt = torch.where(
            ~terminated & ~sim.active, space.index(tracker.last, sim.state.exposure, sim.state.satisfaction), nxt
        )
        rows = was_active.cpu().numpy()
        s, a, s2 = state.cpu().numpy()[rows], genres.cpu().numpy()[rows], nxt.cpu().numpy()[rows]
        np.add.at(counts, (s, a, s2), 1.0)
        np.add.at(reward_sum, (s, a, s2), reward.double().cpu().numpy()[rows])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return genre_mdp_from_counts(counts, reward_sum, space, n_users=n_users, seed=seed)


def genre_mdp_from_counts(
    counts: np.ndarray, reward_sum: np.ndarray, space: GenreSpace, n_users: int = 0, seed: int = 0
) -> GenreMDP:
    """Turn transition counts and reward sums into a :class:`GenreMDP` (maximum-likelihood model) (notebook 05)."""
    S, A = space.n_states, space.n_actions
    if counts.shape != (S, A, S) or reward_sum.shape != (S, A, S):
        raise ValueError(f"counts and reward_sum must have shape {(S, A, S)}, got {counts.shape}, {reward_sum.shape}")
    totals = counts.sum(2, keepdims=True)
    seen = totals[..., 0] > 0
    P = np.where(totals > 0, counts / np.maximum(totals, 1), 0.0)
    R = np.where(counts > 0, reward_sum / np.maximum(counts, 1), 0.0)
    P[~seen, space.left] = 1.0  # never observed: pessimistically, the user leaves with nothing
    P[space.left] = 0.0
    P[space.left, :, space.left] = 1.0
    R[space.left] = 0.0
    live_unseen = int((~seen[:-1]).sum())
    terminal = np.zeros(S, dtype=bool)
    terminal[space.left] = True
    mdp = TabularMDP(
        P,
        R,
        start=_start_distribution(space),
        terminal=terminal,
        state_names=space.state_names(),
        action_names=list(space.genres),
    )
    return GenreMDP(mdp, space, counts, live_unseen, n_users, seed)


def _start_distribution(space: GenreSpace) -> np.ndarray:
    """Every episode starts with no last genre, no fatigue, and the satisfaction bucket of ``satisfaction_init``."""
    from .simulator import SimulatorConfig

    init = SimulatorConfig().satisfaction_init
    sat = int(np.searchsorted(np.asarray(space.satisfaction_edges, dtype=float), init, side="right"))
    start = np.zeros(space.n_states)
    start[sat] = 1.0  # last = none, fatigue bucket 0
    return start


class GenrePolicy:
    """Plays a genre policy ``table[state] -> genre`` in the full simulator (notebook 05).

    A policy for :func:`recnb.policies.evaluate_policy`: each step it works out every user's
    abstract state, looks up the genre and shows the user's best available item of that genre.
    """

    def __init__(self, table, space: GenreSpace, name: str = "genre policy"):
        self.table = torch.as_tensor(np.asarray(table), dtype=torch.long)
        if self.table.shape != (space.n_states,) or self.table.min() < 0 or self.table.max() >= space.n_actions:
            raise ValueError(f"table must hold one genre index in [0, {space.n_actions}) per state ({space.n_states})")
        self.space, self.name = space, name
        self._tracker = None

    def reset(self, seed: int = 0) -> None:
        self._tracker = None  # a new batch of users: forget last genres

    def __call__(self, sim) -> torch.Tensor:
        tracker = self._tracker
        if (
            tracker is None
            or tracker.sim is not sim
            or tracker.last.shape[0] != sim.n_users
            or bool((sim.state.t == 0).all())
        ):
            tracker = self._tracker = GenreTracker(sim, self.space)
        else:  # learn what happened to the previous recommendation: a click puts it at the end of the history
            clicked = sim.state.history[:, -1] == self._shown
            tracker.observe(self._genres, clicked)
        state = tracker.state()
        self._genres = self.table.to(sim.device)[state]
        self._shown = tracker.items_for(self._genres)
        return self._shown
