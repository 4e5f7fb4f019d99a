"""The lint and test tooling agrees with itself: one ruff version, the test tiers the Makefile and README name."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _makefile() -> str:
    path = ROOT / "Makefile"
    if not path.is_file():
        pytest.skip("not a source checkout (no Makefile)")
    return path.read_text(encoding="utf-8")


def test_pre_commit_pins_the_ruff_the_makefile_installs():
    pinned = re.search(r"^RUFF_VERSION\s*:=\s*(\S+)", _makefile(), re.M).group(1)
    config = (ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    assert "repo: https://github.com/astral-sh/ruff-pre-commit" in config
    assert re.search(r"^\s*rev:\s*v(\S+)", config, re.M).group(1) == pinned
    hooks = re.findall(r"-\s*id:\s*(\S+)", config)
    assert hooks == ["ruff-check", "ruff-format"]  # the fixer first: a fix can leave code to reformat


def test_make_test_lints_first_and_every_tier_is_documented():
    makefile = _makefile()
    assert re.search(r"^test:\s*lint\b", makefile, re.M), "make test must run ruff (make lint) before pytest"
    assert re.search(r"^lint:.*\n(?:\t.*\n)*\t\$\(RUFF\) check \.$", makefile, re.M)
    assert re.search(r"^smoke:.*\n\tRECNB_SMOKE=1 .*pytest .*notebooks .*\$\(NBVAL\)", makefile, re.M)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    testing = readme.split("## Testing", 1)[1].split("\n## ", 1)[0]
    for target in ("make test", "make unit", "make smoke", "make lint"):
        assert re.search(rf"^{target} |`{target}`", testing, re.M), f"README's Testing section lacks {target}"
