"""Operations: schedules, the daily job, empty days, a locked file, a killed writer (fuzzed input: test_grammar.py)."""

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import dagster as dg
import polars as pl
import pytest

from news_ai_assets.definitions import all_assets, defs, mind_features_job, mind_features_job_schedule
from news_ai_assets.resources import MindSource
from news_ai_assets.settings import daily_partitions
from news_ai_assets.storage.duckdb_file import connect, replace_rows
from news_ai_assets_tests.pipeline import (
    PARTITIONED_ASSETS, another_process_holding, assert_checks_passed, failure_messages, materialize, read_table,
)


@pytest.mark.parametrize(("tick", "partition"), [("2019-11-16T03:00", "2019-11-15"), ("2019-11-10T03:00", "2019-11-09"),
                                                ("2019-11-09T03:00", None), ("2026-11-26T03:00", None)])
def test_the_daily_schedule_requests_the_day_that_ended(tick, partition, tiny_mind):
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime.fromisoformat(tick).replace(tzinfo=dt.UTC), repository_def=defs.get_repository_def(),
        resources={"mind": MindSource(mind_dir=str(tiny_mind), sample_dir=str(tiny_mind / "unused"))},
    )
    result = mind_features_job_schedule.evaluate_tick(context)
    assert [r.partition_key for r in result.run_requests or []] == ([partition] if partition else [])
    for request in result.run_requests or []:  # a time limit from the day's impressions (automation.run_time_limit)
        impressions = sum(1 for split in tiny_mind.iterdir() for line in (split / "behaviors.tsv").read_text().splitlines()
                          if dt.datetime.strptime(line.split("\t")[2], "%m/%d/%Y %I:%M:%S %p").date().isoformat() == partition)
        assert impressions and f"{impressions:,} impressions" in request.tags["news_ai/max_runtime_basis"]
        assert int(request.tags["dagster/max_runtime"]) == 600 + 60
    if not partition:  # a day outside the range says which range, and which settings move it
        assert "is not a partition (2019-11-09 .. 2019-11-22)" in result.skip_message and "NEWS_AI_END_DATE" in result.skip_message


def test_the_daily_job_selects_every_daily_asset_and_not_the_evaluation():
    """What the schedule and a backfill of mind_features_job materialise, as the README says."""
    selected = {k.to_user_string() for k in mind_features_job.selection.resolve(defs.resolve_asset_graph())}
    every_asset = {key.to_user_string() for a in all_assets for key in a.keys}
    daily = {key.to_user_string() for a in all_assets for key in a.keys if isinstance(a.partitions_def, dg.DailyPartitionsDefinition)}
    assert selected == daily == set(PARTITIONED_ASSETS) == every_asset - {"gold/ranker_evaluation"}
    assert defs.resolve_job_def("mind_features_job").partitions_def == daily_partitions


def test_the_automation_page_lists_our_sensors_and_schedule_only():
    """No default_automation_condition_sensor beside ours (Dagster adds one for any asset with an
    automation condition that no sensor of ours evaluates): what the README says to switch on is all there is."""
    repository = defs.get_repository_def()
    assert sorted(s.name for s in repository.sensor_defs) == ["carry_changes_downstream", "mind_files_sensor"]
    assert [s.name for s in repository.schedule_defs] == ["mind_features_job_schedule"]


def test_a_day_without_impressions_gives_empty_tables_and_green_checks(tmp_path, tiny_mind):
    mind = tmp_path / "mind"
    shutil.copytree(tiny_mind, mind)
    behaviors = mind / "MINDsample_train" / "behaviors.tsv"
    lines = behaviors.read_text().splitlines(keepends=True)
    behaviors.write_text("".join(line for line in lines if "\t11/10/2019 " not in line))
    db = tmp_path / "empty.duckdb"
    result = materialize(db, mind, "2019-11-09", "2019-11-11")
    assert_checks_passed(result, PARTITIONED_ASSETS, days=3)
    for table in ["bronze.behaviors", "bronze.news", "features.interactions", "features.user_features",
                  "features.news_features", "features.text_embeddings", "silver.training_examples"]:
        days = set(read_table(db, table).get_column("date").unique())
        assert dt.date(2019, 11, 10) not in days and dt.date(2019, 11, 11) in days, table


def test_a_run_fails_fast_when_another_process_holds_the_file(tmp_path, tiny_mind):
    """The file is opened when the run starts, so a notebook holding it stops the run before any step writes."""
    db = tmp_path / "held.duckdb"
    with another_process_holding(db) as holder:
        result = materialize(db, tiny_mind, "2019-11-12", selection=["bronze/behaviors"], raise_on_error=False)
    message = "\n".join(failure_messages(result))
    assert f"locked by another process (PID {holder.pid})" in message and "close the notebook" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_START"]


KILLED_WRITER = textwrap.dedent(
    """
    import datetime as dt, sys, time
    import polars as pl, pyarrow as pa
    from news_ai_assets.storage.duckdb_file import connect, replace_rows

    day = dt.date(2019, 11, 9)
    schema = pl.DataFrame({"date": [day], "value": [0]}).to_arrow().schema

    def batches():
        for i in range(10_000):
            yield pl.DataFrame({"date": [day] * 1000, "value": list(range(1000))}).to_arrow().cast(schema).to_batches()[0]
            if i == 20:
                print("writing", flush=True)
                time.sleep(60)

    with connect(sys.argv[1]) as conn:
        replace_rows(conn, "layer", "t", pa.RecordBatchReader.from_batches(schema, batches()), "date = ?", [day])
    """
)


def test_a_writer_killed_mid_partition_leaves_the_previous_rows(tmp_path):
    db = tmp_path / "killed.duckdb"
    day = dt.date(2019, 11, 9)
    previous = pl.DataFrame({"date": [day, day], "value": [41, 42]})
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", previous, "date = ?", [day])
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"  # 21,000 rows inserted, the old ones deleted, uncommitted
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with connect(db) as conn:
        assert conn.sql("SELECT value FROM layer.t ORDER BY value").fetchall() == [(41,), (42,)]
        replace_rows(conn, "layer", "t", previous.with_columns(pl.col("value") + 1), "date = ?", [day])
        assert conn.sql("SELECT value FROM layer.t ORDER BY value").fetchall() == [(42,), (43,)]


def test_after_a_run_the_file_alone_holds_everything(tmp_path, tiny_mind):
    """The README's snapshot advice (copy the file between runs) copies every row: runs end with a checkpoint."""
    db = tmp_path / "whole.duckdb"
    materialize(db, tiny_mind, "2019-11-09", "2019-11-10", selection=["bronze/behaviors", "bronze/news", "features/interactions"])
    assert not (tmp_path / "whole.duckdb.wal").exists()
    shutil.copy(db, tmp_path / "copy.duckdb")
    for table in ("bronze.behaviors", "bronze.news", "features.interactions"):
        assert read_table(tmp_path / "copy.duckdb", table).height == read_table(db, table).height > 0, table


def test_a_backfill_of_some_days_targets_those_days_and_no_other(tmp_path, monkeypatch):
    """`python -m news_ai_assets.backfill --from --to` names every asset's range: Dagster's default would also
    target the partitions downstream of it (user features of the 7 days after, through their lookback)."""
    import dagster as dg

    from news_ai_assets import backfill

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    backfill_id = backfill.main(["--from", "2019-11-09", "--to", "2019-11-10"])
    with dg.DagsterInstance.get() as instance:
        target = instance.get_backfill(backfill_id).asset_backfill_data.target_subset
    assert {key.to_user_string() for key in target.non_partitioned_asset_keys} == {"gold/ranker_evaluation"}
    days = {key.to_user_string(): sorted(subset.get_partition_keys())
            for key, subset in target.partitions_subsets_by_asset_key.items()}
    assert len(days) == 11 and all(keys == ["2019-11-09", "2019-11-10"] for keys in days.values()), days


def test_the_sqlite_event_log_keeps_its_engines_and_follows_a_replaced_shard(tmp_path):
    """The local instance's event log (dagster_internals keeps its SQLite engines): what one process
    writes, another reads; after the shard's file is deleted under it (history cleared by hand), new
    events land in a new file, not in the deleted one that a kept connection still holds."""
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    reader = textwrap.dedent(f"""
        import dagster as dg
        with dg.DagsterInstance.from_config({str(tmp_path)!r}) as instance:
            print(sorted(e.dagster_event.partition for e in instance.all_logs("") if e.is_dagster_event))
    """)

    def logged_elsewhere() -> str:  # the runless shard's events, read by another process
        return subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, check=True).stdout.strip()

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        for day in ("1", "2"):
            instance.report_runless_asset_event(dg.AssetMaterialization("a", partition=day))
        assert logged_elsewhere() == "['1', '2']"
        (tmp_path / "history" / "runs" / ".db").unlink()
        instance.report_runless_asset_event(dg.AssetMaterialization("a", partition="3"))
        assert logged_elsewhere() == "['3']"
