"""The workbook's chapters: titles, what each teaches, measured run times, where to open them (notebook 00).

One source for three places: notebook 00's chapter table, the README's chapter table and every
Colab badge. The package carries it, so it also works where the notebooks folder is absent (Colab
opens one notebook, with ``/content`` as its working directory).

* ``CHAPTERS`` -- number, file, title and concepts of each notebook (tests/test_chapters.py checks
  the titles against the notebooks' first headings, and that every notebook is listed);
* ``runtimes.json`` (next to this module) -- the wall time of each notebook in its last run of
  ``scripts/run_notebooks.py --in-place``, with the date, the machine and its load; written by
  that script only (:func:`record_runtimes`), read by :func:`chapter_table` and the README;
* :func:`repository_url` -- the one repository address, ``[project.urls] Repository`` of
  ``pyproject.toml``, read from the installed package's metadata.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

from .cache import atomic_write

RUNTIMES_FILE = Path(__file__).resolve().parent / "runtimes.json"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


@dataclass(frozen=True)
class Chapter:
    """One notebook: ``number`` ("00"), ``file`` name, ``title`` (its first heading), ``concepts`` taught."""

    number: str
    file: str
    title: str
    concepts: str


CHAPTERS = (
    Chapter(
        "00",
        "00_setup_and_tour.ipynb",
        "Setup and tour",
        "environment check, run profiles, verified data sources, exercises",
    ),
    Chapter(
        "01",
        "01_data_preparation.ipynb",
        "Data preparation",
        "MovieLens-100K schema, long tail, Track A / Track B / cold-start splits, user histories",
    ),
    Chapter(
        "02",
        "02_collaborative_filtering_baselines.ipynb",
        "Collaborative-filtering and deep baselines",
        "one full-ranking evaluator (HR, NDCG, Recall, MRR, coverage, Gini), popularity, item-kNN, BPR-MF, "
        "NeuMF, early stopping, Track A vs B, popularity bias, hyperparameter search with Optuna (grid, random, "
        "TPE; pruning; worker processes on a shared storage), TensorBoard",
    ),
    Chapter(
        "03",
        "03_language_model_embeddings.ipynb",
        "Language-model item embeddings and cold start",
        "item text, MiniLM via transformers (masked mean pooling), embedding cache, neighbours, PCA/t-SNE, "
        "free-text search, cold start (5 seeds), text→BPR hybrid, int8; tokens, self-attention, MLM and "
        "contrastive pretraining, [CLS] vs mean pooling (measured), bf16 autocast",
    ),
    Chapter(
        "04",
        "04_reward_design_and_user_simulator.ipynb",
        "Reward design and a simulated user",
        "reward functions, a two-part simulated user (choice from implicit feedback, rating shrunk by count) "
        "checked on held-out real data (ranking vs BPR, rare first picks, popularity and rating distances), "
        "drift/fatigue/boredom/leaving, a hidden per-user trait, the platform's view vs the oracle, a tuned "
        "diversifying heuristic, agents trained under click, log(1 + rating) and retention rewards",
    ),
    Chapter(
        "05",
        "05_tabular_q_learning_and_sarsa.ipynb",
        "Tabular Q-learning and SARSA",
        "bandits, genre MDP, value/policy iteration, Q-learning, SARSA, expected SARSA within 1% of the "
        "optimum, γ and ε, what the abstraction carries back to the full simulator, the updates written out "
        "and equal to the package's",
    ),
    Chapter(
        "06",
        "06_deep_q_networks.ipynb",
        "Deep Q-networks for recommendation",
        "the platform's view only, disjoint training/evaluation users, item-feature Q-network with a learned "
        "price of repetition, on-device replay, target net, Double DQN, n-step, masking, terminated vs "
        "truncated, a one-screen DQN equal to the package's, "
        "5 seeds against tuned heuristics and a labelled oracle with paired per-user intervals, "
        "Q vs Monte-Carlo, GPU/Colab path",
    ),
    Chapter(
        "07",
        "07_text_q_networks_and_cold_start.ipynb",
        "Text Q-networks and cold start",
        "frozen MiniLM item vectors, text vs ID Q-networks on the platform's view, ridge warm start from the "
        "platform's BPR, cold-start films (5 seeds, held-out users; text ≥ 70% of its warm click rate, asserted), "
        "paired per-user intervals, serving rule (skip ignored films), text-shuffle ablation, occlusion explanations, "
        "TensorBoard logging; in the GPU profile a larger encoder (MPNet) against MiniLM",
    ),
    Chapter(
        "08",
        "08_finetuning_the_encoder_with_td.ipynb",
        "Fine-tuning the encoder with TD",
        "MiniLM's top layer trained through the TD loss, a frozen control on the same batches, paired warm/cold "
        "evaluation, feature drift, TensorBoard logging",
    ),
    Chapter(
        "09",
        "09_offline_rl_from_logs.ipynb",
        "Offline RL from logs",
        "logs as MDP transitions, SQN (a GRU next-film head plus a Q-learning head), extrapolation error and "
        "conservative Q-learning, Track B full ranking vs popularity and BPR, TensorBoard logging",
    ),
    Chapter(
        "10",
        "10_evaluation_and_comparison.ipynb",
        "Off-policy evaluation and the side-by-side comparison",
        "off-policy evaluation (DM, IPS, SNIPS, DR) vs simulator truth, language-model, CF and RL "
        "recommenders on 5 axes beside baselines and a labelled oracle, RL vs the best tuned heuristic "
        "(paired), exposure, shilling robustness, agents loaded from notebook 06's checkpoints",
    ),
)


def select(names=()) -> list[Chapter]:
    """The chapters whose file name starts with one of ``names`` ("03", "03_language...") -- all when empty."""
    chosen = [c for c in CHAPTERS if not names or any(c.file.startswith(n) or c.file[:-6] == n for n in names)]
    if not chosen:
        raise ValueError(f"no notebook matches {list(names)}; names are prefixes such as 03 or 03_language")
    return chosen


def repository_url() -> str:
    """The repository's address, declared once in ``pyproject.toml`` (``[project.urls] Repository``).

    Read from the checkout's pyproject.toml when there is one (so a retargeted fork needs no
    reinstall), else from the installed package's metadata (a wheel, Colab).
    """
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "recnb" and "Repository" in project.get("urls", {}):
            return project["urls"]["Repository"]
    urls = importlib.metadata.metadata("recnb").get_all("Project-URL") or []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip()
    raise LookupError("recnb's metadata has no Repository URL; reinstall it (`pip install -e .` in a checkout)")


def release_tag() -> str:
    """The git tag of this version's release, ``v<version>``: what the Colab install cells pin."""
    from . import __version__

    return f"v{__version__}"


def install_command(url: str | None = None, tag: str | None = None) -> str:
    """The Colab cells' install line: recnb only, pinned to the release tag (Colab keeps its torch)."""
    return f'%pip install -q "recnb @ git+{url or repository_url()}@{tag or release_tag()}"'


def colab_url(chapter: Chapter, ref: str = "main") -> str:
    """The address that opens ``chapter`` in Colab, from :func:`repository_url`."""
    path = repository_url().removeprefix("https://github.com/").rstrip("/")
    return f"https://colab.research.google.com/github/{path}/blob/{ref}/notebooks/{chapter.file}"


def load_runtimes(path: Path = RUNTIMES_FILE) -> dict:
    """The last recorded run: ``{"notebooks": {file: {"seconds", "date", "machine", "load"}}}``."""
    if not path.exists():
        return {"notebooks": {}}
    runtimes = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(runtimes.get("notebooks"), dict):
        raise ValueError(f"{path} has no 'notebooks' table; rerun scripts/run_notebooks.py --in-place")
    return runtimes


def minutes(chapter: Chapter, runtimes: dict | None = None) -> float | None:
    """Measured minutes of ``chapter`` (one decimal), or None when it has not been recorded."""
    entry = (runtimes or load_runtimes())["notebooks"].get(chapter.file)
    return None if entry is None else round(entry["seconds"] / 60, 1)


def total_minutes(runtimes: dict | None = None) -> float:
    """The whole workbook's measured minutes: the sum of the recorded notebooks' seconds."""
    runtimes = runtimes or load_runtimes()
    return round(sum(e["seconds"] for e in runtimes["notebooks"].values()) / 60, 1)


def chapter_table(runtimes: dict | None = None):
    """A DataFrame of the chapters with their measured minutes (notebook 00)."""
    import pandas as pd

    runtimes = runtimes or load_runtimes()
    return pd.DataFrame(
        [(c.file, c.title, minutes(c, runtimes)) for c in CHAPTERS], columns=["notebook", "title", "minutes"]
    )


def runs_described(runtimes: dict | None = None) -> str:
    """One sentence on how the recorded minutes were measured (dates, machines, load)."""
    entries = list((runtimes or load_runtimes())["notebooks"].values())
    if not entries:
        return "No run recorded yet: run `python scripts/run_notebooks.py --in-place`."
    dates = sorted({e["date"] for e in entries})
    machines = sorted({e["machine"] for e in entries})
    loads = [e["load"] for e in entries]
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    return (
        f"wall time of each notebook in the default profile, executed from a fresh kernel by "
        f"`scripts/run_notebooks.py --in-place` (the run that wrote the committed outputs) on {when}, "
        f"on {' / '.join(machines)}, 1-minute load average {min(loads):.1f} to {max(loads):.1f} "
        f"at each notebook's start"
    )


def readme_table(runtimes: dict | None = None) -> str:
    """The README's chapter table (markdown), badges from :func:`colab_url`, minutes from runtimes.json."""
    runtimes = runtimes or load_runtimes()
    rows = ["| # | notebook | Colab | min | concepts |", "|---|---|---|---|---|"]
    for c in CHAPTERS:
        m = minutes(c, runtimes)
        badge = f"[![Open In Colab]({COLAB_BADGE})]({colab_url(c)})"
        rows.append(
            f"| {c.number} | [{c.title}](notebooks/{c.file}) | {badge} | "
            f"{'n/a' if m is None else f'{m:.1f}'} | {c.concepts} |"
        )
    return "\n".join(rows)


def record_runtimes(measured: dict, *, date: str, machine: str, path: Path = RUNTIMES_FILE) -> None:
    """Merge ``{file: (seconds, load)}`` into ``path`` atomically (scripts/run_notebooks.py --in-place)."""
    known = {c.file for c in CHAPTERS}
    unknown = sorted(set(measured) - known)
    if unknown:
        raise ValueError(f"{unknown} are not chapters; add them to recnb.chapters.CHAPTERS first")
    runtimes = load_runtimes(path)
    for file, (seconds, load) in measured.items():
        runtimes["notebooks"][file] = {
            "seconds": round(float(seconds), 1),
            "date": date,
            "machine": machine,
            "load": round(float(load), 2),
        }
    runtimes["notebooks"] = {c.file: runtimes["notebooks"][c.file] for c in CHAPTERS if c.file in runtimes["notebooks"]}
    atomic_write(path, (json.dumps(runtimes, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
