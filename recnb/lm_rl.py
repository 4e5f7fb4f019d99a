"""Language models meet RL: text-feature Q-networks, cold-start items, TD fine-tuning, explanations (notebook 07).

Builds on notebook 06's DQN (:mod:`recnb.agents.dqn`), whose Q-network scores an item from its
*features* ``x_i`` (``QNetwork``: ``f(s) . g(x_i) + b(x_i)`` plus a state value and a learned price on
genre fatigue). Here ``x_i`` is either

* **text**: the frozen MiniLM vector of the item's text (notebook 03); the item tower ``g`` is then a
  learned linear adapter on top of the language model, or
* **ID**: a one-hot vector, so ``g`` is a learned ID embedding table.

**What the agent sees** (:func:`restricted_observe`): only the platform's view
(:class:`recnb.platform.PlatformEnv`, :func:`recnb.platform.observe_platform`): the platform's user
features (its BPR user factors, decayed genre clicks and ignores, session counters), the logged history
and which films are available -- *not* the platform recommender's ``immediate`` scores, which it cannot
have for a film it never logged, and never the simulator's hidden state. Both networks start from the
platform's BPR item factors and biases of *warm* items only (:func:`warm_start`,
``movielens_platform().item_factors``), then learn by TD. Every score is the network's own forward pass
(:func:`q_scorer`, :func:`score_items`). The only scorer that reads the simulator is
:func:`oracle_scorer`, a labelled reference.

**Cold-start protocol** (docs/protocols.md): :func:`cold_item_mask` draws 20% of items as *cold*. During
training they are never in the agent's catalogue (masked from exploration, the greedy choice and the
bootstrap target) and are hidden from the histories it reads (:func:`restricted_observe`); no platform
item factor of a cold item reaches the agent (the platform's user vectors are its one BPR fit on the
training logs, which did include those films). Agents train on one pool of users
(``PlatformEnv(sim, platform, users=train_rows)``, :func:`recnb.platform.split_users`) and are scored
on the other. At test time cold items enter the catalogue; the simulated users' preferences for them
were always known to the simulator. Each policy is scored twice on the same evaluation users: choosing
only among warm items, and only among cold items (:func:`catalogue_evaluations`), so "click rate on cold
items" is the click rate of a policy whose recommendations are cold items. Per-user results are kept,
so two policies compare user by user (:func:`paired_click_rate`). Every policy is served with the same
rule (:class:`CataloguePolicy`): an item the user ignored is not shown to them again in the episode.

**Does the text matter?** (:func:`shuffle_item_features`): the same network with the text vectors of
some items permuted among them -- if the item tower carried no text, nothing would change.

**TD fine-tuning** (:class:`TopLayers`, :func:`td_finetune`): the hidden states that enter the top
transformer layer(s) are computed once and cached; the top layer(s), mean pooling and normalisation
are rerun with gradients, and a TD loss -- Huber between ``Q(s, a)`` and the frozen agent's Double-DQN
target -- updates the top layer(s), the adapter and the state tower end to end.

**Explanations** (:func:`history_attribution`, :func:`word_attribution`): leave-one-out occlusion
-- how much a Q-value drops when one history item, or one word of the item's text, is removed.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .agents.dqn import DQN, NEG, DQNConfig, dqn_targets
from .agents.networks import QNetwork
from .agents.replay import ReplayBuffer
from .platform import observe_platform
from .policies import Comparison, Evaluation, evaluate_policy, paired_difference, top_items

# ---------------------------------------------------------------- the cold-start catalogue


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


def restricted_observe(allowed: torch.Tensor | None = None, hide_history: bool = True) -> Callable:
    """``observe(env)`` for the cold-start study: the platform's view without its recommender's scores (notebook 07).

    Built on :func:`recnb.platform.observe_platform` (``env`` is a :class:`recnb.platform.PlatformEnv`):
    drops ``immediate`` (the platform's BPR scores -- it has none for a film it never logged), keeps
    the user features, history and mask; with ``allowed`` given, the mask keeps only those items and
    (if ``hide_history``) the history shows the others as padding.
    """
    allowed = None if allowed is None else torch.as_tensor(allowed, dtype=torch.bool)

    def observe(env) -> dict:
        if not hasattr(env, "platform_scores"):
            raise TypeError(
                "restricted_observe reads the platform's view: pass a recnb.platform.PlatformEnv, "
                "not the bare simulator"
            )
        obs = observe_platform(env)
        del obs["immediate"]
        if allowed is None:
            return obs
        if allowed.shape != (env.n_items,):
            raise ValueError(f"allowed must be a BoolTensor of shape ({env.n_items},), got {tuple(allowed.shape)}")
        ok = allowed.to(obs["mask"].device)
        obs["mask"] &= ok
        if hide_history:  # an unseen item is not even a name to the agent: it reads as padding
            hist = obs["history"]
            visible = (hist < env.n_items) & ok[hist.clamp(max=env.n_items - 1)]
            obs["history"] = torch.where(visible, hist, torch.full_like(hist, env.n_items))
        return obs

    return observe


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
) -> DQN:
    """Train notebook 06's DQN with ``item_feats`` on the warm catalogue only, on the platform's view (notebook 07).

    ``env`` is a :class:`recnb.platform.PlatformEnv` over the *training* users. Cold items are never
    shown, bootstrapped from or visible in histories; ``start_from_factors`` first applies
    :func:`warm_start` (ridge ``alpha``) with the platform's BPR item factors and biases
    (``env.platform``) of *warm* items; the fit's R^2 on warm items is kept as ``agent.fit_r2`` (None
    without a warm start). ``td=False`` stops after the warm start: the ablation that shows what TD adds.
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
        agent.train(progress=progress)
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


# ---------------------------------------------------------------- scoring and evaluation


def q_scorer(net: QNetwork) -> Callable:
    """``score(env, rows=None) -> Q [B, N]``: the network itself on the platform's view of the full catalogue (notebook 07).

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
    """**Oracle** ``score(env, rows=None)``: the simulator's own expected immediate reward (it knows users' true tastes).

    Reads the simulator behind the platform's view: a reference that bounds what any policy could
    reach greedily, never an agent's input (notebook 07).
    """
    truth = getattr(env, "sim", env).expected_reward()
    return truth if rows is None else truth.index_select(0, rows)


oracle_scorer.takes_rows = True


class CataloguePolicy:
    """Best-scored item among the user's available items that are also in ``allowed``; ties broken at random (notebook 07).

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


def mean_ci(values) -> tuple[float, float]:
    """Mean and 95% CI half-width (Student t) of a few per-seed values (notebook 07)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


# ---------------------------------------------------------------- the language model's top layers


class TopLayers(nn.Module):
    """The top ``n_top`` transformer layers of MiniLM over cached inputs, + masked mean pooling (notebook 07).

    ``hidden`` [N, T, H] are the states entering the top layers for every item text (computed once by
    :meth:`from_texts`); :meth:`forward` reruns the top layers for some items with gradients.
    """

    def __init__(self, layers: nn.ModuleList, hidden: torch.Tensor, attention: torch.Tensor):
        super().__init__()
        self.layers = layers
        self.register_buffer("hidden", hidden)
        self.register_buffer("attention", attention)

    @classmethod
    @torch.no_grad()
    def from_texts(
        cls, texts: list[str], n_top: int = 1, batch_size: int = 64, progress: bool = False, cache: bool = True
    ) -> TopLayers:
        """Run the frozen lower layers once over ``texts`` (cached on disk) and keep a trainable copy of the top ``n_top``."""
        from .embeddings import load_encoder

        tokenizer, model = load_encoder(device="cpu")
        n_layers = len(model.encoder.layer)
        if not 1 <= n_top <= n_layers:
            raise ValueError(f"n_top must be in [1, {n_layers}], got {n_top}")
        layers = copy.deepcopy(nn.ModuleList(model.encoder.layer[n_layers - n_top :])).float()

        def lower_layers():
            enc = tokenizer(list(texts), truncation=True, max_length=256)
            lengths = np.array([len(ids) for ids in enc["input_ids"]])
            width = int(lengths.max())
            hidden = torch.zeros(len(texts), width, model.config.hidden_size)
            attention = torch.zeros(len(texts), width, dtype=torch.long)
            order = np.argsort(-lengths, kind="stable")  # similar lengths together: little padding per batch
            for lo in tqdm(range(0, len(texts), batch_size), desc="LM lower layers", disable=not progress, leave=False):
                idx = order[lo : lo + batch_size]
                batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in enc.keys()}, return_tensors="pt")
                out = model(**batch, output_hidden_states=True)
                w = batch["input_ids"].shape[1]  # real tokens never attend to padding, so its length does not matter
                hidden[torch.as_tensor(idx), :w] = out.hidden_states[n_layers - n_top].float()
                attention[torch.as_tensor(idx), :w] = batch["attention_mask"]
            return hidden, attention

        if not cache:
            return cls(layers, *lower_layers())
        hidden, attention = _top_cached(_top_cache_path(list(texts), n_top), lower_layers)
        return cls(layers, hidden, attention)

    @property
    def n_items(self) -> int:
        return self.hidden.shape[0]

    def forward(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised text vectors [len(items), H] (all items when ``items`` is None)."""
        h = self.hidden if items is None else self.hidden[items]
        mask = self.attention if items is None else self.attention[items]
        width = int(mask.sum(1).max())  # trim padding every row shares
        h, mask = h[:, :width], mask[:, :width]
        additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in self.layers:
            out = layer(h, attention_mask=additive)
            h = out[0] if isinstance(out, tuple) else out
        m = mask.unsqueeze(-1).float()
        return F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=1)

    @torch.no_grad()
    def all_vectors(self, batch_size: int = 256) -> torch.Tensor:
        """Vectors of every item, in batches, without gradients."""
        return torch.cat(
            [self(torch.arange(lo, min(lo + batch_size, self.n_items))) for lo in range(0, self.n_items, batch_size)]
        )


def _top_cache_path(texts: list[str], n_top: int):
    """Where the top-layer inputs of ``texts`` are cached (keyed by model weights, texts and ``n_top``; nothing is created)."""
    import hashlib

    from . import config
    from .embeddings import _model_identity, resolve_model, texts_digest

    # the weights actually loaded: the pinned digest for every verified source, else the folder's own files
    key = f"{_model_identity(resolve_model())}:{texts_digest(texts)}:{n_top}:v1"
    folder = config.data_dir(create=False) / "embeddings"
    return folder / f"minilm-top{n_top}-inputs-{hashlib.sha256(key.encode()).hexdigest()[:20]}.safetensors"


def _top_cached(path, compute):
    """``(hidden, attention)`` from the cache at ``path``, else ``compute()``d and saved (recnb.cache's policy).

    ``hidden`` is stored as float16, so a fresh result is rounded the same way: the values are the same
    whether computed now or read back.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load, save

    from . import cache

    def build():
        hidden, attention = compute()
        return hidden.half().float(), attention

    def parse(data: bytes, meta: dict):
        try:
            saved = load(data)
            hidden, attention = saved["hidden"].float(), saved["attention"]
        except (SafetensorError, KeyError, ValueError) as exc:
            raise cache.CorruptEntry(f"not top-layer inputs ({exc!r})") from exc
        if hidden.dim() != 3 or attention.shape != hidden.shape[:2]:
            raise cache.CorruptEntry(f"unexpected shapes {tuple(hidden.shape)} and {tuple(attention.shape)}")
        return hidden, attention

    def dump(value):
        hidden, attention = value
        return save({"hidden": hidden.half().contiguous(), "attention": attention.contiguous()}), {}

    return cache.cached(path, load=parse, build=build, dump=dump, what="top-layer cache")


@dataclass
class FinetuneConfig:
    """TD fine-tuning of the language model's top layer(s) with the Q-network (notebook 07)."""

    steps: int = 40
    """Gradient steps (each reruns the top layer(s) for the batch's items)."""
    batch_size: int = 64
    """Transitions per step, sampled from the trained agent's replay buffer."""
    lm_lr: float = 1e-5
    """Learning rate of the transformer layer(s): small, so the pretrained weights move gently."""
    head_lr: float = 3e-4
    """Learning rate of the adapter (item tower) and the state tower."""
    finetune_lm: bool = True
    """False = the control: the same TD steps with the language model frozen."""
    seed: int = 0
    """Seeds the sampled batches and the transformer's dropout: the same seed, the same fine-tuned network."""

    def __post_init__(self):
        from ._checks import check_numbers, is_int

        check_numbers("FinetuneConfig", self, positive=("lm_lr", "head_lr"))
        for name in ("steps", "batch_size"):
            if not (is_int(getattr(self, name)) and getattr(self, name) >= 1):
                raise ValueError(f"FinetuneConfig.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not (is_int(self.seed) and self.seed >= 0):
            raise ValueError(f"FinetuneConfig.seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.finetune_lm, bool):
            raise ValueError(f"FinetuneConfig.finetune_lm must be True or False, got {self.finetune_lm!r}")


def _standardiser(net: QNetwork, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std that map raw text vectors to the network's standardised ``item_x`` (exactly)."""
    mean = vectors.mean(0)
    std = vectors.std(0).clamp_min(1e-6)
    return mean, std


def td_finetune(
    agent: DQN, top: TopLayers, config: FinetuneConfig, progress: bool = True, device: str | torch.device | None = None
) -> tuple[QNetwork, list]:
    """A copy of ``agent.online`` trained further by TD on its replay buffer, optionally through the LM's top layer(s) (notebook 07).

    Targets come from the agent's own (frozen) target network: ``r + gamma^n (1 - terminated) Q_target(s', a*)``.
    The copies train on ``device`` (default: the agent's; a GPU is where the transformer layers pay off).
    Returns the new network on the agent's device (its ``item_x`` refreshed from the tuned text vectors)
    and the loss curve. A loss (checked every step) or weight (every 100 steps and at the end) that turns NaN
    or infinite stops it with :class:`recnb._checks.TrainingDiverged` (a ``FloatingPointError``).
    """
    from ._checks import check_finite_parameters, finite_or_raise

    frozen_vectors = top.all_vectors()
    mean, std = _standardiser(agent.online, frozen_vectors)
    if agent.online.item_x.shape != frozen_vectors.shape or not torch.allclose(
        (frozen_vectors - mean) / std, agent.online.item_x, atol=1e-3
    ):
        raise ValueError("the agent's item features are not these text vectors; train it on top.all_vectors()")
    home = agent.online.item_x.device
    device = home if device is None else torch.device(device)
    net = copy.deepcopy(agent.online).train().to(device)
    lm = copy.deepcopy(top).train(config.finetune_lm).to(device)
    lm.requires_grad_(config.finetune_lm)
    mean, std = mean.to(device), std.to(device)
    groups = [{"params": list(net.parameters()), "lr": config.head_lr}]
    if config.finetune_lm:
        groups.append({"params": list(lm.parameters()), "lr": config.lm_lr})
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.Adam(groups)
    gen = torch.Generator().manual_seed(config.seed)
    cfg, losses = agent.config, []
    base_x = net.item_x.clone()
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # dropout draws from config.seed, not from the caller's stream
        torch.manual_seed(config.seed)
        where = "TD fine-tuning" + ("" if config.finetune_lm else " (LM frozen)")
        fix = (
            f"lower FinetuneConfig.head_lr (now {config.head_lr:g})"
            + (f" or lm_lr (now {config.lm_lr:g})" if config.finetune_lm else "")
            + ", or check the agent's replay buffer for NaN"
        )
        weights = {
            **{f"q.{n}": p for n, p in net.named_parameters()},
            **({f"lm.{n}": p for n, p in lm.named_parameters()} if config.finetune_lm else {}),
        }
        for step in tqdm(
            range(1, config.steps + 1),
            desc="TD fine-tuning" if config.finetune_lm else "TD (LM frozen)",
            disable=not progress,
            leave=False,
        ):
            batch = agent.buffer.sample(config.batch_size, cfg.n_step, cfg.gamma, gen)
            target = dqn_targets(agent, batch).to(device)  # the frozen agent, on its own device
            batch = {key: value.to(device) for key, value in batch.items()}
            action = batch["action"]
            if config.finetune_lm:  # the taken items' features come from the trainable layer(s), with gradients
                # once per distinct item: index_put with repeated indices (and rows differing by dropout)
                # would keep an arbitrary one of them, which made runs irreproducible
                items = action.unique()
                net.item_x = base_x.index_put((items,), (lm(items) - mean) / std)
            q = net(ReplayBuffer.obs(batch), action)  # the network itself: every term of Q
            loss = F.huber_loss(q, target, delta=cfg.huber_delta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            losses.append(
                finite_or_raise(loss, where=where, step=f"step {step}", fix=fix)
            )  # read anyway: no extra sync
            if step % 100 == 0 or step == config.steps:
                check_finite_parameters(weights, where=where, step=f"step {step}", fix=fix)
    if config.finetune_lm:
        lm.eval()
        net.item_x = ((lm.all_vectors() - mean) / std).detach()
    return net.eval().to(home), losses


# ---------------------------------------------------------------- explanations


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
