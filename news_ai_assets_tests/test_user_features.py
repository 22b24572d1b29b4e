import datetime as dt

import polars as pl
import pytest

from news_ai_assets.compute import reference
from news_ai_assets.compute.user_features import USER_FEATURE_COLUMNS, user_features_for_day
from news_ai_assets.mind.reader import discover_splits, read_behaviors, read_news
from news_ai_assets_tests.compare import assert_rows_match
from news_ai_assets_tests.fuzz import examples

ALL_DAYS = (dt.date(2019, 11, 1), dt.date(2019, 12, 1))


def fast_features(behaviors: pl.DataFrame, news: pl.DataFrame, day: dt.date, lookback: int) -> pl.DataFrame:
    return user_features_for_day(behaviors, news, day, lookback)


def check_against_reference(behaviors: pl.DataFrame, news: pl.DataFrame, day: dt.date, lookback: int):
    fast = fast_features(behaviors, news, day, lookback)
    categories = {r["news_id"]: (r["category"], r["subcategory"]) for r in news.iter_rows(named=True)}
    expected = reference.user_features(behaviors.to_dicts(), categories, day, lookback)
    assert fast.columns == USER_FEATURE_COLUMNS
    assert_rows_match(fast, list(expected.values()), key=["user_id"])
    return fast


@pytest.fixture(scope="module")
def generated(tiny_mind):
    splits = discover_splits(tiny_mind)
    return read_behaviors(splits, *ALL_DAYS)[0], read_news(splits)[0]


@pytest.mark.parametrize("day", [9, 10, 14, 15, 16, 19, 22])
def test_generated_days_match_reference(generated, day):
    behaviors, news = generated
    fast = check_against_reference(behaviors, news, dt.date(2019, 11, day), lookback=7)
    assert fast.height == behaviors.filter(pl.col("date") == dt.date(2019, 11, day)).get_column("user_id").n_unique()


@pytest.mark.parametrize("lookback", [1, 3, 14])
def test_other_lookbacks_match_reference(generated, lookback):
    check_against_reference(*generated, dt.date(2019, 11, 17), lookback)


def test_first_day_has_empty_windows(generated):
    fast = fast_features(*generated, dt.date(2019, 11, 9), 7)
    assert (fast.get_column("behavior_count") == 0).all()
    assert fast.get_column("overall_ctr").to_list() == [0.0] * fast.height
    assert fast.get_column("click_count_mean").null_count() == fast.height
    assert fast.get_column("top_category").null_count() < fast.height  # histories still count


def test_test_days_use_labels_from_the_window_only(generated):
    behaviors, news = generated
    day = dt.date(2019, 11, 22)  # the window is all test days: no labels at all
    fast = fast_features(behaviors, news, day, 6)
    assert fast.get_column("click_count_sum").sum() == 0 and (fast.get_column("ctr_7d") == 0).all()
    assert (fast.get_column("behavior_count") > 0).any()


def test_real_rows_match_reference(real_mind):
    splits = discover_splits(real_mind)
    behaviors, news = read_behaviors(splits, *ALL_DAYS)[0], read_news(splits)[0]
    for day in [dt.date(2019, 11, 12), dt.date(2019, 11, 14)]:
        fast = check_against_reference(behaviors, news, day, 7)
        assert (fast.get_column("behavior_count") > 0).any()


def test_day_d_itself_changes_nothing(generated):
    """Rewrite day D's impressions (labels, candidates, times, counts): features stay identical."""
    behaviors, news = generated
    day = dt.date(2019, 11, 15)
    before = fast_features(behaviors, news, day, 7)
    is_today = pl.col("date") == day
    tampered = behaviors.with_columns(
        pl.when(is_today).then(pl.col("impressions").list.eval(
            pl.struct(pl.lit("N1").alias("news_id"), pl.lit(True).alias("clicked")))).otherwise(pl.col("impressions")),
        pl.when(is_today).then(99).otherwise(pl.col("click_count")).cast(pl.Int16).alias("click_count"),
        pl.when(is_today).then(pl.col("time").dt.offset_by("7h")).otherwise(pl.col("time")).alias("time"),
        pl.when(is_today).then(0).otherwise(pl.col("hour_of_day")).cast(pl.Int8).alias("hour_of_day"),
    )
    assert fast_features(tampered, news, day, 7).equals(before)


NEWS_IDS = [f"N{i}" for i in range(1, 9)]
TINY_NEWS = pl.DataFrame(
    {"news_id": NEWS_IDS[:6], "category": ["news", "sports", "news", "kids", "unknowncat", "tv"],
     "subcategory": ["a", "b", "a", "c", "d", "e"]}
)  # N7 and N8 are missing from news.tsv, as real referenced articles often are


def _impression(draw, index: int, day: dt.date) -> dict:
    from hypothesis import strategies as st

    labelled = draw(st.booleans())
    candidates = draw(st.lists(st.sampled_from(NEWS_IDS), min_size=1, max_size=5, unique=True))
    clicks = [draw(st.booleans()) if labelled else None for _ in candidates]
    # Few distinct times, so identical timestamps and zero gaps are common.
    time = dt.datetime.combine(day, dt.time(draw(st.sampled_from([0, 5, 6, 12, 18])), draw(st.sampled_from([0, 30]))))
    click_count = sum(clicks) if labelled else None
    return {
        "date": day, "impression_id": index, "user_id": draw(st.sampled_from(["U1", "U2"])), "time": time,
        "split": "train" if labelled else "test",
        "history": draw(st.lists(st.sampled_from(NEWS_IDS), max_size=4, unique=True)),
        "impressions": [{"news_id": n, "clicked": c} for n, c in zip(candidates, clicks)],
        "history_length": 0, "impressions_count": len(candidates), "click_count": click_count,
        "clicked_news": [n for n, c in zip(candidates, clicks) if c],
        "click_ratio": click_count / len(candidates) if labelled else None,
        "day_of_week": time.weekday(), "hour_of_day": time.hour,
    }


BEHAVIOR_SCHEMA = {
    "date": pl.Date, "impression_id": pl.Int32, "user_id": pl.String, "time": pl.Datetime("us"), "split": pl.String,
    "history": pl.List(pl.String), "impressions": pl.List(pl.Struct({"news_id": pl.String, "clicked": pl.Boolean})),
    "history_length": pl.Int32, "impressions_count": pl.Int32, "click_count": pl.Int32,
    "clicked_news": pl.List(pl.String), "click_ratio": pl.Float32,
    "day_of_week": pl.Int8, "hour_of_day": pl.Int8,
}


def test_small_generated_cases_match_reference():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    day = dt.date(2019, 11, 12)

    @st.composite
    def cases(draw):
        offsets = draw(st.lists(st.integers(0, 4), min_size=0, max_size=16))
        rows = [_impression(draw, i + 1, day - dt.timedelta(days=o)) for i, o in enumerate(offsets)]
        rows.append(_impression(draw, len(rows) + 1, day))  # someone is active on D
        return rows, draw(st.sampled_from([1, 2, 7]))

    @settings(max_examples=examples(200), deadline=None)
    @given(cases())
    def check(case):
        rows, lookback = case
        behaviors = pl.DataFrame(rows, schema=BEHAVIOR_SCHEMA).with_columns(
            pl.col("history").list.len().cast(pl.Int16).alias("history_length"))
        check_against_reference(behaviors, TINY_NEWS, day, lookback)

    check()
