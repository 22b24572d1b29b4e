"""Feature layer: per-day feature tables derived from bronze."""

import dagster as dg
import polars as pl

from news_ai_assets.assets.common import PARTITIONED_TABLE, partition_label, preview, timed
from news_ai_assets.compute.interactions import interactions_from_behaviors


@dg.asset(
    key=["features", "interactions"],
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={"behaviors": dg.AssetIn(["bronze", "behaviors"])},
    **PARTITIONED_TABLE,
)
def interactions(context: dg.AssetExecutionContext, behaviors: pl.DataFrame) -> pl.DataFrame:
    """One row per (impression, candidate) with its position and label (NULL on unlabelled days)."""
    with timed(context, "compute") as timing:
        rows = interactions_from_behaviors(behaviors)
    context.add_output_metadata(
        {
            "partitions": partition_label(context),
            "impressions": behaviors.height,
            "clicks": int(rows.get_column("clicked").sum() or 0),
            "unlabelled_rows": rows.get_column("clicked").null_count(),
            **timing,
            "preview": preview(rows),
        }
    )
    return rows
