"""The storage seam: what assets, checks and the IO managers may rely on, whichever storage is behind it.

Every stored table is read through DuckDB SQL on a connection of the `Database` resource and written
only through its methods. A partition write is recorded in `meta.partition_writes` with its row
count, so a later run knows from the database itself that a day it reads was materialised there
(possibly empty) rather than never written: `require_written` refuses a day without that record.
The sides: one DuckDB file (duckdb_file.py) and Delta tables in a folder or bucket (delta_tables.py).
"""

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
import duckdb
import polars as pl

from news_ai_assets.storage.tables import Rows

LEDGER = "meta.partition_writes"


class SchemaMismatchError(RuntimeError):
    """A partition's columns don't fit the stored table; nothing was deleted."""


class StorageWriteError(RuntimeError):
    """A write failed and was rolled back: the previous rows are still there."""


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _has_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, table]
    ).fetchall() == [(1,)]


def recorded_partitions(conn: duckdb.DuckDBPyConnection, table: str, days: Sequence[dt.date]) -> dict[dt.date, int]:
    """Per day of `days` that `table` (schema.table) was written for, the row count of its last write."""
    if not days or not _has_table(conn, *LEDGER.split(".")):
        return {}
    rows = conn.execute(
        f"SELECT date, arg_max(row_count, write_id) FROM {LEDGER} WHERE table_name = ? AND date BETWEEN ? AND ? "
        "GROUP BY date",
        [table, min(days), max(days)],
    ).fetchall()
    return {day: count for day, count in rows if day in set(days)}


@dataclass(frozen=True)
class Written:
    changed_columns: list[str]
    rows: int
    rows_by_day: dict[dt.date, int]  # every day written, 0 included; empty for tables without days


def missing_keys(conn: duckdb.DuckDBPyConnection, schema: str, table: str, keys: pl.DataFrame) -> pl.DataFrame:
    """The distinct rows of `keys` (key columns) that schema.table does not hold yet (all when it doesn't exist)."""
    keys = keys.unique()
    if not _has_table(conn, schema, table):
        return keys
    conn.register("wanted_keys", keys.to_arrow())
    try:
        using = ", ".join(quote(c) for c in keys.columns)
        return conn.sql(
            f"SELECT w.* FROM wanted_keys w ANTI JOIN {quote(schema)}.{quote(table)} t USING ({using})"
        ).pl()
    finally:
        conn.unregister("wanted_keys")


VOCABULARY_COLUMNS = {"vocabulary": pl.String, "token": pl.String, "id": pl.Int32}


def new_ids(stored: pl.DataFrame, vocabulary: str, tokens: pl.Series) -> pl.DataFrame:
    """Ids for the `tokens` that `stored` (a vocabulary table's rows) lacks: after the vocabulary's
    largest id, in token order (0 is left for padding and unknown tokens)."""
    known = stored.filter(pl.col("vocabulary") == vocabulary)
    new = pl.DataFrame({"token": tokens.cast(pl.String)}).drop_nulls().unique().join(known, on="token", how="anti")
    first = (known.get_column("id").max() or 0) + 1
    return new.sort("token").select(
        pl.lit(vocabulary).alias("vocabulary"), "token", pl.int_range(first, first + pl.len()).alias("id"),
    ).cast(VOCABULARY_COLUMNS)


def describe_days(days: Sequence[dt.date]) -> str:
    shown = ", ".join(str(d) for d in days[:10])
    return shown + (f" and {len(days) - 10} more" if len(days) > 10 else "")


def materialize_command(asset: str, days: Sequence[dt.date]) -> str:
    span = f"--partition {days[0]}" if len(days) == 1 else f"--partition-range {min(days)}...{max(days)}"
    return f"dg launch -m news_ai_assets.definitions --assets '{asset}' {span}"


def require_written(conn: duckdb.DuckDBPyConnection, schema: str, table: str, days: Sequence[dt.date],
                    day_column: str = "date", location: str | None = None) -> None:
    """Fails unless every day of `days` was materialised into schema.table here and still holds
    what that write recorded. Decided from the database, never from run history: a run whose
    inputs are missing stops instead of computing features from a short window."""
    recorded = recorded_partitions(conn, f"{schema}.{table}", days)
    missing = [day for day in days if day not in recorded]
    asset = f"{schema}/{table}"
    database = location or conn.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()[0][0]
    if missing:
        raise dg.Failure(
            f"{asset} has never been materialised in {database} for {describe_days(missing)}, which this run "
            f"reads. Materialise those days first, for example the whole graph: {materialize_command('*', missing)}"
        )
    stored = dict(conn.execute(
        f"SELECT {day_column}::DATE, count(*) FROM {quote(schema)}.{quote(table)} "
        f"WHERE {day_column} >= ? AND {day_column} < ? GROUP BY 1",
        [min(days), max(days) + dt.timedelta(days=1)],
    ).fetchall())
    changed = [f"{day} ({stored.get(day, 0)} rows stored, {recorded[day]} written)" for day in days
               if stored.get(day, 0) != recorded[day]]
    if changed:
        raise dg.Failure(
            f"{schema}.{table} in {database} no longer holds what its last materialisation wrote for "
            f"{', '.join(changed)}: it was changed outside the pipeline. Re-materialise those days: "
            f"{materialize_command(asset, [d for d in days if stored.get(d, 0) != recorded[d]])}"
        )


def days_filter(days: Sequence[dt.date] | None, day_column: str = "date") -> tuple[str, list]:
    """The WHERE clause selecting `days` (all rows when None), with its parameters."""
    if not days:
        return "true", []
    return f"{quote(day_column)} >= ? AND {quote(day_column)} < ?", [min(days), max(days) + dt.timedelta(days=1)]


@dataclass(frozen=True)
class Replacement:
    """The rows of `select` (SQL over a connection of the database, with `params`) replace those
    of schema.table whose `column` equals `value`; the whole table, columns included, when
    `column` is None."""

    schema: str
    table: str
    select: str
    params: Sequence = ()
    column: str | None = None
    value: object = None


class Database(dg.ConfigurableResource):
    """The storage seam. Assets, checks and the IO manager read every stored table through DuckDB
    SQL on `connect()` and write only through these methods; which storage is behind them
    (one DuckDB file, or Delta tables in a folder or bucket) is configuration, never asset code."""

    def location(self) -> str:
        """Where the tables are, for messages."""
        raise NotImplementedError

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A new connection in which every stored table and view reads as schema.table."""
        raise NotImplementedError

    def holds_pipeline_data(self) -> bool:
        """Whether the pipeline wrote anything here (its partition ledger exists). Programs beside the
        pipeline that only read ask first, so a mistyped location is named, never created."""
        with self.connect() as conn:
            return _has_table(conn, *LEDGER.split("."))

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = self.reader()
        try:
            yield conn
        finally:
            conn.close()

    def replace_days(self, schema: str, table: str, rows: Rows, days: Sequence[dt.date] | None,
                     day_column: str = "date", run_id: str | None = None) -> Written:
        """Replaces `days` of schema.table (the whole table when None) with `rows`, atomically,
        recording each day's count in meta.partition_writes; rows outside `days` are refused."""
        raise NotImplementedError

    def replace_each(self, conn: duckdb.DuckDBPyConnection, replacements: Sequence[Replacement], failure: str) -> None:
        """Applies the replacements, whose SELECTs run on `conn`, in order."""
        raise NotImplementedError

    def add_new_rows(self, schema: str, table: str, rows: pl.DataFrame, key: str | Sequence[str]) -> int:
        """Adds the rows whose key schema.table lacks (each key once); returns how many."""
        raise NotImplementedError

    def assign_ids(self, schema: str, table: str, vocabulary: str, tokens: pl.Series) -> int:
        """Gives every token of `tokens` that the vocabulary lacks an id of its own, the next free
        one; an id once given never changes. Returns how many tokens were new."""
        raise NotImplementedError

    def define_view(self, schema: str, name: str, sql: str) -> None:
        """schema.name becomes the view `sql` over stored tables."""
        raise NotImplementedError

    def missing_keys(self, schema: str, table: str, keys: pl.DataFrame) -> pl.DataFrame:
        with self.connect() as conn:
            return missing_keys(conn, schema, table, keys)


