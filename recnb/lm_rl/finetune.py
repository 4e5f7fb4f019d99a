"""TD fine-tuning of the language model's top layer(s) together with the Q-network (notebook 08).

:class:`TopLayers` computes the hidden states that enter MiniLM's top transformer layer(s) once (cached on
disk under :mod:`recnb.cache`'s policy) and reruns the top layer(s), mean pooling and normalisation with
gradients. :func:`td_finetune` then trains a copy of a DQN agent's network further on its replay buffer: a
TD loss -- Huber between ``Q(s, a)`` and the frozen agent's Double-DQN target -- updates the top layer(s),
the adapter (item tower) and the state tower end to end (:class:`FinetuneConfig`).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import cache as _cache  # `cache` is TopLayers.from_texts' argument
from .. import config as _config  # `config` is td_finetune's argument
from .._checks import check_finite_parameters, check_numbers, finite_or_raise, is_int
from ..agents.dqn import DQN, dqn_targets
from ..agents.networks import QNetwork
from ..agents.replay import ReplayBuffer
from ..embeddings import MAX_LENGTH, length_sorted_batches, texts_digest
from ..encoder import load_encoder, model_identity, resolve_model


class TopLayers(nn.Module):
    """The top ``n_top`` transformer layers of MiniLM over cached inputs, + masked mean pooling (notebook 08).

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
        """Run the frozen lower layers once over ``texts`` (cached on disk); keep a trainable copy of the top ones.

        ``n_top`` is how many of the encoder's last layers stay trainable; ``cache=False`` neither reads nor
        writes the cache of their inputs.
        """
        tokenizer, model = load_encoder(device="cpu")
        n_layers = len(model.encoder.layer)
        if not 1 <= n_top <= n_layers:
            raise ValueError(f"n_top must be in [1, {n_layers}], got {n_top}")
        layers = copy.deepcopy(nn.ModuleList(model.encoder.layer[n_layers - n_top :])).float()

        def lower_layers():
            enc = tokenizer(list(texts), truncation=True, max_length=MAX_LENGTH)
            width = max(len(ids) for ids in enc["input_ids"])
            hidden = torch.zeros(len(texts), width, model.config.hidden_size)
            attention = torch.zeros(len(texts), width, dtype=torch.long)
            batches = length_sorted_batches(
                tokenizer, enc, batch_size, desc="LM lower layers", progress=progress, leave=False
            )
            for idx, batch in batches:  # similar lengths together: little padding per batch
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
    """Where the top-layer inputs of ``texts`` are cached, keyed by weights, texts and ``n_top`` (creates nothing)."""
    # the weights actually loaded: the pinned digest for every verified source, else the folder's own files
    key = f"{model_identity(resolve_model())}:{texts_digest(texts)}:{n_top}:v1"
    folder = _config.data_dir(create=False) / "embeddings"
    return folder / f"minilm-top{n_top}-inputs-{hashlib.sha256(key.encode()).hexdigest()[:20]}.safetensors"


def _top_cached(path, compute):
    """``(hidden, attention)`` from the cache at ``path``, else ``compute()``d and saved (recnb.cache's policy).

    ``hidden`` is stored as float16, so a fresh result is rounded the same way: the values are the same
    whether computed now or read back.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load, save

    def build():
        hidden, attention = compute()
        return hidden.half().float(), attention

    def parse(data: bytes, meta: dict):
        try:
            saved = load(data)
            hidden, attention = saved["hidden"].float(), saved["attention"]
        except (SafetensorError, KeyError, ValueError) as exc:
            raise _cache.CorruptEntry(f"not top-layer inputs ({exc!r})") from exc
        if hidden.dim() != 3 or attention.shape != hidden.shape[:2]:
            raise _cache.CorruptEntry(f"unexpected shapes {tuple(hidden.shape)} and {tuple(attention.shape)}")
        return hidden, attention

    def dump(value):
        hidden, attention = value
        return save({"hidden": hidden.half().contiguous(), "attention": attention.contiguous()}), {}

    return _cache.cached(path, load=parse, build=build, dump=dump, what="top-layer cache")


@dataclass
class FinetuneConfig:
    """TD fine-tuning of the language model's top layer(s) with the Q-network (notebook 08)."""

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
    agent: DQN,
    top: TopLayers,
    config: FinetuneConfig,
    progress: bool = True,
    device: str | torch.device | None = None,
    logger=None,
) -> tuple[QNetwork, list]:
    """A copy of ``agent.online`` trained further by TD on its replay buffer, optionally through the LM (notebook 08).

    Targets come from the agent's own (frozen) target network: ``r + gamma^n (1 - terminated) Q_target(s', a*)``.
    The copies train on ``device`` (default: the agent's; a GPU is where the transformer layers pay off).
    Returns the new network on the agent's device (its ``item_x`` refreshed from the tuned text vectors)
    and the loss curve. A loss (checked every step) or weight (every 100 steps and at the end) that turns NaN
    or infinite stops it with :class:`recnb._checks.TrainingDiverged` (a ``FloatingPointError``).

    ``logger`` (e.g. :class:`recnb.tracking.RunLogger`; anything with ``log(step, **scalars)``) receives
    ``train/loss`` and ``train/lr`` (the network's learning rate; ``train/lm_lr`` too when the language model
    is tuned) after every update; an exception it raises propagates (that is how a tuning study prunes a run).
    """
    mean, std = _text_standardiser(agent, top)
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
    where, fix = _divergence_hint(config)
    weights = {
        **{f"q.{n}": p for n, p in net.named_parameters()},
        **({f"lm.{n}": p for n, p in lm.named_parameters()} if config.finetune_lm else {}),
    }
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # dropout draws from config.seed, not from the caller's stream
        torch.manual_seed(config.seed)
        desc = "TD fine-tuning" if config.finetune_lm else "TD (LM frozen)"
        for step in tqdm(range(1, config.steps + 1), desc=desc, disable=not progress, leave=False):
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
            losses.append(finite_or_raise(loss, where=where, step=f"step {step}", fix=fix))  # read anyway: no sync
            if logger is not None:
                logger.log(step, **_logged_scalars(losses[-1], opt))
            if step % 100 == 0 or step == config.steps:
                check_finite_parameters(weights, where=where, step=f"step {step}", fix=fix)
    if config.finetune_lm:
        lm.eval()
        net.item_x = ((lm.all_vectors() - mean) / std).detach()
    return net.eval().to(home), losses


def _text_standardiser(agent: DQN, top: TopLayers) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std that standardise ``top``'s vectors into the agent's ``item_x``; refuses another agent's."""
    frozen_vectors = top.all_vectors()
    mean, std = _standardiser(agent.online, frozen_vectors)
    if agent.online.item_x.shape != frozen_vectors.shape or not torch.allclose(
        (frozen_vectors - mean) / std, agent.online.item_x, atol=1e-3
    ):
        raise ValueError("the agent's item features are not these text vectors; train it on top.all_vectors()")
    return mean, std


def _divergence_hint(config: FinetuneConfig) -> tuple[str, str]:
    """``(where, fix)`` for :class:`recnb._checks.TrainingDiverged`: the loop's name and what to lower."""
    where = "TD fine-tuning" + ("" if config.finetune_lm else " (LM frozen)")
    fix = (
        f"lower FinetuneConfig.head_lr (now {config.head_lr:g})"
        + (f" or lm_lr (now {config.lm_lr:g})" if config.finetune_lm else "")
        + ", or check the agent's replay buffer for NaN"
    )
    return where, fix


def _logged_scalars(loss: float, opt: torch.optim.Optimizer) -> dict[str, float]:
    """What one update reports to a logger: its loss and the learning rates in use (network, then the LM's)."""
    scalars = {"train/loss": loss, "train/lr": float(opt.param_groups[0]["lr"])}
    if len(opt.param_groups) > 1:
        scalars["train/lm_lr"] = float(opt.param_groups[1]["lr"])
    return scalars
