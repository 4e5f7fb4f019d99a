"""Language models meet RL: text Q-networks, cold-start items, TD fine-tuning, explanations (notebooks 07, 08).

Builds on notebook 06's DQN (:mod:`recnb.agents.dqn`), whose Q-network scores an item from its
*features* ``x_i`` (``QNetwork``: ``f(s) . g(x_i) + b(x_i)`` plus a state value and a learned price on
genre fatigue). Here ``x_i`` is either

* **text**: the frozen MiniLM vector of the item's text (notebook 03); the item tower ``g`` is then a
  learned linear adapter on top of the language model, or
* **ID**: a one-hot vector, so ``g`` is a learned ID embedding table.

**What the agent sees** (:func:`restricted_observe`, in :mod:`recnb.agents.observe`): only the platform's
view (:class:`recnb.platform.PlatformEnv`, :func:`recnb.platform.observe_platform`): the platform's user
features (its BPR user factors, decayed genre clicks and ignores, session counters), the logged history
and which films are available -- *not* the platform recommender's ``immediate`` scores, which it cannot
have for a film it never logged, and never the simulator's hidden state. Agents train on one pool of users
(``PlatformEnv(sim, platform, users=train_rows)``, :func:`recnb.platform.split_users`) and are scored on the
other; at test time cold items enter the catalogue.

One module per idea of the chapter, everything importable from ``recnb.lm_rl``:

* ``catalogue`` -- the cold-start catalogue (:func:`cold_item_mask`), ID features, the warm start from the
  platform's BPR factors, training on warm items (:func:`train_agent`), the text ablation
  (:func:`shuffle_item_features`);
* ``serving`` -- scorers (:func:`q_scorer`, :func:`random_scorer`, the **oracle** :func:`oracle_scorer`), the
  serving rule (:class:`CataloguePolicy`) and the warm / cold evaluations (:func:`catalogue_evaluations`,
  :func:`evaluate_catalogues`, :func:`paired_click_rate`);
* ``finetune`` -- the language model's top layer(s) over cached inputs (:class:`TopLayers`) and TD
  fine-tuning through them (:class:`FinetuneConfig`, :func:`td_finetune`);
* ``explain`` -- occlusion explanations (:func:`history_attribution`, :func:`word_attribution`) and scoring
  new items from their features (:func:`score_items`);
* ``encoders`` -- the text Q-network on two sentence encoders' vectors, compared on cold films
  (:func:`compare_encoders`, :class:`EncoderComparison`; notebook 07's GPU profile, and a benchmark).

:func:`mean_ci` is :func:`recnb.stats.mean_ci` (the one home of confidence intervals), kept under this name.
"""

from ..agents.observe import restricted_observe
from ..stats import mean_ci
from .catalogue import cold_item_mask, id_features, shuffle_item_features, train_agent, warm_start
from .encoders import EncoderComparison, compare_encoders
from .explain import history_attribution, score_items, word_attribution
from .finetune import FinetuneConfig, TopLayers, td_finetune
from .serving import (
    CATALOGUES,
    CataloguePolicy,
    catalogue_evaluations,
    catalogue_table,
    evaluate_catalogues,
    oracle_scorer,
    paired_click_rate,
    q_scorer,
    random_scorer,
)

__all__ = [
    "CATALOGUES",
    "CataloguePolicy",
    "EncoderComparison",
    "FinetuneConfig",
    "TopLayers",
    "catalogue_evaluations",
    "catalogue_table",
    "cold_item_mask",
    "compare_encoders",
    "evaluate_catalogues",
    "history_attribution",
    "id_features",
    "mean_ci",
    "oracle_scorer",
    "paired_click_rate",
    "q_scorer",
    "random_scorer",
    "restricted_observe",
    "score_items",
    "shuffle_item_features",
    "td_finetune",
    "train_agent",
    "warm_start",
    "word_attribution",
]
