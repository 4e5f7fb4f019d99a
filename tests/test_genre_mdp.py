"""The genre MDP: state indexing, a valid estimated model, and a genre policy that plays in the simulator."""

import numpy as np
import pytest
import torch

from recnb import genre_mdp as gm
from recnb.agents import tabular as tb
from recnb.data import GENRES
from recnb.policies import evaluate_policy
from recnb.simulator import Calibration, SimulatorConfig, UserSimulator


def tiny_simulator(n_items=40, n_users=6, seed=0):
    """A hand-built calibration: 40 items spread over the five default genres, 6 users."""
    gen = torch.Generator().manual_seed(seed)
    genres = torch.zeros(n_items, len(GENRES))
    for i in range(n_items):
        genres[i, GENRES.index(gm.DEFAULT_GENRES[i % 5])] = 1.0
    users, items, bias = (
        0.5 * torch.randn(n_users, 4, generator=gen),
        0.5 * torch.randn(n_items, 4, generator=gen),
        torch.linspace(-0.5, 0.5, n_items),
    )
    cal = Calibration(
        mu=3.5,
        user_factors=users,
        user_bias=torch.zeros(n_users),
        item_factors=items,
        item_bias=bias,
        choice_user_factors=users,
        choice_user_bias=torch.zeros(n_users),
        choice_item_factors=items,
        choice_item_bias=bias,
        item_genres=genres,
        item_popularity=torch.arange(n_items, dtype=torch.float32),
        train_items=[np.array([u], dtype=np.int64) for u in range(n_users)],
        user_ids=np.arange(n_users),
        train_rmse=0.0,
    )
    return UserSimulator(cal, SimulatorConfig(horizon=15))


def test_state_index_layout():
    space = gm.GenreSpace(fatigue_edges=(0.5, 1.0), satisfaction_edges=(0.5,))
    assert space.shape == (6, 3, 2) and space.n_states == 37 and space.left == 36
    assert len(space.state_names()) == 37 and space.state_names()[0] == "none|fat0|sat0"
    exposure = torch.zeros(3, len(GENRES))
    exposure[1, GENRES.index("Comedy")] = 0.7
    exposure[2, GENRES.index("Romance")] = 2.0
    last = torch.tensor([-1, 1, 4])  # none, Comedy, Romance
    idx = space.index(last, exposure, torch.tensor([0.9, 0.2, 0.6]))
    # ((last + 1) * fatigue buckets + fatigue) * satisfaction buckets + satisfaction
    assert idx.tolist() == [(0 * 3 + 0) * 2 + 1, (2 * 3 + 1) * 2 + 0, (5 * 3 + 2) * 2 + 1]
    names = space.state_names()
    assert [names[i] for i in idx] == ["none|fat0|sat1", "Comedy|fat1|sat0", "Romance|fat2|sat1"]


def test_estimated_model_is_a_valid_mdp():
    sim = tiny_simulator()
    G = gm.estimate_genre_mdp(sim, n_users=64, seed=1)
    mdp, space = G.mdp, G.space
    assert mdp.P.shape == (space.n_states, 5, space.n_states)
    np.testing.assert_allclose(mdp.P.sum(2), 1.0)
    assert mdp.terminal[space.left] and mdp.P[space.left, :, space.left].min() == 1.0
    assert G.transitions > 64 and G.counts[space.left].sum() == 0  # nothing is observed after leaving
    # clicks are the only reward, so rewards are in [0, 1]; the start state is "none" at fatigue 0
    assert 0 <= mdp.expected_reward.min() and mdp.expected_reward.max() <= 1
    assert mdp.state_names[int(mdp.start.argmax())] == "none|fat0"
    # from "none", a transition goes to the recommended genre (click), stays at "none" (no click) or leaves
    s0 = int(mdp.start.argmax())
    for a, genre in enumerate(space.genres):
        reached = {mdp.state_names[t].split("|")[0] for t in np.flatnonzero(G.counts[s0, a])}
        assert reached <= {"none", genre, "left"}
    V, _ = tb.value_iteration(mdp, 0.9)
    assert V[space.left] == 0 and V.max() > 0


def test_unvisited_pairs_are_pessimistic():
    space = gm.GenreSpace(genres=("Drama", "Comedy"), fatigue_edges=(1.0,))
    S, A = space.n_states, space.n_actions
    counts, rewards = np.zeros((S, A, S)), np.zeros((S, A, S))
    counts[0, 0, 2], rewards[0, 0, 2] = 4, 3.0  # none --Drama--> Drama|fat0, reward 0.75 on average
    G = gm.genre_mdp_from_counts(counts, rewards, space)
    assert G.mdp.P[0, 0, 2] == 1.0 and G.mdp.R[0, 0, 2] == pytest.approx(0.75)
    assert G.mdp.P[0, 1, space.left] == 1.0 and G.mdp.expected_reward[0, 1] == 0.0
    assert G.unvisited == (S - 1) * A - 1


def test_genre_policy_shows_items_of_its_genre_and_tracks_clicks():
    sim = tiny_simulator()
    space = gm.GenreSpace()
    comedy = space.genres.index("Comedy")
    policy = gm.GenrePolicy(np.full(space.n_states, comedy), space, "always comedy")
    sim.reset(32, seed=3)
    policy.reset()
    col = GENRES.index("Comedy")
    for _ in range(5):
        if not bool(sim.active.any()):
            break
        items = policy(sim)
        assert bool((sim.item_genres[items, col] == 1).all())
        sim.step(items)
    policy(sim)  # sees the outcome of the last step
    clicked_any = (
        sim.state.consumed.sum(1) > torch.tensor([len(t) for t in sim.calibration.train_items])[sim.state.user]
    )
    assert torch.equal(policy._tracker.last >= 0, clicked_any)  # last genre set exactly for users who clicked
    ev = evaluate_policy(sim, policy, n_users=16, seed=0)
    assert ev.returns.shape == (16,) and ev.mean_return > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="genres"):
        gm.GenreSpace(genres=("Drama", "Space Opera"))
    with pytest.raises(ValueError, match="increasing"):
        gm.GenreSpace(fatigue_edges=(1.0, 0.5))
    with pytest.raises(ValueError, match="table"):
        gm.GenrePolicy(np.zeros(3, dtype=int), gm.GenreSpace())
    with pytest.raises(ValueError, match="shape"):
        gm.genre_mdp_from_counts(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), gm.GenreSpace())
