"""Feature layer: per-day feature tables derived from bronze."""

import time

import dagster as dg
import polars as pl

from news_ai_assets.assets.bronze import BEHAVIORS, NEWS
from news_ai_assets.assets.common import (
    PARTITIONED_TABLE, column_schema, day_metadata, frames_by_day, no_rows_where, non_finite_rows, partition_days,
    preview, require_lookback_before_start_empty, run_metadata, sql_check, timed, unique_rows,
)
from news_ai_assets.compute.embeddings import (
    EMBEDDING_DESCRIPTIONS, article_texts, cached_vectors, ensure_cache, store_vectors, with_vectors,
)
from news_ai_assets.compute.interactions import INTERACTION_DESCRIPTIONS, interactions_from_behaviors
from news_ai_assets.compute.news_features import NEWS_FEATURE_DESCRIPTIONS
from news_ai_assets.compute.news_features import news_features as compute_news_features
from news_ai_assets.compute.user_features import (
    USER_FEATURE_COLUMNS, USER_FEATURE_DESCRIPTIONS, null_counts_by_family, user_features_for_day,
)
from news_ai_assets.resources import EmbeddingModel
from news_ai_assets.settings import SETTINGS
from news_ai_assets.storage import DuckDBDatabase


# Days D-W .. D, for the lookback W of NEWS_AI_LOOKBACK_DAYS (days before the first partition don't exist).
LOOKBACK_AND_DAY = dg.TimeWindowPartitionMapping(
    start_offset=-SETTINGS.lookback_days, end_offset=0, allow_nonexistent_upstream_partitions=True
)


@dg.asset(
    key=["features", "interactions"],
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={"behaviors": dg.AssetIn(
        BEHAVIORS, metadata={"columns": ["date", "impression_id", "user_id", "time", "split", "impressions"]}
    )},
    **PARTITIONED_TABLE,
)
def interactions(context: dg.AssetExecutionContext, behaviors: pl.DataFrame) -> pl.DataFrame:
    """One row per (impression, candidate) with its position and label (NULL on unlabelled days)."""
    frames = []
    for day, impressions in frames_by_day(behaviors, partition_days(context)).items():
        with timed(context, "compute") as timing:
            rows = interactions_from_behaviors(impressions)
        frames.append(rows)
        day_metadata(context, day, {
            "impressions": impressions.height,
            "clicks": int(rows.get_column("clicked").sum() or 0),
            "unlabelled_rows": rows.get_column("clicked").null_count(),
            **timing,
            "preview": preview(rows),
        })
    result = pl.concat(frames)
    run_metadata(context, {"dagster/column_schema": column_schema(result.schema, INTERACTION_DESCRIPTIONS)})
    return result


@dg.asset(
    key=["features", "user_features"],
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={
        "behaviors": dg.AssetIn(
            BEHAVIORS,
            partition_mapping=LOOKBACK_AND_DAY,
            metadata={"columns": ["date", "impression_id", "user_id", "time", "split", "history", "impressions",
                                  "impressions_count", "click_count", "click_ratio", "day_of_week", "hour_of_day"]},
        ),
        "news": dg.AssetIn(NEWS, partition_mapping=LOOKBACK_AND_DAY, metadata={"columns": ["news_id", "category", "subcategory"]}),
    },
    **PARTITIONED_TABLE,
)
def user_features(
    context: dg.AssetExecutionContext, behaviors: pl.DataFrame, news: pl.DataFrame, duckdb_database: DuckDBDatabase,
) -> pl.DataFrame:
    """Per user active on D, as of the start of D: the W days before D plus the history list, never D's labels.

    Every day of the window was checked when the inputs loaded (the IO manager refuses a day never
    materialised); days before the first partition must hold no raw impressions.
    """
    require_lookback_before_start_empty(context, duckdb_database)
    news = news.unique("news_id")
    frames = []
    for day in partition_days(context):
        with timed(context, "compute") as timing:
            features = user_features_for_day(behaviors, news, day, SETTINGS.lookback_days)
        frames.append(features)
        day_metadata(context, day, {
            "users": features.height,
            "users_without_window_activity": int((features.get_column("behavior_count") == 0).sum()),
            **{f"nulls_{family}": count for family, count in null_counts_by_family(features).items()},
            **timing,
            "preview": preview(features.select(USER_FEATURE_COLUMNS[:12])),
        })
    result = pl.concat(frames)
    run_metadata(context, {
        "lookback_days": SETTINGS.lookback_days,
        "feature_count": len(USER_FEATURE_COLUMNS) - 2,
        "dagster/column_schema": column_schema(result.schema, USER_FEATURE_DESCRIPTIONS),
    })
    return result


@dg.asset(
    key=["features", "news_features"],
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={"news": dg.AssetIn(NEWS)},
    **PARTITIONED_TABLE,
)
def news_features(context: dg.AssetExecutionContext, news: pl.DataFrame) -> pl.DataFrame:
    """Category, text statistics and entity counts per article of bronze/news[D]."""
    frames = []
    for day, articles in frames_by_day(news, partition_days(context)).items():
        with timed(context, "compute") as timing:
            features = compute_news_features(articles)
        frames.append(features)
        day_metadata(context, day, {"articles": features.height, **timing, "preview": preview(features)})
    result = pl.concat(frames)
    run_metadata(context, {"dagster/column_schema": column_schema(result.schema, NEWS_FEATURE_DESCRIPTIONS)})
    return result


@dg.asset(
    key=["features", "text_embeddings"],
    group_name="features",
    kinds={"duckdb", "pytorch"},
    ins={"news": dg.AssetIn(NEWS, metadata={"columns": ["date", "news_id", "title", "abstract"]})},
    **PARTITIONED_TABLE,
)
def text_embeddings(
    context: dg.AssetExecutionContext,
    news: pl.DataFrame,
    embedding_model: EmbeddingModel,
    duckdb_database: DuckDBDatabase,
) -> pl.DataFrame:
    """One L2-normalised vector per article of bronze/news[D]; only texts never embedded before are encoded."""
    texts = article_texts(news, embedding_model.text_fields)
    key = embedding_model.spec.cache_key
    hashes = texts.get_column("text_hash")
    with duckdb_database.connect() as conn:
        ensure_cache(conn)
        known = cached_vectors(conn, key, hashes, with_vectors=False)
        todo = texts.unique("text_hash", keep="first").join(known, on="text_hash", how="anti").sort("text_hash")
        context.log.info(f"{hashes.n_unique()} distinct texts: {known.height} cached, {todo.height} to embed")
        encoder, seconds = None, 0.0
        if todo.height:
            encoder = embedding_model.encoder(context.log)
            started = time.perf_counter()

            def progress(done: int, total: int) -> None:
                rate = done / max(time.perf_counter() - started, 1e-9)
                context.log.info(f"embedded {done}/{total} texts ({rate:.0f} texts/s)")

            todo_hashes = todo.get_column("text_hash").to_list()
            chunk = embedding_model.batch_size * 8
            for i, vectors in enumerate(
                encoder.encode(todo.get_column("text").to_list(), embedding_model.batch_size, progress, chunk)
            ):
                store_vectors(conn, key, todo_hashes[i * chunk : i * chunk + len(vectors)], vectors)
            seconds = time.perf_counter() - started
        vectors = cached_vectors(conn, key, hashes)
    dimension = len(vectors.get_column("embedding")[0]) if vectors.height else 384
    result = with_vectors(texts, vectors, dimension)
    embedded_now = set(todo.get_column("text_hash"))
    for day, articles in frames_by_day(result, partition_days(context)).items():
        day_hashes = articles.get_column("text_hash").unique()
        day_metadata(context, day, {
            "articles": articles.height,
            "distinct_texts": day_hashes.len(),
            "texts_embedded_by_this_run": int(day_hashes.is_in(embedded_now).sum()),
            "preview": preview(articles.with_columns(pl.col("embedding").arr.head(4).cast(pl.List(pl.Float32)))),
        })
    run_metadata(context, {
        "run_distinct_texts": hashes.n_unique(),
        "run_cache_hits": hashes.n_unique() - todo.height,
        "run_newly_embedded": todo.height,
        "run_texts_per_second": round(todo.height / seconds, 1) if seconds else 0.0,
        "device": encoder.device if encoder else "not loaded (all cached)",
        "model": key,
        "dagster/column_schema": column_schema(result.schema, EMBEDDING_DESCRIPTIONS),
    })
    return result


feature_checks = [
    sql_check(dg.AssetKey(["features", "interactions"]), "unique_candidates", "No (impression, candidate) twice.",
              unique_rows("features.interactions", "split, impression_id, news_id")),
    sql_check(dg.AssetKey(["features", "user_features"]), "one_row_per_user", "One row per user and day.",
              unique_rows("features.user_features", "date, user_id")),
    sql_check(dg.AssetKey(["features", "user_features"]), "features_finite", "No NaN or infinite feature.",
              non_finite_rows("features.user_features")),
    sql_check(dg.AssetKey(["features", "news_features"]), "features_finite", "No NaN or infinite feature.",
              non_finite_rows("features.news_features")),
    sql_check(
        dg.AssetKey(["features", "text_embeddings"]), "unit_vectors", "Every vector is L2-normalised and finite.",
        no_rows_where("features.text_embeddings",
                      "NOT abs(sqrt(list_dot_product(embedding::FLOAT[], embedding::FLOAT[])) - 1) < 1e-4", "bad_vectors"),
    ),
]
