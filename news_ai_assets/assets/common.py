"""What every asset in the graph shares: partitions, the DuckDB pool, and the metadata the UI shows."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import polars as pl

from news_ai_assets.settings import daily_partitions

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


@contextmanager
def timed(context: dg.AssetExecutionContext, what: str) -> Iterator[dict]:
    """Logs and records how long `what` took, as `<what>_seconds` metadata."""
    record: dict = {}
    started = time.perf_counter()
    yield record
    seconds = round(time.perf_counter() - started, 3)
    record[f"{what}_seconds"] = seconds
    context.log.info(f"{what}: {seconds:.2f}s")


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
