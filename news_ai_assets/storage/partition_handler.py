"""How both IO managers store and load a partition range: Dagster's database IO manager with our
one type handler, which writes day by day through the Database and loads days lazily."""

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence

import dagster as dg
import polars as pl
import pyarrow as pa

from news_ai_assets.dagster_internals import DbClient, DbIOManager, DbTypeHandler, TableSlice, add_partition_metadata
from news_ai_assets.storage.database import (
    Database, StorageWriteError, Written, days_filter, describe_days, quote, require_written,
)
from news_ai_assets.storage.tables import DayRows, Rows, StoredDays


def _slice_days(table_slice: TableSlice) -> tuple[list[dt.date] | None, str]:
    """The days a daily-partitioned slice covers, and its partition column (None: not daily)."""
    for dimension in table_slice.partition_dimensions or []:
        if isinstance(dimension.partitions, dg.TimeWindow):
            start, end = dimension.partitions.start.date(), dimension.partitions.end.date()
            return [start + dt.timedelta(days=i) for i in range((end - start).days)], dimension.partition_expr
    return None, "date"


class StoredTableDays(StoredDays):
    """Days of a stored table or view, scanned lazily (filters and columns reach the storage)."""

    def __init__(self, database: Database, schema: str, table: str, days: Sequence[dt.date], columns: Sequence[str] | None):
        super().__init__(days)
        self._database, self._table, self._columns = database, f"{quote(schema)}.{quote(table)}", columns

    def scan(self) -> pl.LazyFrame:
        relation = self._database.reader().table(self._table)  # the relation keeps its connection open
        if self._columns:
            relation = relation.select(*[quote(c) for c in self._columns])
        return relation.pl(lazy=True).filter((pl.col("date") >= min(self.days)) & (pl.col("date") <= max(self.days)))


# Consecutive days' frames are stored in one write until they hold this many rows: DuckDB writes an
# insert of at least a row group (122,880 rows) straight into the file, compressed, but serialises a
# smaller one into its log and compresses it at the checkpoint. MIND-small's days are ~16,000
# impressions: written one by one, a range run logged 0.9 GB and its closing checkpoint took 6 s.
DAYS_WRITTEN_TOGETHER_ROWS = 250_000


class PolarsPartitionHandler(DbTypeHandler[Rows | DayRows | StoredDays]):
    """Stores DayRows as they come (one atomic replace a write, small days' frames joined into one:
    DAYS_WRITTEN_TOGETHER_ROWS) or a whole frame or stream at once; loads a partition range as
    StoredDays (lazy) or as one frame. The connection is the Database.

    An asset whose definition metadata names a `stored_table` and a `view_sql` is stored under that
    name, and its own name is a view (`view_sql`) over it: silver keeps its wide table as a view.
    """

    def handle_output(self, context: dg.OutputContext, table_slice: TableSlice, obj, connection: Database) -> Mapping[str, object]:
        days, day_column = _slice_days(table_slice)
        schema, stored, view = _names(context.definition_metadata, table_slice)
        if isinstance(obj, DayRows):
            writes = [self._write(context, connection, schema, stored, day_column, rows, batch_days)
                      for batch_days, rows in _joined(self._each_day(obj, days, f"{schema}.{stored}"))]
        else:
            writes = [self._write(context, connection, schema, stored, day_column, obj, days)]
        if view:
            connection.define_view(schema, table_slice.table, view)
        changed = sorted({c for written in writes for c in written.changed_columns})
        stored_days = [day for written in writes for day in written.rows_by_day]
        rows = sum(w.rows for w in writes)
        # one line for the output, not one per day: each is an event in the instance (~9 ms on SQLite), and
        # each partition's count is on its own materialisation
        span = f" for {len(stored_days)} day(s), {min(stored_days)} .. {max(stored_days)}" if stored_days else ""
        context.log.info(f"stored {schema}.{stored}: {rows:,} rows{span}")
        return {"dagster/row_count": rows, "migrated_columns": ", ".join(changed) or "none"}

    @staticmethod
    def _each_day(output: DayRows, days: list[dt.date] | None, table: str) -> Iterator[tuple[dt.date, Rows]]:
        """The output's days, refusing a day outside the run or twice, and a day left out."""
        done = []
        for day, rows in output:
            if day not in (days or []) or day in done:
                raise StorageWriteError(f"rows for {table} on {day}, which is not a partition of this run or came twice")
            yield day, rows
            done.append(day)
        if missing := [d for d in days or [] if d not in done]:
            raise StorageWriteError(f"the asset produced nothing for {table} on {describe_days(missing)}: not written")

    @staticmethod
    def _write(context, database: Database, schema: str, table: str, day_column: str, rows, days) -> Written:
        written = database.replace_days(schema, table, rows, days, day_column, context.run_id)
        if written.changed_columns:
            context.log.warning(f"Changed columns {written.changed_columns} of {schema}.{table}; partitions written "
                                "earlier hold NULL in added columns until re-materialised.")
        for day, count in written.rows_by_day.items():  # each partition's own figures, also in a range run
            add_partition_metadata(context, day.isoformat(), {
                "dagster/row_count": count,
                "Query": f"SELECT * FROM {schema}.{context.asset_key.path[-1]} WHERE {day_column} = '{day}'",
            })
        return written

    def load_input(self, context: dg.InputContext, table_slice: TableSlice, connection: Database) -> pl.DataFrame | StoredDays:
        schema, stored, view = _names(context.upstream_output.definition_metadata, table_slice)
        days, day_column = _slice_days(table_slice)
        with connection.connect() as conn:
            if days:
                require_written(conn, schema, stored, days, day_column, connection.location())
            if context.dagster_type.typing_type is StoredDays:
                return StoredTableDays(connection, schema, table_slice.table, days, table_slice.columns)
            columns = ", ".join(quote(c) for c in table_slice.columns) if table_slice.columns else "*"
            where, params = days_filter(days, day_column)
            return conn.sql(f"SELECT {columns} FROM {quote(schema)}.{quote(table_slice.table)} WHERE {where}",
                            params=params).pl()

    @property
    def supported_types(self) -> Sequence[type]:
        return [pl.DataFrame, pa.RecordBatchReader, DayRows, StoredDays]


def _joined(days: Iterator[tuple[dt.date, Rows]]) -> Iterator[tuple[list[dt.date], Rows]]:
    """Consecutive days' frames of one schema as one Arrow table, up to DAYS_WRITTEN_TOGETHER_ROWS
    rows; a stream alone. When producing a day fails, the days before it are still written first."""
    pending: list[tuple[dt.date, pa.Table]] = []

    def flush() -> Iterator[tuple[list[dt.date], Rows]]:
        if pending:
            yield [day for day, _ in pending], pa.concat_tables([rows for _, rows in pending])
            pending.clear()

    try:
        for day, rows in days:
            if isinstance(rows, pa.RecordBatchReader):
                yield from flush()
                yield [day], rows
                continue
            table = rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows
            if pending and (table.schema != pending[0][1].schema
                            or sum(t.num_rows for _, t in pending) + table.num_rows > DAYS_WRITTEN_TOGETHER_ROWS):
                yield from flush()
            pending.append((day, table))
    except Exception:
        yield from flush()
        raise
    yield from flush()


def _names(metadata: Mapping | None, table_slice: TableSlice) -> tuple[str, str, str | None]:
    """schema, the table rows are stored in, and the view SQL when the asset's table is a view."""
    metadata = metadata or {}
    return table_slice.schema, metadata.get("stored_table", table_slice.table), metadata.get("view_sql")


class PartitionHandling:
    """What both IO managers store and load with: PolarsPartitionHandler, frames by default."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsPartitionHandler()]

    @staticmethod
    def default_load_type() -> type:
        return pl.DataFrame


def partition_io_manager(client: DbClient, database: str, schema: str | None, name: str) -> DbIOManager:
    """Dagster's database IO manager over `client`, storing and loading through PolarsPartitionHandler."""
    return DbIOManager(db_client=client, database=database, schema=schema, type_handlers=[PolarsPartitionHandler()],
                       default_load_type=pl.DataFrame, io_manager_name=name)
