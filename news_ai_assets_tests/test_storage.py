import datetime as dt
import time

import duckdb
import polars as pl
import pytest

from news_ai_assets.storage import DuckDBLockedError, SchemaMismatchError, connect, replace_rows
from news_ai_assets_tests.pipeline import another_process_holding

DAY = "date = ?"


def _frame(day: dt.date, values: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"date": [day] * len(values), "value": values, "label": [f"v{v}" for v in values]},
        schema={"date": pl.Date, "value": pl.Int64, "label": pl.String},
    )


def _stored(database) -> pl.DataFrame:
    with connect(database) as conn:
        return conn.sql("SELECT * FROM layer.t ORDER BY date, value").pl()


D1, D2 = dt.date(2019, 11, 9), dt.date(2019, 11, 10)


def test_replacing_a_partition_leaves_others_and_never_duplicates(tmp_path):
    db = tmp_path / "x.duckdb"
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", _frame(D1, [1, 2]), DAY, [D1])
        replace_rows(conn, "layer", "t", _frame(D2, [3]), DAY, [D2])
        replace_rows(conn, "layer", "t", _frame(D1, [4]), DAY, [D1])
        replace_rows(conn, "layer", "t", _frame(D1, [4]), DAY, [D1])
    assert _stored(db).get_column("value").to_list() == [4, 3]


def test_columns_are_matched_by_name_not_position(tmp_path):
    db = tmp_path / "x.duckdb"
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", _frame(D1, [1]), DAY, [D1])
        replace_rows(conn, "layer", "t", _frame(D2, [2]).select("label", "value", "date"), DAY, [D2])
    assert _stored(db).rows() == [(D1, 1, "v1"), (D2, 2, "v2")]


class _FailingInsert:
    """A connection whose INSERT fails, i.e. after the partition's DELETE has run."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql, *args):
        if sql.startswith("INSERT"):
            raise duckdb.IOException("disk full (simulated)")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_failed_write_leaves_the_previous_partition_intact(tmp_path):
    db = tmp_path / "x.duckdb"
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", _frame(D1, [1, 2]), DAY, [D1])
        with pytest.raises(duckdb.IOException, match="simulated"):
            replace_rows(_FailingInsert(conn), "layer", "t", _frame(D1, [9]), DAY, [D1])
    assert _stored(db).get_column("value").to_list() == [1, 2]


def test_new_columns_migrate_and_incompatible_ones_stop_before_deleting(tmp_path):
    db = tmp_path / "x.duckdb"
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", _frame(D1, [1]), DAY, [D1])
        added, written = replace_rows(conn, "layer", "t", _frame(D2, [2]).with_columns(extra=pl.lit(1.5)), DAY, [D2])
        assert added == ["extra"] and written == 1
        with pytest.raises(SchemaMismatchError, match="type changed: value"):
            replace_rows(conn, "layer", "t", _frame(D1, [3]).with_columns(pl.col("value").cast(pl.String)), DAY, [D1])
        with pytest.raises(SchemaMismatchError, match="missing from the new rows: label"):
            replace_rows(conn, "layer", "t", _frame(D1, [3]).drop("label"), DAY, [D1])
    assert _stored(db).rows() == [(D1, 1, "v1", None), (D2, 2, "v2", 1.5)]


def test_an_empty_partition_creates_the_table(tmp_path):
    db = tmp_path / "x.duckdb"
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", _frame(D1, []), DAY, [D1])
    stored = _stored(db)
    assert stored.height == 0 and stored.schema == {"date": pl.Date, "value": pl.Int64, "label": pl.String}


def test_feature_types_round_trip(tmp_path):
    frame = pl.DataFrame(
        {
            "date": [D1],
            "vector": pl.Series([[0.5] * 384], dtype=pl.Array(pl.Float32, 384)),
            "items": [[{"news_id": "N1", "clicked": None}]],
            "history": [["N1", "N2"]],
            "time": [dt.datetime(2019, 11, 9, 13, 5)],
            "small": pl.Series([3], dtype=pl.Int16),
        }
    )
    with connect(tmp_path / "x.duckdb") as conn:
        replace_rows(conn, "layer", "t", frame, DAY, [D1])
        back = conn.sql("SELECT * FROM layer.t").pl()
    assert back.schema == frame.schema and back.equals(frame)


def test_a_locked_file_fails_fast_naming_the_holder(tmp_path):
    db = tmp_path / "x.duckdb"
    with another_process_holding(db) as holder:
        started = time.monotonic()
        with pytest.raises(DuckDBLockedError, match=rf"locked by another process \(PID {holder.pid}\)"):
            connect(db)
        assert time.monotonic() - started < 10  # no silent retry loop


def test_a_stream_of_batches_is_written_in_one_transaction(tmp_path):
    import pyarrow as pa

    db = tmp_path / "x.duckdb"
    schema = _frame(D1, []).to_arrow().schema
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", _frame(D1, [7]), DAY, [D1])

        def batches(fail: bool):
            for start in (1, 3):
                yield _frame(D1, [start, start + 1]).to_arrow().to_batches()[0].cast(schema)
            if fail:
                raise RuntimeError("producer failed half-way")

        with pytest.raises(Exception, match="producer failed half-way"):
            replace_rows(conn, "layer", "t", pa.RecordBatchReader.from_batches(schema, batches(True)), DAY, [D1])
        assert _stored_in(conn).get_column("value").to_list() == [7]
        _, written = replace_rows(conn, "layer", "t", pa.RecordBatchReader.from_batches(schema, batches(False)), DAY, [D1])
    assert written == 4 and _stored(db).get_column("value").to_list() == [1, 2, 3, 4]


def _stored_in(conn) -> pl.DataFrame:
    return conn.sql("SELECT * FROM layer.t ORDER BY date, value").pl()
