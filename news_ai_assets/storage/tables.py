"""How assets hand daily-partitioned tables to storage and get them back, one day at a time.

A range run (a 14-day backfill is one run) must not hold every day in memory at once. So an
asset returns `DayRows`, its partitions produced and stored day by day, and takes its inputs as
`StoredDays`, read lazily: a Polars LazyFrame whose filters and column choices reach the storage.
Storage implements both (partition_handler.py); assets never see which storage it is.
"""

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence

import polars as pl
import pyarrow as pa

Rows = pl.DataFrame | pa.Table | pa.RecordBatchReader


class DayRows:
    """An asset's output: (day, rows) for each day of the run, in order, produced as they are
    stored. rows is a frame, an Arrow table or a record-batch stream (a day larger than memory)."""

    def __init__(self, days: Iterable[tuple[dt.date, Rows]]):
        self._days = iter(days)

    def __iter__(self) -> Iterator[tuple[dt.date, Rows]]:
        return self._days


class StoredDays(ABC):
    """Stored partitions of a daily table, every one of them checked to exist when the input loaded."""

    def __init__(self, days: Sequence[dt.date]):
        self.days = list(days)

    @abstractmethod
    def scan(self) -> pl.LazyFrame:
        """All these days, lazily: filters and selected columns are pushed down to the storage."""

    def read(self, first: dt.date, last: dt.date | None = None, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Days first .. last (inclusive) of the stored days, with `columns` (all when None)."""
        # Comparisons, not is_between: DuckDB receives them as a filter on its scan.
        frame = self.scan().filter((pl.col("date") >= first) & (pl.col("date") <= (last or first)))
        return frame.select(columns).collect() if columns else frame.collect()
