"""Feature layer: per-day feature tables derived from bronze."""

import datetime as dt

import dagster as dg
import polars as pl

from news_ai_assets.assets.common import PARTITIONED_TABLE, partition_label, preview, require_materialized, timed
from news_ai_assets.compute.interactions import interactions_from_behaviors
from news_ai_assets.compute.user_features import USER_FEATURE_COLUMNS, null_counts_by_family, user_features_for_day
from news_ai_assets.settings import SETTINGS

BEHAVIORS = dg.AssetKey(["bronze", "behaviors"])
NEWS = dg.AssetKey(["bronze", "news"])


def lookback(last_offset: int) -> dg.TimeWindowPartitionMapping:
    """Days D-W .. D+last_offset, for the lookback W of NEWS_AI_LOOKBACK_DAYS (none exist before the start)."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-SETTINGS.lookback_days, end_offset=last_offset, allow_nonexistent_upstream_partitions=True
    )


@dg.asset(
    key=["features", "interactions"],
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={"behaviors": dg.AssetIn(["bronze", "behaviors"])},
    **PARTITIONED_TABLE,
)
def interactions(context: dg.AssetExecutionContext, behaviors: pl.DataFrame) -> pl.DataFrame:
    """One row per (impression, candidate) with its position and label (NULL on unlabelled days)."""
    with timed(context, "compute") as timing:
        rows = interactions_from_behaviors(behaviors)
    context.add_output_metadata(
        {
            "partitions": partition_label(context),
            "impressions": behaviors.height,
            "clicks": int(rows.get_column("clicked").sum() or 0),
            "unlabelled_rows": rows.get_column("clicked").null_count(),
            **timing,
            "preview": preview(rows),
        }
    )
    return rows


@dg.asset(
    key=["features", "user_features"],
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={
        "behaviors": dg.AssetIn(
            BEHAVIORS,
            partition_mapping=lookback(0),
            metadata={"columns": ["date", "impression_id", "user_id", "time", "split", "history", "impressions",
                                  "impressions_count", "click_count", "click_ratio", "day_of_week", "hour_of_day"]},
        ),
        "news": dg.AssetIn(NEWS, partition_mapping=lookback(0), metadata={"columns": ["news_id", "category", "subcategory"]}),
    },
    **PARTITIONED_TABLE,
)
def user_features(
    context: dg.AssetExecutionContext, behaviors: pl.DataFrame, news: pl.DataFrame
) -> pl.DataFrame:
    """Per user active on D, as of the start of D: the W days before D plus the history list, never D's labels."""
    require_materialized(context, "behaviors", BEHAVIORS)
    require_materialized(context, "news", NEWS)
    time_window = context.partition_time_window
    days = [time_window.start.date() + dt.timedelta(days=i) for i in range((time_window.end - time_window.start).days)]
    with timed(context, "compute") as timing:
        news = news.unique("news_id")
        frames = [user_features_for_day(behaviors, news, day, SETTINGS.lookback_days) for day in days]
        features = pl.concat(frames)
    context.add_output_metadata(
        {
            "partitions": partition_label(context),
            "lookback_days": SETTINGS.lookback_days,
            "users": features.height,
            "users_without_window_activity": int((features.get_column("behavior_count") == 0).sum()),
            "feature_count": len(USER_FEATURE_COLUMNS) - 2,
            **{f"nulls_{family}": count for family, count in null_counts_by_family(features).items()},
            **timing,
            "preview": preview(features.select(USER_FEATURE_COLUMNS[:12])),
        }
    )
    return features
