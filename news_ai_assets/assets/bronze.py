"""Bronze layer: MIND files parsed into typed, daily-partitioned tables."""

import datetime as dt

import dagster as dg
import duckdb
import polars as pl

from news_ai_assets.assets.common import (
    PARTITIONED_TABLE, column_schema, counts_table, day_metadata, frames_by_day, not_emptied, partition_days,
    preview, run_metadata, sql_check, timed,
)
from news_ai_assets.compute.bronze import news_for_days
from news_ai_assets.mind.reader import (
    BEHAVIOR_DESCRIPTIONS, NEWS_DESCRIPTIONS, MindInputError, SplitDir, read_behaviors, read_news,
)
from news_ai_assets.resources import MindSource
from news_ai_assets.storage import DuckDBDatabase, replace_rows

BEHAVIORS = dg.AssetKey(["bronze", "behaviors"])
NEWS = dg.AssetKey(["bronze", "news"])


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join('?' for _ in values)})"


def _split_dirs(context: dg.AssetExecutionContext, mind: MindSource, database: DuckDBDatabase) -> list[SplitDir]:
    """The configured split folders, refusing to go on when a split read before has gone missing:
    re-materialising its days would replace them with nothing."""
    splits = mind.split_dirs(context.log)
    with database.connect() as conn:
        try:
            seen = dict(conn.execute("SELECT split, max(source_file) FROM bronze.source_days GROUP BY split").fetchall())
        except duckdb.CatalogException:
            seen = {}
    gone = {split: source for split, source in seen.items() if split not in {s.split for s in splits}}
    if gone:
        listed = ", ".join(f"{split} (read before from {source})" for split, source in sorted(gone.items()))
        raise MindInputError(
            f"The MIND folder no longer has the split(s) {listed}; re-materialising would replace their days with "
            "nothing. Restore the folder (an unmounted disk?). If the split was removed on purpose, forget it first: "
            "DELETE FROM bronze.source_days WHERE split = '<split>'."
        )
    return splits


def _reject_metadata(rejects: pl.DataFrame) -> dict:
    """Rejected lines of the source files read (whole files, not one partition)."""
    return {
        "source_rejected_lines": rejects.height,
        "source_rejects_by_reason": counts_table(rejects.with_columns(pl.col("reason").str.slice(0, 60)), "reason"),
        "rejects_table": "bronze.rejects",
    }


@dg.asset(key=BEHAVIORS, group_name="bronze", kinds={"duckdb", "polars"}, **PARTITIONED_TABLE)
def bronze_behaviors(
    context: dg.AssetExecutionContext, mind: MindSource, duckdb_database: DuckDBDatabase
) -> pl.DataFrame:
    """One row per impression of the day, from every configured MIND split; bad lines go to bronze.rejects."""
    splits = _split_dirs(context, mind, duckdb_database)
    days = partition_days(context)
    with timed(context, "run_read") as timing:
        behaviors, rejects, source_days = read_behaviors(splits, days[0], days[-1] + dt.timedelta(days=1))
    files = [str(split.file("behaviors.tsv")) for split in splits]
    with duckdb_database.connect() as conn:
        replace_rows(conn, "bronze", "rejects", rejects, _in("source_file", files), files)
        replace_rows(conn, "bronze", "source_days", source_days, _in("split", [s.split for s in splits]),
                     [s.split for s in splits])
    if rejects.height:
        context.log.warning(f"{rejects.height} malformed behaviors lines rejected; see bronze.rejects")
    for day, rows in frames_by_day(behaviors, days).items():
        day_metadata(context, day, {
            "rows_by_split": counts_table(rows, "split"),
            "users": rows.get_column("user_id").n_unique(),
            "lines_in_source_files": int(source_days.filter(pl.col("date") == day).get_column("lines").sum()),
            "preview": preview(rows),
        })
    run_metadata(context, {
        "source_files": ", ".join(files),
        **_reject_metadata(rejects),
        **timing,
        "dagster/column_schema": column_schema(behaviors.schema, BEHAVIOR_DESCRIPTIONS),
    })
    return behaviors


@dg.asset(
    key=NEWS,
    group_name="bronze",
    kinds={"duckdb", "polars"},
    ins={"behaviors": dg.AssetIn(BEHAVIORS, metadata={"columns": ["date", "history", "impressions"]})},
    **PARTITIONED_TABLE,
)
def bronze_news(
    context: dg.AssetExecutionContext, behaviors: pl.DataFrame, mind: MindSource, duckdb_database: DuckDBDatabase
) -> pl.DataFrame:
    """Every article the day's impressions show or its histories list, parsed from the union of news.tsv."""
    splits = _split_dirs(context, mind, duckdb_database)
    with timed(context, "run_read") as timing:
        news, rejects, _ = read_news(splits)
        day_news, missing = news_for_days(news, behaviors)
    files = [str(split.file("news.tsv")) for split in splits]
    with duckdb_database.connect() as conn:
        replace_rows(conn, "bronze", "rejects", rejects, _in("source_file", files), files)
    if missing.height:
        context.log.warning(
            f"{missing.height} referenced (date, news_id) pairs are absent from news.tsv; "
            "they are counted in the metadata and get NULL news features downstream"
        )
    days = partition_days(context)
    missing_by_day = frames_by_day(missing, days)
    for day, articles in frames_by_day(day_news, days).items():
        absent = missing_by_day[day].get_column("news_id")
        day_metadata(context, day, {
            "referenced_ids_missing_from_news_tsv": absent.len(),
            "missing_examples": ", ".join(absent.head(10).to_list()) or "none",
            "preview": preview(articles.drop("title_entities", "abstract_entities")),
        })
    run_metadata(context, {
        "source_files": ", ".join(files),
        "source_articles_in_news_tsv": news.height,
        **_reject_metadata(rejects),
        **timing,
        "dagster/column_schema": column_schema(day_news.schema, NEWS_DESCRIPTIONS),
    })
    return day_news


bronze_checks = [
    sql_check(BEHAVIORS, "not_emptied",
              "The day still has impressions if its previous materialisation had some (an emptied day is lost "
              "input until shown otherwise: a missing split folder, a truncated file).",
              not_emptied("bronze.behaviors")),
]
