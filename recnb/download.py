"""Safe file handling for data and model sources (used by notebook 01 and notebook 03).

Every file the workbook writes goes through here: downloads are streamed to a temporary file
beside the target, verified against a pinned digest and only then renamed into place; archives
are tested before extraction and members that would land outside the target folder are refused.
A failure never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm


class SourceError(RuntimeError):
    """A data or model source could not be used (network, checksum, archive)."""


class ChecksumError(SourceError):
    """A file's digest differs from the pinned one."""


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str | os.PathLike, expected: str, algorithm: str = "sha256") -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the pinned digest."""
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        raise ChecksumError(
            f"{path}: {algorithm} is {actual}, expected {expected}. The file is corrupt or not the "
            "pinned version; delete it and load again."
        )


@contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (temp file + rename)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


@contextmanager
def atomic_directory(target: str | os.PathLike):
    """Yield a temporary folder beside ``target``; it replaces ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download(url: str, target: str | os.PathLike, *, digest: str, algorithm: str = "sha256",
             timeout: float = 30.0, progress: bool = True) -> Path:
    """Download ``url`` to ``target`` with a progress bar, verified against ``digest``, atomically."""
    target = Path(target)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            hasher, received = hashlib.new(algorithm), 0
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                              desc=f"download {target.name}", disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    hasher.update(block)
                    received += len(block)
                    bar.update(len(block))
            if total is not None and received != total:
                raise SourceError(f"{url}: download ended after {received} of {total} bytes; try again.")
            if hasher.hexdigest() != digest.lower():
                raise ChecksumError(
                    f"{url}: {algorithm} of the download is {hasher.hexdigest()}, expected {digest}. "
                    "Nothing was kept. The server may serve another version; check the URL."
                )
    except SourceError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise SourceError(f"could not download {url}: {exc!r}") from exc
    return target


def _member_target(root: Path, name: str) -> Path:
    """The extraction path of an archive member, refusing anything that escapes ``root``."""
    member = PurePosixPath(name.replace("\\", "/"))
    if member.is_absolute() or ".." in member.parts or (member.parts and ":" in member.parts[0]):
        raise SourceError(f"refusing archive member {name!r}: it would be written outside {root}")
    path = (root / member).resolve()
    if not path.is_relative_to(root.resolve()):
        raise SourceError(f"refusing archive member {name!r}: it would be written outside {root}")
    return path


def safe_extract_zip(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a zip into ``target`` atomically after testing it; refuse escaping members and links."""
    archive, target = Path(archive), Path(target)
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise SourceError(f"{archive}: member {bad!r} is corrupt (CRC mismatch); delete the archive and download again.")
            with atomic_directory(target) as tmp:
                for info in zf.infolist():
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise SourceError(f"refusing archive member {info.filename!r}: symbolic links are not extracted")
                    path = _member_target(tmp, info.filename)
                    if info.is_dir():
                        path.mkdir(parents=True, exist_ok=True)
                        continue
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(path, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise SourceError(f"{archive} is not a valid zip archive ({exc}); delete it and download again.") from exc
    return target
