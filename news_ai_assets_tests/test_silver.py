import datetime as dt

import dagster as dg
import numpy as np
import polars as pl
import pytest

from news_ai_assets.compute import reference
from news_ai_assets.compute.silver import RecentShows, silver_for_day
from news_ai_assets.settings import SETTINGS
from news_ai_assets_tests.compare import assert_rows_match
from news_ai_assets_tests.pipeline import PARTITIONED_CHECKS, materialize, read_table

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
def test_silver_rows_match_a_naive_reference_join(built, day):
    t = _tables(built[0])
    on_day = {name: frame.filter(pl.col("date") == day) for name, frame in t.items() if "date" in frame.columns}
    news = t["news"].unique("news_id")
    expected = reference.silver_rows(
        on_day["interactions"].to_dicts(),
        {r["user_id"]: r for r in on_day["user_features"].iter_rows(named=True)},
        {r["news_id"]: r for r in on_day["news_features"].iter_rows(named=True)},
        {r["news_id"]: list(r["embedding"]) for r in on_day["text_embeddings"].iter_rows(named=True)},
        t["behaviors"].to_dicts(),
        {r["news_id"]: (r["category"], r["subcategory"]) for r in news.iter_rows(named=True)},
        day, SETTINGS.lookback_days,
        {r["news_id"]: list(r["entity_embedding"]) for r in on_day["entity_features"].iter_rows(named=True)
         if r["entity_embedding"] is not None},
    )
    silver = on_day["training_examples"]
    key = ["split", "impression_id", "news_id"]
    assert_rows_match(silver, expected, key=key, tol=1e-5)
    # The new cross features to 1e-6 (the 1e-5 above allows for vectors embedded in another batch).
    exact = [*key, "history_entity_similarity", "hours_since_first_seen",
             *(f"candidate_{what}_{hours}h" for what in ("impressions", "clicks") for hours in (1, 6, 24))]
    assert_rows_match(silver.select(exact), [{c: row[c] for c in exact} for row in expected], key=key, tol=1e-6)
    assert silver.get_column("history_entity_similarity").drop_nulls().len() > silver.height / 2
    assert silver.columns == read_table(built[0], "silver.training_examples").columns
    stored = read_table(built[0], "silver.cross_features").filter(pl.col("date") == day)  # what the view is built on
    order = stored.select("split", "impression_id", "position")
    assert order.equals(order.sort("split", "impression_id", "position")) and stored.height == silver.height


def test_all_checks_pass_and_metadata_is_attached(built):
    _, result, _ = built
    evaluations = result.get_asset_check_evaluations()
    days = 8  # 2019-11-09 .. 2019-11-16: one evaluation per check and partition
    assert len(evaluations) == sum(len(c.check_keys) for c in PARTITIONED_CHECKS) * days and all(e.passed for e in evaluations), [
        (e.asset_key.to_user_string(), e.check_name, e.partition) for e in evaluations if not e.passed
    ]
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
    checks = {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key.path[0] == "silver"}
    assert not checks["missing_cross_features_share"].passed
    assert checks["missing_cross_features_share"].metadata["missing_share"].value > SETTINGS.max_missing_cross_share
    assert all(e.passed for name, e in checks.items() if name != "missing_cross_features_share")
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
