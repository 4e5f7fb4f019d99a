"""Why did the agent recommend this? Occlusion explanations, and scoring new items (notebook 07, sections 6-8).

:func:`history_attribution` and :func:`word_attribution` are leave-one-out occlusion: how much a Q-value
drops when one history item, or one word of the item's text, is removed. :func:`score_items` scores films
the network has never seen from their features alone.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from ..agents.networks import QNetwork


@torch.no_grad()
def history_attribution(net: QNetwork, obs: dict, row: int, item: int) -> pd.DataFrame:
    """How much ``Q(s, item)`` of user ``row`` drops when each history item is removed (occlusion) (notebook 07)."""
    one = {k: v[row : row + 1] for k, v in obs.items()}
    hist = one["history"][0]
    positions = [p for p in range(len(hist)) if int(hist[p]) < net.n_items]
    if not positions:
        raise ValueError("this user's history is empty: there is nothing to attribute to")
    variants = one["history"].repeat(len(positions) + 1, 1)
    for k, p in enumerate(positions, 1):
        variants[k, p] = net.n_items  # occlude = replace with padding
    batch = {key: value.expand(len(variants), *value.shape[1:]) for key, value in one.items()}
    batch["history"] = variants
    q = net(batch, torch.full((len(variants),), item, dtype=torch.long))  # the network itself: every term
    return pd.DataFrame(
        {"position": positions, "item": [int(hist[p]) for p in positions], "q_drop": (q[0] - q[1:]).numpy()}
    )


def _words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


@torch.no_grad()
def word_attribution(score_text: Callable[[list[str]], np.ndarray], text: str) -> pd.DataFrame:
    """How much a text-scored value drops when each word of ``text`` is deleted (occlusion) (notebook 07).

    ``score_text(texts) -> values`` scores a list of texts (e.g. encode, then the Q-network's item tower).
    """
    words = _words(text)
    if not words:
        raise ValueError("text has no words to attribute to")
    variants = [text] + [" ".join(words[:k] + words[k + 1 :]) for k in range(len(words))]
    values = np.asarray(score_text(variants), dtype=float)
    return pd.DataFrame({"word": words, "q_drop": values[0] - values[1:]})


@torch.no_grad()
def score_items(
    net: QNetwork, obs: dict, item_x: torch.Tensor, genre_share: torch.Tensor | None = None
) -> torch.Tensor:
    """Q-values [B, M] of M new items from their *standardised* features ``item_x`` [M, F] (notebook 07).

    The network itself scores them: a copy whose catalogue is extended by the new items (their
    genre shares ``genre_share`` [M, G] are needed when it has the fatigue term); histories keep
    pointing at the old catalogue.
    """
    if item_x.dim() != 2 or item_x.shape[1] != net.item_x.shape[1]:
        raise ValueError(f"item_x must be [M, {net.item_x.shape[1]}] standardised features, got {tuple(item_x.shape)}")
    big = copy.deepcopy(net)
    big.item_x = torch.cat([net.item_x, item_x.to(net.item_x)])
    if net.fatigue is not None:
        if genre_share is None or genre_share.shape != (len(item_x), net.genre_share.shape[1]):
            raise ValueError(
                f"this network prices genre fatigue: pass genre_share [{len(item_x)}, {net.genre_share.shape[1]}]"
            )
        big.genre_share = torch.cat([net.genre_share, genre_share.to(net.genre_share)])
    obs = dict(obs, history=torch.where(obs["history"] < net.n_items, obs["history"], big.n_items))
    return big(obs)[:, net.n_items :]
