"""User features as of the start of a day, vectorised over all users at once.

Definitions (the README's "User features" section is the same text; the tests' reference
implementation follows it line by line). For a day D and lookback W:

- active users: every user with an impression on D. From D itself only the user's history
  list is used (taken from their first impression of D); nothing else of D is read, so no
  label of D can leak.
- window: the user's impressions on days D-W .. D-1, all splits. Click-based features use
  only its labelled impressions (the test split has none), never guessed labels.
- Empty sets: counts and sums are 0; CTRs are 0 without labelled impressions (as the
  original definition of overall_ctr says); every other statistic of an empty set (mean,
  min, max, std, ratio, time) is NULL. is_recent_active is false without activity.
- Gaps are between consecutive impressions in time order, in hours; std is the population
  std (ddof=0) throughout.
"""

import datetime as dt

import polars as pl

DECAY_PER_DAY = 0.85
CTR_WINDOWS = (7, 14, 30)
BURST_GAP_HOURS = 0.5
# MIND's 18 categories; ratios over this fixed list keep the schema the same in every partition.
CATEGORY_VOCABULARY = (
    "autos", "entertainment", "finance", "foodanddrink", "games", "health", "kids", "lifestyle",
    "middleeast", "movies", "music", "news", "northamerica", "sports", "travel", "tv", "video", "weather",
)
DAY_PARTS = {"morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24), "night": (0, 6)}

HOUR = 3_600_000_000  # microseconds


def _hours(span: pl.Expr) -> pl.Expr:
    return span.dt.total_microseconds() / HOUR


def _labelled(column: str) -> pl.Expr:
    return pl.col(column).filter(pl.col("click_count").is_not_null())


def _ratio(numerator: pl.Expr, denominator: pl.Expr, empty: float | None) -> pl.Expr:
    return pl.when(denominator > 0).then(numerator / denominator).otherwise(pl.lit(empty))


def _engagement(window: pl.DataFrame, day: dt.date, lookback_days: int) -> pl.DataFrame:
    days_ago = (pl.lit(day) - pl.col("date")).dt.total_days()
    weight = pl.lit(DECAY_PER_DAY) ** days_ago
    aggregates = [
        pl.len().alias("behavior_count"),
        *[getattr(pl.col("impressions_count"), f)().alias(f"impressions_count_{f}") for f in ("mean", "min", "max", "sum")],
        *[getattr(pl.col("click_count"), f)().alias(f"click_count_{f}") for f in ("mean", "min", "max", "sum")],
        *[getattr(pl.col("click_ratio"), f)().alias(f"click_ratio_{f}") for f in ("mean", "min", "max")],
        _labelled("impressions_count").sum().alias("labelled_impressions"),
        (_labelled("click_count") * weight.filter(pl.col("click_count").is_not_null())).sum().alias("weighted_clicks"),
        (_labelled("impressions_count") * weight.filter(pl.col("click_count").is_not_null())).sum().alias("weighted_impressions"),
    ]
    for days in CTR_WINDOWS:
        recent = pl.col("click_count").is_not_null() & (days_ago <= min(days, lookback_days))
        aggregates += [
            pl.col("click_count").filter(recent).sum().alias(f"clicks_{days}d"),
            pl.col("impressions_count").filter(recent).sum().alias(f"impressions_{days}d"),
        ]
    return window.group_by("user_id").agg(aggregates)


def _temporal(window: pl.DataFrame, day_start: dt.datetime) -> pl.DataFrame:
    per_user = window.group_by("user_id").agg(
        pl.col("time").min().alias("first_activity"),
        pl.col("time").max().alias("last_activity"),
        pl.col("day_of_week").n_unique().alias("days_active"),
        pl.col("hour_of_day").n_unique().alias("hours_active"),
        *[(pl.col("day_of_week") == d).mean().alias(f"day_{d}_ratio") for d in range(7)],
        *[pl.col("hour_of_day").is_between(lo, hi, closed="left").mean().alias(f"{part}_ratio")
          for part, (lo, hi) in DAY_PARTS.items()],
    ).with_columns(
        _hours(pl.col("last_activity") - pl.col("first_activity")).alias("activity_duration_hours"),
        (_hours(pl.lit(day_start) - pl.col("last_activity")) / 24).alias("days_since_last_activity"),
    )
    gaps = (
        window.select("user_id", "time")
        .sort("user_id", "time")
        .select("user_id", _hours(pl.col("time").diff().over("user_id")).alias("gap"))
        .drop_nulls("gap")
        .group_by("user_id")
        .agg(
            pl.col("gap").mean().alias("avg_hours_between"),
            pl.col("gap").min().alias("min_hours_between"),
            pl.col("gap").max().alias("max_hours_between"),
            pl.col("gap").std(ddof=0).alias("std_hours_between"),
            (pl.col("gap") < BURST_GAP_HOURS).mean().alias("bursty_session_ratio"),
        )
    )
    day_gaps = (
        window.select("user_id", "date").unique().sort("user_id", "date")
        .select("user_id", (pl.col("date").diff().over("user_id")).dt.total_days().alias("gap"))
        .drop_nulls("gap")
        .group_by("user_id")
        .agg((1 / (1 + pl.col("gap").std(ddof=0))).alias("engagement_consistency"))
    )
    return (
        per_user.join(gaps, on="user_id", how="left")
        .join(day_gaps, on="user_id", how="left")
        .join(_most_frequent(window, "user_id", "day_of_week", "most_active_day"), on="user_id", how="left")
        .join(_most_frequent(window, "user_id", "hour_of_day", "most_active_hour"), on="user_id", how="left")
    )


def _most_frequent(frame: pl.DataFrame, by: str, column: str, name: str) -> pl.DataFrame:
    """Per `by`, the most frequent value of `column`; ties go to the smallest value."""
    return (
        frame.group_by(by, column).len()
        .sort(by, "len", column, descending=[False, True, False])
        .group_by(by, maintain_order=True).first()
        .select(by, pl.col(column).alias(name))
    )


def lookback_window(behaviors: pl.DataFrame, day: dt.date, lookback_days: int) -> pl.DataFrame:
    return behaviors.filter(pl.col("date").is_between(day - dt.timedelta(days=lookback_days), day, closed="left"))


def active_users(behaviors: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """user_id, history of every user active on `day`; the history of their first impression that day."""
    return (
        behaviors.filter(pl.col("date") == day)
        .select("user_id", "time", "split", "impression_id", "history")
        .sort("user_id", "time", "split", "impression_id")
        .group_by("user_id", maintain_order=True)
        .first()
        .select("user_id", "history")
    )


def content_items(users: pl.DataFrame, window: pl.DataFrame) -> pl.DataFrame:
    """user_id, news_id: each user's history list plus the articles they clicked in the window."""
    clicked = window.select("user_id", pl.col("clicked_news").alias("news_id"))
    items = pl.concat([users.select("user_id", pl.col("history").alias("news_id")), clicked]).explode("news_id")
    return items.drop_nulls("news_id").join(users.select("user_id"), on="user_id", how="semi")


def _content(users: pl.DataFrame, window: pl.DataFrame, news: pl.DataFrame) -> pl.DataFrame:
    """Category preferences over the history list plus the articles clicked in the window."""
    items = content_items(users, window)
    total = items.group_by("user_id").agg(pl.len().alias("total_content_interactions"))
    # Categories as their dense rank in sorted order while counting: integers compare as the strings do
    # (the same ties, the same order), so the top category and the ratios are unchanged; names come back at the end.
    coded = news.select("news_id", *[pl.col(c).rank("dense").alias(c) for c in ("category", "subcategory")])
    names = {c: pl.DataFrame({c: coded.get_column(c), f"{c}_name": news.get_column(c)}).unique(c)
             for c in ("category", "subcategory")}
    vocabulary = names["category"].filter(pl.col("category_name").is_in(CATEGORY_VOCABULARY))
    code_of = dict(zip(vocabulary.get_column("category_name"), vocabulary.get_column("category"), strict=True))
    known = items.join(coded, on="news_id", how="inner")
    counts = known.group_by("user_id", "category").len()
    diversity = (
        counts.with_columns(p=pl.col("len") / pl.col("len").sum().over("user_id"))
        .group_by("user_id")
        .agg((-(pl.col("p") * pl.col("p").log(2)).sum()).alias("category_diversity"))
    )
    ratios = known.group_by("user_id").agg(
        *[pl.col("category").is_in([code_of[c]] if c in code_of else []).mean().alias(f"category_ratio_{c}")
          for c in CATEGORY_VOCABULARY],
        (~pl.col("category").is_in(list(code_of.values()))).mean().alias("category_ratio_other"),
    )
    top = [
        _most_frequent(known, "user_id", column, column).join(names[column], on=column, how="left")
        .select("user_id", pl.col(f"{column}_name").alias(name))
        for column, name in (("category", "top_category"), ("subcategory", "top_subcategory"))
    ]
    return (
        total.join(diversity, on="user_id", how="left")
        .join(top[0], on="user_id", how="left")
        .join(top[1], on="user_id", how="left")
        .join(ratios, on="user_id", how="left")
    )


FLOAT_FEATURES = [
    "impressions_count_mean", "click_count_mean", "click_ratio_mean", "click_ratio_min", "click_ratio_max",
    "overall_ctr", "activity_duration_hours", "activity_frequency", "avg_hours_between", "min_hours_between",
    "max_hours_between", "std_hours_between", "bursty_session_ratio", "days_since_last_activity",
    *[f"day_{d}_ratio" for d in range(7)], *[f"{part}_ratio" for part in DAY_PARTS],
    "category_diversity", *[f"category_ratio_{c}" for c in CATEGORY_VOCABULARY], "category_ratio_other",
    *[f"ctr_{d}d" for d in CTR_WINDOWS], "engagement_consistency", "recency_weighted_ctr",
]
FEATURE_FAMILIES = {
    "engagement": [
        "behavior_count", "impressions_count_mean", "impressions_count_min", "impressions_count_max",
        "impressions_count_sum", "click_count_mean", "click_count_min", "click_count_max", "click_count_sum",
        "click_ratio_mean", "click_ratio_min", "click_ratio_max", "overall_ctr", "history_length",
    ],
    "temporal": [
        "first_activity", "last_activity", "activity_duration_hours", "days_active", "most_active_day",
        "hours_active", "most_active_hour", "activity_frequency", "avg_hours_between", "min_hours_between",
        "max_hours_between", "std_hours_between", "bursty_session_ratio", "days_since_last_activity",
        "is_recent_active", *[f"day_{d}_ratio" for d in range(7)], *[f"{part}_ratio" for part in DAY_PARTS],
    ],
    "content": [
        "total_content_interactions", "category_diversity", "top_category", "top_subcategory",
        *[f"category_ratio_{c}" for c in CATEGORY_VOCABULARY], "category_ratio_other",
    ],
    "engagement_pattern": [*[f"ctr_{d}d" for d in CTR_WINDOWS], "engagement_consistency", "recency_weighted_ctr"],
}
USER_FEATURE_COLUMNS = ["date", "user_id", *[c for family in FEATURE_FAMILIES.values() for c in family]]

_WINDOW = "in the window (days D-W .. D-1)"
_OF_LABELLED = f"over labelled impressions {_WINDOW}"
_EMPTY_NULL = "; NULL without window activity"
# One line per column, shown in the UI's Columns table; the README's definitions in short.
USER_FEATURE_DESCRIPTIONS = {
    "date": "The partition: day D. Features are as of the start of D.",
    "user_id": "MIND user id; every user with an impression on D.",
    "behavior_count": f"Impressions of the user {_WINDOW}, all splits.",
    **{f"impressions_count_{f}": f"{f.capitalize()} of candidates per impression {_WINDOW}"
       + ("" if f == "sum" else _EMPTY_NULL) + "." for f in ("mean", "min", "max", "sum")},
    **{f"click_count_{f}": f"{f.capitalize()} of clicks per impression {_OF_LABELLED}"
       + ("" if f == "sum" else "; NULL without labelled impressions") + "." for f in ("mean", "min", "max", "sum")},
    **{f"click_ratio_{f}": f"{f.capitalize()} of clicks / candidates per impression {_OF_LABELLED}; NULL without any."
       for f in ("mean", "min", "max")},
    "overall_ctr": f"Clicks / shown candidates {_OF_LABELLED}; 0 without any.",
    "history_length": "Length of the user's history list on D (their first impression of D).",
    "first_activity": f"Time of the first impression {_WINDOW}{_EMPTY_NULL}.",
    "last_activity": f"Time of the last impression {_WINDOW}{_EMPTY_NULL}.",
    "activity_duration_hours": f"Hours from first to last activity{_EMPTY_NULL}.",
    "days_active": f"Distinct weekdays with an impression {_WINDOW}; 0 without activity.",
    "most_active_day": f"Weekday (0 = Monday) with most impressions, ties to the smallest{_EMPTY_NULL}.",
    "hours_active": f"Distinct hours of the day with an impression {_WINDOW}; 0 without activity.",
    "most_active_hour": f"Hour of the day with most impressions, ties to the smallest{_EMPTY_NULL}.",
    "activity_frequency": "behavior_count / max(1, whole days from first to last activity); 0 without activity.",
    "avg_hours_between": "Mean hours between consecutive impressions; NULL with fewer than two.",
    "min_hours_between": "Smallest gap in hours between consecutive impressions; NULL with fewer than two.",
    "max_hours_between": "Largest gap in hours between consecutive impressions; NULL with fewer than two.",
    "std_hours_between": "Population std of the gaps between consecutive impressions; NULL with fewer than two.",
    "bursty_session_ratio": f"Share of gaps under {BURST_GAP_HOURS} h; NULL with fewer than two impressions.",
    "days_since_last_activity": f"Days from the last impression to the start of D{_EMPTY_NULL}.",
    "is_recent_active": "days_since_last_activity <= 1; false without activity.",
    **{f"day_{d}_ratio": f"Share of window impressions on weekday {d} (0 = Monday){_EMPTY_NULL}." for d in range(7)},
    **{f"{part}_ratio": f"Share of window impressions in hours [{lo}, {hi}){_EMPTY_NULL}."
       for part, (lo, hi) in DAY_PARTS.items()},
    "total_content_interactions": f"Content items: history list entries plus articles clicked {_WINDOW}.",
    "category_diversity": "Shannon entropy (log2) of the categories of content items found in news.tsv; NULL without any.",
    "top_category": "Most frequent category among content items, ties alphabetical; NULL without any.",
    "top_subcategory": "Most frequent subcategory among content items, ties alphabetical; NULL without any.",
    **{f"category_ratio_{c}": f"Share of content items (with a known category) in category {c}; NULL without any."
       for c in CATEGORY_VOCABULARY},
    "category_ratio_other": "Share of content items in a category outside MIND's 18; NULL without any.",
    **{f"ctr_{d}d": f"Clicks / shown candidates over labelled impressions of the last {d} days before D, "
       "clipped to the window; 0 without any." for d in CTR_WINDOWS},
    "engagement_consistency": "1 / (1 + population std of the day gaps between active days); NULL with under two active days.",
    "recency_weighted_ctr": f"CTR with each labelled impression weighted {DECAY_PER_DAY}^(days before D); 0 without any.",
}

_TYPES = {
    **{c: pl.Float32 for c in FLOAT_FEATURES},
    **{c: pl.Int32 for c in ["behavior_count", "impressions_count_sum", "click_count_sum", "total_content_interactions",
                             "impressions_count_min", "impressions_count_max", "click_count_min", "click_count_max",
                             "history_length"]},
    **{c: pl.Int8 for c in ["days_active", "most_active_day", "hours_active", "most_active_hour"]},
}


def user_features_for_day(behaviors: pl.DataFrame, news: pl.DataFrame, day: dt.date, lookback_days: int) -> pl.DataFrame:
    """One row per user active on `day`.

    behaviors: bronze behaviors of (at least) days day-W .. day; of `day` itself only user_id,
      time, split, impression_id and history are read, and of the window days all but history.
    news: news_id, category, subcategory of the articles those reference (one row per id).
    """
    # Each active user as a 32-bit code from here on: grouping, joining and sorting ~8 M history items (a
    # MIND-large day) by an integer instead of a string; mapped back to user_id at the end.
    codes = active_users(behaviors, day).with_row_index("code")
    users = codes.drop("user_id").rename({"code": "user_id"})
    window = (lookback_window(behaviors, day, lookback_days).join(codes.select("user_id", "code"), on="user_id")
              .drop("user_id").rename({"code": "user_id"}))
    day_start = dt.datetime.combine(day, dt.time())
    features = (
        users.with_columns(pl.col("history").list.len().alias("history_length"))
        .join(_engagement(window, day, lookback_days), on="user_id", how="left")
        .join(_temporal(window, day_start), on="user_id", how="left")
        .join(_content(users, window, news), on="user_id", how="left")
        .with_columns(
            pl.col("behavior_count", "impressions_count_sum", "click_count_sum", "labelled_impressions",
                   "days_active", "hours_active",
                   "weighted_clicks", "weighted_impressions", "total_content_interactions",
                   *[f"clicks_{d}d" for d in CTR_WINDOWS], *[f"impressions_{d}d" for d in CTR_WINDOWS]).fill_null(0),
        )
        .with_columns(
            _ratio(pl.col("click_count_sum"), pl.col("labelled_impressions"), 0.0).alias("overall_ctr"),
            (pl.col("behavior_count") / pl.max_horizontal(1, (pl.col("activity_duration_hours") / 24).floor().fill_null(0)))
            .alias("activity_frequency"),
            (pl.col("days_since_last_activity") <= 1).fill_null(False).alias("is_recent_active"),
            *[_ratio(pl.col(f"clicks_{d}d"), pl.col(f"impressions_{d}d"), 0.0).alias(f"ctr_{d}d") for d in CTR_WINDOWS],
            _ratio(pl.col("weighted_clicks"), pl.col("weighted_impressions"), 0.0).alias("recency_weighted_ctr"),
            pl.lit(day).alias("date"),
        )
    )
    named = features.rename({"user_id": "code"}).join(codes.select("code", "user_id"), on="code")
    return named.select(USER_FEATURE_COLUMNS).cast(_TYPES).sort("user_id")


def null_counts_by_family(features: pl.DataFrame) -> dict[str, int]:
    return {
        family: int(features.select(pl.col(columns).null_count()).sum_horizontal().item())
        for family, columns in FEATURE_FAMILIES.items()
    }

