"""The cold-start catalogue and the text / ID Q-networks trained on its warm part (notebook 07, sections 2-3).

:func:`cold_item_mask` draws 20% of items as *cold* (docs/protocols.md, "Cold start"). During training
they are never in the agent's catalogue (masked from exploration, the greedy choice and the bootstrap
target) and are hidden from the histories it reads (:func:`recnb.agents.observe.restricted_observe`); no
platform item factor of a cold item reaches the agent (the platform's user vectors are its one BPR fit on the
training logs, which did include those films). At test time cold items enter the catalogue; the simulated
users' preferences for them were always known to the simulator. Item features are either the frozen MiniLM text
vectors (notebook 03) or one-hot IDs (:func:`id_features`); both networks start from the platform's BPR
item factors and biases of *warm* items only (:func:`warm_start`), then learn by TD (:func:`train_agent`).
:func:`shuffle_item_features` is the text ablation: permute some items' text vectors among them.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..agents.dqn import DQN, DQNConfig
from ..agents.networks import QNetwork
from ..agents.observe import restricted_observe


def cold_item_mask(n_items: int, fraction: float = 0.2, seed: int = 0) -> torch.Tensor:
    """BoolTensor [n_items], True for the ``fraction`` of items held out as cold (notebook 07)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction of cold items must be in (0, 1), got {fraction}")
    if n_items < 2:
        raise ValueError(f"n_items must be >= 2, got {n_items}")
    rng = np.random.default_rng(seed)
    cold = torch.zeros(n_items, dtype=torch.bool)
    cold[torch.as_tensor(rng.choice(n_items, size=max(1, int(round(fraction * n_items))), replace=False))] = True
    return cold


def id_features(n_items: int) -> torch.Tensor:
    """One-hot item features [n_items, n_items]: the item tower's first layer becomes an ID embedding (notebook 07)."""
    return torch.eye(n_items)


@torch.no_grad()
def warm_start(
    net: QNetwork, warm: torch.Tensor, factors: torch.Tensor, bias: torch.Tensor, taste_cols: slice, alpha: float = 10.0
) -> float:
    """Initialise ``net`` from the platform's collaborative model, fitted on ``warm`` items only (notebook 07).

    The linear item tower becomes a ridge regression from item features to ``[factors, bias]`` (the
    platform's BPR item vectors), fitted on warm rows only -- so for one-hot IDs a cold item's row
    stays at the warm average, and for text it is predicted from its text (notebook 03's text->BPR
    hybrid). The state tower starts as the platform's user factors (``user[:, taste_cols]``), so ``Q``
    starts as the platform recommender's score; TD learning then adds the long run.
    Returns the fit's R^2 on the warm rows.
    """
    if not hasattr(net.item_tower, "skip") or len(net.item_tower.mlp) != 1:
        raise ValueError("warm_start needs a linear item tower: DQNConfig(linear_items=True)")
    dim = factors.shape[1]
    if net.embed_dim < dim:
        raise ValueError(f"embed_dim ({net.embed_dim}) must be >= the factor width ({dim})")
    x = net.item_x[warm]
    y = torch.cat([factors[warm], bias[warm, None]], 1).to(x)
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    # dual form when features outnumber items (one-hot IDs): (X X^T + a I)^-1 Y
    if x.shape[1] > x.shape[0]:
        w = xc.T @ torch.linalg.solve(xc @ xc.T + alpha * torch.eye(len(x)), yc)
    else:
        w = torch.linalg.solve(xc.T @ xc + alpha * torch.eye(x.shape[1]), xc.T @ yc)
    layer = net.item_tower.skip
    layer.weight.zero_(), layer.bias.zero_()
    rows = list(range(dim)) + [net.embed_dim]  # embedding columns, then the bias column
    layer.weight[rows] = w.T
    layer.bias[rows] = ym - xm @ w
    tower = net.state_tower
    tower.skip.weight.zero_(), tower.skip.bias.zero_()
    tower.skip.weight[torch.arange(dim), torch.arange(tower.skip.weight.shape[1])[taste_cols]] = 1.0
    tower.mlp[-1].weight.zero_(), tower.mlp[-1].bias.zero_()
    pred = xc @ w
    return float(1 - ((pred - yc) ** 2).sum() / (yc**2).sum())


def train_agent(
    env,
    item_feats: torch.Tensor,
    cold: torch.Tensor,
    config: DQNConfig,
    progress: bool = True,
    start_from_factors: bool = True,
    alpha: float = 10.0,
    td: bool = True,
    logger=None,
) -> DQN:
    """Train notebook 06's DQN with ``item_feats`` on the warm catalogue only, on the platform's view (notebook 07).

    ``env`` is a :class:`recnb.platform.PlatformEnv` over the *training* users. Cold items are never
    shown, bootstrapped from or visible in histories; ``start_from_factors`` first applies
    :func:`warm_start` (ridge ``alpha``) with the platform's BPR item factors and biases
    (``env.platform``) of *warm* items; the fit's R^2 on warm items is kept as ``agent.fit_r2`` (None
    without a warm start). ``td=False`` stops after the warm start: the ablation that shows what TD adds.
    ``logger``: a :mod:`recnb.tracking` logger for the TD training's curves and hyperparameters.
    """
    if not (td or start_from_factors):
        raise ValueError("with td=False and start_from_factors=False the network would stay at random weights")
    if not hasattr(env, "platform"):
        raise TypeError("train_agent needs the platform's view: recnb.platform.PlatformEnv(sim, platform, users=...)")
    if item_feats.shape[0] != env.n_items:
        raise ValueError(f"item_feats needs one row an item ({env.n_items}), got {item_feats.shape[0]}")
    cold = torch.as_tensor(cold, dtype=torch.bool)
    agent = DQN(env, config, observe=restricted_observe(~cold, hide_history=True), item_feats=item_feats)
    agent.fit_r2 = None
    if start_from_factors:
        factors, bias = env.platform.item_factors.float().cpu(), env.platform.item_bias.float().cpu()
        dim = factors.shape[1]  # PlatformEnv.user_features() starts with the platform's user factors
        agent.fit_r2 = warm_start(agent.online, ~cold, factors, bias, slice(0, dim), alpha=alpha)
        agent.target.load_state_dict(agent.online.state_dict())
    if td:
        agent.train(progress=progress, logger=logger)
    return agent


def shuffle_item_features(net: QNetwork, items: torch.Tensor, seed: int = 0) -> QNetwork:
    """A copy of ``net`` whose features of ``items`` are permuted among them (no item keeps its own) (notebook 07).

    The text ablation: an item tower that carries the text scores the shuffled items differently;
    one that ignored its features would not notice. Genre shares (the fatigue term) stay with their
    items, so only the text moves.
    """
    items = torch.as_tensor(items)
    items = items.nonzero().squeeze(1) if items.dtype == torch.bool else items.long()
    if len(items) < 2:
        raise ValueError("need at least two items to shuffle their features")
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(items), generator=gen)
    fixed = perm == torch.arange(len(items))
    while bool(fixed.any()):  # a derangement: every item gets another item's features
        perm = torch.randperm(len(items), generator=gen)
        fixed = perm == torch.arange(len(items))
    out = copy.deepcopy(net)
    x = out.item_x.clone()
    x[items] = net.item_x[items[perm]]
    out.item_x = x
    return out
