"""recnb._checks: the one validation vocabulary refuses bools and bad values with messages naming the fix."""

import numpy as np
import pytest

from recnb._checks import check_int, check_positive, check_probability, check_seed, is_real, need

INF, NAN = float("inf"), float("nan")


def test_need_raises_its_message():
    need(True, "never shown")
    with pytest.raises(ValueError, match="pass k >= 1"):
        need(False, "pass k >= 1")


def test_good_values_come_back_converted():
    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_int("n", 5, minimum=1, maximum=5) == 5 and check_int("n", -2, minimum=None) == -2
    assert check_seed("seed", 0) == 0 and check_seed("seed", 2**40) == 2**40
    assert check_probability("p", 1) == 1.0 and check_probability("p", 0.0) == 0.0
    assert check_positive("lr", np.float32(1e-3)) == pytest.approx(1e-3)
    assert is_real(2) and not is_real(True) and not is_real(NAN) and not is_real("1")


@pytest.mark.parametrize(
    "check, value, message",
    [
        (lambda v: check_int("Cfg.n", v), True, r"Cfg.n must be an integer >= 0, got the bool True \(write the number"),
        (lambda v: check_int("Cfg.n", v), np.bool_(False), "got the bool"),
        (lambda v: check_int("Cfg.n", v), -1, "Cfg.n must be an integer >= 0, got -1"),
        (lambda v: check_int("Cfg.n", v), 2.0, "must be an integer"),
        (lambda v: check_int("Cfg.n", v, minimum=1, maximum=4), 5, "must be an integer >= 1 and <= 4, got 5"),
        (lambda v: check_seed("seed", v), True, "seed must be a non-negative integer seed such as 0, got the bool"),
        (lambda v: check_seed("seed", v), -3, "non-negative integer seed"),
        (lambda v: check_seed("seed", v), 1.5, "non-negative integer seed"),
        (lambda v: check_probability("p", v), True, r"p must be a probability, a number in \[0, 1\], got the bool"),
        (lambda v: check_probability("p", v), 1.01, r"in \[0, 1\], got 1.01"),
        (lambda v: check_probability("p", v), NAN, "probability"),
        (lambda v: check_positive("lr", v), 0, "lr must be a finite positive number, got 0"),
        (lambda v: check_positive("lr", v), INF, "finite positive number"),
        (lambda v: check_positive("lr", v), True, "got the bool"),
        (lambda v: check_positive("lr", v), "0.1", "finite positive number"),
    ],
)
def test_bad_values_are_refused_with_the_fix(check, value, message):
    with pytest.raises(ValueError, match=message):
        check(value)


# ---------------------------------------------------------------- the configs built on them

CONFIG_CASES = [
    ("recnb.agents.tabular", "TDConfig", "episodes", True, "TDConfig.episodes must be an integer >= 1, got the bool"),
    ("recnb.agents.tabular", "TDConfig", "gamma", 1.0, r"TDConfig.gamma .* in \[0, 1\), got 1.0"),
    ("recnb.agents.tabular", "TDConfig", "lr_power", 0.3, r"TDConfig.lr_power .* in \(0.5, 1\]"),
    ("recnb.agents.tabular", "TDConfig", "lr_min", 2.0, r"TDConfig.lr_min \(at most learning_rate\) must be a"),
    ("recnb.agents.tabular", "TDConfig", "epsilon_end", 1.5, "TDConfig.epsilon_end must be a probability"),
    ("recnb.agents.tabular", "TDConfig", "seed", True, "TDConfig.seed must be a non-negative integer seed"),
    ("recnb.comparison", "RobustnessConfig", "fractions", (0.0,), r"RobustnessConfig.fractions\[0\] .* \(0, 1\]"),
    ("recnb.comparison", "RobustnessConfig", "fractions", 0.1, "RobustnessConfig.fractions must be a tuple"),
    ("recnb.comparison", "RobustnessConfig", "attacks", ("sybil",), "RobustnessConfig.attacks must be taken from"),
    ("recnb.comparison", "RobustnessConfig", "k", 0, "RobustnessConfig.k must be an integer >= 1"),
    ("recnb.comparison", "RobustnessConfig", "seed", -1, "RobustnessConfig.seed must be a non-negative integer"),
    ("recnb.coldstart", "ColdStartConfig", "seeds", (), "ColdStartConfig.seeds is empty"),
    ("recnb.coldstart", "ColdStartConfig", "seeds", (0, True), r"ColdStartConfig.seeds\[1\] must be .* got the bool"),
    ("recnb.coldstart", "ColdStartConfig", "fraction", 1.0, r"ColdStartConfig.fraction must be a number in \(0, 1\)"),
    ("recnb.coldstart", "ColdStartConfig", "bpr", None, "ColdStartConfig.bpr must be a BPRConfig"),
    ("recnb.coldstart", "ColdStartConfig", "neighbours", 2.5, "ColdStartConfig.neighbours must be an integer"),
    ("recnb.coldstart", "ColdStartConfig", "ridge_alphas", (0.0,), "ridge_alphas.* finite positive number"),
    ("recnb.coldstart", "ColdStartConfig", "shrinkage", (-1.0,), "shrinkage.* finite non-negative number"),
    ("recnb.ope_sim", "LoggingConfig", "n_rounds", 5, "LoggingConfig.n_rounds must be an integer >= 10"),
    ("recnb.ope_sim", "LoggingConfig", "n_candidates", True, "LoggingConfig.n_candidates .* got the bool"),
    ("recnb.ope_sim", "LoggingConfig", "epsilon", 0.0, r"LoggingConfig.epsilon .* in \(0, 1\]"),
    ("recnb.ope_sim", "LoggingConfig", "batch_users", True, "LoggingConfig.batch_users .* got the bool"),
    ("recnb.ope_sim", "LoggingConfig", "seed", 1.5, "LoggingConfig.seed must be a non-negative integer"),
    ("recnb.genre_mdp", "GenreSpace", "genres", ("Drama", "Drama"), "GenreSpace.genres must be distinct"),
    ("recnb.genre_mdp", "GenreSpace", "fatigue_edges", (1.0, 0.5), "GenreSpace.fatigue_edges must be increasing"),
]


@pytest.mark.parametrize("module, config, field, value, message", CONFIG_CASES)
def test_configs_refuse_bad_values_and_are_frozen(module, config, field, value, message):
    import dataclasses
    import importlib

    cls = getattr(importlib.import_module(module), config)
    with pytest.raises(ValueError, match=message):
        cls(**{field: value})
    good = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(good, field, getattr(good, field))


def test_every_config_field_has_a_docstring():
    """A config's fields are documented where they are declared (a string literal under each)."""
    import ast
    import importlib
    import inspect

    for module, config in sorted({(m, c) for m, c, *_ in CONFIG_CASES}):
        source = inspect.getsource(getattr(importlib.import_module(module), config))
        body = ast.parse(source).body[0].body
        for statement, after in zip(body, body[1:] + [None]):
            if isinstance(statement, ast.AnnAssign):
                documented = isinstance(after, ast.Expr) and isinstance(getattr(after, "value", None), ast.Constant)
                assert documented, f"{config}.{statement.target.id} has no docstring"
