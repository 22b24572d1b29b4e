"""Materialising the real asset graph into a temporary DuckDB file, as the tests need it."""

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import polars as pl

from news_ai_assets.dagster_internals import stale_causes
from news_ai_assets.definitions import all_assets, all_checks
from news_ai_assets.storage.duckdb_file import connect
from news_ai_assets_tests.conftest import pipeline_resources

PARTITIONED_ASSETS = ["bronze/behaviors", "bronze/news", "features/interactions", "features/candidate_stats",
                      "features/user_features", "features/news_features", "features/text_embeddings",
                      "features/entity_features", "features/vocabulary", "silver/training_examples", "silver/impressions"]
ALL_ASSETS = [*PARTITIONED_ASSETS, "gold/ranker_evaluation"]
# The checks of the daily assets: what a daily or range run evaluates, once per partition.
PARTITIONED_CHECKS = [c for c in all_checks if all(k.asset_key.to_user_string() in PARTITIONED_ASSETS for k in c.check_keys)]


def materialize(
    database: Path, mind_dir: Path, first: str, last: str | None = None, *, selection=None,
    instance: dg.DagsterInstance | None = None, raise_on_error: bool = True, delta_uri: str | None = None,
):
    """One partition, or first..last (inclusive) as one run, as a UI backfill launches it; every
    daily asset unless `selection` says otherwise."""
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last} if last else {}
    result = dg.materialize(
        [*all_assets, *all_checks], selection=selection or PARTITIONED_ASSETS, resources=pipeline_resources(database, mind_dir, delta_uri),
        partition_key=None if last else first, tags=tags, instance=instance, raise_on_error=raise_on_error,
    )
    assert result.success or not raise_on_error
    return result


def evaluate(database: Path, mind_dir: Path, raise_on_error: bool = True):
    """gold/ranker_evaluation alone (it is not partitioned), on what the database holds."""
    return dg.materialize([*all_assets, *all_checks], selection=["gold/ranker_evaluation"],
                          resources=pipeline_resources(database, mind_dir), raise_on_error=raise_on_error)


def check_evaluations(result, assets: list[str], days: int) -> list:
    """The run's check evaluations, after asserting there is one per check of `assets` and day: an
    "every check passed" over a list that came back short proves nothing."""
    keys = [key for c in PARTITIONED_CHECKS for key in c.check_keys if key.asset_key.to_user_string() in assets]
    evaluations = result.get_asset_check_evaluations()
    assert keys and len(evaluations) == len(keys) * days, (len(evaluations), len(keys), days)
    return evaluations


def assert_checks_passed(result, assets: list[str], days: int) -> None:
    failed = [(e.asset_key.to_user_string(), e.check_name, e.partition)
              for e in check_evaluations(result, assets, days) if not e.passed]
    assert failed == []


def failure_messages(result) -> list[str]:
    """Every error a run reported: failed steps, resources that could not start, the run itself."""
    messages = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            messages.append(error.message)
            error = error.cause
    return messages


def stale_partitions(instance: dg.DagsterInstance, days: list[dt.date], assets=all_assets) -> dict[tuple[str, str], list[str]]:
    """Every daily asset's partitions of `days` that the UI shows as "Unsynced", with why; each must
    have been materialised."""
    found = {}
    for asset in PARTITIONED_ASSETS:
        for day in days:
            causes = stale_causes(instance, assets, dg.AssetKey.from_user_string(asset), day.isoformat())
            assert causes is not None, f"{asset}[{day}] was never materialised"
            if causes:
                found[(asset, day.isoformat())] = causes
    return found


def change_one_line(mind: Path, day: dt.date) -> None:
    """The first impression of `day` in the train split gets another user id."""
    path = mind / "MINDsample_train" / "behaviors.tsv"
    lines = path.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.split("\t")[2].startswith(f"{day.month}/{day.day}/{day.year}"))
    fields = lines[index].split("\t")
    fields[1] = "U999999"
    lines[index] = "\t".join(fields)
    path.write_text("".join(lines))


def read_table(database: Path, table: str) -> pl.DataFrame:
    with connect(database, read_only=True) as conn:
        return conn.sql(f"SELECT * FROM {table}").pl()


@contextmanager
def another_process_holding(database: Path) -> Iterator[subprocess.Popen]:
    """A second process with the DuckDB file open, as a notebook would have it."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time; c = duckdb.connect({str(database)!r}); print('ok', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        yield holder
    finally:
        holder.kill()
        holder.wait()
