"""What every asset in the graph shares: partitions, the DuckDB pool, and the metadata the UI shows."""

import datetime as dt
import resource
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb
import polars as pl

from news_ai_assets.settings import daily_partitions
from news_ai_assets.storage import DuckDBDatabase, quote

# Two features we rely on knowingly: partitioned asset checks and lookback windows that start
# before the first partition.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", message=".*allow_nonexistent_upstream_partitions.*", category=dg.BetaWarning)

DUCKDB_POOL = "duckdb"  # limit 1 in dagster.yaml: one writer per DuckDB file

PARTITIONED_TABLE = dict(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    metadata={"partition_expr": "date"},
)


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


def peak_rss_mib() -> float:
    """The process's peak resident memory so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024 / (1024 if sys.platform == "darwin" else 1), 1)  # bytes on macOS, KiB on Linux


@contextmanager
def timed(context: dg.AssetExecutionContext, what: str) -> Iterator[dict]:
    """Logs and records how long `what` took (`<what>_seconds`) and the peak memory so far."""
    record: dict = {}
    started = time.perf_counter()
    yield record
    seconds = round(time.perf_counter() - started, 3)
    record[f"{what}_seconds"] = seconds
    record["process_peak_rss_mib"] = peak_rss_mib()
    context.log.info(f"{what}: {seconds:.2f}s, process peak RSS {record['process_peak_rss_mib']} MiB")


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days of the run's partition window (one, or a backfill's range)."""
    window = context.partition_time_window
    return [window.start.date() + dt.timedelta(days=i) for i in range((window.end - window.start).days)]


def partition_label(context: dg.AssetExecutionContext) -> str:
    window = context.partition_time_window
    return f"{window.start:%Y-%m-%d} .. {window.end:%Y-%m-%d} (end exclusive)"


def require_materialized(context: dg.AssetExecutionContext, input_name: str, asset_key: dg.AssetKey) -> None:
    """Fails when a partition an input needs was never materialised: a short window gives wrong features."""
    wanted = set(context.asset_partition_keys_for_input(input_name))
    missing = sorted(wanted - context.instance.get_materialized_partitions(asset_key))
    if missing:
        raise dg.Failure(
            f"{asset_key.to_user_string()} is not materialised for {', '.join(missing)}, which "
            f"{context.asset_key.to_user_string()} needs. Materialise those partitions first, "
            "or run the range as one backfill."
        )


def sql_check(
    asset: dg.AssetKey, name: str, description: str, query: str | Callable[[duckdb.DuckDBPyConnection], str],
    blocking: bool = True,
) -> dg.AssetChecksDefinition:
    """An asset check that runs `query` over the checked partitions of the stored table.

    The query sees $start and $end (the partitions' time window) and returns one row: a boolean
    `passed` and any other columns, which become the check's metadata. Reading the stored table
    checks what downstream assets will read, not what the asset meant to write.
    """

    @dg.asset_check(
        asset=asset, name=name, description=description, blocking=blocking, partitions_def=daily_partitions
    )
    def check(context: dg.AssetCheckExecutionContext, duckdb_database: DuckDBDatabase) -> dg.AssetCheckResult:
        window = context.partition_time_window
        with duckdb_database.connect() as conn:
            sql = query(conn) if callable(query) else query
            result = conn.sql(sql, params={"start": window.start.date(), "end": window.end.date()}).pl()
        row = result.row(0, named=True)
        metadata = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in row.items() if k != "passed"}
        return dg.AssetCheckResult(passed=bool(row["passed"]), metadata=metadata)

    return check


def in_partitions(table: str) -> str:
    """The rows of `table` in the checked partitions."""
    return f"(SELECT * FROM {table} WHERE date >= $start AND date < $end)"


def no_rows_where(table: str, condition: str, label: str, extra: str = "") -> str:
    """A check query that passes when no row of the checked partitions matches `condition`,
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


def unique_rows(table: str, key: str) -> str:
    return (
        f"SELECT count(*) = count(DISTINCT ({key})) AS passed, count(*) - count(DISTINCT ({key})) AS duplicate_rows "
        f"FROM {in_partitions(table)}"
    )
