"""Silver layer: the model-ready table, and the checks that gate it."""

import datetime as dt
import itertools
import time
from collections.abc import Iterator

import dagster as dg
import polars as pl
import pyarrow as pa

from news_ai_assets.assets.bronze import BEHAVIORS, NEWS
from news_ai_assets.assets.common import (
    PARTITIONED_TABLE, column_schema, day_metadata, in_partitions, no_rows_where, non_finite_rows, partition_days,
    preview, require_lookback_before_start_empty, run_metadata, sql_check, unique_rows,
)
from news_ai_assets.assets.features import LOOKBACK_AND_DAY
from news_ai_assets.compute.silver import SILVER_DESCRIPTIONS, daily_candidate_stats, silver_for_day, silver_stream
from news_ai_assets.settings import SETTINGS
from news_ai_assets.storage import DuckDBDatabase

SILVER = dg.AssetKey(["silver", "training_examples"])
INTERACTIONS = dg.AssetKey(["features", "interactions"])


def _with_day_metadata(
    context: dg.AssetExecutionContext, day: dt.date, chunks: Iterator[pl.DataFrame], facts: dict
) -> Iterator[pl.DataFrame]:
    """Passes a day's chunks on, then records that day's metadata: its preview and the seconds
    its rows took to compute and write (the stream is consumed by the IO manager's insert)."""
    started, shown = time.perf_counter(), None
    for chunk in chunks:
        shown = shown or preview(chunk.select(chunk.columns[:14]))
        yield chunk
    day_metadata(context, day, {**facts, "compute_and_write_seconds": round(time.perf_counter() - started, 3),
                                "preview": shown})


@dg.asset(
    key=SILVER,
    group_name="silver",
    kinds={"duckdb", "polars"},
    ins={
        "interactions": dg.AssetIn(INTERACTIONS),
        "user_features": dg.AssetIn(["features", "user_features"]),
        "news_features": dg.AssetIn(["features", "news_features"]),
        "text_embeddings": dg.AssetIn(["features", "text_embeddings"], metadata={"columns": ["date", "news_id", "embedding"]}),
        "behaviors": dg.AssetIn(
            BEHAVIORS, partition_mapping=LOOKBACK_AND_DAY,
            metadata={"columns": ["date", "impression_id", "user_id", "time", "split", "history", "impressions", "click_count"]},
        ),
        "news": dg.AssetIn(NEWS, partition_mapping=LOOKBACK_AND_DAY, metadata={"columns": ["news_id", "category", "subcategory"]}),
    },
    **PARTITIONED_TABLE,
)
def training_examples(
    context: dg.AssetExecutionContext,
    interactions: pl.DataFrame,
    user_features: pl.DataFrame,
    news_features: pl.DataFrame,
    text_embeddings: pl.DataFrame,
    behaviors: pl.DataFrame,
    news: pl.DataFrame,
    duckdb_database: DuckDBDatabase,
) -> pa.RecordBatchReader:
    """One row per candidate shown on D: label, user features as of D, news features, cross features.

    Computed and written in chunks of impressions, so a MIND-large day stays within a few GiB.
    """
    require_lookback_before_start_empty(context, duckdb_database)
    no_news = interactions.join(news_features, on=["date", "news_id"], how="anti").group_by("date").len()
    no_embedding = interactions.join(text_embeddings, on=["date", "news_id"], how="anti").group_by("date").len()
    if no_news.height or no_embedding.height:
        context.log.warning(
            f"{no_news.get_column('len').sum()} candidate rows lack news features and "
            f"{no_embedding.get_column('len').sum()} lack an embedding (articles absent from news.tsv); "
            "they keep NULL cross features"
        )

    def count_on(counts: pl.DataFrame, day: dt.date) -> int:
        return int(counts.filter(pl.col("date") == day).get_column("len").sum())

    daily_candidates = daily_candidate_stats(behaviors)
    chunks = itertools.chain.from_iterable(
        _with_day_metadata(
            context, day,
            silver_for_day(interactions, user_features, news_features, text_embeddings, behaviors, news, day,
                           SETTINGS.lookback_days, daily_candidates),
            {"rows_missing_news_features": count_on(no_news, day), "rows_missing_embedding": count_on(no_embedding, day)},
        )
        for day in partition_days(context)
    )
    first = next(chunks)
    run_metadata(context, {"columns": first.width, "dagster/column_schema": column_schema(first.schema, SILVER_DESCRIPTIONS)})
    return silver_stream(itertools.chain([first], chunks))


SILVER_TABLE = "silver.training_examples"
silver_checks = [
    sql_check(
        SILVER, "row_count_matches_interactions", "One silver row per candidate of features/interactions.",
        f"""SELECT s.n = i.n AS passed, s.n AS silver_rows, i.n AS interaction_rows
            FROM (SELECT count(*) AS n FROM {in_partitions(SILVER_TABLE)}) s,
                 (SELECT count(*) AS n FROM {in_partitions("features.interactions")}) i""",
    ),
    sql_check(SILVER, "unique_candidates", "No (impression, candidate) twice.",
              unique_rows(SILVER_TABLE, "split, impression_id, news_id")),
    sql_check(
        SILVER, "labels_match_split", "Labelled on train/dev days, NULL on unlabelled test days.",
        f"""SELECT count(*) FILTER (WHERE (split = 'test') <> (clicked IS NULL)) = 0 AS passed,
                   count(*) FILTER (WHERE split <> 'test' AND clicked IS NULL) AS unlabelled_train_dev_rows,
                   count(*) FILTER (WHERE split = 'test' AND clicked IS NOT NULL) AS labelled_test_rows
            FROM {in_partitions(SILVER_TABLE)}""",
    ),
    sql_check(
        SILVER, "similarity_in_range", "history_similarity is a cosine: within [-1, 1].",
        no_rows_where(SILVER_TABLE, "history_similarity NOT BETWEEN -1 AND 1", "out_of_range_rows",
                      "min(history_similarity) AS min_similarity, max(history_similarity) AS max_similarity"),
    ),
    sql_check(SILVER, "features_finite", "No NaN or infinite feature.", non_finite_rows(SILVER_TABLE)),
    sql_check(
        SILVER, "missing_cross_features_share",
        f"At most {SETTINGS.max_missing_cross_share:.0%} of rows lack a cross feature (NEWS_AI_MAX_MISSING_CROSS_SHARE).",
        f"""SELECT coalesce(avg((user_category_ratio IS NULL OR history_similarity IS NULL)::INT), 0) <= $bound AS passed,
                   coalesce(avg((user_category_ratio IS NULL OR history_similarity IS NULL)::INT), 0) AS missing_share,
                   $bound AS bound
            FROM {in_partitions(SILVER_TABLE)}""",
        params={"bound": SETTINGS.max_missing_cross_share},
    ),
]
