import os
import tempfile
from pathlib import Path

import pytest

# The tiny sample has ~15 impressions a day: one active user without any history moves a day's share of
# rows without cross features by ~5%, past the 5% default. Set before the settings load (subprocesses inherit it).
os.environ.setdefault("NEWS_AI_MAX_MISSING_CROSS_SHARE", "0.2")

from dagster_deltalake import LocalConfig, S3Config

from benchmarks.servers import s3_emulator
from news_ai_assets.mind import sample
from news_ai_assets.resources import EmbeddingModel, MindSource
from news_ai_assets.storage.delta_tables import DeltaDatabase, DeltaPolarsIOManager
from news_ai_assets.storage.duckdb_file import DuckDBDatabase, DuckDBPolarsIOManager

# Converted OpenVINO models go to a folder of the test session, not the user's cache (subprocesses inherit it).
os.environ.setdefault("NEWS_AI_OPENVINO_CACHE", tempfile.mkdtemp(prefix="news_ai_openvino_"))
REAL_SUBSET = Path(os.environ.get("NEWS_AI_REAL_SUBSET", Path(__file__).resolve().parents[2] / "shared" / "mind_real_subset"))


@pytest.fixture(scope="session")
def tiny_mind(tmp_path_factory) -> Path:
    """The tiny generated sample, MINDsample_{train,dev,test} over 2019-11-09..22."""
    root = tmp_path_factory.mktemp("tiny_mind")
    sample.generate(root, "tiny")
    return root


@pytest.fixture(scope="session")
def tiny_graph(tmp_path_factory, tiny_mind) -> Path:
    """A DuckDB file holding every daily asset of the tiny sample for the train days and the dev day
    (2019-11-09..15). Shared: copy it before writing to it."""
    from news_ai_assets_tests.pipeline import materialize

    database = tmp_path_factory.mktemp("tiny_graph") / "graph.duckdb"
    materialize(database, tiny_mind, "2019-11-09", "2019-11-15")
    return database


@pytest.fixture(scope="session")
def raw(tiny_mind) -> tuple:
    """The slow reference's inputs for the tiny sample, from its raw files alone (raw.reference_silver)."""
    from news_ai_assets_tests.raw import entity_vectors, raw_mind

    behaviors, news = raw_mind(tiny_mind)
    return behaviors, news, entity_vectors(tiny_mind)


@pytest.fixture
def real_mind() -> Path:
    if not (REAL_SUBSET / "MINDsmall_train" / "behaviors.tsv").exists():
        pytest.skip(f"real MIND rows not found at {REAL_SUBSET}")
    return REAL_SUBSET


def pipeline_resources(database: Path, mind_dir: Path, delta_uri: str | None = None) -> dict:
    """The resources of definitions.py, pointed at a temporary DuckDB file (or, with `delta_uri`,
    Delta tables there) and a MIND folder."""
    storage = {
        "io_manager": DeltaPolarsIOManager(root_uri=delta_uri, storage_options=S3Config() if delta_uri.startswith("s3://") else LocalConfig()),
        "database": DeltaDatabase(uri=delta_uri),
    } if delta_uri else {
        "io_manager": DuckDBPolarsIOManager(database=str(database)),
        "database": DuckDBDatabase(database=str(database)),
    }
    return {
        **storage,
        "mind": MindSource(mind_dir=str(mind_dir), mirror_dir=str(database.parent / "mind_mirror"),
                           sample_dir=str(database.parent / "unused_sample")),
        "embedding_model": EmbeddingModel(device="cpu"),
    }


@pytest.fixture
def s3_bucket(monkeypatch) -> str:
    """A bucket on the S3 emulator (servers.s3_emulator); its endpoint and credentials in the environment."""
    pytest.importorskip("moto.server", reason="moto[server] is a dev extra")
    with s3_emulator("lake") as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield "s3://lake/news_ai"
