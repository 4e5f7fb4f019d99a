"""Full-ranking evaluation at MovieLens-100K's shape: recnb's batched evaluator vs a per-user NumPy
loop (the textbook implementation), side by side in one run, metrics checked equal (notebook 02).

    python benchmarks/full_ranking_eval.py              # ~5 s; updates benchmarks/RESULTS.md
    python benchmarks/full_ranking_eval.py --no-write

Both rank all 1,682 items for each of 943 users (random scores, 50 training items masked, 50 targets a
user) and compute HR, Precision, Recall and NDCG at 5/10/20 and MRR, ties broken by item index.
Times are the median of ``--repeats`` runs after one warm-up, wall and CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numpy as np
import torch
from results_md import write_section

from recnb.metrics import FullRankingEvaluator

START, END = "<!-- full_ranking_eval:start -->", "<!-- full_ranking_eval:end -->"
N_USERS, N_ITEMS, KS = 943, 1682, (5, 10, 20)


def data(seed: int = 0):
    """(train pairs, target pairs, scores [users, items]) with MovieLens-100K's shape."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(N_USERS), 100)
    items = np.concatenate([rng.choice(N_ITEMS, 100, replace=False) for _ in range(N_USERS)])
    pairs = np.stack([users, items], 1)
    return pairs[::2], pairs[1::2], rng.random((N_USERS, N_ITEMS), dtype=np.float32)


def per_user_loop(train: np.ndarray, targets: np.ndarray, scores: np.ndarray) -> dict:
    """The textbook way: for each user, mask their training items, sort every item, read the metrics."""
    seen = [train[train[:, 0] == u, 1] for u in range(N_USERS)]
    wanted = [targets[targets[:, 0] == u, 1] for u in range(N_USERS)]
    out = {f"{m}@{k}": [] for m in ("HR", "Precision", "Recall", "NDCG") for k in KS}
    out["MRR"] = []
    for u in range(N_USERS):
        target = np.setdiff1d(wanted[u], seen[u])
        if len(target) == 0:
            continue
        s = scores[u].astype(np.float64)
        s[seen[u]] = -np.inf
        ranked = np.argsort(-s, kind="stable")[: N_ITEMS - len(seen[u])]  # ties: lower item index first
        rel = np.isin(ranked, target)
        out["MRR"].append(1.0 / (int(np.argmax(rel)) + 1))
        for k in KS:
            hits = int(rel[:k].sum())
            out[f"HR@{k}"].append(float(hits > 0))
            out[f"Precision@{k}"].append(hits / k)
            out[f"Recall@{k}"].append(hits / len(target))
            dcg = sum(1 / math.log2(j + 2) for j in np.flatnonzero(rel[:k]))
            out[f"NDCG@{k}"].append(dcg / sum(1 / math.log2(j + 2) for j in range(min(k, len(target)))))
    return {name: float(np.mean(v)) for name, v in out.items()}


def timed(fn, repeats: int):
    """(last result, median wall s, median CPU s) of ``repeats`` calls after one warm-up."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return result, float(np.median(walls)), float(np.median(cpus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/RESULTS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(1)  # both sides on one core
    train, targets, scores = data()
    evaluator = FullRankingEvaluator(train, targets, N_USERS, N_ITEMS, ks=KS)
    ours, ours_wall, ours_cpu = timed(lambda: evaluator.evaluate(torch.from_numpy(scores)), args.repeats)
    peer, peer_wall, peer_cpu = timed(lambda: per_user_loop(train, targets, scores), args.repeats)
    worst = max(abs(ours[name] - value) for name, value in peer.items())
    if worst > 1e-6:
        raise SystemExit(f"the two implementations disagree (max |difference| {worst:.2e}): fix before timing")
    rows = [
        ("recnb FullRankingEvaluator (batched torch)", ours_wall, ours_cpu),
        ("per-user NumPy loop (argsort each user)", peer_wall, peer_cpu),
    ]
    section = "\n".join(
        [
            START,
            "## Full-ranking evaluation (`benchmarks/full_ranking_eval.py`)",
            "",
            f"{N_USERS} users x {N_ITEMS} items (MovieLens-100K's shape), random scores, 50 masked training items "
            f"and 50 targets a user; HR/Precision/Recall/NDCG@{{5,10,20}} and MRR, ties by item index; both on one "
            f"CPU thread; median of {args.repeats} runs after a warm-up. Metrics agree to {worst:.1e}. "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d')}.",
            "",
            "| implementation | wall s | CPU s |",
            "|---|---|---|",
            *[f"| {name} | {wall:.3f} | {cpu:.3f} |" for name, wall, cpu in rows],
            "",
            f"**Ratio: {peer_cpu / ours_cpu:.1f}x less CPU time** ({peer_wall / ours_wall:.1f}x wall) "
            "than the per-user loop.",
            END,
        ]
    )
    print(section)
    if not args.no_write:
        print("wrote", write_section(section, START, END))


if __name__ == "__main__":
    main()
