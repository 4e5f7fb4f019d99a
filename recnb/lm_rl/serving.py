"""Serving and scoring a catalogue: scorers, the serving rule, warm / cold evaluations (notebook 07, section 3).

Every score is the network's own forward pass (:func:`q_scorer`); :func:`random_scorer` is the floor and
:func:`oracle_scorer`, the only scorer that reads the simulator, a labelled reference. Every policy is served
with the same rule (:class:`CataloguePolicy`): best-scored allowed item, ties broken at random, and an item
the user ignored is not shown to them again in the episode. :func:`catalogue_evaluations` scores each policy
twice on the same evaluation users -- choosing only among warm items, and only among cold items -- so "click
rate on cold items" is the click rate of a policy whose recommendations are cold items; per-user results are
kept, so two policies compare user by user (:func:`paired_click_rate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pandas as pd
import torch

from ..agents.dqn import NEG
from ..agents.networks import QNetwork
from ..agents.observe import restricted_observe
from ..policies import Comparison, Evaluation, evaluate_policy, paired_difference, top_items


def q_scorer(net: QNetwork) -> Callable:
    """``score(env, rows=None) -> Q [B, N]``: the network itself on the platform's view of every item (notebook 07).

    ``rows`` (LongTensor) scores only those users (:class:`CataloguePolicy` passes the active ones).
    """
    observe = restricted_observe()

    @torch.no_grad()
    def score(env, rows: torch.Tensor | None = None) -> torch.Tensor:
        obs = observe(env)
        if rows is not None:
            obs = {key: value.index_select(0, rows) for key, value in obs.items()}
        return net(obs)

    score.takes_rows = True
    return score


def random_scorer(seed: int = 0) -> Callable:
    """``score(env, rows=None)``: uniform noise, i.e. a random available item (notebook 07)."""
    gen = torch.Generator().manual_seed(seed)

    def score(env, rows: torch.Tensor | None = None) -> torch.Tensor:
        n = env.n_users if rows is None else len(rows)
        return torch.rand(n, env.n_items, generator=gen).to(env.device)

    score.takes_rows = True
    return score


def oracle_scorer(env, rows: torch.Tensor | None = None) -> torch.Tensor:
    """**Oracle** ``score(env, rows=None)``: the simulator's own expected immediate reward (true tastes).

    Reads the simulator behind the platform's view: a reference that bounds what any policy could
    reach greedily, never an agent's input (notebook 07).
    """
    truth = getattr(env, "sim", env).expected_reward()
    return truth if rows is None else truth.index_select(0, rows)


oracle_scorer.takes_rows = True


class CataloguePolicy:
    """Best-scored item among the user's available items that are in ``allowed``; ties broken at random (notebook 07).

    Random tie-breaking matters: an ID network scores all never-seen items alike, and taking the
    lowest index among equals would hand it the catalogue's ordering (MovieLens ids favour old hits).

    ``skip_ignored`` is a serving rule every platform applies: an item the user was shown and did not
    click is not shown to them again this episode. Without it a deterministic policy that misjudges
    an item shows it again and again -- the simulated user's clicks are fresh draws, so a wrong guess
    is never corrected, and on the items the policy knows least (cold ones) most steps go to repeats.
    Applied alike to every policy compared. Once every allowed item was ignored, ignored items come
    back; once every allowed item was consumed, one is shown again anyway (it earns nothing).
    """

    def __init__(self, score: Callable, allowed: torch.Tensor, name: str, seed: int = 0, skip_ignored: bool = True):
        self.score, self.allowed, self.name = score, torch.as_tensor(allowed, dtype=torch.bool), name
        self.skip_ignored = skip_ignored
        self.reset(seed)

    def reset(self, seed: int = 0):
        """Forget the episode (``evaluate_policy`` calls this before every evaluation)."""
        self.generator = torch.Generator().manual_seed(int(seed))
        self.ignored = self.previous = None
        self.shown = self.repeats = 0

    @property
    def repeat_fraction(self) -> float:
        """Share of this evaluation's recommendations that repeated the user's previous item."""
        return self.repeats / max(self.shown, 1)

    def _remember_ignored(self, available: torch.Tensor) -> None:
        if self.ignored is None or self.ignored.shape != available.shape:
            self.ignored = torch.zeros_like(available)
        elif self.previous is not None:  # shown last step and still available = not clicked
            rows = available.gather(1, self.previous[:, None]).squeeze(1).nonzero().squeeze(1)
            self.ignored[rows, self.previous[rows]] = True

    def __call__(self, env) -> torch.Tensor:
        available, allowed = env.available_mask(), self.allowed.to(env.device)
        self._remember_ignored(available)
        active = env.active
        # only users still in their session are scored (a finished user's action is ignored)
        rows = (
            active.nonzero().squeeze(1)
            if getattr(self.score, "takes_rows", False)
            else torch.arange(len(active), device=active.device)
        )
        mask = available.index_select(0, rows) & allowed
        if self.skip_ignored:
            fresh = mask & ~self.ignored.index_select(0, rows)
            mask = torch.where(fresh.any(1, keepdim=True), fresh, mask)
        # a user who consumed every allowed item is shown one again: legal, never clicked, earns nothing
        mask = torch.where(mask.any(1, keepdim=True), mask, allowed.expand_as(mask))
        q = self.score(env, rows) if getattr(self.score, "takes_rows", False) else self.score(env)
        q = q.float().masked_fill(~mask, NEG)
        best = q.max(1, keepdim=True).values
        tied = mask & (q >= best - 1e-5 * (1 + best.abs()))
        picked = q.argmax(1)
        multi = (tied.sum(1) > 1).nonzero().squeeze(1)  # usually few rows: noise only where it decides
        if len(multi):
            noise = torch.rand(len(multi), q.shape[1], generator=self.generator).to(q.device)
            picked[multi] = top_items(noise, tied[multi], 1)
        choice = (
            torch.zeros(len(active), dtype=torch.long, device=active.device)
            if self.previous is None
            else self.previous.clone()
        )
        choice[rows] = picked
        if self.previous is not None:
            self.repeats += int((choice == self.previous)[active].sum())
            self.shown += int(active.sum())
        self.previous = choice
        return choice


CATALOGUES = ("warm", "cold")


def catalogue_evaluations(
    env,
    scorers: dict,
    cold: torch.Tensor,
    n_users: int = 1000,
    seed: int = 1,
    users=None,
    skip_ignored: bool = True,
    catalogues=CATALOGUES,
) -> dict:
    """Each scorer on the same users, choosing among warm items only and among cold items only (notebook 07).

    ``env`` is a :class:`recnb.platform.PlatformEnv` over the *evaluation* users. Returns
    ``{(name, catalogue): Evaluation}`` with per-user returns, lengths and click rates (simulator
    protocol, common random numbers: the same ``seed``, hence the same users and draws, for every
    policy), each with ``repeat_share`` set: the share of recommendations that repeated the user's
    previous item. ``skip_ignored``: :class:`CataloguePolicy`'s serving rule, for every scorer alike.
    ``catalogues``: which of ``("warm", "cold")`` to evaluate.
    """
    cold = torch.as_tensor(cold, dtype=torch.bool)
    unknown = set(catalogues) - set(CATALOGUES)
    if unknown:
        raise ValueError(f"catalogues must be among {CATALOGUES}, got {sorted(unknown)}")
    out = {}
    for name, score in scorers.items():
        for catalogue, allowed in zip(CATALOGUES, (~cold, cold)):
            if catalogue not in catalogues:
                continue
            policy = CataloguePolicy(score, allowed, name, skip_ignored=skip_ignored)
            ev: Evaluation = evaluate_policy(env, policy, n_users=n_users, seed=seed, users=users)
            ev.repeat_share = policy.repeat_fraction
            out[name, catalogue] = ev
    return out


def catalogue_table(evaluations: dict) -> pd.DataFrame:
    """One row per (policy, catalogue) of :func:`catalogue_evaluations`: means, 95% CIs over users, repeat share."""
    return pd.DataFrame(
        [
            {
                **ev.summary(),
                "policy": name,
                "catalogue": catalogue,
                "repeat_share": getattr(ev, "repeat_share", float("nan")),
            }
            for (name, catalogue), ev in evaluations.items()
        ]
    )


def evaluate_catalogues(
    env, scorers: dict, cold: torch.Tensor, n_users: int = 1000, seed: int = 1, users=None, skip_ignored: bool = True
) -> pd.DataFrame:
    """:func:`catalogue_table` of :func:`catalogue_evaluations`: one row per (policy, catalogue) (notebook 07)."""
    return catalogue_table(catalogue_evaluations(env, scorers, cold, n_users, seed, users, skip_ignored))


def paired_click_rate(a: Evaluation, b: Evaluation) -> Comparison:
    """Paired per-user difference of click rates, ``a - b``, on the same users (notebook 07).

    :func:`recnb.policies.paired_difference` applied to the per-user click rates instead of returns.
    """
    return paired_difference(
        dataclasses.replace(a, returns=a.click_rates), dataclasses.replace(b, returns=b.click_rates)
    )
