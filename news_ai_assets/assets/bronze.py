"""Bronze layer: MIND files parsed into typed, daily-partitioned tables."""

import dagster as dg
import polars as pl

from news_ai_assets.assets.common import PARTITIONED_TABLE, counts_table, partition_label, preview, timed
from news_ai_assets.compute.bronze import news_for_days
from news_ai_assets.mind.reader import SplitDir, read_behaviors, read_news
from news_ai_assets.resources import MindSource
from news_ai_assets.storage import DuckDBDatabase, replace_rows


def _store_rejects(database: DuckDBDatabase, splits: list[SplitDir], file_name: str, rejects: pl.DataFrame):
    """Replaces the rejects recorded for these files: a file's rejects depend on its content only."""
    files = [str(split.file(file_name)) for split in splits]
    with database.connect() as conn:
        replace_rows(conn, "bronze", "rejects", rejects, f"source_file IN ({', '.join('?' for _ in files)})", files)


def _reject_metadata(rejects: pl.DataFrame) -> dict:
    return {
        "rejected_lines": rejects.height,
        "rejects_by_reason": counts_table(rejects.with_columns(pl.col("reason").str.slice(0, 60)), "reason"),
        "rejects_table": "bronze.rejects",
    }


@dg.asset(key=["bronze", "behaviors"], group_name="bronze", kinds={"duckdb", "polars"}, **PARTITIONED_TABLE)
def bronze_behaviors(
    context: dg.AssetExecutionContext, mind: MindSource, duckdb_database: DuckDBDatabase
) -> pl.DataFrame:
    """One row per impression of the day, from every configured MIND split; bad lines go to bronze.rejects."""
    window = context.partition_time_window
    splits = mind.split_dirs(context.log)
    with timed(context, "read") as timing:
        behaviors, rejects = read_behaviors(splits, window.start.date(), window.end.date())
    _store_rejects(duckdb_database, splits, "behaviors.tsv", rejects)
    if rejects.height:
        context.log.warning(f"{rejects.height} malformed behaviors lines rejected; see bronze.rejects")
    context.add_output_metadata(
        {
            "partitions": partition_label(context),
            "sources": ", ".join(str(s.path) for s in splits),
            "rows_by_split": counts_table(behaviors, "split"),
            "users": behaviors.get_column("user_id").n_unique(),
            **_reject_metadata(rejects),
            **timing,
            "preview": preview(behaviors),
        }
    )
    return behaviors


@dg.asset(
    key=["bronze", "news"],
    group_name="bronze",
    kinds={"duckdb", "polars"},
    ins={"behaviors": dg.AssetIn(["bronze", "behaviors"], metadata={"columns": ["date", "history", "impressions"]})},
    **PARTITIONED_TABLE,
)
def bronze_news(
    context: dg.AssetExecutionContext, behaviors: pl.DataFrame, mind: MindSource, duckdb_database: DuckDBDatabase
) -> pl.DataFrame:
    """Every article the day's impressions show or its histories list, parsed from the union of news.tsv."""
    splits = mind.split_dirs(context.log)
    with timed(context, "read") as timing:
        news, rejects = read_news(splits)
        day_news, missing = news_for_days(news, behaviors)
    _store_rejects(duckdb_database, splits, "news.tsv", rejects)
    if missing.height:
        context.log.warning(
            f"{missing.height} referenced (date, news_id) pairs are absent from news.tsv; "
            "they are counted in the metadata and get NULL news features downstream"
        )
    context.add_output_metadata(
        {
            "partitions": partition_label(context),
            "articles_in_news_tsv": news.height,
            "referenced_ids_missing_from_news_tsv": missing.height,
            "missing_examples": ", ".join(missing.get_column("news_id").head(10).to_list()) or "none",
            **_reject_metadata(rejects),
            **timing,
            "preview": preview(day_news.drop("title_entities", "abstract_entities")),
        }
    )
    return day_news
