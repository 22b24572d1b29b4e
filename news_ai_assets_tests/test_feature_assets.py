import datetime as dt

import dagster as dg
import polars as pl
import pytest

from news_ai_assets.assets.common import SqlCheck, sql_checks, unique_rows
from news_ai_assets.compute import reference
from news_ai_assets.compute.user_features import USER_FEATURE_COLUMNS
from news_ai_assets.definitions import all_assets
from news_ai_assets.settings import SETTINGS
from news_ai_assets.storage.duckdb_file import connect, replace_rows
from news_ai_assets_tests.compare import assert_rows_match
from news_ai_assets_tests.pipeline import materialize, pipeline_resources, read_table

USER_GRAPH = ["bronze/behaviors", "bronze/news", "features/user_features"]


def test_range_run_equals_day_by_day_runs_and_the_reference(tmp_path, tiny_mind):
    by_range, by_day = tmp_path / "range.duckdb", tmp_path / "days.duckdb"
    result = materialize(by_range, tiny_mind, "2019-11-09", "2019-11-22", selection=USER_GRAPH)
    instance = dg.DagsterInstance.ephemeral()
    for day in range(9, 23):
        materialize(by_day, tiny_mind, f"2019-11-{day:02d}", selection=USER_GRAPH, instance=instance)
    ranged = read_table(by_range, "features.user_features")
    assert ranged.columns == USER_FEATURE_COLUMNS
    # The README: "Types are compact (Float32, Int8/32)", as stored, not only as computed.
    assert {t for t in ranged.schema.values() if t.is_numeric()} == {pl.Float32, pl.Int8, pl.Int32}
    assert ranged.sort("date", "user_id").equals(read_table(by_day, "features.user_features").sort("date", "user_id"))

    behaviors = read_table(by_range, "bronze.behaviors")
    news = read_table(by_range, "bronze.news").unique("news_id")
    categories = {r["news_id"]: (r["category"], r["subcategory"]) for r in news.iter_rows(named=True)}
    for day in [dt.date(2019, 11, 12), dt.date(2019, 11, 20)]:
        expected = reference.user_features(behaviors.to_dicts(), categories, day, SETTINGS.lookback_days)
        assert_rows_match(ranged.filter(pl.col("date") == day), list(expected.values()), key=["user_id"])

    events = result.asset_materializations_for_node("features__user_features")
    users_per_day = ranged.group_by("date").len().sort("date").get_column("len").to_list()
    assert [e.metadata["users"].value for e in events] == [e.metadata["dagster/row_count"].value for e in events] == users_per_day
    metadata = events[0].metadata
    assert metadata["feature_count"].value == len(USER_FEATURE_COLUMNS) - 2
    assert {"nulls_engagement", "nulls_temporal", "nulls_content", "nulls_engagement_pattern"} <= set(metadata)


def test_a_missing_window_partition_fails_loudly(tmp_path, tiny_mind):
    result = materialize(tmp_path / "x.duckdb", tiny_mind, "2019-11-12", selection=USER_GRAPH, raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("features__user_features").error.message
    assert "bronze/behaviors has never been materialised in" in failure
    assert "for 2019-11-09, 2019-11-10, 2019-11-11, which this run reads" in failure
    assert "--assets '*' --partition-range 2019-11-09...2019-11-11" in failure


@pytest.mark.filterwarnings("ignore:.*partitions_def on an AssetCheckSpec")  # assets/common.py says why
def test_a_repeated_candidate_fails_the_uniqueness_check_with_the_exact_count(tmp_path, tiny_mind):
    """The check counts distinct hashes of the key first and the keys themselves only when that fails
    (assets/common.py unique_rows): the count it reports is the keys'. Where the quick query errs
    towards failing (a hash collision, made here by a check whose quick query always fails), the
    keys' count decides."""
    db, day = tmp_path / "u.duckdb", "2019-11-15"
    materialize(db, tiny_mind, day, selection=["bronze/behaviors"])
    with connect(db) as conn:  # an impression stored twice (as a write would): each of its candidates repeats
        stored = conn.sql("SELECT * FROM bronze.behaviors WHERE date = ?", params=[day]).pl()
        replace_rows(conn, "bronze", "behaviors", pl.concat([stored, stored.head(1)]), "date = ?", [day],
                     days=[dt.date.fromisoformat(day)])
    candidates = stored.get_column("impressions_count")[0]
    result = materialize(db, tiny_mind, day, selection=["features/interactions"], raise_on_error=False)
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "unique_candidates"]
    assert not check.passed and check.metadata["duplicate_rows"].value == candidates > 0

    with connect(db) as conn:
        replace_rows(conn, "bronze", "behaviors", stored, "date = ?", [day], days=[dt.date.fromisoformat(day)])
    exact = unique_rows("unique_candidates", "", "features.interactions", "split, impression_id, news_id").failed_query
    colliding = sql_checks(dg.AssetKey(["features", "interactions"]), [
        SqlCheck("unique_candidates", "", "SELECT false AS passed, 1 AS duplicate_rows", failed_query=exact)])
    result = dg.materialize([*all_assets, colliding], selection=["features/interactions"], partition_key=day,
                            resources=pipeline_resources(db, tiny_mind))
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["duplicate_rows"].value == 0
