"""Bronze layer: MIND files parsed into typed, daily-partitioned tables.

Each raw file is parsed once per version into staged tables (storage/staging.py); a run then writes its
days one at a time as filters of the staged rows.
"""

import dagster as dg
import polars as pl

from news_ai_assets.assets.common import (
    PARTITIONED_TABLE, Progress, SqlCheck, column_schema, counts_table, day_metadata, not_emptied, partition_days,
    preview, reported_days, run_metadata, sql_checks, stored_as, timed,
)
from news_ai_assets.assets.versions import behaviors_day_version, record_versions, rows_version
from news_ai_assets.compute.bronze import news_for_days
from news_ai_assets.mind.reader import BEHAVIOR_DESCRIPTIONS, NEWS_DESCRIPTIONS, SPLITS, MindInputError, SplitDir
from news_ai_assets.resources import MindSource
from news_ai_assets.storage.database import Database
from news_ai_assets.storage.staging import stage, staged_splits
from news_ai_assets.storage.tables import DayRows, StoredDays

BEHAVIORS = dg.AssetKey(["bronze", "behaviors"])
NEWS = dg.AssetKey(["bronze", "news"])


def _split_dirs(context: dg.AssetExecutionContext, mind: MindSource, database: Database) -> list[SplitDir]:
    """The configured split folders, refusing to go on when a split read before has gone missing:
    re-materialising its days would replace them with nothing."""
    splits = mind.split_dirs(context.log)
    with database.connect() as conn:
        seen = staged_splits(conn)
    gone = {split: source for split, source in seen.items() if split not in {s.split for s in splits}}
    if gone:
        listed = ", ".join(f"{split} (read before from {source})" for split, source in sorted(gone.items()))
        raise MindInputError(
            f"The MIND folder no longer has the split(s) {listed}; re-materialising would replace their days with "
            "nothing. Restore the folder (an unmounted disk?). If the split was removed on purpose, forget it first: "
            "DELETE FROM bronze.staged_files WHERE split = '<split>'."
        )
    return splits


def _rejects_by_field(conn, files: list[str]) -> pl.DataFrame:
    """The rejected lines of `files` per field their reasons name (a reason starts with it: "user_id: ...")."""
    rows = conn.execute(f"SELECT split_part(reason, ':', 1), count(*) FROM bronze.rejects WHERE {_in(files)} "
                        "GROUP BY 1 ORDER BY 2 DESC, 1", files).fetchall()
    return pl.DataFrame(rows, schema=["field", "lines"], orient="row")


def _stage(context: dg.AssetExecutionContext, database: Database, kind: str, splits: list[SplitDir]):
    """Stages the splits' `kind` files; returns them and the run's metadata about them."""
    with timed(context, f"run_stage_{kind}") as timing, database.connect() as conn:
        sizes = [split.file(f"{kind}.tsv").stat().st_size / 2**20 for split in splits]
        progress, staged = Progress(context, f"{kind} files staged", sum(sizes), "MiB", every_s=0), []
        for split, size in zip(splits, sizes, strict=True):
            staged.append(stage(database, conn, kind, split, context.log))
            progress.advance(size)
        rejected = sum(s.rejects for s in staged)
        files = [s.source_file for s in staged]
        by_field = _rejects_by_field(conn, files) if rejected else None
    if rejected:
        context.log.warning(f"{rejected} malformed {kind} lines rejected; see bronze.rejects")
    return staged, {
        "source_files": ", ".join(files),
        "source_rejected_lines": rejected,
        **({"source_rejects_by_field": preview(by_field, rows=by_field.height)} if rejected else {}),
        "source_files_parsed_in_this_run": sum(not s.reused for s in staged),
        "rejects_table": "bronze.rejects",
        **timing,
    }


def _in(files: list[str]) -> str:
    return f"source_file IN ({', '.join('?' for _ in files)})"


# No automation condition: its input is the raw files, which mind_files_sensor watches (automation.py); a
# condition here would only make Dagster add its default_automation_condition_sensor to evaluate it.
@dg.asset(key=BEHAVIORS, group_name="bronze", kinds={"duckdb", "polars"}, code_version="1",
          **{**PARTITIONED_TABLE, "automation_condition": None})
def bronze_behaviors(context: dg.AssetExecutionContext, mind: MindSource, database: Database) -> DayRows:
    """One row per impression of the day, from every configured MIND split; bad lines go to bronze.rejects."""
    staged, source = _stage(context, database, "behaviors", _split_dirs(context, mind, database))
    run_metadata(context, source)
    files = [s.source_file for s in staged]
    with database.connect() as conn:
        contents = conn.execute(f"SELECT date, split, content FROM bronze.source_days WHERE {_in(files)}", files).fetchall()
    record_versions(context, {
        day: behaviors_day_version({split: content for date, split, content in contents if date == day})
        for day in partition_days(context)
    })

    def days():
        with database.connect() as conn:
            for day in partition_days(context):
                rows = conn.sql(
                    f"SELECT * EXCLUDE (source_file) FROM bronze.staged_behaviors WHERE {_in(files)} AND date = ? "
                    "ORDER BY split, impression_id", params=[*files, day],
                ).pl()
                lines = conn.execute(f"SELECT coalesce(sum(lines), 0) FROM bronze.source_days WHERE {_in(files)} AND date = ?",
                                     [*files, day]).fetchall()[0][0]
                day_metadata(context, day, {
                    "rows_by_split": counts_table(rows, "split"),
                    "users": rows.get_column("user_id").n_unique(),
                    "lines_in_source_files": lines,
                    "preview": preview(rows),
                })
                if day == partition_days(context)[0]:
                    context.add_asset_metadata({"dagster/column_schema": column_schema(rows.schema, BEHAVIOR_DESCRIPTIONS)})
                yield day, rows

    return reported_days(context, days())


NEWS_VIEW = (  # each day's articles, every version of an article stored once in bronze.articles
    "SELECT d.date, a.* EXCLUDE (article_key), d.article_key FROM bronze.news_days d "
    "JOIN bronze.articles a USING (article_key)"
)


@dg.asset(
    code_version="1",
    key=NEWS,
    group_name="bronze",
    kinds={"duckdb", "polars"},
    ins={"behaviors": dg.AssetIn(BEHAVIORS, metadata={"columns": ["date", "history", "impressions"]})},
    **stored_as("news_days", NEWS_VIEW),
)
def bronze_news(
    context: dg.AssetExecutionContext, behaviors: StoredDays, mind: MindSource, database: Database
) -> DayRows:
    """Every article the day's impressions show or its histories list, from the union of news.tsv
    (the same id is the same article; the earliest split's line wins). A day stores which article
    versions it holds; each version's text and entities are stored once, in bronze.articles."""
    staged, source = _stage(context, database, "news", _split_dirs(context, mind, database))
    files = [s.source_file for s in staged]
    rank = " ".join(f"WHEN '{split}' THEN {i}" for i, split in enumerate(SPLITS))
    with database.connect() as conn:
        news = conn.sql(
            f"SELECT n.* EXCLUDE (source_file) FROM bronze.staged_news n JOIN bronze.staged_files f "
            f"ON f.kind = 'news' AND f.source_file = n.source_file WHERE n.{_in(files)} "
            f"QUALIFY row_number() OVER (PARTITION BY n.news_id ORDER BY CASE f.split {rank} END) = 1",
            params=files,
        ).pl()
    run_metadata(context, {**source, "source_articles_in_news_tsv": news.height})

    def days():
        for day in partition_days(context):
            day_news, missing = news_for_days(news, behaviors.read(day))
            added = database.add_new_rows("bronze", "articles", day_news.drop("date"), "article_key")
            if missing.height:
                context.log.warning(
                    f"{day}: {missing.height} referenced news ids are absent from news.tsv; they are counted in "
                    "the metadata and get NULL news features downstream"
                )
            absent = missing.get_column("news_id")
            day_metadata(context, day, {
                "article_versions_stored_first_here": added,
                "referenced_ids_missing_from_news_tsv": absent.len(),
                "missing_examples": ", ".join(absent.head(10).to_list()) or "none",
                "preview": preview(day_news.drop("title_entities", "abstract_entities")),
            })
            if day == partition_days(context)[0]:
                context.add_asset_metadata({"dagster/column_schema": column_schema(day_news.schema, NEWS_DESCRIPTIONS)})
            day_news = day_news.select("date", "news_id", "article_key")
            record_versions(context, {day: rows_version(day_news, ["news_id", "article_key"])})
            yield day, day_news

    return reported_days(context, days())


bronze_checks = [
    sql_checks(BEHAVIORS, [SqlCheck(
        "not_emptied",
        "The day still has impressions if its previous materialisation had some (an emptied day is lost input "
        "until shown otherwise: a missing split folder, a truncated file).",
        not_emptied("bronze.behaviors"),
    )]),
]
