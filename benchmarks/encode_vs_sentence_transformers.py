"""recnb.embeddings.encode vs sentence-transformers on the MovieLens-100K catalogue, side by side in one run.

    PYTHONPATH=. python benchmarks/encode_vs_sentence_transformers.py [--repeats 5] [--write]

Both encoders load the same verified offline all-MiniLM-L6-v2 weights, encode the same 1,682 item texts
with the same batch size, and are timed alternately (after one warm-up each) so that load from other
processes hits both alike; medians are reported. Agreement: max |difference| of the normalised vectors.
Also: int8 dynamic quantisation on CPU (speed-up, cosine to fp32, top-10 neighbour overlap), float16 /
bfloat16 autocast on CUDA when a GPU is present, and the cached reload. ``--write`` replaces this
benchmark's section in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
from results_md import write_section

from recnb import data, embeddings, text

BEGIN, END = "<!-- begin encode_vs_sentence_transformers -->", "<!-- end encode_vs_sentence_transformers -->"


def timed(fn, repeats: int):
    """Median wall seconds over ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each item's top-k cosine neighbours that two embeddings agree on."""

    def top(v):
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    ta, tb = top(a), top(b)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta, tb)]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    os.environ["RECNB_NO_CACHE"] = "1"  # time the encoder, not the cache
    from sentence_transformers import SentenceTransformer

    texts = text.item_texts(data.load_movielens("100k", progress=False).items)
    folder = str(embeddings.resolve_model().location)
    bs, rows = args.batch_size, []
    ours = lambda **kw: embeddings.encode(texts, device="cpu", batch_size=bs, cache=False, **kw)  # noqa: E731
    st = SentenceTransformer(folder, device="cpu")
    theirs = lambda: st.encode(texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True)  # noqa: E731
    ours(), theirs(), ours(quantize="int8")  # warm-up (and model loads)

    t_ours, t_st, t_int8 = [], [], []
    for _ in range(args.repeats):  # alternate, so contention hits all three alike
        t_ours.append(timed(ours, 1)[0])
        t_st.append(timed(theirs, 1)[0])
        t_int8.append(timed(lambda: ours(quantize="int8"), 1)[0])
    v_ours, v_st, v_int8 = ours(), theirs(), ours(quantize="int8")
    med = {name: statistics.median(t) for name, t in (("ours", t_ours), ("st", t_st), ("int8", t_int8))}
    diff = float(np.abs(v_ours - v_st).max())
    cos8 = (v_ours * v_int8).sum(axis=1)
    rows.append(("recnb `encode` (transformers, fp32)", "cpu", med["ours"], f"max abs diff vs ST {diff:.1e}"))
    rows.append(("sentence-transformers `encode` (fp32)", "cpu", med["st"], "reference"))
    rows.append(
        (
            "recnb `encode(quantize='int8')`",
            "cpu",
            med["int8"],
            f"cosine to fp32 min {cos8.min():.3f} / mean {cos8.mean():.4f}; top-10 neighbour overlap "
            f"{neighbour_overlap(v_ours, v_int8):.2f}",
        )
    )
    if torch.cuda.is_available():
        gpu_ours = {
            p: timed(
                lambda p=p: embeddings.encode(texts, device="cuda", batch_size=bs, cache=False, precision=p),
                args.repeats,
            )
            for p in ("float32", "float16", "bfloat16")
        }
        st_gpu = SentenceTransformer(folder, device="cuda")
        t_st_gpu, _ = timed(lambda: st_gpu.encode(texts, batch_size=bs, normalize_embeddings=True), args.repeats)
        for p, (t, v) in gpu_ours.items():
            rows.append(
                (f"recnb `encode` ({p})", "cuda", t, f"max abs diff vs CPU fp32 {np.abs(v - v_ours).max():.1e}")
            )
        rows.append(("sentence-transformers `encode` (fp32)", "cuda", t_st_gpu, ""))

    os.environ.pop("RECNB_NO_CACHE")  # the cached reload: write once, then time loads
    embeddings.encode(texts, device="cpu", batch_size=bs)
    t_cache, v_cache = timed(lambda: embeddings.encode(texts, device="cpu", batch_size=bs), args.repeats)
    rows.append(("recnb `encode`, cached reload", "cpu", t_cache, f"identical: {np.array_equal(v_cache, v_ours)}"))

    lines = [
        BEGIN,
        "## Item encoding: recnb.embeddings vs sentence-transformers",
        "",
        f"`{' '.join(['python', 'benchmarks/encode_vs_sentence_transformers.py', *sys.argv[1:]])}` — "
        f"{len(texts)} MovieLens-100K item texts, all-MiniLM-L6-v2 (offline copy, sha256 verified), "
        f"batch size {bs}, median of {args.repeats} alternating runs after a warm-up; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. Timings on a shared machine are inflated by other load; "
        "compare ratios within this run.",
        "",
        "| encoder | device | seconds | agreement |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {dev} | {sec:.3f} | {note} |" for name, dev, sec, note in rows]
    lines += [
        "",
        f"Speed ratio sentence-transformers / recnb (CPU fp32): **{med['st'] / med['ours']:.2f}x**; "
        f"int8 speed-up over fp32: **{med['ours'] / med['int8']:.2f}x**.",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(section, BEGIN, END)
    assert diff <= 1e-5, f"recnb and sentence-transformers disagree by {diff}"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
