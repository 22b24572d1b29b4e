"""Prints what the database holds after a run, in 100 columns: `python -m news_ai_assets.summary`.

Per asset (named as the UI names it): the days written and their rows, from meta.partition_writes,
the record every partition write adds, so a day materialised empty counts as written (0 rows) and a
day never materialised as missing. `--days ASSET` prints that asset's rows day by day. Then the
tables that are not partitioned, and the evaluation whole.
"""

import argparse
import datetime as dt
import textwrap

import polars as pl

from news_ai_assets.storage.database import LEDGER, Database, quote

SIDE_TABLES = ("bronze.rejects", "features.embedding_cache", "features.vocabulary_ids")
EVALUATION = "gold.ranker_evaluation"


def stored_tables() -> dict[str, str]:
    """schema.table each partitioned asset stores its partitions in -> the asset's name in the UI."""
    from news_ai_assets.definitions import defs

    names = {}
    for spec in defs.resolve_all_asset_specs():
        if spec.partitions_def is not None:
            schema, name = spec.key.path[0], spec.key.path[-1]
            names[f"{schema}.{spec.metadata.get('stored_table', name)}"] = spec.key.to_user_string()
    return names


def nothing_written(database: Database) -> str:
    """What a program that reads says when the configured storage holds nothing of the pipeline."""
    return (f"{database.location()} holds no partition written by this pipeline ({LEDGER} is missing): materialise "
            "first (./scripts/demo.sh, or dg launch), or check NEWS_AI_DUCKDB_PATH / NEWS_AI_DELTA_URI")


def partition_counts(database: Database) -> pl.DataFrame:
    """Rows per (stored table, day), as each day's last write recorded them. A database without that
    record (none there yet, or another path) stops the summary, naming it, rather than print blanks."""
    if not database.holds_pipeline_data():
        raise SystemExit(nothing_written(database))
    with database.connect() as conn:
        return conn.sql(
            f"SELECT table_name, date, arg_max(row_count, write_id) AS rows FROM {LEDGER} GROUP BY ALL ORDER BY ALL"
        ).pl()


def asset_overview(counts: pl.DataFrame, names: dict[str, str], days: list[dt.date]) -> pl.DataFrame:
    """One row per asset: days written (of the partitions), rows in all, rows a day, days missing."""
    rows = []
    for table, asset in sorted(names.items(), key=lambda item: item[1]):
        written = counts.filter(pl.col("table_name") == table)
        per_day = written.get_column("rows")
        missing = sorted(set(days) - set(written.get_column("date")))
        rows.append({
            "asset": asset,
            "days": f"{written.height}/{len(days)}",
            "rows": f"{per_day.sum():,}",
            "rows a day": f"{per_day.min():,} .. {per_day.max():,}" if written.height else "",
            "missing days": day_ranges(missing),
        })
    return pl.DataFrame(rows)


def day_ranges(days: list[dt.date]) -> str:
    """Days as runs of consecutive days: '2019-11-16 .. 2019-11-22, 2019-11-24'."""
    runs: list[list[dt.date]] = []
    for day in days:
        if runs and day - runs[-1][-1] == dt.timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(f"{run[0]} .. {run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)


def asset_days(counts: pl.DataFrame, names: dict[str, str], asset: str) -> pl.DataFrame:
    tables = [table for table, name in names.items() if name == asset]
    if not tables:
        raise SystemExit(f"no partitioned asset {asset!r}; one of: {', '.join(sorted(names.values()))}")
    return counts.filter(pl.col("table_name") == tables[0]).select("date", "rows")


def _present(conn) -> set[str]:
    return {f"{s}.{t}" for s, t in conn.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()}


def side_table_counts(database: Database) -> dict[str, int]:
    with database.connect() as conn:
        present = _present(conn)
        return {
            table: conn.execute(f"SELECT count(*) FROM {'.'.join(quote(p) for p in table.split('.'))}").fetchall()[0][0]
            for table in SIDE_TABLES if table in present
        }


def evaluation(database: Database) -> pl.DataFrame | None:
    """gold/ranker_evaluation's table, when it has been materialised."""
    with database.connect() as conn:
        return conn.sql(f"SELECT * FROM {EVALUATION}").pl() if EVALUATION in _present(conn) else None


def main() -> None:
    from news_ai_assets.definitions import database
    from news_ai_assets.settings import daily_partitions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", metavar="ASSET", help="that asset's rows day by day (e.g. silver/training_examples)")
    args = parser.parse_args()
    configured, names = database(), stored_tables()
    counts = partition_counts(configured)
    with pl.Config(tbl_rows=400, tbl_width_chars=100, fmt_str_lengths=60, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True, tbl_formatting="ASCII_MARKDOWN"):
        if args.days:
            print(f"{args.days} in {configured.location()}, rows a day:")
            print(asset_days(counts, names, args.days))
            return
        days = [dt.date.fromisoformat(key) for key in daily_partitions.get_partition_keys()]
        print(textwrap.fill(f"{configured.location()}: what each asset's partitions hold ({days[0]} .. {days[-1]})",
                            100, break_long_words=False))
        print(asset_overview(counts, names, days))
        side = ", ".join(f"{table} {rows:,}" for table, rows in side_table_counts(configured).items())
        print(textwrap.fill(f"Rows of the tables that are not partitioned: {side}", 100))
        if (table := evaluation(configured)) is not None:
            print(f"\n{EVALUATION} (the dev days; `--days ASSET` for one asset's days):")
            print(table.with_columns(pl.col(pl.Float64).round(4)))


if __name__ == "__main__":
    main()
