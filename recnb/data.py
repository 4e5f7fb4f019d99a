"""MovieLens-100K: sources, parsing to one schema, and contiguous indices (notebook 01).

``load_movielens("100k")`` tries, in order:

1. the verified cache in :func:`recnb.config.data_dir` (``ml-100k/`` with a sha256 manifest; read
   without a lock, built under one -- :mod:`recnb.cache` -- so simultaneous first loads build it once);
2. the official GroupLens zip (progress bar, pinned digest, atomic write, safe extraction);
3. the offline copy shipped inside the ``recbole==1.2.1`` wheel (content sha256 pinned), found with
   :func:`importlib.util.find_spec` without importing recbole.

Both sources are parsed to the same frames (tests prove it on fixtures in each layout):

* ``ratings``: ``user_id`` int32, ``item_id`` int32, ``rating`` int8 (1..5), ``timestamp`` int64 (unix s)
* ``items``: ``item_id`` int32, ``title`` str (year removed), ``year`` Int16 (nullable), ``genres`` list[str]
* ``users``: ``user_id`` int32, ``age`` int16, ``gender`` str, ``occupation`` str, ``zip_code`` str
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import cache, config
from .download import SourceError, download, file_digest, safe_extract_zip, verify_file

GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
CACHE_FILES = ("ratings.tsv", "items.tsv", "users.tsv")


@dataclass(frozen=True)
class DatasetSpec:
    """Where a MovieLens release comes from and the digests that pin it."""

    name: str
    url: str
    archive_digest: str
    archive_algorithm: str  # GroupLens publishes md5 for its zips; we pin what is published
    archive_folder: str  # folder inside the zip
    recbole_folder: str  # folder inside the recbole package
    recbole_sha256: dict = field(default_factory=dict)


ML_100K = DatasetSpec(
    name="100k",
    url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    archive_digest="0e33842e24a9c977be4e0107933c0723",
    archive_algorithm="md5",
    archive_folder="ml-100k",
    recbole_folder="dataset_example/ml-100k",
    recbole_sha256={
        "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    },
)
DATASETS = {"100k": ML_100K}


@dataclass
class MovieLens:
    """Ratings, items and users of one MovieLens release, plus where they came from."""

    ratings: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    source: str = ""

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def indexed(self) -> pd.DataFrame:
        """Ratings with contiguous 0-based ``user`` and ``item`` columns (ids sorted ascending)."""
        out = self.ratings.copy()
        out["user"] = index_of(self.users["user_id"].to_numpy(), out["user_id"].to_numpy())
        out["item"] = index_of(self.items["item_id"].to_numpy(), out["item_id"].to_numpy())
        return out


def index_of(sorted_ids: np.ndarray, ids) -> np.ndarray:
    """0-based positions of ``ids`` in ``sorted_ids``; raises on an id that is not there."""
    ids = np.asarray(ids)
    pos = np.searchsorted(sorted_ids, ids)
    pos_clipped = np.minimum(pos, len(sorted_ids) - 1)
    bad = (pos >= len(sorted_ids)) | (sorted_ids[pos_clipped] != ids)
    if bad.any():
        raise KeyError(f"unknown ids {ids[bad][:5].tolist()}: they are not in the catalogue")
    return pos.astype(np.int64)


# ---------------------------------------------------------------- parsing, one function a layout


def _typed(ratings: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame):
    """Apply the documented dtypes and sort orders, whatever layout the frames came from."""
    ratings = ratings.astype({"user_id": "int32", "item_id": "int32", "rating": "int8", "timestamp": "int64"})
    ratings = ratings.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    items = items.astype({"item_id": "int32", "year": "Int16"})
    items["title"] = items["title"].astype(str)
    items = items.sort_values("item_id").reset_index(drop=True)[["item_id", "title", "year", "genres"]]
    users = users.astype({"user_id": "int32", "age": "int16"})
    for col in ("gender", "occupation", "zip_code"):
        users[col] = users[col].astype(str)
    users = users.sort_values("user_id").reset_index(drop=True)[["user_id", "age", "gender", "occupation", "zip_code"]]
    return ratings, items, users


_TITLE_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def _clean_title(raw: str) -> str:
    title = _TITLE_YEAR.sub("", str(raw)).strip()
    return "unknown" if title.lower() in ("unknown", "unkonwn", "") else title


def parse_grouplens(folder: str | os.PathLike):
    """Parse the official layout (``u.data``, ``u.item`` latin-1, ``u.user``)."""
    folder = Path(folder)
    ratings = pd.read_csv(folder / "u.data", sep="\t", header=None, names=["user_id", "item_id", "rating", "timestamp"])
    cols = ["item_id", "title", "release_date", "video_release_date", "url", *GENRES]
    raw = pd.read_csv(
        folder / "u.item",
        sep="|",
        header=None,
        names=cols,
        encoding="latin-1",
        dtype={"title": str, "release_date": str},
    )
    flags = raw[list(GENRES)].fillna(0).astype(int).to_numpy()
    release_year = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    title_year = raw["title"].fillna("").str.extract(_TITLE_YEAR.pattern)[0].astype(float)
    items = pd.DataFrame(
        {
            "item_id": raw["item_id"],
            "title": raw["title"].fillna("").map(_clean_title),
            "year": release_year.fillna(title_year).astype("Int16"),
            "genres": [[g for g, f in zip(GENRES, row) if f] for row in flags],
        }
    )
    users = pd.read_csv(
        folder / "u.user",
        sep="|",
        header=None,
        dtype={"zip_code": str},
        names=["user_id", "age", "gender", "occupation", "zip_code"],
    )
    return _typed(ratings, items, users)


def parse_recbole(folder: str | os.PathLike, prefix: str = "ml-100k"):
    """Parse RecBole's atomic files (``.inter``, ``.item``, ``.user``; typed headers, utf-8)."""
    folder = Path(folder)

    def read(ext: str, **kw) -> pd.DataFrame:
        frame = pd.read_csv(folder / f"{prefix}.{ext}", sep="\t", encoding="utf-8", **kw)
        frame.columns = [c.split(":")[0] for c in frame.columns]
        return frame

    ratings = read("inter").rename(columns={})
    raw = read("item", dtype=str, keep_default_na=False)
    year = pd.to_numeric(raw["release_year"], errors="coerce")
    items = pd.DataFrame(
        {
            "item_id": raw["item_id"].astype(int),
            "title": raw["movie_title"].map(_clean_title),
            "year": year.astype("Int16"),
            "genres": [g.split() for g in raw["class"]],
        }
    )
    users = read("user", dtype={"zip_code": str})
    return _typed(ratings, items, users)


# ---------------------------------------------------------------- the verified cache


def _write_cache(folder: Path, ratings, items, users) -> None:
    """Write the canonical TSVs plus a sha256 manifest into a temporary folder, then rename it into place."""
    with cache.atomic_directory(folder) as tmp:
        ratings.to_csv(tmp / "ratings.tsv", sep="\t", index=False)
        items.assign(genres=items["genres"].map("|".join)).to_csv(tmp / "items.tsv", sep="\t", index=False)
        users.to_csv(tmp / "users.tsv", sep="\t", index=False)
        manifest = {name: file_digest(tmp / name) for name in CACHE_FILES}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _read_cache(folder: Path):
    """Read the cache: each file read once, checked against the manifest, parsed from those bytes.

    Returns None when there is no cache; raises :class:`recnb.cache.CorruptEntry` when it is incomplete or
    corrupt."""
    if not folder.exists():
        return None
    try:
        manifest = json.loads((folder / "manifest.json").read_bytes())
        raw = {}
        for name in CACHE_FILES:
            raw[name] = (folder / name).read_bytes()
            if cache.sha256_bytes(raw[name]) != manifest[name]:
                raise ValueError(f"{name}: sha256 differs from the manifest")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise cache.CorruptEntry(f"it is incomplete or corrupt ({exc})") from exc
    ratings = pd.read_csv(io.BytesIO(raw["ratings.tsv"]), sep="\t")
    items = pd.read_csv(
        io.BytesIO(raw["items.tsv"]), sep="\t", keep_default_na=False, dtype={"title": str, "year": str}
    )
    items["year"] = pd.to_numeric(items["year"], errors="coerce")
    items["genres"] = [g.split("|") if g else [] for g in items["genres"]]
    users = pd.read_csv(io.BytesIO(raw["users.tsv"]), sep="\t", dtype={"zip_code": str})
    return _typed(ratings, items, users)


# ---------------------------------------------------------------- sources, tried in order


def recbole_folder(spec: DatasetSpec = ML_100K) -> Path | None:
    """Where the installed recbole wheel keeps its copy of the dataset (None if not installed)."""
    found = importlib.util.find_spec("recbole")
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(list(found.submodule_search_locations)[0]) / spec.recbole_folder
    return folder if folder.is_dir() else None


def _from_grouplens(spec: DatasetSpec, root: Path, progress: bool):
    """Download (or reuse) the verified zip, extract it into a temporary folder and parse it (under the cache lock)."""
    archive = root / "downloads" / Path(spec.url).name
    if archive.exists():
        try:
            verify_file(archive, spec.archive_digest, spec.archive_algorithm)
        except SourceError as exc:  # the one corruption policy: say so, then fetch a fresh copy
            warnings.warn(f"{exc} Downloading it again.", cache.CacheWarning, stacklevel=3)
            archive.unlink(missing_ok=True)
    if not archive.exists():
        download(
            spec.url,
            archive,
            digest=spec.archive_digest,
            algorithm=spec.archive_algorithm,
            timeout=20,
            progress=progress,
        )
    with tempfile.TemporaryDirectory(prefix=f".{spec.archive_folder}-", dir=archive.parent) as tmp:
        extracted = safe_extract_zip(archive, Path(tmp) / "extracted")
        return parse_grouplens(extracted / spec.archive_folder)


def _from_recbole(spec: DatasetSpec):
    folder = recbole_folder(spec)
    if folder is None:
        raise SourceError(f"recbole=={'1.2.1'} is not installed")
    for name, digest in spec.recbole_sha256.items():
        verify_file(folder / name, digest)
    return parse_recbole(folder, prefix=f"ml-{spec.name}")


def load_movielens(name: str = "100k", *, refresh: bool = False, progress: bool = True) -> MovieLens:
    """Load a MovieLens release from the verified cache, GroupLens, or the recbole wheel (notebook 01).

    ``refresh=True`` ignores the cache. ``RECNB_OFFLINE=1`` skips the download.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown MovieLens release {name!r}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    folder = config.data_dir(create=False) / f"ml-{spec.name}"

    def read() -> MovieLens | None:  # no lock needed: the folder only ever appears by rename, every file is verified
        frames = _read_cache(folder)
        return None if frames is None else MovieLens(*frames, source=f"cache {folder}")

    def write(ml: MovieLens) -> None:
        _write_cache(folder, ml.ratings, ml.items, ml.users)

    # recnb.cache's policy: one process builds under the entry's lock, the others wait and then read what it built
    return cache.cached_folder(
        folder,
        read=read,
        build=lambda: _load_from_sources(spec, progress),
        write=write,
        what="MovieLens cache",
        refresh=refresh,
    )


def _load_from_sources(spec: DatasetSpec, progress: bool) -> MovieLens:
    """The dataset from GroupLens (unless offline), else the recbole wheel; SourceError naming the fix when neither."""
    root = config.data_dir()  # downloading needs a writable folder (PermissionError names the fix)
    failures = []
    sources = [("recbole", lambda: _from_recbole(spec))]
    if not config.offline():
        sources.insert(0, ("GroupLens", lambda: _from_grouplens(spec, root, progress)))
    for label, load in sources:
        try:
            return MovieLens(*load(), source=label)
        except (SourceError, OSError) as exc:
            failures.append(f"{label}: {exc}")
    raise SourceError(
        f"MovieLens-{spec.name} is not available from any source:\n  - "
        + "\n  - ".join(failures)
        + "\nFix: connect to the internet (the GroupLens download is tried first), or install the offline "
        "copy with `pip install --no-deps recbole==1.2.1`; `make setup` does this for you."
    )
