import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import torch

from news_ai_assets.compute import encoder as encoder_module
from news_ai_assets.compute.encoder import EmbeddingModelError, Encoder, EncoderSpec, load_encoder, resolve_device
from news_ai_assets.compute.news_features import combined_text
from news_ai_assets.mind.reader import discover_splits, read_news
from news_ai_assets.resources import EmbeddingModel
from news_ai_assets_tests.conftest import pipeline_resources
from news_ai_assets_tests.pipeline import materialize, read_table
from news_ai_assets_tests.raw import article_text, day_articles, encoded, raw_mind


def test_auto_picks_the_cpu_on_a_cpu_only_machine():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"


def test_unavailable_or_unknown_devices_are_clear_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EmbeddingModelError, match="'cuda' was requested .* can't use it; available: .*cpu"):
        resolve_device("cuda")
    with pytest.raises(EmbeddingModelError, match="not one of auto, mps, cuda, cpu"):
        resolve_device("tpu")


def test_auto_prefers_mps_then_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"


def test_unsupported_options_are_refused(monkeypatch):
    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(EmbeddingModelError, match="native bfloat16"):
        Encoder(EncoderSpec(device="cpu", precision="bf16"))
    with pytest.raises(EmbeddingModelError, match="not one of fp32, bf16, fp16"):
        Encoder(EncoderSpec(device="cpu", precision="int4"))
    with pytest.raises(EmbeddingModelError, match="'fp16' runs on CUDA and MPS GPUs, not on the CPU"):
        Encoder(EncoderSpec(device="cpu", precision="fp16"))
    with pytest.raises(EmbeddingModelError, match="'fp16' runs on CUDA and MPS GPUs, not on the CPU"):
        Encoder(EncoderSpec(device="cpu", backend="openvino", precision="fp16"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(EmbeddingModelError, match="openvino backend runs on the CPU"):
        Encoder(EncoderSpec(device="cuda", backend="openvino"))


def test_a_model_that_cannot_load_fails_with_the_reason(tmp_path):
    with pytest.raises(EmbeddingModelError, match="could not load the embedding model"):
        Encoder(EncoderSpec(model=str(tmp_path / "no-such-model"), device="cpu"))


@pytest.fixture(scope="module")
def real_texts():
    from news_ai_assets_tests.conftest import REAL_SUBSET

    if not (REAL_SUBSET / "MINDsmall_train" / "news.tsv").exists():
        pytest.skip("real MIND rows not found")
    news = read_news(discover_splits(REAL_SUBSET))[0]
    texts = news.select(combined_text(pl.col("title"), pl.col("abstract"))).to_series().to_list()
    return texts[:160] + [""]  # and an empty text (an article without title or abstract)


@pytest.fixture(scope="module")
def direct_encode(real_texts):
    """What sentence-transformers itself gives, with nothing of ours in between."""
    return encoded(real_texts)


# The README's fidelity table, bound for bound.
OPTIONS = [("torch", "fp32", 0.999999), ("openvino", "fp32", 0.99999), ("torch", "bf16", 0.9999), ("openvino", "bf16", 0.9999)]


@pytest.mark.parametrize(("backend", "precision", "min_cosine"), OPTIONS)
def test_real_news_match_a_direct_encode(real_texts, direct_encode, backend, precision, min_cosine):
    if precision == "bf16" and not encoder_module.cpu_has_native_bf16():
        pytest.skip("no native bf16 on this CPU")
    encoder = load_encoder(EncoderSpec(device="cpu", backend=backend, precision=precision))
    vectors = np.concatenate(list(encoder.encode(real_texts, batch_size=16, chunk_size=64)))
    assert vectors.dtype == np.float32 and vectors.shape == (len(real_texts), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * direct_encode).sum(axis=1).min() >= min_cosine


def test_the_batch_tokenizer_gives_what_the_transformers_tokenizer_gives(real_texts):
    encoder = load_encoder(EncoderSpec(device="cpu"))
    long_text = " ".join(real_texts[:20])  # past max_seq_length: truncated
    texts = [long_text, *real_texts, "", "Ünïcödé — digits 2019, punctuation!?"]
    ours = encoder_module.BatchTokenizer.of(encoder.model.tokenizer, encoder.model.max_seq_length)(texts)
    theirs = encoder.model.tokenizer(
        texts, padding=True, truncation=True, max_length=encoder.model.max_seq_length, return_tensors="np"
    )
    assert set(ours) == {"input_ids", "attention_mask", "token_type_ids"}
    assert ours["input_ids"].shape == (len(texts), encoder.model.max_seq_length)
    for name, ids in ours.items():
        np.testing.assert_array_equal(ids, theirs[name])


def test_the_converted_openvino_model_is_cached_at_full_precision_and_gives_the_same_vectors(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWS_AI_OPENVINO_CACHE", str(tmp_path))
    texts = ["Markets rally as rates fall", "", "A long abstract " * 40, "Ünïcödé — digits 2019!"]
    spec = EncoderSpec(device="cpu", backend="openvino")
    converted = np.concatenate(list(Encoder(spec).encode(texts)))
    (cached,) = [folder for folder in tmp_path.iterdir() if folder.name != "loaded-from"]  # beside it: _SavedModel's notes
    assert (cached / "model.bin").stat().st_size > 4 * 22_000_000  # 22.7 M parameters as float32, not fp16
    read_back = np.concatenate(list(Encoder(spec).encode(texts)))
    np.testing.assert_array_equal(converted, read_back)


_LOAD = """
import json, sys
import numpy as np
from news_ai_assets.compute.encoder import Encoder, EncoderSpec
encoder = Encoder(EncoderSpec(model=sys.argv[1], device="cpu", backend="openvino"))
vectors = np.concatenate(list(encoder.encode(["Markets rally as rates fall", "", "A long abstract " * 200, "Ünïcödé 2019!"])))
print(json.dumps({"full": encoder.model is not None, "torch": "torch" in sys.modules, "vectors": vectors.tolist()}))
"""


def test_an_openvino_model_loaded_before_loads_without_torch_and_gives_the_same_vectors(tmp_path):
    """The full load (sentence-transformers, torch: ~5 s of imports) notes what it gave; a later process
    with the very same model files reads the note and the converted model alone, and gives the very
    same vectors. A changed file of the model's folder finds no note and takes the full load again."""
    def load(model: Path) -> dict:
        done = subprocess.run([sys.executable, "-c", _LOAD, str(model)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "NEWS_AI_OPENVINO_CACHE": str(tmp_path / "cache")})
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.splitlines()[-1])

    model = tmp_path / "model"
    shutil.copytree(encoder_module.model_location(encoder_module.DEFAULT_MODEL), model)
    first, again = load(model), load(model)
    assert (first["full"], first["torch"]) == (True, True) and (again["full"], again["torch"]) == (False, False)
    np.testing.assert_array_equal(np.array(first["vectors"]), np.array(again["vectors"]))
    config = model / "sentence_bert_config.json"
    config.write_text(config.read_text() + " ")
    assert load(model)["full"] and not load(model)["full"]


def test_the_batch_size_defaults_to_the_devices_and_configuration_wins(real_texts):
    encoder = load_encoder(EncoderSpec(device="cpu"))
    assert encoder.default_batch_size == encoder_module.DEFAULT_BATCH_SIZES["cpu"] == 32
    assert encoder_module.DEFAULT_BATCH_SIZES["cuda"] > encoder_module.DEFAULT_BATCH_SIZES["mps"] > 32
    default = np.concatenate(list(encoder.encode(real_texts)))
    small_batches = np.concatenate(list(encoder.encode(real_texts, batch_size=5, chunk_size=40)))
    np.testing.assert_allclose(default, small_batches, atol=1e-6)


EMBEDDING_GRAPH = ["bronze/behaviors", "bronze/news", "features/text_embeddings"]


def _embedding_metadata(result) -> dict:
    metadata = result.asset_materializations_for_node("features__text_embeddings")[0].metadata
    return {k.removeprefix("run_"): v.value for k, v in metadata.items()}


def test_each_text_is_embedded_once_ever(tmp_path, tiny_mind):
    db = tmp_path / "e.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    first = _embedding_metadata(materialize(db, tiny_mind, "2019-11-12", selection=EMBEDDING_GRAPH, instance=instance))
    assert first["newly_embedded"] == first["distinct_texts"] > 0 and first["cache_hits"] == 0
    stored = read_table(db, "features.text_embeddings")
    again = _embedding_metadata(materialize(db, tiny_mind, "2019-11-12", selection=EMBEDDING_GRAPH, instance=instance))
    assert again["newly_embedded"] == 0 and again["device"].startswith("not loaded")
    assert read_table(db, "features.text_embeddings").equals(stored)
    next_day = _embedding_metadata(materialize(db, tiny_mind, "2019-11-13", selection=EMBEDDING_GRAPH, instance=instance))
    assert 0 < next_day["cache_hits"] and next_day["newly_embedded"] < next_day["distinct_texts"]
    assert read_table(db, "features.embedding_cache").height == first["distinct_texts"] + next_day["newly_embedded"]

    assert stored.schema["embedding"] == pl.List(pl.Float32)
    assert (stored.get_column("embedding").list.len() == 384).all()
    vectors = stored.get_column("embedding").list.to_array(384).to_numpy()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    news = read_table(db, "bronze.news").filter(pl.col("date") == stored.get_column("date")[0])
    assert sorted(stored.get_column("news_id")) == sorted(news.get_column("news_id"))


def test_each_stored_vector_is_the_encoders_vector_of_its_own_articles_text(tmp_path, tiny_mind):
    """Against sentence-transformers itself on the text read from the raw news.tsv: a vector stored
    under another article's id, or of another text, fails; to the README's 1e-6 per component."""
    db, days = tmp_path / "v.duckdb", [dt.date(2019, 11, 12), dt.date(2019, 11, 13)]
    materialize(db, tiny_mind, str(days[0]), str(days[-1]), selection=EMBEDDING_GRAPH)
    stored = read_table(db, "features.text_embeddings")
    behaviors, news = raw_mind(tiny_mind)
    for day in days:
        articles = day_articles(behaviors, news, day)
        on_day = stored.filter(pl.col("date") == day).sort("news_id")
        assert on_day.get_column("news_id").to_list() == sorted(articles)
        texts = [article_text(articles[n]) for n in on_day.get_column("news_id")]
        assert len(set(texts)) == len(texts) > 10  # distinct texts: a swap of two vectors cannot go unseen
        np.testing.assert_allclose(on_day.get_column("embedding").list.to_array(384).to_numpy(), encoded(texts), atol=1e-6)


def test_vectors_of_different_options_never_mix(tmp_path, tiny_mind):
    db = tmp_path / "e.duckdb"
    resources = pipeline_resources(db, tiny_mind)
    from news_ai_assets.definitions import all_assets

    for backend in ["torch", "openvino"]:
        resources["embedding_model"] = EmbeddingModel(device="cpu", backend=backend)
        result = dg.materialize(all_assets, selection=EMBEDDING_GRAPH, resources=resources, partition_key="2019-11-12")
        assert _embedding_metadata(result)["cache_hits"] == 0
    keys = read_table(db, "features.embedding_cache").get_column("cache_key").unique().sort().to_list()
    assert len(keys) == 2 and "openvino" in keys[0] + keys[1]
