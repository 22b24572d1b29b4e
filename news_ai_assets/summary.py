"""Prints row counts per table and partition: `python -m news_ai_assets.summary` after a run."""

import polars as pl

from news_ai_assets.settings import SETTINGS
from news_ai_assets.storage import connect, quote


def table_counts(database) -> pl.DataFrame:
    with connect(database, read_only=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('bronze', 'features', 'silver') ORDER BY 1, 2"
        ).fetchall()
        frames = []
        for schema, table in tables:
            has_date = conn.execute(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? AND column_name = 'date'", [schema, table]
            ).fetchall() == [(1,)]
            qualified = f"{quote(schema)}.{quote(table)}"
            query = (
                f"SELECT date::VARCHAR AS partition, count(*) AS rows FROM {qualified} GROUP BY 1"
                if has_date else f"SELECT 'all' AS partition, count(*) AS rows FROM {qualified}"
            )
            frames.append(conn.sql(query).pl().with_columns(table=pl.lit(f"{schema}.{table}")))
    counts = pl.concat(frames).cast({"rows": pl.Int64})
    return counts.pivot(on="table", index="partition", values="rows").sort("partition")


if __name__ == "__main__":
    with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(f"{SETTINGS.duckdb_path}:")
        print(table_counts(SETTINGS.duckdb_path))
