"""The packed tensor layout that makes one batched step a handful of tensor ops (notebook 04).

At 1,024 simulated users every tensor of a step is small, so its cost is the number of ops, not their
size. :func:`pack_tables` therefore lays the calibration out once, per simulator:

* an item's features are one row ``[choice q (d) | 1 | choice bias | genre shares (G) | rating q (d) | 1 |
  rating bias]`` and a user's float state one row ``[choice pref (d) | choice base | 1 | felt exposure (G) |
  rating pref (d) | mu + b_u | 1]``, so one elementwise product of the two holds every term of the choice
  utility (the first ``d + 2`` columns), of the film's genre exposure (the next ``G``) and of the rating
  (the last ``d + 2``); a reset copies a user's starting row from ``user_table`` in one indexed copy;
* each calibration user's training items as a starting ``available`` mask and history;
* the config's numbers as 0-dim tensors: ``x * tensor`` costs a third of ``x * python_float`` here,
  because a Python number is wrapped into a new tensor at every call.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch

from .config import SimulatorConfig


@dataclass
class Tables:
    """What :func:`pack_tables` builds; :class:`recnb.simulator.UserSimulator` reads it every step."""

    item_table: torch.Tensor  # [N, F] packed item rows
    user_table: torch.Tensor  # [U, F] packed starting row of every calibration user
    cols: dict  # column blocks of the packed rows: preference, base, choice_terms, exposure, rating_terms
    utility_weights: torch.Tensor  # [F]: (user rows * weights) @ item rows.T = choice utility incl. fatigue
    rating_weights: torch.Tensor  # [F]: the same for the predicted rating
    genre_share: torch.Tensor  # [N, G] each item spreads one unit of exposure over its genres
    drift_scale: float  # drift moves preferences towards items on the scale of user vectors, not item vectors
    train_available: torch.Tensor  # [U, N] bool: False for a calibration user's training items
    train_history: torch.Tensor  # [U, K] their last K training items, padded with n_items
    c: SimpleNamespace  # the config's numbers as 0-dim tensors


def pack_tables(calibration, config: SimulatorConfig, device: torch.device) -> Tables:
    """The packed layout of ``calibration`` for ``config`` on ``device`` (see the module docstring)."""
    dev = device
    item_genres = calibration.item_genres.to(dev)
    genre_share = item_genres / item_genres.sum(1, keepdim=True)
    choice_user_factors = calibration.choice_user_factors.to(dev)
    choice_item_factors = calibration.choice_item_factors.to(dev)
    drift_scale = float(choice_user_factors.norm(dim=1).mean() / choice_item_factors.norm(dim=1).mean().clamp_min(1e-8))
    n_items, n_users = calibration.item_factors.shape[0], calibration.user_factors.shape[0]
    d, G, dr = choice_item_factors.shape[1], item_genres.shape[1], calibration.item_factors.shape[1]
    ones_n = torch.ones(n_items, 1, device=dev)
    item_table = torch.cat(
        [
            choice_item_factors,
            ones_n,
            calibration.choice_item_bias.to(dev)[:, None],
            genre_share,
            calibration.item_factors.to(dev),
            ones_n,
            calibration.item_bias.to(dev)[:, None],
        ],
        1,
    )
    ones_u = torch.ones(n_users, 1, device=dev)
    user_table = torch.cat(
        [
            choice_user_factors,
            (calibration.choice_user_bias.to(dev) + config.choice_offset)[:, None],
            ones_u,
            torch.zeros(n_users, G, device=dev),
            calibration.user_factors.to(dev),
            (calibration.mu + calibration.user_bias.to(dev))[:, None],
            ones_u,
        ],
        1,
    )
    cols = {
        "preference": slice(0, d),
        "base": d,
        "choice_terms": slice(0, d + 2),
        "exposure": slice(d + 2, d + 2 + G),
        "rating_terms": slice(d + 2 + G, d + 2 + G + dr + 2),
    }
    # the [B, N] views weigh the columns of packed user rows x item rows: utility = choice terms
    # - fatigue_strength * exposure (0 with long-term effects off); rating = the rating terms
    width = item_table.shape[1]
    utility_weights = torch.zeros(width, device=dev)
    utility_weights[cols["choice_terms"]] = 1.0
    utility_weights[cols["exposure"]] = -config.fatigue_strength if config.long_term else 0.0
    rating_weights = torch.zeros(width, device=dev)
    rating_weights[cols["rating_terms"]] = 1.0
    train_available, train_history = _training_items(calibration.train_items, n_items, config.history_len)
    return Tables(
        item_table,
        user_table,
        cols,
        utility_weights,
        rating_weights,
        genre_share,
        drift_scale,
        train_available.to(dev),
        train_history.to(dev),
        _constants(config, drift_scale, dev),
    )


def _training_items(train_items, n_items: int, history_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per calibration user: ``available`` [U, N] (False = a training item, seen already) and the last
    ``history_len`` training items [U, K] (padded with ``n_items``), built on the CPU."""
    seen_mask = torch.zeros(len(train_items), n_items, dtype=torch.bool)
    history = torch.full((len(train_items), history_len), n_items, dtype=torch.long)
    for row, seen in enumerate(train_items):
        seen_mask[row, torch.as_tensor(seen, dtype=torch.long)] = True
        last = torch.as_tensor(seen[-history_len:], dtype=torch.long)
        if len(last):
            history[row, -len(last) :] = last
    return ~seen_mask, history


def _constants(config: SimulatorConfig, drift_scale: float, device: torch.device) -> SimpleNamespace:
    """The numbers a step multiplies by, as 0-dim tensors on ``device`` (see the module docstring)."""
    values = dict(
        fatigue_strength=config.fatigue_strength,
        fatigue_recovery=config.fatigue_recovery,
        drift_rate=config.drift_rate,
        drift_scale=drift_scale,
        boredom=config.boredom,
        no_click_experience=config.no_click_experience,
        satisfaction_rate=config.satisfaction_rate,
        leave_base=config.leave_base,
        leave_sensitivity=config.leave_sensitivity,
        one=1.0,
        quarter=0.25,
    )
    c = SimpleNamespace(**{name: torch.tensor(value, device=device) for name, value in values.items()})
    c.no_item = torch.tensor(-1, device=device)
    return c
