"""Shared fixtures: every test gets its own data directory so nothing touches the real cache."""

import pytest


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh, empty RECNB_DATA_DIR for one test."""
    folder = tmp_path / "data"
    monkeypatch.setenv("RECNB_DATA_DIR", str(folder))
    return folder
