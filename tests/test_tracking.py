"""recnb.tracking: scalars and hparams round-trip through TensorBoard event files, fan-out, and a live board."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from recnb import tracking


def _hparams(logdir):
    """The hyperparameters TensorBoard's HPARAMS plugin reads from ``logdir``'s event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}


def test_scalars_round_trip_through_event_files(tmp_path):
    with tracking.RunLogger(tmp_path / "runs" / "a") as logger:
        for step in range(3):
            logger.log(step, **{"train/loss": 1.0 / (step + 1), "valid/NDCG@10": 0.1 * step})
    with tracking.RunLogger(tmp_path / "runs" / "b") as logger:
        logger.log(5, **{"train/loss": 0.25})
    frame = tracking.read_scalars(tmp_path / "runs")
    assert list(frame.columns) == ["run", "tag", "step", "value"]
    loss_a = frame[(frame.run == "a") & (frame.tag == "train/loss")]
    assert loss_a.step.tolist() == [0, 1, 2]
    assert loss_a.value.tolist() == pytest.approx([1.0, 0.5, 1 / 3], rel=1e-6)  # stored as float32
    assert frame[frame.run == "b"][["tag", "step", "value"]].values.tolist() == [["train/loss", 5, 0.25]]
    assert set(frame.tag) == {"train/loss", "valid/NDCG@10"}


def test_hparams_are_written_with_final_metrics(tmp_path):
    with tracking.RunLogger(tmp_path, hparams={"seed": 3}) as logger:
        logger.log(0, **{"train/loss": 1.0})
        logger.log_hparams(
            {"lr": 0.01, "hidden": (64, 32), "text": None}, {"final/NDCG": 0.4, "final/bad": float("nan")}
        )
    assert _hparams(tmp_path) == {"seed": 3, "lr": 0.01, "hidden": "(64, 32)", "text": "None"}
    frame = tracking.read_scalars(tmp_path)
    assert frame.run.unique().tolist() == ["."]  # the hparams stay in the run's own folder
    assert "final/NDCG" in set(frame.tag) and "final/bad" not in set(frame.tag)  # NaN metrics are left out


def test_hparams_of_flattens_a_config():
    from recnb.baselines import NeuMFConfig

    h = tracking.hparams_of(NeuMFConfig(threads=None))
    assert h["hidden"] == "(64, 32)" and h["threads"] == "None" and h["lr"] == 2e-3 and h["progress"] is True


def test_combine_fans_out_in_order_and_checks_its_loggers():
    calls = []
    first = tracking.CallbackLogger(lambda step, s: calls.append(("first", step, s)))
    second = tracking.CallbackLogger(
        lambda step, s: calls.append(("second", step, s)), on_hparams=lambda h, m: calls.append(("hp", h, m))
    )
    both = tracking.combine(first, None, second)
    both.log(4, **{"train/loss": 0.5})
    both.log_hparams({"lr": 1}, {"final/x": 2.0})
    both.close()
    assert calls == [
        ("first", 4, {"train/loss": 0.5}),
        ("second", 4, {"train/loss": 0.5}),
        ("hp", {"lr": 1}, {"final/x": 2.0}),
    ]
    with pytest.raises(TypeError, match="not a logger"):
        tracking.combine(first, object())


def test_exceptions_raised_by_a_logger_propagate():
    class Stop(Exception):
        pass

    def prune(step, scalars):
        raise Stop(step)

    with pytest.raises(Stop):
        tracking.combine(tracking.CallbackLogger(prune)).log(1, **{"valid/NDCG@10": 0.1})


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        tracking.RunLogger(tmp_path, backend="mlflow")
    logger = tracking.RunLogger(tmp_path)
    with pytest.raises(ValueError, match="step"):
        logger.log(-1, **{"train/loss": 1.0})
    with pytest.raises(TypeError, match="number"):
        logger.log(0, **{"train/loss": "low"})
    logger.close()
    with pytest.raises(RuntimeError, match="closed"):
        logger.log(0, **{"train/loss": 1.0})
    with pytest.raises(FileNotFoundError, match="RunLogger"):
        tracking.read_scalars(tmp_path / "missing")


def test_wandb_backend_names_the_install_when_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail, installed or not
    with pytest.raises(ImportError, match="pip install wandb"):
        tracking.RunLogger(tmp_path, backend="wandb")


def test_run_dir(tmp_path):
    from recnb import config

    assert tracking.run_dir("06", "dqn-seed0", root=tmp_path) == tmp_path / "runs" / "06" / "dqn-seed0"
    expected_root = config.REPO_DIR if config.in_checkout() else Path.cwd()
    assert tracking.run_dir("02", "bpr") == expected_root / "runs" / "02" / "bpr"
    for bad in ("", "a/b", "..", 3):
        with pytest.raises(ValueError, match="plain folder name"):
            tracking.run_dir(bad, "x")


def test_plot_scalars_draws_a_panel_per_tag(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    for run in ("a", "b"):
        with tracking.RunLogger(tmp_path / run) as logger:
            for step in range(3):
                logger.log(step, **{"train/loss": step, "train/lr": 0.1})
    frame = tracking.read_scalars(tmp_path)
    fig = tracking.plot_scalars(frame, ["train/loss", "train/lr"])
    assert [ax.get_title() for ax in fig.axes] == ["train/loss", "train/lr"]
    assert len(fig.axes[0].lines) == 2  # one line per run
    with pytest.raises(KeyError, match="valid/NDCG@10"):
        tracking.plot_scalars(frame, ["valid/NDCG@10"])


def test_live_frontend_only_in_a_kernel_with_a_front_end(monkeypatch):
    import IPython

    assert tracking.live_frontend() is False  # pytest: no kernel at all

    class Shell:
        kernel = object()

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert tracking.live_frontend() is False  # a kernel started by nbclient / nbval: headless
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/notebooks/06_deep_q_networks.ipynb")
    assert tracking.live_frontend() is True  # a kernel a Jupyter server started for an open notebook
    monkeypatch.delenv("JPY_SESSION_NAME")
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert tracking.live_frontend() is True  # Colab


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_live_tensorboard_serves_the_logged_tags(tmp_path):
    with tracking.RunLogger(tmp_path / "bpr") as logger:
        for step in range(3):
            logger.log(step, **{"train/loss": 1.0 - 0.1 * step, "valid/NDCG@10": 0.2})
    port = _free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    server = subprocess.Popen(
        [exe, "--logdir", str(tmp_path), "--port", str(port), "--host", "127.0.0.1", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, body = time.monotonic() + 90, None
        while time.monotonic() < deadline and body is None:
            try:
                url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
                with urllib.request.urlopen(url, timeout=5) as response:
                    tags = json.loads(response.read())
                body = tags if tags.get("bpr") else None  # served, and the run has been loaded
            except OSError:
                pass
            if body is None:
                assert server.poll() is None, "tensorboard exited before serving"
                time.sleep(0.5)
        assert body is not None, "tensorboard did not serve the run within 90 s"
        assert {"train/loss", "valid/NDCG@10"} <= set(body["bpr"])
    finally:
        server.terminate()
        server.wait(timeout=30)
