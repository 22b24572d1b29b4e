"""One row per (impression, candidate): the grain of the training table."""

import polars as pl

INTERACTION_COLUMNS = ["date", "impression_id", "user_id", "news_id", "time", "position", "clicked", "split"]


def interactions_from_behaviors(behaviors: pl.DataFrame) -> pl.DataFrame:
    """Explodes impression lists; position is 1-based in the order the candidates were shown."""
    return (
        behaviors.select(
            "date", "impression_id", "user_id", "time", "split", "impressions",
            pl.int_ranges(1, pl.col("impressions").list.len() + 1, dtype=pl.Int16).alias("position"),
        )
        .explode("impressions", "position")
        .unnest("impressions")
        .select(INTERACTION_COLUMNS)
    )
