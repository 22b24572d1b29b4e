"""Feature layer: per-day feature tables derived from bronze, computed and stored one day at a time."""

import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping

import dagster as dg
import polars as pl

from news_ai_assets.assets.bronze import BEHAVIORS, NEWS
from news_ai_assets.assets.common import (
    PARTITIONED_TABLE, Progress, SqlCheck, column_schema, day_metadata, measured, no_rows_where, non_finite_rows,
    partition_days, preview, reported_days, require_lookback_before_start_empty, run_metadata, sql_checks, stored_as,
    time_and_memory, unique_rows,
)
from news_ai_assets.assets.versions import record_input_versions
from news_ai_assets.compute.ahead import computed_ahead
from news_ai_assets.compute.embeddings import (
    CACHE_KEY, CACHE_TABLE, EMBEDDING_DESCRIPTIONS, article_texts, cache_rows, embedding_dimension,
)
from news_ai_assets.compute.interactions import INTERACTION_DESCRIPTIONS, interactions_from_behaviors
from news_ai_assets.compute.news_features import NEWS_FEATURE_DESCRIPTIONS
from news_ai_assets.compute.news_features import news_features as compute_news_features
from news_ai_assets.compute.silver import CANDIDATE_STATS_DESCRIPTIONS
from news_ai_assets.compute.silver import candidate_stats as compute_candidate_stats
from news_ai_assets.compute.user_features import (
    USER_FEATURE_COLUMNS, USER_FEATURE_DESCRIPTIONS, null_counts_by_family, user_features_for_day,
)
from news_ai_assets.resources import EmbeddingModel
from news_ai_assets.settings import SETTINGS
from news_ai_assets.storage.database import Database
from news_ai_assets.storage.tables import DayRows, StoredDays

INTERACTIONS = dg.AssetKey(["features", "interactions"])

# Days D-W .. D, for the lookback W of NEWS_AI_LOOKBACK_DAYS (days before the first partition don't exist).
LOOKBACK_AND_DAY = dg.TimeWindowPartitionMapping(
    start_offset=-SETTINGS.lookback_days, end_offset=0, allow_nonexistent_upstream_partitions=True
)
# Days D-1 .. D: the 24 hours before any time of D.
PREVIOUS_AND_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True)
# What the lookback window needs of bronze/behaviors: everything but the lists (history of D is read apart).
WINDOW_BEHAVIOR_COLUMNS = ["date", "impression_id", "user_id", "time", "split", "impressions_count", "click_count",
                           "click_ratio", "day_of_week", "hour_of_day", "clicked_news"]


def window_behaviors(behaviors: StoredDays, day: dt.date) -> pl.DataFrame:
    """Bronze behaviors of D-W .. D for day D: the window days without their history lists (only
    D's are read), so a large window stays small in memory."""
    first = day - dt.timedelta(days=SETTINGS.lookback_days)
    window = behaviors.read(first, day, WINDOW_BEHAVIOR_COLUMNS)
    today = behaviors.read(day, columns=["date", "impression_id", "split", "history"])
    return window.join(today, on=["date", "split", "impression_id"], how="left")


def by_day(
    context: dg.AssetExecutionContext, compute: Callable[[dt.date], pl.DataFrame],
    metadata: Callable[[pl.DataFrame], Mapping[str, object]], descriptions: Mapping[str, str],
    run_facts: Mapping[str, object] | None = None, schema: pl.Schema | None = None,
    configuration: Mapping[str, object] | None = None,
) -> DayRows:
    """DayRows of `compute(day)` for each day of the run, each day's metadata recorded with its
    timing, the run's `run_facts`, and the column schema (with `descriptions`): `schema`, or the
    first day's; each day's data version from its inputs' and `configuration` (versions.py). The
    next day is computed while this one is stored (computed_ahead), so `compute` and `metadata`
    run on a second thread and must not touch the context."""
    run_metadata(context, run_facts or {})
    record_input_versions(context, configuration)

    def computed(day: dt.date) -> tuple:
        started = time.perf_counter()
        rows = compute(day)
        return day, rows, metadata(rows), time.perf_counter() - started

    def days() -> Iterator:
        for index, (day, rows, facts, seconds) in enumerate(computed_ahead(computed, partition_days(context))):
            day_metadata(context, day, {**facts, **time_and_memory("compute", seconds)})
            if index == 0:
                context.add_asset_metadata({"dagster/column_schema": column_schema(schema or rows.schema, descriptions)})
            yield day, rows

    return reported_days(context, days())


@dg.asset(
    code_version="1",
    key=INTERACTIONS,
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={"behaviors": dg.AssetIn(
        BEHAVIORS, metadata={"columns": ["date", "impression_id", "user_id", "time", "split", "impressions"]}
    )},
    **PARTITIONED_TABLE,
)
def interactions(context: dg.AssetExecutionContext, behaviors: StoredDays) -> DayRows:
    """One row per (impression, candidate) with its position and label (NULL on unlabelled days)."""
    return by_day(
        context, lambda day: interactions_from_behaviors(behaviors.read(day)),
        lambda rows: {
            "impressions": rows.select(pl.struct("split", "impression_id").n_unique()).item() if rows.height else 0,
            "clicks": int(rows.get_column("clicked").sum() or 0),
            "unlabelled_rows": rows.get_column("clicked").null_count(),
            "preview": preview(rows),
        },
        INTERACTION_DESCRIPTIONS,
    )


@dg.asset(
    code_version="1",
    key=["features", "candidate_stats"],
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={"interactions": dg.AssetIn(INTERACTIONS, metadata={"columns": ["date", "news_id", "time", "clicked"]})},
    **PARTITIONED_TABLE,
)
def candidate_stats(context: dg.AssetExecutionContext, interactions: StoredDays) -> DayRows:
    """Per article shown on D: shows, labelled shows, clicks and first showing. Silver adds these
    up over its lookback window instead of exploding every window day's impressions again."""
    return by_day(
        context, lambda day: compute_candidate_stats(interactions.read(day)),
        lambda rows: {"articles": rows.height, "preview": preview(rows)}, CANDIDATE_STATS_DESCRIPTIONS,
    )


@dg.asset(
    code_version="1",
    key=["features", "user_features"],
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={
        "behaviors": dg.AssetIn(BEHAVIORS, partition_mapping=LOOKBACK_AND_DAY),
        "news": dg.AssetIn(NEWS, partition_mapping=LOOKBACK_AND_DAY, metadata={"columns": ["date", "news_id", "category", "subcategory"]}),
    },
    **PARTITIONED_TABLE,
)
def user_features(
    context: dg.AssetExecutionContext, behaviors: StoredDays, news: StoredDays, database: Database,
) -> DayRows:
    """Per user active on D, as of the start of D: the W days before D plus the history list, never D's labels.

    Every day of the window was checked when the inputs loaded (the IO manager refuses a day never
    materialised); days before the first partition must hold no raw impressions.
    """
    require_lookback_before_start_empty(context, database)

    def compute(day: dt.date) -> pl.DataFrame:
        first = day - dt.timedelta(days=SETTINGS.lookback_days)
        categories = news.read(first, day, ["news_id", "category", "subcategory"]).unique("news_id")
        return user_features_for_day(window_behaviors(behaviors, day), categories, day, SETTINGS.lookback_days)

    return by_day(
        context, compute,
        lambda features: {
            "users": features.height,
            "users_without_window_activity": int((features.get_column("behavior_count") == 0).sum()),
            **{f"nulls_{family}": count for family, count in null_counts_by_family(features).items()},
            "preview": preview(features.select(USER_FEATURE_COLUMNS[:12])),
        },
        USER_FEATURE_DESCRIPTIONS,
        {"lookback_days": SETTINGS.lookback_days, "feature_count": len(USER_FEATURE_COLUMNS) - 2},
    )


NEWS_FEATURES_VIEW = (  # each day's articles with the statistics of their version, computed once
    "SELECT d.date, d.news_id, a.category, a.subcategory, f.* EXCLUDE (article_key) FROM features.news_feature_days d "
    "JOIN bronze.articles a USING (article_key) JOIN features.article_features f USING (article_key)"
)


@dg.asset(
    code_version="1",
    key=["features", "news_features"],
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={"news": dg.AssetIn(NEWS)},
    **stored_as("news_feature_days", NEWS_FEATURES_VIEW),
)
def news_features(context: dg.AssetExecutionContext, news: StoredDays, database: Database) -> DayRows:
    """Category, text statistics and entity counts per article of bronze/news[D]. A version of an
    article gets its statistics once, ever, in features.article_features; a day stores its articles."""
    run_metadata(context, {})
    record_input_versions(context)

    def days() -> Iterator:
        for day in partition_days(context):
            with measured("compute") as timing:
                articles = news.read(day)
                missing = database.missing_keys("features", "article_features", articles.select("article_key"))
                new = articles.join(missing, on="article_key", how="semi").unique("article_key")
                database.add_new_rows("features", "article_features",
                                      compute_news_features(new).drop("date", "news_id", "category", "subcategory"), "article_key")
            shown = compute_news_features(articles.head(5)).drop("article_key")
            day_metadata(context, day, {"articles": articles.height, "statistics_computed_here": new.height, **timing,
                                        "preview": preview(shown)})
            if day == partition_days(context)[0]:
                context.add_asset_metadata({"dagster/column_schema": column_schema(shown.schema, NEWS_FEATURE_DESCRIPTIONS)})
            yield day, articles.select("date", "news_id", "article_key")

    return reported_days(context, days())


TEXT_EMBEDDINGS_VIEW = (  # each day's articles with the vector of their text, from the content-addressed cache
    "SELECT d.date, d.news_id, d.text_hash, c.embedding FROM features.text_embedding_days d "
    "JOIN features.embedding_cache c ON c.cache_key = d.cache_key AND c.text_hash = d.text_hash"
)


@dg.asset(
    code_version="1",
    key=["features", "text_embeddings"],
    group_name="features",
    kinds={"duckdb", "pytorch"},
    ins={"news": dg.AssetIn(NEWS, metadata={"columns": ["date", "news_id", "title", "abstract"]})},
    **stored_as("text_embedding_days", TEXT_EMBEDDINGS_VIEW),
)
def text_embeddings(
    context: dg.AssetExecutionContext,
    news: StoredDays,
    embedding_model: EmbeddingModel,
    database: Database,
) -> DayRows:
    """One L2-normalised vector per article of bronze/news[D]. Texts never embedded before are encoded
    first, all of the run's in one pass, into the content-addressed cache, which holds every vector
    once; a day stores which text (and model setting) each of its articles has."""
    key = embedding_model.spec.cache_key
    texts = article_texts(news.scan().unique("news_id").collect(), embedding_model.text_fields)
    hashes = texts.get_column("text_hash")
    wanted = texts.unique("text_hash", keep="first").with_columns(pl.lit(key).alias("cache_key"))
    todo = wanted.join(database.missing_keys(*CACHE_TABLE, wanted.select(CACHE_KEY)), on=CACHE_KEY, how="semi")
    todo = todo.sort("text_hash")
    context.log.info(f"{hashes.n_unique()} distinct texts: {wanted.height - todo.height} cached, {todo.height} to embed")
    encoder, seconds = None, 0.0
    if todo.height:
        encoder = embedding_model.encoder(context.log)
        started, progress = time.perf_counter(), Progress(context, "texts embedded", todo.height, "texts")
        todo_hashes, stored = todo.get_column("text_hash").to_list(), 0
        for vectors in encoder.encode(todo.get_column("text").to_list(), embedding_model.batch_size):
            database.add_new_rows(*CACHE_TABLE, cache_rows(key, todo_hashes[stored : stored + len(vectors)], vectors),
                                  CACHE_KEY)
            stored += len(vectors)
            progress.advance(len(vectors))
        seconds = time.perf_counter() - started
    with database.connect() as conn:
        dimension = embedding_dimension(conn, key)
    embedded_now = set(todo.get_column("text_hash"))

    def compute(day: dt.date) -> pl.DataFrame:
        return article_texts(news.read(day), embedding_model.text_fields).select(
            "date", "news_id", "text_hash", pl.lit(key).alias("cache_key")
        )

    return by_day(
        context, compute,
        lambda articles: {
            "articles": articles.height,
            "distinct_texts": articles.get_column("text_hash").n_unique(),
            "texts_embedded_by_this_run": int(articles.get_column("text_hash").unique().is_in(embedded_now).sum()),
            "preview": preview(articles),
        },
        EMBEDDING_DESCRIPTIONS,
        {
            "run_distinct_texts": hashes.n_unique(),
            "run_cache_hits": hashes.n_unique() - todo.height,
            "run_newly_embedded": todo.height,
            "run_texts_per_second": round(todo.height / seconds, 1) if seconds else 0.0,
            "device": encoder.device if encoder else "not loaded (all cached)",
            "model": key,
            "dimension": dimension or 0,
        },
        pl.Schema({"date": pl.Date, "news_id": pl.String, "text_hash": pl.String, "embedding": pl.List(pl.Float32)}),
        configuration={"model": key, "text_fields": embedding_model.text_fields},
    )


def _finite(table: str) -> SqlCheck:
    return SqlCheck("features_finite", "No NaN or infinite feature.", non_finite_rows(table))


feature_checks = [
    sql_checks(INTERACTIONS, [unique_rows("unique_candidates", "No (impression, candidate) twice.", "features.interactions",
                                          "split, impression_id, news_id")]),
    sql_checks(dg.AssetKey(["features", "user_features"]), [
        unique_rows("one_row_per_user", "One row per user and day.", "features.user_features", "date, user_id"),
        _finite("features.user_features"),
    ]),
    sql_checks(dg.AssetKey(["features", "news_features"]), [_finite("features.news_features")]),
    sql_checks(dg.AssetKey(["features", "text_embeddings"]), [SqlCheck(
        "unit_vectors", "Every vector is L2-normalised and finite.",
        no_rows_where("features.text_embeddings",
                      "NOT abs(sqrt(list_dot_product(embedding::FLOAT[], embedding::FLOAT[])) - 1) < 1e-4", "bad_vectors"),
    )]),
]
