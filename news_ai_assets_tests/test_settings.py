"""Every setting is checked when the definitions load, with a message naming its variable."""

import os
import subprocess
import sys

import pytest

from news_ai_assets.settings import SettingError, load_settings


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("NEWS_AI_END_DATE", "9999-12-31", "outside 1970-01-01 .. 2099-12-31"),
        ("NEWS_AI_START_DATE", "2019-13-01", "is not a date in YYYY-MM-DD form"),
        ("NEWS_AI_END_DATE", "2019-11-01", " 2019-11-01 is before NEWS_AI_START_DATE 2019-11-09"),
        ("NEWS_AI_LOOKBACK_DAYS", "100000000000", "must be a whole number from 1 to 365"),
        ("NEWS_AI_LOOKBACK_DAYS", "0", "must be a whole number from 1 to 365"),
        ("NEWS_AI_LOOKBACK_DAYS", "٣", "must be a whole number from 1 to 365"),  # a digit, but not an ASCII one
        ("NEWS_AI_HISTORY_SIZE", "0", "must be a whole number from 1 to 10000"),
        ("NEWS_AI_MAX_MISSING_CROSS_SHARE", "nan", "must be a number from 0 to 1"),
        ("NEWS_AI_MAX_MISSING_CROSS_SHARE", "-1", "must be a number from 0 to 1"),
        ("NEWS_AI_MAX_MISSING_CROSS_SHARE", "inf", "must be a number from 0 to 1"),
        ("NEWS_AI_EMBEDDING_DEVICE", "gpu", "is not one of auto, mps, cuda, cpu"),
        ("NEWS_AI_EMBEDDING_BACKEND", "onnx", "is not one of torch, openvino"),
        ("NEWS_AI_EMBEDDING_PRECISION", "int4", "is not one of fp32, bf16, fp16"),
        ("NEWS_AI_EMBEDDING_BATCH_SIZE", "0", "must be a whole number from 1 to 65536"),
        ("NEWS_AI_EMBEDDING_BATCH_SIZE", "big", "must be a whole number from 1 to 65536"),
        ("NEWS_AI_STORAGE", "parquet", "is not one of duckdb, delta"),
        ("NEWS_AI_MIND_DIR", "gs://bucket/mind", "must be a folder or s3://BUCKET"),
        ("NEWS_AI_MIND_DIR", "s3:///", "must be a folder or s3://BUCKET"),
        ("NEWS_AI_DELTA_URI", "gs://bucket/x", "must be a folder, file://PATH or s3://BUCKET"),
        ("NEWS_AI_DELTA_URI", "s3://", "must be a folder, file://PATH or s3://BUCKET"),
        ("NEWS_AI_DELTA_URI", "s3://lake/news #1", "in a URI, '#' and '\\?' end the path"),
        ("NEWS_AI_DELTA_URI", "file:///data/lake?x", "in a URI, '#' and '\\?' end the path"),
        ("NEWS_AI_DUCKDB_MEMORY_LIMIT", "lots", "is not a memory size DuckDB accepts"),
    ],
)
def test_a_bad_setting_names_its_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError, match=rf"^{variable}.*{message}"):
        load_settings()


def test_the_embedding_batch_size_is_the_devices_unless_set(monkeypatch):
    monkeypatch.delenv("NEWS_AI_EMBEDDING_BATCH_SIZE", raising=False)
    assert load_settings().embedding_batch_size is None
    monkeypatch.setenv("NEWS_AI_EMBEDDING_BATCH_SIZE", "512")
    assert load_settings().embedding_batch_size == 512


@pytest.mark.parametrize("content", [b"PAR1\x00\x00\x00\x00PAR1", b"a,b\n1,2\n"])
def test_a_duckdb_path_that_holds_another_kind_of_file_is_refused(tmp_path, monkeypatch, content):
    path = tmp_path / "features.parquet"
    path.write_bytes(content)
    monkeypatch.setenv("NEWS_AI_DUCKDB_PATH", str(path))
    with pytest.raises(SettingError, match=r"^NEWS_AI_DUCKDB_PATH: .* is not a DuckDB database"):
        load_settings()


def test_the_storage_picks_the_backfill_policy(monkeypatch, tmp_path):
    """One run per backfill on the DuckDB file (one writer); one run per day on Delta tables."""
    monkeypatch.setenv("NEWS_AI_DELTA_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("NEWS_AI_STORAGE", "delta")
    delta = load_settings()
    assert delta.backfill_policy.max_partitions_per_run == 1 and delta.delta_uri == str(tmp_path / "lake")
    monkeypatch.setenv("NEWS_AI_STORAGE", "duckdb")
    assert load_settings().backfill_policy.max_partitions_per_run is None


@pytest.mark.parametrize("storage", ["duckdb", "delta"])
def test_loading_the_definitions_prints_no_warning(tmp_path, storage):
    completed = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import news_ai_assets.definitions"],
        cwd=tmp_path, env={**os.environ, "NEWS_AI_DUCKDB_PATH": str(tmp_path / "w.duckdb"), "NEWS_AI_STORAGE": storage},
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0 and completed.stderr == "", completed.stderr[-2000:]


def test_the_cli_refuses_a_bad_setting_before_any_run(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "NEWS_AI_LOOKBACK_DAYS": "100000000000",
           "NEWS_AI_DUCKDB_PATH": str(tmp_path / "never.duckdb")}
    completed = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "dg"), "launch", "-m",
         "news_ai_assets.definitions", "--assets", "bronze/behaviors", "--partition", "2019-11-12"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode != 0
    assert "NEWS_AI_LOOKBACK_DAYS='100000000000' must be a whole number from 1 to 365" in completed.stderr
    assert "OverflowError" not in completed.stderr and not (tmp_path / "never.duckdb").exists()
