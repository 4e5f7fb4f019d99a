"""Tests for recnb.lm_rl: cold catalogue, the platform's restricted view, evaluation, text ablation,
TD fine-tuning, explanations."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import tiny_text_dqn

from recnb import lm_rl, stats, tracking
from recnb.agents import networks, observe
from recnb.agents.networks import QNetwork
from recnb.agents.observe import genre_shares
from recnb.data import GENRES
from recnb.platform import PlatformEnv, PlatformModel, observe_platform, split_users
from recnb.policies import evaluate_policy, seed_average


@pytest.fixture(scope="module")
def sim(tiny_env):
    """The platform's view of the tiny simulator: every agent and scorer here reads it."""
    return tiny_env


def test_cold_item_mask_is_a_seeded_fraction():
    a, b = lm_rl.cold_item_mask(100, 0.2, seed=3), lm_rl.cold_item_mask(100, 0.2, seed=3)
    assert a.dtype == torch.bool and int(a.sum()) == 20 and torch.equal(a, b)
    assert not torch.equal(a, lm_rl.cold_item_mask(100, 0.2, seed=4))
    with pytest.raises(ValueError, match="fraction"):
        lm_rl.cold_item_mask(100, 1.0)


def test_restricted_observe_masks_items_and_hides_them_in_histories(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    sim.reset(12, seed=1)
    full = observe_platform(sim)
    obs = lm_rl.restricted_observe(~cold)(sim)
    assert "immediate" not in obs and "immediate" not in lm_rl.restricted_observe()(sim)  # no platform scores
    assert torch.equal(obs["user"], full["user"]) and torch.equal(obs["user_id"], full["user_id"])
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
    with pytest.raises(TypeError, match="PlatformEnv"):  # the bare simulator is not the platform's view
        lm_rl.restricted_observe()(sim.sim)


def test_training_never_shows_a_cold_item_and_sees_only_training_users(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    train_rows, _ = split_users(sim.n_calibration_users, 0.5, seed=0)
    env = PlatformEnv(sim.sim, sim.platform, users=train_rows)
    logged, hparams = [], []
    logger = tracking.CallbackLogger(
        lambda step, scalars: logged.append((step, scalars)), lambda h, m: hparams.append(h)
    )
    agent = lm_rl.train_agent(env, lm_rl.id_features(sim.n_items), cold, tiny_text_dqn(), progress=False, logger=logger)
    returns = [(step, s["rollout/return"]) for step, s in logged if "rollout/return" in s]
    assert returns and returns == list(zip(agent.log["step"], agent.log["return"]))  # the logger saw the training
    assert hparams and hparams[0]["linear_items"] is True
    data, rows = agent.buffer.data, agent.buffer.size
    assert rows > 0
    assert not cold[data["action"][:rows]].any()
    assert not (data["next_mask"][:rows] & cold).any()  # nor bootstrapped from
    assert np.isin(data["user_id"][:rows].numpy(), train_rows).all()  # no evaluation user in training
    with pytest.raises(TypeError, match="PlatformEnv"):
        lm_rl.train_agent(sim.sim, lm_rl.id_features(sim.n_items), cold, tiny_text_dqn(), progress=False)


def test_catalogue_policies_pick_only_their_catalogue(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    picked = []

    def spy(s):
        scores = lm_rl.random_scorer(0)(s)
        picked.append(scores)
        return scores

    table = lm_rl.evaluate_catalogues(sim, {"spy": spy, "oracle": lm_rl.oracle_scorer}, cold, n_users=20, seed=2)
    assert set(table["catalogue"]) == {"warm", "cold"} and len(table) == 4
    assert {"click_rate", "click_rate_ci95", "return", "length", "repeat_share"} <= set(table.columns)
    sim.reset(10, seed=0)
    actions = lm_rl.CataloguePolicy(lm_rl.random_scorer(1), cold, "r")(sim)
    assert cold[actions].all()


def test_catalogue_policy_breaks_ties_at_random(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    sim.reset(200, seed=0)

    def flat(s):
        return torch.zeros(s.n_users, s.n_items)  # an ID network on never-seen items: all alike

    picks = lm_rl.CataloguePolicy(flat, cold, "flat")(sim)
    counts = torch.bincount(picks, minlength=sim.n_items)[cold]
    assert cold[picks].all() and (counts > 0).all()  # every cold item gets picked, not just the lowest id

    def step(s):
        return torch.arange(s.n_items, dtype=torch.float).expand(s.n_users, -1)

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
    ev = evaluate_policy(sim, lambda s: shown.append(policy(s)) or shown[-1], n_users=30, seed=5)
    assert ev.lengths.min() >= 1 and ev.returns.max() <= 2  # ignored, consumed: never anything but items 3 and 7
    assert allowed[torch.cat(shown)].all()
    assert policy.repeat_fraction > 0  # with two items, a user who ignored both is shown one of them again


def test_scoring_only_active_users_changes_no_choice(sim):
    """CataloguePolicy scores only users still in their session; the choices equal full-batch scoring."""
    net, _ = _net_and_obs(sim)
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    rows_aware = lm_rl.q_scorer(net)

    def full_batch(env):
        return rows_aware(env)  # a plain callable: the policy scores every row

    for allowed in (cold, ~cold):
        a = evaluate_policy(sim, lm_rl.CataloguePolicy(rows_aware, allowed, "q"), n_users=60, seed=3)
        b = evaluate_policy(sim, lm_rl.CataloguePolicy(full_batch, allowed, "q"), n_users=60, seed=3)
        assert np.array_equal(a.returns, b.returns) and np.array_equal(a.lengths, b.lengths)
        assert a.lengths.min() < sim.config.horizon  # some users left early: the rows really differed


def test_per_user_evaluations_pair_and_average(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    evs = lm_rl.catalogue_evaluations(
        sim,
        {"r0": lm_rl.random_scorer(0), "r1": lm_rl.random_scorer(1), "oracle": lm_rl.oracle_scorer},
        cold,
        n_users=50,
        seed=4,
    )
    assert set(evs) == {(p, c) for p in ("r0", "r1", "oracle") for c in ("warm", "cold")}
    assert len(evs["r0", "cold"].click_rates) == 50 and hasattr(evs["r0", "cold"], "repeat_share")
    mean = seed_average([evs["r0", "cold"], evs["r1", "cold"]], "random (mean)")
    assert np.allclose(mean.click_rates, (evs["r0", "cold"].click_rates + evs["r1", "cold"].click_rates) / 2)
    diff = lm_rl.paired_click_rate(evs["oracle", "cold"], mean)
    per_user = evs["oracle", "cold"].click_rates - mean.click_rates
    assert diff.diff == pytest.approx(per_user.mean()) and diff.users == 50
    assert diff.ci95 == pytest.approx(stats.t_quantile(50) * per_user.std(ddof=1) / np.sqrt(50))  # Student t
    other = lm_rl.catalogue_evaluations(sim, {"r0": lm_rl.random_scorer(0)}, cold, n_users=50, seed=5)
    with pytest.raises(ValueError, match="same seed"):
        lm_rl.paired_click_rate(evs["r0", "cold"], other["r0", "cold"])
    with pytest.raises(ValueError, match="same seed"):
        seed_average([evs["r0", "cold"], other["r0", "cold"]])


def test_mean_ci_matches_t_interval():
    mean, half = lm_rl.mean_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and half == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    assert lm_rl.mean_ci is stats.mean_ci  # one home for confidence intervals, under its old name too


def test_observation_helpers_live_in_agents_observe_under_their_old_names_too():
    assert lm_rl.restricted_observe is observe.restricted_observe
    assert networks.genre_shares is observe.genre_shares and observe.observe_platform is observe_platform


def _net_and_obs(sim, n=6):
    """A QNetwork with every term switched on (random weights), and the platform's view of n users."""
    torch.manual_seed(0)
    net = QNetwork(
        torch.randn(sim.n_items, 5),
        sim.user_feature_dim(),
        8,
        16,
        genre_share=genre_shares(sim),
        exposure_cols=sim.exposure_columns(),
    )
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
    def score(texts):
        return np.array([t.split().count("good") * 2.0 + t.split().count("bad") * -1.0 for t in texts])

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
    agent = lm_rl.train_agent(sim, feats, cold, tiny_text_dqn(), progress=False, td=False)
    assert agent.buffer.size == 0 and agent.fit_r2 is not None
    dim = sim.platform.item_factors.shape[1]
    net = QNetwork(
        feats,
        sim.user_feature_dim(),
        8,
        16,
        linear_items=True,
        genre_share=genre_shares(sim),
        exposure_cols=sim.exposure_columns(),
    )
    # the platform's BPR factors, never the simulator's
    lm_rl.warm_start(net, ~cold, sim.platform.item_factors, sim.platform.item_bias, slice(0, dim), alpha=10.0)
    sim.reset(5, seed=0)
    obs = lm_rl.restricted_observe()(sim)
    assert torch.allclose(agent.online(obs), net(obs), atol=1e-5)
    with pytest.raises(ValueError, match="random weights"):
        lm_rl.train_agent(sim, feats, cold, tiny_text_dqn(), progress=False, td=False, start_from_factors=False)


def test_warm_start_fits_warm_items_only_and_starts_q_at_the_predicted_rating(sim):
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    factors, item_bias = sim.platform.item_factors, sim.platform.item_bias + torch.linspace(-1, 1, sim.n_items)
    dim = factors.shape[1]
    net = QNetwork(lm_rl.id_features(sim.n_items), sim.user_feature_dim(), dim, 16, linear_items=True)
    r2 = lm_rl.warm_start(net, ~cold, factors, item_bias, slice(0, dim), alpha=1e-3)
    assert r2 > 0.99  # IDs can memorise every warm item
    emb, bias = net.items()
    assert torch.allclose(emb[~cold], factors[~cold], atol=0.02)
    assert torch.allclose(bias[~cold], item_bias[~cold], atol=0.02)
    assert torch.allclose(emb[cold], emb[cold][:1].expand_as(emb[cold]), atol=1e-4)  # cold IDs: all alike
    sim.reset(5, seed=0)
    obs = lm_rl.restricted_observe()(sim)
    expected = obs["user"][:, :dim] @ emb.T + bias
    assert torch.allclose(net(obs), expected, atol=1e-4)
    # Q starts as the platform recommender's score (its user factors . item factors + bias) on warm items
    platform_q = sim.platform.user_factors[obs["user_id"]] @ factors.T + item_bias
    assert torch.allclose(net(obs)[:, ~cold], platform_q[:, ~cold], atol=0.05)
    with pytest.raises(ValueError, match="linear"):
        lm_rl.warm_start(
            QNetwork(torch.randn(sim.n_items, 3), sim.user_feature_dim(), dim, 8, linear_items=False),
            ~cold,
            factors,
            item_bias,
            slice(0, dim),
        )


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
    assert torch.equal(first.hidden, again.hidden) and torch.allclose(
        again.all_vectors(), layers.all_vectors()[:5], atol=2e-3
    )


def _finetune_setup(sim, top):
    _, layers = top
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    agent = lm_rl.train_agent(sim, layers.all_vectors(), cold, tiny_text_dqn(), progress=False)
    return agent, layers, lm_rl.FinetuneConfig(steps=3, batch_size=8, lm_lr=1e-3)


def test_td_finetune_moves_the_language_model_only_when_asked(sim, top):
    agent, layers, cfg = _finetune_setup(sim, top)
    frozen, losses = lm_rl.td_finetune(agent, layers, dataclasses.replace(cfg, finetune_lm=False), progress=False)
    assert torch.equal(frozen.item_x, agent.online.item_x) and len(losses) == 3 and np.isfinite(losses).all()
    tuned, _ = lm_rl.td_finetune(agent, layers, cfg, progress=False)
    assert not torch.allclose(tuned.item_x, agent.online.item_x)
    with pytest.raises(ValueError, match="text vectors"):
        cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
        other = lm_rl.train_agent(sim, lm_rl.id_features(sim.n_items), cold, tiny_text_dqn(), progress=False)
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


class RecordingLogger:
    """The logger interface of recnb.tracking.RunLogger: ``log(step, **scalars)``."""

    def __init__(self, stop_at=None):
        self.rows, self.stop_at = [], stop_at

    def log(self, step, **scalars):
        self.rows.append((step, scalars))
        if step == self.stop_at:
            raise KeyboardInterrupt("stop requested by the logger")


def test_td_finetune_logs_every_update_and_lets_the_loggers_exception_through(sim, top):
    agent, layers, cfg = _finetune_setup(sim, top)
    plain, plain_losses = lm_rl.td_finetune(agent, layers, cfg, progress=False)
    logger = RecordingLogger()
    logged, losses = lm_rl.td_finetune(agent, layers, cfg, progress=False, logger=logger)
    assert losses == plain_losses and torch.equal(logged.item_x, plain.item_x)  # logging changes nothing
    assert [step for step, _ in logger.rows] == [1, 2, 3]
    assert [row["train/loss"] for _, row in logger.rows] == losses
    assert all(row["train/lr"] == cfg.head_lr and row["train/lm_lr"] == cfg.lm_lr for _, row in logger.rows)
    frozen = RecordingLogger()
    lm_rl.td_finetune(agent, layers, dataclasses.replace(cfg, finetune_lm=False), progress=False, logger=frozen)
    assert all("train/lm_lr" not in row for _, row in frozen.rows)  # the LM is not trained: no LM rate
    with pytest.raises(KeyboardInterrupt, match="logger"):
        lm_rl.td_finetune(agent, layers, cfg, progress=False, logger=RecordingLogger(stop_at=2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs on the GPU machine and in Colab)")
def test_td_finetune_on_a_gpu_hands_the_network_back_to_the_agents_device(sim, top):
    agent, layers, cfg = _finetune_setup(sim, top)
    tuned, losses = lm_rl.td_finetune(agent, layers, cfg, progress=False, device="cuda")
    assert tuned.item_x.device == agent.online.item_x.device and np.isfinite(losses).all()
    assert not torch.allclose(tuned.item_x, agent.online.item_x)


def test_shuffle_item_features_permutes_only_the_given_items(sim):
    net, obs = _net_and_obs(sim)
    cold = lm_rl.cold_item_mask(sim.n_items, 0.3, seed=0)
    shuffled = lm_rl.shuffle_item_features(net, cold, seed=1)
    assert torch.equal(shuffled.item_x[~cold], net.item_x[~cold])  # warm items keep their features
    assert not (shuffled.item_x[cold] == net.item_x[cold]).all(1).any()  # no cold item keeps its own
    assert torch.equal(shuffled.item_x[cold].sort(0).values, net.item_x[cold].sort(0).values)  # a permutation
    assert torch.equal(net.item_x, _net_and_obs(sim)[0].item_x)  # the original is untouched
    with pytest.raises(ValueError, match="two items"):
        lm_rl.shuffle_item_features(net, torch.tensor([3]))


@pytest.fixture(scope="module")
def informative_text_setup(tiny_sim):
    """A synthetic world in which item "texts" describe appeal, and a text Q-network trained on warm items.

    The "text embedding" of an item is a noisy copy of the simulator's choice-model item vector and
    bias -- constructed so that text *can* predict appeal (a test fixture, not an agent input in any
    notebook); the platform's recommender knows the choice model on warm items. A text Q-network
    warm-started on warm items and trained by TD on them then ranks cold items by their text.
    """
    cal = tiny_sim.calibration
    gen = torch.Generator().manual_seed(0)
    texts = torch.cat([cal.choice_item_factors, cal.choice_item_bias[:, None]], 1)
    texts = texts + 0.1 * texts.std(0) * torch.randn(texts.shape, generator=gen)
    platform = PlatformModel(
        cal.choice_user_factors.clone(),
        cal.choice_item_factors.clone(),
        cal.choice_item_bias.clone(),
        cal.item_genres.clone(),
        cal.item_popularity.clone(),
        [np.asarray(t) for t in cal.train_items],
    )
    train_rows, eval_rows = split_users(tiny_sim.n_calibration_users, 0.5, seed=0)
    cold = lm_rl.cold_item_mask(tiny_sim.n_items, 0.5, seed=1)
    agent = lm_rl.train_agent(
        PlatformEnv(tiny_sim, platform, users=train_rows), texts, cold, tiny_text_dqn(), progress=False, alpha=1.0
    )
    return PlatformEnv(tiny_sim, platform, users=eval_rows), agent.online, cold


def test_shuffling_cold_item_texts_changes_recommendations_and_lowers_their_click_rate(informative_text_setup):
    """The item tower carries the text: permute cold items' texts and the cold recommendations get worse.

    It fails if the network ignored its item features (the shuffle would change nothing) or if the
    text reached the scores but not in a way that tracks appeal (no drop in clicks).
    """
    env, net, cold = informative_text_setup
    shuffled = lm_rl.shuffle_item_features(net, cold, seed=0)
    env.reset(400, seed=7)
    allowed = cold.expand(400, -1) & env.available_mask()
    first = lm_rl.q_scorer(net)(env).masked_fill(~allowed, -1e9).argmax(1)
    first_shuffled = lm_rl.q_scorer(shuffled)(env).masked_fill(~allowed, -1e9).argmax(1)
    assert (first != first_shuffled).float().mean() > 0.5  # most users get another first cold film
    evs = lm_rl.catalogue_evaluations(
        env, {"text": lm_rl.q_scorer(net), "shuffled": lm_rl.q_scorer(shuffled)}, cold, n_users=2000, seed=11
    )
    drop = lm_rl.paired_click_rate(evs["text", "cold"], evs["shuffled", "cold"])
    assert drop.diff > 0 and drop.excludes_zero, drop  # shuffled texts: fewer clicks on cold films
    # warm films keep their texts (only histories that hold cold films read differently): little change there
    assert abs(evs["text", "warm"].click_rate - evs["shuffled", "warm"].click_rate) < abs(drop.diff)
