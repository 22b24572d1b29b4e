"""What a run records about a partition is true of that partition: its row count, preview and checks,
also after a range run, and a run never reads a day that was not materialised in its database."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from news_ai_assets.definitions import all_assets
from news_ai_assets.storage.duckdb_file import connect
from news_ai_assets_tests.conftest import pipeline_resources
from news_ai_assets_tests.pipeline import (
    PARTITIONED_ASSETS, PARTITIONED_CHECKS, failure_messages, materialize, read_table,
)

DAYS = ["2019-11-12", "2019-11-13", "2019-11-14"]


@pytest.fixture(scope="module")
def range_run(tmp_path_factory, tiny_mind):
    """The window the three days need, then the three days as one run (a backfill), as users run them."""
    db = tmp_path_factory.mktemp("truth") / "t.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    materialize(db, tiny_mind, "2019-11-09", "2019-11-11", instance=instance)
    result = materialize(db, tiny_mind, DAYS[0], DAYS[-1], instance=instance)
    return db, result, instance


@pytest.mark.parametrize("asset", PARTITIONED_ASSETS)
def test_each_partition_of_a_range_run_carries_its_own_count_and_preview(range_run, asset):
    db, result, _ = range_run
    events = result.asset_materializations_for_node(asset.replace("/", "__"))
    assert [e.partition for e in events] == DAYS  # one event per partition, the last one the latest
    stored = read_table(db, asset.replace("/", "."))
    for event in events:
        day_rows = stored.filter(pl.col("date") == dt.date.fromisoformat(event.partition))
        metadata = event.metadata
        assert metadata["dagster/row_count"].value == day_rows.height, (asset, event.partition)
        assert metadata["partition"].value == event.partition
        assert metadata["Query"].value.endswith(f"WHERE date = '{event.partition}'")
        assert metadata["run_partitions"].value == f"{DAYS[0]} .. {DAYS[-1]} (3 days in this run)"
        assert metadata["process_peak_rss_mib"].value > 0  # the benchmark's memory per step comes from here
        assert f"| {event.partition} |" in metadata["preview"].value or day_rows.height == 0
        other_days = set(DAYS) - {event.partition}
        assert not any(f"| {day} |" in metadata["preview"].value for day in other_days)


def test_checks_record_one_passed_result_per_partition(range_run):
    _, result, instance = range_run
    storage = instance.event_log_storage
    for check in PARTITIONED_CHECKS:
        for key in check.check_keys:
            records = [r for r in storage.get_asset_check_execution_history(key, limit=100) if r.run_id == result.run_id]
            assert sorted(r.partition for r in records) == DAYS, key
            assert {r.status.value for r in records} == {"SUCCEEDED"}, key  # never PLANNED, which reads Skipped once the run ends
            info = storage.get_asset_check_partition_info([key], partition_keys=DAYS)
            assert all(i.latest_target_materialization_storage_id == i.latest_materialization_storage_id for i in info), key


def test_every_feature_and_silver_column_has_a_description(range_run):
    _, result, _ = range_run
    for asset in PARTITIONED_ASSETS:
        schema = result.asset_materializations_for_node(asset.replace("/", "__"))[-1].metadata["dagster/column_schema"].value
        undescribed = [c.name for c in schema.columns if not c.description]
        assert not undescribed, (asset, undescribed)


def test_the_lookback_is_checked_in_the_database_not_in_run_history(tmp_path, tiny_mind):
    """Run history says the window was materialised; the database (deleted and started anew) says not."""
    db, instance = tmp_path / "gone.duckdb", dg.DagsterInstance.ephemeral()
    materialize(db, tiny_mind, "2019-11-09", "2019-11-12", instance=instance)
    for path in tmp_path.glob("gone.duckdb*"):
        path.unlink()
    result = materialize(db, tiny_mind, "2019-11-12", instance=instance, raise_on_error=False)
    message = result.failure_data_for_node("features__user_features").error.message
    assert "bronze/behaviors has never been materialised in" in message
    assert "for 2019-11-09, 2019-11-10, 2019-11-11, which this run reads" in message
    assert "--assets '*' --partition-range 2019-11-09...2019-11-11" in message
    with connect(db, read_only=True) as conn:
        tables = {t for (t,) in conn.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables").fetchall()}
    assert "features.user_features" not in tables and "silver.training_examples" not in tables


def test_a_lookback_that_reaches_raw_days_before_the_first_partition_fails(tmp_path, tiny_mind):
    """With the range starting 2019-11-11, the raw days 11-09 and 11-10 can never be stored."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "NEWS_AI_MIND_DIR": str(tiny_mind),
           "NEWS_AI_DUCKDB_PATH": str(tmp_path / "late.duckdb"), "NEWS_AI_START_DATE": "2019-11-11"}
    completed = subprocess.run(
        [Path(sys.executable).parent / "dg", "launch", "-m", "news_ai_assets.definitions",
         "--assets", "bronze/behaviors,bronze/news,features/user_features", "--partition", "2019-11-11"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert "The raw MIND files hold impressions on 2019-11-09" in output and "2019-11-10" in output
    assert "Set NEWS_AI_START_DATE=2019-11-09 (or earlier)" in output


def test_an_unusable_embedding_device_fails_before_any_step(tmp_path, tiny_mind, monkeypatch):
    """Checked when the run starts, also when every text is cached and the model would never load."""
    import torch

    from news_ai_assets.resources import EmbeddingModel

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    resources = {**pipeline_resources(tmp_path / "d.duckdb", tiny_mind), "embedding_model": EmbeddingModel(device="cuda")}
    result = dg.materialize(all_assets, selection=["bronze/behaviors", "bronze/news", "features/text_embeddings"],
                            resources=resources, partition_key="2019-11-12", raise_on_error=False)
    assert not [e for e in result.all_events if e.event_type_value == "STEP_START"]
    assert any("'cuda' was requested (NEWS_AI_EMBEDDING_DEVICE)" in m for m in failure_messages(result))
    if (tmp_path / "d.duckdb").exists():
        with connect(tmp_path / "d.duckdb", read_only=True) as conn:
            assert conn.execute("SELECT count(*) FROM information_schema.tables").fetchall() == [(0,)]
