"""The one cache policy that every on-disk cache of the workbook follows.

MovieLens (``ml-100k/``), sentence embeddings, the simulator calibration, the platform model and the
language model's top-layer inputs are all cached in :func:`recnb.config.data_dir`. A classroom shares
that folder between many processes and often between accounts, so every cache obeys the same rules:

* **one lock per entry** -- a :class:`filelock.FileLock` on ``.<entry>.lock`` beside the entry. When
  twenty notebooks start at once, one builds the entry and the others wait, then read what it built;
* **atomic writes** -- a temporary file (or folder) in the same folder, then ``os.replace``, so a
  reader sees the old entry or the new one, never half of one. Permissions follow the umask:
  ``tempfile`` creates 0600 files and 0700 folders, which would lock other accounts out of a shared
  data dir, so they are widened to ``0o666 & ~umask`` (folders ``0o777 & ~umask``) before the rename;
* **read once, then verify** -- an entry's bytes are read a single time, their sha256 is checked
  against the sidecar ``<entry>.json`` and those same bytes are parsed, so a file replaced between
  the check and the parse cannot slip through;
* **one corruption policy** -- an entry that fails its check is reported with a :class:`CacheWarning`
  and rebuilt. A cache that cannot be written (read-only data dir, full disk) is reported the same
  way and the freshly computed value is still returned.

Reading takes no lock (entries only ever appear by rename), so a read-only shared data dir still
serves everything a teacher prefetched with ``python -m recnb.download --all``.

Every cache goes through one implementation of these rules: :func:`cached` for a single-file entry with its
sha256 sidecar (calibration, platform model, embeddings, top-layer inputs) and :func:`cached_folder` for a
folder verified by its own manifest (MovieLens); no cache read is wrapped in a catch-all ``except``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

T = TypeVar("T")


class CacheWarning(UserWarning):
    """A cache entry was corrupt (and is rebuilt) or could not be saved (the value is still returned)."""


class CorruptEntry(ValueError):
    """A cache entry failed its check: missing sidecar, sha256 mismatch, or contents of the wrong form."""


# ---------------------------------------------------------------- permissions

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process umask, read without changing it where the OS allows (``/proc``), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it; keep other threads out meanwhile
        current = os.umask(0o022)
        os.umask(current)
    return current


def file_mode() -> int:
    """The mode a plain ``open()`` would give a new file: ``0o666 & ~umask``."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """The mode a plain ``mkdir`` would give a new folder: ``0o777 & ~umask``."""
    return 0o777 & ~umask()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- locks and atomic writes


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of a cache entry: ``.<name>.lock`` in the entry's folder."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def lock(target: str | os.PathLike) -> FileLock:
    """A file lock for one cache entry (creates the entry's folder; raises ``OSError`` if it cannot).

    The lock file gets the umask's mode, not filelock's 0644 default, so that other accounts sharing
    the data dir can take it too.
    """
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), mode=file_mode())


@contextmanager
def atomic_file(target: str | os.PathLike):
    """Yield a temporary path beside ``target``; on success give it the umask's mode and rename it over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, file_mode())  # mkstemp made it 0600
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically, with the umask's permissions."""
    with atomic_file(target) as tmp:
        tmp.write_bytes(data)


@contextmanager
def atomic_directory(target: str | os.PathLike):
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` by rename.

    A folder cannot be renamed over a non-empty one, so an old ``target`` is first renamed aside and
    removed afterwards; a reader that looks in between finds no entry and goes to the lock. Callers
    hold the entry's :func:`lock`, so two writers never interleave.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    old = None
    try:
        yield tmp
        mode_file, mode_dir = file_mode(), dir_mode()
        for path in tmp.rglob("*"):  # files written with open() already follow the umask; mkstemp's do not
            os.chmod(path, mode_dir if path.is_dir() else mode_file)
        os.chmod(tmp, mode_dir)  # mkdtemp made it 0700
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "entry")
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- single-file entries with a sha256 sidecar


def sidecar(path: str | os.PathLike) -> Path:
    """The sidecar of an entry: ``<stem>.json`` with its sha256 and any metadata."""
    return Path(path).with_suffix(".json")


def write_entry(path: str | os.PathLike, data: bytes, meta: dict | None = None) -> None:
    """Write an entry and then its sidecar, each atomically; the sidecar comes last, so it vouches for the data."""
    path = Path(path)
    atomic_write(path, data)
    atomic_write(sidecar(path), json.dumps({"sha256": sha256_bytes(data), **(meta or {})}).encode())


def read_entry(path: str | os.PathLike) -> tuple[bytes, dict] | None:
    """``(bytes, metadata)`` of an intact entry, ``None`` if there is none; raises :class:`CorruptEntry`.

    Each file is read once; the data's sha256 is checked on the very bytes that the caller will parse.
    """
    path = Path(path)
    try:
        meta_bytes = sidecar(path).read_bytes()
    except FileNotFoundError:
        if path.exists():
            raise CorruptEntry("it has no checksum sidecar (written by an older recnb, or interrupted)") from None
        return None
    except OSError as exc:
        raise CorruptEntry(f"its sidecar is unreadable ({exc})") from exc
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptEntry("its data file is missing") from None
    except OSError as exc:
        raise CorruptEntry(f"it is unreadable ({exc})") from exc
    try:
        meta = json.loads(meta_bytes)
        expected = meta["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry(f"its sidecar is not valid ({exc!r})") from exc
    if sha256_bytes(data) != expected:
        raise CorruptEntry(f"sha256 differs from the one recorded ({len(data)} bytes read)")
    return data, meta


def cached(
    path: str | os.PathLike,
    *,
    load: Callable[[bytes, dict], T],
    build: Callable[[], T],
    dump: Callable[[T], tuple[bytes, dict]],
    what: str,
    refresh: bool = False,
) -> T:
    """The cache policy for one single-file entry: read, else lock, read again, build, save.

    ``load(data, meta)`` parses verified bytes (raise :class:`CorruptEntry` on contents of the wrong
    form); ``build()`` computes the value; ``dump(value)`` gives ``(bytes, metadata)`` to save.
    ``refresh=True`` rebuilds even when an intact entry exists.
    """
    path = Path(path)

    def read() -> T | None:
        entry = read_entry(path)
        return None if entry is None else load(*entry)

    def write(value: T) -> None:
        write_entry(path, *dump(value))

    return _policy(path, read, build, write, what, refresh)


def cached_folder(
    folder: str | os.PathLike,
    *,
    read: Callable[[], T | None],
    build: Callable[[], T],
    write: Callable[[T], None],
    what: str,
    refresh: bool = False,
) -> T:
    """:func:`cached`'s policy for an entry that is a folder of files verified by its own manifest (MovieLens).

    ``read()`` returns the value, ``None`` when there is no entry, and raises :class:`CorruptEntry` when it
    fails its check; ``write(value)`` saves it (with :func:`atomic_directory`), raising ``OSError`` when it
    cannot. Locking, the corruption warning and the unwritable-folder warnings are :func:`cached`'s.
    """
    return _policy(Path(folder), read, build, write, what, refresh)


def _policy(path: Path, read, build, write, what: str, refresh: bool):
    """Read; else lock, read again (another process may have built it meanwhile), build, save, unlock.

    Warnings point at the caller of :func:`cached` / :func:`cached_folder`'s caller (stacklevel 4).
    """
    if not refresh:
        try:
            value = read()
            if value is not None:
                return value
        except CorruptEntry:
            pass  # maybe a writer is mid-way; decided under the lock below
    try:
        held = lock(path)
        held.acquire()
    except OSError as exc:  # a read-only or missing data dir: compute, but say why nothing is saved
        warnings.warn(
            f"{what} {path} cannot be saved ({exc}); computing it without a cache. Set "
            "RECNB_DATA_DIR to a writable folder to keep it.",
            CacheWarning,
            stacklevel=4,
        )
        return build()
    try:
        if not refresh:
            try:
                value = read()
                if value is not None:
                    return value  # another process built it while we waited
            except CorruptEntry as exc:
                warnings.warn(f"{what} {path.name} is corrupt ({exc}); rebuilding it", CacheWarning, stacklevel=4)
        value = build()
        try:
            write(value)
        except OSError as exc:
            warnings.warn(
                f"{what} {path} could not be saved ({exc}); the value is returned but not cached. "
                "Free some disk space or set RECNB_DATA_DIR to a writable folder.",
                CacheWarning,
                stacklevel=4,
            )
        return value
    finally:
        held.release()
