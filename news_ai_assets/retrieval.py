"""Point-in-time retrieval: silver's features for anyone's events, each as of its own time.

    python -m news_ai_assets.retrieval EVENTS.parquet --out RESULT.parquet   # or EVENTS.csv

A trainer with its own impression log, or candidates it generates (negative sampling, re-ranking),
gives events (`user_id`, `news_id`, `time`); it gets one row per event, in its order, with its own
columns first: the user's features as of the start of the event's day, the article's features of
that day, and the cross features and intra-day popularity as of the event's time, computed by
silver's own code (compute/silver.py) from the stored tables, with silver's leakage guarantees: no
value reads a label at or after the event's time. An event equal to a silver row gets that row's
values.

A user with no impression on the event's day has no features that day (MIND gives a user's history
only with their impressions): NULL user features and user-dependent cross features. An article not
listed on that day has NULL news features and similarities; its counts are still counted. The
result counts both. Events on days whose inputs are not stored stop the call before anything is
computed, naming the days and the command that fills them.
"""

import argparse
import datetime as dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa

from news_ai_assets.assets.common import DAILY_ASSETS
from news_ai_assets.assets.silver import cross_feature_chunks, training_examples
from news_ai_assets.assets.versions import upstream_days
from news_ai_assets.compute.silver import CROSS_COLUMNS, ID_COLUMNS, JOINED_NEWS_COLUMNS, JOINED_USER_COLUMNS
from news_ai_assets.settings import SETTINGS, daily_partitions
from news_ai_assets.storage.database import Database, describe_days, materialize_command, recorded_partitions, require_written
from news_ai_assets.storage.partition_handler import StoredTableDays
from news_ai_assets.summary import nothing_written, stored_tables

EVENT_COLUMNS = ("user_id", "news_id", "time")
_ROW = "__news_ai_event_row"  # the caller's row number, while the events are worked on day by day
_SPLIT = "event"  # what silver's code sees as the events' split: each event its own impression, in order
FEATURE_COLUMNS = [*JOINED_USER_COLUMNS, *JOINED_NEWS_COLUMNS, *CROSS_COLUMNS]


class RetrievalInputError(ValueError):
    """The events or the stored tables they need are unusable: nothing was computed."""


@dataclass(frozen=True)
class Retrieved:
    rows: pl.DataFrame  # the caller's columns, then the features, one row per event in the caller's order
    unseen_users: int  # events whose user has no impression on the event's day
    unseen_articles: int  # events whose article is not listed on the event's day
    days: list[dt.date]


def _events_frame(events) -> pl.DataFrame:
    """The caller's events as a Polars frame, checked: the three columns, no NULLs, naive times."""
    if isinstance(events, pl.LazyFrame):
        events = events.collect()
    elif isinstance(events, (pa.Table, pa.RecordBatchReader)):
        events = pl.from_arrow(events.read_all() if isinstance(events, pa.RecordBatchReader) else events)
    elif not isinstance(events, pl.DataFrame):
        events = pl.from_pandas(events)  # a pandas frame: anything else fails here, naming its type
    if events.height == 0:
        raise RetrievalInputError("no events given")
    if missing := [c for c in EVENT_COLUMNS if c not in events.columns]:
        raise RetrievalInputError(f"the events lack the column(s) {', '.join(missing)}; they need {', '.join(EVENT_COLUMNS)}")
    if taken := sorted(set(events.columns) & set(FEATURE_COLUMNS)):
        raise RetrievalInputError(f"the events' column(s) {', '.join(taken)} would be replaced by features: rename them")
    when = events.schema["time"]
    if when == pl.String:
        events = events.with_columns(pl.col("time").str.to_datetime(time_unit="us", strict=False).alias("time"))
    elif not isinstance(when, pl.Datetime) or when.time_zone is not None:
        raise RetrievalInputError(f"the events' time is {when}: give naive datetimes, as MIND's times are")
    events = events.with_columns(pl.col("user_id", "news_id").cast(pl.String), pl.col("time").cast(pl.Datetime("us")))
    if bad := events.with_row_index(_ROW).filter(pl.any_horizontal(pl.col(EVENT_COLUMNS).is_null())).get_column(_ROW).to_list():
        raise RetrievalInputError(f"{len(bad)} events have no user_id, news_id or (readable) time, e.g. rows {bad[:5]}")
    return events


def _needed(day: dt.date) -> dict[str, list[dt.date]]:
    """asset -> the days of it silver reads for `day`, through silver's own partition mappings."""
    return {key.to_user_string(): upstream_days(training_examples.get_partition_mapping(key), day)
            for key in training_examples.keys_by_input_name.values()}


def _require_stored(database: Database, days: list[dt.date]) -> None:
    """Fails, before anything is computed, unless every table holds every day the events need."""
    if outside := [d for d in days if not daily_partitions.has_partition_key(d.isoformat())]:
        raise RetrievalInputError(f"events on {describe_days(outside)} fall outside the partitions "
                                  f"({SETTINGS.start_date} .. {SETTINGS.end_date}: NEWS_AI_START_DATE / NEWS_AI_END_DATE)")
    if not database.holds_pipeline_data():
        raise RetrievalInputError(nothing_written(database))
    needed: dict[str, list[dt.date]] = {}
    for day in days:
        for asset, asset_days in _needed(day).items():
            needed[asset] = sorted({*needed.get(asset, []), *asset_days})
    stored = {asset: table for table, asset in stored_tables().items()}  # an asset's rows live in its stored table
    with database.connect() as conn:
        missing = {asset: sorted(set(wanted) - set(recorded_partitions(conn, stored[asset], wanted)))
                   for asset, wanted in needed.items()}
        if missing := {asset: asset_days for asset, asset_days in missing.items() if asset_days}:
            listed = "; ".join(f"{asset} for {describe_days(asset_days)}" for asset, asset_days in missing.items())
            raise RetrievalInputError(
                f"the events need days that {database.location()} does not hold: {listed}. Fill them with: "
                f"{materialize_command(DAILY_ASSETS, sorted({d for asset_days in missing.values() for d in asset_days}))}")
        for asset, wanted in needed.items():  # written, and still holding what was written
            require_written(conn, *stored[asset].split("."), wanted, location=database.location())


def _day_features(database: Database, events: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """The features of one day's events (in their order), by silver's code over the stored tables."""
    def stored(asset: str, columns: list[str] | None = None) -> StoredTableDays:
        return StoredTableDays(database, *asset.split("/"), _needed(day)[asset], columns)

    interactions = stored("features/interactions", ["date", "news_id", "time", "clicked"])
    rows = events.select(
        pl.lit(day).alias("date"), pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("impression_id"),
        "user_id", "news_id", "time", pl.lit(1, dtype=pl.Int32).alias("position"), pl.lit(_SPLIT).alias("split"),
        pl.lit(None, dtype=pl.Boolean).alias("clicked"),
    ).select(ID_COLUMNS)
    cross = pl.concat(cross_feature_chunks(
        day, rows, interactions.read(day), stored("features/text_embeddings", ["date", "news_id", "embedding"]).read(day),
        interactions, stored("features/candidate_stats"), stored("features/entity_features", ["date", "news_id", "entity_embedding"]),
        stored("bronze/behaviors"), stored("bronze/news", ["date", "news_id", "category", "subcategory"]),
    ))
    users = stored("features/user_features").read(day).drop("date").with_columns(user_seen=True)
    news = stored("features/news_features").read(day).drop("date").with_columns(article_seen=True)
    return (
        cross.join(users, on="user_id", how="left", maintain_order="left")
        .join(news, on="news_id", how="left", maintain_order="left")
        .with_columns(pl.col("user_seen", "article_seen").fill_null(False))
    )


def features_for_events(events, database: Database | None = None) -> Retrieved:
    """Features for each event (user_id, news_id, time: a Polars, pandas or Arrow frame) as of its
    time, from the configured storage (or `database`). See the module docstring."""
    if database is None:
        from news_ai_assets.definitions import database as configured

        database = configured()
    events = _events_frame(events).with_row_index(_ROW)
    days = sorted(events.get_column("time").dt.date().unique().to_list())
    _require_stored(database, days)
    features = []
    for day in days:
        on_day = events.filter(pl.col("time").dt.date() == day)
        features.append(_day_features(database, on_day.drop(_ROW), day).with_columns(on_day.get_column(_ROW)))
    joined = events.join(pl.concat(features).select(_ROW, *FEATURE_COLUMNS, "user_seen", "article_seen"),
                         on=_ROW, how="left").sort(_ROW)
    return Retrieved(
        joined.drop(_ROW, "user_seen", "article_seen"),
        unseen_users=int((~joined.get_column("user_seen")).sum()),
        unseen_articles=int((~joined.get_column("article_seen")).sum()),
        days=days,
    )


def _read_events(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise RetrievalInputError(f"no events file at {path}")
    if path.suffix.lower() == ".csv":
        return pl.read_csv(path, schema_overrides={"user_id": pl.String, "news_id": pl.String, "time": pl.String})
    return pl.read_parquet(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path, help="a Parquet or CSV file with user_id, news_id and time")
    parser.add_argument("--out", type=Path, required=True, help="the Parquet file to write (replaced)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        result = features_for_events(_read_events(args.events))
    except (RetrievalInputError, dg.Failure) as err:
        sys.exit(f"retrieval: {err}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.rows.write_parquet(args.out)
    print(f"{result.rows.height:,} events on {len(result.days)} day(s) -> {args.out} ({result.rows.width} columns) in "
          f"{time.perf_counter() - started:.1f} s; {result.unseen_users:,} events of users with no impression that day "
          f"and {result.unseen_articles:,} of articles not listed that day have NULL features there")


if __name__ == "__main__":
    main()
