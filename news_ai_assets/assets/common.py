"""What every asset in the graph shares: partitions, per-partition metadata, and checks.

A range run (a UI backfill, `--partition-range`) materialises many partitions in one step, and
Dagster records one materialisation and one check evaluation per partition. Everything the UI
shows about a partition is computed for that partition alone: its rows, preview and timings go
in with `context.add_asset_metadata(..., partition_key=...)`, its check result is evaluated on
its own rows. Values that belong to the whole run are named `run_...`.
"""

import datetime as dt
import resource
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa

from news_ai_assets.dagster_internals import check_evaluations
from news_ai_assets.settings import SETTINGS, daily_partitions
from news_ai_assets.storage.database import Database, quote
from news_ai_assets.storage.tables import DayRows, Rows

# Dagster features we rely on knowingly, whose "beta"/"preview" notices would otherwise print on
# every command: per-partition asset checks, lookback windows that start before the first
# partition, and single-run backfills (the CLI's --partition-range needs them). The last one is
# Dagster's CLI parsing the README's `--select '*'` (and `'* and not group:gold'`) through a beta
# parameter of its own.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", message=".*allow_nonexistent_upstream_partitions.*", category=dg.BetaWarning)
warnings.filterwarnings("ignore", message=".*Parameter `backfill_policy` of function `asset`.*", category=dg.BetaWarning)
warnings.filterwarnings("ignore", message=".*Parameter `include_sources` of function `AssetSelection.(all|groups)`.*",
                        category=dg.BetaWarning)

# Every daily asset, as the CLI's --select takes it: `gold/ranker_evaluation` reads the train and dev
# days, not one day, so a day's run (or a range before the dev day) leaves it out.
DAILY_ASSETS = "* and not group:gold"

# A partition is requested when a partition it reads got a new data version (assets/versions.py), and
# not while what it reads is missing or being written; carry_changes_downstream (automation.py)
# evaluates it. Partitions the same request also updates (will_be_requested) go in the same pass.
CARRY_CHANGES = (
    dg.AutomationCondition.any_deps_match(
        (dg.AutomationCondition.data_version_changed() & ~dg.AutomationCondition.executed_with_root_target())
        | dg.AutomationCondition.will_be_requested()
    ).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("a partition it reads has a new data version")

PARTITIONED_TABLE = dict(
    partitions_def=daily_partitions,
    backfill_policy=SETTINGS.backfill_policy,
    metadata={"partition_expr": "date"},
    automation_condition=CARRY_CHANGES,
)


def stored_as(table: str, view_sql: str) -> dict:
    """PARTITIONED_TABLE for an asset that stores its partitions in `table` (of its schema) and is
    itself the view `view_sql` over it: what it computes is stored once, the rest joined on."""
    return {**PARTITIONED_TABLE, "metadata": {**PARTITIONED_TABLE["metadata"], "stored_table": table, "view_sql": view_sql}}


def preview(frame: pl.DataFrame, rows: int = 5, width: int = 48) -> dg.MarkdownMetadataValue:
    """The first rows as a markdown table, long values cut to `width` characters."""

    def cell(value) -> str:
        text = str(value).replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + " --- |" * frame.width]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.head(rows).iter_rows()]
    return dg.MetadataValue.md("\n".join(lines))


def counts_table(frame: pl.DataFrame, by: str) -> dg.MarkdownMetadataValue:
    """Row counts per value of `by`, as markdown."""
    counts = frame.group_by(by).len().sort("len", by, descending=[True, False])
    return preview(counts.rename({"len": "rows"}), rows=counts.height, width=120)


def column_schema(schema: pl.Schema | pa.Schema, descriptions: Mapping[str, str]) -> dg.TableSchema:
    """The UI's Columns table: each stored column, its type and its one-line definition."""
    fields = schema.items() if isinstance(schema, pl.Schema) else ((f.name, f.type) for f in schema)
    return dg.TableSchema(columns=[
        dg.TableColumn(name, str(type_), description=descriptions.get(name)) for name, type_ in fields
    ])


def peak_rss_mib() -> float:
    """The process's peak resident memory so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024 / (1024 if sys.platform == "darwin" else 1), 1)  # bytes on macOS, KiB on Linux


def time_and_memory(what: str, seconds: float) -> dict:
    """How long `what` took (`<what>_seconds`) and the peak memory so far, as metadata."""
    return {f"{what}_seconds": round(seconds, 3), "process_peak_rss_mib": peak_rss_mib()}


@contextmanager
def measured(what: str) -> Iterator[dict]:
    """Records in the yielded dict how long the block took and the peak memory so far (time_and_memory)."""
    record: dict = {}
    started = time.perf_counter()
    yield record
    record.update(time_and_memory(what, time.perf_counter() - started))


@contextmanager
def timed(context: dg.AssetExecutionContext, what: str) -> Iterator[dict]:
    """measured, and logged: for work done once a run. A day's timing goes into its metadata only, and
    the days into a Progress: every log line is an event in the instance (~9 ms each on SQLite)."""
    with measured(what) as record:
        yield record
    context.log.info(f"{what}: {record[f'{what}_seconds']:.2f}s, process peak RSS {record['process_peak_rss_mib']} MiB")


@dataclass(frozen=True)
class ProgressReport:
    """Where long work stands: `done` of `total` `unit`, its rate so far and the seconds left at that rate."""

    what: str
    done: float
    total: float
    unit: str
    per_second: float
    seconds_left: float | None

    def __str__(self) -> str:
        left = "" if self.seconds_left is None else f", {format_seconds(self.seconds_left)} left"
        share = self.done / self.total if self.total else 1.0
        return (f"{self.what}: {self.done:,.0f} of {self.total:,.0f} {self.unit} ({share:.0%}), "
                f"{self.per_second:,.1f} {self.unit}/s{left}")


def format_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}" if minutes else f"{rest} s"


class Progress:
    """Reports long work to the run's log (the UI's run page) every `every_s` seconds and when it ends:
    done of total, rate, time left. The record carries the ProgressReport as `progress`, which the
    terminal's logger (news_ai_assets/run_console.py) draws as a bar."""

    def __init__(self, context: dg.AssetExecutionContext, what: str, total: float, unit: str, every_s: float = 5.0):
        self._log, self._what, self._total, self._unit, self._every_s = context.log, what, total, unit, every_s
        self._done, self._started = 0.0, time.perf_counter()
        self._reported = self._started

    def advance(self, amount: float = 1) -> None:
        self._done += amount
        now = time.perf_counter()
        if self._done >= self._total or now - self._reported >= self._every_s:
            self._reported = now
            per_second = self._done / max(now - self._started, 1e-9)
            left = (self._total - self._done) / per_second if per_second else None
            report = ProgressReport(self._what, self._done, self._total, self._unit, per_second, left)
            self._log.info(str(report), extra={"progress": report})


def partition_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[dt.date]:
    """The days of the run's partition window (one, or a backfill's range)."""
    window = context.partition_time_window
    return [window.start.date() + dt.timedelta(days=i) for i in range((window.end - window.start).days)]


def reported_days(context: dg.AssetExecutionContext, days: Iterator[tuple[dt.date, Rows]]) -> DayRows:
    """DayRows of `days`, with a progress line on the days computed and stored (Progress: one at most
    every 5 s, not one per day: each log line is an event in the instance)."""

    def reported() -> Iterator[tuple[dt.date, Rows]]:
        progress = Progress(context, "days computed and stored", len(partition_days(context)), "days")
        for item in days:
            yield item
            progress.advance()

    return DayRows(reported())


def latest_materializations(instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str]) -> dict[str, dg.EventLogRecord]:
    """The latest materialisation of each of `partitions` of `key` that has one: one query for all
    of them (a range run's own are the newest, one per partition), then one per partition it missed."""
    latest: dict[str, dg.EventLogRecord] = {}
    if not partitions:
        return latest
    for record in instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(partitions)), limit=len(partitions)
    ).records:
        latest.setdefault(record.partition_key, record)
    for partition in set(partitions) - set(latest):
        found = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        latest.update({partition: found[0]} if found else {})
    return latest


def run_metadata(context: dg.AssetExecutionContext, metadata: Mapping[str, object]) -> None:
    """Metadata of the whole run, on every partition's event: the run's partitions and `metadata`,
    whose keys say that they describe the run (run_..., source_...), not one partition."""
    days = partition_days(context)
    context.add_output_metadata({
        "run_partitions": f"{days[0]} .. {days[-1]} ({len(days)} day{'s' if len(days) > 1 else ''} in this run)",
        **metadata,
    })


def day_metadata(context: dg.AssetExecutionContext, day: dt.date, metadata: Mapping[str, object]) -> None:
    """Metadata of one partition's materialisation."""
    context.add_asset_metadata({"partition": str(day), **metadata}, partition_key=day.isoformat())


def require_lookback_before_start_empty(context: dg.AssetExecutionContext, database: Database) -> None:
    """Fails when a lookback window reaches before the first partition into days the raw files
    hold: no partition can store those days, so the window would silently be short."""
    days = partition_days(context)
    first_needed = days[0] - dt.timedelta(days=SETTINGS.lookback_days)
    if first_needed >= SETTINGS.start_date:
        return
    with database.connect() as conn:
        try:
            covered = conn.execute(
                "SELECT date, sum(lines) FROM bronze.source_days WHERE date >= ? AND date < ? GROUP BY 1 ORDER BY 1",
                [first_needed, SETTINGS.start_date],
            ).fetchall()
        except duckdb.CatalogException as err:
            raise dg.Failure("bronze.source_days is missing: materialise bronze/behaviors first") from err
    if covered:
        listed = ", ".join(f"{day} ({lines} lines)" for day, lines in covered)
        raise dg.Failure(
            f"The raw MIND files hold impressions on {listed}, before the first partition {SETTINGS.start_date} "
            f"(NEWS_AI_START_DATE); the {SETTINGS.lookback_days}-day lookback of {days[0]} needs them. Set "
            f"NEWS_AI_START_DATE={covered[0][0]} (or earlier) and materialise from there."
        )


def _metadata_value(value: object) -> object:
    return value if isinstance(value, (int, float, str, bool)) else str(value)


@dataclass(frozen=True)
class SqlCheck:
    """A check as SQL over one partition of the stored table: the query sees $start and $end (the
    day's window) and any `params`, and returns one row, a boolean `passed` and any other columns,
    which become the check's metadata. `query` may be a function of the connection that returns it.
    `failed_query`, when given, answers instead where `query` fails: `query` is then a quicker test
    that can only err towards failing."""

    name: str
    description: str
    query: str | Callable[[duckdb.DuckDBPyConnection], str]
    params: Mapping[str, object] = field(default_factory=dict)
    failed_query: str | None = None


def sql_checks(asset: dg.AssetKey, checks: list[SqlCheck]) -> dg.AssetChecksDefinition:
    """The asset's checks, evaluated together in one step, each partition separately.

    Reading the stored table checks what downstream assets will read, not what the asset meant to
    write. Every check blocks: a failure stops the assets downstream in the same run.
    """
    specs = [dg.AssetCheckSpec(c.name, asset=asset, description=c.description, blocking=True,
                               partitions_def=daily_partitions) for c in checks]

    @dg.multi_asset_check(specs=specs, name=f"{'__'.join(asset.path)}_checks")
    def evaluate(context: dg.AssetCheckExecutionContext, database: Database):
        latest = latest_materializations(context.instance, asset, [day.isoformat() for day in partition_days(context)])
        with database.connect() as conn:
            for check in checks:
                sql = check.query(conn) if callable(check.query) else check.query
                results = {}
                for day in partition_days(context):
                    values = {"start": day, "end": day + dt.timedelta(days=1), **check.params}
                    row = _answer(conn, sql, values)
                    if not row["passed"] and check.failed_query:
                        row = _answer(conn, check.failed_query, values)
                    results[day.isoformat()] = (bool(row.pop("passed")), {k: _metadata_value(v) for k, v in row.items()})
                yield from check_evaluations(dg.AssetCheckKey(asset, check.name), results, latest, blocking=True)
        for output in context.op_execution_context.op_def.output_defs:
            yield dg.Output(None, output_name=output.name)

    return evaluate


def _answer(conn: duckdb.DuckDBPyConnection, sql: str, values: Mapping[str, object]) -> dict[str, object]:
    """A check query's one row, by column name."""
    cursor = conn.execute(sql, {k: v for k, v in values.items() if f"${k}" in sql})
    return dict(zip([column[0] for column in cursor.description], cursor.fetchone(), strict=True))


def in_partitions(table: str) -> str:
    """The rows of `table` in the checked partition."""
    return f"(SELECT * FROM {table} WHERE date >= $start AND date < $end)"


def no_rows_where(table: str, condition: str, label: str, extra: str = "") -> str:
    """A check query that passes when no row of the checked partition matches `condition`,
    reporting their count as `label` (and any `extra` select items)."""
    return (
        f"SELECT count(*) FILTER (WHERE {condition}) = 0 AS passed, count(*) FILTER (WHERE {condition}) AS {label}"
        f"{', ' + extra if extra else ''} FROM {in_partitions(table)}"
    )


def non_finite_rows(table: str) -> Callable[[duckdb.DuckDBPyConnection], str]:
    """A check query counting rows with NaN or infinite values in any float column of `table`."""
    schema, name = table.split(".")

    def query(conn: duckdb.DuckDBPyConnection) -> str:
        floats = [
            column for column, type_ in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [schema, name],
            ).fetchall()
            if type_ in ("FLOAT", "DOUBLE")
        ]
        return no_rows_where(table, " OR ".join(f"NOT isfinite({quote(c)})" for c in floats) or "false", "non_finite_rows")

    return query


def unique_rows(name: str, description: str, table: str, key: str) -> SqlCheck:
    """A check that no `key` (columns) repeats among the partition's rows. The distinct 64-bit hashes
    of the keys are counted first (integers, not the keys' strings: ~1.4x quicker); as many as rows, no
    key repeats. Fewer (a repeat, or a hash collision) and the keys themselves are counted, so the
    reported count of duplicate rows is exact either way."""

    def counted(distinct: str) -> str:
        return (f"SELECT count(*) = count(DISTINCT {distinct}) AS passed, count(*) - count(DISTINCT {distinct}) "
                f"AS duplicate_rows FROM {in_partitions(table)}")

    return SqlCheck(name, description, counted(f"hash({key})"), failed_query=counted(f"({key})"))


def not_emptied(table: str) -> str:
    """A check query that fails when the partition's latest write stored no rows where the one
    before it stored some: a day that emptied out is lost data until shown otherwise."""
    return f"""
        WITH writes AS (
            SELECT row_count, row_number() OVER (ORDER BY write_id DESC) AS age
            FROM meta.partition_writes WHERE table_name = '{table}' AND date = $start
        )
        SELECT NOT (rows_now = 0 AND coalesce(rows_before, 0) > 0) AS passed, rows_now,
               coalesce(rows_before, 0) AS rows_before
        FROM (SELECT max(row_count) FILTER (age = 1) AS rows_now, max(row_count) FILTER (age = 2) AS rows_before
              FROM writes)
    """
