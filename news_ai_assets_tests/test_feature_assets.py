import datetime as dt

import dagster as dg
import polars as pl

from news_ai_assets.compute import reference
from news_ai_assets.compute.user_features import USER_FEATURE_COLUMNS
from news_ai_assets.settings import SETTINGS
from news_ai_assets_tests.compare import assert_rows_match
from news_ai_assets_tests.pipeline import materialize, read_table

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
