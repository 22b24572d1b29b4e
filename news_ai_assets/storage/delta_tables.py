"""Delta Lake storage: the same tables as Delta tables in a folder or bucket, written by many runs at once.

Each table lives at `<uri>/<schema>/<table>` (bronze/behaviors at `<uri>/bronze/behaviors`), partitioned
by `date` where it has days. A partition is replaced by one predicate overwrite, one Delta commit:
readers see the previous rows or the new ones, never a mix, and a writer killed before its commit
leaves the previous rows (its unreferenced files are ignored). Runs of different days replace their
partitions of one table at once; two runs replacing the same day conflict, and Delta commits one
of them and fails the other (StorageWriteError says so). Tables that only grow (article versions,
their statistics, the embedding cache) take new keys with an insert-only MERGE that is retried on
conflict, so concurrent runs never store a key twice. Each partition write is recorded in
meta.partition_writes right after its commit; a run killed between the two leaves a day whose
rows and record disagree, which the next run that reads the day refuses, naming the day.

Reads: a connection is an in-memory DuckDB in which each table of meta.catalog is a view over its
current Delta snapshot (an Arrow dataset on Arrow's own local or S3 filesystem: filters and columns
reach the Parquet files), and the asset views (bronze.news, the wide silver table, ...) are defined
over them as in the DuckDB file.

Credentials and endpoint come from the environment, as delta-rs reads them (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_CONDITIONAL_PUT=etag), or
from the IO manager's storage options; Arrow's S3 client for the reads takes the same ones.
"""

import datetime as dt
import functools
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pa_fs
from dagster_deltalake.io_manager import DeltaLakeDbClient
from dagster_deltalake_polars import DeltaLakePolarsIOManager
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from news_ai_assets.dagster_internals import DbIOManager
from news_ai_assets.storage.database import (
    LEDGER, VOCABULARY_COLUMNS, Database, Replacement, StorageWriteError, Written, new_ids, quote,
)
from news_ai_assets.storage.duckdb_config import open_duckdb
from news_ai_assets.storage.partition_handler import PartitionHandling, partition_io_manager
from news_ai_assets.storage.tables import Rows

CATALOG = ("meta", "catalog")
RETRIES = 30  # conflicting commits of appends and merges: each retry reads the new snapshot
# A checkpoint every 10 commits, not Delta's 100: every run's process loads each table it reads from its last
# checkpoint on, one request per commit after it, and a backfill commits to its tables dozens of times.
# Set when a table is created (delta.checkpointInterval is a table property; tables made before keep theirs).
NEW_TABLE_CONFIGURATION = {"delta.checkpointInterval": "10"}


def table_uri(root: str, schema: str, table: str) -> str:
    """Where schema.table lives under the root URI (a folder, file:// or s3://bucket/prefix)."""
    return f"{root.rstrip('/')}/{schema}/{table}"


def _literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _arrow(rows: Rows | pl.DataFrame) -> pa.Table | pa.RecordBatchReader:
    return rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows


def _as_view(type_: pa.DataType) -> pa.DataType:
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return pa.string_view()
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return pa.list_(_as_view(type_.value_type))
    return type_


_OPENED: dict[str, DeltaTable] = {}  # per process: a table read before only reads the log entries since
_DATASETS: dict[tuple[str, bool], tuple[int, object]] = {}  # (uri, string_views): the dataset of the latest version read
_CATALOG_ENTRIES: dict[str, tuple[int, list[dict]]] = {}  # meta.catalog's rows at the version read last


def _latest(uri: str, storage_options: dict[str, str]) -> DeltaTable | None:
    """The table's latest snapshot (None when there is no table at `uri`)."""
    if uri in _OPENED:
        _OPENED[uri].update_incremental()
        return _OPENED[uri]
    try:
        _OPENED[uri] = DeltaTable(uri, storage_options=storage_options or None)
    except TableNotFoundError:
        return None
    return _OPENED[uri]


def _s3_settings(storage_options: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The S3 settings delta-rs reads, by its names less the `aws_` prefix: the environment's AWS_*
    variables, overridden by the storage options."""
    settings = {name.lower().removeprefix("aws_"): value for name, value in os.environ.items()
                if name.startswith("AWS_") and value}
    settings |= {name.lower().removeprefix("aws_"): str(value) for name, value in storage_options.items() if value}
    return tuple(sorted(settings.items()))


@functools.cache
def _s3(settings: tuple[tuple[str, str], ...]) -> pa_fs.S3FileSystem:
    """Arrow's own S3 client, set up as delta-rs is by the same settings (credentials left out are
    found by the AWS SDK's chain: profile, web identity, instance metadata)."""
    given = dict(settings)

    def first(*names: str) -> str | None:
        return next((given[name] for name in names if name in given), None)

    endpoint = first("endpoint_url", "endpoint")
    address = urlsplit(endpoint) if endpoint and "://" in endpoint else None
    return pa_fs.S3FileSystem(
        access_key=first("access_key_id"), secret_key=first("secret_access_key"),
        session_token=first("session_token", "token"), region=first("region", "default_region"),
        scheme=address.scheme if address else None,
        endpoint_override=(address.netloc + address.path.rstrip("/")) if address else endpoint,
    )


def _filesystem(uri: str, storage_options: dict[str, str]) -> pa_fs.FileSystem:
    """The table's folder on Arrow's own local or S3 filesystem. deltalake's default is a filesystem
    written in Python, which Arrow's reader threads call while holding a lock of the scan. A DuckDB
    thread starting that scan holds the GIL and waits for the same lock, so both wait forever: a
    backfill's run on S3 hung that way in a check step. Native reads never need the GIL.

    `uri` is the table's URI as delta-rs gives it (file:// or s3://), percent-encoded."""
    scheme, _, encoded = uri.partition("://")
    base = _s3(_s3_settings(storage_options)) if scheme == "s3" else pa_fs.LocalFileSystem()
    return pa_fs.SubTreeFileSystem(unquote(encoded), base)


def _dataset(stored: DeltaTable, storage_options: dict[str, str], string_views: bool = True) -> ds.FileSystemDataset:
    """The snapshot as an Arrow dataset on a native filesystem (_filesystem), strings read as
    string_view: Delta's MERGE writes Parquet files whose strings are string_view, and Arrow cannot
    evaluate a pushed-down filter that compares such a file's column with a plain string.

    The price: with string_view columns Arrow cannot match a filter against the files' statistics, so
    every read opens every file. `string_views=False` for a table no MERGE ever writes (the ledger:
    appended by every partition write, read for a few days by every run) keeps its files pruned."""
    uri, version = stored.table_uri, stored.version()
    if _DATASETS.get((uri, string_views), (None, None))[0] != version:
        schema = pa.schema(stored.schema().to_arrow())
        if string_views:
            schema = pa.schema([f.with_type(_as_view(f.type)) for f in schema])
        _DATASETS[uri, string_views] = version, stored.to_pyarrow_dataset(filesystem=_filesystem(uri, storage_options),
                                                                          schema=schema)
    return _DATASETS[uri, string_views][1]


def _catalog_entries(catalog: DeltaTable, storage_options: dict[str, str]) -> list[dict]:
    """meta.catalog's rows, read once per version: every connection and registration reads the catalog,
    and each read of its Parquet files is several requests (a third of a backfill's on S3)."""
    uri, version = catalog.table_uri, catalog.version()
    if _CATALOG_ENTRIES.get(uri, (None, None))[0] != version:
        _CATALOG_ENTRIES[uri] = version, _dataset(catalog, storage_options).to_table().to_pylist()
    return _CATALOG_ENTRIES[uri][1]


def _retried(action: Callable[[], object], what: str) -> object:
    """Runs `action` until it commits: a conflict means another run committed first, and the
    action (an append or a keyed insert) is correct on the new snapshot too."""
    for attempt in range(RETRIES):
        try:
            return action()
        except CommitFailedError:
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
    raise StorageWriteError(f"{what}: {RETRIES} commits in a row conflicted with other runs; nothing was written")


class DeltaDatabase(Database):
    """Every table as a Delta table under `uri`: a local folder, `file://...` or `s3://bucket/prefix`."""

    uri: str
    storage_options: dict[str, str] = {}

    def location(self) -> str:
        return self.uri

    def _table(self, schema: str, table: str) -> DeltaTable | None:
        return _latest(table_uri(self.uri, schema, table), self.storage_options)

    def _write(self, uri: str, data, **options) -> None:
        write_deltalake(uri, data, storage_options=self.storage_options or None, configuration=NEW_TABLE_CONFIGURATION,
                        **options)

    # Reads

    def reader(self) -> duckdb.DuckDBPyConnection:
        conn = open_duckdb()
        catalog = self._table(*CATALOG)
        entries = _catalog_entries(catalog, self.storage_options) if catalog else []
        views = []
        for entry in sorted(entries, key=lambda e: e["name"]):
            schema, name = entry["name"].split(".")
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            if entry["kind"] == "view":
                views.append((schema, name, entry["sql"]))
                continue
            stored = self._table(schema, name)
            if stored is None:  # registered, first write still under way
                continue
            conn.register(f"delta__{schema}__{name}", _dataset(stored, self.storage_options, entry["name"] != LEDGER))
            conn.execute(f"CREATE VIEW {quote(schema)}.{quote(name)} AS SELECT * FROM {quote(f'delta__{schema}__{name}')}")
        while views:  # a view may read another: define them in the order their inputs allow
            pending = []
            for schema, name, sql in views:
                try:
                    conn.execute(f"CREATE VIEW {quote(schema)}.{quote(name)} AS {sql}")
                except duckdb.CatalogException:
                    pending.append((schema, name, sql))
            if len(pending) == len(views):
                break  # inputs never written yet: those views are absent, as in a new DuckDB file
            views = pending
        return conn

    # The catalog: which tables and views exist, read by every connection

    def _register(self, schema: str, name: str, kind: str, sql: str | None = None) -> None:
        """Adds schema.name to meta.catalog (or its new SQL), before anything of it is written."""
        key = f"{schema}.{name}"
        catalog = self._table(*CATALOG)
        if catalog is not None:
            known = {e["name"]: e["sql"] for e in _catalog_entries(catalog, self.storage_options)}
            if key in known and known[key] == sql:
                return
        entry = pa.table({"name": [key], "kind": [kind], "sql": pa.array([sql], pa.string())})
        self._ensure(*CATALOG, entry.schema)

        def upsert():
            (self._table(*CATALOG).merge(entry, predicate="t.name = s.name", source_alias="s", target_alias="t")
             .when_matched_update_all().when_not_matched_insert_all().execute())

        _retried(upsert, f"registering {key} in meta.catalog")

    def _ensure(self, schema: str, table: str, arrow_schema: pa.Schema, partition_by: list[str] | None = None) -> str:
        """Creates schema.table, empty, when it does not exist; returns its URI."""
        uri = table_uri(self.uri, schema, table)
        if self._table(schema, table) is None:
            if (schema, table) != CATALOG:
                self._register(schema, table, "table")
            empty = pa.Table.from_batches([], arrow_schema)

            def create():
                try:
                    self._write(uri, empty, mode="append", partition_by=partition_by)
                except DeltaError:
                    if self._table(schema, table) is None:  # not another run's creation that won
                        raise

            _retried(create, f"creating {schema}.{table}")
        return uri

    # Writes

    def replace_days(self, schema, table, rows, days, day_column="date", run_id=None) -> Written:
        data = _arrow(rows)
        uri = self._ensure(schema, table, data.schema, [day_column] if days else None)
        predicate = (f"{day_column} >= {_literal(min(days))} AND {day_column} < {_literal(max(days) + dt.timedelta(days=1))}"
                     if days else None)
        before = set(self._table(schema, table).schema().to_arrow().names)
        try:
            self._write(uri, data, mode="overwrite", predicate=predicate, schema_mode="merge")
        except CommitFailedError as err:
            raise StorageWriteError(
                f"Another run replaced {schema}.{table} for {', '.join(str(d) for d in days or [])} while this one was "
                f"writing it; this write was not committed, and the table holds the other run's rows. Run the "
                f"partition again if it should be this run's. Delta said: {err}"
            ) from err
        except DeltaError as err:
            raise StorageWriteError(f"writing {schema}.{table} failed, so its previous rows are kept. {err}") from err
        after = self._table(schema, table)
        changed = sorted(set(after.schema().to_arrow().names) - before)
        by_day = self._count_days(after, days or [], day_column)
        if days:
            self._record(schema, table, by_day, run_id)
        return Written(changed, sum(by_day.values()) if days else _dataset(after, self.storage_options).count_rows(), by_day)

    def _count_days(self, stored: DeltaTable, days: Sequence[dt.date], day_column: str) -> dict[dt.date, int]:
        if not days:
            return {}
        with open_duckdb() as conn:
            conn.register("stored", _dataset(stored, self.storage_options))
            counted = dict(conn.execute(
                f"SELECT {quote(day_column)}::DATE, count(*) FROM stored WHERE {quote(day_column)} BETWEEN ? AND ? GROUP BY 1",
                [min(days), max(days)],
            ).fetchall())
        return {day: counted.get(day, 0) for day in days}

    def _record(self, schema: str, table: str, by_day: dict[dt.date, int], run_id: str | None) -> None:
        """Appends the days written to meta.partition_writes (appends never conflict with each other)."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        records = pa.table({
            "write_id": pa.array([time.time_ns() + i for i in range(len(by_day))], pa.int64()),
            "table_name": [f"{schema}.{table}"] * len(by_day),
            "date": pa.array(list(by_day), pa.date32()),
            "row_count": pa.array(list(by_day.values()), pa.int64()),
            "written_at": pa.array([now] * len(by_day), pa.timestamp("us")),
            "run_id": pa.array([run_id] * len(by_day), pa.string()),
        })
        uri = self._ensure(*LEDGER.split("."), records.schema)
        _retried(lambda: self._write(uri, records, mode="append"),
                 f"recording the partitions of {schema}.{table} written")

    def replace_each(self, conn, replacements: Sequence[Replacement], failure: str) -> None:
        """One commit each, in order (Delta has no transaction across tables), each retried when a
        concurrent run committed first: a replacement is the same rows whoever writes it."""
        for r in replacements:
            rows = conn.sql(r.select, params=list(r.params)).to_arrow_table()
            if r.column is None:
                uri = table_uri(self.uri, r.schema, r.table)
                self._register(r.schema, r.table, "table")
                _retried(lambda: self._write(uri, rows, mode="overwrite", schema_mode="overwrite"), failure)
                continue
            uri = self._ensure(r.schema, r.table, rows.schema, [r.column])
            predicate = f"{r.column} = {_literal(r.value)}"
            _retried(lambda: self._write(uri, rows, mode="overwrite", predicate=predicate, schema_mode="merge"), failure)

    def add_new_rows(self, schema, table, rows, key) -> int:
        keys = [key] if isinstance(key, str) else list(key)
        source = rows.unique(keys, keep="first", maintain_order=True).to_arrow()
        self._ensure(schema, table, source.schema)
        on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys)

        def insert():
            return (self._table(schema, table).merge(source, predicate=on, source_alias="s", target_alias="t")
                    .when_not_matched_insert_all().execute())

        return _retried(insert, f"adding rows to {schema}.{table}")["num_target_rows_inserted"]

    def assign_ids(self, schema, table, vocabulary, tokens) -> int:
        """Rewrites the vocabulary's partition with its new tokens appended, from the snapshot the
        new ids were computed on: a run that committed new ids in between makes the commit fail,
        and the ids are computed again on the new snapshot, so no id is given twice."""
        self._ensure(schema, table, pl.DataFrame(schema=VOCABULARY_COLUMNS).to_arrow().schema, ["vocabulary"])

        def extend() -> int:
            stored = self._table(schema, table)
            rows = _dataset(stored, self.storage_options).to_table(filter=pc.field("vocabulary") == pa.scalar(vocabulary, pa.string_view()))
            known = pl.from_arrow(rows).cast(VOCABULARY_COLUMNS)
            added = new_ids(known, vocabulary, tokens)
            if added.height:
                write_deltalake(stored, pl.concat([known, added]).to_arrow(), mode="overwrite",
                                predicate=f"vocabulary = {_literal(vocabulary)}")
            return added.height

        return _retried(extend, f"adding to the {vocabulary} vocabulary of {schema}.{table}")

    def define_view(self, schema, name, sql) -> None:
        self._register(schema, name, "view", sql)


class _DeltaClient(DeltaLakeDbClient):
    """dagster-deltalake's client, handing the handler the Delta database its root URI names."""

    @staticmethod
    @contextmanager
    def connect(context, table_slice) -> Iterator[Database]:
        with DeltaLakeDbClient.connect(context, table_slice) as table:
            options = {k: v for k, v in table.storage_options.items() if k != "provider"}
            yield DeltaDatabase(uri=context.resource_config["root_uri"].rstrip("/"), storage_options=options)


class DeltaPolarsIOManager(PartitionHandling, DeltaLakePolarsIOManager):
    """dagster-deltalake-polars' IO manager (its configuration: root_uri, storage_options), with the
    pipeline's partition handler. The stock handler is replaced because it loses data: when opening
    the existing table fails for any reason (a network error, say) it overwrites the whole table
    with the one partition being written, and it keeps no record of the partitions written."""

    def create_io_manager(self, context) -> DbIOManager:
        return partition_io_manager(_DeltaClient(), "deltalake", self.schema_, "DeltaPolarsIOManager")
