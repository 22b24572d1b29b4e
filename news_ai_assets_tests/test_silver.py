import datetime as dt

import dagster as dg
import numpy as np
import polars as pl
import pytest

from news_ai_assets.compute.silver import RecentShows, silver_for_day
from news_ai_assets.settings import SETTINGS
from news_ai_assets_tests.compare import assert_rows_match, assert_same_rows
from news_ai_assets_tests.pipeline import (
    PARTITIONED_ASSETS, assert_checks_passed, check_evaluations, materialize, read_table,
)
from news_ai_assets_tests.raw import reference_silver

FIRST, LAST = "2019-11-09", "2019-11-16"


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_mind):
    """The whole graph for the first eight days of the tiny sample, as one run."""
    db = tmp_path_factory.mktemp("silver") / "s.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(db, tiny_mind, FIRST, LAST, instance=instance)
    return db, result, instance


def _tables(db) -> dict[str, pl.DataFrame]:
    names = ["bronze.behaviors", "bronze.news", "features.interactions", "features.user_features",
             "features.news_features", "features.text_embeddings", "features.entity_features", "silver.training_examples"]
    return {name.split(".")[1]: read_table(db, name) for name in names}


@pytest.mark.parametrize("day", [dt.date(2019, 11, 9), dt.date(2019, 11, 14), dt.date(2019, 11, 16)])
def test_silver_rows_match_the_reference_built_from_the_raw_files(built, raw, day):
    silver = read_table(built[0], "silver.training_examples").filter(pl.col("date") == day)
    expected = reference_silver(raw, day)
    assert expected and set(silver.columns) == set(expected[0])  # every column is checked, none is left out
    assert_rows_match(silver, expected, key=["split", "impression_id", "news_id"], tol=1e-6)
    for column in ("history_similarity", "history_entity_similarity", "category", "ctr_7d"):
        assert silver.get_column(column).drop_nulls().len() > silver.height / 2, column  # compared, not NULL = NULL
    stored = read_table(built[0], "silver.cross_features").filter(pl.col("date") == day)  # what the view is built on
    order = stored.select("split", "impression_id", "position")
    assert order.equals(order.sort("split", "impression_id", "position")) and stored.height == silver.height


def test_all_checks_pass_and_metadata_is_attached(built):
    _, result, _ = built
    assert_checks_passed(result, PARTITIONED_ASSETS, days=8)  # 2019-11-09 .. 2019-11-16
    events = result.asset_materializations_for_node("silver__training_examples")
    silver = read_table(built[0], "silver.training_examples")
    per_day = dict(silver.group_by("date").len().iter_rows())
    assert {e.partition: e.metadata["dagster/row_count"].value for e in events} == {str(d): n for d, n in per_day.items()}


def test_rematerializing_gives_byte_identical_rows(built, tiny_mind):
    db, _, instance = built
    key = ["date", "split", "impression_id", "position"]
    before = read_table(db, "silver.training_examples").sort(key)
    materialize(db, tiny_mind, FIRST, LAST, selection=["silver/training_examples"], instance=instance)
    after = read_table(db, "silver.training_examples").sort(key)
    assert after.equals(before)  # floats compared bit for bit, NULLs in place


def test_chunk_size_does_not_change_a_byte(built):
    t = _tables(built[0])
    day = dt.date(2019, 11, 14)
    recent = t["interactions"].filter(pl.col("date").is_between(day - dt.timedelta(days=1), day) & pl.col("clicked").is_not_null())
    args = [t["interactions"], t["behaviors"], t["news"], t["text_embeddings"],
            t["entity_features"].filter(pl.col("date") == day), read_table(built[0], "features.candidate_stats"),
            recent.select("news_id", "time", "clicked")]
    whole = pl.concat(silver_for_day(*args, day, SETTINGS.lookback_days))
    pieces = pl.concat(silver_for_day(*args, day, SETTINGS.lookback_days, chunk_rows=7))
    assert pieces.equals(whole) and whole.height == t["interactions"].filter(pl.col("date") == day).height


def test_missing_articles_keep_their_rows_and_fail_the_share_check(tmp_path, real_mind):
    """In the real subset most referenced articles are missing from news.tsv."""
    result = materialize(tmp_path / "r.duckdb", real_mind, "2019-11-09", "2019-11-10", raise_on_error=False)
    silver = read_table(tmp_path / "r.duckdb", "silver.training_examples")
    interactions = read_table(tmp_path / "r.duckdb", "features.interactions")
    assert silver.height == interactions.height > 0
    assert silver.get_column("category").null_count() > silver.height / 2
    evaluations = [e for e in check_evaluations(result, PARTITIONED_ASSETS, days=2) if e.asset_key.path[0] == "silver"]
    share = [e for e in evaluations if e.check_name == "missing_cross_features_share"]
    assert len(share) == 2 and not any(e.passed for e in share)
    assert all(e.metadata["missing_share"].value > SETTINGS.max_missing_cross_share for e in share)
    others = [e for e in evaluations if e.check_name != "missing_cross_features_share"]
    assert others and all(e.passed for e in others)
    events = result.asset_materializations_for_node("silver__training_examples")
    assert sum(e.metadata["rows_missing_news_features"].value for e in events) == silver.get_column("category").null_count()


def test_recent_popularity_counts_labelled_shows_strictly_before_each_impression():
    """Shows at the impression's very time, a microsecond either side of it and of each window's
    start, on the day before, unlabelled: the counts equal a naive count over every show."""
    day, rng = dt.date(2019, 11, 15), np.random.default_rng(5)
    times = [dt.datetime(2019, 11, 15, h, m) for h, m in ((0, 0), (0, 30), (6, 0), (12, 0), (12, 0), (23, 59))]
    tick = dt.timedelta(microseconds=1)
    offsets = [dt.timedelta(0), tick, -tick] + [-dt.timedelta(hours=h) + e for h in (1, 6, 24) for e in (0 * tick, tick, -tick)]
    shows = pl.DataFrame([
        {"news_id": f"N{rng.integers(3)}", "time": times[rng.integers(len(times))] + offsets[rng.integers(len(offsets))],
         "clicked": [None, True, False][rng.integers(3)]}
        for _ in range(600)
    ], schema={"news_id": pl.String, "time": pl.Datetime("us"), "clicked": pl.Boolean})
    shows = shows.filter(pl.col("time").dt.date().is_between(day - dt.timedelta(days=1), day))  # what silver reads: D-1 .. D
    rows = pl.DataFrame({"news_id": [f"N{i % 4}" for i in range(60)], "time": [times[i % len(times)] for i in range(60)]},
                        schema={"news_id": pl.String, "time": pl.Datetime("us")})
    counted = pl.DataFrame(RecentShows(shows.filter(pl.col("clicked").is_not_null()), rows, day).counts(rows))
    labelled = [s for s in shows.iter_rows(named=True) if s["clicked"] is not None]
    for row, got in zip(rows.iter_rows(named=True), counted.iter_rows(named=True)):
        for name, hours in (("1h", 1), ("6h", 6), ("24h", 24)):
            window = [s for s in labelled if s["news_id"] == row["news_id"]
                      and row["time"] - dt.timedelta(hours=hours) <= s["time"] < row["time"]]
            assert got[f"candidate_impressions_{name}"] == len(window), (row, name)
            assert got[f"candidate_clicks_{name}"] == sum(s["clicked"] for s in window), (row, name)
    assert counted.get_column("candidate_impressions_1h").sum() > 0 and counted.get_column("candidate_clicks_24h").sum() > 0


# The tables a trainer reads, each with the columns that identify its rows.
TRAINER_TABLES = {
    "silver.training_examples": ["date", "split", "impression_id", "position"],
    "silver.impressions": ["date", "split", "impression_id"],
    "features.entity_features": ["date", "news_id"],
}


def test_a_range_run_equals_day_by_day_runs_value_for_value_and_type_for_type(tmp_path, tiny_mind, tiny_graph):
    """The README: a range is one run, "and the result equals day-by-day runs": for the tables a
    trainer reads, types included, every value equal but floats to the docs' 1e-6 (the vectors of a
    range run are encoded in other batches than a day's), vocabulary ids included."""
    by_day, instance = tmp_path / "days.duckdb", dg.DagsterInstance.ephemeral()
    for day in range(9, 16):  # tiny_graph's days, as one run
        materialize(by_day, tiny_mind, f"2019-11-{day:02d}", instance=instance)
    for table, key in TRAINER_TABLES.items():
        ranged, daily = read_table(tiny_graph, table).sort(key), read_table(by_day, table).sort(key)
        assert ranged.height > 0, table
        assert_same_rows(ranged, daily, table)


def test_a_day_whose_candidates_all_lack_news_keeps_every_row_with_null_shares(built):
    """No candidate in news.tsv: no category to look a share up by (an empty share table), every
    row kept, the shares NULL, as for a single missing article."""
    t = _tables(built[0])
    day = dt.date(2019, 11, 14)
    recent = t["interactions"].filter(pl.col("date").is_between(day - dt.timedelta(days=1), day) & pl.col("clicked").is_not_null())
    rows = pl.concat(silver_for_day(
        t["interactions"], t["behaviors"], t["news"].clear(), t["text_embeddings"],
        t["entity_features"].filter(pl.col("date") == day), read_table(built[0], "features.candidate_stats"),
        recent.select("news_id", "time", "clicked"), day, SETTINGS.lookback_days))
    assert rows.height == t["interactions"].filter(pl.col("date") == day).height > 0
    assert rows.select(pl.col("user_category_ratio", "user_subcategory_ratio").is_null().all()).row(0) == (True, True)
