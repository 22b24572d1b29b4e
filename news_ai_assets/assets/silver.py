"""Silver layer: the model-ready table, and the checks that gate it.

silver/training_examples stores only what it computes (identifiers, label, cross features) in
`silver.cross_features`; the table consumers read, `silver.training_examples`, is a view that
joins the user and news features on, so the wide rows are never written a second time.
"""

import datetime as dt
import itertools
import time
from collections.abc import Iterator

import dagster as dg
import polars as pl

from news_ai_assets.assets.bronze import BEHAVIORS, NEWS
from news_ai_assets.assets.common import (
    Progress, SqlCheck, column_schema, day_metadata, in_partitions, no_rows_where, non_finite_rows, partition_days,
    preview, require_lookback_before_start_empty, run_metadata, sql_checks, stored_as, time_and_memory, unique_rows,
)
from news_ai_assets.assets.entities import ENTITY_FEATURES
from news_ai_assets.assets.features import INTERACTIONS, LOOKBACK_AND_DAY, PREVIOUS_AND_DAY, window_behaviors
from news_ai_assets.assets.versions import record_input_versions
from news_ai_assets.compute.ahead import computed_ahead
from news_ai_assets.compute.silver import (
    CROSS_COLUMNS, ID_COLUMNS, SILVER_DESCRIPTIONS, rows_as_stream, silver_for_day, wide_view_sql,
)
from news_ai_assets.settings import SETTINGS
from news_ai_assets.storage.database import Database
from news_ai_assets.storage.tables import DayRows, StoredDays

SILVER = dg.AssetKey(["silver", "training_examples"])


def _wide_schema(first: pl.DataFrame, user_features: StoredDays, news_features: StoredDays) -> pl.Schema:
    """The view's columns: the stored ones, with the user and news features joined on."""
    users, news = user_features.scan().collect_schema(), news_features.scan().collect_schema()
    return pl.Schema([
        *((c, first.schema[c]) for c in ID_COLUMNS),
        *((c, t) for c, t in users.items() if c not in ("date", "user_id")),
        *((c, t) for c, t in news.items() if c not in ("date", "news_id")),
        *((c, first.schema[c]) for c in CROSS_COLUMNS),
    ])


@dg.asset(
    code_version="1",
    key=SILVER,
    group_name="silver",
    kinds={"duckdb", "polars"},
    ins={
        "interactions": dg.AssetIn(INTERACTIONS, partition_mapping=PREVIOUS_AND_DAY),
        "candidate_stats": dg.AssetIn(["features", "candidate_stats"], partition_mapping=LOOKBACK_AND_DAY),
        "user_features": dg.AssetIn(["features", "user_features"]),
        "news_features": dg.AssetIn(["features", "news_features"]),
        "text_embeddings": dg.AssetIn(["features", "text_embeddings"], metadata={"columns": ["date", "news_id", "embedding"]}),
        "entity_features": dg.AssetIn(ENTITY_FEATURES, metadata={"columns": ["date", "news_id", "entity_embedding"]}),
        "behaviors": dg.AssetIn(BEHAVIORS, partition_mapping=LOOKBACK_AND_DAY),
        "news": dg.AssetIn(NEWS, partition_mapping=LOOKBACK_AND_DAY, metadata={"columns": ["date", "news_id", "category", "subcategory"]}),
    },
    **stored_as("cross_features", wide_view_sql("silver.cross_features", "features.user_features", "features.news_features")),
)
def training_examples(
    context: dg.AssetExecutionContext,
    interactions: StoredDays,
    candidate_stats: StoredDays,
    user_features: StoredDays,
    news_features: StoredDays,
    text_embeddings: StoredDays,
    entity_features: StoredDays,
    behaviors: StoredDays,
    news: StoredDays,
    database: Database,
) -> DayRows:
    """One row per candidate shown on D: label, user features as of D, news features, cross features.

    Computed and written a day at a time, in chunks of impressions, so a MIND-large day (~14 M rows)
    stays within a few GiB and a range run holds one day.
    """
    require_lookback_before_start_empty(context, database)
    run_metadata(context, {})
    record_input_versions(context)
    days = partition_days(context)

    def prepared(day: dt.date) -> tuple:
        """A day's inputs read and its first chunk computed (on computed_ahead's thread: no context here)."""
        started = time.perf_counter()
        day_interactions, day_embeddings = interactions.read(day, columns=ID_COLUMNS), text_embeddings.read(day)
        articles = day_interactions.select("news_id")
        facts = {
            "rows_missing_news_features": articles.join(news_features.read(day, columns=["news_id"]), on="news_id", how="anti").height,
            "rows_missing_embedding": articles.join(day_embeddings, on="news_id", how="anti").height,
        }
        chunks = cross_feature_chunks(day, day_interactions, day_interactions, day_embeddings, interactions,
                                      candidate_stats, entity_features, behaviors, news)
        return day, started, facts, next(chunks), chunks

    def day_rows():
        progress = Progress(context, "days computed and stored", len(days), "days")
        # The next day is read and set up while this one's chunks are computed and stored.
        for day, started, facts, head, chunks in computed_ahead(prepared, days):
            if facts["rows_missing_news_features"] or facts["rows_missing_embedding"]:
                context.log.warning(f"{day}: {facts['rows_missing_news_features']} candidate rows lack news features and "
                                    f"{facts['rows_missing_embedding']} an embedding; they keep NULL cross features")
            if day == days[0]:
                schema = _wide_schema(head, user_features, news_features)
                context.add_asset_metadata({"columns": len(schema), "dagster/column_schema": column_schema(schema, SILVER_DESCRIPTIONS)})
            chunks = itertools.chain([head], chunks)  # the next ones are computed while this one is stored
            yield day, rows_as_stream(_recorded(context, day, chunks, facts, started, progress))

    return DayRows(day_rows())


def cross_feature_chunks(
    day: dt.date, rows: pl.DataFrame, shows_today: pl.DataFrame, day_embeddings: pl.DataFrame, interactions: StoredDays,
    candidate_stats: StoredDays, entity_features: StoredDays, behaviors: StoredDays, news: StoredDays,
) -> Iterator[pl.DataFrame]:
    """silver_for_day over the stored inputs of `day` (silver's own and point-in-time retrieval's):
    `rows` the candidates (ID_COLUMNS), `shows_today` D's interactions, `day_embeddings` D's text
    vectors; D-1's labelled shows, the window's behaviors, news and candidate statistics read here."""
    first = day - dt.timedelta(days=SETTINGS.lookback_days)
    # Labelled shows of D-1 and D: D's are in the rows the caller has read, so only D-1's are read here.
    recent_shows = pl.concat([
        interactions.scan().filter((pl.col("date") == day - dt.timedelta(days=1)) & pl.col("clicked").is_not_null())
        .select("news_id", "time", "clicked").collect(),
        shows_today.filter(pl.col("clicked").is_not_null()).select("news_id", "time", "clicked"),
    ])
    return silver_for_day(
        rows, window_behaviors(behaviors, day), news.read(first, day), day_embeddings, entity_features.read(day),
        candidate_stats.read(first, day), recent_shows, day, SETTINGS.lookback_days,
    )


def _recorded(context, day: dt.date, chunks: Iterator[pl.DataFrame], facts: dict, started: float,
              progress: Progress) -> Iterator[pl.DataFrame]:
    """Passes a day's chunks on, then records that day's metadata: `facts`, its preview, the seconds
    its rows took to compute and store (the IO manager inserts them as they come) and the peak RSS."""
    shown = None
    for chunk in chunks:
        shown = shown or preview(chunk.select(chunk.columns[:14]))
        yield chunk
    day_metadata(context, day, {**facts, **time_and_memory("compute_and_write", time.perf_counter() - started),
                                "preview": shown})
    progress.advance()


# The checks read what this asset stores; the features joined on by the view are checked where they are stored.
SILVER_TABLE = "silver.cross_features"
silver_checks = [sql_checks(SILVER, [
    SqlCheck(
        "row_count_matches_interactions", "One silver row per candidate of features/interactions.",
        f"""SELECT s.n = i.n AS passed, s.n AS silver_rows, i.n AS interaction_rows
            FROM (SELECT count(*) AS n FROM {in_partitions(SILVER_TABLE)}) s,
                 (SELECT count(*) AS n FROM {in_partitions("features.interactions")}) i""",
    ),
    unique_rows("unique_candidates", "No (impression, candidate) twice.", SILVER_TABLE, "split, impression_id, news_id"),
    SqlCheck(
        "labels_match_split", "Labelled on train/dev days, NULL on unlabelled test days.",
        f"""SELECT count(*) FILTER (WHERE (split = 'test') <> (clicked IS NULL)) = 0 AS passed,
                   count(*) FILTER (WHERE split <> 'test' AND clicked IS NULL) AS unlabelled_train_dev_rows,
                   count(*) FILTER (WHERE split = 'test' AND clicked IS NOT NULL) AS labelled_test_rows
            FROM {in_partitions(SILVER_TABLE)}""",
    ),
    SqlCheck(
        "similarity_in_range", "history_similarity and history_entity_similarity are cosines: within [-1, 1].",
        no_rows_where(SILVER_TABLE, "history_similarity NOT BETWEEN -1 AND 1 OR history_entity_similarity NOT BETWEEN -1 AND 1",
                      "out_of_range_rows", "min(history_similarity) AS min_similarity, max(history_similarity) AS max_similarity"),
    ),
    SqlCheck(
        "popularity_windows_nested", "Shows and clicks in the 1 h window are within the 6 h one, those within the 24 h "
                                     "one; clicks never exceed shows.",
        no_rows_where(SILVER_TABLE, "NOT (candidate_impressions_1h <= candidate_impressions_6h AND candidate_impressions_6h "
                      "<= candidate_impressions_24h AND candidate_clicks_1h <= candidate_clicks_6h AND candidate_clicks_6h "
                      "<= candidate_clicks_24h AND candidate_clicks_24h <= candidate_impressions_24h)", "inconsistent_rows"),
    ),
    SqlCheck(
        "features_finite",
        "No NaN or infinite cross feature (the user and news features the view adds are checked where stored).",
        non_finite_rows(SILVER_TABLE),
    ),
    SqlCheck(
        "missing_cross_features_share",
        f"At most {SETTINGS.max_missing_cross_share:.0%} of rows lack a cross feature (NEWS_AI_MAX_MISSING_CROSS_SHARE).",
        f"""SELECT coalesce(avg((user_category_ratio IS NULL OR history_similarity IS NULL)::INT), 0) <= $bound AS passed,
                   coalesce(avg((user_category_ratio IS NULL OR history_similarity IS NULL)::INT), 0) AS missing_share,
                   $bound AS bound
            FROM {in_partitions(SILVER_TABLE)}""",
        {"bound": SETTINGS.max_missing_cross_share},
    ),
])]
