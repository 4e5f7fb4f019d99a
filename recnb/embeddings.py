"""Sentence embeddings from a pretrained encoder, cached on disk (notebook 03).

``encode(texts)`` turns strings into L2-normalised float32 vectors with a Hugging Face encoder
(default ``sentence-transformers/all-MiniLM-L6-v2``; ``model_name=LARGE_MODEL`` is the pinned MPNet,
``all-mpnet-base-v2``, which pools the same way), using plain ``transformers``:

* tokenise with truncation at ``max_length=256``; sort texts by token length so each batch pads little;
* run the encoder under ``torch.inference_mode`` (autocast to float16/bfloat16 on CUDA);
* **masked mean pooling**: average the token vectors, ignoring padding; then divide by the L2 norm.

This is exactly what ``sentence-transformers`` does for both models, and ``benchmarks/`` checks it for MiniLM.

Where the encoder's files come from, and how they are verified, is :mod:`recnb.encoder` (its public
names are re-exported here: ``resolve_model``, ``load_encoder``, ``MODEL_MANIFESTS``, ...).

Embeddings are cached in ``data_dir()/embeddings/`` keyed by model, settings and a hash of the
texts, under :mod:`recnb.cache`'s policy (lock, atomic write, sha256 checked on read, a corrupt
entry rebuilt). ``cache=False`` (or ``RECNB_NO_CACHE=1``) neither reads nor writes it, and needs no
data dir at all; a cache that cannot be saved is reported and the vectors are still returned.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from . import cache as _cache  # `cache` is encode()'s argument
from . import config
from .encoder import (
    DEFAULT_MODEL,
    LARGE_MODEL,
    MODEL_MANIFESTS,
    MODEL_REVISIONS,
    OFFLINE_FIX,
    OFFLINE_PACKAGE,
    OFFLINE_PACKAGES,
    OFFLINE_WEIGHTS_SHA256,
    ModelSource,
    ModelSourceError,
    ModelWarning,
    fetch_model,
    load_encoder,
    manifest_problems,
    model_cache_dir,
    model_identity,
    model_slug,
    offline_fix,
    offline_model_dir,
    prefetch_model,
    quantize_int8,
    resolve_model,
    verify_weights,
)

__all__ = [
    # encoding (this module)
    "MAX_LENGTH",
    "POOLING_VERSION",
    "cache_path",
    "encode",
    "length_sorted_batches",
    "mean_pool",
    "model_slug",
    "texts_digest",
    # the encoder's sources and loading (recnb.encoder), re-exported
    "DEFAULT_MODEL",
    "LARGE_MODEL",
    "MODEL_MANIFESTS",
    "MODEL_REVISIONS",
    "OFFLINE_FIX",
    "OFFLINE_PACKAGE",
    "OFFLINE_PACKAGES",
    "OFFLINE_WEIGHTS_SHA256",
    "ModelSource",
    "ModelSourceError",
    "ModelWarning",
    "fetch_model",
    "load_encoder",
    "manifest_problems",
    "model_cache_dir",
    "model_identity",
    "offline_fix",
    "offline_model_dir",
    "prefetch_model",
    "quantize_int8",
    "resolve_model",
    "verify_weights",
]

MAX_LENGTH = 256
POOLING_VERSION = "masked-mean-l2-v1"  # part of the cache key: change it when the maths changes


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
            raise TypeError(
                f"texts[{i}] is {type(text).__name__} ({text!r}), not a string; convert it with str() or drop it"
            )
    return texts


def _autocast(device: str, precision: str):
    import contextlib

    import torch

    if device != "cuda" or precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=getattr(torch, precision))


def length_sorted_batches(tokenizer, encoded, batch_size: int, *, desc: str, progress: bool, leave: bool = True):
    """Yield ``(rows, padded batch)`` over tokenised texts, longest first, so each batch pads little.

    ``encoded`` is the tokenizer's output for every text (unpadded); ``rows`` are the texts' indices in
    the batch (a NumPy array), the batch is padded PyTorch tensors. Shared by :func:`encode` and the
    top-layer cache of :mod:`recnb.lm_rl.finetune`, so both see the very same batches.
    """
    from tqdm.auto import tqdm

    order = np.argsort([-len(ids) for ids in encoded["input_ids"]], kind="stable")  # longest first
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", disable=not progress, leave=leave):
        rows = order[start : start + batch_size]
        yield rows, tokenizer.pad({key: [encoded[key][i] for i in rows] for key in encoded.keys()}, return_tensors="pt")


def _run(texts, tokenizer, model, batch_size, device, precision, max_length, progress) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode(), _autocast(device, precision):
        for idx, batch in length_sorted_batches(tokenizer, encoded, batch_size, desc="encode", progress=progress):
            batch = {key: value.to(device) for key, value in batch.items()}
            hidden = model(**batch).last_hidden_state
            pooled = mean_pool(hidden.float(), batch["attention_mask"])
            out[idx] = F.normalize(pooled, p=2, dim=1).cpu().numpy()
    return out


def encode(
    texts,
    model_name: str = DEFAULT_MODEL,
    batch_size: int = 64,
    device: str | None = None,
    *,
    model_dir=None,
    max_length: int = MAX_LENGTH,
    precision: str = "auto",
    quantize: str | None = None,
    cache: bool = True,
    progress: bool = False,
) -> np.ndarray:
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

    def compute() -> np.ndarray:
        tokenizer, model = load_encoder(model_name, device, model_dir=model_dir, quantize=quantize)
        return _run(texts, tokenizer, model, batch_size, device, precision, max_length, progress)

    if not cache or config.no_cache():
        return compute()  # never touches the data dir: it may be read-only or absent
    path = cache_path(source, texts, max_length, precision if device == "cuda" else "float32", quantize)
    return _cache.cached(
        path,
        load=lambda data, meta: _parse_vectors(data, meta, len(texts)),
        build=compute,
        dump=_dump_vectors,
        what="embedding cache",
    )


# ---------------------------------------------------------------- the cache


def texts_digest(texts: list[str]) -> str:
    """sha256 of a list of texts (order matters; notebook 03)."""
    return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()


def cache_path(source: ModelSource, texts: list[str], max_length: int, precision: str, quantize) -> Path:
    """Where the embeddings of ``texts`` by ``source`` with these settings are cached (nothing is created)."""
    key = json.dumps(
        [model_identity(source), texts_digest(texts), max_length, precision, quantize or "none", POOLING_VERSION]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return config.data_dir(create=False) / "embeddings" / f"{model_slug(source.name)}-{digest}.npy"


def _dump_vectors(vectors: np.ndarray) -> tuple[bytes, dict]:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue(), {"shape": list(vectors.shape)}


def _parse_vectors(data: bytes, meta: dict, n_texts: int) -> np.ndarray:
    """Vectors from verified bytes; raises CorruptEntry when they are not the float32 [n_texts, d] expected."""
    try:
        vectors = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _cache.CorruptEntry(f"not a .npy array ({exc})") from exc
    if (
        vectors.dtype != np.float32
        or vectors.ndim != 2
        or vectors.shape[0] != n_texts
        or list(vectors.shape) != meta.get("shape")
        or not np.isfinite(vectors).all()
    ):
        raise _cache.CorruptEntry(f"unexpected array {vectors.dtype} {vectors.shape} for {n_texts} texts")
    return vectors
