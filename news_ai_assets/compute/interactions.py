"""One row per (impression, candidate): the grain of the training table."""

import polars as pl

INTERACTION_COLUMNS = ["date", "impression_id", "user_id", "news_id", "time", "position", "clicked", "split"]
INTERACTION_DESCRIPTIONS = {
    "date": "The partition: day D, the impression's day.",
    "impression_id": "MIND impression id, unique within a split; (split, impression_id) identifies an impression.",
    "user_id": "MIND user id.",
    "news_id": "The candidate article.",
    "time": "Time of the impression (naive, as MIND gives it).",
    "position": "1-based position of the candidate in the order shown.",
    "clicked": "The label: whether the candidate was clicked; NULL on the unlabelled test split.",
    "split": "MIND split the impression comes from: train, dev or test.",
}


def interactions_from_behaviors(behaviors: pl.DataFrame) -> pl.DataFrame:
    """Explodes impression lists; position is 1-based in the order the candidates were shown."""
    return (
        behaviors.select(
            "date", "impression_id", "user_id", "time", "split", "impressions",
            pl.int_ranges(1, pl.col("impressions").list.len() + 1, dtype=pl.Int32).alias("position"),
        )
        .explode("impressions", "position")
        .unnest("impressions")
        .select(INTERACTION_COLUMNS)
    )
