"""Tests for recnb.lm_rl: cold catalogue, restricted observations, evaluation, TD fine-tuning, explanations."""

import dataclasses

import numpy as np
import pytest
import torch

from recnb import lm_rl
from recnb.agents.dqn import DQNConfig
from recnb.agents.networks import (QNetwork, exposure_columns, genre_shares, observe_simulator,
                                   user_feature_dim)
from recnb.data import GENRES


@pytest.fixture(scope="module")
def sim(tiny_sim):
    return tiny_sim


def tiny_dqn(seed=0):
    return DQNConfig(seed=seed, total_steps=640, n_envs=16, buffer_size=640, batch_size=32, learning_starts=64,
                     hidden=16, embed_dim=8, linear_items=True, item_lr_scale=1.0, device="cpu")


def test_cold_item_mask_is_a_seeded_fraction():
    a, b = lm_rl.cold_item_mask(100, 0.2, seed=3), lm_rl.cold_item_mask(100, 0.2, seed=3)
    assert a.dtype == torch.bool and int(a.sum()) == 20 and torch.equal(a, b)
    assert not torch.equal(a, lm_rl.cold_item_mask(100, 0.2, seed=4))
    with pytest.raises(ValueError, match="fraction"):
        lm_rl.cold_item_mask(100, 1.0)


def test_restricted_observe_masks_items_and_hides_them_in_histories(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    sim.reset(12, seed=1)
    full = observe_simulator(sim)
    obs = lm_rl.restricted_observe(~cold)(sim)
    assert "immediate" not in obs and "immediate" not in lm_rl.restricted_observe()(sim)  # no click model
    assert not (obs["mask"] & cold).any() and torch.equal(obs["mask"], full["mask"] & ~cold)
    hist = obs["history"]
    shown = hist[hist < sim.n_items]
    assert not cold[shown].any()  # no cold item is visible in any history
    kept = (full["history"] < sim.n_items) & ~cold[full["history"].clamp(max=sim.n_items - 1)]
    assert torch.equal(hist[kept], full["history"][kept])  # warm items are untouched
    assert torch.equal(lm_rl.restricted_observe(~cold, hide_history=False)(sim)["history"], full["history"])
    assert torch.equal(lm_rl.restricted_observe()(sim)["mask"], full["mask"])
    with pytest.raises(ValueError, match="shape"):
        lm_rl.restricted_observe(torch.ones(3, dtype=torch.bool))(sim)


def test_training_never_shows_a_cold_item(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    agent = lm_rl.train_agent(sim, lm_rl.id_features(sim.n_items), cold, tiny_dqn(), progress=False)
    data, rows = agent.buffer.data, agent.buffer.size
    assert rows > 0
    assert not cold[data["action"][:rows]].any()
    assert not (data["next_mask"][:rows] & cold).any()  # nor bootstrapped from


def test_catalogue_policies_pick_only_their_catalogue(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    picked = []

    def spy(s):
        scores = lm_rl.random_scorer(0)(s)
        picked.append(scores)
        return scores

    table = lm_rl.evaluate_catalogues(sim, {"spy": spy, "greedy": lm_rl.greedy_scorer}, cold, n_users=20, seed=2)
    assert set(table["catalogue"]) == {"warm", "cold"} and len(table) == 4
    assert {"click_rate", "click_rate_ci95", "return", "length"} <= set(table.columns)
    sim.reset(10, seed=0)
    actions = lm_rl.CataloguePolicy(lm_rl.random_scorer(1), cold, "r")(sim)
    assert cold[actions].all()


def test_catalogue_policy_breaks_ties_at_random(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    sim.reset(200, seed=0)
    flat = lambda s: torch.zeros(s.n_users, s.n_items)  # an ID network on never-seen items: all alike
    picks = lm_rl.CataloguePolicy(flat, cold, "flat")(sim)
    counts = torch.bincount(picks, minlength=sim.n_items)[cold]
    assert cold[picks].all() and (counts > 0).all()  # every cold item gets picked, not just the lowest id
    step = lambda s: torch.arange(s.n_items, dtype=torch.float).expand(s.n_users, -1)
    best = step(sim).masked_fill(~(sim.available_mask() & cold), -1).argmax(1)
    assert torch.equal(lm_rl.CataloguePolicy(step, cold, "s")(sim), best)  # no tie: the argmax


def _ranked(s):
    """A fixed ranking: the highest item id is always best."""
    return torch.arange(s.n_items, dtype=torch.float).expand(s.n_users, -1)


@pytest.mark.parametrize("skip_ignored", [True, False])
def test_catalogue_policy_does_not_reshow_an_ignored_item_unless_told(sim, skip_ignored):
    allowed = torch.ones(sim.n_items, dtype=torch.bool)
    policy = lm_rl.CataloguePolicy(_ranked, allowed, "ranked", skip_ignored=skip_ignored)
    policy.reset(0)
    sim.reset(40, seed=3)
    first = policy(sim)
    _, _, _, _, info = sim.step(first)
    second = policy(sim)
    ignored = ~info["clicked"] & sim.active
    assert ignored.any() and info["clicked"].any()
    if skip_ignored:  # the ignored item is skipped: the next best available item instead
        assert not (second == first)[ignored].any()
    else:  # the same best item again: the failure taught the policy nothing
        assert (second == first)[ignored].all()
    assert policy.repeat_fraction == pytest.approx(float((second == first)[sim.active].float().mean()))


def test_catalogue_policy_comes_back_to_ignored_items_when_nothing_else_is_allowed(sim):
    allowed = torch.zeros(sim.n_items, dtype=torch.bool)
    allowed[[3, 7]] = True
    policy = lm_rl.CataloguePolicy(_ranked, allowed, "two items")
    shown = []
    ev = lm_rl.evaluate_policy(sim, lambda s: shown.append(policy(s)) or shown[-1], n_users=30, seed=5)
    assert ev.lengths.min() >= 1 and ev.returns.max() <= 2  # ignored, consumed: never anything but items 3 and 7
    assert allowed[torch.cat(shown)].all()
    assert policy.repeat_fraction > 0  # with two items, a user who ignored both is shown one of them again


def test_mean_ci_matches_t_interval():
    mean, half = lm_rl.mean_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and half == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)


def _net_and_obs(sim, n=6):
    """A QNetwork with every term switched on (random weights), and the platform's view of n users."""
    torch.manual_seed(0)
    net = QNetwork(torch.randn(sim.n_items, 5), user_feature_dim(sim), 8, 16, genre_share=genre_shares(sim),
                   exposure_cols=exposure_columns(sim))
    for p in net.parameters():  # terms start at 0; move them so each one counts
        torch.nn.init.normal_(p, std=0.3)
    sim.reset(n, seed=4)
    for _ in range(3):
        sim.step(torch.randint(sim.n_items, (n,), generator=torch.Generator().manual_seed(1)))
    return net, lm_rl.restricted_observe()(sim)


def test_history_attribution_is_the_exact_occlusion_difference(sim):
    net, obs = _net_and_obs(sim)
    attr = lm_rl.history_attribution(net, obs, row=2, item=5)
    one = {k: v[2:3].clone() for k, v in obs.items()}
    q_full = float(net(one)[0, 5].detach())
    pos = int(attr["position"].iloc[0])
    one["history"][0, pos] = sim.n_items
    assert attr["q_drop"].iloc[0] == pytest.approx(q_full - float(net(one)[0, 5].detach()), abs=1e-5)
    assert (attr["item"] < sim.n_items).all()


def test_word_attribution_on_a_hand_case():
    score = lambda texts: np.array([t.split().count("good") * 2.0 + t.split().count("bad") * -1.0 for t in texts])
    attr = lm_rl.word_attribution(score, "a good bad film")
    assert attr["word"].tolist() == ["a", "good", "bad", "film"]
    assert attr["q_drop"].tolist() == [0.0, 2.0, -1.0, 0.0]
    with pytest.raises(ValueError, match="no words"):
        lm_rl.word_attribution(score, "   ")


def test_score_items_equals_the_networks_own_q_for_catalogue_items(sim):
    net, obs = _net_and_obs(sim)
    q = net(obs)
    new = lm_rl.score_items(net, obs, net.item_x[[3, 7]], net.genre_share[[3, 7]])
    assert torch.allclose(new, q[:, [3, 7]], atol=1e-5)
    assert torch.allclose(lm_rl.q_scorer(net)(sim), q, atol=1e-5)  # the scorer is the network itself
    with pytest.raises(ValueError, match="genre_share"):
        lm_rl.score_items(net, obs, net.item_x[[3]])


def test_train_agent_without_td_is_the_warm_start_alone(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    feats = lm_rl.id_features(sim.n_items)
    agent = lm_rl.train_agent(sim, feats, cold, tiny_dqn(), progress=False, td=False)
    assert agent.buffer.size == 0 and agent.fit_r2 is not None
    dim = sim.item_factors.shape[1]
    net = QNetwork(feats, user_feature_dim(sim), 8, 16, linear_items=True, genre_share=genre_shares(sim),
                   exposure_cols=exposure_columns(sim))
    lm_rl.warm_start(net, ~cold, sim.item_factors, sim.item_bias, slice(0, dim), alpha=10.0)
    sim.reset(5, seed=0)
    obs = lm_rl.restricted_observe()(sim)
    assert torch.allclose(agent.online(obs), net(obs), atol=1e-5)
    with pytest.raises(ValueError, match="random weights"):
        lm_rl.train_agent(sim, feats, cold, tiny_dqn(), progress=False, td=False, start_from_factors=False)


def test_warm_start_fits_warm_items_only_and_starts_q_at_the_predicted_rating(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    dim = sim.item_factors.shape[1]
    net = QNetwork(lm_rl.id_features(sim.n_items), user_feature_dim(sim), dim, 16, linear_items=True)
    r2 = lm_rl.warm_start(net, ~cold, sim.item_factors, sim.item_bias, slice(0, dim), alpha=1e-3)
    assert r2 > 0.99  # IDs can memorise every warm item
    emb, bias = net.items()
    assert torch.allclose(emb[~cold], sim.item_factors[~cold], atol=0.02)
    assert torch.allclose(bias[~cold], sim.item_bias[~cold], atol=0.02)
    assert torch.allclose(emb[cold], emb[cold][:1].expand_as(emb[cold]), atol=1e-4)  # cold IDs: all alike
    sim.reset(5, seed=0)
    obs = lm_rl.restricted_observe()(sim)
    expected = obs["user"][:, :dim] @ emb.T + bias
    assert torch.allclose(net(obs), expected, atol=1e-4)
    with pytest.raises(ValueError, match="linear"):
        lm_rl.warm_start(QNetwork(torch.randn(sim.n_items, 3), user_feature_dim(sim), dim, 8, linear_items=False), ~cold,
                         sim.item_factors, sim.item_bias, slice(0, dim))


@pytest.fixture(scope="module")
def top(sim):
    texts = [f"Film number {i} ({1990 + i % 9}). Genres: {GENRES[1 + i % 18]}." for i in range(sim.n_items)]
    return texts, lm_rl.TopLayers.from_texts(texts, n_top=1, cache=False)


def test_top_layers_reproduce_the_sentence_encoder(top):
    from recnb.embeddings import encode

    texts, layers = top
    assert torch.allclose(layers.all_vectors()[:4], torch.as_tensor(encode(texts[:4], cache=False)), atol=1e-4)
    assert torch.allclose(layers(torch.tensor([1, 2])), layers.all_vectors()[[1, 2]], atol=1e-5)


def test_top_layer_cache_round_trip(sim, top, tmp_path, monkeypatch):
    monkeypatch.setenv("RECNB_DATA_DIR", str(tmp_path))
    texts, layers = top
    first = lm_rl.TopLayers.from_texts(texts[:5], cache=True)
    assert list((tmp_path / "embeddings").glob("minilm-top1-*.safetensors"))
    again = lm_rl.TopLayers.from_texts(texts[:5], cache=True)
    assert torch.equal(first.hidden, again.hidden) and torch.allclose(again.all_vectors(), layers.all_vectors()[:5], atol=2e-3)


def _finetune_setup(sim, top):
    _, layers = top
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    agent = lm_rl.train_agent(sim, layers.all_vectors(), cold, tiny_dqn(), progress=False)
    return agent, layers, lm_rl.FinetuneConfig(steps=3, batch_size=8, lm_lr=1e-3)


def test_td_finetune_moves_the_language_model_only_when_asked(sim, top):
    agent, layers, cfg = _finetune_setup(sim, top)
    frozen, losses = lm_rl.td_finetune(agent, layers, dataclasses.replace(cfg, finetune_lm=False), progress=False)
    assert torch.equal(frozen.item_x, agent.online.item_x) and len(losses) == 3 and np.isfinite(losses).all()
    tuned, _ = lm_rl.td_finetune(agent, layers, cfg, progress=False)
    assert not torch.allclose(tuned.item_x, agent.online.item_x)
    with pytest.raises(ValueError, match="text vectors"):
        cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
        other = lm_rl.train_agent(sim, lm_rl.id_features(sim.n_items), cold, tiny_dqn(), progress=False)
        lm_rl.td_finetune(other, layers, lm_rl.FinetuneConfig(steps=1), progress=False)


def test_td_finetune_is_reproducible_from_its_seed_alone(sim, top):
    agent, layers, cfg = _finetune_setup(sim, top)
    torch.manual_seed(1)
    first, first_losses = lm_rl.td_finetune(agent, layers, cfg, progress=False)
    torch.manual_seed(2)  # another global stream: dropout still draws from cfg.seed
    again, again_losses = lm_rl.td_finetune(agent, layers, cfg, progress=False, device="cpu")
    assert first_losses == again_losses and torch.equal(first.item_x, again.item_x)
    other, _ = lm_rl.td_finetune(agent, layers, dataclasses.replace(cfg, seed=1), progress=False)
    assert not torch.equal(other.item_x, first.item_x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs on the GPU machine and in Colab)")
def test_td_finetune_on_a_gpu_hands_the_network_back_to_the_agents_device(sim, top):
    agent, layers, cfg = _finetune_setup(sim, top)
    tuned, losses = lm_rl.td_finetune(agent, layers, cfg, progress=False, device="cuda")
    assert tuned.item_x.device == agent.online.item_x.device and np.isfinite(losses).all()
    assert not torch.allclose(tuned.item_x, agent.online.item_x)
