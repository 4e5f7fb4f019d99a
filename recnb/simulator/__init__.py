"""A fast, batched simulated MovieLens user with long-term dynamics (notebook 04; docs/protocols.md).

API (stable: notebooks 05-08 build on it)::

    from recnb.data import load_movielens
    from recnb.splits import split_random
    from recnb.simulator import SimulatorConfig, UserSimulator

    ml = load_movielens("100k")
    split = split_random(ml.indexed(), seed=0)                  # Track A; calibrate on train only
    sim = UserSimulator.from_movielens(split.train, ml.items, SimulatorConfig(), device="cpu", seed=0)
    obs = sim.reset(n_users=1024, seed=1)                        # dict of batched tensors
    obs, reward, terminated, truncated, info = sim.step(actions) # actions: LongTensor [B] or [B, slate]
    sim.available_mask()    # BoolTensor [B, n_items]; consumed items are False
    sim.expected_reward()   # FloatTensor [B, n_items]: immediate expected reward of showing each item
                            # alone, under the simulator's own model (what the greedy policy maximises)
    sim.item_genres, sim.item_popularity   # what a platform also knows (genres, training counts)
    sim.state               # UserState: hidden per-user tensors (preference, exposure, satisfaction, ...);
                            # updated in place by step/reset: .clone() what you keep
    sim.reset_where(mask)   # restart the finished users only (vector-env autoreset)
    UserSimulator.movielens(config)          # the standard one: Track-A train split 0, cached calibration
    sim.with_config(SimulatorConfig(long_term=False))   # same calibration, other dynamics
    SimulatorConfig().with_strength(s)       # long-term effects scaled by s (0 == long_term=False)
    PerUserSimulator(sim.calibration, config)  # the same dynamics, one user, NumPy (gym env, benchmark)

Observations are ``{"history": [B, K] last consumed items (pad = n_items), "mask": [B, N] True =
available, "step": [B]}``. For speed they, and the ``[B, N]`` views (``predicted_rating``,
``click_probability``, ``expected_reward``, cached until the next step), are the simulator's own
tensors: read them, ``.clone()`` what you keep past the next step, never modify them. They are the
simulator's *truth*: an agent sees the platform's view instead (``recnb.platform``); a policy that
reads them is an **oracle**.

**Calibration** (training split only, ``recnb.calibration``): a *choice* model (logistic MF on who
rated what) and a *rating* model (explicit MF shrunk by count). A simulated user is a real training
user (drawn uniformly with replacement): their choice and rating factors, and their training items,
which start out consumed (masked) and fill the start of their history. Each episode also draws the
user's hidden *sensitivity to repetition* ``s_u = exp(trait_spread * N(0, 1))``: some users tire of a
genre quickly, others hardly at all, and only their behaviour tells which.

**One step**, for each user still in their episode:

1. The utility of a shown film is its choice logit ``a_u + b_i + pref . q_i`` plus ``choice_offset``
   (a recommended film is likelier chosen than an average unrated one) minus
   ``fatigue_strength * s_u * exposure_i`` (long-term effects on); ``exposure_i`` is the user's recent
   consumption of the film's genres (a decaying per-genre count).
2. Choice: multinomial logit over the slate plus a no-click option with utility 0; a single item is a
   slate of one, clicked with probability ``sigmoid(utility)``. An already-consumed item is legal to
   show but is never clicked and earns nothing.
3. On a click the user rates the film: the rating model's prediction plus noise, in whole stars 1..5
   (``rating_noise``; ``predicted_rating()`` is the prediction itself); the reward
   function (``recnb.rewards``: click, ``log(1 + rating)``, ...) scores the outcome; the film is consumed.
4. Long-term effects (``long_term=True``): interest drift -- the choice preference moves a step
   ``drift_rate`` towards the consumed film; fatigue -- exposure of the film's genres rises and every
   genre's exposure decays by ``fatigue_recovery`` a step; satisfaction -- an average of the
   experience (``(rating - 1) / 4 - boredom * s_u * exposure_i`` on a click, ``no_click_experience``
   otherwise) that sets the chance of leaving ``leave_base + leave_sensitivity * (1 - satisfaction)**2``.
   Off, the user never changes and leaves with the constant chance ``leave_base``: then the best
   immediate expected reward is also the best return, so greedy (on the truth) is optimal.
5. ``terminated`` = the user left this step; ``truncated`` = the ``horizon`` was reached this step.

Users whose episode ended stay ended until the next ``reset`` (their actions are ignored and earn
0; ``info["active"]`` says who is still in); stepping after every episode ended raises. All
randomness comes from one ``torch.Generator`` seeded by ``reset``: same seed, same trajectories.

Modules (one concept each; everything above is importable from ``recnb.simulator``):
``config`` (:class:`SimulatorConfig` and the random draws both engines share), ``tables`` (the packed
tensor layout that keeps a batched step cheap), ``batched`` (:class:`UserSimulator`, :class:`UserState`),
``reference`` (:class:`PerUserSimulator`). The calibration (:class:`Calibration`, :func:`calibrate`,
:func:`movielens_calibration`) lives in :mod:`recnb.calibration` and is re-exported here.
"""

from ..calibration import (
    CALIBRATION_VERSION,
    Calibration,
    calibrate,
    fit_choice_model,
    fit_rating_model,
    movielens_calibration,
)
from .batched import UserSimulator, UserState
from .config import LONG_TERM_FIELDS, SimulatorConfig, normal_from_uniform
from .reference import PerUserSimulator

__all__ = [
    "CALIBRATION_VERSION",
    "Calibration",
    "LONG_TERM_FIELDS",
    "PerUserSimulator",
    "SimulatorConfig",
    "UserSimulator",
    "UserState",
    "calibrate",
    "fit_choice_model",
    "fit_rating_model",
    "movielens_calibration",
    "normal_from_uniform",
]
