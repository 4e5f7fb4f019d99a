"""pyproject.toml and environment.yml name the same dependencies with the same lower bounds."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pyproject_requirements():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return (
        set(meta["dependencies"])
        | set(meta["optional-dependencies"]["test"])
        | set(meta["optional-dependencies"]["lab"])
    )


def environment_requirements():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, text in enumerate(lines) if text.strip() == "- pip:")
    reqs = set()
    for line in lines[start + 1 :]:
        m = re.match(r"\s+- (.+)$", line)
        if not m:
            break
        if not m.group(1).startswith("-e"):
            reqs.add(m.group(1).strip())
    return reqs


def test_environment_yml_matches_pyproject():
    assert environment_requirements() == pyproject_requirements()


def test_dependencies_are_lower_bounds_only():
    for req in pyproject_requirements():
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+>=[0-9.]+", req), f"{req}: use a lower bound only (name>=x.y)"
