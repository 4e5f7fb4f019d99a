"""recnb.config: data directory, seeding, device and run profile."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from recnb import config


def test_data_dir_defaults_to_repo_not_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv("RECNB_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert config.data_dir(create=False) == Path(config.__file__).resolve().parents[1] / "data"


def test_data_dir_follows_env(data_dir):
    assert config.data_dir() == data_dir and data_dir.is_dir()


def test_seed_everything_repeats_draws():
    config.seed_everything(7)
    a = (np.random.rand(3), torch.rand(3))
    config.seed_everything(7)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="non-negative integer"):
        config.seed_everything(-1)


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
