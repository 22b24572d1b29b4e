"""Prints what each partition holds after a run: `python -m news_ai_assets.summary`.

Row counts per table and day come from meta.partition_writes, the record every partition write
adds, so a day materialised empty reads 0 and a day never materialised is blank.
"""

import polars as pl

from news_ai_assets.storage.database import LEDGER, Database, quote

SIDE_TABLES = ("bronze.rejects", "features.embedding_cache", "features.vocabulary_ids")
EVALUATION = "gold.ranker_evaluation"


def partition_counts(database: Database) -> pl.DataFrame:
    """Rows per partition (one row per day, one column per table), as their last write recorded them."""
    with database.connect() as conn:
        counts = conn.sql(
            f"SELECT date::VARCHAR AS partition, table_name, arg_max(row_count, write_id) AS rows FROM {LEDGER} "
            "GROUP BY ALL"
        ).pl()
    return counts.pivot(on="table_name", index="partition", values="rows", sort_columns=True).sort("partition")


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


if __name__ == "__main__":
    from news_ai_assets.definitions import database

    configured = database()
    with pl.Config(tbl_rows=400, tbl_cols=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        print(f"{configured.location()}, rows per partition:")
        print(partition_counts(configured))
        print(", ".join(f"{table}: {rows} rows" for table, rows in side_table_counts(configured).items()))
        if (table := evaluation(configured)) is not None:
            print(f"{EVALUATION} (dev days):")
            print(table.with_columns(pl.col(pl.Float64).round(4)))
