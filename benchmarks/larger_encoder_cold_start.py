"""A larger sentence encoder on cold films: notebook 07's text Q-network on all-MiniLM-L6-v2 vs all-mpnet-base-v2.

    python -m recnb.download --model sentence-transformers/all-mpnet-base-v2   # once, online (~438 MB)
    nice -n 10 python benchmarks/larger_encoder_cold_start.py [--write] [--json PATH]

Both encoders are pinned and every file sha256-verified (``recnb.encoder``). The script encodes notebook 07's
1,682 item texts with each (``recnb.embeddings.encode``, fp32, no cache, timed), then runs notebook 07's recipe
in its default profile -- the same cold films, platform model, training and evaluation users, DQN budget, ridge
warm start and training seeds -- through ``recnb.lm_rl.compare_encoders``, the function notebook 07's GPU profile
calls. Reported (simulator protocol, docs/protocols.md): the text Q-network's click rate on the cold catalogue
per encoder, and the paired per-user difference MPNet - MiniLM with its 95% interval. One difference to the
notebook: its MiniLM vectors come through the cached top layer (float16 inputs, within 1e-3 of these).
The JSON result is written atomically (default ``build/benchmarks/larger_encoder_cold_start.json``);
``--write`` also replaces this benchmark's section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from results_md import write_section

from recnb import lm_rl
from recnb.agents.dqn import DQNConfig
from recnb.cache import atomic_write
from recnb.data import load_movielens
from recnb.embeddings import encode
from recnb.encoder import DEFAULT_MODEL, LARGE_MODEL, MODEL_REVISIONS, resolve_model
from recnb.platform import PlatformEnv, fit_platform_model, split_users
from recnb.simulator import SimulatorConfig, UserSimulator
from recnb.splits import split_random
from recnb.text import item_texts

START, END = "<!-- larger_encoder_cold_start:start -->", "<!-- larger_encoder_cold_start:end -->"
ROOT = Path(__file__).resolve().parent.parent
# notebook 07's parameters cell, default profile
SEEDS, EVAL_USERS, EVAL_SEED, COLD_FRACTION, RIDGE_ALPHA = (0, 1, 2, 3, 4), 2000, 1000, 0.2, 1000.0
DQN = dict(
    total_steps=5_120,
    n_envs=64,
    buffer_size=5_120,
    learning_starts=640,
    updates_per_collect=1,
    batch_size=256,
    learning_rate=3e-5,
    gamma=0.9,
    n_step=3,
    tau=0.05,
    hidden=64,
    embed_dim=64,
    linear_items=True,
    item_lr_scale=1.0,
    fatigue_term=True,
    device="cpu",
)
ENCODERS = {"MiniLM": DEFAULT_MODEL, "MPNet": LARGE_MODEL}


def encode_catalogue(texts: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Each encoder's item vectors and the seconds it took (model load included; no embedding cache)."""
    torch.set_num_threads(os.cpu_count() or 1)
    vectors, seconds = {}, {}
    for name, model in ENCODERS.items():
        source = resolve_model(model)
        if not source.verified:
            raise SystemExit(
                f"{model} is not a verified copy ({source.kind}); run `python -m recnb.download --model {model}`"
            )
        start = time.perf_counter()
        vectors[name] = torch.as_tensor(encode(texts, model_name=model, device="cpu", cache=False, progress=True))
        seconds[name] = time.perf_counter() - start
        print(f"{name}: {tuple(vectors[name].shape)} in {seconds[name]:.1f} s ({source.kind}, sha256 verified)")
    return vectors, seconds


def notebook_07_envs(ml, sim):
    """Notebook 07, section 2: the cold films, the platform's BPR without them, training and evaluation users."""
    cold = lm_rl.cold_item_mask(sim.n_items, COLD_FRACTION, seed=0)
    track_a = split_random(ml.indexed(), seed=0)

    def logged(frame):
        return frame[~cold.numpy()[frame["item"].to_numpy()]]

    split = SimpleNamespace(train=logged(track_a.train), valid=logged(track_a.valid))
    platform_model = fit_platform_model(split, ml.n_users, ml.n_items, sim.calibration)
    train_rows, eval_rows = split_users(sim.n_calibration_users, 0.5, seed=0)
    eval_sim = UserSimulator.movielens(SimulatorConfig(), device="cpu")
    return (
        cold,
        PlatformEnv(sim, platform_model, users=train_rows),
        PlatformEnv(eval_sim, platform_model, users=eval_rows),
    )


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Python {sys.version.split()[0]}, load average {load:.1f} at the end"
    )


def markdown(result: dict, command: str) -> str:
    rows = "\n".join(
        f"| {name} ({ENCODERS[name].split('/')[1]}) | {r['dim']} | {r['encode_seconds']:.1f} | "
        f"{r['cold_click_rate']:.4f} ± {r['user_ci95']:.4f} | {r['seed_min']:.4f}-{r['seed_max']:.4f} |"
        for name, r in result["encoders"].items()
    )
    d = result["paired_difference"]
    verdict = "excludes zero" if d["excludes_zero"] else "includes zero: no difference measured"
    seeds = result["seeds"]
    return f"""{START}
## A larger encoder on cold films (`benchmarks/larger_encoder_cold_start.py`)

`{command}` -- notebook 07's text Q-network with its default-profile recipe ({len(seeds)} training seeds
{seeds[0]}-{seeds[-1]}, {result["eval_users"]:,} evaluation users with seed {result["eval_seed"]}, 20% cold films;
simulator protocol, docs/protocols.md) on each encoder's vectors of the {result["items"]:,} item texts (fp32
`encode`, no cache, CPU; pinned revisions {", ".join(f"{n} {r[:12]}" for n, r in result["revisions"].items())},
every file sha256-verified). {result["machine"]}; {result["date"]}; {result["total_seconds"]:.0f} s in all.

| encoder | dim | encode s (model load included) | cold click rate ± 95% (users) | per seed |
|---|---|---|---|---|
{rows}

Paired per-user difference MPNet - MiniLM on cold films, seed-averaged: **{d["diff"]:+.4f} ± {d["ci95"]:.4f}**
(95% Student-t interval; it {verdict}). Encoding time on this shared CPU: MPNet/MiniLM =
{result["encoders"]["MPNet"]["encode_seconds"] / result["encoders"]["MiniLM"]["encode_seconds"]:.1f}x.
{END}"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=ROOT / "build" / "benchmarks" / "larger_encoder_cold_start.json")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    ml = load_movielens("100k")
    texts = item_texts(ml.items)
    vectors, seconds = encode_catalogue(texts)
    torch.set_num_threads(1)  # as notebook 07: its small networks run many small ops
    sim = UserSimulator.movielens(SimulatorConfig(), device="cpu")
    cold, train_env, eval_env = notebook_07_envs(ml, sim)
    start = time.perf_counter()
    result = lm_rl.compare_encoders(
        train_env,
        eval_env,
        vectors,
        cold,
        DQNConfig(**DQN),
        SEEDS,
        alpha=RIDGE_ALPHA,
        n_users=EVAL_USERS,
        eval_seed=EVAL_SEED,
    )
    print(f"trained and evaluated {len(SEEDS)} text Q-networks per encoder in {time.perf_counter() - start:.0f} s")
    table, diff = result.table(), result.difference("MPNet", "MiniLM")
    print(table.round(4).to_string())
    print(f"paired MPNet - MiniLM on cold films: {diff.diff:+.4f} ± {diff.ci95:.4f} (95%)")
    out = {
        "benchmark": "larger_encoder_cold_start",
        "protocol": "simulator protocol (docs/protocols.md), notebook 07 default profile, cold catalogue",
        "seeds": list(SEEDS),
        "eval_users": EVAL_USERS,
        "eval_seed": EVAL_SEED,
        "items": len(texts),
        "revisions": {name: MODEL_REVISIONS[model] for name, model in ENCODERS.items()},
        "encoders": {
            name: {
                "model": ENCODERS[name],
                "dim": int(table.loc[name, "dim"]),
                "encode_seconds": round(seconds[name], 2),
                "cold_click_rate": float(table.loc[name, "cold_click_rate"]),
                "user_ci95": float(table.loc[name, "user_ci95"]),
                "seed_min": float(table.loc[name, "seed_min"]),
                "seed_max": float(table.loc[name, "seed_max"]),
                "per_seed": [ev.click_rate for ev in result.evaluations[name]],
            }
            for name in ENCODERS
        },
        "paired_difference": {
            "a_minus_b": "MPNet - MiniLM",
            "diff": diff.diff,
            "ci95": diff.ci95,
            "excludes_zero": bool(diff.excludes_zero),
        },
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "total_seconds": round(time.perf_counter() - begin, 1),
    }
    atomic_write(args.json, json.dumps(out, indent=2).encode())
    print(f"wrote {args.json}")
    if args.write:
        command = "nice -n 10 python benchmarks/larger_encoder_cold_start.py --write"
        print(f"updated {write_section(markdown(out, command), START, END)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
