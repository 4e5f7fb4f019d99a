"""Run inside a virtual environment that holds an installed `recnb` (never the repository's copy).

``python install_check.py NOTEBOOK_DIR`` imports every module of the package, every module the
notebooks import, and runs one tiny pipeline: load MovieLens (offline copy, empty data directory),
evaluate a model, step the platform environment, make one DQN update. tests/test_install.py runs it
in a fresh venv built from the wheel and in a simulated Colab runtime; it prints one line per stage.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import sys
from pathlib import Path


def notebook_imports(folder: Path) -> dict[str, set[str]]:
    """The top-level modules each notebook imports (IPython magics and shell lines left out)."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        modules: set[str] = set()
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            # a magic or shell line becomes `pass` at the same indent, so the cell still parses
            code = "\n".join(
                line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
                for line in source.splitlines()
            )
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Import):
                    modules.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module)
        found[path.name] = modules
    return found


def import_everything(notebooks: Path) -> None:
    import recnb

    location = Path(recnb.__file__).resolve()
    assert "site-packages" in location.parts, f"recnb imported from {location}, not from the installed package"
    names = [m.name for m in pkgutil.walk_packages(recnb.__path__, "recnb.")]
    for name in names:
        importlib.import_module(name)
    print(f"imported {len(names)} recnb modules from {location.parent}")
    for notebook, modules in notebook_imports(notebooks).items():
        for module in sorted(modules):
            if module.startswith("google.colab"):  # Colab's own module: present only on Colab
                continue
            importlib.import_module(module)
        print(f"{notebook}: {len(modules)} imports ok")


def widgets() -> None:
    """Build each kind of widget the notebooks use (Colab ships ipywidgets 7, JupyterLab 4 needs 8)."""
    import ipywidgets as w

    out = w.Output()
    slider = w.FloatSlider(value=1.0, min=0.0, max=2.0, layout=w.Layout(width="300px"))
    shown = w.interactive_output(
        lambda x, k, name: None, {"x": slider, "k": w.IntSlider(3, 1, 5), "name": w.Dropdown(options=["a", "b"])}
    )
    w.VBox([slider, w.FloatLogSlider(value=0.1, base=10, min=-3, max=0), w.Text("query"), shown, out])
    w.interactive(lambda n=1: n, n=(0, 3))  # what interact() builds, without displaying it
    print(f"ipywidgets {w.__version__}: every widget kind the notebooks use builds")


def tiny_pipeline() -> None:
    import torch

    from recnb.agents.dqn import DQN, DQNConfig
    from recnb.baselines import PopularityRecommender
    from recnb.calibration import calibrate
    from recnb.data import load_movielens
    from recnb.metrics import split_evaluator
    from recnb.platform import PlatformEnv, PlatformModel
    from recnb.simulator import SimulatorConfig, UserSimulator
    from recnb.splits import split_random

    ml = load_movielens("100k", progress=False)
    assert (len(ml.ratings), ml.n_users, ml.n_items) == (100_000, 943, 1_682)
    split = split_random(ml.indexed(), seed=0)
    model = PopularityRecommender(ml.n_users, ml.n_items).fit(split.train)
    ndcg = split_evaluator(split, "test", ml.n_users, ml.n_items).evaluate(model).metrics["NDCG@10"]
    assert 0.05 < ndcg < 0.5, ndcg
    print(f"MovieLens loaded into {ml_location()}; popularity NDCG@10 = {ndcg:.3f}")

    few = ml.ratings[ml.ratings["user_id"] <= 60]  # a small calibration: this checks mechanics, not fidelity
    calibration = calibrate(few, ml.items, dim=4, seed=0)
    sim = UserSimulator(calibration, SimulatorConfig(horizon=6))
    gen = torch.Generator().manual_seed(0)
    platform = PlatformModel(
        torch.randn(sim.n_calibration_users, 4, generator=gen),
        torch.randn(sim.n_items, 4, generator=gen),
        torch.zeros(sim.n_items),
        calibration.item_genres.clone(),
        calibration.item_popularity.clone(),
        [t for t in calibration.train_items],
    )
    env = PlatformEnv(sim, platform)
    config = DQNConfig(total_steps=64, n_envs=8, buffer_size=64, batch_size=16, learning_starts=16, device="cpu")
    agent = DQN(env, config)
    agent.train(progress=False)
    assert agent.env_steps == 64 and agent.updates > 0, (agent.env_steps, agent.updates)
    print(f"platform env stepped {agent.env_steps} times; DQN made {agent.updates} updates")


def ml_location() -> str:
    from recnb import config

    return str(config.data_dir(create=False))


if __name__ == "__main__":
    import_everything(Path(sys.argv[1]))
    widgets()
    tiny_pipeline()
    print("install check passed")
