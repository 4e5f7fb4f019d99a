"""recnb.config: data directory, seeding, device and run profile."""

from pathlib import Path

import numpy as np
import pytest
import torch

from recnb import config


def test_data_dir_defaults_to_the_package_location_not_cwd(monkeypatch, tmp_path):
    """The repo's data/ in a checkout, the user cache dir for an installed package; never the cwd."""
    monkeypatch.delenv("RECNB_DATA_DIR", raising=False)
    package = Path(config.__file__).resolve().parent
    monkeypatch.chdir(tmp_path)
    assert config.data_dir(create=False) == config.default_data_dir(package)
    if config.in_checkout(package):
        assert config.data_dir(create=False) == package.parent / "data"


def test_data_dir_follows_env(data_dir):
    assert config.data_dir() == data_dir and data_dir.is_dir()


def test_data_dir_outside_a_checkout_is_the_user_cache_dir(monkeypatch, tmp_path):
    import platformdirs

    installed = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "recnb"
    installed.mkdir(parents=True)
    (installed.parent / "pyproject.toml").write_text("")  # even a stray pyproject.toml there is not a checkout
    assert not config.in_checkout(installed)
    assert config.default_data_dir(installed) == Path(platformdirs.user_cache_dir("recnb", appauthor=False))
    checkout = tmp_path / "clone" / "recnb"
    checkout.mkdir(parents=True)
    assert not config.in_checkout(checkout)  # no pyproject.toml beside it
    (checkout.parent / "pyproject.toml").write_text("")
    assert config.in_checkout(checkout) and config.default_data_dir(checkout) == checkout.parent / "data"
    monkeypatch.setenv("RECNB_DATA_DIR", str(tmp_path / "mine"))
    assert config.data_dir(create=False) == tmp_path / "mine"  # RECNB_DATA_DIR still wins


@pytest.mark.parametrize("value, on", [("", False), ("0", False), ("1", True), ("yes", True), (" 0 ", False)])
def test_flags_are_read_in_one_place(monkeypatch, value, on):
    for name, read in (("RECNB_OFFLINE", config.offline), ("RECNB_NO_CACHE", config.no_cache)):
        monkeypatch.setenv(name, value)
        assert read() is on
    monkeypatch.setenv("RECNB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert config.hub_offline() is on
    monkeypatch.setenv("RECNB_MODEL_DIR", "~/models/minilm")
    assert config.model_dir_env() == Path("~/models/minilm").expanduser()
    monkeypatch.setenv("RECNB_MODEL_DIR", "")
    assert config.model_dir_env() is None
    monkeypatch.setenv("RECNB_SMOKE", value)
    assert config.env_flag("RECNB_SMOKE") is on and config.smoke() is on


def test_results_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("RECNB_RESULTS_DIR", raising=False)
    assert config.results_dir() is None
    monkeypatch.setenv("RECNB_RESULTS_DIR", " ")
    assert config.results_dir() is None
    monkeypatch.setenv("RECNB_RESULTS_DIR", str(tmp_path))
    assert config.results_dir() == tmp_path


def test_only_config_reads_recnb_variables():
    """Every RECNB_* switch is read through recnb.config (env_flag, env_path, results_dir, ...)."""
    import re

    root = Path(config.__file__).resolve().parents[1]
    quoted = r"\s*[\"']RECNB_\w+[\"']"
    reads = re.compile(rf"os\.environ\.get\({quoted}|os\.getenv\({quoted}|os\.environ\[{quoted}\s*\](?!\s*=[^=])")
    sources = [*(root / "recnb").rglob("*.py"), *(root / "scripts").glob("*.py"), *(root / "benchmarks").glob("*.py")]
    offenders = [str(p.relative_to(root)) for p in sources if p.name != "config.py" and reads.search(p.read_text())]
    assert not offenders, f"read RECNB_* through recnb.config instead: {offenders}"


def test_seed_everything_repeats_draws():
    config.seed_everything(7)
    a = (np.random.rand(3), torch.rand(3))
    config.seed_everything(7)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for bad in (-1, True, 1.0):
        with pytest.raises(ValueError, match="non-negative integer"):
            config.seed_everything(bad)


def test_profiles(monkeypatch):
    monkeypatch.setenv("RECNB_SMOKE", "1")
    assert config.run_profile().pick(smoke=1, default=2, gpu=3) == 1
    monkeypatch.setenv("RECNB_SMOKE", "0")
    expected = "gpu" if torch.cuda.is_available() else "default"
    assert config.profile() == expected
    assert config.Profile("gpu").pick(smoke=1, default=2) == 2  # gpu falls back to default


def test_device_choice(monkeypatch):
    monkeypatch.setenv("RECNB_DEVICE", "cpu")
    assert config.device() == "cpu"
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'auto'"):
        config.device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            config.device("cuda")
