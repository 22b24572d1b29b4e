"""DuckDB storage: one file, one schema per layer, every partition replaced atomically.

Built on dagster-duckdb's DbIOManager, with the parts that lose data replaced: the
stock client deletes a partition in autocommit before inserting (a failed insert has
already lost it), inserts by position, retries a locked file for minutes and leaks
the connection when a write raises. Here a write is one transaction (delete + insert
by name), new columns are added to the stored table, incompatible ones stop the run
before anything is deleted, and a locked file fails at once with the lock holder.
"""

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDBIOManager, DuckDbClient


class DuckDBLockedError(RuntimeError):
    """Another process holds the DuckDB file."""


class SchemaMismatchError(RuntimeError):
    """A partition's columns don't fit the stored table; nothing was deleted."""


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def connect(database: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Opens the pipeline's DuckDB file, failing fast (no silent retries) when it is locked."""
    database = Path(database)
    if not read_only:
        database.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = duckdb.connect(str(database), read_only=read_only, config={"custom_user_agent": "news_ai_assets"})
    except duckdb.IOException as err:
        if "lock" not in str(err).lower():
            raise
        holder = re.search(r"\(PID \d+\)", str(err))
        raise DuckDBLockedError(
            f"{database} is locked by another process {holder.group(0) if holder else ''}. DuckDB allows one "
            "writing process per file: close the notebook or program that has it open (or wait for the other "
            "run), and read while the pipeline runs from a snapshot (README: 'Reading while the pipeline runs'). "
            f"DuckDB said: {err}"
        ) from err
    conn.execute("SET enable_progress_bar = false")
    return conn


def _columns(conn: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    return {name: type_ for name, type_, *_ in conn.execute(f"DESCRIBE {relation}").fetchall()}


def _fit_table_to(conn, table: str, incoming: str) -> list[str]:
    """Adds the incoming relation's new columns to `table`; refuses missing or retyped ones."""
    stored, new = _columns(conn, table), _columns(conn, incoming)
    missing = [c for c in stored if c not in new]
    retyped = [f"{c} ({stored[c]} -> {new[c]})" for c in stored if c in new and stored[c] != new[c]]
    if missing or retyped:
        problems = "; ".join(
            part
            for part in (
                f"columns missing from the new rows: {', '.join(missing)}" if missing else "",
                f"columns whose type changed: {', '.join(retyped)}" if retyped else "",
            )
            if part
        )
        raise SchemaMismatchError(
            f"{table} no longer matches the asset's output ({problems}). Nothing was deleted. Revert the "
            f"change, or drop the table (DROP TABLE {table}) and re-materialise every partition."
        )
    added = [c for c in new if c not in stored]
    for column in added:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote(column)} {new[column]}")
    return added


Rows = pl.DataFrame | pa.Table | pa.RecordBatchReader


def replace_rows(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str, rows: Rows, where: str, params: Sequence
) -> tuple[list[str], int]:
    """Replaces the rows matching `where` with `rows`, in one transaction.

    `rows` is a frame or Arrow table, or a stream of record batches that is inserted as it is produced (a
    partition bigger than memory). The table is created from the rows' schema when absent
    (also when there are none), so an empty partition is an empty table, not a missing one.
    Returns the columns added to the table and the number of rows written.
    """
    qualified = f"{quote(schema)}.{quote(table)}"
    incoming = rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows
    conn.register("incoming_schema", pa.Table.from_batches([], incoming.schema))
    conn.register("incoming_rows", incoming)
    conn.begin()
    try:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {qualified} AS SELECT * FROM incoming_schema")
        added = _fit_table_to(conn, qualified, "incoming_schema")
        conn.execute(f"DELETE FROM {qualified} WHERE {where}", list(params))
        conn.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM incoming_rows")
        written = conn.execute(f"SELECT count(*) FROM {qualified} WHERE {where}", list(params)).fetchall()[0][0]
        conn.commit()
        return added, written
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.unregister("incoming_rows")
        conn.unregister("incoming_schema")


def _slice_filter(table_slice: TableSlice) -> tuple[str, list]:
    """The WHERE clause for a table slice, with its values as parameters."""
    clauses, params = [], []
    for dimension in table_slice.partition_dimensions or []:
        if isinstance(dimension.partitions, TimeWindow):
            clauses.append(f"{dimension.partition_expr} >= ? AND {dimension.partition_expr} < ?")
            params += [dimension.partitions.start.replace(tzinfo=None), dimension.partitions.end.replace(tzinfo=None)]
        else:
            keys = list(dimension.partitions)
            clauses.append(f"{dimension.partition_expr} IN ({', '.join('?' for _ in keys)})")
            params += keys
    return " AND ".join(clauses) or "true", params


class PolarsPartitionHandler(DbTypeHandler[Rows]):
    """Stores Polars frames or record-batch streams; loads a partition range as one frame, in stored order."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: Rows, connection
    ) -> Mapping[str, object]:
        where, params = _slice_filter(table_slice)
        rows = obj.to_arrow() if isinstance(obj, pl.DataFrame) else obj
        added, written = replace_rows(connection, table_slice.schema, table_slice.table, rows, where, params)
        if added:
            context.log.warning(f"Added columns {added} to {table_slice.schema}.{table_slice.table}; "
                                "partitions written earlier hold NULL there until re-materialised.")
        return {
            "dagster/row_count": written,
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(field.name, str(field.type)) for field in rows.schema]
            ),
            "migrated_columns": ", ".join(added) or "none",
        }

    def load_input(self, context: dg.InputContext, table_slice: TableSlice, connection) -> pl.DataFrame:
        table = f"{quote(table_slice.schema)}.{quote(table_slice.table)}"
        columns = ", ".join(quote(c) for c in table_slice.columns) if table_slice.columns else "*"
        where, params = _slice_filter(table_slice)
        try:
            return connection.sql(f"SELECT {columns} FROM {table} WHERE {where}", params=params).pl()
        except duckdb.CatalogException as err:
            raise dg.Failure(
                f"{table_slice.schema}.{table_slice.table} is not in the database yet: materialise "
                f"{table_slice.schema}/{table_slice.table} first. ({err})"
            ) from err

    @property
    def supported_types(self) -> Sequence[type]:
        return [pl.DataFrame, pa.RecordBatchReader]


class _AtomicDuckDbClient(DuckDbClient):
    @staticmethod
    def delete_table_slice(context, table_slice: TableSlice, connection) -> None:
        """Deliberately nothing: the handler deletes inside the same transaction as its insert."""

    @staticmethod
    def ensure_schema_exists(context, table_slice: TableSlice, connection) -> None:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table_slice.schema)}")

    @staticmethod
    @contextmanager
    def connect(context, table_slice) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = connect(context.resource_config["database"])
        try:
            yield conn
        finally:
            conn.close()


class DuckDBPolarsIOManager(DuckDBIOManager):
    """Polars frames in DuckDB tables named schema.table after the asset key (bronze/news -> bronze.news)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsPartitionHandler()]

    @staticmethod
    def default_load_type() -> type:
        return pl.DataFrame

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=_AtomicDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuckDBPolarsIOManager",
        )


class DuckDBDatabase(dg.ConfigurableResource):
    """Direct access to the pipeline's DuckDB file, for tables that are not asset outputs (rejects, caches)."""

    database: str

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = connect(self.database)
        try:
            yield conn
        finally:
            conn.close()
