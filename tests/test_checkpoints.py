"""recnb.checkpoints: safetensors files with config and fingerprint, atomic writes, and what loading refuses."""

import json
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from recnb import checkpoints as C


@dataclass(frozen=True)
class Cfg:
    width: int = 3
    name: str = "net"


def _read_header(path):
    """The safetensors JSON header, read by hand: the file holds tensors and strings, nothing executable."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size])


def test_round_trip_keeps_tensors_config_fingerprint_and_extra(tmp_path):
    net = torch.nn.Linear(3, 2)
    path = C.save_checkpoint(tmp_path / "a" / "net.safetensors", net, Cfg(), {"catalogue": 40}, {"updates": 7})
    assert [p.name for p in path.parent.iterdir()] == ["net.safetensors"]  # no temporary file left behind
    header = _read_header(path)
    assert header["__metadata__"]["format"] == C.FORMAT and set(header) == {"__metadata__", "weight", "bias"}
    ckpt = C.load_checkpoint(path, expected_fingerprint={"catalogue": 40})
    assert ckpt.config == {"width": 3, "name": "net"} and ckpt.extra == {"updates": 7}
    assert ckpt.fingerprint == {"catalogue": 40}
    for key, value in net.state_dict().items():
        assert torch.equal(ckpt.tensors[key], value)


def test_a_different_fingerprint_is_refused_naming_what_differs(tmp_path):
    path = C.save_checkpoint(tmp_path / "n.safetensors", {"w": torch.ones(2)}, {}, {"catalogue": 40, "sim": "abc"})
    with pytest.raises(C.CheckpointMismatch) as err:
        C.load_checkpoint(path, expected_fingerprint={"catalogue": 1682, "sim": "abc", "data": "split 0"})
    message = str(err.value)
    assert "catalogue: trained on 40, now 1682" in message
    assert "data: trained on '(not recorded)', now 'split 0'" in message
    assert "sim:" not in message  # entries that match are not named
    assert isinstance(err.value, ValueError)


def test_missing_foreign_and_corrupt_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="save"):
        C.load_checkpoint(tmp_path / "none.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.ones(1)}, str(tmp_path / "foreign.safetensors"), metadata={"format": "other"})
    with pytest.raises(ValueError, match="not a recnb checkpoint"):
        C.load_checkpoint(tmp_path / "foreign.safetensors")
    (tmp_path / "torn.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="delete it"):
        C.load_checkpoint(tmp_path / "torn.safetensors")


def test_digest_is_stable_and_sensitive():
    table = torch.arange(6.0).reshape(2, 3)
    assert C.digest(table, Cfg(), [np.arange(3)], None) == C.digest(table.clone(), Cfg(), [np.arange(3)], None)
    assert len(C.digest(table)) == 16
    bumped = table.clone()
    bumped[1, 2] += 1e-6
    assert C.digest(bumped) != C.digest(table)
    assert C.digest(table.double()) != C.digest(table)  # dtype matters
    assert C.digest(table.reshape(3, 2)) != C.digest(table)  # shape matters
    assert C.digest(Cfg(width=4)) != C.digest(Cfg())
    with pytest.raises(TypeError, match="fingerprint"):
        C.digest(object())


def test_optimizer_state_round_trips(tmp_path):
    def make():
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 1)
        return net, torch.optim.Adam(net.parameters(), lr=0.1)

    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def step(net, opt):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()

    net, opt = make()
    for _ in range(3):
        step(net, opt)
    path = C.save_training_state(tmp_path / "t.safetensors", {"net": net}, opt, Cfg(), {"k": 1})
    net2, opt2 = make()
    C.restore_training_state(C.load_checkpoint(path), {"net": net2}, opt2)
    step(net, opt), step(net2, opt2)  # the same Adam moments give the same next step
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), net2.parameters()))


def test_keep_best_restores_the_best_weights():
    net = torch.nn.Linear(2, 1)
    keeper = C.KeepBest({"net": net})
    assert keeper.restore() is False
    torch.nn.init.constant_(net.weight, 1.0)
    assert keeper.offer(0.5, update=10)
    torch.nn.init.constant_(net.weight, 2.0)
    assert not keeper.offer(0.4) and not keeper.offer(float("nan"))
    assert keeper.restore() and torch.equal(net.weight, torch.ones(1, 2))
    assert keeper.info == {"score": 0.5, "update": 10}


def test_disjoint_users_are_required():
    class Env:
        def __init__(self, pool):
            self.pool = None if pool is None else torch.tensor(pool)

    C.check_disjoint_users(Env([0, 1, 2]), Env([3, 4]))
    for train, valid in (([0, 1, 2], [2, 3]), (None, [3]), ([0], None)):
        with pytest.raises(ValueError, match="disjoint"):
            C.check_disjoint_users(Env(train), Env(valid))


def test_load_or_build_builds_once_then_loads(tmp_path):
    path, built = tmp_path / "agent.safetensors", []

    def build():
        built.append(1)
        return C.save_checkpoint(path, {"w": torch.full((2,), float(len(built)))}, {}, {"v": 1})

    def load(p):
        return C.load_checkpoint(p, expected_fingerprint={"v": 1})

    assert C.load_or_build(path, load, build) == path  # nothing there: built
    assert torch.equal(C.load_or_build(path, load, build).tensors["w"], torch.ones(2)) and len(built) == 1
    C.save_checkpoint(path, {"w": torch.zeros(2)}, {}, {"v": 2})  # stale: trained on something else
    with pytest.warns(UserWarning, match="cannot be used.*v: trained on 2, now 1"):
        C.load_or_build(path, load, build)
    assert len(built) == 2
    path.write_bytes(b"garbage")  # corrupt
    with pytest.warns(UserWarning, match="cannot be used"):
        C.load_or_build(path, load, build)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # now intact and matching: loaded quietly
        assert torch.equal(C.load_or_build(path, load, build).tensors["w"], torch.full((2,), 3.0))


# ---------------------------------------------------------------- DQN checkpoints, fingerprint and validation


def _sim(n_items=40, **config):
    from test_dqn import synthetic_simulator

    return synthetic_simulator(n_items=n_items, **config)


def _env(base, users=None, **config):
    """A platform env with its own simulator (same calibration and platform as ``base``) drawing from ``users``."""
    from recnb.platform import PlatformEnv
    from recnb.simulator import SimulatorConfig

    sim = base.sim.with_config(SimulatorConfig(**{"horizon": 20, **config}))
    return PlatformEnv(sim, base.platform, users=users)


def _config(**kw):
    from recnb.agents.dqn import DQNConfig

    return DQNConfig(
        **{"total_steps": 320, "n_envs": 32, "buffer_size": 640, "batch_size": 32, "learning_starts": 64, **kw},
        device="cpu",
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A DQN trained for 320 steps on the synthetic simulator, and its checkpoint."""
    from recnb.agents.dqn import DQN

    base = _sim()
    agent = DQN(_env(base), _config())
    agent.train(progress=False)
    path = agent.save(tmp_path_factory.mktemp("ckpt") / "dqn.safetensors")
    return base, agent, path


def test_dqn_checkpoint_round_trips_the_q_values(trained):
    from recnb.agents.dqn import DQN
    from recnb.platform import observe_platform

    base, agent, path = trained
    loaded = DQN.load(path, _env(base))
    for name, net in agent.networks().items():
        for (k, v), (k2, v2) in zip(net.state_dict().items(), loaded.networks()[name].state_dict().items()):
            assert k == k2 and torch.equal(v, v2)
    env = _env(base)
    env.reset(16, seed=3)
    obs = observe_platform(env)
    assert torch.equal(agent.q_values(obs), loaded.q_values(obs))
    assert (loaded.env_steps, loaded.updates, loaded.config) == (agent.env_steps, agent.updates, agent.config)


def test_dqn_checkpoint_resumes_training(trained):
    from recnb.agents.dqn import DQN

    base, agent, path = trained
    loaded = DQN.load(path, _env(base), total_steps=640)
    mine, theirs = agent.optimizer.state_dict()["state"], loaded.optimizer.state_dict()["state"]
    assert all(torch.equal(mine[k]["exp_avg"], theirs[k]["exp_avg"]) for k in mine)
    assert [g["lr"] for g in loaded.optimizer.param_groups] == [g["lr"] for g in agent.optimizer.param_groups]
    loaded.train(progress=False)  # from step 320 to 640
    assert loaded.env_steps == 640 and loaded.updates > agent.updates


def test_dqn_load_errors_name_the_fix(trained, tmp_path):
    from recnb.agents.dqn import DQN

    base, _, path = trained
    with pytest.raises(FileNotFoundError, match="save"):
        DQN.load(tmp_path / "missing.safetensors", _env(base))
    with pytest.raises(TypeError, match="unknown DQNConfig fields"):
        DQN.load(path, _env(base), learning_rat=1.0)


def test_dqn_load_refuses_another_catalogue_observation_or_simulator(trained):
    from recnb.agents.dqn import DQN
    from recnb.agents.observe import restricted_observe

    base, _, path = trained
    with pytest.raises(C.CheckpointMismatch, match="catalogue: trained on 40, now 30"):
        DQN.load(path, _env(_sim(n_items=30)))
    with pytest.raises(C.CheckpointMismatch, match="simulator: trained on"):
        DQN.load(path, _env(base, long_term=False))
    with pytest.raises(C.CheckpointMismatch, match="observation: trained on 'observe_platform: "):
        DQN.load(path, _env(base), observe=restricted_observe(), fatigue_term=False)
    with pytest.raises(C.CheckpointMismatch, match="data: trained on '\\(not recorded\\)', now 'split 1'"):
        DQN.load(path, _env(base), fingerprint={"data": "split 1"})


def test_dqn_load_or_train_trains_once_then_loads(tmp_path, monkeypatch):
    from recnb.agents.dqn import DQN

    base, path = _sim(), tmp_path / "agents" / "dqn.safetensors"
    config = _config(total_steps=128)
    first = DQN.load_or_train(path, _env(base), config, fingerprint={"data": "synthetic"}, progress=False)
    assert path.is_file() and first.env_steps == 128

    def no_training(self, **kw):
        raise AssertionError("a matching checkpoint was there: nothing should train")

    with monkeypatch.context() as m:
        m.setattr(DQN, "train", no_training)
        again = DQN.load_or_train(path, _env(base), config, fingerprint={"data": "synthetic"}, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.online.parameters(), again.online.parameters()))
    with pytest.warns(UserWarning, match="other DQNConfig values for \\['seed'\\]"):
        other = DQN.load_or_train(path, _env(base), _config(total_steps=128, seed=1), progress=False)
    assert other.config.seed == 1 and C.load_checkpoint(path).config["seed"] == 1  # retrained and saved


def _split(base):
    return _env(base, users=np.arange(0, 20)), _env(base, users=np.arange(20, 30))


def test_validation_keeps_and_reloads_the_best_weights(tmp_path):
    from recnb.agents.dqn import DQN
    from recnb.tracking import CallbackLogger

    base = _sim()
    train_env, valid_env = _split(base)
    scores = []
    logger = CallbackLogger(lambda step, s: scores.append(s["valid/return"]) if "valid/return" in s else None)
    agent = DQN(train_env, _config(total_steps=640, eval_every=4, eval_users=64))
    agent.train(progress=False, logger=logger, valid_env=valid_env, checkpoint=tmp_path / "best.safetensors")
    assert len(scores) == agent.updates // 4 + 1  # every 4 updates, and the last weights
    assert agent.best["score"] == max(scores)
    assert agent.validate(valid_env) == agent.best["score"]  # the best weights are the ones kept
    best = DQN.load(tmp_path / "best.safetensors", _env(base, users=np.arange(0, 20)))
    assert best.updates == agent.best["update"] and best.validate(valid_env) == agent.best["score"]


def test_validation_leaves_the_training_run_unchanged():
    from recnb.agents.dqn import DQN

    base = _sim()
    plain = DQN(_split(base)[0], _config(total_steps=640, log_every=2))
    plain.train(progress=False)
    train_env, valid_env = _split(base)
    validated = DQN(train_env, _config(total_steps=640, log_every=2, eval_every=3, eval_users=16))
    validated.train(progress=False, valid_env=valid_env)
    assert validated.log["loss"] == pytest.approx(plain.log["loss"], nan_ok=True, rel=0, abs=0)


def test_validation_needs_its_own_disjoint_users():
    from recnb.agents.dqn import DQN

    base = _sim()
    train_env, valid_env = _split(base)
    with pytest.raises(ValueError, match="eval_every"):
        DQN(train_env, _config()).train(progress=False, valid_env=valid_env)
    agent = DQN(train_env, _config(eval_every=2))
    with pytest.raises(ValueError, match="valid_env"):
        agent.train(progress=False)
    with pytest.raises(ValueError, match="disjoint"):
        agent.train(progress=False, valid_env=_env(base, users=np.arange(15, 25)))
    with pytest.raises(ValueError, match="its own simulator"):
        agent.train(progress=False, valid_env=train_env)
