"""silver/impressions and the vocabularies: against the reference, straight from the raw files."""

import datetime as dt

import polars as pl
import pytest

from news_ai_assets.compute import reference
from news_ai_assets.compute.impressions import article_ids, impressions_for_day
from news_ai_assets.settings import SETTINGS
from news_ai_assets_tests.compare import assert_rows_match
from news_ai_assets_tests.pipeline import materialize, read_table
from news_ai_assets_tests.raw import day_articles, raw_mind

SELECTION = ["bronze/behaviors", "bronze/news", "features/vocabulary", "silver/impressions"]
DAYS = [dt.date(2019, 11, 14) + dt.timedelta(days=i) for i in range(4)]  # train, dev, two test days


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_mind):
    db = tmp_path_factory.mktemp("impressions") / "i.duckdb"
    result = materialize(db, tiny_mind, str(DAYS[0]), str(DAYS[-1]), selection=SELECTION)
    return db, result


def test_impressions_match_the_reference_built_from_the_raw_files(built, tiny_mind):
    db, result = built
    behaviors, news = raw_mind(tiny_mind)
    ids = reference.vocabulary_ids([day_articles(behaviors, news, day) for day in DAYS])
    stored = read_table(db, "silver.impressions")
    assert stored.get_column("history_length").max() > SETTINGS.history_size  # truncation is exercised
    assert 0 < stored.get_column("labels").null_count() < stored.height  # labelled and unlabelled impressions
    for day in DAYS:
        expected = reference.impressions(behaviors, day_articles(behaviors, news, day), ids, day, SETTINGS.history_size)
        assert_rows_match(stored.filter(pl.col("date") == day), expected, key=["split", "impression_id"])
    vocabulary = read_table(db, "features.vocabulary_ids")
    assert {v: dict(vocabulary.filter(pl.col("vocabulary") == v).select("token", "id").iter_rows()) for v in ids} == ids
    evaluations = [e for e in result.get_asset_check_evaluations() if e.asset_key.path[-1] in ("vocabulary", "impressions")]
    assert len(evaluations) == 5 * len(DAYS) and all(e.passed for e in evaluations)


def test_impressions_of_real_mind_rows_match_the_reference(tmp_path, real_mind):
    """Most articles the real subset refers to are absent from its news.tsv: they get id 0."""
    days = [dt.date(2019, 11, 9), dt.date(2019, 11, 10)]
    db = tmp_path / "r.duckdb"
    materialize(db, real_mind, str(days[0]), str(days[-1]), selection=SELECTION)
    behaviors, news = raw_mind(real_mind)
    ids = reference.vocabulary_ids([day_articles(behaviors, news, day) for day in days])
    stored = read_table(db, "silver.impressions")
    for day in days:
        expected = reference.impressions(behaviors, day_articles(behaviors, news, day), ids, day, SETTINGS.history_size)
        assert_rows_match(stored.filter(pl.col("date") == day), expected, key=["split", "impression_id"])
    unknown = stored.get_column("candidate_index").explode().eq(0).mean()
    assert 0 < unknown < 1 and stored.height > 0


@pytest.mark.parametrize("history_size", [1, 3])
def test_a_short_history_keeps_the_most_recent_articles(built, history_size):
    db, _ = built
    day = DAYS[1]
    behaviors = read_table(db, "bronze.behaviors").filter(pl.col("date") == day)
    articles = article_ids(read_table(db, "bronze.news").filter(pl.col("date") == day),
                           read_table(db, "features.vocabulary").filter(pl.col("date") == day))
    got = impressions_for_day(behaviors, articles, history_size)
    for row, history in zip(got.iter_rows(named=True), behaviors.sort("split", "impression_id").get_column("history")):
        assert row["history"] == list(history)[-history_size:] if len(history) else row["history"] == []
        assert row["history_length"] == len(history)


def test_ids_never_change_when_days_are_added_or_materialised_again(built, tiny_mind):
    db, _ = built
    before = read_table(db, "features.vocabulary_ids")
    day_before = read_table(db, "silver.impressions").filter(pl.col("date") == DAYS[1])
    materialize(db, tiny_mind, "2019-11-20", selection=SELECTION)  # a later day first: new articles get new ids
    materialize(db, tiny_mind, str(DAYS[1]), selection=SELECTION)
    after = read_table(db, "features.vocabulary_ids")
    kept = before.join(after, on=["vocabulary", "token"], how="left", suffix="_after")
    assert kept.get_column("id").equals(kept.get_column("id_after"))
    grown = after.join(before, on=["vocabulary", "token"], how="anti")
    assert grown.height > 0
    assert grown.join(before.group_by("vocabulary").agg(pl.col("id").max().alias("largest")), on="vocabulary") \
        .filter(pl.col("id") <= pl.col("largest")).height == 0
    for vocabulary, ids in after.group_by("vocabulary"):
        assert sorted(ids.get_column("id")) == list(range(1, ids.height + 1)), vocabulary
    again = read_table(db, "silver.impressions").filter(pl.col("date") == DAYS[1])
    assert again.equals(day_before)
