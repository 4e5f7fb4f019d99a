"""What shapes the simulated user (:class:`SimulatorConfig`), and the draws both engines share (notebook 04).

The batched simulator (:mod:`recnb.simulator.batched`) and its one-user NumPy twin
(:mod:`recnb.simulator.reference`) read the same config and take their random numbers the same way
(:func:`episode_generator`, :func:`normal_from_uniform`), so the same seed gives the same trajectory in both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch

from .. import rewards as rewards_mod
from .._checks import is_int

LONG_TERM_FIELDS = ("drift_rate", "fatigue_strength", "boredom", "leave_sensitivity")


def normal_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """Standard normal draws from uniform ones (inverse CDF), so one uniform block serves every draw of a step."""
    return u.mul(2.0).sub_(1.0).erfinv_().mul_(math.sqrt(2.0))


def episode_generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator:
    """The ``torch.Generator`` every draw of an episode comes from; ``seed=None`` picks a fresh random seed."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return torch.Generator(device=device).manual_seed(int(seed))


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that shapes the simulated user (notebook 04). Validated on creation."""

    horizon: int = 100
    """Steps before an episode is truncated (the time limit)."""
    slate_size: int = 1
    """Items shown per step; 1 = single-item recommendation, > 1 = slate with a multinomial-logit choice."""
    history_len: int = 10
    """How many recently consumed items the observation carries."""
    choice_offset: float = 2.0
    """Logit added to the choice model for a recommended film: being shown a film makes choosing it likelier
    than the data's ``P(rated)`` over the whole catalogue (a random film is then clicked ~15% of the time)."""
    long_term: bool = True
    """The one switch: False turns off drift, fatigue and satisfaction-driven leaving."""
    drift_rate: float = 0.05
    """Fraction of the way the preference vector moves towards a consumed item (long-term effect)."""
    fatigue_strength: float = 1.0
    """Logit utility lost per unit of (felt) exposure to a film's genres (long-term effect)."""
    fatigue_recovery: float = 0.85
    """Fraction of genre exposure kept from one step to the next (in [0, 1); lower = faster recovery)."""
    satisfaction_init: float = 0.7
    """Satisfaction of a user at the start of an episode, in [0, 1]."""
    satisfaction_rate: float = 0.2
    """Weight of the latest experience in the satisfaction average, in (0, 1]."""
    boredom: float = 0.3
    """Satisfaction lost per unit of (felt) exposure when consuming a film of recently consumed genres
    (long-term effect): the hidden cost of repetition that a greedy policy does not see."""
    trait_spread: float = 0.75
    """Spread across users of the hidden sensitivity to repetition, ``s_u = exp(trait_spread * N(0, 1))``,
    which scales each user's fatigue and boredom; 0 = every user alike."""
    rating_noise: float = 0.9
    """Spread of a click's rating around the rating model's prediction: the user gives
    ``round(prediction + rating_noise * N(0, 1))`` stars, clipped to 1..5, like a real rater (0.9 is about the
    rating model's error on Track A's validation ratings). 0 = the prediction itself, unrounded."""
    no_click_experience: float = 0.2
    """Experience (0..1) of a step without a click; a click gives ``(rating - 1) / 4``."""
    leave_base: float = 0.01
    """Chance per step of leaving whatever happens (the only leaving when ``long_term`` is off)."""
    leave_sensitivity: float = 0.3
    """Extra chance of leaving at zero satisfaction: ``leave_sensitivity * (1 - satisfaction)**2``."""
    reward: str = "click"
    """Reward function name from ``recnb.rewards.REWARDS`` (or a function of ``Signals``)."""
    mask_train_items: bool = True
    """Start each user with their training items consumed (they have seen them already)."""

    def __post_init__(self):
        def need(ok: bool, what: str):
            if not ok:
                raise ValueError(f"SimulatorConfig: {what}")

        for name in ("horizon", "slate_size", "history_len"):
            value = getattr(self, name)
            need(is_int(value) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")
        need(math.isfinite(self.choice_offset), f"choice_offset must be a finite logit, got {self.choice_offset}")
        need(self.trait_spread >= 0, f"trait_spread must be >= 0, got {self.trait_spread}")
        need(self.rating_noise >= 0, f"rating_noise must be >= 0, got {self.rating_noise}")
        for name in LONG_TERM_FIELDS:
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(0 <= self.drift_rate <= 1, f"drift_rate must be in [0, 1], got {self.drift_rate}")
        need(0 <= self.fatigue_recovery < 1, f"fatigue_recovery must be in [0, 1), got {self.fatigue_recovery}")
        need(0 <= self.satisfaction_init <= 1, f"satisfaction_init must be in [0, 1], got {self.satisfaction_init}")
        need(0 < self.satisfaction_rate <= 1, f"satisfaction_rate must be in (0, 1], got {self.satisfaction_rate}")
        need(
            0 <= self.no_click_experience <= 1, f"no_click_experience must be in [0, 1], got {self.no_click_experience}"
        )
        need(0 <= self.leave_base < 1, f"leave_base must be in [0, 1), got {self.leave_base}")
        leave_max = self.leave_base + self.leave_sensitivity
        need(leave_max <= 1, f"leave_base + leave_sensitivity must be <= 1 (a probability), got {leave_max}")
        need(isinstance(self.long_term, bool), f"long_term must be True or False, got {self.long_term!r}")
        rewards_mod.get(self.reward)  # raises on an unknown name

    def with_strength(self, strength: float) -> SimulatorConfig:
        """The same config with drift, fatigue and satisfaction-driven leaving scaled by ``strength`` (notebook 04).

        ``strength=0`` behaves exactly like ``long_term=False``; 1 is this config.
        """
        if not strength >= 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        scaled = {name: getattr(self, name) * strength for name in LONG_TERM_FIELDS}
        scaled["drift_rate"] = min(scaled["drift_rate"], 1.0)
        scaled["leave_sensitivity"] = min(scaled["leave_sensitivity"], 1.0 - self.leave_base)
        return replace(self, **scaled)

    def describe(self) -> str:
        """One line with every field, for printing next to results."""
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())


def resolve_config(config: SimulatorConfig | None) -> SimulatorConfig:
    """``config``, or the default :class:`SimulatorConfig` when None; anything else is a ``TypeError``."""
    config = config if config is not None else SimulatorConfig()
    if not isinstance(config, SimulatorConfig):
        raise TypeError(f"config must be a SimulatorConfig, got {type(config).__name__}")
    return config
