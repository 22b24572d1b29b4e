import datetime as dt
import os
import subprocess
import sys
import time

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
import pytest

from news_ai_assets.storage.database import SchemaMismatchError, StorageWriteError, recorded_partitions, require_written
from news_ai_assets.storage import partition_handler
from news_ai_assets.storage.duckdb_file import DuckDBLockedError, NotADuckDBFileError, connect, replace_rows
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
        with pytest.raises(StorageWriteError, match="writing layer.t failed, so its previous rows are kept. disk full"):
            replace_rows(_FailingInsert(conn), "layer", "t", _frame(D1, [9]), DAY, [D1])
    assert _stored(db).get_column("value").to_list() == [1, 2]


def test_new_columns_migrate_and_incompatible_ones_stop_before_deleting(tmp_path):
    db = tmp_path / "x.duckdb"
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", _frame(D1, [1]), DAY, [D1])
        written = replace_rows(conn, "layer", "t", _frame(D2, [2]).with_columns(extra=pl.lit(1.5)), DAY, [D2])
        assert written.changed_columns == ["extra"] and written.rows == 1
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
        written = replace_rows(conn, "layer", "t", pa.RecordBatchReader.from_batches(schema, batches(False)), DAY, [D1])
    assert written.rows == 4 and _stored(db).get_column("value").to_list() == [1, 2, 3, 4]


def _stored_in(conn) -> pl.DataFrame:
    return conn.sql("SELECT * FROM layer.t ORDER BY date, value").pl()


def test_integer_columns_widen_in_place(tmp_path):
    """A count that outgrew its type (SMALLINT -> INTEGER) migrates without losing stored rows."""
    db = tmp_path / "x.duckdb"
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", _frame(D1, [1]).cast({"value": pl.Int16}), DAY, [D1])
        written = replace_rows(conn, "layer", "t", _frame(D2, [40_000]).cast({"value": pl.Int32}), DAY, [D2])
        assert written.changed_columns == ["value (SMALLINT -> INTEGER)"]
    assert _stored(db).get_column("value").to_list() == [1, 40_000]


def test_rows_outside_the_partitions_written_are_refused(tmp_path):
    db = tmp_path / "x.duckdb"
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", _frame(D1, [1]), DAY, [D1], days=[D1])
        with pytest.raises(StorageWriteError, match="1 of the 2 rows for layer.t fall outside the partitions"):
            replace_rows(conn, "layer", "t", pl.concat([_frame(D1, [2]), _frame(D2, [3])]), DAY, [D1], days=[D1])
    assert _stored(db).get_column("value").to_list() == [1]


def test_each_day_written_is_recorded_and_a_day_never_written_is_refused(tmp_path):
    db = tmp_path / "x.duckdb"
    with connect(db) as conn:
        written = replace_rows(conn, "layer", "t", _frame(D1, [1, 2]), "date >= ? AND date < ?",
                               [D1, D2 + dt.timedelta(days=1)], days=[D1, D2], run_id="r1")
        assert written.rows_by_day == {D1: 2, D2: 0}  # an empty day is recorded as materialised, with 0 rows
        assert recorded_partitions(conn, "layer.t", [D1, D2]) == {D1: 2, D2: 0}
        require_written(conn, "layer", "t", [D1, D2])
        with pytest.raises(dg.Failure, match=r"layer/t has never been materialised in .* for 2019-11-11, which this run"):
            require_written(conn, "layer", "t", [D1, D2, dt.date(2019, 11, 11)])
        conn.execute("DELETE FROM layer.t WHERE value = 2")  # a hand edit behind the pipeline's back
        with pytest.raises(dg.Failure, match=r"no longer holds what its last materialisation wrote for 2019-11-09 "
                                             r"\(1 rows stored, 2 written\)"):
            require_written(conn, "layer", "t", [D1, D2])


def test_small_days_are_written_together_and_a_failing_day_still_leaves_those_before_it_written(monkeypatch):
    """Consecutive days' frames go to storage as one write up to DAYS_WRITTEN_TOGETHER_ROWS rows (a stream,
    or a frame of other columns, on its own); when computing a day fails, the days before it are written."""
    monkeypatch.setattr(partition_handler, "DAYS_WRITTEN_TOGETHER_ROWS", 4)
    days = [D1 + dt.timedelta(days=i) for i in range(6)]
    stream = _frame(days[3], [7]).to_arrow()

    def produced(fail_on: dt.date | None = None):
        for day, rows in [(days[0], _frame(days[0], [1, 2])), (days[1], _frame(days[1], [3])), (days[2], _frame(days[2], [4, 5])),
                          (days[3], pa.RecordBatchReader.from_batches(stream.schema, stream.to_batches())),
                          (days[4], _frame(days[4], [8]).drop("label")), (days[5], _frame(days[5], [9]).drop("label"))]:
            if day == fail_on:
                raise RuntimeError(f"computing {day} failed")
            yield day, rows

    writes = [(batch, rows.read_all().num_rows if isinstance(rows, pa.RecordBatchReader) else rows.num_rows)
              for batch, rows in partition_handler._joined(produced())]
    assert writes == [(days[:2], 3), (days[2:3], 2), (days[3:4], 1), (days[4:], 2)]

    written = []
    with pytest.raises(RuntimeError, match="computing 2019-11-11 failed"):
        for batch, _ in partition_handler._joined(produced(fail_on=days[2])):
            written.append(batch)
    assert written == [days[:2]]


@pytest.mark.parametrize("content", [b"PAR1\x00\x00\x00\x00PAR1", b"date,value\n2019-11-09,1\n", b"SQLite format 3\x00" + bytes(100), b""])
def test_a_file_that_is_not_a_duckdb_database_is_refused(tmp_path, content):
    """DuckDB opens a Parquet or CSV file as an empty in-memory database, and a SQLite file by
    fetching an extension: the run would store nothing, or reach the internet."""
    path = tmp_path / "data.parquet"
    path.write_bytes(content)
    with pytest.raises(NotADuckDBFileError, match="is not a DuckDB database"):
        connect(path)
    with pytest.raises(NotADuckDBFileError, match="is not a DuckDB database file"):
        connect(tmp_path)
    assert path.read_bytes() == content


def test_a_link_to_a_database_that_is_gone_is_refused_not_recreated(tmp_path):
    link = tmp_path / "pipeline.duckdb"
    link.symlink_to(tmp_path / "volume" / "pipeline.duckdb")
    (tmp_path / "volume").mkdir()
    with pytest.raises(NotADuckDBFileError, match="symbolic link to .*which does not exist"):
        connect(link)
    assert not (tmp_path / "volume" / "pipeline.duckdb").exists()
    connect(tmp_path / "volume" / "pipeline.duckdb").close()
    with connect(link) as conn:  # once it is there, the link is followed
        assert conn.execute("SELECT 1").fetchall() == [(1,)]


def test_no_connection_installs_or_loads_extensions_on_its_own(tmp_path):
    with connect(tmp_path / "x.duckdb") as conn:
        settings = dict(conn.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('autoinstall_known_extensions', 'autoload_known_extensions')"
        ).fetchall())
    assert settings == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MiB tmpfs (needs root; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_at_commit_is_the_headline_and_the_previous_rows_stay(tiny_disk):
    """The insert fits in memory; writing it at COMMIT finds the disk full. The error names that
    cause (it used to read "cannot rollback - no transaction is active")."""
    db = tiny_disk / "x.duckdb"
    with connect(db) as conn:
        replace_rows(conn, "layer", "t", _frame(D1, [1, 2]), DAY, [D1], days=[D1])
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    (tiny_disk / "filler").write_bytes(bytes(free - 64 * 1024))
    with connect(db) as conn, pytest.raises(StorageWriteError, match="previous rows are kept.*No space left on device"):
        replace_rows(conn, "layer", "t", _frame(D1, list(range(5000))), DAY, [D1], days=[D1])
    (tiny_disk / "filler").unlink()
    with connect(db) as conn:
        assert conn.sql("SELECT value FROM layer.t ORDER BY value").fetchall() == [(1,), (2,)]
        assert recorded_partitions(conn, "layer.t", [D1]) == {D1: 2}


def test_a_run_keeps_the_file_open_with_its_memory_limit_and_leaves_it_checkpointed(tmp_path):
    """Every connection of a run shares the database the run opened (a fresh open would replay the
    write-ahead log each time), so the run's memory limit reaches them; at the end the log is folded
    into the file and the file is closed."""
    from news_ai_assets.storage.duckdb_file import DuckDBDatabase

    path = tmp_path / "run.duckdb"
    seen = {}

    @dg.asset
    def probe(database: DuckDBDatabase) -> None:
        with database.connect() as first:  # closed before the second opens: only the run keeps the file open
            first.execute("CREATE TABLE t1 AS SELECT range AS i FROM range(1000)")
            first.execute("ATTACH ':memory:' AS scratch")  # seen by every connection to the same open database
        with database.connect() as second:
            seen["databases"] = {name for (name,) in second.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
            seen["memory_limit"] = second.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    result = dg.materialize([probe], resources={"database": DuckDBDatabase(database=str(path), memory_limit="300MB")})
    assert result.success
    assert "scratch" in seen["databases"] and seen["memory_limit"] == "286.1 MiB"
    assert not path.with_name("run.duckdb.wal").exists()
    assert subprocess.run([sys.executable, "-c", f"import duckdb; print(duckdb.connect({str(path)!r}).sql('SELECT count(*) FROM t1').fetchall()[0][0])"],
                          capture_output=True, text=True).stdout.strip() == "1000"


def test_a_scan_still_referenced_after_the_run_does_not_keep_the_file_open(tmp_path):
    """Polars may drop a lazy plan, and the DuckDB connection its scan holds, after the run ended.
    Such a leftover reader must not keep the file open: the same process then could not open it
    read-only ("a different configuration than existing connections")."""
    from news_ai_assets.storage.duckdb_file import DuckDBDatabase, DuckDBPolarsIOManager
    from news_ai_assets.storage.tables import DayRows, StoredDays

    path, day = tmp_path / "scan.duckdb", "2019-11-09"
    partitions = dg.DailyPartitionsDefinition(start_date=day, end_date="2019-11-10")
    left_over = []

    @dg.asset(key_prefix="layer", partitions_def=partitions, metadata={"partition_expr": "date"})
    def upstream() -> DayRows:
        return DayRows([(D1, _frame(D1, [1, 2]))])

    @dg.asset(key_prefix="layer", partitions_def=partitions, metadata={"partition_expr": "date"})
    def downstream(upstream: StoredDays) -> DayRows:
        left_over.append(upstream.scan())  # a plan that outlives the step
        return DayRows([(D1, upstream.read(D1))])

    result = dg.materialize([upstream, downstream], partition_key=day, resources={
        "io_manager": DuckDBPolarsIOManager(database=str(path)), "database": DuckDBDatabase(database=str(path))})
    assert result.success and left_over
    with connect(path, read_only=True) as conn:
        assert conn.sql("SELECT count(*) FROM layer.downstream").fetchall() == [(2,)]
    with pytest.raises(duckdb.ConnectionException, match="closed"):
        left_over[0].collect()  # the leftover reader was closed with the run, not left holding the file


def test_the_next_chunks_are_computed_while_this_one_is_stored():
    """computed_ahead keeps the order, computes the next `in_flight` items while the caller handles one,
    and raises what computing raised in that item's turn."""
    import threading

    from news_ai_assets.compute.ahead import computed_ahead

    for in_flight in (1, 2):
        started = {item: threading.Event() for item in range(4)}

        def compute(item: int) -> int:
            started[item].set()
            if item == 3:
                raise ValueError("chunk 3 failed")
            return item * 10

        ahead = computed_ahead(compute, range(4), in_flight)
        assert next(ahead) == 0
        for item in range(1, in_flight + 1):
            assert started[item].wait(10), f"item {item} was not computed while item 0 was being stored"
        assert not started[in_flight + 1].wait(0.2), "more than in_flight items were computed ahead"
        assert [next(ahead), next(ahead)] == [10, 20]
        with pytest.raises(ValueError, match="chunk 3 failed"):
            next(ahead)
