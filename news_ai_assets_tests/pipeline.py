"""Materialising the real asset graph into a temporary DuckDB file, as the tests need it."""

from pathlib import Path

import dagster as dg
import polars as pl

from news_ai_assets.definitions import all_assets, all_checks
from news_ai_assets.storage import connect
from news_ai_assets_tests.conftest import pipeline_resources


def materialize(
    database: Path, mind_dir: Path, first: str, last: str | None = None, *, selection=None,
    instance: dg.DagsterInstance | None = None, raise_on_error: bool = True,
):
    """One partition, or first..last (inclusive) as one run, as a UI backfill launches it."""
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last} if last else {}
    result = dg.materialize(
        [*all_assets, *all_checks], selection=selection, resources=pipeline_resources(database, mind_dir),
        partition_key=None if last else first, tags=tags, instance=instance, raise_on_error=raise_on_error,
    )
    assert result.success or not raise_on_error
    return result


def read_table(database: Path, table: str) -> pl.DataFrame:
    with connect(database, read_only=True) as conn:
        return conn.sql(f"SELECT * FROM {table}").pl()
