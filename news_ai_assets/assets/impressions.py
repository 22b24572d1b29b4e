"""Model inputs for neural recommenders: vocabularies of integer ids, and one row per impression."""

import dagster as dg
import polars as pl

from news_ai_assets.assets.bronze import BEHAVIORS, NEWS
from news_ai_assets.assets.common import PARTITIONED_TABLE, SqlCheck, in_partitions, preview, sql_checks
from news_ai_assets.assets.features import by_day
from news_ai_assets.compute.impressions import (
    IMPRESSION_DESCRIPTIONS, VOCABULARY_DESCRIPTIONS, article_ids, impressions_for_day, vocabulary_tokens,
)
from news_ai_assets.settings import SETTINGS
from news_ai_assets.storage.database import Database
from news_ai_assets.storage.tables import DayRows, StoredDays

VOCABULARY = dg.AssetKey(["features", "vocabulary"])
IMPRESSIONS = dg.AssetKey(["silver", "impressions"])
IDS_TABLE = ("features", "vocabulary_ids")  # every token ever given an id: the vocabularies themselves
NEWS_COLUMNS = ["date", "news_id", "category", "subcategory"]


@dg.asset(
    code_version="1",
    key=VOCABULARY,
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={"news": dg.AssetIn(NEWS, metadata={"columns": NEWS_COLUMNS})},
    **PARTITIONED_TABLE,
)
def vocabulary(context: dg.AssetExecutionContext, news: StoredDays, database: Database) -> DayRows:
    """The ids of the news ids, categories and subcategories of bronze/news[D]. A token seen for
    the first time gets the next id of its vocabulary in features.vocabulary_ids, which only grows:
    an id once given never changes, whichever day or run gives it."""
    added: dict = {}

    def compute(day) -> pl.DataFrame:
        tokens = vocabulary_tokens(news.read(day))
        added.clear()
        added.update({name: database.assign_ids(*IDS_TABLE, name, values) for name, values in tokens.items()})
        wanted = pl.concat([pl.DataFrame({"vocabulary": name, "token": values}) for name, values in tokens.items()])
        with database.connect() as conn:
            conn.register("wanted", wanted.to_arrow())
            ids = conn.sql(f"SELECT vocabulary, token, id FROM {'.'.join(IDS_TABLE)} JOIN wanted USING (vocabulary, token)").pl()
        return ids.select(pl.lit(day).alias("date"), "vocabulary", "token", "id").sort("vocabulary", "id")

    return by_day(
        context, compute,
        lambda rows: {
            **{f"{name}_tokens": rows.filter(pl.col("vocabulary") == name).height for name in added},
            **{f"{name}_ids_given_here": count for name, count in added.items()},
            "preview": preview(rows),
        },
        VOCABULARY_DESCRIPTIONS,
    )


@dg.asset(
    code_version="1",
    key=IMPRESSIONS,
    group_name="silver",
    kinds={"duckdb", "polars"},
    ins={
        "behaviors": dg.AssetIn(BEHAVIORS, metadata={"columns": ["date", "split", "impression_id", "user_id", "time",
                                                                 "history", "impressions", "click_count"]}),
        "news": dg.AssetIn(NEWS, metadata={"columns": NEWS_COLUMNS}),
        "vocabulary": dg.AssetIn(VOCABULARY),
    },
    **PARTITIONED_TABLE,
)
def impressions(context: dg.AssetExecutionContext, behaviors: StoredDays, news: StoredDays, vocabulary: StoredDays) -> DayRows:
    """One row per impression of D for NRMS-style models: the recent-K history, the candidates and
    their labels as lists, and every article as vocabulary ids (0: padding, or absent from news.tsv)."""

    def compute(day) -> pl.DataFrame:
        return impressions_for_day(behaviors.read(day), article_ids(news.read(day), vocabulary.read(day)),
                                   SETTINGS.history_size)

    return by_day(
        context, compute,
        lambda rows: {
            "impressions": rows.height,
            "unlabelled_impressions": rows.get_column("labels").null_count(),
            "histories_truncated": int((rows.get_column("history_length") > SETTINGS.history_size).sum()),
            "unknown_history_articles": int(rows.get_column("history_index").explode().eq(0).sum() or 0),
            "unknown_candidates": int(rows.get_column("candidate_index").explode().eq(0).sum() or 0),
            "preview": preview(rows.select("date", "split", "impression_id", "user_id", "history_length", "history",
                                           "candidates", "labels", "candidate_index")),
        },
        IMPRESSION_DESCRIPTIONS,
        {"history_size": SETTINGS.history_size},
        configuration={"history_size": SETTINGS.history_size},
    )


IMPRESSIONS_TABLE = "silver.impressions"
_LISTS_ALIGNED = f"""
    len(history) = least(history_length, {SETTINGS.history_size}) AND len(history_index) = len(history)
    AND len(history_category_index) = len(history) AND len(history_subcategory_index) = len(history)
    AND len(candidate_index) = len(candidates) AND len(candidate_category_index) = len(candidates)
    AND len(candidate_subcategory_index) = len(candidates) AND (labels IS NULL OR len(labels) = len(candidates))"""

impression_checks = [
    sql_checks(VOCABULARY, [
        SqlCheck("one_id_per_token", "No token with two ids and no id for two tokens.",
                 f"""SELECT count(DISTINCT (vocabulary, token)) = count(*) AND count(DISTINCT (vocabulary, id)) = count(*) AS passed,
                            count(*) - count(DISTINCT (vocabulary, token)) AS repeated_tokens,
                            count(*) - count(DISTINCT (vocabulary, id)) AS repeated_ids
                     FROM {in_partitions("features.vocabulary")}"""),
        SqlCheck("ids_never_change", "Every id of the day is the one features.vocabulary_ids holds for its token.",
                 f"""SELECT count(*) FILTER (WHERE i.id IS DISTINCT FROM v.id) = 0 AS passed,
                            count(*) FILTER (WHERE i.id IS DISTINCT FROM v.id) AS changed_ids
                     FROM {in_partitions("features.vocabulary")} v
                     LEFT JOIN {'.'.join(IDS_TABLE)} i USING (vocabulary, token)"""),
    ]),
    sql_checks(IMPRESSIONS, [
        SqlCheck(
            "one_row_per_impression", "As many rows as bronze/behaviors has impressions on the day, none twice.",
            f"""SELECT s.n = b.n AND s.n = s.distinct_n AS passed, s.n AS impression_rows, b.n AS bronze_impressions
                FROM (SELECT count(*) AS n, count(DISTINCT (split, impression_id)) AS distinct_n FROM {in_partitions(IMPRESSIONS_TABLE)}) s,
                     (SELECT count(*) AS n FROM {in_partitions("bronze.behaviors")}) b""",
        ),
        SqlCheck("lists_aligned", "Ids align with their lists; the history holds its K most recent articles; labels "
                                  "align with candidates.",
                 f"""SELECT count(*) FILTER (WHERE NOT ({_LISTS_ALIGNED})) = 0 AS passed,
                            count(*) FILTER (WHERE NOT ({_LISTS_ALIGNED})) AS misaligned_rows
                     FROM {in_partitions(IMPRESSIONS_TABLE)}"""),
        SqlCheck("labels_match_split", "Labels on train/dev impressions, NULL on unlabelled test ones.",
                 f"""SELECT count(*) FILTER (WHERE (split = 'test') <> (labels IS NULL)) = 0 AS passed,
                            count(*) FILTER (WHERE (split = 'test') <> (labels IS NULL)) AS mismatched_rows
                     FROM {in_partitions(IMPRESSIONS_TABLE)}"""),
    ]),
]
