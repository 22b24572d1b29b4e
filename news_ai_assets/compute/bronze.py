"""Per-day selections of parsed MIND data."""

import polars as pl


def referenced_news_ids(behaviors: pl.DataFrame) -> pl.DataFrame:
    """(date, news_id) for every article a day's impressions show or its histories list."""
    candidates = behaviors.select(
        "date", pl.col("impressions").list.eval(pl.element().struct.field("news_id")).alias("news_id")
    )
    histories = behaviors.select("date", pl.col("history").alias("news_id"))
    return pl.concat([candidates, histories]).explode("news_id").drop_nulls().unique().sort("date", "news_id")


def news_for_days(news: pl.DataFrame, behaviors: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each day's referenced articles (one row per date and article), and the referenced ids news.tsv lacks."""
    referenced = referenced_news_ids(behaviors)
    found = referenced.join(news, on="news_id", how="inner", maintain_order="left")
    missing = referenced.join(news, on="news_id", how="anti", maintain_order="left")
    return found, missing
