"""DuckDB storage: one file, one schema per layer, every partition replaced atomically and recorded.

Built on dagster-duckdb's DbIOManager, with the parts that lose data replaced: the stock client
deletes a partition in autocommit before inserting (a failed insert has already lost it), inserts
by position, retries a locked file for minutes and leaks the connection when a write raises. Here
a write is one transaction: delete, insert by name, and a row in `meta.partition_writes` per day
with the count written (database.py says why). New columns are added to the stored table, integer
columns widen, and other changes stop the run before anything is deleted. A run holds the file for
its whole length (run_lock.py), and a file held by another program fails the run before any step
writes.
"""

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
from dagster_duckdb.io_manager import DuckDbClient, DuckDBIOManager

from news_ai_assets.dagster_internals import DbIOManager, TableSlice
from news_ai_assets.storage import run_lock
from news_ai_assets.storage.database import (
    LEDGER, VOCABULARY_COLUMNS, Database, SchemaMismatchError, StorageWriteError, Written, days_filter, new_ids, quote,
)
from news_ai_assets.storage.duckdb_config import open_duckdb
from news_ai_assets.storage.partition_handler import PartitionHandling, partition_io_manager
from news_ai_assets.storage.tables import Rows

DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file


class DuckDBLockedError(RuntimeError):
    """Another process holds the DuckDB file."""


class NotADuckDBFileError(ValueError):
    """The configured path holds something other than a DuckDB database."""


def check_database_file(database: str | Path) -> None:
    """Refuses a path that is not a DuckDB database or a place to create one.

    DuckDB opens a Parquet or CSV file as an empty in-memory database, so a run pointed at one
    would report row counts and store nothing.
    """
    path = Path(database)
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADuckDBFileError(f"{path} cannot hold a DuckDB database: {path.parent} is not a folder")
    if path.is_symlink() and not path.exists():  # its database is gone (or not mounted): not a place to start afresh
        raise NotADuckDBFileError(f"{path} is a symbolic link to {path.readlink()}, which does not exist; refusing to "
                                  "create a new database behind it")
    if not path.exists():
        return
    if not path.is_file():
        raise NotADuckDBFileError(f"{path} is not a DuckDB database file (it is not a regular file)")
    with open(path, "rb") as handle:
        header = handle.read(12)
    if header[8:12] != DUCKDB_MAGIC:
        raise NotADuckDBFileError(
            f"{path} is not a DuckDB database (its first bytes are {header[:12]!r}); refusing to use it. Point "
            "NEWS_AI_DUCKDB_PATH at an existing .duckdb file or at a path that does not exist yet."
        )


def connect(database: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Opens the pipeline's DuckDB file, failing fast (no silent retries) when it is locked."""
    database = Path(database)
    check_database_file(database)
    if not read_only:
        database.parent.mkdir(parents=True, exist_ok=True)
    try:
        return open_duckdb(database, read_only=read_only)
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


def _columns(conn: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    return {name: type_ for name, type_, *_ in conn.execute(f"DESCRIBE {relation}").fetchall()}


_INTEGER_BYTES = {"TINYINT": 1, "SMALLINT": 2, "INTEGER": 4, "BIGINT": 8}


def _widens(stored: str, new: str) -> bool:
    """A lossless change of type: a wider integer."""
    return _INTEGER_BYTES.get(new, 0) > _INTEGER_BYTES.get(stored, 9)


def _fit_table_to(conn, table: str, incoming: str) -> list[str]:
    """Adds the incoming relation's new columns to `table` and widens integer columns; refuses
    missing or otherwise retyped ones. Returns what it changed."""
    stored, new = _columns(conn, table), _columns(conn, incoming)
    missing = [c for c in stored if c not in new]
    retyped = [f"{c} ({stored[c]} -> {new[c]})" for c in stored if c in new and stored[c] != new[c]
               and not _widens(stored[c], new[c])]
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
    changed = []
    for column in new:
        if column not in stored:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote(column)} {new[column]}")
            changed.append(column)
        elif stored[column] != new[column]:
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN {quote(column)} TYPE {new[column]}")
            changed.append(f"{column} ({stored[column]} -> {new[column]})")
    return changed


def _ensure_ledger(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS meta")
    conn.execute("CREATE SEQUENCE IF NOT EXISTS meta.partition_write_id")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {LEDGER} (write_id BIGINT NOT NULL DEFAULT nextval('meta.partition_write_id'), "
        "table_name VARCHAR NOT NULL, date DATE NOT NULL, row_count BIGINT NOT NULL, "
        "written_at TIMESTAMP NOT NULL, run_id VARCHAR)"
    )


def _rollback(conn: duckdb.DuckDBPyConnection) -> None:
    try:
        conn.rollback()
    except duckdb.Error:
        pass  # a failed COMMIT ends the transaction itself; the error being raised is the one that matters


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection, failure: str) -> Iterator[None]:
    """One transaction around the block: committed when it ends, rolled back on any error. A DuckDB
    error (a full disk at COMMIT included) is raised as StorageWriteError(f"{failure} {error}")."""
    conn.begin()
    try:
        yield
        conn.commit()
    except duckdb.Error as err:
        _rollback(conn)
        raise StorageWriteError(f"{failure} {err}") from err
    except BaseException:
        _rollback(conn)
        raise


def replace_rows(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str, rows: Rows, where: str, params: Sequence, *,
    days: Sequence[dt.date] | None = None, day_column: str = "date", run_id: str | None = None,
) -> Written:
    """Replaces the rows matching `where` with `rows`, in one transaction.

    `rows` is a frame or Arrow table, or a stream of record batches that is inserted as it is produced (a
    partition bigger than memory). The table is created from the rows' schema when absent
    (also when there are none), so an empty partition is an empty table, not a missing one.
    With `days` (the partitions `where` selects), each day's count is recorded in meta.partition_writes
    in the same transaction, and rows outside those days are refused.
    """
    qualified = f"{quote(schema)}.{quote(table)}"
    incoming = rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows
    conn.register("incoming_schema", pa.Table.from_batches([], incoming.schema))
    conn.register("incoming_rows", incoming)
    try:
        with transaction(conn, f"writing {schema}.{table} failed, so its previous rows are kept."):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {qualified} AS SELECT * FROM incoming_schema")
            changed = _fit_table_to(conn, qualified, "incoming_schema")
            conn.execute(f"DELETE FROM {qualified} WHERE {where}", list(params))
            inserted = conn.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM incoming_rows").fetchall()[0][0]
            by_day = {}
            if days is None:
                written = conn.execute(f"SELECT count(*) FROM {qualified} WHERE {where}", list(params)).fetchall()[0][0]
            else:
                counted = dict(conn.execute(
                    f"SELECT {day_column}::DATE, count(*) FROM {qualified} WHERE {where} GROUP BY 1", list(params)
                ).fetchall())
                by_day = {day: counted.get(day, 0) for day in days}
                written = sum(by_day.values())
                _ensure_ledger(conn)
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                conn.executemany(
                    f"INSERT INTO {LEDGER} (table_name, date, row_count, written_at, run_id) VALUES (?, ?, ?, ?, ?)",
                    [[f"{schema}.{table}", day, count, now, run_id] for day, count in by_day.items()],
                )
            if inserted != written:
                raise StorageWriteError(
                    f"{inserted - written} of the {inserted} rows for {schema}.{table} fall outside the partitions "
                    "being written; nothing was written"
                )
        return Written(changed, written, by_day)
    finally:
        conn.unregister("incoming_rows")
        conn.unregister("incoming_schema")


def _key_list(key: str | Sequence[str]) -> list[str]:
    return [key] if isinstance(key, str) else list(key)


def add_new_rows(conn: duckdb.DuckDBPyConnection, schema: str, table: str, rows: pl.DataFrame,
                 key: str | Sequence[str]) -> int:
    """Adds those of `rows` whose `key` the table lacks, in one transaction; returns how many.
    For content-addressed tables that only grow (an article version and its statistics)."""
    qualified, using = f"{quote(schema)}.{quote(table)}", ", ".join(quote(c) for c in _key_list(key))
    conn.register("new_rows", rows.to_arrow())
    try:
        with transaction(conn, f"adding rows to {schema}.{table} failed; it holds what it held before."):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {qualified} AS SELECT * FROM new_rows LIMIT 0")
            _fit_table_to(conn, qualified, "new_rows")
            added = conn.execute(
                f"INSERT INTO {qualified} BY NAME SELECT DISTINCT ON ({using}) n.* FROM new_rows n "
                f"ANTI JOIN {qualified} t USING ({using})"
            ).fetchall()[0][0]
        return added
    finally:
        conn.unregister("new_rows")


def assign_ids(conn: duckdb.DuckDBPyConnection, schema: str, table: str, vocabulary: str, tokens: pl.Series) -> int:
    """Gives each of `tokens` that schema.table's `vocabulary` lacks the next id, in one transaction
    (the run holds the file, so no other writer reads the same largest id); returns how many."""
    qualified = f"{quote(schema)}.{quote(table)}"
    conn.register("vocabulary_schema", pl.DataFrame(schema=VOCABULARY_COLUMNS).to_arrow())
    try:
        with transaction(conn, f"adding to the {vocabulary} vocabulary of {schema}.{table} failed; it holds what it held before."):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {qualified} AS SELECT * FROM vocabulary_schema")
            stored = conn.sql(f"SELECT * FROM {qualified} WHERE vocabulary = ?", params=[vocabulary]).pl()
            added = new_ids(stored.cast(VOCABULARY_COLUMNS), vocabulary, tokens)
            conn.register("new_ids", added.to_arrow())
            conn.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM new_ids")
        return added.height
    finally:
        conn.unregister("vocabulary_schema")
        conn.unregister("new_ids")


def _refuse_table_where_view_goes(connection, schema: str, name: str) -> None:
    kind = connection.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchall()
    if kind == [("BASE TABLE",)]:
        raise SchemaMismatchError(
            f"{schema}.{name} is a table written by an earlier version; it is now a view over what this asset "
            f"stores. Nothing was written. Drop it (DROP TABLE {schema}.{name}) and re-materialise every partition."
        )


# The run's own connection to each file it holds, open from the run's start to its end. Every reader
# of the run is a cursor of it (DuckDBDatabase.reader), a new connection to that open database:
# opening the file again would reload the catalog and replay the whole write-ahead log (up to the
# 1 GB checkpoint threshold) for every step and every read, 13 of the 120 s of a MIND-small range run.
_open_for_run: dict[str, duckdb.DuckDBPyConnection] = {}


def _hold_for_run(database: str, context: dg.InitResourceContext, memory_limit: str | None) -> None:
    """Takes the run lock of `database`, then opens the file and keeps it open for the run, so
    that a file another program holds fails the run before any step has written. memory_limit
    caps DuckDB's buffers for the run (DuckDB's own default, 80% of RAM, when None): they live as
    long as the file is open, and DuckDB spills to disk beyond it."""
    instance, run_id = context.instance, context.run.run_id if context.run else None
    previous = run_lock.acquire(
        database, context.log, {"run_id": run_id, "dagster_home": instance.root_directory if instance else None}
    )
    try:
        if previous and "released_at" not in previous:
            _report_dead_holder(database, previous, context)
        if database not in _open_for_run:
            conn = connect(database)  # kept only once it is set up: a failure here leaves nothing open
            if memory_limit:
                quoted = memory_limit.replace("'", "''")
                conn.execute(f"SET memory_limit = '{quoted}'")
            _open_for_run[database] = conn
    except BaseException:
        run_lock.release(database)
        raise


def _release_for_run(database: str) -> None:
    """Ends the run's hold on `database`. The last holder first folds DuckDB's write-ahead log into
    the file (its checkpoint threshold is high, see duckdb_config.py), so that the file alone holds
    everything once the run is over: copying it (README) copies all."""
    try:
        if run_lock.users(database) == 1 and (conn := _open_for_run.pop(database, None)) is not None:
            with closing(conn):
                conn.execute("CHECKPOINT")
    finally:
        run_lock.release(database)


def _report_dead_holder(database: str, previous: dict, context: dg.InitResourceContext) -> None:
    """The previous holder's process died holding the lock (the kernel released it): its run
    would show as running forever, so it is marked failed when it belongs to this instance."""
    instance = context.instance
    run = (
        instance.get_run_by_id(previous["run_id"])
        if instance and previous.get("run_id") and previous.get("dagster_home") == instance.root_directory
        else None
    )
    message = f"The previous run on {database}, {run_lock.describe(previous)}, ended without releasing it: its process died."
    if run is not None and not run.is_finished:
        instance.report_run_failed(run, f"{message} Marked failed by run {context.run.run_id}.")
        message += " It is marked failed now."
    context.log.warning(message)


class DuckDBDatabase(Database):
    """Every table in one DuckDB file. A run holds the file from start to end (run_lock.py): one
    writing process at a time, each write one transaction."""

    database: str
    memory_limit: str | None = None  # DuckDB's memory_limit for a run (NEWS_AI_DUCKDB_MEMORY_LIMIT)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _hold_for_run(self.database, context, self.memory_limit)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        _release_for_run(self.database)

    def location(self) -> str:
        return self.database

    def holds_pipeline_data(self) -> bool:
        # a connection creates a missing file: ask the disk first
        return Path(self.database).exists() and super().holds_pipeline_data()

    def reader(self) -> duckdb.DuckDBPyConnection:
        """In a run, a cursor of the run's connection: closing that at the run's end closes every
        reader with it, also one a lazy scan still holds (Polars may drop a plan, and with it the
        scan's connection, only later), so that nothing keeps the file open once the run is over."""
        held = _open_for_run.get(self.database)
        return held.cursor() if held is not None else connect(self.database)

    def replace_days(self, schema, table, rows, days, day_column="date", run_id=None) -> Written:
        where, params = days_filter(days, day_column)
        with self.connect() as conn:
            return replace_rows(conn, schema, table, rows, where, params, days=days or None, day_column=day_column,
                                run_id=run_id)

    def replace_each(self, conn, replacements, failure) -> None:
        """All of them in one transaction."""
        with transaction(conn, failure):
            for r in replacements:
                qualified = f"{quote(r.schema)}.{quote(r.table)}"
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(r.schema)}")
                if r.column is None:
                    conn.execute(f"CREATE OR REPLACE TABLE {qualified} AS {r.select}", list(r.params))
                    continue
                conn.execute(f"CREATE TABLE IF NOT EXISTS {qualified} AS SELECT * FROM ({r.select}) LIMIT 0", list(r.params))
                conn.execute(f"DELETE FROM {qualified} WHERE {quote(r.column)} = ?", [r.value])
                conn.execute(f"INSERT INTO {qualified} BY NAME {r.select}", list(r.params))

    def add_new_rows(self, schema, table, rows, key) -> int:
        with self.connect() as conn:
            return add_new_rows(conn, schema, table, rows, key)

    def assign_ids(self, schema, table, vocabulary, tokens) -> int:
        with self.connect() as conn:
            return assign_ids(conn, schema, table, vocabulary, tokens)

    def define_view(self, schema, name, sql) -> None:
        with self.connect() as conn:
            _refuse_table_where_view_goes(conn, schema, name)
            conn.execute(f"CREATE OR REPLACE VIEW {quote(schema)}.{quote(name)} AS {sql}")


class _AtomicDuckDbClient(DuckDbClient):
    @staticmethod
    def delete_table_slice(context, table_slice: TableSlice, connection) -> None:
        """Deliberately nothing: the handler deletes inside the same transaction as its insert."""

    @staticmethod
    def ensure_schema_exists(context, table_slice: TableSlice, connection) -> None:
        """Nothing: a write creates its schema in its own transaction."""

    @staticmethod
    @contextmanager
    def connect(context, table_slice) -> Iterator[Database]:
        yield DuckDBDatabase(database=context.resource_config["database"])


class DuckDBPolarsIOManager(PartitionHandling, DuckDBIOManager):
    """Polars frames in DuckDB tables named schema.table after the asset key (bronze/news -> bronze.news)."""

    memory_limit: str | None = None  # as DuckDBDatabase's: whichever starts first opens the file

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _hold_for_run(self.database, context, self.memory_limit)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        _release_for_run(self.database)

    def create_io_manager(self, context) -> DbIOManager:
        return partition_io_manager(_AtomicDuckDbClient(), self.database, self.schema_, "DuckDBPolarsIOManager")


